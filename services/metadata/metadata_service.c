/* The Metadata service: dfs.v1.Metadata over the catalog and placement, plus background work. */
#include "services/metadata/metadata_service.h"

#include "common/arena.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "common/rng.h"
#include "dfs/v1/metadata.pb-c.h"
#include "dfs/v1/storage.pb-c.h"
#include "services/rpc/client.h"
#include "services/rpc/loop.h"
#include "services/rpc/pool.h"
#include "services/validate/validate.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/id.h"
#include "common/receipt.h"
#include "common/ticket.h"
#include "common/token.h"
#include "services/daemon/daemon.h"
#include "services/metadata/damage.h"
#include "services/rpc/ticket_pb.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

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

static_assert(DFS_VALIDATE_REPLICAS_MAX == DFS_REPLICAS_MAX, "one replica limit");
static_assert(DFS_VALIDATE_FRAGMENTS_MAX == DFS_FRAGMENTS_MAX, "one fragment limit");
static_assert(DFS_VALIDATE_EC_WIDTH_MAX == DFS_EC_WIDTH_MAX, "one width limit");
static_assert(DFS_VALIDATE_ADDRESS_MAX == DFS_NODE_ADDRESS_MAX, "one address limit");
static_assert(DFS_VALIDATE_ZONE_MAX == DFS_NODE_ZONE_MAX, "one zone limit");

/* Widths the service places (k replicas, or K+M fragments). */
#define WIDTH_MAX DFS_EC_WIDTH_MAX
static_assert(DFS_REPLICAS_MAX <= WIDTH_MAX, "a replica count is a width");

struct dfs_metadata_service {
    dfs_catalog *cat;
    struct dfs_metadata_config cfg;
    /* Signs every ticket (common/ticket.h); made once by the catalog and kept there. */
    uint8_t master_key[DFS_TICKET_KEY_LEN];

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

    /* Background thread; mu/cv guard `stopping` and wake it at once on stop. work_cv wakes the
       repair workers (new work queued, or stop); work_seq counts the wake-ups so a worker that
       was busy when one came does not sleep through it. */
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    pthread_cond_t work_cv;
    uint64_t work_seq;
    /* Read without the lock by calls in flight, which cancel themselves when it turns true. */
    atomic_bool stop_flag;

    /* Repair workers (started by dfs_metadata_service_start). */
    pthread_t *workers;
    size_t nworkers;
    /* Serialises claiming (pick a row, choose its target, mark it running), so two workers never
       race for one row. Lock order: claim_mu, place_mu, the catalog's mutex. */
    pthread_mutex_t claim_mu;
    atomic_uint_fast64_t rep_running, rep_done, rep_failed, rep_bytes;

    /* Channels to storage nodes (deletions, repairs, StatFragment checks), kept for the life of
       the service; the pool's lock is a leaf lock. */
    dfs_rpc_pool *nodes;

    /* Planner state, owned by the background thread (or a caller of maintain). A pass walks the
       catalog in bounded pages; one starts when node states changed, when a handler asked for it
       (plan_kick), or every PLAN_INTERVAL_MS. */
    bool plan_active;
    char plan_cursor[DFS_FRAGMENT_ID_HEX + 1];
    int64_t plan_last_ms;
    uint64_t node_sig;
    atomic_bool plan_kick;
    struct dfs_plan_result plan_sum;
    int64_t rebalance_last_ms;

    /* When this process created the service. A node's silence while no metadata service ran is
       no sign of its death: the liveness sweep counts silence from here at the earliest. */
    int64_t created_ms;

    /* Reported damage: the copies readers reported, waiting for their node's check, and the
       thread that checks them (woken by check_cv, under mu). Counters since start: copies
       reported (by readers and by the nodes themselves) and found damaged (dropped). */
    dfs_damage_queue *damage;
    pthread_t checker;
    bool checker_running;
    pthread_cond_t check_cv;
    atomic_uint_fast64_t damage_reported, damage_confirmed;
};

/* Deletions sent per background round, and how long a failed one waits before the next try. */
#define DELETIONS_PER_ROUND 256
#define DELETION_RETRY_MS   5000
#define DELETE_TIMEOUT_MS   5000

/*
 * Planner: fragments looked at per catalog transaction, the time one round may spend on them
 * (so a 100k-file catalog is walked over a few rounds without stalling the others), and how often
 * a pass starts when nothing changed (it catches what no event announced).
 */
#define PLAN_PAGE          2000
#define PLAN_BUDGET_MS     100
#define PLAN_INTERVAL_MS   5000
#define REBALANCE_EVERY_MS 10000

/*
 * Repairs: a call's deadline is generous for the bytes it moves (at least REPAIR_MIN_RATE), a
 * failed repair waits REPAIR_BACKOFF_MS doubled per attempt up to REPAIR_BACKOFF_MAX_MS, and a
 * worker with nothing to do looks again after REPAIR_IDLE_MS (backed-off rows become due).
 */
#define REPAIR_TIMEOUT_MIN_MS 60000
#define REPAIR_MIN_RATE       (1u << 20)
#define REPAIR_BACKOFF_MS     1000
#define REPAIR_BACKOFF_MAX_MS 300000
#define REPAIR_ATTEMPTS_LOUD  10
#define REPAIR_IDLE_MS        1000
#define REPAIR_POLL_MS        100
#define STAT_TIMEOUT_MS       5000
#define VERIFY_THREADS        16
/* How long a registration waits to learn whether a live node's registered address still
   answers as that node (a copy of its data directory beside it). */
#define PROBE_TIMEOUT_MS      1000

/*
 * Reported damage: copies waiting for a check at most, how long a copy found good is not checked
 * again, and a check's deadline (generous for the bytes the node reads: at least CHECK_MIN_RATE).
 */
#define DAMAGE_QUEUE_MAX     4096
#define DAMAGE_GOOD_FOR_MS   (10 * 60 * 1000)
#define CHECK_TIMEOUT_MIN_MS 30000
#define CHECK_MIN_RATE       (8u << 20)
#define DELETE_GRACE_MS      5000

/* Copies on nodes in these states can be read (GetHealth asks them; repairs copy from them). */
static bool state_readable_node(enum dfs_node_state s)
{
    return s == DFS_NODE_ALIVE || s == DFS_NODE_SUSPECT || s == DFS_NODE_DRAINING;
}

static Dfs__V1__Node **nodes_msgs(dfs_metadata_service *svc, dfs_arena *a,
                                  const struct dfs_node_rec *nodes, size_t n);

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

/*
 * A signed ticket for op on fragment_id at node_id until expires_ms, in the arena; NULL when out
 * of memory (or for ids the catalog would never hold).
 */
static Dfs__V1__Ticket *ticket_msg(const dfs_metadata_service *svc, dfs_arena *a,
                                   enum dfs_ticket_op op, const char *fragment_id,
                                   const char *node_id, int64_t expires_ms)
{
    uint8_t key[DFS_TICKET_KEY_LEN];
    struct dfs_ticket t;
    char *err = NULL;
    int rc = dfs_ticket_node_key(svc->master_key, node_id, key, &err);
    if (rc == DFS_OK)
        rc = dfs_ticket_make(key, op, fragment_id, node_id, expires_ms, &t, &err);
    OPENSSL_cleanse(key, sizeof key);
    if (rc != DFS_OK) {
        dfs_log(DFS_LOG_ERROR, "cannot make a ticket fragment=%s node=%s err=\"%s\"", fragment_id,
                node_id, err != NULL ? err : dfs_strerror(rc));
        free(err);
        return NULL;
    }
    return dfs_ticket_pb(a, &t);
}

/* When tickets handed out now stop working: PUT as the pending file does, the others after the
   configured TTL. */
static int64_t ticket_expiry(const dfs_metadata_service *svc, enum dfs_ticket_op op)
{
    return dfs_clock_wall_ms() +
           (op == DFS_TICKET_PUT ? svc->cfg.pending_timeout_ms : svc->cfg.ticket_ttl_ms);
}

/* A replica; with op != 0, carrying a ticket for op on fragment_id at its node. */
static Dfs__V1__Replica *replica_msg(const dfs_metadata_service *svc, dfs_arena *a,
                                     const struct dfs_replica_rec *r, const char *fragment_id,
                                     int op)
{
    Dfs__V1__Replica *m = dfs_arena_alloc(a, sizeof *m);
    if (m == NULL)
        return NULL;
    dfs__v1__replica__init(m);
    m->node_id = dfs_arena_strdup(a, r->node_id);
    m->address = dfs_arena_strdup(a, r->address);
    m->node_state = (Dfs__V1__NodeState)r->node_state;
    if (op != 0 && (m->ticket = ticket_msg(svc, a, (enum dfs_ticket_op)op, fragment_id, r->node_id,
                                           ticket_expiry(svc, op))) == NULL)
        return NULL;
    return m->node_id != NULL && m->address != NULL ? m : NULL;
}

/*
 * A TICKET_FORWARD (Replica.forward_tickets): `from` (whose key is from_key, or NULL to derive it
 * here) may pass fragment_id on to node `to` at to_address, as long as the plan's put tickets
 * last. NULL when out of memory.
 */
static Dfs__V1__Ticket *forward_ticket_msg(const dfs_metadata_service *svc, dfs_arena *a,
                                           const uint8_t *from_key, const char *fragment_id,
                                           const char *from, const char *to, const char *to_address)
{
    uint8_t key[DFS_TICKET_KEY_LEN];
    struct dfs_ticket t;
    char *err = NULL;
    int rc = DFS_OK;
    if (from_key != NULL)
        memcpy(key, from_key, sizeof key);
    else
        rc = dfs_ticket_node_key(svc->master_key, from, key, &err);
    if (rc == DFS_OK)
        rc = dfs_ticket_make_forward(key, fragment_id, from, to, to_address,
                                     ticket_expiry(svc, DFS_TICKET_PUT), &t, &err);
    OPENSSL_cleanse(key, sizeof key);
    if (rc != DFS_OK) {
        dfs_log(DFS_LOG_ERROR, "cannot make a forward ticket fragment=%s node=%s err=%s",
                fragment_id, from, err != NULL ? err : dfs_strerror(rc));
        free(err);
        return NULL;
    }
    return dfs_ticket_pb(a, &t);
}

/*
 * Chain replication: give every replica of a planned fragment its forward tickets, one to each
 * replica after it in the plan (a chain runs in plan order; it may skip a copy that failed, or
 * start at a later one): k(k-1)/2 per fragment, each node's key derived once. False when out of
 * memory.
 */
static bool add_forward_tickets(const dfs_metadata_service *svc, dfs_arena *a,
                                Dfs__V1__Fragment *fm)
{
    size_t n = fm->n_replicas;
    for (size_t i = 0; n > 1 && i + 1 < n; i++) {
        Dfs__V1__Replica *r = fm->replicas[i];
        uint8_t key[DFS_TICKET_KEY_LEN];
        if (dfs_ticket_node_key(svc->master_key, r->node_id, key, NULL) != DFS_OK)
            return false;
        r->forward_tickets = dfs_arena_calloc(a, n - 1 - i, sizeof *r->forward_tickets);
        for (size_t j = i + 1; r->forward_tickets != NULL && j < n; j++) {
            Dfs__V1__Ticket *t =
                forward_ticket_msg(svc, a, key, fm->fragment_id, r->node_id,
                                   fm->replicas[j]->node_id, fm->replicas[j]->address);
            if (t == NULL)
                break;
            r->forward_tickets[r->n_forward_tickets++] = t;
        }
        OPENSSL_cleanse(key, sizeof key);
        if (r->n_forward_tickets != n - 1 - i)
            return false;
    }
    return true;
}

/*
 * A FileInfo; with_layout adds the fragments and their replicas, and ticket_op (0: none) a
 * ticket for that operation on every replica. NULL when out of memory.
 */
static Dfs__V1__FileInfo *file_msg(const dfs_metadata_service *svc, dfs_arena *a,
                                   const struct dfs_file_rec *f, bool with_layout, int ticket_op)
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
            if ((fm->replicas[r] =
                     replica_msg(svc, a, &fr->replicas[r], fr->fragment_id, ticket_op)) == NULL)
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

/*
 * A request's form failed its check (services/validate/validate.h; rc the check's return): log,
 * answer INVALID_ARGUMENT with the message, free it, and return true. False (nothing done) when rc
 * is 0.
 */
static bool refused(dfs_rpc_call *call, int rc, char **err)
{
    if (rc == DFS_OK)
        return false;
    dfs_rpc_call_reject(call, rc, *err);
    free(*err);
    *err = NULL;
    return true;
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
        rc = dfs_catalog_placement_save(svc->cat, st, dfs_clock_wall_ms(), &err);
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

/*
 * The storage node a call comes from: the node its token is bound to (a node token; any other
 * token is refused). The identity is the token's, never a request's.
 */
static int caller_node(dfs_metadata_service *svc, const dfs_rpc_call *call,
                       struct dfs_token_rec *tok, char **errmsg);
static int check_token(dfs_metadata_service *svc, const dfs_rpc_call *call,
                       struct dfs_token_rec *out, char **errmsg);

/* A fresh registration: random, never 0 nor DFS_CATALOG_KEEP. */
static uint64_t new_registration(void)
{
    uint64_t r = 0;
    while (r == 0 || r == DFS_CATALOG_KEEP)
        if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
            r = (uint64_t)dfs_clock_wall_ms() *
                0x9e3779b97f4a7c15ull; /* RAND_bytes does not fail on Linux */
    return r;
}

/*
 * Whether node_id's process still answers at `address`: a StatFragment with a ticket only that
 * node can check, for a fragment nobody stores. NOT_FOUND (or OK) means the node is there; a
 * refusal (another node at that port), no answer or no listener means it is not. The probe is
 * short (PROBE_TIMEOUT_MS, within the caller's own deadline) and goes over a channel of its own:
 * a cached one may still be backing off from an earlier failure and answer nothing at once.
 */
static bool node_answers_at(dfs_metadata_service *svc, const char *node_id, const char *address,
                            int64_t budget_ms)
{
    static const char nothing[] = "0000000000000000000000000000000000000000";
    struct dfs_rpc_channel_opts o = {.security = svc->cfg.node_security};
    dfs_rpc_channel *ch = NULL;
    if (dfs_rpc_channel_open(address, &o, &ch, NULL) != DFS_OK)
        return false;
    Dfs__V1__StatFragmentRequest req = DFS__V1__STAT_FRAGMENT_REQUEST__INIT;
    req.fragment_id = (char *)nothing;
    dfs_arena a = {0};
    req.ticket =
        ticket_msg(svc, &a, DFS_TICKET_STAT, nothing, node_id, ticket_expiry(svc, DFS_TICKET_STAT));
    ProtobufCMessage *resp = NULL;
    int64_t timeout = budget_ms < PROBE_TIMEOUT_MS ? budget_ms : PROBE_TIMEOUT_MS;
    int rc = req.ticket == NULL ? DFS_ENOMEM
                                : dfs_rpc_unary(ch, "/dfs.v1.Storage/StatFragment", &req.base,
                                                &dfs__v1__stat_fragment_response__descriptor, &resp,
                                                timeout > 100 ? timeout : 100, NULL);
    dfs_arena_free(&a);
    dfs_rpc_channel_destroy(ch);
    if (resp != NULL)
        protobuf_c_message_free_unpacked(resp, NULL);
    return rc == DFS_OK || rc == DFS_ENOTFOUND;
}

/*
 * Register node_id (whose identity the caller proved) at req's address: one id, one live
 * registration. When the node heartbeats within the suspect window at another address and that
 * address still answers as the node, this is a second copy of it (a cloned data directory):
 * DFS_EEXIST, logged. A restart at the same address, or at another once the old one no longer
 * answers as the node, takes over. *registration gets the new registration.
 */
static int register_node(dfs_metadata_service *svc, const dfs_rpc_call *call, const char *node_id,
                         const Dfs__V1__RegisterNodeRequest *req, uint64_t *registration,
                         char **err)
{
    struct dfs_node_rec old;
    int rc = dfs_catalog_node_get(svc->cat, node_id, &old, err);
    if (rc != DFS_OK)
        return rc;
    int64_t now = dfs_clock_wall_ms();
    int64_t silent = now - old.last_heartbeat_ms;
    bool live = old.registration != 0 && silent < svc->cfg.suspect_after_ms &&
                strcmp(old.address, req->address) != 0;
    if (live) {
        int64_t left = dfs_rpc_call_remaining_ms(call);
        if (node_answers_at(svc, node_id, old.address, left / 2)) {
            char *peer = dfs_rpc_call_peer(call);
            dfs_log(DFS_LOG_WARN,
                    "second registration refused: the node is alive elsewhere id=%s address=%s "
                    "registered_address=%s silent_ms=%" PRId64 " peer=%s",
                    node_id, req->address, old.address, silent, peer != NULL ? peer : "-");
            free(peer);
            return dfs_seterr(err, DFS_EEXIST,
                              "node %s is registered and alive at %s (last heartbeat %" PRId64
                              " ms ago); a second registration from %s is refused: is a copy "
                              "of its data directory running? (A restart elsewhere is accepted "
                              "once %s no longer answers as this node.)",
                              node_id, old.address, silent, req->address, old.address);
        }
        dfs_log(DFS_LOG_WARN,
                "registration takes over from an address that no longer answers as the node "
                "id=%s address=%s previous_address=%s silent_ms=%" PRId64,
                node_id, req->address, old.address, silent);
    }
    struct dfs_node_usage u;
    usage_from(&u, req->capacity_bytes, req->used_bytes, req->free_bytes, req->fragment_count);
    *registration = new_registration();
    return dfs_catalog_node_register(svc->cat, node_id, req->address, req->zone, &u, now,
                                     old.registration, *registration, err);
}

/*
 * Enrollment (an enrollment token): register a node id the catalog has never seen, binding the
 * node token the request names to it. The same token again for a known node is the same
 * enrollment (its answer was lost); anything else for a known node is DFS_EPERM.
 */
static int enroll_node(dfs_metadata_service *svc, const dfs_rpc_call *call,
                       const struct dfs_token_rec *by, const Dfs__V1__RegisterNodeRequest *req,
                       uint64_t *registration, char **err)
{
    if (req->node_token_id[0] == '\0')
        return dfs_seterr(err, DFS_EPERM,
                          "token %s (role %s) only enrolls new nodes, each with a node token of "
                          "its own (node_token_id); a node registers with its own token",
                          by->id, dfs_catalog_token_role_name(by->role));
    struct dfs_node_rec old;
    int rc = dfs_catalog_node_get(svc->cat, req->node_id, &old, NULL);
    if (rc == DFS_ENOTFOUND) {
        struct dfs_node_usage u;
        usage_from(&u, req->capacity_bytes, req->used_bytes, req->free_bytes, req->fragment_count);
        *registration = new_registration();
        rc = dfs_catalog_node_enroll(svc->cat, req->node_id, req->node_token_id,
                                     req->node_token_sha256.data, req->address, req->zone, &u,
                                     dfs_clock_wall_ms(), *registration, err);
        if (rc != DFS_EEXIST)
            return rc;
        free(*err);
        *err = NULL; /* enrolled meanwhile, or the token id is taken: as below */
    } else if (rc != DFS_OK) {
        return dfs_seterr(err, rc, "cannot look the node up: the catalog failed");
    }
    struct dfs_token_rec t;
    uint8_t hash[DFS_TOKEN_HASH_LEN];
    rc = dfs_catalog_token_get(svc->cat, req->node_token_id, &t, hash, NULL);
    bool same = rc == DFS_OK && strcmp(t.node_id, req->node_id) == 0 && t.revoked_ms == 0 &&
                CRYPTO_memcmp(hash, req->node_token_sha256.data, sizeof hash) == 0;
    if (!same) {
        char *peer = dfs_rpc_call_peer(call);
        dfs_log(DFS_LOG_WARN,
                "enrollment refused: the node is enrolled already id=%s address=%s token=%s "
                "peer=%s",
                req->node_id, req->address, by->id, peer != NULL ? peer : "-");
        free(peer);
        return dfs_seterr(err, DFS_EPERM,
                          "node %s is enrolled already: it registers with its own node token "
                          "(DATA_DIR/node.token), which an enrollment token cannot stand in for",
                          req->node_id);
    }
    return register_node(svc, call, req->node_id, req, registration, err);
}

static void handle_register_node(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__RegisterNodeRequest *req =
        (const Dfs__V1__RegisterNodeRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_register_node(req, &verr), &verr))
        return;
    struct dfs_token_rec tok;
    char *err = NULL;
    uint64_t registration = 0;
    int rc = check_token(svc, call, &tok, &err);
    if (rc == DFS_OK && tok.role == DFS_ROLE_NODE) {
        if (strcmp(tok.node_id, req->node_id) != 0)
            rc = dfs_seterr(&err, DFS_EPERM, "token %s belongs to node %s, not %s", tok.id,
                            tok.node_id, req->node_id);
        else
            rc = register_node(svc, call, tok.node_id, req, &registration, &err);
    } else if (rc == DFS_OK) {
        rc = enroll_node(svc, call, &tok, req, &registration, &err);
    }
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    Dfs__V1__RegisterNodeResponse resp = DFS__V1__REGISTER_NODE_RESPONSE__INIT;
    resp.heartbeat_interval_ms = svc->cfg.heartbeat_interval_ms;
    resp.registration = registration;
    uint8_t key[DFS_TICKET_KEY_LEN];
    rc = dfs_ticket_node_key(svc->master_key, req->node_id, key, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    resp.ticket_key.data = key;
    resp.ticket_key.len = sizeof key;
    dfs_rpc_call_reply(call, &resp.base);
    OPENSSL_cleanse(key, sizeof key);
}

static void handle_heartbeat(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__HeartbeatRequest *req =
        (const Dfs__V1__HeartbeatRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_heartbeat(req, &verr), &verr))
        return;
    struct dfs_token_rec tok;
    char *err = NULL;
    int rc = caller_node(svc, call, &tok, &err);
    struct dfs_node_usage u;
    usage_from(&u, req->capacity_bytes, req->used_bytes, req->free_bytes, req->fragment_count);
    bool known = false;
    if (rc == DFS_OK)
        rc = dfs_catalog_node_heartbeat(svc->cat, tok.node_id, req->registration, &u,
                                        dfs_clock_wall_ms(), &known, &err);
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
        resp.nodes = nodes_msgs(svc, &a, nodes, n);
        ok = resp.nodes != NULL;
        resp.n_nodes = ok ? n : 0;
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
    char *verr = NULL;
    if (refused(call, dfs_validate_create_file(req, &verr), &verr))
        return;
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
    /* The cluster's defaults may make a layout no node can store, or too large to count. */
    if (refused(call, dfs_validate_file_layout(fragment_size, nfrag, (uint32_t)k, &verr), &verr)) {
        free(path);
        return;
    }
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
                .expires_ms = dfs_clock_wall_ms() + svc->cfg.pending_timeout_ms,
                .fragments = plan,
                .nfragments = nfrag,
            };
            rc = dfs_catalog_file_create(svc->cat, &creq, dfs_clock_wall_ms(), &created, &err);
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
    resp.file = file_msg(svc, &a, created, true, DFS_TICKET_PUT);
    resp.expires_ms = created->expires_ms;
    bool chain = req->chain && created->redundancy.scheme == DFS_SCHEME_REPLICATION;
    for (size_t i = 0; chain && resp.file != NULL && i < resp.file->n_fragments; i++)
        if (!add_forward_tickets(svc, &a, resp.file->fragments[i]))
            resp.file = NULL;
    dfs_catalog_file_rec_free(created);
    reply_and_free(call, &a, resp.file != NULL ? &resp.base : NULL);
}

static void handle_replace_target(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__ReplaceTargetRequest *req =
        (const Dfs__V1__ReplaceTargetRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_replace_target(req, &verr), &verr))
        return;
    char *err = NULL;
    struct dfs_replica_rec chosen;
    /* The fragment's other planned copies (for chain forward tickets), as the plan stood. */
    struct dfs_replica_rec *others = NULL;
    size_t nothers = 0;
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
                                                         node, dfs_clock_wall_ms(), &chosen, &err);
                free(others);
                others = NULL;
                nothers = 0;
                if (rc == DFS_OK && req->chain && !erasure && fr->nreplicas > 0 &&
                    (others = calloc(fr->nreplicas, sizeof *others)) == NULL)
                    rc = dfs_seterr(&err, DFS_ENOMEM, "out of memory");
                for (size_t i = 0; rc == DFS_OK && others != NULL && i < fr->nreplicas; i++)
                    if (strcmp(fr->replicas[i].node_id, req->failed_node_id) != 0 &&
                        strcmp(fr->replicas[i].node_id, chosen.node_id) != 0)
                        others[nothers++] = fr->replicas[i];
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
        free(others);
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__ReplaceTargetResponse resp = DFS__V1__REPLACE_TARGET_RESPONSE__INIT;
    char fragment_id[DFS_FRAGMENT_ID_HEX + 1];
    dfs_fragment_id(req->file_id, req->fragment_index, fragment_id);
    resp.replica = replica_msg(svc, &a, &chosen, fragment_id, DFS_TICKET_PUT);
    /* Chain: forward tickets from the new node to the others, and from each of them to it. */
    bool ok = resp.replica != NULL;
    if (ok && nothers > 0) {
        resp.replica->forward_tickets =
            dfs_arena_calloc(&a, nothers, sizeof *resp.replica->forward_tickets);
        resp.inbound_forward_tickets =
            dfs_arena_calloc(&a, nothers, sizeof *resp.inbound_forward_tickets);
        ok = resp.replica->forward_tickets != NULL && resp.inbound_forward_tickets != NULL;
        for (size_t i = 0; ok && i < nothers; i++) {
            Dfs__V1__Ticket *out = forward_ticket_msg(svc, &a, NULL, fragment_id, chosen.node_id,
                                                      others[i].node_id, others[i].address);
            Dfs__V1__Ticket *in = forward_ticket_msg(svc, &a, NULL, fragment_id, others[i].node_id,
                                                     chosen.node_id, chosen.address);
            ok = out != NULL && in != NULL;
            resp.replica->forward_tickets[resp.replica->n_forward_tickets++] = out;
            resp.inbound_forward_tickets[resp.n_inbound_forward_tickets++] = in;
        }
    }
    free(others);
    reply_and_free(call, &a, ok ? &resp.base : NULL);
}

static void handle_commit_file(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__CommitFileRequest *req =
        (const Dfs__V1__CommitFileRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_commit_file(req, &verr), &verr))
        return;
    static_assert(DFS_SHA256_LEN == 32, "validate_commit_file checks 32 bytes");
    /* Every copy the commit records needs its node's receipt for exactly this fragment, size
       and checksum (common/receipt.h): a client cannot commit copies nobody stored. */
    for (size_t i = 0; i < req->n_fragments; i++) {
        const Dfs__V1__CommitFragment *cf = req->fragments[i];
        char fragment_id[DFS_FRAGMENT_ID_HEX + 1];
        dfs_fragment_id(req->file_id, cf->index, fragment_id);
        for (size_t j = 0; j < cf->n_node_ids; j++) {
            uint8_t key[DFS_TICKET_KEY_LEN];
            char *why = NULL;
            int rc = dfs_ticket_node_key(svc->master_key, cf->node_ids[j], key, &why);
            if (rc == DFS_OK)
                rc = dfs_receipt_check(key, j < cf->n_receipts ? cf->receipts[j].data : NULL,
                                       j < cf->n_receipts ? cf->receipts[j].len : 0, fragment_id,
                                       cf->node_ids[j], cf->size, cf->checksum, &why);
            OPENSSL_cleanse(key, sizeof key);
            if (rc != DFS_OK) {
                char *peer = dfs_rpc_call_peer(call);
                dfs_log(DFS_LOG_WARN,
                        "commit refused: a copy without a valid receipt file=%s fragment=%" PRIu32
                        " node=%s peer=%s",
                        req->file_id, cf->index, cf->node_ids[j], peer != NULL ? peer : "-");
                free(peer);
                dfs_rpc_call_fail(call, DFS_EPRECOND,
                                  "file %s: fragment %" PRIu32
                                  " cannot be committed on node %s: %s (a copy is recorded only "
                                  "with the receipt its node gave for it)",
                                  req->file_id, cf->index, cf->node_ids[j],
                                  why != NULL ? why : dfs_strerror(rc));
                free(why);
                return;
            }
        }
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
                                     req->n_fragments, dfs_clock_wall_ms(), &f, &err);
    free(frags);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__CommitFileResponse resp = DFS__V1__COMMIT_FILE_RESPONSE__INIT;
    resp.file = file_msg(svc, &a, f, true, 0);
    dfs_catalog_file_rec_free(f);
    reply_and_free(call, &a, resp.file != NULL ? &resp.base : NULL);
}

static void handle_abort_file(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__AbortFileRequest *req =
        (const Dfs__V1__AbortFileRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_abort_file(req, &verr), &verr))
        return;
    char *err = NULL;
    int rc = dfs_catalog_file_abort(svc->cat, req->file_id, dfs_clock_wall_ms(), &err);
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
    char *verr = NULL;
    if (refused(call, dfs_validate_get_file(req, &verr), &verr))
        return;
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
    resp.file = file_msg(svc, &a, f, true, DFS_TICKET_GET);
    dfs_catalog_file_rec_free(f);
    reply_and_free(call, &a, resp.file != NULL ? &resp.base : NULL);
}

static void handle_list_files(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__ListFilesRequest *req =
        (const Dfs__V1__ListFilesRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_list_files(req, &verr), &verr))
        return;
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
            ok = (resp.files[i] = file_msg(svc, &a, &files[i], false, 0)) != NULL;
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
    char *verr = NULL;
    if (refused(call, dfs_validate_delete_file(req, &verr), &verr))
        return;
    char *path = request_path(call, req->path);
    if (path == NULL)
        return;
    struct dfs_file_rec *f = NULL;
    char *err = NULL;
    int rc = dfs_catalog_file_delete(svc->cat, path, dfs_clock_wall_ms(), &f, &err);
    free(path);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__DeleteFileResponse resp = DFS__V1__DELETE_FILE_RESPONSE__INIT;
    resp.file = file_msg(svc, &a, f, false, 0);
    dfs_catalog_file_rec_free(f);
    reply_and_free(call, &a, resp.file != NULL ? &resp.base : NULL);
    /* Send the deletions now rather than at the next round. */
    pthread_mutex_lock(&svc->mu);
    pthread_cond_signal(&svc->cv);
    pthread_mutex_unlock(&svc->mu);
}

/* Rename (issue 18): a file or a whole directory, one catalog transaction. */
static void handle_rename(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__RenameRequest *req = (const Dfs__V1__RenameRequest *)dfs_rpc_call_request(call);
    char *from = request_path(call, req->from);
    if (from == NULL)
        return;
    char *to = request_path(call, req->to);
    if (to == NULL) {
        free(from);
        return;
    }
    uint64_t moved = 0;
    char *err = NULL;
    int rc = dfs_catalog_file_rename(svc->cat, from, to, req->replace, dfs_clock_wall_ms(), &moved,
                                     &err);
    free(from);
    free(to);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__RenameResponse resp = DFS__V1__RENAME_RESPONSE__INIT;
    resp.moved = moved;
    reply_and_free(call, &a, &resp.base);
    /* A replaced file's copies: send the deletions now rather than at the next round. */
    pthread_mutex_lock(&svc->mu);
    pthread_cond_signal(&svc->cv);
    pthread_mutex_unlock(&svc->mu);
}

/* Path attributes (issue 18, dfs-mount). */
static void handle_set_attributes(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__SetAttributesRequest *req =
        (const Dfs__V1__SetAttributesRequest *)dfs_rpc_call_request(call);
    char *path = request_path(call, req->path);
    if (path == NULL)
        return;
    char *err = NULL;
    int rc;
    if (req->remove) {
        rc = dfs_catalog_attrs_remove(svc->cat, path, &err);
    } else {
        const Dfs__V1__PathAttributes *in = req->attributes;
        struct dfs_path_attrs a = {0};
        if (in != NULL)
            a = (struct dfs_path_attrs){.is_dir = in->is_dir,
                                        .has_mode = in->has_mode,
                                        .mode = in->mode,
                                        .has_owner = in->has_owner,
                                        .uid = in->uid,
                                        .gid = in->gid,
                                        .has_mtime = in->has_mtime,
                                        .mtime_ms = in->mtime_ms};
        rc = dfs_catalog_attrs_set(svc->cat, path, &a, &err);
    }
    free(path);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__SetAttributesResponse resp = DFS__V1__SET_ATTRIBUTES_RESPONSE__INIT;
    reply_and_free(call, &a, &resp.base);
}

static void handle_get_attributes(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__GetAttributesRequest *req =
        (const Dfs__V1__GetAttributesRequest *)dfs_rpc_call_request(call);
    /* "/" names no file but lists the top's directories */
    bool root = strcmp(req->path, "/") == 0;
    char *path = root ? strdup("/") : request_path(call, req->path);
    if (path == NULL) {
        if (root)
            dfs_rpc_call_fail(call, DFS_ENOMEM, "out of memory");
        return;
    }
    char *err = NULL;
    struct dfs_path_attrs got = {0};
    bool found = false;
    int rc =
        strcmp(path, "/") == 0 ? DFS_OK : dfs_catalog_attrs_get(svc->cat, path, &got, &found, &err);
    char **dirs = NULL;
    size_t ndirs = 0;
    if (rc == DFS_OK && req->list_dirs)
        rc = dfs_catalog_attrs_dirs(svc->cat, path, &dirs, &ndirs, &err);
    free(path);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__GetAttributesResponse resp = DFS__V1__GET_ATTRIBUTES_RESPONSE__INIT;
    Dfs__V1__PathAttributes pa = DFS__V1__PATH_ATTRIBUTES__INIT;
    resp.found = found;
    if (found) {
        pa.is_dir = got.is_dir;
        pa.has_mode = got.has_mode;
        pa.mode = got.mode;
        pa.has_owner = got.has_owner;
        pa.uid = got.uid;
        pa.gid = got.gid;
        pa.has_mtime = got.has_mtime;
        pa.mtime_ms = got.mtime_ms;
        resp.attributes = &pa;
    }
    resp.dirs = dirs;
    resp.n_dirs = ndirs;
    reply_and_free(call, &a, &resp.base);
    for (size_t i = 0; i < ndirs; i++)
        free(dirs[i]);
    free(dirs);
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

/* The pooled channel to a node's address (opened on first use); NULL when it cannot be opened. */
static dfs_rpc_channel *node_channel(dfs_metadata_service *svc, const char *address)
{
    dfs_rpc_channel *found = NULL;
    char *err = NULL;
    int rc = dfs_rpc_pool_get(svc->nodes, address, &found, NULL, &err);
    if (rc != DFS_OK && rc != DFS_ENOMEM)
        dfs_log(DFS_LOG_WARN, "cannot open a channel to a node address=%s err=\"%s\"", address,
                err != NULL ? err : "?");
    free(err);
    return rc == DFS_OK ? found : NULL;
}

static void send_deletions(dfs_metadata_service *svc)
{
    struct dfs_deletion_rec *items = NULL;
    size_t n = 0;
    char *err = NULL;
    int64_t grace = svc->cfg.delete_grace_ms > 0 ? svc->cfg.delete_grace_ms : 0;
    if (dfs_catalog_deletions_fetch(svc->cat, dfs_clock_wall_ms(), grace, DELETIONS_PER_ROUND,
                                    &items, &n, &err) != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "cannot read the deletion queue err=\"%s\"", err);
        free(err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        dfs_rpc_channel *ch = node_channel(svc, items[i].address);
        Dfs__V1__DeleteFragmentRequest req = DFS__V1__DELETE_FRAGMENT_REQUEST__INIT;
        req.fragment_id = items[i].fragment_id;
        dfs_arena a = {0};
        req.ticket = ticket_msg(svc, &a, DFS_TICKET_DELETE, items[i].fragment_id, items[i].node_id,
                                ticket_expiry(svc, DFS_TICKET_DELETE));
        ProtobufCMessage *resp = NULL;
        int rc = ch == NULL || req.ticket == NULL
                     ? DFS_ENOMEM
                     : dfs_rpc_unary(ch, "/dfs.v1.Storage/DeleteFragment", &req.base,
                                     &dfs__v1__delete_fragment_response__descriptor, &resp,
                                     DELETE_TIMEOUT_MS, &err);
        dfs_arena_free(&a);
        if (rc == DFS_OK) {
            protobuf_c_message_free_unpacked(resp, NULL);
            dfs_catalog_deletion_done(svc->cat, items[i].fragment_id, items[i].node_id, NULL);
            dfs_log(DFS_LOG_DEBUG, "fragment removed id=%s node=%s", items[i].fragment_id,
                    items[i].node_id);
        } else {
            dfs_log(DFS_LOG_WARN, "cannot remove fragment, will retry id=%s node=%s err=\"%s\"",
                    items[i].fragment_id, items[i].node_id, err != NULL ? err : dfs_strerror(rc));
            dfs_catalog_deletion_postpone(svc->cat, items[i].fragment_id, items[i].node_id,
                                          dfs_clock_wall_ms() + DELETION_RETRY_MS, NULL);
        }
        free(err);
        err = NULL;
    }
    free(items);
}

/* ---- waking the background thread and the repair workers ---- */

static void wake_background(dfs_metadata_service *svc)
{
    pthread_mutex_lock(&svc->mu);
    pthread_cond_signal(&svc->cv);
    pthread_mutex_unlock(&svc->mu);
}

static void wake_workers(dfs_metadata_service *svc)
{
    pthread_mutex_lock(&svc->mu);
    svc->work_seq++;
    pthread_cond_broadcast(&svc->work_cv);
    pthread_mutex_unlock(&svc->mu);
}

/* Something changed that the planner must look at soon (a node state, a report). */
static void kick_planner(dfs_metadata_service *svc)
{
    atomic_store(&svc->plan_kick, true);
    wake_background(svc);
}

/* ---- the repair planner (background thread) ---- */

/* A digest of every node's id and state: a change starts a planner pass at once. */
static uint64_t node_signature(const struct dfs_node_rec *nodes, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        for (const char *p = nodes[i].id; *p != '\0'; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        h = (h ^ (uint8_t)nodes[i].state) * 1099511628211ull;
    }
    return h;
}

static void plan_add(struct dfs_plan_result *sum, const struct dfs_plan_result *r)
{
    sum->scanned += r->scanned;
    sum->queued += r->queued;
    sum->updated += r->updated;
    sum->dropped += r->dropped;
    sum->lost += r->lost;
    sum->trimmed += r->trimmed;
}

/*
 * One bounded step of the planner: continue the pass in progress (or start one when due) for at
 * most PLAN_BUDGET_MS. Returns true when the pass ended in this step.
 */
static bool plan_step(dfs_metadata_service *svc, int64_t now, bool states_changed, bool unbounded)
{
    bool kick = atomic_exchange(&svc->plan_kick, false);
    if (!svc->plan_active || states_changed || kick) {
        if (!svc->plan_active && !states_changed && !kick && !unbounded &&
            now - svc->plan_last_ms < PLAN_INTERVAL_MS)
            return false;
        svc->plan_active = true;
        svc->plan_cursor[0] = '\0';
        memset(&svc->plan_sum, 0, sizeof svc->plan_sum);
    }
    int64_t until = dfs_clock_wall_ms() + PLAN_BUDGET_MS;
    while (svc->plan_active) {
        struct dfs_plan_result r;
        char *err = NULL;
        if (dfs_catalog_repair_plan(svc->cat, svc->plan_cursor, PLAN_PAGE, dfs_clock_wall_ms(), &r,
                                    &err) != DFS_OK) {
            dfs_log(DFS_LOG_WARN, "repair planner failed, will retry err=\"%s\"", err);
            free(err);
            return false;
        }
        plan_add(&svc->plan_sum, &r);
        memcpy(svc->plan_cursor, r.last, sizeof svc->plan_cursor);
        if (r.queued > 0 || r.updated > 0)
            wake_workers(svc);
        if (r.done) {
            svc->plan_active = false;
            svc->plan_last_ms = now;
            const struct dfs_plan_result *t = &svc->plan_sum;
            if (t->queued + t->dropped + t->trimmed > 0)
                dfs_log(DFS_LOG_INFO,
                        "repair plan pass fragments=%zu queued=%zu reprioritised=%zu dropped=%zu "
                        "lost=%zu surplus_dropped=%zu",
                        t->scanned, t->queued, t->updated, t->dropped, t->lost, t->trimmed);
            return true;
        }
        if (!unbounded && dfs_clock_wall_ms() >= until)
            break;
    }
    return false;
}

int dfs_metadata_service_plan_all(dfs_metadata_service *svc, char **errmsg)
{
    svc->plan_active = false;
    atomic_store(&svc->plan_kick, true);
    if (!plan_step(svc, dfs_clock_wall_ms(), false, true))
        return dfs_seterr(errmsg, DFS_EIO, "the repair planner did not finish (see the log)");
    return DFS_OK;
}

/* ---- rebalancing (background thread) ---- */

static uint64_t copies_bytes_of(const struct dfs_node_copies *v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].node_id, id) == 0)
            return v[i].bytes;
    return 0;
}

static int choose_nodes(dfs_metadata_service *svc, const struct dfs_placement_request *req,
                        uint64_t bytes, const struct dfs_node_rec *nodes, size_t nnodes,
                        const char **out, bool *fell_back, char **errmsg);

/* Nodes of a fragment's copies, sorted into placed (live) and exclude (every holder). */
struct node_lists {
    const char **placed, **exclude;
    size_t nplaced, nexclude;
};

static void node_lists_free(struct node_lists *l)
{
    free(l->placed);
    free(l->exclude);
    memset(l, 0, sizeof *l);
}

/*
 * The placement inputs for a new copy of fragment `index` of f: placed = its live copies (for
 * erasure code: the live copies of the file's other fragments), the anchors; exclude = every
 * other node holding or having held a copy of it (dead, draining ones too), the nodes of `held`
 * (a queued deletion), and for erasure code every other node holding any fragment of the file.
 * Both are avoided by the choice. Pointers borrow from f and held.
 */
static int placement_inputs(const struct dfs_file_rec *f, uint32_t index,
                            char (*held)[DFS_ID_HEX + 1], size_t nheld, struct node_lists *l)
{
    memset(l, 0, sizeof *l);
    bool erasure = f->redundancy.scheme == DFS_SCHEME_ERASURE;
    size_t cap = nheld + 1;
    for (size_t i = 0; i < f->nfragments; i++)
        cap += f->fragments[i].nreplicas;
    l->placed = calloc(cap, sizeof *l->placed);
    l->exclude = calloc(cap, sizeof *l->exclude);
    if (l->placed == NULL || l->exclude == NULL) {
        node_lists_free(l);
        return DFS_ENOMEM;
    }
    for (size_t i = 0; i < f->nfragments; i++) {
        if (!erasure && i != index)
            continue;
        const struct dfs_fragment_rec *fr = &f->fragments[i];
        for (size_t r = 0; r < fr->nreplicas; r++) {
            const struct dfs_replica_rec *rep = &fr->replicas[r];
            bool live = rep->node_state == DFS_NODE_ALIVE || rep->node_state == DFS_NODE_SUSPECT;
            /* A placed node is never chosen; excluding it too would stop it being an anchor
               (placement.h), and the new copy would leave the survivors' copyset or group. */
            if (live && (!erasure || i != index))
                l->placed[l->nplaced++] = rep->node_id;
            else
                l->exclude[l->nexclude++] = rep->node_id;
        }
    }
    for (size_t i = 0; i < nheld; i++)
        l->exclude[l->nexclude++] = held[i];
    return DFS_OK;
}

/*
 * When an alive node records more bytes than the alive nodes' mean by more than the threshold,
 * queue up to rebalance_max moves of its copies to nodes the file's policy allows (inside the
 * copyset or group: no fallback), each only when it strictly reduces the spread (the target ends
 * below where the source was), so repeated checks converge and never ping-pong. Runs only when
 * the repair queue is empty: repairs come first, and the moves queued by one check finish before
 * the next one looks.
 */
static void rebalance_step(dfs_metadata_service *svc, const struct dfs_node_rec *nodes,
                           size_t nnodes)
{
    if (svc->cfg.rebalance_threshold_pct < 0)
        return;
    uint64_t queued = 0, running = 0;
    if (dfs_catalog_repair_counts(svc->cat, &queued, &running, NULL) != DFS_OK ||
        queued + running > 0)
        return;
    struct dfs_node_copies *cp = NULL;
    size_t ncp = 0;
    if (dfs_catalog_node_copies(svc->cat, &cp, &ncp, NULL) != DFS_OK)
        return;
    uint64_t *usage = calloc(nnodes + 1, sizeof *usage);
    size_t alive = 0, fullest = SIZE_MAX;
    long double sum = 0;
    for (size_t i = 0; usage != NULL && i < nnodes; i++) {
        if (nodes[i].state != DFS_NODE_ALIVE)
            continue;
        usage[i] = copies_bytes_of(cp, ncp, nodes[i].id);
        sum += usage[i];
        alive++;
        if (fullest == SIZE_MAX || usage[i] > usage[fullest])
            fullest = i;
    }
    free(cp);
    if (usage == NULL || alive < 2 || usage[fullest] == 0) {
        free(usage);
        return;
    }
    long double mean = sum / alive;
    if ((long double)usage[fullest] <= mean * (1.0L + svc->cfg.rebalance_threshold_pct / 100.0L)) {
        free(usage);
        return;
    }
    const char *from = nodes[fullest].id;
    char(*ids)[DFS_FRAGMENT_ID_HEX + 1] = NULL;
    uint64_t *sizes = NULL;
    size_t n = 0, moves = 0;
    if (dfs_catalog_rebalance_candidates(svc->cat, from, NULL, 4 * svc->cfg.rebalance_max + 16,
                                         &ids, &sizes, &n, NULL) != DFS_OK)
        n = 0;
    for (size_t i = 0; i < n && moves < svc->cfg.rebalance_max; i++) {
        char file_id[DFS_ID_HEX + 1];
        memcpy(file_id, ids[i], DFS_ID_HEX);
        file_id[DFS_ID_HEX] = '\0';
        uint32_t index = (uint32_t)strtoul(ids[i] + DFS_ID_HEX, NULL, 16);
        struct dfs_file_rec *f = NULL;
        struct node_lists l;
        if (dfs_catalog_file_get_id(svc->cat, file_id, &f, NULL) != DFS_OK)
            continue;
        if (index >= f->nfragments || placement_inputs(f, index, NULL, 0, &l) != DFS_OK) {
            dfs_catalog_file_rec_free(f);
            continue;
        }
        /* The moved copy is not an anchor: the others keep the fragment in its set. */
        size_t np = 0;
        for (size_t j = 0; j < l.nplaced; j++)
            if (strcmp(l.placed[j], from) != 0)
                l.placed[np++] = l.placed[j];
        l.nplaced = np;
        bool erasure = f->redundancy.scheme == DFS_SCHEME_ERASURE;
        struct dfs_placement_request req = {
            .policy = f->policy,
            .k = 1,
            .width = erasure ? f->nfragments : f->redundancy.replicas,
            .placed = l.placed,
            .nplaced = l.nplaced,
            .exclude = l.exclude,
            .nexclude = l.nexclude,
            .fallback = false,
        };
        const char *target = NULL;
        if (choose_nodes(svc, &req, sizes[i], nodes, nnodes, &target, NULL, NULL) == DFS_OK) {
            size_t t = 0;
            while (t < nnodes && strcmp(nodes[t].id, target) != 0)
                t++;
            bool queued_one = false;
            if (t < nnodes && usage[t] + sizes[i] < usage[fullest] &&
                dfs_catalog_repair_queue(svc->cat, ids[i], DFS_REPAIR_REBALANCE, from, target,
                                         dfs_clock_wall_ms(), &queued_one, NULL) == DFS_OK &&
                queued_one) {
                usage[t] += sizes[i];
                usage[fullest] -= sizes[i];
                moves++;
            }
        }
        node_lists_free(&l);
        dfs_catalog_file_rec_free(f);
    }
    if (moves > 0) {
        dfs_log(DFS_LOG_INFO,
                "rebalance moves queued from=%s count=%zu mean_bytes=%.0Lf threshold_pct=%" PRId32,
                from, moves, mean, svc->cfg.rebalance_threshold_pct);
        wake_workers(svc);
    }
    free(ids);
    free(sizes);
    free(usage);
}

/* ---- repair dispatch (workers) ---- */

/* One unary call on a worker's own loop, cancelled when the service stops. */
struct pending_call {
    bool finished;
    int status;
    char *message;
    ProtobufCMessage *resp;
};

static void pending_recv(dfs_rpc_ccall *call, void *arg, ProtobufCMessage *msg, int status)
{
    (void)call;
    (void)status;
    struct pending_call *p = arg;
    if (msg != NULL) {
        if (p->resp != NULL)
            protobuf_c_message_free_unpacked(p->resp, NULL);
        p->resp = msg;
    }
}

static void pending_done(dfs_rpc_ccall *call, void *arg, int status, const char *message)
{
    (void)call;
    struct pending_call *p = arg;
    p->finished = true;
    p->status = status;
    p->message = strdup(message);
}

static int unary_cancellable(dfs_metadata_service *svc, dfs_rpc_loop *loop, dfs_rpc_channel *ch,
                             const char *method, const ProtobufCMessage *req,
                             const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                             int64_t timeout_ms, char **errmsg)
{
    struct pending_call p = {0};
    dfs_rpc_ccall *call = NULL;
    int rc = dfs_rpc_ccall_start(loop, ch, method, timeout_ms, pending_done, &p, &call);
    if (rc != DFS_OK)
        return dfs_seterr(errmsg, rc, "cannot start %s", method);
    if (dfs_rpc_ccall_recv(call, desc, pending_recv, &p) != DFS_OK ||
        dfs_rpc_ccall_send(call, req, true, NULL, NULL) != DFS_OK)
        dfs_rpc_ccall_cancel(call);
    bool cancelled = false;
    while (!p.finished) {
        dfs_rpc_loop_run_once(loop, REPAIR_POLL_MS);
        if (!cancelled && !p.finished && atomic_load(&svc->stop_flag)) {
            dfs_rpc_ccall_cancel_with(call, DFS_ECANCELED, "the metadata service is stopping");
            cancelled = true;
        }
    }
    if (p.status == DFS_OK && p.resp == NULL)
        rc = dfs_seterr(errmsg, DFS_EINTERNAL, "%s answered OK without a message", method);
    else if (p.status != DFS_OK)
        rc = dfs_seterr(errmsg, p.status, "%s", p.message != NULL ? p.message : "call failed");
    free(p.message);
    if (rc != DFS_OK) {
        if (p.resp != NULL)
            protobuf_c_message_free_unpacked(p.resp, NULL);
        return rc;
    }
    *resp = p.resp;
    return DFS_OK;
}

static int64_t repair_backoff_ms(uint32_t attempts)
{
    int64_t ms = REPAIR_BACKOFF_MS;
    for (uint32_t i = 1; i < attempts && ms < REPAIR_BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms < REPAIR_BACKOFF_MAX_MS ? ms : REPAIR_BACKOFF_MAX_MS;
}

/* Order of sources: alive copies first, then draining, then suspect ones. */
static int source_rank(enum dfs_node_state s)
{
    return s == DFS_NODE_ALIVE ? 0 : s == DFS_NODE_DRAINING ? 1 : s == DFS_NODE_SUSPECT ? 2 : -1;
}

/* A claimed repair: the task, its target, and the request built for it (arena-allocated). */
struct claimed {
    struct dfs_repair_task task;
    char target[DFS_ID_HEX + 1];
    char address[DFS_NODE_ADDRESS_MAX + 1];
};

/* Choose the target of a task among nodes[]; *out points into nodes. */
static int choose_target(dfs_metadata_service *svc, const struct dfs_repair_task *t,
                         const struct dfs_node_rec *nodes, size_t nnodes,
                         const struct dfs_node_rec **out, char **errmsg)
{
    const struct dfs_file_rec *f = t->file;
    struct node_lists l;
    if (placement_inputs(f, t->index, t->held, t->nheld, &l) != DFS_OK)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    const char *chosen = NULL;
    int rc = DFS_OK;
    /* A rebalance move carries the target the rebalancer checked; keep it while it is usable. */
    if (t->row.reason == DFS_REPAIR_REBALANCE && t->row.target_node[0] != '\0') {
        bool usable = false;
        for (size_t i = 0; i < nnodes; i++)
            if (strcmp(nodes[i].id, t->row.target_node) == 0)
                usable = nodes[i].state == DFS_NODE_ALIVE;
        for (size_t i = 0; usable && i < l.nexclude; i++)
            usable = strcmp(l.exclude[i], t->row.target_node) != 0;
        chosen = usable ? t->row.target_node : NULL;
        if (chosen == NULL)
            rc = dfs_seterr(errmsg, DFS_EPRECOND, "the rebalance target %s is no longer usable",
                            t->row.target_node);
    } else {
        bool erasure = f->redundancy.scheme == DFS_SCHEME_ERASURE;
        struct dfs_placement_request req = {
            .policy = f->policy,
            .k = 1,
            .width = erasure ? f->nfragments : f->redundancy.replicas,
            .placed = l.placed,
            .nplaced = l.nplaced,
            .exclude = l.exclude,
            .nexclude = l.nexclude,
            .fallback = true,
        };
        bool fell_back = false;
        rc = choose_nodes(svc, &req, f->fragments[t->index].size, nodes, nnodes, &chosen,
                          &fell_back, errmsg);
        if (rc == DFS_OK && fell_back)
            dfs_log(DFS_LOG_WARN,
                    "repair target outside the %s of the surviving copies fragment=%s target=%s",
                    f->policy == DFS_POLICY_MIN_COPY ? "copyset" : "buddy group",
                    t->row.fragment_id, chosen);
    }
    for (size_t i = 0; rc == DFS_OK && i < nnodes; i++)
        if (strcmp(nodes[i].id, chosen) == 0)
            *out = &nodes[i];
    node_lists_free(&l);
    return rc;
}

/*
 * Claim the next due repair: pick it, choose its target, mark it running. *found false when
 * nothing is due. A row for which no target can be chosen is backed off (and a rebalance move
 * that lost its target is backed off too; the planner or the next claim drops it once obsolete).
 */
static int claim(dfs_metadata_service *svc, struct claimed *c, bool *found, char **errmsg)
{
    *found = false;
    int rc = DFS_OK;
    pthread_mutex_lock(&svc->claim_mu);
    for (int attempt = 0; attempt < 8 && !*found; attempt++) {
        memset(c, 0, sizeof *c);
        bool any = false;
        rc = dfs_catalog_repair_next(svc->cat, dfs_clock_wall_ms(), &c->task, &any, errmsg);
        if (rc != DFS_OK || !any)
            break;
        struct dfs_node_rec *nodes = NULL;
        size_t nnodes = 0;
        const struct dfs_node_rec *target = NULL;
        char *why = NULL;
        rc = dfs_catalog_nodes_list(svc->cat, &nodes, &nnodes, errmsg);
        if (rc != DFS_OK) {
            dfs_catalog_repair_task_clear(&c->task);
            break;
        }
        int crc = choose_target(svc, &c->task, nodes, nnodes, &target, &why);
        if (crc == DFS_OK) {
            snprintf(c->target, sizeof c->target, "%s", target->id);
            snprintf(c->address, sizeof c->address, "%s", target->address);
            crc = dfs_catalog_repair_start(svc->cat, c->task.row.fragment_id, c->target,
                                           dfs_clock_wall_ms(), &why);
        }
        free(nodes);
        if (crc == DFS_OK) {
            *found = true;
        } else if (crc != DFS_EABORTED) {
            uint32_t attempts = 0;
            dfs_catalog_repair_fail(
                svc->cat, c->task.row.fragment_id, NULL,
                dfs_clock_wall_ms() + repair_backoff_ms(c->task.row.attempts + 1), &attempts, NULL);
            dfs_log(attempts >= REPAIR_ATTEMPTS_LOUD ? DFS_LOG_ERROR : DFS_LOG_WARN,
                    "no repair target, will retry fragment=%s reason=%s attempts=%" PRIu32
                    " err=\"%s\"",
                    c->task.row.fragment_id, dfs_catalog_repair_reason_name(c->task.row.reason),
                    attempts, why != NULL ? why : dfs_strerror(crc));
        }
        free(why);
        if (!*found)
            dfs_catalog_repair_task_clear(&c->task);
    }
    pthread_mutex_unlock(&svc->claim_mu);
    return rc;
}

/* Build the RepairFragment request of a claimed task in arena a; NULL when out of memory. */
static Dfs__V1__RepairFragmentRequest *repair_request(const dfs_metadata_service *svc, dfs_arena *a,
                                                      const struct claimed *c, uint64_t *read_bytes)
{
    const struct dfs_file_rec *f = c->task.file;
    const struct dfs_fragment_rec *fr = &f->fragments[c->task.index];
    Dfs__V1__RepairFragmentRequest *req = dfs_arena_alloc(a, sizeof *req);
    if (req == NULL)
        return NULL;
    dfs__v1__repair_fragment_request__init(req);
    req->fragment_id = dfs_arena_strdup(a, fr->fragment_id);
    req->size = fr->size;
    req->checksum = fr->checksum;
    req->ticket = ticket_msg(svc, a, DFS_TICKET_REPAIR, fr->fragment_id, c->target,
                             ticket_expiry(svc, DFS_TICKET_REPAIR));
    if (req->fragment_id == NULL || req->ticket == NULL)
        return NULL;
    int64_t get_expiry = ticket_expiry(svc, DFS_TICKET_GET);
    *read_bytes = fr->size;
    /* Copy when the fragment itself is readable somewhere (always for replication; a draining
       node's erasure fragment too: cheaper than reading K others), else rebuild it from the
       file's other fragments. An erasure copy that failed once is rebuilt instead (a draining
       node is never swept dead, so it may be down). */
    size_t nsrc = 0;
    for (size_t r = 0; r < fr->nreplicas; r++)
        nsrc += source_rank(fr->replicas[r].node_state) >= 0;
    bool erasure = f->redundancy.scheme == DFS_SCHEME_ERASURE;
    if (!erasure || (nsrc > 0 && c->task.row.attempts == 0)) {
        req->sources = dfs_arena_calloc(a, nsrc + 1, sizeof *req->sources);
        req->source_tickets = dfs_arena_calloc(a, nsrc + 1, sizeof *req->source_tickets);
        if (req->sources == NULL || req->source_tickets == NULL)
            return NULL;
        for (int rank = 0; rank <= 2; rank++) {
            for (size_t r = 0; r < fr->nreplicas; r++) {
                /* A copy reported damaged is not read until its node has checked it. */
                if (source_rank(fr->replicas[r].node_state) != rank ||
                    strcmp(fr->replicas[r].node_id, c->target) == 0 ||
                    dfs_damage_queue_suspect(svc->damage, fr->fragment_id, fr->replicas[r].node_id))
                    continue;
                req->sources[req->n_sources] = dfs_arena_strdup(a, fr->replicas[r].address);
                req->source_tickets[req->n_sources] = ticket_msg(
                    svc, a, DFS_TICKET_GET, fr->fragment_id, fr->replicas[r].node_id, get_expiry);
                if (req->sources[req->n_sources] == NULL ||
                    req->source_tickets[req->n_sources] == NULL)
                    return NULL;
                req->n_sources++;
            }
        }
        req->n_source_tickets = req->n_sources;
        return req;
    }
    Dfs__V1__ErasureRebuild *e = dfs_arena_alloc(a, sizeof *e);
    if (e == NULL)
        return NULL;
    dfs__v1__erasure_rebuild__init(e);
    e->data = f->redundancy.data;
    e->parity = f->redundancy.parity;
    e->cell_size = f->cell_size;
    e->index = c->task.index;
    size_t cap = 0;
    for (size_t i = 0; i < f->nfragments; i++)
        cap += f->fragments[i].nreplicas;
    e->sources = dfs_arena_calloc(a, cap + 1, sizeof *e->sources);
    if (e->sources == NULL)
        return NULL;
    for (int rank = 0; rank <= 2; rank++) {
        for (size_t i = 0; i < f->nfragments; i++) {
            const struct dfs_fragment_rec *o = &f->fragments[i];
            for (size_t r = 0; i != c->task.index && r < o->nreplicas; r++) {
                if (source_rank(o->replicas[r].node_state) != rank ||
                    dfs_damage_queue_suspect(svc->damage, o->fragment_id, o->replicas[r].node_id))
                    continue;
                Dfs__V1__ErasureSource *src = dfs_arena_alloc(a, sizeof *src);
                if (src == NULL)
                    return NULL;
                dfs__v1__erasure_source__init(src);
                src->index = o->index;
                src->fragment_id = dfs_arena_strdup(a, o->fragment_id);
                src->address = dfs_arena_strdup(a, o->replicas[r].address);
                src->ticket = ticket_msg(svc, a, DFS_TICKET_GET, o->fragment_id,
                                         o->replicas[r].node_id, get_expiry);
                src->checksum = o->checksum;
                if (src->fragment_id == NULL || src->address == NULL || src->ticket == NULL)
                    return NULL;
                e->sources[e->n_sources++] = src;
            }
        }
    }
    req->erasure = e;
    *read_bytes = fr->size * (uint64_t)f->redundancy.data;
    return req;
}

/* Dispatch a claimed repair and record its outcome. Returns the outcome. */
static int run_repair(dfs_metadata_service *svc, dfs_rpc_loop *loop, struct claimed *c,
                      char **errmsg)
{
    const struct dfs_fragment_rec *fr = &c->task.file->fragments[c->task.index];
    const char *fid = c->task.row.fragment_id;
    dfs_arena a = {0};
    uint64_t read_bytes = 0;
    Dfs__V1__RepairFragmentRequest *req = repair_request(svc, &a, c, &read_bytes);
    int64_t timeout = (int64_t)(read_bytes / REPAIR_MIN_RATE) * 1000;
    if (timeout < REPAIR_TIMEOUT_MIN_MS)
        timeout = REPAIR_TIMEOUT_MIN_MS;
    dfs_rpc_channel *ch = node_channel(svc, c->address);
    ProtobufCMessage *resp = NULL;
    char *err = NULL;
    int rc = req == NULL || ch == NULL ? dfs_seterr(&err, DFS_ENOMEM, "out of memory") : DFS_OK;
    atomic_fetch_add(&svc->rep_running, 1);
    int64_t start = dfs_clock_wall_ms();
    if (rc == DFS_OK) {
        dfs_log(DFS_LOG_DEBUG, "repair started fragment=%s reason=%s target=%s mode=%s", fid,
                dfs_catalog_repair_reason_name(c->task.row.reason), c->target,
                req->erasure != NULL ? "rebuild" : "copy");
        rc =
            unary_cancellable(svc, loop, ch, "/dfs.v1.Storage/RepairFragment", &req->base,
                              &dfs__v1__repair_fragment_response__descriptor, &resp, timeout, &err);
    }
    atomic_fetch_sub(&svc->rep_running, 1);
    dfs_arena_free(&a);
    if (rc == DFS_OK) {
        const Dfs__V1__RepairFragmentResponse *r = (const Dfs__V1__RepairFragmentResponse *)resp;
        if (r->size != fr->size || r->checksum != fr->checksum)
            rc = dfs_seterr(&err, DFS_EDATALOSS,
                            "node answered %" PRIu64 " bytes checksum %08" PRIx32
                            ", the catalog has %" PRIu64 " bytes checksum %08" PRIx32,
                            r->size, r->checksum, fr->size, fr->checksum);
        if (rc == DFS_OK)
            rc = dfs_catalog_repair_complete(svc->cat, fid, c->target, r->size, r->checksum,
                                             dfs_clock_wall_ms(), &err);
        if (rc == DFS_OK) {
            atomic_fetch_add(&svc->rep_done, 1);
            atomic_fetch_add(&svc->rep_bytes, fr->size);
            dfs_log(DFS_LOG_INFO,
                    "repaired fragment=%s reason=%s target=%s source=\"%s\" bytes=%" PRIu64
                    " ms=%" PRId64,
                    fid, dfs_catalog_repair_reason_name(c->task.row.reason), c->target,
                    r->source != NULL ? r->source : "", fr->size, dfs_clock_wall_ms() - start);
        }
        protobuf_c_message_free_unpacked(resp, NULL);
        if (rc == DFS_ENOTFOUND || rc == DFS_EABORTED) {
            /* The row is gone or not ours: the catalog queued the copy's removal already. */
            atomic_fetch_add(&svc->rep_failed, 1);
            dfs_log(DFS_LOG_INFO, "repair result discarded fragment=%s target=%s err=\"%s\"", fid,
                    c->target, err != NULL ? err : dfs_strerror(rc));
            if (errmsg != NULL) {
                *errmsg = err;
                err = NULL;
            }
            free(err);
            return rc;
        }
    }
    if (rc != DFS_OK) {
        atomic_fetch_add(&svc->rep_failed, 1);
        uint32_t attempts = 0;
        char *ferr = NULL;
        if (dfs_catalog_repair_fail(svc->cat, fid, c->target,
                                    dfs_clock_wall_ms() +
                                        repair_backoff_ms(c->task.row.attempts + 1),
                                    &attempts, &ferr) != DFS_OK) {
            dfs_log(DFS_LOG_ERROR, "cannot record a failed repair fragment=%s err=\"%s\"", fid,
                    ferr);
            free(ferr);
        }
        dfs_log(rc == DFS_ECANCELED                ? DFS_LOG_INFO
                : attempts >= REPAIR_ATTEMPTS_LOUD ? DFS_LOG_ERROR
                                                   : DFS_LOG_WARN,
                "repair failed, will retry fragment=%s reason=%s target=%s attempts=%" PRIu32
                " retry_in_ms=%" PRId64 " err=\"%s\"",
                fid, dfs_catalog_repair_reason_name(c->task.row.reason), c->target, attempts,
                repair_backoff_ms(attempts), err != NULL ? err : dfs_strerror(rc));
        if (errmsg != NULL) {
            *errmsg = err;
            err = NULL;
        }
    }
    free(err);
    return rc;
}

/* Claim and run one repair; *did says whether one was claimed. */
static int repair_one(dfs_metadata_service *svc, dfs_rpc_loop *loop, bool *did, char **errmsg)
{
    struct claimed c;
    bool found = false;
    char *err = NULL;
    int rc = claim(svc, &c, &found, &err);
    *did = found;
    if (rc != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "cannot read the repair queue err=\"%s\"", err);
        if (errmsg != NULL)
            *errmsg = err;
        else
            free(err);
        return rc;
    }
    if (!found)
        return DFS_OK;
    rc = run_repair(svc, loop, &c, errmsg);
    dfs_catalog_repair_task_clear(&c.task);
    /* A finished drain move may have emptied its node; the deletions it queued go out now. */
    wake_background(svc);
    return rc;
}

int dfs_metadata_service_repair_one(dfs_metadata_service *svc, bool *did, char **errmsg)
{
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    if (loop == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    int rc = repair_one(svc, loop, did, errmsg);
    dfs_rpc_loop_destroy(loop);
    return rc;
}

static void *worker_main(void *arg)
{
    dfs_metadata_service *svc = arg;
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    if (loop == NULL) {
        dfs_log(DFS_LOG_ERROR, "repair worker cannot start: out of memory");
        return NULL;
    }
    pthread_mutex_lock(&svc->mu);
    while (!svc->stopping) {
        uint64_t seq = svc->work_seq;
        pthread_mutex_unlock(&svc->mu);
        bool did = false;
        repair_one(svc, loop, &did, NULL);
        pthread_mutex_lock(&svc->mu);
        if (did || svc->stopping || seq != svc->work_seq)
            continue;
        struct timespec until = dfs_clock_abstime(REPAIR_IDLE_MS);
        pthread_cond_timedwait(&svc->work_cv, &svc->mu, &until);
    }
    pthread_mutex_unlock(&svc->mu);
    dfs_rpc_loop_destroy(loop);
    return NULL;
}

void dfs_metadata_service_repair_stats(dfs_metadata_service *svc,
                                       struct dfs_metadata_repair_stats *out)
{
    out->running = atomic_load(&svc->rep_running);
    out->done = atomic_load(&svc->rep_done);
    out->failed = atomic_load(&svc->rep_failed);
    out->bytes = atomic_load(&svc->rep_bytes);
}

void dfs_metadata_service_collect(void *arg, dfs_metrics_writer *w)
{
    dfs_metadata_service *svc = arg;
    struct dfs_metadata_repair_stats st;
    dfs_metadata_service_repair_stats(svc, &st);
    uint64_t queued = 0, running = 0;
    if (dfs_catalog_repair_counts(svc->cat, &queued, &running, NULL) == DFS_OK) {
        dfs_metrics_family(w, "dfs_metadata_repair_queue_length", "gauge",
                           "Fragments in the repair queue, waiting or being repaired.");
        dfs_metrics_sample_u64(w, "dfs_metadata_repair_queue_length", "state=\"queued\"", queued);
        dfs_metrics_sample_u64(w, "dfs_metadata_repair_queue_length", "state=\"running\"", running);
    }
    dfs_metrics_family(w, "dfs_metadata_repairs_total", "counter",
                       "Repair attempts since the service started, by result.");
    dfs_metrics_sample_u64(w, "dfs_metadata_repairs_total", "result=\"done\"", st.done);
    dfs_metrics_sample_u64(w, "dfs_metadata_repairs_total", "result=\"failed\"", st.failed);
    dfs_metrics_counter(w, "dfs_metadata_repair_bytes_total",
                        "Fragment bytes of the copies made by repairs since the service started.",
                        st.bytes);
    dfs_metrics_family(
        w, "dfs_metadata_damaged_copies_total", "counter",
        "Damaged copies since the service started: reported (by readers, repairs, "
        "scrubbers and nodes' reads), and confirmed (dropped and queued for repair).");
    dfs_metrics_sample_u64(w, "dfs_metadata_damaged_copies_total", "state=\"reported\"",
                           atomic_load(&svc->damage_reported));
    dfs_metrics_sample_u64(w, "dfs_metadata_damaged_copies_total", "state=\"confirmed\"",
                           atomic_load(&svc->damage_confirmed));
    dfs_metrics_gauge(w, "dfs_metadata_damage_checks_pending",
                      "Reported copies waiting for their node's check.",
                      (double)dfs_damage_queue_pending(svc->damage));
}

/* ---- handlers: node states, reports, health ---- */

static Dfs__V1__Node *node_msg(dfs_arena *a, const struct dfs_node_rec *n);

/*
 * The placement sets holding each node, as Node.groups entries ("buddy/W#G", "min_copy/W:C"),
 * from the families saved in the catalog. Fills groups[i] / ngroups[i] for nodes[i] in arena a.
 */
static bool node_groups(dfs_metadata_service *svc, dfs_arena *a, const struct dfs_node_rec *nodes,
                        size_t n, char ***groups, size_t *ngroups)
{
    struct dfs_placement_state *st = NULL;
    size_t nst = 0;
    if (dfs_catalog_placement_load(svc->cat, &st, &nst, NULL) != DFS_OK)
        return true; /* groups are informative: leave them out */
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        groups[i] = dfs_arena_calloc(a, nst + 1, sizeof *groups[i]);
        ok = groups[i] != NULL;
        for (size_t f = 0; ok && f < nst; f++) {
            const struct dfs_placement_state *s = &st[f];
            size_t count = 0, which = SIZE_MAX;
            for (size_t j = 0; j < s->nsets; j++)
                for (size_t m = 0; m < s->sets[j].nnodes; m++)
                    if (strcmp(s->sets[j].node_ids[m], nodes[i].id) == 0) {
                        count++;
                        which = j;
                    }
            if (count == 0)
                continue;
            char buf[64];
            if (s->policy == DFS_POLICY_BUDDY)
                snprintf(buf, sizeof buf, "buddy/%" PRIu32 "#%zu", s->width, which);
            else
                snprintf(buf, sizeof buf, "%s/%" PRIu32 ":%zu",
                         dfs_placement_policy_name(s->policy), s->width, count);
            ok = (groups[i][ngroups[i]++] = dfs_arena_strdup(a, buf)) != NULL;
        }
    }
    dfs_placement_states_free(st, nst);
    return ok;
}

/* Node messages with groups and catalog_fragments filled in. */
static Dfs__V1__Node **nodes_msgs(dfs_metadata_service *svc, dfs_arena *a,
                                  const struct dfs_node_rec *nodes, size_t n)
{
    Dfs__V1__Node **v = dfs_arena_calloc(a, n + 1, sizeof *v);
    char ***groups = dfs_arena_calloc(a, n + 1, sizeof *groups);
    size_t *ngroups = dfs_arena_calloc(a, n + 1, sizeof *ngroups);
    if (v == NULL || groups == NULL || ngroups == NULL ||
        !node_groups(svc, a, nodes, n, groups, ngroups))
        return NULL;
    struct dfs_node_copies *cp = NULL;
    size_t ncp = 0;
    if (dfs_catalog_node_copies(svc->cat, &cp, &ncp, NULL) != DFS_OK)
        ncp = 0;
    for (size_t i = 0; i < n; i++) {
        if ((v[i] = node_msg(a, &nodes[i])) == NULL)
            break;
        v[i]->groups = groups[i];
        v[i]->n_groups = groups[i] != NULL ? ngroups[i] : 0;
        for (size_t j = 0; j < ncp; j++)
            if (strcmp(cp[j].node_id, nodes[i].id) == 0)
                v[i]->catalog_fragments = cp[j].copies;
    }
    free(cp);
    for (size_t i = 0; i < n; i++)
        if (v[i] == NULL)
            return NULL;
    return v;
}

/*
 * Whether retiring node `id` now would make files unreadable: the files the health rules
 * (dfs_catalog_health_classify) count as lost with the node decommissioned, beyond those lost
 * already. DFS_EPRECOND when some would be (a k=1 file, a fragment whose other copies are on dead
 * nodes, an erasure-coded file left with fewer than K fragments), naming one; DFS_OK otherwise.
 */
static int check_decommission_loses_nothing(dfs_metadata_service *svc, const char *id,
                                            char **errmsg)
{
    struct dfs_layout *l = NULL;
    struct dfs_health before, after;
    memset(&before, 0, sizeof before);
    memset(&after, 0, sizeof after);
    int rc = dfs_catalog_layout(svc->cat, &l, errmsg);
    size_t node = 0;
    while (rc == DFS_OK && node < l->nnodes && strcmp(l->nodes[node].id, id) != 0)
        node++;
    if (rc != DFS_OK || node == l->nnodes) {
        dfs_catalog_layout_free(l);
        return rc;
    }
    enum dfs_node_state now = l->nodes[node].state;
    rc = dfs_catalog_health_classify(l, NULL, 0, &before, errmsg);
    l->nodes[node].state = DFS_NODE_DECOMMISSIONED;
    if (rc == DFS_OK)
        rc = dfs_catalog_health_classify(l, NULL, 0, &after, errmsg);
    if (rc == DFS_OK && after.lost > before.lost) {
        uint64_t n = after.lost - before.lost;
        /* Once more with the paths, for an example: one lost after and not before. */
        dfs_catalog_health_clear(&after);
        rc = dfs_catalog_health_classify(l, NULL, SIZE_MAX, &after, errmsg);
        l->nodes[node].state = now;
        dfs_catalog_health_clear(&before);
        if (rc == DFS_OK)
            rc = dfs_catalog_health_classify(l, NULL, SIZE_MAX, &before, errmsg);
        const char *example = "";
        for (size_t i = 0; rc == DFS_OK && i < after.nlost_paths && example[0] == '\0'; i++) {
            bool old = false;
            for (size_t j = 0; j < before.nlost_paths && !old; j++)
                old = strcmp(after.lost_paths[i], before.lost_paths[j]) == 0;
            if (!old)
                example = after.lost_paths[i];
        }
        if (rc == DFS_OK)
            rc = dfs_seterr(errmsg, DFS_EPRECOND,
                            "node %s holds the only readable copies of %" PRIu64 " file%s (%s%s): "
                            "drain it first (dfs node drain) so that they are copied elsewhere, "
                            "or decommission it with --force and lose them",
                            id, n, n == 1 ? "" : "s", dfs_quote(example, &(struct dfs_quote){{0}}),
                            n > 1 ? ", ..." : "");
    }
    dfs_catalog_health_clear(&before);
    dfs_catalog_health_clear(&after);
    dfs_catalog_layout_free(l);
    return rc;
}

static void handle_set_node_state(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__SetNodeStateRequest *req =
        (const Dfs__V1__SetNodeStateRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_set_node_state(req, &verr), &verr))
        return;
    struct dfs_node_rec n;
    char *err = NULL;
    int rc = dfs_catalog_node_resolve(svc->cat, req->node_id, &n, &err);
    enum dfs_node_state want = (enum dfs_node_state)req->state;
    if (rc == DFS_OK && want != DFS_NODE_DRAINING && want != DFS_NODE_DECOMMISSIONED &&
        want != DFS_NODE_ALIVE)
        rc = dfs_seterr(&err, DFS_EINVAL,
                        "a node can be set to NODE_DRAINING, NODE_DECOMMISSIONED or NODE_ALIVE, "
                        "not %s",
                        dfs_catalog_node_state_name(want));
    if (rc == DFS_OK && want == DFS_NODE_DRAINING &&
        (n.state == DFS_NODE_DEAD || n.state == DFS_NODE_DECOMMISSIONED))
        rc = dfs_seterr(&err, DFS_EPRECOND, "node %s is %s: %s", n.id,
                        dfs_catalog_node_state_name(n.state),
                        n.state == DFS_NODE_DEAD
                            ? "there is nothing to read from it (its copies are repaired from "
                              "the others); decommission it to retire it"
                            : "set it alive before draining it");
    if (rc == DFS_OK && want == DFS_NODE_ALIVE &&
        (n.state == DFS_NODE_DEAD || n.state == DFS_NODE_SUSPECT))
        rc = dfs_seterr(&err, DFS_EPRECOND,
                        "node %s is %s: heartbeats decide when it is alive again", n.id,
                        dfs_catalog_node_state_name(n.state));
    if (rc == DFS_OK && want == DFS_NODE_DECOMMISSIONED && n.state != want && !req->force)
        rc = check_decommission_loses_nothing(svc, n.id, &err);
    if (rc == DFS_OK && n.state != want) {
        rc = dfs_catalog_node_set_state(svc->cat, n.id, want, &err);
        if (rc == DFS_OK)
            dfs_log(DFS_LOG_INFO, "node state changed by operator id=%s address=%s from=%s to=%s",
                    n.id, n.address, dfs_catalog_node_state_name(n.state),
                    dfs_catalog_node_state_name(want));
    }
    /* A drained node with nothing on it retires at once. */
    if (rc == DFS_OK && want == DFS_NODE_DRAINING)
        rc = dfs_catalog_nodes_finish_drains(svc->cat, NULL, &err);
    if (rc == DFS_OK)
        rc = dfs_catalog_node_get(svc->cat, n.id, &n, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    kick_planner(svc);
    dfs_arena a = {0};
    Dfs__V1__SetNodeStateResponse resp = DFS__V1__SET_NODE_STATE_RESPONSE__INIT;
    Dfs__V1__Node **v = nodes_msgs(svc, &a, &n, 1);
    resp.node = v != NULL ? v[0] : NULL;
    reply_and_free(call, &a, resp.node != NULL ? &resp.base : NULL);
}

/*
 * Ask a node about a copy: 1 (it holds it with this size and checksum), 0 (NOT_FOUND), 2 (it holds
 * something else under that id), or a negative code (could not tell).
 */
static int stat_copy(dfs_metadata_service *svc, const char *node_id, const char *address,
                     const char *fragment_id, uint64_t size, uint32_t checksum, bool check_content,
                     char **errmsg)
{
    dfs_rpc_channel *ch = node_channel(svc, address);
    if (ch == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    Dfs__V1__StatFragmentRequest req = DFS__V1__STAT_FRAGMENT_REQUEST__INIT;
    req.fragment_id = (char *)fragment_id;
    dfs_arena a = {0};
    req.ticket = ticket_msg(svc, &a, DFS_TICKET_STAT, fragment_id, node_id,
                            ticket_expiry(svc, DFS_TICKET_STAT));
    if (req.ticket == NULL) {
        dfs_arena_free(&a);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    ProtobufCMessage *resp = NULL;
    int rc =
        dfs_rpc_unary(ch, "/dfs.v1.Storage/StatFragment", &req.base,
                      &dfs__v1__stat_fragment_response__descriptor, &resp, STAT_TIMEOUT_MS, errmsg);
    dfs_arena_free(&a);
    if (rc == DFS_ENOTFOUND)
        return 0;
    if (rc != DFS_OK)
        return rc;
    const Dfs__V1__StatFragmentResponse *r = (const Dfs__V1__StatFragmentResponse *)resp;
    bool same = !check_content || (r->size == size && r->checksum == checksum);
    protobuf_c_message_free_unpacked(resp, NULL);
    return same ? 1 : 2;
}

/* A damaged copy reported by its own node (reported: always; confirmed: when it was dropped). */
static void damage_counted(dfs_metadata_service *svc, bool marked)
{
    atomic_fetch_add(&svc->damage_reported, 1);
    if (marked)
        atomic_fetch_add(&svc->damage_confirmed, 1);
}

static void handle_report_fragments(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__ReportFragmentsRequest *req =
        (const Dfs__V1__ReportFragmentsRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_report_fragments(req, &verr), &verr))
        return;
    struct dfs_node_rec node;
    struct dfs_token_rec tok;
    char *err = NULL;
    int rc = caller_node(svc, call, &tok, &err);
    if (rc == DFS_OK)
        rc = dfs_catalog_node_get(svc->cat, tok.node_id, &node, &err);
    if (rc == DFS_OK && node.registration != req->registration)
        rc = dfs_seterr(&err, DFS_EPRECOND,
                        "node %s was registered again since (now at %s): this process was "
                        "replaced, its report is not taken",
                        node.id, node.address);
    uint32_t marked_lost = 0, mismatched = 0;
    size_t unknown = 0;
    int64_t now = dfs_clock_wall_ms();
    for (size_t i = 0; rc == DFS_OK && i < req->n_corrupt; i++) {
        bool marked = false;
        rc = dfs_catalog_report_corrupt(svc->cat, node.id, req->corrupt[i], now, &marked, &err);
        marked_lost += marked;
        damage_counted(svc, marked);
    }
    /* Copies the node found missing on a read that named them: a delete or a repair may have
       changed things since, so only a recorded copy the node confirms absent is lost. */
    for (size_t i = 0; rc == DFS_OK && i < req->n_missing; i++) {
        bool recorded = false, marked = false;
        rc = dfs_catalog_copy_get(svc->cat, req->missing[i], node.id, &recorded, NULL, NULL, &err);
        if (rc != DFS_OK || !recorded)
            continue;
        char *serr = NULL;
        int there = stat_copy(svc, node.id, node.address, req->missing[i], 0, 0, false, &serr);
        if (there == 0)
            rc = dfs_catalog_report_missing(svc->cat, node.id, req->missing[i], dfs_clock_wall_ms(),
                                            &marked, &err);
        else if (there < 0)
            dfs_log(DFS_LOG_WARN, "cannot confirm a missing copy, kept fragment=%s node=%s err=%s",
                    req->missing[i], node.id, serr != NULL ? serr : dfs_strerror(there));
        free(serr);
        marked_lost += marked;
        damage_counted(svc, marked);
    }
    /* The scrubber read these whole and every block matched its CRC: what they hold must also be
       what the catalog says (a copy rewritten consistently with other data passes its own
       checks, and only this comparison tells it from the catalog's). */
    for (size_t i = 0; rc == DFS_OK && i < req->n_scrubbed; i++) {
        const Dfs__V1__FragmentSum *f = req->scrubbed[i];
        bool recorded = false, marked = false;
        uint64_t size = 0;
        uint32_t sum = 0;
        rc = dfs_catalog_copy_get(svc->cat, f->fragment_id, node.id, &recorded, &size, &sum, &err);
        if (rc != DFS_OK || !recorded || (f->size == size && f->checksum == sum))
            continue;
        dfs_log(DFS_LOG_WARN,
                "scrubbed copy differs from the catalog fragment=%s node=%s size=%" PRIu64
                " checksum=%08" PRIx32 " catalog_size=%" PRIu64 " catalog_checksum=%08" PRIx32,
                f->fragment_id, node.id, f->size, f->checksum, size, sum);
        rc = dfs_catalog_report_corrupt(svc->cat, node.id, f->fragment_id, dfs_clock_wall_ms(),
                                        &marked, &err);
        mismatched += marked;
        marked_lost += marked;
        damage_counted(svc, marked);
    }
    if (rc == DFS_OK && req->full)
        rc = dfs_catalog_inventory_page(svc->cat, node.id, req->page,
                                        (const char *const *)req->present, req->n_present, now,
                                        &err);
    if (rc == DFS_OK && req->full && req->last) {
        char(*missing)[DFS_FRAGMENT_ID_HEX + 1] = NULL;
        size_t nmissing = 0;
        rc = dfs_catalog_inventory_missing(svc->cat, node.id, &missing, &nmissing, &err);
        /* A put may have committed after the node listed its directory: ask before marking. */
        for (size_t i = 0; rc == DFS_OK && i < nmissing; i++) {
            char *serr = NULL;
            int there = stat_copy(svc, node.id, node.address, missing[i], 0, 0, false, &serr);
            bool marked = false;
            if (there == 0)
                rc = dfs_catalog_report_missing(svc->cat, node.id, missing[i], dfs_clock_wall_ms(),
                                                &marked, &err);
            else if (there < 0)
                dfs_log(DFS_LOG_WARN,
                        "inventory: cannot confirm a missing copy, kept fragment=%s node=%s "
                        "err=\"%s\"",
                        missing[i], node.id, serr != NULL ? serr : dfs_strerror(there));
            marked_lost += marked;
            free(serr);
        }
        free(missing);
        if (rc == DFS_OK)
            rc = dfs_catalog_inventory_finish(svc->cat, node.id, dfs_clock_wall_ms(), &unknown,
                                              &err);
    }
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    if (marked_lost > 0 || unknown > 0) {
        dfs_log(DFS_LOG_INFO,
                "fragment report node=%s corrupt=%zu missing=%zu scrubbed=%zu mismatched=%" PRIu32
                " marked_lost=%" PRIu32 " unknown=%zu",
                node.id, req->n_corrupt, req->n_missing, req->n_scrubbed, mismatched, marked_lost,
                unknown);
        wake_workers(svc);
        kick_planner(svc);
    }
    Dfs__V1__ReportFragmentsResponse resp = DFS__V1__REPORT_FRAGMENTS_RESPONSE__INIT;
    resp.marked_lost = marked_lost;
    resp.unknown = (uint32_t)unknown;
    resp.mismatched = mismatched;
    dfs_rpc_call_reply(call, &resp.base);
}

/* ---- reported damage: readers' reports, checked by the copies' nodes ---- */

/*
 * Whether m is a TICKET_GET the service made, for the node and fragment it names, not expired:
 * the proof that the reporter could read that copy. *t receives it.
 */
static int read_ticket(const dfs_metadata_service *svc, const Dfs__V1__Ticket *m,
                       struct dfs_ticket *t, char **err)
{
    uint8_t key[DFS_TICKET_KEY_LEN];
    int rc = dfs_ticket_from_pb(m, t, err);
    if (rc == DFS_OK)
        rc = dfs_ticket_node_key(svc->master_key, t->node_id, key, err);
    if (rc == DFS_OK)
        rc = dfs_ticket_check(key, t, DFS_TICKET_GET, t->fragment_id, t->node_id,
                              dfs_clock_wall_ms(), err);
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

static void handle_report_damage(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__ReportDamageRequest *req =
        (const Dfs__V1__ReportDamageRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_report_damage(req, &verr), &verr))
        return;
    uint32_t accepted = 0, ignored = 0, bad_tickets = 0;
    char *why = NULL;
    for (size_t i = 0; i < req->n_copies; i++) {
        const Dfs__V1__DamagedCopy *c = req->copies[i];
        struct dfs_ticket t;
        char *terr = NULL;
        if (read_ticket(svc, c->ticket, &t, &terr) != DFS_OK) {
            bad_tickets++;
            if (why == NULL)
                dfs_seterr(&why, DFS_EPERM, "copies[%zu]: %s", i,
                           terr != NULL ? terr : "bad ticket");
            free(terr);
            continue;
        }
        enum dfs_damage_added a = dfs_damage_queue_add(
            svc->damage, t.fragment_id, t.node_id, (int)c->damage, c->detail, dfs_clock_wall_ms());
        if (a != DFS_DAMAGE_QUEUED) {
            ignored++;
            continue;
        }
        accepted++;
        atomic_fetch_add(&svc->damage_reported, 1);
        char *peer = dfs_rpc_call_peer(call);
        struct dfs_damage_item shown;
        snprintf(shown.detail, sizeof shown.detail, "%s", c->detail);
        for (char *p = shown.detail; *p != '\0'; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f || *p == '"' || *p == '\\')
                *p = '?';
        dfs_log(DFS_LOG_WARN,
                "damage reported, checking with the node fragment=%s node=%s damage=%s "
                "reporter=%s detail=%s",
                t.fragment_id, t.node_id,
                protobuf_c_enum_descriptor_get_value(&dfs__v1__damage__descriptor, (int)c->damage)
                    ->name,
                peer != NULL ? peer : "unknown", shown.detail);
        free(peer);
    }
    if (bad_tickets == req->n_copies) {
        /* Nothing but forgeries, expired or foreign tickets: say so. */
        char *peer = dfs_rpc_call_peer(call);
        dfs_log(DFS_LOG_WARN, "damage report refused peer=%s err=%s",
                peer != NULL ? peer : "unknown", why != NULL ? why : "");
        free(peer);
        dfs_rpc_call_finish(call, DFS_EPERM, NULL, why != NULL ? why : "no valid ticket");
        free(why);
        return;
    }
    free(why);
    if (accepted > 0) {
        pthread_mutex_lock(&svc->mu);
        pthread_cond_broadcast(&svc->check_cv);
        pthread_mutex_unlock(&svc->mu);
    }
    Dfs__V1__ReportDamageResponse resp = DFS__V1__REPORT_DAMAGE_RESPONSE__INIT;
    resp.accepted = accepted;
    resp.ignored = ignored + bad_tickets;
    dfs_rpc_call_reply(call, &resp.base);
}

/*
 * Check one reported copy with its node: StatFragment with verify reads all of it there. The
 * node's answer decides: the catalog's size and checksum (good: the report is not believed), or
 * another size or checksum, DATA_LOSS, NOT_FOUND (bad: the copy is dropped and its repair
 * queued, as a scrubber's report would). A node that cannot answer leaves the copy as it is.
 */
static enum dfs_damage_verdict check_copy(dfs_metadata_service *svc, dfs_rpc_loop *loop,
                                          const struct dfs_damage_item *it)
{
    bool recorded = false;
    uint64_t size = 0;
    uint32_t sum = 0;
    struct dfs_node_rec node;
    char *err = NULL;
    int rc =
        dfs_catalog_copy_get(svc->cat, it->fragment_id, it->node_id, &recorded, &size, &sum, &err);
    if (rc == DFS_OK && !recorded) {
        dfs_log(DFS_LOG_INFO, "reported copy no longer recorded, not checked fragment=%s node=%s",
                it->fragment_id, it->node_id);
        return DFS_DAMAGE_UNKNOWN;
    }
    if (rc == DFS_OK)
        rc = dfs_catalog_node_get(svc->cat, it->node_id, &node, &err);
    if (rc == DFS_OK && !state_readable_node(node.state))
        rc = dfs_seterr(&err, DFS_EUNAVAIL, "the node is %s",
                        dfs_catalog_node_state_name(node.state));
    dfs_rpc_channel *ch = rc == DFS_OK ? node_channel(svc, node.address) : NULL;
    if (rc == DFS_OK && ch == NULL)
        rc = dfs_seterr(&err, DFS_ENOMEM, "out of memory");
    ProtobufCMessage *resp = NULL;
    if (rc == DFS_OK) {
        Dfs__V1__StatFragmentRequest req = DFS__V1__STAT_FRAGMENT_REQUEST__INIT;
        req.fragment_id = (char *)it->fragment_id;
        req.verify = true;
        dfs_arena a = {0};
        req.ticket = ticket_msg(svc, &a, DFS_TICKET_STAT, it->fragment_id, it->node_id,
                                ticket_expiry(svc, DFS_TICKET_STAT));
        int64_t timeout = (int64_t)(size / CHECK_MIN_RATE) * 1000;
        if (timeout < CHECK_TIMEOUT_MIN_MS)
            timeout = CHECK_TIMEOUT_MIN_MS;
        rc = req.ticket == NULL
                 ? dfs_seterr(&err, DFS_ENOMEM, "out of memory")
                 : unary_cancellable(svc, loop, ch, "/dfs.v1.Storage/StatFragment", &req.base,
                                     &dfs__v1__stat_fragment_response__descriptor, &resp, timeout,
                                     &err);
        dfs_arena_free(&a);
    }
    bool missing = rc == DFS_ENOTFOUND, bad = missing || rc == DFS_EDATALOSS;
    char held[96] = "";
    if (rc == DFS_OK) {
        const Dfs__V1__StatFragmentResponse *r = (const Dfs__V1__StatFragmentResponse *)resp;
        bad = r->size != size || r->checksum != sum;
        snprintf(held, sizeof held, "size %" PRIu64 " checksum %08" PRIx32, r->size, r->checksum);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    if (!bad) {
        if (rc == DFS_OK)
            dfs_log(DFS_LOG_INFO,
                    "reported damage not confirmed: the node holds the catalog's copy "
                    "fragment=%s node=%s",
                    it->fragment_id, it->node_id);
        else
            dfs_log(DFS_LOG_WARN, "cannot check a reported copy fragment=%s node=%s err=%s",
                    it->fragment_id, it->node_id, err != NULL ? err : dfs_strerror(rc));
        free(err);
        return rc == DFS_OK ? DFS_DAMAGE_GOOD : DFS_DAMAGE_UNKNOWN;
    }
    dfs_log(DFS_LOG_WARN,
            "reported damage confirmed by the node fragment=%s node=%s found=%s "
            "catalog_size=%" PRIu64 " catalog_checksum=%08" PRIx32,
            it->fragment_id, it->node_id,
            held[0] != '\0' ? held
            : err != NULL   ? err
                            : dfs_strerror(rc),
            size, sum);
    free(err);
    err = NULL;
    bool marked = false;
    rc = missing ? dfs_catalog_report_missing(svc->cat, it->node_id, it->fragment_id,
                                              dfs_clock_wall_ms(), &marked, &err)
                 : dfs_catalog_report_corrupt(svc->cat, it->node_id, it->fragment_id,
                                              dfs_clock_wall_ms(), &marked, &err);
    if (rc != DFS_OK) {
        dfs_log(DFS_LOG_ERROR, "cannot drop a damaged copy fragment=%s node=%s err=%s",
                it->fragment_id, it->node_id, err);
        free(err);
        return DFS_DAMAGE_UNKNOWN;
    }
    if (marked) {
        atomic_fetch_add(&svc->damage_confirmed, 1);
        wake_workers(svc);
        kick_planner(svc);
    }
    return DFS_DAMAGE_BAD;
}

static int check_one(dfs_metadata_service *svc, dfs_rpc_loop *loop, bool *did)
{
    struct dfs_damage_item it;
    *did = dfs_damage_queue_take(svc->damage, &it);
    if (*did)
        dfs_damage_queue_done(svc->damage, &it, check_copy(svc, loop, &it), dfs_clock_wall_ms());
    return DFS_OK;
}

int dfs_metadata_service_check_one(dfs_metadata_service *svc, bool *did, char **errmsg)
{
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    if (loop == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    int rc = check_one(svc, loop, did);
    dfs_rpc_loop_destroy(loop);
    return rc;
}

/* The checker thread: reported copies one at a time, woken by reports (check_cv). */
static void *checker_main(void *arg)
{
    dfs_metadata_service *svc = arg;
    dfs_rpc_loop *loop = dfs_rpc_loop_create();
    if (loop == NULL) {
        dfs_log(DFS_LOG_ERROR, "damage checker cannot start: out of memory");
        return NULL;
    }
    pthread_mutex_lock(&svc->mu);
    while (!svc->stopping) {
        pthread_mutex_unlock(&svc->mu);
        bool did = false;
        check_one(svc, loop, &did);
        pthread_mutex_lock(&svc->mu);
        if (did || svc->stopping)
            continue;
        struct timespec until = dfs_clock_abstime(1000);
        pthread_cond_timedwait(&svc->check_cv, &svc->mu, &until);
    }
    pthread_mutex_unlock(&svc->mu);
    dfs_rpc_loop_destroy(loop);
    return NULL;
}

/* GetHealth verify: the copies of one node, checked by one thread. */
struct verify_job {
    dfs_metadata_service *svc;
    const struct dfs_layout *l;
    size_t node;
    size_t *copies;    /* copy indexes */
    size_t *fragments; /* the fragment of each */
    size_t n;
    bool *ok; /* shared; each job writes only its own copies */
};

static void *verify_main(void *arg)
{
    struct verify_job *j = arg;
    const struct dfs_layout_node *node = &j->l->nodes[j->node];
    for (size_t i = 0; i < j->n; i++) {
        const struct dfs_layout_fragment *fr = &j->l->fragments[j->fragments[i]];
        /* One missed deadline on a loaded machine says nothing about the copy: ask again. A
           node that misses twice in a row is taken as gone for its remaining copies, which
           would otherwise each wait a deadline. */
        int there = DFS_ETIMEDOUT;
        for (int attempt = 0; attempt < 2; attempt++) {
            there = stat_copy(j->svc, node->id, node->address, fr->fragment_id, fr->size,
                              fr->checksum, true, NULL);
            if (there != DFS_EUNAVAIL && there != DFS_ETIMEDOUT)
                break;
        }
        if (there == DFS_EUNAVAIL || there == DFS_ETIMEDOUT)
            break;
        j->ok[j->copies[i]] = there == 1;
    }
    return NULL;
}

/* Confirm every copy on a live, suspect or draining node; *ok[i] per copy. */
static int verify_copies(dfs_metadata_service *svc, const struct dfs_layout *l, bool *ok,
                         char **errmsg)
{
    struct verify_job *jobs = calloc(l->nnodes + 1, sizeof *jobs);
    size_t *count = calloc(l->nnodes + 1, sizeof *count);
    int rc = jobs == NULL || count == NULL ? DFS_ENOMEM : DFS_OK;
    for (size_t c = 0; rc == DFS_OK && c < l->ncopies; c++)
        count[l->copies[c]]++;
    for (size_t i = 0; rc == DFS_OK && i < l->nnodes; i++) {
        jobs[i] = (struct verify_job){.svc = svc, .l = l, .node = i, .ok = ok};
        if (!state_readable_node(l->nodes[i].state) || count[i] == 0)
            continue;
        jobs[i].copies = calloc(count[i], sizeof *jobs[i].copies);
        jobs[i].fragments = calloc(count[i], sizeof *jobs[i].fragments);
        if (jobs[i].copies == NULL || jobs[i].fragments == NULL)
            rc = DFS_ENOMEM;
    }
    for (size_t f = 0; rc == DFS_OK && f < l->nfragments; f++) {
        const struct dfs_layout_fragment *fr = &l->fragments[f];
        for (size_t c = fr->first_copy; c < fr->first_copy + fr->ncopies; c++) {
            struct verify_job *j = &jobs[l->copies[c]];
            if (j->copies == NULL)
                continue;
            j->copies[j->n] = c;
            j->fragments[j->n] = f;
            j->n++;
        }
    }
    /* At most VERIFY_THREADS nodes at once, each node's copies one after another. */
    for (size_t start = 0; rc == DFS_OK && start < l->nnodes; start += VERIFY_THREADS) {
        pthread_t th[VERIFY_THREADS];
        bool started[VERIFY_THREADS] = {false};
        for (size_t i = start; i < l->nnodes && i < start + VERIFY_THREADS; i++)
            if (jobs[i].n > 0)
                started[i - start] =
                    pthread_create(&th[i - start], NULL, verify_main, &jobs[i]) == 0;
        for (size_t i = start; i < l->nnodes && i < start + VERIFY_THREADS; i++) {
            if (started[i - start])
                pthread_join(th[i - start], NULL);
            else if (jobs[i].n > 0)
                verify_main(&jobs[i]); /* no thread: do it here */
        }
    }
    for (size_t i = 0; jobs != NULL && i < l->nnodes; i++) {
        free(jobs[i].copies);
        free(jobs[i].fragments);
    }
    free(jobs);
    free(count);
    return rc == DFS_OK ? DFS_OK : dfs_seterr(errmsg, rc, "out of memory");
}

static void handle_get_health(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__GetHealthRequest *req =
        (const Dfs__V1__GetHealthRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_get_health(req, &verr), &verr))
        return;
    struct dfs_layout *l = NULL;
    struct dfs_health h;
    memset(&h, 0, sizeof h);
    bool *ok = NULL;
    char *err = NULL;
    uint64_t queued = 0, running = 0;
    int rc = dfs_catalog_layout(svc->cat, &l, &err);
    if (rc == DFS_OK && req->verify) {
        ok = calloc(l->ncopies + 1, sizeof *ok);
        rc = ok == NULL ? dfs_seterr(&err, DFS_ENOMEM, "out of memory")
                        : verify_copies(svc, l, ok, &err);
    }
    if (rc == DFS_OK)
        rc = dfs_catalog_health_classify(l, ok, req->list, &h, &err);
    if (rc == DFS_OK)
        rc = dfs_catalog_repair_counts(svc->cat, &queued, &running, &err);
    free(ok);
    dfs_catalog_layout_free(l);
    if (rc != DFS_OK) {
        dfs_catalog_health_clear(&h);
        fail_and_free(call, rc, err);
        return;
    }
    struct dfs_metadata_repair_stats st;
    dfs_metadata_service_repair_stats(svc, &st);
    Dfs__V1__GetHealthResponse resp = DFS__V1__GET_HEALTH_RESPONSE__INIT;
    resp.files = h.files;
    resp.healthy = h.healthy;
    resp.degraded = h.degraded;
    resp.lost = h.lost;
    resp.degraded_fraction = h.files > 0 ? (double)h.degraded / (double)h.files : 0;
    resp.lost_fraction = h.files > 0 ? (double)h.lost / (double)h.files : 0;
    resp.repairs_queued = queued;
    resp.repairs_running = running;
    resp.repairs_done = st.done;
    resp.repair_bytes = st.bytes;
    resp.lost_paths = h.lost_paths;
    resp.n_lost_paths = h.nlost_paths;
    resp.degraded_paths = h.degraded_paths;
    resp.n_degraded_paths = h.ndegraded_paths;
    resp.damage_reported = atomic_load(&svc->damage_reported);
    resp.damage_confirmed = atomic_load(&svc->damage_confirmed);
    resp.damage_checks_pending = dfs_damage_queue_pending(svc->damage);
    dfs_rpc_call_reply(call, &resp.base);
    dfs_catalog_health_clear(&h);
}

void dfs_metadata_service_maintain(dfs_metadata_service *svc)
{
    char *err = NULL;
    int64_t now = dfs_clock_wall_ms();
    /*
     * Liveness: a node is late when its last heartbeat is older than the timeout, but the catalog
     * keeps the heartbeat times of the previous process, and the nodes could not reach anyone
     * while no service ran. Counted from the latest heartbeat alone, an outage longer than the
     * dead timeout would declare every node dead at once and queue a repair of every fragment.
     * So the silence counts from this process's start at the earliest: no node turns suspect
     * (dead) before the service has been up for the suspect (dead) timeout.
     */
    int64_t up = now - svc->created_ms;
    int64_t dead_after = up < svc->cfg.dead_after_ms ? INT64_MAX : svc->cfg.dead_after_ms;
    if (up >= svc->cfg.suspect_after_ms &&
        dfs_catalog_nodes_sweep(svc->cat, now, svc->cfg.suspect_after_ms, dead_after, NULL, NULL,
                                &err) != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "liveness sweep failed err=\"%s\"", err);
        free(err);
        err = NULL;
    }
    if (dfs_catalog_files_expire(svc->cat, now, NULL, &err) != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "pending expiry failed err=\"%s\"", err);
        free(err);
        err = NULL;
    }
    if (dfs_catalog_nodes_finish_drains(svc->cat, NULL, &err) != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "drain check failed err=\"%s\"", err);
        free(err);
        err = NULL;
    }
    struct dfs_node_rec *nodes = NULL;
    size_t nnodes = 0;
    if (dfs_catalog_nodes_list(svc->cat, &nodes, &nnodes, &err) != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "cannot list nodes err=\"%s\"", err);
        free(err);
        err = NULL;
    } else {
        uint64_t sig = node_signature(nodes, nnodes);
        bool changed = sig != svc->node_sig;
        svc->node_sig = sig;
        plan_step(svc, now, changed, false);
        if (!svc->plan_active && now - svc->rebalance_last_ms >= svc->cfg.rebalance_interval_ms) {
            svc->rebalance_last_ms = now;
            rebalance_step(svc, nodes, nnodes);
        }
    }
    free(nodes);
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
        /* A pass in progress continues at once (bounded steps), else wait for the interval. */
        if (svc->plan_active && !atomic_load(&svc->plan_kick)) {
            pthread_mutex_unlock(&svc->mu);
            struct timespec pause = {0, 10 * 1000000};
            nanosleep(&pause, NULL);
            pthread_mutex_lock(&svc->mu);
            continue;
        }
        struct timespec until = dfs_clock_abstime(svc->cfg.maintenance_interval_ms);
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
    svc->created_ms = dfs_clock_wall_ms();
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
    if (c->repair_parallel == 0)
        c->repair_parallel = 4;
    if (c->rebalance_threshold_pct == 0)
        c->rebalance_threshold_pct = 10;
    if (c->rebalance_max == 0)
        c->rebalance_max = 4;
    if (c->rebalance_interval_ms == 0)
        c->rebalance_interval_ms = REBALANCE_EVERY_MS;
    if (c->ticket_ttl_ms <= 0)
        c->ticket_ttl_ms = 3600 * 1000;
    if (c->delete_grace_ms == 0)
        c->delete_grace_ms = DELETE_GRACE_MS;
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
        rc = dfs_catalog_secret(cat, "ticket_master_key", sizeof svc->master_key,
                                dfs_clock_wall_ms(), svc->master_key, errmsg);
    if (rc == DFS_OK)
        rc = dfs_damage_queue_create(DAMAGE_QUEUE_MAX, DAMAGE_GOOD_FOR_MS, &svc->damage, errmsg);
    if (rc == DFS_OK)
        rc = dfs_rpc_pool_create(&(struct dfs_rpc_pool_config){.security = c->node_security},
                                 &svc->nodes, errmsg);
    if (rc == DFS_OK)
        rc = dfs_placement_create(&pcfg, &svc->placement, errmsg);
    if (rc != DFS_OK) {
        OPENSSL_cleanse(svc->master_key, sizeof svc->master_key);
        dfs_rpc_pool_destroy(svc->nodes);
        dfs_damage_queue_destroy(svc->damage);
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
    /* Repairs that were running when the service last stopped have no worker any more. */
    size_t recovered = 0;
    rc = dfs_catalog_repairs_recover(cat, dfs_clock_wall_ms(), &recovered, errmsg);
    if (rc != DFS_OK) {
        dfs_placement_destroy(svc->placement);
        dfs_rpc_pool_destroy(svc->nodes);
        dfs_damage_queue_destroy(svc->damage);
        free(svc);
        return rc;
    }
    load_placement(svc);
    pthread_mutex_init(&svc->place_mu, NULL);
    pthread_mutex_init(&svc->mu, NULL);
    pthread_cond_init(&svc->cv, NULL);
    pthread_cond_init(&svc->work_cv, NULL);
    pthread_cond_init(&svc->check_cv, NULL);
    pthread_mutex_init(&svc->claim_mu, NULL);
    atomic_init(&svc->stop_flag, false);
    atomic_init(&svc->plan_kick, true);
    atomic_init(&svc->rep_running, 0);
    atomic_init(&svc->rep_done, 0);
    atomic_init(&svc->rep_failed, 0);
    atomic_init(&svc->rep_bytes, 0);
    atomic_init(&svc->damage_reported, 0);
    atomic_init(&svc->damage_confirmed, 0);
    if (recovered > 0)
        dfs_log(DFS_LOG_INFO, "interrupted repairs queued again count=%zu", recovered);
    *out = svc;
    return DFS_OK;
}

/* ---- authentication: bearer tokens ---- */

/*
 * What a method needs (dfs_rpc_method.access) and what a role grants: a call runs when its
 * token's role grants any bit the method asks for.
 */
enum {
    ACCESS_READ = 1u << 0,   /* files and cluster state, read */
    ACCESS_WRITE = 1u << 1,  /* files, write */
    ACCESS_ADMIN = 1u << 2,  /* nodes and tokens */
    ACCESS_NODE = 1u << 3,   /* what a storage node calls about itself (a node token) */
    ACCESS_ENROLL = 1u << 4, /* registering a node the catalog has never seen */
    ACCESS_ANY = ACCESS_READ | ACCESS_WRITE | ACCESS_ADMIN | ACCESS_NODE | ACCESS_ENROLL,
};

/* An admin may enroll a node but never speaks as one: a node's calls need its own token. */
static unsigned role_access(enum dfs_token_role r)
{
    switch (r) {
    case DFS_ROLE_ADMIN:
        return ACCESS_READ | ACCESS_WRITE | ACCESS_ADMIN | ACCESS_ENROLL;
    case DFS_ROLE_READ_WRITE:
        return ACCESS_READ | ACCESS_WRITE;
    case DFS_ROLE_READ_ONLY:
        return ACCESS_READ;
    case DFS_ROLE_NODE:
        return ACCESS_NODE;
    case DFS_ROLE_BOOTSTRAP:
        return ACCESS_ENROLL;
    default:
        return 0;
    }
}

/* A use is written back to the catalog at most this often per token. */
#define TOKEN_TOUCH_MS 60000

/*
 * The token a call presents, checked against the catalog: well-formed, known, its secret's hash
 * matching (constant time), not revoked, not expired. *out gets its record.
 */
static int check_token(dfs_metadata_service *svc, const dfs_rpc_call *call,
                       struct dfs_token_rec *out, char **errmsg)
{
    char token[DFS_RPC_TOKEN_MAX + 1];
    if (!dfs_rpc_call_bearer(call, token, sizeof token))
        return dfs_seterr(errmsg, DFS_EUNAUTH,
                          "no bearer token: give --token-file or set DFS_TOKEN_FILE / DFS_TOKEN");
    char id[DFS_TOKEN_ID_HEX + 1];
    uint8_t hash[DFS_TOKEN_HASH_LEN], want[DFS_TOKEN_HASH_LEN];
    int rc = dfs_token_parse(token, id, hash, errmsg);
    OPENSSL_cleanse(token, sizeof token);
    if (rc != DFS_OK)
        return rc;
    rc = dfs_catalog_token_get(svc->cat, id, out, want, NULL);
    if (rc == DFS_ENOTFOUND || (rc == DFS_OK && CRYPTO_memcmp(hash, want, sizeof hash) != 0))
        return dfs_seterr(errmsg, DFS_EUNAUTH, "unknown token %s", id);
    if (rc != DFS_OK)
        return dfs_seterr(errmsg, DFS_EUNAVAIL, "cannot check the token now: the catalog failed");
    int64_t now = dfs_clock_wall_ms();
    if (out->revoked_ms != 0)
        return dfs_seterr(errmsg, DFS_EUNAUTH, "token %s was revoked", id);
    if (out->expires_ms != 0 && now >= out->expires_ms)
        return dfs_seterr(errmsg, DFS_EUNAUTH, "token %s has expired", id);
    if (now - out->last_used_ms >= TOKEN_TOUCH_MS)
        dfs_catalog_token_touch(svc->cat, id, now, NULL);
    return DFS_OK;
}

static int caller_node(dfs_metadata_service *svc, const dfs_rpc_call *call,
                       struct dfs_token_rec *tok, char **errmsg)
{
    int rc = check_token(svc, call, tok, errmsg);
    if (rc == DFS_OK && (tok->role != DFS_ROLE_NODE || !dfs_id_valid(tok->node_id)))
        rc = dfs_seterr(errmsg, DFS_EPERM, "token %s (role %s) belongs to no storage node", tok->id,
                        dfs_catalog_token_role_name(tok->role));
    return rc;
}

static int authorize(void *arg, const dfs_rpc_call *call, unsigned access, char **errmsg)
{
    dfs_metadata_service *svc = arg;
    struct dfs_token_rec t;
    int rc = check_token(svc, call, &t, errmsg);
    if (rc != DFS_OK)
        return rc;
    if ((role_access(t.role) & access) == 0)
        return dfs_seterr(errmsg, DFS_EPERM, "token %s (%s, role %s) may not call %s", t.id, t.name,
                          dfs_catalog_token_role_name(t.role), dfs_rpc_call_method(call));
    return DFS_OK;
}

static Dfs__V1__TokenInfo *token_msg(dfs_arena *a, const struct dfs_token_rec *t)
{
    Dfs__V1__TokenInfo *m = dfs_arena_alloc(a, sizeof *m);
    if (m == NULL)
        return NULL;
    dfs__v1__token_info__init(m);
    m->id = dfs_arena_strdup(a, t->id);
    m->name = dfs_arena_strdup(a, t->name);
    m->role = (Dfs__V1__TokenRole)t->role;
    m->created_ms = t->created_ms;
    m->expires_ms = t->expires_ms;
    m->revoked_ms = t->revoked_ms;
    m->last_used_ms = t->last_used_ms;
    m->node_id = dfs_arena_strdup(a, t->node_id);
    return m->id != NULL && m->name != NULL && m->node_id != NULL ? m : NULL;
}

int dfs_metadata_service_make_token(dfs_metadata_service *svc, enum dfs_token_role role,
                                    const char *name, int64_t ttl_ms, char token[DFS_TOKEN_LEN + 1],
                                    struct dfs_token_rec *info, char **errmsg)
{
    if (role == DFS_ROLE_NODE)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "node tokens are made by the nodes themselves at their enrollment "
                          "(give storage nodes a bootstrap token)");
    if (role <= DFS_ROLE_UNSPECIFIED || role > DFS_ROLE_BOOTSTRAP)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "a token's role is admin, read_write, read_only or bootstrap");
    if (ttl_ms < 0 || ttl_ms > (int64_t)100 * 365 * 24 * 3600 * 1000)
        return dfs_seterr(errmsg, DFS_EINVAL, "a token's lifetime is 0 (forever) to 100 years");
    struct dfs_token_rec t;
    memset(&t, 0, sizeof t);
    uint8_t hash[DFS_TOKEN_HASH_LEN];
    int rc = dfs_token_generate(token);
    if (rc == DFS_OK)
        rc = dfs_token_parse(token, t.id, hash, errmsg);
    else
        rc = dfs_seterr(errmsg, rc, "cannot make a random token");
    if (rc != DFS_OK)
        return rc;
    snprintf(t.name, sizeof t.name, "%s", name != NULL ? name : "");
    t.role = role;
    t.created_ms = dfs_clock_wall_ms();
    t.expires_ms = ttl_ms > 0 ? t.created_ms + ttl_ms : 0;
    if (name == NULL || strlen(name) > DFS_TOKEN_NAME_MAX)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "a token's name is 1 to %d bytes", DFS_TOKEN_NAME_MAX);
    if (rc == DFS_OK)
        rc = dfs_catalog_token_add(svc->cat, &t, hash, errmsg);
    if (rc != DFS_OK) {
        OPENSSL_cleanse(token, DFS_TOKEN_LEN + 1);
        return rc;
    }
    dfs_log(DFS_LOG_INFO, "token created id=%s name=\"%s\" role=%s expires_ms=%" PRId64, t.id,
            t.name, dfs_catalog_token_role_name(t.role), t.expires_ms);
    if (info != NULL)
        *info = t;
    return DFS_OK;
}

int dfs_metadata_service_bootstrap_token(dfs_metadata_service *svc, const char *path,
                                         enum dfs_token_role role, const char *name, char **errmsg)
{
    if (access(path, F_OK) != 0) {
        if (errno != ENOENT)
            return dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot look at token file %s", path);
        char token[DFS_TOKEN_LEN + 1];
        struct dfs_token_rec t;
        int rc = dfs_metadata_service_make_token(svc, role, name, 0, token, &t, errmsg);
        char line[DFS_TOKEN_LEN + 2];
        snprintf(line, sizeof line, "%s\n", token);
        if (rc == DFS_OK)
            rc = dfs_daemon_write_file_mode(path, line, 0600, errmsg);
        OPENSSL_cleanse(token, sizeof token);
        OPENSSL_cleanse(line, sizeof line);
        if (rc != DFS_OK)
            return rc;
        dfs_log(DFS_LOG_INFO, "token written id=%s role=%s file=%s", t.id,
                dfs_catalog_token_role_name(role), path);
        return DFS_OK;
    }
    char *token = NULL;
    int rc = dfs_rpc_token_read_file(path, &token, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_token_rec t;
    memset(&t, 0, sizeof t);
    uint8_t hash[DFS_TOKEN_HASH_LEN], want[DFS_TOKEN_HASH_LEN];
    rc = dfs_token_parse(token, t.id, hash, errmsg);
    OPENSSL_cleanse(token, strlen(token));
    free(token);
    if (rc != DFS_OK)
        return dfs_prefixerr(errmsg, DFS_EINVAL, "token file %s", path);
    struct dfs_token_rec have;
    rc = dfs_catalog_token_get(svc->cat, t.id, &have, want, NULL);
    if (rc == DFS_OK) {
        if (CRYPTO_memcmp(hash, want, sizeof hash) != 0)
            return dfs_seterr(errmsg, DFS_EPERM,
                              "token file %s: its id %s belongs to another token", path, t.id);
        if (have.role != role)
            return dfs_seterr(errmsg, DFS_EPERM, "token file %s holds a %s token, not %s", path,
                              dfs_catalog_token_role_name(have.role),
                              dfs_catalog_token_role_name(role));
        /* A revoked token stays revoked: the file does not bring it back. */
        if (have.revoked_ms != 0)
            dfs_log(DFS_LOG_WARN, "token in file is revoked id=%s file=%s", t.id, path);
        return DFS_OK;
    }
    if (rc != DFS_ENOTFOUND)
        return dfs_seterr(errmsg, rc, "cannot check token file %s against the catalog", path);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.role = role;
    t.created_ms = dfs_clock_wall_ms();
    rc = dfs_catalog_token_add(svc->cat, &t, hash, errmsg);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO, "token from file registered id=%s role=%s file=%s", t.id,
                dfs_catalog_token_role_name(role), path);
    return rc;
}

static void handle_create_token(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__CreateTokenRequest *req =
        (const Dfs__V1__CreateTokenRequest *)dfs_rpc_call_request(call);
    char token[DFS_TOKEN_LEN + 1];
    struct dfs_token_rec t;
    char *err = NULL;
    int rc = dfs_metadata_service_make_token(svc, (enum dfs_token_role)req->role, req->name,
                                             req->ttl_ms, token, &t, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__CreateTokenResponse resp = DFS__V1__CREATE_TOKEN_RESPONSE__INIT;
    resp.token = token;
    resp.info = token_msg(&a, &t);
    reply_and_free(call, &a, resp.info != NULL ? &resp.base : NULL);
    OPENSSL_cleanse(token, sizeof token);
}

static void handle_revoke_token(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__RevokeTokenRequest *req =
        (const Dfs__V1__RevokeTokenRequest *)dfs_rpc_call_request(call);
    struct dfs_token_rec t;
    uint8_t hash[DFS_TOKEN_HASH_LEN];
    char *err = NULL;
    int rc = dfs_catalog_token_resolve(svc->cat, req->id, &t, &err);
    if (rc == DFS_OK)
        rc = dfs_catalog_token_revoke(svc->cat, t.id, dfs_clock_wall_ms(), &err);
    if (rc == DFS_OK)
        rc = dfs_catalog_token_get(svc->cat, t.id, &t, hash, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_log(DFS_LOG_INFO, "token revoked id=%s name=\"%s\" role=%s", t.id, t.name,
            dfs_catalog_token_role_name(t.role));
    dfs_arena a = {0};
    Dfs__V1__RevokeTokenResponse resp = DFS__V1__REVOKE_TOKEN_RESPONSE__INIT;
    resp.info = token_msg(&a, &t);
    reply_and_free(call, &a, resp.info != NULL ? &resp.base : NULL);
}

static void handle_list_tokens(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__ListTokensRequest *req =
        (const Dfs__V1__ListTokensRequest *)dfs_rpc_call_request(call);
    struct dfs_token_rec *v = NULL;
    size_t n = 0;
    char *err = NULL;
    int rc = dfs_catalog_tokens_list(svc->cat, req->all, dfs_clock_wall_ms(), &v, &n, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__ListTokensResponse resp = DFS__V1__LIST_TOKENS_RESPONSE__INIT;
    bool ok = true;
    if (n > 0) {
        resp.tokens = dfs_arena_calloc(&a, n, sizeof *resp.tokens);
        ok = resp.tokens != NULL;
        for (size_t i = 0; ok && i < n; i++)
            ok = (resp.tokens[i] = token_msg(&a, &v[i])) != NULL;
        resp.n_tokens = n;
    }
    free(v);
    reply_and_free(call, &a, ok ? &resp.base : NULL);
}

static void handle_who_am_i(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    struct dfs_token_rec t;
    char *err = NULL;
    int rc = check_token(svc, call, &t, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__WhoAmIResponse resp = DFS__V1__WHO_AM_IRESPONSE__INIT;
    resp.info = token_msg(&a, &t);
    reply_and_free(call, &a, resp.info != NULL ? &resp.base : NULL);
}

int dfs_metadata_service_register(dfs_metadata_service *svc, dfs_rpc_server *srv, char **errmsg)
{
    const struct dfs_rpc_method methods[] = {
        {"/dfs.v1.Metadata/RegisterNode", DFS_RPC_UNARY,
         &dfs__v1__register_node_request__descriptor, handle_register_node, svc,
         ACCESS_NODE | ACCESS_ENROLL},
        {"/dfs.v1.Metadata/Heartbeat", DFS_RPC_UNARY, &dfs__v1__heartbeat_request__descriptor,
         handle_heartbeat, svc, ACCESS_NODE},
        {"/dfs.v1.Metadata/CreateFile", DFS_RPC_UNARY, &dfs__v1__create_file_request__descriptor,
         handle_create_file, svc, ACCESS_WRITE},
        {"/dfs.v1.Metadata/ReplaceTarget", DFS_RPC_UNARY,
         &dfs__v1__replace_target_request__descriptor, handle_replace_target, svc, ACCESS_WRITE},
        {"/dfs.v1.Metadata/CommitFile", DFS_RPC_UNARY, &dfs__v1__commit_file_request__descriptor,
         handle_commit_file, svc, ACCESS_WRITE},
        {"/dfs.v1.Metadata/AbortFile", DFS_RPC_UNARY, &dfs__v1__abort_file_request__descriptor,
         handle_abort_file, svc, ACCESS_WRITE},
        {"/dfs.v1.Metadata/GetFile", DFS_RPC_UNARY, &dfs__v1__get_file_request__descriptor,
         handle_get_file, svc, ACCESS_READ},
        {"/dfs.v1.Metadata/ListFiles", DFS_RPC_UNARY, &dfs__v1__list_files_request__descriptor,
         handle_list_files, svc, ACCESS_READ},
        {"/dfs.v1.Metadata/DeleteFile", DFS_RPC_UNARY, &dfs__v1__delete_file_request__descriptor,
         handle_delete_file, svc, ACCESS_WRITE},
        {"/dfs.v1.Metadata/Stat", DFS_RPC_UNARY, &dfs__v1__stat_request__descriptor, handle_stat,
         svc, ACCESS_READ},
        {"/dfs.v1.Metadata/ListNodes", DFS_RPC_UNARY, &dfs__v1__list_nodes_request__descriptor,
         handle_list_nodes, svc, ACCESS_READ},
        {"/dfs.v1.Metadata/SetNodeState", DFS_RPC_UNARY,
         &dfs__v1__set_node_state_request__descriptor, handle_set_node_state, svc, ACCESS_ADMIN},
        {"/dfs.v1.Metadata/ReportFragments", DFS_RPC_UNARY,
         &dfs__v1__report_fragments_request__descriptor, handle_report_fragments, svc, ACCESS_NODE},
        {"/dfs.v1.Metadata/GetHealth", DFS_RPC_UNARY, &dfs__v1__get_health_request__descriptor,
         handle_get_health, svc, ACCESS_READ},
        /* Readers (and nodes reading for repairs); the tickets are the proof, the node's check
           the judge. */
        {"/dfs.v1.Metadata/ReportDamage", DFS_RPC_UNARY,
         &dfs__v1__report_damage_request__descriptor, handle_report_damage, svc,
         ACCESS_READ | ACCESS_NODE},
        {"/dfs.v1.Metadata/CreateToken", DFS_RPC_UNARY, &dfs__v1__create_token_request__descriptor,
         handle_create_token, svc, ACCESS_ADMIN},
        {"/dfs.v1.Metadata/RevokeToken", DFS_RPC_UNARY, &dfs__v1__revoke_token_request__descriptor,
         handle_revoke_token, svc, ACCESS_ADMIN},
        {"/dfs.v1.Metadata/ListTokens", DFS_RPC_UNARY, &dfs__v1__list_tokens_request__descriptor,
         handle_list_tokens, svc, ACCESS_ADMIN},
        {"/dfs.v1.Metadata/WhoAmI", DFS_RPC_UNARY, &dfs__v1__who_am_irequest__descriptor,
         handle_who_am_i, svc, ACCESS_ANY},
        {"/dfs.v1.Metadata/Rename", DFS_RPC_UNARY, &dfs__v1__rename_request__descriptor,
         handle_rename, svc, ACCESS_WRITE},
        {"/dfs.v1.Metadata/SetAttributes", DFS_RPC_UNARY,
         &dfs__v1__set_attributes_request__descriptor, handle_set_attributes, svc, ACCESS_WRITE},
        {"/dfs.v1.Metadata/GetAttributes", DFS_RPC_UNARY,
         &dfs__v1__get_attributes_request__descriptor, handle_get_attributes, svc, ACCESS_READ},
    };
    struct dfs_rpc_authorizer az = {.authorize = authorize, .arg = svc};
    int arc = dfs_rpc_server_set_authorizer(srv, &az, errmsg);
    if (arc != DFS_OK)
        return arc;
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
    svc->workers = calloc(svc->cfg.repair_parallel, sizeof *svc->workers);
    if (svc->workers == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < svc->cfg.repair_parallel; i++) {
        if (pthread_create(&svc->workers[i], NULL, worker_main, svc) != 0)
            return dfs_seterr(errmsg, DFS_ENOMEM, "cannot start repair worker %" PRIu32, i);
        svc->nworkers++;
    }
    dfs_log(DFS_LOG_INFO, "repair workers started count=%zu", svc->nworkers);
    if (pthread_create(&svc->checker, NULL, checker_main, svc) != 0)
        return dfs_seterr(errmsg, DFS_ENOMEM, "cannot start the damage checker");
    svc->checker_running = true;
    return DFS_OK;
}

void dfs_metadata_service_destroy(dfs_metadata_service *svc)
{
    if (svc == NULL)
        return;
    atomic_store(&svc->stop_flag, true);
    pthread_mutex_lock(&svc->mu);
    svc->stopping = true;
    pthread_cond_signal(&svc->cv);
    pthread_cond_broadcast(&svc->work_cv);
    pthread_cond_broadcast(&svc->check_cv);
    pthread_mutex_unlock(&svc->mu);
    if (svc->running)
        pthread_join(svc->thread, NULL);
    if (svc->checker_running)
        pthread_join(svc->checker, NULL);
    for (size_t i = 0; i < svc->nworkers; i++)
        pthread_join(svc->workers[i], NULL);
    free(svc->workers);
    dfs_rpc_pool_destroy(svc->nodes);
    dfs_placement_destroy(svc->placement);
    free(svc->reserved);
    pthread_mutex_destroy(&svc->place_mu);
    pthread_mutex_destroy(&svc->mu);
    pthread_cond_destroy(&svc->cv);
    pthread_cond_destroy(&svc->work_cv);
    pthread_cond_destroy(&svc->check_cv);
    pthread_mutex_destroy(&svc->claim_mu);
    dfs_damage_queue_destroy(svc->damage);
    free(svc);
}
