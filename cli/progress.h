/* A progress line for a transfer on a terminal: bytes, rate, ETA, redrawn in place. */
#ifndef DFS_CLI_PROGRESS_H
#define DFS_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/*
 *   put /data/big.tar  42% [=========>            ] 430 MiB / 1.00 GiB  112 MiB/s  ETA 5.2 s
 *
 * Written to `out` (stderr) with '\r' and an erase-to-end-of-line, at most every 100 ms; the rate is
 * measured over the last 2 seconds. A disabled progress (not a terminal, --quiet) does nothing, so
 * callers need no conditions. Not thread-safe: the transfer's loop thread updates it.
 */
typedef struct dfs_progress dfs_progress;

/*
 * A progress for `total` bytes labelled `label` (copied). enabled false gives a silent one.
 * Returns NULL only when out of memory (every function accepts NULL and does nothing).
 */
dfs_progress *dfs_progress_create(FILE *out, const char *label, uint64_t total, bool enabled);

/* `done` bytes are done (monotonic). Matches the engines' progress callbacks: arg is the progress. */
void dfs_progress_update(void *progress, uint64_t done, uint64_t total);

/*
 * Show `note` (one line: what the transfer waits for) on the line instead of the rate and ETA,
 * redrawn at once; NULL takes it away. The text is copied.
 */
void dfs_progress_note(dfs_progress *p, const char *note);

/* Draw the final state (average rate over the whole transfer) and end the line; free. */
void dfs_progress_finish(dfs_progress *p, bool ok);

/* Whether progress lines should be shown on fd (a terminal, and TERM is not "dumb"). */
bool dfs_progress_wanted(int fd);

#endif /* DFS_CLI_PROGRESS_H */
