/* Tests of the RPC layer against a real server on a loopback port, in this process. */
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "services/rpc/client.h"
#include "services/rpc/loop.h"
#include "services/rpc/server.h"
#include "testdata/echo.pb-c.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

struct fixture {
    /* Later: a call handed to a thread of its own, answered through dfs_rpc_loop_post. */
    atomic_int later_started, later_answered;
    pthread_t later_thread;
    dfs_rpc_server *srv;
    dfs_rpc_channel *ch;
    char addr[64];
    atomic_int cancels_seen;
    atomic_int sum_calls_freed;
    atomic_int sum_messages; /* Sum messages the server has received */
    int64_t idle_ms;         /* the server's stream idle limit (0: the default) */
    atomic_int count_calls_freed;
    atomic_uint count_sent_ok;    /* Count messages whose send completed */
    int threads, handler_threads; /* the server's (threads 0: 2) */
    /* Block: handlers that hold their thread until released (or their delay_ms passed). */
    atomic_int blocked, block_answered;
    atomic_bool block_release;
};

/* ---- server side ---- */

static void unary_handler(dfs_rpc_call *call, void *ctx)
{
    (void)ctx;
    const Dfs__Test__EchoRequest *req = (const Dfs__Test__EchoRequest *)dfs_rpc_call_request(call);
    if (req->code != 0) {
        dfs_rpc_call_fail(call, req->code, "asked to fail: %s", req->text);
        return;
    }
    if (req->delay_ms > 0)
        usleep(req->delay_ms * 1000u);
    Dfs__Test__EchoResponse resp = DFS__TEST__ECHO_RESPONSE__INIT;
    resp.text = req->text;
    resp.data = req->data;
    dfs_rpc_call_reply(call, &resp.base);
}

/* Holds its thread (as a metadata handler waits for commits) until released or delay_ms. */
static void block_handler(dfs_rpc_call *call, void *ctx)
{
    struct fixture *fx = ctx;
    const Dfs__Test__EchoRequest *req = (const Dfs__Test__EchoRequest *)dfs_rpc_call_request(call);
    atomic_fetch_add(&fx->blocked, 1);
    int64_t until = dfs_clock_mono_ns() + (int64_t)req->delay_ms * 1000000;
    while (!atomic_load(&fx->block_release) && dfs_clock_mono_ns() < until)
        usleep(1000);
    Dfs__Test__EchoResponse resp = DFS__TEST__ECHO_RESPONSE__INIT;
    resp.text = req->text;
    atomic_fetch_add(&fx->block_answered, 1);
    dfs_rpc_call_reply(call, &resp.base);
}

struct sum_state {
    struct fixture *fx;
    uint64_t total;
    uint32_t count;
};

static void sum_release(void *p)
{
    struct sum_state *st = p;
    atomic_fetch_add(&st->fx->sum_calls_freed, 1);
    free(st);
}

static void sum_cancelled(dfs_rpc_call *call, void *arg)
{
    (void)call;
    struct sum_state *st = arg;
    atomic_fetch_add(&st->fx->cancels_seen, 1);
}

static void sum_recv(dfs_rpc_call *call, void *arg, ProtobufCMessage *msg, int status)
{
    struct sum_state *st = arg;
    if (status == DFS_EINVAL) {
        dfs_rpc_call_fail(call, DFS_EINVAL, "bad message");
        return;
    }
    if (status != DFS_OK) {
        /* The handler learns of a cancellation here or through on_cancel, whichever comes first. */
        atomic_fetch_add(&st->fx->cancels_seen, 1);
        dfs_rpc_call_finish(call, status, NULL, "gone");
        return;
    }
    if (msg == NULL) {
        Dfs__Test__EchoResponse resp = DFS__TEST__ECHO_RESPONSE__INIT;
        resp.total = st->total;
        resp.index = st->count;
        dfs_rpc_call_reply(call, &resp.base);
        return;
    }
    Dfs__Test__EchoRequest *req = (Dfs__Test__EchoRequest *)msg;
    atomic_fetch_add(&st->fx->sum_messages, 1);
    st->total += req->data.len;
    st->count++;
    int code = req->code;
    protobuf_c_message_free_unpacked(msg, NULL);
    if (code != 0) {
        dfs_rpc_call_fail(call, code, "failed after %u messages", st->count);
        return;
    }
    dfs_rpc_call_recv(call, sum_recv, st);
}

static void sum_handler(dfs_rpc_call *call, void *ctx)
{
    struct sum_state *st = calloc(1, sizeof *st);
    st->fx = ctx;
    dfs_rpc_call_set_state(call, st, sum_release);
    dfs_rpc_call_on_cancel(call, sum_cancelled, st);
    dfs_rpc_call_recv(call, sum_recv, st);
}

struct count_state {
    struct fixture *fx;
    uint32_t next, count;
    size_t data_len;
    unsigned char *data;
};

static void count_release(void *p)
{
    struct count_state *st = p;
    atomic_fetch_add(&st->fx->count_calls_freed, 1);
    free(st->data);
    free(st);
}

static void count_sent(dfs_rpc_call *call, void *arg, bool ok)
{
    struct count_state *st = arg;
    if (!ok) {
        dfs_rpc_call_finish(call, DFS_ECANCELED, NULL, NULL);
        return;
    }
    if (st->next > 0)
        atomic_fetch_add(&st->fx->count_sent_ok, 1);
    if (st->next == st->count) {
        dfs_rpc_call_finish(call, DFS_OK, NULL, NULL);
        return;
    }
    Dfs__Test__EchoResponse resp = DFS__TEST__ECHO_RESPONSE__INIT;
    resp.index = st->next++;
    resp.data.data = st->data;
    resp.data.len = st->data_len;
    dfs_rpc_call_send(call, &resp.base, count_sent, st);
}

static void count_handler(dfs_rpc_call *call, void *ctx)
{
    const Dfs__Test__EchoRequest *req = (const Dfs__Test__EchoRequest *)dfs_rpc_call_request(call);
    struct count_state *st = calloc(1, sizeof *st);
    st->fx = ctx;
    st->count = req->count;
    st->data_len = req->data.len;
    st->data = malloc(st->data_len + 1);
    memcpy(st->data, req->data.data, st->data_len);
    dfs_rpc_call_set_state(call, st, count_release);
    count_sent(call, st, true);
}

/*
 * Later: the handler hands its call to a thread (as a storage node hands a repair to its
 * repairer), which answers it through the call's loop once the call was cancelled, and then some
 * (a worker that is slow to notice, on a loaded machine).
 */
struct later {
    struct fixture *fx;
    dfs_rpc_call *call;
    dfs_rpc_loop *loop;
    dfs_rpc_tag answer;
    atomic_bool cancelled;
};

static void later_answer(dfs_rpc_tag *tag, bool ok)
{
    (void)ok;
    struct later *l = (struct later *)(void *)((char *)tag - offsetof(struct later, answer));
    atomic_store(&l->fx->later_answered, 1);
    dfs_rpc_call_fail(l->call, DFS_ECANCELED, "answered after the cancel");
}

static void later_cancelled(dfs_rpc_call *call, void *arg)
{
    (void)call;
    atomic_store(&((struct later *)arg)->cancelled, true);
}

static void *later_main(void *arg)
{
    struct later *l = arg;
    for (int i = 0; i < 10000 && !atomic_load(&l->cancelled); i++)
        usleep(1000);
    usleep(300 * 1000);
    while (!dfs_rpc_loop_post(l->loop, &l->answer))
        usleep(1000);
    return NULL; /* l is the call's state now: released once the answer finished the call */
}

static void later_handler(dfs_rpc_call *call, void *ctx)
{
    struct fixture *fx = ctx;
    struct later *l = calloc(1, sizeof *l);
    l->fx = fx;
    l->call = call;
    l->loop = dfs_rpc_call_loop(call);
    l->answer.done = later_answer;
    atomic_init(&l->cancelled, false);
    dfs_rpc_call_set_state(call, l, free);
    dfs_rpc_call_on_cancel(call, later_cancelled, l);
    assert_int_equal(pthread_create(&fx->later_thread, NULL, later_main, l), 0);
    atomic_store(&fx->later_started, 1);
}

static int start_server(struct fixture *fx, const char *listen)
{
    struct dfs_rpc_server_config cfg = {.listen = listen,
                                        .threads = fx->threads > 0 ? fx->threads : 2,
                                        .handler_threads = fx->handler_threads,
                                        .stream_idle_ms = fx->idle_ms};
    char *err = NULL;
    int rc = dfs_rpc_server_create(&cfg, &fx->srv, &err);
    assert_int_equal(rc, DFS_OK);
    struct dfs_rpc_method methods[] = {
        {"/dfs.test.Echo/Unary", DFS_RPC_UNARY, &dfs__test__echo_request__descriptor, unary_handler,
         fx, 0},
        {"/dfs.test.Echo/Sum", DFS_RPC_CLIENT_STREAMING, &dfs__test__echo_request__descriptor,
         sum_handler, fx, 0},
        {"/dfs.test.Echo/Count", DFS_RPC_SERVER_STREAMING, &dfs__test__echo_request__descriptor,
         count_handler, fx, 0},
        {"/dfs.test.Echo/Later", DFS_RPC_UNARY, &dfs__test__echo_request__descriptor, later_handler,
         fx, 0},
        {"/dfs.test.Echo/Block", DFS_RPC_UNARY, &dfs__test__echo_request__descriptor, block_handler,
         fx, 0},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        assert_int_equal(dfs_rpc_server_add_method(fx->srv, &methods[i], NULL), DFS_OK);
    rc = dfs_rpc_server_start(fx->srv, &err);
    free(err);
    return rc;
}

static int setup_with(void **state, int threads, int handler_threads)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    fx->threads = threads;
    fx->handler_threads = handler_threads;
    assert_int_equal(start_server(fx, "127.0.0.1:0"), DFS_OK);
    assert_true(dfs_rpc_server_port(fx->srv) > 0);
    snprintf(fx->addr, sizeof fx->addr, "127.0.0.1:%d", dfs_rpc_server_port(fx->srv));
    assert_int_equal(dfs_rpc_channel_create(fx->addr, &fx->ch, NULL), DFS_OK);
    *state = fx;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, 0, 0);
}

/* One loop thread and two handler threads: unary handlers never run on the loop. */
static int setup_handlers(void **state)
{
    return setup_with(state, 1, 2);
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_channel_destroy(fx->ch);
    dfs_rpc_server_destroy(fx->srv);
    free(fx);
    return 0;
}

/* ---- unary ---- */

static int echo(struct fixture *fx, Dfs__Test__EchoRequest *req, Dfs__Test__EchoResponse **resp,
                int64_t timeout_ms, char **err)
{
    return dfs_rpc_unary(fx->ch, "/dfs.test.Echo/Unary", &req->base,
                         &dfs__test__echo_response__descriptor, (ProtobufCMessage **)resp,
                         timeout_ms, err);
}

static void test_unary_round_trip(void **state)
{
    struct fixture *fx = *state;
    Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
    req.text = "hello";
    Dfs__Test__EchoResponse *resp = NULL;
    assert_int_equal(echo(fx, &req, &resp, 5000, NULL), DFS_OK);
    assert_string_equal(resp->text, "hello");
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void test_unary_error_maps_code_and_message(void **state)
{
    struct fixture *fx = *state;
    int codes[] = {DFS_EINVAL, DFS_ENOTFOUND, DFS_EEXIST, DFS_EDATALOSS, DFS_EPRECOND, DFS_ENOSPC};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
        req.text = "why";
        req.code = codes[i];
        Dfs__Test__EchoResponse *resp = NULL;
        char *err = NULL;
        assert_int_equal(echo(fx, &req, &resp, 5000, &err), codes[i]);
        assert_null(resp);
        assert_string_equal(err, "asked to fail: why");
        free(err);
    }
}

static void test_unary_large_messages_both_ways(void **state)
{
    struct fixture *fx = *state;
    size_t n = 10u << 20; /* above gRPC's 4 MiB default */
    unsigned char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 31);
    Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
    req.data.data = data;
    req.data.len = n;
    Dfs__Test__EchoResponse *resp = NULL;
    char *err = NULL;
    assert_int_equal(echo(fx, &req, &resp, 20000, &err), DFS_OK);
    assert_int_equal(resp->data.len, n);
    assert_memory_equal(resp->data.data, data, n);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    free(data);
}

static void test_deadline_exceeded(void **state)
{
    struct fixture *fx = *state;
    Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
    req.delay_ms = 1500;
    Dfs__Test__EchoResponse *resp = NULL;
    char *err = NULL;
    assert_int_equal(echo(fx, &req, &resp, 200, &err), DFS_ETIMEDOUT);
    free(err);
}

static void test_unknown_method_is_unimplemented(void **state)
{
    struct fixture *fx = *state;
    Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    char *err = NULL;
    int rc = dfs_rpc_unary(fx->ch, "/dfs.test.Echo/Nope", &req.base,
                           &dfs__test__echo_response__descriptor, &resp, 5000, &err);
    assert_int_equal(rc, DFS_EINTERNAL);
    assert_non_null(strstr(err, "unknown method /dfs.test.Echo/Nope"));
    free(err);
}

static void test_unreachable_server_is_unavailable(void **state)
{
    (void)state;
    /* Bind and close a port so that nothing listens on it. */
    struct fixture tmp = {0};
    assert_int_equal(start_server(&tmp, "127.0.0.1:0"), DFS_OK);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", dfs_rpc_server_port(tmp.srv));
    dfs_rpc_server_destroy(tmp.srv);
    dfs_rpc_channel *ch;
    assert_int_equal(dfs_rpc_channel_create(addr, &ch, NULL), DFS_OK);
    Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    char *err = NULL;
    int64_t t0 = dfs_clock_mono_ns();
    int rc = dfs_rpc_unary(ch, "/dfs.test.Echo/Unary", &req.base,
                           &dfs__test__echo_response__descriptor, &resp, 10000, &err);
    assert_int_equal(rc, DFS_EUNAVAIL);
    /* Fails fast rather than waiting for the deadline. */
    assert_true(dfs_clock_mono_ns() - t0 < 5000000000ll);
    free(err);
    /* The retrying variant gives up within its budget. */
    t0 = dfs_clock_mono_ns();
    rc = dfs_rpc_unary_retry(ch, "/dfs.test.Echo/Unary", &req.base,
                             &dfs__test__echo_response__descriptor, &resp, 600, 600, NULL);
    assert_int_equal(rc, DFS_EUNAVAIL);
    assert_true(dfs_clock_mono_ns() - t0 < 3000000000ll);
    dfs_rpc_channel_destroy(ch);
}

static void test_port_in_use_is_refused(void **state)
{
    struct fixture *fx = *state;
    struct fixture other = {0};
    assert_int_equal(start_server(&other, fx->addr), DFS_EUNAVAIL);
    dfs_rpc_server_destroy(other.srv);
}

/* ---- async client calls ---- */

struct client_run {
    bool done;
    int status;
    char message[256];
    uint32_t received;
    uint64_t bytes;
    uint32_t sent;
    uint32_t to_send;
    size_t chunk;
    unsigned char *data;
    int fail_at; /* send a message with code != 0 at this index (-1: never) */
    dfs_rpc_ccall *call;
    bool got_response;
    uint64_t total;
};

static void run_done(dfs_rpc_ccall *call, void *arg, int status, const char *message)
{
    (void)call;
    struct client_run *r = arg;
    r->done = true;
    r->status = status;
    snprintf(r->message, sizeof r->message, "%s", message);
}

static void sum_sent(dfs_rpc_ccall *call, void *arg, bool ok);

static void send_next(struct client_run *r)
{
    Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
    req.data.data = r->data;
    req.data.len = r->chunk;
    if ((int)r->sent == r->fail_at)
        req.code = DFS_EDATALOSS;
    bool last = r->sent + 1 == r->to_send;
    r->sent++;
    assert_int_equal(dfs_rpc_ccall_send(r->call, &req.base, last, last ? NULL : sum_sent, r),
                     DFS_OK);
}

static void sum_sent(dfs_rpc_ccall *call, void *arg, bool ok)
{
    (void)call;
    struct client_run *r = arg;
    if (ok && r->sent < r->to_send)
        send_next(r);
}

static void sum_response(dfs_rpc_ccall *call, void *arg, ProtobufCMessage *msg, int status)
{
    (void)call;
    (void)status;
    struct client_run *r = arg;
    if (msg != NULL) {
        r->got_response = true;
        r->total = ((Dfs__Test__EchoResponse *)msg)->total;
        r->received = ((Dfs__Test__EchoResponse *)msg)->index;
        protobuf_c_message_free_unpacked(msg, NULL);
    }
}

static void run_until_done(dfs_rpc_loop *loop, struct client_run *r)
{
    int64_t until = dfs_clock_mono_ns() + 20000000000ll;
    while (!r->done && dfs_clock_mono_ns() < until)
        dfs_rpc_loop_run_once(loop, 100);
    assert_true(r->done);
}

static void test_client_streaming(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    struct client_run r = {.to_send = 40, .chunk = 1u << 20, .fail_at = -1};
    r.data = calloc(1, r.chunk);
    assert_int_equal(
        dfs_rpc_ccall_start(loop, fx->ch, "/dfs.test.Echo/Sum", 20000, run_done, &r, &r.call),
        DFS_OK);
    assert_int_equal(
        dfs_rpc_ccall_recv(r.call, &dfs__test__echo_response__descriptor, sum_response, &r),
        DFS_OK);
    send_next(&r);
    run_until_done(loop, &r);
    assert_int_equal(r.status, DFS_OK);
    assert_true(r.got_response);
    assert_int_equal(r.total, 40ull << 20);
    assert_int_equal(r.received, 40);
    free(r.data);
    dfs_rpc_loop_destroy(loop);
}

static void test_client_streaming_server_error(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    struct client_run r = {.to_send = 1000, .chunk = 1000, .fail_at = 3};
    r.data = calloc(1, r.chunk);
    assert_int_equal(
        dfs_rpc_ccall_start(loop, fx->ch, "/dfs.test.Echo/Sum", 20000, run_done, &r, &r.call),
        DFS_OK);
    assert_int_equal(
        dfs_rpc_ccall_recv(r.call, &dfs__test__echo_response__descriptor, sum_response, &r),
        DFS_OK);
    send_next(&r);
    run_until_done(loop, &r);
    assert_int_equal(r.status, DFS_EDATALOSS);
    assert_string_equal(r.message, "failed after 4 messages");
    assert_false(r.got_response);
    free(r.data);
    dfs_rpc_loop_destroy(loop);
}

static void count_recv(dfs_rpc_ccall *call, void *arg, ProtobufCMessage *msg, int status)
{
    struct client_run *r = arg;
    if (msg == NULL || status != DFS_OK)
        return;
    Dfs__Test__EchoResponse *resp = (Dfs__Test__EchoResponse *)msg;
    assert_int_equal(resp->index, r->received);
    r->received++;
    r->bytes += resp->data.len;
    protobuf_c_message_free_unpacked(msg, NULL);
    dfs_rpc_ccall_recv(call, &dfs__test__echo_response__descriptor, count_recv, r);
}

static void test_server_streaming(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    struct client_run r = {0};
    assert_int_equal(
        dfs_rpc_ccall_start(loop, fx->ch, "/dfs.test.Echo/Count", 20000, run_done, &r, &r.call),
        DFS_OK);
    Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
    req.count = 25;
    unsigned char payload[70000];
    memset(payload, 7, sizeof payload);
    req.data.data = payload;
    req.data.len = sizeof payload;
    assert_int_equal(dfs_rpc_ccall_send(r.call, &req.base, true, NULL, NULL), DFS_OK);
    assert_int_equal(
        dfs_rpc_ccall_recv(r.call, &dfs__test__echo_response__descriptor, count_recv, &r), DFS_OK);
    run_until_done(loop, &r);
    assert_int_equal(r.status, DFS_OK);
    assert_int_equal(r.received, 25);
    assert_int_equal(r.bytes, 25ull * sizeof payload);
    dfs_rpc_loop_destroy(loop);
}

/* A server with a short stream idle limit, and a channel to it. */
static int setup_idle(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    fx->idle_ms = 300;
    assert_int_equal(start_server(fx, "127.0.0.1:0"), DFS_OK);
    snprintf(fx->addr, sizeof fx->addr, "127.0.0.1:%d", dfs_rpc_server_port(fx->srv));
    assert_int_equal(dfs_rpc_channel_create(fx->addr, &fx->ch, NULL), DFS_OK);
    *state = fx;
    return 0;
}

/* A client that sends a message and then nothing (no half-close, no deadline) is cut off: the
   handler sees the cancel, the client DEADLINE_EXCEEDED with the reason. */
static void test_stalled_client_stream_is_cancelled(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    struct client_run r = {0};
    assert_int_equal(
        dfs_rpc_ccall_start(loop, fx->ch, "/dfs.test.Echo/Sum", -1, run_done, &r, &r.call), DFS_OK);
    Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
    assert_int_equal(dfs_rpc_ccall_send(r.call, &req.base, false, NULL, NULL), DFS_OK);
    run_until_done(loop, &r);
    assert_true(r.done);
    assert_int_equal(r.status, DFS_ETIMEDOUT);
    if (strstr(r.message, "sent nothing for 300 ms") == NULL)
        fail_msg("message: %s", r.message);
    dfs_rpc_loop_destroy(loop);
    /* The handler's state is released: nothing of the call is held any more. */
    int64_t until = dfs_clock_mono_ns() + 5000000000ll;
    while (atomic_load(&fx->sum_calls_freed) == 0 && dfs_clock_mono_ns() < until)
        usleep(1000);
    assert_int_equal(atomic_load(&fx->sum_calls_freed), 1);
    assert_int_equal(atomic_load(&fx->sum_messages), 1);
}

/* A client that asks for a stream and never reads it: once the transport's windows are full the
   server's send cannot complete, and the server gives the call up (its state is released) rather
   than hold it. (The client itself learns the status only once it reads what is buffered.) */
static void test_stalled_reader_is_cancelled(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    struct client_run r = {0};
    assert_int_equal(
        dfs_rpc_ccall_start(loop, fx->ch, "/dfs.test.Echo/Count", -1, run_done, &r, &r.call),
        DFS_OK);
    Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
    req.count = 4096; /* 4 GiB if it were all read: far more than any window */
    static unsigned char payload[1 << 20];
    req.data.data = payload;
    req.data.len = sizeof payload;
    assert_int_equal(dfs_rpc_ccall_send(r.call, &req.base, true, NULL, NULL), DFS_OK);
    /* No receive is ever asked for. */
    int64_t until = dfs_clock_mono_ns() + 20000000000ll;
    while (atomic_load(&fx->count_calls_freed) == 0 && dfs_clock_mono_ns() < until)
        dfs_rpc_loop_run_once(loop, 50);
    assert_int_equal(atomic_load(&fx->count_calls_freed), 1);
    assert_true(atomic_load(&fx->count_sent_ok) < 4096);
    dfs_rpc_ccall_cancel(r.call);
    run_until_done(loop, &r);
    dfs_rpc_loop_destroy(loop);
}

static void test_malformed_request_is_invalid_argument(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    struct client_run r = {0};
    assert_int_equal(
        dfs_rpc_ccall_start(loop, fx->ch, "/dfs.test.Echo/Unary", 5000, run_done, &r, &r.call),
        DFS_OK);
    /* Field 1 claims 100 bytes of string, 3 follow. */
    unsigned char junk[] = {0x0a, 0x64, 'a', 'b', 'c'};
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)junk, sizeof junk);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    assert_int_equal(dfs_rpc_ccall_send_raw(r.call, bb, true, NULL, NULL), DFS_OK);
    run_until_done(loop, &r);
    assert_int_equal(r.status, DFS_EINVAL);
    assert_non_null(strstr(r.message, "does not parse"));
    dfs_rpc_loop_destroy(loop);

    /* Parses, but its string holds a NUL (protobuf-c would hand over "ab"), then one that is not
       UTF-8: refused before the handler runs, naming the field; bytes fields may hold anything. */
    static const struct {
        unsigned char bytes[8];
        size_t len;
        const char *want;
    } cases[] = {
        {{0x0a, 0x03, 'a', 'b', 0x00}, 5, "dfs.test.EchoRequest.text holds a NUL byte"},
        {{0x0a, 0x02, 0xff, 0xfe}, 4, "dfs.test.EchoRequest.text is not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        loop = dfs_rpc_loop_create();
        struct client_run c = {0};
        assert_int_equal(
            dfs_rpc_ccall_start(loop, fx->ch, "/dfs.test.Echo/Unary", 5000, run_done, &c, &c.call),
            DFS_OK);
        s = grpc_slice_from_copied_buffer((const char *)cases[i].bytes, cases[i].len);
        bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        assert_int_equal(dfs_rpc_ccall_send_raw(c.call, bb, true, NULL, NULL), DFS_OK);
        run_until_done(loop, &c);
        assert_int_equal(c.status, DFS_EINVAL);
        if (strstr(c.message, cases[i].want) == NULL)
            fail_msg("\"%s\" does not say \"%s\"", c.message, cases[i].want);
        dfs_rpc_loop_destroy(loop);
    }
}

static void test_client_cancel_reaches_handler(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    struct client_run r = {.to_send = 1000000, .chunk = 100, .fail_at = -1};
    r.data = calloc(1, r.chunk);
    assert_int_equal(
        dfs_rpc_ccall_start(loop, fx->ch, "/dfs.test.Echo/Sum", 20000, run_done, &r, &r.call),
        DFS_OK);
    send_next(&r);
    /* Let some messages flow, then cancel. */
    while (atomic_load(&fx->sum_messages) < 50)
        dfs_rpc_loop_run_once(loop, 100);
    dfs_rpc_ccall_cancel_with(r.call, DFS_EIO, "local disk failed");
    run_until_done(loop, &r);
    assert_int_equal(r.status, DFS_EIO);
    assert_string_equal(r.message, "local disk failed");
    /* The handler learns that the stream ended (gRPC may report a cancel as the end of the
       stream) and the call's state is released: nothing hangs, nothing leaks. */
    int64_t until = dfs_clock_mono_ns() + 5000000000ll;
    while (atomic_load(&fx->sum_calls_freed) == 0 && dfs_clock_mono_ns() < until)
        usleep(1000);
    assert_int_equal(atomic_load(&fx->sum_calls_freed), 1);
    free(r.data);
    dfs_rpc_loop_destroy(loop);
}

static void test_stop_cancels_calls_in_flight(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    struct client_run r = {.to_send = 1000000, .chunk = 100, .fail_at = -1};
    r.data = calloc(1, r.chunk);
    assert_int_equal(
        dfs_rpc_ccall_start(loop, fx->ch, "/dfs.test.Echo/Sum", 20000, run_done, &r, &r.call),
        DFS_OK);
    send_next(&r);
    /* Wait until the server's handler holds the call (not just until our sends were buffered). */
    while (atomic_load(&fx->sum_messages) < 20)
        dfs_rpc_loop_run_once(loop, 100);
    /* The client keeps streaming; stop gives it 200 ms, then cancels. */
    int64_t t0 = dfs_clock_mono_ns();
    dfs_rpc_server_stop(fx->srv, 200);
    int64_t took_ms = (dfs_clock_mono_ns() - t0) / 1000000;
    if (!(took_ms >= 150 && took_ms < 5000))
        fail_msg("stop took %lld ms, sent %u", (long long)took_ms, r.sent);
    run_until_done(loop, &r);
    assert_int_not_equal(r.status, DFS_OK);
    /* Every call's state was released. */
    assert_int_equal(atomic_load(&fx->sum_calls_freed), 1);
    free(r.data);
    dfs_rpc_loop_destroy(loop);
}

static void *call_later(void *arg)
{
    struct fixture *fx = arg;
    Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
    Dfs__Test__EchoResponse *resp = NULL;
    int rc = dfs_rpc_unary(fx->ch, "/dfs.test.Echo/Later", &req.base,
                           &dfs__test__echo_response__descriptor, (ProtobufCMessage **)&resp, 20000,
                           NULL);
    if (resp != NULL)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return (void *)(intptr_t)rc;
}

/*
 * A call whose handler handed it to another thread outlives the client's connection once the stop
 * cancels it. The stop must still wait until that thread's answer, posted to the call's loop, has
 * finished the call: only then may it shut the loops down (and the caller free them).
 */
static void test_stop_waits_for_calls_answered_from_other_threads(void **state)
{
    struct fixture *fx = *state;
    pthread_t client;
    assert_int_equal(pthread_create(&client, NULL, call_later, fx), 0);
    while (atomic_load(&fx->later_started) == 0)
        usleep(1000);
    dfs_rpc_server_stop(fx->srv, 0);
    /* Checked before anything is joined: the stop itself must have waited. */
    int answered = atomic_load(&fx->later_answered);
    void *rc = NULL;
    pthread_join(client, &rc);
    pthread_join(fx->later_thread, NULL);
    assert_int_equal(answered, 1);
    assert_int_not_equal((int)(intptr_t)rc, DFS_OK);
}

static void test_many_concurrent_unary_calls(void **state)
{
    struct fixture *fx = *state;
    for (int i = 0; i < 200; i++) {
        char text[32];
        snprintf(text, sizeof text, "n%d", i);
        Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
        req.text = text;
        Dfs__Test__EchoResponse *resp = NULL;
        assert_int_equal(echo(fx, &req, &resp, 5000, NULL), DFS_OK);
        assert_string_equal(resp->text, text);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
}

struct block_call {
    struct fixture *fx;
    uint32_t delay_ms;
    int rc;
};

static void *call_block(void *arg)
{
    struct block_call *b = arg;
    Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
    req.text = "blocked";
    req.delay_ms = b->delay_ms;
    Dfs__Test__EchoResponse *resp = NULL;
    b->rc = dfs_rpc_unary(b->fx->ch, "/dfs.test.Echo/Block", &req.base,
                          &dfs__test__echo_response__descriptor, (ProtobufCMessage **)&resp, 30000,
                          NULL);
    if (resp != NULL)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return NULL;
}

static void wait_blocked(struct fixture *fx, int n)
{
    int64_t until = dfs_clock_mono_ns() + 20000000000ll;
    while (atomic_load(&fx->blocked) < n && dfs_clock_mono_ns() < until)
        usleep(1000);
    assert_int_equal(atomic_load(&fx->blocked), n);
}

/*
 * A handler that holds its thread for long (a metadata service's handler waiting for one commit
 * after another) must not hold up calls that arrive meanwhile. gRPC binds each call to one loop's
 * completion queue when it arrives, busy or not: a handler run on the loop (the only one here)
 * keeps every later call bound to it waiting until it returns, past their deadlines (the
 * metadata benchmark's 1-replica "Deadline Exceeded": three storage nodes' inventory reports
 * held three of four loops for seconds). With handler threads the loop only dispatches.
 */
static void test_blocking_handler_holds_up_no_other_call(void **state)
{
    struct fixture *fx = *state;
    struct block_call b = {.fx = fx, .delay_ms = 20000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, call_block, &b), 0);
    wait_blocked(fx, 1);
    char failed[256] = "";
    for (int i = 0; i < 50 && failed[0] == '\0'; i++) {
        Dfs__Test__EchoRequest req = DFS__TEST__ECHO_REQUEST__INIT;
        req.text = "past the blocked one";
        Dfs__Test__EchoResponse *resp = NULL;
        char *err = NULL;
        if (echo(fx, &req, &resp, 3000, &err) == DFS_OK)
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        else
            snprintf(failed, sizeof failed, "call %d behind a blocked handler: %s", i,
                     err != NULL ? err : "?");
        free(err);
    }
    int answered = atomic_load(&fx->block_answered);
    atomic_store(&fx->block_release, true);
    pthread_join(th, NULL);
    if (failed[0] != '\0')
        fail_msg("%s", failed);
    assert_int_equal(answered, 0);
    assert_int_equal(b.rc, DFS_OK);
}

static void test_handler_threads_many_calls(void **state)
{
    test_many_concurrent_unary_calls(state);
}

static void test_handler_threads_errors(void **state)
{
    test_unary_error_maps_code_and_message(state);
}

static void test_handler_threads_leave_streams_on_the_loop(void **state)
{
    test_server_streaming(state);
}

/* The stop waits for a handler still running on a handler thread, and its answer. */
static void test_stop_waits_for_handler_threads(void **state)
{
    struct fixture *fx = *state;
    struct block_call b = {.fx = fx, .delay_ms = 500};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, call_block, &b), 0);
    wait_blocked(fx, 1);
    dfs_rpc_server_stop(fx->srv, 0);
    int answered = atomic_load(&fx->block_answered);
    pthread_join(th, NULL);
    assert_int_equal(answered, 1);
}

int main(void)
{
    dfs_log_init("rpc_test", DFS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unary_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unary_error_maps_code_and_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unary_large_messages_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_exceeded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_method_is_unimplemented, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_server_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_in_use_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_streaming_server_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_request_is_invalid_argument, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_client_cancel_reaches_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_client_stream_is_cancelled, setup_idle,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stalled_reader_is_cancelled, setup_idle, teardown),
        cmocka_unit_test_setup_teardown(test_stop_cancels_calls_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_waits_for_calls_answered_from_other_threads,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_concurrent_unary_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handler_threads_many_calls, setup_handlers, teardown),
        cmocka_unit_test_setup_teardown(test_handler_threads_errors, setup_handlers, teardown),
        cmocka_unit_test_setup_teardown(test_handler_threads_leave_streams_on_the_loop,
                                        setup_handlers, teardown),
        cmocka_unit_test_setup_teardown(test_blocking_handler_holds_up_no_other_call,
                                        setup_handlers, teardown),
        cmocka_unit_test_setup_teardown(test_stop_waits_for_handler_threads, setup_handlers,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
