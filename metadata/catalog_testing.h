/* Fixtures for the metadata modules' tests: a catalog in memory with nodes and committed files. */
#ifndef DFS_METADATA_CATALOG_TESTING_H
#define DFS_METADATA_CATALOG_TESTING_H

#include "metadata/catalog.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Every helper fails the running cmocka test (fail_msg) when the catalog refuses, so a test reads
 * as the steps it takes. Node i has the id "%032x" of 0xa0 + i, address 127.0.0.1:(7000 + i) and
 * zone "z(i % 3)"; a test controls its own clock (the times it passes).
 */

/* A new private catalog on ":memory:"; close with dfs_catalog_close. */
dfs_catalog *dfs_testing_catalog(void);

/* The id of node i into id (caller storage). */
void dfs_testing_node_id(int i, char id[DFS_ID_HEX + 1]);

/* Register nodes 0..n-1 at now_ms, each reporting free_bytes free (capacity twice that). */
void dfs_testing_register(dfs_catalog *cat, int n, uint64_t free_bytes, int64_t now_ms);

/* Node i reports free_bytes free in a heartbeat at now_ms (and is alive again). */
void dfs_testing_heartbeat(dfs_catalog *cat, int i, uint64_t free_bytes, int64_t now_ms);

/* Node i's state set by operator decision (draining, decommissioned, alive). */
void dfs_testing_set_state(dfs_catalog *cat, int i, enum dfs_node_state state);

/* Every node (dfs_catalog_nodes_list); caller frees with free(). */
struct dfs_node_rec *dfs_testing_nodes(dfs_catalog *cat, size_t *n);

/*
 * Create and commit a file at `path` of `size` bytes whose fragment f is on the nodes
 * nodes[f * copies .. + copies) (node numbers as above; copies is k, or 1 for erasure code),
 * cut as the service cuts it (replication: ceil(size / F) bytes a fragment, the last ones
 * shorter; erasure: every fragment `fragment_size`, cell 64). Checksums are 0x1000 + index.
 * Returns the committed file with its layout (dfs_catalog_file_rec_free).
 */
struct dfs_file_rec *dfs_testing_put(dfs_catalog *cat, const char *path, uint64_t size,
                                     const struct dfs_redundancy *red, enum dfs_policy policy,
                                     const int *nodes, int64_t now_ms);

/*
 * Every row of every table of the catalog file at `path` (schema_version aside: it stamps
 * migrations with the wall clock; the replication table too unless with_replication: a replica
 * that installed a snapshot holds the snapshot's index, which may be a read barrier's), as sorted
 * text, read through a connection of its own. Two catalogs hold the same data when their dumps are
 * equal. Caller frees.
 */
char *dfs_testing_dump(const char *path, bool with_replication);

#endif /* DFS_METADATA_CATALOG_TESTING_H */
