/*
 * The SQLite catalog, core: the on-disk format (schema, migrations), the SQL of every prepared
 * statement, SQLite and transaction helpers, open and close. The verbs are in catalog_*.c, one
 * file per concern (the map is in catalog_int.h).
 */
#include "metadata/catalog_int.h"

#include "common/clock.h"
#include "common/err.h"
#include "common/exlock.h"
#include "common/id.h"
#include "common/log.h"

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
 * Since version 6 (S3, issue 17; gateway/s3/DESIGN.md):
 *
 *   file_meta  what S3 keeps with an object, written in the commit's transaction: file_id ->
 *              files ON DELETE CASCADE (PK), md5 (16-byte BLOB, NULL when unknown: the S3 ETag),
 *              meta (BLOB, at most 8 KiB: the stored headers, "name\0value\0" sorted by name).
 *
 *   buckets    one row per S3 bucket (a top-level directory that exists while empty): name (PK,
 *              3-63 bytes), created_ms, token_id (the token whose key made it; '' = unknown).
 *
 *   tokens     role also 'gateway' (the S3 gateway: files, buckets and S3 signing keys).
 *
 * Since version 7 (dfs-mount, issue 18):
 *
 *   path_attrs one row per path with attributes set through dfs-mount. path (PK, canonical),
 *              is_dir (0/1: an explicit directory, possibly empty), mode (permission bits,
 *              0..07777, NULL = unset), uid, gid (NULL = unset), mtime_ms (NULL = the commit
 *              time). Keyed by path, not file_id: they outlive versions of a file, and a
 *              directory has no file. Rename moves them with the files, in its transaction.
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

    /* 6: S3 (issue 17): objects' MD5 and stored headers, buckets. */
    "CREATE TABLE file_meta ("
    "  file_id TEXT NOT NULL PRIMARY KEY REFERENCES files (file_id) ON DELETE CASCADE,"
    "  md5     BLOB CHECK (md5 IS NULL OR length(md5) = 16),"
    "  meta    BLOB NOT NULL DEFAULT x'' CHECK (length(meta) <= 8192)"
    ") WITHOUT ROWID;"
    "CREATE TABLE buckets ("
    "  name       TEXT    NOT NULL PRIMARY KEY CHECK (length(name) BETWEEN 3 AND 63),"
    "  created_ms INTEGER NOT NULL,"
    "  token_id   TEXT    NOT NULL DEFAULT ''"
    ") WITHOUT ROWID;"
    "CREATE TABLE tokens_v6 ("
    "  id           TEXT    NOT NULL PRIMARY KEY CHECK (length(id) = 16),"
    "  name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),"
    "  role         TEXT    NOT NULL"
    "               CHECK (role IN ('admin', 'read_write', 'read_only', 'node', 'bootstrap',"
    "                               'gateway')),"
    "  hash         BLOB    NOT NULL CHECK (length(hash) = 32),"
    "  created_ms   INTEGER NOT NULL,"
    "  expires_ms   INTEGER NOT NULL DEFAULT 0 CHECK (expires_ms >= 0),"
    "  revoked_ms   INTEGER NOT NULL DEFAULT 0 CHECK (revoked_ms >= 0),"
    "  last_used_ms INTEGER NOT NULL DEFAULT 0,"
    "  node_id      TEXT    CHECK (node_id IS NULL OR length(node_id) = 32),"
    "  CHECK ((role = 'node') = (node_id IS NOT NULL))"
    ") WITHOUT ROWID;"
    "INSERT INTO tokens_v6 SELECT id, name, role, hash, created_ms, expires_ms, revoked_ms, "
    "  last_used_ms, node_id FROM tokens;"
    "DROP TABLE tokens;"
    "ALTER TABLE tokens_v6 RENAME TO tokens;"
    "CREATE UNIQUE INDEX tokens_node ON tokens (node_id) WHERE node_id IS NOT NULL;",

    /* 7 (issue 18, dfs-mount): mode, owner and times of paths, and explicit directories. Keyed
       by path, not file id: they outlive versions of a file, and a directory has no file. */
    "CREATE TABLE path_attrs ("
    "  path     TEXT    NOT NULL PRIMARY KEY CHECK (substr(path, 1, 1) = '/'),"
    "  is_dir   INTEGER NOT NULL DEFAULT 0 CHECK (is_dir IN (0, 1)),"
    "  mode     INTEGER CHECK (mode IS NULL OR mode BETWEEN 0 AND 4095),"
    "  uid      INTEGER CHECK (uid IS NULL OR uid BETWEEN 0 AND 4294967295),"
    "  gid      INTEGER CHECK (gid IS NULL OR gid BETWEEN 0 AND 4294967295),"
    "  mtime_ms INTEGER"
    ") WITHOUT ROWID;",

    /* 8 (issue 17, StitchFile): the segments of stitched files. A segment is a committed file
       row of its own (path under DFS_CATALOG_SEGMENT_DIR), owned by the stitched file. */
    "CREATE TABLE segments ("
    "  file_id  TEXT    NOT NULL REFERENCES files (file_id) ON DELETE CASCADE,"
    "  seq      INTEGER NOT NULL CHECK (seq >= 0),"
    "  offset   INTEGER NOT NULL CHECK (offset >= 0),"
    "  part_id  TEXT    NOT NULL UNIQUE CHECK (length(part_id) = 32),"
    "  PRIMARY KEY (file_id, seq)"
    ") WITHOUT ROWID;",

    /* 9 (issue 16, replication): the index of the last Raft log entry applied to this catalog,
       written in the same transaction as the entry's effects (dfs_catalog_apply_end), so a
       restart replays exactly the entries the catalog lacks. 0: none (a catalog that never ran
       replicated, or a fresh one). */
    "CREATE TABLE replication ("
    "  k             INTEGER NOT NULL PRIMARY KEY CHECK (k = 0),"
    "  applied_index INTEGER NOT NULL CHECK (applied_index >= 0)"
    ");"
    "INSERT INTO replication (k, applied_index) VALUES (0, 0);",

    /* 10 (issue 16, restore): a catalog made by dfs-metadata restore from a backup (one row in
       `restored`) keeps the fragments nodes report that none of its files knows -- files
       committed after the backup -- as `orphans`, by fragment id and node, instead of deleting
       them as a catalog that never lost anything does. */
    "CREATE TABLE restored ("
    "  k           INTEGER NOT NULL PRIMARY KEY CHECK (k = 0),"
    "  restored_ms INTEGER NOT NULL,"
    "  from_index  INTEGER NOT NULL CHECK (from_index >= 0)"
    ");"
    "CREATE TABLE orphans ("
    "  fragment_id   TEXT    NOT NULL CHECK (length(fragment_id) = 40),"
    "  node_id       TEXT    NOT NULL CHECK (length(node_id) = 32),"
    "  first_seen_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (fragment_id, node_id)"
    ") WITHOUT ROWID;",
};

static_assert(sizeof migrations / sizeof migrations[0] == DFS_CATALOG_SCHEMA_VERSION,
              "one migration per schema version");

/* Column lists; their order is the column numbers of catalog_read_node (catalog_nodes.c), read_file
   (catalog_files.c) and read_repair (catalog_repair.c): change them together. */
#define NODE_COLS                                                                        \
    "id, address, zone, state, capacity_bytes, used_bytes, free_bytes, fragment_count, " \
    "last_heartbeat_ms, registered_ms, registration"

#define FILE_COLS                                                                             \
    "file_id, path, size, sha256, scheme, replicas, fragments, data, parity, policy, state, " \
    "overwrite, fragment_size, cell_size, created_ms, committed_ms, expires_ms"

#define REPAIR_COLS                                                                     \
    "fragment_id, reason, margin, from_node, target_node, state, attempts, queued_ms, " \
    "not_before_ms, started_ms"

/* The SQL of each statement of enum stmt (catalog_int.h), prepared once at open. */
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

    /* A segment (a row named by segments.part_id) is its stitched file's storage, not a file:
       the stitched file counts once with its size, its segments not at all (issue 17). */
    [S_STATS_FILES] = "SELECT count(*), coalesce(sum(size), 0) FROM files "
                      "WHERE state = 'committed' AND NOT EXISTS "
                      "(SELECT 1 FROM segments s WHERE s.part_id = files.file_id)",
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
    [S_RESTORED_GET] = "SELECT restored_ms FROM restored WHERE k = 0",
    [S_ORPHAN_INSERT] = "INSERT OR IGNORE INTO orphans (fragment_id, node_id, first_seen_ms) "
                        "VALUES (?1, ?2, ?3)",
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
    [S_SAVEPOINT] = "SAVEPOINT verb",
    [S_RELEASE] = "RELEASE verb",
    [S_ROLLBACK_TO] = "ROLLBACK TO verb",
    [S_APPLIED_GET] = "SELECT applied_index FROM replication WHERE k = 0",
    [S_APPLIED_SET] = "UPDATE replication SET applied_index = ?1 WHERE k = 0",
    [S_META_PUT] = "INSERT OR REPLACE INTO file_meta (file_id, md5, meta) VALUES (?1, ?2, ?3)",
    [S_META_GET] = "SELECT md5, meta FROM file_meta WHERE file_id = ?1",
    [S_BUCKET_GET] = "SELECT name, created_ms, token_id FROM buckets WHERE name = ?1",
    [S_BUCKET_INSERT] = "INSERT INTO buckets (name, created_ms, token_id) VALUES (?1, ?2, ?3)",
    [S_BUCKET_DELETE] = "DELETE FROM buckets WHERE name = ?1",
    [S_BUCKET_FILES] = "SELECT 1 FROM files WHERE path >= ?1 AND path < ?2 LIMIT 1",
    [S_BUCKETS_LIST] = "SELECT name, created_ms, token_id FROM buckets ORDER BY name",
};

/* ---- Names of stored enumerations ------------------------------------------------------------ */

/* The tables that several files read. Those only one file reads (file states, repair reasons,
   token roles) sit beside their reader. */

const char *const catalog_node_state_names[] = {
    [DFS_NODE_UNSPECIFIED] = "unspecified", [DFS_NODE_ALIVE] = "alive",
    [DFS_NODE_SUSPECT] = "suspect",         [DFS_NODE_DEAD] = "dead",
    [DFS_NODE_DRAINING] = "draining",       [DFS_NODE_DECOMMISSIONED] = "decommissioned",
};

const char *const catalog_scheme_names[] = {
    [DFS_SCHEME_UNSPECIFIED] = "unspecified",
    [DFS_SCHEME_REPLICATION] = "replication",
    [DFS_SCHEME_ERASURE] = "erasure",
};

int catalog_name_index(const char *const *names, int n, const char *s)
{
    for (int i = 1; s != NULL && i < n; i++) {
        if (strcmp(names[i], s) == 0)
            return i;
    }
    return 0;
}

enum dfs_policy catalog_policy_from_name(const char *s)
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

void catalog_release(sqlite3_stmt *st)
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

int catalog_query(dfs_catalog *cat, enum stmt id, char **errmsg, const char *types, ...)
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

int catalog_next_row(dfs_catalog *cat, enum stmt id, char **errmsg)
{
    sqlite3_stmt *st = cat->st[id];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    int ret = rc == SQLITE_DONE ? 0 : sql_fail(cat, rc, stmt_sql[id], errmsg);
    catalog_release(st);
    return ret;
}

int catalog_exec(dfs_catalog *cat, enum stmt id, int *changes, char **errmsg, const char *types,
                 ...)
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

int64_t catalog_col_i64(dfs_catalog *cat, enum stmt id, int col)
{
    return sqlite3_column_int64(cat->st[id], col);
}

const char *catalog_col_text(dfs_catalog *cat, enum stmt id, int col)
{
    return (const char *)sqlite3_column_text(cat->st[id], col);
}

void catalog_col_copy(dfs_catalog *cat, enum stmt id, int col, char *buf, size_t cap)
{
    const char *s = catalog_col_text(cat, id, col);
    size_t n = s == NULL ? 0 : (size_t)sqlite3_column_bytes(cat->st[id], col);
    if (n >= cap)
        n = cap - 1;
    if (n > 0)
        memcpy(buf, s, n);
    buf[n] = '\0';
}

void catalog_lock(dfs_catalog *cat)
{
    pthread_mutex_lock(&cat->mu);
}

void catalog_unlock(dfs_catalog *cat)
{
    pthread_mutex_unlock(&cat->mu);
}

int catalog_tx_begin(dfs_catalog *cat, bool write, char **errmsg)
{
    if (cat->applying)
        return catalog_exec(cat, S_SAVEPOINT, NULL, errmsg, "");
    return catalog_exec(cat, write ? S_BEGIN_WRITE : S_BEGIN_READ, NULL, errmsg, "");
}

int catalog_tx_end(dfs_catalog *cat, int rc, char **errmsg)
{
    if (cat->applying) {
        /* Inside an apply (dfs_catalog_apply_begin): the verb's savepoint, not a transaction. A
           refused verb leaves nothing behind; the entry's transaction goes on. */
        if (rc != DFS_OK) {
            int rb = catalog_exec(cat, S_ROLLBACK_TO, NULL, NULL, "");
            if (rb != DFS_OK)
                dfs_log(DFS_LOG_ERROR, "catalog rollback to savepoint failed path=%s err=\"%s\"",
                        cat->path, sqlite3_errmsg(cat->db));
        }
        int rl = catalog_exec(cat, S_RELEASE, NULL, rc == DFS_OK ? errmsg : NULL, "");
        return rc != DFS_OK ? rc : rl;
    }
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

/* ---- Validation ------------------------------------------------------------------------------ */

int catalog_check_id(const char *id, const char *what, char **errmsg)
{
    if (!dfs_id_valid(id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad %s id '%s' (want %d lower-case hex digits)",
                          what, id == NULL ? "" : id, DFS_ID_HEX);
    return DFS_OK;
}

int catalog_check_text(const char *s, size_t min, size_t max, const char *what, char **errmsg)
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

int catalog_check_u64(uint64_t v, const char *what, char **errmsg)
{
    if (v > (uint64_t)INT64_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "%s %" PRIu64 " is too large", what, v);
    return DFS_OK;
}

/* ---- Arrays of rows -------------------------------------------------------------------------- */

void *catalog_grow(void *arrp, size_t *n, size_t size)
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

int catalog_collect_rows(dfs_catalog *cat, enum stmt id, size_t size, catalog_row_reader read,
                         void *outp, size_t *n, char **errmsg)
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

/* ---- Open and close -------------------------------------------------------------------------- */

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
                 v, dfs_clock_wall_ms());
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
    /* Recursive: an apply (dfs_catalog_apply_begin .. _end) holds it across the verbs it runs. */
    pthread_mutexattr_t attr;
    bool mu_ok = pthread_mutexattr_init(&attr) == 0;
    if (mu_ok) {
        mu_ok = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE) == 0 &&
                pthread_mutex_init(&cat->mu, &attr) == 0;
        pthread_mutexattr_destroy(&attr);
    }
    if (cat->path == NULL || !mu_ok) {
        free(cat->path);
        free(cat);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&cat->calls_mu, NULL);
    pthread_mutex_init(&cat->soft_mu, NULL);
    /* Origins of this handle's proposed commands: a random base, so that the apply of another
       replica's command (or of this process's before a restart) never matches a waiting call. */
    if (getrandom(&cat->origin_base, sizeof cat->origin_base, 0) != sizeof cat->origin_base)
        cat->origin_base = (uint64_t)dfs_clock_wall_ms() << 20;
    cat->origin_base &= ~(uint64_t)0xffffffff; /* the low 32 bits count */
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
    pthread_mutex_destroy(&cat->calls_mu);
    pthread_mutex_destroy(&cat->soft_mu);
    free(cat->soft);
    free(cat->path);
    free(cat);
}
