/* UTF-8 well-formedness. */
#include "common/utf8.h"

/*
 * Table 3-7 of the Unicode standard: the well-formed byte sequences. The lead byte fixes the
 * length and the range of the second byte; later bytes are always 80..BF.
 */
size_t dfs_utf8_char_len(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    if (len == 0)
        return 0;
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong below U+0800 */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong below U+10000 */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0; /* 80..C1 (continuation or overlong lead), F5..FF */
    }
    if (len < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k < n; k++)
        if (p[k] < 0x80 || p[k] > 0xbf)
            return 0;
    return n;
}

bool dfs_utf8_valid(const char *s, size_t len, size_t *bad_at)
{
    size_t i = 0;
    while (i < len) {
        size_t n = dfs_utf8_char_len(s + i, len - i);
        if (n == 0) {
            if (bad_at != NULL)
                *bad_at = i;
            return false;
        }
        i += n;
    }
    return true;
}
