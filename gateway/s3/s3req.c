/* S3 requests: which operation, on which bucket and key, with which parameters and headers. */
#include "gateway/s3/s3req.h"

#include "common/err.h"
#include "common/path.h"
#include "common/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    bool reads;
} ops[DFS_S3REQ_OP_COUNT] = {
    [DFS_S3REQ_LIST_BUCKETS] = {"ListBuckets", true},
    [DFS_S3REQ_CREATE_BUCKET] = {"CreateBucket", false},
    [DFS_S3REQ_HEAD_BUCKET] = {"HeadBucket", true},
    [DFS_S3REQ_DELETE_BUCKET] = {"DeleteBucket", false},
    [DFS_S3REQ_GET_BUCKET_LOCATION] = {"GetBucketLocation", true},
    [DFS_S3REQ_LIST_OBJECTS] = {"ListObjects", true},
    [DFS_S3REQ_LIST_OBJECTS_V2] = {"ListObjectsV2", true},
    [DFS_S3REQ_LIST_MULTIPART_UPLOADS] = {"ListMultipartUploads", true},
    [DFS_S3REQ_DELETE_OBJECTS] = {"DeleteObjects", false},
    [DFS_S3REQ_PUT_OBJECT] = {"PutObject", false},
    [DFS_S3REQ_COPY_OBJECT] = {"CopyObject", false},
    [DFS_S3REQ_GET_OBJECT] = {"GetObject", true},
    [DFS_S3REQ_HEAD_OBJECT] = {"HeadObject", true},
    [DFS_S3REQ_DELETE_OBJECT] = {"DeleteObject", false},
    [DFS_S3REQ_CREATE_MULTIPART_UPLOAD] = {"CreateMultipartUpload", false},
    [DFS_S3REQ_UPLOAD_PART] = {"UploadPart", false},
    [DFS_S3REQ_UPLOAD_PART_COPY] = {"UploadPartCopy", false},
    [DFS_S3REQ_COMPLETE_MULTIPART_UPLOAD] = {"CompleteMultipartUpload", false},
    [DFS_S3REQ_ABORT_MULTIPART_UPLOAD] = {"AbortMultipartUpload", false},
    [DFS_S3REQ_LIST_PARTS] = {"ListParts", true},
};

const char *dfs_s3req_op_name(enum dfs_s3req_op op)
{
    return (int)op >= 0 && op < DFS_S3REQ_OP_COUNT ? ops[op].name : "";
}

bool dfs_s3req_op_reads(enum dfs_s3req_op op)
{
    return (int)op >= 0 && op < DFS_S3REQ_OP_COUNT && ops[op].reads;
}

/*
 * Subresources S3 has and dfs does not: a request naming one is refused by name instead of
 * being taken for a plain GET or PUT of the bucket or object (a PUT ?acl must not overwrite an
 * object with an ACL document).
 */
static const char *const unsupported[] = {
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metadataTable",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "session",
    "tagging",
    "torrent",
    "versioning",
    "versions",
    "website",
    "renameObject",
    "checksum",
};

bool dfs_s3req_bucket_valid(const char *name, const char **why)
{
    const char *w = NULL;
    size_t n = strlen(name);
    if (n < 3 || n > 63)
        w = "a bucket name must be 3 to 63 characters long";
    for (size_t i = 0; w == NULL && i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
            w = "a bucket name holds only lower-case letters, digits, '.' and '-'";
    }
    if (w == NULL) {
        char f = name[0], l = name[n - 1];
        if (!((f >= 'a' && f <= 'z') || (f >= '0' && f <= '9')) ||
            !((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9')))
            w = "a bucket name starts and ends with a letter or digit";
    }
    if (w == NULL && strstr(name, "..") != NULL)
        w = "a bucket name has no two adjacent periods";
    if (w == NULL) {
        unsigned a, b, c, d;
        char tail;
        if (sscanf(name, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4)
            w = "a bucket name is not an IP address";
    }
    static const char *const bad_start[] = {"xn--", "sthree-", "amzn-s3-demo-"};
    static const char *const bad_end[] = {"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"};
    for (size_t i = 0; w == NULL && i < sizeof bad_start / sizeof bad_start[0]; i++) {
        if (strncmp(name, bad_start[i], strlen(bad_start[i])) == 0)
            w = "a bucket name does not start with a reserved prefix (xn--, sthree-, "
                "amzn-s3-demo-)";
    }
    for (size_t i = 0; w == NULL && i < sizeof bad_end / sizeof bad_end[0]; i++) {
        size_t sl = strlen(bad_end[i]);
        if (n >= sl && strcmp(name + n - sl, bad_end[i]) == 0)
            w = "a bucket name does not end with a reserved suffix (-s3alias, --ol-s3, .mrap, "
                "--x-s3, --table-s3)";
    }
    if (why != NULL)
        *why = w;
    return w == NULL;
}

static int check_key(const char *key, struct dfs_s3err *err)
{
    size_t n = strlen(key);
    if (n > DFS_S3REQ_KEY_MAX)
        return dfs_s3err_set(err, DFS_S3ERR_KEY_TOO_LONG,
                             "a key is at most %d bytes; this one has %zu", DFS_S3REQ_KEY_MAX, n);
    if (!dfs_utf8_valid(key, n, NULL))
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT, "a key must be UTF-8");
    return DFS_OK;
}

static int check_bucket(const char *bucket, struct dfs_s3err *err)
{
    const char *why;
    if (!dfs_s3req_bucket_valid(bucket, &why)) {
        int rc = dfs_s3err_set(err, DFS_S3ERR_INVALID_BUCKET_NAME, "%s", why);
        if (dfs_utf8_valid(bucket, strlen(bucket), NULL) && strlen(bucket) <= 255)
            dfs_s3err_add_extra(err, "BucketName", bucket);
        return rc;
    }
    return DFS_OK;
}

void dfs_s3req_free(struct dfs_s3req *q)
{
    char **s[] = {&q->bucket,
                  &q->key,
                  &q->upload_id,
                  &q->prefix,
                  &q->delimiter,
                  &q->marker,
                  &q->continuation_token,
                  &q->start_after,
                  &q->key_marker,
                  &q->upload_id_marker,
                  &q->response_content_type,
                  &q->response_content_language,
                  &q->response_expires,
                  &q->response_cache_control,
                  &q->response_content_disposition,
                  &q->response_content_encoding};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        free(*s[i]);
    memset(q, 0, sizeof *q);
}

/* ---- Parameters ---- */

static int param_once(const struct dfs_s3http_query *q, const char *name, const char **v,
                      struct dfs_s3err *err)
{
    if (dfs_s3http_query_count(q, name) > 1)
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT, "parameter %s given more than once",
                             name);
    *v = dfs_s3http_query_get(q, name);
    return DFS_OK;
}

/* A string parameter into *out (a copy; NULL when absent): UTF-8, at most max bytes. */
static int param_str(const struct dfs_s3http_query *q, const char *name, size_t max, char **out,
                     struct dfs_s3err *err)
{
    const char *v = NULL;
    int rc = param_once(q, name, &v, err);
    if (rc != DFS_OK || v == NULL)
        return rc;
    size_t n = strlen(v);
    if (n > max || !dfs_utf8_valid(v, n, NULL))
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT,
                             "parameter %s must be UTF-8 of at most %zu bytes", name, max);
    *out = strdup(v);
    if (*out == NULL)
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    return DFS_OK;
}

/* A decimal parameter in [min, max]; values past cap (and below max) become cap. */
static int param_u32(const struct dfs_s3http_query *q, const char *name, uint32_t min, uint32_t max,
                     uint32_t cap, uint32_t def, uint32_t *out, struct dfs_s3err *err)
{
    const char *v = NULL;
    int rc = param_once(q, name, &v, err);
    if (rc != DFS_OK)
        return rc;
    if (v == NULL) {
        *out = def;
        return DFS_OK;
    }
    uint64_t x = 0;
    size_t n = strlen(v);
    bool ok = n > 0 && n <= 10;
    for (size_t i = 0; ok && i < n; i++) {
        ok = v[i] >= '0' && v[i] <= '9';
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (!ok || x < min || x > max)
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT,
                             "parameter %s must be an integer from %u to %u", name, min, max);
    *out = x > cap ? cap : (uint32_t)x;
    return DFS_OK;
}

static int param_bool(const struct dfs_s3http_query *q, const char *name, bool *out,
                      struct dfs_s3err *err)
{
    const char *v = NULL;
    int rc = param_once(q, name, &v, err);
    if (rc != DFS_OK || v == NULL)
        return rc;
    if (strcasecmp(v, "true") != 0 && strcasecmp(v, "false") != 0)
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT, "parameter %s must be true or false",
                             name);
    *out = strcasecmp(v, "true") == 0;
    return DFS_OK;
}

static int param_encoding(const struct dfs_s3http_query *q, bool *url, struct dfs_s3err *err)
{
    const char *v = NULL;
    int rc = param_once(q, "encoding-type", &v, err);
    if (rc != DFS_OK || v == NULL)
        return rc;
    if (strcmp(v, "url") != 0)
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT,
                             "Invalid Encoding Method specified in Request");
    *url = true;
    return DFS_OK;
}

static int param_upload_id(const struct dfs_s3http_query *q, struct dfs_s3req *out,
                           struct dfs_s3err *err)
{
    int rc = param_str(q, "uploadId", 256, &out->upload_id, err);
    if (rc == DFS_OK && (out->upload_id == NULL || out->upload_id[0] == '\0'))
        rc = dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT, "uploadId must not be empty");
    return rc;
}

#define KEYISH_MAX 1024 /* prefixes, markers, delimiters: key-sized */

static int list_params(const struct dfs_s3http_query *q, struct dfs_s3req *out,
                       struct dfs_s3err *err)
{
    int rc = DFS_OK;
    switch (out->op) {
    case DFS_S3REQ_LIST_OBJECTS:
    case DFS_S3REQ_LIST_OBJECTS_V2:
        rc = param_str(q, "prefix", KEYISH_MAX, &out->prefix, err);
        if (rc == DFS_OK)
            rc = param_str(q, "delimiter", KEYISH_MAX, &out->delimiter, err);
        if (rc == DFS_OK)
            rc = param_u32(q, "max-keys", 0, INT32_MAX, DFS_S3REQ_LIST_MAX, DFS_S3REQ_LIST_MAX,
                           &out->max, err);
        if (rc == DFS_OK)
            rc = param_encoding(q, &out->url_encoding, err);
        if (rc == DFS_OK && out->op == DFS_S3REQ_LIST_OBJECTS)
            rc = param_str(q, "marker", KEYISH_MAX, &out->marker, err);
        if (rc == DFS_OK && out->op == DFS_S3REQ_LIST_OBJECTS_V2)
            rc = param_str(q, "continuation-token", 2 * KEYISH_MAX, &out->continuation_token, err);
        if (rc == DFS_OK && out->op == DFS_S3REQ_LIST_OBJECTS_V2)
            rc = param_str(q, "start-after", KEYISH_MAX, &out->start_after, err);
        if (rc == DFS_OK && out->op == DFS_S3REQ_LIST_OBJECTS_V2)
            rc = param_bool(q, "fetch-owner", &out->fetch_owner, err);
        break;
    case DFS_S3REQ_LIST_MULTIPART_UPLOADS:
        rc = param_str(q, "prefix", KEYISH_MAX, &out->prefix, err);
        if (rc == DFS_OK)
            rc = param_str(q, "delimiter", KEYISH_MAX, &out->delimiter, err);
        if (rc == DFS_OK)
            rc = param_u32(q, "max-uploads", 1, INT32_MAX, DFS_S3REQ_LIST_MAX, DFS_S3REQ_LIST_MAX,
                           &out->max, err);
        if (rc == DFS_OK)
            rc = param_encoding(q, &out->url_encoding, err);
        if (rc == DFS_OK)
            rc = param_str(q, "key-marker", KEYISH_MAX, &out->key_marker, err);
        if (rc == DFS_OK)
            rc = param_str(q, "upload-id-marker", 256, &out->upload_id_marker, err);
        break;
    case DFS_S3REQ_LIST_PARTS:
        rc = param_u32(q, "max-parts", 0, INT32_MAX, DFS_S3REQ_LIST_MAX, DFS_S3REQ_LIST_MAX,
                       &out->max, err);
        if (rc == DFS_OK)
            rc = param_u32(q, "part-number-marker", 0, DFS_S3REQ_MAX_PART, DFS_S3REQ_MAX_PART, 0,
                           &out->part_number_marker, err);
        break;
    default:
        break;
    }
    return rc;
}

static int response_params(const struct dfs_s3http_query *q, struct dfs_s3req *out,
                           struct dfs_s3err *err)
{
    struct {
        const char *name;
        char **slot;
    } p[] = {
        {"response-content-type", &out->response_content_type},
        {"response-content-language", &out->response_content_language},
        {"response-expires", &out->response_expires},
        {"response-cache-control", &out->response_cache_control},
        {"response-content-disposition", &out->response_content_disposition},
        {"response-content-encoding", &out->response_content_encoding},
    };
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
        int rc = param_str(q, p[i].name, 1024, p[i].slot, err);
        if (rc != DFS_OK)
            return rc;
        for (const char *c = *p[i].slot; c != NULL && *c != '\0'; c++) {
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT,
                                     "parameter %s holds a control character", p[i].name);
        }
    }
    return DFS_OK;
}

/* ---- Operation ---- */

static int method_not_allowed(const char *method, const char *what, struct dfs_s3err *err)
{
    int rc = dfs_s3err_set(err, DFS_S3ERR_METHOD_NOT_ALLOWED,
                           "The specified method is not allowed against this resource (%s)", what);
    dfs_s3err_add_extra(err, "Method", method);
    dfs_s3err_add_extra(err, "ResourceType", what);
    return rc;
}

static bool has(const struct dfs_s3http_query *q, const char *name)
{
    return dfs_s3http_query_count(q, name) > 0;
}

static int choose_op(const struct dfs_s3http_request *r, const struct dfs_s3http_query *q,
                     struct dfs_s3req *out, struct dfs_s3err *err)
{
    const char *m = r->method;
    bool get = strcmp(m, "GET") == 0, head = strcmp(m, "HEAD") == 0, put = strcmp(m, "PUT") == 0,
         post = strcmp(m, "POST") == 0, del = strcmp(m, "DELETE") == 0;
    if (!get && !head && !put && !post && !del)
        return method_not_allowed(m,
                                  out->bucket == NULL ? "SERVICE"
                                  : out->key == NULL  ? "BUCKET"
                                                      : "OBJECT",
                                  err);
    if (out->bucket == NULL) {
        if (!get)
            return method_not_allowed(m, "SERVICE", err);
        out->op = DFS_S3REQ_LIST_BUCKETS;
        return DFS_OK;
    }
    if (out->key == NULL) {
        if (get) {
            if (has(q, "location"))
                out->op = DFS_S3REQ_GET_BUCKET_LOCATION;
            else if (has(q, "uploads"))
                out->op = DFS_S3REQ_LIST_MULTIPART_UPLOADS;
            else if (has(q, "list-type")) {
                const char *lt = NULL;
                int rc = param_once(q, "list-type", &lt, err);
                if (rc != DFS_OK)
                    return rc;
                if (strcmp(lt, "2") != 0)
                    return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT, "list-type must be 2");
                out->op = DFS_S3REQ_LIST_OBJECTS_V2;
            } else
                out->op = DFS_S3REQ_LIST_OBJECTS;
        } else if (head) {
            out->op = DFS_S3REQ_HEAD_BUCKET;
        } else if (put) {
            out->op = DFS_S3REQ_CREATE_BUCKET;
        } else if (del) {
            out->op = DFS_S3REQ_DELETE_BUCKET;
        } else if (has(q, "delete")) {
            out->op = DFS_S3REQ_DELETE_OBJECTS;
        } else {
            return dfs_s3err_set(err, DFS_S3ERR_NOT_IMPLEMENTED,
                                 "POST object uploads (HTML forms) are not implemented");
        }
        return DFS_OK;
    }
    bool upload_id = has(q, "uploadId"), part_number = has(q, "partNumber");
    if ((get || head) && part_number)
        return dfs_s3err_set(err, DFS_S3ERR_NOT_IMPLEMENTED,
                             "reading one part of an object (partNumber) is not implemented");
    if (get) {
        out->op = upload_id ? DFS_S3REQ_LIST_PARTS : DFS_S3REQ_GET_OBJECT;
    } else if (head) {
        out->op = DFS_S3REQ_HEAD_OBJECT;
    } else if (put) {
        bool copy = dfs_s3http_header_count(r, "x-amz-copy-source") > 0;
        if (upload_id != part_number)
            return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT,
                                 "an UploadPart needs both partNumber and uploadId");
        out->op = upload_id ? (copy ? DFS_S3REQ_UPLOAD_PART_COPY : DFS_S3REQ_UPLOAD_PART)
                  : copy    ? DFS_S3REQ_COPY_OBJECT
                            : DFS_S3REQ_PUT_OBJECT;
    } else if (del) {
        out->op = upload_id ? DFS_S3REQ_ABORT_MULTIPART_UPLOAD : DFS_S3REQ_DELETE_OBJECT;
    } else {
        bool uploads = has(q, "uploads");
        if (uploads && upload_id)
            return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT,
                                 "uploads and uploadId do not go together");
        if (!uploads && !upload_id)
            return method_not_allowed(m, "OBJECT", err);
        out->op = uploads ? DFS_S3REQ_CREATE_MULTIPART_UPLOAD : DFS_S3REQ_COMPLETE_MULTIPART_UPLOAD;
    }
    return DFS_OK;
}

/* The host of a Host header, lower-case, without its port (NULL for an IPv6 literal). */
static char *host_only(const char *h)
{
    if (h[0] == '[')
        return NULL;
    size_t n = strlen(h);
    const char *colon = strrchr(h, ':');
    if (colon != NULL && colon[1] != '\0' && strspn(colon + 1, "0123456789") == strlen(colon + 1))
        n = (size_t)(colon - h);
    while (n > 0 && h[n - 1] == '.') /* a fully qualified "host." */
        n--;
    char *s = strndup(h, n);
    for (char *c = s; c != NULL && *c != '\0'; c++) {
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    }
    return s;
}

/* The bucket named by the Host header under domain, or NULL (path style). */
static int virtual_bucket(const char *domain, const struct dfs_s3http_request *r, char **bucket,
                          struct dfs_s3err *err)
{
    *bucket = NULL;
    if (domain == NULL || domain[0] == '\0')
        return DFS_OK;
    const char *h;
    int rc = dfs_s3http_header_once(r, "host", &h, err);
    if (rc != DFS_OK || h == NULL)
        return rc;
    char *host = host_only(h);
    char *dom = host_only(domain);
    if (host != NULL && dom != NULL) {
        size_t hl = strlen(host), dl = strlen(dom);
        if (hl > dl + 1 && host[hl - dl - 1] == '.' && strcmp(host + hl - dl, dom) == 0) {
            host[hl - dl - 1] = '\0';
            *bucket = host;
            host = NULL;
        }
    }
    free(host);
    free(dom);
    return DFS_OK;
}

int dfs_s3req_parse(const char *domain, const struct dfs_s3http_request *r, struct dfs_s3req *out,
                    struct dfs_s3err *err)
{
    memset(out, 0, sizeof *out);
    if (r->path == NULL || r->path[0] != '/')
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_URI, "the path must start with '/'");
    char *path = NULL, *msg = NULL;
    int rc = dfs_s3http_decode(r->path, strlen(r->path), false, &path, NULL, &msg);
    if (rc != DFS_OK) {
        rc = rc == DFS_ENOMEM ? dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory")
                              : dfs_s3err_set(err, DFS_S3ERR_INVALID_URI, "path: %s", msg);
        free(msg);
        return rc;
    }
    rc = virtual_bucket(domain, r, &out->bucket, err);
    const char *key = NULL;
    if (rc == DFS_OK && out->bucket != NULL) {
        out->virtual_host = true;
        key = path[1] != '\0' ? path + 1 : NULL;
    } else if (rc == DFS_OK && path[1] != '\0') {
        char *slash = strchr(path + 1, '/');
        out->bucket =
            slash != NULL ? strndup(path + 1, (size_t)(slash - path - 1)) : strdup(path + 1);
        if (out->bucket == NULL)
            rc = dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
        key = slash != NULL && slash[1] != '\0' ? slash + 1 : NULL;
    }
    if (rc == DFS_OK && out->bucket != NULL)
        rc = check_bucket(out->bucket, err);
    if (rc == DFS_OK && key != NULL) {
        rc = check_key(key, err);
        if (rc == DFS_OK && (out->key = strdup(key)) == NULL)
            rc = dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    }
    free(path);
    struct dfs_s3http_query q = {0};
    if (rc == DFS_OK)
        rc = dfs_s3http_query_parse(r->query, &q, err);
    for (size_t i = 0; rc == DFS_OK && i < sizeof unsupported / sizeof unsupported[0]; i++) {
        if (has(&q, unsupported[i]))
            rc = dfs_s3err_set(err, DFS_S3ERR_NOT_IMPLEMENTED,
                               "dfs does not implement the ?%s subresource", unsupported[i]);
    }
    if (rc == DFS_OK) {
        const char *v = dfs_s3http_query_get(&q, "versionId");
        if (v != NULL && strcmp(v, "null") != 0)
            rc = dfs_s3err_set(err, DFS_S3ERR_NOT_IMPLEMENTED, "dfs keeps no object versions");
    }
    if (rc == DFS_OK)
        rc = choose_op(r, &q, out, err);
    if (rc == DFS_OK)
        rc = list_params(&q, out, err);
    if (rc == DFS_OK && (out->op == DFS_S3REQ_UPLOAD_PART || out->op == DFS_S3REQ_UPLOAD_PART_COPY))
        rc = param_u32(&q, "partNumber", 1, DFS_S3REQ_MAX_PART, DFS_S3REQ_MAX_PART, 0,
                       &out->part_number, err);
    if (rc == DFS_OK &&
        (out->op == DFS_S3REQ_UPLOAD_PART || out->op == DFS_S3REQ_UPLOAD_PART_COPY ||
         out->op == DFS_S3REQ_COMPLETE_MULTIPART_UPLOAD ||
         out->op == DFS_S3REQ_ABORT_MULTIPART_UPLOAD || out->op == DFS_S3REQ_LIST_PARTS))
        rc = param_upload_id(&q, out, err);
    if (rc == DFS_OK && (out->op == DFS_S3REQ_GET_OBJECT || out->op == DFS_S3REQ_HEAD_OBJECT))
        rc = response_params(&q, out, err);
    dfs_s3http_query_free(&q);
    if (rc != DFS_OK)
        dfs_s3req_free(out);
    return rc;
}

/* ---- Paths ---- */

int dfs_s3req_object_path(const char *bucket, const char *key, char **path, struct dfs_s3err *err)
{
    char *p = NULL;
    if (asprintf(&p, key != NULL ? "/%s/%s" : "/%s", bucket, key) < 0)
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    if (strlen(p) > DFS_PATH_MAX) {
        free(p);
        return dfs_s3err_set(err, DFS_S3ERR_KEY_TOO_LONG,
                             "bucket and key make a dfs path longer than %d bytes", DFS_PATH_MAX);
    }
    char *canon = NULL, *msg = NULL;
    int rc = dfs_path_canon(p, &canon, &msg);
    if (rc == DFS_ENOMEM) {
        free(p);
        free(msg);
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    }
    if (rc != DFS_OK || strcmp(canon, p) != 0) {
        rc =
            dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT, "dfs cannot store this key as it is: %s",
                          msg != NULL ? msg
                                      : "it has an empty segment (a leading, trailing or "
                                        "doubled '/')");
        free(p);
        free(canon);
        free(msg);
        return rc;
    }
    free(canon);
    *path = p;
    return DFS_OK;
}

int dfs_s3req_list_prefix(const char *bucket, const char *prefix, char **out, bool *none)
{
    char *p = NULL;
    if (asprintf(&p, "/%s/%s", bucket, prefix != NULL ? prefix : "") < 0)
        return DFS_ENOMEM;
    *none = strlen(p) > DFS_PATH_MAX;
    const char *s = p + 1;
    while (!*none) {
        size_t n = strcspn(s, "/");
        bool complete = s[n] == '/';
        if (n > DFS_NAME_MAX)
            *none = true;
        if (complete &&
            (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')))
            *none = true;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c == 0x7f)
                *none = true;
        }
        if (!complete)
            break;
        s += n + 1;
    }
    *out = p;
    return DFS_OK;
}

/* ---- Headers ---- */

void dfs_s3req_meta_free(struct dfs_s3req_meta *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].name);
        free(m->e[i].value);
    }
    free(m->e);
    m->e = NULL;
    m->n = 0;
}

static int meta_cmp(const void *a, const void *b)
{
    const struct dfs_s3req_meta_entry *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static bool value_ok(const char *v)
{
    size_t n = strlen(v);
    if (!dfs_utf8_valid(v, n, NULL))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* Content-Encoding without its aws-chunked coding; NULL (in *out) when nothing remains. */
static int strip_aws_chunked(const char *v, char **out)
{
    *out = NULL;
    size_t n = strlen(v);
    char *s = malloc(n + 1);
    if (s == NULL)
        return DFS_ENOMEM;
    size_t j = 0;
    for (const char *p = v; *p != '\0';) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t k = strcspn(p, ",");
        size_t t = k;
        while (t > 0 && (p[t - 1] == ' ' || p[t - 1] == '\t'))
            t--;
        if (t > 0 && !(t == 11 && strncasecmp(p, "aws-chunked", 11) == 0)) {
            if (j > 0)
                s[j++] = ',';
            memcpy(s + j, p, t);
            j += t;
        }
        p += k;
    }
    s[j] = '\0';
    if (j == 0)
        free(s);
    else
        *out = s;
    return DFS_OK;
}

int dfs_s3req_meta_parse(const struct dfs_s3http_request *r, struct dfs_s3req_meta *m,
                         struct dfs_s3err *err)
{
    static const char *const stored[] = {"cache-control",    "content-disposition",
                                         "content-encoding", "content-language",
                                         "content-type",     "expires"};
    memset(m, 0, sizeof *m);
    size_t user_bytes = 0;
    int rc = DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < r->nheaders; i++) {
        const char *name = r->headers[i].name, *value = r->headers[i].value;
        bool user = strncasecmp(name, "x-amz-meta-", 11) == 0;
        bool known = false;
        for (size_t k = 0; !user && !known && k < sizeof stored / sizeof stored[0]; k++)
            known = strcasecmp(name, stored[k]) == 0;
        if (!user && !known)
            continue;
        if (user && name[11] == '\0') {
            rc = dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT, "x-amz-meta- without a name");
            break;
        }
        if (!value_ok(value)) {
            rc = dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT,
                               "header %s must be UTF-8 without control characters", name);
            break;
        }
        char *v = NULL;
        if (strcasecmp(name, "content-encoding") == 0) {
            if (strip_aws_chunked(value, &v) != DFS_OK) {
                rc = dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
                break;
            }
            if (v == NULL)
                continue;
        } else if ((v = strdup(value)) == NULL) {
            rc = dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
            break;
        }
        char *lname = strdup(name);
        if (lname == NULL) {
            free(v);
            rc = dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
            break;
        }
        for (char *c = lname; *c != '\0'; c++) {
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        }
        if (user)
            user_bytes += strlen(lname) - 11 + strlen(v);
        /* A header sent twice: one entry, values joined by ',' as HTTP reads them. */
        struct dfs_s3req_meta_entry *same = NULL;
        for (size_t k = 0; k < m->n && same == NULL; k++) {
            if (strcmp(m->e[k].name, lname) == 0)
                same = &m->e[k];
        }
        if (same != NULL) {
            char *joined = NULL;
            if (asprintf(&joined, "%s,%s", same->value, v) < 0)
                joined = NULL;
            free(v);
            free(lname);
            if (joined == NULL) {
                rc = dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
                break;
            }
            if (user)
                user_bytes += 1;
            free(same->value);
            same->value = joined;
        } else {
            struct dfs_s3req_meta_entry *ne = realloc(m->e, (m->n + 1) * sizeof *ne);
            if (ne == NULL) {
                free(v);
                free(lname);
                rc = dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
                break;
            }
            m->e = ne;
            m->e[m->n].name = lname;
            m->e[m->n].value = v;
            m->n++;
        }
        if (user_bytes > DFS_S3REQ_META_MAX) {
            rc = dfs_s3err_set(err, DFS_S3ERR_METADATA_TOO_LARGE,
                               "Your metadata headers exceed the maximum allowed metadata size "
                               "(%d bytes)",
                               DFS_S3REQ_META_MAX);
            break;
        }
    }
    if (rc != DFS_OK) {
        dfs_s3req_meta_free(m);
        return rc;
    }
    if (m->n > 1)
        qsort(m->e, m->n, sizeof *m->e, meta_cmp);
    return DFS_OK;
}

int dfs_s3req_copy_source(const struct dfs_s3http_request *r, char **bucket, char **key,
                          bool *replace_meta, struct dfs_s3err *err)
{
    *bucket = *key = NULL;
    const char *v, *dir;
    int rc = dfs_s3http_header_once(r, "x-amz-copy-source", &v, err);
    if (rc == DFS_OK)
        rc = dfs_s3http_header_once(r, "x-amz-metadata-directive", &dir, err);
    if (rc != DFS_OK)
        return rc;
    if (v == NULL)
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT, "x-amz-copy-source is missing");
    if (replace_meta != NULL)
        *replace_meta = false;
    if (dir != NULL && strcmp(dir, "COPY") != 0 && strcmp(dir, "REPLACE") != 0)
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT,
                             "x-amz-metadata-directive must be COPY or REPLACE");
    if (replace_meta != NULL)
        *replace_meta = dir != NULL && strcmp(dir, "REPLACE") == 0;
    size_t n = strcspn(v, "?");
    if (v[n] == '?' && strcmp(v + n + 1, "versionId=null") != 0)
        return dfs_s3err_set(err,
                             strncmp(v + n + 1, "versionId=", 10) == 0 ? DFS_S3ERR_NOT_IMPLEMENTED
                                                                       : DFS_S3ERR_INVALID_ARGUMENT,
                             "x-amz-copy-source may only name versionId=null: dfs keeps no "
                             "object versions");
    char *path = NULL, *msg = NULL;
    rc = dfs_s3http_decode(v, n, false, &path, NULL, &msg);
    if (rc != DFS_OK) {
        rc = dfs_s3err_set(err,
                           rc == DFS_ENOMEM ? DFS_S3ERR_INTERNAL_ERROR : DFS_S3ERR_INVALID_ARGUMENT,
                           "x-amz-copy-source: %s", msg != NULL ? msg : "out of memory");
        free(msg);
        return rc;
    }
    const char *p = path[0] == '/' ? path + 1 : path;
    const char *slash = strchr(p, '/');
    if (slash == NULL || slash[1] == '\0') {
        free(path);
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT,
                             "x-amz-copy-source must name a bucket and a key");
    }
    *bucket = strndup(p, (size_t)(slash - p));
    *key = strdup(slash + 1);
    free(path);
    if (*bucket == NULL || *key == NULL)
        rc = dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    if (rc == DFS_OK)
        rc = check_bucket(*bucket, err);
    if (rc == DFS_OK)
        rc = check_key(*key, err);
    if (rc != DFS_OK) {
        free(*bucket);
        free(*key);
        *bucket = *key = NULL;
    }
    return rc;
}

int dfs_s3req_check_headers(const struct dfs_s3http_request *r, struct dfs_s3err *err)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *n = r->headers[i].name, *v = r->headers[i].value;
        const char *what = NULL;
        if (strncasecmp(n, "x-amz-server-side-encryption", 28) == 0)
            what = "server-side encryption";
        else if (strncasecmp(n, "x-amz-object-lock-", 18) == 0)
            what = "object lock";
        else if (strcasecmp(n, "x-amz-website-redirect-location") == 0)
            what = "website redirects";
        else if (strncasecmp(n, "x-amz-grant-", 12) == 0)
            what = "access grants";
        else if (strcasecmp(n, "x-amz-acl") == 0 && strcmp(v, "private") != 0 &&
                 strcmp(v, "bucket-owner-full-control") != 0)
            what = "ACLs other than private";
        if (what != NULL)
            return dfs_s3err_set(err, DFS_S3ERR_NOT_IMPLEMENTED,
                                 "dfs does not implement %s (header %s)", what, n);
    }
    return DFS_OK;
}

int dfs_s3req_content_length(const struct dfs_s3http_request *r, bool decoded_length, uint64_t *len,
                             struct dfs_s3err *err)
{
    const char *name = decoded_length ? "x-amz-decoded-content-length" : "content-length";
    const char *v = NULL;
    int rc = dfs_s3http_header_once(r, name, &v, err);
    if (rc != DFS_OK)
        return rc;
    if (v == NULL)
        return dfs_s3err_set(err, DFS_S3ERR_MISSING_CONTENT_LENGTH,
                             "You must provide the %s HTTP header.",
                             decoded_length ? "x-amz-decoded-content-length" : "Content-Length");
    uint64_t x = 0;
    size_t n = strlen(v);
    bool ok = n > 0 && n <= 19;
    for (size_t i = 0; ok && i < n; i++) {
        ok = v[i] >= '0' && v[i] <= '9';
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (!ok)
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT, "%s is not a byte count", name);
    if (x > DFS_S3REQ_MAX_PUT_SIZE)
        return dfs_s3err_set(err, DFS_S3ERR_ENTITY_TOO_LARGE,
                             "one upload is at most 5 GiB; use a multipart upload");
    *len = x;
    return DFS_OK;
}
