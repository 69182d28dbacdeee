/* A storage node's scrubber: a rate-limited background re-read of every fragment. */
#include "services/storage/scrubber.h"

#include "common/clock.h"
#include "common/err.h"
#include "common/id.h"
#include "common/log.h"
#include "common/throttle.h"
#include "dfs/v1/metadata.pb-c.h"
#include "services/rpc/client.h"
#include "services/rpc/leader.h"
#include "storage/scrub.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_RPC_TIMEOUT  5000
#define DEFAULT_REPORT_BATCH 1000
#define FIRST_RETRY_MS       1000
#define MAX_RETRY_MS         30000
/* Most ids kept for reporting; beyond it new finds wait for the next pass. */
#define PENDING_MAX          100000
/* A failing report is logged the first time, then once every this many failures. */
#define LOG_EVERY            10

/* A corrupt fragment waiting to be reported, with the commit time it had when it was found (0:
   its header could not be read) to tell a replaced fragment apart. */
struct found {
    char id[DFS_FRAGMENT_ID_HEX + 1];
    int64_t stored_ms;
};

/* A fragment read whole and good, with what it holds, for the catalog to compare. */
struct sum {
    char id[DFS_FRAGMENT_ID_HEX + 1];
    uint64_t size;
    uint32_t checksum;
    int64_t stored_ms;
};

/*
 * Fields above `mu` are set by start and only read afterwards. `mu` guards stopping and the
 * pending list; the thread waits on `cv` (CLOCK_MONOTONIC) and stop signals it.
 */
struct dfs_scrubber {
    dfs_frag_store *store;
    char *metadata, *node_id;
    uint64_t (*registration)(void *arg);
    void *registration_arg;
    int64_t interval_ms, first_delay_ms, rpc_timeout_ms;
    uint32_t report_batch;
    void (*on_pass)(void *arg);
    void *on_pass_arg;
    dfs_rpc_leader *ch;
    bool own_ch; /* ch was opened here (not the config's replicas) */
    pthread_t thread;
    dfs_bucket bucket; /* the thread's only */
    dfs_scrub *scrub;  /* the pass (storage/scrub.h); the thread's only */
    /* Report retries: the thread's only. */
    int64_t next_report_ns;
    int64_t retry_ms;
    unsigned report_failures;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    struct found *pending;
    size_t npending, cappending;
    /* Good fragments waiting to be reported with their checksums (at most report_batch; the
       thread's only, so outside mu). */
    struct sum *sums;
    size_t nsums;

    _Atomic uint64_t passes, checked, bytes, corrupt, reported, sums_reported;
};

/* Wait until deadline_ns (monotonic) or stop. Returns false when stopping. */
static bool sleep_until(dfs_scrubber *s, int64_t deadline_ns)
{
    pthread_mutex_lock(&s->mu);
    while (!s->stopping && dfs_clock_mono_ns() < deadline_ns) {
        struct timespec until = {.tv_sec = deadline_ns / 1000000000,
                                 .tv_nsec = deadline_ns % 1000000000};
        pthread_cond_timedwait(&s->cv, &s->mu, &until);
    }
    bool go_on = !s->stopping;
    pthread_mutex_unlock(&s->mu);
    return go_on;
}

static bool stopping(dfs_scrubber *s)
{
    pthread_mutex_lock(&s->mu);
    bool st = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* ---- reporting ---- */

/*
 * Send what is pending, at most report_batch ids per call, unless a failed call's backoff has
 * not run out. Ids deleted or replaced since they were found are dropped first. Returns whether
 * nothing is left pending.
 */
static bool report(dfs_scrubber *s)
{
    if (dfs_clock_mono_ns() < s->next_report_ns)
        return false;
    pthread_mutex_lock(&s->mu);
    size_t keep = 0;
    for (size_t i = 0; i < s->npending; i++) {
        struct dfs_frag_info info;
        int rc = dfs_frag_store_stat(s->store, s->pending[i].id, &info, NULL);
        bool gone = rc == DFS_ENOTFOUND || (rc == DFS_OK && s->pending[i].stored_ms != 0 &&
                                            info.stored_ms != s->pending[i].stored_ms);
        if (!gone)
            s->pending[keep++] = s->pending[i];
    }
    s->npending = keep;
    pthread_mutex_unlock(&s->mu);
    for (;;) {
        char *ids[DEFAULT_REPORT_BATCH * 4];
        pthread_mutex_lock(&s->mu);
        size_t n = s->npending < s->report_batch ? s->npending : s->report_batch;
        if (n > sizeof ids / sizeof ids[0])
            n = sizeof ids / sizeof ids[0];
        /* The calls are made without the lock: send copies of the first n ids. */
        char *block = n > 0 ? malloc(n * (DFS_FRAGMENT_ID_HEX + 1)) : NULL;
        if (block != NULL)
            for (size_t i = 0; i < n; i++) {
                ids[i] = block + i * (DFS_FRAGMENT_ID_HEX + 1);
                memcpy(ids[i], s->pending[i].id, DFS_FRAGMENT_ID_HEX + 1);
            }
        pthread_mutex_unlock(&s->mu);
        if (n == 0)
            return true;
        if (block == NULL)
            return false;
        Dfs__V1__ReportFragmentsRequest req = DFS__V1__REPORT_FRAGMENTS_REQUEST__INIT;
        req.registration = s->registration != NULL ? s->registration(s->registration_arg) : 0;
        req.corrupt = ids;
        req.n_corrupt = n;
        ProtobufCMessage *resp = NULL;
        char *err = NULL;
        int rc = dfs_rpc_leader_unary(s->ch, "/dfs.v1.Metadata/ReportFragments", &req.base,
                                      &dfs__v1__report_fragments_response__descriptor, &resp,
                                      s->rpc_timeout_ms, 0, DFS_RPC_LEADER_IDEMPOTENT, NULL, &err);
        free(block);
        if (rc != DFS_OK) {
            s->report_failures++;
            if (s->report_failures % LOG_EVERY == 1)
                dfs_log(DFS_LOG_WARN,
                        "cannot report corrupt fragments: %s metadata=%s ids=%zu failures=%u "
                        "retry_ms=%" PRId64,
                        err != NULL ? err : dfs_strerror(rc), s->metadata, n, s->report_failures,
                        s->retry_ms);
            free(err);
            s->next_report_ns = dfs_clock_mono_ns() + s->retry_ms * 1000000;
            s->retry_ms = s->retry_ms * 2 > MAX_RETRY_MS ? MAX_RETRY_MS : s->retry_ms * 2;
            return false;
        }
        protobuf_c_message_free_unpacked(resp, NULL);
        dfs_log(DFS_LOG_INFO, "reported corrupt fragments ids=%zu metadata=%s", n, s->metadata);
        s->report_failures = 0;
        s->retry_ms = FIRST_RETRY_MS;
        atomic_fetch_add(&s->reported, n);
        pthread_mutex_lock(&s->mu);
        /* Only this thread adds to or removes from the list, so the first n are the ones sent. */
        memmove(s->pending, s->pending + n, (s->npending - n) * sizeof *s->pending);
        s->npending -= n;
        pthread_mutex_unlock(&s->mu);
    }
}

/*
 * Send the good fragments' checksums (ReportFragments.scrubbed), unless a failed call's backoff
 * has not run out: the metadata service compares each with the catalog, which is what finds a
 * copy rewritten consistently with other data (its blocks all match their own CRCs). Fragments
 * deleted or replaced since they were read are left out. Returns whether nothing is left.
 */
static bool report_sums(dfs_scrubber *s)
{
    if (s->nsums == 0)
        return true;
    if (dfs_clock_mono_ns() < s->next_report_ns)
        return false;
    Dfs__V1__FragmentSum *msgs = calloc(s->nsums, sizeof *msgs);
    Dfs__V1__FragmentSum **ptrs = calloc(s->nsums, sizeof *ptrs);
    if (msgs == NULL || ptrs == NULL) {
        free(msgs);
        free(ptrs);
        return false;
    }
    Dfs__V1__ReportFragmentsRequest req = DFS__V1__REPORT_FRAGMENTS_REQUEST__INIT;
    req.registration = s->registration != NULL ? s->registration(s->registration_arg) : 0;
    req.scrubbed = ptrs;
    for (size_t i = 0; i < s->nsums; i++) {
        struct dfs_frag_info info;
        if (dfs_frag_store_stat(s->store, s->sums[i].id, &info, NULL) != DFS_OK ||
            info.stored_ms != s->sums[i].stored_ms)
            continue;
        Dfs__V1__FragmentSum *m = &msgs[req.n_scrubbed];
        dfs__v1__fragment_sum__init(m);
        m->fragment_id = s->sums[i].id;
        m->size = s->sums[i].size;
        m->checksum = s->sums[i].checksum;
        ptrs[req.n_scrubbed++] = m;
    }
    int rc = DFS_OK;
    char *err = NULL;
    if (req.n_scrubbed > 0) {
        ProtobufCMessage *resp = NULL;
        rc = dfs_rpc_leader_unary(s->ch, "/dfs.v1.Metadata/ReportFragments", &req.base,
                                  &dfs__v1__report_fragments_response__descriptor, &resp,
                                  s->rpc_timeout_ms, 0, DFS_RPC_LEADER_IDEMPOTENT, NULL, &err);
        if (rc == DFS_OK) {
            const Dfs__V1__ReportFragmentsResponse *r =
                (const Dfs__V1__ReportFragmentsResponse *)resp;
            if (r->mismatched > 0)
                dfs_log(DFS_LOG_WARN,
                        "scrubbed copies differ from the catalog (rewritten with other data), "
                        "marked lost mismatched=%u of=%zu",
                        r->mismatched, req.n_scrubbed);
            protobuf_c_message_free_unpacked(resp, NULL);
            atomic_fetch_add(&s->sums_reported, req.n_scrubbed);
        }
    }
    free(msgs);
    free(ptrs);
    if (rc != DFS_OK) {
        s->report_failures++;
        if (s->report_failures % LOG_EVERY == 1)
            dfs_log(DFS_LOG_WARN,
                    "cannot report scrubbed checksums: %s metadata=%s ids=%zu failures=%u "
                    "retry_ms=%" PRId64,
                    err != NULL ? err : dfs_strerror(rc), s->metadata, s->nsums, s->report_failures,
                    s->retry_ms);
        free(err);
        s->next_report_ns = dfs_clock_mono_ns() + s->retry_ms * 1000000;
        s->retry_ms = s->retry_ms * 2 > MAX_RETRY_MS ? MAX_RETRY_MS : s->retry_ms * 2;
        return false;
    }
    s->report_failures = 0;
    s->retry_ms = FIRST_RETRY_MS;
    s->nsums = 0;
    return true;
}

/* Queue a corrupt find (once per id). */
static void found(dfs_scrubber *s, const char *id, int64_t stored_ms)
{
    pthread_mutex_lock(&s->mu);
    bool known = false;
    for (size_t i = 0; i < s->npending && !known; i++)
        known = strcmp(s->pending[i].id, id) == 0;
    if (!known && s->npending == s->cappending && s->cappending < PENDING_MAX) {
        size_t cap = s->cappending > 0 ? 2 * s->cappending : 64;
        struct found *p = realloc(s->pending, cap * sizeof *p);
        if (p != NULL) {
            s->pending = p;
            s->cappending = cap;
        }
    }
    if (!known && s->npending < s->cappending) {
        memcpy(s->pending[s->npending].id, id, DFS_FRAGMENT_ID_HEX + 1);
        s->pending[s->npending].stored_ms = stored_ms;
        s->npending++;
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- scrubbing ---- */

/* Hooks of the pass (storage/scrub.h). */

/* Stop before the next fragment when asked to. */
static bool pass_stop(void *arg)
{
    return stopping(arg);
}

/* Take n tokens, sleeping as long as the bucket says. Returns false when stopping. */
static bool pace(void *arg, size_t n)
{
    dfs_scrubber *s = arg;
    for (;;) {
        int64_t wait = dfs_bucket_take(&s->bucket, n, dfs_clock_mono_ns());
        if (wait == 0)
            return true;
        if (!sleep_until(s, dfs_clock_mono_ns() + wait))
            return false;
    }
}

static void progress(void *arg, size_t n)
{
    dfs_scrubber *s = arg;
    atomic_fetch_add(&s->bytes, n);
}

/* One fragment's verdict: counted, logged, and queued for the metadata service. */
static int visit(void *arg, const struct dfs_scrub_result *r)
{
    dfs_scrubber *s = arg;
    const char *id = r->id;
    atomic_fetch_add(&s->checked, 1);
    if (r->verdict == DFS_SCRUB_GOOD) {
        /* Good in itself; whether it is the catalog's copy is the metadata service's to say. A
           full list waits for its report (a failing service: the next pass reports again). */
        if (s->nsums < s->report_batch) {
            struct sum *m = &s->sums[s->nsums++];
            memcpy(m->id, id, DFS_FRAGMENT_ID_HEX + 1);
            m->size = r->size;
            m->checksum = r->checksum;
            m->stored_ms = r->stored_ms;
        }
        if (s->nsums == s->report_batch)
            report_sums(s);
    }
    if (r->verdict == DFS_SCRUB_CORRUPT || r->verdict == DFS_SCRUB_UNREADABLE) {
        atomic_fetch_add(&s->corrupt, 1);
        dfs_log(DFS_LOG_WARN, "scrub found a bad fragment id=%s status=%s err=\"%s\"", id,
                r->verdict == DFS_SCRUB_CORRUPT ? "corrupt" : "unreadable",
                r->err != NULL ? r->err : dfs_strerror(r->status));
        found(s, id, r->stored_ms);
    } else if (r->verdict == DFS_SCRUB_FAILED) {
        dfs_log(DFS_LOG_WARN, "scrub cannot check a fragment id=%s err=\"%s\"", id,
                r->err != NULL ? r->err : dfs_strerror(r->status));
    }
    /* Report as soon as a batch is full (and keep retrying a failed one as the pass goes). */
    pthread_mutex_lock(&s->mu);
    size_t pending = s->npending;
    pthread_mutex_unlock(&s->mu);
    if (pending >= s->report_batch || (pending > 0 && s->report_failures > 0))
        report(s);
    return DFS_OK;
}

static void *run(void *arg)
{
    dfs_scrubber *s = arg;
    int64_t next_ns = dfs_clock_mono_ns() + s->first_delay_ms * 1000000;
    for (;;) {
        /* Pause until the next pass; pending reports are retried meanwhile. */
        bool go_on = true;
        for (;;) {
            pthread_mutex_lock(&s->mu);
            bool pending = s->npending > 0 || s->nsums > 0;
            pthread_mutex_unlock(&s->mu);
            int64_t until = next_ns;
            if (pending && s->next_report_ns < until)
                until = s->next_report_ns;
            if (!(go_on = sleep_until(s, until)))
                break;
            if (pending && report(s))
                report_sums(s);
            if (dfs_clock_mono_ns() >= next_ns)
                break;
        }
        if (!go_on)
            break;
        int64_t t0 = dfs_clock_mono_ns();
        uint64_t checked0 = atomic_load(&s->checked), bytes0 = atomic_load(&s->bytes),
                 corrupt0 = atomic_load(&s->corrupt);
        char *err = NULL;
        struct dfs_scrub_hooks hooks = {
            .stop = pass_stop, .pace = pace, .progress = progress, .visit = visit, .arg = s};
        int rc = dfs_scrub_pass(s->scrub, &hooks, &err);
        if (rc == DFS_ECANCELED)
            break;
        if (rc != DFS_OK)
            dfs_log(DFS_LOG_WARN, "scrub pass cut short: %s", err != NULL ? err : dfs_strerror(rc));
        free(err);
        atomic_fetch_add(&s->passes, 1);
        dfs_log(DFS_LOG_INFO,
                "scrub pass done fragments=%" PRIu64 " bytes=%" PRIu64 " bad=%" PRIu64 " ms=%.0f",
                atomic_load(&s->checked) - checked0, atomic_load(&s->bytes) - bytes0,
                atomic_load(&s->corrupt) - corrupt0, (double)(dfs_clock_mono_ns() - t0) / 1e6);
        if (report(s))
            report_sums(s);
        if (s->on_pass != NULL)
            s->on_pass(s->on_pass_arg);
        next_ns = dfs_clock_mono_ns() + s->interval_ms * 1000000;
    }
    return NULL;
}

static void free_scrubber(dfs_scrubber *s)
{
    if (s->own_ch)
        dfs_rpc_leader_destroy(s->ch);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->metadata);
    free(s->node_id);
    free(s->pending);
    free(s->sums);
    dfs_scrub_destroy(s->scrub);
    free(s);
}

int dfs_scrubber_start(const struct dfs_scrubber_config *cfg, dfs_scrubber **out, char **errmsg)
{
    if (cfg->store == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "scrubber: no fragment store");
    if (cfg->metadata == NULL || cfg->metadata[0] == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "scrubber: no metadata service address");
    if (cfg->node_id == NULL || cfg->node_id[0] == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "scrubber: no node id");
    if (cfg->rate == 0 || cfg->interval_ms <= 0 || cfg->first_delay_ms < 0)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "scrubber: the rate and the interval must be positive");
    dfs_scrubber *s = calloc(1, sizeof *s);
    if (s == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    s->store = cfg->store;
    s->metadata = strdup(cfg->metadata);
    s->node_id = strdup(cfg->node_id);
    s->registration = cfg->registration;
    s->registration_arg = cfg->registration_arg;
    s->interval_ms = cfg->interval_ms;
    s->first_delay_ms = cfg->first_delay_ms;
    s->rpc_timeout_ms = cfg->rpc_timeout_ms > 0 ? cfg->rpc_timeout_ms : DEFAULT_RPC_TIMEOUT;
    s->report_batch = cfg->report_batch > 0 ? cfg->report_batch : DEFAULT_REPORT_BATCH;
    s->on_pass = cfg->on_pass;
    s->on_pass_arg = cfg->on_pass_arg;
    if (s->report_batch > DEFAULT_REPORT_BATCH * 4)
        s->report_batch = DEFAULT_REPORT_BATCH * 4;
    s->retry_ms = FIRST_RETRY_MS;
    dfs_bucket_init(&s->bucket, cfg->rate, DFS_SCRUB_READ_BYTES, dfs_clock_mono_ns());
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &attr);
    pthread_condattr_destroy(&attr);
    s->sums = malloc(s->report_batch * sizeof *s->sums);
    if (s->metadata == NULL || s->node_id == NULL || s->sums == NULL ||
        dfs_scrub_create(s->store, &s->scrub, NULL) != DFS_OK) {
        free_scrubber(s);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    int rc = DFS_OK;
    s->own_ch = cfg->replicas == NULL;
    if (cfg->replicas != NULL)
        s->ch = cfg->replicas;
    else
        rc = dfs_rpc_leader_open(s->metadata, &cfg->channel, &s->ch, errmsg);
    if (rc != DFS_OK) {
        free_scrubber(s);
        return rc;
    }
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        free_scrubber(s);
        return dfs_seterr(errmsg, DFS_ENOMEM, "scrubber: cannot start a thread");
    }
    *out = s;
    return DFS_OK;
}

void dfs_scrubber_stats(dfs_scrubber *s, struct dfs_scrubber_stats *out)
{
    out->passes = atomic_load(&s->passes);
    out->fragments_checked = atomic_load(&s->checked);
    out->bytes_checked = atomic_load(&s->bytes);
    out->corrupt_found = atomic_load(&s->corrupt);
    out->reported = atomic_load(&s->reported);
    out->sums_reported = atomic_load(&s->sums_reported);
    pthread_mutex_lock(&s->mu);
    out->report_pending = s->npending;
    pthread_mutex_unlock(&s->mu);
}

void dfs_scrubber_stop(dfs_scrubber *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    free_scrubber(s);
}
