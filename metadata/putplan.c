/* Put plans: CreateFile's redundancy, layout and nodes; ReplaceTarget's choice (putplan.h). */
#include "metadata/putplan.h"

#include "common/err.h"
#include "common/log.h"
#include "storage/ec.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int dfs_putplan_redundancy(const struct dfs_redundancy *in, const struct dfs_put_defaults *d,
                           struct dfs_redundancy *out, char **errmsg)
{
    memset(out, 0, sizeof *out);
    enum dfs_scheme scheme = in->scheme;
    if (scheme == DFS_SCHEME_UNSPECIFIED && (in->data != 0 || in->parity != 0))
        scheme = DFS_SCHEME_ERASURE;
    switch (scheme) {
    case DFS_SCHEME_UNSPECIFIED:
    case DFS_SCHEME_REPLICATION:
        out->scheme = DFS_SCHEME_REPLICATION;
        out->replicas = in->replicas != 0 ? in->replicas : d->replicas;
        out->fragments = in->fragments != 0 ? in->fragments : d->fragments;
        break;
    case DFS_SCHEME_ERASURE:
        out->scheme = DFS_SCHEME_ERASURE;
        out->data = in->data;
        out->parity = in->parity;
        if (in->data == 0)
            return dfs_seterr(errmsg, DFS_EINVAL, "erasure code needs at least 1 data fragment");
        break;
    default:
        return dfs_seterr(errmsg, DFS_EINVAL, "unknown redundancy scheme %d", (int)scheme);
    }
    return dfs_catalog_redundancy_check(out, errmsg);
}

int dfs_putplan_policy(int in, const struct dfs_put_defaults *d, enum dfs_policy *out,
                       char **errmsg)
{
    if (in == DFS_POLICY_UNSPECIFIED) {
        *out = d->policy;
        return DFS_OK;
    }
    if (in < DFS_POLICY_RANDOM || in > DFS_POLICY_LEAST_USED)
        return dfs_seterr(errmsg, DFS_EINVAL, "unknown placement policy %d", in);
    *out = (enum dfs_policy)in;
    return DFS_OK;
}

int dfs_putplan_layout(uint64_t size, const struct dfs_redundancy *red, uint64_t *fragment_size,
                       uint32_t *cell_size)
{
    if (size > (uint64_t)INT64_MAX)
        return DFS_EINVAL;
    *cell_size = 0;
    if (red->scheme == DFS_SCHEME_ERASURE)
        return dfs_ec_layout(size, red->data, cell_size, fragment_size);
    /* F contiguous pieces of ceil(size / F) bytes; the last ones may be shorter. */
    uint32_t nfrag = dfs_catalog_redundancy_fragments(red);
    *fragment_size = (size + nfrag - 1) / nfrag;
    return DFS_OK;
}

int dfs_putplan_create(dfs_catalog *cat, dfs_placer *placer, const struct dfs_put_spec *spec,
                       int64_t now_ms, struct dfs_file_rec **out, char **errmsg)
{
    const struct dfs_redundancy *red = &spec->redundancy;
    uint32_t nfrag = dfs_catalog_redundancy_fragments(red);
    size_t k = dfs_catalog_redundancy_copies(red);
    uint64_t fragment_size = spec->fragment_size;
    /* Nodes one placement picks: k copies of a fragment, or the K+M fragments of a file. */
    size_t width = red->scheme == DFS_SCHEME_ERASURE ? nfrag : k;
    struct dfs_plan_fragment *plan = calloc(nfrag, sizeof *plan);
    const char **targets = calloc((size_t)nfrag * k, sizeof *targets);
    struct dfs_file_rec *created = NULL;
    char *err = NULL;
    int rc = DFS_OK;
    if (plan == NULL || targets == NULL)
        rc = dfs_seterr(&err, DFS_ENOMEM, "out of memory");
    for (int attempt = 0; rc == DFS_OK && attempt < DFS_PUTPLAN_ATTEMPTS; attempt++) {
        struct dfs_node_rec *nodes = NULL;
        size_t nnodes = 0;
        rc = dfs_catalog_nodes_list(cat, &nodes, &nnodes, &err);
        for (uint32_t i = 0; rc == DFS_OK && i < nfrag; i++) {
            uint64_t start = (uint64_t)i * fragment_size;
            plan[i].index = i;
            if (red->scheme == DFS_SCHEME_ERASURE)
                plan[i].size = fragment_size;
            else if (start >= spec->size)
                plan[i].size = 0;
            else
                plan[i].size =
                    spec->size - start < fragment_size ? spec->size - start : fragment_size;
            plan[i].node_ids = &targets[(size_t)i * k];
            plan[i].nnodes = k;
            /* Replication places each fragment's k copies; erasure code places all K+M fragments
               at once, on distinct nodes, fragment i on the i-th node chosen. */
            struct dfs_placement_request preq = {
                .policy = spec->policy, .k = width, .width = width};
            if (red->scheme != DFS_SCHEME_ERASURE || i == 0)
                rc = dfs_placer_choose(placer, &preq, plan[i].size, nodes, nnodes, now_ms,
                                       &targets[(size_t)i * k], NULL, &err);
        }
        if (rc == DFS_OK) {
            struct dfs_create_req creq = {
                .path = spec->path,
                .size = spec->size,
                .redundancy = *red,
                .policy = spec->policy,
                .overwrite = spec->overwrite,
                .fragment_size = fragment_size,
                .cell_size = spec->cell_size,
                .expires_ms = spec->expires_ms,
                .fragments = plan,
                .nfragments = nfrag,
            };
            rc = dfs_catalog_file_create(cat, &creq, now_ms, &created, &err);
        }
        free(nodes);
        /* A planned node stopped being alive meanwhile: plan again with the new list. */
        if (rc != DFS_EABORTED)
            break;
        if (attempt + 1 < DFS_PUTPLAN_ATTEMPTS) {
            free(err);
            err = NULL;
            rc = DFS_OK;
        }
    }
    free(plan);
    free(targets);
    if (rc != DFS_OK) {
        if (errmsg != NULL)
            *errmsg = err;
        else
            free(err);
        return rc;
    }
    *out = created;
    return DFS_OK;
}

/*
 * One attempt of a replacement, with the file and node list as they are now. The placement's
 * nodes (the fragment's targets; for erasure code, the nodes of every fragment of the file) are
 * its anchors; the nodes that failed this fragment, and the one failing now, are excluded.
 */
static int replace_once(dfs_catalog *cat, dfs_placer *placer, const struct dfs_file_rec *f,
                        uint32_t index, const char *failed_node_id, bool chain,
                        const struct dfs_node_rec *nodes, size_t nnodes, int64_t now_ms,
                        struct dfs_replica_rec *chosen, struct dfs_replica_rec **others,
                        size_t *nothers, char **err)
{
    const struct dfs_fragment_rec *fr = &f->fragments[index];
    bool erasure = f->redundancy.scheme == DFS_SCHEME_ERASURE;
    size_t cap = fr->nreplicas + fr->nfailed + 1;
    if (erasure)
        for (size_t i = 0; i < f->nfragments; i++)
            cap += f->fragments[i].nreplicas;
    const char **placed = calloc(cap, sizeof *placed);
    const char **exclude = calloc(cap, sizeof *exclude);
    size_t np = 0, ne = 0;
    int rc = DFS_OK;
    if (placed == NULL || exclude == NULL) {
        rc = dfs_seterr(err, DFS_ENOMEM, "out of memory");
    } else {
        for (size_t i = 0; !erasure && i < fr->nreplicas; i++)
            placed[np++] = fr->replicas[i].node_id;
        for (size_t i = 0; erasure && i < f->nfragments; i++)
            for (size_t r = 0; r < f->fragments[i].nreplicas; r++)
                placed[np++] = f->fragments[i].replicas[r].node_id;
        for (size_t i = 0; i < fr->nfailed; i++)
            exclude[ne++] = fr->failed_node_ids[i];
        exclude[ne++] = failed_node_id;
        struct dfs_placement_request preq = {
            .policy = f->policy,
            .k = 1,
            .width = erasure ? f->nfragments : f->redundancy.replicas,
            .placed = placed,
            .nplaced = np,
            .exclude = exclude,
            .nexclude = ne,
            .fallback = true,
        };
        const char *node = NULL;
        bool fell_back = false;
        rc = dfs_placer_choose(placer, &preq, fr->size, nodes, nnodes, now_ms, &node, &fell_back,
                               err);
        if (rc == DFS_OK && fell_back)
            dfs_log(DFS_LOG_WARN,
                    "replacement target outside the %s of the surviving copies "
                    "file=%s fragment=%" PRIu32 " failed=%s new=%s policy=%s",
                    f->policy == DFS_POLICY_MIN_COPY ? "copyset" : "buddy group", f->file_id, index,
                    failed_node_id, node, dfs_placement_policy_name(f->policy));
        if (rc == DFS_OK)
            rc = dfs_catalog_file_replace_target(cat, f->file_id, index, failed_node_id, node,
                                                 now_ms, chosen, err);
        if (rc == DFS_OK && chain && !erasure && fr->nreplicas > 0) {
            *others = calloc(fr->nreplicas, sizeof **others);
            if (*others == NULL)
                rc = dfs_seterr(err, DFS_ENOMEM, "out of memory");
        }
        for (size_t i = 0; rc == DFS_OK && *others != NULL && i < fr->nreplicas; i++)
            if (strcmp(fr->replicas[i].node_id, failed_node_id) != 0 &&
                strcmp(fr->replicas[i].node_id, chosen->node_id) != 0)
                (*others)[(*nothers)++] = fr->replicas[i];
    }
    free(placed);
    free(exclude);
    return rc;
}

int dfs_putplan_replace(dfs_catalog *cat, dfs_placer *placer, const char *file_id, uint32_t index,
                        const char *failed_node_id, bool chain, int64_t now_ms,
                        struct dfs_replica_rec *chosen, struct dfs_replica_rec **others,
                        size_t *nothers, char **errmsg)
{
    char *err = NULL;
    int rc = DFS_OK;
    *others = NULL;
    *nothers = 0;
    for (int attempt = 0; attempt < DFS_PUTPLAN_ATTEMPTS; attempt++) {
        struct dfs_file_rec *f = NULL;
        struct dfs_node_rec *nodes = NULL;
        size_t nnodes = 0;
        rc = dfs_catalog_file_get_id(cat, file_id, &f, &err);
        if (rc == DFS_OK && f->state != DFS_FILE_PENDING)
            rc = dfs_seterr(&err, DFS_EPRECOND, "file %s is already committed", file_id);
        if (rc == DFS_OK && index >= f->nfragments)
            rc = dfs_seterr(&err, DFS_EINVAL, "file %s has no fragment %" PRIu32, file_id, index);
        if (rc == DFS_OK)
            rc = dfs_catalog_nodes_list(cat, &nodes, &nnodes, &err);
        if (rc == DFS_OK) {
            free(*others);
            *others = NULL;
            *nothers = 0;
            rc = replace_once(cat, placer, f, index, failed_node_id, chain, nodes, nnodes, now_ms,
                              chosen, others, nothers, &err);
        }
        free(nodes);
        dfs_catalog_file_rec_free(f);
        if (rc != DFS_EABORTED || attempt + 1 == DFS_PUTPLAN_ATTEMPTS)
            break;
        free(err);
        err = NULL;
    }
    if (rc != DFS_OK) {
        free(*others);
        *others = NULL;
        *nothers = 0;
        if (errmsg != NULL)
            *errmsg = err;
        else
            free(err);
        return rc;
    }
    free(err);
    return DFS_OK;
}
