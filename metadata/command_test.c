/* Replicated catalog commands: identical catalogs from the same log, restart replay, snapshots. */
#include "metadata/command.h"

#include "common/err.h"
#include "common/id.h"
#include "metadata/catalog.h"
#include "metadata/catalog_testing.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#define T0 1800000000000LL

/* A growing log: entries of encoded commands, as the engine would hand them to apply. */
#define MAX_CMDS 96
struct log {
    void *data[MAX_CMDS];
    size_t len[MAX_CMDS];
    size_t entry_end[MAX_CMDS]; /* entry e holds commands [entry_end[e-1], entry_end[e]) */
    size_t ncmds, nentries;
};

struct fx {
    char dir[256];
    char path[3][300];
    dfs_catalog *cat[3];
    struct log log;
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    snprintf(fx->dir, sizeof fx->dir, "%s/cmdXXXXXX",
             getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(fx->dir));
    for (int i = 0; i < 3; i++) {
        char tmp[sizeof fx->path[i]];
        snprintf(tmp, sizeof tmp, "%s/c%d.db", fx->dir, i);
        memcpy(fx->path[i], tmp, sizeof tmp);
        char *msg = NULL;
        if (dfs_catalog_open(fx->path[i], &fx->cat[i], &msg) != DFS_OK)
            fail_msg("open: %s", msg);
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    for (int i = 0; i < 3; i++) {
        dfs_catalog_close(fx->cat[i]);
        char p[400];
        const char *sfx[] = {"", "-wal", "-shm"};
        for (int s = 0; s < 3; s++) {
            snprintf(p, sizeof p, "%s%s", fx->path[i], sfx[s]);
            unlink(p);
        }
    }
    for (size_t i = 0; i < fx->log.ncmds; i++)
        free(fx->log.data[i]);
    char p[400];
    snprintf(p, sizeof p, "%s/snap.db", fx->dir);
    unlink(p);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* Append one built command (rc from a dfs_command_* builder) to the current entry. */
static void add(struct fx *fx, int rc, void **data, size_t *len, char **msg)
{
    /* Pointers, read here: the builder (an argument) has run by now, whatever the order in
       which the arguments were evaluated. */
    if (rc != DFS_OK)
        fail_msg("build: %s", *msg);
    assert_true(fx->log.ncmds < MAX_CMDS);
    fx->log.data[fx->log.ncmds] = *data;
    fx->log.len[fx->log.ncmds] = *len;
    fx->log.ncmds++;
}

/* Close the current entry. */
static void end_entry(struct fx *fx)
{
    fx->log.entry_end[fx->log.nentries++] = fx->log.ncmds;
}

/* Apply entry e (index e + 1) to cat; its verdicts into v (MAX_CMDS). Returns the rc. */
static int apply(struct fx *fx, dfs_catalog *cat, size_t e, struct dfs_command_verdict *v)
{
    size_t from = e == 0 ? 0 : fx->log.entry_end[e - 1], to = fx->log.entry_end[e];
    struct dfs_command_buf b[MAX_CMDS];
    for (size_t i = from; i < to; i++)
        b[i - from] = (struct dfs_command_buf){fx->log.data[i], fx->log.len[i]};
    char *msg = NULL;
    int rc = dfs_command_apply_entry(cat, e + 1, b, to - from, v, &msg);
    free(msg);
    return rc;
}

/* Apply entries [from, to) to cat, every one committing. */
static void apply_range(struct fx *fx, dfs_catalog *cat, size_t from, size_t to)
{
    for (size_t e = from; e < to; e++) {
        struct dfs_command_verdict v[MAX_CMDS] = {0};
        assert_int_equal(apply(fx, cat, e, v), DFS_OK);
        dfs_command_verdicts_clear(v, MAX_CMDS);
    }
}

static uint64_t applied(dfs_catalog *cat)
{
    uint64_t idx = 99;
    assert_int_equal(dfs_catalog_applied_index(cat, &idx, NULL), DFS_OK);
    return idx;
}

static void assert_same(const char *a, const char *b)
{
    char *da = dfs_testing_dump(a, true), *db = dfs_testing_dump(b, true);
    assert_string_equal(da, db);
    free(da);
    free(db);
}

/*
 * The log of a small cluster's life: 4 nodes register, the ticket secret and a token are set,
 * files are created (ids fixed by the "leader"), committed, aborted, deleted, renamed; one create
 * is refused (path taken), a pending file expires, a node goes dead. Eight entries.
 */
static void build_log(struct fx *fx)
{
    void *d;
    size_t l;
    char *m = NULL;
    char ids[4][DFS_ID_HEX + 1];
    struct dfs_node_usage u = {.capacity_bytes = 1 << 30, .free_bytes = 1 << 29};
    for (int i = 0; i < 4; i++) {
        dfs_testing_node_id(i, ids[i]);
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", 7000 + i);
        add(fx,
            dfs_command_node_register(ids[i], addr, "z0", &u, T0, DFS_CATALOG_KEEP, 1, &d, &l, &m),
            &d, &l, &m);
    }
    uint8_t secret[32];
    memset(secret, 0x5a, sizeof secret);
    add(fx, dfs_command_secret_set("ticket_master_key", secret, sizeof secret, T0, &d, &l, &m), &d,
        &l, &m);
    end_entry(fx); /* 1 */

    struct dfs_token_rec tok = {
        .id = "0123456789abcdef", .name = "ops", .role = DFS_ROLE_ADMIN, .created_ms = T0};
    uint8_t hash[32];
    memset(hash, 0x11, sizeof hash);
    add(fx, dfs_command_token_add(&tok, hash, T0 + 1, &d, &l, &m), &d, &l, &m);
    /* A second secret_set of the same name keeps the first value. */
    memset(secret, 0x77, sizeof secret);
    add(fx, dfs_command_secret_set("ticket_master_key", secret, sizeof secret, T0 + 1, &d, &l, &m),
        &d, &l, &m);
    end_entry(fx); /* 2 */

    /* Three files, replication k=2 F=2, 1000 bytes. */
    const char *files[3] = {"00000000000000000000000000000f01", "00000000000000000000000000000f02",
                            "00000000000000000000000000000f03"};
    const char *paths[3] = {"/a", "/b", "/c"};
    const char *n01[2] = {ids[0], ids[1]}, *n23[2] = {ids[2], ids[3]};
    for (int f = 0; f < 3; f++) {
        struct dfs_plan_fragment plan[2] = {
            {.index = 0, .size = 500, .node_ids = n01, .nnodes = 2},
            {.index = 1, .size = 500, .node_ids = n23, .nnodes = 2}};
        struct dfs_create_req req = {
            .path = paths[f],
            .size = 1000,
            .redundancy = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 2, .fragments = 2},
            .policy = DFS_POLICY_RANDOM,
            .fragment_size = 500,
            .expires_ms = T0 + 60000,
            .fragments = plan,
            .nfragments = 2,
            .file_id = files[f]};
        add(fx, dfs_command_file_create(&req, T0 + 10, &d, &l, &m), &d, &l, &m);
    }
    end_entry(fx); /* 3 */

    uint8_t sha[DFS_SHA256_LEN];
    memset(sha, 0xab, sizeof sha);
    for (int f = 0; f < 2; f++) {
        struct dfs_commit_fragment cf[2] = {
            {.index = 0, .size = 500, .checksum = 0x1000, .node_ids = n01, .nnodes = 2},
            {.index = 1, .size = 500, .checksum = 0x1001, .node_ids = n23, .nnodes = 1}};
        add(fx, dfs_command_file_commit(files[f], sha, cf, 2, T0 + 20, &d, &l, &m), &d, &l, &m);
    }
    end_entry(fx); /* 4 */

    /* Refused: /a is taken and the create does not overwrite. */
    struct dfs_plan_fragment plan[2] = {{.index = 0, .size = 500, .node_ids = n01, .nnodes = 2},
                                        {.index = 1, .size = 500, .node_ids = n23, .nnodes = 2}};
    struct dfs_create_req again = {
        .path = "/a",
        .size = 1000,
        .redundancy = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 2, .fragments = 2},
        .policy = DFS_POLICY_RANDOM,
        .fragment_size = 500,
        .expires_ms = T0 + 60000,
        .fragments = plan,
        .nfragments = 2,
        .file_id = "00000000000000000000000000000f04"};
    add(fx, dfs_command_file_create(&again, T0 + 30, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_file_delete("/b", T0 + 30, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_file_rename("/a", "/d/a", false, T0 + 30, &d, &l, &m), &d, &l, &m);
    end_entry(fx); /* 5: verdicts EEXIST, OK, OK */

    add(fx, dfs_command_token_revoke("0123456789abcdef", T0 + 40, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_node_heartbeat(ids[1], 1, &u, T0 + 40000, &d, &l, &m), &d, &l, &m);
    end_entry(fx); /* 6 */

    /* /c (pending) expires; node 3 (no heartbeat since T0) goes dead, 0 and 2 suspect. */
    add(fx, dfs_command_files_expire(T0 + 70000, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_nodes_sweep(T0 + 70000, 20000, 60000, &d, &l, &m), &d, &l, &m);
    /* A leader's decisions (soft liveness): node 0 suspect to dead; node 1's mark is void (its
       heartbeat at T0 + 40000 is newer than the decision's last sighting). */
    struct dfs_node_mark marks[2] = {
        {.from = DFS_NODE_SUSPECT, .to = DFS_NODE_DEAD, .last_seen_ms = T0 + 69000},
        {.from = DFS_NODE_ALIVE, .to = DFS_NODE_SUSPECT, .last_seen_ms = T0 + 39999}};
    memcpy(marks[0].node_id, ids[0], sizeof marks[0].node_id);
    memcpy(marks[1].node_id, ids[1], sizeof marks[1].node_id);
    add(fx, dfs_command_nodes_mark(marks, 2, T0 + 70000, &d, &l, &m), &d, &l, &m);
    end_entry(fx); /* 7 */

    add(fx, dfs_command_node_set_state(ids[1], DFS_NODE_DRAINING, T0 + 80000, &d, &l, &m), &d, &l,
        &m);
    add(fx, dfs_command_repairs_recover(T0 + 80000, &d, &l, &m), &d, &l, &m);
    end_entry(fx); /* 8 */

    /* The rest of the writes: S3, mount, placement, repairs, deletions, reports. Their verdicts
       are whatever the catalog says; the catalogs must agree on them and on the rows. */
    int64_t t = T0 + 90000;
    add(fx, dfs_command_bucket_create("photos", "0123456789abcdef", t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_bucket_create("tmp", "0123456789abcdef", t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_bucket_delete("tmp", t, &d, &l, &m), &d, &l, &m);
    struct dfs_path_attrs pa = {.is_dir = true, .has_mode = true, .mode = 0750};
    add(fx, dfs_command_attrs_set("/d", &pa, t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_attrs_set("/e", &pa, t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_attrs_set("/e", NULL, t, &d, &l, &m), &d, &l, &m);
    char *set0[3] = {ids[0], ids[1], ids[2]};
    struct dfs_placement_set sets[1] = {{.perm = 0, .node_ids = set0, .nnodes = 3}};
    struct dfs_placement_state ps = {
        .policy = DFS_POLICY_BUDDY, .width = 2, .param = 3, .nperms = 1, .sets = sets, .nsets = 1};
    add(fx, dfs_command_placement_save(&ps, t, &d, &l, &m), &d, &l, &m);
    char frag[DFS_FRAGMENT_ID_HEX + 1];
    dfs_fragment_id(files[0], 0, frag);
    add(fx, dfs_command_report_fragment(ids[0], frag, false, t, &d, &l, &m), &d, &l, &m);
    const char *present[1] = {frag};
    add(fx, dfs_command_inventory_page(ids[1], 0, present, 1, t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_inventory_finish(ids[1], t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_repair_plan("", 100, t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_repair_queue(frag, DFS_REPAIR_REBALANCE, ids[1], ids[2], t, &d, &l, &m), &d,
        &l, &m);
    add(fx, dfs_command_repair_next(t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_repair_start(frag, ids[2], t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_repair_complete(frag, ids[2], 500, 0x1000, t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_repair_fail(frag, NULL, t + 1000, t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_deletions_fetch(t, 0, 10, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_deletion_done(frag, ids[3], t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_deletion_postpone(frag, ids[2], t + 5000, t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_token_touch("0123456789abcdef", t, &d, &l, &m), &d, &l, &m);
    add(fx, dfs_command_nodes_finish_drains(t, &d, &l, &m), &d, &l, &m);
    char fresh[DFS_ID_HEX + 1];
    dfs_testing_node_id(9, fresh);
    add(fx,
        dfs_command_node_enroll(fresh, "00000000000000e9", hash, "127.0.0.1:7009", "", &u, t, 2, &d,
                                &l, &m),
        &d, &l, &m);
    end_entry(fx); /* 9 */

    /* S3's StitchFile: /d/a becomes the one segment of /photos/obj. */
    const char *parts[1] = {"/d/a"};
    uint8_t md5[DFS_CATALOG_MD5_LEN];
    memset(md5, 0x5a, sizeof md5);
    struct dfs_file_meta sm = {.md5 = md5, .meta = "a\0b\0", .meta_len = 4};
    struct dfs_stitch_req sr = {.path = "/photos/obj",
                                .file_id = "00000000000000000000000000000f05",
                                .parts = parts,
                                .nparts = 1,
                                .meta = &sm};
    add(fx, dfs_command_file_stitch(&sr, t, &d, &l, &m), &d, &l, &m);
    end_entry(fx); /* 10 */
}

/* The same log applied to two catalogs gives identical catalogs; verdicts are results. */
static void test_same_log_same_catalog(void **state)
{
    struct fx *fx = *state;
    build_log(fx);
    for (int c = 0; c < 2; c++) {
        for (size_t e = 0; e < fx->log.nentries; e++) {
            struct dfs_command_verdict v[MAX_CMDS] = {0};
            assert_int_equal(apply(fx, fx->cat[c], e, v), DFS_OK);
            if (e == 4) {
                assert_int_equal(v[0].status, DFS_EEXIST);
                assert_non_null(v[0].message);
                assert_int_equal(v[1].status, DFS_OK);
                assert_int_equal(v[2].status, DFS_OK);
            } else if (e == 8) {
                /* Two repair steps are refused (node 2 is dead by now): the same everywhere. */
                size_t ok = 0, n9 = fx->log.entry_end[8] - fx->log.entry_end[7];
                for (size_t i = 0; i < n9; i++)
                    ok += v[i].status == DFS_OK;
                assert_int_equal(ok, n9 - 2);
                assert_int_equal(v[13].status, DFS_EABORTED);
            } else {
                for (size_t i = 0; i < MAX_CMDS; i++)
                    if (v[i].status != DFS_OK)
                        fail_msg("entry %zu command %zu: %d %s", e + 1, i, v[i].status,
                                 v[i].message);
            }
            dfs_command_verdicts_clear(v, MAX_CMDS);
        }
        assert_int_equal(applied(fx->cat[c]), fx->log.nentries);
    }
    assert_same(fx->path[0], fx->path[1]);

    /* What the log did, as the catalog tells it. */
    char id0[DFS_ID_HEX + 1];
    dfs_testing_node_id(0, id0);
    struct dfs_node_rec node0;
    assert_int_equal(dfs_catalog_node_get(fx->cat[0], id0, &node0, NULL), DFS_OK);
    assert_int_equal(node0.state, DFS_NODE_DEAD); /* the leader's mark */
    struct dfs_file_rec *f = NULL;
    assert_int_equal(
        dfs_catalog_file_get_id(fx->cat[0], "00000000000000000000000000000f01", &f, NULL), DFS_OK);
    dfs_catalog_file_rec_free(f);
    /* Renamed to /d/a, then stitched: the object's one segment, gone from the namespace. */
    assert_int_equal(dfs_catalog_file_get(fx->cat[0], "/d/a", &f, NULL), DFS_ENOTFOUND);
    assert_int_equal(dfs_catalog_file_get(fx->cat[0], "/photos/obj", &f, NULL), DFS_OK);
    assert_string_equal(f->file_id, "00000000000000000000000000000f05");
    dfs_catalog_file_rec_free(f);
    assert_int_equal(dfs_catalog_file_get(fx->cat[0], "/b", &f, NULL), DFS_ENOTFOUND);
    assert_int_equal(
        dfs_catalog_file_get_id(fx->cat[0], "00000000000000000000000000000f03", &f, NULL),
        DFS_ENOTFOUND);
    uint8_t key[32];
    assert_int_equal(dfs_catalog_secret(fx->cat[1], "ticket_master_key", 32, T0, key, NULL),
                     DFS_OK);
    for (int i = 0; i < 32; i++)
        assert_int_equal(key[i], 0x5a);
    struct dfs_token_rec t;
    uint8_t h[32];
    assert_int_equal(dfs_catalog_token_get(fx->cat[1], "0123456789abcdef", &t, h, NULL), DFS_OK);
    assert_int_equal(t.revoked_ms, T0 + 40);
}

/* A restart keeps the applied index with the state; the rest of the log brings it level. */
static void test_restart_replays_what_is_missing(void **state)
{
    struct fx *fx = *state;
    build_log(fx);
    apply_range(fx, fx->cat[0], 0, fx->log.nentries);
    apply_range(fx, fx->cat[1], 0, 5);
    dfs_catalog_close(fx->cat[1]);
    fx->cat[1] = NULL;
    char *msg = NULL;
    if (dfs_catalog_open(fx->path[1], &fx->cat[1], &msg) != DFS_OK)
        fail_msg("reopen: %s", msg);
    assert_int_equal(applied(fx->cat[1]), 5);
    apply_range(fx, fx->cat[1], applied(fx->cat[1]), fx->log.nentries);
    assert_same(fx->path[0], fx->path[1]);
}

/* An entry that cannot be applied leaves nothing: not its first commands, not its index. */
static void test_failed_entry_applies_nothing(void **state)
{
    struct fx *fx = *state;
    build_log(fx);
    apply_range(fx, fx->cat[0], 0, 2);
    char *before = dfs_testing_dump(fx->path[0], true);
    void *d;
    size_t l;
    char *m = NULL;
    assert_int_equal(dfs_command_file_abort("00000000000000000000000000000f01", T0, &d, &l, &m),
                     DFS_OK);
    struct dfs_command_buf b[3] = {
        {fx->log.data[fx->log.entry_end[1]], fx->log.len[fx->log.entry_end[1]]},
        {"\xff\xff\xff", 3},
        {d, l}};
    struct dfs_command_verdict v[3];
    assert_int_not_equal(dfs_command_apply_entry(fx->cat[0], 3, b, 3, v, &m), DFS_OK);
    assert_non_null(m);
    free(m);
    free(d);
    assert_int_equal(v[0].status, DFS_OK);
    assert_null(v[0].message);
    assert_int_equal(applied(fx->cat[0]), 2);
    char *after = dfs_testing_dump(fx->path[0], true);
    assert_string_equal(before, after);
    free(before);
    free(after);
    /* The catalog still works: the real entry 3 applies. */
    apply_range(fx, fx->cat[0], 2, 3);
    assert_int_equal(applied(fx->cat[0]), 3);
}

/* A snapshot is the state at its index even while applies go on; restore installs it whole. */
static void test_snapshot_and_restore(void **state)
{
    struct fx *fx = *state;
    build_log(fx);
    apply_range(fx, fx->cat[0], 0, 4);
    dfs_catalog_snapshot *snap = NULL;
    uint64_t idx = 0;
    char *msg = NULL;
    if (dfs_catalog_snapshot_begin(fx->cat[0], &snap, &idx, &msg) != DFS_OK)
        fail_msg("snapshot: %s", msg);
    assert_int_equal(idx, 4);
    apply_range(fx, fx->cat[0], 4, 6); /* after the pin: not in the snapshot */
    char path[300];
    snprintf(path, sizeof path, "%s/snap.db", fx->dir);
    if (dfs_catalog_snapshot_write(snap, path, &msg) != DFS_OK)
        fail_msg("snapshot write: %s", msg);
    dfs_catalog_snapshot_end(snap);

    /* Catalog 2 has a state of its own (entries 1-2) and gets the snapshot as index 4. */
    apply_range(fx, fx->cat[2], 0, 2);
    if (dfs_catalog_restore(fx->cat[2], path, 4, &msg) != DFS_OK)
        fail_msg("restore: %s", msg);
    assert_int_equal(applied(fx->cat[2]), 4);
    apply_range(fx, fx->cat[1], 0, 4);
    assert_same(fx->path[1], fx->path[2]);

    /* It goes on from there like the others, across a restart. */
    apply_range(fx, fx->cat[2], 4, 6);
    dfs_catalog_close(fx->cat[2]);
    fx->cat[2] = NULL;
    if (dfs_catalog_open(fx->path[2], &fx->cat[2], &msg) != DFS_OK)
        fail_msg("reopen: %s", msg);
    apply_range(fx, fx->cat[2], applied(fx->cat[2]), fx->log.nentries);
    apply_range(fx, fx->cat[0], 6, fx->log.nentries);
    assert_same(fx->path[0], fx->path[2]);

    /* Not a catalog of this schema: refused, nothing changed. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "DELETE FROM schema_version WHERE version = 10", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(dfs_catalog_restore(fx->cat[2], path, 99, &msg), DFS_EPRECOND);
    free(msg);
    assert_int_equal(applied(fx->cat[2]), fx->log.nentries);
}

/* An online backup of a catalog in use is that catalog as of one applied entry. */
static void test_backup(void **state)
{
    struct fx *fx = *state;
    build_log(fx);
    apply_range(fx, fx->cat[0], 0, 5);
    char to[400];
    snprintf(to, sizeof to, "%s/snap.db", fx->dir);
    uint64_t idx = 0;
    char *msg = NULL;
    if (dfs_catalog_backup(fx->path[0], to, &idx, &msg) != DFS_OK)
        fail_msg("backup: %s", msg);
    assert_int_equal(idx, 5);
    assert_int_equal(dfs_catalog_backup(fx->path[0], to, &idx, &msg), DFS_EEXIST);
    free(msg);
    assert_same(fx->path[0], to);
    /* The copy opens as a catalog and goes on from its index. */
    dfs_catalog *copy = NULL;
    assert_int_equal(dfs_catalog_open(to, &copy, NULL), DFS_OK);
    assert_int_equal(applied(copy), 5);
    apply_range(fx, copy, 5, fx->log.nentries);
    apply_range(fx, fx->cat[0], 5, fx->log.nentries);
    dfs_catalog_close(copy);
    assert_same(fx->path[0], to);
    char side[450];
    const char *sfx[] = {"-wal", "-shm"};
    for (int s = 0; s < 2; s++) {
        snprintf(side, sizeof side, "%s%s", to, sfx[s]);
        unlink(side);
    }
}

/* Direct calls and an open apply do not mix: nested begin is refused. */
static void test_apply_begin_twice(void **state)
{
    struct fx *fx = *state;
    char *msg = NULL;
    assert_int_equal(dfs_catalog_apply_begin(fx->cat[0], &msg), DFS_OK);
    assert_int_equal(dfs_catalog_apply_begin(fx->cat[0], &msg), DFS_EINTERNAL);
    free(msg);
    msg = NULL;
    assert_int_equal(dfs_catalog_apply_end(fx->cat[0], 7, true, NULL), DFS_OK);
    assert_int_equal(applied(fx->cat[0]), 7);
    assert_int_equal(dfs_catalog_apply_end(fx->cat[0], 8, true, &msg), DFS_EINTERNAL);
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_log_same_catalog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_replays_what_is_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_entry_applies_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_and_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_begin_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
