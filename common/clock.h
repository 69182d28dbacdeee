/* The clocks dfs reads: monotonic for intervals and deadlines, the wall clock for timestamps. */
#ifndef DFS_COMMON_CLOCK_H
#define DFS_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/*
 * Monotonic (CLOCK_MONOTONIC): never jumps, meaningless across processes and reboots. Measure
 * intervals, arm timers (services/rpc/loop.h) and compute deadlines with it.
 */
int64_t dfs_clock_mono_ns(void);

/* The monotonic clock in seconds, for programs that print durations (benchmarks). */
double dfs_clock_mono_s(void);

/*
 * The wall clock (CLOCK_REALTIME) in milliseconds since the Unix epoch: what is stored, sent or
 * shown (catalog stamps, ticket expiries, "seen 3 s ago"). It may jump when the clock is set.
 */
int64_t dfs_clock_wall_ms(void);

/*
 * The wall-clock time ms milliseconds from now (ms >= 0), as pthread_cond_timedwait takes its
 * absolute timeout (condition variables with default attributes wait on CLOCK_REALTIME).
 */
struct timespec dfs_clock_abstime(int64_t ms);

#endif /* DFS_COMMON_CLOCK_H */
