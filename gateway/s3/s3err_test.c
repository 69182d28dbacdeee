/* Tests for the S3 error table and the XML error body. */
#include "gateway/s3/s3err.h"

#include "common/err.h"
#include "gateway/s3/xml.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void table_is_complete(void **state)
{
    (void)state;
    for (int c = DFS_S3ERR_NONE + 1; c < DFS_S3ERR_COUNT; c++) {
        const char *name = dfs_s3err_name((enum dfs_s3err_code)c);
        if (name[0] == '\0')
            fail_msg("code %d has no row", c);
        assert_true(dfs_s3err_http_status((enum dfs_s3err_code)c) >= 300);
        assert_true(dfs_s3err_dfs_status((enum dfs_s3err_code)c) < 0);
        assert_true(strlen(dfs_s3err_default_message((enum dfs_s3err_code)c)) > 0);
        /* Names are unique: the lookup by name finds this very code. */
        assert_int_equal(dfs_s3err_from_name(name), c);
    }
    assert_string_equal(dfs_s3err_name(DFS_S3ERR_NONE), "");
    assert_string_equal(dfs_s3err_name(DFS_S3ERR_COUNT), "");
    assert_string_equal(dfs_s3err_name((enum dfs_s3err_code) - 3), "");
    assert_int_equal(dfs_s3err_http_status(DFS_S3ERR_COUNT), 500);
    assert_int_equal(dfs_s3err_from_name("NoSuchThing"), DFS_S3ERR_NONE);
}

/* What issue 17 names, with the statuses S3 answers them with. */
static void s3_codes_and_statuses(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int status;
    } want[] = {
        {"NoSuchBucket", 404},
        {"NoSuchKey", 404},
        {"NoSuchUpload", 404},
        {"BucketAlreadyOwnedByYou", 409},
        {"BucketNotEmpty", 409},
        {"AccessDenied", 403},
        {"SignatureDoesNotMatch", 403},
        {"RequestTimeTooSkewed", 403},
        {"InvalidRange", 416},
        {"InvalidPart", 400},
        {"InvalidPartOrder", 400},
        {"EntityTooSmall", 400},
        {"InvalidBucketName", 400},
        {"MalformedXML", 400},
        {"PreconditionFailed", 412},
        {"InvalidArgument", 400},
        {"InvalidAccessKeyId", 403},
        {"MissingContentLength", 411},
        {"NotImplemented", 501},
        {"InternalError", 500},
        {"NotModified", 304},
        {"MethodNotAllowed", 405},
        {"XAmzContentSHA256Mismatch", 400},
        {"BadDigest", 400},
        {"MetadataTooLarge", 400},
        {"KeyTooLongError", 400},
        {"SlowDown", 503},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        enum dfs_s3err_code c = dfs_s3err_from_name(want[i].name);
        if (c == DFS_S3ERR_NONE)
            fail_msg("%s is not in the table", want[i].name);
        assert_int_equal(dfs_s3err_http_status(c), want[i].status);
    }
    assert_int_equal(dfs_s3err_dfs_status(DFS_S3ERR_NO_SUCH_KEY), DFS_ENOTFOUND);
    assert_int_equal(dfs_s3err_dfs_status(DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH), DFS_EUNAUTH);
    assert_int_equal(dfs_s3err_dfs_status(DFS_S3ERR_ACCESS_DENIED), DFS_EPERM);
}

static const char *child_text(const dfs_xml_node *n, const char *name)
{
    for (const dfs_xml_node *c = dfs_xml_first_child(n); c != NULL; c = dfs_xml_next(c)) {
        if (strcmp(dfs_xml_name(c), name) == 0)
            return dfs_xml_content(c, NULL);
    }
    return NULL;
}

static void error_body(void **state)
{
    (void)state;
    struct dfs_s3err e = {0};
    assert_int_equal(dfs_s3err_set(&e, DFS_S3ERR_NO_SUCH_KEY, "no key %s", "a<b>&c"),
                     DFS_ENOTFOUND);
    dfs_s3err_add_extra(&e, "Key", "a<b>&c");
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(dfs_s3err_body(&e, "/bucket/a<b>&c", "4442587FB7D0A2F9", &body, &len), DFS_OK);
    assert_int_equal(len, strlen(body));
    assert_non_null(strstr(body, "<Code>NoSuchKey</Code>"));
    assert_non_null(strstr(body, "<Key>a&lt;b&gt;&amp;c</Key>"));
    struct dfs_xml_limits lim = {1 << 16, 8, 64};
    dfs_xml_doc *d = NULL;
    assert_int_equal(dfs_xml_parse(body, len, &lim, &d, NULL), DFS_OK);
    const dfs_xml_node *r = dfs_xml_root(d);
    assert_string_equal(dfs_xml_name(r), "Error");
    assert_string_equal(child_text(r, "Code"), "NoSuchKey");
    assert_string_equal(child_text(r, "Message"), "no key a<b>&c");
    assert_string_equal(child_text(r, "Key"), "a<b>&c");
    assert_string_equal(child_text(r, "Resource"), "/bucket/a<b>&c");
    assert_string_equal(child_text(r, "RequestId"), "4442587FB7D0A2F9");
    dfs_xml_doc_destroy(d);
    free(body);

    /* No message: the code's default; no resource or request id: left out. */
    dfs_s3err_set(&e, DFS_S3ERR_BUCKET_NOT_EMPTY, NULL);
    assert_null(e.extra_name[0]); /* set starts over */
    assert_int_equal(dfs_s3err_body(&e, NULL, NULL, &body, &len), DFS_OK);
    assert_string_equal(body, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>"
                              "BucketNotEmpty</Code><Message>The bucket you tried to delete is "
                              "not empty.</Message></Error>");
    free(body);
    /* A resource that is not UTF-8 cannot be written: refused, not mangled. */
    assert_int_equal(dfs_s3err_body(&e, "/b/\xff", NULL, &body, &len), DFS_EINVAL);
    /* Extras beyond the bound are dropped. */
    for (int i = 0; i < DFS_S3ERR_EXTRA_MAX + 2; i++)
        dfs_s3err_add_extra(&e, "X", "y");
    assert_non_null(e.extra_name[DFS_S3ERR_EXTRA_MAX - 1]);
    dfs_s3err_clear(&e);
    assert_int_equal(e.code, DFS_S3ERR_NONE);
    assert_null(e.message);
    /* NULL error: only the status. */
    assert_int_equal(dfs_s3err_set(NULL, DFS_S3ERR_INTERNAL_ERROR, "x"), DFS_EINTERNAL);
    dfs_s3err_add_extra(NULL, "a", "b");
    dfs_s3err_clear(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_is_complete),
        cmocka_unit_test(s3_codes_and_statuses),
        cmocka_unit_test(error_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
