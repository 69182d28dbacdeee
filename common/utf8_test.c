/* Tests of UTF-8 well-formedness. */
#include "common/utf8.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static bool ok(const char *s)
{
    return dfs_utf8_valid(s, strlen(s), NULL);
}

static void test_well_formed(void **state)
{
    (void)state;
    assert_true(ok(""));
    assert_true(ok("plain ascii /a/b"));
    assert_true(ok("\xc3\xbc"
                   "n\xc3\xaf"
                   "code"));                      /* ü ï */
    assert_true(ok("\xe2\x82\xac"));              /* U+20AC */
    assert_true(ok("\xed\x9f\xbf"));              /* U+D7FF, just below the surrogates */
    assert_true(ok("\xee\x80\x80"));              /* U+E000, just above */
    assert_true(ok("\xf0\x9f\x98\x80"));          /* U+1F600 */
    assert_true(ok("\xf4\x8f\xbf\xbf"));          /* U+10FFFF */
    assert_true(dfs_utf8_valid("a\0b", 3, NULL)); /* NUL is a character */
}

static void test_ill_formed(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t at;
    } cases[] = {
        {"\x80", 0},             /* lone continuation */
        {"ab\xbf", 2},           /* lone continuation later */
        {"\xc0\xaf", 0},         /* overlong '/' */
        {"\xc1\xbf", 0},         /* overlong */
        {"\xe0\x80\xaf", 0},     /* overlong '/' in 3 bytes */
        {"\xf0\x80\x80\xaf", 0}, /* overlong '/' in 4 bytes */
        {"\xed\xa0\x80", 0},     /* U+D800, a surrogate */
        {"\xf4\x90\x80\x80", 0}, /* U+110000 */
        {"\xf5\x80\x80\x80", 0}, /* lead byte above F4 */
        {"\xff", 0},             /* never in UTF-8 */
        {"x\xc3", 1},            /* truncated at the end */
        {"x\xe2\x82", 1},        /* truncated at the end */
        {"\xe2\x28\xa1", 0},     /* bad second byte */
        {"\xf0\x9f\x98\x28", 0}, /* bad fourth byte */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t at = 999;
        assert_false(dfs_utf8_valid(cases[i].s, strlen(cases[i].s), &at));
        assert_int_equal(at, cases[i].at);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_well_formed),
        cmocka_unit_test(test_ill_formed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
