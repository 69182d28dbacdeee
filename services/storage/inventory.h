/* A storage node's inventory report: every fragment it holds, told to the metadata service. */
#ifndef DFS_SERVICES_STORAGE_INVENTORY_H
#define DFS_SERVICES_STORAGE_INVENTORY_H

#include "services/rpc/client.h"
#include "services/rpc/leader.h"
#include "storage/frag_store.h"

#include <stdint.h>

/*
 * One thread, idle until dfs_inventory_trigger (called after every successful registration, by
 * the heartbeat's hook). It then walks the store and sends Metadata.ReportFragments{registration,
 * full = true, present = [ids], page, last} in pages of at most page_size ids: page counts from
 * 0, every page but the final one is full, and the final one has last = true (a node holding
 * nothing sends one empty page with last = true). Pages go out while the walk goes on, so memory
 * stays at one page. Fragments committed or deleted during the walk may or may not be listed.
 *
 * A failed page abandons the report; it starts again from page 0 after a backoff (1 s doubling
 * up to retry_max_ms), forever, until one whole report is acknowledged. A trigger while a report
 * is being sent starts a new one from page 0 at the next page boundary (the catalog must see a
 * complete list made after the latest registration). The heartbeat never waits for any of this.
 */
typedef struct dfs_inventory dfs_inventory;

struct dfs_inventory_config {
    dfs_frag_store *store; /* borrowed: must stay open until dfs_inventory_stop returns */
    const char *metadata;  /* host:port of the metadata service; copied */
    /* Its channel's security and the node's token (pointers borrowed during create/start). */
    struct dfs_rpc_channel_opts channel;
    /* The process's handle on the metadata replicas (borrowed: it must outlive this); NULL:
       one of its own is opened from metadata and channel. Sharing one lets every caller
       use what one learned about the leader. */
    dfs_rpc_leader *replicas;
    const char *node_id; /* the node's id; copied */
    /* The node's current registration (RegisterNodeResponse.registration), asked for at every
       report (ReportFragmentsRequest.registration; the node itself is the channel token's).
       Called on the inventory's thread; must be thread-safe. NULL: 0. */
    uint64_t (*registration)(void *arg);
    void *registration_arg; /* borrowed */
    uint32_t page_size;     /* most ids per page; 0 means 8000 */
    int64_t rpc_timeout_ms; /* deadline of each page's call; 0 means 10000 */
    int64_t retry_max_ms;   /* longest wait between tries; 0 means 30000 */
};

/*
 * Start the (idle) thread. Returns 0 and *out (stop it with dfs_inventory_stop), or DFS_EINVAL (a
 * missing field), DFS_ENOMEM with *errmsg; on failure no thread runs.
 */
int dfs_inventory_start(const struct dfs_inventory_config *cfg, dfs_inventory **out, char **errmsg);

/* Ask for a full report (a new one if one is under way). Quick and thread-safe. */
void dfs_inventory_trigger(dfs_inventory *inv);

struct dfs_inventory_stats {
    uint64_t reports;    /* complete reports acknowledged */
    uint64_t pages;      /* pages acknowledged */
    uint64_t failures;   /* failed page calls */
    uint64_t last_count; /* fragments listed by the latest complete report */
};

/* Counters since start; thread-safe. */
void dfs_inventory_stats(dfs_inventory *inv, struct dfs_inventory_stats *out);

/* Wake the thread, join it (a page call in flight is waited out) and free everything. Accepts
   NULL. */
void dfs_inventory_stop(dfs_inventory *inv);

#endif /* DFS_SERVICES_STORAGE_INVENTORY_H */
