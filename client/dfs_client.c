/* The dfs client library: the handle, its credentials, and the verbs over the transfer engine. */
#include "client/dfs_client.h"

#include "client/filehash.h"
#include "client/get.h"
#include "client/links.h"
#include "client/meta.h"
#include "client/put.h"
#include "client/spool.h"
#include "common/addr.h"
#include "common/err.h"
#include "services/rpc/client.h"
#include "services/rpc/grpclog.h"
#include "services/rpc/security.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A metadata call's deadline when the options leave it unset. */
#define DEFAULT_TIMEOUT_MS       10000
/* How long a transfer waits for a slot when the options leave it unset. */
#define DEFAULT_TRANSFER_WAIT_MS 30000
/* Idle put buffers a handle keeps (1 MiB each): enough for a put of 4 fragments (two chunks each
   cached, a few in flight). More cost the S3 gateway resident memory (tests/s3_test.py). */
#define CHUNK_POOL_KEEP          16

struct dfs_client {
    dfs_meta *meta;
    dfs_rpc_tls *tls; /* NULL: plaintext */
    /* How the metadata channel and every transfer's links are secured (meta borrows it). */
    struct dfs_rpc_link_security security;
    /* The channels to storage nodes, one per address, shared by every transfer of the handle
     * (client/links.h): a small put then costs no connection set-up. Thread-safe. */
    dfs_rpc_pool *channels;
    /* The put engine's data buffers (whole chunks), shared by every put of the handle
     * (client/put.h): a put after another finds them warm, not fresh pages to fault in and
     * clear. At most CHUNK_POOL_KEEP are kept idle. Thread-safe. */
    dfs_chunk_pool *chunks;
    /* Transfer slots (dfs_client_options.max_transfers; max 0: unlimited, the lock unused):
     * `running` counts the transfers between slot_take and slot_give, under `mu`. */
    pthread_mutex_t mu;
    pthread_cond_t freed;
    unsigned running, max;
    int64_t wait_ms;
    /* What dfs_client_replicas opens its one-replica handles with: the bearer token (a copy,
     * wiped at close; NULL: none) and the metadata deadline. */
    char *token;
    int64_t timeout_ms;
};

/* The token path the dfs command looks at last: ~/.config/dfs/token (NULL: no such file). */
static const char *default_token_file(char *buf, size_t cap)
{
    const char *home = getenv("HOME");
    if (home == NULL || (size_t)snprintf(buf, cap, "%s/.config/dfs/token", home) >= cap ||
        access(buf, F_OK) != 0)
        return NULL;
    return buf;
}

/* The token the calls carry (dfs_client_options); *out is malloc'd, NULL for none. */
static int find_token(const struct dfs_client_options *o, char **out, char **errmsg)
{
    *out = NULL;
    if (o->token != NULL) {
        if (!dfs_rpc_token_valid(o->token))
            return dfs_seterr(errmsg, DFS_EINVAL, "the token given is not a token");
        *out = strdup(o->token);
        return *out != NULL ? DFS_OK : dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    const char *file = o->token_file;
    char def[4096];
    if (file == NULL && o->token_from_env) {
        const char *t = getenv("DFS_TOKEN");
        if (t != NULL && t[0] != '\0') {
            if (!dfs_rpc_token_valid(t))
                return dfs_seterr(errmsg, DFS_EINVAL, "$DFS_TOKEN is not a token");
            *out = strdup(t);
            return *out != NULL ? DFS_OK : dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        file = getenv("DFS_TOKEN_FILE");
        if (file != NULL && file[0] == '\0')
            file = NULL;
        if (file == NULL)
            file = default_token_file(def, sizeof def);
    }
    if (file == NULL)
        return DFS_OK;
    return dfs_rpc_token_read_file(file, out, errmsg);
}

static void wipe(char *token)
{
    if (token != NULL)
        explicit_bzero(token, strlen(token));
    free(token);
}

int dfs_client_open(const struct dfs_client_options *o, dfs_client **out, char **errmsg)
{
    dfs_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the slot wait's deadline */
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->freed, &ca);
    pthread_condattr_destroy(&ca);
    c->max = o->max_transfers;
    c->wait_ms = o->transfer_wait_ms > 0 ? o->transfer_wait_ms : DEFAULT_TRANSFER_WAIT_MS;
    struct dfs_rpc_tls_config tls = {.ca_file = o->tls_ca,
                                     .cert_file = o->tls_cert,
                                     .key_file = o->tls_key,
                                     .server_name = o->tls_server_name};
    char *token = NULL;
    int rc = dfs_rpc_tls_create_optional(&tls, &c->tls, errmsg);
    if (rc == DFS_OK)
        rc = find_token(o, &token, errmsg);
    if (rc == DFS_OK) {
        c->security = (struct dfs_rpc_link_security){.tls = c->tls, .insecure = o->insecure};
        struct dfs_rpc_channel_opts copts = {.security = &c->security, .token = token};
        rc = dfs_meta_open(o->metadata, o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS,
                           &copts, &c->meta, errmsg);
    }
    if (rc == DFS_OK)
        rc = dfs_links_channels_create(&c->security, &c->channels, errmsg);
    if (rc == DFS_OK && (c->chunks = dfs_chunk_pool_create(DFS_CHUNK, CHUNK_POOL_KEEP)) == NULL)
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->token = token; /* the channel keeps its own copy; this one is for dfs_client_replicas */
    if (rc != DFS_OK) {
        dfs_client_close(c);
        return rc;
    }
    *out = c;
    return DFS_OK;
}

void dfs_client_close(dfs_client *c)
{
    if (c == NULL)
        return;
    dfs_rpc_pool_destroy(c->channels); /* no transfer runs: the handle's contract */
    dfs_chunk_pool_release(c->chunks); /* buffers still in gRPC's hands keep it alive */
    dfs_meta_close(c->meta);
    dfs_rpc_tls_destroy(c->tls); /* after the channels that use it */
    wipe(c->token);
    pthread_cond_destroy(&c->freed);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

const char *dfs_client_metadata(const dfs_client *c)
{
    return dfs_meta_addr(c->meta);
}

void dfs_client_route_grpc_logs(void)
{
    dfs_rpc_route_grpc_logs();
}

/* ---- transfers ---- */

/* Take a transfer slot, waiting up to c->wait_ms for one; every DFS_OK is paired with slot_give. */
static int slot_take(dfs_client *c, char **errmsg)
{
    if (c->max == 0)
        return DFS_OK;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += c->wait_ms / 1000;
    until.tv_nsec += (long)(c->wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    int wr = 0;
    while (c->running >= c->max && wr != ETIMEDOUT)
        wr = pthread_cond_timedwait(&c->freed, &c->mu, &until);
    bool got = c->running < c->max;
    unsigned running = c->running;
    if (got)
        c->running++;
    pthread_mutex_unlock(&c->mu);
    if (!got)
        return dfs_seterr(errmsg, DFS_EUNAVAIL,
                          "too many transfers at once (%u running for %lld ms); try again", running,
                          (long long)c->wait_ms);
    return DFS_OK;
}

static void slot_give(dfs_client *c)
{
    if (c->max == 0)
        return;
    pthread_mutex_lock(&c->mu);
    c->running--;
    pthread_cond_signal(&c->freed);
    pthread_mutex_unlock(&c->mu);
}

int dfs_client_put(dfs_client *c, const char *local, const char *remote,
                   const struct dfs_client_put_opts *opts, struct dfs_client_put_result *out,
                   char **errmsg)
{
    int rc = slot_take(c, errmsg);
    if (rc != DFS_OK)
        return rc;
    rc = dfs_put(c->meta, c->channels, c->chunks, local, remote, opts, out, errmsg);
    slot_give(c);
    return rc;
}

int dfs_client_get(dfs_client *c, const char *remote, const char *local,
                   const struct dfs_client_get_opts *opts, struct dfs_client_get_result *out,
                   char **errmsg)
{
    int rc = slot_take(c, errmsg);
    if (rc != DFS_OK)
        return rc;
    rc = dfs_get(c->meta, c->channels, remote, local, opts, out, errmsg);
    slot_give(c);
    return rc;
}

int dfs_client_get_range(dfs_client *c, const Dfs__V1__FileInfo *file, uint64_t offset,
                         uint64_t length, int out_fd, const char *scratch_dir,
                         const struct dfs_client_get_opts *opts, struct dfs_client_get_result *out,
                         char **errmsg)
{
    int rc = slot_take(c, errmsg);
    if (rc != DFS_OK)
        return rc;
    rc = dfs_get_fd(c->meta, c->channels, &c->security, file, offset, length, out_fd, scratch_dir,
                    opts, out, errmsg);
    slot_give(c);
    return rc;
}

int dfs_client_spool(int in, const char *dir, uint64_t reserve, volatile sig_atomic_t *interrupted,
                     int *out_fd, uint64_t *size, char **errmsg)
{
    return dfs_spool(in, dir, reserve, interrupted, out_fd, size, errmsg);
}

void dfs_client_sha256_hex(const uint8_t digest[DFS_SHA256_BYTES],
                           char hex[2 * DFS_SHA256_BYTES + 1])
{
    dfs_sha256_hex(digest, hex);
}

/* ---- catalog verbs: one Metadata call each ---- */

int dfs_client_stat(dfs_client *c, const char *remote, Dfs__V1__FileInfo **out, char **errmsg)
{
    return dfs_get_layout(c->meta, remote, out, errmsg);
}

int dfs_client_ls(dfs_client *c, const char *prefix, uint32_t page_size, const char *page_token,
                  Dfs__V1__ListFilesResponse **out, char **errmsg)
{
    Dfs__V1__ListFilesRequest req = DFS__V1__LIST_FILES_REQUEST__INIT;
    req.prefix = (char *)(prefix != NULL ? prefix : "");
    req.page_size = page_size;
    req.page_token = (char *)(page_token != NULL ? page_token : "");
    return dfs_meta_call(c->meta, "ListFiles", &req.base, &dfs__v1__list_files_response__descriptor,
                         true, out, errmsg);
}

int dfs_client_rm(dfs_client *c, const char *remote, Dfs__V1__FileInfo **removed, char **errmsg)
{
    Dfs__V1__DeleteFileRequest req = DFS__V1__DELETE_FILE_REQUEST__INIT;
    req.path = (char *)remote;
    Dfs__V1__DeleteFileResponse *resp = NULL;
    int rc = dfs_meta_call(c->meta, "DeleteFile", &req.base,
                           &dfs__v1__delete_file_response__descriptor, false, &resp, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (removed != NULL) {
        *removed = resp->file;
        resp->file = NULL;
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return DFS_OK;
}

int dfs_client_nodes(dfs_client *c, Dfs__V1__ListNodesResponse **out, char **errmsg)
{
    Dfs__V1__ListNodesRequest req = DFS__V1__LIST_NODES_REQUEST__INIT;
    return dfs_meta_call(c->meta, "ListNodes", &req.base, &dfs__v1__list_nodes_response__descriptor,
                         true, out, errmsg);
}

int dfs_client_status(dfs_client *c, Dfs__V1__StatResponse **out, char **errmsg)
{
    Dfs__V1__StatRequest req = DFS__V1__STAT_REQUEST__INIT;
    return dfs_meta_call(c->meta, "Stat", &req.base, &dfs__v1__stat_response__descriptor, true, out,
                         errmsg);
}

int dfs_client_health(dfs_client *c, bool verify, uint32_t list, Dfs__V1__GetHealthResponse **out,
                      char **errmsg)
{
    Dfs__V1__GetHealthRequest req = DFS__V1__GET_HEALTH_REQUEST__INIT;
    req.verify = verify;
    req.list = list;
    return dfs_meta_call(c->meta, "GetHealth", &req.base, &dfs__v1__get_health_response__descriptor,
                         true, out, errmsg);
}

int dfs_client_ping(dfs_client *c, int64_t timeout_ms, char **errmsg)
{
    Dfs__V1__StatRequest req = DFS__V1__STAT_REQUEST__INIT;
    Dfs__V1__StatResponse *resp = NULL;
    int rc = dfs_meta_call_within(c->meta, "Stat", &req.base, &dfs__v1__stat_response__descriptor,
                                  false, timeout_ms, &resp, errmsg);
    if (resp != NULL)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

int dfs_client_set_node_state(dfs_client *c, const char *node, Dfs__V1__NodeState state, bool force,
                              Dfs__V1__Node **out, char **errmsg)
{
    Dfs__V1__SetNodeStateRequest req = DFS__V1__SET_NODE_STATE_REQUEST__INIT;
    req.node_id = (char *)node;
    req.state = state;
    req.force = force;
    Dfs__V1__SetNodeStateResponse *resp = NULL;
    int rc = dfs_meta_call(c->meta, "SetNodeState", &req.base,
                           &dfs__v1__set_node_state_response__descriptor, true, &resp, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (out != NULL) {
        *out = resp->node;
        resp->node = NULL;
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return DFS_OK;
}

int dfs_client_token_create(dfs_client *c, Dfs__V1__TokenRole role, const char *name,
                            int64_t ttl_ms, Dfs__V1__CreateTokenResponse **out, char **errmsg)
{
    Dfs__V1__CreateTokenRequest req = DFS__V1__CREATE_TOKEN_REQUEST__INIT;
    req.role = role;
    req.name = (char *)name;
    req.ttl_ms = ttl_ms;
    /* Not idempotent: a retry after a lost answer would make a second token. */
    return dfs_meta_call(c->meta, "CreateToken", &req.base,
                         &dfs__v1__create_token_response__descriptor, false, out, errmsg);
}

int dfs_client_token_create_s3(dfs_client *c, Dfs__V1__TokenRole role, const char *name,
                               int64_t ttl_ms, Dfs__V1__CreateTokenResponse **out, char **errmsg)
{
    Dfs__V1__CreateTokenRequest req = DFS__V1__CREATE_TOKEN_REQUEST__INIT;
    req.role = role;
    req.name = (char *)name;
    req.ttl_ms = ttl_ms;
    req.s3 = true;
    return dfs_meta_call(c->meta, "CreateToken", &req.base,
                         &dfs__v1__create_token_response__descriptor, false, out, errmsg);
}

int dfs_client_s3_signing_key(dfs_client *c, const char *access_key_id, const char *date,
                              const char *region, Dfs__V1__GetSigningKeyResponse **out,
                              char **errmsg)
{
    Dfs__V1__GetSigningKeyRequest req = DFS__V1__GET_SIGNING_KEY_REQUEST__INIT;
    req.access_key_id = (char *)access_key_id;
    req.date = (char *)date;
    req.region = (char *)region;
    req.service = "s3";
    return dfs_meta_call(c->meta, "GetSigningKey", &req.base,
                         &dfs__v1__get_signing_key_response__descriptor, true, out, errmsg);
}

int dfs_client_bucket_create(dfs_client *c, const char *name, const char *token_id, char **errmsg)
{
    Dfs__V1__CreateBucketRequest req = DFS__V1__CREATE_BUCKET_REQUEST__INIT;
    req.name = (char *)name;
    req.token_id = (char *)(token_id != NULL ? token_id : "");
    Dfs__V1__CreateBucketResponse *resp = NULL;
    /* Not retried: a lost answer would turn into ALREADY_EXISTS. */
    int rc = dfs_meta_call(c->meta, "CreateBucket", &req.base,
                           &dfs__v1__create_bucket_response__descriptor, false, &resp, errmsg);
    if (rc == DFS_OK)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

int dfs_client_bucket_delete(dfs_client *c, const char *name, char **errmsg)
{
    Dfs__V1__DeleteBucketRequest req = DFS__V1__DELETE_BUCKET_REQUEST__INIT;
    req.name = (char *)name;
    Dfs__V1__DeleteBucketResponse *resp = NULL;
    int rc = dfs_meta_call(c->meta, "DeleteBucket", &req.base,
                           &dfs__v1__delete_bucket_response__descriptor, false, &resp, errmsg);
    if (rc == DFS_OK)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

int dfs_client_bucket_get(dfs_client *c, const char *name, Dfs__V1__Bucket **out, char **errmsg)
{
    Dfs__V1__GetBucketRequest req = DFS__V1__GET_BUCKET_REQUEST__INIT;
    req.name = (char *)name;
    Dfs__V1__GetBucketResponse *resp = NULL;
    int rc = dfs_meta_call(c->meta, "GetBucket", &req.base,
                           &dfs__v1__get_bucket_response__descriptor, true, &resp, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (resp->bucket == NULL) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return dfs_seterr(errmsg, DFS_EINTERNAL, "GetBucket answered without a bucket");
    }
    if (out != NULL) {
        *out = resp->bucket;
        resp->bucket = NULL;
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return DFS_OK;
}

int dfs_client_buckets(dfs_client *c, Dfs__V1__ListBucketsResponse **out, char **errmsg)
{
    Dfs__V1__ListBucketsRequest req = DFS__V1__LIST_BUCKETS_REQUEST__INIT;
    return dfs_meta_call(c->meta, "ListBuckets", &req.base,
                         &dfs__v1__list_buckets_response__descriptor, true, out, errmsg);
}

int dfs_client_token_revoke(dfs_client *c, const char *id, Dfs__V1__TokenInfo **out, char **errmsg)
{
    Dfs__V1__RevokeTokenRequest req = DFS__V1__REVOKE_TOKEN_REQUEST__INIT;
    req.id = (char *)id;
    Dfs__V1__RevokeTokenResponse *resp = NULL;
    int rc = dfs_meta_call(c->meta, "RevokeToken", &req.base,
                           &dfs__v1__revoke_token_response__descriptor, true, &resp, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (out != NULL) {
        *out = resp->info;
        resp->info = NULL;
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return DFS_OK;
}

int dfs_client_token_list(dfs_client *c, bool all, Dfs__V1__ListTokensResponse **out, char **errmsg)
{
    Dfs__V1__ListTokensRequest req = DFS__V1__LIST_TOKENS_REQUEST__INIT;
    req.all = all;
    return dfs_meta_call(c->meta, "ListTokens", &req.base,
                         &dfs__v1__list_tokens_response__descriptor, true, out, errmsg);
}

int dfs_client_whoami(dfs_client *c, Dfs__V1__TokenInfo **out, char **errmsg)
{
    Dfs__V1__WhoAmIRequest req = DFS__V1__WHO_AM_IREQUEST__INIT;
    Dfs__V1__WhoAmIResponse *resp = NULL;
    int rc = dfs_meta_call(c->meta, "WhoAmI", &req.base, &dfs__v1__who_am_iresponse__descriptor,
                           true, &resp, errmsg);
    if (rc != DFS_OK)
        return rc;
    *out = resp->info;
    resp->info = NULL;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return DFS_OK;
}

int dfs_client_rename(dfs_client *c, const char *from, const char *to, bool replace,
                      uint64_t *moved, char **errmsg)
{
    Dfs__V1__RenameRequest req = DFS__V1__RENAME_REQUEST__INIT;
    req.from = (char *)from;
    req.to = (char *)to;
    req.replace = replace;
    Dfs__V1__RenameResponse *resp = NULL;
    int rc = dfs_meta_call(c->meta, "Rename", &req.base, &dfs__v1__rename_response__descriptor,
                           false, &resp, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (moved != NULL)
        *moved = resp->moved;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return DFS_OK;
}

int dfs_client_stitch(dfs_client *c, const char *path, const char *const *parts, size_t nparts,
                      const struct dfs_client_stitch_opts *opts, Dfs__V1__FileInfo **out,
                      char **errmsg)
{
    Dfs__V1__StitchFileRequest req = DFS__V1__STITCH_FILE_REQUEST__INIT;
    req.path = (char *)path;
    req.parts = (char **)parts;
    req.n_parts = nparts;
    if (opts != NULL && opts->md5 != NULL) {
        req.md5.data = (uint8_t *)opts->md5;
        req.md5.len = 16;
    }
    if (opts != NULL && opts->meta != NULL) {
        req.meta.data = (uint8_t *)opts->meta;
        req.meta.len = opts->meta_len;
    }
    if (opts != NULL) {
        req.if_absent = opts->if_absent;
        if (opts->if_file_id != NULL)
            req.if_file_id = (char *)opts->if_file_id;
    }
    Dfs__V1__StitchFileResponse *resp = NULL;
    int rc = dfs_meta_call(c->meta, "StitchFile", &req.base,
                           &dfs__v1__stitch_file_response__descriptor, false, &resp, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (out != NULL) {
        *out = resp->file;
        resp->file = NULL;
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return DFS_OK;
}

int dfs_client_attrs_set(dfs_client *c, const char *path, const Dfs__V1__PathAttributes *a,
                         bool remove, char **errmsg)
{
    Dfs__V1__SetAttributesRequest req = DFS__V1__SET_ATTRIBUTES_REQUEST__INIT;
    req.path = (char *)path;
    req.attributes = (Dfs__V1__PathAttributes *)a;
    req.remove = remove;
    Dfs__V1__SetAttributesResponse *resp = NULL;
    int rc = dfs_meta_call(c->meta, "SetAttributes", &req.base,
                           &dfs__v1__set_attributes_response__descriptor, true, &resp, errmsg);
    if (rc == DFS_OK)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

int dfs_client_attrs_get(dfs_client *c, const char *path, bool list_dirs,
                         Dfs__V1__GetAttributesResponse **out, char **errmsg)
{
    Dfs__V1__GetAttributesRequest req = DFS__V1__GET_ATTRIBUTES_REQUEST__INIT;
    req.path = (char *)path;
    req.list_dirs = list_dirs;
    return dfs_meta_call(c->meta, "GetAttributes", &req.base,
                         &dfs__v1__get_attributes_response__descriptor, true, out, errmsg);
}

/* ---- metadata replicas ---- */

void dfs_client_replicas_free(struct dfs_client_replica *v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(v[i].address);
        free(v[i].error);
        if (v[i].info != NULL)
            protobuf_c_message_free_unpacked(&v[i].info->base, NULL);
    }
    free(v);
}

/* Append address (copied) to v[0..*n) unless it is there already. */
static int replica_add(struct dfs_client_replica *v, size_t *n, size_t cap, const char *address)
{
    if (address == NULL || address[0] == '\0')
        return DFS_OK;
    for (size_t i = 0; i < *n; i++)
        if (strcmp(v[i].address, address) == 0)
            return DFS_OK;
    if (*n == cap)
        return DFS_OK; /* more than the most members a cluster has: ignore the rest */
    v[*n].address = strdup(address);
    if (v[*n].address == NULL)
        return DFS_ENOMEM;
    (*n)++;
    return DFS_OK;
}

/* Ask the one replica at r->address, filling r->info or r->error. */
static void replica_ask(dfs_client *c, struct dfs_client_replica *r)
{
    struct dfs_rpc_channel_opts copts = {.security = &c->security, .token = c->token};
    dfs_meta *m = NULL;
    char *err = NULL;
    int rc = dfs_meta_open(r->address, c->timeout_ms, &copts, &m, &err);
    if (rc == DFS_OK) {
        Dfs__V1__GetReplicasRequest req = DFS__V1__GET_REPLICAS_REQUEST__INIT;
        rc = dfs_meta_call(m, "GetReplicas", &req.base, &dfs__v1__get_replicas_response__descriptor,
                           false, &r->info, &err);
    }
    dfs_meta_close(m);
    if (rc != DFS_OK) {
        r->info = NULL;
        r->error = err != NULL ? err : strdup(dfs_strerror(rc));
    }
}

/* The most replicas asked: the list given plus the members named (a cluster has at most 16). */
#define REPLICAS_MAX 64

int dfs_client_replicas(dfs_client *c, struct dfs_client_replica **out, size_t *n, char **errmsg)
{
    char **items = NULL;
    size_t nitems = 0;
    int rc = dfs_addr_list_split(dfs_meta_addr(c->meta), &items, &nitems, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_client_replica *v = calloc(REPLICAS_MAX, sizeof *v);
    size_t nv = 0;
    if (v == NULL)
        rc = DFS_ENOMEM;
    for (size_t i = 0; rc == DFS_OK && i < nitems; i++)
        rc = replica_add(v, &nv, REPLICAS_MAX, items[i]);
    dfs_addr_list_free(items);
    /* nv grows as answers name members the list lacks; each is asked in turn. */
    for (size_t i = 0; rc == DFS_OK && i < nv; i++) {
        replica_ask(c, &v[i]);
        const Dfs__V1__GetReplicasResponse *info = v[i].info;
        for (size_t j = 0; rc == DFS_OK && info != NULL && j < info->n_members; j++)
            rc = replica_add(v, &nv, REPLICAS_MAX, info->members[j]->grpc_address);
    }
    if (rc != DFS_OK) {
        dfs_client_replicas_free(v, nv);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    *out = v;
    *n = nv;
    return DFS_OK;
}

int dfs_client_replica_add(dfs_client *c, uint64_t id, const char *raft, const char *grpc,
                           char **errmsg)
{
    Dfs__V1__AddReplicaRequest req = DFS__V1__ADD_REPLICA_REQUEST__INIT;
    req.id = id;
    req.raft_address = (char *)raft;
    req.grpc_address = (char *)grpc;
    Dfs__V1__AddReplicaResponse *resp = NULL;
    int rc = dfs_meta_call(c->meta, "AddReplica", &req.base,
                           &dfs__v1__add_replica_response__descriptor, false, &resp, errmsg);
    if (rc == DFS_OK)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

int dfs_client_replica_remove(dfs_client *c, uint64_t id, char **errmsg)
{
    Dfs__V1__RemoveReplicaRequest req = DFS__V1__REMOVE_REPLICA_REQUEST__INIT;
    req.id = id;
    Dfs__V1__RemoveReplicaResponse *resp = NULL;
    int rc = dfs_meta_call(c->meta, "RemoveReplica", &req.base,
                           &dfs__v1__remove_replica_response__descriptor, false, &resp, errmsg);
    if (rc == DFS_OK)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}
