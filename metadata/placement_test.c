/* Tests of placement: distinctness, coverage, uniformity, replay, exclusions, too few nodes. */
#include "metadata/placement.h"

#include "common/err.h"
#include "common/rng.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MAXN 64

/* n writable candidates named n0, n1, ... (ids only need to be distinct strings here). */
struct cluster {
    char names[MAXN][24];
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

static struct dfs_placement_request random_k(size_t k)
{
    return (struct dfs_placement_request){.policy = DFS_POLICY_RANDOM, .k = k};
}

static void choose_ok(const struct cluster *c, const struct dfs_placement_request *req,
                      dfs_rng *rng, size_t *out)
{
    char *msg = NULL;
    int rc = dfs_placement_choose(NULL, req, c->nodes, c->n, rng, out, &msg);
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

static void test_every_node_used(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 40);
    dfs_rng rng;
    dfs_rng_seed(&rng, 2);
    struct dfs_placement_request req = random_k(3);
    int seen[MAXN] = {0};
    size_t out[3];
    /* P(a node is never chosen in 2000 draws) = (37/40)^2000 < 1e-67. */
    for (int draw = 0; draw < 2000; draw++) {
        choose_ok(&c, &req, &rng, out);
        for (size_t i = 0; i < 3; i++)
            seen[out[i]]++;
    }
    for (size_t i = 0; i < c.n; i++)
        assert_true(seen[i] > 0);

    /* k == n is a permutation of all nodes. */
    size_t all[MAXN];
    req = random_k(c.n);
    choose_ok(&c, &req, &rng, all);
    assert_distinct_in_range(all, c.n, c.n);
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

static void test_same_seed_same_choice(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 24);
    dfs_rng a, b, other;
    dfs_rng_seed(&a, 42);
    dfs_rng_seed(&b, 42);
    dfs_rng_seed(&other, 43);
    struct dfs_placement_request req = random_k(3);
    int differ = 0;
    for (int draw = 0; draw < 200; draw++) {
        size_t x[3], y[3], z[3];
        choose_ok(&c, &req, &a, x);
        choose_ok(&c, &req, &b, y);
        choose_ok(&c, &req, &other, z);
        assert_memory_equal(x, y, sizeof x);
        differ += memcmp(x, z, sizeof x) != 0;
    }
    assert_true(differ > 150);
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
    /* Only n2, n4 and n7 remain eligible, each about 1000 times. */
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

static void expect_precond(const struct cluster *c, const struct dfs_placement_request *req,
                           const char *want)
{
    dfs_rng rng;
    dfs_rng_seed(&rng, 8);
    size_t out[8];
    char *msg = NULL;
    assert_int_equal(dfs_placement_choose(NULL, req, c->nodes, c->n, &rng, out, &msg),
                     DFS_EPRECOND);
    assert_non_null(msg);
    assert_string_equal(msg, want);
    free(msg);
}

static void test_too_few_nodes(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 3);
    c.nodes[2].writable = false;
    struct dfs_placement_request req = random_k(3);
    expect_precond(&c, &req, "need 3 distinct live storage nodes, 2 are available");

    cluster_init(&c, 2);
    c.nodes[1].writable = false;
    expect_precond(&c, &req, "need 3 distinct live storage nodes, 1 is available");

    const char *placed[] = {"n0", "n1", "n2"};
    cluster_init(&c, 3);
    req = (struct dfs_placement_request){
        .policy = DFS_POLICY_RANDOM, .k = 1, .placed = placed, .nplaced = 3};
    expect_precond(&c, &req,
                   "need 1 distinct live storage node, 0 are available (3 more already hold this "
                   "fragment or failed for it)");

    cluster_init(&c, 0);
    req = random_k(1);
    expect_precond(&c, &req, "need 1 distinct live storage node, 0 are available");
}

static void expect_einval(const struct dfs_placement_request *req, const struct cluster *c,
                          const char *fragment)
{
    dfs_rng rng;
    dfs_rng_seed(&rng, 9);
    size_t out[8];
    char *msg = NULL;
    assert_int_equal(dfs_placement_choose(NULL, req, c->nodes, c->n, &rng, out, &msg), DFS_EINVAL);
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
    expect_einval(&req, &c, "0 nodes");
    req = random_k(2);
    req.policy = DFS_POLICY_UNSPECIFIED;
    expect_einval(&req, &c, "no policy");
    req.policy = (enum dfs_policy)77;
    expect_einval(&req, &c, "no policy");
    req.policy = DFS_POLICY_MIN_COPY;
    expect_einval(&req, &c, "'min_copy' is not implemented yet");
    req.policy = DFS_POLICY_BUDDY;
    expect_einval(&req, &c, "'buddy' is not implemented yet");
    req.policy = DFS_POLICY_LEAST_USED;
    expect_einval(&req, &c, "'least_used' is not implemented yet");
    req = random_k(2);
    c.nodes[3].id = NULL;
    expect_einval(&req, &c, "candidate 3 has no node id");
    /* errmsg may be NULL. */
    dfs_rng rng;
    dfs_rng_seed(&rng, 1);
    size_t out[2];
    assert_int_equal(dfs_placement_choose(NULL, &req, c.nodes, c.n, &rng, out, NULL), DFS_EINVAL);
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
}

static void test_state_object(void **state)
{
    (void)state;
    dfs_placement *pl = NULL;
    assert_int_equal(dfs_placement_create(NULL, &pl, NULL), DFS_OK);
    assert_non_null(pl);
    /* Random placement ignores the group state but accepts it. */
    struct cluster c;
    cluster_init(&c, 4);
    struct dfs_placement_request req = random_k(2);
    dfs_rng rng;
    dfs_rng_seed(&rng, 10);
    size_t out[2];
    assert_int_equal(dfs_placement_choose(pl, &req, c.nodes, c.n, &rng, out, NULL), DFS_OK);
    assert_distinct_in_range(out, 2, 4);
    dfs_placement_destroy(pl);
    dfs_placement_destroy(NULL);

    struct dfs_placement_config cfg = {.scatter_width = 4, .group_size = 1};
    char *msg = NULL;
    pl = NULL;
    assert_int_equal(dfs_placement_create(&cfg, &pl, &msg), DFS_EINVAL);
    assert_null(pl);
    assert_non_null(msg);
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_picks_are_distinct),
        cmocka_unit_test(test_every_node_used),
        cmocka_unit_test(test_uniform_per_node),
        cmocka_unit_test(test_uniform_subsets_chi_square),
        cmocka_unit_test(test_loss_probability_matches_formula),
        cmocka_unit_test(test_same_seed_same_choice),
        cmocka_unit_test(test_exclusions_respected),
        cmocka_unit_test(test_exact_eligible_set),
        cmocka_unit_test(test_too_few_nodes),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_policy_names),
        cmocka_unit_test(test_state_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
