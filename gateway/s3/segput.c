/* A body stored in segments as it arrives, then stitched: see segput.h. */
#include "gateway/s3/segput.h"

#include "common/err.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One segment's bytes, the one filling or the one a worker puts: a buffer of seg_size bytes (mem),
   or else a spool file (fd). */
struct spool {
    int fd;
    uint8_t *mem;
    uint64_t len;
};

struct dfs_segput {
    dfs_client *client;
    char *spool_dir, *dir;
    uint64_t seg_size;
    bool in_memory;
    volatile sig_atomic_t *interrupted;
    struct spool sp[2];
    int cur;        /* sp[cur] is filling */
    uint64_t total; /* bytes written */
    char **paths;   /* the segments stored (or being stored), in order */
    size_t npaths;
    /* The worker putting sp[1 - cur] as paths[npaths - 1], if running. */
    pthread_t worker;
    bool working;
    int worker_rc;
    char *worker_err;
    /* The first failure; sticky. */
    int rc;
    char *err;
};

static int fail(dfs_segput *s, int rc, char *msg, char **errmsg)
{
    if (s->rc == DFS_OK) {
        s->rc = rc;
        s->err = msg;
    } else {
        free(msg);
    }
    return dfs_seterr(errmsg, s->rc, "%s", s->err != NULL ? s->err : dfs_strerror(s->rc));
}

/* An unlinked spool file in dir. */
static int spool_open(const char *dir, int *fd, char **errmsg)
{
    *fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (*fd >= 0)
        return DFS_OK;
    char *p = NULL;
    if (asprintf(&p, "%s/dfs-s3seg-XXXXXX", dir) < 0)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    *fd = mkostemp(p, O_CLOEXEC);
    if (*fd >= 0)
        unlink(p);
    int e = errno;
    free(p);
    if (*fd < 0)
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(e), e, "cannot spool in %s", dir);
    return DFS_OK;
}

/* Give sp a buffer (in memory) or a spool file, unless it has one. */
static int spool_ready(dfs_segput *s, struct spool *sp, char **errmsg)
{
    if (sp->mem != NULL || sp->fd >= 0)
        return DFS_OK;
    if (s->in_memory && (sp->mem = malloc((size_t)s->seg_size)) != NULL)
        return DFS_OK;
    return spool_open(s->spool_dir, &sp->fd, errmsg);
}

int dfs_segput_create(dfs_client *client, const char *spool_dir, const char *dir, uint64_t seg_size,
                      bool in_memory, volatile sig_atomic_t *interrupted, dfs_segput **out,
                      char **errmsg)
{
    *out = NULL;
    if (seg_size < (1u << 20))
        return dfs_seterr(errmsg, DFS_EINVAL, "a segment is 1 MiB at least");
    dfs_segput *s = calloc(1, sizeof *s);
    if (s == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    s->client = client;
    s->seg_size = seg_size;
    s->in_memory = in_memory && seg_size <= SIZE_MAX;
    s->interrupted = interrupted;
    s->sp[0].fd = s->sp[1].fd = -1;
    s->spool_dir = strdup(spool_dir);
    s->dir = strdup(dir);
    int rc = s->spool_dir != NULL && s->dir != NULL
                 ? DFS_OK
                 : dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    if (rc == DFS_OK)
        rc = spool_ready(s, &s->sp[0], errmsg);
    if (rc != DFS_OK) {
        dfs_segput_destroy(s);
        return rc;
    }
    *out = s;
    return DFS_OK;
}

/* Put one segment at its path (the worker's body, or the last segment's inline). */
static int put_segment(dfs_segput *s, const struct spool *p, const char *path, char **errmsg)
{
    struct dfs_client_put_opts o;
    memset(&o, 0, sizeof o);
    o.overwrite = true;
    o.interrupted = s->interrupted;
    if (p->mem != NULL) {
        o.mem = p->mem;
        o.mem_len = p->len;
        if (p->len == 0)
            o.mem = (const uint8_t *)""; /* an empty body: no bytes, but from memory all the same */
    } else {
        o.from_fd = true;
        o.fd = p->fd;
        if (lseek(p->fd, 0, SEEK_SET) != 0)
            return dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno,
                                    "cannot rewind a segment");
    }
    struct dfs_client_put_result res;
    return dfs_client_put(s->client, path, path, &o, &res, errmsg);
}

static void *worker_main(void *arg)
{
    dfs_segput *s = arg;
    const struct spool *p = &s->sp[1 - s->cur];
    s->worker_rc = put_segment(s, p, s->paths[s->npaths - 1], &s->worker_err);
    return NULL;
}

/* Wait for the worker; its failure becomes the body's. */
static int join_worker(dfs_segput *s, char **errmsg)
{
    if (!s->working)
        return s->rc == DFS_OK ? DFS_OK : fail(s, s->rc, NULL, errmsg);
    pthread_join(s->worker, NULL);
    s->working = false;
    if (s->worker_rc != DFS_OK) {
        int rc = s->worker_rc;
        char *m = s->worker_err;
        s->worker_err = NULL;
        return fail(s, rc, m, errmsg);
    }
    return DFS_OK;
}

/* The next segment's dfs path, appended to paths. */
static int next_path(dfs_segput *s, char **errmsg)
{
    char **np = realloc(s->paths, (s->npaths + 1) * sizeof *np);
    if (np == NULL)
        return fail(s, DFS_ENOMEM, strdup("out of memory"), errmsg);
    s->paths = np;
    if (asprintf(&s->paths[s->npaths], "%sseg.%05zu", s->dir, s->npaths) < 0)
        return fail(s, DFS_ENOMEM, strdup("out of memory"), errmsg);
    s->npaths++;
    return DFS_OK;
}

/* sp[cur] is full: hand it to the worker and fill the other one. */
static int hand_off(dfs_segput *s, char **errmsg)
{
    int rc = join_worker(s, errmsg);
    if (rc == DFS_OK)
        rc = next_path(s, errmsg);
    struct spool *o = &s->sp[1 - s->cur];
    if (rc == DFS_OK) {
        char *m = NULL;
        if ((rc = spool_ready(s, o, &m)) != DFS_OK)
            return fail(s, rc, m, errmsg);
    }
    if (rc == DFS_OK && o->fd >= 0 && ftruncate(o->fd, 0) != 0)
        rc = fail(s, dfs_err_from_errno(errno), strdup("cannot truncate a segment spool"), errmsg);
    if (rc != DFS_OK)
        return rc;
    o->len = 0;
    s->cur = 1 - s->cur; /* the worker puts sp[1 - cur], the full one */
    if (pthread_create(&s->worker, NULL, worker_main, s) != 0)
        return fail(s, DFS_ENOMEM, strdup("cannot start a segment put"), errmsg);
    s->working = true;
    return DFS_OK;
}

int dfs_segput_write(dfs_segput *s, const uint8_t *data, size_t len, char **errmsg)
{
    if (s->rc != DFS_OK)
        return fail(s, s->rc, NULL, errmsg);
    while (len > 0) {
        struct spool *p = &s->sp[s->cur];
        if (p->len == s->seg_size) {
            int rc = hand_off(s, errmsg);
            if (rc != DFS_OK)
                return rc;
            p = &s->sp[s->cur];
        }
        size_t n = s->seg_size - p->len < len ? (size_t)(s->seg_size - p->len) : len;
        if (p->mem != NULL) {
            memcpy(p->mem + p->len, data, n);
            p->len += n;
            s->total += n;
            data += n;
            len -= n;
            continue;
        }
        ssize_t k = write(p->fd, data, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return fail(s, dfs_err_from_errno(errno), strdup("cannot spool a segment"), errmsg);
        p->len += (uint64_t)k;
        s->total += (uint64_t)k;
        data += k;
        len -= (size_t)k;
    }
    return DFS_OK;
}

uint64_t dfs_segput_size(const dfs_segput *s)
{
    return s->total;
}

int dfs_segput_finish(dfs_segput *s, const char *path, const struct dfs_client_stitch_opts *opts,
                      Dfs__V1__FileInfo **out, char **errmsg)
{
    int rc = join_worker(s, errmsg);
    /* The last segment, here (nothing else to overlap it with); an empty one only when the body
       is empty. */
    const struct spool *p = &s->sp[s->cur];
    if (rc == DFS_OK && (p->len > 0 || s->npaths == 0)) {
        rc = next_path(s, errmsg);
        char *m = NULL;
        if (rc == DFS_OK && (rc = put_segment(s, p, s->paths[s->npaths - 1], &m)) != DFS_OK)
            rc = fail(s, rc, m, errmsg);
    }
    if (rc != DFS_OK)
        return rc;
    char *m = NULL;
    rc =
        dfs_client_stitch(s->client, path, (const char *const *)s->paths, s->npaths, opts, out, &m);
    if (rc != DFS_OK)
        return fail(s, rc, m, errmsg);
    /* Stitched: the segments are the object's now, not ours to remove. */
    for (size_t i = 0; i < s->npaths; i++)
        free(s->paths[i]);
    s->npaths = 0;
    return DFS_OK;
}

void dfs_segput_destroy(dfs_segput *s)
{
    if (s == NULL)
        return;
    if (s->working) {
        pthread_join(s->worker, NULL);
        free(s->worker_err);
    }
    for (size_t i = 0; i < s->npaths; i++) {
        char *err = NULL;
        int rc = dfs_client_rm(s->client, s->paths[i], NULL, &err);
        if (rc != DFS_OK && rc != DFS_ENOTFOUND)
            dfs_log(DFS_LOG_WARN, "s3 cannot remove a segment path=%s err=%s", s->paths[i],
                    err != NULL ? err : "-");
        free(err);
        free(s->paths[i]);
    }
    free(s->paths);
    for (int i = 0; i < 2; i++) {
        if (s->sp[i].fd >= 0)
            close(s->sp[i].fd);
        free(s->sp[i].mem);
    }
    free(s->err);
    free(s->spool_dir);
    free(s->dir);
    free(s);
}
