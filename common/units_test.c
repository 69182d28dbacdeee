/* Tests of size and rate parsing and formatting. */
#include "common/units.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static uint64_t size_of(const char *s)
{
    uint64_t v = 0;
    assert_int_equal(dfs_parse_size(s, &v, NULL), DFS_OK);
    return v;
}

static uint64_t rate_of(const char *s)
{
    uint64_t v = 0;
    assert_int_equal(dfs_parse_rate(s, &v, NULL), DFS_OK);
    return v;
}

static void test_sizes(void **state)
{
    (void)state;
    assert_int_equal(size_of("0"), 0);
    assert_int_equal(size_of("4096"), 4096);
    assert_int_equal(size_of("100K"), 102400);
    assert_int_equal(size_of("1M"), 1048576);
    assert_int_equal(size_of("1.5GiB"), 1610612736ull);
    assert_int_equal(size_of("10MB"), 10000000);
    assert_int_equal(size_of("100kB"), 100000);
    assert_int_equal(size_of("7B"), 7);
}

static void test_rates(void **state)
{
    (void)state;
    assert_int_equal(rate_of("500K"), 512000);
    assert_int_equal(rate_of("100M"), 104857600);
    assert_int_equal(rate_of("1G"), 1073741824ull);
    assert_int_equal(rate_of("100Mbit"), 12500000);
    assert_int_equal(rate_of("1Gbit"), 125000000);
    assert_int_equal(rate_of("64kbit/s"), 8000);
    assert_int_equal(rate_of("10MB/s"), 10000000);
}

static void test_bad_input(void **state)
{
    (void)state;
    const char *bad[] = {"", "-1", "abc", "10X", "1 M", "10Mbits/x", "0", "1e3", "99999999999T"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 42;
        char *msg = NULL;
        int rc = dfs_parse_rate(bad[i], &v, &msg);
        assert_int_equal(rc, DFS_EINVAL);
        assert_non_null(msg);
        assert_int_equal(v, 42);
        free(msg);
    }
    uint64_t v;
    assert_int_equal(dfs_parse_size("12Q", &v, NULL), DFS_EINVAL);
}

static void test_erasure_codes(void **state)
{
    (void)state;
    uint32_t k = 0, m = 0;
    assert_int_equal(dfs_parse_ec("4+2", 32, &k, &m), DFS_OK);
    assert_int_equal(k, 4);
    assert_int_equal(m, 2);
    assert_int_equal(dfs_parse_ec("31+1", 32, &k, &m), DFS_OK);
    assert_int_equal(k, 31);
    assert_int_equal(m, 1);
    /* Each refused, nothing set. A wrapping sum (4+4294967295 is 3 in 32 bits) and a minus sign
       that sscanf's %u would take are the cases a naive parse lets through. */
    static const char *const bad[] = {
        "",     "+",     "4",     "4+",           "+2",           "0+2",     "4+0",
        "31+2", "4+2 ",  " 4+2",  "4 2",          "4+-1",         "-4+2",    "4++2",
        "4+2+", "4.0+2", "0x4+2", "4+4294967295", "4294967300+1", "00004+2", "4+2\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        k = m = 99;
        assert_int_equal(dfs_parse_ec(bad[i], 32, &k, &m), DFS_EINVAL);
        assert_int_equal(k, 99);
        assert_int_equal(m, 99);
    }
    assert_int_equal(dfs_parse_ec(NULL, 32, &k, &m), DFS_EINVAL);
    assert_int_equal(dfs_parse_ec("0004+2", 32, &k, &m), DFS_OK); /* leading zeros, 4 digits */
}

static void test_formatting(void **state)
{
    (void)state;
    char buf[32];
    dfs_format_size(0, buf, sizeof buf);
    assert_string_equal(buf, "0 B");
    dfs_format_size(1023, buf, sizeof buf);
    assert_string_equal(buf, "1023 B");
    dfs_format_size(1536, buf, sizeof buf);
    assert_string_equal(buf, "1.50 KiB");
    dfs_format_size(100ull << 20, buf, sizeof buf);
    assert_string_equal(buf, "100 MiB");
    dfs_format_rate(10.0 * 1048576, buf, sizeof buf);
    assert_string_equal(buf, "10.0 MiB/s");
    /* A rate over no time: infinite or NaN, shown without undefined behaviour (found by
       fuzz/units). */
    dfs_format_rate(1.0 / 0.0, buf, sizeof buf);
    assert_string_equal(buf, "16.0 EiB/s");
    dfs_format_rate(0.0 / 0.0, buf, sizeof buf);
    assert_string_equal(buf, "0 B/s");
    dfs_format_rate(5.76613e+252, buf, sizeof buf);
    assert_string_equal(buf, "16.0 EiB/s");
    dfs_format_duration(185, buf, sizeof buf);
    assert_string_equal(buf, "3m05s");
    dfs_format_duration(-1, buf, sizeof buf);
    assert_string_equal(buf, "--");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),      cmocka_unit_test(test_rates),
        cmocka_unit_test(test_bad_input),  cmocka_unit_test(test_erasure_codes),
        cmocka_unit_test(test_formatting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
