/*
 * Tests of the get engine (client/get.c, client/ec_get.c) against nodes that misbehave in ways real
 * dfs-storage nodes cannot be made to: small servers (our rpc server on loopback) that answer
 * Storage.GetFragment from memory, honestly or not, and a Metadata server that answers GetFile
 * with a layout of our choosing and records ReportDamage. What is checked: a copy announcing
 * another checksum is skipped before its bytes are used; a copy that announces the catalog's
 * checksum over other data (its blocks each fine) is found by reading the fragment whole from one
 * copy at a time, and an erasure data fragment like it is rebuilt from parity; a fragment whose
 * copies are all gone is found in a layout fetched again; every damaged copy is reported with
 * its ticket.
 */
#include "client/get.h"

#include "client/meta.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/id.h"
#include "common/log.h"
#include "dfs/v1/metadata.pb-c.h"
#include "dfs/v1/storage.pb-c.h"
#include "services/rpc/server.h"
#include "storage/ec.h"

#include <fcntl.h>
#include <limits.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define MIB      ((size_t)1 << 20)
#define FILE_ID  "00112233445566778899aabbccddeeff"
#define MAX_FRAG 4

/* How a fake node serves a fragment. */
enum behaviour {
    GOOD,    /* the fragment, its checksum */
    OTHER,   /* other data, with its own (true) checksum: a copy rewritten consistently */
    LIE,     /* other data under the catalog's checksum: blocks fine, the whole wrong */
    MISSING, /* NOT_FOUND */
};

/* A fragment's two versions: the catalog's, and other data of the same size. */
struct frag {
    char id[DFS_FRAGMENT_ID_HEX + 1];
    uint8_t *good, *other;
    uint64_t size;
    uint32_t checksum, other_checksum;
};

/* A fake storage node: one server, one behaviour for every fragment it is asked for. */
struct node {
    dfs_rpc_server *srv;
    char addr[64];
    char id[DFS_ID_HEX + 1];
    enum behaviour how;
    struct frag *frags; /* borrowed: the test's */
    size_t nfrags;
};

static uint32_t checksum_of(const uint8_t *data, uint64_t n)
{
    size_t nb = dfs_crc32c_nblocks(n);
    uint32_t *crcs = calloc(nb + 1, sizeof *crcs);
    dfs_crc32c_blocks(data, n, crcs);
    uint32_t c = dfs_crc32c_of_table(crcs, nb);
    free(crcs);
    return c;
}

/* ---- Storage.GetFragment from memory ---- */

struct stream {
    const uint8_t *data;
    uint64_t size, pos, end;
    uint32_t announced;
    bool first;
    const char *id;
};

static void stream_free(void *s)
{
    free(s);
}

static void send_next(dfs_rpc_call *call, void *arg, bool ok)
{
    struct stream *s = arg;
    if (!ok) {
        /* The client went away (a get that stopped reading this copy): a handler still ends
           its call, or the server's stop waits for it forever. */
        dfs_rpc_call_finish(call, DFS_ECANCELED, NULL, NULL);
        return;
    }
    Dfs__V1__GetFragmentResponse m = DFS__V1__GET_FRAGMENT_RESPONSE__INIT;
    Dfs__V1__FragmentHeader h = DFS__V1__FRAGMENT_HEADER__INIT;
    uint32_t crcs[16];
    if (s->first) {
        h.fragment_id = (char *)s->id;
        h.size = s->size;
        m.header = &h;
        m.checksum = s->announced;
    }
    size_t n = s->end - s->pos < MIB ? (size_t)(s->end - s->pos) : MIB;
    m.data.data = (uint8_t *)s->data + s->pos;
    m.data.len = n;
    dfs_crc32c_blocks(m.data.data, n, crcs);
    m.crc32c = crcs;
    m.n_crc32c = dfs_crc32c_nblocks(n);
    s->first = false;
    s->pos += n;
    bool last = s->pos == s->end;
    if (dfs_rpc_call_send(call, &m.base, last ? NULL : send_next, s) != DFS_OK) {
        dfs_rpc_call_finish(call, DFS_EINTERNAL, NULL, "cannot send");
        return;
    }
    if (last)
        dfs_rpc_call_finish(call, DFS_OK, NULL, NULL);
}

static void get_fragment(dfs_rpc_call *call, void *ctx)
{
    struct node *n = ctx;
    const Dfs__V1__GetFragmentRequest *req =
        (const Dfs__V1__GetFragmentRequest *)dfs_rpc_call_request(call);
    struct frag *f = NULL;
    for (size_t i = 0; i < n->nfrags && f == NULL; i++)
        if (strcmp(n->frags[i].id, req->fragment_id) == 0)
            f = &n->frags[i];
    if (f == NULL || n->how == MISSING) {
        dfs_rpc_call_fail(call, DFS_ENOTFOUND, "fragment %s not found", req->fragment_id);
        return;
    }
    struct stream *s = calloc(1, sizeof *s);
    s->data = n->how == GOOD ? f->good : f->other;
    s->size = f->size;
    s->pos = req->offset;
    s->end = req->length == 0 ? f->size : req->offset + req->length;
    s->announced = n->how == OTHER ? f->other_checksum : f->checksum;
    s->first = true;
    s->id = f->id;
    dfs_rpc_call_set_state(call, s, stream_free);
    send_next(call, s, true);
}

static void node_start(struct node *n, int i, enum behaviour how, struct frag *frags, size_t nfrags)
{
    memset(n, 0, sizeof *n);
    snprintf(n->id, sizeof n->id, "%032x", 0x700 + i);
    n->how = how;
    n->frags = frags;
    n->nfrags = nfrags;
    struct dfs_rpc_server_config cfg = {.listen = "127.0.0.1:0", .threads = 1};
    assert_int_equal(dfs_rpc_server_create(&cfg, &n->srv, NULL), DFS_OK);
    struct dfs_rpc_method m = {"/dfs.v1.Storage/GetFragment",
                               DFS_RPC_SERVER_STREAMING,
                               &dfs__v1__get_fragment_request__descriptor,
                               get_fragment,
                               n,
                               0};
    assert_int_equal(dfs_rpc_server_add_method(n->srv, &m, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(n->srv, NULL), DFS_OK);
    snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d", dfs_rpc_server_port(n->srv));
}

/* ---- Metadata: GetFile (a layout per call) and ReportDamage (recorded) ---- */

#define LAYOUTS_MAX 2
#define SEEN_MAX    16

struct meta {
    dfs_rpc_server *srv;
    char addr[64];
    pthread_mutex_t mu;
    /* Guarded by mu. */
    Dfs__V1__FileInfo *layouts[LAYOUTS_MAX]; /* the n-th GetFile gets layouts[min(n, last)] */
    int nlayouts, getfiles;
    int nseen;
    char seen_frag[SEEN_MAX][DFS_FRAGMENT_ID_HEX + 1], seen_node[SEEN_MAX][DFS_ID_HEX + 1];
    int seen_damage[SEEN_MAX];
};

static void get_file(dfs_rpc_call *call, void *ctx)
{
    struct meta *m = ctx;
    pthread_mutex_lock(&m->mu);
    int i = m->getfiles < m->nlayouts ? m->getfiles : m->nlayouts - 1;
    m->getfiles++;
    Dfs__V1__GetFileResponse resp = DFS__V1__GET_FILE_RESPONSE__INIT;
    resp.file = m->layouts[i];
    dfs_rpc_call_reply(call, &resp.base);
    pthread_mutex_unlock(&m->mu);
}

static void report_damage(dfs_rpc_call *call, void *ctx)
{
    struct meta *m = ctx;
    const Dfs__V1__ReportDamageRequest *req =
        (const Dfs__V1__ReportDamageRequest *)dfs_rpc_call_request(call);
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < req->n_copies && m->nseen < SEEN_MAX; i++) {
        const Dfs__V1__DamagedCopy *c = req->copies[i];
        snprintf(m->seen_frag[m->nseen], sizeof m->seen_frag[0], "%s", c->ticket->fragment_id);
        snprintf(m->seen_node[m->nseen], sizeof m->seen_node[0], "%s", c->ticket->node_id);
        m->seen_damage[m->nseen++] = (int)c->damage;
    }
    pthread_mutex_unlock(&m->mu);
    Dfs__V1__ReportDamageResponse resp = DFS__V1__REPORT_DAMAGE_RESPONSE__INIT;
    resp.accepted = (uint32_t)req->n_copies;
    dfs_rpc_call_reply(call, &resp.base);
}

static void meta_start(struct meta *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    struct dfs_rpc_server_config cfg = {.listen = "127.0.0.1:0", .threads = 1};
    assert_int_equal(dfs_rpc_server_create(&cfg, &m->srv, NULL), DFS_OK);
    struct dfs_rpc_method ms[] = {
        {"/dfs.v1.Metadata/GetFile", DFS_RPC_UNARY, &dfs__v1__get_file_request__descriptor,
         get_file, m, 0},
        {"/dfs.v1.Metadata/ReportDamage", DFS_RPC_UNARY,
         &dfs__v1__report_damage_request__descriptor, report_damage, m, 0},
    };
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(dfs_rpc_server_add_method(m->srv, &ms[i], NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(m->srv, NULL), DFS_OK);
    snprintf(m->addr, sizeof m->addr, "127.0.0.1:%d", dfs_rpc_server_port(m->srv));
}

/* Whether ReportDamage named (fragment, node) with this damage. */
static bool reported(struct meta *m, const char *frag, const struct node *n, int damage)
{
    pthread_mutex_lock(&m->mu);
    bool found = false;
    for (int i = 0; i < m->nseen && !found; i++)
        found = strcmp(m->seen_frag[i], frag) == 0 && strcmp(m->seen_node[i], n->id) == 0 &&
                m->seen_damage[i] == damage;
    pthread_mutex_unlock(&m->mu);
    return found;
}

/* ---- layouts ---- */

/* A layout built in static-lifetime storage of the test (no allocation to free). */
struct layout {
    Dfs__V1__FileInfo fi;
    Dfs__V1__Redundancy red;
    Dfs__V1__Fragment frags[MAX_FRAG], *fragp[MAX_FRAG];
    Dfs__V1__Replica reps[MAX_FRAG][3], *repp[MAX_FRAG][3];
    Dfs__V1__Ticket tickets[MAX_FRAG][3];
    uint8_t sha[32], mac[32];
};

/* Fragment i of the layout, held by nodes[0..ncopies). */
static void layout_fragment(struct layout *l, size_t i, const struct frag *f, struct node **nodes,
                            size_t ncopies)
{
    Dfs__V1__Fragment *fr = &l->frags[i];
    dfs__v1__fragment__init(fr);
    fr->index = (uint32_t)i;
    fr->fragment_id = (char *)f->id;
    fr->size = f->size;
    fr->checksum = f->checksum;
    for (size_t r = 0; r < ncopies; r++) {
        Dfs__V1__Replica *rep = &l->reps[i][r];
        dfs__v1__replica__init(rep);
        rep->node_id = nodes[r]->id;
        rep->address = nodes[r]->addr;
        rep->node_state = DFS__V1__NODE_STATE__NODE_ALIVE;
        Dfs__V1__Ticket *t = &l->tickets[i][r];
        dfs__v1__ticket__init(t);
        t->op = DFS__V1__TICKET_OP__TICKET_GET;
        t->file_id = FILE_ID;
        t->fragment_id = (char *)f->id;
        t->node_id = nodes[r]->id;
        t->expires_ms = INT64_MAX / 2;
        t->mac.data = l->mac;
        t->mac.len = sizeof l->mac;
        rep->ticket = t;
        l->repp[i][r] = rep;
    }
    fr->replicas = l->repp[i];
    fr->n_replicas = ncopies;
    l->fragp[i] = fr;
}

static void layout_init(struct layout *l, uint64_t size, const uint8_t *whole, size_t nfrags)
{
    memset(l, 0, sizeof *l);
    dfs__v1__file_info__init(&l->fi);
    dfs__v1__redundancy__init(&l->red);
    l->fi.path = "/f";
    l->fi.file_id = FILE_ID;
    l->fi.size = size;
    SHA256(whole, size, l->sha);
    l->fi.sha256.data = l->sha;
    l->fi.sha256.len = 32;
    l->fi.redundancy = &l->red;
    l->fi.state = DFS__V1__FILE_STATE__FILE_COMMITTED;
    l->fi.fragments = l->fragp;
    l->fi.n_fragments = nfrags;
}

/* ---- fixture ---- */

struct fx {
    char dir[PATH_MAX];
    char local[PATH_MAX + 16];
    struct meta m;
    struct node n[4];
    int nnodes;
    dfs_meta *meta;
    struct frag frags[MAX_FRAG];
    size_t nfrags;
    uint8_t *whole;
    uint64_t size;
};

static void fill(uint8_t *p, uint64_t n, unsigned seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static void frag_make(struct frag *f, unsigned index, const uint8_t *data, uint64_t size)
{
    snprintf(f->id, sizeof f->id, "%s%08x", FILE_ID, index);
    f->size = size;
    f->good = malloc(size + 1);
    memcpy(f->good, data, size);
    f->other = calloc(1, size + 1); /* zeros */
    f->checksum = checksum_of(f->good, size);
    f->other_checksum = checksum_of(f->other, size);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    const char *base = getenv("TEST_TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/get_test.XXXXXX", base != NULL && base[0] ? base : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->local, sizeof f->local, "%s/out", f->dir);
    meta_start(&f->m);
    assert_int_equal(dfs_meta_open(f->m.addr, 20000, NULL, &f->meta, NULL), DFS_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    dfs_meta_close(f->meta);
    for (int i = 0; i < f->nnodes; i++)
        dfs_rpc_server_destroy(f->n[i].srv);
    dfs_rpc_server_destroy(f->m.srv);
    pthread_mutex_destroy(&f->m.mu);
    for (size_t i = 0; i < f->nfrags; i++) {
        free(f->frags[i].good);
        free(f->frags[i].other);
    }
    free(f->whole);
    unlink(f->local);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* One replicated fragment: the whole file. */
static void one_fragment(struct fx *f, uint64_t size)
{
    f->size = size;
    f->whole = malloc(size + 1);
    fill(f->whole, size, 7);
    frag_make(&f->frags[0], 0, f->whole, size);
    f->nfrags = 1;
}

static void start_nodes(struct fx *f, const enum behaviour *how, int n)
{
    for (int i = 0; i < n; i++)
        node_start(&f->n[i], i, how[i], f->frags, f->nfrags);
    f->nnodes = n;
}

static void expect_local_is_the_file(struct fx *f)
{
    int fd = open(f->local, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(f->size + 1);
    assert_int_equal(pread(fd, buf, f->size + 1, 0), (ssize_t)f->size);
    close(fd);
    assert_memory_equal(buf, f->whole, f->size);
    free(buf);
}

static int get(struct fx *f, struct dfs_client_get_result *r, char **err)
{
    struct dfs_client_get_opts o = {0};
    return dfs_get(f->meta, NULL, "/f", f->local, &o, r, err);
}

/* ---- tests ---- */

static void test_copy_with_another_checksum_is_skipped_and_reported(void **state)
{
    struct fx *f = *state;
    one_fragment(f, 12 * MIB); /* 3 ranges of 4 MiB: both copies are read */
    enum behaviour how[] = {OTHER, GOOD};
    start_nodes(f, how, 2);
    static struct layout l;
    layout_init(&l, f->size, f->whole, 1);
    l.red.scheme = DFS__V1__REDUNDANCY__SCHEME__REPLICATION;
    struct node *nodes[] = {&f->n[0], &f->n[1]};
    layout_fragment(&l, 0, &f->frags[0], nodes, 2);
    f->m.layouts[0] = &l.fi;
    f->m.nlayouts = 1;
    struct dfs_client_get_result r;
    char *err = NULL;
    if (get(f, &r, &err) != DFS_OK)
        fail_msg("get: %s", err);
    assert_true(r.failovers >= 1);
    expect_local_is_the_file(f);
    assert_true(reported(&f->m, f->frags[0].id, &f->n[0], 2 /* DAMAGE_WRONG_CHECKSUM */));
    assert_false(reported(&f->m, f->frags[0].id, &f->n[1], 2));
}

/* A thread that reads a pipe to its end (*arg: the read end). */
static void *drain_pipe(void *arg)
{
    int fd = *(int *)arg;
    char buf[65536];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    return NULL;
}

static void test_lying_copy_found_by_reading_whole(void **state)
{
    struct fx *f = *state;
    one_fragment(f, 12 * MIB);
    enum behaviour how[] = {LIE, GOOD};
    start_nodes(f, how, 2);
    static struct layout l;
    layout_init(&l, f->size, f->whole, 1);
    l.red.scheme = DFS__V1__REDUNDANCY__SCHEME__REPLICATION;
    struct node *nodes[] = {&f->n[0], &f->n[1]};
    layout_fragment(&l, 0, &f->frags[0], nodes, 2);
    f->m.layouts[0] = &l.fi;
    f->m.nlayouts = 1;
    struct dfs_client_get_result r;
    char *err = NULL;
    if (get(f, &r, &err) != DFS_OK)
        fail_msg("get: %s", err);
    expect_local_is_the_file(f);
    assert_true(reported(&f->m, f->frags[0].id, &f->n[0], 2 /* DAMAGE_WRONG_CHECKSUM */));
    /* A stream cannot take back what it sent: it fails instead of delivering a wrong file. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    pthread_t reader;
    assert_int_equal(pthread_create(&reader, NULL, drain_pipe, &p[0]), 0);
    struct dfs_client_get_opts o = {0};
    int rc = dfs_get_fd(f->meta, NULL, NULL, &l.fi, 0, f->size, p[1], f->dir, &o, &r, &err);
    close(p[1]);
    pthread_join(reader, NULL);
    close(p[0]);
    if (rc == DFS_OK) {
        /* Only if every range happened to come from the good copy. */
        assert_int_equal(r.size, f->size);
    } else {
        assert_int_equal(rc, DFS_EDATALOSS);
        assert_non_null(strstr(err, "the catalog says"));
        free(err);
    }
}

static void test_layout_fetched_again_when_copies_run_out(void **state)
{
    struct fx *f = *state;
    one_fragment(f, 5 * MIB);
    enum behaviour how[] = {MISSING, GOOD};
    start_nodes(f, how, 2);
    /* First the layout names only the copy that is gone (it moved); then where it went. */
    static struct layout before, after;
    layout_init(&before, f->size, f->whole, 1);
    before.red.scheme = DFS__V1__REDUNDANCY__SCHEME__REPLICATION;
    struct node *old[] = {&f->n[0]}, *now[] = {&f->n[1]};
    layout_fragment(&before, 0, &f->frags[0], old, 1);
    layout_init(&after, f->size, f->whole, 1);
    after.red.scheme = DFS__V1__REDUNDANCY__SCHEME__REPLICATION;
    layout_fragment(&after, 0, &f->frags[0], now, 1);
    f->m.layouts[0] = &before.fi;
    f->m.layouts[1] = &after.fi;
    f->m.nlayouts = 2;
    struct dfs_client_get_result r;
    char *err = NULL;
    if (get(f, &r, &err) != DFS_OK)
        fail_msg("get: %s", err);
    expect_local_is_the_file(f);
    pthread_mutex_lock(&f->m.mu);
    assert_int_equal(f->m.getfiles, 2);
    pthread_mutex_unlock(&f->m.mu);
    assert_true(reported(&f->m, f->frags[0].id, &f->n[0], 3 /* DAMAGE_MISSING */));
    /* Without a metadata service to ask (dfs_get_fd with no meta), it fails as before. */
    int fd = open(f->local, O_WRONLY | O_TRUNC);
    struct dfs_client_get_opts o = {0};
    assert_int_equal(dfs_get_fd(NULL, NULL, NULL, &before.fi, 0, f->size, fd, f->dir, &o, &r, &err),
                     DFS_EDATALOSS);
    assert_non_null(strstr(err, "no copy could be read"));
    free(err);
    close(fd);
}

static void test_erasure_lying_data_fragment_rebuilt_from_parity(void **state)
{
    struct fx *f = *state;
    /* K=2, M=1, 64 KiB cells, 5 stripes; the last padded. */
    const unsigned k = 2, m = 1;
    const size_t cell = 64 * 1024, stripes = 5;
    f->size = (uint64_t)(stripes * k * cell - 1000);
    f->whole = malloc(f->size + 1);
    fill(f->whole, f->size, 9);
    uint64_t fsize = stripes * cell;
    uint8_t *cols[3];
    for (unsigned i = 0; i < k + m; i++)
        cols[i] = calloc(1, fsize);
    dfs_ec *ec = NULL;
    assert_int_equal(dfs_ec_create(k, m, &ec, NULL), DFS_OK);
    for (size_t s = 0; s < stripes; s++) {
        uint8_t *data[2], *parity[1];
        for (unsigned i = 0; i < k; i++) {
            uint64_t off = (s * k + i) * cell;
            size_t n = off >= f->size ? 0 : f->size - off < cell ? (size_t)(f->size - off) : cell;
            memcpy(cols[i] + s * cell, f->whole + off, n);
            data[i] = cols[i] + s * cell;
        }
        parity[0] = cols[2] + s * cell;
        dfs_ec_encode(ec, cell, (const uint8_t *const *)data, parity);
    }
    dfs_ec_destroy(ec);
    for (unsigned i = 0; i < k + m; i++) {
        frag_make(&f->frags[i], i, cols[i], fsize);
        free(cols[i]);
    }
    f->nfrags = k + m;
    /* Fragment 1's node lies; 0 and the parity are honest. */
    enum behaviour how[] = {GOOD, LIE, GOOD};
    start_nodes(f, how, 3);
    static struct layout l;
    layout_init(&l, f->size, f->whole, k + m);
    l.red.scheme = DFS__V1__REDUNDANCY__SCHEME__ERASURE;
    l.red.data = k;
    l.red.parity = m;
    l.fi.cell_size = (uint32_t)cell;
    l.fi.fragment_size = fsize;
    for (unsigned i = 0; i < k + m; i++) {
        struct node *holder[] = {&f->n[i]};
        layout_fragment(&l, i, &f->frags[i], holder, 1);
    }
    f->m.layouts[0] = &l.fi;
    f->m.nlayouts = 1;
    struct dfs_client_get_result r;
    char *err = NULL;
    if (get(f, &r, &err) != DFS_OK)
        fail_msg("get: %s", err);
    expect_local_is_the_file(f);
    assert_true(r.rebuilt >= stripes);
    assert_true(reported(&f->m, f->frags[1].id, &f->n[1], 2 /* DAMAGE_WRONG_CHECKSUM */));
}

int main(void)
{
    dfs_log_init("get_test", DFS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_copy_with_another_checksum_is_skipped_and_reported,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_lying_copy_found_by_reading_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout_fetched_again_when_copies_run_out, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_erasure_lying_data_fragment_rebuilt_from_parity, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
