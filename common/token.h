/* Bearer tokens: their text form, and the hash the catalog keeps instead of the secret. */
#ifndef DFS_COMMON_TOKEN_H
#define DFS_COMMON_TOKEN_H

#include <stddef.h>
#include <stdint.h>

/*
 * A token reads "dfs1.<id>.<secret>": id is 16 lower-case hex digits (64 random bits, public: it
 * names the token in listings and revocations), secret is 64 lower-case hex digits (256 random
 * bits). The catalog stores SHA-256(secret) only; a secret this long needs no slow hash, and
 * checking stays cheap enough for every call.
 */
#define DFS_TOKEN_ID_HEX     16
#define DFS_TOKEN_SECRET_HEX 64
#define DFS_TOKEN_LEN        (5 + DFS_TOKEN_ID_HEX + 1 + DFS_TOKEN_SECRET_HEX)
#define DFS_TOKEN_HASH_LEN   32

/* A fresh token in out[DFS_TOKEN_LEN + 1] (getrandom(2)). Returns 0 or DFS_EIO. */
int dfs_token_generate(char out[DFS_TOKEN_LEN + 1]);

/*
 * Split a token into its id (id[DFS_TOKEN_ID_HEX + 1]) and the SHA-256 of its secret. Returns 0,
 * or DFS_EUNAUTH for anything that is not a well-formed token (the message never echoes it).
 */
int dfs_token_parse(const char *token, char id[DFS_TOKEN_ID_HEX + 1],
                    uint8_t hash[DFS_TOKEN_HASH_LEN], char **errmsg);

#endif /* DFS_COMMON_TOKEN_H */
