/* Tests for S3 request parsing: addressing, operations, parameters, names, headers. */
#include "gateway/s3/s3req.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct rq {
    struct dfs_s3http_request r;
    struct dfs_s3http_header h[8];
};

static struct dfs_s3http_request *mk(struct rq *q, const char *method, const char *path,
                                     const char *query, const char *host)
{
    memset(q, 0, sizeof *q);
    q->r.method = method;
    q->r.path = path;
    q->r.query = query;
    q->r.headers = q->h;
    if (host != NULL)
        q->h[q->r.nheaders++] = (struct dfs_s3http_header){"Host", host};
    return &q->r;
}

static void add(struct rq *q, const char *name, const char *value)
{
    q->h[q->r.nheaders++] = (struct dfs_s3http_header){name, value};
}

/* Parse and expect success with op, bucket and key. */
static void ok(const char *domain, struct dfs_s3http_request *r, enum dfs_s3req_op op,
               const char *bucket, const char *key, struct dfs_s3req *out)
{
    struct dfs_s3err e = {0};
    if (dfs_s3req_parse(domain, r, out, &e) != DFS_OK)
        fail_msg("%s %s?%s: %s %s", r->method, r->path, r->query ? r->query : "",
                 dfs_s3err_name(e.code), e.message);
    if (out->op != op)
        fail_msg("%s %s?%s: %s, want %s", r->method, r->path, r->query ? r->query : "",
                 dfs_s3req_op_name(out->op), dfs_s3req_op_name(op));
    if (bucket == NULL)
        assert_null(out->bucket);
    else
        assert_string_equal(out->bucket, bucket);
    if (key == NULL)
        assert_null(out->key);
    else
        assert_string_equal(out->key, key);
}

static void bad(const char *domain, struct dfs_s3http_request *r, enum dfs_s3err_code code)
{
    struct dfs_s3req out;
    struct dfs_s3err e = {0};
    if (dfs_s3req_parse(domain, r, &out, &e) == DFS_OK)
        fail_msg("%s %s?%s accepted as %s", r->method, r->path, r->query ? r->query : "",
                 dfs_s3req_op_name(out.op));
    if (e.code != code)
        fail_msg("%s %s?%s: %s (%s), want %s", r->method, r->path, r->query ? r->query : "",
                 dfs_s3err_name(e.code), e.message, dfs_s3err_name(code));
    assert_non_null(e.message);
    assert_null(out.bucket); /* nothing left behind */
    dfs_s3err_clear(&e);
}

static void bucket_operations(void **state)
{
    (void)state;
    struct rq q;
    struct dfs_s3req o;
    ok(NULL, mk(&q, "GET", "/", NULL, "h"), DFS_S3REQ_LIST_BUCKETS, NULL, NULL, &o);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "GET", "/", "x-id=ListBuckets", "h"), DFS_S3REQ_LIST_BUCKETS, NULL, NULL, &o);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "PUT", "/photos", NULL, "h"), DFS_S3REQ_CREATE_BUCKET, "photos", NULL, &o);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "PUT", "/photos/", NULL, "h"), DFS_S3REQ_CREATE_BUCKET, "photos", NULL, &o);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "HEAD", "/photos", NULL, "h"), DFS_S3REQ_HEAD_BUCKET, "photos", NULL, &o);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "DELETE", "/photos", NULL, "h"), DFS_S3REQ_DELETE_BUCKET, "photos", NULL, &o);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "GET", "/photos", "location", "h"), DFS_S3REQ_GET_BUCKET_LOCATION, "photos",
       NULL, &o);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "POST", "/photos", "delete", "h"), DFS_S3REQ_DELETE_OBJECTS, "photos", NULL,
       &o);
    dfs_s3req_free(&o);

    ok(NULL, mk(&q, "GET", "/photos/", "delimiter=%2F&marker=a+b&prefix=2023%2F&max-keys=10", "h"),
       DFS_S3REQ_LIST_OBJECTS, "photos", NULL, &o);
    assert_string_equal(o.delimiter, "/");
    assert_string_equal(o.marker, "a b");
    assert_string_equal(o.prefix, "2023/");
    assert_int_equal(o.max, 10);
    assert_false(o.url_encoding);
    dfs_s3req_free(&o);
    ok(NULL,
       mk(&q, "GET", "/photos",
          "list-type=2&continuation-token=t%3D&start-after=x&fetch-owner=true&encoding-type=url&"
          "max-keys=5000",
          "h"),
       DFS_S3REQ_LIST_OBJECTS_V2, "photos", NULL, &o);
    assert_string_equal(o.continuation_token, "t=");
    assert_string_equal(o.start_after, "x");
    assert_true(o.fetch_owner);
    assert_true(o.url_encoding);
    assert_int_equal(o.max, 1000); /* capped, as S3 does */
    assert_null(o.prefix);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "GET", "/photos", "list-type=2", "h"), DFS_S3REQ_LIST_OBJECTS_V2, "photos",
       NULL, &o);
    assert_int_equal(o.max, 1000);
    assert_false(o.fetch_owner);
    dfs_s3req_free(&o);
    ok(NULL,
       mk(&q, "GET", "/photos", "uploads&prefix=a&key-marker=k&upload-id-marker=u&max-uploads=7",
          "h"),
       DFS_S3REQ_LIST_MULTIPART_UPLOADS, "photos", NULL, &o);
    assert_string_equal(o.key_marker, "k");
    assert_string_equal(o.upload_id_marker, "u");
    assert_int_equal(o.max, 7);
    dfs_s3req_free(&o);

    bad(NULL, mk(&q, "GET", "/photos", "list-type=1", "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "GET", "/photos", "list-type=2&list-type=2", "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "GET", "/photos", "max-keys=-1", "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "GET", "/photos", "max-keys=ten", "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "GET", "/photos", "max-keys=99999999999", "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "GET", "/photos", "max-keys=1&max-keys=2", "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "GET", "/photos", "encoding-type=xml", "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "GET", "/photos", "list-type=2&fetch-owner=yes", "h"),
        DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "GET", "/photos", "prefix=%FF", "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "GET", "/photos", "uploads&max-uploads=0", "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "POST", "/photos", NULL, "h"), DFS_S3ERR_NOT_IMPLEMENTED);
    bad(NULL, mk(&q, "PATCH", "/photos", NULL, "h"), DFS_S3ERR_METHOD_NOT_ALLOWED);
    bad(NULL, mk(&q, "PUT", "/", NULL, "h"), DFS_S3ERR_METHOD_NOT_ALLOWED);
    bad(NULL, mk(&q, "get", "/", NULL, "h"), DFS_S3ERR_METHOD_NOT_ALLOWED);
    /* Subresources dfs does not have are refused by name. */
    static const char *const subs[] = {"acl",     "policy",   "versioning", "lifecycle", "cors",
                                       "tagging", "versions", "website",    "encryption"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        bad(NULL, mk(&q, "GET", "/photos", subs[i], "h"), DFS_S3ERR_NOT_IMPLEMENTED);
        bad(NULL, mk(&q, "PUT", "/photos", subs[i], "h"), DFS_S3ERR_NOT_IMPLEMENTED);
    }
    struct dfs_s3err e = {0};
    assert_int_not_equal(dfs_s3req_parse(NULL, mk(&q, "PUT", "/photos/k", "acl", "h"), &o, &e),
                         DFS_OK);
    assert_non_null(strstr(e.message, "?acl"));
    dfs_s3err_clear(&e);
}

static void object_operations(void **state)
{
    (void)state;
    struct rq q;
    struct dfs_s3req o;
    ok(NULL, mk(&q, "GET", "/photos/2023/a%20b+c%2Fd.jpg", NULL, "h"), DFS_S3REQ_GET_OBJECT,
       "photos", "2023/a b+c/d.jpg", &o);
    dfs_s3req_free(&o);
    ok(NULL,
       mk(&q, "GET", "/photos/k",
          "response-content-type=text%2Fplain&response-content-disposition=attachment%3B+f%3D1&"
          "versionId=null&x-id=GetObject",
          "h"),
       DFS_S3REQ_GET_OBJECT, "photos", "k", &o);
    assert_string_equal(o.response_content_type, "text/plain");
    assert_string_equal(o.response_content_disposition, "attachment; f=1");
    assert_null(o.response_expires);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "HEAD", "/photos/k", NULL, "h"), DFS_S3REQ_HEAD_OBJECT, "photos", "k", &o);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "PUT", "/photos/k", NULL, "h"), DFS_S3REQ_PUT_OBJECT, "photos", "k", &o);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "DELETE", "/photos/k", NULL, "h"), DFS_S3REQ_DELETE_OBJECT, "photos", "k", &o);
    dfs_s3req_free(&o);
    mk(&q, "PUT", "/photos/k", NULL, "h");
    add(&q, "x-amz-copy-source", "/other/src");
    ok(NULL, &q.r, DFS_S3REQ_COPY_OBJECT, "photos", "k", &o);
    dfs_s3req_free(&o);

    /* Multipart. */
    ok(NULL, mk(&q, "POST", "/photos/big", "uploads", "h"), DFS_S3REQ_CREATE_MULTIPART_UPLOAD,
       "photos", "big", &o);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "PUT", "/photos/big", "partNumber=10000&uploadId=u%2B1", "h"),
       DFS_S3REQ_UPLOAD_PART, "photos", "big", &o);
    assert_int_equal(o.part_number, 10000);
    assert_string_equal(o.upload_id, "u+1");
    dfs_s3req_free(&o);
    mk(&q, "PUT", "/photos/big", "partNumber=1&uploadId=u", "h");
    add(&q, "x-amz-copy-source", "/other/src");
    ok(NULL, &q.r, DFS_S3REQ_UPLOAD_PART_COPY, "photos", "big", &o);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "POST", "/photos/big", "uploadId=u", "h"), DFS_S3REQ_COMPLETE_MULTIPART_UPLOAD,
       "photos", "big", &o);
    assert_string_equal(o.upload_id, "u");
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "DELETE", "/photos/big", "uploadId=u", "h"), DFS_S3REQ_ABORT_MULTIPART_UPLOAD,
       "photos", "big", &o);
    dfs_s3req_free(&o);
    ok(NULL, mk(&q, "GET", "/photos/big", "uploadId=u&max-parts=2&part-number-marker=5", "h"),
       DFS_S3REQ_LIST_PARTS, "photos", "big", &o);
    assert_int_equal(o.max, 2);
    assert_int_equal(o.part_number_marker, 5);
    dfs_s3req_free(&o);

    static const char *const bad_parts[] = {"partNumber=0&uploadId=u",
                                            "partNumber=10001&uploadId=u",
                                            "partNumber=1x&uploadId=u",
                                            "partNumber=&uploadId=u",
                                            "partNumber=1&uploadId=",
                                            "partNumber=1",
                                            "uploadId=u",
                                            "partNumber=1&partNumber=2&uploadId=u",
                                            "partNumber=-1&uploadId=u"};
    for (size_t i = 0; i < sizeof bad_parts / sizeof bad_parts[0]; i++)
        bad(NULL, mk(&q, "PUT", "/photos/big", bad_parts[i], "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "POST", "/photos/big", "uploadId=", "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "POST", "/photos/big", "uploads&uploadId=u", "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "POST", "/photos/big", NULL, "h"), DFS_S3ERR_METHOD_NOT_ALLOWED);
    bad(NULL, mk(&q, "GET", "/photos/big", "uploadId=u&part-number-marker=10001", "h"),
        DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "GET", "/photos/big", "partNumber=1", "h"), DFS_S3ERR_NOT_IMPLEMENTED);
    bad(NULL, mk(&q, "GET", "/photos/big", "versionId=3HL4kqtJlcpXroDTDmJ", "h"),
        DFS_S3ERR_NOT_IMPLEMENTED);
    bad(NULL, mk(&q, "GET", "/photos/big", "response-content-type=a%0Db", "h"),
        DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "PUT", "/photos/k", "tagging", "h"), DFS_S3ERR_NOT_IMPLEMENTED);
    bad(NULL, mk(&q, "POST", "/photos/k", "restore", "h"), DFS_S3ERR_NOT_IMPLEMENTED);
}

static void names(void **state)
{
    (void)state;
    struct rq q;
    struct dfs_s3req o;
    char path[1200] = "/bkt/";
    memset(path + 5, 'k', 1024);
    path[5 + 1024] = '\0';
    ok(NULL, mk(&q, "GET", path, NULL, "h"), DFS_S3REQ_GET_OBJECT, "bkt", path + 5, &o);
    dfs_s3req_free(&o);
    path[5 + 1024] = 'k';
    path[5 + 1025] = '\0';
    bad(NULL, mk(&q, "GET", path, NULL, "h"), DFS_S3ERR_KEY_TOO_LONG);
    bad(NULL, mk(&q, "GET", "/bkt/%FF", NULL, "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "GET", "/bkt/%C0%AF", NULL, "h"), DFS_S3ERR_INVALID_ARGUMENT);
    bad(NULL, mk(&q, "GET", "/bkt/a%00b", NULL, "h"), DFS_S3ERR_INVALID_URI);
    bad(NULL, mk(&q, "GET", "/bkt/a%zz", NULL, "h"), DFS_S3ERR_INVALID_URI);
    bad(NULL, mk(&q, "GET", "bkt/a", NULL, "h"), DFS_S3ERR_INVALID_URI);
    bad(NULL, mk(&q, "GET", "/Bkt/a", NULL, "h"), DFS_S3ERR_INVALID_BUCKET_NAME);
    bad(NULL, mk(&q, "GET", "//a", NULL, "h"), DFS_S3ERR_INVALID_BUCKET_NAME);
    bad(NULL, mk(&q, "GET", "/bkt", "a=%zz", "h"), DFS_S3ERR_INVALID_URI);

    static const char *const good[] = {
        "abc",
        "a-b.c",
        "0bucket",
        "my.bucket.name",
        "a23456789012345678901234567890123456789012345678901234567890123",
        "xn-a",
        "bucket-s3alia",
        "192.168.5.4a",
        "1.2.3"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const char *why = NULL;
        if (!dfs_s3req_bucket_valid(good[i], &why))
            fail_msg("refused %s: %s", good[i], why);
    }
    static const char *const badnames[] = {
        "ab",
        "a234567890123456789012345678901234567890123456789012345678901234",
        "Abc",
        "a_b",
        "-ab",
        "ab-",
        ".ab",
        "ab.",
        "a..b",
        "192.168.5.4",
        "xn--abc",
        "sthree-abc",
        "amzn-s3-demo-x",
        "abc-s3alias",
        "abc--ol-s3",
        "abc.mrap",
        "abc--x-s3",
        "abc--table-s3",
        "a b",
        "a/b",
        "\xc3\xa9t\xc3\xa9",
        ""};
    for (size_t i = 0; i < sizeof badnames / sizeof badnames[0]; i++) {
        const char *why = NULL;
        if (dfs_s3req_bucket_valid(badnames[i], &why))
            fail_msg("accepted %s", badnames[i]);
        assert_non_null(why);
    }
}

static void virtual_hosts(void **state)
{
    (void)state;
    struct rq q;
    struct dfs_s3req o;
    const char *d = "s3.example.com";
    ok(d, mk(&q, "GET", "/2023/a.jpg", NULL, "photos.s3.example.com:9000"), DFS_S3REQ_GET_OBJECT,
       "photos", "2023/a.jpg", &o);
    assert_true(o.virtual_host);
    dfs_s3req_free(&o);
    ok(d, mk(&q, "GET", "/", "list-type=2", "Photos.S3.Example.Com"), DFS_S3REQ_LIST_OBJECTS_V2,
       "photos", NULL, &o);
    dfs_s3req_free(&o);
    ok(d, mk(&q, "PUT", "/k", NULL, "my.bucket.s3.example.com."), DFS_S3REQ_PUT_OBJECT, "my.bucket",
       "k", &o);
    dfs_s3req_free(&o);
    /* The domain itself, another host, an IP literal: path style. */
    ok(d, mk(&q, "GET", "/photos/k", NULL, "s3.example.com:9000"), DFS_S3REQ_GET_OBJECT, "photos",
       "k", &o);
    assert_false(o.virtual_host);
    dfs_s3req_free(&o);
    ok(d, mk(&q, "GET", "/photos/k", NULL, "127.0.0.1:9000"), DFS_S3REQ_GET_OBJECT, "photos", "k",
       &o);
    dfs_s3req_free(&o);
    ok(d, mk(&q, "GET", "/photos/k", NULL, "[::1]:9000"), DFS_S3REQ_GET_OBJECT, "photos", "k", &o);
    dfs_s3req_free(&o);
    ok(d, mk(&q, "GET", "/photos/k", NULL, "nots3.example.com"), DFS_S3REQ_GET_OBJECT, "photos",
       "k", &o);
    dfs_s3req_free(&o);
    ok(d, mk(&q, "GET", "/", NULL, "s3.example.com"), DFS_S3REQ_LIST_BUCKETS, NULL, NULL, &o);
    dfs_s3req_free(&o);
    /* Without a domain, the Host header never names a bucket. */
    ok(NULL, mk(&q, "GET", "/photos/k", NULL, "x.s3.example.com"), DFS_S3REQ_GET_OBJECT, "photos",
       "k", &o);
    dfs_s3req_free(&o);
    bad(d, mk(&q, "GET", "/k", NULL, "a_b.s3.example.com"), DFS_S3ERR_INVALID_BUCKET_NAME);
    mk(&q, "GET", "/k", NULL, "a.s3.example.com");
    add(&q, "Host", "b.s3.example.com");
    bad(d, &q.r, DFS_S3ERR_INVALID_ARGUMENT);
}

static void object_paths(void **state)
{
    (void)state;
    char *p = NULL;
    struct dfs_s3err e = {0};
    assert_int_equal(dfs_s3req_object_path("b", "dir/a b+c.txt", &p, &e), DFS_OK);
    assert_string_equal(p, "/b/dir/a b+c.txt");
    free(p);
    assert_int_equal(dfs_s3req_object_path("b", NULL, &p, &e), DFS_OK);
    assert_string_equal(p, "/b");
    free(p);
    static const char *const keys[] = {"a//b", "a/", "/a",    "a/./b", "a/../b",
                                       "..",   ".",  "a\x01", "a\x7f"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        p = NULL;
        if (dfs_s3req_object_path("b", keys[i], &p, &e) != DFS_EINVAL ||
            e.code != DFS_S3ERR_INVALID_ARGUMENT)
            fail_msg("key \"%s\" mapped to %s", keys[i], p);
        assert_null(p);
    }
    char seg[300];
    memset(seg, 's', 256);
    seg[256] = '\0';
    assert_int_equal(dfs_s3req_object_path("b", seg, &p, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_ARGUMENT);
    char big[1100];
    for (int i = 0; i < 1020; i++)
        big[i] = i % 100 == 99 ? '/' : 'x';
    big[1020] = '\0';
    assert_int_equal(dfs_s3req_object_path("bkt", big, &p, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_KEY_TOO_LONG);
    big[1018] = '\0'; /* "/bkt/" + 1018 = 1023 bytes */
    assert_int_equal(dfs_s3req_object_path("bkt", big, &p, &e), DFS_OK);
    free(p);
    dfs_s3err_clear(&e);

    bool none;
    static const struct {
        const char *prefix, *want;
        bool none;
    } pre[] = {
        {NULL, "/b/", false},
        {"", "/b/", false},
        {"photos/", "/b/photos/", false},
        {"photos/20", "/b/photos/20", false},
        {".", "/b/.", false},
        {".hid", "/b/.hid", false},
        {"a//", "/b/a//", true},
        {"./x", "/b/./x", true},
        {"a/../", "/b/a/../", true},
        {"/a", "/b//a", true},
        {"a\x01", "/b/a\x01", true},
    };
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) {
        assert_int_equal(dfs_s3req_list_prefix("b", pre[i].prefix, &p, &none), DFS_OK);
        assert_string_equal(p, pre[i].want);
        if (none != pre[i].none)
            fail_msg("prefix \"%s\": none=%d", pre[i].prefix ? pre[i].prefix : "(null)", none);
        free(p);
    }
}

static void metadata(void **state)
{
    (void)state;
    struct rq q;
    mk(&q, "PUT", "/b/k", NULL, "h");
    add(&q, "Content-Type", "image/jpeg");
    add(&q, "X-Amz-Meta-Color", "dark blue");
    add(&q, "x-amz-meta-tag", "a");
    add(&q, "x-amz-meta-TAG", "b");
    add(&q, "Content-Encoding", "aws-chunked, gzip");
    add(&q, "Cache-Control", "max-age=60");
    add(&q, "x-amz-date", "20130524T000000Z");
    struct dfs_s3req_meta m;
    struct dfs_s3err e = {0};
    assert_int_equal(dfs_s3req_meta_parse(&q.r, &m, &e), DFS_OK);
    assert_int_equal(m.n, 5);
    assert_string_equal(m.e[0].name, "cache-control");
    assert_string_equal(m.e[1].name, "content-encoding");
    assert_string_equal(m.e[1].value, "gzip");
    assert_string_equal(m.e[2].name, "content-type");
    assert_string_equal(m.e[3].name, "x-amz-meta-color");
    assert_string_equal(m.e[3].value, "dark blue");
    assert_string_equal(m.e[4].name, "x-amz-meta-tag");
    assert_string_equal(m.e[4].value, "a,b");
    dfs_s3req_meta_free(&m);
    assert_int_equal(m.n, 0);

    /* aws-chunked alone is the transfer's coding, not stored. */
    mk(&q, "PUT", "/b/k", NULL, "h");
    add(&q, "Content-Encoding", "aws-chunked");
    assert_int_equal(dfs_s3req_meta_parse(&q.r, &m, &e), DFS_OK);
    assert_int_equal(m.n, 0);
    dfs_s3req_meta_free(&m);

    /* 2048 bytes of user metadata pass, 2049 do not. */
    static char v[3000];
    memset(v, 'v', sizeof v - 1);
    v[2048 - 1] = '\0'; /* name "a" (1) + 2047 */
    mk(&q, "PUT", "/b/k", NULL, "h");
    add(&q, "x-amz-meta-a", v);
    assert_int_equal(dfs_s3req_meta_parse(&q.r, &m, &e), DFS_OK);
    dfs_s3req_meta_free(&m);
    v[2048 - 1] = 'v';
    v[2048] = '\0';
    assert_int_equal(dfs_s3req_meta_parse(&q.r, &m, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_METADATA_TOO_LARGE);
    assert_int_equal(m.n, 0);
    /* Control characters, bad UTF-8, a missing name. */
    mk(&q, "PUT", "/b/k", NULL, "h");
    add(&q, "x-amz-meta-a", "x\ry");
    assert_int_equal(dfs_s3req_meta_parse(&q.r, &m, &e), DFS_EINVAL);
    mk(&q, "PUT", "/b/k", NULL, "h");
    add(&q, "content-type", "\xff");
    assert_int_equal(dfs_s3req_meta_parse(&q.r, &m, &e), DFS_EINVAL);
    mk(&q, "PUT", "/b/k", NULL, "h");
    add(&q, "x-amz-meta-", "x");
    assert_int_equal(dfs_s3req_meta_parse(&q.r, &m, &e), DFS_EINVAL);
    mk(&q, "PUT", "/b/k", NULL, "h");
    add(&q, "x-amz-meta-a", "tab\tok \xc3\xa9");
    assert_int_equal(dfs_s3req_meta_parse(&q.r, &m, &e), DFS_OK);
    dfs_s3req_meta_free(&m);
    dfs_s3err_clear(&e);
}

static void copy_sources(void **state)
{
    (void)state;
    struct rq q;
    char *b, *k;
    bool replace = true;
    struct dfs_s3err e = {0};
    static const struct {
        const char *header, *bucket, *key;
    } good[] = {
        {"/src/a%20b%2Bc", "src", "a b+c"},
        {"src/dir/k", "src", "dir/k"},
        {"src/k?versionId=null", "src", "k"},
        {"/src/%E2%82%AC", "src", "\xe2\x82\xac"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        mk(&q, "PUT", "/b/k", NULL, "h");
        add(&q, "x-amz-copy-source", good[i].header);
        assert_int_equal(dfs_s3req_copy_source(&q.r, &b, &k, &replace, &e), DFS_OK);
        assert_string_equal(b, good[i].bucket);
        assert_string_equal(k, good[i].key);
        assert_false(replace);
        free(b);
        free(k);
    }
    mk(&q, "PUT", "/b/k", NULL, "h");
    add(&q, "x-amz-copy-source", "/src/k");
    add(&q, "x-amz-metadata-directive", "REPLACE");
    assert_int_equal(dfs_s3req_copy_source(&q.r, &b, &k, &replace, &e), DFS_OK);
    assert_true(replace);
    free(b);
    free(k);
    static const struct {
        const char *header, *directive;
        enum dfs_s3err_code code;
    } bad_src[] = {
        {"/src", NULL, DFS_S3ERR_INVALID_ARGUMENT},
        {"/src/", NULL, DFS_S3ERR_INVALID_ARGUMENT},
        {"", NULL, DFS_S3ERR_INVALID_ARGUMENT},
        {"/Src/k", NULL, DFS_S3ERR_INVALID_BUCKET_NAME},
        {"/src/k?versionId=abc", NULL, DFS_S3ERR_NOT_IMPLEMENTED},
        {"/src/k?other=1", NULL, DFS_S3ERR_INVALID_ARGUMENT},
        {"/src/%zz", NULL, DFS_S3ERR_INVALID_ARGUMENT},
        {"/src/%FF", NULL, DFS_S3ERR_INVALID_ARGUMENT},
        {"/src/k", "MOVE", DFS_S3ERR_INVALID_ARGUMENT},
    };
    for (size_t i = 0; i < sizeof bad_src / sizeof bad_src[0]; i++) {
        mk(&q, "PUT", "/b/k", NULL, "h");
        add(&q, "x-amz-copy-source", bad_src[i].header);
        if (bad_src[i].directive != NULL)
            add(&q, "x-amz-metadata-directive", bad_src[i].directive);
        b = k = (char *)"untouched";
        if (dfs_s3req_copy_source(&q.r, &b, &k, NULL, &e) == DFS_OK || e.code != bad_src[i].code)
            fail_msg("%s: %s", bad_src[i].header, dfs_s3err_name(e.code));
        assert_null(b);
        assert_null(k);
    }
    mk(&q, "PUT", "/b/k", NULL, "h");
    assert_int_equal(dfs_s3req_copy_source(&q.r, &b, &k, NULL, &e), DFS_EINVAL);
    dfs_s3err_clear(&e);
}

static void other_headers(void **state)
{
    (void)state;
    struct rq q;
    struct dfs_s3err e = {0};
    mk(&q, "PUT", "/b/k", NULL, "h");
    add(&q, "x-amz-acl", "private");
    add(&q, "x-amz-storage-class", "STANDARD");
    assert_int_equal(dfs_s3req_check_headers(&q.r, &e), DFS_OK);
    static const char *const refused[][2] = {
        {"x-amz-server-side-encryption", "AES256"},
        {"X-Amz-Server-Side-Encryption-Customer-Key", "x"},
        {"x-amz-object-lock-mode", "GOVERNANCE"},
        {"x-amz-grant-read", "id=1"},
        {"x-amz-acl", "public-read"},
        {"x-amz-website-redirect-location", "/x"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        mk(&q, "PUT", "/b/k", NULL, "h");
        add(&q, refused[i][0], refused[i][1]);
        assert_int_equal(dfs_s3req_check_headers(&q.r, &e), DFS_EINVAL);
        assert_int_equal(e.code, DFS_S3ERR_NOT_IMPLEMENTED);
    }

    uint64_t len = 7;
    mk(&q, "PUT", "/b/k", NULL, "h");
    add(&q, "Content-Length", "5368709120");
    assert_int_equal(dfs_s3req_content_length(&q.r, false, &len, &e), DFS_OK);
    assert_int_equal(len, 5368709120ull);
    assert_int_equal(dfs_s3req_content_length(&q.r, true, &len, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_MISSING_CONTENT_LENGTH);
    assert_int_equal(dfs_s3err_http_status(e.code), 411);
    add(&q, "x-amz-decoded-content-length", "0");
    assert_int_equal(dfs_s3req_content_length(&q.r, true, &len, &e), DFS_OK);
    assert_int_equal(len, 0);
    mk(&q, "PUT", "/b/k", NULL, "h");
    add(&q, "Content-Length", "5368709121");
    assert_int_equal(dfs_s3req_content_length(&q.r, false, &len, &e), DFS_ENOSPC);
    assert_int_equal(e.code, DFS_S3ERR_ENTITY_TOO_LARGE);
    static const char *const junk[] = {"", "-1", "1e3", " 5", "99999999999999999999"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        mk(&q, "PUT", "/b/k", NULL, "h");
        add(&q, "Content-Length", junk[i]);
        assert_int_equal(dfs_s3req_content_length(&q.r, false, &len, &e), DFS_EINVAL);
        assert_int_equal(e.code, DFS_S3ERR_INVALID_ARGUMENT);
    }
    dfs_s3err_clear(&e);

    assert_string_equal(dfs_s3req_op_name(DFS_S3REQ_PUT_OBJECT), "PutObject");
    assert_string_equal(dfs_s3req_op_name(DFS_S3REQ_OP_COUNT), "");
    for (int op = 0; op < DFS_S3REQ_OP_COUNT; op++)
        assert_true(strlen(dfs_s3req_op_name((enum dfs_s3req_op)op)) > 0);
    assert_true(dfs_s3req_op_reads(DFS_S3REQ_GET_OBJECT));
    assert_true(dfs_s3req_op_reads(DFS_S3REQ_LIST_PARTS));
    assert_false(dfs_s3req_op_reads(DFS_S3REQ_DELETE_OBJECTS));
    assert_false(dfs_s3req_op_reads(DFS_S3REQ_CREATE_BUCKET));
    assert_false(dfs_s3req_op_reads(DFS_S3REQ_OP_COUNT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bucket_operations),
        cmocka_unit_test(object_operations),
        cmocka_unit_test(names),
        cmocka_unit_test(virtual_hosts),
        cmocka_unit_test(object_paths),
        cmocka_unit_test(metadata),
        cmocka_unit_test(copy_sources),
        cmocka_unit_test(other_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
