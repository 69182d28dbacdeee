/* Reading a stitched file: see segments.h. */
#include "client/segments.h"

#include "client/get.h"
#include "common/clock.h"
#include "common/err.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/*
 * Segments in a pipeline (issue 17): each touched segment is read by a worker thread of its own
 * (dfs_get_fd into the write end of a pipe), and this thread copies the pipes to out_fd in order.
 * While segment k is copied out, the worker of segment k+1 already runs: its links are set up,
 * its first ranges fetched and checked, so the next segment starts at full speed instead of
 * after a setup of its own. At most two workers live at once (the one being copied out and the
 * next); the next one is held back by its pipe, then by its drain's window (drain.h), so memory
 * and scratch disk are two gets' windows plus PIPE_BYTES, whatever the file's size.
 */
#define PIPE_BYTES (1u << 20)
#define COPY_BYTES (256u << 10)

struct seg_worker {
    pthread_t thread;
    bool started;
    int rd, wr; /* the pipe: the worker writes wr (and closes it), this thread reads rd */
    dfs_meta *meta;
    const struct dfs_rpc_link_security *security;
    size_t index;                  /* of the segment in the file */
    const Dfs__V1__FileInfo *file; /* the segment's */
    uint64_t offset, length;       /* in the segment */
    const char *scratch_dir;
    struct dfs_client_get_opts opts; /* the caller's, without progress (reported here) */
    /* Results, read after the join. */
    int rc;
    char *err;
    struct dfs_client_get_result r;
};

static void *worker_main(void *arg)
{
    struct seg_worker *w = arg;
    /* A pipe closed by the reader (the get was abandoned) is an EPIPE, not a signal: the mask is
       the thread's, and the drain thread dfs_get_fd starts inherits it. */
    sigset_t pipe_sig;
    sigemptyset(&pipe_sig);
    sigaddset(&pipe_sig, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_sig, NULL);
    w->rc = dfs_get_fd(w->meta, w->security, w->file, w->offset, w->length, w->wr, w->scratch_dir,
                       &w->opts, &w->r, &w->err);
    close(w->wr);
    w->wr = -1;
    return NULL;
}

static int worker_start(struct seg_worker *w, char **errmsg)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "cannot make a pipe");
    (void)fcntl(fds[1], F_SETPIPE_SZ, (int)PIPE_BYTES); /* a smaller pipe only costs speed */
    w->rd = fds[0];
    w->wr = fds[1];
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        close(w->rd);
        close(w->wr);
        w->rd = w->wr = -1;
        return dfs_seterr(errmsg, DFS_ENOMEM, "cannot start a segment reader");
    }
    w->started = true;
    return DFS_OK;
}

/* Stop (when its pipe is still open: the worker's next write fails) and wait for a worker. */
static void worker_join(struct seg_worker *w)
{
    if (!w->started)
        return;
    if (w->rd >= 0) {
        close(w->rd);
        w->rd = -1;
    }
    pthread_join(w->thread, NULL);
    w->started = false;
}

/* Copy a worker's pipe to out_fd until its end: 0 and *copied, or a DFS_ code (out_fd failed). */
static int copy_out(struct seg_worker *w, int out_fd, uint64_t done, uint64_t total,
                    const struct dfs_client_get_opts *opts, uint64_t *copied, char **errmsg)
{
    bool use_splice = true;
    uint8_t *buf = NULL;
    *copied = 0;
    for (;;) {
        ssize_t n;
        if (use_splice) {
            n = splice(w->rd, NULL, out_fd, NULL, COPY_BYTES, SPLICE_F_MOVE);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EINVAL || errno == ENOSYS || errno == EBADF)) {
                use_splice = false; /* an out_fd splice does not take: read and write */
                continue;
            }
            if (n < 0) {
                int e = errno;
                free(buf);
                return dfs_seterr_errno(errmsg, dfs_err_from_errno(e), e, "cannot write the file");
            }
        } else {
            if (buf == NULL && (buf = malloc(COPY_BYTES)) == NULL)
                return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            n = read(w->rd, buf, COPY_BYTES);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                int e = errno;
                free(buf);
                return dfs_seterr_errno(errmsg, DFS_EIO, e, "cannot read a segment's pipe");
            }
            for (ssize_t at = 0; at < n;) {
                ssize_t m = write(out_fd, buf + at, (size_t)(n - at));
                if (m < 0 && errno == EINTR)
                    continue;
                if (m < 0) {
                    int e = errno;
                    free(buf);
                    return dfs_seterr_errno(errmsg, dfs_err_from_errno(e), e,
                                            "cannot write the file");
                }
                at += m;
            }
        }
        if (n == 0)
            break;
        *copied += (uint64_t)n;
        if (opts->progress != NULL)
            opts->progress(opts->progress_arg, done + *copied, total);
    }
    free(buf);
    return DFS_OK;
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
    /* w[k % 2]: the worker of the k-th touched segment. */
    struct seg_worker w[2];
    memset(w, 0, sizeof w);
    w[0].rd = w[0].wr = w[1].rd = w[1].wr = -1;
    size_t next = 0; /* the next segment to look at for a worker */
    uint64_t done = 0;
    for (size_t k = 0;; k++) {
        struct seg_worker *cur = &w[k % 2];
        /* Start the current one (the first time) and the one after it. */
        for (size_t j = k; rc == DFS_OK && j <= k + 1; j++) {
            struct seg_worker *x = &w[j % 2];
            if (x->started)
                continue;
            while (next < file->n_segments) {
                const Dfs__V1__Segment *s = file->segments[next];
                uint64_t lo = s->offset > offset ? s->offset : offset;
                uint64_t s_end = s->offset + s->file->size;
                uint64_t hi = s_end < end ? s_end : end;
                next++;
                if (lo >= hi)
                    continue;
                free(x->err);
                memset(x, 0, sizeof *x);
                x->rd = x->wr = -1;
                x->meta = meta;
                x->security = security;
                x->file = s->file;
                x->offset = lo - s->offset;
                x->length = hi - lo;
                x->scratch_dir = scratch_dir;
                x->opts = *opts;
                x->opts.progress = NULL;
                x->opts.progress_arg = NULL;
                x->index = next - 1;
                rc = worker_start(x, errmsg);
                break;
            }
        }
        if (rc != DFS_OK || !cur->started)
            break;
        size_t index = cur->index;
        uint64_t copied = 0;
        rc = copy_out(cur, out_fd, done, length, opts, &copied, errmsg);
        worker_join(cur);
        if (rc == DFS_OK && cur->rc != DFS_OK) {
            rc = cur->rc;
            dfs_seterr(errmsg, rc, "segment %zu of %s: %s", index, file->path,
                       cur->err != NULL ? cur->err : dfs_strerror(rc));
        } else if (rc == DFS_OK && copied != cur->length) {
            rc = dfs_seterr(errmsg, DFS_EIO,
                            "segment %zu of %s: %" PRIu64 " bytes of %" PRIu64 " came out", index,
                            file->path, copied, cur->length);
        }
        free(cur->err);
        cur->err = NULL;
        if (rc != DFS_OK)
            break;
        done += copied;
        sum.fragments += cur->r.fragments;
        sum.failovers += cur->r.failovers;
        sum.rebuilt += cur->r.rebuilt;
    }
    for (int i = 0; i < 2; i++) { /* after a failure: the one prefetching stops at its pipe */
        worker_join(&w[i]);
        free(w[i].err);
    }
    if (rc != DFS_OK)
        return rc;
    if (done != length)
        return dfs_seterr(errmsg, DFS_EIO, "%s: %" PRIu64 " bytes of %" PRIu64 " came out",
                          file->path, done, length);
    *out = sum;
    out->size = length;
    memcpy(out->sha256, file->sha256.data, DFS_SHA256_BYTES);
    out->seconds = (double)(dfs_clock_mono_ns() - t0) / 1e9;
    return DFS_OK;
}
