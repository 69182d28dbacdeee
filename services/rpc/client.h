/* gRPC C-core clients: channels, blocking unary calls, and async streaming calls on a loop. */
#ifndef DFS_SERVICES_RPC_CLIENT_H
#define DFS_SERVICES_RPC_CLIENT_H

#include "services/rpc/loop.h"
#include "services/rpc/security.h"

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

/* A channel to one server ("host:port"). Thread-safe: share it between threads and calls. */
typedef struct dfs_rpc_channel dfs_rpc_channel;

/* The receive window of every stream a channel opens (fixed: no BDP probing; see client.c). */
#define DFS_RPC_STREAM_WINDOW (4u << 20)

/* How a channel is secured and whom it speaks for. Every pointer is borrowed during open only. */
struct dfs_rpc_channel_opts {
    /* TLS, or plaintext (only to loopback unless ->insecure); NULL: plaintext to loopback only. */
    const struct dfs_rpc_link_security *security;
    /* Bearer token sent as "authorization: Bearer <token>" with every call; NULL: none. Give it
       only to channels to the metadata service: storage nodes authorise by tickets, and a token
       must never be sent to an address a client chose. */
    const char *token;
};

/*
 * Open a channel; it connects lazily, on the first call. The receive and send limits are raised
 * to DFS_RPC_MAX_MESSAGE, each stream receives into a fixed DFS_RPC_STREAM_WINDOW, and reconnect
 * backoff is kept short (100 ms up to 2 s) so a restarted peer is found again quickly. Returns
 * DFS_EINVAL for an empty target or a malformed token, DFS_EPERM for plaintext to a non-loopback
 * target that opts do not allow, DFS_ENOMEM.
 */
int dfs_rpc_channel_open(const char *target, const struct dfs_rpc_channel_opts *opts,
                         dfs_rpc_channel **out, char **errmsg);

/* dfs_rpc_channel_open with no options: plaintext, to loopback only, no token (tests). */
int dfs_rpc_channel_create(const char *target, dfs_rpc_channel **out, char **errmsg);

/* Accepts NULL. Every call on the channel must have ended. */
void dfs_rpc_channel_destroy(dfs_rpc_channel *ch);

/* The target given at create (borrowed). */
const char *dfs_rpc_channel_target(const dfs_rpc_channel *ch);

/*
 * Whether the channel's last attempt to connect failed and it is waiting out its reconnect
 * backoff (TRANSIENT_FAILURE): until it connects again every call on it fails at once, even when
 * the peer is back (restarted on the same address). A channel kept for many calls (a pool's)
 * lets a caller that must reach the peer now open a fresh one instead. Any thread.
 */
bool dfs_rpc_channel_failing(dfs_rpc_channel *ch);

/*
 * A blocking unary call, from any thread. `method` is the full name ("/dfs.v1.Metadata/GetFile").
 * On success *resp is a message the caller frees with protobuf_c_message_free_unpacked(*resp,
 * NULL). On failure returns the DFS_ code of the gRPC status (services/rpc/status.h) and puts the
 * peer's message (or the status name) in *errmsg; *resp is left untouched. timeout_ms < 0 waits
 * forever.
 */
int dfs_rpc_unary(dfs_rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                  int64_t timeout_ms, char **errmsg);

/*
 * dfs_rpc_unary that also hands back, whatever the outcome, the value of the trailing metadata
 * entry `key` (a follower names its leader there: services/rpc/leader.h) in *value (malloc'd,
 * the caller frees it; NULL when absent). key and value may be NULL.
 */
int dfs_rpc_unary_trailer(dfs_rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                          int64_t timeout_ms, const char *key, char **value, char **errmsg);

/*
 * dfs_rpc_unary for idempotent methods only: while the answer is UNAVAILABLE, retried with
 * exponential backoff (50 ms doubling, up to 1 s) as long as the next try starts within retry_ms
 * of the first. Every try has the full timeout_ms.
 */
int dfs_rpc_unary_retry(dfs_rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                        int64_t timeout_ms, int64_t retry_ms, char **errmsg);

/*
 * An asynchronous client call bound to a loop: every callback runs on the loop's thread, and the
 * verbs must be used from that thread too. At most one send and one receive in flight at a time.
 *
 * Lifetime: the `done` callback given at start is the last thing that happens to the call. It
 * runs exactly once, after the server's status has arrived and every operation started on the
 * call has completed; the call is freed right after it returns, so the owner must forget the
 * pointer there. Cancel (or close the sending side) to make it end.
 */
typedef struct dfs_rpc_ccall dfs_rpc_ccall;

/* status: DFS_ code of the final gRPC status; message: the peer's text (borrowed, never NULL). */
typedef void (*dfs_rpc_ccall_done_fn)(dfs_rpc_ccall *call, void *arg, int status,
                                      const char *message);
typedef void (*dfs_rpc_ccall_sent_fn)(dfs_rpc_ccall *call, void *arg, bool ok);
/* msg is owned by the callback; NULL with DFS_OK at the end of the server's stream. DFS_EINVAL
   when the bytes do not parse, DFS_ECANCELED when the call failed. */
typedef void (*dfs_rpc_ccall_recv_fn)(dfs_rpc_ccall *call, void *arg, ProtobufCMessage *msg,
                                      int status);

/*
 * Start a call to `method` (a string that must outlive the call; method names are literals).
 * timeout_ms < 0: no deadline. Returns DFS_ENOMEM or DFS_EINTERNAL without any callback.
 */
int dfs_rpc_ccall_start(dfs_rpc_loop *loop, dfs_rpc_channel *ch, const char *method,
                        int64_t timeout_ms, dfs_rpc_ccall_done_fn done, void *arg,
                        dfs_rpc_ccall **out);

/*
 * Send a message (packed before returning; msg stays the caller's). With `last`, the sending side
 * is closed in the same batch. cb may be NULL.
 */
int dfs_rpc_ccall_send(dfs_rpc_ccall *call, const ProtobufCMessage *msg, bool last,
                       dfs_rpc_ccall_sent_fn cb, void *arg);

/* Like dfs_rpc_ccall_send with caller-packed bytes; takes ownership of bb in every case. */
int dfs_rpc_ccall_send_raw(dfs_rpc_ccall *call, grpc_byte_buffer *bb, bool last,
                           dfs_rpc_ccall_sent_fn cb, void *arg);

/* Close the sending side without a message. */
int dfs_rpc_ccall_close_send(dfs_rpc_ccall *call);

/* Receive the next response message, parsed as desc. */
int dfs_rpc_ccall_recv(dfs_rpc_ccall *call, const ProtobufCMessageDescriptor *desc,
                       dfs_rpc_ccall_recv_fn cb, void *arg);

/*
 * Like dfs_rpc_ccall_recv, but hands over the raw bytes for parsing without copies
 * (services/rpc/wire.h): bb is owned by the callback (grpc_byte_buffer_destroy); NULL with DFS_OK
 * at the end of the stream, NULL with DFS_ECANCELED when the call failed.
 */
typedef void (*dfs_rpc_ccall_recv_raw_fn)(dfs_rpc_ccall *call, void *arg, grpc_byte_buffer *bb,
                                          int status);
int dfs_rpc_ccall_recv_raw(dfs_rpc_ccall *call, dfs_rpc_ccall_recv_raw_fn cb, void *arg);

/* Cancel the call: pending operations fail and `done` follows with DFS_ECANCELED. Idempotent. */
void dfs_rpc_ccall_cancel(dfs_rpc_ccall *call);

/* Cancel with a status and message that `done` will report (e.g. DFS_EDATALOSS "bad crc"). */
void dfs_rpc_ccall_cancel_with(dfs_rpc_ccall *call, int status, const char *message);

#endif /* DFS_SERVICES_RPC_CLIENT_H */
