/* Tests of the write spool: files are unlinked and writable, the bound holds. */
#include "mount/spool.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static const char *tmp(void)
{
    const char *t = getenv("TEST_TMPDIR");
    return t != NULL && t[0] != '\0' ? t : "/tmp";
}

static void test_files(void **state)
{
    (void)state;
    dfs_mount_spool *sp = NULL;
    assert_int_equal(dfs_mount_spool_create(tmp(), 1 << 20, 0, &sp, NULL), DFS_OK);
    int fd = -1;
    assert_int_equal(dfs_mount_spool_file(sp, &fd, NULL), DFS_OK);
    assert_int_equal(pwrite(fd, "abc", 3, 10), 3);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 13);
    assert_int_equal(st.st_nlink, 0); /* unlinked */
    close(fd);
    dfs_mount_spool_destroy(sp);
}

static void test_bound(void **state)
{
    (void)state;
    dfs_mount_spool *sp = NULL;
    char *err = NULL;
    assert_int_equal(dfs_mount_spool_create(tmp(), 1000, 0, &sp, NULL), DFS_OK);
    assert_int_equal(dfs_mount_spool_reserve(sp, 600, NULL), DFS_OK);
    assert_int_equal(dfs_mount_spool_reserve(sp, 400, NULL), DFS_OK);
    assert_int_equal(dfs_mount_spool_reserve(sp, 1, &err), DFS_ENOSPC);
    assert_non_null(strstr(err, "spool is full"));
    free(err);
    err = NULL;
    assert_int_equal(dfs_mount_spool_used(sp), 1000);
    dfs_mount_spool_release(sp, 600);
    assert_int_equal(dfs_mount_spool_reserve(sp, 500, NULL), DFS_OK);
    dfs_mount_spool_release(sp, 5000); /* never below 0 */
    assert_int_equal(dfs_mount_spool_used(sp), 0);
    dfs_mount_spool_destroy(sp);
    /* a reserve larger than any disk: no room */
    assert_int_equal(dfs_mount_spool_create(tmp(), 1000, UINT64_MAX / 2, &sp, NULL), DFS_OK);
    assert_int_equal(dfs_mount_spool_reserve(sp, 1, &err), DFS_ENOSPC);
    free(err);
    err = NULL;
    dfs_mount_spool_destroy(sp);
    assert_int_equal(dfs_mount_spool_create("/nonexistent-dir", 1000, 0, &sp, &err), DFS_EINVAL);
    free(err);
    err = NULL;
}

/* Memory files: none without memory, the memory's own bound, and a spill to disk that keeps
   every byte (and the length past the last one written). */
static void test_memory(void **state)
{
    (void)state;
    dfs_mount_spool *sp = NULL;
    char *err = NULL;
    assert_int_equal(dfs_mount_spool_create(tmp(), 1 << 30, 0, &sp, NULL), DFS_OK);
    dfs_mount_mem *m = NULL;
    assert_int_equal(dfs_mount_spool_mem_open(sp, &m, &err), DFS_ENOSPC);
    assert_non_null(strstr(err, "no files in memory"));
    free(err);
    err = NULL;
    dfs_mount_spool_set_memory(sp, 3 << 20);
    assert_int_equal(dfs_mount_spool_mem_open(sp, &m, NULL), DFS_OK);
    assert_true(dfs_mount_mem_cap(m) >= 3u << 20);
    assert_int_equal(dfs_mount_mem_size(m), 0);
    assert_true(dfs_mount_spool_mem_take(sp, 2 << 20));
    assert_false(dfs_mount_spool_mem_take(sp, (1 << 20) + 1)); /* nothing taken */
    assert_int_equal(dfs_mount_spool_mem_used(sp), 2 << 20);
    assert_true(dfs_mount_spool_mem_take(sp, 1 << 20));
    dfs_mount_spool_mem_give(sp, 1 << 20);
    assert_int_equal(dfs_mount_spool_mem_used(sp), 2 << 20);

    /* 2 MiB + 5 bytes of a pattern, then a hole to 3 MiB */
    size_t n = (2u << 20) + 5;
    uint8_t *b = malloc(n);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(i * 7 + i / 4096 + 1);
    memcpy(dfs_mount_mem_write_at(m, 0, n), b, n);
    dfs_mount_mem_wrote(m, 0, n);
    assert_int_equal(dfs_mount_mem_size(m), n);
    uint64_t size = 3u << 20;
    dfs_mount_mem_resize(m, size);
    int disk = -1;
    assert_int_equal(dfs_mount_spool_spill(sp, dfs_mount_mem_data(m), size, &disk, NULL), DFS_OK);
    struct stat st;
    assert_int_equal(fstat(disk, &st), 0);
    assert_int_equal(st.st_size, (off_t)size);
    assert_int_equal(st.st_nlink, 0); /* a spool file like any */
    uint8_t *got = malloc(size);
    assert_non_null(got);
    assert_int_equal(pread(disk, got, size, 0), (ssize_t)size);
    assert_memory_equal(got, b, n);
    for (size_t i = n; i < size; i++)
        assert_int_equal(got[i], 0);
    close(disk);
    dfs_mount_spool_mem_give(sp, 10u << 20); /* never below 0 */
    assert_int_equal(dfs_mount_spool_mem_used(sp), 0);
    free(got);
    free(b);
    dfs_mount_spool_mem_close(sp, m);
    dfs_mount_spool_destroy(sp);
}

/* A memory file closed is kept for the next one (its pages reused), within the memory limit, and
   the next file never reads the last one's bytes: holes and sizes grown read as zeros. */
static void test_memory_reuse(void **state)
{
    (void)state;
    dfs_mount_spool *sp = NULL;
    assert_int_equal(dfs_mount_spool_create(tmp(), 1 << 30, 0, &sp, NULL), DFS_OK);
    dfs_mount_spool_set_memory(sp, 3 << 20);
    dfs_mount_mem *m = NULL, *m2 = NULL;
    assert_int_equal(dfs_mount_spool_mem_open(sp, &m, NULL), DFS_OK);
    size_t n = 3u << 20;
    memset(dfs_mount_mem_write_at(m, 0, n), 0xab, n);
    dfs_mount_mem_wrote(m, 0, n);
    uint8_t *data = dfs_mount_mem_data(m);
    dfs_mount_spool_mem_close(sp, m);
    unsigned files = 0;
    uint64_t bytes = 0;
    dfs_mount_spool_mem_kept(sp, &files, &bytes);
    assert_int_equal(files, 1);
    assert_int_equal(bytes, n);

    /* the same mapping again, empty */
    assert_int_equal(dfs_mount_spool_mem_open(sp, &m, NULL), DFS_OK);
    assert_ptr_equal(dfs_mount_mem_data(m), data);
    assert_int_equal(dfs_mount_mem_size(m), 0);
    dfs_mount_spool_mem_kept(sp, &files, &bytes);
    assert_int_equal(files, 0);
    assert_int_equal(bytes, 0);
    /* a write past the end: the hole before it is zeros, not the last file's bytes */
    memcpy(dfs_mount_mem_write_at(m, 100, 10), "0123456789", 10);
    dfs_mount_mem_wrote(m, 100, 10);
    assert_int_equal(dfs_mount_mem_size(m), 110);
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(data[i], 0);
    assert_memory_equal(data + 100, "0123456789", 10);
    /* truncated, then grown: zeros past the cut */
    dfs_mount_mem_resize(m, 105);
    dfs_mount_mem_resize(m, 1u << 20);
    assert_memory_equal(data + 100, "01234", 5);
    for (size_t i = 105; i < (1u << 20); i++)
        assert_int_equal(data[i], 0);
    /* grown far past what was written: zeros, the last file's bytes gone */
    dfs_mount_mem_resize(m, 0);
    dfs_mount_mem_resize(m, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(data[i], 0);

    /* a second file while the first is open is a mapping of its own; closed, both are kept only
       while their pages fit in the memory limit together */
    assert_int_equal(dfs_mount_spool_mem_open(sp, &m2, NULL), DFS_OK);
    assert_ptr_not_equal(dfs_mount_mem_data(m2), data);
    memset(dfs_mount_mem_write_at(m2, 0, 4096), 1, 4096);
    dfs_mount_mem_wrote(m2, 0, 4096);
    dfs_mount_spool_mem_close(sp, m2);
    dfs_mount_spool_mem_close(sp, m); /* 3 MiB more would pass 3 MiB: unmapped */
    dfs_mount_spool_mem_kept(sp, &files, &bytes);
    assert_int_equal(files, 1);
    assert_int_equal(bytes, 4096);
    dfs_mount_spool_destroy(sp); /* unmaps what is kept */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_memory_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
