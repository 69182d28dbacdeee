/* Tests of the SQLite catalog: schema, nodes, the put/get/list/delete flows, queues, threads. */
#include "metadata/catalog.h"

#include "common/err.h"
#include "common/id.h"
#include "metadata/placement.h"

#include <pthread.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define NNODES 8
#define T0     1000000 /* a start time; every test controls its own clock */
#define TTL    60000   /* pending files expire this long after creation */

/* One temporary catalog per test, removed afterwards. */
struct fx {
    char dir[512];
    char db[600];
    dfs_catalog *cat;
    char ids[NNODES][DFS_ID_HEX + 1];
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/catalogXXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->db, sizeof fx->db, "%s/catalog.db", fx->dir);
    for (int i = 0; i < NNODES; i++)
        snprintf(fx->ids[i], sizeof fx->ids[i], "%032x", 0xa0 + i);
    char *msg = NULL;
    int rc = dfs_catalog_open(fx->db, &fx->cat, &msg);
    if (rc != DFS_OK)
        fail_msg("open: %s", msg);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    dfs_catalog_close(fx->cat);
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        char p[700];
        snprintf(p, sizeof p, "%s%s", fx->db, suffixes[i]);
        unlink(p);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static void reopen(struct fx *fx)
{
    dfs_catalog_close(fx->cat);
    fx->cat = NULL;
    char *msg = NULL;
    if (dfs_catalog_open(fx->db, &fx->cat, &msg) != DFS_OK)
        fail_msg("reopen: %s", msg);
}

/* Run one SQL statement on a second connection and return the first column of its first row. */
static int64_t sql_int(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(h));
    int rc = sqlite3_step(st);
    assert_true(rc == SQLITE_ROW || rc == SQLITE_DONE);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static void sql_exec(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    char *err = NULL;
    if (sqlite3_exec(h, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
    sqlite3_close(h);
}

static void expect_msg(char **msg, const char *fragment)
{
    assert_non_null(*msg);
    if (strstr(*msg, fragment) == NULL)
        fail_msg("message '%s' lacks '%s'", *msg, fragment);
    free(*msg);
    *msg = NULL;
}

static const struct dfs_node_usage usage1 = {
    .capacity_bytes = 1000000, .used_bytes = 1000, .free_bytes = 900000, .fragment_count = 3};

static void register_nodes(struct fx *fx, int n, int64_t now)
{
    for (int i = 0; i < n; i++) {
        char addr[32], zone[8];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", 7000 + i);
        snprintf(zone, sizeof zone, "z%d", i % 3);
        char *msg = NULL;
        if (dfs_catalog_node_register(fx->cat, fx->ids[i], addr, zone, &usage1, now,
                                      DFS_CATALOG_KEEP, DFS_CATALOG_KEEP, &msg) != DFS_OK)
            fail_msg("register: %s", msg);
    }
}

static struct dfs_catalog_stats stats(struct fx *fx)
{
    struct dfs_catalog_stats s;
    char *msg = NULL;
    if (dfs_catalog_stats(fx->cat, &s, &msg) != DFS_OK)
        fail_msg("stats: %s", msg);
    return s;
}

/* A replication plan: fragment i on nodes (first + i + j) % nnodes, sizes as the service cuts. */
struct plan {
    struct dfs_plan_fragment frags[DFS_EC_WIDTH_MAX];
    const char *ids[DFS_EC_WIDTH_MAX][DFS_REPLICAS_MAX];
    struct dfs_create_req req;
};

static void make_plan(struct fx *fx, struct plan *p, const char *path, uint64_t size, uint32_t F,
                      uint32_t k, int first, int nnodes, bool overwrite, int64_t expires_ms)
{
    memset(p, 0, sizeof *p);
    uint64_t fsz = (size + F - 1) / F;
    for (uint32_t i = 0; i < F; i++) {
        for (uint32_t j = 0; j < k; j++)
            p->ids[i][j] = fx->ids[((uint32_t)first + i + j) % (uint32_t)nnodes];
        uint64_t off = (uint64_t)i * fsz;
        p->frags[i] = (struct dfs_plan_fragment){
            .index = i,
            .size = off >= size ? 0 : (size - off < fsz ? size - off : fsz),
            .node_ids = p->ids[i],
            .nnodes = k,
        };
    }
    p->req = (struct dfs_create_req){
        .path = path,
        .size = size,
        .redundancy = {.scheme = DFS_SCHEME_REPLICATION, .replicas = k, .fragments = F},
        .policy = DFS_POLICY_RANDOM,
        .overwrite = overwrite,
        .fragment_size = fsz,
        .expires_ms = expires_ms,
        .fragments = p->frags,
        .nfragments = F,
    };
}

static struct dfs_file_rec *create(struct fx *fx, const char *path, uint64_t size, uint32_t F,
                                   uint32_t k, bool overwrite, int64_t now)
{
    struct plan p;
    make_plan(fx, &p, path, size, F, k, 0, NNODES, overwrite, now + TTL);
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    if (dfs_catalog_file_create(fx->cat, &p.req, now, &f, &msg) != DFS_OK)
        fail_msg("create %s: %s", path, msg);
    return f;
}

/* Commit arguments acknowledging every planned replica of every fragment. */
struct commit {
    struct dfs_commit_fragment frags[DFS_EC_WIDTH_MAX];
    const char *ids[DFS_EC_WIDTH_MAX][DFS_REPLICAS_MAX];
    uint8_t sha[DFS_SHA256_LEN];
};

static void make_commit(const struct dfs_file_rec *f, struct commit *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < f->nfragments; i++) {
        const struct dfs_fragment_rec *fr = &f->fragments[i];
        for (size_t j = 0; j < fr->nreplicas; j++)
            c->ids[i][j] = fr->replicas[j].node_id;
        c->frags[i] = (struct dfs_commit_fragment){
            .index = fr->index,
            .size = fr->size,
            .checksum = 0xc0de0000u + fr->index,
            .node_ids = c->ids[i],
            .nnodes = fr->nreplicas,
        };
    }
    for (int i = 0; i < DFS_SHA256_LEN; i++)
        c->sha[i] = (uint8_t)(i * 7 + 1);
}

static struct dfs_file_rec *commit(struct fx *fx, const struct dfs_file_rec *pending, int64_t now)
{
    struct commit c;
    make_commit(pending, &c);
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    if (dfs_catalog_file_commit(fx->cat, pending->file_id, c.sha, c.frags, pending->nfragments, now,
                                &f, &msg) != DFS_OK)
        fail_msg("commit %s: %s", pending->path, msg);
    return f;
}

/* create + commit; returns the committed record. */
static struct dfs_file_rec *put(struct fx *fx, const char *path, uint64_t size, bool overwrite,
                                int64_t now)
{
    struct dfs_file_rec *p = create(fx, path, size, 4, 3, overwrite, now);
    struct dfs_file_rec *f = commit(fx, p, now + 1);
    dfs_catalog_file_rec_free(p);
    return f;
}

/* Every queued deletion whose node is alive, as "fragment_id/node_id" strings joined by ' '. */
static char *queued(struct fx *fx, int64_t now)
{
    struct dfs_deletion_rec *d = NULL;
    size_t n = 0;
    char *msg = NULL;
    if (dfs_catalog_deletions_fetch(fx->cat, now, 0, 10000, &d, &n, &msg) != DFS_OK)
        fail_msg("fetch: %s", msg);
    char *s = calloc(n + 1, DFS_FRAGMENT_ID_HEX + DFS_ID_HEX + 2);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) {
        strcat(s, d[i].fragment_id);
        strcat(s, "/");
        strcat(s, d[i].node_id);
        if (i + 1 < n)
            strcat(s, " ");
    }
    free(d);
    return s;
}

static bool has_deletion(struct fx *fx, const char *fragment_id, const char *node_id)
{
    char *all = queued(fx, INT64_MAX);
    char want[DFS_FRAGMENT_ID_HEX + DFS_ID_HEX + 2];
    snprintf(want, sizeof want, "%s/%s", fragment_id, node_id);
    bool found = strstr(all, want) != NULL;
    free(all);
    return found;
}

/* ---- Schema and opening ---------------------------------------------------------------------- */

static void test_open_twice_is_idempotent(void **state)
{
    struct fx *fx = *state;
    reopen(fx);
    reopen(fx);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM schema_version"),
                     DFS_CATALOG_SCHEMA_VERSION);
    assert_int_equal(sql_int(fx->db, "SELECT max(version) FROM schema_version"),
                     DFS_CATALOG_SCHEMA_VERSION);
    assert_true(sql_int(fx->db, "SELECT applied_ms FROM schema_version WHERE version = 1") >
                1600000000000LL);
    assert_int_equal(sql_int(fx->db, "PRAGMA application_id"), 0x64667331);
    assert_int_equal(stats(fx).schema_version, DFS_CATALOG_SCHEMA_VERSION);
    /* WAL is a property of the file; it persists. */
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(fx->db, &h), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(h);
}

/* One handle per catalog file: a second one (another dfs-metadata) is refused until it closes. */
static void test_second_open_is_refused(void **state)
{
    struct fx *fx = *state;
    dfs_catalog *cat = NULL;
    char *msg = NULL;
    assert_int_equal(dfs_catalog_open(fx->db, &cat, &msg), DFS_EPRECOND);
    assert_null(cat);
    char want[800];
    snprintf(want, sizeof want, "catalog %s is in use by another process", fx->db);
    assert_string_equal(msg, want);
    free(msg);
    msg = NULL;
    /* The refused opener changed nothing: the first handle still works. */
    assert_int_equal(stats(fx).schema_version, DFS_CATALOG_SCHEMA_VERSION);
    dfs_catalog_close(fx->cat);
    fx->cat = NULL;
    assert_int_equal(dfs_catalog_open(fx->db, &fx->cat, &msg), DFS_OK);
    assert_null(msg);
}

static void test_open_refuses_foreign_and_newer(void **state)
{
    struct fx *fx = *state;
    char other[700];
    snprintf(other, sizeof other, "%s/other.db", fx->dir);
    sql_exec(other, "CREATE TABLE t (x)");
    dfs_catalog *cat = NULL;
    char *msg = NULL;
    assert_int_equal(dfs_catalog_open(other, &cat, &msg), DFS_EINVAL);
    assert_null(cat);
    expect_msg(&msg, "is not a dfs catalog");
    unlink(other);

    sql_exec(fx->db, "INSERT INTO schema_version VALUES (99, 0)");
    dfs_catalog_close(fx->cat);
    fx->cat = NULL;
    assert_int_equal(dfs_catalog_open(fx->db, &cat, &msg), DFS_EPRECOND);
    expect_msg(&msg, "schema version 99, newer than this program's");
    sql_exec(fx->db, "DELETE FROM schema_version WHERE version = 99");
    reopen(fx);

    snprintf(other, sizeof other, "%s/no/such/dir/x.db", fx->dir);
    assert_int_equal(dfs_catalog_open(other, &cat, &msg), DFS_EIO);
    expect_msg(&msg, "unable to open");
    assert_int_equal(dfs_catalog_open("", &cat, NULL), DFS_EINVAL);

    /* An in-memory catalog works (no WAL there). */
    assert_int_equal(dfs_catalog_open(":memory:", &cat, &msg), DFS_OK);
    assert_null(msg);
    dfs_catalog_close(cat);
    dfs_catalog_close(NULL);
}

/* ---- Nodes ----------------------------------------------------------------------------------- */

static struct dfs_node_rec node(struct fx *fx, int i)
{
    struct dfs_node_rec n;
    char *msg = NULL;
    if (dfs_catalog_node_get(fx->cat, fx->ids[i], &n, &msg) != DFS_OK)
        fail_msg("node_get: %s", msg);
    return n;
}

static void sweep(struct fx *fx, int64_t now, size_t want_suspect, size_t want_dead)
{
    size_t s = 99, d = 99;
    char *msg = NULL;
    if (dfs_catalog_nodes_sweep(fx->cat, now, 3000, 10000, &s, &d, &msg) != DFS_OK)
        fail_msg("sweep: %s", msg);
    assert_int_equal(s, want_suspect);
    assert_int_equal(d, want_dead);
}

static void test_node_register_heartbeat_sweep(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, 3, T0);
    struct dfs_node_rec n = node(fx, 1);
    assert_string_equal(n.id, fx->ids[1]);
    assert_string_equal(n.address, "127.0.0.1:7001");
    assert_string_equal(n.zone, "z1");
    assert_int_equal(n.state, DFS_NODE_ALIVE);
    assert_int_equal(n.usage.capacity_bytes, 1000000);
    assert_int_equal(n.usage.fragment_count, 3);
    assert_int_equal(n.registered_ms, T0);
    assert_int_equal(n.last_heartbeat_ms, T0);

    /* Heartbeats from nodes 0 and 1 at +2500; node 2 stays silent. */
    struct dfs_node_usage u = {
        .capacity_bytes = 5, .used_bytes = 4, .free_bytes = 1, .fragment_count = 9};
    bool known = false;
    assert_int_equal(dfs_catalog_node_heartbeat(fx->cat, fx->ids[0], DFS_CATALOG_KEEP, &u,
                                                T0 + 2500, &known, NULL),
                     DFS_OK);
    assert_true(known);
    assert_int_equal(dfs_catalog_node_heartbeat(fx->cat, fx->ids[1], DFS_CATALOG_KEEP, &u,
                                                T0 + 2500, &known, NULL),
                     DFS_OK);
    n = node(fx, 0);
    assert_int_equal(n.usage.used_bytes, 4);
    assert_int_equal(n.usage.fragment_count, 9);
    assert_int_equal(n.last_heartbeat_ms, T0 + 2500);

    /* Unknown node: known = false, not an error. */
    known = true;
    assert_int_equal(
        dfs_catalog_node_heartbeat(fx->cat, fx->ids[7], DFS_CATALOG_KEEP, &u, T0, &known, NULL),
        DFS_OK);
    assert_false(known);

    sweep(fx, T0 + 3000, 0, 0); /* exactly suspect_after old: not yet late */
    sweep(fx, T0 + 3001, 1, 0); /* node 2 */
    assert_int_equal(node(fx, 2).state, DFS_NODE_SUSPECT);
    assert_int_equal(node(fx, 0).state, DFS_NODE_ALIVE);
    sweep(fx, T0 + 3001, 0, 0);  /* idempotent */
    sweep(fx, T0 + 6000, 2, 0);  /* nodes 0 and 1 (silent 3500 ms) */
    sweep(fx, T0 + 10001, 0, 1); /* node 2 dead; 0 and 1 stay suspect */
    assert_int_equal(node(fx, 2).state, DFS_NODE_DEAD);
    assert_int_equal(node(fx, 1).state, DFS_NODE_SUSPECT);
    struct dfs_catalog_stats s = stats(fx);
    assert_int_equal(s.nodes_alive, 0);
    assert_int_equal(s.nodes_suspect, 2);
    assert_int_equal(s.nodes_dead, 1);

    /* A heartbeat brings suspect and dead nodes back. */
    assert_int_equal(dfs_catalog_node_heartbeat(fx->cat, fx->ids[2], DFS_CATALOG_KEEP, &u,
                                                T0 + 20000, &known, NULL),
                     DFS_OK);
    assert_int_equal(node(fx, 2).state, DFS_NODE_ALIVE);
    assert_int_equal(dfs_catalog_node_heartbeat(fx->cat, fx->ids[1], DFS_CATALOG_KEEP, &u,
                                                T0 + 20000, &known, NULL),
                     DFS_OK);
    assert_int_equal(node(fx, 1).state, DFS_NODE_ALIVE);

    /* Alive straight to dead when silent long enough between sweeps. */
    sweep(fx, T0 + 40000, 0, 3);

    /* Registering again keeps registered_ms, updates the rest, and revives. */
    assert_int_equal(dfs_catalog_node_register(fx->cat, fx->ids[1], "10.0.0.9:1", NULL, &u,
                                               T0 + 50000, DFS_CATALOG_KEEP, DFS_CATALOG_KEEP,
                                               NULL),
                     DFS_OK);
    n = node(fx, 1);
    assert_int_equal(n.state, DFS_NODE_ALIVE);
    assert_int_equal(n.registered_ms, T0);
    assert_int_equal(n.last_heartbeat_ms, T0 + 50000);
    assert_string_equal(n.address, "10.0.0.9:1");
    assert_string_equal(n.zone, "");

    /* Operator states survive registration, heartbeats and sweeps. */
    assert_int_equal(dfs_catalog_node_set_state(fx->cat, fx->ids[1], DFS_NODE_DRAINING, NULL),
                     DFS_OK);
    assert_int_equal(dfs_catalog_node_register(fx->cat, fx->ids[1], "10.0.0.9:1", "", &u,
                                               T0 + 51000, DFS_CATALOG_KEEP, DFS_CATALOG_KEEP,
                                               NULL),
                     DFS_OK);
    assert_int_equal(dfs_catalog_node_heartbeat(fx->cat, fx->ids[1], DFS_CATALOG_KEEP, &u,
                                                T0 + 52000, &known, NULL),
                     DFS_OK);
    assert_int_equal(node(fx, 1).state, DFS_NODE_DRAINING);
    sweep(fx, T0 + 99000, 0, 0);
    assert_int_equal(node(fx, 1).state, DFS_NODE_DRAINING);
    s = stats(fx);
    assert_int_equal(s.nodes_draining, 1);
    assert_int_equal(s.nodes_dead, 2);

    /* Listing: in order of first registration. */
    struct dfs_node_rec *list = NULL;
    size_t nl = 0;
    assert_int_equal(dfs_catalog_nodes_list(fx->cat, &list, &nl, NULL), DFS_OK);
    assert_int_equal(nl, 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(list[i].id, fx->ids[i]);
    assert_int_equal(list[1].state, DFS_NODE_DRAINING);
    free(list);

    char *msg = NULL;
    assert_int_equal(dfs_catalog_node_get(fx->cat, fx->ids[5], &n, &msg), DFS_ENOTFOUND);
    expect_msg(&msg, fx->ids[5]);
    assert_int_equal(dfs_catalog_node_set_state(fx->cat, fx->ids[5], DFS_NODE_DRAINING, &msg),
                     DFS_ENOTFOUND);
    expect_msg(&msg, "no storage node");
    assert_int_equal(dfs_catalog_nodes_sweep(fx->cat, T0, 0, 10, NULL, NULL, &msg), DFS_EINVAL);
    expect_msg(&msg, "suspect_after_ms");
    assert_int_equal(dfs_catalog_nodes_sweep(fx->cat, T0, 10, 5, NULL, NULL, &msg), DFS_EINVAL);
    expect_msg(&msg, "dead_after_ms");
}

/* The catalog's own record of node i (what a replica applying the log holds), past the soft state:
   read while not leading. */
static struct dfs_node_rec durable_node(struct fx *fx, int i, int64_t lead_again_ms)
{
    dfs_catalog_liveness_follow(fx->cat);
    struct dfs_node_rec n = node(fx, i);
    if (lead_again_ms != 0)
        dfs_catalog_liveness_lead(fx->cat, lead_again_ms);
    return n;
}

static void heartbeat(struct fx *fx, int i, uint64_t free_bytes, int64_t now)
{
    struct dfs_node_usage u = usage1;
    u.free_bytes = free_bytes;
    bool known = false;
    char *msg = NULL;
    if (dfs_catalog_node_heartbeat(fx->cat, fx->ids[i], DFS_CATALOG_KEEP, &u, now, &known, &msg) !=
        DFS_OK)
        fail_msg("heartbeat: %s", msg);
    assert_true(known);
}

static void test_liveness_soft_state(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, 3, T0);
    uint64_t reg_free = node(fx, 0).usage.free_bytes;
    const int64_t L = T0 + 100000; /* the lead starts here */
    dfs_catalog_liveness_lead(fx->cat, L);

    /* A heartbeat with the figures the catalog holds is heard (reads show it), not written. */
    heartbeat(fx, 0, reg_free, L + 500);
    assert_int_equal(node(fx, 0).last_heartbeat_ms, L + 500);
    struct dfs_node_rec n = durable_node(fx, 0, L); /* leading ends: what was heard goes */
    assert_int_equal(n.last_heartbeat_ms, T0);
    assert_int_equal(node(fx, 0).last_heartbeat_ms, T0);

    /* Usage is written once it changed and the last write is DFS_CATALOG_USAGE_WRITE_MS old. */
    heartbeat(fx, 0, 111, L + 1000); /* T0's figures are older than that: written */
    n = durable_node(fx, 0, L);
    assert_int_equal(n.usage.free_bytes, 111);
    assert_int_equal(n.last_heartbeat_ms, L + 1000);
    heartbeat(fx, 0, 222, L + 2000); /* changed, but written 1 s ago: heard only */
    n = node(fx, 0);
    assert_int_equal(n.usage.free_bytes, 222);
    assert_int_equal(n.last_heartbeat_ms, L + 2000);
    struct dfs_node_rec *list = NULL;
    size_t nl = 0;
    assert_int_equal(dfs_catalog_nodes_list(fx->cat, &list, &nl, NULL), DFS_OK);
    assert_int_equal(nl, 3);
    assert_int_equal(list[0].usage.free_bytes, 222);
    assert_int_equal(list[1].usage.free_bytes, reg_free);
    free(list);
    assert_int_equal(dfs_catalog_node_resolve(fx->cat, fx->ids[0], &n, NULL), DFS_OK);
    assert_int_equal(n.usage.free_bytes, 222);
    heartbeat(fx, 0, 222, L + 1000 + DFS_CATALOG_USAGE_WRITE_MS - 1);
    n = durable_node(fx, 0, L);
    assert_int_equal(n.usage.free_bytes, 111);
    assert_int_equal(n.last_heartbeat_ms, L + 1000);
    heartbeat(fx, 0, 111, L + 1000); /* the written figures again (memory was dropped) */
    heartbeat(fx, 0, 111, L + 1000 + DFS_CATALOG_USAGE_WRITE_MS); /* unchanged: not written */
    assert_int_equal(durable_node(fx, 0, L).last_heartbeat_ms, L + 1000);
    heartbeat(fx, 0, 333, L + 1000 + DFS_CATALOG_USAGE_WRITE_MS + 1);
    n = durable_node(fx, 0, L);
    assert_int_equal(n.usage.free_bytes, 333);
    assert_int_equal(n.last_heartbeat_ms, L + 1001 + DFS_CATALOG_USAGE_WRITE_MS);

    /* A new lead gives every node its grace from the lead's start, whatever the catalog's last
       heartbeat (T0 for nodes 1 and 2, long before): nothing is late before L2 + 3000. */
    const int64_t L2 = L + 200000;
    dfs_catalog_liveness_lead(fx->cat, L2);
    assert_int_equal(node(fx, 0).usage.free_bytes, 333); /* the catalog's until heard again */
    sweep(fx, L2 + 3000, 0, 0);
    heartbeat(fx, 0, 444, L2 + 2000);
    sweep(fx, L2 + 3001, 2, 0); /* nodes 1 and 2, silent since L2 */
    assert_int_equal(node(fx, 1).state, DFS_NODE_SUSPECT);
    assert_int_equal(node(fx, 0).state, DFS_NODE_ALIVE);
    /* A heartbeat of a suspect node is written: it is alive again, for every replica. */
    heartbeat(fx, 1, 555, L2 + 4000);
    assert_int_equal(node(fx, 1).state, DFS_NODE_ALIVE);
    /* Node 2 dead (silent since L2); nodes 0 and 1 suspect (since L2 + 2000 and + 4000). */
    sweep(fx, L2 + 10001, 2, 1);
    assert_int_equal(node(fx, 2).state, DFS_NODE_DEAD);
    assert_int_equal(node(fx, 0).state, DFS_NODE_SUSPECT);
    assert_int_equal(node(fx, 1).state, DFS_NODE_SUSPECT);
    sweep(fx, L2 + 10001, 0, 0); /* idempotent */
    n = durable_node(fx, 1, L2);
    assert_int_equal(n.usage.free_bytes, 555);
    assert_int_equal(n.last_heartbeat_ms, L2 + 4000);

    /* Errors as without a lead. */
    struct dfs_node_usage u = {.capacity_bytes = 1};
    bool known = true;
    assert_int_equal(
        dfs_catalog_node_heartbeat(fx->cat, fx->ids[7], DFS_CATALOG_KEEP, &u, L2, &known, NULL),
        DFS_OK);
    assert_false(known);
    char *msg = NULL;
    assert_int_equal(dfs_catalog_node_heartbeat(fx->cat, fx->ids[0], 12345, &u, L2, &known, &msg),
                     DFS_EPRECOND);
    expect_msg(&msg, "replaced");
    assert_int_equal(dfs_catalog_nodes_sweep(fx->cat, L2, 10, 5, NULL, NULL, &msg), DFS_EINVAL);
    expect_msg(&msg, "dead_after_ms");

    /* A registration refreshes what is heard: its figures show at once. */
    assert_int_equal(dfs_catalog_node_register(fx->cat, fx->ids[2], "127.0.0.1:7002", "z2", &u,
                                               L2 + 20000, DFS_CATALOG_KEEP, DFS_CATALOG_KEEP,
                                               NULL),
                     DFS_OK);
    n = node(fx, 2);
    assert_int_equal(n.state, DFS_NODE_ALIVE);
    assert_int_equal(n.usage.capacity_bytes, 1);
    assert_int_equal(n.last_heartbeat_ms, L2 + 20000);
    dfs_catalog_liveness_follow(fx->cat);
}

/* A leader's sweep decisions apply only to nodes that did not change since. */
static void test_nodes_mark(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, 4, T0);
    struct dfs_node_mark m[5] = {
        {.from = DFS_NODE_ALIVE, .to = DFS_NODE_SUSPECT, .last_seen_ms = T0},
        {.from = DFS_NODE_ALIVE, .to = DFS_NODE_DEAD, .last_seen_ms = T0},
        {.from = DFS_NODE_SUSPECT, .to = DFS_NODE_DEAD, .last_seen_ms = T0},   /* node 2 is alive */
        {.from = DFS_NODE_ALIVE, .to = DFS_NODE_DEAD, .last_seen_ms = T0 - 1}, /* heard since */
        {.from = DFS_NODE_ALIVE, .to = DFS_NODE_DEAD, .last_seen_ms = T0},     /* unknown node */
    };
    for (int i = 0; i < 5; i++)
        memcpy(m[i].node_id, fx->ids[i == 4 ? 7 : i], sizeof m[i].node_id);
    size_t s = 99, d = 99;
    char *msg = NULL;
    assert_int_equal(dfs_catalog_nodes_mark(fx->cat, m, 5, T0 + 9000, &s, &d, &msg), DFS_OK);
    assert_int_equal(s, 1);
    assert_int_equal(d, 1);
    assert_int_equal(node(fx, 0).state, DFS_NODE_SUSPECT);
    assert_int_equal(node(fx, 1).state, DFS_NODE_DEAD);
    assert_int_equal(node(fx, 2).state, DFS_NODE_ALIVE);
    assert_int_equal(node(fx, 3).state, DFS_NODE_ALIVE);
    /* Transitions a sweep never makes are refused, and nothing is applied. */
    m[2].from = DFS_NODE_SUSPECT;
    m[2].to = DFS_NODE_ALIVE;
    memcpy(m[2].node_id, fx->ids[0], sizeof m[2].node_id);
    m[0].from = DFS_NODE_SUSPECT;
    m[0].to = DFS_NODE_DEAD;
    assert_int_equal(dfs_catalog_nodes_mark(fx->cat, m, 3, T0 + 9000, &s, &d, &msg), DFS_EINVAL);
    expect_msg(&msg, "no liveness transition from suspect to alive");
    assert_int_equal(node(fx, 0).state, DFS_NODE_SUSPECT);
    assert_int_equal(dfs_catalog_nodes_mark(fx->cat, NULL, 0, T0, &s, &d, NULL), DFS_OK);
    assert_int_equal(s + d, 0);
}

static void test_node_validation(void **state)
{
    struct fx *fx = *state;
    char *msg = NULL;
    assert_int_equal(dfs_catalog_node_register(fx->cat, "xyz", "a:1", "", &usage1, T0,
                                               DFS_CATALOG_KEEP, DFS_CATALOG_KEEP, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "bad node id 'xyz'");
    assert_int_equal(dfs_catalog_node_register(fx->cat, fx->ids[0], "", "", &usage1, T0,
                                               DFS_CATALOG_KEEP, DFS_CATALOG_KEEP, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "node address must be 1 to 255 bytes");
    assert_int_equal(dfs_catalog_node_register(fx->cat, fx->ids[0], "a:1\n", "", &usage1, T0,
                                               DFS_CATALOG_KEEP, DFS_CATALOG_KEEP, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "control character");
    char zone[100];
    memset(zone, 'z', sizeof zone - 1);
    zone[sizeof zone - 1] = '\0';
    assert_int_equal(dfs_catalog_node_register(fx->cat, fx->ids[0], "a:1", zone, &usage1, T0,
                                               DFS_CATALOG_KEEP, DFS_CATALOG_KEEP, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "zone must be 0 to 63 bytes");
    struct dfs_node_usage big = usage1;
    big.free_bytes = UINT64_MAX;
    assert_int_equal(dfs_catalog_node_register(fx->cat, fx->ids[0], "a:1", "", &big, T0,
                                               DFS_CATALOG_KEEP, DFS_CATALOG_KEEP, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "free_bytes");
    bool known;
    assert_int_equal(
        dfs_catalog_node_heartbeat(fx->cat, "", DFS_CATALOG_KEEP, &usage1, T0, &known, &msg),
        DFS_EINVAL);
    expect_msg(&msg, "bad node id");
    assert_int_equal(dfs_catalog_node_set_state(fx->cat, fx->ids[0], DFS_NODE_UNSPECIFIED, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "bad node state");
    assert_int_equal(stats(fx).nodes_alive, 0);
    assert_string_equal(dfs_catalog_node_state_name(DFS_NODE_DECOMMISSIONED), "decommissioned");
    assert_string_equal(dfs_catalog_node_state_name((enum dfs_node_state)42), "unknown");
}

/* ---- Files ----------------------------------------------------------------------------------- */

static void test_redundancy_helpers(void **state)
{
    (void)state;
    struct dfs_redundancy r = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 3, .fragments = 4};
    assert_int_equal(dfs_catalog_redundancy_check(&r, NULL), DFS_OK);
    assert_int_equal(dfs_catalog_redundancy_fragments(&r), 4);
    assert_int_equal(dfs_catalog_redundancy_copies(&r), 3);
    struct dfs_redundancy ec = {.scheme = DFS_SCHEME_ERASURE, .data = 6, .parity = 3};
    assert_int_equal(dfs_catalog_redundancy_check(&ec, NULL), DFS_OK);
    assert_int_equal(dfs_catalog_redundancy_fragments(&ec), 9);
    assert_int_equal(dfs_catalog_redundancy_copies(&ec), 1);
    char *msg = NULL;
    r.replicas = 17;
    assert_int_equal(dfs_catalog_redundancy_check(&r, &msg), DFS_EINVAL);
    expect_msg(&msg, "replicas must be 1..16, not 17");
    r.replicas = 3;
    r.fragments = 0;
    assert_int_equal(dfs_catalog_redundancy_check(&r, &msg), DFS_EINVAL);
    expect_msg(&msg, "fragments must be 1..256, not 0");
    r.fragments = 4;
    r.parity = 1;
    assert_int_equal(dfs_catalog_redundancy_check(&r, &msg), DFS_EINVAL);
    expect_msg(&msg, "replication takes no data or parity");
    ec.parity = 27;
    assert_int_equal(dfs_catalog_redundancy_check(&ec, &msg), DFS_EINVAL);
    expect_msg(&msg, "at most 32 in all");
    struct dfs_redundancy none = {0};
    assert_int_equal(dfs_catalog_redundancy_check(&none, &msg), DFS_EINVAL);
    expect_msg(&msg, "not resolved");
}

static void test_create_commit_get_list_delete(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *p = create(fx, "/docs/report.pdf", 1000, 4, 3, false, T0);
    assert_true(dfs_id_valid(p->file_id));
    assert_string_equal(p->path, "/docs/report.pdf");
    assert_int_equal(p->state, DFS_FILE_PENDING);
    assert_int_equal(p->size, 1000);
    assert_int_equal(p->created_ms, T0);
    assert_int_equal(p->committed_ms, 0);
    assert_int_equal(p->expires_ms, T0 + TTL);
    assert_int_equal(p->policy, DFS_POLICY_RANDOM);
    assert_int_equal(p->redundancy.scheme, DFS_SCHEME_REPLICATION);
    assert_int_equal(p->redundancy.replicas, 3);
    assert_int_equal(p->redundancy.fragments, 4);
    assert_int_equal(p->fragment_size, 250);
    assert_int_equal(p->nfragments, 4);
    for (uint32_t i = 0; i < 4; i++) {
        const struct dfs_fragment_rec *fr = &p->fragments[i];
        assert_int_equal(fr->index, i);
        char want[DFS_FRAGMENT_ID_HEX + 1];
        dfs_fragment_id(p->file_id, i, want);
        assert_string_equal(fr->fragment_id, want);
        assert_int_equal(fr->size, 250);
        assert_int_equal(fr->checksum, 0);
        assert_int_equal(fr->nreplicas, 3);
        assert_int_equal(fr->nfailed, 0);
        for (uint32_t j = 0; j < 3; j++) {
            int node_i = (int)((i + j) % NNODES);
            assert_string_equal(fr->replicas[j].node_id, fx->ids[node_i]); /* plan order kept */
            char addr[32];
            snprintf(addr, sizeof addr, "127.0.0.1:%d", 7000 + node_i);
            assert_string_equal(fr->replicas[j].address, addr);
            assert_int_equal(fr->replicas[j].node_state, DFS_NODE_ALIVE);
        }
    }

    struct dfs_file_rec *c = commit(fx, p, T0 + 500);
    assert_string_equal(c->file_id, p->file_id);
    assert_int_equal(c->state, DFS_FILE_COMMITTED);
    assert_int_equal(c->committed_ms, T0 + 500);
    assert_int_equal(c->expires_ms, 0);
    assert_int_equal(c->sha256[0], 1);
    assert_int_equal(c->sha256[31], (uint8_t)(31 * 7 + 1));
    assert_int_equal(c->fragments[2].checksum, 0xc0de0002u);
    assert_int_equal(c->fragments[2].nreplicas, 3);

    struct dfs_file_rec *g = NULL;
    char *msg = NULL;
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/docs/report.pdf", &g, &msg), DFS_OK);
    assert_string_equal(g->file_id, p->file_id);
    assert_memory_equal(g->sha256, c->sha256, DFS_SHA256_LEN);
    assert_int_equal(g->nfragments, 4);
    assert_string_equal(g->fragments[3].replicas[2].node_id, fx->ids[5]);
    dfs_catalog_file_rec_free(g);

    struct dfs_file_rec *list = NULL;
    size_t n = 0;
    bool more = true;
    assert_int_equal(dfs_catalog_files_list(fx->cat, "/", NULL, 0, &list, &n, &more, &msg), DFS_OK);
    assert_int_equal(n, 1);
    assert_false(more);
    assert_string_equal(list[0].path, "/docs/report.pdf");
    assert_null(list[0].fragments);
    assert_int_equal(list[0].nfragments, 0);
    assert_int_equal(list[0].state, DFS_FILE_COMMITTED);
    dfs_catalog_file_recs_free(list, n);

    struct dfs_catalog_stats s = stats(fx);
    assert_int_equal(s.files, 1);
    assert_int_equal(s.logical_bytes, 1000);
    assert_int_equal(s.stored_bytes, 3000);
    assert_int_equal(s.pending_files, 0);
    assert_int_equal(s.pending_deletions, 0);
    assert_int_equal(s.nodes_alive, NNODES);

    struct dfs_file_rec *d = NULL;
    assert_int_equal(dfs_catalog_file_delete(fx->cat, "/docs/report.pdf", T0 + 900, &d, &msg),
                     DFS_OK);
    assert_string_equal(d->file_id, p->file_id);
    assert_int_equal(d->nfragments, 4);
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/docs/report.pdf", &g, &msg), DFS_ENOTFOUND);
    expect_msg(&msg, "no file /docs/report.pdf");
    assert_int_equal(dfs_catalog_file_delete(fx->cat, "/docs/report.pdf", T0, &g, &msg),
                     DFS_ENOTFOUND);
    expect_msg(&msg, "no file /docs/report.pdf");
    s = stats(fx);
    assert_int_equal(s.files, 0);
    assert_int_equal(s.stored_bytes, 0);
    assert_int_equal(s.pending_deletions, 12);
    for (size_t i = 0; i < 4; i++) {
        for (size_t j = 0; j < 3; j++)
            assert_true(
                has_deletion(fx, d->fragments[i].fragment_id, d->fragments[i].replicas[j].node_id));
    }
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM fragments"), 0);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM replicas"), 0);
    dfs_catalog_file_rec_free(d);
    dfs_catalog_file_rec_free(c);
    dfs_catalog_file_rec_free(p);
}

/* A create that must fail with `code` and `text`; then the plan is reset to a valid one. */
static void expect_create(struct fx *fx, struct plan *p, int code, const char *text)
{
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    assert_int_equal(dfs_catalog_file_create(fx->cat, &p->req, T0, &f, &msg), code);
    assert_null(f);
    expect_msg(&msg, text);
    make_plan(fx, p, "/f", 100, 2, 2, 0, 4, false, T0 + TTL);
}

static void test_create_validation(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, 4, T0);
    struct plan p;
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    make_plan(fx, &p, "/f", 100, 2, 2, 0, 4, false, T0 + TTL);
    p.req.path = "f";
    expect_create(fx, &p, DFS_EINVAL, "not canonical");
    p.req.path = "/a//b";
    expect_create(fx, &p, DFS_EINVAL, "not canonical");
    p.req.path = "/a/";
    expect_create(fx, &p, DFS_EINVAL, "ends with '/'");
    p.req.redundancy.replicas = 0;
    expect_create(fx, &p, DFS_EINVAL, "replicas must be");
    p.req.policy = DFS_POLICY_UNSPECIFIED;
    expect_create(fx, &p, DFS_EINVAL, "policy not resolved");
    p.req.expires_ms = T0;
    expect_create(fx, &p, DFS_EINVAL, "is not after now");
    p.req.nfragments = 1;
    expect_create(fx, &p, DFS_EINVAL, "plan has 1 fragments, the redundancy needs 2");
    p.frags[1].index = 0;
    expect_create(fx, &p, DFS_EINVAL, "index 0 is repeated");
    p.frags[1].index = 5;
    expect_create(fx, &p, DFS_EINVAL, "index 5 is out of range");
    p.frags[1].nnodes = 1;
    expect_create(fx, &p, DFS_EINVAL, "fragment 1 has 1 nodes, want 2");
    p.ids[1][1] = p.ids[1][0];
    expect_create(fx, &p, DFS_EINVAL, "names node");
    p.ids[1][1] = "nothex";
    expect_create(fx, &p, DFS_EINVAL, "bad node id 'nothex'");
    p.frags[1].size = 49;
    expect_create(fx, &p, DFS_EINVAL, "plan fragments hold 99 bytes, the file has 100");
    p.req.size = UINT64_MAX;
    expect_create(fx, &p, DFS_EINVAL, "file size");
    p.req.cell_size = 64;
    expect_create(fx, &p, DFS_EINVAL, "replication takes no cell size");
    p.ids[0][0] = fx->ids[6]; /* never registered */
    expect_create(fx, &p, DFS_ENOTFOUND, "is not registered");
    assert_int_equal(dfs_catalog_node_set_state(fx->cat, fx->ids[1], DFS_NODE_DRAINING, NULL),
                     DFS_OK);
    expect_create(fx, &p, DFS_EABORTED, "is draining, not alive");
    assert_int_equal(dfs_catalog_node_set_state(fx->cat, fx->ids[1], DFS_NODE_ALIVE, NULL), DFS_OK);

    /* Erasure code: one node per fragment, all distinct, a cell size. */
    const char *ec_ids[3][1] = {{fx->ids[0]}, {fx->ids[1]}, {fx->ids[2]}};
    struct dfs_plan_fragment ec[3];
    for (uint32_t i = 0; i < 3; i++)
        ec[i] = (struct dfs_plan_fragment){
            .index = i, .size = 4096, .node_ids = ec_ids[i], .nnodes = 1};
    struct dfs_create_req req = {
        .path = "/ec",
        .size = 8000,
        .redundancy = {.scheme = DFS_SCHEME_ERASURE, .data = 2, .parity = 1},
        .policy = DFS_POLICY_RANDOM,
        .fragment_size = 4096,
        .cell_size = 1024,
        .expires_ms = T0 + TTL,
        .fragments = ec,
        .nfragments = 3,
    };
    ec_ids[2][0] = fx->ids[0];
    assert_int_equal(dfs_catalog_file_create(fx->cat, &req, T0, &f, &msg), DFS_EINVAL);
    expect_msg(&msg, "fragments 0 and 2 are both planned on node");
    ec_ids[2][0] = fx->ids[2];
    req.cell_size = 0;
    assert_int_equal(dfs_catalog_file_create(fx->cat, &req, T0, &f, &msg), DFS_EINVAL);
    expect_msg(&msg, "needs a cell size");
    req.cell_size = 1024;
    assert_int_equal(dfs_catalog_file_create(fx->cat, &req, T0, &f, &msg), DFS_OK);
    assert_int_equal(f->redundancy.scheme, DFS_SCHEME_ERASURE);
    assert_int_equal(f->redundancy.data, 2);
    assert_int_equal(f->redundancy.parity, 1);
    assert_int_equal(f->cell_size, 1024);
    assert_int_equal(f->nfragments, 3);
    assert_string_equal(f->fragments[2].replicas[0].node_id, fx->ids[2]);
    dfs_catalog_file_rec_free(f);
    assert_int_equal(stats(fx).pending_files, 1);
}

/* A snapshot of everything a failed call must leave alone. */
static char *snapshot(struct fx *fx, const char *file_id)
{
    struct dfs_file_rec *f = NULL;
    char *s = NULL;
    if (dfs_catalog_file_get_id(fx->cat, file_id, &f, NULL) != DFS_OK)
        return strdup("absent");
    struct dfs_catalog_stats st = stats(fx);
    size_t cap = 4096, len = 0;
    s = calloc(1, cap);
    len += (size_t)snprintf(s + len, cap - len, "%d %zu %lu %lu %lu|", (int)f->state, f->nfragments,
                            (unsigned long)st.files, (unsigned long)st.pending_files,
                            (unsigned long)st.pending_deletions);
    for (size_t i = 0; i < f->nfragments; i++) {
        len += (size_t)snprintf(s + len, cap - len, "%u:%u:", f->fragments[i].index,
                                f->fragments[i].checksum);
        for (size_t j = 0; j < f->fragments[i].nreplicas; j++)
            len += (size_t)snprintf(s + len, cap - len, "%.6s,",
                                    f->fragments[i].replicas[j].node_id + 26);
    }
    dfs_catalog_file_rec_free(f);
    return s;
}

/*
 * A commit of all fragments that must fail with `code` and `text` and leave `before` as it was;
 * then the commit arguments are reset to valid ones.
 */
static void expect_commit(struct fx *fx, const struct dfs_file_rec *p, struct commit *c,
                          const char *before, int code, const char *text)
{
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    assert_int_equal(
        dfs_catalog_file_commit(fx->cat, p->file_id, c->sha, c->frags, 2, T0 + 10, &f, &msg), code);
    assert_null(f);
    expect_msg(&msg, text);
    char *after = snapshot(fx, p->file_id);
    assert_string_equal(before, after);
    free(after);
    make_commit(p, c);
}

static void test_commit_failures_change_nothing(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *p = create(fx, "/c", 100, 2, 3, false, T0);
    char *before = snapshot(fx, p->file_id);
    struct commit c;
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    const char *stranger[] = {fx->ids[7]};
    const char *twice[] = {fx->ids[0], fx->ids[0]};
    make_commit(p, &c);
    c.frags[1].index = 0;
    expect_commit(fx, p, &c, before, DFS_EINVAL, "index 0 is repeated");
    c.frags[1].index = 2;
    expect_commit(fx, p, &c, before, DFS_EINVAL, "index 2 is out of range");
    c.frags[1].size = 7;
    expect_commit(fx, p, &c, before, DFS_EINVAL, "fragment 1 has 7 bytes, the plan says 50");
    c.frags[0].nnodes = 0;
    expect_commit(fx, p, &c, before, DFS_EINVAL, "fragment 0 was acknowledged by no storage node");
    c.frags[0].node_ids = stranger;
    c.frags[0].nnodes = 1;
    expect_commit(fx, p, &c, before, DFS_EINVAL, "but is not one of its targets");
    c.frags[0].node_ids = twice;
    c.frags[0].nnodes = 2;
    expect_commit(fx, p, &c, before, DFS_EINVAL, "lists node");
    /* Fragment list shorter than the plan. */
    assert_int_equal(
        dfs_catalog_file_commit(fx->cat, p->file_id, c.sha, c.frags, 1, T0 + 10, &f, &msg),
        DFS_EINVAL);
    expect_msg(&msg, "commit lists 1 fragments");
    assert_int_equal(
        dfs_catalog_file_commit(fx->cat, p->file_id, NULL, c.frags, 2, T0 + 10, &f, &msg),
        DFS_EINVAL);
    expect_msg(&msg, "SHA-256");
    /* Unknown id. */
    char unknown[DFS_ID_HEX + 1];
    assert_int_equal(dfs_id_random(unknown), DFS_OK);
    assert_int_equal(
        dfs_catalog_file_commit(fx->cat, unknown, c.sha, c.frags, 2, T0 + 10, &f, &msg),
        DFS_ENOTFOUND);
    expect_msg(&msg, "no pending file");
    assert_int_equal(dfs_catalog_file_commit(fx->cat, "bad", c.sha, c.frags, 2, T0, &f, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "bad file id");
    /* Expired: the deadline itself is too late. */
    assert_int_equal(
        dfs_catalog_file_commit(fx->cat, p->file_id, c.sha, c.frags, 2, T0 + TTL, &f, &msg),
        DFS_EPRECOND);
    expect_msg(&msg, "expired 0 ms ago");
    char *after = snapshot(fx, p->file_id);
    assert_string_equal(before, after);
    free(after);

    /* Still committable, once. The same commit again (a retry whose first answer was lost)
       succeeds and changes nothing; a commit of other contents is refused. */
    struct dfs_file_rec *ok = commit(fx, p, T0 + 20);
    assert_int_equal(ok->state, DFS_FILE_COMMITTED);
    char *committed = snapshot(fx, p->file_id);
    assert_int_equal(
        dfs_catalog_file_commit(fx->cat, p->file_id, c.sha, c.frags, 2, T0 + 30, &f, &msg), DFS_OK);
    assert_string_equal(f->file_id, p->file_id);
    assert_int_equal(f->committed_ms, ok->committed_ms);
    dfs_catalog_file_rec_free(f);
    f = NULL;
    after = snapshot(fx, p->file_id);
    assert_string_equal(committed, after);
    free(after);
    c.sha[0] ^= 1;
    expect_commit(fx, p, &c, committed, DFS_EPRECOND, "already committed");
    c.frags[1].checksum ^= 1;
    expect_commit(fx, p, &c, committed, DFS_EPRECOND, "already committed");
    free(committed);
    dfs_catalog_file_rec_free(ok);
    dfs_catalog_file_rec_free(p);
    free(before);
}

static void test_commit_partial_acks(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *p = create(fx, "/partial", 100, 2, 3, false, T0);
    struct commit c;
    make_commit(p, &c);
    /* Fragment 1: only its third target acknowledged. */
    c.frags[1].node_ids = &c.ids[1][2];
    c.frags[1].nnodes = 1;
    struct dfs_file_rec *f = NULL;
    assert_int_equal(
        dfs_catalog_file_commit(fx->cat, p->file_id, c.sha, c.frags, 2, T0 + 5, &f, NULL), DFS_OK);
    assert_int_equal(f->fragments[0].nreplicas, 3);
    assert_int_equal(f->fragments[1].nreplicas, 1);
    assert_string_equal(f->fragments[1].replicas[0].node_id, p->fragments[1].replicas[2].node_id);
    assert_true(has_deletion(fx, p->fragments[1].fragment_id, p->fragments[1].replicas[0].node_id));
    assert_true(has_deletion(fx, p->fragments[1].fragment_id, p->fragments[1].replicas[1].node_id));
    struct dfs_catalog_stats s = stats(fx);
    assert_int_equal(s.pending_deletions, 2);
    assert_int_equal(s.stored_bytes, 50 * 3 + 50);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM replicas WHERE acked = 0"), 0);
    dfs_catalog_file_rec_free(f);
    dfs_catalog_file_rec_free(p);
}

static void test_pending_is_invisible(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *p = create(fx, "/hidden", 10, 1, 2, false, T0);
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/hidden", &f, &msg), DFS_ENOTFOUND);
    expect_msg(&msg, "no file /hidden");
    struct dfs_file_rec *list = NULL;
    size_t n = 9;
    bool more = true;
    assert_int_equal(dfs_catalog_files_list(fx->cat, "/", NULL, 10, &list, &n, &more, NULL),
                     DFS_OK);
    assert_int_equal(n, 0);
    assert_null(list);
    assert_false(more);
    assert_int_equal(dfs_catalog_file_delete(fx->cat, "/hidden", T0, &f, &msg), DFS_ENOTFOUND);
    expect_msg(&msg, "no file");
    struct dfs_catalog_stats s = stats(fx);
    assert_int_equal(s.files, 0);
    assert_int_equal(s.pending_files, 1);
    assert_int_equal(s.stored_bytes, 0);
    /* ...but reachable by id, for ReplaceTarget. */
    assert_int_equal(dfs_catalog_file_get_id(fx->cat, p->file_id, &f, NULL), DFS_OK);
    assert_int_equal(f->state, DFS_FILE_PENDING);
    assert_int_equal(f->fragments[0].nreplicas, 2);
    dfs_catalog_file_rec_free(f);
    char unknown[DFS_ID_HEX + 1];
    assert_int_equal(dfs_id_random(unknown), DFS_OK);
    assert_int_equal(dfs_catalog_file_get_id(fx->cat, unknown, &f, &msg), DFS_ENOTFOUND);
    expect_msg(&msg, "no file with id");
    dfs_catalog_file_rec_free(p);
}

static void test_path_uniqueness_and_overwrite(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *a = put(fx, "/x", 100, false, T0);

    /* Without overwrite, create refuses at once. */
    struct plan p;
    make_plan(fx, &p, "/x", 100, 4, 3, 0, NNODES, false, T0 + TTL);
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    assert_int_equal(dfs_catalog_file_create(fx->cat, &p.req, T0 + 2, &f, &msg), DFS_EEXIST);
    expect_msg(&msg, "/x already exists (use --force to replace it)");

    /* With overwrite, two puts may be pending for the same path. */
    struct dfs_file_rec *b = create(fx, "/x", 40, 4, 3, true, T0 + 3);
    struct dfs_file_rec *c = create(fx, "/x", 80, 4, 3, true, T0 + 4);
    assert_int_equal(stats(fx).pending_files, 2);
    struct dfs_file_rec *bc = commit(fx, b, T0 + 5);
    struct dfs_file_rec *g = NULL;
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/x", &g, NULL), DFS_OK);
    assert_string_equal(g->file_id, b->file_id);
    assert_int_equal(g->size, 40);
    dfs_catalog_file_rec_free(g);
    /* Every replica of the replaced file is queued. */
    for (size_t i = 0; i < a->nfragments; i++) {
        for (size_t j = 0; j < a->fragments[i].nreplicas; j++)
            assert_true(
                has_deletion(fx, a->fragments[i].fragment_id, a->fragments[i].replicas[j].node_id));
    }
    struct dfs_catalog_stats s = stats(fx);
    assert_int_equal(s.files, 1);
    assert_int_equal(s.logical_bytes, 40);
    assert_int_equal(s.pending_deletions, 12);
    assert_int_equal(dfs_catalog_file_get_id(fx->cat, a->file_id, &g, &msg), DFS_ENOTFOUND);
    expect_msg(&msg, "no file with id");

    struct dfs_file_rec *cc = commit(fx, c, T0 + 6);
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/x", &g, NULL), DFS_OK);
    assert_string_equal(g->file_id, c->file_id);
    dfs_catalog_file_rec_free(g);
    assert_int_equal(stats(fx).files, 1);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM files WHERE path = '/x'"), 1);

    /* Two puts without overwrite race for a new path: the second commit loses and changes nothing.
     */
    struct dfs_file_rec *d = create(fx, "/y", 10, 1, 1, false, T0 + 7);
    struct dfs_file_rec *e = create(fx, "/y", 20, 1, 1, false, T0 + 7);
    struct dfs_file_rec *dc = commit(fx, d, T0 + 8);
    struct commit ce;
    make_commit(e, &ce);
    assert_int_equal(
        dfs_catalog_file_commit(fx->cat, e->file_id, ce.sha, ce.frags, 1, T0 + 9, &f, &msg),
        DFS_EEXIST);
    expect_msg(&msg, "/y already exists (use --force to replace it)");
    assert_int_equal(dfs_catalog_file_get_id(fx->cat, e->file_id, &g, NULL), DFS_OK);
    assert_int_equal(g->state, DFS_FILE_PENDING);
    dfs_catalog_file_rec_free(g);
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/y", &g, NULL), DFS_OK);
    assert_string_equal(g->file_id, d->file_id);
    dfs_catalog_file_rec_free(g);

    /* The schema itself refuses a second committed row for a path. */
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(fx->db, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    char sql[256];
    snprintf(sql, sizeof sql,
             "UPDATE files SET state = 'committed', committed_ms = 1, expires_ms = NULL, "
             "sha256 = zeroblob(32) WHERE file_id = '%s'",
             e->file_id);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL) & 0xff, SQLITE_CONSTRAINT);
    sqlite3_close(h);

    for (struct dfs_file_rec **r = (struct dfs_file_rec *[]){a, b, c, bc, cc, d, e, dc, NULL}; *r;
         r++)
        dfs_catalog_file_rec_free(*r);
}

static void test_abort_and_expiry_queue_planned(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *p = create(fx, "/abort", 100, 2, 3, false, T0);
    char *msg = NULL;
    assert_int_equal(dfs_catalog_file_abort(fx->cat, p->file_id, T0 + 1, &msg), DFS_OK);
    for (size_t i = 0; i < 2; i++) {
        for (size_t j = 0; j < 3; j++)
            assert_true(
                has_deletion(fx, p->fragments[i].fragment_id, p->fragments[i].replicas[j].node_id));
    }
    struct dfs_catalog_stats s = stats(fx);
    assert_int_equal(s.pending_files, 0);
    assert_int_equal(s.pending_deletions, 6);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM fragments"), 0);
    assert_int_equal(dfs_catalog_file_abort(fx->cat, p->file_id, T0 + 2, &msg), DFS_ENOTFOUND);
    expect_msg(&msg, "no pending file");
    dfs_catalog_file_rec_free(p);

    /* Abort never removes a committed file. */
    struct dfs_file_rec *c = put(fx, "/kept", 10, false, T0);
    assert_int_equal(dfs_catalog_file_abort(fx->cat, c->file_id, T0 + 3, &msg), DFS_ENOTFOUND);
    expect_msg(&msg, "no pending file");
    struct dfs_file_rec *g = NULL;
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/kept", &g, NULL), DFS_OK);
    dfs_catalog_file_rec_free(g);
    dfs_catalog_file_rec_free(c);
    assert_int_equal(dfs_catalog_file_abort(fx->cat, "nope", T0, &msg), DFS_EINVAL);
    expect_msg(&msg, "bad file id");

    /* Expiry: two pending files with different deadlines. */
    sql_exec(fx->db, "DELETE FROM deletions"); /* start the expiry part with an empty queue */
    struct dfs_file_rec *early = create(fx, "/early", 10, 1, 2, false, T0);
    struct dfs_file_rec *late = create(fx, "/late", 10, 1, 2, false, T0 + 5000);
    size_t n = 99;
    assert_int_equal(dfs_catalog_files_expire(fx->cat, T0 + TTL - 1, &n, NULL), DFS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(dfs_catalog_files_expire(fx->cat, T0 + TTL, &n, NULL), DFS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(dfs_catalog_file_get_id(fx->cat, early->file_id, &g, &msg), DFS_ENOTFOUND);
    expect_msg(&msg, "no file with id");
    assert_true(
        has_deletion(fx, early->fragments[0].fragment_id, early->fragments[0].replicas[0].node_id));
    assert_true(
        has_deletion(fx, early->fragments[0].fragment_id, early->fragments[0].replicas[1].node_id));
    s = stats(fx);
    assert_int_equal(s.pending_files, 1);
    assert_int_equal(s.pending_deletions, 2);
    assert_int_equal(s.files, 1); /* /kept is untouched */
    /* The late file's commit after its deadline fails; expiry then removes it. */
    struct commit cl;
    make_commit(late, &cl);
    assert_int_equal(dfs_catalog_file_commit(fx->cat, late->file_id, cl.sha, cl.frags, 1,
                                             T0 + 5000 + TTL + 1, &g, &msg),
                     DFS_EPRECOND);
    expect_msg(&msg, "expired 1 ms ago; put it again");
    assert_int_equal(dfs_catalog_files_expire(fx->cat, T0 + 5000 + TTL + 1, NULL, NULL), DFS_OK);
    assert_int_equal(stats(fx).pending_files, 0);
    assert_int_equal(stats(fx).pending_deletions, 4);
    dfs_catalog_file_rec_free(early);
    dfs_catalog_file_rec_free(late);
}

/* The service's ReplaceTarget, as the header suggests writing it: placement, then the catalog. */
static int replace_with_placement(struct fx *fx, const char *file_id, uint32_t index,
                                  const char *failed, dfs_rng *rng, struct dfs_replica_rec *out,
                                  char **errmsg)
{
    struct dfs_file_rec *f = NULL;
    int rc = dfs_catalog_file_get_id(fx->cat, file_id, &f, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_node_rec *nodes = NULL;
    size_t nn = 0;
    rc = dfs_catalog_nodes_list(fx->cat, &nodes, &nn, errmsg);
    assert_int_equal(rc, DFS_OK);
    struct dfs_placement_node cand[NNODES];
    for (size_t i = 0; i < nn; i++)
        cand[i] = (struct dfs_placement_node){.id = nodes[i].id,
                                              .zone = nodes[i].zone,
                                              .free_bytes = nodes[i].usage.free_bytes,
                                              .writable = nodes[i].state == DFS_NODE_ALIVE};
    const struct dfs_fragment_rec *fr = &f->fragments[index];
    const char *placed[DFS_REPLICAS_MAX], *exclude[NNODES + 1];
    for (size_t i = 0; i < fr->nreplicas; i++)
        placed[i] = fr->replicas[i].node_id;
    for (size_t i = 0; i < fr->nfailed; i++)
        exclude[i] = fr->failed_node_ids[i];
    exclude[fr->nfailed] = failed;
    struct dfs_placement_request req = {.policy = f->policy,
                                        .k = 1,
                                        .placed = placed,
                                        .nplaced = fr->nreplicas,
                                        .exclude = exclude,
                                        .nexclude = fr->nfailed + 1};
    size_t pick;
    rc = dfs_placement_choose(NULL, &req, cand, nn, rng, &pick, NULL, errmsg);
    if (rc == DFS_OK)
        rc = dfs_catalog_file_replace_target(fx->cat, file_id, index, failed, nodes[pick].id,
                                             T0 + 100, out, errmsg);
    free(nodes);
    dfs_catalog_file_rec_free(f);
    return rc;
}

static void expect_replace(struct fx *fx, const char *file_id, uint32_t index, const char *failed,
                           const char *fresh, int code, const char *text)
{
    struct dfs_replica_rec r;
    char *msg = NULL;
    assert_int_equal(
        dfs_catalog_file_replace_target(fx->cat, file_id, index, failed, fresh, T0 + 20, &r, &msg),
        code);
    expect_msg(&msg, text);
}

static void test_replace_target(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, 6, T0);
    /* Fragment 0 on nodes 0,1,2; fragment 1 on nodes 1,2,3. */
    struct plan p;
    make_plan(fx, &p, "/r", 100, 2, 3, 0, 6, false, T0 + TTL);
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    assert_int_equal(dfs_catalog_file_create(fx->cat, &p.req, T0, &f, &msg), DFS_OK);
    const char *id = f->file_id;
    struct dfs_replica_rec r;

    /* Node 1 failed for fragment 0; node 4 takes its place, at the same position. */
    assert_int_equal(
        dfs_catalog_file_replace_target(fx->cat, id, 0, fx->ids[1], fx->ids[4], T0 + 10, &r, &msg),
        DFS_OK);
    assert_string_equal(r.node_id, fx->ids[4]);
    assert_string_equal(r.address, "127.0.0.1:7004");
    assert_int_equal(r.node_state, DFS_NODE_ALIVE);
    struct dfs_file_rec *g = NULL;
    assert_int_equal(dfs_catalog_file_get_id(fx->cat, id, &g, NULL), DFS_OK);
    assert_int_equal(g->fragments[0].nreplicas, 3);
    assert_string_equal(g->fragments[0].replicas[0].node_id, fx->ids[0]);
    assert_string_equal(g->fragments[0].replicas[1].node_id, fx->ids[4]);
    assert_string_equal(g->fragments[0].replicas[2].node_id, fx->ids[2]);
    assert_int_equal(g->fragments[0].nfailed, 1);
    assert_string_equal(g->fragments[0].failed_node_ids[0], fx->ids[1]);
    assert_int_equal(g->fragments[1].nfailed, 0);
    assert_string_equal(g->fragments[1].replicas[0].node_id, fx->ids[1]); /* untouched */
    dfs_catalog_file_rec_free(g);
    assert_true(has_deletion(fx, f->fragments[0].fragment_id, fx->ids[1]));

    /* Node 1's partial copy is still queued: it cannot come back to fragment 0 yet. */
    expect_replace(fx, id, 0, fx->ids[2], fx->ids[1], DFS_EABORTED, "its copy is not removed yet");
    expect_replace(fx, id, 0, fx->ids[2], fx->ids[0], DFS_EABORTED,
                   "is already a target of fragment");
    expect_replace(fx, id, 0, fx->ids[1], fx->ids[5], DFS_ENOTFOUND,
                   "is not a target of fragment 0");
    expect_replace(fx, id, 0, fx->ids[2], fx->ids[7], DFS_ENOTFOUND, "is not registered");
    expect_replace(fx, id, 2, fx->ids[2], fx->ids[5], DFS_EINVAL,
                   "fragment index 2 is out of range");
    expect_replace(fx, id, 0, fx->ids[2], fx->ids[2], DFS_EINVAL, "is the failed node");
    expect_replace(fx, id, 0, "zz", fx->ids[2], DFS_EINVAL, "bad node id");
    assert_int_equal(dfs_catalog_node_set_state(fx->cat, fx->ids[5], DFS_NODE_DRAINING, NULL),
                     DFS_OK);
    expect_replace(fx, id, 0, fx->ids[2], fx->ids[5], DFS_EABORTED, "is draining, not alive");
    assert_int_equal(dfs_catalog_node_set_state(fx->cat, fx->ids[5], DFS_NODE_ALIVE, NULL), DFS_OK);
    char unknown[DFS_ID_HEX + 1];
    assert_int_equal(dfs_id_random(unknown), DFS_OK);
    assert_int_equal(
        dfs_catalog_file_replace_target(fx->cat, unknown, 0, fx->ids[0], fx->ids[5], T0, &r, &msg),
        DFS_ENOTFOUND);
    expect_msg(&msg, "no pending file");
    assert_int_equal(
        dfs_catalog_file_replace_target(fx->cat, id, 0, fx->ids[0], fx->ids[5], T0 + TTL, &r, &msg),
        DFS_EPRECOND);
    expect_msg(&msg, "expired");

    /*
     * Through placement: the choice avoids current targets and failed nodes. With nodes 0..5,
     * fragment 0 on {0,4,2}, failed {1} and now 2 failing, only 3 and 5 are eligible.
     */
    dfs_rng rng;
    dfs_rng_seed(&rng, 11);
    assert_int_equal(replace_with_placement(fx, id, 0, fx->ids[2], &rng, &r, &msg), DFS_OK);
    assert_true(strcmp(r.node_id, fx->ids[3]) == 0 || strcmp(r.node_id, fx->ids[5]) == 0);
    const char *third = strcmp(r.node_id, fx->ids[3]) == 0 ? fx->ids[3] : fx->ids[5];
    const char *other = third == fx->ids[3] ? fx->ids[5] : fx->ids[3];
    assert_int_equal(replace_with_placement(fx, id, 0, third, &rng, &r, &msg), DFS_OK);
    assert_string_equal(r.node_id, other);
    /* Now {0,4,other} planned, {1,2,third} failed: nobody is left. */
    assert_int_equal(replace_with_placement(fx, id, 0, other, &rng, &r, &msg), DFS_EPRECOND);
    expect_msg(&msg, "need 1 distinct live storage node, 0 are available");
    /* Once node 1's removal is done, it is eligible again. */
    assert_int_equal(
        dfs_catalog_deletion_done(fx->cat, f->fragments[0].fragment_id, fx->ids[1], NULL), DFS_OK);
    assert_int_equal(replace_with_placement(fx, id, 0, other, &rng, &r, &msg), DFS_OK);
    assert_string_equal(r.node_id, fx->ids[1]);

    /* The commit may only acknowledge current targets. */
    assert_int_equal(dfs_catalog_file_get_id(fx->cat, id, &g, NULL), DFS_OK);
    struct commit c;
    make_commit(g, &c);
    const char *failed_ack[] = {fx->ids[2]};
    c.frags[0].node_ids = failed_ack;
    c.frags[0].nnodes = 1;
    struct dfs_file_rec *done = NULL;
    assert_int_equal(dfs_catalog_file_commit(fx->cat, id, c.sha, c.frags, 2, T0 + 30, &done, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "is not one of its targets");
    make_commit(g, &c);
    assert_int_equal(dfs_catalog_file_commit(fx->cat, id, c.sha, c.frags, 2, T0 + 30, &done, &msg),
                     DFS_OK);
    assert_string_equal(done->fragments[0].replicas[0].node_id, fx->ids[0]);
    assert_string_equal(done->fragments[0].replicas[1].node_id, fx->ids[4]);
    assert_string_equal(done->fragments[0].replicas[2].node_id, fx->ids[1]);
    assert_int_equal(done->fragments[0].nfailed, 0); /* only reported while pending */
    /* Replacing on a committed file is refused. */
    expect_replace(fx, id, 0, fx->ids[0], fx->ids[5], DFS_EPRECOND, "already committed");
    dfs_catalog_file_rec_free(done);
    dfs_catalog_file_rec_free(g);
    dfs_catalog_file_rec_free(f);
}

static void test_replace_target_erasure(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, 5, T0);
    const char *ids[3][1] = {{fx->ids[0]}, {fx->ids[1]}, {fx->ids[2]}};
    struct dfs_plan_fragment frags[3];
    for (uint32_t i = 0; i < 3; i++)
        frags[i] =
            (struct dfs_plan_fragment){.index = i, .size = 2048, .node_ids = ids[i], .nnodes = 1};
    struct dfs_create_req req = {
        .path = "/ec",
        .size = 4000,
        .redundancy = {.scheme = DFS_SCHEME_ERASURE, .data = 2, .parity = 1},
        .policy = DFS_POLICY_RANDOM,
        .fragment_size = 2048,
        .cell_size = 1024,
        .expires_ms = T0 + TTL,
        .fragments = frags,
        .nfragments = 3,
    };
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    assert_int_equal(dfs_catalog_file_create(fx->cat, &req, T0, &f, &msg), DFS_OK);
    struct dfs_replica_rec r;
    /* Node 1 holds fragment 1 of the same stripe: refused. */
    assert_int_equal(dfs_catalog_file_replace_target(fx->cat, f->file_id, 0, fx->ids[0], fx->ids[1],
                                                     T0 + 1, &r, &msg),
                     DFS_EABORTED);
    expect_msg(&msg, "is already a target of file");
    assert_int_equal(dfs_catalog_file_replace_target(fx->cat, f->file_id, 0, fx->ids[0], fx->ids[3],
                                                     T0 + 1, &r, &msg),
                     DFS_OK);
    assert_string_equal(r.node_id, fx->ids[3]);
    dfs_catalog_file_rec_free(f);
}

/*
 * A copy dropped while its file stays (found bad, moved) waits the grace before its removal is
 * handed out: a reader streaming it from an older layout must not find it gone. A deleted file's
 * copies go at once. And what the catalog records of a copy (dfs_catalog_copy_get).
 */
static void test_deletion_grace_and_copy_get(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *p = create(fx, "/g", 10, 1, 3, false, T0);
    struct dfs_file_rec *c = commit(fx, p, T0 + 1);
    const struct dfs_fragment_rec *fr = &c->fragments[0];
    const char *frag = fr->fragment_id;
    bool rec = false;
    uint64_t size = 0;
    uint32_t sum = 0;
    assert_int_equal(
        dfs_catalog_copy_get(fx->cat, frag, fr->replicas[0].node_id, &rec, &size, &sum, NULL),
        DFS_OK);
    assert_true(rec);
    assert_int_equal(size, fr->size);
    assert_int_equal(sum, fr->checksum);
    /* A node without a copy; a pending file's planned copy: not recorded. */
    const char *other = NULL;
    for (int i = 0; i < 4 && other == NULL; i++) {
        bool holds = false;
        for (size_t j = 0; j < fr->nreplicas; j++)
            holds |= strcmp(fr->replicas[j].node_id, fx->ids[i]) == 0;
        if (!holds)
            other = fx->ids[i];
    }
    assert_int_equal(dfs_catalog_copy_get(fx->cat, frag, other, &rec, NULL, NULL, NULL), DFS_OK);
    assert_false(rec);
    struct dfs_file_rec *pend = create(fx, "/pending", 10, 1, 3, false, T0);
    assert_int_equal(dfs_catalog_copy_get(fx->cat, pend->fragments[0].fragment_id,
                                          pend->fragments[0].replicas[0].node_id, &rec, NULL, NULL,
                                          NULL),
                     DFS_OK);
    assert_false(rec);
    char *msg = NULL;
    assert_int_equal(dfs_catalog_copy_get(fx->cat, "short", other, &rec, NULL, NULL, &msg),
                     DFS_EINVAL);
    free(msg);

    /* The copy on replicas[0] is found corrupt at T0 + 10: dropped, its removal queued. */
    bool marked = false;
    assert_int_equal(
        dfs_catalog_report_corrupt(fx->cat, fr->replicas[0].node_id, frag, T0 + 10, &marked, NULL),
        DFS_OK);
    assert_true(marked);
    assert_int_equal(
        dfs_catalog_copy_get(fx->cat, frag, fr->replicas[0].node_id, &rec, NULL, NULL, NULL),
        DFS_OK);
    assert_false(rec);
    /* Another file is deleted at T0 + 20: its copies are not held back. */
    struct dfs_file_rec *q = put(fx, "/gone", 10, false, T0 + 11);
    struct dfs_file_rec *d = NULL;
    assert_int_equal(dfs_catalog_file_delete(fx->cat, "/gone", T0 + 20, &d, NULL), DFS_OK);
    struct dfs_deletion_rec *v = NULL;
    size_t n = 0;
    assert_int_equal(dfs_catalog_deletions_fetch(fx->cat, T0 + 21, 5000, 100, &v, &n, NULL),
                     DFS_OK);
    size_t dropped_copy = 0;
    for (size_t i = 0; i < n; i++)
        dropped_copy += strcmp(v[i].fragment_id, frag) == 0;
    assert_int_equal(dropped_copy, 0);
    assert_int_equal(n, 12); /* /gone: 4 fragments x 3 copies */
    free(v);
    assert_int_equal(dfs_catalog_deletions_fetch(fx->cat, T0 + 5009, 5000, 100, &v, &n, NULL),
                     DFS_OK);
    assert_int_equal(n, 12);
    free(v);
    assert_int_equal(dfs_catalog_deletions_fetch(fx->cat, T0 + 5010, 5000, 100, &v, &n, NULL),
                     DFS_OK);
    assert_int_equal(n, 13);
    free(v);
    dfs_catalog_file_rec_free(p);
    dfs_catalog_file_rec_free(c);
    dfs_catalog_file_rec_free(pend);
    dfs_catalog_file_rec_free(q);
    dfs_catalog_file_rec_free(d);
}

static void test_deletion_queue_alive_only(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, 4, T0);
    /* One fragment on nodes 0,1,2,3 (k = 4), deleted: four queued copies. */
    struct dfs_file_rec *p = create(fx, "/q", 10, 1, 4, false, T0);
    struct dfs_file_rec *c = commit(fx, p, T0 + 1);
    struct dfs_file_rec *d = NULL;
    assert_int_equal(dfs_catalog_file_delete(fx->cat, "/q", T0 + 2, &d, NULL), DFS_OK);
    const char *frag = c->fragments[0].fragment_id;

    /* Node 1 suspect, node 2 dead: only 0 and 3 are handed out. */
    assert_int_equal(dfs_catalog_node_set_state(fx->cat, fx->ids[1], DFS_NODE_SUSPECT, NULL),
                     DFS_OK);
    assert_int_equal(dfs_catalog_node_set_state(fx->cat, fx->ids[2], DFS_NODE_DEAD, NULL), DFS_OK);
    struct dfs_deletion_rec *v = NULL;
    size_t n = 0;
    assert_int_equal(dfs_catalog_deletions_fetch(fx->cat, T0 + 3, 0, 100, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(v[i].fragment_id, frag);
        assert_true(strcmp(v[i].node_id, fx->ids[0]) == 0 || strcmp(v[i].node_id, fx->ids[3]) == 0);
        assert_true(strncmp(v[i].address, "127.0.0.1:700", 13) == 0);
    }
    free(v);
    /* max is respected; the queue is not consumed by fetching. */
    assert_int_equal(dfs_catalog_deletions_fetch(fx->cat, T0 + 3, 0, 1, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 1);
    free(v);
    assert_int_equal(dfs_catalog_deletions_fetch(fx->cat, T0 + 3, 0, 0, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 0);
    assert_null(v);
    assert_int_equal(stats(fx).pending_deletions, 4);

    /* Done removes; done again is harmless. Postponed items wait. */
    assert_int_equal(dfs_catalog_deletion_done(fx->cat, frag, fx->ids[0], NULL), DFS_OK);
    assert_int_equal(dfs_catalog_deletion_done(fx->cat, frag, fx->ids[0], NULL), DFS_OK);
    assert_int_equal(dfs_catalog_deletion_postpone(fx->cat, frag, fx->ids[3], T0 + 1000, NULL),
                     DFS_OK);
    assert_int_equal(dfs_catalog_deletions_fetch(fx->cat, T0 + 999, 0, 100, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 0);
    free(v);
    assert_int_equal(dfs_catalog_deletions_fetch(fx->cat, T0 + 1000, 0, 100, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].node_id, fx->ids[3]);
    free(v);

    /* The suspect node comes back: its item is handed out. */
    bool known;
    assert_int_equal(dfs_catalog_node_heartbeat(fx->cat, fx->ids[1], DFS_CATALOG_KEEP, &usage1,
                                                T0 + 5, &known, NULL),
                     DFS_OK);
    char *all = queued(fx, T0 + 2000);
    char want[100];
    snprintf(want, sizeof want, "%s/%s", frag, fx->ids[1]);
    assert_non_null(strstr(all, want));
    free(all);

    /* A node that is no longer registered: its items are dropped when the queue is read. */
    char sql[128];
    snprintf(sql, sizeof sql, "DELETE FROM nodes WHERE id = '%s'", fx->ids[2]);
    sql_exec(fx->db, sql);
    assert_int_equal(stats(fx).pending_deletions, 3);
    assert_int_equal(dfs_catalog_deletions_fetch(fx->cat, T0 + 2000, 0, 100, &v, &n, NULL), DFS_OK);
    free(v);
    assert_int_equal(stats(fx).pending_deletions, 2);

    char *msg = NULL;
    assert_int_equal(dfs_catalog_deletion_done(fx->cat, "short", fx->ids[0], &msg), DFS_EINVAL);
    expect_msg(&msg, "bad fragment id");
    assert_int_equal(dfs_catalog_deletion_postpone(fx->cat, frag, "x", 0, &msg), DFS_EINVAL);
    expect_msg(&msg, "bad node id");
    dfs_catalog_file_rec_free(d);
    dfs_catalog_file_rec_free(c);
    dfs_catalog_file_rec_free(p);
}

/* List everything under prefix with pages of `page`, as a space-separated string. */
static char *list_all(struct fx *fx, const char *prefix, size_t page, int *pages)
{
    char *out = calloc(1, 8192);
    char *after = NULL;
    *pages = 0;
    for (;;) {
        struct dfs_file_rec *v = NULL;
        size_t n = 0;
        bool more = false;
        char *msg = NULL;
        if (dfs_catalog_files_list(fx->cat, prefix, after, page, &v, &n, &more, &msg) != DFS_OK)
            fail_msg("list: %s", msg);
        if (++*pages > 1000)
            fail_msg("listing '%s' does not end", prefix);
        assert_true(n <= page);
        for (size_t i = 0; i < n; i++) {
            if (out[0] != '\0')
                strcat(out, " ");
            strcat(out, v[i].path);
        }
        free(after);
        after = n > 0 ? strdup(v[n - 1].path) : NULL;
        dfs_catalog_file_recs_free(v, n);
        if (!more)
            break;
        assert_int_equal(n, page);
    }
    free(after);
    return out;
}

static void expect_list(struct fx *fx, const char *prefix, size_t page, const char *want)
{
    int pages = 0;
    char *got = list_all(fx, prefix, page, &pages);
    if (strcmp(got, want) != 0)
        fail_msg("prefix '%s' page %zu: got '%s', want '%s'", prefix, page, got, want);
    free(got);
}

static void test_list_pagination_and_prefixes(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    const char *paths[] = {"/a",
                           "/a/x",
                           "/a/y",
                           "/ab",
                           "/a%b",
                           "/a_b",
                           "/b/c",
                           "/A",
                           "/\xf4\x8f\xbf\xbf",
                           "/\xf4\x8f\xbf\xbf\xf4\x8f\xbf\xbf",
                           "/z"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        dfs_catalog_file_rec_free(put(fx, paths[i], 10, false, T0));
    /* Byte order: 'A' 0x41 < 'a'; '%' 0x25 < '/' 0x2f < '_' 0x5f < 'b' 0x62; U+10FFFF (the
       highest bytes valid UTF-8 paths hold) last. */
    const char *all =
        "/A /a /a%b /a/x /a/y /a_b /ab /b/c /z /\xf4\x8f\xbf\xbf /\xf4\x8f\xbf\xbf\xf4\x8f\xbf\xbf";
    for (size_t page = 1; page <= 12; page++)
        expect_list(fx, "/", page, all);
    expect_list(fx, "/a", 2, "/a /a%b /a/x /a/y /a_b /ab");
    expect_list(fx, "/a/", 1, "/a/x /a/y");
    expect_list(fx, "/a%", 10, "/a%b");
    expect_list(fx, "/a_", 10, "/a_b");
    expect_list(fx, "/a/x", 10, "/a/x");
    expect_list(fx, "/a/x/", 10, "");
    expect_list(fx, "/b", 10, "/b/c");
    expect_list(fx, "/\xf4\x8f\xbf\xbf", 1, "/\xf4\x8f\xbf\xbf /\xf4\x8f\xbf\xbf\xf4\x8f\xbf\xbf");
    expect_list(fx, "/q", 10, "");

    /* Exactly a page: the last page says no more. */
    struct dfs_file_rec *v = NULL;
    size_t n = 0;
    bool more = true;
    assert_int_equal(dfs_catalog_files_list(fx->cat, "/a/", NULL, 2, &v, &n, &more, NULL), DFS_OK);
    assert_int_equal(n, 2);
    assert_false(more);
    dfs_catalog_file_recs_free(v, n);
    /* A cursor before the prefix starts at the prefix; one after it ends the listing. */
    assert_int_equal(dfs_catalog_files_list(fx->cat, "/a/", "/A", 10, &v, &n, &more, NULL), DFS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].path, "/a/x");
    dfs_catalog_file_recs_free(v, n);
    assert_int_equal(dfs_catalog_files_list(fx->cat, "/a/", "/a/x", 10, &v, &n, &more, NULL),
                     DFS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].path, "/a/y");
    dfs_catalog_file_recs_free(v, n);
    assert_int_equal(dfs_catalog_files_list(fx->cat, "/a/", "/zzz", 10, &v, &n, &more, NULL),
                     DFS_OK);
    assert_int_equal(n, 0);
    assert_false(more);
    /* A cursor that names no file still works (the file may have been deleted meanwhile). */
    assert_int_equal(dfs_catalog_files_list(fx->cat, "/", "/a/w", 1, &v, &n, &more, NULL), DFS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].path, "/a/x");
    assert_true(more);
    dfs_catalog_file_recs_free(v, n);
    /* Limits: 0 and too many mean DFS_CATALOG_LIST_MAX. */
    assert_int_equal(dfs_catalog_files_list(fx->cat, "/", "", 0, &v, &n, &more, NULL), DFS_OK);
    assert_int_equal(n, 11);
    dfs_catalog_file_recs_free(v, n);
    assert_int_equal(dfs_catalog_files_list(fx->cat, "/", NULL, 1u << 30, &v, &n, &more, NULL),
                     DFS_OK);
    assert_int_equal(n, 11);
    dfs_catalog_file_recs_free(v, n);
    char *msg = NULL;
    assert_int_equal(dfs_catalog_files_list(fx->cat, "a", NULL, 0, &v, &n, &more, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "does not start with '/'");
}

static void test_persistence_across_reopen(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *c = put(fx, "/keep/me", 1234, false, T0);
    struct dfs_file_rec *p = create(fx, "/pending", 100, 2, 3, false, T0 + 10);
    struct dfs_file_rec *gone = put(fx, "/gone", 10, false, T0);
    struct dfs_file_rec *d = NULL;
    assert_int_equal(dfs_catalog_file_delete(fx->cat, "/gone", T0 + 20, &d, NULL), DFS_OK);
    struct dfs_catalog_stats before = stats(fx);
    reopen(fx);
    struct dfs_catalog_stats after = stats(fx);
    assert_int_equal(before.files, after.files);
    assert_int_equal(before.logical_bytes, after.logical_bytes);
    assert_int_equal(before.stored_bytes, after.stored_bytes);
    assert_int_equal(before.nodes_alive, after.nodes_alive);
    assert_int_equal(before.pending_files, after.pending_files);
    assert_int_equal(before.pending_deletions, after.pending_deletions);
    assert_int_equal(before.schema_version, after.schema_version);
    assert_int_equal(after.files, 1);
    assert_int_equal(after.pending_files, 1);
    assert_int_equal(after.pending_deletions, 12);

    struct dfs_file_rec *g = NULL;
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/keep/me", &g, NULL), DFS_OK);
    assert_string_equal(g->file_id, c->file_id);
    assert_memory_equal(g->sha256, c->sha256, DFS_SHA256_LEN);
    assert_int_equal(g->nfragments, c->nfragments);
    for (size_t i = 0; i < g->nfragments; i++) {
        assert_int_equal(g->fragments[i].checksum, c->fragments[i].checksum);
        assert_int_equal(g->fragments[i].size, c->fragments[i].size);
        assert_int_equal(g->fragments[i].nreplicas, c->fragments[i].nreplicas);
    }
    dfs_catalog_file_rec_free(g);
    struct dfs_node_rec n;
    assert_int_equal(dfs_catalog_node_get(fx->cat, fx->ids[3], &n, NULL), DFS_OK);
    assert_int_equal(n.registered_ms, T0);
    assert_true(has_deletion(fx, d->fragments[0].fragment_id, d->fragments[0].replicas[0].node_id));

    /* The pending file survived and can still be committed... */
    struct dfs_file_rec *pc = commit(fx, p, T0 + 30);
    assert_int_equal(pc->state, DFS_FILE_COMMITTED);
    /* ...and an uncommitted one expires after a restart. */
    struct dfs_file_rec *p2 = create(fx, "/pending2", 100, 2, 3, false, T0 + 40);
    reopen(fx);
    size_t nexp = 0;
    assert_int_equal(dfs_catalog_files_expire(fx->cat, T0 + 40 + TTL, &nexp, NULL), DFS_OK);
    assert_int_equal(nexp, 1);
    assert_int_equal(stats(fx).pending_files, 0);
    assert_int_equal(stats(fx).files, 2);
    for (struct dfs_file_rec **r = (struct dfs_file_rec *[]){c, p, gone, d, pc, p2, NULL}; *r; r++)
        dfs_catalog_file_rec_free(*r);
}

/*
 * A SQLite failure in the middle of a verb (injected with a trigger from a second connection) rolls
 * back everything the verb had already written.
 */
static void test_failure_mid_transaction_rolls_back(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    char sql[512];
    /* Create: the file and fragment rows are written before the replica that fails. */
    snprintf(sql, sizeof sql,
             "CREATE TRIGGER boom BEFORE INSERT ON replicas WHEN NEW.node_id = '%s' "
             "BEGIN SELECT RAISE(ABORT, 'injected replica failure'); END",
             fx->ids[5]);
    sql_exec(fx->db, sql);
    struct plan p;
    make_plan(fx, &p, "/boom", 100, 4, 3, 0, NNODES, false, T0 + TTL); /* fragment 3 on 3,4,5 */
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    assert_int_equal(dfs_catalog_file_create(fx->cat, &p.req, T0, &f, &msg), DFS_EINTERNAL);
    assert_null(f);
    expect_msg(&msg, "injected replica failure");
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM files"), 0);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM fragments"), 0);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM replicas"), 0);
    sql_exec(fx->db, "DROP TRIGGER boom");

    /*
     * Commit with overwrite: the old file is removed, acks and deletions written, then the final
     * state change fails.
     */
    struct dfs_file_rec *old = put(fx, "/w", 100, false, T0);
    struct dfs_file_rec *pend = create(fx, "/w", 100, 4, 3, true, T0 + 1);
    char *before = snapshot(fx, pend->file_id);
    sql_exec(fx->db, "CREATE TRIGGER boom BEFORE UPDATE OF state ON files "
                     "BEGIN SELECT RAISE(ABORT, 'injected commit failure'); END");
    struct commit c;
    make_commit(pend, &c);
    c.frags[0].nnodes = 1; /* two planned copies to queue for deletion */
    assert_int_equal(
        dfs_catalog_file_commit(fx->cat, pend->file_id, c.sha, c.frags, 4, T0 + 2, &f, &msg),
        DFS_EINTERNAL);
    assert_null(f);
    expect_msg(&msg, "injected commit failure");
    char *after = snapshot(fx, pend->file_id);
    assert_string_equal(before, after);
    free(after);
    free(before);
    struct dfs_file_rec *g = NULL;
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/w", &g, NULL), DFS_OK);
    assert_string_equal(g->file_id, old->file_id);
    assert_int_equal(g->nfragments, 4);
    dfs_catalog_file_rec_free(g);
    assert_int_equal(stats(fx).pending_deletions, 0);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM replicas WHERE acked = 0"), 12);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM fragments WHERE checksum IS NOT NULL"),
                     4);

    /* Without the fault the same commit goes through (statements survive the schema changes). */
    sql_exec(fx->db, "DROP TRIGGER boom");
    assert_int_equal(
        dfs_catalog_file_commit(fx->cat, pend->file_id, c.sha, c.frags, 4, T0 + 3, &f, &msg),
        DFS_OK);
    assert_int_equal(f->fragments[0].nreplicas, 1);
    assert_int_equal(stats(fx).pending_deletions, 12 + 2);
    dfs_catalog_file_rec_free(f);
    dfs_catalog_file_rec_free(pend);
    dfs_catalog_file_rec_free(old);
}

/* ---- Threads --------------------------------------------------------------------------------- */

#define THREADS 8
#define ROUNDS  25

struct worker {
    struct fx *fx;
    int t;
    int failures;
    char msg[256];
};

static void *work(void *arg)
{
    struct worker *w = arg;
    struct fx *fx = w->fx;
    for (int i = 0; i < ROUNDS && w->failures == 0; i++) {
        char path[64];
        snprintf(path, sizeof path, "/t%d/f%03d", w->t, i);
        struct plan p;
        make_plan(fx, &p, path, 1000, 4, 3, w->t + i, NNODES, false, T0 + TTL);
        struct dfs_file_rec *f = NULL, *c = NULL, *g = NULL, *v = NULL;
        char *msg = NULL;
        int rc = dfs_catalog_file_create(fx->cat, &p.req, T0, &f, &msg);
        if (rc == DFS_OK && i % 5 == 4) {
            rc = dfs_catalog_file_abort(fx->cat, f->file_id, T0 + 1, &msg);
        } else if (rc == DFS_OK) {
            struct commit cm;
            make_commit(f, &cm);
            rc = dfs_catalog_file_commit(fx->cat, f->file_id, cm.sha, cm.frags, f->nfragments,
                                         T0 + 1, &c, &msg);
            if (rc == DFS_OK)
                rc = dfs_catalog_file_get(fx->cat, path, &g, &msg);
        }
        bool known = false;
        if (rc == DFS_OK)
            rc = dfs_catalog_node_heartbeat(fx->cat, fx->ids[(w->t + i) % NNODES], DFS_CATALOG_KEEP,
                                            &usage1, T0 + 2, &known, &msg);
        size_t n = 0;
        bool more;
        if (rc == DFS_OK)
            rc = dfs_catalog_files_list(fx->cat, "/", NULL, 50, &v, &n, &more, &msg);
        struct dfs_catalog_stats s;
        if (rc == DFS_OK)
            rc = dfs_catalog_stats(fx->cat, &s, &msg);
        if (rc != DFS_OK) {
            w->failures++;
            snprintf(w->msg, sizeof w->msg, "%s: %d %s", path, rc, msg == NULL ? "" : msg);
        }
        free(msg);
        dfs_catalog_file_rec_free(f);
        dfs_catalog_file_rec_free(c);
        dfs_catalog_file_rec_free(g);
        dfs_catalog_file_recs_free(v, n);
    }
    return NULL;
}

static void test_concurrent_threads(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int t = 0; t < THREADS; t++) {
        w[t] = (struct worker){.fx = fx, .t = t};
        assert_int_equal(pthread_create(&th[t], NULL, work, &w[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        if (w[t].failures != 0)
            fail_msg("thread %d: %s", t, w[t].msg);
    }
    struct dfs_catalog_stats s = stats(fx);
    int committed = THREADS * (ROUNDS - ROUNDS / 5);
    assert_int_equal(s.files, committed);
    assert_int_equal(s.logical_bytes, (uint64_t)committed * 1000);
    assert_int_equal(s.stored_bytes, (uint64_t)committed * 3000);
    assert_int_equal(s.pending_files, 0);
    assert_int_equal(s.pending_deletions, THREADS * (ROUNDS / 5) * 12);
    int pages = 0;
    char *all = list_all(fx, "/t3/", 7, &pages);
    assert_int_equal(pages, 3);
    free(all);
}

/* ---- Placement state ------------------------------------------------------------------------- */

/* Copysets and buddy groups of the fixture's node ids, as the service would build them. */
static struct dfs_placement_state *built_state(struct fx *fx, enum dfs_policy policy, size_t w,
                                               size_t n, uint64_t seed)
{
    struct dfs_placement_node nodes[NNODES];
    for (size_t i = 0; i < n; i++)
        nodes[i] = (struct dfs_placement_node){
            .id = fx->ids[i], .zone = i % 2 ? "a" : "b", .writable = true};
    struct dfs_placement_config cfg = {.scatter_width = 4};
    dfs_placement *pl = NULL;
    assert_int_equal(dfs_placement_create(&cfg, &pl, NULL), DFS_OK);
    dfs_rng rng;
    dfs_rng_seed(&rng, seed);
    bool changed = false;
    assert_int_equal(dfs_placement_sync(pl, policy, w, nodes, n, &rng, &changed, NULL), DFS_OK);
    assert_true(changed);
    struct dfs_placement_state *st = NULL;
    assert_int_equal(dfs_placement_export(pl, policy, w, &st, NULL), DFS_OK);
    dfs_placement_destroy(pl);
    return st;
}

static void assert_same_state(const struct dfs_placement_state *a,
                              const struct dfs_placement_state *b)
{
    assert_int_equal(a->policy, b->policy);
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->param, b->param);
    assert_int_equal(a->nperms, b->nperms);
    assert_int_equal(a->nsets, b->nsets);
    for (size_t s = 0; s < a->nsets; s++) {
        assert_int_equal(a->sets[s].perm, b->sets[s].perm);
        assert_int_equal(a->sets[s].nnodes, b->sets[s].nnodes);
        for (size_t j = 0; j < a->sets[s].nnodes; j++)
            assert_string_equal(a->sets[s].node_ids[j], b->sets[s].node_ids[j]);
    }
}

static struct dfs_placement_state *load(struct fx *fx, size_t *n)
{
    struct dfs_placement_state *v = NULL;
    char *msg = NULL;
    if (dfs_catalog_placement_load(fx->cat, &v, n, &msg) != DFS_OK)
        fail_msg("placement load: %s", msg);
    return v;
}

static void save(struct fx *fx, const struct dfs_placement_state *st, int64_t now)
{
    char *msg = NULL;
    if (dfs_catalog_placement_save(fx->cat, st, now, &msg) != DFS_OK)
        fail_msg("placement save: %s", msg);
}

/* Save, load, replace, reopen: the families come back exactly as saved. */
static void test_placement_round_trip(void **state)
{
    struct fx *fx = *state;
    size_t n = 99;
    struct dfs_placement_state *none = load(fx, &n);
    assert_int_equal(n, 0);
    assert_null(none);
    struct dfs_placement_state *mc = built_state(fx, DFS_POLICY_MIN_COPY, 3, NNODES, 1); /* P=2 */
    struct dfs_placement_state *bd = built_state(fx, DFS_POLICY_BUDDY, 2, 7, 2);
    struct dfs_placement_state *mc2 = built_state(fx, DFS_POLICY_MIN_COPY, 2, 5, 3);
    assert_int_equal(mc->nperms, 2);
    save(fx, mc, T0);
    save(fx, bd, T0);
    save(fx, mc2, T0);
    struct dfs_placement_state *v = load(fx, &n);
    assert_int_equal(n, 3); /* by family name: buddy/2, min_copy/2, min_copy/3 */
    assert_same_state(&v[0], bd);
    assert_same_state(&v[1], mc2);
    assert_same_state(&v[2], mc);
    dfs_placement_states_free(v, n);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM placement_sets WHERE family = "
                                     "'min_copy/3'"),
                     (int64_t)mc->nsets * 3);
    assert_int_equal(sql_int(fx->db, "SELECT updated_ms FROM placement_families WHERE family = "
                                     "'buddy/2'"),
                     T0);

    /* Saving a family again replaces all of its rows, and only its rows. */
    struct dfs_placement_state *mc_b = built_state(fx, DFS_POLICY_MIN_COPY, 3, 6, 4);
    save(fx, mc_b, T0 + 5);
    reopen(fx);
    v = load(fx, &n);
    assert_int_equal(n, 3);
    assert_same_state(&v[0], bd);
    assert_same_state(&v[1], mc2);
    assert_same_state(&v[2], mc_b);
    dfs_placement_states_free(v, n);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM placement_sets WHERE family = "
                                     "'min_copy/3'"),
                     (int64_t)mc_b->nsets * 3);

    /* A family with no sets (fewer nodes than its width) is kept as such. */
    struct dfs_placement_state empty = {
        .policy = DFS_POLICY_MIN_COPY, .width = 4, .param = 3, .nperms = 1};
    save(fx, &empty, T0 + 6);
    v = load(fx, &n);
    assert_int_equal(n, 4);
    assert_same_state(&v[3], &empty);
    dfs_placement_states_free(v, n);

    /* A loaded state imports into placement and syncs without change. */
    v = load(fx, &n);
    dfs_placement *pl = NULL;
    struct dfs_placement_config cfg = {.scatter_width = 4};
    assert_int_equal(dfs_placement_create(&cfg, &pl, NULL), DFS_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(dfs_placement_import(pl, &v[i], NULL), DFS_OK);
    struct dfs_placement_node nodes[NNODES];
    for (size_t i = 0; i < 6; i++)
        nodes[i] = (struct dfs_placement_node){
            .id = fx->ids[i], .zone = i % 2 ? "a" : "b", .writable = true};
    dfs_rng rng;
    dfs_rng_seed(&rng, 5);
    bool changed = true;
    assert_int_equal(dfs_placement_sync(pl, DFS_POLICY_MIN_COPY, 3, nodes, 6, &rng, &changed, NULL),
                     DFS_OK);
    assert_false(changed);
    dfs_placement_destroy(pl);
    dfs_placement_states_free(v, n);

    dfs_placement_states_free(mc, 1);
    dfs_placement_states_free(bd, 1);
    dfs_placement_states_free(mc2, 1);
    dfs_placement_states_free(mc_b, 1);
}

static void test_placement_validation_and_corruption(void **state)
{
    struct fx *fx = *state;
    struct dfs_placement_state *mc = built_state(fx, DFS_POLICY_MIN_COPY, 3, NNODES, 1);
    char *msg = NULL;
    char *saved = mc->sets[0].node_ids[1];
    mc->sets[0].node_ids[1] = "n1"; /* not a node id */
    assert_int_equal(dfs_catalog_placement_save(fx->cat, mc, T0, &msg), DFS_EINVAL);
    expect_msg(&msg, "bad node id 'n1'");
    mc->sets[0].node_ids[1] = mc->sets[0].node_ids[0];
    assert_int_equal(dfs_catalog_placement_save(fx->cat, mc, T0, &msg), DFS_EINVAL);
    expect_msg(&msg, "holds node");
    mc->sets[0].node_ids[1] = saved;
    mc->sets[0].perm = 7;
    assert_int_equal(dfs_catalog_placement_save(fx->cat, mc, T0, &msg), DFS_EINVAL);
    expect_msg(&msg, "bad placement set 0");
    mc->sets[0].perm = 0;
    struct dfs_placement_state bad = {.policy = DFS_POLICY_RANDOM, .width = 3, .nperms = 1};
    assert_int_equal(dfs_catalog_placement_save(fx->cat, &bad, T0, &msg), DFS_EINVAL);
    expect_msg(&msg, "bad placement state (policy random");
    assert_int_equal(dfs_catalog_placement_save(fx->cat, NULL, T0, &msg), DFS_EINVAL);
    expect_msg(&msg, "bad placement state");
    size_t n = 0;
    struct dfs_placement_state *v = load(fx, &n);
    assert_int_equal(n, 0); /* nothing was saved */

    /* Rows that do not form a family are reported, not guessed at. */
    save(fx, mc, T0);
    sql_exec(fx->db, "UPDATE placement_sets SET set_id = 99 WHERE family = 'min_copy/3' "
                     "AND set_id = 1");
    assert_int_equal(dfs_catalog_placement_load(fx->cat, &v, &n, &msg), DFS_EINTERNAL);
    expect_msg(&msg, "placement family 'min_copy/3' is corrupt at set 2 position 0");
    save(fx, mc, T0);
    sql_exec(fx->db, "DELETE FROM placement_sets WHERE family = 'min_copy/3' AND set_id = 0 "
                     "AND pos = 1");
    assert_int_equal(dfs_catalog_placement_load(fx->cat, &v, &n, &msg), DFS_EINTERNAL);
    expect_msg(&msg, "is corrupt at set 0 position 2");
    save(fx, mc, T0);
    v = load(fx, &n);
    assert_int_equal(n, 1);
    assert_same_state(&v[0], mc);
    dfs_placement_states_free(v, n);
    dfs_placement_states_free(mc, 1);
}

/*
 * A catalog written by schema version 1 (made here by taking migration 2's tables away again,
 * which leaves exactly the version 1 schema) is migrated on open: its files and nodes stay, the
 * placement tables appear empty.
 */
static void test_migration_from_version_1(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *f = put(fx, "/old/file", 5000, false, T0);
    dfs_catalog_close(fx->cat);
    fx->cat = NULL;
    sql_exec(fx->db, "DROP TABLE orphans; DROP TABLE restored; DROP TABLE replication; DROP TABLE "
                     "segments; DROP TABLE path_attrs; DROP "
                     "TABLE file_meta; DROP TABLE "
                     "buckets; DROP TABLE "
                     "tokens; DROP TABLE secrets; "
                     "DROP TABLE inventory; DROP TABLE inventory_reports; DROP TABLE repairs; "
                     "DROP TABLE placement_sets; DROP TABLE placement_families; "
                     "ALTER TABLE nodes DROP COLUMN registration; "
                     "DELETE FROM schema_version WHERE version >= 2;");
    assert_int_equal(sql_int(fx->db, "SELECT max(version) FROM schema_version"), 1);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM sqlite_schema WHERE name LIKE "
                                     "'placement%'"),
                     0);
    reopen(fx);
    assert_int_equal(sql_int(fx->db, "SELECT max(version) FROM schema_version"),
                     DFS_CATALOG_SCHEMA_VERSION);
    assert_int_equal(stats(fx).schema_version, DFS_CATALOG_SCHEMA_VERSION);
    assert_int_equal(stats(fx).files, 1);
    assert_int_equal(stats(fx).nodes_alive, NNODES);
    struct dfs_file_rec *g = NULL;
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/old/file", &g, NULL), DFS_OK);
    assert_string_equal(g->file_id, f->file_id);
    size_t n = 9;
    struct dfs_placement_state *v = load(fx, &n);
    assert_int_equal(n, 0);
    struct dfs_placement_state *bd = built_state(fx, DFS_POLICY_BUDDY, 3, NNODES, 6);
    save(fx, bd, T0);
    v = load(fx, &n);
    assert_int_equal(n, 1);
    assert_same_state(&v[0], bd);
    dfs_placement_states_free(v, n);
    dfs_placement_states_free(bd, 1);
    dfs_catalog_file_rec_free(f);
    dfs_catalog_file_rec_free(g);
}

/* Schema 4 -> 5: the shared 'node' tokens become enrollment ('bootstrap') tokens. */
static void test_migration_from_version_4(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, 2, T0);
    dfs_catalog_close(fx->cat);
    fx->cat = NULL;
    sql_exec(fx->db,
             "DROP TABLE orphans; DROP TABLE restored; DROP TABLE replication; DROP TABLE "
             "segments; DROP TABLE path_attrs; DROP TABLE "
             "file_meta; DROP TABLE buckets; "
             "DROP TABLE tokens; ALTER TABLE nodes DROP COLUMN registration; "
             "CREATE TABLE tokens ("
             "  id           TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 16),"
             "  name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),"
             "  role         TEXT    NOT NULL CHECK (role IN ('admin', 'read_write', "
             "'read_only', 'node')),"
             "  hash         BLOB    NOT NULL CHECK (length(hash) = 32),"
             "  created_ms   INTEGER NOT NULL,"
             "  expires_ms   INTEGER NOT NULL DEFAULT 0 CHECK (expires_ms >= 0),"
             "  revoked_ms   INTEGER NOT NULL DEFAULT 0 CHECK (revoked_ms >= 0),"
             "  last_used_ms INTEGER NOT NULL DEFAULT 0"
             ") WITHOUT ROWID;"
             "INSERT INTO tokens VALUES ('0123456789abcdef', 'nodes', 'node', zeroblob(32), 1, 0, "
             "0, 0), ('1123456789abcdef', 'ops', 'admin', zeroblob(32), 2, 0, 0, 0);"
             "DELETE FROM schema_version WHERE version >= 5;");
    reopen(fx);
    struct dfs_token_rec t;
    uint8_t h[32];
    assert_int_equal(dfs_catalog_token_get(fx->cat, "0123456789abcdef", &t, h, NULL), DFS_OK);
    assert_int_equal(t.role, DFS_ROLE_BOOTSTRAP);
    assert_string_equal(t.node_id, "");
    assert_int_equal(dfs_catalog_token_get(fx->cat, "1123456789abcdef", &t, h, NULL), DFS_OK);
    assert_int_equal(t.role, DFS_ROLE_ADMIN);
    struct dfs_node_rec n;
    assert_int_equal(dfs_catalog_node_get(fx->cat, fx->ids[1], &n, NULL), DFS_OK);
    assert_int_equal(n.registration, 0);
}

/*
 * Schema 6 (S3): a commit with file_meta keeps the MD5 and headers in its transaction; a repeated
 * commit keeps them; files committed without have none; overwriting or deleting the file takes its
 * row with it (ON DELETE CASCADE).
 */
static void test_file_meta(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *plain = put(fx, "/b/plain", 100, false, T0);
    uint8_t md5[DFS_CATALOG_MD5_LEN], got[DFS_CATALOG_MD5_LEN], *meta = NULL;
    size_t len = 9;
    bool has = true;
    assert_int_equal(
        dfs_catalog_file_meta_get(fx->cat, plain->file_id, got, &has, &meta, &len, NULL),
        DFS_ENOTFOUND);
    for (int i = 0; i < DFS_CATALOG_MD5_LEN; i++)
        md5[i] = (uint8_t)(0xa0 + i);
    static const char hdrs[] = "content-type\0image/png\0x-amz-meta-a\0b\0";
    struct dfs_file_meta m = {.md5 = md5, .meta = hdrs, .meta_len = sizeof hdrs - 1};
    for (int round = 0; round < 2; round++) {
        struct dfs_file_rec *p = create(fx, "/b/obj", 1000, 4, 3, true, T0 + 10 * round);
        struct commit c;
        make_commit(p, &c);
        for (int again = 0; again < 2; again++) {
            struct dfs_file_rec *f = NULL;
            char *msg = NULL;
            assert_int_equal(dfs_catalog_file_commit_meta(fx->cat, p->file_id, c.sha, c.frags,
                                                          p->nfragments, &m, T0 + 1, &f, &msg),
                             DFS_OK);
            dfs_catalog_file_rec_free(f);
        }
        assert_int_equal(
            dfs_catalog_file_meta_get(fx->cat, p->file_id, got, &has, &meta, &len, NULL), DFS_OK);
        assert_true(has);
        assert_memory_equal(got, md5, sizeof md5);
        assert_int_equal(len, sizeof hdrs - 1);
        assert_memory_equal(meta, hdrs, len);
        free(meta);
        dfs_catalog_file_rec_free(p);
    }
    /* The first version was replaced: its row went with it. Deleting the file takes the rest. */
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM file_meta"), 1);
    struct dfs_file_rec *d = NULL;
    assert_int_equal(dfs_catalog_file_delete(fx->cat, "/b/obj", T0 + 50, &d, NULL), DFS_OK);
    dfs_catalog_file_rec_free(d);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM file_meta"), 0);
    /* Conditional commits: if_absent while a file holds the path, if_file_id naming another. */
    struct dfs_file_rec *cur = put(fx, "/b/cond", 10, false, T0);
    for (int k = 0; k < 3; k++) {
        struct dfs_file_rec *pc = create(fx, "/b/cond", 10, 1, 3, true, T0 + 60);
        struct commit cc;
        make_commit(pc, &cc);
        struct dfs_file_meta cond = {.if_absent = k == 0,
                                     .if_file_id = k == 1   ? pc->file_id
                                                   : k == 2 ? cur->file_id
                                                            : NULL};
        struct dfs_file_rec *got_f = NULL;
        char *m = NULL;
        int want = k == 2 ? DFS_OK : DFS_EPRECOND;
        assert_int_equal(dfs_catalog_file_commit_meta(fx->cat, pc->file_id, cc.sha, cc.frags,
                                                      pc->nfragments, &cond, T0 + 61, &got_f, &m),
                         want);
        free(m);
        if (want == DFS_OK) { /* a repeat of the commit that took effect passes too */
            dfs_catalog_file_rec_free(got_f);
            got_f = NULL;
            assert_int_equal(dfs_catalog_file_commit_meta(fx->cat, pc->file_id, cc.sha, cc.frags,
                                                          pc->nfragments, &cond, T0 + 62, &got_f,
                                                          NULL),
                             DFS_OK);
        } else {
            assert_int_equal(dfs_catalog_file_abort(fx->cat, pc->file_id, T0 + 62, NULL), DFS_OK);
        }
        dfs_catalog_file_rec_free(got_f);
        dfs_catalog_file_rec_free(pc);
    }
    dfs_catalog_file_rec_free(cur);
    /* Too much, or no MD5. */
    struct dfs_file_rec *p = create(fx, "/b/big", 10, 1, 3, false, T0);
    struct commit c;
    make_commit(p, &c);
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    struct dfs_file_meta big = {.md5 = NULL, .meta = hdrs, .meta_len = DFS_CATALOG_META_MAX + 1};
    assert_int_equal(dfs_catalog_file_commit_meta(fx->cat, p->file_id, c.sha, c.frags,
                                                  p->nfragments, &big, T0 + 1, &f, &msg),
                     DFS_EINVAL);
    free(msg);
    struct dfs_file_meta nomd5 = {.md5 = NULL, .meta = hdrs, .meta_len = 5};
    assert_int_equal(dfs_catalog_file_commit_meta(fx->cat, p->file_id, c.sha, c.frags,
                                                  p->nfragments, &nomd5, T0 + 1, &f, NULL),
                     DFS_OK);
    assert_int_equal(dfs_catalog_file_meta_get(fx->cat, p->file_id, got, &has, &meta, &len, NULL),
                     DFS_OK);
    assert_false(has);
    assert_int_equal(len, 5);
    free(meta);
    dfs_catalog_file_rec_free(f);
    dfs_catalog_file_rec_free(p);
    dfs_catalog_file_rec_free(plain);
}

static struct dfs_token_rec token_rec(const char *id, const char *name, enum dfs_token_role role,
                                      int64_t created, int64_t expires)
{
    struct dfs_token_rec t;
    memset(&t, 0, sizeof t);
    snprintf(t.id, sizeof t.id, "%s", id);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.role = role;
    t.created_ms = created;
    t.expires_ms = expires;
    return t;
}

/* Schema 6 (S3): buckets exist while empty; one is removed only with no file under it. */
static void test_buckets(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    char *msg = NULL;
    assert_int_equal(dfs_catalog_bucket_create(fx->cat, "photos", "0123456789abcdef", T0, NULL),
                     DFS_OK);
    assert_int_equal(dfs_catalog_bucket_create(fx->cat, "photos", "", T0, NULL), DFS_EEXIST);
    assert_int_equal(dfs_catalog_bucket_create(fx->cat, "a-b.c", "", T0 + 1, NULL), DFS_OK);
    assert_int_equal(dfs_catalog_bucket_create(fx->cat, "No", "", T0, &msg), DFS_EINVAL);
    free(msg);
    msg = NULL;
    struct dfs_bucket_rec b;
    assert_int_equal(dfs_catalog_bucket_get(fx->cat, "photos", &b, NULL), DFS_OK);
    assert_string_equal(b.name, "photos");
    assert_int_equal(b.created_ms, T0);
    assert_string_equal(b.token_id, "0123456789abcdef");
    assert_int_equal(dfs_catalog_bucket_get(fx->cat, "nope", &b, NULL), DFS_ENOTFOUND);
    assert_int_equal(dfs_catalog_bucket_get(fx->cat, "../x", &b, NULL), DFS_ENOTFOUND);
    struct dfs_bucket_rec *v = NULL;
    size_t n = 0;
    assert_int_equal(dfs_catalog_buckets_list(fx->cat, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].name, "a-b.c");
    assert_string_equal(v[1].name, "photos");
    free(v);
    /* A file under it (not one of /photos0 or /photosx) keeps it; a pending one too. */
    struct dfs_file_rec *f = put(fx, "/photos0/x", 10, false, T0);
    struct dfs_file_rec *g = put(fx, "/photosx", 10, false, T0);
    struct dfs_file_rec *h = put(fx, "/photos/a/b", 10, false, T0);
    assert_int_equal(dfs_catalog_bucket_delete(fx->cat, "photos", &msg), DFS_EPRECOND);
    free(msg);
    msg = NULL;
    struct dfs_file_rec *d = NULL;
    assert_int_equal(dfs_catalog_file_delete(fx->cat, "/photos/a/b", T0 + 5, &d, NULL), DFS_OK);
    dfs_catalog_file_rec_free(d);
    struct dfs_file_rec *p = create(fx, "/photos/pending", 10, 1, 3, false, T0 + 6);
    assert_int_equal(dfs_catalog_bucket_delete(fx->cat, "photos", NULL), DFS_EPRECOND);
    assert_int_equal(dfs_catalog_file_abort(fx->cat, p->file_id, T0 + 7, NULL), DFS_OK);
    assert_int_equal(dfs_catalog_bucket_delete(fx->cat, "photos", NULL), DFS_OK);
    assert_int_equal(dfs_catalog_bucket_delete(fx->cat, "photos", NULL), DFS_ENOTFOUND);
    assert_int_equal(dfs_catalog_buckets_list(fx->cat, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 1);
    free(v);
    dfs_catalog_file_rec_free(f);
    dfs_catalog_file_rec_free(g);
    dfs_catalog_file_rec_free(h);
    dfs_catalog_file_rec_free(p);
    /* Schema 6 also takes tokens of the gateway role. */
    struct dfs_token_rec t = token_rec("0123456789abcdef", "s3", DFS_ROLE_GATEWAY, T0, 0);
    uint8_t hash[32] = {1}, got[32];
    assert_int_equal(dfs_catalog_token_add(fx->cat, &t, hash, NULL), DFS_OK);
    struct dfs_token_rec back;
    assert_int_equal(dfs_catalog_token_get(fx->cat, t.id, &back, got, NULL), DFS_OK);
    assert_int_equal(back.role, DFS_ROLE_GATEWAY);
    assert_string_equal(dfs_catalog_token_role_name(DFS_ROLE_GATEWAY), "gateway");
    assert_string_equal(dfs_catalog_token_role_name(DFS_ROLE_BOOTSTRAP), "bootstrap");
}

/*
 * Enrollment binds a token to a new node, once; registrations replace one another only from the
 * registration the caller saw; heartbeats of a replaced registration are refused.
 */
static void test_enrollment_and_registrations(void **state)
{
    struct fx *fx = *state;
    uint8_t h[32];
    memset(h, 0x33, sizeof h);
    char *msg = NULL;
    assert_int_equal(dfs_catalog_node_enroll(fx->cat, fx->ids[0], "00000000000000a1", h,
                                             "127.0.0.1:7000", "z0", &usage1, T0, 11, &msg),
                     DFS_OK);
    struct dfs_token_rec t;
    uint8_t got[32];
    assert_int_equal(dfs_catalog_token_get(fx->cat, "00000000000000a1", &t, got, NULL), DFS_OK);
    assert_int_equal(t.role, DFS_ROLE_NODE);
    assert_string_equal(t.node_id, fx->ids[0]);
    assert_memory_equal(got, h, 32);
    char tid[17];
    assert_int_equal(dfs_catalog_node_token(fx->cat, fx->ids[0], tid, NULL), DFS_OK);
    assert_string_equal(tid, "00000000000000a1");
    assert_int_equal(dfs_catalog_node_token(fx->cat, fx->ids[1], tid, NULL), DFS_ENOTFOUND);
    /* Once: a known node, or a taken token id, is refused, and nothing changes. */
    assert_int_equal(dfs_catalog_node_enroll(fx->cat, fx->ids[0], "00000000000000a2", h,
                                             "127.0.0.1:7009", "", &usage1, T0, 12, &msg),
                     DFS_EEXIST);
    expect_msg(&msg, "already enrolled");
    assert_int_equal(dfs_catalog_node_enroll(fx->cat, fx->ids[1], "00000000000000a1", h,
                                             "127.0.0.1:7001", "", &usage1, T0, 13, &msg),
                     DFS_EEXIST);
    expect_msg(&msg, "exists");
    struct dfs_node_rec n;
    assert_int_equal(dfs_catalog_node_get(fx->cat, fx->ids[1], &n, NULL), DFS_ENOTFOUND);
    assert_int_equal(dfs_catalog_node_get(fx->cat, fx->ids[0], &n, NULL), DFS_OK);
    assert_string_equal(n.address, "127.0.0.1:7000");
    assert_int_equal(n.registration, 11);
    /* A registration takes over only from the one the caller saw. */
    assert_int_equal(dfs_catalog_node_register(fx->cat, fx->ids[0], "127.0.0.1:7100", "z0", &usage1,
                                               T0 + 1, 99, 21, &msg),
                     DFS_EABORTED);
    expect_msg(&msg, "another registration");
    assert_int_equal(dfs_catalog_node_register(fx->cat, fx->ids[0], "127.0.0.1:7100", "z0", &usage1,
                                               T0 + 1, 11, 21, NULL),
                     DFS_OK);
    bool known = false;
    assert_int_equal(
        dfs_catalog_node_heartbeat(fx->cat, fx->ids[0], 11, &usage1, T0 + 2, &known, &msg),
        DFS_EPRECOND);
    expect_msg(&msg, "replaced");
    assert_int_equal(
        dfs_catalog_node_heartbeat(fx->cat, fx->ids[0], 21, &usage1, T0 + 2, &known, NULL), DFS_OK);
    assert_true(known);
    assert_int_equal(dfs_catalog_node_get(fx->cat, fx->ids[0], &n, NULL), DFS_OK);
    assert_int_equal(n.last_heartbeat_ms, T0 + 2);
    assert_string_equal(n.address, "127.0.0.1:7100");
    reopen(fx);
    assert_int_equal(dfs_catalog_node_get(fx->cat, fx->ids[0], &n, NULL), DFS_OK);
    assert_int_equal(n.registration, 21);
}

/* ---- Repair queue, reports, health ----------------------------------------------------------- */

/* A committed file of F fragments x k copies, fragment i on nodes (first + i + j) % NNODES. */
static struct dfs_file_rec *put_on(struct fx *fx, const char *path, uint32_t F, uint32_t k,
                                   int first, int64_t now)
{
    struct plan p;
    make_plan(fx, &p, path, 1000 * F, F, k, first, NNODES, false, now + TTL);
    struct dfs_file_rec *pf = NULL, *f = NULL;
    char *msg = NULL;
    if (dfs_catalog_file_create(fx->cat, &p.req, now, &pf, &msg) != DFS_OK)
        fail_msg("create %s: %s", path, msg);
    f = commit(fx, pf, now + 1);
    dfs_catalog_file_rec_free(pf);
    return f;
}

/* An erasure-coded K+M file, fragment i on node first + i. */
static struct dfs_file_rec *put_ec(struct fx *fx, const char *path, uint32_t K, uint32_t M,
                                   int first, int64_t now)
{
    struct plan p;
    memset(&p, 0, sizeof p);
    for (uint32_t i = 0; i < K + M; i++) {
        p.ids[i][0] = fx->ids[(first + (int)i) % NNODES];
        p.frags[i] =
            (struct dfs_plan_fragment){.index = i, .size = 64, .node_ids = p.ids[i], .nnodes = 1};
    }
    p.req = (struct dfs_create_req){
        .path = path,
        .size = 64 * K,
        .redundancy = {.scheme = DFS_SCHEME_ERASURE, .data = K, .parity = M},
        .policy = DFS_POLICY_RANDOM,
        .fragment_size = 64,
        .cell_size = 64,
        .expires_ms = now + TTL,
        .fragments = p.frags,
        .nfragments = K + M,
    };
    struct dfs_file_rec *pf = NULL;
    char *msg = NULL;
    if (dfs_catalog_file_create(fx->cat, &p.req, now, &pf, &msg) != DFS_OK)
        fail_msg("create %s: %s", path, msg);
    struct dfs_file_rec *f = commit(fx, pf, now + 1);
    dfs_catalog_file_rec_free(pf);
    return f;
}

static struct dfs_plan_result plan_all(struct fx *fx, int64_t now)
{
    struct dfs_plan_result sum, r;
    memset(&sum, 0, sizeof sum);
    char cursor[DFS_FRAGMENT_ID_HEX + 1] = "";
    do {
        char *msg = NULL;
        /* A tiny page, so paging itself is exercised. */
        if (dfs_catalog_repair_plan(fx->cat, cursor, 3, now, &r, &msg) != DFS_OK)
            fail_msg("plan: %s", msg);
        sum.scanned += r.scanned;
        sum.queued += r.queued;
        sum.updated += r.updated;
        sum.dropped += r.dropped;
        sum.lost += r.lost;
        sum.trimmed += r.trimmed;
        memcpy(cursor, r.last, sizeof cursor);
    } while (!r.done);
    return sum;
}

static struct dfs_repair_rec *repairs(struct fx *fx, size_t *n)
{
    struct dfs_repair_rec *v = NULL;
    char *msg = NULL;
    if (dfs_catalog_repairs_list(fx->cat, &v, n, &msg) != DFS_OK)
        fail_msg("repairs: %s", msg);
    return v;
}

static void set_state(struct fx *fx, int node, enum dfs_node_state s)
{
    assert_int_equal(dfs_catalog_node_set_state(fx->cat, fx->ids[node], s, NULL), DFS_OK);
}

static int64_t replica_count(struct fx *fx, const char *fragment_id, const char *node_id)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM replicas WHERE fragment_id = '%s' AND node_id = '%s'",
             fragment_id, node_id);
    return sql_int(fx->db, sql);
}

/* Claim the next repair onto `target`; returns the task (caller clears it). */
static struct dfs_repair_task next_task(struct fx *fx, int64_t now)
{
    struct dfs_repair_task t;
    bool found = false;
    char *msg = NULL;
    if (dfs_catalog_repair_next(fx->cat, now, &t, &found, &msg) != DFS_OK)
        fail_msg("next: %s", msg);
    assert_true(found);
    return t;
}

static void test_repair_queue_survives_restart(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *f = put_on(fx, "/a", 2, 3, 0, T0); /* frag 0: 0,1,2; frag 1: 1,2,3 */
    set_state(fx, 1, DFS_NODE_DEAD);
    struct dfs_plan_result r = plan_all(fx, T0 + 10);
    assert_int_equal(r.scanned, 2);
    assert_int_equal(r.queued, 2);
    /* A second pass changes nothing: never duplicated. */
    r = plan_all(fx, T0 + 11);
    assert_int_equal(r.queued, 0);
    assert_int_equal(r.updated, 0);
    size_t n = 0;
    struct dfs_repair_rec *v = repairs(fx, &n);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].reason, DFS_REPAIR_DEAD);
    assert_int_equal(v[0].margin, 1);
    assert_false(v[0].running);
    free(v);

    reopen(fx);
    v = repairs(fx, &n);
    assert_int_equal(n, 2);
    free(v);

    /* Claim one onto node 5, then "crash": the restart puts it back and removes the partial. */
    struct dfs_repair_task t = next_task(fx, T0 + 20);
    char frag[DFS_FRAGMENT_ID_HEX + 1];
    snprintf(frag, sizeof frag, "%s", t.row.fragment_id);
    assert_int_equal(dfs_catalog_repair_start(fx->cat, frag, fx->ids[5], T0 + 20, NULL), DFS_OK);
    /* A second claim of the same row loses. */
    assert_int_equal(dfs_catalog_repair_start(fx->cat, frag, fx->ids[6], T0 + 20, NULL),
                     DFS_EABORTED);
    uint64_t q = 0, run = 0;
    assert_int_equal(dfs_catalog_repair_counts(fx->cat, &q, &run, NULL), DFS_OK);
    assert_int_equal(q, 1);
    assert_int_equal(run, 1);
    dfs_catalog_repair_task_clear(&t);
    reopen(fx);
    size_t rec = 0;
    assert_int_equal(dfs_catalog_repairs_recover(fx->cat, T0 + 30, &rec, NULL), DFS_OK);
    assert_int_equal(rec, 1);
    assert_int_equal(dfs_catalog_repair_counts(fx->cat, &q, &run, NULL), DFS_OK);
    assert_int_equal(q, 2);
    assert_int_equal(run, 0);
    assert_true(has_deletion(fx, frag, fx->ids[5]));

    /* The next claim of that fragment sees node 5 as having held it. */
    t = next_task(fx, T0 + 40);
    bool held5 = false;
    for (size_t i = 0; i < t.nheld; i++)
        held5 = held5 || strcmp(t.held[i], fx->ids[5]) == 0;
    if (strcmp(t.row.fragment_id, frag) == 0)
        assert_true(held5);
    dfs_catalog_repair_task_clear(&t);
    dfs_catalog_file_rec_free(f);
}

static void test_repair_priority_and_lost(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *a = put_on(fx, "/one-dead", 1, 3, 0, T0); /* 0,1,2 */
    struct dfs_file_rec *b = put_on(fx, "/two-dead", 1, 3, 3, T0); /* 3,4,5 */
    struct dfs_file_rec *c = put_on(fx, "/all-dead", 1, 2, 6, T0); /* 6,7 */
    set_state(fx, 2, DFS_NODE_DEAD);
    set_state(fx, 4, DFS_NODE_DEAD);
    set_state(fx, 5, DFS_NODE_DECOMMISSIONED);
    set_state(fx, 6, DFS_NODE_DEAD);
    set_state(fx, 7, DFS_NODE_DEAD);
    struct dfs_plan_result r = plan_all(fx, T0 + 10);
    assert_int_equal(r.queued, 2);
    assert_int_equal(r.lost, 1);
    size_t n = 0;
    struct dfs_repair_rec *v = repairs(fx, &n);
    assert_int_equal(n, 2);
    /* Fewest live copies first. */
    assert_string_equal(v[0].fragment_id, b->fragments[0].fragment_id);
    assert_int_equal(v[0].margin, 0);
    assert_int_equal(v[0].reason, DFS_REPAIR_DECOMMISSION);
    assert_string_equal(v[1].fragment_id, a->fragments[0].fragment_id);
    assert_int_equal(v[1].margin, 1);
    free(v);
    struct dfs_repair_task t = next_task(fx, T0 + 11);
    assert_string_equal(t.row.fragment_id, b->fragments[0].fragment_id);
    dfs_catalog_repair_task_clear(&t);
    /* A lost fragment cannot be queued by hand either. */
    bool q = true;
    assert_int_equal(dfs_catalog_repair_queue(fx->cat, c->fragments[0].fragment_id, DFS_REPAIR_DEAD,
                                              NULL, NULL, T0, &q, NULL),
                     DFS_EPRECOND);
    /* Node 4 comes back: b's row is reprioritised; node 2 comes back: a's row is dropped. */
    bool known = false;
    assert_int_equal(dfs_catalog_node_heartbeat(fx->cat, fx->ids[4], DFS_CATALOG_KEEP, &usage1,
                                                T0 + 12, &known, NULL),
                     DFS_OK);
    assert_int_equal(dfs_catalog_node_heartbeat(fx->cat, fx->ids[2], DFS_CATALOG_KEEP, &usage1,
                                                T0 + 12, &known, NULL),
                     DFS_OK);
    r = plan_all(fx, T0 + 13);
    assert_int_equal(r.updated, 1);
    assert_int_equal(r.dropped, 1);
    v = repairs(fx, &n);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].margin, 1);
    free(v);
    dfs_catalog_file_rec_free(a);
    dfs_catalog_file_rec_free(b);
    dfs_catalog_file_rec_free(c);
}

static void test_repair_complete_fail_and_drain(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *f = put_on(fx, "/d", 2, 2, 0, T0); /* frag 0: 0,1; frag 1: 1,2 */
    const char *f0 = f->fragments[0].fragment_id, *f1 = f->fragments[1].fragment_id;
    set_state(fx, 1, DFS_NODE_DRAINING);
    struct dfs_plan_result r = plan_all(fx, T0 + 10);
    assert_int_equal(r.queued, 2);
    size_t n = 0;
    struct dfs_repair_rec *v = repairs(fx, &n);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v[i].reason, DFS_REPAIR_DRAIN);
        assert_string_equal(v[i].from_node, fx->ids[1]);
        assert_int_equal(v[i].margin, 0);
    }
    free(v);

    /* A failure backs off, counts, never drops, and queues the target's partial copy. */
    struct dfs_repair_task t = next_task(fx, T0 + 20);
    char frag[DFS_FRAGMENT_ID_HEX + 1];
    snprintf(frag, sizeof frag, "%s", t.row.fragment_id);
    dfs_catalog_repair_task_clear(&t);
    assert_int_equal(dfs_catalog_repair_start(fx->cat, frag, fx->ids[6], T0 + 20, NULL), DFS_OK);
    uint32_t attempts = 0;
    assert_int_equal(dfs_catalog_repair_fail(fx->cat, frag, fx->ids[6], T0 + 5000, &attempts, NULL),
                     DFS_OK);
    assert_int_equal(attempts, 1);
    assert_true(has_deletion(fx, frag, fx->ids[6]));
    t = next_task(fx, T0 + 21); /* the other one is due; this one waits */
    assert_string_not_equal(t.row.fragment_id, frag);
    dfs_catalog_repair_task_clear(&t);

    /* Complete both: a wrong checksum is refused, the right one moves the copy. */
    const char *ids[2] = {f0, f1};
    for (int i = 0; i < 2; i++) {
        const struct dfs_fragment_rec *fr = &f->fragments[i];
        assert_int_equal(dfs_catalog_repair_fail(fx->cat, ids[i], NULL, 0, NULL, NULL), DFS_OK);
        assert_int_equal(dfs_catalog_repair_start(fx->cat, ids[i], fx->ids[5], T0 + 30, NULL),
                         DFS_OK);
        assert_int_equal(dfs_catalog_repair_complete(fx->cat, ids[i], fx->ids[5], fr->size,
                                                     fr->checksum + 1, T0 + 31, NULL),
                         DFS_EDATALOSS);
        assert_int_equal(dfs_catalog_repair_complete(fx->cat, ids[i], fx->ids[5], fr->size,
                                                     fr->checksum, T0 + 31, NULL),
                         DFS_OK);
        assert_int_equal(replica_count(fx, ids[i], fx->ids[5]), 1);
        assert_int_equal(replica_count(fx, ids[i], fx->ids[1]), 0);
        assert_true(has_deletion(fx, ids[i], fx->ids[1]));
    }
    /* Node 1 holds no replica row, but its moved copies are still on its disk: it retires only
       once their removal is done. */
    size_t retired = 9;
    assert_int_equal(dfs_catalog_nodes_finish_drains(fx->cat, &retired, NULL), DFS_OK);
    assert_int_equal(retired, 0);
    assert_int_equal(dfs_catalog_deletion_done(fx->cat, f0, fx->ids[1], NULL), DFS_OK);
    assert_int_equal(dfs_catalog_deletion_done(fx->cat, f1, fx->ids[1], NULL), DFS_OK);
    assert_int_equal(dfs_catalog_nodes_finish_drains(fx->cat, &retired, NULL), DFS_OK);
    assert_int_equal(retired, 1);
    struct dfs_node_rec node;
    assert_int_equal(dfs_catalog_node_get(fx->cat, fx->ids[1], &node, NULL), DFS_OK);
    assert_int_equal(node.state, DFS_NODE_DECOMMISSIONED);
    v = repairs(fx, &n);
    assert_int_equal(n, 0);
    free(v);
    /* A completion for a row that is gone is refused and its copy queued for removal. */
    assert_int_equal(dfs_catalog_repair_complete(fx->cat, f0, fx->ids[7], f->fragments[0].size,
                                                 f->fragments[0].checksum, T0 + 40, NULL),
                     DFS_EABORTED);
    assert_true(has_deletion(fx, f0, fx->ids[7]));
    /* A file deleted while a repair runs takes the row with it; the copy is removed. */
    set_state(fx, 2, DFS_NODE_DEAD);
    plan_all(fx, T0 + 50);
    assert_int_equal(dfs_catalog_repair_start(fx->cat, f1, fx->ids[6], T0 + 51, NULL), DFS_OK);
    struct dfs_file_rec *gone = NULL;
    assert_int_equal(dfs_catalog_file_delete(fx->cat, "/d", T0 + 52, &gone, NULL), DFS_OK);
    dfs_catalog_file_rec_free(gone);
    assert_int_equal(dfs_catalog_repair_complete(fx->cat, f1, fx->ids[6], 1000, 0, T0 + 53, NULL),
                     DFS_ENOTFOUND);
    assert_true(has_deletion(fx, f1, fx->ids[6]));
    dfs_catalog_file_rec_free(f);
}

static void test_drain_stops_when_alive_again(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *f = put_on(fx, "/u", 1, 2, 0, T0); /* 0,1 */
    set_state(fx, 0, DFS_NODE_DRAINING);
    assert_int_equal(plan_all(fx, T0 + 1).queued, 1);
    set_state(fx, 0, DFS_NODE_ALIVE);
    size_t n = 9;
    struct dfs_repair_rec *v = repairs(fx, &n);
    assert_int_equal(n, 0);
    free(v);
    /* A drained node without copies retires at the next check. */
    struct dfs_file_rec *gone = NULL;
    set_state(fx, 0, DFS_NODE_DRAINING);
    assert_int_equal(dfs_catalog_file_delete(fx->cat, "/u", T0 + 2, &gone, NULL), DFS_OK);
    dfs_catalog_file_rec_free(gone);
    size_t done = 9;
    assert_int_equal(dfs_catalog_nodes_finish_drains(fx->cat, &done, NULL), DFS_OK);
    assert_int_equal(done, 0); /* its copy's removal is still queued */
    assert_int_equal(
        dfs_catalog_deletion_done(fx->cat, f->fragments[0].fragment_id, fx->ids[0], NULL), DFS_OK);
    assert_int_equal(dfs_catalog_nodes_finish_drains(fx->cat, &done, NULL), DFS_OK);
    assert_int_equal(done, 1);
    struct dfs_node_rec node;
    assert_int_equal(dfs_catalog_node_get(fx->cat, fx->ids[0], &node, NULL), DFS_OK);
    assert_int_equal(node.state, DFS_NODE_DECOMMISSIONED);
    /* Prefix lookups. */
    char prefix[8];
    snprintf(prefix, sizeof prefix, "%.5s", fx->ids[0]);
    assert_int_equal(dfs_catalog_node_resolve(fx->cat, prefix, &node, NULL), DFS_EINVAL);
    assert_int_equal(dfs_catalog_node_resolve(fx->cat, fx->ids[3], &node, NULL), DFS_OK);
    assert_string_equal(node.id, fx->ids[3]);
    assert_int_equal(dfs_catalog_node_resolve(fx->cat, "ffff", &node, NULL), DFS_ENOTFOUND);
    assert_int_equal(dfs_catalog_node_resolve(fx->cat, "xyz", &node, NULL), DFS_EINVAL);
    dfs_catalog_file_rec_free(f);
}

static void test_surplus_trimmed_after_return(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *f = put_on(fx, "/t", 1, 3, 0, T0); /* 0,1,2 at pos 0,1,2 */
    const char *fid = f->fragments[0].fragment_id;
    set_state(fx, 0, DFS_NODE_DEAD);
    plan_all(fx, T0 + 1);
    assert_int_equal(dfs_catalog_repair_start(fx->cat, fid, fx->ids[4], T0 + 2, NULL), DFS_OK);
    /* Never trimmed while the repair runs, even with the node back. */
    set_state(fx, 0, DFS_NODE_ALIVE);
    assert_int_equal(plan_all(fx, T0 + 3).trimmed, 0);
    assert_int_equal(dfs_catalog_repair_complete(fx->cat, fid, fx->ids[4], f->fragments[0].size,
                                                 f->fragments[0].checksum, T0 + 4, NULL),
                     DFS_OK);
    struct dfs_plan_result r = plan_all(fx, T0 + 5);
    assert_int_equal(r.trimmed, 1);
    /* The oldest copy (node 0, pos 0) went; the repaired one stays. */
    assert_int_equal(replica_count(fx, fid, fx->ids[0]), 0);
    assert_int_equal(replica_count(fx, fid, fx->ids[4]), 1);
    assert_true(has_deletion(fx, fid, fx->ids[0]));
    assert_int_equal(plan_all(fx, T0 + 6).trimmed, 0);
    /* Suspect copies are not trimmed: only alive ones are surplus. */
    set_state(fx, 1, DFS_NODE_SUSPECT);
    assert_int_equal(plan_all(fx, T0 + 7).trimmed, 0);
    dfs_catalog_file_rec_free(f);
}

static void test_corrupt_and_missing_reports(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *f = put_on(fx, "/c", 1, 2, 0, T0); /* 0,1 */
    const char *fid = f->fragments[0].fragment_id;
    bool marked = false;
    /* Not a copy of node 5: nothing. */
    assert_int_equal(dfs_catalog_report_corrupt(fx->cat, fx->ids[5], fid, T0, &marked, NULL),
                     DFS_OK);
    assert_false(marked);
    assert_int_equal(dfs_catalog_report_corrupt(fx->cat, fx->ids[0], fid, T0, &marked, NULL),
                     DFS_OK);
    assert_true(marked);
    assert_int_equal(replica_count(fx, fid, fx->ids[0]), 0);
    assert_true(has_deletion(fx, fid, fx->ids[0]));
    size_t n = 0;
    struct dfs_repair_rec *v = repairs(fx, &n);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].reason, DFS_REPAIR_CORRUPT);
    assert_int_equal(v[0].margin, 0);
    free(v);
    /* The last readable copy: its bytes stay for salvage, and the fragment is lost. */
    assert_int_equal(dfs_catalog_report_corrupt(fx->cat, fx->ids[1], fid, T0, &marked, NULL),
                     DFS_OK);
    assert_true(marked);
    assert_false(has_deletion(fx, fid, fx->ids[1]));
    plan_all(fx, T0 + 1);
    v = repairs(fx, &n);
    assert_int_equal(n, 0);
    free(v);
    /* The salvaged bytes are not "unknown" in an inventory either. */
    const char *present[] = {fid};
    assert_int_equal(dfs_catalog_inventory_page(fx->cat, fx->ids[1], 0, present, 1, T0, NULL),
                     DFS_OK);
    size_t unknown = 9;
    assert_int_equal(dfs_catalog_inventory_finish(fx->cat, fx->ids[1], T0, &unknown, NULL), DFS_OK);
    assert_int_equal(unknown, 0);

    /* Missing: a confirmed absent copy is dropped and repaired. */
    struct dfs_file_rec *g = put_on(fx, "/m", 1, 3, 2, T0); /* 2,3,4 */
    assert_int_equal(dfs_catalog_report_missing(fx->cat, fx->ids[3], g->fragments[0].fragment_id,
                                                T0, &marked, NULL),
                     DFS_OK);
    assert_true(marked);
    assert_false(has_deletion(fx, g->fragments[0].fragment_id, fx->ids[3]));
    v = repairs(fx, &n);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].reason, DFS_REPAIR_MISSING);
    assert_int_equal(v[0].margin, 1);
    free(v);
    dfs_catalog_file_rec_free(f);
    dfs_catalog_file_rec_free(g);
}

static void test_inventory_reconciliation(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *a = put_on(fx, "/a", 1, 2, 0, T0); /* 0,1 */
    struct dfs_file_rec *b = put_on(fx, "/b", 1, 2, 0, T0); /* 0,1 */
    struct dfs_file_rec *c = put_on(fx, "/c", 1, 2, 7, T0); /* 7,0 */
    char junk[DFS_FRAGMENT_ID_HEX + 1], planned[DFS_FRAGMENT_ID_HEX + 1];
    memset(junk, 'e', DFS_FRAGMENT_ID_HEX);
    junk[DFS_FRAGMENT_ID_HEX] = '\0';
    /* A pending put planned on node 0: its fragment on disk is not unknown. */
    struct dfs_file_rec *p = create(fx, "/pending", 10, 1, 2, false, T0);
    snprintf(planned, sizeof planned, "%s", p->fragments[0].fragment_id);

    /* Node 0 reports in two pages: a, junk | planned. b and c are absent. */
    const char *page0[] = {a->fragments[0].fragment_id, junk};
    const char *page1[] = {planned};
    assert_int_equal(dfs_catalog_inventory_page(fx->cat, fx->ids[0], 0, page0, 2, T0, NULL),
                     DFS_OK);
    /* A page that skips ahead is refused; a repeated page is harmless. */
    assert_int_equal(dfs_catalog_inventory_page(fx->cat, fx->ids[0], 3, page1, 1, T0, NULL),
                     DFS_EPRECOND);
    assert_int_equal(dfs_catalog_inventory_page(fx->cat, fx->ids[2], 1, page1, 1, T0, NULL),
                     DFS_EPRECOND);
    /* The pages survive a restart of the metadata service. */
    reopen(fx);
    assert_int_equal(dfs_catalog_inventory_page(fx->cat, fx->ids[0], 0 + 1, page1, 1, T0, NULL),
                     DFS_OK);
    assert_int_equal(dfs_catalog_inventory_page(fx->cat, fx->ids[0], 1, page1, 1, T0, NULL),
                     DFS_OK);
    char(*missing)[DFS_FRAGMENT_ID_HEX + 1] = NULL;
    size_t nmissing = 0;
    assert_int_equal(dfs_catalog_inventory_missing(fx->cat, fx->ids[0], &missing, &nmissing, NULL),
                     DFS_OK);
    assert_int_equal(nmissing, 2);
    bool saw_b = false, saw_c = false;
    for (size_t i = 0; i < nmissing; i++) {
        saw_b = saw_b || strcmp(missing[i], b->fragments[0].fragment_id) == 0;
        saw_c = saw_c || strcmp(missing[i], c->fragments[0].fragment_id) == 0;
    }
    assert_true(saw_b && saw_c);
    free(missing);
    /* The caller confirmed only b absent (c committed after the node listed its directory). */
    bool marked = false;
    assert_int_equal(dfs_catalog_report_missing(fx->cat, fx->ids[0], b->fragments[0].fragment_id,
                                                T0, &marked, NULL),
                     DFS_OK);
    assert_true(marked);
    size_t unknown = 0;
    assert_int_equal(dfs_catalog_inventory_finish(fx->cat, fx->ids[0], T0, &unknown, NULL), DFS_OK);
    assert_int_equal(unknown, 1);
    assert_true(has_deletion(fx, junk, fx->ids[0]));
    assert_false(has_deletion(fx, planned, fx->ids[0]));
    assert_false(has_deletion(fx, a->fragments[0].fragment_id, fx->ids[0]));
    assert_int_equal(replica_count(fx, c->fragments[0].fragment_id, fx->ids[0]), 1);
    assert_int_equal(replica_count(fx, b->fragments[0].fragment_id, fx->ids[0]), 0);
    assert_int_equal(sql_int(fx->db, "SELECT count(*) FROM inventory"), 0);
    /* The report is over: a later page without page 0 is refused. */
    assert_int_equal(dfs_catalog_inventory_page(fx->cat, fx->ids[0], 1, page1, 1, T0, NULL),
                     DFS_EPRECOND);
    dfs_catalog_file_rec_free(a);
    dfs_catalog_file_rec_free(b);
    dfs_catalog_file_rec_free(c);
    dfs_catalog_file_rec_free(p);
}

struct orphan_list {
    size_t n;
    char ids[4][DFS_FRAGMENT_ID_HEX + 1];
};

static void collect_orphan(void *arg, const char *fragment_id, const char *node_id, int64_t seen)
{
    struct orphan_list *l = arg;
    (void)node_id;
    assert_int_equal(seen, T0 + 9);
    if (l->n < 4)
        snprintf(l->ids[l->n], sizeof l->ids[0], "%s", fragment_id);
    l->n++;
}

/* A backup restored as a new cluster's catalog: its log starts empty, what it knows is there, and
   the fragments of files committed after the backup are kept as orphans, not deleted. */
static void test_restored_catalog_keeps_unknown_fragments_as_orphans(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *a = put_on(fx, "/a", 1, 2, 0, T0); /* 0,1 */
    assert_int_equal(dfs_catalog_node_register(fx->cat, fx->ids[0], "127.0.0.1:7000", "z0", &usage1,
                                               T0, DFS_CATALOG_KEEP, 77, NULL),
                     DFS_OK);
    /* An upload in progress at the backup, committed after it. */
    struct plan p;
    make_plan(fx, &p, "/inflight", 1000, 1, 2, 0, NNODES, false, T0 + TTL);
    struct dfs_file_rec *pending = NULL;
    assert_int_equal(dfs_catalog_file_create(fx->cat, &p.req, T0, &pending, NULL), DFS_OK);
    char backup[700], fresh[700];
    snprintf(backup, sizeof backup, "%s/backup.db", fx->dir);
    snprintf(fresh, sizeof fresh, "%s/restored.db", fx->dir);
    uint64_t at = 99;
    assert_int_equal(dfs_catalog_backup(fx->db, backup, &at, NULL), DFS_OK);
    assert_int_equal(at, 0);
    struct dfs_file_rec *late = put_on(fx, "/late", 1, 2, 0, T0 + 1); /* after the backup */
    struct dfs_file_rec *inflight = commit(fx, pending, T0 + 2);
    assert_int_equal(dfs_catalog_restore_file(backup, fresh, T0 + 5, &at, NULL), DFS_OK);
    char *msg = NULL;
    assert_int_equal(dfs_catalog_restore_file(backup, fresh, T0 + 5, NULL, &msg), DFS_EEXIST);
    free(msg);

    dfs_catalog *r = NULL;
    assert_int_equal(dfs_catalog_open(fresh, &r, NULL), DFS_OK);
    uint64_t applied = 1;
    assert_int_equal(dfs_catalog_applied_index(r, &applied, NULL), DFS_OK);
    assert_int_equal(applied, 0);
    struct dfs_file_rec *f = NULL;
    assert_int_equal(dfs_catalog_file_get(r, "/a", &f, NULL), DFS_OK);
    dfs_catalog_file_rec_free(f);
    assert_int_equal(dfs_catalog_file_get(r, "/late", &f, NULL), DFS_ENOTFOUND);
    /* The upload pending in the backup is gone (never to expire and delete its fragments). */
    struct dfs_catalog_stats st;
    assert_int_equal(dfs_catalog_stats(r, &st, NULL), DFS_OK);
    assert_int_equal(st.pending_files, 0);
    assert_int_equal(st.files, 1);
    /* The nodes' registrations are forgotten: node 0's heartbeat (registration 77) is answered
       "unknown", so it registers again (and reports its inventory); then it is known. */
    bool known = true;
    assert_int_equal(dfs_catalog_node_heartbeat(r, fx->ids[0], 77, &usage1, T0 + 6, &known, NULL),
                     DFS_OK);
    assert_false(known);
    assert_int_equal(dfs_catalog_node_register(r, fx->ids[0], "127.0.0.1:7000", "z0", &usage1,
                                               T0 + 7, 0, 78, NULL),
                     DFS_OK);
    assert_int_equal(dfs_catalog_node_heartbeat(r, fx->ids[0], 78, &usage1, T0 + 8, &known, NULL),
                     DFS_OK);
    assert_true(known);

    /* Node 0 reports a's fragment, late's and inflight's: the last two are kept, not queued for
       deletion. */
    const char *page[] = {a->fragments[0].fragment_id, late->fragments[0].fragment_id,
                          inflight->fragments[0].fragment_id};
    assert_int_equal(dfs_catalog_inventory_page(r, fx->ids[0], 0, page, 3, T0 + 9, NULL), DFS_OK);
    size_t unknown = 9;
    assert_int_equal(dfs_catalog_inventory_finish(r, fx->ids[0], T0 + 9, &unknown, NULL), DFS_OK);
    assert_int_equal(unknown, 0);
    struct orphan_list l = {0};
    assert_int_equal(dfs_catalog_orphans_file(fresh, 100, collect_orphan, &l, NULL), DFS_OK);
    assert_int_equal(l.n, 2);
    bool saw_late = false, saw_inflight = false;
    for (size_t i = 0; i < l.n; i++) {
        saw_late |= strcmp(l.ids[i], late->fragments[0].fragment_id) == 0;
        saw_inflight |= strcmp(l.ids[i], inflight->fragments[0].fragment_id) == 0;
    }
    assert_true(saw_late && saw_inflight);
    dfs_catalog_close(r);
    dfs_catalog_file_rec_free(a);
    dfs_catalog_file_rec_free(late);
    dfs_catalog_file_rec_free(pending);
    dfs_catalog_file_rec_free(inflight);
}

static struct dfs_health health(struct fx *fx)
{
    struct dfs_layout *l = NULL;
    struct dfs_health h;
    assert_int_equal(dfs_catalog_layout(fx->cat, &l, NULL), DFS_OK);
    assert_int_equal(dfs_catalog_health_classify(l, NULL, 10, &h, NULL), DFS_OK);
    dfs_catalog_layout_free(l);
    return h;
}

static void test_health_and_erasure_repairs(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    struct dfs_file_rec *r1 = put_on(fx, "/r1", 2, 2, 0, T0); /* 0,1 | 1,2 */
    struct dfs_file_rec *e1 = put_on(fx, "/r2", 1, 2, 4, T0); /* 4,5 */
    struct dfs_file_rec *ec = put_ec(fx, "/ec", 2, 2, 4, T0); /* 4,5,6,7 */
    struct dfs_health h = health(fx);
    assert_int_equal(h.files, 3);
    assert_int_equal(h.healthy, 3);
    dfs_catalog_health_clear(&h);

    set_state(fx, 1, DFS_NODE_DEAD);     /* r1 degraded */
    set_state(fx, 4, DFS_NODE_DEAD);     /* r2 degraded, ec degraded (3 of 4) */
    set_state(fx, 5, DFS_NODE_DRAINING); /* r2: readable, not live; ec: 2 live + 1 readable */
    h = health(fx);
    assert_int_equal(h.healthy, 0);
    assert_int_equal(h.degraded, 3);
    assert_int_equal(h.lost, 0);
    dfs_catalog_health_clear(&h);
    /* Erasure: fragment 0 (node 4 dead) margin = live fragments (2) - K (2) = 0; fragment 1 is
       on a draining node: a drain move. */
    struct dfs_plan_result r = plan_all(fx, T0 + 1);
    assert_int_equal(r.lost, 0);
    size_t n = 0;
    struct dfs_repair_rec *v = repairs(fx, &n);
    int ec_rows = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(v[i].fragment_id, ec->file_id, DFS_ID_HEX) != 0)
            continue;
        ec_rows++;
        assert_int_equal(v[i].margin, 0);
        assert_int_equal(v[i].reason, strcmp(v[i].fragment_id, ec->fragments[1].fragment_id) == 0
                                          ? DFS_REPAIR_DRAIN
                                          : DFS_REPAIR_DEAD);
    }
    assert_int_equal(ec_rows, 2);
    free(v);

    set_state(fx, 6, DFS_NODE_DEAD); /* ec: 1 live + 1 readable = 2 = K: still readable */
    h = health(fx);
    assert_int_equal(h.lost, 0);
    dfs_catalog_health_clear(&h);
    set_state(fx, 5, DFS_NODE_DECOMMISSIONED); /* ec: 1 readable < K; r2: none */
    set_state(fx, 2, DFS_NODE_DEAD);           /* r1 fragment 1 (1,2): none */
    h = health(fx);
    assert_int_equal(h.lost, 3);
    assert_int_equal(h.nlost_paths, 3);
    dfs_catalog_health_clear(&h);
    r = plan_all(fx, T0 + 2);
    v = repairs(fx, &n);
    /* Only r1 fragment 0 (node 0 alive) is still worth repairing. */
    assert_int_equal(n, 1);
    assert_string_equal(v[0].fragment_id, r1->fragments[0].fragment_id);
    free(v);
    dfs_catalog_file_rec_free(r1);
    dfs_catalog_file_rec_free(e1);
    dfs_catalog_file_rec_free(ec);
}

/* Tokens: added once, found by id and prefix, revoked for good, listed; secrets made once. */
static void test_tokens_and_secrets(void **state)
{
    struct fx *fx = *state;
    uint8_t h1[32], h2[32], got[32];
    memset(h1, 0x11, sizeof h1);
    memset(h2, 0x22, sizeof h2);
    struct dfs_token_rec a = token_rec("0123456789abcdef", "admin one", DFS_ROLE_ADMIN, T0, 0);
    struct dfs_token_rec b =
        token_rec("0123ffffffffffff", "node pool", DFS_ROLE_BOOTSTRAP, T0 + 1, T0 + 500);
    assert_int_equal(dfs_catalog_token_add(fx->cat, &a, h1, NULL), DFS_OK);
    assert_int_equal(dfs_catalog_token_add(fx->cat, &b, h2, NULL), DFS_OK);
    char *err = NULL;
    /* Node tokens are made with their node only (dfs_catalog_node_enroll). */
    struct dfs_token_rec nt = token_rec("7123456789abcdef", "node", DFS_ROLE_NODE, T0, 0);
    assert_int_equal(dfs_catalog_token_add(fx->cat, &nt, h1, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    assert_int_equal(dfs_catalog_token_add(fx->cat, &a, h2, &err), DFS_EEXIST);
    free(err);
    err = NULL;
    struct dfs_token_rec bad = token_rec("0123456789abcdeX", "x", DFS_ROLE_ADMIN, T0, 0);
    assert_int_equal(dfs_catalog_token_add(fx->cat, &bad, h1, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    bad = token_rec("1123456789abcdef", "", DFS_ROLE_ADMIN, T0, 0);
    assert_int_equal(dfs_catalog_token_add(fx->cat, &bad, h1, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    bad = token_rec("1123456789abcdef", "x", DFS_ROLE_UNSPECIFIED, T0, 0);
    assert_int_equal(dfs_catalog_token_add(fx->cat, &bad, h1, &err), DFS_EINVAL);
    free(err);

    struct dfs_token_rec t;
    assert_int_equal(dfs_catalog_token_get(fx->cat, "0123456789abcdef", &t, got, NULL), DFS_OK);
    assert_string_equal(t.name, "admin one");
    assert_int_equal(t.role, DFS_ROLE_ADMIN);
    assert_memory_equal(got, h1, 32);
    assert_int_equal(dfs_catalog_token_get(fx->cat, "ffffffffffffffff", &t, got, NULL),
                     DFS_ENOTFOUND);
    err = NULL;
    assert_int_equal(dfs_catalog_token_resolve(fx->cat, "0123", &t, &err), DFS_EINVAL);
    assert_non_null(strstr(err, "ambiguous"));
    free(err);
    assert_int_equal(dfs_catalog_token_resolve(fx->cat, "0123f", &t, NULL), DFS_OK);
    assert_string_equal(t.id, "0123ffffffffffff");
    assert_int_equal(dfs_catalog_token_resolve(fx->cat, "9999", &t, NULL), DFS_ENOTFOUND);
    assert_int_equal(dfs_catalog_token_resolve(fx->cat, "01", &t, NULL), DFS_EINVAL);

    /* Listing: b expires at T0 + 500; a is revoked, and the first revocation time sticks. */
    struct dfs_token_rec *v = NULL;
    size_t n = 0;
    assert_int_equal(dfs_catalog_tokens_list(fx->cat, false, T0 + 100, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 2);
    free(v);
    assert_int_equal(dfs_catalog_tokens_list(fx->cat, false, T0 + 600, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].id, "0123456789abcdef");
    free(v);
    assert_int_equal(dfs_catalog_token_revoke(fx->cat, a.id, T0 + 700, NULL), DFS_OK);
    assert_int_equal(dfs_catalog_token_revoke(fx->cat, a.id, T0 + 900, NULL), DFS_OK);
    assert_int_equal(dfs_catalog_token_touch(fx->cat, b.id, T0 + 50, NULL), DFS_OK);
    reopen(fx);
    assert_int_equal(dfs_catalog_token_get(fx->cat, a.id, &t, got, NULL), DFS_OK);
    assert_int_equal(t.revoked_ms, T0 + 700);
    assert_int_equal(dfs_catalog_tokens_list(fx->cat, false, T0 + 600, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 0);
    free(v);
    assert_int_equal(dfs_catalog_tokens_list(fx->cat, true, T0 + 600, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(v[1].last_used_ms, T0 + 50);
    free(v);

    /* A secret is random, made once, and the same after a reopen. */
    uint8_t k1[32], k2[32], zero[32] = {0};
    assert_int_equal(dfs_catalog_secret(fx->cat, "ticket_master_key", 32, T0, k1, NULL), DFS_OK);
    assert_memory_not_equal(k1, zero, 32);
    reopen(fx);
    assert_int_equal(dfs_catalog_secret(fx->cat, "ticket_master_key", 32, T0 + 5, k2, NULL),
                     DFS_OK);
    assert_memory_equal(k1, k2, 32);
    err = NULL;
    assert_int_equal(dfs_catalog_secret(fx->cat, "ticket_master_key", 16, T0, k2, &err),
                     DFS_EDATALOSS);
    free(err);
    assert_int_equal(dfs_catalog_secret(fx->cat, "other", 32, T0, k2, NULL), DFS_OK);
    assert_memory_not_equal(k1, k2, 32);
    assert_string_equal(dfs_catalog_token_role_name(DFS_ROLE_READ_ONLY), "read_only");
    assert_int_equal(dfs_catalog_token_role_parse("rw"), DFS_ROLE_READ_WRITE);
    assert_int_equal(dfs_catalog_token_role_parse("root"), DFS_ROLE_UNSPECIFIED);
}

/* Rename (issue 18): a file, a whole directory, replace, refusals; one transaction each. */
static void test_rename(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    const char *paths[] = {"/d/a", "/d/sub/b", "/d/sub/c", "/dx", "/other"};
    char ids[5][DFS_ID_HEX + 1];
    for (int i = 0; i < 5; i++) {
        struct dfs_file_rec *f = put(fx, paths[i], 100, false, T0);
        strcpy(ids[i], f->file_id);
        dfs_catalog_file_rec_free(f);
    }
    char *msg = NULL;
    uint64_t moved = 99;
    struct dfs_file_rec *g = NULL;
    /* a file */
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/dx", "/dy", false, T0, &moved, &msg),
                     DFS_OK);
    assert_int_equal(moved, 1);
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/dy", &g, &msg), DFS_OK);
    assert_string_equal(g->file_id, ids[3]);
    assert_int_equal(g->nfragments, 4);
    dfs_catalog_file_rec_free(g);
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/dx", &g, &msg), DFS_ENOTFOUND);
    expect_msg(&msg, "no file /dx");
    /* onto an existing file: only with replace, which queues the old one's copies */
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/dy", "/other", false, T0, NULL, &msg),
                     DFS_EEXIST);
    expect_msg(&msg, "already exists");
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/dy", "/other", true, T0, NULL, &msg),
                     DFS_OK);
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/other", &g, &msg), DFS_OK);
    assert_string_equal(g->file_id, ids[3]);
    dfs_catalog_file_rec_free(g);
    assert_int_equal(stats(fx).files, 4);
    assert_int_equal(stats(fx).pending_deletions, 12);
    /* a whole directory, in one step; "/dx"-like neighbours are not under it */
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/d", "/e/f", false, T0, &moved, &msg),
                     DFS_OK);
    assert_int_equal(moved, 3);
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/e/f/sub/c", &g, &msg), DFS_OK);
    assert_string_equal(g->file_id, ids[2]);
    dfs_catalog_file_rec_free(g);
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/d/a", &g, &msg), DFS_ENOTFOUND);
    free(msg);
    msg = NULL;
    /* refusals change nothing */
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/d", "/x", false, T0, NULL, &msg),
                     DFS_ENOTFOUND);
    expect_msg(&msg, "no file or directory /d");
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/e", "/other", false, T0, NULL, &msg),
                     DFS_EEXIST);
    expect_msg(&msg, "is a file");
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/other", "/e", true, T0, NULL, &msg),
                     DFS_EEXIST);
    expect_msg(&msg, "is a directory");
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/e/f/sub", "/e", false, T0, NULL, &msg),
                     DFS_EEXIST);
    expect_msg(&msg, "not empty");
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/e", "/e/f/g", false, T0, NULL, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "inside itself");
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/e/", "/x", false, T0, NULL, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "ends with");
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/", "/x", false, T0, NULL, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "names no file");
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/other", "/other", false, T0, &moved, &msg),
                     DFS_OK);
    assert_int_equal(moved, 0);
    assert_int_equal(stats(fx).files, 4);
}

/* Path attributes (issue 18): merged, kept across versions, moved by rename, explicit dirs. */
static void test_path_attrs(void **state)
{
    struct fx *fx = *state;
    register_nodes(fx, NNODES, T0);
    char *msg = NULL;
    struct dfs_path_attrs a = {0};
    bool found = true;
    assert_int_equal(dfs_catalog_attrs_get(fx->cat, "/f", &a, &found, &msg), DFS_OK);
    assert_false(found);
    struct dfs_path_attrs m = {.has_mode = true, .mode = 0600};
    assert_int_equal(dfs_catalog_attrs_set(fx->cat, "/f", &m, &msg), DFS_OK);
    struct dfs_path_attrs o = {
        .has_owner = true, .uid = 1000, .gid = 100, .has_mtime = true, .mtime_ms = 123456};
    assert_int_equal(dfs_catalog_attrs_set(fx->cat, "/f", &o, &msg), DFS_OK);
    assert_int_equal(dfs_catalog_attrs_get(fx->cat, "/f", &a, &found, &msg), DFS_OK);
    assert_true(found);
    assert_true(a.has_mode && a.has_owner && a.has_mtime && !a.is_dir);
    assert_int_equal(a.mode, 0600);
    assert_int_equal(a.uid, 1000);
    assert_int_equal(a.gid, 100);
    assert_int_equal(a.mtime_ms, 123456);
    m.mode = 010000;
    assert_int_equal(dfs_catalog_attrs_set(fx->cat, "/f", &m, &msg), DFS_EINVAL);
    expect_msg(&msg, "permission bits");
    /* explicit directories, listed one level at a time */
    struct dfs_path_attrs d = {.is_dir = true, .has_mode = true, .mode = 0700};
    assert_int_equal(dfs_catalog_attrs_set(fx->cat, "/d", &d, &msg), DFS_OK);
    assert_int_equal(dfs_catalog_attrs_set(fx->cat, "/d/e", &d, &msg), DFS_OK);
    assert_int_equal(dfs_catalog_attrs_set(fx->cat, "/dx", &d, &msg), DFS_OK);
    char **dirs = NULL;
    size_t n = 0;
    assert_int_equal(dfs_catalog_attrs_dirs(fx->cat, "/", &dirs, &n, &msg), DFS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(dirs[0], "/d");
    assert_string_equal(dirs[1], "/dx");
    for (size_t i = 0; i < n; i++)
        free(dirs[i]);
    free(dirs);
    assert_int_equal(dfs_catalog_attrs_dirs(fx->cat, "/d", &dirs, &n, &msg), DFS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(dirs[0], "/d/e");
    free(dirs[0]);
    free(dirs);
    /* a rename moves them with the files, in the same transaction */
    struct dfs_file_rec *f = put(fx, "/d/e/file", 10, false, T0);
    dfs_catalog_file_rec_free(f);
    assert_int_equal(dfs_catalog_attrs_set(fx->cat, "/d/e/file", &m, &msg), DFS_EINVAL);
    expect_msg(&msg, "permission bits");
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/d", "/g", false, T0, NULL, &msg), DFS_OK);
    assert_int_equal(dfs_catalog_attrs_get(fx->cat, "/g/e", &a, &found, &msg), DFS_OK);
    assert_true(found && a.is_dir && a.mode == 0700);
    assert_int_equal(dfs_catalog_attrs_get(fx->cat, "/d/e", &a, &found, &msg), DFS_OK);
    assert_false(found);
    /* an explicit directory with no file under it renames too */
    assert_int_equal(dfs_catalog_attrs_set(fx->cat, "/dx/sub", &d, &msg), DFS_OK);
    uint64_t moved = 9;
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/dx", "/dy", false, T0, &moved, &msg),
                     DFS_OK);
    assert_int_equal(moved, 0);
    assert_int_equal(dfs_catalog_attrs_get(fx->cat, "/dy/sub", &a, &found, &msg), DFS_OK);
    assert_true(found && a.is_dir);
    assert_int_equal(dfs_catalog_file_rename(fx->cat, "/dx", "/dz", false, T0, NULL, &msg),
                     DFS_ENOTFOUND);
    expect_msg(&msg, "no file or directory");
    assert_int_equal(dfs_catalog_attrs_remove(fx->cat, "/g/e", &msg), DFS_OK);
    assert_int_equal(dfs_catalog_attrs_get(fx->cat, "/g/e", &a, &found, &msg), DFS_OK);
    assert_false(found);
    assert_int_equal(dfs_catalog_attrs_remove(fx->cat, "/nothing", &msg), DFS_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_twice_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_open_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_foreign_and_newer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_register_heartbeat_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_liveness_soft_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nodes_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_validation, setup, teardown),
        cmocka_unit_test(test_redundancy_helpers),
        cmocka_unit_test_setup_teardown(test_create_commit_get_list_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_failures_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_partial_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_is_invisible, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_uniqueness_and_overwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_and_expiry_queue_planned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_target_erasure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deletion_queue_alive_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deletion_grace_and_copy_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pagination_and_prefixes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence_across_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_mid_transaction_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_placement_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_placement_validation_and_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_version_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_version_4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enrollment_and_registrations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repair_queue_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repair_priority_and_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repair_complete_fail_and_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_stops_when_alive_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_surplus_trimmed_after_return, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_and_missing_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inventory_reconciliation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restored_catalog_keeps_unknown_fragments_as_orphans,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_and_erasure_repairs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens_and_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_attrs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
