/* Exclusive advisory locks on open files and directories. */
#include "common/exlock.h"

#include "common/err.h"

#include <errno.h>
#include <stddef.h>
#include <sys/file.h>

int dfs_exlock(int fd, int (*flock_fn)(int fd, int operation), const char *what, const char *path,
               char **errmsg)
{
    if (flock_fn == NULL)
        flock_fn = flock;
    int rc;
    while ((rc = flock_fn(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
    }
    if (rc == 0)
        return DFS_OK;
    if (errno == EWOULDBLOCK)
        return dfs_seterr(errmsg, DFS_EPRECOND, "%s %s is in use by another process", what, path);
    return dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot lock %s %s", what, path);
}
