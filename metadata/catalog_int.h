/*
 * Private to the catalog (metadata/catalog*.c and command.c, the files of the :catalog target;
 * nothing else includes it): the handle, its prepared
 * statements, transactions, and the helpers that more than one of its files uses.
 *
 * The catalog is one module behind one public header, catalog.h, spread over one file per concern,
 * the way SQLite spans files behind sqlite3.h:
 *
 *   catalog.c            on-disk format (schema comment, migrations), the SQL of every statement,
 *                        the names of stored enumerations, SQLite and transaction helpers,
 *                        validation shared by the verbs, open and close
 *   catalog_nodes.c      storage nodes: registration, enrollment, heartbeats, states, the sweep,
 *                        prefixes, drains, copies per node
 *   catalog_files.c      redundancy, file records and layouts, create / replace target / commit /
 *                        abort / expire / get / list / delete, and the deletion queue they feed
 *   catalog_placement.c  the saved copysets and buddy groups (placement.h's state)
 *   catalog_repair.c     the liveness rules, the repair queue and its planner, rebalance
 *                        candidates, and the reports from nodes (corrupt, missing, inventories),
 *                        which all judge a fragment the same way (struct assess)
 *   catalog_health.c     the layout picture, health classification, statistics
 *   catalog_tokens.c     bearer tokens and the service's secrets
 *   catalog_buckets.c    S3 buckets
 *   catalog_stitch.c     StitchFile: a file made of committed files' segments
 *   catalog_replication.c  proposing writes, applying committed log entries, snapshots, restore
 *   command.c            the replicated commands (command.h): building and applying them
 *
 * Conventions inside the catalog:
 *   - A public verb validates its arguments, takes cat->mu (catalog_lock), opens a transaction
 *     (catalog_tx_begin), does its work (often in a `*_locked` function), ends the transaction
 *     (catalog_tx_end), unlocks, and only then logs and fills its out-parameters.
 *     Every helper below that takes a dfs_catalog, except catalog_collect_rows, expects cat->mu
 *     held, and a transaction open when it is one of several reads or any write.
 *   - Helpers return DFS_OK or a negative DFS code with a message in *errmsg (may be NULL), like
 *     the public functions; row readers return 1 (row), 0 (none) or a negative DFS code.
 *   - Shared helpers carry the catalog_ prefix; what one file uses alone stays static there.
 */
#ifndef DFS_METADATA_CATALOG_INT_H
#define DFS_METADATA_CATALOG_INT_H

#include "metadata/catalog.h"
#include "metadata/command.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Prepared once at open, reused with sqlite3_reset; all used under cat->mu only. The SQL of each is
 * in catalog.c (stmt_sql), beside the schema it reads.
 */
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
    S_SAVEPOINT,
    S_RELEASE,
    S_ROLLBACK_TO,
    S_APPLIED_GET,
    S_APPLIED_SET,
    S_META_PUT,
    S_META_GET,
    S_BUCKET_GET,
    S_BUCKET_INSERT,
    S_BUCKET_DELETE,
    S_BUCKET_FILES,
    S_BUCKETS_LIST,
    S_RESTORED_GET,
    S_ORPHAN_INSERT,

    S_COUNT
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
    /* Between dfs_catalog_apply_begin and _end (cat->mu held throughout): one write transaction
       is open, and each verb runs in a savepoint of it instead of a transaction of its own. */
    bool applying;
    pthread_t apply_owner; /* the thread between apply_begin and apply_end */
    /* Replicated (dfs_catalog_set_proposer): write verbs called by any other thread than the one
       applying become commands, proposed through this function; their out-parameters are filled
       by the apply on this replica (struct catalog_call). */
    dfs_catalog_proposer proposer;
    void *proposer_arg;
    pthread_mutex_t calls_mu; /* guards calls and next_origin; taken after mu, never before */
    struct catalog_call *calls;
    uint64_t origin_base, next_origin;
    /* Liveness as the leader's soft state (dfs_catalog_liveness_lead, catalog_nodes.c): under
       soft_mu, a leaf lock (taken with or without mu, never held while taking mu or proposing).
       soft[] is sorted by node id. */
    pthread_mutex_t soft_mu;
    bool soft_on;
    int64_t soft_epoch_ms;
    struct catalog_soft_node *soft;
    size_t nsoft, capsoft;
};

/* What the leader heard from one node (dfs_catalog_liveness_lead). */
struct catalog_soft_node {
    char id[DFS_ID_HEX + 1];
    int64_t seen_ms;               /* latest heartbeat heard here */
    struct dfs_node_usage usage;   /* its figures */
    int64_t written_ms;            /* when usage was last written to the catalog */
    struct dfs_node_usage written; /* the figures written then */
    unsigned marking;              /* sweeps deciding a transition of this node, in flight */
};

/*
 * A write verb waiting for its command to be applied here: the apply of the command that carries
 * `origin` (a number unique to this process's handle) writes the verb's results through out[]
 * (in the order of the verb's out-parameters; NULL ones are not wanted), under calls_mu, which
 * the waiting verb takes to unregister: the apply never writes to a caller that has gone.
 */
struct catalog_call {
    uint64_t origin;
    void *out[3];
    struct catalog_call *next;
};

/* Whether a write verb must be proposed (a proposer is set and this thread is not applying). */
bool catalog_must_propose(dfs_catalog *cat);

/*
 * Propose command cmd (malloc'd by a dfs_command_* builder; freed here) and wait for its verdict,
 * the verb's result; the out-parameters in out[] (may be NULL: none) are filled by the apply.
 * Must not be called with cat->mu held.
 */
int catalog_propose(dfs_catalog *cat, void *cmd, size_t len, void *out0, void *out1, void *out2,
                    char **errmsg);

/*
 * For the apply of a command carrying `origin`: the waiting call's out-parameters (out[3]) with
 * calls_mu held (release with catalog_call_done), or NULL (another replica's command, or its
 * caller gave up): then nothing is held.
 */
struct catalog_call *catalog_call_find(dfs_catalog *cat, uint64_t origin);
void catalog_call_done(dfs_catalog *cat, struct catalog_call *call);

/* ---- Names of stored enumerations (catalog.c) ----------------------------------------------- */

/* The names the schema stores (its CHECK constraints), indexed by enum value; [0] "unspecified". */
extern const char *const catalog_node_state_names[DFS_NODE_DECOMMISSIONED + 1];
extern const char *const catalog_scheme_names[DFS_SCHEME_ERASURE + 1];

/* Index of `s` in names[1..n), or 0 (the "unspecified" value) when absent; s may be NULL. */
int catalog_name_index(const char *const *names, int n, const char *s);

/* NAME_INDEX(table, s): catalog_name_index over a whole array whose size the compiler knows. */
#define NAME_INDEX(names, s) \
    catalog_name_index((names), (int)(sizeof(names) / sizeof((names)[0])), (s))

/* A stored placement policy name, or DFS_POLICY_UNSPECIFIED (NULL or unknown). */
enum dfs_policy catalog_policy_from_name(const char *s);

/* ---- SQLite helpers (catalog.c) -------------------------------------------------------------- */

/*
 * Bind parameters ?1.. of statement `id` from `types` and the arguments after it: 't' text (const
 * char *, NULL binds NULL), 'i' int64_t, 'b' blob (const void *, size_t), 'n' NULL. Text and
 * blobs are borrowed (SQLITE_STATIC): the caller keeps them alive until the statement is reset.
 *
 * catalog_query binds and takes the first step: 1 with a row ready (read it with catalog_col_*,
 * then catalog_next_row until it returns 0, or catalog_release to stop early), 0 when there is no
 * row, or a negative DFS code with a message; on 0 and on error the statement is already released.
 */
int catalog_query(dfs_catalog *cat, enum stmt id, char **errmsg, const char *types, ...);

/* Next row of a statement started with catalog_query(): 1, 0 or a DFS code (both released). */
int catalog_next_row(dfs_catalog *cat, enum stmt id, char **errmsg);

/*
 * Run a statement that returns no rows (parameters as catalog_query). Returns DFS_OK or a DFS
 * code; *changes (may be NULL) gets the number of rows it changed. Always leaves it released.
 */
int catalog_exec(dfs_catalog *cat, enum stmt id, int *changes, char **errmsg, const char *types,
                 ...);

/* Reset a statement and clear its bindings: every pointer read from its row becomes invalid. */
void catalog_release(sqlite3_stmt *st);

/*
 * Columns of the current row of statement `id`. catalog_col_text's pointer belongs to SQLite and
 * lives until the statement steps or is released: copy what must outlive it. catalog_col_copy
 * copies into buf[cap], truncating (values were length-checked when stored). NULL reads as 0 / "".
 */
int64_t catalog_col_i64(dfs_catalog *cat, enum stmt id, int col);
const char *catalog_col_text(dfs_catalog *cat, enum stmt id, int col);
void catalog_col_copy(dfs_catalog *cat, enum stmt id, int col, char *buf, size_t cap);

/* ---- Transactions (catalog.c) ---------------------------------------------------------------- */

/* Take and drop cat->mu, the only lock (see struct dfs_catalog). */
void catalog_lock(dfs_catalog *cat);
void catalog_unlock(dfs_catalog *cat);

/* BEGIN IMMEDIATE (write) or a deferred BEGIN (a consistent snapshot for several reads). */
int catalog_tx_begin(dfs_catalog *cat, bool write, char **errmsg);

/*
 * End the transaction: COMMIT when rc is DFS_OK, else ROLLBACK. Returns the final status: rc, or
 * the commit's failure (then rolled back). Pass the worker's status straight in.
 */
int catalog_tx_end(dfs_catalog *cat, int rc, char **errmsg);

/* ---- Arrays of rows (catalog.c) -------------------------------------------------------------- */

/*
 * Append one zeroed element to the array whose pointer is at `arrp` (any `T **`), holding *n
 * elements of `size` bytes; returns the new slot, or NULL with the array unchanged. The pointer is
 * read and written with memcpy, so T ** need not alias void **. The array is the caller's (free()).
 *
 * The capacity is not stored: it is derived from *n. Arrays made by catalog_grow alone (from
 * NULL, 0) hold room for at least 4 elements, doubled each time *n reaches a power of two, so a
 * listing of n rows costs O(n) copying rather than a realloc per row.
 */
void *catalog_grow(void *arrp, size_t *n, size_t size);

/* Fills one array element from the current row of a statement (see catalog_collect_rows). */
typedef void (*catalog_row_reader)(dfs_catalog *cat, enum stmt id, void *slot);

/*
 * Every row of statement `id` (which takes no parameters) into a new array at `outp` (any `T **`)
 * of *n elements of `size` bytes, each filled by `read`; the caller frees the array with free().
 * Takes the catalog lock itself (call it without). On failure nothing is returned and the partial
 * array is freed.
 */
int catalog_collect_rows(dfs_catalog *cat, enum stmt id, size_t size, catalog_row_reader read,
                         void *outp, size_t *n, char **errmsg);

/* ---- Validation (catalog.c) ------------------------------------------------------------------ */

/* A 32-hex-digit id; `what` names it in the message ("node", "file"). DFS_EINVAL otherwise. */
int catalog_check_id(const char *id, const char *what, char **errmsg);

/* min..max bytes without control characters (NULL counts as empty). DFS_EINVAL otherwise. */
int catalog_check_text(const char *s, size_t min, size_t max, const char *what, char **errmsg);

/* A size or count that fits an SQLite INTEGER (at most INT64_MAX). DFS_EINVAL otherwise. */
int catalog_check_u64(uint64_t v, const char *what, char **errmsg);

/* ---- Nodes (catalog_nodes.c) ----------------------------------------------------------------- */

/* Fill *n (caller storage) from a NODE_COLS row (catalog.c's column order) of statement `id`. */
void catalog_read_node(dfs_catalog *cat, enum stmt id, struct dfs_node_rec *n);

/* Look up a node; returns 1 (found, *n filled), 0 (absent) or a DFS code. */
int catalog_get_node(dfs_catalog *cat, const char *id, struct dfs_node_rec *n, char **errmsg);

/*
 * A node that is to receive a new copy (a plan's target, a replacement, a repair): registered
 * (else DFS_ENOTFOUND) and alive (else DFS_EABORTED: choose another node).
 */
int catalog_check_target(dfs_catalog *cat, const char *node_id, char **errmsg);

/* ---- Files (catalog_files.c) ----------------------------------------------------------------- */

/*
 * Find a file by statement S_FILE_GET_ID (key = id) or S_FILE_GET_PATH (key = committed path).
 * *out is a new record (the caller frees it with dfs_catalog_file_rec_free), with its layout when
 * asked, or NULL when there is no such file (still DFS_OK).
 */
int catalog_find_file(dfs_catalog *cat, enum stmt id, const char *key, bool layout,
                      struct dfs_file_rec **out, char **errmsg);

/* Queue every copy of a file (and of its segments, when stitched) for deletion and remove its
   rows (catalog_files.c). */
int catalog_remove_file(dfs_catalog *cat, const char *file_id, int64_t now_ms, char **errmsg);

/* ---- Stitched files (catalog_stitch.c) ------------------------------------------------------- */

/* Load f's segments, each with its layout (none: f unchanged). */
int catalog_segments_load(dfs_catalog *cat, struct dfs_file_rec *f, char **errmsg);

/* Free f's segments (and zero them). */
void catalog_segments_free(struct dfs_file_rec *f);

/* Queue the copies of file_id's segments for deletion and remove the segments' file rows (the
   segments rows go with file_id's row, ON DELETE CASCADE). None: a no-op. */
int catalog_segments_remove(dfs_catalog *cat, const char *file_id, int64_t now_ms, char **errmsg);

/* ---- Liveness rules (catalog_repair.c; catalog.h, Repair queue) ------------------------------ */

/* A copy on a node in this state is live (alive, suspect) / readable (live, or draining). */
bool catalog_state_live(enum dfs_node_state s);
bool catalog_state_readable(enum dfs_node_state s);

/* ---- Tokens (catalog_tokens.c) --------------------------------------------------------------- */

/* `id` is min..16 lower-case hex digits (a token id, or a prefix of one). */
bool catalog_token_id_ok(const char *id, size_t min);

#endif /* DFS_METADATA_CATALOG_INT_H */
