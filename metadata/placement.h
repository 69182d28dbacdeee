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
 *
 * DEFINITIONS (they refine DESIGN.md; where it is ambiguous these hold).
 *
 * Width. The width w of a placement is the number of distinct nodes it picks: k for the copies of
 * one replicated fragment, K+M for the fragments of an erasure-coded file (fragment i on the i-th
 * node). The copysets and buddy groups are kept per FAMILY (policy, w), since a cluster serves
 * several widths at once and a copyset of 3 is no use to a 4+2 file.
 *
 * Members. A family's members are the nodes it knows: every node handed to dfs_placement_sync that
 * has not left (`gone`). Members that are not writable (suspect) stay in their sets; placements
 * just avoid the sets they make unusable until they are writable again.
 *
 * random      w distinct writable nodes, uniformly at random.
 *
 * min_copy    Copysets (Cidon et al., USENIX ATC 2013) with scatter width S (default w-1):
 *             P = ceil(S / (w-1)) random permutations of the members (P = 1 when w = 1), each cut
 *             into consecutive copysets of exactly w nodes. When N mod w = l != 0, the last l nodes
 *             of a permutation form a copyset completed with w-l other members drawn at random
 *             (from the same permutation, i.e. from all members). So EVERY copyset has exactly w
 *             distinct nodes and every member is in at least one copyset of each permutation.
 *             (DESIGN.md says leftovers "join existing sets"; that would make sets larger than w,
 *             and the replica sets would no longer be the copysets, so they are completed instead.)
 *             Placement: among copysets whose members are all writable, a primary is drawn
 *             uniformly among the nodes that are in such a copyset, then one of the primary's
 *             all-writable copysets uniformly; its w nodes are the result. With every node
 *             writable, the distinct replica sets produced are exactly the distinct copysets.
 *             Copysets of different permutations may coincide (certain when N = w and P > 1).
 *
 * buddy       Buddy groups of size G (default 2w; a configured G below w is raised to w for that
 *             family): a random permutation cut into groups of G; the leftovers (< G) are spread
 *             round-robin over the groups, so groups hold G..2G-1 nodes; with N < G, one group of
 *             all nodes. Placement: a group is drawn with probability proportional to its number of
 *             writable nodes, among the groups with at least w writable nodes, then w distinct
 *             writable nodes uniformly inside it. (So each writable node is picked with the same
 *             probability, w / writable nodes, when every group is usable.)
 *
 * least_used  The w writable nodes with the most free_bytes, ties broken uniformly at random. The
 *             caller passes in free_bytes the node's last reported free space less what it has
 *             planned onto the node since that report (the metadata service keeps the
 *             reservations).
 *
 * Zones. Zone mode is on for a choice when the writable nodes span at least w distinct zones
 * (NULL and "" are the same zone, "no zone"; it counts as one zone among the others). In zone
 * mode the w nodes of a placement are in w distinct zones, under every policy: random draws each
 * node uniformly among the eligible nodes of zones not used yet; least_used takes the most free
 * node among the zones not used yet; min_copy and buddy build their sets so that they span zones
 * (each block of a permutation is drawn one node per zone, from the zones with the most nodes
 * left, so every copyset spans w zones whenever the zone sizes allow it; when one zone holds more
 * than its share, the number of distinct zones per set is maximised greedily and some sets repeat
 * a zone), and buddy draws inside a group one node per unused zone while it can. Nodes already
 * holding the fragment (`placed`) count as used zones. With fewer than w zones, zones are ignored.
 *
 * Stability. The sets are built once (by the first dfs_placement_sync of a family), exported for
 * the catalog, and afterwards only extended or repaired, never reshuffled:
 *   - join: in each min_copy permutation the new members are cut into copysets among themselves
 *     (zone-interleaved), the leftover completed with random existing members (preferring zones
 *     the set lacks); a new buddy member joins the smallest group (preferring one that lacks its
 *     zone), and a group that reaches 2G splits in two (G and the rest, each spanning zones);
 *   - leave (a node `gone`, or absent from the array): in each copyset holding it, the node is
 *     replaced by a random writable member not already in the set, preferring a zone the set
 *     lacks (a non-writable member when no writable one is left); it leaves its buddy group, and a
 *     group whose membership drops below w merges into the smallest other group (splitting again
 *     if that reaches 2G). Merging follows membership, not writability, so a group whose nodes
 *     are merely suspect is not torn apart; such a group is just skipped while it cannot place.
 *   - when fewer than w members remain, a min_copy family drops its copysets, and builds them
 *     again once there are w members.
 *   - a changed scatter width adds permutations (or drops the last ones); a changed group size
 *     rebuilds the buddy groups.
 * Every N >= w works, N a multiple of w or not: no member is left out of the sets.
 */

/*
 * The placement policies. The numbers are those of dfs.v1.Policy (types.proto), so the service
 * glue may convert with a cast; the catalog stores the names (dfs_placement_policy_name), never
 * the numbers.
 */
enum dfs_policy {
    DFS_POLICY_UNSPECIFIED = 0, /* "use the cluster default": resolve it before placing */
    DFS_POLICY_RANDOM = 1,      /* w distinct writable nodes uniformly at random */
    DFS_POLICY_MIN_COPY = 2,    /* copysets (Cidon et al.): a random primary, then its copyset */
    DFS_POLICY_BUDDY = 3,       /* buddy groups larger than w; w distinct nodes inside one */
    DFS_POLICY_LEAST_USED = 4,  /* the w nodes with the most free space */
};

/* Largest width a family may have (one placement of this many distinct nodes). */
#define DFS_PLACEMENT_WIDTH_MAX 1024

/* Largest scatter width and group size dfs_placement_create accepts. */
#define DFS_PLACEMENT_SCATTER_MAX 4096
#define DFS_PLACEMENT_GROUP_MAX   4096

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

/* True for the policies that keep sets (min_copy, buddy). */
bool dfs_placement_policy_has_sets(enum dfs_policy policy);

/*
 * One candidate node, as the caller sees it when placing (usually built from the catalog's node
 * list). All pointers are borrowed for the duration of the call only.
 */
struct dfs_placement_node {
    const char *id;      /* node id; ids must be distinct across the candidate array */
    const char *zone;    /* failure domain; NULL or "" for none */
    uint64_t free_bytes; /* least_used: reported free space less what was planned since */
    bool writable;       /* takes new fragments now (alive: not suspect, dead, draining) */
    bool gone;           /* left the cluster (dead, decommissioned...): dfs_placement_sync takes
                            it out of the copysets and groups. A gone node is never writable. */
};

/*
 * What to place: k distinct nodes, for a placement of width `width` (0 means k): a fresh
 * placement has k == width; replacing one failed target of a placement has k == 1 and the width
 * of the file (it selects the family of copysets or groups).
 *
 * `placed` are the nodes the fragment (for erasure code: the file) already has or is planned on,
 * `exclude` the nodes that must not be used for any other reason (they failed for it). Both are
 * excluded from the choice. The placed nodes that are not excluded are the ANCHORS: min_copy and
 * buddy choose inside a copyset or group that holds every anchor (so the fragment stays in one
 * set), and every policy avoids the anchors' zones in zone mode. Either array may be NULL when
 * its count is 0; ids that match no candidate are ignored. Borrowed for the call.
 *
 * fallback: min_copy and buddy only. When no copyset or group holds the anchors and enough
 * eligible nodes, choose among all eligible nodes as random does (zone-aware) and say so in
 * dfs_placement_outcome.fallback, instead of failing with DFS_EPRECOND.
 */
struct dfs_placement_request {
    enum dfs_policy policy;
    size_t k;
    size_t width;
    const char *const *placed;
    size_t nplaced;
    const char *const *exclude;
    size_t nexclude;
    bool fallback;
};

/* How a choice was made (optional out-parameter of dfs_placement_choose). */
struct dfs_placement_outcome {
    size_t set;    /* min_copy/buddy: index of the copyset or group used, in the order of
                      dfs_placement_export; SIZE_MAX when none (other policies, fallback) */
    bool fallback; /* the request's fallback was used: the choice is outside any set */
    bool zones;    /* zone mode was on */
};

/*
 * State of the group-based policies: the families of copysets and buddy groups, with indexes over
 * them for fast placement. random and least_used need no state at all.
 *
 * Thread safety: none inside. dfs_placement_sync and dfs_placement_import modify the object;
 * dfs_placement_choose and dfs_placement_export only read it, so several threads may choose at
 * once (each with its own dfs_rng) as long as nobody syncs or imports meanwhile. The metadata
 * service serialises every use with one mutex.
 */
typedef struct dfs_placement dfs_placement;

struct dfs_placement_config {
    uint32_t scatter_width; /* min_copy: the scatter width S; 0 means w - 1 (plain copysets) */
    uint32_t group_size;    /* buddy: nodes per buddy group; 0 means 2w. 1 is invalid */
};

/*
 * Create placement state with no family. cfg may be NULL for the defaults; it is copied. On
 * success *out is the new object, freed with dfs_placement_destroy. On failure returns DFS_EINVAL
 * (bad configuration: group size 1, or above the maxima) or DFS_ENOMEM with a message in *errmsg,
 * and *out is untouched.
 */
int dfs_placement_create(const struct dfs_placement_config *cfg, dfs_placement **out,
                         char **errmsg);

/* Free placement state; NULL is a no-op. */
void dfs_placement_destroy(dfs_placement *pl);

/*
 * Bring family (policy, width) in line with the node array: create and build it when it does not
 * exist, add the new nodes (join), repair the sets of the nodes that are gone or absent (leave),
 * apply a changed scatter width or group size, and refresh the indexes that placement uses
 * (writability, zones, the positions of the members in `nodes`). *changed tells whether the sets
 * themselves changed, i.e. whether dfs_placement_export would now give something else: the caller
 * persists the family then. For random and least_used this is a no-op (*changed = false).
 *
 * dfs_placement_choose for min_copy and buddy uses the state of the last sync, with the array it
 * was given: call sync with the same array (same nodes, same order, same flags) before choosing,
 * and again whenever the array changes. A sync that finds nothing new costs O(nnodes) hash
 * lookups and allocates nothing. Draws from rng only when it builds, extends or repairs.
 *
 * Errors: DFS_EINVAL (width 0 or above DFS_PLACEMENT_WIDTH_MAX, a node without an id, two nodes
 * with one id, NULL arguments), DFS_ENOMEM. After an error the family is dropped (the next sync
 * builds it again) and *changed is untouched.
 */
int dfs_placement_sync(dfs_placement *pl, enum dfs_policy policy, size_t width,
                       const struct dfs_placement_node *nodes, size_t nnodes, dfs_rng *rng,
                       bool *changed, char **errmsg);

/*
 * Choose req->k distinct nodes among nodes[0..nnodes) under req->policy.
 *
 * Eligible nodes are the writable ones that are neither `placed` nor `exclude`d. On success returns
 * 0 and out[0..k) holds k distinct indices into `nodes`, in random order (out[0] is not biased
 * towards low indices, so callers may treat it as the primary). `rng` supplies every random
 * decision and is advanced. `pl` may be NULL for random and least_used; min_copy and buddy need
 * the family (policy, width) synced with this very array (dfs_placement_sync). `outcome` may be
 * NULL; on success it says how the choice was made.
 *
 * Errors (a message in *errmsg; out's contents are then unspecified):
 *   DFS_EPRECOND  fewer eligible nodes than k:
 *                   "need 3 distinct live storage nodes, 2 are available"
 *                 min_copy/buddy: enough nodes, but no copyset or group can take the choice now
 *                 (and no fallback asked for):
 *                   "no min_copy copyset of 3 nodes is fully writable (5 of 7 nodes are)"
 *   DFS_EINVAL    k == 0, k > width, an unresolved or unknown policy, a candidate without an id,
 *                 NULL arrays; min_copy/buddy: no state, or state synced with another array
 *   DFS_ENOMEM    (only min_copy/buddy with placed or excluded nodes, which need scratch space)
 *
 * Cost: min_copy and buddy without placed/excluded nodes: O(P + w) and O(log groups + G w), no
 * allocation, no scan of the nodes. With placed/excluded nodes: O(sets * w). random and
 * least_used: O(nnodes * (w + nplaced + nexclude)).
 */
int dfs_placement_choose(const dfs_placement *pl, const struct dfs_placement_request *req,
                         const struct dfs_placement_node *nodes, size_t nnodes, dfs_rng *rng,
                         size_t *out, struct dfs_placement_outcome *outcome, char **errmsg);

/* ---- Export and import: the families as plain data (the catalog persists them) ---------------- */

/* One copyset or buddy group. */
struct dfs_placement_set {
    uint32_t perm;   /* min_copy: the permutation it was cut from, 0..nperms-1; buddy: 0 */
    char **node_ids; /* nnodes distinct ids, each its own malloc'd string */
    size_t nnodes;   /* min_copy: always the width; buddy: the group's size */
};

/*
 * One family. Everything under it belongs to it: free with dfs_placement_states_free. A caller
 * that builds one for dfs_placement_import (the catalog) allocates the same way: the sets array,
 * each set's node_ids array and each id with malloc.
 */
struct dfs_placement_state {
    enum dfs_policy policy; /* DFS_POLICY_MIN_COPY or DFS_POLICY_BUDDY */
    uint32_t width;         /* w */
    uint32_t param;         /* the scatter width S (min_copy) or group size G (buddy) in effect */
    uint32_t nperms;        /* min_copy: P; buddy: 1 */
    struct dfs_placement_set *sets;
    size_t nsets;
};

/*
 * Copy family (policy, width) out: *out is a new state (free with dfs_placement_states_free(*out,
 * 1)), sets in index order, node ids in set order. Errors: DFS_ENOTFOUND (no such family),
 * DFS_EINVAL, DFS_ENOMEM.
 */
int dfs_placement_export(const dfs_placement *pl, enum dfs_policy policy, size_t width,
                         struct dfs_placement_state **out, char **errmsg);

/*
 * Replace family (st->policy, st->width) with a copy of *st (borrowed). Its members become the
 * nodes of its sets; call dfs_placement_sync before choosing (a sync with the same nodes reports
 * no change). Checked: policy, width, nperms >= 1 and perm < nperms, min_copy sets of exactly
 * width distinct ids, buddy groups non-empty and disjoint. Errors: DFS_EINVAL (the message says
 * what is wrong; the family is then unchanged), DFS_ENOMEM (the family is dropped).
 */
int dfs_placement_import(dfs_placement *pl, const struct dfs_placement_state *st, char **errmsg);

/*
 * Free an array of n states and everything under them (also a single state with n = 1). Partially
 * filled states are fine: NULL pointers are skipped. NULL is a no-op.
 */
void dfs_placement_states_free(struct dfs_placement_state *states, size_t n);

#endif /* DFS_METADATA_PLACEMENT_H */
