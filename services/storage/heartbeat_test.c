/* Tests of the heartbeat against a fake Metadata service (our rpc server, real gRPC on loopback). */
#include "services/storage/heartbeat.h"

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/token.h"
#include "dfs/v1/metadata.pb-c.h"
#include "services/rpc/follower_testing.h"
#include "services/rpc/loop.h"
#include "services/rpc/server.h"
#include "storage/frag_store.h"

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
#include <unistd.h>

#include <cmocka.h>

/* ---- the fake Metadata service ---- */

struct fake {
    dfs_rpc_server *srv;
    char addr[64];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Guarded by mu. */
    int registers, heartbeats; /* calls seen, failed ones included */
    int fail_registers;        /* answer UNAVAILABLE to this many RegisterNode calls */
    int fail_heartbeats;       /* ... and Heartbeat calls */
    int forget;                /* answer known=false to this many heartbeats */
    int replace;               /* answer FAILED_PRECONDITION (replaced) to this many */
    bool node_unknown;         /* the node's own token is unknown: only enrollments pass */
    uint32_t interval_ms;
    char node_id[64], address[128], zone[64];
    uint64_t capacity, free_bytes, fragments;
    char bearer[128];     /* the token the latest RegisterNode presented */
    char enrolled_id[32]; /* node_token_id of the latest enrollment */
    uint8_t enrolled_sha[32];
    uint64_t registration;    /* the latest one handed out */
    uint64_t hb_registration; /* what the latest heartbeat carried */
    char hb_bearer[128];
    uint64_t hb_fragments;
    int64_t first_heartbeat_ns;
};

static void register_handler(dfs_rpc_call *call, void *ctx)
{
    struct fake *fk = ctx;
    const Dfs__V1__RegisterNodeRequest *req =
        (const Dfs__V1__RegisterNodeRequest *)dfs_rpc_call_request(call);
    pthread_mutex_lock(&fk->mu);
    fk->registers++;
    bool fail = fk->fail_registers > 0;
    if (fail)
        fk->fail_registers--;
    snprintf(fk->node_id, sizeof fk->node_id, "%s", req->node_id);
    snprintf(fk->address, sizeof fk->address, "%s", req->address);
    snprintf(fk->zone, sizeof fk->zone, "%s", req->zone);
    fk->capacity = req->capacity_bytes;
    fk->free_bytes = req->free_bytes;
    fk->fragments = req->fragment_count;
    dfs_rpc_call_bearer(call, fk->bearer, sizeof fk->bearer);
    bool enroll = req->node_token_id[0] != '\0';
    bool unknown = !fail && fk->node_unknown && !enroll;
    if (!fail && enroll) {
        snprintf(fk->enrolled_id, sizeof fk->enrolled_id, "%s", req->node_token_id);
        if (req->node_token_sha256.len == 32)
            memcpy(fk->enrolled_sha, req->node_token_sha256.data, 32);
        fk->node_unknown = false;
    }
    uint64_t registration = fail || unknown ? 0 : ++fk->registration;
    uint32_t interval = fk->interval_ms;
    pthread_cond_broadcast(&fk->cv);
    pthread_mutex_unlock(&fk->mu);
    if (fail) {
        dfs_rpc_call_fail(call, DFS_EUNAVAIL, "fake: starting up");
        return;
    }
    if (unknown) {
        dfs_rpc_call_fail(call, DFS_EUNAUTH, "fake: unknown token");
        return;
    }
    static uint8_t key[32] = {7, 7, 7};
    Dfs__V1__RegisterNodeResponse resp = DFS__V1__REGISTER_NODE_RESPONSE__INIT;
    resp.ticket_key.data = key;
    resp.ticket_key.len = sizeof key;
    resp.heartbeat_interval_ms = interval;
    resp.registration = registration;
    dfs_rpc_call_reply(call, &resp.base);
}

static void heartbeat_handler(dfs_rpc_call *call, void *ctx)
{
    struct fake *fk = ctx;
    const Dfs__V1__HeartbeatRequest *req =
        (const Dfs__V1__HeartbeatRequest *)dfs_rpc_call_request(call);
    pthread_mutex_lock(&fk->mu);
    if (fk->heartbeats++ == 0)
        fk->first_heartbeat_ns = dfs_clock_mono_ns();
    bool fail = fk->fail_heartbeats > 0;
    if (fail)
        fk->fail_heartbeats--;
    bool known = true;
    if (!fail && fk->forget > 0) {
        fk->forget--;
        known = false;
    }
    bool replaced = !fail && fk->replace > 0;
    if (replaced)
        fk->replace--;
    fk->hb_registration = req->registration;
    dfs_rpc_call_bearer(call, fk->hb_bearer, sizeof fk->hb_bearer);
    fk->hb_fragments = req->fragment_count;
    uint32_t interval = fk->interval_ms;
    pthread_cond_broadcast(&fk->cv);
    pthread_mutex_unlock(&fk->mu);
    if (fail) {
        dfs_rpc_call_fail(call, DFS_EUNAVAIL, "fake: busy");
        return;
    }
    if (replaced) {
        dfs_rpc_call_fail(call, DFS_EPRECOND, "fake: replaced by a newer registration");
        return;
    }
    Dfs__V1__HeartbeatResponse resp = DFS__V1__HEARTBEAT_RESPONSE__INIT;
    resp.known = known;
    resp.heartbeat_interval_ms = interval;
    dfs_rpc_call_reply(call, &resp.base);
}

static void fake_start(struct fake *fk, uint32_t interval_ms)
{
    memset(fk, 0, sizeof *fk);
    pthread_mutex_init(&fk->mu, NULL);
    pthread_cond_init(&fk->cv, NULL);
    fk->interval_ms = interval_ms;
    struct dfs_rpc_server_config cfg = {.listen = "127.0.0.1:0", .threads = 1};
    assert_int_equal(dfs_rpc_server_create(&cfg, &fk->srv, NULL), DFS_OK);
    struct dfs_rpc_method methods[] = {
        {"/dfs.v1.Metadata/RegisterNode", DFS_RPC_UNARY,
         &dfs__v1__register_node_request__descriptor, register_handler, fk, 0},
        {"/dfs.v1.Metadata/Heartbeat", DFS_RPC_UNARY, &dfs__v1__heartbeat_request__descriptor,
         heartbeat_handler, fk, 0},
    };
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(dfs_rpc_server_add_method(fk->srv, &methods[i], NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(fk->srv, NULL), DFS_OK);
    snprintf(fk->addr, sizeof fk->addr, "127.0.0.1:%d", dfs_rpc_server_port(fk->srv));
}

static void fake_stop(struct fake *fk)
{
    dfs_rpc_server_destroy(fk->srv);
    pthread_mutex_destroy(&fk->mu);
    pthread_cond_destroy(&fk->cv);
}

/* Wait (up to timeout_ms) until *counter >= n; returns whether it got there. */
static bool fake_wait(struct fake *fk, const int *counter, int n, int64_t timeout_ms)
{
    int64_t until = dfs_clock_mono_ns() + timeout_ms * 1000000;
    pthread_mutex_lock(&fk->mu);
    while (*counter < n && dfs_clock_mono_ns() < until) {
        pthread_mutex_unlock(&fk->mu);
        usleep(2000);
        pthread_mutex_lock(&fk->mu);
    }
    bool ok = *counter >= n;
    pthread_mutex_unlock(&fk->mu);
    return ok;
}

static int fake_get(struct fake *fk, const int *counter)
{
    pthread_mutex_lock(&fk->mu);
    int v = *counter;
    pthread_mutex_unlock(&fk->mu);
    return v;
}

/* ---- fixture: a store with one fragment, a fake metadata service ---- */

/* The node's own token and the enrollment token the heartbeats of these tests present. */
#define ENROLL_TOKEN \
    "dfs1.00000000000000e1.e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1"

struct fx {
    char root[PATH_MAX];
    char data[PATH_MAX + 8];
    dfs_frag_store *store;
    struct fake fk;
    char token[DFS_TOKEN_LEN + 1];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    const char *base = getenv("TEST_TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(f->root, sizeof f->root, "%s/heartbeat_test.XXXXXX", base);
    assert_non_null(mkdtemp(f->root));
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    assert_int_equal(dfs_frag_store_open(f->data, NULL, &f->store, NULL), DFS_OK);
    dfs_frag_writer *w = NULL;
    const char *id = "0123456789abcdef0123456789abcdef00000001";
    unsigned char data[100] = {7};
    uint32_t crc = dfs_crc32c(0, data, sizeof data);
    assert_int_equal(dfs_frag_writer_begin(f->store, id, sizeof data, &w, NULL), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, data, sizeof data, &crc, 1, NULL), DFS_OK);
    assert_int_equal(dfs_frag_writer_commit(w, NULL, NULL), DFS_OK);
    assert_int_equal(dfs_token_generate(f->token), DFS_OK);
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
    dfs_frag_store_close(f->store);
    int rc = nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static dfs_heartbeat *start_hb(struct fx *f, const char *metadata)
{
    struct dfs_heartbeat_config cfg = {
        .metadata = metadata,
        .node_id = dfs_frag_store_node_id(f->store),
        .address = "127.0.0.1:7777",
        .zone = "rack-a",
        .store = f->store,
        .channel = {.token = f->token},
        .enroll_token = ENROLL_TOKEN,
    };
    dfs_heartbeat *hb = NULL;
    char *err = NULL;
    assert_int_equal(dfs_heartbeat_start(&cfg, &hb, &err), DFS_OK);
    return hb;
}

/* Stop, and check that it took less than max_ms. */
static void stop_quickly(dfs_heartbeat *hb, int64_t max_ms)
{
    int64_t t0 = dfs_clock_mono_ns();
    dfs_heartbeat_stop(hb);
    int64_t ms = (dfs_clock_mono_ns() - t0) / 1000000;
    if (ms > max_ms)
        fail_msg("stop took %lld ms", (long long)ms);
}

/* An address where nothing listens: bind a port, then close it. */
static void closed_port(char *out, size_t cap)
{
    struct fake tmp;
    fake_start(&tmp, 0);
    snprintf(out, cap, "%s", tmp.addr);
    fake_stop(&tmp);
}

/* ---- tests ---- */

static void test_registers_then_heartbeats(void **state)
{
    struct fx *f = *state;
    fake_start(&f->fk, 30);
    dfs_heartbeat *hb = start_hb(f, f->fk.addr);
    assert_true(dfs_heartbeat_wait_registered(hb, 10000));
    assert_int_equal(fake_get(&f->fk, &f->fk.registers), 1);
    pthread_mutex_lock(&f->fk.mu);
    assert_string_equal(f->fk.node_id, dfs_frag_store_node_id(f->store));
    assert_string_equal(f->fk.address, "127.0.0.1:7777");
    assert_string_equal(f->fk.zone, "rack-a");
    assert_true(f->fk.capacity > 0);
    assert_true(f->fk.free_bytes > 0 && f->fk.free_bytes <= f->fk.capacity);
    assert_int_equal(f->fk.fragments, 1);
    pthread_mutex_unlock(&f->fk.mu);

    int64_t t0 = dfs_clock_mono_ns();
    assert_true(fake_wait(&f->fk, &f->fk.heartbeats, 5, 10000));
    /* At the 30 ms the service asked for: 5 heartbeats take about 120 ms, not 5 s. */
    assert_true(dfs_clock_mono_ns() - t0 < 3000000000ll);
    pthread_mutex_lock(&f->fk.mu);
    /* The node's own token, and the registration the answer gave. */
    assert_string_equal(f->fk.hb_bearer, f->token);
    assert_string_equal(f->fk.bearer, f->token);
    assert_int_equal(f->fk.hb_registration, 1);
    assert_int_equal(f->fk.hb_fragments, 1);
    pthread_mutex_unlock(&f->fk.mu);
    assert_int_equal(dfs_heartbeat_registration(hb), 1);
    assert_int_equal(fake_get(&f->fk, &f->fk.registers), 1);
    assert_null(dfs_heartbeat_last_error(hb));
    stop_quickly(hb, 1000);
    fake_stop(&f->fk);
}

/* Given the process's shared handle on "DEAD,FOLLOWER" (the follower naming the service), the
   node registers and heartbeats with the leader, and the handle keeps the leader for others. */
static void test_follows_the_leader_through_a_shared_handle(void **state)
{
    struct fx *f = *state;
    fake_start(&f->fk, 30);
    dfs_rpc_follower *fol = NULL;
    assert_int_equal(dfs_rpc_follower_start(f->fk.addr, "not the leader", &fol), DFS_OK);
    char dead[64], list[160];
    closed_port(dead, sizeof dead);
    snprintf(list, sizeof list, "%s,127.0.0.1:%d", dead, dfs_rpc_follower_port(fol));
    struct dfs_rpc_channel_opts o = {.token = f->token};
    dfs_rpc_leader *replicas = NULL;
    assert_int_equal(dfs_rpc_leader_open(list, &o, &replicas, NULL), DFS_OK);
    struct dfs_heartbeat_config cfg = {
        .metadata = list,
        .node_id = dfs_frag_store_node_id(f->store),
        .address = "127.0.0.1:7777",
        .store = f->store,
        .channel = o,
        .replicas = replicas,
    };
    dfs_heartbeat *hb = NULL;
    assert_int_equal(dfs_heartbeat_start(&cfg, &hb, NULL), DFS_OK);
    assert_true(dfs_heartbeat_wait_registered(hb, 10000));
    assert_true(fake_wait(&f->fk, &f->fk.heartbeats, 3, 10000));
    assert_int_equal(dfs_rpc_follower_calls(fol), 1);
    char guess[64];
    dfs_rpc_leader_guess(replicas, guess, sizeof guess);
    assert_string_equal(guess, f->fk.addr);
    stop_quickly(hb, 1000);
    dfs_rpc_leader_destroy(replicas); /* the heartbeat did not: it was borrowed */
    dfs_rpc_follower_stop(fol);
    fake_stop(&f->fk);
}

static void test_reregisters_when_forgotten(void **state)
{
    struct fx *f = *state;
    fake_start(&f->fk, 20);
    dfs_heartbeat *hb = start_hb(f, f->fk.addr);
    assert_true(dfs_heartbeat_wait_registered(hb, 10000));
    assert_true(fake_wait(&f->fk, &f->fk.heartbeats, 2, 10000));
    pthread_mutex_lock(&f->fk.mu);
    f->fk.forget = 1;
    pthread_mutex_unlock(&f->fk.mu);
    assert_true(fake_wait(&f->fk, &f->fk.registers, 2, 10000));
    /* And heartbeats go on after that. */
    int hbs = fake_get(&f->fk, &f->fk.heartbeats);
    assert_true(fake_wait(&f->fk, &f->fk.heartbeats, hbs + 2, 10000));
    assert_int_equal(fake_get(&f->fk, &f->fk.registers), 2);
    stop_quickly(hb, 1000);
    fake_stop(&f->fk);
}

/* Its own token unknown (a first start): the node enrolls with the enrollment token, naming its
   own token by id and hash, and presents only its own token afterwards. */
static void test_enrolls_when_its_token_is_unknown(void **state)
{
    struct fx *f = *state;
    fake_start(&f->fk, 20);
    f->fk.node_unknown = true;
    dfs_heartbeat *hb = start_hb(f, f->fk.addr);
    assert_true(dfs_heartbeat_wait_registered(hb, 10000));
    assert_true(fake_wait(&f->fk, &f->fk.heartbeats, 2, 10000));
    char id[DFS_TOKEN_ID_HEX + 1];
    uint8_t hash[DFS_TOKEN_HASH_LEN];
    assert_int_equal(dfs_token_parse(f->token, id, hash, NULL), DFS_OK);
    pthread_mutex_lock(&f->fk.mu);
    assert_int_equal(f->fk.registers, 2);
    assert_string_equal(f->fk.bearer, ENROLL_TOKEN);
    assert_string_equal(f->fk.enrolled_id, id);
    assert_memory_equal(f->fk.enrolled_sha, hash, sizeof hash);
    assert_string_equal(f->fk.hb_bearer, f->token);
    pthread_mutex_unlock(&f->fk.mu);
    stop_quickly(hb, 1000);
    fake_stop(&f->fk);
}

/* A heartbeat answered "replaced" (another process registered this node): register again; the
   new registration is what heartbeats carry from then on. */
static void test_replaced_registers_again(void **state)
{
    struct fx *f = *state;
    fake_start(&f->fk, 20);
    dfs_heartbeat *hb = start_hb(f, f->fk.addr);
    assert_true(dfs_heartbeat_wait_registered(hb, 10000));
    assert_true(fake_wait(&f->fk, &f->fk.heartbeats, 1, 10000));
    pthread_mutex_lock(&f->fk.mu);
    f->fk.replace = 1;
    pthread_mutex_unlock(&f->fk.mu);
    assert_true(fake_wait(&f->fk, &f->fk.registers, 2, 10000));
    int hbs = fake_get(&f->fk, &f->fk.heartbeats);
    assert_true(fake_wait(&f->fk, &f->fk.heartbeats, hbs + 2, 10000));
    pthread_mutex_lock(&f->fk.mu);
    assert_int_equal(f->fk.hb_registration, 2);
    pthread_mutex_unlock(&f->fk.mu);
    assert_int_equal(dfs_heartbeat_registration(hb), 2);
    stop_quickly(hb, 1000);
    fake_stop(&f->fk);
}

static void count_hook(void *arg, const uint8_t *key, size_t len, uint64_t registration)
{
    assert_true(registration != 0);
    /* The key the registration answered with reaches the hook. */
    assert_int_equal(len, 32);
    assert_int_equal(key[2], 7);
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void test_hook_after_every_registration(void **state)
{
    struct fx *f = *state;
    fake_start(&f->fk, 20);
    f->fk.fail_registers = 2;
    atomic_int hooks = 0;
    struct dfs_heartbeat_config cfg = {
        .metadata = f->fk.addr,
        .node_id = dfs_frag_store_node_id(f->store),
        .address = "127.0.0.1:7777",
        .store = f->store,
        .on_registered = count_hook,
        .on_registered_arg = &hooks,
        .channel = {.token = f->token},
    };
    dfs_heartbeat *hb = NULL;
    assert_int_equal(dfs_heartbeat_start(&cfg, &hb, NULL), DFS_OK);
    assert_true(dfs_heartbeat_wait_registered(hb, 10000));
    assert_true(fake_wait(&f->fk, &f->fk.heartbeats, 1, 10000));
    /* Two failed tries did not count; the success did, before any heartbeat. */
    assert_int_equal(atomic_load(&hooks), 1);
    pthread_mutex_lock(&f->fk.mu);
    f->fk.forget = 1;
    pthread_mutex_unlock(&f->fk.mu);
    assert_true(fake_wait(&f->fk, &f->fk.registers, 4, 10000));
    int hbs = fake_get(&f->fk, &f->fk.heartbeats);
    assert_true(fake_wait(&f->fk, &f->fk.heartbeats, hbs + 1, 10000));
    assert_int_equal(atomic_load(&hooks), 2);
    stop_quickly(hb, 1000);
    fake_stop(&f->fk);
}

static void test_retries_registration(void **state)
{
    struct fx *f = *state;
    fake_start(&f->fk, 50);
    f->fk.fail_registers = 3;
    dfs_heartbeat *hb = start_hb(f, f->fk.addr);
    /* Backoff 100 + 200 + 400 ms, then success. */
    assert_true(dfs_heartbeat_wait_registered(hb, 10000));
    assert_int_equal(fake_get(&f->fk, &f->fk.registers), 4);
    assert_null(dfs_heartbeat_last_error(hb));
    stop_quickly(hb, 1000);
    fake_stop(&f->fk);
}

static void test_heartbeat_failures_keep_trying(void **state)
{
    struct fx *f = *state;
    fake_start(&f->fk, 20);
    f->fk.fail_heartbeats = 4;
    dfs_heartbeat *hb = start_hb(f, f->fk.addr);
    assert_true(dfs_heartbeat_wait_registered(hb, 10000));
    assert_true(fake_wait(&f->fk, &f->fk.heartbeats, 7, 10000));
    /* Failed heartbeats do not make the node register again; it stays registered. */
    assert_int_equal(fake_get(&f->fk, &f->fk.registers), 1);
    assert_true(dfs_heartbeat_wait_registered(hb, 0));
    stop_quickly(hb, 1000);
    fake_stop(&f->fk);
}

static void test_unreachable_metadata(void **state)
{
    struct fx *f = *state;
    char addr[64];
    closed_port(addr, sizeof addr);
    dfs_heartbeat *hb = start_hb(f, addr);
    assert_false(dfs_heartbeat_wait_registered(hb, 0));
    assert_false(dfs_heartbeat_wait_registered(hb, 300));
    char *err = dfs_heartbeat_last_error(hb);
    assert_non_null(err);
    assert_non_null(strstr(err, "RegisterNode"));
    free(err);
    stop_quickly(hb, 1000);
}

static void test_stop_is_immediate(void **state)
{
    struct fx *f = *state;
    fake_start(&f->fk, 600000); /* the next heartbeat would be due in 10 minutes */
    dfs_heartbeat *hb = start_hb(f, f->fk.addr);
    assert_true(dfs_heartbeat_wait_registered(hb, 10000));
    usleep(20000);
    stop_quickly(hb, 200);
    fake_stop(&f->fk);
}

static void test_default_interval(void **state)
{
    struct fx *f = *state;
    fake_start(&f->fk, 0); /* 0: the node uses 1000 ms */
    dfs_heartbeat *hb = start_hb(f, f->fk.addr);
    assert_true(dfs_heartbeat_wait_registered(hb, 10000));
    int64_t t0 = dfs_clock_mono_ns();
    assert_true(fake_wait(&f->fk, &f->fk.heartbeats, 1, 5000));
    pthread_mutex_lock(&f->fk.mu);
    int64_t ms = (f->fk.first_heartbeat_ns - t0) / 1000000;
    pthread_mutex_unlock(&f->fk.mu);
    if (ms < 700 || ms > 2500)
        fail_msg("first heartbeat after %lld ms, want about 1000", (long long)ms);
    stop_quickly(hb, 1000);
    fake_stop(&f->fk);
}

static void test_bad_config(void **state)
{
    struct fx *f = *state;
    struct dfs_heartbeat_config cfg = {
        .metadata = "127.0.0.1:1",
        .node_id = dfs_frag_store_node_id(f->store),
        .address = "127.0.0.1:2",
        .store = f->store,
        .channel = {.token = f->token},
    };
    dfs_heartbeat *hb = NULL;
    char *err = NULL;
    struct dfs_heartbeat_config c = cfg;
    c.channel.token = "not a dfs token";
    assert_int_equal(dfs_heartbeat_start(&c, &hb, &err), DFS_EINVAL);
    assert_non_null(strstr(err, "own token"));
    free(err);
    err = NULL;
    c = cfg;
    c.metadata = "";
    assert_int_equal(dfs_heartbeat_start(&c, &hb, &err), DFS_EINVAL);
    assert_non_null(strstr(err, "metadata"));
    free(err);
    err = NULL;
    c = cfg;
    c.address = NULL;
    assert_int_equal(dfs_heartbeat_start(&c, &hb, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    c = cfg;
    c.store = NULL;
    assert_int_equal(dfs_heartbeat_start(&c, &hb, &err), DFS_EINVAL);
    free(err);
    assert_null(hb);
    dfs_heartbeat_stop(NULL);
}

int main(void)
{
    dfs_log_init("heartbeat_test", DFS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registers_then_heartbeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follows_the_leader_through_a_shared_handle, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reregisters_when_forgotten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enrolls_when_its_token_is_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replaced_registers_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_registration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_after_every_registration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_failures_keep_trying, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_is_immediate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_interval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
