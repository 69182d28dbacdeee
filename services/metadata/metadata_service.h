/* The Metadata service: dfs.v1.Metadata over the catalog and placement, plus its background work. */
#ifndef DFS_SERVICES_METADATA_METADATA_SERVICE_H
#define DFS_SERVICES_METADATA_METADATA_SERVICE_H

#include "common/token.h"
#include "metadata/catalog.h"
#include "metadata/placement.h"
#include "services/daemon/metrics.h"
#include "services/rpc/security.h"
#include "services/rpc/server.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct dfs_metadata_service dfs_metadata_service;

/*
 * A replicated catalog (issue 16, services/metadata/REPLICATION.md): the replica the service
 * runs on may lead or follow. The owner (dfs-metadata's main) supplies these hooks; every one is
 * called from service threads, never from the replication thread.
 *
 * leader_hint: copy the leader's gRPC address ("host:port") into buf[0..cap), or "" when no
 *   leader is known (or this replica is it).
 * barrier: wait for a linearizable read point (dfs_catalog_sm_barrier); DFS_OK, or an error with
 *   *errmsg (caller frees).
 * on_lead: called once per leadership on the background thread after the service's own set-up
 *   writes (the ticket key, interrupted repairs queued again) and before it serves: the
 *   owner's writes (token bootstrap). An error is logged and the set-up is tried again.
 * replicas: this replica's view for GetReplicas, which every replica answers (followers too:
 *   the leader gate lets it through, the token check does not).
 */
/* One replica as GetReplicas describes it (dfs metadata ls). Strings are NUL-terminated. */
#define DFS_METADATA_REPLICA_ADDR_MAX 256
#define DFS_METADATA_REPLICAS_MAX     16
struct dfs_metadata_replica {
    uint64_t id;
    char raft[DFS_METADATA_REPLICA_ADDR_MAX];
    char grpc[DFS_METADATA_REPLICA_ADDR_MAX]; /* "" when unknown */
    char role[16];                            /* members: "voter", "standby", "spare" */
};
struct dfs_metadata_replicas {
    struct dfs_metadata_replica self; /* self.role: "leader", "follower", ... */
    bool leader_ready;
    uint64_t term, commit_index, applied_index, leader_id;
    size_t n_members;
    struct dfs_metadata_replica members[DFS_METADATA_REPLICAS_MAX];
};

struct dfs_metadata_leadership {
    void (*leader_hint)(void *arg, char *buf, size_t cap);
    int (*barrier)(void *arg, char **errmsg);
    int (*on_lead)(void *arg, dfs_metadata_service *svc, char **errmsg);
    /* Fill *out (zeroed by the caller) with this replica's status and the members it knows. */
    void (*replicas)(void *arg, struct dfs_metadata_replicas *out);
    /* dfs metadata add (add: member id at raft, serving gRPC at grpc) or remove (id): waits until
       the change is committed; one at a time. An error with *errmsg. */
    int (*change)(void *arg, bool add, uint64_t id, const char *raft, const char *grpc,
                  char **errmsg);
    void *arg;
};

struct dfs_metadata_config {
    /* Redundancy for puts that leave it unset (replication with these k and F). */
    uint32_t default_replicas;  /* 0 means 3 */
    uint32_t default_fragments; /* 0 means 4 */
    /* Policy for puts that leave it unset; DFS_POLICY_UNSPECIFIED means random. */
    enum dfs_policy default_policy;
    /* Liveness: the interval nodes are told to heartbeat at, and when a silent node becomes
       suspect, then dead. 0 means 1000, 5000 and 30000 ms. */
    uint32_t heartbeat_interval_ms;
    int64_t suspect_after_ms;
    int64_t dead_after_ms;
    /* A pending file not committed within this is removed with its fragments; 0 means 1 hour. */
    int64_t pending_timeout_ms;
    /* How often the background thread sweeps liveness, expires pending files and sends queued
       fragment deletions; 0 means 500 ms. */
    int64_t maintenance_interval_ms;
    /* Placement randomness; 0 seeds from the kernel (the seed is logged, so a run can replay). */
    uint64_t seed;
    /* min_copy's scatter width S and buddy's group size G; 0 means w - 1 and 2w for a placement
       of w nodes (metadata/placement.h). */
    uint32_t scatter_width;
    uint32_t group_size;
    /* Repairs dispatched at once (worker threads, each with one Storage.RepairFragment call in
       flight); 0 means 4. */
    uint32_t repair_parallel;
    /* Rebalance: when an alive node's recorded bytes exceed the mean of the alive nodes by more
       than this percentage, up to rebalance_max copies are queued to move off it per check.
       0 means 10; negative disables rebalancing. rebalance_max 0 means 4. */
    int32_t rebalance_threshold_pct;
    uint32_t rebalance_max;
    /* How often the rebalance check runs (when the repair queue is empty); 0 means 10000 ms. */
    int64_t rebalance_interval_ms;
    /* Tickets handed out for reads (GetFile), deletions, checks and repairs stay valid this long;
       0 means 1 hour. Write tickets (CreateFile) last as long as the pending file. */
    int64_t ticket_ttl_ms;
    /* How channels to storage nodes are secured; NULL: plaintext, to loopback only. Borrowed:
       must outlive the service. */
    const struct dfs_rpc_link_security *node_security;
    /* A copy dropped while its file stays (moved, trimmed, found bad) is removed from its node
       only this long after (dfs_catalog_deletions_fetch), so a read streaming it from an older
       layout is not cut; 0 means 5000 ms, negative none. */
    int64_t delete_grace_ms;
    /* S3 access keys (s3keys.h): the master key their secrets derive from, DFS_S3KEYS_MASTER_LEN
       bytes, copied at create; NULL: no S3 keys (CreateToken with s3 and GetSigningKey are
       refused). */
    const uint8_t *s3_master_key;
    /* NULL: the only replica (every duty from start, create writes what it needs). Else the
       service starts passive: create writes nothing, every dfs.v1.Metadata call is refused
       (UNAVAILABLE, "not the leader", trailing dfs-leader when known: nothing was done), no
       background duty runs, until dfs_metadata_service_set_leader(svc, true); reads then first
       wait for a barrier. Borrowed: must outlive the service. */
    const struct dfs_metadata_leadership *leadership;
};

/*
 * Create the service over an open catalog (borrowed: it must outlive the service). cfg is copied.
 * The copysets and buddy groups saved in the catalog are loaded (a family that cannot be loaded is
 * logged and built again on its first use). Returns 0 and *out (free with
 * dfs_metadata_service_destroy), or DFS_EINVAL / DFS_ENOMEM.
 */
int dfs_metadata_service_create(dfs_catalog *cat, const struct dfs_metadata_config *cfg,
                                dfs_metadata_service **out, char **errmsg);

/*
 * Register the dfs.v1.Metadata methods on a server that has not started yet, and make the service
 * the server's authorizer: every Metadata call then needs a bearer token whose role allows it
 * (admin: everything but speaking as a node; read_write: files; read_only: reads; bootstrap:
 * enrolling new nodes; node: register, heartbeat and reports as the token's own node), checked
 * against the catalog at every call. What a node call does is for the node its token belongs to,
 * never for one a request names (metadata.proto, RegisterNode).
 */
int dfs_metadata_service_register(dfs_metadata_service *svc, dfs_rpc_server *srv, char **errmsg);

/*
 * Make a token with this role, name (1..DFS_TOKEN_NAME_MAX bytes) and lifetime (0: forever) and
 * record it: token (caller storage) gets its text, the only copy of the secret; *info (may be
 * NULL) its record.
 */
int dfs_metadata_service_make_token(dfs_metadata_service *svc, enum dfs_token_role role,
                                    const char *name, int64_t ttl_ms, char token[DFS_TOKEN_LEN + 1],
                                    struct dfs_token_rec *info, char **errmsg);

/*
 * The token of a file the operator manages (--admin-token-file, --node-token-file): when path
 * does not exist, a new token with this role and name is made and written there (mode 0600);
 * when it exists, the token it holds is recorded with this role if the catalog does not know it
 * yet (so a deployment can hand the same secret to the service and to its nodes). A token the
 * catalog knows with another secret or role is refused (DFS_EPERM); a revoked one stays revoked.
 */
int dfs_metadata_service_bootstrap_token(dfs_metadata_service *svc, const char *path,
                                         enum dfs_token_role role, const char *name, char **errmsg);

/*
 * Start the background thread (liveness sweep, pending expiry, fragment deletions on the nodes,
 * the repair planner, surplus trimming, drains and rebalancing) and the repair_parallel repair
 * workers. Returns 0 or DFS_ENOMEM.
 */
int dfs_metadata_service_start(dfs_metadata_service *svc, char **errmsg);

/*
 * Stop the background thread (it is woken, not waited out) and the repair workers (their calls in
 * flight are cancelled; each ends within about 100 ms, and the repair goes back to the queue), and
 * free. Stop the rpc server first so no handler runs any more. Accepts NULL.
 */
void dfs_metadata_service_destroy(dfs_metadata_service *svc);

/*
 * With cfg.leadership: this replica became a ready leader (true), or is not one any more
 * (false). Cheap and non-blocking (a mutex and a signal): call it from the replication engine's
 * on_change. true: the background thread writes the leader's set-up (ticket key, interrupted
 * repairs, on_lead), reloads the placement sets from the catalog, then serves calls and runs the
 * duties (maintenance, repair planning and dispatch, rebalancing, deletions, damage checks).
 * false: calls are refused from now on and the duties stop at their next step.
 */
void dfs_metadata_service_set_leader(dfs_metadata_service *svc, bool ready_leader);

/*
 * Run one round of background work now, on the calling thread (for tests): sweep, expiry, one
 * bounded step of the repair planner (which also trims surplus copies), finished drains,
 * rebalancing when due, deletions.
 */
void dfs_metadata_service_maintain(dfs_metadata_service *svc);

/*
 * Run the repair planner over the whole catalog now (tests and tools; the background thread does
 * it in bounded steps). Returns 0 or the catalog's error.
 */
int dfs_metadata_service_plan_all(dfs_metadata_service *svc, char **errmsg);

/*
 * Claim and run one repair on the calling thread (tests; the workers do this). *did tells
 * whether a repair was claimed; the return is the repair's outcome (DFS_OK when nothing was
 * due).
 */
int dfs_metadata_service_repair_one(dfs_metadata_service *svc, bool *did, char **errmsg);

/*
 * Check one reported copy on the calling thread (tests; a thread started by
 * dfs_metadata_service_start does this): the oldest copy a ReportDamage queued is checked by its
 * node (StatFragment with verify) against the catalog; when the node confirms the damage, or no
 * longer holds the copy, the copy is dropped and its repair queued. *did tells whether a copy
 * was waiting. Returns 0, or the catalog's error.
 */
int dfs_metadata_service_check_one(dfs_metadata_service *svc, bool *did, char **errmsg);

/* Repair counters since the service started (GetHealth and the metrics show them). */
struct dfs_metadata_repair_stats {
    uint64_t running; /* calls in flight */
    uint64_t done;    /* copies made and recorded */
    uint64_t failed;  /* attempts that failed (the repair is retried) */
    uint64_t bytes;   /* fragment bytes of the copies made */
};
void dfs_metadata_service_repair_stats(dfs_metadata_service *svc,
                                       struct dfs_metadata_repair_stats *out);

/*
 * A dfs_metrics_collect_fn (arg: the service): dfs_metadata_repair_queue_length{state="queued"|
 * "running"}, dfs_metadata_repairs_total{result="done"|"failed"}, dfs_metadata_repair_bytes_total,
 * dfs_metadata_damaged_copies_total{state="reported"|"confirmed"},
 * dfs_metadata_damage_checks_pending.
 */
void dfs_metadata_service_collect(void *svc, dfs_metrics_writer *w);

#endif /* DFS_SERVICES_METADATA_METADATA_SERVICE_H */
