/* Tests of remote path rules. */
#include "common/path.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void expect_canon(const char *in, const char *want)
{
    char *out = NULL, *msg = NULL;
    assert_int_equal(dfs_path_canon(in, &out, &msg), DFS_OK);
    assert_string_equal(out, want);
    free(out);
    assert_null(msg);
}

static void expect_bad(const char *in, const char *fragment)
{
    char *out = NULL, *msg = NULL;
    assert_int_equal(dfs_path_canon(in, &out, &msg), DFS_EINVAL);
    assert_null(out);
    assert_non_null(msg);
    assert_non_null(strstr(msg, fragment));
    free(msg);
}

static void test_canonical_forms(void **state)
{
    (void)state;
    expect_canon("a", "/a");
    expect_canon("/a/b", "/a/b");
    expect_canon("a//b", "/a/b");
    expect_canon("///x", "/x");
    expect_canon("/with space/ünïcode", "/with space/ünïcode");
    expect_canon("/.hidden/..dots", "/.hidden/..dots");
}

static void test_rejections(void **state)
{
    (void)state;
    expect_bad("", "empty");
    expect_bad("/", "names no file");
    expect_bad("//", "names no file");
    expect_bad("/a/", "ends with '/'");
    expect_bad("/a/../b", "'..'");
    expect_bad("./a", "'.'");
    expect_bad("/a\nb", "control character");
    expect_bad("/a\xff"
               "b",
               "not valid UTF-8 (byte 2)");
    expect_bad("/\xc0\xaf..", "not valid UTF-8");    /* an overlong '/' */
    expect_bad("/x\xed\xa0\x80", "not valid UTF-8"); /* a surrogate */
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    expect_bad(longname, "component longer");
    char *longpath = malloc(2000);
    for (int i = 0; i < 1998; i += 2) {
        longpath[i] = 'a';
        longpath[i + 1] = '/';
    }
    longpath[1998] = 'a';
    longpath[1999] = '\0';
    expect_bad(longpath, "longer than");
    free(longpath);
}

static void test_prefixes(void **state)
{
    (void)state;
    const char *cases[][2] = {
        {"", "/"}, {"/", "/"}, {"a", "/a"}, {"a/", "/a/"}, {"//a//b//", "/a/b/"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        assert_int_equal(dfs_path_prefix_canon(cases[i][0], &out, NULL), DFS_OK);
        assert_string_equal(out, cases[i][1]);
        free(out);
    }
    char *out = NULL;
    assert_int_equal(dfs_path_prefix_canon("/a/../", &out, NULL), DFS_EINVAL);
    assert_int_equal(dfs_path_prefix_canon("/\xe2\x82", &out, NULL), DFS_EINVAL);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_forms),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_prefixes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
