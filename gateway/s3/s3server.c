/* dfs-gateway's S3 server: see s3server.h and DESIGN.md. */
#include "gateway/s3/s3server.h"

#include "common/addr.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "gateway/listen.h"
#include "gateway/range.h"
#include "gateway/s3/chunked.h"
#include "gateway/s3/etag.h"
#include "gateway/s3/s3cond.h"
#include "gateway/s3/s3err.h"
#include "gateway/s3/s3http.h"
#include "gateway/s3/s3names.h"
#include "gateway/s3/s3req.h"
#include "gateway/s3/s3sum.h"
#include "gateway/s3/s3time.h"
#include "gateway/s3/s3xml.h"
#include "gateway/s3/segput.h"
#include "gateway/s3/sigv4.h"
#include "gateway/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SPOOL_PREFIX    "dfs-s3-"
#define DFS_ID_BUF      33 /* a file id: 32 hex digits */
#define READ_BLOCK      (256u << 10)
#define MAX_HEADERS     128
/* Signing keys are cached this long: a revoked key stops working within it. */
#define KEY_CACHE_MS    60000
#define KEY_CACHE_N     64
/* The role numbers of dfs.v1.TokenRole the server tells apart. */
#define ROLE_ADMIN      1
#define ROLE_READ_WRITE 2
#define ROLE_READ_ONLY  3

struct key_entry {
    char id[DFS_SIGV4_KEY_ID_MAX + 1];
    struct dfs_sigv4_scope scope;
    uint8_t key[DFS_SIGV4_KEY_LEN];
    int role;
    int64_t fetched_ms;
};

/*
 * An upload's record as last read: its file id and the key it holds. A record is written once
 * (when the upload is created) and only ever removed, so while the same file is at the record's
 * path it holds the same key: each UploadPart then needs only a stat of the record, not a get.
 */
#define UPLOAD_CACHE_N 64
/* Body buffers kept for reuse, at most (within --s3-body-memory). */
#define IDLE_BUFS      16
struct upload_entry {
    char path[160]; /* the record's dfs path, "" when unused */
    char file_id[DFS_ID_BUF];
    char *key;
};

struct dfs_s3server {
    struct MHD_Daemon *daemon;
    dfs_client *client;
    char *domain, *region, *spool_dir;
    volatile sig_atomic_t cancel;
    atomic_uint active;
    pthread_mutex_t mu; /* guards cache and sweeping */
    pthread_cond_t cv;  /* wakes the sweeper at stop */
    pthread_t sweeper;
    bool sweeping, stopping;
    int64_t upload_timeout_ms;
    uint64_t segment_size; /* bodies longer than this are stored in segments (segput.h) */
    /*
     * Bodies held in memory (struct body's mem): body_memory bytes at most, counting the buffers
     * in use and those kept for the next bodies (idle: reused, so that each body does not fault
     * in and zero fresh pages). Guarded by bufmu.
     */
    uint64_t body_memory, body_memory_used;
    pthread_mutex_t bufmu;
    struct idle_buf {
        uint8_t *p;
        uint64_t cap;
    } idle[IDLE_BUFS];
    unsigned nidle;
    /* The segments of long bodies held in memory (segput.h: two buffers of segment_size a body):
       segment_memory bytes at most; a body that finds no room spools its segments. Guarded by
       bufmu. */
    uint64_t segment_memory, segment_memory_used;
    struct key_entry cache[KEY_CACHE_N];
    unsigned next_slot;
    struct upload_entry uploads[UPLOAD_CACHE_N]; /* guarded by mu */
    unsigned next_upload;
    char address[300];
};

/* ---- signing keys ---------------------------------------------------------------------------- */

static int lookup_key(void *arg, const char *id, const struct dfs_sigv4_scope *scope,
                      uint8_t key[DFS_SIGV4_KEY_LEN], int *role, char **errmsg)
{
    dfs_s3server *s = arg;
    int64_t now = dfs_clock_wall_ms();
    pthread_mutex_lock(&s->mu);
    for (unsigned i = 0; i < KEY_CACHE_N; i++) {
        struct key_entry *e = &s->cache[i];
        if (e->id[0] != '\0' && now - e->fetched_ms < KEY_CACHE_MS && strcmp(e->id, id) == 0 &&
            memcmp(&e->scope, scope, sizeof *scope) == 0) {
            memcpy(key, e->key, DFS_SIGV4_KEY_LEN);
            *role = e->role;
            pthread_mutex_unlock(&s->mu);
            return DFS_OK;
        }
    }
    pthread_mutex_unlock(&s->mu);
    Dfs__V1__GetSigningKeyResponse *resp = NULL;
    int rc = dfs_client_s3_signing_key(s->client, id, scope->date, scope->region, &resp, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (resp->signing_key.len != DFS_SIGV4_KEY_LEN || resp->info == NULL) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return dfs_seterr(errmsg, DFS_EINTERNAL, "GetSigningKey answered without a key");
    }
    memcpy(key, resp->signing_key.data, DFS_SIGV4_KEY_LEN);
    *role = (int)resp->info->role;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    pthread_mutex_lock(&s->mu);
    struct key_entry *e = &s->cache[s->next_slot++ % KEY_CACHE_N];
    memset(e, 0, sizeof *e);
    snprintf(e->id, sizeof e->id, "%s", id);
    e->scope = *scope;
    memcpy(e->key, key, DFS_SIGV4_KEY_LEN);
    e->role = *role;
    e->fetched_ms = now;
    pthread_mutex_unlock(&s->mu);
    return DFS_OK;
}

/* ---- requests -------------------------------------------------------------------------------- */

/* An operation's body as it arrives: proven, then acted on at the last call. */
struct body {
    int fd; /* spool file (PutObject, UploadPart), or -1 */
    char *spool;
    /* Instead of the spool: the body in memory, in a buffer charged to the server's body_memory
       (body_memory_take); NULL otherwise. */
    uint8_t *mem;
    uint64_t mem_cap, mem_max, mem_len; /* buffer size, declared length, arrived so far */
    dfs_s3server *mem_owner;            /* whose budget mem_cap is charged to */
    bool mem_overflow;                  /* more bytes came than declared */
    /* Instead of the spool: a body longer than the server's segment size, stored in segments as
       it arrives and stitched at the end (segput.h); NULL otherwise. */
    dfs_segput *seg;
    char *seg_err;
    uint64_t seg_charge; /* charged to the server's segment_memory (its segments in memory) */
    dfs_s3server *seg_owner;
    char *xml; /* the XML bodies, at most DFS_S3XML_MAX_BODY */
    /* The x-amz-checksum-* the body was proven by, kept with the object as ":x-amz-checksum-..."
       (returned when a GET asks, x-amz-checksum-mode: ENABLED); "" when none. */
    char checksum_name[48];
    char checksum_value[128];
    size_t xml_len;
    bool keep_xml;
    uint64_t total;
    dfs_etag_md5 *md5;
    dfs_s3sum *sum;
    const char *sum_value; /* the x-amz-checksum-* header, or NULL (then a trailer) */
    enum dfs_s3sum_algo algo;
    dfs_chunked *chunked;
    dfs_sigv4_body *plain;
    int write_errno;
    bool too_big;
};

struct request {
    dfs_s3server *s;
    char *uri; /* the raw request target */
    bool started;
    bool failed; /* an error was queued at the first call; the body is dropped */
    struct dfs_s3http_header headers[MAX_HEADERS];
    size_t nheaders;
    struct dfs_s3http_request http;
    struct dfs_sigv4_auth auth;
    struct dfs_s3req q;
    bool parsed;
    struct body b;
    /* A body that failed on the way: answered at its end (MHD queues no response mid-body). */
    struct dfs_s3err body_err;
    bool body_failed;
    char request_id[17];
};

/* A body's buffer back to the idle ones (or freed when they are as many as kept). */
static void body_memory_put(dfs_s3server *s, uint8_t *p, uint64_t cap)
{
    pthread_mutex_lock(&s->bufmu);
    if (s->nidle < IDLE_BUFS) {
        s->idle[s->nidle++] = (struct idle_buf){p, cap};
        p = NULL;
    } else {
        s->body_memory_used -= cap;
    }
    pthread_mutex_unlock(&s->bufmu);
    free(p);
}

/*
 * Hold a body of len bytes in memory when the server's budget has room for it (b->mem), so that it
 * is neither written to the spool nor read back from it: an idle buffer of len to 2 x len bytes,
 * or a new one (idle ones freed to make room). Returns false (nothing taken) otherwise.
 */
static bool body_memory_take(dfs_s3server *s, struct body *b, uint64_t len)
{
    uint64_t want = len > 0 ? len : 1;
    uint8_t *p = NULL, *drop[IDLE_BUFS];
    uint64_t cap = want;
    unsigned ndrop = 0;
    pthread_mutex_lock(&s->bufmu);
    int best = -1;
    for (unsigned i = 0; i < s->nidle; i++)
        if (s->idle[i].cap >= want && s->idle[i].cap / 2 <= want &&
            (best < 0 || s->idle[i].cap < s->idle[best].cap))
            best = (int)i;
    if (best >= 0) {
        p = s->idle[best].p;
        cap = s->idle[best].cap;
        s->idle[best] = s->idle[--s->nidle];
    } else {
        while (s->body_memory_used + want > s->body_memory && s->nidle > 0) {
            struct idle_buf d = s->idle[--s->nidle];
            s->body_memory_used -= d.cap;
            drop[ndrop++] = d.p;
        }
        if (s->body_memory_used + want <= s->body_memory)
            s->body_memory_used += want;
        else
            want = 0; /* no room */
    }
    pthread_mutex_unlock(&s->bufmu);
    for (unsigned i = 0; i < ndrop; i++)
        free(drop[i]);
    if (p == NULL && want > 0 && (p = malloc((size_t)want)) == NULL) {
        pthread_mutex_lock(&s->bufmu);
        s->body_memory_used -= want;
        pthread_mutex_unlock(&s->bufmu);
    }
    if (p == NULL)
        return false;
    b->mem = p;
    b->mem_cap = cap;
    b->mem_max = len;
    b->mem_len = 0;
    b->mem_owner = s;
    return true;
}

static void body_free(struct body *b)
{
    if (b->mem_owner != NULL)
        body_memory_put(b->mem_owner, b->mem, b->mem_cap);
    if (b->fd >= 0)
        close(b->fd);
    if (b->spool != NULL)
        unlink(b->spool);
    free(b->spool);
    dfs_segput_destroy(b->seg);
    if (b->seg_owner != NULL) {
        pthread_mutex_lock(&b->seg_owner->bufmu);
        b->seg_owner->segment_memory_used -= b->seg_charge;
        pthread_mutex_unlock(&b->seg_owner->bufmu);
    }
    free(b->seg_err);
    free(b->xml);
    dfs_etag_md5_destroy(b->md5);
    dfs_s3sum_destroy(b->sum);
    dfs_chunked_destroy(b->chunked);
    dfs_sigv4_body_destroy(b->plain);
    memset(b, 0, sizeof *b);
    b->fd = -1;
}

static void *request_begin(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)c;
    dfs_s3server *s = cls;
    struct request *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->s = s;
    r->b.fd = -1;
    r->uri = strdup(uri != NULL ? uri : "/");
    uint8_t id[8];
    if (RAND_bytes(id, sizeof id) != 1)
        memset(id, 0, sizeof id);
    dfs_sigv4_hex(id, sizeof id, r->request_id);
    for (char *p = r->request_id; *p != '\0'; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    atomic_fetch_add(&s->active, 1);
    return r;
}

static void request_end(void *cls, struct MHD_Connection *c, void **req_cls,
                        enum MHD_RequestTerminationCode why)
{
    (void)c;
    (void)why;
    dfs_s3server *s = cls;
    struct request *r = *req_cls;
    if (r == NULL)
        return;
    body_free(&r->b);
    dfs_s3err_clear(&r->body_err);
    if (r->parsed)
        dfs_s3req_free(&r->q);
    dfs_sigv4_auth_clear(&r->auth);
    free(r->uri);
    free(r);
    *req_cls = NULL;
    atomic_fetch_sub(&s->active, 1);
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    struct request *r = cls;
    if (r->nheaders < MAX_HEADERS) {
        r->headers[r->nheaders].name = key;
        r->headers[r->nheaders].value = value != NULL ? value : "";
        r->nheaders++;
    }
    return MHD_YES;
}

/* ---- responses ------------------------------------------------------------------------------- */

static void common_headers(struct MHD_Response *resp, const struct request *r)
{
    MHD_add_response_header(resp, "x-amz-request-id", r->request_id);
    MHD_add_response_header(resp, "Server", "dfs");
}

static enum MHD_Result reply(struct MHD_Connection *c, const struct request *r, unsigned status,
                             const char *type, char *body, size_t len)
{
    struct MHD_Response *resp =
        body != NULL ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
                     : MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    common_headers(resp, r);
    if (type != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_xml(struct MHD_Connection *c, const struct request *r, char *body,
                                 size_t len)
{
    return reply(c, r, MHD_HTTP_OK, "application/xml", body, len);
}

/* The error *e as S3 writes it (HEAD: status and headers only); clears *e. */
static enum MHD_Result reply_error(struct MHD_Connection *c, struct request *r, struct dfs_s3err *e)
{
    if (e->code == DFS_S3ERR_NONE)
        dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, NULL);
    unsigned status = (unsigned)dfs_s3err_http_status(e->code);
    char path[1200];
    const char *q = strchr(r->uri, '?');
    size_t plen = q != NULL ? (size_t)(q - r->uri) : strlen(r->uri);
    snprintf(path, sizeof path, "%.*s", (int)(plen < 1100 ? plen : 1100), r->uri);
    dfs_log(status >= 500 ? DFS_LOG_WARN : DFS_LOG_INFO,
            "s3 refused method=%s path=%s code=%s status=%u request_id=%s message=%s",
            r->http.method != NULL ? r->http.method : "-", path, dfs_s3err_name(e->code), status,
            r->request_id, e->message != NULL ? e->message : "-");
    r->failed = true;
    bool head = r->http.method != NULL && strcmp(r->http.method, "HEAD") == 0;
    char *body = NULL;
    size_t len = 0;
    if (!head && dfs_s3err_body(e, path, r->request_id, &body, &len) != DFS_OK) {
        /* A message XML cannot carry: the code alone. */
        struct dfs_s3err plain = {.code = e->code};
        dfs_s3err_body(&plain, NULL, r->request_id, &body, &len);
    }
    dfs_s3err_clear(e);
    if (status == 304) { /* Not Modified has no body */
        free(body);
        body = NULL;
    }
    return reply(c, r, status, body != NULL ? "application/xml" : NULL, body, len);
}

/* A dfs failure as the closest S3 error. */
static int s3_from_dfs(struct dfs_s3err *e, int rc, enum dfs_s3err_code notfound, const char *msg)
{
    enum dfs_s3err_code code;
    switch (rc) {
    case DFS_ENOTFOUND:
        code = notfound;
        break;
    case DFS_EPERM:
    case DFS_EUNAUTH:
        code = DFS_S3ERR_ACCESS_DENIED;
        break;
    case DFS_EUNAVAIL:
    case DFS_ETIMEDOUT:
        code = DFS_S3ERR_SERVICE_UNAVAILABLE;
        break;
    case DFS_EPRECOND: /* too few live nodes and the like; conditions are told apart by callers */
        code = DFS_S3ERR_SERVICE_UNAVAILABLE;
        break;
    case DFS_EINVAL:
        code = DFS_S3ERR_INVALID_ARGUMENT;
        break;
    default:
        code = DFS_S3ERR_INTERNAL_ERROR;
    }
    return dfs_s3err_set(e, code, "%s", msg != NULL ? msg : dfs_strerror(rc));
}

/* ---- catalog helpers ------------------------------------------------------------------------- */

/* 0 when the bucket exists (the catalog's buckets); NoSuchBucket (or the failure) in *e
   otherwise. *created_ms may be NULL. */
static int bucket_check(dfs_s3server *s, const char *bucket, int64_t *created_ms,
                        struct dfs_s3err *e)
{
    char *err = NULL;
    Dfs__V1__Bucket *b = NULL;
    int rc = dfs_client_bucket_get(s->client, bucket, &b, &err);
    if (rc == DFS_OK) {
        if (created_ms != NULL)
            *created_ms = b->created_ms;
        protobuf_c_message_free_unpacked(&b->base, NULL);
        return DFS_OK;
    }
    rc = s3_from_dfs(e, rc, DFS_S3ERR_NO_SUCH_BUCKET, rc == DFS_ENOTFOUND ? NULL : err);
    if (e->code == DFS_S3ERR_NO_SUCH_BUCKET)
        dfs_s3err_add_extra(e, "BucketName", bucket);
    free(err);
    return rc;
}

/* A stored header of a file (s3names.h), or NULL. */
static const char *meta_find(const Dfs__V1__FileInfo *fi, const char *name)
{
    return dfs_s3names_meta_find(fi->meta.data, fi->meta.len, name);
}

/*
 * The ETag of a committed file: its MD5 as S3 writes it (with "-N" for a multipart object) when the
 * put gave one (file_meta). Files put with `dfs put` have none: they get the form DESIGN.md gives,
 * the first 32 hex digits of their SHA-256 and "-1" -- stable for conditions, and, having a '-',
 * not taken by clients for an MD5 to check.
 */
static void file_etag(const Dfs__V1__FileInfo *fi, char out[DFS_ETAG_MAX + 1])
{
    if (fi->md5.len == DFS_ETAG_MD5_LEN) {
        const char *parts = meta_find(fi, ":parts");
        if (parts == NULL) {
            dfs_etag_single(fi->md5.data, out);
        } else {
            char hex[2 * DFS_ETAG_MD5_LEN + 1];
            dfs_sigv4_hex(fi->md5.data, DFS_ETAG_MD5_LEN, hex);
            snprintf(out, DFS_ETAG_MAX + 1, "\"%s-%.5s\"", hex, parts);
        }
        return;
    }
    char hex[2 * DFS_SHA256_BYTES + 1] = "";
    if (fi->sha256.len == DFS_SHA256_BYTES)
        dfs_client_sha256_hex(fi->sha256.data, hex);
    snprintf(out, DFS_ETAG_MAX + 1, "\"%.32s-1\"", hex);
}

/* A new spool file in the spool folder: fd and its name (*path, malloc'd). */
static int spool_open(dfs_s3server *s, int *fd, char **path, struct dfs_s3err *e)
{
    if (asprintf(path, "%s/" SPOOL_PREFIX "XXXXXX", s->spool_dir) < 0) {
        *path = NULL;
        return dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    }
    *fd = mkostemp(*path, O_CLOEXEC);
    if (*fd < 0) {
        int en = errno;
        free(*path);
        *path = NULL;
        return dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "cannot spool in %s: %s", s->spool_dir,
                             strerror(en));
    }
    return DFS_OK;
}

/*
 * Store a body at path (replacing what is there): the spool file fd, or, with body and body->mem,
 * the bytes in memory; sha256 (may be NULL) is their SHA-256 when the request proved it (a signed
 * payload), which spares the engine hashing them again. With its MD5 and stored headers (either
 * may be NULL), under conditions checked in the commit (if_file_id may be NULL).
 */
static int store_body(dfs_s3server *s, const struct body *body, int fd, const char *spool,
                      const uint8_t *sha256, const char *path, const uint8_t *md5, const char *meta,
                      size_t meta_len, bool if_absent, const char *if_file_id,
                      struct dfs_client_put_result *res, struct dfs_s3err *e)
{
    struct dfs_client_put_opts o;
    memset(&o, 0, sizeof o);
    o.if_absent = if_absent;
    o.if_file_id = if_file_id;
    o.md5 = md5;
    o.meta = meta;
    o.meta_len = meta_len;
    o.overwrite = true;
    o.sha256 = sha256;
    o.interrupted = &s->cancel;
    if (body != NULL && body->mem != NULL) {
        o.mem = body->mem;
        o.mem_len = body->mem_len;
    } else {
        o.from_fd = true;
        o.fd = fd;
        if (lseek(fd, 0, SEEK_SET) != 0)
            return dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "cannot rewind the spool file");
    }
    char *err = NULL;
    int rc = dfs_client_put(s->client, spool != NULL ? spool : "(memory)", path, &o, res, &err);
    if (rc != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "s3 put failed path=%s err=%s", path,
                err != NULL ? err : dfs_strerror(rc));
        if (rc == DFS_EPRECOND && (if_absent || if_file_id != NULL))
            rc = dfs_s3err_set(e, DFS_S3ERR_PRECONDITION_FAILED, "%s", err != NULL ? err : "");
        else
            rc = s3_from_dfs(e, rc, DFS_S3ERR_NO_SUCH_KEY, err);
    }
    free(err);
    return rc;
}

static int store(dfs_s3server *s, int fd, const char *spool, const char *path, const uint8_t *md5,
                 const char *meta, size_t meta_len, struct dfs_client_put_result *res,
                 struct dfs_s3err *e)
{
    return store_body(s, NULL, fd, spool, NULL, path, md5, meta, meta_len, false, NULL, res, e);
}

/* ---- buckets --------------------------------------------------------------------------------- */

static enum MHD_Result list_buckets(struct MHD_Connection *c, struct request *r)
{
    struct dfs_s3err e = {0};
    char *err = NULL;
    Dfs__V1__ListBucketsResponse *resp = NULL;
    int rc = dfs_client_buckets(r->s->client, &resp, &err);
    if (rc != DFS_OK) {
        s3_from_dfs(&e, rc, DFS_S3ERR_NO_SUCH_BUCKET, err);
        free(err);
        return reply_error(c, r, &e);
    }
    struct dfs_s3xml_bucket *v = calloc(resp->n_buckets + 1, sizeof *v);
    for (size_t i = 0; v != NULL && i < resp->n_buckets; i++) {
        v[i].name = resp->buckets[i]->name;
        v[i].created_ms = resp->buckets[i]->created_ms;
    }
    char *body = NULL, *xerr = NULL;
    size_t len = 0;
    struct dfs_s3xml_owner owner = {.id = "dfs", .display_name = "dfs"};
    rc = v != NULL ? dfs_s3xml_list_buckets(&owner, v, resp->n_buckets, &body, &len, &xerr)
                   : DFS_ENOMEM;
    free(v);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    if (rc != DFS_OK) {
        dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "%s", xerr != NULL ? xerr : "out of memory");
        free(xerr);
        return reply_error(c, r, &e);
    }
    return reply_xml(c, r, body, len);
}

static enum MHD_Result create_bucket(struct MHD_Connection *c, struct request *r)
{
    struct dfs_s3err e = {0};
    char *loc = NULL, *err = NULL;
    int rc =
        dfs_s3xml_parse_create_bucket(r->b.xml != NULL ? r->b.xml : "", r->b.xml_len, &loc, &e);
    if (rc == DFS_OK && loc[0] != '\0' && strcmp(loc, r->s->region) != 0)
        rc = dfs_s3err_set(&e, DFS_S3ERR_INVALID_LOCATION_CONSTRAINT,
                           "this gateway serves region %s only", r->s->region);
    free(loc);
    /* The token the key belongs to ("DFS" + its id in upper case), for the record. */
    char token_id[17] = "";
    const char *id = r->auth.access_key_id;
    if (strlen(id) == 19 && strncmp(id, "DFS", 3) == 0)
        for (int i = 0; i < 16; i++)
            token_id[i] =
                (char)(id[3 + i] >= 'A' && id[3 + i] <= 'F' ? id[3 + i] - 'A' + 'a' : id[3 + i]);
    if (rc == DFS_OK) {
        rc = dfs_client_bucket_create(r->s->client, r->q.bucket, token_id, &err);
        if (rc == DFS_EEXIST) {
            dfs_s3err_set(&e, DFS_S3ERR_BUCKET_ALREADY_OWNED_BY_YOU, NULL);
            dfs_s3err_add_extra(&e, "BucketName", r->q.bucket);
        } else if (rc != DFS_OK) {
            s3_from_dfs(&e, rc, DFS_S3ERR_NO_SUCH_BUCKET, err);
        }
        free(err);
    }
    if (rc != DFS_OK)
        return reply_error(c, r, &e);
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    common_headers(resp, r);
    char where[80];
    snprintf(where, sizeof where, "/%s", r->q.bucket);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, where);
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result delete_bucket(struct MHD_Connection *c, struct request *r)
{
    struct dfs_s3err e = {0};
    if (bucket_check(r->s, r->q.bucket, NULL, &e) != DFS_OK)
        return reply_error(c, r, &e);
    /* Uploads in progress hold the bucket too (the catalog checks the files under it). */
    char *prefix = NULL, *err = NULL;
    if (asprintf(&prefix, "/.dfs-s3/uploads/%s/", r->q.bucket) < 0)
        return MHD_NO;
    Dfs__V1__ListFilesResponse *resp = NULL;
    int rc = dfs_client_ls(r->s->client, prefix, 1, NULL, &resp, &err);
    free(prefix);
    if (rc == DFS_OK && resp->n_files > 0)
        rc = DFS_EPRECOND;
    if (resp != NULL)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    if (rc == DFS_OK) {
        free(err);
        err = NULL;
        rc = dfs_client_bucket_delete(r->s->client, r->q.bucket, &err);
    }
    if (rc == DFS_EPRECOND) {
        dfs_s3err_set(&e, DFS_S3ERR_BUCKET_NOT_EMPTY, NULL);
        dfs_s3err_add_extra(&e, "BucketName", r->q.bucket);
    } else if (rc != DFS_OK) {
        s3_from_dfs(&e, rc, DFS_S3ERR_NO_SUCH_BUCKET, err);
    }
    free(err);
    if (rc != DFS_OK)
        return reply_error(c, r, &e);
    dfs_log(DFS_LOG_INFO, "s3 bucket deleted name=%s", r->q.bucket);
    return reply(c, r, MHD_HTTP_NO_CONTENT, NULL, NULL, 0);
}

/* ---- listing --------------------------------------------------------------------------------- */

struct listing {
    struct dfs_s3xml_object *objects;
    size_t nobjects;
    char **prefixes;
    size_t nprefixes;
    char **keys; /* owned copies of the objects' keys and etags */
    char **etags;
    Dfs__V1__ListFilesResponse *page;
};

static void listing_free(struct listing *l)
{
    for (size_t i = 0; i < l->nobjects; i++) {
        free(l->keys[i]);
        free(l->etags[i]);
    }
    for (size_t i = 0; i < l->nprefixes; i++)
        free(l->prefixes[i]);
    free(l->objects);
    free(l->keys);
    free(l->etags);
    free(l->prefixes);
}

static enum MHD_Result list_objects(struct MHD_Connection *c, struct request *r, int version)
{
    struct dfs_s3err e = {0};
    const struct dfs_s3req *q = &r->q;
    if (bucket_check(r->s, q->bucket, NULL, &e) != DFS_OK)
        return reply_error(c, r, &e);
    const char *prefix = q->prefix != NULL ? q->prefix : "";
    const char *delim = q->delimiter != NULL && q->delimiter[0] != '\0' ? q->delimiter : NULL;
    char *after = NULL; /* the key to list after */
    if (version == 2 && q->continuation_token != NULL) {
        after = dfs_s3names_token_decode(q->continuation_token);
        if (after == NULL) {
            dfs_s3err_set(&e, DFS_S3ERR_INVALID_ARGUMENT,
                          "The continuation token provided is "
                          "incorrect");
            return reply_error(c, r, &e);
        }
    } else if (version == 2 && q->start_after != NULL) {
        after = strdup(q->start_after);
    } else if (version == 1 && q->marker != NULL) {
        after = strdup(q->marker);
    }
    char *lp = NULL;
    bool none = false;
    if (dfs_s3req_list_prefix(q->bucket, prefix, &lp, &none) != DFS_OK) {
        free(after);
        return MHD_NO;
    }
    size_t bl = strlen(q->bucket) + 2; /* "/bucket/" */
    struct listing l = {0};
    size_t cap = q->max > 0 ? q->max : 1;
    l.objects = calloc(cap, sizeof *l.objects);
    l.keys = calloc(cap, sizeof *l.keys);
    l.etags = calloc(cap, sizeof *l.etags);
    l.prefixes = calloc(cap, sizeof *l.prefixes);
    bool truncated = false;
    char *last = NULL; /* the last key or prefix returned */
    int rc = l.objects != NULL && l.keys != NULL && l.etags != NULL && l.prefixes != NULL
                 ? DFS_OK
                 : DFS_ENOMEM;
    /* The dfs page token: the path to continue after. A token that ends with the delimiter is a
       common prefix already returned: continue past everything under it. */
    char *tok = NULL;
    if (rc == DFS_OK && after != NULL) {
        bool past = delim != NULL && strlen(after) >= strlen(delim) &&
                    strcmp(after + strlen(after) - strlen(delim), delim) == 0;
        if (asprintf(&tok, "/%s/%s%s", q->bucket, after, past ? "\xF4\x8F\xBF\xBF" : "") < 0)
            rc = DFS_ENOMEM;
    }
    char *err = NULL;
    while (rc == DFS_OK && !none && !truncated) {
        Dfs__V1__ListFilesResponse *page = NULL;
        rc = dfs_client_ls(r->s->client, lp, 1000, tok, &page, &err);
        if (rc != DFS_OK)
            break;
        bool jumped = false;
        for (size_t i = 0; i < page->n_files && !jumped; i++) {
            const Dfs__V1__FileInfo *fi = page->files[i];
            if (strlen(fi->path) < bl)
                continue;
            const char *key = fi->path + bl;
            if (l.nobjects + l.nprefixes == q->max) {
                truncated = true;
                break;
            }
            const char *d = delim != NULL ? strstr(key + strlen(prefix), delim) : NULL;
            if (d != NULL) {
                size_t plen = (size_t)(d - key) + strlen(delim);
                char *p = strndup(key, plen);
                if (p == NULL) {
                    rc = DFS_ENOMEM;
                    break;
                }
                l.prefixes[l.nprefixes++] = p;
                last = p;
                /* Skip the rest of this common prefix in one round trip. */
                free(tok);
                if (asprintf(&tok, "/%s/%s\xF4\x8F\xBF\xBF", q->bucket, p) < 0) {
                    tok = NULL;
                    rc = DFS_ENOMEM;
                }
                jumped = true;
                continue;
            }
            char etag[DFS_ETAG_MAX + 1];
            file_etag(fi, etag);
            size_t k = l.nobjects;
            l.keys[k] = strdup(key);
            l.etags[k] = strdup(etag);
            if (l.keys[k] == NULL || l.etags[k] == NULL) {
                free(l.keys[k]);
                free(l.etags[k]);
                rc = DFS_ENOMEM;
                break;
            }
            l.objects[k].key = l.keys[k];
            l.objects[k].etag = l.etags[k];
            l.objects[k].size = fi->size;
            l.objects[k].last_modified_ms = fi->committed_ms;
            l.nobjects++;
            last = l.keys[k];
        }
        bool more = page->next_page_token != NULL && page->next_page_token[0] != '\0';
        if (!jumped && rc == DFS_OK && more && !truncated) {
            free(tok);
            tok = strdup(page->next_page_token);
            if (tok == NULL)
                rc = DFS_ENOMEM;
        }
        protobuf_c_message_free_unpacked(&page->base, NULL);
        if (!jumped && !more)
            break;
    }
    free(tok);
    free(lp);
    if (rc != DFS_OK) {
        s3_from_dfs(&e, rc, DFS_S3ERR_NO_SUCH_BUCKET, err);
        free(err);
        free(after);
        listing_free(&l);
        return reply_error(c, r, &e);
    }
    free(err);
    struct dfs_s3xml_owner owner = {.id = "dfs", .display_name = "dfs"};
    if (q->fetch_owner || version == 1)
        for (size_t i = 0; i < l.nobjects; i++)
            l.objects[i].owner = &owner;
    char *next = version == 2 && truncated && last != NULL ? dfs_s3names_token_encode(last) : NULL;
    struct dfs_s3xml_listing x = {
        .version = version,
        .bucket = q->bucket,
        .prefix = prefix,
        .delimiter = delim,
        .max_keys = q->max,
        .truncated = truncated,
        .url_encoding = q->url_encoding,
        .marker = q->marker != NULL ? q->marker : "",
        .next_marker = version == 1 && truncated && delim != NULL ? last : NULL,
        .continuation_token = q->continuation_token,
        .next_continuation_token = next,
        .start_after = q->start_after,
        .objects = l.objects,
        .nobjects = l.nobjects,
        .prefixes = (const char *const *)l.prefixes,
        .nprefixes = l.nprefixes,
    };
    char *body = NULL, *xerr = NULL;
    size_t len = 0;
    rc = dfs_s3xml_list_objects(&x, &body, &len, &xerr);
    free(next);
    free(after);
    listing_free(&l);
    if (rc != DFS_OK) {
        dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "%s", xerr != NULL ? xerr : "xml");
        free(xerr);
        return reply_error(c, r, &e);
    }
    return reply_xml(c, r, body, len);
}

/* ---- objects: read --------------------------------------------------------------------------- */

static ssize_t no_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

/* The object of the request (NoSuchKey, NoSuchBucket). */
static int object_stat(struct request *r, const char *bucket, const char *key,
                       Dfs__V1__FileInfo **fi, struct dfs_s3err *e)
{
    char *path = NULL, *err = NULL;
    int rc = dfs_s3req_object_path(bucket, key, &path, e);
    if (rc != DFS_OK)
        return rc;
    rc = dfs_client_stat(r->s->client, path, fi, &err);
    free(path);
    if (rc == DFS_ENOTFOUND) {
        free(err);
        if (bucket_check(r->s, bucket, NULL, e) != DFS_OK)
            return DFS_ENOTFOUND;
        rc = dfs_s3err_set(e, DFS_S3ERR_NO_SUCH_KEY, NULL);
        dfs_s3err_add_extra(e, "Key", key);
        return rc;
    }
    if (rc != DFS_OK)
        s3_from_dfs(e, rc, DFS_S3ERR_NO_SUCH_KEY, err);
    free(err);
    return rc;
}

static enum MHD_Result get_object(struct MHD_Connection *c, struct request *r, bool head)
{
    struct dfs_s3err e = {0};
    Dfs__V1__FileInfo *fi = NULL;
    if (object_stat(r, r->q.bucket, r->q.key, &fi, &e) != DFS_OK)
        return reply_error(c, r, &e);
    char etag[DFS_ETAG_MAX + 1], date[DFS_S3TIME_HTTP_LEN + 1];
    file_etag(fi, etag);
    int64_t mtime = fi->committed_ms / 1000;
    /* The stored headers outlive fi (handed to the download, or freed first). */
    Dfs__V1__FileInfo held = DFS__V1__FILE_INFO__INIT;
    const Dfs__V1__FileInfo *meta_of = &held;
    if (fi->meta.len > 0 && (held.meta.data = malloc(fi->meta.len)) != NULL) {
        memcpy(held.meta.data, fi->meta.data, fi->meta.len);
        held.meta.len = fi->meta.len;
    }
    dfs_s3time_format_http(mtime, date);
    struct dfs_s3cond cond;
    int rc = dfs_s3cond_parse(&r->http, false, time(NULL), &cond, &e);
    if (rc == DFS_OK) {
        enum dfs_s3err_code code = dfs_s3cond_eval(&cond, DFS_S3COND_READ, true, etag, mtime);
        if (code != DFS_S3ERR_NONE)
            rc = dfs_s3err_set(&e, code, NULL);
    }
    if (rc != DFS_OK) {
        protobuf_c_message_free_unpacked(&fi->base, NULL);
        if (e.code == DFS_S3ERR_NOT_MODIFIED) {
            /* 304 carries the validators and no body. */
            dfs_s3err_clear(&e);
            struct MHD_Response *resp =
                MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
            if (resp == NULL) {
                free(held.meta.data);
                return MHD_NO;
            }
            common_headers(resp, r);
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
            MHD_add_response_header(resp, MHD_HTTP_HEADER_LAST_MODIFIED, date);
            enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_NOT_MODIFIED, resp);
            MHD_destroy_response(resp);
            free(held.meta.data);
            return ret;
        }
        free(held.meta.data);
        return reply_error(c, r, &e);
    }
    uint64_t off = 0, len = fi->size;
    unsigned status = MHD_HTTP_OK;
    char content_range[96] = "";
    const char *range = dfs_s3http_header(&r->http, "range");
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
    case DFS_GW_RANGE_UNSATISFIABLE:
        dfs_s3err_set(&e, DFS_S3ERR_INVALID_RANGE, "the object is %" PRIu64 " bytes", fi->size);
        protobuf_c_message_free_unpacked(&fi->base, NULL);
        dfs_s3err_add_extra(&e, "RangeRequested", range);
        free(held.meta.data);
        return reply_error(c, r, &e);
    }
    struct MHD_Response *resp = NULL;
    if (head || len == 0) {
        resp = len == 0 ? MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT)
                        : MHD_create_response_from_callback(len, READ_BLOCK, no_body, NULL, NULL);
        protobuf_c_message_free_unpacked(&fi->base, NULL);
    } else {
        char *err = NULL;
        resp = dfs_gw_stream_response(r->s->client, fi, off, len, r->s->spool_dir, &r->s->cancel,
                                      "s3 download", &err);
        if (resp == NULL) {
            dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR,
                          err != NULL ? err : "cannot start the download");
            free(err);
            free(held.meta.data);
            return reply_error(c, r, &e);
        }
    }
    if (resp == NULL) {
        free(held.meta.data);
        return MHD_NO;
    }
    common_headers(resp, r);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LAST_MODIFIED, date);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    if (content_range[0] != '\0')
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
    /* The stored headers, each unless a response-* parameter overrides it. */
    const struct dfs_s3req *q = &r->q;
    const struct {
        const char *name, *header, *override;
    } std[] = {
        {"content-type", MHD_HTTP_HEADER_CONTENT_TYPE, q->response_content_type},
        {"content-disposition", "Content-Disposition", q->response_content_disposition},
        {"cache-control", MHD_HTTP_HEADER_CACHE_CONTROL, q->response_cache_control},
        {"content-encoding", MHD_HTTP_HEADER_CONTENT_ENCODING, q->response_content_encoding},
        {"content-language", MHD_HTTP_HEADER_CONTENT_LANGUAGE, q->response_content_language},
        {"expires", MHD_HTTP_HEADER_EXPIRES, q->response_expires},
    };
    for (size_t i = 0; i < sizeof std / sizeof std[0]; i++) {
        const char *v = std[i].override != NULL ? std[i].override : meta_find(meta_of, std[i].name);
        if (v == NULL && i == 0)
            v = "binary/octet-stream";
        if (v != NULL)
            MHD_add_response_header(resp, std[i].header, v);
    }
    size_t pos = 0;
    const char *mn, *mv;
    /* The whole object's checksum, when asked for and the whole object is sent. */
    const char *mode = dfs_s3http_header(&r->http, "x-amz-checksum-mode");
    bool sums = mode != NULL && strcasecmp(mode, "ENABLED") == 0 && status == MHD_HTTP_OK;
    while (dfs_s3names_meta_next(meta_of->meta.data, meta_of->meta.len, &pos, &mn, &mv))
        if (strncmp(mn, "x-amz-meta-", 11) == 0)
            MHD_add_response_header(resp, mn, mv);
        else if (sums && strncmp(mn, ":x-amz-checksum-", 16) == 0)
            MHD_add_response_header(resp, mn + 1, mv);
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    free(held.meta.data);
    return ret;
}

/* ---- objects: write -------------------------------------------------------------------------- */

static int body_sink(void *arg, const uint8_t *data, size_t len)
{
    struct body *b = arg;
    b->total += len;
    if (b->md5 != NULL)
        dfs_etag_md5_update(b->md5, data, len);
    if (b->sum != NULL)
        dfs_s3sum_update(b->sum, data, len);
    if (b->keep_xml) {
        if (b->xml_len + len > DFS_S3XML_MAX_BODY) {
            b->too_big = true;
            return DFS_OK;
        }
        char *nx = realloc(b->xml, b->xml_len + len + 1);
        if (nx == NULL)
            return DFS_ENOMEM;
        b->xml = nx;
        memcpy(b->xml + b->xml_len, data, len);
        b->xml_len += len;
        b->xml[b->xml_len] = '\0';
    }
    if (b->mem != NULL && len > 0) {
        if (len > b->mem_max - b->mem_len)
            b->mem_overflow = true; /* said at the end: more than the declared length */
        else
            memcpy(b->mem + b->mem_len, data, len);
        if (!b->mem_overflow)
            b->mem_len += len;
    }
    if (b->seg != NULL && b->seg_err == NULL && len > 0 &&
        dfs_segput_write(b->seg, data, len, &b->seg_err) != DFS_OK && b->seg_err == NULL)
        b->seg_err = strdup("cannot store a segment");
    while (b->fd >= 0 && b->write_errno == 0 && len > 0) {
        ssize_t k = write(b->fd, data, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            b->write_errno = errno;
            break;
        }
        data += k;
        len -= (size_t)k;
    }
    return DFS_OK;
}

static bool op_has_body(enum dfs_s3req_op op)
{
    return op == DFS_S3REQ_PUT_OBJECT || op == DFS_S3REQ_UPLOAD_PART ||
           op == DFS_S3REQ_CREATE_BUCKET || op == DFS_S3REQ_DELETE_OBJECTS ||
           op == DFS_S3REQ_COMPLETE_MULTIPART_UPLOAD;
}

/*
 * A body longer than the segment size: stored in segments under SEGPUT_DIR<random>/ as it arrives
 * (segput.h), stitched into the object or part once proven. Two segments at most, not the body:
 * in memory when the server's segment_memory has room for them, else spooled.
 */
#define SEGPUT_DIR "/.dfs-s3/puts/"
static int segments_begin(struct request *r, struct dfs_s3err *e)
{
    uint8_t raw[16];
    char id[33], *dir = NULL, *err = NULL;
    if (RAND_bytes(raw, sizeof raw) != 1)
        return dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "no randomness");
    dfs_sigv4_hex(raw, sizeof raw, id);
    if (asprintf(&dir, SEGPUT_DIR "%s/", id) < 0)
        return dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    dfs_s3server *s = r->s;
    uint64_t want = 2 * s->segment_size;
    pthread_mutex_lock(&s->bufmu);
    if (s->segment_memory_used + want <= s->segment_memory) {
        s->segment_memory_used += want;
        r->b.seg_charge = want;
        r->b.seg_owner = s;
    }
    pthread_mutex_unlock(&s->bufmu);
    int rc = dfs_segput_create(s->client, s->spool_dir, dir, s->segment_size,
                               r->b.seg_owner != NULL, &s->cancel, &r->b.seg, &err);
    free(dir);
    if (rc != DFS_OK)
        rc = dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "%s", err != NULL ? err : "segments");
    free(err);
    return rc;
}

/* Stitch a segmented body into path (the conditions checked in the stitch's transaction). */
static int segments_store(struct request *r, const char *path, const uint8_t *md5, const char *meta,
                          size_t meta_len, bool if_absent, const char *if_file_id, uint64_t *size,
                          struct dfs_s3err *e)
{
    char *err = NULL;
    struct dfs_client_stitch_opts so = {.md5 = md5,
                                        .meta = meta,
                                        .meta_len = meta_len,
                                        .if_absent = if_absent,
                                        .if_file_id = if_file_id};
    int rc = dfs_segput_finish(r->b.seg, path, &so, NULL, &err);
    *size = dfs_segput_size(r->b.seg);
    if (rc != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "s3 segmented put failed path=%s err=%s", path,
                err != NULL ? err : dfs_strerror(rc));
        if (rc == DFS_EPRECOND && (if_absent || if_file_id != NULL))
            rc = dfs_s3err_set(e, DFS_S3ERR_PRECONDITION_FAILED, "%s", err != NULL ? err : "");
        else
            rc = s3_from_dfs(e, rc, DFS_S3ERR_NO_SUCH_KEY, err);
    }
    free(err);
    return rc;
}

/* First call of an operation with a body: set up the body's checks (and its spool). */
static int body_begin(struct request *r, struct dfs_s3err *e)
{
    struct body *b = &r->b;
    bool streaming = r->auth.payload == DFS_SIGV4_PAYLOAD_STREAMING ||
                     r->auth.payload == DFS_SIGV4_PAYLOAD_STREAMING_TRAILER ||
                     r->auth.payload == DFS_SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    int rc = DFS_OK;
    if (r->q.op == DFS_S3REQ_PUT_OBJECT || r->q.op == DFS_S3REQ_UPLOAD_PART) {
        uint64_t want;
        rc = dfs_s3req_content_length(&r->http, streaming, &want, e);
        if (rc == DFS_OK && want > r->s->segment_size)
            rc = segments_begin(r, e);
        else if (rc == DFS_OK && !body_memory_take(r->s, b, want))
            rc = spool_open(r->s, &b->fd, &b->spool, e);
    } else {
        b->keep_xml = true;
    }
    bool present = false;
    if (rc == DFS_OK)
        rc = dfs_s3sum_of_request(&r->http, &present, &b->algo, &b->sum_value, e);
    if (rc == DFS_OK && present && (b->sum = dfs_s3sum_create(b->algo)) == NULL)
        rc = dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    if (rc == DFS_OK && (b->md5 = dfs_etag_md5_create()) == NULL)
        rc = dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    if (rc == DFS_OK && streaming)
        rc = dfs_chunked_create(&r->auth, &r->http, &b->chunked, e);
    else if (rc == DFS_OK && (b->plain = dfs_sigv4_body_create(&r->auth)) == NULL)
        rc = dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    return rc;
}

static int body_feed(struct request *r, const char *data, size_t len, struct dfs_s3err *e)
{
    struct body *b = &r->b;
    if (b->chunked != NULL)
        return dfs_chunked_feed(b->chunked, data, len, body_sink, b, e);
    dfs_sigv4_body_update(b->plain, data, len);
    return body_sink(b, (const uint8_t *)data, len);
}

/* The body ended: prove it. md5 gets its MD5. */
static int body_finish(struct request *r, uint8_t md5[DFS_ETAG_MD5_LEN], struct dfs_s3err *e)
{
    struct body *b = &r->b;
    int rc =
        b->chunked != NULL ? dfs_chunked_finish(b->chunked, e) : dfs_sigv4_body_finish(b->plain, e);
    if (rc == DFS_OK && b->too_big)
        rc = dfs_s3err_set(e, DFS_S3ERR_MALFORMED_XML, "the XML body is larger than %u bytes",
                           DFS_S3XML_MAX_BODY);
    if (rc == DFS_OK && b->write_errno != 0)
        rc = dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "cannot spool the body: %s",
                           strerror(b->write_errno));
    if (rc == DFS_OK && b->mem_overflow)
        rc = dfs_s3err_set(e, DFS_S3ERR_INCOMPLETE_BODY,
                           "the body is longer than its declared %" PRIu64 " bytes", b->mem_max);
    if (rc == DFS_OK && b->seg_err != NULL)
        rc = dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "cannot store the body: %s", b->seg_err);
    if (rc == DFS_OK && dfs_etag_md5_final(b->md5, md5) != DFS_OK)
        rc = dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "md5");
    if (rc == DFS_OK && b->sum != NULL) {
        const char *want = b->sum_value != NULL ? b->sum_value
                           : b->chunked != NULL
                               ? dfs_chunked_trailer(b->chunked, dfs_s3sum_header(b->algo))
                               : NULL;
        rc = dfs_s3sum_check(b->sum, want, e);
        if (rc == DFS_OK && want != NULL && strlen(want) < sizeof b->checksum_value) {
            snprintf(b->checksum_name, sizeof b->checksum_name, ":%s", dfs_s3sum_header(b->algo));
            snprintf(b->checksum_value, sizeof b->checksum_value, "%s", want);
        }
    }
    const char *cmd5 = dfs_s3http_header(&r->http, "content-md5");
    if (rc == DFS_OK && cmd5 != NULL) {
        uint8_t want[DFS_ETAG_MD5_LEN];
        if (dfs_etag_content_md5(cmd5, want) != DFS_OK)
            rc = dfs_s3err_set(e, DFS_S3ERR_INVALID_DIGEST, NULL);
        else if (memcmp(want, md5, sizeof want) != 0)
            rc = dfs_s3err_set(e, DFS_S3ERR_BAD_DIGEST, NULL);
    }
    return rc;
}

/* Where a PUT's body was held (the log says): memory, spool, or segments in either. */
static const char *body_where(const struct body *b)
{
    if (b->seg != NULL)
        return b->seg_owner != NULL ? "segments-memory" : "segments-spool";
    return b->mem != NULL ? "memory" : "spool";
}

/* The SHA-256 of a proven body, when the signature covered it (a signed payload); else NULL. */
static const uint8_t *body_sha256(const struct request *r)
{
    return r->auth.payload == DFS_SIGV4_PAYLOAD_SHA256 ? r->auth.payload_sha256 : NULL;
}

/*
 * If-Match / If-None-Match of a write, against the object as it is now; what must still hold at
 * the commit goes to *if_absent (If-None-Match: *) and current_id (If-Match: the file it matched),
 * checked again in the commit's transaction.
 */
static int write_conditions(struct request *r, const char *path, bool *if_absent,
                            char current_id[DFS_ID_BUF], struct dfs_s3err *e)
{
    *if_absent = false;
    current_id[0] = '\0';
    struct dfs_s3cond cond;
    int rc = dfs_s3cond_parse(&r->http, false, time(NULL), &cond, e);
    if (rc != DFS_OK || (cond.if_match == NULL && cond.if_none_match == NULL))
        return rc;
    Dfs__V1__FileInfo *fi = NULL;
    char *err = NULL, etag[DFS_ETAG_MAX + 1] = "";
    rc = dfs_client_stat(r->s->client, path, &fi, &err);
    free(err);
    if (rc != DFS_OK && rc != DFS_ENOTFOUND)
        return s3_from_dfs(e, rc, DFS_S3ERR_NO_SUCH_KEY, NULL);
    int64_t mtime = 0;
    if (fi != NULL) {
        file_etag(fi, etag);
        mtime = fi->committed_ms / 1000;
        if (cond.if_match != NULL)
            snprintf(current_id, DFS_ID_BUF, "%s", fi->file_id);
        protobuf_c_message_free_unpacked(&fi->base, NULL);
    }
    *if_absent = cond.if_none_match != NULL && strchr(cond.if_none_match, '*') != NULL;
    enum dfs_s3err_code code = dfs_s3cond_eval(&cond, DFS_S3COND_WRITE, rc == DFS_OK, etag, mtime);
    return code == DFS_S3ERR_NONE ? DFS_OK : dfs_s3err_set(e, code, NULL);
}

static enum MHD_Result put_object(struct MHD_Connection *c, struct request *r,
                                  const uint8_t md5[DFS_ETAG_MD5_LEN])
{
    struct dfs_s3err e = {0};
    char *path = NULL;
    int rc = dfs_s3req_object_path(r->q.bucket, r->q.key, &path, &e);
    bool if_absent = false;
    char current_id[DFS_ID_BUF] = "";
    if (rc == DFS_OK)
        rc = write_conditions(r, path, &if_absent, current_id, &e);
    struct dfs_s3req_meta meta = {0};
    char *packed = NULL;
    size_t plen = 0;
    if (rc == DFS_OK)
        rc = dfs_s3req_meta_parse(&r->http, &meta, &e);
    /* The checksum first: ':' sorts before every header name. */
    struct dfs_s3req_meta_entry *all = rc == DFS_OK ? calloc(meta.n + 1, sizeof *all) : NULL;
    struct dfs_s3req_meta with = {all, 0};
    if (all != NULL && r->b.checksum_name[0] != '\0')
        all[with.n++] = (struct dfs_s3req_meta_entry){r->b.checksum_name, r->b.checksum_value};
    for (size_t i = 0; all != NULL && i < meta.n; i++)
        all[with.n++] = meta.e[i];
    if (rc == DFS_OK &&
        (all == NULL || dfs_s3names_meta_pack(&with, NULL, &packed, &plen) != DFS_OK))
        rc = dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    free(all);
    dfs_s3req_meta_free(&meta);
    struct dfs_client_put_result res;
    memset(&res, 0, sizeof res);
    if (rc == DFS_OK && r->b.seg != NULL)
        rc = segments_store(r, path, md5, packed, plen, if_absent,
                            current_id[0] != '\0' ? current_id : NULL, &res.size, &e);
    else if (rc == DFS_OK)
        rc = store_body(r->s, &r->b, r->b.fd, r->b.spool, body_sha256(r), path, md5, packed, plen,
                        if_absent, current_id[0] != '\0' ? current_id : NULL, &res, &e);
    free(packed);
    if (rc != DFS_OK) {
        free(path);
        return reply_error(c, r, &e);
    }
    dfs_log(DFS_LOG_INFO, "s3 put path=%s size=%" PRIu64 " seconds=%.3f body=%s request_id=%s",
            path, res.size, res.seconds, body_where(&r->b), r->request_id);
    free(path);
    char etag[DFS_ETAG_MAX + 1];
    dfs_etag_single(md5, etag);
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    common_headers(resp, r);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result delete_object(struct MHD_Connection *c, struct request *r)
{
    struct dfs_s3err e = {0};
    if (bucket_check(r->s, r->q.bucket, NULL, &e) != DFS_OK)
        return reply_error(c, r, &e);
    char *path = NULL, *err = NULL;
    if (dfs_s3req_object_path(r->q.bucket, r->q.key, &path, &e) != DFS_OK)
        return reply_error(c, r, &e);
    int rc = dfs_client_rm(r->s->client, path, NULL, &err);
    free(path);
    /* S3 answers 204 whether or not the key existed. */
    if (rc != DFS_OK && rc != DFS_ENOTFOUND) {
        s3_from_dfs(&e, rc, DFS_S3ERR_NO_SUCH_KEY, err);
        free(err);
        return reply_error(c, r, &e);
    }
    free(err);
    return reply(c, r, MHD_HTTP_NO_CONTENT, NULL, NULL, 0);
}

static enum MHD_Result delete_objects(struct MHD_Connection *c, struct request *r)
{
    struct dfs_s3err e = {0};
    struct dfs_s3xml_delete d;
    if (bucket_check(r->s, r->q.bucket, NULL, &e) != DFS_OK ||
        dfs_s3xml_parse_delete(r->b.xml != NULL ? r->b.xml : "", r->b.xml_len, &d, &e) != DFS_OK)
        return reply_error(c, r, &e);
    const char **done = calloc(d.n, sizeof *done);
    struct dfs_s3xml_delete_error *errs = calloc(d.n, sizeof *errs);
    size_t ndone = 0, nerrs = 0;
    for (size_t i = 0; done != NULL && errs != NULL && i < d.n; i++) {
        char *path = NULL, *err = NULL;
        struct dfs_s3err ke = {0};
        int rc = dfs_s3req_object_path(r->q.bucket, d.keys[i], &path, &ke);
        if (rc == DFS_OK) {
            rc = dfs_client_rm(r->s->client, path, NULL, &err);
            if (rc != DFS_OK && rc != DFS_ENOTFOUND)
                s3_from_dfs(&ke, rc, DFS_S3ERR_NO_SUCH_KEY, NULL);
            else
                rc = DFS_OK;
        }
        free(path);
        free(err);
        if (rc == DFS_OK) {
            done[ndone++] = d.keys[i];
        } else {
            errs[nerrs].key = d.keys[i];
            errs[nerrs].code = ke.code;
            nerrs++;
        }
        dfs_s3err_clear(&ke);
    }
    char *body = NULL, *xerr = NULL;
    size_t len = 0;
    int rc = done != NULL && errs != NULL
                 ? dfs_s3xml_delete_result(d.quiet, done, ndone, errs, nerrs, &body, &len, &xerr)
                 : DFS_ENOMEM;
    free(done);
    free(errs);
    dfs_s3xml_delete_free(&d);
    if (rc != DFS_OK) {
        dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "%s", xerr != NULL ? xerr : "out of memory");
        free(xerr);
        return reply_error(c, r, &e);
    }
    return reply_xml(c, r, body, len);
}

/* CopyObject: the source through the get engine into a spool file, then a put. */
static enum MHD_Result copy_object(struct MHD_Connection *c, struct request *r)
{
    struct dfs_s3err e = {0};
    char *sb = NULL, *sk = NULL, *dst = NULL, *spool = NULL, *err = NULL;
    bool replace = false;
    Dfs__V1__FileInfo *fi = NULL;
    int fd = -1;
    int rc = dfs_s3req_copy_source(&r->http, &sb, &sk, &replace, &e);
    if (rc == DFS_OK)
        rc = bucket_check(r->s, r->q.bucket, NULL, &e);
    if (rc == DFS_OK)
        rc = object_stat(r, sb, sk, &fi, &e);
    char etag[DFS_ETAG_MAX + 1] = "";
    if (rc == DFS_OK) {
        file_etag(fi, etag);
        struct dfs_s3cond cond;
        rc = dfs_s3cond_parse(&r->http, true, time(NULL), &cond, &e);
        enum dfs_s3err_code code = rc == DFS_OK
                                       ? dfs_s3cond_eval(&cond, DFS_S3COND_COPY_SOURCE, true, etag,
                                                         fi->committed_ms / 1000)
                                       : DFS_S3ERR_NONE;
        if (code != DFS_S3ERR_NONE)
            rc = dfs_s3err_set(&e, code, NULL);
    }
    if (rc == DFS_OK)
        rc = dfs_s3req_object_path(r->q.bucket, r->q.key, &dst, &e);
    if (rc == DFS_OK && strcmp(dst, fi->path) == 0 && !replace)
        rc = dfs_s3err_set(&e, DFS_S3ERR_INVALID_REQUEST,
                           "This copy request is illegal because it is trying to copy an object "
                           "to itself without changing the object's metadata.");
    if (rc == DFS_OK)
        rc = spool_open(r->s, &fd, &spool, &e);
    if (rc == DFS_OK && fi->size > 0) {
        struct dfs_client_get_opts go;
        memset(&go, 0, sizeof go);
        go.interrupted = &r->s->cancel;
        struct dfs_client_get_result gr;
        rc = dfs_client_get_range(r->s->client, fi, 0, fi->size, fd, r->s->spool_dir, &go, &gr,
                                  &err);
        if (rc != DFS_OK)
            s3_from_dfs(&e, rc, DFS_S3ERR_NO_SUCH_KEY, err);
    }
    /* COPY keeps the source's MD5 and headers; REPLACE takes the request's (the MD5 stays,
       unless the source's is a multipart one: the copy is one part). */
    struct dfs_s3req_meta meta = {0};
    char *packed = NULL;
    size_t plen = 0;
    const uint8_t *md5 = rc == DFS_OK && fi->md5.len == DFS_ETAG_MD5_LEN ? fi->md5.data : NULL;
    if (rc == DFS_OK && replace) {
        rc = dfs_s3req_meta_parse(&r->http, &meta, &e);
        if (rc == DFS_OK && dfs_s3names_meta_pack(&meta, NULL, &packed, &plen) != DFS_OK)
            rc = dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
        if (meta_find(fi, ":parts") != NULL)
            md5 = NULL;
    }
    dfs_s3req_meta_free(&meta);
    struct dfs_client_put_result res;
    if (rc == DFS_OK)
        rc = store(r->s, fd, spool, dst, md5, replace ? packed : (const char *)fi->meta.data,
                   replace ? plen : fi->meta.len, &res, &e);
    free(packed);
    if (fd >= 0)
        close(fd);
    if (spool != NULL)
        unlink(spool);
    free(spool);
    free(err);
    free(sb);
    free(sk);
    int64_t mtime = fi != NULL ? fi->committed_ms : 0;
    if (fi != NULL)
        protobuf_c_message_free_unpacked(&fi->base, NULL);
    if (rc != DFS_OK) {
        free(dst);
        return reply_error(c, r, &e);
    }
    dfs_log(DFS_LOG_INFO, "s3 copy path=%s size=%" PRIu64 " request_id=%s", dst, res.size,
            r->request_id);
    free(dst);
    (void)mtime;
    /* The same bytes: the same SHA-256, so the same ETag. */
    char *body = NULL, *xerr = NULL;
    size_t len = 0;
    if (dfs_s3xml_copy_result(false, etag, dfs_clock_wall_ms(), &body, &len, &xerr) != DFS_OK) {
        dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "%s", xerr != NULL ? xerr : "xml");
        free(xerr);
        return reply_error(c, r, &e);
    }
    return reply_xml(c, r, body, len);
}

/* ---- multipart uploads ----------------------------------------------------------------------- */

/*
 * Until the catalog has an uploads table (DESIGN.md), an upload is files under
 * UPLOADS_DIR/<bucket>/<id>/: "upload" holds the key, "part.NNNNN.<md5 hex>" each part as it was
 * stored (its MD5, the part's ETag, in the name). Complete stitches the listed parts into the
 * object in one catalog operation (StitchFile: the parts become the object's segments, no byte is
 * copied), then removes the parts not listed and the record.
 */
#define UPLOADS_DIR "/.dfs-s3/uploads/"

static char *upload_dir(const char *bucket, const char *id)
{
    char *p = NULL;
    return asprintf(&p, UPLOADS_DIR "%s/%s/", bucket, id) < 0 ? NULL : p;
}

/* The key of upload `id` in bucket (read from its record): 0 and *key, or NoSuchUpload. */
static int upload_key(struct request *r, const char *bucket, const char *id, char **key,
                      struct dfs_s3err *e)
{
    *key = NULL;
    if (!dfs_s3names_upload_id_valid(id))
        return dfs_s3err_set(e, DFS_S3ERR_NO_SUCH_UPLOAD, NULL);
    char *dir = upload_dir(bucket, id), *rec = NULL, *local = NULL, *err = NULL;
    int fd = -1;
    int rc = dir != NULL && asprintf(&rec, "%supload", dir) >= 0 ? DFS_OK : DFS_ENOMEM;
    free(dir);
    if (rc != DFS_OK)
        return dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    /* The record is there (a stat); its key is read only when this file was not read before. */
    Dfs__V1__FileInfo *fi = NULL;
    char file_id[DFS_ID_BUF] = "";
    rc = dfs_client_stat(r->s->client, rec, &fi, &err);
    if (rc == DFS_ENOTFOUND)
        rc = dfs_s3err_set(e, DFS_S3ERR_NO_SUCH_UPLOAD, NULL);
    else if (rc != DFS_OK)
        s3_from_dfs(e, rc, DFS_S3ERR_NO_SUCH_UPLOAD, err);
    if (fi != NULL) {
        snprintf(file_id, sizeof file_id, "%s", fi->file_id);
        protobuf_c_message_free_unpacked(&fi->base, NULL);
    }
    free(err);
    err = NULL;
    if (rc != DFS_OK) {
        free(rec);
        return rc;
    }
    struct dfs_s3server *s = r->s;
    pthread_mutex_lock(&s->mu);
    for (unsigned i = 0; i < UPLOAD_CACHE_N && *key == NULL; i++)
        if (strcmp(s->uploads[i].path, rec) == 0 && strcmp(s->uploads[i].file_id, file_id) == 0)
            *key = strdup(s->uploads[i].key);
    pthread_mutex_unlock(&s->mu);
    if (*key != NULL) {
        free(rec);
        return DFS_OK;
    }
    rc = spool_open(r->s, &fd, &local, e);
    if (rc == DFS_OK) {
        close(fd);
        unlink(local);
        struct dfs_client_get_opts o;
        memset(&o, 0, sizeof o);
        o.interrupted = &r->s->cancel;
        struct dfs_client_get_result res;
        rc = dfs_client_get(r->s->client, rec, local, &o, &res, &err);
        if (rc == DFS_ENOTFOUND)
            rc = dfs_s3err_set(e, DFS_S3ERR_NO_SUCH_UPLOAD, NULL);
        else if (rc != DFS_OK)
            s3_from_dfs(e, rc, DFS_S3ERR_NO_SUCH_UPLOAD, err);
    }
    if (rc == DFS_OK) {
        FILE *f = fopen(local, "re");
        char buf[DFS_S3REQ_KEY_MAX + 2];
        size_t n = f != NULL ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f != NULL)
            fclose(f);
        buf[n] = '\0';
        if (n == 0 || (*key = strdup(buf)) == NULL)
            rc = dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "cannot read upload %s", id);
    }
    char *kept = rc == DFS_OK && strlen(rec) < sizeof s->uploads[0].path ? strdup(*key) : NULL;
    if (kept != NULL) {
        pthread_mutex_lock(&s->mu);
        struct upload_entry *u = &s->uploads[s->next_upload++ % UPLOAD_CACHE_N];
        free(u->key);
        snprintf(u->path, sizeof u->path, "%s", rec);
        snprintf(u->file_id, sizeof u->file_id, "%s", file_id);
        u->key = kept;
        pthread_mutex_unlock(&s->mu);
    }
    if (local != NULL)
        unlink(local);
    free(local);
    free(rec);
    free(err);
    return rc;
}

/* Write `content` to a dfs file at path. */
static int put_small(struct request *r, const char *path, const char *content, struct dfs_s3err *e)
{
    int fd = -1;
    char *spool = NULL;
    int rc = spool_open(r->s, &fd, &spool, e);
    size_t n = strlen(content);
    if (rc == DFS_OK && write(fd, content, n) != (ssize_t)n)
        rc = dfs_s3err_set(e, DFS_S3ERR_INTERNAL_ERROR, "cannot spool");
    struct dfs_client_put_result res;
    if (rc == DFS_OK)
        rc = store(r->s, fd, spool, path, NULL, NULL, 0, &res, e);
    if (fd >= 0)
        close(fd);
    if (spool != NULL)
        unlink(spool);
    free(spool);
    return rc;
}

/* One stored part, from its file name. */
struct part {
    uint32_t number;
    uint8_t md5[DFS_ETAG_MD5_LEN];
    char etag[DFS_ETAG_MAX + 1];
    uint64_t size;
    int64_t mtime_ms;
    char *path;
};

static bool part_from_path(const char *path, const char *dir, struct part *p)
{
    size_t dl = strlen(dir);
    if (strncmp(path, dir, dl) != 0 || !dfs_s3names_part_parse(path + dl, &p->number, p->md5))
        return false;
    dfs_etag_single(p->md5, p->etag);
    return true;
}

static void parts_free(struct part *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].path);
    free(v);
}

/* Every file of an upload's folder whose path starts with `from` (NULL: the folder): its parts
   (sorted by number, then path) into *out; the record's presence into *has_record. */
static int upload_parts_from(struct request *r, const char *dir, const char *from,
                             struct part **out, size_t *n, bool *has_record, struct dfs_s3err *e)
{
    *out = NULL;
    *n = 0;
    *has_record = false;
    size_t cap = 0;
    char *token = NULL, *err = NULL;
    int rc = DFS_OK;
    Dfs__V1__ListFilesResponse *page = NULL;
    do {
        char *next = NULL;
        rc = dfs_client_ls(r->s->client, from != NULL ? from : dir, 1000, token, &page, &err);
        free(token);
        token = NULL;
        if (rc != DFS_OK)
            break;
        for (size_t i = 0; rc == DFS_OK && i < page->n_files; i++) {
            const Dfs__V1__FileInfo *fi = page->files[i];
            if (strcmp(fi->path + strlen(dir), "upload") == 0) {
                *has_record = true;
                continue;
            }
            struct part p = {0};
            if (!part_from_path(fi->path, dir, &p))
                continue;
            if (*n == cap) {
                cap = cap ? 2 * cap : 16;
                struct part *nv = realloc(*out, cap * sizeof *nv);
                if (nv == NULL) {
                    rc = DFS_ENOMEM;
                    break;
                }
                *out = nv;
            }
            p.size = fi->size;
            p.mtime_ms = fi->committed_ms;
            if ((p.path = strdup(fi->path)) == NULL) {
                rc = DFS_ENOMEM;
                break;
            }
            (*out)[(*n)++] = p;
        }
        if (rc == DFS_OK && page->next_page_token != NULL && page->next_page_token[0] != '\0' &&
            (next = strdup(page->next_page_token)) == NULL)
            rc = DFS_ENOMEM;
        token = next;
        protobuf_c_message_free_unpacked(&page->base, NULL);
    } while (rc == DFS_OK && token != NULL);
    free(token);
    if (rc != DFS_OK) {
        s3_from_dfs(e, rc, DFS_S3ERR_NO_SUCH_UPLOAD, err);
        parts_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    free(err);
    return rc;
}

static int upload_parts(struct request *r, const char *dir, struct part **out, size_t *n,
                        bool *has_record, struct dfs_s3err *e)
{
    return upload_parts_from(r, dir, NULL, out, n, has_record, e);
}

/* Remove every file under an upload's folder but `keep` (NULL: all). */
static void upload_remove(struct request *r, const struct part *v, size_t n, const char *keep)
{
    for (size_t i = 0; i < n; i++) {
        if (keep != NULL && strcmp(v[i].path, keep) == 0)
            continue;
        char *err = NULL;
        if (dfs_client_rm(r->s->client, v[i].path, NULL, &err) != DFS_OK)
            dfs_log(DFS_LOG_WARN, "s3 cannot remove a part path=%s err=%s", v[i].path,
                    err != NULL ? err : "-");
        free(err);
    }
}

static enum MHD_Result create_upload(struct MHD_Connection *c, struct request *r)
{
    struct dfs_s3err e = {0};
    char *path = NULL;
    uint8_t raw[16];
    char id[33], *dir = NULL, *rec = NULL;
    int rc = bucket_check(r->s, r->q.bucket, NULL, &e);
    if (rc == DFS_OK)
        rc = dfs_s3req_object_path(r->q.bucket, r->q.key, &path, &e);
    free(path);
    if (rc == DFS_OK && RAND_bytes(raw, sizeof raw) != 1)
        rc = dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "no randomness");
    if (rc == DFS_OK) {
        dfs_sigv4_hex(raw, sizeof raw, id);
        if ((dir = upload_dir(r->q.bucket, id)) == NULL || asprintf(&rec, "%supload", dir) < 0)
            rc = dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    }
    if (rc == DFS_OK)
        rc = put_small(r, rec, r->q.key, &e);
    free(dir);
    free(rec);
    if (rc != DFS_OK)
        return reply_error(c, r, &e);
    char *body = NULL, *xerr = NULL;
    size_t len = 0;
    if (dfs_s3xml_initiate_upload(r->q.bucket, r->q.key, id, &body, &len, &xerr) != DFS_OK) {
        dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "%s", xerr != NULL ? xerr : "xml");
        free(xerr);
        return reply_error(c, r, &e);
    }
    dfs_log(DFS_LOG_INFO, "s3 upload created bucket=%s key=%s upload=%s", r->q.bucket, r->q.key,
            id);
    return reply_xml(c, r, body, len);
}

/* The upload the request names exists, for its key (NoSuchUpload otherwise). */
static int upload_check(struct request *r, struct dfs_s3err *e)
{
    char *key = NULL;
    int rc = upload_key(r, r->q.bucket, r->q.upload_id, &key, e);
    if (rc == DFS_OK && strcmp(key, r->q.key) != 0)
        rc = dfs_s3err_set(e, DFS_S3ERR_NO_SUCH_UPLOAD, NULL);
    free(key);
    return rc;
}

static enum MHD_Result upload_part(struct MHD_Connection *c, struct request *r,
                                   const uint8_t md5[DFS_ETAG_MD5_LEN])
{
    struct dfs_s3err e = {0};
    char hex[33], *dir = upload_dir(r->q.bucket, r->q.upload_id), *path = NULL;
    dfs_sigv4_hex(md5, DFS_ETAG_MD5_LEN, hex);
    if (dir == NULL || asprintf(&path, "%spart.%05u.%s", dir, r->q.part_number, hex) < 0) {
        free(dir);
        return MHD_NO;
    }
    struct dfs_client_put_result res;
    memset(&res, 0, sizeof res);
    int rc = r->b.seg != NULL ? segments_store(r, path, md5, NULL, 0, false, NULL, &res.size, &e)
                              : store_body(r->s, &r->b, r->b.fd, r->b.spool, body_sha256(r), path,
                                           md5, NULL, 0, false, NULL, &res, &e);
    /* The same part number uploaded again replaces the earlier one (listed alone: the parts of
       that number). */
    struct part *v = NULL;
    size_t n = 0;
    bool rec = false;
    char *same = NULL;
    if (rc == DFS_OK && asprintf(&same, "%spart.%05u.", dir, r->q.part_number) < 0)
        same = NULL;
    if (rc == DFS_OK && same != NULL &&
        upload_parts_from(r, dir, same, &v, &n, &rec, &e) == DFS_OK) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (v[i].number == r->q.part_number)
                v[k++] = v[i];
            else
                free(v[i].path);
        upload_remove(r, v, k, path);
        parts_free(v, k);
    }
    free(same);
    dfs_s3err_clear(&e);
    free(dir);
    free(path);
    if (rc != DFS_OK)
        return reply_error(c, r, &e);
    char etag[DFS_ETAG_MAX + 1];
    dfs_etag_single(md5, etag);
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    common_headers(resp, r);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static int cmp_part(const void *a, const void *b)
{
    const struct part *x = a, *y = b;
    if (x->number != y->number)
        return x->number < y->number ? -1 : 1;
    return x->mtime_ms > y->mtime_ms ? -1 : x->mtime_ms < y->mtime_ms; /* newest first */
}

static enum MHD_Result complete_upload(struct MHD_Connection *c, struct request *r)
{
    struct dfs_s3err e = {0};
    struct dfs_s3xml_complete cm = {0};
    struct part *v = NULL;
    size_t n = 0;
    bool rec = false;
    char *dir = NULL, *path = NULL, *err = NULL;
    uint8_t(*md5s)[DFS_ETAG_MD5_LEN] = NULL;
    int rc = upload_check(r, &e);
    if (rc == DFS_OK)
        rc = dfs_s3xml_parse_complete(r->b.xml != NULL ? r->b.xml : "", r->b.xml_len, &cm, &e);
    if (rc == DFS_OK && (dir = upload_dir(r->q.bucket, r->q.upload_id)) == NULL)
        rc = dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    if (rc == DFS_OK)
        rc = upload_parts(r, dir, &v, &n, &rec, &e);
    if (rc == DFS_OK)
        qsort(v, n, sizeof *v, cmp_part);
    if (rc == DFS_OK && (md5s = calloc(cm.n, sizeof *md5s)) == NULL)
        rc = dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    /* Every listed part exists with that ETag; all but the last are 5 MiB at least. */
    const struct part **use = rc == DFS_OK ? calloc(cm.n, sizeof *use) : NULL;
    if (rc == DFS_OK && use == NULL)
        rc = dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    for (size_t i = 0; rc == DFS_OK && i < cm.n; i++) {
        uint8_t want[DFS_ETAG_MD5_LEN];
        unsigned parts = 0;
        bool ok = dfs_etag_parse(cm.parts[i].etag, want, &parts) == DFS_OK && parts == 0;
        for (size_t j = 0; ok && j < n && use[i] == NULL; j++)
            if (v[j].number == cm.parts[i].number && memcmp(v[j].md5, want, sizeof want) == 0)
                use[i] = &v[j];
        if (use[i] == NULL) {
            rc = dfs_s3err_set(&e, DFS_S3ERR_INVALID_PART,
                               "part %u with ETag %s was not uploaded to this upload",
                               cm.parts[i].number, cm.parts[i].etag);
            break;
        }
        memcpy(md5s[i], use[i]->md5, DFS_ETAG_MD5_LEN);
        if (i + 1 < cm.n && use[i]->size < DFS_S3REQ_MIN_PART_SIZE)
            rc = dfs_s3err_set(&e, DFS_S3ERR_ENTITY_TOO_SMALL,
                               "part %u is %" PRIu64 " bytes; every part but the last must be "
                               "5 MiB at least",
                               cm.parts[i].number, use[i]->size);
    }
    char etag[DFS_ETAG_MAX + 1] = "";
    if (rc == DFS_OK &&
        dfs_etag_multipart((const uint8_t(*)[DFS_ETAG_MD5_LEN])md5s, cm.n, etag) != DFS_OK)
        rc = dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "etag");
    if (rc == DFS_OK)
        rc = dfs_s3req_object_path(r->q.bucket, r->q.key, &path, &e);
    /* The object's MD5 is the MD5 of the parts' MD5s; ":parts" says how many (its ETag's -N). */
    uint8_t md5md5[DFS_ETAG_MD5_LEN];
    char *packed = NULL, nparts[24];
    size_t plen = 0;
    snprintf(nparts, sizeof nparts, "%zu", cm.n);
    unsigned np = 0;
    if (rc == DFS_OK && (dfs_etag_parse(etag, md5md5, &np) != DFS_OK ||
                         dfs_s3names_meta_pack(NULL, nparts, &packed, &plen) != DFS_OK))
        rc = dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "etag");
    /* The object is the parts' files stitched in the catalog: no byte is read or written again. */
    const char **paths = rc == DFS_OK ? calloc(cm.n, sizeof *paths) : NULL;
    if (rc == DFS_OK && paths == NULL)
        rc = dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    for (size_t i = 0; rc == DFS_OK && i < cm.n; i++)
        paths[i] = use[i]->path;
    Dfs__V1__FileInfo *made = NULL;
    struct dfs_client_stitch_opts so = {.md5 = md5md5, .meta = packed, .meta_len = plen};
    if (rc == DFS_OK &&
        (rc = dfs_client_stitch(r->s->client, path, paths, cm.n, &so, &made, &err)) != DFS_OK)
        s3_from_dfs(&e, rc, DFS_S3ERR_INVALID_PART, err);
    free(paths);
    free(packed);
    if (rc == DFS_OK) {
        /* The object is visible and the listed parts are its segments: the parts not listed and
           the record go, record last. */
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            bool listed = false;
            for (size_t j = 0; j < cm.n && !listed; j++)
                listed = use[j] == &v[i];
            if (!listed)
                upload_remove(r, &v[i], 1, NULL);
            k += listed;
        }
        char *recp = NULL;
        if (asprintf(&recp, "%supload", dir) >= 0) {
            dfs_client_rm(r->s->client, recp, NULL, NULL);
            free(recp);
        }
        dfs_log(DFS_LOG_INFO, "s3 upload completed path=%s parts=%zu size=%" PRIu64 " stitched=%zu",
                path, cm.n, made != NULL ? made->size : 0, k);
    }
    if (made != NULL)
        protobuf_c_message_free_unpacked(&made->base, NULL);
    free(use);
    free(md5s);
    free(err);
    free(path);
    free(dir);
    parts_free(v, n);
    if (cm.parts != NULL)
        dfs_s3xml_complete_free(&cm);
    if (rc != DFS_OK)
        return reply_error(c, r, &e);
    char *body = NULL, *xerr = NULL, *loc = NULL;
    size_t len = 0;
    if (asprintf(&loc, "/%s/%s", r->q.bucket, r->q.key) < 0)
        loc = NULL;
    rc = dfs_s3xml_complete_upload(loc != NULL ? loc : "", r->q.bucket, r->q.key, etag, &body, &len,
                                   &xerr);
    free(loc);
    if (rc != DFS_OK) {
        dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "%s", xerr != NULL ? xerr : "xml");
        free(xerr);
        return reply_error(c, r, &e);
    }
    return reply_xml(c, r, body, len);
}

static enum MHD_Result abort_upload(struct MHD_Connection *c, struct request *r)
{
    struct dfs_s3err e = {0};
    struct part *v = NULL;
    size_t n = 0;
    bool rec = false;
    char *dir = NULL;
    int rc = upload_check(r, &e);
    if (rc == DFS_OK && (dir = upload_dir(r->q.bucket, r->q.upload_id)) == NULL)
        rc = dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    if (rc == DFS_OK)
        rc = upload_parts(r, dir, &v, &n, &rec, &e);
    if (rc == DFS_OK) {
        upload_remove(r, v, n, NULL);
        char *recp = NULL;
        if (asprintf(&recp, "%supload", dir) >= 0) {
            dfs_client_rm(r->s->client, recp, NULL, NULL);
            free(recp);
        }
    }
    parts_free(v, n);
    free(dir);
    if (rc != DFS_OK)
        return reply_error(c, r, &e);
    return reply(c, r, MHD_HTTP_NO_CONTENT, NULL, NULL, 0);
}

static enum MHD_Result list_parts(struct MHD_Connection *c, struct request *r)
{
    struct dfs_s3err e = {0};
    struct part *v = NULL;
    size_t n = 0;
    bool rec = false;
    char *dir = NULL;
    int rc = upload_check(r, &e);
    if (rc == DFS_OK && (dir = upload_dir(r->q.bucket, r->q.upload_id)) == NULL)
        rc = dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    if (rc == DFS_OK)
        rc = upload_parts(r, dir, &v, &n, &rec, &e);
    free(dir);
    if (rc != DFS_OK)
        return reply_error(c, r, &e);
    qsort(v, n, sizeof *v, cmp_part);
    struct dfs_s3xml_part *xp = calloc(n + 1, sizeof *xp);
    size_t k = 0;
    bool truncated = false;
    for (size_t i = 0; xp != NULL && i < n; i++) {
        if (v[i].number <= r->q.part_number_marker || (k > 0 && xp[k - 1].number == v[i].number))
            continue;
        if (k == r->q.max) {
            truncated = true;
            break;
        }
        xp[k].number = v[i].number;
        xp[k].etag = v[i].etag;
        xp[k].size = v[i].size;
        xp[k].last_modified_ms = v[i].mtime_ms;
        k++;
    }
    struct dfs_s3xml_owner owner = {.id = "dfs", .display_name = "dfs"};
    struct dfs_s3xml_parts x = {
        .bucket = r->q.bucket,
        .key = r->q.key,
        .upload_id = r->q.upload_id,
        .owner = &owner,
        .part_number_marker = r->q.part_number_marker,
        .next_part_number_marker = k > 0 ? xp[k - 1].number : 0,
        .max_parts = r->q.max,
        .truncated = truncated,
        .parts = xp,
        .nparts = k,
    };
    char *body = NULL, *xerr = NULL;
    size_t len = 0;
    rc = xp != NULL ? dfs_s3xml_list_parts(&x, &body, &len, &xerr) : DFS_ENOMEM;
    free(xp);
    parts_free(v, n);
    if (rc != DFS_OK) {
        dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "%s", xerr != NULL ? xerr : "xml");
        free(xerr);
        return reply_error(c, r, &e);
    }
    return reply_xml(c, r, body, len);
}

static enum MHD_Result list_uploads(struct MHD_Connection *c, struct request *r)
{
    struct dfs_s3err e = {0};
    int rc = bucket_check(r->s, r->q.bucket, NULL, &e);
    if (rc != DFS_OK)
        return reply_error(c, r, &e);
    char *dir = NULL, *err = NULL;
    if (asprintf(&dir, UPLOADS_DIR "%s/", r->q.bucket) < 0)
        return MHD_NO;
    struct dfs_s3xml_upload *u = NULL;
    char **keys = NULL, **ids = NULL;
    size_t n = 0, cap = 0;
    char *token = NULL;
    bool truncated = false;
    const char *prefix = r->q.prefix != NULL ? r->q.prefix : "";
    do {
        Dfs__V1__ListFilesResponse *page = NULL;
        char *next = NULL;
        rc = dfs_client_ls(r->s->client, dir, 1000, token, &page, &err);
        free(token);
        token = NULL;
        if (rc != DFS_OK)
            break;
        for (size_t i = 0; rc == DFS_OK && i < page->n_files && !truncated; i++) {
            const char *rest = page->files[i]->path + strlen(dir);
            if (strlen(rest) != 32 + strlen("/upload") || strcmp(rest + 32, "/upload") != 0)
                continue;
            char id[33];
            memcpy(id, rest, 32);
            id[32] = '\0';
            char *key = NULL;
            struct dfs_s3err ke = {0};
            if (upload_key(r, r->q.bucket, id, &key, &ke) != DFS_OK) {
                dfs_s3err_clear(&ke);
                continue;
            }
            if (strncmp(key, prefix, strlen(prefix)) != 0) {
                free(key);
                continue;
            }
            if (n == r->q.max) {
                truncated = true;
                free(key);
                break;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                struct dfs_s3xml_upload *nu = realloc(u, cap * sizeof *nu);
                char **nk = realloc(keys, cap * sizeof *nk);
                if (nk != NULL)
                    keys = nk;
                char **ni = realloc(ids, cap * sizeof *ni);
                if (ni != NULL)
                    ids = ni;
                if (nu != NULL)
                    u = nu;
                if (nu == NULL || nk == NULL || ni == NULL) {
                    free(key);
                    rc = DFS_ENOMEM;
                    break;
                }
            }
            keys[n] = key;
            ids[n] = strdup(id);
            u[n].key = key;
            u[n].upload_id = ids[n] != NULL ? ids[n] : "";
            u[n].initiated_ms = page->files[i]->committed_ms;
            n++;
        }
        if (rc == DFS_OK && !truncated && page->next_page_token != NULL &&
            page->next_page_token[0] != '\0' && (next = strdup(page->next_page_token)) == NULL)
            rc = DFS_ENOMEM;
        token = next;
        protobuf_c_message_free_unpacked(&page->base, NULL);
    } while (rc == DFS_OK && token != NULL);
    free(token);
    free(dir);
    char *body = NULL, *xerr = NULL;
    size_t len = 0;
    struct dfs_s3xml_owner owner = {.id = "dfs", .display_name = "dfs"};
    struct dfs_s3xml_uploads x = {
        .bucket = r->q.bucket,
        .key_marker = r->q.key_marker != NULL ? r->q.key_marker : "",
        .upload_id_marker = r->q.upload_id_marker != NULL ? r->q.upload_id_marker : "",
        .next_key_marker = truncated && n > 0 ? u[n - 1].key : NULL,
        .next_upload_id_marker = truncated && n > 0 ? u[n - 1].upload_id : NULL,
        .prefix = r->q.prefix,
        .delimiter = NULL,
        .max_uploads = r->q.max,
        .truncated = truncated,
        .url_encoding = r->q.url_encoding,
        .owner = &owner,
        .uploads = u,
        .nuploads = n,
    };
    if (rc == DFS_OK && dfs_s3xml_list_uploads(&x, &body, &len, &xerr) != DFS_OK)
        rc = DFS_EINTERNAL;
    for (size_t i = 0; i < n; i++) {
        free(keys[i]);
        free(ids[i]);
    }
    free(keys);
    free(ids);
    free(u);
    if (rc != DFS_OK) {
        s3_from_dfs(&e, rc, DFS_S3ERR_NO_SUCH_BUCKET, xerr != NULL ? xerr : err);
        free(xerr);
        free(err);
        return reply_error(c, r, &e);
    }
    free(err);
    return reply_xml(c, r, body, len);
}

/* ---- expiry of abandoned uploads --------------------------------------------------------------- */

/* Remove every file under dir, the record ("upload") last. */
static void sweep_one(dfs_s3server *s, const char *dir)
{
    char *err = NULL, *record = NULL;
    Dfs__V1__ListFilesResponse *page = NULL;
    /* The listing shrinks as files go: always the first page. */
    for (int rounds = 0; rounds < 20; rounds++) {
        if (dfs_client_ls(s->client, dir, 1000, NULL, &page, &err) != DFS_OK)
            break;
        size_t removed = 0;
        for (size_t i = 0; i < page->n_files; i++) {
            const char *p = page->files[i]->path;
            if (strcmp(p + strlen(dir), "upload") == 0) {
                free(record);
                record = strdup(p);
                continue;
            }
            if (dfs_client_rm(s->client, p, NULL, NULL) == DFS_OK)
                removed++;
        }
        bool more = page->n_files > removed + (record != NULL ? 1 : 0);
        protobuf_c_message_free_unpacked(&page->base, NULL);
        if (!more)
            break;
    }
    if (record != NULL)
        dfs_client_rm(s->client, record, NULL, NULL);
    free(record);
    free(err);
}

/* The folder part of a path ("/a/b/" of "/a/b/c"), malloc'd. */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return strndup(path, (size_t)(slash - path) + 1);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Files left behind when a gateway died, found by listing `prefix` whole (sorted by path):
 *  - under SEGPUT_DIR<id>/: the segments of a PUT cut off before its stitch. A folder goes when
 *    its newest segment is older than the cutoff (--s3-upload-timeout, the bound an open multipart
 *    upload already has): a live PUT stores a segment every --s3-segment-size bytes, so only a
 *    client sending less than that in the whole timeout could still own it, and such an upload
 *    would have been aborted had it been multipart.
 *  - under UPLOADS_DIR<bucket>/<id>/ with no "upload" record (a part stored after its upload was
 *    aborted or expired): every such file older than the cutoff.
 * Folders with a record are sweep_uploads' (it aborts them by the record's age).
 */
struct stale {
    char **paths; /* to remove */
    size_t n;
};

static void stale_add(struct stale *st, const char *path)
{
    char **np = realloc(st->paths, (st->n + 1) * sizeof *np);
    if (np == NULL)
        return;
    st->paths = np;
    if ((st->paths[st->n] = strdup(path)) != NULL)
        st->n++;
}

/*
 * Calls fn for every file under prefix, in path order, one page of 1000 at a time. Returns false
 * when a page could not be listed (the walk stopped there: what fn saw is not the whole prefix).
 */
static bool list_walk(dfs_s3server *s, const char *prefix,
                      void (*fn)(const Dfs__V1__FileInfo *fi, void *arg), void *arg)
{
    char *token = NULL, *err = NULL;
    bool whole = false;
    for (;;) {
        Dfs__V1__ListFilesResponse *page = NULL;
        if (dfs_client_ls(s->client, prefix, 1000, token, &page, &err) != DFS_OK)
            break;
        for (size_t i = 0; i < page->n_files; i++)
            fn(page->files[i], arg);
        free(token);
        token = page->next_page_token != NULL && page->next_page_token[0] != '\0'
                    ? strdup(page->next_page_token)
                    : NULL;
        protobuf_c_message_free_unpacked(&page->base, NULL);
        if (token == NULL) {
            whole = true;
            break;
        }
    }
    free(token);
    free(err);
    return whole;
}

struct orphan_walk {
    bool segput;
    int64_t cutoff;
    struct stale st, live; /* st: to remove; live: upload folders with a record */
    /* For SEGPUT_DIR: the current folder, its files and its newest commit. */
    char *dir;
    struct stale cur;
    int64_t newest;
};

/* Ends the current segput folder: its files are stale when its newest is (whole: the walk saw it all). */
static void orphan_folder_end(struct orphan_walk *w, bool whole)
{
    for (size_t j = 0; j < w->cur.n; j++) {
        if (whole && w->newest <= w->cutoff)
            stale_add(&w->st, w->cur.paths[j]);
        free(w->cur.paths[j]);
    }
    w->cur.n = 0;
    w->newest = 0;
}

static void orphan_visit(const Dfs__V1__FileInfo *fi, void *arg)
{
    struct orphan_walk *w = arg;
    char *d = folder_of(fi->path);
    if (d == NULL)
        return;
    if (!w->segput) {
        if (strcmp(fi->path + strlen(d), "upload") == 0)
            stale_add(&w->live, d);
        else if (fi->committed_ms <= w->cutoff)
            stale_add(&w->st, fi->path);
        free(d);
        return;
    }
    if (w->dir == NULL || strcmp(d, w->dir) != 0) {
        orphan_folder_end(w, true);
        free(w->dir);
        w->dir = d;
    } else {
        free(d);
    }
    stale_add(&w->cur, fi->path);
    if (fi->committed_ms > w->newest)
        w->newest = fi->committed_ms;
}

static void sweep_orphans(dfs_s3server *s, const char *prefix, int64_t cutoff)
{
    struct orphan_walk w = {.segput = strcmp(prefix, SEGPUT_DIR) == 0, .cutoff = cutoff};
    bool whole = list_walk(s, prefix, orphan_visit, &w);
    orphan_folder_end(&w, whole);
    free(w.cur.paths);
    free(w.dir);
    if (w.live.n > 1)
        qsort(w.live.paths, w.live.n, sizeof *w.live.paths, cmp_str);
    for (size_t i = 0; i < w.st.n; i++) {
        char *d = folder_of(w.st.paths[i]);
        bool owned = d != NULL && w.live.n > 0 &&
                     bsearch(&d, w.live.paths, w.live.n, sizeof *w.live.paths, cmp_str) != NULL;
        if (d != NULL && !owned) {
            dfs_log(DFS_LOG_INFO, "s3 orphan removed path=%s", w.st.paths[i]);
            dfs_client_rm(s->client, w.st.paths[i], NULL, NULL);
        }
        free(d);
        free(w.st.paths[i]);
    }
    free(w.st.paths);
    for (size_t i = 0; i < w.live.n; i++)
        free(w.live.paths[i]);
    free(w.live.paths);
}

struct expired_walk {
    int64_t cutoff;
    struct stale dirs; /* upload folders whose record is older than the cutoff */
};

static void expired_visit(const Dfs__V1__FileInfo *fi, void *arg)
{
    struct expired_walk *w = arg;
    size_t len = strlen(fi->path);
    if (len < 7 || strcmp(fi->path + len - 7, "/upload") != 0 || fi->committed_ms > w->cutoff)
        return;
    char *dir = strndup(fi->path, len - 6);
    if (dir != NULL)
        stale_add(&w->dirs, dir);
    free(dir);
}

/* One pass: uploads whose record is older than the timeout are aborted; orphans removed. */
static void sweep_uploads(dfs_s3server *s)
{
    int64_t cutoff = dfs_clock_wall_ms() - s->upload_timeout_ms;
    sweep_orphans(s, SEGPUT_DIR, cutoff);
    sweep_orphans(s, UPLOADS_DIR, cutoff);
    struct expired_walk w = {.cutoff = cutoff};
    list_walk(s, UPLOADS_DIR, expired_visit, &w);
    for (size_t i = 0; i < w.dirs.n; i++) {
        dfs_log(DFS_LOG_INFO, "s3 upload expired dir=%s", w.dirs.paths[i]);
        sweep_one(s, w.dirs.paths[i]);
        free(w.dirs.paths[i]);
    }
    free(w.dirs.paths);
}

static void *sweeper_main(void *arg)
{
    dfs_s3server *s = arg;
    /* A quarter of the timeout, between 100 ms and a minute. */
    int64_t every = s->upload_timeout_ms / 4;
    every = every < 100 ? 100 : every > 60000 ? 60000 : every;
    /* At start: whatever a gateway that died left behind and the timeout has made stale. */
    sweep_uploads(s);
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += every / 1000;
        until.tv_nsec += (every % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &until);
        if (s->stopping)
            break;
        pthread_mutex_unlock(&s->mu);
        sweep_uploads(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static enum MHD_Result run(struct MHD_Connection *c, struct request *r)
{
    struct dfs_s3err e = {0};
    switch (r->q.op) {
    case DFS_S3REQ_LIST_BUCKETS:
        return list_buckets(c, r);
    case DFS_S3REQ_CREATE_BUCKET:
        return create_bucket(c, r);
    case DFS_S3REQ_HEAD_BUCKET:
        if (bucket_check(r->s, r->q.bucket, NULL, &e) != DFS_OK)
            return reply_error(c, r, &e);
        return reply(c, r, MHD_HTTP_OK, NULL, NULL, 0);
    case DFS_S3REQ_DELETE_BUCKET:
        return delete_bucket(c, r);
    case DFS_S3REQ_GET_BUCKET_LOCATION: {
        if (bucket_check(r->s, r->q.bucket, NULL, &e) != DFS_OK)
            return reply_error(c, r, &e);
        char *body = NULL, *xerr = NULL;
        size_t len = 0;
        if (dfs_s3xml_location(strcmp(r->s->region, "us-east-1") == 0 ? "" : r->s->region, &body,
                               &len, &xerr) != DFS_OK) {
            dfs_s3err_set(&e, DFS_S3ERR_INTERNAL_ERROR, "%s", xerr != NULL ? xerr : "xml");
            free(xerr);
            return reply_error(c, r, &e);
        }
        return reply_xml(c, r, body, len);
    }
    case DFS_S3REQ_LIST_OBJECTS:
        return list_objects(c, r, 1);
    case DFS_S3REQ_LIST_OBJECTS_V2:
        return list_objects(c, r, 2);
    case DFS_S3REQ_DELETE_OBJECTS:
        return delete_objects(c, r);
    case DFS_S3REQ_COPY_OBJECT:
        return copy_object(c, r);
    case DFS_S3REQ_GET_OBJECT:
        return get_object(c, r, false);
    case DFS_S3REQ_HEAD_OBJECT:
        return get_object(c, r, true);
    case DFS_S3REQ_DELETE_OBJECT:
        return delete_object(c, r);
    case DFS_S3REQ_CREATE_MULTIPART_UPLOAD:
        return create_upload(c, r);
    case DFS_S3REQ_COMPLETE_MULTIPART_UPLOAD:
        return complete_upload(c, r);
    case DFS_S3REQ_ABORT_MULTIPART_UPLOAD:
        return abort_upload(c, r);
    case DFS_S3REQ_LIST_PARTS:
        return list_parts(c, r);
    case DFS_S3REQ_LIST_MULTIPART_UPLOADS:
        return list_uploads(c, r);
    default:
        dfs_s3err_set(&e, DFS_S3ERR_NOT_IMPLEMENTED, "%s is not implemented yet",
                      dfs_s3req_op_name(r->q.op));
        return reply_error(c, r, &e);
    }
}

/* The first call: headers complete, body not read. Check everything before the body comes. */
static enum MHD_Result begin(struct MHD_Connection *c, struct request *r, const char *method)
{
    struct dfs_s3err e = {0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, collect_header, r);
    char *q = strchr(r->uri, '?');
    if (q != NULL)
        *q++ = '\0';
    r->http.method = method;
    r->http.path = r->uri;
    r->http.query = q;
    r->http.headers = r->headers;
    r->http.nheaders = r->nheaders;
    struct dfs_sigv4_config scfg = {.region = r->s->region, .key = lookup_key, .key_arg = r->s};
    int rc = dfs_sigv4_verify(&scfg, &r->http, time(NULL), &r->auth, &e);
    if (rc == DFS_OK) {
        rc = dfs_s3req_parse(r->s->domain, &r->http, &r->q, &e);
        r->parsed = rc == DFS_OK;
    }
    if (rc == DFS_OK && r->auth.role != ROLE_ADMIN && r->auth.role != ROLE_READ_WRITE &&
        !(r->auth.role == ROLE_READ_ONLY && dfs_s3req_op_reads(r->q.op)))
        rc = dfs_s3err_set(&e, DFS_S3ERR_ACCESS_DENIED, "access key %s may not %s",
                           r->auth.access_key_id, dfs_s3req_op_name(r->q.op));
    if (rc == DFS_OK)
        rc = dfs_s3req_check_headers(&r->http, &e);
    if (rc == DFS_OK && op_has_body(r->q.op)) {
        if (r->q.op == DFS_S3REQ_PUT_OBJECT)
            rc = bucket_check(r->s, r->q.bucket, NULL, &e);
        else if (r->q.op == DFS_S3REQ_UPLOAD_PART)
            rc = upload_check(r, &e);
        if (rc == DFS_OK)
            rc = body_begin(r, &e);
        return rc == DFS_OK ? MHD_YES : reply_error(c, r, &e);
    }
    if (rc != DFS_OK)
        return reply_error(c, r, &e);
    r->failed = true; /* answered: a body that comes is dropped */
    return run(c, r);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
    (void)cls;
    (void)url;
    (void)version;
    struct request *r = *req_cls;
    if (r == NULL || r->uri == NULL)
        return MHD_NO;
    if (!r->started) {
        r->started = true;
        return begin(c, r, method);
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->failed || r->body_failed)
            return MHD_YES;
        if (body_feed(r, upload_data, n, &r->body_err) != DFS_OK)
            r->body_failed = true;
        return MHD_YES;
    }
    if (r->failed)
        return MHD_YES;
    r->failed = true;
    if (r->body_failed)
        return reply_error(c, r, &r->body_err);
    struct dfs_s3err e = {0};
    uint8_t md5[DFS_ETAG_MD5_LEN];
    if (body_finish(r, md5, &e) != DFS_OK)
        return reply_error(c, r, &e);
    if (r->q.op == DFS_S3REQ_PUT_OBJECT)
        return put_object(c, r, md5);
    if (r->q.op == DFS_S3REQ_UPLOAD_PART)
        return upload_part(c, r, md5);
    return run(c, r);
}

/* ---- the daemon ------------------------------------------------------------------------------ */

int dfs_s3server_start(const struct dfs_s3server_config *cfg, dfs_s3server **out, char **errmsg)
{
    char host[256], port[8];
    enum dfs_addr_fault why;
    if (cfg->listen == NULL ||
        dfs_addr_split(cfg->listen, host, sizeof host, port, sizeof port, &why) != DFS_OK)
        return dfs_seterr(errmsg, DFS_EINVAL, "--s3-listen must be HOST:PORT, not '%s'",
                          cfg->listen != NULL ? cfg->listen : "");
    dfs_s3server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    atomic_init(&s->active, 0);
    s->upload_timeout_ms = cfg->upload_timeout_ms > 0 ? cfg->upload_timeout_ms : 7 * 86400000LL;
    s->segment_size = cfg->segment_size >= (1u << 20) ? cfg->segment_size : 64u << 20;
    s->body_memory = cfg->body_memory;
    s->segment_memory = cfg->segment_memory;
    pthread_mutex_init(&s->bufmu, NULL);
    s->client = cfg->client;
    s->domain = cfg->domain != NULL && cfg->domain[0] != '\0' ? strdup(cfg->domain) : NULL;
    s->region = strdup(cfg->region != NULL && cfg->region[0] != '\0' ? cfg->region : "us-east-1");
    s->spool_dir = strdup(cfg->spool_dir != NULL ? cfg->spool_dir : "/tmp");
    if (s->region == NULL || s->spool_dir == NULL) {
        dfs_s3server_stop(s);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    /* Per connection 128 KiB of MHD memory (DESIGN.md's bound); bodies go to the spool. */
    struct dfs_gw_listen_opts lo = {.host = host,
                                    .port = port,
                                    .listen = cfg->listen,
                                    .what = "serve S3",
                                    .log_prefix = "s3 http",
                                    .max_connections = cfg->max_connections,
                                    .connection_memory = 128u << 10,
                                    .handler = handle,
                                    .begin = request_begin,
                                    .end = request_end,
                                    .cls = s};
    int rc = dfs_gw_listen_start(&lo, &s->daemon, s->address, sizeof s->address, errmsg);
    if (rc != DFS_OK) {
        dfs_s3server_stop(s);
        return rc;
    }
    if (pthread_create(&s->sweeper, NULL, sweeper_main, s) != 0) {
        dfs_s3server_stop(s);
        return dfs_seterr(errmsg, DFS_ENOMEM, "cannot start the upload sweeper");
    }
    s->sweeping = true;
    *out = s;
    return DFS_OK;
}

const char *dfs_s3server_address(const dfs_s3server *s)
{
    return s->address;
}

unsigned dfs_s3server_quiesce(dfs_s3server *s, int64_t grace_ms)
{
    return dfs_gw_listen_quiesce(s->daemon, &s->active, grace_ms);
}

void dfs_s3server_stop(dfs_s3server *s)
{
    if (s == NULL)
        return;
    s->cancel = 1;
    if (s->sweeping) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->sweeper, NULL);
    }
    if (s->daemon != NULL)
        MHD_stop_daemon(s->daemon);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    memset(s->cache, 0, sizeof s->cache);
    for (unsigned i = 0; i < UPLOAD_CACHE_N; i++)
        free(s->uploads[i].key);
    for (unsigned i = 0; i < s->nidle; i++)
        free(s->idle[i].p);
    pthread_mutex_destroy(&s->bufmu);
    free(s->domain);
    free(s->region);
    free(s->spool_dir);
    free(s);
}
