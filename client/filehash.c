/* SHA-256 of a file computed by a background thread, optionally trailing the file's writers; a
   small one by the caller, at finish. */
#include "client/filehash.h"

#include "common/err.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bytes read and hashed at a time: small enough to stay in a core's L2 cache. */
#define PIECE (256u << 10)

struct dfs_filehash {
    int fd;
    const uint8_t *mem; /* instead of fd: bytes in memory (not following) */
    uint64_t size;
    pthread_t thread;
    bool inline_; /* no thread: hashed by dfs_filehash_finish (size <= DFS_FILEHASH_INLINE_MAX) */
    atomic_bool cancel;

    /* Following: region starts and how much of each is ready; mu guards ready/invalid. */
    bool follow;
    size_t nregions;
    size_t region; /* the hashing thread's current region */
    uint64_t *starts;
    uint64_t *ready;
    bool invalid;
    pthread_mutex_t mu;
    pthread_cond_t cv;

    /* Written by the thread, read after join. */
    uint8_t digest[DFS_SHA256_BYTES];
    int rc;
    int err_no;
    uint64_t failed_at;
};

/* How many bytes from off can be read now (following waits until some are). 0 when cancelled. */
static uint64_t readable(dfs_filehash *h, uint64_t off)
{
    if (!h->follow)
        return h->size - off;
    /* Reads only move forward, so the region search resumes where the last one ended. */
    size_t r = h->region;
    while (r + 1 < h->nregions && h->starts[r + 1] <= off)
        r++;
    h->region = r;
    uint64_t end = r + 1 < h->nregions ? h->starts[r + 1] : h->size;
    pthread_mutex_lock(&h->mu);
    while (h->starts[r] + h->ready[r] <= off && !atomic_load(&h->cancel))
        pthread_cond_wait(&h->cv, &h->mu);
    uint64_t upto = h->starts[r] + h->ready[r];
    pthread_mutex_unlock(&h->mu);
    if (atomic_load(&h->cancel))
        return 0;
    return (upto < end ? upto : end) - off;
}

/*
 * Hash [0, size) into h->digest, following or not; sets rc. The file is read with pread into one
 * PIECE-sized buffer that stays in the core's cache, and hashed from there. Hashing straight from
 * a mapping of the file would spare that copy, but costs more than it saves (measured on a 1 GiB
 * get, benchmarks/README.md): every 4 KiB page faults or walks the page tables on first touch and
 * the hash stalls on each, while the kernel's copy streams through its own large mappings.
 */
static void hash_file(dfs_filehash *h, bool follow)
{
    h->follow = follow;
    h->region = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(PIECE);
    if (ctx == NULL || buf == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        h->rc = DFS_ENOMEM;
        goto out;
    }
    uint64_t off = 0;
    while (off < h->size && !atomic_load(&h->cancel)) {
        uint64_t can = readable(h, off);
        if (can == 0)
            break;
        size_t want = can < PIECE ? (size_t)can : PIECE;
        if (h->mem != NULL) {
            EVP_DigestUpdate(ctx, h->mem + off, want);
            off += want;
            continue;
        }
        ssize_t n = pread(h->fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            h->rc = DFS_EIO;
            h->err_no = n < 0 ? errno : 0;
            h->failed_at = off;
            goto out;
        }
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        off += (uint64_t)n;
    }
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, h->digest, &len);
    h->rc = DFS_OK;
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
}

static void *hash_main(void *arg)
{
    dfs_filehash *h = arg;
    hash_file(h, h->follow);
    return NULL;
}

static atomic_ulong threads_started;

unsigned long dfs_filehash_threads_started(void)
{
    return atomic_load(&threads_started);
}

static int start(dfs_filehash *h, dfs_filehash **out, char **errmsg)
{
    atomic_init(&h->cancel, false);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    /* A small file is hashed at finish by the caller: its hash takes a microsecond, a thread's
       creation, wake-up and join about 25 us of CPU and 50 us of wall time (1 KiB, measured
       here), paid by every small put and get. Every byte is ready at finish, following or not. */
    if (h->size <= DFS_FILEHASH_INLINE_MAX) {
        h->inline_ = true;
        *out = h;
        return DFS_OK;
    }
    atomic_fetch_add(&threads_started, 1);
    if (pthread_create(&h->thread, NULL, hash_main, h) != 0) {
        free(h->starts);
        free(h->ready);
        free(h);
        return dfs_seterr(errmsg, DFS_ENOMEM, "cannot start the hashing thread");
    }
    *out = h;
    return DFS_OK;
}

int dfs_filehash_start(int fd, uint64_t size, dfs_filehash **out, char **errmsg)
{
    dfs_filehash *h = calloc(1, sizeof *h);
    if (h == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    h->fd = fd;
    h->size = size;
    return start(h, out, errmsg);
}

int dfs_filehash_start_mem(const uint8_t *mem, uint64_t size, dfs_filehash **out, char **errmsg)
{
    dfs_filehash *h = calloc(1, sizeof *h);
    if (h == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    h->fd = -1;
    h->mem = mem;
    h->size = size;
    return start(h, out, errmsg);
}

int dfs_filehash_start_follow(int fd, uint64_t size, const uint64_t *starts, size_t nregions,
                              dfs_filehash **out, char **errmsg)
{
    dfs_filehash *h = calloc(1, sizeof *h);
    if (h == NULL || nregions == 0)
        goto nomem;
    h->fd = fd;
    h->size = size;
    h->follow = true;
    h->nregions = nregions;
    h->starts = calloc(nregions, sizeof *h->starts);
    h->ready = calloc(nregions, sizeof *h->ready);
    if (h->starts == NULL || h->ready == NULL)
        goto nomem;
    memcpy(h->starts, starts, nregions * sizeof *starts);
    return start(h, out, errmsg);
nomem:
    if (h != NULL) {
        free(h->starts);
        free(h->ready);
    }
    free(h);
    return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
}

void dfs_filehash_advance(dfs_filehash *h, size_t region, uint64_t ready)
{
    if (h->inline_)
        return; /* nothing is read before finish */
    pthread_mutex_lock(&h->mu);
    if (ready < h->ready[region])
        h->invalid = true;
    h->ready[region] = ready;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

void dfs_filehash_invalidate(dfs_filehash *h)
{
    if (h->inline_)
        return;
    pthread_mutex_lock(&h->mu);
    h->invalid = true;
    pthread_mutex_unlock(&h->mu);
}

static void destroy(dfs_filehash *h)
{
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h->starts);
    free(h->ready);
    free(h);
}

int dfs_filehash_finish(dfs_filehash *h, uint8_t out[DFS_SHA256_BYTES], char **errmsg)
{
    if (h->inline_)
        hash_file(h, false);
    else
        pthread_join(h->thread, NULL);
    /* Some hashed bytes were rewritten later: hash the finished file again. */
    if (h->rc == DFS_OK && h->invalid)
        hash_file(h, false);
    int rc = h->rc;
    if (rc == DFS_OK)
        memcpy(out, h->digest, DFS_SHA256_BYTES);
    else if (h->err_no != 0)
        dfs_seterr_errno(errmsg, rc, h->err_no, "cannot read the file at offset %llu",
                         (unsigned long long)h->failed_at);
    else
        dfs_seterr(errmsg, rc, "the file ended at %llu bytes, expected %llu (changed while read?)",
                   (unsigned long long)h->failed_at, (unsigned long long)h->size);
    destroy(h);
    return rc;
}

void dfs_filehash_cancel(dfs_filehash *h)
{
    if (h == NULL)
        return;
    if (!h->inline_) {
        pthread_mutex_lock(&h->mu);
        atomic_store(&h->cancel, true);
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->thread, NULL);
    }
    destroy(h);
}

void dfs_sha256_hex(const uint8_t digest[DFS_SHA256_BYTES], char hex[2 * DFS_SHA256_BYTES + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < DFS_SHA256_BYTES; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[2 * DFS_SHA256_BYTES] = '\0';
}
