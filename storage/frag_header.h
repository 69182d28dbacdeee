/* The fragment file's header: its bytes, and their one encoder and decoder (no I/O here). */
#ifndef DFS_STORAGE_FRAG_HEADER_H
#define DFS_STORAGE_FRAG_HEADER_H

#include "common/crc32c.h"
#include "common/id.h"

#include <stdint.h>

/*
 * Fragment file format, version 1. All integers are little-endian; `size` is the number of data
 * bytes and n = ceil(size / 65536) the number of blocks (the last block may be short; n = 0 for an
 * empty fragment):
 *
 *     offset  bytes  field
 *          0      8  magic "DFSFRAG1"
 *          8      4  u32 format version = 1
 *         12      4  u32 block size = 65536 (DFS_BLOCK_SIZE)
 *         16      8  u64 data length (size)
 *         24      4  u32 block count (n)
 *         28      4  u32 fragment checksum = dfs_crc32c_of_table(block CRCs, n)
 *         32      8  i64 stored time, milliseconds since the Unix epoch
 *         40     48  fragment id: 40 lower-case hex digits, then 8 NUL bytes
 *         88     36  reserved, zero (not checked when read: room for later versions)
 *        124      4  u32 CRC32C of bytes [0, 124) of the header
 *        128   size  the data
 *  128+size    4*n  block CRC table: u32 CRC32C of each 64 KiB block of the data, in order
 *
 * The file is exactly 128 + size + 4*n bytes long, so a fragment's size follows from its file
 * length alone (every 64 KiB block costs 65540 bytes on disk).
 */
#define DFS_FRAG_MAGIC       "DFSFRAG1"
#define DFS_FRAG_VERSION     1u
#define DFS_FRAG_HEADER_SIZE 128u
/* Largest fragment the store accepts: a block count that fits the header's u32 (~256 TiB). */
#define DFS_FRAG_MAX_SIZE    ((uint64_t)UINT32_MAX * DFS_BLOCK_SIZE)

/* What a header holds, decoded. */
struct dfs_frag_header {
    uint64_t size;     /* data bytes, at most DFS_FRAG_MAX_SIZE */
    uint32_t nblocks;  /* dfs_crc32c_nblocks(size) */
    uint32_t checksum; /* dfs_crc32c_of_table of the block CRCs */
    int64_t stored_ms; /* commit time */
    char id[DFS_FRAGMENT_ID_HEX + 1];
};

/* Write the header h describes (h->id a valid fragment id) into out, its CRC included. */
void dfs_frag_header_encode(const struct dfs_frag_header *h,
                            unsigned char out[DFS_FRAG_HEADER_SIZE]);

/*
 * Decode and check the DFS_FRAG_HEADER_SIZE bytes at in: magic, header CRC, version, block size,
 * the id field (a valid fragment id, NUL-padded), size at most DFS_FRAG_MAX_SIZE and a block count
 * that matches it. Returns NULL with *h filled, or a static string saying what is wrong (*h is then
 * partly written). Reads exactly DFS_FRAG_HEADER_SIZE bytes; any bytes are safe to pass.
 */
const char *dfs_frag_header_decode(const unsigned char in[DFS_FRAG_HEADER_SIZE],
                                   struct dfs_frag_header *h);

/* File length of a fragment of `size` data bytes (size at most DFS_FRAG_MAX_SIZE). */
uint64_t dfs_frag_file_length(uint64_t size);

/* The size dfs_frag_size_from_length returns for a length that fits no fragment (truncated). */
#define DFS_FRAG_SIZE_UNKNOWN UINT64_MAX

/* The data size a file length implies (the inverse of dfs_frag_file_length), or _UNKNOWN. */
uint64_t dfs_frag_size_from_length(uint64_t len);

#endif /* DFS_STORAGE_FRAG_HEADER_H */
