/* Tests of the JSON writer. */
#include "cli/json.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_nesting_commas_and_escapes(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    dfs_json j;
    dfs_json_init(&j, f);
    dfs_json_begin_object(&j);
    dfs_json_key(&j, "path");
    dfs_json_string(&j, "/a \"b\"\n\x01\xff");
    dfs_json_key(&j, "n");
    dfs_json_uint(&j, 18446744073709551615ull);
    dfs_json_key(&j, "list");
    dfs_json_begin_array(&j);
    dfs_json_int(&j, -1);
    dfs_json_begin_object(&j);
    dfs_json_end_object(&j);
    dfs_json_bool(&j, true);
    dfs_json_null(&j);
    dfs_json_double(&j, 0.5);
    dfs_json_end_array(&j);
    dfs_json_key(&j, "u");
    dfs_json_string(&j, "ünï");
    dfs_json_end_object(&j);
    dfs_json_finish(&j);
    fclose(f);
    assert_string_equal(buf,
                        "{\"path\":\"/a \\\"b\\\"\\n\\u0001\\ufffd\",\"n\":18446744073709551615,"
                        "\"list\":[-1,{},true,null,0.5],\"u\":\"ünï\"}\n");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nesting_commas_and_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
