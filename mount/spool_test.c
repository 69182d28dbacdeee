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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
