/* The placer: node choices for the metadata service, with reservations and saved placement sets. */
#ifndef DFS_METADATA_PLACER_H
#define DFS_METADATA_PLACER_H

#include "metadata/catalog.h"
#include "metadata/placement.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * metadata/placement.h decides; the placer feeds it what the catalog knows and remembers what
 * the choices did:
 *
 *   - Node state -> placement candidate: alive nodes are writable; dead, draining and
 *     decommissioned ones have left (their copysets and groups are repaired); suspect ones stay
 *     in their sets without taking anything.
 *   - Reservations: the bytes planned onto a node since the node's last report. least_used sees
 *     each node's reported free bytes less these. The count belongs to the report stamped
 *     last_heartbeat_ms; a node record with a newer heartbeat brings new figures and starts the
 *     count again at 0. The counts live in memory only (a restart forgets them: the next
 *     heartbeats give fresh figures anyway).
 *   - Placement sets (min_copy copysets, buddy groups): loaded from the catalog at creation,
 *     synced with the node list at every choice, saved back to the catalog when they change. A
 *     save that fails is logged and retried at the next choice of that family.
 *   - Randomness: one dfs_rng, seeded from the configuration (0: from the kernel; the seed is
 *     kept, so a run can be replayed).
 *
 * Times are passed in (now_ms), never read: the catalog stamps a saved family with them.
 *
 * Thread safety: every verb may be called from any thread; one mutex inside serialises the
 * choices. Lock order: the placer's mutex, then the catalog's own (saving happens under it).
 */
typedef struct dfs_placer dfs_placer;

/* Widest placement the placer makes (k replicas, or K+M fragments). */
#define DFS_PLACER_WIDTH_MAX DFS_EC_WIDTH_MAX

struct dfs_placer_config {
    /* min_copy's scatter width S and buddy's group size G; 0 means w - 1 and 2w for a placement
       of w nodes (metadata/placement.h). */
    uint32_t scatter_width;
    uint32_t group_size;
    /* Seed of the randomness; 0: from the kernel (dfs_placer_seed tells which). */
    uint64_t seed;
};

/*
 * Create a placer over `cat` (borrowed: it must outlive the placer); cfg is copied. The families
 * saved in the catalog are loaded; one that cannot be read or used is logged and built again at
 * its first use (not an error). Returns 0 and *out (free with dfs_placer_destroy), or DFS_EINVAL
 * (a scatter width or group size placement.h refuses) / DFS_ENOMEM with *errmsg (caller frees).
 */
int dfs_placer_create(dfs_catalog *cat, const struct dfs_placer_config *cfg, dfs_placer **out,
                      char **errmsg);

/*
 * Forget the copysets and buddy groups in memory (and the reservations) and load them again from
 * the catalog, as at creation: for a replicated catalog whose state moved underneath (a replica
 * that becomes leader after following, or after a snapshot was installed). The randomness goes
 * on. Thread-safe. Returns 0, or DFS_ENOMEM / DFS_EINVAL with *errmsg (the placer is unchanged).
 */
int dfs_placer_reload(dfs_placer *p, char **errmsg);

/* Free the placer; NULL is a no-op. No other call may be running on it. */
void dfs_placer_destroy(dfs_placer *p);

/* The seed in use (the configured one, or the one drawn from the kernel). */
uint64_t dfs_placer_seed(const dfs_placer *p);

/*
 * Choose req->k nodes among nodes[0..nnodes) (the catalog's node list, as
 * dfs_catalog_nodes_list gives it; borrowed) for a placement of req->width (see
 * dfs_placement_request; req->policy resolved). The family of (policy, width) is synced first and
 * saved, stamped now_ms, when it changed or an earlier save failed. `bytes` is then reserved on
 * every chosen node. On success out[0..k) receive node ids (pointers into nodes[]: they live as
 * long as that array) and *fell_back (may be NULL) whether a min_copy/buddy choice had to leave
 * the copyset or group (req->fallback). Errors: DFS_EINVAL (a width above DFS_PLACER_WIDTH_MAX,
 * or as dfs_placement_choose), DFS_EPRECOND (not enough eligible nodes: see dfs_placement_choose),
 * DFS_ENOMEM, with *errmsg; out is then untouched and nothing is reserved.
 */
int dfs_placer_choose(dfs_placer *p, const struct dfs_placement_request *req, uint64_t bytes,
                      const struct dfs_node_rec *nodes, size_t nnodes, int64_t now_ms,
                      const char **out, bool *fell_back, char **errmsg);

/*
 * The bytes reserved on node n now (0 when none): what least_used subtracts from
 * n->usage.free_bytes. Like a choice, a record with a newer heartbeat than the count resets it.
 */
uint64_t dfs_placer_reserved(dfs_placer *p, const struct dfs_node_rec *n);

#endif /* DFS_METADATA_PLACER_H */
