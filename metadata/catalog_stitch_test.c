/* Tests of StitchFile (catalog_stitch.c): a file made of committed files, no byte copied. */
#include "metadata/catalog.h"
#include "metadata/catalog_testing.h"

#include "common/err.h"

#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define T0  1700000000000LL
#define OID "0123456789abcdef0123456789abcdef"

static const struct dfs_redundancy K2 = {
    .scheme = DFS_SCHEME_REPLICATION, .replicas = 2, .fragments = 2};

struct fx {
    dfs_catalog *cat;
    struct dfs_file_rec *parts[3];
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    fx->cat = dfs_testing_catalog();
    dfs_testing_register(fx->cat, 4, 1 << 30, T0);
    static const uint64_t sizes[3] = {5 << 20, 5 << 20, 1234};
    for (int i = 0; i < 3; i++) {
        char path[64];
        snprintf(path, sizeof path, "/.dfs-s3/uploads/b/u/part.%05d", i + 1);
        fx->parts[i] = dfs_testing_put(fx->cat, path, sizes[i], &K2, DFS_POLICY_RANDOM,
                                       (int[]){0, 1, 2, 3}, T0);
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    for (int i = 0; i < 3; i++)
        dfs_catalog_file_rec_free(fx->parts[i]);
    dfs_catalog_close(fx->cat);
    free(fx);
    return 0;
}

static int stitch(struct fx *fx, const char *path, const char *id, const char *const *parts,
                  size_t n, struct dfs_file_rec **out, char **err)
{
    static const uint8_t md5[16] = {1, 2, 3};
    struct dfs_file_meta meta = {.md5 = md5,
                                 .meta = ":parts\0"
                                         "3",
                                 .meta_len = 9};
    struct dfs_stitch_req req = {
        .path = path, .file_id = id, .parts = parts, .nparts = n, .meta = &meta};
    return dfs_catalog_file_stitch(fx->cat, &req, T0 + 1000, out, err);
}

static const char *const PARTS[3] = {"/.dfs-s3/uploads/b/u/part.00001",
                                     "/.dfs-s3/uploads/b/u/part.00002",
                                     "/.dfs-s3/uploads/b/u/part.00003"};

static void test_stitch(void **state)
{
    struct fx *fx = *state;
    struct dfs_file_rec *f = NULL;
    char *err = NULL;
    struct dfs_catalog_stats before, after;
    assert_int_equal(dfs_catalog_stats(fx->cat, &before, &err), DFS_OK);
    assert_int_equal(stitch(fx, "/b/obj", OID, PARTS, 3, &f, &err), DFS_OK);
    assert_null(err);
    /* Each byte counted once: three files became one, the same bytes, the same copies. */
    assert_int_equal(dfs_catalog_stats(fx->cat, &after, &err), DFS_OK);
    assert_int_equal(after.files, before.files - 2);
    assert_int_equal(after.logical_bytes, before.logical_bytes);
    assert_int_equal(after.stored_bytes, before.stored_bytes);
    assert_string_equal(f->file_id, OID);
    assert_string_equal(f->path, "/b/obj");
    assert_int_equal(f->state, DFS_FILE_COMMITTED);
    assert_int_equal(f->size, (5 << 20) * 2 + 1234);
    assert_int_equal(f->nfragments, 0);
    assert_int_equal(f->nsegments, 3);
    uint64_t off = 0;
    uint8_t cat3[3 * DFS_SHA256_LEN];
    for (int i = 0; i < 3; i++) {
        const struct dfs_file_rec *s = f->segments[i].file;
        assert_int_equal(f->segments[i].offset, off);
        off += s->size;
        /* The part itself: same id, fragments and copies; only its path moved. */
        assert_string_equal(s->file_id, fx->parts[i]->file_id);
        assert_int_equal(s->nfragments, fx->parts[i]->nfragments);
        for (size_t j = 0; j < s->nfragments; j++) {
            assert_string_equal(s->fragments[j].fragment_id,
                                fx->parts[i]->fragments[j].fragment_id);
            assert_int_equal(s->fragments[j].nreplicas, fx->parts[i]->fragments[j].nreplicas);
        }
        char want[128];
        snprintf(want, sizeof want, DFS_CATALOG_SEGMENT_DIR "%s", s->file_id);
        assert_string_equal(s->path, want);
        memcpy(cat3 + i * DFS_SHA256_LEN, s->sha256, DFS_SHA256_LEN);
        /* The part's path is free. */
        struct dfs_file_rec *g = NULL;
        assert_int_equal(dfs_catalog_file_get(fx->cat, PARTS[i], &g, &err), DFS_ENOTFOUND);
        free(err);
        err = NULL;
    }
    uint8_t want[DFS_SHA256_LEN];
    unsigned int wl = 0;
    assert_int_equal(EVP_Digest(cat3, sizeof cat3, want, &wl, EVP_sha256(), NULL), 1);
    assert_memory_equal(f->sha256, want, DFS_SHA256_LEN);
    dfs_catalog_file_rec_free(f);

    /* GetFile gives the segments; the MD5 is kept. */
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/b/obj", &f, &err), DFS_OK);
    assert_int_equal(f->nsegments, 3);
    assert_int_equal(f->segments[2].offset, 10 << 20);
    uint8_t md5[16];
    bool has = false;
    uint8_t *meta = NULL;
    size_t ml = 0;
    assert_int_equal(dfs_catalog_file_meta_get(fx->cat, OID, md5, &has, &meta, &ml, &err), DFS_OK);
    assert_true(has);
    assert_int_equal(md5[1], 2);
    assert_int_equal(ml, 9);
    free(meta);
    dfs_catalog_file_rec_free(f);

    /* Listings show the object, not its parts under their old paths. */
    struct dfs_file_rec *v = NULL;
    size_t n = 0;
    bool more = false;
    assert_int_equal(
        dfs_catalog_files_list(fx->cat, "/.dfs-s3/uploads/", NULL, 100, &v, &n, &more, &err),
        DFS_OK);
    assert_int_equal(n, 0);
    dfs_catalog_file_recs_free(v, n);

    /* Deleting the object deletes its segments: every copy of every part is queued. */
    size_t copies = 0;
    for (int i = 0; i < 3; i++)
        for (size_t j = 0; j < fx->parts[i]->nfragments; j++)
            copies += fx->parts[i]->fragments[j].nreplicas;
    assert_int_equal(dfs_catalog_file_delete(fx->cat, "/b/obj", T0 + 2000, &f, &err), DFS_OK);
    dfs_catalog_file_rec_free(f);
    struct dfs_deletion_rec *d = NULL;
    assert_int_equal(dfs_catalog_deletions_fetch(fx->cat, T0 + 10000000, 0, 1000, &d, &n, &err),
                     DFS_OK);
    assert_int_equal(n, copies);
    free(d);
    for (int i = 0; i < 3; i++) {
        struct dfs_file_rec *g = NULL;
        assert_int_equal(dfs_catalog_file_get_id(fx->cat, fx->parts[i]->file_id, &g, &err),
                         DFS_ENOTFOUND);
        free(err);
        err = NULL;
    }
}

static void test_refusals(void **state)
{
    struct fx *fx = *state;
    struct dfs_file_rec *f = NULL;
    char *err = NULL;
    const char *missing[2] = {PARTS[0], "/.dfs-s3/uploads/b/u/part.00009"};
    assert_int_equal(stitch(fx, "/b/obj", OID, missing, 2, &f, &err), DFS_ENOTFOUND);
    assert_non_null(err);
    free(err);
    err = NULL;
    const char *twice[2] = {PARTS[0], PARTS[0]};
    assert_int_equal(stitch(fx, "/b/obj", OID, twice, 2, &f, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    assert_int_equal(stitch(fx, PARTS[1], OID, PARTS, 2, &f, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    assert_int_equal(stitch(fx, "/b/obj", OID, PARTS, 0, &f, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    assert_int_equal(stitch(fx, "/b/obj", "nothex", PARTS, 3, &f, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    assert_int_equal(stitch(fx, "/b//obj", OID, PARTS, 3, &f, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    /* A file id already taken. */
    assert_int_equal(stitch(fx, "/b/obj", fx->parts[0]->file_id, PARTS, 3, &f, &err), DFS_EEXIST);
    free(err);
    err = NULL;
    /* Nothing moved: every part is where it was. */
    for (int i = 0; i < 3; i++) {
        struct dfs_file_rec *g = NULL;
        assert_int_equal(dfs_catalog_file_get(fx->cat, PARTS[i], &g, &err), DFS_OK);
        assert_int_equal(g->nsegments, 0);
        dfs_catalog_file_rec_free(g);
    }
    /* A segment is not a part. */
    char segp[128];
    snprintf(segp, sizeof segp, DFS_CATALOG_SEGMENT_DIR "%s", fx->parts[0]->file_id);
    const char *seg[1] = {segp};
    assert_int_equal(stitch(fx, "/b/obj", OID, seg, 1, &f, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    /* Nor is it deleted alone. */
    assert_int_equal(stitch(fx, "/b/obj", OID, PARTS, 1, &f, &err), DFS_OK);
    dfs_catalog_file_rec_free(f);
    assert_int_equal(dfs_catalog_file_delete(fx->cat, segp, T0, &f, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    /* Nor renamed: not out of the segments' folder, not into it, not with a folder above it. */
    const char *const from[] = {segp, "/.dfs-s3/segments", "/.dfs-s3", "/b/obj", PARTS[1]};
    const char *const to[] = {"/b/loose", "/b/segs", "/b/s3", "/.dfs-s3/segments/x",
                              "/.dfs-s3/segments"};
    for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
        assert_int_equal(dfs_catalog_file_rename(fx->cat, from[i], to[i], true, T0, NULL, &err),
                         DFS_EINVAL);
        assert_non_null(strstr(err, "segments of stitched files"));
        free(err);
        err = NULL;
    }
    assert_int_equal(dfs_catalog_file_get(fx->cat, segp, &f, &err), DFS_OK);
    dfs_catalog_file_rec_free(f);
    /* A neighbour of the folder is an ordinary path. */
    assert_int_equal(
        dfs_catalog_file_rename(fx->cat, PARTS[1], "/.dfs-s3/segmentsx", false, T0, NULL, &err),
        DFS_OK);
}

/* A stitched part is flattened: its segments become the new file's, its row goes. */
static void test_flattens(void **state)
{
    struct fx *fx = *state;
    struct dfs_file_rec *f = NULL, *g = NULL;
    char *err = NULL;
    assert_int_equal(stitch(fx, "/b/first", OID, PARTS, 2, &f, &err), DFS_OK);
    dfs_catalog_file_rec_free(f);
    const char *nested[2] = {"/b/first", PARTS[2]};
    assert_int_equal(stitch(fx, "/b/obj", "1123456789abcdef0123456789abcdef", nested, 2, &f, &err),
                     DFS_OK);
    assert_int_equal(f->nsegments, 3);
    assert_int_equal(f->size, (5 << 20) * 2 + 1234);
    for (int i = 0; i < 3; i++)
        assert_string_equal(f->segments[i].file->file_id, fx->parts[i]->file_id);
    assert_int_equal(f->segments[2].offset, 10 << 20);
    dfs_catalog_file_rec_free(f);
    assert_int_equal(dfs_catalog_file_get(fx->cat, "/b/first", &g, &err), DFS_ENOTFOUND);
    free(err);
    err = NULL;
    assert_int_equal(dfs_catalog_file_get_id(fx->cat, OID, &g, &err), DFS_ENOTFOUND);
    free(err);
}

/* The write conditions of S3 (If-None-Match: *, If-Match), in the transaction. */
static void test_conditions(void **state)
{
    struct fx *fx = *state;
    struct dfs_file_rec *f = NULL;
    char *err = NULL;
    struct dfs_file_meta absent = {.if_absent = true};
    struct dfs_stitch_req req = {
        .path = "/b/obj", .file_id = OID, .parts = PARTS, .nparts = 1, .meta = &absent};
    assert_int_equal(dfs_catalog_file_stitch(fx->cat, &req, T0, &f, &err), DFS_OK);
    dfs_catalog_file_rec_free(f);
    req.file_id = "1123456789abcdef0123456789abcdef";
    req.parts = PARTS + 1;
    assert_int_equal(dfs_catalog_file_stitch(fx->cat, &req, T0, &f, &err), DFS_EPRECOND);
    free(err);
    err = NULL;
    struct dfs_file_meta match = {.if_file_id = "2123456789abcdef0123456789abcdef"};
    req.meta = &match;
    assert_int_equal(dfs_catalog_file_stitch(fx->cat, &req, T0, &f, &err), DFS_EPRECOND);
    free(err);
    err = NULL;
    match.if_file_id = OID;
    assert_int_equal(dfs_catalog_file_stitch(fx->cat, &req, T0, &f, &err), DFS_OK);
    dfs_catalog_file_rec_free(f);
}

static void test_replaces(void **state)
{
    struct fx *fx = *state;
    struct dfs_file_rec *f = NULL, *g = NULL;
    char *err = NULL;
    /* An object stitched over a plain file, then over a stitched one: each old one goes. */
    struct dfs_file_rec *plain =
        dfs_testing_put(fx->cat, "/b/obj", 10, &K2, DFS_POLICY_RANDOM, (int[]){0, 1, 2, 3}, T0);
    assert_int_equal(stitch(fx, "/b/obj", OID, PARTS, 1, &f, &err), DFS_OK);
    dfs_catalog_file_rec_free(f);
    assert_int_equal(dfs_catalog_file_get_id(fx->cat, plain->file_id, &g, &err), DFS_ENOTFOUND);
    free(err);
    err = NULL;
    dfs_catalog_file_rec_free(plain);
    assert_int_equal(
        stitch(fx, "/b/obj", "1123456789abcdef0123456789abcdef", PARTS + 1, 2, &f, &err), DFS_OK);
    assert_int_equal(f->nsegments, 2);
    assert_int_equal(f->size, (5 << 20) + 1234);
    dfs_catalog_file_rec_free(f);
    /* The first object's segment went with it. */
    assert_int_equal(dfs_catalog_file_get_id(fx->cat, fx->parts[0]->file_id, &g, &err),
                     DFS_ENOTFOUND);
    free(err);
}

/* The same inputs give the same file in two catalogs (a replicated command's promise). */
static void test_deterministic(void **state)
{
    (void)state;
    struct fx *a = NULL, *b = NULL;
    setup((void **)&a);
    setup((void **)&b);
    /* The parts differ in id (the fixture draws them); their sizes and hashes do not. */
    struct dfs_file_rec *fa = NULL, *fb = NULL;
    char *err = NULL;
    assert_int_equal(stitch(a, "/b/obj", OID, PARTS, 3, &fa, &err), DFS_OK);
    assert_int_equal(stitch(b, "/b/obj", OID, PARTS, 3, &fb, &err), DFS_OK);
    assert_memory_equal(fa->sha256, fb->sha256, DFS_SHA256_LEN);
    assert_int_equal(fa->size, fb->size);
    assert_int_equal(fa->committed_ms, fb->committed_ms);
    assert_int_equal(fa->committed_ms, T0 + 1000);
    dfs_catalog_file_rec_free(fa);
    dfs_catalog_file_rec_free(fb);
    teardown((void **)&a);
    teardown((void **)&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stitch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flattens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conditions, setup, teardown),
        cmocka_unit_test(test_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
