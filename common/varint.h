/* Protobuf varints written by hand: the one writer for code that lays out wire bytes itself (the
   data path's packers, services/rpc/wire.h; the catalog's command origin, metadata/). */
#ifndef DFS_COMMON_VARINT_H
#define DFS_COMMON_VARINT_H

#include <stddef.h>
#include <stdint.h>

/* The bytes v takes as a varint: 1 to 10. */
static inline size_t dfs_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Write v as a varint at p, which has room for dfs_varint_len(v) bytes; returns the byte after
   it. */
static inline uint8_t *dfs_varint_put(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

#endif /* DFS_COMMON_VARINT_H */
