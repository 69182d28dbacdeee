/* An HTTP request as the S3 modules see it: raw path and query, headers; S3's URI encoding. */
#ifndef DFS_GATEWAY_S3_S3HTTP_H
#define DFS_GATEWAY_S3_S3HTTP_H

#include "gateway/s3/s3err.h"

#include <stdbool.h>
#include <stddef.h>

/* One header as received; a header sent twice is two entries (names in any case). */
struct dfs_s3http_header {
    const char *name;
    const char *value;
};

/*
 * A request, all strings borrowed from the caller for the duration of each call. path and query
 * are exactly as they came on the request line (still percent-encoded; query without its '?',
 * "" or NULL when there is none): SigV4 signs them in a canonical re-encoding, and decoding them
 * first would lose what the client signed.
 */
struct dfs_s3http_request {
    const char *method;
    const char *path;
    const char *query;
    const struct dfs_s3http_header *headers;
    size_t nheaders;
};

/* The first value of header `name` (case-insensitive), or NULL. */
const char *dfs_s3http_header(const struct dfs_s3http_request *r, const char *name);

/* How many times header `name` was sent. */
size_t dfs_s3http_header_count(const struct dfs_s3http_request *r, const char *name);

/*
 * The value of a header that must come at most once: 0 with *value (NULL when absent), or
 * DFS_EINVAL with InvalidArgument in *err when it came more than once (a header read with one
 * value and signed with two, joined, is how a request says one thing to the signature check and
 * another to the handler).
 */
int dfs_s3http_header_once(const struct dfs_s3http_request *r, const char *name, const char **value,
                           struct dfs_s3err *err);

/*
 * Percent-decode s[0..n): "%XX" (either case) becomes the byte; with plus_is_space, '+' becomes a
 * space (query strings, as S3 reads them), otherwise it stays. Refused with DFS_EINVAL: a '%' not
 * followed by two hex digits, and %00 (a NUL would cut the name short). Returns 0, *out (malloc'd,
 * NUL-terminated, the caller frees) and its length in *outlen (may be NULL); or DFS_EINVAL /
 * DFS_ENOMEM with *errmsg, *out untouched.
 */
int dfs_s3http_decode(const char *s, size_t n, bool plus_is_space, char **out, size_t *outlen,
                      char **errmsg);

/*
 * URI-encode s[0..n) as SigV4 does: the unreserved characters A-Z a-z 0-9 - _ . ~ stay, '/'
 * stays when keep_slash (an S3 object path), every other byte becomes %XX with upper-case hex.
 * Returns a malloc'd string (the caller frees), NULL when out of memory.
 */
char *dfs_s3http_encode(const char *s, size_t n, bool keep_slash);

/* One query parameter, decoded. */
struct dfs_s3http_param {
    char *name;
    char *value; /* "" when the parameter had no '=' */
    bool has_value;
};

/* The parameters of a query string in the order given (owned: free with _query_free). */
struct dfs_s3http_query {
    struct dfs_s3http_param *params;
    size_t n;
};

#define DFS_S3HTTP_MAX_PARAMS 64

/*
 * Split a raw query string at '&', each part at its first '=', and percent-decode names and
 * values ('+' is a space). Empty parts ("a&&b", a trailing '&') are skipped. At most
 * DFS_S3HTTP_MAX_PARAMS parameters. raw NULL or "" is an empty query. Returns 0 and *q (free with
 * dfs_s3http_query_free), or DFS_EINVAL (InvalidURI in *err) / DFS_ENOMEM; *q is empty on failure.
 */
int dfs_s3http_query_parse(const char *raw, struct dfs_s3http_query *q, struct dfs_s3err *err);

/* Frees the parameters and empties *q. */
void dfs_s3http_query_free(struct dfs_s3http_query *q);

/* The value of the first parameter named `name` (exact case), "" when it has none, NULL when
 * absent. */
const char *dfs_s3http_query_get(const struct dfs_s3http_query *q, const char *name);

/* How many parameters are named `name`. */
size_t dfs_s3http_query_count(const struct dfs_s3http_query *q, const char *name);

#endif /* DFS_GATEWAY_S3_S3HTTP_H */
