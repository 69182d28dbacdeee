/* The XML documents of S3: response bodies, and the request bodies clients send. */
#ifndef DFS_GATEWAY_S3_S3XML_H
#define DFS_GATEWAY_S3_S3XML_H

#include "gateway/s3/s3err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Responses. Each writer builds one document in S3's namespace
 * (http://s3.amazonaws.com/doc/2006-03-01/) with the elements S3 writes, in S3's order, and
 * returns 0 with *out (malloc'd, NUL-terminated, the caller frees) and its length in *len, or
 * DFS_EINVAL (a string that is not UTF-8 or holds a character XML cannot carry; message in
 * *errmsg) or DFS_ENOMEM. Every pointer in the inputs is borrowed for the call; NULL strings are
 * left out where S3 leaves the element out, written empty where S3 always writes it. Times are
 * milliseconds since the epoch (written as 2009-10-12T17:50:30.000Z); ETags come quoted, as
 * etag.h makes them.
 */

#define DFS_S3XML_NS "http://s3.amazonaws.com/doc/2006-03-01/"

struct dfs_s3xml_owner {
    const char *id;
    const char *display_name;
};

struct dfs_s3xml_bucket {
    const char *name;
    int64_t created_ms;
};

/* ListAllMyBucketsResult (ListBuckets). */
int dfs_s3xml_list_buckets(const struct dfs_s3xml_owner *owner,
                           const struct dfs_s3xml_bucket *buckets, size_t n, char **out,
                           size_t *len, char **errmsg);

struct dfs_s3xml_object {
    const char *key;
    int64_t last_modified_ms;
    const char *etag;
    uint64_t size;
    const struct dfs_s3xml_owner *owner; /* NULL: no <Owner> (v2 without fetch-owner) */
};

/*
 * ListBucketResult of ListObjects (version 1) or ListObjectsV2 (version 2). With url_encoding
 * (the request's encoding-type=url, which boto3 always sends) every key and prefix is written
 * percent-encoded ('/' kept), as S3 does so that any key survives XML.
 */
struct dfs_s3xml_listing {
    int version; /* 1 or 2 */
    const char *bucket;
    const char *prefix;
    const char *delimiter; /* NULL: none */
    uint32_t max_keys;
    bool truncated;
    bool url_encoding;
    const char *marker;             /* v1; "" when none */
    const char *next_marker;        /* v1, when truncated and a delimiter was given; else NULL */
    const char *continuation_token; /* v2: the request's; NULL when none */
    const char *next_continuation_token; /* v2: when truncated */
    const char *start_after;             /* v2: the request's; NULL when none */
    const struct dfs_s3xml_object *objects;
    size_t nobjects;
    const char *const *prefixes; /* CommonPrefixes */
    size_t nprefixes;
};

int dfs_s3xml_list_objects(const struct dfs_s3xml_listing *l, char **out, size_t *len,
                           char **errmsg);

/* InitiateMultipartUploadResult (CreateMultipartUpload). */
int dfs_s3xml_initiate_upload(const char *bucket, const char *key, const char *upload_id,
                              char **out, size_t *len, char **errmsg);

/* CompleteMultipartUploadResult. location: the object's URL. */
int dfs_s3xml_complete_upload(const char *location, const char *bucket, const char *key,
                              const char *etag, char **out, size_t *len, char **errmsg);

struct dfs_s3xml_part {
    uint32_t number;
    int64_t last_modified_ms;
    const char *etag;
    uint64_t size;
};

/* ListPartsResult. */
struct dfs_s3xml_parts {
    const char *bucket, *key, *upload_id;
    const struct dfs_s3xml_owner *owner; /* also written as the Initiator */
    uint32_t part_number_marker, next_part_number_marker, max_parts;
    bool truncated;
    const struct dfs_s3xml_part *parts;
    size_t nparts;
};

int dfs_s3xml_list_parts(const struct dfs_s3xml_parts *p, char **out, size_t *len, char **errmsg);

struct dfs_s3xml_upload {
    const char *key, *upload_id;
    int64_t initiated_ms;
};

/* ListMultipartUploadsResult. */
struct dfs_s3xml_uploads {
    const char *bucket;
    const char *key_marker, *upload_id_marker;           /* the request's; "" when none */
    const char *next_key_marker, *next_upload_id_marker; /* when truncated */
    const char *prefix, *delimiter;                      /* NULL: none */
    uint32_t max_uploads;
    bool truncated;
    bool url_encoding;
    const struct dfs_s3xml_owner *owner;
    const struct dfs_s3xml_upload *uploads;
    size_t nuploads;
    const char *const *prefixes;
    size_t nprefixes;
};

int dfs_s3xml_list_uploads(const struct dfs_s3xml_uploads *u, char **out, size_t *len,
                           char **errmsg);

/* CopyObjectResult, or CopyPartResult when part. */
int dfs_s3xml_copy_result(bool part, const char *etag, int64_t last_modified_ms, char **out,
                          size_t *len, char **errmsg);

struct dfs_s3xml_delete_error {
    const char *key;
    enum dfs_s3err_code code;
    const char *message; /* NULL: the code's default */
};

/* DeleteResult: Deleted for each key removed (left out when quiet), Error for each failure. */
int dfs_s3xml_delete_result(bool quiet, const char *const *deleted, size_t ndeleted,
                            const struct dfs_s3xml_delete_error *errors, size_t nerrors, char **out,
                            size_t *len, char **errmsg);

/* LocationConstraint (GetBucketLocation): the region; "" (us-east-1 in S3's own convention). */
int dfs_s3xml_location(const char *region, char **out, size_t *len, char **errmsg);

/*
 * Request bodies. Each parser takes the whole body (at most DFS_S3XML_MAX_BODY bytes: the
 * handler reads no more), checks it with the strict parser of xml.h (depth and element limits,
 * no DTDs) and against what S3 expects, element names matched without regard to namespace as S3
 * does. Failures are MalformedXML (or the specific S3 code named below) with a one-line reason.
 * Results are owned by the caller: free them with the matching _free.
 */
#define DFS_S3XML_MAX_BODY   (4u << 20)
#define DFS_S3XML_MAX_DELETE 1000
#define DFS_S3XML_MAX_PARTS  10000

struct dfs_s3xml_complete_part {
    uint32_t number;
    char *etag; /* as sent, without surrounding white space */
};

struct dfs_s3xml_complete {
    struct dfs_s3xml_complete_part *parts;
    size_t n;
};

/*
 * <CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"…"</ETag></Part>…: 1 to 10000
 * parts, numbers 1 to 10000 in strictly ascending order (InvalidPartOrder otherwise), each with
 * an ETag; the Checksum* elements of a part are allowed and ignored.
 */
int dfs_s3xml_parse_complete(const char *body, size_t len, struct dfs_s3xml_complete *out,
                             struct dfs_s3err *err);
void dfs_s3xml_complete_free(struct dfs_s3xml_complete *c);

struct dfs_s3xml_delete {
    char **keys;
    size_t n;
    bool quiet;
};

/*
 * <Delete><Quiet>true</Quiet><Object><Key>k</Key></Object>…: 1 to 1000 objects, each a non-empty
 * key of at most 1024 bytes; a VersionId other than "null" is NotImplemented.
 */
int dfs_s3xml_parse_delete(const char *body, size_t len, struct dfs_s3xml_delete *out,
                           struct dfs_s3err *err);
void dfs_s3xml_delete_free(struct dfs_s3xml_delete *d);

/*
 * <CreateBucketConfiguration><LocationConstraint>r</LocationConstraint>: the region into
 * *location (malloc'd; "" when the element is absent or empty). An empty body is the same as no
 * configuration.
 */
int dfs_s3xml_parse_create_bucket(const char *body, size_t len, char **location,
                                  struct dfs_s3err *err);

#endif /* DFS_GATEWAY_S3_S3XML_H */
