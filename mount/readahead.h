/* The read side of an open file in dfs-mount: a window of the file held in memory, refilled by
   byte-range fetches that grow while reads are sequential (read-ahead) and stay small for random
   reads, so a small read never downloads the whole file. */
#ifndef DFS_MOUNT_READAHEAD_H
#define DFS_MOUNT_READAHEAD_H

#include <stddef.h>
#include <stdint.h>

typedef struct dfs_readahead dfs_readahead;

/*
 * Fetch bytes [off, off + len) of the file into buf (len bytes, all of them, checked). Returns 0
 * or a DFS_ code with a malloc'd *errmsg (caller frees). Called with the readahead's lock held, so
 * never twice at once for one dfs_readahead.
 */
typedef int dfs_readahead_fetch_fn(void *arg, uint64_t off, uint64_t len, uint8_t *buf,
                                   char **errmsg);

/*
 * A reader of a file of file_size bytes. A fetch covers at least min_window bytes (from the
 * 64 KiB block the read starts in: the engine checks whole blocks anyway); each read that
 * continues where the previous one ended doubles the window up to max_window, any other read
 * resets it to min_window. Once sequential reads reach max_window, the next window is fetched by a
 * thread of the reader's own while the current one is read (never two fetches at once: fetch
 * need not be thread-safe; the background one runs without the reader's lock). fetch and arg are
 * borrowed for the reader's life. Returns 0 and *out
 * (dfs_readahead_destroy), DFS_EINVAL for windows that make no sense, DFS_ENOMEM.
 */
int dfs_readahead_create(uint64_t file_size, uint64_t min_window, uint64_t max_window,
                         dfs_readahead_fetch_fn *fetch, void *arg, dfs_readahead **out);

/* Accepts NULL. Waits for a background fetch in flight. */
void dfs_readahead_destroy(dfs_readahead *ra);

/*
 * Copy up to size bytes from offset off into dst: *got is size, or less at the end of the file
 * (0 at or past it). Thread-safe (reads of one reader are served one at a time). Returns 0, or the
 * fetch's DFS_ code and *errmsg; the window is then empty and the next read fetches again.
 */
int dfs_readahead_read(dfs_readahead *ra, uint64_t off, size_t size, uint8_t *dst, size_t *got,
                       char **errmsg);

/* Fetches made so far and bytes they brought (tests, logs), once a background fetch in flight
   is done. */
void dfs_readahead_counts(dfs_readahead *ra, uint64_t *fetches, uint64_t *bytes);

#endif /* DFS_MOUNT_READAHEAD_H */
