/* Tests of the metrics registry, its HTTP endpoint and the readiness thread. */
#include "common/err.h"
#include "common/log.h"
#include "grpc/health/v1/health.pb-c.h"
#include "services/daemon/metrics.h"
#include "services/daemon/metrics_http.h"
#include "services/daemon/readiness.h"
#include "services/rpc/client.h"
#include "services/rpc/health.h"
#include "services/rpc/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* The value of the sample line that starts with `prefix` ("name{labels} "), or -1. */
static double sample(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, prefix, n) == 0)
            return strtod(line + n, NULL);
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return -1;
}

/*
 * Check the text format: every line is a comment (# HELP / # TYPE) or `name[{labels}] value`; a
 * sample's family was declared by a TYPE line before it; histogram buckets never decrease and
 * _count equals the +Inf bucket.
 */
static void check_format(const char *text)
{
    char family[128] = "";
    char type[32] = "";
    double last_bucket = -1;
    double inf_bucket = -1;
    char *copy = strdup(text);
    for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# HELP ", 7) == 0)
            continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%127s %31s", family, type), 2);
            last_bucket = -1;
            continue;
        }
        assert_true(line[0] != '#');
        char *space = strrchr(line, ' ');
        assert_non_null(space);
        char *end = NULL;
        double v = strtod(space + 1, &end);
        assert_true(*end == '\0');
        size_t flen = strlen(family);
        assert_true(flen > 0);
        assert_memory_equal(line, family, flen);
        const char *suffix = line + flen;
        if (strcmp(type, "histogram") == 0) {
            if (strncmp(suffix, "_bucket{", 8) == 0) {
                if (strstr(suffix, "le=\"0.0005\"") != NULL)
                    last_bucket = -1;
                assert_true(v >= last_bucket);
                last_bucket = v;
                if (strstr(suffix, "le=\"+Inf\"") != NULL)
                    inf_bucket = v;
            } else if (strncmp(suffix, "_count{", 7) == 0) {
                assert_true(v == inf_bucket);
            } else {
                assert_int_equal(strncmp(suffix, "_sum{", 5), 0);
            }
        } else {
            assert_true(suffix[0] == '{' || suffix[0] == ' ');
        }
    }
    free(copy);
}

/* ---- metrics over a real server ---- */

struct fixture {
    dfs_rpc_server *srv;
    dfs_rpc_health *health;
    dfs_metrics *metrics;
    dfs_rpc_channel *ch;
};

static void my_collector(void *arg, dfs_metrics_writer *w)
{
    (void)arg;
    char v[64];
    char labels[128];
    snprintf(labels, sizeof labels, "zone=\"%s\"",
             dfs_metrics_label_value(v, sizeof v, "a\"b\\c\nd"));
    dfs_metrics_family(w, "test_thing", "gauge", "A test figure.");
    dfs_metrics_sample(w, "test_thing", labels, 2.5);
    dfs_metrics_counter(w, "test_total", "A test counter.", UINT64_C(18446744073709551615));
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    struct dfs_rpc_server_config cfg = {.listen = "127.0.0.1:0", .threads = 2};
    struct dfs_metrics_config mcfg = {.program = "metrics_test", .version = "9.9"};
    assert_int_equal(dfs_rpc_health_create(&fx->health, NULL), DFS_OK);
    assert_int_equal(dfs_metrics_create(&mcfg, &fx->metrics, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_create(&cfg, &fx->srv, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_health_register(fx->health, fx->srv, NULL), DFS_OK);
    assert_int_equal(dfs_metrics_watch_server(fx->metrics, fx->srv, NULL), DFS_OK);
    assert_int_equal(dfs_metrics_watch_server(fx->metrics, fx->srv, NULL), DFS_EINTERNAL);
    assert_int_equal(dfs_metrics_add_collector(fx->metrics, my_collector, NULL, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(fx->srv, NULL), DFS_OK);
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
    dfs_rpc_health_destroy(fx->health);
    dfs_metrics_destroy(fx->metrics);
    free(fx);
    return 0;
}

static int check(struct fixture *fx, const char *service)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    ProtobufCMessage *resp = NULL;
    int rc = dfs_rpc_unary(fx->ch, "/grpc.health.v1.Health/Check", &req.base,
                           &grpc__health__v1__health_check_response__descriptor, &resp, 5000, NULL);
    if (rc == DFS_OK)
        protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

static char *render(struct fixture *fx)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(dfs_metrics_render(fx->metrics, &text, &len, NULL), DFS_OK);
    assert_int_equal(strlen(text), len);
    check_format(text);
    return text;
}

#define CHECK_OK                                                                              \
    "grpc_server_handled_total{grpc_service=\"grpc.health.v1.Health\",grpc_method=\"Check\"," \
    "grpc_type=\"unary\",grpc_code=\"OK\"} "
#define CHECK_NOT_FOUND                                                                       \
    "grpc_server_handled_total{grpc_service=\"grpc.health.v1.Health\",grpc_method=\"Check\"," \
    "grpc_type=\"unary\",grpc_code=\"NOT_FOUND\"} "
#define CHECK_COUNT                                                              \
    "grpc_server_handling_seconds_count{grpc_service=\"grpc.health.v1.Health\"," \
    "grpc_method=\"Check\",grpc_type=\"unary\"} "

static void test_render_counts_calls_by_method_and_code(void **state)
{
    struct fixture *fx = *state;
    char *text = render(fx);
    /* Every method is there before any call. */
    assert_true(sample(text, CHECK_OK) == 0);
    assert_non_null(strstr(text, "grpc_method=\"Watch\",grpc_type=\"server_stream\""));
    assert_true(sample(text, "dfs_build_info{program=\"metrics_test\",version=\"9.9\"} ") == 1);
    assert_true(sample(text, "dfs_uptime_seconds ") >= 0);
    assert_true(sample(text, "process_start_time_seconds ") > 1e9);
    assert_true(sample(text, "process_resident_memory_bytes ") > 0);
    assert_non_null(strstr(text, "test_thing{zone=\"a\\\"b\\\\c\\nd\"} 2.5\n"));
    assert_non_null(strstr(text, "test_total 18446744073709551615\n"));
    assert_null(strstr(text, "grpc_service=\"unknown\""));
    free(text);

    assert_int_equal(dfs_rpc_health_set(fx->health, "", DFS_HEALTH_SERVING, NULL), DFS_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(check(fx, ""), DFS_OK);
    assert_int_equal(check(fx, "nope"), DFS_ENOTFOUND);
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(dfs_rpc_unary(fx->ch, "/no.Such/Thing", &req.base,
                                   &grpc__health__v1__health_check_response__descriptor, &resp,
                                   5000, NULL),
                     DFS_EINTERNAL);
    /* Calls are counted once their state goes, a moment after the answer. */
    for (int i = 0; i < 200; i++) {
        text = render(fx);
        bool done = sample(text, CHECK_COUNT) == 4 &&
                    strstr(text, "grpc_service=\"unknown\",grpc_method=\"unknown\"") != NULL;
        free(text);
        if (done)
            break;
        sleep_ms(5);
    }
    text = render(fx);
    assert_true(sample(text, CHECK_OK) == 3);
    assert_true(sample(text, CHECK_NOT_FOUND) == 1);
    assert_true(sample(text, CHECK_COUNT) == 4);
    assert_true(sample(text, "dfs_rpc_received_bytes_total{grpc_service=\"grpc.health.v1.Health\","
                             "grpc_method=\"Check\"} ") == 6);
    assert_true(sample(text, "dfs_rpc_sent_bytes_total{grpc_service=\"grpc.health.v1.Health\","
                             "grpc_method=\"Check\"} ") == 6);
    assert_true(sample(text,
                       "grpc_server_handled_total{grpc_service=\"unknown\",grpc_method="
                       "\"unknown\",grpc_type=\"unknown\",grpc_code=\"UNIMPLEMENTED\"} ") == 1);
    free(text);
}

/* ---- the HTTP endpoint ---- */

/* GET (or another method) path from 127.0.0.1:port; returns the whole response, malloc'd. */
static char *http(int port, const char *method, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    close(fd);
    return buf;
}

static void test_http_endpoint(void **state)
{
    struct fixture *fx = *state;
    dfs_metrics_http *h = NULL;
    char *err = NULL;
    struct dfs_metrics_http_config cfg = {"127.0.0.1:0", fx->metrics, fx->health};
    assert_int_equal(dfs_metrics_http_start(&cfg, &h, &err), DFS_OK);
    int port = dfs_metrics_http_port(h);
    assert_true(port > 0);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    assert_string_equal(dfs_metrics_http_address(h), want);

    char *r = http(port, "GET", "/metrics");
    assert_non_null(strstr(r, "HTTP/1.1 200"));
    assert_non_null(strstr(r, "text/plain; version=0.0.4"));
    char *body = strstr(r, "\r\n\r\n");
    assert_non_null(body);
    check_format(body + 4);
    assert_non_null(strstr(body, "# TYPE grpc_server_handling_seconds histogram"));
    free(r);

    r = http(port, "GET", "/healthz");
    assert_non_null(strstr(r, "HTTP/1.1 503"));
    assert_non_null(strstr(r, "UNKNOWN"));
    free(r);
    assert_int_equal(dfs_rpc_health_set(fx->health, "", DFS_HEALTH_SERVING, NULL), DFS_OK);
    r = http(port, "GET", "/healthz");
    assert_non_null(strstr(r, "HTTP/1.1 200"));
    assert_non_null(strstr(r, "\r\n\r\nSERVING\n"));
    free(r);
    /* Per service, for HTTP probes: what gRPC health says for that name. */
    assert_int_equal(dfs_rpc_health_set(fx->health, "liveness", DFS_HEALTH_SERVING, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_health_set(fx->health, "dfs.v1.X", DFS_HEALTH_NOT_SERVING, NULL),
                     DFS_OK);
    r = http(port, "GET", "/healthz?service=liveness");
    assert_non_null(strstr(r, "HTTP/1.1 200"));
    free(r);
    r = http(port, "GET", "/healthz?service=dfs.v1.X");
    assert_non_null(strstr(r, "HTTP/1.1 503"));
    assert_non_null(strstr(r, "NOT_SERVING"));
    free(r);
    r = http(port, "GET", "/healthz?service=nobody");
    assert_non_null(strstr(r, "HTTP/1.1 404"));
    assert_non_null(strstr(r, "SERVICE_UNKNOWN"));
    free(r);
    r = http(port, "GET", "/nope");
    assert_non_null(strstr(r, "HTTP/1.1 404"));
    free(r);
    r = http(port, "POST", "/metrics");
    assert_non_null(strstr(r, "HTTP/1.1 405"));
    free(r);

    /* The same port again is refused; bad addresses are refused before binding. */
    dfs_metrics_http *h2 = NULL;
    struct dfs_metrics_http_config again = {want, fx->metrics, NULL};
    assert_int_equal(dfs_metrics_http_start(&again, &h2, &err), DFS_EUNAVAIL);
    free(err);
    err = NULL;
    const char *bad[] = {"",
                         "127.0.0.1",
                         "127.0.0.1:",
                         "::1:80",
                         "127.0.0.1:99999",
                         "127.0.0.1:8x",
                         "no.such.host.invalid:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct dfs_metrics_http_config b = {bad[i], fx->metrics, NULL};
        assert_int_equal(dfs_metrics_http_start(&b, &h2, &err), DFS_EINVAL);
        assert_non_null(err);
        free(err);
        err = NULL;
    }
    dfs_metrics_http_stop(h);
    dfs_metrics_http_stop(NULL);

    /* IPv6 wildcard (dual stack) and ":PORT" work where the host has IPv6. */
    struct dfs_metrics_http_config v6 = {"[::]:0", fx->metrics, NULL};
    if (dfs_metrics_http_start(&v6, &h, &err) == DFS_OK) {
        r = http(dfs_metrics_http_port(h), "GET", "/healthz");
        assert_non_null(strstr(r, "HTTP/1.1 200"));
        free(r);
        dfs_metrics_http_stop(h);
    }
    free(err);
}

/* ---- readiness ---- */

struct flaky {
    atomic_int ready;
    atomic_int calls;
};

static int flaky_check(void *arg, char **why)
{
    struct flaky *f = arg;
    atomic_fetch_add(&f->calls, 1);
    if (atomic_load(&f->ready))
        return DFS_OK;
    return dfs_seterr(why, DFS_EUNAVAIL, "not yet");
}

static void test_readiness_follows_the_check(void **state)
{
    (void)state;
    dfs_rpc_health *h = NULL;
    assert_int_equal(dfs_rpc_health_create(&h, NULL), DFS_OK);
    struct flaky f;
    atomic_init(&f.ready, 0);
    atomic_init(&f.calls, 0);
    static const char *const names[] = {"", "x.Svc"};
    struct dfs_readiness_config cfg = {
        .health = h,
        .services = names,
        .nservices = 2,
        .liveness = "liveness",
        .check = flaky_check,
        .arg = &f,
        .interval_ms = 20,
    };
    dfs_readiness *r = NULL;
    struct dfs_readiness_config none = {0};
    assert_int_equal(dfs_readiness_start(&none, &r, NULL), DFS_EINVAL);
    assert_int_equal(dfs_readiness_start(&cfg, &r, NULL), DFS_OK);
    /* Checked once before start returns. */
    assert_true(atomic_load(&f.calls) >= 1);
    assert_int_equal(dfs_rpc_health_get(h, "", NULL), DFS_HEALTH_NOT_SERVING);
    assert_int_equal(dfs_rpc_health_get(h, "x.Svc", NULL), DFS_HEALTH_NOT_SERVING);
    assert_int_equal(dfs_rpc_health_get(h, "liveness", NULL), DFS_HEALTH_SERVING);
    char *why = NULL;
    assert_false(dfs_readiness_ready(r, &why));
    assert_string_equal(why, "not yet");
    free(why);

    atomic_store(&f.ready, 1);
    dfs_readiness_check_now(r);
    assert_true(dfs_readiness_ready(r, NULL));
    assert_int_equal(dfs_rpc_health_get(h, "x.Svc", NULL), DFS_HEALTH_SERVING);
    atomic_store(&f.ready, 0);
    for (int i = 0; i < 200 && dfs_rpc_health_get(h, "", NULL) == DFS_HEALTH_SERVING; i++)
        sleep_ms(5);
    assert_int_equal(dfs_rpc_health_get(h, "", NULL), DFS_HEALTH_NOT_SERVING);

    struct dfs_metrics_config mcfg = {"t", "1"};
    dfs_metrics *m = NULL;
    assert_int_equal(dfs_metrics_create(&mcfg, &m, NULL), DFS_OK);
    assert_int_equal(dfs_metrics_add_collector(m, dfs_readiness_collect, r, NULL), DFS_OK);
    char *text = NULL;
    size_t len;
    assert_int_equal(dfs_metrics_render(m, &text, &len, NULL), DFS_OK);
    check_format(text);
    assert_true(sample(text, "dfs_ready ") == 0);
    assert_true(sample(text, "dfs_readiness_checks_total{result=\"ok\"} ") >= 1);
    assert_true(sample(text, "dfs_readiness_checks_total{result=\"failed\"} ") >= 2);
    free(text);
    dfs_metrics_destroy(m);

    /* After shutdown nothing the check says brings a name back. */
    dfs_rpc_health_shutdown(h);
    atomic_store(&f.ready, 1);
    dfs_readiness_check_now(r);
    assert_int_equal(dfs_rpc_health_get(h, "", NULL), DFS_HEALTH_NOT_SERVING);
    dfs_readiness_stop(r);
    dfs_readiness_stop(NULL);
    dfs_rpc_health_destroy(h);
}

/* A check that blocks until released: the ticker declares it stuck after stall_ms. */
struct stuck {
    atomic_int release;
};

static int stuck_check(void *arg, char **why)
{
    struct stuck *s = arg;
    (void)why;
    while (atomic_load(&s->release) == 0)
        sleep_ms(5);
    return DFS_OK;
}

static void test_readiness_declares_a_stuck_check_failed(void **state)
{
    (void)state;
    dfs_rpc_health *h = NULL;
    assert_int_equal(dfs_rpc_health_create(&h, NULL), DFS_OK);
    struct stuck s;
    atomic_init(&s.release, 1);
    static const char *const names[] = {""};
    struct dfs_readiness_config cfg = {
        .health = h,
        .services = names,
        .nservices = 1,
        .check = stuck_check,
        .arg = &s,
        .interval_ms = 10,
        .stall_ms = 100,
    };
    dfs_readiness *r = NULL;
    assert_int_equal(dfs_readiness_start(&cfg, &r, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_health_get(h, "", NULL), DFS_HEALTH_SERVING);
    atomic_store(&s.release, 0);
    for (int i = 0; i < 400 && dfs_rpc_health_get(h, "", NULL) == DFS_HEALTH_SERVING; i++)
        sleep_ms(5);
    assert_int_equal(dfs_rpc_health_get(h, "", NULL), DFS_HEALTH_NOT_SERVING);
    char *why = NULL;
    assert_false(dfs_readiness_ready(r, &why));
    assert_non_null(strstr(why, "has not finished"));
    free(why);
    atomic_store(&s.release, 1);
    for (int i = 0; i < 400 && dfs_rpc_health_get(h, "", NULL) != DFS_HEALTH_SERVING; i++)
        sleep_ms(5);
    assert_int_equal(dfs_rpc_health_get(h, "", NULL), DFS_HEALTH_SERVING);
    dfs_readiness_stop(r);
    dfs_rpc_health_destroy(h);
}

int main(void)
{
    dfs_log_init("metrics_test", DFS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_render_counts_calls_by_method_and_code, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_http_endpoint, setup, teardown),
        cmocka_unit_test(test_readiness_follows_the_check),
        cmocka_unit_test(test_readiness_declares_a_stuck_check_failed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
