/* The one logger: structured lines on stderr, checked by the compiler. */
#ifndef DFS_COMMON_LOG_H
#define DFS_COMMON_LOG_H

#include <stdbool.h>

enum dfs_log_level {
    DFS_LOG_DEBUG = 0,
    DFS_LOG_INFO = 1,
    DFS_LOG_WARN = 2,
    DFS_LOG_ERROR = 3,
    DFS_LOG_OFF = 4,
};

/*
 * Configure the logger. Called once by a program's main() before it starts threads; the settings
 * are the only process-wide state the logger keeps (a daemon has one log). `prog` is borrowed and
 * must outlive every later dfs_log call (pass a string literal). Until called, the level is WARN
 * and the program name "dfs".
 */
void dfs_log_init(const char *prog, enum dfs_log_level level);

/* Parse "debug", "info", "warn", "error" or "off". Returns 0 and sets *out, or DFS_EINVAL. */
int dfs_log_level_parse(const char *s, enum dfs_log_level *out);

/* Whether a message at `level` would be written (to skip building expensive arguments). */
bool dfs_log_enabled(enum dfs_log_level level);

/*
 * Write one line to stderr:
 *     ts=2026-11-22T10:00:00.123Z level=info prog=dfs-storage msg="stored fragment" id=ab12...
 * The formatted text goes into msg="..." up to the first " key=" part the caller wrote itself, so
 * callers write `dfs_log(DFS_LOG_INFO, "stored fragment id=%s size=%zu", id, n)`. Newlines and
 * quotes in the text are escaped; a line is written with a single write(2), so lines from threads
 * never mix.
 */
void dfs_log(enum dfs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like dfs_log, appending errno=<n> err="<strerror>" and the source location. */
#define dfs_log_errno(level, errnum, ...) \
    dfs_log_errno_at(__FILE__, __LINE__, (level), (errnum), __VA_ARGS__)
void dfs_log_errno_at(const char *file, int line, enum dfs_log_level level, int errnum,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif /* DFS_COMMON_LOG_H */
