/* Stream a file being fetched out of order to a descriptor in file order, behind the fetchers. */
#ifndef DFS_CLIENT_DRAIN_H
#define DFS_CLIENT_DRAIN_H

#include "client/filehash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The get engines write the file's bytes into a scratch file at their file offsets, many ranges at
 * once and out of order. A drain is a thread that follows them: it copies the contiguous beginning
 * of what is ready to an output descriptor (a pipe, a socket, standard output), optionally hashing
 * it, and punches the copied bytes out of the scratch file (FALLOC_FL_PUNCH_HOLE), so the scratch
 * file holds only the window between the drain and the fetchers: disk and memory stay bounded
 * whatever the file's size. The fetchers read dfs_drain_emitted to stay at most a fixed distance
 * ahead (backpressure from a slow reader).
 *
 * Regions: bytes [starts[0], end) of the scratch file are cut into regions at starts[0] < starts[1]
 * < ...; each region is written front to back (dfs_drain_advance says how far), all regions at
 * once. Bytes [from, to) (inside [starts[0], end]) go out; the rest is only punched.
 *
 * The last piece (up to 1 MiB ending at `to`) is held back until dfs_drain_finish says everything
 * checked out (and, when hashing, the SHA-256 matched): a reader that gets every byte it was
 * promised got verified data, and a failure shows as a short read.
 */
typedef struct dfs_drain dfs_drain;

struct dfs_drain_config {
    int scratch_fd;         /* borrowed; open until finish/cancel returns */
    int out_fd;             /* borrowed; open until finish/cancel returns */
    const uint64_t *starts; /* copied */
    size_t nregions;        /* may be 0 (nothing to send: from == to) */
    uint64_t end;
    uint64_t from, to;
    /* Hash [from, to) with SHA-256 (a whole file: from = 0, to = its size), checked at finish. */
    bool hash;
};

/* Start the thread. Returns 0 and *out, DFS_EINVAL (bad regions), DFS_ENOMEM. */
int dfs_drain_start(const struct dfs_drain_config *cfg, dfs_drain **out, char **errmsg);

/* Region `region` now holds `ready` valid bytes from its start (only ever grows). Any thread. */
void dfs_drain_advance(dfs_drain *d, size_t region, uint64_t ready);

/* The scratch offset below which everything was sent (or skipped) and punched. Any thread. */
uint64_t dfs_drain_emitted(dfs_drain *d);

/*
 * Non-zero once the drain failed on its own (the reader went away: DFS_ECANCELED; a read or
 * write error: DFS_EIO): the fetchers should stop. Any thread.
 */
int dfs_drain_failed(dfs_drain *d);

/*
 * Let the last piece go when ok (every region must have been advanced to its full length), after
 * comparing the hash with expect_sha256 (when hashing; NULL skips the comparison); or drop it when
 * !ok. Waits for the thread and frees the drain. Returns 0, DFS_EDATALOSS (hash mismatch: the
 * last piece was not sent), or the drain's own failure, with *errmsg.
 */
int dfs_drain_finish(dfs_drain *d, bool ok, const uint8_t *expect_sha256, char **errmsg);

/* Stop at once (the last piece is not sent) and free. Accepts NULL. */
void dfs_drain_cancel(dfs_drain *d);

#endif /* DFS_CLIENT_DRAIN_H */
