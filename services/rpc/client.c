/* gRPC C-core clients. */
#include "services/rpc/client.h"

#include "common/clock.h"
#include "common/err.h"
#include "services/rpc/msg.h"
#include "services/rpc/security_int.h"
#include "services/rpc/server.h"
#include "services/rpc/status.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct dfs_rpc_channel {
    grpc_channel *channel;
    char *target;
    /* The initial metadata every call sends: the bearer token, when there is one (nmd 0 or 1). The
       slices live as long as the channel, which outlives its calls. */
    grpc_metadata md[1];
    size_t nmd;
};

int dfs_rpc_channel_create(const char *target, dfs_rpc_channel **out, char **errmsg)
{
    return dfs_rpc_channel_open(target, NULL, out, errmsg);
}

int dfs_rpc_channel_open(const char *target, const struct dfs_rpc_channel_opts *opts,
                         dfs_rpc_channel **out, char **errmsg)
{
    if (target == NULL || target[0] == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "empty server address");
    const struct dfs_rpc_link_security *sec = opts != NULL ? opts->security : NULL;
    int prc = dfs_rpc_plaintext_check(sec, target, "connect to", errmsg);
    if (prc != DFS_OK)
        return prc;
    const char *token = opts != NULL ? opts->token : NULL;
    if (token != NULL && !dfs_rpc_token_valid(token))
        return dfs_seterr(errmsg, DFS_EINVAL, "malformed token (printable characters, no spaces)");
    dfs_rpc_channel *ch = calloc(1, sizeof *ch);
    if (ch == NULL || (ch->target = strdup(target)) == NULL) {
        free(ch);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    grpc_init();
    if (token != NULL) {
        char value[DFS_RPC_TOKEN_MAX + 16];
        snprintf(value, sizeof value, "Bearer %s", token);
        ch->md[0].key = grpc_slice_from_static_string(DFS_RPC_AUTH_KEY);
        ch->md[0].value = grpc_slice_from_copied_string(value);
        explicit_bzero(value, sizeof value);
        ch->nmd = 1;
    }
    const dfs_rpc_tls *tls = sec != NULL ? sec->tls : NULL;
    /*
     * Reconnect quickly (100 ms, backing off to 2 s) so a restarted peer is found again soon. Not
     * GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: in gRPC 1.51 it is also the minimum connect timeout, and a
     * small value fails first connections to a busy peer before the HTTP/2 handshake completes.
     */
    /*
     * Receive windows: a fixed DFS_RPC_STREAM_WINDOW per stream instead of gRPC's BDP probing.
     * Probing grows each stream's window to several MiB, so a get with a dozen range streams open
     * buffers far more than it consumes; those buffers are freed in an order that leaves glibc's
     * heap full of holes, and either memory grows with the transfer or returning it (malloc_trim)
     * makes every later receive fault its pages in again: a fifth of a 1 GiB get's CPU (measured,
     * benchmarks/README.md). With a fixed window what is in flight is bounded and its memory reused
     * warm. On loopback and LAN round trips a window this size does not limit a stream.
     */
    grpc_arg args[7];
    memset(args, 0, sizeof args);
    const char *keys[] = {GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                          GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
                          GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                          GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                          GRPC_ARG_HTTP2_BDP_PROBE,
                          GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES};
    int values[] = {(int)DFS_RPC_MAX_MESSAGE,  (int)DFS_RPC_MAX_MESSAGE, 100, 2000, 0,
                    (int)DFS_RPC_STREAM_WINDOW};
    size_t nargs = 0;
    for (; nargs < 6; nargs++) {
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = (char *)keys[nargs];
        args[nargs].value.integer = values[nargs];
    }
    if (tls != NULL && dfs_rpc_tls_server_name(tls) != NULL) {
        args[nargs].type = GRPC_ARG_STRING;
        args[nargs].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[nargs].value.string = (char *)dfs_rpc_tls_server_name(tls);
        nargs++;
    }
    grpc_channel_args chargs = {.num_args = nargs, .args = args};
    grpc_channel_credentials *creds =
        tls != NULL ? dfs_rpc_tls_channel_creds(tls) : grpc_insecure_credentials_create();
    ch->channel = grpc_channel_create(target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    *out = ch;
    return DFS_OK;
}

void dfs_rpc_channel_destroy(dfs_rpc_channel *ch)
{
    if (ch == NULL)
        return;
    grpc_channel_destroy(ch->channel);
    for (size_t i = 0; i < ch->nmd; i++)
        grpc_slice_unref(ch->md[i].value);
    free(ch->target);
    free(ch);
    grpc_shutdown();
}

const char *dfs_rpc_channel_target(const dfs_rpc_channel *ch)
{
    return ch->target;
}

bool dfs_rpc_channel_failing(dfs_rpc_channel *ch)
{
    return grpc_channel_check_connectivity_state(ch->channel, 0) == GRPC_CHANNEL_TRANSIENT_FAILURE;
}

/* The message for a failed status: the peer's details, or the status name when it gave none. */
static int status_error(grpc_status_code status, grpc_slice details, char **errmsg)
{
    int code = dfs_rpc_err_from_status(status);
    size_t n = GRPC_SLICE_LENGTH(details);
    if (n > 0)
        return dfs_seterr(errmsg, code, "%.*s", (int)n,
                          (const char *)GRPC_SLICE_START_PTR(details));
    return dfs_seterr(errmsg, code, "%s", dfs_rpc_status_name(status));
}

int dfs_rpc_unary(dfs_rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                  int64_t timeout_ms, char **errmsg)
{
    return dfs_rpc_unary_trailer(ch, method, req, resp_desc, resp, timeout_ms, NULL, NULL, errmsg);
}

/* The value of trailing metadata entry key, copied (NULL when absent or out of memory). */
static char *trailer_value(const grpc_metadata_array *md, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < md->count; i++) {
        grpc_slice k = md->metadata[i].key;
        if (GRPC_SLICE_LENGTH(k) == kl && memcmp(GRPC_SLICE_START_PTR(k), key, kl) == 0) {
            grpc_slice v = md->metadata[i].value;
            return strndup((const char *)GRPC_SLICE_START_PTR(v), GRPC_SLICE_LENGTH(v));
        }
    }
    return NULL;
}

int dfs_rpc_unary_trailer(dfs_rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                          int64_t timeout_ms, const char *key, char **value, char **errmsg)
{
    if (value != NULL)
        *value = NULL;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method_slice = grpc_slice_from_copied_string(method);
    grpc_call *call =
        grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method_slice, NULL,
                                 dfs_rpc_deadline_ms(timeout_ms), NULL);
    grpc_byte_buffer *req_bb = dfs_rpc_pack(req);
    grpc_byte_buffer *resp_bb = NULL;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = ch->nmd;
    ops[0].data.send_initial_metadata.metadata = ch->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = req_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &resp_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;

    int rc = DFS_OK;
    int tag;
    if (req_bb == NULL) {
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    } else if (grpc_call_start_batch(call, ops, 6, &tag, NULL) != GRPC_CALL_OK) {
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "cannot start call %s", method);
    } else {
        grpc_event ev =
            grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_OP_COMPLETE && key != NULL && value != NULL)
            *value = trailer_value(&trailing_md, key);
        if (ev.type != GRPC_OP_COMPLETE) {
            rc = dfs_seterr(errmsg, DFS_EINTERNAL, "call %s did not complete", method);
        } else if (status != GRPC_STATUS_OK) {
            rc = status_error(status, details, errmsg);
        } else if (resp_bb == NULL) {
            rc = dfs_seterr(errmsg, DFS_EINTERNAL, "%s answered OK without a message", method);
        } else {
            ProtobufCMessage *m = dfs_rpc_unpack(resp_desc, resp_bb);
            if (m == NULL)
                rc = dfs_seterr(errmsg, DFS_EINTERNAL, "%s answered with a malformed message",
                                method);
            else
                *resp = m;
        }
    }
    if (req_bb != NULL)
        grpc_byte_buffer_destroy(req_bb);
    if (resp_bb != NULL)
        grpc_byte_buffer_destroy(resp_bb);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    grpc_call_unref(call);
    grpc_slice_unref(method_slice);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    return rc;
}

int dfs_rpc_unary_retry(dfs_rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                        int64_t timeout_ms, int64_t retry_ms, char **errmsg)
{
    int64_t start = dfs_clock_mono_ns();
    int64_t backoff_ms = 50;
    for (;;) {
        int rc = dfs_rpc_unary(ch, method, req, resp_desc, resp, timeout_ms, errmsg);
        if (rc != DFS_EUNAVAIL)
            return rc;
        int64_t elapsed_ms = (dfs_clock_mono_ns() - start) / 1000000;
        if (elapsed_ms + backoff_ms >= retry_ms)
            return rc;
        struct timespec ts = {backoff_ms / 1000, (backoff_ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
        backoff_ms = backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2;
    }
}

/* ---- asynchronous calls ---- */

struct ccall_op {
    dfs_rpc_tag tag;
    dfs_rpc_ccall *call;
};

/*
 * refs counts the batches in flight. `done` runs when the status batch has completed and refs is
 * back to zero; all completions come on the loop thread, so a plain int suffices.
 */
struct dfs_rpc_ccall {
    grpc_call *call;
    grpc_slice method;
    int refs;
    bool status_received;
    bool send_busy, recv_busy, send_closed;
    dfs_rpc_ccall_done_fn done;
    void *done_arg;

    struct ccall_op md_op, status_op, send_op, recv_op, close_op;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
    /* Set by cancel_with: reported instead of the transport's CANCELLED. */
    int override_status;
    char *override_message;

    grpc_byte_buffer *send_bb;
    dfs_rpc_ccall_sent_fn sent_cb;
    void *sent_arg;

    grpc_byte_buffer *recv_bb;
    const ProtobufCMessageDescriptor *recv_desc;
    dfs_rpc_ccall_recv_fn recv_cb;
    dfs_rpc_ccall_recv_raw_fn recv_raw_cb;
    void *recv_arg;
};

static void ccall_maybe_done(dfs_rpc_ccall *c)
{
    if (c->refs > 0 || !c->status_received)
        return;
    int code;
    char *msg = NULL;
    if (c->override_message != NULL) {
        code = c->override_status;
        msg = c->override_message;
        c->override_message = NULL;
    } else {
        code = c->status == GRPC_STATUS_OK ? DFS_OK : status_error(c->status, c->details, &msg);
    }
    c->done(c, c->done_arg, code, msg != NULL ? msg : "");
    free(msg);
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    grpc_slice_unref(c->details);
    grpc_slice_unref(c->method);
    grpc_call_unref(c->call);
    free(c);
}

static void ccall_put(dfs_rpc_ccall *c)
{
    c->refs--;
    ccall_maybe_done(c);
}

static void md_done(dfs_rpc_tag *tag, bool ok)
{
    (void)ok;
    ccall_put(((struct ccall_op *)tag)->call);
}

static void ccall_status_done(dfs_rpc_tag *tag, bool ok)
{
    (void)ok;
    dfs_rpc_ccall *c = ((struct ccall_op *)tag)->call;
    c->status_received = true;
    ccall_put(c);
}

static void ccall_send_done(dfs_rpc_tag *tag, bool ok)
{
    dfs_rpc_ccall *c = ((struct ccall_op *)tag)->call;
    if (c->send_bb != NULL)
        grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = NULL;
    c->send_busy = false;
    if (c->sent_cb != NULL)
        c->sent_cb(c, c->sent_arg, ok);
    ccall_put(c);
}

static void ccall_recv_done(dfs_rpc_tag *tag, bool ok)
{
    dfs_rpc_ccall *c = ((struct ccall_op *)tag)->call;
    grpc_byte_buffer *bb = c->recv_bb;
    c->recv_bb = NULL;
    c->recv_busy = false;
    int status = ok ? DFS_OK : DFS_ECANCELED;
    if (!ok && bb != NULL) {
        grpc_byte_buffer_destroy(bb);
        bb = NULL;
    }
    if (c->recv_raw_cb != NULL) {
        c->recv_raw_cb(c, c->recv_arg, bb, status);
    } else {
        ProtobufCMessage *msg = NULL;
        if (bb != NULL) {
            msg = dfs_rpc_unpack(c->recv_desc, bb);
            if (msg == NULL)
                status = DFS_EINVAL;
            grpc_byte_buffer_destroy(bb);
        }
        c->recv_cb(c, c->recv_arg, msg, status);
    }
    ccall_put(c);
}

static int ccall_batch(dfs_rpc_ccall *c, const grpc_op *ops, size_t n, struct ccall_op *op)
{
    c->refs++;
    if (grpc_call_start_batch(c->call, ops, n, &op->tag, NULL) != GRPC_CALL_OK) {
        c->refs--;
        return DFS_EINTERNAL;
    }
    return DFS_OK;
}

int dfs_rpc_ccall_start(dfs_rpc_loop *loop, dfs_rpc_channel *ch, const char *method,
                        int64_t timeout_ms, dfs_rpc_ccall_done_fn done, void *arg,
                        dfs_rpc_ccall **out)
{
    dfs_rpc_ccall *c = calloc(1, sizeof *c);
    if (c == NULL)
        return DFS_ENOMEM;
    c->method = grpc_slice_from_copied_string(method);
    c->call =
        grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, dfs_rpc_loop_cq(loop),
                                 c->method, NULL, dfs_rpc_deadline_ms(timeout_ms), NULL);
    c->done = done;
    c->done_arg = arg;
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    c->md_op = (struct ccall_op){{md_done}, c};
    c->status_op = (struct ccall_op){{ccall_status_done}, c};
    c->send_op = (struct ccall_op){{ccall_send_done}, c};
    c->recv_op = (struct ccall_op){{ccall_recv_done}, c};
    c->close_op = (struct ccall_op){{md_done}, c};

    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = ch->nmd;
    ops[0].data.send_initial_metadata.metadata = ch->md;
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    grpc_op st;
    memset(&st, 0, sizeof st);
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.status = &c->status;
    st.data.recv_status_on_client.status_details = &c->details;
    st.data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    if (ccall_batch(c, ops, 2, &c->md_op) != DFS_OK) {
        grpc_metadata_array_destroy(&c->initial_md);
        grpc_metadata_array_destroy(&c->trailing_md);
        grpc_call_unref(c->call);
        grpc_slice_unref(c->method);
        free(c);
        return DFS_EINTERNAL;
    }
    if (ccall_batch(c, &st, 1, &c->status_op) != DFS_OK) {
        /* Cannot happen on a fresh call; make sure `done` still comes. */
        c->status = GRPC_STATUS_INTERNAL;
        c->status_received = true;
        grpc_call_cancel(c->call, NULL);
    }
    *out = c;
    return DFS_OK;
}

int dfs_rpc_ccall_send_raw(dfs_rpc_ccall *call, grpc_byte_buffer *bb, bool last,
                           dfs_rpc_ccall_sent_fn cb, void *arg)
{
    dfs_rpc_ccall *c = call;
    if (c->send_busy || c->send_closed) {
        grpc_byte_buffer_destroy(bb);
        return DFS_EINTERNAL;
    }
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_MESSAGE;
    ops[0].data.send_message.send_message = bb;
    size_t n = 1;
    if (last)
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    c->send_bb = bb;
    c->sent_cb = cb;
    c->sent_arg = arg;
    c->send_busy = true;
    if (ccall_batch(c, ops, n, &c->send_op) != DFS_OK) {
        c->send_busy = false;
        c->send_bb = NULL;
        grpc_byte_buffer_destroy(bb);
        return DFS_EINTERNAL;
    }
    c->send_closed = last;
    return DFS_OK;
}

int dfs_rpc_ccall_send(dfs_rpc_ccall *call, const ProtobufCMessage *msg, bool last,
                       dfs_rpc_ccall_sent_fn cb, void *arg)
{
    grpc_byte_buffer *bb = dfs_rpc_pack(msg);
    if (bb == NULL)
        return DFS_ENOMEM;
    return dfs_rpc_ccall_send_raw(call, bb, last, cb, arg);
}

int dfs_rpc_ccall_close_send(dfs_rpc_ccall *call)
{
    if (call->send_closed)
        return DFS_OK;
    if (call->send_busy)
        return DFS_EINTERNAL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    int rc = ccall_batch(call, &op, 1, &call->close_op);
    if (rc == DFS_OK)
        call->send_closed = true;
    return rc;
}

static int start_recv(dfs_rpc_ccall *c, const ProtobufCMessageDescriptor *desc,
                      dfs_rpc_ccall_recv_fn cb, dfs_rpc_ccall_recv_raw_fn raw_cb, void *arg)
{
    if (c->recv_busy)
        return DFS_EINTERNAL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    c->recv_desc = desc;
    c->recv_cb = cb;
    c->recv_raw_cb = raw_cb;
    c->recv_arg = arg;
    c->recv_busy = true;
    if (ccall_batch(c, &op, 1, &c->recv_op) != DFS_OK) {
        c->recv_busy = false;
        return DFS_EINTERNAL;
    }
    return DFS_OK;
}

int dfs_rpc_ccall_recv(dfs_rpc_ccall *call, const ProtobufCMessageDescriptor *desc,
                       dfs_rpc_ccall_recv_fn cb, void *arg)
{
    return start_recv(call, desc, cb, NULL, arg);
}

int dfs_rpc_ccall_recv_raw(dfs_rpc_ccall *call, dfs_rpc_ccall_recv_raw_fn cb, void *arg)
{
    return start_recv(call, NULL, NULL, cb, arg);
}

void dfs_rpc_ccall_cancel(dfs_rpc_ccall *call)
{
    grpc_call_cancel(call->call, NULL);
}

void dfs_rpc_ccall_cancel_with(dfs_rpc_ccall *call, int status, const char *message)
{
    if (call->override_message == NULL) {
        call->override_status = status;
        call->override_message = strdup(message != NULL ? message : dfs_strerror(status));
    }
    grpc_call_cancel(call->call, NULL);
}
