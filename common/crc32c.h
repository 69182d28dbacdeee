/* CRC32C (Castagnoli) over ISA-L, and the block-CRC conventions of fragments. */
#ifndef DFS_COMMON_CRC32C_H
#define DFS_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Fragments are checksummed per block of this many bytes, on the wire and on disk. */
#define DFS_BLOCK_SIZE 65536u

/*
 * Extend a standard CRC32C (iSCSI/ext4: reflected, init and final XOR 0xFFFFFFFF) over buf, zlib
 * style: start with crc = 0; dfs_crc32c(dfs_crc32c(0, a), b) == dfs_crc32c(0, a||b).
 * dfs_crc32c(0, "123456789", 9) == 0xE3069283.
 */
uint32_t dfs_crc32c(uint32_t crc, const void *buf, size_t len);

/* Number of DFS_BLOCK_SIZE blocks covering len bytes (the last may be short; 0 for len 0). */
size_t dfs_crc32c_nblocks(uint64_t len);

/* CRC32C of each consecutive DFS_BLOCK_SIZE piece of buf into out[0..dfs_crc32c_nblocks(len)). */
void dfs_crc32c_blocks(const void *buf, size_t len, uint32_t *out);

/*
 * The checksum of a whole fragment: CRC32C over its block CRCs, each as 4 little-endian bytes.
 * Cheap to compute from the CRC table alone, so a node answers it without reading the data.
 */
uint32_t dfs_crc32c_of_table(const uint32_t *crcs, size_t n);

#endif /* DFS_COMMON_CRC32C_H */
