/* Placement policies. Only `random` is implemented so far; the others are reserved in the API. */
#include "metadata/placement.h"

#include "common/err.h"

#include <stdlib.h>
#include <string.h>

struct dfs_placement {
    struct dfs_placement_config cfg;
};

static const char *const policy_names[] = {
    [DFS_POLICY_UNSPECIFIED] = "unspecified", [DFS_POLICY_RANDOM] = "random",
    [DFS_POLICY_MIN_COPY] = "min_copy",       [DFS_POLICY_BUDDY] = "buddy",
    [DFS_POLICY_LEAST_USED] = "least_used",
};

const char *dfs_placement_policy_name(enum dfs_policy policy)
{
    if ((unsigned)policy >= sizeof policy_names / sizeof policy_names[0])
        return "unknown";
    return policy_names[policy];
}

int dfs_placement_policy_parse(const char *s, enum dfs_policy *out, char **errmsg)
{
    if (s != NULL) {
        for (int p = DFS_POLICY_RANDOM; p <= DFS_POLICY_LEAST_USED; p++) {
            const char *name = policy_names[p];
            size_t i = 0;
            while (name[i] != '\0' && (s[i] == name[i] || (s[i] == '-' && name[i] == '_')))
                i++;
            if (name[i] == '\0' && s[i] == '\0') {
                *out = (enum dfs_policy)p;
                return DFS_OK;
            }
        }
    }
    return dfs_seterr(errmsg, DFS_EINVAL,
                      "unknown placement policy '%s' (random, min_copy, buddy, least_used)",
                      s == NULL ? "" : s);
}

int dfs_placement_create(const struct dfs_placement_config *cfg, dfs_placement **out, char **errmsg)
{
    struct dfs_placement_config c = {0};
    if (cfg != NULL)
        c = *cfg;
    if (c.group_size == 1)
        return dfs_seterr(errmsg, DFS_EINVAL, "a buddy group needs at least 2 nodes");
    dfs_placement *pl = calloc(1, sizeof *pl);
    if (pl == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    pl->cfg = c;
    *out = pl;
    return DFS_OK;
}

void dfs_placement_destroy(dfs_placement *pl)
{
    free(pl);
}

static bool in_list(const char *id, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (list[i] != NULL && strcmp(id, list[i]) == 0)
            return true;
    }
    return false;
}

static bool eligible(const struct dfs_placement_node *node, const struct dfs_placement_request *req)
{
    return node->writable && !in_list(node->id, req->placed, req->nplaced) &&
           !in_list(node->id, req->exclude, req->nexclude);
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/*
 * Uniform k-subset of the m eligible nodes in uniformly random order. Floyd's algorithm draws k
 * distinct ranks in [0, m) with exactly k random numbers (each k-subset equally likely); the ranks
 * are then sorted, mapped to node indices in one pass over the candidates, and shuffled so that the
 * order is uniform too. out[] doubles as the scratch space, so nothing is allocated.
 */
static void choose_random(const struct dfs_placement_request *req,
                          const struct dfs_placement_node *nodes, size_t nnodes, size_t m,
                          dfs_rng *rng, size_t *out)
{
    size_t k = req->k;
    for (size_t j = m - k, got = 0; j < m; j++) {
        size_t t = (size_t)dfs_rng_below(rng, (uint64_t)j + 1);
        bool dup = false;
        for (size_t i = 0; i < got && !dup; i++)
            dup = out[i] == t;
        out[got++] = dup ? j : t;
    }
    qsort(out, k, sizeof out[0], cmp_size);
    size_t rank = 0, next = 0;
    for (size_t i = 0; i < nnodes && next < k; i++) {
        if (!eligible(&nodes[i], req))
            continue;
        if (rank == out[next])
            out[next++] = i;
        rank++;
    }
    for (size_t i = k; i > 1; i--) {
        size_t j = (size_t)dfs_rng_below(rng, i);
        size_t t = out[i - 1];
        out[i - 1] = out[j];
        out[j] = t;
    }
}

int dfs_placement_choose(const dfs_placement *pl, const struct dfs_placement_request *req,
                         const struct dfs_placement_node *nodes, size_t nnodes, dfs_rng *rng,
                         size_t *out, char **errmsg)
{
    (void)pl; /* no policy that needs the group state is implemented yet */
    if (req == NULL || rng == NULL || out == NULL || (nodes == NULL && nnodes > 0) ||
        (req->placed == NULL && req->nplaced > 0) || (req->exclude == NULL && req->nexclude > 0))
        return dfs_seterr(errmsg, DFS_EINVAL, "placement: missing argument");
    if (req->k == 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "placement: asked for 0 nodes");
    switch (req->policy) {
    case DFS_POLICY_RANDOM:
        break;
    case DFS_POLICY_MIN_COPY:
    case DFS_POLICY_BUDDY:
    case DFS_POLICY_LEAST_USED:
        return dfs_seterr(errmsg, DFS_EINVAL, "placement policy '%s' is not implemented yet",
                          dfs_placement_policy_name(req->policy));
    case DFS_POLICY_UNSPECIFIED:
    default:
        return dfs_seterr(errmsg, DFS_EINVAL, "placement: no policy given (%d)", (int)req->policy);
    }

    size_t writable = 0, m = 0;
    for (size_t i = 0; i < nnodes; i++) {
        if (nodes[i].id == NULL)
            return dfs_seterr(errmsg, DFS_EINVAL, "placement: candidate %zu has no node id", i);
        if (!nodes[i].writable)
            continue;
        writable++;
        if (eligible(&nodes[i], req))
            m++;
    }
    if (m < req->k) {
        if (writable == m)
            return dfs_seterr(errmsg, DFS_EPRECOND,
                              "need %zu distinct live storage node%s, %zu %s available", req->k,
                              req->k == 1 ? "" : "s", m, m == 1 ? "is" : "are");
        return dfs_seterr(errmsg, DFS_EPRECOND,
                          "need %zu distinct live storage node%s, %zu %s available (%zu more "
                          "already hold this fragment or failed for it)",
                          req->k, req->k == 1 ? "" : "s", m, m == 1 ? "is" : "are", writable - m);
    }
    choose_random(req, nodes, nnodes, m, rng, out);
    return DFS_OK;
}
