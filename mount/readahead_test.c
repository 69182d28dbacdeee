/* Tests of the read-ahead window: bytes right, small reads fetch little, sequential reads grow
   the window, errors pass through and leave nothing cached. */
#include "mount/readahead.h"

#include "common/err.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

struct fake {
    uint64_t size;
    pthread_t reader;
    int in_fetch, background; /* fetches running now (never above 1); made by another thread */
    int delay_us;
    uint64_t last_off, last_len, max_len;
    int fail; /* fail the next fetch with this code */
};

static uint8_t byte_at(uint64_t i)
{
    return (uint8_t)(i * 7 + i / 251);
}

static int fetch(void *arg, uint64_t off, uint64_t len, uint8_t *buf, char **errmsg)
{
    struct fake *f = arg;
    assert_int_equal(__atomic_add_fetch(&f->in_fetch, 1, __ATOMIC_SEQ_CST), 1);
    if (!pthread_equal(pthread_self(), f->reader))
        __atomic_add_fetch(&f->background, 1, __ATOMIC_SEQ_CST);
    if (f->delay_us > 0)
        usleep((useconds_t)f->delay_us);
    __atomic_sub_fetch(&f->in_fetch, 1, __ATOMIC_SEQ_CST);
    if (f->fail != 0) {
        int rc = f->fail;
        f->fail = 0;
        return dfs_seterr(errmsg, rc, "injected");
    }
    assert_true(off + len <= f->size);
    for (uint64_t i = 0; i < len; i++)
        buf[i] = byte_at(off + i);
    f->last_off = off;
    f->last_len = len;
    if (len > f->max_len)
        f->max_len = len;
    return DFS_OK;
}

static void check(dfs_readahead *ra, uint64_t off, size_t size, size_t want)
{
    uint8_t *b = malloc(size + 1);
    size_t got = 99;
    assert_int_equal(dfs_readahead_read(ra, off, size, b, &got, NULL), DFS_OK);
    assert_int_equal(got, want);
    for (size_t i = 0; i < got; i++)
        assert_int_equal(b[i], byte_at(off + i));
    free(b);
}

static void test_small_random_reads(void **state)
{
    (void)state;
    struct fake f = {.size = 100 << 20};
    dfs_readahead *ra = NULL;
    assert_int_equal(dfs_readahead_create(f.size, 128 << 10, 8 << 20, fetch, &f, &ra), DFS_OK);
    check(ra, 50 << 20, 4096, 4096);
    assert_int_equal(f.last_off, 50 << 20);
    assert_int_equal(f.last_len, 128 << 10); /* no whole-file download */
    check(ra, (50 << 20) + 70000, 100, 100); /* inside the window: no fetch */
    uint64_t n, bytes;
    dfs_readahead_counts(ra, &n, &bytes);
    assert_int_equal(n, 1);
    check(ra, 3 * 65536 + 10, 4096, 4096); /* starts at its block */
    assert_int_equal(f.last_off, 3 * 65536);
    dfs_readahead_destroy(ra);
}

static void test_sequential_grows(void **state)
{
    (void)state;
    struct fake f = {.size = 64 << 20};
    dfs_readahead *ra = NULL;
    assert_int_equal(dfs_readahead_create(f.size, 128 << 10, 4 << 20, fetch, &f, &ra), DFS_OK);
    uint64_t off = 0;
    while (off < f.size) {
        check(ra, off, 128 << 10, 128 << 10);
        off += 128 << 10;
    }
    uint64_t n, bytes;
    dfs_readahead_counts(ra, &n, &bytes);
    assert_int_equal(bytes, f.size);      /* each byte fetched once */
    assert_true(n < 30);                  /* 512 reads, few fetches */
    assert_int_equal(f.max_len, 4 << 20); /* grown to the largest window */
    check(ra, f.size - 10, 100, 10);      /* short at the end */
    check(ra, f.size, 100, 0);
    dfs_readahead_destroy(ra);
}

/* Sequential reads at the largest window: the next window comes from the background, one fetch
   at a time, every byte once, the bytes right. */
static void test_prefetch(void **state)
{
    (void)state;
    struct fake f = {.size = (32 << 20) + 12345, .reader = pthread_self(), .delay_us = 2000};
    dfs_readahead *ra = NULL;
    assert_int_equal(dfs_readahead_create(f.size, 128 << 10, 1 << 20, fetch, &f, &ra), DFS_OK);
    uint64_t off = 0;
    while (off < f.size) {
        size_t want = f.size - off < (128 << 10) ? (size_t)(f.size - off) : 128 << 10;
        check(ra, off, 128 << 10, want);
        off += want;
    }
    uint64_t n, bytes;
    dfs_readahead_counts(ra, &n, &bytes);
    assert_int_equal(bytes, f.size);
    assert_true(f.background > 20); /* most windows came from the prefetcher */
    /* a random read after that: served, the prefetch in flight (if any) is not in the way */
    check(ra, 1000, 10, 10);
    dfs_readahead_destroy(ra);
    /* destroyed with a prefetch in flight */
    f.background = 0;
    assert_int_equal(dfs_readahead_create(f.size, 1 << 20, 1 << 20, fetch, &f, &ra), DFS_OK);
    check(ra, 0, 100, 100);
    check(ra, 100, 100, 100);
    dfs_readahead_destroy(ra);
}

static void test_errors(void **state)
{
    (void)state;
    struct fake f = {.size = 1 << 20, .fail = DFS_EDATALOSS};
    dfs_readahead *ra = NULL;
    assert_int_equal(dfs_readahead_create(f.size, 4096, 4096, fetch, &f, &ra), DFS_OK);
    uint8_t b[100];
    size_t got = 5;
    char *err = NULL;
    assert_int_equal(dfs_readahead_read(ra, 0, sizeof b, b, &got, &err), DFS_EDATALOSS);
    assert_int_equal(got, 0);
    assert_string_equal(err, "injected");
    free(err);
    check(ra, 0, 100, 100); /* fetched again */
    assert_int_equal(dfs_readahead_create(10, 0, 5, fetch, &f, &ra), DFS_EINVAL);
    dfs_readahead_destroy(ra);
    dfs_readahead_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_random_reads),
        cmocka_unit_test(test_sequential_grows),
        cmocka_unit_test(test_prefetch),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
