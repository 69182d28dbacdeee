/* Tests of the fragment file header: round trip, and every check of the decoder. */
#include "storage/frag_header.h"

#include "common/crc32c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#define ID "0123456789abcdef0123456789abcdef00000007"

static struct dfs_frag_header sample(uint64_t size)
{
    struct dfs_frag_header h = {
        .size = size,
        .nblocks = (uint32_t)dfs_crc32c_nblocks(size),
        .checksum = 0xdeadbeef,
        .stored_ms = 1700000000123,
    };
    memcpy(h.id, ID, sizeof h.id);
    return h;
}

/* Recompute the header CRC after a test changed a field, so that the later checks are reached. */
static void reseal(unsigned char raw[DFS_FRAG_HEADER_SIZE])
{
    uint32_t crc = dfs_crc32c(0, raw, 124);
    for (int i = 0; i < 4; i++)
        raw[124 + i] = (unsigned char)(crc >> (8 * i));
}

static void test_round_trip(void **state)
{
    (void)state;
    const uint64_t sizes[] = {0, 1, 65536, 65537, 3u << 20, DFS_FRAG_MAX_SIZE};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct dfs_frag_header h = sample(sizes[i]), back;
        unsigned char raw[DFS_FRAG_HEADER_SIZE];
        dfs_frag_header_encode(&h, raw);
        assert_memory_equal(raw, "DFSFRAG1", 8);
        assert_null(dfs_frag_header_decode(raw, &back));
        assert_true(back.size == h.size);
        assert_int_equal(back.nblocks, h.nblocks);
        assert_int_equal(back.checksum, h.checksum);
        assert_true(back.stored_ms == h.stored_ms);
        assert_string_equal(back.id, ID);
    }
}

static void test_rejections(void **state)
{
    (void)state;
    struct dfs_frag_header h = sample(100000), back;
    unsigned char good[DFS_FRAG_HEADER_SIZE], raw[DFS_FRAG_HEADER_SIZE];
    dfs_frag_header_encode(&h, good);

    memcpy(raw, good, sizeof raw);
    raw[0] = 'X';
    assert_string_equal(dfs_frag_header_decode(raw, &back), "bad magic (not a fragment file)");

    memcpy(raw, good, sizeof raw);
    raw[50] ^= 1; /* any flipped bit */
    assert_string_equal(dfs_frag_header_decode(raw, &back), "header checksum mismatch");

    memcpy(raw, good, sizeof raw);
    raw[8] = 2;
    reseal(raw);
    assert_string_equal(dfs_frag_header_decode(raw, &back), "unsupported format version");

    memcpy(raw, good, sizeof raw);
    raw[13] = 0x20; /* 8 KiB blocks */
    reseal(raw);
    assert_string_equal(dfs_frag_header_decode(raw, &back), "unsupported block size");

    memcpy(raw, good, sizeof raw);
    raw[40] = 'G'; /* not hex */
    reseal(raw);
    assert_string_equal(dfs_frag_header_decode(raw, &back), "bad fragment id field");

    memcpy(raw, good, sizeof raw);
    raw[85] = 'a'; /* the padding after the id */
    reseal(raw);
    assert_string_equal(dfs_frag_header_decode(raw, &back), "bad fragment id field");

    memcpy(raw, good, sizeof raw);
    raw[24] ^= 1; /* block count one off */
    reseal(raw);
    assert_string_equal(dfs_frag_header_decode(raw, &back), "size and block count disagree");

    memcpy(raw, good, sizeof raw);
    memset(raw + 16, 0xff, 8); /* size 2^64-1: above the largest fragment */
    memset(raw + 24, 0xff, 4);
    reseal(raw);
    assert_string_equal(dfs_frag_header_decode(raw, &back), "size and block count disagree");

    /* Reserved bytes are not checked (room for later versions). */
    memcpy(raw, good, sizeof raw);
    raw[100] = 7;
    reseal(raw);
    assert_null(dfs_frag_header_decode(raw, &back));
}

static void test_lengths(void **state)
{
    (void)state;
    assert_true(dfs_frag_file_length(0) == 128);
    assert_true(dfs_frag_file_length(1) == 128 + 1 + 4);
    assert_true(dfs_frag_file_length(65536) == 128 + 65536 + 4);
    const uint64_t sizes[] = {0, 1, 4, 65535, 65536, 65537, 10u << 20, DFS_FRAG_MAX_SIZE};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        assert_true(dfs_frag_size_from_length(dfs_frag_file_length(sizes[i])) == sizes[i]);
    /* Lengths no fragment has: short of a header, a last block of no data, past the largest. */
    const uint64_t bad[] = {0, 127, 129, 132, 128 + 65540 + 3, UINT64_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_true(dfs_frag_size_from_length(bad[i]) == DFS_FRAG_SIZE_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
