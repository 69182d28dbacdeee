/* Random identifiers. */
#include "common/id.h"

#include "common/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

int dfs_id_random(char out[DFS_ID_HEX + 1])
{
    unsigned char raw[DFS_ID_HEX / 2];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return DFS_EIO;
        }
        got += (size_t)n;
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[DFS_ID_HEX] = '\0';
    return DFS_OK;
}

bool dfs_id_is_hex(const char *s, size_t len)
{
    if (s == NULL)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return s[len] == '\0';
}

bool dfs_id_valid(const char *s)
{
    return dfs_id_is_hex(s, DFS_ID_HEX);
}

bool dfs_fragment_id_valid(const char *s)
{
    return dfs_id_is_hex(s, DFS_FRAGMENT_ID_HEX);
}

void dfs_fragment_id(const char *file_id, uint32_t index, char out[DFS_FRAGMENT_ID_HEX + 1])
{
    memcpy(out, file_id, DFS_ID_HEX);
    snprintf(out + DFS_ID_HEX, DFS_FRAGMENT_ID_HEX - DFS_ID_HEX + 1, "%08x", index);
}
