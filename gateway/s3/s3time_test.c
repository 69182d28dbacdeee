/* Tests for HTTP dates, x-amz-date and the XML time form. */
#include "gateway/s3/s3time.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define T94 784111777 /* Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example) */

static void http_dates(void **state)
{
    (void)state;
    int64_t now = 1700000000, t = 0;
    assert_int_equal(dfs_s3time_parse_http("Sun, 06 Nov 1994 08:49:37 GMT", now, &t), DFS_OK);
    assert_int_equal(t, T94);
    assert_int_equal(dfs_s3time_parse_http("Sunday, 06-Nov-94 08:49:37 GMT", now, &t), DFS_OK);
    assert_int_equal(t, T94);
    assert_int_equal(dfs_s3time_parse_http("Sun Nov  6 08:49:37 1994", now, &t), DFS_OK);
    assert_int_equal(t, T94);
    assert_int_equal(dfs_s3time_parse_http("Thu, 01 Jan 1970 00:00:00 GMT", now, &t), DFS_OK);
    assert_int_equal(t, 0);
    assert_int_equal(dfs_s3time_parse_http("Tue, 29 Feb 2000 23:59:59 GMT", now, &t), DFS_OK);
    assert_int_equal(t, 951868799);
    /* RFC 850's two-digit years: not more than 50 years ahead of now (2023 here). */
    assert_int_equal(dfs_s3time_parse_http("Tuesday, 01-Jan-74 00:00:00 GMT", now, &t), DFS_OK);
    assert_int_equal(t, 126230400); /* 1974, as 2074 is more than 50 years ahead */
    assert_int_equal(dfs_s3time_parse_http("Wednesday, 01-Jan-70 00:00:00 GMT", now, &t), DFS_OK);
    assert_int_equal(t, 3155760000LL); /* 2070 */

    static const char *const bad[] = {
        "",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 29 Feb 1900 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 19a4 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sunday 06-Nov-94 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "1994-11-06T08:49:37Z",
        "784111777",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = 42;
        if (dfs_s3time_parse_http(bad[i], now, &t) != DFS_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(t, 42);
    }
}

static void formats(void **state)
{
    (void)state;
    char h[DFS_S3TIME_HTTP_LEN + 1], a[DFS_S3TIME_AMZ_LEN + 1], iso[DFS_S3TIME_ISO_LEN + 1];
    dfs_s3time_format_http(T94, h);
    assert_string_equal(h, "Sun, 06 Nov 1994 08:49:37 GMT");
    dfs_s3time_format_amz(T94, a);
    assert_string_equal(a, "19941106T084937Z");
    dfs_s3time_format_iso_ms((int64_t)T94 * 1000 + 5, iso);
    assert_string_equal(iso, "1994-11-06T08:49:37.005Z");
    dfs_s3time_format_iso_ms(-1, iso);
    assert_string_equal(iso, "1969-12-31T23:59:59.999Z");
    dfs_s3time_format_iso_ms(INT64_MAX, iso);
    assert_string_equal(iso, "9999-12-31T23:59:59.999Z");
    dfs_s3time_format_iso_ms(INT64_MIN, iso);
    assert_string_equal(iso, "0000-01-01T00:00:00.000Z");
    dfs_s3time_format_http(INT64_MAX, h);
    assert_string_equal(h, "Fri, 31 Dec 9999 23:59:59 GMT");

    int64_t t;
    assert_int_equal(dfs_s3time_parse_amz("20130524T000000Z", &t), DFS_OK);
    assert_int_equal(t, 1369353600);
    assert_int_equal(dfs_s3time_parse_amz("20130524T000000", &t), DFS_EINVAL);
    assert_int_equal(dfs_s3time_parse_amz("20130524 000000Z", &t), DFS_EINVAL);
    assert_int_equal(dfs_s3time_parse_amz("20131324T000000Z", &t), DFS_EINVAL);
    assert_int_equal(dfs_s3time_parse_amz("2013-05-24T00:00:00Z", &t), DFS_EINVAL);

    /* Every form round-trips, and agrees with the C library, over centuries. */
    for (int64_t x = -2208988800LL; x < 4102444800LL; x += 86400 * 37 + 3671) {
        int64_t back;
        dfs_s3time_format_http(x, h);
        assert_int_equal(dfs_s3time_parse_http(h, 1700000000, &back), DFS_OK);
        assert_int_equal(back, x);
        dfs_s3time_format_amz(x, a);
        assert_int_equal(dfs_s3time_parse_amz(a, &back), DFS_OK);
        assert_int_equal(back, x);
        time_t tt = (time_t)x;
        struct tm tm;
        gmtime_r(&tt, &tm);
        char want[40];
        strftime(want, sizeof want, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        assert_string_equal(h, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(http_dates),
        cmocka_unit_test(formats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
