/* Readiness: a thread that checks, every interval, whether the daemon can do its work, and says so
   through the health service. */
#include "services/daemon/readiness.h"

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * check_mu serialises the checks (checker thread and check_now). mu guards everything below it;
 * cv wakes both threads (stop, a check wanted). Lock order: check_mu, then mu.
 */
struct dfs_readiness {
    struct dfs_readiness_config cfg;
    pthread_t checker, ticker;
    bool checker_running, ticker_running;
    pthread_mutex_t check_mu;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    bool want_check;
    int64_t check_started_ns; /* 0 when no check runs */
    bool stalled;             /* the running check was declared stuck */
    bool checked;             /* an outcome exists */
    bool ready;
    char *why;
    uint64_t ok_total, failed_total;
};

static void set_health(dfs_readiness *r, bool ready)
{
    for (size_t i = 0; i < r->cfg.nservices; i++)
        dfs_rpc_health_set(r->cfg.health, r->cfg.services[i],
                           ready ? DFS_HEALTH_SERVING : DFS_HEALTH_NOT_SERVING, NULL);
}

/* Record an outcome (takes why) and publish it; caller holds check_mu, not mu. */
static void record(dfs_readiness *r, bool ready, char *why)
{
    pthread_mutex_lock(&r->mu);
    bool changed = !r->checked || r->ready != ready ||
                   (!ready && r->why != NULL && why != NULL && strcmp(r->why, why) != 0);
    r->checked = true;
    r->ready = ready;
    free(r->why);
    r->why = ready ? NULL : why;
    if (ready) {
        r->ok_total++;
        free(why);
    } else {
        r->failed_total++;
    }
    if (changed) {
        if (ready)
            dfs_log(DFS_LOG_INFO, "ready");
        else
            dfs_log(DFS_LOG_WARN, "not ready reason=%s", r->why != NULL ? r->why : "");
    }
    set_health(r, ready);
    pthread_mutex_unlock(&r->mu);
}

static void check_once(dfs_readiness *r)
{
    pthread_mutex_lock(&r->check_mu);
    pthread_mutex_lock(&r->mu);
    r->check_started_ns = dfs_clock_mono_ns();
    r->stalled = false;
    pthread_mutex_unlock(&r->mu);
    char *why = NULL;
    int rc = r->cfg.check(r->cfg.arg, &why);
    pthread_mutex_lock(&r->mu);
    r->check_started_ns = 0;
    pthread_mutex_unlock(&r->mu);
    if (rc != DFS_OK && why == NULL)
        why = strdup(dfs_strerror(rc));
    record(r, rc == DFS_OK, why);
    pthread_mutex_unlock(&r->check_mu);
}

static void *checker_main(void *arg)
{
    dfs_readiness *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->stopping && !r->want_check)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->stopping)
            break;
        r->want_check = false;
        pthread_mutex_unlock(&r->mu);
        check_once(r);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void *ticker_main(void *arg)
{
    dfs_readiness *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        struct timespec until = dfs_clock_abstime(r->cfg.interval_ms);
        pthread_cond_timedwait(&r->cv, &r->mu, &until);
        if (r->stopping)
            break;
        int64_t started = r->check_started_ns;
        if (started == 0) {
            r->want_check = true;
            pthread_cond_broadcast(&r->cv);
            continue;
        }
        int64_t ms = (dfs_clock_mono_ns() - started) / 1000000;
        if (ms < r->cfg.stall_ms || r->stalled)
            continue;
        /* The check is stuck: not ready now; its own outcome will count when it comes. */
        r->stalled = true;
        bool was = r->ready;
        r->ready = false;
        r->failed_total++;
        char buf[128];
        snprintf(buf, sizeof buf, "the readiness check has not finished for %" PRId64 " ms", ms);
        free(r->why);
        r->why = strdup(buf);
        if (was)
            dfs_log(DFS_LOG_WARN, "not ready reason=%s", buf);
        set_health(r, false);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int dfs_readiness_start(const struct dfs_readiness_config *cfg, dfs_readiness **out, char **errmsg)
{
    if (cfg->check == NULL || cfg->health == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "readiness needs a check and a health service");
    dfs_readiness *r = calloc(1, sizeof *r);
    if (r == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    r->cfg = *cfg;
    if (r->cfg.interval_ms <= 0)
        r->cfg.interval_ms = 1000;
    if (r->cfg.stall_ms <= 0)
        r->cfg.stall_ms = 10000;
    pthread_mutex_init(&r->check_mu, NULL);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (cfg->liveness != NULL)
        dfs_rpc_health_set(cfg->health, cfg->liveness, DFS_HEALTH_SERVING, NULL);
    check_once(r);
    if (pthread_create(&r->checker, NULL, checker_main, r) != 0) {
        dfs_readiness_stop(r);
        return dfs_seterr(errmsg, DFS_ENOMEM, "cannot start the readiness thread");
    }
    r->checker_running = true;
    if (pthread_create(&r->ticker, NULL, ticker_main, r) != 0) {
        dfs_readiness_stop(r);
        return dfs_seterr(errmsg, DFS_ENOMEM, "cannot start the readiness thread");
    }
    r->ticker_running = true;
    *out = r;
    return DFS_OK;
}

void dfs_readiness_check_now(dfs_readiness *r)
{
    check_once(r);
}

bool dfs_readiness_ready(dfs_readiness *r, char **why)
{
    pthread_mutex_lock(&r->mu);
    bool ready = r->ready;
    if (why != NULL)
        *why = !ready && r->why != NULL ? strdup(r->why) : NULL;
    pthread_mutex_unlock(&r->mu);
    return ready;
}

void dfs_readiness_collect(void *arg, dfs_metrics_writer *w)
{
    dfs_readiness *r = arg;
    pthread_mutex_lock(&r->mu);
    bool ready = r->ready;
    uint64_t ok = r->ok_total, failed = r->failed_total;
    pthread_mutex_unlock(&r->mu);
    dfs_metrics_gauge(w, "dfs_ready", "1 when the latest readiness check passed, else 0.",
                      ready ? 1 : 0);
    dfs_metrics_family(w, "dfs_readiness_checks_total", "counter",
                       "Readiness checks run, by outcome (a stuck check counts as failed).");
    dfs_metrics_sample_u64(w, "dfs_readiness_checks_total", "result=\"ok\"", ok);
    dfs_metrics_sample_u64(w, "dfs_readiness_checks_total", "result=\"failed\"", failed);
}

void dfs_readiness_stop(dfs_readiness *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    /* A check in progress is waited out: its arg must stay valid until stop returns. */
    if (r->ticker_running)
        pthread_join(r->ticker, NULL);
    if (r->checker_running)
        pthread_join(r->checker, NULL);
    free(r->why);
    pthread_mutex_destroy(&r->check_mu);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}
