/* A gRPC C-core server: registered methods, one completion queue per worker thread, async calls;
   optionally, unary handlers on threads of their own (handler_threads). */
#include "services/rpc/server.h"

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/lograte.h"
#include "services/rpc/msg.h"
#include "services/rpc/security_int.h"
#include "services/rpc/status.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct method_entry {
    struct dfs_rpc_method m;
    void *handle; /* from grpc_server_register_method */
};

struct worker {
    dfs_rpc_server *srv;
    dfs_rpc_loop *loop;
    pthread_t thread;
    bool running;
};

/*
 * One outstanding "request a call" per (worker, method): when it is matched, the call is handed to
 * the handler and the slot asks for the next one. method == -1 is the catch-all for unknown
 * methods.
 */
struct request_slot {
    dfs_rpc_tag tag;
    dfs_rpc_server *srv;
    struct worker *w;
    int method;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details;
};

struct dfs_rpc_server {
    grpc_server *server;
    struct method_entry *methods;
    size_t nmethods;
    struct worker *workers;
    int nworkers;
    struct request_slot *slots;
    size_t nslots;
    char *listen;
    size_t max_message;
    int64_t idle_ms; /* stream idle limit; <= 0: none */
    int port;
    bool started;
    atomic_bool shutting_down;

    /* Guards stopped, shutdown_done and live_calls; cv signals shutdown_done and live_calls
       reaching 0. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopped;
    bool shutdown_done;
    dfs_rpc_tag shutdown_tag;
    /*
     * dfs_rpc_call structures not yet freed. gRPC's shutdown notification waits for the
     * connections, not for the calls the application still holds: a call whose handler handed it
     * to another thread (a repair) outlives its cancelled connection, and that thread will still
     * post its answer to the call's loop. So the stop waits for this to reach 0 before it shuts
     * the loops down (see dfs_rpc_loop_post).
     */
    size_t live_calls;

    /*
     * Handler threads (config handler_threads; 0: none, handlers run on the loops). Unary calls
     * waiting for one, oldest first, under hmu; hcv signals a new call and hstop. hstop is set
     * only once live_calls is 0, so the queue is empty by then.
     */
    pthread_t *handlers;
    int nhandlers, handlers_running;
    pthread_mutex_t hmu;
    pthread_cond_t hcv;
    dfs_rpc_call *hq_head, *hq_tail;
    bool hstop;

    struct dfs_rpc_observer observer;     /* call_done NULL: none */
    struct dfs_rpc_authorizer authorizer; /* authorize NULL: none */
    const struct dfs_rpc_link_security *security;
    /* Anyone who reaches the port can be refused: those lines, at most one a second. */
    struct dfs_lograte refusal_log;
};

/* A tag that knows its call. */
struct call_op {
    dfs_rpc_tag tag;
    dfs_rpc_call *call;
};

/*
 * Lifetime: refs counts the batches in flight plus one held by the handler until its finish
 * starts. All of a call's completions arrive on its worker's thread, but verbs may be used from
 * another thread too, hence the atomic count.
 */
struct dfs_rpc_call {
    dfs_rpc_server *srv;
    const struct dfs_rpc_method *method;
    int method_index;
    /* For the observer: arrival time and message bytes so far (touched by the call's batches,
       which never run at once for one direction; read once every operation has completed). */
    int64_t start_ns;
    uint64_t bytes_in, bytes_out;
    struct worker *w;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    ProtobufCMessage *request;
    atomic_int refs;

    bool initial_md_sent;
    bool finished;        /* the handler called finish */
    bool finish_deferred; /* finish waits for the send in flight */
    bool send_busy;
    bool recv_busy;
    int cancelled; /* set by RECV_CLOSE_ON_SERVER */
    bool closed;

    struct call_op close_op, recv_op, send_op, status_op;
    /* Armed while a streaming receive (send) is outstanding, for the server's idle limit; the
       operation holds a reference, so the call outlives its timer. Loop thread only. */
    dfs_rpc_timer recv_idle, send_idle;
    bool idle_cancelled;

    grpc_byte_buffer *recv_bb;
    dfs_rpc_recv_fn recv_cb;
    dfs_rpc_recv_raw_fn recv_raw_cb;
    void *recv_arg;

    grpc_byte_buffer *send_bb;
    dfs_rpc_sent_fn sent_cb;
    void *sent_arg;

    int fin_code;
    grpc_byte_buffer *fin_bb;
    grpc_slice fin_details;
    /* One trailing metadata pair (dfs_rpc_call_set_trailer), sent with the status. */
    bool has_trailer;
    grpc_metadata trailer;

    void (*cancel_fn)(dfs_rpc_call *call, void *arg);
    void *cancel_arg;
    dfs_rpc_call *queue_next;  /* waiting for a handler thread (srv->hq_head) */
    grpc_byte_buffer *payload; /* the request as received, until run_call takes it */
    void *state;
    void (*release)(void *state);
};

static void observe(dfs_rpc_call *c)
{
    const struct dfs_rpc_observer *o = &c->srv->observer;
    if (o->call_done == NULL)
        return;
    struct dfs_rpc_call_record rec = {
        .method = c->method_index,
        .status = c->cancelled ? GRPC_STATUS_CANCELLED : dfs_rpc_status_from_err(c->fin_code),
        .latency_ns = dfs_clock_mono_ns() - c->start_ns,
        .bytes_in = c->bytes_in,
        .bytes_out = c->bytes_out,
    };
    o->call_done(o->arg, &rec);
}

static void call_unref(dfs_rpc_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    dfs_rpc_server *srv = c->srv;
    observe(c);
    if (c->release != NULL)
        c->release(c->state);
    if (c->request != NULL)
        protobuf_c_message_free_unpacked(c->request, NULL);
    grpc_metadata_array_destroy(&c->md);
    grpc_slice_unref(c->fin_details);
    if (c->has_trailer) {
        grpc_slice_unref(c->trailer.key);
        grpc_slice_unref(c->trailer.value);
    }
    grpc_call_unref(c->call);
    free(c);
    pthread_mutex_lock(&srv->mu);
    if (--srv->live_calls == 0)
        pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
}

/* ---- call verbs ---- */

const ProtobufCMessage *dfs_rpc_call_request(const dfs_rpc_call *call)
{
    return call->request;
}

const char *dfs_rpc_call_method(const dfs_rpc_call *call)
{
    return call->method->name;
}

dfs_rpc_loop *dfs_rpc_call_loop(const dfs_rpc_call *call)
{
    return call->w->loop;
}

bool dfs_rpc_call_metadata(const dfs_rpc_call *call, const char *key, char *buf, size_t cap)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < call->md.count; i++) {
        grpc_slice k = call->md.metadata[i].key;
        if (GRPC_SLICE_LENGTH(k) != klen || memcmp(GRPC_SLICE_START_PTR(k), key, klen) != 0)
            continue;
        grpc_slice v = call->md.metadata[i].value;
        size_t vlen = GRPC_SLICE_LENGTH(v);
        if (vlen + 1 > cap)
            return false;
        memcpy(buf, GRPC_SLICE_START_PTR(v), vlen);
        buf[vlen] = '\0';
        return true;
    }
    return false;
}

bool dfs_rpc_call_bearer(const dfs_rpc_call *call, char *buf, size_t cap)
{
    char v[DFS_RPC_TOKEN_MAX + 16];
    if (!dfs_rpc_call_metadata(call, DFS_RPC_AUTH_KEY, v, sizeof v))
        return false;
    /* RFC 6750: the scheme is case-insensitive, one space before the token. */
    bool ok = strncasecmp(v, "Bearer ", 7) == 0 && strlen(v + 7) + 1 <= cap;
    if (ok)
        memcpy(buf, v + 7, strlen(v + 7) + 1);
    explicit_bzero(v, sizeof v);
    return ok;
}

char *dfs_rpc_call_peer(const dfs_rpc_call *call)
{
    char *p = grpc_call_get_peer(call->call);
    char *copy = strdup(p != NULL ? p : "unknown");
    gpr_free(p);
    return copy;
}

int64_t dfs_rpc_call_remaining_ms(const dfs_rpc_call *call)
{
    gpr_timespec d = gpr_convert_clock_type(call->deadline, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(d, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0)
        return INT64_MAX;
    gpr_timespec left = gpr_time_sub(d, gpr_now(GPR_CLOCK_MONOTONIC));
    int64_t ms = gpr_time_to_millis(left);
    return ms < 0 ? 0 : ms;
}

void dfs_rpc_call_set_state(dfs_rpc_call *call, void *state, void (*release)(void *state))
{
    call->state = state;
    call->release = release;
}

void dfs_rpc_call_on_cancel(dfs_rpc_call *call, void (*fn)(dfs_rpc_call *call, void *arg),
                            void *arg)
{
    call->cancel_fn = fn;
    call->cancel_arg = arg;
}

/*
 * One log line for a refused request (a streaming message, or the request of a call): a warning
 * when the caller was authorised, else (a method anyone may call) at debug, so that whoever can
 * reach the port cannot fill the log with what they send.
 */
static void log_rejected(const dfs_rpc_call *c, const char *msg)
{
    enum dfs_log_level level = c->method->access != 0 ? DFS_LOG_WARN : DFS_LOG_DEBUG;
    if (!dfs_log_enabled(level))
        return;
    char *peer = dfs_rpc_call_peer(c);
    dfs_log(level, "request rejected method=%s peer=%s err=%s", c->method->name,
            peer != NULL ? peer : "unknown", msg);
    free(peer);
}

void dfs_rpc_call_reject(dfs_rpc_call *call, int code, const char *msg)
{
    if (msg == NULL)
        msg = dfs_strerror(code);
    log_rejected(call, msg);
    dfs_rpc_call_finish(call, code, NULL, msg);
}

/* An outstanding receive or send made no progress for the idle limit: cancel the call. */
static void idle_fire(dfs_rpc_call *c, const char *what)
{
    if (c->idle_cancelled)
        return;
    c->idle_cancelled = true;
    char msg[160];
    snprintf(msg, sizeof msg, "%s: the peer %s for %" PRId64 " ms (the server's stream idle limit)",
             c->method->name, what, c->srv->idle_ms);
    char *peer = dfs_rpc_call_peer(c);
    dfs_log(DFS_LOG_WARN, "stalled stream cancelled method=%s peer=%s idle_ms=%" PRId64 " err=%s",
            c->method->name, peer != NULL ? peer : "unknown", c->srv->idle_ms, msg);
    free(peer);
    /* Every outstanding operation completes (not ok): the handler's own failure paths run. */
    grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED, msg, NULL);
}

static void recv_idle_fire(dfs_rpc_timer *t)
{
    idle_fire((dfs_rpc_call *)(void *)((char *)t - offsetof(dfs_rpc_call, recv_idle)),
              "sent nothing");
}

static void send_idle_fire(dfs_rpc_timer *t)
{
    idle_fire((dfs_rpc_call *)(void *)((char *)t - offsetof(dfs_rpc_call, send_idle)),
              "read nothing");
}

static void idle_arm(dfs_rpc_call *c, dfs_rpc_timer *t)
{
    if (c->srv->idle_ms > 0)
        dfs_rpc_loop_timer_arm(c->w->loop, t, dfs_clock_mono_ns() + c->srv->idle_ms * 1000000);
}

static void close_done(dfs_rpc_tag *tag, bool ok)
{
    dfs_rpc_call *c = ((struct call_op *)tag)->call;
    (void)ok;
    c->closed = true;
    /* cancel_fn first: a call whose handler runs on a handler thread has none, and its finished
       flag belongs to that thread. */
    if (c->cancel_fn != NULL && c->cancelled && !c->finished)
        c->cancel_fn(c, c->cancel_arg);
    call_unref(c);
}

static void recv_done(dfs_rpc_tag *tag, bool ok)
{
    dfs_rpc_call *c = ((struct call_op *)tag)->call;
    dfs_rpc_loop_timer_cancel(c->w->loop, &c->recv_idle);
    grpc_byte_buffer *bb = c->recv_bb;
    c->recv_bb = NULL;
    c->recv_busy = false;
    if (bb != NULL)
        c->bytes_in += grpc_byte_buffer_length(bb);
    int status = DFS_OK;
    if (!ok) {
        status = DFS_ECANCELED;
        if (bb != NULL)
            grpc_byte_buffer_destroy(bb);
        bb = NULL;
    }
    if (c->recv_raw_cb != NULL) {
        c->recv_raw_cb(c, c->recv_arg, bb, status);
    } else {
        ProtobufCMessage *msg = NULL;
        if (bb != NULL) {
            char *err = NULL;
            msg = dfs_rpc_unpack_checked(c->method->request, bb, &err);
            grpc_byte_buffer_destroy(bb);
            if (msg == NULL) {
                status = DFS_EINVAL;
                log_rejected(c, err);
            }
            free(err);
        }
        c->recv_cb(c, c->recv_arg, msg, status);
    }
    call_unref(c);
}

static int start_recv(dfs_rpc_call *c, dfs_rpc_recv_fn cb, dfs_rpc_recv_raw_fn raw_cb, void *arg)
{
    if (c->recv_busy || c->finished)
        return DFS_EINTERNAL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    c->recv_cb = cb;
    c->recv_raw_cb = raw_cb;
    c->recv_arg = arg;
    c->recv_busy = true;
    atomic_fetch_add(&c->refs, 1);
    if (grpc_call_start_batch(c->call, &op, 1, &c->recv_op.tag, NULL) != GRPC_CALL_OK) {
        c->recv_busy = false;
        atomic_fetch_sub(&c->refs, 1);
        return DFS_EINTERNAL;
    }
    idle_arm(c, &c->recv_idle);
    return DFS_OK;
}

int dfs_rpc_call_recv(dfs_rpc_call *call, dfs_rpc_recv_fn cb, void *arg)
{
    return start_recv(call, cb, NULL, arg);
}

int dfs_rpc_call_recv_raw(dfs_rpc_call *call, dfs_rpc_recv_raw_fn cb, void *arg)
{
    return start_recv(call, NULL, cb, arg);
}

static void start_finish(dfs_rpc_call *c);

static void send_done(dfs_rpc_tag *tag, bool ok)
{
    dfs_rpc_call *c = ((struct call_op *)tag)->call;
    dfs_rpc_loop_timer_cancel(c->w->loop, &c->send_idle);
    grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = NULL;
    c->send_busy = false;
    if (c->sent_cb != NULL)
        c->sent_cb(c, c->sent_arg, ok);
    if (c->finish_deferred) {
        c->finish_deferred = false;
        start_finish(c);
    }
    call_unref(c);
}

int dfs_rpc_call_send_raw(dfs_rpc_call *call, grpc_byte_buffer *bb, dfs_rpc_sent_fn cb, void *arg)
{
    dfs_rpc_call *c = call;
    if (c->send_busy || c->finished) {
        grpc_byte_buffer_destroy(bb);
        return DFS_EINTERNAL;
    }
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    bool sent_md = c->initial_md_sent;
    if (!sent_md)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
    c->initial_md_sent = true;
    c->send_bb = bb;
    c->bytes_out += grpc_byte_buffer_length(bb);
    c->sent_cb = cb;
    c->sent_arg = arg;
    c->send_busy = true;
    atomic_fetch_add(&c->refs, 1);
    if (grpc_call_start_batch(c->call, ops, n, &c->send_op.tag, NULL) != GRPC_CALL_OK) {
        c->initial_md_sent = sent_md;
        c->send_busy = false;
        c->send_bb = NULL;
        c->bytes_out -= grpc_byte_buffer_length(bb);
        grpc_byte_buffer_destroy(bb);
        atomic_fetch_sub(&c->refs, 1);
        return DFS_EINTERNAL;
    }
    idle_arm(c, &c->send_idle);
    return DFS_OK;
}

int dfs_rpc_call_send(dfs_rpc_call *call, const ProtobufCMessage *msg, dfs_rpc_sent_fn cb,
                      void *arg)
{
    grpc_byte_buffer *bb = dfs_rpc_pack(msg);
    if (bb == NULL)
        return DFS_ENOMEM;
    return dfs_rpc_call_send_raw(call, bb, cb, arg);
}

static void status_done(dfs_rpc_tag *tag, bool ok)
{
    dfs_rpc_call *c = ((struct call_op *)tag)->call;
    (void)ok;
    if (c->fin_bb != NULL) {
        grpc_byte_buffer_destroy(c->fin_bb);
        c->fin_bb = NULL;
    }
    call_unref(c);
}

static void start_finish(dfs_rpc_call *c)
{
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->initial_md_sent)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    c->initial_md_sent = true;
    if (c->fin_bb != NULL) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->fin_bb;
        c->bytes_out += grpc_byte_buffer_length(c->fin_bb);
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = dfs_rpc_status_from_err(c->fin_code);
    ops[n].data.send_status_from_server.status_details = &c->fin_details;
    if (c->has_trailer) {
        ops[n].data.send_status_from_server.trailing_metadata_count = 1;
        ops[n].data.send_status_from_server.trailing_metadata = &c->trailer;
    }
    n++;
    atomic_fetch_add(&c->refs, 1);
    if (grpc_call_start_batch(c->call, ops, n, &c->status_op.tag, NULL) != GRPC_CALL_OK) {
        dfs_log(DFS_LOG_ERROR, "cannot send status method=%s", c->method->name);
        if (c->fin_bb != NULL)
            grpc_byte_buffer_destroy(c->fin_bb);
        c->fin_bb = NULL;
        atomic_fetch_sub(&c->refs, 1);
    }
    /* The handler's reference ends here. */
    call_unref(c);
}

void dfs_rpc_call_finish(dfs_rpc_call *call, int code, const ProtobufCMessage *resp,
                         const char *message)
{
    dfs_rpc_call *c = call;
    if (c->finished) {
        dfs_log(DFS_LOG_ERROR, "bug: call finished twice method=%s", c->method->name);
        return;
    }
    c->finished = true;
    c->fin_code = code;
    c->fin_bb = NULL;
    if (resp != NULL && code == DFS_OK) {
        c->fin_bb = dfs_rpc_pack(resp);
        if (c->fin_bb == NULL) {
            c->fin_code = DFS_ENOMEM;
            message = "out of memory packing the response";
        }
    }
    if (message == NULL && code != DFS_OK)
        message = dfs_strerror(code);
    c->fin_details = grpc_slice_from_copied_string(message != NULL ? message : "");
    if (c->send_busy) {
        c->finish_deferred = true;
        return;
    }
    start_finish(c);
}

int dfs_rpc_call_set_trailer(dfs_rpc_call *call, const char *key, const char *value)
{
    if (call == NULL || key == NULL || key[0] == '\0' || value == NULL)
        return DFS_EINVAL;
    if (call->finished)
        return DFS_OK;
    if (call->has_trailer) {
        grpc_slice_unref(call->trailer.key);
        grpc_slice_unref(call->trailer.value);
    }
    memset(&call->trailer, 0, sizeof call->trailer);
    call->trailer.key = grpc_slice_from_copied_string(key);
    call->trailer.value = grpc_slice_from_copied_string(value);
    call->has_trailer = true;
    return DFS_OK;
}

void dfs_rpc_call_reply(dfs_rpc_call *call, const ProtobufCMessage *resp)
{
    dfs_rpc_call_finish(call, DFS_OK, resp, NULL);
}

void dfs_rpc_call_fail(dfs_rpc_call *call, int code, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    dfs_rpc_call_finish(call, code, NULL, buf);
}

/* ---- accepting calls ---- */

static void request_next(struct request_slot *s);
static bool authorized(dfs_rpc_call *c, grpc_byte_buffer **payload);
static void run_call(dfs_rpc_call *c);

static void start_call(struct request_slot *s)
{
    dfs_rpc_server *srv = s->srv;
    const struct dfs_rpc_method *m = &srv->methods[s->method].m;
    dfs_rpc_call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        grpc_call_cancel_with_status(s->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory",
                                     NULL);
        grpc_call_unref(s->call);
        grpc_metadata_array_destroy(&s->md);
        if (s->payload != NULL)
            grpc_byte_buffer_destroy(s->payload);
        return;
    }
    pthread_mutex_lock(&srv->mu);
    srv->live_calls++;
    pthread_mutex_unlock(&srv->mu);
    c->srv = srv;
    c->method = m;
    c->method_index = s->method;
    c->start_ns = dfs_clock_mono_ns();
    c->w = s->w;
    c->call = s->call;
    c->deadline = s->deadline;
    c->md = s->md; /* moved */
    c->fin_details = grpc_empty_slice();
    atomic_init(&c->refs, 1);
    c->close_op = (struct call_op){{close_done}, c};
    c->recv_op = (struct call_op){{recv_done}, c};
    c->send_op = (struct call_op){{send_done}, c};
    c->status_op = (struct call_op){{status_done}, c};
    dfs_rpc_timer_init(&c->recv_idle, recv_idle_fire);
    dfs_rpc_timer_init(&c->send_idle, send_idle_fire);
    grpc_byte_buffer *payload = s->payload;
    s->call = NULL;
    s->payload = NULL;
    grpc_metadata_array_init(&s->md);

    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    atomic_fetch_add(&c->refs, 1);
    if (grpc_call_start_batch(c->call, &op, 1, &c->close_op.tag, NULL) != GRPC_CALL_OK)
        atomic_fetch_sub(&c->refs, 1);

    if (payload != NULL)
        c->bytes_in += grpc_byte_buffer_length(payload);
    c->payload = payload;
    if (m->kind == DFS_RPC_UNARY && srv->nhandlers > 0) {
        /* To the first free handler thread, authorisation included (an authorizer may wait for
           the catalog too): this loop must not wait for either. */
        pthread_mutex_lock(&srv->hmu);
        if (srv->hq_tail != NULL)
            srv->hq_tail->queue_next = c;
        else
            srv->hq_head = c;
        srv->hq_tail = c;
        pthread_cond_signal(&srv->hcv);
        pthread_mutex_unlock(&srv->hmu);
        return;
    }
    run_call(c);
}

/* Authorise the call, parse its request and run its handler (on its loop or a handler thread). */
static void run_call(dfs_rpc_call *c)
{
    const struct dfs_rpc_method *m = c->method;
    grpc_byte_buffer *payload = c->payload;
    c->payload = NULL;
    if (!authorized(c, &payload))
        return;
    if (m->kind == DFS_RPC_UNARY || m->kind == DFS_RPC_SERVER_STREAMING) {
        if (payload == NULL) {
            dfs_rpc_call_fail(c, DFS_EINVAL, "%s: the request message is missing", m->name);
            return;
        }
        char *err = NULL;
        c->request = dfs_rpc_unpack_checked(m->request, payload, &err);
        grpc_byte_buffer_destroy(payload);
        if (c->request == NULL) {
            dfs_rpc_call_reject(c, DFS_EINVAL, err);
            free(err);
            return;
        }
    } else if (payload != NULL) {
        grpc_byte_buffer_destroy(payload);
    }
    m->handler(c, m->ctx);
}

static void *handler_main(void *arg)
{
    dfs_rpc_server *srv = arg;
    pthread_mutex_lock(&srv->hmu);
    for (;;) {
        while (srv->hq_head == NULL && !srv->hstop)
            pthread_cond_wait(&srv->hcv, &srv->hmu);
        dfs_rpc_call *c = srv->hq_head;
        if (c == NULL)
            break;
        srv->hq_head = c->queue_next;
        if (srv->hq_head == NULL)
            srv->hq_tail = NULL;
        c->queue_next = NULL;
        pthread_mutex_unlock(&srv->hmu);
        run_call(c);
        pthread_mutex_lock(&srv->hmu);
    }
    pthread_mutex_unlock(&srv->hmu);
    return NULL;
}

/* The authorizer's verdict on a call, before its request is parsed. */
static bool authorized(dfs_rpc_call *c, grpc_byte_buffer **payload)
{
    const struct dfs_rpc_method *m = c->method;
    if (m->access == 0)
        return true;
    char *err = NULL;
    int rc = c->srv->authorizer.authorize == NULL
                 ? dfs_seterr(&err, DFS_EPERM, "%s: this server authorises nobody", m->name)
                 : c->srv->authorizer.authorize(c->srv->authorizer.arg, c, m->access, &err);
    if (rc == DFS_OK)
        return true;
    if (*payload != NULL) {
        grpc_byte_buffer_destroy(*payload);
        *payload = NULL;
    }
    /* A token whose role does not allow the call (DFS_EPERM) is named in the line and can be
       revoked: every such line is kept. Without valid credentials it could be anyone. */
    uint64_t dropped = 0;
    if (rc == DFS_EPERM ||
        dfs_lograte_take(&c->srv->refusal_log, dfs_clock_mono_ns() / 1000000, &dropped)) {
        char *peer = dfs_rpc_call_peer(c);
        dfs_log(DFS_LOG_WARN,
                "refused method=%s peer=%s code=%s reason=%s not_logged_before=%" PRIu64, m->name,
                peer != NULL ? peer : "?", dfs_strerror(rc), err != NULL ? err : "", dropped);
        free(peer);
    }
    dfs_rpc_call_finish(c, rc, NULL, err != NULL ? err : dfs_strerror(rc));
    free(err);
    return false;
}

/* A call to a method nobody registered: answer UNIMPLEMENTED and forget it. */
struct unimplemented_call {
    dfs_rpc_tag tag;
    grpc_call *call;
    int cancelled;
    grpc_slice details;
};

static void unimplemented_done(dfs_rpc_tag *tag, bool ok)
{
    struct unimplemented_call *u = (struct unimplemented_call *)tag;
    (void)ok;
    grpc_slice_unref(u->details);
    grpc_call_unref(u->call);
    free(u);
}

static void answer_unimplemented(struct request_slot *s)
{
    const struct dfs_rpc_observer *o = &s->srv->observer;
    if (o->call_done != NULL) {
        struct dfs_rpc_call_record rec = {.method = -1, .status = GRPC_STATUS_UNIMPLEMENTED};
        o->call_done(o->arg, &rec);
    }
    struct unimplemented_call *u = calloc(1, sizeof *u);
    char msg[512];
    snprintf(msg, sizeof msg, "unknown method %.*s", (int)GRPC_SLICE_LENGTH(s->details.method),
             (const char *)GRPC_SLICE_START_PTR(s->details.method));
    if (u == NULL) {
        grpc_call_cancel(s->call, NULL);
        grpc_call_unref(s->call);
    } else {
        u->tag.done = unimplemented_done;
        u->call = s->call;
        u->details = grpc_slice_from_copied_string(msg);
        grpc_op ops[3];
        memset(ops, 0, sizeof ops);
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[1].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
        ops[1].data.send_status_from_server.status_details = &u->details;
        ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[2].data.recv_close_on_server.cancelled = &u->cancelled;
        if (grpc_call_start_batch(u->call, ops, 3, &u->tag, NULL) != GRPC_CALL_OK)
            unimplemented_done(&u->tag, false);
    }
    s->call = NULL;
    grpc_metadata_array_destroy(&s->md);
    grpc_metadata_array_init(&s->md);
    grpc_call_details_destroy(&s->details);
    grpc_call_details_init(&s->details);
}

static void slot_done(dfs_rpc_tag *tag, bool ok)
{
    struct request_slot *s = (struct request_slot *)tag;
    if (!ok) {
        /* The server is shutting down: the request was withdrawn. */
        return;
    }
    if (s->method < 0)
        answer_unimplemented(s);
    else
        start_call(s);
    if (!atomic_load(&s->srv->shutting_down))
        request_next(s);
}

static void request_next(struct request_slot *s)
{
    dfs_rpc_server *srv = s->srv;
    grpc_completion_queue *cq = dfs_rpc_loop_cq(s->w->loop);
    grpc_call_error err;
    if (s->method < 0) {
        err = grpc_server_request_call(srv->server, &s->call, &s->details, &s->md, cq, cq, &s->tag);
    } else {
        struct method_entry *e = &srv->methods[s->method];
        bool payload = e->m.kind == DFS_RPC_UNARY || e->m.kind == DFS_RPC_SERVER_STREAMING;
        err = grpc_server_request_registered_call(srv->server, e->handle, &s->call, &s->deadline,
                                                  &s->md, payload ? &s->payload : NULL, cq, cq,
                                                  &s->tag);
    }
    if (err != GRPC_CALL_OK && !atomic_load(&srv->shutting_down))
        dfs_log(DFS_LOG_ERROR, "cannot request calls err=%s", grpc_call_error_to_string(err));
}

/* ---- server life cycle ---- */

int dfs_rpc_server_create(const struct dfs_rpc_server_config *cfg, dfs_rpc_server **out,
                          char **errmsg)
{
    if (cfg->listen == NULL || cfg->listen[0] == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "no listen address");
    dfs_rpc_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    srv->listen = strdup(cfg->listen);
    srv->nworkers = cfg->threads > 0 ? cfg->threads : 4;
    srv->nhandlers = cfg->handler_threads > 0 ? cfg->handler_threads : 0;
    srv->max_message = cfg->max_message_bytes > 0 ? cfg->max_message_bytes : DFS_RPC_MAX_MESSAGE;
    srv->security = cfg->security;
    dfs_lograte_init(&srv->refusal_log, 1000);
    srv->idle_ms = cfg->stream_idle_ms != 0 ? cfg->stream_idle_ms : DFS_RPC_STREAM_IDLE_MS;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    pthread_mutex_init(&srv->hmu, NULL);
    pthread_cond_init(&srv->hcv, NULL);
    atomic_init(&srv->shutting_down, false);
    grpc_init();

    grpc_arg args[5];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)srv->max_message;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = (int)srv->max_message;
    /* Fail loudly when the port is taken, instead of silently sharing it with another server. */
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[2].value.integer = 0;
    /*
     * Receive windows as the client's channels have them (services/rpc/client.c): a fixed window
     * per stream, no BDP probing. Probing grows the windows of a storage node's upload streams
     * to several MiB; the buffers freed out of order leave the heap in holes that later receives
     * fault in again. Measured (benchmarks/README.md, issue 19): a node's CPU per GiB put fell
     * by about a quarter, nearly all of it system time; a stream of a loopback or LAN link is not
     * limited by a window this size.
     */
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = GRPC_ARG_HTTP2_BDP_PROBE;
    args[3].value.integer = 0;
    args[4].type = GRPC_ARG_INTEGER;
    args[4].key = GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES;
    args[4].value.integer = 4 << 20; /* DFS_RPC_STREAM_WINDOW (client.h depends on this module) */
    grpc_channel_args chargs = {.num_args = 5, .args = args};
    srv->server = grpc_server_create(&chargs, NULL);
    srv->workers = calloc((size_t)srv->nworkers, sizeof *srv->workers);
    srv->handlers = calloc((size_t)srv->nhandlers + 1, sizeof *srv->handlers);
    if (srv->server == NULL || srv->listen == NULL || srv->workers == NULL ||
        srv->handlers == NULL) {
        dfs_rpc_server_destroy(srv);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    for (int i = 0; i < srv->nworkers; i++) {
        srv->workers[i].srv = srv;
        srv->workers[i].loop = dfs_rpc_loop_create();
        if (srv->workers[i].loop == NULL) {
            dfs_rpc_server_destroy(srv);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        grpc_server_register_completion_queue(srv->server, dfs_rpc_loop_cq(srv->workers[i].loop),
                                              NULL);
    }
    *out = srv;
    return DFS_OK;
}

int dfs_rpc_server_add_method(dfs_rpc_server *srv, const struct dfs_rpc_method *method,
                              char **errmsg)
{
    if (srv->started)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "methods must be added before start");
    struct method_entry *m = realloc(srv->methods, (srv->nmethods + 1) * sizeof *m);
    if (m == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    srv->methods = m;
    struct method_entry *e = &srv->methods[srv->nmethods];
    e->m = *method;
    bool payload = method->kind == DFS_RPC_UNARY || method->kind == DFS_RPC_SERVER_STREAMING;
    e->handle = grpc_server_register_method(
        srv->server, method->name, NULL,
        payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
    if (e->handle == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "cannot register method %s (twice?)", method->name);
    srv->nmethods++;
    return DFS_OK;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    dfs_rpc_loop_run(w->loop);
    return NULL;
}

static void shutdown_done(dfs_rpc_tag *tag, bool ok)
{
    (void)ok;
    dfs_rpc_server *srv = (dfs_rpc_server *)((char *)tag - offsetof(dfs_rpc_server, shutdown_tag));
    pthread_mutex_lock(&srv->mu);
    srv->shutdown_done = true;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
}

int dfs_rpc_server_start(dfs_rpc_server *srv, char **errmsg)
{
    if (srv->started)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "server already started");
    const dfs_rpc_tls *tls = srv->security != NULL ? srv->security->tls : NULL;
    if (tls != NULL && !dfs_rpc_tls_has_cert(tls))
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "a TLS server needs a certificate and its key (--tls-cert, --tls-key)");
    int prc = dfs_rpc_plaintext_check(srv->security, srv->listen, "listen on", errmsg);
    if (prc != DFS_OK)
        return prc;
    grpc_server_credentials *creds =
        tls != NULL ? dfs_rpc_tls_server_creds(tls) : grpc_insecure_server_credentials_create();
    srv->port = grpc_server_add_http2_port(srv->server, srv->listen, creds);
    grpc_server_credentials_release(creds);
    if (srv->port <= 0) {
        srv->port = 0;
        return dfs_seterr(errmsg, DFS_EUNAVAIL,
                          "cannot listen on %s (address in use, or not an address of this host)",
                          srv->listen);
    }
    grpc_server_start(srv->server);
    srv->started = true;

    /* One request slot per (worker, method), plus one per worker for unknown methods. */
    srv->nslots = (size_t)srv->nworkers * (srv->nmethods + 1);
    srv->slots = calloc(srv->nslots, sizeof *srv->slots);
    if (srv->slots == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    size_t k = 0;
    for (int i = 0; i < srv->nworkers; i++) {
        for (int m = -1; m < (int)srv->nmethods; m++) {
            struct request_slot *s = &srv->slots[k++];
            s->tag.done = slot_done;
            s->srv = srv;
            s->w = &srv->workers[i];
            s->method = m;
            grpc_metadata_array_init(&s->md);
            grpc_call_details_init(&s->details);
            request_next(s);
        }
    }
    srv->shutdown_tag.done = shutdown_done;
    for (int i = 0; i < srv->nhandlers; i++) {
        if (pthread_create(&srv->handlers[i], NULL, handler_main, srv) != 0)
            return dfs_seterr(errmsg, DFS_ENOMEM, "cannot start handler threads");
        srv->handlers_running++;
    }
    for (int i = 0; i < srv->nworkers; i++) {
        if (pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]) != 0)
            return dfs_seterr(errmsg, DFS_ENOMEM, "cannot start worker threads");
        srv->workers[i].running = true;
    }
    return DFS_OK;
}

int dfs_rpc_server_port(const dfs_rpc_server *srv)
{
    return srv->port;
}

size_t dfs_rpc_server_method_count(const dfs_rpc_server *srv)
{
    return srv->nmethods;
}

const struct dfs_rpc_method *dfs_rpc_server_method(const dfs_rpc_server *srv, size_t i)
{
    return i < srv->nmethods ? &srv->methods[i].m : NULL;
}

int dfs_rpc_server_set_observer(dfs_rpc_server *srv, const struct dfs_rpc_observer *obs,
                                char **errmsg)
{
    if (srv->started)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "the observer must be set before start");
    srv->observer = *obs;
    return DFS_OK;
}

int dfs_rpc_server_set_authorizer(dfs_rpc_server *srv, const struct dfs_rpc_authorizer *a,
                                  char **errmsg)
{
    if (srv->started)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "the authorizer must be set before start");
    srv->authorizer = *a;
    return DFS_OK;
}

void dfs_rpc_server_stop(dfs_rpc_server *srv, int64_t grace_ms)
{
    pthread_mutex_lock(&srv->mu);
    if (srv->stopped || !srv->started) {
        srv->stopped = true;
        pthread_mutex_unlock(&srv->mu);
        return;
    }
    srv->stopped = true;
    pthread_mutex_unlock(&srv->mu);

    atomic_store(&srv->shutting_down, true);
    grpc_server_shutdown_and_notify(srv->server, dfs_rpc_loop_cq(srv->workers[0].loop),
                                    &srv->shutdown_tag);
    pthread_mutex_lock(&srv->mu);
    if (grace_ms > 0) {
        struct timespec until = dfs_clock_abstime(grace_ms);
        while (!srv->shutdown_done)
            if (pthread_cond_timedwait(&srv->cv, &srv->mu, &until) != 0)
                break;
    }
    if (!srv->shutdown_done) {
        pthread_mutex_unlock(&srv->mu);
        grpc_server_cancel_all_calls(srv->server);
        pthread_mutex_lock(&srv->mu);
        while (!srv->shutdown_done)
            pthread_cond_wait(&srv->cv, &srv->mu);
    }
    /* Every call's handler has been told (cancel) by now; wait until the last one is finished
       and freed, answers handed over from other threads included, while the loops still run. */
    for (int64_t waited_s = 0; srv->live_calls > 0;) {
        struct timespec until = dfs_clock_abstime(5000);
        if (pthread_cond_timedwait(&srv->cv, &srv->mu, &until) != 0 && srv->live_calls > 0) {
            waited_s += 5;
            dfs_log(DFS_LOG_WARN, "stopping: waiting for calls to end count=%zu waited_s=%" PRId64,
                    srv->live_calls, waited_s);
        }
    }
    pthread_mutex_unlock(&srv->mu);

    pthread_mutex_lock(&srv->hmu);
    srv->hstop = true;
    pthread_cond_broadcast(&srv->hcv);
    pthread_mutex_unlock(&srv->hmu);
    for (int i = 0; i < srv->handlers_running; i++)
        pthread_join(srv->handlers[i], NULL);
    srv->handlers_running = 0;

    for (int i = 0; i < srv->nworkers; i++)
        dfs_rpc_loop_shutdown(srv->workers[i].loop);
    for (int i = 0; i < srv->nworkers; i++) {
        if (srv->workers[i].running)
            pthread_join(srv->workers[i].thread, NULL);
        srv->workers[i].running = false;
    }
}

void dfs_rpc_server_destroy(dfs_rpc_server *srv)
{
    if (srv == NULL)
        return;
    dfs_rpc_server_stop(srv, 0);
    if (srv->server != NULL)
        grpc_server_destroy(srv->server);
    if (srv->workers != NULL)
        for (int i = 0; i < srv->nworkers; i++)
            dfs_rpc_loop_destroy(srv->workers[i].loop);
    for (size_t i = 0; i < srv->nslots; i++) {
        grpc_metadata_array_destroy(&srv->slots[i].md);
        grpc_call_details_destroy(&srv->slots[i].details);
    }
    free(srv->slots);
    free(srv->workers);
    free(srv->handlers);
    free(srv->methods);
    free(srv->listen);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->hmu);
    pthread_cond_destroy(&srv->hcv);
    free(srv);
    grpc_shutdown();
}
