/* Tests of PutFragment's in-place message parser. */
#include "services/storage/putmsg.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define CAP 4

static int parse(const uint8_t *p, size_t n, struct dfs_put_msg *m, uint32_t *crcs, char **msg)
{
    return dfs_put_msg_parse(p, n, m, crcs, CAP, msg);
}

static void test_fields(void **state)
{
    (void)state;
    /* header {1: "id"}, data "abc", crcs packed [1, 2], then one unpacked crc 3, and an unknown
       varint field 9 (skipped). */
    static const uint8_t b[] = {0x0a, 0x04, 0x0a, 0x02, 'i', 'd', 0x12, 0x03, 'a', 'b',
                                'c',  0x1a, 0x08, 1,    0,   0,   0,    2,    0,   0,
                                0,    0x1d, 3,    0,    0,   0,   0x48, 0x96, 0x01};
    struct dfs_put_msg m;
    uint32_t crcs[CAP];
    assert_int_equal(parse(b, sizeof b, &m, crcs, NULL), DFS_OK);
    assert_true(m.has_header);
    assert_ptr_equal(m.header_field, b);
    assert_ptr_equal(m.header, b + 2);
    assert_int_equal(m.header_len, 4);
    assert_ptr_equal(m.data, b + 8);
    assert_int_equal(m.len, 3);
    assert_int_equal(m.ncrcs, 3);
    assert_int_equal(crcs[0], 1);
    assert_int_equal(crcs[1], 2);
    assert_int_equal(crcs[2], 3);

    /* Nothing at all: a valid, empty message (the pointer may be NULL). */
    assert_int_equal(parse(NULL, 0, &m, crcs, NULL), DFS_OK);
    assert_false(m.has_header);
    assert_int_equal(m.len, 0);
}

static void expect_bad(const uint8_t *b, size_t n, const char *want)
{
    struct dfs_put_msg m;
    uint32_t crcs[CAP];
    char *msg = NULL;
    assert_int_equal(parse(b, n, &m, crcs, &msg), DFS_EINVAL);
    assert_non_null(msg);
    if (strstr(msg, want) == NULL)
        fail_msg("\"%s\" does not say \"%s\"", msg, want);
    free(msg);
}

static void test_malformed(void **state)
{
    (void)state;
    static const uint8_t truncated_len[] = {0x12, 0x05, 'a'};
    expect_bad(truncated_len, sizeof truncated_len, "does not parse");
    static const uint8_t data_as_varint[] = {0x10, 0x01};
    expect_bad(data_as_varint, sizeof data_as_varint, "does not parse");
    static const uint8_t packed_not_4[] = {0x1a, 0x03, 1, 2, 3};
    expect_bad(packed_not_4, sizeof packed_not_4, "does not parse");
    static const uint8_t group[] = {0x0b};
    expect_bad(group, sizeof group, "does not parse");
    static const uint8_t field0[] = {0x02, 0x00};
    expect_bad(field0, sizeof field0, "does not parse");
    static const uint8_t short_fixed32[] = {0x1d, 1, 2};
    expect_bad(short_fixed32, sizeof short_fixed32, "does not parse");
    static const uint8_t endless_varint[] = {0x12, 0xff, 0xff, 0xff};
    expect_bad(endless_varint, sizeof endless_varint, "does not parse");
    static const uint8_t huge_field[] = {0xf8, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00};
    expect_bad(huge_field, sizeof huge_field, "does not parse");
    static const uint8_t two_headers[] = {0x0a, 0x00, 0x0a, 0x00};
    expect_bad(two_headers, sizeof two_headers, "header twice");
    static const uint8_t too_many[] = {0x1a, 0x14, 1, 0, 0, 0, 2, 0, 0, 0, 3,
                                       0,    0,    0, 4, 0, 0, 0, 5, 0, 0, 0};
    expect_bad(too_many, sizeof too_many, "more than 4 crcs");
    static const uint8_t too_many_unpacked[] = {
        0x1d, 1, 0, 0, 0, 0x1d, 1, 0, 0, 0, 0x1d, 1, 0, 0, 0, 0x1d, 1, 0, 0, 0, 0x1d, 1, 0, 0, 0};
    expect_bad(too_many_unpacked, sizeof too_many_unpacked, "more than 4 crcs");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
