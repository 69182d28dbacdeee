/* Tests of the seedable RNG: replay, range and rough uniformity. */
#include "common/rng.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void test_same_seed_same_sequence(void **state)
{
    (void)state;
    dfs_rng a, b, c;
    dfs_rng_seed(&a, 42);
    dfs_rng_seed(&b, 42);
    dfs_rng_seed(&c, 43);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = dfs_rng_next(&a);
        assert_int_equal(x, dfs_rng_next(&b));
        differ += x != dfs_rng_next(&c);
    }
    assert_true(differ > 90);
}

static void test_below_is_in_range_and_uniform(void **state)
{
    (void)state;
    dfs_rng r;
    dfs_rng_seed(&r, 7);
    int counts[10] = {0};
    const int draws = 100000;
    for (int i = 0; i < draws; i++) {
        uint64_t x = dfs_rng_below(&r, 10);
        assert_true(x < 10);
        counts[x]++;
    }
    /* Each bucket expects 10000 with sd ~95; 5 sd is a failure that cannot happen by chance. */
    for (int i = 0; i < 10; i++)
        assert_in_range(counts[i], 10000 - 500, 10000 + 500);
    for (int i = 0; i < 1000; i++) {
        double d = dfs_rng_double(&r);
        assert_true(d >= 0 && d < 1);
    }
}

static void test_shuffle_is_a_permutation(void **state)
{
    (void)state;
    dfs_rng r;
    dfs_rng_seed(&r, 1);
    uint32_t v[50];
    for (uint32_t i = 0; i < 50; i++)
        v[i] = i;
    dfs_rng_shuffle_u32(&r, v, 50);
    int seen[50] = {0}, moved = 0;
    for (uint32_t i = 0; i < 50; i++) {
        seen[v[i]]++;
        moved += v[i] != i;
    }
    for (int i = 0; i < 50; i++)
        assert_int_equal(seen[i], 1);
    assert_true(moved > 25);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_sequence),
        cmocka_unit_test(test_below_is_in_range_and_uniform),
        cmocka_unit_test(test_shuffle_is_a_permutation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
