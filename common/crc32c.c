/* CRC32C over ISA-L's hardware-accelerated crc32_iscsi. */
#include "common/crc32c.h"

#include <isa-l/crc.h>
#include <limits.h>

uint32_t dfs_crc32c(uint32_t crc, const void *buf, size_t len)
{
    /* ISA-L works on the raw register: no initial or final inversion, and an int length. */
    uint32_t reg = ~crc;
    const unsigned char *p = buf;
    while (len > 0) {
        int n = len > (size_t)INT_MAX ? INT_MAX : (int)len;
        reg = crc32_iscsi((unsigned char *)p, n, reg);
        p += n;
        len -= (size_t)n;
    }
    return ~reg;
}

size_t dfs_crc32c_nblocks(uint64_t len)
{
    return (size_t)((len + DFS_BLOCK_SIZE - 1) / DFS_BLOCK_SIZE);
}

void dfs_crc32c_blocks(const void *buf, size_t len, uint32_t *out)
{
    const unsigned char *p = buf;
    for (size_t i = 0; len > 0; i++) {
        size_t n = len < DFS_BLOCK_SIZE ? len : DFS_BLOCK_SIZE;
        out[i] = dfs_crc32c(0, p, n);
        p += n;
        len -= n;
    }
}

uint32_t dfs_crc32c_of_table(const uint32_t *crcs, size_t n)
{
    uint32_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char le[4] = {(unsigned char)crcs[i], (unsigned char)(crcs[i] >> 8),
                               (unsigned char)(crcs[i] >> 16), (unsigned char)(crcs[i] >> 24)};
        crc = dfs_crc32c(crc, le, sizeof le);
    }
    return crc;
}
