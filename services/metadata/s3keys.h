/*
 * S3 access keys of dfs tokens (gateway/s3/DESIGN.md, "Access keys"). A token's access key id is
 * "DFS" and its id in upper-case hex; its secret is derived, never stored:
 *
 *   secret = base64url(HMAC-SHA256(master, token_id))[0:40]
 *
 * where master is 32 random bytes in a file only the metadata service reads (--s3-key-file). A
 * copy of the catalog therefore gives no S3 secret away, and the gateway, which checks
 * signatures, is handed only a day's signing key (dfs_s3keys_signing_key), never a secret.
 */
#ifndef DFS_SERVICES_METADATA_S3KEYS_H
#define DFS_SERVICES_METADATA_S3KEYS_H

#include "common/token.h"

#include <stdint.h>

#define DFS_S3KEYS_MASTER_LEN  32
#define DFS_S3KEYS_ID_LEN      (3 + DFS_TOKEN_ID_HEX) /* "DFS" + 16 hex digits */
#define DFS_S3KEYS_SECRET_LEN  40
#define DFS_S3KEYS_SIGNING_LEN 32

/*
 * The master key in `path`: made (32 random bytes, written as 64 hex digits and a newline, mode
 * 0600) when the file does not exist, read otherwise. Returns 0 and master, or DFS_EIO /
 * DFS_EINVAL (a file that is not 64 hex digits) with *errmsg.
 */
int dfs_s3keys_load(const char *path, uint8_t master[DFS_S3KEYS_MASTER_LEN], char **errmsg);

/* The access key id of a token id (16 lower-case hex digits) into out. */
void dfs_s3keys_access_key_id(const char *token_id, char out[DFS_S3KEYS_ID_LEN + 1]);

/* The token id of an access key id ("DFS" + 16 hex digits, either case), lower-case, into
   token_id. Returns 0, or DFS_EINVAL for anything else. */
int dfs_s3keys_token_id(const char *access_key_id, char token_id[DFS_TOKEN_ID_HEX + 1]);

/* The secret of a token id under master into out. 0 or DFS_EINTERNAL (OpenSSL failed). */
int dfs_s3keys_secret(const uint8_t master[DFS_S3KEYS_MASTER_LEN], const char *token_id,
                      char out[DFS_S3KEYS_SECRET_LEN + 1]);

/* SigV4's signing key of a secret for (date, region, service) into key. 0 or DFS_EINTERNAL. */
int dfs_s3keys_signing_key(const char *secret, const char *date, const char *region,
                           const char *service, uint8_t key[DFS_S3KEYS_SIGNING_LEN]);

#endif /* DFS_SERVICES_METADATA_S3KEYS_H */
