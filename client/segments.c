/* Reading a stitched file: see segments.h. */
#include "client/segments.h"

#include "client/get.h"
#include "common/clock.h"
#include "common/err.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <string.h>

/* The segments tile [0, size) and the file's SHA-256 is the hash of theirs. */
static int check_layout(const Dfs__V1__FileInfo *file, char **errmsg)
{
    uint64_t at = 0;
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    int rc = sha != NULL && EVP_DigestInit_ex(sha, EVP_sha256(), NULL) == 1
                 ? DFS_OK
                 : dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    for (size_t i = 0; rc == DFS_OK && i < file->n_segments; i++) {
        const Dfs__V1__Segment *s = file->segments[i];
        if (s->file == NULL || s->offset != at || s->file->n_segments != 0 ||
            s->file->sha256.len != DFS_SHA256_BYTES || s->file->size > file->size - at)
            rc = dfs_seterr(errmsg, DFS_EDATALOSS,
                            "%s: segment %zu does not follow at byte %" PRIu64 " of %" PRIu64,
                            file->path, i, at, file->size);
        else if (EVP_DigestUpdate(sha, s->file->sha256.data, DFS_SHA256_BYTES) != 1)
            rc = dfs_seterr(errmsg, DFS_EINTERNAL, "SHA-256 failed");
        else
            at += s->file->size;
    }
    uint8_t digest[DFS_SHA256_BYTES];
    if (rc == DFS_OK && at != file->size)
        rc =
            dfs_seterr(errmsg, DFS_EDATALOSS, "%s: the segments hold %" PRIu64 " bytes of %" PRIu64,
                       file->path, at, file->size);
    if (rc == DFS_OK && EVP_DigestFinal_ex(sha, digest, NULL) != 1)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "SHA-256 failed");
    if (rc == DFS_OK && (file->sha256.len != DFS_SHA256_BYTES ||
                         memcmp(digest, file->sha256.data, DFS_SHA256_BYTES) != 0))
        rc = dfs_seterr(errmsg, DFS_EDATALOSS,
                        "%s: the segments' SHA-256s do not match the file's in the catalog",
                        file->path);
    EVP_MD_CTX_free(sha);
    return rc;
}

int dfs_get_segments_fd(dfs_meta *meta, const struct dfs_rpc_link_security *security,
                        const Dfs__V1__FileInfo *file, uint64_t offset, uint64_t length, int out_fd,
                        const char *scratch_dir, const struct dfs_client_get_opts *opts,
                        struct dfs_client_get_result *out, char **errmsg)
{
    if (offset > file->size || length > file->size - offset)
        return dfs_seterr(errmsg, DFS_ERANGE,
                          "bytes %" PRIu64 "+%" PRIu64 " are outside the file (%" PRIu64 " bytes)",
                          offset, length, file->size);
    int rc = check_layout(file, errmsg);
    if (rc != DFS_OK)
        return rc;
    int64_t t0 = dfs_clock_mono_ns();
    struct dfs_client_get_result sum;
    memset(&sum, 0, sizeof sum);
    uint64_t end = offset + length;
    for (size_t i = 0; rc == DFS_OK && i < file->n_segments; i++) {
        const Dfs__V1__Segment *s = file->segments[i];
        uint64_t lo = s->offset > offset ? s->offset : offset;
        uint64_t s_end = s->offset + s->file->size;
        uint64_t hi = s_end < end ? s_end : end;
        if (lo >= hi)
            continue;
        struct dfs_client_get_result r;
        memset(&r, 0, sizeof r);
        rc = dfs_get_fd(meta, security, s->file, lo - s->offset, hi - lo, out_fd, scratch_dir, opts,
                        &r, errmsg);
        if (rc != DFS_OK) {
            dfs_prefixerr(errmsg, rc, "segment %zu of %s", i, file->path);
            break;
        }
        sum.fragments += r.fragments;
        sum.failovers += r.failovers;
        sum.rebuilt += r.rebuilt;
    }
    if (rc != DFS_OK)
        return rc;
    *out = sum;
    out->size = length;
    memcpy(out->sha256, file->sha256.data, DFS_SHA256_BYTES);
    out->seconds = (double)(dfs_clock_mono_ns() - t0) / 1e9;
    return DFS_OK;
}
