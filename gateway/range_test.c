/* Tests for HTTP Range parsing. */
#include "gateway/range.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static enum dfs_gw_range parse(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
    *off = *len = 12345;
    return dfs_gw_range_parse(h, size, off, len);
}

static void ranges_that_are_satisfied(void **state)
{
    (void)state;
    uint64_t off, len;
    assert_int_equal(parse("bytes=0-0", 10, &off, &len), DFS_GW_RANGE_OK);
    assert_int_equal(off, 0);
    assert_int_equal(len, 1);
    assert_int_equal(parse("bytes=2-5", 10, &off, &len), DFS_GW_RANGE_OK);
    assert_int_equal(off, 2);
    assert_int_equal(len, 4);
    /* The end is capped at the file's last byte. */
    assert_int_equal(parse("bytes=5-100", 10, &off, &len), DFS_GW_RANGE_OK);
    assert_int_equal(off, 5);
    assert_int_equal(len, 5);
    assert_int_equal(parse("bytes=7-", 10, &off, &len), DFS_GW_RANGE_OK);
    assert_int_equal(off, 7);
    assert_int_equal(len, 3);
    /* Suffixes: the last N bytes, all of a shorter file. */
    assert_int_equal(parse("bytes=-3", 10, &off, &len), DFS_GW_RANGE_OK);
    assert_int_equal(off, 7);
    assert_int_equal(len, 3);
    assert_int_equal(parse("bytes=-30", 10, &off, &len), DFS_GW_RANGE_OK);
    assert_int_equal(off, 0);
    assert_int_equal(len, 10);
    /* Blanks and the unit's case are tolerated. */
    assert_int_equal(parse(" Bytes = 1-2 ", 10, &off, &len), DFS_GW_RANGE_OK);
    assert_int_equal(off, 1);
    assert_int_equal(len, 2);
    /* Large files. */
    assert_int_equal(parse("bytes=10737418240-", 10737418241ull, &off, &len), DFS_GW_RANGE_OK);
    assert_int_equal(off, 10737418240ull);
    assert_int_equal(len, 1);
}

static void ranges_that_are_unsatisfiable(void **state)
{
    (void)state;
    uint64_t off, len;
    assert_int_equal(parse("bytes=10-", 10, &off, &len), DFS_GW_RANGE_UNSATISFIABLE);
    assert_int_equal(parse("bytes=10-20", 10, &off, &len), DFS_GW_RANGE_UNSATISFIABLE);
    assert_int_equal(parse("bytes=-0", 10, &off, &len), DFS_GW_RANGE_UNSATISFIABLE);
    assert_int_equal(parse("bytes=0-0", 0, &off, &len), DFS_GW_RANGE_UNSATISFIABLE);
    assert_int_equal(parse("bytes=-5", 0, &off, &len), DFS_GW_RANGE_UNSATISFIABLE);
    assert_int_equal(off, 12345); /* untouched */
}

static void headers_that_are_ignored(void **state)
{
    (void)state;
    uint64_t off, len;
    const char *ignored[] = {
        NULL,
        "",
        "bytes",
        "bytes=",
        "bytes=-",
        "items=0-1",
        "bytes=5-2",
        "bytes=0-1,3-4",
        "bytes=a-b",
        "bytes=1-2x",
        "bytes=--1",
        "bytes 0-1",
        "bytes=+1-2",
        "bytes=1--2",
        "bytes=99999999999999999999999-", /* overflow */
    };
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
        assert_int_equal(parse(ignored[i], 10, &off, &len), DFS_GW_RANGE_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ranges_that_are_satisfied),
        cmocka_unit_test(ranges_that_are_unsatisfiable),
        cmocka_unit_test(headers_that_are_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
