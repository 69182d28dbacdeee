/* S3 access keys derived from dfs tokens: see s3keys.h. */
#include "services/metadata/s3keys.h"

#include "common/err.h"
#include "services/daemon/daemon.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int dfs_s3keys_load(const char *path, uint8_t master[DFS_S3KEYS_MASTER_LEN], char **errmsg)
{
    char line[2 * DFS_S3KEYS_MASTER_LEN + 2];
    FILE *f = fopen(path, "re");
    if (f == NULL && errno != ENOENT)
        return dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot read the S3 key file %s", path);
    if (f == NULL) {
        if (RAND_bytes(master, DFS_S3KEYS_MASTER_LEN) != 1)
            return dfs_seterr(errmsg, DFS_EINTERNAL, "cannot make a random S3 master key");
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < DFS_S3KEYS_MASTER_LEN; i++) {
            line[2 * i] = hex[master[i] >> 4];
            line[2 * i + 1] = hex[master[i] & 15];
        }
        line[2 * DFS_S3KEYS_MASTER_LEN] = '\n';
        line[2 * DFS_S3KEYS_MASTER_LEN + 1] = '\0';
        int rc = dfs_daemon_write_file_mode(path, line, 0600, errmsg);
        OPENSSL_cleanse(line, sizeof line);
        return rc;
    }
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
        line[--n] = '\0';
    int rc = DFS_OK;
    if (n != 2 * DFS_S3KEYS_MASTER_LEN)
        rc = DFS_EINVAL;
    for (int i = 0; rc == DFS_OK && i < DFS_S3KEYS_MASTER_LEN; i++) {
        int hi = hexval(line[2 * i]), lo = hexval(line[2 * i + 1]);
        if (hi < 0 || lo < 0)
            rc = DFS_EINVAL;
        else
            master[i] = (uint8_t)(hi << 4 | lo);
    }
    OPENSSL_cleanse(line, sizeof line);
    if (rc != DFS_OK) {
        OPENSSL_cleanse(master, DFS_S3KEYS_MASTER_LEN);
        return dfs_seterr(errmsg, rc, "the S3 key file %s does not hold 64 hex digits", path);
    }
    return DFS_OK;
}

void dfs_s3keys_access_key_id(const char *token_id, char out[DFS_S3KEYS_ID_LEN + 1])
{
    size_t i = 0;
    memcpy(out, "DFS", 3);
    for (; i < DFS_TOKEN_ID_HEX && token_id[i] != '\0'; i++)
        out[3 + i] = (char)toupper((unsigned char)token_id[i]);
    out[3 + i] = '\0';
}

int dfs_s3keys_token_id(const char *access_key_id, char token_id[DFS_TOKEN_ID_HEX + 1])
{
    if (strlen(access_key_id) != DFS_S3KEYS_ID_LEN || strncmp(access_key_id, "DFS", 3) != 0)
        return DFS_EINVAL;
    for (int i = 0; i < DFS_TOKEN_ID_HEX; i++) {
        int c = (unsigned char)access_key_id[3 + i];
        if (hexval(c) < 0)
            return DFS_EINVAL;
        token_id[i] = (char)tolower(c);
    }
    token_id[DFS_TOKEN_ID_HEX] = '\0';
    return DFS_OK;
}

static int hmac(const void *key, size_t klen, const char *msg, uint8_t out[32])
{
    unsigned int len = 32;
    return HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len) !=
                       NULL &&
                   len == 32
               ? DFS_OK
               : DFS_EINTERNAL;
}

int dfs_s3keys_secret(const uint8_t master[DFS_S3KEYS_MASTER_LEN], const char *token_id,
                      char out[DFS_S3KEYS_SECRET_LEN + 1])
{
    uint8_t mac[32];
    int rc = hmac(master, DFS_S3KEYS_MASTER_LEN, token_id, mac);
    if (rc != DFS_OK)
        return rc;
    /* base64url without padding: 32 bytes give 43 characters; the first 40 are the secret. */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char all[44];
    size_t o = 0;
    for (size_t i = 0; i < 32; i += 3) {
        uint32_t v = (uint32_t)mac[i] << 16;
        if (i + 1 < 32)
            v |= (uint32_t)mac[i + 1] << 8;
        if (i + 2 < 32)
            v |= mac[i + 2];
        all[o++] = b64[(v >> 18) & 63];
        all[o++] = b64[(v >> 12) & 63];
        if (i + 1 < 32)
            all[o++] = b64[(v >> 6) & 63];
        if (i + 2 < 32)
            all[o++] = b64[v & 63];
    }
    memcpy(out, all, DFS_S3KEYS_SECRET_LEN);
    out[DFS_S3KEYS_SECRET_LEN] = '\0';
    OPENSSL_cleanse(mac, sizeof mac);
    OPENSSL_cleanse(all, sizeof all);
    return DFS_OK;
}

int dfs_s3keys_signing_key(const char *secret, const char *date, const char *region,
                           const char *service, uint8_t key[DFS_S3KEYS_SIGNING_LEN])
{
    char k0[4 + 128 + 1];
    if (strlen(secret) > 128)
        return DFS_EINVAL;
    snprintf(k0, sizeof k0, "AWS4%s", secret);
    uint8_t a[32], b[32];
    int rc = hmac(k0, strlen(k0), date, a);
    if (rc == DFS_OK)
        rc = hmac(a, 32, region, b);
    if (rc == DFS_OK)
        rc = hmac(b, 32, service, a);
    if (rc == DFS_OK)
        rc = hmac(a, 32, "aws4_request", key);
    OPENSSL_cleanse(k0, sizeof k0);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    return rc;
}
