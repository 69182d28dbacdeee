/* Structured logging to stderr: logfmt lines whose fields come from the format, not the data. */
#include "common/log.h"

#include "common/err.h"
#include "common/utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

/*
 * Process-wide logger settings. Written once by main() through dfs_log_init before threads start,
 * read by every thread afterwards; atomics keep the reads well-defined if a program changes the
 * level later.
 */
static _Atomic int log_level = DFS_LOG_WARN;
static const char *_Atomic log_prog = "dfs";

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

/* A formatted value before it is quoted: longer than any value can be written, so a cut value
   is always noticed (cut). */
#define RAW_MAX   (DFS_LOG_VALUE_MAX + 8)
/* What ends a line whose fields did not all fit. */
#define TRUNCATED " truncated=true"

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

/* ---- one value, formatted ---- */

struct raw {
    char s[RAW_MAX];
    size_t len;
    bool cut; /* more was formatted than fits */
};

static void raw_put(struct raw *r, const char *s, size_t n)
{
    size_t room = sizeof r->s - r->len;
    if (n > room) {
        n = room;
        r->cut = true;
    }
    memcpy(r->s + r->len, s, n);
    r->len += n;
}

/* ---- the format ---- */

static bool key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* The length of the key of a "key=" at f (0: none there). */
static size_t key_len(const char *f)
{
    size_t n = 0;
    while (key_char(f[n]))
        n++;
    return n > 0 && f[n] == '=' ? n : 0;
}

enum len_mod { LEN_NONE, LEN_HH, LEN_H, LEN_L, LEN_LL, LEN_J, LEN_Z, LEN_T, LEN_BIG_L };

/* A conversion specification, parsed (C17 7.21.6.1, plus glibc's %m and q). */
struct spec {
    size_t len; /* bytes of the format it spans, '%' included */
    char flags[8];
    bool star_width, star_prec;
    int width; /* -1: none */
    int prec;  /* -1: none */
    enum len_mod mod;
    char conv; /* '\0': the format ended inside the specification */
};

static struct spec parse_spec(const char *f)
{
    struct spec s = {.width = -1, .prec = -1};
    size_t i = 1, nf = 0;
    while (f[i] != '\0' && strchr("-+ #0'I", f[i]) != NULL) {
        if (nf + 1 < sizeof s.flags)
            s.flags[nf++] = f[i];
        i++;
    }
    if (f[i] == '*') {
        s.star_width = true;
        i++;
    } else {
        for (s.width = f[i] >= '0' && f[i] <= '9' ? 0 : -1; f[i] >= '0' && f[i] <= '9'; i++)
            s.width = s.width < 100000 ? s.width * 10 + (f[i] - '0') : s.width;
    }
    if (f[i] == '.') {
        i++;
        if (f[i] == '*') {
            s.star_prec = true;
            i++;
        } else {
            for (s.prec = 0; f[i] >= '0' && f[i] <= '9'; i++)
                s.prec = s.prec < 100000 ? s.prec * 10 + (f[i] - '0') : s.prec;
        }
    }
    switch (f[i]) {
    case 'h':
        s.mod = f[i + 1] == 'h' ? LEN_HH : LEN_H;
        i += f[i + 1] == 'h' ? 2 : 1;
        break;
    case 'l':
        s.mod = f[i + 1] == 'l' ? LEN_LL : LEN_L;
        i += f[i + 1] == 'l' ? 2 : 1;
        break;
    case 'q':
        s.mod = LEN_LL;
        i++;
        break;
    case 'j':
        s.mod = LEN_J;
        i++;
        break;
    case 'z':
    case 'Z':
        s.mod = LEN_Z;
        i++;
        break;
    case 't':
        s.mod = LEN_T;
        i++;
        break;
    case 'L':
        s.mod = LEN_BIG_L;
        i++;
        break;
    default:
        break;
    }
    s.conv = f[i];
    s.len = f[i] != '\0' ? i + 1 : i;
    return s;
}

/*
 * Where the field after `from` starts: the index of the ' ' before its "key=", or the end of the
 * format. Conversion specifications are stepped over (a space flag is not a separator).
 */
static size_t next_field(const char *fmt, size_t from)
{
    size_t i = from;
    while (fmt[i] != '\0') {
        if (fmt[i] == '%') {
            i += parse_spec(fmt + i).len;
            continue;
        }
        if (fmt[i] == ' ' && key_len(fmt + i + 1) > 0)
            return i;
        i++;
    }
    return i;
}

/* The spec rebuilt for snprintf, with '*' arguments written in as digits. */
static void spec_text(const struct spec *s, int width, int prec, char *out, size_t cap)
{
    static const char *const mods[] = {"", "hh", "h", "l", "ll", "j", "z", "t", "L"};
    char w[16] = "", p[16] = "";
    const char *minus = "";
    if (width < 0 && s->star_width) {
        minus = "-";
        width = width == -2147483647 - 1 ? 2147483647 : -width;
    }
    if (width >= 0)
        snprintf(w, sizeof w, "%d", width);
    if (prec >= 0)
        snprintf(p, sizeof p, ".%d", prec);
    snprintf(out, cap, "%%%s%s%s%s%s%c", s->flags, minus, w, p, mods[s->mod], s->conv);
}

/*
 * Append to r what f[0..n) formats to, taking the arguments from *ap. Each conversion is
 * formatted alone, so what an argument holds is only ever data. A conversion this walker does not
 * know (the compiler's format check rules those out) is copied as text, and every later one too,
 * since its argument's type is unknown.
 */
static void format_part(struct raw *r, const char *f, size_t n, va_list *ap, int saved_errno,
                        bool *lost)
{
    size_t i = 0;
    while (i < n) {
        if (f[i] != '%' || *lost) {
            size_t j = i + 1;
            while (j < n && (f[j] != '%' || *lost))
                j++;
            raw_put(r, f + i, j - i);
            i = j;
            continue;
        }
        struct spec s = parse_spec(f + i);
        int width = s.width, prec = s.prec;
        if (s.star_width)
            width = va_arg(*ap, int);
        if (s.star_prec) {
            prec = va_arg(*ap, int);
            if (prec < 0)
                prec = -1;
        }
        char spec[48], tmp[512];
        spec_text(&s, width, prec, spec, sizeof spec);
        int k = -1;
        bool is_signed = false;
        switch (s.conv) {
        case '%':
            raw_put(r, "%", 1);
            break;
        case 'd':
        case 'i':
            is_signed = true;
            /* fall through */
        case 'o':
        case 'u':
        case 'x':
        case 'X':
            switch (s.mod) {
            case LEN_NONE:
            case LEN_HH:
            case LEN_H:
                k = is_signed ? snprintf(tmp, sizeof tmp, spec, va_arg(*ap, int))
                              : snprintf(tmp, sizeof tmp, spec, va_arg(*ap, unsigned));
                break;
            case LEN_L:
                k = is_signed ? snprintf(tmp, sizeof tmp, spec, va_arg(*ap, long))
                              : snprintf(tmp, sizeof tmp, spec, va_arg(*ap, unsigned long));
                break;
            case LEN_LL:
            case LEN_BIG_L:
                k = is_signed ? snprintf(tmp, sizeof tmp, spec, va_arg(*ap, long long))
                              : snprintf(tmp, sizeof tmp, spec, va_arg(*ap, unsigned long long));
                break;
            case LEN_J:
                k = is_signed ? snprintf(tmp, sizeof tmp, spec, va_arg(*ap, intmax_t))
                              : snprintf(tmp, sizeof tmp, spec, va_arg(*ap, uintmax_t));
                break;
            case LEN_Z:
                k = is_signed ? snprintf(tmp, sizeof tmp, spec, va_arg(*ap, ssize_t))
                              : snprintf(tmp, sizeof tmp, spec, va_arg(*ap, size_t));
                break;
            case LEN_T:
                k = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, ptrdiff_t));
                break;
            }
            break;
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G':
        case 'a':
        case 'A':
            k = s.mod == LEN_BIG_L ? snprintf(tmp, sizeof tmp, spec, va_arg(*ap, long double))
                                   : snprintf(tmp, sizeof tmp, spec, va_arg(*ap, double));
            break;
        case 'c':
            k = s.mod == LEN_L ? snprintf(tmp, sizeof tmp, spec, va_arg(*ap, wint_t))
                               : snprintf(tmp, sizeof tmp, spec, va_arg(*ap, int));
            break;
        case 'p':
            k = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, void *));
            break;
        case 'n':
            (void)va_arg(*ap, void *); /* writes nothing: a log line stores no counts */
            break;
        case 'm': {
            char buf[256];
            const char *e = strerror_r(saved_errno, buf, sizeof buf);
            raw_put(r, e, strlen(e));
            break;
        }
        case 's':
            if (s.mod == LEN_L) {
                k = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, const wchar_t *));
            } else if (width > 0) {
                k = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, const char *));
            } else {
                /* Straight in, reading no more of the string than can be kept. */
                const char *v = va_arg(*ap, const char *);
                if (v == NULL)
                    v = "(null)";
                size_t room = sizeof r->s - r->len + 1;
                size_t max = prec >= 0 && (size_t)prec < room ? (size_t)prec : room;
                raw_put(r, v, strnlen(v, max));
            }
            break;
        default:
            *lost = true;
            raw_put(r, f + i, s.len);
            break;
        }
        if (k > 0)
            raw_put(r, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
        if (k >= (int)sizeof tmp)
            r->cut = true;
        i += s.len > 0 ? s.len : 1;
    }
}

/* ---- the line ---- */

struct line {
    char s[DFS_LOG_LINE_MAX];
    size_t len;
    bool truncated; /* a field was dropped */
};

static bool bare_ok(const struct raw *v)
{
    if (v->len == 0 || v->cut || v->len > DFS_LOG_VALUE_MAX)
        return false;
    for (size_t i = 0; i < v->len; i++) {
        unsigned char c = (unsigned char)v->s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '=' || c == '\\')
            return false;
    }
    return true;
}

/*
 * Write v as a logfmt value into out[DFS_LOG_VALUE_MAX]: bare when it may be, else quoted and
 * escaped, cut to fit with "..." before the closing quote. Returns the length.
 */
static size_t write_value(const struct raw *v, bool quote, char *out)
{
    if (!quote && bare_ok(v)) {
        memcpy(out, v->s, v->len);
        return v->len;
    }
    const size_t stop = DFS_LOG_VALUE_MAX - 4; /* room for ...\" */
    size_t n = 0, i = 0;
    out[n++] = '"';
    while (i < v->len) {
        unsigned char c = (unsigned char)v->s[i];
        char e[8];
        size_t elen, take = 1;
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            elen = 2;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            e[0] = '\\';
            e[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            elen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(e, sizeof e, "\\x%02x", c);
            elen = 4;
        } else if (c < 0x80) {
            e[0] = (char)c;
            elen = 1;
        } else if ((take = dfs_utf8_char_len(v->s + i, v->len - i)) > 0) {
            memcpy(e, v->s + i, take);
            elen = take;
        } else {
            take = 1; /* not UTF-8: the byte, as a number */
            snprintf(e, sizeof e, "\\x%02x", c);
            elen = 4;
        }
        if (n + elen > stop)
            break;
        memcpy(out + n, e, elen);
        n += elen;
        i += take;
    }
    if (i < v->len || v->cut) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n++] = '"';
    return n;
}

/* Append " key=value" when it fits (leaving room for TRUNCATED and the newline), else drop it. */
static void add_field(struct line *l, const char *key, size_t klen, const struct raw *v, bool quote)
{
    char val[DFS_LOG_VALUE_MAX];
    size_t vlen = write_value(v, quote, val);
    size_t need = (l->len > 0 ? 1 : 0) + klen + 1 + vlen;
    if (l->len + need + sizeof TRUNCATED > sizeof l->s) {
        l->truncated = true;
        return;
    }
    if (l->len > 0)
        l->s[l->len++] = ' ';
    memcpy(l->s + l->len, key, klen);
    l->len += klen;
    l->s[l->len++] = '=';
    memcpy(l->s + l->len, val, vlen);
    l->len += vlen;
}

static void add_text(struct line *l, const char *key, const char *text, bool quote)
{
    struct raw v = {.len = 0};
    raw_put(&v, text, strnlen(text, sizeof v.s + 1));
    add_field(l, key, strlen(key), &v, quote);
}

/* A field the logger adds after the caller's (dfs_log_errno's). */
struct extra {
    const char *key;
    const char *value;
};

static void vlog(enum dfs_log_level level, const struct extra *extra, size_t nextra,
                 const char *fmt, va_list ap)
{
    int saved_errno = errno;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    struct line l = {.len = 0};
    add_text(&l, "ts", when, false);
    add_text(&l, "level", level_names[level], false);
    add_text(&l, "prog", atomic_load(&log_prog), false);

    va_list args;
    va_copy(args, ap);
    bool lost = false;
    /* msg: up to the first field (none when the format starts with one). */
    size_t at = key_len(fmt) > 0 ? 0 : next_field(fmt, 0);
    struct raw v = {.len = 0};
    format_part(&v, fmt, at, &args, saved_errno, &lost);
    add_field(&l, "msg", 3, &v, true);
    while (fmt[at] != '\0') {
        size_t k = at == 0 && fmt[0] != ' ' ? 0 : at + 1; /* the key */
        size_t klen = key_len(fmt + k);
        size_t vstart = k + klen + 1;
        size_t end = next_field(fmt, vstart);
        size_t a = vstart, b = end;
        /* A value the format quotes itself: those quotes are ours to write. */
        if (b - a >= 2 && fmt[a] == '"' && fmt[b - 1] == '"') {
            a++;
            b--;
        }
        v.len = 0;
        v.cut = false;
        format_part(&v, fmt + a, b - a, &args, saved_errno, &lost);
        add_field(&l, fmt + k, klen, &v, false);
        at = end;
    }
    va_end(args);
    for (size_t i = 0; i < nextra; i++)
        add_text(&l, extra[i].key, extra[i].value, false);
    if (l.truncated) {
        memcpy(l.s + l.len, TRUNCATED, sizeof TRUNCATED - 1);
        l.len += sizeof TRUNCATED - 1;
    }
    l.s[l.len++] = '\n';
    ssize_t w = write(STDERR_FILENO, l.s, l.len);
    (void)w;
    errno = saved_errno;
}

void dfs_log(enum dfs_log_level level, const char *fmt, ...)
{
    if (!dfs_log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, NULL, 0, fmt, ap);
    va_end(ap);
}

void dfs_log_errno_at(const char *file, int line, enum dfs_log_level level, int errnum,
                      const char *fmt, ...)
{
    if (!dfs_log_enabled(level))
        return;
    const char *base = strrchr(file, '/');
    char num[16], at[256], buf[256];
    snprintf(num, sizeof num, "%d", errnum);
    snprintf(at, sizeof at, "%s:%d", base != NULL ? base + 1 : file, line);
    const struct extra extra[] = {
        {"errno", num},
        {"err", strerror_r(errnum, buf, sizeof buf)},
        {"at", at},
    };
    va_list ap;
    va_start(ap, fmt);
    vlog(level, extra, sizeof extra / sizeof extra[0], fmt, ap);
    va_end(ap);
}
