/* Tests for the store request's query parameters. */
#include "gateway/putparams.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int parse(struct dfs_gw_put_query q, struct dfs_client_put_opts *o)
{
    memset(o, 0, sizeof *o);
    char *err = NULL;
    int rc = dfs_gw_put_params(&q, o, &err);
    if (rc != DFS_OK)
        assert_non_null(err);
    free(err);
    return rc;
}

static void defaults_when_absent(void **state)
{
    (void)state;
    struct dfs_client_put_opts o;
    assert_int_equal(parse((struct dfs_gw_put_query){0}, &o), DFS_OK);
    assert_int_equal(o.replicas, 0);
    assert_int_equal(o.fragments, 0);
    assert_int_equal(o.ec_data, 0);
    assert_int_equal(o.policy, 0);
    assert_false(o.overwrite);
}

static void replication_policy_overwrite(void **state)
{
    (void)state;
    struct dfs_client_put_opts o;
    struct dfs_gw_put_query q = {
        .replicas = "2", .fragments = "7", .policy = "min-copy", .overwrite = "true"};
    assert_int_equal(parse(q, &o), DFS_OK);
    assert_int_equal(o.replicas, 2);
    assert_int_equal(o.fragments, 7);
    assert_int_equal(o.policy, 2);
    assert_true(o.overwrite);
    assert_string_equal(dfs_gw_policy_name(o.policy), "min_copy");
    q = (struct dfs_gw_put_query){.overwrite = ""};
    assert_int_equal(parse(q, &o), DFS_OK);
    assert_true(o.overwrite);
    q = (struct dfs_gw_put_query){.overwrite = "0"};
    assert_int_equal(parse(q, &o), DFS_OK);
    assert_false(o.overwrite);
}

static void erasure_code(void **state)
{
    (void)state;
    struct dfs_client_put_opts o;
    assert_int_equal(parse((struct dfs_gw_put_query){.ec = "4+2"}, &o), DFS_OK);
    assert_int_equal(o.ec_data, 4);
    assert_int_equal(o.ec_parity, 2);
    /* '+' arrives as a space unless it was sent as %2B. */
    assert_int_equal(parse((struct dfs_gw_put_query){.ec = "10 4"}, &o), DFS_OK);
    assert_int_equal(o.ec_data, 10);
    assert_int_equal(o.ec_parity, 4);
}

static void bad_values(void **state)
{
    (void)state;
    struct dfs_client_put_opts o;
    struct dfs_gw_put_query bad[] = {
        {.replicas = "0"},
        {.replicas = "17"},
        {.replicas = "x"},
        {.replicas = "-1"},
        {.replicas = "2x"},
        {.fragments = "257"},
        {.ec = "4"},
        {.ec = "0+2"},
        {.ec = "30+3"},
        {.ec = "4+2+1"},
        {.ec = "-4+2"},
        {.ec = "4+-1"},         /* %u took "-1" as 4294967295 */
        {.ec = "4+4294967295"}, /* and 4 + 4294967295 wrapped to 3 <= 32 */
        {.ec = "4  2"},
        {.ec = "4+2", .replicas = "2"},
        {.policy = "nearest"},
        {.policy = ""},
        {.overwrite = "maybe"},
        {.policy = "random_random_random_random_random"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(parse(bad[i], &o), DFS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_when_absent),
        cmocka_unit_test(replication_policy_overwrite),
        cmocka_unit_test(erasure_code),
        cmocka_unit_test(bad_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
