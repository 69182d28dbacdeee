/* dfs get: fetch fragments in parallel, check every block, assemble, check the whole file. */
#include "cli/get.h"

#include "cli/links.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/rng.h"
#include "dfs/v1/metadata.pb-c.h"
#include "dfs/v1/storage.pb-c.h"
#include "services/rpc/loop.h"
#include "services/rpc/wire.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

struct get_job;

/* The most 64 KiB pieces and slices one chunk may bring (a chunk is at most 1 MiB). */
#define MAX_PIECES 64
#define MAX_IOV    256

/* One GetFragmentResponse, parsed in place (see storage.proto for the fields). */
struct chunk {
    bool has_header;
    uint64_t header_size;
    size_t len;
    struct iovec iov[MAX_IOV];
    size_t niov;
    uint32_t crcs[MAX_PIECES];
    size_t ncrcs;
};

/* One fragment, fetched from one of its copies at a time. */
struct get_stream {
    struct get_job *job;
    const Dfs__V1__Fragment *frag;
    uint64_t start; /* offset of the fragment in the file */
    uint64_t got;   /* bytes written so far (a multiple of 64 KiB until the end) */
    uint32_t table_crc;
    /* Copies in the order to try them; `next` is the one to try after the current. */
    size_t order[64];
    size_t norder, next, current;
    dfs_link *link;
    dfs_rpc_ccall *call;
    dfs_rpc_timer stall;
    bool done;
    char *failures; /* "node: why; node: why" for the final error */
    int pending_code;
    char *pending_msg; /* a local reason to fail over (bad CRC), reported instead of CANCELLED */
};

struct get_job {
    dfs_meta *meta;
    const struct dfs_get_opts *opts;
    dfs_rpc_loop *loop;
    dfs_links *links;
    int fd;
    Dfs__V1__FileInfo *file;
    struct get_stream *streams;
    size_t nstreams;
    size_t running;
    uint32_t failovers;
    int error;
    char *errmsg;
    /* Hashes the output as it fills; regions are the fragments. */
    dfs_filehash *hash;
    /* Scratch for parsing one chunk (the loop handles one message at a time). */
    struct chunk chunk;
};

static int64_t stall_ms(const struct get_job *job)
{
    return job->opts->stall_timeout_ms > 0 ? job->opts->stall_timeout_ms : 60000;
}

static void fail_job(struct get_job *job, int code, char *msg)
{
    if (job->error == DFS_OK) {
        job->error = code;
        job->errmsg = msg;
        msg = NULL;
        for (size_t i = 0; i < job->nstreams; i++)
            if (job->streams[i].call != NULL)
                dfs_rpc_ccall_cancel(job->streams[i].call);
    }
    free(msg);
}

static void start_copy(struct get_stream *s);

static void stall_fired(dfs_rpc_timer *t)
{
    struct get_stream *s = (struct get_stream *)((char *)t - offsetof(struct get_stream, stall));
    if (s->call != NULL)
        dfs_rpc_ccall_cancel_with(s->call, DFS_ETIMEDOUT, "no progress");
}

static void progress(struct get_stream *s)
{
    dfs_rpc_loop_timer_arm(s->job->loop, &s->stall, dfs_rpc_now_ns() + stall_ms(s->job) * 1000000);
}

/* Give up on the current copy for a local reason; the call's end reports it. */
static void reject_copy(struct get_stream *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reject_copy(struct get_stream *s, int code, const char *fmt, ...)
{
    if (s->pending_msg == NULL) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&s->pending_msg, fmt, ap) < 0)
            s->pending_msg = NULL;
        va_end(ap);
        s->pending_code = code;
    }
    dfs_rpc_ccall_cancel_with(s->call, code, s->pending_msg != NULL ? s->pending_msg : "rejected");
}

/* Write all of iov[0..n) at off, however the kernel splits it. Returns 0 or an errno value. */
static int pwritev_all(int fd, struct iovec *iov, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwritev(fd, iov, (int)(n < 1024 ? n : 1024), (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        off += (uint64_t)w;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

static bool parse_chunk(grpc_byte_buffer *bb, struct chunk *c)
{
    dfs_wire_reader r;
    if (!dfs_wire_init(&r, bb))
        return false;
    memset(c, 0, sizeof *c);
    while (!dfs_wire_eof(&r)) {
        uint32_t field, wt;
        uint64_t len;
        if (!dfs_wire_tag(&r, &field, &wt))
            return false;
        if (field == 1 && wt == 2) {
            uint8_t buf[256];
            if (!dfs_wire_varint(&r, &len) || len > sizeof buf || !dfs_wire_copy(&r, buf, len))
                return false;
            Dfs__V1__FragmentHeader *h = dfs__v1__fragment_header__unpack(NULL, len, buf);
            if (h == NULL)
                return false;
            c->has_header = true;
            c->header_size = h->size;
            dfs__v1__fragment_header__free_unpacked(h, NULL);
        } else if (field == 2 && wt == 2) {
            if (!dfs_wire_varint(&r, &len) || c->niov != 0 ||
                !dfs_wire_iov(&r, len, c->iov, MAX_IOV, &c->niov))
                return false;
            c->len = len;
        } else if (field == 3 && wt == 2) { /* packed */
            if (!dfs_wire_varint(&r, &len) || len % 4 != 0 || c->ncrcs + len / 4 > MAX_PIECES)
                return false;
            for (uint64_t i = 0; i < len / 4; i++)
                if (!dfs_wire_fixed32(&r, &c->crcs[c->ncrcs++]))
                    return false;
        } else if (field == 3 && wt == 5) { /* unpacked */
            if (c->ncrcs == MAX_PIECES || !dfs_wire_fixed32(&r, &c->crcs[c->ncrcs++]))
                return false;
        } else if (!dfs_wire_skip(&r, wt)) {
            return false;
        }
    }
    return true;
}

static void chunk_received(dfs_rpc_ccall *call, void *arg, grpc_byte_buffer *bb, int status)
{
    (void)status;
    struct get_stream *s = arg;
    struct get_job *job = s->job;
    if (bb == NULL)
        return; /* end of stream or failure: the call's status follows */
    if (job->error != DFS_OK) {
        grpc_byte_buffer_destroy(bb);
        return;
    }
    struct chunk *c = &job->chunk;
    if (!parse_chunk(bb, c)) {
        reject_copy(s, DFS_EDATALOSS, "malformed message from the node");
        grpc_byte_buffer_destroy(bb);
        return;
    }
    if (c->has_header && c->header_size != s->frag->size) {
        reject_copy(s, DFS_EDATALOSS, "the node holds %" PRIu64 " bytes, the catalog says %" PRIu64,
                    c->header_size, s->frag->size);
        grpc_byte_buffer_destroy(bb);
        return;
    }
    size_t nblocks = dfs_crc32c_nblocks(c->len);
    if (c->ncrcs != nblocks || s->got + c->len > s->frag->size) {
        reject_copy(s, DFS_EDATALOSS, "bad chunk: %zu bytes with %zu checksums at offset %" PRIu64,
                    c->len, c->ncrcs, s->got);
        grpc_byte_buffer_destroy(bb);
        return;
    }
    uint32_t crcs[MAX_PIECES];
    dfs_wire_crc_blocks(c->iov, c->niov, DFS_BLOCK_SIZE, crcs);
    for (size_t b = 0; b < nblocks; b++) {
        if (crcs[b] != c->crcs[b]) {
            reject_copy(s, DFS_EDATALOSS,
                        "block %" PRIu64 " arrived corrupt (crc32c %08x, sent %08x)",
                        s->got / DFS_BLOCK_SIZE + b, crcs[b], c->crcs[b]);
            grpc_byte_buffer_destroy(bb);
            return;
        }
        uint8_t le[4] = {(uint8_t)crcs[b], (uint8_t)(crcs[b] >> 8), (uint8_t)(crcs[b] >> 16),
                         (uint8_t)(crcs[b] >> 24)};
        s->table_crc = dfs_crc32c(s->table_crc, le, 4);
    }
    int e = pwritev_all(job->fd, c->iov, c->niov, s->start + s->got);
    grpc_byte_buffer_destroy(bb);
    if (e != 0) {
        char *err = NULL;
        dfs_seterr_errno(&err, dfs_err_from_errno(e), e, "cannot write the local file");
        fail_job(job, dfs_err_from_errno(e), err);
        return;
    }
    s->got += c->len;
    dfs_link_add_bytes(s->link, c->len);
    dfs_filehash_advance(job->hash, (size_t)(s - job->streams), s->got);
    progress(s);
    dfs_rpc_ccall_recv_raw(call, chunk_received, s);
}

static void note_failure(struct get_stream *s, const char *why)
{
    const Dfs__V1__Replica *rep = s->frag->replicas[s->current];
    char *joined = NULL;
    if (asprintf(&joined, "%s%snode %s (%s): %s", s->failures != NULL ? s->failures : "",
                 s->failures != NULL ? "; " : "", rep->node_id, rep->address, why) < 0)
        joined = NULL;
    free(s->failures);
    s->failures = joined;
}

static void copy_done(dfs_rpc_ccall *call, void *arg, int status, const char *message)
{
    (void)call;
    struct get_stream *s = arg;
    struct get_job *job = s->job;
    s->call = NULL;
    job->running--;
    dfs_rpc_loop_timer_cancel(job->loop, &s->stall);
    char *pending = s->pending_msg;
    s->pending_msg = NULL;
    if (job->error != DFS_OK) {
        free(pending);
        return;
    }
    char why[512];
    if (pending != NULL) {
        snprintf(why, sizeof why, "%s", pending);
    } else if (status != DFS_OK) {
        snprintf(why, sizeof why, "%s", message);
    } else if (s->got != s->frag->size) {
        snprintf(why, sizeof why, "the stream ended after %" PRIu64 " of %" PRIu64 " bytes", s->got,
                 s->frag->size);
    } else if (s->table_crc != s->frag->checksum) {
        snprintf(why, sizeof why, "fragment checksum %08x, the catalog says %08x", s->table_crc,
                 s->frag->checksum);
        /* The bytes so far cannot be trusted: start this fragment over. */
        s->got = 0;
        s->table_crc = 0;
        dfs_filehash_advance(job->hash, (size_t)(s - job->streams), 0);
    } else {
        s->done = true;
        return;
    }
    free(pending);
    dfs_log(DFS_LOG_WARN, "copy unreadable fragment=%" PRIu32 " node=%s err=\"%s\"", s->frag->index,
            s->frag->replicas[s->current]->node_id, why);
    note_failure(s, why);
    if (s->next >= s->norder) {
        char *err = NULL;
        dfs_seterr(&err, DFS_EDATALOSS, "fragment %" PRIu32 " of %s: no copy could be read: %s",
                   s->frag->index, job->file->path, s->failures != NULL ? s->failures : "?");
        fail_job(job, DFS_EDATALOSS, err);
        return;
    }
    job->failovers++;
    start_copy(s);
}

static void start_copy(struct get_stream *s)
{
    struct get_job *job = s->job;
    s->current = s->order[s->next++];
    const Dfs__V1__Replica *rep = s->frag->replicas[s->current];
    char *err = NULL;
    s->link = dfs_links_get(job->links, rep->address, &err);
    if (s->link == NULL) {
        fail_job(job, DFS_ENOMEM, err);
        return;
    }
    if (dfs_rpc_ccall_start(job->loop, dfs_link_channel(s->link), "/dfs.v1.Storage/GetFragment", -1,
                            copy_done, s, &s->call) != DFS_OK) {
        s->call = NULL;
        fail_job(job, DFS_EINTERNAL, strdup("cannot start a call"));
        return;
    }
    job->running++;
    /* Continue where the last copy stopped (always a block boundary). */
    Dfs__V1__GetFragmentRequest req = DFS__V1__GET_FRAGMENT_REQUEST__INIT;
    req.fragment_id = s->frag->fragment_id;
    req.offset = s->got;
    req.length = 0;
    progress(s);
    if (s->got == s->frag->size && s->got > 0) {
        /* Everything arrived but the end failed: start over to check it all again. */
        s->got = 0;
        s->table_crc = 0;
        req.offset = 0;
        dfs_filehash_advance(job->hash, (size_t)(s - job->streams), 0);
    }
    dfs_rpc_ccall_send(s->call, &req.base, true, NULL, NULL);
    dfs_rpc_ccall_recv_raw(s->call, chunk_received, s);
}

/* Try alive nodes first (in random order, to spread the load), then suspect, then the rest. */
static void order_copies(struct get_stream *s, dfs_rng *rng)
{
    size_t n = s->frag->n_replicas < 64 ? s->frag->n_replicas : 64;
    static const int rank_of[] = {2, 0, 1, 3, 2, 3};
    s->norder = 0;
    for (int rank = 0; rank <= 3; rank++) {
        size_t first = s->norder;
        for (size_t i = 0; i < n; i++) {
            int st = (int)s->frag->replicas[i]->node_state;
            int r = st >= 0 && st <= 5 ? rank_of[st] : 3;
            if (r == rank)
                s->order[s->norder++] = i;
        }
        for (size_t i = s->norder; i > first + 1; i--) {
            size_t j = first + (size_t)dfs_rng_below(rng, i - first);
            size_t t = s->order[i - 1];
            s->order[i - 1] = s->order[j];
            s->order[j] = t;
        }
    }
}

static int get_layout(dfs_meta *meta, const char *remote, Dfs__V1__FileInfo **out, char **errmsg)
{
    Dfs__V1__GetFileRequest req = DFS__V1__GET_FILE_REQUEST__INIT;
    req.path = (char *)remote;
    Dfs__V1__GetFileResponse *resp = NULL;
    int rc = dfs_meta_call(meta, "GetFile", &req.base, &dfs__v1__get_file_response__descriptor,
                           true, &resp, errmsg);
    if (rc != DFS_OK)
        return rc;
    *out = resp->file;
    resp->file = NULL;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    if (*out == NULL || (*out)->sha256.len != DFS_SHA256_BYTES) {
        if (*out != NULL)
            protobuf_c_message_free_unpacked(&(*out)->base, NULL);
        return dfs_seterr(errmsg, DFS_EINTERNAL, "the metadata service sent an incomplete layout");
    }
    return DFS_OK;
}

/* Copy a finished temporary file to standard output. */
static int copy_to_stdout(int fd, uint64_t size, char **errmsg)
{
    char *buf = malloc(1u << 20);
    if (buf == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    uint64_t off = 0;
    int rc = DFS_OK;
    while (rc == DFS_OK && off < size) {
        size_t want = size - off < (1u << 20) ? (size_t)(size - off) : (1u << 20);
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n <= 0) {
            rc = dfs_seterr(errmsg, DFS_EIO, "cannot read the temporary file");
            break;
        }
        for (ssize_t w = 0; w < n;) {
            ssize_t k = write(STDOUT_FILENO, buf + w, (size_t)(n - w));
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0) {
                rc = dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot write to standard output");
                break;
            }
            w += k;
        }
        off += (uint64_t)n;
    }
    free(buf);
    return rc;
}

int dfs_get(dfs_meta *meta, const char *remote, const char *local, const struct dfs_get_opts *opts,
            struct dfs_get_result *out, char **errmsg)
{
    struct get_job job = {.meta = meta, .opts = opts, .fd = -1};
    bool to_stdout = strcmp(local, "-") == 0;
    int64_t t0 = dfs_rpc_now_ns();
    int rc = get_layout(meta, remote, &job.file, errmsg);
    if (rc != DFS_OK)
        return rc;

    char *part = NULL;
    if (to_stdout) {
        const char *tmp = getenv("TMPDIR");
        if (asprintf(&part, "%s/dfs-get-XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp") >=
            0) {
            job.fd = mkstemp(part);
            if (job.fd >= 0)
                unlink(part); /* nothing to clean up, whatever happens */
        }
    } else if (asprintf(&part, "%s.dfs-part", local) >= 0) {
        job.fd = open(part, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    if (job.fd < 0) {
        rc = dfs_seterr_errno(errmsg, dfs_err_from_errno(errno), errno, "cannot create %s",
                              part != NULL ? part : local);
        free(part);
        protobuf_c_message_free_unpacked(&job.file->base, NULL);
        return rc;
    }
    if (ftruncate(job.fd, (off_t)job.file->size) != 0) {
        char *err = NULL;
        dfs_seterr_errno(&err, dfs_err_from_errno(errno), errno, "cannot size %s", part);
        fail_job(&job, dfs_err_from_errno(errno), err);
    }

    dfs_rng rng;
    dfs_rng_seed_random(&rng);
    job.loop = dfs_rpc_loop_create();
    job.links = dfs_links_create();
    job.nstreams = job.file->n_fragments;
    job.streams = calloc(job.nstreams + 1, sizeof *job.streams);
    if (job.loop == NULL || job.links == NULL || job.streams == NULL)
        fail_job(&job, DFS_ENOMEM, NULL);
    uint64_t start = 0;
    for (size_t i = 0; job.error == DFS_OK && i < job.nstreams; i++) {
        struct get_stream *s = &job.streams[i];
        s->job = &job;
        s->frag = job.file->fragments[i];
        s->start = start;
        start += s->frag->size;
        dfs_rpc_timer_init(&s->stall, stall_fired);
        order_copies(s, &rng);
        if (s->norder == 0) {
            char *err = NULL;
            dfs_seterr(&err, DFS_EDATALOSS, "fragment %" PRIu32 " of %s has no copy left",
                       s->frag->index, job.file->path);
            fail_job(&job, DFS_EDATALOSS, err);
        }
    }
    if (job.error == DFS_OK && start != job.file->size)
        fail_job(&job, DFS_EINTERNAL, strdup("the layout's fragment sizes do not add up"));
    uint64_t *starts = calloc(job.nstreams + 1, sizeof *starts);
    if (job.error == DFS_OK && starts == NULL)
        fail_job(&job, DFS_ENOMEM, NULL);
    for (size_t i = 0; job.error == DFS_OK && i < job.nstreams; i++)
        starts[i] = job.streams[i].start;
    if (job.error == DFS_OK) {
        char *err = NULL;
        if (dfs_filehash_start_follow(job.fd, job.file->size, starts, job.nstreams, &job.hash,
                                      &err) != DFS_OK)
            fail_job(&job, DFS_ENOMEM, err);
    }
    free(starts);
    for (size_t i = 0; job.error == DFS_OK && i < job.nstreams; i++)
        start_copy(&job.streams[i]);
    while (job.running > 0) {
        dfs_rpc_loop_run_once(job.loop, 100);
        if (opts->interrupted != NULL && *opts->interrupted && job.error == DFS_OK)
            fail_job(&job, DFS_ECANCELED, strdup("interrupted"));
    }

    uint8_t sha[DFS_SHA256_BYTES];
    if (job.hash != NULL && job.error != DFS_OK) {
        dfs_filehash_cancel(job.hash);
    } else if (job.hash != NULL) {
        char *err = NULL;
        if (dfs_filehash_finish(job.hash, sha, &err) != DFS_OK)
            fail_job(&job, DFS_EIO, err);
        else if (memcmp(sha, job.file->sha256.data, DFS_SHA256_BYTES) != 0)
            fail_job(&job, DFS_EDATALOSS,
                     strdup("the assembled file does not match its SHA-256 in the catalog"));
    }
    if (job.error == DFS_OK && to_stdout) {
        char *err = NULL;
        int crc = copy_to_stdout(job.fd, job.file->size, &err);
        if (crc != DFS_OK)
            fail_job(&job, crc, err);
    }
    if (job.error == DFS_OK && !to_stdout && rename(part, local) != 0) {
        char *err = NULL;
        int code = dfs_err_from_errno(errno);
        dfs_seterr_errno(&err, code, errno, "cannot rename %s to %s", part, local);
        fail_job(&job, code, err);
    }
    if (job.error != DFS_OK) {
        if (!to_stdout)
            unlink(part);
        rc = job.error;
        dfs_seterr(errmsg, rc, "%s", job.errmsg != NULL ? job.errmsg : dfs_strerror(rc));
    } else {
        out->size = job.file->size;
        memcpy(out->sha256, sha, DFS_SHA256_BYTES);
        out->fragments = (uint32_t)job.nstreams;
        out->failovers = job.failovers;
        out->seconds = (double)(dfs_rpc_now_ns() - t0) / 1e9;
        rc = DFS_OK;
    }
    for (size_t i = 0; i < job.nstreams; i++) {
        free(job.streams[i].failures);
        free(job.streams[i].pending_msg);
    }
    close(job.fd);
    free(part);
    free(job.errmsg);
    free(job.streams);
    dfs_links_destroy(job.links);
    dfs_rpc_loop_destroy(job.loop);
    protobuf_c_message_free_unpacked(&job.file->base, NULL);
    return rc;
}
