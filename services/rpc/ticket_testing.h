/* Test support: tickets as the metadata service makes them, under a fixed master key. */
#ifndef DFS_SERVICES_RPC_TICKET_TESTING_H
#define DFS_SERVICES_RPC_TICKET_TESTING_H

#include "common/ticket.h"
#include "dfs/v1/types.pb-c.h"

#include <stdint.h>

/* The key of node_id under the tests' master key (what RegisterNode would hand the node). */
void dfs_test_node_key(const char *node_id, uint8_t key[DFS_TICKET_KEY_LEN]);

/* A ticket and its message view, in caller storage (no allocation). */
struct dfs_test_ticket {
    struct dfs_ticket t;
    Dfs__V1__Ticket m;
};

/*
 * Fill *tt with a ticket for op on fragment_id at node_id, valid for an hour (ttl_ms from now when
 * non-zero; negative: already expired), and return its message (pointing into *tt). A node id
 * that is not a valid id gets a ticket for the all-zero node (which no node accepts).
 */
Dfs__V1__Ticket *dfs_test_ticket(struct dfs_test_ticket *tt, enum dfs_ticket_op op,
                                 const char *fragment_id, const char *node_id, int64_t ttl_ms);

/*
 * A forward ticket (a chain put's hop): node_id may forward fragment_id to peer_node_id at
 * peer_address, valid for an hour. Invalid node ids become the all-zero node (as above).
 */
Dfs__V1__Ticket *dfs_test_forward_ticket(struct dfs_test_ticket *tt, const char *fragment_id,
                                         const char *node_id, const char *peer_node_id,
                                         const char *peer_address);

/*
 * Which node answers at an address, so that a test can sign the tickets a chain's next nodes or a
 * repair's sources need. remember records (addr, node id) (both copied; the newest of the last
 * 256 wins, since later fixtures reuse ports); node_of returns the id, or "unknown" (borrowed,
 * valid until 256 more are remembered). Test processes only: the table is process-wide and not
 * thread-safe.
 */
void dfs_test_node_remember(const char *addr, const char *node_id);
const char *dfs_test_node_of(const char *addr);

#endif /* DFS_SERVICES_RPC_TICKET_TESTING_H */
