/* Tests of exclusive locks: a second holder is refused, the lock goes with its descriptor. */
#include "common/exlock.h"

#include "common/err.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

struct fx {
    char dir[256];
    char file[300];
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    const char *base = getenv("TEST_TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/exlockXXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->file, sizeof fx->file, "%s/catalog.db", fx->dir);
    int fd = open(fx->file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    close(fd);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    unlink(fx->file);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static void test_second_holder_refused_until_the_first_closes(void **state)
{
    struct fx *fx = *state;
    int a = open(fx->file, O_RDONLY | O_CLOEXEC);
    int b = open(fx->file, O_RDONLY | O_CLOEXEC);
    assert_true(a >= 0 && b >= 0);
    char *msg = NULL;
    assert_int_equal(dfs_exlock(a, NULL, "catalog", "x", &msg), DFS_OK);
    assert_null(msg);
    /* Taking it again through the same description is fine (flock converts in place). */
    assert_int_equal(dfs_exlock(a, NULL, "catalog", "x", &msg), DFS_OK);
    assert_int_equal(dfs_exlock(b, NULL, "catalog", "x", &msg), DFS_EPRECOND);
    assert_string_equal(msg, "catalog x is in use by another process");
    free(msg);
    msg = NULL;

    /* Another process is refused too. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int c = open(fx->file, O_RDONLY | O_CLOEXEC);
        _exit(dfs_exlock(c, NULL, "catalog", "x", NULL) == DFS_EPRECOND ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    close(a); /* releases it */
    assert_int_equal(dfs_exlock(b, NULL, "catalog", "x", &msg), DFS_OK);
    close(b);
}

static void test_directories_lock_too(void **state)
{
    struct fx *fx = *state;
    int a = open(fx->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int b = open(fx->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_int_equal(dfs_exlock(a, NULL, "data dir", "d", NULL), DFS_OK);
    assert_int_equal(dfs_exlock(b, NULL, "data dir", "d", NULL), DFS_EPRECOND);
    close(a);
    close(b);
}

/* A file system without flock. */
static int no_locks(int fd, int op)
{
    (void)fd;
    (void)op;
    errno = ENOLCK;
    return -1;
}

static void test_other_failures_are_io_errors(void **state)
{
    (void)state;
    char *msg = NULL;
    assert_int_equal(dfs_exlock(3, no_locks, "data dir", "d", &msg), DFS_EIO);
    assert_non_null(strstr(msg, "cannot lock data dir d"));
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_second_holder_refused_until_the_first_closes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_directories_lock_too, setup, teardown),
        cmocka_unit_test(test_other_failures_are_io_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
