/* What every dfs daemon's main() shares. */
#include "services/daemon/daemon.h"

#include "common/addr.h"
#include "common/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void dfs_daemon_block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int dfs_daemon_wait_signal(const sigset_t *set)
{
    int sig = 0;
    while (sigwait(set, &sig) != 0) {
    }
    return sig;
}

int dfs_daemon_write_file(const char *path, const char *content, char **errmsg)
{
    return dfs_daemon_write_file_mode(path, content, 0644, errmsg);
}

/* Write all of content to fd. Returns 0 or errno. */
static int write_all(int fd, const char *content)
{
    size_t len = strlen(content), off = 0;
    while (off < len) {
        ssize_t w = write(fd, content + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        off += (size_t)w;
    }
    return 0;
}

int dfs_daemon_write_file_mode(const char *path, const char *content, mode_t mode, char **errmsg)
{
    /* Renaming over a FIFO or a device would replace it with a regular file: write to it. */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode))
            return dfs_seterr(errmsg, DFS_EINVAL, "cannot write %s: it is a directory", path);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot write %s", path);
        int e = write_all(fd, content);
        close(fd);
        return e == 0 ? DFS_OK : dfs_seterr_errno(errmsg, DFS_EIO, e, "cannot write %s", path);
    }
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    if (tmp == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    snprintf(tmp, n + 16, "%s.tmp%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return dfs_seterr_errno(errmsg, DFS_EIO, e, "cannot write %s", path);
    }
    int rc = DFS_OK;
    int e = write_all(fd, content);
    if (e != 0)
        rc = dfs_seterr_errno(errmsg, DFS_EIO, e, "cannot write %s", path);
    if (rc == DFS_OK && fsync(fd) != 0)
        rc = dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot fsync %s", path);
    close(fd);
    if (rc == DFS_OK && rename(tmp, path) != 0)
        rc = dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot rename to %s", path);
    if (rc != DFS_OK)
        unlink(tmp);
    free(tmp);
    /* The rename itself must survive a crash too (a secret that vanished would be made again,
       and a node could lose the token it enrolled with). */
    if (rc == DFS_OK) {
        const char *slash = strrchr(path, '/');
        char *dir =
            slash == NULL ? strdup(".") : strndup(path, slash == path ? 1 : (size_t)(slash - path));
        int dfd = dir != NULL ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (dfd < 0 || fsync(dfd) != 0)
            rc = dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot fsync the directory of %s", path);
        if (dfd >= 0)
            close(dfd);
        free(dir);
    }
    return rc;
}

int dfs_daemon_advertise(const char *listen, int port, char *out, size_t cap, char **errmsg)
{
    long hl = dfs_addr_host_len(listen);
    if (hl < 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "listen address '%s' has no port",
                          dfs_quote(listen, &(struct dfs_quote){{0}}));
    size_t hostlen = (size_t)hl;
    const char *host = listen;
    if ((hostlen == 0) || (hostlen == 1 && host[0] == '*') ||
        (hostlen == 7 && strncmp(host, "0.0.0.0", 7) == 0) ||
        (hostlen == 4 && strncmp(host, "[::]", 4) == 0))
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "listen address '%s' is a wildcard: give --advertise HOST:PORT",
                          dfs_quote(listen, &(struct dfs_quote){{0}}));
    if (dfs_addr_with_port(listen, port, out, cap) != DFS_OK)
        return dfs_seterr(errmsg, DFS_EINVAL, "listen address '%s' is too long",
                          dfs_quote(listen, &(struct dfs_quote){{0}}));
    return DFS_OK;
}
