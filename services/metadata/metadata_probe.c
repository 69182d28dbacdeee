/* What the metadata daemon tells operators: its readiness check and its catalog metrics. */
#include "services/metadata/metadata_probe.h"

#include "common/clock.h"
#include "common/err.h"
#include "common/id.h"

#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

int dfs_metadata_probe_check(void *arg, char **why)
{
    const struct dfs_metadata_probe *p = arg;
    struct dfs_catalog_stats st;
    char *err = NULL;
    int rc = dfs_catalog_stats(p->cat, &st, &err);
    if (rc != DFS_OK) {
        dfs_seterr(why, rc, "catalog cannot be read: %s", err != NULL ? err : dfs_strerror(rc));
        free(err);
        return rc;
    }
    bool follower = false;
    if (p->repl != NULL) {
        struct dfs_repl_status rs;
        dfs_repl_status_get(p->repl, &rs);
        if (rs.role != DFS_REPL_LEADER) {
            char reason[200];
            int64_t silence = p->max_silence_ms > 0 ? p->max_silence_ms : 1000;
            if (!dfs_repl_caught_up(&rs, p->max_lag, silence, dfs_clock_mono_ns(), reason,
                                    sizeof reason))
                return dfs_seterr(why, DFS_EUNAVAIL, "%s", reason);
            follower = true;
        }
    }
    char frag[DFS_FRAGMENT_ID_HEX + 1], node[DFS_ID_HEX + 1];
    memset(frag, '0', DFS_FRAGMENT_ID_HEX);
    frag[DFS_FRAGMENT_ID_HEX] = '\0';
    memset(node, '0', DFS_ID_HEX);
    node[DFS_ID_HEX] = '\0';
    rc = follower ? DFS_OK : dfs_catalog_deletion_postpone(p->cat, frag, node, 0, &err);
    if (rc != DFS_OK) {
        dfs_seterr(why, rc, "catalog is not writable: %s", err != NULL ? err : dfs_strerror(rc));
        free(err);
        return rc;
    }
    if (p->db_path != NULL && strcmp(p->db_path, ":memory:") != 0) {
        char *copy = strdup(p->db_path);
        if (copy == NULL)
            return dfs_seterr(why, DFS_ENOMEM, "out of memory");
        struct statvfs vfs;
        int e = statvfs(dirname(copy), &vfs);
        free(copy);
        if (e != 0)
            return dfs_seterr(why, DFS_EIO, "cannot see the catalog's file system");
        unsigned long long avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
        if (avail < DFS_METADATA_PROBE_MIN_FREE)
            return dfs_seterr(why, DFS_ENOSPC,
                              "the catalog's disk is full (%llu bytes free, want %u)", avail,
                              DFS_METADATA_PROBE_MIN_FREE);
    }
    return DFS_OK;
}

void dfs_metadata_probe_collect(void *arg, dfs_metrics_writer *w)
{
    const struct dfs_metadata_probe *p = arg;
    struct dfs_catalog_stats st;
    int rc = dfs_catalog_stats(p->cat, &st, NULL);
    dfs_metrics_gauge(w, "dfs_metadata_catalog_up",
                      "1 when the catalog answered this scrape, else 0 (and no catalog figures).",
                      rc == DFS_OK ? 1 : 0);
    if (rc != DFS_OK)
        return;
    dfs_metrics_family(w, "dfs_metadata_files", "gauge", "Committed files.");
    dfs_metrics_sample_u64(w, "dfs_metadata_files", NULL, st.files);
    dfs_metrics_family(w, "dfs_metadata_logical_bytes", "gauge",
                       "Sum of the sizes of the committed files.");
    dfs_metrics_sample_u64(w, "dfs_metadata_logical_bytes", NULL, st.logical_bytes);
    dfs_metrics_family(w, "dfs_metadata_stored_bytes", "gauge",
                       "Bytes the committed files take on the nodes, every copy counted.");
    dfs_metrics_sample_u64(w, "dfs_metadata_stored_bytes", NULL, st.stored_bytes);
    dfs_metrics_family(w, "dfs_metadata_pending_files", "gauge",
                       "Files being written (created, not yet committed or aborted).");
    dfs_metrics_sample_u64(w, "dfs_metadata_pending_files", NULL, st.pending_files);
    dfs_metrics_family(w, "dfs_metadata_deletion_queue_length", "gauge",
                       "Fragment copies queued for removal from their nodes.");
    dfs_metrics_sample_u64(w, "dfs_metadata_deletion_queue_length", NULL, st.pending_deletions);
    dfs_metrics_family(w, "dfs_metadata_nodes", "gauge", "Storage nodes in the catalog, by state.");
    dfs_metrics_sample_u64(w, "dfs_metadata_nodes", "state=\"alive\"", st.nodes_alive);
    dfs_metrics_sample_u64(w, "dfs_metadata_nodes", "state=\"suspect\"", st.nodes_suspect);
    dfs_metrics_sample_u64(w, "dfs_metadata_nodes", "state=\"dead\"", st.nodes_dead);
    dfs_metrics_sample_u64(w, "dfs_metadata_nodes", "state=\"draining\"", st.nodes_draining);
    dfs_metrics_sample_u64(w, "dfs_metadata_nodes", "state=\"decommissioned\"",
                           st.nodes_decommissioned);
    dfs_metrics_gauge(w, "dfs_metadata_schema_version", "Schema version of the catalog.",
                      st.schema_version);
}
