/* dfs get: fetch a file's fragments in parallel, check them, and assemble the file. */
#ifndef DFS_CLI_GET_H
#define DFS_CLI_GET_H

#include "cli/filehash.h"
#include "cli/meta.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

struct dfs_get_opts {
    /* Cancel and fail over a stream that makes no progress for this long; 0 means 60 s. */
    int64_t stall_timeout_ms;
    /* Polled while the transfer runs; once non-zero the get stops with DFS_ECANCELED. */
    volatile sig_atomic_t *interrupted;
    /* Bandwidth: bytes per second on each client<->node link, and for the whole transfer; 0 = no
       limit. A download is paced by how fast it takes data in. */
    uint64_t link_rate, max_rate;
    /* Range requests in flight at once; 0 = 12. */
    unsigned parallel;
    /* Continue the partial download a failed or interrupted get left in "<local>.dfs-part" (with
       its state in "<local>.dfs-part.state"), when it is of the same file; otherwise start over.
       Replicated files only (an erasure-coded file starts over). */
    bool resume;
    /* Called as data arrives, with the file bytes written so far; may be NULL. */
    void (*progress)(void *arg, uint64_t done, uint64_t total);
    void *progress_arg;
};

struct dfs_get_result {
    uint64_t size;
    uint8_t sha256[DFS_SHA256_BYTES];
    uint32_t fragments;
    uint32_t failovers; /* times a range continued from another copy after a failure */
    uint64_t rebuilt;   /* erasure code: data cells rebuilt from parity */
    uint64_t resumed;   /* bytes a --resume found already downloaded */
    double seconds;
};

/*
 * Fetch `remote` into `local` ("-" for standard output). The file comes in 4 MiB ranges, in file
 * order, a window of them in flight at once, spread over every copy of every fragment. Every 64 KiB
 * block is checked against its CRC32C as it arrives, every fragment against its checksum, and the
 * whole file against its SHA-256 (hashed as the data arrives). When a copy fails (node down,
 * corrupt block), the range continues from another copy at the byte where it stopped, and that copy
 * is not used again.
 *
 * The data goes to "<local>.dfs-part" and is renamed to `local` only once the SHA-256 matched, so
 * `local` is never left half-written. When the get is interrupted or the network fails, the part
 * file stays with a state file that --resume continues from (the error message says so); after
 * any other failure both are removed.
 *
 * Returns 0 and fills *out, or a DFS_ code with a one-line reason in *errmsg.
 */
int dfs_get(dfs_meta *meta, const char *remote, const char *local, const struct dfs_get_opts *opts,
            struct dfs_get_result *out, char **errmsg);

#endif /* DFS_CLI_GET_H */
