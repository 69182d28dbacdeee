/* Percent-decoding of request paths and query values (RFC 3986). */
#ifndef DFS_GATEWAY_URLCODEC_H
#define DFS_GATEWAY_URLCODEC_H

#include <stddef.h>

/*
 * Decode every %XX in `in` (hex, either case). '+' is left alone: in a path it is a plus sign
 * (query values arrive from libmicrohttpd with '+' already turned into a space). Rejected with
 * DFS_EINVAL: a '%' not followed by two hex digits, and %00 (a NUL would cut the string short and
 * silently name another file). Returns 0 and *out (malloc'd, the caller frees), or DFS_EINVAL /
 * DFS_ENOMEM with *errmsg; *out is untouched on failure.
 */
int dfs_gw_percent_decode(const char *in, char **out, char **errmsg);

/*
 * Percent-encode `in` for a URL path: unreserved characters and '/' stay, every other byte
 * becomes %XX. Returns a malloc'd string (the caller frees), or NULL when out of memory.
 */
char *dfs_gw_percent_encode_path(const char *in);

#endif /* DFS_GATEWAY_URLCODEC_H */
