/* S3's additional checksums (x-amz-checksum-*): computed over a body as it streams, compared. */
#ifndef DFS_GATEWAY_S3_S3SUM_H
#define DFS_GATEWAY_S3_S3SUM_H

#include "gateway/s3/s3err.h"
#include "gateway/s3/s3http.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * A client may send a checksum of the body in a header (x-amz-checksum-crc32: <base64>) or, for
 * an aws-chunked body, in a trailer (x-amz-trailer names it; chunked.h reads it). Recent AWS SDKs
 * send CRC32 on every upload. The value is the base64 of the digest, a CRC in big-endian order:
 *
 *   CRC32      ISO-HDLC (zlib's)          8 characters
 *   CRC32C     Castagnoli (iSCSI)         8
 *   CRC64NVME  CRC-64/NVME (Rocksoft)     12
 *   SHA1                                  28
 *   SHA256                                44
 *
 * A body whose checksum differs is refused (BadDigest) and, like every unproven body, never
 * becomes visible.
 */
enum dfs_s3sum_algo {
    DFS_S3SUM_CRC32,
    DFS_S3SUM_CRC32C,
    DFS_S3SUM_CRC64NVME,
    DFS_S3SUM_SHA1,
    DFS_S3SUM_SHA256,
};

#define DFS_S3SUM_B64_MAX 44

/* "x-amz-checksum-crc32" and the like (any case) to its algorithm; false for other names. */
bool dfs_s3sum_algo_of_header(const char *name, enum dfs_s3sum_algo *algo);

/* "x-amz-checksum-crc32", ...: the header and trailer name of an algorithm. */
const char *dfs_s3sum_header(enum dfs_s3sum_algo algo);

/*
 * Which checksum a request carries: at most one x-amz-checksum-* header (*value its value), or
 * one x-amz-checksum-* name in x-amz-trailer (*value NULL: read it from the trailer). *present
 * false when none. x-amz-sdk-checksum-algorithm, when sent, must name the same algorithm.
 * Refused (InvalidRequest): two checksums, a header and a trailer, an unknown x-amz-checksum-*
 * name, or a value that is not the algorithm's base64 length.
 */
int dfs_s3sum_of_request(const struct dfs_s3http_request *r, bool *present,
                         enum dfs_s3sum_algo *algo, const char **value, struct dfs_s3err *err);

typedef struct dfs_s3sum dfs_s3sum;

/* A checksum in progress; NULL when out of memory. */
dfs_s3sum *dfs_s3sum_create(enum dfs_s3sum_algo algo);
void dfs_s3sum_update(dfs_s3sum *s, const void *data, size_t len);
/* The base64 of the digest into out[DFS_S3SUM_B64_MAX + 1]; then the checksum is spent. */
int dfs_s3sum_final(dfs_s3sum *s, char out[DFS_S3SUM_B64_MAX + 1]);
/* Finish and compare with what the client sent: 0, or BadDigest naming the algorithm. */
int dfs_s3sum_check(dfs_s3sum *s, const char *expected, struct dfs_s3err *err);
void dfs_s3sum_destroy(dfs_s3sum *s);

#endif /* DFS_GATEWAY_S3_S3SUM_H */
