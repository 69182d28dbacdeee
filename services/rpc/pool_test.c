/* Tests of the channel pool: one channel per address, the caller's state, the limit, threads. */
#include "services/rpc/pool.h"

#include "common/err.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct state {
    char address[64];
    dfs_rpc_channel *ch;
    uint64_t counter;
    long double aligned; /* the block is aligned for any type */
};

struct counts {
    atomic_int inits, finis;
};

static void init(void *data, const char *address, dfs_rpc_channel *ch, void *arg)
{
    struct state *s = data;
    struct counts *c = arg;
    assert_int_equal(s->counter, 0); /* zeroed */
    assert_int_equal((uintptr_t)data % _Alignof(max_align_t), 0);
    snprintf(s->address, sizeof s->address, "%s", address);
    s->ch = ch;
    atomic_fetch_add(&c->inits, 1);
}

static void fini(void *data, void *arg)
{
    struct state *s = data;
    struct counts *c = arg;
    assert_non_null(s->ch);
    atomic_fetch_add(&c->finis, 1);
}

static void test_one_channel_per_address(void **state)
{
    (void)state;
    struct counts c = {0};
    struct dfs_rpc_pool_config cfg = {
        .data_size = sizeof(struct state), .data_init = init, .data_fini = fini, .arg = &c};
    dfs_rpc_pool *p = NULL;
    assert_int_equal(dfs_rpc_pool_create(&cfg, &p, NULL), DFS_OK);
    dfs_rpc_channel *a = NULL, *a2 = NULL, *b = NULL;
    void *da = NULL, *da2 = NULL, *db = NULL;
    assert_int_equal(dfs_rpc_pool_get(p, "127.0.0.1:1", &a, &da, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_pool_get(p, "127.0.0.1:2", &b, &db, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_pool_get(p, "127.0.0.1:1", &a2, &da2, NULL), DFS_OK);
    assert_ptr_equal(a, a2);
    assert_ptr_equal(da, da2);
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(da, db);
    assert_string_equal(((struct state *)da)->address, "127.0.0.1:1");
    assert_ptr_equal(((struct state *)db)->ch, b);
    assert_string_equal(dfs_rpc_channel_target(a), "127.0.0.1:1");
    ((struct state *)da)->counter = 7; /* the caller's state stays put */
    for (int i = 3; i < 40; i++) {     /* the entry table grows; entries do not move */
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", i);
        assert_int_equal(dfs_rpc_pool_get(p, addr, NULL, NULL, NULL), DFS_OK);
    }
    assert_int_equal(dfs_rpc_pool_get(p, "127.0.0.1:1", NULL, &da2, NULL), DFS_OK);
    assert_ptr_equal(da, da2);
    assert_int_equal(((struct state *)da2)->counter, 7);
    assert_int_equal(dfs_rpc_pool_size(p), 39);
    assert_int_equal(atomic_load(&c.inits), 39);
    dfs_rpc_pool_destroy(p);
    assert_int_equal(atomic_load(&c.finis), 39);
    dfs_rpc_pool_destroy(NULL);
}

static void test_limit_and_failures_keep_nothing(void **state)
{
    (void)state;
    struct dfs_rpc_pool_config cfg = {.max = 2, .full_message = "this test keeps 2 channels"};
    dfs_rpc_pool *p = NULL;
    assert_int_equal(dfs_rpc_pool_create(&cfg, &p, NULL), DFS_OK);
    char *err = NULL;
    /* Plaintext to a non-loopback address is refused by the channel's rule: nothing is kept. */
    assert_int_equal(dfs_rpc_pool_get(p, "192.0.2.1:7000", NULL, NULL, &err), DFS_EPERM);
    assert_non_null(err);
    free(err);
    err = NULL;
    assert_int_equal(dfs_rpc_pool_get(p, "", NULL, NULL, NULL), DFS_EINVAL);
    assert_int_equal(dfs_rpc_pool_size(p), 0);
    dfs_rpc_channel *ch = NULL;
    void *data = (void *)1;
    assert_int_equal(dfs_rpc_pool_get(p, "localhost:1", &ch, &data, NULL), DFS_OK);
    assert_non_null(ch);
    assert_int_equal(dfs_rpc_pool_get(p, "localhost:2", NULL, NULL, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_pool_get(p, "localhost:3", NULL, NULL, &err), DFS_ENOSPC);
    assert_string_equal(err, "this test keeps 2 channels");
    free(err);
    assert_int_equal(dfs_rpc_pool_get(p, "localhost:1", NULL, NULL, NULL), DFS_OK); /* known */
    assert_int_equal(dfs_rpc_pool_size(p), 2);
    dfs_rpc_pool_destroy(p);

    cfg.full_message = NULL;
    cfg.max = 1;
    assert_int_equal(dfs_rpc_pool_create(&cfg, &p, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_pool_get(p, "localhost:1", NULL, NULL, NULL), DFS_OK);
    err = NULL;
    assert_int_equal(dfs_rpc_pool_get(p, "localhost:2", NULL, NULL, &err), DFS_ENOSPC);
    assert_string_equal(err, "the channel pool is full");
    free(err);
    dfs_rpc_pool_destroy(p);
}

#define THREADS 8
#define PEERS   16

struct racer {
    dfs_rpc_pool *p;
    dfs_rpc_channel *seen[PEERS];
};

static void *race(void *arg)
{
    struct racer *r = arg;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < PEERS; i++) {
            char addr[32];
            snprintf(addr, sizeof addr, "127.0.0.1:%d", 1000 + (i * 7 + round) % PEERS);
            dfs_rpc_channel *ch = NULL;
            if (dfs_rpc_pool_get(r->p, addr, &ch, NULL, NULL) != DFS_OK)
                return "get failed";
            int k = (i * 7 + round) % PEERS;
            if (r->seen[k] != NULL && r->seen[k] != ch)
                return "two channels for one address";
            r->seen[k] = ch;
        }
    }
    return NULL;
}

static void test_threads_share_one_channel_per_address(void **state)
{
    (void)state;
    struct counts c = {0};
    struct dfs_rpc_pool_config cfg = {
        .data_size = sizeof(struct state), .data_init = init, .data_fini = fini, .arg = &c};
    dfs_rpc_pool *p = NULL;
    assert_int_equal(dfs_rpc_pool_create(&cfg, &p, NULL), DFS_OK);
    struct racer r[THREADS];
    pthread_t t[THREADS];
    memset(r, 0, sizeof r);
    for (int i = 0; i < THREADS; i++) {
        r[i].p = p;
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        void *why = NULL;
        pthread_join(t[i], &why);
        if (why != NULL)
            fail_msg("%s", (const char *)why);
    }
    for (int i = 1; i < THREADS; i++)
        assert_memory_equal(r[i].seen, r[0].seen, sizeof r[0].seen);
    assert_int_equal(dfs_rpc_pool_size(p), PEERS);
    assert_int_equal(atomic_load(&c.inits), PEERS);
    dfs_rpc_pool_destroy(p);
    assert_int_equal(atomic_load(&c.finis), PEERS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_channel_per_address),
        cmocka_unit_test(test_limit_and_failures_keep_nothing),
        cmocka_unit_test(test_threads_share_one_channel_per_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
