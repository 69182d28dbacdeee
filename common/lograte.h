/* Log lines that anyone who reaches a port can provoke, held to one per interval. */
#ifndef DFS_COMMON_LOGRATE_H
#define DFS_COMMON_LOGRATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * A refused ticket or an unauthorised call is worth a warning, but whoever can reach the port can
 * send a thousand a second, and a log that grows at the caller's will buries what matters and
 * fills the disk. One dfs_lograte per kind of line: the first event of an interval is logged and
 * carries the count of those dropped since the previous line; the rest of the interval only
 * counts. Counters and metrics still see every event.
 *
 * A value type embedded in its owner (a service, a server) and shared by its threads without a
 * lock; nothing to free. Zero-initialised, it logs every event (interval 0).
 */
struct dfs_lograte {
    int64_t interval_ms;         /* set once by dfs_lograte_init, before threads share it */
    _Atomic int64_t next_ms;     /* monotonic ms before which events are only counted */
    _Atomic uint64_t suppressed; /* events counted since the last line */
};

void dfs_lograte_init(struct dfs_lograte *r, int64_t interval_ms);

/*
 * Whether the event at now_ms (monotonic milliseconds) gets its line. When it does, *dropped is
 * how many events were not logged since the previous line (say it in the line); when it does not,
 * the event is counted and *dropped is left alone.
 */
bool dfs_lograte_take(struct dfs_lograte *r, int64_t now_ms, uint64_t *dropped);

#endif /* DFS_COMMON_LOGRATE_H */
