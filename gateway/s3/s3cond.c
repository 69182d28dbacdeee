/* Conditional requests (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since). */
#include "gateway/s3/s3cond.h"

#include "common/err.h"
#include "gateway/s3/s3time.h"

#include <string.h>

int dfs_s3cond_parse(const struct dfs_s3http_request *r, bool copy_source, int64_t now,
                     struct dfs_s3cond *c, struct dfs_s3err *err)
{
    static const char *const plain[] = {"If-Match", "If-None-Match", "If-Modified-Since",
                                        "If-Unmodified-Since"};
    static const char *const copy[] = {
        "x-amz-copy-source-if-match", "x-amz-copy-source-if-none-match",
        "x-amz-copy-source-if-modified-since", "x-amz-copy-source-if-unmodified-since"};
    const char *const *names = copy_source ? copy : plain;
    const char *v[4];
    memset(c, 0, sizeof *c);
    for (int i = 0; i < 4; i++) {
        int rc = dfs_s3http_header_once(r, names[i], &v[i], err);
        if (rc != DFS_OK)
            return rc;
    }
    c->if_match = v[0];
    c->if_none_match = v[1];
    c->has_modified_since =
        v[2] != NULL && dfs_s3time_parse_http(v[2], now, &c->modified_since) == DFS_OK;
    c->has_unmodified_since =
        v[3] != NULL && dfs_s3time_parse_http(v[3], now, &c->unmodified_since) == DFS_OK;
    return DFS_OK;
}

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* The opaque part of an ETag: without its quotes. */
static void opaque(const char *s, size_t n, const char **o, size_t *olen)
{
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    *o = s;
    *olen = n;
}

bool dfs_s3cond_etag_listed(const char *list, const char *etag, bool weak)
{
    const char *want;
    size_t wlen;
    opaque(etag, strlen(etag), &want, &wlen);
    const char *p = list;
    for (;;) {
        while (is_blank(*p) || *p == ',')
            p++;
        if (*p == '\0')
            return false;
        const char *start = p;
        /* A tag runs to the ',' after its closing quote (a quoted tag may hold commas). */
        bool is_weak = p[0] == 'W' && p[1] == '/';
        const char *q = is_weak ? p + 2 : p;
        if (*q == '"') {
            const char *close = strchr(q + 1, '"');
            p = close != NULL ? close + 1 : q + strlen(q);
        } else {
            p = q + strcspn(q, ",");
        }
        size_t n = (size_t)(p - start);
        while (n > 0 && is_blank(start[n - 1]))
            n--;
        if (n == 1 && start[0] == '*')
            return true;
        if (!is_weak || weak) {
            const char *o;
            size_t olen;
            const char *tag = is_weak ? start + 2 : start;
            opaque(tag, n - (size_t)(tag - start), &o, &olen);
            if (olen == wlen && memcmp(o, want, wlen) == 0)
                return true;
        }
        p += strcspn(p, ",");
    }
}

enum dfs_s3err_code dfs_s3cond_eval(const struct dfs_s3cond *c, enum dfs_s3cond_mode mode,
                                    bool exists, const char *etag, int64_t mtime)
{
    if (!exists) {
        if (mode != DFS_S3COND_WRITE || c->if_match != NULL)
            return DFS_S3ERR_NO_SUCH_KEY;
        return DFS_S3ERR_NONE; /* If-None-Match: * holds for an absent object */
    }
    if (c->if_match != NULL) {
        if (!dfs_s3cond_etag_listed(c->if_match, etag, false))
            return DFS_S3ERR_PRECONDITION_FAILED;
    } else if (c->has_unmodified_since && mtime > c->unmodified_since) {
        return DFS_S3ERR_PRECONDITION_FAILED;
    }
    if (c->if_none_match != NULL) {
        if (dfs_s3cond_etag_listed(c->if_none_match, etag, true))
            return mode == DFS_S3COND_READ ? DFS_S3ERR_NOT_MODIFIED : DFS_S3ERR_PRECONDITION_FAILED;
    } else if (mode != DFS_S3COND_WRITE && c->has_modified_since && mtime <= c->modified_since) {
        return mode == DFS_S3COND_READ ? DFS_S3ERR_NOT_MODIFIED : DFS_S3ERR_PRECONDITION_FAILED;
    }
    return DFS_S3ERR_NONE;
}
