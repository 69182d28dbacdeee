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
 * Memory: spool files may live in memory (memfd) while they hold at most `limit` bytes together
 * (0, the default: never). A file written there is never written to a disk only to be read back
 * by the put that stores it, which on the nodes' own disk costs as much as a copy more. Set once,
 * before any file is made.
 */
void dfs_mount_spool_set_memory(dfs_mount_spool *sp, uint64_t limit);

/* A new empty spool file in memory (a memfd): *fd, which the caller closes. DFS_ENOSPC when the
   spool has no memory (limit 0); else 0 or a DFS_ code with *errmsg. */
int dfs_mount_spool_mem_file(dfs_mount_spool *sp, int *fd, char **errmsg);

/* Take `bytes` more of the memory for a memory file: false when that passes the limit (nothing is
   taken then). Thread-safe. */
bool dfs_mount_spool_mem_take(dfs_mount_spool *sp, uint64_t bytes);

/* Give back memory taken before. Thread-safe. */
void dfs_mount_spool_mem_give(dfs_mount_spool *sp, uint64_t bytes);

/* Memory taken now. */
uint64_t dfs_mount_spool_mem_used(dfs_mount_spool *sp);

/*
 * Move a memory file to disk: a new spool file (dfs_mount_spool_file) holding bytes [0, size) of
 * mem_fd, in *fd. mem_fd is left open (the caller closes it and gives its memory back). Returns 0
 * or a DFS_ code with *errmsg (nothing is made then).
 */
int dfs_mount_spool_spill(dfs_mount_spool *sp, int mem_fd, uint64_t size, int *fd, char **errmsg);

#endif /* DFS_MOUNT_SPOOL_H */
