/* Tests of CRC32C and the block-CRC conventions. */
#include "common/crc32c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Bit-at-a-time reference CRC32C, independent of ISA-L. */
static uint32_t ref_crc32c(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
    }
    return ~crc;
}

static void test_known_vector(void **state)
{
    (void)state;
    assert_int_equal(dfs_crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(dfs_crc32c(0, "", 0), 0);
}

static void test_chaining_equals_whole(void **state)
{
    (void)state;
    unsigned char buf[1000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    uint32_t whole = dfs_crc32c(0, buf, sizeof buf);
    assert_int_equal(whole, ref_crc32c(buf, sizeof buf));
    for (size_t cut = 0; cut <= sizeof buf; cut += 37)
        assert_int_equal(dfs_crc32c(dfs_crc32c(0, buf, cut), buf + cut, sizeof buf - cut), whole);
}

static void test_blocks(void **state)
{
    (void)state;
    size_t len = 2 * DFS_BLOCK_SIZE + 100;
    unsigned char *buf = malloc(len);
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(i ^ (i >> 8));
    assert_int_equal(dfs_crc32c_nblocks(0), 0);
    assert_int_equal(dfs_crc32c_nblocks(1), 1);
    assert_int_equal(dfs_crc32c_nblocks(DFS_BLOCK_SIZE), 1);
    assert_int_equal(dfs_crc32c_nblocks(len), 3);
    uint32_t crcs[3];
    dfs_crc32c_blocks(buf, len, crcs);
    assert_int_equal(crcs[0], ref_crc32c(buf, DFS_BLOCK_SIZE));
    assert_int_equal(crcs[1], ref_crc32c(buf + DFS_BLOCK_SIZE, DFS_BLOCK_SIZE));
    assert_int_equal(crcs[2], ref_crc32c(buf + 2 * DFS_BLOCK_SIZE, 100));
    /* The table checksum is the CRC of the little-endian table bytes. */
    unsigned char le[12];
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 4; b++)
            le[4 * i + b] = (unsigned char)(crcs[i] >> (8 * b));
    assert_int_equal(dfs_crc32c_of_table(crcs, 3), ref_crc32c(le, sizeof le));
    assert_int_equal(dfs_crc32c_of_table(NULL, 0), 0);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vector),
        cmocka_unit_test(test_chaining_equals_whole),
        cmocka_unit_test(test_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
