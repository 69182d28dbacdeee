/* The catalog's health: the layout picture, each file healthy, degraded or lost; Stat figures. */
#include "metadata/catalog_int.h"

#include "common/err.h"

#include <stdlib.h>
#include <string.h>

/* ---- Health ---------------------------------------------------------------------------------- */

void dfs_catalog_layout_free(struct dfs_layout *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->nfiles; i++)
        free(l->files[i].path);
    free(l->nodes);
    free(l->files);
    free(l->fragments);
    free(l->copies);
    free(l);
}

static int cmp_layout_node(const void *key, const void *elem)
{
    return strcmp(key, ((const struct dfs_layout_node *)elem)->id);
}

static int cmp_layout_nodes(const void *a, const void *b)
{
    return strcmp(((const struct dfs_layout_node *)a)->id, ((const struct dfs_layout_node *)b)->id);
}

static int layout_locked(dfs_catalog *cat, struct dfs_layout *l, char **errmsg)
{
    int rc = catalog_query(cat, S_NODES_LIST, errmsg, "");
    while (rc == 1) {
        struct dfs_layout_node *n = catalog_grow(&l->nodes, &l->nnodes, sizeof *n);
        if (n == NULL) {
            catalog_release(cat->st[S_NODES_LIST]);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        struct dfs_node_rec rec;
        catalog_read_node(cat, S_NODES_LIST, &rec);
        memcpy(n->id, rec.id, sizeof n->id);
        memcpy(n->address, rec.address, sizeof n->address);
        n->state = rec.state;
        rc = catalog_next_row(cat, S_NODES_LIST, errmsg);
    }
    if (rc < 0)
        return rc;
    if (l->nnodes > 0)
        qsort(l->nodes, l->nnodes, sizeof *l->nodes, cmp_layout_nodes);
    /* Arrays grow by doubling here: a catalog may hold millions of copies. */
    size_t cap_files = 0, cap_frags = 0, cap_copies = 0;
    rc = catalog_query(cat, S_LAYOUT_ALL, errmsg, "");
    while (rc == 1) {
        const char *file_id = catalog_col_text(cat, S_LAYOUT_ALL, 0);
        const char *frag_id = catalog_col_text(cat, S_LAYOUT_ALL, 7);
        struct dfs_layout_fragment *fr =
            l->nfragments > 0 ? &l->fragments[l->nfragments - 1] : NULL;
        if (fr == NULL || strcmp(fr->fragment_id, frag_id) != 0) {
            struct dfs_layout_file *fi = l->nfiles > 0 ? &l->files[l->nfiles - 1] : NULL;
            if (fi == NULL || strncmp(frag_id, file_id, DFS_ID_HEX) != 0 ||
                strncmp(l->fragments[fi->first_fragment].fragment_id, file_id, DFS_ID_HEX) != 0) {
                if (l->nfiles == cap_files) {
                    cap_files = cap_files * 2 + 64;
                    void *p = realloc(l->files, cap_files * sizeof *l->files);
                    if (p == NULL)
                        break;
                    l->files = p;
                }
                fi = &l->files[l->nfiles++];
                memset(fi, 0, sizeof *fi);
                const char *path = catalog_col_text(cat, S_LAYOUT_ALL, 1);
                fi->path = strdup(path != NULL ? path : "");
                if (fi->path == NULL)
                    break;
                fi->redundancy.scheme = (enum dfs_scheme)NAME_INDEX(
                    catalog_scheme_names, catalog_col_text(cat, S_LAYOUT_ALL, 2));
                fi->redundancy.replicas = (uint32_t)catalog_col_i64(cat, S_LAYOUT_ALL, 3);
                fi->redundancy.fragments = (uint32_t)catalog_col_i64(cat, S_LAYOUT_ALL, 4);
                fi->redundancy.data = (uint32_t)catalog_col_i64(cat, S_LAYOUT_ALL, 5);
                fi->redundancy.parity = (uint32_t)catalog_col_i64(cat, S_LAYOUT_ALL, 6);
                fi->first_fragment = l->nfragments;
            }
            if (l->nfragments == cap_frags) {
                cap_frags = cap_frags * 2 + 256;
                void *p = realloc(l->fragments, cap_frags * sizeof *l->fragments);
                if (p == NULL)
                    break;
                l->fragments = p;
            }
            fr = &l->fragments[l->nfragments++];
            memset(fr, 0, sizeof *fr);
            catalog_col_copy(cat, S_LAYOUT_ALL, 7, fr->fragment_id, sizeof fr->fragment_id);
            fr->size = (uint64_t)catalog_col_i64(cat, S_LAYOUT_ALL, 8);
            fr->checksum = (uint32_t)catalog_col_i64(cat, S_LAYOUT_ALL, 9);
            fr->first_copy = l->ncopies;
            fi->nfragments++;
        }
        const char *node = catalog_col_text(cat, S_LAYOUT_ALL, 10);
        const struct dfs_layout_node *n =
            node == NULL || l->nnodes == 0
                ? NULL
                : bsearch(node, l->nodes, l->nnodes, sizeof *l->nodes, cmp_layout_node);
        if (n != NULL) {
            if (l->ncopies == cap_copies) {
                cap_copies = cap_copies * 2 + 1024;
                void *p = realloc(l->copies, cap_copies * sizeof *l->copies);
                if (p == NULL)
                    break;
                l->copies = p;
            }
            l->copies[l->ncopies++] = (uint32_t)(n - l->nodes);
            fr->ncopies++;
        }
        rc = catalog_next_row(cat, S_LAYOUT_ALL, errmsg);
    }
    if (rc == 1) {
        catalog_release(cat->st[S_LAYOUT_ALL]);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    return rc < 0 ? rc : DFS_OK;
}

int dfs_catalog_layout(dfs_catalog *cat, struct dfs_layout **out, char **errmsg)
{
    struct dfs_layout *l = calloc(1, sizeof *l);
    if (l == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, layout_locked(cat, l, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_layout_free(l);
        return rc;
    }
    *out = l;
    return DFS_OK;
}

void dfs_catalog_health_clear(struct dfs_health *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->nlost_paths; i++)
        free(h->lost_paths[i]);
    for (size_t i = 0; i < h->ndegraded_paths; i++)
        free(h->degraded_paths[i]);
    free(h->lost_paths);
    free(h->degraded_paths);
    memset(h, 0, sizeof *h);
}

static int add_path(char ***v, size_t *n, size_t list, const char *path)
{
    if (*n >= list)
        return DFS_OK;
    char *p = strdup(path);
    char **slot = p != NULL ? catalog_grow(v, n, sizeof **v) : NULL;
    if (slot == NULL) {
        free(p);
        return DFS_ENOMEM;
    }
    *slot = p;
    return DFS_OK;
}

int dfs_catalog_health_classify(const struct dfs_layout *l, const bool *copy_ok, size_t list,
                                struct dfs_health *out, char **errmsg)
{
    struct dfs_health h;
    memset(&h, 0, sizeof h);
    int rc = DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < l->nfiles; i++) {
        const struct dfs_layout_file *f = &l->files[i];
        bool erasure = f->redundancy.scheme == DFS_SCHEME_ERASURE;
        uint32_t wanted = erasure ? 1 : f->redundancy.replicas;
        uint32_t frag_live = 0, frag_readable = 0;
        bool lost = false, degraded = false;
        for (size_t j = 0; j < f->nfragments; j++) {
            const struct dfs_layout_fragment *fr = &l->fragments[f->first_fragment + j];
            uint32_t live = 0, readable = 0;
            for (size_t c = 0; c < fr->ncopies; c++) {
                size_t ci = fr->first_copy + c;
                if (copy_ok != NULL && !copy_ok[ci])
                    continue;
                enum dfs_node_state s = l->nodes[l->copies[ci]].state;
                live += catalog_state_live(s);
                readable += catalog_state_readable(s);
            }
            frag_live += live > 0;
            frag_readable += readable > 0;
            lost = lost || (!erasure && readable == 0);
            degraded = degraded || live < wanted;
        }
        uint32_t total = erasure ? f->redundancy.data + f->redundancy.parity : 0;
        if (erasure) {
            lost = frag_readable < f->redundancy.data;
            degraded = frag_live < total || f->nfragments < total;
        }
        h.files++;
        if (lost) {
            h.lost++;
            rc = add_path(&h.lost_paths, &h.nlost_paths, list, f->path);
        } else if (degraded) {
            h.degraded++;
            rc = add_path(&h.degraded_paths, &h.ndegraded_paths, list, f->path);
        } else {
            h.healthy++;
        }
    }
    if (rc != DFS_OK) {
        dfs_catalog_health_clear(&h);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    *out = h;
    return DFS_OK;
}

/* ---- Statistics ------------------------------------------------------------------------------ */

/* Read one single-row aggregate into up to two integers. */
static int aggregate(dfs_catalog *cat, enum stmt id, int64_t *a, int64_t *b, char **errmsg)
{
    int rc = catalog_query(cat, id, errmsg, "");
    if (rc < 0)
        return rc;
    if (rc == 0)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: aggregate returned no row");
    *a = catalog_col_i64(cat, id, 0);
    if (b != NULL)
        *b = catalog_col_i64(cat, id, 1);
    catalog_release(cat->st[id]);
    return DFS_OK;
}

static int stats_locked(dfs_catalog *cat, struct dfs_catalog_stats *s, char **errmsg)
{
    int64_t files = 0, logical = 0, stored = 0, pending = 0, deletions = 0, version = 0;
    int rc = aggregate(cat, S_STATS_FILES, &files, &logical, errmsg);
    if (rc == DFS_OK)
        rc = aggregate(cat, S_STATS_STORED, &stored, NULL, errmsg);
    if (rc == DFS_OK)
        rc = aggregate(cat, S_STATS_PENDING, &pending, NULL, errmsg);
    if (rc == DFS_OK)
        rc = aggregate(cat, S_STATS_DELETIONS, &deletions, NULL, errmsg);
    if (rc == DFS_OK)
        rc = aggregate(cat, S_SCHEMA_VERSION, &version, NULL, errmsg);
    if (rc != DFS_OK)
        return rc;
    s->files = (uint64_t)files;
    s->logical_bytes = (uint64_t)logical;
    s->stored_bytes = (uint64_t)stored;
    s->pending_files = (uint64_t)pending;
    s->pending_deletions = (uint64_t)deletions;
    s->schema_version = (uint32_t)version;
    int row = catalog_query(cat, S_STATS_NODES, errmsg, "");
    while (row == 1) {
        uint32_t count = (uint32_t)catalog_col_i64(cat, S_STATS_NODES, 1);
        switch (NAME_INDEX(catalog_node_state_names, catalog_col_text(cat, S_STATS_NODES, 0))) {
        case DFS_NODE_ALIVE:
            s->nodes_alive = count;
            break;
        case DFS_NODE_SUSPECT:
            s->nodes_suspect = count;
            break;
        case DFS_NODE_DEAD:
            s->nodes_dead = count;
            break;
        case DFS_NODE_DRAINING:
            s->nodes_draining = count;
            break;
        case DFS_NODE_DECOMMISSIONED:
            s->nodes_decommissioned = count;
            break;
        default:
            break;
        }
        row = catalog_next_row(cat, S_STATS_NODES, errmsg);
    }
    return row < 0 ? row : DFS_OK;
}

int dfs_catalog_stats(dfs_catalog *cat, struct dfs_catalog_stats *out, char **errmsg)
{
    struct dfs_catalog_stats s;
    memset(&s, 0, sizeof s);
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, stats_locked(cat, &s, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc == DFS_OK)
        *out = s;
    return rc;
}
