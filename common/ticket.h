/* Tickets: HMAC-signed capabilities for one operation on one fragment at one storage node. */
#ifndef DFS_COMMON_TICKET_H
#define DFS_COMMON_TICKET_H

#include "common/id.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The metadata service holds a random master key (DFS_TICKET_KEY_LEN bytes, in its catalog).
 * Every storage node gets its own key, derived from the master key and its node id, at
 * registration. A ticket names an operation, a file, a fragment, a node and an expiry, and carries
 * HMAC-SHA256(node key, canonical form) over them:
 *
 *   "dfs-ticket-v1" NUL op NUL file_id NUL fragment_id NUL node_id NUL expires_ms
 *
 * and, for DFS_TICKET_FORWARD only, NUL peer_node_id NUL peer_address appended. op and
 * expires_ms are in decimal ASCII (ids are hex and an address is printable host:port text, so no
 * field holds a NUL). The node key is
 * HMAC-SHA256(master, "dfs-node-key-v1" NUL node_id). Only the node named in a ticket can check it
 * (and so only that node, or the metadata service, could have made it).
 *
 * This is pure computation: no I/O, no global state; thread-safe.
 */

#define DFS_TICKET_KEY_LEN 32
#define DFS_TICKET_MAC_LEN 32

/* How far a node's clock may be ahead of the metadata service's: expiry is checked with this. */
#define DFS_TICKET_SKEW_MS 60000

/* The numbers are dfs.v1.TicketOp's. */
enum dfs_ticket_op {
    DFS_TICKET_PUT = 1,
    DFS_TICKET_GET = 2,
    DFS_TICKET_DELETE = 3,
    DFS_TICKET_STAT = 4,
    DFS_TICKET_REPAIR = 5,
    /* A chain put's hop: node_id may forward fragment_id to peer_node_id at peer_address. */
    DFS_TICKET_FORWARD = 6,
};

/* Longest peer address a forward ticket names (services' host:port limit). */
#define DFS_TICKET_ADDRESS_MAX 255

struct dfs_ticket {
    enum dfs_ticket_op op;
    char file_id[DFS_ID_HEX + 1];
    char fragment_id[DFS_FRAGMENT_ID_HEX + 1];
    char node_id[DFS_ID_HEX + 1];
    int64_t expires_ms;
    uint8_t mac[DFS_TICKET_MAC_LEN];
    /* DFS_TICKET_FORWARD only; "" otherwise. */
    char peer_node_id[DFS_ID_HEX + 1];
    char peer_address[DFS_TICKET_ADDRESS_MAX + 1];
};

/* "put", "get", "delete", "stat", "repair", "forward"; "unknown" otherwise. Never NULL. */
const char *dfs_ticket_op_name(int op);

/* out = the key of node_id (a valid node id) under master. Returns 0 or DFS_EINVAL / DFS_EINTERNAL. */
int dfs_ticket_node_key(const uint8_t master[DFS_TICKET_KEY_LEN], const char *node_id,
                        uint8_t out[DFS_TICKET_KEY_LEN], char **errmsg);

/*
 * Fill a ticket for (op, fragment_id at node_id, until expires_ms) and sign it with node_key, the
 * key of node_id. The file id is the fragment id's first 32 digits. Returns DFS_EINVAL for a bad
 * op (DFS_TICKET_FORWARD included: see dfs_ticket_make_forward) or id.
 */
int dfs_ticket_make(const uint8_t node_key[DFS_TICKET_KEY_LEN], enum dfs_ticket_op op,
                    const char *fragment_id, const char *node_id, int64_t expires_ms,
                    struct dfs_ticket *out, char **errmsg);

/*
 * A DFS_TICKET_FORWARD: node_id (whose key is node_key) may forward fragment_id to peer_node_id
 * at peer_address (1..DFS_TICKET_ADDRESS_MAX printable ASCII bytes, no space), until
 * expires_ms. DFS_EINVAL for a bad id or address, or a peer equal to node_id.
 */
int dfs_ticket_make_forward(const uint8_t node_key[DFS_TICKET_KEY_LEN], const char *fragment_id,
                            const char *node_id, const char *peer_node_id, const char *peer_address,
                            int64_t expires_ms, struct dfs_ticket *out, char **errmsg);

/*
 * Check that t allows `op` on `fragment_id` at this node (node_id, whose key is node_key) at time
 * now_ms: well-formed, signed with node_key (compared in constant time), the same op, fragment,
 * node, file id = the fragment id's prefix, and now_ms <= expires_ms + DFS_TICKET_SKEW_MS.
 * Returns 0, or DFS_EPERM with a message that says which check failed (never the MAC).
 */
int dfs_ticket_check(const uint8_t node_key[DFS_TICKET_KEY_LEN], const struct dfs_ticket *t,
                     enum dfs_ticket_op op, const char *fragment_id, const char *node_id,
                     int64_t now_ms, char **errmsg);

/*
 * dfs_ticket_check(..., DFS_TICKET_FORWARD, ...) and, besides, that the ticket names
 * peer_address (compared as text) and peer_node_id (NULL: any; t->peer_node_id then says which).
 */
int dfs_ticket_check_forward(const uint8_t node_key[DFS_TICKET_KEY_LEN], const struct dfs_ticket *t,
                             const char *fragment_id, const char *node_id, const char *peer_node_id,
                             const char *peer_address, int64_t now_ms, char **errmsg);

#endif /* DFS_COMMON_TICKET_H */
