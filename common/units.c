/* Sizes and rates as people type and read them. */
#include "common/units.h"

#include "common/err.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct suffix {
    const char *name;
    double mult;
};

static const struct suffix size_suffixes[] = {
    {"", 1},
    {"B", 1},
    {"K", 1024.0},
    {"k", 1024.0},
    {"KiB", 1024.0},
    {"M", 1048576.0},
    {"MiB", 1048576.0},
    {"G", 1073741824.0},
    {"GiB", 1073741824.0},
    {"T", 1099511627776.0},
    {"TiB", 1099511627776.0},
    {"KB", 1e3},
    {"kB", 1e3},
    {"MB", 1e6},
    {"GB", 1e9},
    {"TB", 1e12},
};

static const struct suffix bit_suffixes[] = {
    {"bit", 1}, {"kbit", 1e3}, {"Kbit", 1e3}, {"Mbit", 1e6}, {"Gbit", 1e9}, {"Tbit", 1e12},
};

/* Parse the leading unsigned decimal number (digits, optional fraction); returns chars used. */
static size_t parse_number(const char *s, double *out)
{
    size_t i = 0;
    double v = 0;
    bool digits = false;
    while (s[i] >= '0' && s[i] <= '9') {
        v = v * 10 + (s[i] - '0');
        i++;
        digits = true;
    }
    if (s[i] == '.') {
        i++;
        double scale = 0.1;
        while (s[i] >= '0' && s[i] <= '9') {
            v += (s[i] - '0') * scale;
            scale /= 10;
            i++;
            digits = true;
        }
    }
    if (!digits)
        return 0;
    *out = v;
    return i;
}

static int parse_with(const char *s, const struct suffix *tab, size_t ntab, const char *what,
                      double *out, char **errmsg)
{
    if (s == NULL || *s == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "empty %s", what);
    struct dfs_quote q; /* what the user wrote, quoted short */
    double v;
    size_t n = parse_number(s, &v);
    if (n == 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad %s '%s': expected a number like 100M", what,
                          dfs_quote(s, &q));
    for (size_t i = 0; i < ntab; i++) {
        if (strcmp(s + n, tab[i].name) == 0) {
            double r = v * tab[i].mult;
            if (r >= 9.2e18)
                return dfs_seterr(errmsg, DFS_EINVAL, "%s '%s' is too large", what,
                                  dfs_quote(s, &q));
            *out = r;
            return DFS_OK;
        }
    }
    struct dfs_quote u;
    return dfs_seterr(errmsg, DFS_EINVAL, "bad %s '%s': unknown unit '%s'", what, dfs_quote(s, &q),
                      dfs_quote(s + n, &u));
}

int dfs_parse_size(const char *s, uint64_t *out, char **errmsg)
{
    double v;
    int rc = parse_with(s, size_suffixes, sizeof size_suffixes / sizeof size_suffixes[0], "size",
                        &v, errmsg);
    if (rc != DFS_OK)
        return rc;
    *out = (uint64_t)llround(v);
    return DFS_OK;
}

int dfs_parse_rate(const char *s, uint64_t *bytes_per_sec, char **errmsg)
{
    if (s == NULL || *s == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "empty rate");
    char buf[64];
    size_t len = strlen(s);
    if (len >= sizeof buf)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad rate '%s'",
                          dfs_quote(s, &(struct dfs_quote){{0}}));
    memcpy(buf, s, len + 1);
    if (len > 2 && strcmp(buf + len - 2, "/s") == 0)
        buf[len - 2] = '\0';
    else if (len > 2 && strcmp(buf + len - 2, "ps") == 0 && strstr(buf, "bit") != NULL)
        buf[len - 2] = '\0'; /* "100Mbitps" */
    double v;
    int rc;
    if (strstr(buf, "bit") != NULL) {
        rc = parse_with(buf, bit_suffixes, sizeof bit_suffixes / sizeof bit_suffixes[0], "rate", &v,
                        errmsg);
        v /= 8;
    } else {
        rc = parse_with(buf, size_suffixes, sizeof size_suffixes / sizeof size_suffixes[0], "rate",
                        &v, errmsg);
    }
    if (rc != DFS_OK)
        return rc;
    if (v < 1)
        return dfs_seterr(errmsg, DFS_EINVAL, "rate '%s' is below 1 byte/s",
                          dfs_quote(s, &(struct dfs_quote){{0}}));
    *bytes_per_sec = (uint64_t)llround(v);
    return DFS_OK;
}

/* A decimal number of at most 4 digits (anything wider is above any width we take). */
static const char *small_number(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    size_t n = 0;
    for (; s[n] >= '0' && s[n] <= '9'; n++) {
        if (n == 4)
            return NULL;
        v = v * 10 + (uint32_t)(s[n] - '0');
    }
    if (n == 0)
        return NULL;
    *out = v;
    return s + n;
}

int dfs_parse_ec(const char *s, uint32_t max_width, uint32_t *k, uint32_t *m)
{
    uint32_t a = 0, b = 0;
    const char *p = s != NULL ? small_number(s, &a) : NULL;
    if (p == NULL || *p != '+' || (p = small_number(p + 1, &b)) == NULL || *p != '\0')
        return DFS_EINVAL;
    if (a < 1 || b < 1 || a + b > max_width)
        return DFS_EINVAL;
    *k = a;
    *m = b;
    return DFS_OK;
}

void dfs_format_size(uint64_t bytes, char *buf, size_t cap)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
        return;
    }
    double v = (double)bytes / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    if (v < 10)
        snprintf(buf, cap, "%.2f %s", v, units[u]);
    else if (v < 100)
        snprintf(buf, cap, "%.1f %s", v, units[u]);
    else
        snprintf(buf, cap, "%.0f %s", v, units[u]);
}

void dfs_format_rate(double bytes_per_sec, char *buf, size_t cap)
{
    char s[32];
    /* A rate over no time is infinite (or NaN): converting such a double, or one of 2^64 and
       more, to an integer is undefined, so clamp first. */
    uint64_t b = !(bytes_per_sec >= 0)                     ? 0
                 : bytes_per_sec >= 18446744073709551615.0 ? UINT64_MAX
                                                           : (uint64_t)bytes_per_sec;
    dfs_format_size(b, s, sizeof s);
    snprintf(buf, cap, "%s/s", s);
}

void dfs_format_duration(double seconds, char *buf, size_t cap)
{
    if (!(seconds >= 0) || seconds > 1e8) {
        snprintf(buf, cap, "--");
        return;
    }
    if (seconds < 10) {
        snprintf(buf, cap, "%.2f s", seconds);
    } else if (seconds < 60) {
        snprintf(buf, cap, "%.0f s", seconds);
    } else if (seconds < 3600) {
        long s = lround(seconds);
        snprintf(buf, cap, "%ldm%02lds", s / 60, s % 60);
    } else {
        long m = lround(seconds / 60);
        snprintf(buf, cap, "%ldh%02ldm", m / 60, m % 60);
    }
}
