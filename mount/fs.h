/* The file system dfs-mount serves: FUSE 3 operations (high-level, path-based API) over the
   client library (client/dfs_client.h). */
#ifndef DFS_MOUNT_FS_H
#define DFS_MOUNT_FS_H

#define FUSE_USE_VERSION 31
#include <fuse3/fuse.h>

#include "client/dfs_client.h"
#include "mount/spool.h"

#include <stdint.h>
#include <sys/types.h>

typedef struct dfs_mount_fs dfs_mount_fs;

struct dfs_mount_fs_config {
    /* Kernel caches, seconds: attributes, names, names that do not exist. */
    double attr_timeout, entry_timeout, negative_timeout;
    /* Reads: the smallest and largest fetch of the read-ahead window. */
    uint64_t read_min, read_max;
    /* Files per ListFiles page of a readdir (0: the service's default, 1000). */
    uint32_t list_page;
    /* Scratch files of range reads (NULL: $TMPDIR or /tmp). */
    const char *scratch_dir;
    /* Owner of files with none set (the mounting user). */
    uid_t uid;
    gid_t gid;
};

/*
 * The file system over client c and spool sp (both borrowed; they must outlive it). cfg is
 * copied (scratch_dir is borrowed). Returns 0 and *out (dfs_mount_fs_destroy) or DFS_ENOMEM.
 */
int dfs_mount_fs_create(dfs_client *c, dfs_mount_spool *sp, const struct dfs_mount_fs_config *cfg,
                        dfs_mount_fs **out);

/* Accepts NULL. After the FUSE loop ended. */
void dfs_mount_fs_destroy(dfs_mount_fs *fs);

/* The operations, to pass to fuse_new with fs as user data. */
const struct fuse_operations *dfs_mount_fs_operations(void);

#endif /* DFS_MOUNT_FS_H */
