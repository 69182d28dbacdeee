/* The catalog: files, their fragments and replicas, storage nodes and pending work, in SQLite. */
#ifndef DFS_METADATA_CATALOG_H
#define DFS_METADATA_CATALOG_H

#include "common/id.h"
#include "metadata/placement.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The catalog answers the Metadata service's calls (protos/dfs/v1/metadata.proto); it knows no
 * gRPC or protobuf types. The schema it keeps on disk is documented at the top of catalog.c.
 *
 * Conventions of every function below:
 *   - Returns DFS_OK (0) or a negative DFS_E* code; on failure a one-line message goes to *errmsg
 *     (caller frees; errmsg may be NULL) and nothing in the catalog has changed: every verb runs
 *     in one SQLite transaction, committed only when the whole verb succeeded.
 *   - Out-parameters are written only on success.
 *   - Times are milliseconds since the Unix epoch, passed in by the caller (`now_ms`), so tests
 *     control the clock; the catalog never reads it except to stamp schema migrations.
 *   - Paths are canonical (common/path.h); a non-canonical path is DFS_EINVAL.
 *   - DFS_EIO means SQLite failed (disk, corruption), DFS_ENOSPC the disk is full, DFS_EUNAVAIL the
 *     database stayed locked by another process past the busy timeout.
 *
 * Thread safety: a dfs_catalog may be used from any number of threads at once. It holds one SQLite
 * connection guarded by one mutex, held for the whole of each call (including the fsync of a
 * commit), so calls are serialised; no call blocks on anything but that mutex and the disk.
 */
typedef struct dfs_catalog dfs_catalog;

/* The schema version this code writes (migrations 1..DFS_CATALOG_SCHEMA_VERSION). */
#define DFS_CATALOG_SCHEMA_VERSION 10

/* Longest node address ("host:port", "unix:/path", ...) and zone name, in bytes. */
#define DFS_NODE_ADDRESS_MAX 255
#define DFS_NODE_ZONE_MAX    63

/* Length of a whole-file SHA-256 digest. */
#define DFS_SHA256_LEN 32

/* Bounds of types.proto's Redundancy. */
#define DFS_REPLICAS_MAX  16  /* k */
#define DFS_FRAGMENTS_MAX 256 /* F */
#define DFS_EC_WIDTH_MAX  32  /* K + M */

/* At most this many files per dfs_catalog_files_list page (ListFiles' default and maximum). */
#define DFS_CATALOG_LIST_MAX 1000

/* ---- Opening --------------------------------------------------------------------------------- */

/*
 * Open (creating if needed) the catalog database at `path` and bring its schema up to
 * DFS_CATALOG_SCHEMA_VERSION by applying the missing migrations in order, in one transaction.
 * ":memory:" gives a private in-memory catalog (no WAL, gone at close).
 *
 * Settings: WAL journal; synchronous=FULL, so a file whose CommitFile was answered survives a power
 * loss (storage nodes fsync fragments before acknowledging them; the catalog must not be the
 * weaker link); foreign keys on; a busy timeout for other processes (a backup, the sqlite3 shell).
 *
 * On success *out is the handle, freed with dfs_catalog_close. Errors: DFS_EIO (cannot open or
 * migrate), DFS_EINVAL (the file is some other SQLite database), DFS_EPRECOND (its schema is newer
 * than this program), DFS_ENOMEM.
 */
int dfs_catalog_open(const char *path, dfs_catalog **out, char **errmsg);

/*
 * Close the catalog; NULL is a no-op. No other call may be running or start on it. Everything
 * committed is already durable; pending files stay pending (and expire later) across a restart.
 */
void dfs_catalog_close(dfs_catalog *cat);

/* ---- Storage nodes --------------------------------------------------------------------------- */

/* Numbers as dfs.v1.NodeState (types.proto). */
enum dfs_node_state {
    DFS_NODE_UNSPECIFIED = 0,
    DFS_NODE_ALIVE = 1,          /* heartbeats on time; takes new fragments */
    DFS_NODE_SUSPECT = 2,        /* heartbeats late; takes no new fragments, still read */
    DFS_NODE_DEAD = 3,           /* no heartbeat for the dead timeout; its replicas count as lost */
    DFS_NODE_DRAINING = 4,       /* operator: being emptied; takes no new fragments */
    DFS_NODE_DECOMMISSIONED = 5, /* operator: emptied and retired */
};

/* "alive", "suspect", "dead", "draining", "decommissioned"; "unspecified"/"unknown" otherwise. */
const char *dfs_catalog_node_state_name(enum dfs_node_state state);

/* What a node reports about itself at registration and in every heartbeat. */
struct dfs_node_usage {
    uint64_t capacity_bytes; /* size of the file system holding the data dir */
    uint64_t used_bytes;     /* bytes of fragment files */
    uint64_t free_bytes;     /* free bytes on that file system */
    uint64_t fragment_count; /* fragment files held */
};

/* A storage node as the catalog knows it (dfs.v1.Node). A plain value: no pointers inside. */
struct dfs_node_rec {
    char id[DFS_ID_HEX + 1];
    char address[DFS_NODE_ADDRESS_MAX + 1];
    char zone[DFS_NODE_ZONE_MAX + 1]; /* "" for none */
    enum dfs_node_state state;
    struct dfs_node_usage usage;
    int64_t last_heartbeat_ms; /* last heartbeat or registration */
    int64_t registered_ms;     /* first registration */
    uint64_t registration;     /* the current registration (0: none since schema version 5) */
};

/* As `expect` or `registration` below: no check, or the registration left as it is. */
#define DFS_CATALOG_KEEP UINT64_MAX

/*
 * RegisterNode: insert or update node `node_id` (32 hex digits) with its address (1 to
 * DFS_NODE_ADDRESS_MAX bytes, no control characters), zone (NULL or "" for none, at most
 * DFS_NODE_ZONE_MAX bytes) and usage; last_heartbeat_ms becomes now_ms. A new node gets
 * registered_ms = now_ms; a known one keeps its first registration time. The state becomes alive,
 * except that draining and decommissioned (operator decisions) survive a node's restart.
 * The node's registration becomes `registration` (DFS_CATALOG_KEEP: left as it is), provided it
 * was `expect` when the caller decided that this registration may take over (DFS_CATALOG_KEEP:
 * whatever it is): DFS_EABORTED when another registration came in meanwhile.
 * Errors: DFS_EINVAL (bad id, address, zone, or a usage figure above INT64_MAX).
 */
int dfs_catalog_node_register(dfs_catalog *cat, const char *node_id, const char *address,
                              const char *zone, const struct dfs_node_usage *usage, int64_t now_ms,
                              uint64_t expect, uint64_t registration, char **errmsg);

/*
 * Enrollment: register node_id, which the catalog has never seen, together with its node token
 * (token_id, the SHA-256 of its secret; role node, bound to node_id, named "node <first 12
 * digits of the id>"), in one
 * transaction, with this registration. DFS_EEXIST when the node is known (enrolled before) or the
 * token id is taken; DFS_EINVAL as dfs_catalog_node_register, or for a bad token id.
 */
int dfs_catalog_node_enroll(dfs_catalog *cat, const char *node_id, const char *token_id,
                            const uint8_t token_hash[32], const char *address, const char *zone,
                            const struct dfs_node_usage *usage, int64_t now_ms,
                            uint64_t registration, char **errmsg);

/* The id of node_id's token (caller storage, 17 bytes). DFS_ENOTFOUND when it has none. */
int dfs_catalog_node_token(dfs_catalog *cat, const char *node_id, char token_id[17], char **errmsg);

/*
 * Heartbeat: record the usage and now_ms as the last heartbeat of a known node; a suspect or dead
 * node becomes alive again. *known is set to false (and the call succeeds) when the catalog has no
 * such node, or when it has none of its registrations (0: a restored catalog, see
 * dfs_catalog_restore_file) while the call carries one: the node must register again.
 * DFS_EPRECOND (nothing recorded) when the node's
 * registration is not `registration` (DFS_CATALOG_KEEP: any): a newer registration replaced the
 * caller. Errors: DFS_EINVAL (bad id or usage).
 */
int dfs_catalog_node_heartbeat(dfs_catalog *cat, const char *node_id, uint64_t registration,
                               const struct dfs_node_usage *usage, int64_t now_ms, bool *known,
                               char **errmsg);

/* One node into *out (caller-owned storage). Errors: DFS_EINVAL (bad id), DFS_ENOTFOUND. */
int dfs_catalog_node_get(dfs_catalog *cat, const char *node_id, struct dfs_node_rec *out,
                         char **errmsg);

/*
 * Set a node's state by operator decision (draining, decommissioned, or back to alive). The sweep
 * and heartbeats only move nodes between alive, suspect and dead; they never touch draining or
 * decommissioned nodes. Going back to alive drops the queued (not running) drain repairs whose
 * from_node is the node: draining stops, copies already moved stay (the surplus is trimmed by
 * the planner). Errors: DFS_EINVAL (bad id or state), DFS_ENOTFOUND.
 */
int dfs_catalog_node_set_state(dfs_catalog *cat, const char *node_id, enum dfs_node_state state,
                               char **errmsg);

/*
 * The node whose id starts with `prefix` (1 to 32 lower-case hex digits; a whole id is a prefix of
 * itself) into *out. Errors: DFS_EINVAL (not hex, empty, or the prefix matches several nodes: the
 * message says how many), DFS_ENOTFOUND (no node matches).
 */
int dfs_catalog_node_resolve(dfs_catalog *cat, const char *prefix, struct dfs_node_rec *out,
                             char **errmsg);

/*
 * Draining nodes that hold no replica row any more (committed or planned) and have no removal
 * queued (dfs_catalog_deletions_fetch serves draining nodes, so their moved copies leave their
 * disks first) become decommissioned, each logged. *n (may be NULL) receives how many. A draining
 * node that is down keeps its state: decommission it by hand.
 */
int dfs_catalog_nodes_finish_drains(dfs_catalog *cat, size_t *n, char **errmsg);

/* What the catalog records on one node: acknowledged copies and their bytes. A plain value. */
struct dfs_node_copies {
    char node_id[DFS_ID_HEX + 1];
    uint64_t copies;
    uint64_t bytes;
};

/*
 * Recorded copies per node (only nodes with at least one), in node id order. *out is a malloc'd
 * array of *n (NULL when 0), freed with free(). One pass over the replicas (for listings and the
 * rebalancer, not for every request).
 */
int dfs_catalog_node_copies(dfs_catalog *cat, struct dfs_node_copies **out, size_t *n,
                            char **errmsg);

/*
 * ListNodes: every node, in order of first registration. On success *out is a malloc'd array of
 * *n records (NULL when *n is 0) that the caller frees with free().
 */
int dfs_catalog_nodes_list(dfs_catalog *cat, struct dfs_node_rec **out, size_t *n, char **errmsg);

/*
 * Liveness sweep, run periodically by the service. A node whose last heartbeat is more than
 * suspect_after_ms old goes from alive to suspect; more than dead_after_ms old, from alive or
 * suspect to dead. Draining and decommissioned nodes are left alone. Each transition is logged.
 * *nsuspect and *ndead (either may be NULL) receive the number of nodes that entered each state.
 * Errors: DFS_EINVAL unless 0 < suspect_after_ms <= dead_after_ms.
 */
int dfs_catalog_nodes_sweep(dfs_catalog *cat, int64_t now_ms, int64_t suspect_after_ms,
                            int64_t dead_after_ms, size_t *nsuspect, size_t *ndead, char **errmsg);

/*
 * Liveness as the leader's soft state (services/metadata/REPLICATION.md, "Soft state"). A node
 * heartbeats every second; writing each heartbeat into the catalog (a Raft log entry per node per
 * second, applied by every replica) buys nothing a replica needs. Between
 * dfs_catalog_liveness_lead and dfs_catalog_liveness_follow, the catalog handle keeps each
 * node's last heartbeat and usage in memory and:
 *
 *   - dfs_catalog_node_heartbeat (called by any thread but the one applying) checks the node
 *     against the catalog (unknown: *known false; another registration: DFS_EPRECOND, as ever)
 *     and records the heartbeat in memory only. It writes the heartbeat into the catalog (the
 *     durable verb: a command when replicated) only when that changes durable state: the node
 *     is suspect or dead (alive again), a transition of the node decided by a sweep is on its
 *     way (the write then stamps a newer heartbeat, which voids the transition), or its usage
 *     changed and was last written DFS_CATALOG_USAGE_WRITE_MS ago or more (so the catalog, its
 *     backups and a next leader hold figures at most that old);
 *   - dfs_catalog_nodes_sweep decides from memory: each alive or suspect node's silence counts
 *     from its last heartbeat heard here, the last one recorded in the catalog, or the start of
 *     the leadership (epoch_ms), whichever is latest — so a new leader gives every node a fresh
 *     grace and a failover declares no node dead. The transitions go to the catalog as one
 *     dfs_catalog_nodes_mark (a command carrying every decision);
 *   - dfs_catalog_nodes_list, _node_get and _node_resolve show the figures from memory:
 *     usage from the latest heartbeat, last_heartbeat_ms the latest heard or recorded;
 *   - dfs_catalog_node_register and _node_enroll refresh the node's figures in memory.
 *
 * Node states, registrations and everything else stay durable and replicated. Without a lead
 * (direct catalogs, followers) every verb writes through as documented above. Leading again
 * starts from nothing (the figures of an earlier lead are dropped).
 */
#define DFS_CATALOG_USAGE_WRITE_MS 30000
void dfs_catalog_liveness_lead(dfs_catalog *cat, int64_t epoch_ms);
void dfs_catalog_liveness_follow(dfs_catalog *cat);

/* One liveness transition a leader decided: node_id from state `from` to `to` (suspect or dead),
   silent since last_seen_ms (the latest heartbeat the leader knew of). */
struct dfs_node_mark {
    char node_id[DFS_ID_HEX + 1];
    enum dfs_node_state from, to;
    int64_t last_seen_ms;
};

/*
 * Apply a leader's sweep decisions: each node still in state `from` and with no heartbeat
 * recorded after last_seen_ms goes to `to` (alive to suspect or dead, suspect to dead), logged;
 * any other mark is skipped (the node changed since the decision: registered again, alive again,
 * set by an operator, or unknown). *nsuspect and *ndead (either may be NULL) receive the number
 * of nodes moved to each. Errors: DFS_EINVAL (a bad id or transition; nothing applied).
 */
int dfs_catalog_nodes_mark(dfs_catalog *cat, const struct dfs_node_mark *marks, size_t n,
                           int64_t now_ms, size_t *nsuspect, size_t *ndead, char **errmsg);

/* ---- Redundancy ------------------------------------------------------------------------------ */

/* Numbers as dfs.v1.Redundancy.Scheme. */
enum dfs_scheme {
    DFS_SCHEME_UNSPECIFIED = 0,
    DFS_SCHEME_REPLICATION = 1, /* F pieces, each on k distinct nodes */
    DFS_SCHEME_ERASURE = 2,     /* K data + M parity fragments, each on its own node */
};

/* A file's redundancy, resolved (no defaults left): dfs.v1.Redundancy. */
struct dfs_redundancy {
    enum dfs_scheme scheme;
    uint32_t replicas;  /* k: REPLICATION, 1..DFS_REPLICAS_MAX; 0 for ERASURE */
    uint32_t fragments; /* F: REPLICATION, 1..DFS_FRAGMENTS_MAX; 0 for ERASURE */
    uint32_t data;      /* K: ERASURE, >= 1; 0 for REPLICATION */
    uint32_t parity;    /* M: ERASURE, >= 0 with K + M <= DFS_EC_WIDTH_MAX; 0 for REPLICATION */
};

/*
 * Check a resolved redundancy against the bounds above (the fields of the other scheme must be 0).
 * Returns 0 or DFS_EINVAL with the reason ("replicas must be 1..16, not 0").
 */
int dfs_catalog_redundancy_check(const struct dfs_redundancy *r, char **errmsg);

/* Number of fragments of a file: F, or K + M. The redundancy must pass the check. */
uint32_t dfs_catalog_redundancy_fragments(const struct dfs_redundancy *r);

/* Number of copies of each fragment: k, or 1 for ERASURE. */
uint32_t dfs_catalog_redundancy_copies(const struct dfs_redundancy *r);

/* ---- Files ----------------------------------------------------------------------------------- */

/* Numbers as dfs.v1.FileState. */
enum dfs_file_state {
    DFS_FILE_UNSPECIFIED = 0,
    DFS_FILE_PENDING = 1,   /* created, being written; invisible to get and list */
    DFS_FILE_COMMITTED = 2, /* readable */
};

/* One copy of a fragment (dfs.v1.Replica). A plain value. */
struct dfs_replica_rec {
    char node_id[DFS_ID_HEX + 1];
    char address[DFS_NODE_ADDRESS_MAX + 1]; /* the node's address now */
    enum dfs_node_state node_state;         /* the node's state now */
};

/* One fragment of a file (dfs.v1.Fragment). Owned by its dfs_file_rec. */
struct dfs_fragment_rec {
    uint32_t index;
    char fragment_id[DFS_FRAGMENT_ID_HEX + 1];
    uint64_t size;
    uint32_t checksum; /* CRC32C of the block-CRC table; 0 while pending */
    /* Pending: the planned targets, in plan order. Committed: the acknowledged copies. */
    struct dfs_replica_rec *replicas;
    size_t nreplicas;
    /*
     * Pending files only: nodes that failed while writing this fragment and whose partial copy is
     * still queued for deletion. A replacement target must avoid them as well as the replicas
     * (pass both to dfs_placement_choose); dfs_catalog_file_replace_target refuses them.
     */
    char (*failed_node_ids)[DFS_ID_HEX + 1];
    size_t nfailed;
};

/*
 * A file (dfs.v1.FileInfo), with or without its layout. Heap-allocated by the catalog: a single
 * record is freed with dfs_catalog_file_rec_free, an array from a listing with
 * dfs_catalog_file_recs_free; `path`, `fragments` and everything under them belong to the record.
 */
struct dfs_file_rec {
    char file_id[DFS_ID_HEX + 1];
    char *path; /* canonical */
    uint64_t size;
    uint8_t sha256[DFS_SHA256_LEN]; /* of the whole file; all zero while pending */
    struct dfs_redundancy redundancy;
    enum dfs_policy policy;
    enum dfs_file_state state;
    bool overwrite; /* CommitFile replaces a committed file at the same path */
    uint64_t fragment_size;
    uint32_t cell_size; /* ERASURE only; 0 otherwise */
    int64_t created_ms;
    int64_t committed_ms; /* 0 while pending */
    int64_t expires_ms;   /* pending: removed when now_ms reaches it; 0 once committed */
    /* In index order (fragments[i].index == i); NULL and 0 in listings. */
    struct dfs_fragment_rec *fragments;
    size_t nfragments;
    /* A stitched file (dfs_catalog_file_stitch): no fragments; its bytes are its segments' in
       order, each a whole committed file with its layout. NULL and 0 otherwise and in listings. */
    struct dfs_segment_rec *segments;
    size_t nsegments;
};

/* One segment of a stitched file: bytes [offset, offset + file->size) are file's. */
struct dfs_segment_rec {
    uint64_t offset;
    struct dfs_file_rec *file; /* with its layout; owned by the stitched file's record */
};

/* Free a record returned through a `struct dfs_file_rec **`; NULL is a no-op. */
void dfs_catalog_file_rec_free(struct dfs_file_rec *file);

/* Free an array of n records returned by a listing; NULL is a no-op. */
void dfs_catalog_file_recs_free(struct dfs_file_rec *files, size_t n);

/* One fragment of a plan: where the service wants its copies written. Borrowed by the call. */
struct dfs_plan_fragment {
    uint32_t index;              /* 0..nfragments-1, each exactly once */
    uint64_t size;               /* bytes this fragment will hold */
    const char *const *node_ids; /* targets in order: k for REPLICATION, 1 for ERASURE */
    size_t nnodes;
};

/* CreateFile, resolved: everything the service decided. Borrowed by the call. */
struct dfs_create_req {
    const char *path; /* canonical */
    uint64_t size;
    struct dfs_redundancy redundancy; /* resolved; must pass dfs_catalog_redundancy_check */
    enum dfs_policy policy;           /* resolved: not DFS_POLICY_UNSPECIFIED */
    bool overwrite;
    uint64_t fragment_size;
    uint32_t cell_size;                        /* ERASURE; 0 for REPLICATION */
    int64_t expires_ms;                        /* must be later than now_ms */
    const struct dfs_plan_fragment *fragments; /* one per fragment of the redundancy */
    size_t nfragments;
    /* The new file's id (DFS_ID_HEX lower-case hex digits), fixed by the caller so that every
       replica applying the same command writes the same id; NULL: drawn at random here. An id
       already in the catalog is DFS_EEXIST. */
    const char *file_id;
};

/*
 * CreateFile: record a pending file with a fresh file id (common/id.h) and its plan; fragment ids
 * are dfs_fragment_id(file_id, index). The file stays invisible to get and list until committed,
 * and several pending files may target the same path.
 *
 * The plan must be complete and consistent: one entry per fragment of the redundancy, each with
 * exactly `copies` distinct registered nodes (for ERASURE, all fragments on distinct nodes), every
 * node alive; for REPLICATION the fragment sizes add up to the file size. Sizes are at most
 * INT64_MAX.
 *
 * On success *out is the pending file with its layout (planned replicas with their addresses),
 * freed with dfs_catalog_file_rec_free. Errors:
 *   DFS_EEXIST     a committed file exists at the path and overwrite is false:
 *                  "/a/b already exists (use --force to replace it)"
 *   DFS_EINVAL     a malformed request or plan
 *   DFS_ENOTFOUND  a planned node is not registered
 *   DFS_EABORTED   a planned node is no longer alive (the node list changed; plan again)
 */
int dfs_catalog_file_create(dfs_catalog *cat, const struct dfs_create_req *req, int64_t now_ms,
                            struct dfs_file_rec **out, char **errmsg);

/*
 * ReplaceTarget: while file `file_id` is pending, target `failed_node_id` of fragment `index`
 * failed; `new_node_id` (chosen by the caller with dfs_placement_choose, excluding the fragment's
 * current replicas and failed_node_ids, and for ERASURE every node of the file) takes its place in
 * the plan, at the same position. The failed node's copy, possibly partial, is queued for deletion,
 * and the node stays excluded from this fragment while that deletion is queued.
 *
 * On success *out (caller-owned storage) is the new target. Errors:
 *   DFS_ENOTFOUND  no pending file with that id; the failed node is not a target of the fragment;
 *                  the new node is not registered
 *   DFS_EPRECOND   the pending file has expired
 *   DFS_EINVAL     bad ids, index out of range, new node == failed node
 *   DFS_EABORTED   the new node is not alive, is already a target of the fragment (of the file,
 *                  for ERASURE), or still has a queued deletion of this fragment: choose again
 */
int dfs_catalog_file_replace_target(dfs_catalog *cat, const char *file_id, uint32_t index,
                                    const char *failed_node_id, const char *new_node_id,
                                    int64_t now_ms, struct dfs_replica_rec *out, char **errmsg);

/* One fragment of a CommitFile request. Borrowed by the call. */
struct dfs_commit_fragment {
    uint32_t index;
    uint64_t size;               /* must equal the planned size */
    uint32_t checksum;           /* CRC32C of the fragment's block-CRC table */
    const char *const *node_ids; /* nodes that acknowledged a durable copy; >= 1, all planned */
    size_t nnodes;
};

/*
 * CommitFile, in one transaction: file `file_id` must be pending and not expired; `fragments` must
 * list every fragment of the plan exactly once, with its planned size, its checksum, and at least
 * one acknowledging node, each a planned target of that fragment. Then:
 *   - if a committed file exists at the path: when the pending file was created with overwrite,
 *     the old file's rows are removed and all its replicas queued for deletion; otherwise
 *     DFS_EEXIST;
 *   - planned targets that did not acknowledge are dropped from the layout and queued for deletion;
 *   - the file records sha256 and checksums and becomes committed at now_ms.
 *
 * A commit of a file already committed with this same SHA-256 and these fragment checksums (a
 * client retrying a commit whose answer was lost) succeeds again and changes nothing.
 *
 * On success *out is the committed file with its layout, freed with dfs_catalog_file_rec_free.
 * Errors (the catalog is unchanged):
 *   DFS_ENOTFOUND  no file with that id
 *   DFS_EPRECOND   the file is already committed with other contents, or its pending time expired
 *   DFS_EINVAL     a fragment missing, repeated, out of range, of the wrong size, without nodes,
 *                  or acknowledged by a node that was not its target; sha256 NULL
 *   DFS_EEXIST     a committed file holds the path and the put did not ask to overwrite
 */
int dfs_catalog_file_commit(dfs_catalog *cat, const char *file_id,
                            const uint8_t sha256[DFS_SHA256_LEN],
                            const struct dfs_commit_fragment *fragments, size_t nfragments,
                            int64_t now_ms, struct dfs_file_rec **out, char **errmsg);

/* What S3 keeps with an object (file_meta): borrowed by the calls that take it. */
#define DFS_CATALOG_MD5_LEN  16
#define DFS_CATALOG_META_MAX 8192
struct dfs_file_meta {
    const uint8_t *md5; /* DFS_CATALOG_MD5_LEN bytes, or NULL: unknown */
    const void *meta;   /* "name\0value\0"..., sorted by name; may be NULL when meta_len is 0 */
    size_t meta_len;    /* at most DFS_CATALOG_META_MAX */
    /* Conditional writes, checked in the commit's transaction (DFS_EPRECOND): no committed file
       at the path, or the committed file there has this id (NULL or "": no condition). */
    bool if_absent;
    const char *if_file_id;
};

/*
 * dfs_catalog_file_commit, and in the same transaction the object's MD5 and stored headers
 * (file_meta; a repeated commit writes them again). DFS_EINVAL as dfs_catalog_file_commit, and
 * for meta_len past DFS_CATALOG_META_MAX.
 */
/*
 * StitchFile (issue 17, S3 CompleteMultipartUpload): one transaction makes a committed file at
 * `path` whose bytes are the committed files `parts[0..nparts)` concatenated, without copying a
 * byte: each part keeps its file row, fragments and copies, leaves the namespace (its path becomes
 * DFS_CATALOG_SEGMENT_DIR "<its file id>") and becomes the new file's segment. A part that is
 * stitched itself is flattened: its segments become the new file's and its own row goes, so every
 * segment is a plain file. The new file has no fragments of its own; its size is the parts' sum,
 * its SHA-256 the SHA-256 of its segments' SHA-256s concatenated in order (readers check each
 * segment against its own), its redundancy and policy the first part's; meta->md5 and meta->meta
 * are kept as dfs_catalog_file_commit_meta keeps them, and meta's conditions are checked against
 * the file at `path` (DFS_EPRECOND). A committed file already at `path` is replaced (its copies,
 * and its segments', queued for deletion). Deleting or replacing a stitched file deletes its
 * segments.
 *
 * Deterministic given its arguments: file_id (32 hex digits, drawn by the caller) and now_ms are
 * inputs, nothing is drawn inside. DFS_EINVAL: bad path, id, no parts, more than
 * DFS_CATALOG_STITCH_MAX parts or segments, a part listed twice, equal to path or a segment, meta
 * too long. DFS_ENOTFOUND: a part is not a committed file. DFS_EEXIST: file_id is taken.
 */
#define DFS_CATALOG_STITCH_MAX  10000
#define DFS_CATALOG_SEGMENT_DIR "/.dfs-s3/segments/"
struct dfs_stitch_req {
    const char *path;         /* canonical */
    const char *file_id;      /* the new file's id */
    const char *const *parts; /* canonical paths, in order */
    size_t nparts;
    const struct dfs_file_meta *meta; /* NULL: none */
};
int dfs_catalog_file_stitch(dfs_catalog *cat, const struct dfs_stitch_req *req, int64_t now_ms,
                            struct dfs_file_rec **out, char **errmsg);

int dfs_catalog_file_commit_meta(dfs_catalog *cat, const char *file_id,
                                 const uint8_t sha256[DFS_SHA256_LEN],
                                 const struct dfs_commit_fragment *fragments, size_t nfragments,
                                 const struct dfs_file_meta *meta, int64_t now_ms,
                                 struct dfs_file_rec **out, char **errmsg);

/*
 * The file_meta of a file: 0 with *has_md5 and md5, and *meta / *meta_len (malloc'd, the caller
 * frees; NULL and 0 when empty); DFS_ENOTFOUND when the file has none (put without S3).
 */
int dfs_catalog_file_meta_get(dfs_catalog *cat, const char *file_id,
                              uint8_t md5[DFS_CATALOG_MD5_LEN], bool *has_md5, uint8_t **meta,
                              size_t *meta_len, char **errmsg);

/* ---- S3 buckets (schema 6) ------------------------------------------------------------------- */

#define DFS_BUCKET_NAME_MAX 63

/* A bucket. A plain value. */
struct dfs_bucket_rec {
    char name[DFS_BUCKET_NAME_MAX + 1];
    int64_t created_ms;
    char token_id[17]; /* the token whose key made it; "" when unknown */
};

/* Make bucket `name` (3-63 of a-z 0-9 . -: DFS_EINVAL otherwise). DFS_EEXIST when it exists. */
int dfs_catalog_bucket_create(dfs_catalog *cat, const char *name, const char *token_id,
                              int64_t now_ms, char **errmsg);

/* Bucket `name` into *out; DFS_ENOTFOUND when there is none (or the name cannot be one). */
int dfs_catalog_bucket_get(dfs_catalog *cat, const char *name, struct dfs_bucket_rec *out,
                           char **errmsg);

/*
 * Remove bucket `name`, in one transaction with the check that no file, committed or pending, has
 * a path under /name/ (DFS_EPRECOND: not empty). DFS_ENOTFOUND when there is no such bucket.
 */
int dfs_catalog_bucket_delete(dfs_catalog *cat, const char *name, char **errmsg);

/* Every bucket, by name: *out (free()) with *n records. */
int dfs_catalog_buckets_list(dfs_catalog *cat, struct dfs_bucket_rec **out, size_t *n,
                             char **errmsg);

/*
 * AbortFile: remove pending file `file_id`; every planned copy is queued for deletion (now_ms is
 * the queue time). DFS_ENOTFOUND when there is no pending file with that id, committed files
 * included: abort never removes a committed file.
 */
int dfs_catalog_file_abort(dfs_catalog *cat, const char *file_id, int64_t now_ms, char **errmsg);

/*
 * Abort every pending file whose expires_ms <= now_ms, as dfs_catalog_file_abort does, in one
 * transaction. *nexpired (may be NULL) receives how many; each is logged.
 */
int dfs_catalog_files_expire(dfs_catalog *cat, int64_t now_ms, size_t *nexpired, char **errmsg);

/*
 * GetFile: the committed file at `path` with its layout: fragments in index order, each with its
 * acknowledged replicas and their nodes' current address and state. *out is freed with
 * dfs_catalog_file_rec_free. DFS_ENOTFOUND when no committed file has that path (pending files do
 * not count).
 */
int dfs_catalog_file_get(dfs_catalog *cat, const char *path, struct dfs_file_rec **out,
                         char **errmsg);

/*
 * A file by id, pending or committed, with its layout (for ReplaceTarget: the fragment's current
 * targets and failed nodes, and the file's policy). DFS_EINVAL (bad id), DFS_ENOTFOUND.
 */
int dfs_catalog_file_get_id(dfs_catalog *cat, const char *file_id, struct dfs_file_rec **out,
                            char **errmsg);

/*
 * ListFiles: committed files whose path starts with `prefix` (a byte-wise string prefix, so "/a"
 * matches "/a/x" and "/ab", "/a/" only what is under /a/; "/" matches everything; '%' and '_' are
 * ordinary characters), in byte-wise path order, strictly after `after` (NULL or "" for the first
 * page; otherwise the path of the last file of the previous page), at most `limit` of them (0 means
 * DFS_CATALOG_LIST_MAX; more is capped to it). Records carry no layout.
 *
 * On success *out is an array of *n records (NULL when *n is 0), freed with
 * dfs_catalog_file_recs_free, and *more tells whether files remain after the last one returned.
 * Errors: DFS_EINVAL (the prefix does not start with '/').
 */
int dfs_catalog_files_list(dfs_catalog *cat, const char *prefix, const char *after, size_t limit,
                           struct dfs_file_rec **out, size_t *n, bool *more, char **errmsg);

/*
 * DeleteFile: remove the committed file at `path`; all its replicas are queued for deletion. On
 * success *out is the removed file with its layout as it was (dfs_catalog_file_rec_free).
 * DFS_ENOTFOUND when no committed file has that path.
 */
int dfs_catalog_file_delete(dfs_catalog *cat, const char *path, int64_t now_ms,
                            struct dfs_file_rec **out, char **errmsg);

/*
 * Rename, in one transaction: a committed file at `from` moves to `to`; else every committed file
 * under the directory `from` ("from/...") moves under `to` (a directory is what paths imply).
 * A file at `to` is replaced (its copies queued for deletion, at now_ms) only with replace; files
 * being written (pending) keep their paths. *moved (may be NULL) is how many files moved.
 * DFS_ENOTFOUND: nothing at or under `from`; DFS_EEXIST: a file at `to` without replace, a
 * directory renamed onto a file, or anything at or under `to` for a directory (or under `to`
 * for a file); DFS_EINVAL: a path not canonical or "/", `to` inside `from`, or either path at,
 * under or above DFS_CATALOG_SEGMENT_DIR (segments move only with StitchFile).
 */
int dfs_catalog_file_rename(dfs_catalog *cat, const char *from, const char *to, bool replace,
                            int64_t now_ms, uint64_t *moved, char **errmsg);

/*
 * Attributes of a path that POSIX programs set through dfs-mount (issue 18), kept apart from the
 * file records so that they survive new versions of a file (every put is a new file id) and can
 * name an explicit, possibly empty, directory. Rename moves them; a removed file's stay until the
 * path is used again or removed (dfs_catalog_attrs_remove).
 */
struct dfs_path_attrs {
    bool is_dir; /* an explicit directory (mkdir) */
    bool has_mode, has_owner, has_mtime;
    uint32_t mode; /* permission bits, 07777 at most */
    uint32_t uid, gid;
    int64_t mtime_ms;
};

/* Merge a into path's attributes: is_dir when set, and each has_* field given. DFS_EINVAL for a
   path that is not canonical or a mode above 07777. */
int dfs_catalog_attrs_set(dfs_catalog *cat, const char *path, const struct dfs_path_attrs *a,
                          char **errmsg);

/* path's attributes into *out (*found false, *out zeroed, when none are kept). */
int dfs_catalog_attrs_get(dfs_catalog *cat, const char *path, struct dfs_path_attrs *out,
                          bool *found, char **errmsg);

/* Forget path's attributes (an rmdir, an unlink); nothing kept is not an error. */
int dfs_catalog_attrs_remove(dfs_catalog *cat, const char *path, char **errmsg);

/* The explicit directories directly under dir ("/" or "/a"): *out (caller frees each and the
   array) and *n. */
int dfs_catalog_attrs_dirs(dfs_catalog *cat, const char *dir, char ***out, size_t *n,
                           char **errmsg);

/* ---- Deletion queue: fragment copies to remove from nodes ------------------------------------ */

/* One queued removal. A plain value. */
struct dfs_deletion_rec {
    char fragment_id[DFS_FRAGMENT_ID_HEX + 1];
    char node_id[DFS_ID_HEX + 1];
    char address[DFS_NODE_ADDRESS_MAX + 1];
};

/*
 * Up to `max` queued removals (oldest first) whose node is alive or draining (it still answers:
 * a drain removes what it moved) and which are not postponed past
 * now_ms, for a background thread to send DeleteFragment. Items stay queued until
 * dfs_catalog_deletion_done, so a second fetch before that returns them again: run one consumer.
 * Items whose node is no longer registered are dropped here. On success *out is a malloc'd array
 * of *n items (NULL when *n is 0), freed with free().
 *
 * Grace: the removal of a copy whose fragment the catalog still holds (a copy moved by a
 * rebalance or a drain, trimmed as surplus, found bad, or a failed target of a pending put) is
 * handed out only once it has been queued for grace_ms, so that a reader streaming that copy
 * from a layout it fetched before the drop finishes its range or fails over, instead of finding
 * the file gone under it. The copies of deleted, overwritten and aborted files go at once.
 */
int dfs_catalog_deletions_fetch(dfs_catalog *cat, int64_t now_ms, int64_t grace_ms, size_t max,
                                struct dfs_deletion_rec **out, size_t *n, char **errmsg);

/*
 * What the catalog records of the copy of fragment_id on node_id: *recorded says whether it holds
 * an acknowledged copy there of a committed file; if so, *size and *checksum (either may be NULL)
 * receive the fragment's. Errors: DFS_EINVAL (bad ids).
 */
int dfs_catalog_copy_get(dfs_catalog *cat, const char *fragment_id, const char *node_id,
                         bool *recorded, uint64_t *size, uint32_t *checksum, char **errmsg);

/*
 * The node confirmed the removal (or reported the fragment absent): forget the item. Succeeds also
 * when the item is not queued, so a retry is harmless. Errors: DFS_EINVAL (bad ids).
 */
int dfs_catalog_deletion_done(dfs_catalog *cat, const char *fragment_id, const char *node_id,
                              char **errmsg);

/*
 * The removal failed for now: do not hand the item out again before until_ms. Succeeds also when
 * the item is not queued. Errors: DFS_EINVAL (bad ids).
 */
int dfs_catalog_deletion_postpone(dfs_catalog *cat, const char *fragment_id, const char *node_id,
                                  int64_t until_ms, char **errmsg);

/* ---- Placement state: copysets and buddy groups (metadata/placement.h) ----------------------- */

/*
 * Every family of copysets and buddy groups that was saved, ordered by family name ("buddy/3",
 * "min_copy/3", ...), each with its sets in index order and their node ids in set order, exactly as
 * dfs_placement_save received them. On success *out is an array of *n states (NULL when *n is 0)
 * freed with dfs_placement_states_free(*out, *n). Errors: DFS_EINTERNAL when the stored rows do not
 * form a family (set ids or positions with gaps, a policy without sets), DFS_ENOMEM, DFS_EIO.
 */
int dfs_catalog_placement_load(dfs_catalog *cat, struct dfs_placement_state **out, size_t *n,
                               char **errmsg);

/*
 * Replace the stored family (st->policy, st->width) with *st (borrowed), in one transaction;
 * now_ms stamps it. Node ids must be node ids (32 hex digits; they need not be registered).
 * Errors: DFS_EINVAL (a policy without sets, width 0, a set without nodes, a bad id, an id twice
 * in one set, perm >= nperms), DFS_EIO.
 */
int dfs_catalog_placement_save(dfs_catalog *cat, const struct dfs_placement_state *st,
                               int64_t now_ms, char **errmsg);

/* ---- Repair queue ------------------------------------------------------------------------- */

/*
 * Liveness of copies (the rules every repair function below applies):
 *   - a copy (an acknowledged replica row of a committed file) is LIVE on an alive or suspect
 *     node, READABLE (a source) on an alive, suspect or draining node, and neither on a dead or
 *     decommissioned node. Its row stays while its node is dead and the fragment is short of
 *     copies, so a node that comes back is recognised and its copies count again; once the
 *     fragment is back at full redundancy elsewhere, the row goes (see dfs_catalog_repair_plan).
 *   - wanted: k live copies per fragment (replication), 1 per fragment (erasure, all K+M).
 *   - LOST: a replicated fragment with no readable copy; an erasure-coded file with fewer than K
 *     readable fragments (then each of its fragments is lost). Lost fragments are never queued.
 *   - margin (priority, lower first, then older first): replication live copies - 1; erasure the
 *     file's live fragments - K.
 */

/* The rules above, for callers outside the catalog (a copy on a node in this state). */
bool dfs_catalog_state_live(enum dfs_node_state state);
bool dfs_catalog_state_readable(enum dfs_node_state state);

/* Why a fragment is queued; stored by name. */
enum dfs_repair_reason {
    DFS_REPAIR_UNSPECIFIED = 0,
    DFS_REPAIR_DEAD = 1,         /* copies on dead nodes */
    DFS_REPAIR_CORRUPT = 2,      /* a node's scrubber found its copy corrupt */
    DFS_REPAIR_MISSING = 3,      /* a node's inventory lacks a recorded copy; or too few rows */
    DFS_REPAIR_DRAIN = 4,        /* move the copy off a draining node (from_node) */
    DFS_REPAIR_REBALANCE = 5,    /* move the copy off an over-used node (from_node) */
    DFS_REPAIR_DECOMMISSION = 6, /* copies on decommissioned nodes */
};

/* "dead", "corrupt", "missing", "drain", "rebalance", "decommission"; "unknown" otherwise. */
const char *dfs_catalog_repair_reason_name(enum dfs_repair_reason reason);

/* One row of the repair queue. A plain value; "" for an absent node id. */
struct dfs_repair_rec {
    char fragment_id[DFS_FRAGMENT_ID_HEX + 1];
    enum dfs_repair_reason reason;
    int64_t margin;
    char from_node[DFS_ID_HEX + 1];   /* drain/rebalance: the copy dropped once done */
    char target_node[DFS_ID_HEX + 1]; /* running: the node making the copy */
    bool running;
    uint32_t attempts;
    int64_t queued_ms;
    int64_t not_before_ms;
    int64_t started_ms; /* 0 unless running */
};

/* The whole queue in claim order (margin, queued_ms); malloc'd array freed with free(). */
int dfs_catalog_repairs_list(dfs_catalog *cat, struct dfs_repair_rec **out, size_t *n,
                             char **errmsg);

/* Queue length: rows waiting and rows running. */
int dfs_catalog_repair_counts(dfs_catalog *cat, uint64_t *queued, uint64_t *running, char **errmsg);

/*
 * At service start, before any worker runs: every 'running' row goes back to 'queued' (its
 * worker is gone), and the deletion of the possibly partial copy on its recorded target is
 * queued unless that node holds a recorded replica of the fragment. *n (may be NULL) receives how
 * many rows were recovered.
 */
int dfs_catalog_repairs_recover(dfs_catalog *cat, int64_t now_ms, size_t *n, char **errmsg);

/* What one planner page did. */
struct dfs_plan_result {
    size_t scanned; /* fragments of committed files looked at */
    size_t queued;  /* rows added */
    size_t updated; /* queued rows whose margin changed */
    size_t dropped; /* queued rows no longer needed (lost, or back at full redundancy) */
    size_t lost;    /* lost fragments seen */
    size_t trimmed; /* surplus copies dropped (their deletion queued) */
    bool done;      /* no fragment after the last one scanned: the pass is over */
    char last[DFS_FRAGMENT_ID_HEX + 1]; /* cursor for the next page ("" at the start) */
};

/*
 * One page of the repair planner, in one transaction: up to `limit` fragments of committed files
 * in fragment id order strictly after `after` ("" or NULL: from the start). For each:
 *   - lost: a queued row is dropped (counted in `lost`), nothing queued;
 *   - fewer live copies than wanted: queued (reason from its copies: a copy on a draining node
 *     gives 'drain' with that node as from_node, else 'decommission', 'dead', or 'missing'), or
 *     the queued row's margin updated;
 *   - at full redundancy: a queued row other than a rebalance move is dropped; then, unless a row
 *     remains for the fragment, copies on draining nodes are dropped (the drain needs no copy),
 *     while more copies than wanted are on ALIVE nodes the oldest (lowest pos) are dropped, and
 *     copies on dead nodes are forgotten. Each dropped copy's deletion is queued on its node;
 *     copies on decommissioned nodes are forgotten without one (counted in `trimmed` too).
 * *out receives the figures and the cursor.
 */
int dfs_catalog_repair_plan(dfs_catalog *cat, const char *after, size_t limit, int64_t now_ms,
                            struct dfs_plan_result *out, char **errmsg);

/*
 * Queue one fragment for repair by hand (tests, the rebalancer): reason and from_node (NULL or a
 * node id holding a copy, for drain/rebalance), target (NULL, or for a rebalance move the node
 * chosen for it, recorded in target_node while queued). Nothing happens when a row already exists
 * (*queued false). Errors: DFS_EINVAL, DFS_ENOTFOUND (no such fragment of a committed file),
 * DFS_EPRECOND (the fragment is lost).
 */
int dfs_catalog_repair_queue(dfs_catalog *cat, const char *fragment_id,
                             enum dfs_repair_reason reason, const char *from_node,
                             const char *target, int64_t now_ms, bool *queued, char **errmsg);

/*
 * The next repair to run, for a worker to choose a target and dispatch. Owned by the caller:
 * free with dfs_catalog_repair_task_clear.
 */
struct dfs_repair_task {
    struct dfs_repair_rec row;
    struct dfs_file_rec *file; /* the committed file with its layout (replicas carry node states) */
    uint32_t index;            /* the fragment's index in file->fragments */
    /* Nodes with a queued deletion of this fragment: they held a copy, or may hold a partial one;
       a new copy must not go there. */
    char (*held)[DFS_ID_HEX + 1];
    size_t nheld;
};

void dfs_catalog_repair_task_clear(struct dfs_repair_task *t);

/*
 * Pick the first queued row (lowest margin, then oldest) due at now_ms that still needs work, in
 * one transaction. Rows found obsolete on the way are dropped: lost fragments; 'dead', 'corrupt',
 * 'missing' and 'decommission' rows of fragments back at full redundancy; moves whose from_node no
 * longer holds the copy, drains whose node is no longer draining, rebalances whose node is no
 * longer alive or that lack a target. *found tells whether *out was filled. The row stays queued:
 * claim it with dfs_catalog_repair_start.
 */
int dfs_catalog_repair_next(dfs_catalog *cat, int64_t now_ms, struct dfs_repair_task *out,
                            bool *found, char **errmsg);

/*
 * Claim: the queued row of fragment_id becomes running on target (recorded, so an interrupted
 * repair's copy can be cleaned), started at now_ms. Errors: DFS_EABORTED (the row is gone or no
 * longer queued, or target already holds a copy: pick again), DFS_ENOTFOUND / DFS_EABORTED for
 * the target as dfs_catalog_file_create's plan nodes (not registered / not alive), DFS_EINVAL.
 */
int dfs_catalog_repair_start(dfs_catalog *cat, const char *fragment_id, const char *target,
                             int64_t now_ms, char **errmsg);

/*
 * The target answered with a durable copy of `size` bytes and `checksum`. In one transaction: the
 * target's acknowledged replica row is added (after the others), from_node's replica row (if any)
 * dropped and its deletion queued, the queue row deleted, and when the fragment is now at full
 * live redundancy its copies on dead nodes are dropped with their deletion queued (sent if the
 * node returns) and those on decommissioned nodes dropped. (A drained node is retired later, by
 * dfs_catalog_nodes_finish_drains, once that deletion has been sent too.)
 * Errors (the copy is then queued for deletion on target, unless it holds a recorded replica):
 *   DFS_ENOTFOUND  the fragment was removed meanwhile (its file deleted or overwritten)
 *   DFS_EABORTED   the row is not running on that target
 *   DFS_EDATALOSS  size or checksum differ from the catalog's (the row stays running: call
 *                  dfs_catalog_repair_fail)
 */
int dfs_catalog_repair_complete(dfs_catalog *cat, const char *fragment_id, const char *target,
                                uint64_t size, uint32_t checksum, int64_t now_ms, char **errmsg);

/*
 * The repair failed (or no target could be chosen: target NULL). The row goes back to queued,
 * attempts + 1, not handed out before retry_at_ms; a target's possibly partial copy is queued for
 * deletion unless it holds a recorded replica. Never drops the row. *attempts (may be NULL)
 * receives the new count. Succeeds also when the row is gone.
 */
int dfs_catalog_repair_fail(dfs_catalog *cat, const char *fragment_id, const char *target,
                            int64_t retry_at_ms, uint32_t *attempts, char **errmsg);

/*
 * Copies on `node_id` that a rebalance may move: acknowledged copies of committed files with no
 * repair row, in fragment id order after `after` (NULL or ""), at most `limit`. *out is a
 * malloc'd array of fragment ids (NULL when 0), freed with free(); sizes[i] (also malloc'd) the
 * fragment sizes.
 */
int dfs_catalog_rebalance_candidates(dfs_catalog *cat, const char *node_id, const char *after,
                                     size_t limit, char (**out)[DFS_FRAGMENT_ID_HEX + 1],
                                     uint64_t **sizes, size_t *n, char **errmsg);

/* ---- Reports from storage nodes: corrupt copies and inventories ----------------------------- */

/*
 * Node `node_id` found its copy of fragment_id corrupt: the copy is lost. Its replica row is
 * dropped; when the fragment (for erasure code: the file) stays recoverable, the copy's deletion is
 * queued on the node and a 'corrupt' repair queued; otherwise (it was the last readable copy) the
 * bytes are left on the node for salvage and nothing is queued. *marked is false when the catalog
 * records no such copy (nothing changes). Errors: DFS_EINVAL (bad ids), DFS_ENOTFOUND (no node).
 */
int dfs_catalog_report_corrupt(dfs_catalog *cat, const char *node_id, const char *fragment_id,
                               int64_t now_ms, bool *marked, char **errmsg);

/*
 * A recorded copy turned out to be absent from its node (confirmed by the caller): the replica
 * row is dropped and a 'missing' repair queued unless the fragment is now lost. *marked false
 * when there was no such acknowledged copy.
 */
int dfs_catalog_report_missing(dfs_catalog *cat, const char *node_id, const char *fragment_id,
                               int64_t now_ms, bool *marked, char **errmsg);

/*
 * One page of a node's full inventory (`page` from 0; ids are fragment ids). Page 0 starts a new
 * report (dropping any unfinished one of that node); a later page must be the next one or a
 * repeat of one already stored (harmless). Pages are kept in the catalog, so a metadata restart in
 * the middle of a report loses nothing. Errors: DFS_EINVAL (bad id), DFS_ENOTFOUND (no node),
 * DFS_EPRECOND (a page that skips ahead, or a later page without page 0: start again).
 */
int dfs_catalog_inventory_page(dfs_catalog *cat, const char *node_id, uint32_t page,
                               const char *const *ids, size_t n, int64_t now_ms, char **errmsg);

/*
 * After the last page: the acknowledged copies of committed files the catalog records on the node
 * that the stored inventory lacks (candidates: the caller confirms each with the node before
 * calling dfs_catalog_report_missing, since a put may commit between the node's listing and its
 * report). *out is a malloc'd array (NULL when 0), freed with free().
 */
int dfs_catalog_inventory_missing(dfs_catalog *cat, const char *node_id,
                                  char (**out)[DFS_FRAGMENT_ID_HEX + 1], size_t *n, char **errmsg);

/*
 * End the report: every fragment in the stored inventory that the catalog does not expect on the
 * node (no replica row, committed or planned; not the target of a running repair), except
 * fragments of the catalog that are lost (their bytes are kept for salvage), is queued for
 * deletion on the node; the stored pages are dropped. *unknown receives how many. In a restored
 * catalog (dfs_catalog_restore_file), a fragment of a file the catalog does not know at all is
 * kept instead and recorded as an orphan (table orphans: fragment id, node, first seen).
 */
int dfs_catalog_inventory_finish(dfs_catalog *cat, const char *node_id, int64_t now_ms,
                                 size_t *unknown, char **errmsg);

/* ---- Health: which files are healthy, degraded or lost -------------------------------------- */

/* One consistent picture of every committed file's copies, for counting health. */
struct dfs_layout_node {
    char id[DFS_ID_HEX + 1];
    char address[DFS_NODE_ADDRESS_MAX + 1];
    enum dfs_node_state state;
};
struct dfs_layout_file {
    char *path;
    struct dfs_redundancy redundancy;
    size_t first_fragment; /* fragments[first_fragment .. + nfragments) */
    size_t nfragments;
};
struct dfs_layout_fragment {
    char fragment_id[DFS_FRAGMENT_ID_HEX + 1];
    uint64_t size;
    uint32_t checksum;
    size_t first_copy; /* copies[first_copy .. + ncopies): index into nodes */
    size_t ncopies;
};
struct dfs_layout {
    struct dfs_layout_node *nodes;
    size_t nnodes;
    struct dfs_layout_file *files;
    size_t nfiles;
    struct dfs_layout_fragment *fragments;
    size_t nfragments;
    uint32_t *copies; /* node index of each acknowledged copy */
    size_t ncopies;
};

/* Read the picture in one transaction; free with dfs_catalog_layout_free. */
int dfs_catalog_layout(dfs_catalog *cat, struct dfs_layout **out, char **errmsg);
void dfs_catalog_layout_free(struct dfs_layout *l);

/* Health counts (dfs.v1.GetHealthResponse's file part). Paths are malloc'd. */
struct dfs_health {
    uint64_t files, healthy, degraded, lost;
    char **lost_paths;
    size_t nlost_paths;
    char **degraded_paths;
    size_t ndegraded_paths;
};

/*
 * Classify every file of the picture by the liveness rules above. copy_ok (NULL: every copy is
 * taken as present) says, per copy, whether it was confirmed on its node; a copy counts only when
 * confirmed and on a live (or, to be readable, draining) node. Up to `list` lost and `list`
 * degraded paths are copied out. Returns DFS_OK or DFS_ENOMEM; free with dfs_catalog_health_clear.
 */
int dfs_catalog_health_classify(const struct dfs_layout *l, const bool *copy_ok, size_t list,
                                struct dfs_health *out, char **errmsg);
void dfs_catalog_health_clear(struct dfs_health *h);

/* ---- Statistics ------------------------------------------------------------------------------ */

/* dfs.v1.StatResponse. */
struct dfs_catalog_stats {
    uint64_t files;         /* committed files; a stitched file's segments are not counted */
    uint64_t logical_bytes; /* sum of their sizes (a stitched file's bytes once) */
    uint64_t stored_bytes;  /* sum over their replicas of the fragment size */
    uint32_t nodes_alive;
    uint32_t nodes_suspect;
    uint32_t nodes_dead;
    uint32_t nodes_draining;
    uint32_t nodes_decommissioned;
    uint64_t pending_files;     /* not yet committed */
    uint64_t pending_deletions; /* queued fragment copies, whatever their node's state */
    uint32_t schema_version;
};

/* Stat: one consistent snapshot into *out (caller-owned storage). */
int dfs_catalog_stats(dfs_catalog *cat, struct dfs_catalog_stats *out, char **errmsg);

/* ---- Bearer tokens and the service's secrets (schema version 4) ---- */

/* The numbers are dfs.v1.TokenRole's; stored by name. */
enum dfs_token_role {
    DFS_ROLE_UNSPECIFIED = 0,
    DFS_ROLE_ADMIN = 1,      /* everything */
    DFS_ROLE_READ_WRITE = 2, /* files, read and write */
    DFS_ROLE_READ_ONLY = 3,  /* files, read */
    DFS_ROLE_NODE = 4,       /* one storage node (node_id): register, heartbeat, reports */
    DFS_ROLE_BOOTSTRAP = 5,  /* enrollment: registers node ids never seen */
    DFS_ROLE_GATEWAY = 6,    /* the S3 gateway: files, buckets, S3 signing keys (schema 6) */
};

#define DFS_TOKEN_NAME_MAX 64

struct dfs_token_rec {
    char id[17]; /* 16 hex digits (common/token.h) */
    char name[DFS_TOKEN_NAME_MAX + 1];
    enum dfs_token_role role;
    int64_t created_ms;
    int64_t expires_ms;           /* 0: never */
    int64_t revoked_ms;           /* 0: not revoked */
    int64_t last_used_ms;         /* 0: never */
    char node_id[DFS_ID_HEX + 1]; /* DFS_ROLE_NODE: the node it belongs to; "" otherwise */
};

/* "admin", "read_write", "read_only", "node", "bootstrap"; "unknown" otherwise. Never NULL. */
const char *dfs_catalog_token_role_name(enum dfs_token_role role);

/* The role of a name as above (also "rw", "ro"); DFS_ROLE_UNSPECIFIED when it is none. */
enum dfs_token_role dfs_catalog_token_role_parse(const char *name);

/*
 * Record a token: rec (its id, name, role, created_ms, expires_ms; the rest is ignored) and the
 * SHA-256 of its secret. DFS_EEXIST when the id is taken, DFS_EINVAL for a bad id, name or role
 * (DFS_ROLE_NODE included: node tokens are made by dfs_catalog_node_enroll).
 */
int dfs_catalog_token_add(dfs_catalog *cat, const struct dfs_token_rec *rec, const uint8_t hash[32],
                          char **errmsg);

/*
 * The token with this id, revoked or not: *out and its secret's hash (both caller storage).
 * DFS_ENOTFOUND when there is none.
 */
int dfs_catalog_token_get(dfs_catalog *cat, const char *id, struct dfs_token_rec *out,
                          uint8_t hash[32], char **errmsg);

/*
 * The token whose id is `id` or starts with it (at least 4 digits), revoked or not, into *out.
 * DFS_ENOTFOUND, or DFS_EINVAL when the prefix is too short or names several tokens.
 */
int dfs_catalog_token_resolve(dfs_catalog *cat, const char *id, struct dfs_token_rec *out,
                              char **errmsg);

/* Revoke token `id` at now_ms (idempotent: an earlier revocation time is kept). */
int dfs_catalog_token_revoke(dfs_catalog *cat, const char *id, int64_t now_ms, char **errmsg);

/* Record a successful use at now_ms. */
int dfs_catalog_token_touch(dfs_catalog *cat, const char *id, int64_t now_ms, char **errmsg);

/*
 * Tokens in creation order: all of them, or (all false) only those neither revoked nor expired at
 * now_ms. *out is malloc'd (caller frees; NULL when none).
 */
int dfs_catalog_tokens_list(dfs_catalog *cat, bool all, int64_t now_ms, struct dfs_token_rec **out,
                            size_t *n, char **errmsg);

/*
 * A named random secret of `len` bytes (1..64), made from getrandom(2) and stored the first time
 * it is asked for, then the same forever (the ticket master key: "ticket_master_key"). out is
 * caller storage of len bytes.
 */
int dfs_catalog_secret(dfs_catalog *cat, const char *name, size_t len, int64_t now_ms, uint8_t *out,
                       char **errmsg);

/*
 * The deterministic form of dfs_catalog_secret, for replicated writes: store `value` (len bytes,
 * 1..64) as secret `name` unless it exists already; *out (caller storage, len bytes, may be
 * value) receives the stored secret either way. DFS_EDATALOSS when the stored one has another
 * length.
 */
int dfs_catalog_secret_set(dfs_catalog *cat, const char *name, const uint8_t *value, size_t len,
                           int64_t now_ms, uint8_t *out, char **errmsg);

/* ---- Replication (services/metadata/REPLICATION.md) -------------------------------------------- */

/*
 * A replicated catalog applies the commands of each committed Raft log entry in one transaction
 * that also records the entry's index (table replication, schema version 9):
 *
 *   dfs_catalog_apply_begin(cat)           takes the catalog's lock and opens the transaction;
 *   any write verbs, from the same thread  each runs in a savepoint of it: a refused verb
 *                                          (DFS_EEXIST, ...) leaves nothing behind, the others
 *                                          stay;
 *   dfs_catalog_apply_end(cat, index, ok)  records index and commits (ok), or rolls everything
 *                                          back (!ok, or the commit failed); releases the lock.
 *
 * Other threads' calls wait for the lock meanwhile. A crash before the commit loses the whole
 * entry and its index together, so the replica replays it from the log at the next start.
 */
int dfs_catalog_apply_begin(dfs_catalog *cat, char **errmsg);
int dfs_catalog_apply_end(dfs_catalog *cat, uint64_t index, bool ok, char **errmsg);

/*
 * synchronous=NORMAL instead of FULL (dfs_catalog_open): a commit no longer waits for the WAL's
 * fsync, so a power loss may lose the last transactions. Only for a replicated catalog, whose Raft
 * log is the durable record: the lost transactions are entries after the applied index, which the
 * replica applies again from its log at the next start.
 */
int dfs_catalog_set_relaxed_sync(dfs_catalog *cat, char **errmsg);

/*
 * Make the catalog replicated: from now on every write verb called by a thread other than the
 * one applying (dfs_catalog_apply_begin .. _end) builds its command (metadata/command.h) and
 * hands it to fn, which must propose it to the log and return once it has been applied here
 * (or failed): its return is the verb's (the apply's verdict, or the engine's failure such as
 * DFS_EUNAVAIL, with *errmsg). The verb's out-parameters are filled by that apply. Verbs behave
 * as before for their callers, except that a failure of the log (DFS_EUNAVAIL, DFS_ETIMEDOUT)
 * may leave the write still to happen. Exception: dfs_catalog_token_touch stays a local write
 * (soft state, not worth a log entry per call). Set before any other thread uses the catalog;
 * fn NULL: back to local writes.
 */
typedef int (*dfs_catalog_proposer)(void *arg, const void *cmd, size_t len, char **errmsg);
void dfs_catalog_set_proposer(dfs_catalog *cat, dfs_catalog_proposer fn, void *arg);

/* The index of the last log entry applied (0: none). */
int dfs_catalog_applied_index(dfs_catalog *cat, uint64_t *out, char **errmsg);

/*
 * Snapshots: a consistent copy of the catalog as of its applied index, written while writes go
 * on. dfs_catalog_snapshot_begin (cheap: opens a second, read-only connection and pins the WAL
 * state with a read transaction; *index receives the pinned applied index) gives a handle;
 * dfs_catalog_snapshot_write (any thread, may run while the catalog applies) copies the pinned
 * state into a new SQLite file at `path` with sqlite3_backup; dfs_catalog_snapshot_end drops the
 * handle (NULL: no-op). Not for ":memory:" catalogs (DFS_EINVAL).
 */
typedef struct dfs_catalog_snapshot dfs_catalog_snapshot;
int dfs_catalog_snapshot_begin(dfs_catalog *cat, dfs_catalog_snapshot **out, uint64_t *index,
                               char **errmsg);
int dfs_catalog_snapshot_write(dfs_catalog_snapshot *snap, const char *path, char **errmsg);
void dfs_catalog_snapshot_end(dfs_catalog_snapshot *snap);

/*
 * An online backup: copy the catalog file at `db` (in use by a running dfs-metadata or not) into
 * a new file `to` (DFS_EEXIST when it exists), consistently: one read transaction on a connection
 * of its own, so writers go on and the copy is the catalog as of one moment, a whole number of
 * applied log entries. *index (may be NULL) receives the copy's applied index. The copy is a
 * catalog: dfs-metadata --db can serve it (a new one-member cluster whose log starts after it).
 */
int dfs_catalog_backup(const char *db, const char *to, uint64_t *index, char **errmsg);

/*
 * Replace the whole catalog with the snapshot file at `path` (a dfs_catalog_snapshot_write
 * output), as the state at log index `index`: the file is stamped with index first, then copied
 * into the live database by one sqlite3_backup, which is one write transaction: readers see the
 * old catalog or the new one, never a mix. On failure the catalog is unchanged. The file must be
 * a catalog of this schema version (DFS_EPRECOND otherwise); it is modified (stamped).
 */
int dfs_catalog_restore(dfs_catalog *cat, const char *path, uint64_t index, char **errmsg);

/*
 * Disaster recovery (dfs-metadata restore): make a new catalog file `db` (DFS_EEXIST when it
 * exists) from the backup `backup` (dfs_catalog_backup's output, or any copy of a catalog),
 * migrated to this schema, for a new cluster: its applied index is reset to 0 (the new cluster's
 * log starts empty; the backup's own log is gone) and it is marked restored at now_ms, so the
 * fragments the nodes report that it does not know (files committed after the backup) are kept
 * as orphans, not deleted (dfs_catalog_inventory_finish). Files pending in the backup (uploads
 * in progress) are dropped with their fragments: such an upload may have been committed after
 * the backup, so its fragments become orphans too, never expired and deleted. The nodes'
 * registrations are reset to 0, so that each node's next heartbeat finds it unknown and it
 * registers again and reports its inventory (dfs_catalog_node_heartbeat). *from_index (may be NULL) receives the
 * backup's applied index. The file appears whole or not at all (written aside, fsynced,
 * renamed).
 */
int dfs_catalog_restore_file(const char *backup, const char *db, int64_t now_ms,
                             uint64_t *from_index, char **errmsg);

/* The orphans of the restored catalog file `db` (in use by a running dfs-metadata or not: read on
 * a read-only connection of its own), at most `max`, by fragment id: fn is called for each. */
int dfs_catalog_orphans_file(const char *db, size_t max,
                             void (*fn)(void *arg, const char *fragment_id, const char *node_id,
                                        int64_t first_seen_ms),
                             void *arg, char **errmsg);

#endif /* DFS_METADATA_CATALOG_H */
