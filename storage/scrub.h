/* The scrub pass: read every fragment of a store whole, check it, and classify it. */
#ifndef DFS_STORAGE_SCRUB_H
#define DFS_STORAGE_SCRUB_H

#include "storage/frag_store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A pass walks the store (dfs_frag_store_foreach, in its order) and reads every fragment whole
 * through a frag_reader, in reads of at most DFS_SCRUB_READ_BYTES, which checks the header, the
 * CRC table and every block's CRC. Each fragment gets one verdict. What to do with it (count,
 * log, report to the metadata service), how fast to read and when to stop are the caller's: the
 * storage node's scrubber thread (services/storage/scrubber.h) drives the pass through hooks.
 */
typedef struct dfs_scrub dfs_scrub;

/* Largest read, and the buffer a dfs_scrub holds. */
#define DFS_SCRUB_READ_BYTES (1u << 20)

enum dfs_scrub_verdict {
    DFS_SCRUB_GOOD,       /* read whole, every check passed: good in itself */
    DFS_SCRUB_CORRUPT,    /* DFS_EDATALOSS: a corrupt block, header or table, a truncated file */
    DFS_SCRUB_UNREADABLE, /* DFS_EIO */
    DFS_SCRUB_FAILED,     /* any other error: it could not be checked */
};

/* One fragment's verdict, for the visit hook. Everything is borrowed for the call. */
struct dfs_scrub_result {
    const char *id;
    enum dfs_scrub_verdict verdict;
    int status;      /* DFS_OK or the reader's error */
    const char *err; /* the reader's message, or NULL */
    /*
     * What the fragment's header says (0 when it could not be opened): its size and checksum
     * (GOOD: what it holds, for the catalog to compare), and its commit time, which tells a
     * fragment replaced since the verdict apart.
     */
    uint64_t size;
    uint32_t checksum;
    int64_t stored_ms;
};

struct dfs_scrub_hooks {
    /* Asked before each fragment: true ends the pass (DFS_ECANCELED). NULL: never. */
    bool (*stop)(void *arg);
    /* Before each read of n bytes: wait for the caller's rate; false ends the pass
       (DFS_ECANCELED; the fragment gets no verdict). NULL: no pacing. */
    bool (*pace)(void *arg, size_t n);
    /* After each good read of n bytes (progress). NULL: nothing. */
    void (*progress)(void *arg, size_t n);
    /* Each verdict (not for a fragment deleted since the listing, which is skipped). A non-zero
       return ends the pass with it. Required. */
    int (*visit)(void *arg, const struct dfs_scrub_result *r);
    void *arg;
};

/*
 * A scrubber's reading state over `store` (borrowed: it must outlive it): one read buffer.
 * Returns 0 and *out (free with dfs_scrub_destroy), or DFS_EINVAL (no store) / DFS_ENOMEM with
 * *errmsg. One pass at a time per handle.
 */
int dfs_scrub_create(dfs_frag_store *store, dfs_scrub **out, char **errmsg);

/* NULL is a no-op. */
void dfs_scrub_destroy(dfs_scrub *s);

/*
 * One pass over the store with these hooks (borrowed for the call). Returns 0 when every
 * fragment was visited, DFS_ECANCELED when a hook stopped it, a visit's non-zero return, or the
 * store's error when it cannot be listed (with *errmsg; the pass is cut short there).
 */
int dfs_scrub_pass(dfs_scrub *s, const struct dfs_scrub_hooks *hooks, char **errmsg);

#endif /* DFS_STORAGE_SCRUB_H */
