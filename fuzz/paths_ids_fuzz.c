/*
 * Fuzz target: the rules that keep names safe. Remote paths and listing prefixes (common/path.h),
 * node, file and fragment ids (common/id.h, which keep storage paths inside the data directory),
 * host:port addresses (common/addr.h) and UTF-8 (common/utf8.h, checked against a
 * second, independent decoder written here).
 *
 * Invariants checked on every input, beside the sanitizers: a canonical path is canonical again
 * unchanged, starts with '/', has no empty, "." or ".." component, no control character, is
 * valid UTF-8 and at most DFS_PATH_MAX bytes; an id is valid exactly when it is the right number
 * of lower-case hex digits; an accepted host:port ends in ":<1..65535>".
 */
#include "common/addr.h"
#include "common/err.h"
#include "common/id.h"
#include "common/path.h"
#include "common/utf8.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void broken(const char *what, const char *s)
{
    fprintf(stderr, "fuzz: broken promise: %s: \"%s\"\n", what, s);
    abort();
}

/* UTF-8 by decoding each code point and checking it, the other way round from common/utf8.c. */
static bool utf8_reference(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n)
            return false;
        unsigned long cp = len == 1 ? c : c & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        static const unsigned long min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static void check_canonical(const char *in, const char *out, bool prefix)
{
    size_t n = strlen(out);
    if (out[0] != '/' || n > DFS_PATH_MAX)
        broken("canonical path: not absolute or too long", out);
    if (!dfs_utf8_valid(out, n, NULL))
        broken("canonical path: not UTF-8", out);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            broken("canonical path: control character", out);
    if (strstr(out, "//") != NULL)
        broken("canonical path: an empty component", out);
    if (!prefix && n > 1 && out[n - 1] == '/')
        broken("canonical path: trailing '/'", out);
    const char *p = out;
    while (*p != '\0') {
        p++;
        const char *e = strchr(p, '/');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            broken("canonical path: a '.' or '..' component", out);
        if (len > DFS_NAME_MAX)
            broken("canonical path: a component too long", out);
        p += len;
    }
    char *again = NULL;
    int rc = prefix ? dfs_path_prefix_canon(out, &again, NULL) : dfs_path_canon(out, &again, NULL);
    if (rc != DFS_OK || strcmp(again, out) != 0)
        broken("canonical path: not canonical again", in);
    free(again);
}

static void paths(const char *s)
{
    for (int prefix = 0; prefix < 2; prefix++) {
        char *out = NULL, *msg = NULL;
        int rc = prefix ? dfs_path_prefix_canon(s, &out, &msg) : dfs_path_canon(s, &out, &msg);
        if (rc == DFS_OK) {
            if (out == NULL || msg != NULL)
                broken("path: accepted without a result, or with a message", s);
            check_canonical(s, out, prefix);
            free(out);
        } else {
            if (rc != DFS_EINVAL || out != NULL || msg == NULL)
                broken("path: refused without DFS_EINVAL and a message", s);
            free(msg);
        }
    }
}

static bool all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static void ids(const char *s, size_t n)
{
    bool hex = all_hex(s, n);
    if (dfs_id_valid(s) != (n == DFS_ID_HEX && hex))
        broken("id", s);
    if (dfs_fragment_id_valid(s) != (n == DFS_FRAGMENT_ID_HEX && hex))
        broken("fragment id", s);
    if (dfs_id_is_hex(s, n) != hex)
        broken("hex", s);
    if (dfs_id_valid(s)) {
        char frag[DFS_FRAGMENT_ID_HEX + 1];
        dfs_fragment_id(s, (uint32_t)n * 2654435761u, frag);
        if (!dfs_fragment_id_valid(frag) || memcmp(frag, s, DFS_ID_HEX) != 0)
            broken("fragment id of a valid id", frag);
    }
}

static void hostport(const char *s)
{
    if (!dfs_addr_valid(s, 255))
        return;
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || strlen(s) > 255)
        broken("host:port accepted without a host, a port or within 255 bytes", s);
    char *end = NULL;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535 || colon[1] < '0' || colon[1] > '9')
        broken("host:port accepted with a bad port", s);
    for (const char *p = s; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            broken("host:port accepted with a space or a control character", s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dfs_utf8_valid((const char *)data, size, NULL) != utf8_reference(data, size))
        broken("utf8: the two decoders disagree", "");
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    size_t n = strlen(s); /* up to the first NUL, as a C string from protobuf-c */
    paths(s);
    ids(s, n);
    hostport(s);
    free(s);
    return 0;
}
