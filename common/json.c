/* A streaming JSON writer. */
#include "common/json.h"

#include "common/utf8.h"

#include <math.h>
#include <string.h>

void dfs_json_init(dfs_json *j, FILE *out)
{
    j->out = out;
    j->depth = 0;
    j->first[0] = true;
    j->after_key = false;
}

/* Separator before a value or key at the current level. */
static void sep(dfs_json *j)
{
    if (j->after_key) {
        j->after_key = false;
        return;
    }
    if (!j->first[j->depth])
        fputc(',', j->out);
    j->first[j->depth] = false;
}

static void open_scope(dfs_json *j, char c)
{
    sep(j);
    fputc(c, j->out);
    if (j->depth < 31)
        j->depth++;
    j->first[j->depth] = true;
}

void dfs_json_begin_object(dfs_json *j)
{
    open_scope(j, '{');
}

void dfs_json_end_object(dfs_json *j)
{
    fputc('}', j->out);
    if (j->depth > 0)
        j->depth--;
}

void dfs_json_begin_array(dfs_json *j)
{
    open_scope(j, '[');
}

void dfs_json_end_array(dfs_json *j)
{
    fputc(']', j->out);
    if (j->depth > 0)
        j->depth--;
}

static void write_string(FILE *out, const char *s)
{
    fputc('"', out);
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    while (*p != '\0') {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
            p++;
        } else if (c == '\n') {
            fputs("\\n", out);
            p++;
        } else if (c == '\t') {
            fputs("\\t", out);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u%04x", c);
            p++;
        } else {
            /* Overlong forms, surrogates and code points above U+10FFFF are not UTF-8 either
               (common/utf8.h): a strict JSON reader refuses them (found by fuzz/http). */
            size_t n = dfs_utf8_char_len((const char *)p, strnlen((const char *)p, 4));
            if (n == 0) {
                fputs("\\ufffd", out);
                p++;
            } else {
                fwrite(p, 1, n, out);
                p += n;
            }
        }
    }
    fputc('"', out);
}

void dfs_json_key(dfs_json *j, const char *key)
{
    sep(j);
    write_string(j->out, key);
    fputc(':', j->out);
    j->after_key = true;
}

void dfs_json_string(dfs_json *j, const char *s)
{
    sep(j);
    write_string(j->out, s);
}

void dfs_json_uint(dfs_json *j, uint64_t v)
{
    sep(j);
    fprintf(j->out, "%llu", (unsigned long long)v);
}

void dfs_json_int(dfs_json *j, int64_t v)
{
    sep(j);
    fprintf(j->out, "%lld", (long long)v);
}

void dfs_json_double(dfs_json *j, double v)
{
    sep(j);
    if (isfinite(v))
        fprintf(j->out, "%.6g", v);
    else
        fputs("null", j->out);
}

void dfs_json_bool(dfs_json *j, bool v)
{
    sep(j);
    fputs(v ? "true" : "false", j->out);
}

void dfs_json_null(dfs_json *j)
{
    sep(j);
    fputs("null", j->out);
}

void dfs_json_finish(dfs_json *j)
{
    fputc('\n', j->out);
}
