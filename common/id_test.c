/* Tests of identifiers. */
#include "common/id.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void test_random_ids_are_valid_and_distinct(void **state)
{
    (void)state;
    char a[DFS_ID_HEX + 1], b[DFS_ID_HEX + 1];
    assert_int_equal(dfs_id_random(a), 0);
    assert_int_equal(dfs_id_random(b), 0);
    assert_true(dfs_id_valid(a));
    assert_true(dfs_id_valid(b));
    assert_string_not_equal(a, b);
}

static void test_validation_rejects_paths_and_case(void **state)
{
    (void)state;
    assert_false(dfs_id_valid(""));
    assert_false(dfs_id_valid(NULL));
    assert_false(dfs_id_valid("0123456789abcdef0123456789abcde"));   /* 31 */
    assert_false(dfs_id_valid("0123456789abcdef0123456789abcdef0")); /* 33 */
    assert_false(dfs_id_valid("0123456789ABCDEF0123456789abcdef"));
    assert_true(dfs_id_valid("0123456789abcdef0123456789abcdef"));
    assert_false(dfs_fragment_id_valid("../../../../etc/passwd00000000000000000000"));
    assert_false(dfs_fragment_id_valid("0123456789abcdef0123456789abcdef/0000000"));
    assert_true(dfs_fragment_id_valid("0123456789abcdef0123456789abcdef0000000a"));
}

static void test_fragment_id(void **state)
{
    (void)state;
    char out[DFS_FRAGMENT_ID_HEX + 1];
    dfs_fragment_id("0123456789abcdef0123456789abcdef", 26, out);
    assert_string_equal(out, "0123456789abcdef0123456789abcdef0000001a");
    assert_true(dfs_fragment_id_valid(out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_ids_are_valid_and_distinct),
        cmocka_unit_test(test_validation_rejects_paths_and_case),
        cmocka_unit_test(test_fragment_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
