/*
 * The file system of dfs-mount (fs.h). The store keeps files by path; this maps POSIX onto it:
 *
 *   - Directories are what file paths imply ("/a/b/c" makes "/a" and "/a/b"), plus ones made by
 *     mkdir, which this mount remembers while it runs (the catalog has no directories yet).
 *   - Reads of a committed file fetch byte ranges through the engine of `dfs get` (every block's
 *     CRC32C checked, failover, erasure-code rebuilds) into a read-ahead window per open handle;
 *     sequential reads past the largest window take the rest of the file from one fetch that
 *     streams into a pipe (stream_start).
 *     Open takes the file's layout once: a handle reads the version that was current at open
 *     (close-to-open consistency).
 *   - A file opened for writing gets an "ofile" holding its whole content (fetched at open
 *     unless truncated), shared by every handle of that path in this mount: in memory (a
 *     dfs_mount_mem: writes are copied into it, the put reads it in place) while the spool's
 *     memory allows, else (and from the write that passes it on) an unlinked file in the spool
 *     directory (spool_room). fsync and each close (flush) of a handle with unsaved writes store
 *     it as a new version (dfs_client_put with overwrite), atomically: readers elsewhere see the
 *     old version or the new one. Errors of that put (ENOSPC from the cluster too) are the close's
 *     or fsync's error; ENOSPC of the spool is the write's.
 *   - mode, owner and times set through the mount are kept in memory by this mount.
 *
 * Locks: fs->mu guards the ofile table (and each ofile's refs and path) and the attribute table;
 * of->mu guards an ofile's spool and state and is held across the put that commits it. Order:
 * of->mu before fs->mu; never the other way round.
 */
#include "mount/fs.h"

#include "common/err.h"
#include "common/log.h"
#include "mount/dirlist.h"
#include "mount/readahead.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* The largest read or write request asked of the kernel. */
#define DFS_MOUNT_MAX_IO (1u << 20)

struct ofile {
    struct ofile *next; /* in fs->ofiles */
    char *path;         /* under fs->mu to change; readers hold of->mu or fs->mu */
    int refs;           /* under fs->mu */
    pthread_mutex_t mu;
    /* The content: in memory (buf) while the spool's memory allows (mem bytes of it held, at
       least size), else a file in the spool directory (fd; mem 0): see spool_room. Neither until
       loaded. */
    dfs_mount_mem *buf;
    int fd;
    _Atomic uint64_t size;
    uint64_t charged; /* bytes reserved in the spool */
    bool dirty;       /* written since the last commit */
    uint64_t mem;
    bool unlinked; /* removed while open: never committed */
};

/* What chmod, chown, utimens and mkdir set, by path. */
struct attr {
    struct attr *next;
    char *path;
    bool is_dir; /* an explicit directory (mkdir) */
    bool has_mode, has_owner, has_mtime, has_atime;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    struct timespec mtime, atime;
};

struct handle {
    struct handle *prev, *next; /* in fs->handles (under fs->mu) */
    dfs_mount_fs *fs;
    struct ofile *of;        /* a file being written in this mount (reads go to its spool) */
    Dfs__V1__FileInfo *info; /* else: the layout of the version open reads */
    dfs_readahead *ra;
    int memfd; /* where range fetches land */
    bool append;
    /* Sequential reads: one range fetch from where they are to the end of the file, streaming
       into a pipe (st_fd its read end) by a thread of its own; st_pos is the file offset of the
       next byte in the pipe. Only the read-ahead's fetch touches these (never twice at once). */
    bool st_on;
    int st_fd;
    uint64_t st_pos;
    pthread_t st_thread;
    struct stream_job *st_job;
};

struct dfs_mount_fs {
    dfs_client *c;
    dfs_mount_spool *sp;
    struct dfs_mount_fs_config cfg;
    pthread_mutex_t mu;
    struct ofile *ofiles;
    struct attr *attrs;
    /* Open handles: those still open when the loop ends (an unmount by signal with files open)
       get no release, and are freed at destroy. */
    struct handle *handles;
    struct timespec started; /* the times of directories (the catalog keeps none) */
};

int dfs_mount_fs_create(dfs_client *c, dfs_mount_spool *sp, const struct dfs_mount_fs_config *cfg,
                        dfs_mount_fs **out)
{
    dfs_mount_fs *fs = calloc(1, sizeof *fs);
    if (fs == NULL)
        return DFS_ENOMEM;
    fs->c = c;
    fs->sp = sp;
    fs->cfg = *cfg;
    pthread_mutex_init(&fs->mu, NULL);
    clock_gettime(CLOCK_REALTIME, &fs->started);
    *out = fs;
    return DFS_OK;
}

void dfs_mount_fs_destroy(dfs_mount_fs *fs)
{
    if (fs == NULL)
        return;
    while (fs->attrs != NULL) {
        struct attr *a = fs->attrs;
        fs->attrs = a->next;
        free(a->path);
        free(a);
    }
    /* ofiles are freed by their last release; any left here belong to handles never released */
    pthread_mutex_destroy(&fs->mu);
    free(fs);
}

static dfs_mount_fs *ctx(void)
{
    return fuse_get_context()->private_data;
}

/* A DFS_ code as a negative errno for FUSE. */
static int neg_errno(int rc)
{
    switch (rc) {
    case DFS_OK:
        return 0;
    case DFS_ENOTFOUND:
        return -ENOENT;
    case DFS_EEXIST:
        return -EEXIST;
    case DFS_ENOSPC:
        return -ENOSPC;
    case DFS_EPERM:
    case DFS_EUNAUTH:
        return -EACCES;
    case DFS_EINVAL:
        return -EINVAL;
    case DFS_ENOMEM:
        return -ENOMEM;
    case DFS_ETIMEDOUT:
        return -ETIMEDOUT;
    case DFS_ECANCELED:
        return -EINTR;
    case DFS_ERANGE:
        return -EINVAL;
    default:
        return -EIO;
    }
}

/* Log a failed call's reason (warn) and give its errno. */
static int failed(const char *op, const char *path, int rc, char *err)
{
    if (rc != DFS_ENOTFOUND)
        dfs_log(DFS_LOG_WARN, "%s failed path=\"%s\" error=\"%s\"", op, path,
                err != NULL ? err : dfs_strerror(rc));
    free(err);
    return neg_errno(rc);
}

static bool is_root(const char *path)
{
    return strcmp(path, "/") == 0;
}

/* ---- attribute table (under fs->mu) ---------------------------------------------------------- */

static struct attr *attr_find(dfs_mount_fs *fs, const char *path)
{
    for (struct attr *a = fs->attrs; a != NULL; a = a->next)
        if (strcmp(a->path, path) == 0)
            return a;
    return NULL;
}

static struct attr *attr_get(dfs_mount_fs *fs, const char *path)
{
    struct attr *a = attr_find(fs, path);
    if (a != NULL)
        return a;
    a = calloc(1, sizeof *a);
    if (a == NULL || (a->path = strdup(path)) == NULL) {
        free(a);
        return NULL;
    }
    a->next = fs->attrs;
    fs->attrs = a;
    return a;
}

static void attr_drop(dfs_mount_fs *fs, const char *path)
{
    for (struct attr **p = &fs->attrs; *p != NULL; p = &(*p)->next)
        if (strcmp((*p)->path, path) == 0) {
            struct attr *a = *p;
            *p = a->next;
            free(a->path);
            free(a);
            return;
        }
}

static void attr_apply(dfs_mount_fs *fs, const char *path, struct stat *st)
{
    pthread_mutex_lock(&fs->mu);
    struct attr *a = attr_find(fs, path);
    if (a != NULL) {
        if (a->has_mode)
            st->st_mode = (st->st_mode & S_IFMT) | (a->mode & 07777);
        if (a->has_owner) {
            st->st_uid = a->uid;
            st->st_gid = a->gid;
        }
        if (a->has_mtime)
            st->st_mtim = a->mtime;
        if (a->has_atime)
            st->st_atim = a->atime;
    }
    pthread_mutex_unlock(&fs->mu);
}

/* ---- ofiles ---------------------------------------------------------------------------------- */

/* The ofile of path with a reference taken, or NULL. Under fs->mu. */
static struct ofile *ofile_find(dfs_mount_fs *fs, const char *path)
{
    for (struct ofile *of = fs->ofiles; of != NULL; of = of->next)
        if (!of->unlinked && strcmp(of->path, path) == 0) {
            of->refs++;
            return of;
        }
    return NULL;
}

static int commit(dfs_mount_fs *fs, struct ofile *of);
static void keep_parent(dfs_mount_fs *fs, const char *path);

/* Drop a reference; the last one commits what is unsaved (best effort) and frees the ofile. */
static void ofile_put(dfs_mount_fs *fs, struct ofile *of)
{
    pthread_mutex_lock(&fs->mu);
    bool last = --of->refs == 0;
    if (last)
        for (struct ofile **p = &fs->ofiles; *p != NULL; p = &(*p)->next)
            if (*p == of) {
                *p = of->next;
                break;
            }
    pthread_mutex_unlock(&fs->mu);
    if (!last)
        return;
    if (of->dirty && !of->unlinked)
        commit(fs, of);
    if (of->fd >= 0)
        close(of->fd);
    dfs_mount_spool_mem_close(fs->sp, of->buf);
    dfs_mount_spool_release(fs->sp, of->charged);
    dfs_mount_spool_mem_give(fs->sp, of->mem);
    pthread_mutex_destroy(&of->mu);
    free(of->path);
    free(of);
}

/* Store the spool as the new version of the file (of->mu held by the caller or not shared). */
static int commit_locked(dfs_mount_fs *fs, struct ofile *of)
{
    if (!of->dirty || of->unlinked || (of->fd < 0 && of->buf == NULL))
        return 0;
    /* A file in memory is stored from there as it is: the engine reads (hashes, checks, sends)
       the bytes in place, with no copy out of a file first. of->mu, held, keeps them still. */
    struct dfs_client_put_opts po = {.overwrite = true, .from_fd = true, .fd = of->fd};
    if (of->buf != NULL) {
        po.mem = dfs_mount_mem_data(of->buf);
        po.mem_len = dfs_mount_mem_size(of->buf);
    }
    struct dfs_client_put_result res;
    char *err = NULL;
    int rc = dfs_client_put(fs->c, of->path, of->path, &po, &res, &err);
    if (rc != DFS_OK)
        return failed("store", of->path, rc, err);
    of->dirty = false;
    /* Its directories are implied by its path now: this mount need not keep them (a rename by
       another client then moves them with the file). */
    pthread_mutex_lock(&fs->mu);
    for (char *slash = strrchr(of->path, '/'); slash != NULL && slash != of->path;
         slash = memrchr(of->path, '/', (size_t)(slash - of->path))) {
        *slash = '\0';
        struct attr *a = attr_find(fs, of->path);
        if (a != NULL && a->is_dir)
            attr_drop(fs, of->path);
        *slash = '/';
    }
    pthread_mutex_unlock(&fs->mu);
    dfs_log(DFS_LOG_DEBUG, "stored path=\"%s\" size=%llu", of->path, (unsigned long long)res.size);
    return 0;
}

static int commit(dfs_mount_fs *fs, struct ofile *of)
{
    pthread_mutex_lock(&of->mu);
    int r = commit_locked(fs, of);
    pthread_mutex_unlock(&of->mu);
    return r;
}

/*
 * Make the spool file able to hold `end` bytes (of->mu held): a memory file takes more of the
 * spool's memory, or when there is none left moves to disk (dfs_mount_spool_spill) and gives back
 * what it held. Returns 0 or a negative errno.
 */
static int spool_room(dfs_mount_fs *fs, struct ofile *of, uint64_t end)
{
    if (of->buf == NULL || end <= of->mem)
        return 0;
    if (dfs_mount_spool_mem_take(fs->sp, end - of->mem)) {
        of->mem = end;
        return 0;
    }
    int fd = -1;
    char *err = NULL;
    int rc = dfs_mount_spool_spill(fs->sp, dfs_mount_mem_data(of->buf), of->size, &fd, &err);
    if (rc != DFS_OK)
        return failed("spool", of->path, rc, err);
    dfs_mount_spool_mem_close(fs->sp, of->buf);
    of->buf = NULL;
    of->fd = fd;
    dfs_mount_spool_mem_give(fs->sp, of->mem);
    of->mem = 0;
    return 0;
}

/*
 * Fetch bytes [0, size) of a file into a memory spool file (size <= its cap): through a memfd
 * (dfs_client_get_range writes to a descriptor), read into place. Returns 0 or a DFS_ code with
 * *errmsg.
 */
static int fetch_to_mem(dfs_mount_fs *fs, const Dfs__V1__FileInfo *info, uint64_t size,
                        dfs_mount_mem *m, char **errmsg)
{
    int tmp = memfd_create("dfs-mount-fetch", MFD_CLOEXEC);
    if (tmp < 0)
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno,
                                "cannot create a file in memory");
    struct dfs_client_get_opts go = {0};
    struct dfs_client_get_result gr;
    int rc = dfs_client_get_range(fs->c, info, 0, size, tmp, fs->cfg.scratch_dir, &go, &gr, errmsg);
    uint8_t *dst = dfs_mount_mem_write_at(m, 0, size);
    uint64_t got = 0;
    while (rc == DFS_OK && got < size) {
        ssize_t n = pread(tmp, dst + got, (size_t)(size - got), (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = dfs_seterr_errno(errmsg, DFS_EIO, n < 0 ? errno : 0,
                                  "cannot read back a fetched file");
        else
            got += (uint64_t)n;
    }
    dfs_mount_mem_wrote(m, 0, got);
    close(tmp);
    return rc;
}

/*
 * The ofile of path ready for writing, with a reference (ofile_put): shared with other handles
 * of the path, else new, its spool holding the file's current content (fetched whole, every
 * check of `dfs get`), nothing with trunc or create. Returns 0 or a negative errno.
 */
static int ofile_open(dfs_mount_fs *fs, const char *path, bool trunc, bool create,
                      struct ofile **out)
{
    pthread_mutex_lock(&fs->mu);
    struct ofile *of = ofile_find(fs, path);
    if (of == NULL) {
        of = calloc(1, sizeof *of);
        if (of == NULL || (of->path = strdup(path)) == NULL) {
            pthread_mutex_unlock(&fs->mu);
            free(of);
            return -ENOMEM;
        }
        pthread_mutex_init(&of->mu, NULL);
        of->fd = -1;
        of->refs = 1;
        of->next = fs->ofiles;
        fs->ofiles = of;
    }
    pthread_mutex_unlock(&fs->mu);

    int r = 0;
    char *err = NULL;
    pthread_mutex_lock(&of->mu);
    if (of->fd < 0 && of->buf == NULL) {
        Dfs__V1__FileInfo *info = NULL;
        int rc = DFS_ENOTFOUND;
        if (!create) {
            rc = dfs_client_stat(fs->c, path, &info, &err);
            if (rc != DFS_OK && !(rc == DFS_ENOTFOUND && trunc)) {
                r = failed("stat", path, rc, err);
                goto out;
            }
            free(err);
            err = NULL;
        }
        /* In memory when the spool has some, else on disk. */
        if (dfs_mount_spool_mem_open(fs->sp, &of->buf, NULL) != DFS_OK &&
            (rc = dfs_mount_spool_file(fs->sp, &of->fd, &err)) != DFS_OK) {
            protobuf_c_message_free_unpacked(&info->base, NULL);
            r = failed("spool", path, rc, err);
            goto out;
        }
        of->size = 0;
        uint64_t size = info != NULL && !trunc ? info->size : 0;
        if (size > 0) {
            rc = dfs_mount_spool_reserve(fs->sp, size, &err);
            if (rc == DFS_OK) {
                of->charged = size;
                r = spool_room(fs, of, size);
                struct dfs_client_get_opts go = {0};
                struct dfs_client_get_result gr;
                if (r == 0 && of->buf == NULL)
                    rc = dfs_client_get_range(fs->c, info, 0, size, of->fd, fs->cfg.scratch_dir,
                                              &go, &gr, &err);
                else if (r == 0)
                    rc = fetch_to_mem(fs, info, size, of->buf, &err);
            }
            if (rc != DFS_OK || r != 0) {
                if (of->fd >= 0)
                    close(of->fd);
                of->fd = -1;
                dfs_mount_spool_mem_close(fs->sp, of->buf);
                of->buf = NULL;
                dfs_mount_spool_mem_give(fs->sp, of->mem);
                of->mem = 0;
                protobuf_c_message_free_unpacked(&info->base, NULL);
                if (r == 0)
                    r = failed("fetch", path, rc, err);
                goto out;
            }
        }
        if (info != NULL)
            protobuf_c_message_free_unpacked(&info->base, NULL);
        of->size = size;
        /* A new or truncated file exists as soon as it is closed, even empty. */
        of->dirty = create || trunc;
    } else if (trunc) {
        if (of->buf != NULL) {
            dfs_mount_mem_resize(of->buf, 0);
        } else if (ftruncate(of->fd, 0) != 0) {
            r = -errno;
            goto out;
        }
        dfs_mount_spool_release(fs->sp, of->charged);
        of->charged = 0;
        dfs_mount_spool_mem_give(fs->sp, of->mem);
        of->mem = 0;
        of->size = 0;
        of->dirty = true;
    }
out:
    pthread_mutex_unlock(&of->mu);
    if (r != 0) {
        ofile_put(fs, of);
        return r;
    }
    *out = of;
    return 0;
}

/* Set the spool's size (of->mu held). */
static int resize_locked(dfs_mount_fs *fs, struct ofile *of, uint64_t size)
{
    if (size > of->charged) {
        char *err = NULL;
        int rc = dfs_mount_spool_reserve(fs->sp, size - of->charged, &err);
        if (rc != DFS_OK)
            return failed("truncate", of->path, rc, err);
        of->charged = size;
    }
    int r = spool_room(fs, of, size);
    if (r != 0)
        return r;
    if (of->buf != NULL)
        dfs_mount_mem_resize(of->buf, size);
    else if (ftruncate(of->fd, (off_t)size) != 0)
        return -errno;
    if (of->buf != NULL && size < of->mem) {
        dfs_mount_spool_mem_give(fs->sp, of->mem - size);
        of->mem = size;
    }
    if (size < of->charged) {
        dfs_mount_spool_release(fs->sp, of->charged - size);
        of->charged = size;
    }
    of->size = size;
    of->dirty = true;
    return 0;
}

/* ---- attributes ------------------------------------------------------------------------------ */

static void fill_dir(dfs_mount_fs *fs, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    st->st_uid = fs->cfg.uid;
    st->st_gid = fs->cfg.gid;
    st->st_blksize = 128 << 10;
    st->st_mtim = st->st_atim = st->st_ctim = fs->started;
}

static void fill_file(dfs_mount_fs *fs, struct stat *st, uint64_t size, int64_t mtime_ms)
{
    memset(st, 0, sizeof *st);
    st->st_mode = S_IFREG | 0644;
    st->st_nlink = 1;
    st->st_uid = fs->cfg.uid;
    st->st_gid = fs->cfg.gid;
    st->st_size = (off_t)size;
    st->st_blocks = (blkcnt_t)((size + 511) / 512);
    st->st_blksize = 128 << 10;
    st->st_mtim.tv_sec = mtime_ms / 1000;
    st->st_mtim.tv_nsec = (mtime_ms % 1000) * 1000000;
    st->st_atim = st->st_mtim;
    st->st_ctim = st->st_mtim;
}

/* Whether any committed file lies under directory path. Returns 1, 0 or a negative errno. */
static int has_files_under(dfs_mount_fs *fs, const char *path)
{
    char *prefix = NULL;
    if (asprintf(&prefix, "%s/", path) < 0)
        return -ENOMEM;
    Dfs__V1__ListFilesResponse *page = NULL;
    char *err = NULL;
    int rc = dfs_client_ls(fs->c, prefix, 1, NULL, &page, &err);
    free(prefix);
    if (rc != DFS_OK)
        return failed("list", path, rc, err);
    int any = page->n_files > 0;
    protobuf_c_message_free_unpacked(&page->base, NULL);
    return any;
}

/* Whether this mount knows a directory at path or anything (a directory, an open file) under
   it. Under fs->mu. */
static bool known_dir(dfs_mount_fs *fs, const char *path, bool children)
{
    size_t n = strlen(path);
    for (struct attr *a = fs->attrs; a != NULL; a = a->next)
        if (a->is_dir && strncmp(a->path, path, n) == 0 &&
            (a->path[n] == '\0' ? !children : a->path[n] == '/'))
            return true;
    for (struct ofile *of = fs->ofiles; of != NULL; of = of->next)
        if (!of->unlinked && strncmp(of->path, path, n) == 0 && of->path[n] == '/')
            return true;
    return false;
}

/* The attributes the catalog keeps for path (dfs_client_attrs_get): applied to st when given;
   *is_dir says whether it is an explicit directory. Returns 0 or a negative errno. */
static int catalog_attrs(dfs_mount_fs *fs, const char *path, struct stat *st, bool *is_dir)
{
    Dfs__V1__GetAttributesResponse *r = NULL;
    char *err = NULL;
    int rc = dfs_client_attrs_get(fs->c, path, false, &r, &err);
    if (rc != DFS_OK)
        return failed("attributes", path, rc, err);
    const Dfs__V1__PathAttributes *a = r->found ? r->attributes : NULL;
    if (is_dir != NULL)
        *is_dir = a != NULL && a->is_dir;
    if (a != NULL && st != NULL) {
        if (a->has_mode)
            st->st_mode = (st->st_mode & S_IFMT) | (a->mode & 07777);
        if (a->has_owner) {
            st->st_uid = a->uid;
            st->st_gid = a->gid;
        }
        if (a->has_mtime) {
            st->st_mtim.tv_sec = a->mtime_ms / 1000;
            st->st_mtim.tv_nsec = (a->mtime_ms % 1000) * 1000000;
        }
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

/* Keep attributes in the catalog (issue 18); "/" has none there. Returns 0 or a negative errno. */
static int catalog_set(dfs_mount_fs *fs, const char *path, const Dfs__V1__PathAttributes *a,
                       bool remove)
{
    if (is_root(path))
        return 0;
    char *err = NULL;
    int rc = dfs_client_attrs_set(fs->c, path, a, remove, &err);
    return rc == DFS_OK ? (free(err), 0) : failed("set attributes", path, rc, err);
}

static int do_getattr(dfs_mount_fs *fs, const char *path, struct stat *st)
{
    if (is_root(path)) {
        fill_dir(fs, st);
        attr_apply(fs, path, st);
        return 0;
    }
    pthread_mutex_lock(&fs->mu);
    struct ofile *of = ofile_find(fs, path);
    bool dir = of == NULL && (known_dir(fs, path, false) || known_dir(fs, path, true));
    pthread_mutex_unlock(&fs->mu);
    if (of != NULL) {
        fill_file(fs, st, of->size, 0);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        st->st_mtim = st->st_atim = st->st_ctim = now;
        ofile_put(fs, of);
        attr_apply(fs, path, st);
        return 0;
    }
    if (dir) {
        fill_dir(fs, st);
        attr_apply(fs, path, st);
        return 0;
    }
    Dfs__V1__FileInfo *info = NULL;
    char *err = NULL;
    int rc = dfs_client_stat(fs->c, path, &info, &err);
    if (rc == DFS_OK) {
        fill_file(fs, st, info->size,
                  info->committed_ms != 0 ? info->committed_ms : info->created_ms);
        protobuf_c_message_free_unpacked(&info->base, NULL);
        int r = catalog_attrs(fs, path, st, NULL);
        if (r != 0)
            return r;
        attr_apply(fs, path, st);
        return 0;
    }
    if (rc != DFS_ENOTFOUND)
        return failed("stat", path, rc, err);
    free(err);
    int any = has_files_under(fs, path);
    if (any < 0)
        return any;
    fill_dir(fs, st);
    bool explicit_dir = false;
    int r = catalog_attrs(fs, path, st, &explicit_dir);
    if (r != 0)
        return r;
    if (!any && !explicit_dir)
        return -ENOENT;
    attr_apply(fs, path, st);
    return 0;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    (void)fi;
    return do_getattr(ctx(), path, st);
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    dfs_mount_fs *fs = ctx();
    /* Fewer, larger requests: writes and reads of up to 1 MiB each (libfuse asks the kernel for
       the pages that takes). Written data is not asked for in a pipe (FUSE_CAP_SPLICE_READ): that
       measured no less CPU per GiB than this process copying it. */
    conn->max_write = DFS_MOUNT_MAX_IO;
    conn->max_readahead = DFS_MOUNT_MAX_IO; /* libfuse lowers it to what the kernel offers */

    cfg->attr_timeout = fs->cfg.attr_timeout;
    cfg->entry_timeout = fs->cfg.entry_timeout;
    cfg->negative_timeout = fs->cfg.negative_timeout;
    cfg->hard_remove = 1; /* no .fuse_hidden files: an unlinked open file stays readable here */
    cfg->use_ino = 0;
    return fs;
}

static int fs_statfs(const char *path, struct statvfs *sv)
{
    dfs_mount_fs *fs = ctx();
    Dfs__V1__ListNodesResponse *nodes = NULL;
    char *err = NULL;
    int rc = dfs_client_nodes(fs->c, &nodes, &err);
    if (rc != DFS_OK)
        return failed("statfs", path, rc, err);
    uint64_t cap = 0, avail = 0;
    for (size_t i = 0; i < nodes->n_nodes; i++) {
        const Dfs__V1__Node *n = nodes->nodes[i];
        if (n->state != DFS__V1__NODE_STATE__NODE_ALIVE)
            continue;
        cap += n->capacity_bytes;
        avail += n->free_bytes;
    }
    protobuf_c_message_free_unpacked(&nodes->base, NULL);
    memset(sv, 0, sizeof *sv);
    sv->f_bsize = sv->f_frsize = 4096;
    sv->f_blocks = cap / 4096;
    sv->f_bfree = sv->f_bavail = avail / 4096;
    sv->f_namemax = 255;
    return 0;
}

/* ---- directories ----------------------------------------------------------------------------- */

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)offset;
    (void)fi;
    (void)flags;
    dfs_mount_fs *fs = ctx();
    dfs_dirlist *l = dfs_dirlist_create(path);
    if (l == NULL)
        return -ENOMEM;
    int r = 0;
    char *token = NULL;
    bool any_file = false;
    for (;;) {
        Dfs__V1__ListFilesResponse *page = NULL;
        char *err = NULL;
        int rc = dfs_client_ls(fs->c, dfs_dirlist_prefix(l), fs->cfg.list_page, token, &page, &err);
        if (rc != DFS_OK) {
            r = failed("list", path, rc, err);
            break;
        }
        for (size_t i = 0; i < page->n_files && r == 0; i++) {
            any_file = true;
            if (dfs_dirlist_add(l, page->files[i]->path, false) != DFS_OK)
                r = -ENOMEM;
        }
        free(token);
        token = NULL;
        if (page->next_page_token != NULL && page->next_page_token[0] != '\0')
            token = strdup(page->next_page_token);
        protobuf_c_message_free_unpacked(&page->base, NULL);
        if (token == NULL || r != 0)
            break;
    }
    free(token);
    bool known = false;
    if (r == 0) {
        /* explicit directories the catalog keeps */
        Dfs__V1__GetAttributesResponse *cat = NULL;
        char *err = NULL;
        int rc = dfs_client_attrs_get(fs->c, path, true, &cat, &err);
        if (rc != DFS_OK) {
            r = failed("attributes", path, rc, err);
        } else {
            known = cat->found && cat->attributes != NULL && cat->attributes->is_dir;
            for (size_t i = 0; i < cat->n_dirs && r == 0; i++)
                if (dfs_dirlist_add(l, cat->dirs[i], true) != DFS_OK)
                    r = -ENOMEM;
            protobuf_c_message_free_unpacked(&cat->base, NULL);
        }
    }
    if (r == 0) {
        pthread_mutex_lock(&fs->mu);
        known = known || known_dir(fs, path, false);
        for (struct attr *a = fs->attrs; a != NULL && r == 0; a = a->next)
            if (a->is_dir && dfs_dirlist_add(l, a->path, true) != DFS_OK)
                r = -ENOMEM;
        for (struct ofile *of = fs->ofiles; of != NULL && r == 0; of = of->next)
            if (!of->unlinked && dfs_dirlist_add(l, of->path, false) != DFS_OK)
                r = -ENOMEM;
        pthread_mutex_unlock(&fs->mu);
    }
    dfs_dirlist_finish(l);
    if (r == 0 && !is_root(path) && !any_file && !known && dfs_dirlist_count(l) == 0)
        r = -ENOENT;
    if (r == 0) {
        filler(buf, ".", NULL, 0, 0);
        filler(buf, "..", NULL, 0, 0);
        for (size_t i = 0; i < dfs_dirlist_count(l); i++) {
            bool d;
            const char *name = dfs_dirlist_entry(l, i, &d);
            struct stat st = {.st_mode = d ? S_IFDIR : S_IFREG};
            if (filler(buf, name, &st, 0, 0) != 0)
                break;
        }
    }
    dfs_dirlist_destroy(l);
    return r;
}

static int fs_mkdir(const char *path, mode_t mode)
{
    dfs_mount_fs *fs = ctx();
    struct stat st;
    int r = do_getattr(fs, path, &st);
    if (r == 0)
        return -EEXIST;
    if (r != -ENOENT)
        return r;
    struct fuse_context *fc = fuse_get_context();
    Dfs__V1__PathAttributes pa = DFS__V1__PATH_ATTRIBUTES__INIT;
    pa.is_dir = true;
    pa.has_mode = true;
    pa.mode = mode & 07777;
    pa.has_owner = true;
    pa.uid = fc->uid;
    pa.gid = fc->gid;
    r = catalog_set(fs, path, &pa, false);
    if (r != 0)
        return r;
    pthread_mutex_lock(&fs->mu);
    struct attr *a = attr_get(fs, path);
    if (a != NULL) {
        a->is_dir = true;
        a->has_mode = true;
        a->mode = mode & 07777;
        a->has_owner = true;
        a->uid = fc->uid;
        a->gid = fc->gid;
    }
    pthread_mutex_unlock(&fs->mu);
    return a != NULL ? 0 : -ENOMEM;
}

static int fs_rmdir(const char *path)
{
    dfs_mount_fs *fs = ctx();
    if (is_root(path))
        return -EBUSY;
    int any = has_files_under(fs, path);
    if (any < 0)
        return any;
    Dfs__V1__GetAttributesResponse *cat = NULL;
    char *err = NULL;
    int rc = dfs_client_attrs_get(fs->c, path, true, &cat, &err);
    if (rc != DFS_OK)
        return failed("attributes", path, rc, err);
    bool cat_dir = cat->found && cat->attributes != NULL && cat->attributes->is_dir;
    bool cat_children = cat->n_dirs > 0;
    protobuf_c_message_free_unpacked(&cat->base, NULL);
    pthread_mutex_lock(&fs->mu);
    int r = 0;
    struct attr *a = attr_find(fs, path);
    bool mem_dir = a != NULL && a->is_dir;
    if (any || cat_children || known_dir(fs, path, true))
        r = -ENOTEMPTY;
    else if (!mem_dir && !cat_dir)
        r = -ENOENT;
    else
        attr_drop(fs, path);
    pthread_mutex_unlock(&fs->mu);
    if (r == 0)
        r = catalog_set(fs, path, NULL, true);
    if (r == 0)
        keep_parent(fs, path);
    return r;
}

/* ---- files ----------------------------------------------------------------------------------- */

/*
 * Streaming sequential reads. A fetch of a whole read-ahead window (the reads are sequential) at
 * offset off starts one dfs_client_get_range of [off, end of file) into a pipe, run by a thread,
 * and the windows that follow are read from the pipe as the get delivers them: one fetch's set-up
 * (layout, scratch file, streams to the nodes) for the rest of the file instead of one per window,
 * and a dozen ranges in flight over every copy, as `dfs get` has. The get checks every block
 * before it writes it to the pipe, so what is read from the pipe is checked; a failed get ends the
 * pipe early and the read fails with its error. A fetch elsewhere (a random read, a seek) closes
 * the pipe, which stops the get (EPIPE: DFS_ECANCELED; SIGPIPE is ignored).
 */
struct stream_job {
    dfs_client *c;
    const Dfs__V1__FileInfo *info;
    const char *scratch_dir;
    uint64_t off, len;
    int out; /* the pipe's write end, closed by the thread when the get ends */
    int rc;
    char *err;
};

static void *stream_main(void *arg)
{
    struct stream_job *j = arg;
    struct dfs_client_get_opts go = {0};
    struct dfs_client_get_result gr;
    j->rc = dfs_client_get_range(j->c, j->info, j->off, j->len, j->out, j->scratch_dir, &go, &gr,
                                 &j->err);
    close(j->out);
    return NULL;
}

/* End the handle's stream (closing the pipe stops a get still running): its rc and *err (may be
   NULL: dropped). */
static int stream_stop(struct handle *h, char **err)
{
    if (!h->st_on)
        return DFS_OK;
    close(h->st_fd);
    pthread_join(h->st_thread, NULL);
    int rc = h->st_job->rc;
    if (err != NULL)
        *err = h->st_job->err;
    else
        free(h->st_job->err);
    free(h->st_job);
    h->st_job = NULL;
    h->st_on = false;
    return rc;
}

static int stream_start(struct handle *h, uint64_t off, char **errmsg)
{
    struct stream_job *j = calloc(1, sizeof *j);
    int p[2];
    if (j == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    if (pipe2(p, O_CLOEXEC) != 0) {
        free(j);
        return dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot make a pipe");
    }
    (void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20); /* fewer wake-ups; the default 64 KiB works too */
    *j = (struct stream_job){.c = h->fs->c,
                             .info = h->info,
                             .scratch_dir = h->fs->cfg.scratch_dir,
                             .off = off,
                             .len = h->info->size - off,
                             .out = p[1]};
    if (pthread_create(&h->st_thread, NULL, stream_main, j) != 0) {
        close(p[0]);
        close(p[1]);
        free(j);
        return dfs_seterr(errmsg, DFS_EIO, "cannot start a reader thread");
    }
    h->st_on = true;
    h->st_fd = p[0];
    h->st_pos = off;
    h->st_job = j;
    return DFS_OK;
}

/* [off, off + len) from the stream (st_pos == off): all of it, or the get's error. */
static int stream_read(struct handle *h, uint64_t len, uint8_t *buf, char **errmsg)
{
    uint64_t got = 0;
    while (got < len) {
        ssize_t n = read(h->st_fd, buf + got, (size_t)(len - got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : 0;
            char *err = NULL;
            int rc = stream_stop(h, &err);
            if (rc != DFS_OK) {
                if (err != NULL && errmsg != NULL)
                    *errmsg = err;
                else
                    free(err);
                return rc;
            }
            free(err);
            return e != 0 ? dfs_seterr_errno(errmsg, DFS_EIO, e, "cannot read the fetch's pipe")
                          : dfs_seterr(errmsg, DFS_EIO, "the fetch ended %llu bytes short",
                                       (unsigned long long)(len - got));
        }
        got += (uint64_t)n;
        h->st_pos += (uint64_t)n;
    }
    return DFS_OK;
}

/* The read-ahead's fetch: the handle's stream for sequential windows (above), else a byte range
   through the engine of `dfs get`, into the handle's memfd. */
static int fetch_range(void *arg, uint64_t off, uint64_t len, uint8_t *buf, char **errmsg)
{
    struct handle *h = arg;
    /* A little ahead of the stream (reads that came out of order): skip to it. */
    if (h->st_on && off > h->st_pos && off - h->st_pos <= h->fs->cfg.read_max) {
        uint64_t skip = off - h->st_pos;
        int rc = DFS_OK;
        while (rc == DFS_OK && skip > 0) {
            uint64_t n = skip < len ? skip : len;
            rc = stream_read(h, n, buf, errmsg);
            skip -= n;
        }
        if (rc != DFS_OK)
            return rc;
    }
    if (h->st_on && off == h->st_pos)
        return stream_read(h, len, buf, errmsg);
    stream_stop(h, NULL);
    if (len >= h->fs->cfg.read_max && off + len < h->info->size) {
        int rc = stream_start(h, off, errmsg);
        if (rc == DFS_OK)
            return stream_read(h, len, buf, errmsg);
        if (errmsg != NULL) { /* no thread or pipe: fetch the window alone */
            free(*errmsg);
            *errmsg = NULL;
        }
    }
    if (ftruncate(h->memfd, 0) != 0 || lseek(h->memfd, 0, SEEK_SET) != 0)
        return dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot reset the read buffer");
    struct dfs_client_get_opts go = {0};
    struct dfs_client_get_result gr;
    int rc = dfs_client_get_range(h->fs->c, h->info, off, len, h->memfd, h->fs->cfg.scratch_dir,
                                  &go, &gr, errmsg);
    if (rc != DFS_OK)
        return rc;
    uint64_t got = 0;
    while (got < len) {
        ssize_t n = pread(h->memfd, buf + got, (size_t)(len - got), (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return dfs_seterr(errmsg, DFS_EIO, "short range: %llu of %llu bytes",
                              (unsigned long long)got, (unsigned long long)len);
        got += (uint64_t)n;
    }
    return DFS_OK;
}

static void handle_free(struct handle *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->fs->mu);
    if (h->prev != NULL)
        h->prev->next = h->next;
    else if (h->fs->handles == h)
        h->fs->handles = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&h->fs->mu);
    if (h->of != NULL)
        ofile_put(h->fs, h->of);
    dfs_readahead_destroy(h->ra);
    stream_stop(h, NULL);
    if (h->memfd >= 0)
        close(h->memfd);
    if (h->info != NULL)
        protobuf_c_message_free_unpacked(&h->info->base, NULL);
    free(h);
}

static struct handle *handle_new(dfs_mount_fs *fs, int flags)
{
    struct handle *h = calloc(1, sizeof *h);
    if (h != NULL) {
        h->fs = fs;
        h->memfd = -1;
        h->append = (flags & O_APPEND) != 0;
        pthread_mutex_lock(&fs->mu);
        h->next = fs->handles;
        if (fs->handles != NULL)
            fs->handles->prev = h;
        fs->handles = h;
        pthread_mutex_unlock(&fs->mu);
    }
    return h;
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
    dfs_mount_fs *fs = ctx();
    struct handle *h = handle_new(fs, fi->flags);
    if (h == NULL)
        return -ENOMEM;
    bool writes = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC) != 0;
    int r = 0;
    if (writes) {
        r = ofile_open(fs, path, (fi->flags & O_TRUNC) != 0, false, &h->of);
    } else {
        pthread_mutex_lock(&fs->mu);
        h->of = ofile_find(fs, path);
        pthread_mutex_unlock(&fs->mu);
        if (h->of == NULL) {
            char *err = NULL;
            int rc = dfs_client_stat(fs->c, path, &h->info, &err);
            if (rc != DFS_OK)
                r = failed("stat", path, rc, err);
            else if ((h->memfd = memfd_create("dfs-mount-read", MFD_CLOEXEC)) < 0)
                r = -errno;
            else if (dfs_readahead_create(h->info->size, fs->cfg.read_min, fs->cfg.read_max,
                                          fetch_range, h, &h->ra) != DFS_OK)
                r = -ENOMEM;
        }
    }
    if (r != 0) {
        handle_free(h);
        return r;
    }
    fi->fh = (uint64_t)(uintptr_t)h;
    return 0;
}

static int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    dfs_mount_fs *fs = ctx();
    struct handle *h = handle_new(fs, fi->flags);
    if (h == NULL)
        return -ENOMEM;
    int r = ofile_open(fs, path, true, true, &h->of);
    if (r != 0) {
        handle_free(h);
        return r;
    }
    struct fuse_context *fc0 = fuse_get_context();
    Dfs__V1__PathAttributes pa = DFS__V1__PATH_ATTRIBUTES__INIT;
    pa.has_mode = true;
    pa.mode = mode & 07777;
    pa.has_owner = true;
    pa.uid = fc0->uid;
    pa.gid = fc0->gid;
    catalog_set(fs, path, &pa, false); /* logged if it fails: then kept by this mount only */
    pthread_mutex_lock(&fs->mu);
    struct attr *a = attr_get(fs, path);
    if (a != NULL) {
        a->has_mode = true;
        a->mode = mode & 07777;
        struct fuse_context *fc = fuse_get_context();
        a->has_owner = true;
        a->uid = fc->uid;
        a->gid = fc->gid;
    }
    pthread_mutex_unlock(&fs->mu);
    fi->fh = (uint64_t)(uintptr_t)h;
    return 0;
}

static struct handle *handle_of(struct fuse_file_info *fi)
{
    return (struct handle *)(uintptr_t)fi->fh;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    struct handle *h = handle_of(fi);
    if (h->of != NULL) {
        pthread_mutex_lock(&h->of->mu);
        size_t got = 0;
        int r = 0;
        if (h->of->buf != NULL) {
            uint64_t end = dfs_mount_mem_size(h->of->buf);
            got = (uint64_t)off >= end         ? 0
                  : end - (uint64_t)off < size ? (size_t)(end - (uint64_t)off)
                                               : size;
            memcpy(buf, dfs_mount_mem_data(h->of->buf) + off, got);
        }
        while (h->of->buf == NULL && got < size) {
            ssize_t n = pread(h->of->fd, buf + got, size - got, off + (off_t)got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                r = -errno;
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        pthread_mutex_unlock(&h->of->mu);
        return r != 0 ? r : (int)got;
    }
    size_t got = 0;
    char *err = NULL;
    int rc = dfs_readahead_read(h->ra, (uint64_t)off, size, (uint8_t *)buf, &got, &err);
    if (rc != DFS_OK)
        return failed("read", path, rc, err);
    return (int)got;
}

/* Writes land in the spool (data in a pipe, should libfuse hand it over so, is spliced there). */
static int fs_write_buf(const char *path, struct fuse_bufvec *in, off_t off,
                        struct fuse_file_info *fi)
{
    (void)path;
    struct handle *h = handle_of(fi);
    struct ofile *of = h->of;
    if (of == NULL)
        return -EBADF;
    dfs_mount_fs *fs = h->fs;
    size_t size = fuse_buf_size(in);
    pthread_mutex_lock(&of->mu);
    if (h->append)
        off = (off_t)of->size;
    uint64_t end = (uint64_t)off + size;
    int r = 0;
    if (end > of->charged) {
        char *err = NULL;
        int rc = dfs_mount_spool_reserve(fs->sp, end - of->charged, &err);
        if (rc != DFS_OK) {
            r = failed("write", of->path, rc, err);
            goto out;
        }
        of->charged = end;
    }
    r = spool_room(fs, of, end);
    if (r != 0)
        goto out;
    struct fuse_bufvec dst = FUSE_BUFVEC_INIT(size);
    if (of->buf != NULL) {
        /* in place: spool_room made end fit in the memory taken, no more than the mapping */
        dst.buf[0].mem = dfs_mount_mem_write_at(of->buf, (uint64_t)off, size);
    } else {
        dst.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
        dst.buf[0].fd = of->fd;
        dst.buf[0].pos = off;
    }
    ssize_t n = fuse_buf_copy(&dst, in, 0);
    size_t done = n > 0 ? (size_t)n : 0;
    if (of->buf != NULL)
        dfs_mount_mem_wrote(of->buf, (uint64_t)off, done);
    if (n < 0)
        r = (int)n;
    else if (done < size)
        r = -EIO;
    if (done > 0) {
        of->dirty = true;
        if ((uint64_t)off + done > of->size)
            of->size = (uint64_t)off + done;
        r = (int)done; /* a short write: the caller retries the rest and sees its error */
    }
out:
    pthread_mutex_unlock(&of->mu);
    return r;
}

static int fs_flush(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    struct handle *h = handle_of(fi);
    return h->of != NULL ? commit(h->fs, h->of) : 0;
}

static int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)datasync;
    return fs_flush(path, fi);
}

static int fs_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    handle_free(handle_of(fi));
    return 0;
}

static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    dfs_mount_fs *fs = ctx();
    if (size < 0)
        return -EINVAL;
    if (fi != NULL && handle_of(fi)->of != NULL) {
        struct ofile *of = handle_of(fi)->of;
        pthread_mutex_lock(&of->mu);
        int r = resize_locked(fs, of, (uint64_t)size);
        pthread_mutex_unlock(&of->mu);
        return r;
    }
    struct ofile *of = NULL;
    int r = ofile_open(fs, path, size == 0, false, &of);
    if (r != 0)
        return r;
    pthread_mutex_lock(&of->mu);
    r = resize_locked(fs, of, (uint64_t)size);
    if (r == 0)
        r = commit_locked(fs, of);
    pthread_mutex_unlock(&of->mu);
    ofile_put(fs, of);
    return r;
}

/* The directory of path stays when its last file goes (POSIX: unlink and rename leave the
   directory; the store would forget one that only paths implied): keep it here, explicit. */
static void keep_parent(dfs_mount_fs *fs, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL || slash == path)
        return;
    char *dir = strndup(path, (size_t)(slash - path));
    if (dir == NULL)
        return;
    pthread_mutex_lock(&fs->mu);
    struct attr *a = attr_get(fs, dir);
    if (a != NULL)
        a->is_dir = true;
    pthread_mutex_unlock(&fs->mu);
    Dfs__V1__PathAttributes pa = DFS__V1__PATH_ATTRIBUTES__INIT;
    pa.is_dir = true;
    catalog_set(fs, dir, &pa, false); /* logged if it fails: the directory then lasts this mount */
    free(dir);
}

static int fs_unlink(const char *path)
{
    dfs_mount_fs *fs = ctx();
    char *err = NULL;
    int rc = dfs_client_rm(fs->c, path, NULL, &err);
    /* A file being written here that was never stored: removing it means not storing it. */
    pthread_mutex_lock(&fs->mu);
    struct ofile *of = ofile_find(fs, path);
    pthread_mutex_unlock(&fs->mu);
    if (of != NULL) {
        pthread_mutex_lock(&of->mu);
        of->unlinked = true;
        pthread_mutex_unlock(&of->mu);
        ofile_put(fs, of);
    }
    pthread_mutex_lock(&fs->mu);
    attr_drop(fs, path);
    pthread_mutex_unlock(&fs->mu);
    if (rc == DFS_OK || of != NULL)
        keep_parent(fs, path);
    if (rc == DFS_ENOTFOUND && of != NULL)
        rc = DFS_OK;
    if (rc != DFS_OK)
        return failed("unlink", path, rc, err);
    free(err);
    catalog_set(fs, path, NULL, true); /* its mode and owner go with it (logged if not) */
    return 0;
}

/* p moved by a rename of from to to: a malloc'd new path, or NULL when p is not from or under
   it (or out of memory). */
static char *moved_path(const char *p, const char *from, const char *to)
{
    size_t n = strlen(from);
    if (strncmp(p, from, n) != 0 || (p[n] != '\0' && p[n] != '/'))
        return NULL;
    char *out = NULL;
    return asprintf(&out, "%s%s", to, p + n) < 0 ? NULL : out;
}

/* After the catalog renamed: files being written and what this mount keeps follow. */
static void rename_local(dfs_mount_fs *fs, const char *from, const char *to)
{
    pthread_mutex_lock(&fs->mu);
    size_t n = 0;
    for (struct ofile *of = fs->ofiles; of != NULL; of = of->next)
        n++;
    struct ofile **v = calloc(n + 1, sizeof *v);
    size_t k = 0;
    for (struct ofile *of = fs->ofiles; of != NULL && v != NULL; of = of->next)
        if (!of->unlinked) {
            of->refs++;
            v[k++] = of;
        }
    /* what was at `to` is replaced */
    attr_drop(fs, to);
    for (struct attr *a = fs->attrs; a != NULL; a = a->next) {
        char *np = moved_path(a->path, from, to);
        if (np != NULL) {
            free(a->path);
            a->path = np;
        }
    }
    pthread_mutex_unlock(&fs->mu);
    for (size_t i = 0; i < k; i++) {
        struct ofile *of = v[i];
        pthread_mutex_lock(&of->mu);
        pthread_mutex_lock(&fs->mu);
        char *np = moved_path(of->path, from, to);
        if (np != NULL) {
            free(of->path);
            of->path = np;
        } else if (strcmp(of->path, to) == 0) {
            of->unlinked = true; /* replaced: its writes must not come back over the new file */
        }
        pthread_mutex_unlock(&fs->mu);
        pthread_mutex_unlock(&of->mu);
        ofile_put(fs, of);
    }
    free(v);
}

/*
 * rename: one catalog operation (Rename) for a file or a whole directory, so other clients see
 * the old names or the new ones, never a mix. A file being written here is stored first; then
 * it, and everything this mount keeps under the old name, follows.
 */
static int fs_rename(const char *from, const char *to, unsigned int flags)
{
    dfs_mount_fs *fs = ctx();
    if ((flags & ~(unsigned)RENAME_NOREPLACE) != 0)
        return -EINVAL;
    bool replace = (flags & RENAME_NOREPLACE) == 0;
    pthread_mutex_lock(&fs->mu);
    struct ofile *of = ofile_find(fs, from);
    pthread_mutex_unlock(&fs->mu);
    int r = 0;
    if (of != NULL && (r = commit(fs, of)) != 0) {
        ofile_put(fs, of);
        return r;
    }
    struct stat fst, tst;
    bool from_dir = do_getattr(fs, from, &fst) == 0 && S_ISDIR(fst.st_mode);
    bool to_dir = do_getattr(fs, to, &tst) == 0 && S_ISDIR(tst.st_mode);
    uint64_t moved = 0;
    char *err = NULL;
    int rc = dfs_client_rename(fs->c, from, to, replace, &moved, &err);
    if (rc == DFS_ENOTFOUND) {
        /* nothing stored: an empty directory made here (or a file never stored) */
        pthread_mutex_lock(&fs->mu);
        bool known = of != NULL || known_dir(fs, from, false) || known_dir(fs, from, true);
        pthread_mutex_unlock(&fs->mu);
        if (known) {
            free(err);
            err = NULL;
            rc = DFS_OK;
        }
    }
    if (rc == DFS_EEXIST && replace) {
        free(err);
        r = !to_dir ? -ENOTDIR : from_dir ? -ENOTEMPTY : -EISDIR;
    } else if (rc != DFS_OK) {
        r = failed("rename", from, rc, err);
    } else {
        rename_local(fs, from, to);
        keep_parent(fs, from);
    }
    if (of != NULL)
        ofile_put(fs, of);
    return r;
}

/* ---- mode, owner, times (kept by this mount) ------------------------------------------------- */

static int set_attr(const char *path, int what, mode_t mode, uid_t uid, gid_t gid,
                    const struct timespec tv[2])
{
    dfs_mount_fs *fs = ctx();
    struct stat st;
    int r = do_getattr(fs, path, &st);
    if (r != 0)
        return r;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    Dfs__V1__PathAttributes pa = DFS__V1__PATH_ATTRIBUTES__INIT;
    if (what == 0) {
        pa.has_mode = true;
        pa.mode = mode & 07777;
    } else if (what == 1) {
        pa.has_owner = true;
        pa.uid = uid != (uid_t)-1 ? uid : st.st_uid;
        pa.gid = gid != (gid_t)-1 ? gid : st.st_gid;
    } else if (tv[1].tv_nsec != UTIME_OMIT) {
        struct timespec t = tv[1].tv_nsec == UTIME_NOW ? now : tv[1];
        pa.has_mtime = true;
        pa.mtime_ms = (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
    }
    if (what != 2 || pa.has_mtime) {
        r = catalog_set(fs, path, &pa, false);
        if (r != 0)
            return r;
    }
    pthread_mutex_lock(&fs->mu);
    struct attr *a = attr_get(fs, path);
    if (a != NULL) {
        if (what == 0) {
            a->has_mode = true;
            a->mode = mode & 07777;
        } else if (what == 1) {
            a->has_owner = true;
            a->uid = uid != (uid_t)-1 ? uid : st.st_uid;
            a->gid = gid != (gid_t)-1 ? gid : st.st_gid;
        } else {
            for (int i = 0; i < 2; i++) {
                if (tv[i].tv_nsec == UTIME_OMIT)
                    continue;
                struct timespec t = tv[i].tv_nsec == UTIME_NOW ? now : tv[i];
                if (i == 0) {
                    a->has_atime = true;
                    a->atime = t;
                } else {
                    a->has_mtime = true;
                    a->mtime = t;
                }
            }
        }
    }
    pthread_mutex_unlock(&fs->mu);
    return a != NULL ? 0 : -ENOMEM;
}

static int fs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    (void)fi;
    return set_attr(path, 0, mode, 0, 0, NULL);
}

static int fs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    (void)fi;
    return set_attr(path, 1, 0, uid, gid, NULL);
}

static int fs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    (void)fi;
    struct timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
    return set_attr(path, 2, 0, 0, 0, tv != NULL ? tv : now);
}

static void fs_destroy(void *private_data)
{
    dfs_mount_fs *fs = private_data;
    /* Files still open at unmount: store what was written (their handles are gone). */
    pthread_mutex_lock(&fs->mu);
    for (struct ofile *of = fs->ofiles; of != NULL; of = of->next) {
        pthread_mutex_unlock(&fs->mu);
        commit(fs, of);
        pthread_mutex_lock(&fs->mu);
    }
    /* ... and free the handles no release will come for */
    while (fs->handles != NULL) {
        struct handle *h = fs->handles;
        pthread_mutex_unlock(&fs->mu);
        handle_free(h);
        pthread_mutex_lock(&fs->mu);
    }
    pthread_mutex_unlock(&fs->mu);
}

static const struct fuse_operations ops = {
    .getattr = fs_getattr,
    .mkdir = fs_mkdir,
    .unlink = fs_unlink,
    .rmdir = fs_rmdir,
    .rename = fs_rename,
    .chmod = fs_chmod,
    .chown = fs_chown,
    .truncate = fs_truncate,
    .open = fs_open,
    .read = fs_read,
    .write_buf = fs_write_buf,
    .statfs = fs_statfs,
    .flush = fs_flush,
    .release = fs_release,
    .fsync = fs_fsync,
    .readdir = fs_readdir,
    .init = fs_init,
    .destroy = fs_destroy,
    .create = fs_create,
    .utimens = fs_utimens,
};

const struct fuse_operations *dfs_mount_fs_operations(void)
{
    return &ops;
}
