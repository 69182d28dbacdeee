/* s3names: continuation tokens, upload ids, part names, stored headers (including cut-off ones). */
#include "gateway/s3/s3names.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_tokens(void **state)
{
    (void)state;
    const char *keys[] = {"a", "ab", "abc", "photos/2023/é x+y=z", "\xF4\x8F\xBF\xBF"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char *t = dfs_s3names_token_encode(keys[i]);
        char *k = dfs_s3names_token_decode(t);
        assert_non_null(k);
        assert_string_equal(k, keys[i]);
        free(t);
        free(k);
    }
    const char *bad[] = {"", "abc", "a=bc", "====", "AA==", "ab!d", "YQ=a", "YR=="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_null(dfs_s3names_token_decode(bad[i]));
}

static void test_ids_and_parts(void **state)
{
    (void)state;
    assert_true(dfs_s3names_upload_id_valid("0123456789abcdef0123456789abcdef"));
    assert_false(dfs_s3names_upload_id_valid("0123456789ABCDEF0123456789abcdef"));
    assert_false(dfs_s3names_upload_id_valid("../../0123456789abcdef0123456789"));
    assert_false(dfs_s3names_upload_id_valid(NULL));
    uint32_t n = 0;
    uint8_t md5[16];
    assert_true(dfs_s3names_part_parse("part.00042.0123456789abcdef0123456789abcdef", &n, md5));
    assert_int_equal(n, 42);
    assert_int_equal(md5[0], 0x01);
    assert_false(dfs_s3names_part_parse("part.00000.0123456789abcdef0123456789abcdef", &n, md5));
    assert_false(dfs_s3names_part_parse("part.10001.0123456789abcdef0123456789abcdef", &n, md5));
    assert_false(dfs_s3names_part_parse("part.0004x.0123456789abcdef0123456789abcdef", &n, md5));
    assert_false(dfs_s3names_part_parse("part.00042.0123456789abcdef0123456789abcde", &n, md5));
    assert_false(dfs_s3names_part_parse("upload", &n, md5));
}

static void test_meta(void **state)
{
    (void)state;
    struct dfs_s3req_meta_entry e[2] = {{"content-type", "image/png"}, {"x-amz-meta-a", "b"}};
    struct dfs_s3req_meta m = {e, 2};
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(dfs_s3names_meta_pack(&m, "3", &out, &len), DFS_OK);
    assert_int_equal(len, sizeof ":parts\0"
                                 "3\0content-type\0image/png\0x-amz-meta-a\0b"
                                 "");
    assert_string_equal(dfs_s3names_meta_find(out, len, ":parts"), "3");
    assert_string_equal(dfs_s3names_meta_find(out, len, "content-type"), "image/png");
    assert_string_equal(dfs_s3names_meta_find(out, len, "x-amz-meta-a"), "b");
    assert_null(dfs_s3names_meta_find(out, len, "cache-control"));
    /* Cut anywhere: never a read past the end, only the whole pairs before the cut. */
    for (size_t cut = 0; cut < len; cut++) {
        char *p = malloc(cut + 1);
        memcpy(p, out, cut);
        size_t pos = 0, pairs = 0;
        const char *n, *v;
        while (dfs_s3names_meta_next(p, cut, &pos, &n, &v))
            pairs++;
        assert_true(pairs <= 3);
        free(p);
    }
    assert_null(dfs_s3names_meta_find(NULL, 0, "x"));
    free(out);
    assert_int_equal(dfs_s3names_meta_pack(NULL, NULL, &out, &len), DFS_OK);
    assert_int_equal(len, 0);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_ids_and_parts),
        cmocka_unit_test(test_meta),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
