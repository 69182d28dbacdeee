/* A gRPC C-core server: registered methods, one completion queue per worker thread, async calls. */
#ifndef DFS_SERVICES_RPC_SERVER_H
#define DFS_SERVICES_RPC_SERVER_H

#include "services/rpc/loop.h"
#include "services/rpc/security.h"

#include <grpc/byte_buffer.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dfs_rpc_server dfs_rpc_server;

/*
 * One incoming call. Created by the server when a request arrives and handed to the method's
 * handler on the loop (thread) the call is bound to, or for a unary method on a handler thread
 * (dfs_rpc_server_config.handler_threads); every callback of the call runs on the loop's
 * thread, so a call's state needs no lock. The handler drives the call with the verbs below and
 * must end it with exactly one dfs_rpc_call_finish (or _reply / _fail), now or from a later
 * callback. The call frees itself once finished and once every operation it started has completed;
 * the state attached with dfs_rpc_call_set_state is released at that moment, never earlier.
 */
typedef struct dfs_rpc_call dfs_rpc_call;

enum dfs_rpc_kind {
    DFS_RPC_UNARY,            /* one request, one response */
    DFS_RPC_CLIENT_STREAMING, /* requests via dfs_rpc_call_recv, one response */
    DFS_RPC_SERVER_STREAMING, /* one request, responses via dfs_rpc_call_send */
    DFS_RPC_BIDI_STREAMING,
};

/* Called on the call's loop thread when a call arrives (or on a handler thread: see
   dfs_rpc_server_config.handler_threads). */
typedef void (*dfs_rpc_handler_fn)(dfs_rpc_call *call, void *ctx);

struct dfs_rpc_method {
    /* Full method name, "/dfs.v1.Storage/PutFragment". Borrowed: must outlive the server. */
    const char *name;
    enum dfs_rpc_kind kind;
    /* Request type; for UNARY and SERVER_STREAMING the server parses the request before the
       handler runs and answers INVALID_ARGUMENT itself when it does not parse. For the streaming
       kinds it parses each message given to dfs_rpc_call_recv callbacks. */
    const ProtobufCMessageDescriptor *request;
    dfs_rpc_handler_fn handler;
    void *ctx;
    /* Who may call it, in the authorizer's terms (dfs_rpc_server_set_authorizer); 0: anyone
       (health, reflection). A method with access != 0 on a server without an authorizer is
       refused to everyone. */
    unsigned access;
};

struct dfs_rpc_server_config {
    /* Address to listen on, "127.0.0.1:0" for a free port; "[::]:7000" for every interface. */
    const char *listen;
    /* Worker threads, each with its own completion queue; 0 means 4. */
    int threads;
    /*
     * > 0: the handlers of unary methods run on this many threads of their own, which take the
     * calls in the order they arrived, instead of on the worker (loop) thread the call is bound
     * to; 0: on the loop. For servers whose unary handlers block (the metadata service: a
     * catalog write waits for its Raft commit, a node's report for one RPC and one commit per
     * copy). gRPC binds each call to one worker's completion queue when it arrives, whether or
     * not that worker is free, so a handler that blocks its loop for seconds holds up every
     * call already bound there (one per method) while the other workers are idle, past the
     * callers' deadlines; on handler threads the loops only dispatch, and a call waits for any
     * free handler thread, never for a particular one.
     *
     * A unary handler run there may use the request, metadata and finish verbs
     * (dfs_rpc_call_finish, _reply, _fail, _reject, _set_trailer, _set_state) from its thread or
     * from any other, but not the loop's own: dfs_rpc_call_on_cancel, dfs_rpc_call_loop (timers,
     * posts). Streaming handlers always run on the loop.
     */
    int handler_threads;
    /* Largest message received or sent; 0 means DFS_RPC_MAX_MESSAGE. */
    size_t max_message_bytes;
    /* TLS (its material needs a certificate and key), or plaintext: only on a loopback address
       unless ->insecure. NULL: plaintext on loopback only. Borrowed: must outlive the server. */
    const struct dfs_rpc_link_security *security;
    /*
     * A streaming call whose receive (the client sends nothing) or send (the client reads
     * nothing) has not completed for this long is cancelled with DEADLINE_EXCEEDED and a log
     * line, whatever deadline the client set (or none): a stalled peer must not hold a call, its
     * file and its memory forever. 0 means DFS_RPC_STREAM_IDLE_MS; < 0: no limit.
     */
    int64_t stream_idle_ms;
};

/* The default stream idle limit: generous for the slowest useful link (1 MiB per 2 minutes). */
#define DFS_RPC_STREAM_IDLE_MS 120000

/* Large enough for a 1 MiB data chunk with its CRCs, and for big listings. */
#define DFS_RPC_MAX_MESSAGE (32u << 20)

/* Create a server (not yet listening). Returns 0, or an error with *errmsg. */
int dfs_rpc_server_create(const struct dfs_rpc_server_config *cfg, dfs_rpc_server **out,
                          char **errmsg);

/* Register a method; before dfs_rpc_server_start. The struct is copied. */
int dfs_rpc_server_add_method(dfs_rpc_server *srv, const struct dfs_rpc_method *method,
                              char **errmsg);

/* Bind the listen address and start the workers. DFS_EUNAVAIL when the address cannot be bound. */
int dfs_rpc_server_start(dfs_rpc_server *srv, char **errmsg);

/* The bound port (useful after listening on port 0); 0 before start. */
int dfs_rpc_server_port(const dfs_rpc_server *srv);

/*
 * Stop taking calls, let calls in flight finish for up to grace_ms, then cancel the rest; returns
 * once every call has been finished by its handler and freed (a handler told of the cancel must
 * still finish its call, also one it handed to another thread, which posts the answer to the
 * call's loop: the loops run until then) and every worker has stopped. Idempotent. Thread-safe
 * with respect to the workers (call it from main, not from a handler).
 */
void dfs_rpc_server_stop(dfs_rpc_server *srv, int64_t grace_ms);

/* Stop (with no grace) if still running, and free. Accepts NULL. */
void dfs_rpc_server_destroy(dfs_rpc_server *srv);

/* ---- inspection hooks: what health, reflection and metrics need from a server ---- */

/*
 * The registered methods, in registration order: how many, and the i-th (borrowed from the
 * server; NULL when i is out of range). The list only changes before start, so once the server
 * has started it may be read from any thread.
 */
size_t dfs_rpc_server_method_count(const dfs_rpc_server *srv);
const struct dfs_rpc_method *dfs_rpc_server_method(const dfs_rpc_server *srv, size_t i);

/* What the server tells an observer about one call that has ended. */
struct dfs_rpc_call_record {
    int method;              /* index for dfs_rpc_server_method; -1: a method nobody registered */
    grpc_status_code status; /* the status sent; CANCELLED when the client cancelled, the deadline
                                passed or the connection dropped before the status went out */
    int64_t latency_ns;      /* from the call's arrival to its end */
    uint64_t bytes_in;       /* message bytes received (serialized size, before any compression) */
    uint64_t bytes_out;      /* message bytes sent */
};

/*
 * An observer of finished calls (metrics). call_done runs once per call, on the worker thread of
 * the call (or the handler thread that finished it), after the call's last operation completed and before its state is freed: it must be
 * thread-safe, quick, and must not call back into the server.
 */
struct dfs_rpc_observer {
    void (*call_done)(void *arg, const struct dfs_rpc_call_record *rec);
    void *arg; /* borrowed: must outlive the server's calls (until dfs_rpc_server_stop returns) */
};

/* Set the observer (copied); before dfs_rpc_server_start. DFS_EINTERNAL once started. */
int dfs_rpc_server_set_observer(dfs_rpc_server *srv, const struct dfs_rpc_observer *obs,
                                char **errmsg);

/*
 * Decides whether a call may run, before its request is parsed or its handler sees it. Called on
 * the call's worker thread (or the handler thread that runs it) for every call of a method with access != 0, so it must be
 * thread-safe. Returns DFS_OK to let the call run, or a code (DFS_EUNAUTH: no or bad credentials;
 * DFS_EPERM: not allowed) with a message in *errmsg (freed by the server) that the client gets.
 */
struct dfs_rpc_authorizer {
    int (*authorize)(void *arg, const dfs_rpc_call *call, unsigned access, char **errmsg);
    void *arg; /* borrowed: must outlive the server's calls */
};

/* Set the authorizer (copied); before dfs_rpc_server_start. DFS_EINTERNAL once started. */
int dfs_rpc_server_set_authorizer(dfs_rpc_server *srv, const struct dfs_rpc_authorizer *a,
                                  char **errmsg);

/* ---- verbs on a call (loop thread of the call, unless said otherwise) ---- */

/* The parsed request of a UNARY or SERVER_STREAMING call; owned by the call. */
const ProtobufCMessage *dfs_rpc_call_request(const dfs_rpc_call *call);

/* The method's name (borrowed). */
const char *dfs_rpc_call_method(const dfs_rpc_call *call);

/* The loop the call is bound to: create downstream client calls on it to stay on one thread. */
dfs_rpc_loop *dfs_rpc_call_loop(const dfs_rpc_call *call);

/*
 * Copy the value of request metadata `key` (lower-case) into buf as a NUL-terminated string.
 * Returns false when absent or longer than cap-1.
 */
bool dfs_rpc_call_metadata(const dfs_rpc_call *call, const char *key, char *buf, size_t cap);

/*
 * The bearer token of the call ("authorization: Bearer <token>") copied into buf (NUL-terminated).
 * Returns false when there is none, it is not a Bearer token, or it does not fit.
 */
bool dfs_rpc_call_bearer(const dfs_rpc_call *call, char *buf, size_t cap);

/* The peer's address ("ipv4:127.0.0.1:5555"), malloc'd; the caller frees it. */
char *dfs_rpc_call_peer(const dfs_rpc_call *call);

/* Milliseconds left before the client's deadline (INT64_MAX when it set none). */
int64_t dfs_rpc_call_remaining_ms(const dfs_rpc_call *call);

/*
 * Attach handler state; `release` (may be NULL) is called with it when the call is freed. Setting
 * it again replaces the pointer without releasing the old one.
 */
void dfs_rpc_call_set_state(dfs_rpc_call *call, void *state, void (*release)(void *state));

/*
 * Called (once) if the client cancels or the connection drops before the handler finished; the
 * handler should stop its work and call finish (whose status then goes nowhere).
 */
void dfs_rpc_call_on_cancel(dfs_rpc_call *call, void (*fn)(dfs_rpc_call *call, void *arg),
                            void *arg);

/*
 * Receive the next request message of a streaming call. One receive at a time. The callback gets:
 *   DFS_OK, msg != NULL   a message, now owned by the callback (protobuf_c_message_free_unpacked)
 *   DFS_OK, msg == NULL   no more messages: the client closed its side or, since gRPC reports it
 *                         the same way, cancelled the call. A handler must not take the end of the
 *                         stream as proof that an upload is complete: it checks what it received
 *                         (PutFragment: the declared size).
 *   DFS_EINVAL            a message that does not parse as the method's request type
 *   DFS_ECANCELED         the call is over (cancelled, connection lost)
 * Returns DFS_EINTERNAL (and no callback comes) if a receive is already outstanding.
 */
typedef void (*dfs_rpc_recv_fn)(dfs_rpc_call *call, void *arg, ProtobufCMessage *msg, int status);
int dfs_rpc_call_recv(dfs_rpc_call *call, dfs_rpc_recv_fn cb, void *arg);

/*
 * Like dfs_rpc_call_recv, but hands over the raw bytes (the callback owns bb and destroys it with
 * grpc_byte_buffer_destroy), for data paths that parse without copying.
 */
typedef void (*dfs_rpc_recv_raw_fn)(dfs_rpc_call *call, void *arg, grpc_byte_buffer *bb,
                                    int status);
int dfs_rpc_call_recv_raw(dfs_rpc_call *call, dfs_rpc_recv_raw_fn cb, void *arg);

/*
 * Send one response message of a streaming call; it is packed before this returns, so msg may be
 * freed or reused at once. One send at a time; cb (may be NULL) runs when the message was handed to
 * the transport (ok) or the call failed (!ok). Returns DFS_EINTERNAL if a send is outstanding or
 * the call is finished, DFS_ENOMEM; no callback comes then.
 */
typedef void (*dfs_rpc_sent_fn)(dfs_rpc_call *call, void *arg, bool ok);
int dfs_rpc_call_send(dfs_rpc_call *call, const ProtobufCMessage *msg, dfs_rpc_sent_fn cb,
                      void *arg);

/* Like dfs_rpc_call_send with bytes packed by the caller; takes ownership of bb in every case. */
int dfs_rpc_call_send_raw(dfs_rpc_call *call, grpc_byte_buffer *bb, dfs_rpc_sent_fn cb, void *arg);

/*
 * End the call with a status (a DFS_ code, mapped by services/rpc/status.h), an optional response
 * message (packed at once; for UNARY and CLIENT_STREAMING calls that succeed) and a human message
 * (copied; NULL for none). Exactly once per call. If a send is outstanding, the status follows it.
 */
void dfs_rpc_call_finish(dfs_rpc_call *call, int code, const ProtobufCMessage *resp,
                         const char *message);

/*
 * Refuse a request that fails its checks: log one line (method, peer, msg) and finish with code
 * (DFS_EINVAL, usually) and msg as the status message. msg is copied (NULL: the code's text).
 */
void dfs_rpc_call_reject(dfs_rpc_call *call, int code, const char *msg);

/*
 * Attach one trailing metadata pair (key lower-case, e.g. "dfs-leader"; value printable ASCII)
 * to the status the call ends with; both copied. Call before finish (a later call replaces the
 * pair; after finish it is ignored). For a refusal that tells the client where to go instead:
 * an authorizer may set it on the call it refuses (the cast from const is the authorizer's).
 * Returns DFS_OK, or DFS_EINVAL (NULL or empty key) / DFS_ENOMEM.
 */
int dfs_rpc_call_set_trailer(dfs_rpc_call *call, const char *key, const char *value);

/* finish(DFS_OK, resp, NULL). */
void dfs_rpc_call_reply(dfs_rpc_call *call, const ProtobufCMessage *resp);

/* finish(code, NULL, formatted message). */
void dfs_rpc_call_fail(dfs_rpc_call *call, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* DFS_SERVICES_RPC_SERVER_H */
