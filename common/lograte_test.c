/* Tests of the log-line limiter: one line per interval, the dropped count, threads sharing one. */
#include "common/lograte.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void test_one_line_per_interval_with_the_count(void **state)
{
    (void)state;
    struct dfs_lograte r;
    dfs_lograte_init(&r, 1000);
    uint64_t dropped = 99;
    assert_true(dfs_lograte_take(&r, 5000, &dropped));
    assert_int_equal(dropped, 0);
    for (int i = 0; i < 7; i++)
        assert_false(dfs_lograte_take(&r, 5000 + i * 100, &dropped));
    assert_int_equal(dropped, 0); /* left alone while refused */
    assert_true(dfs_lograte_take(&r, 6000, &dropped));
    assert_int_equal(dropped, 7);
    assert_false(dfs_lograte_take(&r, 6999, &dropped));
    assert_true(dfs_lograte_take(&r, 9000, &dropped));
    assert_int_equal(dropped, 1);
}

static void test_no_interval_logs_everything(void **state)
{
    (void)state;
    struct dfs_lograte r = {0};
    uint64_t dropped = 5;
    for (int i = 0; i < 3; i++) {
        assert_true(dfs_lograte_take(&r, 10, &dropped));
        assert_int_equal(dropped, 0);
    }
    dfs_lograte_init(&r, -4); /* a negative interval is none */
    assert_true(dfs_lograte_take(&r, 10, &dropped));
    assert_true(dfs_lograte_take(&r, 10, &dropped));
}

struct racer {
    struct dfs_lograte *r;
    int taken;
};

static void *race(void *arg)
{
    struct racer *x = arg;
    for (int i = 0; i < 10000; i++) {
        uint64_t d = 0;
        if (dfs_lograte_take(x->r, 100, &d))
            x->taken++;
    }
    return NULL;
}

/* Threads sharing one limiter within one interval: exactly one line; every other event counted. */
static void test_threads_share_one_line(void **state)
{
    (void)state;
    struct dfs_lograte r;
    dfs_lograte_init(&r, 1000);
    struct racer x[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        x[i] = (struct racer){.r = &r};
        assert_int_equal(pthread_create(&t[i], NULL, race, &x[i]), 0);
    }
    int taken = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        taken += x[i].taken;
    }
    assert_int_equal(taken, 1);
    uint64_t dropped = 0;
    assert_true(dfs_lograte_take(&r, 1100, &dropped));
    assert_int_equal(dropped, 4 * 10000 - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_line_per_interval_with_the_count),
        cmocka_unit_test(test_no_interval_logs_everything),
        cmocka_unit_test(test_threads_share_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
