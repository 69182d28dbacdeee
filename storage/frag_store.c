/* The fragment store: fragment files under DATA_DIR/fragments, written via tmp/ and renamed. */
#include "storage/frag_store.h"

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/exlock.h"
#include "common/id.h"
#include "common/log.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BLOCK ((uint64_t)DFS_BLOCK_SIZE)
#define HDR   ((uint64_t)DFS_FRAG_HEADER_SIZE)

/* Striped locks serialising replace and delete of one fragment id (see struct dfs_frag_store). */
#define ID_LOCKS 64

/* "ab/cd/" + 40-digit id + NUL. */
#define FRAG_PATH_MAX (6 + DFS_FRAGMENT_ID_HEX + 1)

/*
 * Locking. The store's fields are set at open and then only read, except:
 *   - fragments, used_bytes: guarded by stats_mu;
 *   - id_locks[i]: held around "look at what is stored under an id, rename over it or unlink it,
 *     adjust the counters" for every id hashing to i, so that replace and delete of one id are
 *     serialised and the counters follow exactly what is on disk. Held only around fstatat +
 *     rename/unlink (and, for a write-once commit that finds the id taken, the read of the
 *     stored header), never across an fsync;
 *   - the ab_ok/cd_ok bitmaps and tmp_seq, live: atomics.
 * Lock order: id_locks[i] before stats_mu; at most one id lock at a time.
 */
struct dfs_frag_store {
    const struct dfs_io_ops *io;
    char *dir;  /* the data dir as given, for messages */
    int dirfd;  /* DATA_DIR, flock'd for the store's lifetime */
    int fragfd; /* DATA_DIR/fragments */
    int tmpfd;  /* DATA_DIR/tmp */
    char node_id[DFS_ID_HEX + 1];
    _Atomic uint64_t tmp_seq; /* names temporary files */
    _Atomic int live;         /* writers + readers open (must be 0 at close) */
    /*
     * Bit ab of ab_ok, bit (ab << 8 | cd) of cd_ok: fragments/ab (fragments/ab/cd) exists and this
     * process has fsynced it and its parent, so commits into it need not. A directory that merely
     * exists may still be only in the page cache (left by a process that died before its fsync), so
     * the bits start clear at every open. Set only after the fsyncs complete; two threads may both
     * do them the first time, which is harmless.
     */
    _Atomic uint64_t ab_ok[256 / 64];
    _Atomic uint64_t cd_ok[65536 / 64];
    pthread_mutex_t id_locks[ID_LOCKS];
    pthread_mutex_t stats_mu;
    uint64_t fragments;  /* guarded by stats_mu */
    uint64_t used_bytes; /* guarded by stats_mu: sum of fragment file lengths */
};

struct dfs_frag_writer {
    dfs_frag_store *store;
    int fd; /* the temporary file, -1 once closed */
    char id[DFS_FRAGMENT_ID_HEX + 1];
    char tmpname[DFS_FRAGMENT_ID_HEX + 24]; /* in tmp/: "<id>.<seq hex>" */
    uint64_t size;                          /* declared data size */
    uint64_t received;                      /* data bytes written so far */
    uint32_t *crcs;                         /* block CRCs received, host order */
    size_t ncrcs, cap;
    bool failed; /* an append failed: only abort (or a failing commit) remains */
};

struct dfs_frag_reader {
    dfs_frag_store *store;
    int fd;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    uint64_t size;
    uint32_t checksum;
    int64_t stored_ms;
    size_t nblocks;
    uint32_t *crcs;         /* the block CRC table, host order */
    unsigned char *scratch; /* 2 blocks for the partial blocks around an unaligned range, lazily */
};

/* ---- the real system calls ---- */

static int posix_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    return openat(dirfd, path, flags, mode);
}

static const struct dfs_io_ops posix_ops = {
    .openat = posix_openat,
    .close = close,
    .pread = pread,
    .preadv = preadv,
    .pwrite = pwrite,
    .pwritev = pwritev,
    .fsync = fsync,
    .fstat = fstat,
    .fstatat = fstatat,
    .fstatvfs = fstatvfs,
    .mkdirat = mkdirat,
    .renameat = renameat,
    .renameat2 = renameat2,
    .unlinkat = unlinkat,
    .flock = flock,
    .fdopendir = fdopendir,
    .readdir = readdir,
    .closedir = closedir,
};

const struct dfs_io_ops *dfs_io_posix(void)
{
    return &posix_ops;
}

/* ---- small helpers ---- */

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* "ab/cd/<id>" for a valid id. */
static void frag_path(const char *id, char out[FRAG_PATH_MAX])
{
    snprintf(out, FRAG_PATH_MAX, "%.2s/%.2s/%s", id, id + 2, id);
}

static unsigned hex2(const char *s)
{
    unsigned v = 0;
    for (int i = 0; i < 2; i++)
        v = v << 4 | (unsigned)(s[i] <= '9' ? s[i] - '0' : s[i] - 'a' + 10);
    return v;
}

static bool is_hex2(const char *name)
{
    return dfs_id_is_hex(name, 2);
}

static pthread_mutex_t *id_lock(dfs_frag_store *s, const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = id; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return &s->id_locks[h % ID_LOCKS];
}

static int bad_id(char **errmsg, const char *id)
{
    if (id == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "missing fragment id");
    return dfs_seterr(errmsg, DFS_EINVAL,
                      "invalid fragment id \"%.48s\" (want %d lower-case hex digits)", id,
                      DFS_FRAGMENT_ID_HEX);
}

/* An I/O failure on a fragment: disk full gets its own clear message and code. */
static int frag_ioerr(char **errmsg, int errnum, const char *id, const char *what)
{
    if (errnum == ENOSPC || errnum == EDQUOT)
        return dfs_seterr_errno(errmsg, DFS_ENOSPC, errnum, "fragment %s: disk full while %s", id,
                                what);
    int code = dfs_err_from_errno(errnum);
    if (code == DFS_EINVAL || code == DFS_ENOTFOUND || code == DFS_EEXIST)
        code = DFS_EIO; /* not the caller's fault: something is wrong with the data dir */
    return dfs_seterr_errno(errmsg, code, errnum, "fragment %s: %s", id, what);
}

/* Report (and log) a corrupt fragment file. */
static int corrupt(char **errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int corrupt(char **errmsg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    dfs_log(DFS_LOG_WARN, "corrupt fragment: %s", s != NULL ? s : "(no memory)");
    dfs_seterr(errmsg, DFS_EDATALOSS, "%s", s != NULL ? s : "corrupt fragment");
    free(s);
    return DFS_EDATALOSS;
}

/* pwrite all of buf at off. Returns 0 or an errno value. */
static int pwrite_full(const struct dfs_io_ops *io, int fd, const void *buf, size_t len,
                       uint64_t off)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = io->pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            return EIO; /* no progress and no reason: do not spin */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/*
 * Read iov[0..cnt) from off, looping over short reads (pread when there is one buffer, preadv
 * otherwise; iov is consumed). Returns 0 or an errno value; *got is the number of bytes read, less
 * than asked only at end of file.
 */
static int preadv_full(const struct dfs_io_ops *io, int fd, struct iovec *iov, int cnt,
                       uint64_t off, size_t *got)
{
    *got = 0;
    while (cnt > 0 && iov[cnt - 1].iov_len == 0)
        cnt--;
    while (cnt > 0 && iov[0].iov_len == 0) {
        iov++;
        cnt--;
    }
    while (cnt > 0) {
        ssize_t n = cnt == 1 ? io->pread(fd, iov[0].iov_base, iov[0].iov_len, (off_t)off)
                             : io->preadv(fd, iov, cnt, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            return 0;
        *got += (size_t)n;
        off += (uint64_t)n;
        size_t left = (size_t)n;
        while (cnt > 0 && left >= iov[0].iov_len) {
            left -= iov[0].iov_len;
            iov++;
            cnt--;
        }
        if (left > 0) {
            iov[0].iov_base = (char *)iov[0].iov_base + left;
            iov[0].iov_len -= left;
        }
        while (cnt > 0 && iov[0].iov_len == 0) {
            iov++;
            cnt--;
        }
    }
    return 0;
}

static int pread_full(const struct dfs_io_ops *io, int fd, void *buf, size_t len, uint64_t off,
                      size_t *got)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    return preadv_full(io, fd, &iov, 1, off, got);
}

/* Open dir (relative to at) and fsync it. Returns 0 or an errno value. */
static int fsync_dir(const struct dfs_io_ops *io, int at, const char *dir)
{
    int fd = io->openat(at, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int e = io->fsync(fd) == 0 ? 0 : errno;
    io->close(fd);
    return e;
}

/* ---- the header ---- */

/*
 * Open fragments/ab/cd/<id> and check its header and length. On success returns 0 with the open fd
 * in *fd_out (caller closes) and the header in *h.
 */
static int open_checked(dfs_frag_store *s, const char *id, int *fd_out, struct dfs_frag_header *h,
                        uint64_t *file_len, char **errmsg)
{
    const struct dfs_io_ops *io = s->io;
    if (!dfs_fragment_id_valid(id))
        return bad_id(errmsg, id);
    char path[FRAG_PATH_MAX];
    frag_path(id, path);
    int fd = io->openat(s->fragfd, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return dfs_seterr(errmsg, DFS_ENOTFOUND, "fragment %s not found", id);
        return frag_ioerr(errmsg, errno, id, "open");
    }
    int rc;
    struct stat st;
    unsigned char raw[DFS_FRAG_HEADER_SIZE];
    size_t got = 0;
    int e;
    if (io->fstat(fd, &st) != 0) {
        rc = frag_ioerr(errmsg, errno, id, "fstat");
    } else if (!S_ISREG(st.st_mode)) {
        rc = corrupt(errmsg, "fragment %s is not a regular file", id);
    } else if ((e = pread_full(io, fd, raw, sizeof raw, 0, &got)) != 0) {
        rc = frag_ioerr(errmsg, e, id, "read header");
    } else if (got < sizeof raw) {
        rc = corrupt(errmsg, "fragment %s: truncated header (%zu bytes)", id, got);
    } else {
        const char *why = dfs_frag_header_decode(raw, h);
        if (why != NULL) {
            rc = corrupt(errmsg, "fragment %s: %s", id, why);
        } else if (strcmp(h->id, id) != 0) {
            rc = corrupt(errmsg, "fragment %s: header names fragment %s", id, h->id);
        } else if ((uint64_t)st.st_size != dfs_frag_file_length(h->size)) {
            rc = corrupt(errmsg, "fragment %s: file is %" PRIu64 " bytes, header implies %" PRIu64,
                         id, (uint64_t)st.st_size, dfs_frag_file_length(h->size));
        } else {
            *fd_out = fd;
            *file_len = (uint64_t)st.st_size;
            return DFS_OK;
        }
    }
    io->close(fd);
    return rc;
}

/* ---- directory walks ---- */

/* Open a listing of `name` under `at` (a fresh fd, owned by the DIR). */
static int list_open(const struct dfs_io_ops *io, int at, const char *name, DIR **out)
{
    int fd = io->openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    DIR *d = io->fdopendir(fd);
    if (d == NULL) {
        int e = errno;
        io->close(fd);
        return e;
    }
    *out = d;
    return 0;
}

/* Next entry other than "." and "..", or NULL at the end (*err = 0) or on error (*err = errno). */
static struct dirent *list_next(const struct dfs_io_ops *io, DIR *d, int *err)
{
    for (;;) {
        errno = 0;
        struct dirent *de = io->readdir(d);
        if (de == NULL) {
            *err = errno;
            return NULL;
        }
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            return de;
    }
}

typedef int (*walk_fn)(void *ctx, const char *id, const struct stat *st);

/*
 * Call fn for every regular file fragments/ab/cd/<id> with a valid id under the right ab/cd. Other
 * entries are skipped, with a warning when `warn`. Stops at fn's first nonzero return and returns
 * it; DFS_EIO when a directory cannot be listed.
 */
static int walk(dfs_frag_store *s, bool warn, walk_fn fn, void *ctx, char **errmsg)
{
    const struct dfs_io_ops *io = s->io;
    DIR *top = NULL, *mid = NULL, *leaf = NULL;
    int rc = DFS_OK, e = list_open(io, s->fragfd, ".", &top);
    char where[8] = "";
    if (e != 0)
        goto fail;
    for (struct dirent *a; rc == DFS_OK && (a = list_next(io, top, &e)) != NULL;) {
        if (!is_hex2(a->d_name)) {
            if (warn)
                dfs_log(DFS_LOG_WARN, "ignoring stray entry dir=%s/fragments name=%s", s->dir,
                        a->d_name);
            continue;
        }
        snprintf(where, sizeof where, "%.2s", a->d_name);
        e = list_open(io, dirfd(top), a->d_name, &mid);
        if (e == ENOTDIR) {
            e = 0; /* a stray file named like a directory */
            continue;
        }
        if (e != 0)
            goto fail;
        for (struct dirent *c; rc == DFS_OK && (c = list_next(io, mid, &e)) != NULL;) {
            if (!is_hex2(c->d_name)) {
                if (warn)
                    dfs_log(DFS_LOG_WARN, "ignoring stray entry dir=%s/fragments/%s name=%s",
                            s->dir, a->d_name, c->d_name);
                continue;
            }
            snprintf(where, sizeof where, "%.2s/%.2s", a->d_name, c->d_name);
            e = list_open(io, dirfd(mid), c->d_name, &leaf);
            if (e == ENOTDIR) {
                e = 0;
                continue;
            }
            if (e != 0)
                goto fail;
            for (struct dirent *f; rc == DFS_OK && (f = list_next(io, leaf, &e)) != NULL;) {
                const char *id = f->d_name;
                struct stat st;
                if (!dfs_fragment_id_valid(id) || strncmp(id, a->d_name, 2) != 0 ||
                    strncmp(id + 2, c->d_name, 2) != 0) {
                    if (warn)
                        dfs_log(DFS_LOG_WARN, "ignoring stray entry dir=%s/fragments/%s name=%s",
                                s->dir, where, id);
                    continue;
                }
                if (io->fstatat(dirfd(leaf), id, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                    if (errno == ENOENT)
                        continue; /* deleted meanwhile */
                    e = errno;
                    goto fail;
                }
                if (!S_ISREG(st.st_mode)) {
                    if (warn)
                        dfs_log(DFS_LOG_WARN, "ignoring non-file dir=%s/fragments/%s name=%s",
                                s->dir, where, id);
                    continue;
                }
                rc = fn(ctx, id, &st);
            }
            if (e != 0)
                goto fail;
            io->closedir(leaf);
            leaf = NULL;
        }
        if (e != 0)
            goto fail;
        io->closedir(mid);
        mid = NULL;
        snprintf(where, sizeof where, "%s", "");
    }
    if (e != 0)
        goto fail;
    io->closedir(top);
    return rc;
fail:
    rc = dfs_seterr_errno(errmsg, DFS_EIO, e, "list %s/fragments/%s", s->dir, where);
    if (leaf != NULL)
        io->closedir(leaf);
    if (mid != NULL)
        io->closedir(mid);
    if (top != NULL)
        io->closedir(top);
    return rc;
}

/* ---- open / close ---- */

/* mkdir -p path; a directory this creates is fsynced into its parent. */
static int make_dirs(const struct dfs_io_ops *io, const char *path, char **errmsg)
{
    char *p = strdup(path);
    if (p == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    size_t len = strlen(p);
    int rc = DFS_OK;
    for (size_t i = 1; i <= len && rc == DFS_OK; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        if (p[i - 1] == '/')
            continue; /* "a//b" */
        char saved = p[i];
        p[i] = '\0';
        if (io->mkdirat(AT_FDCWD, p, 0755) == 0) {
            /* New: make its entry durable in the parent. */
            char *slash = strrchr(p, '/');
            int e;
            if (slash == NULL) {
                e = fsync_dir(io, AT_FDCWD, ".");
            } else if (slash == p) {
                e = fsync_dir(io, AT_FDCWD, "/");
            } else {
                *slash = '\0';
                e = fsync_dir(io, AT_FDCWD, p);
                *slash = '/';
            }
            if (e != 0)
                rc = dfs_seterr_errno(errmsg, dfs_err_from_errno(e), e, "fsync parent of %s", p);
        } else if (errno != EEXIST) {
            rc = dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "mkdir %s", p);
        }
        p[i] = saved;
    }
    free(p);
    return rc;
}

/* Create DATA_DIR/<name> if needed and open it; *created is set when it was made. */
static int open_subdir(dfs_frag_store *s, const char *name, int *fd_out, bool *created,
                       char **errmsg)
{
    const struct dfs_io_ops *io = s->io;
    if (io->mkdirat(s->dirfd, name, 0755) == 0)
        *created = true;
    else if (errno != EEXIST)
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "mkdir %s/%s", s->dir,
                                name);
    int fd = io->openat(s->dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "open %s/%s", s->dir,
                                name);
    *fd_out = fd;
    return DFS_OK;
}

/* Remove everything in tmp/: partial writes of an earlier run. */
static int sweep_tmp(dfs_frag_store *s, char **errmsg)
{
    const struct dfs_io_ops *io = s->io;
    DIR *d = NULL;
    int e = list_open(io, s->tmpfd, ".", &d);
    if (e != 0)
        return dfs_seterr_errno(errmsg, DFS_EIO, e, "list %s/tmp", s->dir);
    unsigned swept = 0;
    for (struct dirent *de; (de = list_next(io, d, &e)) != NULL;) {
        if (io->unlinkat(s->tmpfd, de->d_name, 0) == 0 ||
            ((errno == EISDIR || errno == EPERM) &&
             io->unlinkat(s->tmpfd, de->d_name, AT_REMOVEDIR) == 0))
            swept++;
        else
            dfs_log_errno(DFS_LOG_WARN, errno, "cannot remove dir=%s/tmp name=%s", s->dir,
                          de->d_name);
    }
    io->closedir(d);
    if (e != 0)
        return dfs_seterr_errno(errmsg, DFS_EIO, e, "list %s/tmp", s->dir);
    if (swept > 0)
        dfs_log(DFS_LOG_INFO, "removed partial writes dir=%s/tmp count=%u", s->dir, swept);
    return DFS_OK;
}

/* Read DATA_DIR/node.id, or create it: written in tmp/, fsynced, renamed, directory fsynced. */
static int load_node_id(dfs_frag_store *s, char **errmsg)
{
    const struct dfs_io_ops *io = s->io;
    int fd = io->openat(s->dirfd, "node.id", O_RDONLY | O_CLOEXEC, 0);
    if (fd >= 0) {
        char buf[64];
        size_t got = 0;
        int e = pread_full(io, fd, buf, sizeof buf - 1, 0, &got);
        io->close(fd);
        if (e != 0)
            return dfs_seterr_errno(errmsg, dfs_err_from_errno(e), e, "read %s/node.id", s->dir);
        buf[got] = '\0';
        if (got == DFS_ID_HEX + 1 && buf[DFS_ID_HEX] == '\n')
            buf[DFS_ID_HEX] = '\0';
        if (!dfs_id_valid(buf))
            return dfs_seterr(errmsg, DFS_EDATALOSS,
                              "%s/node.id is corrupt (want %d lower-case hex digits and a newline)",
                              s->dir, DFS_ID_HEX);
        memcpy(s->node_id, buf, DFS_ID_HEX + 1);
        return DFS_OK;
    }
    if (errno != ENOENT)
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "open %s/node.id",
                                s->dir);

    char id[DFS_ID_HEX + 1], line[DFS_ID_HEX + 1];
    if (dfs_id_random(id) != DFS_OK)
        return dfs_seterr(errmsg, DFS_EIO, "no random bytes for a node id");
    memcpy(line, id, DFS_ID_HEX);
    line[DFS_ID_HEX] = '\n';
    fd = io->openat(s->tmpfd, "node.id", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "create %s/tmp/node.id",
                                s->dir);
    const char *step = "write";
    int e = pwrite_full(io, fd, line, sizeof line, 0);
    if (e == 0) {
        step = "fsync";
        e = io->fsync(fd) == 0 ? 0 : errno;
    }
    if (io->close(fd) != 0 && e == 0) {
        step = "close";
        e = errno;
    }
    if (e == 0) {
        step = "rename";
        e = io->renameat(s->tmpfd, "node.id", s->dirfd, "node.id") == 0 ? 0 : errno;
    }
    if (e != 0) {
        io->unlinkat(s->tmpfd, "node.id", 0);
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(e), e, "%s %s/node.id", step, s->dir);
    }
    if (io->fsync(s->dirfd) != 0)
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "fsync %s", s->dir);
    memcpy(s->node_id, id, DFS_ID_HEX + 1);
    dfs_log(DFS_LOG_INFO, "created node id dir=%s node=%s", s->dir, s->node_id);
    return DFS_OK;
}

static int count_one(void *ctx, const char *id, const struct stat *st)
{
    (void)id;
    dfs_frag_store *s = ctx;
    s->fragments++;
    s->used_bytes += (uint64_t)st->st_size;
    return DFS_OK;
}

static void store_free(dfs_frag_store *s)
{
    const struct dfs_io_ops *io = s->io;
    if (s->fragfd >= 0)
        io->close(s->fragfd);
    if (s->tmpfd >= 0)
        io->close(s->tmpfd);
    if (s->dirfd >= 0)
        io->close(s->dirfd); /* releases the flock */
    for (int i = 0; i < ID_LOCKS; i++)
        pthread_mutex_destroy(&s->id_locks[i]);
    pthread_mutex_destroy(&s->stats_mu);
    free(s->dir);
    free(s);
}

int dfs_frag_store_open(const char *data_dir, const struct dfs_io_ops *io, dfs_frag_store **out,
                        char **errmsg)
{
    if (data_dir == NULL || data_dir[0] == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "empty data dir");
    dfs_frag_store *s = calloc(1, sizeof *s);
    char *dir = strdup(data_dir);
    if (s == NULL || dir == NULL) {
        free(s);
        free(dir);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    s->io = io != NULL ? io : &posix_ops;
    io = s->io;
    s->dir = dir;
    s->dirfd = s->fragfd = s->tmpfd = -1;
    for (int i = 0; i < ID_LOCKS; i++)
        pthread_mutex_init(&s->id_locks[i], NULL);
    pthread_mutex_init(&s->stats_mu, NULL);

    int rc = make_dirs(io, data_dir, errmsg);
    if (rc != DFS_OK)
        goto fail;
    s->dirfd = io->openat(AT_FDCWD, data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (s->dirfd < 0) {
        rc = dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "open %s", data_dir);
        goto fail;
    }
    /* One store per data dir: a second one would sweep tmp/ under the first one's writers. */
    rc = dfs_exlock(s->dirfd, io->flock, "data dir", data_dir, errmsg);
    if (rc != DFS_OK)
        goto fail;
    bool created = false;
    rc = open_subdir(s, "fragments", &s->fragfd, &created, errmsg);
    if (rc == DFS_OK)
        rc = open_subdir(s, "tmp", &s->tmpfd, &created, errmsg);
    if (rc != DFS_OK)
        goto fail;
    if (created && io->fsync(s->dirfd) != 0) {
        rc = dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "fsync %s", data_dir);
        goto fail;
    }
    rc = sweep_tmp(s, errmsg);
    if (rc == DFS_OK)
        rc = load_node_id(s, errmsg);
    if (rc == DFS_OK)
        rc = walk(s, true, count_one, s, errmsg);
    if (rc != DFS_OK)
        goto fail;
    dfs_log(DFS_LOG_INFO,
            "opened fragment store dir=%s node=%s fragments=%" PRIu64 " bytes=%" PRIu64, s->dir,
            s->node_id, s->fragments, s->used_bytes);
    *out = s;
    return DFS_OK;
fail:
    store_free(s);
    return rc;
}

void dfs_frag_store_close(dfs_frag_store *store)
{
    if (store == NULL)
        return;
    assert(atomic_load(&store->live) == 0 && "writers or readers left open");
    store_free(store);
}

const char *dfs_frag_store_node_id(const dfs_frag_store *store)
{
    return store->node_id;
}

int dfs_frag_store_stats(dfs_frag_store *store, struct dfs_frag_store_stats *out)
{
    pthread_mutex_lock(&store->stats_mu);
    out->fragments = store->fragments;
    out->used_bytes = store->used_bytes;
    pthread_mutex_unlock(&store->stats_mu);
    struct statvfs vfs;
    if (store->io->fstatvfs(store->fragfd, &vfs) != 0) {
        out->capacity_bytes = out->free_bytes = 0;
        return DFS_EIO;
    }
    out->capacity_bytes = (uint64_t)vfs.f_blocks * vfs.f_frsize;
    out->free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    return DFS_OK;
}

/* Counters after a rename or unlink under an id lock: `old` was there (old_len bytes) or not. */
static void account(dfs_frag_store *s, bool had_old, uint64_t old_len, bool has_new,
                    uint64_t new_len)
{
    pthread_mutex_lock(&s->stats_mu);
    if (had_old) {
        s->fragments--;
        s->used_bytes -= old_len;
    }
    if (has_new) {
        s->fragments++;
        s->used_bytes += new_len;
    }
    pthread_mutex_unlock(&s->stats_mu);
}

/* ---- writing ---- */

int dfs_frag_writer_begin(dfs_frag_store *store, const char *fragment_id, uint64_t size,
                          dfs_frag_writer **out, char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id))
        return bad_id(errmsg, fragment_id);
    if (size > DFS_FRAG_MAX_SIZE)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "fragment %s: size %" PRIu64 " exceeds the maximum %" PRIu64, fragment_id,
                          size, DFS_FRAG_MAX_SIZE);
    dfs_frag_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    w->store = store;
    w->size = size;
    memcpy(w->id, fragment_id, DFS_FRAGMENT_ID_HEX + 1);
    /* tmp/ is ours alone (flock) and swept at open, so a fresh sequence number is a fresh name;
       O_EXCL guards the assumption. */
    for (int tries = 0;; tries++) {
        uint64_t seq = atomic_fetch_add(&store->tmp_seq, 1);
        snprintf(w->tmpname, sizeof w->tmpname, "%s.%" PRIx64, w->id, seq);
        w->fd = store->io->openat(store->tmpfd, w->tmpname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                                  0644);
        if (w->fd >= 0)
            break;
        if (errno != EEXIST || tries == 8) {
            int rc = frag_ioerr(errmsg, errno, w->id, "create temporary file");
            free(w);
            return rc;
        }
    }
    atomic_fetch_add(&store->live, 1);
    *out = w;
    return DFS_OK;
}

/* Make room for `more` CRCs in the writer's table: it grows with what arrives, not with size. */
static int table_reserve(dfs_frag_writer *w, size_t more)
{
    size_t need = w->ncrcs + more;
    if (need <= w->cap)
        return DFS_OK;
    size_t cap = w->cap < 256 ? 256 : w->cap;
    while (cap < need)
        cap *= 2;
    size_t total = dfs_crc32c_nblocks(w->size);
    if (cap > total)
        cap = total;
    uint32_t *p = realloc(w->crcs, cap * sizeof *p);
    if (p == NULL)
        return DFS_ENOMEM;
    w->crcs = p;
    w->cap = cap;
    return DFS_OK;
}

/* pwritev all of iov[0..n) at off, however the kernel splits it. 0 or an errno. */
static int pwritev_full(const struct dfs_io_ops *io, int fd, const struct iovec *iov, size_t n,
                        uint64_t off)
{
    struct iovec local[64];
    while (n > 0) {
        /* A batch in a local copy, which a short write may advance without touching iov. */
        size_t k = n < 64 ? n : 64;
        memcpy(local, iov, k * sizeof *iov);
        struct iovec *v = local;
        size_t left = k;
        while (left > 0) {
            ssize_t w = io->pwritev(fd, v, (int)left, (off_t)off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return errno;
            }
            if (w == 0)
                return EIO; /* no progress and no reason: do not spin */
            off += (uint64_t)w;
            while (left > 0 && (size_t)w >= v->iov_len) {
                w -= (ssize_t)v->iov_len;
                v++;
                left--;
            }
            if (left > 0) {
                v->iov_base = (char *)v->iov_base + w;
                v->iov_len -= (size_t)w;
            }
        }
        iov += k;
        n -= k;
    }
    return 0;
}

static int append_checked(dfs_frag_writer *w, const struct iovec *iov, size_t niov, size_t len,
                          const uint32_t *crcs, size_t ncrcs, char **errmsg)
{
    if (len > w->size - w->received)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "fragment %s: chunk of %zu bytes at offset %" PRIu64
                          " goes beyond the declared size %" PRIu64,
                          w->id, len, w->received, w->size);
    if (len % BLOCK != 0 && w->received + len != w->size)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "fragment %s: chunk of %zu bytes at offset %" PRIu64
                          " is not a multiple of %u and does not end the fragment",
                          w->id, len, w->received, DFS_BLOCK_SIZE);
    size_t want = dfs_crc32c_nblocks(len);
    if (ncrcs != want)
        return dfs_seterr(errmsg, DFS_EINVAL, "fragment %s: %zu crcs for %zu bytes, want %zu",
                          w->id, ncrcs, len, want);
    if (crcs == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "fragment %s: missing data or crcs", w->id);
    size_t total = 0;
    for (size_t i = 0; i < niov; i++) {
        if (iov[i].iov_base == NULL && iov[i].iov_len > 0)
            return dfs_seterr(errmsg, DFS_EINVAL, "fragment %s: missing data or crcs", w->id);
        total += iov[i].iov_len;
    }
    if (total != len)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "fragment %s: the pieces hold %zu bytes, the chunk says %zu", w->id,
                          total, len);

    /* Check every block before anything reaches the disk. received is a multiple of BLOCK here.
       A block may span pieces: its CRC goes on from one piece to the next. */
    uint64_t first = w->received / BLOCK;
    size_t block = 0, in_block = 0;
    uint32_t crc = 0;
    for (size_t i = 0; i < niov; i++) {
        const unsigned char *p = iov[i].iov_base;
        size_t n = iov[i].iov_len;
        while (n > 0) {
            size_t take = BLOCK - in_block < n ? BLOCK - in_block : n;
            crc = dfs_crc32c(crc, p, take);
            p += take;
            n -= take;
            in_block += take;
            if (in_block == BLOCK || (block + 1 == ncrcs && in_block == len - block * BLOCK)) {
                if (crc != crcs[block])
                    return dfs_seterr(errmsg, DFS_EDATALOSS,
                                      "fragment %s: crc mismatch in block %" PRIu64, w->id,
                                      first + block);
                block++;
                crc = 0;
                in_block = 0;
            }
        }
    }
    if (table_reserve(w, ncrcs) != DFS_OK)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    int e = niov == 1 ? pwrite_full(w->store->io, w->fd, iov[0].iov_base, len, HDR + w->received)
                      : pwritev_full(w->store->io, w->fd, iov, niov, HDR + w->received);
    if (e != 0)
        return frag_ioerr(errmsg, e, w->id, "writing data");
    memcpy(w->crcs + w->ncrcs, crcs, ncrcs * sizeof *crcs);
    w->ncrcs += ncrcs;
    w->received += len;
    return DFS_OK;
}

int dfs_frag_writer_append_iov(dfs_frag_writer *w, const struct iovec *iov, size_t niov, size_t len,
                               const uint32_t *crcs, size_t ncrcs, char **errmsg)
{
    if (w->failed)
        return dfs_seterr(errmsg, DFS_EPRECOND, "fragment %s: an earlier append failed", w->id);
    if (len == 0 && ncrcs == 0)
        return DFS_OK;
    int rc = iov == NULL
                 ? dfs_seterr(errmsg, DFS_EINVAL, "fragment %s: missing data or crcs", w->id)
                 : append_checked(w, iov, niov, len, crcs, ncrcs, errmsg);
    if (rc != DFS_OK)
        w->failed = true;
    return rc;
}

int dfs_frag_writer_append(dfs_frag_writer *w, const void *data, size_t len, const uint32_t *crcs,
                           size_t ncrcs, char **errmsg)
{
    struct iovec one = {.iov_base = (void *)data, .iov_len = len};
    return dfs_frag_writer_append_iov(w, data != NULL ? &one : NULL, 1, len, crcs, ncrcs, errmsg);
}

static void writer_free(dfs_frag_writer *w)
{
    atomic_fetch_sub(&w->store->live, 1);
    free(w->crcs);
    free(w);
}

void dfs_frag_writer_abort(dfs_frag_writer *w)
{
    if (w == NULL)
        return;
    const struct dfs_io_ops *io = w->store->io;
    if (w->fd >= 0)
        io->close(w->fd);
    if (io->unlinkat(w->store->tmpfd, w->tmpname, 0) != 0 && errno != ENOENT)
        dfs_log_errno(DFS_LOG_WARN, errno, "cannot remove partial write dir=%s/tmp name=%s",
                      w->store->dir, w->tmpname);
    writer_free(w);
}

/*
 * Make fragments/<path> exist durably: mkdir if needed, then fsync it and its parent (`parent`,
 * relative to fragments/). Skipped when `bit` says this process did it already.
 */
static int ensure_dir(dfs_frag_store *s, _Atomic uint64_t *bits, unsigned bit, const char *path,
                      const char *parent, const char *id, char **errmsg)
{
    uint64_t mask = UINT64_C(1) << (bit % 64);
    if (atomic_load_explicit(&bits[bit / 64], memory_order_acquire) & mask)
        return DFS_OK;
    const struct dfs_io_ops *io = s->io;
    if (io->mkdirat(s->fragfd, path, 0755) != 0 && errno != EEXIST)
        return frag_ioerr(errmsg, errno, id, "mkdir fragments directory");
    int e = fsync_dir(io, s->fragfd, path);
    if (e == 0)
        e = fsync_dir(io, s->fragfd, parent);
    if (e != 0)
        return frag_ioerr(errmsg, e, id, "fsync fragments directory");
    atomic_fetch_or_explicit(&bits[bit / 64], mask, memory_order_release);
    return DFS_OK;
}

/*
 * A write-once commit found `id` stored (in directory cdfd, under the id lock): 0 and *already
 * when it holds `size` bytes with `checksum`, else DFS_EEXIST.
 */
static int compare_stored(dfs_frag_store *s, const char *id, uint64_t size, uint32_t checksum,
                          bool *already, char **errmsg)
{
    int fd = -1;
    struct dfs_frag_header h;
    uint64_t len = 0;
    char *why = NULL;
    int rc = open_checked(s, id, &fd, &h, &len, &why);
    if (rc == DFS_OK) {
        s->io->close(fd);
        if (h.size == size && h.checksum == checksum) {
            free(why);
            *already = true;
            return DFS_OK;
        }
        rc = dfs_seterr(errmsg, DFS_EEXIST,
                        "fragment %s is already stored here (%" PRIu64
                        " bytes, checksum %08x; this write: %" PRIu64
                        " bytes, checksum %08x): a stored fragment is never replaced by a put",
                        id, h.size, h.checksum, size, checksum);
    } else {
        rc = dfs_seterr(errmsg, DFS_EEXIST,
                        "fragment %s is already stored here (%s): a stored fragment is never "
                        "replaced by a put",
                        id, why != NULL ? why : dfs_strerror(rc));
    }
    free(why);
    return rc;
}

/*
 * Rename the finished temporary file into fragments/ab/cd/<id> and make that durable. noreplace:
 * never over a stored fragment (see dfs_frag_writer_commit_new; *already and DFS_EEXIST as there,
 * checksum being this write's).
 */
static int place(dfs_frag_writer *w, bool noreplace, uint32_t checksum, bool *renamed,
                 bool *already, char **errmsg)
{
    dfs_frag_store *s = w->store;
    const struct dfs_io_ops *io = s->io;
    char ab[3], abcd[6];
    snprintf(ab, sizeof ab, "%.2s", w->id);
    snprintf(abcd, sizeof abcd, "%.2s/%.2s", w->id, w->id + 2);
    unsigned hi = hex2(w->id), lo = hex2(w->id + 2);
    int rc = ensure_dir(s, s->ab_ok, hi, ab, ".", w->id, errmsg);
    if (rc != DFS_OK)
        return rc;
    /* fragments/ab/cd is made durable by the fsync after the rename below, then its entry in ab
       by an fsync of ab (in that order: a durable entry never names a directory that is not),
       instead of ensure_dir's two fsyncs before it and the one after: one fsync fewer for each
       directory's first fragment (on a young store, most puts: there are 65536 of them). */
    unsigned cdbit = hi << 8 | lo;
    uint64_t cdmask = UINT64_C(1) << (cdbit % 64);
    bool cd_ok = atomic_load_explicit(&s->cd_ok[cdbit / 64], memory_order_acquire) & cdmask;
    if (!cd_ok && io->mkdirat(s->fragfd, abcd, 0755) != 0 && errno != EEXIST)
        return frag_ioerr(errmsg, errno, w->id, "mkdir fragments directory");
    int cdfd = io->openat(s->fragfd, abcd, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (cdfd < 0)
        return frag_ioerr(errmsg, errno, w->id, "open fragments directory");

    pthread_mutex_t *lock = id_lock(s, w->id);
    pthread_mutex_lock(lock);
    struct stat old;
    bool had_old = false, taken = false;
    int e = 0;
    if (io->fstatat(cdfd, w->id, &old, AT_SYMLINK_NOFOLLOW) == 0)
        had_old = S_ISREG(old.st_mode);
    else if (errno != ENOENT)
        e = errno;
    if (e == 0 && noreplace) {
        /* The rename itself refuses a taken name; a file system without RENAME_NOREPLACE
           (EINVAL) falls back on the look above, which this lock makes just as exclusive. */
        if (io->renameat2(s->tmpfd, w->tmpname, cdfd, w->id, RENAME_NOREPLACE) == 0)
            had_old = false;
        else if (errno == EEXIST || ((errno == EINVAL || errno == ENOSYS) && had_old))
            taken = true;
        else if ((errno == EINVAL || errno == ENOSYS) &&
                 io->renameat(s->tmpfd, w->tmpname, cdfd, w->id) == 0)
            had_old = false;
        else
            e = errno;
    } else if (e == 0 && io->renameat(s->tmpfd, w->tmpname, cdfd, w->id) != 0) {
        e = errno;
    }
    if (e == 0 && taken)
        rc = compare_stored(s, w->id, w->size, checksum, already, errmsg);
    else if (e == 0) {
        *renamed = true;
        account(s, had_old, had_old ? (uint64_t)old.st_size : 0, true,
                dfs_frag_file_length(w->size));
    }
    pthread_mutex_unlock(lock);

    /* The directory is fsynced also when the same fragment was found stored: its entry may not
       be durable yet (a put whose fsync failed, retried). */
    if (e != 0)
        rc = frag_ioerr(errmsg, e, w->id, "rename into place");
    else if (rc == DFS_OK && io->fsync(cdfd) != 0)
        rc = frag_ioerr(errmsg, errno, w->id, "fsync fragments directory");
    io->close(cdfd);
    if (rc == DFS_OK && !cd_ok) {
        e = fsync_dir(io, s->fragfd, ab);
        if (e != 0)
            return frag_ioerr(errmsg, e, w->id, "fsync fragments directory");
        atomic_fetch_or_explicit(&s->cd_ok[cdbit / 64], cdmask, memory_order_release);
    }
    return rc;
}

static int commit(dfs_frag_writer *w, bool noreplace, uint32_t *checksum_out, bool *renamed,
                  bool *already, char **errmsg)
{
    const struct dfs_io_ops *io = w->store->io;
    if (w->failed)
        return dfs_seterr(errmsg, DFS_EPRECOND, "fragment %s: an earlier append failed", w->id);
    if (w->received != w->size)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "fragment %s: received %" PRIu64 " of %" PRIu64 " bytes", w->id,
                          w->received, w->size);
    assert(w->ncrcs == dfs_crc32c_nblocks(w->size));
    struct dfs_frag_header h = {
        .size = w->size,
        .nblocks = (uint32_t)w->ncrcs,
        .checksum = dfs_crc32c_of_table(w->crcs, w->ncrcs),
        .stored_ms = dfs_clock_wall_ms(),
    };
    memcpy(h.id, w->id, sizeof h.id);
    unsigned char raw[DFS_FRAG_HEADER_SIZE];
    dfs_frag_header_encode(&h, raw);
    /* The table goes to disk little-endian; it is not needed in host order any more. */
    for (size_t i = 0; i < w->ncrcs; i++)
        w->crcs[i] = htole32(w->crcs[i]);
    int e = pwrite_full(io, w->fd, w->crcs, w->ncrcs * sizeof *w->crcs, HDR + w->size);
    if (e != 0)
        return frag_ioerr(errmsg, e, w->id, "writing the crc table");
    e = pwrite_full(io, w->fd, raw, sizeof raw, 0);
    if (e != 0)
        return frag_ioerr(errmsg, e, w->id, "writing the header");
    if (io->fsync(w->fd) != 0)
        return frag_ioerr(errmsg, errno, w->id, "fsync");
    int fd = w->fd;
    w->fd = -1;
    if (io->close(fd) != 0)
        return frag_ioerr(errmsg, errno, w->id, "close");
    int rc = place(w, noreplace, h.checksum, renamed, already, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (checksum_out != NULL)
        *checksum_out = h.checksum;
    dfs_log(DFS_LOG_DEBUG, "stored fragment id=%s size=%" PRIu64 " checksum=%08x already=%s", w->id,
            w->size, h.checksum, *already ? "true" : "false");
    return DFS_OK;
}

int dfs_frag_writer_commit(dfs_frag_writer *w, uint32_t *checksum_out, char **errmsg)
{
    bool renamed = false, already = false;
    int rc = commit(w, false, checksum_out, &renamed, &already, errmsg);
    if (rc == DFS_OK || renamed) {
        writer_free(w);
        return rc;
    }
    dfs_frag_writer_abort(w);
    return rc;
}

int dfs_frag_writer_commit_new(dfs_frag_writer *w, uint32_t *checksum_out, bool *already,
                               char **errmsg)
{
    bool renamed = false, same = false;
    int rc = commit(w, true, checksum_out, &renamed, &same, errmsg);
    if (already != NULL)
        *already = rc == DFS_OK && same;
    if (renamed) {
        writer_free(w);
        return rc;
    }
    dfs_frag_writer_abort(w); /* the temporary file goes, whether or not it was the same */
    return rc;
}

/* ---- reading ---- */

int dfs_frag_reader_open(dfs_frag_store *store, const char *fragment_id, dfs_frag_reader **out,
                         char **errmsg)
{
    int fd = -1;
    struct dfs_frag_header h;
    uint64_t flen;
    int rc = open_checked(store, fragment_id, &fd, &h, &flen, errmsg);
    if (rc != DFS_OK)
        return rc;
    dfs_frag_reader *r = calloc(1, sizeof *r);
    uint32_t *crcs = h.nblocks > 0 ? malloc(h.nblocks * sizeof *crcs) : NULL;
    if (r == NULL || (h.nblocks > 0 && crcs == NULL)) {
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        goto fail;
    }
    size_t tlen = h.nblocks * sizeof *crcs, got = 0;
    int e = pread_full(store->io, fd, crcs, tlen, HDR + h.size, &got);
    if (e != 0) {
        rc = frag_ioerr(errmsg, e, fragment_id, "read crc table");
        goto fail;
    }
    if (got < tlen) {
        rc = corrupt(errmsg, "fragment %s: truncated crc table", fragment_id);
        goto fail;
    }
    for (size_t i = 0; i < h.nblocks; i++)
        crcs[i] = le32toh(crcs[i]);
    if (dfs_crc32c_of_table(crcs, h.nblocks) != h.checksum) {
        rc = corrupt(errmsg, "fragment %s: crc table does not match the fragment checksum",
                     fragment_id);
        goto fail;
    }
    r->store = store;
    r->fd = fd;
    memcpy(r->id, h.id, sizeof r->id);
    r->size = h.size;
    r->checksum = h.checksum;
    r->stored_ms = h.stored_ms;
    r->nblocks = h.nblocks;
    r->crcs = crcs;
    atomic_fetch_add(&store->live, 1);
    *out = r;
    return DFS_OK;
fail:
    store->io->close(fd);
    free(crcs);
    free(r);
    return rc;
}

uint64_t dfs_frag_reader_size(const dfs_frag_reader *r)
{
    return r->size;
}

uint32_t dfs_frag_reader_checksum(const dfs_frag_reader *r)
{
    return r->checksum;
}

int64_t dfs_frag_reader_stored_ms(const dfs_frag_reader *r)
{
    return r->stored_ms;
}

int dfs_frag_reader_read(dfs_frag_reader *r, uint64_t offset, void *buf, size_t len,
                         uint32_t *crcs_out, char **errmsg)
{
    if (offset > r->size || len > r->size - offset)
        return dfs_seterr(errmsg, DFS_ERANGE,
                          "fragment %s: range of %zu bytes at offset %" PRIu64
                          " is beyond its size %" PRIu64,
                          r->id, len, offset, r->size);
    if (len == 0)
        return DFS_OK;
    if (buf == NULL || crcs_out == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "fragment %s: missing buffer", r->id);

    /* Whole blocks [first, last] are read: head bytes before buf and tail bytes after it go to the
       scratch buffers, buf gets its bytes directly. */
    uint64_t end = offset + len;
    uint64_t first = offset / BLOCK, last = (end - 1) / BLOCK;
    size_t head = (size_t)(offset - first * BLOCK);
    size_t tail = (size_t)(min_u64((last + 1) * BLOCK, r->size) - end);
    if ((head > 0 || tail > 0) && r->scratch == NULL) {
        r->scratch = malloc(2 * BLOCK);
        if (r->scratch == NULL)
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    unsigned char *hbuf = r->scratch, *tbuf = r->scratch != NULL ? r->scratch + BLOCK : NULL;
    struct iovec iov[3] = {
        {.iov_base = hbuf, .iov_len = head},
        {.iov_base = buf, .iov_len = len},
        {.iov_base = tbuf, .iov_len = tail},
    };
    size_t got = 0;
    int e = preadv_full(r->store->io, r->fd, iov, 3, HDR + first * BLOCK, &got);
    if (e != 0)
        return frag_ioerr(errmsg, e, r->id, "read");
    if (got < head + len + tail)
        return corrupt(errmsg, "fragment %s: file ends early", r->id);

    const unsigned char *p = buf;
    for (uint64_t b = first; b <= last; b++) {
        uint64_t bstart = b * BLOCK, bend = min_u64(bstart + BLOCK, r->size);
        uint64_t s = max_u64(bstart, offset), t = min_u64(bend, end);
        uint32_t crc = 0;
        if (b == first && head > 0)
            crc = dfs_crc32c(0, hbuf, head);
        crc = dfs_crc32c(crc, p + (s - offset), (size_t)(t - s));
        if (head == 0)
            crcs_out[b - first] = crc; /* piece b-first of buf is (the start of) block b */
        if (b == last && tail > 0)
            crc = dfs_crc32c(crc, tbuf, tail);
        if (crc != r->crcs[b])
            return corrupt(errmsg, "fragment %s block %" PRIu64 " is corrupt", r->id, b);
    }
    /* Pieces of buf straddle stored blocks: their CRCs are new. */
    if (head > 0)
        dfs_crc32c_blocks(buf, len, crcs_out);
    return DFS_OK;
}

/* ---- mapped reads ---- */

/*
 * A read-only MAP_SHARED mapping of part of a fragment file. Safe to hand out as long as the file
 * is never truncated or rewritten in place: fragment files are written under tmp/ and renamed into
 * place, a replace renames a new file over the name and a delete unlinks it, and the mapping keeps
 * the old file. What a mapping can still do is fault on a page the kernel must read from disk,
 * where an I/O error is a SIGBUS instead of an EIO: so its bytes are only touched once mincore
 * says they are in memory (dfs_frag_reader_peek).
 */
struct dfs_frag_map {
    atomic_int refs;
    unsigned char *base; /* page-aligned; data byte `first` is at base + skip */
    size_t maplen, skip;
    uint64_t first, end; /* the data bytes mapped: [first, end) */
    size_t page;
};

/* The most bytes one peek may cover (its mincore vector lives on the stack). */
#define PEEK_MAX ((size_t)4 << 20)

int dfs_frag_reader_map(dfs_frag_reader *r, uint64_t offset, uint64_t len, dfs_frag_map **out,
                        char **errmsg)
{
    *out = NULL;
    if (offset > r->size || len > r->size - offset)
        return dfs_seterr(errmsg, DFS_ERANGE,
                          "fragment %s: range of %" PRIu64 " bytes at offset %" PRIu64
                          " is beyond its size %" PRIu64,
                          r->id, len, offset, r->size);
    if (r->store->io != &posix_ops || len == 0)
        return DFS_OK; /* an injected io table sees every read: no mapping behind its back */
    long page = sysconf(_SC_PAGESIZE);
    dfs_frag_map *m = calloc(1, sizeof *m);
    if (m == NULL || page <= 0) {
        free(m);
        return DFS_OK;
    }
    uint64_t at = HDR + offset, start = at / (uint64_t)page * (uint64_t)page;
    m->maplen = (size_t)(at + len - start);
    m->skip = (size_t)(at - start);
    m->first = offset;
    m->end = offset + len;
    m->page = (size_t)page;
    m->base = mmap(NULL, m->maplen, PROT_READ, MAP_SHARED, r->fd, (off_t)start);
    if (m->base == MAP_FAILED) {
        free(m);
        return DFS_OK; /* reads go through dfs_frag_reader_read as before */
    }
    atomic_init(&m->refs, 1);
    *out = m;
    return DFS_OK;
}

void dfs_frag_map_ref(dfs_frag_map *m)
{
    atomic_fetch_add(&m->refs, 1);
}

void dfs_frag_map_unref(dfs_frag_map *m)
{
    if (m != NULL && atomic_fetch_sub(&m->refs, 1) == 1) {
        munmap(m->base, m->maplen);
        free(m);
    }
}

int dfs_frag_reader_peek(dfs_frag_reader *r, dfs_frag_map *m, uint64_t offset, size_t len,
                         const unsigned char **data, uint32_t *crcs_out, char **errmsg)
{
    *data = NULL;
    if (len == 0 || len > PEEK_MAX || offset % BLOCK != 0 || offset < m->first || offset > m->end ||
        len > m->end - offset || (len % BLOCK != 0 && offset + len != r->size))
        return DFS_OK; /* not a range of whole blocks inside the mapping: read it instead */
    const unsigned char *p = m->base + m->skip + (offset - m->first);
    uintptr_t pstart = (uintptr_t)p / m->page * m->page;
    size_t span = (size_t)((uintptr_t)p + len - pstart), npages = (span + m->page - 1) / m->page;
    unsigned char vec[PEEK_MAX / 4096 + 2];
    if (npages > sizeof vec || mincore((void *)pstart, span, vec) != 0)
        return DFS_OK;
    for (size_t i = 0; i < npages; i++)
        if (!(vec[i] & 1))
            return DFS_OK; /* on disk only: let pread bring it in, with errors as errors */
    for (uint64_t b = offset / BLOCK, i = 0; i * BLOCK < len; b++, i++) {
        size_t n = len - i * BLOCK < BLOCK ? (size_t)(len - i * BLOCK) : (size_t)BLOCK;
        uint32_t crc = dfs_crc32c(0, p + i * BLOCK, n);
        if (crc != r->crcs[b])
            return corrupt(errmsg, "fragment %s block %" PRIu64 " is corrupt", r->id, b);
        crcs_out[i] = crc;
    }
    *data = p;
    return DFS_OK;
}

void dfs_frag_reader_close(dfs_frag_reader *r)
{
    if (r == NULL)
        return;
    r->store->io->close(r->fd);
    atomic_fetch_sub(&r->store->live, 1);
    free(r->crcs);
    free(r->scratch);
    free(r);
}

/* ---- other verbs ---- */

int dfs_frag_store_delete(dfs_frag_store *store, const char *fragment_id, bool *existed,
                          char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id))
        return bad_id(errmsg, fragment_id);
    const struct dfs_io_ops *io = store->io;
    char path[FRAG_PATH_MAX];
    frag_path(fragment_id, path);
    pthread_mutex_t *lock = id_lock(store, fragment_id);
    pthread_mutex_lock(lock);
    struct stat st;
    int e = 0;
    bool found = false;
    if (io->fstatat(store->fragfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        found = true;
        if (io->unlinkat(store->fragfd, path, 0) == 0)
            account(store, S_ISREG(st.st_mode), (uint64_t)st.st_size, false, 0);
        else
            e = errno;
    } else if (errno != ENOENT && errno != ENOTDIR) {
        e = errno;
    }
    pthread_mutex_unlock(lock);
    if (e != 0)
        return frag_ioerr(errmsg, e, fragment_id, "delete");
    if (found) {
        path[5] = '\0'; /* "ab/cd" */
        e = fsync_dir(io, store->fragfd, path);
        if (e != 0)
            return frag_ioerr(errmsg, e, fragment_id, "fsync fragments directory");
        dfs_log(DFS_LOG_DEBUG, "deleted fragment id=%s", fragment_id);
    }
    if (existed != NULL)
        *existed = found;
    return DFS_OK;
}

int dfs_frag_store_stat(dfs_frag_store *store, const char *fragment_id, struct dfs_frag_info *out,
                        char **errmsg)
{
    int fd = -1;
    struct dfs_frag_header h;
    uint64_t flen;
    int rc = open_checked(store, fragment_id, &fd, &h, &flen, errmsg);
    if (rc != DFS_OK)
        return rc;
    store->io->close(fd);
    out->size = h.size;
    out->checksum = h.checksum;
    out->stored_ms = h.stored_ms;
    return DFS_OK;
}

struct foreach_ctx {
    dfs_frag_foreach_fn cb;
    void *ctx;
};

static int foreach_one(void *ctx, const char *id, const struct stat *st)
{
    struct foreach_ctx *f = ctx;
    return f->cb(f->ctx, id, dfs_frag_size_from_length((uint64_t)st->st_size));
}

int dfs_frag_store_foreach(dfs_frag_store *store, dfs_frag_foreach_fn cb, void *ctx, char **errmsg)
{
    struct foreach_ctx f = {.cb = cb, .ctx = ctx};
    return walk(store, false, foreach_one, &f, errmsg);
}
