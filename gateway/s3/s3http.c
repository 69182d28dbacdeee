/* An HTTP request as the S3 modules see it: raw path and query, headers; S3's URI encoding. */
#include "gateway/s3/s3http.h"

#include "common/err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *dfs_s3http_header(const struct dfs_s3http_request *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    }
    return NULL;
}

size_t dfs_s3http_header_count(const struct dfs_s3http_request *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0)
            n++;
    }
    return n;
}

int dfs_s3http_header_once(const struct dfs_s3http_request *r, const char *name, const char **value,
                           struct dfs_s3err *err)
{
    if (dfs_s3http_header_count(r, name) > 1)
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT, "header %s given more than once",
                             name);
    *value = dfs_s3http_header(r, name);
    return DFS_OK;
}

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

int dfs_s3http_decode(const char *s, size_t n, bool plus_is_space, char **out, size_t *outlen,
                      char **errmsg)
{
    char *d = malloc(n + 1);
    if (d == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 1 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(d);
                return dfs_seterr(errmsg, DFS_EINVAL, "bad percent-encoding at byte %zu", i);
            }
            if (hi == 0 && lo == 0) {
                free(d);
                return dfs_seterr(errmsg, DFS_EINVAL, "%%00 (a NUL byte) is not allowed");
            }
            d[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '\0') {
            free(d);
            return dfs_seterr(errmsg, DFS_EINVAL, "a NUL byte is not allowed");
        } else {
            d[j++] = plus_is_space && c == '+' ? ' ' : c;
        }
    }
    d[j] = '\0';
    *out = d;
    if (outlen != NULL)
        *outlen = j;
    return DFS_OK;
}

char *dfs_s3http_encode(const char *s, size_t n, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    char *e = malloc(3 * n + 1);
    if (e == NULL)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            e[j++] = (char)c;
        } else {
            e[j++] = '%';
            e[j++] = hex[c >> 4];
            e[j++] = hex[c & 15];
        }
    }
    e[j] = '\0';
    return e;
}

void dfs_s3http_query_free(struct dfs_s3http_query *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free(q->params[i].name);
        free(q->params[i].value);
    }
    free(q->params);
    q->params = NULL;
    q->n = 0;
}

int dfs_s3http_query_parse(const char *raw, struct dfs_s3http_query *q, struct dfs_s3err *err)
{
    q->params = NULL;
    q->n = 0;
    if (raw == NULL || raw[0] == '\0')
        return DFS_OK;
    size_t cap = 0;
    const char *p = raw;
    while (*p != '\0') {
        size_t len = strcspn(p, "&");
        if (len > 0) {
            if (q->n == DFS_S3HTTP_MAX_PARAMS) {
                dfs_s3http_query_free(q);
                return dfs_s3err_set(err, DFS_S3ERR_INVALID_URI, "more than %d query parameters",
                                     DFS_S3HTTP_MAX_PARAMS);
            }
            if (q->n == cap) {
                size_t c = cap ? cap * 2 : 8;
                struct dfs_s3http_param *np = realloc(q->params, c * sizeof *np);
                if (np == NULL) {
                    dfs_s3http_query_free(q);
                    return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
                }
                q->params = np;
                cap = c;
            }
            const char *eq = memchr(p, '=', len);
            size_t nlen = eq != NULL ? (size_t)(eq - p) : len;
            struct dfs_s3http_param *prm = &q->params[q->n];
            memset(prm, 0, sizeof *prm);
            char *msg = NULL;
            int rc = dfs_s3http_decode(p, nlen, true, &prm->name, NULL, &msg);
            if (rc == DFS_OK) {
                prm->has_value = eq != NULL;
                rc = eq != NULL
                         ? dfs_s3http_decode(eq + 1, len - nlen - 1, true, &prm->value, NULL, &msg)
                         : ((prm->value = strdup("")) != NULL ? DFS_OK : DFS_ENOMEM);
                if (rc != DFS_OK) {
                    free(prm->name);
                    prm->name = NULL;
                }
            }
            if (rc != DFS_OK) {
                dfs_s3http_query_free(q);
                if (rc == DFS_ENOMEM) {
                    free(msg);
                    return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
                }
                rc = dfs_s3err_set(err, DFS_S3ERR_INVALID_URI, "query string: %s",
                                   msg != NULL ? msg : "bad encoding");
                free(msg);
                return rc;
            }
            q->n++;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return DFS_OK;
}

const char *dfs_s3http_query_get(const struct dfs_s3http_query *q, const char *name)
{
    for (size_t i = 0; i < q->n; i++) {
        if (strcmp(q->params[i].name, name) == 0)
            return q->params[i].value;
    }
    return NULL;
}

size_t dfs_s3http_query_count(const struct dfs_s3http_query *q, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < q->n; i++) {
        if (strcmp(q->params[i].name, name) == 0)
            n++;
    }
    return n;
}
