/* Tests of directory entries from file paths. */
#include "mount/dirlist.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void test_children(void **state)
{
    (void)state;
    dfs_dirlist *l = dfs_dirlist_create("/a");
    assert_string_equal(dfs_dirlist_prefix(l), "/a/");
    /* path order, as ListFiles gives it */
    const char *paths[] = {"/a/b-x", "/a/b.txt", "/a/b/c", "/a/b/d/e", "/a/c", "/ab/x", "/b"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        assert_int_equal(dfs_dirlist_add(l, paths[i], false), DFS_OK);
    assert_int_equal(dfs_dirlist_add(l, "/a/empty", true), DFS_OK);    /* explicit */
    assert_int_equal(dfs_dirlist_add(l, "/a/b", true), DFS_OK);        /* explicit, also implied */
    assert_int_equal(dfs_dirlist_add(l, "/a/new.txt", false), DFS_OK); /* not yet committed */
    dfs_dirlist_finish(l);
    const char *want[] = {"b", "b-x", "b.txt", "c", "empty", "new.txt"};
    const bool dirs[] = {true, false, false, false, true, false};
    assert_int_equal(dfs_dirlist_count(l), 6);
    for (size_t i = 0; i < 6; i++) {
        bool d;
        assert_string_equal(dfs_dirlist_entry(l, i, &d), want[i]);
        assert_int_equal(d, dirs[i]);
    }
    dfs_dirlist_destroy(l);
}

static void test_root(void **state)
{
    (void)state;
    dfs_dirlist *l = dfs_dirlist_create("/");
    assert_string_equal(dfs_dirlist_prefix(l), "/");
    assert_int_equal(dfs_dirlist_add(l, "/x/y", false), DFS_OK);
    assert_int_equal(dfs_dirlist_add(l, "/z", false), DFS_OK);
    dfs_dirlist_finish(l);
    assert_int_equal(dfs_dirlist_count(l), 2);
    bool d;
    assert_string_equal(dfs_dirlist_entry(l, 0, &d), "x");
    assert_true(d);
    dfs_dirlist_destroy(l);
    l = dfs_dirlist_create("/empty");
    dfs_dirlist_finish(l);
    assert_int_equal(dfs_dirlist_count(l), 0);
    dfs_dirlist_destroy(l);
    dfs_dirlist_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_children),
        cmocka_unit_test(test_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
