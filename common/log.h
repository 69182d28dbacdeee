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

/* Parse "debug", "info", "warn" or "error" ("off" too). Returns 0 and sets *out, or DFS_EINVAL. */
int dfs_log_level_parse(const char *s, enum dfs_log_level *out);

/* Whether a message at `level` would be written (to skip building expensive arguments). */
bool dfs_log_enabled(enum dfs_log_level level);

/*
 * Write one logfmt line to stderr:
 *
 *     ts=2026-11-22T10:00:00.123Z level=info prog=dfs-storage msg="stored fragment" id=ab12 n=5
 *
 * Callers write `dfs_log(DFS_LOG_INFO, "stored fragment id=%s size=%zu", id, n)`: the FORMAT, not
 * the formatted text, says where each value is, so no value can add, end or split a field
 * whatever it holds:
 *   - msg is the format up to its first " key=" (key: [a-z0-9_]+), formatted;
 *   - each " key=" of the format starts a field whose value is the format up to the next " key="
 *     (or the end), formatted. A value written in quotes in the format (`err=\"%s\"`, the old
 *     style) has those quotes dropped: they are the logger's to add.
 * Every conversion is formatted on its own (the format is walked here, never handed to vsnprintf
 * whole), and every value is written bare when it is 1 or more printable ASCII bytes other than
 * '"', '=' and '\', and otherwise quoted, with '"' and '\' escaped as \" and \\, newline, return
 * and tab as \n, \r and \t, other control bytes and bytes that are not well-formed UTF-8 as \xHH;
 * msg is always quoted. A value longer than DFS_LOG_VALUE_MAX bytes as written is cut and ends
 * in "..." (inside its quotes); a field that would not fit the line is dropped, and the line then
 * ends with truncated=true. Keys are written as the format has them (keep them unique in one
 * line). %n writes nothing.
 *
 * Each line goes out with a single write(2) of at most DFS_LOG_LINE_MAX bytes (PIPE_BUF), so
 * lines from threads never mix.
 */
void dfs_log(enum dfs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Longest value as written (quotes and escapes included), and longest line (newline included). */
#define DFS_LOG_VALUE_MAX 1024
#define DFS_LOG_LINE_MAX  4096

/* Like dfs_log, appending errno=<n> err="<strerror>" and at=<file>:<line>. */
#define dfs_log_errno(level, errnum, ...) \
    dfs_log_errno_at(__FILE__, __LINE__, (level), (errnum), __VA_ARGS__)
void dfs_log_errno_at(const char *file, int line, enum dfs_log_level level, int errnum,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif /* DFS_COMMON_LOG_H */
