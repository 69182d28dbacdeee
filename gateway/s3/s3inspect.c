/*
 * s3inspect: what dfs-gateway's S3 front end makes of one HTTP request, for tests that drive real S3
 * clients (boto3, s3cmd) and check every module of gateway/s3 on what those clients send.
 *
 *   s3inspect [--now SECONDS] [--domain D] [--region R] [--key ID:SECRET:ROLE]... [--slice N]
 *             < request
 *   s3inspect --xml NAME          print one of the sample response documents (see samples below)
 *
 * The request on standard input is "METHOD TARGET\n", header lines "Name: value\n", an empty line,
 * and the body to the end (the body as it arrives over HTTP, aws-chunked framing included). It
 * goes through the steps the gateway takes, in its order: signature (sigv4.h), request (s3req.h),
 * refused headers, the body (chunked.h or the payload hash, Content-MD5, the x-amz-checksum-* header
 * or trailer, the ETag), and what the
 * operation reads from headers and body (metadata, copy source, conditions, XML bodies). The body
 * is fed in slices of N bytes (default: sizes from a fixed pseudo-random sequence), as it would
 * arrive. Output: one "name<TAB>value" line per finding, values percent-encoded ('/' kept), ending
 * with "result<TAB>ok" or the first failure's status, code, message and XML error body.
 */
#include "common/err.h"
#include "common/options.h"
#include "gateway/s3/chunked.h"
#include "gateway/s3/etag.h"
#include "gateway/s3/s3cond.h"
#include "gateway/s3/s3err.h"
#include "gateway/s3/s3http.h"
#include "gateway/s3/s3req.h"
#include "gateway/s3/s3sum.h"
#include "gateway/s3/s3xml.h"
#include "gateway/s3/sigv4.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_KEYS    8
#define MAX_HEADERS 128

struct keyent {
    char *id, *secret;
    int role;
};

struct keys {
    struct keyent k[MAX_KEYS];
    int n;
};

static int lookup(void *arg, const char *id, const struct dfs_sigv4_scope *scope,
                  uint8_t key[DFS_SIGV4_KEY_LEN], int *role, char **errmsg)
{
    struct keys *ks = arg;
    for (int i = 0; i < ks->n; i++) {
        if (strcmp(ks->k[i].id, id) == 0) {
            *role = ks->k[i].role;
            return dfs_sigv4_signing_key(ks->k[i].secret, scope, key);
        }
    }
    return dfs_seterr(errmsg, DFS_ENOTFOUND, "no key %s", id);
}

static void out(const char *name, const char *value)
{
    char *e = dfs_s3http_encode(value, strlen(value), true);
    printf("%s\t%s\n", name, e != NULL ? e : "");
    free(e);
}

static void outf(const char *name, unsigned long long v)
{
    printf("%s\t%llu\n", name, v);
}

static int fail(const struct dfs_s3err *e, const char *resource)
{
    printf("result\terror\n");
    outf("status", (unsigned long long)dfs_s3err_http_status(e->code));
    out("code", dfs_s3err_name(e->code));
    out("message", e->message != NULL ? e->message : dfs_s3err_default_message(e->code));
    char *body = NULL;
    size_t len;
    if (dfs_s3err_body(e, resource, "s3inspect", &body, &len) == DFS_OK)
        out("error_xml", body);
    free(body);
    return 0;
}

/* ---- Body ---- */

struct body {
    EVP_MD_CTX *sha;
    dfs_etag_md5 *md5;
    dfs_s3sum *sum; /* the client's x-amz-checksum-*, when it sent one */
    char *buf;      /* kept for XML bodies only */
    size_t len, cap;
    bool keep;
    uint64_t total;
};

static int sink(void *arg, const uint8_t *data, size_t len)
{
    struct body *b = arg;
    EVP_DigestUpdate(b->sha, data, len);
    dfs_etag_md5_update(b->md5, data, len);
    if (b->sum != NULL)
        dfs_s3sum_update(b->sum, data, len);
    b->total += len;
    if (b->keep) {
        if (b->len + len + 1 > b->cap) {
            size_t c = (b->len + len + 1) * 2;
            char *nb = realloc(b->buf, c);
            if (nb == NULL)
                return DFS_ENOMEM;
            b->buf = nb;
            b->cap = c;
        }
        memcpy(b->buf + b->len, data, len);
        b->len += len;
        b->buf[b->len] = '\0';
    }
    return DFS_OK;
}

/* The next slice length: a fixed pseudo-random walk over 1..70000, or the fixed step. */
static size_t next_slice(size_t step, uint64_t *state)
{
    if (step > 0)
        return step;
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t r = *state >> 33;
    return (size_t)(r % 4 == 0 ? 1 + r % 7 : 1 + r % 70000);
}

/* ---- Samples of every response document, for clients to parse ---- */

static const struct dfs_s3xml_owner owner = {"dfs-0123456789abcdef", "ci-key"};

static int sample(const char *name)
{
    char *doc = NULL, *msg = NULL;
    size_t len;
    int rc = DFS_EINVAL;
    struct dfs_s3xml_object objs[] = {
        {"photos/a b&c<d>.jpg", 1500000000123, "\"9e107d9d372bb6826bd81d3542a419d6\"", 43, &owner},
        {"photos/\xc3\xa9t\xc3\xa9+plus", 1600000000000, "\"d41d8cd98f00b204e9800998ecf8427e-2\"",
         10485760, NULL},
    };
    const char *prefixes[] = {"photos/2023/", "photos/a&b/"};
    struct dfs_s3xml_listing l = {
        .bucket = "bucket",
        .prefix = "photos/",
        .delimiter = "/",
        .max_keys = 2,
        .truncated = true,
        .objects = objs,
        .nobjects = 2,
        .prefixes = prefixes,
        .nprefixes = 2,
    };
    if (strcmp(name, "list-buckets") == 0) {
        struct dfs_s3xml_bucket b[] = {{"alpha", 1255372230000}, {"beta.two", 0}};
        rc = dfs_s3xml_list_buckets(&owner, b, 2, &doc, &len, &msg);
    } else if (strcmp(name, "list-v1") == 0 || strcmp(name, "list-v1-url") == 0) {
        l.version = 1;
        l.marker = "photos/0";
        l.next_marker = "photos/\xc3\xa9t\xc3\xa9+plus";
        l.url_encoding = strcmp(name, "list-v1-url") == 0;
        rc = dfs_s3xml_list_objects(&l, &doc, &len, &msg);
    } else if (strcmp(name, "list-v2") == 0 || strcmp(name, "list-v2-url") == 0) {
        l.version = 2;
        l.continuation_token = "token-in";
        l.next_continuation_token = "token-out";
        l.start_after = "photos/0";
        l.url_encoding = strcmp(name, "list-v2-url") == 0;
        rc = dfs_s3xml_list_objects(&l, &doc, &len, &msg);
    } else if (strcmp(name, "initiate") == 0) {
        rc = dfs_s3xml_initiate_upload("bucket", "big & large", "upload-1", &doc, &len, &msg);
    } else if (strcmp(name, "complete") == 0) {
        rc = dfs_s3xml_complete_upload("http://127.0.0.1:9000/bucket/big", "bucket", "big",
                                       "\"d41d8cd98f00b204e9800998ecf8427e-3\"", &doc, &len, &msg);
    } else if (strcmp(name, "list-parts") == 0) {
        struct dfs_s3xml_part parts[] = {{1, 1500000000000, "\"aaa\"", 5242880},
                                         {2, 1500000001000, "\"bbb\"", 7}};
        struct dfs_s3xml_parts p = {"bucket", "big", "upload-1", &owner, 0, 2, 2, true, parts, 2};
        rc = dfs_s3xml_list_parts(&p, &doc, &len, &msg);
    } else if (strcmp(name, "list-uploads") == 0) {
        struct dfs_s3xml_upload ups[] = {{"a b", "upload-1", 1500000000000},
                                         {"c", "upload-2", 1500000001000}};
        struct dfs_s3xml_uploads u = {
            .bucket = "bucket",
            .key_marker = "",
            .upload_id_marker = "",
            .next_key_marker = "c",
            .next_upload_id_marker = "upload-2",
            .max_uploads = 2,
            .truncated = true,
            .owner = &owner,
            .uploads = ups,
            .nuploads = 2,
        };
        rc = dfs_s3xml_list_uploads(&u, &doc, &len, &msg);
    } else if (strcmp(name, "copy") == 0) {
        rc = dfs_s3xml_copy_result(false, "\"9e107d9d372bb6826bd81d3542a419d6\"", 1500000000000,
                                   &doc, &len, &msg);
    } else if (strcmp(name, "delete") == 0) {
        const char *deleted[] = {"a", "b&c"};
        struct dfs_s3xml_delete_error errs[] = {{"d", DFS_S3ERR_ACCESS_DENIED, NULL}};
        rc = dfs_s3xml_delete_result(false, deleted, 2, errs, 1, &doc, &len, &msg);
    } else if (strcmp(name, "location") == 0) {
        rc = dfs_s3xml_location("eu-west-1", &doc, &len, &msg);
    } else if (strncmp(name, "error-", 6) == 0) {
        struct dfs_s3err e = {0};
        enum dfs_s3err_code code = dfs_s3err_from_name(name + 6);
        if (code == DFS_S3ERR_NONE) {
            fprintf(stderr, "s3inspect: no S3 error %s\n", name + 6);
            return 2;
        }
        dfs_s3err_set(&e, code, "sample of %s", name + 6);
        dfs_s3err_add_extra(&e, "Key", "a&b");
        rc = dfs_s3err_body(&e, "/bucket/a&b", "req-1", &doc, &len);
        dfs_s3err_clear(&e);
    } else {
        fprintf(stderr, "s3inspect: no sample %s\n", name);
        return 2;
    }
    if (rc != DFS_OK) {
        fprintf(stderr, "s3inspect: %s: %s\n", name, msg != NULL ? msg : dfs_strerror(rc));
        free(msg);
        return 1;
    }
    fwrite(doc, 1, len, stdout);
    free(doc);
    return 0;
}

/* ---- The request ---- */

static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    while (b != NULL) {
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            cap *= 2;
            char *nb = realloc(b, cap + 1);
            if (nb == NULL) {
                free(b);
                return NULL;
            }
            b = nb;
        }
    }
    if (b != NULL)
        b[n] = '\0';
    *len = n;
    return b;
}

static void hex(const uint8_t *d, size_t n, char *o)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        o[2 * i] = digits[d[i] >> 4];
        o[2 * i + 1] = digits[d[i] & 15];
    }
    o[2 * n] = '\0';
}

static bool has_body(enum dfs_s3req_op op)
{
    return op == DFS_S3REQ_PUT_OBJECT || op == DFS_S3REQ_UPLOAD_PART ||
           op == DFS_S3REQ_COMPLETE_MULTIPART_UPLOAD || op == DFS_S3REQ_DELETE_OBJECTS ||
           op == DFS_S3REQ_CREATE_BUCKET;
}

static bool xml_body(enum dfs_s3req_op op)
{
    return op == DFS_S3REQ_COMPLETE_MULTIPART_UPLOAD || op == DFS_S3REQ_DELETE_OBJECTS ||
           op == DFS_S3REQ_CREATE_BUCKET;
}

static int inspect(const struct dfs_sigv4_config *cfg, const char *domain, int64_t now, size_t step,
                   char *in, size_t inlen)
{
    /* Request line, headers, body. */
    char *nl = memchr(in, '\n', inlen);
    if (nl == NULL) {
        fprintf(stderr, "s3inspect: no request line\n");
        return 2;
    }
    *nl = '\0';
    char *sp = strchr(in, ' ');
    if (sp == NULL) {
        fprintf(stderr, "s3inspect: request line is not METHOD TARGET\n");
        return 2;
    }
    *sp = '\0';
    char *target = sp + 1;
    char *qm = strchr(target, '?');
    if (qm != NULL)
        *qm = '\0';
    struct dfs_s3http_header h[MAX_HEADERS];
    size_t nh = 0;
    char *p = nl + 1, *end = in + inlen;
    for (;;) {
        char *e = memchr(p, '\n', (size_t)(end - p));
        if (e == NULL) {
            fprintf(stderr, "s3inspect: headers do not end with an empty line\n");
            return 2;
        }
        *e = '\0';
        if (e > p && e[-1] == '\r')
            e[-1] = '\0';
        if (*p == '\0') {
            p = e + 1;
            break;
        }
        char *colon = strchr(p, ':');
        if (colon == NULL || nh == MAX_HEADERS) {
            fprintf(stderr, "s3inspect: bad header line %s\n", p);
            return 2;
        }
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        h[nh].name = p;
        h[nh].value = v;
        nh++;
        p = e + 1;
    }
    const char *body = p;
    size_t blen = (size_t)(end - p);
    struct dfs_s3http_request r = {in, target, qm != NULL ? qm + 1 : "", h, nh};
    char resource[2048];
    snprintf(resource, sizeof resource, "%s", target);

    struct dfs_s3err e = {0};
    struct dfs_sigv4_auth auth;
    if (dfs_sigv4_verify(cfg, &r, now, &auth, &e) != DFS_OK) {
        fail(&e, resource);
        dfs_s3err_clear(&e);
        return 0;
    }
    out("auth", "ok");
    out("key_id", auth.access_key_id);
    outf("role", (unsigned long long)auth.role);
    outf("presigned", auth.presigned);
    static const char *const kinds[] = {"unsigned", "sha256", "streaming", "streaming-trailer",
                                        "streaming-unsigned-trailer"};
    out("payload", kinds[auth.payload]);

    struct dfs_s3req q;
    if (dfs_s3req_parse(domain, &r, &q, &e) != DFS_OK) {
        dfs_sigv4_auth_clear(&auth);
        fail(&e, resource);
        dfs_s3err_clear(&e);
        return 0;
    }
    out("op", dfs_s3req_op_name(q.op));
    struct {
        const char *name;
        const char *v;
    } strs[] = {
        {"bucket", q.bucket},
        {"key", q.key},
        {"upload_id", q.upload_id},
        {"prefix", q.prefix},
        {"delimiter", q.delimiter},
        {"marker", q.marker},
        {"continuation_token", q.continuation_token},
        {"start_after", q.start_after},
        {"key_marker", q.key_marker},
        {"upload_id_marker", q.upload_id_marker},
        {"response_content_type", q.response_content_type},
        {"response_content_disposition", q.response_content_disposition},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (strs[i].v != NULL)
            out(strs[i].name, strs[i].v);
    }
    outf("virtual_host", q.virtual_host);
    if (q.part_number != 0)
        outf("part_number", q.part_number);
    outf("max", q.max);
    outf("fetch_owner", q.fetch_owner);
    outf("url_encoding", q.url_encoding);
    outf("part_number_marker", q.part_number_marker);
    outf("reads", dfs_s3req_op_reads(q.op));
    int rc = DFS_OK;
    if (q.bucket != NULL) {
        char *path = NULL;
        struct dfs_s3err pe = {0};
        if (dfs_s3req_object_path(q.bucket, q.key, &path, &pe) == DFS_OK)
            out("dfs_path", path);
        else
            out("dfs_path_error", pe.message);
        free(path);
        dfs_s3err_clear(&pe);
    }
    rc = dfs_s3req_check_headers(&r, &e);

    /* What the operation reads from its headers. */
    if (rc == DFS_OK && (q.op == DFS_S3REQ_PUT_OBJECT || q.op == DFS_S3REQ_COPY_OBJECT ||
                         q.op == DFS_S3REQ_CREATE_MULTIPART_UPLOAD)) {
        struct dfs_s3req_meta m;
        rc = dfs_s3req_meta_parse(&r, &m, &e);
        for (size_t i = 0; rc == DFS_OK && i < m.n; i++) {
            char name[300];
            snprintf(name, sizeof name, "meta.%s", m.e[i].name);
            out(name, m.e[i].value);
        }
        if (rc == DFS_OK)
            dfs_s3req_meta_free(&m);
    }
    if (rc == DFS_OK && (q.op == DFS_S3REQ_COPY_OBJECT || q.op == DFS_S3REQ_UPLOAD_PART_COPY)) {
        char *sb, *sk;
        bool replace;
        rc = dfs_s3req_copy_source(&r, &sb, &sk, &replace, &e);
        if (rc == DFS_OK) {
            out("copy_bucket", sb);
            out("copy_key", sk);
            outf("copy_replace_meta", replace);
            free(sb);
            free(sk);
        }
    }
    if (rc == DFS_OK) {
        struct dfs_s3cond c;
        bool copy = q.op == DFS_S3REQ_COPY_OBJECT;
        rc = dfs_s3cond_parse(&r, copy, now, &c, &e);
        if (rc == DFS_OK && c.if_match != NULL)
            out("if_match", c.if_match);
        if (rc == DFS_OK && c.if_none_match != NULL)
            out("if_none_match", c.if_none_match);
        if (rc == DFS_OK && c.has_modified_since)
            outf("if_modified_since", (unsigned long long)c.modified_since);
        if (rc == DFS_OK && c.has_unmodified_since)
            outf("if_unmodified_since", (unsigned long long)c.unmodified_since);
    }
    const char *range = dfs_s3http_header(&r, "range");
    if (range != NULL)
        out("range", range);

    /* The body, as it streams. */
    bool streaming = auth.payload == DFS_SIGV4_PAYLOAD_STREAMING ||
                     auth.payload == DFS_SIGV4_PAYLOAD_STREAMING_TRAILER ||
                     auth.payload == DFS_SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    struct body b = {0};
    b.keep = xml_body(q.op);
    b.sha = EVP_MD_CTX_new();
    b.md5 = dfs_etag_md5_create();
    EVP_DigestInit_ex(b.sha, EVP_sha256(), NULL);
    if (rc == DFS_OK && has_body(q.op) &&
        (q.op == DFS_S3REQ_PUT_OBJECT || q.op == DFS_S3REQ_UPLOAD_PART)) {
        uint64_t want;
        rc = dfs_s3req_content_length(&r, streaming, &want, &e);
        if (rc == DFS_OK)
            outf("content_length", want);
    }
    bool has_sum = false;
    enum dfs_s3sum_algo algo = DFS_S3SUM_CRC32;
    const char *sum_value = NULL;
    if (rc == DFS_OK && has_body(q.op))
        rc = dfs_s3sum_of_request(&r, &has_sum, &algo, &sum_value, &e);
    if (rc == DFS_OK && has_sum)
        b.sum = dfs_s3sum_create(algo);
    dfs_chunked *c = NULL;
    dfs_sigv4_body *plain = NULL;
    if (rc == DFS_OK && streaming)
        rc = dfs_chunked_create(&auth, &r, &c, &e);
    else if (rc == DFS_OK)
        plain = dfs_sigv4_body_create(&auth);
    uint64_t state = 42;
    for (size_t i = 0; rc == DFS_OK && i < blen;) {
        size_t n = next_slice(step, &state);
        if (n > blen - i)
            n = blen - i;
        if (c != NULL) {
            rc = dfs_chunked_feed(c, body + i, n, sink, &b, &e);
        } else {
            dfs_sigv4_body_update(plain, body + i, n);
            rc = sink(&b, (const uint8_t *)body + i, n);
        }
        i += n;
    }
    if (rc == DFS_OK)
        rc = c != NULL ? dfs_chunked_finish(c, &e) : dfs_sigv4_body_finish(plain, &e);
    if (rc == DFS_OK) {
        uint8_t md5[16], sha[32];
        unsigned int sl;
        char hx[65], etag[DFS_ETAG_MAX + 1];
        dfs_etag_md5_final(b.md5, md5);
        EVP_DigestFinal_ex(b.sha, sha, &sl);
        outf("body_len", b.total);
        hex(md5, 16, hx);
        out("body_md5", hx);
        hex(sha, 32, hx);
        out("body_sha256", hx);
        dfs_etag_single(md5, etag);
        out("etag", etag);
        for (int t = 0; c != NULL && t < 5; t++) {
            static const char *const sums[] = {"x-amz-checksum-crc32", "x-amz-checksum-crc32c",
                                               "x-amz-checksum-crc64nvme", "x-amz-checksum-sha1",
                                               "x-amz-checksum-sha256"};
            const char *v = dfs_chunked_trailer(c, sums[t]);
            if (v != NULL) {
                char name[64];
                snprintf(name, sizeof name, "trailer.%s", sums[t]);
                out(name, v);
            }
        }
        if (b.sum != NULL) {
            const char *want = sum_value != NULL ? sum_value
                               : c != NULL       ? dfs_chunked_trailer(c, dfs_s3sum_header(algo))
                                                 : NULL;
            rc = dfs_s3sum_check(b.sum, want, &e);
            if (rc == DFS_OK)
                out("checksum", dfs_s3sum_header(algo));
        }
        const char *cmd5 = dfs_s3http_header(&r, "content-md5");
        if (cmd5 != NULL && rc == DFS_OK) {
            uint8_t want[16];
            if (dfs_etag_content_md5(cmd5, want) != DFS_OK)
                rc = dfs_s3err_set(&e, DFS_S3ERR_INVALID_DIGEST, NULL);
            else if (memcmp(want, md5, 16) != 0)
                rc = dfs_s3err_set(&e, DFS_S3ERR_BAD_DIGEST, NULL);
            else
                out("content_md5", "ok");
        }
    }
    /* The XML bodies. */
    if (rc == DFS_OK && q.op == DFS_S3REQ_COMPLETE_MULTIPART_UPLOAD) {
        struct dfs_s3xml_complete cm;
        rc = dfs_s3xml_parse_complete(b.buf != NULL ? b.buf : "", b.len, &cm, &e);
        for (size_t i = 0; rc == DFS_OK && i < cm.n; i++) {
            char line[512];
            snprintf(line, sizeof line, "%u %s", cm.parts[i].number, cm.parts[i].etag);
            out("complete.part", line);
        }
        if (rc == DFS_OK)
            dfs_s3xml_complete_free(&cm);
    } else if (rc == DFS_OK && q.op == DFS_S3REQ_DELETE_OBJECTS) {
        struct dfs_s3xml_delete d;
        rc = dfs_s3xml_parse_delete(b.buf != NULL ? b.buf : "", b.len, &d, &e);
        if (rc == DFS_OK) {
            outf("delete.quiet", d.quiet);
            for (size_t i = 0; i < d.n; i++)
                out("delete.key", d.keys[i]);
            dfs_s3xml_delete_free(&d);
        }
    } else if (rc == DFS_OK && q.op == DFS_S3REQ_CREATE_BUCKET) {
        char *loc = NULL;
        rc = dfs_s3xml_parse_create_bucket(b.buf != NULL ? b.buf : "", b.len, &loc, &e);
        if (rc == DFS_OK)
            out("location", loc);
        free(loc);
    }
    dfs_chunked_destroy(c);
    dfs_sigv4_body_destroy(plain);
    EVP_MD_CTX_free(b.sha);
    dfs_etag_md5_destroy(b.md5);
    dfs_s3sum_destroy(b.sum);
    free(b.buf);
    dfs_s3req_free(&q);
    dfs_sigv4_auth_clear(&auth);
    if (rc != DFS_OK) {
        fail(&e, resource);
        dfs_s3err_clear(&e);
        return 0;
    }
    printf("result\tok\n");
    return 0;
}

/* The command line. */
struct args {
    const char *xml;
    int64_t now;
    const char *domain;
    const char *region;
    uint64_t slice;
    struct keys ks;
};

/* --key ID:SECRET:ROLE, added to the keys (repeatable); the copy is freed at the end of main. */
static int key_option(const struct dfs_opt *opt, const char *value, void *field, char **errmsg)
{
    struct keys *ks = field;
    char *s = ks->n < MAX_KEYS ? strdup(value) : NULL;
    char *c1 = s != NULL ? strchr(s, ':') : NULL;
    char *c2 = c1 != NULL ? strrchr(c1 + 1, ':') : NULL;
    if (c2 == NULL) {
        free(s);
        return dfs_seterr(errmsg, DFS_EINVAL, "--%s takes ID:SECRET:ROLE (at most %d), not '%s'",
                          opt->name, MAX_KEYS, dfs_quote(value, &(struct dfs_quote){{0}}));
    }
    *c1 = *c2 = '\0';
    ks->k[ks->n].id = s;
    ks->k[ks->n].secret = c1 + 1;
    ks->k[ks->n].role = atoi(c2 + 1);
    ks->n++;
    return DFS_OK;
}

#define A(member) DFS_OPT_FIELD(struct args, member)

static const struct dfs_opt opts[] = {
    {DFS_OPT_STRING, "xml", 0, A(xml), .arg = "NAME",
     .help = "print one of the sample response documents instead"},
    {DFS_OPT_INT, "now", 0, A(now), .arg = "SECONDS", .min = 0, .max = INT64_MAX,
     .help = "the time the signature is checked at (default: now)"},
    {DFS_OPT_STRING, "domain", 0, A(domain), .arg = "D", .help = "virtual-hosted bucket domain"},
    {DFS_OPT_STRING, "region", 0, A(region), .arg = "R", .help = "the signing region"},
    {DFS_OPT_CUSTOM, "key", 0, A(ks), .arg = "ID:SECRET:ROLE", .parse = key_option,
     .help = "an access key (repeatable)"},
    {DFS_OPT_INT, "slice", 0, A(slice), .arg = "N", .min = 0, .max = INT64_MAX,
     .help = "feed the body in slices of N bytes (default: a fixed pseudo-random sequence)"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = "s3inspect",
    .usage = "[options] < REQUEST",
    .about = "What dfs-gateway's S3 front end makes of one HTTP request on standard input "
             "(\"METHOD TARGET\", header lines, an empty line, the body): one \"name<TAB>value\" "
             "line per finding, ending with \"result<TAB>ok\" or the first failure.",
    .opts = opts,
};

int main(int argc, char **argv)
{
    struct args a = {.now = (int64_t)time(NULL)};
    dfs_opts *res = NULL;
    int status = 2;
    bool go = dfs_opts_main(&spec, argc, argv, environ, &a, &res, &status);
    dfs_opts_destroy(res);
    if (go && a.xml != NULL)
        status = sample(a.xml);
    if (!go || a.xml != NULL) {
        for (int i = 0; i < a.ks.n; i++)
            free(a.ks.k[i].id);
        return status;
    }
    struct keys ks = a.ks;
    struct dfs_sigv4_config cfg = {.key = lookup, .key_arg = &ks, .region = a.region};
    const char *domain = a.domain;
    int64_t now = a.now;
    size_t step = (size_t)a.slice;
    size_t len;
    char *in = read_all(stdin, &len);
    if (in == NULL) {
        fprintf(stderr, "s3inspect: cannot read the request\n");
        return 1;
    }
    int rc = inspect(&cfg, domain, now, step, in, len);
    free(in);
    for (int i = 0; i < ks.n; i++)
        free(ks.k[i].id);
    return rc;
}
