/* Tests for client/filehash: the SHA-256 of a file or of memory, by a thread or, small, at finish. */
#include "client/filehash.h"

#include "common/err.h"

#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static void sha256(const uint8_t *p, size_t n, uint8_t out[DFS_SHA256_BYTES])
{
    unsigned int len = 0;
    assert_int_equal(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL), 1);
}

/* A temporary file holding n pattern bytes; its descriptor (the name is gone). */
static int temp_file(uint8_t *bytes, size_t n)
{
    const char *dir = getenv("TEST_TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/filehash_test.XXXXXX", dir != NULL ? dir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    for (size_t i = 0; i < n; i++)
        bytes[i] = (uint8_t)(i * 31 + (i >> 9));
    assert_int_equal(pwrite(fd, bytes, n, 0), (ssize_t)n);
    return fd;
}

/* Every way of starting gives the file's SHA-256, at the sizes around the inline limit. */
static void test_digests(void **state)
{
    (void)state;
    const size_t sizes[] = {
        0, 1, 1024, DFS_FILEHASH_INLINE_MAX, DFS_FILEHASH_INLINE_MAX + 1, (1u << 20) + 3};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        uint8_t *bytes = malloc(n + 1);
        assert_non_null(bytes);
        int fd = temp_file(bytes, n);
        uint8_t want[DFS_SHA256_BYTES], got[DFS_SHA256_BYTES];
        sha256(bytes, n, want);
        dfs_filehash *h = NULL;
        assert_int_equal(dfs_filehash_start(fd, n, &h, NULL), DFS_OK);
        assert_int_equal(dfs_filehash_finish(h, got, NULL), DFS_OK);
        assert_memory_equal(got, want, sizeof want);
        assert_int_equal(dfs_filehash_start_mem(bytes, n, &h, NULL), DFS_OK);
        assert_int_equal(dfs_filehash_finish(h, got, NULL), DFS_OK);
        assert_memory_equal(got, want, sizeof want);
        if (n > 0) {
            /* Following two regions, advanced in pieces (one of them back: invalid). */
            uint64_t starts[2] = {0, n / 2};
            assert_int_equal(dfs_filehash_start_follow(fd, n, starts, 2, &h, NULL), DFS_OK);
            dfs_filehash_advance(h, 1, (n - n / 2) / 2);
            dfs_filehash_advance(h, 0, n / 2);
            dfs_filehash_advance(h, 1, 0);
            dfs_filehash_advance(h, 1, n - n / 2);
            assert_int_equal(dfs_filehash_finish(h, got, NULL), DFS_OK);
            assert_memory_equal(got, want, sizeof want);
        }
        /* Cancelled, with or without a thread. */
        assert_int_equal(dfs_filehash_start(fd, n, &h, NULL), DFS_OK);
        dfs_filehash_cancel(h);
        close(fd);
        free(bytes);
    }
}

/* A file of at most DFS_FILEHASH_INLINE_MAX bytes starts no thread; a larger one does. */
static void test_small_starts_no_thread(void **state)
{
    (void)state;
    size_t n = DFS_FILEHASH_INLINE_MAX + 1;
    uint8_t *bytes = malloc(n);
    assert_non_null(bytes);
    int fd = temp_file(bytes, n);
    uint8_t got[DFS_SHA256_BYTES];
    unsigned long before = dfs_filehash_threads_started();
    dfs_filehash *h = NULL;
    assert_int_equal(dfs_filehash_start(fd, 1024, &h, NULL), DFS_OK);
    assert_int_equal(dfs_filehash_finish(h, got, NULL), DFS_OK);
    assert_int_equal(dfs_filehash_start_mem(bytes, DFS_FILEHASH_INLINE_MAX, &h, NULL), DFS_OK);
    assert_int_equal(dfs_filehash_finish(h, got, NULL), DFS_OK);
    uint64_t starts[1] = {0};
    assert_int_equal(dfs_filehash_start_follow(fd, 1024, starts, 1, &h, NULL), DFS_OK);
    dfs_filehash_advance(h, 0, 1024);
    assert_int_equal(dfs_filehash_finish(h, got, NULL), DFS_OK);
    assert_int_equal(dfs_filehash_threads_started(), before);
    assert_int_equal(dfs_filehash_start(fd, n, &h, NULL), DFS_OK);
    assert_int_equal(dfs_filehash_finish(h, got, NULL), DFS_OK);
    assert_int_equal(dfs_filehash_threads_started(), before + 1);
    close(fd);
    free(bytes);
}

/* A small file shorter than the size asked is an error at finish, as it is from the thread. */
static void test_small_short_file(void **state)
{
    (void)state;
    uint8_t bytes[100];
    int fd = temp_file(bytes, sizeof bytes);
    dfs_filehash *h = NULL;
    uint8_t got[DFS_SHA256_BYTES];
    char *err = NULL;
    assert_int_equal(dfs_filehash_start(fd, 200, &h, NULL), DFS_OK);
    assert_int_equal(dfs_filehash_finish(h, got, &err), DFS_EIO);
    assert_non_null(err);
    assert_non_null(strstr(err, "ended at 100 bytes"));
    free(err);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digests),
        cmocka_unit_test(test_small_starts_no_thread),
        cmocka_unit_test(test_small_short_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
