/* Tests of repair planning: inputs, target, sources and mode, deadline, backoff, claiming. */
#include "metadata/repairplan.h"

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

static void test_backoff_deadline_rank(void **state)
{
    (void)state;
    assert_int_equal(dfs_repairplan_backoff_ms(0), 1000);
    assert_int_equal(dfs_repairplan_backoff_ms(1), 1000);
    assert_int_equal(dfs_repairplan_backoff_ms(2), 2000);
    assert_int_equal(dfs_repairplan_backoff_ms(3), 4000);
    assert_int_equal(dfs_repairplan_backoff_ms(9), 256000);
    assert_int_equal(dfs_repairplan_backoff_ms(10), 300000);
    assert_int_equal(dfs_repairplan_backoff_ms(UINT32_MAX), 300000);
    assert_int_equal(dfs_repairplan_deadline_ms(0), 60000);
    assert_int_equal(dfs_repairplan_deadline_ms(60u << 20), 60000);
    assert_int_equal(dfs_repairplan_deadline_ms(1u << 30), 1024000);
    assert_int_equal(dfs_repairplan_source_rank(DFS_NODE_ALIVE), 0);
    assert_int_equal(dfs_repairplan_source_rank(DFS_NODE_DRAINING), 1);
    assert_int_equal(dfs_repairplan_source_rank(DFS_NODE_SUSPECT), 2);
    assert_int_equal(dfs_repairplan_source_rank(DFS_NODE_DEAD), -1);
    assert_int_equal(dfs_repairplan_source_rank(DFS_NODE_DECOMMISSIONED), -1);
}

/* A file built by hand: fragment f's copies on nodes "n<f><r>" in the given states. */
struct fake {
    struct dfs_file_rec f;
    struct dfs_fragment_rec frags[4];
    struct dfs_replica_rec reps[4][5];
};

static void fake_file(struct fake *fk, const struct dfs_redundancy *red, size_t nfrag,
                      const size_t *ncopies, const enum dfs_node_state (*states)[5])
{
    memset(fk, 0, sizeof *fk);
    fk->f.redundancy = *red;
    fk->f.policy = DFS_POLICY_RANDOM;
    fk->f.fragments = fk->frags;
    fk->f.nfragments = nfrag;
    for (size_t i = 0; i < nfrag; i++) {
        struct dfs_fragment_rec *fr = &fk->frags[i];
        fr->index = (uint32_t)i;
        snprintf(fr->fragment_id, sizeof fr->fragment_id, "frag%zu", i);
        fr->size = 1000;
        fr->checksum = 0x1000 + (uint32_t)i;
        fr->replicas = fk->reps[i];
        fr->nreplicas = ncopies[i];
        for (size_t r = 0; r < ncopies[i]; r++) {
            snprintf(fk->reps[i][r].node_id, sizeof fk->reps[i][r].node_id, "n%u%u",
                     (unsigned)(i % 10), (unsigned)(r % 10));
            snprintf(fk->reps[i][r].address, sizeof fk->reps[i][r].address, "a%u%u",
                     (unsigned)(i % 10), (unsigned)(r % 10));
            fk->reps[i][r].node_state = states[i][r];
        }
    }
}

static void test_nodes(void **state)
{
    (void)state;
    const enum dfs_node_state st[4][5] = {
        {DFS_NODE_ALIVE, DFS_NODE_SUSPECT, DFS_NODE_DRAINING, DFS_NODE_DEAD},
        {DFS_NODE_ALIVE, DFS_NODE_DEAD},
        {DFS_NODE_SUSPECT},
        {DFS_NODE_DECOMMISSIONED},
    };
    struct fake fk;
    struct dfs_repairplan_nodes l;
    /* Replication: the fragment's live copies are anchors, its other holders and held nodes
       are excluded; other fragments do not count. */
    struct dfs_redundancy rep = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 4, .fragments = 2};
    fake_file(&fk, &rep, 2, (size_t[]){4, 2}, st);
    char held[1][DFS_ID_HEX + 1] = {"h0"};
    assert_int_equal(dfs_repairplan_nodes(&fk.f, 0, held, 1, &l), DFS_OK);
    assert_int_equal(l.nplaced, 2);
    assert_string_equal(l.placed[0], "n00");
    assert_string_equal(l.placed[1], "n01");
    assert_int_equal(l.nexclude, 3);
    assert_string_equal(l.exclude[0], "n02");
    assert_string_equal(l.exclude[1], "n03");
    assert_string_equal(l.exclude[2], "h0");
    dfs_repairplan_nodes_clear(&l);
    assert_null(l.placed);
    /* Erasure code: the other fragments' live copies are anchors, their dead ones and every copy
       of the fragment itself are excluded. */
    struct dfs_redundancy ec = {.scheme = DFS_SCHEME_ERASURE, .data = 3, .parity = 1};
    fake_file(&fk, &ec, 4, (size_t[]){1, 2, 1, 1}, st);
    assert_int_equal(dfs_repairplan_nodes(&fk.f, 1, NULL, 0, &l), DFS_OK);
    assert_int_equal(l.nplaced, 2);
    assert_string_equal(l.placed[0], "n00");
    assert_string_equal(l.placed[1], "n20");
    assert_int_equal(l.nexclude, 3);
    assert_string_equal(l.exclude[0], "n10");
    assert_string_equal(l.exclude[1], "n11");
    assert_string_equal(l.exclude[2], "n30");
    dfs_repairplan_nodes_clear(&l);
}

static bool skip_n04(void *arg, const char *fragment_id, const char *node_id)
{
    int *calls = arg;
    (*calls)++;
    (void)fragment_id;
    return strcmp(node_id, "n04") == 0;
}

static void test_sources(void **state)
{
    (void)state;
    struct fake fk;
    struct dfs_repair_claim c;
    struct dfs_repair_sources s;
    /* Copy: alive, then draining, then suspect; never the target, a dead copy or a skipped one. */
    const enum dfs_node_state st[4][5] = {
        {DFS_NODE_SUSPECT, DFS_NODE_ALIVE, DFS_NODE_DRAINING, DFS_NODE_DEAD, DFS_NODE_ALIVE}};
    struct dfs_redundancy rep = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 5, .fragments = 1};
    fake_file(&fk, &rep, 1, (size_t[]){5}, st);
    memset(&c, 0, sizeof c);
    c.task.file = &fk.f;
    snprintf(c.target, sizeof c.target, "n01");
    assert_int_equal(dfs_repairplan_sources(&c, NULL, NULL, &s, NULL), DFS_OK);
    assert_false(s.rebuild);
    assert_int_equal(s.read_bytes, 1000);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.v[0].replica, 4);
    assert_int_equal(s.v[1].replica, 2);
    assert_int_equal(s.v[2].replica, 0);
    dfs_repairplan_sources_clear(&s);
    int calls = 0;
    assert_int_equal(dfs_repairplan_sources(&c, skip_n04, &calls, &s, NULL), DFS_OK);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.v[0].replica, 2);
    assert_true(calls >= 3);
    dfs_repairplan_sources_clear(&s);

    /* Erasure, fragment 1 readable on a draining node: copied (not rebuilt) the first time. */
    const enum dfs_node_state ec_st[4][5] = {
        {DFS_NODE_SUSPECT}, {DFS_NODE_DRAINING}, {DFS_NODE_ALIVE}, {DFS_NODE_DEAD}};
    struct dfs_redundancy ec = {.scheme = DFS_SCHEME_ERASURE, .data = 2, .parity = 2};
    fake_file(&fk, &ec, 4, (size_t[]){1, 1, 1, 1}, ec_st);
    memset(&c, 0, sizeof c);
    c.task.file = &fk.f;
    c.task.index = 1;
    snprintf(c.target, sizeof c.target, "t");
    assert_int_equal(dfs_repairplan_sources(&c, NULL, NULL, &s, NULL), DFS_OK);
    assert_false(s.rebuild);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.v[0].fragment, 1);
    assert_int_equal(s.read_bytes, 1000);
    dfs_repairplan_sources_clear(&s);
    /* ... rebuilt after a failed attempt: the other fragments' readable copies, alive first. */
    c.task.row.attempts = 1;
    assert_int_equal(dfs_repairplan_sources(&c, NULL, NULL, &s, NULL), DFS_OK);
    assert_true(s.rebuild);
    assert_int_equal(s.read_bytes, 2000);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.v[0].fragment, 2);
    assert_int_equal(s.v[1].fragment, 0);
    dfs_repairplan_sources_clear(&s);
    /* ... and rebuilt when no copy of it is readable. */
    c.task.row.attempts = 0;
    c.task.index = 3;
    assert_int_equal(dfs_repairplan_sources(&c, NULL, NULL, &s, NULL), DFS_OK);
    assert_true(s.rebuild);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.v[0].fragment, 2);
    assert_int_equal(s.v[1].fragment, 1);
    assert_int_equal(s.v[2].fragment, 0);
    dfs_repairplan_sources_clear(&s);
}

/* Nodes not in `alive` stop heartbeating at T0 and are swept dead at T0 + 20 s. */
static int64_t kill_others(dfs_catalog *cat, unsigned alive, int n)
{
    int64_t now = T0 + 20000;
    for (int i = 0; i < n; i++)
        if (alive & (1u << i))
            dfs_testing_heartbeat(cat, i, 1u << 30, now);
    char *msg = NULL;
    if (dfs_catalog_nodes_sweep(cat, now, 3000, 10000, NULL, NULL, &msg) != DFS_OK)
        fail_msg("sweep: %s", msg);
    return now;
}

static void plan_all(dfs_catalog *cat, int64_t now, size_t want_queued)
{
    struct dfs_plan_result r;
    char *msg = NULL;
    if (dfs_catalog_repair_plan(cat, "", 1000, now, &r, &msg) != DFS_OK)
        fail_msg("plan: %s", msg);
    assert_true(r.done);
    assert_int_equal(r.queued, want_queued);
}

struct env {
    dfs_catalog *cat;
    dfs_placer *placer;
    dfs_repairplan *rp;
};

static void env_open(struct env *e, int nodes)
{
    e->cat = dfs_testing_catalog();
    dfs_testing_register(e->cat, nodes, 1u << 30, T0);
    struct dfs_placer_config pc = {.seed = 42};
    char *msg = NULL;
    if (dfs_placer_create(e->cat, &pc, &e->placer, &msg) != DFS_OK ||
        dfs_repairplan_create(e->cat, e->placer, &e->rp, &msg) != DFS_OK)
        fail_msg("create: %s", msg);
}

static void env_close(struct env *e)
{
    dfs_repairplan_destroy(e->rp);
    dfs_placer_destroy(e->placer);
    dfs_catalog_close(e->cat);
}

static struct dfs_repair_rec only_row(dfs_catalog *cat)
{
    struct dfs_repair_rec *v = NULL;
    size_t n = 0;
    char *msg = NULL;
    if (dfs_catalog_repairs_list(cat, &v, &n, &msg) != DFS_OK)
        fail_msg("list: %s", msg);
    assert_int_equal(n, 1);
    struct dfs_repair_rec r = v[0];
    free(v);
    return r;
}

/* A dead copy: claimed onto a new node, a wrong answer refused and backed off, then done. */
static void test_claim_complete_fail(void **state)
{
    (void)state;
    struct env e;
    env_open(&e, 5);
    struct dfs_redundancy red = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 3, .fragments = 1};
    struct dfs_file_rec *f =
        dfs_testing_put(e.cat, "/a", 3000, &red, DFS_POLICY_RANDOM, (int[]){0, 1, 2}, T0);
    dfs_catalog_file_rec_free(f);
    int64_t now = kill_others(e.cat, 0x1b, 5); /* node 2 dead */
    plan_all(e.cat, now, 1);

    struct dfs_repair_claim c;
    bool found = false;
    char *msg = NULL;
    assert_int_equal(dfs_repairplan_claim(e.rp, now, &c, &found, &msg), DFS_OK);
    assert_true(found);
    char n3[DFS_ID_HEX + 1], n4[DFS_ID_HEX + 1];
    dfs_testing_node_id(3, n3);
    dfs_testing_node_id(4, n4);
    assert_true(strcmp(c.target, n3) == 0 || strcmp(c.target, n4) == 0);
    assert_string_equal(c.address, strcmp(c.target, n3) == 0 ? "127.0.0.1:7003" : "127.0.0.1:7004");
    assert_true(only_row(e.cat).running);
    struct dfs_repair_sources s;
    assert_int_equal(dfs_repairplan_sources(&c, NULL, NULL, &s, NULL), DFS_OK);
    assert_false(s.rebuild);
    assert_int_equal(s.n, 2); /* nodes 0 and 1; the dead copy is no source */
    dfs_repairplan_sources_clear(&s);
    /* Nothing else due while it runs. */
    struct dfs_repair_claim c2;
    assert_int_equal(dfs_repairplan_claim(e.rp, now, &c2, &found, &msg), DFS_OK);
    assert_false(found);

    /* A copy that is not the catalog's is refused; the failure backs the row off. */
    const struct dfs_fragment_rec *fr = &c.task.file->fragments[0];
    assert_int_equal(dfs_repairplan_complete(e.rp, &c, fr->size, fr->checksum + 1, now, &msg),
                     DFS_EDATALOSS);
    assert_non_null(strstr(msg, "the catalog has 3000 bytes"));
    free(msg);
    msg = NULL;
    uint32_t attempts = 0;
    assert_int_equal(dfs_repairplan_fail(e.rp, &c, now, &attempts, &msg), DFS_OK);
    assert_int_equal(attempts, 1);
    struct dfs_repair_rec row = only_row(e.cat);
    assert_false(row.running);
    assert_int_equal(row.not_before_ms, now + 1000);
    char first[DFS_ID_HEX + 1];
    memcpy(first, c.target, sizeof first);
    dfs_repairplan_claim_clear(&c);
    dfs_repairplan_claim_clear(&c); /* twice is fine */
    assert_int_equal(dfs_repairplan_claim(e.rp, now + 999, &c, &found, &msg), DFS_OK);
    assert_false(found);

    /* Due again: the failed target holds a partial copy now, so the other node is chosen. */
    assert_int_equal(dfs_repairplan_claim(e.rp, now + 1000, &c, &found, &msg), DFS_OK);
    assert_true(found);
    assert_string_not_equal(c.target, first);
    fr = &c.task.file->fragments[0];
    assert_int_equal(dfs_repairplan_complete(e.rp, &c, fr->size, fr->checksum, now + 1000, &msg),
                     DFS_OK);
    dfs_repairplan_claim_clear(&c);
    uint64_t queued = 0, running = 0;
    assert_int_equal(dfs_catalog_repair_counts(e.cat, &queued, &running, NULL), DFS_OK);
    assert_int_equal(queued + running, 0);
    env_close(&e);
}

/* No node can take the copy: the row is backed off, nothing is claimed. */
static void test_claim_no_target(void **state)
{
    (void)state;
    struct env e;
    env_open(&e, 3);
    struct dfs_redundancy red = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 3, .fragments = 1};
    dfs_catalog_file_rec_free(
        dfs_testing_put(e.cat, "/a", 10, &red, DFS_POLICY_RANDOM, (int[]){0, 1, 2}, T0));
    int64_t now = kill_others(e.cat, 0x3, 3);
    plan_all(e.cat, now, 1);
    struct dfs_repair_claim c;
    bool found = true;
    char *msg = NULL;
    assert_int_equal(dfs_repairplan_claim(e.rp, now, &c, &found, &msg), DFS_OK);
    assert_false(found);
    struct dfs_repair_rec row = only_row(e.cat);
    assert_false(row.running);
    assert_int_equal(row.attempts, 1);
    assert_int_equal(row.not_before_ms, now + 1000);
    /* Backed off again with a doubled wait. */
    assert_int_equal(dfs_repairplan_claim(e.rp, now + 1000, &c, &found, &msg), DFS_OK);
    assert_false(found);
    row = only_row(e.cat);
    assert_int_equal(row.attempts, 2);
    assert_int_equal(row.not_before_ms, now + 1000 + 2000);
    env_close(&e);
}

/* A rebalance move keeps the target the rebalancer checked, while it is alive. */
static void test_rebalance_target(void **state)
{
    (void)state;
    struct env e;
    env_open(&e, 5);
    struct dfs_redundancy red = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 2, .fragments = 1};
    struct dfs_file_rec *a =
        dfs_testing_put(e.cat, "/a", 10, &red, DFS_POLICY_RANDOM, (int[]){0, 1}, T0);
    struct dfs_file_rec *b =
        dfs_testing_put(e.cat, "/b", 10, &red, DFS_POLICY_RANDOM, (int[]){0, 1}, T0);
    char n0[DFS_ID_HEX + 1], n3[DFS_ID_HEX + 1], n4[DFS_ID_HEX + 1];
    dfs_testing_node_id(0, n0);
    dfs_testing_node_id(3, n3);
    dfs_testing_node_id(4, n4);
    bool queued = false;
    char *msg = NULL;
    assert_int_equal(dfs_catalog_repair_queue(e.cat, a->fragments[0].fragment_id,
                                              DFS_REPAIR_REBALANCE, n0, n3, T0, &queued, &msg),
                     DFS_OK);
    assert_true(queued);
    struct dfs_repair_claim c;
    bool found = false;
    assert_int_equal(dfs_repairplan_claim(e.rp, T0, &c, &found, &msg), DFS_OK);
    assert_true(found);
    assert_string_equal(c.target, n3);
    /* A failed move loses its target (dfs_catalog_repair_fail): the next claim drops it. */
    assert_int_equal(dfs_repairplan_fail(e.rp, &c, T0, NULL, &msg), DFS_OK);
    dfs_repairplan_claim_clear(&c);
    assert_int_equal(dfs_repairplan_claim(e.rp, T0 + 1000, &c, &found, &msg), DFS_OK);
    assert_false(found);
    /* A target that is no longer alive: the move is backed off, not sent elsewhere. */
    assert_int_equal(dfs_catalog_repair_queue(e.cat, b->fragments[0].fragment_id,
                                              DFS_REPAIR_REBALANCE, n0, n4, T0, &queued, &msg),
                     DFS_OK);
    dfs_testing_set_state(e.cat, 4, DFS_NODE_DRAINING);
    dfs_testing_set_state(e.cat, 3, DFS_NODE_DRAINING);
    assert_int_equal(dfs_repairplan_claim(e.rp, T0 + 2000000, &c, &found, &msg), DFS_OK);
    assert_false(found);
    struct dfs_repair_rec *v = NULL;
    size_t n = 0;
    assert_int_equal(dfs_catalog_repairs_list(e.cat, &v, &n, &msg), DFS_OK);
    assert_int_equal(n, 1);
    assert_false(v[0].running);
    assert_int_equal(v[0].attempts, 1);
    assert_int_equal(v[0].not_before_ms, T0 + 2000000 + 1000);
    free(v);
    dfs_catalog_file_rec_free(a);
    dfs_catalog_file_rec_free(b);
    env_close(&e);
}

/* A fake clock: every reading advances it by 5 ms. */
struct ticks {
    int64_t now;
    int readings, work;
};

static int64_t tick(void *arg)
{
    struct ticks *t = arg;
    t->readings++;
    return t->now += 5;
}

static void worked(void *arg)
{
    struct ticks *t = arg;
    t->work++;
}

static void test_pass(void **state)
{
    (void)state;
    struct env e;
    env_open(&e, 4);
    struct dfs_redundancy red = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 2, .fragments = 1};
    for (int i = 0; i < 5; i++) {
        char path[16];
        snprintf(path, sizeof path, "/%d", i);
        dfs_catalog_file_rec_free(
            dfs_testing_put(e.cat, path, 10, &red, DFS_POLICY_RANDOM, (int[]){0, 1}, T0));
    }
    size_t n = 0;
    struct dfs_node_rec *nodes = dfs_testing_nodes(e.cat, &n);
    uint64_t sig = dfs_repair_pass_signature(nodes, n);
    assert_int_equal(dfs_repair_pass_signature(nodes, n), sig);
    int64_t now = kill_others(e.cat, 0xd, 4); /* node 1 dead: every fragment is short */
    free(nodes);
    nodes = dfs_testing_nodes(e.cat, &n);
    assert_int_not_equal(dfs_repair_pass_signature(nodes, n), sig);
    free(nodes);

    /* Pages of 2 within a 10 ms budget: one page a step, the pass over several steps. */
    struct dfs_repair_pass p = {.page = 2, .budget_ms = 10, .interval_ms = 5000};
    struct ticks t = {.now = now};
    bool ended = false;
    int steps = 0;
    char *msg = NULL;
    while (!ended && steps < 10) {
        assert_int_equal(
            dfs_repair_pass_step(&p, e.cat, now, steps == 0, false, tick, worked, &t, &ended, &msg),
            DFS_OK);
        steps++;
    }
    assert_true(ended);
    assert_true(steps >= 3);
    assert_false(p.active);
    assert_int_equal(p.last_ms, now);
    assert_int_equal(p.sum.queued, 5);
    assert_int_equal(p.sum.scanned, 5);
    assert_true(t.work >= 3);
    uint64_t queued = 0, running = 0;
    assert_int_equal(dfs_catalog_repair_counts(e.cat, &queued, &running, NULL), DFS_OK);
    assert_int_equal(queued, 5);

    /* Not due yet: nothing read, nothing planned. Due after the interval. */
    t.readings = 0;
    assert_int_equal(
        dfs_repair_pass_step(&p, e.cat, now + 4999, false, false, tick, worked, &t, &ended, &msg),
        DFS_OK);
    assert_false(ended);
    assert_false(p.active);
    assert_int_equal(t.readings, 0);
    assert_int_equal(
        dfs_repair_pass_step(&p, e.cat, now + 5000, false, false, tick, worked, &t, &ended, &msg),
        DFS_OK);
    assert_true(p.active);
    assert_int_equal(p.sum.scanned, 2);
    /* A start restarts the pass in progress; unbounded, it runs to the end at once. */
    assert_int_equal(
        dfs_repair_pass_step(&p, e.cat, now + 5001, true, true, tick, NULL, &t, &ended, &msg),
        DFS_OK);
    assert_true(ended);
    assert_int_equal(p.sum.scanned, 5);
    assert_int_equal(p.sum.queued, 0); /* queued already */
    assert_int_equal(p.last_ms, now + 5001);
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_deadline_rank),
        cmocka_unit_test(test_nodes),
        cmocka_unit_test(test_sources),
        cmocka_unit_test(test_claim_complete_fail),
        cmocka_unit_test(test_claim_no_target),
        cmocka_unit_test(test_rebalance_target),
        cmocka_unit_test(test_pass),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
