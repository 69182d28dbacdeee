/* Reading protobuf wire format straight out of a gRPC byte buffer's slices. */
#include "services/rpc/wire.h"

#include "common/crc32c.h"

#include <grpc/slice.h>
#include <string.h>

bool dfs_wire_init(dfs_wire_reader *r, grpc_byte_buffer *bb)
{
    if (bb == NULL || bb->type != GRPC_BB_RAW || bb->data.raw.compression != GRPC_COMPRESS_NONE)
        return false;
    r->slices = bb->data.raw.slice_buffer.slices;
    r->nslices = bb->data.raw.slice_buffer.count;
    r->idx = 0;
    r->off = 0;
    r->remaining = bb->data.raw.slice_buffer.length;
    return true;
}

/* Bytes readable in the current slice, moving past exhausted (or empty) slices first. */
static size_t avail(dfs_wire_reader *r)
{
    while (r->idx < r->nslices && r->off >= GRPC_SLICE_LENGTH(r->slices[r->idx])) {
        r->idx++;
        r->off = 0;
    }
    if (r->idx >= r->nslices)
        return 0;
    return GRPC_SLICE_LENGTH(r->slices[r->idx]) - r->off;
}

static const uint8_t *cur(const dfs_wire_reader *r)
{
    return GRPC_SLICE_START_PTR(r->slices[r->idx]) + r->off;
}

bool dfs_wire_copy(dfs_wire_reader *r, void *dst, size_t len)
{
    if (len > r->remaining)
        return false;
    uint8_t *d = dst;
    while (len > 0) {
        size_t a = avail(r);
        if (a == 0)
            return false;
        size_t n = a < len ? a : len;
        memcpy(d, cur(r), n);
        d += n;
        r->off += n;
        r->remaining -= n;
        len -= n;
    }
    return true;
}

bool dfs_wire_varint(dfs_wire_reader *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b;
        if (!dfs_wire_copy(r, &b, 1))
            return false;
        x |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = x;
            return true;
        }
    }
    return false;
}

bool dfs_wire_tag(dfs_wire_reader *r, uint32_t *field, uint32_t *wire_type)
{
    uint64_t t;
    if (!dfs_wire_varint(r, &t) || t > UINT32_MAX || (t >> 3) == 0)
        return false;
    *field = (uint32_t)(t >> 3);
    *wire_type = (uint32_t)(t & 7);
    return true;
}

bool dfs_wire_fixed32(dfs_wire_reader *r, uint32_t *v)
{
    uint8_t b[4];
    if (!dfs_wire_copy(r, b, 4))
        return false;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return true;
}

bool dfs_wire_iov(dfs_wire_reader *r, size_t len, struct iovec *iov, size_t max, size_t *n)
{
    if (len > r->remaining)
        return false;
    size_t k = 0;
    while (len > 0) {
        size_t a = avail(r);
        if (a == 0 || k == max)
            return false;
        size_t take = a < len ? a : len;
        iov[k].iov_base = (void *)cur(r);
        iov[k].iov_len = take;
        k++;
        r->off += take;
        r->remaining -= take;
        len -= take;
    }
    *n = k;
    return true;
}

static bool advance(dfs_wire_reader *r, uint64_t len)
{
    if (len > r->remaining)
        return false;
    while (len > 0) {
        size_t a = avail(r);
        if (a == 0)
            return false;
        size_t n = a < len ? a : (size_t)len;
        r->off += n;
        r->remaining -= n;
        len -= n;
    }
    return true;
}

bool dfs_wire_skip(dfs_wire_reader *r, uint32_t wire_type)
{
    uint64_t v;
    switch (wire_type) {
    case 0:
        return dfs_wire_varint(r, &v);
    case 1:
        return advance(r, 8);
    case 2:
        return dfs_wire_varint(r, &v) && advance(r, v);
    case 5:
        return advance(r, 4);
    default:
        return false;
    }
}

size_t dfs_wire_crc_blocks(const struct iovec *iov, size_t n, size_t block, uint32_t *out)
{
    size_t pieces = 0, in_block = 0;
    uint32_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        while (len > 0) {
            size_t take = block - in_block < len ? block - in_block : len;
            crc = dfs_crc32c(crc, p, take);
            p += take;
            len -= take;
            in_block += take;
            if (in_block == block) {
                out[pieces++] = crc;
                crc = 0;
                in_block = 0;
            }
        }
    }
    if (in_block > 0)
        out[pieces++] = crc;
    return pieces;
}
