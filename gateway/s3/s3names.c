/* Names and small encodings of the S3 server: see s3names.h. */
#include "gateway/s3/s3names.h"

#include "common/err.h"
#include "gateway/s3/etag.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *dfs_s3names_token_encode(const char *key)
{
    size_t n = strlen(key);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)key, (int)n);
    return out;
}

char *dfs_s3names_token_decode(const char *token)
{
    size_t n = strlen(token);
    if (n == 0 || n % 4 != 0 || n > 4 * ((DFS_S3REQ_KEY_MAX + 2) / 3))
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = token[i];
        bool pad = c == '=' && i >= n - 2 && (i == n - 1 || token[n - 1] == '=');
        if (!pad && !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '+' || c == '/'))
            return NULL;
    }
    unsigned char *out = malloc(n / 4 * 3 + 1);
    if (out == NULL)
        return NULL;
    int k = EVP_DecodeBlock(out, (const unsigned char *)token, (int)n);
    if (k < 0) {
        free(out);
        return NULL;
    }
    /* DecodeBlock counts the padding as zero bytes. */
    for (size_t i = n; i > 0 && token[i - 1] == '='; i--)
        k--;
    if (k <= 0 || memchr(out, '\0', (size_t)k) != NULL) {
        free(out);
        return NULL;
    }
    out[k] = '\0';
    /* Only the form we hand out: padding bits zero, so a key has exactly one token. */
    char *again = dfs_s3names_token_encode((const char *)out);
    bool same = again != NULL && strcmp(again, token) == 0;
    free(again);
    if (!same) {
        free(out);
        return NULL;
    }
    return (char *)out;
}

bool dfs_s3names_upload_id_valid(const char *id)
{
    if (id == NULL || strlen(id) != 32)
        return false;
    for (const char *p = id; *p != '\0'; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

bool dfs_s3names_part_parse(const char *name, uint32_t *number, uint8_t md5[16])
{
    if (strncmp(name, "part.", 5) != 0 || strlen(name) != 5 + 5 + 1 + 32 || name[10] != '.')
        return false;
    uint32_t n = 0;
    for (int i = 5; i < 10; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        n = n * 10 + (uint32_t)(name[i] - '0');
    }
    unsigned parts = 1;
    for (int i = 11; i < 43; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    if (n < 1 || n > DFS_S3REQ_MAX_PART || dfs_etag_parse(name + 11, md5, &parts) != DFS_OK ||
        parts != 0)
        return false;
    *number = n;
    return true;
}

int dfs_s3names_meta_pack(const struct dfs_s3req_meta *m, const char *parts, char **out,
                          size_t *len)
{
    FILE *f = open_memstream(out, len);
    if (f == NULL)
        return DFS_ENOMEM;
    if (parts != NULL) {
        fputs(":parts", f);
        fputc('\0', f);
        fputs(parts, f);
        fputc('\0', f);
    }
    for (size_t i = 0; m != NULL && i < m->n; i++) {
        fputs(m->e[i].name, f);
        fputc('\0', f);
        fputs(m->e[i].value, f);
        fputc('\0', f);
    }
    if (fclose(f) != 0) {
        *out = NULL;
        return DFS_ENOMEM;
    }
    return DFS_OK;
}

bool dfs_s3names_meta_next(const void *meta, size_t len, size_t *pos, const char **name,
                           const char **value)
{
    const char *p = meta;
    if (p == NULL || *pos >= len)
        return false;
    const char *n = p + *pos, *end = p + len;
    const char *nz = memchr(n, '\0', (size_t)(end - n));
    if (nz == NULL || nz + 1 >= end)
        return false;
    const char *v = nz + 1;
    const char *vz = memchr(v, '\0', (size_t)(end - v));
    if (vz == NULL)
        return false;
    *name = n;
    *value = v;
    *pos = (size_t)(vz + 1 - p);
    return true;
}

const char *dfs_s3names_meta_find(const void *meta, size_t len, const char *name)
{
    size_t pos = 0;
    const char *n, *v;
    while (dfs_s3names_meta_next(meta, len, &pos, &n, &v))
        if (strcmp(n, name) == 0)
            return v;
    return NULL;
}
