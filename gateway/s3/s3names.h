/*
 * Names and small encodings the S3 server keeps or hands out: continuation tokens, upload ids,
 * part file names, and the stored headers of an object (file_meta.meta). Each reads untrusted
 * text (a client's token, a catalog row) without trusting its form.
 */
#ifndef DFS_GATEWAY_S3_S3NAMES_H
#define DFS_GATEWAY_S3_S3NAMES_H

#include "gateway/s3/s3req.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ListObjectsV2's continuation token for the last key returned: its base64. malloc'd; NULL when
   out of memory. */
char *dfs_s3names_token_encode(const char *key);

/* The key a continuation token names (malloc'd), or NULL when it is not one of ours (not base64,
   empty, longer than a key, or holding a NUL). */
char *dfs_s3names_token_decode(const char *token);

/* An upload id as the server makes them: 32 lower-case hex digits (so it is safe in a path). */
bool dfs_s3names_upload_id_valid(const char *id);

/* A part file's name "part.NNNNN.<32 hex digits of its MD5>": number 1..10000 and MD5. */
bool dfs_s3names_part_parse(const char *name, uint32_t *number, uint8_t md5[16]);

/*
 * Stored headers: "name\0value\0" pairs sorted by name; names starting with ':' are the
 * server's own (":parts": the part count of a multipart ETag) and never sent to clients.
 * pack writes parts (when not NULL) as ":parts" and then m's entries (m may be NULL) into *out
 * (malloc'd) and *len: 0 or DFS_ENOMEM.
 */
int dfs_s3names_meta_pack(const struct dfs_s3req_meta *m, const char *parts, char **out,
                          size_t *len);

/*
 * The next pair from *pos (start at 0) of meta[0..len): true with *name and *value (pointers into
 * meta, NUL-terminated there), *pos moved past it; false at the end or at a pair cut short.
 */
bool dfs_s3names_meta_next(const void *meta, size_t len, size_t *pos, const char **name,
                           const char **value);

/* The value stored under name, or NULL. */
const char *dfs_s3names_meta_find(const void *meta, size_t len, const char *name);

#endif /* DFS_GATEWAY_S3_S3NAMES_H */
