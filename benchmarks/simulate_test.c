/*
 * Tests of the loss simulator: the closed forms against brute-force enumeration, the counting
 * against a naive count, and the simulated figures against the closed forms. Every random choice
 * comes from a fixed seed, so a run is deterministic; the statistical bounds are several standard
 * errors wide, yet far narrower than what a wrong placement, failure draw or count would give.
 */
#include "benchmarks/simulate.h"

#include "common/err.h"
#include "common/rng.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static double choose(unsigned n, unsigned k)
{
    if (k > n)
        return 0;
    double r = 1;
    for (unsigned i = 1; i <= k; i++)
        r = r * (n - k + i) / i;
    return r;
}

/* Every s-subset of n <= 20 nodes as a bitmask: calls f(mask, arg), returns the number visited. */
static unsigned long for_subsets(unsigned n, unsigned s, void (*f)(uint32_t, void *), void *arg)
{
    unsigned long count = 0;
    for (uint32_t m = 0; m < (1u << n); m++) {
        if ((unsigned)__builtin_popcount(m) != s)
            continue;
        f(m, arg);
        count++;
    }
    return count;
}

struct blocks_case {
    const uint32_t *sizes;
    size_t n;
    uint32_t t;
    unsigned long good;
};

static void count_no_block_lost(uint32_t mask, void *arg)
{
    struct blocks_case *c = arg;
    unsigned at = 0;
    for (size_t b = 0; b < c->n; b++) {
        uint32_t bits = ((1u << c->sizes[b]) - 1) << at;
        if ((uint32_t)__builtin_popcount(mask & bits) >= c->t)
            return;
        at += c->sizes[b];
    }
    c->good++;
}

static void test_closed_forms_match_enumeration(void **state)
{
    (void)state;
    /* A replicated set: C(s,k)/C(n,k). */
    for (unsigned n = 3; n <= 12; n++)
        for (unsigned s = 0; s <= n; s++)
            assert_float_equal(dfs_sim_set_loss(n, 3, 3, s), choose(s, 3) / choose(n, 3), 1e-12);
    /* Erasure 4+2 among 14: lost with 3 or more of its 6 failed. */
    for (unsigned s = 0; s <= 14; s++) {
        double want = 0;
        for (unsigned j = 3; j <= 6 && j <= s; j++)
            want += choose(6, j) * choose(8, s - j) / choose(14, s);
        assert_float_equal(dfs_sim_set_loss(14, 6, 3, s), want, 1e-12);
    }
    assert_true(isnan(dfs_sim_set_loss(3, 4, 4, 1)));
    assert_true(isnan(dfs_sim_set_loss(10, 3, 0, 1)));
    /* 1 - (1-p)^count, also where the naive formula rounds to 0. */
    assert_float_equal(dfs_sim_any_of(0.5, 3), 0.875, 1e-15);
    assert_float_equal(dfs_sim_any_of(1e-18, 1e6), 1e-12, 1e-20);
    assert_float_equal(dfs_sim_any_of(1.0, 2), 1.0, 0);

    /* Disjoint blocks against every failure set. */
    static const uint32_t a[] = {3, 3, 3, 3}, b[] = {4, 5}, c[] = {6, 6, 3};
    struct {
        const uint32_t *sizes;
        size_t n;
        uint32_t nodes, t, s;
    } cases[] = {
        {a, 4, 12, 3, 5}, {a, 4, 14, 3, 7}, {b, 2, 12, 2, 4}, {b, 2, 9, 3, 6},
        {c, 3, 16, 3, 6}, {c, 3, 15, 2, 3}, {a, 4, 12, 1, 0}, {a, 4, 12, 3, 12},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct blocks_case bc = {cases[i].sizes, cases[i].n, cases[i].t, 0};
        unsigned long all = for_subsets(cases[i].nodes, cases[i].s, count_no_block_lost, &bc);
        double got = -1;
        assert_int_equal(dfs_sim_no_loss_blocks(cases[i].nodes, cases[i].sizes, cases[i].n,
                                                cases[i].t, cases[i].s, &got, NULL),
                         DFS_OK);
        assert_float_equal(got, (double)bc.good / (double)all, 1e-9);
    }
    char *err = NULL;
    double x = 0;
    assert_int_equal(dfs_sim_no_loss_blocks(8, a, 4, 3, 2, &x, &err), DFS_EINVAL);
    assert_non_null(err);
    free(err);
}

static dfs_sim *make(enum dfs_policy policy, uint32_t nodes, uint32_t w, uint32_t t, uint64_t units,
                     uint32_t per_file, uint64_t seed)
{
    struct dfs_sim_config cfg = {.nodes = nodes,
                                 .policy = policy,
                                 .width = w,
                                 .threshold = t,
                                 .units = units,
                                 .units_per_file = per_file,
                                 .seed = seed};
    dfs_sim *sim = NULL;
    char *err = NULL;
    int rc = dfs_sim_create(&cfg, &sim, &err);
    if (rc != DFS_OK)
        fail_msg("dfs_sim_create: %s", err != NULL ? err : "?");
    return sim;
}

static void test_bad_configurations_are_refused(void **state)
{
    (void)state;
    struct dfs_sim_config ok = {.nodes = 10,
                                .policy = DFS_POLICY_RANDOM,
                                .width = 3,
                                .threshold = 3,
                                .units = 8,
                                .units_per_file = 4};
    struct dfs_sim_config bad[6];
    for (int i = 0; i < 6; i++)
        bad[i] = ok;
    bad[0].nodes = 2;
    bad[1].threshold = 4;
    bad[2].threshold = 0;
    bad[3].units = 6;
    bad[4].policy = DFS_POLICY_UNSPECIFIED;
    bad[5].width = 0;
    for (int i = 0; i < 6; i++) {
        dfs_sim *sim = NULL;
        char *err = NULL;
        assert_int_equal(dfs_sim_create(&bad[i], &sim, &err), DFS_EINVAL);
        assert_null(sim);
        assert_non_null(err);
        free(err);
    }
    dfs_sim *sim = make(DFS_POLICY_RANDOM, 10, 3, 3, 8, 4, 1);
    uint32_t twice[] = {1, 1}, far[] = {10};
    uint64_t u = 0, f = 0;
    char *err = NULL;
    assert_int_equal(dfs_sim_count(sim, twice, 2, &u, &f, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    assert_int_equal(dfs_sim_count(sim, far, 1, &u, &f, &err), DFS_EINVAL);
    free(err);
    struct dfs_sim_tally t = {0};
    err = NULL;
    dfs_rng rng;
    dfs_rng_seed(&rng, 1);
    assert_int_equal(dfs_sim_trials(sim, 11, 1, &rng, &t, &err), DFS_EINVAL);
    free(err);
    dfs_sim_destroy(sim);
}

/* The count of dfs_sim_count equals a naive pass over every unit, for random failure sets. */
static void test_count_matches_naive(void **state)
{
    (void)state;
    enum dfs_policy pols[] = {DFS_POLICY_RANDOM, DFS_POLICY_MIN_COPY, DFS_POLICY_BUDDY,
                              DFS_POLICY_LEAST_USED};
    dfs_rng rng;
    dfs_rng_seed(&rng, 99);
    for (size_t p = 0; p < 4; p++) {
        uint32_t n = 17, w = 3, t = p == 2 ? 2 : 3, per_file = 4;
        uint64_t units = 400;
        dfs_sim *sim = make(pols[p], n, w, t, units, per_file, 5 + p);
        struct dfs_sim_info info;
        dfs_sim_info(sim, &info);
        assert_int_equal(info.units, units);
        assert_int_equal(info.files, units / per_file);
        for (uint64_t u = 0; u < units; u++) {
            const uint32_t *v = dfs_sim_unit_nodes(sim, u);
            for (uint32_t j = 0; j < w; j++) {
                assert_true(v[j] < n);
                if (j > 0)
                    assert_true(v[j - 1] < v[j]); /* distinct, ascending */
            }
        }
        for (int trial = 0; trial < 200; trial++) {
            uint32_t perm[17];
            for (uint32_t i = 0; i < n; i++)
                perm[i] = i;
            dfs_rng_shuffle_u32(&rng, perm, n);
            uint32_t s = (uint32_t)dfs_rng_below(&rng, n + 1);
            bool down[17] = {false};
            for (uint32_t i = 0; i < s; i++)
                down[perm[i]] = true;
            uint64_t want_u = 0, want_f = 0;
            for (uint64_t f = 0; f < units / per_file; f++) {
                bool file_lost = false;
                for (uint64_t u = f * per_file; u < (f + 1) * per_file; u++) {
                    const uint32_t *v = dfs_sim_unit_nodes(sim, u);
                    uint32_t d = 0;
                    for (uint32_t j = 0; j < w; j++)
                        d += down[v[j]];
                    if (d >= t) {
                        want_u++;
                        file_lost = true;
                    }
                }
                want_f += file_lost;
            }
            uint64_t got_u = 0, got_f = 0;
            assert_int_equal(dfs_sim_count(sim, perm, s, &got_u, &got_f, NULL), DFS_OK);
            assert_int_equal(got_u, want_u);
            assert_int_equal(got_f, want_f);
        }
        dfs_sim_destroy(sim);
    }
}

static double mean_unit(const struct dfs_sim_tally *t)
{
    return t->unit_frac_sum / (double)t->trials;
}

static double se_unit(const struct dfs_sim_tally *t)
{
    double n = (double)t->trials, m = mean_unit(t);
    return sqrt((t->unit_frac_sq / n - m * m) / (n - 1));
}

/* Every policy places w distinct nodes, so the expected fraction of units lost is the closed form
   for any layout: replication C(s,k)/C(N,k), erasure code the hypergeometric tail. */
static void test_unit_fraction_is_the_closed_form_for_every_policy(void **state)
{
    (void)state;
    enum dfs_policy pols[] = {DFS_POLICY_RANDOM, DFS_POLICY_MIN_COPY, DFS_POLICY_BUDDY,
                              DFS_POLICY_LEAST_USED};
    struct {
        uint32_t n, w, t, s;
    } cases[] = {{30, 3, 3, 8}, {20, 6, 3, 6}};
    for (size_t c = 0; c < 2; c++) {
        for (size_t p = 0; p < 4; p++) {
            dfs_sim *sim = make(pols[p], cases[c].n, cases[c].w, cases[c].t, 600, 1, 11 + p);
            struct dfs_sim_tally t = {0};
            dfs_rng rng;
            dfs_rng_seed(&rng, 21 + p + 10 * c);
            assert_int_equal(dfs_sim_trials(sim, cases[c].s, 6000, &rng, &t, NULL), DFS_OK);
            double want = dfs_sim_set_loss(cases[c].n, cases[c].w, cases[c].t, cases[c].s);
            double got = mean_unit(&t), se = se_unit(&t);
            assert_true(se < 0.1 * want);
            if (fabs(got - want) > 5 * se)
                fail_msg("%s case %zu: simulated %g, closed form %g (se %g)",
                         dfs_placement_policy_name(pols[p]), c, got, want, se);
            dfs_sim_destroy(sim);
        }
    }
}

/* random: P(any loss) = 1-(1-p)^units and the file fraction 1-(1-p)^F, averaged over layouts. */
static void test_random_any_loss_and_files(void **state)
{
    (void)state;
    uint32_t n = 30, s = 6;
    uint64_t units = 100;
    struct dfs_sim_tally t = {0};
    for (int l = 0; l < 40; l++) {
        dfs_sim *sim = make(DFS_POLICY_RANDOM, n, 3, 3, units, 4, 1000 + l);
        dfs_rng rng;
        dfs_rng_seed(&rng, 2000 + l);
        assert_int_equal(dfs_sim_trials(sim, s, 500, &rng, &t, NULL), DFS_OK);
        dfs_sim_destroy(sim);
    }
    double p = dfs_sim_set_loss(n, 3, 3, s);
    double any = (double)t.trials_with_loss / (double)t.trials;
    double want = dfs_sim_any_of(p, (double)units); /* 0.39 */
    if (fabs(any - want) > 0.04)
        fail_msg("random P(any loss): simulated %g, closed form %g", any, want);
    double files = t.file_frac_sum / (double)t.trials;
    double want_f = dfs_sim_any_of(p, 4);
    if (fabs(files - want_f) > 0.15 * want_f)
        fail_msg("random file fraction: simulated %g, closed form %g", files, want_f);
    /* The same trials see far more loss than min_copy's below, and far less than certain. */
    assert_true(any > 0.25 && any < 0.55);
}

/* min_copy, N a multiple of k: the copysets are disjoint, every one is used, and P(any loss) is
   exactly 1 - P(no copyset has k failed nodes). buddy saturated: P(some group has k failed). */
static void test_sets_any_loss_matches_the_blocks(void **state)
{
    (void)state;
    struct {
        enum dfs_policy policy;
        uint32_t n, s;
        uint64_t units;
    } cases[] = {{DFS_POLICY_MIN_COPY, 30, 8, 1000}, {DFS_POLICY_BUDDY, 24, 6, 6000}};
    for (size_t c = 0; c < 2; c++) {
        dfs_sim *sim = make(cases[c].policy, cases[c].n, 3, 3, cases[c].units, 4, 7);
        struct dfs_sim_info info;
        dfs_sim_info(sim, &info);
        uint32_t *sizes = NULL;
        size_t nb = 0;
        assert_int_equal(dfs_sim_blocks(sim, &sizes, &nb, NULL), DFS_OK);
        if (cases[c].policy == DFS_POLICY_MIN_COPY) {
            assert_true(info.disjoint);
            assert_int_equal(info.distinct_sets, cases[c].n / 3);
            assert_int_equal(nb, cases[c].n / 3);
        } else {
            assert_int_equal(nb, cases[c].n / 6);
            assert_int_equal(info.distinct_sets, nb * 20); /* every triple of every group */
        }
        double none = 0;
        assert_int_equal(dfs_sim_no_loss_blocks(cases[c].n, sizes, nb, 3, cases[c].s, &none, NULL),
                         DFS_OK);
        struct dfs_sim_tally t = {0};
        dfs_rng rng;
        dfs_rng_seed(&rng, 77 + c);
        assert_int_equal(dfs_sim_trials(sim, cases[c].s, 20000, &rng, &t, NULL), DFS_OK);
        double any = (double)t.trials_with_loss / (double)t.trials;
        if (fabs(any - (1 - none)) > 0.02)
            fail_msg("%s P(any loss): simulated %g, closed form %g",
                     dfs_placement_policy_name(cases[c].policy), any, 1 - none);
        free(sizes);
        dfs_sim_destroy(sim);
    }
    /* random keeps no sets. */
    dfs_sim *sim = make(DFS_POLICY_RANDOM, 9, 3, 3, 4, 4, 1);
    uint32_t *sizes = NULL;
    size_t nb = 0;
    char *err = NULL;
    assert_int_equal(dfs_sim_blocks(sim, &sizes, &nb, &err), DFS_EPRECOND);
    free(err);
    dfs_sim_destroy(sim);
}

/* Same seed, same layout: what makes a run replayable. */
static void test_same_seed_same_layout(void **state)
{
    (void)state;
    dfs_sim *a = make(DFS_POLICY_BUDDY, 40, 3, 3, 200, 4, 5);
    dfs_sim *b = make(DFS_POLICY_BUDDY, 40, 3, 3, 200, 4, 5);
    dfs_sim *c = make(DFS_POLICY_BUDDY, 40, 3, 3, 200, 4, 6);
    int differ = 0;
    for (uint64_t u = 0; u < 200; u++) {
        assert_memory_equal(dfs_sim_unit_nodes(a, u), dfs_sim_unit_nodes(b, u),
                            3 * sizeof(uint32_t));
        differ +=
            memcmp(dfs_sim_unit_nodes(a, u), dfs_sim_unit_nodes(c, u), 3 * sizeof(uint32_t)) != 0;
    }
    assert_true(differ > 100);
    dfs_sim_destroy(a);
    dfs_sim_destroy(b);
    dfs_sim_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_forms_match_enumeration),
        cmocka_unit_test(test_bad_configurations_are_refused),
        cmocka_unit_test(test_count_matches_naive),
        cmocka_unit_test(test_unit_fraction_is_the_closed_form_for_every_policy),
        cmocka_unit_test(test_random_any_loss_and_files),
        cmocka_unit_test(test_sets_any_loss_matches_the_blocks),
        cmocka_unit_test(test_same_seed_same_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
