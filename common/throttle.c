/* A token bucket with continuous refill. */
#include "common/throttle.h"

void dfs_bucket_init(dfs_bucket *b, uint64_t rate, uint64_t burst, int64_t now_ns)
{
    b->rate = (double)rate;
    b->burst = (double)(burst > 0 ? burst : 1);
    b->tokens = b->burst;
    b->last_ns = now_ns;
}

static void refill(dfs_bucket *b, int64_t now_ns)
{
    if (now_ns > b->last_ns) {
        b->tokens += b->rate * (double)(now_ns - b->last_ns) / 1e9;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ns = now_ns;
    }
}

int64_t dfs_bucket_take(dfs_bucket *b, uint64_t n, int64_t now_ns)
{
    if (b->rate <= 0)
        return 0;
    refill(b, now_ns);
    /* A message larger than the burst goes as soon as the bucket is full. */
    double need = (double)n < b->burst ? (double)n : b->burst;
    if (b->tokens >= need) {
        b->tokens -= (double)n;
        return 0;
    }
    int64_t wait = (int64_t)((need - b->tokens) / b->rate * 1e9) + 1;
    return wait > 0 ? wait : 1;
}

int64_t dfs_bucket_charge(dfs_bucket *b, uint64_t n, int64_t now_ns)
{
    if (b->rate <= 0)
        return 0;
    refill(b, now_ns);
    b->tokens -= (double)n;
    if (b->tokens >= 0)
        return 0;
    return (int64_t)(-b->tokens / b->rate * 1e9) + 1;
}

void dfs_bucket_refund(dfs_bucket *b, uint64_t n)
{
    if (b->rate <= 0)
        return;
    b->tokens += (double)n;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
}

bool dfs_bucket_limited(const dfs_bucket *b)
{
    return b->rate > 0;
}
