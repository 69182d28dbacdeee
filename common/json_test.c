/* Tests of the JSON writer. */
#include "common/json.h"

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

/* What is not UTF-8 by the standard's table becomes U+FFFD, byte by byte: overlong forms,
   surrogates, code points above U+10FFFF (found by fuzz/http: these used to be copied raw). */
static void test_ill_formed_utf8_is_replaced(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"\xe0\x84\x84", "\"\\ufffd\\ufffd\\ufffd\""},            /* U+0104 in three bytes */
        {"\xc0\xaf", "\"\\ufffd\\ufffd\""},                       /* '/' in two bytes */
        {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""},            /* U+D800 */
        {"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* U+110000 */
        {"a\xe2\x82", "\"a\\ufffd\\ufffd\""},                     /* cut short */
        {"\xe2\x82\xac", "\"\xe2\x82\xac\""},                     /* U+20AC, as it is */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        dfs_json j;
        dfs_json_init(&j, f);
        dfs_json_string(&j, cases[i].in);
        fclose(f);
        assert_string_equal(buf, cases[i].want);
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nesting_commas_and_escapes),
        cmocka_unit_test(test_ill_formed_utf8_is_replaced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
