/* Tests for conditional requests, in RFC 9110's order and S3's combinations. */
#include "gateway/s3/s3cond.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define ETAG   "\"9e107d9d372bb6826bd81d3542a419d6\""
#define OTHER  "\"d41d8cd98f00b204e9800998ecf8427e\""
#define MTIME  784111777 /* Sun, 06 Nov 1994 08:49:37 GMT */
#define BEFORE "Sun, 06 Nov 1994 08:49:36 GMT"
#define AT     "Sun, 06 Nov 1994 08:49:37 GMT"
#define AFTER  "Sun, 06 Nov 1994 08:49:38 GMT"

static enum dfs_s3err_code eval(const char *im, const char *inm, const char *ims, const char *ius,
                                enum dfs_s3cond_mode mode, bool exists)
{
    struct dfs_s3http_header h[4];
    size_t n = 0;
    bool copy = mode == DFS_S3COND_COPY_SOURCE;
    if (im != NULL)
        h[n++] = (struct dfs_s3http_header){copy ? "x-amz-copy-source-if-match" : "If-Match", im};
    if (inm != NULL)
        h[n++] = (struct dfs_s3http_header){
            copy ? "x-amz-copy-source-if-none-match" : "if-none-match", inm};
    if (ims != NULL)
        h[n++] = (struct dfs_s3http_header){
            copy ? "x-amz-copy-source-if-modified-since" : "If-Modified-Since", ims};
    if (ius != NULL)
        h[n++] = (struct dfs_s3http_header){
            copy ? "x-amz-copy-source-if-unmodified-since" : "If-Unmodified-Since", ius};
    struct dfs_s3http_request r = {"GET", "/b/k", NULL, h, n};
    struct dfs_s3cond c;
    assert_int_equal(dfs_s3cond_parse(&r, copy, 1700000000, &c, NULL), DFS_OK);
    return dfs_s3cond_eval(&c, mode, exists, ETAG, MTIME);
}

#define READ  DFS_S3COND_READ
#define WRITE DFS_S3COND_WRITE
#define COPY  DFS_S3COND_COPY_SOURCE
#define GO    DFS_S3ERR_NONE
#define N304  DFS_S3ERR_NOT_MODIFIED
#define N412  DFS_S3ERR_PRECONDITION_FAILED

static void single_conditions(void **state)
{
    (void)state;
    assert_int_equal(eval(NULL, NULL, NULL, NULL, READ, true), GO);
    assert_int_equal(eval(ETAG, NULL, NULL, NULL, READ, true), GO);
    assert_int_equal(eval(OTHER, NULL, NULL, NULL, READ, true), N412);
    assert_int_equal(eval("*", NULL, NULL, NULL, READ, true), GO);
    assert_int_equal(eval(OTHER ", " ETAG, NULL, NULL, NULL, READ, true), GO);
    assert_int_equal(eval("9e107d9d372bb6826bd81d3542a419d6", NULL, NULL, NULL, READ, true), GO);
    assert_int_equal(eval("W/" ETAG, NULL, NULL, NULL, READ, true), N412); /* strong only */
    assert_int_equal(eval(NULL, ETAG, NULL, NULL, READ, true), N304);
    assert_int_equal(eval(NULL, "W/" ETAG, NULL, NULL, READ, true), N304); /* weak compare */
    assert_int_equal(eval(NULL, OTHER, NULL, NULL, READ, true), GO);
    assert_int_equal(eval(NULL, "*", NULL, NULL, READ, true), N304);
    assert_int_equal(eval(NULL, NULL, BEFORE, NULL, READ, true), GO);
    assert_int_equal(eval(NULL, NULL, AT, NULL, READ, true), N304);
    assert_int_equal(eval(NULL, NULL, AFTER, NULL, READ, true), N304);
    assert_int_equal(eval(NULL, NULL, NULL, BEFORE, READ, true), N412);
    assert_int_equal(eval(NULL, NULL, NULL, AT, READ, true), GO);
    assert_int_equal(eval(NULL, NULL, NULL, AFTER, READ, true), GO);
    /* A date that does not parse is ignored. */
    assert_int_equal(eval(NULL, NULL, "yesterday", NULL, READ, true), GO);
    assert_int_equal(eval(NULL, NULL, NULL, "1994-11-06", READ, true), GO);
    /* Asymmetric lists with commas inside quotes. */
    assert_int_equal(eval("\"a,b\", " ETAG, NULL, NULL, NULL, READ, true), GO);
    assert_int_equal(eval("\"a," ETAG "\"", NULL, NULL, NULL, READ, true), N412);
}

/* S3's documented combinations. */
static void combinations(void **state)
{
    (void)state;
    /* If-Match true and If-Unmodified-Since false: 200. */
    assert_int_equal(eval(ETAG, NULL, NULL, BEFORE, READ, true), GO);
    /* If-None-Match false and If-Modified-Since true: 304. */
    assert_int_equal(eval(NULL, ETAG, BEFORE, NULL, READ, true), N304);
    /* If-None-Match true: If-Modified-Since is not consulted. */
    assert_int_equal(eval(NULL, OTHER, AFTER, NULL, READ, true), GO);
    /* If-Match false wins over everything. */
    assert_int_equal(eval(OTHER, OTHER, BEFORE, AFTER, READ, true), N412);
    /* Copies: x-amz-copy-source-if-* with 412 for every failure. */
    assert_int_equal(eval(ETAG, NULL, NULL, BEFORE, COPY, true), GO);
    assert_int_equal(eval(NULL, ETAG, BEFORE, NULL, COPY, true), N412);
    assert_int_equal(eval(NULL, NULL, AT, NULL, COPY, true), N412);
    assert_int_equal(eval(NULL, NULL, BEFORE, NULL, COPY, true), GO);
    assert_int_equal(eval(OTHER, NULL, NULL, NULL, COPY, true), N412);
    /* Writes: If-None-Match: * only for a new object; If-Match needs the object. */
    assert_int_equal(eval(NULL, "*", NULL, NULL, WRITE, false), GO);
    assert_int_equal(eval(NULL, "*", NULL, NULL, WRITE, true), N412);
    assert_int_equal(eval(ETAG, NULL, NULL, NULL, WRITE, true), GO);
    assert_int_equal(eval(OTHER, NULL, NULL, NULL, WRITE, true), N412);
    assert_int_equal(eval(ETAG, NULL, NULL, NULL, WRITE, false), DFS_S3ERR_NO_SUCH_KEY);
    assert_int_equal(eval(NULL, NULL, AT, NULL, WRITE, true), GO);
    assert_int_equal(eval(NULL, NULL, NULL, NULL, WRITE, false), GO);
    /* Reads and copies of nothing. */
    assert_int_equal(eval(NULL, NULL, NULL, NULL, READ, false), DFS_S3ERR_NO_SUCH_KEY);
    assert_int_equal(eval(NULL, NULL, NULL, NULL, COPY, false), DFS_S3ERR_NO_SUCH_KEY);
}

static void repeated_headers(void **state)
{
    (void)state;
    struct dfs_s3http_header h[] = {{"If-Match", ETAG}, {"if-match", OTHER}};
    struct dfs_s3http_request r = {"GET", "/b/k", NULL, h, 2};
    struct dfs_s3cond c;
    struct dfs_s3err e = {0};
    assert_int_equal(dfs_s3cond_parse(&r, false, 0, &c, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_ARGUMENT);
    /* The copy-source forms are other headers. */
    assert_int_equal(dfs_s3cond_parse(&r, true, 0, &c, &e), DFS_OK);
    assert_null(c.if_match);
    dfs_s3err_clear(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_conditions),
        cmocka_unit_test(combinations),
        cmocka_unit_test(repeated_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
