/* Test support: tickets under a fixed master key. */
#include "services/rpc/ticket_testing.h"

#include "common/clock.h"
#include "common/id.h"
#include "services/rpc/ticket_pb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const uint8_t master[DFS_TICKET_KEY_LEN] = "dfs tests' master key, not real";

static struct {
    char addr[64];
    char node_id[DFS_ID_HEX + 1];
} known_nodes[256];
static size_t nknown_nodes;

void dfs_test_node_remember(const char *addr, const char *node_id)
{
    size_t slot = nknown_nodes++ % (sizeof known_nodes / sizeof known_nodes[0]);
    snprintf(known_nodes[slot].addr, sizeof known_nodes[slot].addr, "%s", addr);
    snprintf(known_nodes[slot].node_id, sizeof known_nodes[slot].node_id, "%s", node_id);
}

const char *dfs_test_node_of(const char *addr)
{
    size_t cap = sizeof known_nodes / sizeof known_nodes[0];
    size_t n = nknown_nodes < cap ? nknown_nodes : cap;
    for (size_t k = 0; k < n; k++) {
        size_t i = (nknown_nodes - 1 - k) % cap;
        if (strcmp(known_nodes[i].addr, addr) == 0)
            return known_nodes[i].node_id;
    }
    return "unknown";
}

void dfs_test_node_key(const char *node_id, uint8_t key[DFS_TICKET_KEY_LEN])
{
    if (dfs_ticket_node_key(master, node_id, key, NULL) != 0)
        abort(); /* a test bug */
}

Dfs__V1__Ticket *dfs_test_ticket(struct dfs_test_ticket *tt, enum dfs_ticket_op op,
                                 const char *fragment_id, const char *node_id, int64_t ttl_ms)
{
    static const char zero[] = "00000000000000000000000000000000";
    if (!dfs_id_valid(node_id))
        node_id = zero;
    int64_t now = dfs_clock_wall_ms();
    int64_t exp = now + (ttl_ms != 0 ? ttl_ms : 3600 * 1000);
    if (ttl_ms < 0)
        exp = now + ttl_ms - DFS_TICKET_SKEW_MS - 1000;
    uint8_t key[DFS_TICKET_KEY_LEN];
    dfs_test_node_key(node_id, key);
    memset(tt, 0, sizeof *tt);
    if (dfs_ticket_make(key, op, fragment_id, node_id, exp, &tt->t, NULL) != 0) {
        /* A bad fragment id (a test of refusals): a ticket that fails to parse the same way. */
        tt->t.op = op;
        tt->t.expires_ms = exp;
    }
    dfs_ticket_pb_view(&tt->t, &tt->m);
    return &tt->m;
}

Dfs__V1__Ticket *dfs_test_forward_ticket(struct dfs_test_ticket *tt, const char *fragment_id,
                                         const char *node_id, const char *peer_node_id,
                                         const char *peer_address)
{
    static const char zero[] = "00000000000000000000000000000000";
    if (!dfs_id_valid(node_id))
        node_id = zero;
    if (!dfs_id_valid(peer_node_id))
        peer_node_id = zero;
    int64_t exp = dfs_clock_wall_ms() + 3600 * 1000;
    uint8_t key[DFS_TICKET_KEY_LEN];
    dfs_test_node_key(node_id, key);
    memset(tt, 0, sizeof *tt);
    if (dfs_ticket_make_forward(key, fragment_id, node_id, peer_node_id, peer_address, exp, &tt->t,
                                NULL) != 0) {
        tt->t.op = DFS_TICKET_FORWARD; /* a malformed one, refused as such */
        tt->t.expires_ms = exp;
    }
    dfs_ticket_pb_view(&tt->t, &tt->m);
    return &tt->m;
}
