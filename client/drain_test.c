/* Tests for the drain: regions written out of order come out in order, ranges, the held-back
   last piece, a reader that goes away. */
#include "client/drain.h"

#include "common/err.h"

#include <fcntl.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define SIZE (3u << 20) /* three regions of 1 MiB */

struct reader {
    int fd;
    uint8_t *buf;
    size_t len, cap;
};

static void *read_all(void *arg)
{
    struct reader *r = arg;
    for (;;) {
        if (r->len == r->cap)
            break;
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (n <= 0)
            break;
        r->len += (size_t)n;
    }
    return NULL;
}

static int scratch_with(const uint8_t *data, size_t n)
{
    char path[] = "/tmp/drain-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(pwrite(fd, data, n, 0), (ssize_t)n);
    return fd;
}

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + i / 4096);
    return p;
}

/* Drain [from, to) of a SIZE-byte file with regions advanced last first; returns what came out. */
static int run(uint64_t from, uint64_t to, bool ok, const uint8_t *expect, struct reader *r)
{
    uint8_t *data = pattern(SIZE);
    int scratch = scratch_with(data, SIZE);
    int p[2];
    assert_int_equal(pipe(p), 0);
    r->fd = p[0];
    r->cap = SIZE + 1;
    r->buf = malloc(r->cap);
    r->len = 0;
    pthread_t t;
    pthread_create(&t, NULL, read_all, r);
    uint64_t starts[3] = {0, 1u << 20, 2u << 20};
    struct dfs_drain_config cfg = {.scratch_fd = scratch,
                                   .out_fd = p[1],
                                   .starts = starts,
                                   .nregions = 3,
                                   .end = SIZE,
                                   .from = from,
                                   .to = to,
                                   .hash = from == 0 && to == SIZE};
    dfs_drain *d = NULL;
    char *err = NULL;
    assert_int_equal(dfs_drain_start(&cfg, &d, &err), DFS_OK);
    for (int i = 2; i >= 0; i--) {
        dfs_drain_advance(d, (size_t)i, 1u << 19);
        dfs_drain_advance(d, (size_t)i, 1u << 20);
    }
    int rc = dfs_drain_finish(d, ok, expect, &err);
    close(p[1]);
    pthread_join(t, NULL);
    close(p[0]);
    close(scratch);
    free(data);
    free(err);
    return rc;
}

static void whole_file_in_order_with_hash(void **state)
{
    (void)state;
    uint8_t *data = pattern(SIZE);
    uint8_t sha[32];
    SHA256(data, SIZE, sha);
    struct reader r;
    assert_int_equal(run(0, SIZE, true, sha, &r), DFS_OK);
    assert_int_equal(r.len, SIZE);
    assert_memory_equal(r.buf, data, SIZE);
    free(r.buf);
    free(data);
}

static void hash_mismatch_holds_back_the_last_piece(void **state)
{
    (void)state;
    uint8_t wrong[32] = {0};
    struct reader r;
    assert_int_equal(run(0, SIZE, true, wrong, &r), DFS_EDATALOSS);
    assert_true(r.len < SIZE);
    free(r.buf);
}

static void a_range_across_regions(void **state)
{
    (void)state;
    uint8_t *data = pattern(SIZE);
    struct reader r;
    uint64_t from = (1u << 20) - 100, to = (2u << 20) + 5;
    assert_int_equal(run(from, to, true, NULL, &r), DFS_OK);
    assert_int_equal(r.len, to - from);
    assert_memory_equal(r.buf, data + from, to - from);
    free(r.buf);
    free(data);
}

static void not_ok_sends_less(void **state)
{
    (void)state;
    struct reader r;
    assert_int_equal(run(10, 20, false, NULL, &r), DFS_OK);
    assert_int_equal(r.len, 0);
    free(r.buf);
}

static void reader_gone_fails_the_drain(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    uint8_t *data = pattern(SIZE);
    int scratch = scratch_with(data, SIZE);
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    uint64_t starts[1] = {0};
    struct dfs_drain_config cfg = {.scratch_fd = scratch,
                                   .out_fd = p[1],
                                   .starts = starts,
                                   .nregions = 1,
                                   .end = SIZE,
                                   .from = 0,
                                   .to = SIZE};
    dfs_drain *d = NULL;
    assert_int_equal(dfs_drain_start(&cfg, &d, NULL), DFS_OK);
    dfs_drain_advance(d, 0, SIZE);
    while (dfs_drain_failed(d) == DFS_OK)
        usleep(1000);
    assert_int_equal(dfs_drain_failed(d), DFS_ECANCELED);
    char *err = NULL;
    assert_int_equal(dfs_drain_finish(d, true, NULL, &err), DFS_ECANCELED);
    assert_non_null(err);
    free(err);
    close(p[1]);
    close(scratch);
    free(data);
}

static void bad_regions_rejected(void **state)
{
    (void)state;
    uint64_t starts[2] = {10, 5};
    struct dfs_drain_config cfg = {.scratch_fd = 0,
                                   .out_fd = 1,
                                   .starts = starts,
                                   .nregions = 2,
                                   .end = 20,
                                   .from = 10,
                                   .to = 20};
    dfs_drain *d = NULL;
    char *err = NULL;
    assert_int_equal(dfs_drain_start(&cfg, &d, &err), DFS_EINVAL);
    free(err);
    dfs_drain_cancel(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(whole_file_in_order_with_hash),
        cmocka_unit_test(hash_mismatch_holds_back_the_last_piece),
        cmocka_unit_test(a_range_across_regions),
        cmocka_unit_test(not_ok_sends_less),
        cmocka_unit_test(reader_gone_fails_the_drain),
        cmocka_unit_test(bad_regions_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
