/* Tests of the clock helpers: units, monotonicity, and agreement with the system clocks. */
#include "common/clock.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void test_monotonic(void **state)
{
    (void)state;
    int64_t a = dfs_clock_mono_ns();
    struct timespec ms5 = {0, 5 * 1000000};
    nanosleep(&ms5, NULL);
    int64_t b = dfs_clock_mono_ns();
    assert_true(b - a >= 5 * 1000000);
    assert_true(b - a < 5 * 1000000000ll); /* nanoseconds, not some other unit */
    double s = dfs_clock_mono_s();
    assert_true(s * 1e9 >= (double)b - 1e3);
    assert_true(s * 1e9 < (double)b + 5e9);
    for (int i = 0; i < 1000; i++) {
        int64_t c = dfs_clock_mono_ns();
        assert_true(c >= b);
        b = c;
    }
}

static void test_wall(void **state)
{
    (void)state;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t want = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t got = dfs_clock_wall_ms();
    assert_true(got >= want);
    assert_true(got - want < 5000);
    assert_true(got > 1600000000000ll); /* milliseconds since the epoch: after 2020 */
}

static void test_abstime(void **state)
{
    (void)state;
    int64_t cases[] = {0, 1, 999, 1000, 1001, 2500, 86400 * 1000ll};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t before = dfs_clock_wall_ms();
        struct timespec t = dfs_clock_abstime(cases[i]);
        int64_t after = dfs_clock_wall_ms();
        assert_true(t.tv_nsec >= 0 && t.tv_nsec < 1000000000);
        int64_t at = (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
        assert_true(at >= before + cases[i]);
        assert_true(at <= after + cases[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monotonic),
        cmocka_unit_test(test_wall),
        cmocka_unit_test(test_abstime),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
