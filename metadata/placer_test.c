/* Tests of the placer: node states as candidates, reservations, saved placement sets. */
#include "metadata/placer.h"

#include "common/err.h"
#include "metadata/catalog_testing.h"

#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define T0 1000000

static dfs_placer *placer(dfs_catalog *cat, uint64_t seed)
{
    struct dfs_placer_config cfg = {.seed = seed};
    dfs_placer *p = NULL;
    char *msg = NULL;
    if (dfs_placer_create(cat, &cfg, &p, &msg) != DFS_OK)
        fail_msg("placer: %s", msg);
    assert_int_equal(dfs_placer_seed(p), seed);
    return p;
}

/* One node of a least_used choice of 1 over the catalog's nodes now. */
static int choose_one(dfs_placer *p, dfs_catalog *cat, uint64_t bytes, int64_t now)
{
    size_t n = 0;
    struct dfs_node_rec *nodes = dfs_testing_nodes(cat, &n);
    struct dfs_placement_request req = {.policy = DFS_POLICY_LEAST_USED, .k = 1};
    const char *out = NULL;
    char *msg = NULL;
    if (dfs_placer_choose(p, &req, bytes, nodes, n, now, &out, NULL, &msg) != DFS_OK)
        fail_msg("choose: %s", msg);
    int which = -1;
    for (int i = 0; i < (int)n; i++) {
        char id[DFS_ID_HEX + 1];
        dfs_testing_node_id(i, id);
        if (strcmp(id, out) == 0)
            which = i;
    }
    free(nodes);
    return which;
}

static uint64_t reserved(dfs_placer *p, dfs_catalog *cat, int i)
{
    size_t n = 0;
    struct dfs_node_rec *nodes = dfs_testing_nodes(cat, &n);
    uint64_t r = dfs_placer_reserved(p, &nodes[i]);
    free(nodes);
    return r;
}

/* least_used sees reported free space less the bytes planned since; a newer report resets it. */
static void test_reservations(void **state)
{
    (void)state;
    dfs_catalog *cat = dfs_testing_catalog();
    dfs_testing_register(cat, 3, 1000, T0);
    dfs_testing_heartbeat(cat, 1, 900, T0);
    dfs_testing_heartbeat(cat, 2, 800, T0);
    dfs_placer *p = placer(cat, 7);
    assert_int_equal(choose_one(p, cat, 500, T0), 0); /* 1000 900 800 */
    assert_int_equal(reserved(p, cat, 0), 500);
    assert_int_equal(choose_one(p, cat, 500, T0), 1); /* 500 900 800 */
    assert_int_equal(choose_one(p, cat, 500, T0), 2); /* 500 400 800 */
    assert_int_equal(choose_one(p, cat, 50, T0), 0);  /* 500 400 300 */
    assert_int_equal(reserved(p, cat, 0), 550);
    /* More than a node has: its view stops at 0. */
    assert_int_equal(choose_one(p, cat, 5000, T0), 0); /* 450 400 300 */
    assert_int_equal(reserved(p, cat, 0), 5550);
    assert_int_equal(choose_one(p, cat, 1, T0), 1); /* 0 400 300 */
    /* A heartbeat brings new figures: node 2's count starts again. */
    dfs_testing_heartbeat(cat, 2, 800, T0 + 1000);
    assert_int_equal(reserved(p, cat, 2), 0);
    assert_int_equal(choose_one(p, cat, 1, T0 + 1000), 2); /* 0 399 800 */
    assert_int_equal(reserved(p, cat, 2), 1);
    /* The same report again (no newer heartbeat) keeps the count. */
    assert_int_equal(reserved(p, cat, 2), 1);
    dfs_placer_destroy(p);
    dfs_catalog_close(cat);
}

/* A family saved in the catalog, as one sorted string of its sets ("" when none is saved). */
static void saved(dfs_catalog *cat, char *buf, size_t cap)
{
    struct dfs_placement_state *v = NULL;
    size_t n = 0;
    char *msg = NULL;
    if (dfs_catalog_placement_load(cat, &v, &n, &msg) != DFS_OK)
        fail_msg("load: %s", msg);
    buf[0] = '\0';
    size_t len = 0;
    for (size_t f = 0; f < n; f++)
        for (size_t s = 0; s < v[f].nsets; s++) {
            for (size_t m = 0; m < v[f].sets[s].nnodes; m++)
                len += (size_t)snprintf(buf + len, cap - len, "%s%s", m == 0 ? "" : ",",
                                        v[f].sets[s].node_ids[m] + DFS_ID_HEX - 2);
            len += (size_t)snprintf(buf + len, cap - len, ";");
        }
    dfs_placement_states_free(v, n);
}

/* A min_copy choice of 3 among the nodes as given; returns the node numbers as a bit set. */
static unsigned choose_min_copy(dfs_placer *p, const struct dfs_node_rec *nodes, size_t n,
                                int64_t now, int want)
{
    struct dfs_placement_request req = {.policy = DFS_POLICY_MIN_COPY, .k = 3};
    const char *out[3] = {NULL};
    char *msg = NULL;
    int rc = dfs_placer_choose(p, &req, 10, nodes, n, now, out, NULL, &msg);
    if (rc != want)
        fail_msg("choose: %d %s", rc, msg != NULL ? msg : "");
    free(msg);
    unsigned set = 0;
    for (size_t k = 0; rc == DFS_OK && k < 3; k++)
        for (size_t i = 0; i < n; i++)
            if (out[k] == nodes[i].id)
                set |= 1u << i;
    return set;
}

/* Suspect nodes keep their copyset but take nothing; dead and draining ones leave the sets. */
static void test_node_states(void **state)
{
    (void)state;
    dfs_catalog *cat = dfs_testing_catalog();
    dfs_testing_register(cat, 6, 1000, T0);
    dfs_placer *p = placer(cat, 11);
    size_t n = 0;
    struct dfs_node_rec *nodes = dfs_testing_nodes(cat, &n);
    char before[512], after[512];
    unsigned first = choose_min_copy(p, nodes, n, T0, DFS_OK);
    saved(cat, before, sizeof before);
    assert_int_equal(strlen(before), 6 * 2 + 4 + 2); /* two copysets of three */
    /* A suspect member: its copyset takes nothing, the sets are kept (nothing saved anew). */
    int sus = __builtin_ctz(first);
    nodes[sus].state = DFS_NODE_SUSPECT;
    for (int i = 0; i < 20; i++) {
        unsigned got = choose_min_copy(p, nodes, n, T0, DFS_OK);
        assert_int_equal(got & first, 0);
    }
    saved(cat, after, sizeof after);
    assert_string_equal(before, after);
    /* Both copysets with a suspect member: no copyset can take a placement. */
    int other = __builtin_ctz(~first & 0x3f);
    nodes[other].state = DFS_NODE_SUSPECT;
    choose_min_copy(p, nodes, n, T0, DFS_EPRECOND);
    /* A dead member leaves the sets: the family is repaired and saved without it. */
    nodes[other].state = DFS_NODE_DEAD;
    nodes[sus].state = DFS_NODE_ALIVE;
    choose_min_copy(p, nodes, n, T0, DFS_OK);
    saved(cat, after, sizeof after);
    assert_string_not_equal(before, after);
    char gone[3];
    snprintf(gone, sizeof gone, "%s", nodes[other].id + DFS_ID_HEX - 2);
    assert_null(strstr(after, gone));
    /* Draining likewise. */
    nodes[sus].state = DFS_NODE_DRAINING;
    choose_min_copy(p, nodes, n, T0, DFS_OK);
    saved(cat, after, sizeof after);
    snprintf(gone, sizeof gone, "%s", nodes[sus].id + DFS_ID_HEX - 2);
    assert_null(strstr(after, gone));
    free(nodes);
    dfs_placer_destroy(p);
    dfs_catalog_close(cat);
}

/* A new placer (another seed) uses the sets the catalog keeps instead of drawing new ones. */
static void test_families_loaded(void **state)
{
    (void)state;
    dfs_catalog *cat = dfs_testing_catalog();
    dfs_testing_register(cat, 9, 1000, T0);
    size_t n = 0;
    struct dfs_node_rec *nodes = dfs_testing_nodes(cat, &n);
    dfs_placer *p = placer(cat, 1);
    choose_min_copy(p, nodes, n, T0, DFS_OK);
    dfs_placer_destroy(p);
    char before[512], after[512];
    saved(cat, before, sizeof before);
    assert_true(before[0] != '\0');
    for (uint64_t seed = 2; seed < 6; seed++) {
        p = placer(cat, seed);
        choose_min_copy(p, nodes, n, T0 + 1, DFS_OK);
        dfs_placer_destroy(p);
        saved(cat, after, sizeof after);
        assert_string_equal(before, after);
    }
    free(nodes);
    dfs_catalog_close(cat);
}

static void sql(const char *db, const char *text)
{
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    char *err = NULL;
    if (sqlite3_exec(h, text, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", text, err);
    sqlite3_close(h);
}

/* A family is saved when it changed; a failed save is retried at the next choice. */
static void test_save_retried(void **state)
{
    (void)state;
    const char *tmp = getenv("TEST_TMPDIR");
    char dir[512], db[600];
    snprintf(dir, sizeof dir, "%s/placerXXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/catalog.db", dir);
    dfs_catalog *cat = NULL;
    char *msg = NULL;
    if (dfs_catalog_open(db, &cat, &msg) != DFS_OK)
        fail_msg("open: %s", msg);
    dfs_testing_register(cat, 6, 1000, T0);
    size_t n = 0;
    struct dfs_node_rec *nodes = dfs_testing_nodes(cat, &n);
    dfs_placer *p = placer(cat, 3);
    char buf[512];
    sql(db, "CREATE TRIGGER no_sets BEFORE INSERT ON placement_sets "
            "BEGIN SELECT RAISE(ABORT, 'injected'); END;");
    choose_min_copy(p, nodes, n, T0, DFS_OK); /* built; the save fails */
    saved(cat, buf, sizeof buf);
    assert_string_equal(buf, "");
    choose_min_copy(p, nodes, n, T0, DFS_OK); /* unchanged, but unsaved: tried again, fails */
    saved(cat, buf, sizeof buf);
    assert_string_equal(buf, "");
    sql(db, "DROP TRIGGER no_sets;");
    choose_min_copy(p, nodes, n, T0, DFS_OK); /* saved now */
    saved(cat, buf, sizeof buf);
    assert_true(buf[0] != '\0');
    /* Saved and unchanged: not written again (rows removed behind its back stay removed). */
    sql(db, "DELETE FROM placement_sets; DELETE FROM placement_families;");
    choose_min_copy(p, nodes, n, T0, DFS_OK);
    saved(cat, buf, sizeof buf);
    assert_string_equal(buf, "");
    free(nodes);
    dfs_placer_destroy(p);
    dfs_catalog_close(cat);
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        char path[700];
        snprintf(path, sizeof path, "%s%s", db, suffixes[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* Refusals leave out untouched and reserve nothing. */
static void test_refusals(void **state)
{
    (void)state;
    dfs_catalog *cat = dfs_testing_catalog();
    dfs_testing_register(cat, 2, 1000, T0);
    size_t n = 0;
    struct dfs_node_rec *nodes = dfs_testing_nodes(cat, &n);
    dfs_placer *p = placer(cat, 5);
    const char *out[DFS_PLACER_WIDTH_MAX + 1] = {NULL};
    char *msg = NULL;
    struct dfs_placement_request req = {.policy = DFS_POLICY_RANDOM, .k = 3};
    assert_int_equal(dfs_placer_choose(p, &req, 100, nodes, n, T0, out, NULL, &msg), DFS_EPRECOND);
    assert_non_null(strstr(msg, "need 3 distinct live storage nodes"));
    free(msg);
    msg = NULL;
    assert_null(out[0]);
    assert_int_equal(dfs_placer_reserved(p, &nodes[0]), 0);
    req = (struct dfs_placement_request){
        .policy = DFS_POLICY_RANDOM, .k = 1, .width = DFS_PLACER_WIDTH_MAX + 1};
    assert_int_equal(dfs_placer_choose(p, &req, 100, nodes, n, T0, out, NULL, &msg), DFS_EINVAL);
    assert_non_null(strstr(msg, "above"));
    free(msg);
    /* Unknown configuration: refused at creation. */
    struct dfs_placer_config bad = {.group_size = 1};
    dfs_placer *q = NULL;
    msg = NULL;
    assert_int_equal(dfs_placer_create(cat, &bad, &q, &msg), DFS_EINVAL);
    assert_null(q);
    free(msg);
    dfs_placer_destroy(NULL);
    free(nodes);
    dfs_placer_destroy(p);
    dfs_catalog_close(cat);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reservations),    cmocka_unit_test(test_node_states),
        cmocka_unit_test(test_families_loaded), cmocka_unit_test(test_save_retried),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
