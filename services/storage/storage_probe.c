/* What a storage daemon tells operators: its readiness check and its store and traffic metrics. */
#include "services/storage/storage_probe.h"

#include "common/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Write, fsync and remove the probe file. Returns 0 or an error with *why. */
static int disk_check(const char *data_dir, char **why)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", data_dir, DFS_STORAGE_PROBE_FILE) >= (int)sizeof path)
        return dfs_seterr(why, DFS_EINVAL, "data directory path too long");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return dfs_seterr_errno(why, dfs_err_from_errno(errno), errno,
                                "data directory is not writable: cannot create %s", path);
    static const char payload[] = "dfs-storage readiness probe\n";
    int rc = DFS_OK;
    if (write(fd, payload, sizeof payload - 1) != (ssize_t)(sizeof payload - 1))
        rc = dfs_seterr_errno(why, dfs_err_from_errno(errno), errno,
                              "data directory is not writable: cannot write %s", path);
    else if (fsync(fd) != 0)
        rc = dfs_seterr_errno(why, dfs_err_from_errno(errno), errno,
                              "data directory is not writable: cannot fsync %s", path);
    close(fd);
    unlink(path);
    return rc;
}

int dfs_storage_probe_check(void *arg, char **why)
{
    const struct dfs_storage_probe *p = arg;
    if (p->hb == NULL || !dfs_heartbeat_wait_registered(p->hb, 0)) {
        char *last = p->hb != NULL ? dfs_heartbeat_last_error(p->hb) : NULL;
        int rc = dfs_seterr(why, DFS_EUNAVAIL, "not registered with the metadata service yet%s%s",
                            last != NULL ? ": " : "", last != NULL ? last : "");
        free(last);
        return rc;
    }
    int rc = disk_check(p->data_dir, why);
    if (rc != DFS_OK)
        return rc;
    struct dfs_frag_store_stats st;
    if (dfs_frag_store_stats(p->store, &st) != DFS_OK)
        return dfs_seterr(why, DFS_EIO, "cannot see the data directory's file system");
    if (st.free_bytes < DFS_STORAGE_PROBE_MIN_FREE)
        return dfs_seterr(why, DFS_ENOSPC, "the data disk is full (%llu bytes free, want %u)",
                          (unsigned long long)st.free_bytes, DFS_STORAGE_PROBE_MIN_FREE);
    return DFS_OK;
}

void dfs_storage_probe_collect(void *arg, dfs_metrics_writer *w)
{
    const struct dfs_storage_probe *p = arg;
    struct dfs_frag_store_stats fs;
    dfs_frag_store_stats(p->store, &fs);
    dfs_metrics_family(w, "dfs_storage_fragments", "gauge", "Fragments stored on this node.");
    dfs_metrics_sample_u64(w, "dfs_storage_fragments", NULL, fs.fragments);
    dfs_metrics_family(w, "dfs_storage_used_bytes", "gauge",
                       "Bytes the stored fragments take (header, data and block CRCs).");
    dfs_metrics_sample_u64(w, "dfs_storage_used_bytes", NULL, fs.used_bytes);
    dfs_metrics_family(w, "dfs_storage_capacity_bytes", "gauge",
                       "Size of the file system holding the data directory.");
    dfs_metrics_sample_u64(w, "dfs_storage_capacity_bytes", NULL, fs.capacity_bytes);
    dfs_metrics_family(w, "dfs_storage_free_bytes", "gauge",
                       "Bytes still available to the store on its file system.");
    dfs_metrics_sample_u64(w, "dfs_storage_free_bytes", NULL, fs.free_bytes);

    if (p->svc != NULL) {
        struct dfs_storage_service_stats ss;
        dfs_storage_service_stats(p->svc, &ss);
        dfs_metrics_family(w, "dfs_storage_puts_total", "counter",
                           "PutFragment calls ended, by outcome (failed: nothing stored).");
        dfs_metrics_sample_u64(w, "dfs_storage_puts_total", "result=\"ok\"", ss.puts_ok);
        dfs_metrics_sample_u64(w, "dfs_storage_puts_total", "result=\"failed\"", ss.puts_failed);
        dfs_metrics_family(w, "dfs_storage_gets_total", "counter",
                           "GetFragment calls ended, by outcome.");
        dfs_metrics_sample_u64(w, "dfs_storage_gets_total", "result=\"ok\"", ss.gets_ok);
        dfs_metrics_sample_u64(w, "dfs_storage_gets_total", "result=\"failed\"", ss.gets_failed);
        dfs_metrics_family(w, "dfs_storage_puts_active", "gauge", "PutFragment calls in flight.");
        dfs_metrics_sample_u64(w, "dfs_storage_puts_active", NULL, ss.puts_active);
        dfs_metrics_family(w, "dfs_storage_gets_active", "gauge", "GetFragment calls in flight.");
        dfs_metrics_sample_u64(w, "dfs_storage_gets_active", NULL, ss.gets_active);
        dfs_metrics_counter(w, "dfs_storage_data_received_bytes_total",
                            "Fragment data bytes accepted by PutFragment (committed or not).",
                            ss.bytes_received);
        dfs_metrics_counter(w, "dfs_storage_data_sent_bytes_total",
                            "Fragment data bytes handed to gRPC by GetFragment.", ss.bytes_sent);
        dfs_metrics_family(w, "dfs_storage_repairs_total", "counter",
                           "RepairFragment calls ended, by outcome (ok: the fragment is here).");
        dfs_metrics_sample_u64(w, "dfs_storage_repairs_total", "result=\"ok\"", ss.repairs_ok);
        dfs_metrics_sample_u64(w, "dfs_storage_repairs_total", "result=\"failed\"",
                               ss.repairs_failed);
        dfs_metrics_gauge(w, "dfs_storage_repairs_active",
                          "RepairFragment calls queued or running.", (double)ss.repairs_active);
        dfs_metrics_counter(w, "dfs_storage_repair_read_bytes_total",
                            "Data bytes repairs read from other nodes (held to --repair-rate).",
                            ss.repair_bytes_read);
        dfs_metrics_counter(w, "dfs_storage_tickets_refused_total",
                            "Calls refused for their ticket (the log shows at most one a second).",
                            ss.tickets_refused);
    }
    dfs_scrubber *scrub = atomic_load(&p->scrubber);
    if (scrub != NULL) {
        struct dfs_scrubber_stats sc;
        dfs_scrubber_stats(scrub, &sc);
        dfs_metrics_counter(w, "dfs_storage_scrub_passes_total", "Scrub passes completed.",
                            sc.passes);
        dfs_metrics_counter(w, "dfs_storage_scrub_fragments_total",
                            "Fragments re-read by the scrubber.", sc.fragments_checked);
        dfs_metrics_counter(w, "dfs_storage_scrub_bytes_total",
                            "Data bytes re-read by the scrubber.", sc.bytes_checked);
        dfs_metrics_counter(w, "dfs_storage_scrub_corrupt_total",
                            "Corrupt or unreadable fragments found (at every pass).",
                            sc.corrupt_found);
    }
    if (p->hb != NULL) {
        char *last = dfs_heartbeat_last_error(p->hb);
        dfs_metrics_gauge(w, "dfs_storage_registered",
                          "1 once the node has registered with the metadata service.",
                          dfs_heartbeat_wait_registered(p->hb, 0) ? 1 : 0);
        dfs_metrics_gauge(w, "dfs_storage_heartbeat_ok",
                          "1 when the latest registration or heartbeat call succeeded.",
                          last == NULL ? 1 : 0);
        free(last);
    }
}
