/* The SQLite catalog: schema, migrations, and the verbs behind the Metadata service. */
#include "metadata/catalog.h"

#include "common/err.h"
#include "common/exlock.h"
#include "common/id.h"
#include "common/log.h"
#include "common/path.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

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
 * Since version 3 (failure detection, repair and inventories):
 *
 *   repairs    the durable repair queue: one row per fragment needing work. fragment_id (PK) ->
 *              fragments ON DELETE CASCADE (a deleted file takes its repairs with it), reason
 *              (dead|corrupt|missing|drain|rebalance|decommission), margin (priority: replication
 *              live copies - 1, erasure the file's live fragments - K; lower first, then older),
 *              from_node (drain/rebalance: the copy dropped once the new one is made; NULL
 *              otherwise), target_node (set when claimed, or by the rebalancer when queued; kept
 *              so that the copy of an interrupted repair can be removed), state (queued|running),
 *              attempts, queued_ms, not_before_ms (backoff after a failure), started_ms (NULL
 *              unless running). Invariant: no row for a fragment of a pending file, and no row
 *              for a lost fragment once the planner has seen it.
 *
 *   inventory_reports / inventory   a node's full inventory while it arrives in pages: one
 *              report row per node (next_page expected, started_ms) and one row per fragment id
 *              the node listed, (node_id, fragment_id) PK, cascading from its report. Dropped
 *              once the last page has been reconciled.
 *
 * Since version 4 (authentication):
 *
 *   tokens     one row per bearer token ever made. id (16 hex, PK, the public part of the
 *              token), name (1-64 bytes), role (admin|read_write|read_only|node), hash (32-byte
 *              BLOB: SHA-256 of the secret; the secret itself is never stored), created_ms,
 *              expires_ms (0 = never), revoked_ms (0 = not revoked; rows are kept after
 *              revocation so a revoked token can never come back), last_used_ms (0 = never).
 *
 *   secrets    named random keys the service makes once and keeps: name (PK), value (BLOB),
 *              created_ms. "ticket_master_key" (32 bytes) signs every ticket (common/ticket.h):
 *              the catalog file is as sensitive as the data it describes.
 *
 * Since version 5 (node identity):
 *
 *   tokens     role also 'bootstrap' (enrollment: registers node ids never seen; version 4's
 *              shared 'node' tokens became 'bootstrap' ones); node_id (32 hex) binds a 'node'
 *              token to its node, NULL for every other role (CHECKed), at most one token per
 *              node (unique index tokens_node). A node token is made with its node, at the
 *              node's enrollment, in one transaction.
 *
 *   nodes      registration: the node's current registration (random, non-zero; 0 = never
 *              registered since version 5). Each RegisterNode makes a new one; heartbeats and
 *              reports that carry another are from a process that was replaced.
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

    /* 3: the repair queue and node inventories. */
    "CREATE TABLE repairs ("
    "  fragment_id   TEXT    NOT NULL PRIMARY KEY"
    "                REFERENCES fragments (fragment_id) ON DELETE CASCADE,"
    "  reason        TEXT    NOT NULL CHECK (reason IN"
    "                ('dead', 'corrupt', 'missing', 'drain', 'rebalance', 'decommission')),"
    "  margin        INTEGER NOT NULL,"
    "  from_node     TEXT    CHECK (from_node IS NULL OR length(from_node) = 32),"
    "  target_node   TEXT    CHECK (target_node IS NULL OR length(target_node) = 32),"
    "  state         TEXT    NOT NULL CHECK (state IN ('queued', 'running')),"
    "  attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),"
    "  queued_ms     INTEGER NOT NULL,"
    "  not_before_ms INTEGER NOT NULL DEFAULT 0,"
    "  started_ms    INTEGER,"
    "  CHECK (state = 'queued' OR (target_node IS NOT NULL AND started_ms IS NOT NULL))"
    ") WITHOUT ROWID;"
    "CREATE INDEX repairs_order ON repairs (state, margin, queued_ms);"
    "CREATE INDEX repairs_from ON repairs (from_node) WHERE from_node IS NOT NULL;"

    "CREATE TABLE inventory_reports ("
    "  node_id    TEXT    NOT NULL PRIMARY KEY CHECK (length(node_id) = 32),"
    "  next_page  INTEGER NOT NULL CHECK (next_page >= 0),"
    "  started_ms INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE inventory ("
    "  node_id     TEXT NOT NULL REFERENCES inventory_reports (node_id) ON DELETE CASCADE,"
    "  fragment_id TEXT NOT NULL CHECK (length(fragment_id) = 40),"
    "  PRIMARY KEY (node_id, fragment_id)"
    ") WITHOUT ROWID;",

    /* 4: bearer tokens and the service's secrets. */
    "CREATE TABLE tokens ("
    "  id           TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 16),"
    "  name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),"
    "  role         TEXT    NOT NULL CHECK (role IN ('admin', 'read_write', 'read_only', 'node')),"
    "  hash         BLOB    NOT NULL CHECK (length(hash) = 32),"
    "  created_ms   INTEGER NOT NULL,"
    "  expires_ms   INTEGER NOT NULL DEFAULT 0 CHECK (expires_ms >= 0),"
    "  revoked_ms   INTEGER NOT NULL DEFAULT 0 CHECK (revoked_ms >= 0),"
    "  last_used_ms INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE TABLE secrets ("
    "  name       TEXT    NOT NULL PRIMARY KEY,"
    "  value      BLOB    NOT NULL,"
    "  created_ms INTEGER NOT NULL"
    ") WITHOUT ROWID;",

    /* 5: node identity (per-node tokens, enrollment tokens) and registrations. */
    "CREATE TABLE tokens_v5 ("
    "  id           TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 16),"
    "  name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),"
    "  role         TEXT    NOT NULL"
    "               CHECK (role IN ('admin', 'read_write', 'read_only', 'node', 'bootstrap')),"
    "  hash         BLOB    NOT NULL CHECK (length(hash) = 32),"
    "  created_ms   INTEGER NOT NULL,"
    "  expires_ms   INTEGER NOT NULL DEFAULT 0 CHECK (expires_ms >= 0),"
    "  revoked_ms   INTEGER NOT NULL DEFAULT 0 CHECK (revoked_ms >= 0),"
    "  last_used_ms INTEGER NOT NULL DEFAULT 0,"
    "  node_id      TEXT    CHECK (node_id IS NULL OR length(node_id) = 32),"
    "  CHECK ((role = 'node') = (node_id IS NOT NULL))"
    ") WITHOUT ROWID;"
    "INSERT INTO tokens_v5 (id, name, role, hash, created_ms, expires_ms, revoked_ms, "
    "  last_used_ms, node_id) SELECT id, name, CASE role WHEN 'node' THEN 'bootstrap' ELSE role "
    "  END, hash, created_ms, expires_ms, revoked_ms, last_used_ms, NULL FROM tokens;"
    "DROP TABLE tokens;"
    "ALTER TABLE tokens_v5 RENAME TO tokens;"
    "CREATE UNIQUE INDEX tokens_node ON tokens (node_id) WHERE node_id IS NOT NULL;"
    "ALTER TABLE nodes ADD COLUMN registration INTEGER NOT NULL DEFAULT 0;",
};

static_assert(sizeof migrations / sizeof migrations[0] == DFS_CATALOG_SCHEMA_VERSION,
              "one migration per schema version");

#define NODE_COLS                                                                        \
    "id, address, zone, state, capacity_bytes, used_bytes, free_bytes, fragment_count, " \
    "last_heartbeat_ms, registered_ms, registration"

#define FILE_COLS                                                                             \
    "file_id, path, size, sha256, scheme, replicas, fragments, data, parity, policy, state, " \
    "overwrite, fragment_size, cell_size, created_ms, committed_ms, expires_ms"

#define REPAIR_COLS                                                                     \
    "fragment_id, reason, margin, from_node, target_node, state, attempts, queued_ms, " \
    "not_before_ms, started_ms"

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
    S_COPY_GET,

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

    S_NODE_RESOLVE,
    S_NODES_DRAINED,
    S_NODE_COPIES,
    S_REPAIRS_DROP_DRAIN,
    S_REPAIRS_LIST,
    S_REPAIR_GET,
    S_REPAIR_COUNTS,
    S_REPAIRS_RUNNING,
    S_REPAIR_REQUEUE,
    S_REPAIR_INSERT,
    S_REPAIR_SET_MARGIN,
    S_REPAIR_DELETE,
    S_REPAIRS_DUE,
    S_REPAIR_START,
    S_REPAIR_FAIL,
    S_REPLICA_NEXT_POS,
    S_REPLICA_ADD,
    S_REPLICA_DELETE,
    S_REPLICA_GET,
    S_NODE_REPLICA_ANY,
    S_FRAGMENT_INFO,
    S_FRAGMENT_COPIES,
    S_FILE_FRAG_COUNTS,
    S_PLAN_PAGE,
    S_REBALANCE_CANDIDATES,
    S_INV_STATE_GET,
    S_INV_START,
    S_INV_SET_NEXT,
    S_INV_INSERT,
    S_INV_MISSING,
    S_INV_UNKNOWN,
    S_INV_DROP,
    S_LAYOUT_ALL,
    S_TOKEN_INSERT,
    S_TOKEN_GET,
    S_TOKEN_OF_NODE,
    S_TOKEN_PREFIX,
    S_TOKEN_REVOKE,
    S_TOKEN_TOUCH,
    S_TOKENS_LIST,
    S_SECRET_GET,
    S_SECRET_INSERT,

    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN_READ] = "BEGIN",
    [S_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",

    [S_NODE_GET] = "SELECT " NODE_COLS " FROM nodes WHERE id = ?1",
    [S_NODE_UPSERT] =
        "INSERT INTO nodes (" NODE_COLS ") VALUES (?1, ?2, ?3, 'alive', ?4, ?5, ?6, ?7, ?8, ?8, "
        "?9) ON CONFLICT (id) DO UPDATE SET address = excluded.address, zone = excluded.zone, "
        "registration = excluded.registration, "
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
    /* ?3: copies of fragments that still exist are handed out once queued before this. */
    [S_DELETIONS_FETCH] = "SELECT d.fragment_id, d.node_id, n.address FROM deletions d "
                          "JOIN nodes n ON n.id = d.node_id WHERE n.state IN ('alive', 'draining') "
                          "AND d.not_before_ms <= ?1 AND (d.queued_ms <= ?3 OR NOT EXISTS "
                          "(SELECT 1 FROM fragments f WHERE f.fragment_id = d.fragment_id)) "
                          "ORDER BY d.queued_ms, d.fragment_id, d.node_id LIMIT ?2",
    [S_COPY_GET] = "SELECT f.size, f.checksum FROM replicas r JOIN fragments f "
                   "ON f.fragment_id = r.fragment_id JOIN files fi ON fi.file_id = f.file_id "
                   "WHERE r.fragment_id = ?1 AND r.node_id = ?2 AND r.acked = 1 "
                   "AND fi.state = 'committed'",

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

    /* Ids are lower-case hex, so every id with prefix p sorts in [p, p || 'g'). */
    [S_NODE_RESOLVE] = "SELECT " NODE_COLS " FROM nodes WHERE id >= ?1 AND id < ?1 || 'g' "
                       "ORDER BY id LIMIT 2",
    /* Drained: no replica row left and no removal still to send to it (its bytes are gone). */
    [S_NODES_DRAINED] = "SELECT id, address FROM nodes n WHERE state = 'draining' AND NOT EXISTS "
                        "(SELECT 1 FROM replicas r WHERE r.node_id = n.id) AND NOT EXISTS "
                        "(SELECT 1 FROM deletions d WHERE d.node_id = n.id) ORDER BY id",
    [S_NODE_COPIES] = "SELECT r.node_id, count(*), coalesce(sum(f.size), 0) FROM replicas r "
                      "JOIN fragments f ON f.fragment_id = r.fragment_id WHERE r.acked = 1 "
                      "GROUP BY r.node_id ORDER BY r.node_id",
    [S_REPAIRS_DROP_DRAIN] =
        "DELETE FROM repairs WHERE from_node = ?1 AND reason = 'drain' AND state = 'queued'",
    [S_REPAIRS_LIST] =
        "SELECT " REPAIR_COLS " FROM repairs ORDER BY margin, queued_ms, fragment_id",
    [S_REPAIR_GET] = "SELECT " REPAIR_COLS " FROM repairs WHERE fragment_id = ?1",
    [S_REPAIR_COUNTS] = "SELECT coalesce(sum(state = 'queued'), 0), "
                        "coalesce(sum(state = 'running'), 0) FROM repairs",
    [S_REPAIRS_RUNNING] = "SELECT fragment_id, target_node FROM repairs WHERE state = 'running' "
                          "ORDER BY fragment_id",
    [S_REPAIR_REQUEUE] = "UPDATE repairs SET state = 'queued', target_node = NULL, "
                         "started_ms = NULL WHERE fragment_id = ?1",
    [S_REPAIR_INSERT] = "INSERT INTO repairs (fragment_id, reason, margin, from_node, target_node, "
                        "state, attempts, queued_ms, not_before_ms) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, 'queued', 0, ?6, 0) "
                        "ON CONFLICT (fragment_id) DO NOTHING",
    [S_REPAIR_SET_MARGIN] = "UPDATE repairs SET margin = ?2 WHERE fragment_id = ?1",
    [S_REPAIR_DELETE] = "DELETE FROM repairs WHERE fragment_id = ?1",
    [S_REPAIRS_DUE] = "SELECT fragment_id FROM repairs WHERE state = 'queued' "
                      "AND not_before_ms <= ?1 ORDER BY margin, queued_ms, fragment_id LIMIT ?2",
    [S_REPAIR_START] = "UPDATE repairs SET state = 'running', target_node = ?2, started_ms = ?3 "
                       "WHERE fragment_id = ?1 AND state = 'queued'",
    [S_REPAIR_FAIL] = "UPDATE repairs SET state = 'queued', target_node = NULL, started_ms = NULL, "
                      "attempts = attempts + 1, not_before_ms = ?2 WHERE fragment_id = ?1",
    [S_REPLICA_NEXT_POS] = "SELECT coalesce(max(pos), -1) + 1 FROM replicas WHERE fragment_id = ?1",
    [S_REPLICA_ADD] =
        "INSERT INTO replicas (fragment_id, node_id, pos, acked) VALUES (?1, ?2, ?3, 1)",
    [S_REPLICA_DELETE] = "DELETE FROM replicas WHERE fragment_id = ?1 AND node_id = ?2",
    [S_REPLICA_GET] = "SELECT pos, acked FROM replicas WHERE fragment_id = ?1 AND node_id = ?2",
    [S_NODE_REPLICA_ANY] = "SELECT 1 FROM replicas WHERE node_id = ?1 LIMIT 1",
    [S_FRAGMENT_INFO] = "SELECT f.file_id, f.idx, f.size, f.checksum, fi.scheme, fi.replicas, "
                        "fi.data, fi.parity, fi.state FROM fragments f "
                        "JOIN files fi ON fi.file_id = f.file_id WHERE f.fragment_id = ?1",
    [S_FRAGMENT_COPIES] = "SELECT r.node_id, n.state, r.pos FROM replicas r "
                          "JOIN nodes n ON n.id = r.node_id WHERE r.fragment_id = ?1 "
                          "AND r.acked = 1 ORDER BY r.pos",
    [S_FILE_FRAG_COUNTS] =
        "SELECT count(DISTINCT CASE WHEN n.state IN ('alive', 'suspect') THEN r.fragment_id END), "
        "count(DISTINCT CASE WHEN n.state IN ('alive', 'suspect', 'draining') "
        "THEN r.fragment_id END) FROM fragments g JOIN replicas r "
        "ON r.fragment_id = g.fragment_id JOIN nodes n ON n.id = r.node_id "
        "WHERE g.file_id = ?1 AND r.acked = 1",
    [S_PLAN_PAGE] = "SELECT f.fragment_id FROM fragments f JOIN files fi ON fi.file_id = f.file_id "
                    "WHERE f.fragment_id > ?1 AND fi.state = 'committed' "
                    "ORDER BY f.fragment_id LIMIT ?2",
    [S_REBALANCE_CANDIDATES] =
        "SELECT r.fragment_id, f.size FROM replicas r JOIN fragments f "
        "ON f.fragment_id = r.fragment_id JOIN files fi ON fi.file_id = f.file_id "
        "WHERE r.node_id = ?1 AND r.acked = 1 AND fi.state = 'committed' AND r.fragment_id > ?2 "
        "AND NOT EXISTS (SELECT 1 FROM repairs q WHERE q.fragment_id = r.fragment_id) "
        "ORDER BY r.fragment_id LIMIT ?3",
    [S_INV_STATE_GET] = "SELECT next_page FROM inventory_reports WHERE node_id = ?1",
    [S_INV_START] = "INSERT INTO inventory_reports (node_id, next_page, started_ms) "
                    "VALUES (?1, 0, ?2)",
    [S_INV_SET_NEXT] = "UPDATE inventory_reports SET next_page = ?2 WHERE node_id = ?1 "
                       "AND next_page < ?2",
    [S_INV_INSERT] = "INSERT OR IGNORE INTO inventory (node_id, fragment_id) VALUES (?1, ?2)",
    [S_INV_MISSING] = "SELECT r.fragment_id FROM replicas r JOIN fragments f "
                      "ON f.fragment_id = r.fragment_id JOIN files fi ON fi.file_id = f.file_id "
                      "WHERE r.node_id = ?1 AND r.acked = 1 AND fi.state = 'committed' "
                      "AND NOT EXISTS (SELECT 1 FROM inventory i WHERE i.node_id = ?1 "
                      "AND i.fragment_id = r.fragment_id) ORDER BY r.fragment_id",
    [S_INV_UNKNOWN] =
        "SELECT i.fragment_id FROM inventory i WHERE i.node_id = ?1 "
        "AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.fragment_id = i.fragment_id "
        "AND r.node_id = ?1) AND NOT EXISTS (SELECT 1 FROM repairs q "
        "WHERE q.fragment_id = i.fragment_id AND q.state = 'running' "
        "AND q.target_node = ?1) ORDER BY i.fragment_id",
    [S_INV_DROP] = "DELETE FROM inventory_reports WHERE node_id = ?1",
    [S_LAYOUT_ALL] = "SELECT fi.file_id, fi.path, fi.scheme, fi.replicas, fi.fragments, fi.data, "
                     "fi.parity, f.fragment_id, f.size, f.checksum, r.node_id FROM fragments f "
                     "JOIN files fi ON fi.file_id = f.file_id LEFT JOIN replicas r "
                     "ON r.fragment_id = f.fragment_id AND r.acked = 1 "
                     "WHERE fi.state = 'committed' ORDER BY f.fragment_id, r.pos",

#define TOKEN_COLS "id, name, role, created_ms, expires_ms, revoked_ms, last_used_ms, node_id"
    [S_TOKEN_INSERT] = "INSERT INTO tokens (id, name, role, hash, created_ms, expires_ms, node_id) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, nullif(?7, ''))",
    [S_TOKEN_GET] = "SELECT " TOKEN_COLS ", hash FROM tokens WHERE id = ?1",
    [S_TOKEN_OF_NODE] = "SELECT id FROM tokens WHERE node_id = ?1",
    /* ?1 the prefix, ?2 the first id after every id it starts (prefix || 'g'). */
    [S_TOKEN_PREFIX] = "SELECT " TOKEN_COLS " FROM tokens WHERE id >= ?1 AND id < ?2 "
                       "ORDER BY id LIMIT 2",
    [S_TOKEN_REVOKE] = "UPDATE tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms = 0",
    [S_TOKEN_TOUCH] = "UPDATE tokens SET last_used_ms = max(last_used_ms, ?2) WHERE id = ?1",
    [S_TOKENS_LIST] = "SELECT " TOKEN_COLS " FROM tokens WHERE ?1 OR (revoked_ms = 0 AND "
                      "(expires_ms = 0 OR expires_ms > ?2)) ORDER BY created_ms, id",
    [S_SECRET_GET] = "SELECT value FROM secrets WHERE name = ?1",
    [S_SECRET_INSERT] = "INSERT INTO secrets (name, value, created_ms) VALUES (?1, ?2, ?3)",
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
    /* The catalog file, open only to hold its exclusive lock (common/exlock.h): one catalog
       handle per file, so one dfs-metadata serves, repairs and rebalances it. -1: none
       (in memory). Closed after the database. */
    int lockfd;
};

/* ---- Names of stored enumerations ------------------------------------------------------------ */

static const char *const catalog_node_state_names[] = {
    [DFS_NODE_UNSPECIFIED] = "unspecified", [DFS_NODE_ALIVE] = "alive",
    [DFS_NODE_SUSPECT] = "suspect",         [DFS_NODE_DEAD] = "dead",
    [DFS_NODE_DRAINING] = "draining",       [DFS_NODE_DECOMMISSIONED] = "decommissioned",
};

static const char *const catalog_scheme_names[] = {
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
static int catalog_name_index(const char *const *names, int n, const char *s)
{
    for (int i = 1; s != NULL && i < n; i++) {
        if (strcmp(names[i], s) == 0)
            return i;
    }
    return 0;
}

#define NAME_INDEX(names, s) \
    catalog_name_index((names), (int)(sizeof(names) / sizeof((names)[0])), (s))

const char *dfs_catalog_node_state_name(enum dfs_node_state state)
{
    if ((unsigned)state >= sizeof catalog_node_state_names / sizeof catalog_node_state_names[0])
        return "unknown";
    return catalog_node_state_names[state];
}

static enum dfs_policy catalog_policy_from_name(const char *s)
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

static void catalog_release(sqlite3_stmt *st)
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
static int catalog_query(dfs_catalog *cat, enum stmt id, char **errmsg, const char *types, ...)
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
    catalog_release(st);
    return ret;
}

/* Next row of a statement started with catalog_query(): 1, 0 or a DFS code (both released). */
static int catalog_next_row(dfs_catalog *cat, enum stmt id, char **errmsg)
{
    sqlite3_stmt *st = cat->st[id];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    int ret = rc == SQLITE_DONE ? 0 : sql_fail(cat, rc, stmt_sql[id], errmsg);
    catalog_release(st);
    return ret;
}

/*
 * Run a statement that returns no rows. Returns DFS_OK or a DFS code; *changes (may be NULL) gets
 * the number of rows it changed.
 */
static int catalog_exec(dfs_catalog *cat, enum stmt id, int *changes, char **errmsg,
                        const char *types, ...)
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
    catalog_release(st);
    return ret;
}

static int64_t catalog_col_i64(dfs_catalog *cat, enum stmt id, int col)
{
    return sqlite3_column_int64(cat->st[id], col);
}

static const char *catalog_col_text(dfs_catalog *cat, enum stmt id, int col)
{
    return (const char *)sqlite3_column_text(cat->st[id], col);
}

/* Copy a text column into buf[cap], truncating (values were length-checked when stored). */
static void catalog_col_copy(dfs_catalog *cat, enum stmt id, int col, char *buf, size_t cap)
{
    const char *s = catalog_col_text(cat, id, col);
    size_t n = s == NULL ? 0 : (size_t)sqlite3_column_bytes(cat->st[id], col);
    if (n >= cap)
        n = cap - 1;
    if (n > 0)
        memcpy(buf, s, n);
    buf[n] = '\0';
}

static void catalog_lock(dfs_catalog *cat)
{
    pthread_mutex_lock(&cat->mu);
}

static void catalog_unlock(dfs_catalog *cat)
{
    pthread_mutex_unlock(&cat->mu);
}

static int catalog_tx_begin(dfs_catalog *cat, bool write, char **errmsg)
{
    return catalog_exec(cat, write ? S_BEGIN_WRITE : S_BEGIN_READ, NULL, errmsg, "");
}

/* End the transaction: COMMIT when rc is DFS_OK, else ROLLBACK. Returns the final status. */
static int catalog_tx_end(dfs_catalog *cat, int rc, char **errmsg)
{
    if (rc == DFS_OK) {
        rc = catalog_exec(cat, S_COMMIT, NULL, errmsg, "");
        if (rc == DFS_OK)
            return DFS_OK;
    }
    if (!sqlite3_get_autocommit(cat->db)) {
        int rb = catalog_exec(cat, S_ROLLBACK, NULL, NULL, "");
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

static int catalog_check_id(const char *id, const char *what, char **errmsg)
{
    if (!dfs_id_valid(id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad %s id '%s' (want %d lower-case hex digits)",
                          what, id == NULL ? "" : id, DFS_ID_HEX);
    return DFS_OK;
}

static int catalog_check_text(const char *s, size_t min, size_t max, const char *what,
                              char **errmsg)
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

static int catalog_check_u64(uint64_t v, const char *what, char **errmsg)
{
    if (v > (uint64_t)INT64_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "%s %" PRIu64 " is too large", what, v);
    return DFS_OK;
}

static int check_usage(const struct dfs_node_usage *u, char **errmsg)
{
    if (u == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "no usage figures");
    int rc = catalog_check_u64(u->capacity_bytes, "capacity_bytes", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_u64(u->used_bytes, "used_bytes", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_u64(u->free_bytes, "free_bytes", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_u64(u->fragment_count, "fragment_count", errmsg);
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

static void catalog_read_node(dfs_catalog *cat, enum stmt id, struct dfs_node_rec *n)
{
    memset(n, 0, sizeof *n);
    catalog_col_copy(cat, id, 0, n->id, sizeof n->id);
    catalog_col_copy(cat, id, 1, n->address, sizeof n->address);
    catalog_col_copy(cat, id, 2, n->zone, sizeof n->zone);
    n->state =
        (enum dfs_node_state)NAME_INDEX(catalog_node_state_names, catalog_col_text(cat, id, 3));
    n->usage.capacity_bytes = (uint64_t)catalog_col_i64(cat, id, 4);
    n->usage.used_bytes = (uint64_t)catalog_col_i64(cat, id, 5);
    n->usage.free_bytes = (uint64_t)catalog_col_i64(cat, id, 6);
    n->usage.fragment_count = (uint64_t)catalog_col_i64(cat, id, 7);
    n->last_heartbeat_ms = catalog_col_i64(cat, id, 8);
    n->registered_ms = catalog_col_i64(cat, id, 9);
    n->registration = (uint64_t)catalog_col_i64(cat, id, 10);
}

/* Fill *f from a FILE_COLS row of statement `id` (no layout). DFS_ENOMEM only. */
static int read_file(dfs_catalog *cat, enum stmt id, struct dfs_file_rec *f, char **errmsg)
{
    memset(f, 0, sizeof *f);
    catalog_col_copy(cat, id, 0, f->file_id, sizeof f->file_id);
    const char *path = catalog_col_text(cat, id, 1);
    f->path = path == NULL ? NULL : strdup(path);
    if (f->path == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    f->size = (uint64_t)catalog_col_i64(cat, id, 2);
    const void *sha = sqlite3_column_blob(cat->st[id], 3);
    if (sha != NULL && sqlite3_column_bytes(cat->st[id], 3) == DFS_SHA256_LEN)
        memcpy(f->sha256, sha, DFS_SHA256_LEN);
    f->redundancy.scheme =
        (enum dfs_scheme)NAME_INDEX(catalog_scheme_names, catalog_col_text(cat, id, 4));
    f->redundancy.replicas = (uint32_t)catalog_col_i64(cat, id, 5);
    f->redundancy.fragments = (uint32_t)catalog_col_i64(cat, id, 6);
    f->redundancy.data = (uint32_t)catalog_col_i64(cat, id, 7);
    f->redundancy.parity = (uint32_t)catalog_col_i64(cat, id, 8);
    f->policy = catalog_policy_from_name(catalog_col_text(cat, id, 9));
    f->state = (enum dfs_file_state)NAME_INDEX(file_state_names, catalog_col_text(cat, id, 10));
    f->overwrite = catalog_col_i64(cat, id, 11) != 0;
    f->fragment_size = (uint64_t)catalog_col_i64(cat, id, 12);
    f->cell_size = (uint32_t)catalog_col_i64(cat, id, 13);
    f->created_ms = catalog_col_i64(cat, id, 14);
    f->committed_ms = catalog_col_i64(cat, id, 15); /* NULL reads as 0 */
    f->expires_ms = catalog_col_i64(cat, id, 16);
    return DFS_OK;
}

/*
 * Append one zeroed element to the array whose pointer is at `arrp` (any `T **`), holding *n
 * elements of `size` bytes; returns the new slot, or NULL with the array unchanged. The pointer is
 * read and written with memcpy, so T ** need not alias void **.
 *
 * The capacity is not stored: it is derived from *n. Arrays made by catalog_grow alone (from
 * NULL, 0) hold room for at least 4 elements, doubled each time *n reaches a power of two, so a
 * listing of n rows costs O(n) copying rather than a realloc per row.
 */
static void *catalog_grow(void *arrp, size_t *n, size_t size)
{
    void *arr;
    memcpy(&arr, arrp, sizeof arr);
    size_t have = *n;
    if (have == 0 || (have >= 4 && (have & (have - 1)) == 0)) {
        size_t cap = have == 0 ? 4 : 2 * have;
        if (cap > SIZE_MAX / size)
            return NULL;
        void *p = realloc(arr, cap * size);
        if (p == NULL)
            return NULL;
        memcpy(arrp, &p, sizeof p);
        arr = p;
    }
    void *slot = (char *)arr + have * size;
    memset(slot, 0, size);
    (*n)++;
    return slot;
}

/* Fills one array element from the current row of a statement (see catalog_collect_rows). */
typedef void (*catalog_row_reader)(dfs_catalog *cat, enum stmt id, void *slot);

/*
 * Every row of statement `id` (which takes no parameters) into a new array at `outp` (any `T **`)
 * of *n elements of `size` bytes, each filled by `read`; the caller frees the array with free().
 * Takes the catalog lock. On failure nothing is returned and the partial array is freed.
 */
static int catalog_collect_rows(dfs_catalog *cat, enum stmt id, size_t size,
                                catalog_row_reader read, void *outp, size_t *n, char **errmsg)
{
    void *v = NULL;
    size_t count = 0;
    catalog_lock(cat);
    int rc = catalog_query(cat, id, errmsg, "");
    while (rc == 1) {
        void *slot = catalog_grow(&v, &count, size);
        if (slot == NULL) {
            catalog_release(cat->st[id]);
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            break;
        }
        read(cat, id, slot);
        rc = catalog_next_row(cat, id, errmsg);
    }
    catalog_unlock(cat);
    if (rc < 0) {
        free(v);
        return rc;
    }
    memcpy(outp, &v, sizeof v);
    *n = count;
    return DFS_OK;
}

/* Load the fragments and replicas of f (and, when pending, the failed nodes of each fragment). */
static int read_layout(dfs_catalog *cat, struct dfs_file_rec *f, char **errmsg)
{
    int rc = catalog_query(cat, S_LAYOUT, errmsg, "t", f->file_id);
    while (rc == 1) {
        int64_t idx = catalog_col_i64(cat, S_LAYOUT, 0);
        struct dfs_fragment_rec *fr = f->nfragments > 0 ? &f->fragments[f->nfragments - 1] : NULL;
        if (fr == NULL || fr->index != (uint32_t)idx) {
            if (idx != (int64_t)f->nfragments) {
                catalog_release(cat->st[S_LAYOUT]);
                return dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: file %s lacks fragment %zu",
                                  f->file_id, f->nfragments);
            }
            fr = catalog_grow(&f->fragments, &f->nfragments, sizeof *fr);
            if (fr == NULL)
                break;
            fr->index = (uint32_t)idx;
            catalog_col_copy(cat, S_LAYOUT, 1, fr->fragment_id, sizeof fr->fragment_id);
            fr->size = (uint64_t)catalog_col_i64(cat, S_LAYOUT, 2);
            fr->checksum = (uint32_t)catalog_col_i64(cat, S_LAYOUT, 3);
        }
        if (sqlite3_column_type(cat->st[S_LAYOUT], 4) != SQLITE_NULL) {
            struct dfs_replica_rec *r = catalog_grow(&fr->replicas, &fr->nreplicas, sizeof *r);
            if (r == NULL)
                break;
            catalog_col_copy(cat, S_LAYOUT, 4, r->node_id, sizeof r->node_id);
            catalog_col_copy(cat, S_LAYOUT, 5, r->address, sizeof r->address);
            r->node_state = (enum dfs_node_state)NAME_INDEX(catalog_node_state_names,
                                                            catalog_col_text(cat, S_LAYOUT, 6));
        }
        rc = catalog_next_row(cat, S_LAYOUT, errmsg);
    }
    if (rc == 1) { /* broke out: allocation failed */
        catalog_release(cat->st[S_LAYOUT]);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    if (rc < 0)
        return rc;
    if (f->state != DFS_FILE_PENDING)
        return DFS_OK;
    for (size_t i = 0; i < f->nfragments; i++) {
        struct dfs_fragment_rec *fr = &f->fragments[i];
        rc = catalog_query(cat, S_DELETIONS_OF_FRAGMENT, errmsg, "t", fr->fragment_id);
        while (rc == 1) {
            char(*slot)[DFS_ID_HEX + 1] =
                catalog_grow(&fr->failed_node_ids, &fr->nfailed, sizeof fr->failed_node_ids[0]);
            if (slot == NULL) {
                catalog_release(cat->st[S_DELETIONS_OF_FRAGMENT]);
                return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            }
            catalog_col_copy(cat, S_DELETIONS_OF_FRAGMENT, 0, *slot, sizeof *slot);
            rc = catalog_next_row(cat, S_DELETIONS_OF_FRAGMENT, errmsg);
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
static int catalog_find_file(dfs_catalog *cat, enum stmt id, const char *key, bool layout,
                             struct dfs_file_rec **out, char **errmsg)
{
    *out = NULL;
    int rc = catalog_query(cat, id, errmsg, "t", key);
    if (rc <= 0)
        return rc;
    struct dfs_file_rec *f = calloc(1, sizeof *f);
    if (f == NULL) {
        catalog_release(cat->st[id]);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    rc = read_file(cat, id, f, errmsg);
    catalog_release(cat->st[id]);
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
    cat->lockfd = -1;
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
    /* Before anything reads or changes the file (SQLite has only opened it): a second process
       on this catalog stops here. */
    if (strcmp(path, ":memory:") != 0) {
        cat->lockfd = open(path, O_RDONLY | O_CLOEXEC);
        if (cat->lockfd < 0)
            rc = dfs_seterr_errno(errmsg, DFS_EIO, errno, "catalog %s", path);
        else
            rc = dfs_exlock(cat->lockfd, NULL, "catalog", path, errmsg);
        if (rc != DFS_OK)
            goto fail;
    }

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
    if (cat->lockfd >= 0)
        close(cat->lockfd); /* after the database: the next holder finds it closed */
    pthread_mutex_destroy(&cat->mu);
    free(cat->path);
    free(cat);
}

/* ---- Nodes ----------------------------------------------------------------------------------- */

/* Look up a node; returns 1 (found, *n filled), 0 (absent) or a DFS code. */
static int catalog_get_node(dfs_catalog *cat, const char *id, struct dfs_node_rec *n, char **errmsg)
{
    int rc = catalog_query(cat, S_NODE_GET, errmsg, "t", id);
    if (rc == 1) {
        catalog_read_node(cat, S_NODE_GET, n);
        catalog_release(cat->st[S_NODE_GET]);
    }
    return rc;
}

static bool catalog_token_id_ok(const char *id, size_t min);

static int check_registration(const char *node_id, const char *address, const char *zone,
                              const struct dfs_node_usage *usage, char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_text(address, 1, DFS_NODE_ADDRESS_MAX, "node address", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_text(zone, 0, DFS_NODE_ZONE_MAX, "zone", errmsg);
    if (rc == DFS_OK)
        rc = check_usage(usage, errmsg);
    return rc;
}

/* The upsert of a registration (in a write transaction). */
static int upsert_node(dfs_catalog *cat, const char *node_id, const char *address, const char *zone,
                       const struct dfs_node_usage *usage, int64_t now_ms, uint64_t registration,
                       char **errmsg)
{
    return catalog_exec(cat, S_NODE_UPSERT, NULL, errmsg, "tttiiiiii", node_id, address, zone,
                        (int64_t)usage->capacity_bytes, (int64_t)usage->used_bytes,
                        (int64_t)usage->free_bytes, (int64_t)usage->fragment_count, now_ms,
                        (int64_t)registration);
}

int dfs_catalog_node_register(dfs_catalog *cat, const char *node_id, const char *address,
                              const char *zone, const struct dfs_node_usage *usage, int64_t now_ms,
                              uint64_t expect, uint64_t registration, char **errmsg)
{
    if (zone == NULL)
        zone = "";
    int rc = check_registration(node_id, address, zone, usage, errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    struct dfs_node_rec old = {0};
    int found = 0;
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        found = catalog_get_node(cat, node_id, &old, errmsg);
        rc = found < 0 ? found : DFS_OK;
        if (rc == DFS_OK && registration == DFS_CATALOG_KEEP)
            registration = old.registration;
        if (rc == DFS_OK && expect != DFS_CATALOG_KEEP && old.registration != expect)
            rc = dfs_seterr(errmsg, DFS_EABORTED,
                            "node %s: another registration came in meanwhile (from %s)", node_id,
                            old.address);
        if (rc == DFS_OK)
            rc = upsert_node(cat, node_id, address, zone, usage, now_ms, registration, errmsg);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO,
                "node %s id=%s address=%s zone=%s previous_state=%s previous_address=%s",
                found == 1 ? "registered again" : "registered", node_id, address, zone,
                found == 1 ? dfs_catalog_node_state_name(old.state) : "none",
                found == 1 ? old.address : "-");
    return rc;
}

int dfs_catalog_node_enroll(dfs_catalog *cat, const char *node_id, const char *token_id,
                            const uint8_t token_hash[32], const char *address, const char *zone,
                            const struct dfs_node_usage *usage, int64_t now_ms,
                            uint64_t registration, char **errmsg)
{
    if (zone == NULL)
        zone = "";
    int rc = check_registration(node_id, address, zone, usage, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (!catalog_token_id_ok(token_id, 16))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad token id");
    char name[DFS_TOKEN_NAME_MAX + 1];
    snprintf(name, sizeof name, "node %.12s", node_id); /* as `dfs nodes` shows it */
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        struct dfs_node_rec old;
        int found = catalog_get_node(cat, node_id, &old, errmsg);
        if (found == 1)
            rc = dfs_seterr(errmsg, DFS_EEXIST, "node %s is already enrolled", node_id);
        else
            rc = found;
        if (rc == DFS_OK) {
            found = catalog_query(cat, S_TOKEN_GET, errmsg, "t", token_id);
            if (found == 1) {
                catalog_release(cat->st[S_TOKEN_GET]);
                rc = dfs_seterr(errmsg, DFS_EEXIST, "token id %s exists", token_id);
            } else {
                rc = found;
            }
        }
        if (rc == DFS_OK)
            rc = catalog_exec(cat, S_TOKEN_INSERT, NULL, errmsg, "tttbiit", token_id, name, "node",
                              (const void *)token_hash, (size_t)32, now_ms, (int64_t)0, node_id);
        if (rc == DFS_OK)
            rc = upsert_node(cat, node_id, address, zone, usage, now_ms, registration, errmsg);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO, "node enrolled id=%s address=%s zone=%s token=%s", node_id, address,
                zone, token_id);
    return rc;
}

int dfs_catalog_node_token(dfs_catalog *cat, const char *node_id, char token_id[17], char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    rc = catalog_query(cat, S_TOKEN_OF_NODE, errmsg, "t", node_id);
    if (rc == 1) {
        catalog_col_copy(cat, S_TOKEN_OF_NODE, 0, token_id, 17);
        catalog_release(cat->st[S_TOKEN_OF_NODE]);
        rc = DFS_OK;
    } else if (rc == 0) {
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "node %s has no token", node_id);
    }
    catalog_unlock(cat);
    return rc;
}

int dfs_catalog_node_heartbeat(dfs_catalog *cat, const char *node_id, uint64_t registration,
                               const struct dfs_node_usage *usage, int64_t now_ms, bool *known,
                               char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc == DFS_OK)
        rc = check_usage(usage, errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    struct dfs_node_rec old = {0};
    int found = 0;
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        found = catalog_get_node(cat, node_id, &old, errmsg);
        rc = found < 0 ? found : DFS_OK;
        if (found == 1 && registration != DFS_CATALOG_KEEP && old.registration != registration)
            rc = dfs_seterr(errmsg, DFS_EPRECOND,
                            "node %s was registered again since (now at %s): this process was "
                            "replaced",
                            node_id, old.address);
        else if (found == 1)
            rc = catalog_exec(cat, S_NODE_HEARTBEAT, NULL, errmsg, "tiiiii", node_id,
                              (int64_t)usage->capacity_bytes, (int64_t)usage->used_bytes,
                              (int64_t)usage->free_bytes, (int64_t)usage->fragment_count, now_ms);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
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
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_node_rec n;
    catalog_lock(cat);
    int found = catalog_get_node(cat, node_id, &n, errmsg);
    catalog_unlock(cat);
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
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    if (state < DFS_NODE_ALIVE || state > DFS_NODE_DECOMMISSIONED)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad node state %d", (int)state);
    int changes = 0;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        rc = catalog_exec(cat, S_NODE_SET_STATE, &changes, errmsg, "tt", node_id,
                          dfs_catalog_node_state_name(state));
        if (rc == DFS_OK && changes == 0)
            rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "no storage node %s", node_id);
        if (rc == DFS_OK && state == DFS_NODE_ALIVE)
            rc = catalog_exec(cat, S_REPAIRS_DROP_DRAIN, NULL, errmsg, "t", node_id);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO, "node state set id=%s state=%s", node_id,
                dfs_catalog_node_state_name(state));
    return rc;
}

static void read_node_row(dfs_catalog *cat, enum stmt id, void *slot)
{
    catalog_read_node(cat, id, slot);
}

int dfs_catalog_nodes_list(dfs_catalog *cat, struct dfs_node_rec **out, size_t *n, char **errmsg)
{
    return catalog_collect_rows(cat, S_NODES_LIST, sizeof **out, read_node_row, out, n, errmsg);
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
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int row = catalog_query(cat, S_NODES_LATE, errmsg, "ii", sub_sat(now_ms, suspect_after_ms),
                                dead_cutoff);
        while (row == 1) {
            struct late *l = catalog_grow(&late, &nlate, sizeof *l);
            if (l == NULL) {
                catalog_release(cat->st[S_NODES_LATE]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            catalog_col_copy(cat, S_NODES_LATE, 0, l->id, sizeof l->id);
            catalog_col_copy(cat, S_NODES_LATE, 1, l->address, sizeof l->address);
            l->from = (enum dfs_node_state)NAME_INDEX(catalog_node_state_names,
                                                      catalog_col_text(cat, S_NODES_LATE, 2));
            int64_t hb = catalog_col_i64(cat, S_NODES_LATE, 3);
            l->silent_ms = now_ms - hb;
            l->to = hb < dead_cutoff ? DFS_NODE_DEAD : DFS_NODE_SUSPECT;
            row = catalog_next_row(cat, S_NODES_LATE, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        for (size_t i = 0; rc == DFS_OK && i < nlate; i++)
            rc = catalog_exec(cat, S_NODE_SET_STATE, NULL, errmsg, "tt", late[i].id,
                              dfs_catalog_node_state_name(late[i].to));
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
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
static int catalog_check_target(dfs_catalog *cat, const char *node_id, char **errmsg)
{
    struct dfs_node_rec n;
    int found = catalog_get_node(cat, node_id, &n, errmsg);
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
        rc = catalog_check_u64(req->size, "file size", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_u64(req->fragment_size, "fragment size", errmsg);
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
        rc = catalog_check_u64(pf->size, "fragment size", errmsg);
        if (rc != DFS_OK)
            return rc;
        total += pf->size; /* each <= INT64_MAX and at most 256 of them: no overflow */
        if (pf->nnodes != copies || pf->node_ids == NULL)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "plan fragment %" PRIu32 " has %zu nodes, want %" PRIu32, pf->index,
                              pf->node_ids == NULL ? 0 : pf->nnodes, copies);
        for (size_t j = 0; j < pf->nnodes; j++) {
            rc = catalog_check_id(pf->node_ids[j], "node", errmsg);
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
        int found = catalog_query(cat, S_FILE_GET_PATH, errmsg, "t", req->path);
        if (found == 1)
            catalog_release(cat->st[S_FILE_GET_PATH]);
        if (found < 0)
            return found;
        if (found == 1)
            return dfs_seterr(errmsg, DFS_EEXIST, "%s already exists (use --force to replace it)",
                              req->path);
    }
    int rc = DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < req->nfragments; i++) {
        for (size_t j = 0; rc == DFS_OK && j < req->fragments[i].nnodes; j++)
            rc = catalog_check_target(cat, req->fragments[i].node_ids[j], errmsg);
    }
    if (rc != DFS_OK)
        return rc;

    char file_id[DFS_ID_HEX + 1];
    if (dfs_id_random(file_id) != DFS_OK)
        return dfs_seterr(errmsg, DFS_EIO, "cannot draw a random file id");
    const struct dfs_redundancy *r = &req->redundancy;
    rc =
        catalog_exec(cat, S_FILE_INSERT, NULL, errmsg, "ttitiiiitiiiii", file_id, req->path,
                     (int64_t)req->size, catalog_scheme_names[r->scheme], (int64_t)r->replicas,
                     (int64_t)r->fragments, (int64_t)r->data, (int64_t)r->parity,
                     dfs_placement_policy_name(req->policy), (int64_t)req->overwrite,
                     (int64_t)req->fragment_size, (int64_t)req->cell_size, now_ms, req->expires_ms);
    for (size_t i = 0; rc == DFS_OK && i < req->nfragments; i++) {
        const struct dfs_plan_fragment *pf = &req->fragments[i];
        char frag_id[DFS_FRAGMENT_ID_HEX + 1];
        dfs_fragment_id(file_id, pf->index, frag_id);
        rc = catalog_exec(cat, S_FRAGMENT_INSERT, NULL, errmsg, "ttii", frag_id, file_id,
                          (int64_t)pf->index, (int64_t)pf->size);
        for (size_t j = 0; rc == DFS_OK && j < pf->nnodes; j++)
            rc = catalog_exec(cat, S_REPLICA_INSERT, NULL, errmsg, "tti", frag_id, pf->node_ids[j],
                              (int64_t)j);
    }
    if (rc == DFS_OK)
        rc = catalog_find_file(cat, S_FILE_GET_ID, file_id, true, out, errmsg);
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
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, create_locked(cat, req, now_ms, &f, errmsg), errmsg);
    catalog_unlock(cat);
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
    int rc = catalog_find_file(cat, S_FILE_GET_ID, file_id, true, out, errmsg);
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
    rc = catalog_check_target(cat, fresh, errmsg);
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
    rc = catalog_exec(cat, S_REPLICA_MOVE, NULL, errmsg, "ttt", fr->fragment_id, failed, fresh);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_DELETION_INSERT, NULL, errmsg, "tti", fr->fragment_id, failed,
                          now_ms);
    struct dfs_node_rec n;
    int found = rc == DFS_OK ? catalog_get_node(cat, fresh, &n, errmsg) : rc;
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
    int rc = catalog_check_id(file_id, "file", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_id(failed_node_id, "node", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_id(new_node_id, "node", errmsg);
    if (rc == DFS_OK && strcmp(failed_node_id, new_node_id) == 0)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "the replacement is the failed node %s itself",
                        new_node_id);
    if (rc != DFS_OK)
        return rc;
    struct dfs_replica_rec r;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(
            cat,
            replace_locked(cat, file_id, index, failed_node_id, new_node_id, now_ms, &r, errmsg),
            errmsg);
    catalog_unlock(cat);
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
            int rc = catalog_check_id(node, "node", errmsg);
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
    int rc = catalog_exec(cat, S_DELETIONS_QUEUE_FILE, NULL, errmsg, "ti", file_id, now_ms);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_FILE_DELETE, NULL, errmsg, "t", file_id);
    return rc;
}

/*
 * Whether f is the committed result of this very commit request: the client's retry of a commit
 * whose answer it lost (the service restarted between the commit and its reply).
 */
static bool same_commit(const struct dfs_file_rec *f, const uint8_t *sha256,
                        const struct dfs_commit_fragment *frags, size_t nfrags)
{
    if (f->state != DFS_FILE_COMMITTED || nfrags != f->nfragments || frags == NULL ||
        memcmp(f->sha256, sha256, DFS_SHA256_LEN) != 0)
        return false;
    for (size_t i = 0; i < nfrags; i++)
        if (frags[i].index >= f->nfragments ||
            f->fragments[frags[i].index].checksum != frags[i].checksum)
            return false;
    return true;
}

static int commit_locked(dfs_catalog *cat, const char *file_id, const uint8_t *sha256,
                         const struct dfs_commit_fragment *frags, size_t nfrags, int64_t now_ms,
                         struct dfs_file_rec **out, char **replaced, bool *again, char **errmsg)
{
    struct dfs_file_rec *f = NULL, *old = NULL;
    int rc = catalog_find_file(cat, S_FILE_GET_ID, file_id, true, &f, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (f != NULL && same_commit(f, sha256, frags, nfrags)) {
        *again = true;
        *out = f;
        return DFS_OK;
    }
    dfs_catalog_file_rec_free(f);
    f = NULL;
    rc = find_pending(cat, file_id, now_ms, &f, errmsg);
    if (rc != DFS_OK)
        return rc;
    rc = validate_commit(f, frags, nfrags, errmsg);
    if (rc == DFS_OK)
        rc = catalog_find_file(cat, S_FILE_GET_PATH, f->path, false, &old, errmsg);
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
        rc = catalog_exec(cat, S_FRAGMENT_SET_CHECKSUM, NULL, errmsg, "ti", frag_id,
                          (int64_t)cf->checksum);
        for (size_t j = 0; rc == DFS_OK && j < cf->nnodes; j++)
            rc = catalog_exec(cat, S_REPLICA_ACK, NULL, errmsg, "tt", frag_id, cf->node_ids[j]);
    }
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_DELETIONS_QUEUE_UNACKED, NULL, errmsg, "ti", file_id, now_ms);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_REPLICAS_DROP_UNACKED, NULL, errmsg, "t", file_id);
    int changes = 0;
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_FILE_COMMIT, &changes, errmsg, "tbi", file_id,
                          (const void *)sha256, (size_t)DFS_SHA256_LEN, now_ms);
    if (rc == DFS_OK && changes != 1)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: file %s left the pending state", file_id);
    dfs_catalog_file_rec_free(f);
    dfs_catalog_file_rec_free(old);
    if (rc == DFS_OK)
        rc = catalog_find_file(cat, S_FILE_GET_ID, file_id, true, out, errmsg);
    return rc;
}

int dfs_catalog_file_commit(dfs_catalog *cat, const char *file_id,
                            const uint8_t sha256[DFS_SHA256_LEN],
                            const struct dfs_commit_fragment *fragments, size_t nfragments,
                            int64_t now_ms, struct dfs_file_rec **out, char **errmsg)
{
    int rc = catalog_check_id(file_id, "file", errmsg);
    if (rc != DFS_OK)
        return rc;
    if (sha256 == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "commit without a SHA-256");
    struct dfs_file_rec *f = NULL;
    char *replaced = NULL;
    bool again = false;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat,
                            commit_locked(cat, file_id, sha256, fragments, nfragments, now_ms, &f,
                                          &replaced, &again, errmsg),
                            errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        free(replaced);
        return rc;
    }
    if (again)
        dfs_log(DFS_LOG_INFO, "file commit repeated id=%s path=%s", f->file_id, f->path);
    else
        dfs_log(DFS_LOG_INFO, "file committed id=%s path=%s size=%" PRIu64 " replaced=%s",
                f->file_id, f->path, f->size, replaced == NULL ? "none" : replaced);
    free(replaced);
    *out = f;
    return DFS_OK;
}

/* Abort one pending file; returns DFS_ENOTFOUND (no message) when it is not pending. */
static int abort_locked(dfs_catalog *cat, const char *file_id, int64_t now_ms, char **errmsg)
{
    struct dfs_file_rec *f = NULL;
    int rc = catalog_find_file(cat, S_FILE_GET_ID, file_id, false, &f, errmsg);
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
    int rc = catalog_check_id(file_id, "file", errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, abort_locked(cat, file_id, now_ms, errmsg), errmsg);
    catalog_unlock(cat);
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
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int row = catalog_query(cat, S_FILES_EXPIRED, errmsg, "i", now_ms);
        while (row == 1) {
            struct expired *e = catalog_grow(&v, &n, sizeof *e);
            const char *path = catalog_col_text(cat, S_FILES_EXPIRED, 1);
            if (e != NULL) {
                catalog_col_copy(cat, S_FILES_EXPIRED, 0, e->id, sizeof e->id);
                e->path = strdup(path == NULL ? "" : path);
            }
            if (e == NULL || e->path == NULL) {
                catalog_release(cat->st[S_FILES_EXPIRED]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            row = catalog_next_row(cat, S_FILES_EXPIRED, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        for (size_t i = 0; rc == DFS_OK && i < n; i++)
            rc = remove_file(cat, v[i].id, now_ms, errmsg);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
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
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, catalog_find_file(cat, S_FILE_GET_PATH, path, true, &f, errmsg),
                            errmsg);
    catalog_unlock(cat);
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
    int rc = catalog_check_id(file_id, "file", errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_file_rec *f = NULL;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, catalog_find_file(cat, S_FILE_GET_ID, file_id, true, &f, errmsg),
                            errmsg);
    catalog_unlock(cat);
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
    catalog_lock(cat);
    int rc = catalog_query(cat, S_FILES_LIST, errmsg, "ttti", lo, end, after, (int64_t)limit + 1);
    while (rc == 1) {
        if (count == limit) { /* one row beyond the page: there is more */
            extra = true;
            catalog_release(cat->st[S_FILES_LIST]);
            rc = 0;
            break;
        }
        struct dfs_file_rec *slot = catalog_grow(&v, &count, sizeof *slot);
        int r = slot == NULL ? dfs_seterr(errmsg, DFS_ENOMEM, "out of memory")
                             : read_file(cat, S_FILES_LIST, slot, errmsg);
        if (r != DFS_OK) {
            catalog_release(cat->st[S_FILES_LIST]);
            rc = r;
            break;
        }
        rc = catalog_next_row(cat, S_FILES_LIST, errmsg);
    }
    catalog_unlock(cat);
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
    int rc = catalog_find_file(cat, S_FILE_GET_PATH, path, true, out, errmsg);
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
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, delete_locked(cat, path, now_ms, &f, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        return rc;
    }
    dfs_log(DFS_LOG_INFO, "file deleted id=%s path=%s", f->file_id, f->path);
    *out = f;
    return DFS_OK;
}

/* ---- Deletion queue -------------------------------------------------------------------------- */

int dfs_catalog_deletions_fetch(dfs_catalog *cat, int64_t now_ms, int64_t grace_ms, size_t max,
                                struct dfs_deletion_rec **out, size_t *n, char **errmsg)
{
    int64_t queued_before = grace_ms > 0 ? now_ms - grace_ms : INT64_MAX;
    if (max > INT32_MAX)
        max = INT32_MAX;
    struct dfs_deletion_rec *v = NULL;
    size_t count = 0;
    int dropped = 0;
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        rc = catalog_exec(cat, S_DELETIONS_DROP_ORPHANS, &dropped, errmsg, "");
        int row = rc == DFS_OK && max > 0 ? catalog_query(cat, S_DELETIONS_FETCH, errmsg, "iii",
                                                          now_ms, (int64_t)max, queued_before)
                                          : rc;
        while (row == 1) {
            struct dfs_deletion_rec *d = catalog_grow(&v, &count, sizeof *d);
            if (d == NULL) {
                catalog_release(cat->st[S_DELETIONS_FETCH]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            catalog_col_copy(cat, S_DELETIONS_FETCH, 0, d->fragment_id, sizeof d->fragment_id);
            catalog_col_copy(cat, S_DELETIONS_FETCH, 1, d->node_id, sizeof d->node_id);
            catalog_col_copy(cat, S_DELETIONS_FETCH, 2, d->address, sizeof d->address);
            row = catalog_next_row(cat, S_DELETIONS_FETCH, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
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

int dfs_catalog_copy_get(dfs_catalog *cat, const char *fragment_id, const char *node_id,
                         bool *recorded, uint64_t *size, uint32_t *checksum, char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "invalid fragment id");
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    int row = catalog_query(cat, S_COPY_GET, errmsg, "tt", fragment_id, node_id);
    if (row == 1) {
        if (size != NULL)
            *size = (uint64_t)sqlite3_column_int64(cat->st[S_COPY_GET], 0);
        if (checksum != NULL)
            *checksum = (uint32_t)sqlite3_column_int64(cat->st[S_COPY_GET], 1);
        catalog_release(cat->st[S_COPY_GET]);
    }
    catalog_unlock(cat);
    if (row < 0)
        return row;
    *recorded = row == 1;
    return DFS_OK;
}

static int deletion_update(dfs_catalog *cat, enum stmt id, const char *fragment_id,
                           const char *node_id, int64_t until_ms, char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s'",
                          fragment_id == NULL ? "" : fragment_id);
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        if (id == S_DELETION_POSTPONE)
            rc = catalog_exec(cat, id, NULL, errmsg, "tti", fragment_id, node_id, until_ms);
        else
            rc = catalog_exec(cat, id, NULL, errmsg, "tt", fragment_id, node_id);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
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
    int row = catalog_query(cat, S_PLACEMENT_FAMILIES, errmsg, "");
    while (row == 1) {
        struct dfs_placement_state *st = catalog_grow(out, n, sizeof *st);
        if (st == NULL) {
            catalog_release(cat->st[S_PLACEMENT_FAMILIES]);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        st->policy = catalog_policy_from_name(catalog_col_text(cat, S_PLACEMENT_FAMILIES, 1));
        int64_t width = catalog_col_i64(cat, S_PLACEMENT_FAMILIES, 2);
        int64_t param = catalog_col_i64(cat, S_PLACEMENT_FAMILIES, 3);
        int64_t perms = catalog_col_i64(cat, S_PLACEMENT_FAMILIES, 4);
        char key[64];
        family_key(key, sizeof key, st->policy, (uint32_t)width);
        const char *fam = catalog_col_text(cat, S_PLACEMENT_FAMILIES, 0);
        if (!dfs_placement_policy_has_sets(st->policy) || width < 1 ||
            width > DFS_PLACEMENT_WIDTH_MAX || param < 0 || param > UINT32_MAX || perms < 1 ||
            perms > UINT32_MAX || fam == NULL || strcmp(fam, key) != 0) {
            char name[64];
            snprintf(name, sizeof name, "%s", fam == NULL ? "" : fam);
            catalog_release(cat->st[S_PLACEMENT_FAMILIES]);
            return dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: placement family '%s' is corrupt",
                              name);
        }
        st->width = (uint32_t)width;
        st->param = (uint32_t)param;
        st->nperms = (uint32_t)perms;
        row = catalog_next_row(cat, S_PLACEMENT_FAMILIES, errmsg);
    }
    if (row < 0)
        return row;
    size_t fi = 0;
    char key[64] = "";
    if (*n > 0)
        family_key(key, sizeof key, (*out)[0].policy, (*out)[0].width);
    row = catalog_query(cat, S_PLACEMENT_SETS, errmsg, "");
    while (row == 1) {
        const char *fam = catalog_col_text(cat, S_PLACEMENT_SETS, 0);
        while (fam != NULL && fi < *n && strcmp(fam, key) != 0) {
            if (++fi < *n)
                family_key(key, sizeof key, (*out)[fi].policy, (*out)[fi].width);
        }
        int64_t set_id = catalog_col_i64(cat, S_PLACEMENT_SETS, 1);
        int64_t pos = catalog_col_i64(cat, S_PLACEMENT_SETS, 2);
        int64_t perm = catalog_col_i64(cat, S_PLACEMENT_SETS, 3);
        const char *node = catalog_col_text(cat, S_PLACEMENT_SETS, 4);
        struct dfs_placement_state *st = fi < *n ? &(*out)[fi] : NULL;
        struct dfs_placement_set *set =
            st != NULL && st->nsets > 0 && set_id == (int64_t)st->nsets - 1
                ? &st->sets[st->nsets - 1]
                : NULL;
        if (st != NULL && set == NULL && set_id == (int64_t)st->nsets && pos == 0) {
            set = catalog_grow(&st->sets, &st->nsets, sizeof *set);
            if (set == NULL) {
                catalog_release(cat->st[S_PLACEMENT_SETS]);
                return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            }
            set->perm = (uint32_t)perm;
        }
        if (set == NULL || node == NULL || pos != (int64_t)set->nnodes ||
            perm != (int64_t)set->perm) {
            char name[64]; /* the column's text dies with the statement's reset */
            snprintf(name, sizeof name, "%s", fam == NULL ? "" : fam);
            catalog_release(cat->st[S_PLACEMENT_SETS]);
            return dfs_seterr(errmsg, DFS_EINTERNAL,
                              "catalog: placement family '%s' is corrupt at set %" PRId64
                              " position %" PRId64,
                              name, set_id, pos);
        }
        char *copy = strdup(node);
        char **slot =
            copy == NULL ? NULL : catalog_grow(&set->node_ids, &set->nnodes, sizeof *slot);
        if (slot == NULL) {
            free(copy);
            catalog_release(cat->st[S_PLACEMENT_SETS]);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        *slot = copy;
        row = catalog_next_row(cat, S_PLACEMENT_SETS, errmsg);
    }
    return row < 0 ? row : DFS_OK;
}

int dfs_catalog_placement_load(dfs_catalog *cat, struct dfs_placement_state **out, size_t *n,
                               char **errmsg)
{
    struct dfs_placement_state *v = NULL;
    size_t count = 0;
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, placement_load_locked(cat, &v, &count, errmsg), errmsg);
    catalog_unlock(cat);
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
            int rc = catalog_check_id(set->node_ids[j], "node", errmsg);
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
    int rc = catalog_exec(cat, S_PLACEMENT_DELETE, NULL, errmsg, "t", key);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_PLACEMENT_FAMILY_INSERT, NULL, errmsg, "ttiiii", key,
                          dfs_placement_policy_name(st->policy), (int64_t)st->width,
                          (int64_t)st->param, (int64_t)st->nperms, now_ms);
    for (size_t s = 0; rc == DFS_OK && s < st->nsets; s++)
        for (size_t j = 0; rc == DFS_OK && j < st->sets[s].nnodes; j++)
            rc = catalog_exec(cat, S_PLACEMENT_SET_INSERT, NULL, errmsg, "tiiit", key, (int64_t)s,
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
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, placement_save_locked(cat, st, key, now_ms, errmsg), errmsg);
    catalog_unlock(cat);
    return rc;
}

/* ---- Nodes: prefixes, drains, copies --------------------------------------------------------- */

int dfs_catalog_node_resolve(dfs_catalog *cat, const char *prefix, struct dfs_node_rec *out,
                             char **errmsg)
{
    size_t len = prefix == NULL ? 0 : strlen(prefix);
    if (len == 0 || len > DFS_ID_HEX || !dfs_id_is_hex(prefix, len))
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "bad node id '%s' (want 1 to %d lower-case hex digits of a node id)",
                          prefix == NULL ? "" : prefix, DFS_ID_HEX);
    struct dfs_node_rec n[2];
    size_t count = 0;
    catalog_lock(cat);
    int rc = catalog_query(cat, S_NODE_RESOLVE, errmsg, "t", prefix);
    while (rc == 1) {
        catalog_read_node(cat, S_NODE_RESOLVE, &n[count++]);
        rc = count < 2 ? catalog_next_row(cat, S_NODE_RESOLVE, errmsg) : 0;
    }
    if (count == 2)
        catalog_release(cat->st[S_NODE_RESOLVE]);
    catalog_unlock(cat);
    if (rc < 0)
        return rc;
    if (count == 0)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no storage node %s%s", prefix,
                          len < DFS_ID_HEX ? "..." : "");
    if (count > 1)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "node id prefix '%s' is ambiguous (it matches %s and %s at least): "
                          "give more digits",
                          prefix, n[0].id, n[1].id);
    *out = n[0];
    return DFS_OK;
}

int dfs_catalog_nodes_finish_drains(dfs_catalog *cat, size_t *n, char **errmsg)
{
    struct done {
        char id[DFS_ID_HEX + 1];
        char address[DFS_NODE_ADDRESS_MAX + 1];
    } *v = NULL;
    size_t count = 0;
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int row = catalog_query(cat, S_NODES_DRAINED, errmsg, "");
        while (row == 1) {
            struct done *d = catalog_grow(&v, &count, sizeof *d);
            if (d == NULL) {
                catalog_release(cat->st[S_NODES_DRAINED]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            catalog_col_copy(cat, S_NODES_DRAINED, 0, d->id, sizeof d->id);
            catalog_col_copy(cat, S_NODES_DRAINED, 1, d->address, sizeof d->address);
            row = catalog_next_row(cat, S_NODES_DRAINED, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        for (size_t i = 0; rc == DFS_OK && i < count; i++)
            rc = catalog_exec(cat, S_NODE_SET_STATE, NULL, errmsg, "tt", v[i].id, "decommissioned");
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    for (size_t i = 0; rc == DFS_OK && i < count; i++)
        dfs_log(DFS_LOG_INFO, "node drained, now decommissioned id=%s address=%s", v[i].id,
                v[i].address);
    free(v);
    if (rc == DFS_OK && n != NULL)
        *n = count;
    return rc;
}

static void read_node_copies(dfs_catalog *cat, enum stmt id, void *slot)
{
    struct dfs_node_copies *c = slot;
    catalog_col_copy(cat, id, 0, c->node_id, sizeof c->node_id);
    c->copies = (uint64_t)catalog_col_i64(cat, id, 1);
    c->bytes = (uint64_t)catalog_col_i64(cat, id, 2);
}

int dfs_catalog_node_copies(dfs_catalog *cat, struct dfs_node_copies **out, size_t *n,
                            char **errmsg)
{
    return catalog_collect_rows(cat, S_NODE_COPIES, sizeof **out, read_node_copies, out, n, errmsg);
}

/* ---- Repair queue ---------------------------------------------------------------------------- */

static const char *const reason_names[] = {
    [DFS_REPAIR_UNSPECIFIED] = "unspecified",
    [DFS_REPAIR_DEAD] = "dead",
    [DFS_REPAIR_CORRUPT] = "corrupt",
    [DFS_REPAIR_MISSING] = "missing",
    [DFS_REPAIR_DRAIN] = "drain",
    [DFS_REPAIR_REBALANCE] = "rebalance",
    [DFS_REPAIR_DECOMMISSION] = "decommission",
};

const char *dfs_catalog_repair_reason_name(enum dfs_repair_reason reason)
{
    if ((unsigned)reason >= sizeof reason_names / sizeof reason_names[0])
        return "unknown";
    return reason_names[reason];
}

static bool is_move(enum dfs_repair_reason r)
{
    return r == DFS_REPAIR_DRAIN || r == DFS_REPAIR_REBALANCE;
}

static void read_repair(dfs_catalog *cat, enum stmt id, struct dfs_repair_rec *r)
{
    memset(r, 0, sizeof *r);
    catalog_col_copy(cat, id, 0, r->fragment_id, sizeof r->fragment_id);
    r->reason = (enum dfs_repair_reason)NAME_INDEX(reason_names, catalog_col_text(cat, id, 1));
    r->margin = catalog_col_i64(cat, id, 2);
    catalog_col_copy(cat, id, 3, r->from_node, sizeof r->from_node);
    catalog_col_copy(cat, id, 4, r->target_node, sizeof r->target_node);
    r->running = strcmp(catalog_col_text(cat, id, 5), "running") == 0;
    r->attempts = (uint32_t)catalog_col_i64(cat, id, 6);
    r->queued_ms = catalog_col_i64(cat, id, 7);
    r->not_before_ms = catalog_col_i64(cat, id, 8);
    r->started_ms = catalog_col_i64(cat, id, 9);
}

/* The queue row of a fragment: 1 (found), 0 (none) or a DFS code. */
static int get_repair(dfs_catalog *cat, const char *fragment_id, struct dfs_repair_rec *r,
                      char **errmsg)
{
    int rc = catalog_query(cat, S_REPAIR_GET, errmsg, "t", fragment_id);
    if (rc == 1) {
        read_repair(cat, S_REPAIR_GET, r);
        catalog_release(cat->st[S_REPAIR_GET]);
    }
    return rc;
}

/* One acknowledged copy of a fragment with its node's state. */
struct copy {
    char node_id[DFS_ID_HEX + 1];
    enum dfs_node_state state;
    int64_t pos;
};

static bool catalog_state_live(enum dfs_node_state s)
{
    return s == DFS_NODE_ALIVE || s == DFS_NODE_SUSPECT;
}

static bool catalog_state_readable(enum dfs_node_state s)
{
    return catalog_state_live(s) || s == DFS_NODE_DRAINING;
}

/* A fragment, its copies and what the liveness rules make of them (catalog.h, Repair queue). */
struct assess {
    char file_id[DFS_ID_HEX + 1];
    uint32_t index;
    uint64_t size;
    uint32_t checksum;
    struct dfs_redundancy red;
    bool committed;
    struct copy *copies; /* by pos; malloc'd */
    size_t ncopies;
    uint32_t live, readable, alive;
    uint32_t wanted;
    int64_t margin;
    bool lost;  /* unrecoverable: never queued */
    bool under; /* fewer live copies than wanted */
};

static void assess_clear(struct assess *a)
{
    free(a->copies);
    a->copies = NULL;
    a->ncopies = 0;
}

/* Fill *a for fragment_id: 1 (found), 0 (no such fragment) or a DFS code. */
static int assess_fragment(dfs_catalog *cat, const char *fragment_id, struct assess *a,
                           char **errmsg)
{
    memset(a, 0, sizeof *a);
    int rc = catalog_query(cat, S_FRAGMENT_INFO, errmsg, "t", fragment_id);
    if (rc <= 0)
        return rc;
    catalog_col_copy(cat, S_FRAGMENT_INFO, 0, a->file_id, sizeof a->file_id);
    a->index = (uint32_t)catalog_col_i64(cat, S_FRAGMENT_INFO, 1);
    a->size = (uint64_t)catalog_col_i64(cat, S_FRAGMENT_INFO, 2);
    a->checksum = (uint32_t)catalog_col_i64(cat, S_FRAGMENT_INFO, 3);
    a->red.scheme = (enum dfs_scheme)NAME_INDEX(catalog_scheme_names,
                                                catalog_col_text(cat, S_FRAGMENT_INFO, 4));
    a->red.replicas = (uint32_t)catalog_col_i64(cat, S_FRAGMENT_INFO, 5);
    a->red.data = (uint32_t)catalog_col_i64(cat, S_FRAGMENT_INFO, 6);
    a->red.parity = (uint32_t)catalog_col_i64(cat, S_FRAGMENT_INFO, 7);
    a->committed = strcmp(catalog_col_text(cat, S_FRAGMENT_INFO, 8), "committed") == 0;
    catalog_release(cat->st[S_FRAGMENT_INFO]);

    rc = catalog_query(cat, S_FRAGMENT_COPIES, errmsg, "t", fragment_id);
    while (rc == 1) {
        struct copy *c = catalog_grow(&a->copies, &a->ncopies, sizeof *c);
        if (c == NULL) {
            catalog_release(cat->st[S_FRAGMENT_COPIES]);
            assess_clear(a);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        catalog_col_copy(cat, S_FRAGMENT_COPIES, 0, c->node_id, sizeof c->node_id);
        c->state = (enum dfs_node_state)NAME_INDEX(catalog_node_state_names,
                                                   catalog_col_text(cat, S_FRAGMENT_COPIES, 1));
        c->pos = catalog_col_i64(cat, S_FRAGMENT_COPIES, 2);
        a->live += catalog_state_live(c->state);
        a->readable += catalog_state_readable(c->state);
        a->alive += c->state == DFS_NODE_ALIVE;
        rc = catalog_next_row(cat, S_FRAGMENT_COPIES, errmsg);
    }
    if (rc < 0) {
        assess_clear(a);
        return rc;
    }
    if (a->red.scheme == DFS_SCHEME_ERASURE) {
        rc = catalog_query(cat, S_FILE_FRAG_COUNTS, errmsg, "t", a->file_id);
        if (rc < 0) {
            assess_clear(a);
            return rc;
        }
        int64_t file_live = 0, file_readable = 0;
        if (rc == 1) {
            file_live = catalog_col_i64(cat, S_FILE_FRAG_COUNTS, 0);
            file_readable = catalog_col_i64(cat, S_FILE_FRAG_COUNTS, 1);
            catalog_release(cat->st[S_FILE_FRAG_COUNTS]);
        }
        a->wanted = 1;
        a->lost = file_readable < (int64_t)a->red.data;
        a->margin = file_live - (int64_t)a->red.data;
    } else {
        a->wanted = a->red.replicas;
        a->lost = a->readable == 0;
        a->margin = (int64_t)a->live - 1;
    }
    a->under = a->live < a->wanted;
    return 1;
}

/* Why an under-replicated fragment needs work, from the states of its copies. */
static enum dfs_repair_reason reason_of(const struct assess *a, const char **from)
{
    *from = NULL;
    bool decom = false, dead = false;
    for (size_t i = 0; i < a->ncopies; i++) {
        if (a->copies[i].state == DFS_NODE_DRAINING && *from == NULL)
            *from = a->copies[i].node_id;
        decom = decom || a->copies[i].state == DFS_NODE_DECOMMISSIONED;
        dead = dead || a->copies[i].state == DFS_NODE_DEAD;
    }
    if (*from != NULL)
        return DFS_REPAIR_DRAIN;
    if (decom)
        return DFS_REPAIR_DECOMMISSION;
    return dead ? DFS_REPAIR_DEAD : DFS_REPAIR_MISSING;
}

/* Drop one copy's replica row and, when asked, queue the removal of its bytes from the node. */
static int drop_copy(dfs_catalog *cat, const char *fragment_id, const char *node_id,
                     bool delete_bytes, int64_t now_ms, char **errmsg)
{
    int rc = catalog_exec(cat, S_REPLICA_DELETE, NULL, errmsg, "tt", fragment_id, node_id);
    if (rc == DFS_OK && delete_bytes)
        rc =
            catalog_exec(cat, S_DELETION_INSERT, NULL, errmsg, "tti", fragment_id, node_id, now_ms);
    return rc;
}

/*
 * A fragment back at full redundancy on live nodes forgets its copies on dead and decommissioned
 * nodes: the layout then lists where the fragment is. A dead node's bytes are queued for removal
 * (sent if it ever returns; until then the node is not chosen for the fragment again); a
 * decommissioned node's are left alone (retired; if it is put back to service, its inventory
 * report finds them unknown). *n (may be NULL) counts the copies dropped.
 */
static int drop_gone_copies(dfs_catalog *cat, const char *fragment_id, const struct assess *a,
                            int64_t now_ms, size_t *n, char **errmsg)
{
    int rc = DFS_OK;
    if (a->live < a->wanted)
        return DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < a->ncopies; i++) {
        const struct copy *c = &a->copies[i];
        if (c->state != DFS_NODE_DEAD && c->state != DFS_NODE_DECOMMISSIONED)
            continue;
        rc = drop_copy(cat, fragment_id, c->node_id, c->state == DFS_NODE_DEAD, now_ms, errmsg);
        if (rc == DFS_OK && n != NULL)
            (*n)++;
        dfs_log(DFS_LOG_INFO, "copy on a %s node forgotten fragment=%s node=%s",
                dfs_catalog_node_state_name(c->state), fragment_id, c->node_id);
    }
    return rc;
}

/* Does node hold a replica row (any state) of the fragment? 1, 0 or a DFS code. */
static int has_replica(dfs_catalog *cat, const char *fragment_id, const char *node_id,
                       char **errmsg)
{
    int rc = catalog_query(cat, S_REPLICA_GET, errmsg, "tt", fragment_id, node_id);
    if (rc == 1)
        catalog_release(cat->st[S_REPLICA_GET]);
    return rc;
}

/* Queue the removal of a repair target's copy unless the catalog records it as a replica. */
static int queue_orphan(dfs_catalog *cat, const char *fragment_id, const char *target,
                        int64_t now_ms, char **errmsg)
{
    if (target == NULL || target[0] == '\0')
        return DFS_OK;
    int rc = has_replica(cat, fragment_id, target, errmsg);
    if (rc == 0)
        rc = catalog_exec(cat, S_DELETION_INSERT, NULL, errmsg, "tti", fragment_id, target, now_ms);
    return rc < 0 ? rc : DFS_OK;
}

static void read_repair_row(dfs_catalog *cat, enum stmt id, void *slot)
{
    read_repair(cat, id, slot);
}

int dfs_catalog_repairs_list(dfs_catalog *cat, struct dfs_repair_rec **out, size_t *n,
                             char **errmsg)
{
    return catalog_collect_rows(cat, S_REPAIRS_LIST, sizeof **out, read_repair_row, out, n, errmsg);
}

int dfs_catalog_repair_counts(dfs_catalog *cat, uint64_t *queued, uint64_t *running, char **errmsg)
{
    int64_t q = 0, r = 0;
    catalog_lock(cat);
    int rc = catalog_query(cat, S_REPAIR_COUNTS, errmsg, "");
    if (rc == 1) {
        q = catalog_col_i64(cat, S_REPAIR_COUNTS, 0);
        r = catalog_col_i64(cat, S_REPAIR_COUNTS, 1);
        catalog_release(cat->st[S_REPAIR_COUNTS]);
    }
    catalog_unlock(cat);
    if (rc < 0)
        return rc;
    *queued = (uint64_t)q;
    *running = (uint64_t)r;
    return DFS_OK;
}

int dfs_catalog_repairs_recover(dfs_catalog *cat, int64_t now_ms, size_t *n, char **errmsg)
{
    struct run {
        char fragment_id[DFS_FRAGMENT_ID_HEX + 1];
        char target[DFS_ID_HEX + 1];
    } *v = NULL;
    size_t count = 0;
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int row = catalog_query(cat, S_REPAIRS_RUNNING, errmsg, "");
        while (row == 1) {
            struct run *r = catalog_grow(&v, &count, sizeof *r);
            if (r == NULL) {
                catalog_release(cat->st[S_REPAIRS_RUNNING]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            catalog_col_copy(cat, S_REPAIRS_RUNNING, 0, r->fragment_id, sizeof r->fragment_id);
            catalog_col_copy(cat, S_REPAIRS_RUNNING, 1, r->target, sizeof r->target);
            row = catalog_next_row(cat, S_REPAIRS_RUNNING, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        for (size_t i = 0; rc == DFS_OK && i < count; i++) {
            rc = queue_orphan(cat, v[i].fragment_id, v[i].target, now_ms, errmsg);
            if (rc == DFS_OK)
                rc = catalog_exec(cat, S_REPAIR_REQUEUE, NULL, errmsg, "t", v[i].fragment_id);
        }
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    for (size_t i = 0; rc == DFS_OK && i < count; i++)
        dfs_log(DFS_LOG_INFO, "interrupted repair queued again fragment=%s target=%s",
                v[i].fragment_id, v[i].target);
    free(v);
    if (rc == DFS_OK && n != NULL)
        *n = count;
    return rc;
}

static int insert_repair(dfs_catalog *cat, const char *fragment_id, enum dfs_repair_reason reason,
                         int64_t margin, const char *from, const char *target, int64_t now_ms,
                         int *changes, char **errmsg)
{
    return catalog_exec(cat, S_REPAIR_INSERT, changes, errmsg, "ttitti", fragment_id,
                        reason_names[reason], margin, from, target, now_ms);
}

/* The planner's decision for one fragment (see dfs_catalog_repair_plan). */
static int plan_fragment(dfs_catalog *cat, const char *fragment_id, int64_t now_ms,
                         struct dfs_plan_result *res, char **errmsg)
{
    struct assess a;
    int rc = assess_fragment(cat, fragment_id, &a, errmsg);
    if (rc <= 0)
        return rc;
    struct dfs_repair_rec row;
    int found = get_repair(cat, fragment_id, &row, errmsg);
    rc = found < 0 ? found : DFS_OK;
    if (rc != DFS_OK)
        goto done;
    if (a.lost) {
        res->lost++;
        if (found == 1 && !row.running) {
            rc = catalog_exec(cat, S_REPAIR_DELETE, NULL, errmsg, "t", fragment_id);
            res->dropped++;
        }
        goto done;
    }
    if (a.under) {
        if (found == 0) {
            const char *from = NULL;
            enum dfs_repair_reason reason = reason_of(&a, &from);
            int changes = 0;
            rc = insert_repair(cat, fragment_id, reason, a.margin, from, NULL, now_ms, &changes,
                               errmsg);
            res->queued += (size_t)changes;
        } else if (row.margin != a.margin) {
            rc = catalog_exec(cat, S_REPAIR_SET_MARGIN, NULL, errmsg, "ti", fragment_id, a.margin);
            res->updated++;
        }
        goto done;
    }
    if (found == 1) {
        if (row.running || row.reason == DFS_REPAIR_REBALANCE)
            goto done; /* never trim while a copy is being made */
        rc = catalog_exec(cat, S_REPAIR_DELETE, NULL, errmsg, "t", fragment_id);
        res->dropped++;
    }
    /* Full redundancy on live nodes: draining copies are no longer needed, and copies beyond the
       wanted number on alive nodes (a node came back after its copies were repaired) go, oldest
       first: the newer ones were placed where the current copysets and groups want them. */
    uint32_t alive = a.alive;
    for (size_t i = 0; rc == DFS_OK && i < a.ncopies; i++) {
        const struct copy *c = &a.copies[i];
        bool drop =
            c->state == DFS_NODE_DRAINING || (c->state == DFS_NODE_ALIVE && alive > a.wanted);
        if (!drop)
            continue;
        if (c->state == DFS_NODE_ALIVE)
            alive--;
        rc = drop_copy(cat, fragment_id, c->node_id, true, now_ms, errmsg);
        res->trimmed++;
        dfs_log(DFS_LOG_INFO, "surplus copy dropped fragment=%s node=%s node_state=%s", fragment_id,
                c->node_id, dfs_catalog_node_state_name(c->state));
    }
    if (rc == DFS_OK)
        rc = drop_gone_copies(cat, fragment_id, &a, now_ms, &res->trimmed, errmsg);
done:
    assess_clear(&a);
    return rc;
}

int dfs_catalog_repair_plan(dfs_catalog *cat, const char *after, size_t limit, int64_t now_ms,
                            struct dfs_plan_result *out, char **errmsg)
{
    if (after == NULL)
        after = "";
    if (limit == 0 || limit > 100000)
        limit = 100000;
    struct dfs_plan_result res;
    memset(&res, 0, sizeof res);
    snprintf(res.last, sizeof res.last, "%s", after);
    char(*ids)[DFS_FRAGMENT_ID_HEX + 1] = NULL;
    size_t n = 0;
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        /* Collect the page first: the decisions write to the tables the page reads. */
        int row = catalog_query(cat, S_PLAN_PAGE, errmsg, "ti", after, (int64_t)limit);
        while (row == 1) {
            char(*slot)[DFS_FRAGMENT_ID_HEX + 1] = catalog_grow(&ids, &n, sizeof ids[0]);
            if (slot == NULL) {
                catalog_release(cat->st[S_PLAN_PAGE]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            catalog_col_copy(cat, S_PLAN_PAGE, 0, *slot, sizeof *slot);
            row = catalog_next_row(cat, S_PLAN_PAGE, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        for (size_t i = 0; rc == DFS_OK && i < n; i++) {
            rc = plan_fragment(cat, ids[i], now_ms, &res, errmsg);
            res.scanned++;
        }
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    if (rc == DFS_OK) {
        if (n > 0)
            memcpy(res.last, ids[n - 1], sizeof res.last);
        res.done = n < limit;
        *out = res;
    }
    free(ids);
    return rc;
}

static int queue_locked(dfs_catalog *cat, const char *fragment_id, enum dfs_repair_reason reason,
                        const char *from, const char *target, int64_t now_ms, bool *queued,
                        char **errmsg)
{
    struct assess a;
    int rc = assess_fragment(cat, fragment_id, &a, errmsg);
    if (rc < 0)
        return rc;
    if (rc == 0 || !a.committed)
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "no fragment %s of a committed file", fragment_id);
    else if (a.lost)
        rc = dfs_seterr(errmsg, DFS_EPRECOND, "fragment %s is lost: nothing to repair it from",
                        fragment_id);
    else
        rc = DFS_OK;
    if (rc == DFS_OK && from != NULL) {
        int held = has_replica(cat, fragment_id, from, errmsg);
        rc = held < 0    ? held
             : held == 0 ? dfs_seterr(errmsg, DFS_EINVAL, "node %s holds no copy of fragment %s",
                                      from, fragment_id)
                         : DFS_OK;
    }
    int changes = 0;
    if (rc == DFS_OK)
        rc = insert_repair(cat, fragment_id, reason, a.margin, from, target, now_ms, &changes,
                           errmsg);
    if (rc == DFS_OK)
        *queued = changes > 0;
    assess_clear(&a);
    return rc;
}

int dfs_catalog_repair_queue(dfs_catalog *cat, const char *fragment_id,
                             enum dfs_repair_reason reason, const char *from_node,
                             const char *target, int64_t now_ms, bool *queued, char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s'",
                          fragment_id == NULL ? "" : fragment_id);
    if (reason < DFS_REPAIR_DEAD || reason > DFS_REPAIR_DECOMMISSION)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad repair reason %d", (int)reason);
    if (is_move(reason) != (from_node != NULL))
        return dfs_seterr(errmsg, DFS_EINVAL, "a %s repair %s a from node", reason_names[reason],
                          is_move(reason) ? "needs" : "takes no");
    int rc = from_node != NULL ? catalog_check_id(from_node, "node", errmsg) : DFS_OK;
    if (rc == DFS_OK && target != NULL)
        rc = catalog_check_id(target, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    bool q = false;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(
            cat, queue_locked(cat, fragment_id, reason, from_node, target, now_ms, &q, errmsg),
            errmsg);
    catalog_unlock(cat);
    if (rc == DFS_OK)
        *queued = q;
    return rc;
}

void dfs_catalog_repair_task_clear(struct dfs_repair_task *t)
{
    if (t == NULL)
        return;
    dfs_catalog_file_rec_free(t->file);
    free(t->held);
    memset(t, 0, sizeof *t);
}

/* Is the row still worth running? Fills *why for the log when not. */
static bool repair_needed(const struct dfs_repair_rec *row, const struct assess *a,
                          const char **why)
{
    if (a->lost) {
        *why = "lost";
        return false;
    }
    if (!is_move(row->reason)) {
        *why = "back at full redundancy";
        return a->under;
    }
    const struct copy *from = NULL;
    for (size_t i = 0; i < a->ncopies; i++)
        if (strcmp(a->copies[i].node_id, row->from_node) == 0)
            from = &a->copies[i];
    *why = "the copy to move is gone";
    if (from == NULL)
        return false;
    *why = "the node is not draining any more";
    if (row->reason == DFS_REPAIR_DRAIN)
        return from->state == DFS_NODE_DRAINING;
    *why = "the rebalance source is not alive or has no target";
    return from->state == DFS_NODE_ALIVE && row->target_node[0] != '\0';
}

static int next_locked(dfs_catalog *cat, int64_t now_ms, struct dfs_repair_task *t, bool *found,
                       char **errmsg)
{
    enum { BATCH = 32 };
    char ids[BATCH][DFS_FRAGMENT_ID_HEX + 1];
    size_t n = 0;
    int row = catalog_query(cat, S_REPAIRS_DUE, errmsg, "ii", now_ms, (int64_t)BATCH);
    while (row == 1) {
        catalog_col_copy(cat, S_REPAIRS_DUE, 0, ids[n], sizeof ids[n]);
        n++;
        row = n < BATCH ? catalog_next_row(cat, S_REPAIRS_DUE, errmsg) : 0;
    }
    if (n == BATCH)
        catalog_release(cat->st[S_REPAIRS_DUE]);
    if (row < 0)
        return row;
    int rc = DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < n && !*found; i++) {
        struct dfs_repair_rec r;
        struct assess a;
        int got = get_repair(cat, ids[i], &r, errmsg);
        if (got <= 0) {
            rc = got;
            continue;
        }
        got = assess_fragment(cat, ids[i], &a, errmsg);
        if (got < 0) {
            rc = got;
            continue;
        }
        const char *why = "fragment gone";
        if (got == 0 || !repair_needed(&r, &a, &why)) {
            rc = catalog_exec(cat, S_REPAIR_DELETE, NULL, errmsg, "t", ids[i]);
            dfs_log(DFS_LOG_INFO, "repair dropped fragment=%s reason=%s why=\"%s\"", ids[i],
                    reason_names[r.reason], why);
            assess_clear(&a);
            continue;
        }
        memset(t, 0, sizeof *t);
        t->row = r;
        t->index = a.index;
        rc = catalog_find_file(cat, S_FILE_GET_ID, a.file_id, true, &t->file, errmsg);
        if (rc == DFS_OK && (t->file == NULL || t->index >= t->file->nfragments))
            rc = dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: file %s of fragment %s vanished",
                            a.file_id, ids[i]);
        int d =
            rc == DFS_OK ? catalog_query(cat, S_DELETIONS_OF_FRAGMENT, errmsg, "t", ids[i]) : rc;
        while (d == 1) {
            char(*slot)[DFS_ID_HEX + 1] = catalog_grow(&t->held, &t->nheld, sizeof t->held[0]);
            if (slot == NULL) {
                catalog_release(cat->st[S_DELETIONS_OF_FRAGMENT]);
                d = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            catalog_col_copy(cat, S_DELETIONS_OF_FRAGMENT, 0, *slot, sizeof *slot);
            d = catalog_next_row(cat, S_DELETIONS_OF_FRAGMENT, errmsg);
        }
        rc = d < 0 ? d : rc;
        if (rc == DFS_OK)
            *found = true;
        else
            dfs_catalog_repair_task_clear(t);
        assess_clear(&a);
    }
    return rc;
}

int dfs_catalog_repair_next(dfs_catalog *cat, int64_t now_ms, struct dfs_repair_task *out,
                            bool *found, char **errmsg)
{
    struct dfs_repair_task t;
    memset(&t, 0, sizeof t);
    bool f = false;
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, next_locked(cat, now_ms, &t, &f, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_repair_task_clear(&t);
        return rc;
    }
    *found = f;
    if (f)
        *out = t;
    return DFS_OK;
}

static int start_locked(dfs_catalog *cat, const char *fragment_id, const char *target,
                        int64_t now_ms, char **errmsg)
{
    int rc = catalog_check_target(cat, target, errmsg);
    if (rc != DFS_OK)
        return rc;
    rc = has_replica(cat, fragment_id, target, errmsg);
    if (rc != 0)
        return rc < 0 ? rc
                      : dfs_seterr(errmsg, DFS_EABORTED, "node %s already holds fragment %s",
                                   target, fragment_id);
    int changes = 0;
    rc = catalog_exec(cat, S_REPAIR_START, &changes, errmsg, "tti", fragment_id, target, now_ms);
    if (rc == DFS_OK && changes == 0)
        rc = dfs_seterr(errmsg, DFS_EABORTED, "the repair of fragment %s is no longer queued",
                        fragment_id);
    return rc;
}

int dfs_catalog_repair_start(dfs_catalog *cat, const char *fragment_id, const char *target,
                             int64_t now_ms, char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s'",
                          fragment_id == NULL ? "" : fragment_id);
    int rc = catalog_check_id(target, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, start_locked(cat, fragment_id, target, now_ms, errmsg), errmsg);
    catalog_unlock(cat);
    return rc;
}

/*
 * *keep is set when the call is refused but what it wrote (the orphan copy's deletion) must be
 * committed all the same.
 */
static int complete_locked(dfs_catalog *cat, const char *fragment_id, const char *target,
                           uint64_t size, uint32_t checksum, int64_t now_ms, char *from_out,
                           bool *keep, char **errmsg)
{
    struct dfs_repair_rec row;
    int found = get_repair(cat, fragment_id, &row, errmsg);
    if (found < 0)
        return found;
    struct assess a;
    int have = assess_fragment(cat, fragment_id, &a, errmsg);
    if (have < 0)
        return have;
    int rc = DFS_OK;
    if (have == 0) {
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND,
                        "fragment %s was removed while it was being repaired", fragment_id);
    } else if (found == 0 || !row.running || strcmp(row.target_node, target) != 0) {
        rc = dfs_seterr(errmsg, DFS_EABORTED, "the repair of fragment %s is not running on %s",
                        fragment_id, target);
    } else if (size != a.size || checksum != a.checksum) {
        rc = dfs_seterr(errmsg, DFS_EDATALOSS,
                        "node %s made fragment %s with %" PRIu64 " bytes and checksum %08" PRIx32
                        ", the catalog says %" PRIu64 " and %08" PRIx32,
                        target, fragment_id, size, checksum, a.size, a.checksum);
        assess_clear(&a);
        return rc; /* the row stays running: the caller fails it */
    }
    assess_clear(&a);
    if (rc != DFS_OK) {
        /* Nobody will record this copy: have it removed. */
        int q = queue_orphan(cat, fragment_id, target, now_ms, NULL);
        if (q != DFS_OK)
            return dfs_seterr(errmsg, q, "catalog: cannot queue the removal of %s on %s",
                              fragment_id, target);
        *keep = true;
        return rc;
    }
    int held = has_replica(cat, fragment_id, target, errmsg);
    if (held < 0)
        return held;
    if (held == 0) {
        int64_t pos = 0;
        rc = catalog_query(cat, S_REPLICA_NEXT_POS, errmsg, "t", fragment_id);
        if (rc == 1) {
            pos = catalog_col_i64(cat, S_REPLICA_NEXT_POS, 0);
            catalog_release(cat->st[S_REPLICA_NEXT_POS]);
        }
        if (rc < 0)
            return rc;
        rc = catalog_exec(cat, S_REPLICA_ADD, NULL, errmsg, "tti", fragment_id, target, pos);
    }
    if (rc == DFS_OK && row.from_node[0] != '\0') {
        int from_held = has_replica(cat, fragment_id, row.from_node, errmsg);
        rc = from_held < 0    ? from_held
             : from_held == 1 ? drop_copy(cat, fragment_id, row.from_node, true, now_ms, errmsg)
                              : DFS_OK;
        memcpy(from_out, row.from_node, DFS_ID_HEX + 1);
    }
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_REPAIR_DELETE, NULL, errmsg, "t", fragment_id);
    if (rc == DFS_OK) {
        int got = assess_fragment(cat, fragment_id, &a, errmsg);
        if (got == 1) {
            rc = drop_gone_copies(cat, fragment_id, &a, now_ms, NULL, errmsg);
            assess_clear(&a);
        } else if (got < 0) {
            rc = got;
        }
    }
    return rc;
}

int dfs_catalog_repair_complete(dfs_catalog *cat, const char *fragment_id, const char *target,
                                uint64_t size, uint32_t checksum, int64_t now_ms, char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s'",
                          fragment_id == NULL ? "" : fragment_id);
    int rc = catalog_check_id(target, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    bool keep = false;
    char from[DFS_ID_HEX + 1] = "";
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        rc = complete_locked(cat, fragment_id, target, size, checksum, now_ms, from, &keep, errmsg);
        if (rc != DFS_OK && keep) {
            /* Refused, but the orphan's deletion must be committed. */
            int refused = rc;
            rc = catalog_tx_end(cat, DFS_OK, NULL);
            if (rc == DFS_OK)
                rc = refused;
        } else {
            rc = catalog_tx_end(cat, rc, errmsg);
        }
    }
    catalog_unlock(cat);
    if (rc != DFS_OK)
        return rc;
    dfs_log(DFS_LOG_INFO, "repair done fragment=%s target=%s dropped=%s", fragment_id, target,
            from[0] != '\0' ? from : "none");
    return DFS_OK;
}

int dfs_catalog_repair_fail(dfs_catalog *cat, const char *fragment_id, const char *target,
                            int64_t retry_at_ms, uint32_t *attempts, char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s'",
                          fragment_id == NULL ? "" : fragment_id);
    int rc = target != NULL ? catalog_check_id(target, "node", errmsg) : DFS_OK;
    if (rc != DFS_OK)
        return rc;
    struct dfs_repair_rec row;
    int found = 0;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        found = get_repair(cat, fragment_id, &row, errmsg);
        rc = found < 0 ? found : DFS_OK;
        /* The target may hold a partial or complete copy nobody records (a lost answer). */
        if (rc == DFS_OK && target != NULL)
            rc = queue_orphan(cat, fragment_id, target, retry_at_ms, errmsg);
        if (rc == DFS_OK && found == 1)
            rc = catalog_exec(cat, S_REPAIR_FAIL, NULL, errmsg, "ti", fragment_id, retry_at_ms);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    if (rc == DFS_OK && attempts != NULL)
        *attempts = found == 1 ? row.attempts + 1 : 0;
    return rc;
}

int dfs_catalog_rebalance_candidates(dfs_catalog *cat, const char *node_id, const char *after,
                                     size_t limit, char (**out)[DFS_FRAGMENT_ID_HEX + 1],
                                     uint64_t **sizes, size_t *n, char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    if (limit > INT32_MAX)
        limit = INT32_MAX;
    char(*ids)[DFS_FRAGMENT_ID_HEX + 1] = NULL;
    uint64_t *sz = NULL;
    size_t count = 0, nsz = 0;
    catalog_lock(cat);
    rc = catalog_query(cat, S_REBALANCE_CANDIDATES, errmsg, "tti", node_id,
                       after == NULL ? "" : after, (int64_t)limit);
    while (rc == 1) {
        char(*slot)[DFS_FRAGMENT_ID_HEX + 1] = catalog_grow(&ids, &count, sizeof ids[0]);
        uint64_t *s = slot != NULL ? catalog_grow(&sz, &nsz, sizeof *sz) : NULL;
        if (s == NULL) {
            catalog_release(cat->st[S_REBALANCE_CANDIDATES]);
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            break;
        }
        catalog_col_copy(cat, S_REBALANCE_CANDIDATES, 0, *slot, sizeof *slot);
        *s = (uint64_t)catalog_col_i64(cat, S_REBALANCE_CANDIDATES, 1);
        rc = catalog_next_row(cat, S_REBALANCE_CANDIDATES, errmsg);
    }
    catalog_unlock(cat);
    if (rc < 0 || count != nsz) {
        free(ids);
        free(sz);
        return rc < 0 ? rc : dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    *out = ids;
    *sizes = sz;
    *n = count;
    return DFS_OK;
}

/* ---- Reports from storage nodes -------------------------------------------------------------- */

/* The node must be registered: DFS_OK, DFS_ENOTFOUND or a DFS code. */
static int need_node(dfs_catalog *cat, const char *node_id, char **errmsg)
{
    struct dfs_node_rec n;
    int got = catalog_get_node(cat, node_id, &n, errmsg);
    if (got < 0)
        return got;
    return got == 0 ? dfs_seterr(errmsg, DFS_ENOTFOUND, "no storage node %s", node_id) : DFS_OK;
}

/* A recorded copy is lost (corrupt or missing): see dfs_catalog_report_corrupt. */
static int copy_lost_locked(dfs_catalog *cat, const char *node_id, const char *fragment_id,
                            enum dfs_repair_reason reason, int64_t now_ms, bool *marked,
                            char **errmsg)
{
    *marked = false;
    int rc = need_node(cat, node_id, errmsg);
    if (rc != DFS_OK)
        return rc;
    rc = catalog_query(cat, S_REPLICA_GET, errmsg, "tt", fragment_id, node_id);
    if (rc <= 0)
        return rc;
    bool acked = catalog_col_i64(cat, S_REPLICA_GET, 1) != 0;
    catalog_release(cat->st[S_REPLICA_GET]);
    if (!acked)
        return DFS_OK; /* a put in progress: its client learns of the failure by itself */
    rc = catalog_exec(cat, S_REPLICA_DELETE, NULL, errmsg, "tt", fragment_id, node_id);
    struct assess a;
    int got = rc == DFS_OK ? assess_fragment(cat, fragment_id, &a, errmsg) : rc;
    if (got < 0)
        return got;
    *marked = true;
    if (got == 0 || a.lost || !a.committed) {
        if (got == 1)
            assess_clear(&a);
        /* The last readable copy: keep its bytes for salvage, queue nothing. */
        dfs_log(DFS_LOG_ERROR, "last readable copy lost fragment=%s node=%s reason=%s", fragment_id,
                node_id, reason_names[reason]);
        return DFS_OK;
    }
    if (reason == DFS_REPAIR_CORRUPT)
        rc =
            catalog_exec(cat, S_DELETION_INSERT, NULL, errmsg, "tti", fragment_id, node_id, now_ms);
    if (rc == DFS_OK)
        rc = insert_repair(cat, fragment_id, reason, a.margin, NULL, NULL, now_ms, NULL, errmsg);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_REPAIR_SET_MARGIN, NULL, errmsg, "ti", fragment_id, a.margin);
    assess_clear(&a);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_WARN, "copy lost, repair queued fragment=%s node=%s reason=%s", fragment_id,
                node_id, reason_names[reason]);
    return rc;
}

static int copy_lost(dfs_catalog *cat, const char *node_id, const char *fragment_id,
                     enum dfs_repair_reason reason, int64_t now_ms, bool *marked, char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc == DFS_OK && !dfs_fragment_id_valid(fragment_id))
        rc = dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s'",
                        fragment_id == NULL ? "" : fragment_id);
    if (rc != DFS_OK)
        return rc;
    bool m = false;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(
            cat, copy_lost_locked(cat, node_id, fragment_id, reason, now_ms, &m, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc == DFS_OK)
        *marked = m;
    return rc;
}

int dfs_catalog_report_corrupt(dfs_catalog *cat, const char *node_id, const char *fragment_id,
                               int64_t now_ms, bool *marked, char **errmsg)
{
    return copy_lost(cat, node_id, fragment_id, DFS_REPAIR_CORRUPT, now_ms, marked, errmsg);
}

int dfs_catalog_report_missing(dfs_catalog *cat, const char *node_id, const char *fragment_id,
                               int64_t now_ms, bool *marked, char **errmsg)
{
    return copy_lost(cat, node_id, fragment_id, DFS_REPAIR_MISSING, now_ms, marked, errmsg);
}

static int inventory_page_locked(dfs_catalog *cat, const char *node_id, uint32_t page,
                                 const char *const *ids, size_t n, int64_t now_ms, char **errmsg)
{
    int rc = need_node(cat, node_id, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (page == 0) {
        rc = catalog_exec(cat, S_INV_DROP, NULL, errmsg, "t", node_id);
        if (rc == DFS_OK)
            rc = catalog_exec(cat, S_INV_START, NULL, errmsg, "ti", node_id, now_ms);
    } else {
        int got = catalog_query(cat, S_INV_STATE_GET, errmsg, "t", node_id);
        if (got < 0)
            return got;
        int64_t next = 0;
        if (got == 1) {
            next = catalog_col_i64(cat, S_INV_STATE_GET, 0);
            catalog_release(cat->st[S_INV_STATE_GET]);
        }
        if (got == 0 || (int64_t)page > next)
            return dfs_seterr(errmsg, DFS_EPRECOND,
                              "inventory page %" PRIu32
                              " of node %s out of order (expected %s%" PRId64
                              "): send the report again from page 0",
                              page, node_id, got == 0 ? "page " : "", got == 0 ? 0 : next);
    }
    for (size_t i = 0; rc == DFS_OK && i < n; i++)
        rc = catalog_exec(cat, S_INV_INSERT, NULL, errmsg, "tt", node_id, ids[i]);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_INV_SET_NEXT, NULL, errmsg, "ti", node_id, (int64_t)page + 1);
    return rc;
}

int dfs_catalog_inventory_page(dfs_catalog *cat, const char *node_id, uint32_t page,
                               const char *const *ids, size_t n, int64_t now_ms, char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    for (size_t i = 0; rc == DFS_OK && i < n; i++)
        if (!dfs_fragment_id_valid(ids[i]))
            rc = dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s' in the inventory",
                            ids[i] == NULL ? "" : ids[i]);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, inventory_page_locked(cat, node_id, page, ids, n, now_ms, errmsg),
                            errmsg);
    catalog_unlock(cat);
    return rc;
}

/* Run a one-column fragment-id statement bound to node_id into a malloc'd array. */
static int id_list(dfs_catalog *cat, enum stmt id, const char *node_id,
                   char (**out)[DFS_FRAGMENT_ID_HEX + 1], size_t *n, char **errmsg)
{
    char(*v)[DFS_FRAGMENT_ID_HEX + 1] = NULL;
    size_t count = 0;
    int rc = catalog_query(cat, id, errmsg, "t", node_id);
    while (rc == 1) {
        char(*slot)[DFS_FRAGMENT_ID_HEX + 1] = catalog_grow(&v, &count, sizeof v[0]);
        if (slot == NULL) {
            catalog_release(cat->st[id]);
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            break;
        }
        catalog_col_copy(cat, id, 0, *slot, sizeof *slot);
        rc = catalog_next_row(cat, id, errmsg);
    }
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = count;
    return DFS_OK;
}

int dfs_catalog_inventory_missing(dfs_catalog *cat, const char *node_id,
                                  char (**out)[DFS_FRAGMENT_ID_HEX + 1], size_t *n, char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, id_list(cat, S_INV_MISSING, node_id, out, n, errmsg), errmsg);
    catalog_unlock(cat);
    return rc;
}

static int inventory_finish_locked(dfs_catalog *cat, const char *node_id, int64_t now_ms,
                                   size_t *unknown, char **errmsg)
{
    char(*ids)[DFS_FRAGMENT_ID_HEX + 1] = NULL;
    size_t n = 0, count = 0;
    int rc = id_list(cat, S_INV_UNKNOWN, node_id, &ids, &n, errmsg);
    for (size_t i = 0; rc == DFS_OK && i < n; i++) {
        struct assess a;
        int got = assess_fragment(cat, ids[i], &a, errmsg);
        if (got < 0) {
            rc = got;
            break;
        }
        bool salvage = got == 1 && a.committed && a.lost;
        if (got == 1)
            assess_clear(&a);
        if (salvage)
            continue; /* the catalog has no readable copy of it: keep these bytes */
        rc = catalog_exec(cat, S_DELETION_INSERT, NULL, errmsg, "tti", ids[i], node_id, now_ms);
        count++;
    }
    free(ids);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_INV_DROP, NULL, errmsg, "t", node_id);
    if (rc == DFS_OK)
        *unknown = count;
    return rc;
}

int dfs_catalog_inventory_finish(dfs_catalog *cat, const char *node_id, int64_t now_ms,
                                 size_t *unknown, char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    size_t u = 0;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, inventory_finish_locked(cat, node_id, now_ms, &u, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc == DFS_OK) {
        *unknown = u;
        if (u > 0)
            dfs_log(DFS_LOG_INFO,
                    "inventory: unknown fragments queued for removal node=%s count=%zu", node_id,
                    u);
    }
    return rc;
}

/* ---- Health ---------------------------------------------------------------------------------- */

void dfs_catalog_layout_free(struct dfs_layout *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->nfiles; i++)
        free(l->files[i].path);
    free(l->nodes);
    free(l->files);
    free(l->fragments);
    free(l->copies);
    free(l);
}

static int cmp_layout_node(const void *key, const void *elem)
{
    return strcmp(key, ((const struct dfs_layout_node *)elem)->id);
}

static int cmp_layout_nodes(const void *a, const void *b)
{
    return strcmp(((const struct dfs_layout_node *)a)->id, ((const struct dfs_layout_node *)b)->id);
}

static int layout_locked(dfs_catalog *cat, struct dfs_layout *l, char **errmsg)
{
    int rc = catalog_query(cat, S_NODES_LIST, errmsg, "");
    while (rc == 1) {
        struct dfs_layout_node *n = catalog_grow(&l->nodes, &l->nnodes, sizeof *n);
        if (n == NULL) {
            catalog_release(cat->st[S_NODES_LIST]);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        struct dfs_node_rec rec;
        catalog_read_node(cat, S_NODES_LIST, &rec);
        memcpy(n->id, rec.id, sizeof n->id);
        memcpy(n->address, rec.address, sizeof n->address);
        n->state = rec.state;
        rc = catalog_next_row(cat, S_NODES_LIST, errmsg);
    }
    if (rc < 0)
        return rc;
    if (l->nnodes > 0)
        qsort(l->nodes, l->nnodes, sizeof *l->nodes, cmp_layout_nodes);
    /* Arrays grow by doubling here: a catalog may hold millions of copies. */
    size_t cap_files = 0, cap_frags = 0, cap_copies = 0;
    rc = catalog_query(cat, S_LAYOUT_ALL, errmsg, "");
    while (rc == 1) {
        const char *file_id = catalog_col_text(cat, S_LAYOUT_ALL, 0);
        const char *frag_id = catalog_col_text(cat, S_LAYOUT_ALL, 7);
        struct dfs_layout_fragment *fr =
            l->nfragments > 0 ? &l->fragments[l->nfragments - 1] : NULL;
        if (fr == NULL || strcmp(fr->fragment_id, frag_id) != 0) {
            struct dfs_layout_file *fi = l->nfiles > 0 ? &l->files[l->nfiles - 1] : NULL;
            if (fi == NULL || strncmp(frag_id, file_id, DFS_ID_HEX) != 0 ||
                strncmp(l->fragments[fi->first_fragment].fragment_id, file_id, DFS_ID_HEX) != 0) {
                if (l->nfiles == cap_files) {
                    cap_files = cap_files * 2 + 64;
                    void *p = realloc(l->files, cap_files * sizeof *l->files);
                    if (p == NULL)
                        break;
                    l->files = p;
                }
                fi = &l->files[l->nfiles++];
                memset(fi, 0, sizeof *fi);
                const char *path = catalog_col_text(cat, S_LAYOUT_ALL, 1);
                fi->path = strdup(path != NULL ? path : "");
                if (fi->path == NULL)
                    break;
                fi->redundancy.scheme = (enum dfs_scheme)NAME_INDEX(
                    catalog_scheme_names, catalog_col_text(cat, S_LAYOUT_ALL, 2));
                fi->redundancy.replicas = (uint32_t)catalog_col_i64(cat, S_LAYOUT_ALL, 3);
                fi->redundancy.fragments = (uint32_t)catalog_col_i64(cat, S_LAYOUT_ALL, 4);
                fi->redundancy.data = (uint32_t)catalog_col_i64(cat, S_LAYOUT_ALL, 5);
                fi->redundancy.parity = (uint32_t)catalog_col_i64(cat, S_LAYOUT_ALL, 6);
                fi->first_fragment = l->nfragments;
            }
            if (l->nfragments == cap_frags) {
                cap_frags = cap_frags * 2 + 256;
                void *p = realloc(l->fragments, cap_frags * sizeof *l->fragments);
                if (p == NULL)
                    break;
                l->fragments = p;
            }
            fr = &l->fragments[l->nfragments++];
            memset(fr, 0, sizeof *fr);
            catalog_col_copy(cat, S_LAYOUT_ALL, 7, fr->fragment_id, sizeof fr->fragment_id);
            fr->size = (uint64_t)catalog_col_i64(cat, S_LAYOUT_ALL, 8);
            fr->checksum = (uint32_t)catalog_col_i64(cat, S_LAYOUT_ALL, 9);
            fr->first_copy = l->ncopies;
            fi->nfragments++;
        }
        const char *node = catalog_col_text(cat, S_LAYOUT_ALL, 10);
        const struct dfs_layout_node *n =
            node == NULL || l->nnodes == 0
                ? NULL
                : bsearch(node, l->nodes, l->nnodes, sizeof *l->nodes, cmp_layout_node);
        if (n != NULL) {
            if (l->ncopies == cap_copies) {
                cap_copies = cap_copies * 2 + 1024;
                void *p = realloc(l->copies, cap_copies * sizeof *l->copies);
                if (p == NULL)
                    break;
                l->copies = p;
            }
            l->copies[l->ncopies++] = (uint32_t)(n - l->nodes);
            fr->ncopies++;
        }
        rc = catalog_next_row(cat, S_LAYOUT_ALL, errmsg);
    }
    if (rc == 1) {
        catalog_release(cat->st[S_LAYOUT_ALL]);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    return rc < 0 ? rc : DFS_OK;
}

int dfs_catalog_layout(dfs_catalog *cat, struct dfs_layout **out, char **errmsg)
{
    struct dfs_layout *l = calloc(1, sizeof *l);
    if (l == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, layout_locked(cat, l, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_layout_free(l);
        return rc;
    }
    *out = l;
    return DFS_OK;
}

void dfs_catalog_health_clear(struct dfs_health *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->nlost_paths; i++)
        free(h->lost_paths[i]);
    for (size_t i = 0; i < h->ndegraded_paths; i++)
        free(h->degraded_paths[i]);
    free(h->lost_paths);
    free(h->degraded_paths);
    memset(h, 0, sizeof *h);
}

static int add_path(char ***v, size_t *n, size_t list, const char *path)
{
    if (*n >= list)
        return DFS_OK;
    char *p = strdup(path);
    char **slot = p != NULL ? catalog_grow(v, n, sizeof **v) : NULL;
    if (slot == NULL) {
        free(p);
        return DFS_ENOMEM;
    }
    *slot = p;
    return DFS_OK;
}

int dfs_catalog_health_classify(const struct dfs_layout *l, const bool *copy_ok, size_t list,
                                struct dfs_health *out, char **errmsg)
{
    struct dfs_health h;
    memset(&h, 0, sizeof h);
    int rc = DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < l->nfiles; i++) {
        const struct dfs_layout_file *f = &l->files[i];
        bool erasure = f->redundancy.scheme == DFS_SCHEME_ERASURE;
        uint32_t wanted = erasure ? 1 : f->redundancy.replicas;
        uint32_t frag_live = 0, frag_readable = 0;
        bool lost = false, degraded = false;
        for (size_t j = 0; j < f->nfragments; j++) {
            const struct dfs_layout_fragment *fr = &l->fragments[f->first_fragment + j];
            uint32_t live = 0, readable = 0;
            for (size_t c = 0; c < fr->ncopies; c++) {
                size_t ci = fr->first_copy + c;
                if (copy_ok != NULL && !copy_ok[ci])
                    continue;
                enum dfs_node_state s = l->nodes[l->copies[ci]].state;
                live += catalog_state_live(s);
                readable += catalog_state_readable(s);
            }
            frag_live += live > 0;
            frag_readable += readable > 0;
            lost = lost || (!erasure && readable == 0);
            degraded = degraded || live < wanted;
        }
        uint32_t total = erasure ? f->redundancy.data + f->redundancy.parity : 0;
        if (erasure) {
            lost = frag_readable < f->redundancy.data;
            degraded = frag_live < total || f->nfragments < total;
        }
        h.files++;
        if (lost) {
            h.lost++;
            rc = add_path(&h.lost_paths, &h.nlost_paths, list, f->path);
        } else if (degraded) {
            h.degraded++;
            rc = add_path(&h.degraded_paths, &h.ndegraded_paths, list, f->path);
        } else {
            h.healthy++;
        }
    }
    if (rc != DFS_OK) {
        dfs_catalog_health_clear(&h);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    *out = h;
    return DFS_OK;
}

/* ---- Statistics ------------------------------------------------------------------------------ */

/* Read one single-row aggregate into up to two integers. */
static int aggregate(dfs_catalog *cat, enum stmt id, int64_t *a, int64_t *b, char **errmsg)
{
    int rc = catalog_query(cat, id, errmsg, "");
    if (rc < 0)
        return rc;
    if (rc == 0)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: aggregate returned no row");
    *a = catalog_col_i64(cat, id, 0);
    if (b != NULL)
        *b = catalog_col_i64(cat, id, 1);
    catalog_release(cat->st[id]);
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
    int row = catalog_query(cat, S_STATS_NODES, errmsg, "");
    while (row == 1) {
        uint32_t count = (uint32_t)catalog_col_i64(cat, S_STATS_NODES, 1);
        switch (NAME_INDEX(catalog_node_state_names, catalog_col_text(cat, S_STATS_NODES, 0))) {
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
        row = catalog_next_row(cat, S_STATS_NODES, errmsg);
    }
    return row < 0 ? row : DFS_OK;
}

int dfs_catalog_stats(dfs_catalog *cat, struct dfs_catalog_stats *out, char **errmsg)
{
    struct dfs_catalog_stats s;
    memset(&s, 0, sizeof s);
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, stats_locked(cat, &s, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc == DFS_OK)
        *out = s;
    return rc;
}

/* ---- Tokens and secrets ---------------------------------------------------------------------- */

static const char *const role_names[] = {
    [DFS_ROLE_UNSPECIFIED] = "unspecified",
    [DFS_ROLE_ADMIN] = "admin",
    [DFS_ROLE_READ_WRITE] = "read_write",
    [DFS_ROLE_READ_ONLY] = "read_only",
    [DFS_ROLE_NODE] = "node",
    [DFS_ROLE_BOOTSTRAP] = "bootstrap",
};

const char *dfs_catalog_token_role_name(enum dfs_token_role role)
{
    if (role <= DFS_ROLE_UNSPECIFIED || role > DFS_ROLE_NODE)
        return "unknown";
    return role_names[role];
}

enum dfs_token_role dfs_catalog_token_role_parse(const char *name)
{
    if (name == NULL)
        return DFS_ROLE_UNSPECIFIED;
    if (strcmp(name, "rw") == 0)
        return DFS_ROLE_READ_WRITE;
    if (strcmp(name, "ro") == 0)
        return DFS_ROLE_READ_ONLY;
    return (enum dfs_token_role)NAME_INDEX(role_names, name);
}

static bool catalog_token_id_ok(const char *id, size_t min)
{
    size_t n = id == NULL ? 0 : strnlen(id, 17);
    if (n < min || n > 16)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    }
    return true;
}

static void read_token(dfs_catalog *cat, enum stmt id, struct dfs_token_rec *t)
{
    memset(t, 0, sizeof *t);
    catalog_col_copy(cat, id, 0, t->id, sizeof t->id);
    catalog_col_copy(cat, id, 1, t->name, sizeof t->name);
    t->role = dfs_catalog_token_role_parse(catalog_col_text(cat, id, 2));
    t->created_ms = catalog_col_i64(cat, id, 3);
    t->expires_ms = catalog_col_i64(cat, id, 4);
    t->revoked_ms = catalog_col_i64(cat, id, 5);
    t->last_used_ms = catalog_col_i64(cat, id, 6);
    const char *node = catalog_col_text(cat, id, 7);
    snprintf(t->node_id, sizeof t->node_id, "%s", node != NULL ? node : "");
}

int dfs_catalog_token_add(dfs_catalog *cat, const struct dfs_token_rec *rec, const uint8_t hash[32],
                          char **errmsg)
{
    if (!catalog_token_id_ok(rec->id, 16))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad token id");
    int rc = catalog_check_text(rec->name, 1, DFS_TOKEN_NAME_MAX, "token name", errmsg);
    if (rc != DFS_OK)
        return rc;
    if (rec->role <= DFS_ROLE_UNSPECIFIED || rec->role > DFS_ROLE_BOOTSTRAP)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad token role");
    if (rec->role == DFS_ROLE_NODE)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "a node token is made with its node, at the node's enrollment");
    if (rec->expires_ms < 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad token expiry");
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int found = catalog_query(cat, S_TOKEN_GET, errmsg, "t", rec->id);
        if (found == 1) {
            catalog_release(cat->st[S_TOKEN_GET]);
            rc = dfs_seterr(errmsg, DFS_EEXIST, "token id %s exists", rec->id);
        } else {
            rc = found;
        }
        if (rc == DFS_OK)
            rc = catalog_exec(cat, S_TOKEN_INSERT, NULL, errmsg, "tttbiit", rec->id, rec->name,
                              role_names[rec->role], (const void *)hash, (size_t)32,
                              rec->created_ms, rec->expires_ms, "");
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    return rc;
}

int dfs_catalog_token_get(dfs_catalog *cat, const char *id, struct dfs_token_rec *out,
                          uint8_t hash[32], char **errmsg)
{
    if (!catalog_token_id_ok(id, 16))
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no such token");
    catalog_lock(cat);
    int rc = catalog_query(cat, S_TOKEN_GET, errmsg, "t", id);
    if (rc == 1) {
        read_token(cat, S_TOKEN_GET, out);
        const void *h = sqlite3_column_blob(cat->st[S_TOKEN_GET], 8);
        int n = sqlite3_column_bytes(cat->st[S_TOKEN_GET], 8);
        if (h != NULL && n == 32)
            memcpy(hash, h, 32);
        else
            memset(hash, 0, 32);
        catalog_release(cat->st[S_TOKEN_GET]);
        rc = DFS_OK;
    } else if (rc == 0) {
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "no such token");
    }
    catalog_unlock(cat);
    return rc;
}

int dfs_catalog_token_resolve(dfs_catalog *cat, const char *id, struct dfs_token_rec *out,
                              char **errmsg)
{
    if (!catalog_token_id_ok(id, 4))
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "a token id is 4 to 16 lower-case hex digits (see dfs token ls)");
    char hi[18];
    snprintf(hi, sizeof hi, "%sg", id);
    catalog_lock(cat);
    int rc = catalog_query(cat, S_TOKEN_PREFIX, errmsg, "tt", id, hi);
    int rows = 0;
    while (rc == 1) {
        if (rows++ == 0)
            read_token(cat, S_TOKEN_PREFIX, out);
        rc = catalog_next_row(cat, S_TOKEN_PREFIX, errmsg);
    }
    catalog_unlock(cat);
    if (rc < 0)
        return rc;
    if (rows == 0)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no token %s", id);
    if (rows > 1)
        return dfs_seterr(errmsg, DFS_EINVAL, "token id %s is ambiguous: give more digits", id);
    return DFS_OK;
}

int dfs_catalog_token_revoke(dfs_catalog *cat, const char *id, int64_t now_ms, char **errmsg)
{
    if (!catalog_token_id_ok(id, 16))
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no such token");
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        rc = catalog_exec(cat, S_TOKEN_REVOKE, NULL, errmsg, "ti", id, now_ms > 0 ? now_ms : 1);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    return rc;
}

int dfs_catalog_token_touch(dfs_catalog *cat, const char *id, int64_t now_ms, char **errmsg)
{
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        rc = catalog_exec(cat, S_TOKEN_TOUCH, NULL, errmsg, "ti", id, now_ms);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    return rc;
}

int dfs_catalog_tokens_list(dfs_catalog *cat, bool all, int64_t now_ms, struct dfs_token_rec **out,
                            size_t *n, char **errmsg)
{
    struct dfs_token_rec *v = NULL;
    size_t len = 0, cap = 0;
    catalog_lock(cat);
    int rc = catalog_query(cat, S_TOKENS_LIST, errmsg, "ii", (int64_t)all, now_ms);
    while (rc == 1) {
        if (len == cap) {
            size_t ncap = cap == 0 ? 16 : 2 * cap;
            struct dfs_token_rec *nv = realloc(v, ncap * sizeof *nv);
            if (nv == NULL) {
                catalog_release(cat->st[S_TOKENS_LIST]);
                rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            v = nv;
            cap = ncap;
        }
        read_token(cat, S_TOKENS_LIST, &v[len++]);
        rc = catalog_next_row(cat, S_TOKENS_LIST, errmsg);
    }
    catalog_unlock(cat);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = len;
    return DFS_OK;
}

int dfs_catalog_secret(dfs_catalog *cat, const char *name, size_t len, int64_t now_ms, uint8_t *out,
                       char **errmsg)
{
    if (len == 0 || len > 64)
        return dfs_seterr(errmsg, DFS_EINVAL, "a secret is 1 to 64 bytes");
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int found = catalog_query(cat, S_SECRET_GET, errmsg, "t", name);
        if (found == 1) {
            const void *v = sqlite3_column_blob(cat->st[S_SECRET_GET], 0);
            size_t vn = (size_t)sqlite3_column_bytes(cat->st[S_SECRET_GET], 0);
            if (v == NULL || vn != len)
                rc = dfs_seterr(errmsg, DFS_EDATALOSS,
                                "catalog %s: secret %s has %zu bytes, not %zu", cat->path, name, vn,
                                len);
            else
                memcpy(out, v, len);
            catalog_release(cat->st[S_SECRET_GET]);
        } else if (found == 0) {
            size_t got = 0;
            while (rc == DFS_OK && got < len) {
                ssize_t r = getrandom(out + got, len - got, 0);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r <= 0)
                    rc = dfs_seterr_errno(errmsg, DFS_EIO, errno, "getrandom");
                else
                    got += (size_t)r;
            }
            if (rc == DFS_OK)
                rc = catalog_exec(cat, S_SECRET_INSERT, NULL, errmsg, "tbi", name,
                                  (const void *)out, len, now_ms);
            if (rc == DFS_OK)
                dfs_log(DFS_LOG_INFO, "catalog made secret name=%s bytes=%zu", name, len);
        } else {
            rc = found;
        }
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    return rc;
}
