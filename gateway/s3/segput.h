/*
 * A PUT or UploadPart body of known length stored as it arrives, in segments (issue 17): each
 * full segment is put (a dfs file of its own, under a hidden folder) by a worker thread while the
 * next one arrives, and at the end the segments are stitched into the object in one catalog
 * operation (StitchFile) that copies no byte. The object appears only at the stitch, after the
 * body was proven; whatever fails before, the stored segments are removed.
 *
 * A segment is held in memory (in_memory) or in a spool file: two at most per body, the one
 * filling and the one being put, never the whole body. From memory a segment is put as it is: no
 * spool write, no read back (the engine hashes and packs it from the buffer). Memory beside the
 * segments is the put engine's for one put.
 */
#ifndef DFS_GATEWAY_S3_SEGPUT_H
#define DFS_GATEWAY_S3_SEGPUT_H

#include "client/dfs_client.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dfs_segput dfs_segput;

/*
 * Start a body: segments of seg_size bytes (at least 1 MiB), stored as dir "seg.NNNNN" (dir: a
 * dfs folder ending in '/', which should hold nothing else). With in_memory, each segment is held
 * in a buffer of seg_size bytes (two at most, 2 x seg_size in all; one that cannot be allocated
 * is spooled instead); otherwise spooled in spool_dir. client and interrupted (may be NULL) are
 * borrowed until dfs_segput_destroy. Returns 0 and *out, or a DFS_ code with *errmsg.
 */
int dfs_segput_create(dfs_client *client, const char *spool_dir, const char *dir, uint64_t seg_size,
                      bool in_memory, volatile sig_atomic_t *interrupted, dfs_segput **out,
                      char **errmsg);

/* The next bytes of the body. A failure (of this spool or of an earlier segment's put) sticks:
   every later call returns it. */
int dfs_segput_write(dfs_segput *sp, const uint8_t *data, size_t len, char **errmsg);

/*
 * The body ended and was proven: store the last segment, wait for every put, and stitch the
 * segments into `path` with opts (borrowed; conditions checked in the stitch). *out (may be NULL)
 * gets the object's record. Returns 0, or a DFS_ code with *errmsg (DFS_EPRECOND: a condition).
 */
int dfs_segput_finish(dfs_segput *sp, const char *path, const struct dfs_client_stitch_opts *opts,
                      Dfs__V1__FileInfo **out, char **errmsg);

/* Bytes written so far. */
uint64_t dfs_segput_size(const dfs_segput *sp);

/* Wait for a put in flight, remove the segments stored and not stitched, the spool files and
   buffers; free. Accepts NULL. */
void dfs_segput_destroy(dfs_segput *sp);

#endif /* DFS_GATEWAY_S3_SEGPUT_H */
