/* Tickets (common/ticket.h) to and from their wire form, dfs.v1.Ticket. */
#ifndef DFS_SERVICES_RPC_TICKET_PB_H
#define DFS_SERVICES_RPC_TICKET_PB_H

#include "common/arena.h"
#include "common/ticket.h"
#include "dfs/v1/types.pb-c.h"

/*
 * The message for t, allocated in the arena (freed with it); NULL when out of memory.
 */
Dfs__V1__Ticket *dfs_ticket_pb(dfs_arena *a, const struct dfs_ticket *t);

/*
 * A ticket from its message. DFS_EPERM "no ticket" for NULL, "malformed ticket" for fields of the
 * wrong size or shape (checked again, with the MAC, by dfs_ticket_check).
 */
int dfs_ticket_from_pb(const Dfs__V1__Ticket *m, struct dfs_ticket *out, char **errmsg);

/*
 * Point m (caller storage, initialised here) at t's fields without copying: m is valid while t
 * is, and must not be freed with protobuf-c's free_unpacked.
 */
void dfs_ticket_pb_view(const struct dfs_ticket *t, Dfs__V1__Ticket *m);

/* Copy a ticket message into the arena (for passing one on, e.g. down a chain). */
Dfs__V1__Ticket *dfs_ticket_pb_copy(dfs_arena *a, const Dfs__V1__Ticket *m);

#endif /* DFS_SERVICES_RPC_TICKET_PB_H */
