/*
 * The SQLite catalog, replication: applying a committed log entry in one transaction that records
 * its index, the applied index, snapshots (sqlite3_backup from a pinned read transaction) and
 * restore (sqlite3_backup into the live connection). See catalog.h, Replication.
 */
#include "metadata/catalog_int.h"

#include "common/err.h"
#include "common/log.h"
#include "common/varint.h"

#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long a snapshot or restore connection waits for a lock held by the catalog's writer. */
#define SNAPSHOT_BUSY_MS 10000

int dfs_catalog_apply_begin(dfs_catalog *cat, char **errmsg)
{
    catalog_lock(cat);
    if (cat->applying) {
        catalog_unlock(cat);
        return dfs_seterr(errmsg, DFS_EINTERNAL, "catalog %s: an apply is already open", cat->path);
    }
    int rc = catalog_exec(cat, S_BEGIN_WRITE, NULL, errmsg, "");
    if (rc != DFS_OK) {
        catalog_unlock(cat);
        return rc;
    }
    cat->applying = true;
    cat->apply_owner = pthread_self();
    return DFS_OK; /* cat->mu stays held until dfs_catalog_apply_end */
}

int dfs_catalog_apply_end(dfs_catalog *cat, uint64_t index, bool ok, char **errmsg)
{
    if (!cat->applying)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "catalog %s: no apply open", cat->path);
    cat->applying = false;
    int rc = DFS_OK;
    if (!ok)
        rc = dfs_seterr(errmsg, DFS_EABORTED, "apply of entry %" PRIu64 " abandoned", index);
    if (rc == DFS_OK && index > (uint64_t)INT64_MAX)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "log index %" PRIu64 " too large", index);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_APPLIED_SET, NULL, errmsg, "i", (int64_t)index);
    rc = catalog_tx_end(cat, rc, errmsg);
    catalog_unlock(cat); /* taken by dfs_catalog_apply_begin */
    return rc;
}

void dfs_catalog_set_proposer(dfs_catalog *cat, dfs_catalog_proposer fn, void *arg)
{
    catalog_lock(cat);
    cat->proposer = fn;
    cat->proposer_arg = arg;
    catalog_unlock(cat);
}

bool catalog_must_propose(dfs_catalog *cat)
{
    catalog_lock(cat);
    bool must = cat->proposer != NULL &&
                !(cat->applying && pthread_equal(cat->apply_owner, pthread_self()));
    catalog_unlock(cat);
    return must;
}

/* Field 3 (origin, varint) of a Command, appended to an encoded one: protobuf merges the two. */
static size_t origin_tail(uint64_t origin, uint8_t *buf)
{
    buf[0] = (3 << 3) | 0;
    return (size_t)(dfs_varint_put(buf + 1, origin) - buf);
}

int catalog_propose(dfs_catalog *cat, void *cmd, size_t len, void *out0, void *out1, void *out2,
                    char **errmsg)
{
    struct catalog_call call = {.out = {out0, out1, out2}};
    pthread_mutex_lock(&cat->calls_mu);
    call.origin = cat->origin_base + ++cat->next_origin;
    call.next = cat->calls;
    cat->calls = &call;
    pthread_mutex_unlock(&cat->calls_mu);

    uint8_t tail[16];
    size_t tn = origin_tail(call.origin, tail);
    uint8_t *full = realloc(cmd, len + tn);
    int rc;
    if (full == NULL) {
        free(cmd);
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    } else {
        memcpy(full + len, tail, tn);
        rc = cat->proposer(cat->proposer_arg, full, len + tn, errmsg);
        free(full);
    }

    pthread_mutex_lock(&cat->calls_mu);
    for (struct catalog_call **pp = &cat->calls; *pp != NULL; pp = &(*pp)->next)
        if (*pp == &call) {
            *pp = call.next;
            break;
        }
    pthread_mutex_unlock(&cat->calls_mu);
    return rc;
}

struct catalog_call *catalog_call_find(dfs_catalog *cat, uint64_t origin)
{
    if (origin == 0)
        return NULL;
    pthread_mutex_lock(&cat->calls_mu);
    for (struct catalog_call *c = cat->calls; c != NULL; c = c->next)
        if (c->origin == origin)
            return c; /* calls_mu stays held: catalog_call_done */
    pthread_mutex_unlock(&cat->calls_mu);
    return NULL;
}

void catalog_call_done(dfs_catalog *cat, struct catalog_call *call)
{
    if (call != NULL)
        pthread_mutex_unlock(&cat->calls_mu);
}

int dfs_catalog_set_relaxed_sync(dfs_catalog *cat, char **errmsg)
{
    catalog_lock(cat);
    int src = sqlite3_exec(cat->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
    catalog_unlock(cat);
    if (src != SQLITE_OK)
        return dfs_seterr(errmsg, DFS_EIO, "catalog %s: synchronous = NORMAL: %s", cat->path,
                          sqlite3_errstr(src));
    return DFS_OK;
}

int dfs_catalog_applied_index(dfs_catalog *cat, uint64_t *out, char **errmsg)
{
    catalog_lock(cat);
    int found = catalog_query(cat, S_APPLIED_GET, errmsg, "");
    int64_t v = 0;
    if (found == 1) {
        v = catalog_col_i64(cat, S_APPLIED_GET, 0);
        catalog_release(cat->st[S_APPLIED_GET]);
    }
    catalog_unlock(cat);
    if (found < 0)
        return found;
    if (found == 0 || v < 0)
        return dfs_seterr(errmsg, DFS_EDATALOSS, "catalog %s: no replication row", cat->path);
    *out = (uint64_t)v;
    return DFS_OK;
}

struct dfs_catalog_snapshot {
    sqlite3 *db; /* read-only, inside a read transaction that pins the state */
    uint64_t index;
};

static int conn_err(sqlite3 *db, const char *what, char **errmsg)
{
    return dfs_seterr(errmsg, DFS_EIO, "catalog snapshot: %s: %s", what,
                      db != NULL ? sqlite3_errmsg(db) : "out of memory");
}

static int conn_exec(sqlite3 *db, const char *sql, char **errmsg)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return conn_err(db, sql, errmsg);
    return DFS_OK;
}

/* The applied index as a connection other than the catalog's sees it. */
static int conn_applied(sqlite3 *db, uint64_t *out, char **errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = DFS_OK;
    if (sqlite3_prepare_v2(db, "SELECT applied_index FROM replication WHERE k = 0", -1, &st,
                           NULL) != SQLITE_OK)
        rc = conn_err(db, "not a catalog of schema version 9 or later", errmsg);
    else if (sqlite3_step(st) != SQLITE_ROW)
        rc = conn_err(db, "no replication row", errmsg);
    else
        *out = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc;
}

int dfs_catalog_snapshot_begin(dfs_catalog *cat, dfs_catalog_snapshot **out, uint64_t *index,
                               char **errmsg)
{
    if (cat->lockfd < 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "catalog %s: no snapshots of a catalog in memory",
                          cat->path);
    dfs_catalog_snapshot *s = calloc(1, sizeof *s);
    if (s == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    int rc = DFS_OK;
    if (sqlite3_open_v2(cat->path, &s->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        rc = conn_err(s->db, "open", errmsg);
    if (rc == DFS_OK) {
        sqlite3_busy_timeout(s->db, SNAPSHOT_BUSY_MS);
        /* BEGIN alone takes no snapshot of the WAL; the first read does. Under cat->mu no
           apply is half-done, so the read sees whole entries only. */
        catalog_lock(cat);
        rc = conn_exec(s->db, "BEGIN", errmsg);
        if (rc == DFS_OK)
            rc = conn_applied(s->db, &s->index, errmsg);
        catalog_unlock(cat);
    }
    if (rc != DFS_OK) {
        dfs_catalog_snapshot_end(s);
        return rc;
    }
    *index = s->index;
    *out = s;
    return DFS_OK;
}

/* Copy all of src into dst in one step (one write transaction on dst). */
static int backup_all(sqlite3 *dst, sqlite3 *src, char **errmsg)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (b == NULL)
        return conn_err(dst, "backup init", errmsg);
    int step = sqlite3_backup_step(b, -1);
    int fin = sqlite3_backup_finish(b);
    if (step != SQLITE_DONE)
        return dfs_seterr(errmsg, DFS_EIO, "catalog backup: %s", sqlite3_errstr(step));
    if (fin != SQLITE_OK)
        return dfs_seterr(errmsg, DFS_EIO, "catalog backup: %s", sqlite3_errstr(fin));
    return DFS_OK;
}

int dfs_catalog_snapshot_write(dfs_catalog_snapshot *snap, const char *path, char **errmsg)
{
    sqlite3 *dst = NULL;
    int rc = DFS_OK;
    if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        rc = conn_err(dst, path, errmsg);
    /* The backup reads inside snap->db's open read transaction: the state as of snap->index. */
    if (rc == DFS_OK)
        rc = backup_all(dst, snap->db, errmsg);
    if (sqlite3_close(dst) != SQLITE_OK && rc == DFS_OK)
        rc = dfs_seterr(errmsg, DFS_EIO, "catalog snapshot: close %s", path);
    return rc;
}

void dfs_catalog_snapshot_end(dfs_catalog_snapshot *snap)
{
    if (snap == NULL)
        return;
    if (snap->db != NULL) {
        sqlite3_exec(snap->db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(snap->db);
    }
    free(snap);
}

int dfs_catalog_backup(const char *db, const char *to, uint64_t *index, char **errmsg)
{
    if (db == NULL || to == NULL || strcmp(db, ":memory:") == 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "backup: a catalog file and a target are needed");
    if (access(to, F_OK) == 0)
        return dfs_seterr(errmsg, DFS_EEXIST, "backup: %s exists already", to);
    sqlite3 *src = NULL, *dst = NULL;
    int rc = DFS_OK;
    if (sqlite3_open_v2(db, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        rc = conn_err(src, db, errmsg);
    uint64_t at = 0;
    if (rc == DFS_OK) {
        sqlite3_busy_timeout(src, SNAPSHOT_BUSY_MS);
        rc = conn_exec(src, "BEGIN", errmsg);
    }
    if (rc == DFS_OK)
        rc = conn_applied(src, &at, errmsg); /* the first read pins the state */
    if (rc == DFS_OK &&
        sqlite3_open_v2(to, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        rc = conn_err(dst, to, errmsg);
    if (rc == DFS_OK)
        rc = backup_all(dst, src, errmsg);
    if (dst != NULL && sqlite3_close(dst) != SQLITE_OK && rc == DFS_OK)
        rc = dfs_seterr(errmsg, DFS_EIO, "backup: close %s", to);
    if (src != NULL) {
        sqlite3_exec(src, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(src);
    }
    if (rc != DFS_OK) {
        unlink(to);
        return rc;
    }
    if (index != NULL)
        *index = at;
    return DFS_OK;
}

int dfs_catalog_restore(dfs_catalog *cat, const char *path, uint64_t index, char **errmsg)
{
    if (index > (uint64_t)INT64_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "log index %" PRIu64 " too large", index);
    sqlite3 *src = NULL;
    int rc = DFS_OK;
    if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        rc = conn_err(src, path, errmsg);
    int64_t version = 0;
    if (rc == DFS_OK) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(src, "SELECT coalesce(max(version), 0) FROM schema_version", -1, &st,
                               NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            version = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        if (version != DFS_CATALOG_SCHEMA_VERSION)
            rc = dfs_seterr(errmsg, DFS_EPRECOND,
                            "snapshot %s has catalog schema version %" PRId64 ", not %d", path,
                            version, DFS_CATALOG_SCHEMA_VERSION);
    }
    /* Stamp the file with its index first, so the one backup below installs both at once. */
    if (rc == DFS_OK) {
        char sql[96];
        snprintf(sql, sizeof sql, "UPDATE replication SET applied_index = %" PRIu64 " WHERE k = 0",
                 index);
        rc = conn_exec(src, sql, errmsg);
    }
    if (rc == DFS_OK) {
        catalog_lock(cat);
        if (cat->applying)
            rc =
                dfs_seterr(errmsg, DFS_EINTERNAL, "catalog %s: restore during an apply", cat->path);
        else
            rc = backup_all(cat->db, src, errmsg);
        catalog_unlock(cat);
    }
    sqlite3_close(src);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO, "catalog restored path=%s from=%s index=%" PRIu64, cat->path, path,
                index);
    return rc;
}

/* fsync the file at path, then its folder (the rename into it). */
static int sync_path(const char *path, char **errmsg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        if (fd >= 0)
            close(fd);
        return dfs_seterr(errmsg, DFS_EIO, "restore: cannot sync %s", path);
    }
    close(fd);
    return DFS_OK;
}

int dfs_catalog_restore_file(const char *backup, const char *db, int64_t now_ms,
                             uint64_t *from_index, char **errmsg)
{
    if (backup == NULL || db == NULL || strcmp(db, ":memory:") == 0)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "restore: a backup file and a new catalog are needed");
    if (access(db, F_OK) == 0)
        return dfs_seterr(errmsg, DFS_EEXIST,
                          "restore: %s exists already (restore makes a new catalog)", db);
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.restoring", db) < 0)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    unlink(tmp);
    sqlite3 *src = NULL, *dst = NULL;
    int rc = DFS_OK;
    if (sqlite3_open_v2(backup, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        rc = conn_err(src, backup, errmsg);
    if (rc == DFS_OK &&
        sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        rc = conn_err(dst, tmp, errmsg);
    if (rc == DFS_OK)
        rc = backup_all(dst, src, errmsg);
    if (dst != NULL)
        sqlite3_close(dst);
    if (src != NULL)
        sqlite3_close(src);
    /* Open it as a catalog: that checks it is one and migrates it to this schema. */
    dfs_catalog *cat = NULL;
    if (rc == DFS_OK)
        rc = dfs_catalog_open(tmp, &cat, errmsg);
    uint64_t from = 0;
    if (rc == DFS_OK)
        rc = dfs_catalog_applied_index(cat, &from, errmsg);
    if (rc == DFS_OK) {
        /* Uploads in progress at the backup (pending files) are dropped, fragments and all, not
           left to expire: an expiry queues their fragments for deletion, yet a client may have
           committed one after the backup was taken. Unknown to the new catalog, those fragments
           are kept as orphans like every other file committed after the backup. The nodes'
           registrations are forgotten: their next heartbeat is answered "unknown", so each
           registers again and reports its inventory at once (else only after its next scrub
           pass), which is what finds those orphans. */
        char sql[320];
        snprintf(sql, sizeof sql,
                 "DELETE FROM files WHERE state = 'pending';"
                 "UPDATE nodes SET registration = 0;"
                 "UPDATE replication SET applied_index = 0 WHERE k = 0;"
                 "INSERT OR REPLACE INTO restored (k, restored_ms, from_index) "
                 "VALUES (0, %" PRId64 ", %" PRIu64 ");",
                 now_ms, from);
        catalog_lock(cat);
        rc = catalog_tx_begin(cat, true, errmsg);
        if (rc == DFS_OK)
            rc = catalog_tx_end(cat, conn_exec(cat->db, sql, errmsg), errmsg);
        catalog_unlock(cat);
    }
    dfs_catalog_close(cat); /* checkpoints the WAL into the file */
    if (rc == DFS_OK)
        rc = sync_path(tmp, errmsg);
    if (rc == DFS_OK && rename(tmp, db) != 0)
        rc = dfs_seterr(errmsg, DFS_EIO, "restore: cannot rename %s to %s", tmp, db);
    if (rc == DFS_OK) {
        char *dir = strdup(db);
        char *slash = dir != NULL ? strrchr(dir, '/') : NULL;
        if (slash != NULL) {
            *slash = '\0';
            rc = sync_path(slash == dir ? "/" : dir, errmsg);
        } else if (dir != NULL) {
            rc = sync_path(".", errmsg);
        }
        free(dir);
    }
    if (rc != DFS_OK) {
        unlink(tmp);
        char *side = NULL;
        if (asprintf(&side, "%s-wal", tmp) >= 0)
            unlink(side);
        free(side);
        if (asprintf(&side, "%s-shm", tmp) >= 0)
            unlink(side);
        free(side);
    } else if (from_index != NULL) {
        *from_index = from;
    }
    free(tmp);
    return rc;
}

int dfs_catalog_orphans_file(const char *db, size_t max,
                             void (*fn)(void *arg, const char *fragment_id, const char *node_id,
                                        int64_t first_seen_ms),
                             void *arg, char **errmsg)
{
    sqlite3 *c = NULL;
    sqlite3_stmt *st = NULL;
    int rc = DFS_OK;
    if (access(db, F_OK) != 0)
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "no catalog at %s", db);
    else if (sqlite3_open_v2(db, &c, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        rc = conn_err(c, db, errmsg);
    if (rc == DFS_OK) {
        sqlite3_busy_timeout(c, SNAPSHOT_BUSY_MS);
        if (sqlite3_prepare_v2(c,
                               "SELECT fragment_id, node_id, first_seen_ms FROM orphans "
                               "ORDER BY fragment_id, node_id LIMIT ?1",
                               -1, &st, NULL) != SQLITE_OK)
            rc = conn_err(c, "not a catalog of schema version 10 or later", errmsg);
    }
    if (rc == DFS_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)(max > INT64_MAX ? INT64_MAX : max));
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW)
            fn(arg, (const char *)sqlite3_column_text(st, 0),
               (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2));
        if (step != SQLITE_DONE)
            rc = conn_err(c, db, errmsg);
    }
    sqlite3_finalize(st);
    if (c != NULL)
        sqlite3_close(c);
    return rc;
}
