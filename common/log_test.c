/* Tests of the structured logger: what reaches stderr, and that hostile values stay values. */
#include "common/log.h"

#include "common/err.h"

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- capturing stderr ---- */

struct capture {
    FILE *tmp;
    int saved;
};

static struct capture capture_begin(void)
{
    struct capture c;
    c.tmp = tmpfile();
    assert_non_null(c.tmp);
    c.saved = dup(STDERR_FILENO);
    assert_true(c.saved >= 0);
    assert_true(dup2(fileno(c.tmp), STDERR_FILENO) >= 0);
    return c;
}

/* What was written since capture_begin (caller frees). */
static char *capture_end(struct capture c)
{
    dup2(c.saved, STDERR_FILENO);
    close(c.saved);
    off_t n = lseek(fileno(c.tmp), 0, SEEK_END);
    assert_true(n >= 0);
    char *buf = calloc(1, (size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(pread(fileno(c.tmp), buf, (size_t)n, 0), n);
    fclose(c.tmp);
    return buf;
}

/* ---- a strict logfmt parser (the grammar log.h promises) ---- */

#define MAX_FIELDS 32

struct field {
    char key[64];
    char value[8192]; /* decoded */
    size_t vlen;
    bool quoted;
};

struct parsed {
    struct field f[MAX_FIELDS];
    size_t n;
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/*
 * Parse one line (without its newline) strictly: key=value pairs separated by single spaces; keys
 * [a-z0-9_]+, unique; a value bare (printable ASCII except '"', '=', '\', at least one byte) or
 * quoted with only \" \\ \n \r \t \xHH escapes and no raw control bytes. Returns false on any
 * deviation.
 */
static bool parse_line(const char *s, size_t len, struct parsed *out)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    while (i < len) {
        if (out->n == MAX_FIELDS)
            return false;
        struct field *f = &out->f[out->n];
        size_t k = 0;
        while (i < len &&
               ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) {
            if (k + 1 >= sizeof f->key)
                return false;
            f->key[k++] = s[i++];
        }
        if (k == 0 || i >= len || s[i] != '=')
            return false;
        i++;
        for (size_t j = 0; j < out->n; j++)
            if (strcmp(out->f[j].key, f->key) == 0)
                return false;
        if (i < len && s[i] == '"') {
            f->quoted = true;
            i++;
            for (;;) {
                if (i >= len)
                    return false;
                unsigned char c = (unsigned char)s[i];
                if (c == '"') {
                    i++;
                    break;
                }
                if (c < 0x20 || c == 0x7f)
                    return false;
                char d = (char)c;
                if (c == '\\') {
                    if (i + 1 >= len)
                        return false;
                    char e = s[i + 1];
                    i += 2;
                    if (e == '"' || e == '\\')
                        d = e;
                    else if (e == 'n')
                        d = '\n';
                    else if (e == 'r')
                        d = '\r';
                    else if (e == 't')
                        d = '\t';
                    else if (e == 'x' && i + 1 < len && hexval(s[i]) >= 0 &&
                             hexval(s[i + 1]) >= 0) {
                        d = (char)(hexval(s[i]) * 16 + hexval(s[i + 1]));
                        i += 2;
                    } else
                        return false;
                } else {
                    i++;
                }
                if (f->vlen + 1 >= sizeof f->value)
                    return false;
                f->value[f->vlen++] = d;
            }
        } else {
            while (i < len && s[i] != ' ') {
                unsigned char c = (unsigned char)s[i];
                if (c <= 0x20 || c >= 0x7f || c == '"' || c == '=' || c == '\\')
                    return false;
                if (f->vlen + 1 >= sizeof f->value)
                    return false;
                f->value[f->vlen++] = s[i++];
            }
            if (f->vlen == 0)
                return false;
        }
        out->n++;
        if (i < len) {
            if (s[i] != ' ' || i + 1 == len)
                return false;
            i++;
        }
    }
    return out->n > 0;
}

static const struct field *get(const struct parsed *p, const char *key)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->f[i].key, key) == 0)
            return &p->f[i];
    return NULL;
}

/* The one line `out` must be: parsed, with ts/level/prog/msg first. */
static void parse_one(const char *out, struct parsed *p)
{
    size_t len = strlen(out);
    assert_true(len > 0);
    assert_true(len <= DFS_LOG_LINE_MAX);
    assert_int_equal(out[len - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + len - 1); /* exactly one line */
    if (!parse_line(out, len - 1, p))
        fail_msg("not strict logfmt: %s", out);
    assert_true(p->n >= 4);
    assert_string_equal(p->f[0].key, "ts");
    assert_string_equal(p->f[1].key, "level");
    assert_string_equal(p->f[2].key, "prog");
    assert_string_equal(p->f[3].key, "msg");
}

/* The keys after msg, space-separated ("" when none). */
static void field_keys(const struct parsed *p, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (size_t i = 4; i < p->n; i++) {
        strncat(buf, p->f[i].key, cap - strlen(buf) - 1);
        if (i + 1 < p->n)
            strncat(buf, " ", cap - strlen(buf) - 1);
    }
}

static void assert_value(const struct parsed *p, const char *key, const char *want)
{
    const struct field *f = get(p, key);
    if (f == NULL)
        fail_msg("no field %s", key);
    if (f->vlen != strlen(want) || memcmp(f->value, want, f->vlen) != 0)
        fail_msg("%s is '%.*s', not '%s'", key, (int)f->vlen, f->value, want);
}

/* ---- tests ---- */

static void test_lines_and_levels(void **state)
{
    (void)state;
    dfs_log_init("dfs-test", DFS_LOG_INFO);
    struct capture c = capture_begin();
    dfs_log(DFS_LOG_DEBUG, "hidden");
    dfs_log(DFS_LOG_INFO, "stored \"frag\"\nnext id=%s size=%d", "ab", 5);
    dfs_log_errno(DFS_LOG_ERROR, 2, "open failed path=%s", "/x");
    char *out = capture_end(c);
    assert_null(strstr(out, "hidden"));
    assert_non_null(
        strstr(out, "level=info prog=dfs-test msg=\"stored \\\"frag\\\"\\nnext\" id=ab size=5\n"));
    assert_non_null(strstr(out, "level=error prog=dfs-test msg=\"open failed\" path=/x errno=2 "
                                "err=\"No such file or directory\" at=log_test.c:"));
    assert_int_equal(strncmp(out, "ts=", 3), 0);
    free(out);
}

static void test_level_parse(void **state)
{
    (void)state;
    enum dfs_log_level l;
    assert_int_equal(dfs_log_level_parse("debug", &l), DFS_OK);
    assert_int_equal(l, DFS_LOG_DEBUG);
    assert_int_equal(dfs_log_level_parse("warning", &l), DFS_OK);
    assert_int_equal(l, DFS_LOG_WARN);
    assert_int_equal(dfs_log_level_parse("loud", &l), DFS_EINVAL);
}

/* The three forgeries: a value with a space, a name with a quote, a hostile id. */
static void test_hostile_values_stay_values(void **state)
{
    (void)state;
    dfs_log_init("dfs-test", DFS_LOG_DEBUG);
    struct parsed p;
    char keys[256];

    struct capture c = capture_begin();
    dfs_log(DFS_LOG_WARN, "refused method=%s code=%s reason=%s", "/dfs.v1.Metadata/DeleteFile",
            "permission denied", "role read_only may not delete");
    char *out = capture_end(c);
    parse_one(out, &p);
    assert_value(&p, "code", "permission denied");
    assert_value(&p, "reason", "role read_only may not delete");
    field_keys(&p, keys, sizeof keys);
    assert_string_equal(keys, "method code reason");
    free(out);

    /* A token name that tries to add a field, written the old way (quotes in the format). */
    const char *name = "x\" role=admin expires_ms=0 y=\"";
    c = capture_begin();
    dfs_log(DFS_LOG_INFO, "token created id=%s name=\"%s\" role=%s", "9e49", name, "read_only");
    out = capture_end(c);
    parse_one(out, &p);
    assert_value(&p, "name", name);
    assert_value(&p, "role", "read_only");
    field_keys(&p, keys, sizeof keys);
    assert_string_equal(keys, "id name role");
    free(out);

    /* A fragment id with spaces, newlines and a fake line after it. */
    const char *id = "abc status=OK peer=trusted\nts=2026-01-01T00:00:00.000Z level=error "
                     "prog=dfs-storage msg=\"forged\"";
    c = capture_begin();
    dfs_log(DFS_LOG_INFO, "get failed id=%s status=%s peer=%s err=%s", id, "INVALID_ARGUMENT",
            "ipv4:127.0.0.1:5555", "bad id");
    out = capture_end(c);
    parse_one(out, &p);
    assert_value(&p, "id", id);
    assert_value(&p, "status", "INVALID_ARGUMENT");
    assert_value(&p, "peer", "ipv4:127.0.0.1:5555");
    field_keys(&p, keys, sizeof keys);
    assert_string_equal(keys, "id status peer err");
    free(out);

    /* Text formatted into msg cannot end it either. */
    c = capture_begin();
    dfs_log(DFS_LOG_WARN, "http: %s", "bad request\" level=debug x=\\");
    out = capture_end(c);
    parse_one(out, &p);
    assert_int_equal(p.n, 4);
    assert_value(&p, "msg", "http: bad request\" level=debug x=\\");
    assert_value(&p, "level", "warn");
    free(out);
}

static void test_bytes_escaped_and_restored(void **state)
{
    (void)state;
    dfs_log_init("dfs-test", DFS_LOG_DEBUG);
    struct parsed p;
    /* Control bytes, DEL, a lone continuation byte, a truncated sequence, and real UTF-8. */
    const char v[] = "a\x01\x1b[31m\x7f\x80\xc3 b\tc\r\n\xc3\xa9\xe2\x82\xac";
    struct capture c = capture_begin();
    dfs_log(DFS_LOG_INFO, "x k=%s e=%s eq=%s bs=%s", v, "", "a=b", "a\\b");
    char *out = capture_end(c);
    parse_one(out, &p);
    assert_value(&p, "k", v);
    assert_value(&p, "e", "");
    assert_value(&p, "eq", "a=b");
    assert_value(&p, "bs", "a\\b");
    assert_non_null(strstr(out, " e=\"\""));
    assert_non_null(strstr(out, "\\x01\\x1b[31m\\x7f\\x80\\xc3 b\\tc\\r\\n\xc3\xa9\xe2\x82\xac"));
    free(out);
}

static void test_conversions_match_printf(void **state)
{
    (void)state;
    dfs_log_init("dfs-test", DFS_LOG_DEBUG);
    struct parsed p;
    uint64_t big = UINT64_MAX;
    int64_t neg = INT64_MIN;
    size_t z = 12345;
    char want[512];
    struct capture c = capture_begin();
    dfs_log(DFS_LOG_INFO,
            "n=%d of %u done a=%" PRIu64 " b=%" PRId64 " z=%zu x=%08x f=%.1f w=%*d p=%.*s "
            "pct=%d%% c=%c at=%s:%d g=%g l=%ld ll=%lld h=%hhu",
            -3, 7u, big, neg, z, 0xabcu, 2.25, 6, 42, 3, "abcdef", 50, 'Q', "file.c", 12, 1e-7, -5L,
            99LL, (unsigned char)200);
    char *out = capture_end(c);
    parse_one(out, &p);
    assert_value(&p, "n", "-3 of 7 done");
    snprintf(want, sizeof want, "%" PRIu64, big);
    assert_value(&p, "a", want);
    snprintf(want, sizeof want, "%" PRId64, neg);
    assert_value(&p, "b", want);
    assert_value(&p, "z", "12345");
    assert_value(&p, "x", "00000abc");
    assert_value(&p, "f", "2.2");
    assert_value(&p, "w", "    42");
    assert_value(&p, "p", "abc");
    assert_value(&p, "pct", "50%");
    assert_value(&p, "c", "Q");
    assert_value(&p, "at", "file.c:12");
    assert_value(&p, "g", "1e-07");
    assert_value(&p, "l", "-5");
    assert_value(&p, "ll", "99");
    assert_value(&p, "h", "200");
    /* "n=" starts the format: msg is empty, and a space flag is not a field separator. */
    assert_value(&p, "msg", "");
    free(out);

    const char *volatile nul = NULL; /* hidden from the compiler's own null check */
    c = capture_begin();
    dfs_log(DFS_LOG_INFO, "sp=% d null=%s", 5, nul);
    out = capture_end(c);
    parse_one(out, &p);
    assert_value(&p, "sp", " 5");
    assert_value(&p, "null", "(null)");
    free(out);
}

static void test_long_values_cut_and_lines_bounded(void **state)
{
    (void)state;
    dfs_log_init("dfs-test", DFS_LOG_DEBUG);
    struct parsed p;
    size_t n = 10 * 1024;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'a', n);
    big[n] = '\0';
    struct capture c = capture_begin();
    dfs_log(DFS_LOG_INFO, "put failed path=%s status=%s", big, "INVALID_ARGUMENT");
    char *out = capture_end(c);
    parse_one(out, &p);
    const struct field *f = get(&p, "path");
    assert_non_null(f);
    assert_true(f->quoted);
    assert_true(f->vlen + 2 <= DFS_LOG_VALUE_MAX);
    assert_true(f->vlen > DFS_LOG_VALUE_MAX / 2);
    assert_memory_equal(f->value + f->vlen - 3, "...", 3);
    assert_value(&p, "status", "INVALID_ARGUMENT");
    assert_null(get(&p, "truncated"));
    free(out);

    /* Escapes count against the limit too, and the fields that do not fit are dropped. */
    memset(big, '\x01', n);
    c = capture_begin();
    dfs_log(DFS_LOG_INFO, "%s a=%s b=%s c=%s d=%s e=%s f=%s", big, big, big, big, big, big, "last");
    out = capture_end(c);
    parse_one(out, &p);
    assert_value(&p, "truncated", "true");
    assert_non_null(get(&p, "a"));
    assert_null(get(&p, "e"));
    assert_value(&p, "f", "last"); /* short: it still fits */
    free(out);
    free(big);
}

/* Formats that still quote their own values (the old style) come out the same as bare ones. */
static void test_old_style_quotes(void **state)
{
    (void)state;
    dfs_log_init("dfs-test", DFS_LOG_DEBUG);
    struct capture c = capture_begin();
    dfs_log(DFS_LOG_INFO, "a x=\"%s\" y=%s z=\"two words\"", "v", "v");
    char *out = capture_end(c);
    assert_non_null(strstr(out, " msg=\"a\" x=v y=v z=\"two words\"\n"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_and_levels),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_hostile_values_stay_values),
        cmocka_unit_test(test_bytes_escaped_and_restored),
        cmocka_unit_test(test_conversions_match_printf),
        cmocka_unit_test(test_long_values_cut_and_lines_bounded),
        cmocka_unit_test(test_old_style_quotes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
