/* Rebalancing: moves of copies off an over-used node (rebalance.h). */
#include "metadata/rebalance.h"

#include "common/err.h"
#include "common/log.h"
#include "metadata/repairplan.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static uint64_t copies_bytes_of(const struct dfs_node_copies *v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].node_id, id) == 0)
            return v[i].bytes;
    return 0;
}

int dfs_rebalance_step(dfs_catalog *cat, dfs_placer *placer, const struct dfs_node_rec *nodes,
                       size_t nnodes, const struct dfs_rebalance_config *cfg, int64_t now_ms,
                       size_t *nmoves, char **errmsg)
{
    if (nmoves != NULL)
        *nmoves = 0;
    if (cfg->threshold_pct < 0)
        return DFS_OK;
    uint64_t queued = 0, running = 0;
    int rc = dfs_catalog_repair_counts(cat, &queued, &running, errmsg);
    if (rc != DFS_OK || queued + running > 0)
        return rc;
    struct dfs_node_copies *cp = NULL;
    size_t ncp = 0;
    rc = dfs_catalog_node_copies(cat, &cp, &ncp, errmsg);
    if (rc != DFS_OK)
        return rc;
    uint64_t *usage = calloc(nnodes + 1, sizeof *usage);
    size_t alive = 0, fullest = SIZE_MAX;
    long double sum = 0;
    for (size_t i = 0; usage != NULL && i < nnodes; i++) {
        if (nodes[i].state != DFS_NODE_ALIVE)
            continue;
        usage[i] = copies_bytes_of(cp, ncp, nodes[i].id);
        sum += usage[i];
        alive++;
        if (fullest == SIZE_MAX || usage[i] > usage[fullest])
            fullest = i;
    }
    free(cp);
    if (usage == NULL || alive < 2 || usage[fullest] == 0) {
        free(usage);
        return DFS_OK;
    }
    long double mean = sum / alive;
    if ((long double)usage[fullest] <= mean * (1.0L + cfg->threshold_pct / 100.0L)) {
        free(usage);
        return DFS_OK;
    }
    const char *from = nodes[fullest].id;
    char(*ids)[DFS_FRAGMENT_ID_HEX + 1] = NULL;
    uint64_t *sizes = NULL;
    size_t n = 0, moves = 0;
    rc = dfs_catalog_rebalance_candidates(cat, from, NULL, 4 * cfg->max + 16, &ids, &sizes, &n,
                                          errmsg);
    if (rc != DFS_OK)
        n = 0;
    for (size_t i = 0; i < n && moves < cfg->max; i++) {
        char file_id[DFS_ID_HEX + 1];
        memcpy(file_id, ids[i], DFS_ID_HEX);
        file_id[DFS_ID_HEX] = '\0';
        uint32_t index = (uint32_t)strtoul(ids[i] + DFS_ID_HEX, NULL, 16);
        struct dfs_file_rec *f = NULL;
        struct dfs_repairplan_nodes l;
        if (dfs_catalog_file_get_id(cat, file_id, &f, NULL) != DFS_OK)
            continue;
        if (index >= f->nfragments || dfs_repairplan_nodes(f, index, NULL, 0, &l) != DFS_OK) {
            dfs_catalog_file_rec_free(f);
            continue;
        }
        /* The moved copy is not an anchor: the others keep the fragment in its set. */
        size_t np = 0;
        for (size_t j = 0; j < l.nplaced; j++)
            if (strcmp(l.placed[j], from) != 0)
                l.placed[np++] = l.placed[j];
        l.nplaced = np;
        bool erasure = f->redundancy.scheme == DFS_SCHEME_ERASURE;
        struct dfs_placement_request req = {
            .policy = f->policy,
            .k = 1,
            .width = erasure ? f->nfragments : f->redundancy.replicas,
            .placed = l.placed,
            .nplaced = l.nplaced,
            .exclude = l.exclude,
            .nexclude = l.nexclude,
            .fallback = false,
        };
        const char *target = NULL;
        if (dfs_placer_choose(placer, &req, sizes[i], nodes, nnodes, now_ms, &target, NULL, NULL) ==
            DFS_OK) {
            size_t t = 0;
            while (t < nnodes && strcmp(nodes[t].id, target) != 0)
                t++;
            bool queued_one = false;
            if (t < nnodes && usage[t] + sizes[i] < usage[fullest] &&
                dfs_catalog_repair_queue(cat, ids[i], DFS_REPAIR_REBALANCE, from, target, now_ms,
                                         &queued_one, NULL) == DFS_OK &&
                queued_one) {
                usage[t] += sizes[i];
                usage[fullest] -= sizes[i];
                moves++;
            }
        }
        dfs_repairplan_nodes_clear(&l);
        dfs_catalog_file_rec_free(f);
    }
    if (moves > 0)
        dfs_log(DFS_LOG_INFO,
                "rebalance moves queued from=%s count=%zu mean_bytes=%.0Lf threshold_pct=%" PRId32,
                from, moves, mean, cfg->threshold_pct);
    free(ids);
    free(sizes);
    free(usage);
    if (nmoves != NULL)
        *nmoves = moves;
    return rc;
}
