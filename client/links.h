/* The client's links: one channel per storage node, with what each link has carried. */
#ifndef DFS_CLIENT_LINKS_H
#define DFS_CLIENT_LINKS_H

#include "common/throttle.h"
#include "services/rpc/client.h"

#include <stdint.h>

typedef struct dfs_links dfs_links;
typedef struct dfs_link dfs_link;

/*
 * An empty pool whose links are each held to `rate` bytes per second (0: no limit), with a burst of
 * `burst` bytes (one message), whose channels are secured as `security` says (borrowed: it must
 * outlive the pool; NULL: plaintext to loopback only). Returns NULL when out of memory. Not
 * thread-safe: one transfer loop uses it.
 */
dfs_links *dfs_links_create(uint64_t rate, uint64_t burst,
                            const struct dfs_rpc_link_security *security);

/* Destroy every link's channel; no call may still be running on them. Accepts NULL. */
void dfs_links_destroy(dfs_links *links);

/*
 * The link to the node at address, created on first use. The link lives as long as the pool.
 * Returns NULL (with *errmsg) when the channel cannot be made.
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
