/* The catalog's files: redundancy, records and layouts, the put verbs, and the deletion queue. */
#include "metadata/catalog_int.h"

#include "common/err.h"
#include "common/id.h"
#include "common/log.h"
#include "common/path.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

/* ---- Redundancy and validation --------------------------------------------------------------- */

static int check_path(const char *path, char **errmsg)
{
    char *canon = NULL;
    int rc = dfs_path_canon(path, &canon, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (strcmp(canon, path) != 0)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "path '%s' is not canonical ('%s')", path, canon);
    free(canon);
    return rc;
}

int dfs_catalog_redundancy_check(const struct dfs_redundancy *r, char **errmsg)
{
    if (r == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "no redundancy given");
    switch (r->scheme) {
    case DFS_SCHEME_REPLICATION:
        if (r->replicas < 1 || r->replicas > DFS_REPLICAS_MAX)
            return dfs_seterr(errmsg, DFS_EINVAL, "replicas must be 1..%d, not %" PRIu32,
                              DFS_REPLICAS_MAX, r->replicas);
        if (r->fragments < 1 || r->fragments > DFS_FRAGMENTS_MAX)
            return dfs_seterr(errmsg, DFS_EINVAL, "fragments must be 1..%d, not %" PRIu32,
                              DFS_FRAGMENTS_MAX, r->fragments);
        if (r->data != 0 || r->parity != 0)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "replication takes no data or parity fragment counts");
        return DFS_OK;
    case DFS_SCHEME_ERASURE:
        if (r->data < 1 || r->data > DFS_EC_WIDTH_MAX || r->parity > DFS_EC_WIDTH_MAX ||
            r->data + r->parity > DFS_EC_WIDTH_MAX)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "erasure code %" PRIu32 "+%" PRIu32
                              ": need at least 1 data fragment and at most %d in all",
                              r->data, r->parity, DFS_EC_WIDTH_MAX);
        if (r->replicas != 0 || r->fragments != 0)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "erasure code takes no replica or fragment counts");
        return DFS_OK;
    case DFS_SCHEME_UNSPECIFIED:
    default:
        return dfs_seterr(errmsg, DFS_EINVAL, "redundancy scheme not resolved (%d)",
                          (int)r->scheme);
    }
}

uint32_t dfs_catalog_redundancy_fragments(const struct dfs_redundancy *r)
{
    return r->scheme == DFS_SCHEME_ERASURE ? r->data + r->parity : r->fragments;
}

uint32_t dfs_catalog_redundancy_copies(const struct dfs_redundancy *r)
{
    return r->scheme == DFS_SCHEME_ERASURE ? 1 : r->replicas;
}

static bool policy_resolved(enum dfs_policy p)
{
    return p >= DFS_POLICY_RANDOM && p <= DFS_POLICY_LEAST_USED;
}

/* ---- Records --------------------------------------------------------------------------------- */

static const char *const file_state_names[] = {
    [DFS_FILE_UNSPECIFIED] = "unspecified",
    [DFS_FILE_PENDING] = "pending",
    [DFS_FILE_COMMITTED] = "committed",
};

static void fragments_free(struct dfs_fragment_rec *frags, size_t n)
{
    for (size_t i = 0; frags != NULL && i < n; i++) {
        free(frags[i].replicas);
        free(frags[i].failed_node_ids);
    }
    free(frags);
}

static void file_clear(struct dfs_file_rec *f)
{
    free(f->path);
    fragments_free(f->fragments, f->nfragments);
    catalog_segments_free(f);
    memset(f, 0, sizeof *f);
}

void dfs_catalog_file_rec_free(struct dfs_file_rec *file)
{
    if (file == NULL)
        return;
    file_clear(file);
    free(file);
}

void dfs_catalog_file_recs_free(struct dfs_file_rec *files, size_t n)
{
    for (size_t i = 0; files != NULL && i < n; i++)
        file_clear(&files[i]);
    free(files);
}

/* Fill *f from a FILE_COLS row of statement `id` (no layout). DFS_ENOMEM only. */
static int read_file(dfs_catalog *cat, enum stmt id, struct dfs_file_rec *f, char **errmsg)
{
    memset(f, 0, sizeof *f);
    catalog_col_copy(cat, id, 0, f->file_id, sizeof f->file_id);
    const char *path = catalog_col_text(cat, id, 1);
    f->path = path == NULL ? NULL : strdup(path);
    if (f->path == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    f->size = (uint64_t)catalog_col_i64(cat, id, 2);
    const void *sha = sqlite3_column_blob(cat->st[id], 3);
    if (sha != NULL && sqlite3_column_bytes(cat->st[id], 3) == DFS_SHA256_LEN)
        memcpy(f->sha256, sha, DFS_SHA256_LEN);
    f->redundancy.scheme =
        (enum dfs_scheme)NAME_INDEX(catalog_scheme_names, catalog_col_text(cat, id, 4));
    f->redundancy.replicas = (uint32_t)catalog_col_i64(cat, id, 5);
    f->redundancy.fragments = (uint32_t)catalog_col_i64(cat, id, 6);
    f->redundancy.data = (uint32_t)catalog_col_i64(cat, id, 7);
    f->redundancy.parity = (uint32_t)catalog_col_i64(cat, id, 8);
    f->policy = catalog_policy_from_name(catalog_col_text(cat, id, 9));
    f->state = (enum dfs_file_state)NAME_INDEX(file_state_names, catalog_col_text(cat, id, 10));
    f->overwrite = catalog_col_i64(cat, id, 11) != 0;
    f->fragment_size = (uint64_t)catalog_col_i64(cat, id, 12);
    f->cell_size = (uint32_t)catalog_col_i64(cat, id, 13);
    f->created_ms = catalog_col_i64(cat, id, 14);
    f->committed_ms = catalog_col_i64(cat, id, 15); /* NULL reads as 0 */
    f->expires_ms = catalog_col_i64(cat, id, 16);
    return DFS_OK;
}

/* Load the fragments and replicas of f (and, when pending, the failed nodes of each fragment). */
static int read_layout(dfs_catalog *cat, struct dfs_file_rec *f, char **errmsg)
{
    int rc = catalog_query(cat, S_LAYOUT, errmsg, "t", f->file_id);
    while (rc == 1) {
        int64_t idx = catalog_col_i64(cat, S_LAYOUT, 0);
        struct dfs_fragment_rec *fr = f->nfragments > 0 ? &f->fragments[f->nfragments - 1] : NULL;
        if (fr == NULL || fr->index != (uint32_t)idx) {
            if (idx != (int64_t)f->nfragments) {
                catalog_release(cat->st[S_LAYOUT]);
                return dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: file %s lacks fragment %zu",
                                  f->file_id, f->nfragments);
            }
            fr = catalog_grow(&f->fragments, &f->nfragments, sizeof *fr);
            if (fr == NULL)
                break;
            fr->index = (uint32_t)idx;
            catalog_col_copy(cat, S_LAYOUT, 1, fr->fragment_id, sizeof fr->fragment_id);
            fr->size = (uint64_t)catalog_col_i64(cat, S_LAYOUT, 2);
            fr->checksum = (uint32_t)catalog_col_i64(cat, S_LAYOUT, 3);
        }
        if (sqlite3_column_type(cat->st[S_LAYOUT], 4) != SQLITE_NULL) {
            struct dfs_replica_rec *r = catalog_grow(&fr->replicas, &fr->nreplicas, sizeof *r);
            if (r == NULL)
                break;
            catalog_col_copy(cat, S_LAYOUT, 4, r->node_id, sizeof r->node_id);
            catalog_col_copy(cat, S_LAYOUT, 5, r->address, sizeof r->address);
            r->node_state = (enum dfs_node_state)NAME_INDEX(catalog_node_state_names,
                                                            catalog_col_text(cat, S_LAYOUT, 6));
        }
        rc = catalog_next_row(cat, S_LAYOUT, errmsg);
    }
    if (rc == 1) { /* broke out: allocation failed */
        catalog_release(cat->st[S_LAYOUT]);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    if (rc < 0)
        return rc;
    if (f->state != DFS_FILE_PENDING)
        return DFS_OK;
    for (size_t i = 0; i < f->nfragments; i++) {
        struct dfs_fragment_rec *fr = &f->fragments[i];
        rc = catalog_query(cat, S_DELETIONS_OF_FRAGMENT, errmsg, "t", fr->fragment_id);
        while (rc == 1) {
            char(*slot)[DFS_ID_HEX + 1] =
                catalog_grow(&fr->failed_node_ids, &fr->nfailed, sizeof fr->failed_node_ids[0]);
            if (slot == NULL) {
                catalog_release(cat->st[S_DELETIONS_OF_FRAGMENT]);
                return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            }
            catalog_col_copy(cat, S_DELETIONS_OF_FRAGMENT, 0, *slot, sizeof *slot);
            rc = catalog_next_row(cat, S_DELETIONS_OF_FRAGMENT, errmsg);
        }
        if (rc < 0)
            return rc;
    }
    return DFS_OK;
}

int catalog_find_file(dfs_catalog *cat, enum stmt id, const char *key, bool layout,
                      struct dfs_file_rec **out, char **errmsg)
{
    *out = NULL;
    int rc = catalog_query(cat, id, errmsg, "t", key);
    if (rc <= 0)
        return rc;
    struct dfs_file_rec *f = calloc(1, sizeof *f);
    if (f == NULL) {
        catalog_release(cat->st[id]);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    rc = read_file(cat, id, f, errmsg);
    catalog_release(cat->st[id]);
    if (rc == DFS_OK && layout)
        rc = read_layout(cat, f, errmsg);
    if (rc == DFS_OK && layout && f->nfragments == 0)
        rc = catalog_segments_load(cat, f, errmsg);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        return rc;
    }
    *out = f;
    return DFS_OK;
}

/* ---- Files ----------------------------------------------------------------------------------- */

static int validate_create(const struct dfs_create_req *req, int64_t now_ms, char **errmsg)
{
    if (req == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "no request");
    int rc = check_path(req->path, errmsg);
    if (rc == DFS_OK && req->file_id != NULL)
        rc = catalog_check_id(req->file_id, "file", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_u64(req->size, "file size", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_u64(req->fragment_size, "fragment size", errmsg);
    if (rc == DFS_OK)
        rc = dfs_catalog_redundancy_check(&req->redundancy, errmsg);
    if (rc != DFS_OK)
        return rc;
    const struct dfs_redundancy *r = &req->redundancy;
    if (!policy_resolved(req->policy))
        return dfs_seterr(errmsg, DFS_EINVAL, "placement policy not resolved (%d)",
                          (int)req->policy);
    if (r->scheme == DFS_SCHEME_ERASURE && req->cell_size == 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "erasure code needs a cell size");
    if (r->scheme == DFS_SCHEME_REPLICATION && req->cell_size != 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "replication takes no cell size");
    if (req->expires_ms <= now_ms)
        return dfs_seterr(errmsg, DFS_EINVAL, "expiry %" PRId64 " is not after now (%" PRId64 ")",
                          req->expires_ms, now_ms);
    uint32_t nfrag = dfs_catalog_redundancy_fragments(r), copies = dfs_catalog_redundancy_copies(r);
    if (req->nfragments != nfrag || req->fragments == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "plan has %zu fragments, the redundancy needs %" PRIu32,
                          req->fragments == NULL ? 0 : req->nfragments, nfrag);
    bool seen[DFS_FRAGMENTS_MAX] = {false};
    uint64_t total = 0;
    for (size_t i = 0; i < req->nfragments; i++) {
        const struct dfs_plan_fragment *pf = &req->fragments[i];
        if (pf->index >= nfrag || seen[pf->index])
            return dfs_seterr(errmsg, DFS_EINVAL, "plan fragment index %" PRIu32 " is %s",
                              pf->index, pf->index >= nfrag ? "out of range" : "repeated");
        seen[pf->index] = true;
        rc = catalog_check_u64(pf->size, "fragment size", errmsg);
        if (rc != DFS_OK)
            return rc;
        total += pf->size; /* each <= INT64_MAX and at most 256 of them: no overflow */
        if (pf->nnodes != copies || pf->node_ids == NULL)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "plan fragment %" PRIu32 " has %zu nodes, want %" PRIu32, pf->index,
                              pf->node_ids == NULL ? 0 : pf->nnodes, copies);
        for (size_t j = 0; j < pf->nnodes; j++) {
            rc = catalog_check_id(pf->node_ids[j], "node", errmsg);
            if (rc != DFS_OK)
                return rc;
            for (size_t k = 0; k < j; k++) {
                if (strcmp(pf->node_ids[j], pf->node_ids[k]) == 0)
                    return dfs_seterr(errmsg, DFS_EINVAL,
                                      "plan fragment %" PRIu32 " names node %s twice", pf->index,
                                      pf->node_ids[j]);
            }
            /* Erasure code: every fragment of the stripe on its own node. */
            for (size_t k = 0; r->scheme == DFS_SCHEME_ERASURE && k < i; k++) {
                if (strcmp(pf->node_ids[j], req->fragments[k].node_ids[0]) == 0)
                    return dfs_seterr(errmsg, DFS_EINVAL,
                                      "erasure-coded fragments %" PRIu32 " and %" PRIu32
                                      " are both planned on node %s",
                                      req->fragments[k].index, pf->index, pf->node_ids[j]);
            }
        }
    }
    if (r->scheme == DFS_SCHEME_REPLICATION && total != req->size)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "plan fragments hold %" PRIu64 " bytes, the file has %" PRIu64, total,
                          req->size);
    return DFS_OK;
}

static int create_locked(dfs_catalog *cat, const struct dfs_create_req *req, int64_t now_ms,
                         struct dfs_file_rec **out, char **errmsg)
{
    if (!req->overwrite) {
        int found = catalog_query(cat, S_FILE_GET_PATH, errmsg, "t", req->path);
        if (found == 1)
            catalog_release(cat->st[S_FILE_GET_PATH]);
        if (found < 0)
            return found;
        if (found == 1)
            return dfs_seterr(errmsg, DFS_EEXIST, "%s already exists (use --force to replace it)",
                              req->path);
    }
    int rc = DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < req->nfragments; i++) {
        for (size_t j = 0; rc == DFS_OK && j < req->fragments[i].nnodes; j++)
            rc = catalog_check_target(cat, req->fragments[i].node_ids[j], errmsg);
    }
    if (rc != DFS_OK)
        return rc;

    char file_id[DFS_ID_HEX + 1];
    if (req->file_id != NULL) {
        memcpy(file_id, req->file_id, sizeof file_id); /* checked by validate_create */
        int taken = catalog_query(cat, S_FILE_GET_ID, errmsg, "t", file_id);
        if (taken == 1)
            catalog_release(cat->st[S_FILE_GET_ID]);
        if (taken < 0)
            return taken;
        if (taken == 1)
            return dfs_seterr(errmsg, DFS_EEXIST, "file id %s is taken", file_id);
    } else if (dfs_id_random(file_id) != DFS_OK) {
        return dfs_seterr(errmsg, DFS_EIO, "cannot draw a random file id");
    }
    const struct dfs_redundancy *r = &req->redundancy;
    rc =
        catalog_exec(cat, S_FILE_INSERT, NULL, errmsg, "ttitiiiitiiiii", file_id, req->path,
                     (int64_t)req->size, catalog_scheme_names[r->scheme], (int64_t)r->replicas,
                     (int64_t)r->fragments, (int64_t)r->data, (int64_t)r->parity,
                     dfs_placement_policy_name(req->policy), (int64_t)req->overwrite,
                     (int64_t)req->fragment_size, (int64_t)req->cell_size, now_ms, req->expires_ms);
    for (size_t i = 0; rc == DFS_OK && i < req->nfragments; i++) {
        const struct dfs_plan_fragment *pf = &req->fragments[i];
        char frag_id[DFS_FRAGMENT_ID_HEX + 1];
        dfs_fragment_id(file_id, pf->index, frag_id);
        rc = catalog_exec(cat, S_FRAGMENT_INSERT, NULL, errmsg, "ttii", frag_id, file_id,
                          (int64_t)pf->index, (int64_t)pf->size);
        for (size_t j = 0; rc == DFS_OK && j < pf->nnodes; j++)
            rc = catalog_exec(cat, S_REPLICA_INSERT, NULL, errmsg, "tti", frag_id, pf->node_ids[j],
                              (int64_t)j);
    }
    if (rc == DFS_OK)
        rc = catalog_find_file(cat, S_FILE_GET_ID, file_id, true, out, errmsg);
    if (rc == DFS_OK && *out == NULL)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: file %s vanished", file_id);
    return rc;
}

int dfs_catalog_file_create(dfs_catalog *cat, const struct dfs_create_req *req, int64_t now_ms,
                            struct dfs_file_rec **out, char **errmsg)
{
    if (catalog_must_propose(cat) && req != NULL) {
        /* The leader fixes the id: every replica writes this one. */
        struct dfs_create_req fixed = *req;
        char id[DFS_ID_HEX + 1];
        if (fixed.file_id == NULL) {
            if (dfs_id_random(id) != DFS_OK)
                return dfs_seterr(errmsg, DFS_EIO, "cannot draw a random file id");
            fixed.file_id = id;
        }
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_file_create(&fixed, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, out, NULL, NULL, errmsg);
    }
    int rc = validate_create(req, now_ms, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_file_rec *f = NULL;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, create_locked(cat, req, now_ms, &f, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        return rc;
    }
    dfs_log(DFS_LOG_DEBUG, "file created id=%s path=%s size=%" PRIu64, f->file_id, f->path,
            f->size);
    *out = f;
    return DFS_OK;
}

/* A pending file by id, with layout, that has not expired: else ENOTFOUND or EPRECOND. */
static int find_pending(dfs_catalog *cat, const char *file_id, int64_t now_ms,
                        struct dfs_file_rec **out, char **errmsg)
{
    int rc = catalog_find_file(cat, S_FILE_GET_ID, file_id, true, out, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_file_rec *f = *out;
    if (f == NULL)
        return dfs_seterr(errmsg, DFS_ENOTFOUND,
                          "no pending file %s (never created, aborted, or expired)", file_id);
    if (f->state != DFS_FILE_PENDING)
        rc =
            dfs_seterr(errmsg, DFS_EPRECOND, "file %s (%s) is already committed", file_id, f->path);
    else if (f->expires_ms <= now_ms)
        rc = dfs_seterr(errmsg, DFS_EPRECOND,
                        "pending file %s (%s) expired %" PRId64 " ms ago; put it again", file_id,
                        f->path, now_ms - f->expires_ms);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        *out = NULL;
    }
    return rc;
}

static bool fragment_has_node(const struct dfs_fragment_rec *fr, const char *node_id)
{
    for (size_t i = 0; i < fr->nreplicas; i++) {
        if (strcmp(fr->replicas[i].node_id, node_id) == 0)
            return true;
    }
    return false;
}

static int replace_locked(dfs_catalog *cat, const char *file_id, uint32_t index, const char *failed,
                          const char *fresh, int64_t now_ms, struct dfs_replica_rec *out,
                          char **errmsg)
{
    struct dfs_file_rec *f = NULL;
    int rc = find_pending(cat, file_id, now_ms, &f, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (index >= f->nfragments) {
        rc = dfs_seterr(errmsg, DFS_EINVAL,
                        "fragment index %" PRIu32 " is out of range (file %s has %zu)", index,
                        file_id, f->nfragments);
        goto done;
    }
    const struct dfs_fragment_rec *fr = &f->fragments[index];
    if (!fragment_has_node(fr, failed)) {
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND,
                        "storage node %s is not a target of fragment %" PRIu32 " of file %s",
                        failed, index, file_id);
        goto done;
    }
    rc = catalog_check_target(cat, fresh, errmsg);
    if (rc != DFS_OK)
        goto done;
    bool taken = fragment_has_node(fr, fresh);
    for (size_t i = 0; f->redundancy.scheme == DFS_SCHEME_ERASURE && i < f->nfragments; i++)
        taken = taken || fragment_has_node(&f->fragments[i], fresh);
    if (taken) {
        rc = dfs_seterr(errmsg, DFS_EABORTED,
                        "storage node %s is already a target of %s %s: choose another node", fresh,
                        f->redundancy.scheme == DFS_SCHEME_ERASURE ? "file" : "fragment",
                        f->redundancy.scheme == DFS_SCHEME_ERASURE ? file_id : fr->fragment_id);
        goto done;
    }
    for (size_t i = 0; i < fr->nfailed; i++) {
        if (strcmp(fr->failed_node_ids[i], fresh) == 0) {
            rc = dfs_seterr(errmsg, DFS_EABORTED,
                            "storage node %s failed for fragment %s and its copy is not removed "
                            "yet: choose another node",
                            fresh, fr->fragment_id);
            goto done;
        }
    }
    rc = catalog_exec(cat, S_REPLICA_MOVE, NULL, errmsg, "ttt", fr->fragment_id, failed, fresh);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_DELETION_INSERT, NULL, errmsg, "tti", fr->fragment_id, failed,
                          now_ms);
    struct dfs_node_rec n;
    int found = rc == DFS_OK ? catalog_get_node(cat, fresh, &n, errmsg) : rc;
    if (found == 1) {
        memset(out, 0, sizeof *out);
        memcpy(out->node_id, n.id, sizeof out->node_id);
        memcpy(out->address, n.address, sizeof out->address);
        out->node_state = n.state;
    } else {
        rc = found < 0 ? found
                       : dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: node %s vanished", fresh);
    }
done:
    dfs_catalog_file_rec_free(f);
    return rc;
}

int dfs_catalog_file_replace_target(dfs_catalog *cat, const char *file_id, uint32_t index,
                                    const char *failed_node_id, const char *new_node_id,
                                    int64_t now_ms, struct dfs_replica_rec *out, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_file_replace_target(file_id, index, failed_node_id, new_node_id,
                                                  now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, out, NULL, NULL, errmsg);
    }
    int rc = catalog_check_id(file_id, "file", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_id(failed_node_id, "node", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_id(new_node_id, "node", errmsg);
    if (rc == DFS_OK && strcmp(failed_node_id, new_node_id) == 0)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "the replacement is the failed node %s itself",
                        new_node_id);
    if (rc != DFS_OK)
        return rc;
    struct dfs_replica_rec r;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(
            cat,
            replace_locked(cat, file_id, index, failed_node_id, new_node_id, now_ms, &r, errmsg),
            errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK)
        return rc;
    dfs_log(DFS_LOG_INFO, "target replaced file=%s fragment=%" PRIu32 " failed=%s new=%s", file_id,
            index, failed_node_id, new_node_id);
    *out = r;
    return DFS_OK;
}

/* Check a commit request against the pending file's plan, without touching the database. */
static int validate_commit(const struct dfs_file_rec *f, const struct dfs_commit_fragment *frags,
                           size_t nfrags, char **errmsg)
{
    if (nfrags != f->nfragments || (frags == NULL && nfrags > 0))
        return dfs_seterr(errmsg, DFS_EINVAL, "commit lists %zu fragments, file %s has %zu",
                          frags == NULL ? 0 : nfrags, f->file_id, f->nfragments);
    bool seen[DFS_FRAGMENTS_MAX] = {false};
    for (size_t i = 0; i < nfrags; i++) {
        const struct dfs_commit_fragment *cf = &frags[i];
        if (cf->index >= f->nfragments || seen[cf->index])
            return dfs_seterr(errmsg, DFS_EINVAL, "commit fragment index %" PRIu32 " is %s",
                              cf->index, cf->index >= f->nfragments ? "out of range" : "repeated");
        seen[cf->index] = true;
        const struct dfs_fragment_rec *fr = &f->fragments[cf->index];
        if (cf->size != fr->size)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "fragment %" PRIu32 " has %" PRIu64 " bytes, the plan says %" PRIu64,
                              cf->index, cf->size, fr->size);
        if (cf->nnodes == 0 || cf->node_ids == NULL)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "fragment %" PRIu32 " was acknowledged by no storage node",
                              cf->index);
        for (size_t j = 0; j < cf->nnodes; j++) {
            const char *node = cf->node_ids[j];
            int rc = catalog_check_id(node, "node", errmsg);
            if (rc != DFS_OK)
                return rc;
            if (!fragment_has_node(fr, node))
                return dfs_seterr(errmsg, DFS_EINVAL,
                                  "storage node %s acknowledged fragment %" PRIu32
                                  " but is not one of its targets",
                                  node, cf->index);
            for (size_t k = 0; k < j; k++) {
                if (strcmp(node, cf->node_ids[k]) == 0)
                    return dfs_seterr(errmsg, DFS_EINVAL,
                                      "fragment %" PRIu32 " lists node %s twice", cf->index, node);
            }
        }
    }
    return DFS_OK;
}

/* Queue every replica of a file for deletion and remove its rows. */
static int remove_file(dfs_catalog *cat, const char *file_id, int64_t now_ms, char **errmsg)
{
    int rc = catalog_segments_remove(cat, file_id, now_ms, errmsg);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_DELETIONS_QUEUE_FILE, NULL, errmsg, "ti", file_id, now_ms);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_FILE_DELETE, NULL, errmsg, "t", file_id);
    return rc;
}

int catalog_remove_file(dfs_catalog *cat, const char *file_id, int64_t now_ms, char **errmsg)
{
    return remove_file(cat, file_id, now_ms, errmsg);
}

/*
 * Whether f is the committed result of this very commit request: the client's retry of a commit
 * whose answer it lost (the service restarted between the commit and its reply).
 */
static bool same_commit(const struct dfs_file_rec *f, const uint8_t *sha256,
                        const struct dfs_commit_fragment *frags, size_t nfrags)
{
    if (f->state != DFS_FILE_COMMITTED || nfrags != f->nfragments || frags == NULL ||
        memcmp(f->sha256, sha256, DFS_SHA256_LEN) != 0)
        return false;
    for (size_t i = 0; i < nfrags; i++)
        if (frags[i].index >= f->nfragments ||
            f->fragments[frags[i].index].checksum != frags[i].checksum)
            return false;
    return true;
}

static int commit_locked(dfs_catalog *cat, const char *file_id, const uint8_t *sha256,
                         const struct dfs_commit_fragment *frags, size_t nfrags, int64_t now_ms,
                         struct dfs_file_rec **out, char **replaced, bool *again, char **errmsg)
{
    struct dfs_file_rec *f = NULL, *old = NULL;
    int rc = catalog_find_file(cat, S_FILE_GET_ID, file_id, true, &f, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (f != NULL && same_commit(f, sha256, frags, nfrags)) {
        *again = true;
        *out = f;
        return DFS_OK;
    }
    dfs_catalog_file_rec_free(f);
    f = NULL;
    rc = find_pending(cat, file_id, now_ms, &f, errmsg);
    if (rc != DFS_OK)
        return rc;
    rc = validate_commit(f, frags, nfrags, errmsg);
    if (rc == DFS_OK)
        rc = catalog_find_file(cat, S_FILE_GET_PATH, f->path, false, &old, errmsg);
    if (rc == DFS_OK && old != NULL) {
        if (!f->overwrite) {
            rc = dfs_seterr(errmsg, DFS_EEXIST, "%s already exists (use --force to replace it)",
                            f->path);
        } else {
            rc = remove_file(cat, old->file_id, now_ms, errmsg);
            if (rc == DFS_OK) {
                *replaced = strdup(old->file_id);
                if (*replaced == NULL)
                    rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            }
        }
    }
    for (size_t i = 0; rc == DFS_OK && i < nfrags; i++) {
        const struct dfs_commit_fragment *cf = &frags[i];
        const char *frag_id = f->fragments[cf->index].fragment_id;
        rc = catalog_exec(cat, S_FRAGMENT_SET_CHECKSUM, NULL, errmsg, "ti", frag_id,
                          (int64_t)cf->checksum);
        for (size_t j = 0; rc == DFS_OK && j < cf->nnodes; j++)
            rc = catalog_exec(cat, S_REPLICA_ACK, NULL, errmsg, "tt", frag_id, cf->node_ids[j]);
    }
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_DELETIONS_QUEUE_UNACKED, NULL, errmsg, "ti", file_id, now_ms);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_REPLICAS_DROP_UNACKED, NULL, errmsg, "t", file_id);
    int changes = 0;
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_FILE_COMMIT, &changes, errmsg, "tbi", file_id,
                          (const void *)sha256, (size_t)DFS_SHA256_LEN, now_ms);
    if (rc == DFS_OK && changes != 1)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: file %s left the pending state", file_id);
    dfs_catalog_file_rec_free(f);
    dfs_catalog_file_rec_free(old);
    if (rc == DFS_OK)
        rc = catalog_find_file(cat, S_FILE_GET_ID, file_id, true, out, errmsg);
    return rc;
}

int dfs_catalog_file_commit(dfs_catalog *cat, const char *file_id,
                            const uint8_t sha256[DFS_SHA256_LEN],
                            const struct dfs_commit_fragment *fragments, size_t nfragments,
                            int64_t now_ms, struct dfs_file_rec **out, char **errmsg)
{
    if (catalog_must_propose(cat) && sha256 != NULL) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_file_commit(file_id, sha256, fragments, nfragments, now_ms, &cmd_,
                                          &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, out, NULL, NULL, errmsg);
    }
    int rc = catalog_check_id(file_id, "file", errmsg);
    if (rc != DFS_OK)
        return rc;
    if (sha256 == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "commit without a SHA-256");
    struct dfs_file_rec *f = NULL;
    char *replaced = NULL;
    bool again = false;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat,
                            commit_locked(cat, file_id, sha256, fragments, nfragments, now_ms, &f,
                                          &replaced, &again, errmsg),
                            errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        free(replaced);
        return rc;
    }
    if (again)
        dfs_log(DFS_LOG_INFO, "file commit repeated id=%s path=%s", f->file_id, f->path);
    else
        dfs_log(DFS_LOG_INFO, "file committed id=%s path=%s size=%" PRIu64 " replaced=%s",
                f->file_id, f->path, f->size, replaced == NULL ? "none" : replaced);
    free(replaced);
    *out = f;
    return DFS_OK;
}

/* The conditions of meta against the committed file at the pending file's path (a commit repeated
   after it took effect passes: commit_locked answers it). */
static int commit_conditions(dfs_catalog *cat, const char *file_id,
                             const struct dfs_file_meta *meta, char **errmsg)
{
    bool want_id = meta->if_file_id != NULL && meta->if_file_id[0] != '\0';
    if (!meta->if_absent && !want_id)
        return DFS_OK;
    struct dfs_file_rec *f = NULL, *old = NULL;
    int rc = catalog_find_file(cat, S_FILE_GET_ID, file_id, false, &f, errmsg);
    if (rc == DFS_OK && f != NULL && f->state == DFS_FILE_PENDING)
        rc = catalog_find_file(cat, S_FILE_GET_PATH, f->path, false, &old, errmsg);
    if (rc == DFS_OK && f != NULL && f->state == DFS_FILE_PENDING) {
        if (meta->if_absent && old != NULL)
            rc = dfs_seterr(errmsg, DFS_EPRECOND, "%s exists (the put asked for none)", f->path);
        else if (want_id && (old == NULL || strcmp(old->file_id, meta->if_file_id) != 0))
            rc = dfs_seterr(errmsg, DFS_EPRECOND, "%s is no longer file %s", f->path,
                            meta->if_file_id);
    }
    dfs_catalog_file_rec_free(f);
    dfs_catalog_file_rec_free(old);
    return rc;
}

int dfs_catalog_file_commit_meta(dfs_catalog *cat, const char *file_id,
                                 const uint8_t sha256[DFS_SHA256_LEN],
                                 const struct dfs_commit_fragment *fragments, size_t nfragments,
                                 const struct dfs_file_meta *meta, int64_t now_ms,
                                 struct dfs_file_rec **out, char **errmsg)
{
    if (catalog_must_propose(cat) && sha256 != NULL && meta != NULL) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_file_commit_meta(file_id, sha256, fragments, nfragments, meta, now_ms,
                                               &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, out, NULL, NULL, errmsg);
    }
    int rc = catalog_check_id(file_id, "file", errmsg);
    if (rc != DFS_OK)
        return rc;
    if (sha256 == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "commit without a SHA-256");
    if (meta->meta_len > DFS_CATALOG_META_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "an object's stored headers are at most %d bytes",
                          DFS_CATALOG_META_MAX);
    struct dfs_file_rec *f = NULL;
    char *replaced = NULL;
    bool again = false;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int crc = commit_conditions(cat, file_id, meta, errmsg);
        if (crc == DFS_OK)
            crc = commit_locked(cat, file_id, sha256, fragments, nfragments, now_ms, &f, &replaced,
                                &again, errmsg);
        if (crc == DFS_OK && meta->md5 != NULL)
            crc = catalog_exec(cat, S_META_PUT, NULL, errmsg, "tbb", file_id, meta->md5,
                               (size_t)DFS_CATALOG_MD5_LEN,
                               meta->meta != NULL ? meta->meta : (const void *)"", meta->meta_len);
        else if (crc == DFS_OK)
            crc = catalog_exec(cat, S_META_PUT, NULL, errmsg, "tnb", file_id,
                               meta->meta != NULL ? meta->meta : (const void *)"", meta->meta_len);
        rc = catalog_tx_end(cat, crc, errmsg);
    }
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        free(replaced);
        return rc;
    }
    dfs_log(DFS_LOG_INFO, "file committed id=%s path=%s size=%" PRIu64 " replaced=%s meta=%zu",
            f->file_id, f->path, f->size, replaced == NULL ? "none" : replaced, meta->meta_len);
    free(replaced);
    *out = f;
    return DFS_OK;
}

int dfs_catalog_file_meta_get(dfs_catalog *cat, const char *file_id,
                              uint8_t md5[DFS_CATALOG_MD5_LEN], bool *has_md5, uint8_t **meta,
                              size_t *meta_len, char **errmsg)
{
    *has_md5 = false;
    *meta = NULL;
    *meta_len = 0;
    catalog_lock(cat);
    int rc = catalog_query(cat, S_META_GET, errmsg, "t", file_id);
    if (rc == 1) {
        sqlite3_stmt *st = cat->st[S_META_GET];
        const void *m = sqlite3_column_blob(st, 0);
        if (m != NULL && sqlite3_column_bytes(st, 0) == DFS_CATALOG_MD5_LEN) {
            memcpy(md5, m, DFS_CATALOG_MD5_LEN);
            *has_md5 = true;
        }
        const void *v = sqlite3_column_blob(st, 1);
        int n = sqlite3_column_bytes(st, 1);
        rc = DFS_OK;
        if (v != NULL && n > 0) {
            if ((*meta = malloc((size_t)n)) == NULL)
                rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            else {
                memcpy(*meta, v, (size_t)n);
                *meta_len = (size_t)n;
            }
        }
        catalog_release(st);
    } else if (rc == 0) {
        rc = DFS_ENOTFOUND;
    }
    catalog_unlock(cat);
    return rc;
}

/* Abort one pending file; returns DFS_ENOTFOUND (no message) when it is not pending. */
static int abort_locked(dfs_catalog *cat, const char *file_id, int64_t now_ms, char **errmsg)
{
    struct dfs_file_rec *f = NULL;
    int rc = catalog_find_file(cat, S_FILE_GET_ID, file_id, false, &f, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (f == NULL || f->state != DFS_FILE_PENDING)
        rc = DFS_ENOTFOUND;
    else
        rc = remove_file(cat, file_id, now_ms, errmsg);
    dfs_catalog_file_rec_free(f);
    return rc;
}

int dfs_catalog_file_abort(dfs_catalog *cat, const char *file_id, int64_t now_ms, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_file_abort(file_id, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    int rc = catalog_check_id(file_id, "file", errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, abort_locked(cat, file_id, now_ms, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc == DFS_ENOTFOUND)
        return dfs_seterr(errmsg, rc, "no pending file %s (never created, committed, or gone)",
                          file_id);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO, "file aborted id=%s", file_id);
    return rc;
}

int dfs_catalog_files_expire(dfs_catalog *cat, int64_t now_ms, size_t *nexpired, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_files_expire(now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, nexpired, NULL, NULL, errmsg);
    }
    struct expired {
        char id[DFS_ID_HEX + 1];
        char *path;
    } *v = NULL;
    size_t n = 0;
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int row = catalog_query(cat, S_FILES_EXPIRED, errmsg, "i", now_ms);
        while (row == 1) {
            struct expired *e = catalog_grow(&v, &n, sizeof *e);
            const char *path = catalog_col_text(cat, S_FILES_EXPIRED, 1);
            if (e != NULL) {
                catalog_col_copy(cat, S_FILES_EXPIRED, 0, e->id, sizeof e->id);
                e->path = strdup(path == NULL ? "" : path);
            }
            if (e == NULL || e->path == NULL) {
                catalog_release(cat->st[S_FILES_EXPIRED]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            row = catalog_next_row(cat, S_FILES_EXPIRED, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        for (size_t i = 0; rc == DFS_OK && i < n; i++)
            rc = remove_file(cat, v[i].id, now_ms, errmsg);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    for (size_t i = 0; i < n; i++) {
        if (rc == DFS_OK)
            dfs_log(DFS_LOG_INFO, "pending file expired id=%s path=%s", v[i].id, v[i].path);
        free(v[i].path);
    }
    free(v);
    if (rc == DFS_OK && nexpired != NULL)
        *nexpired = n;
    return rc;
}

int dfs_catalog_file_get(dfs_catalog *cat, const char *path, struct dfs_file_rec **out,
                         char **errmsg)
{
    int rc = check_path(path, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_file_rec *f = NULL;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, catalog_find_file(cat, S_FILE_GET_PATH, path, true, &f, errmsg),
                            errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        return rc;
    }
    if (f == NULL)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no file %s", path);
    *out = f;
    return DFS_OK;
}

int dfs_catalog_file_get_id(dfs_catalog *cat, const char *file_id, struct dfs_file_rec **out,
                            char **errmsg)
{
    int rc = catalog_check_id(file_id, "file", errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_file_rec *f = NULL;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, catalog_find_file(cat, S_FILE_GET_ID, file_id, true, &f, errmsg),
                            errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        return rc;
    }
    if (f == NULL)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no file with id %s", file_id);
    *out = f;
    return DFS_OK;
}

/*
 * The least string greater than every string that starts with `prefix`: drop trailing 0xff bytes
 * and increment the last remaining byte. Canonical prefixes start with '/', so it always exists.
 */
static char *prefix_end(const char *prefix)
{
    size_t n = strlen(prefix);
    while (n > 0 && (unsigned char)prefix[n - 1] == 0xff)
        n--;
    if (n == 0)
        return NULL;
    char *end = malloc(n + 1);
    if (end == NULL)
        return NULL;
    memcpy(end, prefix, n);
    end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
    end[n] = '\0';
    return end;
}

int dfs_catalog_files_list(dfs_catalog *cat, const char *prefix, const char *after, size_t limit,
                           struct dfs_file_rec **out, size_t *n, bool *more, char **errmsg)
{
    if (prefix == NULL || prefix[0] != '/')
        return dfs_seterr(errmsg, DFS_EINVAL, "listing prefix '%s' does not start with '/'",
                          prefix == NULL ? "" : prefix);
    if (limit == 0 || limit > DFS_CATALOG_LIST_MAX)
        limit = DFS_CATALOG_LIST_MAX;
    if (after != NULL && after[0] == '\0')
        after = NULL;
    char *end = prefix_end(prefix);
    if (end == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    /* Start at the larger of the prefix and the cursor; `path IS NOT after` makes it exclusive. */
    const char *lo = after != NULL && strcmp(after, prefix) > 0 ? after : prefix;
    struct dfs_file_rec *v = NULL;
    size_t count = 0;
    bool extra = false;
    catalog_lock(cat);
    int rc = catalog_query(cat, S_FILES_LIST, errmsg, "ttti", lo, end, after, (int64_t)limit + 1);
    while (rc == 1) {
        if (count == limit) { /* one row beyond the page: there is more */
            extra = true;
            catalog_release(cat->st[S_FILES_LIST]);
            rc = 0;
            break;
        }
        struct dfs_file_rec *slot = catalog_grow(&v, &count, sizeof *slot);
        int r = slot == NULL ? dfs_seterr(errmsg, DFS_ENOMEM, "out of memory")
                             : read_file(cat, S_FILES_LIST, slot, errmsg);
        if (r != DFS_OK) {
            catalog_release(cat->st[S_FILES_LIST]);
            rc = r;
            break;
        }
        rc = catalog_next_row(cat, S_FILES_LIST, errmsg);
    }
    catalog_unlock(cat);
    free(end);
    if (rc < 0) {
        dfs_catalog_file_recs_free(v, count);
        return rc;
    }
    *out = v;
    *n = count;
    *more = extra;
    return DFS_OK;
}

static int delete_locked(dfs_catalog *cat, const char *path, int64_t now_ms,
                         struct dfs_file_rec **out, char **errmsg)
{
    int rc = catalog_find_file(cat, S_FILE_GET_PATH, path, true, out, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (*out == NULL)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no file %s", path);
    return remove_file(cat, (*out)->file_id, now_ms, errmsg);
}

int dfs_catalog_file_delete(dfs_catalog *cat, const char *path, int64_t now_ms,
                            struct dfs_file_rec **out, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_file_delete(path, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, out, NULL, NULL, errmsg);
    }
    int rc = check_path(path, errmsg);
    if (rc != DFS_OK)
        return rc;
    /* A segment goes with its stitched file, never alone (the file would lose bytes). */
    if (strncmp(path, DFS_CATALOG_SEGMENT_DIR, strlen(DFS_CATALOG_SEGMENT_DIR)) == 0)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "%s is a segment of a stitched file: delete that file instead", path);
    struct dfs_file_rec *f = NULL;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, delete_locked(cat, path, now_ms, &f, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        return rc;
    }
    dfs_log(DFS_LOG_INFO, "file deleted id=%s path=%s", f->file_id, f->path);
    *out = f;
    return DFS_OK;
}

/* ---- Rename ---------------------------------------------------------------------------------- */

/* Run one SQL statement with text parameters ?1.. and give its first column (an integer) or, with
   out NULL, the number of rows it changed in *out_changes. A one-off statement: rename is rare. */
static int rename_sql(dfs_catalog *cat, const char *sql, const char *a, const char *b, int64_t *out,
                      char **errmsg)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(cat->db, sql, -1, &st, NULL) != SQLITE_OK)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "rename: %s", sqlite3_errmsg(cat->db));
    sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    if (b != NULL)
        sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    int rc = DFS_OK;
    if (step == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else if (step == SQLITE_DONE)
        *out = sqlite3_changes(cat->db);
    else if (sqlite3_errcode(cat->db) == SQLITE_CONSTRAINT)
        rc = dfs_seterr(errmsg, DFS_EEXIST, "rename: a file already has the new path");
    else
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "rename: %s", sqlite3_errmsg(cat->db));
    sqlite3_finalize(st);
    return rc;
}

/* Committed files whose path starts with prefix + "/". */
#define UNDER_WHERE "WHERE state = 'committed' AND substr(path, 1, length(?1) + 1) = ?1 || '/'"
#define UNDER_SQL   "FROM files " UNDER_WHERE

static int rename_locked(dfs_catalog *cat, const char *from, const char *to, bool replace,
                         int64_t now_ms, int64_t *moved, char **errmsg)
{
    struct dfs_file_rec *f = NULL, *dst = NULL;
    int64_t under_to = 0, under_from = 0;
    int rc = catalog_find_file(cat, S_FILE_GET_PATH, from, false, &f, errmsg);
    if (rc == DFS_OK)
        rc = catalog_find_file(cat, S_FILE_GET_PATH, to, false, &dst, errmsg);
    if (rc == DFS_OK)
        rc = rename_sql(cat, "SELECT count(*) " UNDER_SQL, to, NULL, &under_to, errmsg);
    if (rc == DFS_OK && f == NULL)
        rc = rename_sql(cat, "SELECT count(*) " UNDER_SQL, from, NULL, &under_from, errmsg);
    /* an explicit directory (path_attrs) with no file under it is one too */
    int64_t dirs_from = 0;
    if (rc == DFS_OK && f == NULL && under_from == 0)
        rc = rename_sql(cat,
                        "SELECT count(*) FROM path_attrs WHERE is_dir = 1 AND (path = ?1 OR "
                        "substr(path, 1, length(?1) + 1) = ?1 || '/')",
                        from, NULL, &dirs_from, errmsg);
    if (rc != DFS_OK)
        goto out;
    if (f != NULL) {
        if (under_to > 0)
            rc = dfs_seterr(errmsg, DFS_EEXIST, "%s is a directory", to);
        else if (dst != NULL && !replace)
            rc =
                dfs_seterr(errmsg, DFS_EEXIST, "%s already exists (use --force to replace it)", to);
        else if (dst != NULL && strcmp(dst->file_id, f->file_id) != 0)
            rc = remove_file(cat, dst->file_id, now_ms, errmsg);
        if (rc == DFS_OK)
            rc = rename_sql(cat, "UPDATE files SET path = ?2 WHERE file_id = ?1", f->file_id, to,
                            moved, errmsg);
    } else if (under_from == 0 && dirs_from == 0) {
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "no file or directory %s", from);
    } else if (dst != NULL) {
        rc = dfs_seterr(errmsg, DFS_EEXIST, "%s is a file", to);
    } else if (under_to > 0) {
        rc = dfs_seterr(errmsg, DFS_EEXIST, "directory %s is not empty", to);
    } else {
        /* ?1 = from, ?2 = to: "from/x/y" becomes "to/x/y". */
        rc = rename_sql(cat,
                        "UPDATE files SET path = ?2 || substr(path, length(?1) + 1) " UNDER_WHERE,
                        from, to, moved, errmsg);
    }
    /* Attributes follow (issue 18); whatever was kept for `to` goes. */
    int64_t ignored = 0;
    if (rc == DFS_OK)
        rc = rename_sql(cat, "DELETE FROM path_attrs WHERE path = ?1", to, NULL, &ignored, errmsg);
    if (rc == DFS_OK)
        rc = rename_sql(cat,
                        "UPDATE path_attrs SET path = ?2 || substr(path, length(?1) + 1) WHERE "
                        "path = ?1 OR substr(path, 1, length(?1) + 1) = ?1 || '/'",
                        from, to, &ignored, errmsg);
out:
    dfs_catalog_file_rec_free(f);
    dfs_catalog_file_rec_free(dst);
    return rc;
}

/* Whether a rename at `path` would move something at or under DFS_CATALOG_SEGMENT_DIR: the
   path is that folder, under it, or a folder above it ("/.dfs-s3"). */
static bool touches_segments(const char *path)
{
    size_t seg = strlen(DFS_CATALOG_SEGMENT_DIR); /* with its trailing '/' */
    size_t n = strlen(path);
    if (n + 1 >= seg) /* the folder itself or something under it */
        return strncmp(path, DFS_CATALOG_SEGMENT_DIR, seg - 1) == 0 &&
               (path[seg - 1] == '\0' || path[seg - 1] == '/');
    return strncmp(DFS_CATALOG_SEGMENT_DIR, path, n) == 0 && DFS_CATALOG_SEGMENT_DIR[n] == '/';
}

int dfs_catalog_file_rename(dfs_catalog *cat, const char *from, const char *to, bool replace,
                            int64_t now_ms, uint64_t *moved, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_file_rename(from, to, replace, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, moved, NULL, NULL, errmsg);
    }
    int rc = check_path(from, errmsg);
    if (rc == DFS_OK)
        rc = check_path(to, errmsg);
    if (rc != DFS_OK)
        return rc;
    size_t n = strlen(from);
    if (strcmp(from, to) == 0) { /* as rename(2): nothing to do */
        if (moved != NULL)
            *moved = 0;
        return DFS_OK;
    }
    if (strncmp(to, from, n) == 0 && to[n] == '/')
        return dfs_seterr(errmsg, DFS_EINVAL, "cannot move %s inside itself (%s)", from, to);
    /* Segments belong to their stitched files (issue 17): none moves in or out of their folder,
       alone or with a folder above it, else a file would lose bytes or a segment would be a file. */
    if (touches_segments(from) || touches_segments(to))
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "cannot rename %s to %s: %s holds the segments of stitched files", from,
                          to, DFS_CATALOG_SEGMENT_DIR);
    int64_t count = 0;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, rename_locked(cat, from, to, replace, now_ms, &count, errmsg),
                            errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK)
        return rc;
    dfs_log(DFS_LOG_INFO, "renamed from=%s to=%s files=%lld", from, to, (long long)count);
    if (moved != NULL)
        *moved = (uint64_t)count;
    return DFS_OK;
}

/* ---- Path attributes (dfs-mount) --------------------------------------------------------------- */

/* One statement over path_attrs with ?1 = path and the attribute columns as given (NULL when
   has is false); calls each row back for SELECTs. */
static int attrs_sql(dfs_catalog *cat, const char *sql, const char *path,
                     const struct dfs_path_attrs *a, void (*row)(sqlite3_stmt *st, void *arg),
                     void *arg, char **errmsg)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(cat->db, sql, -1, &st, NULL) != SQLITE_OK)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "attributes: %s", sqlite3_errmsg(cat->db));
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    if (a != NULL) {
        sqlite3_bind_int(st, 2, a->is_dir ? 1 : 0);
        if (a->has_mode)
            sqlite3_bind_int64(st, 3, a->mode);
        if (a->has_owner) {
            sqlite3_bind_int64(st, 4, a->uid);
            sqlite3_bind_int64(st, 5, a->gid);
        }
        if (a->has_mtime)
            sqlite3_bind_int64(st, 6, a->mtime_ms);
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        if (row != NULL)
            row(st, arg);
    int rc = step == SQLITE_DONE
                 ? DFS_OK
                 : dfs_seterr(errmsg, DFS_EINTERNAL, "attributes: %s", sqlite3_errmsg(cat->db));
    sqlite3_finalize(st);
    return rc;
}

static int attrs_locked(dfs_catalog *cat, const char *sql, const char *path,
                        const struct dfs_path_attrs *a, void (*row)(sqlite3_stmt *, void *),
                        void *arg, char **errmsg)
{
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, a != NULL || row == NULL, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, attrs_sql(cat, sql, path, a, row, arg, errmsg), errmsg);
    catalog_unlock(cat);
    return rc;
}

int dfs_catalog_attrs_set(dfs_catalog *cat, const char *path, const struct dfs_path_attrs *a,
                          char **errmsg)
{
    if (catalog_must_propose(cat) && a != NULL) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_attrs_set(path, a, 0, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    int rc = check_path(path, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (a->has_mode && a->mode > 07777)
        return dfs_seterr(errmsg, DFS_EINVAL, "mode %o is more than permission bits", a->mode);
    return attrs_locked(
        cat,
        "INSERT INTO path_attrs (path, is_dir, mode, uid, gid, mtime_ms) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (path) DO UPDATE SET "
        "is_dir = max(is_dir, excluded.is_dir), mode = coalesce(excluded.mode, mode), "
        "uid = coalesce(excluded.uid, uid), gid = coalesce(excluded.gid, gid), "
        "mtime_ms = coalesce(excluded.mtime_ms, mtime_ms)",
        path, a, NULL, NULL, errmsg);
}

static void attrs_row(sqlite3_stmt *st, void *arg)
{
    struct dfs_path_attrs *a = arg;
    a->is_dir = sqlite3_column_int(st, 0) != 0;
    if ((a->has_mode = sqlite3_column_type(st, 1) != SQLITE_NULL))
        a->mode = (uint32_t)sqlite3_column_int64(st, 1);
    if ((a->has_owner = sqlite3_column_type(st, 2) != SQLITE_NULL)) {
        a->uid = (uint32_t)sqlite3_column_int64(st, 2);
        a->gid = (uint32_t)sqlite3_column_int64(st, 3);
    }
    if ((a->has_mtime = sqlite3_column_type(st, 4) != SQLITE_NULL))
        a->mtime_ms = sqlite3_column_int64(st, 4);
    a->has_owner = a->has_owner && sqlite3_column_type(st, 3) != SQLITE_NULL;
}

struct attrs_found {
    struct dfs_path_attrs a;
    bool found;
};

static void attrs_found_row(sqlite3_stmt *st, void *arg)
{
    struct attrs_found *f = arg;
    attrs_row(st, &f->a);
    f->found = true;
}

int dfs_catalog_attrs_get(dfs_catalog *cat, const char *path, struct dfs_path_attrs *out,
                          bool *found, char **errmsg)
{
    int rc = check_path(path, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct attrs_found f = {0};
    rc =
        attrs_locked(cat, "SELECT is_dir, mode, uid, gid, mtime_ms FROM path_attrs WHERE path = ?1",
                     path, NULL, attrs_found_row, &f, errmsg);
    if (rc != DFS_OK)
        return rc;
    *out = f.a;
    *found = f.found;
    return DFS_OK;
}

int dfs_catalog_attrs_remove(dfs_catalog *cat, const char *path, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_attrs_set(path, NULL, 0, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    int rc = check_path(path, errmsg);
    if (rc != DFS_OK)
        return rc;
    return attrs_locked(cat, "DELETE FROM path_attrs WHERE path = ?1", path, NULL, NULL, NULL,
                        errmsg);
}

struct dirs_list {
    char **v;
    size_t n;
    bool oom;
};

static void dirs_row(sqlite3_stmt *st, void *arg)
{
    struct dirs_list *l = arg;
    char **v = realloc(l->v, (l->n + 1) * sizeof *v);
    char *p = strdup((const char *)sqlite3_column_text(st, 0));
    if (v == NULL || p == NULL) {
        if (v != NULL)
            l->v = v;
        free(p);
        l->oom = true;
        return;
    }
    l->v = v;
    l->v[l->n++] = p;
}

int dfs_catalog_attrs_dirs(dfs_catalog *cat, const char *dir, char ***out, size_t *n, char **errmsg)
{
    /* "/" lists the top; "/a" what is right under "/a/" */
    const char *base = strcmp(dir, "/") == 0 ? "" : dir;
    if (base[0] != '\0') {
        int rc = check_path(dir, errmsg);
        if (rc != DFS_OK)
            return rc;
    }
    struct dirs_list l = {0};
    int rc = attrs_locked(cat,
                          "SELECT path FROM path_attrs WHERE is_dir = 1 AND "
                          "substr(path, 1, length(?1) + 1) = ?1 || '/' AND "
                          "instr(substr(path, length(?1) + 2), '/') = 0 ORDER BY path",
                          base, NULL, dirs_row, &l, errmsg);
    if (rc == DFS_OK && l.oom)
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    if (rc != DFS_OK) {
        for (size_t i = 0; i < l.n; i++)
            free(l.v[i]);
        free(l.v);
        return rc;
    }
    *out = l.v;
    *n = l.n;
    return DFS_OK;
}

/* ---- Deletion queue -------------------------------------------------------------------------- */

int dfs_catalog_deletions_fetch(dfs_catalog *cat, int64_t now_ms, int64_t grace_ms, size_t max,
                                struct dfs_deletion_rec **out, size_t *n, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_deletions_fetch(now_ms, grace_ms, max, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, out, n, NULL, errmsg);
    }
    int64_t queued_before = grace_ms > 0 ? now_ms - grace_ms : INT64_MAX;
    if (max > INT32_MAX)
        max = INT32_MAX;
    struct dfs_deletion_rec *v = NULL;
    size_t count = 0;
    int dropped = 0;
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        rc = catalog_exec(cat, S_DELETIONS_DROP_ORPHANS, &dropped, errmsg, "");
        int row = rc == DFS_OK && max > 0 ? catalog_query(cat, S_DELETIONS_FETCH, errmsg, "iii",
                                                          now_ms, (int64_t)max, queued_before)
                                          : rc;
        while (row == 1) {
            struct dfs_deletion_rec *d = catalog_grow(&v, &count, sizeof *d);
            if (d == NULL) {
                catalog_release(cat->st[S_DELETIONS_FETCH]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            catalog_col_copy(cat, S_DELETIONS_FETCH, 0, d->fragment_id, sizeof d->fragment_id);
            catalog_col_copy(cat, S_DELETIONS_FETCH, 1, d->node_id, sizeof d->node_id);
            catalog_col_copy(cat, S_DELETIONS_FETCH, 2, d->address, sizeof d->address);
            row = catalog_next_row(cat, S_DELETIONS_FETCH, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        free(v);
        return rc;
    }
    if (dropped > 0)
        dfs_log(DFS_LOG_INFO, "dropped deletions for unregistered nodes count=%d", dropped);
    *out = v;
    *n = count;
    return DFS_OK;
}

int dfs_catalog_copy_get(dfs_catalog *cat, const char *fragment_id, const char *node_id,
                         bool *recorded, uint64_t *size, uint32_t *checksum, char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "invalid fragment id");
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    int row = catalog_query(cat, S_COPY_GET, errmsg, "tt", fragment_id, node_id);
    if (row == 1) {
        if (size != NULL)
            *size = (uint64_t)sqlite3_column_int64(cat->st[S_COPY_GET], 0);
        if (checksum != NULL)
            *checksum = (uint32_t)sqlite3_column_int64(cat->st[S_COPY_GET], 1);
        catalog_release(cat->st[S_COPY_GET]);
    }
    catalog_unlock(cat);
    if (row < 0)
        return row;
    *recorded = row == 1;
    return DFS_OK;
}

static int deletion_update(dfs_catalog *cat, enum stmt id, const char *fragment_id,
                           const char *node_id, int64_t until_ms, char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s'",
                          fragment_id == NULL ? "" : fragment_id);
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        if (id == S_DELETION_POSTPONE)
            rc = catalog_exec(cat, id, NULL, errmsg, "tti", fragment_id, node_id, until_ms);
        else
            rc = catalog_exec(cat, id, NULL, errmsg, "tt", fragment_id, node_id);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    return rc;
}

int dfs_catalog_deletion_done(dfs_catalog *cat, const char *fragment_id, const char *node_id,
                              char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_deletion_done(fragment_id, node_id, 0, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    return deletion_update(cat, S_DELETION_DELETE, fragment_id, node_id, 0, errmsg);
}

int dfs_catalog_deletion_postpone(dfs_catalog *cat, const char *fragment_id, const char *node_id,
                                  int64_t until_ms, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ =
            dfs_command_deletion_postpone(fragment_id, node_id, until_ms, 0, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    return deletion_update(cat, S_DELETION_POSTPONE, fragment_id, node_id, until_ms, errmsg);
}
