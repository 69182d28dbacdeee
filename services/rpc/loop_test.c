/* Tests of the loop's timers and posts (completions are covered by rpc_test). */
#include "services/rpc/loop.h"

#include "common/clock.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
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
    int64_t now = dfs_clock_mono_ns();
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
    assert_true(dfs_clock_mono_ns() - now >= 30 * 1000000);
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
    int64_t t0 = dfs_clock_mono_ns();
    assert_true(dfs_rpc_loop_run_once(loop, 30));
    int64_t took = dfs_clock_mono_ns() - t0;
    assert_true(took >= 25 * 1000000 && took < 2000 * 1000000ll);
    dfs_rpc_loop_shutdown(loop);
    assert_false(dfs_rpc_loop_run_once(loop, 1000));
    dfs_rpc_loop_destroy(loop);
}

/* A post records the thread it ran on and how many came. */
struct posted {
    dfs_rpc_tag tag;
    pthread_t ran_on;
    atomic_int *count;
};

static void posted_done(dfs_rpc_tag *tag, bool ok)
{
    struct posted *p = (struct posted *)tag;
    assert_true(ok);
    p->ran_on = pthread_self();
    atomic_fetch_add(p->count, 1);
}

#define POSTERS 4
#define POSTS   50

struct poster {
    dfs_rpc_loop *loop;
    struct posted posts[POSTS];
};

static void *poster_main(void *arg)
{
    struct poster *ps = arg;
    for (int i = 0; i < POSTS; i++)
        assert_true(dfs_rpc_loop_post(ps->loop, &ps->posts[i].tag));
    return NULL;
}

static void test_posts_from_other_threads_run_on_the_loop(void **state)
{
    (void)state;
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    atomic_int count = 0;
    static struct poster ps[POSTERS];
    pthread_t th[POSTERS];
    for (int t = 0; t < POSTERS; t++) {
        ps[t].loop = loop;
        for (int i = 0; i < POSTS; i++)
            ps[t].posts[i] = (struct posted){.tag = {posted_done}, .count = &count};
        assert_int_equal(pthread_create(&th[t], NULL, poster_main, &ps[t]), 0);
    }
    int64_t until = dfs_clock_mono_ns() + 10 * 1000000000ll;
    while (atomic_load(&count) < POSTERS * POSTS && dfs_clock_mono_ns() < until)
        dfs_rpc_loop_run_once(loop, 100);
    assert_int_equal(atomic_load(&count), POSTERS * POSTS);
    for (int t = 0; t < POSTERS; t++) {
        pthread_join(th[t], NULL);
        for (int i = 0; i < POSTS; i++)
            assert_true(pthread_equal(ps[t].posts[i].ran_on, pthread_self()));
    }
    /* A post still in flight when the loop goes is delivered while it drains. */
    struct posted last = {.tag = {posted_done}, .count = &count};
    assert_true(dfs_rpc_loop_post(loop, &last.tag));
    dfs_rpc_loop_destroy(loop);
    assert_int_equal(atomic_load(&count), POSTERS * POSTS + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_posts_from_other_threads_run_on_the_loop),
        cmocka_unit_test(test_timers_fire_in_deadline_order),
        cmocka_unit_test(test_run_once_times_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
