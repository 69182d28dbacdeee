/* The client's connection to the metadata service: calls with deadlines, retries and clear errors. */
#ifndef DFS_CLIENT_META_H
#define DFS_CLIENT_META_H

#include "services/rpc/client.h"

#include <protobuf-c/protobuf-c.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct dfs_meta dfs_meta;

/*
 * Connect (lazily) to the metadata service at addr: "host:port", or the replicas' list
 * "a:1,b:2,c:3"; calls go to the leader and follow it when it changes (services/rpc/leader.h).
 * timeout_ms bounds every try of a call.
 * opts (may be NULL: plaintext to loopback, no token) says how links are secured and which bearer
 * token the calls carry; its security is also what the transfers' links to storage nodes use, so
 * it is borrowed and must outlive the handle (the token is copied). Returns 0 and *out
 * (dfs_meta_close), DFS_EINVAL for an empty address, DFS_EPERM for plaintext to a non-loopback
 * address that opts do not allow.
 */
int dfs_meta_open(const char *addr, int64_t timeout_ms, const struct dfs_rpc_channel_opts *opts,
                  dfs_meta **out, char **errmsg);

/* The link security given at open (borrowed; NULL: plaintext to loopback only). */
const struct dfs_rpc_link_security *dfs_meta_security(const dfs_meta *m);

/* Accepts NULL. */
void dfs_meta_close(dfs_meta *m);

/* The address (or list) given at open (borrowed). */
const char *dfs_meta_addr(const dfs_meta *m);

/*
 * Call Metadata.<method> ("GetFile") on the leader. Idempotent calls pass retry = true and are
 * retried for up to 2 s while the service is unavailable (a restart), within the timeout; a
 * follower's refusal is followed for any call, and a call with retry = false that failed after
 * the request may have arrived is not made again (the message says it may or may not have been
 * done). On success *resp is the response (free with
 * protobuf_c_message_free_unpacked). On failure the DFS_ code; *errmsg says what the service said,
 * or "cannot reach the metadata service at ADDR (...)" when it could not be reached (with a
 * list: "... at LIST (LAST-ADDRESS-TRIED: ...)").
 */
int dfs_meta_call(dfs_meta *m, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, bool retry, void *resp,
                  char **errmsg);

/* dfs_meta_call with its own deadline instead of the handle's (a readiness probe's short one). */
int dfs_meta_call_within(dfs_meta *m, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *resp_desc, bool retry,
                         int64_t timeout_ms, void *resp, char **errmsg);

/* How dfs_meta_call_patient waits. */
struct dfs_meta_patience {
    /* Keep trying for this long after the first try. */
    int64_t patience_ms;
    /* Stop trying once non-zero (Ctrl-C); may be NULL. */
    volatile sig_atomic_t *interrupted;
    /* Told before each retry why the service did not answer (one line: "cannot reach the
       metadata service at ADDR (...)") and how long ago the first try started; may be NULL. */
    void (*waiting)(void *arg, const char *why, int64_t waited_ms);
    void *arg;
};

/*
 * dfs_meta_call for a call whose repetition is harmless (CommitFile: the catalog takes the same
 * commit twice) and whose failure is costly (a put whose whole transfer is done): while the
 * service cannot be reached, or does not answer within the timeout, the call is made again, with
 * a backoff of 50 ms doubling to 1 s, as long as the next try starts within p->patience_ms of the
 * first. Other failures return at once. Returns like dfs_meta_call; DFS_ECANCELED when
 * interrupted.
 */
int dfs_meta_call_patient(dfs_meta *m, const char *method, const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *resp_desc,
                          const struct dfs_meta_patience *p, void *resp, char **errmsg);

#endif /* DFS_CLIENT_META_H */
