/* HTTP Range requests (RFC 9110, section 14): one byte range of a representation. */
#ifndef DFS_GATEWAY_RANGE_H
#define DFS_GATEWAY_RANGE_H

#include <stdint.h>

enum dfs_gw_range {
    DFS_GW_RANGE_NONE,          /* no usable Range: send the whole file (200) */
    DFS_GW_RANGE_OK,            /* send [*off, *off + *len) (206) */
    DFS_GW_RANGE_UNSATISFIABLE, /* no byte of the file is asked for (416) */
};

/*
 * Read a Range header value (NULL when absent) for a file of `size` bytes. Understood: one range,
 * "bytes=A-B" (B capped at the end), "bytes=A-" (to the end), "bytes=-N" (the last N bytes; all
 * of a shorter file). As the RFC allows, what is not understood is ignored (NONE): a malformed
 * header, another unit, several ranges (the whole file is a valid answer to those). A range whose
 * start is at or past the end, or "bytes=-0", is UNSATISFIABLE; so is every range of an empty
 * file. *off and *len are set only for OK (*len > 0).
 */
enum dfs_gw_range dfs_gw_range_parse(const char *header, uint64_t size, uint64_t *off,
                                     uint64_t *len);

#endif /* DFS_GATEWAY_RANGE_H */
