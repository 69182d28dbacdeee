/* Tests for client/chunkio: pooled message buffers (reuse, lifetime past the pool's creator). */
#include "client/chunkio.h"

#include "common/crc32c.h"

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* A pooled message is laid out like a plain one, and parses back to the same data and CRCs. */
static void test_pooled_layout(void **state)
{
    (void)state;
    dfs_chunk_pool *pool = dfs_chunk_pool_create(DFS_CHUNK, 4);
    assert_non_null(pool);
    struct dfs_put_chunk a, b;
    size_t len = 3 * DFS_BLOCK_SIZE + 17;
    dfs_put_chunk_init_pooled(&a, pool, len);
    dfs_put_chunk_init(&b, NULL, 0, len);
    for (size_t i = 0; i < len; i++)
        a.data[i] = b.data[i] = (uint8_t)(i * 7);
    dfs_put_chunk_seal(&a);
    dfs_put_chunk_seal(&b);
    assert_int_equal(GRPC_SLICE_LENGTH(a.slice), GRPC_SLICE_LENGTH(b.slice));
    assert_memory_equal(GRPC_SLICE_START_PTR(a.slice), GRPC_SLICE_START_PTR(b.slice),
                        GRPC_SLICE_LENGTH(a.slice));
    dfs_put_chunk_release(&a);
    dfs_put_chunk_release(&b);
    dfs_chunk_pool_release(pool);
}

/*
 * A buffer comes back when the last reference to its slice goes (here: a byte buffer that outlived
 * the chunk) and is handed out again; a message larger than the pool's is allocated apart.
 */
static void test_reuse(void **state)
{
    (void)state;
    dfs_chunk_pool *pool = dfs_chunk_pool_create(DFS_BLOCK_SIZE, 2);
    struct dfs_put_chunk a;
    dfs_put_chunk_init_pooled(&a, pool, DFS_BLOCK_SIZE);
    uint8_t *first = GRPC_SLICE_START_PTR(a.slice);
    grpc_byte_buffer *bb = dfs_put_chunk_buffer(&a);
    dfs_put_chunk_release(&a);
    struct dfs_put_chunk b;
    dfs_put_chunk_init_pooled(&b, pool, DFS_BLOCK_SIZE);
    assert_ptr_not_equal(GRPC_SLICE_START_PTR(b.slice), first); /* the first is still in bb */
    grpc_byte_buffer_destroy(bb);
    struct dfs_put_chunk c;
    dfs_put_chunk_init_pooled(&c, pool, 100);
    assert_ptr_equal(GRPC_SLICE_START_PTR(c.slice), first); /* back, and reused */
    struct dfs_put_chunk big;
    dfs_put_chunk_init_pooled(&big, pool, 2 * DFS_BLOCK_SIZE);
    assert_int_equal(big.len, 2 * DFS_BLOCK_SIZE);
    dfs_put_chunk_release(&big);
    dfs_put_chunk_release(&b);
    dfs_put_chunk_release(&c);
    dfs_chunk_pool_release(pool);
}

/* Messages still held when the creator releases the pool keep it alive; the last one frees it. */
static void test_outlives_creator(void **state)
{
    (void)state;
    dfs_chunk_pool *pool = dfs_chunk_pool_create(DFS_CHUNK, 1);
    grpc_byte_buffer *held[5];
    for (int i = 0; i < 5; i++) {
        struct dfs_put_chunk c;
        dfs_put_chunk_init_pooled(&c, pool, DFS_CHUNK);
        memset(c.data, i, c.len);
        dfs_put_chunk_seal(&c);
        held[i] = dfs_put_chunk_buffer(&c);
        dfs_put_chunk_release(&c);
    }
    dfs_chunk_pool_release(pool);
    for (int i = 0; i < 5; i++)
        grpc_byte_buffer_destroy(held[i]); /* ASan/LSan: no use after free, no leak */
}

int main(void)
{
    grpc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pooled_layout),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_outlives_creator),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    grpc_shutdown();
    return rc;
}
