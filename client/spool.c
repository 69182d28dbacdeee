/* Standard input spooled to an unlinked temporary file. */
#include "client/spool.h"

#include "common/err.h"
#include "common/units.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define CHUNK        (1u << 20)
#define RESERVE_MAX  (64ull << 20)
#define RESERVE_PART 20 /* 1/20: 5% */

/* An anonymous file in dir: O_TMPFILE, or a name unlinked at once. -1 with errno on failure. */
static int temp_file(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd;
    size_t n = strlen(dir) + 32;
    char *path = malloc(n);
    if (path == NULL) {
        errno = ENOMEM;
        return -1;
    }
    snprintf(path, n, "%s/dfs-stdin-XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0)
        unlink(path);
    free(path);
    return fd;
}

/* Bytes dfs may still write into fd's file system. */
static int room(int fd, uint64_t reserve, uint64_t *out, uint64_t *avail, char **errmsg)
{
    struct statvfs vfs;
    if (fstatvfs(fd, &vfs) != 0)
        return dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot see the free space");
    uint64_t total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
    *avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    if (reserve == 0)
        reserve = total / RESERVE_PART < RESERVE_MAX ? total / RESERVE_PART : RESERVE_MAX;
    *out = *avail > reserve ? *avail - reserve : 0;
    return DFS_OK;
}

static int write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

int dfs_spool(int in, const char *dir, uint64_t reserve, volatile sig_atomic_t *interrupted,
              int *out_fd, uint64_t *size, char **errmsg)
{
    struct stat st;
    if (fstat(in, &st) != 0)
        return dfs_seterr_errno(errmsg, DFS_EIO, errno, "standard input");
    if (S_ISREG(st.st_mode) && lseek(in, 0, SEEK_CUR) == 0) {
        int fd = fcntl(in, F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
            return dfs_seterr_errno(errmsg, DFS_EIO, errno, "standard input");
        *out_fd = fd;
        *size = (uint64_t)st.st_size;
        return DFS_OK;
    }
    int fd = temp_file(dir);
    if (fd < 0)
        return dfs_seterr_errno(errmsg, DFS_EIO, errno,
                                "cannot make a temporary file in %s for standard input (set "
                                "TMPDIR)",
                                dir);
    char *buf = malloc(CHUNK);
    uint64_t total = 0;
    int rc = buf != NULL ? DFS_OK : dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    while (rc == DFS_OK) {
        if (interrupted != NULL && *interrupted) {
            rc = dfs_seterr(errmsg, DFS_ECANCELED, "interrupted");
            break;
        }
        ssize_t r = read(in, buf, CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot read standard input");
            break;
        }
        if (r == 0)
            break;
        uint64_t left = 0, avail = 0;
        rc = room(fd, reserve, &left, &avail, errmsg);
        if (rc == DFS_OK && (uint64_t)r > left) {
            char a[32];
            dfs_format_size(avail, a, sizeof a);
            rc = dfs_seterr(errmsg, DFS_ENOSPC,
                            "standard input is larger than the space free in %s (%s): put it "
                            "from a file, or set TMPDIR to a larger file system",
                            dir, a);
        }
        if (rc == DFS_OK && write_all(fd, buf, (size_t)r) != 0)
            rc = dfs_seterr_errno(errmsg, errno == ENOSPC ? DFS_ENOSPC : DFS_EIO, errno,
                                  "cannot keep standard input in %s (set TMPDIR)", dir);
        total += (uint64_t)r;
    }
    free(buf);
    if (rc != DFS_OK) {
        close(fd);
        return rc;
    }
    *out_fd = fd;
    *size = total;
    return DFS_OK;
}
