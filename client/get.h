/* dfs get: fetch a file's fragments in parallel, check them, and assemble the file. */
#ifndef DFS_CLIENT_GET_H
#define DFS_CLIENT_GET_H

#include "client/filehash.h"
#include "client/meta.h"
#include "dfs/v1/types.pb-c.h"

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
    /* dfs_get_fd only: how links to the storage nodes are secured (borrowed; NULL: plaintext to
       loopback only). dfs_get uses the metadata connection's (dfs_meta_security). */
    const struct dfs_rpc_link_security *security;
    /* dfs_get_fd only: the metadata service (borrowed; NULL: none), to fetch the layout again
       when a fragment runs out of copies (the catalog moved them meanwhile) and to report the
       damaged copies the get met. dfs_get uses its own. */
    dfs_meta *meta;
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
 * order, a window of them in flight at once, spread over every copy of every fragment; with a
 * per-link rate (link_rate) every link instead pulls ranges of the fragments it holds whenever it
 * may send, so that all of them are busy from start to end (client/get.c). Every 64 KiB block is
 * checked against its CRC32C as it arrives, every copy's checksum (the node sends it first)
 * against the catalog's before any of its bytes are used, every fragment against its checksum,
 * and the whole file against its SHA-256 (hashed as the data arrives). When a copy fails (node
 * down, corrupt block, another checksum, gone), the range continues from another copy at the byte
 * where it stopped, and that copy is not used again; when no copy of a fragment is left, the
 * layout is fetched again (a rebalance or a repair may have moved them) and the new copies are
 * tried. A fragment whose blocks check but do not make its checksum is read again whole from one
 * copy at a time. Copies found damaged (corrupt, another checksum, missing) are reported to the
 * metadata service (ReportDamage, with their read tickets) before dfs_get returns, whether it
 * succeeded or not; the service has their nodes check them and repairs what they confirm.
 *
 * The data goes to "<local>.dfs-part" and is renamed to `local` only once the SHA-256 matched, so
 * `local` is never left half-written. When the get is interrupted or the network fails, the part
 * file stays with a state file that --resume continues from (the error message says so); after
 * any other failure both are removed.
 *
 * A `local` that exists and is not a regular file is never renamed over: a character or block
 * device (/dev/null) or a FIFO is opened for writing as it is (no create, no truncate), a Unix
 * stream socket is connected to, and the file is streamed to it in order as dfs_get_fd does
 * (the last piece held back until every check passed). A directory is DFS_EINVAL, and so is
 * opts->resume with such a `local` or with "-".
 *
 * Returns 0 and fills *out, or a DFS_ code with a one-line reason in *errmsg.
 */
int dfs_get(dfs_meta *meta, const char *remote, const char *local, const struct dfs_get_opts *opts,
            struct dfs_get_result *out, char **errmsg);

/*
 * The layout of `remote` (GetFile, retried while the service restarts): *out is the caller's (free
 * with protobuf_c_message_free_unpacked), with a 32-byte SHA-256. Returns 0, or a DFS_ code with
 * *errmsg (DFS_ENOTFOUND: no such file).
 */
int dfs_get_layout(dfs_meta *meta, const char *remote, Dfs__V1__FileInfo **out, char **errmsg);

/*
 * Stream bytes [offset, offset + length) of a file to out_fd (a pipe or a socket), in order, as
 * they arrive: the same engine as dfs_get (ranges in file order over every copy, erasure rebuilds,
 * failover at the byte where a copy stopped), with the data going through a scratch file in
 * scratch_dir (NULL: $TMPDIR or /tmp) that holds only the window between what was sent and what
 * is being fetched: about 100 MiB at most whatever the file's size; memory stays bounded too. A
 * slow reader holds the fetchers back.
 *
 * Checks: every 64 KiB block is checked against its CRC32C before any of its bytes are sent (a
 * partial read fetches the whole blocks around the range); every fragment fetched whole is
 * checked against its catalog checksum; the whole file's SHA-256 only when the whole file is read
 * (offset 0, length = size) -- a part of a file has no digest in the catalog. The last piece of
 * output (up to 1 MiB) is held back until those checks pass, so a reader that got every byte got
 * checked bytes, and a failure shows as a short read.
 *
 * file is borrowed (from dfs_get_layout). out_fd is borrowed and left open; a write that fails
 * with EPIPE (the reader closed its end; SIGPIPE must be ignored) stops the get with
 * DFS_ECANCELED. opts->resume is ignored. Returns 0 and fills *out (size = length), DFS_ERANGE
 * when the range is outside the file, or a DFS_ code with *errmsg.
 */
int dfs_get_fd(const Dfs__V1__FileInfo *file, uint64_t offset, uint64_t length, int out_fd,
               const char *scratch_dir, const struct dfs_get_opts *opts, struct dfs_get_result *out,
               char **errmsg);

#endif /* DFS_CLIENT_GET_H */
