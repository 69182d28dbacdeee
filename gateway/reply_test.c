/* Tests for the error answers: statuses and JSON escaping. */
#include "gateway/reply.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void statuses(void **state)
{
    (void)state;
    assert_int_equal(dfs_gw_http_status(DFS_EINVAL), 400);
    assert_int_equal(dfs_gw_http_status(DFS_ENOTFOUND), 404);
    assert_int_equal(dfs_gw_http_status(DFS_EEXIST), 409);
    assert_int_equal(dfs_gw_http_status(DFS_ERANGE), 416);
    assert_int_equal(dfs_gw_http_status(DFS_EUNAVAIL), 503);
    assert_int_equal(dfs_gw_http_status(DFS_ETIMEDOUT), 503);
    assert_int_equal(dfs_gw_http_status(DFS_EPRECOND), 503);
    assert_int_equal(dfs_gw_http_status(DFS_EDATALOSS), 500);
    assert_int_equal(dfs_gw_http_status(DFS_EIO), 500);
    assert_int_equal(dfs_gw_http_status(DFS_ENOSPC), 507);
    assert_int_equal(dfs_gw_http_status(-999), 500);
}

static void check(const char *msg, const char *want)
{
    size_t len = 0;
    char *body = dfs_gw_error_json(404, msg, &len);
    assert_non_null(body);
    assert_string_equal(body, want);
    assert_int_equal(len, strlen(want));
    free(body);
}

static void error_bodies_are_escaped(void **state)
{
    (void)state;
    check("no file /a", "{\"error\":\"no file /a\",\"code\":404}\n");
    check("say \"hi\" \\ now", "{\"error\":\"say \\\"hi\\\" \\\\ now\",\"code\":404}\n");
    check("tab\there\nline\x01", "{\"error\":\"tab\\there\\nline\\u0001\",\"code\":404}\n");
    check("caf\xc3\xa9", "{\"error\":\"caf\xc3\xa9\",\"code\":404}\n");
    /* Invalid UTF-8 becomes U+FFFD. */
    check("bad\xff", "{\"error\":\"bad\\ufffd\",\"code\":404}\n");
    check("</script>", "{\"error\":\"</script>\",\"code\":404}\n");
    check(NULL, "{\"error\":\"\",\"code\":404}\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(statuses),
        cmocka_unit_test(error_bodies_are_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
