/* What a storage daemon tells operators: its readiness check and its store and traffic metrics. */
#ifndef DFS_SERVICES_STORAGE_STORAGE_PROBE_H
#define DFS_SERVICES_STORAGE_STORAGE_PROBE_H

#include "services/daemon/metrics.h"
#include "services/storage/heartbeat.h"
#include "services/storage/scrubber.h"
#include "services/storage/storage_service.h"
#include "storage/frag_store.h"

/*
 * Borrowed handles (they must outlive every check and collect), filled by main before the
 * readiness thread and the metrics endpoint start, and not changed after.
 */
struct dfs_storage_probe {
    dfs_frag_store *store;
    dfs_storage_service *svc;
    dfs_heartbeat *hb;
    const char *data_dir; /* the --data directory */
    /* The exception to "not changed after": the scrubber starts once the node has registered,
       after the metrics endpoint; NULL until then (and when scrubbing is off). */
    _Atomic(dfs_scrubber *) scrubber;
};

/* The data disk must keep at least this much free for the node to be ready. */
#define DFS_STORAGE_PROBE_MIN_FREE (16u << 20)

/* The file the disk check writes, fsyncs and removes (tmp/ is emptied at every start anyway). */
#define DFS_STORAGE_PROBE_FILE "tmp/.readiness-probe"

/*
 * A dfs_readiness_check_fn (arg: struct dfs_storage_probe *). Ready when the node has registered
 * with the metadata service (it stays so while later heartbeats fail: the node can still serve
 * what it holds), and its data directory takes a small write: DFS_STORAGE_PROBE_FILE is written,
 * fsynced and removed, and the file system has DFS_STORAGE_PROBE_MIN_FREE bytes free.
 */
int dfs_storage_probe_check(void *probe, char **why);

/*
 * A dfs_metrics_collect_fn (arg: struct dfs_storage_probe *): dfs_storage_fragments,
 * dfs_storage_used_bytes, dfs_storage_capacity_bytes, dfs_storage_free_bytes,
 * dfs_storage_puts_total{result}, dfs_storage_gets_total{result}, dfs_storage_puts_active,
 * dfs_storage_gets_active, dfs_storage_data_received_bytes_total,
 * dfs_storage_data_sent_bytes_total, dfs_storage_repairs_total{result},
 * dfs_storage_repairs_active, dfs_storage_repair_read_bytes_total, dfs_storage_registered,
 * dfs_storage_heartbeat_ok, and once the scrubber runs dfs_storage_scrub_passes_total,
 * dfs_storage_scrub_fragments_total, dfs_storage_scrub_bytes_total,
 * dfs_storage_scrub_corrupt_total.
 */
void dfs_storage_probe_collect(void *probe, dfs_metrics_writer *w);

#endif /* DFS_SERVICES_STORAGE_STORAGE_PROBE_H */
