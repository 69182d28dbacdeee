/* S3's additional checksums (x-amz-checksum-*): computed over a body as it streams, compared. */
#include "gateway/s3/s3sum.h"

#include "common/crc32c.h"
#include "common/err.h"

#include <isa-l/crc.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *header;
    const char *name; /* as x-amz-sdk-checksum-algorithm says it */
    size_t b64;       /* base64 length of the digest */
} algos[] = {
    [DFS_S3SUM_CRC32] = {"x-amz-checksum-crc32", "CRC32", 8},
    [DFS_S3SUM_CRC32C] = {"x-amz-checksum-crc32c", "CRC32C", 8},
    [DFS_S3SUM_CRC64NVME] = {"x-amz-checksum-crc64nvme", "CRC64NVME", 12},
    [DFS_S3SUM_SHA1] = {"x-amz-checksum-sha1", "SHA1", 28},
    [DFS_S3SUM_SHA256] = {"x-amz-checksum-sha256", "SHA256", 44},
};
#define NALGOS (sizeof algos / sizeof algos[0])

bool dfs_s3sum_algo_of_header(const char *name, enum dfs_s3sum_algo *algo)
{
    for (size_t i = 0; i < NALGOS; i++) {
        if (strcasecmp(name, algos[i].header) == 0) {
            *algo = (enum dfs_s3sum_algo)i;
            return true;
        }
    }
    return false;
}

const char *dfs_s3sum_header(enum dfs_s3sum_algo algo)
{
    return (size_t)algo < NALGOS ? algos[algo].header : "";
}

int dfs_s3sum_of_request(const struct dfs_s3http_request *r, bool *present,
                         enum dfs_s3sum_algo *algo, const char **value, struct dfs_s3err *err)
{
    *present = false;
    *value = NULL;
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *n = r->headers[i].name;
        if (strncasecmp(n, "x-amz-checksum-", 15) != 0 ||
            strcasecmp(n, "x-amz-checksum-type") == 0 ||
            strcasecmp(n, "x-amz-checksum-algorithm") == 0)
            continue;
        enum dfs_s3sum_algo a;
        if (!dfs_s3sum_algo_of_header(n, &a))
            return dfs_s3err_set(err, DFS_S3ERR_INVALID_REQUEST, "unknown checksum header %s", n);
        if (*present)
            return dfs_s3err_set(err, DFS_S3ERR_INVALID_REQUEST,
                                 "Expecting a single x-amz-checksum- header");
        const char *v = r->headers[i].value;
        if (strlen(v) != algos[a].b64)
            return dfs_s3err_set(err, DFS_S3ERR_INVALID_REQUEST, "Value for %s header is invalid.",
                                 algos[a].header);
        *present = true;
        *algo = a;
        *value = v;
    }
    const char *t = dfs_s3http_header(r, "x-amz-trailer");
    for (const char *p = t; p != NULL && *p != '\0';) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t k = strcspn(p, ", \t");
        if (k == 0)
            break;
        char name[64];
        if (k < sizeof name && strncasecmp(p, "x-amz-checksum-", 15) == 0) {
            memcpy(name, p, k);
            name[k] = '\0';
            enum dfs_s3sum_algo a;
            if (!dfs_s3sum_algo_of_header(name, &a))
                return dfs_s3err_set(err, DFS_S3ERR_INVALID_REQUEST, "unknown checksum trailer %s",
                                     name);
            if (*present)
                return dfs_s3err_set(err, DFS_S3ERR_INVALID_REQUEST,
                                     "Expecting a single x-amz-checksum- header");
            *present = true;
            *algo = a;
            *value = NULL;
        }
        p += k;
    }
    const char *sdk = dfs_s3http_header(r, "x-amz-sdk-checksum-algorithm");
    if (sdk != NULL && (!*present || strcasecmp(sdk, algos[*algo].name) != 0))
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_REQUEST,
                             "x-amz-sdk-checksum-algorithm names another checksum than the request "
                             "carries");
    return DFS_OK;
}

/* CRC-64/NVME: reflected, polynomial 0xAD93D23594C93659, initial and final XOR all ones. */
static void crc64nvme_table(uint64_t t[256])
{
    const uint64_t poly = 0x9A6C9329AC4BC9B5ull; /* 0xAD93D23594C93659 reflected */
    for (unsigned i = 0; i < 256; i++) {
        uint64_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ poly : c >> 1;
        t[i] = c;
    }
}

struct dfs_s3sum {
    enum dfs_s3sum_algo algo;
    uint32_t crc32;
    uint64_t crc64; /* the register, not yet inverted */
    uint64_t *table;
    EVP_MD_CTX *md;
    bool done;
};

dfs_s3sum *dfs_s3sum_create(enum dfs_s3sum_algo algo)
{
    if ((size_t)algo >= NALGOS)
        return NULL;
    dfs_s3sum *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->algo = algo;
    s->crc64 = ~0ull;
    if (algo == DFS_S3SUM_CRC64NVME) {
        s->table = malloc(256 * sizeof *s->table);
        if (s->table == NULL) {
            free(s);
            return NULL;
        }
        crc64nvme_table(s->table);
    } else if (algo == DFS_S3SUM_SHA1 || algo == DFS_S3SUM_SHA256) {
        s->md = EVP_MD_CTX_new();
        if (s->md == NULL ||
            EVP_DigestInit_ex(s->md, algo == DFS_S3SUM_SHA1 ? EVP_sha1() : EVP_sha256(), NULL) !=
                1) {
            dfs_s3sum_destroy(s);
            return NULL;
        }
    }
    return s;
}

void dfs_s3sum_update(dfs_s3sum *s, const void *data, size_t len)
{
    if (s->done || len == 0)
        return;
    const unsigned char *p = data;
    switch (s->algo) {
    case DFS_S3SUM_CRC32:
        s->crc32 = crc32_gzip_refl(s->crc32, p, len);
        break;
    case DFS_S3SUM_CRC32C:
        s->crc32 = dfs_crc32c(s->crc32, p, len);
        break;
    case DFS_S3SUM_CRC64NVME:
        for (size_t i = 0; i < len; i++)
            s->crc64 = s->table[(s->crc64 ^ p[i]) & 0xFF] ^ (s->crc64 >> 8);
        break;
    default:
        EVP_DigestUpdate(s->md, p, len);
        break;
    }
}

int dfs_s3sum_final(dfs_s3sum *s, char out[DFS_S3SUM_B64_MAX + 1])
{
    if (s->done)
        return DFS_EINVAL;
    s->done = true;
    uint8_t d[32];
    size_t n;
    if (s->algo == DFS_S3SUM_CRC32 || s->algo == DFS_S3SUM_CRC32C) {
        for (int i = 0; i < 4; i++)
            d[i] = (uint8_t)(s->crc32 >> (24 - 8 * i));
        n = 4;
    } else if (s->algo == DFS_S3SUM_CRC64NVME) {
        uint64_t c = ~s->crc64;
        for (int i = 0; i < 8; i++)
            d[i] = (uint8_t)(c >> (56 - 8 * i));
        n = 8;
    } else {
        unsigned int dl = 0;
        if (EVP_DigestFinal_ex(s->md, d, &dl) != 1)
            return DFS_EINTERNAL;
        n = dl;
    }
    EVP_EncodeBlock((unsigned char *)out, d, (int)n);
    return DFS_OK;
}

int dfs_s3sum_check(dfs_s3sum *s, const char *expected, struct dfs_s3err *err)
{
    char got[DFS_S3SUM_B64_MAX + 1];
    if (dfs_s3sum_final(s, got) != DFS_OK)
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "checksum failed");
    if (expected == NULL || strcmp(got, expected) != 0)
        return dfs_s3err_set(err, DFS_S3ERR_BAD_DIGEST,
                             "The %s you specified did not match the calculated checksum.",
                             algos[s->algo].name);
    return DFS_OK;
}

void dfs_s3sum_destroy(dfs_s3sum *s)
{
    if (s == NULL)
        return;
    EVP_MD_CTX_free(s->md);
    free(s->table);
    free(s);
}
