/*
 * Fuzz target: what people type for sizes, rates and erasure codes (common/units.h): every
 * --throttle, --max-rate, --forward-rate, --repair-rate, --scrub-rate, --ec and the gateway's
 * ec= go through these. Input: a selector byte, then the text (NUL-terminated copy).
 *
 * Invariants: a parsed size is below 2^63, a parsed rate at least 1 byte/s; an erasure code has
 * K >= 1, M >= 1 and K + M within the width asked for, and spells the same numbers back; the
 * formatters never write past the buffer they are given (ASan watches the exact-size buffer).
 */
#include "common/err.h"
#include "common/units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void broken(const char *what, const char *s)
{
    fprintf(stderr, "fuzz: broken promise: %s: \"%s\"\n", what, s);
    abort();
}

static void check_refusal(int rc, char *msg, const char *what, const char *s)
{
    if (rc == DFS_OK)
        return;
    if (rc != DFS_EINVAL || msg == NULL || msg[0] == '\0')
        broken(what, s);
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t sel = data[0];
    char *s = malloc(size);
    if (s == NULL)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';

    uint64_t v = 0;
    char *msg = NULL;
    int rc = dfs_parse_size(s, &v, &msg);
    check_refusal(rc, msg, "size refused without a message", s);
    if (rc == DFS_OK && v > (1ull << 63))
        broken("size above 2^63", s);

    msg = NULL;
    rc = dfs_parse_rate(s, &v, &msg);
    check_refusal(rc, msg, "rate refused without a message", s);
    if (rc == DFS_OK && v < 1)
        broken("rate below 1 byte/s", s);

    uint32_t width = sel % 40, k = 0, m = 0;
    if (dfs_parse_ec(s, width, &k, &m) == DFS_OK) {
        char back[32];
        snprintf(back, sizeof back, "%u+%u", k, m);
        if (k < 1 || m < 1 || (uint64_t)k + m > width || strtoul(s, NULL, 10) != k ||
            strtoul(strchr(s, '+') + 1, NULL, 10) != m)
            broken("erasure code out of its bounds or not what was typed", s);
    }

    /* The formatters, into a buffer of exactly the size they are told (1..32 bytes). */
    size_t cap = 1 + sel % 32;
    char *buf = malloc(cap);
    uint64_t x = 0;
    memcpy(&x, data + 1, size - 1 < sizeof x ? size - 1 : sizeof x);
    double d;
    memcpy(&d, &x, sizeof d);
    if (buf != NULL) {
        dfs_format_size(x, buf, cap);
        dfs_format_rate(d, buf, cap);
        dfs_format_duration(d, buf, cap);
        free(buf);
    }
    free(s);
    return 0;
}
