#include "common/lograte.h"

void dfs_lograte_init(struct dfs_lograte *r, int64_t interval_ms)
{
    r->interval_ms = interval_ms > 0 ? interval_ms : 0;
    atomic_init(&r->next_ms, INT64_MIN);
    atomic_init(&r->suppressed, 0);
}

bool dfs_lograte_take(struct dfs_lograte *r, int64_t now_ms, uint64_t *dropped)
{
    int64_t next = atomic_load(&r->next_ms);
    /* One thread per interval wins the exchange; a loser counts its event instead. */
    if (now_ms < next ||
        !atomic_compare_exchange_strong(&r->next_ms, &next, now_ms + r->interval_ms)) {
        atomic_fetch_add(&r->suppressed, 1);
        return false;
    }
    *dropped = atomic_exchange(&r->suppressed, 0);
    return true;
}
