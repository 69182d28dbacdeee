/* dfs-gateway's HTTP server: the REST API, the probes and the status page on one port. */
#ifndef DFS_GATEWAY_SERVER_H
#define DFS_GATEWAY_SERVER_H

#include "client/dfs_client.h"
#include "gateway/experiments.h"

#include <stdint.h>

/*
 * Routes (JSON unless said otherwise; errors {"error": "...", "code": N}):
 *
 *   /v1/files...                       see gateway/files.h
 *   GET  /v1/nodes                     {"nodes": [...]}: id, address, zone, state, usage
 *   GET  /v1/status                    {"metadata", "stat": Stat, "health": GetHealth or null,
 *                                       "health_error"}; 503 when Stat fails. GetHealth is
 *                                       optional (an older metadata service answers UNIMPLEMENTED)
 *   GET  /v1/experiments               list; POST starts one (JSON body or query parameters:
 *                                       kind=store|loss|simulate and its knobs): 202 {"id"},
 *                                       400, 429 (too many running), 503 (no program)
 *   GET  /v1/experiments/{id}          its state and results; DELETE cancels it (202)
 *   GET  /v1/experiments/{id}/plots/{name}.png, .../files/{name}
 *   GET  /healthz                      200 "ok": the process answers
 *   GET  /readyz                       200 when the metadata service answers Stat, else 503
 *   GET  /                             the status page (HTML, self-contained)
 *
 * One thread per connection (libmicrohttpd), so a long transfer blocks only its own connection.
 */
typedef struct dfs_gateway dfs_gateway;

struct dfs_gateway_config {
    const char *listen; /* "HOST:PORT", "[V6]:PORT"; port 0 picks a free one */
    const char *spool_dir;
    uint64_t max_upload;          /* 0 = no limit */
    unsigned max_connections;     /* 0 means 256 */
    dfs_experiments *experiments; /* borrowed, may be NULL (experiments off) */
    /* The cluster, reached with the gateway's credentials: every request runs with the
       gateway's token (so its role bounds what HTTP clients can do). Borrowed: it must outlive
       the gateway. */
    dfs_client *client;
    /* How callers' bearer tokens are checked (WhoAmI with the caller's own token, through a
       connection made with these options and that token): every route but /healthz, /readyz and
       the page needs one; reads need a data role, writes read_write or admin. NULL: no check.
       Borrowed for the call (copied; its strings must outlive the gateway). */
    const struct dfs_client_options *caller_opts;
};

/* Bind and serve. Returns 0 and *out; DFS_EINVAL (bad address), DFS_EUNAVAIL (cannot bind). */
int dfs_gateway_start(const struct dfs_gateway_config *cfg, dfs_gateway **out, char **errmsg);

/* The bound address, "127.0.0.1:40123" (borrowed). */
const char *dfs_gateway_address(const dfs_gateway *g);

/*
 * Graceful stop, step one: stop accepting connections and wait up to grace_ms for requests in
 * flight to finish. Returns how many are still running.
 */
unsigned dfs_gateway_quiesce(dfs_gateway *g, int64_t grace_ms);

/* Cancel transfers still running, close every connection, free. Accepts NULL. */
void dfs_gateway_stop(dfs_gateway *g);

#endif /* DFS_GATEWAY_SERVER_H */
