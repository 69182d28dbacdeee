/* HTTP Range requests (RFC 9110, section 14): one byte range of a representation. */
#include "gateway/range.h"

#include <stdbool.h>
#include <string.h>

/* Parse decimal digits at *p into *v (no sign, no overflow); false when there are none. */
static bool digits(const char **p, uint64_t *v)
{
    const char *s = *p;
    uint64_t x = 0;
    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *p = s;
    *v = x;
    return true;
}

static const char *blanks(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

enum dfs_gw_range dfs_gw_range_parse(const char *header, uint64_t size, uint64_t *off,
                                     uint64_t *len)
{
    if (header == NULL)
        return DFS_GW_RANGE_NONE;
    const char *p = blanks(header);
    if (strncasecmp(p, "bytes", 5) != 0)
        return DFS_GW_RANGE_NONE;
    p = blanks(p + 5);
    if (*p != '=')
        return DFS_GW_RANGE_NONE;
    p = blanks(p + 1);
    uint64_t a = 0, b = 0;
    bool has_a = digits(&p, &a);
    if (*p != '-')
        return DFS_GW_RANGE_NONE;
    p++;
    bool has_b = digits(&p, &b);
    p = blanks(p);
    if (*p != '\0') /* several ranges, or trailing junk */
        return DFS_GW_RANGE_NONE;
    if (!has_a && !has_b)
        return DFS_GW_RANGE_NONE;
    if (has_a && has_b && b < a)
        return DFS_GW_RANGE_NONE; /* invalid: ignored, per the RFC */
    if (!has_a) {                 /* suffix: the last b bytes */
        if (b == 0 || size == 0)
            return DFS_GW_RANGE_UNSATISFIABLE;
        *len = b < size ? b : size;
        *off = size - *len;
        return DFS_GW_RANGE_OK;
    }
    if (a >= size)
        return DFS_GW_RANGE_UNSATISFIABLE;
    uint64_t last = has_b && b < size - 1 ? b : size - 1;
    *off = a;
    *len = last - a + 1;
    return DFS_GW_RANGE_OK;
}
