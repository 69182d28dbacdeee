/* The replication engine over libraft 0.15 (libuv backend, TCP transport): see replication.h. */
#include "services/metadata/replication.h"

#include "services/metadata/raft_transport.h"

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * On-disk formats (they outlive this code: a log written by one version is replayed by the next).
 *
 * A command entry (libraft RAFT_COMMAND payload), all integers little-endian:
 *     [4] magic 0x31425244 ("DRB1": dfs replication batch, version 1)
 *     [4] n, the number of commands, >= 1
 *     n times: [4] length L >= 1, [L] the command bytes
 *     0-7 zero bytes, so that the entry's length is a multiple of 8
 * and nothing after. libraft checksums each batch of entries in its segments (CRC32). The padding
 * is not optional: libraft 0.15 writes an entry whose length is not a multiple of 8 into a
 * segment it then cannot load ("short read" at start), and its auto-recovery renames such a
 * segment aside, dropping committed entries. Auto-recovery is turned off (see create).
 *
 * A snapshot (libraft snapshot data; libraft stores it as snapshot-TERM-INDEX-TIME with a .meta):
 *     [8] "DFSSNAP1"
 *     [8] index: the last log entry the state includes
 *     [8] payload length P
 *     [4] CRC32C of the payload
 *     [4] 0
 *     [P] payload: the file the owner's snapshot_write produced
 */
#define BATCH_MAGIC  0x31425244u
#define BATCH_HEADER 8u
#define SNAP_MAGIC   "DFSSNAP1"
#define SNAP_HEADER  32u

/* How often deadlines are checked and the status refreshed when nothing else happens. */
#define TIMER_MS 10

enum req_kind { REQ_PROPOSE, REQ_READ, REQ_ADD, REQ_REMOVE, REQ_TRANSFER };

/* A caller's request, from the call until its done callback (then freed). */
struct req {
    enum req_kind kind;
    struct req *next; /* in the incoming list, or in r->waiting / r->reads */
    dfs_repl_done_fn done;
    void *arg;
    int64_t deadline_ns; /* CLOCK_MONOTONIC */
    void *cmd;           /* REQ_PROPOSE: the command (malloc'd copy) */
    size_t len;
    uint64_t id;   /* membership: the member */
    char *address; /* REQ_ADD: malloc'd */
};

/* A log entry this replica appended as leader and waits for (command batch or barrier). */
struct entry {
    dfs_repl *r;
    struct raft_apply apply;     /* command entries */
    struct raft_barrier barrier; /* barrier entries */
    bool is_barrier;
    bool leadership; /* the barrier that makes a new leader ready */
    uint64_t term;
    uint64_t index;
    struct req **cmds; /* by position in the batch; NULL once answered (deadline) */
    size_t n_cmds;
    struct req **reads; /* reads waiting for this entry; NULL once answered */
    size_t n_reads, cap_reads;
    struct dfs_repl_result *results; /* the owner's results, set when applied here */
    struct entry *prev, *next;       /* in r->inflight, oldest first */
};

/* A membership change or leadership transfer libraft is working on (one at a time). */
struct change {
    dfs_repl *r;
    struct raft_change change;
    struct raft_transfer transfer;
    struct req *req; /* NULL once the caller was answered (deadline) */
    bool promoting;  /* REQ_ADD: the spare was added, now being promoted */
};

struct snap {
    bool active;  /* prepared, not yet released */
    bool written; /* snapshot_async produced the data */
    uint64_t index;
    uint64_t bytes;
    void *owner; /* the owner's pinned view */
    int64_t start_ns;
};

struct dfs_repl {
    /* Set at create, read-only afterwards. */
    uint64_t id;
    char address[DFS_REPL_ADDRESS_MAX];
    char bind_address[DFS_REPL_ADDRESS_MAX]; /* "": the transport's choice */
    char raft_dir[PATH_MAX];
    char tmp_dir[PATH_MAX];
    unsigned election_timeout_ms, heartbeat_ms;
    unsigned max_batch_commands, max_inflight;
    size_t max_batch_bytes;
    const struct dfs_repl_ops *ops;
    void *ctx;

    /* Owned by the replication thread (by the creating thread until it starts). */
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t timer;
    uv_check_t check;
    bool handles_open;
    struct raft_uv_transport transport;
    struct raft_io io;
    /* libraft's io start and receive callback, wrapped by io_start/io_recv to note what the
       leader's messages say (libraft 0.15 keeps no leader commit index on a follower). */
    int (*io_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv);
    raft_io_recv_cb raft_recv;
    uint64_t heard_commit; /* leader_commit of the latest AppendEntries of the current term */
    int64_t heard_ns;      /* when it arrived (dfs_clock_mono_ns), 0: never */
    struct raft_fsm fsm;
    struct raft raft;
    bool raft_live;                          /* raft_start succeeded and raft_close not called */
    bool stopping;                           /* destroy began (loop's copy) */
    bool closing_raft;                       /* raft_close called */
    bool raft_closed;                        /* ... and its callback fired */
    struct req *waiting_head, *waiting_tail; /* proposals not yet in an entry */
    struct req *reads_head, *reads_tail;     /* reads not yet attached to an entry */
    struct entry *inflight_head, *inflight_tail;
    unsigned inflight_cmd_entries;
    struct change *change;
    uint64_t state_index; /* the owner state's applied index */
    bool failed;
    char failure[256];
    struct snap snap;
    /* What publish() last saw, to detect changes. */
    int seen_role;
    uint64_t seen_term, seen_leader;
    bool seen_ready;
    bool ready;          /* leader and its leadership barrier applied */
    uint64_t ready_term; /* the term `ready` is for */
    bool leadership_barrier_inflight;
    int64_t last_publish_ns;
    struct dfs_repl_status st; /* built by publish() */
    uint64_t snapshot_index, snapshot_bytes, snapshots_taken, snapshots_restored;
    uint64_t leader_changes, entries_proposed, commands_proposed;

    /* Shared with callers, under mu. */
    pthread_mutex_t mu;
    struct req *in_head, *in_tail;
    bool refuse; /* destroy began: refuse new calls */
    struct dfs_repl_status shared;

    pthread_t thread;
    bool thread_started;
};

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

const char *dfs_repl_role_name(enum dfs_repl_role role)
{
    switch (role) {
    case DFS_REPL_UNAVAILABLE:
        return "unavailable";
    case DFS_REPL_FOLLOWER:
        return "follower";
    case DFS_REPL_CANDIDATE:
        return "candidate";
    case DFS_REPL_LEADER:
        return "leader";
    case DFS_REPL_FAILED:
        return "failed";
    }
    return "unknown";
}

const char *dfs_repl_member_role_name(enum dfs_repl_member_role role)
{
    switch (role) {
    case DFS_REPL_VOTER:
        return "voter";
    case DFS_REPL_STANDBY:
        return "standby";
    case DFS_REPL_SPARE:
        return "spare";
    }
    return "unknown";
}

/* ---- answering callers ---- */

static void free_req(struct req *q)
{
    if (q == NULL)
        return;
    free(q->cmd);
    free(q->address);
    free(q);
}

static void free_results(struct dfs_repl_result *res, size_t n)
{
    if (res == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(res[i].data);
    free(res);
}

/*
 * Whether libraft leads, as far as it is safe to act on. libraft 0.15 steps down (convertToFollower,
 * also raft_close) by freeing the followers' progress array first, then failing every request of
 * ours with RAFT_LEADERSHIPLOST (our apply, barrier and change callbacks run there), and only then
 * setting its state: inside those callbacks raft_state() still says RAFT_LEADER, and raft_apply,
 * raft_barrier (both check only the state) and anything else that replicates walks the freed
 * array (SIGSEGV in progressState(), libraft.so.2.0.0 + 0xae4c). A leader always has that array
 * otherwise (allocated in the same step that makes it leader), so its absence means "stepping
 * down": not the leader any more, for every decision this file makes.
 */
static bool raft_leads(dfs_repl *r)
{
    return r->raft_live && raft_state(&r->raft) == RAFT_LEADER &&
           r->raft.leader_state.progress != NULL;
}

static bool is_leader(dfs_repl *r)
{
    return !r->failed && raft_leads(r);
}

/* The leader this replica knows, copied into buf (size DFS_REPL_ADDRESS_MAX). */
static uint64_t known_leader(dfs_repl *r, char *buf)
{
    buf[0] = '\0';
    if (!r->raft_live)
        return 0;
    raft_id id = 0;
    const char *addr = NULL;
    raft_leader(&r->raft, &id, &addr);
    if (id == r->id && !raft_leads(r))
        return 0; /* stepping down (raft_leads): itself is no longer the leader to name */
    if (id != 0 && addr != NULL)
        snprintf(buf, DFS_REPL_ADDRESS_MAX, "%s", addr);
    return id;
}

static const char *why_status_text(enum dfs_repl_why why)
{
    switch (why) {
    case DFS_REPL_DONE:
        return "done";
    case DFS_REPL_NOT_LEADER:
        return "not the leader";
    case DFS_REPL_LEADERSHIP_LOST:
        return "lost leadership before the entry committed";
    case DFS_REPL_SHUTDOWN:
        return "replica shutting down";
    case DFS_REPL_TIMEOUT:
        return "deadline passed";
    case DFS_REPL_REFUSED:
        return "refused";
    case DFS_REPL_STOPPED:
        return "replica stopped";
    }
    return "unknown";
}

static int why_status(enum dfs_repl_why why)
{
    switch (why) {
    case DFS_REPL_DONE:
        return DFS_OK;
    case DFS_REPL_NOT_LEADER:
    case DFS_REPL_LEADERSHIP_LOST:
    case DFS_REPL_SHUTDOWN:
        return DFS_EUNAVAIL;
    case DFS_REPL_TIMEOUT:
        return DFS_ETIMEDOUT;
    case DFS_REPL_REFUSED:
        return DFS_EABORTED;
    case DFS_REPL_STOPPED:
        return DFS_EIO;
    }
    return DFS_EINTERNAL;
}

/*
 * Call q's done callback and free q. detail (may be NULL) replaces the standard message tail;
 * result (may be NULL) is the owner's, borrowed.
 */
static void finish(dfs_repl *r, struct req *q, enum dfs_repl_why why, bool maybe_applied,
                   uint64_t index, const struct dfs_repl_result *result, const char *detail)
{
    char leader[DFS_REPL_ADDRESS_MAX];
    char msg[512];
    struct dfs_repl_outcome o = {0};
    o.status = why_status(why);
    o.why = why;
    o.maybe_applied = why != DFS_REPL_DONE && maybe_applied;
    o.index = index;
    o.leader_id = known_leader(r, leader);
    o.leader_address = leader;
    if (why == DFS_REPL_NOT_LEADER) {
        if (o.leader_id != 0)
            snprintf(msg, sizeof msg,
                     "replica %" PRIu64 " is not the leader; the leader is %" PRIu64 " at %s",
                     r->id, (uint64_t)o.leader_id, leader);
        else
            snprintf(msg, sizeof msg,
                     "replica %" PRIu64 " is not the leader and knows no leader (election)", r->id);
    } else if (why == DFS_REPL_STOPPED) {
        snprintf(msg, sizeof msg, "replica %" PRIu64 " stopped: %s", r->id, r->failure);
    } else if (detail != NULL) {
        snprintf(msg, sizeof msg, "%s", detail);
    } else if (why == DFS_REPL_DONE) {
        snprintf(msg, sizeof msg, "done at index %" PRIu64, index);
    } else {
        snprintf(msg, sizeof msg, "replica %" PRIu64 ": %s%s", r->id, why_status_text(why),
                 o.maybe_applied ? " (the entry may still commit)" : "");
    }
    o.message = msg;
    if (result != NULL)
        o.result = *result;
    q->done(q->arg, &o);
    free_req(q);
}

/* Fail every request of a list (not yet in the log: never applied). */
static void fail_list(dfs_repl *r, struct req **head, struct req **tail, enum dfs_repl_why why,
                      const char *detail)
{
    struct req *q = *head;
    *head = *tail = NULL;
    while (q != NULL) {
        struct req *next = q->next;
        finish(r, q, why, false, 0, NULL, detail);
        q = next;
    }
}

static void push(struct req **head, struct req **tail, struct req *q)
{
    q->next = NULL;
    if (*tail != NULL)
        (*tail)->next = q;
    else
        *head = q;
    *tail = q;
}

/* ---- entries in flight ---- */

static void entry_unlink(dfs_repl *r, struct entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        r->inflight_head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        r->inflight_tail = e->prev;
    e->prev = e->next = NULL;
    if (!e->is_barrier)
        r->inflight_cmd_entries--;
    if (e->leadership)
        r->leadership_barrier_inflight = false;
}

static void entry_link(dfs_repl *r, struct entry *e)
{
    e->prev = r->inflight_tail;
    e->next = NULL;
    if (r->inflight_tail != NULL)
        r->inflight_tail->next = e;
    else
        r->inflight_head = e;
    r->inflight_tail = e;
    if (!e->is_barrier)
        r->inflight_cmd_entries++;
    if (e->leadership)
        r->leadership_barrier_inflight = true;
}

static void entry_free(struct entry *e)
{
    for (size_t i = 0; i < e->n_cmds; i++)
        free_req(e->cmds[i]);
    for (size_t i = 0; i < e->n_reads; i++)
        free_req(e->reads[i]);
    free(e->cmds);
    free(e->reads);
    free_results(e->results, e->n_cmds);
    free(e);
}

static int entry_add_read(struct entry *e, struct req *q)
{
    if (e->n_reads == e->cap_reads) {
        size_t cap = e->cap_reads ? 2 * e->cap_reads : 8;
        struct req **n = realloc(e->reads, cap * sizeof *n);
        if (n == NULL)
            return DFS_ENOMEM;
        e->reads = n;
        e->cap_reads = cap;
    }
    e->reads[e->n_reads++] = q;
    return 0;
}

/* libraft's verdict on an entry of ours -> why. */
static enum dfs_repl_why raft_why(dfs_repl *r, int status)
{
    if (r->failed)
        return DFS_REPL_STOPPED;
    switch (status) {
    case RAFT_NOTLEADER:
        return DFS_REPL_NOT_LEADER;
    case RAFT_LEADERSHIPLOST:
        return DFS_REPL_LEADERSHIP_LOST;
    case RAFT_SHUTDOWN:
        return r->stopping ? DFS_REPL_SHUTDOWN : DFS_REPL_LEADERSHIP_LOST;
    default:
        return DFS_REPL_LEADERSHIP_LOST;
    }
}

static void pump(dfs_repl *r);
static void publish(dfs_repl *r, bool force);
static void maybe_close_raft(dfs_repl *r);

/* An entry of ours is done: applied here (status 0) or dropped by libraft. */
static void entry_done(struct entry *e, int status)
{
    dfs_repl *r = e->r;
    entry_unlink(r, e);
    if (status == 0 && e->leadership && is_leader(r) && r->raft.current_term == e->term) {
        r->ready = true;
        r->ready_term = e->term;
    }
    /* What a caller is told is already in the status when its callback runs. */
    publish(r, true);
    if (status == 0) {
        for (size_t i = 0; i < e->n_cmds; i++) {
            if (e->cmds[i] == NULL)
                continue;
            struct dfs_repl_result none = {0};
            const struct dfs_repl_result *res = e->results ? &e->results[i] : &none;
            finish(r, e->cmds[i], DFS_REPL_DONE, false, e->index, res, NULL);
            e->cmds[i] = NULL;
        }
        for (size_t i = 0; i < e->n_reads; i++) {
            if (e->reads[i] == NULL)
                continue;
            /* The read point is proven only if this replica still leads in that term. */
            if (is_leader(r) && r->raft.current_term == e->term)
                finish(r, e->reads[i], DFS_REPL_DONE, false, e->index, NULL, NULL);
            else
                finish(r, e->reads[i], DFS_REPL_LEADERSHIP_LOST, false, 0, NULL, NULL);
            e->reads[i] = NULL;
        }
    } else {
        enum dfs_repl_why why = raft_why(r, status);
        for (size_t i = 0; i < e->n_cmds; i++) {
            if (e->cmds[i] != NULL)
                finish(r, e->cmds[i], why, true, 0, NULL, NULL);
            e->cmds[i] = NULL;
        }
        for (size_t i = 0; i < e->n_reads; i++) {
            if (e->reads[i] != NULL)
                finish(r, e->reads[i], why, false, 0, NULL, NULL);
            e->reads[i] = NULL;
        }
    }
    entry_free(e);
    pump(r);
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    (void)result; /* always NULL: results travel on the entry */
    entry_done(req->data, status);
}

static void barrier_cb(struct raft_barrier *req, int status)
{
    entry_done(req->data, status);
}

/* Append a barrier entry of the current term (for reads, or the leadership barrier). */
static struct entry *submit_barrier(dfs_repl *r, bool leadership)
{
    struct entry *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->r = r;
    e->is_barrier = true;
    e->leadership = leadership;
    e->term = r->raft.current_term;
    e->barrier.data = e;
    int rv = raft_barrier(&r->raft, &e->barrier, barrier_cb);
    if (rv != 0) {
        dfs_log(DFS_LOG_WARN, "replication: barrier refused id=%" PRIu64 " err=\"%s\"", r->id,
                raft_strerror(rv));
        free(e);
        return NULL;
    }
    e->index = e->barrier.index;
    entry_link(r, e);
    return e;
}

/* Pack waiting proposals into one command entry and append it. */
static void submit_batch(dfs_repl *r)
{
    size_t n = 0, bytes = BATCH_HEADER;
    for (struct req *q = r->waiting_head; q != NULL; q = q->next) {
        if (n > 0 && (n >= r->max_batch_commands || bytes + 4 + q->len > r->max_batch_bytes))
            break;
        n++;
        bytes += 4 + q->len;
    }
    size_t used = bytes;
    bytes = (bytes + 7) & ~(size_t)7;
    struct entry *e = calloc(1, sizeof *e);
    struct req **cmds = malloc(n * sizeof *cmds);
    unsigned char *buf = raft_malloc(bytes);
    if (e == NULL || cmds == NULL || buf == NULL) {
        free(e);
        free(cmds);
        raft_free(buf);
        /* Out of memory: answer the first proposal so the queue keeps moving. */
        struct req *q = r->waiting_head;
        r->waiting_head = q->next;
        if (r->waiting_head == NULL)
            r->waiting_tail = NULL;
        finish(r, q, DFS_REPL_REFUSED, false, 0, NULL, "replication: out of memory");
        return;
    }
    put_u32(buf, BATCH_MAGIC);
    put_u32(buf + 4, (uint32_t)n);
    size_t off = BATCH_HEADER;
    for (size_t i = 0; i < n; i++) {
        struct req *q = r->waiting_head;
        r->waiting_head = q->next;
        put_u32(buf + off, (uint32_t)q->len);
        memcpy(buf + off + 4, q->cmd, q->len);
        off += 4 + q->len;
        free(q->cmd); /* copied into the entry */
        q->cmd = NULL;
        q->next = NULL;
        cmds[i] = q;
    }
    memset(buf + used, 0, bytes - used);
    if (r->waiting_head == NULL)
        r->waiting_tail = NULL;
    e->r = r;
    e->cmds = cmds;
    e->n_cmds = n;
    e->term = r->raft.current_term;
    e->apply.data = e;
    struct raft_buffer rb = {.base = buf, .len = bytes};
    int rv = raft_apply(&r->raft, &e->apply, &rb, 1, apply_cb);
    if (rv != 0) {
        raft_free(buf);
        enum dfs_repl_why why = rv == RAFT_NOTLEADER ? DFS_REPL_NOT_LEADER : DFS_REPL_REFUSED;
        char detail[300];
        snprintf(detail, sizeof detail, "replication: append refused: %s", raft_strerror(rv));
        for (size_t i = 0; i < n; i++) {
            finish(r, cmds[i], why, false, 0, NULL, why == DFS_REPL_REFUSED ? detail : NULL);
            cmds[i] = NULL;
        }
        e->n_cmds = 0;
        entry_free(e);
        return;
    }
    e->index = e->apply.index;
    entry_link(r, e);
    r->entries_proposed++;
    r->commands_proposed += n;
}

/* Reads ride on the newest entry of this term not yet committed, else on a new barrier. */
static void attach_reads(dfs_repl *r)
{
    struct entry *e = r->inflight_tail;
    if (e == NULL || e->term != r->raft.current_term || e->index <= r->raft.commit_index)
        e = submit_barrier(r, false);
    if (e == NULL) {
        fail_list(r, &r->reads_head, &r->reads_tail, DFS_REPL_REFUSED,
                  "replication: cannot append a read barrier");
        return;
    }
    while (r->reads_head != NULL) {
        struct req *q = r->reads_head;
        if (entry_add_read(e, q) != 0)
            break;
        r->reads_head = q->next;
        q->next = NULL;
    }
    if (r->reads_head == NULL)
        r->reads_tail = NULL;
    else
        fail_list(r, &r->reads_head, &r->reads_tail, DFS_REPL_REFUSED,
                  "replication: out of memory");
}

/* Move what waits into the log, or turn it away. */
static void pump(dfs_repl *r)
{
    if (r->failed) {
        fail_list(r, &r->waiting_head, &r->waiting_tail, DFS_REPL_STOPPED, NULL);
        fail_list(r, &r->reads_head, &r->reads_tail, DFS_REPL_STOPPED, NULL);
        return;
    }
    if (r->stopping || !r->raft_live) {
        fail_list(r, &r->waiting_head, &r->waiting_tail, DFS_REPL_SHUTDOWN, NULL);
        fail_list(r, &r->reads_head, &r->reads_tail, DFS_REPL_SHUTDOWN, NULL);
        return;
    }
    if (!raft_leads(r)) {
        fail_list(r, &r->waiting_head, &r->waiting_tail, DFS_REPL_NOT_LEADER, NULL);
        fail_list(r, &r->reads_head, &r->reads_tail, DFS_REPL_NOT_LEADER, NULL);
        return;
    }
    while (r->waiting_head != NULL && r->inflight_cmd_entries < r->max_inflight && raft_leads(r))
        submit_batch(r);
    if (r->reads_head != NULL)
        attach_reads(r);
}

/* ---- membership ---- */

static void change_answer(struct change *c, enum dfs_repl_why why, bool maybe, const char *detail)
{
    if (c->req != NULL)
        finish(c->r, c->req, why, maybe, 0, NULL, detail);
    c->req = NULL;
}

/* libraft is done with c (its callback fired): answer if not yet, free. */
static void change_end(struct change *c, enum dfs_repl_why why, bool maybe, const char *detail)
{
    dfs_repl *r = c->r;
    publish(r, true); /* the members a caller is told about are in the status */
    change_answer(c, why, maybe, detail);
    if (r->change == c)
        r->change = NULL;
    free(c);
}

static void change_refused(dfs_repl *r, struct change *c, int rv, const char *what)
{
    char detail[400];
    enum dfs_repl_why why = DFS_REPL_REFUSED;
    if (rv == RAFT_NOTLEADER) {
        why = DFS_REPL_NOT_LEADER;
    } else {
        const char *more = raft_errmsg(&r->raft);
        snprintf(detail, sizeof detail, "%s refused: %s%s%s%s", what, raft_strerror(rv),
                 more[0] != '\0' ? " (" : "", more, more[0] != '\0' ? ")" : "");
    }
    change_end(c, why, false, why == DFS_REPL_REFUSED ? detail : NULL);
}

static void change_cb(struct raft_change *req, int status);

static void change_cb(struct raft_change *req, int status)
{
    struct change *c = req->data;
    dfs_repl *r = c->r;
    if (status != 0) {
        char detail[300];
        snprintf(detail, sizeof detail, "membership change failed: %s", raft_strerror(status));
        change_end(c,
                   status == RAFT_LEADERSHIPLOST || status == RAFT_SHUTDOWN ? raft_why(r, status)
                                                                            : DFS_REPL_REFUSED,
                   true, detail);
        return;
    }
    if (c->req != NULL && c->req->kind == REQ_ADD && !c->promoting && !r->stopping) {
        /* Added as a spare; now catch it up and promote it. */
        c->promoting = true;
        int rv = raft_assign(&r->raft, &c->change, c->req->id, RAFT_VOTER, change_cb);
        if (rv != 0)
            change_refused(r, c, rv, "promotion to voter");
        return;
    }
    change_end(c, DFS_REPL_DONE, false, NULL);
}

static void transfer_cb(struct raft_transfer *req)
{
    struct change *c = req->data;
    dfs_repl *r = c->r;
    if (r->raft_live && !raft_leads(r))
        change_end(c, DFS_REPL_DONE, false, NULL);
    else
        change_end(c, DFS_REPL_TIMEOUT, false, "leadership transfer did not complete in time");
}

static void start_change(dfs_repl *r, struct req *q)
{
    if (r->failed) {
        finish(r, q, DFS_REPL_STOPPED, false, 0, NULL, NULL);
        return;
    }
    if (!is_leader(r)) {
        finish(r, q, DFS_REPL_NOT_LEADER, false, 0, NULL, NULL);
        return;
    }
    if (r->change != NULL) {
        finish(r, q, DFS_REPL_REFUSED, false, 0, NULL,
               "another membership change is in progress (one at a time)");
        return;
    }
    if (q->kind == REQ_ADD && r->raft.configuration.n >= DFS_REPL_MEMBERS_MAX) {
        finish(r, q, DFS_REPL_REFUSED, false, 0, NULL, "the cluster has its maximum of members");
        return;
    }
    struct change *c = calloc(1, sizeof *c);
    if (c == NULL) {
        finish(r, q, DFS_REPL_REFUSED, false, 0, NULL, "replication: out of memory");
        return;
    }
    c->r = r;
    c->req = q;
    c->change.data = c;
    c->transfer.data = c;
    r->change = c;
    int rv;
    switch (q->kind) {
    case REQ_ADD:
        rv = raft_add(&r->raft, &c->change, q->id, q->address, change_cb);
        if (rv != 0)
            change_refused(r, c, rv, "add");
        break;
    case REQ_REMOVE:
        rv = raft_remove(&r->raft, &c->change, q->id, change_cb);
        if (rv != 0)
            change_refused(r, c, rv, "remove");
        break;
    default:
        rv = raft_transfer(&r->raft, &c->transfer, q->id, transfer_cb);
        if (rv != 0)
            change_refused(r, c, rv, "transfer");
        break;
    }
}

/* ---- the state machine libraft drives ---- */

/* Stop this replica after a failed apply or restore: it must not go on without the entry. */
static void fail_stop(dfs_repl *r, const char *why)
{
    if (r->failed)
        return;
    r->failed = true;
    size_t n = strnlen(why, sizeof r->failure - 1); /* a message cut short is fine */
    memcpy(r->failure, why, n);
    r->failure[n] = '\0';
    dfs_log(DFS_LOG_ERROR, "replication: replica stops id=%" PRIu64 " reason=\"%s\"", r->id,
            r->failure);
    /* libraft is closed from the loop's check callback, outside its own call stack. */
}

/*
 * The entry of ours at index, if any. An index identifies it: when leadership is lost libraft
 * fails every entry of ours before another leader's entry can take its index.
 */
static struct entry *find_entry(dfs_repl *r, uint64_t index)
{
    for (struct entry *e = r->inflight_head; e != NULL; e = e->next)
        if (!e->is_barrier && e->index == index)
            return e;
    return NULL;
}

/* Split an entry into its commands (pointers into buf). Returns the count, 0 if malformed. */
static size_t decode_batch(const struct raft_buffer *buf, struct dfs_repl_cmd **out)
{
    const unsigned char *p = buf->base;
    *out = NULL;
    if (buf->len < BATCH_HEADER || get_u32(p) != BATCH_MAGIC)
        return 0;
    uint32_t n = get_u32(p + 4);
    if (n == 0 || n > (buf->len - BATCH_HEADER) / 5)
        return 0;
    struct dfs_repl_cmd *cmds = malloc(n * sizeof *cmds);
    if (cmds == NULL)
        return 0;
    size_t off = BATCH_HEADER;
    for (uint32_t i = 0; i < n; i++) {
        if (buf->len - off < 4)
            goto bad;
        uint32_t len = get_u32(p + off);
        off += 4;
        if (len == 0 || len > buf->len - off)
            goto bad;
        cmds[i].data = p + off;
        cmds[i].len = len;
        off += len;
    }
    if (buf->len - off >= 8)
        goto bad;
    for (; off < buf->len; off++)
        if (p[off] != 0)
            goto bad;
    *out = cmds;
    return n;
bad:
    free(cmds);
    return 0;
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    dfs_repl *r = fsm->data;
    /* libraft applies entry last_applied + 1 and advances last_applied after this returns. */
    uint64_t index = raft_last_applied(&r->raft) + 1;
    *result = NULL;
    if (r->failed)
        return RAFT_IOERR;
    if (index <= r->state_index)
        return 0; /* the owner's state has it already (restart: libraft replays its log) */
    struct dfs_repl_cmd *cmds;
    size_t n = decode_batch(buf, &cmds);
    char why[512];
    if (n == 0) {
        snprintf(why, sizeof why, "entry %" PRIu64 " is not a command batch", index);
        fail_stop(r, why);
        return RAFT_MALFORMED;
    }
    struct dfs_repl_result *res = calloc(n, sizeof *res);
    if (res == NULL) {
        free(cmds);
        snprintf(why, sizeof why, "entry %" PRIu64 ": out of memory", index);
        fail_stop(r, why);
        return RAFT_NOMEM;
    }
    char *msg = NULL;
    int rc = r->ops->apply(r->ctx, index, cmds, n, res, &msg);
    free(cmds);
    if (rc != 0) {
        free_results(res, n);
        snprintf(why, sizeof why, "apply of entry %" PRIu64 " failed: %s", index,
                 msg ? msg : dfs_strerror(rc));
        fail_stop(r, why);
        free(msg);
        return RAFT_IOERR;
    }
    free(msg);
    r->state_index = index;
    struct entry *e = find_entry(r, index);
    if (e != NULL && e->results == NULL)
        e->results = res;
    else
        free_results(res, n);
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    dfs_repl *r = fsm->data;
    *bufs = NULL;
    *n_bufs = 0;
    if (r->failed || r->stopping || r->snap.active)
        return RAFT_BUSY;
    /* libraft takes the snapshot at last_applied, right after applying it. */
    uint64_t index = raft_last_applied(&r->raft);
    char *msg = NULL;
    void *owner = NULL;
    int rc = r->ops->snapshot_prepare(r->ctx, index, &owner, &msg);
    if (rc != 0) {
        dfs_log(DFS_LOG_WARN,
                "replication: snapshot not taken id=%" PRIu64 " index=%" PRIu64 " err=\"%s\"",
                r->id, index, msg ? msg : dfs_strerror(rc));
        free(msg);
        return RAFT_BUSY; /* libraft tries again at the next threshold */
    }
    r->snap = (struct snap){
        .active = true, .index = index, .owner = owner, .start_ns = dfs_clock_mono_ns()};
    return 0;
}

/* Read a whole file behind a snapshot header. */
static int load_snapshot_file(const char *path, uint64_t index, struct raft_buffer *out,
                              char **errmsg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dfs_seterr_errno(errmsg, DFS_EIO, errno, "open %s", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return dfs_seterr_errno(errmsg, DFS_EIO, errno, "stat %s", path);
    }
    size_t len = (size_t)sb.st_size;
    unsigned char *buf = malloc(SNAP_HEADER + len);
    if (buf == NULL) {
        close(fd);
        return dfs_seterr(errmsg, DFS_ENOMEM, "snapshot of %zu bytes: out of memory", len);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t k = read(fd, buf + SNAP_HEADER + got, len - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int e = k < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return dfs_seterr_errno(errmsg, DFS_EIO, e, "read %s", path);
        }
        got += (size_t)k;
    }
    close(fd);
    memcpy(buf, SNAP_MAGIC, 8);
    put_u64(buf + 8, index);
    put_u64(buf + 16, len);
    put_u32(buf + 24, dfs_crc32c(0, buf + SNAP_HEADER, len));
    put_u32(buf + 28, 0);
    out->base = buf;
    out->len = SNAP_HEADER + len;
    return 0;
}

/* On a libuv worker thread, while the replication thread goes on applying. */
static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    dfs_repl *r = fsm->data;
    *bufs = NULL;
    *n_bufs = 0;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/snapshot-%" PRIu64, r->tmp_dir, r->snap.index);
    unlink(path);
    char *msg = NULL;
    int rc = r->ops->snapshot_write(r->ctx, r->snap.owner, path, &msg);
    struct raft_buffer *b = NULL;
    if (rc == 0) {
        b = malloc(sizeof *b);
        rc = b == NULL ? dfs_seterr(&msg, DFS_ENOMEM, "out of memory")
                       : load_snapshot_file(path, r->snap.index, b, &msg);
    }
    unlink(path);
    if (rc != 0) {
        dfs_log(DFS_LOG_WARN,
                "replication: snapshot failed id=%" PRIu64 " index=%" PRIu64 " err=\"%s\"", r->id,
                r->snap.index, msg ? msg : dfs_strerror(rc));
        free(msg);
        free(b);
        return RAFT_IOERR;
    }
    r->snap.written = true;
    r->snap.bytes = b->len;
    *bufs = b;
    *n_bufs = 1;
    return 0;
}

/* Back on the replication thread once libraft stored the snapshot (or gave up). */
static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    dfs_repl *r = fsm->data;
    if (*bufs != NULL) {
        for (unsigned i = 0; i < *n_bufs; i++)
            free((*bufs)[i].base);
        free(*bufs);
    }
    *bufs = NULL;
    *n_bufs = 0;
    if (!r->snap.active)
        return 0;
    r->ops->snapshot_release(r->ctx, r->snap.owner);
    if (r->snap.written) {
        r->snapshots_taken++;
        r->snapshot_index = r->snap.index;
        r->snapshot_bytes = r->snap.bytes;
        dfs_log(DFS_LOG_INFO,
                "replication: snapshot taken id=%" PRIu64 " index=%" PRIu64 " bytes=%" PRIu64
                " ms=%.1f",
                r->id, r->snap.index, r->snap.bytes,
                (double)(dfs_clock_mono_ns() - r->snap.start_ns) / 1e6);
    }
    r->snap = (struct snap){0};
    return 0;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return errno;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

/*
 * Install a snapshot (from the leader, or the latest one at start). On success libraft hands the
 * buffer over (we free it); on failure it keeps and frees it.
 */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    dfs_repl *r = fsm->data;
    const unsigned char *p = buf->base;
    if (buf->len < SNAP_HEADER || memcmp(p, SNAP_MAGIC, 8) != 0 ||
        get_u64(p + 16) != buf->len - SNAP_HEADER ||
        get_u32(p + 24) != dfs_crc32c(0, p + SNAP_HEADER, buf->len - SNAP_HEADER)) {
        dfs_log(DFS_LOG_ERROR,
                "replication: snapshot rejected id=%" PRIu64
                " err=\"bad header or checksum\" bytes=%zu",
                r->id, buf->len);
        return RAFT_CORRUPT;
    }
    uint64_t index = get_u64(p + 8);
    if (index <= r->state_index) {
        /* The owner's state already holds everything the snapshot does. */
        raft_free(buf->base);
        return 0;
    }
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/restore-%" PRIu64, r->tmp_dir, index);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int err = fd < 0 ? errno : write_all(fd, p + SNAP_HEADER, buf->len - SNAP_HEADER);
    if (fd >= 0 && close(fd) != 0 && err == 0)
        err = errno;
    char *msg = NULL;
    int rc = err != 0 ? dfs_seterr_errno(&msg, DFS_EIO, err, "write %s", path)
                      : r->ops->restore(r->ctx, index, path, &msg);
    unlink(path);
    if (rc != 0) {
        char why[512];
        snprintf(why, sizeof why, "restore of the snapshot at %" PRIu64 " failed: %s", index,
                 msg ? msg : dfs_strerror(rc));
        fail_stop(r, why);
        free(msg);
        return RAFT_IOERR;
    }
    free(msg);
    r->state_index = index;
    r->snapshots_restored++;
    r->snapshot_index = index;
    r->snapshot_bytes = buf->len;
    dfs_log(DFS_LOG_INFO,
            "replication: snapshot installed id=%" PRIu64 " index=%" PRIu64 " bytes=%zu", r->id,
            index, buf->len);
    raft_free(buf->base);
    return 0;
}

/* ---- the loop ---- */

static enum dfs_repl_role role_of(dfs_repl *r)
{
    if (r->failed)
        return DFS_REPL_FAILED;
    if (!r->raft_live)
        return DFS_REPL_UNAVAILABLE;
    switch (raft_state(&r->raft)) {
    case RAFT_FOLLOWER:
        return DFS_REPL_FOLLOWER;
    case RAFT_CANDIDATE:
        return DFS_REPL_CANDIDATE;
    case RAFT_LEADER:
        return raft_leads(r) ? DFS_REPL_LEADER : DFS_REPL_FOLLOWER; /* stepping down */
    default:
        return DFS_REPL_UNAVAILABLE;
    }
}

/*
 * Refresh the status (and what depends on the role): a new leader appends its leadership
 * barrier, a replica that stopped leading is no longer ready. Calls on_change when role,
 * readiness, leader or term changed.
 */
static void publish(dfs_repl *r, bool force)
{
    int64_t now = dfs_clock_mono_ns();
    if (!force && now - r->last_publish_ns < 1000000)
        return;
    r->last_publish_ns = now;
    enum dfs_repl_role role = role_of(r);
    if (role != DFS_REPL_LEADER || r->raft.current_term != r->ready_term)
        r->ready = false;
    if (role == DFS_REPL_LEADER && !r->ready && !r->leadership_barrier_inflight && !r->stopping)
        submit_barrier(r, true);

    struct dfs_repl_status *st = &r->st;
    st->role = role;
    st->leader_ready = r->ready;
    st->leader_id = known_leader(r, st->leader_address);
    st->term = r->raft_live ? r->raft.current_term : st->term;
    if (r->raft_live) {
        st->last_index = raft_last_index(&r->raft);
        st->commit_index = r->raft.commit_index;
        st->applied_index = raft_last_applied(&r->raft);
        const struct raft_configuration *conf = &r->raft.configuration;
        bool lead = raft_leads(r);
        st->n_members = 0;
        for (unsigned i = 0; i < conf->n && st->n_members < DFS_REPL_MEMBERS_MAX; i++) {
            struct dfs_repl_member_status *m = &st->members[st->n_members++];
            m->id = conf->servers[i].id;
            snprintf(m->address, sizeof m->address, "%s", conf->servers[i].address);
            m->role = conf->servers[i].role == RAFT_VOTER     ? DFS_REPL_VOTER
                      : conf->servers[i].role == RAFT_STANDBY ? DFS_REPL_STANDBY
                                                              : DFS_REPL_SPARE;
            m->leader = m->id == st->leader_id;
            m->match_index = lead ? r->raft.leader_state.progress[i].match_index : 0;
        }
    }
    if (role == DFS_REPL_LEADER) {
        st->leader_commit = st->commit_index;
        st->leader_heard_ns = now;
    } else {
        st->leader_commit = r->heard_commit;
        st->leader_heard_ns = r->heard_ns;
    }
    st->state_index = r->state_index;
    st->snapshot_index = r->snapshot_index;
    st->snapshot_bytes = r->snapshot_bytes;
    st->snapshots_taken = r->snapshots_taken;
    st->snapshots_restored = r->snapshots_restored;
    st->entries_proposed = r->entries_proposed;
    st->commands_proposed = r->commands_proposed;
    snprintf(st->failure, sizeof st->failure, "%s", r->failure);

    bool changed = (int)role != r->seen_role || st->term != r->seen_term ||
                   st->leader_id != r->seen_leader || r->ready != r->seen_ready;
    if (st->leader_id != r->seen_leader && st->leader_id != 0)
        r->leader_changes++;
    st->leader_changes = r->leader_changes;
    r->seen_role = (int)role;
    r->seen_term = st->term;
    r->seen_leader = st->leader_id;
    r->seen_ready = r->ready;

    pthread_mutex_lock(&r->mu);
    r->shared = *st;
    pthread_mutex_unlock(&r->mu);
    if (changed && r->ops->on_change != NULL)
        r->ops->on_change(r->ctx, st);
}

/*
 * Every message libraft receives passes here first. An AppendEntries (heartbeats included) of
 * this replica's term or a newer one comes from the leader of that term: keep the commit index it
 * carries and when it came, which a follower's own commit index does not tell (libraft caps that
 * at the last entry it stored, so a follower far behind cannot see how far). Written into the
 * shared status at once too: an apply that takes long holds back publish(), not this.
 */
static void io_recv(struct raft_io *io, struct raft_message *msg)
{
    dfs_repl *r = (dfs_repl *)((char *)io - offsetof(dfs_repl, io));
    if (msg->type == RAFT_IO_APPEND_ENTRIES && msg->append_entries.term >= r->raft.current_term) {
        r->heard_commit = msg->append_entries.leader_commit;
        r->heard_ns = dfs_clock_mono_ns();
        if (raft_state(&r->raft) != RAFT_LEADER) {
            pthread_mutex_lock(&r->mu);
            r->shared.leader_commit = r->heard_commit;
            r->shared.leader_heard_ns = r->heard_ns;
            pthread_mutex_unlock(&r->mu);
        }
    }
    r->raft_recv(io, msg);
}

static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    dfs_repl *r = (dfs_repl *)((char *)io - offsetof(dfs_repl, io));
    r->raft_recv = recv;
    return r->io_start(io, msecs, tick, io_recv);
}

static void close_handles(dfs_repl *r)
{
    if (!r->handles_open)
        return;
    r->handles_open = false;
    uv_close((uv_handle_t *)&r->wake, NULL);
    uv_close((uv_handle_t *)&r->timer, NULL);
    uv_close((uv_handle_t *)&r->check, NULL);
}

/* Whatever libraft left unanswered once it is closed (it answers its requests while closing). */
static void answer_leftovers(dfs_repl *r)
{
    while (r->inflight_head != NULL) {
        struct entry *e = r->inflight_head;
        entry_done(e, RAFT_SHUTDOWN);
    }
    if (r->change != NULL)
        change_end(r->change, r->failed ? DFS_REPL_STOPPED : DFS_REPL_SHUTDOWN, true, NULL);
}

static void raft_closed_cb(struct raft *raft)
{
    dfs_repl *r = raft->data;
    r->raft_closed = true;
    answer_leftovers(r);
    publish(r, true);
    maybe_close_raft(r);
}

/*
 * Close libraft once the replica stops or fails and nothing of ours runs inside it (a snapshot on
 * a worker thread); when stopping, close the loop's handles once libraft has closed.
 */
static void maybe_close_raft(dfs_repl *r)
{
    if (!(r->stopping || r->failed))
        return;
    if (r->raft_live && !r->closing_raft && !r->snap.active) {
        r->closing_raft = true;
        pump(r);
        raft_close(&r->raft, raft_closed_cb);
        r->raft_live = false;
    }
    if (r->stopping && !r->raft_live && (!r->closing_raft || r->raft_closed))
        close_handles(r);
}

static void take_incoming(dfs_repl *r)
{
    pthread_mutex_lock(&r->mu);
    struct req *q = r->in_head;
    r->in_head = r->in_tail = NULL;
    if (r->refuse)
        r->stopping = true;
    pthread_mutex_unlock(&r->mu);
    while (q != NULL) {
        struct req *next = q->next;
        q->next = NULL;
        switch (q->kind) {
        case REQ_PROPOSE:
            push(&r->waiting_head, &r->waiting_tail, q);
            break;
        case REQ_READ:
            push(&r->reads_head, &r->reads_tail, q);
            break;
        default:
            if (r->stopping)
                finish(r, q, DFS_REPL_SHUTDOWN, false, 0, NULL, NULL);
            else
                start_change(r, q);
            break;
        }
        q = next;
    }
}

static void wake_cb(uv_async_t *h)
{
    dfs_repl *r = h->data;
    take_incoming(r);
    pump(r);
    maybe_close_raft(r);
}

/* Answer what waited past its deadline. */
static void expire(dfs_repl *r, int64_t now)
{
    struct req **pp = &r->waiting_head;
    r->waiting_tail = NULL;
    while (*pp != NULL) {
        struct req *q = *pp;
        if (q->deadline_ns <= now) {
            *pp = q->next;
            finish(r, q, DFS_REPL_TIMEOUT, false, 0, NULL,
                   "deadline passed before the command was appended (it will not be applied)");
        } else {
            r->waiting_tail = q;
            pp = &q->next;
        }
    }
    pp = &r->reads_head;
    r->reads_tail = NULL;
    while (*pp != NULL) {
        struct req *q = *pp;
        if (q->deadline_ns <= now) {
            *pp = q->next;
            finish(r, q, DFS_REPL_TIMEOUT, false, 0, NULL, NULL);
        } else {
            r->reads_tail = q;
            pp = &q->next;
        }
    }
    for (struct entry *e = r->inflight_head; e != NULL; e = e->next) {
        for (size_t i = 0; i < e->n_cmds; i++) {
            if (e->cmds[i] != NULL && e->cmds[i]->deadline_ns <= now) {
                finish(r, e->cmds[i], DFS_REPL_TIMEOUT, true, 0, NULL,
                       "deadline passed after the command was appended (it may still be applied)");
                e->cmds[i] = NULL;
            }
        }
        for (size_t i = 0; i < e->n_reads; i++) {
            if (e->reads[i] != NULL && e->reads[i]->deadline_ns <= now) {
                finish(r, e->reads[i], DFS_REPL_TIMEOUT, false, 0, NULL, NULL);
                e->reads[i] = NULL;
            }
        }
    }
    if (r->change != NULL && r->change->req != NULL && r->change->req->deadline_ns <= now)
        change_answer(r->change, DFS_REPL_TIMEOUT, true,
                      "deadline passed; the membership change may still complete");
}

static void timer_cb(uv_timer_t *h)
{
    dfs_repl *r = h->data;
    expire(r, dfs_clock_mono_ns());
    publish(r, true);
    pump(r);
    maybe_close_raft(r);
}

static void check_cb(uv_check_t *h)
{
    dfs_repl *r = h->data;
    publish(r, false);
    maybe_close_raft(r);
}

static void *loop_main(void *arg)
{
    dfs_repl *r = arg;
    uv_run(&r->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- create / destroy ---- */

static int make_dir(const char *path, char **errmsg)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return dfs_seterr_errno(errmsg, DFS_EIO, errno, "mkdir %s", path);
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return dfs_seterr(errmsg, DFS_EIO, "%s is not a directory", path);
    return 0;
}

/* Remove what an interrupted snapshot or restore left in dir/tmp. */
static void sweep_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    char path[PATH_MAX + 300];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
}

static int check_options(const struct dfs_repl_options *o, char **errmsg)
{
    if (o == NULL || o->ops == NULL || o->ops->apply == NULL || o->ops->snapshot_prepare == NULL ||
        o->ops->snapshot_write == NULL || o->ops->snapshot_release == NULL ||
        o->ops->restore == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "replication: options and all ops are required");
    if (o->id == 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "replication: the replica id must be > 0");
    if (o->address == NULL || o->address[0] == '\0' || strlen(o->address) >= DFS_REPL_ADDRESS_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "replication: a replica address (host:port) is "
                          "required, shorter than %d bytes",
                          DFS_REPL_ADDRESS_MAX);
    if (o->dir == NULL || o->dir[0] == '\0' || strlen(o->dir) > PATH_MAX - 16)
        return dfs_seterr(errmsg, DFS_EINVAL, "replication: a directory is required");
    if (o->n_members > DFS_REPL_MEMBERS_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "replication: at most %d members",
                          DFS_REPL_MEMBERS_MAX);
    bool self = o->n_members == 0;
    for (size_t i = 0; i < o->n_members; i++) {
        const struct dfs_repl_member *m = &o->members[i];
        if (m->id == 0 || m->address == NULL || m->address[0] == '\0' ||
            strlen(m->address) >= DFS_REPL_ADDRESS_MAX)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "replication: member %zu needs an id > 0 and "
                              "an address",
                              i);
        for (size_t j = 0; j < i; j++)
            if (o->members[j].id == m->id || strcmp(o->members[j].address, m->address) == 0)
                return dfs_seterr(errmsg, DFS_EINVAL,
                                  "replication: members %zu and %zu share an id or address", j, i);
        if (m->id == o->id) {
            if (strcmp(m->address, o->address) != 0)
                return dfs_seterr(errmsg, DFS_EINVAL,
                                  "replication: member %" PRIu64 " is listed at %s, not %s", m->id,
                                  m->address, o->address);
            self = true;
        }
    }
    if (!self)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "replication: the members of a new cluster must include this replica");
    if (o->heartbeat_ms != 0 && o->election_timeout_ms != 0 &&
        o->heartbeat_ms >= o->election_timeout_ms)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "replication: the heartbeat must be shorter than the election timeout");
    return 0;
}

/* Close a libraft that was initialised on this thread, before the loop thread exists. */
static void close_raft_here(dfs_repl *r, bool raft_inited)
{
    if (raft_inited) {
        r->raft_live = false;
        raft_close(&r->raft, NULL);
    }
    if (r->handles_open)
        close_handles(r);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    raft_uv_close(&r->io);
    dfs_raft_transport_close(&r->transport);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_loop_close(&r->loop);
}

int dfs_repl_create(const struct dfs_repl_options *opts, dfs_repl **out, char **errmsg)
{
    *out = NULL;
    int rc = check_options(opts, errmsg);
    if (rc != 0)
        return rc;
    dfs_repl *r = calloc(1, sizeof *r);
    if (r == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "replication: out of memory");
    r->id = opts->id;
    snprintf(r->address, sizeof r->address, "%s", opts->address);
    snprintf(r->bind_address, sizeof r->bind_address, "%s",
             opts->bind_address != NULL ? opts->bind_address : "");
    snprintf(r->raft_dir, sizeof r->raft_dir, "%s/raft", opts->dir);
    snprintf(r->tmp_dir, sizeof r->tmp_dir, "%s/tmp", opts->dir);
    r->election_timeout_ms = opts->election_timeout_ms ? opts->election_timeout_ms : 1000;
    r->heartbeat_ms = opts->heartbeat_ms ? opts->heartbeat_ms : r->election_timeout_ms / 10;
    if (r->heartbeat_ms == 0)
        r->heartbeat_ms = 1;
    r->max_batch_commands = opts->max_batch_commands ? opts->max_batch_commands : 4096;
    r->max_batch_bytes = opts->max_batch_bytes ? opts->max_batch_bytes : (1u << 20);
    r->max_inflight = opts->max_inflight_entries ? opts->max_inflight_entries : 2;
    r->ops = opts->ops;
    r->ctx = opts->ctx;
    r->state_index = opts->applied_index;
    r->seen_role = -1;
    pthread_mutex_init(&r->mu, NULL);

    if ((rc = make_dir(opts->dir, errmsg)) != 0 || (rc = make_dir(r->raft_dir, errmsg)) != 0 ||
        (rc = make_dir(r->tmp_dir, errmsg)) != 0) {
        pthread_mutex_destroy(&r->mu);
        free(r);
        return rc;
    }
    sweep_tmp(r->tmp_dir);

    if (uv_loop_init(&r->loop) != 0) {
        pthread_mutex_destroy(&r->mu);
        free(r);
        return dfs_seterr(errmsg, DFS_EIO, "replication: uv_loop_init failed");
    }
    int rv = dfs_raft_transport_init(&r->transport, &r->loop, r->address,
                                     r->bind_address[0] != '\0' ? r->bind_address : NULL);
    if (rv != 0) {
        uv_loop_close(&r->loop);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return dfs_seterr(errmsg, DFS_ENOMEM, "replication: transport: %s", raft_strerror(rv));
    }
    rv = raft_uv_init(&r->io, &r->loop, r->raft_dir, &r->transport);
    if (rv != 0) {
        rc = dfs_seterr(errmsg, DFS_EIO, "replication: %s: %s", r->raft_dir,
                        r->io.errmsg[0] ? r->io.errmsg : raft_strerror(rv));
        dfs_raft_transport_close(&r->transport);
        uv_run(&r->loop, UV_RUN_DEFAULT);
        uv_loop_close(&r->loop);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return rc;
    }
    /* libraft 0.15's uv backend implements async_work (run on libuv's thread pool) but reports
       io version 1, and raft_init refuses version-3 (async) snapshots with a version-1 io. */
    if (r->io.version < 2 && r->io.async_work != NULL)
        r->io.version = 2;
    /* A segment that does not load must stop the start, not be renamed aside with the committed
       entries in it (a replica that forgets what it acknowledged breaks Raft's guarantees). */
    raft_uv_set_auto_recovery(&r->io, false);
    r->io_start = r->io.start;
    r->io.start = io_start;
    /* Reconnect to a restarted peer quickly (libraft's default is 1 s). */
    raft_uv_set_connect_retry_delay(&r->io, r->heartbeat_ms < 20 ? 20 : r->heartbeat_ms);
    if (opts->segment_bytes > 0)
        raft_uv_set_segment_size(&r->io, opts->segment_bytes);

    r->fsm.version = 3;
    r->fsm.data = r;
    r->fsm.apply = fsm_apply;
    r->fsm.snapshot = fsm_snapshot;
    r->fsm.restore = fsm_restore;
    r->fsm.snapshot_finalize = fsm_snapshot_finalize;
    r->fsm.snapshot_async = fsm_snapshot_async;
    rv = raft_init(&r->raft, &r->io, &r->fsm, r->id, r->address);
    if (rv != 0) {
        rc = dfs_seterr(errmsg, DFS_EIO, "replication: raft_init: %s", raft_errmsg(&r->raft));
        close_raft_here(r, false);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return rc;
    }
    r->raft.data = r;
    raft_set_election_timeout(&r->raft, r->election_timeout_ms);
    raft_set_heartbeat_timeout(&r->raft, r->heartbeat_ms);
    /* Without pre-vote, libraft 0.15 followers that still know a leader refuse the first
       candidate, and a failover takes two election rounds. */
    raft_set_pre_vote(&r->raft, true);
    raft_set_snapshot_threshold(&r->raft,
                                opts->snapshot_threshold ? opts->snapshot_threshold : 1024);
    raft_set_snapshot_trailing(&r->raft, opts->snapshot_trailing ? opts->snapshot_trailing : 128);

    if (opts->n_members > 0) {
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        rv = 0;
        for (size_t i = 0; i < opts->n_members && rv == 0; i++)
            rv = raft_configuration_add(&conf, opts->members[i].id, opts->members[i].address,
                                        RAFT_VOTER);
        if (rv == 0)
            rv = raft_bootstrap(&r->raft, &conf);
        raft_configuration_close(&conf);
        if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) { /* CANTBOOTSTRAP: the log exists already */
            rc = dfs_seterr(errmsg, DFS_EIO, "replication: bootstrap: %s",
                            raft_errmsg(&r->raft)[0] ? raft_errmsg(&r->raft) : raft_strerror(rv));
            close_raft_here(r, true);
            pthread_mutex_destroy(&r->mu);
            free(r);
            return rc;
        }
    }

    r->raft_live = true; /* raft_start may apply and restore already */
    rv = raft_start(&r->raft);
    if (rv != 0 || r->failed) {
        rc = r->failed
                 ? dfs_seterr(errmsg, DFS_EIO, "replication: %s", r->failure)
                 : dfs_seterr(errmsg, DFS_EIO, "replication: start %s: %s", r->address,
                              raft_errmsg(&r->raft)[0] ? raft_errmsg(&r->raft) : raft_strerror(rv));
        close_raft_here(r, true);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return rc;
    }
    if (r->state_index > raft_last_index(&r->raft)) {
        rc = dfs_seterr(errmsg, DFS_EPRECOND,
                        "replication: the state's applied index %" PRIu64
                        " is past the end of the log in %s (%" PRIu64
                        "): that log does not belong to this state",
                        r->state_index, r->raft_dir, (uint64_t)raft_last_index(&r->raft));
        close_raft_here(r, true);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return rc;
    }

    uv_async_init(&r->loop, &r->wake, wake_cb);
    r->wake.data = r;
    uv_timer_init(&r->loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, timer_cb, TIMER_MS, TIMER_MS);
    uv_check_init(&r->loop, &r->check);
    r->check.data = r;
    uv_check_start(&r->check, check_cb);
    r->handles_open = true;
    r->st.id = r->id;
    snprintf(r->st.address, sizeof r->st.address, "%s", r->address);
    publish(r, true);

    /* The replication thread starts with SIGPIPE blocked (threads inherit the mask): a write to
       a peer that died fails with EPIPE instead of killing the process. */
    sigset_t pipe, old;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old);
    int perr = pthread_create(&r->thread, NULL, loop_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (perr != 0) {
        rc = dfs_seterr_errno(errmsg, DFS_ENOMEM, perr, "replication: thread");
        r->stopping = true;
        close_raft_here(r, true);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return rc;
    }
    r->thread_started = true;
    *out = r;
    return 0;
}

void dfs_repl_destroy(dfs_repl *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->refuse = true;
    pthread_mutex_unlock(&r->mu);
    uv_async_send(&r->wake);
    pthread_join(r->thread, NULL);
    /* The loop ran dry: libraft closed, every request answered, every handle closed. */
    raft_uv_close(&r->io);
    dfs_raft_transport_close(&r->transport);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&r->loop) != 0)
        dfs_log(DFS_LOG_WARN, "replication: loop still had handles at close id=%" PRIu64, r->id);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* ---- calls from any thread ---- */

static int submit(dfs_repl *r, struct req *q, int64_t timeout_ms)
{
    if (timeout_ms > 86400000)
        timeout_ms = 86400000;
    q->deadline_ns = dfs_clock_mono_ns() + timeout_ms * 1000000;
    pthread_mutex_lock(&r->mu);
    if (r->refuse) {
        pthread_mutex_unlock(&r->mu);
        free_req(q);
        return DFS_EUNAVAIL;
    }
    q->next = NULL;
    if (r->in_tail != NULL)
        r->in_tail->next = q;
    else
        r->in_head = q;
    r->in_tail = q;
    pthread_mutex_unlock(&r->mu);
    uv_async_send(&r->wake);
    return 0;
}

static struct req *new_req(enum req_kind kind, dfs_repl_done_fn done, void *arg)
{
    struct req *q = calloc(1, sizeof *q);
    if (q == NULL)
        return NULL;
    q->kind = kind;
    q->done = done;
    q->arg = arg;
    return q;
}

int dfs_repl_propose(dfs_repl *r, const void *cmd, size_t len, int64_t timeout_ms,
                     dfs_repl_done_fn done, void *arg)
{
    if (r == NULL || cmd == NULL || len == 0 || len > DFS_REPL_COMMAND_MAX || done == NULL ||
        timeout_ms <= 0)
        return DFS_EINVAL;
    struct req *q = new_req(REQ_PROPOSE, done, arg);
    if (q == NULL || (q->cmd = malloc(len)) == NULL) {
        free(q);
        return DFS_ENOMEM;
    }
    memcpy(q->cmd, cmd, len);
    q->len = len;
    return submit(r, q, timeout_ms);
}

int dfs_repl_barrier(dfs_repl *r, int64_t timeout_ms, dfs_repl_done_fn done, void *arg)
{
    if (r == NULL || done == NULL || timeout_ms <= 0)
        return DFS_EINVAL;
    struct req *q = new_req(REQ_READ, done, arg);
    if (q == NULL)
        return DFS_ENOMEM;
    return submit(r, q, timeout_ms);
}

int dfs_repl_add(dfs_repl *r, uint64_t id, const char *address, int64_t timeout_ms,
                 dfs_repl_done_fn done, void *arg)
{
    if (r == NULL || id == 0 || address == NULL || address[0] == '\0' ||
        strlen(address) >= DFS_REPL_ADDRESS_MAX || done == NULL || timeout_ms <= 0)
        return DFS_EINVAL;
    struct req *q = new_req(REQ_ADD, done, arg);
    if (q == NULL || (q->address = strdup(address)) == NULL) {
        free(q);
        return DFS_ENOMEM;
    }
    q->id = id;
    return submit(r, q, timeout_ms);
}

int dfs_repl_remove(dfs_repl *r, uint64_t id, int64_t timeout_ms, dfs_repl_done_fn done, void *arg)
{
    if (r == NULL || id == 0 || done == NULL || timeout_ms <= 0)
        return DFS_EINVAL;
    struct req *q = new_req(REQ_REMOVE, done, arg);
    if (q == NULL)
        return DFS_ENOMEM;
    q->id = id;
    return submit(r, q, timeout_ms);
}

int dfs_repl_transfer(dfs_repl *r, uint64_t id, int64_t timeout_ms, dfs_repl_done_fn done,
                      void *arg)
{
    if (r == NULL || done == NULL || timeout_ms <= 0)
        return DFS_EINVAL;
    struct req *q = new_req(REQ_TRANSFER, done, arg);
    if (q == NULL)
        return DFS_ENOMEM;
    q->id = id;
    return submit(r, q, timeout_ms);
}

void dfs_repl_status_get(dfs_repl *r, struct dfs_repl_status *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->shared;
    pthread_mutex_unlock(&r->mu);
}

bool dfs_repl_caught_up(const struct dfs_repl_status *st, uint64_t max_lag, int64_t max_silence_ms,
                        int64_t now_ns, char *why, size_t why_len)
{
    if (why != NULL && why_len > 0)
        why[0] = '\0';
    if (st->role == DFS_REPL_LEADER) {
        if (!st->leader_ready && why != NULL)
            snprintf(why, why_len, "leader, its first entry of term %" PRIu64 " not yet applied",
                     st->term);
        return st->leader_ready;
    }
    if (st->role != DFS_REPL_FOLLOWER || st->leader_id == 0) {
        if (why != NULL)
            snprintf(why, why_len, "replica %s, no leader known", dfs_repl_role_name(st->role));
        return false;
    }
    if (st->leader_heard_ns == 0) {
        if (why != NULL)
            snprintf(why, why_len, "follower, nothing heard from the leader yet");
        return false;
    }
    int64_t silent_ms = (now_ns - st->leader_heard_ns) / 1000000;
    if (silent_ms > max_silence_ms) {
        if (why != NULL)
            snprintf(why, why_len, "follower, nothing heard from the leader for %" PRId64 " ms",
                     silent_ms);
        return false;
    }
    if (st->applied_index + max_lag < st->leader_commit) {
        if (why != NULL)
            snprintf(why, why_len,
                     "follower catching up: applied index %" PRIu64
                     ", the leader's commit index %" PRIu64,
                     st->applied_index, st->leader_commit);
        return false;
    }
    return true;
}
