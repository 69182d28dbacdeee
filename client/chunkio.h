/* The data path's messages: PutFragmentRequest packed in one slice, GetFragmentResponse parsed in place. */
#ifndef DFS_CLIENT_CHUNKIO_H
#define DFS_CLIENT_CHUNKIO_H

#include "common/crc32c.h"
#include "dfs/v1/storage.pb-c.h"

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Data bytes per message: 16 blocks of 64 KiB. */
#define DFS_CHUNK (16u * DFS_BLOCK_SIZE)

/* The most 64 KiB pieces and slices one received chunk may bring. */
#define DFS_CHUNK_MAX_PIECES 64
#define DFS_CHUNK_MAX_IOV    256

/*
 * A PutFragmentRequest (storage.proto) laid out in one grpc slice: field 1 header (first message of a
 * stream only), field 2 data, field 3 packed crc32c per 64 KiB piece. The caller fills `data` in place
 * (a read straight from the file, or an encoder's output), then seals it: that computes the CRCs and
 * writes them. No byte is copied after it was produced.
 */
struct dfs_put_chunk {
    grpc_slice slice;
    uint8_t *data; /* len bytes to fill before sealing */
    size_t len;
    uint32_t crcs[DFS_CHUNK_MAX_PIECES]; /* after sealing */
    size_t ncrcs;
    uint8_t *crc_at; /* where the CRC field's values go */
};

/*
 * Buffers for the data messages of one transfer, reused instead of allocated afresh per message.
 * On this machine kind a fresh 1 MiB buffer costs page faults (memory the host took back) several
 * times its copy: reading the file into a new slice per message cost about 0.7 CPU-s per GiB,
 * into a warm buffer 0.14. A message's slice returns its buffer when gRPC drops the last reference,
 * from whatever thread that is; the pool (refcounted, one reference per buffer out) lives until the
 * creator released it and every buffer came back. Thread-safe.
 */
typedef struct dfs_chunk_pool dfs_chunk_pool;

/*
 * A pool of buffers big enough for a message of up to max_len data bytes without a header, keeping
 * at most `keep` idle buffers (more are freed when they come back). NULL on out of memory.
 */
dfs_chunk_pool *dfs_chunk_pool_create(size_t max_len, size_t keep);

/* Drop the creator's reference (buffers still in messages keep it alive). Accepts NULL. */
void dfs_chunk_pool_release(dfs_chunk_pool *pool);

/*
 * dfs_put_chunk_init without a header, in a buffer from pool (NULL: allocated as usual; also when
 * len is more than the pool's max_len).
 */
void dfs_put_chunk_init_pooled(struct dfs_put_chunk *c, dfs_chunk_pool *pool, size_t len);

/*
 * Lay out a message of `len` data bytes (at most DFS_CHUNK). With fragment_id != NULL the message
 * starts with the FragmentHeader {fragment_id, fragment_size}. Always succeeds (grpc aborts on out of
 * memory, as it does everywhere).
 */
void dfs_put_chunk_init(struct dfs_put_chunk *c, const char *fragment_id, uint64_t fragment_size,
                        size_t len);

/*
 * Like dfs_put_chunk_init, with a complete FragmentHeader (chain replication: forward list and
 * rate) instead of just the id and size.
 */
void dfs_put_chunk_init_header(struct dfs_put_chunk *c, const Dfs__V1__FragmentHeader *h,
                               size_t len);

/* Compute and write the CRCs of the filled data. */
void dfs_put_chunk_seal(struct dfs_put_chunk *c);

/* A byte buffer holding the message (a reference: the chunk keeps its own until released). */
grpc_byte_buffer *dfs_put_chunk_buffer(const struct dfs_put_chunk *c);

/* Release the chunk's slice. */
void dfs_put_chunk_release(struct dfs_put_chunk *c);

/* Fold block CRCs into a fragment checksum being computed in order (common/crc32c.h). */
uint32_t dfs_chunk_table_crc(uint32_t sum, const uint32_t *crcs, size_t n);

/* One GetFragmentResponse, parsed in place: its data are iovecs into the received buffer. */
struct dfs_get_chunk {
    bool has_header;
    uint64_t header_size;
    /* The fragment checksum the node holds (field 4: first message only). */
    bool has_checksum;
    uint32_t checksum;
    size_t len;
    struct iovec iov[DFS_CHUNK_MAX_IOV];
    size_t niov;
    uint32_t crcs[DFS_CHUNK_MAX_PIECES];
    size_t ncrcs;
};

/* Parse bb (which must outlive the iovecs). False when it is malformed or has too many pieces. */
bool dfs_get_chunk_parse(grpc_byte_buffer *bb, struct dfs_get_chunk *c);

/*
 * Check the parsed data against the CRCs it came with. Returns the index of the first bad piece, or
 * -1 when all match; the computed CRCs are left in computed[0..c->ncrcs).
 */
long dfs_get_chunk_verify(const struct dfs_get_chunk *c, uint32_t *computed);

/* Write all of iov[0..n) at off, however the kernel splits it (iov is modified). 0 or errno. */
int dfs_pwritev_all(int fd, struct iovec *iov, size_t n, uint64_t off);

#endif /* DFS_CLIENT_CHUNKIO_H */
