/* The Metadata service: dfs.v1.Metadata over the catalog and placement, plus background work. */
#include "services/metadata_service.h"

#include "common/arena.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "common/rng.h"
#include "dfs/v1/metadata.pb-c.h"
#include "dfs/v1/storage.pb-c.h"
#include "services/rpc/client.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A channel to one storage node, kept by the background thread for fragment deletions. */
struct node_channel {
    char address[DFS_NODE_ADDRESS_MAX + 1];
    dfs_rpc_channel *ch;
};

/*
 * Bytes the service planned onto a node since the node's last report (least_used's view of free
 * space is the reported free bytes less these). Counted from the report stamped report_ms (the
 * node's last_heartbeat_ms); a newer report brings new figures and starts the count again.
 */
struct reservation {
    char node_id[DFS_ID_HEX + 1];
    int64_t report_ms;
    uint64_t bytes;
};

/* Widths the service places (k replicas, or K+M fragments). */
#define WIDTH_MAX DFS_EC_WIDTH_MAX
static_assert(DFS_REPLICAS_MAX <= WIDTH_MAX, "a replica count is a width");

struct dfs_metadata_service {
    dfs_catalog *cat;
    struct dfs_metadata_config cfg;

    /*
     * Placement: the copysets and buddy groups (loaded from the catalog, synced with the node list
     * on every choice, saved back when they change), the randomness, and the reservations.
     * place_mu guards all of it; handlers run on several threads. Lock order: place_mu, then the
     * catalog's own mutex (saving happens under place_mu).
     */
    pthread_mutex_t place_mu;
    dfs_placement *placement;
    dfs_rng rng;
    struct reservation *reserved; /* sorted by node_id */
    size_t nreserved;
    /* [policy - DFS_POLICY_MIN_COPY][width]: changed in memory, not saved yet (a failed save) */
    bool unsaved[2][WIDTH_MAX + 1];

    /* Background thread; mu/cv guard `stopping` and wake it at once on stop. */
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;

    /* Owned by the background thread (or by a caller of dfs_metadata_service_maintain). */
    struct node_channel *channels;
    size_t nchannels;
};

/* Deletions sent per background round, and how long a failed one waits before the next try. */
#define DELETIONS_PER_ROUND 256
#define DELETION_RETRY_MS   5000
#define DELETE_TIMEOUT_MS   5000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- catalog records -> wire messages (allocated in an arena, freed after the reply) ---- */

static Dfs__V1__Redundancy *redundancy_msg(dfs_arena *a, const struct dfs_redundancy *r)
{
    Dfs__V1__Redundancy *m = dfs_arena_alloc(a, sizeof *m);
    if (m == NULL)
        return NULL;
    dfs__v1__redundancy__init(m);
    m->scheme = (Dfs__V1__Redundancy__Scheme)r->scheme;
    m->replicas = r->replicas;
    m->fragments = r->fragments;
    m->data = r->data;
    m->parity = r->parity;
    return m;
}

static Dfs__V1__Replica *replica_msg(dfs_arena *a, const struct dfs_replica_rec *r)
{
    Dfs__V1__Replica *m = dfs_arena_alloc(a, sizeof *m);
    if (m == NULL)
        return NULL;
    dfs__v1__replica__init(m);
    m->node_id = dfs_arena_strdup(a, r->node_id);
    m->address = dfs_arena_strdup(a, r->address);
    m->node_state = (Dfs__V1__NodeState)r->node_state;
    return m->node_id != NULL && m->address != NULL ? m : NULL;
}

/* A FileInfo; with_layout adds the fragments and their replicas. NULL when out of memory. */
static Dfs__V1__FileInfo *file_msg(dfs_arena *a, const struct dfs_file_rec *f, bool with_layout)
{
    Dfs__V1__FileInfo *m = dfs_arena_alloc(a, sizeof *m);
    if (m == NULL)
        return NULL;
    dfs__v1__file_info__init(m);
    m->path = dfs_arena_strdup(a, f->path);
    m->file_id = dfs_arena_strdup(a, f->file_id);
    m->size = f->size;
    if (f->state == DFS_FILE_COMMITTED) {
        m->sha256.data = dfs_arena_memdup(a, f->sha256, DFS_SHA256_LEN);
        m->sha256.len = DFS_SHA256_LEN;
    }
    m->redundancy = redundancy_msg(a, &f->redundancy);
    m->policy = (Dfs__V1__Policy)f->policy;
    m->state = (Dfs__V1__FileState)f->state;
    m->created_ms = f->created_ms;
    m->committed_ms = f->committed_ms;
    m->fragment_size = f->fragment_size;
    m->cell_size = f->cell_size;
    if (m->path == NULL || m->file_id == NULL || m->redundancy == NULL)
        return NULL;
    if (!with_layout || f->nfragments == 0)
        return m;
    m->fragments = dfs_arena_calloc(a, f->nfragments, sizeof *m->fragments);
    if (m->fragments == NULL)
        return NULL;
    m->n_fragments = f->nfragments;
    for (size_t i = 0; i < f->nfragments; i++) {
        const struct dfs_fragment_rec *fr = &f->fragments[i];
        Dfs__V1__Fragment *fm = dfs_arena_alloc(a, sizeof *fm);
        if (fm == NULL)
            return NULL;
        dfs__v1__fragment__init(fm);
        fm->index = fr->index;
        fm->fragment_id = dfs_arena_strdup(a, fr->fragment_id);
        fm->size = fr->size;
        fm->checksum = fr->checksum;
        fm->replicas = dfs_arena_calloc(a, fr->nreplicas, sizeof *fm->replicas);
        if (fm->fragment_id == NULL || (fr->nreplicas > 0 && fm->replicas == NULL))
            return NULL;
        fm->n_replicas = fr->nreplicas;
        for (size_t r = 0; r < fr->nreplicas; r++)
            if ((fm->replicas[r] = replica_msg(a, &fr->replicas[r])) == NULL)
                return NULL;
        m->fragments[i] = fm;
    }
    return m;
}

static Dfs__V1__Node *node_msg(dfs_arena *a, const struct dfs_node_rec *n)
{
    Dfs__V1__Node *m = dfs_arena_alloc(a, sizeof *m);
    if (m == NULL)
        return NULL;
    dfs__v1__node__init(m);
    m->id = dfs_arena_strdup(a, n->id);
    m->address = dfs_arena_strdup(a, n->address);
    m->zone = dfs_arena_strdup(a, n->zone);
    m->state = (Dfs__V1__NodeState)n->state;
    m->capacity_bytes = n->usage.capacity_bytes;
    m->used_bytes = n->usage.used_bytes;
    m->free_bytes = n->usage.free_bytes;
    m->fragment_count = n->usage.fragment_count;
    m->last_heartbeat_ms = n->last_heartbeat_ms;
    m->registered_ms = n->registered_ms;
    return m->id != NULL && m->address != NULL && m->zone != NULL ? m : NULL;
}

/* Reply with a message built in the arena, then free the arena. */
static void reply_and_free(dfs_rpc_call *call, dfs_arena *a, const ProtobufCMessage *resp)
{
    if (resp == NULL)
        dfs_rpc_call_fail(call, DFS_ENOMEM, "out of memory building the response");
    else
        dfs_rpc_call_reply(call, resp);
    dfs_arena_free(a);
}

/* Fail a call with a catalog/placement error and free the message. */
static void fail_and_free(dfs_rpc_call *call, int rc, char *msg)
{
    dfs_rpc_call_finish(call, rc, NULL, msg != NULL ? msg : dfs_strerror(rc));
    free(msg);
}

/* ---- placement ---- */

static int cmp_reservation(const void *key, const void *elem)
{
    return strcmp(key, ((const struct reservation *)elem)->node_id);
}

/* The reservation of a node (NULL when none); a newer report than its count resets it. */
static struct reservation *reservation_of(dfs_metadata_service *svc, const struct dfs_node_rec *n)
{
    if (svc->nreserved == 0) /* bsearch wants a non-NULL array */
        return NULL;
    struct reservation *r =
        bsearch(n->id, svc->reserved, svc->nreserved, sizeof *r, cmp_reservation);
    if (r != NULL && n->last_heartbeat_ms > r->report_ms) {
        r->report_ms = n->last_heartbeat_ms;
        r->bytes = 0;
    }
    return r;
}

/* Count `bytes` more planned onto node n. Out of memory only loses the count (it is a hint). */
static void reserve_bytes(dfs_metadata_service *svc, const struct dfs_node_rec *n, uint64_t bytes)
{
    struct reservation *r = reservation_of(svc, n);
    if (r == NULL) {
        struct reservation *v = realloc(svc->reserved, (svc->nreserved + 1) * sizeof *v);
        if (v == NULL)
            return;
        svc->reserved = v;
        size_t at = 0;
        while (at < svc->nreserved && strcmp(v[at].node_id, n->id) < 0)
            at++;
        memmove(&v[at + 1], &v[at], (svc->nreserved - at) * sizeof *v);
        svc->nreserved++;
        r = &v[at];
        snprintf(r->node_id, sizeof r->node_id, "%s", n->id);
        r->report_ms = n->last_heartbeat_ms;
        r->bytes = 0;
    }
    r->bytes = r->bytes > UINT64_MAX - bytes ? UINT64_MAX : r->bytes + bytes;
}

/* Save family (policy, width) to the catalog; on failure it stays marked unsaved and is retried. */
static void save_family(dfs_metadata_service *svc, enum dfs_policy policy, size_t width)
{
    struct dfs_placement_state *st = NULL;
    char *err = NULL;
    int rc = dfs_placement_export(svc->placement, policy, width, &st, &err);
    if (rc == DFS_OK)
        rc = dfs_catalog_placement_save(svc->cat, st, now_ms(), &err);
    bool *unsaved = &svc->unsaved[policy - DFS_POLICY_MIN_COPY][width];
    if (rc == DFS_OK) {
        size_t members = 0;
        for (size_t i = 0; i < st->nsets; i++)
            members += st->sets[i].nnodes;
        dfs_log(DFS_LOG_INFO,
                "placement sets saved policy=%s width=%zu sets=%zu slots=%zu param=%" PRIu32
                " perms=%" PRIu32,
                dfs_placement_policy_name(policy), width, st->nsets, members, st->param,
                st->nperms);
        *unsaved = false;
    } else {
        dfs_log(DFS_LOG_WARN,
                "cannot save placement sets, will retry policy=%s width=%zu err=\"%s\"",
                dfs_placement_policy_name(policy), width, err != NULL ? err : dfs_strerror(rc));
        *unsaved = true;
    }
    dfs_placement_states_free(st, 1);
    free(err);
}

/*
 * Choose req->k nodes among the catalog's nodes for a placement of req->width (see
 * dfs_placement_request; req->policy resolved). Alive nodes are writable; dead, draining and
 * decommissioned ones have left (their copysets and groups are repaired); suspect ones stay in
 * their sets without taking anything. least_used sees each node's reported free space less what
 * was planned onto it since; `bytes` is then counted against every chosen node. out receives node
 * ids (pointers into nodes[]); *fell_back (may be NULL) tells whether a min_copy/buddy choice had
 * to leave the copyset or group (req->fallback).
 */
static int choose_nodes(dfs_metadata_service *svc, const struct dfs_placement_request *req,
                        uint64_t bytes, const struct dfs_node_rec *nodes, size_t nnodes,
                        const char **out, bool *fell_back, char **errmsg)
{
    size_t width = req->width != 0 ? req->width : req->k;
    if (width > WIDTH_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "placement of %zu nodes is above %d", width,
                          WIDTH_MAX);
    struct dfs_placement_node *cand = calloc(nnodes + 1, sizeof *cand);
    size_t *idx = calloc(req->k + 1, sizeof *idx);
    if (cand == NULL || idx == NULL) {
        free(cand);
        free(idx);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&svc->place_mu);
    for (size_t i = 0; i < nnodes; i++) {
        const struct dfs_node_rec *n = &nodes[i];
        const struct reservation *r = reservation_of(svc, n);
        uint64_t held = r != NULL ? r->bytes : 0;
        cand[i].id = n->id;
        cand[i].zone = n->zone;
        cand[i].free_bytes = n->usage.free_bytes > held ? n->usage.free_bytes - held : 0;
        cand[i].writable = n->state == DFS_NODE_ALIVE;
        cand[i].gone = n->state == DFS_NODE_DEAD || n->state == DFS_NODE_DRAINING ||
                       n->state == DFS_NODE_DECOMMISSIONED;
    }
    bool changed = false;
    int rc = dfs_placement_sync(svc->placement, req->policy, width, cand, nnodes, &svc->rng,
                                &changed, errmsg);
    if (rc == DFS_OK && dfs_placement_policy_has_sets(req->policy) &&
        (changed || svc->unsaved[req->policy - DFS_POLICY_MIN_COPY][width]))
        save_family(svc, req->policy, width);
    struct dfs_placement_outcome oc = {0};
    if (rc == DFS_OK)
        rc = dfs_placement_choose(svc->placement, req, cand, nnodes, &svc->rng, idx, &oc, errmsg);
    if (rc == DFS_OK) {
        for (size_t i = 0; i < req->k; i++) {
            out[i] = nodes[idx[i]].id;
            reserve_bytes(svc, &nodes[idx[i]], bytes);
        }
        if (fell_back != NULL)
            *fell_back = oc.fallback;
    }
    pthread_mutex_unlock(&svc->place_mu);
    free(cand);
    free(idx);
    return rc;
}

/* Load the copysets and buddy groups the catalog keeps (at start). Failures are logged only. */
static void load_placement(dfs_metadata_service *svc)
{
    struct dfs_placement_state *v = NULL;
    size_t n = 0;
    char *err = NULL;
    if (dfs_catalog_placement_load(svc->cat, &v, &n, &err) != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "cannot load placement sets, they will be built again err=\"%s\"",
                err);
        free(err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct dfs_placement_state *st = &v[i];
        if (dfs_placement_import(svc->placement, st, &err) != DFS_OK) {
            dfs_log(DFS_LOG_WARN,
                    "cannot use saved placement sets, they will be built again policy=%s "
                    "width=%" PRIu32 " err=\"%s\"",
                    dfs_placement_policy_name(st->policy), st->width, err);
            free(err);
            err = NULL;
            continue;
        }
        dfs_log(DFS_LOG_INFO, "placement sets loaded policy=%s width=%" PRIu32 " sets=%zu",
                dfs_placement_policy_name(st->policy), st->width, st->nsets);
    }
    dfs_placement_states_free(v, n);
}

/* ---- handlers: nodes ---- */

static void usage_from(struct dfs_node_usage *u, uint64_t cap, uint64_t used, uint64_t free_b,
                       uint64_t frags)
{
    u->capacity_bytes = cap;
    u->used_bytes = used;
    u->free_bytes = free_b;
    u->fragment_count = frags;
}

static void handle_register_node(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__RegisterNodeRequest *req =
        (const Dfs__V1__RegisterNodeRequest *)dfs_rpc_call_request(call);
    struct dfs_node_usage u;
    usage_from(&u, req->capacity_bytes, req->used_bytes, req->free_bytes, req->fragment_count);
    char *err = NULL;
    int rc = dfs_catalog_node_register(svc->cat, req->node_id, req->address, req->zone, &u,
                                       now_ms(), &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    Dfs__V1__RegisterNodeResponse resp = DFS__V1__REGISTER_NODE_RESPONSE__INIT;
    resp.heartbeat_interval_ms = svc->cfg.heartbeat_interval_ms;
    dfs_rpc_call_reply(call, &resp.base);
}

static void handle_heartbeat(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__HeartbeatRequest *req =
        (const Dfs__V1__HeartbeatRequest *)dfs_rpc_call_request(call);
    struct dfs_node_usage u;
    usage_from(&u, req->capacity_bytes, req->used_bytes, req->free_bytes, req->fragment_count);
    bool known = false;
    char *err = NULL;
    int rc = dfs_catalog_node_heartbeat(svc->cat, req->node_id, &u, now_ms(), &known, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    Dfs__V1__HeartbeatResponse resp = DFS__V1__HEARTBEAT_RESPONSE__INIT;
    resp.known = known;
    resp.heartbeat_interval_ms = svc->cfg.heartbeat_interval_ms;
    dfs_rpc_call_reply(call, &resp.base);
}

static void handle_list_nodes(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    struct dfs_node_rec *nodes = NULL;
    size_t n = 0;
    char *err = NULL;
    int rc = dfs_catalog_nodes_list(svc->cat, &nodes, &n, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__ListNodesResponse resp = DFS__V1__LIST_NODES_RESPONSE__INIT;
    bool ok = true;
    if (n > 0) {
        resp.nodes = dfs_arena_calloc(&a, n, sizeof *resp.nodes);
        ok = resp.nodes != NULL;
        resp.n_nodes = ok ? n : 0;
        for (size_t i = 0; ok && i < n; i++)
            ok = (resp.nodes[i] = node_msg(&a, &nodes[i])) != NULL;
    }
    free(nodes);
    reply_and_free(call, &a, ok ? &resp.base : NULL);
}

/* ---- handlers: files ---- */

/* Fill in the cluster defaults and check the result. */
static int resolve_redundancy(const dfs_metadata_service *svc, const Dfs__V1__Redundancy *in,
                              struct dfs_redundancy *out, char **errmsg)
{
    memset(out, 0, sizeof *out);
    Dfs__V1__Redundancy__Scheme scheme =
        in != NULL ? in->scheme : DFS__V1__REDUNDANCY__SCHEME__SCHEME_UNSPECIFIED;
    if (scheme == DFS__V1__REDUNDANCY__SCHEME__SCHEME_UNSPECIFIED && in != NULL &&
        (in->data != 0 || in->parity != 0))
        scheme = DFS__V1__REDUNDANCY__SCHEME__ERASURE;
    switch (scheme) {
    case DFS__V1__REDUNDANCY__SCHEME__SCHEME_UNSPECIFIED:
    case DFS__V1__REDUNDANCY__SCHEME__REPLICATION:
        out->scheme = DFS_SCHEME_REPLICATION;
        out->replicas = in != NULL && in->replicas != 0 ? in->replicas : svc->cfg.default_replicas;
        out->fragments =
            in != NULL && in->fragments != 0 ? in->fragments : svc->cfg.default_fragments;
        break;
    case DFS__V1__REDUNDANCY__SCHEME__ERASURE:
        out->scheme = DFS_SCHEME_ERASURE;
        out->data = in->data;
        out->parity = in->parity;
        if (in->data == 0)
            return dfs_seterr(errmsg, DFS_EINVAL, "erasure code needs at least 1 data fragment");
        break;
    default:
        return dfs_seterr(errmsg, DFS_EINVAL, "unknown redundancy scheme %d", (int)scheme);
    }
    return dfs_catalog_redundancy_check(out, errmsg);
}

static int resolve_policy(const dfs_metadata_service *svc, Dfs__V1__Policy in, enum dfs_policy *out,
                          char **errmsg)
{
    if (in == DFS__V1__POLICY__POLICY_UNSPECIFIED) {
        *out = svc->cfg.default_policy;
        return DFS_OK;
    }
    if ((int)in < DFS_POLICY_RANDOM || (int)in > DFS_POLICY_LEAST_USED)
        return dfs_seterr(errmsg, DFS_EINVAL, "unknown placement policy %d", (int)in);
    *out = (enum dfs_policy)in;
    return DFS_OK;
}

/*
 * The erasure-code layout of a file of `size` bytes over K data fragments: stripes of K cells, cell i
 * of a stripe in data fragment i, every fragment the same size (the last stripe is padded with zeros,
 * which get drops). Files above K MiB use 1 MiB cells, so a cell is exactly one wire chunk; smaller
 * files are one stripe whose cell is ceil(size / K) rounded up to 64 bytes (the SIMD width ISA-L
 * likes), so a 1-byte file stores K+M cells of 64 bytes, not of 1 MiB.
 */
#define EC_CELL_MAX (1u << 20)

static void erasure_layout(uint64_t size, uint32_t k, uint32_t *cell, uint64_t *fragment_size)
{
    if (size <= (uint64_t)k * EC_CELL_MAX) {
        uint64_t c = size == 0 ? 1 : (size + k - 1) / k; /* an empty file: one 64-byte cell */
        *cell = (uint32_t)((c + 63) / 64 * 64);
        *fragment_size = *cell;
    } else {
        *cell = EC_CELL_MAX;
        *fragment_size =
            (size + (uint64_t)k * EC_CELL_MAX - 1) / ((uint64_t)k * EC_CELL_MAX) * EC_CELL_MAX;
    }
}

/* How many times a create or replace is planned again when the node list changed underneath. */
#define PLAN_ATTEMPTS 3

static void handle_create_file(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__CreateFileRequest *req =
        (const Dfs__V1__CreateFileRequest *)dfs_rpc_call_request(call);
    char *err = NULL, *path = NULL;
    struct dfs_redundancy red;
    enum dfs_policy policy = DFS_POLICY_UNSPECIFIED;
    int rc = dfs_path_canon(req->path, &path, &err);
    if (rc == DFS_OK)
        rc = resolve_redundancy(svc, req->redundancy, &red, &err);
    if (rc == DFS_OK)
        rc = resolve_policy(svc, req->policy, &policy, &err);
    if (rc == DFS_OK && req->size > (uint64_t)INT64_MAX)
        rc = dfs_seterr(&err, DFS_EINVAL, "file size %" PRIu64 " is too large", req->size);
    if (rc != DFS_OK) {
        free(path);
        fail_and_free(call, rc, err);
        return;
    }

    uint32_t nfrag = dfs_catalog_redundancy_fragments(&red);
    size_t k = dfs_catalog_redundancy_copies(&red);
    uint64_t fragment_size;
    uint32_t cell_size = 0;
    if (red.scheme == DFS_SCHEME_ERASURE)
        erasure_layout(req->size, red.data, &cell_size, &fragment_size);
    else /* F contiguous pieces of ceil(size / F) bytes; the last ones may be shorter. */
        fragment_size = (req->size + nfrag - 1) / nfrag;
    /* How many nodes one placement picks: k copies of a fragment, or the K+M fragments of a file. */
    size_t width = red.scheme == DFS_SCHEME_ERASURE ? nfrag : k;
    struct dfs_plan_fragment *plan = calloc(nfrag, sizeof *plan);
    const char **targets = calloc((size_t)nfrag * k, sizeof *targets);
    struct dfs_file_rec *created = NULL;
    if (plan == NULL || targets == NULL)
        rc = dfs_seterr(&err, DFS_ENOMEM, "out of memory");
    for (int attempt = 0; rc == DFS_OK && attempt < PLAN_ATTEMPTS; attempt++) {
        struct dfs_node_rec *nodes = NULL;
        size_t nnodes = 0;
        rc = dfs_catalog_nodes_list(svc->cat, &nodes, &nnodes, &err);
        for (uint32_t i = 0; rc == DFS_OK && i < nfrag; i++) {
            uint64_t start = (uint64_t)i * fragment_size;
            plan[i].index = i;
            if (red.scheme == DFS_SCHEME_ERASURE)
                plan[i].size = fragment_size;
            else if (start >= req->size)
                plan[i].size = 0;
            else
                plan[i].size =
                    req->size - start < fragment_size ? req->size - start : fragment_size;
            plan[i].node_ids = &targets[(size_t)i * k];
            plan[i].nnodes = k;
            /* Replication places each fragment's k copies; erasure code places all K+M fragments
               at once, on distinct nodes, fragment i on the i-th node chosen. */
            struct dfs_placement_request preq = {.policy = policy, .k = width, .width = width};
            if (red.scheme != DFS_SCHEME_ERASURE || i == 0)
                rc = choose_nodes(svc, &preq, plan[i].size, nodes, nnodes, &targets[(size_t)i * k],
                                  NULL, &err);
        }
        if (rc == DFS_OK) {
            struct dfs_create_req creq = {
                .path = path,
                .size = req->size,
                .redundancy = red,
                .policy = policy,
                .overwrite = req->overwrite,
                .fragment_size = fragment_size,
                .cell_size = cell_size,
                .expires_ms = now_ms() + svc->cfg.pending_timeout_ms,
                .fragments = plan,
                .nfragments = nfrag,
            };
            rc = dfs_catalog_file_create(svc->cat, &creq, now_ms(), &created, &err);
        }
        free(nodes);
        /* A planned node stopped being alive meanwhile: plan again with the new list. */
        if (rc != DFS_EABORTED)
            break;
        if (attempt + 1 < PLAN_ATTEMPTS) {
            free(err);
            err = NULL;
            rc = DFS_OK;
        }
    }
    free(plan);
    free(targets);
    free(path);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__CreateFileResponse resp = DFS__V1__CREATE_FILE_RESPONSE__INIT;
    resp.file = file_msg(&a, created, true);
    resp.expires_ms = created->expires_ms;
    dfs_catalog_file_rec_free(created);
    reply_and_free(call, &a, resp.file != NULL ? &resp.base : NULL);
}

static void handle_replace_target(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__ReplaceTargetRequest *req =
        (const Dfs__V1__ReplaceTargetRequest *)dfs_rpc_call_request(call);
    char *err = NULL;
    struct dfs_replica_rec chosen;
    int rc = DFS_OK;
    for (int attempt = 0; attempt < PLAN_ATTEMPTS; attempt++) {
        struct dfs_file_rec *f = NULL;
        struct dfs_node_rec *nodes = NULL;
        size_t nnodes = 0;
        rc = dfs_catalog_file_get_id(svc->cat, req->file_id, &f, &err);
        if (rc == DFS_OK && f->state != DFS_FILE_PENDING)
            rc = dfs_seterr(&err, DFS_EPRECOND, "file %s is already committed", req->file_id);
        if (rc == DFS_OK && req->fragment_index >= f->nfragments)
            rc = dfs_seterr(&err, DFS_EINVAL, "file %s has no fragment %" PRIu32, req->file_id,
                            req->fragment_index);
        if (rc == DFS_OK)
            rc = dfs_catalog_nodes_list(svc->cat, &nodes, &nnodes, &err);
        if (rc == DFS_OK) {
            const struct dfs_fragment_rec *fr = &f->fragments[req->fragment_index];
            bool erasure = f->redundancy.scheme == DFS_SCHEME_ERASURE;
            /* Placed: the nodes of this placement (the fragment's targets; for erasure code, the
               nodes of every fragment of the file), so min_copy and buddy keep the survivors'
               copyset or group and zones are spread. Excluded: the nodes that failed this
               fragment, and the one failing now. */
            size_t cap = fr->nreplicas + fr->nfailed + 1;
            if (erasure)
                for (size_t i = 0; i < f->nfragments; i++)
                    cap += f->fragments[i].nreplicas;
            const char **placed = calloc(cap, sizeof *placed);
            const char **exclude = calloc(cap, sizeof *exclude);
            size_t np = 0, ne = 0;
            if (placed == NULL || exclude == NULL) {
                rc = dfs_seterr(&err, DFS_ENOMEM, "out of memory");
            } else {
                for (size_t i = 0; !erasure && i < fr->nreplicas; i++)
                    placed[np++] = fr->replicas[i].node_id;
                for (size_t i = 0; erasure && i < f->nfragments; i++)
                    for (size_t r = 0; r < f->fragments[i].nreplicas; r++)
                        placed[np++] = f->fragments[i].replicas[r].node_id;
                for (size_t i = 0; i < fr->nfailed; i++)
                    exclude[ne++] = fr->failed_node_ids[i];
                exclude[ne++] = req->failed_node_id;
                struct dfs_placement_request preq = {
                    .policy = f->policy,
                    .k = 1,
                    .width = erasure ? f->nfragments : f->redundancy.replicas,
                    .placed = placed,
                    .nplaced = np,
                    .exclude = exclude,
                    .nexclude = ne,
                    .fallback = true,
                };
                const char *node = NULL;
                bool fell_back = false;
                rc = choose_nodes(svc, &preq, fr->size, nodes, nnodes, &node, &fell_back, &err);
                if (rc == DFS_OK && fell_back)
                    dfs_log(DFS_LOG_WARN,
                            "replacement target outside the %s of the surviving copies "
                            "file=%s fragment=%" PRIu32 " failed=%s new=%s policy=%s",
                            f->policy == DFS_POLICY_MIN_COPY ? "copyset" : "buddy group",
                            req->file_id, req->fragment_index, req->failed_node_id, node,
                            dfs_placement_policy_name(f->policy));
                if (rc == DFS_OK)
                    rc = dfs_catalog_file_replace_target(svc->cat, req->file_id,
                                                         req->fragment_index, req->failed_node_id,
                                                         node, now_ms(), &chosen, &err);
            }
            free(placed);
            free(exclude);
        }
        free(nodes);
        dfs_catalog_file_rec_free(f);
        if (rc != DFS_EABORTED || attempt + 1 == PLAN_ATTEMPTS)
            break;
        free(err);
        err = NULL;
    }
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__ReplaceTargetResponse resp = DFS__V1__REPLACE_TARGET_RESPONSE__INIT;
    resp.replica = replica_msg(&a, &chosen);
    reply_and_free(call, &a, resp.replica != NULL ? &resp.base : NULL);
}

static void handle_commit_file(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__CommitFileRequest *req =
        (const Dfs__V1__CommitFileRequest *)dfs_rpc_call_request(call);
    if (req->sha256.len != DFS_SHA256_LEN) {
        dfs_rpc_call_fail(call, DFS_EINVAL, "sha256 must be %d bytes, not %zu", DFS_SHA256_LEN,
                          req->sha256.len);
        return;
    }
    struct dfs_commit_fragment *frags = calloc(req->n_fragments + 1, sizeof *frags);
    if (frags == NULL) {
        dfs_rpc_call_fail(call, DFS_ENOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < req->n_fragments; i++) {
        const Dfs__V1__CommitFragment *cf = req->fragments[i];
        frags[i].index = cf->index;
        frags[i].size = cf->size;
        frags[i].checksum = cf->checksum;
        frags[i].node_ids = (const char *const *)cf->node_ids;
        frags[i].nnodes = cf->n_node_ids;
    }
    struct dfs_file_rec *f = NULL;
    char *err = NULL;
    int rc = dfs_catalog_file_commit(svc->cat, req->file_id, req->sha256.data, frags,
                                     req->n_fragments, now_ms(), &f, &err);
    free(frags);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__CommitFileResponse resp = DFS__V1__COMMIT_FILE_RESPONSE__INIT;
    resp.file = file_msg(&a, f, true);
    dfs_catalog_file_rec_free(f);
    reply_and_free(call, &a, resp.file != NULL ? &resp.base : NULL);
}

static void handle_abort_file(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__AbortFileRequest *req =
        (const Dfs__V1__AbortFileRequest *)dfs_rpc_call_request(call);
    char *err = NULL;
    int rc = dfs_catalog_file_abort(svc->cat, req->file_id, now_ms(), &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    Dfs__V1__AbortFileResponse resp = DFS__V1__ABORT_FILE_RESPONSE__INIT;
    dfs_rpc_call_reply(call, &resp.base);
}

/* Canonicalise a request's path, or fail the call. Returns the path (caller frees) or NULL. */
static char *request_path(dfs_rpc_call *call, const char *in)
{
    char *path = NULL, *err = NULL;
    int rc = dfs_path_canon(in, &path, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return NULL;
    }
    return path;
}

static void handle_get_file(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__GetFileRequest *req =
        (const Dfs__V1__GetFileRequest *)dfs_rpc_call_request(call);
    char *path = request_path(call, req->path);
    if (path == NULL)
        return;
    struct dfs_file_rec *f = NULL;
    char *err = NULL;
    int rc = dfs_catalog_file_get(svc->cat, path, &f, &err);
    free(path);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__GetFileResponse resp = DFS__V1__GET_FILE_RESPONSE__INIT;
    resp.file = file_msg(&a, f, true);
    dfs_catalog_file_rec_free(f);
    reply_and_free(call, &a, resp.file != NULL ? &resp.base : NULL);
}

static void handle_list_files(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__ListFilesRequest *req =
        (const Dfs__V1__ListFilesRequest *)dfs_rpc_call_request(call);
    char *prefix = NULL, *err = NULL;
    int rc = dfs_path_prefix_canon(req->prefix, &prefix, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    /* The page token is the path of the last file of the previous page. */
    struct dfs_file_rec *files = NULL;
    size_t n = 0;
    bool more = false;
    rc = dfs_catalog_files_list(svc->cat, prefix, req->page_token, req->page_size, &files, &n,
                                &more, &err);
    free(prefix);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__ListFilesResponse resp = DFS__V1__LIST_FILES_RESPONSE__INIT;
    bool ok = true;
    if (n > 0) {
        resp.files = dfs_arena_calloc(&a, n, sizeof *resp.files);
        ok = resp.files != NULL;
        resp.n_files = ok ? n : 0;
        for (size_t i = 0; ok && i < n; i++)
            ok = (resp.files[i] = file_msg(&a, &files[i], false)) != NULL;
        if (ok && more)
            ok = (resp.next_page_token = dfs_arena_strdup(&a, files[n - 1].path)) != NULL;
    }
    dfs_catalog_file_recs_free(files, n);
    reply_and_free(call, &a, ok ? &resp.base : NULL);
}

static void handle_delete_file(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__DeleteFileRequest *req =
        (const Dfs__V1__DeleteFileRequest *)dfs_rpc_call_request(call);
    char *path = request_path(call, req->path);
    if (path == NULL)
        return;
    struct dfs_file_rec *f = NULL;
    char *err = NULL;
    int rc = dfs_catalog_file_delete(svc->cat, path, now_ms(), &f, &err);
    free(path);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__DeleteFileResponse resp = DFS__V1__DELETE_FILE_RESPONSE__INIT;
    resp.file = file_msg(&a, f, false);
    dfs_catalog_file_rec_free(f);
    reply_and_free(call, &a, resp.file != NULL ? &resp.base : NULL);
    /* Send the deletions now rather than at the next round. */
    pthread_mutex_lock(&svc->mu);
    pthread_cond_signal(&svc->cv);
    pthread_mutex_unlock(&svc->mu);
}

static void handle_stat(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    struct dfs_catalog_stats st;
    char *err = NULL;
    int rc = dfs_catalog_stats(svc->cat, &st, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    Dfs__V1__StatResponse resp = DFS__V1__STAT_RESPONSE__INIT;
    resp.files = st.files;
    resp.logical_bytes = st.logical_bytes;
    resp.stored_bytes = st.stored_bytes;
    resp.nodes_alive = st.nodes_alive;
    resp.nodes_suspect = st.nodes_suspect;
    resp.nodes_dead = st.nodes_dead;
    resp.nodes_draining = st.nodes_draining;
    resp.nodes_decommissioned = st.nodes_decommissioned;
    resp.pending_files = st.pending_files;
    resp.pending_deletions = st.pending_deletions;
    resp.schema_version = st.schema_version;
    dfs_rpc_call_reply(call, &resp.base);
}

/* ---- background work ---- */

static dfs_rpc_channel *node_channel(dfs_metadata_service *svc, const char *address)
{
    for (size_t i = 0; i < svc->nchannels; i++)
        if (strcmp(svc->channels[i].address, address) == 0)
            return svc->channels[i].ch;
    struct node_channel *c = realloc(svc->channels, (svc->nchannels + 1) * sizeof *c);
    if (c == NULL)
        return NULL;
    svc->channels = c;
    dfs_rpc_channel *ch = NULL;
    if (dfs_rpc_channel_create(address, &ch, NULL) != DFS_OK)
        return NULL;
    snprintf(c[svc->nchannels].address, sizeof c[svc->nchannels].address, "%s", address);
    c[svc->nchannels].ch = ch;
    svc->nchannels++;
    return ch;
}

static void send_deletions(dfs_metadata_service *svc)
{
    struct dfs_deletion_rec *items = NULL;
    size_t n = 0;
    char *err = NULL;
    if (dfs_catalog_deletions_fetch(svc->cat, now_ms(), DELETIONS_PER_ROUND, &items, &n, &err) !=
        DFS_OK) {
        dfs_log(DFS_LOG_WARN, "cannot read the deletion queue err=\"%s\"", err);
        free(err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        dfs_rpc_channel *ch = node_channel(svc, items[i].address);
        Dfs__V1__DeleteFragmentRequest req = DFS__V1__DELETE_FRAGMENT_REQUEST__INIT;
        req.fragment_id = items[i].fragment_id;
        ProtobufCMessage *resp = NULL;
        int rc = ch == NULL ? DFS_ENOMEM
                            : dfs_rpc_unary(ch, "/dfs.v1.Storage/DeleteFragment", &req.base,
                                            &dfs__v1__delete_fragment_response__descriptor, &resp,
                                            DELETE_TIMEOUT_MS, &err);
        if (rc == DFS_OK) {
            protobuf_c_message_free_unpacked(resp, NULL);
            dfs_catalog_deletion_done(svc->cat, items[i].fragment_id, items[i].node_id, NULL);
            dfs_log(DFS_LOG_DEBUG, "fragment removed id=%s node=%s", items[i].fragment_id,
                    items[i].node_id);
        } else {
            dfs_log(DFS_LOG_WARN, "cannot remove fragment, will retry id=%s node=%s err=\"%s\"",
                    items[i].fragment_id, items[i].node_id, err != NULL ? err : dfs_strerror(rc));
            dfs_catalog_deletion_postpone(svc->cat, items[i].fragment_id, items[i].node_id,
                                          now_ms() + DELETION_RETRY_MS, NULL);
        }
        free(err);
        err = NULL;
    }
    free(items);
}

void dfs_metadata_service_maintain(dfs_metadata_service *svc)
{
    char *err = NULL;
    int64_t now = now_ms();
    if (dfs_catalog_nodes_sweep(svc->cat, now, svc->cfg.suspect_after_ms, svc->cfg.dead_after_ms,
                                NULL, NULL, &err) != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "liveness sweep failed err=\"%s\"", err);
        free(err);
        err = NULL;
    }
    if (dfs_catalog_files_expire(svc->cat, now, NULL, &err) != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "pending expiry failed err=\"%s\"", err);
        free(err);
        err = NULL;
    }
    send_deletions(svc);
}

static void *background_main(void *arg)
{
    dfs_metadata_service *svc = arg;
    pthread_mutex_lock(&svc->mu);
    while (!svc->stopping) {
        pthread_mutex_unlock(&svc->mu);
        dfs_metadata_service_maintain(svc);
        pthread_mutex_lock(&svc->mu);
        if (svc->stopping)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + (svc->cfg.maintenance_interval_ms % 1000) * 1000000;
        until.tv_sec += svc->cfg.maintenance_interval_ms / 1000 + ns / 1000000000;
        until.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&svc->cv, &svc->mu, &until);
    }
    pthread_mutex_unlock(&svc->mu);
    return NULL;
}

/* ---- life cycle ---- */

int dfs_metadata_service_create(dfs_catalog *cat, const struct dfs_metadata_config *cfg,
                                dfs_metadata_service **out, char **errmsg)
{
    dfs_metadata_service *svc = calloc(1, sizeof *svc);
    if (svc == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    svc->cat = cat;
    svc->cfg = *cfg;
    struct dfs_metadata_config *c = &svc->cfg;
    if (c->default_replicas == 0)
        c->default_replicas = 3;
    if (c->default_fragments == 0)
        c->default_fragments = 4;
    if (c->default_policy == DFS_POLICY_UNSPECIFIED)
        c->default_policy = DFS_POLICY_RANDOM;
    if (c->heartbeat_interval_ms == 0)
        c->heartbeat_interval_ms = 1000;
    if (c->suspect_after_ms == 0)
        c->suspect_after_ms = 5000;
    if (c->dead_after_ms == 0)
        c->dead_after_ms = 30000;
    if (c->pending_timeout_ms == 0)
        c->pending_timeout_ms = 3600 * 1000;
    if (c->maintenance_interval_ms == 0)
        c->maintenance_interval_ms = 500;
    struct dfs_redundancy def = {.scheme = DFS_SCHEME_REPLICATION,
                                 .replicas = c->default_replicas,
                                 .fragments = c->default_fragments};
    int rc = dfs_catalog_redundancy_check(&def, errmsg);
    if (rc == DFS_OK && (c->suspect_after_ms <= 0 || c->dead_after_ms < c->suspect_after_ms))
        rc = dfs_seterr(errmsg, DFS_EINVAL,
                        "the dead timeout must not be shorter than the suspect one");
    struct dfs_placement_config pcfg = {.scatter_width = c->scatter_width,
                                        .group_size = c->group_size};
    if (rc == DFS_OK)
        rc = dfs_placement_create(&pcfg, &svc->placement, errmsg);
    if (rc != DFS_OK) {
        free(svc);
        return rc;
    }
    if (c->seed != 0)
        dfs_rng_seed(&svc->rng, c->seed);
    else
        c->seed = dfs_rng_seed_random(&svc->rng);
    dfs_log(DFS_LOG_INFO,
            "placement seeded seed=%" PRIu64 " default_policy=%s scatter_width=%" PRIu32
            " group_size=%" PRIu32,
            c->seed, dfs_placement_policy_name(c->default_policy), c->scatter_width, c->group_size);
    load_placement(svc);
    pthread_mutex_init(&svc->place_mu, NULL);
    pthread_mutex_init(&svc->mu, NULL);
    pthread_cond_init(&svc->cv, NULL);
    *out = svc;
    return DFS_OK;
}

int dfs_metadata_service_register(dfs_metadata_service *svc, dfs_rpc_server *srv, char **errmsg)
{
    const struct dfs_rpc_method methods[] = {
        {"/dfs.v1.Metadata/RegisterNode", DFS_RPC_UNARY,
         &dfs__v1__register_node_request__descriptor, handle_register_node, svc},
        {"/dfs.v1.Metadata/Heartbeat", DFS_RPC_UNARY, &dfs__v1__heartbeat_request__descriptor,
         handle_heartbeat, svc},
        {"/dfs.v1.Metadata/CreateFile", DFS_RPC_UNARY, &dfs__v1__create_file_request__descriptor,
         handle_create_file, svc},
        {"/dfs.v1.Metadata/ReplaceTarget", DFS_RPC_UNARY,
         &dfs__v1__replace_target_request__descriptor, handle_replace_target, svc},
        {"/dfs.v1.Metadata/CommitFile", DFS_RPC_UNARY, &dfs__v1__commit_file_request__descriptor,
         handle_commit_file, svc},
        {"/dfs.v1.Metadata/AbortFile", DFS_RPC_UNARY, &dfs__v1__abort_file_request__descriptor,
         handle_abort_file, svc},
        {"/dfs.v1.Metadata/GetFile", DFS_RPC_UNARY, &dfs__v1__get_file_request__descriptor,
         handle_get_file, svc},
        {"/dfs.v1.Metadata/ListFiles", DFS_RPC_UNARY, &dfs__v1__list_files_request__descriptor,
         handle_list_files, svc},
        {"/dfs.v1.Metadata/DeleteFile", DFS_RPC_UNARY, &dfs__v1__delete_file_request__descriptor,
         handle_delete_file, svc},
        {"/dfs.v1.Metadata/Stat", DFS_RPC_UNARY, &dfs__v1__stat_request__descriptor, handle_stat,
         svc},
        {"/dfs.v1.Metadata/ListNodes", DFS_RPC_UNARY, &dfs__v1__list_nodes_request__descriptor,
         handle_list_nodes, svc},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int rc = dfs_rpc_server_add_method(srv, &methods[i], errmsg);
        if (rc != DFS_OK)
            return rc;
    }
    return DFS_OK;
}

int dfs_metadata_service_start(dfs_metadata_service *svc, char **errmsg)
{
    if (pthread_create(&svc->thread, NULL, background_main, svc) != 0)
        return dfs_seterr(errmsg, DFS_ENOMEM, "cannot start the background thread");
    svc->running = true;
    return DFS_OK;
}

void dfs_metadata_service_destroy(dfs_metadata_service *svc)
{
    if (svc == NULL)
        return;
    if (svc->running) {
        pthread_mutex_lock(&svc->mu);
        svc->stopping = true;
        pthread_cond_signal(&svc->cv);
        pthread_mutex_unlock(&svc->mu);
        pthread_join(svc->thread, NULL);
    }
    for (size_t i = 0; i < svc->nchannels; i++)
        dfs_rpc_channel_destroy(svc->channels[i].ch);
    free(svc->channels);
    dfs_placement_destroy(svc->placement);
    free(svc->reserved);
    pthread_mutex_destroy(&svc->place_mu);
    pthread_mutex_destroy(&svc->mu);
    pthread_cond_destroy(&svc->cv);
    free(svc);
}
