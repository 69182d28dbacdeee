/* The catalog replicated over real libraft on loopback: replicas in this process agree row for
   row, a follower refuses, a member that was down catches up from a snapshot, a one-member
   cluster restarts from its own catalog and log. */
#include "services/metadata/catalog_sm.h"

#include "common/clock.h"
#include "common/err.h"
#include "common/id.h"
#include "metadata/catalog.h"
#include "metadata/catalog_testing.h"
#include "metadata/command.h"
#include "services/metadata/repl_testing.h"
#include "services/metadata/replication.h"

#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define ELECTION_MS 1000
#define WAIT_MS     60000
#define CALL_MS     20000
#define T0          1800000000000LL

struct replica {
    uint64_t id;
    char address[64];
    char dir[PATH_MAX - 64];
    char catalog[PATH_MAX];
    dfs_catalog *cat;
    dfs_repl *repl;
};

struct cluster {
    char root[PATH_MAX - 128];
    int n;
    unsigned threshold, trailing;
    struct replica rs[3];
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void cluster_init(struct cluster *c, int n)
{
    memset(c, 0, sizeof *c);
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(c->root, sizeof c->root, "%s/csm.XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(c->root));
    c->n = n;
    for (int i = 0; i < n; i++) {
        struct replica *r = &c->rs[i];
        r->id = (uint64_t)i + 1;
        int port = repl_free_port();
        assert_true(port > 0);
        snprintf(r->address, sizeof r->address, "127.0.0.1:%d", port);
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/r%d", c->root, i + 1);
        memcpy(r->dir, dir, sizeof r->dir);
        snprintf(dir, sizeof dir, "%s/r%d/catalog.db", c->root, i + 1);
        memcpy(r->catalog, dir, sizeof r->catalog);
        assert_int_equal(mkdir(r->dir, 0700), 0);
    }
}

static void replica_start(struct cluster *c, int i)
{
    struct replica *r = &c->rs[i];
    char *err = NULL;
    if (dfs_catalog_open(r->catalog, &r->cat, &err) != DFS_OK)
        fail_msg("catalog: %s", err);
    uint64_t applied = 0;
    assert_int_equal(dfs_catalog_applied_index(r->cat, &applied, NULL), DFS_OK);
    struct dfs_repl_member members[3];
    for (int k = 0; k < c->n; k++)
        members[k] = (struct dfs_repl_member){c->rs[k].id, c->rs[k].address};
    char rdir[PATH_MAX];
    snprintf(rdir, sizeof rdir, "%s/raft", r->dir);
    struct dfs_repl_options o = {
        .id = r->id,
        .address = r->address,
        .dir = rdir,
        .members = members,
        .n_members = (size_t)c->n,
        .applied_index = applied,
        .election_timeout_ms = ELECTION_MS,
        .snapshot_threshold = c->threshold,
        .snapshot_trailing = c->trailing,
        .ops = &dfs_catalog_sm_ops,
        .ctx = r->cat,
    };
    if (dfs_repl_create(&o, &r->repl, &err) != 0)
        fail_msg("replica %" PRIu64 ": %s", r->id, err);
}

static void replica_stop(struct cluster *c, int i)
{
    struct replica *r = &c->rs[i];
    dfs_repl_destroy(r->repl);
    r->repl = NULL;
    dfs_catalog_close(r->cat);
    r->cat = NULL;
}

static void cluster_stop(struct cluster *c)
{
    for (int i = 0; i < c->n; i++)
        if (c->rs[i].repl != NULL)
            replica_stop(c, i);
    nftw(c->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int find_leader(struct cluster *c)
{
    int64_t deadline = dfs_clock_mono_ns() + (int64_t)WAIT_MS * 1000000;
    do {
        for (int i = 0; i < c->n; i++) {
            if (c->rs[i].repl == NULL)
                continue;
            struct dfs_repl_status st;
            dfs_repl_status_get(c->rs[i].repl, &st);
            if (st.role == DFS_REPL_LEADER && st.leader_ready)
                return i;
        }
        pause_ms(5);
    } while (dfs_clock_mono_ns() < deadline);
    fail_msg("no leader in %d ms", WAIT_MS);
    return -1;
}

/* Propose a built command to the leader (following it), expecting verdict `want`. */
static void propose(struct cluster *c, int rc, void **data, size_t *len, char **msg, int want)
{
    if (rc != DFS_OK)
        fail_msg("build: %s", *msg);
    for (int attempt = 0;; attempt++) {
        int l = find_leader(c);
        struct dfs_catalog_sm_answer a;
        int got = dfs_catalog_sm_propose(c->rs[l].repl, *data, *len, CALL_MS, &a);
        if (got == DFS_EUNAVAIL && !a.maybe_applied && attempt < 5)
            continue;
        if (got != want)
            fail_msg("propose: %d, want %d: %s", got, want, a.message);
        break;
    }
    free(*data);
}

static void register_nodes(struct cluster *c, int n)
{
    void *d;
    size_t l;
    char *m = NULL;
    struct dfs_node_usage u = {.capacity_bytes = 1 << 30, .free_bytes = 1 << 29};
    for (int i = 0; i < n; i++) {
        char id[DFS_ID_HEX + 1], addr[32];
        dfs_testing_node_id(i, id);
        snprintf(addr, sizeof addr, "127.0.0.1:%d", 7000 + i);
        propose(c, dfs_command_node_register(id, addr, "", &u, T0, DFS_CATALOG_KEEP, 1, &d, &l, &m),
                &d, &l, &m, DFS_OK);
    }
}

/* Create and commit file `tag`-`i` at /f/<tag>/<i> on nodes 0 and 1 (one fragment, k=2). */
static void put(struct cluster *c, int tag, int i)
{
    char id[DFS_ID_HEX + 1], path[64], n0[DFS_ID_HEX + 1], n1[DFS_ID_HEX + 1];
    snprintf(id, sizeof id, "%016x%016x", tag + 1, i + 1);
    snprintf(path, sizeof path, "/f/%d/%d", tag, i);
    dfs_testing_node_id(0, n0);
    dfs_testing_node_id(1, n1);
    const char *nodes[2] = {n0, n1};
    struct dfs_plan_fragment plan = {.index = 0, .size = 100, .node_ids = nodes, .nnodes = 2};
    struct dfs_create_req req = {
        .path = path,
        .size = 100,
        .redundancy = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 2, .fragments = 1},
        .policy = DFS_POLICY_RANDOM,
        .fragment_size = 100,
        .expires_ms = T0 + 3600000,
        .fragments = &plan,
        .nfragments = 1,
        .file_id = id};
    void *d;
    size_t l;
    char *m = NULL;
    propose(c, dfs_command_file_create(&req, T0 + 1, &d, &l, &m), &d, &l, &m, DFS_OK);
    uint8_t sha[DFS_SHA256_LEN];
    memset(sha, i & 0xff, sizeof sha);
    struct dfs_commit_fragment cf = {
        .index = 0, .size = 100, .checksum = (uint32_t)i, .node_ids = nodes, .nnodes = 2};
    propose(c, dfs_command_file_commit(id, sha, &cf, 1, T0 + 2, &d, &l, &m), &d, &l, &m, DFS_OK);
}

struct putter {
    struct cluster *c;
    int tag, n;
};

static void *putter_main(void *arg)
{
    struct putter *p = arg;
    for (int i = 0; i < p->n; i++)
        put(p->c, p->tag, i);
    return NULL;
}

/* n files from each of `threads` threads at once (their commands share log entries). */
static void put_many(struct cluster *c, int threads, int n, int tag0)
{
    pthread_t th[8];
    struct putter ps[8];
    for (int t = 0; t < threads; t++) {
        ps[t] = (struct putter){c, tag0 + t, n};
        assert_int_equal(pthread_create(&th[t], NULL, putter_main, &ps[t]), 0);
    }
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
}

/* Every running replica's catalog holds the leader's rows (after a barrier). */
static void wait_converged(struct cluster *c)
{
    int64_t deadline = dfs_clock_mono_ns() + (int64_t)WAIT_MS * 1000000;
    for (;;) {
        int l = find_leader(c);
        struct dfs_catalog_sm_answer a;
        if (dfs_catalog_sm_barrier(c->rs[l].repl, CALL_MS, &a) != DFS_OK)
            continue;
        char *ref = dfs_testing_dump(c->rs[l].catalog, false);
        bool all = true;
        for (int i = 0; i < c->n && all; i++) {
            if (c->rs[i].repl == NULL || i == l)
                continue;
            char *d = dfs_testing_dump(c->rs[i].catalog, false);
            all = strcmp(d, ref) == 0;
            free(d);
        }
        free(ref);
        if (all)
            return;
        if (dfs_clock_mono_ns() > deadline)
            fail_msg("catalogs did not converge in %d ms", WAIT_MS);
        pause_ms(20);
    }
}

static uint64_t count_files(dfs_catalog *cat)
{
    struct dfs_catalog_stats s;
    assert_int_equal(dfs_catalog_stats(cat, &s, NULL), DFS_OK);
    return s.files;
}

/* Three replicas: concurrent puts through the leader; verdicts travel back; catalogs agree. */
static void test_three_replicas_agree(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 3);
    for (int i = 0; i < 3; i++)
        replica_start(&c, i);
    register_nodes(&c, 3);
    put_many(&c, 4, 10, 0);
    /* A refused command: the same path again, not overwriting. Its verdict and message come back
       to the proposer; nothing changes anywhere. */
    char n0[DFS_ID_HEX + 1], n1[DFS_ID_HEX + 1];
    dfs_testing_node_id(0, n0);
    dfs_testing_node_id(1, n1);
    const char *nodes[2] = {n0, n1};
    struct dfs_plan_fragment plan = {.index = 0, .size = 100, .node_ids = nodes, .nnodes = 2};
    struct dfs_create_req req = {
        .path = "/f/0/0",
        .size = 100,
        .redundancy = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 2, .fragments = 1},
        .policy = DFS_POLICY_RANDOM,
        .fragment_size = 100,
        .expires_ms = T0 + 3600000,
        .fragments = &plan,
        .nfragments = 1,
        .file_id = "ffffffffffffffffffffffffffffffff"};
    void *d;
    size_t l;
    char *m = NULL;
    assert_int_equal(dfs_command_file_create(&req, T0 + 5, &d, &l, &m), DFS_OK);
    struct dfs_catalog_sm_answer a;
    int lead = find_leader(&c);
    assert_int_equal(dfs_catalog_sm_propose(c.rs[lead].repl, d, l, CALL_MS, &a), DFS_EEXIST);
    assert_non_null(strstr(a.message, "already exists"));
    free(d);

    wait_converged(&c);
    for (int i = 0; i < 3; i++)
        assert_int_equal(count_files(c.rs[i].cat), 40);

    /* A follower refuses and names the leader; nothing was proposed. */
    lead = find_leader(&c);
    int f = (lead + 1) % 3;
    assert_int_equal(dfs_command_file_delete("/f/0/1", T0 + 6, &d, &l, &m), DFS_OK);
    assert_int_equal(dfs_catalog_sm_propose(c.rs[f].repl, d, l, CALL_MS, &a), DFS_EUNAVAIL);
    assert_true(a.not_leader);
    assert_false(a.maybe_applied);
    assert_string_equal(a.leader_address, c.rs[lead].address);
    assert_int_equal(a.leader_id, c.rs[lead].id);
    free(d);
    wait_converged(&c);
    assert_int_equal(count_files(c.rs[lead].cat), 40);
    cluster_stop(&c);
}

/* A member down while the log moved past a snapshot installs it and catches up. */
static void test_member_catches_up_from_snapshot(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 3);
    c.threshold = 16;
    c.trailing = 4;
    for (int i = 0; i < 3; i++)
        replica_start(&c, i);
    register_nodes(&c, 3);
    put_many(&c, 1, 4, 0);
    wait_converged(&c);
    int lead = find_leader(&c);
    int down = (lead + 2) % 3;
    replica_stop(&c, down);
    put_many(&c, 2, 20, 10); /* 80 commands: several snapshots, the log truncated behind them */
    replica_start(&c, down);
    wait_converged(&c);
    struct dfs_repl_status st;
    dfs_repl_status_get(c.rs[down].repl, &st);
    assert_true(st.snapshots_restored >= 1);
    assert_int_equal(count_files(c.rs[down].cat), 44);
    uint64_t applied = 0;
    assert_int_equal(dfs_catalog_applied_index(c.rs[down].cat, &applied, NULL), DFS_OK);
    assert_true(applied > 0);
    cluster_stop(&c);
}

/* One member (a single metadata service): restart from its own catalog and log. */
static void test_one_member_restart(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 1);
    c.threshold = 32;
    c.trailing = 8;
    replica_start(&c, 0);
    register_nodes(&c, 2);
    put_many(&c, 2, 25, 0);
    uint64_t before = 0;
    assert_int_equal(dfs_catalog_applied_index(c.rs[0].cat, &before, NULL), DFS_OK);
    char *dump1 = dfs_testing_dump(c.rs[0].catalog, false);
    replica_stop(&c, 0);
    replica_start(&c, 0);
    uint64_t after = 0;
    assert_int_equal(dfs_catalog_applied_index(c.rs[0].cat, &after, NULL), DFS_OK);
    assert_int_equal(after, before);
    char *dump2 = dfs_testing_dump(c.rs[0].catalog, false);
    assert_string_equal(dump1, dump2);
    free(dump1);
    free(dump2);
    put_many(&c, 1, 5, 5);
    assert_int_equal(count_files(c.rs[0].cat), 55);
    cluster_stop(&c);
}

/* The catalog's own verbs, called on a replicated catalog, go through the log: callers (here the
   test fixtures, elsewhere the service and its planners) see the same results, every replica
   the same rows; a follower's catalog refuses writes. */
static void test_catalog_verbs_through_the_log(void **state)
{
    (void)state;
    struct cluster c;
    cluster_init(&c, 3);
    for (int i = 0; i < 3; i++) {
        replica_start(&c, i);
        dfs_catalog_set_proposer(c.rs[i].cat, dfs_catalog_sm_proposer, c.rs[i].repl);
    }
    int l = find_leader(&c);
    dfs_catalog *cat = c.rs[l].cat;
    dfs_testing_register(cat, 4, 1 << 30, T0);
    struct dfs_redundancy red = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 2, .fragments = 2};
    const int nodes[4] = {0, 1, 2, 3};
    struct dfs_file_rec *f = dfs_testing_put(cat, "/x", 1000, &red, DFS_POLICY_RANDOM, nodes, T0);
    assert_int_equal(f->nfragments, 2);
    assert_int_equal(f->state, DFS_FILE_COMMITTED);
    dfs_catalog_file_rec_free(f);
    f = dfs_testing_put(cat, "/y", 1000, &red, DFS_POLICY_RANDOM, nodes, T0);
    dfs_catalog_file_rec_free(f);
    struct dfs_file_rec *gone = NULL;
    assert_int_equal(dfs_catalog_file_delete(cat, "/y", T0 + 1, &gone, NULL), DFS_OK);
    assert_string_equal(gone->path, "/y");
    dfs_catalog_file_rec_free(gone);
    struct dfs_deletion_rec *items = NULL;
    size_t n = 0;
    assert_int_equal(dfs_catalog_deletions_fetch(cat, T0 + 2, 0, 100, &items, &n, NULL), DFS_OK);
    assert_int_equal(n, 4); /* /y's two fragments, two copies each */
    free(items);
    uint8_t k1[32], k2[32];
    assert_int_equal(dfs_catalog_secret(cat, "ticket_master_key", 32, T0, k1, NULL), DFS_OK);
    assert_int_equal(dfs_catalog_secret(cat, "ticket_master_key", 32, T0, k2, NULL), DFS_OK);
    assert_memory_equal(k1, k2, 32);
    char *msg = NULL;
    assert_int_equal(dfs_catalog_file_delete(cat, "/nothing", T0, &gone, &msg), DFS_ENOTFOUND);
    free(msg);
    msg = NULL;

    int fol = (l + 1) % 3;
    assert_int_equal(dfs_catalog_file_delete(c.rs[fol].cat, "/x", T0, &gone, &msg), DFS_EUNAVAIL);
    assert_non_null(strstr(msg, "leader"));
    free(msg);
    wait_converged(&c);
    uint8_t k3[32];
    /* The follower reads the same secret (no write: it exists). */
    dfs_catalog_set_proposer(c.rs[fol].cat, NULL, NULL);
    assert_int_equal(dfs_catalog_secret(c.rs[fol].cat, "ticket_master_key", 32, T0, k3, NULL),
                     DFS_OK);
    assert_memory_equal(k1, k3, 32);
    for (int i = 0; i < 3; i++)
        assert_int_equal(count_files(c.rs[i].cat), 1);
    cluster_stop(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_replicas_agree),
        cmocka_unit_test(test_member_catches_up_from_snapshot),
        cmocka_unit_test(test_one_member_restart),
        cmocka_unit_test(test_catalog_verbs_through_the_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
