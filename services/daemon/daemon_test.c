/* Tests of the daemon helpers. */
#include "services/daemon/daemon.h"

#include "common/err.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

static void test_advertise(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(dfs_daemon_advertise("127.0.0.1:0", 4012, out, sizeof out, NULL), DFS_OK);
    assert_string_equal(out, "127.0.0.1:4012");
    assert_int_equal(dfs_daemon_advertise("[::1]:0", 7, out, sizeof out, NULL), DFS_OK);
    assert_string_equal(out, "[::1]:7");
    assert_int_equal(dfs_daemon_advertise("localhost:9000", 9000, out, sizeof out, NULL), DFS_OK);
    assert_string_equal(out, "localhost:9000");
    char *err = NULL;
    assert_int_equal(dfs_daemon_advertise("0.0.0.0:7000", 7000, out, sizeof out, &err), DFS_EINVAL);
    assert_non_null(strstr(err, "--advertise"));
    free(err);
    assert_int_equal(dfs_daemon_advertise("[::]:7000", 7000, out, sizeof out, NULL), DFS_EINVAL);
    assert_int_equal(dfs_daemon_advertise("noport", 1, out, sizeof out, NULL), DFS_EINVAL);
}

static void test_write_file_is_atomic_and_whole(void **state)
{
    (void)state;
    char dir[] = "/tmp/dfs_daemon_testXXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/ready", dir);
    assert_int_equal(dfs_daemon_write_file(path, "127.0.0.1:5\n", NULL), DFS_OK);
    FILE *f = fopen(path, "r");
    char buf[64] = {0};
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    assert_string_equal(buf, "127.0.0.1:5\n");
    unlink(path);
    rmdir(dir);
    char *err = NULL;
    assert_int_equal(dfs_daemon_write_file("/nonexistent-dir/x", "a", &err), DFS_EIO);
    assert_non_null(strstr(err, "/nonexistent-dir/x"));
    free(err);
}

/* A FIFO or a device named as the file is written to, never replaced by a regular file. */
static void test_write_file_to_fifo_and_device(void **state)
{
    (void)state;
    const char *base = getenv("TEST_TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/dfs_daemon_testXXXXXX",
             base != NULL && base[0] != '\0' ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
    char path[600];
    snprintf(path, sizeof path, "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    int rd = open(path, O_RDONLY | O_NONBLOCK); /* a reader, so the writer's open does not wait */
    assert_true(rd >= 0);
    assert_int_equal(dfs_daemon_write_file(path, "127.0.0.1:6\n", NULL), DFS_OK);
    char buf[64] = {0};
    assert_int_equal(read(rd, buf, sizeof buf - 1), 12);
    assert_string_equal(buf, "127.0.0.1:6\n");
    close(rd);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    unlink(path);

    /* A null device of our own (never the real /dev/null); mknod needs privileges. */
    snprintf(path, sizeof path, "%s/null", dir);
    if (mknod(path, S_IFCHR | 0666, makedev(1, 3)) == 0) {
        assert_int_equal(dfs_daemon_write_file(path, "x\n", NULL), DFS_OK);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
        unlink(path);
    } else {
        print_message("mknod not permitted here: the device case is skipped\n");
    }

    char *err = NULL;
    assert_int_equal(dfs_daemon_write_file(dir, "x", &err), DFS_EINVAL);
    assert_non_null(strstr(err, "directory"));
    free(err);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_advertise),
        cmocka_unit_test(test_write_file_is_atomic_and_whole),
        cmocka_unit_test(test_write_file_to_fifo_and_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
