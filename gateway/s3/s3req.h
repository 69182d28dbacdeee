/* S3 requests: which operation, on which bucket and key, with which parameters and headers. */
#ifndef DFS_GATEWAY_S3_S3REQ_H
#define DFS_GATEWAY_S3_S3REQ_H

#include "gateway/s3/s3err.h"
#include "gateway/s3/s3http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The operations dfs-gateway serves over S3 (their names as S3's API reference gives them). */
enum dfs_s3req_op {
    DFS_S3REQ_LIST_BUCKETS,
    DFS_S3REQ_CREATE_BUCKET,
    DFS_S3REQ_HEAD_BUCKET,
    DFS_S3REQ_DELETE_BUCKET,
    DFS_S3REQ_GET_BUCKET_LOCATION,
    DFS_S3REQ_LIST_OBJECTS,
    DFS_S3REQ_LIST_OBJECTS_V2,
    DFS_S3REQ_LIST_MULTIPART_UPLOADS,
    DFS_S3REQ_DELETE_OBJECTS,
    DFS_S3REQ_PUT_OBJECT,
    DFS_S3REQ_COPY_OBJECT,
    DFS_S3REQ_GET_OBJECT,
    DFS_S3REQ_HEAD_OBJECT,
    DFS_S3REQ_DELETE_OBJECT,
    DFS_S3REQ_CREATE_MULTIPART_UPLOAD,
    DFS_S3REQ_UPLOAD_PART,
    DFS_S3REQ_UPLOAD_PART_COPY, /* recognised so that it is refused by name (NotImplemented) */
    DFS_S3REQ_COMPLETE_MULTIPART_UPLOAD,
    DFS_S3REQ_ABORT_MULTIPART_UPLOAD,
    DFS_S3REQ_LIST_PARTS,
    DFS_S3REQ_OP_COUNT
};

/* "PutObject"; "" for a value out of range. */
const char *dfs_s3req_op_name(enum dfs_s3req_op op);

/* Whether an operation only reads (a read-only key may do it). */
bool dfs_s3req_op_reads(enum dfs_s3req_op op);

#define DFS_S3REQ_KEY_MAX       1024         /* bytes of UTF-8, as S3 */
#define DFS_S3REQ_META_MAX      2048         /* x-amz-meta-* names (after the prefix) and values */
#define DFS_S3REQ_LIST_MAX      1000         /* max-keys, max-uploads, max-parts are capped here */
#define DFS_S3REQ_MAX_PART      10000        /* part numbers are 1..10000 */
#define DFS_S3REQ_MAX_PUT_SIZE  (5ull << 30) /* one PUT or part: 5 GiB, as S3 */
#define DFS_S3REQ_MIN_PART_SIZE (5ull << 20) /* every part but the last: at least 5 MiB */

/*
 * A parsed request. Every string is owned by it (free with dfs_s3req_free) and decoded (percent-
 * decoding done once); NULL when the request did not give it.
 */
struct dfs_s3req {
    enum dfs_s3req_op op;
    bool virtual_host; /* the bucket came from the Host header */
    char *bucket;      /* NULL only for ListBuckets */
    char *key;         /* NULL for bucket operations */
    char *upload_id;   /* the multipart operations on an upload */
    uint32_t part_number;
    /* Listings (ListObjects v1 and v2, ListMultipartUploads, ListParts). */
    char *prefix, *delimiter;
    char *marker;             /* v1 */
    char *continuation_token; /* v2 */
    char *start_after;        /* v2 */
    char *key_marker, *upload_id_marker;
    uint32_t max;                /* max-keys / max-uploads / max-parts: 0..1000, default 1000 */
    uint32_t part_number_marker; /* ListParts */
    bool fetch_owner;            /* v2 */
    bool url_encoding;           /* encoding-type=url */
    /* GetObject's response-* parameters, which set the answer's headers. */
    char *response_content_type, *response_content_language, *response_expires;
    char *response_cache_control, *response_content_disposition, *response_content_encoding;
};

/*
 * Read a request: the bucket and key from the path (path style, /bucket/key) or, when domain
 * (dfs-gateway's --s3-domain; NULL: path style only) is a suffix of the Host header, from the host
 * (virtual-host style, bucket.domain/key); the operation from the method, the key's presence and
 * the query's subresources (?location, ?uploads, ?uploadId=, ?partNumber=, ?delete,
 * ?list-type=2) and the x-amz-copy-source header; the operation's parameters, checked.
 *
 * Refused, each with its S3 code: a bucket name S3 would refuse (InvalidBucketName), a key that
 * is not UTF-8 or longer than 1024 bytes (InvalidArgument, KeyTooLongError), a method the resource
 * does not have (MethodNotAllowed), a subresource dfs does not implement (?acl, ?tagging,
 * ?versioning and the others: NotImplemented, naming it), parameters out of range or given twice
 * (InvalidArgument), a path that does not decode (InvalidURI). Returns 0 and *out, or the failure
 * in *err with *out empty.
 */
int dfs_s3req_parse(const char *domain, const struct dfs_s3http_request *r, struct dfs_s3req *out,
                    struct dfs_s3err *err);

/* Frees what *q holds and zeroes it. */
void dfs_s3req_free(struct dfs_s3req *q);

/*
 * S3's rules for (general purpose) bucket names: 3 to 63 characters of lower-case letters,
 * digits, '.' and '-'; starting and ending with a letter or digit; no ".."; not an IPv4 address;
 * not starting with "xn--", "sthree-" or "amzn-s3-demo-", nor ending with "-s3alias", "--ol-s3",
 * ".mrap", "--x-s3" or "--table-s3". On false, *why (may be NULL) says which rule.
 */
bool dfs_s3req_bucket_valid(const char *name, const char **why);

/*
 * The dfs path of an object, "/bucket/key" (key NULL: the bucket's directory "/bucket"). A key
 * maps to a path as it is, so a key dfs cannot name is refused rather than renamed: empty, "."
 * or ".." segments (a leading, trailing or doubled '/'), control characters, a segment longer
 * than 255 bytes (InvalidArgument), or a path past 1024 bytes (KeyTooLongError). Returns 0 and
 * *path (malloc'd), or the failure in *err.
 */
int dfs_s3req_object_path(const char *bucket, const char *key, char **path, struct dfs_s3err *err);

/*
 * The dfs listing prefix of an S3 prefix in a bucket, "/bucket/prefix". The last segment may be
 * partial ("photos/20" matches "photos/2023/a"); when no dfs path can start with it (a complete
 * segment that is empty, "." or "..", control characters, too long) *none is set: the listing is
 * empty, not an error. Returns 0 and *out (malloc'd, also when *none), or DFS_ENOMEM.
 */
int dfs_s3req_list_prefix(const char *bucket, const char *prefix, char **out, bool *none);

/* One stored header of an object. */
struct dfs_s3req_meta_entry {
    char *name; /* lower-case: "content-type", ..., "x-amz-meta-color" */
    char *value;
};

/* The headers stored with an object, sorted by name (owned: free with dfs_s3req_meta_free). */
struct dfs_s3req_meta {
    struct dfs_s3req_meta_entry *e;
    size_t n;
};

/*
 * What a PUT, CopyObject (with REPLACE) or CreateMultipartUpload asks to store with the object:
 * Content-Type, Content-Disposition, Cache-Control, Content-Encoding (without the aws-chunked
 * coding, which is the transfer's, not the object's), Content-Language, Expires, and every
 * x-amz-meta-* header (names lower-cased; a name sent twice has its values joined by ','). Values
 * must be UTF-8 without control characters (tab aside). The x-amz-meta-* names (without the
 * prefix) and values may total DFS_S3REQ_META_MAX bytes (MetadataTooLarge). Returns 0 and *m,
 * or the failure in *err with *m empty.
 */
int dfs_s3req_meta_parse(const struct dfs_s3http_request *r, struct dfs_s3req_meta *m,
                         struct dfs_s3err *err);

void dfs_s3req_meta_free(struct dfs_s3req_meta *m);

/*
 * x-amz-copy-source ("/bucket/key" or "bucket/key", percent-encoded, optionally
 * "?versionId=null"): its bucket and key (malloc'd), checked as a request's are. A version other
 * than "null" is NotImplemented. x-amz-metadata-directive (COPY, the default, or REPLACE) into
 * *replace_meta (may be NULL).
 */
int dfs_s3req_copy_source(const struct dfs_s3http_request *r, char **bucket, char **key,
                          bool *replace_meta, struct dfs_s3err *err);

/*
 * Headers asking for what dfs does not do, refused rather than silently ignored: server-side
 * encryption (x-amz-server-side-encryption*), object lock, website redirects, grants and ACLs
 * other than "private" (NotImplemented). Everything else dfs does not use is ignored, as S3
 * ignores what it does not know.
 */
int dfs_s3req_check_headers(const struct dfs_s3http_request *r, struct dfs_s3err *err);

/*
 * The body length of a PUT or UploadPart: Content-Length (or x-amz-decoded-content-length for an
 * aws-chunked body, when decoded_length), once, decimal. Absent: MissingContentLength; above
 * DFS_S3REQ_MAX_PUT_SIZE: EntityTooLarge.
 */
int dfs_s3req_content_length(const struct dfs_s3http_request *r, bool decoded_length, uint64_t *len,
                             struct dfs_s3err *err);

#endif /* DFS_GATEWAY_S3_S3REQ_H */
