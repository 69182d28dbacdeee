/* Rebalancing: moves of copies off an over-used node, queued as repairs. */
#ifndef DFS_METADATA_REBALANCE_H
#define DFS_METADATA_REBALANCE_H

#include "metadata/catalog.h"
#include "metadata/placer.h"

#include <stddef.h>
#include <stdint.h>

struct dfs_rebalance_config {
    /* A node is over-used when its recorded bytes exceed the alive nodes' mean by more than this
       percentage; negative: never rebalance. */
    int32_t threshold_pct;
    /* Moves queued per step at most. */
    uint32_t max;
};

/*
 * One rebalance check at now_ms over nodes[0..nnodes) (the catalog's node list; borrowed), with
 * the placer (for targets) and the catalog (borrowed for the call). Runs only when the repair
 * queue is empty: repairs come first, and the moves queued by one check finish before the next
 * one looks. When the alive node recording the most bytes (dfs_catalog_node_copies) exceeds the
 * alive nodes' mean by more than the threshold, up to cfg->max of its copies are queued as
 * DFS_REPAIR_REBALANCE moves (dfs_catalog_repair_queue, with the chosen target) to nodes the
 * file's policy allows (inside the copyset or group: no fallback; the moved copy is no anchor),
 * each only when it strictly reduces the spread (the target ends below where the source was), so
 * repeated checks converge and never ping-pong. A fragment the catalog or placer cannot serve
 * is passed over. *moves (may be NULL) gets how many were queued; they are logged.
 * Errors: the catalog's, from reading the queue length, the recorded bytes or the candidates,
 * with *errmsg (nothing is queued then).
 */
int dfs_rebalance_step(dfs_catalog *cat, dfs_placer *placer, const struct dfs_node_rec *nodes,
                       size_t nnodes, const struct dfs_rebalance_config *cfg, int64_t now_ms,
                       size_t *moves, char **errmsg);

#endif /* DFS_METADATA_REBALANCE_H */
