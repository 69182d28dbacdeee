/* Calls to a replicated service through whichever replica leads: an address list and a guess. */
#ifndef DFS_SERVICES_RPC_LEADER_H
#define DFS_SERVICES_RPC_LEADER_H

#include "services/rpc/client.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The contract with the replicas (services/metadata): only the leader serves. A follower answers
 * every call with status UNAVAILABLE and, in trailing metadata, DFS_RPC_LEADER_KEY = "HOST:PORT"
 * (the leader's gRPC address), or without that entry while no leader is known (an election). Its
 * status message contains DFS_RPC_NOT_LEADER. A refusal means nothing was done, so any call may be
 * made again after one.
 *
 * What a call does after each kind of failure of one try:
 *
 *   answer                                       | next try
 *   ---------------------------------------------+---------------------------------------------
 *   UNAVAILABLE + dfs-leader: X (a refusal)      | at once, at X (added to the list if new)
 *   UNAVAILABLE, message has "not the leader"    | the next address, after a backoff
 *   connect failure (request never left)         | the next address: at once while one of this
 *                                                | round is untried; then after a backoff while
 *                                                | the retry window is open (idempotent calls)
 *                                                | or, once a replica refused during this call,
 *                                                | until the deadline
 *   other UNAVAILABLE (request may have arrived) | idempotent: as a connect failure; otherwise
 *                                                | none: the call fails, and its outcome says
 *                                                | it may or may not have been done
 *   DEADLINE_EXCEEDED, 2+ addresses known        | idempotent: the next address at once, with
 *                                                | what is left; otherwise none, and ambiguous
 *   anything else (OK, NOT_FOUND, ...)           | none: the answer is the call's
 *
 * Every try starts before the call's deadline (timeout_ms + retry_ms after it began) and lasts
 * at most min(timeout_ms, what is left of it), so a call never outlives that deadline. Backoffs
 * start at 50 ms and double to 1 s; a redirect to an address that just redirected is backed off
 * too, so two confused replicas naming each other cannot spin. With one address and no
 * refusals a call behaves exactly as dfs_rpc_unary (retry_ms 0) or dfs_rpc_unary_retry did.
 */
#define DFS_RPC_LEADER_KEY "dfs-leader"
#define DFS_RPC_NOT_LEADER "not the leader"

/* Most addresses a handle learns from refusals beyond those it was given. */
#define DFS_RPC_LEADER_MAX_LEARNED 16

typedef struct dfs_rpc_leader dfs_rpc_leader;

/*
 * A handle for the replicas at `addrs` ("a:1,b:2,c:3", or one address: common/addr.h
 * dfs_addr_list_split). Channels are opened now (they connect lazily) with opts, whose security
 * is borrowed and must outlive the handle (the token is copied); addresses learned later get the
 * same. The first address is the first guess. Thread-safe: one handle serves every thread of a
 * process, and what one call learns about the leader the next one uses. Returns 0 and *out
 * (dfs_rpc_leader_destroy), or what dfs_addr_list_split or dfs_rpc_channel_open return
 * (DFS_EINVAL, DFS_EPERM, DFS_ENOMEM) with *errmsg.
 */
int dfs_rpc_leader_open(const char *addrs, const struct dfs_rpc_channel_opts *opts,
                        dfs_rpc_leader **out, char **errmsg);

/* Accepts NULL. No call may still be running on the handle. */
void dfs_rpc_leader_destroy(dfs_rpc_leader *l);

/* The address list as given at open (borrowed, lives as long as the handle). */
const char *dfs_rpc_leader_addrs(const dfs_rpc_leader *l);

/* The current guess at the leader, copied into buf[0..cap) (truncated when long). */
void dfs_rpc_leader_guess(dfs_rpc_leader *l, char *buf, size_t cap);

/* How the call may be repeated (flags of dfs_rpc_leader_unary). */
#define DFS_RPC_LEADER_IDEMPOTENT 1u /* doing it twice is harmless: reads, CommitFile, reports */

/* What became of a call beside its status (dfs_rpc_leader_unary). */
struct dfs_rpc_leader_outcome {
    char tried[256]; /* the address of the last try (truncated when long) */
    /* The last try failed after the request may have reached a server, and the call was not
       made again because it is not idempotent: it may or may not have been done. */
    bool ambiguous;
};

/*
 * A blocking unary call to `method` ("/dfs.v1.Metadata/GetFile") on the leader, following the
 * table above. timeout_ms bounds each try (< 0: no deadline at all); retry_ms (>= 0) is the
 * window in which tries may start again after transport failures of idempotent calls. On success
 * *resp as dfs_rpc_unary gives it. On failure the DFS_ code of the last answer and its message
 * in *errmsg (the peer's text, or the status name). out may be NULL.
 */
int dfs_rpc_leader_unary(dfs_rpc_leader *l, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                         int64_t timeout_ms, int64_t retry_ms, unsigned flags,
                         struct dfs_rpc_leader_outcome *out, char **errmsg);

/* How many addresses the handle knows (those given, then those learned). */
size_t dfs_rpc_leader_count(dfs_rpc_leader *l);

/*
 * Whether errmsg, the message of a failed try, says the request never reached a server (no
 * connection could be made, the name did not resolve): gRPC C core's wording. Exposed for tests.
 */
bool dfs_rpc_leader_never_sent(const char *errmsg);

#endif /* DFS_SERVICES_RPC_LEADER_H */
