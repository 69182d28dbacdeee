/* What the metadata daemon tells operators: its readiness check and its catalog metrics. */
#ifndef DFS_SERVICES_METADATA_METADATA_PROBE_H
#define DFS_SERVICES_METADATA_METADATA_PROBE_H

#include "metadata/catalog.h"
#include "services/daemon/metrics.h"
#include "services/metadata/replication.h"

/*
 * Borrowed handles (they must outlive every check and collect), filled by main before the
 * readiness thread and the metrics endpoint start, and not changed after.
 */
struct dfs_metadata_probe {
    dfs_catalog *cat;
    const char *db_path; /* the --db path (":memory:" skips the disk-space check) */
    /* The catalog's replica when it has peers (--peers), else NULL: a follower's writes are
       refused by design, so a caught-up follower is ready without the write check (the
       leader's covers the log): one that knows its leader, heard from it within
       max_silence_ms, and whose applied index is at most max_lag entries behind the leader's
       commit index (dfs_repl_caught_up). One that knows no leader (an election, a replica
       waiting to be added), or lags (it was stopped, or was just added and is catching up), is
       not. */
    dfs_repl *repl;
    uint64_t max_lag;       /* DFS_METADATA_PROBE_MAX_LAG in the daemon */
    int64_t max_silence_ms; /* 0 means 1000; the daemon: twice the election timeout */
};

/* How many committed entries a ready follower may not have applied yet. */
#define DFS_METADATA_PROBE_MAX_LAG 64

/* The disk holding the catalog must keep at least this much free for the service to be ready. */
#define DFS_METADATA_PROBE_MIN_FREE (16u << 20)

/*
 * A dfs_readiness_check_fn (arg: struct dfs_metadata_probe *). Ready when the catalog
 *   - answers a read (dfs_catalog_stats: the database is open and its schema readable),
 *   - takes a write transaction: BEGIN IMMEDIATE through a queue update that matches no row
 *     (dfs_catalog_deletion_postpone of all-zero ids), which fails on a read-only file, a lost
 *     file handle, or a lock held elsewhere past the busy timeout, without changing anything,
 *   - and has DFS_METADATA_PROBE_MIN_FREE bytes free on its file system (statvfs), since SQLite
 *     reports a full disk only when a commit fails.
 */
int dfs_metadata_probe_check(void *probe, char **why);

/*
 * A dfs_metrics_collect_fn (arg: struct dfs_metadata_probe *), one catalog snapshot per scrape:
 * dfs_metadata_files, dfs_metadata_logical_bytes, dfs_metadata_stored_bytes,
 * dfs_metadata_pending_files, dfs_metadata_deletion_queue_length,
 * dfs_metadata_nodes{state="alive"|"suspect"|"dead"|"draining"|"decommissioned"},
 * dfs_metadata_schema_version. When the catalog cannot be read, only
 * dfs_metadata_catalog_up 0 (else 1).
 */
void dfs_metadata_probe_collect(void *probe, dfs_metrics_writer *w);

#endif /* DFS_SERVICES_METADATA_METADATA_PROBE_H */
