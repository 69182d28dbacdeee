/* Fixtures for the metadata modules' tests (catalog_testing.h). */
#include "metadata/catalog_testing.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

dfs_catalog *dfs_testing_catalog(void)
{
    dfs_catalog *cat = NULL;
    char *msg = NULL;
    if (dfs_catalog_open(":memory:", &cat, &msg) != DFS_OK)
        fail_msg("open: %s", msg);
    return cat;
}

void dfs_testing_node_id(int i, char id[DFS_ID_HEX + 1])
{
    snprintf(id, DFS_ID_HEX + 1, "%032x", 0xa0 + i);
}

static struct dfs_node_usage usage_of(uint64_t free_bytes)
{
    return (struct dfs_node_usage){.capacity_bytes = 2 * free_bytes,
                                   .used_bytes = free_bytes / 2,
                                   .free_bytes = free_bytes,
                                   .fragment_count = 0};
}

void dfs_testing_register(dfs_catalog *cat, int n, uint64_t free_bytes, int64_t now_ms)
{
    struct dfs_node_usage u = usage_of(free_bytes);
    for (int i = 0; i < n; i++) {
        char id[DFS_ID_HEX + 1], addr[32], zone[8];
        dfs_testing_node_id(i, id);
        snprintf(addr, sizeof addr, "127.0.0.1:%d", 7000 + i);
        snprintf(zone, sizeof zone, "z%d", i % 3);
        char *msg = NULL;
        if (dfs_catalog_node_register(cat, id, addr, zone, &u, now_ms, DFS_CATALOG_KEEP,
                                      DFS_CATALOG_KEEP, &msg) != DFS_OK)
            fail_msg("register: %s", msg);
    }
}

void dfs_testing_heartbeat(dfs_catalog *cat, int i, uint64_t free_bytes, int64_t now_ms)
{
    char id[DFS_ID_HEX + 1];
    dfs_testing_node_id(i, id);
    struct dfs_node_usage u = usage_of(free_bytes);
    bool known = false;
    char *msg = NULL;
    if (dfs_catalog_node_heartbeat(cat, id, DFS_CATALOG_KEEP, &u, now_ms, &known, &msg) != DFS_OK ||
        !known)
        fail_msg("heartbeat: %s", msg != NULL ? msg : "unknown node");
}

void dfs_testing_set_state(dfs_catalog *cat, int i, enum dfs_node_state state)
{
    char id[DFS_ID_HEX + 1];
    dfs_testing_node_id(i, id);
    char *msg = NULL;
    if (dfs_catalog_node_set_state(cat, id, state, &msg) != DFS_OK)
        fail_msg("set state: %s", msg);
}

struct dfs_node_rec *dfs_testing_nodes(dfs_catalog *cat, size_t *n)
{
    struct dfs_node_rec *v = NULL;
    char *msg = NULL;
    if (dfs_catalog_nodes_list(cat, &v, n, &msg) != DFS_OK)
        fail_msg("list nodes: %s", msg);
    return v;
}

struct dfs_file_rec *dfs_testing_put(dfs_catalog *cat, const char *path, uint64_t size,
                                     const struct dfs_redundancy *red, enum dfs_policy policy,
                                     const int *nodes, int64_t now_ms)
{
    uint32_t nf = dfs_catalog_redundancy_fragments(red);
    uint32_t copies = dfs_catalog_redundancy_copies(red);
    bool erasure = red->scheme == DFS_SCHEME_ERASURE;
    uint64_t fsz = erasure ? (size + red->data - 1) / red->data : (size + nf - 1) / nf;
    if (erasure)
        fsz = (fsz + 63) / 64 * 64;
    char(*ids)[DFS_ID_HEX + 1] = calloc((size_t)nf * copies, sizeof *ids);
    const char **ptrs = calloc((size_t)nf * copies, sizeof *ptrs);
    struct dfs_plan_fragment *plan = calloc(nf, sizeof *plan);
    struct dfs_commit_fragment *commit = calloc(nf, sizeof *commit);
    assert_non_null(ids);
    assert_non_null(ptrs);
    assert_non_null(plan);
    assert_non_null(commit);
    for (uint32_t f = 0; f < nf; f++) {
        for (uint32_t c = 0; c < copies; c++) {
            dfs_testing_node_id(nodes[f * copies + c], ids[f * copies + c]);
            ptrs[f * copies + c] = ids[f * copies + c];
        }
        uint64_t off = (uint64_t)f * fsz;
        uint64_t sz = erasure ? fsz : off >= size ? 0 : (size - off < fsz ? size - off : fsz);
        plan[f] = (struct dfs_plan_fragment){
            .index = f, .size = sz, .node_ids = &ptrs[f * copies], .nnodes = copies};
        commit[f] = (struct dfs_commit_fragment){.index = f,
                                                 .size = sz,
                                                 .checksum = 0x1000 + f,
                                                 .node_ids = &ptrs[f * copies],
                                                 .nnodes = copies};
    }
    struct dfs_create_req req = {
        .path = path,
        .size = size,
        .redundancy = *red,
        .policy = policy,
        .fragment_size = fsz,
        .cell_size = erasure ? 64 : 0,
        .expires_ms = now_ms + 60000,
        .fragments = plan,
        .nfragments = nf,
    };
    struct dfs_file_rec *f = NULL;
    char *msg = NULL;
    if (dfs_catalog_file_create(cat, &req, now_ms, &f, &msg) != DFS_OK)
        fail_msg("create %s: %s", path, msg);
    char file_id[DFS_ID_HEX + 1];
    memcpy(file_id, f->file_id, sizeof file_id);
    dfs_catalog_file_rec_free(f);
    f = NULL;
    uint8_t sha[DFS_SHA256_LEN] = {1};
    if (dfs_catalog_file_commit(cat, file_id, sha, commit, nf, now_ms, &f, &msg) != DFS_OK)
        fail_msg("commit %s: %s", path, msg);
    free(ids);
    free(ptrs);
    free(plan);
    free(commit);
    return f;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *dfs_testing_dump(const char *path, bool with_replication)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *tables = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT name FROM sqlite_schema WHERE type = 'table' "
                                        "AND name <> 'schema_version' ORDER BY name",
                                        -1, &tables, NULL),
                     SQLITE_OK);
    char **lines = NULL;
    size_t n = 0;
    while (sqlite3_step(tables) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(tables, 0);
        if (!with_replication && strcmp(t, "replication") == 0)
            continue;
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", t);
        sqlite3_stmt *rows = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &rows, NULL), SQLITE_OK);
        while (sqlite3_step(rows) == SQLITE_ROW) {
            size_t cap = 256, used = 0;
            char *line = malloc(cap);
            used += (size_t)snprintf(line, cap, "%s:", t);
            for (int c = 0; c < sqlite3_column_count(rows); c++) {
                const unsigned char *p = sqlite3_column_blob(rows, c);
                int len = sqlite3_column_bytes(rows, c);
                while (used + 2 * (size_t)len + 8 > cap)
                    line = realloc(line, cap *= 2);
                line[used++] = '|';
                for (int i = 0; i < len; i++)
                    used += (size_t)snprintf(line + used, cap - used, "%02x", p[i]);
                line[used] = '\0';
            }
            lines = realloc(lines, (n + 1) * sizeof *lines);
            lines[n++] = line;
        }
        sqlite3_finalize(rows);
    }
    sqlite3_finalize(tables);
    sqlite3_close(db);
    qsort(lines, n, sizeof *lines, cmp_str);
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(lines[i]) + 1;
    char *out = malloc(total);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strcat(out, lines[i]);
        strcat(out, "\n");
        free(lines[i]);
    }
    free(lines);
    return out;
}
