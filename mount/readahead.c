/* The read-ahead window of an open file (readahead.h). */
#include "mount/readahead.h"

#include "common/err.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The engine checks CRC32C per 64 KiB block: fetches start on a block boundary. */
#define BLOCK ((uint64_t)64 << 10)

/* Invariant (under mu): buf holds bytes [buf_off, buf_off + buf_len) of the file. */
struct dfs_readahead {
    pthread_mutex_t mu;
    uint64_t size, min_window, max_window;
    dfs_readahead_fetch_fn *fetch;
    void *arg;
    uint8_t *buf;
    size_t cap;
    uint64_t buf_off, buf_len;
    uint64_t window;   /* the next fetch's length */
    uint64_t last_end; /* where the previous read ended (UINT64_MAX: none yet) */
    uint64_t fetches, fetched;
};

int dfs_readahead_create(uint64_t file_size, uint64_t min_window, uint64_t max_window,
                         dfs_readahead_fetch_fn *fetch, void *arg, dfs_readahead **out)
{
    if (min_window == 0 || max_window < min_window || fetch == NULL)
        return DFS_EINVAL;
    dfs_readahead *ra = calloc(1, sizeof *ra);
    if (ra == NULL)
        return DFS_ENOMEM;
    pthread_mutex_init(&ra->mu, NULL);
    ra->size = file_size;
    ra->min_window = min_window;
    ra->max_window = max_window;
    ra->fetch = fetch;
    ra->arg = arg;
    ra->window = min_window;
    ra->last_end = UINT64_MAX;
    *out = ra;
    return DFS_OK;
}

void dfs_readahead_destroy(dfs_readahead *ra)
{
    if (ra == NULL)
        return;
    pthread_mutex_destroy(&ra->mu);
    free(ra->buf);
    free(ra);
}

/* Fill the window with [from, from + len), clipped to the file. */
static int refill(dfs_readahead *ra, uint64_t from, uint64_t len, char **errmsg)
{
    if (len > ra->size - from)
        len = ra->size - from;
    if (len > ra->cap) {
        uint8_t *b = realloc(ra->buf, (size_t)len);
        if (b == NULL)
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory for a %llu-byte read window",
                              (unsigned long long)len);
        ra->buf = b;
        ra->cap = (size_t)len;
    }
    ra->buf_len = 0;
    int rc = ra->fetch(ra->arg, from, len, ra->buf, errmsg);
    if (rc != DFS_OK)
        return rc;
    ra->buf_off = from;
    ra->buf_len = len;
    ra->fetches++;
    ra->fetched += len;
    return DFS_OK;
}

int dfs_readahead_read(dfs_readahead *ra, uint64_t off, size_t size, uint8_t *dst, size_t *got,
                       char **errmsg)
{
    *got = 0;
    if (off >= ra->size || size == 0)
        return DFS_OK;
    if (size > ra->size - off)
        size = (size_t)(ra->size - off);
    pthread_mutex_lock(&ra->mu);
    /* Sequential: continuing the previous read, or within or right after the window (kernel
       read-ahead requests may arrive out of order from several threads). */
    bool sequential = off == ra->last_end ||
                      (ra->buf_len > 0 && off >= ra->buf_off && off <= ra->buf_off + ra->buf_len);
    if (sequential) {
        ra->window *= 2;
        if (ra->window > ra->max_window)
            ra->window = ra->max_window;
    } else {
        ra->window = ra->min_window;
    }
    int rc = DFS_OK;
    size_t done = 0;
    while (done < size) {
        uint64_t at = off + done;
        if (at < ra->buf_off || at >= ra->buf_off + ra->buf_len) {
            uint64_t from = at - at % BLOCK;
            uint64_t want = at + (size - done) - from; /* at least the rest of this read */
            uint64_t len = want > ra->window ? want : ra->window;
            rc = refill(ra, from, len, errmsg);
            if (rc != DFS_OK)
                break;
        }
        uint64_t in = ra->buf_off + ra->buf_len - at;
        size_t n = size - done < in ? size - done : (size_t)in;
        memcpy(dst + done, ra->buf + (at - ra->buf_off), n);
        done += n;
    }
    if (rc == DFS_OK) {
        *got = done;
        ra->last_end = off + done;
    } else {
        ra->last_end = UINT64_MAX;
    }
    pthread_mutex_unlock(&ra->mu);
    return rc;
}

void dfs_readahead_counts(dfs_readahead *ra, uint64_t *fetches, uint64_t *bytes)
{
    pthread_mutex_lock(&ra->mu);
    *fetches = ra->fetches;
    *bytes = ra->fetched;
    pthread_mutex_unlock(&ra->mu);
}
