/* Tickets to and from dfs.v1.Ticket. */
#include "services/rpc/ticket_pb.h"

#include "common/err.h"

#include <string.h>

Dfs__V1__Ticket *dfs_ticket_pb(dfs_arena *a, const struct dfs_ticket *t)
{
    Dfs__V1__Ticket *m = dfs_arena_alloc(a, sizeof *m);
    if (m == NULL)
        return NULL;
    dfs__v1__ticket__init(m);
    m->op = (Dfs__V1__TicketOp)t->op;
    m->file_id = dfs_arena_strdup(a, t->file_id);
    m->fragment_id = dfs_arena_strdup(a, t->fragment_id);
    m->node_id = dfs_arena_strdup(a, t->node_id);
    m->expires_ms = t->expires_ms;
    m->mac.data = dfs_arena_memdup(a, t->mac, sizeof t->mac);
    m->mac.len = sizeof t->mac;
    m->peer_node_id = dfs_arena_strdup(a, t->peer_node_id);
    m->peer_address = dfs_arena_strdup(a, t->peer_address);
    if (m->file_id == NULL || m->fragment_id == NULL || m->node_id == NULL || m->mac.data == NULL ||
        m->peer_node_id == NULL || m->peer_address == NULL)
        return NULL;
    return m;
}

static bool copy_text(char *dst, size_t cap, const char *src)
{
    if (src == NULL || strlen(src) + 1 > cap)
        return false;
    memcpy(dst, src, strlen(src) + 1);
    return true;
}

int dfs_ticket_from_pb(const Dfs__V1__Ticket *m, struct dfs_ticket *out, char **errmsg)
{
    if (m == NULL)
        return dfs_seterr(errmsg, DFS_EPERM, "no ticket (ask the metadata service for one)");
    memset(out, 0, sizeof *out);
    out->op = (enum dfs_ticket_op)m->op;
    out->expires_ms = m->expires_ms;
    if (!copy_text(out->file_id, sizeof out->file_id, m->file_id) ||
        !copy_text(out->fragment_id, sizeof out->fragment_id, m->fragment_id) ||
        !copy_text(out->node_id, sizeof out->node_id, m->node_id) ||
        !copy_text(out->peer_node_id, sizeof out->peer_node_id, m->peer_node_id) ||
        !copy_text(out->peer_address, sizeof out->peer_address, m->peer_address) ||
        m->mac.len != sizeof out->mac)
        return dfs_seterr(errmsg, DFS_EPERM, "malformed ticket");
    memcpy(out->mac, m->mac.data, sizeof out->mac);
    return DFS_OK;
}

Dfs__V1__Ticket *dfs_ticket_pb_copy(dfs_arena *a, const Dfs__V1__Ticket *m)
{
    struct dfs_ticket t;
    if (dfs_ticket_from_pb(m, &t, NULL) != DFS_OK)
        return NULL;
    return dfs_ticket_pb(a, &t);
}

void dfs_ticket_pb_view(const struct dfs_ticket *t, Dfs__V1__Ticket *m)
{
    dfs__v1__ticket__init(m);
    m->op = (Dfs__V1__TicketOp)t->op;
    m->file_id = (char *)t->file_id;
    m->fragment_id = (char *)t->fragment_id;
    m->node_id = (char *)t->node_id;
    m->expires_ms = t->expires_ms;
    m->mac.data = (uint8_t *)t->mac;
    m->mac.len = sizeof t->mac;
    m->peer_node_id = (char *)t->peer_node_id;
    m->peer_address = (char *)t->peer_address;
}
