/* Access classes: roles, token checks, token making and enrollment (access.h). */
#include "metadata/access.h"

#include "common/err.h"
#include "common/id.h"
#include "common/log.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A use is written back to the catalog at most this often per token. */
#define TOKEN_TOUCH_MS 60000

unsigned dfs_access_of_role(enum dfs_token_role r)
{
    switch (r) {
    case DFS_ROLE_ADMIN:
        return DFS_ACCESS_READ | DFS_ACCESS_WRITE | DFS_ACCESS_ADMIN | DFS_ACCESS_ENROLL;
    case DFS_ROLE_READ_WRITE:
        return DFS_ACCESS_READ | DFS_ACCESS_WRITE;
    case DFS_ROLE_READ_ONLY:
        return DFS_ACCESS_READ;
    case DFS_ROLE_NODE:
        return DFS_ACCESS_NODE;
    case DFS_ROLE_BOOTSTRAP:
        return DFS_ACCESS_ENROLL;
    case DFS_ROLE_GATEWAY:
        return DFS_ACCESS_READ | DFS_ACCESS_WRITE | DFS_ACCESS_S3KEYS;
    default:
        return 0;
    }
}

int dfs_access_check(dfs_catalog *cat, const char *token, int64_t now, struct dfs_token_rec *out,
                     char **errmsg)
{
    char id[DFS_TOKEN_ID_HEX + 1];
    uint8_t hash[DFS_TOKEN_HASH_LEN], want[DFS_TOKEN_HASH_LEN];
    int rc = dfs_token_parse(token, id, hash, errmsg);
    if (rc != DFS_OK)
        return rc;
    rc = dfs_catalog_token_get(cat, id, out, want, NULL);
    if (rc == DFS_ENOTFOUND || (rc == DFS_OK && CRYPTO_memcmp(hash, want, sizeof hash) != 0))
        return dfs_seterr(errmsg, DFS_EUNAUTH, "unknown token %s", id);
    if (rc != DFS_OK)
        return dfs_seterr(errmsg, DFS_EUNAVAIL, "cannot check the token now: the catalog failed");
    if (out->revoked_ms != 0)
        return dfs_seterr(errmsg, DFS_EUNAUTH, "token %s was revoked", id);
    if (out->expires_ms != 0 && now >= out->expires_ms)
        return dfs_seterr(errmsg, DFS_EUNAUTH, "token %s has expired", id);
    if (now - out->last_used_ms >= TOKEN_TOUCH_MS)
        dfs_catalog_token_touch(cat, id, now, NULL);
    return DFS_OK;
}

int dfs_access_allow(const struct dfs_token_rec *t, unsigned access, const char *method,
                     char **errmsg)
{
    if ((dfs_access_of_role(t->role) & access) == 0)
        return dfs_seterr(errmsg, DFS_EPERM, "token %s (%s, role %s) may not call %s", t->id,
                          t->name, dfs_catalog_token_role_name(t->role), method);
    return DFS_OK;
}

int dfs_access_node(const struct dfs_token_rec *t, char **errmsg)
{
    if (t->role != DFS_ROLE_NODE || !dfs_id_valid(t->node_id))
        return dfs_seterr(errmsg, DFS_EPERM, "token %s (role %s) belongs to no storage node", t->id,
                          dfs_catalog_token_role_name(t->role));
    return DFS_OK;
}

int dfs_access_make_token(dfs_catalog *cat, enum dfs_token_role role, const char *name,
                          int64_t ttl_ms, int64_t now_ms, char token[DFS_TOKEN_LEN + 1],
                          struct dfs_token_rec *info, char **errmsg)
{
    if (role == DFS_ROLE_NODE)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "node tokens are made by the nodes themselves at their enrollment "
                          "(give storage nodes a bootstrap token)");
    if (role <= DFS_ROLE_UNSPECIFIED || role > DFS_ROLE_GATEWAY)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "a token's role is admin, read_write, read_only, bootstrap or gateway");
    if (ttl_ms < 0 || ttl_ms > (int64_t)100 * 365 * 24 * 3600 * 1000)
        return dfs_seterr(errmsg, DFS_EINVAL, "a token's lifetime is 0 (forever) to 100 years");
    struct dfs_token_rec t;
    memset(&t, 0, sizeof t);
    uint8_t hash[DFS_TOKEN_HASH_LEN];
    int rc = dfs_token_generate(token);
    if (rc == DFS_OK)
        rc = dfs_token_parse(token, t.id, hash, errmsg);
    else
        rc = dfs_seterr(errmsg, rc, "cannot make a random token");
    if (rc != DFS_OK)
        return rc;
    snprintf(t.name, sizeof t.name, "%s", name != NULL ? name : "");
    t.role = role;
    t.created_ms = now_ms;
    t.expires_ms = ttl_ms > 0 ? t.created_ms + ttl_ms : 0;
    if (name == NULL || strlen(name) > DFS_TOKEN_NAME_MAX)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "a token's name is 1 to %d bytes", DFS_TOKEN_NAME_MAX);
    if (rc == DFS_OK)
        rc = dfs_catalog_token_add(cat, &t, hash, errmsg);
    if (rc != DFS_OK) {
        OPENSSL_cleanse(token, DFS_TOKEN_LEN + 1);
        return rc;
    }
    dfs_log(DFS_LOG_INFO, "token created id=%s name=\"%s\" role=%s expires_ms=%" PRId64, t.id,
            t.name, dfs_catalog_token_role_name(t.role), t.expires_ms);
    if (info != NULL)
        *info = t;
    return DFS_OK;
}

int dfs_access_enroll(dfs_catalog *cat, const struct dfs_token_rec *by,
                      const struct dfs_access_enrollment *e, uint64_t registration, int64_t now_ms,
                      const char *peer, bool *enrolled, char **errmsg)
{
    if (e->node_token_id[0] == '\0')
        return dfs_seterr(errmsg, DFS_EPERM,
                          "token %s (role %s) only enrolls new nodes, each with a node token of "
                          "its own (node_token_id); a node registers with its own token",
                          by->id, dfs_catalog_token_role_name(by->role));
    struct dfs_node_rec old;
    int rc = dfs_catalog_node_get(cat, e->node_id, &old, NULL);
    if (rc == DFS_ENOTFOUND) {
        char *why = NULL;
        rc = dfs_catalog_node_enroll(cat, e->node_id, e->node_token_id, e->node_token_sha256,
                                     e->address, e->zone, &e->usage, now_ms, registration, &why);
        if (rc == DFS_OK)
            *enrolled = true;
        if (rc != DFS_EEXIST) {
            if (rc != DFS_OK && errmsg != NULL)
                *errmsg = why;
            else
                free(why);
            return rc;
        }
        free(why); /* enrolled meanwhile, or the token id is taken: as below */
    } else if (rc != DFS_OK) {
        return dfs_seterr(errmsg, rc, "cannot look the node up: the catalog failed");
    }
    struct dfs_token_rec t;
    uint8_t hash[DFS_TOKEN_HASH_LEN];
    rc = dfs_catalog_token_get(cat, e->node_token_id, &t, hash, NULL);
    bool same = rc == DFS_OK && strcmp(t.node_id, e->node_id) == 0 && t.revoked_ms == 0 &&
                CRYPTO_memcmp(hash, e->node_token_sha256, sizeof hash) == 0;
    if (!same) {
        dfs_log(DFS_LOG_WARN,
                "enrollment refused: the node is enrolled already id=%s address=%s token=%s "
                "peer=%s",
                e->node_id, e->address, by->id, peer != NULL ? peer : "-");
        return dfs_seterr(errmsg, DFS_EPERM,
                          "node %s is enrolled already: it registers with its own node token "
                          "(DATA_DIR/node.token), which an enrollment token cannot stand in for",
                          e->node_id);
    }
    *enrolled = false;
    return DFS_OK;
}
