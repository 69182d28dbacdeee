/*
 * dfs get: fetch a file in 4 MiB ranges, in file order, a window of them in flight across every copy
 * of every fragment; check every block as it arrives, every fragment's checksum, and the whole
 * file's SHA-256 while the data comes in.
 *
 * Why ranges in file order rather than one stream per fragment: the SHA-256 can only follow the
 * contiguous beginning of the file, so data arriving in order lets hashing run beside the transfer
 * instead of after it; and spreading a fragment's ranges over all its copies puts every node to
 * work, not one per fragment.
 *
 * Throttled (--throttle: every link has its own rate), the links are what limits the transfer,
 * and file order would keep only the few links holding the first fragments busy: a window of
 * ranges from fragment 0 waits on fragment 0's links while the others idle. So then each link is a
 * lane that pulls its own ranges: whenever a link is out of debt and has fewer than LANE_DEPTH
 * ranges in flight, it takes the next range of the fragment (among those it holds a good copy of)
 * with the most bytes left to start per good copy. Every link stays busy from the first request to
 * its last, a fragment's bytes spread over its copies, and a link that runs ahead takes over work
 * from the busy ones: the busiest link carries at most its share of an even spread (the model of
 * benchmarks/transfer_model). Hashing then mostly happens once the last ranges are in, which at
 * throttled rates is a small part of the time.
 */
#include "client/get.h"

#include "client/chunkio.h"
#include "client/drain.h"
#include "client/fetch.h"
#include "client/links.h"
#include "client/segments.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/rng.h"
#include "dfs/v1/metadata.pb-c.h"
#include "dfs/v1/storage.pb-c.h"
#include "services/rpc/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

struct get_job;

/*
 * Bytes asked for per GetFragment call (unthrottled), and the most calls in flight at once (the
 * default window is 12, --parallel changes it).
 */
#define RANGE          (4u << 20)
#define WINDOW         64
#define DEFAULT_WINDOW 12

/*
 * Streaming to a descriptor: a range is not started while it begins this far or more past what the
 * drain has sent, so a slow reader holds the fetchers back and the scratch file stays small.
 */
#define AHEAD (64u << 20)

/* Throttled: ranges one link may have in flight (or waiting for its turn) at once. */
#define LANE_DEPTH 2

/* Copies one fragment may have (from the layout, and from layouts fetched again). */
#define COPIES_MAX 64

/* What the client knows and learns about one fragment. */
struct frag_state {
    const Dfs__V1__Fragment *frag;
    /* Its copies, by copy index: the layout's, then any a refreshed layout added (borrowed from
       job->file or job->extra). */
    const Dfs__V1__Replica *reps[COPIES_MAX];
    size_t nreps;
    uint64_t start; /* offset of the fragment in the file */
    uint32_t *crcs; /* its block CRCs as they arrive, to check the fragment checksum at the end */
    size_t nblocks;
    size_t order[COPIES_MAX]; /* copies, best first (alive nodes, in random order) */
    size_t norder;
    size_t cursor;           /* round robin over `order` */
    size_t lane[COPIES_MAX]; /* by copy index: its link's lane (throttled) */
    size_t first;            /* its ranges are [first, last) of job->ranges */
    size_t next, last;       /* [next, last): not yet started (throttled) */
    uint64_t unstarted;      /* bytes of those */
    bool bad[COPIES_MAX];    /* by copy index: failed once, used no more */
    bool whole;              /* every block is fetched: the fragment checksum can be checked */
    /* Read again whole from one copy (see verify_whole): that copy's index, else -1; and
       whether that copy failed on the way. */
    int only;
    bool only_failed;
    char *failures; /* "node (addr): why; ..." for the final error */
};

/* A copy found damaged, to report to the metadata service (ReportDamage) at the end. */
struct damage_seen {
    const Dfs__V1__Replica *rep; /* borrowed from the layouts */
    int damage;                  /* dfs.v1.Damage number */
    char detail[256];
};

/* dfs.v1.Damage numbers. */
enum { DAMAGE_NONE = 0, DAMAGE_CORRUPT = 1, DAMAGE_WRONG_CHECKSUM = 2, DAMAGE_MISSING = 3 };

/* Layouts fetched again when a fragment ran out of copies, per get at most. */
#define REFRESH_MAX 3

/* A range of one fragment, fetched front to back. */
struct range {
    uint32_t frag;
    uint64_t off, len; /* in the fragment */
};

/* A slot of the window: one range being fetched from one copy. */
struct fetch {
    struct get_job *job;
    size_t range;
    uint64_t got; /* bytes of the range written */
    size_t copy;  /* replica index in use */
    dfs_link *link;
    dfs_rpc_ccall *call;
    dfs_rpc_timer stall;
    dfs_rpc_timer pace; /* waiting for bandwidth before starting the next request */
    bool deferred;      /* the pace timer will start the call (counted in job->running) */
    int pending_code;
    /* A local reason to drop the copy (bad CRC), reported instead of CANCELLED. */
    char *pending_msg;
    int pending_damage; /* what the local reason says of the copy (DAMAGE_*) */
};

/* Throttled: one client<->node link and the work it pulls (see the top of the file). */
struct lane {
    struct get_job *job;
    dfs_link *link;
    dfs_rpc_timer pace; /* armed while the link is in debt and could take a range */
    bool armed;
};

struct get_job {
    dfs_meta *meta;
    dfs_rpc_pool *channels;                       /* borrowed; NULL: the links' own */
    const struct dfs_rpc_link_security *security; /* borrowed: the links' own channels' */
    const struct dfs_client_get_opts *opts;
    dfs_rpc_loop *loop;
    dfs_links *links;
    int fd;
    Dfs__V1__FileInfo *file;
    struct frag_state *frags;
    struct range *ranges;
    size_t nranges, next_range, ranges_done;
    struct fetch fetches[WINDOW];
    size_t window;         /* slots in use: min(--parallel or 12, WINDOW) */
    uint64_t range;        /* bytes per range request */
    dfs_bucket global;     /* --max-rate */
    uint64_t written;      /* file bytes written, for progress */
    bool *done;            /* by range: in the part file and checked (resume state) */
    size_t *range_copy;    /* by range: the copy that delivered it (its last bytes) */
    uint64_t resumed;      /* bytes found already downloaded by --resume */
    uint64_t resume_range; /* the range size of the download --resume continues */
    bool erasure;
    size_t running;
    struct lane *lanes; /* throttled: by link; NULL when ranges go in file order */
    size_t nlanes, caplanes, lane_cursor, armed;
    uint32_t failovers;
    uint64_t rebuilt;
    int error;
    char *errmsg;
    dfs_filehash *hash; /* follows the output; regions are the ranges (not when streaming) */
    /* Streaming (dfs_get_fd): bytes [from, to) of the file go to out_fd through the drain. A
       get to a file fetches all of it: from = 0, to = size, out_fd = -1, drain = NULL. */
    uint64_t from, to;
    int out_fd;
    dfs_drain *drain;
    struct dfs_get_chunk
        chunk;        /* scratch for parsing one message (the loop handles one at a time) */
    size_t end_range; /* ranges in file order are started up to here (all but a redo: nranges) */
    /* Layouts fetched again (a fragment ran out of copies: the catalog moved them), kept for
       the copies they added; freed with the job. */
    Dfs__V1__FileInfo **extra;
    size_t nextra;
    int refreshes;
    /* Damaged copies seen, reported at the end. */
    struct damage_seen *damages;
    size_t ndamages;
};

static int64_t stall_ms(const struct get_job *job)
{
    return job->opts->stall_timeout_ms > 0 ? job->opts->stall_timeout_ms : 60000;
}

static void fail_job(struct get_job *job, int code, char *msg)
{
    if (job->error == DFS_OK) {
        job->error = code;
        job->errmsg = msg;
        msg = NULL;
        for (size_t i = 0; i < WINDOW; i++)
            if (job->fetches[i].call != NULL)
                dfs_rpc_ccall_cancel(job->fetches[i].call);
    }
    free(msg);
}

static void stall_fired(dfs_rpc_timer *t)
{
    struct fetch *f = (struct fetch *)((char *)t - offsetof(struct fetch, stall));
    if (f->call != NULL)
        dfs_rpc_ccall_cancel_with(f->call, DFS_ETIMEDOUT, "no progress");
}

static void progress(struct fetch *f)
{
    dfs_rpc_loop_timer_arm(f->job->loop, &f->stall,
                           dfs_clock_mono_ns() + stall_ms(f->job) * 1000000);
}

/* Give up on the current copy for a local reason (damage: what it says of the copy); the call's
   end reports it. */
static void reject_copy(struct fetch *f, int code, int damage, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reject_copy(struct fetch *f, int code, int damage, const char *fmt, ...)
{
    if (f->pending_msg == NULL) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&f->pending_msg, fmt, ap) < 0)
            f->pending_msg = NULL;
        va_end(ap);
        f->pending_code = code;
        f->pending_damage = damage;
    }
    dfs_rpc_ccall_cancel_with(f->call, code, f->pending_msg != NULL ? f->pending_msg : "rejected");
}

static void chunk_received(dfs_rpc_ccall *call, void *arg, grpc_byte_buffer *bb, int status)
{
    (void)status;
    struct fetch *f = arg;
    struct get_job *job = f->job;
    if (bb == NULL)
        return; /* end of stream or failure: the call's status follows */
    if (job->error != DFS_OK) {
        grpc_byte_buffer_destroy(bb);
        return;
    }
    const struct range *r = &job->ranges[f->range];
    struct frag_state *fs = &job->frags[r->frag];
    struct dfs_get_chunk *c = &job->chunk;
    if (!dfs_get_chunk_parse(bb, c)) {
        reject_copy(f, DFS_EDATALOSS, DAMAGE_NONE, "malformed message from the node");
        grpc_byte_buffer_destroy(bb);
        return;
    }
    if (c->has_header && c->header_size != fs->frag->size) {
        reject_copy(f, DFS_EDATALOSS, DAMAGE_WRONG_CHECKSUM,
                    "the node holds %" PRIu64 " bytes, the catalog says %" PRIu64, c->header_size,
                    fs->frag->size);
        grpc_byte_buffer_destroy(bb);
        return;
    }
    /* A copy rewritten consistently with other data passes every block check: only its
       checksum, which the node sends first, tells it from the catalog's. Skip it before any of
       its bytes are used. */
    uint32_t held = c->has_checksum ? c->checksum : 0;
    if (c->has_header && held != fs->frag->checksum) {
        reject_copy(f, DFS_EDATALOSS, DAMAGE_WRONG_CHECKSUM,
                    "the node holds checksum %08x, the catalog says %08x", held,
                    fs->frag->checksum);
        grpc_byte_buffer_destroy(bb);
        return;
    }
    size_t nblocks = dfs_crc32c_nblocks(c->len);
    uint64_t at = r->off + f->got; /* fragment offset of this chunk: a block boundary */
    if (c->ncrcs != nblocks || f->got + c->len > r->len ||
        (c->len > 0 && f->got + c->len < r->len && c->len % DFS_BLOCK_SIZE != 0)) {
        reject_copy(f, DFS_EDATALOSS, DAMAGE_NONE,
                    "bad chunk: %zu bytes with %zu checksums at offset %" PRIu64, c->len, c->ncrcs,
                    at);
        grpc_byte_buffer_destroy(bb);
        return;
    }
    uint32_t crcs[DFS_CHUNK_MAX_PIECES];
    long bad = dfs_get_chunk_verify(c, crcs);
    if (bad >= 0) {
        reject_copy(f, DFS_EDATALOSS, DAMAGE_CORRUPT,
                    "block %" PRIu64 " arrived corrupt (crc32c %08x, sent %08x)",
                    at / DFS_BLOCK_SIZE + (uint64_t)bad, crcs[bad], c->crcs[bad]);
        grpc_byte_buffer_destroy(bb);
        return;
    }
    int e = dfs_pwritev_all(job->fd, c->iov, c->niov, fs->start + at);
    grpc_byte_buffer_destroy(bb);
    if (e != 0) {
        char *err = NULL;
        dfs_seterr_errno(&err, dfs_err_from_errno(e), e, "cannot write the local file");
        fail_job(job, dfs_err_from_errno(e), err);
        return;
    }
    memcpy(&fs->crcs[at / DFS_BLOCK_SIZE], crcs, nblocks * sizeof crcs[0]);
    f->got += c->len;
    dfs_link_add_bytes(f->link, c->len);
    if (job->drain != NULL)
        dfs_drain_advance(job->drain, f->range, f->got);
    else
        dfs_filehash_advance(job->hash, f->range, f->got);
    job->written += c->len;
    if (job->opts->progress != NULL)
        job->opts->progress(job->opts->progress_arg,
                            job->written < job->file->size ? job->written : job->file->size,
                            job->file->size);
    progress(f);
    dfs_rpc_ccall_recv_raw(call, chunk_received, f);
}

static void start_fetch(struct fetch *f);
static void go_fetch(struct fetch *f);
static size_t refresh_copies(struct get_job *job);
static int get_layout(dfs_meta *meta, const char *remote, Dfs__V1__FileInfo **out, char **errmsg);

static void pace_fired(dfs_rpc_timer *t)
{
    struct fetch *f = (struct fetch *)((char *)t - offsetof(struct fetch, pace));
    if (f->deferred) {
        f->deferred = false;
        f->job->running--;
        if (f->job->error == DFS_OK)
            go_fetch(f);
    }
}

/* Nanoseconds until the link and the whole transfer are out of debt (0: go now). */
static int64_t debt_ns(struct get_job *job, dfs_link *link)
{
    int64_t now = dfs_clock_mono_ns();
    int64_t w1 = dfs_bucket_charge(dfs_link_bucket(link), 0, now);
    int64_t w2 = dfs_bucket_charge(&job->global, 0, now);
    return w1 > w2 ? w1 : w2;
}

static void note_failure(struct frag_state *fs, size_t copy, const char *why)
{
    const Dfs__V1__Replica *rep = fs->reps[copy];
    if (fs->bad[copy])
        return;
    fs->bad[copy] = true;
    char *joined = NULL;
    if (asprintf(&joined, "%s%snode %s (%s): %s", fs->failures != NULL ? fs->failures : "",
                 fs->failures != NULL ? "; " : "", rep->node_id, rep->address, why) < 0)
        joined = NULL;
    free(fs->failures);
    fs->failures = joined;
}

/* Remember a damaged copy for the report at the end (once per copy). */
static void note_damage(struct get_job *job, const Dfs__V1__Replica *rep, int damage,
                        const char *why)
{
    if (damage == DAMAGE_NONE || rep->ticket == NULL)
        return;
    for (size_t i = 0; i < job->ndamages; i++)
        if (job->damages[i].rep == rep)
            return;
    struct damage_seen *d = realloc(job->damages, (job->ndamages + 1) * sizeof *d);
    if (d == NULL)
        return;
    job->damages = d;
    d = &job->damages[job->ndamages++];
    d->rep = rep;
    d->damage = damage;
    snprintf(d->detail, sizeof d->detail, "%s", why);
}

/* What a failed GetFragment's status says of the copy. */
static int damage_of_status(int code)
{
    return code == DFS_EDATALOSS ? DAMAGE_CORRUPT : code == DFS_ENOTFOUND ? DAMAGE_MISSING : 0;
}

/* The next copy of a fragment to read from: round robin over the good ones; false if none is. */
static bool pick_copy(struct frag_state *fs, size_t *copy)
{
    if (fs->only >= 0) { /* read whole from one copy (verify_whole) */
        if (fs->bad[fs->only])
            return false;
        *copy = (size_t)fs->only;
        return true;
    }
    for (size_t i = 0; i < fs->norder; i++) {
        size_t c = fs->order[(fs->cursor + i) % fs->norder];
        if (!fs->bad[c]) {
            fs->cursor = (fs->cursor + i + 1) % fs->norder;
            *copy = c;
            return true;
        }
    }
    return false;
}

/* Streaming: the next range is too far ahead of the reader to start now. */
static bool held_back(const struct get_job *job)
{
    if (job->drain == NULL)
        return false;
    const struct range *r = &job->ranges[job->next_range];
    return job->frags[r->frag].start + r->off >= dfs_drain_emitted(job->drain) + AHEAD;
}

static void pump(struct get_job *job);

/* Whether some range is neither started nor done. */
static bool unstarted_ranges(const struct get_job *job)
{
    if (job->lanes == NULL)
        return job->next_range < job->end_range;
    for (size_t i = 0; i < job->file->n_fragments; i++)
        for (size_t r = job->frags[i].next; r < job->frags[i].last; r++)
            if (!job->done[r])
                return true;
    return false;
}

/* Start the slot on the next range, if there is one it may start now; else it stays idle. */
static void start_next_range(struct fetch *f)
{
    struct get_job *job = f->job;
    if (job->lanes != NULL) {
        pump(job);
        return;
    }
    while (job->next_range < job->end_range && job->done[job->next_range])
        job->next_range++; /* already downloaded (--resume) */
    if (job->error != DFS_OK || job->next_range >= job->end_range || held_back(job))
        return;
    f->range = job->next_range++;
    f->got = 0;
    start_fetch(f);
}

/* ---- throttled: lanes ---- */

/* Skip a fragment's cursor past ranges already downloaded (--resume). */
static void skip_done(struct get_job *job, struct frag_state *fs)
{
    while (fs->next < fs->last && job->done[fs->next]) {
        fs->unstarted -= job->ranges[fs->next].len;
        fs->next++;
    }
}

static size_t good_copies(const struct frag_state *fs)
{
    if (fs->only >= 0)
        return !fs->bad[fs->only];
    size_t n = 0;
    for (size_t i = 0; i < fs->norder; i++)
        n += !fs->bad[fs->order[i]];
    return n;
}

/*
 * The range lane `li` should fetch next, and from which copy: the next unstarted range of the
 * fragment it holds a good copy of with the most unstarted bytes per good copy (the fragment that
 * would otherwise finish last). False when it holds none with work left.
 */
static bool lane_pick(struct get_job *job, size_t li, size_t *range, size_t *copy)
{
    struct frag_state *best = NULL;
    size_t best_copy = 0;
    double best_load = -1;
    for (size_t i = 0; i < job->file->n_fragments; i++) {
        struct frag_state *fs = &job->frags[i];
        skip_done(job, fs);
        if (fs->next >= fs->last)
            continue;
        if (job->drain != NULL &&
            fs->start + job->ranges[fs->next].off >= dfs_drain_emitted(job->drain) + AHEAD)
            continue; /* streaming: too far ahead of the reader for now */
        size_t c = SIZE_MAX;
        for (size_t k = 0; k < fs->norder && c == SIZE_MAX; k++)
            if (!fs->bad[fs->order[k]] && fs->lane[fs->order[k]] == li &&
                (fs->only < 0 || (size_t)fs->only == fs->order[k]))
                c = fs->order[k];
        if (c == SIZE_MAX)
            continue;
        double load = (double)fs->unstarted / (double)good_copies(fs);
        if (load > best_load) {
            best = fs;
            best_copy = c;
            best_load = load;
        }
    }
    if (best == NULL)
        return false;
    *range = best->next++;
    best->unstarted -= job->ranges[*range].len;
    *copy = best_copy;
    return true;
}

static void lane_fired(dfs_rpc_timer *t)
{
    struct lane *ln = (struct lane *)((char *)t - offsetof(struct lane, pace));
    ln->armed = false;
    ln->job->armed--;
    pump(ln->job);
}

/* Ranges in flight on a link, or waiting to start on it. */
static size_t lane_busy(const struct get_job *job, const dfs_link *link)
{
    size_t n = 0;
    for (size_t i = 0; i < job->window; i++) {
        const struct fetch *f = &job->fetches[i];
        n += (f->call != NULL || f->deferred) && f->link == link;
    }
    return n;
}

static struct fetch *idle_slot(struct get_job *job)
{
    for (size_t i = 0; i < job->window; i++)
        if (job->fetches[i].call == NULL && !job->fetches[i].deferred)
            return &job->fetches[i];
    return NULL;
}

/*
 * Give every link that can take a range one (LANE_DEPTH at most in flight each): a link in debt
 * arms its timer and pulls when it is paid off. Lanes are visited from a rotating start so that
 * none is always served first when slots are short. A fragment with unstarted ranges and no good
 * copy left fails the job.
 */
static void pump(struct get_job *job)
{
    for (size_t i = 0; job->error == DFS_OK && i < job->file->n_fragments; i++) {
        struct frag_state *fs = &job->frags[i];
        skip_done(job, fs);
        if (fs->next < fs->last && good_copies(fs) == 0 && fs->only >= 0) {
            fs->only_failed = true; /* verify_whole goes on with the next copy */
            fs->next = fs->last;
            fs->unstarted = 0;
            continue;
        }
        if (fs->next < fs->last && good_copies(fs) == 0 && refresh_copies(job) > 0 &&
            good_copies(fs) > 0)
            continue;
        if (fs->next < fs->last && good_copies(fs) == 0) {
            char *err = NULL;
            dfs_seterr(&err, DFS_EDATALOSS, "fragment %" PRIu32 " of %s: no copy could be read: %s",
                       fs->frag->index, job->file->path,
                       fs->failures != NULL ? fs->failures : "none left");
            fail_job(job, DFS_EDATALOSS, err);
        }
    }
    for (size_t k = 0; job->error == DFS_OK && k < job->nlanes; k++) {
        size_t li = (job->lane_cursor + k) % job->nlanes;
        struct lane *ln = &job->lanes[li];
        while (!ln->armed && lane_busy(job, ln->link) < LANE_DEPTH) {
            struct fetch *f = idle_slot(job);
            if (f == NULL)
                goto out;
            int64_t wait = debt_ns(job, ln->link);
            if (wait > 0) {
                /* Arm only when there is work for the link once it is paid off. */
                size_t r, c;
                if (!lane_pick(job, li, &r, &c))
                    break;
                struct frag_state *fs = &job->frags[job->ranges[r].frag];
                fs->next--; /* put it back: it is taken when the timer fires */
                fs->unstarted += job->ranges[r].len;
                ln->armed = true;
                job->armed++;
                dfs_rpc_loop_timer_arm(job->loop, &ln->pace, dfs_clock_mono_ns() + wait);
                break;
            }
            size_t r, c;
            if (!lane_pick(job, li, &r, &c))
                break;
            f->range = r;
            f->got = 0;
            f->copy = c;
            f->link = ln->link;
            go_fetch(f);
        }
    }
out:
    job->lane_cursor++;
}

/*
 * The lane of the link to `address` (made when new), into *li. Lanes never move (their timers
 * are armed in place): the array is sized once, with room for the copies a refreshed layout may
 * add; a copy that finds no room is DFS_ENOSPC (it is not used throttled).
 */
static int lane_for(struct get_job *job, const char *address, size_t *li, char **errmsg)
{
    dfs_link *link = dfs_links_get(job->links, address, errmsg);
    if (link == NULL)
        return DFS_ENOMEM;
    size_t i = 0;
    while (i < job->nlanes && job->lanes[i].link != link)
        i++;
    if (i == job->nlanes) {
        if (job->nlanes == job->caplanes)
            return dfs_seterr(errmsg, DFS_ENOSPC, "no lane left");
        struct lane *ln = &job->lanes[job->nlanes++];
        ln->job = job;
        ln->link = link;
        dfs_rpc_timer_init(&ln->pace, lane_fired);
    }
    *li = i;
    return DFS_OK;
}

/* Set up a lane for every link holding a copy of a fragment that has ranges to fetch. */
static int plan_lanes(struct get_job *job, char **errmsg)
{
    size_t cap = 0;
    for (size_t i = 0; i < job->file->n_fragments; i++)
        cap += job->frags[i].norder;
    job->caplanes = 2 * cap + 16;
    job->lanes = calloc(job->caplanes, sizeof *job->lanes);
    if (job->lanes == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    for (size_t i = 0; i < job->file->n_fragments; i++) {
        struct frag_state *fs = &job->frags[i];
        for (size_t k = 0; k < fs->norder; k++) {
            size_t c = fs->order[k];
            int rc = lane_for(job, fs->reps[c]->address, &fs->lane[c], errmsg);
            if (rc != DFS_OK)
                return rc;
        }
    }
    return DFS_OK;
}

/*
 * A fragment ran out of copies: the catalog may have moved them (a rebalance, a drain, a repair
 * of a copy found bad), and the layout this get started from no longer says where they are. Fetch
 * the layout again (the same file: same id), and add every copy it lists that a fragment does not
 * have yet (never one that failed: a copy is known by its node). At most REFRESH_MAX times per
 * get, and not while a fragment is being read whole from one copy. Returns the copies added.
 */
static size_t refresh_copies(struct get_job *job)
{
    if (job->meta == NULL || job->refreshes >= REFRESH_MAX)
        return 0;
    for (size_t i = 0; i < job->file->n_fragments; i++)
        if (job->frags[i].only >= 0)
            return 0;
    job->refreshes++;
    Dfs__V1__FileInfo *fresh = NULL;
    char *err = NULL;
    int rc = get_layout(job->meta, job->file->path, &fresh, &err);
    if (rc == DFS_OK && (strcmp(fresh->file_id, job->file->file_id) != 0 ||
                         fresh->n_fragments != job->file->n_fragments)) {
        rc = dfs_seterr(&err, DFS_EABORTED, "the file was replaced meanwhile");
        protobuf_c_message_free_unpacked(&fresh->base, NULL);
    }
    Dfs__V1__FileInfo **x = NULL;
    if (rc == DFS_OK && (x = realloc(job->extra, (job->nextra + 1) * sizeof *x)) == NULL) {
        rc = dfs_seterr(&err, DFS_ENOMEM, "out of memory");
        protobuf_c_message_free_unpacked(&fresh->base, NULL);
    }
    if (rc != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "cannot fetch the layout again path=%s err=%s", job->file->path,
                err != NULL ? err : dfs_strerror(rc));
        free(err);
        return 0;
    }
    job->extra = x;
    job->extra[job->nextra++] = fresh;
    size_t added = 0;
    for (size_t i = 0; i < fresh->n_fragments; i++) {
        struct frag_state *fs = &job->frags[i];
        const Dfs__V1__Fragment *nf = fresh->fragments[i];
        for (size_t r = 0; r < nf->n_replicas && fs->nreps < COPIES_MAX; r++) {
            bool known = false;
            for (size_t c = 0; c < fs->nreps && !known; c++)
                known = strcmp(fs->reps[c]->node_id, nf->replicas[r]->node_id) == 0;
            if (known)
                continue;
            size_t c = fs->nreps;
            if (job->lanes != NULL &&
                lane_for(job, nf->replicas[r]->address, &fs->lane[c], &err) != DFS_OK) {
                free(err);
                err = NULL;
                continue;
            }
            fs->reps[c] = nf->replicas[r];
            fs->bad[c] = false;
            fs->order[fs->norder++] = c;
            fs->nreps++;
            added++;
        }
    }
    dfs_log(DFS_LOG_INFO, "layout fetched again path=%s copies_added=%zu", job->file->path, added);
    return added;
}

static void pace_fired(dfs_rpc_timer *t);

static void fetch_done(dfs_rpc_ccall *call, void *arg, int status, const char *message)
{
    (void)call;
    struct fetch *f = arg;
    struct get_job *job = f->job;
    f->call = NULL;
    job->running--;
    dfs_rpc_loop_timer_cancel(job->loop, &f->stall);
    dfs_rpc_loop_timer_cancel(job->loop, &f->pace);
    char *pending = f->pending_msg;
    f->pending_msg = NULL;
    if (job->error != DFS_OK) {
        free(pending);
        return;
    }
    const struct range *r = &job->ranges[f->range];
    struct frag_state *fs = &job->frags[r->frag];
    char why[512];
    int damage = DAMAGE_NONE;
    if (pending != NULL) {
        snprintf(why, sizeof why, "%s", pending);
        damage = f->pending_damage;
    } else if (status != DFS_OK) {
        snprintf(why, sizeof why, "%s", message);
        damage = damage_of_status(status);
    } else if (f->got != r->len) {
        snprintf(why, sizeof why, "the stream ended after %" PRIu64 " of %" PRIu64 " bytes", f->got,
                 r->len);
    } else {
        why[0] = '\0';
    }
    free(pending);
    if (why[0] == '\0') {
        /* Memory stays bounded without returning it to the system: the channels' fixed receive
           windows bound what gRPC buffers (services/rpc/client.c), and that memory is reused. */
        job->done[f->range] = true;
        job->range_copy[f->range] = f->copy;
        job->ranges_done++;
        start_next_range(f);
        return;
    }
    dfs_log(DFS_LOG_WARN, "copy unreadable fragment=%" PRIu32 " node=%s err=%s", fs->frag->index,
            fs->reps[f->copy]->node_id, why);
    note_damage(job, fs->reps[f->copy], damage, why);
    note_failure(fs, f->copy, why);
    job->failovers++;
    /* The range continues from another copy at the byte where it stopped. */
    start_fetch(f);
}

/* Start (or continue) the slot's range from the next good copy of its fragment. */
static void start_fetch(struct fetch *f)
{
    struct get_job *job = f->job;
    const struct range *r = &job->ranges[f->range];
    struct frag_state *fs = &job->frags[r->frag];
    if (!pick_copy(fs, &f->copy) && fs->only >= 0) {
        fs->only_failed = true; /* verify_whole goes on with the next copy; the slot idles */
        return;
    }
    if (fs->only < 0 && good_copies(fs) == 0 && refresh_copies(job) > 0 &&
        pick_copy(fs, &f->copy)) {
        /* a copy the catalog moved: continue there */
    } else if (fs->only < 0 && good_copies(fs) == 0) {
        char *err = NULL;
        dfs_seterr(&err, DFS_EDATALOSS, "fragment %" PRIu32 " of %s: no copy could be read: %s",
                   fs->frag->index, job->file->path,
                   fs->failures != NULL ? fs->failures : "none left");
        fail_job(job, DFS_EDATALOSS, err);
        return;
    }
    const Dfs__V1__Replica *rep = fs->reps[f->copy];
    char *err = NULL;
    f->link = dfs_links_get(job->links, rep->address, &err);
    if (f->link == NULL) {
        fail_job(job, DFS_ENOMEM, err);
        return;
    }
    go_fetch(f);
}

/* Start the slot's call on f->copy over f->link, once the link's bandwidth allows. */
static void go_fetch(struct fetch *f)
{
    struct get_job *job = f->job;
    const struct range *r = &job->ranges[f->range];
    struct frag_state *fs = &job->frags[r->frag];
    if (fs->bad[f->copy]) { /* failed for another slot meanwhile */
        start_fetch(f);
        return;
    }
    /* Bandwidth: a link (or the transfer) in debt starts this range once it is paid off; then
       the range's bytes are charged up front, which paces the requests themselves. */
    int64_t wait = debt_ns(job, f->link);
    if (wait > 0) {
        f->deferred = true;
        job->running++;
        dfs_rpc_loop_timer_arm(job->loop, &f->pace, dfs_clock_mono_ns() + wait);
        return;
    }
    int64_t now = dfs_clock_mono_ns();
    dfs_bucket_charge(dfs_link_bucket(f->link), r->len - f->got, now);
    dfs_bucket_charge(&job->global, r->len - f->got, now);
    if (dfs_rpc_ccall_start(job->loop, dfs_link_channel(f->link), "/dfs.v1.Storage/GetFragment", -1,
                            fetch_done, f, &f->call) != DFS_OK) {
        f->call = NULL;
        fail_job(job, DFS_EINTERNAL, strdup("cannot start a call"));
        return;
    }
    job->running++;
    Dfs__V1__GetFragmentRequest req = DFS__V1__GET_FRAGMENT_REQUEST__INIT;
    req.fragment_id = fs->frag->fragment_id;
    req.ticket = fs->reps[f->copy]->ticket;
    req.offset = r->off + f->got;
    req.length = r->len - f->got;
    progress(f);
    dfs_rpc_ccall_send(f->call, &req.base, true, NULL, NULL);
    dfs_rpc_ccall_recv_raw(f->call, chunk_received, f);
}

/* Try alive nodes first (in random order, to spread the load), then suspect, then the rest. */
static void order_copies(struct frag_state *fs, dfs_rng *rng)
{
    size_t n = fs->frag->n_replicas < COPIES_MAX ? fs->frag->n_replicas : COPIES_MAX;
    for (size_t i = 0; i < n; i++)
        fs->reps[i] = fs->frag->replicas[i];
    fs->nreps = n;
    static const int rank_of[] = {2, 0, 1, 3, 2, 3};
    fs->norder = 0;
    for (int rank = 0; rank <= 3; rank++) {
        size_t first = fs->norder;
        for (size_t i = 0; i < n; i++) {
            int st = (int)fs->reps[i]->node_state;
            int r = st >= 0 && st <= 5 ? rank_of[st] : 3;
            if (r == rank)
                fs->order[fs->norder++] = i;
        }
        for (size_t i = fs->norder; i > first + 1; i--) {
            size_t j = first + (size_t)dfs_rng_below(rng, i - first);
            size_t t = fs->order[i - 1];
            fs->order[i - 1] = fs->order[j];
            fs->order[j] = t;
        }
    }
    fs->cursor = 0;
}

/*
 * Cut the fragments into ranges, in file order, covering bytes [job->from, job->to) of the file;
 * set up what is known of each fragment. Ranges start and end on 64 KiB block boundaries of their
 * fragment (or its end), since every block is checked against its CRC32C: a partial read fetches
 * the whole blocks around what was asked for. A whole-file read covers every fragment.
 */
static int plan_ranges(struct get_job *job, char **errmsg)
{
    const Dfs__V1__FileInfo *file = job->file;
    size_t nf = file->n_fragments;
    bool full = job->from == 0 && job->to == file->size;
    job->frags = calloc(nf + 1, sizeof *job->frags);
    if (job->frags == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    uint64_t *lo = calloc(nf + 1, sizeof *lo), *hi = calloc(nf + 1, sizeof *hi);
    if (lo == NULL || hi == NULL) {
        free(lo);
        free(hi);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    dfs_rng rng;
    dfs_rng_seed_random(&rng);
    uint64_t start = 0;
    size_t nranges = 0;
    int rc = DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < nf; i++) {
        struct frag_state *fs = &job->frags[i];
        fs->frag = file->fragments[i];
        fs->only = -1;
        fs->start = start;
        uint64_t size = fs->frag->size;
        start += size;
        fs->nblocks = dfs_crc32c_nblocks(size);
        fs->crcs = calloc(fs->nblocks + 1, sizeof *fs->crcs);
        if (fs->crcs == NULL) {
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            break;
        }
        if (full) {
            lo[i] = 0;
            hi[i] = size;
        } else if (job->to > fs->start && job->from < fs->start + size) {
            uint64_t a = job->from > fs->start ? job->from - fs->start : 0;
            uint64_t b = job->to < fs->start + size ? job->to - fs->start : size;
            lo[i] = a / DFS_BLOCK_SIZE * DFS_BLOCK_SIZE;
            hi[i] = (b + DFS_BLOCK_SIZE - 1) / DFS_BLOCK_SIZE * DFS_BLOCK_SIZE;
            if (hi[i] > size)
                hi[i] = size;
        }
        fs->whole = full || (lo[i] == 0 && hi[i] == size && size > 0);
        if (hi[i] == lo[i] && !full)
            continue; /* not needed */
        order_copies(fs, &rng);
        if (fs->norder == 0)
            rc = dfs_seterr(errmsg, DFS_EDATALOSS, "fragment %" PRIu32 " of %s has no copy left",
                            fs->frag->index, file->path);
        nranges += (size_t)((hi[i] - lo[i] + job->range - 1) / job->range);
    }
    if (rc == DFS_OK && start != file->size)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "the layout's fragment sizes do not add up");
    if (rc == DFS_OK) {
        job->ranges = calloc(nranges + 1, sizeof *job->ranges);
        job->done = calloc(nranges + 1, sizeof *job->done);
        job->range_copy = calloc(nranges + 1, sizeof *job->range_copy);
        if (job->ranges == NULL || job->done == NULL || job->range_copy == NULL)
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        for (size_t i = 0; rc == DFS_OK && i < nranges; i++)
            job->range_copy[i] = SIZE_MAX; /* none yet (a range --resume found done: none) */
    }
    for (size_t i = 0; rc == DFS_OK && i < nf; i++) {
        struct frag_state *fs = &job->frags[i];
        fs->next = fs->first = job->nranges;
        for (uint64_t off = lo[i]; off < hi[i]; off += job->range) {
            struct range *r = &job->ranges[job->nranges++];
            r->frag = (uint32_t)i;
            r->off = off;
            r->len = hi[i] - off < job->range ? hi[i] - off : job->range;
            fs->unstarted += r->len;
        }
        fs->last = job->nranges;
    }
    free(lo);
    free(hi);
    return rc;
}

static int get_layout(dfs_meta *meta, const char *remote, Dfs__V1__FileInfo **out, char **errmsg)
{
    Dfs__V1__GetFileRequest req = DFS__V1__GET_FILE_REQUEST__INIT;
    req.path = (char *)remote;
    Dfs__V1__GetFileResponse *resp = NULL;
    int rc = dfs_meta_call(meta, "GetFile", &req.base, &dfs__v1__get_file_response__descriptor,
                           true, &resp, errmsg);
    if (rc != DFS_OK)
        return rc;
    *out = resp->file;
    resp->file = NULL;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    if (*out == NULL || (*out)->sha256.len != DFS_SHA256_BYTES) {
        if (*out != NULL)
            protobuf_c_message_free_unpacked(&(*out)->base, NULL);
        return dfs_seterr(errmsg, DFS_EINTERNAL, "the metadata service sent an incomplete layout");
    }
    return DFS_OK;
}

/* Copy a finished temporary file to standard output. */
static int copy_to_stdout(int fd, uint64_t size, char **errmsg)
{
    char *buf = malloc(1u << 20);
    if (buf == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    uint64_t off = 0;
    int rc = DFS_OK;
    while (rc == DFS_OK && off < size) {
        size_t want = size - off < (1u << 20) ? (size_t)(size - off) : (1u << 20);
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n <= 0) {
            rc = dfs_seterr(errmsg, DFS_EIO, "cannot read the temporary file");
            break;
        }
        for (ssize_t w = 0; w < n;) {
            ssize_t k = write(STDOUT_FILENO, buf + w, (size_t)(n - w));
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0) {
                rc = dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot write to standard output");
                break;
            }
            w += k;
        }
        off += (uint64_t)n;
    }
    free(buf);
    return rc;
}

/*
 * The resume state beside a part file, one line each:
 *     dfs-get-state 1
 *     file_id <32 hex>         the file the part belongs to (a new put of the path is a new id)
 *     size <bytes>
 *     range <bytes>            the range size the download used
 *     done <hex>               bitmap of finished ranges, bit i of byte i/8 for range i
 */
static int save_state(const struct get_job *job, const char *path, char **errmsg)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot write %s", path);
    fprintf(f, "dfs-get-state 1\nfile_id %s\nsize %" PRIu64 "\nrange %" PRIu64 "\ndone ",
            job->file->file_id, job->file->size, job->range);
    for (size_t i = 0; i < job->nranges; i += 8) {
        unsigned byte = 0;
        for (size_t b = 0; b < 8 && i + b < job->nranges; b++)
            byte |= (unsigned)job->done[i + b] << b;
        fprintf(f, "%02x", byte);
    }
    fprintf(f, "\n");
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0 || !ok)
        return dfs_seterr(errmsg, DFS_EIO, "cannot write %s", path);
    return DFS_OK;
}

/* Read a state file: its range size and done bitmap (hex, caller frees) if it is this file's. */
static bool load_state(const char *path, const Dfs__V1__FileInfo *file, uint64_t *range,
                       char **done_hex)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char id[64] = "", hex[1 << 16];
    uint64_t size = 0, r = 0;
    int version = 0;
    bool ok =
        fscanf(f, "dfs-get-state %d file_id %63s size %" SCNu64 " range %" SCNu64 " done %65535s",
               &version, id, &size, &r, hex) == 5 &&
        version == 1 && strcmp(id, file->file_id) == 0 && size == file->size && r > 0 &&
        r % DFS_BLOCK_SIZE == 0;
    fclose(f);
    if (ok) {
        *range = r;
        *done_hex = strdup(hex);
    }
    return ok && *done_hex != NULL;
}

/* Mark the ranges a state file says are done, and recompute their block CRCs from the file. */
static int apply_state(struct get_job *job, const char *hex, char **errmsg)
{
    size_t nhex = strlen(hex);
    uint8_t *buf = malloc(DFS_BLOCK_SIZE);
    if (buf == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    for (size_t i = 0; i < job->nranges; i++) {
        if (2 * (i / 8) + 2 > nhex)
            break;
        unsigned byte = 0;
        sscanf(hex + 2 * (i / 8), "%2x", &byte);
        if (!(byte & (1u << (i % 8))))
            continue;
        const struct range *r = &job->ranges[i];
        struct frag_state *fs = &job->frags[r->frag];
        for (uint64_t off = 0; off < r->len; off += DFS_BLOCK_SIZE) {
            size_t n = r->len - off < DFS_BLOCK_SIZE ? (size_t)(r->len - off) : DFS_BLOCK_SIZE;
            if (pread(job->fd, buf, n, (off_t)(fs->start + r->off + off)) != (ssize_t)n) {
                free(buf);
                return dfs_seterr(errmsg, DFS_EIO, "cannot read the partial download");
            }
            fs->crcs[(r->off + off) / DFS_BLOCK_SIZE] = dfs_crc32c(0, buf, n);
        }
        job->done[i] = true;
        job->resumed += r->len;
        job->written += r->len;
        dfs_filehash_advance(job->hash, i, r->len);
    }
    free(buf);
    return DFS_OK;
}

/* Failures worth resuming from: the transfer stopped, the data was fine. */
static bool resumable(int code)
{
    return code == DFS_ECANCELED || code == DFS_EUNAVAIL || code == DFS_ETIMEDOUT;
}

/*
 * Run the engine for job->file over job->fd (already sized to the file): the erasure engine or
 * the replicated ranges. A get to a file starts a dfs_filehash that follows the writes (continuing
 * a --resume from resume_hex); streaming starts a drain to job->out_fd instead. On return no call
 * is in flight and job->error says how it went; every block was checked as it arrived and every
 * fragment fetched whole against its checksum. The caller finishes the hash or the drain.
 */
/* The erasure engine's damaged copies, noted for the report. */
static void ec_damaged(void *arg, const Dfs__V1__Replica *rep, int damage, const char *why)
{
    note_damage(arg, rep, damage, why);
}

/*
 * Tell the metadata service which copies this get found damaged (ReportDamage, with the read
 * tickets as proof), so that it checks and repairs them instead of handing them to every reader.
 * Best effort: a failure is logged, the get's outcome stands.
 */
static void report_damages(struct get_job *job)
{
    if (job->meta == NULL || job->ndamages == 0)
        return;
    for (size_t at = 0; at < job->ndamages; at += 256) {
        size_t n = job->ndamages - at < 256 ? job->ndamages - at : 256;
        Dfs__V1__DamagedCopy *c = calloc(n, sizeof *c);
        Dfs__V1__DamagedCopy **cp = calloc(n, sizeof *cp);
        if (c == NULL || cp == NULL) {
            free(c);
            free(cp);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            const struct damage_seen *d = &job->damages[at + i];
            dfs__v1__damaged_copy__init(&c[i]);
            c[i].ticket = d->rep->ticket;
            c[i].damage = (Dfs__V1__Damage)d->damage;
            c[i].detail = (char *)d->detail;
            cp[i] = &c[i];
        }
        Dfs__V1__ReportDamageRequest req = DFS__V1__REPORT_DAMAGE_REQUEST__INIT;
        req.copies = cp;
        req.n_copies = n;
        Dfs__V1__ReportDamageResponse *resp = NULL;
        char *err = NULL;
        int rc = dfs_meta_call(job->meta, "ReportDamage", &req.base,
                               &dfs__v1__report_damage_response__descriptor, false, &resp, &err);
        if (rc == DFS_OK) {
            dfs_log(DFS_LOG_INFO, "reported damaged copies count=%zu accepted=%u", n,
                    resp->accepted);
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        } else {
            dfs_log(DFS_LOG_WARN, "cannot report damaged copies count=%zu err=%s", n,
                    err != NULL ? err : dfs_strerror(rc));
        }
        free(err);
        free(c);
        free(cp);
    }
}

/* Start every idle slot on what there is to fetch, and run the loop until nothing is left. */
static void run_ranges(struct get_job *job)
{
    const struct dfs_client_get_opts *opts = job->opts;
    if (job->lanes != NULL)
        pump(job);
    else
        for (size_t i = 0; job->error == DFS_OK && i < job->window; i++)
            if (job->fetches[i].call == NULL && !job->fetches[i].deferred)
                start_next_range(&job->fetches[i]);
    for (;;) {
        /* Streaming: slots held back (too far ahead of the reader) start once it caught up. */
        bool waiting = job->drain != NULL && job->error == DFS_OK && unstarted_ranges(job);
        if (job->running == 0 && job->armed == 0 && !waiting)
            break;
        if (waiting && job->lanes != NULL)
            pump(job);
        for (size_t i = 0; waiting && job->lanes == NULL && i < job->window; i++)
            if (job->fetches[i].call == NULL && !job->fetches[i].deferred)
                start_next_range(&job->fetches[i]);
        dfs_rpc_loop_run_once(job->loop, waiting ? 10 : 100);
        if (opts->interrupted != NULL && *opts->interrupted && job->error == DFS_OK)
            fail_job(job, DFS_ECANCELED, strdup("interrupted"));
        int drc = job->drain != NULL ? dfs_drain_failed(job->drain) : DFS_OK;
        if (drc != DFS_OK && job->error == DFS_OK)
            fail_job(job, drc, strdup("the output was closed"));
    }
}

/*
 * Fragment fs was assembled from blocks that each matched their CRC, yet its checksum is not the
 * catalog's: some copy served other data under the catalog's checksum. Read the whole fragment
 * again from one copy at a time until one makes the catalog's checksum; every copy that does not
 * is dropped and reported. The file's hash is redone from the disk at the end. Returns whether a
 * copy matched (then fs->crcs are its blocks').
 */
static bool verify_whole(struct get_job *job, struct frag_state *fs)
{
    dfs_log(DFS_LOG_WARN,
            "fragment does not make its checksum from several copies; reading it whole from "
            "each in turn fragment=%" PRIu32,
            fs->frag->index);
    if (job->hash != NULL)
        dfs_filehash_invalidate(job->hash);
    /* What the first read gave, by range, to tell afterwards which copies served other data. */
    size_t nr = fs->last - fs->first;
    uint32_t *seen = malloc((fs->nblocks + 1) * sizeof *seen);
    size_t *from = malloc((nr + 1) * sizeof *from);
    if (seen == NULL || from == NULL) {
        free(seen);
        free(from);
        return false;
    }
    memcpy(seen, fs->crcs, fs->nblocks * sizeof *seen);
    memcpy(from, &job->range_copy[fs->first], nr * sizeof *from);
    bool matched = false;
    for (size_t k = 0; k < fs->norder && job->error == DFS_OK && !matched; k++) {
        size_t c = fs->order[k];
        if (fs->bad[c])
            continue;
        fs->only = (int)c;
        fs->only_failed = false;
        memset(fs->crcs, 0, fs->nblocks * sizeof *fs->crcs);
        fs->unstarted = 0;
        for (size_t r = fs->first; r < fs->last; r++) {
            job->done[r] = false;
            fs->unstarted += job->ranges[r].len;
        }
        fs->next = fs->first;
        job->next_range = fs->first;
        job->end_range = fs->last;
        run_ranges(job);
        bool all = true;
        for (size_t r = fs->first; r < fs->last; r++)
            all &= job->done[r];
        uint32_t sum = dfs_crc32c_of_table(fs->crcs, fs->nblocks);
        if (job->error == DFS_OK && all && !fs->only_failed && sum == fs->frag->checksum) {
            matched = true;
            break;
        }
        if (job->error == DFS_OK && !fs->bad[c]) {
            char why[128];
            snprintf(why, sizeof why, "its blocks make checksum %08x, the catalog says %08x", sum,
                     fs->frag->checksum);
            note_damage(job, fs->reps[c], DAMAGE_WRONG_CHECKSUM, why);
            note_failure(fs, c, why);
        }
    }
    /* The copies whose ranges of the first read differ from the good copy's served other data
       under the catalog's checksum: report them too (they may not have been tried alone). */
    for (size_t i = 0; matched && i < nr; i++) {
        const struct range *r = &job->ranges[fs->first + i];
        size_t b0 = (size_t)(r->off / DFS_BLOCK_SIZE), nb = dfs_crc32c_nblocks(r->len);
        size_t c = from[i];
        if (c >= fs->nreps || (int)c == fs->only ||
            memcmp(&seen[b0], &fs->crcs[b0], nb * sizeof *seen) == 0)
            continue;
        const char *why = "its blocks differ from the catalog's copy under the catalog's checksum";
        note_damage(job, fs->reps[c], DAMAGE_WRONG_CHECKSUM, why);
        note_failure(fs, c, why);
    }
    free(seen);
    free(from);
    fs->only = -1;
    job->next_range = job->end_range = job->nranges;
    return matched;
}

static void fetch_file(struct get_job *job, const char *resume_hex)
{
    const struct dfs_client_get_opts *opts = job->opts;
    job->loop = dfs_rpc_loop_create();
    /* Throttled: ranges of about 1/32 s of the rate (whole 64 KiB blocks), so pacing is even. */
    job->range = RANGE;
    uint64_t slowest = opts->link_rate;
    if (opts->max_rate > 0 && (slowest == 0 || opts->max_rate < slowest))
        slowest = opts->max_rate;
    if (slowest > 0) {
        uint64_t r = slowest / 32 / DFS_BLOCK_SIZE * DFS_BLOCK_SIZE;
        job->range = r < DFS_BLOCK_SIZE ? DFS_BLOCK_SIZE : r > RANGE ? RANGE : r;
    }
    if (resume_hex != NULL)
        job->range = job->resume_range; /* the finished ranges are those of the first attempt */
    job->window = opts->parallel > 0 ? opts->parallel : DEFAULT_WINDOW;
    if (job->window > WINDOW)
        job->window = WINDOW;
    job->links = dfs_links_create(opts->link_rate, job->range < DFS_CHUNK ? job->range : DFS_CHUNK,
                                  job->channels, job->security);
    dfs_bucket_init(&job->global, opts->max_rate, job->range < DFS_CHUNK ? job->range : DFS_CHUNK,
                    dfs_clock_mono_ns());
    if (job->loop == NULL || job->links == NULL)
        fail_job(job, DFS_ENOMEM, NULL);
    const Dfs__V1__Redundancy *red = job->file->redundancy;
    job->erasure = red != NULL && red->scheme == DFS__V1__REDUNDANCY__SCHEME__ERASURE;
    if (job->erasure) {
        if (job->error != DFS_OK)
            return;
        struct dfs_fetch_ctx ctx = {
            .loop = job->loop,
            .links = job->links,
            .fd = job->fd,
            .file = job->file,
            .stall_timeout_ms = stall_ms(job),
            .interrupted = opts->interrupted,
            .global = &job->global,
            .progress = opts->progress,
            .progress_arg = opts->progress_arg,
            .out_fd = job->out_fd,
            .from = job->from,
            .to = job->to,
            .damaged = ec_damaged,
            .damaged_arg = job,
        };
        char *err = NULL;
        int erc = dfs_ec_fetch(&ctx, &err);
        job->hash = ctx.hash;
        job->drain = ctx.drain;
        job->failovers = ctx.failovers;
        job->rebuilt = ctx.rebuilt;
        if (erc != DFS_OK)
            fail_job(job, erc, err);
        return;
    }
    if (job->error == DFS_OK) {
        char *err = NULL;
        int prc = plan_ranges(job, &err);
        if (prc != DFS_OK)
            fail_job(job, prc, err);
        job->end_range = job->nranges;
    }
    if (job->error == DFS_OK) {
        char *err = NULL;
        uint64_t *starts = calloc(job->nranges + 1, sizeof *starts);
        for (size_t i = 0; starts != NULL && i < job->nranges; i++)
            starts[i] = job->frags[job->ranges[i].frag].start + job->ranges[i].off;
        int hrc;
        if (starts == NULL) {
            hrc = dfs_seterr(&err, DFS_ENOMEM, "out of memory");
        } else if (job->out_fd >= 0) {
            const struct range *last = job->nranges > 0 ? &job->ranges[job->nranges - 1] : NULL;
            struct dfs_drain_config dc = {
                .scratch_fd = job->fd,
                .out_fd = job->out_fd,
                .starts = starts,
                .nregions = job->nranges,
                .end = last != NULL ? job->frags[last->frag].start + last->off + last->len : 0,
                .from = job->from,
                .to = job->to,
                .hash = job->from == 0 && job->to == job->file->size,
            };
            if (job->nranges == 0)
                dc.from = dc.to = 0;
            hrc = dfs_drain_start(&dc, &job->drain, &err);
        } else if (job->nranges == 0) {
            hrc = dfs_filehash_start(job->fd, 0, &job->hash, &err);
        } else {
            hrc = dfs_filehash_start_follow(job->fd, job->file->size, starts, job->nranges,
                                            &job->hash, &err);
        }
        free(starts);
        if (hrc != DFS_OK)
            fail_job(job, hrc, err);
    }
    if (job->error == DFS_OK && resume_hex != NULL) {
        char *err = NULL;
        int arc = apply_state(job, resume_hex, &err);
        if (arc != DFS_OK)
            fail_job(job, arc, err);
    }
    if (job->error == DFS_OK && opts->link_rate > 0) {
        char *err = NULL;
        int lrc = plan_lanes(job, &err);
        if (lrc != DFS_OK)
            fail_job(job, lrc, err);
        /* Enough slots for every lane to be full, unless --parallel says otherwise. */
        if (opts->parallel == 0 && job->window < LANE_DEPTH * job->nlanes)
            job->window = LANE_DEPTH * job->nlanes < WINDOW ? LANE_DEPTH * job->nlanes : WINDOW;
    }
    for (size_t i = 0; i < WINDOW; i++) {
        job->fetches[i].job = job;
        dfs_rpc_timer_init(&job->fetches[i].stall, stall_fired);
        dfs_rpc_timer_init(&job->fetches[i].pace, pace_fired);
    }
    run_ranges(job);
    /* Every block was checked on arrival, and every copy's checksum when it was first read; now
       each fragment fetched whole, against the catalog (the erasure engine checks its own). */
    for (size_t i = 0; job->error == DFS_OK && i < job->file->n_fragments; i++) {
        struct frag_state *fs = &job->frags[i];
        uint32_t sum = dfs_crc32c_of_table(fs->crcs, fs->nblocks);
        if (!fs->whole || sum == fs->frag->checksum)
            continue;
        /* Copies whose blocks are each fine but do not add up to the catalog's fragment (a node
           that announced the catalog's checksum over other data): try each copy alone. A stream
           has already sent what it read, and cannot take it back. */
        if (job->drain == NULL && verify_whole(job, fs))
            continue;
        if (job->error == DFS_OK) {
            char *err = NULL;
            dfs_seterr(&err, DFS_EDATALOSS,
                       "fragment %" PRIu32 " of %s: checksum %08x, the catalog says %08x%s%s",
                       fs->frag->index, job->file->path, sum, fs->frag->checksum,
                       fs->failures != NULL ? "; " : "", fs->failures != NULL ? fs->failures : "");
            fail_job(job, DFS_EDATALOSS, err);
        }
    }
}

/* Free what the engine left in the job (not the file, not fd). */
static void job_free(struct get_job *job)
{
    for (size_t i = 0; i < job->nextra; i++)
        protobuf_c_message_free_unpacked(&job->extra[i]->base, NULL);
    free(job->extra);
    free(job->damages);
    for (size_t i = 0; job->frags != NULL && i < job->file->n_fragments; i++) {
        free(job->frags[i].crcs);
        free(job->frags[i].failures);
    }
    for (size_t i = 0; i < WINDOW; i++)
        free(job->fetches[i].pending_msg);
    free(job->lanes);
    free(job->done);
    free(job->range_copy);
    free(job->errmsg);
    free(job->frags);
    free(job->ranges);
    dfs_links_destroy(job->links);
    dfs_rpc_loop_destroy(job->loop);
}

int dfs_get_layout(dfs_meta *meta, const char *remote, Dfs__V1__FileInfo **out, char **errmsg)
{
    return get_layout(meta, remote, out, errmsg);
}

/* What kind of thing an existing path is, for messages. */
static const char *file_kind(mode_t m)
{
    return S_ISCHR(m)    ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISFIFO(m) ? "a FIFO"
           : S_ISSOCK(m) ? "a socket"
           : S_ISDIR(m)  ? "a directory"
                         : "not a regular file";
}

/*
 * Open an existing LOCAL that is not a regular file for writing, as it is: a device or a FIFO
 * with open(2) (no O_CREAT, no O_TRUNC: nothing is created or replaced), a Unix stream socket by
 * connecting to it. Returns 0 and *out, or a DFS_ code with *errmsg.
 */
static int open_special(const char *local, mode_t mode, int *out, char **errmsg)
{
    int fd;
    if (S_ISSOCK(mode)) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(local) >= sizeof sa.sun_path)
            return dfs_seterr(errmsg, DFS_EINVAL, "%s: the socket's path is too long to connect to",
                              local);
        memcpy(sa.sun_path, local, strlen(local) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (const struct sockaddr *)&sa, sizeof sa) != 0) {
            int e = errno;
            close(fd);
            fd = -1;
            errno = e;
        }
    } else {
        fd = open(local, O_WRONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "cannot open %s (%s)",
                                local, file_kind(mode));
    *out = fd;
    return DFS_OK;
}

/*
 * A stitched file (segments) to LOCAL or standard output: the segments in order straight into
 * "<local>.dfs-part" (renamed to LOCAL once every segment checked) or into standard output (each
 * segment is checked before its bytes are written: dfs_get_fd drains a checked window). No
 * --resume: a stitched file is fetched from its start.
 */
static int get_stitched(dfs_meta *meta, dfs_rpc_pool *channels, const Dfs__V1__FileInfo *file,
                        const char *local, bool to_stdout, const struct dfs_client_get_opts *opts,
                        struct dfs_client_get_result *out, char **errmsg)
{
    const struct dfs_rpc_link_security *security = dfs_meta_security(meta);
    if (to_stdout)
        return dfs_get_fd(meta, channels, security, file, 0, file->size, STDOUT_FILENO, NULL, opts,
                          out, errmsg);
    char *part = NULL;
    if (asprintf(&part, "%s.dfs-part", local) < 0)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    int fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = DFS_OK;
    if (fd < 0)
        rc = dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "cannot create %s", part);
    if (rc == DFS_OK)
        rc = dfs_get_fd(meta, channels, security, file, 0, file->size, fd, NULL, opts, out, errmsg);
    if (fd >= 0 && close(fd) != 0 && rc == DFS_OK && errno != EINTR)
        rc = dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "cannot write %s", part);
    if (rc == DFS_OK && rename(part, local) != 0)
        rc = dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "cannot rename %s to %s",
                              part, local);
    if (rc != DFS_OK && fd >= 0)
        unlink(part);
    free(part);
    return rc;
}

int dfs_get(dfs_meta *meta, dfs_rpc_pool *channels, const char *remote, const char *local,
            const struct dfs_client_get_opts *opts, struct dfs_client_get_result *out,
            char **errmsg)
{
    struct get_job job = {.meta = meta,
                          .channels = channels,
                          .security = dfs_meta_security(meta),
                          .opts = opts,
                          .fd = -1,
                          .out_fd = -1};
    bool to_stdout = strcmp(local, "-") == 0;
    /*
     * A LOCAL that exists and is not a regular file (a device such as /dev/null, a FIFO, a
     * socket) is written to as it is, in order, and never replaced: the usual part file renamed
     * over it would turn /dev/null into a regular file. A directory is refused.
     */
    struct stat lst;
    bool special = !to_stdout && stat(local, &lst) == 0 && !S_ISREG(lst.st_mode);
    if (special && S_ISDIR(lst.st_mode))
        return dfs_seterr(errmsg, DFS_EINVAL, "%s is a directory", local);
    if ((special || to_stdout) && opts->resume)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "--resume continues a partial download into a regular file; %s is %s",
                          local, to_stdout ? "standard output" : file_kind(lst.st_mode));
    int64_t t0 = dfs_clock_mono_ns();
    int rc = get_layout(meta, remote, &job.file, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (job.file->n_segments > 0 && !special) {
        rc = get_stitched(meta, channels, job.file, local, to_stdout, opts, out, errmsg);
        if (rc == DFS_OK)
            out->seconds = (double)(dfs_clock_mono_ns() - t0) / 1e9;
        protobuf_c_message_free_unpacked(&job.file->base, NULL);
        return rc;
    }
    if (special) {
        int fd = -1;
        rc = open_special(local, lst.st_mode, &fd, errmsg);
        if (rc != DFS_OK) {
            protobuf_c_message_free_unpacked(&job.file->base, NULL);
            return rc;
        }
        rc = dfs_get_fd(meta, channels, job.security, job.file, 0, job.file->size, fd, NULL, opts,
                        out, errmsg);
        if (close(fd) != 0 && rc == DFS_OK && errno != EINTR)
            rc = dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "cannot write %s",
                                  local);
        if (rc == DFS_OK)
            out->seconds = (double)(dfs_clock_mono_ns() - t0) / 1e9;
        protobuf_c_message_free_unpacked(&job.file->base, NULL);
        return rc;
    }
    job.to = job.file->size;

    char *part = NULL, *state = NULL, *resume_hex = NULL;
    if (to_stdout) {
        const char *tmp = getenv("TMPDIR");
        if (asprintf(&part, "%s/dfs-get-XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp") >=
            0) {
            job.fd = mkstemp(part);
            if (job.fd >= 0)
                unlink(part); /* nothing to clean up, whatever happens */
        }
    } else if (asprintf(&part, "%s.dfs-part", local) >= 0 &&
               asprintf(&state, "%s.dfs-part.state", local) >= 0) {
        const Dfs__V1__Redundancy *red0 = job.file->redundancy;
        bool replicated = red0 == NULL || red0->scheme != DFS__V1__REDUNDANCY__SCHEME__ERASURE;
        struct stat st;
        if (opts->resume && replicated &&
            load_state(state, job.file, &job.resume_range, &resume_hex) &&
            (job.fd = open(part, O_RDWR | O_CLOEXEC)) >= 0 &&
            (fstat(job.fd, &st) != 0 || (uint64_t)st.st_size != job.file->size)) {
            close(job.fd);
            job.fd = -1;
        }
        if (job.fd < 0) {
            free(resume_hex);
            resume_hex = NULL;
            unlink(state);
            job.fd = open(part, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        }
    }
    if (job.fd < 0) {
        rc = dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "cannot create %s",
                              part != NULL ? part : local);
        free(part);
        free(state);
        free(resume_hex);
        protobuf_c_message_free_unpacked(&job.file->base, NULL);
        return rc;
    }
    if (ftruncate(job.fd, (off_t)job.file->size) != 0) {
        char *err = NULL;
        dfs_seterr_errno(&err, dfs_err_from_errno(errno), errno, "cannot size %s", part);
        fail_job(&job, dfs_err_from_errno(errno), err);
    }

    fetch_file(&job, resume_hex);

    uint8_t sha[DFS_SHA256_BYTES];
    if (job.hash != NULL && job.error != DFS_OK) {
        dfs_filehash_cancel(job.hash);
    } else if (job.hash != NULL) {
        char *err = NULL;
        if (dfs_filehash_finish(job.hash, sha, &err) != DFS_OK)
            fail_job(&job, DFS_EIO, err);
        else if (memcmp(sha, job.file->sha256.data, DFS_SHA256_BYTES) != 0)
            fail_job(&job, DFS_EDATALOSS,
                     strdup("the assembled file does not match its SHA-256 in the catalog"));
    }
    if (job.error == DFS_OK && to_stdout) {
        char *err = NULL;
        int crc = copy_to_stdout(job.fd, job.file->size, &err);
        if (crc != DFS_OK)
            fail_job(&job, crc, err);
    }
    if (job.error == DFS_OK && !to_stdout && rename(part, local) != 0) {
        char *err = NULL;
        int code = dfs_err_from_errno(errno);
        dfs_seterr_errno(&err, code, errno, "cannot rename %s to %s", part, local);
        fail_job(&job, code, err);
    }
    report_damages(&job);
    if (job.error != DFS_OK) {
        rc = job.error;
        char *kept = NULL;
        if (!to_stdout && !job.erasure && job.done != NULL && resumable(rc) &&
            save_state(&job, state, NULL) == DFS_OK &&
            asprintf(&kept, "; the partial download is kept: continue with dfs get --resume %s %s",
                     remote, local) < 0)
            kept = NULL;
        if (!to_stdout && kept == NULL) {
            unlink(part);
            unlink(state);
        }
        dfs_seterr(errmsg, rc, "%s%s", job.errmsg != NULL ? job.errmsg : dfs_strerror(rc),
                   kept != NULL ? kept : "");
        free(kept);
    } else {
        if (state != NULL)
            unlink(state);
        out->size = job.file->size;
        memcpy(out->sha256, sha, DFS_SHA256_BYTES);
        out->fragments = (uint32_t)job.file->n_fragments;
        out->failovers = job.failovers;
        out->rebuilt = job.rebuilt;
        out->resumed = job.resumed;
        out->seconds = (double)(dfs_clock_mono_ns() - t0) / 1e9;
        rc = DFS_OK;
    }
    job_free(&job);
    close(job.fd);
    free(part);
    free(state);
    free(resume_hex);
    protobuf_c_message_free_unpacked(&job.file->base, NULL);
    return rc;
}

/* An unlinked scratch file in dir: O_TMPFILE where the file system has it, else mkstemp+unlink. */
static int scratch_open(const char *dir, char **errmsg)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    char *path = NULL;
    if (asprintf(&path, "%s/dfs-get-XXXXXX", dir) < 0)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    fd = mkstemp(path);
    if (fd >= 0)
        unlink(path);
    else
        dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "cannot create a file in %s",
                         dir);
    free(path);
    return fd >= 0 ? fd : dfs_err_from_errno(errno);
}

int dfs_get_fd(dfs_meta *meta, dfs_rpc_pool *channels, const struct dfs_rpc_link_security *security,
               const Dfs__V1__FileInfo *file, uint64_t offset, uint64_t length, int out_fd,
               const char *scratch_dir, const struct dfs_client_get_opts *opts,
               struct dfs_client_get_result *out, char **errmsg)
{
    if (file->n_segments > 0)
        return dfs_get_segments_fd(meta, channels, security, file, offset, length, out_fd,
                                   scratch_dir, opts, out, errmsg);
    if (offset > file->size || length > file->size - offset)
        return dfs_seterr(errmsg, DFS_ERANGE,
                          "bytes %" PRIu64 "+%" PRIu64 " are outside the file (%" PRIu64 " bytes)",
                          offset, length, file->size);
    if (file->sha256.len != DFS_SHA256_BYTES)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "the layout has no SHA-256");
    struct get_job job = {.meta = meta,
                          .channels = channels,
                          .security = security,
                          .opts = opts,
                          .fd = -1,
                          .out_fd = out_fd};
    job.file = (Dfs__V1__FileInfo *)file; /* read only: job_free leaves it alone */
    job.from = offset;
    job.to = offset + length;
    int64_t t0 = dfs_clock_mono_ns();
    const char *dir = scratch_dir;
    if (dir == NULL || dir[0] == '\0')
        dir = getenv("TMPDIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "/tmp";
    job.fd = scratch_open(dir, errmsg);
    if (job.fd < 0)
        return job.fd;
    /* Sparse: only the window between the drain and the fetchers ever holds blocks. */
    if (ftruncate(job.fd, (off_t)file->size) != 0) {
        int e = errno;
        close(job.fd);
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(e), e, "cannot size the scratch file");
    }

    fetch_file(&job, NULL);

    if (job.drain != NULL) {
        char *err = NULL;
        bool full = offset == 0 && length == file->size;
        int drc =
            dfs_drain_finish(job.drain, job.error == DFS_OK, full ? file->sha256.data : NULL, &err);
        job.drain = NULL;
        if (drc != DFS_OK)
            fail_job(&job, drc, err);
        else
            free(err);
    } else if (job.error == DFS_OK) {
        fail_job(&job, DFS_EINTERNAL, strdup("the transfer did not start"));
    }
    report_damages(&job);
    int rc = job.error;
    if (rc != DFS_OK) {
        dfs_seterr(errmsg, rc, "%s", job.errmsg != NULL ? job.errmsg : dfs_strerror(rc));
    } else {
        out->size = length;
        memcpy(out->sha256, file->sha256.data, DFS_SHA256_BYTES);
        out->fragments = (uint32_t)file->n_fragments;
        out->failovers = job.failovers;
        out->rebuilt = job.rebuilt;
        out->resumed = 0;
        out->seconds = (double)(dfs_clock_mono_ns() - t0) / 1e9;
    }
    job_free(&job);
    close(job.fd);
    return rc;
}
