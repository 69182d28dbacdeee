/* The SQLite catalog: schema, migrations, and the verbs behind the Metadata service. */
#include "metadata/catalog.h"

#include "common/err.h"
#include "common/id.h"
#include "common/log.h"
#include "common/path.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * ON-DISK FORMAT. The database outlives this code: never edit a migration that has shipped; append
 * a new one (migrations[] below) and bump DFS_CATALOG_SCHEMA_VERSION. Enumerations are stored as
 * their lower-case names (see the CHECK constraints), never as numbers, so the file reads well in
 * the sqlite3 shell and does not depend on C enum values. Times are ms since the Unix epoch; sizes
 * are bytes (INTEGER, so at most INT64_MAX). Text is compared byte-wise (BINARY collation), which
 * is the path order of listings.
 *
 *   schema_version(version PK, applied_ms)   one row per applied migration; current = max(version)
 *   PRAGMA application_id = 0x64667331       ("dfs1") marks the file as a dfs catalog
 *
 *   nodes      one row per storage node ever registered.
 *              id (32 hex), address, zone ('' = none), state (alive|suspect|dead|draining|
 *              decommissioned), capacity/used/free bytes, fragment_count as last reported,
 *              last_heartbeat_ms, registered_ms (first registration, never changed).
 *
 *   files      one row per put, pending or committed. file_id (32 hex, fresh per put so an
 *              overwrite never mixes fragments), path (canonical), size, sha256 (32-byte BLOB,
 *              NULL while pending), the redundancy (scheme replication|erasure, replicas k,
 *              fragments F, data K, parity M; the other scheme's fields are 0), policy
 *              (random|min_copy|buddy|least_used, resolved), state (pending|committed),
 *              overwrite (0/1), fragment_size, cell_size (erasure), created_ms, committed_ms
 *              (NULL while pending), expires_ms (NULL once committed).
 *              Invariant: at most one COMMITTED row per path (partial unique index); any number
 *              of pending rows may share a path.
 *
 *   fragments  one row per fragment of a file. fragment_id (= file_id || printf('%08x', idx), the
 *              name on the storage nodes; CHECKed), file_id -> files ON DELETE CASCADE, idx
 *              (0..n-1, every index present), size, checksum (CRC32C of the block-CRC table,
 *              NULL until committed).
 *
 *   replicas   one row per copy of a fragment on a node. fragment_id -> fragments ON DELETE
 *              CASCADE, node_id -> nodes (no cascade: a node cannot be removed while it holds
 *              replicas), pos (order in the plan; a replacement takes the failed node's pos),
 *              acked (0 = planned, 1 = the node acknowledged a durable copy at commit).
 *              Invariant: rows of a pending file are all planned (acked = 0); rows of a committed
 *              file are all acknowledged (acked = 1): commit deletes the planned rows it did not
 *              acknowledge.
 *
 *   deletions  the queue of fragment copies to remove from nodes: (fragment_id, node_id) PK,
 *              queued_ms, not_before_ms (postponed after a failed attempt). No foreign keys on
 *              purpose: items outlive their file's rows, and items for a node that is no longer
 *              registered are dropped when the queue is read. While (f, n) is queued, node n is
 *              never planned again for fragment f (the removal could race with the new copy).
 *
 * Since version 2 (the placement state of metadata/placement.h, saved by the metadata service
 * whenever a sync changed it, loaded at its start):
 *
 *   placement_families  one row per family of copysets or buddy groups. family (PK, the text
 *              '<policy>/<width>', e.g. 'min_copy/3'; CHECKed against the two columns), policy
 *              (min_copy|buddy), width (w >= 1), param (the scatter width S for min_copy, the group
 *              size G for buddy, in effect when the sets were built), perms (P for min_copy, 1 for
 *              buddy), updated_ms.
 *
 *   placement_sets  one row per node of a set. family -> placement_families ON DELETE CASCADE,
 *              set_id (0..nsets-1, the set's index), pos (0..size-1, the node's place in the set),
 *              perm (min_copy: the permutation the copyset was cut from, the same on every row of
 *              a set; buddy: 0), node_id (32 hex; no foreign key: a node that left is taken out of
 *              the sets by the next sync, not by the catalog).
 *              PK (family, set_id, pos); UNIQUE (family, set_id, node_id): a set never holds a
 *              node twice. Saving a family replaces all its rows in one transaction.
 *
 * Every verb is one transaction: writers use BEGIN IMMEDIATE, multi-statement readers a deferred
 * BEGIN for a consistent snapshot.
 */

/* ("dfs1") in the SQLite header's application_id field. */
#define APPLICATION_ID 0x64667331

/* How long a call waits for another process's lock (the sqlite3 shell, a backup) before failing. */
#define BUSY_TIMEOUT_MS 5000

/*
 * Ordered migrations: migrations[i] takes the schema from version i to version i + 1 and runs in
 * the same transaction as the schema_version row that records it. Append only.
 */
static const char *const migrations[] = {
    /* 1: the initial schema. */
    "CREATE TABLE nodes ("
    "  id                TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 32),"
    "  address           TEXT    NOT NULL CHECK (address <> ''),"
    "  zone              TEXT    NOT NULL DEFAULT '',"
    "  state             TEXT    NOT NULL CHECK (state IN"
    "                    ('alive', 'suspect', 'dead', 'draining', 'decommissioned')),"
    "  capacity_bytes    INTEGER NOT NULL CHECK (capacity_bytes >= 0),"
    "  used_bytes        INTEGER NOT NULL CHECK (used_bytes >= 0),"
    "  free_bytes        INTEGER NOT NULL CHECK (free_bytes >= 0),"
    "  fragment_count    INTEGER NOT NULL CHECK (fragment_count >= 0),"
    "  last_heartbeat_ms INTEGER NOT NULL,"
    "  registered_ms     INTEGER NOT NULL"
    ") WITHOUT ROWID;"

    "CREATE TABLE files ("
    "  file_id       TEXT    NOT NULL PRIMARY KEY CHECK (length(file_id) = 32),"
    "  path          TEXT    NOT NULL CHECK (substr(path, 1, 1) = '/'),"
    "  size          INTEGER NOT NULL CHECK (size >= 0),"
    "  sha256        BLOB    CHECK (sha256 IS NULL OR length(sha256) = 32),"
    "  scheme        TEXT    NOT NULL CHECK (scheme IN ('replication', 'erasure')),"
    "  replicas      INTEGER NOT NULL CHECK (replicas >= 0),"
    "  fragments     INTEGER NOT NULL CHECK (fragments >= 0),"
    "  data          INTEGER NOT NULL CHECK (data >= 0),"
    "  parity        INTEGER NOT NULL CHECK (parity >= 0),"
    "  policy        TEXT    NOT NULL"
    "                CHECK (policy IN ('random', 'min_copy', 'buddy', 'least_used')),"
    "  state         TEXT    NOT NULL CHECK (state IN ('pending', 'committed')),"
    "  overwrite     INTEGER NOT NULL CHECK (overwrite IN (0, 1)),"
    "  fragment_size INTEGER NOT NULL CHECK (fragment_size >= 0),"
    "  cell_size     INTEGER NOT NULL CHECK (cell_size >= 0),"
    "  created_ms    INTEGER NOT NULL,"
    "  committed_ms  INTEGER,"
    "  expires_ms    INTEGER,"
    "  CHECK ((state = 'pending' AND committed_ms IS NULL AND expires_ms IS NOT NULL"
    "          AND sha256 IS NULL)"
    "      OR (state = 'committed' AND committed_ms IS NOT NULL AND expires_ms IS NULL"
    "          AND sha256 IS NOT NULL))"
    ") WITHOUT ROWID;"
    "CREATE UNIQUE INDEX files_committed_path ON files (path) WHERE state = 'committed';"
    "CREATE INDEX files_pending_expiry ON files (expires_ms) WHERE state = 'pending';"

    "CREATE TABLE fragments ("
    "  fragment_id TEXT    NOT NULL PRIMARY KEY,"
    "  file_id     TEXT    NOT NULL REFERENCES files (file_id) ON DELETE CASCADE,"
    "  idx         INTEGER NOT NULL CHECK (idx >= 0),"
    "  size        INTEGER NOT NULL CHECK (size >= 0),"
    "  checksum    INTEGER CHECK (checksum BETWEEN 0 AND 4294967295),"
    "  UNIQUE (file_id, idx),"
    "  CHECK (fragment_id = file_id || printf('%08x', idx))"
    ") WITHOUT ROWID;"

    "CREATE TABLE replicas ("
    "  fragment_id TEXT    NOT NULL REFERENCES fragments (fragment_id) ON DELETE CASCADE,"
    "  node_id     TEXT    NOT NULL REFERENCES nodes (id),"
    "  pos         INTEGER NOT NULL CHECK (pos >= 0),"
    "  acked       INTEGER NOT NULL DEFAULT 0 CHECK (acked IN (0, 1)),"
    "  PRIMARY KEY (fragment_id, node_id),"
    "  UNIQUE (fragment_id, pos)"
    ") WITHOUT ROWID;"
    "CREATE INDEX replicas_node ON replicas (node_id);"

    "CREATE TABLE deletions ("
    "  fragment_id   TEXT    NOT NULL CHECK (length(fragment_id) = 40),"
    "  node_id       TEXT    NOT NULL CHECK (length(node_id) = 32),"
    "  queued_ms     INTEGER NOT NULL,"
    "  not_before_ms INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (fragment_id, node_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX deletions_node ON deletions (node_id);"
    "CREATE INDEX deletions_queued ON deletions (queued_ms);",

    /* 2: placement state (copysets and buddy groups). */
    "CREATE TABLE placement_families ("
    "  family     TEXT    NOT NULL PRIMARY KEY,"
    "  policy     TEXT    NOT NULL CHECK (policy IN ('min_copy', 'buddy')),"
    "  width      INTEGER NOT NULL CHECK (width >= 1),"
    "  param      INTEGER NOT NULL CHECK (param >= 0),"
    "  perms      INTEGER NOT NULL CHECK (perms >= 1),"
    "  updated_ms INTEGER NOT NULL,"
    "  CHECK (family = policy || '/' || width)"
    ") WITHOUT ROWID;"

    "CREATE TABLE placement_sets ("
    "  family  TEXT    NOT NULL REFERENCES placement_families (family) ON DELETE CASCADE,"
    "  set_id  INTEGER NOT NULL CHECK (set_id >= 0),"
    "  pos     INTEGER NOT NULL CHECK (pos >= 0),"
    "  perm    INTEGER NOT NULL CHECK (perm >= 0),"
    "  node_id TEXT    NOT NULL CHECK (length(node_id) = 32),"
    "  PRIMARY KEY (family, set_id, pos),"
    "  UNIQUE (family, set_id, node_id)"
    ") WITHOUT ROWID;",
};

static_assert(sizeof migrations / sizeof migrations[0] == DFS_CATALOG_SCHEMA_VERSION,
              "one migration per schema version");

#define NODE_COLS                                                                        \
    "id, address, zone, state, capacity_bytes, used_bytes, free_bytes, fragment_count, " \
    "last_heartbeat_ms, registered_ms"

#define FILE_COLS                                                                             \
    "file_id, path, size, sha256, scheme, replicas, fragments, data, parity, policy, state, " \
    "overwrite, fragment_size, cell_size, created_ms, committed_ms, expires_ms"

/* Prepared once at open, reused with sqlite3_reset; all used under cat->mu only. */
enum stmt {
    S_BEGIN_READ,
    S_BEGIN_WRITE,
    S_COMMIT,
    S_ROLLBACK,

    S_NODE_GET,
    S_NODE_UPSERT,
    S_NODE_HEARTBEAT,
    S_NODE_SET_STATE,
    S_NODES_LIST,
    S_NODES_LATE,

    S_FILE_GET_ID,
    S_FILE_GET_PATH,
    S_FILE_INSERT,
    S_FILE_COMMIT,
    S_FILE_DELETE,
    S_FILES_EXPIRED,
    S_FILES_LIST,
    S_FRAGMENT_INSERT,
    S_FRAGMENT_SET_CHECKSUM,
    S_LAYOUT,
    S_REPLICA_INSERT,
    S_REPLICA_FIND,
    S_REPLICA_FILE_HAS_NODE,
    S_REPLICA_MOVE,
    S_REPLICA_ACK,
    S_REPLICAS_DROP_UNACKED,

    S_DELETION_INSERT,
    S_DELETION_FIND,
    S_DELETION_DELETE,
    S_DELETION_POSTPONE,
    S_DELETIONS_OF_FRAGMENT,
    S_DELETIONS_QUEUE_FILE,
    S_DELETIONS_QUEUE_UNACKED,
    S_DELETIONS_DROP_ORPHANS,
    S_DELETIONS_FETCH,

    S_STATS_FILES,
    S_STATS_STORED,
    S_STATS_PENDING,
    S_STATS_NODES,
    S_STATS_DELETIONS,
    S_SCHEMA_VERSION,

    S_PLACEMENT_FAMILIES,
    S_PLACEMENT_SETS,
    S_PLACEMENT_DELETE,
    S_PLACEMENT_FAMILY_INSERT,
    S_PLACEMENT_SET_INSERT,

    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN_READ] = "BEGIN",
    [S_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",

    [S_NODE_GET] = "SELECT " NODE_COLS " FROM nodes WHERE id = ?1",
    [S_NODE_UPSERT] =
        "INSERT INTO nodes (" NODE_COLS ") VALUES (?1, ?2, ?3, 'alive', ?4, ?5, ?6, ?7, ?8, ?8) "
        "ON CONFLICT (id) DO UPDATE SET address = excluded.address, zone = excluded.zone, "
        "state = CASE WHEN state IN ('draining', 'decommissioned') THEN state ELSE 'alive' END, "
        "capacity_bytes = excluded.capacity_bytes, used_bytes = excluded.used_bytes, "
        "free_bytes = excluded.free_bytes, fragment_count = excluded.fragment_count, "
        "last_heartbeat_ms = max(last_heartbeat_ms, excluded.last_heartbeat_ms)",
    [S_NODE_HEARTBEAT] =
        "UPDATE nodes SET capacity_bytes = ?2, used_bytes = ?3, free_bytes = ?4, "
        "fragment_count = ?5, last_heartbeat_ms = max(last_heartbeat_ms, ?6), "
        "state = CASE WHEN state IN ('suspect', 'dead') THEN 'alive' ELSE state END WHERE id = ?1",
    [S_NODE_SET_STATE] = "UPDATE nodes SET state = ?2 WHERE id = ?1",
    [S_NODES_LIST] = "SELECT " NODE_COLS " FROM nodes ORDER BY registered_ms, id",
    /* ?1: alive nodes heard from before this are late; ?2: alive or suspect ones are dead. */
    [S_NODES_LATE] = "SELECT id, address, state, last_heartbeat_ms FROM nodes "
                     "WHERE (state IN ('alive', 'suspect') AND last_heartbeat_ms < ?2) "
                     "OR (state = 'alive' AND last_heartbeat_ms < ?1) ORDER BY id",

    [S_FILE_GET_ID] = "SELECT " FILE_COLS " FROM files WHERE file_id = ?1",
    [S_FILE_GET_PATH] = "SELECT " FILE_COLS " FROM files WHERE path = ?1 AND state = 'committed'",
    [S_FILE_INSERT] = "INSERT INTO files (" FILE_COLS ") VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, "
                      "?8, ?9, 'pending', ?10, ?11, ?12, ?13, NULL, ?14)",
    [S_FILE_COMMIT] = "UPDATE files SET state = 'committed', sha256 = ?2, committed_ms = ?3, "
                      "expires_ms = NULL WHERE file_id = ?1 AND state = 'pending'",
    [S_FILE_DELETE] = "DELETE FROM files WHERE file_id = ?1",
    [S_FILES_EXPIRED] = "SELECT file_id, path FROM files WHERE state = 'pending' "
                        "AND expires_ms <= ?1 ORDER BY expires_ms, file_id",
    /* ?1 lower bound (inclusive), ?2 upper bound (exclusive), ?3 the cursor itself, ?4 limit. */
    [S_FILES_LIST] = "SELECT " FILE_COLS " FROM files WHERE state = 'committed' AND path >= ?1 "
                     "AND path < ?2 AND path IS NOT ?3 ORDER BY path LIMIT ?4",
    [S_FRAGMENT_INSERT] =
        "INSERT INTO fragments (fragment_id, file_id, idx, size) VALUES (?1, ?2, ?3, ?4)",
    [S_FRAGMENT_SET_CHECKSUM] = "UPDATE fragments SET checksum = ?2 WHERE fragment_id = ?1",
    [S_LAYOUT] = "SELECT f.idx, f.fragment_id, f.size, f.checksum, r.node_id, n.address, n.state "
                 "FROM fragments f LEFT JOIN replicas r ON r.fragment_id = f.fragment_id "
                 "LEFT JOIN nodes n ON n.id = r.node_id WHERE f.file_id = ?1 ORDER BY f.idx, r.pos",
    [S_REPLICA_INSERT] =
        "INSERT INTO replicas (fragment_id, node_id, pos, acked) VALUES (?1, ?2, ?3, 0)",
    [S_REPLICA_FIND] = "SELECT pos FROM replicas WHERE fragment_id = ?1 AND node_id = ?2",
    [S_REPLICA_FILE_HAS_NODE] = "SELECT 1 FROM replicas r JOIN fragments f "
                                "ON f.fragment_id = r.fragment_id WHERE f.file_id = ?1 "
                                "AND r.node_id = ?2 LIMIT 1",
    [S_REPLICA_MOVE] = "UPDATE replicas SET node_id = ?3 WHERE fragment_id = ?1 AND node_id = ?2",
    [S_REPLICA_ACK] = "UPDATE replicas SET acked = 1 WHERE fragment_id = ?1 AND node_id = ?2",
    [S_REPLICAS_DROP_UNACKED] = "DELETE FROM replicas WHERE acked = 0 AND fragment_id IN "
                                "(SELECT fragment_id FROM fragments WHERE file_id = ?1)",

    [S_DELETION_INSERT] = "INSERT OR IGNORE INTO deletions (fragment_id, node_id, queued_ms) "
                          "VALUES (?1, ?2, ?3)",
    [S_DELETION_FIND] = "SELECT 1 FROM deletions WHERE fragment_id = ?1 AND node_id = ?2",
    [S_DELETION_DELETE] = "DELETE FROM deletions WHERE fragment_id = ?1 AND node_id = ?2",
    [S_DELETION_POSTPONE] =
        "UPDATE deletions SET not_before_ms = ?3 WHERE fragment_id = ?1 AND node_id = ?2",
    [S_DELETIONS_OF_FRAGMENT] =
        "SELECT node_id FROM deletions WHERE fragment_id = ?1 ORDER BY node_id",
    [S_DELETIONS_QUEUE_FILE] =
        "INSERT OR IGNORE INTO deletions (fragment_id, node_id, queued_ms) "
        "SELECT r.fragment_id, r.node_id, ?2 FROM replicas r JOIN fragments f "
        "ON f.fragment_id = r.fragment_id WHERE f.file_id = ?1",
    [S_DELETIONS_QUEUE_UNACKED] =
        "INSERT OR IGNORE INTO deletions (fragment_id, node_id, queued_ms) "
        "SELECT r.fragment_id, r.node_id, ?2 FROM replicas r JOIN fragments f "
        "ON f.fragment_id = r.fragment_id WHERE f.file_id = ?1 AND r.acked = 0",
    [S_DELETIONS_DROP_ORPHANS] =
        "DELETE FROM deletions WHERE node_id NOT IN (SELECT id FROM nodes)",
    [S_DELETIONS_FETCH] = "SELECT d.fragment_id, d.node_id, n.address FROM deletions d "
                          "JOIN nodes n ON n.id = d.node_id WHERE n.state = 'alive' "
                          "AND d.not_before_ms <= ?1 "
                          "ORDER BY d.queued_ms, d.fragment_id, d.node_id LIMIT ?2",

    [S_STATS_FILES] =
        "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE state = 'committed'",
    [S_STATS_STORED] = "SELECT coalesce(sum(f.size), 0) FROM replicas r JOIN fragments f "
                       "ON f.fragment_id = r.fragment_id WHERE r.acked = 1",
    [S_STATS_PENDING] = "SELECT count(*) FROM files WHERE state = 'pending'",
    [S_STATS_NODES] = "SELECT state, count(*) FROM nodes GROUP BY state",
    [S_STATS_DELETIONS] = "SELECT count(*) FROM deletions",
    [S_SCHEMA_VERSION] = "SELECT coalesce(max(version), 0) FROM schema_version",

    [S_PLACEMENT_FAMILIES] = "SELECT family, policy, width, param, perms FROM placement_families "
                             "ORDER BY family",
    [S_PLACEMENT_SETS] = "SELECT family, set_id, pos, perm, node_id FROM placement_sets "
                         "ORDER BY family, set_id, pos",
    [S_PLACEMENT_DELETE] = "DELETE FROM placement_families WHERE family = ?1",
    [S_PLACEMENT_FAMILY_INSERT] =
        "INSERT INTO placement_families (family, policy, width, param, perms, updated_ms) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_PLACEMENT_SET_INSERT] = "INSERT INTO placement_sets (family, set_id, pos, perm, node_id) "
                               "VALUES (?1, ?2, ?3, ?4, ?5)",
};

/*
 * Lock rule: `mu` guards `db` and every statement in `st`; it is held for the whole of each public
 * call, from BEGIN to COMMIT and the copying of results. It is the only lock, so there is no order.
 */
struct dfs_catalog {
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    char *path; /* for messages */
};

/* ---- Names of stored enumerations ------------------------------------------------------------ */

static const char *const node_state_names[] = {
    [DFS_NODE_UNSPECIFIED] = "unspecified", [DFS_NODE_ALIVE] = "alive",
    [DFS_NODE_SUSPECT] = "suspect",         [DFS_NODE_DEAD] = "dead",
    [DFS_NODE_DRAINING] = "draining",       [DFS_NODE_DECOMMISSIONED] = "decommissioned",
};

static const char *const scheme_names[] = {
    [DFS_SCHEME_UNSPECIFIED] = "unspecified",
    [DFS_SCHEME_REPLICATION] = "replication",
    [DFS_SCHEME_ERASURE] = "erasure",
};

static const char *const file_state_names[] = {
    [DFS_FILE_UNSPECIFIED] = "unspecified",
    [DFS_FILE_PENDING] = "pending",
    [DFS_FILE_COMMITTED] = "committed",
};

/* Index of `s` in names[1..n), or 0 (the "unspecified" value) when absent. */
static int name_index(const char *const *names, int n, const char *s)
{
    for (int i = 1; s != NULL && i < n; i++) {
        if (strcmp(names[i], s) == 0)
            return i;
    }
    return 0;
}

#define NAME_INDEX(names, s) name_index((names), (int)(sizeof(names) / sizeof((names)[0])), (s))

const char *dfs_catalog_node_state_name(enum dfs_node_state state)
{
    if ((unsigned)state >= sizeof node_state_names / sizeof node_state_names[0])
        return "unknown";
    return node_state_names[state];
}

static enum dfs_policy policy_from_name(const char *s)
{
    enum dfs_policy p = DFS_POLICY_UNSPECIFIED;
    if (s == NULL || dfs_placement_policy_parse(s, &p, NULL) != DFS_OK)
        return DFS_POLICY_UNSPECIFIED;
    return p;
}

/* ---- SQLite helpers -------------------------------------------------------------------------- */

static int code_from_sqlite(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return DFS_OK;
    case SQLITE_NOMEM:
        return DFS_ENOMEM;
    case SQLITE_FULL:
        return DFS_ENOSPC;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return DFS_EUNAVAIL;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return DFS_EPERM;
    case SQLITE_NOTADB:
        return DFS_EINVAL;
    case SQLITE_CONSTRAINT: /* requests are validated first: a violation is our bug */
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
    case SQLITE_ERROR:
        return DFS_EINTERNAL;
    default:
        return DFS_EIO;
    }
}

/*
 * Turn a failed SQLite call into a DFS code with "catalog <path>: <what>: <sqlite message>"; `what`
 * (often the statement's SQL) is cut at 60 bytes.
 */
static int sql_fail(dfs_catalog *cat, int rc, const char *what, char **errmsg)
{
    int code = code_from_sqlite(rc);
    if (code == DFS_OK)
        code = DFS_EINTERNAL;
    return dfs_seterr(errmsg, code, "catalog %s: %.60s: %s", cat->path, what,
                      cat->db != NULL ? sqlite3_errmsg(cat->db) : sqlite3_errstr(rc));
}

static void release(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/*
 * Bind parameters ?1.. from `types`: 't' text (const char *, NULL binds NULL), 'i' int64_t,
 * 'b' blob (const void *, size_t), 'n' NULL. Text and blobs are SQLITE_STATIC: the caller keeps
 * them alive until the statement is reset. Returns an SQLite code.
 */
static int vbind(sqlite3_stmt *st, const char *types, va_list ap)
{
    int rc = SQLITE_OK;
    for (int i = 0; types[i] != '\0' && rc == SQLITE_OK; i++) {
        int idx = i + 1;
        switch (types[i]) {
        case 't': {
            const char *s = va_arg(ap, const char *);
            rc = s == NULL ? sqlite3_bind_null(st, idx)
                           : sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
            break;
        }
        case 'i':
            rc = sqlite3_bind_int64(st, idx, va_arg(ap, int64_t));
            break;
        case 'b': {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            rc = sqlite3_bind_blob(st, idx, p, (int)n, SQLITE_STATIC);
            break;
        }
        case 'n':
            rc = sqlite3_bind_null(st, idx);
            break;
        default:
            rc = SQLITE_MISUSE;
        }
    }
    return rc;
}

/*
 * Bind and take the first step of statement `id`. Returns 1 with a row ready (the caller reads it
 * and calls release), 0 when there is no row (already released), or a negative DFS code with a
 * message (released).
 */
static int query(dfs_catalog *cat, enum stmt id, char **errmsg, const char *types, ...)
{
    sqlite3_stmt *st = cat->st[id];
    va_list ap;
    va_start(ap, types);
    int rc = vbind(st, types, ap);
    va_end(ap);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    int ret = rc == SQLITE_DONE ? 0 : sql_fail(cat, rc, stmt_sql[id], errmsg);
    release(st);
    return ret;
}

/* Next row of a statement started with query(): 1, 0 (released) or a DFS code (released). */
static int next_row(dfs_catalog *cat, enum stmt id, char **errmsg)
{
    sqlite3_stmt *st = cat->st[id];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    int ret = rc == SQLITE_DONE ? 0 : sql_fail(cat, rc, stmt_sql[id], errmsg);
    release(st);
    return ret;
}

/*
 * Run a statement that returns no rows. Returns DFS_OK or a DFS code; *changes (may be NULL) gets
 * the number of rows it changed.
 */
static int exec(dfs_catalog *cat, enum stmt id, int *changes, char **errmsg, const char *types, ...)
{
    sqlite3_stmt *st = cat->st[id];
    va_list ap;
    va_start(ap, types);
    int rc = vbind(st, types, ap);
    va_end(ap);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? DFS_OK : sql_fail(cat, rc, stmt_sql[id], errmsg);
    if (ret == DFS_OK && changes != NULL)
        *changes = sqlite3_changes(cat->db);
    release(st);
    return ret;
}

static int64_t col_i64(dfs_catalog *cat, enum stmt id, int col)
{
    return sqlite3_column_int64(cat->st[id], col);
}

static const char *col_text(dfs_catalog *cat, enum stmt id, int col)
{
    return (const char *)sqlite3_column_text(cat->st[id], col);
}

/* Copy a text column into buf[cap], truncating (values were length-checked when stored). */
static void col_copy(dfs_catalog *cat, enum stmt id, int col, char *buf, size_t cap)
{
    const char *s = col_text(cat, id, col);
    size_t n = s == NULL ? 0 : (size_t)sqlite3_column_bytes(cat->st[id], col);
    if (n >= cap)
        n = cap - 1;
    if (n > 0)
        memcpy(buf, s, n);
    buf[n] = '\0';
}

static void lock(dfs_catalog *cat)
{
    pthread_mutex_lock(&cat->mu);
}

static void unlock(dfs_catalog *cat)
{
    pthread_mutex_unlock(&cat->mu);
}

static int tx_begin(dfs_catalog *cat, bool write, char **errmsg)
{
    return exec(cat, write ? S_BEGIN_WRITE : S_BEGIN_READ, NULL, errmsg, "");
}

/* End the transaction: COMMIT when rc is DFS_OK, else ROLLBACK. Returns the final status. */
static int tx_end(dfs_catalog *cat, int rc, char **errmsg)
{
    if (rc == DFS_OK) {
        rc = exec(cat, S_COMMIT, NULL, errmsg, "");
        if (rc == DFS_OK)
            return DFS_OK;
    }
    if (!sqlite3_get_autocommit(cat->db)) {
        int rb = exec(cat, S_ROLLBACK, NULL, NULL, "");
        if (rb != DFS_OK)
            dfs_log(DFS_LOG_ERROR, "catalog rollback failed path=%s err=\"%s\"", cat->path,
                    sqlite3_errmsg(cat->db));
    }
    return rc;
}

static int64_t sub_sat(int64_t a, int64_t b)
{
    if (b > 0 && a < INT64_MIN + b)
        return INT64_MIN;
    return a - b;
}

/* ---- Validation ------------------------------------------------------------------------------ */

static int check_id(const char *id, const char *what, char **errmsg)
{
    if (!dfs_id_valid(id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad %s id '%s' (want %d lower-case hex digits)",
                          what, id == NULL ? "" : id, DFS_ID_HEX);
    return DFS_OK;
}

static int check_text(const char *s, size_t min, size_t max, const char *what, char **errmsg)
{
    size_t n = s == NULL ? 0 : strlen(s);
    if (n < min || n > max)
        return dfs_seterr(errmsg, DFS_EINVAL, "%s must be %zu to %zu bytes, not %zu", what, min,
                          max, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return dfs_seterr(errmsg, DFS_EINVAL, "%s contains a control character", what);
    }
    return DFS_OK;
}

static int check_u64(uint64_t v, const char *what, char **errmsg)
{
    if (v > (uint64_t)INT64_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "%s %" PRIu64 " is too large", what, v);
    return DFS_OK;
}

static int check_usage(const struct dfs_node_usage *u, char **errmsg)
{
    if (u == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "no usage figures");
    int rc = check_u64(u->capacity_bytes, "capacity_bytes", errmsg);
    if (rc == DFS_OK)
        rc = check_u64(u->used_bytes, "used_bytes", errmsg);
    if (rc == DFS_OK)
        rc = check_u64(u->free_bytes, "free_bytes", errmsg);
    if (rc == DFS_OK)
        rc = check_u64(u->fragment_count, "fragment_count", errmsg);
    return rc;
}

static int check_path(const char *path, char **errmsg)
{
    char *canon = NULL;
    int rc = dfs_path_canon(path, &canon, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (strcmp(canon, path) != 0)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "path '%s' is not canonical ('%s')", path, canon);
    free(canon);
    return rc;
}

int dfs_catalog_redundancy_check(const struct dfs_redundancy *r, char **errmsg)
{
    if (r == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "no redundancy given");
    switch (r->scheme) {
    case DFS_SCHEME_REPLICATION:
        if (r->replicas < 1 || r->replicas > DFS_REPLICAS_MAX)
            return dfs_seterr(errmsg, DFS_EINVAL, "replicas must be 1..%d, not %" PRIu32,
                              DFS_REPLICAS_MAX, r->replicas);
        if (r->fragments < 1 || r->fragments > DFS_FRAGMENTS_MAX)
            return dfs_seterr(errmsg, DFS_EINVAL, "fragments must be 1..%d, not %" PRIu32,
                              DFS_FRAGMENTS_MAX, r->fragments);
        if (r->data != 0 || r->parity != 0)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "replication takes no data or parity fragment counts");
        return DFS_OK;
    case DFS_SCHEME_ERASURE:
        if (r->data < 1 || r->data > DFS_EC_WIDTH_MAX || r->parity > DFS_EC_WIDTH_MAX ||
            r->data + r->parity > DFS_EC_WIDTH_MAX)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "erasure code %" PRIu32 "+%" PRIu32
                              ": need at least 1 data fragment and at most %d in all",
                              r->data, r->parity, DFS_EC_WIDTH_MAX);
        if (r->replicas != 0 || r->fragments != 0)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "erasure code takes no replica or fragment counts");
        return DFS_OK;
    case DFS_SCHEME_UNSPECIFIED:
    default:
        return dfs_seterr(errmsg, DFS_EINVAL, "redundancy scheme not resolved (%d)",
                          (int)r->scheme);
    }
}

uint32_t dfs_catalog_redundancy_fragments(const struct dfs_redundancy *r)
{
    return r->scheme == DFS_SCHEME_ERASURE ? r->data + r->parity : r->fragments;
}

uint32_t dfs_catalog_redundancy_copies(const struct dfs_redundancy *r)
{
    return r->scheme == DFS_SCHEME_ERASURE ? 1 : r->replicas;
}

static bool policy_resolved(enum dfs_policy p)
{
    return p >= DFS_POLICY_RANDOM && p <= DFS_POLICY_LEAST_USED;
}

/* ---- Records --------------------------------------------------------------------------------- */

static void fragments_free(struct dfs_fragment_rec *frags, size_t n)
{
    for (size_t i = 0; frags != NULL && i < n; i++) {
        free(frags[i].replicas);
        free(frags[i].failed_node_ids);
    }
    free(frags);
}

static void file_clear(struct dfs_file_rec *f)
{
    free(f->path);
    fragments_free(f->fragments, f->nfragments);
    memset(f, 0, sizeof *f);
}

void dfs_catalog_file_rec_free(struct dfs_file_rec *file)
{
    if (file == NULL)
        return;
    file_clear(file);
    free(file);
}

void dfs_catalog_file_recs_free(struct dfs_file_rec *files, size_t n)
{
    for (size_t i = 0; files != NULL && i < n; i++)
        file_clear(&files[i]);
    free(files);
}

static void read_node(dfs_catalog *cat, enum stmt id, struct dfs_node_rec *n)
{
    memset(n, 0, sizeof *n);
    col_copy(cat, id, 0, n->id, sizeof n->id);
    col_copy(cat, id, 1, n->address, sizeof n->address);
    col_copy(cat, id, 2, n->zone, sizeof n->zone);
    n->state = (enum dfs_node_state)NAME_INDEX(node_state_names, col_text(cat, id, 3));
    n->usage.capacity_bytes = (uint64_t)col_i64(cat, id, 4);
    n->usage.used_bytes = (uint64_t)col_i64(cat, id, 5);
    n->usage.free_bytes = (uint64_t)col_i64(cat, id, 6);
    n->usage.fragment_count = (uint64_t)col_i64(cat, id, 7);
    n->last_heartbeat_ms = col_i64(cat, id, 8);
    n->registered_ms = col_i64(cat, id, 9);
}

/* Fill *f from a FILE_COLS row of statement `id` (no layout). DFS_ENOMEM only. */
static int read_file(dfs_catalog *cat, enum stmt id, struct dfs_file_rec *f, char **errmsg)
{
    memset(f, 0, sizeof *f);
    col_copy(cat, id, 0, f->file_id, sizeof f->file_id);
    const char *path = col_text(cat, id, 1);
    f->path = path == NULL ? NULL : strdup(path);
    if (f->path == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    f->size = (uint64_t)col_i64(cat, id, 2);
    const void *sha = sqlite3_column_blob(cat->st[id], 3);
    if (sha != NULL && sqlite3_column_bytes(cat->st[id], 3) == DFS_SHA256_LEN)
        memcpy(f->sha256, sha, DFS_SHA256_LEN);
    f->redundancy.scheme = (enum dfs_scheme)NAME_INDEX(scheme_names, col_text(cat, id, 4));
    f->redundancy.replicas = (uint32_t)col_i64(cat, id, 5);
    f->redundancy.fragments = (uint32_t)col_i64(cat, id, 6);
    f->redundancy.data = (uint32_t)col_i64(cat, id, 7);
    f->redundancy.parity = (uint32_t)col_i64(cat, id, 8);
    f->policy = policy_from_name(col_text(cat, id, 9));
    f->state = (enum dfs_file_state)NAME_INDEX(file_state_names, col_text(cat, id, 10));
    f->overwrite = col_i64(cat, id, 11) != 0;
    f->fragment_size = (uint64_t)col_i64(cat, id, 12);
    f->cell_size = (uint32_t)col_i64(cat, id, 13);
    f->created_ms = col_i64(cat, id, 14);
    f->committed_ms = col_i64(cat, id, 15); /* NULL reads as 0 */
    f->expires_ms = col_i64(cat, id, 16);
    return DFS_OK;
}

/*
 * Append one zeroed element to the array whose pointer is at `arrp` (any `T **`), holding *n
 * elements of `size` bytes; returns the new slot, or NULL with the array unchanged. The pointer is
 * read and written with memcpy, so T ** need not alias void **.
 */
static void *grow(void *arrp, size_t *n, size_t size)
{
    void *arr;
    memcpy(&arr, arrp, sizeof arr);
    void *p = realloc(arr, (*n + 1) * size);
    if (p == NULL)
        return NULL;
    memcpy(arrp, &p, sizeof p);
    void *slot = (char *)p + *n * size;
    memset(slot, 0, size);
    (*n)++;
    return slot;
}

/* Load the fragments and replicas of f (and, when pending, the failed nodes of each fragment). */
static int read_layout(dfs_catalog *cat, struct dfs_file_rec *f, char **errmsg)
{
    int rc = query(cat, S_LAYOUT, errmsg, "t", f->file_id);
    while (rc == 1) {
        int64_t idx = col_i64(cat, S_LAYOUT, 0);
        struct dfs_fragment_rec *fr = f->nfragments > 0 ? &f->fragments[f->nfragments - 1] : NULL;
        if (fr == NULL || fr->index != (uint32_t)idx) {
            if (idx != (int64_t)f->nfragments) {
                release(cat->st[S_LAYOUT]);
                return dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: file %s lacks fragment %zu",
                                  f->file_id, f->nfragments);
            }
            fr = grow(&f->fragments, &f->nfragments, sizeof *fr);
            if (fr == NULL)
                break;
            fr->index = (uint32_t)idx;
            col_copy(cat, S_LAYOUT, 1, fr->fragment_id, sizeof fr->fragment_id);
            fr->size = (uint64_t)col_i64(cat, S_LAYOUT, 2);
            fr->checksum = (uint32_t)col_i64(cat, S_LAYOUT, 3);
        }
        if (sqlite3_column_type(cat->st[S_LAYOUT], 4) != SQLITE_NULL) {
            struct dfs_replica_rec *r = grow(&fr->replicas, &fr->nreplicas, sizeof *r);
            if (r == NULL)
                break;
            col_copy(cat, S_LAYOUT, 4, r->node_id, sizeof r->node_id);
            col_copy(cat, S_LAYOUT, 5, r->address, sizeof r->address);
            r->node_state =
                (enum dfs_node_state)NAME_INDEX(node_state_names, col_text(cat, S_LAYOUT, 6));
        }
        rc = next_row(cat, S_LAYOUT, errmsg);
    }
    if (rc == 1) { /* broke out: allocation failed */
        release(cat->st[S_LAYOUT]);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    if (rc < 0)
        return rc;
    if (f->state != DFS_FILE_PENDING)
        return DFS_OK;
    for (size_t i = 0; i < f->nfragments; i++) {
        struct dfs_fragment_rec *fr = &f->fragments[i];
        rc = query(cat, S_DELETIONS_OF_FRAGMENT, errmsg, "t", fr->fragment_id);
        while (rc == 1) {
            char(*slot)[DFS_ID_HEX + 1] =
                grow(&fr->failed_node_ids, &fr->nfailed, sizeof fr->failed_node_ids[0]);
            if (slot == NULL) {
                release(cat->st[S_DELETIONS_OF_FRAGMENT]);
                return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            }
            col_copy(cat, S_DELETIONS_OF_FRAGMENT, 0, *slot, sizeof *slot);
            rc = next_row(cat, S_DELETIONS_OF_FRAGMENT, errmsg);
        }
        if (rc < 0)
            return rc;
    }
    return DFS_OK;
}

/*
 * Find a file by statement S_FILE_GET_ID (key = id) or S_FILE_GET_PATH (key = committed path).
 * *out is a new record, with its layout when asked, or NULL when there is no such file.
 */
static int find_file(dfs_catalog *cat, enum stmt id, const char *key, bool layout,
                     struct dfs_file_rec **out, char **errmsg)
{
    *out = NULL;
    int rc = query(cat, id, errmsg, "t", key);
    if (rc <= 0)
        return rc;
    struct dfs_file_rec *f = calloc(1, sizeof *f);
    if (f == NULL) {
        release(cat->st[id]);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    rc = read_file(cat, id, f, errmsg);
    release(cat->st[id]);
    if (rc == DFS_OK && layout)
        rc = read_layout(cat, f, errmsg);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        return rc;
    }
    *out = f;
    return DFS_OK;
}

/* ---- Open and close -------------------------------------------------------------------------- */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run SQL text that is not a prepared statement (pragmas, migrations). */
static int exec_sql(dfs_catalog *cat, const char *sql, const char *what, char **errmsg)
{
    int rc = sqlite3_exec(cat->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(cat, rc, what, errmsg);
    return DFS_OK;
}

/* One integer or text result of a single-row pragma or query, read with an ad-hoc statement. */
static int pragma_value(dfs_catalog *cat, const char *sql, int64_t *num, char *text, size_t cap,
                        char **errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(cat->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int ret = DFS_OK;
    if (rc == SQLITE_ROW) {
        if (num != NULL)
            *num = sqlite3_column_int64(st, 0);
        if (text != NULL) {
            const char *s = (const char *)sqlite3_column_text(st, 0);
            snprintf(text, cap, "%s", s == NULL ? "" : s);
        }
    } else if (rc == SQLITE_DONE) {
        if (num != NULL)
            *num = 0;
        if (text != NULL && cap > 0)
            text[0] = '\0';
    } else {
        ret = sql_fail(cat, rc, sql, errmsg);
    }
    sqlite3_finalize(st);
    return ret;
}

/*
 * Refuse a file that is some other program's SQLite database: it must carry our application_id, or
 * be empty. *have_version tells whether the schema_version table exists.
 */
static int check_identity(dfs_catalog *cat, int64_t *have_version, char **errmsg)
{
    int64_t app = 0, tables = 0;
    int rc = pragma_value(cat, "PRAGMA application_id", &app, NULL, 0, errmsg);
    if (rc == DFS_OK)
        rc = pragma_value(cat, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'", &tables,
                          NULL, 0, errmsg);
    if (rc == DFS_OK)
        rc = pragma_value(cat,
                          "SELECT count(*) FROM sqlite_schema WHERE type = 'table' "
                          "AND name = 'schema_version'",
                          have_version, NULL, 0, errmsg);
    if (rc == DFS_OK && ((app != 0 && app != APPLICATION_ID) || (app == 0 && tables > 0)))
        rc = dfs_seterr(errmsg, DFS_EINVAL,
                        "%s is not a dfs catalog (application_id 0x%08" PRIx64 ", %" PRId64
                        " tables)",
                        cat->path, (uint64_t)app, tables);
    return rc;
}

/* Apply the missing migrations in one transaction (checking the file's identity again inside). */
static int migrate(dfs_catalog *cat, char **errmsg)
{
    int rc = exec_sql(cat, "BEGIN IMMEDIATE", "begin migration", errmsg);
    if (rc != DFS_OK)
        return rc;
    int64_t have_version = 0, version = 0;
    rc = check_identity(cat, &have_version, errmsg);
    if (rc == DFS_OK && have_version)
        rc = pragma_value(cat, "SELECT coalesce(max(version), 0) FROM schema_version", &version,
                          NULL, 0, errmsg);
    if (rc == DFS_OK && version > DFS_CATALOG_SCHEMA_VERSION)
        rc = dfs_seterr(errmsg, DFS_EPRECOND,
                        "catalog %s has schema version %" PRId64
                        ", newer than this program's %d: upgrade dfs-metadata",
                        cat->path, version, DFS_CATALOG_SCHEMA_VERSION);
    if (rc == DFS_OK && !have_version) {
        char sql[192];
        snprintf(sql, sizeof sql,
                 "CREATE TABLE schema_version ("
                 "  version    INTEGER NOT NULL PRIMARY KEY,"
                 "  applied_ms INTEGER NOT NULL"
                 "); PRAGMA application_id = %d;",
                 APPLICATION_ID);
        rc = exec_sql(cat, sql, "create schema_version", errmsg);
    }
    for (int64_t v = version + 1; rc == DFS_OK && v <= DFS_CATALOG_SCHEMA_VERSION; v++) {
        rc = exec_sql(cat, migrations[v - 1], "migrate", errmsg);
        if (rc != DFS_OK) {
            dfs_prefixerr(errmsg, rc, "migration %" PRId64, v);
            break;
        }
        char sql[128];
        snprintf(sql, sizeof sql,
                 "INSERT INTO schema_version (version, applied_ms) VALUES (%" PRId64 ", %" PRId64
                 ")",
                 v, wall_ms());
        rc = exec_sql(cat, sql, "record migration", errmsg);
        if (rc == DFS_OK)
            dfs_log(DFS_LOG_INFO, "catalog migrated path=%s version=%" PRId64, cat->path, v);
    }
    if (rc == DFS_OK)
        rc = exec_sql(cat, "COMMIT", "commit migration", errmsg);
    if (rc != DFS_OK && !sqlite3_get_autocommit(cat->db))
        sqlite3_exec(cat->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int dfs_catalog_open(const char *path, dfs_catalog **out, char **errmsg)
{
    if (path == NULL || path[0] == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "no catalog path given");
    dfs_catalog *cat = calloc(1, sizeof *cat);
    if (cat == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    cat->path = strdup(path);
    if (cat->path == NULL || pthread_mutex_init(&cat->mu, NULL) != 0) {
        free(cat->path);
        free(cat);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    /* NOMUTEX: cat->mu already serialises every use of the connection. */
    int rc = DFS_OK;
    int src = sqlite3_open_v2(
        path, &cat->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        rc = sql_fail(cat, src, "open", errmsg);
        goto fail;
    }
    sqlite3_extended_result_codes(cat->db, 1);
    sqlite3_busy_timeout(cat->db, BUSY_TIMEOUT_MS);

    int64_t have_version = 0;
    rc = check_identity(cat, &have_version, errmsg); /* before WAL changes the file */
    if (rc != DFS_OK)
        goto fail;
    char mode[16];
    rc = pragma_value(cat, "PRAGMA journal_mode = WAL", NULL, mode, sizeof mode, errmsg);
    if (rc != DFS_OK)
        goto fail;
    if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0) {
        rc = dfs_seterr(errmsg, DFS_EIO, "catalog %s: cannot use WAL (journal mode is '%s')", path,
                        mode);
        goto fail;
    }
    rc = exec_sql(cat, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;", "settings", errmsg);
    if (rc != DFS_OK)
        goto fail;
    int64_t fk = 0;
    rc = pragma_value(cat, "PRAGMA foreign_keys", &fk, NULL, 0, errmsg);
    if (rc == DFS_OK && fk != 1)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: SQLite without foreign key support");
    if (rc != DFS_OK)
        goto fail;

    rc = migrate(cat, errmsg);
    if (rc != DFS_OK)
        goto fail;

    for (int i = 0; i < S_COUNT; i++) {
        src = sqlite3_prepare_v3(cat->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &cat->st[i],
                                 NULL);
        if (src != SQLITE_OK) {
            rc = sql_fail(cat, src, stmt_sql[i], errmsg);
            goto fail;
        }
    }
    *out = cat;
    return DFS_OK;

fail:
    dfs_catalog_close(cat);
    return rc;
}

void dfs_catalog_close(dfs_catalog *cat)
{
    if (cat == NULL)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(cat->st[i]);
    if (cat->db != NULL && sqlite3_close(cat->db) != SQLITE_OK)
        dfs_log(DFS_LOG_ERROR, "catalog close failed path=%s err=\"%s\"", cat->path,
                sqlite3_errmsg(cat->db));
    pthread_mutex_destroy(&cat->mu);
    free(cat->path);
    free(cat);
}

/* ---- Nodes ----------------------------------------------------------------------------------- */

/* Look up a node; returns 1 (found, *n filled), 0 (absent) or a DFS code. */
static int get_node(dfs_catalog *cat, const char *id, struct dfs_node_rec *n, char **errmsg)
{
    int rc = query(cat, S_NODE_GET, errmsg, "t", id);
    if (rc == 1) {
        read_node(cat, S_NODE_GET, n);
        release(cat->st[S_NODE_GET]);
    }
    return rc;
}

int dfs_catalog_node_register(dfs_catalog *cat, const char *node_id, const char *address,
                              const char *zone, const struct dfs_node_usage *usage, int64_t now_ms,
                              char **errmsg)
{
    if (zone == NULL)
        zone = "";
    int rc = check_id(node_id, "node", errmsg);
    if (rc == DFS_OK)
        rc = check_text(address, 1, DFS_NODE_ADDRESS_MAX, "node address", errmsg);
    if (rc == DFS_OK)
        rc = check_text(zone, 0, DFS_NODE_ZONE_MAX, "zone", errmsg);
    if (rc == DFS_OK)
        rc = check_usage(usage, errmsg);
    if (rc != DFS_OK)
        return rc;
    lock(cat);
    struct dfs_node_rec old = {0};
    int found = 0;
    rc = tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        found = get_node(cat, node_id, &old, errmsg);
        rc = found < 0 ? found : DFS_OK;
        if (rc == DFS_OK)
            rc = exec(cat, S_NODE_UPSERT, NULL, errmsg, "tttiiiii", node_id, address, zone,
                      (int64_t)usage->capacity_bytes, (int64_t)usage->used_bytes,
                      (int64_t)usage->free_bytes, (int64_t)usage->fragment_count, now_ms);
        rc = tx_end(cat, rc, errmsg);
    }
    unlock(cat);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO, "node %s id=%s address=%s zone=%s previous_state=%s",
                found == 1 ? "registered again" : "registered", node_id, address, zone,
                found == 1 ? dfs_catalog_node_state_name(old.state) : "none");
    return rc;
}

int dfs_catalog_node_heartbeat(dfs_catalog *cat, const char *node_id,
                               const struct dfs_node_usage *usage, int64_t now_ms, bool *known,
                               char **errmsg)
{
    int rc = check_id(node_id, "node", errmsg);
    if (rc == DFS_OK)
        rc = check_usage(usage, errmsg);
    if (rc != DFS_OK)
        return rc;
    lock(cat);
    struct dfs_node_rec old = {0};
    int found = 0;
    rc = tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        found = get_node(cat, node_id, &old, errmsg);
        rc = found < 0 ? found : DFS_OK;
        if (found == 1)
            rc = exec(cat, S_NODE_HEARTBEAT, NULL, errmsg, "tiiiii", node_id,
                      (int64_t)usage->capacity_bytes, (int64_t)usage->used_bytes,
                      (int64_t)usage->free_bytes, (int64_t)usage->fragment_count, now_ms);
        rc = tx_end(cat, rc, errmsg);
    }
    unlock(cat);
    if (rc != DFS_OK)
        return rc;
    if (found == 1 && (old.state == DFS_NODE_SUSPECT || old.state == DFS_NODE_DEAD))
        dfs_log(DFS_LOG_WARN,
                "node alive again id=%s address=%s previous_state=%s silent_ms=%" PRId64, node_id,
                old.address, dfs_catalog_node_state_name(old.state),
                now_ms - old.last_heartbeat_ms);
    *known = found == 1;
    return DFS_OK;
}

int dfs_catalog_node_get(dfs_catalog *cat, const char *node_id, struct dfs_node_rec *out,
                         char **errmsg)
{
    int rc = check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_node_rec n;
    lock(cat);
    int found = get_node(cat, node_id, &n, errmsg);
    unlock(cat);
    if (found < 0)
        return found;
    if (found == 0)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no storage node %s", node_id);
    *out = n;
    return DFS_OK;
}

int dfs_catalog_node_set_state(dfs_catalog *cat, const char *node_id, enum dfs_node_state state,
                               char **errmsg)
{
    int rc = check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    if (state < DFS_NODE_ALIVE || state > DFS_NODE_DECOMMISSIONED)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad node state %d", (int)state);
    int changes = 0;
    lock(cat);
    rc = tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        rc = exec(cat, S_NODE_SET_STATE, &changes, errmsg, "tt", node_id,
                  dfs_catalog_node_state_name(state));
        if (rc == DFS_OK && changes == 0)
            rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "no storage node %s", node_id);
        rc = tx_end(cat, rc, errmsg);
    }
    unlock(cat);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO, "node state set id=%s state=%s", node_id,
                dfs_catalog_node_state_name(state));
    return rc;
}

int dfs_catalog_nodes_list(dfs_catalog *cat, struct dfs_node_rec **out, size_t *n, char **errmsg)
{
    struct dfs_node_rec *v = NULL;
    size_t count = 0;
    lock(cat);
    int rc = query(cat, S_NODES_LIST, errmsg, "");
    while (rc == 1) {
        struct dfs_node_rec *slot = grow(&v, &count, sizeof *slot);
        if (slot == NULL) {
            release(cat->st[S_NODES_LIST]);
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            break;
        }
        read_node(cat, S_NODES_LIST, slot);
        rc = next_row(cat, S_NODES_LIST, errmsg);
    }
    unlock(cat);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = count;
    return DFS_OK;
}

int dfs_catalog_nodes_sweep(dfs_catalog *cat, int64_t now_ms, int64_t suspect_after_ms,
                            int64_t dead_after_ms, size_t *nsuspect, size_t *ndead, char **errmsg)
{
    if (suspect_after_ms <= 0 || dead_after_ms < suspect_after_ms)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "sweep needs 0 < suspect_after_ms (%" PRId64
                          ") <= dead_after_ms (%" PRId64 ")",
                          suspect_after_ms, dead_after_ms);
    struct late {
        char id[DFS_ID_HEX + 1];
        char address[DFS_NODE_ADDRESS_MAX + 1];
        enum dfs_node_state from, to;
        int64_t silent_ms;
    } *late = NULL;
    size_t nlate = 0;
    int64_t dead_cutoff = sub_sat(now_ms, dead_after_ms);
    lock(cat);
    int rc = tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int row =
            query(cat, S_NODES_LATE, errmsg, "ii", sub_sat(now_ms, suspect_after_ms), dead_cutoff);
        while (row == 1) {
            struct late *l = grow(&late, &nlate, sizeof *l);
            if (l == NULL) {
                release(cat->st[S_NODES_LATE]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            col_copy(cat, S_NODES_LATE, 0, l->id, sizeof l->id);
            col_copy(cat, S_NODES_LATE, 1, l->address, sizeof l->address);
            l->from =
                (enum dfs_node_state)NAME_INDEX(node_state_names, col_text(cat, S_NODES_LATE, 2));
            int64_t hb = col_i64(cat, S_NODES_LATE, 3);
            l->silent_ms = now_ms - hb;
            l->to = hb < dead_cutoff ? DFS_NODE_DEAD : DFS_NODE_SUSPECT;
            row = next_row(cat, S_NODES_LATE, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        for (size_t i = 0; rc == DFS_OK && i < nlate; i++)
            rc = exec(cat, S_NODE_SET_STATE, NULL, errmsg, "tt", late[i].id,
                      dfs_catalog_node_state_name(late[i].to));
        rc = tx_end(cat, rc, errmsg);
    }
    unlock(cat);
    size_t s = 0, d = 0;
    for (size_t i = 0; rc == DFS_OK && i < nlate; i++) {
        if (late[i].to == DFS_NODE_DEAD)
            d++;
        else
            s++;
        dfs_log(DFS_LOG_WARN, "node %s id=%s address=%s previous_state=%s silent_ms=%" PRId64,
                late[i].to == DFS_NODE_DEAD ? "dead" : "suspect", late[i].id, late[i].address,
                dfs_catalog_node_state_name(late[i].from), late[i].silent_ms);
    }
    free(late);
    if (rc != DFS_OK)
        return rc;
    if (nsuspect != NULL)
        *nsuspect = s;
    if (ndead != NULL)
        *ndead = d;
    return DFS_OK;
}

/* ---- Files ----------------------------------------------------------------------------------- */

/* A node that is to receive a new copy: registered and alive. */
static int check_target(dfs_catalog *cat, const char *node_id, char **errmsg)
{
    struct dfs_node_rec n;
    int found = get_node(cat, node_id, &n, errmsg);
    if (found < 0)
        return found;
    if (found == 0)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "storage node %s is not registered", node_id);
    if (n.state != DFS_NODE_ALIVE)
        return dfs_seterr(errmsg, DFS_EABORTED,
                          "storage node %s (%s) is %s, not alive: choose another node", node_id,
                          n.address, dfs_catalog_node_state_name(n.state));
    return DFS_OK;
}

static int validate_create(const struct dfs_create_req *req, int64_t now_ms, char **errmsg)
{
    if (req == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "no request");
    int rc = check_path(req->path, errmsg);
    if (rc == DFS_OK)
        rc = check_u64(req->size, "file size", errmsg);
    if (rc == DFS_OK)
        rc = check_u64(req->fragment_size, "fragment size", errmsg);
    if (rc == DFS_OK)
        rc = dfs_catalog_redundancy_check(&req->redundancy, errmsg);
    if (rc != DFS_OK)
        return rc;
    const struct dfs_redundancy *r = &req->redundancy;
    if (!policy_resolved(req->policy))
        return dfs_seterr(errmsg, DFS_EINVAL, "placement policy not resolved (%d)",
                          (int)req->policy);
    if (r->scheme == DFS_SCHEME_ERASURE && req->cell_size == 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "erasure code needs a cell size");
    if (r->scheme == DFS_SCHEME_REPLICATION && req->cell_size != 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "replication takes no cell size");
    if (req->expires_ms <= now_ms)
        return dfs_seterr(errmsg, DFS_EINVAL, "expiry %" PRId64 " is not after now (%" PRId64 ")",
                          req->expires_ms, now_ms);
    uint32_t nfrag = dfs_catalog_redundancy_fragments(r), copies = dfs_catalog_redundancy_copies(r);
    if (req->nfragments != nfrag || req->fragments == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "plan has %zu fragments, the redundancy needs %" PRIu32,
                          req->fragments == NULL ? 0 : req->nfragments, nfrag);
    bool seen[DFS_FRAGMENTS_MAX] = {false};
    uint64_t total = 0;
    for (size_t i = 0; i < req->nfragments; i++) {
        const struct dfs_plan_fragment *pf = &req->fragments[i];
        if (pf->index >= nfrag || seen[pf->index])
            return dfs_seterr(errmsg, DFS_EINVAL, "plan fragment index %" PRIu32 " is %s",
                              pf->index, pf->index >= nfrag ? "out of range" : "repeated");
        seen[pf->index] = true;
        rc = check_u64(pf->size, "fragment size", errmsg);
        if (rc != DFS_OK)
            return rc;
        total += pf->size; /* each <= INT64_MAX and at most 256 of them: no overflow */
        if (pf->nnodes != copies || pf->node_ids == NULL)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "plan fragment %" PRIu32 " has %zu nodes, want %" PRIu32, pf->index,
                              pf->node_ids == NULL ? 0 : pf->nnodes, copies);
        for (size_t j = 0; j < pf->nnodes; j++) {
            rc = check_id(pf->node_ids[j], "node", errmsg);
            if (rc != DFS_OK)
                return rc;
            for (size_t k = 0; k < j; k++) {
                if (strcmp(pf->node_ids[j], pf->node_ids[k]) == 0)
                    return dfs_seterr(errmsg, DFS_EINVAL,
                                      "plan fragment %" PRIu32 " names node %s twice", pf->index,
                                      pf->node_ids[j]);
            }
            /* Erasure code: every fragment of the stripe on its own node. */
            for (size_t k = 0; r->scheme == DFS_SCHEME_ERASURE && k < i; k++) {
                if (strcmp(pf->node_ids[j], req->fragments[k].node_ids[0]) == 0)
                    return dfs_seterr(errmsg, DFS_EINVAL,
                                      "erasure-coded fragments %" PRIu32 " and %" PRIu32
                                      " are both planned on node %s",
                                      req->fragments[k].index, pf->index, pf->node_ids[j]);
            }
        }
    }
    if (r->scheme == DFS_SCHEME_REPLICATION && total != req->size)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "plan fragments hold %" PRIu64 " bytes, the file has %" PRIu64, total,
                          req->size);
    return DFS_OK;
}

static int create_locked(dfs_catalog *cat, const struct dfs_create_req *req, int64_t now_ms,
                         struct dfs_file_rec **out, char **errmsg)
{
    if (!req->overwrite) {
        int found = query(cat, S_FILE_GET_PATH, errmsg, "t", req->path);
        if (found == 1)
            release(cat->st[S_FILE_GET_PATH]);
        if (found < 0)
            return found;
        if (found == 1)
            return dfs_seterr(errmsg, DFS_EEXIST, "%s already exists (use --force to replace it)",
                              req->path);
    }
    int rc = DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < req->nfragments; i++) {
        for (size_t j = 0; rc == DFS_OK && j < req->fragments[i].nnodes; j++)
            rc = check_target(cat, req->fragments[i].node_ids[j], errmsg);
    }
    if (rc != DFS_OK)
        return rc;

    char file_id[DFS_ID_HEX + 1];
    if (dfs_id_random(file_id) != DFS_OK)
        return dfs_seterr(errmsg, DFS_EIO, "cannot draw a random file id");
    const struct dfs_redundancy *r = &req->redundancy;
    rc = exec(cat, S_FILE_INSERT, NULL, errmsg, "ttitiiiitiiiii", file_id, req->path,
              (int64_t)req->size, scheme_names[r->scheme], (int64_t)r->replicas,
              (int64_t)r->fragments, (int64_t)r->data, (int64_t)r->parity,
              dfs_placement_policy_name(req->policy), (int64_t)req->overwrite,
              (int64_t)req->fragment_size, (int64_t)req->cell_size, now_ms, req->expires_ms);
    for (size_t i = 0; rc == DFS_OK && i < req->nfragments; i++) {
        const struct dfs_plan_fragment *pf = &req->fragments[i];
        char frag_id[DFS_FRAGMENT_ID_HEX + 1];
        dfs_fragment_id(file_id, pf->index, frag_id);
        rc = exec(cat, S_FRAGMENT_INSERT, NULL, errmsg, "ttii", frag_id, file_id,
                  (int64_t)pf->index, (int64_t)pf->size);
        for (size_t j = 0; rc == DFS_OK && j < pf->nnodes; j++)
            rc = exec(cat, S_REPLICA_INSERT, NULL, errmsg, "tti", frag_id, pf->node_ids[j],
                      (int64_t)j);
    }
    if (rc == DFS_OK)
        rc = find_file(cat, S_FILE_GET_ID, file_id, true, out, errmsg);
    if (rc == DFS_OK && *out == NULL)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: file %s vanished", file_id);
    return rc;
}

int dfs_catalog_file_create(dfs_catalog *cat, const struct dfs_create_req *req, int64_t now_ms,
                            struct dfs_file_rec **out, char **errmsg)
{
    int rc = validate_create(req, now_ms, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_file_rec *f = NULL;
    lock(cat);
    rc = tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = tx_end(cat, create_locked(cat, req, now_ms, &f, errmsg), errmsg);
    unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        return rc;
    }
    dfs_log(DFS_LOG_DEBUG, "file created id=%s path=%s size=%" PRIu64, f->file_id, f->path,
            f->size);
    *out = f;
    return DFS_OK;
}

/* A pending file by id, with layout, that has not expired: else ENOTFOUND or EPRECOND. */
static int find_pending(dfs_catalog *cat, const char *file_id, int64_t now_ms,
                        struct dfs_file_rec **out, char **errmsg)
{
    int rc = find_file(cat, S_FILE_GET_ID, file_id, true, out, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_file_rec *f = *out;
    if (f == NULL)
        return dfs_seterr(errmsg, DFS_ENOTFOUND,
                          "no pending file %s (never created, aborted, or expired)", file_id);
    if (f->state != DFS_FILE_PENDING)
        rc =
            dfs_seterr(errmsg, DFS_EPRECOND, "file %s (%s) is already committed", file_id, f->path);
    else if (f->expires_ms <= now_ms)
        rc = dfs_seterr(errmsg, DFS_EPRECOND,
                        "pending file %s (%s) expired %" PRId64 " ms ago; put it again", file_id,
                        f->path, now_ms - f->expires_ms);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        *out = NULL;
    }
    return rc;
}

static bool fragment_has_node(const struct dfs_fragment_rec *fr, const char *node_id)
{
    for (size_t i = 0; i < fr->nreplicas; i++) {
        if (strcmp(fr->replicas[i].node_id, node_id) == 0)
            return true;
    }
    return false;
}

static int replace_locked(dfs_catalog *cat, const char *file_id, uint32_t index, const char *failed,
                          const char *fresh, int64_t now_ms, struct dfs_replica_rec *out,
                          char **errmsg)
{
    struct dfs_file_rec *f = NULL;
    int rc = find_pending(cat, file_id, now_ms, &f, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (index >= f->nfragments) {
        rc = dfs_seterr(errmsg, DFS_EINVAL,
                        "fragment index %" PRIu32 " is out of range (file %s has %zu)", index,
                        file_id, f->nfragments);
        goto done;
    }
    const struct dfs_fragment_rec *fr = &f->fragments[index];
    if (!fragment_has_node(fr, failed)) {
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND,
                        "storage node %s is not a target of fragment %" PRIu32 " of file %s",
                        failed, index, file_id);
        goto done;
    }
    rc = check_target(cat, fresh, errmsg);
    if (rc != DFS_OK)
        goto done;
    bool taken = fragment_has_node(fr, fresh);
    for (size_t i = 0; f->redundancy.scheme == DFS_SCHEME_ERASURE && i < f->nfragments; i++)
        taken = taken || fragment_has_node(&f->fragments[i], fresh);
    if (taken) {
        rc = dfs_seterr(errmsg, DFS_EABORTED,
                        "storage node %s is already a target of %s %s: choose another node", fresh,
                        f->redundancy.scheme == DFS_SCHEME_ERASURE ? "file" : "fragment",
                        f->redundancy.scheme == DFS_SCHEME_ERASURE ? file_id : fr->fragment_id);
        goto done;
    }
    for (size_t i = 0; i < fr->nfailed; i++) {
        if (strcmp(fr->failed_node_ids[i], fresh) == 0) {
            rc = dfs_seterr(errmsg, DFS_EABORTED,
                            "storage node %s failed for fragment %s and its copy is not removed "
                            "yet: choose another node",
                            fresh, fr->fragment_id);
            goto done;
        }
    }
    rc = exec(cat, S_REPLICA_MOVE, NULL, errmsg, "ttt", fr->fragment_id, failed, fresh);
    if (rc == DFS_OK)
        rc = exec(cat, S_DELETION_INSERT, NULL, errmsg, "tti", fr->fragment_id, failed, now_ms);
    struct dfs_node_rec n;
    int found = rc == DFS_OK ? get_node(cat, fresh, &n, errmsg) : rc;
    if (found == 1) {
        memset(out, 0, sizeof *out);
        memcpy(out->node_id, n.id, sizeof out->node_id);
        memcpy(out->address, n.address, sizeof out->address);
        out->node_state = n.state;
    } else {
        rc = found < 0 ? found
                       : dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: node %s vanished", fresh);
    }
done:
    dfs_catalog_file_rec_free(f);
    return rc;
}

int dfs_catalog_file_replace_target(dfs_catalog *cat, const char *file_id, uint32_t index,
                                    const char *failed_node_id, const char *new_node_id,
                                    int64_t now_ms, struct dfs_replica_rec *out, char **errmsg)
{
    int rc = check_id(file_id, "file", errmsg);
    if (rc == DFS_OK)
        rc = check_id(failed_node_id, "node", errmsg);
    if (rc == DFS_OK)
        rc = check_id(new_node_id, "node", errmsg);
    if (rc == DFS_OK && strcmp(failed_node_id, new_node_id) == 0)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "the replacement is the failed node %s itself",
                        new_node_id);
    if (rc != DFS_OK)
        return rc;
    struct dfs_replica_rec r;
    lock(cat);
    rc = tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = tx_end(
            cat,
            replace_locked(cat, file_id, index, failed_node_id, new_node_id, now_ms, &r, errmsg),
            errmsg);
    unlock(cat);
    if (rc != DFS_OK)
        return rc;
    dfs_log(DFS_LOG_INFO, "target replaced file=%s fragment=%" PRIu32 " failed=%s new=%s", file_id,
            index, failed_node_id, new_node_id);
    *out = r;
    return DFS_OK;
}

/* Check a commit request against the pending file's plan, without touching the database. */
static int validate_commit(const struct dfs_file_rec *f, const struct dfs_commit_fragment *frags,
                           size_t nfrags, char **errmsg)
{
    if (nfrags != f->nfragments || (frags == NULL && nfrags > 0))
        return dfs_seterr(errmsg, DFS_EINVAL, "commit lists %zu fragments, file %s has %zu",
                          frags == NULL ? 0 : nfrags, f->file_id, f->nfragments);
    bool seen[DFS_FRAGMENTS_MAX] = {false};
    for (size_t i = 0; i < nfrags; i++) {
        const struct dfs_commit_fragment *cf = &frags[i];
        if (cf->index >= f->nfragments || seen[cf->index])
            return dfs_seterr(errmsg, DFS_EINVAL, "commit fragment index %" PRIu32 " is %s",
                              cf->index, cf->index >= f->nfragments ? "out of range" : "repeated");
        seen[cf->index] = true;
        const struct dfs_fragment_rec *fr = &f->fragments[cf->index];
        if (cf->size != fr->size)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "fragment %" PRIu32 " has %" PRIu64 " bytes, the plan says %" PRIu64,
                              cf->index, cf->size, fr->size);
        if (cf->nnodes == 0 || cf->node_ids == NULL)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "fragment %" PRIu32 " was acknowledged by no storage node",
                              cf->index);
        for (size_t j = 0; j < cf->nnodes; j++) {
            const char *node = cf->node_ids[j];
            int rc = check_id(node, "node", errmsg);
            if (rc != DFS_OK)
                return rc;
            if (!fragment_has_node(fr, node))
                return dfs_seterr(errmsg, DFS_EINVAL,
                                  "storage node %s acknowledged fragment %" PRIu32
                                  " but is not one of its targets",
                                  node, cf->index);
            for (size_t k = 0; k < j; k++) {
                if (strcmp(node, cf->node_ids[k]) == 0)
                    return dfs_seterr(errmsg, DFS_EINVAL,
                                      "fragment %" PRIu32 " lists node %s twice", cf->index, node);
            }
        }
    }
    return DFS_OK;
}

/* Queue every replica of a file for deletion and remove its rows. */
static int remove_file(dfs_catalog *cat, const char *file_id, int64_t now_ms, char **errmsg)
{
    int rc = exec(cat, S_DELETIONS_QUEUE_FILE, NULL, errmsg, "ti", file_id, now_ms);
    if (rc == DFS_OK)
        rc = exec(cat, S_FILE_DELETE, NULL, errmsg, "t", file_id);
    return rc;
}

static int commit_locked(dfs_catalog *cat, const char *file_id, const uint8_t *sha256,
                         const struct dfs_commit_fragment *frags, size_t nfrags, int64_t now_ms,
                         struct dfs_file_rec **out, char **replaced, char **errmsg)
{
    struct dfs_file_rec *f = NULL, *old = NULL;
    int rc = find_pending(cat, file_id, now_ms, &f, errmsg);
    if (rc != DFS_OK)
        return rc;
    rc = validate_commit(f, frags, nfrags, errmsg);
    if (rc == DFS_OK)
        rc = find_file(cat, S_FILE_GET_PATH, f->path, false, &old, errmsg);
    if (rc == DFS_OK && old != NULL) {
        if (!f->overwrite) {
            rc = dfs_seterr(errmsg, DFS_EEXIST, "%s already exists (use --force to replace it)",
                            f->path);
        } else {
            rc = remove_file(cat, old->file_id, now_ms, errmsg);
            if (rc == DFS_OK) {
                *replaced = strdup(old->file_id);
                if (*replaced == NULL)
                    rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            }
        }
    }
    for (size_t i = 0; rc == DFS_OK && i < nfrags; i++) {
        const struct dfs_commit_fragment *cf = &frags[i];
        const char *frag_id = f->fragments[cf->index].fragment_id;
        rc = exec(cat, S_FRAGMENT_SET_CHECKSUM, NULL, errmsg, "ti", frag_id, (int64_t)cf->checksum);
        for (size_t j = 0; rc == DFS_OK && j < cf->nnodes; j++)
            rc = exec(cat, S_REPLICA_ACK, NULL, errmsg, "tt", frag_id, cf->node_ids[j]);
    }
    if (rc == DFS_OK)
        rc = exec(cat, S_DELETIONS_QUEUE_UNACKED, NULL, errmsg, "ti", file_id, now_ms);
    if (rc == DFS_OK)
        rc = exec(cat, S_REPLICAS_DROP_UNACKED, NULL, errmsg, "t", file_id);
    int changes = 0;
    if (rc == DFS_OK)
        rc = exec(cat, S_FILE_COMMIT, &changes, errmsg, "tbi", file_id, (const void *)sha256,
                  (size_t)DFS_SHA256_LEN, now_ms);
    if (rc == DFS_OK && changes != 1)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: file %s left the pending state", file_id);
    dfs_catalog_file_rec_free(f);
    dfs_catalog_file_rec_free(old);
    if (rc == DFS_OK)
        rc = find_file(cat, S_FILE_GET_ID, file_id, true, out, errmsg);
    return rc;
}

int dfs_catalog_file_commit(dfs_catalog *cat, const char *file_id,
                            const uint8_t sha256[DFS_SHA256_LEN],
                            const struct dfs_commit_fragment *fragments, size_t nfragments,
                            int64_t now_ms, struct dfs_file_rec **out, char **errmsg)
{
    int rc = check_id(file_id, "file", errmsg);
    if (rc != DFS_OK)
        return rc;
    if (sha256 == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "commit without a SHA-256");
    struct dfs_file_rec *f = NULL;
    char *replaced = NULL;
    lock(cat);
    rc = tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = tx_end(cat,
                    commit_locked(cat, file_id, sha256, fragments, nfragments, now_ms, &f,
                                  &replaced, errmsg),
                    errmsg);
    unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        free(replaced);
        return rc;
    }
    dfs_log(DFS_LOG_INFO, "file committed id=%s path=%s size=%" PRIu64 " replaced=%s", f->file_id,
            f->path, f->size, replaced == NULL ? "none" : replaced);
    free(replaced);
    *out = f;
    return DFS_OK;
}

/* Abort one pending file; returns DFS_ENOTFOUND (no message) when it is not pending. */
static int abort_locked(dfs_catalog *cat, const char *file_id, int64_t now_ms, char **errmsg)
{
    struct dfs_file_rec *f = NULL;
    int rc = find_file(cat, S_FILE_GET_ID, file_id, false, &f, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (f == NULL || f->state != DFS_FILE_PENDING)
        rc = DFS_ENOTFOUND;
    else
        rc = remove_file(cat, file_id, now_ms, errmsg);
    dfs_catalog_file_rec_free(f);
    return rc;
}

int dfs_catalog_file_abort(dfs_catalog *cat, const char *file_id, int64_t now_ms, char **errmsg)
{
    int rc = check_id(file_id, "file", errmsg);
    if (rc != DFS_OK)
        return rc;
    lock(cat);
    rc = tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = tx_end(cat, abort_locked(cat, file_id, now_ms, errmsg), errmsg);
    unlock(cat);
    if (rc == DFS_ENOTFOUND)
        return dfs_seterr(errmsg, rc, "no pending file %s (never created, committed, or gone)",
                          file_id);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO, "file aborted id=%s", file_id);
    return rc;
}

int dfs_catalog_files_expire(dfs_catalog *cat, int64_t now_ms, size_t *nexpired, char **errmsg)
{
    struct expired {
        char id[DFS_ID_HEX + 1];
        char *path;
    } *v = NULL;
    size_t n = 0;
    lock(cat);
    int rc = tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int row = query(cat, S_FILES_EXPIRED, errmsg, "i", now_ms);
        while (row == 1) {
            struct expired *e = grow(&v, &n, sizeof *e);
            const char *path = col_text(cat, S_FILES_EXPIRED, 1);
            if (e != NULL) {
                col_copy(cat, S_FILES_EXPIRED, 0, e->id, sizeof e->id);
                e->path = strdup(path == NULL ? "" : path);
            }
            if (e == NULL || e->path == NULL) {
                release(cat->st[S_FILES_EXPIRED]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            row = next_row(cat, S_FILES_EXPIRED, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        for (size_t i = 0; rc == DFS_OK && i < n; i++)
            rc = remove_file(cat, v[i].id, now_ms, errmsg);
        rc = tx_end(cat, rc, errmsg);
    }
    unlock(cat);
    for (size_t i = 0; i < n; i++) {
        if (rc == DFS_OK)
            dfs_log(DFS_LOG_INFO, "pending file expired id=%s path=%s", v[i].id, v[i].path);
        free(v[i].path);
    }
    free(v);
    if (rc == DFS_OK && nexpired != NULL)
        *nexpired = n;
    return rc;
}

int dfs_catalog_file_get(dfs_catalog *cat, const char *path, struct dfs_file_rec **out,
                         char **errmsg)
{
    int rc = check_path(path, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_file_rec *f = NULL;
    lock(cat);
    rc = tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = tx_end(cat, find_file(cat, S_FILE_GET_PATH, path, true, &f, errmsg), errmsg);
    unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        return rc;
    }
    if (f == NULL)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no file %s", path);
    *out = f;
    return DFS_OK;
}

int dfs_catalog_file_get_id(dfs_catalog *cat, const char *file_id, struct dfs_file_rec **out,
                            char **errmsg)
{
    int rc = check_id(file_id, "file", errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_file_rec *f = NULL;
    lock(cat);
    rc = tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = tx_end(cat, find_file(cat, S_FILE_GET_ID, file_id, true, &f, errmsg), errmsg);
    unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        return rc;
    }
    if (f == NULL)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no file with id %s", file_id);
    *out = f;
    return DFS_OK;
}

/*
 * The least string greater than every string that starts with `prefix`: drop trailing 0xff bytes
 * and increment the last remaining byte. Canonical prefixes start with '/', so it always exists.
 */
static char *prefix_end(const char *prefix)
{
    size_t n = strlen(prefix);
    while (n > 0 && (unsigned char)prefix[n - 1] == 0xff)
        n--;
    if (n == 0)
        return NULL;
    char *end = malloc(n + 1);
    if (end == NULL)
        return NULL;
    memcpy(end, prefix, n);
    end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
    end[n] = '\0';
    return end;
}

int dfs_catalog_files_list(dfs_catalog *cat, const char *prefix, const char *after, size_t limit,
                           struct dfs_file_rec **out, size_t *n, bool *more, char **errmsg)
{
    if (prefix == NULL || prefix[0] != '/')
        return dfs_seterr(errmsg, DFS_EINVAL, "listing prefix '%s' does not start with '/'",
                          prefix == NULL ? "" : prefix);
    if (limit == 0 || limit > DFS_CATALOG_LIST_MAX)
        limit = DFS_CATALOG_LIST_MAX;
    if (after != NULL && after[0] == '\0')
        after = NULL;
    char *end = prefix_end(prefix);
    if (end == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    /* Start at the larger of the prefix and the cursor; `path IS NOT after` makes it exclusive. */
    const char *lo = after != NULL && strcmp(after, prefix) > 0 ? after : prefix;
    struct dfs_file_rec *v = NULL;
    size_t count = 0;
    bool extra = false;
    lock(cat);
    int rc = query(cat, S_FILES_LIST, errmsg, "ttti", lo, end, after, (int64_t)limit + 1);
    while (rc == 1) {
        if (count == limit) { /* one row beyond the page: there is more */
            extra = true;
            release(cat->st[S_FILES_LIST]);
            rc = 0;
            break;
        }
        struct dfs_file_rec *slot = grow(&v, &count, sizeof *slot);
        int r = slot == NULL ? dfs_seterr(errmsg, DFS_ENOMEM, "out of memory")
                             : read_file(cat, S_FILES_LIST, slot, errmsg);
        if (r != DFS_OK) {
            release(cat->st[S_FILES_LIST]);
            rc = r;
            break;
        }
        rc = next_row(cat, S_FILES_LIST, errmsg);
    }
    unlock(cat);
    free(end);
    if (rc < 0) {
        dfs_catalog_file_recs_free(v, count);
        return rc;
    }
    *out = v;
    *n = count;
    *more = extra;
    return DFS_OK;
}

static int delete_locked(dfs_catalog *cat, const char *path, int64_t now_ms,
                         struct dfs_file_rec **out, char **errmsg)
{
    int rc = find_file(cat, S_FILE_GET_PATH, path, true, out, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (*out == NULL)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no file %s", path);
    return remove_file(cat, (*out)->file_id, now_ms, errmsg);
}

int dfs_catalog_file_delete(dfs_catalog *cat, const char *path, int64_t now_ms,
                            struct dfs_file_rec **out, char **errmsg)
{
    int rc = check_path(path, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_file_rec *f = NULL;
    lock(cat);
    rc = tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = tx_end(cat, delete_locked(cat, path, now_ms, &f, errmsg), errmsg);
    unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        return rc;
    }
    dfs_log(DFS_LOG_INFO, "file deleted id=%s path=%s", f->file_id, f->path);
    *out = f;
    return DFS_OK;
}

/* ---- Deletion queue -------------------------------------------------------------------------- */

int dfs_catalog_deletions_fetch(dfs_catalog *cat, int64_t now_ms, size_t max,
                                struct dfs_deletion_rec **out, size_t *n, char **errmsg)
{
    if (max > INT32_MAX)
        max = INT32_MAX;
    struct dfs_deletion_rec *v = NULL;
    size_t count = 0;
    int dropped = 0;
    lock(cat);
    int rc = tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        rc = exec(cat, S_DELETIONS_DROP_ORPHANS, &dropped, errmsg, "");
        int row = rc == DFS_OK && max > 0
                      ? query(cat, S_DELETIONS_FETCH, errmsg, "ii", now_ms, (int64_t)max)
                      : rc;
        while (row == 1) {
            struct dfs_deletion_rec *d = grow(&v, &count, sizeof *d);
            if (d == NULL) {
                release(cat->st[S_DELETIONS_FETCH]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            col_copy(cat, S_DELETIONS_FETCH, 0, d->fragment_id, sizeof d->fragment_id);
            col_copy(cat, S_DELETIONS_FETCH, 1, d->node_id, sizeof d->node_id);
            col_copy(cat, S_DELETIONS_FETCH, 2, d->address, sizeof d->address);
            row = next_row(cat, S_DELETIONS_FETCH, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        rc = tx_end(cat, rc, errmsg);
    }
    unlock(cat);
    if (rc != DFS_OK) {
        free(v);
        return rc;
    }
    if (dropped > 0)
        dfs_log(DFS_LOG_INFO, "dropped deletions for unregistered nodes count=%d", dropped);
    *out = v;
    *n = count;
    return DFS_OK;
}

static int deletion_update(dfs_catalog *cat, enum stmt id, const char *fragment_id,
                           const char *node_id, int64_t until_ms, char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s'",
                          fragment_id == NULL ? "" : fragment_id);
    int rc = check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    lock(cat);
    rc = tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        if (id == S_DELETION_POSTPONE)
            rc = exec(cat, id, NULL, errmsg, "tti", fragment_id, node_id, until_ms);
        else
            rc = exec(cat, id, NULL, errmsg, "tt", fragment_id, node_id);
        rc = tx_end(cat, rc, errmsg);
    }
    unlock(cat);
    return rc;
}

int dfs_catalog_deletion_done(dfs_catalog *cat, const char *fragment_id, const char *node_id,
                              char **errmsg)
{
    return deletion_update(cat, S_DELETION_DELETE, fragment_id, node_id, 0, errmsg);
}

int dfs_catalog_deletion_postpone(dfs_catalog *cat, const char *fragment_id, const char *node_id,
                                  int64_t until_ms, char **errmsg)
{
    return deletion_update(cat, S_DELETION_POSTPONE, fragment_id, node_id, until_ms, errmsg);
}

/* ---- Placement state ------------------------------------------------------------------------- */

/* "<policy>/<width>", the family key. */
static void family_key(char *buf, size_t cap, enum dfs_policy policy, uint32_t width)
{
    snprintf(buf, cap, "%s/%" PRIu32, dfs_placement_policy_name(policy), width);
}

/* Read the families, then every set row into its family (both ordered by family). */
static int placement_load_locked(dfs_catalog *cat, struct dfs_placement_state **out, size_t *n,
                                 char **errmsg)
{
    int row = query(cat, S_PLACEMENT_FAMILIES, errmsg, "");
    while (row == 1) {
        struct dfs_placement_state *st = grow(out, n, sizeof *st);
        if (st == NULL) {
            release(cat->st[S_PLACEMENT_FAMILIES]);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        st->policy = policy_from_name(col_text(cat, S_PLACEMENT_FAMILIES, 1));
        int64_t width = col_i64(cat, S_PLACEMENT_FAMILIES, 2);
        int64_t param = col_i64(cat, S_PLACEMENT_FAMILIES, 3);
        int64_t perms = col_i64(cat, S_PLACEMENT_FAMILIES, 4);
        char key[64];
        family_key(key, sizeof key, st->policy, (uint32_t)width);
        const char *fam = col_text(cat, S_PLACEMENT_FAMILIES, 0);
        if (!dfs_placement_policy_has_sets(st->policy) || width < 1 ||
            width > DFS_PLACEMENT_WIDTH_MAX || param < 0 || param > UINT32_MAX || perms < 1 ||
            perms > UINT32_MAX || fam == NULL || strcmp(fam, key) != 0) {
            char name[64];
            snprintf(name, sizeof name, "%s", fam == NULL ? "" : fam);
            release(cat->st[S_PLACEMENT_FAMILIES]);
            return dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: placement family '%s' is corrupt",
                              name);
        }
        st->width = (uint32_t)width;
        st->param = (uint32_t)param;
        st->nperms = (uint32_t)perms;
        row = next_row(cat, S_PLACEMENT_FAMILIES, errmsg);
    }
    if (row < 0)
        return row;
    size_t fi = 0;
    char key[64] = "";
    if (*n > 0)
        family_key(key, sizeof key, (*out)[0].policy, (*out)[0].width);
    row = query(cat, S_PLACEMENT_SETS, errmsg, "");
    while (row == 1) {
        const char *fam = col_text(cat, S_PLACEMENT_SETS, 0);
        while (fam != NULL && fi < *n && strcmp(fam, key) != 0) {
            if (++fi < *n)
                family_key(key, sizeof key, (*out)[fi].policy, (*out)[fi].width);
        }
        int64_t set_id = col_i64(cat, S_PLACEMENT_SETS, 1);
        int64_t pos = col_i64(cat, S_PLACEMENT_SETS, 2);
        int64_t perm = col_i64(cat, S_PLACEMENT_SETS, 3);
        const char *node = col_text(cat, S_PLACEMENT_SETS, 4);
        struct dfs_placement_state *st = fi < *n ? &(*out)[fi] : NULL;
        struct dfs_placement_set *set =
            st != NULL && st->nsets > 0 && set_id == (int64_t)st->nsets - 1
                ? &st->sets[st->nsets - 1]
                : NULL;
        if (st != NULL && set == NULL && set_id == (int64_t)st->nsets && pos == 0) {
            set = grow(&st->sets, &st->nsets, sizeof *set);
            if (set == NULL) {
                release(cat->st[S_PLACEMENT_SETS]);
                return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            }
            set->perm = (uint32_t)perm;
        }
        if (set == NULL || node == NULL || pos != (int64_t)set->nnodes ||
            perm != (int64_t)set->perm) {
            char name[64]; /* the column's text dies with the statement's reset */
            snprintf(name, sizeof name, "%s", fam == NULL ? "" : fam);
            release(cat->st[S_PLACEMENT_SETS]);
            return dfs_seterr(errmsg, DFS_EINTERNAL,
                              "catalog: placement family '%s' is corrupt at set %" PRId64
                              " position %" PRId64,
                              name, set_id, pos);
        }
        char *copy = strdup(node);
        char **slot = copy == NULL ? NULL : grow(&set->node_ids, &set->nnodes, sizeof *slot);
        if (slot == NULL) {
            free(copy);
            release(cat->st[S_PLACEMENT_SETS]);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        *slot = copy;
        row = next_row(cat, S_PLACEMENT_SETS, errmsg);
    }
    return row < 0 ? row : DFS_OK;
}

int dfs_catalog_placement_load(dfs_catalog *cat, struct dfs_placement_state **out, size_t *n,
                               char **errmsg)
{
    struct dfs_placement_state *v = NULL;
    size_t count = 0;
    lock(cat);
    int rc = tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = tx_end(cat, placement_load_locked(cat, &v, &count, errmsg), errmsg);
    unlock(cat);
    if (rc != DFS_OK) {
        dfs_placement_states_free(v, count);
        return rc;
    }
    *out = v;
    *n = count;
    return DFS_OK;
}

static int check_placement_state(const struct dfs_placement_state *st, char **errmsg)
{
    if (st == NULL || !dfs_placement_policy_has_sets(st->policy) || st->width == 0 ||
        st->width > DFS_PLACEMENT_WIDTH_MAX || st->nperms == 0 || (st->nsets > 0 && !st->sets))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad placement state (policy %s, width %" PRIu32 ")",
                          st == NULL ? "none" : dfs_placement_policy_name(st->policy),
                          st == NULL ? 0 : st->width);
    for (size_t s = 0; s < st->nsets; s++) {
        const struct dfs_placement_set *set = &st->sets[s];
        if (set->nnodes == 0 || set->node_ids == NULL || set->perm >= st->nperms)
            return dfs_seterr(errmsg, DFS_EINVAL, "bad placement set %zu", s);
        for (size_t j = 0; j < set->nnodes; j++) {
            int rc = check_id(set->node_ids[j], "node", errmsg);
            if (rc != DFS_OK)
                return rc;
            for (size_t i = 0; i < j; i++)
                if (strcmp(set->node_ids[i], set->node_ids[j]) == 0)
                    return dfs_seterr(errmsg, DFS_EINVAL, "placement set %zu holds node %s twice",
                                      s, set->node_ids[j]);
        }
    }
    return DFS_OK;
}

static int placement_save_locked(dfs_catalog *cat, const struct dfs_placement_state *st,
                                 const char *key, int64_t now_ms, char **errmsg)
{
    int rc = exec(cat, S_PLACEMENT_DELETE, NULL, errmsg, "t", key);
    if (rc == DFS_OK)
        rc = exec(cat, S_PLACEMENT_FAMILY_INSERT, NULL, errmsg, "ttiiii", key,
                  dfs_placement_policy_name(st->policy), (int64_t)st->width, (int64_t)st->param,
                  (int64_t)st->nperms, now_ms);
    for (size_t s = 0; rc == DFS_OK && s < st->nsets; s++)
        for (size_t j = 0; rc == DFS_OK && j < st->sets[s].nnodes; j++)
            rc = exec(cat, S_PLACEMENT_SET_INSERT, NULL, errmsg, "tiiit", key, (int64_t)s,
                      (int64_t)j, (int64_t)st->sets[s].perm, st->sets[s].node_ids[j]);
    return rc;
}

int dfs_catalog_placement_save(dfs_catalog *cat, const struct dfs_placement_state *st,
                               int64_t now_ms, char **errmsg)
{
    int rc = check_placement_state(st, errmsg);
    if (rc != DFS_OK)
        return rc;
    char key[64];
    family_key(key, sizeof key, st->policy, st->width);
    lock(cat);
    rc = tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = tx_end(cat, placement_save_locked(cat, st, key, now_ms, errmsg), errmsg);
    unlock(cat);
    return rc;
}

/* ---- Statistics ------------------------------------------------------------------------------ */

/* Read one single-row aggregate into up to two integers. */
static int aggregate(dfs_catalog *cat, enum stmt id, int64_t *a, int64_t *b, char **errmsg)
{
    int rc = query(cat, id, errmsg, "");
    if (rc < 0)
        return rc;
    if (rc == 0)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: aggregate returned no row");
    *a = col_i64(cat, id, 0);
    if (b != NULL)
        *b = col_i64(cat, id, 1);
    release(cat->st[id]);
    return DFS_OK;
}

static int stats_locked(dfs_catalog *cat, struct dfs_catalog_stats *s, char **errmsg)
{
    int64_t files = 0, logical = 0, stored = 0, pending = 0, deletions = 0, version = 0;
    int rc = aggregate(cat, S_STATS_FILES, &files, &logical, errmsg);
    if (rc == DFS_OK)
        rc = aggregate(cat, S_STATS_STORED, &stored, NULL, errmsg);
    if (rc == DFS_OK)
        rc = aggregate(cat, S_STATS_PENDING, &pending, NULL, errmsg);
    if (rc == DFS_OK)
        rc = aggregate(cat, S_STATS_DELETIONS, &deletions, NULL, errmsg);
    if (rc == DFS_OK)
        rc = aggregate(cat, S_SCHEMA_VERSION, &version, NULL, errmsg);
    if (rc != DFS_OK)
        return rc;
    s->files = (uint64_t)files;
    s->logical_bytes = (uint64_t)logical;
    s->stored_bytes = (uint64_t)stored;
    s->pending_files = (uint64_t)pending;
    s->pending_deletions = (uint64_t)deletions;
    s->schema_version = (uint32_t)version;
    int row = query(cat, S_STATS_NODES, errmsg, "");
    while (row == 1) {
        uint32_t count = (uint32_t)col_i64(cat, S_STATS_NODES, 1);
        switch (NAME_INDEX(node_state_names, col_text(cat, S_STATS_NODES, 0))) {
        case DFS_NODE_ALIVE:
            s->nodes_alive = count;
            break;
        case DFS_NODE_SUSPECT:
            s->nodes_suspect = count;
            break;
        case DFS_NODE_DEAD:
            s->nodes_dead = count;
            break;
        case DFS_NODE_DRAINING:
            s->nodes_draining = count;
            break;
        case DFS_NODE_DECOMMISSIONED:
            s->nodes_decommissioned = count;
            break;
        default:
            break;
        }
        row = next_row(cat, S_STATS_NODES, errmsg);
    }
    return row < 0 ? row : DFS_OK;
}

int dfs_catalog_stats(dfs_catalog *cat, struct dfs_catalog_stats *out, char **errmsg)
{
    struct dfs_catalog_stats s;
    memset(&s, 0, sizeof s);
    lock(cat);
    int rc = tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = tx_end(cat, stats_locked(cat, &s, errmsg), errmsg);
    unlock(cat);
    if (rc == DFS_OK)
        *out = s;
    return rc;
}
