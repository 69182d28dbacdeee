/* grpc.health.v1.Health over a dfs_rpc_server: Check and Watch, one status per service name. */
#ifndef DFS_SERVICES_RPC_HEALTH_H
#define DFS_SERVICES_RPC_HEALTH_H

#include "services/rpc/server.h"

#include <stdbool.h>

/*
 * The standard health protocol (grpc/health/v1/health.proto), as Kubernetes' gRPC probes and
 * load balancers speak it:
 *
 *   Check(service)  the service's current status; a name never set is NOT_FOUND.
 *   Watch(service)  streams the current status at once, then again on every change (changes are
 *                   seen within DFS_RPC_HEALTH_WATCH_POLL_MS; several changes inside that window
 *                   may arrive as the last one only). A name never set streams SERVICE_UNKNOWN and
 *                   the stream stays open, in case the name appears later.
 *
 * The daemon decides what each name means ("" is the server as a whole by convention) and sets
 * the statuses from any thread. dfs_rpc_health_shutdown marks every name NOT_SERVING for good:
 * each Watch stream then sends NOT_SERVING (if it had not already) and ends with UNAVAILABLE, so
 * that a server stopping gracefully is not held up by watchers, and a watcher learns of the stop
 * before the connection goes.
 */
typedef struct dfs_rpc_health dfs_rpc_health;

/* The values of grpc.health.v1.HealthCheckResponse.ServingStatus that a service can have. */
enum dfs_health_status {
    DFS_HEALTH_UNKNOWN = 0,
    DFS_HEALTH_SERVING = 1,
    DFS_HEALTH_NOT_SERVING = 2,
};

/* How often a Watch stream looks for a change. */
#define DFS_RPC_HEALTH_WATCH_POLL_MS 50

/* Longest service name accepted by dfs_rpc_health_set. */
#define DFS_RPC_HEALTH_NAME_MAX 200

/* Create an empty health registry (no names). Returns 0 and *out, or DFS_ENOMEM. */
int dfs_rpc_health_create(dfs_rpc_health **out, char **errmsg);

/*
 * Free the registry. The server it was registered on must be stopped (its Watch calls hold the
 * registry until then). Accepts NULL.
 */
void dfs_rpc_health_destroy(dfs_rpc_health *h);

/*
 * Add the two methods (/grpc.health.v1.Health/Check and /Watch) to a server that has not started.
 * h must outlive the server's calls. Returns 0 or the server's error.
 */
int dfs_rpc_health_register(dfs_rpc_health *h, dfs_rpc_server *srv, char **errmsg);

/*
 * Set the status of `service` (copied; added when new), from any thread; a change is logged.
 * Ignored (returns 0) after dfs_rpc_health_shutdown. Returns DFS_EINVAL (name longer than
 * DFS_RPC_HEALTH_NAME_MAX, or a status outside the enum) or DFS_ENOMEM.
 */
int dfs_rpc_health_set(dfs_rpc_health *h, const char *service, enum dfs_health_status status,
                       char **errmsg);

/*
 * The status of `service`; *known (may be NULL) tells whether the name was ever set (when not,
 * the status returned is DFS_HEALTH_UNKNOWN). Thread-safe.
 */
enum dfs_health_status dfs_rpc_health_get(dfs_rpc_health *h, const char *service, bool *known);

/* Mark every name NOT_SERVING for good and end the Watch streams as described above. Idempotent. */
void dfs_rpc_health_shutdown(dfs_rpc_health *h);

/* "SERVING", "NOT_SERVING", "UNKNOWN". */
const char *dfs_rpc_health_status_name(enum dfs_health_status status);

#endif /* DFS_SERVICES_RPC_HEALTH_H */
