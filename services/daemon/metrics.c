/* A daemon's metrics in the Prometheus text format: RPC counters, process figures, collectors. */
#include "services/daemon/metrics.h"

#include "common/err.h"
#include "services/rpc/status.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const double latency_bounds[] = DFS_METRICS_LATENCY_BUCKETS;
#define NBUCKETS (sizeof latency_bounds / sizeof latency_bounds[0])

/* gRPC status codes run from OK (0) to UNAUTHENTICATED (16). */
#define NCODES 17

/*
 * One method's counters. The names are fixed when the server is watched; every counter is an
 * atomic bumped by the worker thread that ends a call. buckets[i] counts calls whose latency fell
 * in (bound[i-1], bound[i]] (not cumulative: cumulated when rendered); buckets[NBUCKETS] is +Inf.
 */
struct method_stats {
    char *service;
    char *method;
    const char *type;
    atomic_uint_least64_t codes[NCODES];
    atomic_uint_least64_t buckets[NBUCKETS + 1];
    atomic_uint_least64_t sum_ns;
    atomic_uint_least64_t bytes_in;
    atomic_uint_least64_t bytes_out;
};

struct collector {
    dfs_metrics_collect_fn fn;
    void *arg;
};

struct dfs_metrics {
    char *program;
    char *version;
    struct timespec start_real;
    struct timespec start_mono;
    bool watching;
    struct method_stats *methods; /* nmethods registered ones, then one for unknown methods */
    size_t nmethods;
    struct collector *collectors;
    size_t ncollectors;
};

struct dfs_metrics_writer {
    char *buf;
    size_t len, cap;
    bool oom;
};

/* ---- the writer ---- */

static void wprintf(dfs_metrics_writer *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void wprintf(dfs_metrics_writer *w, const char *fmt, ...)
{
    if (w->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(w->buf + w->len, w->cap - w->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            w->oom = true;
            return;
        }
        if ((size_t)n < w->cap - w->len) {
            w->len += (size_t)n;
            return;
        }
        size_t cap = w->cap * 2 + (size_t)n + 1;
        char *b = realloc(w->buf, cap);
        if (b == NULL) {
            w->oom = true;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
}

void dfs_metrics_family(dfs_metrics_writer *w, const char *name, const char *type, const char *help)
{
    wprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void dfs_metrics_sample(dfs_metrics_writer *w, const char *name, const char *labels, double value)
{
    if (labels != NULL && labels[0] != '\0')
        wprintf(w, "%s{%s} %.12g\n", name, labels, value);
    else
        wprintf(w, "%s %.12g\n", name, value);
}

void dfs_metrics_sample_u64(dfs_metrics_writer *w, const char *name, const char *labels,
                            uint64_t value)
{
    if (labels != NULL && labels[0] != '\0')
        wprintf(w, "%s{%s} %" PRIu64 "\n", name, labels, value);
    else
        wprintf(w, "%s %" PRIu64 "\n", name, value);
}

void dfs_metrics_gauge(dfs_metrics_writer *w, const char *name, const char *help, double value)
{
    dfs_metrics_family(w, name, "gauge", help);
    dfs_metrics_sample(w, name, NULL, value);
}

void dfs_metrics_counter(dfs_metrics_writer *w, const char *name, const char *help, uint64_t value)
{
    dfs_metrics_family(w, name, "counter", help);
    dfs_metrics_sample_u64(w, name, NULL, value);
}

char *dfs_metrics_label_value(char *out, size_t cap, const char *value)
{
    size_t o = 0;
    if (cap == 0)
        return out;
    for (const char *p = value; *p != '\0'; p++) {
        const char *esc = NULL;
        if (*p == '\\')
            esc = "\\\\";
        else if (*p == '"')
            esc = "\\\"";
        else if (*p == '\n')
            esc = "\\n";
        size_t need = esc != NULL ? 2 : 1;
        if (o + need >= cap)
            break;
        if (esc != NULL) {
            memcpy(out + o, esc, 2);
        } else {
            out[o] = *p;
        }
        o += need;
    }
    out[o] = '\0';
    return out;
}

/* ---- life cycle ---- */

int dfs_metrics_create(const struct dfs_metrics_config *cfg, dfs_metrics **out, char **errmsg)
{
    dfs_metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    m->program = strdup(cfg->program != NULL ? cfg->program : "dfs");
    m->version = strdup(cfg->version != NULL ? cfg->version : "");
    if (m->program == NULL || m->version == NULL) {
        dfs_metrics_destroy(m);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    clock_gettime(CLOCK_REALTIME, &m->start_real);
    clock_gettime(CLOCK_MONOTONIC, &m->start_mono);
    *out = m;
    return DFS_OK;
}

void dfs_metrics_destroy(dfs_metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; m->methods != NULL && i <= m->nmethods; i++) {
        free(m->methods[i].service);
        free(m->methods[i].method);
    }
    free(m->methods);
    free(m->collectors);
    free(m->program);
    free(m->version);
    free(m);
}

static const char *kind_name(enum dfs_rpc_kind kind)
{
    switch (kind) {
    case DFS_RPC_UNARY:
        return "unary";
    case DFS_RPC_CLIENT_STREAMING:
        return "client_stream";
    case DFS_RPC_SERVER_STREAMING:
        return "server_stream";
    default:
        return "bidi_stream";
    }
}

static void observe(void *arg, const struct dfs_rpc_call_record *rec)
{
    dfs_metrics *m = arg;
    size_t i =
        rec->method >= 0 && (size_t)rec->method < m->nmethods ? (size_t)rec->method : m->nmethods;
    struct method_stats *s = &m->methods[i];
    unsigned code = (unsigned)rec->status < NCODES ? (unsigned)rec->status : 2 /* UNKNOWN */;
    atomic_fetch_add_explicit(&s->codes[code], 1, memory_order_relaxed);
    int64_t ns = rec->latency_ns > 0 ? rec->latency_ns : 0;
    double secs = (double)ns / 1e9;
    size_t b = 0;
    while (b < NBUCKETS && secs > latency_bounds[b])
        b++;
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_ns, (uint64_t)ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->bytes_in, rec->bytes_in, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->bytes_out, rec->bytes_out, memory_order_relaxed);
}

int dfs_metrics_watch_server(dfs_metrics *m, dfs_rpc_server *srv, char **errmsg)
{
    if (m->watching)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "metrics already watch a server");
    size_t n = dfs_rpc_server_method_count(srv);
    struct method_stats *v = calloc(n + 1, sizeof *v);
    if (v == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    for (size_t i = 0; i <= n; i++) {
        const struct dfs_rpc_method *meth = i < n ? dfs_rpc_server_method(srv, i) : NULL;
        const char *name = meth != NULL ? meth->name : "/unknown/unknown";
        if (name[0] == '/')
            name++;
        const char *slash = strrchr(name, '/');
        v[i].service = slash != NULL ? strndup(name, (size_t)(slash - name)) : strdup("unknown");
        v[i].method = strdup(slash != NULL ? slash + 1 : name);
        v[i].type = meth != NULL ? kind_name(meth->kind) : "unknown";
        for (size_t c = 0; c < NCODES; c++)
            atomic_init(&v[i].codes[c], 0);
        for (size_t b = 0; b <= NBUCKETS; b++)
            atomic_init(&v[i].buckets[b], 0);
        atomic_init(&v[i].sum_ns, 0);
        atomic_init(&v[i].bytes_in, 0);
        atomic_init(&v[i].bytes_out, 0);
        if (v[i].service == NULL || v[i].method == NULL) {
            for (size_t k = 0; k <= i; k++) {
                free(v[k].service);
                free(v[k].method);
            }
            free(v);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
    }
    struct dfs_rpc_observer obs = {observe, m};
    int rc = dfs_rpc_server_set_observer(srv, &obs, errmsg);
    if (rc != DFS_OK) {
        for (size_t k = 0; k <= n; k++) {
            free(v[k].service);
            free(v[k].method);
        }
        free(v);
        return rc;
    }
    m->methods = v;
    m->nmethods = n;
    m->watching = true;
    return DFS_OK;
}

int dfs_metrics_add_collector(dfs_metrics *m, dfs_metrics_collect_fn fn, void *arg, char **errmsg)
{
    struct collector *v = realloc(m->collectors, (m->ncollectors + 1) * sizeof *v);
    if (v == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    m->collectors = v;
    m->collectors[m->ncollectors++] = (struct collector){fn, arg};
    return DFS_OK;
}

/* ---- rendering ---- */

static double seconds(const struct timespec *t)
{
    return (double)t->tv_sec + (double)t->tv_nsec / 1e9;
}

static void render_process(dfs_metrics *m, dfs_metrics_writer *w)
{
    char prog[128], ver[128], labels[300];
    snprintf(labels, sizeof labels, "program=\"%s\",version=\"%s\"",
             dfs_metrics_label_value(prog, sizeof prog, m->program),
             dfs_metrics_label_value(ver, sizeof ver, m->version));
    dfs_metrics_family(w, "dfs_build_info", "gauge",
                       "Always 1; the labels name the program and its version.");
    dfs_metrics_sample(w, "dfs_build_info", labels, 1);

    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    dfs_metrics_gauge(w, "dfs_uptime_seconds", "Seconds since the process started.",
                      seconds(&now) - seconds(&m->start_mono));
    dfs_metrics_gauge(w, "process_start_time_seconds",
                      "Start time of the process since the Unix epoch, in seconds.",
                      seconds(&m->start_real));

    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        dfs_metrics_family(w, "process_cpu_seconds_total", "counter",
                           "User and system CPU time spent, in seconds.");
        dfs_metrics_sample(w, "process_cpu_seconds_total", NULL, cpu);
    }
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        unsigned long size, resident;
        if (fscanf(f, "%lu %lu", &size, &resident) == 2)
            dfs_metrics_gauge(w, "process_resident_memory_bytes", "Resident memory size in bytes.",
                              (double)resident * (double)sysconf(_SC_PAGESIZE));
        fclose(f);
    }
}

static void render_rpc(dfs_metrics *m, dfs_metrics_writer *w)
{
    if (!m->watching)
        return;
    char labels[512];
    dfs_metrics_family(w, "grpc_server_handled_total", "counter",
                       "RPCs completed on the server, by method and status code.");
    for (size_t i = 0; i <= m->nmethods; i++) {
        struct method_stats *s = &m->methods[i];
        for (size_t c = 0; c < NCODES; c++) {
            uint64_t v = atomic_load_explicit(&s->codes[c], memory_order_relaxed);
            /* Every method shows at least its OK line, so it is there from the first scrape. */
            if (v == 0 && (c != 0 || i == m->nmethods))
                continue;
            snprintf(labels, sizeof labels,
                     "grpc_service=\"%s\",grpc_method=\"%s\",grpc_type=\"%s\",grpc_code=\"%s\"",
                     s->service, s->method, s->type, dfs_rpc_status_name((grpc_status_code)c));
            dfs_metrics_sample_u64(w, "grpc_server_handled_total", labels, v);
        }
    }

    dfs_metrics_family(w, "grpc_server_handling_seconds", "histogram",
                       "Time from a call's arrival to its end, by method.");
    for (size_t i = 0; i <= m->nmethods; i++) {
        struct method_stats *s = &m->methods[i];
        uint64_t counts[NBUCKETS + 1], total = 0;
        for (size_t b = 0; b <= NBUCKETS; b++)
            total += counts[b] = atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
        if (i == m->nmethods && total == 0)
            continue;
        uint64_t cum = 0;
        for (size_t b = 0; b <= NBUCKETS; b++) {
            cum += counts[b];
            char le[32];
            if (b < NBUCKETS)
                snprintf(le, sizeof le, "%g", latency_bounds[b]);
            else
                snprintf(le, sizeof le, "+Inf");
            snprintf(labels, sizeof labels,
                     "grpc_service=\"%s\",grpc_method=\"%s\",grpc_type=\"%s\",le=\"%s\"",
                     s->service, s->method, s->type, le);
            dfs_metrics_sample_u64(w, "grpc_server_handling_seconds_bucket", labels, cum);
        }
        snprintf(labels, sizeof labels, "grpc_service=\"%s\",grpc_method=\"%s\",grpc_type=\"%s\"",
                 s->service, s->method, s->type);
        dfs_metrics_sample(w, "grpc_server_handling_seconds_sum", labels,
                           (double)atomic_load_explicit(&s->sum_ns, memory_order_relaxed) / 1e9);
        dfs_metrics_sample_u64(w, "grpc_server_handling_seconds_count", labels, cum);
    }

    static const char *const names[2] = {"dfs_rpc_received_bytes_total",
                                         "dfs_rpc_sent_bytes_total"};
    static const char *const helps[2] = {
        "Request message bytes received, by method (serialized size).",
        "Response message bytes sent, by method (serialized size)."};
    for (int d = 0; d < 2; d++) {
        dfs_metrics_family(w, names[d], "counter", helps[d]);
        for (size_t i = 0; i <= m->nmethods; i++) {
            struct method_stats *s = &m->methods[i];
            uint64_t v =
                atomic_load_explicit(d == 0 ? &s->bytes_in : &s->bytes_out, memory_order_relaxed);
            if (i == m->nmethods && v == 0)
                continue;
            snprintf(labels, sizeof labels, "grpc_service=\"%s\",grpc_method=\"%s\"", s->service,
                     s->method);
            dfs_metrics_sample_u64(w, names[d], labels, v);
        }
    }
}

int dfs_metrics_render(dfs_metrics *m, char **out, size_t *len, char **errmsg)
{
    dfs_metrics_writer w = {.cap = 16384};
    w.buf = malloc(w.cap);
    if (w.buf == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    w.buf[0] = '\0';
    render_process(m, &w);
    render_rpc(m, &w);
    for (size_t i = 0; i < m->ncollectors; i++)
        m->collectors[i].fn(m->collectors[i].arg, &w);
    if (w.oom) {
        free(w.buf);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory rendering the metrics");
    }
    *out = w.buf;
    *len = w.len;
    return DFS_OK;
}
