/* Tickets: HMAC-SHA256 over a canonical text form (see ticket.h for the format). */
#include "common/ticket.h"

#include "common/err.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

static const char *const op_names[] = {
    [DFS_TICKET_PUT] = "put",   [DFS_TICKET_GET] = "get",       [DFS_TICKET_DELETE] = "delete",
    [DFS_TICKET_STAT] = "stat", [DFS_TICKET_REPAIR] = "repair",
};

const char *dfs_ticket_op_name(int op)
{
    if (op < DFS_TICKET_PUT || op > DFS_TICKET_REPAIR)
        return "unknown";
    return op_names[op];
}

static int hmac(const uint8_t key[DFS_TICKET_KEY_LEN], const char *msg, size_t n,
                uint8_t out[DFS_TICKET_MAC_LEN], char **errmsg)
{
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), key, DFS_TICKET_KEY_LEN, (const unsigned char *)msg, n, out, &len) ==
            NULL ||
        len != DFS_TICKET_MAC_LEN)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "HMAC-SHA256 failed");
    return DFS_OK;
}

int dfs_ticket_node_key(const uint8_t master[DFS_TICKET_KEY_LEN], const char *node_id,
                        uint8_t out[DFS_TICKET_KEY_LEN], char **errmsg)
{
    if (!dfs_id_valid(node_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad node id for a ticket key");
    char msg[64];
    int n = snprintf(msg, sizeof msg, "dfs-node-key-v1%c%s", '\0', node_id);
    return hmac(master, msg, (size_t)n, out, errmsg);
}

/* The canonical form; returns its length. */
static size_t canonical(const struct dfs_ticket *t, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "dfs-ticket-v1%c%d%c%s%c%s%c%s%c%" PRId64, '\0', (int)t->op, '\0',
                     t->file_id, '\0', t->fragment_id, '\0', t->node_id, '\0', t->expires_ms);
    return n < 0 ? 0 : (size_t)n;
}

static bool well_formed(const struct dfs_ticket *t)
{
    return t->op >= DFS_TICKET_PUT && t->op <= DFS_TICKET_REPAIR &&
           dfs_fragment_id_valid(t->fragment_id) && dfs_id_valid(t->file_id) &&
           dfs_id_valid(t->node_id) && memcmp(t->file_id, t->fragment_id, DFS_ID_HEX) == 0;
}

int dfs_ticket_make(const uint8_t node_key[DFS_TICKET_KEY_LEN], enum dfs_ticket_op op,
                    const char *fragment_id, const char *node_id, int64_t expires_ms,
                    struct dfs_ticket *out, char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id) || !dfs_id_valid(node_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment or node id for a ticket");
    struct dfs_ticket t;
    memset(&t, 0, sizeof t);
    t.op = op;
    memcpy(t.file_id, fragment_id, DFS_ID_HEX);
    t.file_id[DFS_ID_HEX] = '\0';
    memcpy(t.fragment_id, fragment_id, DFS_FRAGMENT_ID_HEX + 1);
    memcpy(t.node_id, node_id, DFS_ID_HEX + 1);
    t.expires_ms = expires_ms;
    if (!well_formed(&t))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad ticket operation %d", (int)op);
    char buf[192];
    size_t n = canonical(&t, buf, sizeof buf);
    int rc = hmac(node_key, buf, n, t.mac, errmsg);
    if (rc == DFS_OK)
        *out = t;
    return rc;
}

int dfs_ticket_check(const uint8_t node_key[DFS_TICKET_KEY_LEN], const struct dfs_ticket *t,
                     enum dfs_ticket_op op, const char *fragment_id, const char *node_id,
                     int64_t now_ms, char **errmsg)
{
    if (!well_formed(t))
        return dfs_seterr(errmsg, DFS_EPERM, "malformed ticket");
    if (t->op != op)
        return dfs_seterr(errmsg, DFS_EPERM, "ticket is for %s, not %s", dfs_ticket_op_name(t->op),
                          dfs_ticket_op_name(op));
    if (strcmp(t->fragment_id, fragment_id) != 0)
        return dfs_seterr(errmsg, DFS_EPERM, "ticket is for another fragment");
    if (strcmp(t->node_id, node_id) != 0)
        return dfs_seterr(errmsg, DFS_EPERM, "ticket is for another node");
    char buf[192];
    size_t n = canonical(t, buf, sizeof buf);
    uint8_t want[DFS_TICKET_MAC_LEN];
    int rc = hmac(node_key, buf, n, want, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (CRYPTO_memcmp(want, t->mac, DFS_TICKET_MAC_LEN) != 0)
        return dfs_seterr(errmsg, DFS_EPERM, "ticket signature does not match");
    /* After the MAC: an attacker learns nothing about expiry handling of forged tickets. */
    if (t->expires_ms > INT64_MAX - DFS_TICKET_SKEW_MS ||
        now_ms > t->expires_ms + DFS_TICKET_SKEW_MS)
        return dfs_seterr(errmsg, DFS_EPERM, "ticket expired %" PRId64 " s ago",
                          (now_ms - t->expires_ms) / 1000);
    return DFS_OK;
}
