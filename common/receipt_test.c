/* Tests of put receipts: a known answer computed independently, and every field covered. */
#include "common/receipt.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char node[] = "0123456789abcdef0123456789abcdef";
static const char other_node[] = "0123456789abcdef0123456789abcdee";
static const char frag[] = "fedcba9876543210fedcba987654321000000002";

static void keys(uint8_t k[DFS_TICKET_KEY_LEN], uint8_t k2[DFS_TICKET_KEY_LEN])
{
    uint8_t m[DFS_TICKET_KEY_LEN];
    for (int i = 0; i < DFS_TICKET_KEY_LEN; i++)
        m[i] = (uint8_t)i;
    assert_int_equal(dfs_ticket_node_key(m, node, k, NULL), DFS_OK);
    assert_int_equal(dfs_ticket_node_key(m, other_node, k2, NULL), DFS_OK);
}

/* Expected value from Python's hmac module over the format in receipt.h. */
static void test_known_answer(void **state)
{
    (void)state;
    uint8_t k[DFS_TICKET_KEY_LEN], k2[DFS_TICKET_KEY_LEN], r[DFS_RECEIPT_LEN];
    keys(k, k2);
    assert_int_equal(dfs_receipt_make(k, frag, node, 70000, 0xdeadbeef, r, NULL), DFS_OK);
    char h[2 * DFS_RECEIPT_LEN + 1];
    for (size_t i = 0; i < sizeof r; i++)
        sprintf(h + 2 * i, "%02x", r[i]);
    assert_string_equal(h, "68a98d758ec52175a67249a988415dc29292faf1d19b72fdb284fd07b1add686");
}

static void expect_refused(const uint8_t *k, const uint8_t *r, size_t len, const char *f,
                           const char *n, uint64_t size, uint32_t sum)
{
    char *err = NULL;
    assert_int_equal(dfs_receipt_check(k, r, len, f, n, size, sum, &err), DFS_EPERM);
    assert_non_null(err);
    assert_non_null(strstr(err, "receipt"));
    free(err);
}

static void test_checks(void **state)
{
    (void)state;
    uint8_t k[DFS_TICKET_KEY_LEN], k2[DFS_TICKET_KEY_LEN], r[DFS_RECEIPT_LEN];
    keys(k, k2);
    assert_int_equal(dfs_receipt_make(k, frag, node, 5, 7, r, NULL), DFS_OK);
    assert_int_equal(dfs_receipt_check(k, r, sizeof r, frag, node, 5, 7, NULL), DFS_OK);
    /* Every field counts: size, checksum, fragment, node (and its key), length, presence. */
    expect_refused(k, r, sizeof r, frag, node, 6, 7);
    expect_refused(k, r, sizeof r, frag, node, 5, 8);
    expect_refused(k, r, sizeof r, "fedcba9876543210fedcba987654321000000003", node, 5, 7);
    expect_refused(k2, r, sizeof r, frag, other_node, 5, 7);
    expect_refused(k, r, sizeof r - 1, frag, node, 5, 7);
    expect_refused(k, NULL, 0, frag, node, 5, 7);
    uint8_t bad[DFS_RECEIPT_LEN];
    memcpy(bad, r, sizeof bad);
    bad[31] ^= 0x80;
    expect_refused(k, bad, sizeof bad, frag, node, 5, 7);
    char *err = NULL;
    assert_int_equal(dfs_receipt_make(k, "../x", node, 5, 7, r, &err), DFS_EINVAL);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
