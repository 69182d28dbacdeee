/* The metrics endpoint: Prometheus text over HTTP (libmicrohttpd) on its own port. */
#ifndef DFS_SERVICES_DAEMON_METRICS_HTTP_H
#define DFS_SERVICES_DAEMON_METRICS_HTTP_H

#include "services/daemon/metrics.h"
#include "services/rpc/health.h"

/*
 * A small HTTP/1.1 server on one internal thread (libmicrohttpd), separate from the gRPC port so
 * that scrapers need no gRPC and a busy data path does not delay a scrape:
 *
 *   GET /metrics   200, Content-Type text/plain; version=0.0.4: dfs_metrics_render
 *   GET /healthz   200 "SERVING\n" while the health status of "" is SERVING, else 503 and the
 *                  status name (NOT_SERVING, UNKNOWN); 200 "OK\n" when no health is given
 *   GET /          200, a line naming the two paths above
 *   other paths    404; methods other than GET and HEAD: 405
 *
 * Connections are limited (64) and time out after 10 s idle.
 */
typedef struct dfs_metrics_http dfs_metrics_http;

struct dfs_metrics_http_config {
    /* "HOST:PORT", "[V6]:PORT" or ":PORT" (every interface); port 0 picks a free one. HOST may
       be a name ("localhost"): its first address is used. "[::]" accepts IPv4 as well. */
    const char *listen;
    dfs_metrics *metrics;   /* borrowed: must outlive the endpoint */
    dfs_rpc_health *health; /* borrowed, may be NULL: answers /healthz */
};

/*
 * Bind and start serving. Returns 0 and *out, DFS_EINVAL (not an address), DFS_EUNAVAIL (cannot
 * bind: in use, or not an address of this host) with *errmsg.
 */
int dfs_metrics_http_start(const struct dfs_metrics_http_config *cfg, dfs_metrics_http **out,
                           char **errmsg);

/* The bound port (useful after asking for port 0). */
int dfs_metrics_http_port(const dfs_metrics_http *h);

/* The listen address with the bound port, "127.0.0.1:40123" / "[::]:9100" (borrowed). */
const char *dfs_metrics_http_address(const dfs_metrics_http *h);

/* Stop serving (closes every connection, joins the thread) and free. Accepts NULL. */
void dfs_metrics_http_stop(dfs_metrics_http *h);

#endif /* DFS_SERVICES_DAEMON_METRICS_HTTP_H */
