/* The catalog's placement state: the saved copysets and buddy groups of metadata/placement.h. */
#include "metadata/catalog_int.h"

#include "common/err.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Placement state ------------------------------------------------------------------------- */

/* "<policy>/<width>", the family key. */
static void family_key(char *buf, size_t cap, enum dfs_policy policy, uint32_t width)
{
    snprintf(buf, cap, "%s/%" PRIu32, dfs_placement_policy_name(policy), width);
}

/* Read the families, then every set row into its family (both ordered by family). */
static int placement_load_locked(dfs_catalog *cat, struct dfs_placement_state **out, size_t *n,
                                 char **errmsg)
{
    int row = catalog_query(cat, S_PLACEMENT_FAMILIES, errmsg, "");
    while (row == 1) {
        struct dfs_placement_state *st = catalog_grow(out, n, sizeof *st);
        if (st == NULL) {
            catalog_release(cat->st[S_PLACEMENT_FAMILIES]);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        st->policy = catalog_policy_from_name(catalog_col_text(cat, S_PLACEMENT_FAMILIES, 1));
        int64_t width = catalog_col_i64(cat, S_PLACEMENT_FAMILIES, 2);
        int64_t param = catalog_col_i64(cat, S_PLACEMENT_FAMILIES, 3);
        int64_t perms = catalog_col_i64(cat, S_PLACEMENT_FAMILIES, 4);
        char key[64];
        family_key(key, sizeof key, st->policy, (uint32_t)width);
        const char *fam = catalog_col_text(cat, S_PLACEMENT_FAMILIES, 0);
        if (!dfs_placement_policy_has_sets(st->policy) || width < 1 ||
            width > DFS_PLACEMENT_WIDTH_MAX || param < 0 || param > UINT32_MAX || perms < 1 ||
            perms > UINT32_MAX || fam == NULL || strcmp(fam, key) != 0) {
            char name[64];
            snprintf(name, sizeof name, "%s", fam == NULL ? "" : fam);
            catalog_release(cat->st[S_PLACEMENT_FAMILIES]);
            return dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: placement family '%s' is corrupt",
                              name);
        }
        st->width = (uint32_t)width;
        st->param = (uint32_t)param;
        st->nperms = (uint32_t)perms;
        row = catalog_next_row(cat, S_PLACEMENT_FAMILIES, errmsg);
    }
    if (row < 0)
        return row;
    size_t fi = 0;
    char key[64] = "";
    if (*n > 0)
        family_key(key, sizeof key, (*out)[0].policy, (*out)[0].width);
    row = catalog_query(cat, S_PLACEMENT_SETS, errmsg, "");
    while (row == 1) {
        const char *fam = catalog_col_text(cat, S_PLACEMENT_SETS, 0);
        while (fam != NULL && fi < *n && strcmp(fam, key) != 0) {
            if (++fi < *n)
                family_key(key, sizeof key, (*out)[fi].policy, (*out)[fi].width);
        }
        int64_t set_id = catalog_col_i64(cat, S_PLACEMENT_SETS, 1);
        int64_t pos = catalog_col_i64(cat, S_PLACEMENT_SETS, 2);
        int64_t perm = catalog_col_i64(cat, S_PLACEMENT_SETS, 3);
        const char *node = catalog_col_text(cat, S_PLACEMENT_SETS, 4);
        struct dfs_placement_state *st = fi < *n ? &(*out)[fi] : NULL;
        struct dfs_placement_set *set =
            st != NULL && st->nsets > 0 && set_id == (int64_t)st->nsets - 1
                ? &st->sets[st->nsets - 1]
                : NULL;
        if (st != NULL && set == NULL && set_id == (int64_t)st->nsets && pos == 0) {
            set = catalog_grow(&st->sets, &st->nsets, sizeof *set);
            if (set == NULL) {
                catalog_release(cat->st[S_PLACEMENT_SETS]);
                return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            }
            set->perm = (uint32_t)perm;
        }
        if (set == NULL || node == NULL || pos != (int64_t)set->nnodes ||
            perm != (int64_t)set->perm) {
            char name[64]; /* the column's text dies with the statement's reset */
            snprintf(name, sizeof name, "%s", fam == NULL ? "" : fam);
            catalog_release(cat->st[S_PLACEMENT_SETS]);
            return dfs_seterr(errmsg, DFS_EINTERNAL,
                              "catalog: placement family '%s' is corrupt at set %" PRId64
                              " position %" PRId64,
                              name, set_id, pos);
        }
        char *copy = strdup(node);
        char **slot =
            copy == NULL ? NULL : catalog_grow(&set->node_ids, &set->nnodes, sizeof *slot);
        if (slot == NULL) {
            free(copy);
            catalog_release(cat->st[S_PLACEMENT_SETS]);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        *slot = copy;
        row = catalog_next_row(cat, S_PLACEMENT_SETS, errmsg);
    }
    return row < 0 ? row : DFS_OK;
}

int dfs_catalog_placement_load(dfs_catalog *cat, struct dfs_placement_state **out, size_t *n,
                               char **errmsg)
{
    struct dfs_placement_state *v = NULL;
    size_t count = 0;
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, placement_load_locked(cat, &v, &count, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_placement_states_free(v, count);
        return rc;
    }
    *out = v;
    *n = count;
    return DFS_OK;
}

static int check_placement_state(const struct dfs_placement_state *st, char **errmsg)
{
    if (st == NULL || !dfs_placement_policy_has_sets(st->policy) || st->width == 0 ||
        st->width > DFS_PLACEMENT_WIDTH_MAX || st->nperms == 0 || (st->nsets > 0 && !st->sets))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad placement state (policy %s, width %" PRIu32 ")",
                          st == NULL ? "none" : dfs_placement_policy_name(st->policy),
                          st == NULL ? 0 : st->width);
    for (size_t s = 0; s < st->nsets; s++) {
        const struct dfs_placement_set *set = &st->sets[s];
        if (set->nnodes == 0 || set->node_ids == NULL || set->perm >= st->nperms)
            return dfs_seterr(errmsg, DFS_EINVAL, "bad placement set %zu", s);
        for (size_t j = 0; j < set->nnodes; j++) {
            int rc = catalog_check_id(set->node_ids[j], "node", errmsg);
            if (rc != DFS_OK)
                return rc;
            for (size_t i = 0; i < j; i++)
                if (strcmp(set->node_ids[i], set->node_ids[j]) == 0)
                    return dfs_seterr(errmsg, DFS_EINVAL, "placement set %zu holds node %s twice",
                                      s, set->node_ids[j]);
        }
    }
    return DFS_OK;
}

static int placement_save_locked(dfs_catalog *cat, const struct dfs_placement_state *st,
                                 const char *key, int64_t now_ms, char **errmsg)
{
    int rc = catalog_exec(cat, S_PLACEMENT_DELETE, NULL, errmsg, "t", key);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_PLACEMENT_FAMILY_INSERT, NULL, errmsg, "ttiiii", key,
                          dfs_placement_policy_name(st->policy), (int64_t)st->width,
                          (int64_t)st->param, (int64_t)st->nperms, now_ms);
    for (size_t s = 0; rc == DFS_OK && s < st->nsets; s++)
        for (size_t j = 0; rc == DFS_OK && j < st->sets[s].nnodes; j++)
            rc = catalog_exec(cat, S_PLACEMENT_SET_INSERT, NULL, errmsg, "tiiit", key, (int64_t)s,
                              (int64_t)j, (int64_t)st->sets[s].perm, st->sets[s].node_ids[j]);
    return rc;
}

int dfs_catalog_placement_save(dfs_catalog *cat, const struct dfs_placement_state *st,
                               int64_t now_ms, char **errmsg)
{
    if (catalog_must_propose(cat) && st != NULL) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_placement_save(st, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    int rc = check_placement_state(st, errmsg);
    if (rc != DFS_OK)
        return rc;
    char key[64];
    family_key(key, sizeof key, st->policy, st->width);
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, placement_save_locked(cat, st, key, now_ms, errmsg), errmsg);
    catalog_unlock(cat);
    return rc;
}
