/* Reported damage waiting for its node's check: the metadata service's queue of suspect copies. */
#ifndef DFS_SERVICES_METADATA_DAMAGE_H
#define DFS_SERVICES_METADATA_DAMAGE_H

#include "common/id.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A reader's word that a copy is damaged is not proof: the metadata service asks the copy's node
 * to check it (services/metadata/metadata_service.c) before it drops the copy. This queue holds
 * the copies waiting for that check, FIFO, each (fragment, node) at most once, and remembers the copies a
 * check found good for a while, so that a hostile or mistaken reader who keeps reporting a good
 * copy costs one check per `good_for_ms`, not one per report. Memory is bounded: `cap` copies
 * queued or being checked, and `cap` remembered good ones (the oldest forgotten first).
 *
 * Pure bookkeeping (no I/O), thread-safe: every function may be called from any thread. Times are
 * the caller's (ms, any monotonic or wall clock, the same for every call).
 */
typedef struct dfs_damage_queue dfs_damage_queue;

#define DFS_DAMAGE_DETAIL_MAX 256

/* One copy to check. A plain value. */
struct dfs_damage_item {
    char fragment_id[DFS_FRAGMENT_ID_HEX + 1];
    char node_id[DFS_ID_HEX + 1];
    int damage; /* dfs.v1.Damage number, as reported */
    char detail[DFS_DAMAGE_DETAIL_MAX + 1];
    int64_t queued_ms;
};

/* What dfs_damage_queue_add did. */
enum dfs_damage_added {
    DFS_DAMAGE_QUEUED = 0,     /* new: it waits for a check */
    DFS_DAMAGE_PENDING = 1,    /* already queued or being checked: nothing added */
    DFS_DAMAGE_KNOWN_GOOD = 2, /* a check found it good within good_for_ms: nothing added */
    DFS_DAMAGE_FULL = 3,       /* cap copies are waiting: nothing added */
    DFS_DAMAGE_INVALID = 4,    /* not a fragment id and a node id: nothing added */
};

/* The outcome of a check (dfs_damage_queue_done). */
enum dfs_damage_verdict {
    DFS_DAMAGE_GOOD = 0,    /* the node holds the catalog's copy: remembered as good */
    DFS_DAMAGE_BAD = 1,     /* damaged or gone: the caller dropped it */
    DFS_DAMAGE_UNKNOWN = 2, /* the node could not tell (down, busy): forgotten */
};

/*
 * A queue of at most cap (>= 1) copies, remembering good ones for good_for_ms (> 0). Returns 0
 * and *out (free with dfs_damage_queue_destroy), DFS_EINVAL or DFS_ENOMEM with *errmsg.
 */
int dfs_damage_queue_create(size_t cap, int64_t good_for_ms, dfs_damage_queue **out, char **errmsg);

/* Free the queue and what it holds. Accepts NULL. */
void dfs_damage_queue_destroy(dfs_damage_queue *q);

/*
 * Queue a check of fragment_id's copy on node_id (both copied). damage and detail (may be NULL;
 * cut to DFS_DAMAGE_DETAIL_MAX bytes, printable ASCII kept) are what the reader saw, kept for the
 * log.
 */
enum dfs_damage_added dfs_damage_queue_add(dfs_damage_queue *q, const char *fragment_id,
                                           const char *node_id, int damage, const char *detail,
                                           int64_t now_ms);

/*
 * The oldest copy waiting, into *out (caller storage); it is then being checked (still counted
 * as pending, and a new report of it is DFS_DAMAGE_PENDING) until dfs_damage_queue_done. Returns
 * false when nothing waits.
 */
bool dfs_damage_queue_take(dfs_damage_queue *q, struct dfs_damage_item *out);

/* The check of a copy taken with dfs_damage_queue_take is over, with this verdict. */
void dfs_damage_queue_done(dfs_damage_queue *q, const struct dfs_damage_item *item,
                           enum dfs_damage_verdict verdict, int64_t now_ms);

/* Copies queued or being checked. */
size_t dfs_damage_queue_pending(dfs_damage_queue *q);

/* Whether fragment_id's copy on node_id is queued or being checked (a repair must not read it
   meanwhile). */
bool dfs_damage_queue_suspect(dfs_damage_queue *q, const char *fragment_id, const char *node_id);

#endif /* DFS_SERVICES_METADATA_DAMAGE_H */
