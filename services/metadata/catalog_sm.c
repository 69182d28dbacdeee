/* The metadata catalog as the replicated state machine (catalog_sm.h). */
#include "services/metadata/catalog_sm.h"

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "metadata/command.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

/* How long an apply waits for a catalog another process keeps locked before the replica stops. */
#define APPLY_BUSY_MS 120000

/* Commands per entry handled with stack arrays; larger entries allocate. */
#define SMALL_ENTRY 64

static int sm_apply(void *ctx, uint64_t index, const struct dfs_repl_cmd *cmds, size_t n,
                    struct dfs_repl_result *results, char **errmsg)
{
    dfs_catalog *cat = ctx;
    struct dfs_command_buf sbufs[SMALL_ENTRY] = {0};
    struct dfs_command_verdict sverd[SMALL_ENTRY] = {0};
    struct dfs_command_buf *bufs = sbufs;
    struct dfs_command_verdict *verd = sverd;
    if (n > SMALL_ENTRY) {
        bufs = calloc(n, sizeof *bufs);
        verd = calloc(n, sizeof *verd);
        if (bufs == NULL || verd == NULL) {
            free(bufs);
            free(verd);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
    }
    for (size_t i = 0; i < n; i++)
        bufs[i] = (struct dfs_command_buf){cmds[i].data, cmds[i].len};
    /* DFS_EUNAVAIL: another process holds the catalog's write lock (the sqlite3 shell, a
       backup) past the busy timeout. That passes: the entry is applied again rather than the
       replica stopped, for up to APPLY_BUSY_MS (the writers wait meanwhile). */
    int rc;
    int64_t start = dfs_clock_mono_ns();
    for (bool logged = false;; logged = true) {
        char *why = NULL;
        rc = dfs_command_apply_entry(cat, index, bufs, n, verd, &why);
        if (rc != DFS_EUNAVAIL || dfs_clock_mono_ns() - start > (int64_t)APPLY_BUSY_MS * 1000000) {
            if (rc != DFS_OK && errmsg != NULL)
                *errmsg = why;
            else
                free(why);
            break;
        }
        if (!logged)
            dfs_log(DFS_LOG_WARN, "catalog apply waits index=%" PRIu64 " err=\"%s\"", index, why);
        free(why);
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    if (rc == DFS_OK) {
        for (size_t i = 0; i < n; i++) {
            results[i].status = verd[i].status;
            if (verd[i].message != NULL) {
                /* The message travels as the result's data, NUL included, to the proposer. */
                results[i].data = verd[i].message;
                results[i].len = strlen(verd[i].message) + 1;
                verd[i].message = NULL;
            }
        }
    }
    if (n > SMALL_ENTRY) {
        free(bufs);
        free(verd);
    }
    return rc;
}

static int sm_snapshot_prepare(void *ctx, uint64_t index, void **snap, char **errmsg)
{
    dfs_catalog *cat = ctx;
    dfs_catalog_snapshot *s = NULL;
    uint64_t at = 0;
    int rc = dfs_catalog_snapshot_begin(cat, &s, &at, errmsg);
    if (rc != DFS_OK)
        return rc;
    /* Prepare runs between applies, so the catalog holds every entry <= index it will ever
       hold (entries it never sees leave gaps) and none after. */
    if (at > index) {
        dfs_catalog_snapshot_end(s);
        return dfs_seterr(errmsg, DFS_EINTERNAL,
                          "catalog at %" PRIu64 " is past the snapshot's index %" PRIu64, at,
                          index);
    }
    *snap = s;
    return DFS_OK;
}

static int sm_snapshot_write(void *ctx, void *snap, const char *path, char **errmsg)
{
    (void)ctx;
    return dfs_catalog_snapshot_write(snap, path, errmsg);
}

static void sm_snapshot_release(void *ctx, void *snap)
{
    (void)ctx;
    dfs_catalog_snapshot_end(snap);
}

static int sm_restore(void *ctx, uint64_t index, const char *path, char **errmsg)
{
    return dfs_catalog_restore(ctx, path, index, errmsg);
}

const struct dfs_repl_ops dfs_catalog_sm_ops = {
    .apply = sm_apply,
    .snapshot_prepare = sm_snapshot_prepare,
    .snapshot_write = sm_snapshot_write,
    .snapshot_release = sm_snapshot_release,
    .restore = sm_restore,
    .on_change = NULL,
};

/* ---- Synchronous calls --------------------------------------------------------------------- */

struct wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    struct dfs_catalog_sm_answer *ans;
};

static void on_done(void *arg, const struct dfs_repl_outcome *o)
{
    struct wait *w = arg;
    struct dfs_catalog_sm_answer *a = w->ans;
    a->status = o->status;
    a->not_leader = o->why == DFS_REPL_NOT_LEADER;
    a->maybe_applied = o->maybe_applied;
    a->index = o->index;
    a->leader_id = o->leader_id;
    snprintf(a->leader_address, sizeof a->leader_address, "%s",
             o->leader_address != NULL ? o->leader_address : "");
    if (o->status != DFS_OK) {
        snprintf(a->message, sizeof a->message, "%s", o->message != NULL ? o->message : "");
    } else if (o->result.status != DFS_OK) {
        a->status = o->result.status;
        const char *m = o->result.data;
        snprintf(a->message, sizeof a->message, "%s",
                 m != NULL && o->result.len > 0 && m[o->result.len - 1] == '\0' ? m : "refused");
    } else {
        a->message[0] = '\0';
    }
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int wait_for(struct wait *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    return w->ans->status;
}

static void wait_init(struct wait *w, struct dfs_catalog_sm_answer *ans)
{
    memset(ans, 0, sizeof *ans);
    w->done = false;
    w->ans = ans;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

/* The call was not accepted: done will never run. */
static int refused(struct wait *w, int rc, const char *what)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    w->ans->status = rc;
    snprintf(w->ans->message, sizeof w->ans->message, "%s refused (%s)", what, dfs_strerror(rc));
    return rc;
}

int dfs_catalog_sm_propose(dfs_repl *r, const void *cmd, size_t len, int64_t timeout_ms,
                           struct dfs_catalog_sm_answer *ans)
{
    struct wait w;
    wait_init(&w, ans);
    int rc = dfs_repl_propose(r, cmd, len, timeout_ms, on_done, &w);
    if (rc != 0)
        return refused(&w, rc, "propose");
    return wait_for(&w);
}

int dfs_catalog_sm_barrier(dfs_repl *r, int64_t timeout_ms, struct dfs_catalog_sm_answer *ans)
{
    struct wait w;
    wait_init(&w, ans);
    int rc = dfs_repl_barrier(r, timeout_ms, on_done, &w);
    if (rc != 0)
        return refused(&w, rc, "barrier");
    return wait_for(&w);
}

int dfs_catalog_sm_proposer(void *arg, const void *cmd, size_t len, char **errmsg)
{
    struct dfs_catalog_sm_answer a;
    int rc = dfs_catalog_sm_propose(arg, cmd, len, DFS_CATALOG_SM_WRITE_MS, &a);
    if (rc != DFS_OK)
        dfs_seterr(errmsg, rc, "%s", a.message[0] != '\0' ? a.message : dfs_strerror(rc));
    return rc;
}

int dfs_catalog_sm_guarded_proposer(void *arg, const void *cmd, size_t len, char **errmsg)
{
    const struct dfs_catalog_sm_writer *w = arg;
    struct statvfs sv;
    if (w->reserve_bytes > 0 && statvfs(w->dir, &sv) == 0) {
        uint64_t avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
        if (avail < w->reserve_bytes)
            return dfs_seterr(errmsg, DFS_ENOSPC,
                              "catalog disk is full: %" PRIu64 " KiB free in %s, below the %" PRIu64
                              " KiB the catalog and its log keep in reserve",
                              avail >> 10, w->dir, w->reserve_bytes >> 10);
    }
    return dfs_catalog_sm_proposer(w->repl, cmd, len, errmsg);
}

void dfs_catalog_sm_collect(void *arg, dfs_metrics_writer *w)
{
    struct dfs_repl_status st;
    dfs_repl_status_get(arg, &st);
    dfs_metrics_gauge(w, "dfs_metadata_raft_leader",
                      "1 when this replica leads and is ready (serves writes), else 0.",
                      st.role == DFS_REPL_LEADER && st.leader_ready ? 1 : 0);
    dfs_metrics_gauge(w, "dfs_metadata_raft_failed",
                      "1 when this replica stopped after a failed apply or restore.",
                      st.role == DFS_REPL_FAILED ? 1 : 0);
    dfs_metrics_gauge(w, "dfs_metadata_raft_term", "The Raft term this replica is in.",
                      (double)st.term);
    dfs_metrics_gauge(w, "dfs_metadata_raft_last_index", "Last entry of the local log.",
                      (double)st.last_index);
    dfs_metrics_gauge(w, "dfs_metadata_raft_commit_index", "Last entry known committed.",
                      (double)st.commit_index);
    dfs_metrics_gauge(w, "dfs_metadata_raft_applied_index",
                      "Last entry the catalog holds (its replication.applied_index).",
                      (double)st.state_index);
    dfs_metrics_gauge(w, "dfs_metadata_raft_members", "Members of the cluster this replica knows.",
                      (double)st.n_members);
    dfs_metrics_counter(w, "dfs_metadata_raft_leader_changes_total",
                        "Times this replica saw the leader change, since start.",
                        st.leader_changes);
    dfs_metrics_counter(w, "dfs_metadata_raft_snapshots_taken_total",
                        "Snapshots of the catalog taken, since start.", st.snapshots_taken);
    dfs_metrics_counter(w, "dfs_metadata_raft_snapshots_restored_total",
                        "Snapshots installed (from a leader, or at start), since start.",
                        st.snapshots_restored);
    dfs_metrics_gauge(w, "dfs_metadata_raft_snapshot_bytes",
                      "Size of the latest snapshot taken or installed (0: none).",
                      (double)st.snapshot_bytes);
    dfs_metrics_counter(w, "dfs_metadata_raft_entries_proposed_total",
                        "Log entries of commands this replica appended as leader.",
                        st.entries_proposed);
    dfs_metrics_counter(w, "dfs_metadata_raft_commands_proposed_total",
                        "Commands (catalog writes) in those entries.", st.commands_proposed);
}
