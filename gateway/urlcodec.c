/* Percent-decoding of request paths and query values (RFC 3986). */
#include "gateway/urlcodec.h"

#include "common/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int dfs_gw_percent_decode(const char *in, char **out, char **errmsg)
{
    size_t n = strlen(in);
    char *s = malloc(n + 1);
    if (s == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] != '%') {
            s[j++] = in[i];
            continue;
        }
        int hi = hexval(in[i + 1]); /* in[i + 1] exists: at worst the NUL */
        int lo = hi >= 0 ? hexval(in[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            free(s);
            return dfs_seterr(errmsg, DFS_EINVAL, "bad percent-encoding at byte %zu", i);
        }
        if (hi == 0 && lo == 0) {
            free(s);
            return dfs_seterr(errmsg, DFS_EINVAL, "%%00 (a NUL byte) is not allowed");
        }
        s[j++] = (char)(hi * 16 + lo);
        i += 2;
    }
    s[j] = '\0';
    *out = s;
    return DFS_OK;
}

char *dfs_gw_percent_encode_path(const char *in)
{
    size_t n = strlen(in);
    char *s = malloc(3 * n + 1);
    if (s == NULL)
        return NULL;
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
            s[j++] = (char)c;
        } else {
            s[j++] = '%';
            s[j++] = hex[c >> 4];
            s[j++] = hex[c & 15];
        }
    }
    s[j] = '\0';
    return s;
}
