/* Reading protobuf wire format straight out of a gRPC byte buffer's slices, without copying. */
#ifndef DFS_SERVICES_RPC_WIRE_H
#define DFS_SERVICES_RPC_WIRE_H

#include "common/varint.h"

#include <grpc/byte_buffer.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * For the data path: a 1 MiB chunk arrives as a chain of slices, and protobuf-c would copy it twice
 * (flattening, then unpacking). This cursor walks the slices in place; a bytes field comes back as
 * iovecs that point into them, ready for pwritev/writev and CRC checks. The byte buffer must
 * outlive the reader and every iovec taken from it.
 *
 * Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 (groups, 3 and 4, are refused).
 * Every function returns false on truncated or malformed input, leaving the reader unusable.
 */
typedef struct dfs_wire_reader {
    const grpc_slice *slices;
    size_t nslices;
    size_t idx;       /* current slice */
    size_t off;       /* offset in it */
    size_t remaining; /* bytes left in the whole message */
} dfs_wire_reader;

/* Start reading bb. False when bb is compressed or not a raw buffer (the caller falls back). */
bool dfs_wire_init(dfs_wire_reader *r, grpc_byte_buffer *bb);

static inline bool dfs_wire_eof(const dfs_wire_reader *r)
{
    return r->remaining == 0;
}

/* The next field's number and wire type. */
bool dfs_wire_tag(dfs_wire_reader *r, uint32_t *field, uint32_t *wire_type);
bool dfs_wire_varint(dfs_wire_reader *r, uint64_t *v);
bool dfs_wire_fixed32(dfs_wire_reader *r, uint32_t *v);
/* Copy len bytes out (for small fields: headers, ids). */
bool dfs_wire_copy(dfs_wire_reader *r, void *dst, size_t len);
/*
 * Take len bytes as up to max iovecs pointing into the slices. False when they span more slices
 * than max (a caller can then copy instead).
 */
bool dfs_wire_iov(dfs_wire_reader *r, size_t len, struct iovec *iov, size_t max, size_t *n);
/* Skip a field's value of the given wire type. */
bool dfs_wire_skip(dfs_wire_reader *r, uint32_t wire_type);

/*
 * A varint from the flat bytes [*p, end), for parsers over one contiguous buffer (a header, a
 * flattened request): *p moves past it. False when it is truncated or longer than 64 bits' worth.
 */
static inline bool dfs_wire_flat_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Writing, for packers that lay a message out in one buffer (a grpc_slice_malloc slice). */

/* Varints: dfs_varint_len and dfs_varint_put (common/varint.h). */

/* CRC32C (common/crc32c.h conventions) of each consecutive `block`-byte piece of the bytes in
   iov[0..n), into out[]; returns the number of pieces. */
size_t dfs_wire_crc_blocks(const struct iovec *iov, size_t n, size_t block, uint32_t *out);

#endif /* DFS_SERVICES_RPC_WIRE_H */
