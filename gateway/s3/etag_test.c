/* Tests for S3 ETags: single-part, multipart, parsing, Content-MD5. */
#include "gateway/s3/etag.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void single(void **state)
{
    (void)state;
    dfs_etag_md5 *m = dfs_etag_md5_create();
    uint8_t d[16];
    char e[DFS_ETAG_MAX + 1];
    assert_int_equal(dfs_etag_md5_final(m, d), DFS_OK);
    dfs_etag_single(d, e);
    assert_string_equal(e, "\"d41d8cd98f00b204e9800998ecf8427e\""); /* MD5("") */
    /* Fed in pieces or at once, the same digest; and final starts over. */
    dfs_etag_md5_update(m, "The quick brown fox ", 20);
    dfs_etag_md5_update(m, "jumps over the lazy dog", 23);
    dfs_etag_md5_update(m, "", 0);
    assert_int_equal(dfs_etag_md5_final(m, d), DFS_OK);
    dfs_etag_single(d, e);
    assert_string_equal(e, "\"9e107d9d372bb6826bd81d3542a419d6\"");
    dfs_etag_md5_update(m, "The quick brown fox jumps over the lazy dog", 43);
    assert_int_equal(dfs_etag_md5_final(m, d), DFS_OK);
    dfs_etag_single(d, e);
    assert_string_equal(e, "\"9e107d9d372bb6826bd81d3542a419d6\"");
    dfs_etag_md5_destroy(m);
    dfs_etag_md5_destroy(NULL);
}

static void multipart(void **state)
{
    (void)state;
    /* Two parts, "a" * 5 MiB and "b": the ETag is MD5(MD5(part1) || MD5(part2)) "-2". */
    size_t n = 5u << 20;
    char *a = malloc(n);
    memset(a, 'a', n);
    uint8_t md5s[2][16];
    dfs_etag_md5 *m = dfs_etag_md5_create();
    dfs_etag_md5_update(m, a, n);
    assert_int_equal(dfs_etag_md5_final(m, md5s[0]), DFS_OK);
    dfs_etag_md5_update(m, "b", 1);
    assert_int_equal(dfs_etag_md5_final(m, md5s[1]), DFS_OK);
    char e[DFS_ETAG_MAX + 1];
    assert_int_equal(dfs_etag_multipart((const uint8_t(*)[16])md5s, 2, e), DFS_OK);
    /* The same from the definition: the MD5 of the 32 bytes of the two digests. */
    uint8_t cat[32], d[16];
    memcpy(cat, md5s[0], 16);
    memcpy(cat + 16, md5s[1], 16);
    dfs_etag_md5_update(m, cat, 32);
    assert_int_equal(dfs_etag_md5_final(m, d), DFS_OK);
    char want[DFS_ETAG_MAX + 1];
    dfs_etag_single(d, want);
    want[33] = '\0';
    strcat(want, "-2\"");
    assert_string_equal(e, want);
    /* One part still gets its "-1". */
    assert_int_equal(dfs_etag_multipart((const uint8_t(*)[16])md5s, 1, e), DFS_OK);
    assert_int_equal(e[strlen(e) - 3], '-');
    assert_int_equal(dfs_etag_multipart((const uint8_t(*)[16])md5s, 0, e), DFS_EINVAL);
    assert_int_equal(dfs_etag_multipart((const uint8_t(*)[16])md5s, 10001, e), DFS_EINVAL);
    dfs_etag_md5_destroy(m);
    free(a);
}

static void parsing(void **state)
{
    (void)state;
    uint8_t d[16];
    unsigned parts = 99;
    assert_int_equal(dfs_etag_parse("\"9e107d9d372bb6826bd81d3542a419d6\"", d, &parts), DFS_OK);
    assert_int_equal(parts, 0);
    assert_int_equal(d[0], 0x9e);
    assert_int_equal(d[15], 0xd6);
    assert_int_equal(dfs_etag_parse("9E107D9D372BB6826BD81D3542A419D6", d, &parts), DFS_OK);
    assert_int_equal(d[0], 0x9e);
    assert_int_equal(dfs_etag_parse("\"9e107d9d372bb6826bd81d3542a419d6-10000\"", d, &parts),
                     DFS_OK);
    assert_int_equal(parts, 10000);
    static const char *const bad[] = {
        "",
        "\"\"",
        "9e107d9d372bb6826bd81d3542a419d",
        "9e107d9d372bb6826bd81d3542a419dz",
        "9e107d9d372bb6826bd81d3542a419d6-",
        "9e107d9d372bb6826bd81d3542a419d6-0",
        "9e107d9d372bb6826bd81d3542a419d6-10001",
        "9e107d9d372bb6826bd81d3542a419d6-1x",
        "9e107d9d372bb6826bd81d3542a419d6x",
        "\"9e107d9d372bb6826bd81d3542a419d6",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (dfs_etag_parse(bad[i], d, &parts) != DFS_EINVAL)
            fail_msg("accepted %s", bad[i]);
    }
}

static void content_md5(void **state)
{
    (void)state;
    uint8_t d[16];
    /* base64(MD5("The quick brown fox jumps over the lazy dog")) */
    assert_int_equal(dfs_etag_content_md5("nhB9nTcrtoJr2B01QqQZ1g==", d), DFS_OK);
    assert_int_equal(d[0], 0x9e);
    assert_int_equal(d[15], 0xd6);
    static const char *const bad[] = {
        "",
        "nhB9nTcrtoJr2B01QqQZ1g",
        "nhB9nTcrtoJr2B01QqQZ1g=",
        "nhB9nTcrtoJr2B01QqQZ1h==",
        "nhB9nTcrtoJr2B01QqQZ1g===",
        "nhB9nTcrtoJr2B01QqQ*1g==",
        "9e107d9d372bb6826bd81d3542a419d6",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (dfs_etag_content_md5(bad[i], d) != DFS_EINVAL)
            fail_msg("accepted %s", bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single),
        cmocka_unit_test(multipart),
        cmocka_unit_test(parsing),
        cmocka_unit_test(content_md5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
