/* Repair planning: target choice, sources and mode, deadline, backoff, claiming (repairplan.h). */
#include "metadata/repairplan.h"

#include "common/err.h"
#include "common/log.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * A call's deadline is generous for the bytes it moves (at least REPAIR_MIN_RATE), and a failed
 * repair waits REPAIR_BACKOFF_MS doubled per attempt up to REPAIR_BACKOFF_MAX_MS.
 */
#define REPAIR_TIMEOUT_MIN_MS 60000
#define REPAIR_MIN_RATE       (1u << 20)
#define REPAIR_BACKOFF_MS     1000
#define REPAIR_BACKOFF_MAX_MS 300000
/* Rows a claim looks at before it gives up for this round. */
#define CLAIM_ROWS            8

struct dfs_repairplan {
    dfs_catalog *cat;   /* borrowed */
    dfs_placer *placer; /* borrowed */
    /* Serialises claiming (pick a row, choose its target, mark it running). */
    pthread_mutex_t claim_mu;
};

int64_t dfs_repairplan_backoff_ms(uint32_t attempts)
{
    int64_t ms = REPAIR_BACKOFF_MS;
    for (uint32_t i = 1; i < attempts && ms < REPAIR_BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms < REPAIR_BACKOFF_MAX_MS ? ms : REPAIR_BACKOFF_MAX_MS;
}

int64_t dfs_repairplan_deadline_ms(uint64_t read_bytes)
{
    int64_t timeout = (int64_t)(read_bytes / REPAIR_MIN_RATE) * 1000;
    if (timeout < REPAIR_TIMEOUT_MIN_MS)
        timeout = REPAIR_TIMEOUT_MIN_MS;
    return timeout;
}

/* Order of sources: alive copies first, then draining, then suspect ones. */
int dfs_repairplan_source_rank(enum dfs_node_state s)
{
    return s == DFS_NODE_ALIVE ? 0 : s == DFS_NODE_DRAINING ? 1 : s == DFS_NODE_SUSPECT ? 2 : -1;
}

void dfs_repairplan_nodes_clear(struct dfs_repairplan_nodes *l)
{
    free(l->placed);
    free(l->exclude);
    memset(l, 0, sizeof *l);
}

int dfs_repairplan_nodes(const struct dfs_file_rec *f, uint32_t index, char (*held)[DFS_ID_HEX + 1],
                         size_t nheld, struct dfs_repairplan_nodes *l)
{
    memset(l, 0, sizeof *l);
    bool erasure = f->redundancy.scheme == DFS_SCHEME_ERASURE;
    size_t cap = nheld + 1;
    for (size_t i = 0; i < f->nfragments; i++)
        cap += f->fragments[i].nreplicas;
    l->placed = calloc(cap, sizeof *l->placed);
    l->exclude = calloc(cap, sizeof *l->exclude);
    if (l->placed == NULL || l->exclude == NULL) {
        dfs_repairplan_nodes_clear(l);
        return DFS_ENOMEM;
    }
    for (size_t i = 0; i < f->nfragments; i++) {
        if (!erasure && i != index)
            continue;
        const struct dfs_fragment_rec *fr = &f->fragments[i];
        for (size_t r = 0; r < fr->nreplicas; r++) {
            const struct dfs_replica_rec *rep = &fr->replicas[r];
            bool live = dfs_catalog_state_live(rep->node_state);
            /* A placed node is never chosen; excluding it too would stop it being an anchor
               (placement.h), and the new copy would leave the survivors' copyset or group. */
            if (live && (!erasure || i != index))
                l->placed[l->nplaced++] = rep->node_id;
            else
                l->exclude[l->nexclude++] = rep->node_id;
        }
    }
    for (size_t i = 0; i < nheld; i++)
        l->exclude[l->nexclude++] = held[i];
    return DFS_OK;
}

int dfs_repairplan_target(dfs_placer *placer, const struct dfs_repair_task *t,
                          const struct dfs_node_rec *nodes, size_t nnodes, int64_t now_ms,
                          const struct dfs_node_rec **out, char **errmsg)
{
    const struct dfs_file_rec *f = t->file;
    struct dfs_repairplan_nodes l;
    if (dfs_repairplan_nodes(f, t->index, t->held, t->nheld, &l) != DFS_OK)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    const char *chosen = NULL;
    int rc = DFS_OK;
    /* A rebalance move carries the target the rebalancer checked; keep it while it is usable. */
    if (t->row.reason == DFS_REPAIR_REBALANCE && t->row.target_node[0] != '\0') {
        bool usable = false;
        for (size_t i = 0; i < nnodes; i++)
            if (strcmp(nodes[i].id, t->row.target_node) == 0)
                usable = nodes[i].state == DFS_NODE_ALIVE;
        for (size_t i = 0; usable && i < l.nexclude; i++)
            usable = strcmp(l.exclude[i], t->row.target_node) != 0;
        chosen = usable ? t->row.target_node : NULL;
        if (chosen == NULL)
            rc = dfs_seterr(errmsg, DFS_EPRECOND, "the rebalance target %s is no longer usable",
                            t->row.target_node);
    } else {
        bool erasure = f->redundancy.scheme == DFS_SCHEME_ERASURE;
        struct dfs_placement_request req = {
            .policy = f->policy,
            .k = 1,
            .width = erasure ? f->nfragments : f->redundancy.replicas,
            .placed = l.placed,
            .nplaced = l.nplaced,
            .exclude = l.exclude,
            .nexclude = l.nexclude,
            .fallback = true,
        };
        bool fell_back = false;
        rc = dfs_placer_choose(placer, &req, f->fragments[t->index].size, nodes, nnodes, now_ms,
                               &chosen, &fell_back, errmsg);
        if (rc == DFS_OK && fell_back)
            dfs_log(DFS_LOG_WARN,
                    "repair target outside the %s of the surviving copies fragment=%s target=%s",
                    f->policy == DFS_POLICY_MIN_COPY ? "copyset" : "buddy group",
                    t->row.fragment_id, chosen);
    }
    for (size_t i = 0; rc == DFS_OK && i < nnodes; i++)
        if (strcmp(nodes[i].id, chosen) == 0)
            *out = &nodes[i];
    dfs_repairplan_nodes_clear(&l);
    return rc;
}

int dfs_repairplan_create(dfs_catalog *cat, dfs_placer *placer, dfs_repairplan **out, char **errmsg)
{
    dfs_repairplan *rp = calloc(1, sizeof *rp);
    if (rp == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    rp->cat = cat;
    rp->placer = placer;
    pthread_mutex_init(&rp->claim_mu, NULL);
    *out = rp;
    return DFS_OK;
}

void dfs_repairplan_destroy(dfs_repairplan *rp)
{
    if (rp == NULL)
        return;
    pthread_mutex_destroy(&rp->claim_mu);
    free(rp);
}

void dfs_repairplan_claim_clear(struct dfs_repair_claim *c)
{
    dfs_catalog_repair_task_clear(&c->task);
}

int dfs_repairplan_claim(dfs_repairplan *rp, int64_t now_ms, struct dfs_repair_claim *c,
                         bool *found, char **errmsg)
{
    *found = false;
    int rc = DFS_OK;
    pthread_mutex_lock(&rp->claim_mu);
    for (int attempt = 0; attempt < CLAIM_ROWS && !*found; attempt++) {
        memset(c, 0, sizeof *c);
        bool any = false;
        rc = dfs_catalog_repair_next(rp->cat, now_ms, &c->task, &any, errmsg);
        if (rc != DFS_OK || !any)
            break;
        struct dfs_node_rec *nodes = NULL;
        size_t nnodes = 0;
        const struct dfs_node_rec *target = NULL;
        char *why = NULL;
        rc = dfs_catalog_nodes_list(rp->cat, &nodes, &nnodes, errmsg);
        if (rc != DFS_OK) {
            dfs_catalog_repair_task_clear(&c->task);
            break;
        }
        int crc = dfs_repairplan_target(rp->placer, &c->task, nodes, nnodes, now_ms, &target, &why);
        if (crc == DFS_OK) {
            snprintf(c->target, sizeof c->target, "%s", target->id);
            snprintf(c->address, sizeof c->address, "%s", target->address);
            crc =
                dfs_catalog_repair_start(rp->cat, c->task.row.fragment_id, c->target, now_ms, &why);
        }
        free(nodes);
        if (crc == DFS_OK) {
            *found = true;
        } else if (crc != DFS_EABORTED) {
            uint32_t attempts = 0;
            dfs_catalog_repair_fail(rp->cat, c->task.row.fragment_id, NULL,
                                    now_ms + dfs_repairplan_backoff_ms(c->task.row.attempts + 1),
                                    &attempts, NULL);
            dfs_log(attempts >= DFS_REPAIRPLAN_ATTEMPTS_LOUD ? DFS_LOG_ERROR : DFS_LOG_WARN,
                    "no repair target, will retry fragment=%s reason=%s attempts=%" PRIu32
                    " err=\"%s\"",
                    c->task.row.fragment_id, dfs_catalog_repair_reason_name(c->task.row.reason),
                    attempts, why != NULL ? why : dfs_strerror(crc));
        }
        free(why);
        if (!*found)
            dfs_catalog_repair_task_clear(&c->task);
    }
    pthread_mutex_unlock(&rp->claim_mu);
    return rc;
}

/* Append source (fragment, replica) to s->v (capacity reserved by the caller). */
static void add_source(struct dfs_repair_sources *s, size_t fragment, size_t replica)
{
    s->v[s->n].fragment = (uint32_t)fragment;
    s->v[s->n].replica = replica;
    s->n++;
}

void dfs_repairplan_sources_clear(struct dfs_repair_sources *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

int dfs_repairplan_sources(const struct dfs_repair_claim *c,
                           bool (*skip)(void *arg, const char *fragment_id, const char *node_id),
                           void *arg, struct dfs_repair_sources *out, char **errmsg)
{
    memset(out, 0, sizeof *out);
    const struct dfs_file_rec *f = c->task.file;
    const struct dfs_fragment_rec *fr = &f->fragments[c->task.index];
    out->read_bytes = fr->size;
    /* Copy when the fragment itself is readable somewhere (always for replication; a draining
       node's erasure fragment too: cheaper than reading K others), else rebuild it from the
       file's other fragments. An erasure copy that failed once is rebuilt instead (a draining
       node is never swept dead, so it may be down). */
    size_t nsrc = 0;
    for (size_t r = 0; r < fr->nreplicas; r++)
        nsrc += dfs_repairplan_source_rank(fr->replicas[r].node_state) >= 0;
    bool erasure = f->redundancy.scheme == DFS_SCHEME_ERASURE;
    if (!erasure || (nsrc > 0 && c->task.row.attempts == 0)) {
        out->v = calloc(nsrc + 1, sizeof *out->v);
        if (out->v == NULL)
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        for (int rank = 0; rank <= 2; rank++) {
            for (size_t r = 0; r < fr->nreplicas; r++) {
                /* A copy reported damaged is not read until its node has checked it. */
                if (dfs_repairplan_source_rank(fr->replicas[r].node_state) != rank ||
                    strcmp(fr->replicas[r].node_id, c->target) == 0 ||
                    (skip != NULL && skip(arg, fr->fragment_id, fr->replicas[r].node_id)))
                    continue;
                add_source(out, c->task.index, r);
            }
        }
        return DFS_OK;
    }
    out->rebuild = true;
    size_t cap = 0;
    for (size_t i = 0; i < f->nfragments; i++)
        cap += f->fragments[i].nreplicas;
    out->v = calloc(cap + 1, sizeof *out->v);
    if (out->v == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    for (int rank = 0; rank <= 2; rank++) {
        for (size_t i = 0; i < f->nfragments; i++) {
            const struct dfs_fragment_rec *o = &f->fragments[i];
            for (size_t r = 0; i != c->task.index && r < o->nreplicas; r++) {
                if (dfs_repairplan_source_rank(o->replicas[r].node_state) != rank ||
                    (skip != NULL && skip(arg, o->fragment_id, o->replicas[r].node_id)))
                    continue;
                add_source(out, i, r);
            }
        }
    }
    out->read_bytes = fr->size * (uint64_t)f->redundancy.data;
    return DFS_OK;
}

int dfs_repairplan_complete(dfs_repairplan *rp, const struct dfs_repair_claim *c, uint64_t size,
                            uint32_t checksum, int64_t now_ms, char **errmsg)
{
    const struct dfs_fragment_rec *fr = &c->task.file->fragments[c->task.index];
    if (size != fr->size || checksum != fr->checksum)
        return dfs_seterr(errmsg, DFS_EDATALOSS,
                          "node answered %" PRIu64 " bytes checksum %08" PRIx32
                          ", the catalog has %" PRIu64 " bytes checksum %08" PRIx32,
                          size, checksum, fr->size, fr->checksum);
    return dfs_catalog_repair_complete(rp->cat, c->task.row.fragment_id, c->target, size, checksum,
                                       now_ms, errmsg);
}

int dfs_repairplan_fail(dfs_repairplan *rp, const struct dfs_repair_claim *c, int64_t now_ms,
                        uint32_t *attempts, char **errmsg)
{
    return dfs_catalog_repair_fail(rp->cat, c->task.row.fragment_id, c->target,
                                   now_ms + dfs_repairplan_backoff_ms(c->task.row.attempts + 1),
                                   attempts, errmsg);
}

uint64_t dfs_repair_pass_signature(const struct dfs_node_rec *nodes, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        for (const char *p = nodes[i].id; *p != '\0'; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        h = (h ^ (uint8_t)nodes[i].state) * 1099511628211ull;
    }
    return h;
}

static void plan_add(struct dfs_plan_result *sum, const struct dfs_plan_result *r)
{
    sum->scanned += r->scanned;
    sum->queued += r->queued;
    sum->updated += r->updated;
    sum->dropped += r->dropped;
    sum->lost += r->lost;
    sum->trimmed += r->trimmed;
}

int dfs_repair_pass_step(struct dfs_repair_pass *p, dfs_catalog *cat, int64_t now, bool start,
                         bool unbounded, int64_t (*clock_ms)(void *arg), void (*on_work)(void *arg),
                         void *arg, bool *ended, char **errmsg)
{
    *ended = false;
    if (!p->active || start) {
        if (!p->active && !start && !unbounded && now - p->last_ms < p->interval_ms)
            return DFS_OK;
        p->active = true;
        p->cursor[0] = '\0';
        memset(&p->sum, 0, sizeof p->sum);
    }
    int64_t until = clock_ms(arg) + p->budget_ms;
    while (p->active) {
        struct dfs_plan_result r;
        int rc = dfs_catalog_repair_plan(cat, p->cursor, p->page, clock_ms(arg), &r, errmsg);
        if (rc != DFS_OK)
            return rc;
        plan_add(&p->sum, &r);
        memcpy(p->cursor, r.last, sizeof p->cursor);
        if ((r.queued > 0 || r.updated > 0) && on_work != NULL)
            on_work(arg);
        if (r.done) {
            p->active = false;
            p->last_ms = now;
            const struct dfs_plan_result *t = &p->sum;
            if (t->queued + t->dropped + t->trimmed > 0)
                dfs_log(DFS_LOG_INFO,
                        "repair plan pass fragments=%zu queued=%zu reprioritised=%zu dropped=%zu "
                        "lost=%zu surplus_dropped=%zu",
                        t->scanned, t->queued, t->updated, t->dropped, t->lost, t->trimmed);
            *ended = true;
            return DFS_OK;
        }
        if (!unbounded && clock_ms(arg) >= until)
            break;
    }
    return DFS_OK;
}
