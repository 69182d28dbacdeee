/* Readiness: a thread that checks, every interval, whether the daemon can do its work, and says so
   through the health service. */
#ifndef DFS_SERVICES_DAEMON_READINESS_H
#define DFS_SERVICES_DAEMON_READINESS_H

#include "services/daemon/metrics.h"
#include "services/rpc/health.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The check is the daemon's (services/metadata/metadata_probe.h,
 * services/storage/storage_probe.h). Its outcome sets every name in `services` SERVING or
 * NOT_SERVING; the `liveness` name is set SERVING at start and left so (it answers "is the process
 * responsive", which a Kubernetes liveness probe asks, while readiness may fail for reasons a
 * restart would not cure). A change of outcome is logged once, with the reason. After
 * dfs_rpc_health_shutdown the health service ignores what this sets, so stopping order does not
 * matter.
 *
 * Two threads: a checker that runs the check when asked, and a ticker that asks every interval
 * and, when the check in progress has run for longer than stall_ms, declares the daemon not ready
 * without waiting for it (a check blocked on a hung disk must not leave a stale SERVING behind).
 */
typedef struct dfs_readiness dfs_readiness;

/* Return DFS_OK when ready; otherwise an error with a one-line reason in *why (caller frees). */
typedef int (*dfs_readiness_check_fn)(void *arg, char **why);

struct dfs_readiness_config {
    dfs_rpc_health *health;      /* borrowed: must outlive the readiness */
    const char *const *services; /* names set from the check ("", "dfs.v1.Storage"); borrowed */
    size_t nservices;
    const char *liveness; /* NULL for none; borrowed */
    dfs_readiness_check_fn check;
    void *arg;           /* borrowed: must outlive the readiness */
    int64_t interval_ms; /* 0 means 1000 */
    /* A check running longer than this counts as failed ("check stuck": a hung disk or a lock
       held elsewhere); 0 means 10000. */
    int64_t stall_ms;
};

/*
 * Run the check once on the calling thread (so health is right from the start), then start the
 * thread. Returns 0 and *out, DFS_EINVAL (no check or health), DFS_ENOMEM.
 */
int dfs_readiness_start(const struct dfs_readiness_config *cfg, dfs_readiness **out, char **errmsg);

/* Check now, on the calling thread (never at the same time as the thread's check). */
void dfs_readiness_check_now(dfs_readiness *r);

/* The latest outcome; *why (may be NULL) receives a malloc'd reason when not ready. */
bool dfs_readiness_ready(dfs_readiness *r, char **why);

/*
 * A metrics collector (dfs_metrics_add_collector with r as arg): dfs_ready (1 or 0) and
 * dfs_readiness_checks_total{result="ok"|"failed"}.
 */
void dfs_readiness_collect(void *r, dfs_metrics_writer *w);

/* Wake the thread, join it and free. Accepts NULL. */
void dfs_readiness_stop(dfs_readiness *r);

#endif /* DFS_SERVICES_DAEMON_READINESS_H */
