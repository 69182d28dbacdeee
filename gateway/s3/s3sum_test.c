/* Tests for S3's additional checksums: check values, base64 forms, requests that carry them. */
#include "gateway/s3/s3sum.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void sum(enum dfs_s3sum_algo a, const char *data, size_t len, size_t step, char *out)
{
    dfs_s3sum *s = dfs_s3sum_create(a);
    assert_non_null(s);
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        dfs_s3sum_update(s, data + i, n);
    }
    assert_int_equal(dfs_s3sum_final(s, out), DFS_OK);
    assert_int_equal(dfs_s3sum_final(s, out), DFS_EINVAL); /* spent */
    dfs_s3sum_destroy(s);
}

/* The catalogue's check values over "123456789", big-endian, base64. */
static void check_values(void **state)
{
    (void)state;
    char out[DFS_S3SUM_B64_MAX + 1];
    static const struct {
        enum dfs_s3sum_algo a;
        const char *want;
    } v[] = {
        {DFS_S3SUM_CRC32, "y/Q5Jg=="},         /* 0xCBF43926 */
        {DFS_S3SUM_CRC32C, "4waSgw=="},        /* 0xE3069283 */
        {DFS_S3SUM_CRC64NVME, "rosUhgp5mIg="}, /* 0xAE8B14860A799888 */
        {DFS_S3SUM_SHA1, "98O8HYCOBHMq32eZZczDTKeuNEE="},
        {DFS_S3SUM_SHA256, "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU="},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        for (size_t step = 1; step <= 9; step += 4) {
            sum(v[i].a, "123456789", 9, step, out);
            assert_string_equal(out, v[i].want);
        }
    }
    /* Empty bodies. */
    sum(DFS_S3SUM_CRC32, "", 0, 1, out);
    assert_string_equal(out, "AAAAAA==");
    /* AWS's documented trailer example: CRC32C of 66560 bytes of 'a' is sOO8/Q==. */
    char *a = malloc(66560);
    memset(a, 'a', 66560);
    sum(DFS_S3SUM_CRC32C, a, 66560, 65536, out);
    assert_string_equal(out, "sOO8/Q==");
    /* CRC-64/NVME of 32 zero bytes (another published vector): 0xCF3473434D4ECF3B. */
    memset(a, 0, 32);
    sum(DFS_S3SUM_CRC64NVME, a, 32, 32, out);
    assert_string_equal(out, "zzRzQ01Ozzs=");
    free(a);

    dfs_s3sum *s = dfs_s3sum_create(DFS_S3SUM_CRC32);
    dfs_s3sum_update(s, "123456789", 9);
    struct dfs_s3err e = {0};
    assert_int_equal(dfs_s3sum_check(s, "y/Q5Jg==", &e), DFS_OK);
    dfs_s3sum_destroy(s);
    s = dfs_s3sum_create(DFS_S3SUM_CRC32);
    dfs_s3sum_update(s, "123456780", 9);
    assert_int_equal(dfs_s3sum_check(s, "y/Q5Jg==", &e), DFS_EDATALOSS);
    assert_int_equal(e.code, DFS_S3ERR_BAD_DIGEST);
    assert_non_null(strstr(e.message, "CRC32"));
    dfs_s3sum_destroy(s);
    s = dfs_s3sum_create(DFS_S3SUM_SHA1);
    assert_int_equal(dfs_s3sum_check(s, NULL, &e), DFS_EDATALOSS); /* a trailer never sent */
    dfs_s3sum_destroy(s);
    dfs_s3sum_destroy(NULL);
    assert_null(dfs_s3sum_create((enum dfs_s3sum_algo)99));
    dfs_s3err_clear(&e);
}

static void requests(void **state)
{
    (void)state;
    enum dfs_s3sum_algo a;
    bool present;
    const char *v;
    struct dfs_s3err e = {0};
    struct dfs_s3http_header h1[] = {{"X-Amz-Checksum-CRC32", "y/Q5Jg=="},
                                     {"x-amz-sdk-checksum-algorithm", "CRC32"}};
    struct dfs_s3http_request r = {"PUT", "/b/k", NULL, h1, 2};
    assert_int_equal(dfs_s3sum_of_request(&r, &present, &a, &v, &e), DFS_OK);
    assert_true(present);
    assert_int_equal(a, DFS_S3SUM_CRC32);
    assert_string_equal(v, "y/Q5Jg==");
    struct dfs_s3http_header h2[] = {{"x-amz-trailer", "x-amz-checksum-sha256"},
                                     {"x-amz-sdk-checksum-algorithm", "sha256"}};
    r.headers = h2;
    assert_int_equal(dfs_s3sum_of_request(&r, &present, &a, &v, &e), DFS_OK);
    assert_true(present);
    assert_int_equal(a, DFS_S3SUM_SHA256);
    assert_null(v);
    r.nheaders = 0;
    assert_int_equal(dfs_s3sum_of_request(&r, &present, &a, &v, &e), DFS_OK);
    assert_false(present);

    static const struct dfs_s3http_header bad[][2] = {
        {{"x-amz-checksum-crc32", "y/Q5Jg=="},
         {"x-amz-checksum-sha1", "98O8HYCOBHMq32eZZczDTKeuNEE="}},
        {{"x-amz-checksum-crc32", "y/Q5Jg=="}, {"x-amz-trailer", "x-amz-checksum-crc32"}},
        {{"x-amz-checksum-md5", "abc"}, {"x-amz-meta-a", "b"}},
        {{"x-amz-checksum-crc32", "y/Q5Jg"}, {"x-amz-meta-a", "b"}},
        {{"x-amz-trailer", "x-amz-checksum-xyz"}, {"x-amz-meta-a", "b"}},
        {{"x-amz-checksum-crc32", "y/Q5Jg=="}, {"x-amz-sdk-checksum-algorithm", "SHA1"}},
        {{"x-amz-sdk-checksum-algorithm", "CRC32"}, {"x-amz-meta-a", "b"}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct dfs_s3http_request rb = {"PUT", "/b/k", NULL, bad[i], 2};
        if (dfs_s3sum_of_request(&rb, &present, &a, &v, &e) != DFS_EINVAL)
            fail_msg("case %zu accepted", i);
        assert_int_equal(e.code, DFS_S3ERR_INVALID_REQUEST);
    }
    assert_string_equal(dfs_s3sum_header(DFS_S3SUM_CRC64NVME), "x-amz-checksum-crc64nvme");
    assert_true(dfs_s3sum_algo_of_header("X-AMZ-CHECKSUM-CRC32C", &a));
    assert_int_equal(a, DFS_S3SUM_CRC32C);
    assert_false(dfs_s3sum_algo_of_header("x-amz-checksum-type", &a));
    dfs_s3err_clear(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(check_values),
        cmocka_unit_test(requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
