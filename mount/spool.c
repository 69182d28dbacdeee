/* The bounded write spool of dfs-mount (spool.h). */
#include "mount/spool.h"

#include "common/err.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

struct dfs_mount_spool {
    pthread_mutex_t mu;
    char *dir;
    uint64_t limit, reserve;
    uint64_t used;                /* under mu */
    uint64_t mem_limit, mem_used; /* memory files: set once; under mu */
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

void dfs_mount_spool_set_memory(dfs_mount_spool *sp, uint64_t limit)
{
    sp->mem_limit = limit;
}

int dfs_mount_spool_mem_file(dfs_mount_spool *sp, int *fd, char **errmsg)
{
    if (sp->mem_limit == 0)
        return dfs_seterr(errmsg, DFS_ENOSPC, "the spool keeps no files in memory");
    int f = memfd_create("dfs-mount-spool", MFD_CLOEXEC);
    if (f < 0)
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno,
                                "cannot create a spool file in memory");
    *fd = f;
    return DFS_OK;
}

bool dfs_mount_spool_mem_take(dfs_mount_spool *sp, uint64_t bytes)
{
    pthread_mutex_lock(&sp->mu);
    bool ok = bytes <= sp->mem_limit - sp->mem_used;
    if (ok)
        sp->mem_used += bytes;
    pthread_mutex_unlock(&sp->mu);
    return ok;
}

void dfs_mount_spool_mem_give(dfs_mount_spool *sp, uint64_t bytes)
{
    pthread_mutex_lock(&sp->mu);
    sp->mem_used = bytes > sp->mem_used ? 0 : sp->mem_used - bytes;
    pthread_mutex_unlock(&sp->mu);
}

uint64_t dfs_mount_spool_mem_used(dfs_mount_spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    uint64_t u = sp->mem_used;
    pthread_mutex_unlock(&sp->mu);
    return u;
}

int dfs_mount_spool_spill(dfs_mount_spool *sp, int mem_fd, uint64_t size, int *fd, char **errmsg)
{
    int f = -1;
    int rc = dfs_mount_spool_file(sp, &f, errmsg);
    if (rc != DFS_OK)
        return rc;
    /* The file's length first: holes past the last byte written stay holes. */
    if (ftruncate(f, (off_t)size) != 0) {
        rc = dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno,
                              "cannot size a spool file in %s", sp->dir);
        close(f);
        return rc;
    }
    off_t at = 0;
    while ((uint64_t)at < size) {
        if (lseek(f, at, SEEK_SET) != at) {
            rc = dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot seek a spool file");
            break;
        }
        uint64_t left = size - (uint64_t)at;
        ssize_t n = sendfile(f, mem_fd, &at, left > (1u << 30) ? (1u << 30) : (size_t)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno,
                                          "cannot move a spool file to %s", sp->dir)
                       : dfs_seterr(errmsg, DFS_EIO, "a spool file in memory ended early");
            break;
        }
    }
    if (rc != DFS_OK) {
        close(f);
        return rc;
    }
    *fd = f;
    return DFS_OK;
}
