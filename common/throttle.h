/* A token bucket: holds a stream of bytes to a rate, with continuous refill. */
#ifndef DFS_COMMON_THROTTLE_H
#define DFS_COMMON_THROTTLE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * A value type; one per link (one client<->node connection) or per traffic class of a node. Not
 * thread-safe: one event loop uses it. Time is passed in (CLOCK_MONOTONIC nanoseconds), so the
 * bucket is pure arithmetic and tests control the clock.
 *
 * Tokens (bytes) accrue continuously at `rate` up to `burst`. A send of n bytes may start once the
 * bucket holds n tokens; n may exceed the burst (a message larger than the burst waits until the
 * bucket is full, then drives it negative and later sends wait longer), so the long-run rate is
 * exact whatever the message sizes. The burst is one message (DESIGN.md: "burst of one chunk"):
 * an idle link does not save up more than that.
 */
typedef struct dfs_bucket {
    double rate;  /* bytes per second; 0 = unlimited */
    double burst; /* bytes */
    double tokens;
    int64_t last_ns;
} dfs_bucket;

/* Start full. rate 0 means no limit (every take succeeds at once). */
void dfs_bucket_init(dfs_bucket *b, uint64_t rate, uint64_t burst, int64_t now_ns);

/*
 * Try to take n bytes now. Returns 0 when they were taken (send now), or the nanoseconds to wait
 * before trying again (nothing taken). A caller that waits that long and asks again succeeds,
 * unless another sender on the same bucket took tokens meanwhile.
 */
int64_t dfs_bucket_take(dfs_bucket *b, uint64_t n, int64_t now_ns);

/*
 * Charge n bytes that already went through (received data: the receiver can only pace what it
 * consumes next). The bucket may go negative; returns the nanoseconds until it is back to zero,
 * i.e. how long to wait before taking in more (0 when there is no debt).
 */
int64_t dfs_bucket_charge(dfs_bucket *b, uint64_t n, int64_t now_ns);

/* Return tokens taken for bytes that were not sent after all (a failed send). */
void dfs_bucket_refund(dfs_bucket *b, uint64_t n);

/* Whether the bucket limits anything. */
bool dfs_bucket_limited(const dfs_bucket *b);

#endif /* DFS_COMMON_THROTTLE_H */
