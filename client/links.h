/* The client's links: one per storage node a transfer talks to, with what each link has carried. */
#ifndef DFS_CLIENT_LINKS_H
#define DFS_CLIENT_LINKS_H

#include "common/throttle.h"
#include "services/rpc/client.h"
#include "services/rpc/pool.h"

#include <stdint.h>

typedef struct dfs_links dfs_links;
typedef struct dfs_link dfs_link;

/*
 * The channels to storage nodes that a dfs_client handle keeps for all its transfers: one per
 * node address, secured as `security` says (borrowed: it must outlive the pool; NULL: plaintext
 * to loopback only). gRPC channels are thread-safe and reconnect by themselves, so concurrent
 * transfers share them and a node that restarts on the same address is reached again through
 * the same channel. Returns 0 and *out (dfs_rpc_pool_destroy, once no transfer runs), or
 * DFS_ENOMEM.
 */
int dfs_links_channels_create(const struct dfs_rpc_link_security *security, dfs_rpc_pool **out,
                              char **errmsg);

/*
 * One transfer's links: each held to `rate` bytes per second (0: no limit), with a burst of
 * `burst` bytes (one message); the rate, the bucket and the byte count are the transfer's own,
 * whoever else uses the same channel. Their channels come from `channels` (borrowed: it must
 * outlive the links; see dfs_links_channels_create), or, when channels is NULL, from a pool of
 * the transfer's own secured as `security` says (borrowed; NULL: plaintext to loopback only),
 * closed with the links. security must be the shared channels' own: a node whose shared channel
 * is failing when the transfer first needs it gets a channel of the transfer's (dfs_links_get).
 * Returns NULL when out of memory. Not thread-safe: one transfer loop uses it.
 */
dfs_links *dfs_links_create(uint64_t rate, uint64_t burst, dfs_rpc_pool *channels,
                            const struct dfs_rpc_link_security *security);

/* Free every link (and the transfer's own channels, if any); no call of the transfer may still
   be running on them. Accepts NULL. */
void dfs_links_destroy(dfs_links *links);

/*
 * The link to the node at address, created on first use, over the shared channel to it; but
 * when that channel is waiting out a reconnect backoff (its last attempt failed: the node was
 * down, and may be back), over a fresh channel of the transfer's own, closed with the links. The
 * link lives as long as `links`. Returns NULL (with *errmsg) when the channel cannot be made.
 */
dfs_link *dfs_links_get(dfs_links *links, const char *address, char **errmsg);

dfs_rpc_channel *dfs_link_channel(const dfs_link *link);
const char *dfs_link_address(const dfs_link *link);

/* The link's token bucket (the link's own; never NULL). */
dfs_bucket *dfs_link_bucket(dfs_link *link);

/* Account bytes carried by the link (payload bytes, either direction). */
void dfs_link_add_bytes(dfs_link *link, uint64_t n);
uint64_t dfs_link_bytes(const dfs_link *link);

#endif /* DFS_CLIENT_LINKS_H */
