/* The gateway's file routes: store, fetch (ranges), stat (HEAD), delete and list, over the dfs
   put/get engines. */
#include "gateway/files.h"

#include "client/dfs_client.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/path.h"
#include "dfs/v1/metadata.pb-c.h"
#include "gateway/putparams.h"
#include "gateway/range.h"
#include "gateway/reply.h"
#include "gateway/stream.h"
#include "gateway/urlcodec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SPOOL_PREFIX "dfs-gw-upload-"
/* Bytes a HEAD response's reader is asked for at a time (it is never called). */
#define READ_BLOCK   (256u << 10)

struct dfs_gw_files {
    dfs_client *client;
    char *spool_dir;
    uint64_t max_upload;
    volatile sig_atomic_t *cancel;
};

int dfs_gw_files_create(const struct dfs_gw_files_config *cfg, dfs_gw_files **out, char **errmsg)
{
    dfs_gw_files *f = calloc(1, sizeof *f);
    if (f == NULL || (f->spool_dir = strdup(cfg->spool_dir)) == NULL) {
        free(f);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    f->client = cfg->client;
    f->max_upload = cfg->max_upload;
    f->cancel = cfg->cancel;
    *out = f;
    return DFS_OK;
}

void dfs_gw_files_destroy(dfs_gw_files *f)
{
    if (f == NULL)
        return;
    free(f->spool_dir);
    free(f);
}

int dfs_gw_files_sweep_spool(const char *spool_dir)
{
    DIR *d = opendir(spool_dir);
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *e;
    struct stat st;
    /* Only the regular files an upload leaves: a FIFO or a device that happens to bear the
       prefix is not ours to remove. Nor is an upload another gateway on the same folder is
       receiving: it holds a lock on its spool file (upload_spool), which a leftover has lost
       with its process. */
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, SPOOL_PREFIX, strlen(SPOOL_PREFIX)) != 0 ||
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct stat now;
        if (fstat(fd, &now) == 0 && S_ISREG(now.st_mode) && now.st_ino == st.st_ino &&
            flock(fd, LOCK_EX | LOCK_NB) == 0 && unlinkat(dirfd(d), e->d_name, 0) == 0)
            n++;
        close(fd);
    }
    closedir(d);
    return n;
}

/* ---- JSON ------------------------------------------------------------------------------------ */

static void json_file(dfs_json *j, const Dfs__V1__FileInfo *fi)
{
    dfs_json_begin_object(j);
    dfs_json_key(j, "path");
    dfs_json_string(j, fi->path);
    dfs_json_key(j, "file_id");
    dfs_json_string(j, fi->file_id);
    dfs_json_key(j, "size");
    dfs_json_uint(j, fi->size);
    dfs_json_key(j, "sha256");
    if (fi->sha256.len == DFS_SHA256_BYTES) {
        char hex[2 * DFS_SHA256_BYTES + 1];
        dfs_client_sha256_hex(fi->sha256.data, hex);
        dfs_json_string(j, hex);
    } else {
        dfs_json_null(j);
    }
    const Dfs__V1__Redundancy *r = fi->redundancy;
    dfs_json_key(j, "redundancy");
    dfs_json_begin_object(j);
    bool ec = r != NULL && r->scheme == DFS__V1__REDUNDANCY__SCHEME__ERASURE;
    dfs_json_key(j, "scheme");
    dfs_json_string(j, ec ? "erasure" : "replication");
    if (ec) {
        dfs_json_key(j, "data");
        dfs_json_uint(j, r->data);
        dfs_json_key(j, "parity");
        dfs_json_uint(j, r->parity);
    } else {
        dfs_json_key(j, "replicas");
        dfs_json_uint(j, r != NULL ? r->replicas : 0);
        dfs_json_key(j, "fragments");
        dfs_json_uint(j, r != NULL ? r->fragments : 0);
    }
    dfs_json_end_object(j);
    dfs_json_key(j, "policy");
    dfs_json_string(j, dfs_gw_policy_name(fi->policy));
    dfs_json_key(j, "committed_ms");
    dfs_json_int(j, fi->committed_ms);
    if (fi->n_fragments > 0) {
        dfs_json_key(j, "fragments");
        dfs_json_uint(j, fi->n_fragments);
    }
    dfs_json_end_object(j);
}

/* A JSON document built with dfs_json into memory. */
struct doc {
    FILE *f;
    char *body;
    size_t len;
    dfs_json j;
};

static bool doc_open(struct doc *d)
{
    d->body = NULL;
    d->len = 0;
    d->f = open_memstream(&d->body, &d->len);
    if (d->f == NULL)
        return false;
    dfs_json_init(&d->j, d->f);
    return true;
}

static enum MHD_Result doc_reply(struct MHD_Connection *c, unsigned status, struct doc *d)
{
    dfs_json_finish(&d->j);
    if (fclose(d->f) != 0) {
        free(d->body);
        return MHD_NO;
    }
    return dfs_gw_reply(c, status, "application/json", d->body, d->len);
}

/* ---- paths ----------------------------------------------------------------------------------- */

/* "/a%20b" -> "/a b", canonical. 0 and *out, or DFS_EINVAL with *errmsg. */
static int file_path(const char *rest, char **out, char **errmsg)
{
    char *dec = NULL;
    int rc = dfs_gw_percent_decode(rest, &dec, errmsg);
    if (rc != DFS_OK)
        return dfs_prefixerr(errmsg, rc, "bad path");
    rc = dfs_path_canon(dec, out, errmsg);
    free(dec);
    if (rc != DFS_OK)
        dfs_prefixerr(errmsg, rc, "bad path");
    return rc;
}

/* ---- store (PUT) ----------------------------------------------------------------------------- */

struct upload {
    struct dfs_gw_req base;
    dfs_gw_files *f;
    char *path;
    struct dfs_client_put_opts opts;
    char *spool;
    int fd;
    uint64_t received;
    bool too_big;
    int write_errno;
};

static void upload_done(struct dfs_gw_req *req)
{
    struct upload *u = (struct upload *)req;
    if (u->spool != NULL)
        unlink(u->spool);
    if (u->fd >= 0)
        close(u->fd); /* after the unlink: the lock kept sweeps away until then */
    free(u->spool);
    free(u->path);
    free(u);
}

static char *too_big_message(const dfs_gw_files *f)
{
    char *msg = NULL;
    if (asprintf(&msg, "the body is larger than this gateway takes (--max-upload %" PRIu64 ")",
                 f->max_upload) < 0)
        msg = NULL;
    return msg;
}

/*
 * Make the upload's spool file, locked for as long as the upload lives (its fd stays open until
 * upload_done): another gateway starting on the same folder sweeps only unlocked ones
 * (dfs_gw_files_sweep_spool). A sweep that took the file between its creation and the lock has
 * unlinked it: make another. Returns 0 or an errno.
 */
static int upload_spool(struct upload *u)
{
    for (int tries = 0; tries < 5; tries++) {
        if (asprintf(&u->spool, "%s/" SPOOL_PREFIX "XXXXXX", u->f->spool_dir) < 0) {
            u->spool = NULL;
            return ENOMEM;
        }
        u->fd = mkostemp(u->spool, O_CLOEXEC);
        int e = u->fd < 0 ? errno : 0;
        struct stat st;
        if (e == 0 && flock(u->fd, LOCK_EX) != 0)
            e = errno;
        else if (e == 0 && fstat(u->fd, &st) != 0)
            e = errno;
        else if (e == 0 && st.st_nlink > 0)
            return 0;
        if (u->fd >= 0)
            close(u->fd);
        u->fd = -1;
        free(u->spool);
        u->spool = NULL;
        if (e != 0)
            return e;
    }
    return EAGAIN;
}

/* First call of a PUT: check everything that can be checked before the body comes. */
static enum MHD_Result put_begin(dfs_gw_files *f, struct MHD_Connection *c, const char *rest,
                                 void **req_cls)
{
    char *err = NULL, *path = NULL;
    struct dfs_client_put_opts opts;
    memset(&opts, 0, sizeof opts);
    char *vals[5] = {NULL, NULL, NULL, NULL, NULL};
    static const char *const keys[5] = {"replicas", "fragments", "ec", "policy", "overwrite"};
    int rc = file_path(rest, &path, &err);
    for (int i = 0; rc == DFS_OK && i < 5; i++)
        rc = dfs_gw_query(c, keys[i], &vals[i], &err);
    if (rc == DFS_OK) {
        struct dfs_gw_put_query q = {vals[0], vals[1], vals[2], vals[3], vals[4]};
        rc = dfs_gw_put_params(&q, &opts, &err);
    }
    for (int i = 0; i < 5; i++)
        free(vals[i]);
    if (rc != DFS_OK) {
        enum MHD_Result r = dfs_gw_reply_code(c, rc, err);
        free(err);
        free(path);
        return r;
    }
    /* Too large: say so before the client sends it (curl waits for 100-continue). */
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (f->max_upload > 0 && cl != NULL && strtoull(cl, NULL, 10) > f->max_upload) {
        char *msg = too_big_message(f);
        enum MHD_Result r = dfs_gw_reply_error(c, 413, msg != NULL ? msg : "too large");
        free(msg);
        free(path);
        return r;
    }
    /* Exists and no overwrite: refuse now rather than after the upload (CreateFile checks
       again, atomically). */
    if (!opts.overwrite) {
        Dfs__V1__FileInfo *fi = NULL;
        rc = dfs_client_stat(f->client, path, &fi, &err);
        if (fi != NULL)
            protobuf_c_message_free_unpacked(&fi->base, NULL);
        if (rc == DFS_OK) {
            free(err);
            err = NULL;
            rc = dfs_seterr(&err, DFS_EEXIST, "%s exists (add overwrite=true to replace it)", path);
        } else if (rc == DFS_ENOTFOUND) {
            rc = DFS_OK;
        }
        if (rc != DFS_OK) {
            enum MHD_Result r = dfs_gw_reply_code(c, rc, err);
            free(err);
            free(path);
            return r;
        }
        free(err);
        err = NULL;
    }
    struct upload *u = calloc(1, sizeof *u);
    if (u == NULL) {
        free(path);
        return MHD_NO;
    }
    u->base.done = upload_done;
    u->f = f;
    u->path = path;
    u->opts = opts;
    u->fd = -1;
    int e = upload_spool(u);
    if (e != 0) {
        dfs_seterr_errno(&err, dfs_err_from_errno(e), e, "cannot spool the upload in %s",
                         f->spool_dir);
        dfs_log(DFS_LOG_ERROR, "%s", err);
        enum MHD_Result r = dfs_gw_reply_code(c, dfs_err_from_errno(e), err);
        free(err);
        upload_done(&u->base);
        return r;
    }
    *req_cls = u;
    return MHD_YES;
}

/* Body bytes: to the spool file, or dropped once over the limit or after a write error. */
static void put_data(struct upload *u, const char *data, size_t n)
{
    if (u->f->max_upload > 0 && u->received + n > u->f->max_upload)
        u->too_big = true;
    u->received += n;
    if (u->too_big || u->write_errno != 0)
        return;
    while (n > 0) {
        ssize_t k = write(u->fd, data, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            u->write_errno = errno;
            return;
        }
        data += k;
        n -= (size_t)k;
    }
}

/* The whole body is in: store it. */
static enum MHD_Result put_end(struct upload *u, struct MHD_Connection *c)
{
    char *err = NULL;
    if (u->too_big) {
        char *msg = too_big_message(u->f);
        enum MHD_Result r = dfs_gw_reply_error(c, 413, msg != NULL ? msg : "too large");
        free(msg);
        return r;
    }
    if (u->write_errno != 0) {
        int code = dfs_err_from_errno(u->write_errno);
        dfs_seterr_errno(&err, code, u->write_errno, "cannot spool the upload in %s",
                         u->f->spool_dir);
        dfs_log(DFS_LOG_ERROR, "%s", err);
        enum MHD_Result r = dfs_gw_reply_code(c, code, err);
        free(err);
        return r;
    }
    /* u->fd stays open (and the spool file locked) until upload_done. */
    u->opts.interrupted = u->f->cancel;
    struct dfs_client_put_result res;
    memset(&res, 0, sizeof res);
    int rc = dfs_client_put(u->f->client, u->spool, u->path, &u->opts, &res, &err);
    unlink(u->spool);
    if (rc != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "put failed path=%s size=%" PRIu64 " err=%s", u->path, u->received,
                err != NULL ? err : dfs_strerror(rc));
        enum MHD_Result r = dfs_gw_reply_code(c, rc, err);
        free(err);
        return r;
    }
    dfs_log(DFS_LOG_INFO, "stored path=%s size=%" PRIu64 " seconds=%.3f", res.path, res.size,
            res.seconds);
    /* The committed layout, for the answer. */
    Dfs__V1__FileInfo *fi = NULL;
    struct doc d;
    if (!doc_open(&d))
        return MHD_NO;
    if (dfs_client_stat(u->f->client, res.path, &fi, NULL) == DFS_OK) {
        json_file(&d.j, fi);
        protobuf_c_message_free_unpacked(&fi->base, NULL);
    } else {
        char hex[2 * DFS_SHA256_BYTES + 1];
        dfs_client_sha256_hex(res.sha256, hex);
        dfs_json_begin_object(&d.j);
        dfs_json_key(&d.j, "path");
        dfs_json_string(&d.j, res.path);
        dfs_json_key(&d.j, "size");
        dfs_json_uint(&d.j, res.size);
        dfs_json_key(&d.j, "sha256");
        dfs_json_string(&d.j, hex);
        dfs_json_end_object(&d.j);
    }
    return doc_reply(c, 201, &d);
}

/* ---- fetch (GET, HEAD) ----------------------------------------------------------------------- */

/* HEAD: the headers a GET would have; the reader is never called. */
static ssize_t no_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static void http_date(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Does an If-None-Match value name this ETag ("*", or a list holding it, weak or strong)? */
static bool etag_matches(const char *inm, const char *etag)
{
    if (inm == NULL)
        return false;
    if (strstr(inm, "*") != NULL)
        return true;
    return strstr(inm, etag) != NULL;
}

static enum MHD_Result get_file(dfs_gw_files *f, struct MHD_Connection *c, const char *rest,
                                bool head)
{
    char *err = NULL, *path = NULL;
    int rc = file_path(rest, &path, &err);
    Dfs__V1__FileInfo *fi = NULL;
    if (rc == DFS_OK)
        rc = dfs_client_stat(f->client, path, &fi, &err);
    free(path);
    if (rc != DFS_OK) {
        enum MHD_Result r = dfs_gw_reply_code(c, rc, err);
        free(err);
        return r;
    }
    char hex[2 * DFS_SHA256_BYTES + 1], etag[2 * DFS_SHA256_BYTES + 3], date[64];
    dfs_client_sha256_hex(fi->sha256.data, hex);
    snprintf(etag, sizeof etag, "\"%s\"", hex);
    http_date(fi->committed_ms, date, sizeof date);
    if (etag_matches(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match"), etag)) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        protobuf_c_message_free_unpacked(&fi->base, NULL);
        if (r == NULL)
            return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_NOT_MODIFIED, r);
        MHD_destroy_response(r);
        return ret;
    }
    uint64_t off = 0, len = fi->size;
    unsigned status = MHD_HTTP_OK;
    char content_range[96] = "";
    /* A Range with If-Range naming another version is ignored: the whole new file is sent. */
    const char *if_range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-Range");
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    if (if_range != NULL && strcmp(if_range, etag) != 0)
        range = NULL;
    switch (dfs_gw_range_parse(range, fi->size, &off, &len)) {
    case DFS_GW_RANGE_NONE:
        off = 0;
        len = fi->size;
        break;
    case DFS_GW_RANGE_OK:
        status = MHD_HTTP_PARTIAL_CONTENT;
        snprintf(content_range, sizeof content_range, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off,
                 off + len - 1, fi->size);
        break;
    case DFS_GW_RANGE_UNSATISFIABLE: {
        snprintf(content_range, sizeof content_range, "bytes */%" PRIu64, fi->size);
        char *msg = NULL;
        if (asprintf(&msg, "the range '%s' is outside the file (%" PRIu64 " bytes)",
                     dfs_quote(range, &(struct dfs_quote){{0}}), fi->size) < 0)
            msg = NULL;
        protobuf_c_message_free_unpacked(&fi->base, NULL);
        size_t blen = 0;
        char *body = dfs_gw_error_json(416, msg != NULL ? msg : "range not satisfiable", &blen);
        free(msg);
        if (body == NULL)
            return MHD_NO;
        struct MHD_Response *r = MHD_create_response_from_buffer(blen, body, MHD_RESPMEM_MUST_FREE);
        if (r == NULL) {
            free(body);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_RANGE_NOT_SATISFIABLE, r);
        MHD_destroy_response(r);
        return ret;
    }
    }
    struct MHD_Response *r = NULL;
    if (head) {
        r = MHD_create_response_from_callback(len, READ_BLOCK, no_body, NULL, NULL);
        protobuf_c_message_free_unpacked(&fi->base, NULL);
        fi = NULL;
    } else {
        char *err = NULL;
        r = dfs_gw_stream_response(f->client, fi, off, len, f->spool_dir, f->cancel, "download",
                                   &err);
        fi = NULL; /* the response's now, or freed */
        if (r == NULL) {
            int ret = dfs_gw_reply_code(c, DFS_EIO, err);
            free(err);
            return ret;
        }
    }
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(r, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    MHD_add_response_header(r, MHD_HTTP_HEADER_LAST_MODIFIED, date);
    if (content_range[0] != '\0')
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- delete, list ---------------------------------------------------------------------------- */

static enum MHD_Result delete_file(dfs_gw_files *f, struct MHD_Connection *c, const char *rest)
{
    char *err = NULL, *path = NULL;
    int rc = file_path(rest, &path, &err);
    Dfs__V1__FileInfo *file = NULL;
    if (rc == DFS_OK)
        rc = dfs_client_rm(f->client, path, &file, &err);
    if (rc != DFS_OK) {
        free(path);
        enum MHD_Result r = dfs_gw_reply_code(c, rc, err);
        free(err);
        return r;
    }
    dfs_log(DFS_LOG_INFO, "deleted path=%s", path);
    free(path);
    struct doc d;
    if (!doc_open(&d)) {
        if (file != NULL)
            protobuf_c_message_free_unpacked(&file->base, NULL);
        return MHD_NO;
    }
    dfs_json_begin_object(&d.j);
    dfs_json_key(&d.j, "deleted");
    if (file != NULL) {
        json_file(&d.j, file);
        protobuf_c_message_free_unpacked(&file->base, NULL);
    } else {
        dfs_json_null(&d.j);
    }
    dfs_json_end_object(&d.j);
    return doc_reply(c, 200, &d);
}

static enum MHD_Result list_files(dfs_gw_files *f, struct MHD_Connection *c)
{
    char *err = NULL, *prefix = NULL, *limit = NULL, *token = NULL, *canon = NULL;
    int rc = dfs_gw_query(c, "prefix", &prefix, &err);
    if (rc == DFS_OK)
        rc = dfs_gw_query(c, "limit", &limit, &err);
    if (rc == DFS_OK)
        rc = dfs_gw_query(c, "page_token", &token, &err);
    if (rc == DFS_OK) {
        rc = dfs_path_prefix_canon(prefix != NULL ? prefix : "", &canon, &err);
        if (rc != DFS_OK)
            dfs_prefixerr(&err, rc, "bad prefix");
    }
    unsigned long n = 1000;
    if (rc == DFS_OK && limit != NULL) {
        char *end = NULL;
        n = limit[0] >= '0' && limit[0] <= '9' ? strtoul(limit, &end, 10) : 0;
        if (end == NULL || *end != '\0' || n < 1 || n > 1000)
            rc = dfs_seterr(&err, DFS_EINVAL, "limit must be from 1 to 1000, not '%s'",
                            dfs_quote(limit, &(struct dfs_quote){{0}}));
    }
    Dfs__V1__ListFilesResponse *resp = NULL;
    if (rc == DFS_OK)
        rc = dfs_client_ls(f->client, canon, (uint32_t)n, token, &resp, &err);
    free(prefix);
    free(limit);
    free(token);
    free(canon);
    if (rc != DFS_OK) {
        enum MHD_Result r = dfs_gw_reply_code(c, rc, err);
        free(err);
        return r;
    }
    struct doc d;
    if (!doc_open(&d)) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return MHD_NO;
    }
    dfs_json_begin_object(&d.j);
    dfs_json_key(&d.j, "files");
    dfs_json_begin_array(&d.j);
    for (size_t i = 0; i < resp->n_files; i++)
        json_file(&d.j, resp->files[i]);
    dfs_json_end_array(&d.j);
    dfs_json_key(&d.j, "next_page_token");
    dfs_json_string(&d.j, resp->next_page_token != NULL ? resp->next_page_token : "");
    dfs_json_end_object(&d.j);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return doc_reply(c, 200, &d);
}

/* ---- routing --------------------------------------------------------------------------------- */

enum MHD_Result dfs_gw_files_handle(dfs_gw_files *f, struct MHD_Connection *c, const char *method,
                                    const char *rest, const char *upload_data,
                                    size_t *upload_data_size, void **req_cls)
{
    bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    if (rest[0] == '\0' || strcmp(rest, "/") == 0) {
        if (!get && !head)
            return dfs_gw_reply_method(c, "GET, HEAD");
        return list_files(f, c);
    }
    if (strcmp(method, MHD_HTTP_METHOD_PUT) == 0) {
        struct upload *u = *req_cls;
        if (u == NULL)
            return put_begin(f, c, rest, req_cls);
        if (*upload_data_size > 0) {
            put_data(u, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return MHD_YES;
        }
        return put_end(u, c);
    }
    if (get || head)
        return get_file(f, c, rest, head);
    if (strcmp(method, MHD_HTTP_METHOD_DELETE) == 0)
        return delete_file(f, c, rest);
    return dfs_gw_reply_method(c, "GET, HEAD, PUT, DELETE");
}
