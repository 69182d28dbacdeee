/* S3 ETags: the MD5 of an object's content, or of its parts' MD5s for a multipart upload. */
#ifndef DFS_GATEWAY_S3_ETAG_H
#define DFS_GATEWAY_S3_ETAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * S3 clients check ETags: s3cmd and boto3 compare a single-part object's ETag with the MD5 of
 * what they sent. The forms, quotes included (they are part of the header value):
 *
 *   single part  "<hex MD5 of the content>"                             "9b2cf535f27731c974343645a3985328"
 *   multipart    "<hex MD5 of the parts' binary MD5s, in order>-<N>"    "d41d8cd98f00b204e9800998ecf8427e-2"
 */
#define DFS_ETAG_MD5_LEN   16
#define DFS_ETAG_MAX       48 /* '"' + 32 + "-10000" + '"', with room */
#define DFS_ETAG_MAX_PARTS 10000

/* MD5 over content that streams by (OpenSSL's EVP MD5; not for security, for S3's ETag). */
typedef struct dfs_etag_md5 dfs_etag_md5;

/* A fresh MD5; NULL when out of memory. */
dfs_etag_md5 *dfs_etag_md5_create(void);
/* Add len bytes. */
void dfs_etag_md5_update(dfs_etag_md5 *m, const void *data, size_t len);
/* The digest of everything added into md5[16]; the context starts over after. 0 or DFS_EINTERNAL. */
int dfs_etag_md5_final(dfs_etag_md5 *m, uint8_t md5[DFS_ETAG_MD5_LEN]);
void dfs_etag_md5_destroy(dfs_etag_md5 *m);

/* "<hex>" (quoted) of a single-part object's MD5 into out[DFS_ETAG_MAX + 1]. */
void dfs_etag_single(const uint8_t md5[DFS_ETAG_MD5_LEN], char out[DFS_ETAG_MAX + 1]);

/*
 * The ETag of a multipart object whose parts, in order, have these MD5s (n of them, 1 to
 * DFS_ETAG_MAX_PARTS) into out[DFS_ETAG_MAX + 1]. 0, DFS_EINVAL (n out of range) or
 * DFS_EINTERNAL.
 */
int dfs_etag_multipart(const uint8_t (*md5s)[DFS_ETAG_MD5_LEN], size_t n,
                       char out[DFS_ETAG_MAX + 1]);

/*
 * Read an ETag as a client sends it back (in CompleteMultipartUpload, If-Match...): with or
 * without the quotes, hex in either case, optionally "-N". Into md5 and *parts (0 for a single
 * part). Returns 0 or DFS_EINVAL.
 */
int dfs_etag_parse(const char *s, uint8_t md5[DFS_ETAG_MD5_LEN], unsigned *parts);

/*
 * A Content-MD5 header: the base64 of the 16-byte MD5 (24 characters, padding included). Returns
 * 0 and md5, or DFS_EINVAL (S3's InvalidDigest) for anything else.
 */
int dfs_etag_content_md5(const char *b64, uint8_t md5[DFS_ETAG_MD5_LEN]);

#endif /* DFS_GATEWAY_S3_ETAG_H */
