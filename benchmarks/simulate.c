/* Data loss at scale (simulate.h): the layout, failure trials, and the closed forms. */
#include "benchmarks/simulate.h"

#include "common/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Layout, after dfs_sim_create (all arrays owned by the simulation):
 *   unit_nodes[u*w .. u*w+w)   the nodes of unit u, ascending
 *   unit_set[u]                its distinct set, 0..nsets-1
 *   set_nodes[x*w .. x*w+w)    the nodes of set x, ascending
 *   set_units_first[x], set_units_count[x]
 *                              by_set[first .. first+count) are the units on set x
 *   node_first[i] .. node_first[i+1]
 *                              node_sets[...] are the sets holding node i (CSR index)
 * Scratch for trials: the failed-node bitmap (all zero between calls), a per-set and a per-file
 * stamp (a set or file is counted once per trial: its stamp equals the trial's), the permutation
 * from which failed nodes are drawn.
 */
struct dfs_sim {
    struct dfs_sim_config cfg;
    dfs_placement *pl;
    uint32_t *unit_nodes;
    uint32_t *unit_set;
    uint64_t *by_set;
    uint32_t *set_nodes;
    uint64_t *set_units_first;
    uint64_t *set_units_count;
    uint64_t nsets;
    uint64_t *node_first;
    uint32_t *node_sets;
    uint64_t *bitmap;
    uint32_t *set_stamp;
    uint32_t *file_stamp;
    uint32_t stamp;
    uint32_t *perm;
};

static void *xcalloc(size_t n, size_t size)
{
    return calloc(n == 0 ? 1 : n, size);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Order unit indices by their node tuples (qsort_r context: the simulation). */
static int cmp_units(const void *a, const void *b, void *arg)
{
    const struct dfs_sim *sim = arg;
    uint32_t w = sim->cfg.width;
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    int c = 0;
    for (uint32_t j = 0; j < w && c == 0; j++) {
        uint32_t p = sim->unit_nodes[x * w + j], q = sim->unit_nodes[y * w + j];
        c = (p > q) - (p < q);
    }
    return c != 0 ? c : (x > y) - (x < y);
}

static int check_config(const struct dfs_sim_config *c, char **errmsg)
{
    if (c->policy != DFS_POLICY_RANDOM && c->policy != DFS_POLICY_MIN_COPY &&
        c->policy != DFS_POLICY_BUDDY && c->policy != DFS_POLICY_LEAST_USED)
        return dfs_seterr(errmsg, DFS_EINVAL, "simulate: unknown placement policy %d",
                          (int)c->policy);
    if (c->width < 1 || c->width > DFS_PLACEMENT_WIDTH_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "simulate: width must be 1..%d, not %u",
                          DFS_PLACEMENT_WIDTH_MAX, c->width);
    if (c->nodes < c->width)
        return dfs_seterr(errmsg, DFS_EINVAL, "simulate: %u nodes cannot hold sets of %u", c->nodes,
                          c->width);
    if (c->threshold < 1 || c->threshold > c->width)
        return dfs_seterr(errmsg, DFS_EINVAL, "simulate: loss threshold must be 1..%u, not %u",
                          c->width, c->threshold);
    if (c->units_per_file < 1 || c->units < 1 || c->units % c->units_per_file != 0)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "simulate: units (%llu) must be a positive multiple of the units per "
                          "file (%u)",
                          (unsigned long long)c->units, c->units_per_file);
    if (c->units > (uint64_t)SIZE_MAX / c->width / sizeof(uint32_t) / 4)
        return dfs_seterr(errmsg, DFS_EINVAL, "simulate: %llu units do not fit in memory",
                          (unsigned long long)c->units);
    return DFS_OK;
}

/* Place every unit with dfs_placement_choose; fills unit_nodes (each tuple sorted). */
static int place_all(struct dfs_sim *sim, char **errmsg)
{
    const struct dfs_sim_config *c = &sim->cfg;
    uint32_t n = c->nodes, w = c->width;
    int rc = DFS_OK;
    struct dfs_placement_node *nodes = xcalloc(n, sizeof *nodes);
    char *names = xcalloc(n, 16);
    size_t *out = xcalloc(w, sizeof *out);
    if (nodes == NULL || names == NULL || out == NULL) {
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "simulate: out of memory");
        goto done;
    }
    for (uint32_t i = 0; i < n; i++) {
        snprintf(names + (size_t)i * 16, 16, "node-%u", i);
        nodes[i].id = names + (size_t)i * 16;
        nodes[i].zone = NULL;
        nodes[i].free_bytes = UINT64_MAX / 2;
        nodes[i].writable = true;
        nodes[i].gone = false;
    }
    dfs_rng rng;
    dfs_rng_seed(&rng, c->seed);
    struct dfs_placement_config pc = {.scatter_width = c->scatter_width,
                                      .group_size = c->group_size};
    rc = dfs_placement_create(&pc, &sim->pl, errmsg);
    if (rc != DFS_OK)
        goto done;
    bool changed = false;
    rc = dfs_placement_sync(sim->pl, c->policy, w, nodes, n, &rng, &changed, errmsg);
    if (rc != DFS_OK)
        goto done;
    struct dfs_placement_request req = {.policy = c->policy, .k = w, .width = w};
    for (uint64_t u = 0; u < c->units; u++) {
        rc = dfs_placement_choose(sim->pl, &req, nodes, n, &rng, out, NULL, errmsg);
        if (rc != DFS_OK)
            goto done;
        uint32_t *t = sim->unit_nodes + u * w;
        for (uint32_t j = 0; j < w; j++) {
            t[j] = (uint32_t)out[j];
            if (c->policy == DFS_POLICY_LEAST_USED)
                nodes[out[j]].free_bytes--;
        }
        qsort(t, w, sizeof *t, cmp_u32);
    }
done:
    free(out);
    free(names);
    free(nodes);
    return rc;
}

/* Merge identical node sets and build the indexes (see struct dfs_sim). */
static int index_sets(struct dfs_sim *sim, char **errmsg)
{
    uint64_t units = sim->cfg.units;
    uint32_t w = sim->cfg.width, n = sim->cfg.nodes;
    for (uint64_t u = 0; u < units; u++)
        sim->by_set[u] = u;
    qsort_r(sim->by_set, units, sizeof *sim->by_set, cmp_units, sim);
    uint64_t nsets = 0;
    for (uint64_t i = 0; i < units; i++) {
        uint64_t u = sim->by_set[i];
        if (i == 0 || memcmp(sim->unit_nodes + u * w, sim->unit_nodes + sim->by_set[i - 1] * w,
                             w * sizeof(uint32_t)) != 0)
            nsets++;
        sim->unit_set[u] = (uint32_t)(nsets - 1);
    }
    sim->nsets = nsets;
    sim->set_nodes = xcalloc(nsets * w, sizeof *sim->set_nodes);
    sim->set_units_first = xcalloc(nsets, sizeof *sim->set_units_first);
    sim->set_units_count = xcalloc(nsets, sizeof *sim->set_units_count);
    sim->set_stamp = xcalloc(nsets, sizeof *sim->set_stamp);
    sim->node_first = xcalloc((size_t)n + 1, sizeof *sim->node_first);
    if (sim->set_nodes == NULL || sim->set_units_first == NULL || sim->set_units_count == NULL ||
        sim->set_stamp == NULL || sim->node_first == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "simulate: out of memory");
    for (uint64_t i = 0; i < units; i++) {
        uint64_t u = sim->by_set[i];
        uint32_t x = sim->unit_set[u];
        if (sim->set_units_count[x]++ == 0) {
            sim->set_units_first[x] = i;
            memcpy(sim->set_nodes + (uint64_t)x * w, sim->unit_nodes + u * w, w * sizeof(uint32_t));
            for (uint32_t j = 0; j < w; j++)
                sim->node_first[sim->unit_nodes[u * w + j] + 1]++;
        }
    }
    for (uint32_t i = 0; i < n; i++)
        sim->node_first[i + 1] += sim->node_first[i];
    sim->node_sets = xcalloc(sim->node_first[n], sizeof *sim->node_sets);
    uint64_t *fill = xcalloc(n, sizeof *fill);
    if (sim->node_sets == NULL || fill == NULL) {
        free(fill);
        return dfs_seterr(errmsg, DFS_ENOMEM, "simulate: out of memory");
    }
    for (uint64_t x = 0; x < nsets; x++) {
        for (uint32_t j = 0; j < w; j++) {
            uint32_t v = sim->set_nodes[x * w + j];
            sim->node_sets[sim->node_first[v] + fill[v]++] = (uint32_t)x;
        }
    }
    free(fill);
    return DFS_OK;
}

int dfs_sim_create(const struct dfs_sim_config *cfg, dfs_sim **out, char **errmsg)
{
    if (cfg == NULL || out == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "simulate: NULL argument");
    int rc = check_config(cfg, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_sim *sim = calloc(1, sizeof *sim);
    if (sim == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "simulate: out of memory");
    sim->cfg = *cfg;
    uint64_t units = cfg->units, files = units / cfg->units_per_file;
    sim->unit_nodes = xcalloc(units * cfg->width, sizeof *sim->unit_nodes);
    sim->unit_set = xcalloc(units, sizeof *sim->unit_set);
    sim->by_set = xcalloc(units, sizeof *sim->by_set);
    sim->file_stamp = xcalloc(files, sizeof *sim->file_stamp);
    sim->bitmap = xcalloc(cfg->nodes / 64 + 1, sizeof *sim->bitmap);
    sim->perm = xcalloc(cfg->nodes, sizeof *sim->perm);
    if (sim->unit_nodes == NULL || sim->unit_set == NULL || sim->by_set == NULL ||
        sim->file_stamp == NULL || sim->bitmap == NULL || sim->perm == NULL) {
        dfs_sim_destroy(sim);
        return dfs_seterr(errmsg, DFS_ENOMEM, "simulate: out of memory for %llu units",
                          (unsigned long long)units);
    }
    for (uint32_t i = 0; i < cfg->nodes; i++)
        sim->perm[i] = i;
    rc = place_all(sim, errmsg);
    if (rc == DFS_OK)
        rc = index_sets(sim, errmsg);
    if (rc != DFS_OK) {
        dfs_sim_destroy(sim);
        return rc;
    }
    *out = sim;
    return DFS_OK;
}

void dfs_sim_destroy(dfs_sim *sim)
{
    if (sim == NULL)
        return;
    dfs_placement_destroy(sim->pl);
    free(sim->unit_nodes);
    free(sim->unit_set);
    free(sim->by_set);
    free(sim->set_nodes);
    free(sim->set_units_first);
    free(sim->set_units_count);
    free(sim->node_first);
    free(sim->node_sets);
    free(sim->bitmap);
    free(sim->set_stamp);
    free(sim->file_stamp);
    free(sim->perm);
    free(sim);
}

void dfs_sim_info(const dfs_sim *sim, struct dfs_sim_info *out)
{
    memset(out, 0, sizeof *out);
    out->units = sim->cfg.units;
    out->files = sim->cfg.units / sim->cfg.units_per_file;
    out->distinct_sets = sim->nsets;
    out->disjoint = true;
    for (uint32_t i = 0; i < sim->cfg.nodes; i++) {
        uint64_t d = sim->node_first[i + 1] - sim->node_first[i];
        if (d > out->max_degree)
            out->max_degree = d;
        if (d > 1)
            out->disjoint = false;
    }
}

const uint32_t *dfs_sim_unit_nodes(const dfs_sim *sim, uint64_t u)
{
    return sim->unit_nodes + u * sim->cfg.width;
}

static bool is_failed(const struct dfs_sim *sim, uint32_t v)
{
    return (sim->bitmap[v / 64] >> (v % 64)) & 1u;
}

/* Count with the failed nodes marked in the bitmap (listed in failed[0..nfailed)). */
static void count_marked(struct dfs_sim *sim, const uint32_t *failed, size_t nfailed,
                         uint64_t *units_lost, uint64_t *files_lost)
{
    uint32_t w = sim->cfg.width, t = sim->cfg.threshold, per_file = sim->cfg.units_per_file;
    uint64_t ul = 0, fl = 0;
    if (++sim->stamp == 0) { /* wrapped: no stale stamp may equal a new one */
        memset(sim->set_stamp, 0, sim->nsets * sizeof *sim->set_stamp);
        memset(sim->file_stamp, 0, (sim->cfg.units / per_file) * sizeof *sim->file_stamp);
        sim->stamp = 1;
    }
    uint32_t stamp = sim->stamp;
    for (size_t i = 0; i < nfailed; i++) {
        uint32_t v = failed[i];
        for (uint64_t e = sim->node_first[v]; e < sim->node_first[v + 1]; e++) {
            uint32_t x = sim->node_sets[e];
            if (sim->set_stamp[x] == stamp)
                continue;
            sim->set_stamp[x] = stamp;
            uint32_t down = 0;
            for (uint32_t j = 0; j < w; j++)
                down += is_failed(sim, sim->set_nodes[(uint64_t)x * w + j]);
            if (down < t)
                continue;
            ul += sim->set_units_count[x];
            uint64_t first = sim->set_units_first[x];
            for (uint64_t q = 0; q < sim->set_units_count[x]; q++) {
                uint64_t f = sim->by_set[first + q] / per_file;
                if (sim->file_stamp[f] != stamp) {
                    sim->file_stamp[f] = stamp;
                    fl++;
                }
            }
        }
    }
    *units_lost = ul;
    *files_lost = fl;
}

int dfs_sim_count(dfs_sim *sim, const uint32_t *failed, size_t nfailed, uint64_t *units_lost,
                  uint64_t *files_lost, char **errmsg)
{
    int rc = DFS_OK;
    size_t marked = 0;
    for (; marked < nfailed; marked++) {
        uint32_t v = failed[marked];
        if (v >= sim->cfg.nodes || is_failed(sim, v)) {
            rc = dfs_seterr(errmsg, DFS_EINVAL, "simulate: failed node %u is %s", v,
                            v >= sim->cfg.nodes ? "out of range" : "listed twice");
            break;
        }
        sim->bitmap[v / 64] |= UINT64_C(1) << (v % 64);
    }
    if (rc == DFS_OK)
        count_marked(sim, failed, nfailed, units_lost, files_lost);
    for (size_t i = 0; i < marked; i++)
        sim->bitmap[failed[i] / 64] &= ~(UINT64_C(1) << (failed[i] % 64));
    return rc;
}

int dfs_sim_trials(dfs_sim *sim, uint32_t failed, uint64_t trials, dfs_rng *rng,
                   struct dfs_sim_tally *tally, char **errmsg)
{
    uint32_t n = sim->cfg.nodes;
    if (failed > n)
        return dfs_seterr(errmsg, DFS_EINVAL, "simulate: cannot fail %u of %u nodes", failed, n);
    double units = (double)sim->cfg.units;
    double files = (double)(sim->cfg.units / sim->cfg.units_per_file);
    for (uint64_t tr = 0; tr < trials; tr++) {
        /* A uniform s-subset: the first s places of a partial Fisher-Yates shuffle (uniform
           whatever order perm is left in by earlier trials). */
        for (uint32_t i = 0; i < failed; i++) {
            uint32_t j = i + (uint32_t)dfs_rng_below(rng, (uint64_t)(n - i));
            uint32_t tmp = sim->perm[i];
            sim->perm[i] = sim->perm[j];
            sim->perm[j] = tmp;
            sim->bitmap[sim->perm[i] / 64] |= UINT64_C(1) << (sim->perm[i] % 64);
        }
        uint64_t ul = 0, fl = 0;
        count_marked(sim, sim->perm, failed, &ul, &fl);
        for (uint32_t i = 0; i < failed; i++)
            sim->bitmap[sim->perm[i] / 64] &= ~(UINT64_C(1) << (sim->perm[i] % 64));
        double uf = (double)ul / units, ff = (double)fl / files;
        tally->trials++;
        tally->trials_with_loss += ul > 0;
        tally->unit_frac_sum += uf;
        tally->unit_frac_sq += uf * uf;
        tally->file_frac_sum += ff;
        tally->file_frac_sq += ff * ff;
        if (ul > tally->max_units_lost)
            tally->max_units_lost = ul;
    }
    return DFS_OK;
}

int dfs_sim_blocks(const dfs_sim *sim, uint32_t **sizes, size_t *n, char **errmsg)
{
    enum dfs_policy policy = sim->cfg.policy;
    if (!dfs_placement_policy_has_sets(policy))
        return dfs_seterr(errmsg, DFS_EPRECOND, "simulate: %s keeps no copysets or groups",
                          dfs_placement_policy_name(policy));
    struct dfs_placement_state *st = NULL;
    int rc = dfs_placement_export(sim->pl, policy, sim->cfg.width, &st, errmsg);
    if (rc != DFS_OK)
        return rc;
    uint32_t *out = xcalloc(st->nsets, sizeof *out);
    uint8_t *seen = xcalloc(sim->cfg.nodes, 1);
    if (out == NULL || seen == NULL) {
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "simulate: out of memory");
        goto done;
    }
    for (size_t i = 0; i < st->nsets && rc == DFS_OK; i++) {
        out[i] = (uint32_t)st->sets[i].nnodes;
        for (size_t j = 0; j < st->sets[i].nnodes; j++) {
            unsigned v = 0;
            if (sscanf(st->sets[i].node_ids[j], "node-%u", &v) != 1 || v >= sim->cfg.nodes) {
                rc = dfs_seterr(errmsg, DFS_EINTERNAL, "simulate: unexpected node id %s",
                                st->sets[i].node_ids[j]);
                break;
            }
            if (seen[v]++) {
                rc = dfs_seterr(errmsg, DFS_EPRECOND,
                                "simulate: the %s sets overlap (node %u is in two)",
                                dfs_placement_policy_name(policy), v);
                break;
            }
        }
    }
    if (rc == DFS_OK) {
        *sizes = out;
        *n = st->nsets;
        out = NULL;
    }
done:
    free(seen);
    free(out);
    dfs_placement_states_free(st, 1);
    return rc;
}

/* ---- Closed forms ---------------------------------------------------------------------------- */

static double lchoose(double n, double k)
{
    return lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1);
}

/* Hypergeometric P(j of the g nodes of a block fail | r failures among m nodes). */
static double hyper(uint32_t g, uint32_t m, uint32_t r, uint32_t j)
{
    if (j > g || j > r || r - j > m - g)
        return 0.0;
    return exp(lchoose(g, j) + lchoose(m - g, r - j) - lchoose(m, r));
}

double dfs_sim_set_loss(uint32_t n, uint32_t w, uint32_t t, uint32_t s)
{
    if (w > n || t == 0 || t > w || s > n)
        return NAN;
    double p = 0.0;
    for (uint32_t j = t; j <= w && j <= s; j++)
        p += hyper(w, n, s, j);
    return p > 1.0 ? 1.0 : p;
}

double dfs_sim_any_of(double p, double count)
{
    if (p >= 1.0)
        return count > 0 ? 1.0 : 0.0;
    return -expm1(count * log1p(-p));
}

int dfs_sim_no_loss_blocks(uint32_t n, const uint32_t *sizes, size_t nblocks, uint32_t t,
                           uint32_t s, double *out, char **errmsg)
{
    uint64_t total = 0;
    for (size_t b = 0; b < nblocks; b++)
        total += sizes[b];
    if (total > n || s > n || t == 0)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "simulate: blocks of %llu nodes, %u failed, threshold %u among %u nodes",
                          (unsigned long long)total, s, t, n);
    /* prob[r]: probability that the blocks so far lost none and r failures remain to be placed
       among the m nodes not yet visited. */
    double *prob = calloc((size_t)s + 1, sizeof *prob), *next = calloc((size_t)s + 1, sizeof *next);
    if (prob == NULL || next == NULL) {
        free(prob);
        free(next);
        return dfs_seterr(errmsg, DFS_ENOMEM, "simulate: out of memory");
    }
    prob[s] = 1.0;
    uint32_t m = n;
    for (size_t b = 0; b < nblocks; b++) {
        uint32_t g = sizes[b];
        memset(next, 0, ((size_t)s + 1) * sizeof *next);
        for (uint32_t r = 0; r <= s; r++) {
            if (prob[r] == 0.0)
                continue;
            for (uint32_t j = 0; j < t && j <= g && j <= r; j++)
                next[r - j] += prob[r] * hyper(g, m, r, j);
        }
        double *tmp = prob;
        prob = next;
        next = tmp;
        m -= g;
    }
    double sum = 0.0;
    for (uint32_t r = 0; r <= s && r <= m; r++)
        sum += prob[r];
    free(prob);
    free(next);
    *out = sum > 1.0 ? 1.0 : sum;
    return DFS_OK;
}
