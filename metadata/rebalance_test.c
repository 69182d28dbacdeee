/* Tests of rebalancing: when moves are queued, from where, to where, and how many. */
#include "metadata/rebalance.h"

#include "common/err.h"
#include "metadata/catalog_testing.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define T0 1000000

struct env {
    dfs_catalog *cat;
    dfs_placer *placer;
};

static void env_open(struct env *e, int nodes)
{
    e->cat = dfs_testing_catalog();
    dfs_testing_register(e->cat, nodes, 1u << 30, T0);
    struct dfs_placer_config pc = {.seed = 9};
    char *msg = NULL;
    if (dfs_placer_create(e->cat, &pc, &e->placer, &msg) != DFS_OK)
        fail_msg("placer: %s", msg);
}

static void env_close(struct env *e)
{
    dfs_placer_destroy(e->placer);
    dfs_catalog_close(e->cat);
}

/* Files of 1000 bytes, k = 2, on (0, 1), (0, 2), ... (0, n - 1), `rounds` times. */
static void fill(struct env *e, int n, int rounds)
{
    struct dfs_redundancy red = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 2, .fragments = 1};
    for (int r = 0; r < rounds; r++)
        for (int i = 1; i < n; i++) {
            char path[32];
            snprintf(path, sizeof path, "/f%d-%d", r, i);
            dfs_catalog_file_rec_free(
                dfs_testing_put(e->cat, path, 1000, &red, DFS_POLICY_RANDOM, (int[]){0, i}, T0));
        }
}

static size_t step(struct env *e, int32_t pct, uint32_t max)
{
    size_t n = 0;
    struct dfs_node_rec *nodes = dfs_testing_nodes(e->cat, &n);
    struct dfs_rebalance_config cfg = {.threshold_pct = pct, .max = max};
    size_t moves = 99;
    char *msg = NULL;
    if (dfs_rebalance_step(e->cat, e->placer, nodes, n, &cfg, T0 + 1, &moves, &msg) != DFS_OK)
        fail_msg("rebalance: %s", msg);
    free(nodes);
    return moves;
}

static struct dfs_repair_rec *rows(dfs_catalog *cat, size_t *n)
{
    struct dfs_repair_rec *v = NULL;
    char *msg = NULL;
    if (dfs_catalog_repairs_list(cat, &v, n, &msg) != DFS_OK)
        fail_msg("list: %s", msg);
    return v;
}

/* The fullest node's copies move, at most max of them, never onto a node holding the fragment. */
static void test_moves(void **state)
{
    (void)state;
    struct env e;
    env_open(&e, 4);
    fill(&e, 4, 2); /* node 0: 6000 bytes, the others 2000: mean 3000 */
    assert_int_equal(step(&e, 10, 2), 2);
    size_t n = 0;
    struct dfs_repair_rec *v = rows(e.cat, &n);
    assert_int_equal(n, 2);
    char n0[DFS_ID_HEX + 1];
    dfs_testing_node_id(0, n0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v[i].reason, DFS_REPAIR_REBALANCE);
        assert_string_equal(v[i].from_node, n0);
        assert_string_not_equal(v[i].target_node, n0);
        assert_int_equal(v[i].queued_ms, T0 + 1);
        /* The target holds no copy of the fragment. */
        char file_id[DFS_ID_HEX + 1];
        memcpy(file_id, v[i].fragment_id, DFS_ID_HEX);
        file_id[DFS_ID_HEX] = '\0';
        struct dfs_file_rec *f = NULL;
        assert_int_equal(dfs_catalog_file_get_id(e.cat, file_id, &f, NULL), DFS_OK);
        for (size_t r = 0; r < f->fragments[0].nreplicas; r++)
            assert_string_not_equal(f->fragments[0].replicas[r].node_id, v[i].target_node);
        dfs_catalog_file_rec_free(f);
    }
    free(v);
    /* Moves queued: the next check waits for them (the queue is not empty). */
    assert_int_equal(step(&e, 10, 2), 0);
    env_close(&e);
}

/* Disabled, balanced, or only one alive node: nothing moves. */
static void test_no_moves(void **state)
{
    (void)state;
    struct env e;
    env_open(&e, 4);
    fill(&e, 4, 2);
    assert_int_equal(step(&e, -1, 4), 0);
    assert_int_equal(step(&e, 100, 4), 0); /* 6000 is not above 3000 * 2 */
    size_t n = 0;
    free(rows(e.cat, &n));
    assert_int_equal(n, 0);
    env_close(&e);

    env_open(&e, 3);
    struct dfs_redundancy red = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 3, .fragments = 1};
    dfs_catalog_file_rec_free(
        dfs_testing_put(e.cat, "/a", 1000, &red, DFS_POLICY_RANDOM, (int[]){0, 1, 2}, T0));
    assert_int_equal(step(&e, 0, 4), 0); /* every node holds the same */
    dfs_testing_set_state(e.cat, 1, DFS_NODE_DRAINING);
    dfs_testing_set_state(e.cat, 2, DFS_NODE_DRAINING);
    assert_int_equal(step(&e, 0, 4), 0); /* one alive node */
    env_close(&e);
}

/* A move must narrow the spread: 1000 bytes from a node with 1000 to one with 0 does not. */
static void test_strictly_narrower(void **state)
{
    (void)state;
    struct env e;
    env_open(&e, 2);
    struct dfs_redundancy red = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 1, .fragments = 1};
    dfs_catalog_file_rec_free(
        dfs_testing_put(e.cat, "/a", 1000, &red, DFS_POLICY_RANDOM, (int[]){0}, T0));
    assert_int_equal(step(&e, 10, 4), 0);
    /* Two such files: one moves, and only one (the second would undo the gain). */
    dfs_catalog_file_rec_free(
        dfs_testing_put(e.cat, "/b", 1000, &red, DFS_POLICY_RANDOM, (int[]){0}, T0));
    for (int i = 0; i < 8; i++) { /* whatever the placer draws first */
        size_t n = 0;
        struct dfs_repair_rec *v = rows(e.cat, &n);
        if (n == 0)
            assert_true(step(&e, 10, 4) <= 1);
        free(v);
    }
    size_t n = 0;
    free(rows(e.cat, &n));
    assert_int_equal(n, 1);
    env_close(&e);
}

/* A repair waiting in the queue comes first. */
static void test_repairs_first(void **state)
{
    (void)state;
    struct env e;
    env_open(&e, 4);
    fill(&e, 4, 2);
    struct dfs_redundancy red = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 2, .fragments = 1};
    struct dfs_file_rec *f =
        dfs_testing_put(e.cat, "/x", 10, &red, DFS_POLICY_RANDOM, (int[]){1, 2}, T0);
    bool queued = false;
    assert_int_equal(dfs_catalog_repair_queue(e.cat, f->fragments[0].fragment_id,
                                              DFS_REPAIR_MISSING, NULL, NULL, T0, &queued, NULL),
                     DFS_OK);
    assert_true(queued);
    assert_int_equal(step(&e, 10, 4), 0);
    dfs_catalog_file_rec_free(f);
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moves),
        cmocka_unit_test(test_no_moves),
        cmocka_unit_test(test_strictly_narrower),
        cmocka_unit_test(test_repairs_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
