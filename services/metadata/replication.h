/* The replication engine of the metadata service: a replicated log of opaque commands (Raft). */
#ifndef DFS_SERVICES_METADATA_REPLICATION_H
#define DFS_SERVICES_METADATA_REPLICATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A dfs_repl is one replica of a replicated state machine. The owner (the metadata service) keeps
 * the state (its SQLite catalog); the engine keeps the log, elects a leader, replicates, and hands
 * every committed command to the owner's apply, in log order, on every replica. This header is
 * the only view the rest of dfs has of it: no Raft library type appears here, and
 * replication.c is the only file that includes raft.h (libraft 0.15 with its libuv backend
 * today; its successor cowsql/raft has the same API).
 *
 * Threads. Each dfs_repl runs its own event loop on a thread it owns (the "replication thread").
 * Every callback below (ops, done callbacks) runs on that thread, except snapshot_write (a
 * worker thread, see below) and the ops called during dfs_repl_create (on the caller's thread,
 * before the replication thread starts). Callbacks must not block for long (they hold up
 * heartbeats: keep each apply transaction short) and must not call dfs_repl_destroy; they may
 * call dfs_repl_propose, dfs_repl_barrier and dfs_repl_status. All dfs_repl_* functions are
 * thread-safe. SIGPIPE is blocked on the replication thread, so a peer that dies mid-write
 * yields EPIPE there instead of killing the process (daemons also ignore it in main).
 *
 * Commands and batching. dfs_repl_propose copies the command and queues it. The replication
 * thread packs every command queued meanwhile into one log entry (up to max_batch_commands /
 * max_batch_bytes), with at most max_inflight_entries entries appended and not yet applied at a
 * time: while one entry is on its way through disk and network, the next one fills up. One entry
 * is one fsync per replica, so many proposers cost little more than one. On every replica the
 * owner's apply gets all commands of one entry in one call, so it applies them in one
 * transaction that also records the entry's index.
 *
 * Applied index. The owner's state records the index of the last entry it applied (in the same
 * transaction as the entry's effects) and reports it at create (applied_index). The engine never
 * hands the owner an entry at or below that index, and never installs a snapshot at or below it:
 * a restart replays exactly what the state is missing, whatever libraft re-reads from its log.
 * Indexes the owner never sees (leader no-ops, read barriers, membership changes) simply leave
 * gaps; a snapshot's index may be such an index.
 *
 * Linearizable reads: read-barrier, not a lease. dfs_repl_barrier completes once an entry of the
 * leader's current term, appended after the call, is committed by a majority and applied
 * locally; the owner then reads its own state, which includes every write acknowledged before
 * the barrier was asked for. Committing that entry proves the leader still leads (a newer leader
 * could not have committed anything without a member of the same majority), so no clock
 * assumption is needed. The cost is one log round trip, shared: a read rides on an entry
 * already in flight when there is one (an entry not yet committed when the read arrived commits
 * after it), else one barrier entry serves every read waiting. A leader lease would save the
 * round trip but depends on bounded clock drift and pauses (a GC-like stall of the old leader
 * breaks it); libraft 0.15 offers neither read-index nor leases.
 *
 * Leadership. A new leader first commits a barrier of its own term (Raft thesis 6.4): only then
 * does it know that everything committed before it is applied, and only then is it reported
 * ready (status.leader_ready, ops->on_change). Background duties run only while role is
 * DFS_REPL_LEADER and leader_ready is true, and stop at the first change.
 *
 * Failure. If the owner's apply or restore fails (an I/O error: the state is unchanged), the
 * replica stops (fail-stop, role DFS_REPL_FAILED; every waiting call fails with DFS_EIO): it can
 * neither skip the entry nor apply it later without diverging. Its state and log are intact, so a
 * restart (after the cause is fixed) replays from the entry that failed.
 */
typedef struct dfs_repl dfs_repl;

/* Longest replica address (host:port of its Raft listener), with the NUL. */
#define DFS_REPL_ADDRESS_MAX 256
/* Most members a cluster may have (status carries them in a fixed array). */
#define DFS_REPL_MEMBERS_MAX 16
/* Largest command dfs_repl_propose takes. */
#define DFS_REPL_COMMAND_MAX (64u << 20)

enum dfs_repl_role {
    DFS_REPL_UNAVAILABLE = 0, /* starting or stopped */
    DFS_REPL_FOLLOWER,
    DFS_REPL_CANDIDATE,
    DFS_REPL_LEADER,
    DFS_REPL_FAILED, /* stopped after a failed apply or restore (status.failure says why) */
};

enum dfs_repl_member_role {
    DFS_REPL_VOTER = 0, /* replicates, votes, counts in the quorum */
    DFS_REPL_STANDBY,   /* replicates, does not vote (catching up before a promotion) */
    DFS_REPL_SPARE,     /* in the configuration only (just added) */
};

/* "leader", "follower", ... and "voter", "standby", "spare"; never NULL. */
const char *dfs_repl_role_name(enum dfs_repl_role role);
const char *dfs_repl_member_role_name(enum dfs_repl_member_role role);

struct dfs_repl_member {
    uint64_t id;         /* > 0, unique in the cluster, never reused */
    const char *address; /* host:port of its Raft listener: an IPv4 literal or a host name
                            (resolved at each connect: raft_transport.h) */
};

/* One command of a log entry, as the owner's apply sees it (borrowed for the call). */
struct dfs_repl_cmd {
    const void *data;
    size_t len;
};

/*
 * What apply says about one command. status is the owner's verdict (0, or a DFS_E* code such as
 * DFS_EEXIST: deterministic, the same on every replica); data (malloc'd by apply, or NULL) is
 * passed to the proposer's callback on the leader and freed by the engine afterwards.
 */
struct dfs_repl_result {
    int status;
    void *data;
    size_t len;
};

struct dfs_repl_status;

/*
 * The owner's side, a const table (ctx is the owner's, passed back unchanged).
 *
 * apply: the n >= 1 commands of the committed entry `index`, in order. Apply them all in one
 *   transaction that also records `index` as the state's applied index, and fill results[0..n)
 *   (zeroed on entry). Only effects that are the same on every replica are allowed: the command
 *   carries every time, id and random choice (the leader fixed them before proposing). Return 0
 *   when the transaction committed (whatever the per-command statuses), or a DFS_E* code with
 *   *errmsg when nothing was applied (I/O error); the replica then stops (see Failure above).
 *   Indexes grow strictly from one call to the next, with gaps.
 * snapshot_prepare: called between two applies when the log has grown by snapshot_threshold
 *   entries since the last snapshot: pin a consistent view of the state as of `index` (every
 *   entry <= index applied, nothing after), cheaply: for SQLite, open a read transaction on a
 *   second connection. Store what snapshot_write needs in *snap. Error: no snapshot this time
 *   (retried at the next threshold).
 * snapshot_write: on a worker thread, while applies go on: write the pinned view as one file at
 *   `path` (it does not exist yet; for SQLite, an online backup from the read transaction).
 *   The engine reads the file into the snapshot and removes it.
 * snapshot_release: on the replication thread, after snapshot_write (whether it succeeded or not):
 *   drop the view and free snap.
 * restore: replace the whole state with the file at `path` (a snapshot_write output of some
 *   replica), as the state at `index`, atomically: afterwards the state reports applied index
 *   `index`; on failure (DFS_E* with *errmsg) it is unchanged. The file is the owner's (it may
 *   rename it into place); the engine removes it if it is still there afterwards.
 * on_change: optional (NULL): role, leader_ready, leader or term changed; st is borrowed for the
 *   call. Runs on the replication thread: start or stop background duties from here by
 *   signalling the owner's threads.
 */
struct dfs_repl_ops {
    int (*apply)(void *ctx, uint64_t index, const struct dfs_repl_cmd *cmds, size_t n,
                 struct dfs_repl_result *results, char **errmsg);
    int (*snapshot_prepare)(void *ctx, uint64_t index, void **snap, char **errmsg);
    int (*snapshot_write)(void *ctx, void *snap, const char *path, char **errmsg);
    void (*snapshot_release)(void *ctx, void *snap);
    int (*restore)(void *ctx, uint64_t index, const char *path, char **errmsg);
    void (*on_change)(void *ctx, const struct dfs_repl_status *st);
};

struct dfs_repl_options {
    uint64_t id;         /* this replica's id, > 0 */
    const char *address; /* host:port peers dial (a name or an IPv4 literal); copied */
    /* The IPv4 host:port the Raft listener binds, with address's port; NULL: address itself when
       it is an IPv4 literal, else 0.0.0.0 (a name need not resolve to this host at start).
       Copied. */
    const char *bind_address;
    /* The replica's directory, created if missing (parents must exist): libraft's log,
       metadata and snapshots in dir/raft, snapshot files being staged in dir/tmp. It must be on
       a real disk file system (ext4, xfs: libraft uses O_DIRECT and kernel AIO there) or tmpfs;
       libraft 0.15 refuses others. Copied. */
    const char *dir;
    /* The members of a new cluster (this replica among them): used once, when dir/raft is
       empty; every initial member must be given the same list. One member: a single metadata
       service. Empty (n_members 0): this replica joins an existing cluster and waits until a
       leader adds it (dfs_repl_add). Ignored when dir/raft already holds a log. Copied. */
    const struct dfs_repl_member *members;
    size_t n_members;
    uint64_t applied_index; /* the owner state's applied index at start (0: empty state) */

    unsigned election_timeout_ms;  /* 0: 1000. Followers wait 1x-2x this for a leader */
    unsigned heartbeat_ms;         /* 0: election_timeout_ms / 10 */
    unsigned snapshot_threshold;   /* entries between snapshots; 0: 1024 */
    unsigned snapshot_trailing;    /* entries kept behind a snapshot; 0: 128 */
    unsigned max_batch_commands;   /* commands per log entry; 0: 4096 */
    size_t max_batch_bytes;        /* bytes of commands per entry (one larger command goes alone);
                                     0: 1 MiB */
    unsigned max_inflight_entries; /* command entries appended and not yet applied; 0: 2 */
    /* Size of libraft's log segment files, preallocated (two are kept ready): a multiple of the
       file system's block size; 0: libraft's default (8 MiB). */
    size_t segment_bytes;

    const struct dfs_repl_ops *ops; /* borrowed: must outlive the dfs_repl */
    void *ctx;                      /* borrowed, passed to ops */
};

/*
 * Open the replica: set up dir, load the log (and the latest snapshot: ops->restore runs on the
 * caller's thread here when the snapshot is newer than applied_index, and ops->apply for
 * committed entries the state lacks when this replica alone is a quorum), start the listener
 * and the replication thread. Returns 0 and *out, or DFS_EINVAL (bad options), DFS_EPRECOND
 * (applied_index is past the end of the log in dir: that log is not this state's), DFS_EIO
 * (dir, libraft refusing the file system, the address in use), DFS_ENOMEM, with *errmsg (caller
 * frees); on failure nothing runs and dir keeps what it had.
 */
int dfs_repl_create(const struct dfs_repl_options *opts, dfs_repl **out, char **errmsg);

/*
 * Stop the replica: every call still waiting completes (DFS_EUNAVAIL, why DFS_REPL_SHUTDOWN),
 * libraft closes its log and connections, the replication thread is joined. Later calls are
 * refused; no callback runs after this returns. Must not be called from a callback. A leader
 * stopping cleanly should call dfs_repl_transfer first, so the cluster does not wait out an
 * election timeout. Accepts NULL.
 */
void dfs_repl_destroy(dfs_repl *r);

/* Why a call ended. */
enum dfs_repl_why {
    DFS_REPL_DONE = 0,        /* applied (propose), read point reached (barrier), changed */
    DFS_REPL_NOT_LEADER,      /* this replica is not the leader: leader_id/address name it */
    DFS_REPL_LEADERSHIP_LOST, /* was leader, lost it before the entry committed */
    DFS_REPL_SHUTDOWN,        /* dfs_repl_destroy began */
    DFS_REPL_TIMEOUT,         /* the deadline passed first */
    DFS_REPL_REFUSED,         /* refused by the Raft layer (a change already running, unknown id) */
    DFS_REPL_STOPPED,         /* the replica failed (DFS_REPL_FAILED) */
};

/*
 * How a call ended; borrowed for the callback only (copy what you keep).
 *
 *   status       0, or DFS_EUNAVAIL (NOT_LEADER, LEADERSHIP_LOST, SHUTDOWN), DFS_ETIMEDOUT,
 *                DFS_EABORTED / DFS_EINVAL (REFUSED), DFS_EIO (STOPPED)
 *   maybe_applied  for a failed propose (and membership change): the entry had reached the log, so
 *                it may still commit and be applied everywhere later (LEADERSHIP_LOST, SHUTDOWN
 *                and TIMEOUT after appending). false: it never will (the caller may retry
 *                freely). Retrying a maybe_applied command must be harmless (make it idempotent).
 *   index        the log index of the entry (applied command; for a barrier the read point)
 *   leader_id, leader_address   the leader this replica knows (0 / "" when none)
 *   message      one line for logs and clients; never NULL
 *   result       the owner's apply result for a proposed command (status 0 only)
 */
struct dfs_repl_outcome {
    int status;
    enum dfs_repl_why why;
    bool maybe_applied;
    uint64_t index;
    uint64_t leader_id;
    const char *leader_address;
    const char *message;
    struct dfs_repl_result result;
};

/*
 * Called exactly once per accepted call, on the replication thread. arg is the caller's.
 */
typedef void (*dfs_repl_done_fn)(void *arg, const struct dfs_repl_outcome *out);

/*
 * Propose a command (len 1..DFS_REPL_COMMAND_MAX bytes, copied). On the leader it is batched into
 * the next log entry; once committed and applied locally, done gets the owner's result. On
 * another replica done gets DFS_REPL_NOT_LEADER (naming the leader). timeout_ms > 0 bounds the
 * wait: done is called by then (give or take 10 ms). Returns 0 (done will be called), or
 * DFS_EINVAL (empty, too large, no callback, timeout <= 0), DFS_ENOMEM, DFS_EUNAVAIL (the replica
 * is being destroyed) with done never called.
 */
int dfs_repl_propose(dfs_repl *r, const void *cmd, size_t len, int64_t timeout_ms,
                     dfs_repl_done_fn done, void *arg);

/*
 * Wait for a linearizable read point (see above): done gets status 0 once everything committed
 * before this call is applied to the owner's state and this replica is still the leader; read
 * the state afterwards. Not the leader: DFS_REPL_NOT_LEADER. Returns like dfs_repl_propose.
 */
int dfs_repl_barrier(dfs_repl *r, int64_t timeout_ms, dfs_repl_done_fn done, void *arg);

/*
 * Membership, on the leader, one change at a time (another one running: DFS_REPL_REFUSED).
 *
 * dfs_repl_add: add member id at address: first as a spare, then promoted to voter once it has
 *   caught up with the log (libraft replicates to it in rounds and promotes it when a round ends
 *   within an election timeout); done fires when the promotion is committed. The new replica
 *   must be running, created with no members (joining).
 * dfs_repl_remove: remove member id (it stops receiving the log; destroy it afterwards).
 *   Removing the leader itself makes it step down once the change commits; prefer
 *   dfs_repl_transfer first.
 * dfs_repl_transfer: hand leadership to voter id (0: the most up-to-date voter) and step down;
 *   done fires when the target leads (status 0) or after an election timeout (DFS_ETIMEDOUT).
 *
 * Returns like dfs_repl_propose.
 */
int dfs_repl_add(dfs_repl *r, uint64_t id, const char *address, int64_t timeout_ms,
                 dfs_repl_done_fn done, void *arg);
int dfs_repl_remove(dfs_repl *r, uint64_t id, int64_t timeout_ms, dfs_repl_done_fn done, void *arg);
int dfs_repl_transfer(dfs_repl *r, uint64_t id, int64_t timeout_ms, dfs_repl_done_fn done,
                      void *arg);

struct dfs_repl_member_status {
    uint64_t id;
    char address[DFS_REPL_ADDRESS_MAX];
    enum dfs_repl_member_role role;
    bool leader;          /* the member this replica believes leads */
    uint64_t match_index; /* on the leader: last index known replicated there (else 0) */
};

/*
 * A replica's view of itself and the cluster, refreshed by the replication thread after every
 * loop iteration (so it may lag by that much).
 */
struct dfs_repl_status {
    uint64_t id;
    char address[DFS_REPL_ADDRESS_MAX];
    enum dfs_repl_role role;
    bool leader_ready; /* leader, and its first entry of this term is applied */
    uint64_t leader_id;
    char leader_address[DFS_REPL_ADDRESS_MAX]; /* "" when no leader is known */
    uint64_t term;
    uint64_t last_index;    /* last entry in the local log */
    uint64_t commit_index;  /* last entry known committed */
    uint64_t applied_index; /* last entry applied locally (owner entries and engine entries) */
    uint64_t state_index;   /* last entry the owner's state holds (its applied index) */
    /* The leader's commit index: a leader's own; a follower's, the one the latest AppendEntries
       (heartbeats too) of the current term carried, 0 before any, and leader_heard_ns when it
       arrived (dfs_clock_mono_ns; 0: never; a leader: when the status was built). A follower's
       commit_index is capped at the entries it stored, so only this tells how far behind it is. */
    uint64_t leader_commit;
    int64_t leader_heard_ns;
    uint64_t snapshot_index;     /* the latest snapshot taken or installed here (0: none) */
    uint64_t snapshot_bytes;     /* its size, header included */
    uint64_t snapshots_taken;    /* since start */
    uint64_t snapshots_restored; /* installed from a leader (or at start), since start */
    uint64_t leader_changes;     /* times this replica saw the leader change, since start */
    uint64_t entries_proposed;   /* command entries this replica appended as leader */
    uint64_t commands_proposed;  /* commands in them */
    size_t n_members;
    struct dfs_repl_member_status members[DFS_REPL_MEMBERS_MAX];
    char failure[256]; /* role DFS_REPL_FAILED: why; else "" */
};

/* Copy the latest status into *out. Thread-safe, cheap (a mutex and a copy). */
void dfs_repl_status_get(dfs_repl *r, struct dfs_repl_status *out);

/*
 * Whether the replica that reported st can serve as a caught-up member (its readiness): a
 * leader when leader_ready; a follower when it knows its leader, heard from it within
 * max_silence_ms before now_ns (dfs_clock_mono_ns), and its applied index is at most max_lag
 * entries behind the leader's commit index it was told then. Anything else is not (candidates,
 * spares that know no leader, stopped or failed replicas). When false, why[0..why_len) gets a
 * one-line reason (why may be NULL).
 */
bool dfs_repl_caught_up(const struct dfs_repl_status *st, uint64_t max_lag, int64_t max_silence_ms,
                        int64_t now_ns, char *why, size_t why_len);

#endif /* DFS_SERVICES_METADATA_REPLICATION_H */
