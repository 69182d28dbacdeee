/*
 * Tests of the client library through its public header (client/dfs_client.h), against a cluster
 * in this process: a real metadata service over a SQLite catalog in a temp dir, and real storage
 * nodes (fragment store + Storage service, each on its own loopback gRPC server) enrolled in that
 * catalog, as services/metadata/metadata_repair_test.c builds them. The nodes' disks go through an
 * injectable system-call table, so that a node can stop answering in the middle of a fragment.
 *
 * What is checked: every verb against the real service; a put whose node stops answering
 * mid-fragment goes to another node; a get whose node stops answering mid-fragment continues from
 * another copy, and so does one that meets a corrupt block (which it reports); an interrupted get
 * is resumed; throttled transfers take at least bytes / rate (lower bounds only: the machine may
 * be loaded); an erasure-coded file whose data fragment's node is gone is rebuilt from parity.
 */
#include "client/dfs_client.h"

#include "common/err.h"
#include "common/log.h"
#include "common/ticket.h"
#include "common/token.h"
#include "dfs/v1/metadata.pb-c.h"
#include "metadata/catalog.h"
#include "services/metadata/metadata_service.h"
#include "services/rpc/follower_testing.h"
#include "services/rpc/server.h"
#include "services/storage/storage_service.h"
#include "storage/frag_store.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define MIB  ((size_t)1 << 20)
#define MAXN 4

/* ---- disks that stop answering ----------------------------------------------------------------

   Every node's store reads and writes through this table. Once armed (stall_what), the first data
   read or write at or past 1 MiB into a fragment file, on whichever node comes first, blocks until
   the test lets it go (teardown): that node stops answering in the middle of a fragment, as a node
   with a stuck disk does, while the others carry on. Only one call is held, so a retry on another
   node, or on the same node, goes through. */

enum { STALL_NONE, STALL_WRITES, STALL_READS };

static atomic_int stall_what;
static atomic_bool stall_claimed; /* a call is (or was) held */
static atomic_bool stall_hold;    /* the held call waits while this is set */

static void maybe_stall(int what, size_t len, off_t off)
{
    if (atomic_load(&stall_what) != what || len <= 4096 || off < (off_t)MIB)
        return;
    bool expected = false;
    if (!atomic_compare_exchange_strong(&stall_claimed, &expected, true))
        return;
    while (atomic_load(&stall_hold))
        usleep(2000);
}

static ssize_t stall_pread(int fd, void *buf, size_t len, off_t off)
{
    maybe_stall(STALL_READS, len, off);
    return pread(fd, buf, len, off);
}

static ssize_t stall_preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
    size_t len = 0;
    for (int i = 0; i < cnt; i++)
        len += iov[i].iov_len;
    maybe_stall(STALL_READS, len, off);
    return preadv(fd, iov, cnt, off);
}

static ssize_t stall_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    maybe_stall(STALL_WRITES, len, off);
    return pwrite(fd, buf, len, off);
}

static ssize_t stall_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    size_t len = 0;
    for (int i = 0; i < cnt; i++)
        len += iov[i].iov_len;
    maybe_stall(STALL_WRITES, len, off);
    return pwritev(fd, iov, cnt, off);
}

/* ---- the cluster --------------------------------------------------------------------------- */

struct node {
    char addr[64];
    char root[PATH_MAX + 16];
    dfs_frag_store *store;
    dfs_storage_service *svc;
    dfs_rpc_server *srv; /* NULL once stopped */
};

struct fx {
    char dir[PATH_MAX];
    char src[PATH_MAX + 16], dst[PATH_MAX + 16];
    struct dfs_io_ops io;
    dfs_catalog *cat;
    dfs_metadata_service *svc;
    dfs_rpc_server *srv;
    char addr[64];
    char token[DFS_TOKEN_LEN + 1]; /* an admin's */
    struct node n[MAXN];
    int nnodes;
    dfs_client *c;
    uint8_t *data; /* what src holds */
    size_t size;
};

/* Start storage node i: its store under the fixture's dir, its service on a free port, its
   ticket key as RegisterNode would give it, and its enrollment in the catalog. */
static void node_start(struct fx *f, int i)
{
    struct node *n = &f->n[i];
    char root[PATH_MAX + 16];
    snprintf(root, sizeof root, "%s/node%d", f->dir, i);
    memcpy(n->root, root, sizeof n->root);
    char *err = NULL;
    if (dfs_frag_store_open(n->root, &f->io, &n->store, &err) != DFS_OK)
        fail_msg("store: %s", err);
    const char *id = dfs_frag_store_node_id(n->store);
    struct dfs_storage_service_config cfg = {0};
    assert_int_equal(dfs_storage_service_create(n->store, &cfg, &n->svc, &err), DFS_OK);
    struct dfs_rpc_server_config scfg = {.listen = "127.0.0.1:0", .threads = 3};
    assert_int_equal(dfs_rpc_server_create(&scfg, &n->srv, &err), DFS_OK);
    assert_int_equal(dfs_storage_service_register(n->svc, n->srv, &err), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(n->srv, &err), DFS_OK);
    snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d", dfs_rpc_server_port(n->srv));
    uint8_t master[DFS_TICKET_KEY_LEN], key[DFS_TICKET_KEY_LEN];
    assert_int_equal(
        dfs_catalog_secret(f->cat, "ticket_master_key", sizeof master, 1, master, NULL), DFS_OK);
    assert_int_equal(dfs_ticket_node_key(master, id, key, NULL), DFS_OK);
    assert_int_equal(dfs_storage_service_set_ticket_key(n->svc, key, sizeof key, NULL), DFS_OK);
    char token[DFS_TOKEN_LEN + 1], tid[DFS_TOKEN_ID_HEX + 1];
    uint8_t hash[DFS_TOKEN_HASH_LEN];
    assert_int_equal(dfs_token_generate(token), DFS_OK);
    assert_int_equal(dfs_token_parse(token, tid, hash, NULL), DFS_OK);
    struct dfs_node_usage u = {.capacity_bytes = 1ull << 32, .free_bytes = 1ull << 32};
    assert_int_equal(dfs_catalog_node_enroll(f->cat, id, tid, hash, n->addr, NULL, &u,
                                             (int64_t)time(NULL) * 1000, 0x1000 + (uint64_t)i,
                                             NULL),
                     DFS_OK);
}

/* Start stopped node i again on its own address, over its store: a node process restarted. */
static void node_restart(struct fx *f, int i)
{
    struct node *n = &f->n[i];
    char *err = NULL;
    if (dfs_frag_store_open(n->root, &f->io, &n->store, &err) != DFS_OK)
        fail_msg("store: %s", err);
    const char *id = dfs_frag_store_node_id(n->store);
    struct dfs_storage_service_config cfg = {0};
    assert_int_equal(dfs_storage_service_create(n->store, &cfg, &n->svc, &err), DFS_OK);
    struct dfs_rpc_server_config scfg = {.listen = n->addr, .threads = 3};
    assert_int_equal(dfs_rpc_server_create(&scfg, &n->srv, &err), DFS_OK);
    assert_int_equal(dfs_storage_service_register(n->svc, n->srv, &err), DFS_OK);
    if (dfs_rpc_server_start(n->srv, &err) != DFS_OK)
        fail_msg("restart on %s: %s", n->addr, err);
    uint8_t master[DFS_TICKET_KEY_LEN], key[DFS_TICKET_KEY_LEN];
    assert_int_equal(
        dfs_catalog_secret(f->cat, "ticket_master_key", sizeof master, 1, master, NULL), DFS_OK);
    assert_int_equal(dfs_ticket_node_key(master, id, key, NULL), DFS_OK);
    assert_int_equal(dfs_storage_service_set_ticket_key(n->svc, key, sizeof key, NULL), DFS_OK);
}

/* Stop node i: its server first (in-flight calls are cancelled), then its service and store. */
static void node_stop(struct node *n)
{
    if (n->srv == NULL)
        return;
    dfs_rpc_server_stop(n->srv, 0);
    dfs_rpc_server_destroy(n->srv);
    dfs_storage_service_destroy(n->svc);
    dfs_frag_store_close(n->store);
    n->srv = NULL;
}

/* A cluster of nnodes storage nodes and a metadata service, and a client holding an admin token. */
static struct fx *cluster(int nnodes)
{
    struct fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/dfs_client_test.XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->src, sizeof f->src, "%s/src", f->dir);
    snprintf(f->dst, sizeof f->dst, "%s/dst", f->dir);
    char db[PATH_MAX + 16];
    snprintf(db, sizeof db, "%s/catalog.db", f->dir);
    assert_int_equal(dfs_catalog_open(db, &f->cat, NULL), DFS_OK);
    f->io = *dfs_io_posix();
    f->io.pread = stall_pread;
    f->io.preadv = stall_preadv;
    f->io.pwrite = stall_pwrite;
    f->io.pwritev = stall_pwritev;
    atomic_store(&stall_what, STALL_NONE);
    atomic_store(&stall_claimed, false);
    atomic_store(&stall_hold, true);
    f->nnodes = nnodes;
    for (int i = 0; i < nnodes; i++)
        node_start(f, i);
    /* No heartbeats come from these nodes: they must not turn suspect while a test runs. Nor
       may a rebalance move copies under a test's feet. */
    struct dfs_metadata_config cfg = {.seed = 7,
                                      .suspect_after_ms = 3600000,
                                      .dead_after_ms = 7200000,
                                      .rebalance_threshold_pct = -1};
    assert_int_equal(dfs_metadata_service_create(f->cat, &cfg, &f->svc, NULL), DFS_OK);
    struct dfs_rpc_server_config scfg = {.listen = "127.0.0.1:0", .threads = 2};
    assert_int_equal(dfs_rpc_server_create(&scfg, &f->srv, NULL), DFS_OK);
    assert_int_equal(dfs_metadata_service_register(f->svc, f->srv, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(f->srv, NULL), DFS_OK);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", dfs_rpc_server_port(f->srv));
    assert_int_equal(
        dfs_metadata_service_make_token(f->svc, DFS_ROLE_ADMIN, "test", 0, f->token, NULL, NULL),
        DFS_OK);
    struct dfs_client_options o = {.metadata = f->addr, .timeout_ms = 20000, .token = f->token};
    char *err = NULL;
    if (dfs_client_open(&o, &f->c, &err) != DFS_OK)
        fail_msg("open: %s", err);
    return f;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f == NULL)
        return 0;
    atomic_store(&stall_hold, false); /* a held disk call returns; its call is long cancelled */
    dfs_client_close(f->c);
    dfs_rpc_server_stop(f->srv, 1000);
    dfs_metadata_service_destroy(f->svc);
    dfs_rpc_server_destroy(f->srv);
    for (int i = 0; i < f->nnodes; i++)
        node_stop(&f->n[i]);
    dfs_catalog_close(f->cat);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f->data);
    free(f);
    return 0;
}

/* ---- files ---- */

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

/* Write n reproducible bytes to the fixture's source file. */
static void make_source(struct fx *f, size_t n, unsigned seed)
{
    free(f->data);
    f->data = malloc(n + 1);
    fill(f->data, n, seed);
    f->size = n;
    int fd = open(f->src, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, f->data, n), (ssize_t)n);
    assert_int_equal(close(fd), 0);
}

/* Whether the file at path holds exactly the source's bytes. */
static void expect_same(struct fx *f, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(f->size + 1);
    assert_int_equal(pread(fd, buf, f->size + 1, 0), (ssize_t)f->size);
    close(fd);
    assert_memory_equal(buf, f->data, f->size);
    free(buf);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void put(struct fx *f, const char *remote, const struct dfs_client_put_opts *o,
                struct dfs_client_put_result *r)
{
    struct dfs_client_put_opts none = {0};
    char *err = NULL;
    if (dfs_client_put(f->c, f->src, remote, o != NULL ? o : &none, r, &err) != DFS_OK)
        fail_msg("put %s: %s", remote, err);
}

static int get(struct fx *f, const char *remote, const struct dfs_client_get_opts *o,
               struct dfs_client_get_result *r, char **err)
{
    struct dfs_client_get_opts none = {0};
    return dfs_client_get(f->c, remote, f->dst, o != NULL ? o : &none, r, err);
}

/* A pipe's read end, read to its end into memory by a thread. */
struct sink {
    int fd;
    uint8_t *buf;
    size_t len, cap;
    pthread_t thread;
};

static void *sink_main(void *arg)
{
    struct sink *s = arg;
    uint8_t tmp[65536];
    ssize_t n;
    while ((n = read(s->fd, tmp, sizeof tmp)) > 0 || (n < 0 && errno == EINTR)) {
        if (n <= 0)
            continue;
        if (s->len + (size_t)n > s->cap) {
            s->cap = (s->len + (size_t)n) * 2;
            s->buf = realloc(s->buf, s->cap);
        }
        memcpy(s->buf + s->len, tmp, (size_t)n);
        s->len += (size_t)n;
    }
    return NULL;
}

/* Bytes [off, off + len) of remote through dfs_client_get_range, checked against the source. */
static void expect_range(struct fx *f, const char *remote, uint64_t off, uint64_t len,
                         struct dfs_client_get_result *r)
{
    Dfs__V1__FileInfo *fi = NULL;
    char *err = NULL;
    if (dfs_client_stat(f->c, remote, &fi, &err) != DFS_OK)
        fail_msg("stat: %s", err);
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct sink s = {.fd = p[0]};
    assert_int_equal(pthread_create(&s.thread, NULL, sink_main, &s), 0);
    struct dfs_client_get_opts o = {0};
    int rc = dfs_client_get_range(f->c, fi, off, len, p[1], f->dir, &o, r, &err);
    close(p[1]);
    pthread_join(s.thread, NULL);
    close(p[0]);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
    if (rc != DFS_OK)
        fail_msg("get_range: %s", err);
    assert_int_equal(s.len, len);
    assert_memory_equal(s.buf, f->data + off, len);
    free(s.buf);
}

/* The node whose address is addr. */
static struct node *node_at(struct fx *f, const char *addr)
{
    for (int i = 0; i < f->nnodes; i++)
        if (strcmp(f->n[i].addr, addr) == 0)
            return &f->n[i];
    fail_msg("no node at %s", addr);
    return NULL;
}

/* ---- tests ---- */

static void test_open_refuses_what_it_cannot_use(void **state)
{
    (void)state;
    dfs_client *c = NULL;
    char *err = NULL;
    struct dfs_client_options none = {0};
    assert_int_equal(dfs_client_open(&none, &c, &err), DFS_EINVAL);
    assert_string_equal(err, "no metadata service address: use --metadata HOST:PORT or set "
                             "DFS_METADATA");
    free(err);
    err = NULL;
    struct dfs_client_options remote = {.metadata = "192.0.2.1:7000"};
    assert_int_equal(dfs_client_open(&remote, &c, &err), DFS_EPERM);
    assert_non_null(strstr(err, "--insecure"));
    free(err);
    err = NULL;
    remote.insecure = true; /* allowed now; connects lazily, so nothing is sent */
    assert_int_equal(dfs_client_open(&remote, &c, &err), DFS_OK);
    assert_string_equal(dfs_client_metadata(c), "192.0.2.1:7000");
    dfs_client_close(c);
    struct dfs_client_options bad = {.metadata = "127.0.0.1:1", .token = "has spaces"};
    assert_int_equal(dfs_client_open(&bad, &c, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    struct dfs_client_options nofile = {.metadata = "127.0.0.1:1",
                                        .token_file = "/nonexistent/dfs/token"};
    assert_int_not_equal(dfs_client_open(&nofile, &c, &err), DFS_OK);
    assert_non_null(strstr(err, "/nonexistent/dfs/token"));
    free(err);
    err = NULL;
    struct dfs_client_options nocert = {.metadata = "127.0.0.1:1", .tls_ca = "/nonexistent/ca"};
    assert_int_equal(dfs_client_open(&nocert, &c, &err), DFS_EINVAL);
    assert_non_null(strstr(err, "/nonexistent/ca"));
    free(err);
    dfs_client_close(NULL);
}

static void test_every_verb_against_the_service(void **state)
{
    struct fx *f = cluster(3);
    *state = f;
    make_source(f, 3 * MIB + 4321, 1);
    struct dfs_client_put_result pr;
    struct dfs_client_put_opts po = {.replicas = 2, .fragments = 3};
    put(f, "/t/a", &po, &pr);
    assert_string_equal(pr.path, "/t/a");
    assert_int_equal(pr.size, f->size);
    assert_int_equal(pr.fragments, 3);
    assert_int_equal(pr.replicas, 2);
    char *err = NULL;
    /* A second put without overwrite is refused. */
    struct dfs_client_put_result again;
    assert_int_equal(dfs_client_put(f->c, f->src, "/t/a", &po, &again, &err), DFS_EEXIST);
    free(err);
    err = NULL;

    Dfs__V1__FileInfo *fi = NULL;
    assert_int_equal(dfs_client_stat(f->c, "/t/a", &fi, &err), DFS_OK);
    assert_int_equal(fi->size, f->size);
    assert_int_equal(fi->n_fragments, 3);
    assert_memory_equal(fi->sha256.data, pr.sha256, DFS_SHA256_BYTES);
    char hex[2 * DFS_SHA256_BYTES + 1];
    dfs_client_sha256_hex(pr.sha256, hex);
    assert_int_equal(strlen(hex), 64);
    protobuf_c_message_free_unpacked(&fi->base, NULL);

    Dfs__V1__ListFilesResponse *ls = NULL;
    assert_int_equal(dfs_client_ls(f->c, "/t/", 0, NULL, &ls, &err), DFS_OK);
    assert_int_equal(ls->n_files, 1);
    assert_string_equal(ls->files[0]->path, "/t/a");
    protobuf_c_message_free_unpacked(&ls->base, NULL);

    struct dfs_client_get_result gr;
    if (get(f, "/t/a", NULL, &gr, &err) != DFS_OK)
        fail_msg("get: %s", err);
    assert_int_equal(gr.size, f->size);
    assert_int_equal(gr.failovers, 0);
    expect_same(f, f->dst);
    expect_range(f, "/t/a", 1000, 2 * MIB, &gr);
    expect_range(f, "/t/a", 0, f->size, &gr);

    Dfs__V1__ListNodesResponse *nodes = NULL;
    assert_int_equal(dfs_client_nodes(f->c, &nodes, &err), DFS_OK);
    assert_int_equal(nodes->n_nodes, 3);
    char node_id[64];
    snprintf(node_id, sizeof node_id, "%s", nodes->nodes[0]->id);
    protobuf_c_message_free_unpacked(&nodes->base, NULL);

    Dfs__V1__StatResponse *st = NULL;
    assert_int_equal(dfs_client_status(f->c, &st, &err), DFS_OK);
    assert_int_equal(st->files, 1);
    assert_int_equal(st->logical_bytes, f->size);
    assert_int_equal(st->nodes_alive, 3);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    Dfs__V1__GetHealthResponse *h = NULL;
    assert_int_equal(dfs_client_health(f->c, true, 10, &h, &err), DFS_OK);
    assert_int_equal(h->healthy, 1);
    assert_int_equal(h->lost, 0);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    assert_int_equal(dfs_client_ping(f->c, 2000, &err), DFS_OK);

    Dfs__V1__Node *n = NULL;
    assert_int_equal(dfs_client_set_node_state(f->c, node_id, DFS__V1__NODE_STATE__NODE_DRAINING,
                                               false, &n, &err),
                     DFS_OK);
    assert_non_null(n);
    assert_int_equal(n->state, DFS__V1__NODE_STATE__NODE_DRAINING);
    protobuf_c_message_free_unpacked(&n->base, NULL);
    assert_int_equal(dfs_client_set_node_state(f->c, node_id, DFS__V1__NODE_STATE__NODE_ALIVE,
                                               false, NULL, &err),
                     DFS_OK);

    Dfs__V1__TokenInfo *me = NULL;
    assert_int_equal(dfs_client_whoami(f->c, &me, &err), DFS_OK);
    assert_non_null(me);
    assert_int_equal(me->role, DFS__V1__TOKEN_ROLE__TOKEN_ADMIN);
    protobuf_c_message_free_unpacked(&me->base, NULL);
    Dfs__V1__CreateTokenResponse *made = NULL;
    assert_int_equal(dfs_client_token_create(f->c, DFS__V1__TOKEN_ROLE__TOKEN_READ_ONLY, "reader",
                                             0, &made, &err),
                     DFS_OK);
    assert_non_null(made->info);
    char tid[64];
    snprintf(tid, sizeof tid, "%s", made->info->id);
    /* The new token reads, and is refused a write. */
    struct dfs_client_options ro = {.metadata = f->addr, .token = made->token};
    dfs_client *reader = NULL;
    assert_int_equal(dfs_client_open(&ro, &reader, &err), DFS_OK);
    protobuf_c_message_free_unpacked(&made->base, NULL);
    assert_int_equal(dfs_client_stat(reader, "/t/a", &fi, &err), DFS_OK);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
    assert_int_equal(dfs_client_rm(reader, "/t/a", NULL, &err), DFS_EPERM);
    free(err);
    err = NULL;
    Dfs__V1__ListTokensResponse *toks = NULL;
    assert_int_equal(dfs_client_token_list(f->c, false, &toks, &err), DFS_OK);
    assert_true(toks->n_tokens >= 2);
    protobuf_c_message_free_unpacked(&toks->base, NULL);
    Dfs__V1__TokenInfo *revoked = NULL;
    assert_int_equal(dfs_client_token_revoke(f->c, tid, &revoked, &err), DFS_OK);
    assert_non_null(revoked);
    assert_true(revoked->revoked_ms != 0);
    protobuf_c_message_free_unpacked(&revoked->base, NULL);
    assert_int_not_equal(dfs_client_stat(reader, "/t/a", &fi, &err), DFS_OK);
    free(err);
    err = NULL;
    dfs_client_close(reader);

    Dfs__V1__FileInfo *gone = NULL;
    assert_int_equal(dfs_client_rm(f->c, "/t/a", &gone, &err), DFS_OK);
    assert_non_null(gone);
    assert_string_equal(gone->path, "/t/a");
    protobuf_c_message_free_unpacked(&gone->base, NULL);
    assert_int_equal(dfs_client_stat(f->c, "/t/a", &fi, &err), DFS_ENOTFOUND);
    free(err);
    err = NULL;
    assert_int_equal(get(f, "/t/a", NULL, &gr, &err), DFS_ENOTFOUND);
    free(err);
    err = NULL;
    assert_int_equal(dfs_client_rm(f->c, "/t/a", NULL, &err), DFS_ENOTFOUND);
    free(err);
}

/*
 * Without a fragment count a file of at most DFS_SMALL_FILE bytes is one fragment, a larger one
 * takes the cluster's default (4 here); a count given explicitly always wins.
 */
static void test_small_files_are_one_fragment(void **state)
{
    struct fx *f = cluster(3);
    *state = f;
    struct {
        size_t size;
        uint32_t fragments, want;
    } cases[] = {
        {1024, 0, 1}, {DFS_SMALL_FILE, 0, 1}, {DFS_SMALL_FILE + 1, 0, 4}, {1024, 4, 4}, {0, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_source(f, cases[i].size, (unsigned)i + 7);
        char remote[32];
        snprintf(remote, sizeof remote, "/small/%zu", i);
        struct dfs_client_put_opts po = {.replicas = 2, .fragments = cases[i].fragments};
        struct dfs_client_put_result pr;
        put(f, remote, &po, &pr);
        assert_int_equal(pr.fragments, cases[i].want);
        Dfs__V1__FileInfo *fi = NULL;
        char *err = NULL;
        assert_int_equal(dfs_client_stat(f->c, remote, &fi, &err), DFS_OK);
        assert_int_equal(fi->n_fragments, cases[i].want);
        assert_int_equal(fi->size, cases[i].size);
        protobuf_c_message_free_unpacked(&fi->base, NULL);
    }
}

/*
 * A put from the caller's memory (opts.mem, the S3 gateway's bodies) stores those bytes, replicated
 * and erasure-coded, and hashes them itself; with the caller's SHA-256 (opts.sha256) that hash is
 * what is committed, without a second pass: a wrong one is committed as given, and the get, which
 * checks every file against it, refuses the file.
 */
static void test_put_from_memory(void **state)
{
    struct fx *f = cluster(3);
    *state = f;
    make_source(f, (3u << 20) + 12345, 21);
    struct dfs_client_put_opts po = {.replicas = 2, .mem = f->data, .mem_len = f->size};
    struct dfs_client_put_result pr, plain;
    struct dfs_client_get_result gr;
    char *err = NULL;
    /* "local" only names the bytes: no such file exists. */
    assert_int_equal(dfs_client_put(f->c, "/nonexistent/memory", "/mem/a", &po, &pr, &err), DFS_OK);
    assert_int_equal(pr.size, f->size);
    put(f, "/mem/plain", NULL, &plain);
    assert_memory_equal(pr.sha256, plain.sha256, DFS_SHA256_BYTES);
    assert_int_equal(get(f, "/mem/a", NULL, &gr, &err), DFS_OK);
    expect_same(f, f->dst);
    struct dfs_client_put_opts ec = {
        .ec_data = 2, .ec_parity = 1, .mem = f->data, .mem_len = f->size};
    assert_int_equal(dfs_client_put(f->c, "memory", "/mem/ec", &ec, &pr, &err), DFS_OK);
    assert_int_equal(get(f, "/mem/ec", NULL, &gr, &err), DFS_OK);
    expect_same(f, f->dst);
    /* The caller's SHA-256, right and wrong. */
    po.sha256 = plain.sha256;
    assert_int_equal(dfs_client_put(f->c, "memory", "/mem/b", &po, &pr, &err), DFS_OK);
    assert_int_equal(get(f, "/mem/b", NULL, &gr, &err), DFS_OK);
    expect_same(f, f->dst);
    uint8_t wrong[DFS_SHA256_BYTES];
    memcpy(wrong, plain.sha256, sizeof wrong);
    wrong[0] ^= 1;
    po.sha256 = wrong;
    assert_int_equal(dfs_client_put(f->c, "memory", "/mem/c", &po, &pr, &err), DFS_OK);
    assert_memory_equal(pr.sha256, wrong, DFS_SHA256_BYTES);
    assert_int_not_equal(get(f, "/mem/c", NULL, &gr, &err), DFS_OK);
    free(err);
}

/*
 * The handle keeps one channel per node for all its transfers: puts and gets one after another
 * and at once work over the same channels, and a node that went away and came back on the same
 * address is reached again by the next transfers, even after one failed against it meanwhile.
 */
static void test_transfers_share_channels_that_survive_a_node_restart(void **state)
{
    struct fx *f = cluster(3);
    *state = f;
    make_source(f, 1024, 11);
    struct dfs_client_put_opts all = {.replicas = 3};
    struct dfs_client_put_result pr;
    struct dfs_client_get_result gr;
    char *err = NULL;
    for (int i = 0; i < 3; i++) {
        char remote[32];
        snprintf(remote, sizeof remote, "/share/%d", i);
        put(f, remote, &all, &pr);
        if (get(f, remote, NULL, &gr, &err) != DFS_OK)
            fail_msg("get %s: %s", remote, err);
        expect_same(f, f->dst);
    }
    node_stop(&f->n[0]);
    /* Every copy must go to every node: with one gone the put fails, over the shared channel. */
    struct dfs_client_put_opts quick = {.replicas = 3, .stall_timeout_ms = 1000};
    assert_int_not_equal(dfs_client_put(f->c, f->src, "/share/down", &quick, &pr, &err), DFS_OK);
    free(err);
    err = NULL;
    node_restart(f, 0);
    put(f, "/share/back", &all, &pr);
    assert_int_equal(pr.replicas, 3);
    if (get(f, "/share/0", NULL, &gr, &err) != DFS_OK)
        fail_msg("get after the restart: %s", err);
    expect_same(f, f->dst);
}

static void test_put_fails_over_a_node_that_stops_mid_fragment(void **state)
{
    struct fx *f = cluster(3);
    *state = f;
    make_source(f, 6 * MIB, 2);
    /* Two copies of one fragment on two of the three nodes: the first to write past 1 MiB
       stops answering; its copy must go to the third node. */
    atomic_store(&stall_what, STALL_WRITES);
    struct dfs_client_put_opts o = {.replicas = 2, .fragments = 1, .stall_timeout_ms = 1000};
    struct dfs_client_put_result r;
    put(f, "/stall/put", &o, &r);
    assert_true(atomic_load(&stall_claimed));
    assert_true(r.replaced_targets >= 1);
    atomic_store(&stall_what, STALL_NONE);
    struct dfs_client_get_result g;
    char *err = NULL;
    if (get(f, "/stall/put", NULL, &g, &err) != DFS_OK)
        fail_msg("get: %s", err);
    expect_same(f, f->dst);
    Dfs__V1__FileInfo *fi = NULL;
    assert_int_equal(dfs_client_stat(f->c, "/stall/put", &fi, &err), DFS_OK);
    assert_int_equal(fi->fragments[0]->n_replicas, 2);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
}

static void test_get_fails_over_a_node_that_stops_mid_fragment(void **state)
{
    struct fx *f = cluster(2);
    *state = f;
    /* One fragment of 12 MiB on both nodes: three 4 MiB ranges, taken from the copies in turn. */
    make_source(f, 12 * MIB, 3);
    struct dfs_client_put_opts po = {.replicas = 2, .fragments = 1};
    struct dfs_client_put_result pr;
    put(f, "/stall/get", &po, &pr);
    atomic_store(&stall_what, STALL_READS);
    struct dfs_client_get_opts o = {.stall_timeout_ms = 1000};
    struct dfs_client_get_result r;
    char *err = NULL;
    double t0 = now_s();
    if (get(f, "/stall/get", &o, &r, &err) != DFS_OK)
        fail_msg("get: %s", err);
    assert_true(atomic_load(&stall_claimed));
    assert_true(r.failovers >= 1);
    assert_true(now_s() - t0 >= 0.9); /* it waited for the stall timeout, no less */
    expect_same(f, f->dst);
}

static void test_get_fails_over_a_corrupt_block_and_reports_it(void **state)
{
    struct fx *f = cluster(2);
    *state = f;
    make_source(f, 12 * MIB, 4);
    struct dfs_client_put_opts po = {.replicas = 2, .fragments = 1};
    struct dfs_client_put_result pr;
    put(f, "/corrupt", &po, &pr);
    Dfs__V1__FileInfo *fi = NULL;
    char *err = NULL;
    assert_int_equal(dfs_client_stat(f->c, "/corrupt", &fi, &err), DFS_OK);
    const char *id = fi->fragments[0]->fragment_id;
    struct node *n = node_at(f, fi->fragments[0]->replicas[0]->address);
    /* One flipped byte in every 4 MiB range of this copy: whichever ranges it serves, each
       meets a bad block. */
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/fragments/%.2s/%.2s/%s", n->root, id, id + 2, id);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    for (size_t at = 1; at < 12; at += 4) {
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, (off_t)(at * MIB + 77)), 1);
        b ^= 0x5a;
        assert_int_equal(pwrite(fd, &b, 1, (off_t)(at * MIB + 77)), 1);
    }
    close(fd);
    struct dfs_client_get_result r;
    if (get(f, "/corrupt", NULL, &r, &err) != DFS_OK)
        fail_msg("get: %s", err);
    assert_true(r.failovers >= 1);
    expect_same(f, f->dst);
    /* The damaged copy was reported before the get returned. */
    Dfs__V1__GetHealthResponse *h = NULL;
    assert_int_equal(dfs_client_health(f->c, false, 0, &h, &err), DFS_OK);
    assert_true(h->damage_reported >= 1);
    protobuf_c_message_free_unpacked(&h->base, NULL);
}

/* Progress callback: interrupt once this much has arrived. */
struct interrupt_at {
    uint64_t at;
    volatile sig_atomic_t flag;
};

static void interrupt_progress(void *arg, uint64_t done, uint64_t total)
{
    (void)total;
    struct interrupt_at *ia = arg;
    if (done >= ia->at)
        ia->flag = 1;
}

static void test_get_resume_continues_a_partial_download(void **state)
{
    struct fx *f = cluster(2);
    *state = f;
    make_source(f, 16 * MIB + 777, 5);
    struct dfs_client_put_opts po = {.replicas = 2, .fragments = 2};
    struct dfs_client_put_result pr;
    put(f, "/resume", &po, &pr);
    /* Slowed down (8 MiB/s a link) so that the interruption comes long before the end. */
    struct interrupt_at ia = {.at = 4 * MIB};
    struct dfs_client_get_opts o = {.link_rate = 8 * MIB,
                                    .interrupted = &ia.flag,
                                    .progress = interrupt_progress,
                                    .progress_arg = &ia};
    struct dfs_client_get_result r;
    char *err = NULL;
    assert_int_equal(get(f, "/resume", &o, &r, &err), DFS_ECANCELED);
    free(err);
    err = NULL;
    char part[PATH_MAX + 64], st[PATH_MAX + 64];
    snprintf(part, sizeof part, "%s.dfs-part", f->dst);
    snprintf(st, sizeof st, "%s.dfs-part.state", f->dst);
    assert_true(exists(part));
    assert_true(exists(st));
    assert_false(exists(f->dst));
    struct dfs_client_get_opts again = {.resume = true};
    if (get(f, "/resume", &again, &r, &err) != DFS_OK)
        fail_msg("resume: %s", err);
    assert_true(r.resumed >= 1 * MIB);
    assert_true(r.resumed < f->size);
    expect_same(f, f->dst);
    assert_false(exists(part));
    assert_false(exists(st));
    /* resume into standard output makes no sense: refused before anything moves. */
    assert_int_equal(dfs_client_get(f->c, "/resume", "-", &again, &r, &err), DFS_EINVAL);
    free(err);
}

static void test_throttled_links_take_at_least_bytes_over_rate(void **state)
{
    struct fx *f = cluster(2);
    *state = f;
    /* One copy of one fragment: one link carries the whole file, at 2 MiB/s. The bucket's burst
       is one message (1/16 s of the rate for a put, 1/32 s for a get), so the file takes at
       least (3 MiB - a burst) / rate = 1.44 s either way; the bound below leaves room. */
    make_source(f, 3 * MIB, 6);
    const uint64_t rate = 2 * MIB;
    struct dfs_client_put_opts po = {.replicas = 1, .fragments = 1, .link_rate = rate};
    struct dfs_client_put_result pr;
    double t0 = now_s();
    put(f, "/slow", &po, &pr);
    double put_s = now_s() - t0;
    assert_true(put_s >= 1.2);
    assert_true(put_s < 120);
    struct dfs_client_get_opts go = {.link_rate = rate};
    struct dfs_client_get_result gr;
    char *err = NULL;
    t0 = now_s();
    if (get(f, "/slow", &go, &gr, &err) != DFS_OK)
        fail_msg("get: %s", err);
    double get_s = now_s() - t0;
    assert_true(get_s >= 1.2);
    assert_true(get_s < 120);
    expect_same(f, f->dst);
    /* The whole transfer's limit holds as well: max_rate alone. */
    struct dfs_client_get_opts mo = {.max_rate = rate};
    t0 = now_s();
    if (get(f, "/slow", &mo, &gr, &err) != DFS_OK)
        fail_msg("get: %s", err);
    assert_true(now_s() - t0 >= 1.2);
}

/* A transfer held by the throttled get below: `started` once its first bytes arrived. */
struct held {
    dfs_client *c;
    char dst[PATH_MAX + 16];
    atomic_bool started;
    atomic_int rc; /* 1 while running */
};

static void held_progress(void *arg, uint64_t done, uint64_t total)
{
    (void)total;
    if (done > 0)
        atomic_store(&((struct held *)arg)->started, true);
}

static void *held_get(void *arg)
{
    struct held *h = arg;
    struct dfs_client_get_opts go = {
        .link_rate = 1 * MIB, .progress = held_progress, .progress_arg = h};
    struct dfs_client_get_result gr;
    char *err = NULL;
    atomic_store(&h->rc, dfs_client_get(h->c, "/slots", h->dst, &go, &gr, &err));
    free(err);
    return NULL;
}

static void test_transfer_slots_bound_concurrent_transfers(void **state)
{
    struct fx *f = cluster(2);
    *state = f;
    make_source(f, 3 * MIB, 8);
    struct dfs_client_put_opts po = {.replicas = 1, .fragments = 1};
    struct dfs_client_put_result pr;
    put(f, "/slots", &po, &pr);
    /* One slot, and a short wait for it. */
    struct dfs_client_options o = {.metadata = f->addr,
                                   .timeout_ms = 20000,
                                   .token = f->token,
                                   .max_transfers = 1,
                                   .transfer_wait_ms = 200};
    char *err = NULL;
    struct held h = {.started = false};
    atomic_store(&h.rc, 1);
    if (dfs_client_open(&o, &h.c, &err) != DFS_OK)
        fail_msg("open: %s", err);
    snprintf(h.dst, sizeof h.dst, "%s/held", f->dir);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, held_get, &h), 0);
    /* The throttled get holds the slot for at least 2.5 s (3 MiB at 1 MiB/s); the others wait
       200 ms for it, then are refused. */
    while (!atomic_load(&h.started) && atomic_load(&h.rc) == 1) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    struct dfs_client_get_opts none = {0};
    struct dfs_client_get_result gr;
    int rc = dfs_client_get(h.c, "/slots", f->dst, &none, &gr, &err);
    assert_true(atomic_load(&h.started)); /* nothing above may have raced past the held get */
    assert_int_equal(rc, DFS_EUNAVAIL);
    assert_non_null(strstr(err, "too many transfers at once"));
    free(err);
    err = NULL;
    assert_int_equal(dfs_client_put(h.c, f->src, "/other", &po, &pr, &err), DFS_EUNAVAIL);
    free(err);
    err = NULL;
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(atomic_load(&h.rc), DFS_OK);
    /* The slot is free again. */
    if (dfs_client_get(h.c, "/slots", f->dst, &none, &gr, &err) != DFS_OK)
        fail_msg("get after the slot was freed: %s", err);
    expect_same(f, f->dst);
    dfs_client_close(h.c);
}

static void test_erasure_read_rebuilds_a_data_fragment_whose_node_is_gone(void **state)
{
    struct fx *f = cluster(3);
    *state = f;
    make_source(f, 5 * MIB + 12345, 7);
    struct dfs_client_put_opts po = {.ec_data = 2, .ec_parity = 1};
    struct dfs_client_put_result pr;
    put(f, "/ec", &po, &pr);
    assert_int_equal(pr.ec_data, 2);
    assert_int_equal(pr.ec_parity, 1);
    Dfs__V1__FileInfo *fi = NULL;
    char *err = NULL;
    assert_int_equal(dfs_client_stat(f->c, "/ec", &fi, &err), DFS_OK);
    assert_int_equal(fi->n_fragments, 3);
    /* Fragment 0 holds data cells: its only node goes away. */
    const Dfs__V1__Fragment *fr = fi->fragments[0];
    for (size_t i = 0; i < fi->n_fragments; i++)
        if (fi->fragments[i]->index == 0)
            fr = fi->fragments[i];
    assert_int_equal(fr->n_replicas, 1);
    node_stop(node_at(f, fr->replicas[0]->address));
    protobuf_c_message_free_unpacked(&fi->base, NULL);
    struct dfs_client_get_result r;
    if (get(f, "/ec", NULL, &r, &err) != DFS_OK)
        fail_msg("get: %s", err);
    assert_true(r.rebuilt >= 1);
    expect_same(f, f->dst);
    /* A range streamed to a descriptor is rebuilt the same way. */
    expect_range(f, "/ec", 123, 3 * MIB, &r);
    assert_true(r.rebuilt >= 1);
}

/* ---- leader following (services/rpc/leader.h) ---- */

/* A loopback address nothing listens on. */
static void dead_address(char *buf, size_t cap)
{
    struct dfs_rpc_server_config scfg = {.listen = "127.0.0.1:0", .threads = 1};
    dfs_rpc_server *srv = NULL;
    assert_int_equal(dfs_rpc_server_create(&scfg, &srv, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(srv, NULL), DFS_OK);
    snprintf(buf, cap, "127.0.0.1:%d", dfs_rpc_server_port(srv));
    dfs_rpc_server_destroy(srv);
}

/* A client given "DEAD,FOLLOWER" (the follower names the real service) puts and gets. */
static void test_a_metadata_list_follows_the_leader(void **state)
{
    struct fx *f = cluster(3);
    *state = f;
    dfs_rpc_follower *fol = NULL;
    assert_int_equal(dfs_rpc_follower_start(f->addr, "replica 2 is not the leader", &fol), DFS_OK);
    char dead[64], list[160];
    dead_address(dead, sizeof dead);
    snprintf(list, sizeof list, "%s,127.0.0.1:%d", dead, dfs_rpc_follower_port(fol));
    dfs_client *c = NULL;
    char *err = NULL;
    struct dfs_client_options o = {.metadata = list, .timeout_ms = 20000, .token = f->token};
    if (dfs_client_open(&o, &c, &err) != DFS_OK)
        fail_msg("open: %s", err);
    assert_string_equal(dfs_client_metadata(c), list);
    dfs_client *own = f->c;
    f->c = c;
    make_source(f, 2 * MIB + 17, 11);
    struct dfs_client_put_result pr;
    put(f, "/led/a", NULL, &pr);
    struct dfs_client_get_result r;
    if (get(f, "/led/a", NULL, &r, &err) != DFS_OK)
        fail_msg("get: %s", err);
    expect_same(f, f->dst);
    /* The follower was asked once: every later call went to the leader it named. */
    assert_int_equal(dfs_rpc_follower_calls(fol), 1);
    f->c = own;
    dfs_client_close(c);
    dfs_rpc_follower_stop(fol);
}

/* A call that is not idempotent is not made again after a failure that may have reached a
   server; an idempotent one goes on to the next replica. */
static void test_an_ambiguous_failure_is_not_retried_for_a_write(void **state)
{
    struct fx *f = cluster(3);
    *state = f;
    make_source(f, 1000, 12);
    struct dfs_client_put_result pr;
    put(f, "/amb/a", NULL, &pr);
    dfs_rpc_follower *gone = NULL;
    assert_int_equal(dfs_rpc_follower_start(NULL, "Socket closed", &gone), DFS_OK);
    char list[160];
    snprintf(list, sizeof list, "127.0.0.1:%d,%s", dfs_rpc_follower_port(gone), f->addr);
    dfs_client *c = NULL;
    char *err = NULL;
    struct dfs_client_options o = {.metadata = list, .timeout_ms = 20000, .token = f->token};
    assert_int_equal(dfs_client_open(&o, &c, &err), DFS_OK);
    assert_int_equal(dfs_client_rm(c, "/amb/a", NULL, &err), DFS_EUNAVAIL);
    if (strstr(err, "DeleteFile may or may not have been done") == NULL)
        fail_msg("unexpected message: %s", err);
    assert_int_equal(dfs_rpc_follower_calls(gone), 1);
    /* Nothing reached the leader: the file is still there, and a read (idempotent) that meets
       the same failure goes on to the leader. */
    dfs_client_close(c);
    assert_int_equal(dfs_client_open(&o, &c, &err), DFS_OK);
    Dfs__V1__FileInfo *fi = NULL;
    if (dfs_client_stat(c, "/amb/a", &fi, &err) != DFS_OK)
        fail_msg("stat: %s", err);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
    assert_int_equal(dfs_rpc_follower_calls(gone), 2);
    free(err);
    dfs_client_close(c);
    dfs_rpc_follower_stop(gone);
}

int main(void)
{
    dfs_log_init("dfs_client_test", DFS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_refuses_what_it_cannot_use),
        cmocka_unit_test_teardown(test_a_metadata_list_follows_the_leader, teardown),
        cmocka_unit_test_teardown(test_an_ambiguous_failure_is_not_retried_for_a_write, teardown),
        cmocka_unit_test_teardown(test_every_verb_against_the_service, teardown),
        cmocka_unit_test_teardown(test_small_files_are_one_fragment, teardown),
        cmocka_unit_test_teardown(test_put_from_memory, teardown),
        cmocka_unit_test_teardown(test_transfers_share_channels_that_survive_a_node_restart,
                                  teardown),
        cmocka_unit_test_teardown(test_put_fails_over_a_node_that_stops_mid_fragment, teardown),
        cmocka_unit_test_teardown(test_get_fails_over_a_node_that_stops_mid_fragment, teardown),
        cmocka_unit_test_teardown(test_get_fails_over_a_corrupt_block_and_reports_it, teardown),
        cmocka_unit_test_teardown(test_get_resume_continues_a_partial_download, teardown),
        cmocka_unit_test_teardown(test_throttled_links_take_at_least_bytes_over_rate, teardown),
        cmocka_unit_test_teardown(test_transfer_slots_bound_concurrent_transfers, teardown),
        cmocka_unit_test_teardown(test_erasure_read_rebuilds_a_data_fragment_whose_node_is_gone,
                                  teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
