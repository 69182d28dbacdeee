/* The time formats S3 speaks: HTTP dates, ISO 8601 basic (x-amz-date) and extended (XML). */
#include "gateway/s3/s3time.h"

#include "common/err.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const char *const wdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const wdays_long[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                         "Thursday", "Friday", "Saturday"};
static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static bool leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool valid(int64_t y, unsigned mo, unsigned d, unsigned h, unsigned mi, unsigned s)
{
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 0 || y > 9999 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60)
        return false;
    unsigned md = mdays[mo - 1] + (mo == 2 && leap(y));
    return d <= md;
}

static int64_t to_time(int64_t y, unsigned mo, unsigned d, unsigned h, unsigned mi, unsigned s)
{
    /* A leap second (:60) is read as the next second's start. */
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
}

/* Exactly n decimal digits at s into *v. */
static bool digits(const char *s, int n, unsigned *v)
{
    unsigned x = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (unsigned)(s[i] - '0');
    }
    *v = x;
    return true;
}

static int month_of(const char *s)
{
    for (int i = 0; i < 12; i++) {
        if (strncmp(s, months[i], 3) == 0)
            return i + 1;
    }
    return 0;
}

/* "HH:MM:SS" */
static bool clock_of(const char *s, unsigned *h, unsigned *mi, unsigned *sec)
{
    return digits(s, 2, h) && s[2] == ':' && digits(s + 3, 2, mi) && s[5] == ':' &&
           digits(s + 6, 2, sec);
}

int dfs_s3time_parse_http(const char *s, int64_t now, int64_t *t)
{
    unsigned d, y4, h, mi, sec, y2;
    int mo;
    size_t n = strlen(s);
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (n == 29 && s[3] == ',' && s[4] == ' ' && s[7] == ' ' && s[11] == ' ' && s[16] == ' ' &&
        s[25] == ' ' && strcmp(s + 26, "GMT") == 0) {
        bool wd = false;
        for (int i = 0; i < 7; i++)
            wd = wd || strncmp(s, wdays[i], 3) == 0;
        mo = month_of(s + 8);
        if (wd && mo && digits(s + 5, 2, &d) && digits(s + 12, 4, &y4) &&
            clock_of(s + 17, &h, &mi, &sec) && valid(y4, (unsigned)mo, d, h, mi, sec)) {
            *t = to_time(y4, (unsigned)mo, d, h, mi, sec);
            return DFS_OK;
        }
        return DFS_EINVAL;
    }
    /* asctime: "Sun Nov  6 08:49:37 1994" (the day padded with a space) */
    if (n == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[19] == ' ') {
        bool wd = false;
        for (int i = 0; i < 7; i++)
            wd = wd || strncmp(s, wdays[i], 3) == 0;
        mo = month_of(s + 4);
        char dd[2] = {s[8] == ' ' ? '0' : s[8], s[9]};
        if (wd && mo && digits(dd, 2, &d) && clock_of(s + 11, &h, &mi, &sec) &&
            digits(s + 20, 4, &y4) && valid(y4, (unsigned)mo, d, h, mi, sec)) {
            *t = to_time(y4, (unsigned)mo, d, h, mi, sec);
            return DFS_OK;
        }
        return DFS_EINVAL;
    }
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    for (int i = 0; i < 7; i++) {
        size_t wl = strlen(wdays_long[i]);
        if (n != wl + 24 || strncmp(s, wdays_long[i], wl) != 0)
            continue;
        const char *r = s + wl;
        if (r[0] != ',' || r[1] != ' ' || r[4] != '-' || r[8] != '-' || r[11] != ' ' ||
            r[20] != ' ' || strcmp(r + 21, "GMT") != 0)
            return DFS_EINVAL;
        mo = month_of(r + 5);
        if (!mo || !digits(r + 2, 2, &d) || !digits(r + 9, 2, &y2) ||
            !clock_of(r + 12, &h, &mi, &sec))
            return DFS_EINVAL;
        /* RFC 9110: a two-digit year that looks more than 50 years ahead is in the past. */
        int64_t ny;
        unsigned nm, nd;
        civil_from_days(now >= 0 ? now / 86400 : 0, &ny, &nm, &nd);
        int64_t y = ny - ny % 100 + y2;
        if (y > ny + 50)
            y -= 100;
        if (!valid(y, (unsigned)mo, d, h, mi, sec))
            return DFS_EINVAL;
        *t = to_time(y, (unsigned)mo, d, h, mi, sec);
        return DFS_OK;
    }
    return DFS_EINVAL;
}

static void split(int64_t t, int64_t *y, unsigned *mo, unsigned *d, unsigned *h, unsigned *mi,
                  unsigned *s, int *wday)
{
    int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t rem = t - days * 86400;
    civil_from_days(days, y, mo, d);
    *h = (unsigned)(rem / 3600);
    *mi = (unsigned)(rem / 60 % 60);
    *s = (unsigned)(rem % 60);
    int64_t w = (days + 4) % 7; /* 1970-01-01 was a Thursday */
    *wday = (int)(w < 0 ? w + 7 : w);
}

/* Years outside 0..9999 do not fit the fixed-width forms: clamp to their ends. */
static int64_t clamp(int64_t t)
{
    const int64_t lo = -62167219200; /* 0000-01-01T00:00:00Z */
    const int64_t hi = 253402300799; /* 9999-12-31T23:59:59Z */
    return t < lo ? lo : t > hi ? hi : t;
}

void dfs_s3time_format_http(int64_t t, char out[DFS_S3TIME_HTTP_LEN + 1])
{
    int64_t y;
    unsigned mo, d, h, mi, s;
    int wd;
    split(clamp(t), &y, &mo, &d, &h, &mi, &s, &wd);
    snprintf(out, DFS_S3TIME_HTTP_LEN + 1, "%s, %02u %s %04u %02u:%02u:%02u GMT", wdays[wd], d,
             months[mo - 1], (unsigned)y, h, mi, s);
}

int dfs_s3time_parse_amz(const char *s, int64_t *t)
{
    unsigned y, mo, d, h, mi, sec;
    if (strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z' || !digits(s, 4, &y) ||
        !digits(s + 4, 2, &mo) || !digits(s + 6, 2, &d) || !digits(s + 9, 2, &h) ||
        !digits(s + 11, 2, &mi) || !digits(s + 13, 2, &sec) || !valid(y, mo, d, h, mi, sec))
        return DFS_EINVAL;
    *t = to_time(y, mo, d, h, mi, sec);
    return DFS_OK;
}

void dfs_s3time_format_amz(int64_t t, char out[DFS_S3TIME_AMZ_LEN + 1])
{
    int64_t y;
    unsigned mo, d, h, mi, s;
    int wd;
    split(clamp(t), &y, &mo, &d, &h, &mi, &s, &wd);
    snprintf(out, DFS_S3TIME_AMZ_LEN + 1, "%04u%02u%02uT%02u%02u%02uZ", (unsigned)y, mo, d, h, mi,
             s);
}

void dfs_s3time_format_iso_ms(int64_t t_ms, char out[DFS_S3TIME_ISO_LEN + 1])
{
    const int64_t lo = -62167219200000; /* 0000-01-01T00:00:00.000Z */
    const int64_t hi = 253402300799999; /* 9999-12-31T23:59:59.999Z */
    t_ms = t_ms < lo ? lo : t_ms > hi ? hi : t_ms;
    int64_t secs = t_ms >= 0 ? t_ms / 1000 : (t_ms - 999) / 1000;
    unsigned ms = (unsigned)(t_ms - secs * 1000);
    int64_t y;
    unsigned mo, d, h, mi, s;
    int wd;
    split(secs, &y, &mo, &d, &h, &mi, &s, &wd);
    snprintf(out, DFS_S3TIME_ISO_LEN + 1, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)y, mo, d,
             h, mi, s, ms);
}
