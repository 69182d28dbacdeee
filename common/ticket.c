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
    [DFS_TICKET_STAT] = "stat", [DFS_TICKET_REPAIR] = "repair", [DFS_TICKET_FORWARD] = "forward",
};

const char *dfs_ticket_op_name(int op)
{
    if (op < DFS_TICKET_PUT || op > DFS_TICKET_FORWARD)
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

/* Room for the longest canonical form (a forward ticket with the longest address). */
#define CANON_MAX (192 + DFS_ID_HEX + DFS_TICKET_ADDRESS_MAX)

/* The canonical form; returns its length (0 if it does not fit, which well_formed rules out). */
static size_t canonical(const struct dfs_ticket *t, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "dfs-ticket-v1%c%d%c%s%c%s%c%s%c%" PRId64, '\0', (int)t->op, '\0',
                     t->file_id, '\0', t->fragment_id, '\0', t->node_id, '\0', t->expires_ms);
    if (n >= 0 && (size_t)n < cap && t->op == DFS_TICKET_FORWARD) {
        int m = snprintf(buf + n, cap - (size_t)n, "%c%s%c%s", '\0', t->peer_node_id, '\0',
                         t->peer_address);
        n = m < 0 ? -1 : n + m;
    }
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

/* A peer address: 1..DFS_TICKET_ADDRESS_MAX printable ASCII bytes, no space. */
static bool address_ok(const char *a)
{
    size_t n = strnlen(a, DFS_TICKET_ADDRESS_MAX + 1);
    if (n == 0 || n > DFS_TICKET_ADDRESS_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)a[i] <= 0x20 || (unsigned char)a[i] >= 0x7f)
            return false;
    return true;
}

static bool well_formed(const struct dfs_ticket *t)
{
    if (t->op < DFS_TICKET_PUT || t->op > DFS_TICKET_FORWARD ||
        !dfs_fragment_id_valid(t->fragment_id) || !dfs_id_valid(t->file_id) ||
        !dfs_id_valid(t->node_id) || memcmp(t->file_id, t->fragment_id, DFS_ID_HEX) != 0)
        return false;
    if (t->op != DFS_TICKET_FORWARD)
        return t->peer_node_id[0] == '\0' && t->peer_address[0] == '\0';
    return dfs_id_valid(t->peer_node_id) && strcmp(t->peer_node_id, t->node_id) != 0 &&
           address_ok(t->peer_address);
}

/* Fill and sign t (op, peer fields set by the caller) for fragment_id at node_id. */
static int make(const uint8_t node_key[DFS_TICKET_KEY_LEN], struct dfs_ticket *t,
                const char *fragment_id, const char *node_id, int64_t expires_ms,
                struct dfs_ticket *out, char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id) || !dfs_id_valid(node_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment or node id for a ticket");
    memcpy(t->file_id, fragment_id, DFS_ID_HEX);
    t->file_id[DFS_ID_HEX] = '\0';
    memcpy(t->fragment_id, fragment_id, DFS_FRAGMENT_ID_HEX + 1);
    memcpy(t->node_id, node_id, DFS_ID_HEX + 1);
    t->expires_ms = expires_ms;
    if (!well_formed(t))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad %s ticket", dfs_ticket_op_name(t->op));
    char buf[CANON_MAX];
    size_t n = canonical(t, buf, sizeof buf);
    int rc = hmac(node_key, buf, n, t->mac, errmsg);
    if (rc == DFS_OK)
        *out = *t;
    return rc;
}

int dfs_ticket_make(const uint8_t node_key[DFS_TICKET_KEY_LEN], enum dfs_ticket_op op,
                    const char *fragment_id, const char *node_id, int64_t expires_ms,
                    struct dfs_ticket *out, char **errmsg)
{
    if (op == DFS_TICKET_FORWARD)
        return dfs_seterr(errmsg, DFS_EINVAL, "a forward ticket names its peer");
    struct dfs_ticket t;
    memset(&t, 0, sizeof t);
    t.op = op;
    return make(node_key, &t, fragment_id, node_id, expires_ms, out, errmsg);
}

int dfs_ticket_make_forward(const uint8_t node_key[DFS_TICKET_KEY_LEN], const char *fragment_id,
                            const char *node_id, const char *peer_node_id, const char *peer_address,
                            int64_t expires_ms, struct dfs_ticket *out, char **errmsg)
{
    struct dfs_ticket t;
    memset(&t, 0, sizeof t);
    t.op = DFS_TICKET_FORWARD;
    if (peer_node_id == NULL || peer_address == NULL ||
        strlen(peer_node_id) >= sizeof t.peer_node_id ||
        strlen(peer_address) >= sizeof t.peer_address)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad peer for a forward ticket");
    memcpy(t.peer_node_id, peer_node_id, strlen(peer_node_id) + 1);
    memcpy(t.peer_address, peer_address, strlen(peer_address) + 1);
    return make(node_key, &t, fragment_id, node_id, expires_ms, out, errmsg);
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
    char buf[CANON_MAX];
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

int dfs_ticket_check_forward(const uint8_t node_key[DFS_TICKET_KEY_LEN], const struct dfs_ticket *t,
                             const char *fragment_id, const char *node_id, const char *peer_node_id,
                             const char *peer_address, int64_t now_ms, char **errmsg)
{
    int rc =
        dfs_ticket_check(node_key, t, DFS_TICKET_FORWARD, fragment_id, node_id, now_ms, errmsg);
    if (rc != DFS_OK)
        return rc;
    /* After the MAC: the peer fields are the metadata service's word. */
    if (peer_address == NULL || strcmp(t->peer_address, peer_address) != 0)
        return dfs_seterr(errmsg, DFS_EPERM, "forward ticket is for another address");
    if (peer_node_id != NULL && strcmp(t->peer_node_id, peer_node_id) != 0)
        return dfs_seterr(errmsg, DFS_EPERM, "forward ticket is for another node");
    return DFS_OK;
}
