/* Tests of the damage queue: dedupe, FIFO, the memory of good copies, bounds. */
#include "services/metadata/damage.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define N1 "0123456789abcdef0123456789abcdef"
#define N2 "fedcba9876543210fedcba9876543210"
#define F1 "00112233445566778899aabbccddeeff00000001"
#define F2 "00112233445566778899aabbccddeeff00000002"

static void test_fifo_and_dedupe(void **state)
{
    (void)state;
    dfs_damage_queue *q = NULL;
    assert_int_equal(dfs_damage_queue_create(4, 1000, &q, NULL), DFS_OK);
    assert_int_equal(dfs_damage_queue_add(q, F1, N1, 1, "block 3\n\"bad\"", 10), DFS_DAMAGE_QUEUED);
    assert_int_equal(dfs_damage_queue_add(q, F1, N1, 3, NULL, 11), DFS_DAMAGE_PENDING);
    assert_int_equal(dfs_damage_queue_add(q, F1, N2, 2, NULL, 12), DFS_DAMAGE_QUEUED);
    assert_int_equal(dfs_damage_queue_add(q, "nope", N2, 2, NULL, 12), DFS_DAMAGE_INVALID);
    assert_int_equal(dfs_damage_queue_add(q, F2, "nope", 2, NULL, 12), DFS_DAMAGE_INVALID);
    assert_int_equal(dfs_damage_queue_pending(q), 2);
    assert_true(dfs_damage_queue_suspect(q, F1, N1));
    assert_false(dfs_damage_queue_suspect(q, F2, N1));
    struct dfs_damage_item a, b, c;
    assert_true(dfs_damage_queue_take(q, &a));
    assert_string_equal(a.fragment_id, F1);
    assert_string_equal(a.node_id, N1);
    assert_int_equal(a.damage, 1);
    assert_string_equal(a.detail, "block 3??bad?");
    assert_int_equal(a.queued_ms, 10);
    /* Being checked: still pending, still deduplicated. */
    assert_int_equal(dfs_damage_queue_add(q, F1, N1, 1, NULL, 13), DFS_DAMAGE_PENDING);
    assert_true(dfs_damage_queue_take(q, &b));
    assert_string_equal(b.node_id, N2);
    assert_false(dfs_damage_queue_take(q, &c));
    assert_int_equal(dfs_damage_queue_pending(q), 2);
    assert_true(dfs_damage_queue_suspect(q, F1, N2)); /* being checked */
    dfs_damage_queue_done(q, &b, DFS_DAMAGE_BAD, 20);
    dfs_damage_queue_done(q, &a, DFS_DAMAGE_UNKNOWN, 20);
    assert_int_equal(dfs_damage_queue_pending(q), 0);
    assert_false(dfs_damage_queue_suspect(q, F1, N2));
    /* Neither was found good: a new report is queued again at once. */
    assert_int_equal(dfs_damage_queue_add(q, F1, N1, 1, NULL, 21), DFS_DAMAGE_QUEUED);
    assert_int_equal(dfs_damage_queue_add(q, F1, N2, 1, NULL, 21), DFS_DAMAGE_QUEUED);
    dfs_damage_queue_destroy(q);
}

static void test_good_copies_are_not_checked_again_for_a_while(void **state)
{
    (void)state;
    dfs_damage_queue *q = NULL;
    assert_int_equal(dfs_damage_queue_create(4, 1000, &q, NULL), DFS_OK);
    struct dfs_damage_item it;
    assert_int_equal(dfs_damage_queue_add(q, F1, N1, 2, NULL, 0), DFS_DAMAGE_QUEUED);
    assert_true(dfs_damage_queue_take(q, &it));
    dfs_damage_queue_done(q, &it, DFS_DAMAGE_GOOD, 100);
    assert_int_equal(dfs_damage_queue_add(q, F1, N1, 2, NULL, 500), DFS_DAMAGE_KNOWN_GOOD);
    assert_int_equal(dfs_damage_queue_add(q, F1, N1, 1, NULL, 1099), DFS_DAMAGE_KNOWN_GOOD);
    assert_int_equal(dfs_damage_queue_add(q, F1, N2, 1, NULL, 500), DFS_DAMAGE_QUEUED);
    assert_int_equal(dfs_damage_queue_add(q, F1, N1, 1, NULL, 1100), DFS_DAMAGE_QUEUED);
    dfs_damage_queue_destroy(q);
}

static void test_bounded(void **state)
{
    (void)state;
    dfs_damage_queue *q = NULL;
    char *err = NULL;
    assert_int_equal(dfs_damage_queue_create(0, 1000, &q, &err), DFS_EINVAL);
    free(err);
    assert_int_equal(dfs_damage_queue_create(2, 1000, &q, NULL), DFS_OK);
    assert_int_equal(dfs_damage_queue_add(q, F1, N1, 1, NULL, 0), DFS_DAMAGE_QUEUED);
    assert_int_equal(dfs_damage_queue_add(q, F2, N1, 1, NULL, 0), DFS_DAMAGE_QUEUED);
    assert_int_equal(dfs_damage_queue_add(q, F1, N2, 1, NULL, 0), DFS_DAMAGE_FULL);
    /* The memory of good copies is a ring of cap entries: the oldest is forgotten. */
    struct dfs_damage_item it;
    for (int i = 0; i < 2; i++) {
        assert_true(dfs_damage_queue_take(q, &it));
        dfs_damage_queue_done(q, &it, DFS_DAMAGE_GOOD, 10);
    }
    assert_int_equal(dfs_damage_queue_add(q, F1, N2, 1, NULL, 11), DFS_DAMAGE_QUEUED);
    assert_true(dfs_damage_queue_take(q, &it));
    dfs_damage_queue_done(q, &it, DFS_DAMAGE_GOOD, 12);
    assert_int_equal(dfs_damage_queue_add(q, F1, N1, 1, NULL, 13), DFS_DAMAGE_QUEUED);
    assert_int_equal(dfs_damage_queue_add(q, F2, N1, 1, NULL, 13), DFS_DAMAGE_KNOWN_GOOD);
    dfs_damage_queue_destroy(q);
    dfs_damage_queue_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_dedupe),
        cmocka_unit_test(test_good_copies_are_not_checked_again_for_a_while),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
