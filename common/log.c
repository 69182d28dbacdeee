/* Structured logging to stderr. */
#include "common/log.h"

#include "common/err.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * Process-wide logger settings. Written once by main() through dfs_log_init before threads start,
 * read by every thread afterwards; atomics keep the reads well-defined if a program changes the
 * level later.
 */
static _Atomic int log_level = DFS_LOG_WARN;
static const char *_Atomic log_prog = "dfs";

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void dfs_log_init(const char *prog, enum dfs_log_level level)
{
    atomic_store(&log_prog, prog);
    atomic_store(&log_level, (int)level);
}

int dfs_log_level_parse(const char *s, enum dfs_log_level *out)
{
    for (int i = 0; i <= DFS_LOG_OFF; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum dfs_log_level)i;
            return DFS_OK;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = DFS_LOG_WARN;
        return DFS_OK;
    }
    return DFS_EINVAL;
}

bool dfs_log_enabled(enum dfs_log_level level)
{
    return (int)level >= atomic_load(&log_level) && level < DFS_LOG_OFF;
}

/* Append at most the room left; the buffer always stays NUL-terminated. */
static size_t put(char *buf, size_t cap, size_t len, const char *s, size_t n)
{
    if (len + 1 >= cap)
        return len;
    if (n > cap - 1 - len)
        n = cap - 1 - len;
    memcpy(buf + len, s, n);
    buf[len + n] = '\0';
    return len + n;
}

/* Append text with '"', '\\' and control characters escaped. */
static size_t put_escaped(char *buf, size_t cap, size_t len, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            len = put(buf, cap, len, e, 2);
        } else if (c == '\n') {
            len = put(buf, cap, len, "\\n", 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[5];
            snprintf(e, sizeof e, "\\x%02x", c);
            len = put(buf, cap, len, e, 4);
        } else {
            len = put(buf, cap, len, (const char *)&s[i], 1);
        }
    }
    return len;
}

/* Where the caller's own key=value pairs start: the first " word=" after the free text. */
static size_t text_end(const char *s)
{
    for (const char *p = s; (p = strchr(p, ' ')) != NULL; p++) {
        const char *q = p + 1;
        while ((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_')
            q++;
        if (q > p + 1 && *q == '=')
            return (size_t)(p - s);
    }
    return strlen(s);
}

static void vlog(enum dfs_log_level level, const char *tail, const char *fmt, va_list ap)
{
    char text[2048];
    vsnprintf(text, sizeof text, fmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);

    char line[4096];
    int n = snprintf(line, sizeof line,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s prog=%s msg=\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], atomic_load(&log_prog));
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len >= sizeof line)
        len = sizeof line - 1;
    size_t end = text_end(text);
    len = put_escaped(line, sizeof line, len, text, end);
    len = put(line, sizeof line, len, "\"", 1);
    len = put(line, sizeof line, len, text + end, strlen(text + end));
    if (tail != NULL)
        len = put(line, sizeof line, len, tail, strlen(tail));
    /* Always end with a newline, even when the line was cut short. */
    if (len >= sizeof line - 1)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void dfs_log(enum dfs_log_level level, const char *fmt, ...)
{
    if (!dfs_log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, NULL, fmt, ap);
    va_end(ap);
}

void dfs_log_errno_at(const char *file, int line, enum dfs_log_level level, int errnum,
                      const char *fmt, ...)
{
    if (!dfs_log_enabled(level))
        return;
    char tail[512];
    const char *base = strrchr(file, '/');
    snprintf(tail, sizeof tail, " errno=%d err=\"%s\" at=%s:%d", errnum, strerror(errnum),
             base != NULL ? base + 1 : file, line);
    va_list ap;
    va_start(ap, fmt);
    vlog(level, tail, fmt, ap);
    va_end(ap);
}
