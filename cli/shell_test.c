/* Tests of the shell's line splitting (the prompt itself is tested through a terminal: tests/). */
#include "cli/cli.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void expect_words(const char *line, int n, const char *const *want)
{
    char **w = NULL;
    char *err = NULL;
    assert_int_equal(dfs_shell_split(line, &w, &err), n);
    for (int i = 0; i < n; i++)
        assert_string_equal(w[i], want[i]);
    assert_null(w[n]);
    free(w);
}

static void test_split(void **state)
{
    (void)state;
    expect_words("", 0, NULL);
    expect_words("   \t ", 0, NULL);
    const char *a[] = {"put", "a b", "/x y", "--force"};
    expect_words("put 'a b' \"/x y\" --force", 4, a);
    const char *b[] = {"get", "it's", "a\"b", "c\\d"};
    expect_words("get it\\'s \"a\\\"b\" 'c\\d'", 4, b);
    const char *c[] = {"ls", "-l"};
    expect_words("  ls   -l  ", 2, c);
    const char *d[] = {"x", "ab cd"};
    expect_words("x ab\\ cd", 2, d);
}

static void test_split_errors(void **state)
{
    (void)state;
    const char *bad[] = {"put 'a", "get \"b", "ls \\"};
    for (size_t i = 0; i < 3; i++) {
        char **w = NULL;
        char *err = NULL;
        assert_int_equal(dfs_shell_split(bad[i], &w, &err), -1);
        assert_null(w);
        assert_non_null(err);
        free(err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_split_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
