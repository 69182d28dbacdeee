/* Tests of host:port checks, splitting and joining. */
#include "common/addr.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_valid(void **state)
{
    (void)state;
    assert_true(dfs_addr_valid("127.0.0.1:7000", 255));
    assert_true(dfs_addr_valid("node-1.example:65535", 255));
    assert_true(dfs_addr_valid("[::1]:1", 255));
    assert_true(dfs_addr_valid("a:1", 3));
    assert_false(dfs_addr_valid("a:1", 2)); /* longer than max_len */
    assert_false(dfs_addr_valid("", 255));
    assert_false(dfs_addr_valid("host", 255));   /* no port */
    assert_false(dfs_addr_valid(":7000", 255));  /* no host */
    assert_false(dfs_addr_valid("host:", 255));  /* empty port */
    assert_false(dfs_addr_valid("host:0", 255)); /* port 0 names no peer */
    assert_false(dfs_addr_valid("host:65536", 255));
    assert_false(dfs_addr_valid("host:99999999999999999999", 255));
    assert_false(dfs_addr_valid("host:7a", 255));
    assert_false(dfs_addr_valid("host:+7", 255));
    assert_false(dfs_addr_valid("ho st:7", 255));       /* space */
    assert_false(dfs_addr_valid("host\t:7", 255));      /* control character */
    assert_false(dfs_addr_valid("h\xc3\xa9st:7", 255)); /* not ASCII */
}

static int split(const char *s, char *host, char *port, enum dfs_addr_fault *why)
{
    return dfs_addr_split(s, host, 64, port, 8, why);
}

static void test_split(void **state)
{
    (void)state;
    char host[64], port[8];
    enum dfs_addr_fault why = 0;
    assert_int_equal(split("127.0.0.1:9100", host, port, &why), DFS_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_string_equal(port, "9100");
    assert_int_equal(split("[::1]:0", host, port, &why), DFS_OK);
    assert_string_equal(host, "::1");
    assert_string_equal(port, "0");
    assert_int_equal(split(":8080", host, port, &why), DFS_OK);
    assert_string_equal(host, "");
    assert_string_equal(port, "8080");
    assert_int_equal(split("localhost:65535", host, port, NULL), DFS_OK);

    struct {
        const char *s;
        enum dfs_addr_fault why;
    } bad[] = {
        {"localhost", DFS_ADDR_NO_PORT},       {"localhost:", DFS_ADDR_NO_PORT},
        {"::1:80", DFS_ADDR_UNBRACKETED},      {"[::1:80", DFS_ADDR_UNBRACKETED},
        {"host:123456789", DFS_ADDR_TOO_LONG}, {"host:x", DFS_ADDR_BAD_PORT},
        {"host:-1", DFS_ADDR_BAD_PORT},        {"host:65536", DFS_ADDR_BAD_PORT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = 0;
        assert_int_equal(split(bad[i].s, host, port, &why), DFS_EINVAL);
        assert_int_equal(why, bad[i].why);
        assert_int_equal(split(bad[i].s, host, port, NULL), DFS_EINVAL);
    }
    char small[4];
    assert_int_equal(dfs_addr_split("abcd:1", small, sizeof small, port, sizeof port, &why),
                     DFS_EINVAL);
    assert_int_equal(why, DFS_ADDR_TOO_LONG);
    assert_int_equal(dfs_addr_split("abc:1", small, sizeof small, port, sizeof port, &why), DFS_OK);
    assert_string_equal(small, "abc");
}

static void test_host(void **state)
{
    (void)state;
    char host[16];
    assert_int_equal(dfs_addr_host("localhost:7000", host, sizeof host), DFS_OK);
    assert_string_equal(host, "localhost");
    assert_int_equal(dfs_addr_host("127.0.0.1", host, sizeof host), DFS_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(dfs_addr_host("[::1]:7000", host, sizeof host), DFS_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(dfs_addr_host("[::1]", host, sizeof host), DFS_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(dfs_addr_host("[::1", host, sizeof host), DFS_EINVAL);
    assert_int_equal(dfs_addr_host("[]:7000", host, sizeof host), DFS_EINVAL);
    assert_int_equal(dfs_addr_host(":7000", host, sizeof host), DFS_EINVAL);
    assert_int_equal(dfs_addr_host("", host, sizeof host), DFS_EINVAL);
    assert_int_equal(dfs_addr_host("0123456789abcdef:1", host, sizeof host), DFS_EINVAL);
    assert_int_equal(dfs_addr_host("0123456789abcde:1", host, sizeof host), DFS_OK);
}

static void test_with_port(void **state)
{
    (void)state;
    char out[32];
    assert_int_equal(dfs_addr_host_len("host:1"), 4);
    assert_int_equal(dfs_addr_host_len(":1"), 0);
    assert_int_equal(dfs_addr_host_len("[::1]:0"), 5);
    assert_int_equal(dfs_addr_host_len("host"), -1);
    assert_int_equal(dfs_addr_with_port("[::1]:0", 4242, out, sizeof out), DFS_OK);
    assert_string_equal(out, "[::1]:4242");
    assert_int_equal(dfs_addr_with_port("127.0.0.1:0", 9100, out, sizeof out), DFS_OK);
    assert_string_equal(out, "127.0.0.1:9100");
    assert_int_equal(dfs_addr_with_port(":0", 80, out, sizeof out), DFS_OK);
    assert_string_equal(out, ":80");
    assert_int_equal(dfs_addr_with_port("host", 80, out, sizeof out), DFS_EINVAL);
    assert_string_equal(out, "");
    char small[8];
    assert_int_equal(dfs_addr_with_port("localhost:0", 80, small, sizeof small), DFS_ENOSPC);
    assert_string_equal(small, "localho");
}

static void test_list_split(void **state)
{
    (void)state;
    char **v = NULL;
    size_t n = 0;
    char *err = NULL;
    assert_int_equal(dfs_addr_list_split("127.0.0.1:7000", &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0], "127.0.0.1:7000");
    assert_null(v[1]);
    dfs_addr_list_free(v);
    assert_int_equal(dfs_addr_list_split("a:1, [::1]:2 ,dns:///c.example:3", &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(v[0], "a:1");
    assert_string_equal(v[1], "[::1]:2");
    assert_string_equal(v[2], "dns:///c.example:3");
    assert_null(v[3]);
    dfs_addr_list_free(v);
    v = NULL;
    assert_int_equal(dfs_addr_list_split("a:1,,b:2", &v, &n, &err), DFS_EINVAL);
    assert_null(v);
    assert_string_equal(err, "empty address in the list 'a:1,,b:2' (HOST:PORT[,HOST:PORT...])");
    free(err);
    err = NULL;
    assert_int_equal(dfs_addr_list_split("a:1,", &v, &n, NULL), DFS_EINVAL);
    assert_int_equal(dfs_addr_list_split(",a:1", &v, &n, NULL), DFS_EINVAL);
    assert_int_equal(dfs_addr_list_split("", &v, &n, &err), DFS_EINVAL);
    assert_string_equal(err, "empty address");
    free(err);
    assert_int_equal(dfs_addr_list_split("  ", &v, &n, NULL), DFS_EINVAL);
    assert_null(v);
    dfs_addr_list_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),      cmocka_unit_test(test_split),
        cmocka_unit_test(test_host),       cmocka_unit_test(test_with_port),
        cmocka_unit_test(test_list_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
