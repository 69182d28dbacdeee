/* Conditional requests (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since). */
#ifndef DFS_GATEWAY_S3_S3COND_H
#define DFS_GATEWAY_S3_S3COND_H

#include "gateway/s3/s3err.h"
#include "gateway/s3/s3http.h"

#include <stdbool.h>
#include <stdint.h>

/*
 * The preconditions of a request, as RFC 9110 section 13 and S3 define them, read from the
 * headers If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, or (for the source of
 * a copy) their x-amz-copy-source-if-* forms. Entity-tag lists are "*" or comma-separated tags,
 * quoted as RFC 9110 writes them ("abc", W/"abc") or bare as some clients send them (abc). A date
 * that does not parse is ignored, as the RFC says.
 */
struct dfs_s3cond {
    const char *if_match;      /* borrowed from the request; NULL: absent */
    const char *if_none_match; /* likewise */
    bool has_modified_since, has_unmodified_since;
    int64_t modified_since, unmodified_since; /* seconds */
};

/*
 * Read the conditions of r: copy_source false for If-*, true for x-amz-copy-source-if-*. Each
 * header at most once (else InvalidArgument in *err). `now` resolves RFC 850 two-digit years.
 */
int dfs_s3cond_parse(const struct dfs_s3http_request *r, bool copy_source, int64_t now,
                     struct dfs_s3cond *c, struct dfs_s3err *err);

enum dfs_s3cond_mode {
    DFS_S3COND_READ,        /* GET, HEAD: a met If-None-Match or an unmodified resource is 304 */
    DFS_S3COND_WRITE,       /* PUT (S3's conditional writes): If-Modified-Since is ignored */
    DFS_S3COND_COPY_SOURCE, /* the source of CopyObject: every failure is 412 */
};

/*
 * Evaluate against the current object (exists; its ETag, quoted as dfs writes it; its
 * modification time in seconds) in RFC 9110's order: If-Match, else If-Unmodified-Since; then
 * If-None-Match, else (reads and copies) If-Modified-Since. Returns DFS_S3ERR_NONE to go on,
 * DFS_S3ERR_NOT_MODIFIED (304, reads only), DFS_S3ERR_PRECONDITION_FAILED (412), or
 * DFS_S3ERR_NO_SUCH_KEY when there is no object for a read, a copy, or a write that demands one
 * with If-Match.
 */
enum dfs_s3err_code dfs_s3cond_eval(const struct dfs_s3cond *c, enum dfs_s3cond_mode mode,
                                    bool exists, const char *etag, int64_t mtime);

/*
 * Whether an entity-tag list (as in If-Match) names etag: "*" names any; weak tags (W/"x")
 * match only when `weak` (If-None-Match's weak comparison); quotes are optional.
 */
bool dfs_s3cond_etag_listed(const char *list, const char *etag, bool weak);

#endif /* DFS_GATEWAY_S3_S3COND_H */
