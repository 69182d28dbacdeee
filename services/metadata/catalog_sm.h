/* The metadata catalog as the state machine of the replication engine (issue 16). */
#ifndef DFS_SERVICES_METADATA_CATALOG_SM_H
#define DFS_SERVICES_METADATA_CATALOG_SM_H

#include "metadata/catalog.h"
#include "services/daemon/metrics.h"
#include "services/metadata/replication.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * dfs_catalog_sm_ops is the dfs_repl_ops table that makes a dfs_catalog the replicated state
 * (services/metadata/REPLICATION.md), with ctx the dfs_catalog itself:
 *   apply             dfs_command_apply_entry: the entry's commands (metadata/command.h) in one
 *                     transaction that records the index; each command's result is its verdict
 *                     (status, and the message as a NUL-terminated string in data);
 *   snapshot_prepare  dfs_catalog_snapshot_begin (a read transaction on a second connection);
 *   snapshot_write    dfs_catalog_snapshot_write (sqlite3_backup of that view, worker thread);
 *   snapshot_release  dfs_catalog_snapshot_end;
 *   restore           dfs_catalog_restore (one backup into the live database).
 * Open the catalog first and pass its dfs_catalog_applied_index as the options' applied_index.
 */
extern const struct dfs_repl_ops dfs_catalog_sm_ops;

/* How a synchronous call ended (copied out of the engine's outcome). */
struct dfs_catalog_sm_answer {
    /* DFS_OK; the catalog's verdict on the command (DFS_EEXIST...); or the engine's failure:
       DFS_EUNAVAIL (not the leader, leadership lost, shutting down), DFS_ETIMEDOUT, DFS_EIO. */
    int status;
    bool not_leader;    /* refused by a replica that is not the leader: nothing was proposed */
    bool maybe_applied; /* failed after reaching the log: it may still be applied */
    uint64_t index;     /* the entry's index (applied) or the read point (barrier) */
    uint64_t leader_id; /* the leader this replica knows, 0 and "" when none */
    char leader_address[DFS_REPL_ADDRESS_MAX];
    char message[512]; /* one line; "" on success */
};

/*
 * Propose one encoded command (metadata/command.h) and wait until it is applied here (or the
 * call fails, within timeout_ms plus a little). Returns ans->status. Any thread except the
 * replication thread.
 */
int dfs_catalog_sm_propose(dfs_repl *r, const void *cmd, size_t len, int64_t timeout_ms,
                           struct dfs_catalog_sm_answer *ans);

/* Wait for a linearizable read point (dfs_repl_barrier); then read the catalog. As above. */
int dfs_catalog_sm_barrier(dfs_repl *r, int64_t timeout_ms, struct dfs_catalog_sm_answer *ans);

/* How long a catalog write waits for its command through dfs_catalog_sm_proposer. */
#define DFS_CATALOG_SM_WRITE_MS 10000

/*
 * A dfs_catalog_proposer (catalog.h) over replica arg (a dfs_repl *): install it with
 * dfs_catalog_set_proposer(cat, dfs_catalog_sm_proposer, repl) and every catalog write verb goes
 * through the log. Returns the verdict, or the engine's failure with its message (DFS_EUNAVAIL
 * "not the leader ..." on a follower: nothing was proposed).
 */
int dfs_catalog_sm_proposer(void *arg, const void *cmd, size_t len, char **errmsg);

/*
 * The same with a disk reserve, the proposer dfs-metadata installs: a write is refused before it
 * is proposed (DFS_ENOSPC "catalog disk is full", nothing proposed, the caller may retry later)
 * while the file system of `dir` (the catalog's and the log's) has less than reserve_bytes free.
 * An apply cannot skip an entry it has no room for (the replica would have to stop), so the
 * leader stops taking writes first, as HDFS's NameNode does below its reserved space. Reads go
 * on; writes resume once there is room again.
 */
struct dfs_catalog_sm_writer {
    dfs_repl *repl;
    const char *dir;
    uint64_t reserve_bytes;
};
int dfs_catalog_sm_guarded_proposer(void *arg, const void *cmd, size_t len, char **errmsg);

/*
 * A metrics collector (services/daemon/metrics.h) for replica arg (a dfs_repl *): its role, term,
 * last, commit and applied indexes, the catalog's applied index, leader changes, snapshots taken
 * and installed with the latest one's size, members, and the entries and commands it proposed.
 */
void dfs_catalog_sm_collect(void *arg, dfs_metrics_writer *w);

#endif /* DFS_SERVICES_METADATA_CATALOG_SM_H */
