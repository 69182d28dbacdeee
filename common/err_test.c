/* Tests of status codes and error messages. */
#include "common/err.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_seterr_formats_and_returns_code(void **state)
{
    (void)state;
    char *msg = NULL;
    assert_int_equal(dfs_seterr(&msg, DFS_EINVAL, "bad id %s", "zz"), DFS_EINVAL);
    assert_string_equal(msg, "bad id zz");
    /* A second message replaces the first without leaking it. */
    assert_int_equal(dfs_seterr(&msg, DFS_ENOTFOUND, "no %d", 7), DFS_ENOTFOUND);
    assert_string_equal(msg, "no 7");
    free(msg);
}

static void test_seterr_null_errmsg(void **state)
{
    (void)state;
    assert_int_equal(dfs_seterr(NULL, DFS_EIO, "x"), DFS_EIO);
    assert_int_equal(dfs_prefixerr(NULL, DFS_EIO, "x"), DFS_EIO);
}

static void test_seterr_errno_appends_reason(void **state)
{
    (void)state;
    char *msg = NULL;
    dfs_seterr_errno(&msg, DFS_EIO, ENOENT, "open %s", "/x");
    assert_string_equal(msg, "open /x: No such file or directory");
    free(msg);
}

static void test_prefixerr(void **state)
{
    (void)state;
    char *msg = NULL;
    dfs_prefixerr(&msg, DFS_EIO, "alone");
    assert_string_equal(msg, "alone");
    dfs_prefixerr(&msg, DFS_EIO, "node %d", 3);
    assert_string_equal(msg, "node 3: alone");
    free(msg);
}

static void test_strerror_covers_codes(void **state)
{
    (void)state;
    for (int c = DFS_EABORTED; c <= DFS_OK; c++)
        assert_string_not_equal(dfs_strerror(c), "unknown error");
    assert_string_equal(dfs_strerror(12345), "unknown error");
}

static void test_err_from_errno(void **state)
{
    (void)state;
    assert_int_equal(dfs_err_from_errno(ENOSPC), DFS_ENOSPC);
    assert_int_equal(dfs_err_from_errno(ENOENT), DFS_ENOTFOUND);
    assert_int_equal(dfs_err_from_errno(EIO), DFS_EIO);
}

static void test_quote_is_short_and_printable(void **state)
{
    (void)state;
    struct dfs_quote q;
    assert_string_equal(dfs_quote(NULL, &q), "");
    assert_string_equal(dfs_quote("/a/b", &q), "/a/b");
    assert_string_equal(dfs_quote("a\nb\x1b[0m\x7f\xff caf\xc3\xa9", &q), "a?b?[0m?? caf\xc3\xa9");
    char big[10240];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *s = dfs_quote(big, &q);
    assert_int_equal(strlen(s), DFS_QUOTE_MAX + 3);
    assert_string_equal(s + DFS_QUOTE_MAX, "...");
    /* Exactly the limit: no "...". */
    big[DFS_QUOTE_MAX] = '\0';
    assert_int_equal(strlen(dfs_quote(big, &q)), DFS_QUOTE_MAX);
    /* A character across the limit is not split. */
    memset(big, 'x', DFS_QUOTE_MAX - 1);
    memcpy(big + DFS_QUOTE_MAX - 1, "\xe2\x82\xacmore", 8);
    s = dfs_quote(big, &q);
    assert_int_equal(strlen(s), DFS_QUOTE_MAX - 1 + 3);
    assert_string_equal(s + DFS_QUOTE_MAX - 1, "...");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seterr_formats_and_returns_code),
        cmocka_unit_test(test_seterr_null_errmsg),
        cmocka_unit_test(test_seterr_errno_appends_reason),
        cmocka_unit_test(test_prefixerr),
        cmocka_unit_test(test_strerror_covers_codes),
        cmocka_unit_test(test_err_from_errno),
        cmocka_unit_test(test_quote_is_short_and_printable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
