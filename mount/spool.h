/* The write spool of dfs-mount: unlinked local files that hold what is written to open files
   until it becomes a new version in the cluster, within a bound on their total size. */
#ifndef DFS_MOUNT_SPOOL_H
#define DFS_MOUNT_SPOOL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct dfs_mount_spool dfs_mount_spool;

/*
 * A spool in `dir` (borrowed for the call; copied) that lets its files hold at most `limit` bytes
 * together, and leaves `reserve` bytes free on dir's file system. Returns 0 and *out
 * (dfs_mount_spool_destroy), or DFS_EINVAL (no such directory, limit 0) with *errmsg.
 */
int dfs_mount_spool_create(const char *dir, uint64_t limit, uint64_t reserve, dfs_mount_spool **out,
                           char **errmsg);

/* Accepts NULL. Every file should have been closed and its bytes released. */
void dfs_mount_spool_destroy(dfs_mount_spool *sp);

/* A new empty spool file, already unlinked (nothing is left behind): *fd, which the caller
   closes. Returns 0 or a DFS_ code with *errmsg. */
int dfs_mount_spool_file(dfs_mount_spool *sp, int *fd, char **errmsg);

/*
 * Account for `bytes` more bytes in the spool before writing them: DFS_ENOSPC (with *errmsg)
 * when that passes the limit or the file system's free space minus the reserve; nothing is
 * accounted then. Thread-safe.
 */
int dfs_mount_spool_reserve(dfs_mount_spool *sp, uint64_t bytes, char **errmsg);

/* Give back bytes reserved before (a file truncated or closed). Thread-safe. */
void dfs_mount_spool_release(dfs_mount_spool *sp, uint64_t bytes);

/* Bytes reserved now. */
uint64_t dfs_mount_spool_used(dfs_mount_spool *sp);

/*
 * Memory: a file being written may live in memory while the files in memory hold at most `limit`
 * bytes together (0, the default: never). A file written there is never written to a disk only to
 * be read back by the put that stores it, which on the nodes' own disk costs as much as a copy
 * more; and its bytes go to the put as they are (a `mem` source), with no copy back out of a
 * file. Set once, before any file is made.
 */
void dfs_mount_spool_set_memory(dfs_mount_spool *sp, uint64_t limit);

/*
 * A file's bytes in memory: one private anonymous mapping of the spool's memory limit (address
 * space only: pages come as they are first written). Closed
 * ones are kept for the next files, up to the memory limit of pages between them, after
 * madvise(MADV_FREE): the kernel takes those pages back whenever it needs memory, and until then a
 * file written there reuses them. On a virtual machine whose host takes freed memory back, a new
 * page costs several times its copy (1 to 1.5 CPU-s per GiB against 0.07 for a page kept:
 * benchmarks/README.md, "## mount").
 *
 * Not thread-safe: the caller guards each (dfs-mount: the ofile's lock). Bytes past `size` (what
 * was written or truncated to) are never read as they are: growing the size makes them zeros.
 */
typedef struct dfs_mount_mem dfs_mount_mem;

/* A memory file of size 0: *out (dfs_mount_spool_mem_close). DFS_ENOSPC when the spool has no
   memory (limit 0); else 0 or a DFS_ code with *errmsg. Thread-safe. */
int dfs_mount_spool_mem_open(dfs_mount_spool *sp, dfs_mount_mem **out, char **errmsg);

/* Give a memory file back (kept for the next one, or unmapped). Accepts NULL. Thread-safe. */
void dfs_mount_spool_mem_close(dfs_mount_spool *sp, dfs_mount_mem *m);

/* Its bytes: [0, dfs_mount_mem_size) is the file; the mapping holds dfs_mount_mem_cap bytes. */
uint8_t *dfs_mount_mem_data(const dfs_mount_mem *m);
uint64_t dfs_mount_mem_size(const dfs_mount_mem *m);
uint64_t dfs_mount_mem_cap(const dfs_mount_mem *m);

/*
 * Before writing len bytes at off (off + len <= cap): makes a hole between the size and off read
 * as zeros, and returns where the bytes go. Then dfs_mount_mem_wrote with what was written.
 */
uint8_t *dfs_mount_mem_write_at(dfs_mount_mem *m, uint64_t off, uint64_t len);

/* After dfs_mount_mem_write_at: `done` bytes were written at off (the size grows to cover them). */
void dfs_mount_mem_wrote(dfs_mount_mem *m, uint64_t off, uint64_t done);

/* Set the size (<= cap): growing reads as zeros; shrinking lets the pages past it go (MADV_FREE). */
void dfs_mount_mem_resize(dfs_mount_mem *m, uint64_t size);

/* Memory taken now. */
uint64_t dfs_mount_spool_mem_used(dfs_mount_spool *sp);

/* Take `bytes` more of the memory for a memory file: false when that passes the limit (nothing is
   taken then). Thread-safe. */
bool dfs_mount_spool_mem_take(dfs_mount_spool *sp, uint64_t bytes);

/* Give back memory taken before. Thread-safe. */
void dfs_mount_spool_mem_give(dfs_mount_spool *sp, uint64_t bytes);

/* Memory files kept for reuse now, and the pages they hold (for tests). */
void dfs_mount_spool_mem_kept(dfs_mount_spool *sp, unsigned *files, uint64_t *bytes);

/*
 * Move a file in memory to disk: a new spool file (dfs_mount_spool_file) holding `size` bytes
 * from `data`, in *fd. Returns 0 or a DFS_ code with *errmsg (nothing is made then).
 */
int dfs_mount_spool_spill(dfs_mount_spool *sp, const uint8_t *data, uint64_t size, int *fd,
                          char **errmsg);

#endif /* DFS_MOUNT_SPOOL_H */
