/* A storage node's damage reporter: one thread, two queues, batched calls with a backoff. */
#include "services/storage/reporter.h"

#include "common/clock.h"
#include "common/err.h"
#include "common/id.h"
#include "common/log.h"
#include "common/ticket.h"
#include "dfs/v1/metadata.pb-c.h"
#include "services/rpc/leader.h"
#include "services/rpc/ticket_pb.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_RPC_TIMEOUT 5000
#define DEFAULT_QUIET_MS    60000
#define FIRST_RETRY_MS      1000
#define MAX_RETRY_MS        30000
/* Reports queued at most (both queues together). */
#define QUEUE_MAX           4096
/* Per call. */
#define OWN_BATCH           1000
#define PEER_BATCH          256
/* Copies remembered as reported (for quiet_ms), oldest forgotten first. */
#define RECENT_MAX          4096
#define DETAIL_MAX          256
/* A failing call is logged the first time, then once every this many failures. */
#define LOG_EVERY           10

/* One report: a copy and what is wrong with it. */
struct item {
    int damage;
    char fragment_id[DFS_FRAGMENT_ID_HEX + 1];
    int64_t stored_ms;        /* own corrupt copy: its commit time when found (0: unknown) */
    struct dfs_ticket ticket; /* peer copy: the ticket it was read with */
    char detail[DETAIL_MAX + 1];
};

/* A copy reported lately: (fragment, node, damage) and when. */
struct recent {
    char fragment_id[DFS_FRAGMENT_ID_HEX + 1];
    char node_id[DFS_ID_HEX + 1];
    int damage;
    int64_t at_ns;
};

/*
 * Fields above `mu` are set by start and only read afterwards, or belong to the thread. `mu`
 * guards the rest; cv (CLOCK_MONOTONIC) wakes the thread. Callers only append to the queues; the
 * thread alone removes from their front, so the first n items it copied out are still the first
 * n when their call returns.
 */
struct dfs_reporter {
    dfs_frag_store *store;
    char *metadata, *node_id;
    uint64_t (*registration)(void *arg);
    void *registration_arg;
    int64_t rpc_timeout_ms, quiet_ms;
    dfs_rpc_leader *ch;
    bool own_ch; /* ch was opened here (not the config's replicas) */
    pthread_t thread;
    int64_t retry_ms;
    unsigned failures_in_row;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    int64_t next_ns; /* no call before this (a failed call's backoff) */
    struct item *own, *peer;
    size_t nown, npeer;
    struct recent recent[RECENT_MAX];
    size_t nrecent, rnext;

    _Atomic uint64_t own_sent, peer_sent, skipped, dropped, failures;
};

/* Printable ASCII only, at most DETAIL_MAX bytes: it ends up in a proto3 string and a log. */
static void clean_copy(char *out, const char *in)
{
    size_t i = 0;
    for (; in != NULL && in[i] != '\0' && i < DETAIL_MAX; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = c < 0x20 || c >= 0x7f || c == '"' ? '?' : (char)c;
    }
    out[i] = '\0';
}

/*
 * Under mu: whether (fragment, node, damage) was reported within quiet_ms; if not, remember it
 * as reported now.
 */
static bool quiet(dfs_reporter *r, const char *fragment_id, const char *node_id, int damage)
{
    int64_t now = dfs_clock_mono_ns();
    for (size_t i = 0; i < r->nrecent; i++) {
        const struct recent *e = &r->recent[i];
        if (e->damage == damage && strcmp(e->fragment_id, fragment_id) == 0 &&
            strcmp(e->node_id, node_id) == 0 && now - e->at_ns < r->quiet_ms * 1000000)
            return true;
    }
    struct recent *e = &r->recent[r->rnext];
    r->rnext = (r->rnext + 1) % RECENT_MAX;
    if (r->nrecent < RECENT_MAX)
        r->nrecent++;
    snprintf(e->fragment_id, sizeof e->fragment_id, "%s", fragment_id);
    snprintf(e->node_id, sizeof e->node_id, "%s", node_id);
    e->damage = damage;
    e->at_ns = now;
    return false;
}

/* Under mu: room for one more report? */
static bool room(dfs_reporter *r)
{
    if (r->nown + r->npeer < QUEUE_MAX)
        return true;
    atomic_fetch_add(&r->dropped, 1);
    return false;
}

void dfs_reporter_own(dfs_reporter *r, const char *fragment_id, int damage)
{
    if (r == NULL || !dfs_fragment_id_valid(fragment_id) ||
        (damage != DFS__V1__DAMAGE__DAMAGE_CORRUPT && damage != DFS__V1__DAMAGE__DAMAGE_MISSING))
        return;
    int64_t stored_ms = 0;
    struct dfs_frag_info info;
    if (damage == DFS__V1__DAMAGE__DAMAGE_CORRUPT &&
        dfs_frag_store_stat(r->store, fragment_id, &info, NULL) == DFS_OK)
        stored_ms = info.stored_ms;
    pthread_mutex_lock(&r->mu);
    if (!room(r)) {
        /* counted as dropped */
    } else if (quiet(r, fragment_id, r->node_id, damage)) {
        atomic_fetch_add(&r->skipped, 1);
    } else {
        struct item *it = &r->own[r->nown++];
        memset(it, 0, sizeof *it);
        it->damage = damage;
        snprintf(it->fragment_id, sizeof it->fragment_id, "%s", fragment_id);
        it->stored_ms = stored_ms;
        pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
}

void dfs_reporter_peer(dfs_reporter *r, const Dfs__V1__Ticket *ticket, int damage,
                       const char *detail)
{
    struct dfs_ticket t;
    if (r == NULL || damage < DFS__V1__DAMAGE__DAMAGE_CORRUPT ||
        damage > DFS__V1__DAMAGE__DAMAGE_MISSING || dfs_ticket_from_pb(ticket, &t, NULL) != DFS_OK)
        return;
    pthread_mutex_lock(&r->mu);
    if (!room(r)) {
        /* counted as dropped */
    } else if (quiet(r, t.fragment_id, t.node_id, damage)) {
        atomic_fetch_add(&r->skipped, 1);
    } else {
        struct item *it = &r->peer[r->npeer++];
        memset(it, 0, sizeof *it);
        it->damage = damage;
        snprintf(it->fragment_id, sizeof it->fragment_id, "%s", t.fragment_id);
        it->ticket = t;
        clean_copy(it->detail, detail);
        pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
}

/* Drop the first n items of a queue (the thread's, after their call succeeded). */
static void drop_front(struct item *q, size_t *len, size_t n)
{
    memmove(q, q + n, (*len - n) * sizeof *q);
    *len -= n;
}

/* Whether an own report still holds: the store still lacks (or still holds) that copy. */
static bool still_so(dfs_reporter *r, const struct item *it)
{
    struct dfs_frag_info info;
    int rc = dfs_frag_store_stat(r->store, it->fragment_id, &info, NULL);
    if (it->damage == DFS__V1__DAMAGE__DAMAGE_MISSING)
        return rc == DFS_ENOTFOUND;
    /* Corrupt: gone since (deleted), or replaced since (a repair wrote a good copy). */
    if (rc == DFS_ENOTFOUND)
        return false;
    return !(rc == DFS_OK && it->stored_ms != 0 && info.stored_ms != it->stored_ms);
}

/* Send the first n own items. Returns the call's outcome (*err on failure). */
static int send_own(dfs_reporter *r, const struct item *items, size_t n, char **err)
{
    char **corrupt = calloc(n + 1, sizeof *corrupt), **missing = calloc(n + 1, sizeof *missing);
    if (corrupt == NULL || missing == NULL) {
        free(corrupt);
        free(missing);
        return dfs_seterr(err, DFS_ENOMEM, "out of memory");
    }
    Dfs__V1__ReportFragmentsRequest req = DFS__V1__REPORT_FRAGMENTS_REQUEST__INIT;
    req.registration = r->registration != NULL ? r->registration(r->registration_arg) : 0;
    req.corrupt = corrupt;
    req.missing = missing;
    for (size_t i = 0; i < n; i++) {
        if (!still_so(r, &items[i])) {
            atomic_fetch_add(&r->skipped, 1);
            continue;
        }
        if (items[i].damage == DFS__V1__DAMAGE__DAMAGE_MISSING)
            missing[req.n_missing++] = (char *)items[i].fragment_id;
        else
            corrupt[req.n_corrupt++] = (char *)items[i].fragment_id;
    }
    int rc = DFS_OK;
    if (req.n_corrupt + req.n_missing > 0) {
        ProtobufCMessage *resp = NULL;
        rc = dfs_rpc_leader_unary(r->ch, "/dfs.v1.Metadata/ReportFragments", &req.base,
                                  &dfs__v1__report_fragments_response__descriptor, &resp,
                                  r->rpc_timeout_ms, 0, DFS_RPC_LEADER_IDEMPOTENT, NULL, err);
        if (rc == DFS_OK) {
            const Dfs__V1__ReportFragmentsResponse *a =
                (const Dfs__V1__ReportFragmentsResponse *)resp;
            dfs_log(DFS_LOG_INFO,
                    "reported damaged copies of this node corrupt=%zu missing=%zu marked_lost=%u",
                    req.n_corrupt, req.n_missing, a->marked_lost);
            atomic_fetch_add(&r->own_sent, req.n_corrupt + req.n_missing);
            protobuf_c_message_free_unpacked(resp, NULL);
        }
    }
    free(corrupt);
    free(missing);
    return rc;
}

/* Send the first n peer items. */
static int send_peer(dfs_reporter *r, const struct item *items, size_t n, char **err)
{
    Dfs__V1__DamagedCopy *copies = calloc(n + 1, sizeof *copies);
    Dfs__V1__DamagedCopy **ptrs = calloc(n + 1, sizeof *ptrs);
    Dfs__V1__Ticket *tickets = calloc(n + 1, sizeof *tickets);
    int rc = copies != NULL && ptrs != NULL && tickets != NULL
                 ? DFS_OK
                 : dfs_seterr(err, DFS_ENOMEM, "out of memory");
    for (size_t i = 0; rc == DFS_OK && i < n; i++) {
        dfs__v1__damaged_copy__init(&copies[i]);
        dfs_ticket_pb_view(&items[i].ticket, &tickets[i]);
        copies[i].ticket = &tickets[i];
        copies[i].damage = (Dfs__V1__Damage)items[i].damage;
        copies[i].detail = (char *)items[i].detail;
        ptrs[i] = &copies[i];
    }
    if (rc == DFS_OK) {
        Dfs__V1__ReportDamageRequest req = DFS__V1__REPORT_DAMAGE_REQUEST__INIT;
        req.copies = ptrs;
        req.n_copies = n;
        ProtobufCMessage *resp = NULL;
        rc = dfs_rpc_leader_unary(r->ch, "/dfs.v1.Metadata/ReportDamage", &req.base,
                                  &dfs__v1__report_damage_response__descriptor, &resp,
                                  r->rpc_timeout_ms, 0, DFS_RPC_LEADER_IDEMPOTENT, NULL, err);
        if (rc == DFS_OK) {
            const Dfs__V1__ReportDamageResponse *a = (const Dfs__V1__ReportDamageResponse *)resp;
            dfs_log(DFS_LOG_INFO, "reported damaged copies of other nodes copies=%zu accepted=%u",
                    n, a->accepted);
            atomic_fetch_add(&r->peer_sent, n);
            protobuf_c_message_free_unpacked(resp, NULL);
        }
    }
    free(copies);
    free(ptrs);
    free(tickets);
    return rc;
}

static void *run(void *arg)
{
    dfs_reporter *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->stopping && (r->nown + r->npeer == 0 || dfs_clock_mono_ns() < r->next_ns)) {
            if (r->nown + r->npeer == 0) {
                pthread_cond_wait(&r->cv, &r->mu);
            } else {
                struct timespec until = {.tv_sec = r->next_ns / 1000000000,
                                         .tv_nsec = r->next_ns % 1000000000};
                pthread_cond_timedwait(&r->cv, &r->mu, &until);
            }
        }
        if (r->stopping)
            break;
        /* The calls go without the lock: copies of the first items of each queue. */
        size_t nown = r->nown < OWN_BATCH ? r->nown : OWN_BATCH;
        size_t npeer = r->npeer < PEER_BATCH ? r->npeer : PEER_BATCH;
        struct item *own = nown > 0 ? malloc(nown * sizeof *own) : NULL;
        struct item *peer = npeer > 0 ? malloc(npeer * sizeof *peer) : NULL;
        if (own != NULL)
            memcpy(own, r->own, nown * sizeof *own);
        if (peer != NULL)
            memcpy(peer, r->peer, npeer * sizeof *peer);
        pthread_mutex_unlock(&r->mu);
        char *err = NULL;
        int rc = DFS_OK;
        if ((nown > 0 && own == NULL) || (npeer > 0 && peer == NULL))
            rc = dfs_seterr(&err, DFS_ENOMEM, "out of memory");
        bool own_done = false;
        if (rc == DFS_OK && nown > 0 && (rc = send_own(r, own, nown, &err)) == DFS_OK)
            own_done = true;
        if (rc == DFS_OK && npeer > 0)
            rc = send_peer(r, peer, npeer, &err);
        free(own);
        free(peer);
        pthread_mutex_lock(&r->mu);
        if (own_done)
            drop_front(r->own, &r->nown, nown);
        if (rc == DFS_OK) {
            drop_front(r->peer, &r->npeer, npeer);
            r->retry_ms = FIRST_RETRY_MS;
            r->failures_in_row = 0;
            r->next_ns = 0;
        } else {
            atomic_fetch_add(&r->failures, 1);
            if (r->failures_in_row++ % LOG_EVERY == 0)
                dfs_log(DFS_LOG_WARN,
                        "cannot report damaged copies, will retry: %s metadata=%s pending=%zu "
                        "retry_ms=%" PRId64,
                        err != NULL ? err : dfs_strerror(rc), r->metadata, r->nown + r->npeer,
                        r->retry_ms);
            r->next_ns = dfs_clock_mono_ns() + r->retry_ms * 1000000;
            r->retry_ms = r->retry_ms * 2 > MAX_RETRY_MS ? MAX_RETRY_MS : r->retry_ms * 2;
        }
        free(err);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void free_reporter(dfs_reporter *r)
{
    if (r->own_ch)
        dfs_rpc_leader_destroy(r->ch);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r->metadata);
    free(r->node_id);
    free(r->own);
    free(r->peer);
    free(r);
}

int dfs_reporter_start(const struct dfs_reporter_config *cfg, dfs_reporter **out, char **errmsg)
{
    if (cfg->store == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "reporter: no fragment store");
    if (cfg->metadata == NULL || cfg->metadata[0] == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "reporter: no metadata service address");
    if (cfg->node_id == NULL || !dfs_id_valid(cfg->node_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "reporter: no node id");
    dfs_reporter *r = calloc(1, sizeof *r);
    if (r == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    r->store = cfg->store;
    r->metadata = strdup(cfg->metadata);
    r->node_id = strdup(cfg->node_id);
    r->registration = cfg->registration;
    r->registration_arg = cfg->registration_arg;
    r->rpc_timeout_ms = cfg->rpc_timeout_ms > 0 ? cfg->rpc_timeout_ms : DEFAULT_RPC_TIMEOUT;
    r->quiet_ms = cfg->quiet_ms > 0 ? cfg->quiet_ms : DEFAULT_QUIET_MS;
    r->retry_ms = FIRST_RETRY_MS;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &attr);
    pthread_condattr_destroy(&attr);
    /* Both queues share QUEUE_MAX, so each may hold all of it. */
    r->own = malloc(QUEUE_MAX * sizeof *r->own);
    r->peer = malloc(QUEUE_MAX * sizeof *r->peer);
    if (r->metadata == NULL || r->node_id == NULL || r->own == NULL || r->peer == NULL) {
        free_reporter(r);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    int rc = DFS_OK;
    r->own_ch = cfg->replicas == NULL;
    if (cfg->replicas != NULL)
        r->ch = cfg->replicas;
    else
        rc = dfs_rpc_leader_open(r->metadata, &cfg->channel, &r->ch, errmsg);
    if (rc != DFS_OK) {
        free_reporter(r);
        return rc;
    }
    if (pthread_create(&r->thread, NULL, run, r) != 0) {
        free_reporter(r);
        return dfs_seterr(errmsg, DFS_ENOMEM, "reporter: cannot start a thread");
    }
    *out = r;
    return DFS_OK;
}

void dfs_reporter_stats(dfs_reporter *r, struct dfs_reporter_stats *out)
{
    out->own_sent = atomic_load(&r->own_sent);
    out->peer_sent = atomic_load(&r->peer_sent);
    out->skipped = atomic_load(&r->skipped);
    out->dropped = atomic_load(&r->dropped);
    out->failures = atomic_load(&r->failures);
    pthread_mutex_lock(&r->mu);
    out->pending = r->nown + r->npeer;
    pthread_mutex_unlock(&r->mu);
}

void dfs_reporter_stop(dfs_reporter *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    free_reporter(r);
}
