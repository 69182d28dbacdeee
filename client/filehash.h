/*
 * SHA-256 of a file computed by a background thread, so hashing overlaps the transfer. A file of at
 * most DFS_FILEHASH_INLINE_MAX bytes starts no thread: dfs_filehash_finish hashes it on the
 * caller's thread (the bytes are read then, so they must stay in place until finish).
 */
#ifndef DFS_CLIENT_FILEHASH_H
#define DFS_CLIENT_FILEHASH_H

#include <stddef.h>
#include <stdint.h>

/* As in client/dfs_client.h (an identical definition). */
#define DFS_SHA256_BYTES 32

typedef struct dfs_filehash dfs_filehash;

/* Largest size hashed at finish rather than by a thread (one 64 KiB block, as DFS_SMALL_FILE). */
#define DFS_FILEHASH_INLINE_MAX (64u << 10)

/* How many hashing threads this process has started (for tests). */
unsigned long dfs_filehash_threads_started(void);

/*
 * Start hashing bytes [0, size) of the open file fd (borrowed; it must stay open until
 * dfs_filehash_finish). Reads with pread in 256 KiB pieces. Returns 0 and *out, or DFS_ENOMEM.
 */
int dfs_filehash_start(int fd, uint64_t size, dfs_filehash **out, char **errmsg);

/* The same over bytes in memory (borrowed until dfs_filehash_finish or _cancel). */
int dfs_filehash_start_mem(const uint8_t *mem, uint64_t size, dfs_filehash **out, char **errmsg);

/*
 * Follow a file while it is being written: bytes [0, size) are split into regions starting at
 * starts[0] = 0 < ... (copied), written front to back within each region, all regions at once. The
 * hasher reads only what dfs_filehash_advance says is ready, so hashing trails the writing instead
 * of following it. Returns 0 and *out, or DFS_ENOMEM.
 */
int dfs_filehash_start_follow(int fd, uint64_t size, const uint64_t *starts, size_t nregions,
                              dfs_filehash **out, char **errmsg);

/* Region `region` now holds `ready` valid bytes from its start. Any thread. */
void dfs_filehash_advance(dfs_filehash *h, size_t region, uint64_t ready);

/*
 * Bytes already hashed may have been rewritten (a region started over): finish will hash the whole
 * file again. Any thread.
 */
void dfs_filehash_invalidate(dfs_filehash *h);

/*
 * Wait for the hash, write it to out, and free the hasher. Returns 0, or DFS_EIO when the file
 * could not be read or was shorter than `size` (with *errmsg). When following, every region must
 * have been advanced to its full length first.
 */
int dfs_filehash_finish(dfs_filehash *h, uint8_t out[DFS_SHA256_BYTES], char **errmsg);

/* Stop early and free (the result is dropped). Accepts NULL. */
void dfs_filehash_cancel(dfs_filehash *h);

/* Lower-case hex of a digest into hex[65]. */
void dfs_sha256_hex(const uint8_t digest[DFS_SHA256_BYTES], char hex[2 * DFS_SHA256_BYTES + 1]);

#endif /* DFS_CLIENT_FILEHASH_H */
