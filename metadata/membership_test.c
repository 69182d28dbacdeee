/* Tests of membership: the sweep's grace after a start, takeovers, operator transitions. */
#include "metadata/membership.h"

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

static void expect_msg(char **msg, const char *fragment)
{
    assert_non_null(*msg);
    if (strstr(*msg, fragment) == NULL)
        fail_msg("message '%s' lacks '%s'", *msg, fragment);
    free(*msg);
    *msg = NULL;
}

static enum dfs_node_state state_of(dfs_catalog *cat, int i)
{
    char id[DFS_ID_HEX + 1];
    dfs_testing_node_id(i, id);
    struct dfs_node_rec n;
    assert_int_equal(dfs_catalog_node_get(cat, id, &n, NULL), DFS_OK);
    return n.state;
}

/* A service started long after the last heartbeats: no node is suspect or dead at once. */
static void test_sweep_grace(void **state)
{
    (void)state;
    dfs_catalog *cat = dfs_testing_catalog();
    dfs_testing_register(cat, 2, 1000, T0);
    int64_t created = T0 + 100000; /* the nodes have been silent for 100 s already */
    char *msg = NULL;
    assert_int_equal(dfs_membership_sweep(cat, created, created + 2999, 3000, 10000, &msg), DFS_OK);
    assert_int_equal(state_of(cat, 0), DFS_NODE_ALIVE);
    /* Up for the suspect timeout: suspect, not dead. */
    assert_int_equal(dfs_membership_sweep(cat, created, created + 3000, 3000, 10000, &msg), DFS_OK);
    assert_int_equal(state_of(cat, 0), DFS_NODE_SUSPECT);
    /* A node heard since then stays alive. */
    dfs_testing_heartbeat(cat, 1, 1000, created + 9000);
    assert_int_equal(dfs_membership_sweep(cat, created, created + 9999, 3000, 10000, &msg), DFS_OK);
    assert_int_equal(state_of(cat, 0), DFS_NODE_SUSPECT);
    assert_int_equal(state_of(cat, 1), DFS_NODE_ALIVE);
    /* Up for the dead timeout: dead. */
    assert_int_equal(dfs_membership_sweep(cat, created, created + 10000, 3000, 10000, &msg),
                     DFS_OK);
    assert_int_equal(state_of(cat, 0), DFS_NODE_DEAD);
    assert_int_equal(state_of(cat, 1), DFS_NODE_ALIVE);
    /* The sweep's own refusal comes back. */
    assert_int_equal(dfs_membership_sweep(cat, created, created + 20000, 3000, 1000, &msg),
                     DFS_EINVAL);
    free(msg);
    dfs_catalog_close(cat);
}

static void test_live_elsewhere(void **state)
{
    (void)state;
    struct dfs_node_rec old = {
        .address = "10.0.0.1:7000", .last_heartbeat_ms = T0, .registration = 5};
    int64_t silent = -1;
    assert_true(dfs_membership_live_elsewhere(&old, "10.0.0.2:7000", T0 + 2999, 3000, &silent));
    assert_int_equal(silent, 2999);
    assert_false(dfs_membership_live_elsewhere(&old, "10.0.0.2:7000", T0 + 3000, 3000, &silent));
    assert_false(dfs_membership_live_elsewhere(&old, "10.0.0.1:7000", T0 + 1, 3000, NULL));
    old.registration = 0; /* never registered since schema version 5 */
    assert_false(dfs_membership_live_elsewhere(&old, "10.0.0.2:7000", T0 + 1, 3000, NULL));
}

static int set(dfs_catalog *cat, int i, enum dfs_node_state want, bool force, char **msg)
{
    char id[DFS_ID_HEX + 1];
    dfs_testing_node_id(i, id);
    struct dfs_node_rec n;
    int rc = dfs_membership_set_state(cat, id, want, force, &n, msg);
    if (rc == DFS_OK)
        assert_string_equal(n.id, id);
    return rc;
}

static void test_set_state(void **state)
{
    (void)state;
    dfs_catalog *cat = dfs_testing_catalog();
    dfs_testing_register(cat, 4, 1000, T0);
    struct dfs_redundancy k1 = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 1, .fragments = 1};
    struct dfs_redundancy k2 = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 2, .fragments = 1};
    dfs_catalog_file_rec_free(
        dfs_testing_put(cat, "/only-on-0", 10, &k1, DFS_POLICY_RANDOM, (int[]){0}, T0));
    dfs_catalog_file_rec_free(
        dfs_testing_put(cat, "/on-1-and-2", 10, &k2, DFS_POLICY_RANDOM, (int[]){1, 2}, T0));
    char *msg = NULL;

    /* Only draining, decommissioned or alive. */
    assert_int_equal(set(cat, 0, DFS_NODE_DEAD, false, &msg), DFS_EINVAL);
    expect_msg(&msg, "not dead");
    /* Decommissioning node 0 would lose /only-on-0: refused, unless forced. */
    assert_int_equal(set(cat, 0, DFS_NODE_DECOMMISSIONED, false, &msg), DFS_EPRECOND);
    expect_msg(&msg, "holds the only readable copies of 1 file (/only-on-0)");
    assert_int_equal(
        dfs_membership_decommission_check(cat, "ffffffffffffffffffffffffffffffff", &msg), DFS_OK);
    /* Node 1's copy has another on node 2: decommissioning loses nothing. */
    char n1[DFS_ID_HEX + 1];
    dfs_testing_node_id(1, n1);
    assert_int_equal(dfs_membership_decommission_check(cat, n1, &msg), DFS_OK);
    /* Draining a node that holds copies: it stays draining. */
    assert_int_equal(set(cat, 1, DFS_NODE_DRAINING, false, &msg), DFS_OK);
    assert_int_equal(state_of(cat, 1), DFS_NODE_DRAINING);
    /* Node 2 may go: the draining node's copy stays readable. */
    assert_int_equal(set(cat, 2, DFS_NODE_DECOMMISSIONED, false, &msg), DFS_OK);
    assert_int_equal(state_of(cat, 2), DFS_NODE_DECOMMISSIONED);
    /* Back to alive; an empty node drained retires at once. */
    assert_int_equal(set(cat, 1, DFS_NODE_ALIVE, false, &msg), DFS_OK);
    assert_int_equal(state_of(cat, 1), DFS_NODE_ALIVE);
    assert_int_equal(set(cat, 3, DFS_NODE_DRAINING, false, &msg), DFS_OK);
    assert_int_equal(state_of(cat, 3), DFS_NODE_DECOMMISSIONED);
    /* No drain of a decommissioned node; forced decommissioning of node 0. */
    assert_int_equal(set(cat, 3, DFS_NODE_DRAINING, false, &msg), DFS_EPRECOND);
    expect_msg(&msg, "set it alive before draining it");
    assert_int_equal(set(cat, 0, DFS_NODE_DECOMMISSIONED, true, &msg), DFS_OK);
    assert_int_equal(state_of(cat, 0), DFS_NODE_DECOMMISSIONED);
    /* The same state again changes nothing. */
    assert_int_equal(set(cat, 0, DFS_NODE_DECOMMISSIONED, false, &msg), DFS_OK);

    /* Heartbeats decide for dead and suspect nodes; a dead one cannot drain. */
    dfs_testing_heartbeat(cat, 1, 1000, T0 + 20000);
    assert_int_equal(dfs_catalog_nodes_sweep(cat, T0 + 20000, 3000, 10000, NULL, NULL, NULL),
                     DFS_OK);
    assert_int_equal(state_of(cat, 1), DFS_NODE_ALIVE);
    assert_int_equal(set(cat, 2, DFS_NODE_ALIVE, false, &msg), DFS_OK); /* decommissioned: ok */
    assert_int_equal(dfs_catalog_nodes_sweep(cat, T0 + 40000, 3000, 50000, NULL, NULL, NULL),
                     DFS_OK);
    assert_int_equal(state_of(cat, 2), DFS_NODE_SUSPECT);
    assert_int_equal(set(cat, 2, DFS_NODE_ALIVE, false, &msg), DFS_EPRECOND);
    expect_msg(&msg, "heartbeats decide");
    assert_int_equal(dfs_catalog_nodes_sweep(cat, T0 + 60000, 3000, 50000, NULL, NULL, NULL),
                     DFS_OK);
    assert_int_equal(state_of(cat, 2), DFS_NODE_DEAD);
    assert_int_equal(set(cat, 2, DFS_NODE_DRAINING, false, &msg), DFS_EPRECOND);
    expect_msg(&msg, "nothing to read from it");

    /* Prefixes: a unique one works, an unknown one is not found. */
    struct dfs_node_rec n;
    assert_int_equal(dfs_membership_set_state(cat, "ffff", DFS_NODE_ALIVE, false, &n, &msg),
                     DFS_ENOTFOUND);
    free(msg);
    dfs_catalog_close(cat);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep_grace),
        cmocka_unit_test(test_live_elsewhere),
        cmocka_unit_test(test_set_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
