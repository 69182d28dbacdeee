/* Tests for percent-decoding and encoding, and what path canonicalisation makes of the result. */
#include "gateway/urlcodec.h"

#include "common/err.h"
#include "common/path.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

static void check(const char *in, const char *want)
{
    char *out = NULL, *err = NULL;
    assert_int_equal(dfs_gw_percent_decode(in, &out, &err), DFS_OK);
    assert_string_equal(out, want);
    free(out);
}

static void decodes(void **state)
{
    (void)state;
    check("", "");
    check("/a/b", "/a/b");
    check("/a%20b", "/a b");
    check("%2Fx%2fy", "/x/y");
    check("a+b", "a+b"); /* a plus sign in a path */
    check("%e2%82%ac", "\xe2\x82\xac");
    check("100%25", "100%");
}

static void refuses(void **state)
{
    (void)state;
    const char *bad[] = {"%", "%2", "a%g0", "%%", "abc%0", "x%00y", "%0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = (char *)"untouched", *err = NULL;
        assert_int_equal(dfs_gw_percent_decode(bad[i], &out, &err), DFS_EINVAL);
        assert_string_equal(out, "untouched");
        assert_non_null(err);
        free(err);
    }
}

static void decoded_paths_are_canonicalised(void **state)
{
    (void)state;
    /* Encoded dots and control characters are refused once decoded. */
    const char *bad[] = {"/a/%2e%2e/b", "/a/%2E/b", "/a%0Ab", "/a%7f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *dec = NULL, *canon = NULL, *err = NULL;
        assert_int_equal(dfs_gw_percent_decode(bad[i], &dec, &err), DFS_OK);
        assert_int_equal(dfs_path_canon(dec, &canon, &err), DFS_EINVAL);
        free(err);
        free(dec);
    }
    char *dec = NULL, *canon = NULL;
    assert_int_equal(dfs_gw_percent_decode("//x%2F%2Fy", &dec, NULL), DFS_OK);
    assert_int_equal(dfs_path_canon(dec, &canon, NULL), DFS_OK);
    assert_string_equal(canon, "/x/y");
    free(dec);
    free(canon);
}

static void encodes_paths(void **state)
{
    (void)state;
    char *s = dfs_gw_percent_encode_path("/a b/c%d~e\xff");
    assert_string_equal(s, "/a%20b/c%25d~e%FF");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes),
        cmocka_unit_test(refuses),
        cmocka_unit_test(decoded_paths_are_canonicalised),
        cmocka_unit_test(encodes_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
