/* The Storage service: dfs.v1.Storage over a fragment store, with a copy-free data path. */
#include "services/storage/storage_service.h"

#include "common/arena.h"
#include "common/clock.h"
#include "common/receipt.h"
#include "common/ticket.h"
#include "services/rpc/ticket_pb.h"

#include <openssl/crypto.h>

#include "common/addr.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/id.h"
#include "common/log.h"
#include "common/lograte.h"
#include "common/throttle.h"
#include "dfs/v1/storage.pb-c.h"
#include "services/rpc/client.h"
#include "services/rpc/loop.h"
#include "services/rpc/pool.h"
#include "services/rpc/status.h"
#include "services/rpc/wire.h"
#include "services/rpc/wirecheck.h"
#include "services/storage/putmsg.h"
#include "services/storage/repair.h"
#include "services/validate/validate.h"

#include <assert.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PUT_METHOD "/dfs.v1.Storage/PutFragment"

/* Most downstream addresses a node keeps a channel to (a bound on what clients can make it
   hold: channels are only freed with the service). */
#define CHANNELS_MAX 1024

/*
 * The link to one downstream node: the pacing shared by every chain put this node forwards to
 * that address, on any loop thread (hence the lock), so that the link carries at most the rate
 * in total, not the rate per put. Each put takes at the rate it runs at (min of its header's
 * forward_rate and --forward-rate); puts with different rates sharing a link leave the bucket at
 * the rate of the latest take, so the total stays within the range of their rates.
 */
struct link {
    pthread_mutex_t mu;
    dfs_bucket bucket;
};

/* A pool entry's link: unlimited until a put says, with a burst of one message. */
static void link_init(void *data, const char *addr, dfs_rpc_channel *ch, void *arg)
{
    (void)addr;
    (void)ch;
    (void)arg;
    struct link *l = data;
    pthread_mutex_init(&l->mu, NULL);
    dfs_bucket_init(&l->bucket, 0, DFS_STORAGE_CHUNK_MAX, dfs_clock_mono_ns());
}

static void link_fini(void *data, void *arg)
{
    (void)arg;
    struct link *l = data;
    pthread_mutex_destroy(&l->mu);
}

struct dfs_storage_service {
    dfs_frag_store *store; /* borrowed */
    size_t chunk;
    uint64_t forward_rate; /* bytes/s; 0 = none of the node's own */
    int64_t idle_ms;       /* a send to the next node of a chain may take this long; <= 0: any */
    /* mu guards self: set_advertise may come from any thread. */
    pthread_mutex_t mu;
    char self[DFS_STORAGE_ADDR_MAX + 1]; /* advertised address; "" = unknown */
    /* A channel and a struct link per downstream address: puts on any loop thread look them up
       (and lazily add them). Entries are never removed before destroy, so what a put took stays
       valid. */
    dfs_rpc_pool *downstream;
    _Atomic uint64_t puts_active, puts_ok, puts_failed, forwards_failed;
    _Atomic uint64_t gets_active, gets_ok, gets_failed;
    _Atomic uint64_t bytes_received, bytes_sent, bytes_forwarded;
    dfs_repairer *repairer; /* RepairFragment's workers */
    _Atomic uint64_t repairs_active;

    /* Ticket checking: this node's id (the store's) and its key, given by the metadata service
       at registration (set_ticket_key). key_mu guards key and have_key (a leaf lock). */
    char node_id[DFS_ID_HEX + 1];
    pthread_mutex_t key_mu;
    bool have_key;
    uint8_t key[DFS_TICKET_KEY_LEN];
    _Atomic uint64_t tickets_refused;
    struct dfs_lograte refusal_log; /* anyone can present a bad ticket: a line a second at most */

    /* Where damage seen by reads and repairs goes (the config's; NULL: nowhere). */
    void (*on_own_damage)(void *arg, const char *fragment_id, int damage);
    void (*on_peer_damage)(void *arg, const Dfs__V1__Ticket *ticket, int damage,
                           const char *detail);
    void *damage_arg;
};

/* dfs.v1.Damage numbers. */
enum { DAMAGE_CORRUPT = 1, DAMAGE_MISSING = 3 };

/*
 * This node's copy of a fragment a valid ticket named turned out missing or corrupt: the catalog
 * counts it as good, so it must hear of it now (not at the next scrub or registration).
 */
static void own_damage(dfs_storage_service *svc, const char *fragment_id, int rc)
{
    int damage = rc == DFS_ENOTFOUND ? DAMAGE_MISSING : rc == DFS_EDATALOSS ? DAMAGE_CORRUPT : 0;
    if (damage != 0 && svc->on_own_damage != NULL)
        svc->on_own_damage(svc->damage_arg, fragment_id, damage);
}

static_assert(DFS_VALIDATE_FORWARD_MAX == DFS_STORAGE_FORWARD_MAX, "one forward limit");
static_assert(DFS_VALIDATE_ADDRESS_MAX == DFS_STORAGE_ADDR_MAX, "one address limit");
static_assert(DFS_VALIDATE_CHUNK_MAX == DFS_STORAGE_CHUNK_MAX, "one chunk limit");

/* Most CRCs one PutFragment message can carry: one per 64 KiB of the largest message accepted. */
#define PUT_MAX_CRCS (DFS_RPC_MAX_MESSAGE / DFS_BLOCK_SIZE + 1)
/* CRCs of one GetFragment message. */
#define GET_MAX_CRCS (DFS_STORAGE_CHUNK_MAX / DFS_BLOCK_SIZE)

static const char *code_name(int code)
{
    return dfs_rpc_status_name(dfs_rpc_status_from_err(code));
}

/*
 * A copy of s fit for a log line: at most cap-1 bytes, with control characters, quotes,
 * backslashes and '=' replaced by '?' (ids and messages can carry what a client sent, and must not
 * break the line or forge key=value pairs).
 */
static const char *scrub(const char *s, char *out, size_t cap)
{
    size_t i = 0;
    for (; s != NULL && s[i] != '\0' && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c == 0x7f || c == '"' || c == '\\' || c == '=') ? '?' : (char)c;
    }
    out[i] = '\0';
    return out;
}

/* Log a failed call at `level`, with the peer's address. */
static void log_failure(enum dfs_log_level level, dfs_rpc_call *call, const char *what,
                        const char *id, int code, const char *msg)
{
    if (!dfs_log_enabled(level))
        return;
    char sid[64], smsg[512];
    char *peer = dfs_rpc_call_peer(call);
    dfs_log(level, "%s failed id=%s status=%s peer=%s err=\"%s\"", what, scrub(id, sid, sizeof sid),
            code_name(code), peer != NULL ? peer : "unknown", scrub(msg, smsg, sizeof smsg));
    free(peer);
}

/* ---- the protobuf wire format, for the two data-carrying messages ---- */

static uint8_t *put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
    return p + 4;
}

/* ---- tickets ---- */

/* A copy of the node's key into key; false before the node has one (it has not registered). */
static bool node_key(dfs_storage_service *svc, uint8_t key[DFS_TICKET_KEY_LEN])
{
    pthread_mutex_lock(&svc->key_mu);
    bool have = svc->have_key;
    memcpy(key, svc->key, DFS_TICKET_KEY_LEN);
    pthread_mutex_unlock(&svc->key_mu);
    return have;
}

/*
 * Whether the call's ticket allows op on fragment_id here (common/ticket.h). DFS_EUNAVAIL while
 * the node has no key yet (it has not registered), DFS_EPERM otherwise, with the reason; each
 * refusal is logged with the caller's address. A DFS_TICKET_FORWARD also names the next node:
 * peer_address and peer_node_id (which must match; NULL otherwise).
 */
static int check_ticket_peer(dfs_storage_service *svc, dfs_rpc_call *call,
                             const Dfs__V1__Ticket *tm, enum dfs_ticket_op op,
                             const char *fragment_id, const char *peer_node_id,
                             const char *peer_address, char **err)
{
    struct dfs_ticket t;
    uint8_t key[DFS_TICKET_KEY_LEN];
    bool have = node_key(svc, key);
    char *why = NULL;
    int rc = DFS_OK;
    if (!have)
        rc = dfs_seterr(&why, DFS_EUNAVAIL,
                        "this node has not registered with the metadata service yet, so it "
                        "cannot check tickets; try again");
    if (rc == DFS_OK)
        rc = dfs_ticket_from_pb(tm, &t, &why);
    if (rc == DFS_OK && op == DFS_TICKET_FORWARD)
        rc = dfs_ticket_check_forward(key, &t, fragment_id, svc->node_id, peer_node_id,
                                      peer_address, dfs_clock_wall_ms(), &why);
    else if (rc == DFS_OK)
        rc = dfs_ticket_check(key, &t, op, fragment_id, svc->node_id, dfs_clock_wall_ms(), &why);
    OPENSSL_cleanse(key, sizeof key);
    if (rc == DFS_OK)
        return DFS_OK;
    atomic_fetch_add(&svc->tickets_refused, 1);
    uint64_t dropped = 0;
    if (dfs_lograte_take(&svc->refusal_log, dfs_clock_mono_ns() / 1000000, &dropped)) {
        char *peer = call != NULL ? dfs_rpc_call_peer(call) : NULL;
        dfs_log(DFS_LOG_WARN,
                "ticket refused op=%s id=%s peer=%s reason=\"%s\" not_logged_before=%" PRIu64,
                dfs_ticket_op_name(op), fragment_id, peer != NULL ? peer : "-",
                why != NULL ? why : "", dropped);
        free(peer);
    }
    dfs_seterr(err, rc, "fragment %s: %s refused: %s", fragment_id, dfs_ticket_op_name(op),
               why != NULL ? why : dfs_strerror(rc));
    free(why);
    return rc;
}

static int check_ticket(dfs_storage_service *svc, dfs_rpc_call *call, const Dfs__V1__Ticket *tm,
                        enum dfs_ticket_op op, const char *fragment_id, char **err)
{
    return check_ticket_peer(svc, call, tm, op, fragment_id, NULL, NULL, err);
}

/* This node's receipt for a durable copy (common/receipt.h) into out; false without a key. */
static bool make_receipt(dfs_storage_service *svc, const char *fragment_id, uint64_t size,
                         uint32_t checksum, uint8_t out[DFS_RECEIPT_LEN])
{
    uint8_t key[DFS_TICKET_KEY_LEN];
    bool ok = node_key(svc, key) &&
              dfs_receipt_make(key, fragment_id, svc->node_id, size, checksum, out, NULL) == DFS_OK;
    OPENSSL_cleanse(key, sizeof key);
    return ok;
}

/* ---- addresses and the channel cache ---- */

/*
 * Take n bytes from the link's bucket at `rate` (0: no limit, nothing taken). Returns 0 (send
 * now) or the nanoseconds to wait before asking again.
 */
static int64_t link_take(struct link *l, uint64_t rate, uint64_t n)
{
    if (rate == 0)
        return 0;
    int64_t now = dfs_clock_mono_ns();
    pthread_mutex_lock(&l->mu);
    if ((double)rate != l->bucket.rate) {
        if (l->bucket.rate > 0)
            (void)dfs_bucket_take(&l->bucket, 0, now); /* accrue at the old rate up to now */
        else
            l->bucket.last_ns = now; /* an idle, unlimited link starts with what it holds */
        l->bucket.rate = (double)rate;
    }
    int64_t wait = dfs_bucket_take(&l->bucket, n, now);
    pthread_mutex_unlock(&l->mu);
    return wait;
}

static void link_refund(struct link *l, uint64_t rate, uint64_t n)
{
    if (rate == 0)
        return;
    pthread_mutex_lock(&l->mu);
    dfs_bucket_refund(&l->bucket, n);
    pthread_mutex_unlock(&l->mu);
}

/*
 * The channel to addr and its link, created on first use. Returns 0, *out and *link (owned by
 * the service).
 */
static int channel_for(dfs_storage_service *svc, const char *addr, dfs_rpc_channel **out,
                       struct link **link, char **err)
{
    void *data = NULL;
    int rc = dfs_rpc_pool_get(svc->downstream, addr, out, &data, err);
    *link = data;
    return rc;
}

/* ---- PutFragment ---- */

struct put_call;

/*
 * The downstream half of a chain put (FragmentHeader.forward non-empty), owned by its put_call.
 * Everything here is touched on the call's loop thread only (the downstream call is bound to the
 * same loop), so there is no lock. The flow per upstream message:
 *
 *   received -> parsed -> handed to chain_forward (becomes `pending`; sent once the bucket has
 *   the tokens, a timer waits otherwise) -> written locally -> next receive, at once if the send
 *   has completed, else from chain_sent (`want_next`).
 *
 * Failure of the downstream call never fails the put: `broken` stops the forwarding, the local
 * copy goes on, and the ack of forward[0] says what happened.
 */
struct chain {
    struct put_call *p;
    char *fwd[DFS_STORAGE_FORWARD_MAX]; /* the header's forward list, copied */
    size_t nfwd;
    /* The header's forward_tickets and hop_tickets, copied into `arena` (one each per fwd entry):
       fwd[0]'s put ticket goes in its header as its ticket, the rest as its forward_tickets; the
       first hop ticket was this node's (checked), the rest go on as its hop_tickets. */
    Dfs__V1__Ticket *fwd_tickets[DFS_STORAGE_FORWARD_MAX];
    Dfs__V1__Ticket *hop_tickets[DFS_STORAGE_FORWARD_MAX];
    dfs_arena arena;
    uint64_t forward_rate; /* the header's, passed on unchanged */
    dfs_rpc_loop *loop;
    dfs_rpc_ccall *dc;         /* the call to fwd[0]; NULL before start and once it ended */
    bool ended;                /* the call is over (its done came, or it never started) */
    bool broken;               /* forward nothing more */
    bool closed;               /* our sending side was closed after the last message */
    bool send_busy;            /* one send in flight at a time */
    grpc_byte_buffer *pending; /* the next message, waiting for tokens */
    bool want_next;            /* the upstream receive waits for the downstream send */
    struct link *link;         /* the pacing of the link to fwd[0] (owned by the service) */
    uint64_t rate;             /* bytes/s this put sends at: min(header, node); 0 = no limit */
    dfs_rpc_timer timer;
    int status;                         /* the call's outcome, once ended */
    char *error;                        /* "STATUS: message" when status != DFS_OK: the log's */
    char ack_error[96];                 /* what the client's ack says instead (no details) */
    Dfs__V1__PutFragmentResponse *resp; /* the downstream answer */
    uint64_t forwarded;                 /* message bytes handed to the call */
    int64_t t0_ns;
};

/*
 * One upload. refs: one held by the server call (dropped by put_release) and one by the
 * downstream call while it runs (dropped by chain_done), so a downstream completion never finds
 * the state freed; both come on the same loop thread.
 */
struct put_call {
    dfs_storage_service *svc;
    dfs_rpc_call *call; /* NULL once the server call is released */
    int refs;
    dfs_frag_writer *w;  /* from the header until commit or abort */
    struct chain *chain; /* chain puts only */
    bool started;        /* the header arrived (id and size are set) */
    bool committed;      /* the local copy is durable (chain: waiting for the downstream) */
    bool finished;       /* finish was called: later callbacks only clean up */
    char id[DFS_FRAGMENT_ID_HEX + 1];
    uint64_t size;
    uint64_t received;
    uint32_t checksum; /* once committed */
    uint32_t messages;
    int64_t t0_ns;
    uint32_t crcs[PUT_MAX_CRCS];
};

static void chain_free(struct chain *c)
{
    if (c == NULL)
        return;
    assert(c->dc == NULL);
    for (size_t i = 0; i < c->nfwd; i++)
        free(c->fwd[i]);
    dfs_arena_free(&c->arena);
    if (c->pending != NULL)
        grpc_byte_buffer_destroy(c->pending);
    if (c->resp != NULL)
        dfs__v1__put_fragment_response__free_unpacked(c->resp, NULL);
    free(c->error);
    free(c);
}

static void put_unref(struct put_call *p)
{
    if (--p->refs > 0)
        return;
    chain_free(p->chain);
    atomic_fetch_sub(&p->svc->puts_active, 1);
    free(p);
}

static void put_release(void *state)
{
    struct put_call *p = state;
    if (p->w != NULL) {
        /* Not reachable through the handlers (every path that finishes drops the writer), but
           the guarantee belongs here: nothing partial outlives the call. */
        dfs_frag_writer_abort(p->w);
        p->w = NULL;
        atomic_fetch_add(&p->svc->puts_failed, 1);
    }
    p->call = NULL;
    put_unref(p);
}

/* Stop forwarding and cancel the downstream call (its done still comes, and drops its ref). */
static void chain_cancel(struct put_call *p)
{
    struct chain *c = p->chain;
    if (c == NULL || c->dc == NULL)
        return;
    c->broken = true;
    dfs_rpc_loop_timer_cancel(c->loop, &c->timer);
    if (c->pending != NULL) {
        grpc_byte_buffer_destroy(c->pending);
        c->pending = NULL;
    }
    dfs_rpc_ccall_cancel(c->dc);
}

/* Abort the upload and end the call with code and a message (copied). */
static void put_fail(struct put_call *p, int code, const char *msg)
{
    dfs_frag_writer_abort(p->w);
    p->w = NULL;
    p->finished = true;
    if (!p->committed)
        atomic_fetch_add(&p->svc->puts_failed, 1);
    chain_cancel(p);
    /* A refused ticket has its own line, at most one a second: anyone can send one. */
    log_failure(code == DFS_EPERM ? DFS_LOG_DEBUG : DFS_LOG_WARN, p->call, "put",
                p->started ? p->id : "-", code, msg);
    dfs_rpc_call_finish(p->call, code, NULL, msg);
}

static void put_failf(struct put_call *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void put_failf(struct put_call *p, int code, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    put_fail(p, code, buf);
}

/* put_fail with a message from a dfs function (freed here). */
static void put_fail_err(struct put_call *p, int code, char *err)
{
    put_fail(p, code, err != NULL ? err : dfs_strerror(code));
    free(err);
}

static void put_cancelled(dfs_rpc_call *call, void *arg)
{
    (void)call;
    struct put_call *p = arg;
    if (p->finished)
        return;
    if (p->committed)
        put_failf(p, DFS_ECANCELED,
                  "fragment %s: cancelled while waiting for the rest of the chain", p->id);
    else if (p->started)
        put_failf(p, DFS_ECANCELED,
                  "fragment %s: upload cancelled after %" PRIu64 " of %" PRIu64 " bytes", p->id,
                  p->received, p->size);
    else
        put_failf(p, DFS_ECANCELED, "PutFragment: cancelled before the header arrived");
}

/* ---- PutFragment: the downstream call of a chain ---- */

static void put_recv_next(struct put_call *p);
static void put_reply(struct put_call *p);

static bool chain_busy(const struct chain *c)
{
    return c != NULL && (c->send_busy || c->pending != NULL);
}

/* Ask for the next upstream message if it was held back for the downstream send. */
static void chain_resume(struct put_call *p)
{
    struct chain *c = p->chain;
    if (p->finished || !c->want_next || chain_busy(c))
        return;
    c->want_next = false;
    put_recv_next(p);
}

/*
 * Copy a peer's text into out[cap] as printable ASCII (it ends up in a proto3 string, which must
 * be UTF-8, and in one-line messages).
 */
static void clean_text(const char *s, char *out, size_t cap)
{
    size_t i = 0;
    for (; s != NULL && s[i] != '\0' && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
    }
    out[i] = '\0';
}

/*
 * Record why the downstream call failed (the first reason wins): "STATUS: message" for this node's
 * log, and for the client's ack only "next node unavailable" (it could not be reached, or its call
 * broke) or "next node refused the copy (STATUS)" (it answered with an error of its own). What
 * gRPC says about a connection (refused, reset, another protocol...) never goes back to the
 * client: a forward list must not be a way to learn what listens where.
 */
static void chain_set_error(struct chain *c, int code, const char *message)
{
    if (c->error != NULL)
        return;
    char text[400];
    clean_text(message, text, sizeof text);
    c->status = code;
    dfs_seterr(&c->error, code, "%s: %s", code_name(code), text[0] != '\0' ? text : "no detail");
    if (c->ack_error[0] != '\0')
        return; /* this node gave the next one up, and said why (chain_give_up) */
    switch (code) {
    case DFS_EEXIST:
    case DFS_EPERM:
    case DFS_EUNAUTH:
    case DFS_ENOSPC:
    case DFS_EDATALOSS:
    case DFS_EINVAL:
    case DFS_EPRECOND:
    case DFS_ERANGE:
        snprintf(c->ack_error, sizeof c->ack_error, "next node refused the copy (%s)",
                 code_name(code));
        break;
    default:
        snprintf(c->ack_error, sizeof c->ack_error, "next node unavailable");
        break;
    }
}

/* The downstream failed on its own (not cancelled by us): count and log it. */
static void chain_log_failure(struct put_call *p)
{
    struct chain *c = p->chain;
    atomic_fetch_add(&p->svc->forwards_failed, 1);
    if (!dfs_log_enabled(DFS_LOG_WARN))
        return;
    char smsg[512];
    dfs_log(DFS_LOG_WARN,
            "chain forward failed id=%s next=%s forwarded=%" PRIu64 " ms=%.1f err=\"%s\"", p->id,
            c->fwd[0], c->forwarded, (double)(dfs_clock_mono_ns() - c->t0_ns) / 1e6,
            scrub(c->error, smsg, sizeof smsg));
}

static void chain_resp(dfs_rpc_ccall *call, void *arg, ProtobufCMessage *msg, int status)
{
    (void)call;
    (void)status;
    struct chain *c = ((struct put_call *)arg)->chain;
    if (msg == NULL)
        return;
    if (c->resp != NULL)
        dfs__v1__put_fragment_response__free_unpacked(c->resp, NULL);
    c->resp = (Dfs__V1__PutFragmentResponse *)msg;
}

/* The downstream call is over: the last thing that happens to it. */
static void chain_done(dfs_rpc_ccall *call, void *arg, int status, const char *message)
{
    (void)call;
    struct put_call *p = arg;
    struct chain *c = p->chain;
    c->dc = NULL;
    c->ended = true;
    c->send_busy = false;
    dfs_rpc_loop_timer_cancel(c->loop, &c->timer);
    if (c->pending != NULL) {
        grpc_byte_buffer_destroy(c->pending);
        c->pending = NULL;
    }
    if (status == DFS_OK && !c->closed) {
        status = DFS_EINTERNAL;
        message = "answered before the stream ended";
    } else if (status == DFS_OK && c->resp == NULL) {
        status = DFS_EINTERNAL;
        message = "answered OK without a response";
    }
    c->status = status;
    if (status != DFS_OK)
        chain_set_error(c, status, message);
    if (!p->finished) {
        if (status != DFS_OK)
            chain_log_failure(p);
        if (p->committed)
            put_reply(p);
        else
            chain_resume(p);
    }
    put_unref(p);
}

/* Give up on the downstream call with a reason its done will report (our own words, so the
   client's ack may say them too). */
static void chain_give_up(struct put_call *p, int code, const char *why)
{
    struct chain *c = p->chain;
    if (c->error == NULL && c->ack_error[0] == '\0')
        snprintf(c->ack_error, sizeof c->ack_error, "next node unavailable: %s", why);
    c->broken = true;
    if (c->dc != NULL)
        dfs_rpc_ccall_cancel_with(c->dc, code, why);
}

static void chain_sent(dfs_rpc_ccall *call, void *arg, bool ok)
{
    (void)call;
    struct put_call *p = arg;
    struct chain *c = p->chain;
    c->send_busy = false;
    dfs_rpc_loop_timer_cancel(c->loop, &c->timer); /* the stall watch */
    if (!ok)
        c->broken = true; /* the call failed: its done says why */
    chain_resume(p);
}

/* Send the pending message when the bucket allows, else wait for it on a timer. */
static void chain_send_pending(struct put_call *p)
{
    struct chain *c = p->chain;
    size_t n = grpc_byte_buffer_length(c->pending);
    int64_t wait = link_take(c->link, c->rate, n);
    if (wait > 0) {
        dfs_rpc_loop_timer_arm(c->loop, &c->timer, dfs_clock_mono_ns() + wait);
        return;
    }
    grpc_byte_buffer *bb = c->pending;
    c->pending = NULL;
    c->send_busy = true;
    if (dfs_rpc_ccall_send_raw(c->dc, bb, false, chain_sent, p) != DFS_OK) {
        c->send_busy = false;
        link_refund(c->link, c->rate, n);
        chain_give_up(p, DFS_EINTERNAL, "cannot send to the next node");
        return;
    }
    c->forwarded += n;
    atomic_fetch_add(&p->svc->bytes_forwarded, n);
    /* A next node that takes nothing (stopped, its disk stuck) must not hold this put forever,
       deadline or not: the timer now watches the send (chain_timer_fire). */
    if (p->svc->idle_ms > 0)
        dfs_rpc_loop_timer_arm(c->loop, &c->timer, dfs_clock_mono_ns() + p->svc->idle_ms * 1000000);
}

/* The timer: tokens for the pending message are there, or (a send in flight) the send stalled. */
static void chain_timer_fire(dfs_rpc_timer *timer)
{
    struct chain *c = (struct chain *)(void *)((char *)timer - offsetof(struct chain, timer));
    struct put_call *p = c->p;
    if (c->send_busy) {
        char why[128];
        snprintf(why, sizeof why, "the next node took no data for %" PRId64 " ms", p->svc->idle_ms);
        chain_give_up(p, DFS_ETIMEDOUT, why);
        return; /* chain_sent (not ok) and chain_done follow */
    }
    if (c->pending != NULL && c->dc != NULL && !c->broken) {
        chain_send_pending(p);
    } else if (c->pending != NULL) {
        grpc_byte_buffer_destroy(c->pending);
        c->pending = NULL;
    }
    chain_resume(p);
}

/*
 * The first message for downstream: the received bytes with the header field replaced by the
 * header for the next node (forward[1..], the same size and forward_rate). The fields around it
 * are slices of `flat` (references, not copies), so only the header is packed anew.
 */
static grpc_byte_buffer *chain_first_message(struct put_call *p, grpc_slice flat,
                                             const struct dfs_put_msg *m)
{
    struct chain *c = p->chain;
    Dfs__V1__FragmentHeader h = DFS__V1__FRAGMENT_HEADER__INIT;
    h.fragment_id = p->id;
    h.size = p->size;
    h.forward = c->fwd + 1;
    h.n_forward = c->nfwd - 1;
    h.forward_rate = c->forward_rate;
    h.ticket = c->fwd_tickets[0];
    h.forward_tickets = c->fwd_tickets + 1;
    h.n_forward_tickets = c->nfwd - 1;
    h.hop_tickets = c->hop_tickets + 1;
    h.n_hop_tickets = c->nfwd - 1;
    size_t hlen = dfs__v1__fragment_header__get_packed_size(&h);
    grpc_slice parts[3];
    size_t n = 0;
    const uint8_t *base = GRPC_SLICE_START_PTR(flat);
    size_t begin = (size_t)(m->header_field - base);
    size_t end = (size_t)(m->header + m->header_len - base);
    if (begin > 0)
        parts[n++] = grpc_slice_sub(flat, 0, begin);
    grpc_slice hs = grpc_slice_malloc(1 + dfs_varint_len(hlen) + hlen);
    uint8_t *q = GRPC_SLICE_START_PTR(hs);
    *q++ = 0x0a; /* field 1, length-delimited */
    q = dfs_varint_put(q, hlen);
    q += dfs__v1__fragment_header__pack(&h, q);
    assert(q == GRPC_SLICE_END_PTR(hs));
    parts[n++] = hs;
    if (end < GRPC_SLICE_LENGTH(flat))
        parts[n++] = grpc_slice_sub(flat, end, GRPC_SLICE_LENGTH(flat));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(parts, n);
    for (size_t i = 0; i < n; i++)
        grpc_slice_unref(parts[i]);
    return bb;
}

/* Hand one received message (parsed as m) to the downstream call, if it still runs. */
static void chain_forward(struct put_call *p, grpc_slice flat, const struct dfs_put_msg *m)
{
    struct chain *c = p->chain;
    if (c == NULL || c->dc == NULL || c->broken)
        return;
    assert(c->pending == NULL && !c->send_busy);
    c->pending =
        m->has_header ? chain_first_message(p, flat, m) : grpc_raw_byte_buffer_create(&flat, 1);
    chain_send_pending(p);
}

/*
 * Start the call to forward[0], with the caller's deadline less a margin (a tenth, at most 1 s)
 * so that this node can still answer with the failure. A failure to start is the downstream's:
 * the put goes on and the ack says why.
 */
static void chain_open(struct put_call *p)
{
    struct chain *c = p->chain;
    int64_t left = dfs_rpc_call_remaining_ms(p->call);
    int64_t timeout = -1;
    if (left != INT64_MAX)
        timeout = left - (left / 10 < 1000 ? left / 10 : 1000);
    dfs_rpc_channel *ch = NULL;
    char *err = NULL;
    int rc = channel_for(p->svc, c->fwd[0], &ch, &c->link, &err);
    if (rc == DFS_OK) {
        rc = dfs_rpc_ccall_start(c->loop, ch, PUT_METHOD, timeout, chain_done, p, &c->dc);
        if (rc != DFS_OK)
            dfs_seterr(&err, rc, "cannot start a call to %s", c->fwd[0]);
    }
    if (rc != DFS_OK) {
        c->ended = true;
        c->broken = true;
        chain_set_error(c, rc, err);
        free(err);
        chain_log_failure(p);
        return;
    }
    p->refs++;
    if (dfs_rpc_ccall_recv(c->dc, &dfs__v1__put_fragment_response__descriptor, chain_resp, p) !=
        DFS_OK)
        chain_give_up(p, DFS_EINTERNAL, "cannot receive the answer of the next node");
    dfs_log(DFS_LOG_DEBUG,
            "chain start id=%s size=%" PRIu64 " next=%s hops=%zu rate=%" PRIu64
            " timeout_ms=%" PRId64,
            p->id, p->size, c->fwd[0], c->nfwd, c->rate, timeout);
}

/*
 * The part of a header's forward list check that needs this node (the form was checked by
 * dfs_validate_fragment_header): no entry may be this node's advertised address (a loop), and the
 * first hop needs this node's forward ticket, signed by the metadata service, naming forward[0]
 * and the node whose put ticket goes there. Nothing is dialled before this passes.
 */
static int check_forward(dfs_storage_service *svc, dfs_rpc_call *call,
                         const Dfs__V1__FragmentHeader *h, char **err)
{
    int rc = DFS_OK;
    pthread_mutex_lock(&svc->mu);
    for (size_t i = 0; i < h->n_forward && rc == DFS_OK; i++)
        if (svc->self[0] != '\0' && strcmp(h->forward[i], svc->self) == 0)
            rc = dfs_seterr(err, DFS_EINVAL,
                            "fragment %s: the forward list names this node (%s): a loop",
                            h->fragment_id, svc->self);
    pthread_mutex_unlock(&svc->mu);
    if (rc != DFS_OK)
        return rc;
    const Dfs__V1__Ticket *next = h->forward_tickets[0];
    const char *next_node = next != NULL && next->node_id != NULL ? next->node_id : "";
    return check_ticket_peer(svc, call, h->hop_tickets[0], DFS_TICKET_FORWARD, h->fragment_id,
                             next_node, h->forward[0], err);
}

/* Set up the chain state of a put whose header has a forward list. */
static int chain_create(struct put_call *p, const Dfs__V1__FragmentHeader *h, char **err)
{
    struct chain *c = calloc(1, sizeof *c);
    if (c == NULL)
        return dfs_seterr(err, DFS_ENOMEM, "PutFragment: out of memory");
    p->chain = c;
    c->p = p;
    for (size_t i = 0; i < h->n_forward; i++) {
        if ((c->fwd[i] = strdup(h->forward[i])) == NULL)
            return dfs_seterr(err, DFS_ENOMEM, "PutFragment: out of memory");
        c->nfwd++;
        /* The next nodes check their own tickets; a malformed one is theirs to refuse. */
        c->fwd_tickets[i] = dfs_ticket_pb_copy(&c->arena, h->forward_tickets[i]);
        c->hop_tickets[i] = dfs_ticket_pb_copy(&c->arena, h->hop_tickets[i]);
        for (int k = 0; k < 2; k++) {
            Dfs__V1__Ticket **t = k == 0 ? &c->fwd_tickets[i] : &c->hop_tickets[i];
            if (*t != NULL)
                continue;
            Dfs__V1__Ticket *empty = dfs_arena_alloc(&c->arena, sizeof *empty);
            if (empty == NULL)
                return dfs_seterr(err, DFS_ENOMEM, "PutFragment: out of memory");
            dfs__v1__ticket__init(empty);
            *t = empty;
        }
    }
    c->forward_rate = h->forward_rate;
    uint64_t rate = p->svc->forward_rate;
    if (h->forward_rate != 0 && (rate == 0 || h->forward_rate < rate))
        rate = h->forward_rate;
    c->t0_ns = dfs_clock_mono_ns();
    c->rate = rate;
    dfs_rpc_timer_init(&c->timer, chain_timer_fire);
    c->loop = dfs_rpc_call_loop(p->call);
    return DFS_OK;
}

/* ---- PutFragment: upstream ---- */

/*
 * Fragments are write-once (storage.proto): a stored fragment of another size is refused at once,
 * before any byte is taken; one of the same size is compared when the upload is complete
 * (dfs_frag_writer_commit_new).
 */
static int check_not_stored(dfs_storage_service *svc, const Dfs__V1__FragmentHeader *h, char **err)
{
    struct dfs_frag_info info;
    int rc = dfs_frag_store_stat(svc->store, h->fragment_id, &info, NULL);
    if (rc == DFS_ENOTFOUND || (rc == DFS_OK && info.size == h->size))
        return DFS_OK;
    if (rc == DFS_OK)
        return dfs_seterr(err, DFS_EEXIST,
                          "fragment %s is already stored here (%" PRIu64 " bytes, not %" PRIu64
                          "): a stored fragment is never replaced by a put",
                          h->fragment_id, info.size, h->size);
    if (rc == DFS_EDATALOSS)
        return dfs_seterr(err, DFS_EEXIST,
                          "fragment %s is already stored here (unreadable; a repair replaces it): "
                          "a stored fragment is never replaced by a put",
                          h->fragment_id);
    return dfs_seterr(err, rc, "fragment %s: cannot look at what is stored", h->fragment_id);
}

/* The first message: start the writer, after checking that the fragment can fit. */
static int put_begin(struct put_call *p, const struct dfs_put_msg *m, char **err)
{
    Dfs__V1__FragmentHeader *h = dfs__v1__fragment_header__unpack(NULL, m->header_len, m->header);
    if (h == NULL)
        return dfs_seterr(err, DFS_EINVAL, "PutFragment: the header does not parse");
    int rc = dfs_rpc_wire_check_strings(&dfs__v1__fragment_header__descriptor, m->header,
                                        m->header_len, err);
    if (rc == DFS_OK)
        rc = dfs_validate_fragment_header(h, err);
    if (rc == DFS_OK)
        rc = check_ticket(p->svc, p->call, h->ticket, DFS_TICKET_PUT, h->fragment_id, err);
    if (rc == DFS_OK)
        rc = check_not_stored(p->svc, h, err);
    if (rc == DFS_OK && h->n_forward > 0)
        rc = check_forward(p->svc, p->call, h, err);
    if (rc == DFS_OK)
        rc = dfs_frag_writer_begin(p->svc->store, h->fragment_id, h->size, &p->w, err);
    if (rc == DFS_OK) {
        memcpy(p->id, h->fragment_id, DFS_FRAGMENT_ID_HEX + 1);
        p->size = h->size;
        p->started = true;
        /* Fail at once, not after gigabytes, when the fragment's file cannot fit in the space
           left. Concurrent puts can still run the disk full later (ENOSPC from the writer). */
        struct dfs_frag_store_stats st;
        uint64_t need = DFS_FRAG_HEADER_SIZE + h->size + 4 * (uint64_t)dfs_crc32c_nblocks(h->size);
        if (dfs_frag_store_stats(p->svc->store, &st) == DFS_OK && st.free_bytes < need)
            rc = dfs_seterr(err, DFS_ENOSPC,
                            "fragment %s: %" PRIu64 " bytes do not fit in the %" PRIu64
                            " bytes free on this node",
                            p->id, need, st.free_bytes);
    }
    if (rc == DFS_OK && h->n_forward > 0) {
        rc = chain_create(p, h, err);
        if (rc == DFS_OK)
            chain_open(p);
    }
    dfs__v1__fragment_header__free_unpacked(h, NULL);
    return rc;
}

/*
 * Answer a chain put: this node's figures, then one ack per forward entry (storage.proto). The
 * local copy is committed and the downstream call has ended.
 */
static void put_reply_chain(struct put_call *p, Dfs__V1__PutFragmentResponse *resp)
{
    struct chain *c = p->chain;
    Dfs__V1__ChainAck acks[DFS_STORAGE_FORWARD_MAX];
    Dfs__V1__ChainAck *ptrs[DFS_STORAGE_FORWARD_MAX];
    char first[512], later[320], relayed[DFS_STORAGE_FORWARD_MAX][128];
    const Dfs__V1__PutFragmentResponse *d = c->status == DFS_OK ? c->resp : NULL;
    for (size_t i = 0; i < c->nfwd; i++) {
        dfs__v1__chain_ack__init(&acks[i]);
        acks[i].address = c->fwd[i];
        ptrs[i] = &acks[i];
    }
    /* forward[0]: the call's outcome, and its figures must be ours. */
    if (d == NULL) {
        snprintf(first, sizeof first, "%s",
                 c->ack_error[0] != '\0' ? c->ack_error : "next node unavailable");
        acks[0].error = first;
    } else if (strcmp(d->fragment_id, p->id) != 0 || d->size != p->size ||
               d->checksum != p->checksum) {
        char sid[48];
        snprintf(first, sizeof first,
                 "stored %s size %" PRIu64 " checksum %08x; this node stored size %" PRIu64
                 " checksum %08x",
                 scrub(d->fragment_id, sid, sizeof sid), d->size, d->checksum, p->size,
                 p->checksum);
        acks[0].error = first;
    } else {
        acks[0].ok = true;
        acks[0].size = d->size;
        acks[0].checksum = d->checksum;
        acks[0].receipt = d->receipt; /* the metadata service checks it at commit */
    }
    /* forward[1..]: relayed from forward[0]'s own chain, which must list them in order. */
    if (d == NULL)
        snprintf(later, sizeof later, "not reached: %s failed before it", c->fwd[0]);
    else
        snprintf(later, sizeof later, "not acknowledged: %s did not report it", c->fwd[0]);
    for (size_t i = 1; i < c->nfwd; i++) {
        const Dfs__V1__ChainAck *a = d != NULL && d->n_chain >= i ? d->chain[i - 1] : NULL;
        if (a == NULL || strcmp(a->address, c->fwd[i]) != 0) {
            acks[i].error = later;
        } else if (!a->ok) {
            acks[i].error = a->error;
        } else if (a->size != p->size || a->checksum != p->checksum) {
            snprintf(relayed[i], sizeof relayed[i],
                     "stored size %" PRIu64 " checksum %08x; %s stored size %" PRIu64
                     " checksum %08x",
                     a->size, a->checksum, c->fwd[0], p->size, p->checksum);
            acks[i].error = relayed[i];
        } else {
            acks[i].ok = true;
            acks[i].size = a->size;
            acks[i].checksum = a->checksum;
            acks[i].receipt = a->receipt;
        }
    }
    size_t nok = 0;
    for (size_t i = 0; i < c->nfwd; i++)
        nok += acks[i].ok;
    dfs_log(DFS_LOG_DEBUG,
            "chain done id=%s size=%" PRIu64 " next=%s acks_ok=%zu acks=%zu forwarded=%" PRIu64
            " ms=%.1f",
            p->id, p->size, c->fwd[0], nok, c->nfwd, c->forwarded,
            (double)(dfs_clock_mono_ns() - p->t0_ns) / 1e6);
    resp->chain = ptrs;
    resp->n_chain = c->nfwd;
    dfs_rpc_call_reply(p->call, &resp->base);
}

/* Answer a put whose local copy is committed (and, for a chain, whose downstream call ended). */
static void put_reply(struct put_call *p)
{
    p->finished = true;
    dfs_log(DFS_LOG_DEBUG, "put done id=%s size=%" PRIu64 " checksum=%08x messages=%u ms=%.1f",
            p->id, p->size, p->checksum, p->messages,
            (double)(dfs_clock_mono_ns() - p->t0_ns) / 1e6);
    Dfs__V1__PutFragmentResponse resp = DFS__V1__PUT_FRAGMENT_RESPONSE__INIT;
    resp.fragment_id = p->id;
    resp.size = p->size;
    resp.checksum = p->checksum;
    uint8_t receipt[DFS_RECEIPT_LEN];
    if (make_receipt(p->svc, p->id, p->size, p->checksum, receipt)) {
        resp.receipt.data = receipt;
        resp.receipt.len = sizeof receipt;
    }
    if (p->chain != NULL)
        put_reply_chain(p, &resp);
    else
        dfs_rpc_call_reply(p->call, &resp.base);
}

/*
 * The upstream ended: commit the local copy, then (chain) close the downstream stream and answer
 * once its call has ended.
 */
static void put_commit(struct put_call *p)
{
    if (!p->started) {
        put_failf(p, DFS_EINVAL, "PutFragment: the stream ended before a header arrived");
        return;
    }
    dfs_frag_writer *w = p->w;
    p->w = NULL;
    char *err = NULL;
    bool already = false;
    int rc = dfs_frag_writer_commit_new(w, &p->checksum, &already, &err);
    if (rc != DFS_OK) {
        put_fail_err(p, rc, err);
        return;
    }
    if (already)
        dfs_log(DFS_LOG_INFO,
                "put of a stored fragment, same bytes: nothing written id=%s size=%" PRIu64
                " checksum=%08x",
                p->id, p->size, p->checksum);
    p->committed = true;
    atomic_fetch_add(&p->svc->puts_ok, 1);
    struct chain *c = p->chain;
    if (c != NULL && c->dc != NULL && !c->broken) {
        /* No send is in flight: this end of stream was received after the last one completed. */
        if (dfs_rpc_ccall_close_send(c->dc) == DFS_OK)
            c->closed = true;
        else
            chain_give_up(p, DFS_EINTERNAL, "cannot close the stream to the next node");
    }
    if (c == NULL || c->ended)
        put_reply(p);
    /* else chain_done answers */
}

/*
 * One message: parse it, hand it downstream (chain), apply it locally. Returns DFS_OK to go on,
 * or fails the call and returns != 0.
 */
static int put_apply(struct put_call *p, grpc_slice flat)
{
    struct dfs_put_msg m;
    char *err = NULL;
    int rc = dfs_put_msg_parse(GRPC_SLICE_START_PTR(flat), GRPC_SLICE_LENGTH(flat), &m, p->crcs,
                               PUT_MAX_CRCS, &err);
    if (rc == DFS_OK && p->messages == 0 && !m.has_header)
        rc = dfs_seterr(&err, DFS_EINVAL, "PutFragment: the first message carries no header");
    if (rc == DFS_OK && p->messages > 0 && m.has_header)
        rc = dfs_seterr(&err, DFS_EINVAL,
                        "fragment %s: message %u carries a header; only the first may", p->id,
                        p->messages + 1);
    if (rc == DFS_OK && m.has_header)
        rc = put_begin(p, &m, &err);
    if (rc == DFS_OK)
        rc = dfs_validate_put_data(m.len, m.ncrcs, &err);
    if (rc == DFS_OK) {
        /* Downstream first: the send proceeds while the disk write below blocks this thread.
           The next node checks the CRCs itself. */
        chain_forward(p, flat, &m);
        rc = dfs_frag_writer_append(p->w, m.data, m.len, p->crcs, m.ncrcs, &err);
    }
    if (rc != DFS_OK) {
        put_fail_err(p, rc, err);
        return rc;
    }
    p->messages++;
    p->received += m.len;
    atomic_fetch_add(&p->svc->bytes_received, m.len);
    return DFS_OK;
}

/*
 * A data message (not the first) that arrived in pieces, applied from them: forwarded as the same
 * slices, checked and written from them (pwritev), so its bytes are never copied into one buffer.
 * Returns DFS_OK to go on; != 0 after failing the call; *in_place false (nothing done) when this
 * message needs the flat path (dfs_put_msg_parse_slices).
 */
static int put_apply_slices(struct put_call *p, grpc_byte_buffer *bb, bool *in_place)
{
    struct dfs_put_msg_iov m;
    char *err = NULL;
    int rc = dfs_put_msg_parse_slices(bb, &m, p->crcs, PUT_MAX_CRCS, in_place, &err);
    if (rc == DFS_OK && !*in_place)
        return DFS_OK;
    if (rc == DFS_OK)
        rc = dfs_validate_put_data(m.len, m.ncrcs, &err);
    if (rc == DFS_OK) {
        struct chain *c = p->chain;
        if (c != NULL && c->dc != NULL && !c->broken) {
            assert(c->pending == NULL && !c->send_busy);
            c->pending = grpc_raw_byte_buffer_create(bb->data.raw.slice_buffer.slices,
                                                     bb->data.raw.slice_buffer.count);
            chain_send_pending(p);
        }
        rc = dfs_frag_writer_append_iov(p->w, m.iov, m.niov, m.len, p->crcs, m.ncrcs, &err);
    }
    if (rc != DFS_OK) {
        put_fail_err(p, rc, err);
        return rc;
    }
    p->messages++;
    p->received += m.len;
    atomic_fetch_add(&p->svc->bytes_received, m.len);
    return DFS_OK;
}

static void put_recv(dfs_rpc_call *call, void *arg, grpc_byte_buffer *bb, int status);

static void put_recv_next(struct put_call *p)
{
    if (dfs_rpc_call_recv_raw(p->call, put_recv, p) != DFS_OK)
        put_failf(p, DFS_EINTERNAL, "fragment %s: cannot receive the next message", p->id);
}

static void put_recv(dfs_rpc_call *call, void *arg, grpc_byte_buffer *bb, int status)
{
    (void)call;
    struct put_call *p = arg;
    if (p->finished) {
        if (bb != NULL)
            grpc_byte_buffer_destroy(bb);
        return;
    }
    if (status != DFS_OK) {
        put_cancelled(call, p);
        return;
    }
    if (bb == NULL) {
        /* End of stream: the client half-closed, or cancelled (gRPC reports both alike). The
           commit tells them apart by the byte count. */
        put_commit(p);
        return;
    }
    /* A data message in pieces is applied from them; the first message (its header is rewritten
       for a chain) and anything unusual are flattened once. */
    if (p->messages > 0 && bb->type == GRPC_BB_RAW && bb->data.raw.slice_buffer.count > 1) {
        bool in_place = false;
        int rc = put_apply_slices(p, bb, &in_place);
        if (in_place || rc != DFS_OK) {
            grpc_byte_buffer_destroy(bb);
            if (rc != DFS_OK)
                return;
            if (chain_busy(p->chain))
                p->chain->want_next = true; /* chain_sent (or the timer, or chain_done) resumes */
            else
                put_recv_next(p);
            return;
        }
    }
    /* Parse in place when the message arrived as one plain slice; otherwise flatten it once. */
    grpc_slice flat;
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1) {
        flat = grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
    } else {
        grpc_byte_buffer_reader reader;
        if (!grpc_byte_buffer_reader_init(&reader, bb)) {
            grpc_byte_buffer_destroy(bb);
            put_failf(p, DFS_EINVAL, "PutFragment: cannot decompress a message");
            return;
        }
        flat = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
    }
    grpc_byte_buffer_destroy(bb);
    int rc = put_apply(p, flat);
    grpc_slice_unref(flat);
    if (rc != DFS_OK)
        return;
    if (chain_busy(p->chain))
        p->chain->want_next = true; /* chain_sent (or the timer, or chain_done) resumes */
    else
        put_recv_next(p);
}

static void put_handler(dfs_rpc_call *call, void *ctx)
{
    dfs_storage_service *svc = ctx;
    struct put_call *p = calloc(1, sizeof *p);
    if (p == NULL) {
        atomic_fetch_add(&svc->puts_failed, 1);
        dfs_rpc_call_fail(call, DFS_ENOMEM, "PutFragment: out of memory");
        return;
    }
    p->svc = svc;
    p->call = call;
    p->refs = 1;
    p->t0_ns = dfs_clock_mono_ns();
    atomic_fetch_add(&svc->puts_active, 1);
    dfs_rpc_call_set_state(call, p, put_release);
    dfs_rpc_call_on_cancel(call, put_cancelled, p);
    put_recv_next(p);
}

/* ---- GetFragment ---- */

struct get_call {
    dfs_storage_service *svc;
    dfs_rpc_call *call;
    dfs_frag_reader *r;
    dfs_frag_map *map; /* the requested range mapped (NULL: every message is read) */
    char id[DFS_FRAGMENT_ID_HEX + 1];
    uint64_t size;     /* of the whole fragment */
    uint32_t checksum; /* of the whole fragment */
    uint64_t begin;    /* the requested range's first byte */
    uint64_t pos, end; /* what is left to send: [pos, end) */
    bool first;        /* the next message is the first (carries header and checksum) */
    bool finished;
    uint32_t messages;
    int64_t t0_ns;
    uint32_t crcs[GET_MAX_CRCS];
};

static void get_release(void *state)
{
    struct get_call *g = state;
    dfs_frag_map_unref(g->map);
    dfs_frag_reader_close(g->r);
    atomic_fetch_sub(&g->svc->gets_active, 1);
    free(g);
}

static void get_fail(struct get_call *g, int code, char *err)
{
    g->finished = true;
    own_damage(g->svc, g->id, code); /* a corrupt block met while sending */
    atomic_fetch_add(&g->svc->gets_failed, 1);
    const char *msg = err != NULL ? err : dfs_strerror(code);
    log_failure(code == DFS_ECANCELED ? DFS_LOG_INFO : DFS_LOG_WARN, g->call, "get", g->id, code,
                msg);
    dfs_rpc_call_finish(g->call, code, NULL, msg);
    free(err);
}

static void map_slice_unref(void *m)
{
    dfs_frag_map_unref(m);
}

/*
 * Build the next GetFragmentResponse straight into one grpc_slice_malloc slice, with the data read
 * from disk into its final place in that slice: no buffer of ours, no copy by protobuf-c. Or, when
 * the data is in the page cache (dfs_frag_reader_peek), in three slices: the fields before the
 * data, the data where it lies in the mapped fragment file, and the fields after it; then the data
 * is checked in place and copied once, by the kernel, into the socket. Fields in number order (as
 * protobuf-c would write them):
 *
 *   1 header   first message only: {1 fragment_id (40 bytes), 2 size (omitted when 0)}
 *   2 data     n bytes, read by dfs_frag_reader_read (which checks the stored CRCs)
 *   3 crc32c   packed: ceil(n / 64 KiB) little-endian u32s, the piece CRCs of this data
 *   4 checksum first message only
 *
 * Every length is known before the read (n, and so the number of CRCs), so the slice is allocated
 * once at its exact size and filled in order.
 */
static int get_pack_next(struct get_call *g, grpc_byte_buffer **out, char **err)
{
    uint64_t left = g->end - g->pos;
    size_t n = left < g->svc->chunk ? (size_t)left : g->svc->chunk;
    size_t ncrcs = dfs_crc32c_nblocks(n);
    size_t hlen = 0, total = 0;
    if (g->first) {
        hlen = 2 + DFS_FRAGMENT_ID_HEX + (g->size > 0 ? 1 + dfs_varint_len(g->size) : 0);
        total += 1 + dfs_varint_len(hlen) + hlen + 1 + 4;
    }
    if (n > 0)
        total += 1 + dfs_varint_len(n) + n + 1 + dfs_varint_len(4 * ncrcs) + 4 * ncrcs;
    const unsigned char *mapped = NULL;
    if (n > 0 && g->map != NULL) {
        int rc = dfs_frag_reader_peek(g->r, g->map, g->pos, n, &mapped, g->crcs, err);
        if (rc != DFS_OK)
            return rc;
    }
    grpc_slice s = grpc_slice_malloc(mapped != NULL ? total - n : total);
    uint8_t *start = GRPC_SLICE_START_PTR(s), *q = start;
    if (g->first) {
        *q++ = 0x0a; /* field 1, length-delimited */
        q = dfs_varint_put(q, hlen);
        *q++ = 0x0a; /* FragmentHeader.fragment_id */
        *q++ = DFS_FRAGMENT_ID_HEX;
        memcpy(q, g->id, DFS_FRAGMENT_ID_HEX);
        q += DFS_FRAGMENT_ID_HEX;
        if (g->size > 0) {
            *q++ = 0x10; /* FragmentHeader.size, varint */
            q = dfs_varint_put(q, g->size);
        }
    }
    uint8_t *data_at = NULL;
    if (n > 0) {
        *q++ = 0x12; /* field 2, length-delimited */
        q = dfs_varint_put(q, n);
        data_at = q;
        if (mapped == NULL) {
            int rc = dfs_frag_reader_read(g->r, g->pos, q, n, g->crcs, err);
            if (rc != DFS_OK) {
                grpc_slice_unref(s);
                return rc;
            }
            q += n;
        }
        *q++ = 0x1a; /* field 3, packed */
        q = dfs_varint_put(q, 4 * ncrcs);
        for (size_t i = 0; i < ncrcs; i++)
            q = put_le32(q, g->crcs[i]);
    }
    if (g->first) {
        *q++ = 0x25; /* field 4, fixed32 */
        q = put_le32(q, g->checksum);
    }
    if (mapped == NULL) {
        assert((size_t)(q - start) == total);
        *out = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
    } else {
        assert((size_t)(q - start) == total - n);
        size_t before = (size_t)(data_at - start);
        dfs_frag_map_ref(g->map); /* the data slice's, released when gRPC is done with it */
        grpc_slice parts[3] = {
            grpc_slice_sub_no_ref(s, 0, before),
            grpc_slice_new_with_user_data((void *)mapped, n, map_slice_unref, g->map),
            grpc_slice_sub_no_ref(s, before, total - n),
        };
        *out = grpc_raw_byte_buffer_create(parts, 3); /* takes its own references */
        grpc_slice_unref(parts[1]);
        grpc_slice_unref(s);
    }
    g->first = false;
    g->pos += n;
    g->messages++;
    atomic_fetch_add(&g->svc->bytes_sent, n);
    return DFS_OK;
}

static void get_sent(dfs_rpc_call *call, void *arg, bool ok);

/* Read and send the next message; after the last one, finish (the status follows the send). */
static void get_send_next(struct get_call *g)
{
    grpc_byte_buffer *bb = NULL;
    char *err = NULL;
    int rc = get_pack_next(g, &bb, &err);
    if (rc != DFS_OK) {
        get_fail(g, rc, err);
        return;
    }
    rc = dfs_rpc_call_send_raw(g->call, bb, get_sent, g);
    if (rc != DFS_OK) {
        get_fail(g, DFS_EINTERNAL, NULL);
        return;
    }
    if (g->pos == g->end) {
        g->finished = true;
        atomic_fetch_add(&g->svc->gets_ok, 1);
        dfs_log(DFS_LOG_DEBUG, "get done id=%s bytes=%" PRIu64 " messages=%u ms=%.1f", g->id,
                g->end - g->begin, g->messages, (double)(dfs_clock_mono_ns() - g->t0_ns) / 1e6);
        dfs_rpc_call_finish(g->call, DFS_OK, NULL, NULL);
    }
}

static void get_sent(dfs_rpc_call *call, void *arg, bool ok)
{
    (void)call;
    struct get_call *g = arg;
    if (g->finished)
        return;
    if (!ok) {
        char *err = NULL;
        dfs_seterr(&err, DFS_ECANCELED, "fragment %s: the client went away after %u messages",
                   g->id, g->messages);
        get_fail(g, DFS_ECANCELED, err);
        return;
    }
    get_send_next(g);
}

static void get_handler(dfs_rpc_call *call, void *ctx)
{
    dfs_storage_service *svc = ctx;
    const Dfs__V1__GetFragmentRequest *req =
        (const Dfs__V1__GetFragmentRequest *)dfs_rpc_call_request(call);
    char *err = NULL;
    dfs_frag_reader *r = NULL;
    int rc = dfs_validate_get_fragment(req, &err);
    if (rc == DFS_OK)
        rc = check_ticket(svc, call, req->ticket, DFS_TICKET_GET, req->fragment_id, &err);
    if (rc == DFS_OK) {
        rc = dfs_frag_reader_open(svc->store, req->fragment_id, &r, &err);
        own_damage(svc, req->fragment_id, rc); /* the ticket says the copy should be here */
    }
    uint64_t size = rc == DFS_OK ? dfs_frag_reader_size(r) : 0;
    if (rc == DFS_OK && req->offset > size)
        rc = dfs_seterr(&err, DFS_ERANGE,
                        "fragment %s: offset %" PRIu64 " is beyond its size %" PRIu64,
                        req->fragment_id, req->offset, size);
    if (rc == DFS_OK && req->length > size - req->offset)
        rc = dfs_seterr(&err, DFS_ERANGE,
                        "fragment %s: %" PRIu64 " bytes at offset %" PRIu64
                        " go beyond its size %" PRIu64,
                        req->fragment_id, req->length, req->offset, size);
    struct get_call *g = NULL;
    if (rc == DFS_OK && (g = calloc(1, sizeof *g)) == NULL)
        rc = dfs_seterr(&err, DFS_ENOMEM, "GetFragment: out of memory");
    if (rc != DFS_OK) {
        dfs_frag_reader_close(r);
        atomic_fetch_add(&svc->gets_failed, 1);
        const char *msg = err != NULL ? err : dfs_strerror(rc);
        /* A client asking for what is not there is routine; a store that fails is not. A
           malformed request is refused before its ticket is looked at, so anyone can send one:
           what it holds is logged at debug only; so is a refused ticket, which has its own line
           (at most one a second). */
        bool client = rc == DFS_ENOTFOUND || rc == DFS_ERANGE;
        log_failure(rc == DFS_EINVAL || rc == DFS_EPERM ? DFS_LOG_DEBUG
                    : client                            ? DFS_LOG_INFO
                                                        : DFS_LOG_WARN,
                    call, "get", req->fragment_id, rc, msg);
        dfs_rpc_call_finish(call, rc, NULL, msg);
        free(err);
        return;
    }
    g->svc = svc;
    g->call = call;
    g->r = r;
    memcpy(g->id, req->fragment_id, DFS_FRAGMENT_ID_HEX + 1);
    g->size = size;
    g->checksum = dfs_frag_reader_checksum(r);
    g->begin = req->offset;
    g->pos = req->offset;
    g->end = req->length == 0 ? size : req->offset + req->length;
    g->first = true;
    g->t0_ns = dfs_clock_mono_ns();
    if (dfs_frag_reader_map(r, g->begin, g->end - g->begin, &g->map, NULL) != DFS_OK)
        g->map = NULL; /* every message is read instead */
    atomic_fetch_add(&svc->gets_active, 1);
    dfs_rpc_call_set_state(call, g, get_release);
    get_send_next(g);
}

/* ---- DeleteFragment, StatFragment ---- */

static void unary_fail(dfs_rpc_call *call, const char *what, const char *id, int rc, char *err)
{
    const char *msg = err != NULL ? err : dfs_strerror(rc);
    bool client = rc == DFS_EINVAL || rc == DFS_ENOTFOUND || rc == DFS_EPERM;
    log_failure(client ? DFS_LOG_DEBUG : DFS_LOG_WARN, call, what, id, rc, msg);
    dfs_rpc_call_finish(call, rc, NULL, msg);
    free(err);
}

static void delete_handler(dfs_rpc_call *call, void *ctx)
{
    dfs_storage_service *svc = ctx;
    const Dfs__V1__DeleteFragmentRequest *req =
        (const Dfs__V1__DeleteFragmentRequest *)dfs_rpc_call_request(call);
    bool existed = false;
    char *err = NULL;
    if (dfs_validate_delete_fragment(req, &err) != DFS_OK) {
        dfs_rpc_call_reject(call, DFS_EINVAL, err);
        free(err);
        return;
    }
    int rc = check_ticket(svc, call, req->ticket, DFS_TICKET_DELETE, req->fragment_id, &err);
    if (rc == DFS_OK)
        rc = dfs_frag_store_delete(svc->store, req->fragment_id, &existed, &err);
    if (rc != DFS_OK) {
        unary_fail(call, "delete", req->fragment_id, rc, err);
        return;
    }
    dfs_log(DFS_LOG_DEBUG, "delete done id=%s existed=%s", req->fragment_id,
            existed ? "true" : "false");
    Dfs__V1__DeleteFragmentResponse resp = DFS__V1__DELETE_FRAGMENT_RESPONSE__INIT;
    resp.existed = existed;
    dfs_rpc_call_reply(call, &resp.base);
}

/*
 * A StatFragment with verify: the read runs as a job on the repairer's workers (it may take
 * seconds), whose last act posts `answer` to the call's loop, where the call is finished (as a
 * repair is). Released with the call's state.
 */
struct verify_call {
    dfs_storage_service *svc;
    dfs_rpc_call *call;
    dfs_rpc_loop *loop;
    dfs_rpc_tag answer;
    struct dfs_repair_job job;
    char id[DFS_FRAGMENT_ID_HEX + 1];
};

static void verify_release(void *state)
{
    struct verify_call *v = state;
    free(v->job.message);
    free(v);
}

static void verify_cancelled(dfs_rpc_call *call, void *arg)
{
    (void)call;
    struct verify_call *v = arg;
    atomic_store(&v->job.cancel, true);
}

static void unary_fail(dfs_rpc_call *call, const char *what, const char *id, int rc, char *err);

/* On the call's loop: the worker has read the fragment. */
static void verify_answer(dfs_rpc_tag *tag, bool ok)
{
    (void)ok;
    struct verify_call *v =
        (struct verify_call *)(void *)((char *)tag - offsetof(struct verify_call, answer));
    const struct dfs_repair_job *j = &v->job;
    if (j->status != DFS_OK) {
        unary_fail(v->call, "verify", v->id, j->status,
                   j->message != NULL ? strdup(j->message) : NULL);
        return;
    }
    struct dfs_frag_info info;
    Dfs__V1__StatFragmentResponse resp = DFS__V1__STAT_FRAGMENT_RESPONSE__INIT;
    resp.fragment_id = v->id;
    resp.size = j->size;
    resp.checksum = j->checksum;
    if (dfs_frag_store_stat(v->svc->store, v->id, &info, NULL) == DFS_OK)
        resp.stored_ms = info.stored_ms;
    dfs_rpc_call_reply(v->call, &resp.base);
}

/* On a repairer worker: hand the outcome back to the call's loop. */
static void verify_job_done(struct dfs_repair_job *job)
{
    struct verify_call *v = job->arg;
    for (unsigned tries = 0; !dfs_rpc_loop_post(v->loop, &v->answer); tries++) {
        if (tries == 0)
            dfs_log(DFS_LOG_ERROR, "cannot hand a check's answer to its loop; retrying id=%s",
                    v->id);
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* StatFragment with verify, after its checks: queue the read. */
static void stat_verify(dfs_storage_service *svc, dfs_rpc_call *call, const char *fragment_id)
{
    char *err = NULL;
    int rc = DFS_OK;
    struct verify_call *v = calloc(1, sizeof *v);
    if (v == NULL) {
        unary_fail(call, "verify", fragment_id, DFS_ENOMEM, NULL);
        return;
    }
    v->svc = svc;
    v->call = call;
    v->loop = dfs_rpc_call_loop(call);
    v->answer.done = verify_answer;
    memcpy(v->id, fragment_id, DFS_FRAGMENT_ID_HEX + 1);
    v->job.verify_id = v->id;
    int64_t left = dfs_rpc_call_remaining_ms(call);
    v->job.deadline_ns =
        left >= INT64_MAX / 2000000 ? INT64_MAX : dfs_clock_mono_ns() + left * 1000000;
    atomic_init(&v->job.cancel, false);
    v->job.done = verify_job_done;
    v->job.arg = v;
    dfs_rpc_call_set_state(call, v, verify_release);
    dfs_rpc_call_on_cancel(call, verify_cancelled, v);
    rc = dfs_repairer_submit(svc->repairer, &v->job, &err);
    if (rc != DFS_OK)
        unary_fail(call, "verify", fragment_id, rc, err);
}

static void stat_handler(dfs_rpc_call *call, void *ctx)
{
    dfs_storage_service *svc = ctx;
    const Dfs__V1__StatFragmentRequest *req =
        (const Dfs__V1__StatFragmentRequest *)dfs_rpc_call_request(call);
    struct dfs_frag_info info;
    char *err = NULL;
    if (dfs_validate_stat_fragment(req, &err) != DFS_OK) {
        dfs_rpc_call_reject(call, DFS_EINVAL, err);
        free(err);
        return;
    }
    int rc = check_ticket(svc, call, req->ticket, DFS_TICKET_STAT, req->fragment_id, &err);
    if (rc == DFS_OK && req->verify) {
        stat_verify(svc, call, req->fragment_id);
        return;
    }
    if (rc == DFS_OK)
        rc = dfs_frag_store_stat(svc->store, req->fragment_id, &info, &err);
    if (rc != DFS_OK) {
        unary_fail(call, "stat", req->fragment_id, rc, err);
        return;
    }
    Dfs__V1__StatFragmentResponse resp = DFS__V1__STAT_FRAGMENT_RESPONSE__INIT;
    resp.fragment_id = req->fragment_id;
    resp.size = info.size;
    resp.checksum = info.checksum;
    resp.stored_ms = info.stored_ms;
    dfs_rpc_call_reply(call, &resp.base);
}

/* ---- RepairFragment ---- */

/*
 * One repair call. The job runs on a repairer worker; the worker's last act is to post `answer`
 * to the call's loop, where the call is finished: every verb on the server call stays on its
 * loop thread. The call cannot end before that (the handler's finish is what ends it, and the
 * server's stop waits for it), so the loop is alive when the post arrives. Released with the
 * call's state, after the finish.
 */
struct repair_call {
    dfs_storage_service *svc;
    dfs_rpc_call *call;
    dfs_rpc_loop *loop;
    dfs_rpc_tag answer;
    struct dfs_repair_job job;
};

static void repair_release(void *state)
{
    struct repair_call *rc = state;
    atomic_fetch_sub(&rc->svc->repairs_active, 1);
    free(rc->job.message);
    free(rc);
}

static void repair_cancelled(dfs_rpc_call *call, void *arg)
{
    (void)call;
    struct repair_call *rc = arg;
    atomic_store(&rc->job.cancel, true);
}

static void repair_reply(dfs_rpc_call *call, const char *id, uint64_t size, uint32_t checksum,
                         uint64_t bytes_read, const char *source)
{
    Dfs__V1__RepairFragmentResponse resp = DFS__V1__REPAIR_FRAGMENT_RESPONSE__INIT;
    resp.fragment_id = (char *)id;
    resp.size = size;
    resp.checksum = checksum;
    resp.bytes_read = bytes_read;
    resp.source = (char *)source;
    dfs_rpc_call_reply(call, &resp.base);
}

/* On the call's loop: the worker is done with the job. */
static void repair_answer(dfs_rpc_tag *tag, bool ok)
{
    (void)ok;
    struct repair_call *rc =
        (struct repair_call *)(void *)((char *)tag - offsetof(struct repair_call, answer));
    const struct dfs_repair_job *j = &rc->job;
    if (j->status == DFS_OK)
        repair_reply(rc->call, j->req->fragment_id, j->size, j->checksum, j->bytes_read, j->source);
    else
        dfs_rpc_call_finish(rc->call, j->status, NULL, j->message);
}

/* On a repairer worker: hand the outcome back to the call's loop. */
static void repair_job_done(struct dfs_repair_job *job)
{
    struct repair_call *rc = job->arg;
    /* A post fails only when memory is short; the call must still end, so keep trying. */
    for (unsigned tries = 0; !dfs_rpc_loop_post(rc->loop, &rc->answer); tries++) {
        if (tries == 0)
            dfs_log(DFS_LOG_ERROR, "cannot hand a repair's answer to its loop; retrying id=%s",
                    job->req->fragment_id);
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static void repair_handler(dfs_rpc_call *call, void *ctx)
{
    dfs_storage_service *svc = ctx;
    const Dfs__V1__RepairFragmentRequest *req =
        (const Dfs__V1__RepairFragmentRequest *)dfs_rpc_call_request(call);
    char *err = NULL;
    int rc = dfs_validate_repair_fragment(req, &err);
    if (rc != DFS_OK) {
        dfs_repairer_count(svc->repairer, false);
        dfs_rpc_call_reject(call, rc, err);
        free(err);
        return;
    }
    rc = check_ticket(svc, call, req->ticket, DFS_TICKET_REPAIR, req->fragment_id, &err);
    struct repair_call *r = NULL;
    if (rc == DFS_OK && (r = calloc(1, sizeof *r)) == NULL)
        rc = dfs_seterr(&err, DFS_ENOMEM, "RepairFragment: out of memory");
    if (rc == DFS_OK) {
        r->svc = svc;
        r->call = call;
        r->loop = dfs_rpc_call_loop(call);
        r->answer.done = repair_answer;
        r->job.req = req;
        int64_t left = dfs_rpc_call_remaining_ms(call);
        /* No deadline, or one too far to count in nanoseconds: none. */
        r->job.deadline_ns =
            left >= INT64_MAX / 2000000 ? INT64_MAX : dfs_clock_mono_ns() + left * 1000000;
        atomic_init(&r->job.cancel, false);
        r->job.done = repair_job_done;
        r->job.arg = r;
        atomic_fetch_add(&svc->repairs_active, 1);
        dfs_rpc_call_set_state(call, r, repair_release);
        dfs_rpc_call_on_cancel(call, repair_cancelled, r);
        rc = dfs_repairer_submit(svc->repairer, &r->job, &err);
        if (rc == DFS_OK)
            return; /* repair_answer finishes the call */
    }
    dfs_repairer_count(svc->repairer, false);
    unary_fail(call, "repair", req->fragment_id, rc, err);
}

/* ---- the service ---- */

int dfs_storage_service_create(dfs_frag_store *store, const struct dfs_storage_service_config *cfg,
                               dfs_storage_service **out, char **errmsg)
{
    size_t chunk = cfg != NULL && cfg->chunk_bytes != 0 ? cfg->chunk_bytes : DFS_STORAGE_CHUNK_MAX;
    if (store == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "storage service: no fragment store");
    if (chunk % DFS_BLOCK_SIZE != 0 || chunk > DFS_STORAGE_CHUNK_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "storage service: chunk_bytes %zu is not a multiple of %u up to %u",
                          chunk, DFS_BLOCK_SIZE, DFS_STORAGE_CHUNK_MAX);
    const char *self = cfg != NULL && cfg->advertise != NULL ? cfg->advertise : "";
    if (self[0] != '\0' && !dfs_addr_valid(self, DFS_STORAGE_ADDR_MAX)) {
        char a[64];
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "storage service: the advertised address \"%s\" is not a host:port",
                          scrub(self, a, sizeof a));
    }
    dfs_storage_service *svc = calloc(1, sizeof *svc);
    if (svc == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    svc->store = store;
    svc->chunk = chunk;
    dfs_lograte_init(&svc->refusal_log, 1000);
    svc->forward_rate = cfg != NULL ? cfg->forward_rate : 0;
    svc->idle_ms =
        cfg != NULL && cfg->stream_idle_ms != 0 ? cfg->stream_idle_ms : DFS_RPC_STREAM_IDLE_MS;
    snprintf(svc->self, sizeof svc->self, "%s", self);
    snprintf(svc->node_id, sizeof svc->node_id, "%s", dfs_frag_store_node_id(store));
    struct dfs_rpc_pool_config pool = {
        .security = cfg != NULL ? cfg->security : NULL,
        .max = CHANNELS_MAX,
        .full_message = "this node already keeps channels to 1024 other nodes",
        .data_size = sizeof(struct link),
        .data_init = link_init,
        .data_fini = link_fini,
    };
    static_assert(CHANNELS_MAX == 1024, "the message names the limit");
    if (dfs_rpc_pool_create(&pool, &svc->downstream, errmsg) != DFS_OK) {
        free(svc);
        return DFS_ENOMEM;
    }
    pthread_mutex_init(&svc->mu, NULL);
    pthread_mutex_init(&svc->key_mu, NULL);
    struct dfs_repairer_config rcfg = {0};
    if (cfg != NULL) {
        rcfg.rate = cfg->repair_rate;
        rcfg.workers = cfg->repair_workers;
        rcfg.stall_ms = cfg->repair_stall_ms;
        rcfg.security = cfg->security;
        rcfg.on_bad_source = cfg->on_peer_damage;
        rcfg.bad_source_arg = cfg->damage_arg;
        svc->on_own_damage = cfg->on_own_damage;
        svc->on_peer_damage = cfg->on_peer_damage;
        svc->damage_arg = cfg->damage_arg;
    }
    int rc = dfs_repairer_create(store, &rcfg, &svc->repairer, errmsg);
    if (rc != DFS_OK) {
        dfs_rpc_pool_destroy(svc->downstream);
        pthread_mutex_destroy(&svc->mu);
        pthread_mutex_destroy(&svc->key_mu);
        free(svc);
        return rc;
    }
    *out = svc;
    return DFS_OK;
}

int dfs_storage_service_set_advertise(dfs_storage_service *svc, const char *addr, char **errmsg)
{
    if (addr == NULL || !dfs_addr_valid(addr, DFS_STORAGE_ADDR_MAX)) {
        char a[64];
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "storage service: the advertised address \"%s\" is not a host:port",
                          scrub(addr, a, sizeof a));
    }
    pthread_mutex_lock(&svc->mu);
    snprintf(svc->self, sizeof svc->self, "%s", addr);
    pthread_mutex_unlock(&svc->mu);
    return DFS_OK;
}

int dfs_storage_service_set_ticket_key(dfs_storage_service *svc, const uint8_t *key, size_t len,
                                       char **errmsg)
{
    if (key == NULL || len != DFS_TICKET_KEY_LEN)
        return dfs_seterr(errmsg, DFS_EINVAL, "a ticket key is %d bytes, not %zu",
                          DFS_TICKET_KEY_LEN, key == NULL ? (size_t)0 : len);
    pthread_mutex_lock(&svc->key_mu);
    bool changed = svc->have_key && memcmp(svc->key, key, len) != 0;
    memcpy(svc->key, key, len);
    svc->have_key = true;
    pthread_mutex_unlock(&svc->key_mu);
    if (changed)
        dfs_log(DFS_LOG_WARN, "ticket key changed (a new catalog?); old tickets are refused");
    return DFS_OK;
}

int dfs_storage_service_register(dfs_storage_service *svc, dfs_rpc_server *srv, char **errmsg)
{
    /* PutFragment's messages are parsed by put_recv (raw receive), not by the server. */
    const struct dfs_rpc_method methods[] = {
        {PUT_METHOD, DFS_RPC_CLIENT_STREAMING, &dfs__v1__put_fragment_request__descriptor,
         put_handler, svc, 0},
        {"/dfs.v1.Storage/GetFragment", DFS_RPC_SERVER_STREAMING,
         &dfs__v1__get_fragment_request__descriptor, get_handler, svc, 0},
        {"/dfs.v1.Storage/DeleteFragment", DFS_RPC_UNARY,
         &dfs__v1__delete_fragment_request__descriptor, delete_handler, svc, 0},
        {"/dfs.v1.Storage/StatFragment", DFS_RPC_UNARY, &dfs__v1__stat_fragment_request__descriptor,
         stat_handler, svc, 0},
        {"/dfs.v1.Storage/RepairFragment", DFS_RPC_UNARY,
         &dfs__v1__repair_fragment_request__descriptor, repair_handler, svc, 0},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int rc = dfs_rpc_server_add_method(srv, &methods[i], errmsg);
        if (rc != DFS_OK)
            return rc;
    }
    return DFS_OK;
}

void dfs_storage_service_stats(dfs_storage_service *svc, struct dfs_storage_service_stats *out)
{
    out->puts_active = atomic_load(&svc->puts_active);
    out->puts_ok = atomic_load(&svc->puts_ok);
    out->puts_failed = atomic_load(&svc->puts_failed);
    out->forwards_failed = atomic_load(&svc->forwards_failed);
    out->gets_active = atomic_load(&svc->gets_active);
    out->gets_ok = atomic_load(&svc->gets_ok);
    out->gets_failed = atomic_load(&svc->gets_failed);
    out->bytes_received = atomic_load(&svc->bytes_received);
    out->bytes_sent = atomic_load(&svc->bytes_sent);
    out->bytes_forwarded = atomic_load(&svc->bytes_forwarded);
    struct dfs_repairer_stats rs;
    dfs_repairer_stats(svc->repairer, &rs);
    out->repairs_active = atomic_load(&svc->repairs_active);
    out->repairs_ok = rs.ok;
    out->repairs_failed = rs.failed;
    out->repair_bytes_read = rs.bytes_read;
    out->tickets_refused = atomic_load(&svc->tickets_refused);
}

void dfs_storage_service_destroy(dfs_storage_service *svc)
{
    if (svc == NULL)
        return;
    dfs_repairer_destroy(svc->repairer);
    dfs_rpc_pool_destroy(svc->downstream);
    pthread_mutex_destroy(&svc->mu);
    free(svc);
}
