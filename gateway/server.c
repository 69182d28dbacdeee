/* dfs-gateway's HTTP server: the REST API, the probes and the status page on one port. */
#include "gateway/server.h"

#include "client/dfs_client.h"
#include "common/addr.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "gateway/files.h"
#include "gateway/http.h"
#include "gateway/listen.h"
#include "gateway/page.h"
#include "gateway/reply.h"
#include "gateway/urlcodec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Request bodies other than uploads (experiment parameters) are small. */
#define SMALL_BODY_MAX (64u << 10)

/* /readyz: how long the metadata service gets to answer. */
#define PROBE_TIMEOUT_MS 2000

/* Callers' tokens checked by the metadata service (WhoAmI) are trusted this long. */
#define CALLER_CACHE_MS 60000
#define CALLER_CACHE_N  64

struct caller_entry {
    uint8_t hash[32]; /* SHA-256 of the token: tokens themselves are not kept */
    int role;         /* dfs.v1.TokenRole */
    int64_t until_ms; /* 0: empty */
};

struct dfs_gateway {
    struct MHD_Daemon *daemon;
    /* How to reach the metadata service as a caller (its token left out); NULL: no check. */
    struct dfs_client_options caller_opts;
    bool check_callers;
    pthread_mutex_t callers_mu;
    struct caller_entry callers[CALLER_CACHE_N];
    unsigned next_caller;
    dfs_client *client; /* borrowed */
    dfs_gw_files *files;
    dfs_experiments *experiments;
    /* Set at stop: transfers in flight poll it and stop (dfs_put/dfs_get `interrupted`). */
    volatile sig_atomic_t cancel;
    atomic_uint active; /* requests begun and not yet completed */
    char address[300];
};

/* What MHD keeps per request (*req_cls): the route's state and the bookkeeping. */
struct request {
    dfs_gateway *g;
    void *route; /* a struct dfs_gw_req, or NULL */
    /* POST /v1/experiments: the body, collected. */
    char *body;
    size_t len;
    bool too_big;
    bool started;      /* the body's first call was seen */
    bool auth_checked; /* the caller's token was checked at the first call */
    bool refused;      /* ... and refused: the answer is queued, the body dropped */
};

static void *request_begin(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)uri;
    (void)c;
    dfs_gateway *g = cls;
    struct request *r = calloc(1, sizeof *r);
    if (r != NULL) {
        r->g = g;
        atomic_fetch_add(&g->active, 1);
    }
    return r;
}

static void request_end(void *cls, struct MHD_Connection *c, void **req_cls,
                        enum MHD_RequestTerminationCode why)
{
    (void)c;
    (void)why;
    dfs_gateway *g = cls;
    struct request *r = *req_cls;
    if (r == NULL)
        return;
    if (r->route != NULL) {
        struct dfs_gw_req *route = r->route;
        route->done(route);
    }
    free(r->body);
    free(r);
    *req_cls = NULL;
    atomic_fetch_sub(&g->active, 1);
}

/* ---- JSON documents -------------------------------------------------------------------------- */

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
    if (d->f != NULL)
        dfs_json_init(&d->j, d->f);
    return d->f != NULL;
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

static const char *node_state(int s)
{
    static const char *const names[] = {"unknown", "alive",    "suspect",
                                        "dead",    "draining", "decommissioned"};
    return s >= 0 && s <= 5 ? names[s] : "unknown";
}

static void key_uint(dfs_json *j, const char *k, uint64_t v)
{
    dfs_json_key(j, k);
    dfs_json_uint(j, v);
}

static enum MHD_Result nodes(dfs_gateway *g, struct MHD_Connection *c)
{
    Dfs__V1__ListNodesResponse *resp = NULL;
    char *err = NULL;
    int rc = dfs_client_nodes(g->client, &resp, &err);
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
    dfs_json_key(&d.j, "nodes");
    dfs_json_begin_array(&d.j);
    for (size_t i = 0; i < resp->n_nodes; i++) {
        const Dfs__V1__Node *n = resp->nodes[i];
        dfs_json_begin_object(&d.j);
        dfs_json_key(&d.j, "id");
        dfs_json_string(&d.j, n->id);
        dfs_json_key(&d.j, "address");
        dfs_json_string(&d.j, n->address);
        dfs_json_key(&d.j, "zone");
        dfs_json_string(&d.j, n->zone);
        dfs_json_key(&d.j, "state");
        dfs_json_string(&d.j, node_state(n->state));
        key_uint(&d.j, "capacity_bytes", n->capacity_bytes);
        key_uint(&d.j, "used_bytes", n->used_bytes);
        key_uint(&d.j, "free_bytes", n->free_bytes);
        key_uint(&d.j, "fragment_count", n->fragment_count);
        key_uint(&d.j, "catalog_fragments", n->catalog_fragments);
        dfs_json_key(&d.j, "last_heartbeat_ms");
        dfs_json_int(&d.j, n->last_heartbeat_ms);
        dfs_json_key(&d.j, "groups");
        dfs_json_begin_array(&d.j);
        for (size_t k = 0; k < n->n_groups; k++)
            dfs_json_string(&d.j, n->groups[k]);
        dfs_json_end_array(&d.j);
        dfs_json_end_object(&d.j);
    }
    dfs_json_end_array(&d.j);
    dfs_json_end_object(&d.j);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return doc_reply(c, 200, &d);
}

static enum MHD_Result status(dfs_gateway *g, struct MHD_Connection *c)
{
    Dfs__V1__StatResponse *st = NULL;
    char *err = NULL;
    int rc = dfs_client_status(g->client, &st, &err);
    if (rc != DFS_OK) {
        enum MHD_Result r = dfs_gw_reply_code(c, rc, err);
        free(err);
        return r;
    }
    /* GetHealth is newer than Stat: an older service answers UNIMPLEMENTED, which only leaves
       the health part out. */
    Dfs__V1__GetHealthResponse *h = NULL;
    char *herr = NULL;
    int hrc = dfs_client_health(g->client, false, 100, &h, &herr);
    struct doc d;
    if (!doc_open(&d)) {
        protobuf_c_message_free_unpacked(&st->base, NULL);
        if (h != NULL)
            protobuf_c_message_free_unpacked(&h->base, NULL);
        free(herr);
        return MHD_NO;
    }
    dfs_json *j = &d.j;
    dfs_json_begin_object(j);
    dfs_json_key(j, "metadata");
    dfs_json_string(j, dfs_client_metadata(g->client));
    dfs_json_key(j, "time_ms");
    dfs_json_int(j, dfs_clock_wall_ms());
    dfs_json_key(j, "stat");
    dfs_json_begin_object(j);
    key_uint(j, "files", st->files);
    key_uint(j, "logical_bytes", st->logical_bytes);
    key_uint(j, "stored_bytes", st->stored_bytes);
    key_uint(j, "nodes_alive", st->nodes_alive);
    key_uint(j, "nodes_suspect", st->nodes_suspect);
    key_uint(j, "nodes_dead", st->nodes_dead);
    key_uint(j, "nodes_draining", st->nodes_draining);
    key_uint(j, "nodes_decommissioned", st->nodes_decommissioned);
    key_uint(j, "pending_files", st->pending_files);
    key_uint(j, "pending_deletions", st->pending_deletions);
    key_uint(j, "schema_version", st->schema_version);
    dfs_json_end_object(j);
    dfs_json_key(j, "health");
    if (hrc == DFS_OK) {
        dfs_json_begin_object(j);
        key_uint(j, "files", h->files);
        key_uint(j, "healthy", h->healthy);
        key_uint(j, "degraded", h->degraded);
        key_uint(j, "lost", h->lost);
        dfs_json_key(j, "degraded_fraction");
        dfs_json_double(j, h->degraded_fraction);
        dfs_json_key(j, "lost_fraction");
        dfs_json_double(j, h->lost_fraction);
        key_uint(j, "repairs_queued", h->repairs_queued);
        key_uint(j, "repairs_running", h->repairs_running);
        key_uint(j, "repairs_done", h->repairs_done);
        key_uint(j, "repair_bytes", h->repair_bytes);
        key_uint(j, "damage_reported", h->damage_reported);
        key_uint(j, "damage_confirmed", h->damage_confirmed);
        key_uint(j, "damage_checks_pending", h->damage_checks_pending);
        dfs_json_key(j, "lost_paths");
        dfs_json_begin_array(j);
        for (size_t i = 0; i < h->n_lost_paths; i++)
            dfs_json_string(j, h->lost_paths[i]);
        dfs_json_end_array(j);
        dfs_json_key(j, "degraded_paths");
        dfs_json_begin_array(j);
        for (size_t i = 0; i < h->n_degraded_paths; i++)
            dfs_json_string(j, h->degraded_paths[i]);
        dfs_json_end_array(j);
        dfs_json_end_object(j);
    } else {
        dfs_json_null(j);
        dfs_json_key(j, "health_error");
        dfs_json_string(j, herr != NULL ? herr : dfs_strerror(hrc));
    }
    dfs_json_end_object(j);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    if (h != NULL)
        protobuf_c_message_free_unpacked(&h->base, NULL);
    free(herr);
    return doc_reply(c, 200, &d);
}

static enum MHD_Result readyz(dfs_gateway *g, struct MHD_Connection *c)
{
    char *err = NULL;
    int rc = dfs_client_ping(g->client, PROBE_TIMEOUT_MS, &err);
    if (rc == DFS_OK && !g->cancel) {
        static const char ok[] = "ready\n";
        return dfs_gw_reply_static(c, 200, "text/plain; charset=utf-8", ok, sizeof ok - 1);
    }
    char *body = NULL;
    int n = asprintf(&body, "not ready: %s\n",
                     g->cancel     ? "shutting down"
                     : err != NULL ? err
                                   : dfs_strerror(rc));
    free(err);
    if (n < 0)
        return MHD_NO;
    return dfs_gw_reply(c, 503, "text/plain; charset=utf-8", body, (size_t)n);
}

/* ---- experiments ----------------------------------------------------------------------------- */

/* Query arguments of POST /v1/experiments, collected (values still percent-encoded). */
struct query_knobs {
    struct dfs_exp_knob *k;
    size_t n, cap;
    char *kind;
    int rc;
    char *err;
};

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    struct query_knobs *q = cls;
    if (q->rc != DFS_OK)
        return MHD_NO;
    char *v = NULL;
    if (value != NULL && (q->rc = dfs_gw_percent_decode(value, &v, &q->err)) != DFS_OK)
        return MHD_NO;
    if (strcmp(key, "kind") == 0) {
        free(q->kind);
        q->kind = v != NULL ? v : strdup("");
        return MHD_YES;
    }
    /* A boolean knob: "quick=true" or a bare "quick" is the flag, "quick=false" drops it. */
    if (v == NULL || strcmp(v, "true") == 0 || strcmp(v, "false") == 0) {
        bool on = v == NULL || strcmp(v, "true") == 0;
        free(v);
        v = NULL;
        if (!on)
            return MHD_YES;
    }
    if ((q->rc = dfs_exp_check_knob(key, v, &q->err)) != DFS_OK || q->n == q->cap) {
        if (q->rc == DFS_OK)
            q->rc = dfs_seterr(&q->err, DFS_EINVAL, "too many parameters");
        free(v);
        return MHD_NO;
    }
    q->k[q->n].name = strdup(key);
    q->k[q->n].value = v;
    if (q->k[q->n].name == NULL) {
        free(v);
        q->rc = dfs_seterr(&q->err, DFS_ENOMEM, "out of memory");
        return MHD_NO;
    }
    q->n++;
    return MHD_YES;
}

static enum MHD_Result exp_start(dfs_gateway *g, struct MHD_Connection *c, struct request *r)
{
    char *kind = NULL, *err = NULL, *id = NULL;
    struct dfs_exp_knob *knobs = NULL;
    size_t n = 0;
    int rc = DFS_OK;
    if (r->too_big) {
        rc = dfs_seterr(&err, DFS_EINVAL, "the request body is larger than %u bytes",
                        SMALL_BODY_MAX);
    } else if (r->len > 0) {
        rc = dfs_exp_parse_json(r->body, r->len, &kind, &knobs, &n, &err);
    } else {
        int count = MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, NULL, NULL);
        struct query_knobs q = {.cap = count > 0 ? (size_t)count : 1, .rc = DFS_OK};
        q.k = calloc(q.cap, sizeof *q.k);
        if (q.k == NULL)
            return MHD_NO;
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &q);
        rc = q.rc;
        err = q.err;
        kind = q.kind;
        knobs = q.k;
        n = q.n;
    }
    if (rc == DFS_OK && (kind == NULL || kind[0] == '\0'))
        rc = dfs_seterr(&err, DFS_EINVAL, "kind is required: store, loss or simulate");
    if (rc == DFS_OK)
        rc = dfs_experiments_start(g->experiments, kind, knobs, n, &id, &err);
    free(kind);
    dfs_exp_knobs_free(knobs, n);
    if (rc != DFS_OK) {
        /* Too many running: 429, the client may try again later. */
        unsigned st = rc == DFS_EABORTED ? 429 : 0;
        enum MHD_Result res =
            st != 0 ? dfs_gw_reply_error(c, st, err) : dfs_gw_reply_code(c, rc, err);
        free(err);
        return res;
    }
    dfs_log(DFS_LOG_INFO, "experiment started id=%s", id);
    struct doc d;
    if (!doc_open(&d)) {
        free(id);
        return MHD_NO;
    }
    dfs_json_begin_object(&d.j);
    dfs_json_key(&d.j, "id");
    dfs_json_string(&d.j, id);
    dfs_json_key(&d.j, "url");
    char url[200];
    snprintf(url, sizeof url, "/v1/experiments/%s", id);
    dfs_json_string(&d.j, url);
    dfs_json_end_object(&d.j);
    free(id);
    return doc_reply(c, 202, &d);
}

/* Serve a file a run wrote (a plot, a result). */
static enum MHD_Result exp_file(dfs_gateway *g, struct MHD_Connection *c, const char *id,
                                const char *name, const char *type)
{
    char *path = NULL, *err = NULL;
    int rc = dfs_experiments_file(g->experiments, id, name, &path, &err);
    int fd = rc == DFS_OK ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (rc == DFS_OK && (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)))
        rc = dfs_seterr(&err, DFS_ENOTFOUND, "no file %s in experiment %s", name, id);
    free(path);
    if (rc != DFS_OK) {
        if (fd >= 0)
            close(fd);
        enum MHD_Result res = dfs_gw_reply_code(c, rc, err);
        free(err);
        return res;
    }
    /* MHD closes fd with the response. */
    struct MHD_Response *resp = MHD_create_response_from_fd((size_t)st.st_size, fd);
    if (resp == NULL) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* /v1/experiments[/{id}[/plots/{name}.png | /files/{name}]] */
static enum MHD_Result experiments(dfs_gateway *g, struct MHD_Connection *c, const char *method,
                                   const char *rest, struct request *r, const char *upload_data,
                                   size_t *upload_data_size)
{
    bool get =
        strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    char *err = NULL;
    if (g->experiments == NULL)
        return dfs_gw_reply_error(c, 503, "experiments are off on this gateway");
    if (rest[0] == '\0' || strcmp(rest, "/") == 0) {
        if (strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
            if (*upload_data_size > 0) { /* collect the body, then answer on the last call */
                if (r->len + *upload_data_size > SMALL_BODY_MAX) {
                    r->too_big = true;
                } else {
                    char *b = realloc(r->body, r->len + *upload_data_size + 1);
                    if (b == NULL)
                        return MHD_NO;
                    memcpy(b + r->len, upload_data, *upload_data_size);
                    r->body = b;
                    r->len += *upload_data_size;
                    r->body[r->len] = '\0';
                }
                *upload_data_size = 0;
                return MHD_YES;
            }
            const char *cl =
                MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            const char *te =
                MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
            if (!r->started && ((cl != NULL && strcmp(cl, "0") != 0) || te != NULL)) {
                r->started = true; /* a body follows: wait for it */
                return MHD_YES;
            }
            return exp_start(g, c, r);
        }
        if (!get)
            return dfs_gw_reply_method(c, "GET, HEAD, POST");
        char *body = NULL;
        size_t len = 0;
        int rc = dfs_experiments_list_json(g->experiments, &body, &len, &err);
        if (rc != DFS_OK) {
            enum MHD_Result res = dfs_gw_reply_code(c, rc, err);
            free(err);
            return res;
        }
        return dfs_gw_reply(c, 200, "application/json", body, len);
    }
    /* "/{id}" or "/{id}/plots/{name}.png" or "/{id}/files/{name}"; ids and names have no '%'. */
    char id[128], kind[16], name[256];
    int used = 0;
    if (sscanf(rest, "/%127[A-Za-z0-9_-]%n", id, &used) != 1)
        return dfs_gw_reply_error(c, 404, "no such experiment");
    const char *tail = rest + used;
    if (tail[0] == '\0') {
        if (strcmp(method, MHD_HTTP_METHOD_DELETE) == 0) {
            int rc = dfs_experiments_cancel(g->experiments, id, &err);
            if (rc != DFS_OK) {
                /* Not running (any more): a conflict with its state, not an outage. */
                enum MHD_Result res = rc == DFS_EPRECOND ? dfs_gw_reply_error(c, 409, err)
                                                         : dfs_gw_reply_code(c, rc, err);
                free(err);
                return res;
            }
            dfs_log(DFS_LOG_INFO, "experiment cancelled id=%s", id);
            static const char ok[] = "{\"cancelled\": true}\n";
            return dfs_gw_reply_static(c, 202, "application/json", ok, sizeof ok - 1);
        }
        if (!get)
            return dfs_gw_reply_method(c, "GET, HEAD, DELETE");
        char *body = NULL;
        size_t len = 0;
        int rc = dfs_experiments_get_json(g->experiments, id, &body, &len, &err);
        if (rc != DFS_OK) {
            enum MHD_Result res = dfs_gw_reply_code(c, rc, err);
            free(err);
            return res;
        }
        return dfs_gw_reply(c, 200, "application/json", body, len);
    }
    used = 0;
    if (sscanf(tail, "/%15[a-z]/%255[A-Za-z0-9_.,+-]%n", kind, name, &used) != 2 ||
        tail[used] != '\0')
        return dfs_gw_reply_error(c, 404, "not found");
    if (!get)
        return dfs_gw_reply_method(c, "GET, HEAD");
    size_t nl = strlen(name);
    if (strcmp(kind, "plots") == 0 && nl > 4 && strcmp(name + nl - 4, ".png") == 0)
        return exp_file(g, c, id, name, "image/png");
    if (strcmp(kind, "files") == 0) {
        const char *type = nl > 5 && strcmp(name + nl - 5, ".json") == 0 ? "application/json"
                           : nl > 4 && strcmp(name + nl - 4, ".png") == 0
                               ? "image/png"
                               : "text/plain; charset=utf-8";
        return exp_file(g, c, id, name, type);
    }
    return dfs_gw_reply_error(c, 404, "not found");
}

/* ---- callers: bearer tokens ----------------------------------------------------------------- */

/*
 * The role of the token a request presents ("Authorization: Bearer T"), checked by the metadata
 * service: WhoAmI with the caller's own token (valid, not revoked, not expired); answers are
 * cached for CALLER_CACHE_MS under the token's SHA-256. DFS_EUNAUTH without a token or with one
 * the service refuses; DFS_EUNAVAIL when it cannot be asked.
 */
static int caller_role(dfs_gateway *g, const char *authz, int *role, char **errmsg)
{
    if (authz == NULL || strncasecmp(authz, "Bearer ", 7) != 0)
        return dfs_seterr(errmsg, DFS_EUNAUTH,
                          "a bearer token is required (Authorization: Bearer <dfs token>)");
    const char *token = authz + 7;
    while (*token == ' ')
        token++;
    uint8_t hash[32];
    SHA256((const unsigned char *)token, strlen(token), hash);
    int64_t now = dfs_clock_wall_ms();
    pthread_mutex_lock(&g->callers_mu);
    for (unsigned i = 0; i < CALLER_CACHE_N; i++)
        if (g->callers[i].until_ms > now && memcmp(g->callers[i].hash, hash, 32) == 0) {
            *role = g->callers[i].role;
            pthread_mutex_unlock(&g->callers_mu);
            return DFS_OK;
        }
    pthread_mutex_unlock(&g->callers_mu);
    struct dfs_client_options o = g->caller_opts;
    o.token = token;
    o.token_file = NULL;
    dfs_client *c = NULL;
    Dfs__V1__TokenInfo *info = NULL;
    int rc = dfs_client_open(&o, &c, errmsg);
    if (rc == DFS_OK)
        rc = dfs_client_whoami(c, &info, errmsg);
    dfs_client_close(c);
    if (rc == DFS_EINVAL) /* a malformed token */
        rc = DFS_EUNAUTH;
    if (rc == DFS_OK && info == NULL)
        rc = dfs_seterr(errmsg, DFS_EUNAUTH, "the metadata service did not say who the token is");
    if (rc != DFS_OK) {
        if (info != NULL)
            protobuf_c_message_free_unpacked(&info->base, NULL);
        return rc;
    }
    *role = (int)info->role;
    protobuf_c_message_free_unpacked(&info->base, NULL);
    pthread_mutex_lock(&g->callers_mu);
    struct caller_entry *e = &g->callers[g->next_caller++ % CALLER_CACHE_N];
    memcpy(e->hash, hash, 32);
    e->role = *role;
    e->until_ms = now + CALLER_CACHE_MS;
    pthread_mutex_unlock(&g->callers_mu);
    return DFS_OK;
}

/* Every route but the probes and the page itself needs a token; reads need any data role, writes
   read_write or admin. Returns MHD_YES with *ok when the request may go on; otherwise the refusal
   is queued. */
static enum MHD_Result check_caller(dfs_gateway *g, struct MHD_Connection *c, bool get, bool *ok)
{
    *ok = false;
    char *err = NULL;
    int role = 0;
    int rc = caller_role(g, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"), &role,
                         &err);
    if (rc == DFS_OK && role != DFS__V1__TOKEN_ROLE__TOKEN_ADMIN &&
        role != DFS__V1__TOKEN_ROLE__TOKEN_READ_WRITE &&
        role != DFS__V1__TOKEN_ROLE__TOKEN_GATEWAY &&
        !(get && role == DFS__V1__TOKEN_ROLE__TOKEN_READ_ONLY))
        rc = dfs_seterr(&err, DFS_EPERM, "this token's role may not %s here",
                        get ? "read" : "change anything");
    if (rc == DFS_OK) {
        *ok = true;
        return MHD_YES;
    }
    unsigned status = dfs_gw_http_status(rc);
    size_t len = 0;
    char *body = dfs_gw_error_json(status, err != NULL ? err : dfs_strerror(rc), &len);
    free(err);
    if (body == NULL)
        return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"dfs\"");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- routing --------------------------------------------------------------------------------- */

static bool prefix(const char *url, const char *p, const char **rest)
{
    size_t n = strlen(p);
    if (strncmp(url, p, n) != 0 || (url[n] != '\0' && url[n] != '/'))
        return false;
    *rest = url + n;
    return true;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
    (void)version;
    dfs_gateway *g = cls;
    struct request *r = *req_cls;
    if (r == NULL)
        return MHD_NO; /* out of memory at request_begin */
    bool get =
        strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    bool open = strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 ||
                strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0;
    if (g->check_callers && !open && !r->auth_checked) {
        r->auth_checked = true;
        bool ok = false;
        enum MHD_Result ret = check_caller(g, c, get, &ok);
        if (!ok) {
            r->refused = true;
            return ret;
        }
    }
    if (r->refused) { /* answered at the first call: drop the body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    const char *rest = NULL;
    if (prefix(url, "/v1/files", &rest))
        return dfs_gw_files_handle(g->files, c, method, rest, upload_data, upload_data_size,
                                   &r->route);
    if (prefix(url, "/v1/experiments", &rest))
        return experiments(g, c, method, rest, r, upload_data, upload_data_size);
    if (*upload_data_size > 0) { /* a body nobody wants: drop it, answer on the last call */
        *upload_data_size = 0;
        return MHD_YES;
    }
    static const char text[] = "text/plain; charset=utf-8";
    if (strcmp(url, "/healthz") == 0) {
        static const char ok[] = "ok\n";
        return get ? dfs_gw_reply_static(c, 200, text, ok, sizeof ok - 1)
                   : dfs_gw_reply_method(c, "GET, HEAD");
    }
    if (strcmp(url, "/readyz") == 0)
        return get ? readyz(g, c) : dfs_gw_reply_method(c, "GET, HEAD");
    if (strcmp(url, "/v1/nodes") == 0)
        return get ? nodes(g, c) : dfs_gw_reply_method(c, "GET, HEAD");
    if (strcmp(url, "/v1/status") == 0)
        return get ? status(g, c) : dfs_gw_reply_method(c, "GET, HEAD");
    if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0) {
        if (!get)
            return dfs_gw_reply_method(c, "GET, HEAD");
        return dfs_gw_reply_static(c, 200, "text/html; charset=utf-8", dfs_gw_page_html,
                                   dfs_gw_page_html_len);
    }
    return dfs_gw_reply_error(c, 404,
                              "not found: the API is under /v1 (files, nodes, status, "
                              "experiments); the status page is /");
}

/* Split "HOST:PORT" / "[V6]:PORT" into host and port. */
static int split(const char *listen, char *host, size_t hcap, char *port, size_t pcap,
                 char **errmsg)
{
    enum dfs_addr_fault why = DFS_ADDR_BAD_PORT;
    if (dfs_addr_split(listen, host, hcap, port, pcap, &why) == DFS_OK)
        return DFS_OK;
    struct dfs_quote q;
    switch (why) {
    case DFS_ADDR_NO_PORT:
        return dfs_seterr(errmsg, DFS_EINVAL, "--listen must be HOST:PORT, not '%s'",
                          dfs_quote(listen, &q));
    case DFS_ADDR_UNBRACKETED:
        return dfs_seterr(errmsg, DFS_EINVAL, "an IPv6 address needs brackets: '%s'",
                          dfs_quote(listen, &q));
    case DFS_ADDR_TOO_LONG:
        return dfs_seterr(errmsg, DFS_EINVAL, "address too long: '%s'", dfs_quote(listen, &q));
    case DFS_ADDR_BAD_PORT:
        break;
    }
    return dfs_seterr(errmsg, DFS_EINVAL, "bad port in '%s'", dfs_quote(listen, &q));
}

int dfs_gateway_start(const struct dfs_gateway_config *cfg, dfs_gateway **out, char **errmsg)
{
    char host[256], port[8];
    int rc =
        split(cfg->listen != NULL ? cfg->listen : "", host, sizeof host, port, sizeof port, errmsg);
    if (rc != DFS_OK)
        return rc;
    dfs_gateway *g = calloc(1, sizeof *g);
    if (g == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    atomic_init(&g->active, 0);
    pthread_mutex_init(&g->callers_mu, NULL);
    if (cfg->caller_opts != NULL) {
        g->caller_opts = *cfg->caller_opts;
        g->check_callers = true;
    }
    g->experiments = cfg->experiments;
    g->client = cfg->client;
    struct dfs_gw_files_config fcfg = {.client = cfg->client,
                                       .spool_dir = cfg->spool_dir,
                                       .max_upload = cfg->max_upload,
                                       .cancel = &g->cancel};
    if ((rc = dfs_gw_files_create(&fcfg, &g->files, errmsg)) != DFS_OK) {
        dfs_gateway_stop(g);
        return rc;
    }
    /* The connection buffer (256 KiB) bounds what one upload holds in memory between writes
       to the spool. */
    struct dfs_gw_listen_opts lo = {.host = host,
                                    .port = port,
                                    .listen = cfg->listen,
                                    .what = "serve",
                                    .log_prefix = "http",
                                    .max_connections = cfg->max_connections,
                                    .connection_memory = 256u << 10,
                                    .handler = handle,
                                    .begin = request_begin,
                                    .end = request_end,
                                    .cls = g};
    if ((rc = dfs_gw_listen_start(&lo, &g->daemon, g->address, sizeof g->address, errmsg)) !=
        DFS_OK) {
        dfs_gateway_stop(g);
        return rc;
    }
    *out = g;
    return DFS_OK;
}

const char *dfs_gateway_address(const dfs_gateway *g)
{
    return g->address;
}

unsigned dfs_gateway_quiesce(dfs_gateway *g, int64_t grace_ms)
{
    return dfs_gw_listen_quiesce(g->daemon, &g->active, grace_ms);
}

void dfs_gateway_stop(dfs_gateway *g)
{
    if (g == NULL)
        return;
    g->cancel = 1;
    if (g->daemon != NULL)
        MHD_stop_daemon(g->daemon); /* joins every connection thread; transfers see cancel */
    dfs_gw_files_destroy(g->files);
    pthread_mutex_destroy(&g->callers_mu);
    free(g);
}
