/* A storage node's inventory report: paged ReportFragments{full} after every registration. */
#include "services/storage/inventory.h"

#include "common/clock.h"
#include "common/err.h"
#include "common/id.h"
#include "common/log.h"
#include "dfs/v1/metadata.pb-c.h"
#include "services/rpc/client.h"
#include "services/rpc/leader.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_PAGE        8000
#define MAX_PAGE            50000
#define DEFAULT_RPC_TIMEOUT 10000
#define DEFAULT_RETRY_MAX   30000
#define FIRST_RETRY_MS      1000
#define LOG_EVERY           10
/* Returned by the walk's callback when a newer trigger (or stop) makes this report moot. */
#define SUPERSEDED          1

/*
 * Fields above `mu` are set by start and only read afterwards, or belong to the thread (the page
 * and the walk's state). `mu` guards stopping and wanted; cv wakes the thread.
 */
struct dfs_inventory {
    dfs_frag_store *store;
    char *metadata, *node_id;
    uint64_t (*registration)(void *arg);
    void *registration_arg;
    uint32_t page_size;
    int64_t rpc_timeout_ms, retry_max_ms;
    dfs_rpc_leader *ch;
    bool own_ch; /* ch was opened here (not the config's replicas) */
    pthread_t thread;
    /* The page being filled: ids[0..nids) point into the flat block. */
    char *block;
    char **ids;
    size_t nids;
    uint32_t page;     /* number of the page being filled */
    uint64_t listed;   /* ids listed so far in this report */
    uint64_t gen;      /* the trigger generation this report answers */
    char *err;         /* why the latest page failed */
    unsigned failures; /* consecutive failed reports */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    uint64_t wanted; /* generation: bumped by each trigger */

    _Atomic uint64_t reports, pages, page_failures, last_count;
};

/* Whether this report should stop: stopping, or a newer trigger came. */
static bool superseded(dfs_inventory *inv)
{
    pthread_mutex_lock(&inv->mu);
    bool moot = inv->stopping || inv->wanted != inv->gen;
    pthread_mutex_unlock(&inv->mu);
    return moot;
}

/* Send the page being filled. Returns DFS_OK or the call's failure (inv->err says why). */
static int send_page(dfs_inventory *inv, bool last)
{
    Dfs__V1__ReportFragmentsRequest req = DFS__V1__REPORT_FRAGMENTS_REQUEST__INIT;
    req.registration = inv->registration != NULL ? inv->registration(inv->registration_arg) : 0;
    req.full = true;
    req.present = inv->ids;
    req.n_present = inv->nids;
    req.page = inv->page;
    req.last = last;
    ProtobufCMessage *resp = NULL;
    free(inv->err);
    inv->err = NULL;
    int rc =
        dfs_rpc_leader_unary(inv->ch, "/dfs.v1.Metadata/ReportFragments", &req.base,
                             &dfs__v1__report_fragments_response__descriptor, &resp,
                             inv->rpc_timeout_ms, 0, DFS_RPC_LEADER_IDEMPOTENT, NULL, &inv->err);
    if (rc != DFS_OK) {
        atomic_fetch_add(&inv->page_failures, 1);
        return rc;
    }
    const Dfs__V1__ReportFragmentsResponse *r = (const Dfs__V1__ReportFragmentsResponse *)resp;
    if (last && (r->marked_lost > 0 || r->unknown > 0))
        dfs_log(DFS_LOG_INFO,
                "inventory differs from the catalog marked_lost=%u unknown=%u (last page)",
                r->marked_lost, r->unknown);
    protobuf_c_message_free_unpacked(resp, NULL);
    atomic_fetch_add(&inv->pages, 1);
    inv->page++;
    inv->nids = 0;
    return DFS_OK;
}

static int list_one(void *ctx, const char *id, uint64_t size)
{
    (void)size;
    dfs_inventory *inv = ctx;
    if (!dfs_fragment_id_valid(id))
        return DFS_OK;
    /* A full page goes only once another id shows it was not the last one. */
    if (inv->nids == inv->page_size) {
        if (superseded(inv))
            return SUPERSEDED;
        int rc = send_page(inv, false);
        if (rc != DFS_OK)
            return rc;
    }
    memcpy(inv->ids[inv->nids++], id, DFS_FRAGMENT_ID_HEX + 1);
    inv->listed++;
    return DFS_OK;
}

/* One whole report for generation gen. DFS_OK, SUPERSEDED, or a failure (inv->err). */
static int report(dfs_inventory *inv)
{
    inv->nids = 0;
    inv->page = 0;
    inv->listed = 0;
    char *err = NULL;
    int rc = dfs_frag_store_foreach(inv->store, list_one, inv, &err);
    if (rc == DFS_OK) {
        if (superseded(inv))
            return SUPERSEDED;
        rc = send_page(inv, true);
    } else if (rc != SUPERSEDED && inv->err == NULL) {
        inv->err = err; /* the listing itself failed */
        err = NULL;
    }
    free(err);
    return rc;
}

static void *run(void *arg)
{
    dfs_inventory *inv = arg;
    int64_t retry_ms = FIRST_RETRY_MS;
    int64_t next_ns = 0; /* no report before (a failed one's backoff) */
    uint64_t done = 0;   /* the generation of the latest acknowledged report */
    pthread_mutex_lock(&inv->mu);
    for (;;) {
        /* A failed report's backoff holds only until a newer trigger (a new registration). */
        while (!inv->stopping && (inv->wanted == done ||
                                  (inv->wanted == inv->gen && dfs_clock_mono_ns() < next_ns))) {
            if (inv->wanted == done) {
                pthread_cond_wait(&inv->cv, &inv->mu);
            } else {
                struct timespec until = {.tv_sec = next_ns / 1000000000,
                                         .tv_nsec = next_ns % 1000000000};
                pthread_cond_timedwait(&inv->cv, &inv->mu, &until);
            }
        }
        if (inv->stopping)
            break;
        inv->gen = inv->wanted;
        pthread_mutex_unlock(&inv->mu);
        int64_t t0 = dfs_clock_mono_ns();
        int rc = report(inv);
        if (rc == DFS_OK) {
            done = inv->gen;
            atomic_fetch_add(&inv->reports, 1);
            atomic_store(&inv->last_count, inv->listed);
            dfs_log(DFS_LOG_INFO,
                    "inventory reported fragments=%" PRIu64 " pages=%u ms=%.0f failures_before=%u",
                    inv->listed, inv->page, (double)(dfs_clock_mono_ns() - t0) / 1e6,
                    inv->failures);
            inv->failures = 0;
            retry_ms = FIRST_RETRY_MS;
            next_ns = 0;
        } else if (rc != SUPERSEDED) {
            inv->failures++;
            if (inv->failures % LOG_EVERY == 1)
                dfs_log(DFS_LOG_WARN,
                        "cannot report the inventory: %s metadata=%s page=%u failures=%u "
                        "retry_ms=%" PRId64,
                        inv->err != NULL ? inv->err : dfs_strerror(rc), inv->metadata, inv->page,
                        inv->failures, retry_ms);
            next_ns = dfs_clock_mono_ns() + retry_ms * 1000000;
            retry_ms = retry_ms * 2 > inv->retry_max_ms ? inv->retry_max_ms : retry_ms * 2;
        }
        pthread_mutex_lock(&inv->mu);
    }
    pthread_mutex_unlock(&inv->mu);
    return NULL;
}

static void free_inventory(dfs_inventory *inv)
{
    if (inv->own_ch)
        dfs_rpc_leader_destroy(inv->ch);
    pthread_mutex_destroy(&inv->mu);
    pthread_cond_destroy(&inv->cv);
    free(inv->metadata);
    free(inv->node_id);
    free(inv->block);
    free(inv->ids);
    free(inv->err);
    free(inv);
}

int dfs_inventory_start(const struct dfs_inventory_config *cfg, dfs_inventory **out, char **errmsg)
{
    if (cfg->store == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "inventory: no fragment store");
    if (cfg->metadata == NULL || cfg->metadata[0] == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "inventory: no metadata service address");
    if (cfg->node_id == NULL || cfg->node_id[0] == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "inventory: no node id");
    dfs_inventory *inv = calloc(1, sizeof *inv);
    if (inv == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    inv->store = cfg->store;
    inv->metadata = strdup(cfg->metadata);
    inv->node_id = strdup(cfg->node_id);
    inv->registration = cfg->registration;
    inv->registration_arg = cfg->registration_arg;
    inv->page_size = cfg->page_size > 0 ? cfg->page_size : DEFAULT_PAGE;
    if (inv->page_size > MAX_PAGE)
        inv->page_size = MAX_PAGE;
    inv->rpc_timeout_ms = cfg->rpc_timeout_ms > 0 ? cfg->rpc_timeout_ms : DEFAULT_RPC_TIMEOUT;
    inv->retry_max_ms = cfg->retry_max_ms > 0 ? cfg->retry_max_ms : DEFAULT_RETRY_MAX;
    pthread_mutex_init(&inv->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&inv->cv, &attr);
    pthread_condattr_destroy(&attr);
    inv->block = malloc((size_t)inv->page_size * (DFS_FRAGMENT_ID_HEX + 1));
    inv->ids = malloc((size_t)inv->page_size * sizeof *inv->ids);
    if (inv->metadata == NULL || inv->node_id == NULL || inv->block == NULL || inv->ids == NULL) {
        free_inventory(inv);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < inv->page_size; i++)
        inv->ids[i] = inv->block + (size_t)i * (DFS_FRAGMENT_ID_HEX + 1);
    int rc = DFS_OK;
    inv->own_ch = cfg->replicas == NULL;
    if (cfg->replicas != NULL)
        inv->ch = cfg->replicas;
    else
        rc = dfs_rpc_leader_open(inv->metadata, &cfg->channel, &inv->ch, errmsg);
    if (rc != DFS_OK) {
        free_inventory(inv);
        return rc;
    }
    if (pthread_create(&inv->thread, NULL, run, inv) != 0) {
        free_inventory(inv);
        return dfs_seterr(errmsg, DFS_ENOMEM, "inventory: cannot start a thread");
    }
    *out = inv;
    return DFS_OK;
}

void dfs_inventory_trigger(dfs_inventory *inv)
{
    pthread_mutex_lock(&inv->mu);
    inv->wanted++;
    pthread_cond_broadcast(&inv->cv);
    pthread_mutex_unlock(&inv->mu);
}

void dfs_inventory_stats(dfs_inventory *inv, struct dfs_inventory_stats *out)
{
    out->reports = atomic_load(&inv->reports);
    out->pages = atomic_load(&inv->pages);
    out->failures = atomic_load(&inv->page_failures);
    out->last_count = atomic_load(&inv->last_count);
}

void dfs_inventory_stop(dfs_inventory *inv)
{
    if (inv == NULL)
        return;
    pthread_mutex_lock(&inv->mu);
    inv->stopping = true;
    pthread_cond_broadcast(&inv->cv);
    pthread_mutex_unlock(&inv->mu);
    pthread_join(inv->thread, NULL);
    free_inventory(inv);
}
