/* Reading a stitched file (StitchFile, issue 17): its segments in turn, each through the get
   engine. */
#ifndef DFS_CLIENT_SEGMENTS_H
#define DFS_CLIENT_SEGMENTS_H

#include "client/dfs_client.h"
#include "client/meta.h"
#include "dfs/v1/types.pb-c.h"

#include <stdint.h>

/*
 * dfs_get_fd for a file with segments (file->n_segments > 0): bytes [offset, offset + length) to
 * out_fd, each segment's share through dfs_get_fd on the segment's own layout, in order. The
 * layout is checked first: segments contiguous from 0 and adding up to the file's size, none
 * stitched itself, and the file's SHA-256 the SHA-256 of the segments' SHA-256s (DFS_EDATALOSS
 * otherwise). A segment read whole is checked against its own SHA-256 by the engine, so a whole
 * read of the file is checked end to end; a range is checked block by block as any range is.
 * Returns 0 and fills *out (size = length, sha256 = the file's), or a DFS_ code with *errmsg.
 */
int dfs_get_segments_fd(dfs_meta *meta, const struct dfs_rpc_link_security *security,
                        const Dfs__V1__FileInfo *file, uint64_t offset, uint64_t length, int out_fd,
                        const char *scratch_dir, const struct dfs_client_get_opts *opts,
                        struct dfs_client_get_result *out, char **errmsg);

#endif /* DFS_CLIENT_SEGMENTS_H */
