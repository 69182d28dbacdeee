/* The bounded write spool of dfs-mount (spool.h). */
#include "mount/spool.h"

#include "common/err.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

struct dfs_mount_spool {
    pthread_mutex_t mu;
    char *dir;
    uint64_t limit, reserve;
    uint64_t used; /* under mu */
};

int dfs_mount_spool_create(const char *dir, uint64_t limit, uint64_t reserve, dfs_mount_spool **out,
                           char **errmsg)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return dfs_seterr(errmsg, DFS_EINVAL, "the spool directory %s is not a directory", dir);
    if (limit == 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "the spool size must be more than 0");
    dfs_mount_spool *sp = calloc(1, sizeof *sp);
    if (sp == NULL || (sp->dir = strdup(dir)) == NULL) {
        free(sp);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&sp->mu, NULL);
    sp->limit = limit;
    sp->reserve = reserve;
    *out = sp;
    return DFS_OK;
}

void dfs_mount_spool_destroy(dfs_mount_spool *sp)
{
    if (sp == NULL)
        return;
    pthread_mutex_destroy(&sp->mu);
    free(sp->dir);
    free(sp);
}

int dfs_mount_spool_file(dfs_mount_spool *sp, int *fd, char **errmsg)
{
    int f = open(sp->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (f < 0) {
        char *path = NULL;
        if (asprintf(&path, "%s/dfs-mount-XXXXXX", sp->dir) < 0)
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        f = mkostemp(path, O_CLOEXEC);
        if (f >= 0)
            unlink(path);
        free(path);
    }
    if (f < 0)
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno,
                                "cannot create a spool file in %s", sp->dir);
    *fd = f;
    return DFS_OK;
}

int dfs_mount_spool_reserve(dfs_mount_spool *sp, uint64_t bytes, char **errmsg)
{
    if (bytes == 0)
        return DFS_OK;
    struct statvfs vfs;
    uint64_t avail = UINT64_MAX;
    if (statvfs(sp->dir, &vfs) == 0) {
        uint64_t free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        avail = free_bytes > sp->reserve ? free_bytes - sp->reserve : 0;
    }
    pthread_mutex_lock(&sp->mu);
    int rc = DFS_OK;
    if (bytes > sp->limit - sp->used)
        rc = dfs_seterr(errmsg, DFS_ENOSPC,
                        "the write spool is full (%llu of %llu bytes held by open files)",
                        (unsigned long long)sp->used, (unsigned long long)sp->limit);
    else if (bytes > avail)
        rc = dfs_seterr(errmsg, DFS_ENOSPC, "no room in the spool directory %s (%llu bytes free)",
                        sp->dir, (unsigned long long)avail);
    else
        sp->used += bytes;
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

void dfs_mount_spool_release(dfs_mount_spool *sp, uint64_t bytes)
{
    pthread_mutex_lock(&sp->mu);
    sp->used = bytes > sp->used ? 0 : sp->used - bytes;
    pthread_mutex_unlock(&sp->mu);
}

uint64_t dfs_mount_spool_used(dfs_mount_spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    uint64_t u = sp->used;
    pthread_mutex_unlock(&sp->mu);
    return u;
}
