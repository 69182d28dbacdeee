/* The scrub pass: every fragment read whole, checked and classified (scrub.h). */
#include "storage/scrub.h"

#include "common/crc32c.h"
#include "common/err.h"

#include <stdlib.h>

struct dfs_scrub {
    dfs_frag_store *store; /* borrowed */
    uint8_t *buf;          /* DFS_SCRUB_READ_BYTES */
    uint32_t crcs[DFS_SCRUB_READ_BYTES / DFS_BLOCK_SIZE];
};

/* A pass in progress: foreach's context. */
struct pass {
    dfs_scrub *s;
    const struct dfs_scrub_hooks *h;
};

static enum dfs_scrub_verdict verdict_of(int rc)
{
    switch (rc) {
    case DFS_OK:
        return DFS_SCRUB_GOOD;
    case DFS_EDATALOSS:
        return DFS_SCRUB_CORRUPT;
    case DFS_EIO:
        return DFS_SCRUB_UNREADABLE;
    default:
        return DFS_SCRUB_FAILED;
    }
}

static int scrub_one(void *ctx, const char *id, uint64_t size_hint)
{
    (void)size_hint;
    struct pass *p = ctx;
    dfs_scrub *s = p->s;
    const struct dfs_scrub_hooks *h = p->h;
    if (h->stop != NULL && h->stop(h->arg))
        return DFS_ECANCELED;
    dfs_frag_reader *r = NULL;
    char *err = NULL;
    struct dfs_scrub_result res = {.id = id};
    int rc = dfs_frag_reader_open(s->store, id, &r, &err);
    if (rc == DFS_OK) {
        res.stored_ms = dfs_frag_reader_stored_ms(r);
        res.size = dfs_frag_reader_size(r);
        res.checksum = dfs_frag_reader_checksum(r);
        for (uint64_t off = 0; off < res.size && rc == DFS_OK; off += DFS_SCRUB_READ_BYTES) {
            size_t n = res.size - off < DFS_SCRUB_READ_BYTES ? (size_t)(res.size - off)
                                                             : DFS_SCRUB_READ_BYTES;
            if (h->pace != NULL && !h->pace(h->arg, n)) {
                dfs_frag_reader_close(r);
                return DFS_ECANCELED;
            }
            rc = dfs_frag_reader_read(r, off, s->buf, n, s->crcs, &err);
            if (rc == DFS_OK && h->progress != NULL)
                h->progress(h->arg, n);
        }
        dfs_frag_reader_close(r);
    }
    if (rc == DFS_ENOTFOUND) { /* deleted since the listing */
        free(err);
        return DFS_OK;
    }
    res.verdict = verdict_of(rc);
    res.status = rc;
    res.err = err;
    int vrc = h->visit(h->arg, &res);
    free(err);
    return vrc;
}

int dfs_scrub_pass(dfs_scrub *s, const struct dfs_scrub_hooks *hooks, char **errmsg)
{
    struct pass p = {.s = s, .h = hooks};
    return dfs_frag_store_foreach(s->store, scrub_one, &p, errmsg);
}

int dfs_scrub_create(dfs_frag_store *store, dfs_scrub **out, char **errmsg)
{
    if (store == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "scrub: no fragment store");
    dfs_scrub *s = calloc(1, sizeof *s);
    if (s != NULL)
        s->buf = malloc(DFS_SCRUB_READ_BYTES);
    if (s == NULL || s->buf == NULL) {
        free(s);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    s->store = store;
    *out = s;
    return DFS_OK;
}

void dfs_scrub_destroy(dfs_scrub *s)
{
    if (s == NULL)
        return;
    free(s->buf);
    free(s);
}
