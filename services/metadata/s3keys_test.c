/* s3keys: access key ids, derived secrets, signing keys (AWS's documented example), the key file. */
#include "services/metadata/s3keys.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static void test_ids(void **state)
{
    (void)state;
    char id[DFS_S3KEYS_ID_LEN + 1], tok[DFS_TOKEN_ID_HEX + 1];
    dfs_s3keys_access_key_id("0123456789abcdef", id);
    assert_string_equal(id, "DFS0123456789ABCDEF");
    assert_int_equal(dfs_s3keys_token_id(id, tok), DFS_OK);
    assert_string_equal(tok, "0123456789abcdef");
    assert_int_equal(dfs_s3keys_token_id("AKIA0123456789ABCDEF", tok), DFS_EINVAL);
    assert_int_equal(dfs_s3keys_token_id("DFS0123456789ABCDEG", tok), DFS_EINVAL);
    assert_int_equal(dfs_s3keys_token_id("DFS0123", tok), DFS_EINVAL);
}

static void test_secret(void **state)
{
    (void)state;
    uint8_t m1[32] = {1}, m2[32] = {2};
    char a[41], b[41], c[41];
    assert_int_equal(dfs_s3keys_secret(m1, "0123456789abcdef", a), DFS_OK);
    assert_int_equal(dfs_s3keys_secret(m1, "0123456789abcdef", b), DFS_OK);
    assert_int_equal(dfs_s3keys_secret(m2, "0123456789abcdef", c), DFS_OK);
    assert_int_equal(strlen(a), 40);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    for (int i = 0; i < 40; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", a[i]));
}

/* AWS's example: secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215, us-east-1, iam. */
static void test_signing_key(void **state)
{
    (void)state;
    static const uint8_t want[32] = {0xf4, 0x78, 0x0e, 0x2d, 0x9f, 0x65, 0xfa, 0x89,
                                     0x5f, 0x9c, 0x67, 0xb3, 0x2c, 0xe1, 0xba, 0xf0,
                                     0xb0, 0xd8, 0xa4, 0x35, 0x05, 0xa0, 0x00, 0xa1,
                                     0xa9, 0xe0, 0x90, 0xd4, 0x14, 0xdb, 0x40, 0x4d};
    uint8_t key[32];
    assert_int_equal(dfs_s3keys_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215",
                                            "us-east-1", "iam", key),
                     DFS_OK);
    assert_memory_equal(key, want, 32);
}

static void test_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/s3keys_test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/s3.key", dir);
    uint8_t a[32], b[32];
    char *err = NULL;
    assert_int_equal(dfs_s3keys_load(path, a, &err), DFS_OK);
    assert_int_equal(dfs_s3keys_load(path, b, &err), DFS_OK);
    assert_memory_equal(a, b, 32);
    FILE *f = fopen(path, "w");
    fputs("not hex\n", f);
    fclose(f);
    assert_int_equal(dfs_s3keys_load(path, b, &err), DFS_EINVAL);
    assert_non_null(err);
    free(err);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_secret),
        cmocka_unit_test(test_signing_key),
        cmocka_unit_test(test_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
