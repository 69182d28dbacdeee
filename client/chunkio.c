/* The data path's messages, packed and parsed without copies. */
#include "client/chunkio.h"

#include "dfs/v1/storage.pb-c.h"
#include "services/rpc/wire.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pool_buf {
    struct dfs_chunk_pool *pool;
    struct pool_buf *next; /* in the idle list */
    _Alignas(64) uint8_t data[];
};

struct dfs_chunk_pool {
    pthread_mutex_t mu;
    size_t cap; /* bytes in each buffer */
    size_t keep;
    size_t nidle;
    struct pool_buf *idle;
    size_t refs; /* the creator's, and one per buffer out */
};

/* The bytes a message of len data bytes and no header takes. */
static size_t packed_size(size_t len)
{
    size_t nblocks = dfs_crc32c_nblocks(len);
    return (len > 0 ? 1 + dfs_varint_len(len) + len : 0) +
           (nblocks > 0 ? 1 + dfs_varint_len(4 * nblocks) + 4 * nblocks : 0);
}

dfs_chunk_pool *dfs_chunk_pool_create(size_t max_len, size_t keep)
{
    dfs_chunk_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    p->cap = packed_size(max_len);
    p->keep = keep;
    p->refs = 1;
    return p;
}

/* Drop one reference; the last frees the pool and its idle buffers. Called with p->mu held. */
static void pool_unref_locked(dfs_chunk_pool *p)
{
    if (--p->refs > 0) {
        pthread_mutex_unlock(&p->mu);
        return;
    }
    pthread_mutex_unlock(&p->mu);
    while (p->idle != NULL) {
        struct pool_buf *b = p->idle;
        p->idle = b->next;
        free(b);
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void dfs_chunk_pool_release(dfs_chunk_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    pool_unref_locked(p);
}

/* gRPC's destroy callback of a pooled slice: the buffer goes back (or is freed). */
static void pool_return(void *arg)
{
    struct pool_buf *b = arg;
    dfs_chunk_pool *p = b->pool;
    pthread_mutex_lock(&p->mu);
    if (p->refs > 1 && p->nidle < p->keep) { /* refs > 1: the creator still holds the pool */
        b->next = p->idle;
        p->idle = b;
        p->nidle++;
        b = NULL;
    }
    free(b);
    pool_unref_locked(p);
}

/* A slice of `total` bytes from the pool, or a plain one. */
static grpc_slice pool_slice(dfs_chunk_pool *p, size_t total)
{
    if (p == NULL || total > p->cap)
        return grpc_slice_malloc(total);
    pthread_mutex_lock(&p->mu);
    struct pool_buf *b = p->idle;
    if (b != NULL) {
        p->idle = b->next;
        p->nidle--;
    }
    p->refs++;
    pthread_mutex_unlock(&p->mu);
    if (b == NULL) {
        /* data[] is 64-byte aligned (cache lines, and what the CRC and copy loops like best), so
           the whole buffer must be: malloc promises only 16. aligned_alloc wants a multiple. */
        size_t bytes = (sizeof *b + p->cap + 63) & ~(size_t)63;
        b = aligned_alloc(64, bytes);
        if (b == NULL) { /* no pooled buffer: a plain slice (gRPC's own out-of-memory rule) */
            pthread_mutex_lock(&p->mu);
            pool_unref_locked(p);
            return grpc_slice_malloc(total);
        }
        b->pool = p;
    }
    return grpc_slice_new_with_user_data(b->data, total, pool_return, b);
}

static void init_packed(struct dfs_put_chunk *c, const Dfs__V1__FragmentHeader *h, size_t len,
                        dfs_chunk_pool *pool)
{
    size_t hdr_len = h != NULL ? protobuf_c_message_get_packed_size(&h->base) : 0;
    size_t nblocks = dfs_crc32c_nblocks(len);
    size_t total = (h != NULL ? 1 + dfs_varint_len(hdr_len) + hdr_len : 0) +
                   (len > 0 ? 1 + dfs_varint_len(len) + len : 0) +
                   (nblocks > 0 ? 1 + dfs_varint_len(4 * nblocks) + 4 * nblocks : 0);
    c->slice = h == NULL ? pool_slice(pool, total) : grpc_slice_malloc(total);
    uint8_t *p = GRPC_SLICE_START_PTR(c->slice);
    if (h != NULL) {
        *p++ = 0x0a;
        p = dfs_varint_put(p, hdr_len);
        p += protobuf_c_message_pack(&h->base, p);
    }
    c->len = len;
    c->ncrcs = nblocks;
    c->data = p;
    c->crc_at = p;
    if (len > 0) {
        *p++ = 0x12;
        p = dfs_varint_put(p, len);
        c->data = p;
        p += len;
        *p++ = 0x1a;
        p = dfs_varint_put(p, 4 * nblocks);
        c->crc_at = p;
    }
}

void dfs_put_chunk_init(struct dfs_put_chunk *c, const char *fragment_id, uint64_t fragment_size,
                        size_t len)
{
    if (fragment_id == NULL) {
        init_packed(c, NULL, len, NULL);
        return;
    }
    Dfs__V1__FragmentHeader h = DFS__V1__FRAGMENT_HEADER__INIT;
    h.fragment_id = (char *)fragment_id;
    h.size = fragment_size;
    init_packed(c, &h, len, NULL);
}

void dfs_put_chunk_init_pooled(struct dfs_put_chunk *c, dfs_chunk_pool *pool, size_t len)
{
    init_packed(c, NULL, len, pool);
}

void dfs_put_chunk_init_header(struct dfs_put_chunk *c, const Dfs__V1__FragmentHeader *h,
                               size_t len)
{
    init_packed(c, h, len, NULL);
}

void dfs_put_chunk_seal(struct dfs_put_chunk *c)
{
    dfs_crc32c_blocks(c->data, c->len, c->crcs);
    uint8_t *p = c->crc_at;
    for (size_t b = 0; b < c->ncrcs; b++) {
        uint32_t crc = c->crcs[b];
        p[0] = (uint8_t)crc;
        p[1] = (uint8_t)(crc >> 8);
        p[2] = (uint8_t)(crc >> 16);
        p[3] = (uint8_t)(crc >> 24);
        p += 4;
    }
}

grpc_byte_buffer *dfs_put_chunk_buffer(const struct dfs_put_chunk *c)
{
    grpc_slice s = c->slice;
    return grpc_raw_byte_buffer_create(&s, 1); /* takes its own reference */
}

void dfs_put_chunk_release(struct dfs_put_chunk *c)
{
    grpc_slice_unref(c->slice);
    c->slice = grpc_empty_slice();
    c->data = NULL;
    c->len = 0;
}

uint32_t dfs_chunk_table_crc(uint32_t sum, const uint32_t *crcs, size_t n)
{
    for (size_t b = 0; b < n; b++) {
        uint8_t le[4] = {(uint8_t)crcs[b], (uint8_t)(crcs[b] >> 8), (uint8_t)(crcs[b] >> 16),
                         (uint8_t)(crcs[b] >> 24)};
        sum = dfs_crc32c(sum, le, 4);
    }
    return sum;
}

bool dfs_get_chunk_parse(grpc_byte_buffer *bb, struct dfs_get_chunk *c)
{
    dfs_wire_reader r;
    if (!dfs_wire_init(&r, bb))
        return false;
    memset(c, 0, sizeof *c);
    while (!dfs_wire_eof(&r)) {
        uint32_t field, wt;
        uint64_t len;
        if (!dfs_wire_tag(&r, &field, &wt))
            return false;
        if (field == 1 && wt == 2) {
            uint8_t buf[256];
            if (!dfs_wire_varint(&r, &len) || len > sizeof buf || !dfs_wire_copy(&r, buf, len))
                return false;
            Dfs__V1__FragmentHeader *h = dfs__v1__fragment_header__unpack(NULL, len, buf);
            if (h == NULL)
                return false;
            c->has_header = true;
            c->header_size = h->size;
            dfs__v1__fragment_header__free_unpacked(h, NULL);
        } else if (field == 2 && wt == 2) {
            if (!dfs_wire_varint(&r, &len) || c->niov != 0 ||
                !dfs_wire_iov(&r, len, c->iov, DFS_CHUNK_MAX_IOV, &c->niov))
                return false;
            c->len = len;
        } else if (field == 3 && wt == 2) { /* packed */
            if (!dfs_wire_varint(&r, &len) || len % 4 != 0 ||
                c->ncrcs + len / 4 > DFS_CHUNK_MAX_PIECES)
                return false;
            for (uint64_t i = 0; i < len / 4; i++)
                if (!dfs_wire_fixed32(&r, &c->crcs[c->ncrcs++]))
                    return false;
        } else if (field == 3 && wt == 5) { /* unpacked */
            if (c->ncrcs == DFS_CHUNK_MAX_PIECES || !dfs_wire_fixed32(&r, &c->crcs[c->ncrcs++]))
                return false;
        } else if (field == 4 && wt == 5) {
            if (!dfs_wire_fixed32(&r, &c->checksum))
                return false;
            c->has_checksum = true;
        } else if (!dfs_wire_skip(&r, wt)) {
            return false;
        }
    }
    return true;
}

long dfs_get_chunk_verify(const struct dfs_get_chunk *c, uint32_t *computed)
{
    size_t n = dfs_wire_crc_blocks(c->iov, c->niov, DFS_BLOCK_SIZE, computed);
    for (size_t b = 0; b < n; b++)
        if (computed[b] != c->crcs[b])
            return (long)b;
    return -1;
}

int dfs_pwritev_all(int fd, struct iovec *iov, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwritev(fd, iov, (int)(n < 1024 ? n : 1024), (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        off += (uint64_t)w;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}
