/* A storage node's registrar: registers with the metadata service, then heartbeats its usage. */
#ifndef DFS_SERVICES_STORAGE_HEARTBEAT_H
#define DFS_SERVICES_STORAGE_HEARTBEAT_H

#include "services/rpc/client.h"
#include "services/rpc/leader.h"
#include "storage/frag_store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * One thread per heartbeat, holding a channel to the metadata service that presents the node's
 * own token (services/storage/node_token.h), and one that presents the enrollment token:
 *
 *   register:  Metadata.RegisterNode {node id, address, zone, usage} with the node's own token.
 *              When that token is unknown (UNAUTHENTICATED: the node's first registration, or a
 *              new catalog), the same request goes again with the enrollment token and the node
 *              token's id and hash (an enrollment). On failure, retry after a backoff that
 *              doubles from 100 ms up to retry_max_ms; a warn line at the first failure and then
 *              once every 10 (not at every try). The answer's registration is kept.
 *   heartbeat: Metadata.Heartbeat {registration, usage} every heartbeat_interval_ms, the interval
 *              the metadata service answered (1000 when it says 0; each answer may change it).
 *              An answer known=false (the catalog forgot the node), or FAILED_PRECONDITION (a
 *              newer registration of this node replaced this process: a copy of its data
 *              directory, logged at warn level), sends it back to register. A failed heartbeat
 *              is logged like a failed registration and retried at the next interval, forever.
 *
 * Usage figures come from dfs_frag_store_stats at each call. Every call has a deadline of
 * rpc_timeout_ms. The thread waits on a condition variable between calls, so stop wakes it at
 * once; a call already in flight is waited out (at most rpc_timeout_ms).
 */
typedef struct dfs_heartbeat dfs_heartbeat;

struct dfs_heartbeat_config {
    const char *metadata;   /* host:port of the metadata service; copied */
    const char *node_id;    /* the node's id (dfs_frag_store_node_id); copied */
    const char *address;    /* host:port where the node's Storage service answers; copied */
    const char *zone;       /* failure domain; NULL or "" for none; copied */
    dfs_frag_store *store;  /* borrowed: must stay open until dfs_heartbeat_stop returns */
    int64_t rpc_timeout_ms; /* deadline of each call; 0 means 2000 */
    int64_t retry_max_ms;   /* longest wait between registration tries; 0 means 2000 */
    /* Called on the heartbeat thread after every successful RegisterNode (the first, and each
       one after the catalog forgot the node), with the ticket key the answer carried (borrowed
       for the call; len 1..DFS_HEARTBEAT_KEY_MAX), before dfs_heartbeat_wait_registered turns
       true: the storage service takes its key here, and what must follow a registration (the
       inventory report) starts here. It must return quickly (hand the work to another thread)
       and must not call back into the heartbeat. NULL: none. arg is borrowed. */
    void (*on_registered)(void *arg, const uint8_t *ticket_key, size_t len, uint64_t registration);
    void *on_registered_arg;
    /* The channel to the metadata service: its security and the node's own token. Pointers
       borrowed during dfs_heartbeat_start only. */
    struct dfs_rpc_channel_opts channel;
    /* The process's handle on the metadata replicas (borrowed: it must outlive this); NULL:
       one of its own is opened from metadata and channel. Sharing one lets every caller
       use what one learned about the leader. */
    dfs_rpc_leader *replicas;
    /* The enrollment token (role bootstrap) for the node's first registration; NULL: none (the
       node must be enrolled already). Copied. */
    const char *enroll_token;
};

/* Longest ticket key accepted from the metadata service. */
#define DFS_HEARTBEAT_KEY_MAX 64

/*
 * Start the thread. Returns 0 and *out (stop it with dfs_heartbeat_stop), or DFS_EINVAL (a missing
 * field), DFS_ENOMEM with *errmsg; on failure no thread runs.
 */
int dfs_heartbeat_start(const struct dfs_heartbeat_config *cfg, dfs_heartbeat **out, char **errmsg);

/*
 * Wait until the node has registered at least once (it stays true afterwards, even while
 * heartbeats fail), for up to timeout_ms (0: just look; < 0: no limit). Returns whether it has.
 * Thread-safe.
 */
bool dfs_heartbeat_wait_registered(dfs_heartbeat *hb, int64_t timeout_ms);

/* The node's current registration (RegisterNodeResponse.registration), 0 before the first.
   Thread-safe. */
uint64_t dfs_heartbeat_registration(dfs_heartbeat *hb);

/*
 * The message of the latest failed call ("RegisterNode: connection refused..."), malloc'd for the
 * caller to free, or NULL when the latest call succeeded or none was made. Thread-safe.
 */
char *dfs_heartbeat_last_error(dfs_heartbeat *hb);

/*
 * Wake the thread, join it and free everything. No call is started after this begins; one in
 * flight is waited out. Accepts NULL.
 */
void dfs_heartbeat_stop(dfs_heartbeat *hb);

#endif /* DFS_SERVICES_STORAGE_HEARTBEAT_H */
