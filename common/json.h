/* A streaming JSON writer (the CLI's --json, the gateway's replies, benchmark results): correct
   escaping and commas, nothing more. */
#ifndef DFS_COMMON_JSON_H
#define DFS_COMMON_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/*
 * Values are written as they come; the writer tracks nesting (up to 32 levels) to place commas and
 * requires a key before every value inside an object. Strings are escaped per RFC 8259 (bytes that
 * are not valid UTF-8 become U+FFFD). The writer lives on the caller's stack.
 */
typedef struct dfs_json {
    FILE *out;
    int depth;
    bool first[32];
    bool after_key;
} dfs_json;

void dfs_json_init(dfs_json *j, FILE *out);
void dfs_json_begin_object(dfs_json *j);
void dfs_json_end_object(dfs_json *j);
void dfs_json_begin_array(dfs_json *j);
void dfs_json_end_array(dfs_json *j);
void dfs_json_key(dfs_json *j, const char *key);
void dfs_json_string(dfs_json *j, const char *s);
void dfs_json_uint(dfs_json *j, uint64_t v);
void dfs_json_int(dfs_json *j, int64_t v);
void dfs_json_double(dfs_json *j, double v);
void dfs_json_bool(dfs_json *j, bool v);
void dfs_json_null(dfs_json *j);
/* Ends the document with a newline. */
void dfs_json_finish(dfs_json *j);

#endif /* DFS_COMMON_JSON_H */
