/* The put engine: store a local file in the cluster, every fragment to every node in parallel. */
#ifndef DFS_CLIENT_PUT_H
#define DFS_CLIENT_PUT_H

#include "client/chunkio.h"
#include "client/dfs_client.h"
#include "client/meta.h"
#include "services/rpc/pool.h"

/*
 * dfs_client_put (client/dfs_client.h) over a metadata connection: the links to the storage nodes
 * use the channels of `channels` (borrowed, shared with other transfers: client/links.h; NULL:
 * the put opens its own, secured as meta's, dfs_meta_security). The data messages' buffers come
 * from `pool` (borrowed, shared with other transfers, buffers of DFS_CHUNK data bytes) when the
 * put's messages are that large, so that puts one after another reuse warm buffers; otherwise
 * (and with pool NULL) from a pool of the put's own. Returns 0 and fills *out, or a DFS_ code with
 * a one-line reason in *errmsg.
 */
int dfs_put(dfs_meta *meta, dfs_rpc_pool *channels, dfs_chunk_pool *pool, const char *local,
            const char *remote, const struct dfs_client_put_opts *opts,
            struct dfs_client_put_result *out, char **errmsg);

#endif /* DFS_CLIENT_PUT_H */
