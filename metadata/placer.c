/* The placer: placement over the catalog's nodes, with reservations and saved placement sets. */
#include "metadata/placer.h"

#include "common/err.h"
#include "common/log.h"
#include "common/rng.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static_assert(DFS_REPLICAS_MAX <= DFS_PLACER_WIDTH_MAX, "a replica count is a width");
static_assert(DFS_POLICY_BUDDY == DFS_POLICY_MIN_COPY + 1, "the policies with sets are adjacent");

/*
 * Bytes the service planned onto a node since the node's last report (least_used's view of free
 * space is the reported free bytes less these). Counted from the report stamped report_ms (the
 * node's last_heartbeat_ms); a newer report brings new figures and starts the count again.
 */
struct reservation {
    char node_id[DFS_ID_HEX + 1];
    int64_t report_ms;
    uint64_t bytes;
};

/*
 * Everything below `mu` is guarded by it: the copysets and buddy groups (loaded from the catalog,
 * synced with the node list on every choice, saved back when they change), the randomness, and
 * the reservations.
 */
struct dfs_placer {
    dfs_catalog *cat; /* borrowed */
    uint64_t seed;
    pthread_mutex_t mu;
    dfs_placement *placement;
    dfs_rng rng;
    struct dfs_placement_config pcfg; /* what a reload creates the placement with */
    struct reservation *reserved;     /* sorted by node_id */
    size_t nreserved;
    /* [policy - DFS_POLICY_MIN_COPY][width]: changed in memory, not saved yet (a failed save) */
    bool unsaved[2][DFS_PLACER_WIDTH_MAX + 1];
};

static int cmp_reservation(const void *key, const void *elem)
{
    return strcmp(key, ((const struct reservation *)elem)->node_id);
}

/* The reservation of a node (NULL when none); a newer report than its count resets it. */
static struct reservation *reservation_of(dfs_placer *p, const struct dfs_node_rec *n)
{
    if (p->nreserved == 0) /* bsearch wants a non-NULL array */
        return NULL;
    struct reservation *r = bsearch(n->id, p->reserved, p->nreserved, sizeof *r, cmp_reservation);
    if (r != NULL && n->last_heartbeat_ms > r->report_ms) {
        r->report_ms = n->last_heartbeat_ms;
        r->bytes = 0;
    }
    return r;
}

/* Count `bytes` more planned onto node n. Out of memory only loses the count (it is a hint). */
static void reserve_bytes(dfs_placer *p, const struct dfs_node_rec *n, uint64_t bytes)
{
    struct reservation *r = reservation_of(p, n);
    if (r == NULL) {
        struct reservation *v = realloc(p->reserved, (p->nreserved + 1) * sizeof *v);
        if (v == NULL)
            return;
        p->reserved = v;
        size_t at = 0;
        while (at < p->nreserved && strcmp(v[at].node_id, n->id) < 0)
            at++;
        memmove(&v[at + 1], &v[at], (p->nreserved - at) * sizeof *v);
        p->nreserved++;
        r = &v[at];
        snprintf(r->node_id, sizeof r->node_id, "%s", n->id);
        r->report_ms = n->last_heartbeat_ms;
        r->bytes = 0;
    }
    r->bytes = r->bytes > UINT64_MAX - bytes ? UINT64_MAX : r->bytes + bytes;
}

/* Save family (policy, width) to the catalog; on failure it stays marked unsaved and is retried. */
static void save_family(dfs_placer *p, enum dfs_policy policy, size_t width, int64_t now_ms)
{
    struct dfs_placement_state *st = NULL;
    char *err = NULL;
    int rc = dfs_placement_export(p->placement, policy, width, &st, &err);
    if (rc == DFS_OK)
        rc = dfs_catalog_placement_save(p->cat, st, now_ms, &err);
    bool *unsaved = &p->unsaved[policy - DFS_POLICY_MIN_COPY][width];
    if (rc == DFS_OK) {
        size_t members = 0;
        for (size_t i = 0; i < st->nsets; i++)
            members += st->sets[i].nnodes;
        dfs_log(DFS_LOG_INFO,
                "placement sets saved policy=%s width=%zu sets=%zu slots=%zu param=%" PRIu32
                " perms=%" PRIu32,
                dfs_placement_policy_name(policy), width, st->nsets, members, st->param,
                st->nperms);
        *unsaved = false;
    } else {
        dfs_log(DFS_LOG_WARN,
                "cannot save placement sets, will retry policy=%s width=%zu err=\"%s\"",
                dfs_placement_policy_name(policy), width, err != NULL ? err : dfs_strerror(rc));
        *unsaved = true;
    }
    dfs_placement_states_free(st, 1);
    free(err);
}

int dfs_placer_choose(dfs_placer *p, const struct dfs_placement_request *req, uint64_t bytes,
                      const struct dfs_node_rec *nodes, size_t nnodes, int64_t now_ms,
                      const char **out, bool *fell_back, char **errmsg)
{
    size_t width = req->width != 0 ? req->width : req->k;
    if (width > DFS_PLACER_WIDTH_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "placement of %zu nodes is above %d", width,
                          DFS_PLACER_WIDTH_MAX);
    struct dfs_placement_node *cand = calloc(nnodes + 1, sizeof *cand);
    size_t *idx = calloc(req->k + 1, sizeof *idx);
    if (cand == NULL || idx == NULL) {
        free(cand);
        free(idx);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < nnodes; i++) {
        const struct dfs_node_rec *n = &nodes[i];
        const struct reservation *r = reservation_of(p, n);
        uint64_t held = r != NULL ? r->bytes : 0;
        cand[i].id = n->id;
        cand[i].zone = n->zone;
        cand[i].free_bytes = n->usage.free_bytes > held ? n->usage.free_bytes - held : 0;
        cand[i].writable = n->state == DFS_NODE_ALIVE;
        cand[i].gone = n->state == DFS_NODE_DEAD || n->state == DFS_NODE_DRAINING ||
                       n->state == DFS_NODE_DECOMMISSIONED;
    }
    bool changed = false;
    int rc = dfs_placement_sync(p->placement, req->policy, width, cand, nnodes, &p->rng, &changed,
                                errmsg);
    if (rc == DFS_OK && dfs_placement_policy_has_sets(req->policy) &&
        (changed || p->unsaved[req->policy - DFS_POLICY_MIN_COPY][width]))
        save_family(p, req->policy, width, now_ms);
    struct dfs_placement_outcome oc = {0};
    if (rc == DFS_OK)
        rc = dfs_placement_choose(p->placement, req, cand, nnodes, &p->rng, idx, &oc, errmsg);
    if (rc == DFS_OK) {
        for (size_t i = 0; i < req->k; i++) {
            out[i] = nodes[idx[i]].id;
            reserve_bytes(p, &nodes[idx[i]], bytes);
        }
        if (fell_back != NULL)
            *fell_back = oc.fallback;
    }
    pthread_mutex_unlock(&p->mu);
    free(cand);
    free(idx);
    return rc;
}

uint64_t dfs_placer_reserved(dfs_placer *p, const struct dfs_node_rec *n)
{
    pthread_mutex_lock(&p->mu);
    const struct reservation *r = reservation_of(p, n);
    uint64_t held = r != NULL ? r->bytes : 0;
    pthread_mutex_unlock(&p->mu);
    return held;
}

/* Load the copysets and buddy groups the catalog keeps (at start). Failures are logged only. */
static void load_placement(dfs_placer *p, dfs_placement *placement)
{
    struct dfs_placement_state *v = NULL;
    size_t n = 0;
    char *err = NULL;
    if (dfs_catalog_placement_load(p->cat, &v, &n, &err) != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "cannot load placement sets, they will be built again err=\"%s\"",
                err);
        free(err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct dfs_placement_state *st = &v[i];
        if (dfs_placement_import(placement, st, &err) != DFS_OK) {
            dfs_log(DFS_LOG_WARN,
                    "cannot use saved placement sets, they will be built again policy=%s "
                    "width=%" PRIu32 " err=\"%s\"",
                    dfs_placement_policy_name(st->policy), st->width, err);
            free(err);
            err = NULL;
            continue;
        }
        dfs_log(DFS_LOG_INFO, "placement sets loaded policy=%s width=%" PRIu32 " sets=%zu",
                dfs_placement_policy_name(st->policy), st->width, st->nsets);
    }
    dfs_placement_states_free(v, n);
}

int dfs_placer_create(dfs_catalog *cat, const struct dfs_placer_config *cfg, dfs_placer **out,
                      char **errmsg)
{
    dfs_placer *p = calloc(1, sizeof *p);
    if (p == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    p->cat = cat;
    struct dfs_placement_config pcfg = {.scatter_width = cfg->scatter_width,
                                        .group_size = cfg->group_size};
    int rc = dfs_placement_create(&pcfg, &p->placement, errmsg);
    if (rc != DFS_OK) {
        free(p);
        return rc;
    }
    if (cfg->seed != 0) {
        p->seed = cfg->seed;
        dfs_rng_seed(&p->rng, cfg->seed);
    } else {
        p->seed = dfs_rng_seed_random(&p->rng);
    }
    p->pcfg = pcfg;
    load_placement(p, p->placement);
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return DFS_OK;
}

int dfs_placer_reload(dfs_placer *p, char **errmsg)
{
    dfs_placement *fresh = NULL;
    int rc = dfs_placement_create(&p->pcfg, &fresh, errmsg);
    if (rc != DFS_OK)
        return rc;
    /* Loaded outside the lock (a catalog read); swapped in under it. */
    load_placement(p, fresh);
    pthread_mutex_lock(&p->mu);
    dfs_placement *old = p->placement;
    p->placement = fresh;
    free(p->reserved);
    p->reserved = NULL;
    p->nreserved = 0;
    memset(p->unsaved, 0, sizeof p->unsaved);
    pthread_mutex_unlock(&p->mu);
    dfs_placement_destroy(old);
    return DFS_OK;
}

uint64_t dfs_placer_seed(const dfs_placer *p)
{
    return p->seed;
}

void dfs_placer_destroy(dfs_placer *p)
{
    if (p == NULL)
        return;
    dfs_placement_destroy(p->placement);
    free(p->reserved);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
