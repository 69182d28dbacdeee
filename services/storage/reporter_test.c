/*
 * Tests of the damage reporter: a real fragment store in a temp dir, and a small Metadata server
 * (our rpc server on loopback) that records ReportFragments and ReportDamage calls.
 */
#include "services/storage/reporter.h"

#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/ticket.h"
#include "dfs/v1/metadata.pb-c.h"
#include "services/rpc/server.h"
#include "services/rpc/ticket_pb.h"
#include "storage/frag_store.h"

#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define NODE "0123456789abcdef0123456789abcdef"
#define PEER "fedcba9876543210fedcba9876543210"

/* ---- the metadata side, recorded ---- */

#define SEEN_MAX 32

struct sink {
    dfs_rpc_server *srv;
    char addr[64];
    pthread_mutex_t mu;
    /* Guarded by mu. */
    int fail; /* answer UNAVAILABLE to this many calls */
    int failed;
    uint64_t registration; /* what the latest acknowledged report carried */
    char corrupt[SEEN_MAX][48], missing[SEEN_MAX][48];
    int ncorrupt, nmissing;
    char peer_frag[SEEN_MAX][48], peer_node[SEEN_MAX][40], peer_detail[SEEN_MAX][300];
    int peer_damage[SEEN_MAX];
    int npeer;
};

static bool take_failure(struct sink *k)
{
    if (k->fail == 0)
        return false;
    k->fail--;
    k->failed++;
    return true;
}

static void fragments_handler(dfs_rpc_call *call, void *ctx)
{
    struct sink *k = ctx;
    const Dfs__V1__ReportFragmentsRequest *req =
        (const Dfs__V1__ReportFragmentsRequest *)dfs_rpc_call_request(call);
    pthread_mutex_lock(&k->mu);
    bool fail = take_failure(k);
    if (!fail) {
        k->registration = req->registration;
        for (size_t i = 0; i < req->n_corrupt && k->ncorrupt < SEEN_MAX; i++)
            snprintf(k->corrupt[k->ncorrupt++], sizeof k->corrupt[0], "%s", req->corrupt[i]);
        for (size_t i = 0; i < req->n_missing && k->nmissing < SEEN_MAX; i++)
            snprintf(k->missing[k->nmissing++], sizeof k->missing[0], "%s", req->missing[i]);
    }
    pthread_mutex_unlock(&k->mu);
    if (fail) {
        dfs_rpc_call_fail(call, DFS_EUNAVAIL, "sink: not now");
        return;
    }
    Dfs__V1__ReportFragmentsResponse resp = DFS__V1__REPORT_FRAGMENTS_RESPONSE__INIT;
    dfs_rpc_call_reply(call, &resp.base);
}

static void damage_handler(dfs_rpc_call *call, void *ctx)
{
    struct sink *k = ctx;
    const Dfs__V1__ReportDamageRequest *req =
        (const Dfs__V1__ReportDamageRequest *)dfs_rpc_call_request(call);
    pthread_mutex_lock(&k->mu);
    bool fail = take_failure(k);
    for (size_t i = 0; !fail && i < req->n_copies && k->npeer < SEEN_MAX; i++) {
        const Dfs__V1__DamagedCopy *c = req->copies[i];
        snprintf(k->peer_frag[k->npeer], sizeof k->peer_frag[0], "%s", c->ticket->fragment_id);
        snprintf(k->peer_node[k->npeer], sizeof k->peer_node[0], "%s", c->ticket->node_id);
        snprintf(k->peer_detail[k->npeer], sizeof k->peer_detail[0], "%s", c->detail);
        k->peer_damage[k->npeer++] = (int)c->damage;
    }
    pthread_mutex_unlock(&k->mu);
    if (fail) {
        dfs_rpc_call_fail(call, DFS_EUNAVAIL, "sink: not now");
        return;
    }
    Dfs__V1__ReportDamageResponse resp = DFS__V1__REPORT_DAMAGE_RESPONSE__INIT;
    resp.accepted = (uint32_t)req->n_copies;
    dfs_rpc_call_reply(call, &resp.base);
}

static void sink_start(struct sink *k)
{
    memset(k, 0, sizeof *k);
    pthread_mutex_init(&k->mu, NULL);
    struct dfs_rpc_server_config cfg = {.listen = "127.0.0.1:0", .threads = 1};
    assert_int_equal(dfs_rpc_server_create(&cfg, &k->srv, NULL), DFS_OK);
    struct dfs_rpc_method m[] = {
        {"/dfs.v1.Metadata/ReportFragments", DFS_RPC_UNARY,
         &dfs__v1__report_fragments_request__descriptor, fragments_handler, k, 0},
        {"/dfs.v1.Metadata/ReportDamage", DFS_RPC_UNARY,
         &dfs__v1__report_damage_request__descriptor, damage_handler, k, 0},
    };
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(dfs_rpc_server_add_method(k->srv, &m[i], NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(k->srv, NULL), DFS_OK);
    snprintf(k->addr, sizeof k->addr, "127.0.0.1:%d", dfs_rpc_server_port(k->srv));
}

static void sink_stop(struct sink *k)
{
    dfs_rpc_server_destroy(k->srv);
    pthread_mutex_destroy(&k->mu);
}

/* ---- fixture: a store holding fragment `held` ---- */

struct fx {
    char root[PATH_MAX];
    char data[PATH_MAX + 8];
    dfs_frag_store *store;
    char held[48], absent[48];
    struct sink k;
    dfs_reporter *r;
};

static void put(dfs_frag_store *st, const char *id)
{
    unsigned char data[1000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 7);
    uint32_t crc;
    dfs_crc32c_blocks(data, sizeof data, &crc);
    dfs_frag_writer *w = NULL;
    assert_int_equal(dfs_frag_writer_begin(st, id, sizeof data, &w, NULL), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, data, sizeof data, &crc, 1, NULL), DFS_OK);
    assert_int_equal(dfs_frag_writer_commit(w, NULL, NULL), DFS_OK);
}

/* The node's registration, as dfs-storage hands it to the reporter. */
static uint64_t registration_of(void *arg)
{
    (void)arg;
    return 0x5c7b;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    const char *base = getenv("TEST_TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(f->root, sizeof f->root, "%s/reporter_test.XXXXXX", base);
    assert_non_null(mkdtemp(f->root));
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    assert_int_equal(dfs_frag_store_open(f->data, NULL, &f->store, NULL), DFS_OK);
    snprintf(f->held, sizeof f->held, "%s00000001", "00112233445566778899aabbccddeeff");
    snprintf(f->absent, sizeof f->absent, "%s00000002", "00112233445566778899aabbccddeeff");
    put(f->store, f->held);
    sink_start(&f->k);
    struct dfs_reporter_config cfg = {.store = f->store,
                                      .metadata = f->k.addr,
                                      .node_id = NODE,
                                      .registration = registration_of,
                                      .rpc_timeout_ms = 5000};
    char *err = NULL;
    assert_int_equal(dfs_reporter_start(&cfg, &f->r, &err), DFS_OK);
    *state = f;
    return 0;
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
    dfs_reporter_stop(f->r);
    sink_stop(&f->k);
    dfs_frag_store_close(f->store);
    int rc = nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Wait (up to 20 s) until the reporter has nothing queued. */
static void wait_idle(struct fx *f)
{
    struct dfs_reporter_stats st;
    for (int i = 0; i < 2000; i++) {
        dfs_reporter_stats(f->r, &st);
        if (st.pending == 0)
            return;
        sleep_ms(10);
    }
    fail_msg("the reporter still holds %" PRIu64 " reports", st.pending);
}

/* ---- tests ---- */

static void test_own_copies_reported_and_rechecked(void **state)
{
    struct fx *f = *state;
    /* What the node holds is not missing, and what it lacks is not corrupt: both are checked
       against the store again before they are sent, and dropped. */
    dfs_reporter_own(f->r, f->held, DFS__V1__DAMAGE__DAMAGE_MISSING);
    dfs_reporter_own(f->r, f->absent, DFS__V1__DAMAGE__DAMAGE_CORRUPT);
    wait_idle(f);
    dfs_reporter_own(f->r, f->absent, DFS__V1__DAMAGE__DAMAGE_MISSING);
    dfs_reporter_own(f->r, f->held, DFS__V1__DAMAGE__DAMAGE_CORRUPT);
    wait_idle(f);
    pthread_mutex_lock(&f->k.mu);
    assert_int_equal(f->k.registration, 0x5c7b); /* the node is the token's, never named */
    assert_int_equal(f->k.nmissing, 1);
    assert_string_equal(f->k.missing[0], f->absent);
    assert_int_equal(f->k.ncorrupt, 1);
    assert_string_equal(f->k.corrupt[0], f->held);
    pthread_mutex_unlock(&f->k.mu);
    struct dfs_reporter_stats st;
    dfs_reporter_stats(f->r, &st);
    assert_int_equal(st.own_sent, 2);
    assert_int_equal(st.skipped, 2);
    /* Bad input is ignored. */
    dfs_reporter_own(f->r, "not an id", DFS__V1__DAMAGE__DAMAGE_MISSING);
    dfs_reporter_own(f->r, f->absent, 99);
    dfs_reporter_stats(f->r, &st);
    assert_int_equal(st.pending, 0);
}

static void test_same_copy_reported_once_in_a_while(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 5; i++)
        dfs_reporter_own(f->r, f->absent, DFS__V1__DAMAGE__DAMAGE_MISSING);
    wait_idle(f);
    dfs_reporter_own(f->r, f->absent, DFS__V1__DAMAGE__DAMAGE_MISSING);
    wait_idle(f);
    pthread_mutex_lock(&f->k.mu);
    assert_int_equal(f->k.nmissing, 1);
    pthread_mutex_unlock(&f->k.mu);
    struct dfs_reporter_stats st;
    dfs_reporter_stats(f->r, &st);
    assert_int_equal(st.skipped, 5);
}

static void test_peer_copies_with_their_tickets(void **state)
{
    struct fx *f = *state;
    uint8_t master[DFS_TICKET_KEY_LEN] = {1, 2, 3}, key[DFS_TICKET_KEY_LEN];
    assert_int_equal(dfs_ticket_node_key(master, PEER, key, NULL), DFS_OK);
    struct dfs_ticket t;
    assert_int_equal(dfs_ticket_make(key, DFS_TICKET_GET, f->absent, PEER, 1 << 30, &t, NULL),
                     DFS_OK);
    Dfs__V1__Ticket m;
    dfs_ticket_pb_view(&t, &m);
    /* The first two calls fail: the report waits and goes later. */
    pthread_mutex_lock(&f->k.mu);
    f->k.fail = 2;
    pthread_mutex_unlock(&f->k.mu);
    dfs_reporter_peer(f->r, &m, DFS__V1__DAMAGE__DAMAGE_WRONG_CHECKSUM,
                      "it holds checksum 1234abcd, not \"x\"\n");
    dfs_reporter_peer(f->r, NULL, DFS__V1__DAMAGE__DAMAGE_CORRUPT, "no ticket: ignored");
    wait_idle(f);
    pthread_mutex_lock(&f->k.mu);
    assert_int_equal(f->k.failed, 2);
    assert_int_equal(f->k.npeer, 1);
    assert_string_equal(f->k.peer_frag[0], f->absent);
    assert_string_equal(f->k.peer_node[0], PEER);
    assert_int_equal(f->k.peer_damage[0], DFS__V1__DAMAGE__DAMAGE_WRONG_CHECKSUM);
    assert_string_equal(f->k.peer_detail[0], "it holds checksum 1234abcd, not ?x??");
    pthread_mutex_unlock(&f->k.mu);
    struct dfs_reporter_stats st;
    dfs_reporter_stats(f->r, &st);
    assert_int_equal(st.peer_sent, 1);
    assert_int_equal(st.failures, 2);
}

int main(void)
{
    dfs_log_init("reporter_test", DFS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_own_copies_reported_and_rechecked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_copy_reported_once_in_a_while, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_copies_with_their_tickets, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
