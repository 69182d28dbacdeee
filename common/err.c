/* Status codes and error messages. */
#include "common/err.h"

#include "common/utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *dfs_strerror(int code)
{
    switch (code) {
    case DFS_OK:
        return "ok";
    case DFS_EINVAL:
        return "invalid argument";
    case DFS_ENOTFOUND:
        return "not found";
    case DFS_EEXIST:
        return "already exists";
    case DFS_EUNAVAIL:
        return "unavailable";
    case DFS_EDATALOSS:
        return "data loss";
    case DFS_ENOSPC:
        return "no space";
    case DFS_EUNAUTH:
        return "unauthenticated";
    case DFS_EPERM:
        return "permission denied";
    case DFS_EIO:
        return "I/O error";
    case DFS_ENOMEM:
        return "out of memory";
    case DFS_ETIMEDOUT:
        return "timed out";
    case DFS_ECANCELED:
        return "canceled";
    case DFS_EPRECOND:
        return "failed precondition";
    case DFS_EINTERNAL:
        return "internal error";
    case DFS_ERANGE:
        return "out of range";
    case DFS_EABORTED:
        return "aborted";
    default:
        return "unknown error";
    }
}

const char *dfs_quote(const char *s, struct dfs_quote *q)
{
    /* A few bytes past the limit: enough to see whether a character crosses it. */
    size_t len = s != NULL ? strnlen(s, DFS_QUOTE_MAX + 4) : 0;
    size_t lim = len > DFS_QUOTE_MAX ? DFS_QUOTE_MAX : len;
    size_t i = 0, n = 0;
    while (i < lim) {
        unsigned char c = (unsigned char)s[i];
        size_t take = c < 0x80 ? 1 : dfs_utf8_char_len(s + i, len - i);
        if (take == 0 || c < 0x20 || c == 0x7f) {
            q->s[n++] = '?';
            i++;
            continue;
        }
        if (i + take > lim)
            break; /* a character the cut would split: "..." stands for it */
        memcpy(q->s + n, s + i, take);
        n += take;
        i += take;
    }
    if (len > DFS_QUOTE_MAX) {
        memcpy(q->s + n, "...", 3);
        n += 3;
    }
    q->s[n] = '\0';
    return q->s;
}

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        return NULL;
    return s;
}

int dfs_seterr(char **errmsg, int code, const char *fmt, ...)
{
    if (errmsg == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    free(*errmsg);
    *errmsg = s;
    return code;
}

int dfs_seterr_errno(char **errmsg, int code, int errnum, const char *fmt, ...)
{
    if (errmsg == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    char *head = vformat(fmt, ap);
    va_end(ap);
    char *s = NULL;
    if (head != NULL && asprintf(&s, "%s: %s", head, strerror(errnum)) < 0)
        s = NULL;
    free(head);
    free(*errmsg);
    *errmsg = s;
    return code;
}

int dfs_prefixerr(char **errmsg, int code, const char *fmt, ...)
{
    if (errmsg == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    char *head = vformat(fmt, ap);
    va_end(ap);
    char *s = head;
    if (head != NULL && *errmsg != NULL) {
        if (asprintf(&s, "%s: %s", head, *errmsg) < 0)
            s = NULL;
        free(head);
    }
    free(*errmsg);
    *errmsg = s;
    return code;
}

int dfs_err_from_errno(int errnum)
{
    switch (errnum) {
    case ENOENT:
        return DFS_ENOTFOUND;
    case EEXIST:
        return DFS_EEXIST;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return DFS_ENOSPC;
    case ENOMEM:
        return DFS_ENOMEM;
    case EACCES:
    case EPERM:
    case EROFS:
        return DFS_EPERM;
    case EINVAL:
    case ENAMETOOLONG:
        return DFS_EINVAL;
    case ETIMEDOUT:
        return DFS_ETIMEDOUT;
    case ECONNREFUSED:
    case ECONNRESET:
    case EHOSTUNREACH:
    case ENETUNREACH:
        return DFS_EUNAVAIL;
    default:
        return DFS_EIO;
    }
}
