/* Tests of the fragment store: format, round trips, corruption, faults, concurrency. */
#include "storage/frag_store.h"

#include "common/crc32c.h"
#include "common/err.h"
#include "common/id.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define B   ((size_t)DFS_BLOCK_SIZE)
#define MIB ((size_t)1 << 20)

/* ---- fixture: a fresh directory per test ---- */

struct fx {
    char root[PATH_MAX];     /* the temp dir, removed afterwards */
    char data[PATH_MAX + 8]; /* root/data: the store's data dir (created by open) */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    const char *base = getenv("TEST_TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(f->root, sizeof f->root, "%s/frag_store_test.XXXXXX", base);
    if (mkdtemp(f->root) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
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
    int rc = nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

/* ---- fault injection through dfs_io_ops ---- */

/*
 * Counters and knobs read by the faulty calls. A countdown n >= 0 lets n calls through and fails
 * the next one (then disarms); -1 is off. Tests that use them run one at a time (cmocka is serial).
 */
static _Atomic int pwrite_calls, pread_calls, preadv_calls, fsync_calls;
static _Atomic int pwrite_fail_after = -1, fsync_fail_after = -1;
static _Atomic int pwrite_fail_errno = ENOSPC;
static _Atomic size_t short_read_max; /* 0: whole reads */

static bool countdown(_Atomic int *c)
{
    int v = atomic_load(c);
    if (v < 0)
        return false;
    atomic_store(c, v - 1);
    return v == 0;
}

static ssize_t f_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    atomic_fetch_add(&pwrite_calls, 1);
    if (countdown(&pwrite_fail_after)) {
        errno = atomic_load(&pwrite_fail_errno);
        return -1;
    }
    return pwrite(fd, buf, len, off);
}

/* pwritev counts as a pwrite, with the same faults, and writes at most `short_write_max` bytes
   per call when that is set (the kernel may split a vectored write anywhere). */
static _Atomic size_t short_write_max;

static ssize_t f_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    atomic_fetch_add(&pwrite_calls, 1);
    if (countdown(&pwrite_fail_after)) {
        errno = atomic_load(&pwrite_fail_errno);
        return -1;
    }
    size_t max = atomic_load(&short_write_max);
    if (max > 0) /* first buffer only, and at most max of it */
        return pwrite(fd, iov[0].iov_base, iov[0].iov_len < max ? iov[0].iov_len : max, off);
    return pwritev(fd, iov, cnt, off);
}

static ssize_t f_pread(int fd, void *buf, size_t len, off_t off)
{
    atomic_fetch_add(&pread_calls, 1);
    size_t max = atomic_load(&short_read_max);
    if (max > 0 && len > max)
        len = max;
    return pread(fd, buf, len, off);
}

static ssize_t f_preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
    atomic_fetch_add(&preadv_calls, 1);
    size_t max = atomic_load(&short_read_max);
    if (max > 0) /* first buffer only, and at most max of it */
        return pread(fd, iov[0].iov_base, iov[0].iov_len < max ? iov[0].iov_len : max, off);
    return preadv(fd, iov, cnt, off);
}

static int f_fsync(int fd)
{
    atomic_fetch_add(&fsync_calls, 1);
    if (countdown(&fsync_fail_after)) {
        errno = EIO;
        return -1;
    }
    return fsync(fd);
}

static struct dfs_io_ops fault_ops;

/* The real calls, counted, with every fault off. */
static const struct dfs_io_ops *fault_io(void)
{
    fault_ops = *dfs_io_posix();
    fault_ops.pwrite = f_pwrite;
    fault_ops.pwritev = f_pwritev;
    short_write_max = 0;
    fault_ops.pread = f_pread;
    fault_ops.preadv = f_preadv;
    fault_ops.fsync = f_fsync;
    pwrite_calls = pread_calls = preadv_calls = fsync_calls = 0;
    pwrite_fail_after = fsync_fail_after = -1;
    pwrite_fail_errno = ENOSPC;
    short_read_max = 0;
    return &fault_ops;
}

/* ---- helpers ---- */

static dfs_frag_store *open_store(const struct fx *f, const struct dfs_io_ops *io)
{
    dfs_frag_store *s = NULL;
    char *err = NULL;
    int rc = dfs_frag_store_open(f->data, io, &s, &err);
    if (rc != DFS_OK)
        fail_msg("open %s: %d %s", f->data, rc, err ? err : "");
    return s;
}

/* A valid fragment id that differs in its first digits for different n (spreads over ab/cd). */
static void make_id(unsigned n, char out[DFS_FRAGMENT_ID_HEX + 1])
{
    uint32_t h = n * 2654435761u + 12345;
    snprintf(out, DFS_FRAGMENT_ID_HEX + 1, "%08x%08x%08x%08x%08x", h, h ^ 0x5a5a5a5au, ~h, n,
             n + 1);
}

static unsigned char *pattern(size_t len, unsigned seed)
{
    unsigned char *p = malloc(len > 0 ? len : 1);
    uint32_t x = seed * 2246822519u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (unsigned char)(x >> 24);
    }
    return p;
}

static uint32_t *crcs_of(const unsigned char *data, size_t len)
{
    size_t n = dfs_crc32c_nblocks(len);
    uint32_t *c = malloc((n > 0 ? n : 1) * sizeof *c);
    dfs_crc32c_blocks(data, len, c);
    return c;
}

/* Store data[0..size) as id in appends of `chunk` bytes. Returns the commit's status. */
static int put(dfs_frag_store *s, const char *id, const unsigned char *data, size_t size,
               size_t chunk, uint32_t *checksum, char **err)
{
    dfs_frag_writer *w = NULL;
    int rc = dfs_frag_writer_begin(s, id, size, &w, err);
    if (rc != DFS_OK)
        return rc;
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        uint32_t *c = crcs_of(data + off, n);
        rc = dfs_frag_writer_append(w, data + off, n, c, dfs_crc32c_nblocks(n), err);
        free(c);
        if (rc != DFS_OK) {
            dfs_frag_writer_abort(w);
            return rc;
        }
    }
    return dfs_frag_writer_commit(w, checksum, err);
}

/* put() through dfs_frag_writer_commit_new (the put path: write-once). */
static int put_new(dfs_frag_store *s, const char *id, const unsigned char *data, size_t size,
                   bool *already, char **err)
{
    dfs_frag_writer *w = NULL;
    int rc = dfs_frag_writer_begin(s, id, size, &w, err);
    uint32_t *c = crcs_of(data, size);
    if (rc == DFS_OK && size > 0)
        rc = dfs_frag_writer_append(w, data, size, c, dfs_crc32c_nblocks(size), err);
    free(c);
    if (rc != DFS_OK) {
        dfs_frag_writer_abort(w);
        return rc;
    }
    return dfs_frag_writer_commit_new(w, NULL, already, err);
}

static void put_ok(dfs_frag_store *s, const char *id, const unsigned char *data, size_t size)
{
    char *err = NULL;
    int rc = put(s, id, data, size, MIB, NULL, &err);
    if (rc != DFS_OK)
        fail_msg("put %s: %d %s", id, rc, err ? err : "");
}

/* Read [off, off+len) and compare data and piece CRCs with the expectation. */
static void check_range(dfs_frag_reader *r, const unsigned char *data, uint64_t off, size_t len)
{
    unsigned char *buf = malloc(len > 0 ? len : 1);
    size_t n = dfs_crc32c_nblocks(len);
    uint32_t *got = calloc(n > 0 ? n : 1, sizeof *got);
    uint32_t *want = crcs_of(data + off, len);
    char *err = NULL;
    int rc = dfs_frag_reader_read(r, off, buf, len, got, &err);
    if (rc != DFS_OK)
        fail_msg("read %zu at %llu: %d %s", len, (unsigned long long)off, rc, err ? err : "");
    assert_memory_equal(buf, data + off, len);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
    free(buf);
    free(got);
    free(want);
}

static void check_stored(dfs_frag_store *s, const char *id, const unsigned char *data, size_t size)
{
    dfs_frag_reader *r = NULL;
    char *err = NULL;
    int rc = dfs_frag_reader_open(s, id, &r, &err);
    if (rc != DFS_OK)
        fail_msg("reader_open %s: %d %s", id, rc, err ? err : "");
    assert_int_equal(dfs_frag_reader_size(r), size);
    uint32_t *c = crcs_of(data, size);
    assert_int_equal(dfs_frag_reader_checksum(r), dfs_crc32c_of_table(c, dfs_crc32c_nblocks(size)));
    free(c);
    for (size_t off = 0; off < size; off += MIB)
        check_range(r, data, off, size - off < MIB ? size - off : MIB);
    dfs_frag_reader_close(r);
}

/* Regular files under dir (recursively); 0 when dir does not exist. */
static int nfiles;
static int count_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)st;
    (void)ftw;
    if (flag == FTW_F)
        nfiles++;
    return 0;
}

static int count_files(const struct fx *f, const char *sub)
{
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", f->data, sub);
    nfiles = 0;
    nftw(path, count_one, 16, FTW_PHYS);
    return nfiles;
}

static void frag_file(const struct fx *f, const char *id, char *out, size_t cap)
{
    snprintf(out, cap, "%s/fragments/%.2s/%.2s/%s", f->data, id, id + 2, id);
}

/* XOR one byte of a file. */
static void flip(const char *path, off_t off, unsigned char mask)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= mask;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(in >= 0 && out >= 0);
    char buf[8192];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    close(out);
}

static uint64_t file_len(uint64_t size)
{
    return DFS_FRAG_HEADER_SIZE + size + 4 * dfs_crc32c_nblocks(size);
}

static void expect_stats(dfs_frag_store *s, uint64_t fragments, uint64_t bytes)
{
    struct dfs_frag_store_stats st;
    assert_int_equal(dfs_frag_store_stats(s, &st), DFS_OK);
    assert_int_equal(st.fragments, fragments);
    assert_int_equal(st.used_bytes, bytes);
    assert_true(st.capacity_bytes > 0);
    assert_true(st.free_bytes <= st.capacity_bytes);
}

/* ---- tests ---- */

static void test_node_id_created_once_and_stable(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    char id[DFS_ID_HEX + 1];
    snprintf(id, sizeof id, "%s", dfs_frag_store_node_id(s));
    assert_true(dfs_id_valid(id));

    /* On disk: the id and a newline. */
    char path[2 * PATH_MAX], buf[64] = "";
    snprintf(path, sizeof path, "%s/node.id", f->data);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, sizeof buf), DFS_ID_HEX + 1);
    close(fd);
    assert_int_equal(buf[DFS_ID_HEX], '\n');
    assert_memory_equal(buf, id, DFS_ID_HEX);

    /* A second store on the same dir is refused while the first is open. */
    dfs_frag_store *s2 = NULL;
    char *err = NULL;
    assert_int_equal(dfs_frag_store_open(f->data, NULL, &s2, &err), DFS_EPRECOND);
    assert_null(s2);
    assert_non_null(strstr(err, "in use"));
    free(err);
    dfs_frag_store_close(s);

    s = open_store(f, NULL);
    assert_string_equal(dfs_frag_store_node_id(s), id);
    dfs_frag_store_close(s);

    /* A damaged node.id is an error, never silently replaced. */
    write_file(path, "not-an-id\n");
    err = NULL;
    assert_int_equal(dfs_frag_store_open(f->data, NULL, &s2, &err), DFS_EDATALOSS);
    assert_non_null(strstr(err, "node.id"));
    free(err);
    dfs_frag_store_close(NULL);
}

static void test_round_trip_sizes(void **state)
{
    struct fx *f = *state;
    const struct dfs_io_ops *io = fault_io();
    dfs_frag_store *s = open_store(f, io);
    const size_t sizes[] = {0, 1, 65535, 65536, 65537, 3 * B + 5, 5 * MIB + 12345};
    uint64_t bytes = 0;
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char id[DFS_FRAGMENT_ID_HEX + 1];
        make_id(i, id);
        unsigned char *data = pattern(sizes[i], i);
        uint32_t checksum = 0;
        char *err = NULL;
        int before = pwrite_calls;
        assert_int_equal(put(s, id, data, sizes[i], MIB, &checksum, &err), DFS_OK);
        /* One pwrite per append, then the table and the header. */
        size_t appends = (sizes[i] + MIB - 1) / MIB;
        assert_int_equal(pwrite_calls - before, (int)appends + (sizes[i] > 0 ? 2 : 1));
        uint32_t *c = crcs_of(data, sizes[i]);
        assert_int_equal(checksum, dfs_crc32c_of_table(c, dfs_crc32c_nblocks(sizes[i])));
        free(c);

        struct dfs_frag_info info;
        int64_t now = (int64_t)time(NULL) * 1000;
        assert_int_equal(dfs_frag_store_stat(s, id, &info, &err), DFS_OK);
        assert_int_equal(info.size, sizes[i]);
        assert_int_equal(info.checksum, checksum);
        assert_true(info.stored_ms > now - 60000 && info.stored_ms < now + 60000);

        check_stored(s, id, data, sizes[i]);
        bytes += file_len(sizes[i]);
        free(data);
    }
    expect_stats(s, sizeof sizes / sizeof sizes[0], bytes);

    /* An aligned 1 MiB read is one pread and nothing else. */
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(6, id);
    dfs_frag_reader *r = NULL;
    assert_int_equal(dfs_frag_reader_open(s, id, &r, NULL), DFS_OK);
    unsigned char *buf = malloc(MIB);
    uint32_t crcs[16];
    int pr = pread_calls, pv = preadv_calls;
    assert_int_equal(dfs_frag_reader_read(r, 2 * MIB, buf, MIB, crcs, NULL), DFS_OK);
    assert_int_equal(pread_calls - pr, 1);
    assert_int_equal(preadv_calls - pv, 0);
    free(buf);
    dfs_frag_reader_close(r);
    assert_int_equal(count_files(f, "tmp"), 0);
    dfs_frag_store_close(s);
}

static void test_file_format(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(7, id);
    size_t size = 2 * B + 10;
    unsigned char *data = pattern(size, 7);
    put_ok(s, id, data, size);
    dfs_frag_store_close(s);

    char path[2 * PATH_MAX];
    frag_file(f, id, path, sizeof path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, file_len(size));
    unsigned char *raw = malloc((size_t)st.st_size);
    int fd = open(path, O_RDONLY);
    assert_int_equal(read(fd, raw, (size_t)st.st_size), st.st_size);
    close(fd);

    uint32_t c[3];
    dfs_crc32c_blocks(data, size, c);
    unsigned char want[128] = "DFSFRAG1";
    want[8] = 1;                    /* version */
    want[12 + 2] = 1;               /* block size 0x00010000 */
    want[16] = (unsigned char)size; /* 131082 = 0x0002000a */
    want[18] = 2;
    want[24] = 3; /* blocks */
    uint32_t sum = dfs_crc32c_of_table(c, 3);
    for (int i = 0; i < 4; i++)
        want[28 + i] = (unsigned char)(sum >> (8 * i));
    memcpy(want + 32, raw + 32, 8); /* stored time: checked below */
    memcpy(want + 40, id, 40);
    uint32_t hcrc = dfs_crc32c(0, want, 124);
    for (int i = 0; i < 4; i++)
        want[124 + i] = (unsigned char)(hcrc >> (8 * i));
    assert_memory_equal(raw, want, 128);
    int64_t ms = 0;
    for (int i = 7; i >= 0; i--)
        ms = ms << 8 | raw[32 + i];
    assert_true(ms > (int64_t)time(NULL) * 1000 - 60000);
    assert_memory_equal(raw + 128, data, size);
    for (int b = 0; b < 3; b++)
        for (int i = 0; i < 4; i++)
            assert_int_equal(raw[128 + size + 4 * b + i], (unsigned char)(c[b] >> (8 * i)));
    free(raw);
    free(data);
}

static void test_ranged_reads(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(1, id);
    size_t size = 5 * B + 777;
    unsigned char *data = pattern(size, 3);
    put_ok(s, id, data, size);
    dfs_frag_reader *r = NULL;
    assert_int_equal(dfs_frag_reader_open(s, id, &r, NULL), DFS_OK);

    check_range(r, data, 0, B);       /* one aligned block */
    check_range(r, data, B, 2 * B);   /* aligned, several blocks */
    check_range(r, data, 0, 100);     /* aligned start, partial block */
    check_range(r, data, B, B + 1);   /* aligned start, ends 1 byte into a block */
    check_range(r, data, 100, 1000);  /* inside one block */
    check_range(r, data, B - 10, 20); /* across a boundary */
    check_range(r, data, 7, 3 * B);   /* unaligned, spanning blocks */
    check_range(r, data, 3 * B + 5, size - (3 * B + 5)); /* unaligned to the end */
    check_range(r, data, 5 * B, size - 5 * B);           /* aligned, the short last block */
    check_range(r, data, size - 1, 1);                   /* the last byte */
    check_range(r, data, 0, size);                       /* everything */

    srand(42);
    for (int i = 0; i < 200; i++) {
        uint64_t off = (uint64_t)rand() % size;
        size_t len = (size_t)rand() % (size - off + 1);
        check_range(r, data, off, len);
    }

    unsigned char buf[16];
    uint32_t crcs[1];
    char *err = NULL;
    assert_int_equal(dfs_frag_reader_read(r, size, buf, 0, crcs, &err), DFS_OK);
    assert_int_equal(dfs_frag_reader_read(r, size, buf, 1, crcs, &err), DFS_ERANGE);
    assert_non_null(strstr(err, "beyond"));
    assert_int_equal(dfs_frag_reader_read(r, size - 1, buf, 2, crcs, &err), DFS_ERANGE);
    assert_int_equal(dfs_frag_reader_read(r, size + 1, buf, 0, crcs, &err), DFS_ERANGE);
    assert_int_equal(dfs_frag_reader_read(r, UINT64_MAX, buf, 16, crcs, &err), DFS_ERANGE);
    free(err);
    dfs_frag_reader_close(r);
    free(data);
    dfs_frag_store_close(s);
}

static void test_bad_crc_on_append(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(2, id);
    size_t size = 2 * MIB;
    unsigned char *data = pattern(size, 9);
    uint32_t *c = crcs_of(data, size);
    char *err = NULL;

    /* Block 2 of the second chunk is block 18 of the fragment. */
    dfs_frag_writer *w = NULL;
    assert_int_equal(dfs_frag_writer_begin(s, id, size, &w, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, data, MIB, c, 16, &err), DFS_OK);
    c[18] ^= 1;
    assert_int_equal(dfs_frag_writer_append(w, data + MIB, MIB, c + 16, 16, &err), DFS_EDATALOSS);
    assert_non_null(strstr(err, "crc mismatch in block 18"));
    /* The writer is finished: commit fails and cleans up. */
    assert_int_equal(dfs_frag_writer_commit(w, NULL, &err), DFS_EPRECOND);
    assert_int_equal(count_files(f, "fragments"), 0);
    assert_int_equal(count_files(f, "tmp"), 0);

    /* Corrupt data instead of a corrupt CRC, then abort. */
    c[18] ^= 1;
    data[5] ^= 0x80;
    assert_int_equal(dfs_frag_writer_begin(s, id, size, &w, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, data, MIB, c, 16, &err), DFS_EDATALOSS);
    assert_non_null(strstr(err, "crc mismatch in block 0"));
    dfs_frag_writer_abort(w);
    assert_int_equal(count_files(f, "fragments"), 0);
    assert_int_equal(count_files(f, "tmp"), 0);
    assert_int_equal(dfs_frag_reader_open(s, id, &(dfs_frag_reader *){NULL}, &err), DFS_ENOTFOUND);
    expect_stats(s, 0, 0);
    free(err);
    free(c);
    free(data);
    dfs_frag_store_close(s);
}

static void test_chunking_rules(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(3, id);
    size_t size = 3 * B;
    unsigned char *data = pattern(size, 1);
    uint32_t *c = crcs_of(data, size);
    char *err = NULL;
    dfs_frag_writer *w = NULL;

    /* A middle chunk that is not a multiple of 64 KiB. */
    assert_int_equal(dfs_frag_writer_begin(s, id, size, &w, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, data, 1000, c, 1, &err), DFS_EINVAL);
    assert_non_null(strstr(err, "not a multiple"));
    dfs_frag_writer_abort(w);

    /* B + 1 bytes (2 crcs) when the rest would follow: same. */
    uint32_t c2[2] = {c[0], dfs_crc32c(0, data + B, 1)};
    assert_int_equal(dfs_frag_writer_begin(s, id, size, &w, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, data, B + 1, c2, 2, &err), DFS_EINVAL);
    dfs_frag_writer_abort(w);

    /* Wrong number of CRCs. */
    assert_int_equal(dfs_frag_writer_begin(s, id, size, &w, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, data, 2 * B, c, 1, &err), DFS_EINVAL);
    assert_non_null(strstr(err, "crcs"));
    dfs_frag_writer_abort(w);

    /* Bytes beyond the declared size. */
    assert_int_equal(dfs_frag_writer_begin(s, id, 2 * B, &w, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, data, B, c, 1, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, data + B, 2 * B, c + 1, 2, &err), DFS_EINVAL);
    assert_non_null(strstr(err, "beyond"));
    dfs_frag_writer_abort(w);

    /* Empty appends are fine anywhere; a short last chunk is fine. */
    uint32_t last = dfs_crc32c(0, data + 2 * B, 5);
    assert_int_equal(dfs_frag_writer_begin(s, id, 2 * B + 5, &w, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, NULL, 0, NULL, 0, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, data, 2 * B, c, 2, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, data + 2 * B, 5, &last, 1, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, NULL, 0, NULL, 0, &err), DFS_OK);
    /* ...and nothing after it. */
    assert_int_equal(dfs_frag_writer_append(w, data, 1, c, 1, &err), DFS_EINVAL);
    dfs_frag_writer_abort(w);

    /* A size above the maximum. */
    assert_int_equal(dfs_frag_writer_begin(s, id, DFS_FRAG_MAX_SIZE + 1, &w, &err), DFS_EINVAL);

    assert_int_equal(count_files(f, "fragments"), 0);
    assert_int_equal(count_files(f, "tmp"), 0);
    free(err);
    free(c);
    free(data);
    dfs_frag_store_close(s);
}

static void test_size_mismatch_at_commit(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(4, id);
    unsigned char *data = pattern(2 * B, 4);
    uint32_t *c = crcs_of(data, 2 * B);
    char *err = NULL;
    dfs_frag_writer *w = NULL;
    assert_int_equal(dfs_frag_writer_begin(s, id, 3 * B, &w, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, data, 2 * B, c, 2, &err), DFS_OK);
    uint32_t sum = 0xdeadbeef;
    assert_int_equal(dfs_frag_writer_commit(w, &sum, &err), DFS_EINVAL);
    assert_non_null(strstr(err, "received 131072 of 196608 bytes"));
    assert_int_equal(sum, 0xdeadbeef);
    /* Nothing at all for a declared size of 1. */
    assert_int_equal(dfs_frag_writer_begin(s, id, 1, &w, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_commit(w, NULL, &err), DFS_EINVAL);
    assert_int_equal(count_files(f, "fragments"), 0);
    assert_int_equal(count_files(f, "tmp"), 0);
    expect_stats(s, 0, 0);
    free(err);
    free(c);
    free(data);
    dfs_frag_store_close(s);
}

static void test_bad_ids(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    const char *bad[] = {
        "../x",
        "",
        "0123456789abcdef0123456789abcdef0000000",   /* 39 */
        "0123456789abcdef0123456789abcdef000000000", /* 41 */
        "0123456789ABCDEF0123456789abcdef00000000",  /* upper case */
        "../../../../etc/passwd000000000000000000",  /* 40 characters */
        "01/3456789abcdef0123456789abcdef00000000",
        "0123456789abcdef0123456789abcdef0000000 ",
        NULL,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *err = NULL;
        dfs_frag_writer *w = NULL;
        dfs_frag_reader *r = NULL;
        struct dfs_frag_info info;
        bool existed = true;
        assert_int_equal(dfs_frag_writer_begin(s, bad[i], 10, &w, &err), DFS_EINVAL);
        assert_null(w);
        assert_non_null(strstr(err, "fragment id"));
        assert_int_equal(dfs_frag_reader_open(s, bad[i], &r, &err), DFS_EINVAL);
        assert_null(r);
        assert_int_equal(dfs_frag_store_stat(s, bad[i], &info, &err), DFS_EINVAL);
        assert_int_equal(dfs_frag_store_delete(s, bad[i], &existed, &err), DFS_EINVAL);
        free(err);
    }
    assert_int_equal(count_files(f, "fragments"), 0);
    assert_int_equal(count_files(f, "tmp"), 0);
    assert_int_equal(count_files(f, ""), 1); /* node.id */
    assert_int_equal(count_files(f, "../x"), 0);
    dfs_frag_store_close(s);
}

static void test_bit_flip_in_data(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    char id[DFS_FRAGMENT_ID_HEX + 1], path[2 * PATH_MAX];
    make_id(5, id);
    size_t size = 4 * B;
    unsigned char *data = pattern(size, 5);
    put_ok(s, id, data, size);
    frag_file(f, id, path, sizeof path);
    flip(path, DFS_FRAG_HEADER_SIZE + 2 * B + 100, 0x10);

    /* The header and table are intact: stat and open work, block 2 does not. */
    struct dfs_frag_info info;
    assert_int_equal(dfs_frag_store_stat(s, id, &info, NULL), DFS_OK);
    dfs_frag_reader *r = NULL;
    char *err = NULL;
    assert_int_equal(dfs_frag_reader_open(s, id, &r, &err), DFS_OK);
    unsigned char *buf = malloc(size);
    uint32_t crcs[4];
    assert_int_equal(dfs_frag_reader_read(r, 2 * B, buf, B, crcs, &err), DFS_EDATALOSS);
    assert_non_null(strstr(err, "block 2 is corrupt"));
    assert_non_null(strstr(err, id));
    assert_int_equal(dfs_frag_reader_read(r, 0, buf, size, crcs, &err), DFS_EDATALOSS);
    assert_int_equal(dfs_frag_reader_read(r, 2 * B - 10, buf, 20, crcs, &err), DFS_EDATALOSS);
    assert_int_equal(dfs_frag_reader_read(r, 3 * B - 10, buf, 5, crcs, &err), DFS_EDATALOSS);
    check_range(r, data, 0, 2 * B);
    check_range(r, data, 3 * B, B);
    check_range(r, data, 2 * B - 10, 10);
    check_range(r, data, 3 * B, 10);
    dfs_frag_reader_close(r);
    free(err);
    free(buf);
    free(data);
    dfs_frag_store_close(s);
}

/* Mapped reads give what reads give, check blocks in place, and step aside when they cannot. */
static void test_mapped_reads(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    char id[DFS_FRAGMENT_ID_HEX + 1], path[2 * PATH_MAX];
    make_id(41, id);
    size_t size = 5 * B + 1000; /* a short last block */
    unsigned char *data = pattern(size, 41);
    put_ok(s, id, data, size);
    uint32_t *want = crcs_of(data, size);
    dfs_frag_reader *r = NULL;
    char *err = NULL;
    assert_int_equal(dfs_frag_reader_open(s, id, &r, &err), DFS_OK);
    dfs_frag_map *m = NULL;
    assert_int_equal(dfs_frag_reader_map(r, B, size - B, &m, &err), DFS_OK);
    assert_non_null(m); /* real I/O: mapping is used */
    const unsigned char *p = NULL;
    uint32_t crcs[8];
    /* The page cache holds what was just written: whole blocks, and the short tail. */
    assert_int_equal(dfs_frag_reader_peek(r, m, B, 2 * B, &p, crcs, &err), DFS_OK);
    assert_non_null(p);
    assert_memory_equal(p, data + B, 2 * B);
    assert_int_equal(crcs[0], want[1]);
    assert_int_equal(crcs[1], want[2]);
    assert_int_equal(dfs_frag_reader_peek(r, m, 4 * B, size - 4 * B, &p, crcs, &err), DFS_OK);
    assert_non_null(p);
    assert_memory_equal(p, data + 4 * B, size - 4 * B);
    assert_int_equal(crcs[1], want[5]);
    /* Not whole blocks, or outside the mapping: the caller reads instead. */
    assert_int_equal(dfs_frag_reader_peek(r, m, B + 10, B, &p, crcs, &err), DFS_OK);
    assert_null(p);
    assert_int_equal(dfs_frag_reader_peek(r, m, B, B / 2, &p, crcs, &err), DFS_OK);
    assert_null(p);
    assert_int_equal(dfs_frag_reader_peek(r, m, 0, B, &p, crcs, &err), DFS_OK);
    assert_null(p);
    /* A block changed on disk is corrupt here too (the mapping shares the page cache). */
    frag_file(f, id, path, sizeof path);
    flip(path, DFS_FRAG_HEADER_SIZE + 3 * B + 7, 0x04);
    assert_int_equal(dfs_frag_reader_peek(r, m, 2 * B, 2 * B, &p, crcs, &err), DFS_EDATALOSS);
    assert_null(p);
    assert_non_null(strstr(err, "block 3 is corrupt"));
    /* The mapping outlives the reader, and a range past the end is refused. */
    dfs_frag_map_ref(m);
    dfs_frag_map_unref(m);
    dfs_frag_reader_close(r);
    dfs_frag_map_unref(m);
    dfs_frag_map_unref(NULL);
    assert_int_equal(dfs_frag_reader_open(s, id, &r, &err), DFS_OK);
    assert_int_equal(dfs_frag_reader_map(r, B, size, &m, &err), DFS_ERANGE);
    dfs_frag_reader_close(r);
    dfs_frag_store_close(s);

    /* An injected io table must see every read: no mapping. */
    s = open_store(f, fault_io());
    assert_int_equal(dfs_frag_reader_open(s, id, &r, &err), DFS_OK);
    m = (dfs_frag_map *)1;
    assert_int_equal(dfs_frag_reader_map(r, 0, B, &m, &err), DFS_OK);
    assert_null(m);
    dfs_frag_reader_close(r);
    dfs_frag_store_close(s);
    free(err);
    free(want);
    free(data);
}

static void test_corrupt_header_and_table(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    size_t size = 3 * B + 5;
    unsigned char *data = pattern(size, 6);
    char ids[6][DFS_FRAGMENT_ID_HEX + 1], path[2 * PATH_MAX];
    for (int i = 0; i < 6; i++) {
        make_id(10 + (unsigned)i, ids[i]);
        put_ok(s, ids[i], data, size);
    }
    /* 0: a bit of the size field; 1: the magic; 2: the header CRC; 3: the CRC table. */
    const off_t where[4] = {17, 0, 126, (off_t)(DFS_FRAG_HEADER_SIZE + size + 6)};
    for (int i = 0; i < 4; i++) {
        frag_file(f, ids[i], path, sizeof path);
        flip(path, where[i], 0x04);
    }
    /* 4: truncated by one byte. */
    frag_file(f, ids[4], path, sizeof path);
    assert_int_equal(truncate(path, (off_t)file_len(size) - 1), 0);
    /* 5: a valid file of another id, copied over. */
    char src[2 * PATH_MAX];
    frag_file(f, ids[0], src, sizeof src);
    frag_file(f, ids[5], path, sizeof path);
    put_ok(s, ids[0], data, size); /* repair 0 first */
    copy_file(src, path);

    for (int i = 1; i < 6; i++) {
        dfs_frag_reader *r = NULL;
        char *err = NULL;
        struct dfs_frag_info info;
        assert_int_equal(dfs_frag_reader_open(s, ids[i], &r, &err), DFS_EDATALOSS);
        assert_null(r);
        assert_non_null(strstr(err, ids[i]));
        if (i != 3) /* the table is not read by stat */
            assert_int_equal(dfs_frag_store_stat(s, ids[i], &info, NULL), DFS_EDATALOSS);
        free(err);
    }
    /* A damaged size field fails its header CRC too. */
    frag_file(f, ids[0], path, sizeof path);
    flip(path, 17, 0x04);
    char *err = NULL;
    assert_int_equal(dfs_frag_reader_open(s, ids[0], &(dfs_frag_reader *){NULL}, &err),
                     DFS_EDATALOSS);
    assert_non_null(strstr(err, "header checksum mismatch"));
    free(err);
    free(data);
    dfs_frag_store_close(s);
}

static void test_delete(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    char id[DFS_FRAGMENT_ID_HEX + 1], other[DFS_FRAGMENT_ID_HEX + 1];
    make_id(20, id);
    make_id(21, other);
    unsigned char *data = pattern(B + 3, 20);
    put_ok(s, id, data, B + 3);
    expect_stats(s, 1, file_len(B + 3));
    bool existed = false;
    char *err = NULL;
    assert_int_equal(dfs_frag_store_delete(s, id, &existed, &err), DFS_OK);
    assert_true(existed);
    expect_stats(s, 0, 0);
    assert_int_equal(dfs_frag_reader_open(s, id, &(dfs_frag_reader *){NULL}, &err), DFS_ENOTFOUND);
    assert_non_null(strstr(err, "not found"));
    struct dfs_frag_info info;
    assert_int_equal(dfs_frag_store_stat(s, id, &info, NULL), DFS_ENOTFOUND);
    assert_int_equal(dfs_frag_store_delete(s, id, &existed, &err), DFS_OK);
    assert_false(existed);
    existed = true;
    assert_int_equal(dfs_frag_store_delete(s, other, &existed, &err), DFS_OK); /* no ab/cd dir */
    assert_false(existed);
    assert_int_equal(dfs_frag_store_delete(s, other, NULL, &err), DFS_OK);
    expect_stats(s, 0, 0);
    free(err);
    free(data);
    dfs_frag_store_close(s);
}

static void test_replace_and_readers_keep_old(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(30, id);
    size_t a_len = 3 * B + 17, b_len = 1000;
    unsigned char *a = pattern(a_len, 30), *b = pattern(b_len, 31);
    put_ok(s, id, a, a_len);

    dfs_frag_reader *old = NULL;
    assert_int_equal(dfs_frag_reader_open(s, id, &old, NULL), DFS_OK);
    put_ok(s, id, b, b_len);
    expect_stats(s, 1, file_len(b_len));
    check_stored(s, id, b, b_len);
    /* The reader opened before the replace still sees all of the old fragment. */
    assert_int_equal(dfs_frag_reader_size(old), a_len);
    check_range(old, a, 0, a_len);

    /* ...and a delete does not disturb a reader either. */
    dfs_frag_reader *cur = NULL;
    assert_int_equal(dfs_frag_reader_open(s, id, &cur, NULL), DFS_OK);
    bool existed = false;
    assert_int_equal(dfs_frag_store_delete(s, id, &existed, NULL), DFS_OK);
    assert_true(existed);
    check_range(cur, b, 0, b_len);
    check_range(old, a, B + 1, 2 * B);
    dfs_frag_reader_close(cur);
    dfs_frag_reader_close(old);
    expect_stats(s, 0, 0);
    free(a);
    free(b);
    dfs_frag_store_close(s);
}

static void test_tmp_swept_at_reopen(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    dfs_frag_store_close(s);
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/tmp/0123456789abcdef0123456789abcdef00000000.7", f->data);
    write_file(path, "partial");
    snprintf(path, sizeof path, "%s/tmp/node.id", f->data);
    write_file(path, "half");
    snprintf(path, sizeof path, "%s/tmp/somedir", f->data);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(count_files(f, "tmp"), 2);
    s = open_store(f, NULL);
    assert_int_equal(count_files(f, "tmp"), 0);
    assert_int_equal(access(path, F_OK), -1);
    expect_stats(s, 0, 0);
    dfs_frag_store_close(s);
}

static void test_stats_and_rescan(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    expect_stats(s, 0, 0);
    char id1[DFS_FRAGMENT_ID_HEX + 1], id2[DFS_FRAGMENT_ID_HEX + 1], id3[DFS_FRAGMENT_ID_HEX + 1];
    make_id(40, id1);
    make_id(41, id2);
    make_id(42, id3);
    unsigned char *data = pattern(3 * B, 40);
    put_ok(s, id1, data, B);
    expect_stats(s, 1, file_len(B));
    put_ok(s, id2, data, 5);
    expect_stats(s, 2, file_len(B) + file_len(5));
    put_ok(s, id1, data, 3 * B); /* replace: count unchanged */
    expect_stats(s, 2, file_len(3 * B) + file_len(5));
    put_ok(s, id3, data, 0);
    bool existed;
    assert_int_equal(dfs_frag_store_delete(s, id2, &existed, NULL), DFS_OK);
    expect_stats(s, 2, file_len(3 * B) + file_len(0));
    dfs_frag_store_close(s);

    /* Strays in fragments/ are not counted. */
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/fragments/README", f->data);
    write_file(path, "x");
    snprintf(path, sizeof path, "%s/fragments/%.2s/%.2s/junk", f->data, id1, id1 + 2);
    write_file(path, "x");
    snprintf(path, sizeof path, "%s/fragments/%.2s/%.2s/%s", f->data, id1, id1 + 2, id2);
    write_file(path, "x"); /* a valid id in the wrong directory */

    s = open_store(f, NULL);
    expect_stats(s, 2, file_len(3 * B) + file_len(0));
    dfs_frag_store_close(s);
    free(data);
}

struct seen {
    int n;
    char ids[16][DFS_FRAGMENT_ID_HEX + 1];
    uint64_t sizes[16];
    int stop_after;
};

static int collect(void *ctx, const char *id, uint64_t size)
{
    struct seen *v = ctx;
    if (v->n == v->stop_after)
        return DFS_ECANCELED;
    snprintf(v->ids[v->n], sizeof v->ids[0], "%s", id);
    v->sizes[v->n] = size;
    v->n++;
    return DFS_OK;
}

static void test_foreach(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    const size_t sizes[] = {0, 1, 65535, 65536, 65537, 2 * B, 2 * B + 4, 2 * B + 5, 7 * B - 1};
    const int n = (int)(sizeof sizes / sizeof sizes[0]);
    unsigned char *data = pattern(7 * B, 50);
    for (int i = 0; i < n; i++) {
        char id[DFS_FRAGMENT_ID_HEX + 1];
        make_id(50 + (unsigned)i, id);
        put_ok(s, id, data, sizes[i]);
    }
    struct seen v = {.stop_after = -1};
    char *err = NULL;
    assert_int_equal(dfs_frag_store_foreach(s, collect, &v, &err), DFS_OK);
    assert_int_equal(v.n, n);
    for (int i = 0; i < n; i++) {
        char id[DFS_FRAGMENT_ID_HEX + 1];
        make_id(50 + (unsigned)i, id);
        int found = 0;
        for (int j = 0; j < v.n; j++)
            if (strcmp(v.ids[j], id) == 0) {
                assert_int_equal(v.sizes[j], sizes[i]);
                found++;
            }
        assert_int_equal(found, 1);
    }
    struct seen stop = {.stop_after = 3};
    assert_int_equal(dfs_frag_store_foreach(s, collect, &stop, &err), DFS_ECANCELED);
    assert_int_equal(stop.n, 3);

    /* A truncated file is listed with an unknown size. */
    char path[2 * PATH_MAX];
    frag_file(f, v.ids[0], path, sizeof path);
    assert_int_equal(truncate(path, DFS_FRAG_HEADER_SIZE + 2), 0);
    struct seen w = {.stop_after = -1};
    assert_int_equal(dfs_frag_store_foreach(s, collect, &w, &err), DFS_OK);
    assert_int_equal(w.n, n);
    for (int j = 0; j < w.n; j++)
        if (strcmp(w.ids[j], v.ids[0]) == 0)
            assert_true(w.sizes[j] == DFS_FRAG_SIZE_UNKNOWN);
    free(err);
    free(data);
    dfs_frag_store_close(s);
}

static void test_enospc_during_write(void **state)
{
    struct fx *f = *state;
    const struct dfs_io_ops *io = fault_io();
    dfs_frag_store *s = open_store(f, io);
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(60, id);
    size_t size = 3 * MIB;
    unsigned char *data = pattern(size, 60), *old = pattern(B, 61);
    uint32_t *c = crcs_of(data, size);
    put_ok(s, id, old, B); /* what a failed replace must leave alone */
    char *err = NULL;

    /* The second data append fails. */
    dfs_frag_writer *w = NULL;
    assert_int_equal(dfs_frag_writer_begin(s, id, size, &w, &err), DFS_OK);
    pwrite_fail_after = 1;
    assert_int_equal(dfs_frag_writer_append(w, data, MIB, c, 16, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append(w, data + MIB, MIB, c + 16, 16, &err), DFS_ENOSPC);
    assert_non_null(strstr(err, "disk full"));
    assert_non_null(strstr(err, id));
    assert_int_equal(count_files(f, "tmp"), 1);
    dfs_frag_writer_abort(w);
    assert_int_equal(count_files(f, "tmp"), 0);

    /* The commit's table write fails. */
    pwrite_fail_after = 3;
    assert_int_equal(put(s, id, data, size, MIB, NULL, &err), DFS_ENOSPC);
    assert_non_null(strstr(err, "crc table"));
    /* EDQUOT is disk full too. */
    pwrite_fail_after = 0;
    pwrite_fail_errno = EDQUOT;
    assert_int_equal(put(s, id, data, size, MIB, NULL, &err), DFS_ENOSPC);
    /* Any other write error is an I/O error. */
    pwrite_fail_after = 0;
    pwrite_fail_errno = EIO;
    assert_int_equal(put(s, id, data, size, MIB, NULL, &err), DFS_EIO);

    assert_int_equal(count_files(f, "tmp"), 0);
    assert_int_equal(count_files(f, "fragments"), 1);
    check_stored(s, id, old, B);
    expect_stats(s, 1, file_len(B));

    /* Still usable. */
    pwrite_fail_after = -1;
    put_ok(s, id, data, size);
    check_stored(s, id, data, size);
    expect_stats(s, 1, file_len(size));
    free(err);
    free(c);
    free(data);
    free(old);
    dfs_frag_store_close(s);
}

static void test_eio_during_fsync(void **state)
{
    struct fx *f = *state;
    const struct dfs_io_ops *io = fault_io();
    dfs_frag_store *s = open_store(f, io);
    char id[DFS_FRAGMENT_ID_HEX + 1], id2[DFS_FRAGMENT_ID_HEX + 1];
    make_id(70, id);
    make_id(71, id2);
    size_t size = 2 * B + 9;
    unsigned char *data = pattern(size, 70), *old = pattern(100, 71);
    put_ok(s, id, old, 100);
    char *err = NULL;

    /* The file's own fsync fails: nothing changes. */
    fsync_fail_after = 0;
    assert_int_equal(put(s, id, data, size, MIB, NULL, &err), DFS_EIO);
    assert_non_null(strstr(err, "fsync"));
    assert_non_null(strstr(err, "Input/output error"));
    check_stored(s, id, old, 100);
    assert_int_equal(count_files(f, "tmp"), 0);
    expect_stats(s, 1, file_len(100));

    /* A new fragment directory cannot be made durable: not stored either. */
    fsync_fail_after = 1;
    assert_int_equal(put(s, id2, data, size, MIB, NULL, &err), DFS_EIO);
    assert_int_equal(dfs_frag_store_stat(s, id2, &(struct dfs_frag_info){0}, NULL), DFS_ENOTFOUND);
    assert_int_equal(count_files(f, "tmp"), 0);
    expect_stats(s, 1, file_len(100));

    /* Still usable, and the retry goes through. */
    fsync_fail_after = -1;
    put_ok(s, id2, data, size);
    put_ok(s, id, data, size);
    check_stored(s, id, data, size);
    check_stored(s, id2, data, size);
    expect_stats(s, 2, 2 * file_len(size));
    free(err);
    free(data);
    free(old);
    dfs_frag_store_close(s);
}

/*
 * The fsyncs of a commit: the file, then its directory; a directory's first fragment adds only the
 * directory's entry in its parent (fragments/ab/cd is made durable by the fsync after the rename).
 */
static void test_fsyncs_per_commit(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, fault_io());
    char a[DFS_FRAGMENT_ID_HEX + 1], b[DFS_FRAGMENT_ID_HEX + 1], c[DFS_FRAGMENT_ID_HEX + 1];
    make_id(80, a);
    memcpy(b, a, sizeof b);
    b[DFS_FRAGMENT_ID_HEX - 1] = a[DFS_FRAGMENT_ID_HEX - 1] == '0' ? '1' : '0'; /* same ab/cd */
    memcpy(c, a, sizeof c);
    c[2] = a[2] == '0' ? '1' : '0'; /* same ab, another cd */
    unsigned char *data = pattern(100, 80);
    fsync_calls = 0;         /* the store's open has its own */
    put_ok(s, a, data, 100); /* new ab and cd: file, ab, fragments/ (ensure ab), cd, ab */
    assert_int_equal(fsync_calls, 5);
    fsync_calls = 0;
    put_ok(s, b, data, 100); /* the file and its directory */
    assert_int_equal(fsync_calls, 2);
    fsync_calls = 0;
    put_ok(s, c, data, 100); /* the file, the new cd, its entry in ab */
    assert_int_equal(fsync_calls, 3);
    check_stored(s, a, data, 100);
    check_stored(s, b, data, 100);
    check_stored(s, c, data, 100);
    dfs_frag_store_close(s);

    /* Reopened: the directories exist, but this process has not fsynced them yet. */
    s = open_store(f, fault_io());
    make_id(81, b);
    memcpy(b, a, 4);
    fsync_calls = 0;
    put_ok(s, b, data, 100); /* as the first put above */
    assert_int_equal(fsync_calls, 5);
    check_stored(s, b, data, 100);
    free(data);
    dfs_frag_store_close(s);
}

static void test_short_reads(void **state)
{
    struct fx *f = *state;
    const struct dfs_io_ops *io = fault_io();
    short_read_max = 1000;
    dfs_frag_store *s = open_store(f, io);
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(80, id);
    size_t size = 4 * B + 321;
    unsigned char *data = pattern(size, 80);
    put_ok(s, id, data, size);
    dfs_frag_store_close(s);

    s = open_store(f, io); /* node.id read in pieces */
    check_stored(s, id, data, size);
    dfs_frag_reader *r = NULL;
    assert_int_equal(dfs_frag_reader_open(s, id, &r, NULL), DFS_OK);
    check_range(r, data, 5, 3 * B);
    check_range(r, data, B + 7, size - B - 7);
    dfs_frag_reader_close(r);
    dfs_frag_store_close(s);
    free(data);
}

/* ---- concurrency ---- */

#define THREADS         4
#define PER_THREAD      12
#define SHARED_REWRITES 10

struct worker {
    dfs_frag_store *store;
    unsigned index;
    const unsigned char *data; /* big enough for any size used */
    int failures;
    char msg[256];
};

static size_t worker_size(unsigned t, unsigned i)
{
    return ((size_t)t * 7919 + (size_t)i * 104729) % (5 * B);
}

/* Writes its own fragments, reads them back, and keeps replacing one fragment shared by all. */
static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    char shared[DFS_FRAGMENT_ID_HEX + 1];
    make_id(999, shared);
    for (unsigned i = 0; i < PER_THREAD; i++) {
        char id[DFS_FRAGMENT_ID_HEX + 1];
        make_id(1000 + wk->index * 100 + i, id);
        size_t size = worker_size(wk->index, i);
        char *err = NULL;
        int rc = put(wk->store, id, wk->data, size, 2 * B, NULL, &err);
        if (rc == DFS_OK && i < SHARED_REWRITES)
            rc = put(wk->store, shared, wk->data, (size_t)wk->index * B + i, MIB, NULL, &err);
        if (rc != DFS_OK) {
            wk->failures++;
            snprintf(wk->msg, sizeof wk->msg, "put %s: %d %s", id, rc, err ? err : "");
        }
        free(err);
    }
    for (unsigned i = 0; i < PER_THREAD; i++) {
        char id[DFS_FRAGMENT_ID_HEX + 1];
        make_id(1000 + wk->index * 100 + i, id);
        size_t size = worker_size(wk->index, i);
        dfs_frag_reader *r = NULL;
        unsigned char *buf = malloc(size + 1);
        uint32_t crcs[8];
        if (dfs_frag_reader_open(wk->store, id, &r, NULL) != DFS_OK ||
            dfs_frag_reader_size(r) != size ||
            dfs_frag_reader_read(r, 0, buf, size, crcs, NULL) != DFS_OK ||
            memcmp(buf, wk->data, size) != 0) {
            wk->failures++;
            snprintf(wk->msg, sizeof wk->msg, "read back %s failed", id);
        }
        dfs_frag_reader_close(r);
        free(buf);
        /* Delete every third one again. */
        if (i % 3 == 0 && dfs_frag_store_delete(wk->store, id, NULL, NULL) != DFS_OK)
            wk->failures++;
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    unsigned char *data = pattern(8 * B, 90);
    struct worker wk[THREADS];
    pthread_t th[THREADS];
    for (unsigned t = 0; t < THREADS; t++) {
        wk[t] = (struct worker){.store = s, .index = t, .data = data};
        assert_int_equal(pthread_create(&th[t], NULL, worker_main, &wk[t]), 0);
    }
    for (unsigned t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        if (wk[t].failures != 0)
            fail_msg("thread %u: %d failures, last: %s", t, wk[t].failures, wk[t].msg);
    }

    /* Expected: 2/3 of each thread's fragments, plus the shared one (whichever write came last). */
    uint64_t want_n = 1, want_bytes = 0;
    for (unsigned t = 0; t < THREADS; t++)
        for (unsigned i = 0; i < PER_THREAD; i++)
            if (i % 3 != 0) {
                want_n++;
                want_bytes += file_len(worker_size(t, i));
            }
    char shared[DFS_FRAGMENT_ID_HEX + 1];
    make_id(999, shared);
    struct dfs_frag_info info;
    assert_int_equal(dfs_frag_store_stat(s, shared, &info, NULL), DFS_OK);
    check_stored(s, shared, data, info.size);
    want_bytes += file_len(info.size);
    expect_stats(s, want_n, want_bytes);
    dfs_frag_store_close(s);

    /* The counters kept during the run agree with a fresh scan. */
    s = open_store(f, NULL);
    expect_stats(s, want_n, want_bytes);
    assert_int_equal(count_files(f, "tmp"), 0);
    dfs_frag_store_close(s);
    free(data);
}

/* Renames without RENAME_NOREPLACE, as on a file system that lacks it. */
static int renameat2_einval(int od, const char *op, int nd, const char *np, unsigned flags)
{
    (void)od, (void)op, (void)nd, (void)np, (void)flags;
    errno = EINVAL;
    return -1;
}

/* A stored fragment is never replaced by commit_new; the same bytes again are a retry. */
static void write_once(struct fx *f, const struct dfs_io_ops *io)
{
    dfs_frag_store *s = open_store(f, io);
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(70, id);
    size_t len = 2 * B + 5;
    unsigned char *a = pattern(len, 70), *b = pattern(len, 71);
    bool already = true;
    char *err = NULL;
    assert_int_equal(put_new(s, id, a, len, &already, &err), DFS_OK);
    assert_false(already);
    /* Other bytes of the same size, or another size: refused, and nothing changes. */
    assert_int_equal(put_new(s, id, b, len, &already, &err), DFS_EEXIST);
    assert_non_null(strstr(err, "never replaced by a put"));
    free(err);
    err = NULL;
    assert_int_equal(put_new(s, id, b, len - 1, &already, &err), DFS_EEXIST);
    free(err);
    err = NULL;
    check_stored(s, id, a, len);
    expect_stats(s, 1, file_len(len));
    assert_int_equal(count_files(f, "tmp"), 0);
    /* The very bytes again (a retry whose answer was lost): success, nothing written. */
    already = false;
    assert_int_equal(put_new(s, id, a, len, &already, &err), DFS_OK);
    assert_true(already);
    expect_stats(s, 1, file_len(len));
    assert_int_equal(count_files(f, "tmp"), 0);
    /* A repair (commit) still replaces it; a stored file that does not read is refused too. */
    put_ok(s, id, b, len);
    check_stored(s, id, b, len);
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/fragments/%.2s/%.2s/%s", f->data, id, id + 2, id);
    write_file(path, "garbage");
    assert_int_equal(put_new(s, id, b, len, &already, &err), DFS_EEXIST);
    free(err);
    err = NULL;
    /* A fresh id goes in. */
    make_id(71, id);
    assert_int_equal(put_new(s, id, a, 0, &already, &err), DFS_OK);
    assert_false(already);
    free(a);
    free(b);
    dfs_frag_store_close(s);
}

static void test_write_once(void **state)
{
    write_once(*state, NULL);
}

static void test_write_once_without_noreplace(void **state)
{
    static struct dfs_io_ops io;
    io = *dfs_io_posix();
    io.renameat2 = renameat2_einval;
    write_once(*state, &io);
}

struct racer {
    dfs_frag_store *store;
    const char *id;
    unsigned seed;
    pthread_barrier_t *go;
    int rc;
};

static void *racer_main(void *arg)
{
    struct racer *r = arg;
    unsigned char *data = pattern(B, r->seed);
    pthread_barrier_wait(r->go);
    char *err = NULL;
    r->rc = put_new(r->store, r->id, data, B, NULL, &err);
    free(err);
    free(data);
    return NULL;
}

/* Puts of one id at once: exactly one lands, whole; the others are refused. */
static void test_write_once_race(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = open_store(f, NULL);
    char id[DFS_FRAGMENT_ID_HEX + 1];
    for (unsigned round = 0; round < 20; round++) {
        make_id(80 + round, id);
        enum { N = 6 };
        struct racer r[N];
        pthread_t th[N];
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, N);
        for (unsigned i = 0; i < N; i++) {
            r[i] = (struct racer){.store = s, .id = id, .seed = 100 * round + i, .go = &go};
            assert_int_equal(pthread_create(&th[i], NULL, racer_main, &r[i]), 0);
        }
        int won = -1;
        for (unsigned i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            if (r[i].rc == DFS_OK) {
                assert_int_equal(won, -1);
                won = (int)i;
            } else {
                assert_int_equal(r[i].rc, DFS_EEXIST);
            }
        }
        pthread_barrier_destroy(&go);
        assert_int_not_equal(won, -1);
        unsigned char *want = pattern(B, r[won].seed);
        check_stored(s, id, want, B);
        free(want);
    }
    expect_stats(s, 20, 20 * file_len(B));
    assert_int_equal(count_files(f, "tmp"), 0);
    dfs_frag_store_close(s);
}

static void test_open_errors(void **state)
{
    struct fx *f = *state;
    dfs_frag_store *s = NULL;
    char *err = NULL;
    assert_int_equal(dfs_frag_store_open("", NULL, &s, &err), DFS_EINVAL);
    assert_int_equal(dfs_frag_store_open(NULL, NULL, &s, &err), DFS_EINVAL);
    /* The data dir path names a file. */
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/file", f->root);
    write_file(path, "x");
    assert_int_not_equal(dfs_frag_store_open(path, NULL, &s, &err), DFS_OK);
    assert_null(s);
    assert_non_null(strstr(err, path));
    /* Parents are created as needed. */
    snprintf(path, sizeof path, "%s/a/b//c/", f->root);
    assert_int_equal(dfs_frag_store_open(path, NULL, &s, &err), DFS_OK);
    assert_true(dfs_id_valid(dfs_frag_store_node_id(s)));
    dfs_frag_store_close(s);
    free(err);
}

/*
 * A message that arrived in pieces: appended from iovecs of uneven sizes (blocks span pieces),
 * written with pwritev (also when the kernel splits it), the CRC of a block that spans pieces
 * checked, nothing written when one is wrong, and a failing pwritev is disk full.
 */
static void test_append_iov(void **state)
{
    struct fx *f = *state;
    const struct dfs_io_ops *io = fault_io();
    dfs_frag_store *s = open_store(f, io);
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(90, id);
    size_t size = 2 * MIB + 1000; /* two full messages and a short last one */
    unsigned char *data = pattern(size, 90);
    uint32_t *c = crcs_of(data, size);
    char *err = NULL;
    for (int pass = 0; pass < 2; pass++) {
        short_write_max = pass == 0 ? 0 : 7000; /* pass 1: every pwritev writes a little */
        dfs_frag_writer *w = NULL;
        assert_int_equal(dfs_frag_writer_begin(s, id, size, &w, &err), DFS_OK);
        for (size_t off = 0; off < size; off += MIB) {
            size_t n = size - off < MIB ? size - off : MIB;
            /* Pieces of 1, 16383, 16384, 3, ... bytes: odd sizes across block boundaries. */
            struct iovec iov[300];
            size_t niov = 0, at = 0;
            static const size_t sizes[] = {1, 16383, 16384, 3, 70000, 5};
            while (at < n) {
                size_t k = sizes[niov % 6] < n - at ? sizes[niov % 6] : n - at;
                iov[niov].iov_base = data + off + at;
                iov[niov].iov_len = k;
                niov++;
                at += k;
            }
            assert_true(niov <= 300);
            assert_int_equal(dfs_frag_writer_append_iov(w, iov, niov, n, c + off / B,
                                                        dfs_crc32c_nblocks(n), &err),
                             DFS_OK);
        }
        assert_int_equal(dfs_frag_writer_commit(w, NULL, &err), DFS_OK);
        check_stored(s, id, data, size);
    }
    short_write_max = 0;

    /* A wrong CRC on a block that spans two pieces: refused, nothing written. */
    dfs_frag_writer *w = NULL;
    assert_int_equal(dfs_frag_writer_begin(s, id, size, &w, &err), DFS_OK);
    struct iovec two[2] = {{data, B / 2}, {data + B / 2, MIB - B / 2}};
    uint32_t bad[16];
    memcpy(bad, c, sizeof bad);
    bad[0] ^= 1;
    int calls = pwrite_calls;
    assert_int_equal(dfs_frag_writer_append_iov(w, two, 2, MIB, bad, 16, &err), DFS_EDATALOSS);
    assert_non_null(strstr(err, "block 0"));
    assert_int_equal(pwrite_calls, calls);
    dfs_frag_writer_abort(w);
    /* Pieces that do not add up to the length given. */
    assert_int_equal(dfs_frag_writer_begin(s, id, size, &w, &err), DFS_OK);
    assert_int_equal(dfs_frag_writer_append_iov(w, two, 2, MIB - B, c, 15, &err), DFS_EINVAL);
    dfs_frag_writer_abort(w);
    /* pwritev fails: disk full. */
    assert_int_equal(dfs_frag_writer_begin(s, id, size, &w, &err), DFS_OK);
    pwrite_fail_after = 0;
    assert_int_equal(dfs_frag_writer_append_iov(w, two, 2, MIB, c, 16, &err), DFS_ENOSPC);
    assert_non_null(strstr(err, "disk full"));
    dfs_frag_writer_abort(w);
    pwrite_fail_after = -1;
    check_stored(s, id, data, size);
    free(err);
    free(c);
    free(data);
    dfs_frag_store_close(s);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_node_id_created_once_and_stable),
        T(test_round_trip_sizes),
        T(test_file_format),
        T(test_ranged_reads),
        T(test_bad_crc_on_append),
        T(test_chunking_rules),
        T(test_size_mismatch_at_commit),
        T(test_bad_ids),
        T(test_bit_flip_in_data),
        T(test_mapped_reads),
        T(test_corrupt_header_and_table),
        T(test_delete),
        T(test_replace_and_readers_keep_old),
        T(test_tmp_swept_at_reopen),
        T(test_stats_and_rescan),
        T(test_foreach),
        T(test_enospc_during_write),
        T(test_eio_during_fsync),
        T(test_fsyncs_per_commit),
        T(test_short_reads),
        T(test_concurrent_writers),
        T(test_write_once),
        T(test_write_once_without_noreplace),
        T(test_write_once_race),
        T(test_open_errors),
        T(test_append_iov),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
