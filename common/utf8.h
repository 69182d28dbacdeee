/* UTF-8 well-formedness, as proto3 requires of every string field and dfs of every path. */
#ifndef DFS_COMMON_UTF8_H
#define DFS_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Whether s[0..len) is well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence. NUL bytes are well-formed
 * UTF-8; callers that refuse them check separately. *bad_at (may be NULL) receives the offset of
 * the first byte that is not, on false.
 */
bool dfs_utf8_valid(const char *s, size_t len, size_t *bad_at);

/*
 * Length (1..4) of the well-formed UTF-8 sequence that starts s[0..len), or 0 when none does
 * (by the same rules; len 0 is 0). For writers that replace what is not UTF-8 and copy the rest.
 */
size_t dfs_utf8_char_len(const char *s, size_t len);

#endif /* DFS_COMMON_UTF8_H */
