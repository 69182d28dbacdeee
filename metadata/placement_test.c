/*
 * Tests of placement: each policy against its definition (placement.h), zones, join/leave
 * stability, export/import, errors, and a timed run at 10,000 nodes.
 *
 * Every test uses fixed seeds, so it is deterministic; the statistical bounds are nevertheless
 * chosen (and stated) so that a different seed would fail with negligible probability.
 */
#include "metadata/placement.h"

#include "common/err.h"
#include "common/rng.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <math.h>

#define MAXN 64

/* n writable candidates named n0, n1, ... (ids only need to be distinct strings here). */
struct cluster {
    char names[MAXN][24];
    char zones[MAXN][24];
    struct dfs_placement_node nodes[MAXN];
    size_t n;
};

static void cluster_init(struct cluster *c, size_t n)
{
    assert_true(n <= MAXN);
    memset(c, 0, sizeof *c);
    c->n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(c->names[i], sizeof c->names[i], "n%zu", i);
        c->nodes[i] = (struct dfs_placement_node){
            .id = c->names[i], .zone = "", .free_bytes = 1000, .writable = true};
    }
}

/* Node i in zone "z<i % nzones>". */
static void cluster_zones(struct cluster *c, size_t nzones)
{
    for (size_t i = 0; i < c->n; i++) {
        snprintf(c->zones[i], sizeof c->zones[i], "z%zu", i % nzones);
        c->nodes[i].zone = c->zones[i];
    }
}

/* Append node "n<number>" (a new name) to the cluster. */
static void cluster_add(struct cluster *c, size_t number)
{
    assert_true(c->n < MAXN);
    size_t i = c->n++;
    snprintf(c->names[i], sizeof c->names[i], "n%zu", number);
    c->nodes[i] = (struct dfs_placement_node){
        .id = c->names[i], .zone = "", .free_bytes = 1000, .writable = true};
}

static struct dfs_placement_request random_k(size_t k)
{
    return (struct dfs_placement_request){.policy = DFS_POLICY_RANDOM, .k = k};
}

static struct dfs_placement_request req_of(enum dfs_policy p, size_t k)
{
    return (struct dfs_placement_request){.policy = p, .k = k};
}

static void choose_ok(const struct cluster *c, const struct dfs_placement_request *req,
                      dfs_rng *rng, size_t *out)
{
    char *msg = NULL;
    int rc = dfs_placement_choose(NULL, req, c->nodes, c->n, rng, out, NULL, &msg);
    if (rc != DFS_OK)
        fail_msg("choose failed: %s", msg);
    assert_null(msg);
}

static void assert_distinct_in_range(const size_t *out, size_t k, size_t n)
{
    for (size_t i = 0; i < k; i++) {
        assert_true(out[i] < n);
        for (size_t j = 0; j < i; j++)
            assert_true(out[i] != out[j]);
    }
}

/* A placement object with one family synced to c; cfg may be NULL. */
static dfs_placement *pl_synced(const struct dfs_placement_config *cfg, enum dfs_policy p, size_t w,
                                const struct cluster *c, uint64_t seed)
{
    dfs_placement *pl = NULL;
    char *msg = NULL;
    if (dfs_placement_create(cfg, &pl, &msg) != DFS_OK)
        fail_msg("create: %s", msg);
    dfs_rng rng;
    dfs_rng_seed(&rng, seed);
    bool changed = false;
    if (dfs_placement_sync(pl, p, w, c->nodes, c->n, &rng, &changed, &msg) != DFS_OK)
        fail_msg("sync: %s", msg);
    assert_int_equal(changed, dfs_placement_policy_has_sets(p) && c->n >= w);
    return pl;
}

static bool sync_ok(dfs_placement *pl, enum dfs_policy p, size_t w, const struct cluster *c,
                    dfs_rng *rng)
{
    bool changed = false;
    char *msg = NULL;
    if (dfs_placement_sync(pl, p, w, c->nodes, c->n, rng, &changed, &msg) != DFS_OK)
        fail_msg("sync: %s", msg);
    return changed;
}

static void place_ok(const dfs_placement *pl, const struct dfs_placement_request *req,
                     const struct cluster *c, dfs_rng *rng, size_t *out,
                     struct dfs_placement_outcome *oc)
{
    char *msg = NULL;
    if (dfs_placement_choose(pl, req, c->nodes, c->n, rng, out, oc, &msg) != DFS_OK)
        fail_msg("choose %s k=%zu: %s", dfs_placement_policy_name(req->policy), req->k, msg);
}

static struct dfs_placement_state *export_ok(const dfs_placement *pl, enum dfs_policy p, size_t w)
{
    struct dfs_placement_state *st = NULL;
    char *msg = NULL;
    if (dfs_placement_export(pl, p, w, &st, &msg) != DFS_OK)
        fail_msg("export: %s", msg);
    return st;
}

/* The number in a node name "n<number>". */
static size_t num(const char *id)
{
    return (size_t)strtoul(id + 1, NULL, 10);
}

/* Bit mask of a set's nodes by number (numbers < 64). */
static uint64_t set_mask(const struct dfs_placement_set *s)
{
    uint64_t m = 0;
    for (size_t j = 0; j < s->nnodes; j++)
        m |= 1ull << num(s->node_ids[j]);
    return m;
}

/* Bit mask of out[0..k) (indices into c) by node number. */
static uint64_t out_mask(const struct cluster *c, const size_t *out, size_t k)
{
    uint64_t m = 0;
    for (size_t j = 0; j < k; j++)
        m |= 1ull << num(c->nodes[out[j]].id);
    return m;
}

static bool same_state(const struct dfs_placement_state *a, const struct dfs_placement_state *b)
{
    if (a->policy != b->policy || a->width != b->width || a->param != b->param ||
        a->nperms != b->nperms || a->nsets != b->nsets)
        return false;
    for (size_t s = 0; s < a->nsets; s++) {
        if (a->sets[s].perm != b->sets[s].perm || a->sets[s].nnodes != b->sets[s].nnodes)
            return false;
        for (size_t j = 0; j < a->sets[s].nnodes; j++)
            if (strcmp(a->sets[s].node_ids[j], b->sets[s].node_ids[j]) != 0)
                return false;
    }
    return true;
}

static const size_t widths[] = {1, 2, 3, 6};
static const size_t sizes[] = {0 /* w */, 1 /* w+1 */, 2 /* 2w-1 */, 3 /* 2w */, 10, 13, 24};

/* N for sizes[i] and width w; 0 when that N is below w. */
static size_t size_for(size_t i, size_t w)
{
    size_t n = sizes[i] == 0   ? w
               : sizes[i] == 1 ? w + 1
               : sizes[i] == 2 ? 2 * w - 1
               : sizes[i] == 3 ? 2 * w
                               : sizes[i];
    return n >= w ? n : 0;
}

/* ---- random (unchanged behaviour) ------------------------------------------------------------ */

static void test_picks_are_distinct(void **state)
{
    (void)state;
    struct cluster c;
    dfs_rng rng;
    dfs_rng_seed(&rng, 1);
    size_t out[MAXN];
    for (size_t n = 1; n <= 12; n++) {
        cluster_init(&c, n);
        for (size_t k = 1; k <= n; k++) {
            struct dfs_placement_request req = random_k(k);
            for (int draw = 0; draw < 500; draw++) {
                choose_ok(&c, &req, &rng, out);
                assert_distinct_in_range(out, k, n);
            }
        }
    }
}

/*
 * n = 10, k = 3, 100000 draws. Every node is chosen with probability 3/10 per draw: expected 30000
 * times, standard deviation sqrt(100000 * 0.3 * 0.7) = 145; and it comes first with probability
 * 1/10: expected 10000, sd 95. The bounds are 5 sd (a chance failure has probability < 1e-6 per
 * node; with a fixed seed the test is deterministic anyway).
 */
static void test_uniform_per_node(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 10);
    dfs_rng rng;
    dfs_rng_seed(&rng, 3);
    struct dfs_placement_request req = random_k(3);
    long chosen[10] = {0}, first[10] = {0};
    size_t out[3];
    for (int draw = 0; draw < 100000; draw++) {
        choose_ok(&c, &req, &rng, out);
        first[out[0]]++;
        for (size_t i = 0; i < 3; i++)
            chosen[out[i]]++;
    }
    for (size_t i = 0; i < 10; i++) {
        assert_in_range(chosen[i], 30000 - 725, 30000 + 725);
        assert_in_range(first[i], 10000 - 475, 10000 + 475);
    }
}

/*
 * Every 3-subset of 6 nodes (20 of them) is equally likely: 60000 draws, 3000 expected per subset.
 * Pearson's chi-square has 19 degrees of freedom; P(chi2 > 65) < 1e-6.
 */
static void test_uniform_subsets_chi_square(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 6);
    dfs_rng rng;
    dfs_rng_seed(&rng, 4);
    struct dfs_placement_request req = random_k(3);
    long count[64] = {0};
    size_t out[3];
    const int draws = 60000;
    for (int draw = 0; draw < draws; draw++) {
        choose_ok(&c, &req, &rng, out);
        unsigned mask = (1u << out[0]) | (1u << out[1]) | (1u << out[2]);
        count[mask]++;
    }
    double chi2 = 0;
    int subsets = 0;
    for (unsigned mask = 0; mask < 64; mask++) {
        if (__builtin_popcount(mask) != 3) {
            assert_int_equal(count[mask], 0);
            continue;
        }
        subsets++;
        double d = (double)count[mask] - draws / 20.0;
        chi2 += d * d / (draws / 20.0);
    }
    assert_int_equal(subsets, 20);
    if (chi2 > 65)
        fail_msg("chi-square %.1f over 19 degrees of freedom", chi2);
}

/*
 * DESIGN.md's reference: with s of N nodes failed, a fragment on k random distinct nodes is lost
 * with probability C(s,k)/C(N,k). N = 12, s = 4, k = 3: 4/220. 220000 draws expect 4000 losses,
 * sd 62.6; bound 5 sd.
 */
static void test_loss_probability_matches_formula(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 12);
    dfs_rng rng;
    dfs_rng_seed(&rng, 5);
    struct dfs_placement_request req = random_k(3);
    size_t out[3];
    long lost = 0;
    for (int draw = 0; draw < 220000; draw++) {
        choose_ok(&c, &req, &rng, out);
        lost += out[0] < 4 && out[1] < 4 && out[2] < 4; /* nodes 0..3 failed */
    }
    assert_in_range(lost, 4000 - 313, 4000 + 313);
}

static void test_exclusions_respected(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 8);
    c.nodes[1].writable = false; /* suspect */
    c.nodes[6].writable = false; /* draining */
    const char *placed[] = {"n0", "n3"};
    const char *exclude[] = {"n5", "no-such-node"};
    struct dfs_placement_request req = {
        .policy = DFS_POLICY_RANDOM,
        .k = 1,
        .placed = placed,
        .nplaced = 2,
        .exclude = exclude,
        .nexclude = 2,
    };
    dfs_rng rng;
    dfs_rng_seed(&rng, 6);
    int seen[8] = {0};
    size_t out[3];
    for (int draw = 0; draw < 3000; draw++) {
        choose_ok(&c, &req, &rng, out);
        seen[out[0]]++;
    }
    /* Only n2, n4 and n7 remain eligible, each about 1000 times (sd 26: the bounds are 7 sd). */
    for (size_t i = 0; i < 8; i++) {
        if (i == 2 || i == 4 || i == 7)
            assert_in_range(seen[i], 800, 1200);
        else
            assert_int_equal(seen[i], 0);
    }
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

static void test_exact_eligible_set(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 6);
    c.nodes[0].writable = false;
    const char *exclude[] = {"n4"};
    struct dfs_placement_request req = {
        .policy = DFS_POLICY_RANDOM, .k = 4, .exclude = exclude, .nexclude = 1};
    dfs_rng rng;
    dfs_rng_seed(&rng, 7);
    size_t out[4];
    choose_ok(&c, &req, &rng, out);
    qsort(out, 4, sizeof out[0], cmp_size);
    size_t want[4] = {1, 2, 3, 5};
    assert_memory_equal(out, want, sizeof want);
}

/* ---- Every policy against its definition, over the grid of N and w ---------------------------- */

/*
 * min_copy, for w in {1, 2, 3, 6} and N in {w, w+1, 2w-1, 2w, 10, 13, 24}:
 *   - every copyset has exactly w distinct nodes; each permutation has ceil(N / w) copysets and
 *     covers every node;
 *   - every placement is exactly the copyset the outcome names;
 *   - over the draws, the distinct replica sets are exactly the copysets (all of them are hit);
 *   - load spread: a node's probability per draw is between (w+1)/(2N) and (2w-1)/N (placement.h:
 *     the primary is uniform over N, each node is in 1 or 2 copysets per permutation), so its
 *     count over D draws lies in [D (w+1)/(2N) - slack, D (2w-1)/N + slack] with slack = 5 sd of a
 *     binomial at p = 1/2 (5 sqrt(D) / 2): a chance failure has probability < 1e-6.
 */
static void check_min_copy(size_t n, size_t w, uint32_t scatter)
{
    struct cluster c;
    cluster_init(&c, n);
    struct dfs_placement_config cfg = {.scatter_width = scatter};
    dfs_placement *pl = pl_synced(&cfg, DFS_POLICY_MIN_COPY, w, &c, 100 + n * 7 + w);
    struct dfs_placement_state *st = export_ok(pl, DFS_POLICY_MIN_COPY, w);
    size_t perms = w == 1 ? 1 : (scatter == 0 ? 1 : (scatter + w - 2) / (w - 1));
    assert_int_equal(st->nperms, perms);
    assert_int_equal(st->nsets, perms * ((n + w - 1) / w));
    for (size_t p = 0; p < perms; p++) {
        uint64_t cover = 0;
        for (size_t s = 0; s < st->nsets; s++) {
            assert_int_equal(st->sets[s].nnodes, w);
            assert_int_equal(__builtin_popcountll(set_mask(&st->sets[s])), w);
            if (st->sets[s].perm == p)
                cover |= set_mask(&st->sets[s]);
        }
        assert_int_equal(__builtin_popcountll(cover), n);
    }
    /* Distinct copysets, as masks. */
    uint64_t masks[4 * MAXN];
    size_t nmasks = 0;
    for (size_t s = 0; s < st->nsets; s++) {
        bool dup = false;
        for (size_t i = 0; i < nmasks && !dup; i++)
            dup = masks[i] == set_mask(&st->sets[s]);
        if (!dup)
            masks[nmasks++] = set_mask(&st->sets[s]);
    }
    if (perms == 1)
        assert_int_equal(nmasks, st->nsets); /* one permutation: never two equal copysets */
    bool hit[4 * MAXN] = {false};
    long count[MAXN] = {0};
    const long draws = 4000 * (long)n;
    struct dfs_placement_request req = req_of(DFS_POLICY_MIN_COPY, w);
    dfs_rng rng;
    dfs_rng_seed(&rng, 7 * n + w);
    size_t out[MAXN];
    for (long d = 0; d < draws; d++) {
        struct dfs_placement_outcome oc;
        place_ok(pl, &req, &c, &rng, out, &oc);
        assert_distinct_in_range(out, w, n);
        assert_true(oc.set < st->nsets);
        uint64_t m = out_mask(&c, out, w);
        assert_true(m == set_mask(&st->sets[oc.set]));
        for (size_t i = 0; i < nmasks; i++)
            if (masks[i] == m)
                hit[i] = true;
        for (size_t j = 0; j < w; j++)
            count[out[j]]++;
    }
    for (size_t i = 0; i < nmasks; i++)
        assert_true(hit[i]); /* distinct replica sets == distinct copysets */
    double slack = 5 * sqrt((double)draws) / 2;
    for (size_t i = 0; i < n; i++) {
        double lo = (double)draws * (double)(w + 1) / (2.0 * (double)n) - slack;
        double hi = (double)draws * (double)(2 * w - 1) / (double)n + slack;
        if ((double)count[i] < lo || (double)count[i] > hi)
            fail_msg("min_copy N=%zu w=%zu: node %zu placed %ld times, outside [%.0f, %.0f]", n, w,
                     i, count[i], lo, hi);
    }
    dfs_placement_states_free(st, 1);
    dfs_placement_destroy(pl);
}

static void test_min_copy_definition(void **state)
{
    (void)state;
    for (size_t wi = 0; wi < 4; wi++)
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
            if (size_for(si, widths[wi]) > 0)
                check_min_copy(size_for(si, widths[wi]), widths[wi], 0);
}

/* Scatter width S = 4 with w = 3: P = 2 permutations, each covering every node. */
static void test_min_copy_scatter_width(void **state)
{
    (void)state;
    check_min_copy(13, 3, 4);
    check_min_copy(24, 3, 5); /* P = ceil(5/2) = 3 */
    check_min_copy(10, 2, 3); /* P = 3 */
}

/*
 * buddy over the same grid: groups of G = 2w (or all nodes when N < G) to 2G-1 nodes, disjoint,
 * covering every node; every placement is w distinct nodes of the group the outcome names. Each
 * node is chosen with probability exactly w/N per draw (group in proportion to its size, then w
 * of it uniformly): over D draws the count is D w / N within 5 sd (sqrt(D p (1-p)) <= sqrt(D)/2).
 */
static void check_buddy(size_t n, size_t w, uint32_t group)
{
    struct cluster c;
    cluster_init(&c, n);
    struct dfs_placement_config cfg = {.group_size = group};
    dfs_placement *pl = pl_synced(&cfg, DFS_POLICY_BUDDY, w, &c, 200 + n * 7 + w);
    struct dfs_placement_state *st = export_ok(pl, DFS_POLICY_BUDDY, w);
    size_t G = group != 0 ? (group < w ? w : group) : 2 * w;
    assert_int_equal(st->param, G);
    assert_int_equal(st->nsets, n / G > 0 ? n / G : 1);
    uint64_t cover = 0;
    for (size_t s = 0; s < st->nsets; s++) {
        uint64_t m = set_mask(&st->sets[s]);
        assert_int_equal(__builtin_popcountll(m), st->sets[s].nnodes);
        assert_true((cover & m) == 0);
        cover |= m;
        if (n >= G)
            assert_in_range(st->sets[s].nnodes, G, 2 * G - 1);
        else
            assert_int_equal(st->sets[s].nnodes, n);
    }
    assert_int_equal(__builtin_popcountll(cover), n);
    long count[MAXN] = {0};
    const long draws = 4000 * (long)n;
    struct dfs_placement_request req = req_of(DFS_POLICY_BUDDY, w);
    dfs_rng rng;
    dfs_rng_seed(&rng, 11 * n + w);
    size_t out[MAXN];
    for (long d = 0; d < draws; d++) {
        struct dfs_placement_outcome oc;
        place_ok(pl, &req, &c, &rng, out, &oc);
        assert_distinct_in_range(out, w, n);
        assert_true(oc.set < st->nsets);
        uint64_t m = out_mask(&c, out, w);
        assert_true((m & ~set_mask(&st->sets[oc.set])) == 0);
        for (size_t j = 0; j < w; j++)
            count[out[j]]++;
    }
    double slack = 5 * sqrt((double)draws) / 2, mean = (double)draws * (double)w / (double)n;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)count[i] - mean) > slack)
            fail_msg("buddy N=%zu w=%zu: node %zu placed %ld times, expected %.0f +- %.0f", n, w, i,
                     count[i], mean, slack);
    dfs_placement_states_free(st, 1);
    dfs_placement_destroy(pl);
}

static void test_buddy_definition(void **state)
{
    (void)state;
    for (size_t wi = 0; wi < 4; wi++)
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
            if (size_for(si, widths[wi]) > 0)
                check_buddy(size_for(si, widths[wi]), widths[wi], 0);
    check_buddy(13, 3, 4); /* G = 4: groups of 4..7 */
    check_buddy(10, 3, 2); /* G below w: raised to w = 3 */
}

/*
 * random and least_used (all nodes equally free, so least_used breaks ties at random) over the
 * grid: distinct nodes, and each node is chosen with probability w/N per draw; the count over D
 * draws is D w / N within 5 sd.
 */
static void check_flat(enum dfs_policy p, size_t n, size_t w)
{
    struct cluster c;
    cluster_init(&c, n);
    long count[MAXN] = {0};
    const long draws = 4000 * (long)n;
    struct dfs_placement_request req = req_of(p, w);
    dfs_rng rng;
    dfs_rng_seed(&rng, 13 * n + w + (size_t)p);
    size_t out[MAXN];
    for (long d = 0; d < draws; d++) {
        choose_ok(&c, &req, &rng, out);
        assert_distinct_in_range(out, w, n);
        for (size_t j = 0; j < w; j++)
            count[out[j]]++;
    }
    double slack = 5 * sqrt((double)draws) / 2, mean = (double)draws * (double)w / (double)n;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)count[i] - mean) > slack)
            fail_msg("%s N=%zu w=%zu: node %zu placed %ld times, expected %.0f +- %.0f",
                     dfs_placement_policy_name(p), n, w, i, count[i], mean, slack);
}

static void test_random_and_least_used_every_node(void **state)
{
    (void)state;
    for (size_t wi = 0; wi < 4; wi++)
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
            if (size_for(si, widths[wi]) > 0) {
                check_flat(DFS_POLICY_RANDOM, size_for(si, widths[wi]), widths[wi]);
                check_flat(DFS_POLICY_LEAST_USED, size_for(si, widths[wi]), widths[wi]);
            }
}

/* least_used takes the most free nodes; the caller's reservations move the choice. */
static void test_least_used_most_free(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 8);
    uint64_t free_b[8] = {500, 900, 100, 700, 900, 300, 800, 600};
    for (size_t i = 0; i < 8; i++)
        c.nodes[i].free_bytes = free_b[i];
    c.nodes[4].writable = false; /* the most free, but suspect */
    dfs_rng rng;
    dfs_rng_seed(&rng, 21);
    struct dfs_placement_request req = req_of(DFS_POLICY_LEAST_USED, 3);
    size_t out[3];
    for (int d = 0; d < 100; d++) {
        choose_ok(&c, &req, &rng, out);
        qsort(out, 3, sizeof out[0], cmp_size);
        assert_int_equal(out[0], 1);
        assert_int_equal(out[1], 3);
        assert_int_equal(out[2], 6);
    }
    /* What the service does: reserve what it planned, then choose again. */
    uint64_t reserved[8] = {0};
    long used[8] = {0};
    for (int d = 0; d < 400; d++) {
        for (size_t i = 0; i < 8; i++)
            c.nodes[i].free_bytes = free_b[i] - reserved[i];
        choose_ok(&c, &req, &rng, out);
        for (size_t j = 0; j < 3; j++) {
            /* out[j] is at least as free as every node not chosen */
            for (size_t i = 0; i < 8; i++) {
                bool chosen = i == out[0] || i == out[1] || i == out[2];
                if (!chosen && c.nodes[i].writable)
                    assert_true(c.nodes[out[j]].free_bytes >= c.nodes[i].free_bytes);
            }
            reserved[out[j]] += 1;
            used[out[j]]++;
        }
    }
    /* 1200 bytes reserved in all bring the five most free down to about (3500 - 1200) / 5 = 460:
       they all got some, n5 (300) and n2 (100) never, nor the suspect n4. */
    for (size_t i = 0; i < 8; i++)
        assert_true(i == 2 || i == 4 || i == 5 ? used[i] == 0 : used[i] > 0);
    /* Ties are broken at random: two equally free nodes for one place, each ~half the time. */
    cluster_init(&c, 4);
    c.nodes[0].free_bytes = 50;
    c.nodes[1].free_bytes = 50;
    c.nodes[2].free_bytes = 10;
    c.nodes[3].free_bytes = 90;
    req = req_of(DFS_POLICY_LEAST_USED, 2);
    long first = 0;
    for (int d = 0; d < 2000; d++) {
        choose_ok(&c, &req, &rng, out);
        assert_true(out[0] == 3 || out[1] == 3);
        first += out[0] == 0 || out[1] == 0;
    }
    assert_in_range(first, 1000 - 112, 1000 + 112); /* 5 sd of a binomial(2000, 1/2) */
}

/* ---- Zones ----------------------------------------------------------------------------------- */

static size_t zones_of(const struct cluster *c, const size_t *out, size_t k)
{
    size_t nz = 0;
    const char *z[MAXN];
    for (size_t j = 0; j < k; j++) {
        bool seen = false;
        for (size_t i = 0; i < nz && !seen; i++)
            seen = strcmp(z[i], c->nodes[out[j]].zone) == 0;
        if (!seen)
            z[nz++] = c->nodes[out[j]].zone;
    }
    return nz;
}

/* With at least w zones, every placement spans w zones, under every policy. */
static void test_zones_every_policy(void **state)
{
    (void)state;
    const enum dfs_policy policies[] = {DFS_POLICY_RANDOM, DFS_POLICY_MIN_COPY, DFS_POLICY_BUDDY,
                                        DFS_POLICY_LEAST_USED};
    const size_t cases[][3] = {/* N, zones, w */ {13, 4, 3},
                               {24, 3, 3},
                               {7, 3, 3},
                               {12, 6, 6},
                               {30, 5, 4},
                               {10, 2, 2},
                               {9, 3, 1}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        size_t n = cases[ci][0], nz = cases[ci][1], w = cases[ci][2];
        struct cluster c;
        cluster_init(&c, n);
        cluster_zones(&c, nz);
        for (size_t i = 0; i < n; i++)
            c.nodes[i].free_bytes = 1000 + (i * 37) % 11;
        for (size_t pi = 0; pi < 4; pi++) {
            dfs_placement *pl = pl_synced(NULL, policies[pi], w, &c, 300 + ci);
            if (dfs_placement_policy_has_sets(policies[pi])) {
                /* The zones are balanced: every copyset spans w zones, every group >= w. */
                struct dfs_placement_state *st = export_ok(pl, policies[pi], w);
                for (size_t s = 0; s < st->nsets; s++) {
                    size_t idx[MAXN];
                    for (size_t j = 0; j < st->sets[s].nnodes; j++)
                        idx[j] = num(st->sets[s].node_ids[j]);
                    size_t got = zones_of(&c, idx, st->sets[s].nnodes);
                    assert_true(got >= (w < nz ? w : nz));
                }
                dfs_placement_states_free(st, 1);
            }
            dfs_rng rng;
            dfs_rng_seed(&rng, 400 + ci);
            struct dfs_placement_request req = req_of(policies[pi], w);
            long count[MAXN] = {0};
            for (int d = 0; d < 3000; d++) {
                size_t out[MAXN];
                struct dfs_placement_outcome oc;
                place_ok(pl, &req, &c, &rng, out, &oc);
                assert_true(oc.zones);
                if (zones_of(&c, out, w) != w)
                    fail_msg("%s N=%zu zones=%zu w=%zu: a placement spans %zu zones",
                             dfs_placement_policy_name(policies[pi]), n, nz, w,
                             zones_of(&c, out, w));
                for (size_t j = 0; j < w; j++)
                    count[out[j]]++;
            }
            if (policies[pi] != DFS_POLICY_LEAST_USED)
                for (size_t i = 0; i < n; i++)
                    assert_true(count[i] > 0); /* P(a node unused) < (1 - 1/N)^3000 */
            dfs_placement_destroy(pl);
        }
    }
}

/* Fewer zones than w: zones are ignored (distinct nodes still); the outcome says so. */
static void test_zones_too_few(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 12);
    cluster_zones(&c, 4);
    const enum dfs_policy policies[] = {DFS_POLICY_RANDOM, DFS_POLICY_MIN_COPY, DFS_POLICY_BUDDY,
                                        DFS_POLICY_LEAST_USED};
    for (size_t pi = 0; pi < 4; pi++) {
        dfs_placement *pl = pl_synced(NULL, policies[pi], 6, &c, 500);
        dfs_rng rng;
        dfs_rng_seed(&rng, 501);
        struct dfs_placement_request req = req_of(policies[pi], 6);
        for (int d = 0; d < 200; d++) {
            size_t out[6];
            struct dfs_placement_outcome oc;
            place_ok(pl, &req, &c, &rng, out, &oc);
            assert_false(oc.zones);
            assert_distinct_in_range(out, 6, 12);
        }
        dfs_placement_destroy(pl);
    }
}

/*
 * Unbalanced zones (8 nodes in z0, 2 in z1, 2 in z2; w = 3): at most 2 copysets can span 3 zones
 * (z1 and z2 have 2 nodes each), and the greedy interleaving achieves exactly that; random and
 * least_used still place on 3 zones every time.
 */
static void test_zones_unbalanced(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 12);
    for (size_t i = 0; i < 12; i++)
        c.nodes[i].zone = i < 8 ? "z0" : i < 10 ? "z1" : "z2";
    dfs_placement *pl = pl_synced(NULL, DFS_POLICY_MIN_COPY, 3, &c, 600);
    struct dfs_placement_state *st = export_ok(pl, DFS_POLICY_MIN_COPY, 3);
    size_t spanning = 0;
    for (size_t s = 0; s < st->nsets; s++) {
        size_t idx[3];
        for (size_t j = 0; j < 3; j++)
            idx[j] = num(st->sets[s].node_ids[j]);
        spanning += zones_of(&c, idx, 3) == 3;
    }
    assert_int_equal(st->nsets, 4);
    assert_int_equal(spanning, 2);
    dfs_placement_states_free(st, 1);
    dfs_placement_destroy(pl);
    dfs_rng rng;
    dfs_rng_seed(&rng, 601);
    for (int d = 0; d < 500; d++) {
        size_t out[3];
        struct dfs_placement_request req =
            req_of(d % 2 ? DFS_POLICY_RANDOM : DFS_POLICY_LEAST_USED, 3);
        choose_ok(&c, &req, &rng, out);
        assert_int_equal(zones_of(&c, out, 3), 3);
    }
}

/* A replacement avoids the zones of the surviving copies when it can. */
static void test_zones_replacement(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 12);
    cluster_zones(&c, 4);
    const char *placed[] = {"n0", "n1", "n2"}; /* zones z0, z1, z2 */
    const char *exclude[] = {"n2"};            /* n2 failed: the copy must leave z2 or use z3 */
    dfs_rng rng;
    dfs_rng_seed(&rng, 700);
    const enum dfs_policy policies[] = {DFS_POLICY_RANDOM, DFS_POLICY_LEAST_USED, DFS_POLICY_BUDDY};
    for (size_t pi = 0; pi < 3; pi++) {
        struct dfs_placement_config cfg = {.group_size = 12};
        dfs_placement *pl = pl_synced(&cfg, policies[pi], 3, &c, 701);
        struct dfs_placement_request req = {.policy = policies[pi],
                                            .k = 1,
                                            .width = 3,
                                            .placed = placed,
                                            .nplaced = 3,
                                            .exclude = exclude,
                                            .nexclude = 1};
        for (int d = 0; d < 300; d++) {
            size_t out[1];
            struct dfs_placement_outcome oc;
            place_ok(pl, &req, &c, &rng, out, &oc);
            assert_false(oc.fallback);
            const char *z = c.nodes[out[0]].zone;
            assert_true(strcmp(z, "z2") == 0 || strcmp(z, "z3") == 0);
            assert_true(out[0] > 2);
        }
        dfs_placement_destroy(pl);
    }
}

/* ---- Replacement inside a copyset or group ---------------------------------------------------- */

static void test_replacement_stays_in_set(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 13);
    dfs_rng rng;
    dfs_rng_seed(&rng, 800);
    /* min_copy with P = 2: a pair of nodes may share copysets of both permutations. */
    struct dfs_placement_config cfg = {.scatter_width = 4};
    dfs_placement *pl = pl_synced(&cfg, DFS_POLICY_MIN_COPY, 3, &c, 801);
    struct dfs_placement_state *st = export_ok(pl, DFS_POLICY_MIN_COPY, 3);
    int confined = 0, fell_back = 0;
    for (size_t s = 0; s < st->nsets; s++) {
        /* The fragment was on set s; its third node failed. */
        const char *placed[3] = {st->sets[s].node_ids[0], st->sets[s].node_ids[1],
                                 st->sets[s].node_ids[2]};
        const char *exclude[1] = {st->sets[s].node_ids[2]};
        struct dfs_placement_request req = {.policy = DFS_POLICY_MIN_COPY,
                                            .k = 1,
                                            .width = 3,
                                            .placed = placed,
                                            .nplaced = 3,
                                            .exclude = exclude,
                                            .nexclude = 1};
        /* Another copyset holding the two survivors, if any. */
        uint64_t pair = (1ull << num(placed[0])) | (1ull << num(placed[1]));
        bool other = false;
        for (size_t t = 0; t < st->nsets; t++)
            other |= (set_mask(&st->sets[t]) & pair) == pair &&
                     !(set_mask(&st->sets[t]) & (1ull << num(exclude[0])));
        size_t out[1];
        struct dfs_placement_outcome oc;
        char *msg = NULL;
        int rc = dfs_placement_choose(pl, &req, c.nodes, c.n, &rng, out, &oc, &msg);
        if (!other) {
            assert_int_equal(rc, DFS_EPRECOND);
            assert_non_null(strstr(msg, "no min_copy copyset of 3 nodes holds"));
            free(msg);
            msg = NULL;
            req.fallback = true;
            place_ok(pl, &req, &c, &rng, out, &oc);
            assert_true(oc.fallback);
            fell_back++;
        } else {
            assert_int_equal(rc, DFS_OK);
            assert_false(oc.fallback);
            assert_true((set_mask(&st->sets[oc.set]) & pair) == pair);
            assert_true(set_mask(&st->sets[oc.set]) & (1ull << num(c.nodes[out[0]].id)));
            confined++;
        }
        assert_true(out[0] < c.n);
        assert_true(num(c.nodes[out[0]].id) != num(placed[0]) &&
                    num(c.nodes[out[0]].id) != num(placed[1]) &&
                    num(c.nodes[out[0]].id) != num(placed[2]));
    }
    assert_int_equal(confined + fell_back, st->nsets);
    dfs_placement_states_free(st, 1);
    dfs_placement_destroy(pl);

    /* buddy: the replacement comes from the group of the survivors. */
    pl = pl_synced(NULL, DFS_POLICY_BUDDY, 3, &c, 802);
    st = export_ok(pl, DFS_POLICY_BUDDY, 3);
    for (size_t s = 0; s < st->nsets; s++) {
        const char *placed[3] = {st->sets[s].node_ids[0], st->sets[s].node_ids[1],
                                 st->sets[s].node_ids[2]};
        const char *exclude[1] = {placed[2]};
        struct dfs_placement_request req = {.policy = DFS_POLICY_BUDDY,
                                            .k = 1,
                                            .width = 3,
                                            .placed = placed,
                                            .nplaced = 3,
                                            .exclude = exclude,
                                            .nexclude = 1};
        for (int d = 0; d < 50; d++) {
            size_t out[1];
            struct dfs_placement_outcome oc;
            place_ok(pl, &req, &c, &rng, out, &oc);
            assert_int_equal(oc.set, s);
            assert_true(set_mask(&st->sets[s]) & (1ull << num(c.nodes[out[0]].id)));
        }
    }
    dfs_placement_states_free(st, 1);
    dfs_placement_destroy(pl);
}

/* ---- Stability: join, leave, suspect --------------------------------------------------------- */

static void test_min_copy_join_no_reshuffle(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 10);
    dfs_rng rng;
    dfs_rng_seed(&rng, 900);
    dfs_placement *pl = pl_synced(NULL, DFS_POLICY_MIN_COPY, 3, &c, 901);
    struct dfs_placement_state *a = export_ok(pl, DFS_POLICY_MIN_COPY, 3);
    /* Nothing new: no change, same state. */
    assert_false(sync_ok(pl, DFS_POLICY_MIN_COPY, 3, &c, &rng));
    /* Four nodes join: one copyset of three of them, one of the fourth and two old nodes. */
    for (size_t i = 10; i < 14; i++)
        cluster_add(&c, i);
    assert_true(sync_ok(pl, DFS_POLICY_MIN_COPY, 3, &c, &rng));
    struct dfs_placement_state *b = export_ok(pl, DFS_POLICY_MIN_COPY, 3);
    assert_int_equal(b->nsets, a->nsets + 2);
    for (size_t s = 0; s < a->nsets; s++)
        assert_int_equal(set_mask(&a->sets[s]), set_mask(&b->sets[s]));
    uint64_t fresh = 0xfull << 10, cover = 0;
    for (size_t s = a->nsets; s < b->nsets; s++) {
        uint64_t m = set_mask(&b->sets[s]);
        assert_int_equal(__builtin_popcountll(m), 3);
        assert_true(m & fresh);
        cover |= m;
    }
    assert_int_equal(cover & fresh, fresh);
    /* The new copysets are used. */
    struct dfs_placement_request req = req_of(DFS_POLICY_MIN_COPY, 3);
    long used[MAXN] = {0};
    for (int d = 0; d < 3000; d++) {
        size_t out[3];
        place_ok(pl, &req, &c, &rng, out, NULL);
        for (size_t j = 0; j < 3; j++)
            used[out[j]]++;
    }
    for (size_t i = 0; i < c.n; i++)
        assert_true(used[i] > 0);
    dfs_placement_states_free(a, 1);
    dfs_placement_states_free(b, 1);
    dfs_placement_destroy(pl);

    /* Below w nodes there are no copysets; they appear when the w-th node joins. */
    cluster_init(&c, 2);
    pl = pl_synced(NULL, DFS_POLICY_MIN_COPY, 3, &c, 902);
    char *msg = NULL;
    size_t out[3];
    assert_int_equal(dfs_placement_choose(pl, &req, c.nodes, c.n, &rng, out, NULL, &msg),
                     DFS_EPRECOND);
    assert_string_equal(msg, "need 3 distinct live storage nodes, 2 are available");
    free(msg);
    cluster_add(&c, 2);
    assert_true(sync_ok(pl, DFS_POLICY_MIN_COPY, 3, &c, &rng));
    place_ok(pl, &req, &c, &rng, out, NULL);
    dfs_placement_destroy(pl);
}

static void test_min_copy_leave_and_suspect(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 12);
    cluster_zones(&c, 4);
    dfs_rng rng;
    dfs_rng_seed(&rng, 1000);
    struct dfs_placement_config cfg = {.scatter_width = 4};
    dfs_placement *pl = pl_synced(&cfg, DFS_POLICY_MIN_COPY, 3, &c, 1001);
    struct dfs_placement_state *a = export_ok(pl, DFS_POLICY_MIN_COPY, 3);

    /* A suspect node is not removed: no change; placements avoid its copysets. */
    c.nodes[5].writable = false;
    assert_false(sync_ok(pl, DFS_POLICY_MIN_COPY, 3, &c, &rng));
    struct dfs_placement_request req = req_of(DFS_POLICY_MIN_COPY, 3);
    for (int d = 0; d < 2000; d++) {
        size_t out[3];
        place_ok(pl, &req, &c, &rng, out, NULL);
        assert_false(out_mask(&c, out, 3) & (1ull << 5));
    }
    /* It dies: every copyset that held it gets another node, the others do not move. */
    c.nodes[5].gone = true;
    assert_true(sync_ok(pl, DFS_POLICY_MIN_COPY, 3, &c, &rng));
    struct dfs_placement_state *b = export_ok(pl, DFS_POLICY_MIN_COPY, 3);
    assert_int_equal(a->nsets, b->nsets);
    for (size_t s = 0; s < a->nsets; s++) {
        uint64_t ma = set_mask(&a->sets[s]), mb = set_mask(&b->sets[s]);
        assert_int_equal(__builtin_popcountll(mb), 3);
        assert_false(mb & (1ull << 5));
        if (ma & (1ull << 5)) {
            assert_int_equal(__builtin_popcountll(ma & mb), 2);
            /* The replacement keeps the copyset on 3 zones (there are 4 zones). */
            size_t idx[3];
            for (size_t j = 0; j < 3; j++)
                idx[j] = num(b->sets[s].node_ids[j]);
            assert_int_equal(zones_of(&c, idx, 3), 3);
        } else {
            assert_int_equal(ma, mb);
        }
    }
    /* Removing it from the array altogether changes nothing more. */
    c.nodes[5] = c.nodes[--c.n];
    assert_false(sync_ok(pl, DFS_POLICY_MIN_COPY, 3, &c, &rng));
    struct dfs_placement_state *b2 = export_ok(pl, DFS_POLICY_MIN_COPY, 3);
    assert_true(same_state(b, b2));
    /* Down to 2 nodes: no copysets; back to 3: built again. */
    c.n = 2;
    assert_true(sync_ok(pl, DFS_POLICY_MIN_COPY, 3, &c, &rng));
    struct dfs_placement_state *e = export_ok(pl, DFS_POLICY_MIN_COPY, 3);
    assert_int_equal(e->nsets, 0);
    c.n = 3;
    assert_true(sync_ok(pl, DFS_POLICY_MIN_COPY, 3, &c, &rng));
    dfs_placement_states_free(a, 1);
    dfs_placement_states_free(b, 1);
    dfs_placement_states_free(b2, 1);
    dfs_placement_states_free(e, 1);
    dfs_placement_destroy(pl);
}

/* Which group of st holds node number x (SIZE_MAX if none). */
static size_t group_of(const struct dfs_placement_state *st, size_t x)
{
    for (size_t s = 0; s < st->nsets; s++)
        if (set_mask(&st->sets[s]) & (1ull << x))
            return s;
    return SIZE_MAX;
}

static void test_buddy_join_split_leave_merge(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 12);
    dfs_rng rng;
    dfs_rng_seed(&rng, 1100);
    dfs_placement *pl = pl_synced(NULL, DFS_POLICY_BUDDY, 3, &c, 1101); /* G = 6: 2 groups */
    struct dfs_placement_state *a = export_ok(pl, DFS_POLICY_BUDDY, 3);
    assert_int_equal(a->nsets, 2);
    /* Nodes join one at a time: each into the smallest group; old buddies stay together, except
       that a group reaching 12 = 2G splits in two. */
    for (size_t x = 12; x < 30; x++) {
        cluster_add(&c, x);
        assert_true(sync_ok(pl, DFS_POLICY_BUDDY, 3, &c, &rng));
        struct dfs_placement_state *b = export_ok(pl, DFS_POLICY_BUDDY, 3);
        size_t smallest = SIZE_MAX;
        for (size_t s = 0; s < a->nsets; s++)
            if (smallest == SIZE_MAX || a->sets[s].nnodes < smallest)
                smallest = a->sets[s].nnodes;
        size_t g = group_of(b, x);
        assert_true(g != SIZE_MAX);
        for (size_t s = 0; s < b->nsets; s++)
            assert_in_range(b->sets[s].nnodes, 6, 11);
        if (b->nsets == a->nsets) {
            assert_int_equal(a->sets[g].nnodes, smallest);
            for (size_t s = 0; s < a->nsets; s++)
                assert_int_equal(set_mask(&a->sets[s]) & ~(1ull << x),
                                 set_mask(&b->sets[s]) & ~(1ull << x));
        } else {
            /* A split: the group that got x was one of the smallest, now in two parts. */
            assert_int_equal(b->nsets, a->nsets + 1);
            size_t split = SIZE_MAX;
            for (size_t s = 0; s < a->nsets; s++)
                if (set_mask(&b->sets[s]) != set_mask(&a->sets[s]))
                    split = s;
            assert_true(split != SIZE_MAX);
            assert_int_equal(set_mask(&a->sets[split]) | (1ull << x),
                             set_mask(&b->sets[split]) | set_mask(&b->sets[a->nsets]));
        }
        dfs_placement_states_free(a, 1);
        a = b;
    }
    /* Nodes leave: a group left with fewer than 3 members merges into the smallest other. */
    size_t g0 = group_of(a, num(a->sets[0].node_ids[0]));
    size_t members = a->sets[g0].nnodes;
    for (size_t j = 0; j + 2 < members; j++) {
        size_t x = num(a->sets[g0].node_ids[j]);
        for (size_t i = 0; i < c.n; i++)
            if (num(c.nodes[i].id) == x)
                c.nodes[i].gone = true;
    }
    size_t s1 = num(a->sets[g0].node_ids[members - 2]), s2 = num(a->sets[g0].node_ids[members - 1]);
    assert_true(sync_ok(pl, DFS_POLICY_BUDDY, 3, &c, &rng));
    struct dfs_placement_state *b = export_ok(pl, DFS_POLICY_BUDDY, 3);
    /* One group fewer, unless the merge made the target reach 2G and split again. */
    size_t target = SIZE_MAX;
    for (size_t s = 0; s < a->nsets; s++)
        if (s != g0 && (target == SIZE_MAX || a->sets[s].nnodes < a->sets[target].nnodes))
            target = s;
    assert_int_equal(b->nsets, a->sets[target].nnodes + 2 >= 12 ? a->nsets : a->nsets - 1);
    if (b->nsets < a->nsets)
        assert_int_equal(group_of(b, s1), group_of(b, s2)); /* merged together */
    uint64_t cover = 0;
    for (size_t s = 0; s < b->nsets; s++) {
        assert_true(b->sets[s].nnodes >= 3);
        cover |= set_mask(&b->sets[s]);
    }
    size_t alive = 0;
    for (size_t i = 0; i < c.n; i++)
        alive += !c.nodes[i].gone;
    assert_int_equal(__builtin_popcountll(cover), alive);
    dfs_placement_states_free(a, 1);
    dfs_placement_states_free(b, 1);
    dfs_placement_destroy(pl);
}

/* A changed scatter width adds or drops permutations; a changed group size rebuilds. */
static void test_config_change(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 12);
    dfs_rng rng;
    dfs_rng_seed(&rng, 1200);
    dfs_placement *pl = pl_synced(NULL, DFS_POLICY_MIN_COPY, 3, &c, 1201);
    struct dfs_placement_state *a = export_ok(pl, DFS_POLICY_MIN_COPY, 3);
    dfs_placement *wide = NULL;
    struct dfs_placement_config cfg = {.scatter_width = 6, .group_size = 4};
    assert_int_equal(dfs_placement_create(&cfg, &wide, NULL), DFS_OK);
    assert_int_equal(dfs_placement_import(wide, a, NULL), DFS_OK);
    assert_true(sync_ok(wide, DFS_POLICY_MIN_COPY, 3, &c, &rng));
    struct dfs_placement_state *b = export_ok(wide, DFS_POLICY_MIN_COPY, 3);
    assert_int_equal(b->nperms, 3);
    assert_int_equal(b->param, 6);
    assert_int_equal(b->nsets, 12);
    for (size_t s = 0; s < a->nsets; s++)
        assert_int_equal(set_mask(&a->sets[s]), set_mask(&b->sets[s]));
    /* Back to the default: the added permutations go, the first stays. */
    assert_int_equal(dfs_placement_import(pl, b, NULL), DFS_OK);
    assert_true(sync_ok(pl, DFS_POLICY_MIN_COPY, 3, &c, &rng));
    struct dfs_placement_state *d = export_ok(pl, DFS_POLICY_MIN_COPY, 3);
    assert_true(same_state(a, d));
    /* buddy: G 6 -> 4 rebuilds. */
    dfs_placement *bp = pl_synced(NULL, DFS_POLICY_BUDDY, 3, &c, 1202);
    struct dfs_placement_state *g6 = export_ok(bp, DFS_POLICY_BUDDY, 3);
    assert_int_equal(dfs_placement_import(wide, g6, NULL), DFS_OK);
    assert_true(sync_ok(wide, DFS_POLICY_BUDDY, 3, &c, &rng));
    struct dfs_placement_state *g4 = export_ok(wide, DFS_POLICY_BUDDY, 3);
    assert_int_equal(g4->param, 4);
    assert_int_equal(g4->nsets, 3);
    for (struct dfs_placement_state **s = (struct dfs_placement_state *[]){a, b, d, g6, g4, NULL};
         *s != NULL; s++)
        dfs_placement_states_free(*s, 1);
    dfs_placement_destroy(pl);
    dfs_placement_destroy(wide);
    dfs_placement_destroy(bp);
}

/* ---- Export, import, determinism ------------------------------------------------------------- */

static void test_export_import_round_trip(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 17);
    cluster_zones(&c, 3);
    const enum dfs_policy policies[] = {DFS_POLICY_MIN_COPY, DFS_POLICY_BUDDY};
    for (size_t pi = 0; pi < 2; pi++) {
        struct dfs_placement_config cfg = {.scatter_width = 4};
        dfs_placement *pl = pl_synced(&cfg, policies[pi], 3, &c, 1300);
        struct dfs_placement_state *a = export_ok(pl, policies[pi], 3);
        dfs_placement *copy = NULL;
        assert_int_equal(dfs_placement_create(&cfg, &copy, NULL), DFS_OK);
        assert_int_equal(dfs_placement_import(copy, a, NULL), DFS_OK);
        dfs_rng rng;
        dfs_rng_seed(&rng, 1301);
        /* Imported, not synced yet: choose refuses. */
        struct dfs_placement_request req = req_of(policies[pi], 3);
        size_t out[3], out2[3];
        char *msg = NULL;
        assert_int_equal(dfs_placement_choose(copy, &req, c.nodes, c.n, &rng, out, NULL, &msg),
                         DFS_EINVAL);
        assert_non_null(strstr(msg, "out of date"));
        free(msg);
        assert_false(sync_ok(copy, policies[pi], 3, &c, &rng)); /* the same nodes: no change */
        struct dfs_placement_state *b = export_ok(copy, policies[pi], 3);
        assert_true(same_state(a, b));
        /* Both choose the same with the same seed. */
        dfs_rng r1, r2;
        dfs_rng_seed(&r1, 1302);
        dfs_rng_seed(&r2, 1302);
        for (int d = 0; d < 500; d++) {
            place_ok(pl, &req, &c, &r1, out, NULL);
            place_ok(copy, &req, &c, &r2, out2, NULL);
            assert_memory_equal(out, out2, sizeof out);
        }
        dfs_placement_states_free(a, 1);
        dfs_placement_states_free(b, 1);
        dfs_placement_destroy(pl);
        dfs_placement_destroy(copy);
    }
    dfs_placement_states_free(NULL, 0);
}

static void expect_import_error(struct dfs_placement_state *st, const char *fragment)
{
    dfs_placement *pl = NULL;
    assert_int_equal(dfs_placement_create(NULL, &pl, NULL), DFS_OK);
    char *msg = NULL;
    assert_int_equal(dfs_placement_import(pl, st, &msg), DFS_EINVAL);
    if (msg == NULL || strstr(msg, fragment) == NULL)
        fail_msg("message '%s' lacks '%s'", msg, fragment);
    free(msg);
    dfs_placement_destroy(pl);
}

static void test_import_checks(void **state)
{
    (void)state;
    char *ids[] = {"a", "b", "c", "a", "d"};
    struct dfs_placement_set sets[2] = {{.perm = 0, .node_ids = ids, .nnodes = 3},
                                        {.perm = 0, .node_ids = ids + 2, .nnodes = 3}};
    struct dfs_placement_state st = {.policy = DFS_POLICY_MIN_COPY,
                                     .width = 3,
                                     .param = 2,
                                     .nperms = 1,
                                     .sets = sets,
                                     .nsets = 2};
    dfs_placement *pl = NULL;
    assert_int_equal(dfs_placement_create(NULL, &pl, NULL), DFS_OK);
    assert_int_equal(dfs_placement_import(pl, &st, NULL), DFS_OK); /* {a,b,c}, {c,a,d} */
    st.sets[1].nnodes = 2;
    expect_import_error(&st, "copyset 1 has 2 nodes, not 3");
    st.sets[1].nnodes = 3;
    st.sets[1].perm = 1;
    expect_import_error(&st, "set 1 is of permutation 1 of 1");
    st.sets[1].perm = 0;
    st.policy = DFS_POLICY_BUDDY;
    st.param = 6;
    expect_import_error(&st, "node 'c' is in two groups");
    st.policy = DFS_POLICY_RANDOM;
    expect_import_error(&st, "policy 'random' keeps no sets");
    st.policy = DFS_POLICY_MIN_COPY;
    st.width = 0;
    expect_import_error(&st, "width 0");
    st.width = 3;
    ids[4] = NULL;
    expect_import_error(&st, "set 1 has no id at 2");
    ids[4] = "a";
    expect_import_error(&st, "set 1 holds node 'a' twice");
    dfs_placement_destroy(pl);
}

/* Same seed, same choices, for every policy; another seed chooses otherwise. */
static void test_same_seed_same_choice(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 24);
    const enum dfs_policy policies[] = {DFS_POLICY_RANDOM, DFS_POLICY_MIN_COPY, DFS_POLICY_BUDDY,
                                        DFS_POLICY_LEAST_USED};
    for (size_t pi = 0; pi < 4; pi++) {
        dfs_placement *p1 = pl_synced(NULL, policies[pi], 3, &c, 42);
        dfs_placement *p2 = pl_synced(NULL, policies[pi], 3, &c, 42);
        dfs_rng a, b, other;
        dfs_rng_seed(&a, 42);
        dfs_rng_seed(&b, 42);
        dfs_rng_seed(&other, 43);
        struct dfs_placement_request req = req_of(policies[pi], 3);
        int differ = 0;
        for (int draw = 0; draw < 200; draw++) {
            size_t x[3], y[3], z[3];
            place_ok(p1, &req, &c, &a, x, NULL);
            place_ok(p2, &req, &c, &b, y, NULL);
            place_ok(p1, &req, &c, &other, z, NULL);
            assert_memory_equal(x, y, sizeof x);
            differ += memcmp(x, z, sizeof x) != 0;
        }
        assert_true(differ > 150);
        if (dfs_placement_policy_has_sets(policies[pi])) {
            struct dfs_placement_state *s1 = export_ok(p1, policies[pi], 3);
            struct dfs_placement_state *s2 = export_ok(p2, policies[pi], 3);
            assert_true(same_state(s1, s2));
            dfs_placement_states_free(s1, 1);
            dfs_placement_states_free(s2, 1);
        }
        dfs_placement_destroy(p1);
        dfs_placement_destroy(p2);
    }
}

/* ---- Errors ---------------------------------------------------------------------------------- */

static void expect_precond(const dfs_placement *pl, const struct cluster *c,
                           const struct dfs_placement_request *req, const char *want)
{
    dfs_rng rng;
    dfs_rng_seed(&rng, 8);
    size_t out[8];
    char *msg = NULL;
    assert_int_equal(dfs_placement_choose(pl, req, c->nodes, c->n, &rng, out, NULL, &msg),
                     DFS_EPRECOND);
    assert_non_null(msg);
    if (strcmp(msg, want) != 0)
        fail_msg("message '%s', want '%s'", msg, want);
    free(msg);
}

static void test_too_few_nodes(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 3);
    c.nodes[2].writable = false;
    struct dfs_placement_request req = random_k(3);
    expect_precond(NULL, &c, &req, "need 3 distinct live storage nodes, 2 are available");

    cluster_init(&c, 2);
    c.nodes[1].writable = false;
    expect_precond(NULL, &c, &req, "need 3 distinct live storage nodes, 1 is available");

    const char *placed[] = {"n0", "n1", "n2"};
    cluster_init(&c, 3);
    req = (struct dfs_placement_request){
        .policy = DFS_POLICY_RANDOM, .k = 1, .placed = placed, .nplaced = 3};
    expect_precond(NULL, &c, &req,
                   "need 1 distinct live storage node, 0 are available (3 more already hold this "
                   "fragment or failed for it)");

    cluster_init(&c, 0);
    req = random_k(1);
    expect_precond(NULL, &c, &req, "need 1 distinct live storage node, 0 are available");

    /* The same messages from every policy. */
    cluster_init(&c, 4);
    c.nodes[0].writable = false;
    c.nodes[3].writable = false;
    const enum dfs_policy policies[] = {DFS_POLICY_MIN_COPY, DFS_POLICY_BUDDY,
                                        DFS_POLICY_LEAST_USED};
    for (size_t pi = 0; pi < 3; pi++) {
        dfs_placement *pl = pl_synced(NULL, policies[pi], 3, &c, 9);
        req = req_of(policies[pi], 3);
        expect_precond(pl, &c, &req, "need 3 distinct live storage nodes, 2 are available");
        dfs_placement_destroy(pl);
    }
}

/* Enough nodes, but no usable copyset or group. */
static void test_no_usable_set(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 6);
    dfs_placement *pl = pl_synced(NULL, DFS_POLICY_MIN_COPY, 3, &c, 10);
    struct dfs_placement_state *st = export_ok(pl, DFS_POLICY_MIN_COPY, 3);
    /* One node of each copyset becomes suspect: 4 writable nodes, no whole copyset. */
    for (size_t s = 0; s < 2; s++)
        c.nodes[num(st->sets[s].node_ids[0])].writable = false;
    dfs_rng rng;
    dfs_rng_seed(&rng, 11);
    assert_false(sync_ok(pl, DFS_POLICY_MIN_COPY, 3, &c, &rng));
    struct dfs_placement_request req = req_of(DFS_POLICY_MIN_COPY, 3);
    expect_precond(pl, &c, &req,
                   "no min_copy copyset of 3 nodes is fully writable (4 of 6 nodes are)");
    dfs_placement_states_free(st, 1);
    dfs_placement_destroy(pl);

    cluster_init(&c, 12);
    pl = pl_synced(NULL, DFS_POLICY_BUDDY, 3, &c, 12);
    st = export_ok(pl, DFS_POLICY_BUDDY, 3);
    for (size_t s = 0; s < 2; s++)
        for (size_t j = 0; j < 4; j++)
            c.nodes[num(st->sets[s].node_ids[j])].writable = false;
    assert_false(sync_ok(pl, DFS_POLICY_BUDDY, 3, &c, &rng));
    req = req_of(DFS_POLICY_BUDDY, 3);
    expect_precond(pl, &c, &req,
                   "no buddy group has 3 writable nodes (2 groups, 4 of 12 nodes writable)");
    dfs_placement_states_free(st, 1);
    dfs_placement_destroy(pl);
}

static void expect_einval(const dfs_placement *pl, const struct dfs_placement_request *req,
                          const struct cluster *c, const char *fragment)
{
    dfs_rng rng;
    dfs_rng_seed(&rng, 9);
    size_t out[8];
    char *msg = NULL;
    assert_int_equal(dfs_placement_choose(pl, req, c->nodes, c->n, &rng, out, NULL, &msg),
                     DFS_EINVAL);
    assert_non_null(msg);
    if (strstr(msg, fragment) == NULL)
        fail_msg("message '%s' lacks '%s'", msg, fragment);
    free(msg);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 5);
    struct dfs_placement_request req = random_k(0);
    expect_einval(NULL, &req, &c, "0 nodes");
    req = random_k(2);
    req.policy = DFS_POLICY_UNSPECIFIED;
    expect_einval(NULL, &req, &c, "no policy");
    req.policy = (enum dfs_policy)77;
    expect_einval(NULL, &req, &c, "no policy");
    req = random_k(3);
    req.width = 2;
    expect_einval(NULL, &req, &c, "3 nodes asked of a placement of 2");
    req = req_of(DFS_POLICY_MIN_COPY, 3);
    expect_einval(NULL, &req, &c, "no min_copy state for width 3");
    dfs_placement *pl = pl_synced(NULL, DFS_POLICY_BUDDY, 3, &c, 13);
    req = req_of(DFS_POLICY_BUDDY, 2);
    expect_einval(pl, &req, &c, "no buddy state for width 2");
    /* Synced with 5 nodes, asked with 4: out of date. */
    req = req_of(DFS_POLICY_BUDDY, 3);
    c.n = 4;
    expect_einval(pl, &req, &c, "out of date");
    /* Same length, another node in place: caught on the chosen nodes. */
    c.n = 5;
    for (size_t i = 0; i < 5; i++)
        c.nodes[i].id = c.names[4 - i];
    expect_einval(pl, &req, &c, "out of date");
    cluster_init(&c, 5);
    req = random_k(2);
    c.nodes[3].id = NULL;
    expect_einval(NULL, &req, &c, "candidate 3 has no node id");
    /* errmsg may be NULL. */
    dfs_rng rng;
    dfs_rng_seed(&rng, 1);
    size_t out[2];
    assert_int_equal(dfs_placement_choose(NULL, &req, c.nodes, c.n, &rng, out, NULL, NULL),
                     DFS_EINVAL);
    /* sync: bad width, missing id, duplicate id (the family is left as it was). */
    bool changed = false;
    char *msg = NULL;
    assert_int_equal(
        dfs_placement_sync(pl, DFS_POLICY_BUDDY, 0, c.nodes, c.n, &rng, &changed, &msg),
        DFS_EINVAL);
    free(msg);
    msg = NULL;
    assert_int_equal(
        dfs_placement_sync(pl, DFS_POLICY_BUDDY, 3, c.nodes, c.n, &rng, &changed, &msg),
        DFS_EINVAL);
    assert_non_null(strstr(msg, "candidate 3 has no node id"));
    free(msg);
    msg = NULL;
    cluster_init(&c, 6);
    c.nodes[5].id = "n1";
    assert_int_equal(
        dfs_placement_sync(pl, DFS_POLICY_BUDDY, 3, c.nodes, c.n, &rng, &changed, &msg),
        DFS_EINVAL);
    assert_non_null(strstr(msg, "'n1' appears twice"));
    free(msg);
    msg = NULL;
    c.nodes[5].id = "n7";
    c.nodes[4].id = "n7";
    assert_int_equal(
        dfs_placement_sync(pl, DFS_POLICY_BUDDY, 3, c.nodes, c.n, &rng, &changed, &msg),
        DFS_EINVAL);
    assert_non_null(strstr(msg, "'n7' appears twice"));
    free(msg);
    cluster_init(&c, 5);
    assert_false(sync_ok(pl, DFS_POLICY_BUDDY, 3, &c, &rng));
    dfs_placement_destroy(pl);
}

static void test_policy_names(void **state)
{
    (void)state;
    for (int p = DFS_POLICY_RANDOM; p <= DFS_POLICY_LEAST_USED; p++) {
        enum dfs_policy got;
        assert_int_equal(
            dfs_placement_policy_parse(dfs_placement_policy_name((enum dfs_policy)p), &got, NULL),
            DFS_OK);
        assert_int_equal(got, p);
    }
    enum dfs_policy got = DFS_POLICY_UNSPECIFIED;
    assert_int_equal(dfs_placement_policy_parse("least-used", &got, NULL), DFS_OK);
    assert_int_equal(got, DFS_POLICY_LEAST_USED);
    assert_string_equal(dfs_placement_policy_name(DFS_POLICY_UNSPECIFIED), "unspecified");
    assert_string_equal(dfs_placement_policy_name((enum dfs_policy)99), "unknown");
    char *msg = NULL;
    assert_int_equal(dfs_placement_policy_parse("unspecified", &got, &msg), DFS_EINVAL);
    assert_non_null(strstr(msg, "unknown placement policy 'unspecified'"));
    assert_int_equal(dfs_placement_policy_parse("rand", &got, &msg), DFS_EINVAL);
    assert_int_equal(dfs_placement_policy_parse("randomly", &got, &msg), DFS_EINVAL);
    assert_int_equal(dfs_placement_policy_parse(NULL, &got, &msg), DFS_EINVAL);
    free(msg);
    assert_true(dfs_placement_policy_has_sets(DFS_POLICY_MIN_COPY));
    assert_true(dfs_placement_policy_has_sets(DFS_POLICY_BUDDY));
    assert_false(dfs_placement_policy_has_sets(DFS_POLICY_RANDOM));
    assert_false(dfs_placement_policy_has_sets(DFS_POLICY_LEAST_USED));
}

static void test_state_object(void **state)
{
    (void)state;
    dfs_placement *pl = NULL;
    assert_int_equal(dfs_placement_create(NULL, &pl, NULL), DFS_OK);
    assert_non_null(pl);
    /* Random placement ignores the group state but accepts it; its sync is a no-op. */
    struct cluster c;
    cluster_init(&c, 4);
    struct dfs_placement_request req = random_k(2);
    dfs_rng rng;
    dfs_rng_seed(&rng, 10);
    size_t out[2];
    assert_false(sync_ok(pl, DFS_POLICY_RANDOM, 2, &c, &rng));
    assert_int_equal(dfs_placement_choose(pl, &req, c.nodes, c.n, &rng, out, NULL, NULL), DFS_OK);
    assert_distinct_in_range(out, 2, 4);
    struct dfs_placement_state *st = NULL;
    assert_int_equal(dfs_placement_export(pl, DFS_POLICY_MIN_COPY, 3, &st, NULL), DFS_ENOTFOUND);
    dfs_placement_destroy(pl);
    dfs_placement_destroy(NULL);

    struct dfs_placement_config cfg = {.scatter_width = 4, .group_size = 1};
    char *msg = NULL;
    pl = NULL;
    assert_int_equal(dfs_placement_create(&cfg, &pl, &msg), DFS_EINVAL);
    assert_null(pl);
    assert_non_null(msg);
    free(msg);
    cfg.group_size = DFS_PLACEMENT_GROUP_MAX + 1;
    assert_int_equal(dfs_placement_create(&cfg, &pl, NULL), DFS_EINVAL);
    cfg.group_size = 0;
    cfg.scatter_width = DFS_PLACEMENT_SCATTER_MAX + 1;
    assert_int_equal(dfs_placement_create(&cfg, &pl, NULL), DFS_EINVAL);
}

/* ---- Scale ----------------------------------------------------------------------------------- */

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * 10,000 nodes in 10 zones: build the copysets (S = 2, then S = 4) and buddy groups, then place
 * 1,000,000 fragments of width 3 with each. The times are printed, not asserted; the checks are
 * that the sets cover every node and that a sample of placements is in one set.
 */
static void test_scale_10000_nodes(void **state)
{
    (void)state;
    enum { N = 10000, DRAWS = 1000000 };
    struct dfs_placement_node *nodes = calloc(N, sizeof *nodes);
    char(*names)[32] = calloc(N, sizeof *names);
    static const char *const zones[] = {"z0", "z1", "z2", "z3", "z4", "z5", "z6", "z7", "z8", "z9"};
    assert_non_null(nodes);
    assert_non_null(names);
    for (size_t i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "node-%05zu", i);
        nodes[i] = (struct dfs_placement_node){
            .id = names[i], .zone = zones[i % 10], .free_bytes = 1u << 30, .writable = true};
    }
    struct {
        enum dfs_policy policy;
        uint32_t scatter;
    } runs[] = {{DFS_POLICY_MIN_COPY, 0}, {DFS_POLICY_MIN_COPY, 4}, {DFS_POLICY_BUDDY, 0}};
    for (size_t r = 0; r < 3; r++) {
        struct dfs_placement_config cfg = {.scatter_width = runs[r].scatter};
        dfs_placement *pl = NULL;
        assert_int_equal(dfs_placement_create(&cfg, &pl, NULL), DFS_OK);
        dfs_rng rng;
        dfs_rng_seed(&rng, 77);
        bool changed = false;
        double t0 = seconds();
        assert_int_equal(dfs_placement_sync(pl, runs[r].policy, 3, nodes, N, &rng, &changed, NULL),
                         DFS_OK);
        double t1 = seconds();
        assert_true(changed);
        /* A second sync with nothing new is cheap and changes nothing. */
        assert_int_equal(dfs_placement_sync(pl, runs[r].policy, 3, nodes, N, &rng, &changed, NULL),
                         DFS_OK);
        double t2 = seconds();
        assert_false(changed);
        struct dfs_placement_request req = req_of(runs[r].policy, 3);
        size_t out[3];
        unsigned long long sum = 0;
        struct dfs_placement_outcome oc;
        for (long d = 0; d < DRAWS; d++) {
            assert_int_equal(dfs_placement_choose(pl, &req, nodes, N, &rng, out, &oc, NULL),
                             DFS_OK);
            sum += out[0] + out[1] + out[2];
        }
        double t3 = seconds();
        struct dfs_placement_state *st = export_ok(pl, runs[r].policy, 3);
        size_t members = 0;
        for (size_t s = 0; s < st->nsets; s++)
            members += st->sets[s].nnodes;
        assert_true(members >= N);
        /* The last placement is inside the set it names, and spans 3 zones. */
        for (size_t j = 0; j < 3; j++) {
            bool in = false;
            for (size_t i = 0; i < st->sets[oc.set].nnodes && !in; i++)
                in = strcmp(st->sets[oc.set].node_ids[i], nodes[out[j]].id) == 0;
            assert_true(in);
        }
        assert_true(out[0] % 10 != out[1] % 10 && out[0] % 10 != out[2] % 10 &&
                    out[1] % 10 != out[2] % 10);
        printf("    %s S=%u: %zu sets for %d nodes built in %.3f s (re-sync %.4f s); %d "
               "placements in %.3f s (%.2f M/s) [checksum %llu]\n",
               dfs_placement_policy_name(runs[r].policy), runs[r].scatter, st->nsets, N, t1 - t0,
               t2 - t1, DRAWS, t3 - t2, DRAWS / (t3 - t2) / 1e6, sum % 1000);
        dfs_placement_states_free(st, 1);
        dfs_placement_destroy(pl);
    }
    free(nodes);
    free(names);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_picks_are_distinct),
        cmocka_unit_test(test_uniform_per_node),
        cmocka_unit_test(test_uniform_subsets_chi_square),
        cmocka_unit_test(test_loss_probability_matches_formula),
        cmocka_unit_test(test_exclusions_respected),
        cmocka_unit_test(test_exact_eligible_set),
        cmocka_unit_test(test_min_copy_definition),
        cmocka_unit_test(test_min_copy_scatter_width),
        cmocka_unit_test(test_buddy_definition),
        cmocka_unit_test(test_random_and_least_used_every_node),
        cmocka_unit_test(test_least_used_most_free),
        cmocka_unit_test(test_zones_every_policy),
        cmocka_unit_test(test_zones_too_few),
        cmocka_unit_test(test_zones_unbalanced),
        cmocka_unit_test(test_zones_replacement),
        cmocka_unit_test(test_replacement_stays_in_set),
        cmocka_unit_test(test_min_copy_join_no_reshuffle),
        cmocka_unit_test(test_min_copy_leave_and_suspect),
        cmocka_unit_test(test_buddy_join_split_leave_merge),
        cmocka_unit_test(test_config_change),
        cmocka_unit_test(test_export_import_round_trip),
        cmocka_unit_test(test_import_checks),
        cmocka_unit_test(test_same_seed_same_choice),
        cmocka_unit_test(test_too_few_nodes),
        cmocka_unit_test(test_no_usable_set),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_policy_names),
        cmocka_unit_test(test_state_object),
        cmocka_unit_test(test_scale_10000_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
