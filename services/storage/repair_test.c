/*
 * Tests of Storage.RepairFragment (services/storage/repair.c behind
 * services/storage/storage_service.c): real storage nodes (store in a temp dir, the service on a
 * gRPC server on a loopback port), fragments copied or rebuilt between them.
 */
#include "services/storage/repair.h"

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/id.h"
#include "common/log.h"
#include "dfs/v1/storage.pb-c.h"
#include "services/rpc/client.h"
#include "services/rpc/loop.h"
#include "services/rpc/server.h"
#include "services/rpc/ticket_testing.h"
#include "services/storage/storage_service.h"
#include "storage/ec.h"
#include "storage/frag_store.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define B   ((size_t)DFS_BLOCK_SIZE)
#define MIB ((size_t)1 << 20)

#define REPAIR_METHOD "/dfs.v1.Storage/RepairFragment"

/* ---- nodes ---- */

/* The damaged sources a node's repairs reported (on_peer_damage), in order. */
#define DAMAGE_MAX 16
struct damage_log {
    pthread_mutex_t mu;
    int n;
    int damage[DAMAGE_MAX];
    char node[DAMAGE_MAX][DFS_ID_HEX + 1];
    char frag[DAMAGE_MAX][DFS_FRAGMENT_ID_HEX + 1];
};

struct node {
    char root[PATH_MAX];
    char data[PATH_MAX + 8];
    char addr[64];
    dfs_frag_store *store;
    dfs_storage_service *svc;
    dfs_rpc_server *srv;
    dfs_rpc_channel *ch;
    char node_id[DFS_ID_HEX + 1];
    struct damage_log damage;
};

static void peer_damage(void *arg, const Dfs__V1__Ticket *ticket, int damage, const char *detail)
{
    (void)detail;
    struct damage_log *d = arg;
    pthread_mutex_lock(&d->mu);
    if (d->n < DAMAGE_MAX) {
        d->damage[d->n] = damage;
        snprintf(d->node[d->n], sizeof d->node[0], "%s", ticket->node_id);
        snprintf(d->frag[d->n], sizeof d->frag[0], "%s", ticket->fragment_id);
        d->n++;
    }
    pthread_mutex_unlock(&d->mu);
}

/* Whether node n's repairs reported fragment `id` on node `holder` with this damage. */
static bool reported(struct node *n, const char *id, const struct node *holder, int damage)
{
    bool found = false;
    pthread_mutex_lock(&n->damage.mu);
    for (int i = 0; i < n->damage.n && !found; i++)
        found = n->damage.damage[i] == damage && strcmp(n->damage.frag[i], id) == 0 &&
                strcmp(n->damage.node[i], holder->node_id) == 0;
    pthread_mutex_unlock(&n->damage.mu);
    return found;
}

static int reports(struct node *n)
{
    pthread_mutex_lock(&n->damage.mu);
    int k = n->damage.n;
    pthread_mutex_unlock(&n->damage.mu);
    return k;
}

struct node_opts {
    uint64_t repair_rate;
    int repair_workers;
};

static void node_open(struct node *n, const struct node_opts *o)
{
    const char *base = getenv("TEST_TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(n->root, sizeof n->root, "%s/repair_test.XXXXXX", base);
    assert_non_null(mkdtemp(n->root));
    snprintf(n->data, sizeof n->data, "%s/data", n->root);
    char *err = NULL;
    assert_int_equal(dfs_frag_store_open(n->data, NULL, &n->store, &err), DFS_OK);
    pthread_mutex_init(&n->damage.mu, NULL);
    struct dfs_storage_service_config cfg = {
        .repair_rate = o != NULL ? o->repair_rate : 0,
        .repair_workers = o != NULL ? o->repair_workers : 0,
        .repair_stall_ms = 5000,
        .on_peer_damage = peer_damage,
        .damage_arg = &n->damage,
    };
    assert_int_equal(dfs_storage_service_create(n->store, &cfg, &n->svc, &err), DFS_OK);
    struct dfs_rpc_server_config scfg = {.listen = "127.0.0.1:0", .threads = 2};
    assert_int_equal(dfs_rpc_server_create(&scfg, &n->srv, &err), DFS_OK);
    assert_int_equal(dfs_storage_service_register(n->svc, n->srv, &err), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(n->srv, &err), DFS_OK);
    snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d", dfs_rpc_server_port(n->srv));
    snprintf(n->node_id, sizeof n->node_id, "%s", dfs_frag_store_node_id(n->store));
    uint8_t key[DFS_TICKET_KEY_LEN];
    dfs_test_node_key(n->node_id, key);
    assert_int_equal(dfs_storage_service_set_ticket_key(n->svc, key, sizeof key, &err), DFS_OK);
    dfs_test_node_remember(n->addr, n->node_id);
    assert_int_equal(dfs_rpc_channel_create(n->addr, &n->ch, &err), DFS_OK);
    /* Connect before the test (see storage_service_test.c: a loaded machine can miss gRPC's
       first 100 ms connect attempt). */
    Dfs__V1__StatFragmentRequest req = DFS__V1__STAT_FRAGMENT_REQUEST__INIT;
    req.fragment_id = "0000000000000000000000000000000000000000";
    struct dfs_test_ticket tt;
    req.ticket = dfs_test_ticket(&tt, DFS_TICKET_STAT, req.fragment_id, n->node_id, 0);
    ProtobufCMessage *resp = NULL;
    int rc = dfs_rpc_unary_retry(n->ch, "/dfs.v1.Storage/StatFragment", &req.base,
                                 &dfs__v1__stat_fragment_response__descriptor, &resp, 10000, 60000,
                                 &err);
    if (rc != DFS_ENOTFOUND)
        fail_msg("warm-up StatFragment: %s", err != NULL ? err : dfs_strerror(rc));
    free(err);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* Entries in the node's tmp/ (a failed repair must leave none). */
static int tmp_entries(const struct node *n)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/tmp", n->data);
    DIR *d = opendir(path);
    assert_non_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            count++;
    closedir(d);
    return count;
}

static void node_close(struct node *n)
{
    dfs_rpc_channel_destroy(n->ch);
    dfs_rpc_server_destroy(n->srv);
    struct dfs_storage_service_stats st;
    dfs_storage_service_stats(n->svc, &st);
    assert_int_equal(st.repairs_active, 0);
    dfs_storage_service_destroy(n->svc);
    dfs_frag_store_close(n->store);
    pthread_mutex_destroy(&n->damage.mu);
    assert_int_equal(nftw(n->root, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

/* Four plain nodes (0..3) and an address where nothing answers. */
#define NODES 4

struct fx {
    struct node n[NODES];
    int dead_fd;
    char dead[64];
};

static int setup_with(void **state, const struct node_opts *target)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    for (int i = 0; i < NODES; i++)
        node_open(&f->n[i], i == 1 ? target : NULL);
    f->dead_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->dead_fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->dead_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(f->dead_fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(f->dead, sizeof f->dead, "127.0.0.1:%d", ntohs(sa.sin_port));
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, NULL);
}

/* Node 1 repairs at 4 MiB/s with 2 workers. */
static int setup_slow(void **state)
{
    struct node_opts o = {.repair_rate = 4 * MIB, .repair_workers = 2};
    return setup_with(state, &o);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < NODES; i++)
        node_close(&f->n[i]);
    close(f->dead_fd);
    free(f);
    return 0;
}

/* ---- helpers ---- */

static unsigned char *make_data(size_t n, uint64_t seed)
{
    unsigned char *p = malloc(n + 1);
    assert_non_null(p);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)x;
    }
    return p;
}

static void make_id(unsigned seed, char out[DFS_FRAGMENT_ID_HEX + 1])
{
    snprintf(out, DFS_FRAGMENT_ID_HEX + 1, "%08x%032x", seed, 0xabcu);
}

static uint32_t checksum_of(const unsigned char *data, size_t n)
{
    size_t nb = dfs_crc32c_nblocks(n);
    uint32_t *crcs = malloc((nb + 1) * sizeof *crcs);
    dfs_crc32c_blocks(data, n, crcs);
    uint32_t c = dfs_crc32c_of_table(crcs, nb);
    free(crcs);
    return c;
}

/* Store data as fragment id on a node, straight through its store. */
static void store_put(struct node *n, const char *id, const unsigned char *data, size_t len)
{
    dfs_frag_writer *w = NULL;
    char *err = NULL;
    assert_int_equal(dfs_frag_writer_begin(n->store, id, len, &w, &err), DFS_OK);
    uint32_t crcs[16];
    for (size_t off = 0; off < len; off += MIB) {
        size_t k = len - off < MIB ? len - off : MIB;
        dfs_crc32c_blocks(data + off, k, crcs);
        assert_int_equal(
            dfs_frag_writer_append(w, data + off, k, crcs, dfs_crc32c_nblocks(k), &err), DFS_OK);
    }
    uint32_t sum = 0;
    assert_int_equal(dfs_frag_writer_commit(w, &sum, &err), DFS_OK);
    assert_int_equal(sum, checksum_of(data, len));
}

/* The whole fragment as stored on a node (NULL when absent); *len its size. */
static unsigned char *store_get(struct node *n, const char *id, size_t *len)
{
    dfs_frag_reader *r = NULL;
    if (dfs_frag_reader_open(n->store, id, &r, NULL) != DFS_OK)
        return NULL;
    *len = dfs_frag_reader_size(r);
    unsigned char *buf = malloc(*len + 1);
    uint32_t *crcs = malloc((dfs_crc32c_nblocks(*len) + 1) * sizeof *crcs);
    assert_int_equal(dfs_frag_reader_read(r, 0, buf, *len, crcs, NULL), DFS_OK);
    free(crcs);
    dfs_frag_reader_close(r);
    return buf;
}

/* Flip one bit of the stored data at offset `at`. */
static void corrupt(struct node *n, const char *id, uint64_t at)
{
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/fragments/%.2s/%.2s/%s", n->data, id, id + 2, id);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, (off_t)(DFS_FRAG_HEADER_SIZE + at)), 1);
    c ^= 0x10;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)(DFS_FRAG_HEADER_SIZE + at)), 1);
    close(fd);
}

struct repair_out {
    int status;
    char message[1024];
    Dfs__V1__RepairFragmentResponse *resp;
};

static int repair_rpc(struct node *n, const Dfs__V1__RepairFragmentRequest *req, int64_t timeout_ms,
                      struct repair_out *out)
{
    char *err = NULL;
    ProtobufCMessage *resp = NULL;
    out->resp = NULL;
    /* Tickets as the metadata service gives them: REPAIR for this node, GET for every source
       (unless the test set its own). */
    Dfs__V1__RepairFragmentRequest r = *req;
    struct dfs_test_ticket own, src[DFS_EC_MAX_FRAGMENTS * 2];
    Dfs__V1__Ticket *sp[DFS_EC_MAX_FRAGMENTS * 2];
    r.ticket = dfs_test_ticket(&own, DFS_TICKET_REPAIR, req->fragment_id, n->node_id, 0);
    if (r.n_source_tickets == 0 && r.n_sources <= DFS_EC_MAX_FRAGMENTS * 2) {
        for (size_t i = 0; i < r.n_sources; i++)
            sp[i] = dfs_test_ticket(&src[i], DFS_TICKET_GET, req->fragment_id,
                                    dfs_test_node_of(r.sources[i]), 0);
        r.source_tickets = sp;
        r.n_source_tickets = r.n_sources;
    }
    for (size_t i = 0;
         r.erasure != NULL && i < r.erasure->n_sources && i < DFS_EC_MAX_FRAGMENTS * 2; i++) {
        Dfs__V1__ErasureSource *es = r.erasure->sources[i];
        es->ticket = dfs_test_ticket(&src[i], DFS_TICKET_GET, es->fragment_id,
                                     dfs_test_node_of(es->address), 0);
    }
    req = &r;
    out->status =
        dfs_rpc_unary(n->ch, REPAIR_METHOD, &req->base,
                      &dfs__v1__repair_fragment_response__descriptor, &resp, timeout_ms, &err);
    snprintf(out->message, sizeof out->message, "%s", err != NULL ? err : "");
    free(err);
    if (out->status == DFS_OK)
        out->resp = (Dfs__V1__RepairFragmentResponse *)resp;
    return out->status;
}

static void repair_out_free(struct repair_out *o)
{
    if (o->resp != NULL)
        protobuf_c_message_free_unpacked(&o->resp->base, NULL);
    o->resp = NULL;
}

#define expect_status(got, want, msg)                                                             \
    do {                                                                                          \
        int got_ = (got);                                                                         \
        if (got_ != (want))                                                                       \
            fail_msg("status %d (%s), expected %d: %s", got_, dfs_strerror(got_), (want), (msg)); \
    } while (0)

/* A copy request for id from the given sources. */
static Dfs__V1__RepairFragmentRequest copy_req(const char *id, uint64_t size, uint32_t checksum,
                                               char **sources, size_t nsources)
{
    Dfs__V1__RepairFragmentRequest req = DFS__V1__REPAIR_FRAGMENT_REQUEST__INIT;
    req.fragment_id = (char *)id;
    req.size = size;
    req.checksum = checksum;
    req.sources = sources;
    req.n_sources = nsources;
    return req;
}

/* Assert the node holds exactly data as id. */
static void expect_holds(struct node *n, const char *id, const unsigned char *data, size_t len)
{
    size_t got = 0;
    unsigned char *buf = store_get(n, id, &got);
    assert_non_null(buf);
    assert_int_equal(got, len);
    assert_memory_equal(buf, data, len);
    free(buf);
}

/* ---- copy ---- */

static void test_copy_sizes(void **state)
{
    struct fx *f = *state;
    size_t sizes[] = {0, 1, B - 1, B, B + 1, 3 * MIB + 12345};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char id[DFS_FRAGMENT_ID_HEX + 1];
        make_id(100 + (unsigned)i, id);
        unsigned char *data = make_data(sizes[i], i + 1);
        store_put(&f->n[0], id, data, sizes[i]);
        char *src[] = {f->n[0].addr};
        Dfs__V1__RepairFragmentRequest req =
            copy_req(id, sizes[i], checksum_of(data, sizes[i]), src, 1);
        struct repair_out o;
        expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_OK, o.message);
        assert_string_equal(o.resp->fragment_id, id);
        assert_int_equal(o.resp->size, sizes[i]);
        assert_int_equal(o.resp->checksum, req.checksum);
        assert_int_equal(o.resp->bytes_read, sizes[i]);
        assert_string_equal(o.resp->source, f->n[0].addr);
        repair_out_free(&o);
        expect_holds(&f->n[1], id, data, sizes[i]);
        free(data);
    }
    struct dfs_storage_service_stats st;
    dfs_storage_service_stats(f->n[1].svc, &st);
    assert_int_equal(st.repairs_ok, 6);
    assert_int_equal(st.repairs_failed, 0);
    assert_int_equal(st.repair_bytes_read, 0 + 1 + (B - 1) + B + (B + 1) + 3 * MIB + 12345);
}

static void test_bad_sources_skipped(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(200, id);
    size_t n = 2 * MIB + 7;
    unsigned char *data = make_data(n, 200);
    unsigned char *other = make_data(n, 201);
    uint32_t sum = checksum_of(data, n);
    /* node 2 holds other bytes under the id, node 3 a corrupt copy, node 0 the right one. */
    store_put(&f->n[2], id, other, n);
    store_put(&f->n[3], id, data, n);
    corrupt(&f->n[3], id, MIB + 5);
    store_put(&f->n[0], id, data, n);
    char *src[] = {f->dead, f->n[2].addr, f->n[3].addr, f->n[0].addr};
    Dfs__V1__RepairFragmentRequest req = copy_req(id, n, sum, src, 4);
    struct repair_out o;
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_OK, o.message);
    assert_string_equal(o.resp->source, f->n[0].addr);
    assert_int_equal(o.resp->checksum, sum);
    /* node 2 was refused on its header (nothing read), node 3 after its first good 1 MiB. */
    assert_true(o.resp->bytes_read >= n && o.resp->bytes_read <= n + 2 * MIB);
    repair_out_free(&o);
    expect_holds(&f->n[1], id, data, n);
    assert_int_equal(tmp_entries(&f->n[1]), 0);
    /* The damaged sources were reported, with the tickets they were read with; the address
       where nothing answers was not (a node down is not a damaged copy). */
    assert_true(reported(&f->n[1], id, &f->n[2], 2 /* DAMAGE_WRONG_CHECKSUM */));
    assert_true(reported(&f->n[1], id, &f->n[3], 1 /* DAMAGE_CORRUPT */));
    assert_int_equal(reports(&f->n[1]), 2);
    /* A source that lacks the fragment: DAMAGE_MISSING. */
    char id2[DFS_FRAGMENT_ID_HEX + 1];
    make_id(201, id2);
    store_put(&f->n[0], id2, data, n);
    char *src2[] = {f->n[2].addr, f->n[0].addr};
    req = copy_req(id2, n, sum, src2, 2);
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_OK, o.message);
    repair_out_free(&o);
    assert_true(reported(&f->n[1], id2, &f->n[2], 3 /* DAMAGE_MISSING */));
    assert_int_equal(reports(&f->n[1]), 3);
    free(data);
    free(other);
}

static void test_wrong_checksum_refused(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(300, id);
    size_t n = MIB + 3;
    unsigned char *data = make_data(n, 300);
    store_put(&f->n[0], id, data, n);
    char *src[] = {f->n[0].addr, f->dead};
    Dfs__V1__RepairFragmentRequest req = copy_req(id, n, checksum_of(data, n) ^ 1, src, 2);
    struct repair_out o;
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_EPRECOND, o.message);
    /* The message names every source and why. */
    assert_non_null(strstr(o.message, f->n[0].addr));
    assert_non_null(strstr(o.message, "checksum"));
    assert_non_null(strstr(o.message, f->dead));
    size_t len;
    assert_null(store_get(&f->n[1], id, &len));
    assert_int_equal(tmp_entries(&f->n[1]), 0);
    /* Wrong size: refused the same way. */
    req = copy_req(id, n + 1, checksum_of(data, n), src, 1);
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_EPRECOND, o.message);
    assert_non_null(strstr(o.message, "bytes"));
    /* No sources at all. */
    req = copy_req(id, n, checksum_of(data, n), NULL, 0);
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_EPRECOND, o.message);
    /* Malformed requests. */
    char *bad_src[] = {"no-port"};
    req = copy_req(id, n, 0, bad_src, 1);
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_EINVAL, o.message);
    req = copy_req("../../etc/passwd", n, 0, src, 1);
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_EINVAL, o.message);
    struct dfs_storage_service_stats st;
    dfs_storage_service_stats(f->n[1].svc, &st);
    assert_int_equal(st.repairs_failed, 5);
    assert_int_equal(st.repairs_ok, 0);
    free(data);
}

static void test_already_present_and_replaced(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(400, id);
    size_t n = 300000;
    unsigned char *data = make_data(n, 400);
    unsigned char *stale = make_data(n, 401);
    uint32_t sum = checksum_of(data, n);
    store_put(&f->n[0], id, data, n);
    /* A wrong copy on the target is replaced. */
    store_put(&f->n[1], id, stale, n);
    char *src[] = {f->n[0].addr};
    Dfs__V1__RepairFragmentRequest req = copy_req(id, n, sum, src, 1);
    struct repair_out o;
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_OK, o.message);
    assert_int_equal(o.resp->bytes_read, n);
    repair_out_free(&o);
    expect_holds(&f->n[1], id, data, n);
    /* Asking again: answered at once, from what is there, even with no reachable source. */
    char *dead[] = {f->dead};
    req = copy_req(id, n, sum, dead, 1);
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_OK, o.message);
    assert_int_equal(o.resp->bytes_read, 0);
    assert_string_equal(o.resp->source, "already present");
    assert_int_equal(o.resp->checksum, sum);
    repair_out_free(&o);
    /* A copy with the right header whose data rotted (what the scrubber finds) is replaced. */
    corrupt(&f->n[1], id, 70000);
    req = copy_req(id, n, sum, src, 1);
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_OK, o.message);
    assert_int_equal(o.resp->bytes_read, n);
    assert_string_equal(o.resp->source, f->n[0].addr);
    repair_out_free(&o);
    expect_holds(&f->n[1], id, data, n);
    free(data);
    free(stale);
}

struct concurrent {
    struct node *target;
    Dfs__V1__RepairFragmentRequest req;
    struct repair_out out;
    pthread_t th;
};

static void *concurrent_main(void *arg)
{
    struct concurrent *c = arg;
    repair_rpc(c->target, &c->req, 60000, &c->out);
    return NULL;
}

static void test_concurrent_repairs(void **state)
{
    struct fx *f = *state;
    enum { JOBS = 8 };
    struct concurrent c[JOBS];
    char ids[JOBS][DFS_FRAGMENT_ID_HEX + 1];
    unsigned char *data[JOBS];
    size_t n = MIB + 100;
    char *src[] = {f->n[0].addr, f->n[2].addr};
    for (int i = 0; i < JOBS; i++) {
        make_id(500 + (unsigned)i, ids[i]);
        data[i] = make_data(n, 500 + (unsigned)i);
        store_put(&f->n[i % 2 == 0 ? 0 : 2], ids[i], data[i], n);
        c[i].target = &f->n[1];
        c[i].req = copy_req(ids[i], n, checksum_of(data[i], n), src, 2);
    }
    for (int i = 0; i < JOBS; i++)
        assert_int_equal(pthread_create(&c[i].th, NULL, concurrent_main, &c[i]), 0);
    for (int i = 0; i < JOBS; i++) {
        pthread_join(c[i].th, NULL);
        expect_status(c[i].out.status, DFS_OK, c[i].out.message);
        assert_string_equal(c[i].out.resp->source, i % 2 == 0 ? f->n[0].addr : f->n[2].addr);
        repair_out_free(&c[i].out);
        expect_holds(&f->n[1], ids[i], data[i], n);
        free(data[i]);
    }
}

/* ---- rate and cancel (node 1 repairs at 4 MiB/s) ---- */

static void test_rate_shared_by_all_repairs(void **state)
{
    struct fx *f = *state;
    enum { JOBS = 3 };
    struct concurrent c[JOBS];
    char ids[JOBS][DFS_FRAGMENT_ID_HEX + 1];
    unsigned char *data[JOBS];
    size_t n = 4 * MIB;
    char *src[] = {f->n[0].addr};
    for (int i = 0; i < JOBS; i++) {
        make_id(600 + (unsigned)i, ids[i]);
        data[i] = make_data(n, 600 + (unsigned)i);
        store_put(&f->n[0], ids[i], data[i], n);
        c[i].target = &f->n[1];
        c[i].req = copy_req(ids[i], n, checksum_of(data[i], n), src, 1);
    }
    int64_t t0 = dfs_clock_mono_ns();
    for (int i = 0; i < JOBS; i++)
        assert_int_equal(pthread_create(&c[i].th, NULL, concurrent_main, &c[i]), 0);
    for (int i = 0; i < JOBS; i++) {
        pthread_join(c[i].th, NULL);
        expect_status(c[i].out.status, DFS_OK, c[i].out.message);
        repair_out_free(&c[i].out);
        free(data[i]);
    }
    double secs = (double)(dfs_clock_mono_ns() - t0) / 1e9;
    /* 12 MiB through one 4 MiB/s bucket (1 MiB burst): about 2.75 s whatever the number of
       workers. Loose bounds: the point is that the workers do not each get the rate. */
    print_message("3 x 4 MiB repaired at 4 MiB/s in %.2f s\n", secs);
    assert_true(secs > 2.0);
    assert_true(secs < 30.0);
}

static void test_deadline_cancels_pull(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(700, id);
    size_t n = 16 * MIB;
    unsigned char *data = make_data(n, 700);
    store_put(&f->n[0], id, data, n);
    char *src[] = {f->n[0].addr};
    Dfs__V1__RepairFragmentRequest req = copy_req(id, n, checksum_of(data, n), src, 1);
    struct repair_out o;
    int64_t t0 = dfs_clock_mono_ns();
    int rc = repair_rpc(&f->n[1], &req, 500, &o);
    assert_true(rc == DFS_ETIMEDOUT || rc == DFS_ECANCELED);
    /* The node gives up soon after (not after the 4 s the copy would take). */
    struct dfs_storage_service_stats st;
    for (int i = 0; i < 200; i++) {
        dfs_storage_service_stats(f->n[1].svc, &st);
        if (st.repairs_active == 0)
            break;
        usleep(10000);
    }
    assert_int_equal(st.repairs_active, 0);
    assert_int_equal(st.repairs_failed, 1);
    assert_true(dfs_clock_mono_ns() - t0 < 3000000000ll);
    assert_true(st.repair_bytes_read < n);
    size_t len;
    assert_null(store_get(&f->n[1], id, &len));
    assert_int_equal(tmp_entries(&f->n[1]), 0);
    free(data);
}

/* ---- erasure rebuild ---- */

/*
 * A K+M file encoded as client/put.c does: cells of `cell` bytes, stripe s = file cells s*K ..
 * s*K+K-1 (zero-padded past the end) and their parity; fragment i = cell i of every stripe.
 */
struct ec_file {
    unsigned k, m;
    size_t cell, stripes, fsize;
    unsigned char *frag[DFS_EC_MAX_FRAGMENTS];
    char id[DFS_EC_MAX_FRAGMENTS][DFS_FRAGMENT_ID_HEX + 1];
};

static void ec_file_make(struct ec_file *e, unsigned k, unsigned m, size_t cell, size_t size,
                         unsigned seed)
{
    memset(e, 0, sizeof *e);
    e->k = k;
    e->m = m;
    e->cell = cell;
    e->stripes = (size + k * cell - 1) / (k * cell);
    if (e->stripes == 0)
        e->stripes = 1;
    e->fsize = e->stripes * cell;
    unsigned char *file = make_data(size, seed);
    for (unsigned i = 0; i < k + m; i++) {
        e->frag[i] = calloc(1, e->fsize + 1);
        assert_non_null(e->frag[i]);
        make_id(seed * 64 + i, e->id[i]);
    }
    dfs_ec *ec = NULL;
    assert_int_equal(dfs_ec_create(k, m, &ec, NULL), DFS_OK);
    for (size_t s = 0; s < e->stripes; s++) {
        uint8_t *cells[DFS_EC_MAX_FRAGMENTS];
        for (unsigned i = 0; i < k + m; i++)
            cells[i] = e->frag[i] + s * cell;
        for (unsigned i = 0; i < k; i++) {
            size_t off = (s * k + i) * cell;
            size_t n = off >= size ? 0 : size - off < cell ? size - off : cell;
            memcpy(cells[i], file + off, n); /* the rest stays zero */
        }
        dfs_ec_encode(ec, cell, (const uint8_t *const *)cells, cells + k);
    }
    dfs_ec_destroy(ec);
    free(file);
}

static void ec_file_free(struct ec_file *e)
{
    for (unsigned i = 0; i < e->k + e->m; i++)
        free(e->frag[i]);
}

/* The rebuild of fragment `index` with the given sources (all of them at `addrs[i]`). */
static Dfs__V1__RepairFragmentRequest ec_req(const struct ec_file *e, unsigned index,
                                             Dfs__V1__ErasureRebuild *er,
                                             Dfs__V1__ErasureSource *srcs,
                                             Dfs__V1__ErasureSource **ptrs, const unsigned *idx,
                                             char **addrs, size_t n)
{
    dfs__v1__erasure_rebuild__init(er);
    er->data = e->k;
    er->parity = e->m;
    er->cell_size = (uint32_t)e->cell;
    er->index = index;
    for (size_t i = 0; i < n; i++) {
        dfs__v1__erasure_source__init(&srcs[i]);
        srcs[i].index = idx[i];
        srcs[i].fragment_id = (char *)e->id[idx[i]];
        srcs[i].address = addrs[i];
        srcs[i].checksum = checksum_of(e->frag[idx[i]], e->fsize);
        ptrs[i] = &srcs[i];
    }
    er->sources = ptrs;
    er->n_sources = n;
    Dfs__V1__RepairFragmentRequest req =
        copy_req(e->id[index], e->fsize, checksum_of(e->frag[index], e->fsize), NULL, 0);
    req.erasure = er;
    return req;
}

/*
 * Fragments spread over nodes 0, 2 and 3 (fragment i on node {0,2,3}[i % 3]); node 1 rebuilds
 * each index in turn from all the others.
 */
static void rebuild_every_index(struct fx *f, unsigned k, unsigned m, size_t cell, size_t size,
                                unsigned seed)
{
    struct ec_file e;
    ec_file_make(&e, k, m, cell, size, seed);
    struct node *holders[3] = {&f->n[0], &f->n[2], &f->n[3]};
    for (unsigned i = 0; i < k + m; i++)
        store_put(holders[i % 3], e.id[i], e.frag[i], e.fsize);
    for (unsigned t = 0; t < k + m; t++) {
        Dfs__V1__ErasureRebuild er;
        Dfs__V1__ErasureSource srcs[DFS_EC_MAX_FRAGMENTS], *ptrs[DFS_EC_MAX_FRAGMENTS];
        unsigned idx[DFS_EC_MAX_FRAGMENTS];
        char *addrs[DFS_EC_MAX_FRAGMENTS];
        size_t n = 0;
        for (unsigned i = 0; i < k + m; i++)
            if (i != t) {
                idx[n] = i;
                addrs[n++] = holders[i % 3]->addr;
            }
        Dfs__V1__RepairFragmentRequest req = ec_req(&e, t, &er, srcs, ptrs, idx, addrs, n);
        struct repair_out o;
        expect_status(repair_rpc(&f->n[1], &req, 60000, &o), DFS_OK, o.message);
        assert_int_equal(o.resp->checksum, req.checksum);
        assert_int_equal(o.resp->size, e.fsize);
        assert_int_equal(o.resp->bytes_read, (uint64_t)k * e.fsize);
        char want[64];
        snprintf(want, sizeof want, "rebuilt from %u fragments", k);
        assert_string_equal(o.resp->source, want);
        repair_out_free(&o);
        expect_holds(&f->n[1], e.id[t], e.frag[t], e.fsize);
    }
    ec_file_free(&e);
}

static void test_rebuild_every_index_mib_cells(void **state)
{
    /* What the client makes of a large file: 1 MiB cells, several stripes, a padded last one. */
    rebuild_every_index(*state, 3, 2, MIB, 3 * 3 * MIB + 5000, 1);
}

static void test_rebuild_every_index_small_file(void **state)
{
    /* One stripe of 64-byte-rounded cells, as the client stores a small file. */
    rebuild_every_index(*state, 4, 2, 25024, 100000, 2);
    rebuild_every_index(*state, 2, 1, 64, 1, 3);
}

static void test_rebuild_odd_cells(void **state)
{
    /* Cells that are not block multiples over many stripes: blocks straddle batches. */
    rebuild_every_index(*state, 3, 3, 40000, 3 * 40000 * 90 - 17, 4);
}

static void test_rebuild_switches_source(void **state)
{
    struct fx *f = *state;
    struct ec_file e;
    ec_file_make(&e, 3, 2, MIB, 3 * 4 * MIB, 5);
    /* All on node 0, but fragment 0 corrupt in its third cell; fragment 1 is also offered at
       an address where nothing answers (first) and then on node 2. */
    for (unsigned i = 0; i < 5; i++)
        store_put(&f->n[0], e.id[i], e.frag[i], e.fsize);
    store_put(&f->n[2], e.id[1], e.frag[1], e.fsize);
    corrupt(&f->n[0], e.id[0], 2 * MIB + 77);
    Dfs__V1__ErasureRebuild er;
    Dfs__V1__ErasureSource srcs[8], *ptrs[8];
    unsigned idx[] = {0, 1, 1, 2, 4};
    char *addrs[] = {f->n[0].addr, f->dead, f->n[2].addr, f->n[0].addr, f->n[0].addr};
    Dfs__V1__RepairFragmentRequest req = ec_req(&e, 3, &er, srcs, ptrs, idx, addrs, 5);
    struct repair_out o;
    expect_status(repair_rpc(&f->n[1], &req, 60000, &o), DFS_OK, o.message);
    assert_int_equal(o.resp->checksum, req.checksum);
    /* Fragment 0 served two good cells before it failed: they were read, and again from 4. */
    assert_true(o.resp->bytes_read >= 3 * e.fsize);
    repair_out_free(&o);
    expect_holds(&f->n[1], e.id[3], e.frag[3], e.fsize);
    assert_true(reported(&f->n[1], e.id[0], &f->n[0], 1 /* DAMAGE_CORRUPT */));
    assert_int_equal(reports(&f->n[1]), 1);
    ec_file_free(&e);
}

static void test_rebuild_skips_a_source_with_another_checksum(void **state)
{
    struct fx *f = *state;
    struct ec_file e, other;
    ec_file_make(&e, 2, 2, 64 * 1024, 2 * 64 * 1024 * 4, 7);
    ec_file_make(&other, 2, 2, 64 * 1024, 2 * 64 * 1024 * 4, 8);
    /* Node 0 holds fragment 0 rewritten consistently with other data: every block matches its
       CRC, only its checksum differs from the catalog's. Fragments 1 and 2 are good. */
    store_put(&f->n[0], e.id[0], other.frag[0], e.fsize);
    store_put(&f->n[2], e.id[1], e.frag[1], e.fsize);
    store_put(&f->n[2], e.id[2], e.frag[2], e.fsize);
    Dfs__V1__ErasureRebuild er;
    Dfs__V1__ErasureSource srcs[8], *ptrs[8];
    unsigned idx[] = {0, 1, 2};
    char *addrs[] = {f->n[0].addr, f->n[2].addr, f->n[2].addr};
    Dfs__V1__RepairFragmentRequest req = ec_req(&e, 3, &er, srcs, ptrs, idx, addrs, 3);
    struct repair_out o;
    expect_status(repair_rpc(&f->n[1], &req, 60000, &o), DFS_OK, o.message);
    assert_int_equal(o.resp->checksum, req.checksum);
    repair_out_free(&o);
    expect_holds(&f->n[1], e.id[3], e.frag[3], e.fsize);
    assert_true(reported(&f->n[1], e.id[0], &f->n[0], 2 /* DAMAGE_WRONG_CHECKSUM */));
    ec_file_free(&e);
    ec_file_free(&other);
}

static void test_rebuild_too_few_sources(void **state)
{
    struct fx *f = *state;
    struct ec_file e;
    ec_file_make(&e, 3, 2, 64 * 1024, 3 * 64 * 1024 * 3, 6);
    for (unsigned i = 0; i < 5; i++)
        store_put(&f->n[0], e.id[i], e.frag[i], e.fsize);
    Dfs__V1__ErasureRebuild er;
    Dfs__V1__ErasureSource srcs[8], *ptrs[8];
    struct repair_out o;
    /* Only two distinct fragments offered. */
    unsigned idx2[] = {0, 1, 1};
    char *addrs2[] = {f->n[0].addr, f->n[0].addr, f->n[2].addr};
    Dfs__V1__RepairFragmentRequest req = ec_req(&e, 4, &er, srcs, ptrs, idx2, addrs2, 3);
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_EPRECOND, o.message);
    /* Three offered, but one is not there. */
    unsigned idx3[] = {0, 1, 2};
    char *addrs3[] = {f->n[0].addr, f->dead, f->n[0].addr};
    req = ec_req(&e, 4, &er, srcs, ptrs, idx3, addrs3, 3);
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_EPRECOND, o.message);
    assert_non_null(strstr(o.message, "only 2 of the 3"));
    assert_non_null(strstr(o.message, f->dead));
    size_t len;
    assert_null(store_get(&f->n[1], e.id[4], &len));
    assert_int_equal(tmp_entries(&f->n[1]), 0);
    /* A source naming the target's own index, a bad cell size: INVALID_ARGUMENT. */
    unsigned self[] = {0, 1, 4};
    req = ec_req(&e, 4, &er, srcs, ptrs, self, addrs2, 3);
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_EINVAL, o.message);
    req = ec_req(&e, 4, &er, srcs, ptrs, idx3, addrs3, 3);
    er.cell_size = 1000; /* does not divide the size */
    expect_status(repair_rpc(&f->n[1], &req, 30000, &o), DFS_EINVAL, o.message);
    ec_file_free(&e);
}

int main(void)
{
    dfs_log_init("repair_test", DFS_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_copy_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_sources_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_checksum_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_already_present_and_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_repairs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_shared_by_all_repairs, setup_slow, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_cancels_pull, setup_slow, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_every_index_mib_cells, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_every_index_small_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_odd_cells, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_switches_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_skips_a_source_with_another_checksum, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_too_few_sources, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
