/* The get engine: fetch a file's fragments in parallel, check them, and assemble the file. */
#ifndef DFS_CLIENT_GET_H
#define DFS_CLIENT_GET_H

#include "client/dfs_client.h"
#include "client/meta.h"
#include "dfs/v1/types.pb-c.h"
#include "services/rpc/pool.h"

#include <stdint.h>

/*
 * dfs_client_get (client/dfs_client.h) over a metadata connection: the layout comes from meta,
 * the links to the storage nodes use the channels of `channels` (borrowed, shared with other
 * transfers: client/links.h; NULL: the get opens its own, secured as meta's, dfs_meta_security),
 * and damaged copies are reported to meta. Returns 0 and fills *out, or a DFS_ code with a
 * one-line reason in *errmsg.
 */
int dfs_get(dfs_meta *meta, dfs_rpc_pool *channels, const char *remote, const char *local,
            const struct dfs_client_get_opts *opts, struct dfs_client_get_result *out,
            char **errmsg);

/*
 * The layout of `remote` (GetFile, retried while the service restarts): *out is the caller's (free
 * with protobuf_c_message_free_unpacked), with a 32-byte SHA-256. Returns 0, or a DFS_ code with
 * *errmsg (DFS_ENOTFOUND: no such file).
 */
int dfs_get_layout(dfs_meta *meta, const char *remote, Dfs__V1__FileInfo **out, char **errmsg);

/*
 * dfs_client_get_range (client/dfs_client.h): bytes [offset, offset + length) of the file whose
 * layout is `file` (borrowed: dfs_get_layout) to out_fd. meta (borrowed; NULL: none) is asked for
 * the layout again when a fragment runs out of copies (the catalog moved them meanwhile) and told
 * of the damaged copies the get met; without it a fragment out of copies fails the get. The links
 * to the storage nodes use the channels of `channels` (borrowed, shared: client/links.h); when
 * it is NULL the get opens its own, secured as `security` says (borrowed; NULL: plaintext to
 * loopback only). Returns 0 and fills *out (size = length), DFS_ERANGE when the range is outside the file,
 * or a DFS_ code with *errmsg.
 */
int dfs_get_fd(dfs_meta *meta, dfs_rpc_pool *channels, const struct dfs_rpc_link_security *security,
               const Dfs__V1__FileInfo *file, uint64_t offset, uint64_t length, int out_fd,
               const char *scratch_dir, const struct dfs_client_get_opts *opts,
               struct dfs_client_get_result *out, char **errmsg);

#endif /* DFS_CLIENT_GET_H */
