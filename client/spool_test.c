/* Tests of spooling standard input: pipes are copied, files are not, space is respected. */
#include "client/spool.h"

#include "common/err.h"

#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cmocka.h>

struct fx {
    char dir[256];
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    const char *base = getenv("TEST_TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/spoolXXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    rmdir(fx->dir); /* fails, and so the test, if a spool file was left behind */
    free(fx);
    return 0;
}

/* A writer thread feeding a pipe n pseudo-random bytes. */
struct feed {
    int fd;
    size_t n;
};

static unsigned char byte_at(size_t i)
{
    return (unsigned char)((i * 2654435761u) >> 13);
}

static void *feed_main(void *arg)
{
    struct feed *f = arg;
    unsigned char buf[4096];
    size_t sent = 0;
    while (sent < f->n) {
        size_t k = f->n - sent < sizeof buf ? f->n - sent : sizeof buf;
        for (size_t i = 0; i < k; i++)
            buf[i] = byte_at(sent + i);
        ssize_t w = write(f->fd, buf, k);
        if (w <= 0)
            break;
        sent += (size_t)w;
    }
    close(f->fd);
    return NULL;
}

static void test_pipe_is_copied_whole(void **state)
{
    struct fx *fx = *state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct feed f = {.fd = p[1], .n = (3u << 20) + 12345};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, feed_main, &f), 0);
    int fd = -1;
    uint64_t size = 0;
    char *err = NULL;
    assert_int_equal(dfs_spool(p[0], fx->dir, 4096, NULL, &fd, &size, &err), DFS_OK);
    pthread_join(t, NULL);
    close(p[0]);
    assert_int_equal(size, f.n);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, (off_t)f.n);
    assert_int_equal(st.st_nlink, 0); /* nothing named in the directory */
    unsigned char buf[4096];
    for (size_t off = 0; off < f.n; off += sizeof buf) {
        ssize_t r = pread(fd, buf, sizeof buf, (off_t)off);
        assert_true(r > 0);
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != byte_at(off + (size_t)i))
                fail_msg("byte %zu differs", off + (size_t)i);
    }
    close(fd);
}

static void test_empty_input(void **state)
{
    struct fx *fx = *state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    int fd = -1;
    uint64_t size = 99;
    assert_int_equal(dfs_spool(p[0], fx->dir, 4096, NULL, &fd, &size, NULL), DFS_OK);
    assert_int_equal(size, 0);
    close(fd);
    close(p[0]);
}

static void test_regular_file_is_used_as_it_is(void **state)
{
    struct fx *fx = *state;
    char path[300];
    snprintf(path, sizeof path, "%s/in", fx->dir);
    int in = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_int_equal(write(in, "hello", 5), 5);
    assert_int_equal(lseek(in, 0, SEEK_SET), 0);
    int fd = -1;
    uint64_t size = 0;
    assert_int_equal(dfs_spool(in, fx->dir, 4096, NULL, &fd, &size, NULL), DFS_OK);
    assert_int_equal(size, 5);
    struct stat a, b;
    fstat(in, &a);
    fstat(fd, &b);
    assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev); /* the same file, not a copy */
    close(fd);
    /* Read part-way already: what is left is standard input, so it is copied. */
    assert_int_equal(lseek(in, 2, SEEK_SET), 2);
    assert_int_equal(dfs_spool(in, fx->dir, 4096, NULL, &fd, &size, NULL), DFS_OK);
    assert_int_equal(size, 3);
    char got[4] = "";
    assert_int_equal(pread(fd, got, 3, 0), 3);
    assert_memory_equal(got, "llo", 3);
    close(fd);
    close(in);
    unlink(path);
}

static void test_input_larger_than_the_free_space(void **state)
{
    struct fx *fx = *state;
    struct statvfs vfs;
    assert_int_equal(statvfs(fx->dir, &vfs), 0);
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    /* A reserve above what is free: not one byte may be spooled, whatever others write. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct feed f = {.fd = p[1], .n = 8u << 20};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, feed_main, &f), 0);
    int fd = -1;
    uint64_t size = 0;
    char *err = NULL;
    assert_int_equal(dfs_spool(p[0], fx->dir, avail + (1ull << 30), NULL, &fd, &size, &err),
                     DFS_ENOSPC);
    close(p[0]); /* the feeder's next write fails: it ends */
    pthread_join(t, NULL);
    assert_non_null(strstr(err, "standard input is larger than the space free in"));
    assert_non_null(strstr(err, "TMPDIR"));
    free(err);
}

static void test_missing_dir(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    int fd = -1;
    uint64_t size = 0;
    char *err = NULL;
    assert_int_equal(dfs_spool(p[0], "/nonexistent/dir", 0, NULL, &fd, &size, &err), DFS_EIO);
    assert_non_null(strstr(err, "cannot make a temporary file in /nonexistent/dir"));
    free(err);
    close(p[0]);
}

static void test_interrupted(void **state)
{
    struct fx *fx = *state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    volatile sig_atomic_t stop = 1;
    int fd = -1;
    uint64_t size = 0;
    assert_int_equal(dfs_spool(p[0], fx->dir, 4096, &stop, &fd, &size, NULL), DFS_ECANCELED);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the feeders write into pipes the tests close */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pipe_is_copied_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_regular_file_is_used_as_it_is, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input_larger_than_the_free_space, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
