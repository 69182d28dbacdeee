/* Remote path rules: what names a file in dfs, and its one canonical spelling. */
#ifndef DFS_COMMON_PATH_H
#define DFS_COMMON_PATH_H

#include <stddef.h>

/* Longest canonical path, in bytes, and longest component. */
#define DFS_PATH_MAX 1024
#define DFS_NAME_MAX 255

/*
 * Canonicalise a remote file path. Rules: not empty; components separated by '/', a leading '/'
 * optional (the canonical form always has one), repeated '/' collapse into one; no trailing '/'; no
 * "." or ".." component; no control characters (bytes below 0x20, and 0x7f); valid UTF-8 (common/utf8.h); at most DFS_NAME_MAX
 * bytes per component and DFS_PATH_MAX in all. "a//b" and "/a/b" both become "/a/b".
 *
 * On success returns 0 and *out is a malloc'd string the caller frees. On failure returns
 * DFS_EINVAL (DFS_ENOMEM) with a one-line reason in *errmsg, and *out is untouched.
 */
int dfs_path_canon(const char *in, char **out, char **errmsg);

/*
 * Canonicalise a listing prefix: like dfs_path_canon, but "" and "/" mean everything (result "/"),
 * and a trailing '/' is kept ("/a/" lists what is under directory a, "/a" also matches "/ab").
 */
int dfs_path_prefix_canon(const char *in, char **out, char **errmsg);

#endif /* DFS_COMMON_PATH_H */
