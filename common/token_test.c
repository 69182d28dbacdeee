/* Tests of bearer tokens' text form. */
#include "common/token.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_generate_and_parse(void **state)
{
    (void)state;
    char a[DFS_TOKEN_LEN + 1], b[DFS_TOKEN_LEN + 1];
    assert_int_equal(dfs_token_generate(a), DFS_OK);
    assert_int_equal(dfs_token_generate(b), DFS_OK);
    assert_int_equal(strlen(a), DFS_TOKEN_LEN);
    assert_string_not_equal(a, b);
    assert_memory_equal(a, "dfs1.", 5);
    char id[DFS_TOKEN_ID_HEX + 1];
    uint8_t h1[DFS_TOKEN_HASH_LEN], h2[DFS_TOKEN_HASH_LEN];
    assert_int_equal(dfs_token_parse(a, id, h1, NULL), DFS_OK);
    assert_memory_equal(id, a + 5, DFS_TOKEN_ID_HEX);
    assert_int_equal(dfs_token_parse(b, id, h2, NULL), DFS_OK);
    assert_memory_not_equal(h1, h2, sizeof h1);
}

/* SHA-256 of the secret only, as computed by `printf %s SECRET | sha256sum`. */
static void test_hash_is_sha256_of_secret(void **state)
{
    (void)state;
    const char *tok = "dfs1.0011223344556677."
                      "00000000000000000000000000000000000000000000000000000000000000ff";
    char id[DFS_TOKEN_ID_HEX + 1];
    uint8_t h[DFS_TOKEN_HASH_LEN];
    assert_int_equal(dfs_token_parse(tok, id, h, NULL), DFS_OK);
    assert_string_equal(id, "0011223344556677");
    static const uint8_t want[4] = {0x9f, 0x30, 0xb6, 0xa3};
    assert_memory_equal(h, want, sizeof want);
}

static void test_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "dfs1.",
        "dfs2.0011223344556677.00000000000000000000000000000000000000000000000000000000000000ff",
        "dfs1.0011223344556677-00000000000000000000000000000000000000000000000000000000000000ff",
        "dfs1.001122334455667G.00000000000000000000000000000000000000000000000000000000000000ff",
        "dfs1.0011223344556677.00000000000000000000000000000000000000000000000000000000000000FF",
        "dfs1.0011223344556677.00000000000000000000000000000000000000000000000000000000000000ff0",
        "dfs1.0011223344556677.00000000000000000000000000000000000000000000000000000000000000f",
    };
    char id[DFS_TOKEN_ID_HEX + 1];
    uint8_t h[DFS_TOKEN_HASH_LEN];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *err = NULL;
        assert_int_equal(dfs_token_parse(bad[i], id, h, &err), DFS_EUNAUTH);
        assert_non_null(err);
        assert_null(strstr(err, "0011223344556677"));
        free(err);
    }
    assert_int_equal(dfs_token_parse(NULL, id, h, NULL), DFS_EUNAUTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_and_parse),
        cmocka_unit_test(test_hash_is_sha256_of_secret),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
