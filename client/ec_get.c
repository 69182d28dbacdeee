/*
 * dfs get of an erasure-coded file: cells fetched in file order, rebuilt from parity when a fragment
 * cannot be read.
 *
 * The layout (dfs_ec_layout in storage/ec.h): the file is a sequence of
 * cells of C bytes; stripe s holds cells s*K .. s*K+K-1 of the file in data fragments 0..K-1, and
 * fragments K..K+M-1 hold that stripe's parity; every fragment is S cells long. The last stripe is
 * padded with zeros.
 *
 * How it goes: a few stripes are active at once. Each data cell is fetched straight into the output
 * file. A data fragment that fails (node down, corrupt block) is dropped for the rest of the get;
 * every stripe that lacks it fetches as many parity cells as it lacks, into memory, reads back its
 * data cells from the output file, rebuilds the missing ones, computes their block CRCs (so the
 * fragment's checksum can still be checked against the catalog) and writes them. Parity fragments
 * are only read when needed.
 */
#include "client/chunkio.h"
#include "client/fetch.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "dfs/v1/storage.pb-c.h"
#include "storage/ec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ACTIVE 8

/* Streaming: a stripe is not started while it begins this far or more past what the drain sent. */
#define AHEAD (64u << 20)

enum cell_state {
    CELL_IDLE,     /* not asked for */
    CELL_FETCHING, /* a call is bringing it */
    CELL_DONE,     /* data cell: in the file; parity cell: in the stripe's buffer */
    CELL_LOST,     /* its fragment is unreadable */
};

struct ec_job;
struct ec_stripe;

/* One GetFragment call, for one cell. */
struct ec_fetch {
    struct ec_job *job;
    struct ec_stripe *st;
    unsigned frag;
    uint64_t got;
    dfs_link *link;
    dfs_rpc_ccall *call; /* NULL when the slot is free */
    dfs_rpc_timer stall;
    dfs_rpc_timer pace;
    bool deferred; /* the pace timer will start the call (counted in running and fetching) */
    int pending_code;
    char *pending_msg;
    int pending_damage; /* what the local reason says of the copy (dfs.v1.Damage) */
};

/* dfs.v1.Damage numbers. */
enum { DAMAGE_NONE = 0, DAMAGE_CORRUPT = 1, DAMAGE_WRONG_CHECKSUM = 2, DAMAGE_MISSING = 3 };

struct ec_stripe {
    struct ec_job *job;
    bool active;
    uint64_t s;
    uint8_t state[DFS_EC_MAX_FRAGMENTS];
    uint8_t *buf[DFS_EC_MAX_FRAGMENTS]; /* parity cells, and cells being rebuilt */
    unsigned fetching;
};

struct ec_frag {
    const Dfs__V1__Fragment *frag;
    bool bad;
    char *why;
    uint32_t *crcs; /* data fragments: block CRCs, filled as cells arrive or are rebuilt */
    size_t nblocks;
};

struct ec_job {
    struct dfs_fetch_ctx *ctx;
    unsigned k, m;
    uint64_t cell, size;
    uint64_t nstripes, next_stripe, stripes_done;
    /* The stripes fetched: [first_stripe, end_stripe) (all of them unless streaming a part), and
       their cells in the file: [first_cell, end_cell). */
    uint64_t first_stripe, end_stripe, first_cell, end_cell;
    struct ec_frag frags[DFS_EC_MAX_FRAGMENTS];
    struct ec_stripe stripes[MAX_ACTIVE];
    unsigned max_active;
    struct ec_fetch *fetches;
    size_t nfetches;
    size_t running;
    dfs_ec *ec;
    int error;
    char *errmsg;
    struct dfs_get_chunk chunk; /* scratch for parsing one message */
    uint64_t written;           /* file bytes written, for progress */
};

static void fail_job(struct ec_job *job, int code, char *msg)
{
    if (job->error == DFS_OK) {
        job->error = code;
        job->errmsg = msg;
        msg = NULL;
        for (size_t i = 0; i < job->nfetches; i++)
            if (job->fetches[i].call != NULL)
                dfs_rpc_ccall_cancel(job->fetches[i].call);
    }
    free(msg);
}

/* Bytes of file cell r (= s*K + i) that are in the file: C, less at the end, 0 in the padding. */
static uint64_t cell_in_file(const struct ec_job *job, uint64_t r)
{
    uint64_t start = r * job->cell;
    if (start >= job->size)
        return 0;
    return job->size - start < job->cell ? job->size - start : job->cell;
}

static void stall_fired(dfs_rpc_timer *t)
{
    struct ec_fetch *f = (struct ec_fetch *)((char *)t - offsetof(struct ec_fetch, stall));
    if (f->call != NULL)
        dfs_rpc_ccall_cancel_with(f->call, DFS_ETIMEDOUT, "no progress");
}

static void progress(struct ec_fetch *f)
{
    dfs_rpc_loop_timer_arm(f->job->ctx->loop, &f->stall,
                           dfs_clock_mono_ns() + f->job->ctx->stall_timeout_ms * 1000000);
}

static void reject(struct ec_fetch *f, int code, int damage, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reject(struct ec_fetch *f, int code, int damage, const char *fmt, ...)
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

/* Record the block CRCs of data fragment i's bytes [off, off + n*64 KiB) of the fragment. */
static void record_crcs(struct ec_job *job, unsigned i, uint64_t off, const uint32_t *crcs,
                        size_t n)
{
    struct ec_frag *fr = &job->frags[i];
    size_t at = (size_t)(off / DFS_BLOCK_SIZE);
    if (at + n <= fr->nblocks)
        memcpy(&fr->crcs[at], crcs, n * sizeof *crcs);
}

static void stripe_check(struct ec_stripe *st);
static void start_fetch(struct ec_job *job, struct ec_stripe *st, unsigned frag);

static void chunk_received(dfs_rpc_ccall *call, void *arg, grpc_byte_buffer *bb, int status)
{
    (void)status;
    struct ec_fetch *f = arg;
    struct ec_job *job = f->job;
    if (bb == NULL)
        return;
    if (job->error != DFS_OK) {
        grpc_byte_buffer_destroy(bb);
        return;
    }
    const Dfs__V1__Fragment *frag = job->frags[f->frag].frag;
    struct dfs_get_chunk *c = &job->chunk;
    uint32_t crcs[DFS_CHUNK_MAX_PIECES];
    long bad = -2;
    if (!dfs_get_chunk_parse(bb, c))
        reject(f, DFS_EDATALOSS, DAMAGE_NONE, "malformed message from the node");
    else if (c->has_header && c->header_size != frag->size)
        reject(f, DFS_EDATALOSS, DAMAGE_WRONG_CHECKSUM,
               "the node holds %" PRIu64 " bytes, the catalog says %" PRIu64, c->header_size,
               frag->size);
    /* A copy rewritten consistently with other data passes every block check: only the
       checksum its node sends first tells it from the catalog's (then parity rebuilds it). */
    else if (c->has_header && (c->has_checksum ? c->checksum : 0) != frag->checksum)
        reject(f, DFS_EDATALOSS, DAMAGE_WRONG_CHECKSUM,
               "the node holds checksum %08x, the catalog says %08x",
               c->has_checksum ? c->checksum : 0, frag->checksum);
    else if (c->ncrcs != dfs_crc32c_nblocks(c->len) || f->got + c->len > job->cell ||
             (f->got + c->len < job->cell && c->len % DFS_BLOCK_SIZE != 0))
        reject(f, DFS_EDATALOSS, DAMAGE_NONE, "bad chunk: %zu bytes with %zu checksums", c->len,
               c->ncrcs);
    else if ((bad = dfs_get_chunk_verify(c, crcs)) >= 0)
        reject(f, DFS_EDATALOSS, DAMAGE_CORRUPT, "block %" PRIu64 " arrived corrupt",
               (f->st->s * job->cell + f->got) / DFS_BLOCK_SIZE + (uint64_t)bad);
    if (bad != -1) {
        grpc_byte_buffer_destroy(bb);
        return;
    }
    uint64_t frag_off = f->st->s * job->cell + f->got;
    if (f->frag < job->k) {
        /* A data cell: straight into the file, up to the file's end (the rest is padding). */
        uint64_t r = f->st->s * job->k + f->frag;
        uint64_t in_file = cell_in_file(job, r);
        uint64_t upto = f->got + c->len < in_file ? f->got + c->len : in_file;
        if (upto > f->got) {
            size_t n = (size_t)(upto - f->got), niov = 0;
            struct iovec iov[DFS_CHUNK_MAX_IOV];
            for (size_t i = 0; i < c->niov && n > 0; i++) {
                iov[niov] = c->iov[i];
                if (iov[niov].iov_len > n)
                    iov[niov].iov_len = n;
                n -= iov[niov].iov_len;
                niov++;
            }
            int e = dfs_pwritev_all(job->ctx->fd, iov, niov, r * job->cell + f->got);
            if (e != 0) {
                char *err = NULL;
                dfs_seterr_errno(&err, dfs_err_from_errno(e), e, "cannot write the local file");
                fail_job(job, dfs_err_from_errno(e), err);
                grpc_byte_buffer_destroy(bb);
                return;
            }
            if (job->ctx->hash != NULL)
                dfs_filehash_advance(job->ctx->hash, (size_t)r, upto);
        }
        record_crcs(job, f->frag, frag_off, crcs, c->ncrcs);
    } else {
        /* A parity cell: into the stripe's buffer, for rebuilding. */
        uint8_t *dst = f->st->buf[f->frag] + f->got;
        for (size_t i = 0; i < c->niov; i++) {
            memcpy(dst, c->iov[i].iov_base, c->iov[i].iov_len);
            dst += c->iov[i].iov_len;
        }
    }
    f->got += c->len;
    dfs_link_add_bytes(f->link, c->len);
    grpc_byte_buffer_destroy(bb);
    if (f->frag < job->k) {
        job->written += c->len;
        if (job->ctx->progress != NULL)
            job->ctx->progress(job->ctx->progress_arg,
                               job->written < job->size ? job->written : job->size, job->size);
    }
    progress(f);
    dfs_rpc_ccall_recv_raw(call, chunk_received, f);
}

static void begin_call(struct ec_fetch *f);

static void pace_fired(dfs_rpc_timer *t)
{
    struct ec_fetch *f = (struct ec_fetch *)((char *)t - offsetof(struct ec_fetch, pace));
    if (f->deferred)
        begin_call(f);
}

/* Fragment i cannot be read: drop it for the rest of the get (and tell the caller what was
   wrong with its copy, when it was damaged). */
static void drop_fragment(struct ec_job *job, unsigned i, int damage, const char *why)
{
    struct ec_frag *fr = &job->frags[i];
    if (fr->bad)
        return;
    fr->bad = true;
    const Dfs__V1__Replica *rep = fr->frag->n_replicas > 0 ? fr->frag->replicas[0] : NULL;
    if (rep != NULL && damage != DAMAGE_NONE && job->ctx->damaged != NULL)
        job->ctx->damaged(job->ctx->damaged_arg, rep, damage, why);
    if (asprintf(&fr->why, "fragment %u on node %s (%s): %s", i, rep != NULL ? rep->node_id : "?",
                 rep != NULL ? rep->address : "?", why) < 0)
        fr->why = NULL;
    dfs_log(DFS_LOG_WARN, "fragment unreadable, rebuilding from parity fragment=%u err=\"%s\"", i,
            why);
}

static void stripe_loss(struct ec_job *job, struct ec_stripe *st)
{
    char *list = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&list, &len);
    unsigned readable = 0;
    for (unsigned i = 0; i < job->k + job->m; i++) {
        if (!job->frags[i].bad)
            readable++;
        else if (m != NULL)
            fprintf(m, "%s%s", len > 0 || ftell(m) > 0 ? "; " : "",
                    job->frags[i].why != NULL ? job->frags[i].why : "unreadable");
    }
    if (m != NULL)
        fclose(m);
    char *err = NULL;
    dfs_seterr(&err, DFS_EDATALOSS,
               "stripe %" PRIu64 " of %s: only %u of the %u fragments needed are readable: %s",
               st->s, job->ctx->file->path, readable, job->k, list != NULL ? list : "");
    free(list);
    fail_job(job, DFS_EDATALOSS, err);
}

/*
 * Make sure the stripe will have K cells: count the cells it has or is fetching, and ask for parity
 * cells (then any idle cell) of readable fragments to make up for the lost ones.
 */
static void stripe_refill(struct ec_job *job, struct ec_stripe *st)
{
    unsigned usable = 0;
    for (unsigned i = 0; i < job->k + job->m; i++)
        if (st->state[i] == CELL_DONE || st->state[i] == CELL_FETCHING)
            usable++;
    for (unsigned i = job->k; usable < job->k && i < job->k + job->m && job->error == DFS_OK; i++) {
        if (st->state[i] != CELL_IDLE)
            continue;
        if (job->frags[i].bad) {
            st->state[i] = CELL_LOST;
            continue;
        }
        if (st->buf[i] == NULL && (st->buf[i] = malloc(job->cell)) == NULL) {
            fail_job(job, DFS_ENOMEM, NULL);
            return;
        }
        start_fetch(job, st, i);
        usable++;
    }
    if (usable < job->k && job->error == DFS_OK)
        stripe_loss(job, st);
}

static void fetch_done(dfs_rpc_ccall *call, void *arg, int status, const char *message)
{
    (void)call;
    struct ec_fetch *f = arg;
    struct ec_job *job = f->job;
    struct ec_stripe *st = f->st;
    f->call = NULL;
    job->running--;
    st->fetching--;
    dfs_rpc_loop_timer_cancel(job->ctx->loop, &f->stall);
    dfs_rpc_loop_timer_cancel(job->ctx->loop, &f->pace);
    char *pending = f->pending_msg;
    f->pending_msg = NULL;
    if (job->error != DFS_OK) {
        free(pending);
        return;
    }
    char why[512] = "";
    int damage = DAMAGE_NONE;
    if (pending != NULL) {
        snprintf(why, sizeof why, "%s", pending);
        damage = f->pending_damage;
    } else if (status != DFS_OK) {
        snprintf(why, sizeof why, "%s", message);
        damage = status == DFS_EDATALOSS   ? DAMAGE_CORRUPT
                 : status == DFS_ENOTFOUND ? DAMAGE_MISSING
                                           : DAMAGE_NONE;
    } else if (f->got != job->cell)
        snprintf(why, sizeof why, "the stream ended after %" PRIu64 " of %" PRIu64 " bytes", f->got,
                 job->cell);
    free(pending);
    if (why[0] == '\0') {
        st->state[f->frag] = CELL_DONE;
    } else {
        st->state[f->frag] = CELL_LOST;
        drop_fragment(job, f->frag, damage, why);
        stripe_refill(job, st);
    }
    if (job->error == DFS_OK)
        stripe_check(st);
}

static void start_fetch(struct ec_job *job, struct ec_stripe *st, unsigned frag)
{
    struct ec_fetch *f = NULL;
    for (size_t i = 0; i < job->nfetches && f == NULL; i++)
        if (job->fetches[i].call == NULL && !job->fetches[i].deferred)
            f = &job->fetches[i];
    if (f == NULL) {
        fail_job(job, DFS_EINTERNAL, strdup("no free fetch slot"));
        return;
    }
    const Dfs__V1__Fragment *fr = job->frags[frag].frag;
    char *err = NULL;
    if (fr->n_replicas == 0 ||
        (f->link = dfs_links_get(job->ctx->links, fr->replicas[0]->address, &err)) == NULL) {
        fail_job(job, DFS_ENOMEM, err);
        return;
    }
    f->st = st;
    f->frag = frag;
    f->got = 0;
    f->deferred = true;
    job->running++;
    st->fetching++;
    st->state[frag] = CELL_FETCHING;
    /* A link (or the transfer) in debt: start this cell once it is paid off. */
    int64_t now = dfs_clock_mono_ns();
    int64_t w1 = dfs_bucket_charge(dfs_link_bucket(f->link), 0, now);
    int64_t w2 = job->ctx->global != NULL ? dfs_bucket_charge(job->ctx->global, 0, now) : 0;
    int64_t wait = w1 > w2 ? w1 : w2;
    if (wait > 0)
        dfs_rpc_loop_timer_arm(job->ctx->loop, &f->pace, now + wait);
    else
        begin_call(f);
}

/* Start the GetFragment call of a slot prepared by start_fetch. */
static void begin_call(struct ec_fetch *f)
{
    struct ec_job *job = f->job;
    struct ec_stripe *st = f->st;
    f->deferred = false;
    if (job->error != DFS_OK) {
        /* Failed meanwhile: release the slot as fetch_done would. */
        job->running--;
        st->fetching--;
        return;
    }
    const Dfs__V1__Fragment *fr = job->frags[f->frag].frag;
    /* Still in debt (another fetch charged meanwhile): wait again. */
    int64_t now = dfs_clock_mono_ns();
    int64_t w1 = dfs_bucket_charge(dfs_link_bucket(f->link), 0, now);
    int64_t w2 = job->ctx->global != NULL ? dfs_bucket_charge(job->ctx->global, 0, now) : 0;
    if (w1 > 0 || w2 > 0) {
        f->deferred = true;
        dfs_rpc_loop_timer_arm(job->ctx->loop, &f->pace, now + (w1 > w2 ? w1 : w2));
        return;
    }
    /* The cell's bytes are charged up front: that paces the requests themselves. */
    dfs_bucket_charge(dfs_link_bucket(f->link), job->cell, now);
    if (job->ctx->global != NULL)
        dfs_bucket_charge(job->ctx->global, job->cell, now);
    if (dfs_rpc_ccall_start(job->ctx->loop, dfs_link_channel(f->link),
                            "/dfs.v1.Storage/GetFragment", -1, fetch_done, f, &f->call) != DFS_OK) {
        f->call = NULL;
        job->running--;
        st->fetching--;
        fail_job(job, DFS_EINTERNAL, strdup("cannot start a call"));
        return;
    }
    Dfs__V1__GetFragmentRequest req = DFS__V1__GET_FRAGMENT_REQUEST__INIT;
    req.fragment_id = fr->fragment_id;
    req.ticket = fr->replicas[0]->ticket;
    req.offset = st->s * job->cell;
    req.length = job->cell;
    progress(f);
    dfs_rpc_ccall_send(f->call, &req.base, true, NULL, NULL);
    dfs_rpc_ccall_recv_raw(f->call, chunk_received, f);
}

/* Streaming: the next stripe is too far ahead of the reader to start now. */
static bool held_back(const struct ec_job *job)
{
    return job->ctx->drain != NULL &&
           job->next_stripe * job->k * job->cell >= dfs_drain_emitted(job->ctx->drain) + AHEAD;
}

static void activate_next(struct ec_job *job)
{
    while (job->error == DFS_OK && job->next_stripe < job->end_stripe && !held_back(job)) {
        struct ec_stripe *st = NULL;
        for (unsigned i = 0; i < job->max_active && st == NULL; i++)
            if (!job->stripes[i].active)
                st = &job->stripes[i];
        if (st == NULL)
            return;
        memset(st->state, CELL_IDLE, sizeof st->state);
        st->active = true;
        st->s = job->next_stripe++;
        for (unsigned i = 0; i < job->k && job->error == DFS_OK; i++) {
            if (job->frags[i].bad)
                st->state[i] = CELL_LOST;
            else
                start_fetch(job, st, i);
        }
        stripe_refill(job, st);
        stripe_check(st);
    }
}

/* Rebuild the stripe's lost data cells from the cells it has, and write them. */
static int rebuild(struct ec_job *job, struct ec_stripe *st, char **errmsg)
{
    bool have[DFS_EC_MAX_FRAGMENTS] = {false}, want[DFS_EC_MAX_FRAGMENTS] = {false};
    for (unsigned i = 0; i < job->k + job->m; i++) {
        bool data = i < job->k;
        if (st->state[i] == CELL_DONE)
            have[i] = true;
        else if (data)
            want[i] = true;
        if ((have[i] || want[i]) && st->buf[i] == NULL && (st->buf[i] = malloc(job->cell)) == NULL)
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        if (have[i] && data) {
            /* Read the data cell back from the file; past the file's end it is zero padding. */
            uint64_t r = st->s * job->k + i, n = cell_in_file(job, r), got = 0;
            while (got < n) {
                ssize_t k = pread(job->ctx->fd, st->buf[i] + got, (size_t)(n - got),
                                  (off_t)(r * job->cell + got));
                if (k < 0 && errno == EINTR)
                    continue;
                if (k <= 0)
                    return dfs_seterr_errno(errmsg, DFS_EIO, k < 0 ? errno : EIO,
                                            "cannot read back the local file");
                got += (uint64_t)k;
            }
            memset(st->buf[i] + n, 0, (size_t)(job->cell - n));
        }
    }
    int rc = dfs_ec_reconstruct(job->ec, job->cell, st->buf, have, want, errmsg);
    if (rc != DFS_OK)
        return rc;
    for (unsigned i = 0; i < job->k; i++)
        job->ctx->rebuilt += want[i];
    uint32_t crcs[DFS_CHUNK_MAX_PIECES];
    for (unsigned i = 0; i < job->k; i++) {
        if (!want[i])
            continue;
        size_t nb = dfs_crc32c_nblocks(job->cell);
        dfs_crc32c_blocks(st->buf[i], job->cell, crcs);
        record_crcs(job, i, st->s * job->cell, crcs, nb);
        uint64_t r = st->s * job->k + i, n = cell_in_file(job, r);
        struct iovec iov = {st->buf[i], (size_t)n};
        int e = n > 0 ? dfs_pwritev_all(job->ctx->fd, &iov, 1, r * job->cell) : 0;
        if (e != 0)
            return dfs_seterr_errno(errmsg, dfs_err_from_errno(e), e,
                                    "cannot write the local file");
        if (n > 0 && job->ctx->hash != NULL)
            dfs_filehash_advance(job->ctx->hash, (size_t)r, n);
    }
    return DFS_OK;
}

/* A stripe is finished when nothing is in flight and every data cell is in the file. */
static void stripe_check(struct ec_stripe *st)
{
    struct ec_job *job = st->job;
    if (!st->active || st->fetching > 0 || job->error != DFS_OK)
        return;
    bool lost = false;
    for (unsigned i = 0; i < job->k; i++) {
        if (st->state[i] == CELL_LOST)
            lost = true;
        else if (st->state[i] != CELL_DONE)
            return;
    }
    if (lost) {
        char *err = NULL;
        int rc = rebuild(job, st, &err);
        if (rc != DFS_OK) {
            fail_job(job, rc, err);
            return;
        }
    }
    /* Streaming: the stripe's cells go out only now, complete (rebuilt ones included): the drain
       drops what it sent, and a rebuild reads the stripe's cells back from the scratch file. */
    for (unsigned i = 0; job->ctx->drain != NULL && i < job->k; i++) {
        uint64_t r = st->s * job->k + i, n = cell_in_file(job, r);
        if (n > 0)
            dfs_drain_advance(job->ctx->drain, (size_t)(r - job->first_cell), n);
    }
    for (unsigned i = 0; i < job->k + job->m; i++) {
        free(st->buf[i]);
        st->buf[i] = NULL;
    }
    st->active = false;
    job->stripes_done++;
    activate_next(job);
}

int dfs_ec_fetch(struct dfs_fetch_ctx *ctx, char **errmsg)
{
    const Dfs__V1__FileInfo *file = ctx->file;
    const Dfs__V1__Redundancy *red = file->redundancy;
    struct ec_job *job = calloc(1, sizeof *job);
    if (job == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    job->ctx = ctx;
    job->k = red->data;
    job->m = red->parity;
    job->cell = file->cell_size;
    job->size = file->size;
    int rc = DFS_OK;
    if (job->k == 0 || job->k + job->m > DFS_EC_MAX_FRAGMENTS ||
        file->n_fragments != job->k + job->m || job->cell > DFS_CHUNK ||
        (job->cell == 0 && file->size > 0) ||
        (job->cell > 0 && file->fragment_size % job->cell != 0))
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "the catalog's erasure-code layout is inconsistent");
    if (rc == DFS_OK)
        rc = dfs_ec_create(job->k, job->m, &job->ec, errmsg);
    job->nstripes = job->cell > 0 ? file->fragment_size / job->cell : 0;
    if (rc == DFS_OK && job->nstripes * job->k * job->cell < file->size)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "the catalog's fragments are smaller than the file");
    for (unsigned i = 0; rc == DFS_OK && i < job->k + job->m; i++) {
        struct ec_frag *fr = &job->frags[i];
        fr->frag = file->fragments[i];
        if (fr->frag->index != i || fr->frag->size != file->fragment_size)
            rc = dfs_seterr(errmsg, DFS_EINTERNAL, "the catalog's fragment %u is inconsistent", i);
        else if (fr->frag->n_replicas == 0 ||
                 fr->frag->replicas[0]->node_state == DFS__V1__NODE_STATE__NODE_DEAD)
            drop_fragment(job, i, DAMAGE_NONE,
                          fr->frag->n_replicas == 0 ? "no copy" : "its node is dead");
        if (i < job->k) {
            fr->nblocks = dfs_crc32c_nblocks(fr->frag->size);
            if ((fr->crcs = calloc(fr->nblocks + 1, sizeof *fr->crcs)) == NULL)
                rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
    }
    /* The stripes to fetch: all, or (streaming) those holding bytes [from, to). */
    uint64_t ncells = job->cell > 0 ? (file->size + job->cell - 1) / job->cell : 0;
    bool stream = ctx->out_fd >= 0;
    job->first_stripe = 0;
    job->end_stripe = job->nstripes;
    if (rc == DFS_OK && stream && (ctx->from > ctx->to || ctx->to > file->size))
        rc = dfs_seterr(errmsg, DFS_ERANGE, "the range is outside the file");
    if (rc == DFS_OK && stream && !(ctx->from == 0 && ctx->to == file->size)) {
        if (ctx->to == ctx->from) {
            job->end_stripe = job->first_stripe = 0;
        } else {
            job->first_stripe = ctx->from / job->cell / job->k;
            job->end_stripe = (ctx->to - 1) / job->cell / job->k + 1;
        }
    }
    job->first_cell = job->first_stripe * job->k;
    job->end_cell = job->end_stripe * job->k < ncells ? job->end_stripe * job->k : ncells;
    if (job->first_cell > job->end_cell)
        job->first_cell = job->end_cell;
    job->next_stripe = job->first_stripe;
    bool whole = job->first_stripe == 0 && job->end_stripe == job->nstripes;
    if (rc == DFS_OK && stream) {
        size_t n = (size_t)(job->end_cell - job->first_cell);
        uint64_t *starts = calloc(n + 1, sizeof *starts);
        for (size_t i = 0; starts != NULL && i < n; i++)
            starts[i] = (job->first_cell + i) * job->cell;
        struct dfs_drain_config dc = {
            .scratch_fd = ctx->fd,
            .out_fd = ctx->out_fd,
            .starts = starts,
            .nregions = n,
            .end = job->end_cell * job->cell < file->size ? job->end_cell * job->cell : file->size,
            .from = n > 0 ? ctx->from : 0,
            .to = n > 0 ? ctx->to : 0,
            .hash = ctx->from == 0 && ctx->to == file->size,
        };
        rc = starts == NULL ? dfs_seterr(errmsg, DFS_ENOMEM, "out of memory")
                            : dfs_drain_start(&dc, &ctx->drain, errmsg);
        free(starts);
    } else if (rc == DFS_OK) {
        /* The hash follows the file cell by cell (cells are the regions written front to back). */
        uint64_t *starts = calloc(ncells + 1, sizeof *starts);
        for (uint64_t r = 0; starts != NULL && r < ncells; r++)
            starts[r] = r * job->cell;
        rc = starts == NULL ? dfs_seterr(errmsg, DFS_ENOMEM, "out of memory")
             : ncells == 0  ? dfs_filehash_start(ctx->fd, 0, &ctx->hash, errmsg)
                            : dfs_filehash_start_follow(ctx->fd, file->size, starts, (size_t)ncells,
                                                        &ctx->hash, errmsg);
        free(starts);
    }
    /* A few stripes at once: enough cells in flight to keep every node busy, bounded memory. */
    job->max_active = job->k > 0 ? 24 / job->k : 1;
    if (job->max_active < 2)
        job->max_active = 2;
    if (job->max_active > MAX_ACTIVE)
        job->max_active = MAX_ACTIVE;
    job->nfetches = (size_t)job->max_active * (job->k + job->m);
    job->fetches = calloc(job->nfetches, sizeof *job->fetches);
    if (rc == DFS_OK && job->fetches == NULL)
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    for (size_t i = 0; rc == DFS_OK && i < job->nfetches; i++) {
        job->fetches[i].job = job;
        dfs_rpc_timer_init(&job->fetches[i].stall, stall_fired);
        dfs_rpc_timer_init(&job->fetches[i].pace, pace_fired);
    }
    for (unsigned i = 0; i < MAX_ACTIVE; i++)
        job->stripes[i].job = job;

    /*
     * Passes: normally one. A data fragment whose blocks each check but do not make the catalog's
     * checksum (its node announced the catalog's checksum over other data) is dropped, and the
     * file fetched again with that fragment rebuilt from parity, while parity is left (a stream
     * cannot: it has sent what it read).
     */
    for (unsigned pass = 0; rc == DFS_OK; pass++) {
        activate_next(job);
        for (;;) {
            /* Streaming: stripes held back (too far ahead of the reader) start once it caught up. */
            bool waiting =
                ctx->drain != NULL && job->error == DFS_OK && job->next_stripe < job->end_stripe;
            if (job->running == 0 && !waiting)
                break;
            if (waiting)
                activate_next(job);
            dfs_rpc_loop_run_once(ctx->loop, waiting ? 10 : 100);
            if (ctx->interrupted != NULL && *ctx->interrupted && job->error == DFS_OK)
                fail_job(job, DFS_ECANCELED, strdup("interrupted"));
            int drc = ctx->drain != NULL ? dfs_drain_failed(ctx->drain) : DFS_OK;
            if (drc != DFS_OK && job->error == DFS_OK)
                fail_job(job, drc, strdup("the output was closed"));
        }
        if (job->error == DFS_OK && job->stripes_done != job->end_stripe - job->first_stripe)
            fail_job(job, DFS_EINTERNAL, strdup("the transfer stopped before the end"));
        /* Every data fragment as a whole, fetched or rebuilt, against the catalog (a part of the
           file: its fragments were not all read, their block CRCs were all the check). */
        bool again = false;
        for (unsigned i = 0; whole && job->error == DFS_OK && i < job->k; i++) {
            struct ec_frag *fr = &job->frags[i];
            uint32_t sum = dfs_crc32c_of_table(fr->crcs, fr->nblocks);
            if (sum == fr->frag->checksum)
                continue;
            char why[128];
            snprintf(why, sizeof why, "its blocks make checksum %08x, the catalog says %08x", sum,
                     fr->frag->checksum);
            if (!fr->bad && !stream && pass < job->m) {
                drop_fragment(job, i, DAMAGE_WRONG_CHECKSUM, why);
                again = true;
                continue;
            }
            char *err = NULL;
            dfs_seterr(&err, DFS_EDATALOSS, "fragment %u of %s: %s", i, file->path, why);
            fail_job(job, DFS_EDATALOSS, err);
        }
        if (!again || job->error != DFS_OK)
            break;
        if (ctx->hash != NULL)
            dfs_filehash_invalidate(ctx->hash);
        job->next_stripe = job->first_stripe;
        job->stripes_done = 0;
        for (unsigned i = 0; i < job->k; i++)
            memset(job->frags[i].crcs, 0, job->frags[i].nblocks * sizeof *job->frags[i].crcs);
    }
    if (rc == DFS_OK) {
        rc = job->error;
        if (rc != DFS_OK)
            dfs_seterr(errmsg, rc, "%s", job->errmsg != NULL ? job->errmsg : dfs_strerror(rc));
    }
    for (unsigned i = 0; i < MAX_ACTIVE; i++)
        for (unsigned c = 0; c < DFS_EC_MAX_FRAGMENTS; c++)
            free(job->stripes[i].buf[c]);
    for (size_t i = 0; job->fetches != NULL && i < job->nfetches; i++)
        free(job->fetches[i].pending_msg);
    for (unsigned i = 0; i < DFS_EC_MAX_FRAGMENTS; i++) {
        free(job->frags[i].crcs);
        free(job->frags[i].why);
    }
    free(job->fetches);
    free(job->errmsg);
    dfs_ec_destroy(job->ec);
    free(job);
    return rc;
}
