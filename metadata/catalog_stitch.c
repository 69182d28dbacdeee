/*
 * StitchFile (issue 17): a committed file made of other committed files, without copying bytes.
 *
 * Design. A fragment's id is its file's id and index (the nodes store copies under it, and
 * repair, inventories and deletions go by it), so the parts' fragments cannot be renumbered into
 * a new file. Instead each part stays the committed file row it was, with its fragments and
 * copies untouched, and only leaves the namespace: its path becomes DFS_CATALOG_SEGMENT_DIR
 * "<its file id>". The stitched file is a committed row with no fragments and a `segments` row
 * per part (file_id, seq, offset, part_id). Repair, scrubbing and rebalancing go on seeing the
 * parts as ordinary files; readers get the segments with the stitched file's layout
 * (catalog_segments_load) and read them in turn; deleting or replacing the stitched file deletes
 * the segments with it (catalog_segments_remove). One level only: a stitched file or a segment
 * cannot be a part.
 *
 * Statements here are prepared per call (sqlite3_prepare_v2) rather than in catalog.c's table, so
 * this file stays one concept; they are cheap beside the transaction they run in.
 */
#include "metadata/catalog_int.h"

#include "common/err.h"
#include "common/log.h"
#include "common/path.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prepare sql; DFS_EINTERNAL with the message on failure. */
static int prepare(dfs_catalog *cat, const char *sql, sqlite3_stmt **st, char **errmsg)
{
    if (sqlite3_prepare_v2(cat->db, sql, -1, st, NULL) != SQLITE_OK) {
        *st = NULL;
        return dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: prepare: %s", sqlite3_errmsg(cat->db));
    }
    return DFS_OK;
}

static int step_done(dfs_catalog *cat, sqlite3_stmt *st, char **errmsg)
{
    int s = sqlite3_step(st);
    int rc = s == SQLITE_DONE ? DFS_OK
                              : dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: stitch: %s",
                                           sqlite3_errmsg(cat->db));
    sqlite3_finalize(st);
    return rc;
}

/* The segments of file_id (offsets and part ids, in order) into new arrays. */
static int segment_rows(dfs_catalog *cat, const char *file_id, uint64_t **offsets,
                        char (**ids)[DFS_ID_HEX + 1], size_t *n, char **errmsg)
{
    *offsets = NULL;
    *ids = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    int rc = prepare(cat, "SELECT offset, part_id FROM segments WHERE file_id = ?1 ORDER BY seq",
                     &st, errmsg);
    if (rc != DFS_OK)
        return rc;
    sqlite3_bind_text(st, 1, file_id, -1, SQLITE_STATIC);
    size_t no = 0;
    int s;
    while (rc == DFS_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t *o = catalog_grow(offsets, &no, sizeof *o);
        char(*id)[DFS_ID_HEX + 1] = catalog_grow(ids, n, sizeof **ids);
        if (o == NULL || id == NULL) {
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            break;
        }
        *o = (uint64_t)sqlite3_column_int64(st, 0);
        const unsigned char *t = sqlite3_column_text(st, 1);
        snprintf(*id, sizeof *id, "%s", t != NULL ? (const char *)t : "");
    }
    if (rc == DFS_OK && s != SQLITE_DONE)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: segments: %s", sqlite3_errmsg(cat->db));
    sqlite3_finalize(st);
    if (rc == DFS_OK && no != *n)
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    if (rc != DFS_OK) {
        free(*offsets);
        free(*ids);
        *offsets = NULL;
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

int catalog_segments_load(dfs_catalog *cat, struct dfs_file_rec *f, char **errmsg)
{
    uint64_t *offsets = NULL;
    char(*ids)[DFS_ID_HEX + 1] = NULL;
    size_t n = 0;
    int rc = segment_rows(cat, f->file_id, &offsets, &ids, &n, errmsg);
    if (rc == DFS_OK && n > 0 && (f->segments = calloc(n, sizeof *f->segments)) == NULL)
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    for (size_t i = 0; rc == DFS_OK && i < n; i++) {
        struct dfs_file_rec *seg = NULL;
        rc = catalog_find_file(cat, S_FILE_GET_ID, ids[i], true, &seg, errmsg);
        if (rc == DFS_OK && seg == NULL)
            rc = dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: file %s lacks its segment %s",
                            f->file_id, ids[i]);
        if (rc == DFS_OK) {
            f->segments[i].offset = offsets[i];
            f->segments[i].file = seg;
            f->nsegments = i + 1;
        }
    }
    free(offsets);
    free(ids);
    return rc;
}

void catalog_segments_free(struct dfs_file_rec *f)
{
    for (size_t i = 0; i < f->nsegments; i++)
        dfs_catalog_file_rec_free(f->segments[i].file);
    free(f->segments);
    f->segments = NULL;
    f->nsegments = 0;
}

int catalog_segments_remove(dfs_catalog *cat, const char *file_id, int64_t now_ms, char **errmsg)
{
    uint64_t *offsets = NULL;
    char(*ids)[DFS_ID_HEX + 1] = NULL;
    size_t n = 0;
    int rc = segment_rows(cat, file_id, &offsets, &ids, &n, errmsg);
    for (size_t i = 0; rc == DFS_OK && i < n; i++) {
        rc = catalog_exec(cat, S_DELETIONS_QUEUE_FILE, NULL, errmsg, "ti", ids[i], now_ms);
        if (rc == DFS_OK)
            rc = catalog_exec(cat, S_FILE_DELETE, NULL, errmsg, "t", ids[i]);
    }
    free(offsets);
    free(ids);
    return rc;
}

/* Whether file_id is a segment of a stitched file. */
static int is_segment(dfs_catalog *cat, const char *file_id, bool *yes, char **errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(cat, "SELECT 1 FROM segments WHERE part_id = ?1", &st, errmsg);
    if (rc != DFS_OK)
        return rc;
    sqlite3_bind_text(st, 1, file_id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    *yes = s == SQLITE_ROW;
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: segments: %s", sqlite3_errmsg(cat->db));
    sqlite3_finalize(st);
    return rc;
}

static int check_canon(const char *path, const char *what, char **errmsg)
{
    char *canon = NULL;
    int rc = dfs_path_canon(path != NULL ? path : "", &canon, errmsg);
    if (rc == DFS_OK && strcmp(canon, path) != 0)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "%s '%s' is not canonical ('%s')", what, path, canon);
    free(canon);
    if (rc == DFS_OK &&
        strncmp(path, DFS_CATALOG_SEGMENT_DIR, strlen(DFS_CATALOG_SEGMENT_DIR)) == 0)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "%s '%s' is a segment of a stitched file", what, path);
    return rc;
}

static int validate(const struct dfs_stitch_req *req, char **errmsg)
{
    int rc = check_canon(req->path, "path", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_id(req->file_id, "file", errmsg);
    if (rc == DFS_OK && (req->nparts == 0 || req->nparts > DFS_CATALOG_STITCH_MAX))
        rc = dfs_seterr(errmsg, DFS_EINVAL, "a stitched file has 1 to %d parts, not %zu",
                        DFS_CATALOG_STITCH_MAX, req->nparts);
    if (rc == DFS_OK && req->meta != NULL && req->meta->meta_len > DFS_CATALOG_META_MAX)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "an object's stored headers are at most %d bytes",
                        DFS_CATALOG_META_MAX);
    for (size_t i = 0; rc == DFS_OK && i < req->nparts; i++) {
        rc = check_canon(req->parts[i], "part", errmsg);
        if (rc == DFS_OK && strcmp(req->parts[i], req->path) == 0)
            rc = dfs_seterr(errmsg, DFS_EINVAL, "part %s is the stitched file's own path",
                            req->parts[i]);
    }
    /* Repeats: parts are few (S3: at most 10000); sort copies rather than compare all pairs. */
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int no_repeats(const struct dfs_stitch_req *req, char **errmsg)
{
    const char **v = malloc(req->nparts * sizeof *v);
    if (v == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    memcpy(v, req->parts, req->nparts * sizeof *v);
    qsort(v, req->nparts, sizeof *v, cmp_str);
    int rc = DFS_OK;
    for (size_t i = 1; rc == DFS_OK && i < req->nparts; i++)
        if (strcmp(v[i - 1], v[i]) == 0)
            rc = dfs_seterr(errmsg, DFS_EINVAL, "part %s is listed twice", v[i]);
    free(v);
    return rc;
}

/* One segment of the new file: a plain committed file (a part, or a segment of a stitched part). */
struct leaf {
    char file_id[DFS_ID_HEX + 1];
    uint64_t size;
    uint8_t sha256[DFS_SHA256_LEN];
};

static int add_leaf(struct leaf **v, size_t *n, const struct dfs_file_rec *f, char **errmsg)
{
    struct leaf *l = catalog_grow(v, n, sizeof *l);
    if (l == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    memcpy(l->file_id, f->file_id, sizeof l->file_id);
    l->size = f->size;
    memcpy(l->sha256, f->sha256, DFS_SHA256_LEN);
    return DFS_OK;
}

static int exec_text2(dfs_catalog *cat, const char *sql, const char *a, const char *b,
                      char **errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(cat, sql, &st, errmsg);
    if (rc != DFS_OK)
        return rc;
    sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    if (b != NULL)
        sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    return step_done(cat, st, errmsg);
}

/* The write conditions against the file at the path now (old; NULL: none). */
static int conditions(const struct dfs_stitch_req *req, const struct dfs_file_rec *old,
                      char **errmsg)
{
    const struct dfs_file_meta *m = req->meta;
    if (m == NULL)
        return DFS_OK;
    if (m->if_absent && old != NULL)
        return dfs_seterr(errmsg, DFS_EPRECOND, "%s exists (the write asked for none)", req->path);
    if (m->if_file_id != NULL && m->if_file_id[0] != '\0' &&
        (old == NULL || strcmp(old->file_id, m->if_file_id) != 0))
        return dfs_seterr(errmsg, DFS_EPRECOND, "%s is no longer file %s", req->path,
                          m->if_file_id);
    return DFS_OK;
}

static int stitch_locked(dfs_catalog *cat, const struct dfs_stitch_req *req, int64_t now_ms,
                         struct dfs_file_rec **out, char **replaced, char **errmsg)
{
    struct dfs_file_rec *taken = NULL, *old = NULL, *first = NULL;
    int rc = catalog_find_file(cat, S_FILE_GET_ID, req->file_id, false, &taken, errmsg);
    if (rc == DFS_OK && taken != NULL)
        rc = dfs_seterr(errmsg, DFS_EEXIST, "file id %s is taken", req->file_id);
    dfs_catalog_file_rec_free(taken);
    if (rc == DFS_OK)
        rc = catalog_find_file(cat, S_FILE_GET_PATH, req->path, false, &old, errmsg);
    if (rc == DFS_OK)
        rc = conditions(req, old, errmsg);

    /* The leaves: each part, or each segment of a part that is stitched itself (flattened, so a
       stitched file's segments are always plain files). */
    struct leaf *leaves = NULL;
    size_t nleaves = 0;
    char(*gone)[DFS_ID_HEX + 1] = NULL; /* stitched parts, whose rows go */
    size_t ngone = 0;
    uint64_t size = 0;
    for (size_t i = 0; rc == DFS_OK && i < req->nparts; i++) {
        struct dfs_file_rec *p = NULL;
        rc = catalog_find_file(cat, S_FILE_GET_PATH, req->parts[i], true, &p, errmsg);
        if (rc == DFS_OK && p == NULL)
            rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "part %s: no such file", req->parts[i]);
        bool seg = false;
        if (rc == DFS_OK)
            rc = is_segment(cat, p->file_id, &seg, errmsg);
        if (rc == DFS_OK && seg)
            rc = dfs_seterr(errmsg, DFS_EINVAL, "part %s is a segment", req->parts[i]);
        if (rc == DFS_OK && p->size > (uint64_t)INT64_MAX - size)
            rc = dfs_seterr(errmsg, DFS_EINVAL, "the parts add up to more than %" PRId64 " bytes",
                            INT64_MAX);
        if (rc == DFS_OK)
            size += p->size;
        if (rc == DFS_OK && p->nsegments == 0) {
            rc = add_leaf(&leaves, &nleaves, p, errmsg);
        } else if (rc == DFS_OK) {
            for (size_t j = 0; rc == DFS_OK && j < p->nsegments; j++)
                rc = add_leaf(&leaves, &nleaves, p->segments[j].file, errmsg);
            char(*g)[DFS_ID_HEX + 1] =
                rc == DFS_OK ? catalog_grow(&gone, &ngone, sizeof *gone) : NULL;
            if (rc == DFS_OK && g == NULL)
                rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            if (rc == DFS_OK)
                memcpy(*g, p->file_id, sizeof *g);
        }
        if (rc == DFS_OK && first == NULL)
            first = p;
        else
            dfs_catalog_file_rec_free(p);
    }
    if (rc == DFS_OK && nleaves > DFS_CATALOG_STITCH_MAX)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "a stitched file has at most %d segments, not %zu",
                        DFS_CATALOG_STITCH_MAX, nleaves);

    /* The file's SHA-256: over its segments' SHA-256s, in order. */
    uint8_t digest[DFS_SHA256_LEN];
    EVP_MD_CTX *sha = rc == DFS_OK ? EVP_MD_CTX_new() : NULL;
    if (rc == DFS_OK && (sha == NULL || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1))
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    for (size_t i = 0; rc == DFS_OK && i < nleaves; i++)
        if (EVP_DigestUpdate(sha, leaves[i].sha256, DFS_SHA256_LEN) != 1)
            rc = dfs_seterr(errmsg, DFS_EINTERNAL, "SHA-256 failed");
    if (rc == DFS_OK && EVP_DigestFinal_ex(sha, digest, NULL) != 1)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "SHA-256 failed");
    EVP_MD_CTX_free(sha);

    /* A committed file at the path is replaced, as an overwriting put replaces it. */
    if (rc == DFS_OK && old != NULL) {
        rc = catalog_remove_file(cat, old->file_id, now_ms, errmsg);
        if (rc == DFS_OK && (*replaced = strdup(old->file_id)) == NULL)
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    /* Stitched parts go (their segments rows with them; their segment files become ours). */
    for (size_t i = 0; rc == DFS_OK && i < ngone; i++)
        rc = catalog_exec(cat, S_FILE_DELETE, NULL, errmsg, "t", gone[i]);
    if (rc == DFS_OK) {
        const struct dfs_redundancy *r = &first->redundancy;
        rc = catalog_exec(cat, S_FILE_INSERT, NULL, errmsg, "ttitiiiitiiiii", req->file_id,
                          req->path, (int64_t)size, catalog_scheme_names[r->scheme],
                          (int64_t)r->replicas, (int64_t)r->fragments, (int64_t)r->data,
                          (int64_t)r->parity, dfs_placement_policy_name(first->policy), (int64_t)1,
                          (int64_t)0, (int64_t)0, now_ms, now_ms);
    }
    int changes = 0;
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_FILE_COMMIT, &changes, errmsg, "tbi", req->file_id,
                          (const void *)digest, (size_t)DFS_SHA256_LEN, now_ms);
    if (rc == DFS_OK && changes != 1)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: file %s was not committed", req->file_id);
    uint64_t offset = 0;
    for (size_t i = 0; rc == DFS_OK && i < nleaves; i++) {
        char seg_path[sizeof DFS_CATALOG_SEGMENT_DIR + DFS_ID_HEX];
        snprintf(seg_path, sizeof seg_path, DFS_CATALOG_SEGMENT_DIR "%s", leaves[i].file_id);
        rc = exec_text2(cat, "UPDATE files SET path = ?2 WHERE file_id = ?1", leaves[i].file_id,
                        seg_path, errmsg);
        sqlite3_stmt *st = NULL;
        if (rc == DFS_OK)
            rc = prepare(cat,
                         "INSERT INTO segments (file_id, seq, offset, part_id) "
                         "VALUES (?1, ?2, ?3, ?4)",
                         &st, errmsg);
        if (rc == DFS_OK) {
            sqlite3_bind_text(st, 1, req->file_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, (int64_t)i);
            sqlite3_bind_int64(st, 3, (int64_t)offset);
            sqlite3_bind_text(st, 4, leaves[i].file_id, -1, SQLITE_STATIC);
            rc = step_done(cat, st, errmsg);
        }
        offset += leaves[i].size;
    }
    const struct dfs_file_meta *m = req->meta;
    if (rc == DFS_OK && m != NULL && m->md5 != NULL)
        rc = catalog_exec(cat, S_META_PUT, NULL, errmsg, "tbb", req->file_id, m->md5,
                          (size_t)DFS_CATALOG_MD5_LEN, m->meta != NULL ? m->meta : (const void *)"",
                          m->meta_len);
    else if (rc == DFS_OK && m != NULL)
        rc = catalog_exec(cat, S_META_PUT, NULL, errmsg, "tnb", req->file_id,
                          m->meta != NULL ? m->meta : (const void *)"", m->meta_len);
    free(leaves);
    free(gone);
    dfs_catalog_file_rec_free(first);
    dfs_catalog_file_rec_free(old);
    if (rc == DFS_OK)
        rc = catalog_find_file(cat, S_FILE_GET_ID, req->file_id, true, out, errmsg);
    if (rc == DFS_OK && *out == NULL)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: file %s vanished", req->file_id);
    return rc;
}

int dfs_catalog_file_stitch(dfs_catalog *cat, const struct dfs_stitch_req *req, int64_t now_ms,
                            struct dfs_file_rec **out, char **errmsg)
{
    *out = NULL;
    if (catalog_must_propose(cat) && req != NULL) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_file_stitch(req, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, out, NULL, NULL, errmsg);
    }
    int rc = validate(req, errmsg);
    if (rc == DFS_OK)
        rc = no_repeats(req, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_file_rec *f = NULL;
    char *replaced = NULL;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, stitch_locked(cat, req, now_ms, &f, &replaced, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_file_rec_free(f);
        free(replaced);
        return rc;
    }
    dfs_log(DFS_LOG_INFO, "file stitched id=%s path=%s size=%" PRIu64 " parts=%zu replaced=%s",
            f->file_id, f->path, f->size, f->nsegments, replaced == NULL ? "none" : replaced);
    free(replaced);
    *out = f;
    return DFS_OK;
}
