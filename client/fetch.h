/* What dfs get's engines share: the output file, the loop, the links, and what they report back. */
#ifndef DFS_CLIENT_FETCH_H
#define DFS_CLIENT_FETCH_H

#include "client/drain.h"
#include "client/filehash.h"
#include "client/links.h"
#include "common/throttle.h"
#include "dfs/v1/types.pb-c.h"
#include "services/rpc/loop.h"

#include <signal.h>
#include <stdint.h>

/*
 * An engine fills fd (already sized to the file) with the file's bytes, checks every block it
 * receives and every data fragment's checksum, and starts a dfs_filehash that follows what it
 * writes; dfs_get finishes the hash and compares it with the catalog. The engine runs the loop
 * itself until it is done, polling `interrupted`.
 *
 * Streaming (out_fd >= 0): the engine fetches only what bytes [from, to) of the file need, and
 * starts a dfs_drain (instead of the hash) that sends them to out_fd in order; fd is then a
 * scratch file the drain empties behind itself, and the engine stays at most a bounded distance
 * ahead of the drain. The caller finishes the drain.
 */
struct dfs_fetch_ctx {
    /* In (borrowed). */
    dfs_rpc_loop *loop;
    dfs_links *links;
    int fd;
    const Dfs__V1__FileInfo *file;
    int64_t stall_timeout_ms; /* > 0 */
    volatile sig_atomic_t *interrupted;
    dfs_bucket *global; /* the whole transfer's bandwidth (links have theirs) */
    void (*progress)(void *arg, uint64_t done, uint64_t total); /* may be NULL */
    void *progress_arg;
    int out_fd;        /* streaming: where [from, to) goes; -1 for a get to fd itself */
    uint64_t from, to; /* streaming only */
    /* A copy found damaged (damage: a dfs.v1.Damage number; why: what was seen, borrowed for the
       call), for the caller to report. May be NULL. */
    void (*damaged)(void *arg, const Dfs__V1__Replica *rep, int damage, const char *why);
    void *damaged_arg;
    /* Out. */
    dfs_filehash *hash; /* started by the engine (NULL if it failed before); the caller ends it */
    dfs_drain *drain;   /* streaming: likewise */
    uint32_t failovers; /* reads that went to another copy after a failure */
    uint64_t rebuilt;   /* erasure code: data cells rebuilt from parity */
};

/*
 * Fetch an erasure-coded file (redundancy ERASURE, cell_size > 0 unless the file is empty).
 * Returns 0, or a DFS_ code with a one-line reason in *errmsg (DFS_EDATALOSS when more fragments
 * are unreadable than the code can rebuild, DFS_ECANCELED when interrupted).
 */
int dfs_ec_fetch(struct dfs_fetch_ctx *ctx, char **errmsg);

#endif /* DFS_CLIENT_FETCH_H */
