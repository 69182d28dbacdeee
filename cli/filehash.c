/* SHA-256 of a file computed by a background thread. */
#include "cli/filehash.h"

#include "common/err.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PIECE (1u << 20)

struct dfs_filehash {
    int fd;
    uint64_t size;
    pthread_t thread;
    atomic_bool cancel;
    /* Written by the thread, read after join. */
    uint8_t digest[DFS_SHA256_BYTES];
    int rc;
    int err_no;
    uint64_t failed_at;
};

static void *hash_main(void *arg)
{
    dfs_filehash *h = arg;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(PIECE);
    if (ctx == NULL || buf == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        h->rc = DFS_ENOMEM;
        goto out;
    }
    uint64_t off = 0;
    while (off < h->size && !atomic_load(&h->cancel)) {
        size_t want = h->size - off < PIECE ? (size_t)(h->size - off) : PIECE;
        ssize_t n = pread(h->fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            h->rc = DFS_EIO;
            h->err_no = n < 0 ? errno : 0;
            h->failed_at = off;
            goto out;
        }
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        off += (uint64_t)n;
    }
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, h->digest, &len);
    h->rc = DFS_OK;
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
    return NULL;
}

int dfs_filehash_start(int fd, uint64_t size, dfs_filehash **out, char **errmsg)
{
    dfs_filehash *h = calloc(1, sizeof *h);
    if (h == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    h->fd = fd;
    h->size = size;
    atomic_init(&h->cancel, false);
    if (pthread_create(&h->thread, NULL, hash_main, h) != 0) {
        free(h);
        return dfs_seterr(errmsg, DFS_ENOMEM, "cannot start the hashing thread");
    }
    *out = h;
    return DFS_OK;
}

int dfs_filehash_finish(dfs_filehash *h, uint8_t out[DFS_SHA256_BYTES], char **errmsg)
{
    pthread_join(h->thread, NULL);
    int rc = h->rc;
    if (rc == DFS_OK)
        memcpy(out, h->digest, DFS_SHA256_BYTES);
    else if (h->err_no != 0)
        dfs_seterr_errno(errmsg, rc, h->err_no, "cannot read the file at offset %llu",
                         (unsigned long long)h->failed_at);
    else
        dfs_seterr(errmsg, rc, "the file ended at %llu bytes, expected %llu (changed while read?)",
                   (unsigned long long)h->failed_at, (unsigned long long)h->size);
    free(h);
    return rc;
}

void dfs_filehash_cancel(dfs_filehash *h)
{
    if (h == NULL)
        return;
    atomic_store(&h->cancel, true);
    pthread_join(h->thread, NULL);
    free(h);
}

void dfs_sha256_hex(const uint8_t digest[DFS_SHA256_BYTES], char hex[2 * DFS_SHA256_BYTES + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < DFS_SHA256_BYTES; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[2 * DFS_SHA256_BYTES] = '\0';
}
