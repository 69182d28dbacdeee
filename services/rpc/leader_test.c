/* Tests of leader following against real servers on loopback: an echo "leader", follower-like
   servers (follower_testing.h) and closed ports. */
#include "common/clock.h"
#include "common/err.h"
#include "services/rpc/client.h"
#include "services/rpc/follower_testing.h"
#include "services/rpc/leader.h"
#include "services/rpc/server.h"
#include "testdata/echo.pb-c.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define UNARY "/dfs.test.Echo/Unary"

struct fixture {
    dfs_rpc_server *srv; /* the leader: an echo service */
    char leader[64];
    atomic_int served;
    char dead[64]; /* a loopback port nothing listens on */
};

static void unary_handler(dfs_rpc_call *call, void *ctx)
{
    struct fixture *fx = ctx;
    atomic_fetch_add(&fx->served, 1);
    const Dfs__Test__EchoRequest *req = (const Dfs__Test__EchoRequest *)dfs_rpc_call_request(call);
    Dfs__Test__EchoResponse resp = DFS__TEST__ECHO_RESPONSE__INIT;
    resp.text = req->text;
    dfs_rpc_call_reply(call, &resp.base);
}

static dfs_rpc_server *echo_server(struct fixture *fx)
{
    struct dfs_rpc_server_config cfg = {.listen = "127.0.0.1:0", .threads = 2};
    dfs_rpc_server *srv = NULL;
    assert_int_equal(dfs_rpc_server_create(&cfg, &srv, NULL), DFS_OK);
    struct dfs_rpc_method m = {
        UNARY, DFS_RPC_UNARY, &dfs__test__echo_request__descriptor, unary_handler, fx, 0};
    assert_int_equal(dfs_rpc_server_add_method(srv, &m, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(srv, NULL), DFS_OK);
    return srv;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    fx->srv = echo_server(fx);
    snprintf(fx->leader, sizeof fx->leader, "127.0.0.1:%d", dfs_rpc_server_port(fx->srv));
    dfs_rpc_server *tmp = echo_server(fx);
    snprintf(fx->dead, sizeof fx->dead, "127.0.0.1:%d", dfs_rpc_server_port(tmp));
    dfs_rpc_server_destroy(tmp);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_server_destroy(fx->srv);
    free(fx);
    return 0;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    static char buf[4][512];
    static int k;
    char *b = buf[k++ % 4];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, sizeof buf[0], f, ap);
    va_end(ap);
    return b;
}

/* One echo call through l; returns its status, the outcome in *out, the message in *err. */
static int echo(dfs_rpc_leader *l, unsigned flags, int64_t timeout_ms, int64_t retry_ms,
                struct dfs_rpc_leader_outcome *out, char **err)
{
    Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
    req.text = "hello";
    Dfs__Test__EchoResponse *resp = NULL;
    int rc =
        dfs_rpc_leader_unary(l, UNARY, &req.base, &dfs__test__echo_response__descriptor,
                             (ProtobufCMessage **)&resp, timeout_ms, retry_ms, flags, out, err);
    if (rc == DFS_OK) {
        assert_string_equal(resp->text, "hello");
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    return rc;
}

static void test_open(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_leader *l = NULL;
    char *err = NULL;
    assert_int_equal(dfs_rpc_leader_open("", NULL, &l, &err), DFS_EINVAL);
    assert_int_equal(dfs_rpc_leader_open("127.0.0.1:1,,127.0.0.1:2", NULL, &l, &err), DFS_EINVAL);
    assert_int_equal(dfs_rpc_leader_open("127.0.0.1:1,10.1.2.3:7000", NULL, &l, &err), DFS_EPERM);
    assert_null(l);
    free(err);
    assert_int_equal(dfs_rpc_leader_open(fx->leader, NULL, &l, NULL), DFS_OK);
    assert_string_equal(dfs_rpc_leader_addrs(l), fx->leader);
    assert_int_equal(dfs_rpc_leader_count(l), 1);
    struct dfs_rpc_leader_outcome out;
    assert_int_equal(echo(l, 0, 5000, 0, &out, NULL), DFS_OK);
    assert_string_equal(out.tried, fx->leader);
    assert_int_equal(atomic_load(&fx->served), 1);
    dfs_rpc_leader_destroy(l);
    dfs_rpc_leader_destroy(NULL);
}

/* gRPC's words for a port nothing listens on are recognised as "never sent". */
static void test_never_sent(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_leader *l = NULL;
    char *err = NULL;
    assert_int_equal(dfs_rpc_leader_open(fx->dead, NULL, &l, NULL), DFS_OK);
    struct dfs_rpc_leader_outcome out;
    assert_int_equal(echo(l, 0, 5000, 0, &out, &err), DFS_EUNAVAIL);
    if (!dfs_rpc_leader_never_sent(err))
        fail_msg("not recognised as a connect failure: %s", err);
    assert_false(out.ambiguous);
    free(err);
    dfs_rpc_leader_destroy(l);
    assert_false(dfs_rpc_leader_never_sent("Socket closed"));
    assert_false(dfs_rpc_leader_never_sent(NULL));
}

/* A follower names the leader, which is not in the list: the call goes there at once, and the
   next call goes straight to it. */
static void test_follow(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_follower *f = NULL;
    assert_int_equal(dfs_rpc_follower_start(fx->leader, "replica 2 is not the leader", &f), DFS_OK);
    dfs_rpc_leader *l = NULL;
    assert_int_equal(
        dfs_rpc_leader_open(fmt("127.0.0.1:%d", dfs_rpc_follower_port(f)), NULL, &l, NULL), DFS_OK);
    struct dfs_rpc_leader_outcome out;
    int64_t t0 = dfs_clock_mono_ns();
    assert_int_equal(echo(l, 0, 5000, 0, &out, NULL), DFS_OK);
    assert_true((dfs_clock_mono_ns() - t0) / 1000000 < 3000); /* no backoff; loaded CI */
    assert_string_equal(out.tried, fx->leader);
    assert_int_equal(dfs_rpc_follower_calls(f), 1);
    assert_int_equal(dfs_rpc_leader_count(l), 2);
    char guess[64];
    dfs_rpc_leader_guess(l, guess, sizeof guess);
    assert_string_equal(guess, fx->leader);
    assert_int_equal(echo(l, 0, 5000, 0, &out, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_follower_calls(f), 1);
    assert_int_equal(atomic_load(&fx->served), 2);
    dfs_rpc_leader_destroy(l);
    dfs_rpc_follower_stop(f);
}

/* A dfs_rpc_server refusing as a follower does (dfs_rpc_call_set_trailer + UNAVAILABLE, what
   dfs-metadata's followers answer): the client follows its trailer to the leader. */
static void refusing_handler(dfs_rpc_call *call, void *ctx)
{
    struct fixture *fx = ctx;
    assert_int_equal(dfs_rpc_call_set_trailer(call, "", "x"), DFS_EINVAL);
    assert_int_equal(dfs_rpc_call_set_trailer(call, DFS_RPC_LEADER_KEY, "127.0.0.1:1"), DFS_OK);
    /* A second pair replaces the first. */
    assert_int_equal(dfs_rpc_call_set_trailer(call, DFS_RPC_LEADER_KEY, fx->leader), DFS_OK);
    dfs_rpc_call_fail(call, DFS_EUNAVAIL, "replica 3 is %s", DFS_RPC_NOT_LEADER);
}

static void test_server_trailer(void **state)
{
    struct fixture *fx = *state;
    struct dfs_rpc_server_config cfg = {.listen = "127.0.0.1:0", .threads = 1};
    dfs_rpc_server *srv = NULL;
    assert_int_equal(dfs_rpc_server_create(&cfg, &srv, NULL), DFS_OK);
    struct dfs_rpc_method m = {
        UNARY, DFS_RPC_UNARY, &dfs__test__echo_request__descriptor, refusing_handler, fx, 0};
    assert_int_equal(dfs_rpc_server_add_method(srv, &m, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(srv, NULL), DFS_OK);
    dfs_rpc_leader *l = NULL;
    assert_int_equal(
        dfs_rpc_leader_open(fmt("127.0.0.1:%d", dfs_rpc_server_port(srv)), NULL, &l, NULL), DFS_OK);
    struct dfs_rpc_leader_outcome out;
    assert_int_equal(echo(l, 0, 5000, 0, &out, NULL), DFS_OK);
    assert_string_equal(out.tried, fx->leader);
    assert_int_equal(atomic_load(&fx->served), 1);
    dfs_rpc_leader_destroy(l);
    dfs_rpc_server_destroy(srv);
}

/* A dead address first, a follower second: a call that is not idempotent still gets through
   (a connect failure never sent it; a refusal did nothing). */
static void test_dead_then_follower(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_follower *f = NULL;
    assert_int_equal(dfs_rpc_follower_start(fx->leader, "not the leader", &f), DFS_OK);
    dfs_rpc_leader *l = NULL;
    assert_int_equal(dfs_rpc_leader_open(fmt("%s,127.0.0.1:%d", fx->dead, dfs_rpc_follower_port(f)),
                                         NULL, &l, NULL),
                     DFS_OK);
    struct dfs_rpc_leader_outcome out;
    assert_int_equal(echo(l, 0, 5000, 0, &out, NULL), DFS_OK);
    assert_string_equal(out.tried, fx->leader);
    assert_int_equal(dfs_rpc_follower_calls(f), 1);
    assert_int_equal(atomic_load(&fx->served), 1);
    dfs_rpc_leader_destroy(l);
    dfs_rpc_follower_stop(f);
}

/* During an election a follower knows no leader: the call asks the next replica. */
static void test_election(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_follower *f = NULL;
    assert_int_equal(dfs_rpc_follower_start(
                         NULL, "replica 1 is not the leader and knows no leader (election)", &f),
                     DFS_OK);
    dfs_rpc_leader *l = NULL;
    assert_int_equal(
        dfs_rpc_leader_open(fmt("127.0.0.1:%d,%s", dfs_rpc_follower_port(f), fx->leader), NULL, &l,
                            NULL),
        DFS_OK);
    assert_int_equal(echo(l, 0, 5000, 0, NULL, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_follower_calls(f), 1);
    assert_int_equal(atomic_load(&fx->served), 1);
    dfs_rpc_leader_destroy(l);
    dfs_rpc_follower_stop(f);
}

/* An UNAVAILABLE that is no refusal (the request may have arrived): a call that is not
   idempotent is not made again and says so; an idempotent one goes on to the next address. */
static void test_ambiguous(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_follower *f = NULL;
    assert_int_equal(dfs_rpc_follower_start(NULL, "Socket closed", &f), DFS_OK);
    dfs_rpc_leader *l = NULL;
    assert_int_equal(
        dfs_rpc_leader_open(fmt("127.0.0.1:%d,%s", dfs_rpc_follower_port(f), fx->leader), NULL, &l,
                            NULL),
        DFS_OK);
    struct dfs_rpc_leader_outcome out;
    char *err = NULL;
    assert_int_equal(echo(l, 0, 5000, 2000, &out, &err), DFS_EUNAVAIL);
    assert_true(out.ambiguous);
    assert_string_equal(err, "Socket closed");
    assert_int_equal(dfs_rpc_follower_calls(f), 1);
    assert_int_equal(atomic_load(&fx->served), 0);
    /* The guess moved on: the next call (idempotent or not) tries the other replica. */
    char guess[64];
    dfs_rpc_leader_guess(l, guess, sizeof guess);
    assert_string_equal(guess, fx->leader);
    dfs_rpc_leader_destroy(l);

    assert_int_equal(
        dfs_rpc_leader_open(fmt("127.0.0.1:%d,%s", dfs_rpc_follower_port(f), fx->leader), NULL, &l,
                            NULL),
        DFS_OK);
    assert_int_equal(echo(l, DFS_RPC_LEADER_IDEMPOTENT, 5000, 2000, &out, NULL), DFS_OK);
    assert_false(out.ambiguous);
    assert_int_equal(dfs_rpc_follower_calls(f), 2);
    assert_int_equal(atomic_load(&fx->served), 1);
    dfs_rpc_leader_destroy(l);
    free(err);
    dfs_rpc_follower_stop(f);
}

/* Refusals without end (two followers naming each other) stop at the deadline. */
static void test_deadline(void **state)
{
    struct fixture *fx = *state;
    (void)fx;
    dfs_rpc_follower *a = NULL, *b = NULL;
    assert_int_equal(dfs_rpc_follower_start(NULL, "x", &a), DFS_OK);
    char aaddr[64];
    snprintf(aaddr, sizeof aaddr, "127.0.0.1:%d", dfs_rpc_follower_port(a));
    assert_int_equal(dfs_rpc_follower_start(aaddr, "not the leader", &b), DFS_OK);
    dfs_rpc_follower_stop(a);
    /* b names a, which is now down; a list of b only. */
    assert_int_equal(dfs_rpc_follower_start(NULL, "not the leader", &a), DFS_OK);
    dfs_rpc_leader *l = NULL;
    assert_int_equal(
        dfs_rpc_leader_open(fmt("127.0.0.1:%d", dfs_rpc_follower_port(b)), NULL, &l, NULL), DFS_OK);
    int64_t t0 = dfs_clock_mono_ns();
    char *err = NULL;
    assert_int_equal(echo(l, 0, 600, 0, NULL, &err), DFS_EUNAVAIL);
    int64_t took = (dfs_clock_mono_ns() - t0) / 1000000;
    if (took > 3000)
        fail_msg("took %lld ms against a 600 ms deadline", (long long)took);
    assert_true(dfs_rpc_follower_calls(b) >= 2);
    free(err);
    dfs_rpc_leader_destroy(l);

    /* Every address down: a call that is not idempotent tries each once and fails at once. */
    assert_int_equal(dfs_rpc_leader_open(fmt("%s,%s", fx->dead, fx->dead), NULL, &l, NULL), DFS_OK);
    t0 = dfs_clock_mono_ns();
    assert_int_equal(echo(l, 0, 5000, 0, NULL, NULL), DFS_EUNAVAIL);
    took = (dfs_clock_mono_ns() - t0) / 1000000;
    if (took > 3000)
        fail_msg("took %lld ms with every address down", (long long)took);
    /* An idempotent one keeps trying within its retry window, no longer. */
    t0 = dfs_clock_mono_ns();
    assert_int_equal(echo(l, DFS_RPC_LEADER_IDEMPOTENT, 5000, 400, NULL, NULL), DFS_EUNAVAIL);
    took = (dfs_clock_mono_ns() - t0) / 1000000;
    if (took < 150 || took > 4000)
        fail_msg("took %lld ms with a 400 ms retry window", (long long)took);
    dfs_rpc_leader_destroy(l);
    dfs_rpc_follower_stop(a);
    dfs_rpc_follower_stop(b);
}

/* A guess that never answers (a listening socket nobody accepts on: a stopped leader): an
   idempotent call moves on after its try's timeout; another reports that it may have been done. */
static void test_silent_guess(void **state)
{
    struct fixture *fx = *state;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s, 16), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    char list[160];
    snprintf(list, sizeof list, "127.0.0.1:%d,%s", ntohs(a.sin_port), fx->leader);
    dfs_rpc_leader *l = NULL;
    assert_int_equal(dfs_rpc_leader_open(list, NULL, &l, NULL), DFS_OK);
    struct dfs_rpc_leader_outcome out;
    int64_t t0 = dfs_clock_mono_ns();
    assert_int_equal(echo(l, DFS_RPC_LEADER_IDEMPOTENT, 300, 2000, &out, NULL), DFS_OK);
    int64_t took = (dfs_clock_mono_ns() - t0) / 1000000;
    if (took < 250 || took > 2300)
        fail_msg("took %lld ms", (long long)took);
    assert_string_equal(out.tried, fx->leader);
    dfs_rpc_leader_destroy(l);

    assert_int_equal(dfs_rpc_leader_open(list, NULL, &l, NULL), DFS_OK);
    char *err = NULL;
    assert_int_equal(echo(l, 0, 300, 0, &out, &err), DFS_ETIMEDOUT);
    assert_true(out.ambiguous);
    assert_int_equal(atomic_load(&fx->served), 1);
    free(err);
    dfs_rpc_leader_destroy(l);
    close(s);
}

struct worker {
    dfs_rpc_leader *l;
    int ok;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 20; i++)
        w->ok += echo(w->l, 0, 5000, 0, NULL, NULL) == DFS_OK;
    return NULL;
}

/* One handle, many threads, through a follower: every call gets through. */
static void test_threads(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_follower *f = NULL;
    assert_int_equal(dfs_rpc_follower_start(fx->leader, "not the leader", &f), DFS_OK);
    dfs_rpc_leader *l = NULL;
    assert_int_equal(dfs_rpc_leader_open(fmt("%s,127.0.0.1:%d", fx->dead, dfs_rpc_follower_port(f)),
                                         NULL, &l, NULL),
                     DFS_OK);
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){l, 0};
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].ok, 20);
    }
    assert_int_equal(atomic_load(&fx->served), 80);
    assert_true(dfs_rpc_follower_calls(f) <= 4);
    dfs_rpc_leader_destroy(l);
    dfs_rpc_follower_stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_trailer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_then_follower, setup, teardown),
        cmocka_unit_test_setup_teardown(test_election, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ambiguous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_guess, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
