/* A storage node's repairer: worker threads that copy or rebuild fragments from other nodes. */
#include "services/storage/repair.h"

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/id.h"
#include "common/log.h"
#include "common/throttle.h"
#include "services/rpc/client.h"
#include "services/rpc/loop.h"
#include "services/rpc/pool.h"
#include "services/rpc/status.h"
#include "services/validate/validate.h"
#include "storage/ec.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GET_METHOD       "/dfs.v1.Storage/GetFragment"
#define DEFAULT_WORKERS  2
#define DEFAULT_STALL_MS 30000
/* How long a worker waits on its loop before it looks at cancel, deadline and stalls again. */
#define POLL_MS          20
/* The bucket's burst: one GetFragment message. */
#define BURST_BYTES      (1u << 20)
/* Cells of one rebuild batch, over all the sources and the output. */
#define EC_BATCH_BYTES   (8u << 20)
/* Most channels the repairer keeps (one per source address; freed with the repairer). */
#define CHANNELS_MAX     1024
/* Most CRCs of one received message we check (4 MiB of data; our servers send 1 MiB). */
#define MSG_MAX_CRCS     64
/* Room for the per-source reasons in a failure message. */
#define WHY_MAX          1536

struct worker {
    dfs_repairer *r;
    pthread_t thread;
    bool started;
    dfs_rpc_loop *loop;
};

struct dfs_repairer {
    dfs_frag_store *store; /* borrowed */
    dfs_rpc_pool *sources; /* a channel per source address, kept until destroy */
    int64_t stall_ms;
    struct worker *workers;
    int nworkers;

    /* mu guards the queue and stopping; cv wakes idle workers. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct dfs_repair_job **queue; /* FIFO ring */
    size_t qhead, qlen, qcap;
    bool stopping;
    struct dfs_repair_job *running[64]; /* by worker: what destroy must cancel */

    /* The one bucket every worker charges; bucket_mu guards it alone. */
    pthread_mutex_t bucket_mu;
    dfs_bucket bucket;

    void (*on_bad_source)(void *arg, const Dfs__V1__Ticket *ticket, int damage, const char *detail);
    void *bad_source_arg;

    _Atomic uint64_t nrunning, ok, failed, bytes_read;
};

/* ---- small helpers ---- */

/* A peer's text made printable, for messages and log lines. */
static void clean_text(const char *s, char *out, size_t cap)
{
    size_t i = 0;
    for (; s != NULL && s[i] != '\0' && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c < 0x20 || c >= 0x7f || c == '"' ? '?' : (char)c;
    }
    out[i] = '\0';
}

/* Fold block CRCs into a fragment checksum computed in order (dfs_crc32c_of_table, piecewise). */
static uint32_t table_crc(uint32_t sum, const uint32_t *crcs, size_t n)
{
    for (size_t b = 0; b < n; b++) {
        uint8_t le[4] = {(uint8_t)crcs[b], (uint8_t)(crcs[b] >> 8), (uint8_t)(crcs[b] >> 16),
                         (uint8_t)(crcs[b] >> 24)};
        sum = dfs_crc32c(sum, le, 4);
    }
    return sum;
}

/* Append "addr: reason; " to a job's list of reasons (truncated when long). */
static void why_add(char *why, const char *addr, const char *reason)
{
    size_t n = strlen(why);
    if (n + 4 >= WHY_MAX)
        return;
    char clean[400];
    clean_text(reason, clean, sizeof clean);
    snprintf(why + n, WHY_MAX - n, "%s%s: %s", n > 0 ? "; " : "", addr, clean);
}

/* ---- one job's context on its worker ---- */

struct run {
    struct worker *w;
    dfs_repairer *r;
    struct dfs_repair_job *job;
    const Dfs__V1__RepairFragmentRequest *req;
};

/* DFS_OK, or why the job must stop now (cancel, deadline). */
static int run_check(struct run *x, char **err)
{
    const char *id = x->req != NULL ? x->req->fragment_id : x->job->verify_id;
    const char *what = x->req != NULL ? "repair" : "check";
    if (atomic_load(&x->job->cancel))
        return dfs_seterr(err, DFS_ECANCELED, "fragment %s: %s cancelled", id, what);
    if (dfs_clock_mono_ns() >= x->job->deadline_ns)
        return dfs_seterr(err, DFS_ETIMEDOUT, "fragment %s: %s deadline passed", id, what);
    return DFS_OK;
}

/* The timeout of a source call: what is left of the job's deadline (-1: none). */
static int64_t run_timeout_ms(struct run *x)
{
    if (x->job->deadline_ns == INT64_MAX)
        return -1;
    int64_t left = (x->job->deadline_ns - dfs_clock_mono_ns()) / 1000000;
    return left > 1 ? left : 1;
}

/*
 * Charge n received bytes to the shared bucket and wait out any debt, running the worker's loop
 * meanwhile (the other sources' messages keep arriving). Returns DFS_OK or run_check's code.
 */
static int run_charge(struct run *x, uint64_t n, char **err)
{
    atomic_fetch_add(&x->r->bytes_read, n);
    x->job->bytes_read += n;
    pthread_mutex_lock(&x->r->bucket_mu);
    int64_t wait = dfs_bucket_charge(&x->r->bucket, n, dfs_clock_mono_ns());
    pthread_mutex_unlock(&x->r->bucket_mu);
    int64_t until = dfs_clock_mono_ns() + wait;
    for (;;) {
        int rc = run_check(x, err);
        if (rc != DFS_OK)
            return rc;
        int64_t left = until - dfs_clock_mono_ns();
        if (left <= 0)
            return DFS_OK;
        int64_t ms = left / 1000000 + 1;
        dfs_rpc_loop_run_once(x->w->loop, ms < POLL_MS ? ms : POLL_MS);
    }
}

/* ---- a GetFragment stream read from a worker thread ---- */

/*
 * Callbacks run on the worker's loop, i.e. on the worker thread itself inside run_once, so the
 * fields need no lock. At most one received message waits in `msg`; the next receive starts when
 * it is taken, so memory per stream stays at one message.
 */
struct stream {
    struct run *x;
    const char *addr;
    dfs_rpc_ccall *call; /* NULL once done came (or before open) */
    bool open;           /* opened and not yet closed */
    bool ended;          /* done came: status and message are set */
    bool eos;            /* the server's stream ended */
    bool recv_busy;
    int status;
    char message[400];
    Dfs__V1__GetFragmentResponse *msg;
    bool first;      /* the next message is the first */
    int64_t last_ns; /* when the stream last made progress (stall detection) */
};

static void stream_recv_cb(dfs_rpc_ccall *call, void *arg, ProtobufCMessage *msg, int status)
{
    (void)call;
    struct stream *s = arg;
    s->recv_busy = false;
    s->last_ns = dfs_clock_mono_ns();
    if (msg != NULL)
        s->msg = (Dfs__V1__GetFragmentResponse *)msg;
    else if (status == DFS_OK)
        s->eos = true;
    /* else the call failed: done says why */
}

static void stream_done_cb(dfs_rpc_ccall *call, void *arg, int status, const char *message)
{
    (void)call;
    struct stream *s = arg;
    s->call = NULL;
    s->ended = true;
    s->status = status;
    clean_text(message, s->message, sizeof s->message);
    s->last_ns = dfs_clock_mono_ns();
}

static void stream_recv(struct stream *s)
{
    if (s->call == NULL || s->recv_busy || s->eos || s->msg != NULL)
        return;
    if (dfs_rpc_ccall_recv(s->call, &dfs__v1__get_fragment_response__descriptor, stream_recv_cb,
                           s) == DFS_OK)
        s->recv_busy = true;
    else
        dfs_rpc_ccall_cancel_with(s->call, DFS_EINTERNAL, "cannot receive");
}

/* Open GetFragment{id, offset, length} to addr. On failure the stream is not open. */
static int stream_open(struct stream *s, struct run *x, const char *addr, const char *id,
                       const Dfs__V1__Ticket *ticket, uint64_t offset, uint64_t length, char **err)
{
    memset(s, 0, sizeof *s);
    s->x = x;
    s->addr = addr;
    s->first = true;
    dfs_rpc_channel *ch = NULL;
    int rc = dfs_rpc_pool_get(x->r->sources, addr, &ch, NULL, err);
    if (rc != DFS_OK)
        return rc;
    rc = dfs_rpc_ccall_start(x->w->loop, ch, GET_METHOD, run_timeout_ms(x), stream_done_cb, s,
                             &s->call);
    if (rc != DFS_OK)
        return dfs_seterr(err, rc, "cannot start a call");
    s->open = true;
    s->last_ns = dfs_clock_mono_ns();
    Dfs__V1__GetFragmentRequest req = DFS__V1__GET_FRAGMENT_REQUEST__INIT;
    req.fragment_id = (char *)id;
    req.offset = offset;
    req.length = length;
    req.ticket = (Dfs__V1__Ticket *)ticket;
    if (dfs_rpc_ccall_send(s->call, &req.base, true, NULL, NULL) != DFS_OK)
        dfs_rpc_ccall_cancel_with(s->call, DFS_EINTERNAL, "cannot send the request");
    stream_recv(s);
    return DFS_OK;
}

/* Cancel the call if it still runs and wait for its end; frees what the stream holds. */
static void stream_close(struct stream *s)
{
    if (!s->open)
        return;
    if (s->call != NULL)
        dfs_rpc_ccall_cancel(s->call);
    while (!s->ended)
        dfs_rpc_loop_run_once(s->x->w->loop, POLL_MS);
    if (s->msg != NULL)
        dfs__v1__get_fragment_response__free_unpacked(s->msg, NULL);
    s->msg = NULL;
    s->open = false;
}

/*
 * What the stream has for its reader, without waiting:
 *   1  a message: *out (owned by the caller); the next receive has started
 *   0  nothing yet
 *   2  the stream ended cleanly (every message was taken)
 *  <0  it failed: a DFS_E code with *err "STATUS: message"
 */
static int stream_poll(struct stream *s, Dfs__V1__GetFragmentResponse **out, char **err)
{
    if (s->msg != NULL) {
        *out = s->msg;
        s->msg = NULL;
        stream_recv(s);
        return 1;
    }
    if (s->ended) {
        /* OK without our having seen the end of the stream is fine too: done can come while no
           receive is outstanding (we held a message), and chttp2 completes the status only once
           every message frame was consumed. Callers check the byte count anyway. */
        if (s->status == DFS_OK)
            return 2;
        int code = s->status != DFS_OK ? s->status : DFS_EINTERNAL;
        return dfs_seterr(err, code, "%s: %s", dfs_rpc_status_name(dfs_rpc_status_from_err(code)),
                          s->message[0] != '\0' ? s->message : "the stream ended early");
    }
    if (dfs_clock_mono_ns() - s->last_ns > s->x->r->stall_ms * 1000000)
        return dfs_seterr(err, DFS_EUNAVAIL, "sent nothing for %" PRId64 " ms", s->x->r->stall_ms);
    return 0;
}

/* Check a message's data against the CRCs it carries (pieces counted from its data's start). */
static bool msg_crcs_ok(const Dfs__V1__GetFragmentResponse *m, uint32_t *scratch, size_t cap)
{
    size_t n = dfs_crc32c_nblocks(m->data.len);
    if (m->n_crc32c != n || n > cap)
        return false;
    dfs_crc32c_blocks(m->data.data, m->data.len, scratch);
    return memcmp(scratch, m->crc32c, n * sizeof *scratch) == 0;
}

/* ---- copy from one source ---- */

/* dfs.v1.Damage numbers (services/storage/repair.h): what a skipped source's copy had wrong. */
enum { DAMAGE_NONE = 0, DAMAGE_CORRUPT = 1, DAMAGE_WRONG_CHECKSUM = 2, DAMAGE_MISSING = 3 };

/* The damage a failed stream's status shows (DATA_LOSS: a corrupt block; NOT_FOUND: no copy). */
static int damage_of_status(int code)
{
    return code == DFS_EDATALOSS ? DAMAGE_CORRUPT : code == DFS_ENOTFOUND ? DAMAGE_MISSING : 0;
}

/* Tell the owner about a damaged source (see dfs_repairer_config.on_bad_source). */
static void bad_source(struct run *x, const Dfs__V1__Ticket *ticket, int damage, const char *why)
{
    if (damage == DAMAGE_NONE || x->r->on_bad_source == NULL || ticket == NULL)
        return;
    x->r->on_bad_source(x->r->bad_source_arg, ticket, damage, why);
}

/* Is a failure of the writer this node's own (disk, memory), not the data's? */
static bool local_failure(int rc)
{
    return rc == DFS_ENOSPC || rc == DFS_EIO || rc == DFS_ENOMEM || rc == DFS_EPERM;
}

/*
 * Copy the fragment from addr. Returns DFS_OK (durable, checksum as expected); a code from
 * run_check or a local failure, which ends the job; or DFS_EUNAVAIL with *err for a failure of
 * the source (the caller tries the next one), with *damage saying whether the source's copy was
 * damaged (not merely unreachable).
 */
static int copy_from(struct run *x, const char *addr, const Dfs__V1__Ticket *ticket, int *damage,
                     char **err)
{
    *damage = DAMAGE_NONE;
    const Dfs__V1__RepairFragmentRequest *req = x->req;
    struct stream s;
    char *serr = NULL;
    int rc = stream_open(&s, x, addr, req->fragment_id, ticket, 0, 0, &serr);
    if (rc != DFS_OK) {
        dfs_seterr(err, local_failure(rc) ? rc : DFS_EUNAVAIL, "%s",
                   serr != NULL ? serr : dfs_strerror(rc));
        free(serr);
        return local_failure(rc) ? rc : DFS_EUNAVAIL;
    }
    dfs_frag_writer *w = NULL;
    uint64_t got = 0;
    uint32_t sum = 0;
    int result = DFS_OK;
    for (;;) {
        Dfs__V1__GetFragmentResponse *m = NULL;
        int p = stream_poll(&s, &m, &serr);
        if (p == 0) {
            if ((rc = run_check(x, err)) != DFS_OK) {
                result = rc;
                break;
            }
            dfs_rpc_loop_run_once(x->w->loop, POLL_MS);
            continue;
        }
        if (p < 0) {
            *damage = damage_of_status(p);
            result = dfs_seterr(err, DFS_EUNAVAIL, "%s", serr);
            break;
        }
        if (p == 2) {
            if (s.first || got != req->size)
                result = dfs_seterr(err, DFS_EUNAVAIL,
                                    "the stream ended after %" PRIu64 " of %" PRIu64 " bytes", got,
                                    req->size);
            break;
        }
        /* A message. */
        if (s.first) {
            s.first = false;
            if (m->header == NULL) {
                result = dfs_seterr(err, DFS_EUNAVAIL, "its first message has no header");
            } else if (m->header->size != req->size) {
                *damage = DAMAGE_WRONG_CHECKSUM;
                result = dfs_seterr(err, DFS_EUNAVAIL, "it holds %" PRIu64 " bytes, not %" PRIu64,
                                    m->header->size, req->size);
            } else if (m->checksum != req->checksum) {
                *damage = DAMAGE_WRONG_CHECKSUM;
                result = dfs_seterr(err, DFS_EUNAVAIL, "it holds checksum %08x, not %08x",
                                    m->checksum, req->checksum);
            } else {
                rc = dfs_frag_writer_begin(x->r->store, req->fragment_id, req->size, &w, &serr);
                if (rc != DFS_OK)
                    result = dfs_seterr(err, rc, "%s", serr);
            }
        }
        if (result == DFS_OK && m->data.len > 0) {
            /* The writer checks every block CRC (DFS_EDATALOSS) and the chunking (DFS_EINVAL). */
            rc =
                dfs_frag_writer_append(w, m->data.data, m->data.len, m->crc32c, m->n_crc32c, &serr);
            if (rc != DFS_OK) {
                if (rc == DFS_EDATALOSS)
                    *damage = DAMAGE_CORRUPT; /* a block arrived not matching its CRC */
                result = dfs_seterr(err, local_failure(rc) ? rc : DFS_EUNAVAIL, "%s", serr);
            } else {
                got += m->data.len;
                sum = table_crc(sum, m->crc32c, m->n_crc32c);
                result = run_charge(x, m->data.len, err);
            }
        }
        dfs__v1__get_fragment_response__free_unpacked(m, NULL);
        if (result != DFS_OK)
            break;
    }
    stream_close(&s);
    free(serr);
    serr = NULL;
    if (result == DFS_OK && sum != req->checksum) {
        *damage = DAMAGE_WRONG_CHECKSUM;
        result = dfs_seterr(err, DFS_EUNAVAIL, "its blocks make checksum %08x, not %08x", sum,
                            req->checksum);
    }
    if (result != DFS_OK) {
        dfs_frag_writer_abort(w);
        return result;
    }
    uint32_t checksum = 0;
    rc = dfs_frag_writer_commit(w, &checksum, &serr);
    if (rc != DFS_OK) {
        dfs_seterr(err, rc, "%s", serr);
        free(serr);
        return rc == DFS_EINVAL ? DFS_EUNAVAIL : rc;
    }
    x->job->checksum = checksum;
    return DFS_OK;
}

static int run_copy(struct run *x, char **err)
{
    const Dfs__V1__RepairFragmentRequest *req = x->req;
    if (req->n_sources == 0)
        return dfs_seterr(err, DFS_EPRECOND, "fragment %s: no source to copy from",
                          req->fragment_id);
    char why[WHY_MAX] = "";
    for (size_t i = 0; i < req->n_sources; i++) {
        int rc = run_check(x, err);
        if (rc != DFS_OK)
            return rc;
        char *serr = NULL;
        int damage = DAMAGE_NONE;
        rc = copy_from(x, req->sources[i], req->source_tickets[i], &damage, &serr);
        if (rc == DFS_OK) {
            snprintf(x->job->source, sizeof x->job->source, "%s", req->sources[i]);
            return DFS_OK;
        }
        if (rc != DFS_EUNAVAIL) { /* ours: cancel, deadline, disk */
            const char *why = serr != NULL ? serr : dfs_strerror(rc);
            if (strstr(why, req->fragment_id) != NULL) /* it names the fragment already */
                dfs_seterr(err, rc, "%s", why);
            else
                dfs_seterr(err, rc, "fragment %s: %s", req->fragment_id, why);
            free(serr);
            return rc;
        }
        dfs_log(damage != DAMAGE_NONE ? DFS_LOG_WARN : DFS_LOG_INFO,
                "repair source skipped id=%s source=%s damaged=%s err=%s", req->fragment_id,
                req->sources[i], damage != DAMAGE_NONE ? "yes" : "no", serr != NULL ? serr : "");
        bad_source(x, req->source_tickets[i], damage, serr);
        why_add(why, req->sources[i], serr);
        free(serr);
    }
    return dfs_seterr(err, DFS_EPRECOND, "fragment %s: no source served it (%s)", req->fragment_id,
                      why);
}

/* ---- rebuild from K other fragments ---- */

/* One of the K fragments being read: which candidate serves it now, and this batch's cells. */
struct slot {
    int cand;        /* index into erasure->sources; -1: none yet */
    struct stream s; /* open while cand >= 0 */
    uint8_t *buf;    /* nb * cell bytes of this batch */
    size_t filled;
    Dfs__V1__GetFragmentResponse *m; /* a message partly taken (its data continues at moff) */
    size_t moff;
};

struct rebuild {
    struct run *x;
    const Dfs__V1__ErasureRebuild *e;
    unsigned k, m;
    uint64_t cell, stripes;
    struct slot slots[DFS_EC_MAX_FRAGMENTS];
    bool *failed; /* by candidate */
    char why[WHY_MAX];
    unsigned used; /* candidates that served data */
    bool *served;  /* by candidate */
    uint32_t crcs[MSG_MAX_CRCS];
};

static void slot_reset(struct slot *sl)
{
    if (sl->cand >= 0)
        stream_close(&sl->s);
    if (sl->m != NULL)
        dfs__v1__get_fragment_response__free_unpacked(sl->m, NULL);
    sl->m = NULL;
    sl->moff = 0;
    sl->cand = -1;
    sl->filled = 0;
}

/* Is fragment index idx already read by another slot? */
static bool index_in_use(const struct rebuild *b, uint32_t idx, unsigned except)
{
    for (unsigned j = 0; j < b->k; j++)
        if (j != except && b->slots[j].cand >= 0 && b->e->sources[b->slots[j].cand]->index == idx)
            return true;
    return false;
}

/*
 * Give slot j a source, streaming its fragment from stripe s0 to the end. Returns DFS_OK,
 * DFS_EPRECOND when no candidate is left, or a local failure.
 */
static int slot_assign(struct rebuild *b, unsigned j, uint64_t s0, char **err)
{
    struct slot *sl = &b->slots[j];
    for (size_t c = 0; c < b->e->n_sources; c++) {
        const Dfs__V1__ErasureSource *src = b->e->sources[c];
        if (b->failed[c] || index_in_use(b, src->index, j))
            continue;
        char *serr = NULL;
        int rc = stream_open(&sl->s, b->x, src->address, src->fragment_id, src->ticket,
                             s0 * b->cell, (b->stripes - s0) * b->cell, &serr);
        if (rc != DFS_OK) {
            b->failed[c] = true;
            why_add(b->why, src->address, serr);
            free(serr);
            if (rc == DFS_ENOMEM)
                return dfs_seterr(err, rc, "out of memory");
            continue;
        }
        sl->cand = (int)c;
        sl->filled = 0;
        return DFS_OK;
    }
    unsigned have = 0;
    for (unsigned i = 0; i < b->k; i++)
        have += b->slots[i].cand >= 0;
    return dfs_seterr(err, DFS_EPRECOND,
                      "fragment %s: only %u of the %u fragments needed could be read (%s)",
                      b->x->req->fragment_id, have, b->k, b->why);
}

/* The slot's source failed (its copy damaged, or not): remember why and drop it (the batch
   restarts for that slot). */
static void slot_fail(struct rebuild *b, unsigned j, int damage, const char *why)
{
    struct slot *sl = &b->slots[j];
    const Dfs__V1__ErasureSource *src = b->e->sources[sl->cand];
    dfs_log(damage != DAMAGE_NONE ? DFS_LOG_WARN : DFS_LOG_INFO,
            "rebuild source dropped id=%s index=%u source=%s damaged=%s err=%s",
            b->x->req->fragment_id, src->index, src->address, damage != DAMAGE_NONE ? "yes" : "no",
            why);
    bad_source(b->x, src->ticket, damage, why);
    b->failed[sl->cand] = true;
    why_add(b->why, src->address, why);
    slot_reset(sl);
}

/* Copy what the slot's current message still holds into its batch buffer (up to need). */
static void slot_take(struct slot *sl, size_t need)
{
    size_t avail = sl->m->data.len - sl->moff;
    size_t n = need - sl->filled < avail ? need - sl->filled : avail;
    memcpy(sl->buf + sl->filled, sl->m->data.data + sl->moff, n);
    sl->filled += n;
    sl->moff += n;
    if (sl->moff == sl->m->data.len) {
        dfs__v1__get_fragment_response__free_unpacked(sl->m, NULL);
        sl->m = NULL;
        sl->moff = 0;
    }
}

/*
 * Advance slot j without waiting. Returns 1 when it made progress, 0 when it waits for its
 * source, or a code that ends the job (*err).
 */
static int slot_step(struct rebuild *b, unsigned j, uint64_t s0, size_t need, char **err)
{
    struct slot *sl = &b->slots[j];
    if (sl->cand < 0) {
        int rc = slot_assign(b, j, s0, err);
        return rc == DFS_OK ? 1 : rc;
    }
    if (sl->m != NULL) {
        slot_take(sl, need);
        return 1;
    }
    Dfs__V1__GetFragmentResponse *m = NULL;
    char *serr = NULL;
    int p = stream_poll(&sl->s, &m, &serr);
    if (p == 0)
        return 0;
    if (p < 0 || p == 2) {
        slot_fail(b, j, p < 0 ? damage_of_status(p) : DAMAGE_NONE,
                  p < 0 ? serr : "the stream ended early");
        free(serr);
        return 1;
    }
    const char *bad = NULL;
    int damage = DAMAGE_NONE;
    char text[160];
    const Dfs__V1__ErasureSource *src = b->e->sources[sl->cand];
    if (sl->s.first && m->header == NULL) {
        bad = "its first message has no header";
    } else if (sl->s.first && m->header->size != b->x->req->size) {
        snprintf(text, sizeof text, "it holds %" PRIu64 " bytes, not %" PRIu64, m->header->size,
                 b->x->req->size);
        bad = text;
        damage = DAMAGE_WRONG_CHECKSUM;
    } else if (sl->s.first && m->checksum != src->checksum) {
        /* A copy rewritten consistently with other data: every block matches its own CRC, only
           the fragment checksum tells it from the catalog's. */
        snprintf(text, sizeof text, "it holds checksum %08x, not %08x", m->checksum, src->checksum);
        bad = text;
        damage = DAMAGE_WRONG_CHECKSUM;
    } else if (!msg_crcs_ok(m, b->crcs, MSG_MAX_CRCS)) {
        bad = "DATA_LOSS: a block does not match its CRC";
        damage = DAMAGE_CORRUPT;
    }
    sl->s.first = false;
    if (bad != NULL) {
        dfs__v1__get_fragment_response__free_unpacked(m, NULL);
        slot_fail(b, j, damage, bad);
        return 1;
    }
    b->served[sl->cand] = true;
    uint64_t n = m->data.len;
    if (n == 0) {
        dfs__v1__get_fragment_response__free_unpacked(m, NULL);
    } else {
        sl->m = m;
        sl->moff = 0;
        slot_take(sl, need);
    }
    int rc = run_charge(b->x, n, err);
    return rc == DFS_OK ? 1 : rc;
}

/* Fill every slot's buffer with the batch's nb stripes. */
static int fill_batch(struct rebuild *b, uint64_t s0, size_t need, char **err)
{
    for (;;) {
        bool all = true, progressed = false;
        for (unsigned j = 0; j < b->k; j++) {
            if (b->slots[j].cand >= 0 && b->slots[j].filled == need)
                continue;
            all = false;
            int rc = slot_step(b, j, s0, need, err);
            if (rc < 0)
                return rc;
            progressed |= rc > 0;
        }
        if (all)
            return DFS_OK;
        if (!progressed) {
            int rc = run_check(b->x, err);
            if (rc != DFS_OK)
                return rc;
            dfs_rpc_loop_run_once(b->x->w->loop, POLL_MS);
        }
    }
}

static int run_rebuild(struct run *x, char **err)
{
    const Dfs__V1__RepairFragmentRequest *req = x->req;
    struct rebuild *b = calloc(1, sizeof *b);
    if (b == NULL)
        return dfs_seterr(err, DFS_ENOMEM, "out of memory");
    b->x = x;
    b->e = req->erasure;
    b->k = b->e->data;
    b->m = b->e->parity;
    b->cell = b->e->cell_size;
    b->stripes = req->size / b->cell;
    for (unsigned j = 0; j < DFS_EC_MAX_FRAGMENTS; j++)
        b->slots[j].cand = -1;
    uint64_t per = (uint64_t)(b->k + 1) * b->cell;
    uint64_t batch = EC_BATCH_BYTES / per > 0 ? EC_BATCH_BYTES / per : 1;
    if (batch > b->stripes)
        batch = b->stripes > 0 ? b->stripes : 1;
    size_t bytes = (size_t)(batch * b->cell);
    /* Output: the rebuilt cells after up to one block carried from the previous batch. */
    size_t outcap = (bytes + DFS_BLOCK_SIZE + 63) / 64 * 64;
    uint8_t *out = aligned_alloc(64, outcap);
    uint32_t *ocrcs = malloc((outcap / DFS_BLOCK_SIZE + 2) * sizeof *ocrcs);
    b->failed = calloc(b->e->n_sources + 1, sizeof *b->failed);
    b->served = calloc(b->e->n_sources + 1, sizeof *b->served);
    dfs_ec *ec = NULL;
    dfs_frag_writer *w = NULL;
    char *serr = NULL;
    int rc = out != NULL && ocrcs != NULL && b->failed != NULL && b->served != NULL
                 ? DFS_OK
                 : dfs_seterr(err, DFS_ENOMEM, "out of memory");
    for (unsigned j = 0; rc == DFS_OK && j < b->k; j++)
        if ((b->slots[j].buf = aligned_alloc(64, (bytes + 63) / 64 * 64)) == NULL)
            rc = dfs_seterr(err, DFS_ENOMEM, "out of memory");
    if (rc == DFS_OK && (rc = dfs_ec_create(b->k, b->m, &ec, &serr)) != DFS_OK)
        dfs_seterr(err, rc, "%s", serr);
    if (rc == DFS_OK) {
        unsigned distinct = 0;
        bool seen[DFS_EC_MAX_FRAGMENTS] = {false};
        for (size_t c = 0; c < b->e->n_sources; c++)
            if (!seen[b->e->sources[c]->index]) {
                seen[b->e->sources[c]->index] = true;
                distinct++;
            }
        if (distinct < b->k)
            rc = dfs_seterr(err, DFS_EPRECOND,
                            "fragment %s: %u sources of distinct fragments given; %u are needed",
                            req->fragment_id, distinct, b->k);
    }
    if (rc == DFS_OK &&
        (rc = dfs_frag_writer_begin(x->r->store, req->fragment_id, req->size, &w, &serr)) != DFS_OK)
        dfs_seterr(err, rc, "%s", serr);

    uint32_t sum = 0;
    size_t carry = 0; /* rebuilt bytes at the front of out not yet appended (< one block) */
    for (uint64_t s0 = 0; rc == DFS_OK && s0 < b->stripes; s0 += batch) {
        uint64_t nb = b->stripes - s0 < batch ? b->stripes - s0 : batch;
        size_t need = (size_t)(nb * b->cell);
        rc = fill_batch(b, s0, need, err);
        uint8_t *frags[DFS_EC_MAX_FRAGMENTS];
        bool have[DFS_EC_MAX_FRAGMENTS], want[DFS_EC_MAX_FRAGMENTS];
        for (uint64_t t = 0; rc == DFS_OK && t < nb; t++) {
            memset(frags, 0, sizeof frags);
            memset(have, 0, sizeof have);
            memset(want, 0, sizeof want);
            for (unsigned j = 0; j < b->k; j++) {
                uint32_t idx = b->e->sources[b->slots[j].cand]->index;
                frags[idx] = b->slots[j].buf + t * b->cell;
                have[idx] = true;
            }
            frags[b->e->index] = out + carry + t * b->cell;
            want[b->e->index] = true;
            if ((rc = dfs_ec_reconstruct(ec, (size_t)b->cell, frags, have, want, &serr)) != DFS_OK)
                dfs_seterr(err, rc, "%s", serr);
        }
        if (rc != DFS_OK)
            break;
        /* Whole blocks go now; the last batch also sends its short tail. */
        size_t total = carry + need;
        bool last = s0 + nb == b->stripes;
        size_t n = last ? total : total / DFS_BLOCK_SIZE * DFS_BLOCK_SIZE;
        size_t ncrcs = dfs_crc32c_nblocks(n);
        dfs_crc32c_blocks(out, n, ocrcs);
        if ((rc = dfs_frag_writer_append(w, out, n, ocrcs, ncrcs, &serr)) != DFS_OK) {
            dfs_seterr(err, rc, "%s", serr);
            break;
        }
        sum = table_crc(sum, ocrcs, ncrcs);
        carry = total - n;
        memmove(out, out + n, carry);
        for (unsigned j = 0; j < b->k; j++)
            b->slots[j].filled = 0;
    }
    for (unsigned j = 0; j < b->k; j++) {
        slot_reset(&b->slots[j]);
        free(b->slots[j].buf);
    }
    if (rc == DFS_OK && sum != req->checksum)
        rc = dfs_seterr(err, DFS_EPRECOND,
                        "fragment %s: the rebuilt fragment has checksum %08x, not %08x (the "
                        "sources or the request are wrong)",
                        req->fragment_id, sum, req->checksum);
    if (rc == DFS_OK) {
        uint32_t checksum = 0;
        dfs_frag_writer *cw = w;
        w = NULL;
        if ((rc = dfs_frag_writer_commit(cw, &checksum, &serr)) != DFS_OK)
            dfs_seterr(err, rc, "%s", serr);
        x->job->checksum = checksum;
    }
    dfs_frag_writer_abort(w);
    unsigned used = 0;
    for (size_t c = 0; c < b->e->n_sources; c++)
        used += b->served[c];
    snprintf(x->job->source, sizeof x->job->source, "rebuilt from %u fragments", used);
    free(serr);
    dfs_ec_destroy(ec);
    free(out);
    free(ocrcs);
    free(b->failed);
    free(b->served);
    free(b);
    return rc;
}

/* ---- jobs and workers ---- */

/*
 * Whether the store holds the fragment with the expected size and checksum, and every block of
 * it reads back whole: the header alone is not proof, since a copy whose data rotted (what the
 * scrubber reports) has a good header, and must be replaced, not confirmed. A local read: not
 * charged to the repair rate. Stops early (false) on cancel; the caller sees the cancel next.
 */
static bool already_present(struct run *x)
{
    const Dfs__V1__RepairFragmentRequest *req = x->req;
    dfs_frag_reader *rd = NULL;
    char *err = NULL;
    if (dfs_frag_reader_open(x->r->store, req->fragment_id, &rd, NULL) != DFS_OK)
        return false;
    bool same =
        dfs_frag_reader_size(rd) == req->size && dfs_frag_reader_checksum(rd) == req->checksum;
    uint8_t *buf = same && req->size > 0 ? malloc(BURST_BYTES) : NULL;
    uint32_t crcs[BURST_BYTES / DFS_BLOCK_SIZE];
    if (same && req->size > 0 && buf == NULL)
        same = false;
    for (uint64_t off = 0; same && off < req->size; off += BURST_BYTES) {
        size_t n = req->size - off < BURST_BYTES ? (size_t)(req->size - off) : BURST_BYTES;
        if (atomic_load(&x->job->cancel) ||
            dfs_frag_reader_read(rd, off, buf, n, crcs, &err) != DFS_OK)
            same = false;
    }
    if (err != NULL) {
        dfs_log(DFS_LOG_WARN, "repair replaces a corrupt copy id=%s err=\"%s\"", req->fragment_id,
                err);
        free(err);
    }
    free(buf);
    dfs_frag_reader_close(rd);
    return same;
}

/*
 * A verify job (dfs_repair_job.verify_id): read the node's own copy whole, every block checked
 * against its stored CRC (the reader checks the header and the CRC table at open).
 */
static void run_verify(struct worker *w, struct dfs_repair_job *job)
{
    struct run x = {.w = w, .r = w->r, .job = job};
    dfs_frag_reader *rd = NULL;
    char *err = NULL;
    int rc = dfs_frag_reader_open(w->r->store, job->verify_id, &rd, &err);
    uint8_t *buf = NULL;
    uint32_t crcs[BURST_BYTES / DFS_BLOCK_SIZE];
    if (rc == DFS_OK) {
        job->size = dfs_frag_reader_size(rd);
        job->checksum = dfs_frag_reader_checksum(rd);
        if (job->size > 0 && (buf = malloc(BURST_BYTES)) == NULL)
            rc = dfs_seterr(&err, DFS_ENOMEM, "out of memory");
    }
    for (uint64_t off = 0; rc == DFS_OK && off < job->size; off += BURST_BYTES) {
        size_t n = job->size - off < BURST_BYTES ? (size_t)(job->size - off) : BURST_BYTES;
        if ((rc = run_check(&x, &err)) == DFS_OK)
            rc = dfs_frag_reader_read(rd, off, buf, n, crcs, &err);
    }
    free(buf);
    dfs_frag_reader_close(rd);
    job->status = rc;
    if (rc != DFS_OK) {
        job->message = err != NULL ? err : strdup(dfs_strerror(rc));
        err = NULL;
        if (rc == DFS_EDATALOSS || rc == DFS_EIO)
            dfs_log(DFS_LOG_WARN, "verify found a bad fragment id=%s err=%s", job->verify_id,
                    job->message);
    }
    free(err);
}

static void run_job(struct worker *w, struct dfs_repair_job *job)
{
    if (job->verify_id != NULL) {
        run_verify(w, job);
        return;
    }
    struct run x = {.w = w, .r = w->r, .job = job, .req = job->req};
    const Dfs__V1__RepairFragmentRequest *req = job->req;
    char *err = NULL;
    int64_t t0 = dfs_clock_mono_ns();
    int rc = run_check(&x, &err);
    if (rc == DFS_OK)
        rc = dfs_repair_check(req, &err);
    /* Idempotence: the fragment may be here already (a retried request, or another repair of
       it finished while this one was queued). */
    if (rc == DFS_OK && already_present(&x)) {
        snprintf(job->source, sizeof job->source, "already present");
        job->checksum = req->checksum;
    } else if (rc == DFS_OK) {
        /* Fail at once, not after gigabytes, when the fragment cannot fit. */
        struct dfs_frag_store_stats st;
        uint64_t need =
            DFS_FRAG_HEADER_SIZE + req->size + 4 * (uint64_t)dfs_crc32c_nblocks(req->size);
        if (dfs_frag_store_stats(w->r->store, &st) == DFS_OK && st.free_bytes < need)
            rc = dfs_seterr(&err, DFS_ENOSPC,
                            "fragment %s: %" PRIu64 " bytes do not fit in the %" PRIu64
                            " bytes free on this node",
                            req->fragment_id, need, st.free_bytes);
        else
            rc = req->erasure != NULL ? run_rebuild(&x, &err) : run_copy(&x, &err);
    }
    job->status = rc;
    double ms = (double)(dfs_clock_mono_ns() - t0) / 1e6;
    if (rc == DFS_OK) {
        job->size = req->size;
        atomic_fetch_add(&w->r->ok, 1);
        dfs_log(DFS_LOG_INFO,
                "repair done id=%s size=%" PRIu64 " source=\"%s\" bytes_read=%" PRIu64 " ms=%.1f",
                req->fragment_id, req->size, job->source, job->bytes_read, ms);
    } else {
        job->message = err != NULL ? err : strdup(dfs_strerror(rc));
        err = NULL;
        atomic_fetch_add(&w->r->failed, 1);
        char clean[1024];
        clean_text(job->message, clean, sizeof clean);
        dfs_log(rc == DFS_ECANCELED ? DFS_LOG_INFO : DFS_LOG_WARN,
                "repair failed id=%s status=%s bytes_read=%" PRIu64 " ms=%.1f err=\"%s\"",
                dfs_fragment_id_valid(req->fragment_id) ? req->fragment_id : "-",
                dfs_rpc_status_name(dfs_rpc_status_from_err(rc)), job->bytes_read, ms, clean);
    }
    free(err);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    dfs_repairer *r = w->r;
    int self = (int)(w - r->workers);
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (r->qlen == 0 && !r->stopping)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->qlen == 0)
            break; /* stopping, and nothing left to answer */
        struct dfs_repair_job *job = r->queue[r->qhead];
        r->qhead = (r->qhead + 1) % r->qcap;
        r->qlen--;
        if (r->stopping)
            atomic_store(&job->cancel, true);
        r->running[self] = job;
        atomic_fetch_add(&r->nrunning, 1);
        pthread_mutex_unlock(&r->mu);
        run_job(w, job);
        pthread_mutex_lock(&r->mu);
        r->running[self] = NULL;
        atomic_fetch_sub(&r->nrunning, 1);
        pthread_mutex_unlock(&r->mu);
        job->done(job);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int dfs_repair_check(const Dfs__V1__RepairFragmentRequest *req, char **errmsg)
{
    return dfs_validate_repair_fragment(req, errmsg);
}

static void free_repairer(dfs_repairer *r)
{
    if (r->workers != NULL)
        for (int i = 0; i < r->nworkers; i++)
            dfs_rpc_loop_destroy(r->workers[i].loop);
    dfs_rpc_pool_destroy(r->sources);
    free(r->workers);
    free(r->queue);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->bucket_mu);
    free(r);
}

int dfs_repairer_create(dfs_frag_store *store, const struct dfs_repairer_config *cfg,
                        dfs_repairer **out, char **errmsg)
{
    int workers = cfg != NULL && cfg->workers > 0 ? cfg->workers : DEFAULT_WORKERS;
    if (store == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "repairer: no fragment store");
    if (workers > 64)
        return dfs_seterr(errmsg, DFS_EINVAL, "repairer: at most 64 workers, not %d", workers);
    dfs_repairer *r = calloc(1, sizeof *r);
    if (r == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    r->store = store;
    r->on_bad_source = cfg != NULL ? cfg->on_bad_source : NULL;
    r->bad_source_arg = cfg != NULL ? cfg->bad_source_arg : NULL;
    r->stall_ms = cfg != NULL && cfg->stall_ms > 0 ? cfg->stall_ms : DEFAULT_STALL_MS;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    pthread_mutex_init(&r->bucket_mu, NULL);
    dfs_bucket_init(&r->bucket, cfg != NULL ? cfg->rate : 0, BURST_BYTES, dfs_clock_mono_ns());
    struct dfs_rpc_pool_config pool = {
        .security = cfg != NULL ? cfg->security : NULL,
        .max = CHANNELS_MAX,
        .full_message = "the repairer already keeps 1024 channels",
    };
    static_assert(CHANNELS_MAX == 1024, "the message names the limit");
    r->nworkers = workers;
    r->workers = calloc((size_t)workers, sizeof *r->workers);
    if (r->workers == NULL || dfs_rpc_pool_create(&pool, &r->sources, NULL) != DFS_OK) {
        free_repairer(r);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    for (int i = 0; i < workers; i++) {
        r->workers[i].r = r;
        if ((r->workers[i].loop = dfs_rpc_loop_create()) == NULL) {
            free_repairer(r);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
    }
    for (int i = 0; i < workers; i++) {
        if (pthread_create(&r->workers[i].thread, NULL, worker_main, &r->workers[i]) != 0) {
            dfs_repairer_destroy(r);
            return dfs_seterr(errmsg, DFS_ENOMEM, "repairer: cannot start a thread");
        }
        r->workers[i].started = true;
    }
    *out = r;
    return DFS_OK;
}

int dfs_repairer_submit(dfs_repairer *r, struct dfs_repair_job *job, char **errmsg)
{
    job->status = DFS_OK;
    job->message = NULL;
    job->size = 0;
    job->checksum = 0;
    job->bytes_read = 0;
    job->source[0] = '\0';
    pthread_mutex_lock(&r->mu);
    if (r->stopping) {
        pthread_mutex_unlock(&r->mu);
        return dfs_seterr(errmsg, DFS_EUNAVAIL, "the node is stopping");
    }
    if (r->qlen == r->qcap) {
        size_t cap = r->qcap > 0 ? 2 * r->qcap : 16;
        struct dfs_repair_job **q = malloc(cap * sizeof *q);
        if (q == NULL) {
            pthread_mutex_unlock(&r->mu);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < r->qlen; i++)
            q[i] = r->queue[(r->qhead + i) % r->qcap];
        free(r->queue);
        r->queue = q;
        r->qcap = cap;
        r->qhead = 0;
    }
    r->queue[(r->qhead + r->qlen) % r->qcap] = job;
    r->qlen++;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return DFS_OK;
}

void dfs_repairer_stats(dfs_repairer *r, struct dfs_repairer_stats *out)
{
    pthread_mutex_lock(&r->mu);
    out->queued = r->qlen;
    pthread_mutex_unlock(&r->mu);
    out->running = atomic_load(&r->nrunning);
    out->ok = atomic_load(&r->ok);
    out->failed = atomic_load(&r->failed);
    out->bytes_read = atomic_load(&r->bytes_read);
}

void dfs_repairer_count(dfs_repairer *r, bool ok)
{
    atomic_fetch_add(ok ? &r->ok : &r->failed, 1);
}

void dfs_repairer_destroy(dfs_repairer *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    for (size_t i = 0; i < r->qlen; i++)
        atomic_store(&r->queue[(r->qhead + i) % r->qcap]->cancel, true);
    for (int i = 0; i < r->nworkers; i++)
        if (r->running[i] != NULL)
            atomic_store(&r->running[i]->cancel, true);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < r->nworkers; i++)
        if (r->workers[i].started)
            pthread_join(r->workers[i].thread, NULL);
    free_repairer(r);
}
