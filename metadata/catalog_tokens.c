/* The catalog's bearer tokens and the service's named secrets (schema version 4 on). */
#include "metadata/catalog_int.h"

#include "common/err.h"
#include "common/log.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

/* ---- Tokens and secrets ---------------------------------------------------------------------- */

static const char *const role_names[] = {
    [DFS_ROLE_UNSPECIFIED] = "unspecified",
    [DFS_ROLE_ADMIN] = "admin",
    [DFS_ROLE_READ_WRITE] = "read_write",
    [DFS_ROLE_READ_ONLY] = "read_only",
    [DFS_ROLE_NODE] = "node",
    [DFS_ROLE_BOOTSTRAP] = "bootstrap",
    [DFS_ROLE_GATEWAY] = "gateway",
};

const char *dfs_catalog_token_role_name(enum dfs_token_role role)
{
    if (role <= DFS_ROLE_UNSPECIFIED || role > DFS_ROLE_GATEWAY)
        return "unknown";
    return role_names[role];
}

enum dfs_token_role dfs_catalog_token_role_parse(const char *name)
{
    if (name == NULL)
        return DFS_ROLE_UNSPECIFIED;
    if (strcmp(name, "rw") == 0)
        return DFS_ROLE_READ_WRITE;
    if (strcmp(name, "ro") == 0)
        return DFS_ROLE_READ_ONLY;
    return (enum dfs_token_role)NAME_INDEX(role_names, name);
}

bool catalog_token_id_ok(const char *id, size_t min)
{
    size_t n = id == NULL ? 0 : strnlen(id, 17);
    if (n < min || n > 16)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    }
    return true;
}

static void read_token(dfs_catalog *cat, enum stmt id, struct dfs_token_rec *t)
{
    memset(t, 0, sizeof *t);
    catalog_col_copy(cat, id, 0, t->id, sizeof t->id);
    catalog_col_copy(cat, id, 1, t->name, sizeof t->name);
    t->role = dfs_catalog_token_role_parse(catalog_col_text(cat, id, 2));
    t->created_ms = catalog_col_i64(cat, id, 3);
    t->expires_ms = catalog_col_i64(cat, id, 4);
    t->revoked_ms = catalog_col_i64(cat, id, 5);
    t->last_used_ms = catalog_col_i64(cat, id, 6);
    const char *node = catalog_col_text(cat, id, 7);
    snprintf(t->node_id, sizeof t->node_id, "%s", node != NULL ? node : "");
}

int dfs_catalog_token_add(dfs_catalog *cat, const struct dfs_token_rec *rec, const uint8_t hash[32],
                          char **errmsg)
{
    if (catalog_must_propose(cat) && rec != NULL && hash != NULL) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_token_add(rec, hash, rec != NULL ? rec->created_ms : 0, &cmd_, &len_,
                                        errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    if (!catalog_token_id_ok(rec->id, 16))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad token id");
    int rc = catalog_check_text(rec->name, 1, DFS_TOKEN_NAME_MAX, "token name", errmsg);
    if (rc != DFS_OK)
        return rc;
    if (rec->role <= DFS_ROLE_UNSPECIFIED || rec->role > DFS_ROLE_GATEWAY)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad token role");
    if (rec->role == DFS_ROLE_NODE)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "a node token is made with its node, at the node's enrollment");
    if (rec->expires_ms < 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad token expiry");
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int found = catalog_query(cat, S_TOKEN_GET, errmsg, "t", rec->id);
        if (found == 1) {
            catalog_release(cat->st[S_TOKEN_GET]);
            rc = dfs_seterr(errmsg, DFS_EEXIST, "token id %s exists", rec->id);
        } else {
            rc = found;
        }
        if (rc == DFS_OK)
            rc = catalog_exec(cat, S_TOKEN_INSERT, NULL, errmsg, "tttbiit", rec->id, rec->name,
                              role_names[rec->role], (const void *)hash, (size_t)32,
                              rec->created_ms, rec->expires_ms, "");
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    return rc;
}

int dfs_catalog_token_get(dfs_catalog *cat, const char *id, struct dfs_token_rec *out,
                          uint8_t hash[32], char **errmsg)
{
    if (!catalog_token_id_ok(id, 16))
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no such token");
    catalog_lock(cat);
    int rc = catalog_query(cat, S_TOKEN_GET, errmsg, "t", id);
    if (rc == 1) {
        read_token(cat, S_TOKEN_GET, out);
        const void *h = sqlite3_column_blob(cat->st[S_TOKEN_GET], 8);
        int n = sqlite3_column_bytes(cat->st[S_TOKEN_GET], 8);
        if (h != NULL && n == 32)
            memcpy(hash, h, 32);
        else
            memset(hash, 0, 32);
        catalog_release(cat->st[S_TOKEN_GET]);
        rc = DFS_OK;
    } else if (rc == 0) {
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "no such token");
    }
    catalog_unlock(cat);
    return rc;
}

int dfs_catalog_token_resolve(dfs_catalog *cat, const char *id, struct dfs_token_rec *out,
                              char **errmsg)
{
    if (!catalog_token_id_ok(id, 4))
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "a token id is 4 to 16 lower-case hex digits (see dfs token ls)");
    char hi[18];
    snprintf(hi, sizeof hi, "%sg", id);
    catalog_lock(cat);
    int rc = catalog_query(cat, S_TOKEN_PREFIX, errmsg, "tt", id, hi);
    int rows = 0;
    while (rc == 1) {
        if (rows++ == 0)
            read_token(cat, S_TOKEN_PREFIX, out);
        rc = catalog_next_row(cat, S_TOKEN_PREFIX, errmsg);
    }
    catalog_unlock(cat);
    if (rc < 0)
        return rc;
    if (rows == 0)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no token %s", id);
    if (rows > 1)
        return dfs_seterr(errmsg, DFS_EINVAL, "token id %s is ambiguous: give more digits", id);
    return DFS_OK;
}

int dfs_catalog_token_revoke(dfs_catalog *cat, const char *id, int64_t now_ms, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_token_revoke(id, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    if (!catalog_token_id_ok(id, 16))
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no such token");
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        rc = catalog_exec(cat, S_TOKEN_REVOKE, NULL, errmsg, "ti", id, now_ms > 0 ? now_ms : 1);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    return rc;
}

int dfs_catalog_token_touch(dfs_catalog *cat, const char *id, int64_t now_ms, char **errmsg)
{
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        rc = catalog_exec(cat, S_TOKEN_TOUCH, NULL, errmsg, "ti", id, now_ms);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    return rc;
}

int dfs_catalog_tokens_list(dfs_catalog *cat, bool all, int64_t now_ms, struct dfs_token_rec **out,
                            size_t *n, char **errmsg)
{
    struct dfs_token_rec *v = NULL;
    size_t len = 0, cap = 0;
    catalog_lock(cat);
    int rc = catalog_query(cat, S_TOKENS_LIST, errmsg, "ii", (int64_t)all, now_ms);
    while (rc == 1) {
        if (len == cap) {
            size_t ncap = cap == 0 ? 16 : 2 * cap;
            struct dfs_token_rec *nv = realloc(v, ncap * sizeof *nv);
            if (nv == NULL) {
                catalog_release(cat->st[S_TOKENS_LIST]);
                rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            v = nv;
            cap = ncap;
        }
        read_token(cat, S_TOKENS_LIST, &v[len++]);
        rc = catalog_next_row(cat, S_TOKENS_LIST, errmsg);
    }
    catalog_unlock(cat);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = len;
    return DFS_OK;
}

int dfs_catalog_secret(dfs_catalog *cat, const char *name, size_t len, int64_t now_ms, uint8_t *out,
                       char **errmsg)
{
    if (len == 0 || len > 64)
        return dfs_seterr(errmsg, DFS_EINVAL, "a secret is 1 to 64 bytes");
    /* Drawn every time, used only the first: the stored secret wins (dfs_catalog_secret_set). */
    uint8_t fresh[64];
    size_t got = 0;
    while (got < len) {
        ssize_t r = getrandom(fresh + got, len - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return dfs_seterr_errno(errmsg, DFS_EIO, errno, "getrandom");
        got += (size_t)r;
    }
    int rc = dfs_catalog_secret_set(cat, name, fresh, len, now_ms, out, errmsg);
    explicit_bzero(fresh, sizeof fresh);
    return rc;
}

int dfs_catalog_secret_set(dfs_catalog *cat, const char *name, const uint8_t *value, size_t len,
                           int64_t now_ms, uint8_t *out, char **errmsg)
{
    if (catalog_must_propose(cat) && value != NULL && out != NULL) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_secret_set(name, value, len, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, out, NULL, NULL, errmsg);
    }
    if (len == 0 || len > 64 || value == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "a secret is 1 to 64 bytes");
    int rc = catalog_check_text(name, 1, 64, "secret name", errmsg);
    if (rc != DFS_OK)
        return rc;
    uint8_t stored[64];
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    bool made = false;
    if (rc == DFS_OK) {
        int found = catalog_query(cat, S_SECRET_GET, errmsg, "t", name);
        if (found == 1) {
            const void *v = sqlite3_column_blob(cat->st[S_SECRET_GET], 0);
            size_t vn = (size_t)sqlite3_column_bytes(cat->st[S_SECRET_GET], 0);
            if (v == NULL || vn != len)
                rc = dfs_seterr(errmsg, DFS_EDATALOSS,
                                "catalog %s: secret %s has %zu bytes, not %zu", cat->path, name, vn,
                                len);
            else
                memcpy(stored, v, len);
            catalog_release(cat->st[S_SECRET_GET]);
        } else if (found == 0) {
            memcpy(stored, value, len);
            rc = catalog_exec(cat, S_SECRET_INSERT, NULL, errmsg, "tbi", name, (const void *)stored,
                              len, now_ms);
            made = rc == DFS_OK;
        } else {
            rc = found;
        }
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    if (rc == DFS_OK) {
        if (made)
            dfs_log(DFS_LOG_INFO, "catalog made secret name=%s bytes=%zu", name, len);
        memcpy(out, stored, len);
    }
    explicit_bzero(stored, sizeof stored);
    return rc;
}
