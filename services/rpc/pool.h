/* A pool of channels by peer address: each opened on first use and kept for the pool's life. */
#ifndef DFS_SERVICES_RPC_POOL_H
#define DFS_SERVICES_RPC_POOL_H

#include "services/rpc/client.h"

#include <stddef.h>

/*
 * What a process that talks to many peers holds: the metadata service's channels to storage
 * nodes, a storage node's to the next node of a chain and to repair sources, a transfer's links.
 * gRPC channels are thread-safe and reconnect by themselves, so one per address is enough and
 * none is closed before the pool is. Beside each channel the pool keeps a block of the caller's
 * own state (a link's throttle, say) at a fixed address. Thread-safe; lookups are linear (a pool
 * holds tens of peers, at most `max`).
 */
typedef struct dfs_rpc_pool dfs_rpc_pool;

struct dfs_rpc_pool_config {
    /* How every channel is secured; borrowed: it must outlive the pool. NULL: plaintext, to
       loopback only. No channel of a pool carries a bearer token (peers chosen by others). */
    const struct dfs_rpc_link_security *security;
    /* Most channels; 0: no limit. A get that would open one more fails with DFS_ENOSPC. */
    size_t max;
    /* The message of that DFS_ENOSPC (borrowed; NULL: "the channel pool is full"). */
    const char *full_message;
    /* Bytes of caller state per channel (0: none): zeroed, aligned for any type, never moved. */
    size_t data_size;
    /* Fills a new entry's state, once, before any get returns it (under the pool's lock, so it
       must not call the pool). address and ch are the entry's own and live as long as the pool.
       NULL: the state stays zeroed. */
    void (*data_init)(void *data, const char *address, dfs_rpc_channel *ch, void *arg);
    /* Releases an entry's state at destroy, before its channel is destroyed. NULL: nothing. */
    void (*data_fini)(void *data, void *arg);
    void *arg; /* passed to both */
};

/* An empty pool (cfg is copied; what it points to is borrowed). Returns 0 or DFS_ENOMEM. */
int dfs_rpc_pool_create(const struct dfs_rpc_pool_config *cfg, dfs_rpc_pool **out, char **errmsg);

/*
 * Destroy every entry (data_fini, then the channel) and the pool. No call may still be running
 * on its channels. Accepts NULL.
 */
void dfs_rpc_pool_destroy(dfs_rpc_pool *p);

/*
 * The channel to address and its state, opened (and data_init run) on first use. Any thread.
 * *ch and *data (either may be NULL) are owned by the pool and valid until it is destroyed. On
 * failure nothing is kept (a later get tries again): DFS_ENOSPC when the pool is full, or what
 * dfs_rpc_channel_open returns (DFS_EINVAL, DFS_EPERM for plaintext to a non-loopback address),
 * DFS_ENOMEM.
 */
int dfs_rpc_pool_get(dfs_rpc_pool *p, const char *address, dfs_rpc_channel **ch, void **data,
                     char **errmsg);

/* How many channels the pool holds. */
size_t dfs_rpc_pool_size(dfs_rpc_pool *p);

#endif /* DFS_SERVICES_RPC_POOL_H */
