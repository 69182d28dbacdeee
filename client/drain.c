/* Stream a file being fetched out of order to a descriptor in file order, behind the fetchers. */
#include "client/drain.h"

#include "common/err.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bytes read and written at a time; also the most the last piece can be. */
#define PIECE      (1u << 20)
/* Punch holes in steps of at least this much (fewer system calls), at page boundaries. */
#define PUNCH_STEP (1u << 20)
#define PAGE       4096u

struct dfs_drain {
    struct dfs_drain_config cfg; /* starts points at our copy */
    uint64_t *starts;
    pthread_t thread;
    bool started;

    /* mu guards ready, decided, ok and cancel; cv signals changes of any of them. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t *ready;
    bool decided; /* finish was called */
    bool ok;      /* ... and said the last piece may go */
    bool cancel;
    const uint8_t *expect; /* set with decided; borrowed until finish returns */

    _Atomic uint64_t emitted;
    atomic_int failed; /* the thread's own failure, for dfs_drain_failed */

    /* The thread's; read after join. */
    int rc;
    char *errmsg;
    EVP_MD_CTX *md;
    uint8_t *buf;
};

static int fail(dfs_drain *d, int code, int errnum, const char *what)
{
    if (errnum != 0)
        dfs_seterr_errno(&d->errmsg, code, errnum, "%s", what);
    else
        dfs_seterr(&d->errmsg, code, "%s", what);
    d->rc = code;
    atomic_store(&d->failed, code);
    return code;
}

/* Wait until bytes past pos are ready; returns the end of what is (0 and *stop when cancelled). */
static uint64_t wait_ready(dfs_drain *d, size_t *region, uint64_t pos, bool *stop)
{
    size_t r = *region;
    while (r + 1 < d->cfg.nregions && d->starts[r + 1] <= pos)
        r++;
    *region = r;
    uint64_t end = r + 1 < d->cfg.nregions ? d->starts[r + 1] : d->cfg.end;
    pthread_mutex_lock(&d->mu);
    while (d->starts[r] + d->ready[r] <= pos && !d->cancel && !(d->decided && !d->ok))
        pthread_cond_wait(&d->cv, &d->mu);
    uint64_t upto = d->starts[r] + d->ready[r];
    *stop = d->cancel || (d->decided && !d->ok);
    pthread_mutex_unlock(&d->mu);
    return upto < end ? upto : end;
}

static int write_all(dfs_drain *d, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(d->cfg.out_fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EPIPE)
            return fail(d, DFS_ECANCELED, 0, "the reader went away");
        if (k < 0)
            return fail(d, DFS_EIO, errno, "cannot write the output");
        p += k;
        n -= (size_t)k;
    }
    return DFS_OK;
}

static int read_all(dfs_drain *d, uint64_t off, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(d->cfg.scratch_fd, d->buf + got, n - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return fail(d, DFS_EIO, k < 0 ? errno : 0, "cannot read the scratch file");
        got += (size_t)k;
    }
    return DFS_OK;
}

/* The last piece: wait for finish's word, check the hash, and only then send it. */
static void last_piece(dfs_drain *d, size_t n)
{
    pthread_mutex_lock(&d->mu);
    while (!d->decided && !d->cancel)
        pthread_cond_wait(&d->cv, &d->mu);
    bool go = d->decided && d->ok && !d->cancel;
    const uint8_t *expect = d->expect;
    pthread_mutex_unlock(&d->mu);
    if (!go)
        return;
    if (d->md != NULL) {
        uint8_t sha[DFS_SHA256_BYTES];
        unsigned len = 0;
        if (EVP_DigestUpdate(d->md, d->buf, n) != 1 || EVP_DigestFinal_ex(d->md, sha, &len) != 1) {
            fail(d, DFS_EINTERNAL, 0, "SHA-256 failed");
            return;
        }
        if (expect != NULL && memcmp(sha, expect, DFS_SHA256_BYTES) != 0) {
            fail(d, DFS_EDATALOSS, 0,
                 "the file does not match its SHA-256 in the catalog (the last bytes were held "
                 "back)");
            return;
        }
    }
    if (n > 0 && write_all(d, d->buf, n) == DFS_OK)
        atomic_store(&d->emitted, d->cfg.to);
}

static void *run(void *arg)
{
    dfs_drain *d = arg;
    uint64_t pos = d->cfg.nregions > 0 ? d->starts[0] : d->cfg.from;
    uint64_t punched = pos / PAGE * PAGE;
    size_t region = 0;
    while (d->rc == DFS_OK) {
        if (pos >= d->cfg.to) {
            last_piece(d, 0);
            break;
        }
        bool stop = false;
        uint64_t upto = wait_ready(d, &region, pos, &stop);
        if (stop)
            break;
        if (pos < d->cfg.from) {
            pos = upto < d->cfg.from ? upto : d->cfg.from; /* before the range: only punched */
        } else {
            uint64_t lim = upto < d->cfg.to ? upto : d->cfg.to;
            size_t n = lim - pos < PIECE ? (size_t)(lim - pos) : PIECE;
            if (read_all(d, pos, n) != DFS_OK)
                break;
            if (pos + n == d->cfg.to) {
                last_piece(d, n);
                break;
            }
            if (d->md != NULL && EVP_DigestUpdate(d->md, d->buf, n) != 1) {
                fail(d, DFS_EINTERNAL, 0, "SHA-256 failed");
                break;
            }
            if (write_all(d, d->buf, n) != DFS_OK)
                break;
            pos += n;
        }
        atomic_store(&d->emitted, pos);
        /* Sent bytes are never written again: give their disk blocks back. Best effort (a
           file system without hole punching just keeps them until the scratch file closes). */
        uint64_t page = pos / PAGE * PAGE;
        if (page >= punched + PUNCH_STEP) {
            (void)fallocate(d->cfg.scratch_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            (off_t)punched, (off_t)(page - punched));
            punched = page;
        }
    }
    return NULL;
}

int dfs_drain_start(const struct dfs_drain_config *cfg, dfs_drain **out, char **errmsg)
{
    bool valid = cfg->from <= cfg->to && cfg->to <= cfg->end;
    for (size_t i = 0; valid && i < cfg->nregions; i++)
        valid = (i == 0 || cfg->starts[i] > cfg->starts[i - 1]) && cfg->starts[i] < cfg->end;
    if (valid && cfg->nregions > 0)
        valid = cfg->starts[0] <= cfg->from;
    if (valid && cfg->nregions == 0)
        valid = cfg->from == cfg->to;
    if (!valid)
        return dfs_seterr(errmsg, DFS_EINVAL, "drain: regions do not cover the range");
    dfs_drain *d = calloc(1, sizeof *d);
    if (d == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    d->cfg = *cfg;
    d->starts = calloc(cfg->nregions + 1, sizeof *d->starts);
    d->ready = calloc(cfg->nregions + 1, sizeof *d->ready);
    d->buf = malloc(PIECE);
    if (d->starts == NULL || d->ready == NULL || d->buf == NULL) {
        dfs_drain_cancel(d);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    memcpy(d->starts, cfg->starts, cfg->nregions * sizeof *d->starts);
    d->cfg.starts = d->starts;
    atomic_init(&d->emitted, cfg->nregions > 0 ? cfg->starts[0] : cfg->from);
    atomic_init(&d->failed, 0);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    if (cfg->hash) {
        d->md = EVP_MD_CTX_new();
        if (d->md == NULL || EVP_DigestInit_ex(d->md, EVP_sha256(), NULL) != 1) {
            dfs_drain_cancel(d);
            return dfs_seterr(errmsg, DFS_ENOMEM, "cannot start SHA-256");
        }
    }
    int e = pthread_create(&d->thread, NULL, run, d);
    if (e != 0) {
        dfs_drain_cancel(d);
        return dfs_seterr_errno(errmsg, DFS_ENOMEM, e, "cannot start a thread");
    }
    d->started = true;
    *out = d;
    return DFS_OK;
}

void dfs_drain_advance(dfs_drain *d, size_t region, uint64_t ready)
{
    if (d == NULL || region >= d->cfg.nregions)
        return;
    pthread_mutex_lock(&d->mu);
    if (ready > d->ready[region]) {
        d->ready[region] = ready;
        pthread_cond_signal(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
}

uint64_t dfs_drain_emitted(dfs_drain *d)
{
    return atomic_load(&d->emitted);
}

int dfs_drain_failed(dfs_drain *d)
{
    return atomic_load(&d->failed);
}

static void destroy(dfs_drain *d)
{
    if (d->started) {
        pthread_join(d->thread, NULL);
        pthread_mutex_destroy(&d->mu);
        pthread_cond_destroy(&d->cv);
    }
    EVP_MD_CTX_free(d->md);
    free(d->errmsg);
    free(d->buf);
    free(d->ready);
    free(d->starts);
    free(d);
}

int dfs_drain_finish(dfs_drain *d, bool ok, const uint8_t *expect_sha256, char **errmsg)
{
    pthread_mutex_lock(&d->mu);
    d->decided = true;
    d->ok = ok;
    d->expect = expect_sha256;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    d->started = false;
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    int rc = d->rc;
    if (rc == DFS_OK && ok && atomic_load(&d->emitted) != d->cfg.to)
        rc = fail(d, DFS_EINTERNAL, 0, "the output stopped before the end");
    if (rc != DFS_OK)
        dfs_seterr(errmsg, rc, "%s", d->errmsg != NULL ? d->errmsg : dfs_strerror(rc));
    destroy(d);
    return rc;
}

void dfs_drain_cancel(dfs_drain *d)
{
    if (d == NULL)
        return;
    if (d->started) {
        pthread_mutex_lock(&d->mu);
        d->cancel = true;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
    }
    destroy(d);
}
