/* Tests of the structured logger: what reaches stderr, and what does not. */
#include "common/log.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* Run fn with stderr sent to a temporary file; return what it wrote (caller frees). */
static char *capture(void (*fn)(void))
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    long n = ftell(tmp) >= 0 ? lseek(fileno(tmp), 0, SEEK_END) : 0;
    char *buf = calloc(1, (size_t)n + 1);
    assert_int_equal(pread(fileno(tmp), buf, (size_t)n, 0), n);
    fclose(tmp);
    return buf;
}

static void log_some(void)
{
    dfs_log(DFS_LOG_DEBUG, "hidden");
    dfs_log(DFS_LOG_INFO, "stored \"frag\"\nnext id=%s size=%d", "ab", 5);
    dfs_log_errno(DFS_LOG_ERROR, 2, "open failed path=%s", "/x");
}

static void test_lines_and_levels(void **state)
{
    (void)state;
    dfs_log_init("dfs-test", DFS_LOG_INFO);
    char *out = capture(log_some);
    assert_null(strstr(out, "hidden"));
    assert_non_null(
        strstr(out, "level=info prog=dfs-test msg=\"stored \\\"frag\\\"\\nnext\" id=ab size=5\n"));
    assert_non_null(strstr(out, "level=error prog=dfs-test msg=\"open failed\" path=/x errno=2 "
                                "err=\"No such file or directory\" at=log_test.c:"));
    assert_int_equal(strncmp(out, "ts=", 3), 0);
    free(out);
}

static void test_level_parse(void **state)
{
    (void)state;
    enum dfs_log_level l;
    assert_int_equal(dfs_log_level_parse("debug", &l), DFS_OK);
    assert_int_equal(l, DFS_LOG_DEBUG);
    assert_int_equal(dfs_log_level_parse("warning", &l), DFS_OK);
    assert_int_equal(l, DFS_LOG_WARN);
    assert_int_equal(dfs_log_level_parse("loud", &l), DFS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_and_levels),
        cmocka_unit_test(test_level_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
