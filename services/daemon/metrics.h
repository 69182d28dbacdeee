/* A daemon's metrics in the Prometheus text format: RPC counters, process figures, collectors. */
#ifndef DFS_SERVICES_DAEMON_METRICS_H
#define DFS_SERVICES_DAEMON_METRICS_H

#include "services/rpc/server.h"

#include <stddef.h>
#include <stdint.h>

/*
 * What every daemon exposes (text format 0.0.4, one family after another, each with HELP and
 * TYPE lines):
 *
 *   dfs_build_info{program,version} 1                          gauge
 *   dfs_uptime_seconds, process_start_time_seconds             gauges
 *   process_cpu_seconds_total                                  counter
 *   process_resident_memory_bytes                              gauge
 *   grpc_server_handled_total{grpc_service,grpc_method,grpc_type,grpc_code}      counter
 *   grpc_server_handling_seconds{grpc_service,grpc_method,grpc_type}             histogram
 *   dfs_rpc_received_bytes_total{grpc_service,grpc_method}     counter (request message bytes)
 *   dfs_rpc_sent_bytes_total{grpc_service,grpc_method}         counter (response message bytes)
 *
 * The gRPC families use the names and labels of go-grpc-prometheus, so existing dashboards work.
 * Every registered method appears from the start (handled_total with grpc_code="OK" at 0); calls
 * to unregistered methods count under grpc_service="unknown", grpc_method="unknown". Then each
 * collector added by the daemon appends its own families (storage usage, catalog figures...).
 *
 * Counters are lock-free atomics updated by the server's worker threads; a scrape reads each one
 * atomically (a histogram's _count is the sum of the bucket counts it printed, so every series is
 * self-consistent). No global state: the daemon's main owns the handle.
 */
typedef struct dfs_metrics dfs_metrics;

/* Where a collector writes its families; only valid during the collector's call. */
typedef struct dfs_metrics_writer dfs_metrics_writer;

struct dfs_metrics_config {
    const char *program; /* "dfs-storage"; copied */
    const char *version; /* "0.1.0"; copied */
};

/* Latency histogram bucket bounds, in seconds (and +Inf). */
#define DFS_METRICS_LATENCY_BUCKETS                                                             \
    {                                                                                           \
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, \
            120                                                                                 \
    }

/* Returns 0 and *out (free with dfs_metrics_destroy), or DFS_ENOMEM. */
int dfs_metrics_create(const struct dfs_metrics_config *cfg, dfs_metrics **out, char **errmsg);

/* Free. Nothing may use the handle any more: stop the server and the HTTP endpoint first. */
void dfs_metrics_destroy(dfs_metrics *m);

/*
 * Count the calls of srv, per registered method: becomes srv's observer. Call once every method
 * is registered and before the server starts; once per handle. m must outlive srv's calls.
 * Returns 0, DFS_EINTERNAL (already watching a server, or srv started) or DFS_ENOMEM.
 */
int dfs_metrics_watch_server(dfs_metrics *m, dfs_rpc_server *srv, char **errmsg);

/*
 * A collector appends families at every render, from the rendering thread (the HTTP server's):
 * it must be thread-safe with respect to the daemon. arg is borrowed and must outlive m. Add
 * collectors before the first render. Returns 0 or DFS_ENOMEM.
 */
typedef void (*dfs_metrics_collect_fn)(void *arg, dfs_metrics_writer *w);
int dfs_metrics_add_collector(dfs_metrics *m, dfs_metrics_collect_fn fn, void *arg, char **errmsg);

/*
 * The whole exposition as text: *out is malloc'd (the caller frees it), *len its length without
 * the terminating NUL. Thread-safe. Returns 0 or DFS_ENOMEM.
 */
int dfs_metrics_render(dfs_metrics *m, char **out, size_t *len, char **errmsg);

/* ---- for collectors ---- */

/* Start a family: "# HELP name help" and "# TYPE name type" (type: counter, gauge...). */
void dfs_metrics_family(dfs_metrics_writer *w, const char *name, const char *type,
                        const char *help);

/*
 * One sample of the current family. labels is NULL or preformatted pairs without braces,
 * `state="alive"` (escape values with dfs_metrics_label_value). Integers are printed exactly.
 */
void dfs_metrics_sample(dfs_metrics_writer *w, const char *name, const char *labels, double value);
void dfs_metrics_sample_u64(dfs_metrics_writer *w, const char *name, const char *labels,
                            uint64_t value);

/* A family with one unlabelled sample, the common case. */
void dfs_metrics_gauge(dfs_metrics_writer *w, const char *name, const char *help, double value);
void dfs_metrics_counter(dfs_metrics_writer *w, const char *name, const char *help, uint64_t value);

/*
 * Escape a label value for the text format (backslash, double quote and newline) into
 * out[cap], always NUL-terminated (truncated when too long). Returns out.
 */
char *dfs_metrics_label_value(char *out, size_t cap, const char *value);

#endif /* DFS_SERVICES_DAEMON_METRICS_H */
