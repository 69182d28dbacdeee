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
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

struct dfs_mount_mem {
    struct dfs_mount_mem *next; /* in sp->kept */
    uint8_t *data;
    uint64_t cap;
    uint64_t size;
    uint64_t touched; /* [0, touched) may hold pages, with any bytes past size */
};

struct dfs_mount_spool {
    pthread_mutex_t mu;
    char *dir;
    uint64_t limit, reserve;
    uint64_t used;                /* under mu */
    uint64_t mem_limit, mem_used; /* memory files: set once; under mu */
    struct dfs_mount_mem *kept;   /* memory files closed, kept for reuse (under mu) */
    unsigned nkept;
    uint64_t kept_bytes; /* the pages they may hold */
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
    while (sp->kept != NULL) {
        struct dfs_mount_mem *m = sp->kept;
        sp->kept = m->next;
        munmap(m->data, (size_t)m->cap);
        free(m);
    }
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

/* A memory file's mapping is a multiple of this. Its pages are the usual 4 KiB ones: transparent
   huge pages (MADV_HUGEPAGE) measured no cheaper once reused and dearer new (3.4 and 5.0 CPU-s
   per GiB for a first 1 GiB file against 2.8; benchmarks/README.md). */
#define HUGE       (2u << 20)
/* Memory files kept for reuse, at most. */
#define KEEP_FILES 8

static uint64_t round_up(uint64_t n, uint64_t to)
{
    return (n + to - 1) / to * to;
}

void dfs_mount_spool_set_memory(dfs_mount_spool *sp, uint64_t limit)
{
    sp->mem_limit = limit;
}

/* A new mapping of cap bytes (address space only until written), or NULL. */
static uint8_t *map_new(uint64_t cap)
{
    uint8_t *p = mmap(NULL, (size_t)cap, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int dfs_mount_spool_mem_open(dfs_mount_spool *sp, dfs_mount_mem **out, char **errmsg)
{
    if (sp->mem_limit == 0)
        return dfs_seterr(errmsg, DFS_ENOSPC, "the spool keeps no files in memory");
    pthread_mutex_lock(&sp->mu);
    dfs_mount_mem *m = sp->kept;
    if (m != NULL) {
        sp->kept = m->next;
        sp->nkept--;
        sp->kept_bytes -= m->touched;
    }
    pthread_mutex_unlock(&sp->mu);
    if (m == NULL) {
        m = calloc(1, sizeof *m);
        if (m == NULL)
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        m->cap = round_up(sp->mem_limit, HUGE);
        m->data = map_new(m->cap);
        if (m->data == NULL) {
            int e = errno;
            free(m);
            return dfs_seterr_errno(errmsg, dfs_err_from_errno(e), e,
                                    "cannot map memory for a spool file");
        }
    }
    m->next = NULL;
    m->size = 0;
    *out = m;
    return DFS_OK;
}

void dfs_mount_spool_mem_close(dfs_mount_spool *sp, dfs_mount_mem *m)
{
    if (m == NULL)
        return;
    /* Its pages stay for the next file until the kernel wants them. */
    uint64_t t = round_up(m->touched, 4096);
    if (t > m->cap)
        t = m->cap;
    if (t > 0)
        madvise(m->data, (size_t)t, MADV_FREE);
    pthread_mutex_lock(&sp->mu);
    bool keep = sp->nkept < KEEP_FILES && sp->kept_bytes <= sp->mem_limit &&
                m->touched <= sp->mem_limit - sp->kept_bytes;
    if (keep) {
        m->next = sp->kept;
        sp->kept = m;
        sp->nkept++;
        sp->kept_bytes += m->touched;
    }
    pthread_mutex_unlock(&sp->mu);
    if (!keep) {
        munmap(m->data, (size_t)m->cap);
        free(m);
    }
}

uint8_t *dfs_mount_mem_data(const dfs_mount_mem *m)
{
    return m->data;
}

uint64_t dfs_mount_mem_size(const dfs_mount_mem *m)
{
    return m->size;
}

uint64_t dfs_mount_mem_cap(const dfs_mount_mem *m)
{
    return m->cap;
}

/* Make [from, to) read as zeros: only what may hold bytes (below touched) needs clearing. */
static void zero(dfs_mount_mem *m, uint64_t from, uint64_t to)
{
    if (to > m->touched)
        to = m->touched;
    if (from < to)
        memset(m->data + from, 0, (size_t)(to - from));
}

uint8_t *dfs_mount_mem_write_at(dfs_mount_mem *m, uint64_t off, uint64_t len)
{
    if (off > m->size)
        zero(m, m->size, off);
    if (off + len > m->touched)
        m->touched = off + len;
    return m->data + off;
}

void dfs_mount_mem_wrote(dfs_mount_mem *m, uint64_t off, uint64_t done)
{
    if (off + done > m->size)
        m->size = off + done;
}

void dfs_mount_mem_resize(dfs_mount_mem *m, uint64_t size)
{
    if (size > m->size) {
        zero(m, m->size, size);
    } else {
        uint64_t from = round_up(size, 4096), to = round_up(m->touched, 4096);
        if (to > m->cap)
            to = m->cap;
        if (from < to)
            madvise(m->data + from, (size_t)(to - from), MADV_FREE);
    }
    m->size = size;
}

void dfs_mount_spool_mem_kept(dfs_mount_spool *sp, unsigned *files, uint64_t *bytes)
{
    pthread_mutex_lock(&sp->mu);
    *files = sp->nkept;
    *bytes = sp->kept_bytes;
    pthread_mutex_unlock(&sp->mu);
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

int dfs_mount_spool_spill(dfs_mount_spool *sp, const uint8_t *data, uint64_t size, int *fd,
                          char **errmsg)
{
    int f = -1;
    int rc = dfs_mount_spool_file(sp, &f, errmsg);
    if (rc != DFS_OK)
        return rc;
    uint64_t at = 0;
    while (at < size) {
        uint64_t left = size - at;
        ssize_t n = pwrite(f, data + at, left > (1u << 30) ? (1u << 30) : (size_t)left, (off_t)at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno,
                                          "cannot move a spool file to %s", sp->dir)
                       : dfs_seterr(errmsg, DFS_EIO, "cannot move a spool file to %s", sp->dir);
            close(f);
            return rc;
        }
        at += (uint64_t)n;
    }
    *fd = f;
    return DFS_OK;
}
