/* Tests of put plans: redundancy and policy defaults, layouts, CreateFile and ReplaceTarget. */
#include "metadata/putplan.h"

#include "common/err.h"
#include "common/id.h"
#include "metadata/catalog_testing.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define T0 1000000

static const struct dfs_put_defaults defaults = {
    .replicas = 3, .fragments = 4, .policy = DFS_POLICY_BUDDY};

static void expect_msg(char **msg, const char *fragment)
{
    assert_non_null(*msg);
    if (strstr(*msg, fragment) == NULL)
        fail_msg("message '%s' lacks '%s'", *msg, fragment);
    free(*msg);
    *msg = NULL;
}

static void test_resolve(void **state)
{
    (void)state;
    struct dfs_redundancy out;
    char *msg = NULL;
    /* Nothing asked: the defaults. */
    struct dfs_redundancy asked = {0};
    assert_int_equal(dfs_putplan_redundancy(&asked, &defaults, &out, &msg), DFS_OK);
    assert_int_equal(out.scheme, DFS_SCHEME_REPLICATION);
    assert_int_equal(out.replicas, 3);
    assert_int_equal(out.fragments, 4);
    /* Replication with one count: the other defaulted. */
    asked = (struct dfs_redundancy){.scheme = DFS_SCHEME_REPLICATION, .replicas = 2};
    assert_int_equal(dfs_putplan_redundancy(&asked, &defaults, &out, &msg), DFS_OK);
    assert_int_equal(out.replicas, 2);
    assert_int_equal(out.fragments, 4);
    /* Data or parity counts without a scheme: erasure code. */
    asked = (struct dfs_redundancy){.data = 4, .parity = 2};
    assert_int_equal(dfs_putplan_redundancy(&asked, &defaults, &out, &msg), DFS_OK);
    assert_int_equal(out.scheme, DFS_SCHEME_ERASURE);
    assert_int_equal(out.data, 4);
    assert_int_equal(out.parity, 2);
    assert_int_equal(out.replicas, 0);
    asked = (struct dfs_redundancy){.parity = 2};
    assert_int_equal(dfs_putplan_redundancy(&asked, &defaults, &out, &msg), DFS_EINVAL);
    expect_msg(&msg, "at least 1 data fragment");
    asked = (struct dfs_redundancy){.scheme = (enum dfs_scheme)7};
    assert_int_equal(dfs_putplan_redundancy(&asked, &defaults, &out, &msg), DFS_EINVAL);
    expect_msg(&msg, "unknown redundancy scheme 7");
    asked = (struct dfs_redundancy){.scheme = DFS_SCHEME_REPLICATION, .replicas = 17};
    assert_int_equal(dfs_putplan_redundancy(&asked, &defaults, &out, &msg), DFS_EINVAL);
    free(msg);
    msg = NULL;

    enum dfs_policy p = DFS_POLICY_UNSPECIFIED;
    assert_int_equal(dfs_putplan_policy(0, &defaults, &p, &msg), DFS_OK);
    assert_int_equal(p, DFS_POLICY_BUDDY);
    assert_int_equal(dfs_putplan_policy(DFS_POLICY_LEAST_USED, &defaults, &p, &msg), DFS_OK);
    assert_int_equal(p, DFS_POLICY_LEAST_USED);
    assert_int_equal(dfs_putplan_policy(5, &defaults, &p, &msg), DFS_EINVAL);
    expect_msg(&msg, "unknown placement policy 5");
    assert_int_equal(dfs_putplan_policy(-1, &defaults, &p, NULL), DFS_EINVAL);
}

static void test_layout(void **state)
{
    (void)state;
    uint64_t fsz = 0;
    uint32_t cell = 9;
    struct dfs_redundancy rep = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 3, .fragments = 4};
    assert_int_equal(dfs_putplan_layout(10, &rep, &fsz, &cell), DFS_OK);
    assert_int_equal(fsz, 3);
    assert_int_equal(cell, 0);
    assert_int_equal(dfs_putplan_layout(0, &rep, &fsz, &cell), DFS_OK);
    assert_int_equal(fsz, 0);
    struct dfs_redundancy ec = {.scheme = DFS_SCHEME_ERASURE, .data = 4, .parity = 2};
    assert_int_equal(dfs_putplan_layout(1, &ec, &fsz, &cell), DFS_OK);
    assert_int_equal(cell, 64);
    assert_int_equal(fsz, 64);
    assert_int_equal(dfs_putplan_layout((9u << 20) + 1, &ec, &fsz, &cell), DFS_OK);
    assert_int_equal(cell, 1u << 20);
    assert_int_equal(fsz, 3u << 20);
    assert_int_equal(dfs_putplan_layout((uint64_t)INT64_MAX + 1, &rep, &fsz, &cell), DFS_EINVAL);
}

struct env {
    dfs_catalog *cat;
    dfs_placer *placer;
};

static void env_open(struct env *e, int nodes)
{
    e->cat = dfs_testing_catalog();
    dfs_testing_register(e->cat, nodes, 1u << 30, T0);
    struct dfs_placer_config pc = {.seed = 5};
    char *msg = NULL;
    if (dfs_placer_create(e->cat, &pc, &e->placer, &msg) != DFS_OK)
        fail_msg("placer: %s", msg);
}

static void env_close(struct env *e)
{
    dfs_placer_destroy(e->placer);
    dfs_catalog_close(e->cat);
}

static int create(struct env *e, const char *path, uint64_t size, const struct dfs_redundancy *red,
                  enum dfs_policy policy, struct dfs_file_rec **out, char **msg)
{
    struct dfs_put_spec spec = {
        .path = path, .size = size, .redundancy = *red, .policy = policy, .expires_ms = T0 + 60000};
    assert_int_equal(dfs_putplan_layout(size, red, &spec.fragment_size, &spec.cell_size), DFS_OK);
    return dfs_putplan_create(e->cat, e->placer, &spec, T0, out, msg);
}

static bool same_node(const struct dfs_replica_rec *a, const struct dfs_replica_rec *b)
{
    return strcmp(a->node_id, b->node_id) == 0;
}

static void test_create(void **state)
{
    (void)state;
    struct env e;
    env_open(&e, 5);
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    /* Replication: sizes as cut, k distinct nodes each, the bytes reserved. */
    struct dfs_redundancy rep = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 3, .fragments = 4};
    assert_int_equal(create(&e, "/a", 10, &rep, DFS_POLICY_RANDOM, &f, &msg), DFS_OK);
    assert_int_equal(f->state, DFS_FILE_PENDING);
    assert_int_equal(f->expires_ms, T0 + 60000);
    assert_int_equal(f->created_ms, T0);
    assert_int_equal(f->nfragments, 4);
    uint64_t want[4] = {3, 3, 3, 1};
    for (size_t i = 0; i < 4; i++) {
        const struct dfs_fragment_rec *fr = &f->fragments[i];
        assert_int_equal(fr->size, want[i]);
        assert_int_equal(fr->nreplicas, 3);
        assert_false(same_node(&fr->replicas[0], &fr->replicas[1]));
        assert_false(same_node(&fr->replicas[0], &fr->replicas[2]));
        assert_false(same_node(&fr->replicas[1], &fr->replicas[2]));
    }
    size_t n = 0;
    struct dfs_node_rec *nodes = dfs_testing_nodes(e.cat, &n);
    uint64_t reserved = 0;
    for (size_t i = 0; i < n; i++)
        reserved += dfs_placer_reserved(e.placer, &nodes[i]);
    assert_int_equal(reserved, 3 * 10);
    free(nodes);
    dfs_catalog_file_rec_free(f);

    /* Erasure code: K+M fragments on distinct nodes, each one cell. */
    struct dfs_redundancy ec = {.scheme = DFS_SCHEME_ERASURE, .data = 3, .parity = 2};
    assert_int_equal(create(&e, "/e", 100, &ec, DFS_POLICY_MIN_COPY, &f, &msg), DFS_OK);
    assert_int_equal(f->nfragments, 5);
    assert_int_equal(f->cell_size, 64);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(f->fragments[i].size, 64);
        assert_int_equal(f->fragments[i].nreplicas, 1);
        for (size_t j = 0; j < i; j++)
            assert_false(same_node(&f->fragments[i].replicas[0], &f->fragments[j].replicas[0]));
    }
    dfs_catalog_file_rec_free(f);

    /* Too wide for the live nodes. */
    struct dfs_redundancy wide = {.scheme = DFS_SCHEME_ERASURE, .data = 4, .parity = 2};
    f = NULL;
    assert_int_equal(create(&e, "/w", 100, &wide, DFS_POLICY_RANDOM, &f, &msg), DFS_EPRECOND);
    expect_msg(&msg, "need 6 distinct live storage nodes");
    assert_null(f);
    env_close(&e);
}

static void test_replace(void **state)
{
    (void)state;
    struct env e;
    env_open(&e, 6);
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    struct dfs_redundancy rep = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 3, .fragments = 1};
    assert_int_equal(create(&e, "/a", 10, &rep, DFS_POLICY_RANDOM, &f, &msg), DFS_OK);
    const struct dfs_fragment_rec *fr = &f->fragments[0];
    struct dfs_replica_rec chosen, *others = NULL;
    size_t nothers = 9;
    /* Chain: the new target, and the other two targets for the forward tickets. */
    assert_int_equal(dfs_putplan_replace(e.cat, e.placer, f->file_id, 0, fr->replicas[1].node_id,
                                         true, T0 + 1, &chosen, &others, &nothers, &msg),
                     DFS_OK);
    for (size_t i = 0; i < 3; i++)
        assert_false(same_node(&chosen, &fr->replicas[i]));
    assert_int_equal(nothers, 2);
    assert_true(same_node(&others[0], &fr->replicas[0]));
    assert_true(same_node(&others[1], &fr->replicas[2]));
    free(others);
    /* Without chain: no others. The node that failed before stays excluded. */
    struct dfs_replica_rec second;
    assert_int_equal(dfs_putplan_replace(e.cat, e.placer, f->file_id, 0, chosen.node_id, false,
                                         T0 + 2, &second, &others, &nothers, &msg),
                     DFS_OK);
    assert_null(others);
    assert_int_equal(nothers, 0);
    for (size_t i = 0; i < 3; i++)
        assert_false(same_node(&second, &fr->replicas[i]));
    assert_false(same_node(&second, &chosen));
    /* No such fragment; no such file. */
    assert_int_equal(dfs_putplan_replace(e.cat, e.placer, f->file_id, 1, second.node_id, false,
                                         T0 + 3, &second, &others, &nothers, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "has no fragment 1");
    char nobody[DFS_ID_HEX + 1];
    memset(nobody, 'f', DFS_ID_HEX);
    nobody[DFS_ID_HEX] = '\0';
    assert_int_equal(dfs_putplan_replace(e.cat, e.placer, nobody, 0, second.node_id, true, T0 + 3,
                                         &second, &others, &nothers, &msg),
                     DFS_ENOTFOUND);
    assert_null(others);
    free(msg);
    msg = NULL;
    dfs_catalog_file_rec_free(f);

    /* A committed file: refused. */
    struct dfs_file_rec *c =
        dfs_testing_put(e.cat, "/c", 10, &rep, DFS_POLICY_RANDOM, (int[]){0, 1, 2}, T0);
    assert_int_equal(dfs_putplan_replace(e.cat, e.placer, c->file_id, 0,
                                         c->fragments[0].replicas[0].node_id, false, T0 + 4,
                                         &chosen, &others, &nothers, &msg),
                     DFS_EPRECOND);
    expect_msg(&msg, "already committed");
    dfs_catalog_file_rec_free(c);

    /* Erasure code: never a node of the file. */
    struct dfs_redundancy ec = {.scheme = DFS_SCHEME_ERASURE, .data = 2, .parity = 1};
    assert_int_equal(create(&e, "/e", 100, &ec, DFS_POLICY_RANDOM, &f, &msg), DFS_OK);
    assert_int_equal(dfs_putplan_replace(e.cat, e.placer, f->file_id, 1,
                                         f->fragments[1].replicas[0].node_id, true, T0 + 5, &chosen,
                                         &others, &nothers, &msg),
                     DFS_OK);
    assert_null(others);
    for (size_t i = 0; i < 3; i++)
        assert_false(same_node(&chosen, &f->fragments[i].replicas[0]));
    dfs_catalog_file_rec_free(f);
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_replace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
