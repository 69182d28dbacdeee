/* Tests of the scrub pass: a fragment store in a temp dir, bytes flipped and reads failed. */
#include "storage/scrub.h"

#include "common/crc32c.h"
#include "common/err.h"
#include "storage/frag_header.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define MIB   ((size_t)1 << 20)
#define NFRAG 4

/* Reads fail with EIO while this is set (the store's io table). */
static bool fail_reads;

static ssize_t faulty_pread(int fd, void *buf, size_t len, off_t off)
{
    if (fail_reads) {
        errno = EIO;
        return -1;
    }
    return dfs_io_posix()->pread(fd, buf, len, off);
}

static ssize_t faulty_preadv(int fd, const struct iovec *iov, int n, off_t off)
{
    if (fail_reads) {
        errno = EIO;
        return -1;
    }
    return dfs_io_posix()->preadv(fd, iov, n, off);
}

static struct dfs_io_ops faulty;

struct fx {
    char root[PATH_MAX];
    char data[PATH_MAX + 16];
    dfs_frag_store *store;
    char id[NFRAG][DFS_FRAGMENT_ID_HEX + 1];
    size_t size[NFRAG];
    uint32_t checksum[NFRAG];
};

static void put(struct fx *f, int i)
{
    size_t n = f->size[i];
    unsigned char *data = malloc(n + 1);
    assert_non_null(data);
    for (size_t j = 0; j < n; j++)
        data[j] = (unsigned char)(j * 31 + (size_t)i);
    dfs_frag_writer *w = NULL;
    assert_int_equal(dfs_frag_writer_begin(f->store, f->id[i], n, &w, NULL), DFS_OK);
    uint32_t crcs[16];
    for (size_t off = 0; off < n; off += MIB) {
        size_t k = n - off < MIB ? n - off : MIB;
        dfs_crc32c_blocks(data + off, k, crcs);
        assert_int_equal(
            dfs_frag_writer_append(w, data + off, k, crcs, dfs_crc32c_nblocks(k), NULL), DFS_OK);
    }
    assert_int_equal(dfs_frag_writer_commit(w, &f->checksum[i], NULL), DFS_OK);
    free(data);
}

static int setup(void **state)
{
    faulty = *dfs_io_posix();
    faulty.pread = faulty_pread;
    faulty.preadv = faulty_preadv;
    fail_reads = false;
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    const char *base = getenv("TEST_TMPDIR");
    snprintf(f->root, sizeof f->root, "%s/scrub_test.XXXXXX",
             base != NULL && base[0] != '\0' ? base : "/tmp");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    assert_int_equal(dfs_frag_store_open(f->data, &faulty, &f->store, NULL), DFS_OK);
    size_t sizes[NFRAG] = {0, 1000, 3 * MIB + 5, 70000};
    for (int i = 0; i < NFRAG; i++) {
        snprintf(f->id[i], sizeof f->id[i], "%08x00000000000000000000000000000000", 0x5c00 + i);
        f->size[i] = sizes[i];
        put(f, i);
    }
    *state = f;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    dfs_frag_store_close(f->store);
    int rc = nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

/* Flip one bit of fragment i's data at offset at. */
static void flip(struct fx *f, int i, off_t at)
{
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/fragments/%.2s/%.2s/%s", f->data, f->id[i], f->id[i] + 2,
             f->id[i]);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, DFS_FRAG_HEADER_SIZE + at), 1);
    c ^= 0x01;
    assert_int_equal(pwrite(fd, &c, 1, DFS_FRAG_HEADER_SIZE + at), 1);
    close(fd);
}

/* What the hooks saw. */
struct seen {
    struct fx *f;
    int visits;
    struct dfs_scrub_result r[NFRAG];
    char err[NFRAG][256];
    int stops, paces;
    size_t progress, largest_read;
    int stop_after;  /* stop hook answers true once this many fragments were visited (-1: never) */
    int pace_after;  /* pace answers false after this many reads (-1: never) */
    int visit_rc_at; /* visit returns DFS_EABORTED at this visit (-1: never) */
    bool delete_rest;
};

static int index_of(struct fx *f, const char *id)
{
    for (int i = 0; i < NFRAG; i++)
        if (strcmp(f->id[i], id) == 0)
            return i;
    fail_msg("unknown fragment %s", id);
    return -1;
}

static bool h_stop(void *arg)
{
    struct seen *s = arg;
    s->stops++;
    if (s->delete_rest && s->stops == 2)
        for (int i = 0; i < NFRAG; i++)
            dfs_frag_store_delete(s->f->store, s->f->id[i], NULL, NULL);
    return s->stop_after >= 0 && s->visits >= s->stop_after;
}

static bool h_pace(void *arg, size_t n)
{
    struct seen *s = arg;
    if (n > s->largest_read)
        s->largest_read = n;
    return s->pace_after < 0 || s->paces++ < s->pace_after;
}

static void h_progress(void *arg, size_t n)
{
    struct seen *s = arg;
    s->progress += n;
}

static int h_visit(void *arg, const struct dfs_scrub_result *r)
{
    struct seen *s = arg;
    int i = index_of(s->f, r->id);
    s->r[i] = *r;
    snprintf(s->err[i], sizeof s->err[i], "%s", r->err != NULL ? r->err : "");
    s->r[i].err = s->err[i];
    s->r[i].id = s->f->id[i];
    return s->visits++ == s->visit_rc_at ? DFS_EABORTED : DFS_OK;
}

static void reset(struct fx *f, struct seen *s)
{
    memset(s, 0, sizeof *s);
    s->f = f;
    s->stop_after = s->pace_after = s->visit_rc_at = -1;
}

static int run(struct fx *f, struct seen *s, bool full_hooks)
{
    dfs_scrub *sc = NULL;
    assert_int_equal(dfs_scrub_create(f->store, &sc, NULL), DFS_OK);
    struct dfs_scrub_hooks h = {.visit = h_visit, .arg = s};
    if (full_hooks) {
        h.stop = h_stop;
        h.pace = h_pace;
        h.progress = h_progress;
    }
    char *msg = NULL;
    int rc = dfs_scrub_pass(sc, &h, &msg);
    free(msg);
    dfs_scrub_destroy(sc);
    return rc;
}

/* Every fragment good: its size, checksum and commit time; reads of at most 1 MiB, paced. */
static void test_clean(void **state)
{
    struct fx *f = *state;
    struct seen s;
    reset(f, &s);
    assert_int_equal(run(f, &s, true), DFS_OK);
    assert_int_equal(s.visits, NFRAG);
    size_t total = 0;
    for (int i = 0; i < NFRAG; i++) {
        assert_int_equal(s.r[i].verdict, DFS_SCRUB_GOOD);
        assert_int_equal(s.r[i].status, DFS_OK);
        assert_string_equal(s.r[i].err, "");
        assert_int_equal(s.r[i].size, f->size[i]);
        assert_int_equal(s.r[i].checksum, f->checksum[i]);
        assert_true(s.r[i].stored_ms > 0);
        total += f->size[i];
    }
    assert_int_equal(s.progress, total);
    assert_int_equal(s.largest_read, MIB);
    assert_int_equal(s.stops, NFRAG);
    /* Hooks but visit are optional. */
    reset(f, &s);
    assert_int_equal(run(f, &s, false), DFS_OK);
    assert_int_equal(s.visits, NFRAG);
}

/* A flipped bit: corrupt, the others good; the bytes before the bad block still count. */
static void test_corrupt(void **state)
{
    struct fx *f = *state;
    flip(f, 2, (off_t)(2 * MIB + 3));
    flip(f, 1, 10);
    struct seen s;
    reset(f, &s);
    assert_int_equal(run(f, &s, true), DFS_OK);
    assert_int_equal(s.visits, NFRAG);
    assert_int_equal(s.r[0].verdict, DFS_SCRUB_GOOD);
    assert_int_equal(s.r[3].verdict, DFS_SCRUB_GOOD);
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(s.r[i].verdict, DFS_SCRUB_CORRUPT);
        assert_int_equal(s.r[i].status, DFS_EDATALOSS);
        assert_non_null(strstr(s.r[i].err, "corrupt"));
        assert_int_equal(s.r[i].size, f->size[i]); /* from its header */
        assert_true(s.r[i].stored_ms > 0);
    }
    assert_int_equal(s.progress, f->size[0] + f->size[3] + 2 * MIB);
}

/* Reads failing: unreadable, with no figures (the header could not be read). */
static void test_unreadable(void **state)
{
    struct fx *f = *state;
    struct seen s;
    reset(f, &s);
    fail_reads = true;
    int rc = run(f, &s, true);
    fail_reads = false;
    assert_int_equal(rc, DFS_OK);
    assert_int_equal(s.visits, NFRAG);
    for (int i = 0; i < NFRAG; i++) {
        assert_int_equal(s.r[i].verdict, DFS_SCRUB_UNREADABLE);
        assert_int_equal(s.r[i].status, DFS_EIO);
        assert_int_equal(s.r[i].stored_ms, 0);
    }
    assert_int_equal(s.progress, 0);
}

/* The hooks end a pass: stop before a fragment, pace before a read, a visit's return. */
static void test_hooks_end_the_pass(void **state)
{
    struct fx *f = *state;
    struct seen s;
    reset(f, &s);
    s.stop_after = 2;
    assert_int_equal(run(f, &s, true), DFS_ECANCELED);
    assert_int_equal(s.visits, 2);
    assert_int_equal(s.stops, 3);

    reset(f, &s);
    s.pace_after = 0; /* the first read of a non-empty fragment */
    assert_int_equal(run(f, &s, true), DFS_ECANCELED);
    assert_true(s.visits <= 1); /* at most the empty fragment, which reads nothing */
    assert_int_equal(s.progress, 0);

    reset(f, &s);
    s.visit_rc_at = 1;
    assert_int_equal(run(f, &s, true), DFS_EABORTED);
    assert_int_equal(s.visits, 2);
}

/* Fragments deleted while the pass runs are skipped, not visited. */
static void test_deleted_meanwhile(void **state)
{
    struct fx *f = *state;
    struct seen s;
    reset(f, &s);
    s.delete_rest = true; /* the stop hook deletes everything before the second fragment */
    assert_int_equal(run(f, &s, true), DFS_OK);
    assert_int_equal(s.visits, 1);
}

static void test_create(void **state)
{
    (void)state;
    dfs_scrub *s = NULL;
    char *msg = NULL;
    assert_int_equal(dfs_scrub_create(NULL, &s, &msg), DFS_EINVAL);
    assert_null(s);
    free(msg);
    dfs_scrub_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hooks_end_the_pass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_meanwhile, setup, teardown),
        cmocka_unit_test(test_create),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
