/* Reports from storage nodes: corrupt and missing copies, scrubbed checksums, inventories. */
#ifndef DFS_METADATA_REPORTS_H
#define DFS_METADATA_REPORTS_H

#include "metadata/catalog.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A fragment a node's scrubber read whole and found good in itself. */
struct dfs_report_sum {
    const char *fragment_id;
    uint64_t size;
    uint32_t checksum;
};

/* One ReportFragments call, as plain data. Everything is borrowed for the call. */
struct dfs_report {
    uint64_t registration; /* the reporting process's registration */
    const char *const *corrupt;
    size_t ncorrupt;
    const char *const *missing;
    size_t nmissing;
    const struct dfs_report_sum *scrubbed;
    size_t nscrubbed;
    /* A page of a full inventory: `page` from 0, the last one with `last`. */
    bool full;
    uint32_t page;
    bool last;
    const char *const *present;
    size_t npresent;
};

/*
 * Asks the node whether it holds fragment_id: 0 (absent), 1 (present), or a negative code when
 * it could not tell (*errmsg then says why; the caller frees it).
 */
typedef int (*dfs_report_confirm_fn)(void *arg, const struct dfs_node_rec *node,
                                     const char *fragment_id, char **errmsg);

/* What a report did. */
struct dfs_report_result {
    uint32_t marked_lost; /* copies dropped (their repair queued unless the fragment is lost) */
    uint32_t mismatched;  /* scrubbed copies that differ from the catalog, dropped */
    size_t unknown;       /* inventory fragments the catalog does not expect, queued for removal */
    /* Damaged copies: reported by the node (corrupt, missing confirmed or not, mismatched) and
       confirmed (dropped), for the service's counters. */
    uint64_t damage_reported, damage_confirmed;
};

/*
 * Apply node node_id's report at now_ms, in this order (each rule the catalog's verb says more
 * of):
 *   - the node's current registration must be r->registration (DFS_EPRECOND: this process was
 *     replaced, its report is not taken);
 *   - corrupt: each copy is dropped (dfs_catalog_report_corrupt);
 *   - missing (a read found it absent): a delete or a repair may have changed things since, so
 *     only a recorded copy that `confirm` finds absent is dropped (dfs_catalog_report_missing);
 *     one it cannot tell about is kept and logged;
 *   - scrubbed: a recorded copy whose size or checksum differs from the catalog's is dropped as
 *     corrupt and logged (a copy rewritten consistently with other data passes its own checks;
 *     only this comparison tells it from the catalog's);
 *   - a full inventory's page is stored; after the last one, every recorded copy it lacks is
 *     confirmed with the node (a put may have committed after the node listed its directory)
 *     and dropped when absent, and the fragments the catalog does not expect are queued for
 *     removal (dfs_catalog_inventory_finish).
 * A report that changed anything is logged. *out counts what was done, also when an error stops
 * the report midway (what was applied before it stays). Errors: DFS_EPRECOND, DFS_ENOTFOUND (no
 * such node), the catalog's, with *errmsg.
 */
int dfs_reports_apply(dfs_catalog *cat, const char *node_id, const struct dfs_report *r,
                      dfs_report_confirm_fn confirm, void *arg, int64_t now_ms,
                      struct dfs_report_result *out, char **errmsg);

#endif /* DFS_METADATA_REPORTS_H */
