/* Membership: when nodes are swept, when a registration may take over, operator transitions. */
#ifndef DFS_METADATA_MEMBERSHIP_H
#define DFS_METADATA_MEMBERSHIP_H

#include "metadata/catalog.h"

#include <stdbool.h>
#include <stdint.h>

/*
 * The liveness sweep at now_ms of a service created at created_ms (dfs_catalog_nodes_sweep with
 * these timeouts). The catalog keeps the heartbeat times of the previous process, and the nodes
 * could not reach anyone while no service ran: counted from the latest heartbeat alone, an
 * outage longer than the dead timeout would declare every node dead at once and queue a repair
 * of every fragment. So silence counts from the service's start at the earliest: no node turns
 * suspect (dead) before the service has been up for the suspect (dead) timeout. Returns DFS_OK
 * (also when it is too early to sweep) or the sweep's error with *errmsg.
 */
int dfs_membership_sweep(dfs_catalog *cat, int64_t created_ms, int64_t now_ms,
                         int64_t suspect_after_ms, int64_t dead_after_ms, char **errmsg);

/*
 * A node registers at `address`; old is its record. True when it heartbeats within the suspect
 * window at another address: the caller must ask that address whether it still answers as the
 * node (a copy of its data directory running beside it) before this registration may take over.
 * *silent_ms (may be NULL) gets how long the node has been silent.
 */
bool dfs_membership_live_elsewhere(const struct dfs_node_rec *old, const char *address,
                                   int64_t now_ms, int64_t suspect_after_ms, int64_t *silent_ms);

/*
 * An operator sets the node whose id starts with `prefix` to `want`: draining, decommissioned or
 * alive only; no drain of a dead or decommissioned node; alive never for a dead or suspect node
 * (heartbeats decide); decommissioning refused (DFS_EPRECOND) when it would make files
 * unreadable (dfs_membership_decommission_check) unless `force`. A change is logged; a drain
 * finishes at once when the node holds nothing. *out gets the node as it is afterwards.
 * Errors: DFS_EINVAL (a state not allowed; a prefix as dfs_catalog_node_resolve), DFS_ENOTFOUND,
 * DFS_EPRECOND, the catalog's, with *errmsg.
 */
int dfs_membership_set_state(dfs_catalog *cat, const char *prefix, enum dfs_node_state want,
                             bool force, struct dfs_node_rec *out, char **errmsg);

/*
 * Whether retiring node `id` now would make files unreadable: the files the health rules
 * (dfs_catalog_health_classify) count as lost with the node decommissioned, beyond those lost
 * already. DFS_EPRECOND when some would be (a k=1 file, a fragment whose other copies are on dead
 * nodes, an erasure-coded file left with fewer than K fragments), naming one; DFS_OK otherwise
 * (also for a node the catalog does not know).
 */
int dfs_membership_decommission_check(dfs_catalog *cat, const char *id, char **errmsg);

#endif /* DFS_METADATA_MEMBERSHIP_H */
