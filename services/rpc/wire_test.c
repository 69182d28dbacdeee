/* Tests of the zero-copy wire reader against protobuf-c's own encoder. */
#include "services/rpc/wire.h"

#include "common/crc32c.h"
#include "dfs/v1/storage.pb-c.h"

#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Pack msg and cut it into slices at the given cut points. */
static grpc_byte_buffer *sliced(const ProtobufCMessage *msg, const size_t *cuts, size_t ncuts)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len);
    protobuf_c_message_pack(msg, buf);
    grpc_slice s[16];
    size_t n = 0, prev = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        if (end > len)
            end = len;
        s[n++] = grpc_slice_from_copied_buffer((const char *)buf + prev, end - prev);
        prev = end;
    }
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(s, n);
    for (size_t i = 0; i < n; i++)
        grpc_slice_unref(s[i]);
    free(buf);
    return bb;
}

static void check_parse(const size_t *cuts, size_t ncuts)
{
    size_t len = 3 * DFS_BLOCK_SIZE + 17;
    uint8_t *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 13 + (i >> 9));
    uint32_t crcs[4];
    dfs_crc32c_blocks(data, len, crcs);
    Dfs__V1__FragmentHeader h = DFS__V1__FRAGMENT_HEADER__INIT;
    h.fragment_id = "0123456789abcdef0123456789abcdef00000001";
    h.size = 123456789;
    Dfs__V1__GetFragmentResponse m = DFS__V1__GET_FRAGMENT_RESPONSE__INIT;
    m.header = &h;
    m.checksum = 0xdeadbeef;
    m.data.data = data;
    m.data.len = len;
    m.crc32c = crcs;
    m.n_crc32c = 4;
    grpc_byte_buffer *bb = sliced(&m.base, cuts, ncuts);

    dfs_wire_reader r;
    assert_true(dfs_wire_init(&r, bb));
    struct iovec iov[16];
    size_t niov = 0;
    uint32_t got_crcs[8], checksum = 0;
    size_t ncrc = 0;
    uint64_t hsize = 0;
    while (!dfs_wire_eof(&r)) {
        uint32_t f, wt;
        assert_true(dfs_wire_tag(&r, &f, &wt));
        uint64_t l;
        if (f == 1) {
            assert_true(dfs_wire_varint(&r, &l));
            uint8_t hb[128];
            assert_true(dfs_wire_copy(&r, hb, l));
            Dfs__V1__FragmentHeader *hh = dfs__v1__fragment_header__unpack(NULL, l, hb);
            assert_non_null(hh);
            hsize = hh->size;
            assert_string_equal(hh->fragment_id, h.fragment_id);
            dfs__v1__fragment_header__free_unpacked(hh, NULL);
        } else if (f == 2) {
            assert_true(dfs_wire_varint(&r, &l));
            assert_true(dfs_wire_iov(&r, l, iov, 16, &niov));
        } else if (f == 3) {
            assert_true(dfs_wire_varint(&r, &l));
            for (size_t i = 0; i < l / 4; i++)
                assert_true(dfs_wire_fixed32(&r, &got_crcs[ncrc++]));
        } else if (f == 4) {
            assert_true(dfs_wire_fixed32(&r, &checksum));
        } else {
            assert_true(dfs_wire_skip(&r, wt));
        }
    }
    assert_int_equal(hsize, 123456789);
    assert_int_equal(checksum, 0xdeadbeef);
    assert_int_equal(ncrc, 4);
    assert_memory_equal(got_crcs, crcs, sizeof crcs);
    size_t total = 0;
    uint8_t *joined = malloc(len);
    for (size_t i = 0; i < niov; i++) {
        memcpy(joined + total, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
    }
    assert_int_equal(total, len);
    assert_memory_equal(joined, data, len);
    uint32_t again[8];
    assert_int_equal(dfs_wire_crc_blocks(iov, niov, DFS_BLOCK_SIZE, again), 4);
    assert_memory_equal(again, crcs, sizeof crcs);
    free(joined);
    grpc_byte_buffer_destroy(bb);
    free(data);
}

static void test_parses_across_any_slicing(void **state)
{
    (void)state;
    check_parse(NULL, 0);
    size_t a[] = {1, 2, 3, 50, 51, 60000, 65536, 131073, 196700};
    check_parse(a, sizeof a / sizeof a[0]);
    size_t b[] = {48, 49, 100, 200000};
    check_parse(b, sizeof b / sizeof b[0]);
}

static void test_truncated_and_malformed(void **state)
{
    (void)state;
    uint8_t bad[][6] = {
        {0x12, 0x05, 'a', 'b'},               /* bytes field longer than the message */
        {0x0b, 0, 0, 0, 0, 0},                /* wire type 3 (group) */
        {0x80, 0x80, 0x80, 0x80, 0x80, 0x80}, /* unterminated varint */
    };
    size_t lens[] = {4, 6, 6};
    for (size_t i = 0; i < 3; i++) {
        grpc_slice s = grpc_slice_from_copied_buffer((const char *)bad[i], lens[i]);
        grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        dfs_wire_reader r;
        assert_true(dfs_wire_init(&r, bb));
        bool ok = true;
        while (ok && !dfs_wire_eof(&r)) {
            uint32_t f, wt;
            ok = dfs_wire_tag(&r, &f, &wt) && dfs_wire_skip(&r, wt);
        }
        assert_false(ok);
        grpc_byte_buffer_destroy(bb);
    }
}

/* The writer against the reader and the format's size table: 7 bits a byte, lowest first. */
static void test_varint_writer(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        size_t len;
    } cases[] = {
        {0, 1},           {1, 1},           {127, 1},        {128, 2},
        {300, 2},         {16383, 2},       {16384, 3},      {(1u << 21) - 1, 3},
        {1u << 21, 4},    {UINT32_MAX, 5},  {1ull << 35, 6}, {1ull << 56, 9},
        {1ull << 63, 10}, {UINT64_MAX, 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[16];
        memset(buf, 0xee, sizeof buf);
        assert_int_equal(dfs_varint_len(cases[i].v), cases[i].len);
        uint8_t *end = dfs_varint_put(buf, cases[i].v);
        assert_int_equal((size_t)(end - buf), cases[i].len);
        assert_int_equal(buf[cases[i].len], 0xee); /* nothing written past it */
        const uint8_t *p = buf;
        uint64_t back = 0;
        assert_true(dfs_wire_flat_varint(&p, end, &back));
        assert_true(p == end);
        assert_true(back == cases[i].v);
    }
    uint8_t two[2];
    dfs_varint_put(two, 300);
    assert_int_equal(two[0], 0xac); /* the example in protobuf's encoding guide */
    assert_int_equal(two[1], 0x02);
}

int main(void)
{
    grpc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parses_across_any_slicing),
        cmocka_unit_test(test_truncated_and_malformed),
        cmocka_unit_test(test_varint_writer),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    grpc_shutdown();
    return rc;
}
