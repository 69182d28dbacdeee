/* Tests of tickets: a known answer computed independently, and every check refusing. */
#include "common/ticket.h"

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

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void master_key(uint8_t m[DFS_TICKET_KEY_LEN])
{
    for (int i = 0; i < DFS_TICKET_KEY_LEN; i++)
        m[i] = (uint8_t)i;
}

/* Expected values from Python's hmac module over the format in ticket.h. */
static void test_known_answer(void **state)
{
    (void)state;
    uint8_t m[DFS_TICKET_KEY_LEN], k[DFS_TICKET_KEY_LEN];
    master_key(m);
    assert_int_equal(dfs_ticket_node_key(m, node, k, NULL), DFS_OK);
    char h[2 * DFS_TICKET_KEY_LEN + 1];
    hex(k, sizeof k, h);
    assert_string_equal(h, "bf8ab257c32cbf078bda996bb954e5251f8e9e7ea194849237a0cd5d03730f2f");
    struct dfs_ticket t;
    assert_int_equal(dfs_ticket_make(k, DFS_TICKET_GET, frag, node, 1700000000000, &t, NULL),
                     DFS_OK);
    assert_string_equal(t.file_id, "fedcba9876543210fedcba9876543210");
    hex(t.mac, sizeof t.mac, h);
    assert_string_equal(h, "58709a63ee77c4d6be3669980cd4e1fbac47e9fe716e654b7f8ac574ba0ba0ac");
}

static void expect_refused(const uint8_t *k, const struct dfs_ticket *t, enum dfs_ticket_op op,
                           const char *fragment, const char *n, int64_t now, const char *why)
{
    char *err = NULL;
    assert_int_equal(dfs_ticket_check(k, t, op, fragment, n, now, &err), DFS_EPERM);
    assert_non_null(err);
    if (strstr(err, why) == NULL)
        fail_msg("refusal '%s' does not say '%s'", err, why);
    free(err);
}

static void test_checks(void **state)
{
    (void)state;
    uint8_t m[DFS_TICKET_KEY_LEN], k[DFS_TICKET_KEY_LEN], k2[DFS_TICKET_KEY_LEN];
    master_key(m);
    assert_int_equal(dfs_ticket_node_key(m, node, k, NULL), DFS_OK);
    assert_int_equal(dfs_ticket_node_key(m, other_node, k2, NULL), DFS_OK);
    assert_memory_not_equal(k, k2, sizeof k);
    int64_t exp = 1000000;
    struct dfs_ticket t;
    assert_int_equal(dfs_ticket_make(k, DFS_TICKET_PUT, frag, node, exp, &t, NULL), DFS_OK);
    assert_int_equal(dfs_ticket_check(k, &t, DFS_TICKET_PUT, frag, node, exp, NULL), DFS_OK);
    /* Clock skew: a node a little ahead still accepts it. */
    assert_int_equal(
        dfs_ticket_check(k, &t, DFS_TICKET_PUT, frag, node, exp + DFS_TICKET_SKEW_MS, NULL),
        DFS_OK);
    expect_refused(k, &t, DFS_TICKET_PUT, frag, node, exp + DFS_TICKET_SKEW_MS + 1, "expired");
    expect_refused(k, &t, DFS_TICKET_GET, frag, node, exp, "not get");
    expect_refused(k, &t, DFS_TICKET_PUT, "fedcba9876543210fedcba987654321000000003", node, exp,
                   "another fragment");
    expect_refused(k, &t, DFS_TICKET_PUT, frag, other_node, exp, "another node");
    /* Signed by another node's key, or by nobody. */
    expect_refused(k2, &t, DFS_TICKET_PUT, frag, node, exp, "signature");
    struct dfs_ticket bad = t;
    bad.mac[7] ^= 1;
    expect_refused(k, &bad, DFS_TICKET_PUT, frag, node, exp, "signature");
    /* Every signed field is covered: a later expiry, another op or a re-aimed ticket fail. */
    bad = t;
    bad.expires_ms += 1;
    expect_refused(k, &bad, DFS_TICKET_PUT, frag, node, exp, "signature");
    bad = t;
    bad.op = DFS_TICKET_DELETE;
    expect_refused(k, &bad, DFS_TICKET_DELETE, frag, node, exp, "signature");
    bad = t;
    memcpy(bad.node_id, other_node, sizeof other_node);
    expect_refused(k, &bad, DFS_TICKET_PUT, frag, other_node, exp, "signature");
    /* A file id that is not the fragment's prefix is malformed, whatever the MAC. */
    bad = t;
    bad.file_id[0] = '0';
    expect_refused(k, &bad, DFS_TICKET_PUT, frag, node, exp, "malformed");
    bad = t;
    bad.op = 9;
    expect_refused(k, &bad, DFS_TICKET_PUT, frag, node, exp, "malformed");
    /* An expiry at the end of time does not overflow into the past. */
    assert_int_equal(dfs_ticket_make(k, DFS_TICKET_PUT, frag, node, INT64_MAX, &t, NULL), DFS_OK);
    expect_refused(k, &t, DFS_TICKET_PUT, frag, node, 0, "expired");
}

/* Forward tickets: the peer is signed too, and checked against the address a request names. */
static void test_forward(void **state)
{
    (void)state;
    uint8_t m[DFS_TICKET_KEY_LEN], k[DFS_TICKET_KEY_LEN];
    master_key(m);
    assert_int_equal(dfs_ticket_node_key(m, node, k, NULL), DFS_OK);
    struct dfs_ticket t;
    assert_int_equal(dfs_ticket_make_forward(k, frag, node, other_node, "10.0.0.7:7100",
                                             1700000000000, &t, NULL),
                     DFS_OK);
    char h[2 * DFS_TICKET_MAC_LEN + 1];
    hex(t.mac, sizeof t.mac, h); /* Python's hmac over the format in ticket.h */
    assert_string_equal(h, "b5eeb3b1e9fa63c5da73ffe7db63eaef4f95a7b6979985f06eca5c0e38d34569");
    int64_t now = 1700000000000;
    assert_int_equal(
        dfs_ticket_check_forward(k, &t, frag, node, other_node, "10.0.0.7:7100", now, NULL),
        DFS_OK);
    assert_int_equal(dfs_ticket_check_forward(k, &t, frag, node, NULL, "10.0.0.7:7100", now, NULL),
                     DFS_OK);
    char *err = NULL;
    assert_int_equal(dfs_ticket_check_forward(k, &t, frag, node, NULL, "10.0.0.7:7101", now, &err),
                     DFS_EPERM);
    assert_non_null(strstr(err, "another address"));
    free(err);
    err = NULL;
    assert_int_equal(dfs_ticket_check_forward(k, &t, frag, node, node, "10.0.0.7:7100", now, &err),
                     DFS_EPERM);
    free(err);
    /* Re-aimed at another address, or used as a put ticket: the MAC or the op refuses it. */
    struct dfs_ticket bad = t;
    snprintf(bad.peer_address, sizeof bad.peer_address, "127.0.0.1:22");
    expect_refused(k, &bad, DFS_TICKET_FORWARD, frag, node, now, "signature");
    expect_refused(k, &t, DFS_TICKET_PUT, frag, node, now, "not put");
    /* A put ticket carrying peer fields is malformed; so is a forward to itself or to no address. */
    assert_int_equal(dfs_ticket_make(k, DFS_TICKET_PUT, frag, node, now, &bad, NULL), DFS_OK);
    snprintf(bad.peer_address, sizeof bad.peer_address, "x:1");
    expect_refused(k, &bad, DFS_TICKET_PUT, frag, node, now, "malformed");
    assert_int_equal(dfs_ticket_make(k, DFS_TICKET_FORWARD, frag, node, now, &bad, NULL),
                     DFS_EINVAL);
    assert_int_equal(dfs_ticket_make_forward(k, frag, node, node, "a:1", now, &bad, NULL),
                     DFS_EINVAL);
    assert_int_equal(dfs_ticket_make_forward(k, frag, node, other_node, "a b:1", now, &bad, NULL),
                     DFS_EINVAL);
    assert_int_equal(dfs_ticket_make_forward(k, frag, node, other_node, "", now, &bad, NULL),
                     DFS_EINVAL);
    assert_string_equal(dfs_ticket_op_name(DFS_TICKET_FORWARD), "forward");
}

static void test_bad_input(void **state)
{
    (void)state;
    uint8_t k[DFS_TICKET_KEY_LEN] = {0};
    struct dfs_ticket t;
    char *err = NULL;
    assert_int_equal(dfs_ticket_make(k, DFS_TICKET_GET, "../etc/passwd", node, 1, &t, &err),
                     DFS_EINVAL);
    free(err);
    err = NULL;
    assert_int_equal(dfs_ticket_make(k, DFS_TICKET_GET, frag, "x", 1, &t, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    assert_int_equal(dfs_ticket_make(k, 0, frag, node, 1, &t, &err), DFS_EINVAL);
    free(err);
    assert_int_equal(dfs_ticket_node_key(k, "NOTHEX", k, NULL), DFS_EINVAL);
    assert_string_equal(dfs_ticket_op_name(DFS_TICKET_REPAIR), "repair");
    assert_string_equal(dfs_ticket_op_name(77), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_checks),
        cmocka_unit_test(test_forward),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
