/* The catalog: S3 buckets (schema 6; see catalog.h and gateway/s3/DESIGN.md). */
#include "metadata/catalog.h"

#include "common/err.h"
#include "common/log.h"
#include "metadata/catalog_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The characters and length S3 allows (the gateway checks S3's other rules). */
static int check_name(const char *name, char **errmsg)
{
    size_t n = name != NULL ? strlen(name) : 0;
    bool ok = n >= 3 && n <= DFS_BUCKET_NAME_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
             name[i] == '.' || name[i] == '-';
    return ok ? DFS_OK
              : dfs_seterr(errmsg, DFS_EINVAL,
                           "a bucket name is 3 to 63 lower-case letters, digits, '.' and '-'");
}

static void read_bucket(dfs_catalog *cat, enum stmt id, struct dfs_bucket_rec *b)
{
    memset(b, 0, sizeof *b);
    catalog_col_copy(cat, id, 0, b->name, sizeof b->name);
    b->created_ms = catalog_col_i64(cat, id, 1);
    catalog_col_copy(cat, id, 2, b->token_id, sizeof b->token_id);
}

int dfs_catalog_bucket_create(dfs_catalog *cat, const char *name, const char *token_id,
                              int64_t now_ms, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_bucket_create(name, token_id, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    int rc = check_name(name, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (token_id == NULL || strlen(token_id) > 16)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad token id");
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int q = catalog_query(cat, S_BUCKET_GET, errmsg, "t", name);
        if (q == 1) {
            catalog_release(cat->st[S_BUCKET_GET]);
            q = dfs_seterr(errmsg, DFS_EEXIST, "bucket %s exists", name);
        }
        if (q == 0)
            q = catalog_exec(cat, S_BUCKET_INSERT, NULL, errmsg, "tit", name, now_ms, token_id);
        rc = catalog_tx_end(cat, q, errmsg);
    }
    catalog_unlock(cat);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO, "bucket created name=%s token=%s", name, token_id);
    return rc;
}

int dfs_catalog_bucket_get(dfs_catalog *cat, const char *name, struct dfs_bucket_rec *out,
                           char **errmsg)
{
    int rc = check_name(name, errmsg);
    if (rc != DFS_OK)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no bucket %s", name != NULL ? name : "");
    catalog_lock(cat);
    rc = catalog_query(cat, S_BUCKET_GET, errmsg, "t", name);
    if (rc == 1) {
        read_bucket(cat, S_BUCKET_GET, out);
        catalog_release(cat->st[S_BUCKET_GET]);
        rc = DFS_OK;
    } else if (rc == 0) {
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "no bucket %s", name);
    }
    catalog_unlock(cat);
    return rc;
}

int dfs_catalog_bucket_delete(dfs_catalog *cat, const char *name, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_bucket_delete(name, 0, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    int rc = check_name(name, errmsg);
    if (rc != DFS_OK)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no bucket %s", name != NULL ? name : "");
    /* Files under /name/ (pending ones too: a put in flight) keep the bucket; checked in the
       delete's transaction. '/' + 1 is '0': the paths in [/name/, /name0) are those under it. */
    char lo[DFS_BUCKET_NAME_MAX + 3], hi[DFS_BUCKET_NAME_MAX + 3];
    snprintf(lo, sizeof lo, "/%s/", name);
    snprintf(hi, sizeof hi, "/%s0", name);
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int q = catalog_query(cat, S_BUCKET_FILES, errmsg, "tt", lo, hi);
        if (q == 1) {
            catalog_release(cat->st[S_BUCKET_FILES]);
            q = dfs_seterr(errmsg, DFS_EPRECOND, "bucket %s is not empty", name);
        }
        int changes = 0;
        if (q == 0)
            q = catalog_exec(cat, S_BUCKET_DELETE, &changes, errmsg, "t", name);
        if (q == DFS_OK && changes == 0)
            q = dfs_seterr(errmsg, DFS_ENOTFOUND, "no bucket %s", name);
        rc = catalog_tx_end(cat, q, errmsg);
    }
    catalog_unlock(cat);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO, "bucket deleted name=%s", name);
    return rc;
}

int dfs_catalog_buckets_list(dfs_catalog *cat, struct dfs_bucket_rec **out, size_t *n,
                             char **errmsg)
{
    struct dfs_bucket_rec *v = NULL;
    size_t len = 0;
    catalog_lock(cat);
    int rc = catalog_query(cat, S_BUCKETS_LIST, errmsg, "");
    while (rc == 1) {
        struct dfs_bucket_rec *b = catalog_grow(&v, &len, sizeof *b);
        if (b == NULL) {
            catalog_release(cat->st[S_BUCKETS_LIST]);
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            break;
        }
        read_bucket(cat, S_BUCKETS_LIST, b);
        rc = catalog_next_row(cat, S_BUCKETS_LIST, errmsg);
    }
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        free(v);
        return rc;
    }
    *out = v;
    *n = len;
    return DFS_OK;
}
