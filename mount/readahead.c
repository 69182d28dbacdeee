/* The read-ahead window of an open file (readahead.h). */
#include "mount/readahead.h"

#include "common/err.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The engine checks CRC32C per 64 KiB block: fetches start on a block boundary. */
#define BLOCK ((uint64_t)64 << 10)

/*
 * Invariants (under mu): buf holds bytes [buf_off, buf_off + buf_len) of the file. While pf_busy,
 * the prefetch thread owns pf_buf and calls fetch (without mu); nobody else calls fetch then, so
 * fetch is never called twice at once. Once pf_busy is false, pf_buf holds [pf_off, pf_off +
 * pf_len) when pf_rc is 0 and pf_len > 0.
 */
struct dfs_readahead {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t size, min_window, max_window;
    dfs_readahead_fetch_fn *fetch;
    void *arg;
    uint8_t *buf;
    size_t cap;
    uint64_t buf_off, buf_len;
    uint64_t window;   /* the next fetch's length */
    uint64_t last_end; /* where the previous read ended (UINT64_MAX: none yet) */
    uint64_t fetches, fetched;
    /* The next window, fetched in the background while reads are sequential. */
    bool thread_started, stop;
    pthread_t thread;
    bool pf_wanted, pf_busy;
    uint8_t *pf_buf;
    size_t pf_cap;
    uint64_t pf_off, pf_len;
    int pf_rc;
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
    pthread_cond_init(&ra->cv, NULL);
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
    if (ra->thread_started) {
        pthread_mutex_lock(&ra->mu);
        ra->stop = true;
        pthread_cond_broadcast(&ra->cv);
        pthread_mutex_unlock(&ra->mu);
        pthread_join(ra->thread, NULL);
    }
    pthread_cond_destroy(&ra->cv);
    pthread_mutex_destroy(&ra->mu);
    free(ra->buf);
    free(ra->pf_buf);
    free(ra);
}

/* The prefetch thread: fetch the window asked for into pf_buf, one at a time. */
static void *prefetcher(void *arg)
{
    dfs_readahead *ra = arg;
    pthread_mutex_lock(&ra->mu);
    for (;;) {
        while (!ra->stop && !ra->pf_wanted)
            pthread_cond_wait(&ra->cv, &ra->mu);
        if (ra->stop)
            break;
        ra->pf_wanted = false;
        uint64_t off = ra->pf_off, len = ra->pf_len;
        uint8_t *b = ra->pf_buf;
        pthread_mutex_unlock(&ra->mu);
        char *err = NULL;
        int rc = ra->fetch(ra->arg, off, len, b, &err);
        free(err); /* a failed prefetch is dropped: the read that needs the bytes fetches again */
        pthread_mutex_lock(&ra->mu);
        ra->pf_rc = rc;
        ra->pf_busy = false;
        if (rc == DFS_OK) {
            ra->fetches++;
            ra->fetched += len;
        }
        pthread_cond_broadcast(&ra->cv);
    }
    pthread_mutex_unlock(&ra->mu);
    return NULL;
}

/* Ask for [from, from + len) in the background (mu held; no prefetch running). Nothing happens
   when the thread or the memory cannot be had: reads then fetch as they go. */
static void prefetch(dfs_readahead *ra, uint64_t from, uint64_t len)
{
    if (len > ra->size - from)
        len = ra->size - from;
    if (len == 0)
        return;
    if (len > ra->pf_cap) {
        uint8_t *b = realloc(ra->pf_buf, (size_t)len);
        if (b == NULL)
            return;
        ra->pf_buf = b;
        ra->pf_cap = (size_t)len;
    }
    if (!ra->thread_started) {
        if (pthread_create(&ra->thread, NULL, prefetcher, ra) != 0)
            return;
        ra->thread_started = true;
    }
    ra->pf_off = from;
    ra->pf_len = len;
    ra->pf_rc = DFS_OK;
    ra->pf_busy = true;
    ra->pf_wanted = true;
    pthread_cond_broadcast(&ra->cv);
}

/* Fill the window with [from, from + len), clipped to the file, for a read at `at`: the prefetched
   window when it holds `at` (reads from several kernel threads may come slightly out of order),
   else a fetch (mu held, released while a prefetch finishes). */
static int refill(dfs_readahead *ra, uint64_t at, uint64_t from, uint64_t len, char **errmsg)
{
    while (ra->pf_busy)
        pthread_cond_wait(&ra->cv, &ra->mu);
    if (ra->pf_len > 0 && ra->pf_rc == DFS_OK && ra->pf_off <= at && at < ra->pf_off + ra->pf_len) {
        uint8_t *b = ra->buf;
        size_t cap = ra->cap;
        ra->buf = ra->pf_buf;
        ra->cap = ra->pf_cap;
        ra->pf_buf = b;
        ra->pf_cap = cap;
        ra->buf_off = ra->pf_off;
        ra->buf_len = ra->pf_len;
        ra->pf_len = 0;
        return DFS_OK;
    }
    ra->pf_len = 0;
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
            /* A prefetch in flight: wait for it; another read may swap it in meanwhile. */
            while (ra->pf_busy)
                pthread_cond_wait(&ra->cv, &ra->mu);
            if (at >= ra->buf_off && at < ra->buf_off + ra->buf_len)
                continue;
            uint64_t from = at - at % BLOCK;
            uint64_t want = at + (size - done) - from; /* at least the rest of this read */
            uint64_t len = want > ra->window ? want : ra->window;
            rc = refill(ra, at, from, len, errmsg);
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
        /* Reading on: fetch the next window while this one is read. */
        uint64_t next = ra->buf_off + ra->buf_len;
        if (sequential && ra->window == ra->max_window && !ra->pf_busy && next < ra->size &&
            !(ra->pf_len > 0 && ra->pf_rc == DFS_OK && ra->pf_off == next))
            prefetch(ra, next, ra->window);
    } else {
        ra->last_end = UINT64_MAX;
    }
    pthread_mutex_unlock(&ra->mu);
    return rc;
}

void dfs_readahead_counts(dfs_readahead *ra, uint64_t *fetches, uint64_t *bytes)
{
    pthread_mutex_lock(&ra->mu);
    while (ra->pf_busy)
        pthread_cond_wait(&ra->cv, &ra->mu);
    *fetches = ra->fetches;
    *bytes = ra->fetched;
    pthread_mutex_unlock(&ra->mu);
}
