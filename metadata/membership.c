/* Membership: the sweep's grace, registration takeovers, operator transitions (membership.h). */
#include "metadata/membership.h"

#include "common/err.h"
#include "common/log.h"

#include <inttypes.h>
#include <string.h>

int dfs_membership_sweep(dfs_catalog *cat, int64_t created_ms, int64_t now,
                         int64_t suspect_after_ms, int64_t dead_after_ms, char **errmsg)
{
    int64_t up = now - created_ms;
    int64_t dead_after = up < dead_after_ms ? INT64_MAX : dead_after_ms;
    if (up < suspect_after_ms)
        return DFS_OK;
    return dfs_catalog_nodes_sweep(cat, now, suspect_after_ms, dead_after, NULL, NULL, errmsg);
}

bool dfs_membership_live_elsewhere(const struct dfs_node_rec *old, const char *address,
                                   int64_t now_ms, int64_t suspect_after_ms, int64_t *silent_ms)
{
    int64_t silent = now_ms - old->last_heartbeat_ms;
    if (silent_ms != NULL)
        *silent_ms = silent;
    return old->registration != 0 && silent < suspect_after_ms &&
           strcmp(old->address, address) != 0;
}

int dfs_membership_decommission_check(dfs_catalog *cat, const char *id, char **errmsg)
{
    struct dfs_layout *l = NULL;
    struct dfs_health before, after;
    memset(&before, 0, sizeof before);
    memset(&after, 0, sizeof after);
    int rc = dfs_catalog_layout(cat, &l, errmsg);
    size_t node = 0;
    while (rc == DFS_OK && node < l->nnodes && strcmp(l->nodes[node].id, id) != 0)
        node++;
    if (rc != DFS_OK || node == l->nnodes) {
        dfs_catalog_layout_free(l);
        return rc;
    }
    enum dfs_node_state now = l->nodes[node].state;
    rc = dfs_catalog_health_classify(l, NULL, 0, &before, errmsg);
    l->nodes[node].state = DFS_NODE_DECOMMISSIONED;
    if (rc == DFS_OK)
        rc = dfs_catalog_health_classify(l, NULL, 0, &after, errmsg);
    if (rc == DFS_OK && after.lost > before.lost) {
        uint64_t n = after.lost - before.lost;
        /* Once more with the paths, for an example: one lost after and not before. */
        dfs_catalog_health_clear(&after);
        rc = dfs_catalog_health_classify(l, NULL, SIZE_MAX, &after, errmsg);
        l->nodes[node].state = now;
        dfs_catalog_health_clear(&before);
        if (rc == DFS_OK)
            rc = dfs_catalog_health_classify(l, NULL, SIZE_MAX, &before, errmsg);
        const char *example = "";
        for (size_t i = 0; rc == DFS_OK && i < after.nlost_paths && example[0] == '\0'; i++) {
            bool old = false;
            for (size_t j = 0; j < before.nlost_paths && !old; j++)
                old = strcmp(after.lost_paths[i], before.lost_paths[j]) == 0;
            if (!old)
                example = after.lost_paths[i];
        }
        if (rc == DFS_OK)
            rc = dfs_seterr(errmsg, DFS_EPRECOND,
                            "node %s holds the only readable copies of %" PRIu64 " file%s (%s%s): "
                            "drain it first (dfs node drain) so that they are copied elsewhere, "
                            "or decommission it with --force and lose them",
                            id, n, n == 1 ? "" : "s", dfs_quote(example, &(struct dfs_quote){{0}}),
                            n > 1 ? ", ..." : "");
    }
    dfs_catalog_health_clear(&before);
    dfs_catalog_health_clear(&after);
    dfs_catalog_layout_free(l);
    return rc;
}

int dfs_membership_set_state(dfs_catalog *cat, const char *prefix, enum dfs_node_state want,
                             bool force, struct dfs_node_rec *out, char **errmsg)
{
    struct dfs_node_rec n;
    int rc = dfs_catalog_node_resolve(cat, prefix, &n, errmsg);
    if (rc == DFS_OK && want != DFS_NODE_DRAINING && want != DFS_NODE_DECOMMISSIONED &&
        want != DFS_NODE_ALIVE)
        rc = dfs_seterr(errmsg, DFS_EINVAL,
                        "a node can be set to NODE_DRAINING, NODE_DECOMMISSIONED or NODE_ALIVE, "
                        "not %s",
                        dfs_catalog_node_state_name(want));
    if (rc == DFS_OK && want == DFS_NODE_DRAINING &&
        (n.state == DFS_NODE_DEAD || n.state == DFS_NODE_DECOMMISSIONED))
        rc = dfs_seterr(errmsg, DFS_EPRECOND, "node %s is %s: %s", n.id,
                        dfs_catalog_node_state_name(n.state),
                        n.state == DFS_NODE_DEAD
                            ? "there is nothing to read from it (its copies are repaired from "
                              "the others); decommission it to retire it"
                            : "set it alive before draining it");
    if (rc == DFS_OK && want == DFS_NODE_ALIVE &&
        (n.state == DFS_NODE_DEAD || n.state == DFS_NODE_SUSPECT))
        rc = dfs_seterr(errmsg, DFS_EPRECOND,
                        "node %s is %s: heartbeats decide when it is alive again", n.id,
                        dfs_catalog_node_state_name(n.state));
    if (rc == DFS_OK && want == DFS_NODE_DECOMMISSIONED && n.state != want && !force)
        rc = dfs_membership_decommission_check(cat, n.id, errmsg);
    if (rc == DFS_OK && n.state != want) {
        rc = dfs_catalog_node_set_state(cat, n.id, want, errmsg);
        if (rc == DFS_OK)
            dfs_log(DFS_LOG_INFO, "node state changed by operator id=%s address=%s from=%s to=%s",
                    n.id, n.address, dfs_catalog_node_state_name(n.state),
                    dfs_catalog_node_state_name(want));
    }
    /* A drained node with nothing on it retires at once. */
    if (rc == DFS_OK && want == DFS_NODE_DRAINING)
        rc = dfs_catalog_nodes_finish_drains(cat, NULL, errmsg);
    if (rc == DFS_OK)
        rc = dfs_catalog_node_get(cat, n.id, &n, errmsg);
    if (rc == DFS_OK)
        *out = n;
    return rc;
}
