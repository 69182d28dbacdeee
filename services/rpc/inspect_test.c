/* Tests of health, reflection and the call observer against a real server in this process. */
#include "common/err.h"
#include "common/log.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "protos/descriptor_set.h"
#include "services/rpc/client.h"
#include "services/rpc/health.h"
#include "services/rpc/loop.h"
#include "services/rpc/reflection.h"
#include "services/rpc/server.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

struct fixture {
    dfs_rpc_server *srv;
    dfs_rpc_health *health;
    dfs_rpc_reflection *refl;
    dfs_rpc_channel *ch;
    atomic_int calls_seen;
    atomic_int unknown_seen;
    atomic_ullong bytes_in, bytes_out;
    atomic_int last_status;
};

static void observed(void *arg, const struct dfs_rpc_call_record *rec)
{
    struct fixture *fx = arg;
    atomic_fetch_add(&fx->calls_seen, 1);
    if (rec->method < 0)
        atomic_fetch_add(&fx->unknown_seen, 1);
    atomic_fetch_add(&fx->bytes_in, rec->bytes_in);
    atomic_fetch_add(&fx->bytes_out, rec->bytes_out);
    atomic_store(&fx->last_status, (int)rec->status);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    struct dfs_rpc_server_config cfg = {.listen = "127.0.0.1:0", .threads = 2};
    struct dfs_rpc_observer obs = {observed, fx};
    assert_int_equal(dfs_rpc_health_create(&fx->health, NULL), DFS_OK);
    assert_int_equal(
        dfs_rpc_reflection_create(dfs_descriptor_set, dfs_descriptor_set_size, &fx->refl, NULL),
        DFS_OK);
    assert_int_equal(dfs_rpc_server_create(&cfg, &fx->srv, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_health_register(fx->health, fx->srv, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_reflection_register(fx->refl, fx->srv, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_set_observer(fx->srv, &obs, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(fx->srv, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_set_observer(fx->srv, &obs, NULL), DFS_EINTERNAL);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", dfs_rpc_server_port(fx->srv));
    assert_int_equal(dfs_rpc_channel_create(addr, &fx->ch, NULL), DFS_OK);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    dfs_rpc_channel_destroy(fx->ch);
    dfs_rpc_server_stop(fx->srv, 1000);
    dfs_rpc_server_destroy(fx->srv);
    dfs_rpc_reflection_destroy(fx->refl);
    dfs_rpc_health_destroy(fx->health);
    free(fx);
    return 0;
}

/* ---- the reflection index ---- */

static const char *file_of(const dfs_rpc_reflection *r, const char *symbol)
{
    int f = dfs_rpc_reflection_find_symbol(r, symbol);
    return f < 0 ? NULL : dfs_rpc_reflection_file_name(r, (size_t)f);
}

static void test_index_finds_every_kind_of_symbol(void **state)
{
    const dfs_rpc_reflection *r = ((struct fixture *)*state)->refl;
    assert_true(dfs_rpc_reflection_file_count(r) >= 6);
    assert_string_equal(file_of(r, "dfs.v1.Metadata"), "dfs/v1/metadata.proto");
    assert_string_equal(file_of(r, "dfs.v1.Metadata.ListNodes"), "dfs/v1/metadata.proto");
    assert_string_equal(file_of(r, "dfs.v1.Storage"), "dfs/v1/storage.proto");
    assert_string_equal(file_of(r, "dfs.v1.ListNodesRequest"), "dfs/v1/metadata.proto");
    assert_string_equal(file_of(r, "dfs.v1.Redundancy"), "dfs/v1/types.proto");
    /* A nested enum, its values (siblings of the enum), a field, a package. */
    assert_string_equal(file_of(r, "dfs.v1.Redundancy.Scheme"), "dfs/v1/types.proto");
    assert_string_equal(file_of(r, "dfs.v1.Redundancy.scheme"), "dfs/v1/types.proto");
    assert_string_equal(file_of(r, "grpc.health.v1.HealthCheckResponse.ServingStatus"),
                        "grpc/health/v1/health.proto");
    assert_string_equal(file_of(r, "grpc.health.v1.HealthCheckResponse.SERVING"),
                        "grpc/health/v1/health.proto");
    assert_string_equal(file_of(r, "grpc.reflection.v1alpha.ServerReflection"),
                        "grpc/reflection/v1alpha/reflection.proto");
    assert_non_null(file_of(r, "dfs.v1"));
    assert_non_null(file_of(r, "grpc"));
    assert_null(file_of(r, "dfs.v1.NoSuchThing"));
    assert_null(file_of(r, ""));
    assert_null(file_of(r, "dfs.v1.Metadata."));
}

static void test_index_closure_lists_imports_once(void **state)
{
    const dfs_rpc_reflection *r = ((struct fixture *)*state)->refl;
    int f = dfs_rpc_reflection_find_file(r, "dfs/v1/metadata.proto");
    assert_true(f >= 0);
    int out[16];
    size_t n = dfs_rpc_reflection_closure(r, f, out, 16);
    assert_true(n >= 2);
    assert_int_equal(out[0], f);
    bool types = false;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++)
            assert_int_not_equal(out[i], out[j]);
        types |= strcmp(dfs_rpc_reflection_file_name(r, (size_t)out[i]), "dfs/v1/types.proto") == 0;
    }
    assert_true(types);
    assert_int_equal(dfs_rpc_reflection_find_file(r, "nope.proto"), -1);
    assert_int_equal(dfs_rpc_reflection_closure(r, -1, out, 16), 0);
}

static void test_index_refuses_garbage(void **state)
{
    (void)state;
    dfs_rpc_reflection *r = NULL;
    char *err = NULL;
    const unsigned char junk[] = {0x0a, 0x7f, 0x01};
    assert_int_equal(dfs_rpc_reflection_create(junk, sizeof junk, &r, &err), DFS_EINVAL);
    assert_non_null(err);
    free(err);
    err = NULL;
    /* A file that imports a file the set lacks: {file {name "a.proto" dependency "b.proto"}}. */
    const unsigned char orphan[] = {0x0a, 0x12, 0x0a, 0x07, 'a', '.', 'p', 'r', 'o', 't',
                                    'o',  0x1a, 0x07, 'b',  '.', 'p', 'r', 'o', 't', 'o'};
    assert_int_equal(dfs_rpc_reflection_create(orphan, sizeof orphan, &r, &err), DFS_EINVAL);
    assert_non_null(strstr(err, "b.proto"));
    free(err);
    assert_int_equal(dfs_rpc_reflection_create(orphan, 0, &r, NULL), DFS_EINVAL);
}

/* ---- the reflection stream ---- */

struct rstream {
    dfs_rpc_ccall *call;
    int nsent;
    Grpc__Reflection__V1__ServerReflectionResponse *resp[8];
    int nresp;
    bool done;
    int status;
};

static void rs_done(dfs_rpc_ccall *call, void *arg, int status, const char *message)
{
    (void)call;
    (void)message;
    struct rstream *s = arg;
    s->done = true;
    s->status = status;
}

static void rs_sent(dfs_rpc_ccall *call, void *arg, bool ok)
{
    (void)call;
    (void)ok;
    ((struct rstream *)arg)->nsent++;
}

static void rs_recv(dfs_rpc_ccall *call, void *arg, ProtobufCMessage *msg, int status)
{
    struct rstream *s = arg;
    if (msg == NULL || status != DFS_OK)
        return;
    s->resp[s->nresp++] = (Grpc__Reflection__V1__ServerReflectionResponse *)msg;
    if (s->nresp < 8)
        dfs_rpc_ccall_recv(call, &grpc__reflection__v1__server_reflection_response__descriptor,
                           rs_recv, s);
}

/* Send requests on one stream of `method` and collect the responses. */
static void reflect(struct fixture *fx, const char *method,
                    Grpc__Reflection__V1__ServerReflectionRequest **reqs, int n, struct rstream *s)
{
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    memset(s, 0, sizeof *s);
    assert_int_equal(dfs_rpc_ccall_start(loop, fx->ch, method, 10000, rs_done, s, &s->call),
                     DFS_OK);
    assert_int_equal(
        dfs_rpc_ccall_recv(s->call, &grpc__reflection__v1__server_reflection_response__descriptor,
                           rs_recv, s),
        DFS_OK);
    for (int i = 0; i < n; i++) {
        /* One send at a time: the next goes once this one was handed over and answered. */
        assert_int_equal(dfs_rpc_ccall_send(s->call, &reqs[i]->base, i == n - 1, rs_sent, s),
                         DFS_OK);
        while ((s->nresp <= i || s->nsent <= i) && !s->done)
            dfs_rpc_loop_run_once(loop, 100);
    }
    while (!s->done)
        dfs_rpc_loop_run_once(loop, 100);
    dfs_rpc_loop_destroy(loop);
}

static void free_responses(struct rstream *s)
{
    for (int i = 0; i < s->nresp; i++)
        protobuf_c_message_free_unpacked(&s->resp[i]->base, NULL);
}

static void test_reflection_stream_answers_in_order(void **state)
{
    struct fixture *fx = *state;
    Grpc__Reflection__V1__ServerReflectionRequest
        list = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT,
        sym = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT,
        bad = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT,
        ext = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT,
        none = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    list.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    list.list_services = "";
    sym.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    sym.file_containing_symbol = "grpc.health.v1.Health";
    bad.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    bad.file_containing_symbol = "no.such.Symbol";
    ext.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
    ext.all_extension_numbers_of_type = "grpc.health.v1.HealthCheckRequest";
    Grpc__Reflection__V1__ServerReflectionRequest *reqs[] = {&list, &sym, &bad, &ext, &none};
    struct rstream s;
    reflect(fx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", reqs, 5, &s);
    assert_int_equal(s.status, DFS_OK);
    assert_int_equal(s.nresp, 5);

    const Grpc__Reflection__V1__ListServiceResponse *l = s.resp[0]->list_services_response;
    assert_non_null(l);
    assert_int_equal(l->n_service, 3);
    assert_string_equal(l->service[0]->name, "grpc.health.v1.Health");
    assert_string_equal(l->service[1]->name, "grpc.reflection.v1.ServerReflection");
    assert_string_equal(l->service[2]->name, "grpc.reflection.v1alpha.ServerReflection");
    assert_non_null(s.resp[0]->original_request);

    assert_non_null(s.resp[1]->file_descriptor_response);
    assert_int_equal(s.resp[1]->file_descriptor_response->n_file_descriptor_proto, 1);

    assert_non_null(s.resp[2]->error_response);
    assert_int_equal(s.resp[2]->error_response->error_code, GRPC_STATUS_NOT_FOUND);
    assert_non_null(strstr(s.resp[2]->error_response->error_message, "no.such.Symbol"));

    assert_non_null(s.resp[3]->all_extension_numbers_response);
    assert_int_equal(s.resp[3]->all_extension_numbers_response->n_extension_number, 0);

    assert_non_null(s.resp[4]->error_response);
    assert_int_equal(s.resp[4]->error_response->error_code, GRPC_STATUS_UNIMPLEMENTED);
    free_responses(&s);
}

/* ---- health ---- */

static int check(struct fixture *fx, const char *service, int *status)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    ProtobufCMessage *resp = NULL;
    char *err = NULL;
    int rc = dfs_rpc_unary(fx->ch, "/grpc.health.v1.Health/Check", &req.base,
                           &grpc__health__v1__health_check_response__descriptor, &resp, 5000, &err);
    free(err);
    if (rc == DFS_OK) {
        *status = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return rc;
}

static void test_health_check(void **state)
{
    struct fixture *fx = *state;
    int st = -1;
    assert_int_equal(check(fx, "", &st), DFS_ENOTFOUND);
    assert_int_equal(dfs_rpc_health_set(fx->health, "", DFS_HEALTH_SERVING, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_health_set(fx->health, "x.Y", DFS_HEALTH_NOT_SERVING, NULL), DFS_OK);
    assert_int_equal(check(fx, "", &st), DFS_OK);
    assert_int_equal(st, DFS_HEALTH_SERVING);
    assert_int_equal(check(fx, "x.Y", &st), DFS_OK);
    assert_int_equal(st, DFS_HEALTH_NOT_SERVING);
    assert_int_equal(check(fx, "x.Z", &st), DFS_ENOTFOUND);
    char longname[DFS_RPC_HEALTH_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(dfs_rpc_health_set(fx->health, longname, DFS_HEALTH_SERVING, NULL),
                     DFS_EINVAL);
    assert_int_equal(dfs_rpc_health_set(fx->health, "", (enum dfs_health_status)7, NULL),
                     DFS_EINVAL);
    dfs_rpc_health_shutdown(fx->health);
    assert_int_equal(check(fx, "", &st), DFS_OK);
    assert_int_equal(st, DFS_HEALTH_NOT_SERVING);
    /* Once shut down, nothing brings it back. */
    assert_int_equal(dfs_rpc_health_set(fx->health, "", DFS_HEALTH_SERVING, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_health_get(fx->health, "", NULL), DFS_HEALTH_NOT_SERVING);
}

struct wstream {
    dfs_rpc_ccall *call;
    int seen[16];
    int n;
    bool done;
    int status;
};

static void ws_done(dfs_rpc_ccall *call, void *arg, int status, const char *message)
{
    (void)call;
    (void)message;
    struct wstream *w = arg;
    w->done = true;
    w->status = status;
}

static void ws_recv(dfs_rpc_ccall *call, void *arg, ProtobufCMessage *msg, int status)
{
    struct wstream *w = arg;
    if (msg == NULL || status != DFS_OK)
        return;
    if (w->n < 16)
        w->seen[w->n++] = ((Grpc__Health__V1__HealthCheckResponse *)msg)->status;
    protobuf_c_message_free_unpacked(msg, NULL);
    dfs_rpc_ccall_recv(call, &grpc__health__v1__health_check_response__descriptor, ws_recv, w);
}

static void wait_seen(dfs_rpc_loop *loop, struct wstream *w, int n)
{
    for (int i = 0; i < 100 && w->n < n && !w->done; i++)
        dfs_rpc_loop_run_once(loop, 100);
    assert_true(w->n >= n);
}

static void test_health_watch_follows_changes_and_shutdown(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(dfs_rpc_health_set(fx->health, "svc", DFS_HEALTH_NOT_SERVING, NULL), DFS_OK);
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    struct wstream w, u;
    memset(&w, 0, sizeof w);
    memset(&u, 0, sizeof u);
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = "svc";
    assert_int_equal(dfs_rpc_ccall_start(loop, fx->ch, "/grpc.health.v1.Health/Watch", 20000,
                                         ws_done, &w, &w.call),
                     DFS_OK);
    assert_int_equal(dfs_rpc_ccall_send(w.call, &req.base, true, NULL, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_ccall_recv(
                         w.call, &grpc__health__v1__health_check_response__descriptor, ws_recv, &w),
                     DFS_OK);
    Grpc__Health__V1__HealthCheckRequest unknown = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    unknown.service = "later";
    assert_int_equal(dfs_rpc_ccall_start(loop, fx->ch, "/grpc.health.v1.Health/Watch", 20000,
                                         ws_done, &u, &u.call),
                     DFS_OK);
    assert_int_equal(dfs_rpc_ccall_send(u.call, &unknown.base, true, NULL, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_ccall_recv(
                         u.call, &grpc__health__v1__health_check_response__descriptor, ws_recv, &u),
                     DFS_OK);

    wait_seen(loop, &w, 1);
    assert_int_equal(w.seen[0], DFS_HEALTH_NOT_SERVING);
    wait_seen(loop, &u, 1);
    assert_int_equal(u.seen[0], 3 /* SERVICE_UNKNOWN */);

    assert_int_equal(dfs_rpc_health_set(fx->health, "svc", DFS_HEALTH_SERVING, NULL), DFS_OK);
    wait_seen(loop, &w, 2);
    assert_int_equal(w.seen[1], DFS_HEALTH_SERVING);
    assert_int_equal(dfs_rpc_health_set(fx->health, "later", DFS_HEALTH_SERVING, NULL), DFS_OK);
    wait_seen(loop, &u, 2);
    assert_int_equal(u.seen[1], DFS_HEALTH_SERVING);

    /* Shutdown: NOT_SERVING, then the stream ends with UNAVAILABLE. */
    dfs_rpc_health_shutdown(fx->health);
    for (int i = 0; i < 100 && !(w.done && u.done); i++)
        dfs_rpc_loop_run_once(loop, 100);
    assert_true(w.done && u.done);
    assert_int_equal(w.seen[w.n - 1], DFS_HEALTH_NOT_SERVING);
    assert_int_equal(u.seen[u.n - 1], DFS_HEALTH_NOT_SERVING);
    assert_int_equal(w.status, DFS_EUNAVAIL);
    dfs_rpc_loop_destroy(loop);
}

/* ---- the observer ---- */

static void test_observer_sees_every_call(void **state)
{
    struct fixture *fx = *state;
    int st;
    int before = atomic_load(&fx->calls_seen);
    assert_int_equal(check(fx, "nope", &st), DFS_ENOTFOUND);
    /* The record is made when the call's state goes, a moment after the client has its answer. */
    for (int i = 0; i < 200 && atomic_load(&fx->calls_seen) == before; i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(atomic_load(&fx->calls_seen), before + 1);
    assert_int_equal(atomic_load(&fx->last_status), GRPC_STATUS_NOT_FOUND);
    assert_true(atomic_load(&fx->bytes_in) >= 6); /* "nope" and its tag */

    ProtobufCMessage *resp = NULL;
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    assert_int_equal(dfs_rpc_unary(fx->ch, "/no.Such/Method", &req.base,
                                   &grpc__health__v1__health_check_response__descriptor, &resp,
                                   5000, NULL),
                     DFS_EINTERNAL);
    for (int i = 0; i < 200 && atomic_load(&fx->unknown_seen) == 0; i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(atomic_load(&fx->unknown_seen), 1);

    assert_int_equal(dfs_rpc_server_method_count(fx->srv), 4);
    assert_string_equal(dfs_rpc_server_method(fx->srv, 0)->name, "/grpc.health.v1.Health/Check");
    assert_null(dfs_rpc_server_method(fx->srv, 4));
}

int main(void)
{
    dfs_log_init("inspect_test", DFS_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_index_finds_every_kind_of_symbol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_closure_lists_imports_once, setup, teardown),
        cmocka_unit_test(test_index_refuses_garbage),
        cmocka_unit_test_setup_teardown(test_reflection_stream_answers_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_watch_follows_changes_and_shutdown, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_observer_sees_every_call, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
