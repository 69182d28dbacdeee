/*
 * Fuzz target: the fragment file header parser (storage/frag_header.h), what every read of a
 * fragment from disk goes through first, and the length rules that tie a file's size to its data
 * size. Input: the header bytes (128, zero-padded when shorter), then 8 bytes of a file length.
 *
 * Invariants: a header that decodes encodes back to one that decodes to the same fields, and to
 * the very same bytes when its reserved bytes were zero; its size and block count agree and its
 * id is a fragment id; a file length implies a size only when that size's file has exactly that
 * length.
 */
#include "common/crc32c.h"
#include "common/id.h"
#include "storage/frag_header.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void broken(const char *what)
{
    fprintf(stderr, "fuzz: broken promise: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char raw[DFS_FRAG_HEADER_SIZE] = {0};
    memcpy(raw, data, size < sizeof raw ? size : sizeof raw);
    struct dfs_frag_header h;
    const char *why = dfs_frag_header_decode(raw, &h);
    if (why == NULL) {
        if (h.size > DFS_FRAG_MAX_SIZE || h.nblocks != dfs_crc32c_nblocks(h.size) ||
            !dfs_fragment_id_valid(h.id))
            broken("a decoded header breaks its rules");
        unsigned char again[DFS_FRAG_HEADER_SIZE];
        dfs_frag_header_encode(&h, again);
        struct dfs_frag_header h2;
        if (dfs_frag_header_decode(again, &h2) != NULL || h2.size != h.size ||
            h2.nblocks != h.nblocks || h2.checksum != h.checksum || h2.stored_ms != h.stored_ms ||
            strcmp(h2.id, h.id) != 0)
            broken("encode(decode(x)) does not decode to the same header");
        bool reserved_zero = true;
        for (size_t i = 88; i < 124; i++)
            reserved_zero = reserved_zero && raw[i] == 0;
        if (reserved_zero && memcmp(again, raw, sizeof raw) != 0)
            broken("encode(decode(x)) != x");
        uint64_t len = dfs_frag_file_length(h.size);
        if (dfs_frag_size_from_length(len) != h.size)
            broken("the size of a header's file length is not its size");
    } else if (why[0] == '\0') {
        broken("a refusal without a reason");
    }
    uint64_t len = 0;
    if (size > DFS_FRAG_HEADER_SIZE)
        memcpy(&len, data + DFS_FRAG_HEADER_SIZE,
               size - DFS_FRAG_HEADER_SIZE < sizeof len ? size - DFS_FRAG_HEADER_SIZE : sizeof len);
    uint64_t s = dfs_frag_size_from_length(len);
    if (s != DFS_FRAG_SIZE_UNKNOWN && (s > DFS_FRAG_MAX_SIZE || dfs_frag_file_length(s) != len))
        broken("a length implies a size whose file has another length");
    return 0;
}
