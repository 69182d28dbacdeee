/* Tests of the loop's timers (completions are covered by rpc_test). */
#include "services/rpc/loop.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

struct probe {
    dfs_rpc_timer timer;
    int order;
    int *counter;
};

static void probe_fire(dfs_rpc_timer *t)
{
    struct probe *p = (struct probe *)t;
    p->order = ++*p->counter;
}

static void test_timers_fire_in_deadline_order(void **state)
{
    (void)state;
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    int counter = 0;
    struct probe p[5];
    int64_t now = dfs_rpc_now_ns();
    int64_t offsets_ms[5] = {50, 10, 40, 20, 30};
    for (int i = 0; i < 5; i++) {
        p[i].counter = &counter;
        p[i].order = 0;
        dfs_rpc_timer_init(&p[i].timer, probe_fire);
        dfs_rpc_loop_timer_arm(loop, &p[i].timer, now + offsets_ms[i] * 1000000);
    }
    /* Cancel one, move another earlier. */
    dfs_rpc_loop_timer_cancel(loop, &p[2].timer);
    dfs_rpc_loop_timer_arm(loop, &p[0].timer, now + 5 * 1000000);
    while (counter < 4)
        dfs_rpc_loop_run_once(loop, 1000);
    assert_true(dfs_rpc_now_ns() - now >= 30 * 1000000);
    assert_int_equal(p[0].order, 1);
    assert_int_equal(p[1].order, 2);
    assert_int_equal(p[3].order, 3);
    assert_int_equal(p[4].order, 4);
    assert_int_equal(p[2].order, 0);
    dfs_rpc_loop_destroy(loop);
}

static void test_run_once_times_out(void **state)
{
    (void)state;
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    int64_t t0 = dfs_rpc_now_ns();
    assert_true(dfs_rpc_loop_run_once(loop, 30));
    int64_t took = dfs_rpc_now_ns() - t0;
    assert_true(took >= 25 * 1000000 && took < 2000 * 1000000ll);
    dfs_rpc_loop_shutdown(loop);
    assert_false(dfs_rpc_loop_run_once(loop, 1000));
    dfs_rpc_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_deadline_order),
        cmocka_unit_test(test_run_once_times_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
