/* Tests of node reports: corrupt, missing (confirmed or not), scrubbed sums, inventories. */
#include "metadata/reports.h"

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

/* The node's answers: per fragment id, what confirm says (default: absent). */
struct answers {
    const char *present; /* this one is there */
    const char *unsure;  /* this one cannot be told */
    int calls;
};

static int confirm(void *arg, const struct dfs_node_rec *node, const char *fragment_id,
                   char **errmsg)
{
    struct answers *a = arg;
    a->calls++;
    assert_non_null(node);
    if (a->present != NULL && strcmp(fragment_id, a->present) == 0)
        return 1;
    if (a->unsure != NULL && strcmp(fragment_id, a->unsure) == 0)
        return dfs_seterr(errmsg, DFS_EUNAVAIL, "no answer");
    return 0;
}

struct env {
    dfs_catalog *cat;
    char n0[DFS_ID_HEX + 1];
    struct dfs_file_rec *f[3];
};

static void env_open(struct env *e)
{
    e->cat = dfs_testing_catalog();
    dfs_testing_register(e->cat, 3, 1000, T0);
    dfs_testing_node_id(0, e->n0);
    struct dfs_redundancy red = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 2, .fragments = 1};
    for (int i = 0; i < 3; i++) {
        char path[16];
        snprintf(path, sizeof path, "/f%d", i);
        e->f[i] = dfs_testing_put(e->cat, path, 100, &red, DFS_POLICY_RANDOM, (int[]){0, 1}, T0);
    }
}

static void env_close(struct env *e)
{
    for (int i = 0; i < 3; i++)
        dfs_catalog_file_rec_free(e->f[i]);
    dfs_catalog_close(e->cat);
}

static const char *fid(struct env *e, int i)
{
    return e->f[i]->fragments[0].fragment_id;
}

static bool recorded(struct env *e, int i)
{
    bool rec = false;
    assert_int_equal(dfs_catalog_copy_get(e->cat, fid(e, i), e->n0, &rec, NULL, NULL, NULL),
                     DFS_OK);
    return rec;
}

static void test_registration(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    struct dfs_report r = {.registration = 5};
    struct dfs_report_result res;
    struct answers a = {0};
    char *msg = NULL;
    assert_int_equal(dfs_reports_apply(e.cat, e.n0, &r, confirm, &a, T0, &res, &msg), DFS_EPRECOND);
    assert_non_null(strstr(msg, "its report is not taken"));
    free(msg);
    msg = NULL;
    assert_int_equal(dfs_reports_apply(e.cat, "ffffffffffffffffffffffffffffffff", &r, confirm, &a,
                                       T0, &res, &msg),
                     DFS_ENOTFOUND);
    free(msg);
    env_close(&e);
}

static void test_corrupt_and_missing(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    const char *nobody = "abababababababababababababababababababab";
    const char *corrupt[] = {fid(&e, 0), nobody};
    const char *missing[] = {fid(&e, 1), fid(&e, 2)};
    struct answers a = {.present = fid(&e, 2)};
    struct dfs_report r = {.corrupt = corrupt, .ncorrupt = 2, .missing = missing, .nmissing = 2};
    struct dfs_report_result res;
    char *msg = NULL;
    assert_int_equal(dfs_reports_apply(e.cat, e.n0, &r, confirm, &a, T0 + 1, &res, &msg), DFS_OK);
    /* The corrupt copy is dropped (an unknown one changes nothing); of the missing ones, the
       node confirms one absent: dropped; the other is there: kept. */
    assert_int_equal(res.marked_lost, 2);
    assert_int_equal(res.mismatched, 0);
    assert_int_equal(res.damage_reported, 4);
    assert_int_equal(res.damage_confirmed, 2);
    assert_int_equal(a.calls, 2);
    assert_false(recorded(&e, 0));
    assert_false(recorded(&e, 1));
    assert_true(recorded(&e, 2));
    uint64_t queued = 0, running = 0;
    assert_int_equal(dfs_catalog_repair_counts(e.cat, &queued, &running, NULL), DFS_OK);
    assert_int_equal(queued, 2);

    /* A node that cannot tell: kept. A copy no longer recorded: not even asked. */
    a = (struct answers){.unsure = fid(&e, 2)};
    assert_int_equal(dfs_reports_apply(e.cat, e.n0, &r, confirm, &a, T0 + 2, &res, &msg), DFS_OK);
    assert_int_equal(a.calls, 1);
    assert_int_equal(res.marked_lost, 0);
    assert_true(recorded(&e, 2));
    env_close(&e);
}

static void test_scrubbed(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    const struct dfs_fragment_rec *f0 = &e.f[0]->fragments[0], *f1 = &e.f[1]->fragments[0];
    struct dfs_report_sum sums[] = {
        {f0->fragment_id, f0->size, f0->checksum},     /* the catalog's copy */
        {f1->fragment_id, f1->size, f1->checksum + 1}, /* rewritten with other data */
    };
    struct dfs_report r = {.scrubbed = sums, .nscrubbed = 2};
    struct dfs_report_result res;
    struct answers a = {0};
    char *msg = NULL;
    assert_int_equal(dfs_reports_apply(e.cat, e.n0, &r, confirm, &a, T0 + 1, &res, &msg), DFS_OK);
    assert_int_equal(res.mismatched, 1);
    assert_int_equal(res.marked_lost, 1);
    assert_int_equal(res.damage_reported, 1);
    assert_true(recorded(&e, 0));
    assert_false(recorded(&e, 1));
    assert_int_equal(a.calls, 0);
    env_close(&e);
}

static void test_inventory(void **state)
{
    (void)state;
    struct env e;
    env_open(&e);
    const char *stray = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";
    /* Two pages: f0 and a stray fragment; f1 is listed nowhere but the node still has it (a
       put committed after the listing); f2 is listed nowhere and absent. */
    const char *page0[] = {fid(&e, 0)};
    const char *page1[] = {stray};
    struct answers a = {.present = fid(&e, 1)};
    struct dfs_report r = {.full = true, .page = 0, .present = page0, .npresent = 1};
    struct dfs_report_result res;
    char *msg = NULL;
    assert_int_equal(dfs_reports_apply(e.cat, e.n0, &r, confirm, &a, T0 + 1, &res, &msg), DFS_OK);
    assert_int_equal(a.calls, 0);
    r = (struct dfs_report){.full = true, .page = 1, .last = true, .present = page1, .npresent = 1};
    assert_int_equal(dfs_reports_apply(e.cat, e.n0, &r, confirm, &a, T0 + 2, &res, &msg), DFS_OK);
    assert_int_equal(a.calls, 2);
    assert_int_equal(res.marked_lost, 1);
    assert_int_equal(res.unknown, 1);
    assert_int_equal(res.damage_reported, 0); /* inventories are no damage reports */
    assert_true(recorded(&e, 0));
    assert_true(recorded(&e, 1));
    assert_false(recorded(&e, 2));
    /* A page that skips ahead: refused. */
    r.page = 5;
    r.last = false;
    assert_int_equal(dfs_reports_apply(e.cat, e.n0, &r, confirm, &a, T0 + 3, &res, &msg),
                     DFS_EPRECOND);
    free(msg);
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registration),
        cmocka_unit_test(test_corrupt_and_missing),
        cmocka_unit_test(test_scrubbed),
        cmocka_unit_test(test_inventory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
