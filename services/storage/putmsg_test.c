/* Tests of PutFragment's in-place message parser. */
#include "services/storage/putmsg.h"

#include "common/err.h"

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
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

/* b[0..n) as a byte buffer of slices of `piece` bytes (the last shorter). */
static grpc_byte_buffer *pieces(const uint8_t *b, size_t n, size_t piece)
{
    grpc_slice s[64];
    size_t k = 0;
    for (size_t at = 0; at < n; at += piece)
        s[k++] =
            grpc_slice_from_copied_buffer((const char *)b + at, n - at < piece ? n - at : piece);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(s, k);
    for (size_t i = 0; i < k; i++)
        grpc_slice_unref(s[i]);
    return bb;
}

static int parse_slices(const uint8_t *b, size_t n, size_t piece, struct dfs_put_msg_iov *m,
                        uint32_t *crcs, bool *in_place, char **msg)
{
    grpc_byte_buffer *bb = pieces(b, n, piece);
    int rc = dfs_put_msg_parse_slices(bb, m, crcs, CAP, in_place, msg);
    /* The iovecs point into bb: check them before it goes. */
    if (rc == DFS_OK && *in_place) {
        uint8_t got[64];
        size_t at = 0;
        for (size_t i = 0; i < m->niov; i++) {
            memcpy(got + at, m->iov[i].iov_base, m->iov[i].iov_len);
            at += m->iov[i].iov_len;
        }
        assert_int_equal(at, m->len);
        assert_memory_equal(got, "abcdefghij", m->len);
    }
    grpc_byte_buffer_destroy(bb);
    return rc;
}

/* A data message in slices of every size: the same fields as the flat parser finds. */
static void test_slices(void **state)
{
    (void)state;
    /* data "abcdefghij", crcs packed [1, 2], an unknown varint field 9, one unpacked crc 3. */
    static const uint8_t b[] = {0x12, 0x0a, 'a',  'b',  'c',  'd',  'e', 'f', 'g', 'h',
                                'i',  'j',  0x1a, 0x08, 1,    0,    0,   0,   2,   0,
                                0,    0,    0x48, 0x96, 0x01, 0x1d, 3,   0,   0,   0};
    for (size_t piece = 1; piece <= sizeof b; piece++) {
        struct dfs_put_msg_iov m;
        uint32_t crcs[CAP];
        bool in_place = false;
        assert_int_equal(parse_slices(b, sizeof b, piece, &m, crcs, &in_place, NULL), DFS_OK);
        assert_true(in_place);
        assert_int_equal(m.len, 10);
        assert_int_equal(m.ncrcs, 3);
        assert_int_equal(crcs[0], 1);
        assert_int_equal(crcs[1], 2);
        assert_int_equal(crcs[2], 3);
    }
    /* A header: the flat path's (in_place false, nothing refused). */
    static const uint8_t h[] = {0x0a, 0x02, 0x0a, 0x00, 0x12, 0x01, 'a'};
    struct dfs_put_msg_iov m;
    uint32_t crcs[CAP];
    bool in_place = true;
    assert_int_equal(parse_slices(h, sizeof h, 3, &m, crcs, &in_place, NULL), DFS_OK);
    assert_false(in_place);
    /* Malformed (data longer than the message; a known field with the wrong wire type; a group),
       and more CRCs than the caller holds: refused as by the flat parser. */
    static const uint8_t bad1[] = {0x12, 0x09, 'a', 'b'};
    static const uint8_t bad2[] = {0x10, 0x01};
    static const uint8_t bad3[] = {0x1b};
    static const uint8_t many[] = {0x1a, 0x14, 1, 0, 0, 0, 2, 0, 0, 0, 3,
                                   0,    0,    0, 4, 0, 0, 0, 5, 0, 0, 0};
    const struct {
        const uint8_t *b;
        size_t n;
        const char *want;
    } cases[] = {{bad1, sizeof bad1, "does not parse"},
                 {bad2, sizeof bad2, "does not parse"},
                 {bad3, sizeof bad3, "does not parse"},
                 {many, sizeof many, "more than 4 crcs"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *msg = NULL;
        assert_int_equal(parse_slices(cases[i].b, cases[i].n, 2, &m, crcs, &in_place, &msg),
                         DFS_EINVAL);
        if (strstr(msg, cases[i].want) == NULL)
            fail_msg("\"%s\" does not say \"%s\"", msg, cases[i].want);
        free(msg);
    }
    /* Compressed or not raw: not this path. */
    in_place = true;
    assert_int_equal(dfs_put_msg_parse_slices(NULL, &m, crcs, CAP, &in_place, NULL), DFS_OK);
    assert_false(in_place);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_slices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
