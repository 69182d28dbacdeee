/* The fragment file's header. */
#include "storage/frag_header.h"

#include <string.h>

#define BLOCK ((uint64_t)DFS_BLOCK_SIZE)
#define HDR   ((uint64_t)DFS_FRAG_HEADER_SIZE)

/* Field offsets (see the format in frag_header.h). */
#define H_MAGIC      0
#define H_VERSION    8
#define H_BLOCK_SIZE 12
#define H_SIZE       16
#define H_NBLOCKS    24
#define H_CHECKSUM   28
#define H_STORED_MS  32
#define H_ID         40
#define H_ID_FIELD   48
#define H_CRC        124

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

void dfs_frag_header_encode(const struct dfs_frag_header *h,
                            unsigned char out[DFS_FRAG_HEADER_SIZE])
{
    memset(out, 0, DFS_FRAG_HEADER_SIZE);
    memcpy(out + H_MAGIC, DFS_FRAG_MAGIC, 8);
    put_u32(out + H_VERSION, DFS_FRAG_VERSION);
    put_u32(out + H_BLOCK_SIZE, DFS_BLOCK_SIZE);
    put_u64(out + H_SIZE, h->size);
    put_u32(out + H_NBLOCKS, h->nblocks);
    put_u32(out + H_CHECKSUM, h->checksum);
    put_u64(out + H_STORED_MS, (uint64_t)h->stored_ms);
    memcpy(out + H_ID, h->id, DFS_FRAGMENT_ID_HEX);
    put_u32(out + H_CRC, dfs_crc32c(0, out, H_CRC));
}

const char *dfs_frag_header_decode(const unsigned char in[DFS_FRAG_HEADER_SIZE],
                                   struct dfs_frag_header *h)
{
    if (memcmp(in + H_MAGIC, DFS_FRAG_MAGIC, 8) != 0)
        return "bad magic (not a fragment file)";
    if (get_u32(in + H_CRC) != dfs_crc32c(0, in, H_CRC))
        return "header checksum mismatch";
    if (get_u32(in + H_VERSION) != DFS_FRAG_VERSION)
        return "unsupported format version";
    if (get_u32(in + H_BLOCK_SIZE) != DFS_BLOCK_SIZE)
        return "unsupported block size";
    h->size = get_u64(in + H_SIZE);
    h->nblocks = get_u32(in + H_NBLOCKS);
    h->checksum = get_u32(in + H_CHECKSUM);
    h->stored_ms = (int64_t)get_u64(in + H_STORED_MS);
    memcpy(h->id, in + H_ID, DFS_FRAGMENT_ID_HEX);
    h->id[DFS_FRAGMENT_ID_HEX] = '\0';
    for (size_t i = H_ID + DFS_FRAGMENT_ID_HEX; i < H_ID + H_ID_FIELD; i++)
        if (in[i] != 0)
            return "bad fragment id field";
    if (!dfs_fragment_id_valid(h->id))
        return "bad fragment id field";
    if (h->size > DFS_FRAG_MAX_SIZE || h->nblocks != dfs_crc32c_nblocks(h->size))
        return "size and block count disagree";
    return NULL;
}

uint64_t dfs_frag_file_length(uint64_t size)
{
    return HDR + size + 4 * (uint64_t)dfs_crc32c_nblocks(size);
}

uint64_t dfs_frag_size_from_length(uint64_t len)
{
    if (len < HDR)
        return DFS_FRAG_SIZE_UNKNOWN;
    uint64_t body = len - HDR;
    uint64_t full = body / (BLOCK + 4), rem = body % (BLOCK + 4);
    uint64_t size;
    if (rem == 0)
        size = full * BLOCK;
    else if (rem < 5) /* a last block needs at least 1 data byte and its 4-byte CRC */
        return DFS_FRAG_SIZE_UNKNOWN;
    else
        size = full * BLOCK + rem - 4;
    return size <= DFS_FRAG_MAX_SIZE ? size : DFS_FRAG_SIZE_UNKNOWN;
}
