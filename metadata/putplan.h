/* Put plans: a new file's redundancy, layout and nodes, and a failed target's replacement. */
#ifndef DFS_METADATA_PUTPLAN_H
#define DFS_METADATA_PUTPLAN_H

#include "metadata/catalog.h"
#include "metadata/placer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * What the metadata service decides for CreateFile and ReplaceTarget, over the catalog and the
 * placer (both borrowed for each call). A plan is made against the node list of the moment; when
 * a planned node stops being alive before the catalog records the plan (DFS_EABORTED), the plan
 * is made again with the new list, up to DFS_PUTPLAN_ATTEMPTS times in all. Times are passed in.
 */
#define DFS_PUTPLAN_ATTEMPTS 3

/* The cluster's defaults for puts that leave them unset. */
struct dfs_put_defaults {
    uint32_t replicas;      /* k */
    uint32_t fragments;     /* F */
    enum dfs_policy policy; /* resolved: not DFS_POLICY_UNSPECIFIED */
};

/*
 * The redundancy a put asks for (types.proto's Redundancy as numbers; all zero when the request
 * has none), resolved: an unspecified scheme with data or parity counts is erasure code;
 * replication (or nothing) takes the default k and F for counts left 0; erasure code needs K >= 1.
 * The result passes dfs_catalog_redundancy_check. Errors: DFS_EINVAL with the reason ("unknown
 * redundancy scheme 7", "erasure code needs at least 1 data fragment", the check's).
 */
int dfs_putplan_redundancy(const struct dfs_redundancy *asked, const struct dfs_put_defaults *d,
                           struct dfs_redundancy *out, char **errmsg);

/* The policy a put asks for (dfs.v1.Policy's number; 0: the default). DFS_EINVAL when unknown. */
int dfs_putplan_policy(int asked, const struct dfs_put_defaults *d, enum dfs_policy *out,
                       char **errmsg);

/*
 * The layout of a file of `size` bytes (at most INT64_MAX) under a resolved redundancy:
 * replication cuts F contiguous pieces of ceil(size / F) bytes (the last ones may be shorter, or
 * empty); erasure code follows dfs_ec_layout (storage/ec.h), with *cell_size its cell (0 for
 * replication). Returns 0, or DFS_EINVAL for a size above INT64_MAX.
 */
int dfs_putplan_layout(uint64_t size, const struct dfs_redundancy *red, uint64_t *fragment_size,
                       uint32_t *cell_size);

/* A resolved CreateFile. Borrowed by the call. */
struct dfs_put_spec {
    const char *path; /* canonical */
    uint64_t size;
    struct dfs_redundancy redundancy; /* resolved */
    enum dfs_policy policy;           /* resolved */
    bool overwrite;
    uint64_t fragment_size; /* dfs_putplan_layout's */
    uint32_t cell_size;
    int64_t expires_ms; /* when the pending file is removed unless committed */
};

/*
 * Plan and record a pending file (dfs_catalog_file_create) at now_ms: each fragment's size as the
 * layout cuts it; replication places each fragment's k copies, erasure code places all K+M
 * fragments at once on distinct nodes (fragment i on the i-th node chosen); the placer reserves
 * the bytes. On success *out is the pending file with its layout (dfs_catalog_file_rec_free).
 * Errors: the placer's (DFS_EPRECOND: too few live nodes), the catalog's (DFS_EEXIST, ...,
 * DFS_EABORTED when the node list kept changing), DFS_ENOMEM, with *errmsg.
 */
int dfs_putplan_create(dfs_catalog *cat, dfs_placer *placer, const struct dfs_put_spec *spec,
                       int64_t now_ms, struct dfs_file_rec **out, char **errmsg);

/*
 * ReplaceTarget: target failed_node_id of fragment `index` of pending file file_id failed; choose
 * a node in its place and record it (dfs_catalog_file_replace_target) at now_ms. The fragment's
 * targets (for erasure code: every node of the file) are the placement's anchors, so min_copy
 * and buddy keep the survivors' copyset or group and zones are spread; the nodes that failed
 * this fragment and the failing one are excluded; outside the set only as a logged fallback.
 * *chosen (caller storage) gets the new target. With `chain` (replication), *others gets the
 * fragment's other targets as the plan stood, for the chain's forward tickets (malloc'd, caller
 * frees; NULL and 0 otherwise). Errors: DFS_EPRECOND (committed, or expired), DFS_EINVAL (no
 * such fragment), DFS_ENOTFOUND, the placer's and the catalog's, with *errmsg.
 */
int dfs_putplan_replace(dfs_catalog *cat, dfs_placer *placer, const char *file_id, uint32_t index,
                        const char *failed_node_id, bool chain, int64_t now_ms,
                        struct dfs_replica_rec *chosen, struct dfs_replica_rec **others,
                        size_t *nothers, char **errmsg);

#endif /* DFS_METADATA_PUTPLAN_H */
