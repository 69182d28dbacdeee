/* Tests for the request view: headers, percent-coding, and query strings. */
#include "gateway/s3/s3http.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void headers(void **state)
{
    (void)state;
    struct dfs_s3http_header h[] = {
        {"Host", "h"}, {"X-Amz-Meta-A", "1"}, {"x-amz-meta-a", "2"}, {"Range", "bytes=0-1"}};
    struct dfs_s3http_request r = {"GET", "/", NULL, h, 4};
    assert_string_equal(dfs_s3http_header(&r, "host"), "h");
    assert_string_equal(dfs_s3http_header(&r, "X-AMZ-META-A"), "1");
    assert_null(dfs_s3http_header(&r, "x-amz-meta"));
    assert_int_equal(dfs_s3http_header_count(&r, "x-amz-meta-a"), 2);
    assert_int_equal(dfs_s3http_header_count(&r, "nope"), 0);
    const char *v = "x";
    struct dfs_s3err e = {0};
    assert_int_equal(dfs_s3http_header_once(&r, "range", &v, &e), DFS_OK);
    assert_string_equal(v, "bytes=0-1");
    assert_int_equal(dfs_s3http_header_once(&r, "nope", &v, &e), DFS_OK);
    assert_null(v);
    assert_int_equal(dfs_s3http_header_once(&r, "x-amz-meta-a", &v, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_ARGUMENT);
    dfs_s3err_clear(&e);
}

static void percent_coding(void **state)
{
    (void)state;
    char *out = NULL, *msg = NULL;
    size_t n;
    assert_int_equal(dfs_s3http_decode("a%20b%2fc%2Fd+e", 15, false, &out, &n, &msg), DFS_OK);
    assert_string_equal(out, "a b/c/d+e");
    assert_int_equal(n, 9);
    free(out);
    assert_int_equal(dfs_s3http_decode("a+b", 3, true, &out, NULL, &msg), DFS_OK);
    assert_string_equal(out, "a b");
    free(out);
    /* Only n bytes are read. */
    assert_int_equal(dfs_s3http_decode("ab%41zzz", 5, false, &out, NULL, &msg), DFS_OK);
    assert_string_equal(out, "abA");
    free(out);
    static const char *const bad[] = {"%", "%4", "%zz", "%4g", "a%00b", "%%"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        out = NULL;
        assert_int_equal(dfs_s3http_decode(bad[i], strlen(bad[i]), false, &out, NULL, &msg),
                         DFS_EINVAL);
        assert_null(out);
        assert_non_null(msg);
    }
    assert_int_equal(dfs_s3http_decode("%4", 2, false, &out, NULL, &msg), DFS_EINVAL);
    free(msg);

    char *e = dfs_s3http_encode("AZaz09-_.~ /+=&?%\xc3\xa9", 19, false);
    assert_string_equal(e, "AZaz09-_.~%20%2F%2B%3D%26%3F%25%C3%A9");
    free(e);
    e = dfs_s3http_encode("a/b c", 5, true);
    assert_string_equal(e, "a/b%20c");
    free(e);
    e = dfs_s3http_encode("", 0, true);
    assert_string_equal(e, "");
    free(e);
    /* Every byte survives encode then decode. */
    char all[255];
    for (int i = 0; i < 255; i++)
        all[i] = (char)(i + 1);
    e = dfs_s3http_encode(all, 255, false);
    assert_int_equal(dfs_s3http_decode(e, strlen(e), true, &out, &n, NULL), DFS_OK);
    assert_int_equal(n, 255);
    assert_memory_equal(out, all, 255);
    free(out);
    free(e);
}

static void query(void **state)
{
    (void)state;
    struct dfs_s3http_query q;
    struct dfs_s3err e = {0};
    assert_int_equal(
        dfs_s3http_query_parse("list-type=2&prefix=a+b%2Fc&&uploads&delimiter=&x=1=2&x=3&", &q, &e),
        DFS_OK);
    assert_int_equal(q.n, 6);
    assert_string_equal(dfs_s3http_query_get(&q, "list-type"), "2");
    assert_string_equal(dfs_s3http_query_get(&q, "prefix"), "a b/c");
    assert_string_equal(dfs_s3http_query_get(&q, "uploads"), "");
    assert_false(q.params[2].has_value);
    assert_string_equal(dfs_s3http_query_get(&q, "delimiter"), "");
    assert_true(q.params[3].has_value);
    assert_string_equal(dfs_s3http_query_get(&q, "x"), "1=2");
    assert_int_equal(dfs_s3http_query_count(&q, "x"), 2);
    assert_null(dfs_s3http_query_get(&q, "List-Type")); /* names are case-sensitive */
    dfs_s3http_query_free(&q);
    assert_int_equal(q.n, 0);

    assert_int_equal(dfs_s3http_query_parse(NULL, &q, &e), DFS_OK);
    assert_int_equal(q.n, 0);
    assert_int_equal(dfs_s3http_query_parse("", &q, &e), DFS_OK);
    assert_int_equal(q.n, 0);
    assert_int_equal(dfs_s3http_query_parse("a=%zz", &q, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_URI);
    assert_int_equal(q.n, 0);
    assert_int_equal(dfs_s3http_query_parse("a%00=1", &q, &e), DFS_EINVAL);
    char many[1024] = "";
    for (int i = 0; i <= DFS_S3HTTP_MAX_PARAMS; i++)
        sprintf(many + strlen(many), "p%d&", i);
    assert_int_equal(dfs_s3http_query_parse(many, &q, &e), DFS_EINVAL);
    assert_int_equal(q.n, 0);
    dfs_s3err_clear(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(headers),
        cmocka_unit_test(percent_coding),
        cmocka_unit_test(query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
