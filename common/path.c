/* Remote path rules. */
#include "common/path.h"

#include "common/err.h"
#include "common/utf8.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int canon(const char *in, bool prefix, char **out, char **errmsg)
{
    if (in == NULL || (!prefix && in[0] == '\0'))
        return dfs_seterr(errmsg, DFS_EINVAL, "empty path");
    size_t inlen = strlen(in);
    if (inlen > 4 * DFS_PATH_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "path longer than %d bytes", DFS_PATH_MAX);
    /* Paths travel in proto3 strings (UTF-8 by definition) and are shown to people. */
    size_t bad = 0;
    if (!dfs_utf8_valid(in, inlen, &bad))
        return dfs_seterr(errmsg, DFS_EINVAL, "path is not valid UTF-8 (byte %zu)", bad);
    /* The canonical form is never longer than the input plus a leading '/'. */
    char *buf = malloc(inlen + 2);
    if (buf == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    size_t len = 0;
    buf[len++] = '/';
    const char *p = in;
    while (*p != '\0') {
        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
        const char *start = p;
        while (*p != '\0' && *p != '/') {
            unsigned char c = (unsigned char)*p;
            if (c < 0x20 || c == 0x7f) {
                free(buf);
                return dfs_seterr(errmsg, DFS_EINVAL,
                                  "path contains a control character (byte 0x%02x)", c);
            }
            p++;
        }
        size_t n = (size_t)(p - start);
        if ((n == 1 && start[0] == '.') || (n == 2 && start[0] == '.' && start[1] == '.')) {
            free(buf);
            return dfs_seterr(errmsg, DFS_EINVAL, "path has a '%.*s' component", (int)n, start);
        }
        if (n > DFS_NAME_MAX) {
            free(buf);
            return dfs_seterr(errmsg, DFS_EINVAL, "path component longer than %d bytes",
                              DFS_NAME_MAX);
        }
        if (len > 1)
            buf[len++] = '/';
        memcpy(buf + len, start, n);
        len += n;
    }
    bool trailing = inlen > 0 && in[inlen - 1] == '/';
    if (!prefix && len == 1) {
        free(buf);
        return dfs_seterr(errmsg, DFS_EINVAL, "path '%s' names no file",
                          dfs_quote(in, &(struct dfs_quote){{0}}));
    }
    if (!prefix && trailing) {
        free(buf);
        return dfs_seterr(errmsg, DFS_EINVAL, "path '%s' ends with '/' (a directory, not a file)",
                          dfs_quote(in, &(struct dfs_quote){{0}}));
    }
    if (prefix && trailing && len > 1)
        buf[len++] = '/';
    buf[len] = '\0';
    if (len > DFS_PATH_MAX) {
        free(buf);
        return dfs_seterr(errmsg, DFS_EINVAL, "path longer than %d bytes", DFS_PATH_MAX);
    }
    *out = buf;
    return DFS_OK;
}

int dfs_path_canon(const char *in, char **out, char **errmsg)
{
    return canon(in, false, out, errmsg);
}

int dfs_path_prefix_canon(const char *in, char **out, char **errmsg)
{
    return canon(in, true, out, errmsg);
}
