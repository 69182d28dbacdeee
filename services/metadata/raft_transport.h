/* The replication engine's Raft transport: libraft's TCP transport, with host names. */
#ifndef DFS_SERVICES_METADATA_RAFT_TRANSPORT_H
#define DFS_SERVICES_METADATA_RAFT_TRANSPORT_H

#include <raft/uv.h>

/*
 * libraft 0.15's TCP transport takes IPv4 literals only (it parses every address with
 * uv_ip4_addr). Replicas that run in Kubernetes know each other by stable names (a StatefulSet's
 * pods behind a headless Service: metadata-0.metadata:7100) whose addresses change when a pod is
 * rescheduled, so the names must be resolved at each connect, not once at start. This transport
 * wraps the TCP one:
 *
 *   - connect: a "host:port" whose host is not an IPv4 literal is resolved on the loop (libuv's
 *     getaddrinfo, off the loop thread, IPv4 answers) and the first address is dialled; a name
 *     that does not resolve fails that attempt as a refused connection would (libraft retries).
 *   - listen: on `bind_address` when given (an IPv4 literal with the own address's port), else
 *     on the replica's own address when it is an IPv4 literal, else on 0.0.0.0 with its port (a
 *     name need not resolve to this host's address at start: in Kubernetes it does only once the
 *     pod is published).
 *   - a member address "RAFT=GRPC" (a member added by `dfs metadata add`: its gRPC address rides
 *     in the replicated configuration) is dialled at RAFT.
 *   - the handshake and accepted connections are the TCP transport's, unchanged (a peer still
 *     introduces itself by its configured address, a name or a literal).
 *
 * Use it in place of raft_uv_tcp_init / raft_uv_tcp_close. All its callbacks run on `loop`'s
 * thread, like libraft's.
 */

/* Initialise *t over `loop` for the replica whose Raft address is `own_address` ("host:port"),
 * listening on bind_address (may be NULL, see above). Returns 0 or a RAFT_* error code
 * (RAFT_NOMEM; RAFT_INVALID for an address without a port). */
int dfs_raft_transport_init(struct raft_uv_transport *t, struct uv_loop_s *loop,
                            const char *own_address, const char *bind_address);

/* Release what init allocated, after libraft closed the transport (its close callback ran). */
void dfs_raft_transport_close(struct raft_uv_transport *t);

#endif
