/* Bearer tokens (format in token.h). */
#include "common/token.h"

#include "common/err.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static const char prefix[] = "dfs1.";

/* Whether s[0..n) are lower-case hex digits (s may go on after them). */
static bool hex_run(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

int dfs_token_generate(char out[DFS_TOKEN_LEN + 1])
{
    uint8_t raw[(DFS_TOKEN_ID_HEX + DFS_TOKEN_SECRET_HEX) / 2];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t r = getrandom(raw + got, sizeof raw - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return DFS_EIO;
        got += (size_t)r;
    }
    char *p = out;
    memcpy(p, prefix, 5);
    p += 5;
    for (size_t i = 0; i < sizeof raw; i++) {
        if (i == DFS_TOKEN_ID_HEX / 2)
            *p++ = '.';
        p += snprintf(p, 3, "%02x", raw[i]);
    }
    *p = '\0';
    OPENSSL_cleanse(raw, sizeof raw);
    return DFS_OK;
}

int dfs_token_parse(const char *token, char id[DFS_TOKEN_ID_HEX + 1],
                    uint8_t hash[DFS_TOKEN_HASH_LEN], char **errmsg)
{
    if (token == NULL || strnlen(token, DFS_TOKEN_LEN + 1) != DFS_TOKEN_LEN ||
        memcmp(token, prefix, 5) != 0 || token[5 + DFS_TOKEN_ID_HEX] != '.' ||
        !hex_run(token + 5, DFS_TOKEN_ID_HEX) ||
        !hex_run(token + 5 + DFS_TOKEN_ID_HEX + 1, DFS_TOKEN_SECRET_HEX))
        return dfs_seterr(errmsg, DFS_EUNAUTH, "malformed token (expected dfs1.<16 hex>.<64 hex>)");
    memcpy(id, token + 5, DFS_TOKEN_ID_HEX);
    id[DFS_TOKEN_ID_HEX] = '\0';
    SHA256((const unsigned char *)token + 5 + DFS_TOKEN_ID_HEX + 1, DFS_TOKEN_SECRET_HEX, hash);
    return DFS_OK;
}
