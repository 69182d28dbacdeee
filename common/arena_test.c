/* Tests of the arena allocator. */
#include "common/arena.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_allocations_are_zeroed_aligned_and_distinct(void **state)
{
    (void)state;
    dfs_arena a = {0};
    unsigned char *prev = NULL;
    for (int i = 1; i < 2000; i++) {
        unsigned char *p = dfs_arena_alloc(&a, (size_t)(i % 97) + 1);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % _Alignof(max_align_t), 0);
        for (int j = 0; j < i % 97 + 1; j++)
            assert_int_equal(p[j], 0);
        memset(p, 0xab, (size_t)(i % 97) + 1);
        assert_true(p != prev);
        prev = p;
    }
    /* A block bigger than the default, then small ones again. */
    char *big = dfs_arena_alloc(&a, 100000);
    memset(big, 1, 100000);
    char *s = dfs_arena_strdup(&a, "hello");
    assert_string_equal(s, "hello");
    assert_null(dfs_arena_strdup(&a, NULL));
    assert_null(dfs_arena_calloc(&a, SIZE_MAX / 2, 4));
    dfs_arena_free(&a);
    assert_null(a.head);
    /* Reusable after free. */
    assert_non_null(dfs_arena_alloc(&a, 8));
    dfs_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocations_are_zeroed_aligned_and_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
