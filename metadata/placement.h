/* Placement: which storage nodes each fragment goes to (DESIGN.md, "Placement policies"). */
#ifndef DFS_METADATA_PLACEMENT_H
#define DFS_METADATA_PLACEMENT_H

#include "common/rng.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Pure code: no SQLite, no gRPC, no clock, no global state. The same inputs and the same seed give
 * the same choice on every machine, so the simulator and the tests replay exactly what the metadata
 * service would do.
 */

/*
 * The placement policies. The numbers are those of dfs.v1.Policy (types.proto), so the service
 * glue may convert with a cast; the catalog stores the names (dfs_placement_policy_name), never
 * the numbers.
 */
enum dfs_policy {
    DFS_POLICY_UNSPECIFIED = 0, /* "use the cluster default": resolve it before placing */
    DFS_POLICY_RANDOM = 1,      /* k distinct nodes uniformly at random */
    DFS_POLICY_MIN_COPY = 2,    /* copysets (Cidon et al.): a random primary, then its copyset */
    DFS_POLICY_BUDDY = 3,       /* buddy groups larger than k; k distinct nodes inside one */
    DFS_POLICY_LEAST_USED = 4,  /* the k nodes with the most free space */
};

/*
 * "random", "min_copy", "buddy", "least_used"; "unspecified" for DFS_POLICY_UNSPECIFIED and
 * "unknown" for a value outside the enum. A static string, never NULL.
 */
const char *dfs_placement_policy_name(enum dfs_policy policy);

/*
 * Parse a policy name as dfs_placement_policy_name spells it ('-' is accepted for '_', so
 * "least-used" works on a command line). "unspecified" is not accepted. Returns 0 and sets *out,
 * or DFS_EINVAL with the list of valid names in *errmsg.
 */
int dfs_placement_policy_parse(const char *s, enum dfs_policy *out, char **errmsg);

/*
 * One candidate node, as the caller sees it when placing (usually built from the catalog's node
 * list). All pointers are borrowed for the duration of the call only.
 */
struct dfs_placement_node {
    const char *id;      /* node id; ids must be distinct across the candidate array */
    const char *zone;    /* failure domain; NULL or "" for none (zone spreading comes later) */
    uint64_t free_bytes; /* for least_used */
    bool writable;       /* takes new fragments: the node is alive (not suspect, dead, draining) */
};

/*
 * What to place: k distinct nodes for one fragment (k = replicas, or K+M for the whole stripe of an
 * erasure-coded file, fragment i taking the i-th node).
 *
 * `placed` are the nodes the fragment already has or is planned on (when replacing a failed
 * target), `exclude` the nodes that must not be used for any other reason (they failed for this
 * fragment). Both are excluded from the choice; they are separate because group-based policies will
 * pick a replacement from the group of the `placed` nodes. Either may be NULL when its count is 0;
 * ids that match no candidate are ignored. Borrowed for the call.
 */
struct dfs_placement_request {
    enum dfs_policy policy;
    size_t k;
    const char *const *placed;
    size_t nplaced;
    const char *const *exclude;
    size_t nexclude;
};

/*
 * State of the group-based policies: the copysets of min_copy and the buddy groups. They are built
 * from the node list, extended (never reshuffled) as nodes join, and persisted by the catalog so
 * they survive restarts. Today the object carries only its configuration; random and least_used
 * need no state at all.
 *
 * Not thread-safe: the caller serialises dfs_placement_choose calls that share one object (or gives
 * each thread its own), exactly as for the dfs_rng it passes.
 */
typedef struct dfs_placement dfs_placement;

struct dfs_placement_config {
    uint32_t scatter_width; /* min_copy: the scatter width S; 0 means k - 1 (plain copysets) */
    uint32_t group_size;    /* buddy: nodes per buddy group; 0 means 2k. 1 is invalid */
};

/*
 * Create placement state. cfg may be NULL for the defaults; it is copied. On success *out is the
 * new object, freed with dfs_placement_destroy. On failure returns DFS_EINVAL (bad configuration)
 * or DFS_ENOMEM with a message in *errmsg, and *out is untouched.
 */
int dfs_placement_create(const struct dfs_placement_config *cfg, dfs_placement **out,
                         char **errmsg);

/* Free placement state; NULL is a no-op. */
void dfs_placement_destroy(dfs_placement *pl);

/*
 * Choose req->k distinct nodes among nodes[0..nnodes) under req->policy.
 *
 * Eligible nodes are the writable ones that are neither `placed` nor `exclude`d. On success returns
 * 0 and out[0..k) holds k distinct indices into `nodes`, in random order (out[0] is not biased
 * towards low indices, so callers may treat it as the primary). `rng` supplies every random
 * decision and is advanced; `pl` is the group state, which may be NULL for the policies that need
 * none (random, least_used). Nothing is allocated.
 *
 * Errors (a message in *errmsg; out's contents are then unspecified):
 *   DFS_EPRECOND  fewer eligible nodes than k:
 *                 "need 3 distinct live storage nodes, 2 are available"
 *   DFS_EINVAL    k == 0, an unresolved or unknown policy, a policy not implemented yet
 *                 (min_copy, buddy, least_used), a candidate without an id, NULL arrays
 *
 * Cost: O(nnodes * (nplaced + nexclude) + k^2) for random, with no allocation, so a simulation
 * can call it millions of times.
 */
int dfs_placement_choose(const dfs_placement *pl, const struct dfs_placement_request *req,
                         const struct dfs_placement_node *nodes, size_t nnodes, dfs_rng *rng,
                         size_t *out, char **errmsg);

#endif /* DFS_METADATA_PLACEMENT_H */
