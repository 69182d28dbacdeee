/* S3 errors: one table of S3 error codes (name, HTTP status, message), and the XML error body. */
#ifndef DFS_GATEWAY_S3_S3ERR_H
#define DFS_GATEWAY_S3_S3ERR_H

#include <stddef.h>

/*
 * The S3 error codes dfs answers with. Each has one row in the table of s3err.c: its name as S3
 * spells it ("NoSuchKey"), its HTTP status, the dfs status code (common/err.h) a function returns
 * when it fails with it, and S3's default message.
 */
enum dfs_s3err_code {
    DFS_S3ERR_NONE = 0, /* not an error */
    DFS_S3ERR_ACCESS_DENIED,
    DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED,
    DFS_S3ERR_AUTHORIZATION_QUERY_PARAMETERS_ERROR,
    DFS_S3ERR_BAD_DIGEST,
    DFS_S3ERR_BUCKET_ALREADY_EXISTS,
    DFS_S3ERR_BUCKET_ALREADY_OWNED_BY_YOU,
    DFS_S3ERR_BUCKET_NOT_EMPTY,
    DFS_S3ERR_ENTITY_TOO_LARGE,
    DFS_S3ERR_ENTITY_TOO_SMALL,
    DFS_S3ERR_INCOMPLETE_BODY,
    DFS_S3ERR_INTERNAL_ERROR,
    DFS_S3ERR_INVALID_ACCESS_KEY_ID,
    DFS_S3ERR_INVALID_ARGUMENT,
    DFS_S3ERR_INVALID_BUCKET_NAME,
    DFS_S3ERR_INVALID_CHUNK_SIZE,
    DFS_S3ERR_INVALID_DIGEST,
    DFS_S3ERR_INVALID_LOCATION_CONSTRAINT,
    DFS_S3ERR_INVALID_PART,
    DFS_S3ERR_INVALID_PART_ORDER,
    DFS_S3ERR_INVALID_RANGE,
    DFS_S3ERR_INVALID_REQUEST,
    DFS_S3ERR_INVALID_URI,
    DFS_S3ERR_KEY_TOO_LONG,
    DFS_S3ERR_MALFORMED_XML,
    DFS_S3ERR_METADATA_TOO_LARGE,
    DFS_S3ERR_METHOD_NOT_ALLOWED,
    DFS_S3ERR_MISSING_CONTENT_LENGTH,
    DFS_S3ERR_MISSING_REQUEST_BODY,
    DFS_S3ERR_MISSING_SECURITY_HEADER,
    DFS_S3ERR_NO_SUCH_BUCKET,
    DFS_S3ERR_NO_SUCH_KEY,
    DFS_S3ERR_NO_SUCH_UPLOAD,
    DFS_S3ERR_NOT_IMPLEMENTED,
    DFS_S3ERR_NOT_MODIFIED,
    DFS_S3ERR_PRECONDITION_FAILED,
    DFS_S3ERR_REQUEST_TIME_TOO_SKEWED,
    DFS_S3ERR_REQUEST_TIMEOUT,
    DFS_S3ERR_SERVICE_UNAVAILABLE,
    DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH,
    DFS_S3ERR_SLOW_DOWN,
    DFS_S3ERR_CONTENT_SHA256_MISMATCH,
    DFS_S3ERR_COUNT /* not a code: the number of rows */
};

/* "NoSuchKey"; "" for DFS_S3ERR_NONE or an unknown value. Never NULL. */
const char *dfs_s3err_name(enum dfs_s3err_code code);

/* The HTTP status S3 answers with (404 for NoSuchKey; 500 for an unknown value). */
int dfs_s3err_http_status(enum dfs_s3err_code code);

/* The dfs status (common/err.h) of a failure with this code (NoSuchKey: DFS_ENOTFOUND). */
int dfs_s3err_dfs_status(enum dfs_s3err_code code);

/* S3's default message ("The specified key does not exist."). Never NULL. */
const char *dfs_s3err_default_message(enum dfs_s3err_code code);

/* The code whose name is `name` (exact case), or DFS_S3ERR_NONE. */
enum dfs_s3err_code dfs_s3err_from_name(const char *name);

#define DFS_S3ERR_EXTRA_MAX 4

/*
 * A failure as an S3 request handler reports it: the code, a one-line message (NULL: the code's
 * default message), and up to DFS_S3ERR_EXTRA_MAX extra elements of the XML body (S3 adds, for
 * instance, <BucketName>, <Key>, or <StringToSign> and <CanonicalRequest> to
 * SignatureDoesNotMatch so that a client can see where its signature went wrong). Every string is
 * owned by the struct; zero-initialise it, and release with dfs_s3err_clear.
 */
struct dfs_s3err {
    enum dfs_s3err_code code;
    char *message;
    char *extra_name[DFS_S3ERR_EXTRA_MAX];
    char *extra_value[DFS_S3ERR_EXTRA_MAX];
};

/*
 * Record a failure in *e (which may be NULL: then only the return value counts): the code, and
 * the message formatted from fmt (NULL fmt: none). What *e held before is released. Returns the
 * code's dfs status, so that failure paths read
 * `return dfs_s3err_set(err, DFS_S3ERR_NO_SUCH_KEY, "no key %s", key);`. When the message cannot
 * be allocated the code is still set and the message left NULL.
 */
int dfs_s3err_set(struct dfs_s3err *e, enum dfs_s3err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Add an extra element (name, value copied) to the body of *e (NULL: nothing). Beyond
 * DFS_S3ERR_EXTRA_MAX, or out of memory, it is dropped: extras are for diagnosis only.
 */
void dfs_s3err_add_extra(struct dfs_s3err *e, const char *name, const char *value);

/* Release what *e holds and zero it (NULL: nothing). */
void dfs_s3err_clear(struct dfs_s3err *e);

/*
 * The XML body of an error response, as S3 writes it:
 *
 *   <?xml version="1.0" encoding="UTF-8"?>
 *   <Error><Code>NoSuchKey</Code><Message>...</Message><Key>a/b</Key>
 *   <Resource>/bucket/a/b</Resource><RequestId>...</RequestId></Error>
 *
 * resource and request_id may be NULL (left out). Returns 0 and *out (malloc'd, NUL-terminated,
 * the caller frees) with its length in *len; DFS_ENOMEM; or DFS_EINVAL when a string is not
 * well-formed UTF-8 or holds a character XML 1.0 cannot carry (*out untouched on failure).
 */
int dfs_s3err_body(const struct dfs_s3err *e, const char *resource, const char *request_id,
                   char **out, size_t *len);

#endif /* DFS_GATEWAY_S3_S3ERR_H */
