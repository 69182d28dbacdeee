/* S3 ETags: the MD5 of an object's content, or of its parts' MD5s for a multipart upload. */
#include "gateway/s3/etag.h"

#include "common/err.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dfs_etag_md5 {
    EVP_MD_CTX *ctx;
};

dfs_etag_md5 *dfs_etag_md5_create(void)
{
    dfs_etag_md5 *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->ctx = EVP_MD_CTX_new();
    if (m->ctx == NULL || EVP_DigestInit_ex(m->ctx, EVP_md5(), NULL) != 1) {
        dfs_etag_md5_destroy(m);
        return NULL;
    }
    return m;
}

void dfs_etag_md5_update(dfs_etag_md5 *m, const void *data, size_t len)
{
    if (len > 0)
        EVP_DigestUpdate(m->ctx, data, len);
}

int dfs_etag_md5_final(dfs_etag_md5 *m, uint8_t md5[DFS_ETAG_MD5_LEN])
{
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(m->ctx, md5, &n) != 1 || n != DFS_ETAG_MD5_LEN)
        return DFS_EINTERNAL;
    if (EVP_DigestInit_ex(m->ctx, EVP_md5(), NULL) != 1)
        return DFS_EINTERNAL;
    return DFS_OK;
}

void dfs_etag_md5_destroy(dfs_etag_md5 *m)
{
    if (m == NULL)
        return;
    EVP_MD_CTX_free(m->ctx);
    free(m);
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void dfs_etag_single(const uint8_t md5[DFS_ETAG_MD5_LEN], char out[DFS_ETAG_MAX + 1])
{
    char h[2 * DFS_ETAG_MD5_LEN + 1];
    hex(md5, DFS_ETAG_MD5_LEN, h);
    snprintf(out, DFS_ETAG_MAX + 1, "\"%s\"", h);
}

int dfs_etag_multipart(const uint8_t (*md5s)[DFS_ETAG_MD5_LEN], size_t n,
                       char out[DFS_ETAG_MAX + 1])
{
    if (n < 1 || n > DFS_ETAG_MAX_PARTS)
        return DFS_EINVAL;
    uint8_t d[DFS_ETAG_MD5_LEN];
    unsigned int dl = 0;
    if (EVP_Digest(md5s, n * DFS_ETAG_MD5_LEN, d, &dl, EVP_md5(), NULL) != 1 ||
        dl != DFS_ETAG_MD5_LEN)
        return DFS_EINTERNAL;
    char h[2 * DFS_ETAG_MD5_LEN + 1];
    hex(d, DFS_ETAG_MD5_LEN, h);
    snprintf(out, DFS_ETAG_MAX + 1, "\"%s-%zu\"", h, n);
    return DFS_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int dfs_etag_parse(const char *s, uint8_t md5[DFS_ETAG_MD5_LEN], unsigned *parts)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    if (n < 32)
        return DFS_EINVAL;
    for (int i = 0; i < DFS_ETAG_MD5_LEN; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return DFS_EINVAL;
        md5[i] = (uint8_t)(hi << 4 | lo);
    }
    unsigned p = 0;
    if (n > 32) {
        if (s[32] != '-' || n == 33 || n > 38 || s[33] == '0')
            return DFS_EINVAL;
        for (size_t i = 33; i < n; i++) {
            if (s[i] < '0' || s[i] > '9')
                return DFS_EINVAL;
            p = p * 10 + (unsigned)(s[i] - '0');
        }
        if (p > DFS_ETAG_MAX_PARTS)
            return DFS_EINVAL;
    }
    *parts = p;
    return DFS_OK;
}

int dfs_etag_content_md5(const char *b64, uint8_t md5[DFS_ETAG_MD5_LEN])
{
    /* 16 bytes are 24 base64 characters, the last two "==". */
    if (strlen(b64) != 24 || b64[22] != '=' || b64[23] != '=')
        return DFS_EINVAL;
    for (int i = 0; i < 22; i++) {
        char c = b64[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return DFS_EINVAL;
    }
    uint8_t out[18];
    if (EVP_DecodeBlock(out, (const unsigned char *)b64, 24) != 18)
        return DFS_EINVAL;
    /* The bits below the last character's two that count must be zero (canonical form). */
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if ((strchr(alphabet, b64[21]) - alphabet) & 0x0F)
        return DFS_EINVAL;
    memcpy(md5, out, DFS_ETAG_MD5_LEN);
    return DFS_OK;
}
