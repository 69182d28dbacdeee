/* dfs put: every fragment to every node in parallel, then a two-phase commit. */
#include "client/put.h"

#include "client/chunkio.h"
#include "client/filehash.h"
#include "client/links.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/receipt.h"
#include "dfs/v1/metadata.pb-c.h"
#include "dfs/v1/storage.pb-c.h"
#include "services/rpc/loop.h"
#include "services/rpc/ticket_pb.h"
#include "storage/ec.h"

#include <errno.h>
#include <fcntl.h>
#include <grpc/slice.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct put_job;

/*
 * A packed chunk of a fragment, shared by the streams that carry its copies: read, checksummed and
 * packed once, then sent to each node as a reference to the same slice (grpc_byte_buffer_copy does
 * not copy bytes). Each fragment keeps the two most recent chunks, enough for streams that drift
 * one chunk apart; a stream that restarts from the beginning just packs afresh.
 */
struct chunk_entry {
    bool valid;
    uint64_t offset; /* in the fragment */
    struct dfs_put_chunk pc;
};

struct frag_cache {
    struct chunk_entry e[2];
    int victim;
};

/*
 * Erasure code: a stripe's K data cells and M parity cells, each packed as the message that
 * carries it. The data cells are read from the file straight into their messages and the encoder
 * writes the parity straight into theirs: no copy. Three stripes are kept (least recently used
 * goes), enough for the fragments' streams to drift apart by a stripe, and for one stream that
 * restarts from the beginning not to evict the others' stripes.
 */
#define STRIPES 3

/* The most nodes one chain may forward to (storage.proto). */
#define DFS_CHAIN_MAX 16

struct stripe_entry {
    bool valid;
    uint64_t stripe;
    uint64_t used; /* job->tick when last used */
    struct dfs_put_chunk cells[DFS_EC_MAX_FRAGMENTS];
};

/* One copy of one fragment, streamed to one node. */
struct put_stream {
    struct put_job *job;
    uint32_t frag;
    char node_id[33];
    /* The plan's TICKET_PUT for this copy's node (a replacement node brings its own). */
    struct dfs_ticket ticket;
    /* Every call starts with a message of its own carrying the header (id, size, this copy's
       ticket); the data chunks after it are shared by the fragment's copies. A chain head's
       `first` is that message, with the first data chunk in it. */
    bool header_sent;
    dfs_link *link;
    dfs_rpc_ccall *call; /* NULL when no call is running */
    dfs_rpc_timer stall;
    dfs_rpc_timer pace; /* waiting for bandwidth before the next send */
    uint64_t sent;      /* bytes of the fragment handed to the transport */
    uint32_t table_crc; /* running CRC32C over the block CRCs sent: the fragment checksum */
    bool have_response;
    uint32_t node_checksum;
    uint64_t node_size;
    /* The node's receipt for its durable copy (PutFragmentResponse.receipt, or the chain's ack),
       which CommitFile needs for every copy it records. */
    uint8_t receipt[DFS_RECEIPT_LEN];
    bool have_receipt;
    bool done; /* durable on its node, checksum agreed */
    int attempts;
    /*
     * Chain replication. A head stream carries its fragment's other copies: its first message
     * names their nodes, and the chain's acks (kept here until the call ends) say which stored it.
     * A chained copy has no stream of its own unless the chain fails it; then it is sent directly.
     */
    bool chained;
    int64_t last_ns;            /* when the stream last made progress (what the watch reports) */
    struct dfs_put_chunk first; /* a head's first message, with the forward list */
    bool have_first;
    Dfs__V1__PutFragmentResponse *acks;
    /* Chain: the forward tickets letting this copy's node pass the fragment on to the other
       copies' nodes (Replica.forward_tickets, and ReplaceTarget's), malloc'd. */
    struct dfs_ticket *hops;
    size_t nhops;
};

struct put_job {
    dfs_meta *meta;
    const struct dfs_client_put_opts *opts;
    dfs_rpc_loop *loop;
    dfs_links *links;
    int fd;             /* the file read, or -1 when the bytes are in memory (mem) */
    const uint8_t *mem; /* opts->mem */
    uint64_t size;
    Dfs__V1__FileInfo *file; /* the plan, from CreateFile */
    struct put_stream *streams;
    size_t nstreams;
    struct frag_cache *caches; /* replication: one per fragment */
    dfs_chunk_pool *pool;      /* the data messages' buffers, reused */
    bool own_pool;             /* pool is the put's own (released at the end) */
    dfs_ec *ec;                /* erasure code: the codec, the stripes and a use counter */
    struct stripe_entry stripes[STRIPES];
    uint64_t tick;
    size_t running;     /* calls in flight */
    size_t next_stream; /* streams [0, next_stream) have been started */
    size_t chunk;       /* data bytes per message (smaller when throttled) */
    dfs_bucket global;  /* --max-rate */
    uint64_t sent;      /* bytes handed to the transport, every copy counted */
    uint32_t replaced;
    int error; /* first fatal error; the job stops */
    char *errmsg;
    dfs_rpc_timer watch; /* each second: is a stream waiting long? (opts->note) */
    bool noted;          /* a note is showing */
    bool own_fd;         /* fd was opened here (closed at the end) */
};

/* A stream that makes no progress for this long is named in a note (opts->note). */
#define NOTE_AFTER_MS 5000

static int64_t stall_ms(const struct put_job *job)
{
    return job->opts->stall_timeout_ms > 0 ? job->opts->stall_timeout_ms : 60000;
}

static uint64_t frag_start(const struct put_job *job, uint32_t frag)
{
    return (uint64_t)frag * job->file->fragment_size;
}

static uint64_t frag_size(const struct put_job *job, uint32_t frag)
{
    return job->file->fragments[frag]->size;
}

/* Stop the job with an error (the first one wins) and cancel every running call. */
static void fail_job(struct put_job *job, int code, char *msg)
{
    if (job->error == DFS_OK) {
        job->error = code;
        job->errmsg = msg;
        msg = NULL;
        for (size_t i = 0; i < job->nstreams; i++)
            if (job->streams[i].call != NULL)
                dfs_rpc_ccall_cancel(job->streams[i].call);
    }
    free(msg);
}

/* ---- chunks: the file's bytes read straight into the message that carries them ---- */

/* Read len bytes of the input (the local file, or the caller's memory) at off into dst. */
static int read_exact(const struct put_job *job, uint8_t *dst, size_t len, uint64_t off,
                      char **errmsg)
{
    if (job->mem != NULL) {
        if (off > job->size || len > job->size - off)
            return dfs_seterr(errmsg, DFS_EINTERNAL, "a read past the end of the bytes to store");
        memcpy(dst, job->mem + off, len);
        return DFS_OK;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(job->fd, dst + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot read the local file");
        if (r == 0)
            return dfs_seterr(errmsg, DFS_EIO, "the local file shrank while it was being stored");
        got += (size_t)r;
    }
    return DFS_OK;
}

static int pack_chunk(struct put_job *job, uint32_t frag, struct chunk_entry *e, size_t len,
                      char **errmsg)
{
    dfs_put_chunk_init_pooled(&e->pc, job->pool, len);
    int rc = read_exact(job, e->pc.data, len, frag_start(job, frag) + e->offset, errmsg);
    if (rc != DFS_OK) {
        dfs_put_chunk_release(&e->pc);
        return rc;
    }
    dfs_put_chunk_seal(&e->pc);
    e->valid = true;
    return DFS_OK;
}

/* The chunk of `frag` at `offset`, from the cache or freshly packed. NULL on failure. */
static struct dfs_put_chunk *replica_chunk_at(struct put_job *job, uint32_t frag, uint64_t offset,
                                              char **errmsg)
{
    struct frag_cache *fc = &job->caches[frag];
    for (int i = 0; i < 2; i++)
        if (fc->e[i].valid && fc->e[i].offset == offset)
            return &fc->e[i].pc;
    struct chunk_entry *e = &fc->e[fc->victim];
    fc->victim ^= 1;
    if (e->valid)
        dfs_put_chunk_release(&e->pc);
    uint64_t size = frag_size(job, frag);
    e->valid = false;
    e->offset = offset;
    size_t len = size - offset < job->chunk ? (size_t)(size - offset) : job->chunk;
    return pack_chunk(job, frag, e, len, errmsg) == DFS_OK ? &e->pc : NULL;
}

/* Pack stripe `stripe` of an erasure-coded file into e (see struct stripe_entry). */
static int pack_stripe(struct put_job *job, struct stripe_entry *e, uint64_t stripe, char **errmsg)
{
    unsigned k = dfs_ec_k(job->ec), m = dfs_ec_m(job->ec);
    size_t cell = job->file->cell_size;
    uint8_t *data[DFS_EC_MAX_FRAGMENTS];
    for (unsigned i = 0; i < k + m; i++) {
        dfs_put_chunk_init_pooled(&e->cells[i], job->pool, cell);
        data[i] = e->cells[i].data;
    }
    int rc = DFS_OK;
    for (unsigned i = 0; rc == DFS_OK && i < k; i++) {
        /* Data cell i of the stripe holds these bytes of the file; past its end, zeros. */
        uint64_t off = (stripe * k + i) * (uint64_t)cell;
        size_t n = off >= job->size ? 0 : job->size - off < cell ? (size_t)(job->size - off) : cell;
        rc = read_exact(job, data[i], n, off, errmsg);
        memset(data[i] + n, 0, cell - n);
    }
    if (rc != DFS_OK) {
        for (unsigned i = 0; i < k + m; i++)
            dfs_put_chunk_release(&e->cells[i]);
        return rc;
    }
    dfs_ec_encode(job->ec, cell, (const uint8_t *const *)data, data + k);
    for (unsigned i = 0; i < k + m; i++)
        dfs_put_chunk_seal(&e->cells[i]);
    e->stripe = stripe;
    e->valid = true;
    return DFS_OK;
}

static struct dfs_put_chunk *stripe_chunk_at(struct put_job *job, uint32_t frag, uint64_t offset,
                                             char **errmsg)
{
    uint64_t cell = job->file->cell_size;
    uint64_t stripe = cell > 0 ? offset / cell : 0;
    struct stripe_entry *victim = &job->stripes[0];
    for (int i = 0; i < STRIPES; i++) {
        struct stripe_entry *e = &job->stripes[i];
        if (e->valid && e->stripe == stripe) {
            e->used = ++job->tick;
            return &e->cells[frag];
        }
        if (!e->valid || e->used < victim->used)
            victim = e;
    }
    if (victim->valid) {
        for (unsigned i = 0; i < dfs_ec_k(job->ec) + dfs_ec_m(job->ec); i++)
            dfs_put_chunk_release(&victim->cells[i]);
        victim->valid = false;
    }
    if (pack_stripe(job, victim, stripe, errmsg) != DFS_OK)
        return NULL;
    victim->used = ++job->tick;
    return &victim->cells[frag];
}

/* The message carrying `frag` from `offset`: a shared replica chunk or a stripe's cell. */
static struct dfs_put_chunk *chunk_at(struct put_job *job, uint32_t frag, uint64_t offset,
                                      char **errmsg)
{
    return job->ec != NULL ? stripe_chunk_at(job, frag, offset, errmsg)
                           : replica_chunk_at(job, frag, offset, errmsg);
}

static void drop_caches(struct put_job *job)
{
    for (size_t f = 0; job->caches != NULL && f < job->file->n_fragments; f++)
        for (int i = 0; i < 2; i++)
            if (job->caches[f].e[i].valid)
                dfs_put_chunk_release(&job->caches[f].e[i].pc);
    free(job->caches);
    job->caches = NULL;
    for (int i = 0; job->ec != NULL && i < STRIPES; i++)
        if (job->stripes[i].valid)
            for (unsigned c = 0; c < dfs_ec_k(job->ec) + dfs_ec_m(job->ec); c++)
                dfs_put_chunk_release(&job->stripes[i].cells[c]);
    dfs_ec_destroy(job->ec);
    job->ec = NULL;
}

/* ---- one stream ---- */

static void chunk_sent(dfs_rpc_ccall *call, void *arg, bool ok);
static void send_next(struct put_stream *s);

static void start_stream(struct put_stream *s);

static void stall_fired(dfs_rpc_timer *t)
{
    struct put_stream *s = (struct put_stream *)((char *)t - offsetof(struct put_stream, stall));
    if (s->call != NULL) {
        char msg[96];
        snprintf(msg, sizeof msg, "no progress for %.0f s", (double)stall_ms(s->job) / 1000.0);
        dfs_rpc_ccall_cancel_with(s->call, DFS_ETIMEDOUT, msg);
    }
}

static void progress(struct put_stream *s)
{
    s->last_ns = dfs_clock_mono_ns();
    dfs_rpc_loop_timer_arm(s->job->loop, &s->stall, s->last_ns + stall_ms(s->job) * 1000000);
}

static void note(struct put_job *job, const char *what)
{
    if (job->opts->note == NULL || (what == NULL && !job->noted))
        return;
    job->noted = what != NULL;
    job->opts->note(job->opts->note_arg, what);
}

/* Each second: name the node the put has waited on longest, once that is NOTE_AFTER_MS. */
static void watch_fired(dfs_rpc_timer *t)
{
    struct put_job *job = (struct put_job *)(void *)((char *)t - offsetof(struct put_job, watch));
    int64_t now = dfs_clock_mono_ns();
    const struct put_stream *oldest = NULL;
    size_t waiting = 0;
    for (size_t i = 0; i < job->nstreams; i++) {
        const struct put_stream *s = &job->streams[i];
        if (s->call == NULL || (now - s->last_ns) / 1000000 < NOTE_AFTER_MS)
            continue;
        waiting++;
        if (oldest == NULL || s->last_ns < oldest->last_ns)
            oldest = s;
    }
    if (oldest == NULL || job->error != DFS_OK) {
        note(job, NULL);
    } else {
        char what[400];
        char others[48] = "";
        if (waiting > 1)
            snprintf(others, sizeof others, " (and %zu other cop%s)", waiting - 1,
                     waiting == 2 ? "y" : "ies");
        snprintf(what, sizeof what,
                 "waiting for node %s%s: no progress for %" PRId64 " s (gives up after %" PRId64
                 " s)",
                 dfs_link_address(oldest->link), others, (now - oldest->last_ns) / 1000000000,
                 stall_ms(job) / 1000);
        note(job, what);
    }
    dfs_rpc_loop_timer_arm(job->loop, &job->watch, now + 1000000000);
}

/* CommitFile did not get through: say so, and that it is tried again. */
static void commit_waiting(void *arg, const char *why, int64_t waited_ms)
{
    struct put_job *job = arg;
    char what[600];
    snprintf(what, sizeof what, "committing: %s; trying again (for %" PRId64 " s more)", why,
             (stall_ms(job) - waited_ms) / 1000);
    note(job, what);
}

static void pace_fired(dfs_rpc_timer *t)
{
    struct put_stream *s = (struct put_stream *)((char *)t - offsetof(struct put_stream, pace));
    if (s->call != NULL && s->job->error == DFS_OK)
        send_next(s);
}

/* A call's first message: the header alone, with this copy's ticket. */
static grpc_byte_buffer *header_message(struct put_stream *s)
{
    struct put_job *job = s->job;
    Dfs__V1__Ticket t;
    dfs_ticket_pb_view(&s->ticket, &t);
    Dfs__V1__FragmentHeader h = DFS__V1__FRAGMENT_HEADER__INIT;
    h.fragment_id = job->file->fragments[s->frag]->fragment_id;
    h.size = frag_size(job, s->frag);
    h.ticket = &t;
    struct dfs_put_chunk c;
    dfs_put_chunk_init_header(&c, &h, 0);
    grpc_byte_buffer *bb = dfs_put_chunk_buffer(&c);
    dfs_put_chunk_release(&c);
    return bb;
}

static void send_next(struct put_stream *s)
{
    struct put_job *job = s->job;
    char *err = NULL;
    if (!s->have_first && !s->header_sent) {
        s->header_sent = true;
        bool empty = frag_size(job, s->frag) == 0;
        if (dfs_rpc_ccall_send_raw(s->call, header_message(s), empty, empty ? NULL : chunk_sent,
                                   s) != DFS_OK)
            dfs_rpc_ccall_cancel_with(s->call, DFS_EINTERNAL, "cannot send");
        return;
    }
    struct dfs_put_chunk *pc =
        s->have_first && s->sent == 0 ? &s->first : chunk_at(job, s->frag, s->sent, &err);
    if (pc == NULL) {
        fail_job(job, DFS_EIO, err);
        return;
    }
    /* Bandwidth: the link's bucket, then the whole transfer's; wait for whichever is short. */
    int64_t now = dfs_clock_mono_ns();
    dfs_bucket *link = dfs_link_bucket(s->link);
    int64_t wait = dfs_bucket_take(link, pc->len, now);
    if (wait == 0 && (wait = dfs_bucket_take(&job->global, pc->len, now)) > 0)
        dfs_bucket_refund(link, pc->len);
    if (wait > 0) {
        dfs_rpc_loop_timer_arm(job->loop, &s->pace, now + wait);
        return;
    }
    s->table_crc = dfs_chunk_table_crc(s->table_crc, pc->crcs, pc->ncrcs);
    bool last = s->sent + pc->len == frag_size(job, s->frag);
    s->sent += pc->len;
    job->sent += pc->len;
    dfs_link_add_bytes(s->link, pc->len);
    if (job->opts->progress != NULL) {
        /* File bytes done: each copy the client sends counts once per copy it sends. */
        size_t k = job->nstreams / job->file->n_fragments;
        uint64_t done = job->sent / (job->opts->chain && job->ec == NULL ? 1 : k);
        job->opts->progress(job->opts->progress_arg, done < job->size ? done : job->size,
                            job->size);
    }
    if (dfs_rpc_ccall_send_raw(s->call, dfs_put_chunk_buffer(pc), last, last ? NULL : chunk_sent,
                               s) != DFS_OK)
        dfs_rpc_ccall_cancel_with(s->call, DFS_EINTERNAL, "cannot send");
}

static void chunk_sent(dfs_rpc_ccall *call, void *arg, bool ok)
{
    (void)call;
    struct put_stream *s = arg;
    if (!ok || s->job->error != DFS_OK)
        return; /* the call's status says why */
    progress(s);
    send_next(s);
}

static void response_received(dfs_rpc_ccall *call, void *arg, ProtobufCMessage *msg, int status)
{
    (void)call;
    (void)status;
    struct put_stream *s = arg;
    if (msg == NULL)
        return;
    const Dfs__V1__PutFragmentResponse *r = (const Dfs__V1__PutFragmentResponse *)msg;
    s->have_response = true;
    s->node_checksum = r->checksum;
    s->node_size = r->size;
    s->have_receipt = r->receipt.len == DFS_RECEIPT_LEN;
    if (s->have_receipt)
        memcpy(s->receipt, r->receipt.data, DFS_RECEIPT_LEN);
    if (r->n_chain > 0 && s->acks == NULL) {
        s->acks = (Dfs__V1__PutFragmentResponse *)msg; /* kept for stream_done */
        return;
    }
    protobuf_c_message_free_unpacked(msg, NULL);
}

/* The streams of one fragment's copies (k consecutive slots). */
static struct put_stream *copies_of(struct put_job *job, uint32_t frag, size_t *k)
{
    *k = job->nstreams / job->file->n_fragments;
    return &job->streams[(size_t)frag * *k];
}

/*
 * A head's first message: the usual first chunk, but its header names the nodes of the copies
 * still chained to it, and the per-link rate for every hop.
 */
static int pack_head(struct put_stream *s, char **errmsg)
{
    struct put_job *job = s->job;
    size_t k;
    struct put_stream *c = copies_of(job, s->frag, &k);
    char *forward[DFS_CHAIN_MAX];
    Dfs__V1__Ticket tickets[DFS_CHAIN_MAX], hops[DFS_CHAIN_MAX], own;
    Dfs__V1__Ticket *tptrs[DFS_CHAIN_MAX], *hptrs[DFS_CHAIN_MAX];
    size_t n = 0;
    /* Each hop needs the forward ticket of the node before it (the metadata service signs one
       between every two planned nodes): a copy whose hop has none is left out of the chain,
       and goes directly to a node of its own once the chain has answered. */
    const struct put_stream *prev = s;
    for (size_t i = 0; i < k && n < DFS_CHAIN_MAX; i++) {
        if (!c[i].chained || c[i].done)
            continue;
        const struct dfs_ticket *hop = NULL;
        for (size_t h = 0; h < prev->nhops && hop == NULL; h++)
            if (strcmp(prev->hops[h].peer_node_id, c[i].node_id) == 0)
                hop = &prev->hops[h];
        if (hop == NULL) {
            dfs_log(DFS_LOG_WARN,
                    "no forward ticket for a hop; that copy goes directly "
                    "fragment=%" PRIu32 " from=%s to=%s",
                    s->frag, prev->node_id, c[i].node_id);
            continue;
        }
        dfs_ticket_pb_view(&c[i].ticket, &tickets[n]);
        dfs_ticket_pb_view(hop, &hops[n]);
        tptrs[n] = &tickets[n];
        hptrs[n] = &hops[n];
        forward[n++] = (char *)dfs_link_address(c[i].link);
        prev = &c[i];
    }
    dfs_ticket_pb_view(&s->ticket, &own);
    Dfs__V1__FragmentHeader h = DFS__V1__FRAGMENT_HEADER__INIT;
    h.fragment_id = job->file->fragments[s->frag]->fragment_id;
    h.size = frag_size(job, s->frag);
    h.forward = forward;
    h.n_forward = n;
    h.forward_tickets = tptrs;
    h.n_forward_tickets = n;
    h.hop_tickets = hptrs;
    h.n_hop_tickets = n;
    h.ticket = &own;
    h.forward_rate = job->opts->link_rate;
    uint64_t size = frag_size(job, s->frag);
    size_t len = size < job->chunk ? (size_t)size : job->chunk;
    dfs_put_chunk_init_header(&s->first, &h, len);
    int rc = read_exact(job, s->first.data, len, frag_start(job, s->frag), errmsg);
    if (rc != DFS_OK) {
        dfs_put_chunk_release(&s->first);
        return rc;
    }
    dfs_put_chunk_seal(&s->first);
    s->have_first = true;
    return DFS_OK;
}

static void replace_and_retry(struct put_stream *s, int code, const char *why);

/*
 * A head stored its copy: settle the chained copies from the chain's acks. A copy the chain stored
 * (same size and checksum as sent) is done. The first failed entry in chain order is the node
 * that failed (or the hop to it): its copy goes to a replacement node, sent directly. Every entry
 * after it was not reached, since a chain stops at its first failure (storage.proto: "a node after
 * a failed one is not reached"): those nodes are not known to have failed, so they stay the
 * copies' targets and get them sent directly, like a fanout put; only if that fails too are they
 * replaced. (Counting them as failed excluded healthy nodes from ReplaceTarget: with 4 nodes and
 * k=3, a middle node's death left "0 available" for the last one.)
 */
static void settle_chain(struct put_stream *head)
{
    struct put_job *job = head->job;
    size_t k;
    struct put_stream *c = copies_of(job, head->frag, &k);
    const Dfs__V1__PutFragmentResponse *r = head->acks;
    size_t first_failed = SIZE_MAX; /* index in r->chain */
    for (size_t a = 0; r != NULL && a < r->n_chain && first_failed == SIZE_MAX; a++) {
        const Dfs__V1__ChainAck *ack = r->chain[a];
        if (!ack->ok || ack->size != frag_size(job, head->frag) || ack->checksum != head->table_crc)
            first_failed = a;
    }
    for (size_t i = 0; i < k && job->error == DFS_OK; i++) {
        struct put_stream *s = &c[i];
        if (!s->chained || s->done)
            continue;
        const Dfs__V1__ChainAck *ack = NULL;
        size_t at = SIZE_MAX;
        for (size_t a = 0; r != NULL && a < r->n_chain && ack == NULL; a++)
            if (strcmp(r->chain[a]->address, dfs_link_address(s->link)) == 0) {
                ack = r->chain[a];
                at = a;
            }
        s->chained = false;
        s->table_crc = head->table_crc;
        if (ack != NULL && ack->ok && ack->size == frag_size(job, head->frag) &&
            ack->checksum == head->table_crc && ack->receipt.len == DFS_RECEIPT_LEN) {
            memcpy(s->receipt, ack->receipt.data, DFS_RECEIPT_LEN);
            s->have_receipt = true;
            s->done = true;
            continue;
        }
        char why[512];
        snprintf(why, sizeof why, "chain: %s",
                 ack == NULL ? "the chain did not report this node"
                 : !ack->ok  ? ack->error
                 : ack->size == frag_size(job, head->frag) && ack->checksum == head->table_crc
                     ? "the node gave no receipt for its copy"
                     : "the node stored a different checksum or size");
        if (ack == NULL || (first_failed != SIZE_MAX && at > first_failed)) {
            dfs_log(DFS_LOG_INFO,
                    "chained copy not reached, sent directly fragment=%" PRIu32 " node=%s "
                    "err=%s",
                    s->frag, s->node_id, why);
            start_stream(s);
            continue;
        }
        dfs_log(DFS_LOG_WARN, "chained copy failed fragment=%" PRIu32 " node=%s err=\"%s\"",
                s->frag, s->node_id, why);
        /* The chain's try counts as an attempt; the copy goes elsewhere, sent directly. */
        s->attempts++;
        replace_and_retry(s, DFS_EUNAVAIL, why);
    }
}

/* Add one forward ticket to s's (chain). */
static int add_hop(struct put_stream *s, const Dfs__V1__Ticket *m, char **err)
{
    struct dfs_ticket *v = realloc(s->hops, (s->nhops + 1) * sizeof *v);
    if (v == NULL)
        return dfs_seterr(err, DFS_ENOMEM, "out of memory");
    s->hops = v;
    int rc = dfs_ticket_from_pb(m, &s->hops[s->nhops], err);
    if (rc == DFS_OK)
        s->nhops++;
    return rc;
}

/* s's forward tickets become those of replica r (a plan's, or a replacement's). */
static int take_hops(struct put_stream *s, const Dfs__V1__Replica *r, char **err)
{
    free(s->hops);
    s->hops = NULL;
    s->nhops = 0;
    for (size_t i = 0; i < r->n_forward_tickets; i++) {
        int rc = add_hop(s, r->forward_tickets[i], err);
        if (rc != DFS_OK)
            return rc;
    }
    return DFS_OK;
}

/* The copy on s->node_id failed: ask for another node and start over there. */
static void replace_and_retry(struct put_stream *s, int code, const char *why)
{
    struct put_job *job = s->job;
    int max = job->opts->max_attempts > 0 ? job->opts->max_attempts : 3;
    char *err = NULL;
    if (s->attempts >= max) {
        dfs_seterr(&err, code,
                   "fragment %" PRIu32 ": %d attempts failed, the last on node %s (%s): %s",
                   s->frag, s->attempts, s->node_id, dfs_link_address(s->link), why);
        fail_job(job, code, err);
        return;
    }
    Dfs__V1__ReplaceTargetRequest req = DFS__V1__REPLACE_TARGET_REQUEST__INIT;
    req.file_id = job->file->file_id;
    req.fragment_index = s->frag;
    req.failed_node_id = s->node_id;
    req.chain = job->opts->chain && job->ec == NULL;
    Dfs__V1__ReplaceTargetResponse *resp = NULL;
    int rc = dfs_meta_call(job->meta, "ReplaceTarget", &req.base,
                           &dfs__v1__replace_target_response__descriptor, false, &resp, &err);
    if (rc != DFS_OK) {
        char *msg = NULL;
        dfs_seterr(&msg, code,
                   "fragment %" PRIu32
                   ": node %s (%s) failed (%s) and no other node can take it: %s",
                   s->frag, s->node_id, dfs_link_address(s->link), why, err);
        free(err);
        fail_job(job, code, msg);
        return;
    }
    dfs_log(DFS_LOG_INFO, "copy moved fragment=%" PRIu32 " from=%s to=%s reason=\"%s\"", s->frag,
            s->node_id, resp->replica->node_id, why);
    dfs_link *link = dfs_links_get(job->links, resp->replica->address, &err);
    if (link == NULL) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        fail_job(job, DFS_ENOMEM, err);
        return;
    }
    snprintf(s->node_id, sizeof s->node_id, "%s", resp->replica->node_id);
    int trc = dfs_ticket_from_pb(resp->replica->ticket, &s->ticket, &err);
    if (trc == DFS_OK)
        trc = take_hops(s, resp->replica, &err);
    /* The other copies' nodes may forward to the new one (a chain whose head was replaced). */
    size_t k;
    struct put_stream *c = copies_of(job, s->frag, &k);
    for (size_t i = 0; trc == DFS_OK && i < resp->n_inbound_forward_tickets; i++)
        for (size_t j = 0; trc == DFS_OK && j < k; j++)
            if (&c[j] != s && strcmp(c[j].node_id, resp->inbound_forward_tickets[i]->node_id) == 0)
                trc = add_hop(&c[j], resp->inbound_forward_tickets[i], &err);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    if (trc != DFS_OK) {
        fail_job(job, DFS_EINTERNAL, err);
        return;
    }
    s->link = link;
    job->replaced++;
    start_stream(s);
}

static void start_stream(struct put_stream *s);

/* A stream slot is free: start the next stream waiting for one (--parallel), skipping the copies
   a chain carries. */
static void start_waiting(struct put_job *job)
{
    while (job->next_stream < job->nstreams && job->streams[job->next_stream].chained)
        job->next_stream++;
    if (job->next_stream < job->nstreams && job->error == DFS_OK)
        start_stream(&job->streams[job->next_stream++]);
}

static void stream_done(dfs_rpc_ccall *call, void *arg, int status, const char *message)
{
    (void)call;
    struct put_stream *s = arg;
    struct put_job *job = s->job;
    s->call = NULL;
    job->running--;
    dfs_rpc_loop_timer_cancel(job->loop, &s->stall);
    dfs_rpc_loop_timer_cancel(job->loop, &s->pace);
    if (job->error != DFS_OK)
        return;
    char why[512];
    int code = status;
    if (status == DFS_OK && !s->have_response) {
        code = DFS_EINTERNAL;
        snprintf(why, sizeof why, "the node answered without a response");
    } else if (status == DFS_OK && !s->have_receipt) {
        code = DFS_EINTERNAL;
        snprintf(why, sizeof why, "the node gave no receipt for its copy");
    } else if (status == DFS_OK &&
               (s->node_size != frag_size(job, s->frag) || s->node_checksum != s->table_crc)) {
        code = DFS_EDATALOSS;
        snprintf(why, sizeof why,
                 "the node stored checksum %08x, size %" PRIu64 ", expected %08x, size %" PRIu64,
                 s->node_checksum, s->node_size, s->table_crc, frag_size(job, s->frag));
    } else if (status != DFS_OK) {
        snprintf(why, sizeof why, "%s", message);
    } else {
        s->done = true;
        settle_chain(s);
        if (s->acks != NULL)
            protobuf_c_message_free_unpacked(&s->acks->base, NULL);
        s->acks = NULL;
        start_waiting(job);
        return;
    }
    if (s->acks != NULL)
        protobuf_c_message_free_unpacked(&s->acks->base, NULL);
    s->acks = NULL;
    /* Bad input on our side will fail the same way anywhere: do not hop between nodes. */
    if (code == DFS_EINVAL) {
        char *err = NULL;
        dfs_seterr(&err, code, "fragment %" PRIu32 " refused by node %s: %s", s->frag,
                   dfs_link_address(s->link), why);
        fail_job(job, code, err);
        return;
    }
    dfs_log(DFS_LOG_WARN, "copy failed fragment=%" PRIu32 " node=%s err=\"%s\"", s->frag,
            s->node_id, why);
    replace_and_retry(s, code, why);
}

static void start_stream(struct put_stream *s)
{
    struct put_job *job = s->job;
    s->attempts++;
    s->sent = 0;
    s->header_sent = false;
    s->table_crc = 0;
    s->have_response = false;
    s->have_receipt = false;
    if (s->have_first) {
        dfs_put_chunk_release(&s->first);
        s->have_first = false;
    }
    if (job->opts->chain) {
        size_t k;
        struct put_stream *c = copies_of(job, s->frag, &k);
        bool carries = false;
        for (size_t i = 0; i < k; i++)
            carries |= c[i].chained && !c[i].done && &c[i] != s;
        char *err = NULL;
        if (carries && pack_head(s, &err) != DFS_OK) {
            fail_job(job, DFS_EIO, err);
            return;
        }
    }
    int rc = dfs_rpc_ccall_start(job->loop, dfs_link_channel(s->link),
                                 "/dfs.v1.Storage/PutFragment", -1, stream_done, s, &s->call);
    if (rc != DFS_OK) {
        s->call = NULL;
        char *err = NULL;
        dfs_seterr(&err, rc, "cannot start a call to %s", dfs_link_address(s->link));
        fail_job(job, rc, err);
        return;
    }
    job->running++;
    dfs_rpc_ccall_recv(s->call, &dfs__v1__put_fragment_response__descriptor, response_received, s);
    progress(s);
    send_next(s);
}

/* ---- the whole put ---- */

static int create_file(struct put_job *job, const char *remote, char **errmsg)
{
    const struct dfs_client_put_opts *o = job->opts;
    Dfs__V1__Redundancy red = DFS__V1__REDUNDANCY__INIT;
    if (o->ec_data > 0) {
        red.scheme = DFS__V1__REDUNDANCY__SCHEME__ERASURE;
        red.data = o->ec_data;
        red.parity = o->ec_parity;
    } else {
        red.scheme = DFS__V1__REDUNDANCY__SCHEME__REPLICATION;
        red.replicas = o->replicas;
        red.fragments = o->fragments;
        if (red.fragments == 0 && job->size <= DFS_SMALL_FILE)
            red.fragments = 1; /* a small file is one fragment (dfs_client.h) */
    }
    Dfs__V1__CreateFileRequest req = DFS__V1__CREATE_FILE_REQUEST__INIT;
    req.path = (char *)remote;
    req.size = job->size;
    req.redundancy = &red;
    req.policy = (Dfs__V1__Policy)o->policy;
    req.overwrite = o->overwrite;
    req.chain = o->chain && o->ec_data == 0;
    Dfs__V1__CreateFileResponse *resp = NULL;
    int rc = dfs_meta_call(job->meta, "CreateFile", &req.base,
                           &dfs__v1__create_file_response__descriptor, false, &resp, errmsg);
    if (rc != DFS_OK)
        return rc;
    job->file = resp->file;
    resp->file = NULL;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    if (job->file == NULL || job->file->n_fragments == 0)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "the metadata service returned an empty plan");
    return DFS_OK;
}

static int commit_file(struct put_job *job, const uint8_t sha[DFS_SHA256_BYTES],
                       Dfs__V1__FileInfo **committed, char **errmsg)
{
    size_t nf = job->file->n_fragments;
    size_t k = job->nstreams / nf;
    Dfs__V1__CommitFragment *cf = calloc(nf, sizeof *cf);
    Dfs__V1__CommitFragment **cfp = calloc(nf, sizeof *cfp);
    char **ids = calloc(job->nstreams, sizeof *ids);
    ProtobufCBinaryData *receipts = calloc(job->nstreams, sizeof *receipts);
    int rc = DFS_OK;
    if (cf == NULL || cfp == NULL || ids == NULL || receipts == NULL)
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    for (size_t i = 0; rc == DFS_OK && i < nf; i++) {
        dfs__v1__commit_fragment__init(&cf[i]);
        cf[i].index = (uint32_t)i;
        cf[i].size = frag_size(job, (uint32_t)i);
        cf[i].checksum = job->streams[i * k].table_crc;
        for (size_t r = 0; r < k; r++) {
            ids[i * k + r] = job->streams[i * k + r].node_id;
            receipts[i * k + r].data = job->streams[i * k + r].receipt;
            receipts[i * k + r].len = DFS_RECEIPT_LEN;
        }
        cf[i].node_ids = &ids[i * k];
        cf[i].n_node_ids = k;
        cf[i].receipts = &receipts[i * k];
        cf[i].n_receipts = k;
        cfp[i] = &cf[i];
    }
    if (rc == DFS_OK) {
        Dfs__V1__CommitFileRequest req = DFS__V1__COMMIT_FILE_REQUEST__INIT;
        req.file_id = job->file->file_id;
        req.sha256.data = (uint8_t *)sha;
        req.sha256.len = DFS_SHA256_BYTES;
        req.fragments = cfp;
        req.n_fragments = nf;
        if (job->opts->md5 != NULL) { /* S3 (gateway): kept with the file */
            req.md5.data = (uint8_t *)job->opts->md5;
            req.md5.len = 16;
        }
        req.meta.data = (uint8_t *)job->opts->meta;
        req.meta.len = job->opts->meta != NULL ? job->opts->meta_len : 0;
        req.if_absent = job->opts->if_absent;
        req.if_file_id = (char *)(job->opts->if_file_id != NULL ? job->opts->if_file_id : "");
        Dfs__V1__CommitFileResponse *resp = NULL;
        /* Retried while the service cannot be reached, for as long as the put waits on a node
           (--stall-timeout): a commit that took effect but whose answer was lost succeeds again
           (the catalog accepts the same commit twice), so a put whose transfer is done
           completes through a restart or an outage instead of failing or leaving the user
           unsure. */
        struct dfs_meta_patience patience = {.patience_ms = stall_ms(job),
                                             .interrupted = job->opts->interrupted,
                                             .waiting = commit_waiting,
                                             .arg = job};
        rc = dfs_meta_call_patient(job->meta, "CommitFile", &req.base,
                                   &dfs__v1__commit_file_response__descriptor, &patience, &resp,
                                   errmsg);
        note(job, NULL);
        if (rc == DFS_OK) {
            *committed = resp->file;
            resp->file = NULL;
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
    }
    free(cf);
    free(cfp);
    free(ids);
    free(receipts);
    return rc;
}

static void abort_file(struct put_job *job)
{
    Dfs__V1__AbortFileRequest req = DFS__V1__ABORT_FILE_REQUEST__INIT;
    req.file_id = job->file->file_id;
    Dfs__V1__AbortFileResponse *resp = NULL;
    char *err = NULL;
    if (dfs_meta_call(job->meta, "AbortFile", &req.base, &dfs__v1__abort_file_response__descriptor,
                      true, &resp, &err) == DFS_OK)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    else
        dfs_log(DFS_LOG_WARN,
                "cannot abort the pending file (it expires by itself) id=%s err=\"%s\"",
                job->file->file_id, err);
    free(err);
}

static int open_local(const char *local, const struct dfs_client_put_opts *opts, int *fd, bool *own,
                      uint64_t *size, struct stat *st, char **errmsg)
{
    *own = !opts->from_fd;
    *fd = opts->from_fd ? opts->fd : open(local, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "cannot open %s", local);
    if (fstat(*fd, st) != 0) {
        int e = errno;
        if (*own)
            close(*fd);
        return dfs_seterr_errno(errmsg, DFS_EIO, e, "cannot stat %s", local);
    }
    if (!S_ISREG(st->st_mode)) {
        if (*own)
            close(*fd);
        return dfs_seterr(errmsg, DFS_EINVAL, "%s is not a regular file", local);
    }
    *size = (uint64_t)st->st_size;
    posix_fadvise(*fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    return DFS_OK;
}

int dfs_put(dfs_meta *meta, dfs_rpc_pool *channels, dfs_chunk_pool *pool, const char *local,
            const char *remote, const struct dfs_client_put_opts *opts,
            struct dfs_client_put_result *out, char **errmsg)
{
    struct put_job job = {.meta = meta, .opts = opts, .fd = -1, .mem = opts->mem};
    struct stat st_before;
    memset(&st_before, 0, sizeof st_before);
    int rc = DFS_OK;
    if (job.mem != NULL)
        job.size = opts->mem_len;
    else
        rc = open_local(local, opts, &job.fd, &job.own_fd, &job.size, &st_before, errmsg);
    if (rc != DFS_OK)
        return rc;
    int64_t t0 = dfs_clock_mono_ns();
    dfs_filehash *hash = NULL;
    rc = create_file(&job, remote, errmsg);
    if (rc != DFS_OK) {
        if (job.own_fd)
            close(job.fd);
        return rc;
    }
    size_t nf = job.file->n_fragments;
    size_t k = job.file->fragments[0]->n_replicas;
    job.loop = dfs_rpc_loop_create();
    /* Throttled: messages of about 1/16 s of the rate (whole 64 KiB blocks), so pacing is even. */
    job.chunk = DFS_CHUNK;
    uint64_t slowest = opts->link_rate;
    if (opts->max_rate > 0 && (slowest == 0 || opts->max_rate < slowest))
        slowest = opts->max_rate;
    if (slowest > 0) {
        uint64_t c = slowest / 16 / DFS_BLOCK_SIZE * DFS_BLOCK_SIZE;
        job.chunk = c < DFS_BLOCK_SIZE ? DFS_BLOCK_SIZE : c > DFS_CHUNK ? DFS_CHUNK : (size_t)c;
    }
    /* A burst of two messages: a timer that fires late does not lose the time it was late by
       (with a burst of one, the bucket would be full and discard what accrued meanwhile). */
    job.links = dfs_links_create(opts->link_rate, 2 * job.chunk, channels, dfs_meta_security(meta));
    dfs_bucket_init(&job.global, opts->max_rate, 2 * job.chunk, dfs_clock_mono_ns());
    job.nstreams = nf * k;
    job.streams = calloc(job.nstreams, sizeof *job.streams);
    /* Buffers as large as the largest data message (a chunk, or an erasure code's cell; no
       more than a fragment): the caller's pool of whole chunks when the messages are more than
       half a chunk (warm buffers, from one put to the next), otherwise one of the put's own, as
       many kept idle as the caches hold at once (two chunks a fragment, or three stripes) and a
       few in flight; any more come and go. */
    uint64_t largest = job.file->fragment_size < job.chunk ? job.file->fragment_size : job.chunk;
    if (job.file->cell_size > 0)
        largest = job.file->cell_size;
    if (pool != NULL && largest <= DFS_CHUNK && 2 * largest > DFS_CHUNK) {
        job.pool = pool;
    } else {
        job.pool = dfs_chunk_pool_create((size_t)largest, 3 * nf + 4);
        job.own_pool = true;
    }
    const Dfs__V1__Redundancy *red = job.file->redundancy;
    if (red != NULL && red->scheme == DFS__V1__REDUNDANCY__SCHEME__ERASURE) {
        char *err = NULL;
        if (red->data + red->parity != nf || job.file->cell_size > DFS_CHUNK ||
            dfs_ec_create(red->data, red->parity, &job.ec, &err) != DFS_OK) {
            free(err);
            fail_job(&job, DFS_EINTERNAL,
                     strdup("the plan's erasure code is not one this client can write"));
        }
    } else {
        job.caches = calloc(nf, sizeof *job.caches);
    }
    if (job.loop == NULL || job.links == NULL || job.streams == NULL || job.pool == NULL ||
        (job.caches == NULL && job.ec == NULL))
        fail_job(&job, DFS_ENOMEM, NULL);
    for (size_t i = 0; job.error == DFS_OK && i < nf; i++) {
        if (job.file->fragments[i]->n_replicas != k) {
            fail_job(&job, DFS_EINTERNAL, strdup("the plan gives fragments different copy counts"));
            break;
        }
        for (size_t r = 0; r < k; r++) {
            struct put_stream *s = &job.streams[i * k + r];
            const Dfs__V1__Replica *rep = job.file->fragments[i]->replicas[r];
            s->job = &job;
            s->frag = (uint32_t)i;
            snprintf(s->node_id, sizeof s->node_id, "%s", rep->node_id);
            dfs_rpc_timer_init(&s->stall, stall_fired);
            dfs_rpc_timer_init(&s->pace, pace_fired);
            char *err = NULL;
            if (dfs_ticket_from_pb(rep->ticket, &s->ticket, &err) != DFS_OK ||
                take_hops(s, rep, &err) != DFS_OK) {
                dfs_prefixerr(&err, DFS_EINTERNAL, "the plan for fragment %zu", i);
                fail_job(&job, DFS_EINTERNAL, err);
                break;
            }
            if ((s->link = dfs_links_get(job.links, rep->address, &err)) == NULL) {
                fail_job(&job, DFS_ENOMEM, err);
                break;
            }
        }
    }
    /* The caller's SHA-256 of the bytes, or one computed while they are sent. */
    if (job.error == DFS_OK && opts->sha256 == NULL) {
        char *err = NULL;
        if (job.mem != NULL ? dfs_filehash_start_mem(job.mem, job.size, &hash, &err) != DFS_OK
                            : dfs_filehash_start(job.fd, job.size, &hash, &err) != DFS_OK)
            fail_job(&job, DFS_ENOMEM, err);
    }
    /* Chain replication: each fragment's first copy carries the others (replication only). */
    if (opts->chain && job.ec == NULL && k > 1)
        for (size_t i = 0; i < job.nstreams; i++)
            job.streams[i].chained = i % k != 0;
    size_t first = opts->parallel > 0 ? opts->parallel : job.nstreams;
    for (size_t n = 0; job.error == DFS_OK && n < first && job.next_stream < job.nstreams; n++)
        start_waiting(&job);
    dfs_rpc_timer_init(&job.watch, watch_fired);
    if (opts->note != NULL && job.loop != NULL)
        dfs_rpc_loop_timer_arm(job.loop, &job.watch, dfs_clock_mono_ns() + 1000000000);
    while (job.running > 0) {
        dfs_rpc_loop_run_once(job.loop, 100);
        if (opts->interrupted != NULL && *opts->interrupted && job.error == DFS_OK)
            fail_job(&job, DFS_ECANCELED, strdup("interrupted"));
    }
    if (job.loop != NULL)
        dfs_rpc_loop_timer_cancel(job.loop, &job.watch);
    note(&job, NULL);

    uint8_t sha[DFS_SHA256_BYTES];
    if (opts->sha256 != NULL)
        memcpy(sha, opts->sha256, DFS_SHA256_BYTES);
    Dfs__V1__FileInfo *committed = NULL;
    if (hash != NULL) {
        char *err = NULL;
        if (job.error != DFS_OK)
            dfs_filehash_cancel(hash);
        else if (dfs_filehash_finish(hash, sha, &err) != DFS_OK)
            fail_job(&job, DFS_EIO, err);
        else
            free(err);
    }
    struct stat st_after;
    if (job.error == DFS_OK && job.mem == NULL &&
        (fstat(job.fd, &st_after) != 0 || st_after.st_size != st_before.st_size ||
         st_after.st_mtim.tv_sec != st_before.st_mtim.tv_sec ||
         st_after.st_mtim.tv_nsec != st_before.st_mtim.tv_nsec)) {
        char *err = NULL;
        dfs_seterr(&err, DFS_EABORTED, "%s changed while it was being stored", local);
        fail_job(&job, DFS_EABORTED, err);
    }
    if (job.error == DFS_OK) {
        char *err = NULL;
        int crc = commit_file(&job, sha, &committed, &err);
        if (crc != DFS_OK)
            fail_job(&job, crc, err);
    }
    if (job.error != DFS_OK) {
        abort_file(&job);
        rc = job.error;
        dfs_seterr(errmsg, rc, "%s", job.errmsg != NULL ? job.errmsg : dfs_strerror(rc));
    } else {
        snprintf(out->path, sizeof out->path, "%s", committed->path);
        snprintf(out->file_id, sizeof out->file_id, "%s", committed->file_id);
        out->size = job.size;
        memcpy(out->sha256, sha, DFS_SHA256_BYTES);
        out->fragments = (uint32_t)nf;
        out->replicas = (uint32_t)k;
        out->ec_data = job.ec != NULL ? dfs_ec_k(job.ec) : 0;
        out->ec_parity = job.ec != NULL ? dfs_ec_m(job.ec) : 0;
        out->replaced_targets = job.replaced;
        out->seconds = (double)(dfs_clock_mono_ns() - t0) / 1e9;
        rc = DFS_OK;
    }
    if (committed != NULL)
        protobuf_c_message_free_unpacked(&committed->base, NULL);
    for (size_t i = 0; job.streams != NULL && i < job.nstreams; i++) {
        if (job.streams[i].have_first)
            dfs_put_chunk_release(&job.streams[i].first);
        if (job.streams[i].acks != NULL)
            protobuf_c_message_free_unpacked(&job.streams[i].acks->base, NULL);
        free(job.streams[i].hops);
    }
    free(job.errmsg);
    free(job.streams);
    drop_caches(&job);
    if (job.own_pool)
        dfs_chunk_pool_release(job.pool);
    dfs_links_destroy(job.links);
    dfs_rpc_loop_destroy(job.loop);
    protobuf_c_message_free_unpacked(&job.file->base, NULL);
    if (job.own_fd)
        close(job.fd);
    return rc;
}
