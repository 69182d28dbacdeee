/* Reports from storage nodes, applied to the catalog (reports.h). */
#include "metadata/reports.h"

#include "common/err.h"
#include "common/log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* A damaged copy reported by its own node (reported: always; confirmed: when it was dropped). */
static void damage_counted(struct dfs_report_result *out, bool marked)
{
    out->damage_reported++;
    if (marked)
        out->damage_confirmed++;
}

int dfs_reports_apply(dfs_catalog *cat, const char *node_id, const struct dfs_report *r,
                      dfs_report_confirm_fn confirm, void *arg, int64_t now,
                      struct dfs_report_result *out, char **errmsg)
{
    memset(out, 0, sizeof *out);
    struct dfs_node_rec node;
    char *err = NULL;
    int rc = dfs_catalog_node_get(cat, node_id, &node, &err);
    if (rc == DFS_OK && node.registration != r->registration)
        rc = dfs_seterr(&err, DFS_EPRECOND,
                        "node %s was registered again since (now at %s): this process was "
                        "replaced, its report is not taken",
                        node.id, node.address);
    for (size_t i = 0; rc == DFS_OK && i < r->ncorrupt; i++) {
        bool marked = false;
        rc = dfs_catalog_report_corrupt(cat, node.id, r->corrupt[i], now, &marked, &err);
        out->marked_lost += marked;
        damage_counted(out, marked);
    }
    /* Copies the node found missing on a read that named them: a delete or a repair may have
       changed things since, so only a recorded copy the node confirms absent is lost. */
    for (size_t i = 0; rc == DFS_OK && i < r->nmissing; i++) {
        bool recorded = false, marked = false;
        rc = dfs_catalog_copy_get(cat, r->missing[i], node.id, &recorded, NULL, NULL, &err);
        if (rc != DFS_OK || !recorded)
            continue;
        char *serr = NULL;
        int there = confirm(arg, &node, r->missing[i], &serr);
        if (there == 0)
            rc = dfs_catalog_report_missing(cat, node.id, r->missing[i], now, &marked, &err);
        else if (there < 0)
            dfs_log(DFS_LOG_WARN, "cannot confirm a missing copy, kept fragment=%s node=%s err=%s",
                    r->missing[i], node.id, serr != NULL ? serr : dfs_strerror(there));
        free(serr);
        out->marked_lost += marked;
        damage_counted(out, marked);
    }
    /* The scrubber read these whole and every block matched its CRC: what they hold must also be
       what the catalog says (a copy rewritten consistently with other data passes its own
       checks, and only this comparison tells it from the catalog's). */
    for (size_t i = 0; rc == DFS_OK && i < r->nscrubbed; i++) {
        const struct dfs_report_sum *f = &r->scrubbed[i];
        bool recorded = false, marked = false;
        uint64_t size = 0;
        uint32_t sum = 0;
        rc = dfs_catalog_copy_get(cat, f->fragment_id, node.id, &recorded, &size, &sum, &err);
        if (rc != DFS_OK || !recorded || (f->size == size && f->checksum == sum))
            continue;
        dfs_log(DFS_LOG_WARN,
                "scrubbed copy differs from the catalog fragment=%s node=%s size=%" PRIu64
                " checksum=%08" PRIx32 " catalog_size=%" PRIu64 " catalog_checksum=%08" PRIx32,
                f->fragment_id, node.id, f->size, f->checksum, size, sum);
        rc = dfs_catalog_report_corrupt(cat, node.id, f->fragment_id, now, &marked, &err);
        out->mismatched += marked;
        out->marked_lost += marked;
        damage_counted(out, marked);
    }
    if (rc == DFS_OK && r->full)
        rc = dfs_catalog_inventory_page(cat, node.id, r->page, r->present, r->npresent, now, &err);
    if (rc == DFS_OK && r->full && r->last) {
        char(*missing)[DFS_FRAGMENT_ID_HEX + 1] = NULL;
        size_t nmissing = 0;
        rc = dfs_catalog_inventory_missing(cat, node.id, &missing, &nmissing, &err);
        /* A put may have committed after the node listed its directory: ask before marking. */
        for (size_t i = 0; rc == DFS_OK && i < nmissing; i++) {
            char *serr = NULL;
            int there = confirm(arg, &node, missing[i], &serr);
            bool marked = false;
            if (there == 0)
                rc = dfs_catalog_report_missing(cat, node.id, missing[i], now, &marked, &err);
            else if (there < 0)
                dfs_log(DFS_LOG_WARN,
                        "inventory: cannot confirm a missing copy, kept fragment=%s node=%s "
                        "err=\"%s\"",
                        missing[i], node.id, serr != NULL ? serr : dfs_strerror(there));
            out->marked_lost += marked;
            free(serr);
        }
        free(missing);
        if (rc == DFS_OK)
            rc = dfs_catalog_inventory_finish(cat, node.id, now, &out->unknown, &err);
    }
    if (rc != DFS_OK) {
        if (errmsg != NULL)
            *errmsg = err;
        else
            free(err);
        return rc;
    }
    if (out->marked_lost > 0 || out->unknown > 0)
        dfs_log(DFS_LOG_INFO,
                "fragment report node=%s corrupt=%zu missing=%zu scrubbed=%zu mismatched=%" PRIu32
                " marked_lost=%" PRIu32 " unknown=%zu",
                node.id, r->ncorrupt, r->nmissing, r->nscrubbed, out->mismatched, out->marked_lost,
                out->unknown);
    return DFS_OK;
}
