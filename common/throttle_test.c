/* Tests of the token bucket, on a simulated clock. */
#include "common/throttle.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define S 1000000000ll

/* Send `total` bytes in `msg`-byte messages as fast as the bucket allows; return the end time. */
static int64_t drain(dfs_bucket *b, uint64_t total, uint64_t msg, int64_t t, uint64_t *sent_by_2s)
{
    uint64_t sent = 0;
    while (sent < total) {
        int64_t w = dfs_bucket_take(b, msg, t);
        if (w > 0) {
            t += w;
            continue;
        }
        sent += msg;
        if (sent_by_2s != NULL && t <= 2 * S)
            *sent_by_2s = sent;
    }
    return t;
}

static void test_long_run_rate_is_exact(void **state)
{
    (void)state;
    uint64_t rates[] = {1000000, 10 << 20, 200000000};
    uint64_t msgs[] = {65536, 1 << 20};
    for (size_t r = 0; r < 3; r++)
        for (size_t m = 0; m < 2; m++) {
            dfs_bucket b;
            dfs_bucket_init(&b, rates[r], msgs[m], 0);
            uint64_t total = rates[r] * 10;
            int64_t end = drain(&b, total, msgs[m], 0, NULL);
            /* Whole messages; the first goes at once (the bucket starts full), each next one when
               its bytes have accrued. */
            uint64_t n = (total + msgs[m] - 1) / msgs[m];
            double expect = (double)((n - 1) * msgs[m]) / (double)rates[r];
            double got = (double)end / S;
            assert_true(got > expect * 0.999 && got < expect * 1.001 + 0.001);
        }
}

static void test_two_second_windows(void **state)
{
    (void)state;
    dfs_bucket b;
    dfs_bucket_init(&b, 5000000, 65536, 0);
    uint64_t by2 = 0;
    drain(&b, 20000000, 65536, 0, &by2);
    /* 2 s at 5 MB/s, plus the first message: within one message of 10 MB. */
    assert_true(by2 >= 10000000 && by2 <= 10000000 + 2 * 65536);
}

static void test_idle_saves_no_more_than_burst(void **state)
{
    (void)state;
    dfs_bucket b;
    dfs_bucket_init(&b, 1000, 100, 0);
    assert_int_equal(dfs_bucket_take(&b, 100, 0), 0);
    /* Ten idle seconds later: one burst, not 10,000 bytes. */
    assert_int_equal(dfs_bucket_take(&b, 100, 10 * S), 0);
    assert_true(dfs_bucket_take(&b, 100, 10 * S) > 0);
}

static void test_refund_and_unlimited(void **state)
{
    (void)state;
    dfs_bucket b;
    dfs_bucket_init(&b, 1000, 500, 0);
    assert_int_equal(dfs_bucket_take(&b, 500, 0), 0);
    int64_t w = dfs_bucket_take(&b, 500, 0);
    assert_true(w > S / 2 - 1000 && w <= S / 2 + 1000);
    dfs_bucket_refund(&b, 500);
    assert_int_equal(dfs_bucket_take(&b, 500, 0), 0);
    dfs_bucket u;
    dfs_bucket_init(&u, 0, 0, 0);
    assert_false(dfs_bucket_limited(&u));
    for (int i = 0; i < 1000; i++)
        assert_int_equal(dfs_bucket_take(&u, 1 << 20, 0), 0);
}

static void test_message_larger_than_burst(void **state)
{
    (void)state;
    dfs_bucket b;
    dfs_bucket_init(&b, 1000, 100, 0);
    assert_int_equal(dfs_bucket_take(&b, 1000, 0), 0); /* goes: the bucket was full */
    int64_t w = dfs_bucket_take(&b, 100, 0);           /* pays for the 900-byte overdraft */
    assert_true(w >= S - 1000 && w <= S + 1000);
}

static void test_charge_paces_a_receiver(void **state)
{
    (void)state;
    dfs_bucket b;
    dfs_bucket_init(&b, 1000000, 65536, 0);
    /* A receiver consuming 1 MiB pieces at 1 MB/s: each wait covers the debt of the last piece. */
    int64_t t = 0;
    for (int i = 0; i < 20; i++)
        t += dfs_bucket_charge(&b, 1 << 20, t);
    double expect = (20.0 * (1 << 20) - 65536) / 1e6;
    assert_true((double)t / S > expect - 0.001 && (double)t / S < expect + 0.001);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_run_rate_is_exact),
        cmocka_unit_test(test_two_second_windows),
        cmocka_unit_test(test_idle_saves_no_more_than_burst),
        cmocka_unit_test(test_refund_and_unlimited),
        cmocka_unit_test(test_message_larger_than_burst),
        cmocka_unit_test(test_charge_paces_a_receiver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
