/* Tests for S3's XML documents: every response, and the request bodies clients send. */
#include "gateway/s3/s3xml.h"

#include "common/err.h"
#include "gateway/s3/xml.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
#define NS   " xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""

static const struct dfs_s3xml_owner owner = {"dfs-0123456789abcdef", "ci"};

static void buckets_and_small_documents(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len;
    struct dfs_s3xml_bucket b[] = {{"alpha", 1255372230000}, {"beta", 0}};
    assert_int_equal(dfs_s3xml_list_buckets(&owner, b, 2, &out, &len, NULL), DFS_OK);
    assert_string_equal(out, HEAD "<ListAllMyBucketsResult" NS "><Owner><ID>dfs-0123456789abcdef"
                                  "</ID><DisplayName>ci</DisplayName></Owner><Buckets><Bucket>"
                                  "<Name>alpha</Name><CreationDate>2009-10-12T18:30:30.000Z"
                                  "</CreationDate></Bucket><Bucket><Name>beta</Name><CreationDate>"
                                  "1970-01-01T00:00:00.000Z</CreationDate></Bucket></Buckets>"
                                  "</ListAllMyBucketsResult>");
    assert_int_equal(len, strlen(out));
    free(out);
    assert_int_equal(dfs_s3xml_list_buckets(&owner, NULL, 0, &out, &len, NULL), DFS_OK);
    assert_non_null(strstr(out, "<Buckets></Buckets>"));
    free(out);

    assert_int_equal(dfs_s3xml_initiate_upload("b", "a&b", "u1", &out, &len, NULL), DFS_OK);
    assert_string_equal(out, HEAD "<InitiateMultipartUploadResult" NS "><Bucket>b</Bucket><Key>"
                                  "a&amp;b</Key><UploadId>u1</UploadId>"
                                  "</InitiateMultipartUploadResult>");
    free(out);
    assert_int_equal(
        dfs_s3xml_complete_upload("http://h/b/k", "b", "k", "\"abc-2\"", &out, &len, NULL), DFS_OK);
    assert_string_equal(out, HEAD "<CompleteMultipartUploadResult" NS "><Location>http://h/b/k"
                                  "</Location><Bucket>b</Bucket><Key>k</Key><ETag>&quot;abc-2"
                                  "&quot;</ETag></CompleteMultipartUploadResult>");
    free(out);
    assert_int_equal(dfs_s3xml_copy_result(false, "\"e\"", 1000, &out, &len, NULL), DFS_OK);
    assert_string_equal(out, HEAD "<CopyObjectResult" NS "><LastModified>1970-01-01T00:00:01.000Z"
                                  "</LastModified><ETag>&quot;e&quot;</ETag></CopyObjectResult>");
    free(out);
    assert_int_equal(dfs_s3xml_copy_result(true, "\"e\"", 1000, &out, &len, NULL), DFS_OK);
    assert_non_null(strstr(out, "<CopyPartResult" NS ">"));
    free(out);
    assert_int_equal(dfs_s3xml_location("", &out, &len, NULL), DFS_OK);
    assert_string_equal(out, HEAD "<LocationConstraint" NS "></LocationConstraint>");
    free(out);
    assert_int_equal(dfs_s3xml_location("eu-west-1", &out, &len, NULL), DFS_OK);
    assert_string_equal(out, HEAD "<LocationConstraint" NS ">eu-west-1</LocationConstraint>");
    free(out);

    const char *deleted[] = {"a", "b<"};
    struct dfs_s3xml_delete_error errs[] = {{"c", DFS_S3ERR_ACCESS_DENIED, NULL},
                                            {"d", DFS_S3ERR_INTERNAL_ERROR, "boom"}};
    assert_int_equal(dfs_s3xml_delete_result(false, deleted, 2, errs, 2, &out, &len, NULL), DFS_OK);
    assert_string_equal(out, HEAD "<DeleteResult" NS "><Deleted><Key>a</Key></Deleted><Deleted>"
                                  "<Key>b&lt;</Key></Deleted><Error><Key>c</Key><Code>AccessDenied"
                                  "</Code><Message>Access Denied</Message></Error><Error><Key>d"
                                  "</Key><Code>InternalError</Code><Message>boom</Message></Error>"
                                  "</DeleteResult>");
    free(out);
    assert_int_equal(dfs_s3xml_delete_result(true, deleted, 2, NULL, 0, &out, &len, NULL), DFS_OK);
    assert_string_equal(out, HEAD "<DeleteResult" NS "></DeleteResult>");
    free(out);

    /* A key that is not UTF-8 cannot be written. */
    char *msg = NULL;
    assert_int_equal(dfs_s3xml_initiate_upload("b", "\xff", "u", &out, &len, &msg), DFS_EINVAL);
    assert_non_null(strstr(msg, "<Key>"));
    free(msg);
}

static const dfs_xml_node *child(const dfs_xml_node *n, const char *name)
{
    for (const dfs_xml_node *c = dfs_xml_first_child(n); c != NULL; c = dfs_xml_next(c)) {
        if (strcmp(dfs_xml_name(c), name) == 0)
            return c;
    }
    return NULL;
}

static const char *text(const dfs_xml_node *n, const char *name)
{
    const dfs_xml_node *c = child(n, name);
    return c != NULL ? dfs_xml_content(c, NULL) : NULL;
}

static dfs_xml_doc *reparse(const char *s)
{
    struct dfs_xml_limits lim = {1 << 20, 8, 10000};
    dfs_xml_doc *d = NULL;
    assert_int_equal(dfs_xml_parse(s, strlen(s), &lim, &d, NULL), DFS_OK);
    return d;
}

static void listings(void **state)
{
    (void)state;
    struct dfs_s3xml_object objs[] = {
        {"photos/a b+c.jpg", 1500000000123, "\"d41d8cd98f00b204e9800998ecf8427e\"", 0, &owner},
        {"photos/\xc3\xa9t\xc3\xa9", 0, "\"x-2\"", 10485760, NULL},
    };
    const char *prefixes[] = {"photos/2023/", "photos/&/"};
    struct dfs_s3xml_listing l = {
        .version = 2,
        .bucket = "b",
        .prefix = "photos/",
        .delimiter = "/",
        .max_keys = 1000,
        .truncated = true,
        .continuation_token = "tok-in",
        .next_continuation_token = "tok-out",
        .start_after = "photos/0",
        .objects = objs,
        .nobjects = 2,
        .prefixes = prefixes,
        .nprefixes = 2,
    };
    char *out = NULL;
    size_t len;
    assert_int_equal(dfs_s3xml_list_objects(&l, &out, &len, NULL), DFS_OK);
    dfs_xml_doc *d = reparse(out);
    const dfs_xml_node *r = dfs_xml_root(d);
    assert_string_equal(dfs_xml_name(r), "ListBucketResult");
    assert_string_equal(text(r, "Name"), "b");
    assert_string_equal(text(r, "Prefix"), "photos/");
    assert_string_equal(text(r, "KeyCount"), "4");
    assert_string_equal(text(r, "MaxKeys"), "1000");
    assert_string_equal(text(r, "IsTruncated"), "true");
    assert_string_equal(text(r, "ContinuationToken"), "tok-in");
    assert_string_equal(text(r, "NextContinuationToken"), "tok-out");
    assert_string_equal(text(r, "StartAfter"), "photos/0");
    assert_null(child(r, "Marker"));
    assert_null(child(r, "EncodingType"));
    const dfs_xml_node *c = child(r, "Contents");
    assert_string_equal(text(c, "Key"), "photos/a b+c.jpg");
    assert_string_equal(text(c, "LastModified"), "2017-07-14T02:40:00.123Z");
    assert_string_equal(text(c, "ETag"), "\"d41d8cd98f00b204e9800998ecf8427e\"");
    assert_string_equal(text(c, "Size"), "0");
    assert_string_equal(text(child(c, "Owner"), "ID"), "dfs-0123456789abcdef");
    assert_string_equal(text(c, "StorageClass"), "STANDARD");
    c = dfs_xml_next(c);
    assert_string_equal(text(c, "Key"), "photos/\xc3\xa9t\xc3\xa9");
    assert_null(child(c, "Owner"));
    const dfs_xml_node *p = child(r, "CommonPrefixes");
    assert_string_equal(text(p, "Prefix"), "photos/2023/");
    assert_string_equal(text(dfs_xml_next(p), "Prefix"), "photos/&/");
    dfs_xml_doc_destroy(d);
    free(out);

    /* encoding-type=url: keys and prefixes percent-encoded, '/' kept. */
    l.url_encoding = true;
    assert_int_equal(dfs_s3xml_list_objects(&l, &out, &len, NULL), DFS_OK);
    d = reparse(out);
    r = dfs_xml_root(d);
    assert_string_equal(text(r, "EncodingType"), "url");
    assert_string_equal(text(child(r, "Contents"), "Key"), "photos/a%20b%2Bc.jpg");
    assert_string_equal(text(dfs_xml_next(child(r, "Contents")), "Key"), "photos/%C3%A9t%C3%A9");
    assert_string_equal(text(dfs_xml_next(child(r, "CommonPrefixes")), "Prefix"), "photos/%26/");
    assert_string_equal(text(r, "Delimiter"), "/");
    assert_string_equal(text(r, "StartAfter"), "photos/0");
    dfs_xml_doc_destroy(d);
    free(out);

    /* Version 1: Marker always, NextMarker when given, no KeyCount. */
    l.version = 1;
    l.url_encoding = false;
    l.marker = "";
    l.next_marker = "photos/\xc3\xa9t\xc3\xa9";
    assert_int_equal(dfs_s3xml_list_objects(&l, &out, &len, NULL), DFS_OK);
    d = reparse(out);
    r = dfs_xml_root(d);
    assert_string_equal(text(r, "Marker"), "");
    assert_string_equal(text(r, "NextMarker"), "photos/\xc3\xa9t\xc3\xa9");
    assert_null(child(r, "KeyCount"));
    assert_null(child(r, "ContinuationToken"));
    dfs_xml_doc_destroy(d);
    free(out);
    l.version = 3;
    assert_int_equal(dfs_s3xml_list_objects(&l, &out, &len, NULL), DFS_EINVAL);

    /* Parts and uploads. */
    struct dfs_s3xml_part parts[] = {{1, 0, "\"a\"", 5242880}, {3, 1000, "\"b\"", 1}};
    struct dfs_s3xml_parts pl = {"b", "k", "u", &owner, 0, 3, 1000, false, parts, 2};
    assert_int_equal(dfs_s3xml_list_parts(&pl, &out, &len, NULL), DFS_OK);
    d = reparse(out);
    r = dfs_xml_root(d);
    assert_string_equal(dfs_xml_name(r), "ListPartsResult");
    assert_string_equal(text(r, "UploadId"), "u");
    assert_string_equal(text(r, "NextPartNumberMarker"), "3");
    assert_string_equal(text(r, "IsTruncated"), "false");
    assert_string_equal(text(child(r, "Initiator"), "DisplayName"), "ci");
    const dfs_xml_node *part = child(r, "Part");
    assert_string_equal(text(part, "PartNumber"), "1");
    assert_string_equal(text(part, "Size"), "5242880");
    assert_string_equal(text(dfs_xml_next(part), "PartNumber"), "3");
    dfs_xml_doc_destroy(d);
    free(out);

    struct dfs_s3xml_upload ups[] = {{"k 1", "u1", 0}, {"k2", "u2", 5000}};
    const char *ups_prefixes[] = {"dir/"};
    struct dfs_s3xml_uploads ul = {
        .bucket = "b",
        .key_marker = "",
        .upload_id_marker = "",
        .next_key_marker = "k2",
        .next_upload_id_marker = "u2",
        .delimiter = "/",
        .max_uploads = 2,
        .truncated = true,
        .url_encoding = true,
        .owner = &owner,
        .uploads = ups,
        .nuploads = 2,
        .prefixes = ups_prefixes,
        .nprefixes = 1,
    };
    assert_int_equal(dfs_s3xml_list_uploads(&ul, &out, &len, NULL), DFS_OK);
    d = reparse(out);
    r = dfs_xml_root(d);
    assert_string_equal(dfs_xml_name(r), "ListMultipartUploadsResult");
    assert_string_equal(text(r, "NextUploadIdMarker"), "u2");
    assert_string_equal(text(r, "MaxUploads"), "2");
    assert_null(child(r, "Prefix"));
    const dfs_xml_node *up = child(r, "Upload");
    assert_string_equal(text(up, "Key"), "k%201");
    assert_string_equal(text(up, "Initiated"), "1970-01-01T00:00:00.000Z");
    assert_string_equal(text(child(r, "CommonPrefixes"), "Prefix"), "dir/");
    dfs_xml_doc_destroy(d);
    free(out);
}

/* What botocore sends for complete_multipart_upload. */
#define COMPLETE(parts)                                                                 \
    "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">" parts \
    "</CompleteMultipartUpload>"
#define PART(n, etag) "<Part><ETag>" etag "</ETag><PartNumber>" n "</PartNumber></Part>"

static int complete(const char *body, struct dfs_s3xml_complete *c, struct dfs_s3err *e)
{
    dfs_s3err_clear(e);
    return dfs_s3xml_parse_complete(body, strlen(body), c, e);
}

static void complete_bodies(void **state)
{
    (void)state;
    struct dfs_s3xml_complete c;
    struct dfs_s3err e = {0};
    assert_int_equal(complete(COMPLETE(PART("1", "&quot;aaa&quot;") "\n  " PART(
                                  "2", "\"bbb\"") "<Part><PartNumber> 10000 </PartNumber><ETag>ccc"
                                                  "</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32>"
                                                  "</Part>"),
                              &c, &e),
                     DFS_OK);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.parts[0].number, 1);
    assert_string_equal(c.parts[0].etag, "\"aaa\"");
    assert_int_equal(c.parts[1].number, 2);
    assert_string_equal(c.parts[1].etag, "\"bbb\"");
    assert_int_equal(c.parts[2].number, 10000);
    assert_string_equal(c.parts[2].etag, "ccc");
    dfs_s3xml_complete_free(&c);
    assert_int_equal(c.n, 0);

    static const struct {
        const char *body;
        enum dfs_s3err_code code;
    } bad[] = {
        {COMPLETE(""), DFS_S3ERR_MALFORMED_XML},
        {COMPLETE(PART("2", "a") PART("1", "b")), DFS_S3ERR_INVALID_PART_ORDER},
        {COMPLETE(PART("1", "a") PART("1", "b")), DFS_S3ERR_INVALID_PART_ORDER},
        {COMPLETE(PART("0", "a")), DFS_S3ERR_INVALID_ARGUMENT},
        {COMPLETE(PART("10001", "a")), DFS_S3ERR_INVALID_ARGUMENT},
        {COMPLETE(PART("-1", "a")), DFS_S3ERR_INVALID_ARGUMENT},
        {COMPLETE(PART("1x", "a")), DFS_S3ERR_INVALID_ARGUMENT},
        {COMPLETE("<Part><PartNumber>1</PartNumber></Part>"), DFS_S3ERR_MALFORMED_XML},
        {COMPLETE("<Part><ETag>a</ETag></Part>"), DFS_S3ERR_MALFORMED_XML},
        {COMPLETE("<Part><ETag>a</ETag><ETag>b</ETag><PartNumber>1</PartNumber></Part>"),
         DFS_S3ERR_MALFORMED_XML},
        {COMPLETE("<Part><ETag>a</ETag><PartNumber>1</PartNumber><Size>1</Size></Part>"),
         DFS_S3ERR_MALFORMED_XML},
        {COMPLETE("<Part><ETag><x/></ETag><PartNumber>1</PartNumber></Part>"),
         DFS_S3ERR_MALFORMED_XML},
        {COMPLETE("<Other/>"), DFS_S3ERR_MALFORMED_XML},
        {COMPLETE("text" PART("1", "a")), DFS_S3ERR_MALFORMED_XML},
        {"<CompleteMultipart/>", DFS_S3ERR_MALFORMED_XML},
        {"", DFS_S3ERR_MALFORMED_XML},
        {"<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>" COMPLETE(PART("1", "&e;")),
         DFS_S3ERR_MALFORMED_XML},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (complete(bad[i].body, &c, &e) == DFS_OK || e.code != bad[i].code)
            fail_msg("body %zu: %s (%s)", i, dfs_s3err_name(e.code), e.message);
        assert_int_equal(c.n, 0);
        assert_non_null(e.message);
    }

    /* 10,000 parts pass; one more cannot be in ascending order within 1..10000. */
    size_t cap = 10002 * 64;
    char *big = malloc(cap);
    size_t n = (size_t)sprintf(big, "<CompleteMultipartUpload>");
    for (int i = 1; i <= 10000; i++)
        n += (size_t)sprintf(big + n, "<Part><PartNumber>%d</PartNumber><ETag>e</ETag></Part>", i);
    strcpy(big + n, "</CompleteMultipartUpload>");
    assert_int_equal(complete(big, &c, &e), DFS_OK);
    assert_int_equal(c.n, 10000);
    dfs_s3xml_complete_free(&c);
    n = (size_t)sprintf(big + n, "<Part><PartNumber>10000</PartNumber><ETag>e</ETag></Part>"
                                 "</CompleteMultipartUpload>") +
        n;
    assert_int_not_equal(complete(big, &c, &e), DFS_OK);
    free(big);
    dfs_s3err_clear(&e);
}

#define DELETE(objects) \
    "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">" objects "</Delete>"
#define OBJ(k) "<Object><Key>" k "</Key></Object>"

static int delete_body(const char *body, struct dfs_s3xml_delete *d, struct dfs_s3err *e)
{
    dfs_s3err_clear(e);
    return dfs_s3xml_parse_delete(body, strlen(body), d, e);
}

static void delete_bodies(void **state)
{
    (void)state;
    struct dfs_s3xml_delete d;
    struct dfs_s3err e = {0};
    assert_int_equal(delete_body(DELETE(OBJ("a") OBJ(" b c ") "<Quiet>true</Quiet>" OBJ(
                                     "&lt;x&gt;") "<Object><Key>v</Key><VersionId>null</VersionId>"
                                                  "</Object>"),
                                 &d, &e),
                     DFS_OK);
    assert_true(d.quiet);
    assert_int_equal(d.n, 4);
    assert_string_equal(d.keys[0], "a");
    assert_string_equal(d.keys[1], " b c "); /* keys are taken as they are */
    assert_string_equal(d.keys[2], "<x>");
    assert_string_equal(d.keys[3], "v");
    dfs_s3xml_delete_free(&d);
    assert_int_equal(delete_body(DELETE(OBJ("a") "<Quiet>False</Quiet>"), &d, &e), DFS_OK);
    assert_false(d.quiet);
    dfs_s3xml_delete_free(&d);

    static const struct {
        const char *body;
        enum dfs_s3err_code code;
    } bad[] = {
        {DELETE(""), DFS_S3ERR_MALFORMED_XML},
        {DELETE("<Quiet>true</Quiet>"), DFS_S3ERR_MALFORMED_XML},
        {DELETE(OBJ("")), DFS_S3ERR_MALFORMED_XML},
        {DELETE("<Object></Object>"), DFS_S3ERR_MALFORMED_XML},
        {DELETE("<Object><Key>a</Key><Key>b</Key></Object>"), DFS_S3ERR_MALFORMED_XML},
        {DELETE("<Object><Key>a</Key><VersionId>3HL4kqtJlcpXroDTDmjVBH40Nrjfkd</VersionId>"
                "</Object>"),
         DFS_S3ERR_NOT_IMPLEMENTED},
        {DELETE("<Object><Key>a</Key><ETag>x</ETag></Object>"), DFS_S3ERR_MALFORMED_XML},
        {DELETE(OBJ("a") "<Quiet>yes</Quiet>"), DFS_S3ERR_MALFORMED_XML},
        {DELETE(OBJ("a") "<Quiet>true</Quiet><Quiet>true</Quiet>"), DFS_S3ERR_MALFORMED_XML},
        {DELETE("<Thing/>"), DFS_S3ERR_MALFORMED_XML},
        {"<Remove>" OBJ("a") "</Remove>", DFS_S3ERR_MALFORMED_XML},
        {DELETE(OBJ("a")) "<Delete/>", DFS_S3ERR_MALFORMED_XML},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (delete_body(bad[i].body, &d, &e) == DFS_OK || e.code != bad[i].code)
            fail_msg("body %zu: %s (%s)", i, dfs_s3err_name(e.code), e.message);
        assert_int_equal(d.n, 0);
    }
    /* 1000 objects pass, 1001 do not; a key of 1025 bytes does not. */
    char *big = malloc(1002 * 40 + 2048);
    size_t n = (size_t)sprintf(big, "<Delete>");
    for (int i = 0; i < 1000; i++)
        n += (size_t)sprintf(big + n, "<Object><Key>k%d</Key></Object>", i);
    strcpy(big + n, "</Delete>");
    assert_int_equal(delete_body(big, &d, &e), DFS_OK);
    assert_int_equal(d.n, 1000);
    assert_string_equal(d.keys[999], "k999");
    dfs_s3xml_delete_free(&d);
    sprintf(big + n, "<Object><Key>x</Key></Object></Delete>");
    assert_int_not_equal(delete_body(big, &d, &e), DFS_OK);
    n = (size_t)sprintf(big, "<Delete><Object><Key>");
    memset(big + n, 'k', 1025);
    strcpy(big + n + 1025, "</Key></Object></Delete>");
    assert_int_equal(delete_body(big, &d, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_KEY_TOO_LONG);
    free(big);
    dfs_s3err_clear(&e);
}

static void create_bucket_bodies(void **state)
{
    (void)state;
    char *loc = NULL;
    struct dfs_s3err e = {0};
    assert_int_equal(dfs_s3xml_parse_create_bucket("", 0, &loc, &e), DFS_OK);
    assert_string_equal(loc, "");
    free(loc);
    assert_int_equal(dfs_s3xml_parse_create_bucket(" \r\n", 3, &loc, &e), DFS_OK);
    assert_string_equal(loc, "");
    free(loc);
    const char *b = "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    "<LocationConstraint>eu-central-1</LocationConstraint>"
                    "</CreateBucketConfiguration>";
    assert_int_equal(dfs_s3xml_parse_create_bucket(b, strlen(b), &loc, &e), DFS_OK);
    assert_string_equal(loc, "eu-central-1");
    free(loc);
    b = "<CreateBucketConfiguration/>";
    assert_int_equal(dfs_s3xml_parse_create_bucket(b, strlen(b), &loc, &e), DFS_OK);
    assert_string_equal(loc, "");
    free(loc);
    b = "<CreateBucketConfiguration><Bucket><Type>Directory</Type></Bucket>"
        "</CreateBucketConfiguration>";
    assert_int_equal(dfs_s3xml_parse_create_bucket(b, strlen(b), &loc, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_NOT_IMPLEMENTED);
    assert_null(loc);
    b = "<CreateBucketConfiguration><LocationConstraint>a</LocationConstraint><LocationConstraint>"
        "b</LocationConstraint></CreateBucketConfiguration>";
    assert_int_equal(dfs_s3xml_parse_create_bucket(b, strlen(b), &loc, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_MALFORMED_XML);
    b = "<Other/>";
    assert_int_equal(dfs_s3xml_parse_create_bucket(b, strlen(b), &loc, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_MALFORMED_XML);
    b = "<CreateBucketConfiguration>";
    assert_int_equal(dfs_s3xml_parse_create_bucket(b, strlen(b), &loc, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_MALFORMED_XML);
    dfs_s3err_clear(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buckets_and_small_documents),
        cmocka_unit_test(listings),
        cmocka_unit_test(complete_bodies),
        cmocka_unit_test(delete_bodies),
        cmocka_unit_test(create_bucket_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
