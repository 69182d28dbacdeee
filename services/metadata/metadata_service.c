/* The Metadata service: dfs.v1.Metadata over the catalog and placement, plus background work. */
#include "services/metadata/metadata_service.h"

#include "common/arena.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "dfs/v1/metadata.pb-c.h"
#include "dfs/v1/storage.pb-c.h"
#include "metadata/access.h"
#include "metadata/membership.h"
#include "metadata/placer.h"
#include "metadata/putplan.h"
#include "metadata/rebalance.h"
#include "metadata/repairplan.h"
#include "metadata/reports.h"
#include "services/rpc/client.h"
#include "services/rpc/leader.h"
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
#include "services/metadata/s3keys.h"
#include "services/rpc/ticket_pb.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

static_assert(DFS_VALIDATE_REPLICAS_MAX == DFS_REPLICAS_MAX, "one replica limit");
static_assert(DFS_VALIDATE_FRAGMENTS_MAX == DFS_FRAGMENTS_MAX, "one fragment limit");
static_assert(DFS_VALIDATE_EC_WIDTH_MAX == DFS_EC_WIDTH_MAX, "one width limit");
static_assert(DFS_VALIDATE_ADDRESS_MAX == DFS_NODE_ADDRESS_MAX, "one address limit");
static_assert(DFS_VALIDATE_ZONE_MAX == DFS_NODE_ZONE_MAX, "one zone limit");

struct dfs_metadata_service {
    dfs_catalog *cat;
    struct dfs_metadata_config cfg;
    /* Signs every ticket (common/ticket.h); made once by the catalog and kept there. */
    uint8_t master_key[DFS_TICKET_KEY_LEN];
    /* S3 access keys' master key (s3keys.h), when cfg.s3_master_key was given. */
    uint8_t s3_master[DFS_S3KEYS_MASTER_LEN];
    bool s3_keys;

    /* Node choices: placement sets, randomness and reservations (metadata/placer.h). */
    dfs_placer *placer;

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
    /* Replicated (cfg.leadership): serving is true while this replica is a ready leader whose
       set-up is done (calls are served, duties run); want_leader and lead_gen (under mu) are
       what dfs_metadata_service_set_leader said last and how many times it said true. Without
       cfg.leadership serving is true from create. */
    atomic_bool serving;
    bool want_leader;
    uint64_t lead_gen;

    /* Repair workers (started by dfs_metadata_service_start). */
    pthread_t *workers;
    size_t nworkers;
    /* Claims repairs for the workers, one at a time (metadata/repairplan.h). */
    dfs_repairplan *repairs;
    atomic_uint_fast64_t rep_running, rep_done, rep_failed, rep_bytes;

    /* Channels to storage nodes (deletions, repairs, StatFragment checks), kept for the life of
       the service; the pool's lock is a leaf lock. */
    dfs_rpc_pool *nodes;

    /* Planner state, owned by the background thread (or a caller of maintain). A pass walks the
       catalog in bounded pages; one starts when node states changed, when a handler asked for it
       (plan_kick), or every PLAN_INTERVAL_MS. */
    struct dfs_repair_pass plan;
    uint64_t node_sig;
    atomic_bool plan_kick;
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
 * Repairs (deadlines and backoff: metadata/repairplan.h): a worker with nothing to do looks again
 * after REPAIR_IDLE_MS (backed-off rows become due).
 */
#define REPAIR_IDLE_MS   1000
#define REPAIR_POLL_MS   100
#define STAT_TIMEOUT_MS  5000
#define VERIFY_THREADS   16
/* How long a registration waits to learn whether a live node's registered address still
   answers as that node (a copy of its data directory beside it). */
#define PROBE_TIMEOUT_MS 1000

/*
 * Reported damage: copies waiting for a check at most, how long a copy found good is not checked
 * again, and a check's deadline (generous for the bytes the node reads: at least CHECK_MIN_RATE).
 */
#define DAMAGE_QUEUE_MAX     4096
#define DAMAGE_GOOD_FOR_MS   (10 * 60 * 1000)
#define CHECK_TIMEOUT_MIN_MS 30000
#define CHECK_MIN_RATE       (8u << 20)
#define DELETE_GRACE_MS      5000

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

/* FileInfo.md5 and .meta from file_meta (S3, issue 17); left empty when there are none. */
static void file_meta_msg(const dfs_metadata_service *svc, dfs_arena *a,
                          const struct dfs_file_rec *f, Dfs__V1__FileInfo *m)
{
    uint8_t md5[DFS_CATALOG_MD5_LEN], *meta = NULL;
    size_t len = 0;
    bool has_md5 = false;
    if (dfs_catalog_file_meta_get(svc->cat, f->file_id, md5, &has_md5, &meta, &len, NULL) != DFS_OK)
        return;
    if (has_md5 && (m->md5.data = dfs_arena_memdup(a, md5, sizeof md5)) != NULL)
        m->md5.len = sizeof md5;
    if (len > 0 && (m->meta.data = dfs_arena_memdup(a, meta, len)) != NULL)
        m->meta.len = len;
    free(meta);
}

/*
 * A FileInfo; with_layout adds the fragments and their replicas, and ticket_op (0: none) a
 * ticket for that operation on every replica. NULL when out of memory.
 */
static Dfs__V1__FileInfo *file_msg(const dfs_metadata_service *svc, dfs_arena *a,
                                   const struct dfs_file_rec *f, bool with_layout, int ticket_op);

/* A stitched file's segments (StitchFile), each a whole file with its layout and tickets. */
static bool segments_msg(const dfs_metadata_service *svc, dfs_arena *a,
                         const struct dfs_file_rec *f, Dfs__V1__FileInfo *m, int ticket_op)
{
    m->segments = dfs_arena_calloc(a, f->nsegments, sizeof *m->segments);
    if (m->segments == NULL)
        return false;
    for (size_t i = 0; i < f->nsegments; i++) {
        Dfs__V1__Segment *sm = dfs_arena_alloc(a, sizeof *sm);
        if (sm == NULL)
            return false;
        dfs__v1__segment__init(sm);
        sm->offset = f->segments[i].offset;
        if ((sm->file = file_msg(svc, a, f->segments[i].file, true, ticket_op)) == NULL)
            return false;
        m->segments[i] = sm;
        m->n_segments = i + 1;
    }
    return true;
}

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
    if (f->state == DFS_FILE_COMMITTED)
        file_meta_msg(svc, a, f, m); /* S3: MD5 and stored headers, when the put gave them */
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
    if (with_layout && f->nsegments > 0 && !segments_msg(svc, a, f, m, ticket_op))
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
 * The token a call presents, checked against the catalog (dfs_access_check). *out gets its
 * record.
 */
static int check_token(dfs_metadata_service *svc, const dfs_rpc_call *call,
                       struct dfs_token_rec *out, char **errmsg)
{
    char token[DFS_RPC_TOKEN_MAX + 1];
    if (!dfs_rpc_call_bearer(call, token, sizeof token))
        return dfs_seterr(errmsg, DFS_EUNAUTH,
                          "no bearer token: give --token-file or set DFS_TOKEN_FILE / DFS_TOKEN");
    int rc = dfs_access_check(svc->cat, token, dfs_clock_wall_ms(), out, errmsg);
    OPENSSL_cleanse(token, sizeof token);
    return rc;
}

/*
 * The storage node a call comes from: the node its token is bound to (a node token; any other
 * token is refused). The identity is the token's, never a request's.
 */
static int caller_node(dfs_metadata_service *svc, const dfs_rpc_call *call,
                       struct dfs_token_rec *tok, char **errmsg)
{
    int rc = check_token(svc, call, tok, errmsg);
    if (rc == DFS_OK)
        rc = dfs_access_node(tok, errmsg);
    return rc;
}

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
    int64_t silent = 0;
    if (dfs_membership_live_elsewhere(&old, req->address, now, svc->cfg.suspect_after_ms,
                                      &silent)) {
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
    struct dfs_access_enrollment e = {
        .node_id = req->node_id,
        .node_token_id = req->node_token_id,
        .node_token_sha256 = req->node_token_sha256.data,
        .address = req->address,
        .zone = req->zone,
    };
    usage_from(&e.usage, req->capacity_bytes, req->used_bytes, req->free_bytes,
               req->fragment_count);
    uint64_t fresh = new_registration();
    char *peer = dfs_rpc_call_peer(call);
    bool enrolled = false;
    int rc = dfs_access_enroll(svc->cat, by, &e, fresh, dfs_clock_wall_ms(), peer, &enrolled, err);
    free(peer);
    if (rc == DFS_OK && enrolled)
        *registration = fresh;
    else if (rc == DFS_OK)
        rc = register_node(svc, call, req->node_id, req, registration, err);
    return rc;
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

/* The cluster's defaults for a put (metadata/putplan.h). */
static struct dfs_put_defaults put_defaults(const dfs_metadata_service *svc)
{
    return (struct dfs_put_defaults){.replicas = svc->cfg.default_replicas,
                                     .fragments = svc->cfg.default_fragments,
                                     .policy = svc->cfg.default_policy};
}

/* A request's Redundancy as numbers (all zero when absent), for dfs_putplan_redundancy. */
static struct dfs_redundancy redundancy_asked(const Dfs__V1__Redundancy *in)
{
    struct dfs_redundancy r = {0};
    if (in != NULL)
        r = (struct dfs_redundancy){.scheme = (enum dfs_scheme)in->scheme,
                                    .replicas = in->replicas,
                                    .fragments = in->fragments,
                                    .data = in->data,
                                    .parity = in->parity};
    return r;
}

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
    struct dfs_put_defaults defaults = put_defaults(svc);
    struct dfs_redundancy asked = redundancy_asked(req->redundancy);
    int rc = dfs_path_canon(req->path, &path, &err);
    if (rc == DFS_OK)
        rc = dfs_putplan_redundancy(&asked, &defaults, &red, &err);
    if (rc == DFS_OK)
        rc = dfs_putplan_policy((int)req->policy, &defaults, &policy, &err);
    if (rc == DFS_OK && req->size > (uint64_t)INT64_MAX)
        rc = dfs_seterr(&err, DFS_EINVAL, "file size %" PRIu64 " is too large", req->size);
    if (rc != DFS_OK) {
        free(path);
        fail_and_free(call, rc, err);
        return;
    }

    uint32_t nfrag = dfs_catalog_redundancy_fragments(&red);
    size_t k = dfs_catalog_redundancy_copies(&red);
    uint64_t fragment_size = 0;
    uint32_t cell_size = 0;
    /* Cannot fail: the size is checked above. */
    dfs_putplan_layout(req->size, &red, &fragment_size, &cell_size);
    /* The cluster's defaults may make a layout no node can store, or too large to count. */
    if (refused(call, dfs_validate_file_layout(fragment_size, nfrag, (uint32_t)k, &verr), &verr)) {
        free(path);
        return;
    }
    int64_t now = dfs_clock_wall_ms();
    struct dfs_put_spec spec = {
        .path = path,
        .size = req->size,
        .redundancy = red,
        .policy = policy,
        .overwrite = req->overwrite,
        .fragment_size = fragment_size,
        .cell_size = cell_size,
        .expires_ms = now + svc->cfg.pending_timeout_ms,
    };
    struct dfs_file_rec *created = NULL;
    rc = dfs_putplan_create(svc->cat, svc->placer, &spec, now, &created, &err);
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
    int rc = dfs_putplan_replace(svc->cat, svc->placer, req->file_id, req->fragment_index,
                                 req->failed_node_id, req->chain, dfs_clock_wall_ms(), &chosen,
                                 &others, &nothers, &err);
    if (rc != DFS_OK) {
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
    int rc;
    if (req->md5.len > 0 || req->meta.len > 0 || req->if_absent || req->if_file_id[0] != '\0') {
        /* S3: the object's MD5 and stored headers, in the commit's transaction. */
        struct dfs_file_meta meta = {.md5 =
                                         req->md5.len == DFS_CATALOG_MD5_LEN ? req->md5.data : NULL,
                                     .meta = req->meta.data,
                                     .meta_len = req->meta.len,
                                     .if_absent = req->if_absent,
                                     .if_file_id = req->if_file_id};
        rc = req->md5.len != 0 && req->md5.len != DFS_CATALOG_MD5_LEN
                 ? dfs_seterr(&err, DFS_EINVAL, "an MD5 is 16 bytes")
                 : dfs_catalog_file_commit_meta(svc->cat, req->file_id, req->sha256.data, frags,
                                                req->n_fragments, &meta, dfs_clock_wall_ms(), &f,
                                                &err);
    } else {
        rc = dfs_catalog_file_commit(svc->cat, req->file_id, req->sha256.data, frags,
                                     req->n_fragments, dfs_clock_wall_ms(), &f, &err);
    }
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
    char *verr = NULL;
    if (refused(call, dfs_validate_rename(req, &verr), &verr))
        return;
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

/* StitchFile (issue 17): a committed file made of committed files, one catalog transaction. The
   file id is drawn here, so the catalog operation is deterministic given its arguments. */
static void handle_stitch_file(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__StitchFileRequest *req =
        (const Dfs__V1__StitchFileRequest *)dfs_rpc_call_request(call);
    char *err = NULL;
    if (refused(call, dfs_validate_stitch_file(req, &err), &err))
        return;
    char *path = request_path(call, req->path);
    if (path == NULL)
        return;
    char **parts = calloc(req->n_parts, sizeof *parts);
    int rc = parts != NULL ? DFS_OK : dfs_seterr(&err, DFS_ENOMEM, "out of memory");
    for (size_t i = 0; rc == DFS_OK && i < req->n_parts; i++)
        rc = dfs_path_canon(req->parts[i], &parts[i], &err);
    char file_id[DFS_ID_HEX + 1];
    if (rc == DFS_OK && dfs_id_random(file_id) != DFS_OK)
        rc = dfs_seterr(&err, DFS_EIO, "cannot draw a random file id");
    struct dfs_file_rec *f = NULL;
    if (rc == DFS_OK) {
        struct dfs_file_meta meta = {
            .md5 = req->md5.len == DFS_CATALOG_MD5_LEN ? req->md5.data : NULL,
            .meta = req->meta.data,
            .meta_len = req->meta.len,
            .if_absent = req->if_absent,
            .if_file_id = req->if_file_id,
        };
        struct dfs_stitch_req sr = {
            .path = path,
            .file_id = file_id,
            .parts = (const char *const *)parts,
            .nparts = req->n_parts,
            .meta = &meta,
        };
        rc = dfs_catalog_file_stitch(svc->cat, &sr, dfs_clock_wall_ms(), &f, &err);
    }
    for (size_t i = 0; parts != NULL && i < req->n_parts; i++)
        free(parts[i]);
    free(parts);
    free(path);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__StitchFileResponse resp = DFS__V1__STITCH_FILE_RESPONSE__INIT;
    resp.file = file_msg(svc, &a, f, false, 0);
    dfs_catalog_file_rec_free(f);
    reply_and_free(call, &a, resp.file != NULL ? &resp.base : NULL);
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
    char *verr = NULL;
    if (refused(call, dfs_validate_set_attributes(req, &verr), &verr))
        return;
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
    char *verr = NULL;
    if (refused(call, dfs_validate_get_attributes(req, &verr), &verr))
        return;
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

static int64_t plan_clock(void *arg)
{
    (void)arg;
    return dfs_clock_wall_ms();
}

static void plan_work(void *arg)
{
    wake_workers(arg);
}

/*
 * One bounded step of the planner (metadata/repairplan.h): continue the pass in progress (or
 * start one when due) for at most PLAN_BUDGET_MS. Returns true when the pass ended in this step.
 */
static bool plan_step(dfs_metadata_service *svc, int64_t now, bool states_changed, bool unbounded)
{
    bool kick = atomic_exchange(&svc->plan_kick, false);
    bool ended = false;
    char *err = NULL;
    if (dfs_repair_pass_step(&svc->plan, svc->cat, now, states_changed || kick, unbounded,
                             plan_clock, plan_work, svc, &ended, &err) != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "repair planner failed, will retry err=\"%s\"", err);
        free(err);
    }
    return ended;
}

int dfs_metadata_service_plan_all(dfs_metadata_service *svc, char **errmsg)
{
    svc->plan.active = false;
    atomic_store(&svc->plan_kick, true);
    if (!plan_step(svc, dfs_clock_wall_ms(), false, true))
        return dfs_seterr(errmsg, DFS_EIO, "the repair planner did not finish (see the log)");
    return DFS_OK;
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

/* A copy reported damaged is not read until its node has checked it (dfs_repairplan_sources). */
static bool damage_suspect(void *arg, const char *fragment_id, const char *node_id)
{
    dfs_damage_queue *damage = arg;
    return dfs_damage_queue_suspect(damage, fragment_id, node_id);
}

/*
 * Build the RepairFragment request of a claimed task in arena a, with the sources
 * dfs_repairplan_sources chose and a ticket for each; NULL when out of memory.
 */
static Dfs__V1__RepairFragmentRequest *repair_request(const dfs_metadata_service *svc, dfs_arena *a,
                                                      const struct dfs_repair_claim *c,
                                                      uint64_t *read_bytes)
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
    struct dfs_repair_sources plan;
    if (dfs_repairplan_sources(c, damage_suspect, svc->damage, &plan, NULL) != DFS_OK)
        return NULL;
    *read_bytes = plan.read_bytes;
    bool ok = true;
    if (!plan.rebuild) {
        req->sources = dfs_arena_calloc(a, plan.n + 1, sizeof *req->sources);
        req->source_tickets = dfs_arena_calloc(a, plan.n + 1, sizeof *req->source_tickets);
        ok = req->sources != NULL && req->source_tickets != NULL;
        for (size_t i = 0; ok && i < plan.n; i++) {
            const struct dfs_replica_rec *r = &fr->replicas[plan.v[i].replica];
            req->sources[req->n_sources] = dfs_arena_strdup(a, r->address);
            req->source_tickets[req->n_sources] =
                ticket_msg(svc, a, DFS_TICKET_GET, fr->fragment_id, r->node_id, get_expiry);
            ok =
                req->sources[req->n_sources] != NULL && req->source_tickets[req->n_sources] != NULL;
            req->n_sources++;
        }
        req->n_source_tickets = req->n_sources;
        dfs_repairplan_sources_clear(&plan);
        return ok ? req : NULL;
    }
    Dfs__V1__ErasureRebuild *e = dfs_arena_alloc(a, sizeof *e);
    ok = e != NULL;
    if (ok) {
        dfs__v1__erasure_rebuild__init(e);
        e->data = f->redundancy.data;
        e->parity = f->redundancy.parity;
        e->cell_size = f->cell_size;
        e->index = c->task.index;
        e->sources = dfs_arena_calloc(a, plan.n + 1, sizeof *e->sources);
        ok = e->sources != NULL;
    }
    for (size_t i = 0; ok && i < plan.n; i++) {
        const struct dfs_fragment_rec *o = &f->fragments[plan.v[i].fragment];
        const struct dfs_replica_rec *r = &o->replicas[plan.v[i].replica];
        Dfs__V1__ErasureSource *src = dfs_arena_alloc(a, sizeof *src);
        ok = src != NULL;
        if (ok) {
            dfs__v1__erasure_source__init(src);
            src->index = o->index;
            src->fragment_id = dfs_arena_strdup(a, o->fragment_id);
            src->address = dfs_arena_strdup(a, r->address);
            src->ticket =
                ticket_msg(svc, a, DFS_TICKET_GET, o->fragment_id, r->node_id, get_expiry);
            src->checksum = o->checksum;
            ok = src->fragment_id != NULL && src->address != NULL && src->ticket != NULL;
            e->sources[e->n_sources++] = src;
        }
    }
    req->erasure = e;
    dfs_repairplan_sources_clear(&plan);
    return ok ? req : NULL;
}

/* Dispatch a claimed repair and record its outcome. Returns the outcome. */
static int run_repair(dfs_metadata_service *svc, dfs_rpc_loop *loop, struct dfs_repair_claim *c,
                      char **errmsg)
{
    const struct dfs_fragment_rec *fr = &c->task.file->fragments[c->task.index];
    const char *fid = c->task.row.fragment_id;
    dfs_arena a = {0};
    uint64_t read_bytes = 0;
    Dfs__V1__RepairFragmentRequest *req = repair_request(svc, &a, c, &read_bytes);
    int64_t timeout = dfs_repairplan_deadline_ms(read_bytes);
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
        rc = dfs_repairplan_complete(svc->repairs, c, r->size, r->checksum, dfs_clock_wall_ms(),
                                     &err);
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
        if (dfs_repairplan_fail(svc->repairs, c, dfs_clock_wall_ms(), &attempts, &ferr) != DFS_OK) {
            dfs_log(DFS_LOG_ERROR, "cannot record a failed repair fragment=%s err=\"%s\"", fid,
                    ferr);
            free(ferr);
        }
        dfs_log(rc == DFS_ECANCELED                        ? DFS_LOG_INFO
                : attempts >= DFS_REPAIRPLAN_ATTEMPTS_LOUD ? DFS_LOG_ERROR
                                                           : DFS_LOG_WARN,
                "repair failed, will retry fragment=%s reason=%s target=%s attempts=%" PRIu32
                " retry_in_ms=%" PRId64 " err=\"%s\"",
                fid, dfs_catalog_repair_reason_name(c->task.row.reason), c->target, attempts,
                dfs_repairplan_backoff_ms(attempts), err != NULL ? err : dfs_strerror(rc));
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
    struct dfs_repair_claim c;
    bool found = false;
    char *err = NULL;
    int rc = dfs_repairplan_claim(svc->repairs, dfs_clock_wall_ms(), &c, &found, &err);
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
    dfs_repairplan_claim_clear(&c);
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
        if (!atomic_load(&svc->serving)) { /* a follower repairs nothing */
            struct timespec until = dfs_clock_abstime(REPAIR_IDLE_MS);
            pthread_cond_timedwait(&svc->work_cv, &svc->mu, &until);
            continue;
        }
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
    int rc = dfs_membership_set_state(svc->cat, req->node_id, (enum dfs_node_state)req->state,
                                      req->force, &n, &err);
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

/* A dfs_report_confirm_fn over StatFragment: whether the node still holds the copy. */
static int confirm_copy(void *arg, const struct dfs_node_rec *node, const char *fragment_id,
                        char **errmsg)
{
    return stat_copy(arg, node->id, node->address, fragment_id, 0, 0, false, errmsg);
}

static void handle_report_fragments(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__ReportFragmentsRequest *req =
        (const Dfs__V1__ReportFragmentsRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_report_fragments(req, &verr), &verr))
        return;
    struct dfs_token_rec tok;
    char *err = NULL;
    int rc = caller_node(svc, call, &tok, &err);
    struct dfs_report_sum *sums = calloc(req->n_scrubbed + 1, sizeof *sums);
    if (rc == DFS_OK && sums == NULL)
        rc = dfs_seterr(&err, DFS_ENOMEM, "out of memory");
    for (size_t i = 0; rc == DFS_OK && i < req->n_scrubbed; i++)
        sums[i] = (struct dfs_report_sum){.fragment_id = req->scrubbed[i]->fragment_id,
                                          .size = req->scrubbed[i]->size,
                                          .checksum = req->scrubbed[i]->checksum};
    struct dfs_report r = {
        .registration = req->registration,
        .corrupt = (const char *const *)req->corrupt,
        .ncorrupt = req->n_corrupt,
        .missing = (const char *const *)req->missing,
        .nmissing = req->n_missing,
        .scrubbed = sums,
        .nscrubbed = req->n_scrubbed,
        .full = req->full,
        .page = req->page,
        .last = req->last,
        .present = (const char *const *)req->present,
        .npresent = req->n_present,
    };
    struct dfs_report_result res = {0};
    if (rc == DFS_OK)
        rc = dfs_reports_apply(svc->cat, tok.node_id, &r, confirm_copy, svc, dfs_clock_wall_ms(),
                               &res, &err);
    free(sums);
    atomic_fetch_add(&svc->damage_reported, res.damage_reported);
    atomic_fetch_add(&svc->damage_confirmed, res.damage_confirmed);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    if (res.marked_lost > 0 || res.unknown > 0) {
        wake_workers(svc);
        kick_planner(svc);
    }
    Dfs__V1__ReportFragmentsResponse resp = DFS__V1__REPORT_FRAGMENTS_RESPONSE__INIT;
    resp.marked_lost = res.marked_lost;
    resp.unknown = (uint32_t)res.unknown;
    resp.mismatched = res.mismatched;
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
    if (rc == DFS_OK && !dfs_catalog_state_readable(node.state))
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
        if (!atomic_load(&svc->serving)) { /* a follower checks nothing */
            struct timespec until = dfs_clock_abstime(1000);
            pthread_cond_timedwait(&svc->check_cv, &svc->mu, &until);
            continue;
        }
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
        if (!dfs_catalog_state_readable(l->nodes[i].state) || count[i] == 0)
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
    /* Liveness, counted from this process's start at the earliest (metadata/membership.h). */
    if (dfs_membership_sweep(svc->cat, svc->created_ms, now, svc->cfg.suspect_after_ms,
                             svc->cfg.dead_after_ms, &err) != DFS_OK) {
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
        uint64_t sig = dfs_repair_pass_signature(nodes, nnodes);
        bool changed = sig != svc->node_sig;
        svc->node_sig = sig;
        plan_step(svc, now, changed, false);
        if (!svc->plan.active && now - svc->rebalance_last_ms >= svc->cfg.rebalance_interval_ms) {
            svc->rebalance_last_ms = now;
            struct dfs_rebalance_config rb = {.threshold_pct = svc->cfg.rebalance_threshold_pct,
                                              .max = svc->cfg.rebalance_max};
            size_t moves = 0;
            /* Errors reading the catalog: no move this time (the next check tries again). */
            dfs_rebalance_step(svc->cat, svc->placer, nodes, nnodes, &rb, now, &moves, NULL);
            if (moves > 0)
                wake_workers(svc);
        }
    }
    free(nodes);
    send_deletions(svc);
}

/*
 * What a replica does once it becomes a ready leader, before it serves (replicated catalog
 * only; background thread): the writes the only replica makes at create (the ticket key,
 * interrupted repairs queued again: a repair "running" under the old leader has no worker here),
 * the owner's (token bootstrap), and a fresh start for what lives in memory: the placement sets
 * are read again (the catalog moved while this replica followed), liveness counts from now (one
 * dead-after period of grace, so a failover declares no live node dead), and a repair pass
 * starts over.
 */
static int lead_setup(dfs_metadata_service *svc, char **errmsg)
{
    int64_t now = dfs_clock_wall_ms();
    uint8_t key[sizeof svc->master_key];
    int rc = dfs_catalog_secret(svc->cat, "ticket_master_key", sizeof key, now, key, errmsg);
    if (rc != DFS_OK)
        return rc;
    /* Handlers read the key only while serving, which is false here; the value never changes
       once stored (insert-if-absent), so a later leadership writes the same bytes. */
    memcpy(svc->master_key, key, sizeof key);
    OPENSSL_cleanse(key, sizeof key);
    size_t recovered = 0;
    rc = dfs_catalog_repairs_recover(svc->cat, now, &recovered, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (recovered > 0)
        dfs_log(DFS_LOG_INFO, "interrupted repairs queued again count=%zu", recovered);
    rc = dfs_placer_reload(svc->placer, errmsg);
    if (rc != DFS_OK)
        return rc;
    const struct dfs_metadata_leadership *l = svc->cfg.leadership;
    if (l->on_lead != NULL) {
        rc = l->on_lead(l->arg, svc, errmsg);
        if (rc != DFS_OK)
            return rc;
    }
    svc->created_ms = now;
    dfs_catalog_liveness_lead(svc->cat, now); /* heartbeats heard from now, each node's grace */
    svc->node_sig = 0;
    svc->rebalance_last_ms = now;
    svc->plan = (struct dfs_repair_pass){
        .page = PLAN_PAGE, .budget_ms = PLAN_BUDGET_MS, .interval_ms = PLAN_INTERVAL_MS};
    atomic_store(&svc->plan_kick, true);
    return DFS_OK;
}

void dfs_metadata_service_set_leader(dfs_metadata_service *svc, bool ready_leader)
{
    pthread_mutex_lock(&svc->mu);
    if (ready_leader && !svc->want_leader)
        svc->lead_gen++;
    svc->want_leader = ready_leader;
    if (!ready_leader && atomic_exchange(&svc->serving, false))
        dfs_log(DFS_LOG_INFO, "not the leader any more: calls refused, duties stopped");
    if (!ready_leader)
        dfs_catalog_liveness_follow(svc->cat); /* heartbeats are the next leader's */
    pthread_cond_signal(&svc->cv);
    pthread_mutex_unlock(&svc->mu);
}

/*
 * Replicated, not serving: become the serving leader when told to (under mu; returns with it
 * held). A set-up that fails (lost leadership in between, an I/O error) is tried again after a
 * pause while this replica is still told to lead.
 */
static void follow_or_lead(dfs_metadata_service *svc)
{
    if (!svc->want_leader) {
        struct timespec until = dfs_clock_abstime(svc->cfg.maintenance_interval_ms);
        pthread_cond_timedwait(&svc->cv, &svc->mu, &until);
        return;
    }
    uint64_t gen = svc->lead_gen;
    pthread_mutex_unlock(&svc->mu);
    char *err = NULL;
    int64_t t0 = dfs_clock_mono_ns();
    int rc = lead_setup(svc, &err);
    pthread_mutex_lock(&svc->mu);
    if (rc != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "leader set-up failed, trying again err=\"%s\"", err);
        free(err);
        struct timespec until = dfs_clock_abstime(100);
        pthread_cond_timedwait(&svc->cv, &svc->mu, &until);
        return;
    }
    if (!svc->want_leader || gen != svc->lead_gen)
        return; /* leadership changed meanwhile: set up again (or follow) */
    atomic_store(&svc->serving, true);
    pthread_cond_broadcast(&svc->work_cv);
    pthread_cond_broadcast(&svc->check_cv);
    dfs_log(DFS_LOG_INFO, "leading: serving calls, duties started setup_ms=%" PRId64,
            (dfs_clock_mono_ns() - t0) / 1000000);
}

static void *background_main(void *arg)
{
    dfs_metadata_service *svc = arg;
    pthread_mutex_lock(&svc->mu);
    while (!svc->stopping) {
        if (!atomic_load(&svc->serving)) {
            follow_or_lead(svc);
            continue;
        }
        pthread_mutex_unlock(&svc->mu);
        dfs_metadata_service_maintain(svc);
        pthread_mutex_lock(&svc->mu);
        if (svc->stopping)
            break;
        /* A pass in progress continues at once (bounded steps), else wait for the interval. */
        if (svc->plan.active && !atomic_load(&svc->plan_kick)) {
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
    if (cfg->s3_master_key != NULL) {
        memcpy(svc->s3_master, cfg->s3_master_key, DFS_S3KEYS_MASTER_LEN);
        svc->s3_keys = true;
    }
    svc->cfg.s3_master_key = NULL;
    svc->created_ms = dfs_clock_wall_ms();
    svc->plan = (struct dfs_repair_pass){
        .page = PLAN_PAGE, .budget_ms = PLAN_BUDGET_MS, .interval_ms = PLAN_INTERVAL_MS};
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
    struct dfs_placer_config pcfg = {
        .scatter_width = c->scatter_width, .group_size = c->group_size, .seed = c->seed};
    /* A replica that may follow writes nothing here: the leader's set-up does (lead_setup). */
    if (rc == DFS_OK && c->leadership == NULL)
        rc = dfs_catalog_secret(cat, "ticket_master_key", sizeof svc->master_key,
                                dfs_clock_wall_ms(), svc->master_key, errmsg);
    if (rc == DFS_OK)
        rc = dfs_damage_queue_create(DAMAGE_QUEUE_MAX, DAMAGE_GOOD_FOR_MS, &svc->damage, errmsg);
    if (rc == DFS_OK)
        rc = dfs_rpc_pool_create(&(struct dfs_rpc_pool_config){.security = c->node_security},
                                 &svc->nodes, errmsg);
    if (rc == DFS_OK)
        rc = dfs_placer_create(cat, &pcfg, &svc->placer, errmsg);
    if (rc == DFS_OK)
        rc = dfs_repairplan_create(cat, svc->placer, &svc->repairs, errmsg);
    if (rc != DFS_OK) {
        OPENSSL_cleanse(svc->master_key, sizeof svc->master_key);
        dfs_placer_destroy(svc->placer);
        dfs_rpc_pool_destroy(svc->nodes);
        dfs_damage_queue_destroy(svc->damage);
        free(svc);
        return rc;
    }
    c->seed = dfs_placer_seed(svc->placer);
    dfs_log(DFS_LOG_INFO,
            "placement seeded seed=%" PRIu64 " default_policy=%s scatter_width=%" PRIu32
            " group_size=%" PRIu32,
            c->seed, dfs_placement_policy_name(c->default_policy), c->scatter_width, c->group_size);
    /* Repairs that were running when the service last stopped have no worker any more. */
    size_t recovered = 0;
    if (c->leadership == NULL)
        rc = dfs_catalog_repairs_recover(cat, dfs_clock_wall_ms(), &recovered, errmsg);
    if (rc != DFS_OK) {
        dfs_repairplan_destroy(svc->repairs);
        dfs_placer_destroy(svc->placer);
        dfs_rpc_pool_destroy(svc->nodes);
        dfs_damage_queue_destroy(svc->damage);
        free(svc);
        return rc;
    }
    pthread_mutex_init(&svc->mu, NULL);
    pthread_cond_init(&svc->cv, NULL);
    pthread_cond_init(&svc->work_cv, NULL);
    pthread_cond_init(&svc->check_cv, NULL);
    atomic_init(&svc->stop_flag, false);
    atomic_init(&svc->serving, c->leadership == NULL);
    atomic_init(&svc->plan_kick, true);
    atomic_init(&svc->rep_running, 0);
    atomic_init(&svc->rep_done, 0);
    atomic_init(&svc->rep_failed, 0);
    atomic_init(&svc->rep_bytes, 0);
    atomic_init(&svc->damage_reported, 0);
    atomic_init(&svc->damage_confirmed, 0);
    if (recovered > 0)
        dfs_log(DFS_LOG_INFO, "interrupted repairs queued again count=%zu", recovered);
    /* The only replica leads from now: heartbeats are its soft state (catalog.h, liveness). */
    if (c->leadership == NULL)
        dfs_catalog_liveness_lead(cat, svc->created_ms);
    *out = svc;
    return DFS_OK;
}

/* ---- authentication: bearer tokens ---- */

/* The server's authorizer: the call's token must grant a bit the method asks for (access.h). */
/*
 * A replica that does not serve (replicated catalog) refuses every call before anything is read
 * or written: UNAVAILABLE, "not the leader", and the leader's gRPC address in trailing metadata
 * dfs-leader when known (services/rpc/leader.h). The call is the server's; setting its trailer
 * is the one change an authorizer makes to it.
 */
static int refuse_follower(dfs_metadata_service *svc, const dfs_rpc_call *call, const char *why,
                           char **errmsg)
{
    const struct dfs_metadata_leadership *l = svc->cfg.leadership;
    char leader[320] = "";
    l->leader_hint(l->arg, leader, sizeof leader);
    if (leader[0] != '\0')
        dfs_rpc_call_set_trailer((dfs_rpc_call *)call, DFS_RPC_LEADER_KEY, leader);
    return dfs_seterr(errmsg, DFS_EUNAVAIL, "this replica is not the leader (%s%s%s)",
                      leader[0] != '\0' ? "leader at " : "no leader known",
                      leader[0] != '\0' ? leader : "", why);
}

/* Methods that only read but are not of the READ class (tokens and keys: admin, any role). */
static bool reads_tokens(const char *method)
{
    return strcmp(method, "/dfs.v1.Metadata/ListTokens") == 0 ||
           strcmp(method, "/dfs.v1.Metadata/WhoAmI") == 0 ||
           strcmp(method, "/dfs.v1.Metadata/GetSigningKey") == 0;
}

/*
 * The leader gate (replicated catalog): refuse unless serving; reads (methods that read and do
 * not write, the token reads included) wait for a read barrier first, so they see every write
 * acknowledged before them, even across a failover (a deposed leader that has not noticed cannot
 * pass the barrier: a token revoked on the new leader is never shown as live by the old one).
 */
static int leader_gate(dfs_metadata_service *svc, const dfs_rpc_call *call, unsigned access,
                       char **errmsg)
{
    if (!atomic_load(&svc->serving))
        return refuse_follower(svc, call, "", errmsg);
    bool read = ((access & DFS_ACCESS_READ) != 0 && (access & DFS_ACCESS_WRITE) == 0) ||
                reads_tokens(dfs_rpc_call_method(call));
    if (!read)
        return DFS_OK;
    const struct dfs_metadata_leadership *l = svc->cfg.leadership;
    char *err = NULL;
    int rc = l->barrier(l->arg, &err);
    if (rc == DFS_OK)
        return DFS_OK;
    char why[600];
    snprintf(why, sizeof why, "; read barrier: %s", err != NULL ? err : dfs_strerror(rc));
    free(err);
    return refuse_follower(svc, call, why, errmsg);
}

static int authorize(void *arg, const dfs_rpc_call *call, unsigned access, char **errmsg)
{
    dfs_metadata_service *svc = arg;
    /* GetReplicas describes this replica, whichever role it has: every replica answers it. */
    bool any_replica = strcmp(dfs_rpc_call_method(call), "/dfs.v1.Metadata/GetReplicas") == 0;
    if (svc->cfg.leadership != NULL && !any_replica) {
        int grc = leader_gate(svc, call, access, errmsg);
        if (grc != DFS_OK)
            return grc;
    }
    struct dfs_token_rec t;
    int rc = check_token(svc, call, &t, errmsg);
    if (rc != DFS_OK)
        return rc;
    return dfs_access_allow(&t, access, dfs_rpc_call_method(call), errmsg);
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
    return dfs_access_make_token(svc->cat, role, name, ttl_ms, dfs_clock_wall_ms(), token, info,
                                 errmsg);
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

/* ---- S3 access keys (issue 17; s3keys.h) ---- */

/* The S3 access key id and secret of token t. DFS_EPRECOND without a master key. */
static int s3_token_key(dfs_metadata_service *svc, const struct dfs_token_rec *t,
                        char key_id[DFS_S3KEYS_ID_LEN + 1], char secret[DFS_S3KEYS_SECRET_LEN + 1],
                        char **errmsg)
{
    if (!svc->s3_keys)
        return dfs_seterr(errmsg, DFS_EPRECOND,
                          "this metadata service has no S3 keys (start it with --s3-key-file)");
    dfs_s3keys_access_key_id(t->id, key_id);
    if (dfs_s3keys_secret(svc->s3_master, t->id, secret) != DFS_OK)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "cannot derive the S3 secret");
    return DFS_OK;
}

static void handle_create_token(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__CreateTokenRequest *req =
        (const Dfs__V1__CreateTokenRequest *)dfs_rpc_call_request(call);
    char token[DFS_TOKEN_LEN + 1];
    struct dfs_token_rec t;
    char *err = NULL;
    if (req->s3 && !svc->s3_keys) {
        fail_and_free(call, DFS_EPRECOND,
                      strdup("this metadata service has no S3 keys (start it with --s3-key-file)"));
        return;
    }
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
    char key_id[DFS_S3KEYS_ID_LEN + 1], secret[DFS_S3KEYS_SECRET_LEN + 1] = "";
    if (req->s3 && s3_token_key(svc, &t, key_id, secret, &err) != DFS_OK) {
        /* The token exists already: say so with the reason the S3 key could not be given. */
        dfs_log(DFS_LOG_WARN, "token created without its S3 key id=%s err=%s", t.id, err);
        free(err);
        err = NULL;
    } else if (req->s3) {
        resp.s3_access_key_id = key_id;
        resp.s3_secret = secret;
    }
    reply_and_free(call, &a, resp.info != NULL ? &resp.base : NULL);
    OPENSSL_cleanse(token, sizeof token);
    OPENSSL_cleanse(secret, sizeof secret);
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

/*
 * GetSigningKey: the day's SigV4 signing key of an S3 access key, for the S3 gateway (admin role),
 * with the key's token record (role, revocation, expiry): the secret never leaves the service.
 */
static void handle_get_signing_key(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__GetSigningKeyRequest *req =
        (const Dfs__V1__GetSigningKeyRequest *)dfs_rpc_call_request(call);
    char id[DFS_TOKEN_ID_HEX + 1], key_id[DFS_S3KEYS_ID_LEN + 1];
    char secret[DFS_S3KEYS_SECRET_LEN + 1];
    uint8_t hash[DFS_TOKEN_HASH_LEN], key[DFS_S3KEYS_SIGNING_LEN];
    struct dfs_token_rec t;
    char *err = NULL;
    int rc = DFS_OK;
    if (dfs_s3keys_token_id(req->access_key_id, id) != DFS_OK)
        rc = dfs_seterr(&err, DFS_ENOTFOUND, "no S3 access key %.40s", req->access_key_id);
    else if (strlen(req->date) != 8 || strlen(req->region) > 63 || strcmp(req->service, "s3") != 0)
        rc = dfs_seterr(&err, DFS_EINVAL, "a signing key's scope is YYYYMMDD, a region and s3");
    if (rc == DFS_OK) {
        rc = dfs_catalog_token_get(svc->cat, id, &t, hash, NULL);
        if (rc == DFS_ENOTFOUND)
            rc = dfs_seterr(&err, DFS_ENOTFOUND, "no S3 access key %s", req->access_key_id);
        else if (rc != DFS_OK)
            rc = dfs_seterr(&err, DFS_EUNAVAIL, "cannot read the token now: the catalog failed");
    }
    int64_t now = dfs_clock_wall_ms();
    if (rc == DFS_OK && t.revoked_ms != 0)
        rc = dfs_seterr(&err, DFS_EUNAUTH, "token %s was revoked", t.id);
    else if (rc == DFS_OK && t.expires_ms != 0 && now >= t.expires_ms)
        rc = dfs_seterr(&err, DFS_EUNAUTH, "token %s has expired", t.id);
    else if (rc == DFS_OK && t.role != DFS_ROLE_ADMIN && t.role != DFS_ROLE_READ_WRITE &&
             t.role != DFS_ROLE_READ_ONLY)
        rc = dfs_seterr(&err, DFS_EUNAUTH, "token %s (role %s) has no S3 key", t.id,
                        dfs_catalog_token_role_name(t.role));
    if (rc == DFS_OK)
        rc = s3_token_key(svc, &t, key_id, secret, &err);
    if (rc == DFS_OK &&
        dfs_s3keys_signing_key(secret, req->date, req->region, req->service, key) != DFS_OK)
        rc = dfs_seterr(&err, DFS_EINTERNAL, "cannot derive the signing key");
    OPENSSL_cleanse(secret, sizeof secret);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__GetSigningKeyResponse resp = DFS__V1__GET_SIGNING_KEY_RESPONSE__INIT;
    resp.signing_key.data = key;
    resp.signing_key.len = sizeof key;
    resp.info = token_msg(&a, &t);
    reply_and_free(call, &a, resp.info != NULL ? &resp.base : NULL);
    OPENSSL_cleanse(key, sizeof key);
}

/* ---- S3 buckets (issue 17; catalog schema 6) ---- */

static Dfs__V1__Bucket *bucket_msg(dfs_arena *a, const struct dfs_bucket_rec *b)
{
    Dfs__V1__Bucket *m = dfs_arena_alloc(a, sizeof *m);
    if (m == NULL)
        return NULL;
    dfs__v1__bucket__init(m);
    m->name = dfs_arena_strdup(a, b->name);
    m->created_ms = b->created_ms;
    m->token_id = dfs_arena_strdup(a, b->token_id);
    return m->name != NULL && m->token_id != NULL ? m : NULL;
}

static void handle_create_bucket(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__CreateBucketRequest *req =
        (const Dfs__V1__CreateBucketRequest *)dfs_rpc_call_request(call);
    char *err = NULL;
    struct dfs_bucket_rec b;
    int rc =
        dfs_catalog_bucket_create(svc->cat, req->name, req->token_id, dfs_clock_wall_ms(), &err);
    if (rc == DFS_OK)
        rc = dfs_catalog_bucket_get(svc->cat, req->name, &b, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__CreateBucketResponse resp = DFS__V1__CREATE_BUCKET_RESPONSE__INIT;
    resp.bucket = bucket_msg(&a, &b);
    reply_and_free(call, &a, resp.bucket != NULL ? &resp.base : NULL);
}

static void handle_delete_bucket(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__DeleteBucketRequest *req =
        (const Dfs__V1__DeleteBucketRequest *)dfs_rpc_call_request(call);
    char *err = NULL;
    int rc = dfs_catalog_bucket_delete(svc->cat, req->name, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    Dfs__V1__DeleteBucketResponse resp = DFS__V1__DELETE_BUCKET_RESPONSE__INIT;
    dfs_rpc_call_reply(call, &resp.base);
}

static void handle_get_bucket(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__GetBucketRequest *req =
        (const Dfs__V1__GetBucketRequest *)dfs_rpc_call_request(call);
    char *err = NULL;
    struct dfs_bucket_rec b;
    int rc = dfs_catalog_bucket_get(svc->cat, req->name, &b, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__GetBucketResponse resp = DFS__V1__GET_BUCKET_RESPONSE__INIT;
    resp.bucket = bucket_msg(&a, &b);
    reply_and_free(call, &a, resp.bucket != NULL ? &resp.base : NULL);
}

static void handle_list_buckets(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    struct dfs_bucket_rec *v = NULL;
    size_t n = 0;
    char *err = NULL;
    int rc = dfs_catalog_buckets_list(svc->cat, &v, &n, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    Dfs__V1__ListBucketsResponse resp = DFS__V1__LIST_BUCKETS_RESPONSE__INIT;
    bool ok = true;
    if (n > 0) {
        resp.buckets = dfs_arena_calloc(&a, n, sizeof *resp.buckets);
        ok = resp.buckets != NULL;
        for (size_t i = 0; ok && i < n; i++)
            ok = (resp.buckets[i] = bucket_msg(&a, &v[i])) != NULL;
        resp.n_buckets = n;
    }
    free(v);
    reply_and_free(call, &a, ok ? &resp.base : NULL);
}

/*
 * GetReplicas (dfs metadata ls): this replica's own view of the replicated catalog, answered by
 * every replica (authorize lets it past the leader gate). A single metadata service (no
 * leadership hooks) answers as the leader of a one-member cluster, with its catalog's applied
 * index.
 */
static void handle_get_replicas(dfs_rpc_call *call, void *ctx)
{
    dfs_metadata_service *svc = ctx;
    const Dfs__V1__GetReplicasRequest *req =
        (const Dfs__V1__GetReplicasRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_get_replicas(req, &verr), &verr))
        return;
    struct dfs_metadata_replicas *v = calloc(1, sizeof *v);
    if (v == NULL) {
        dfs_rpc_call_fail(call, DFS_ENOMEM, "out of memory");
        return;
    }
    const struct dfs_metadata_leadership *l = svc->cfg.leadership;
    if (l != NULL && l->replicas != NULL) {
        l->replicas(l->arg, v);
    } else {
        snprintf(v->self.role, sizeof v->self.role, "leader");
        v->leader_ready = true;
    }
    dfs_arena a = {0};
    Dfs__V1__GetReplicasResponse resp = DFS__V1__GET_REPLICAS_RESPONSE__INIT;
    resp.id = v->self.id;
    resp.raft_address = dfs_arena_strdup(&a, v->self.raft);
    resp.grpc_address = dfs_arena_strdup(&a, v->self.grpc);
    resp.role = dfs_arena_strdup(&a, v->self.role);
    resp.leader_ready = v->leader_ready;
    resp.term = v->term;
    resp.commit_index = v->commit_index;
    resp.applied_index = v->applied_index;
    resp.leader_id = v->leader_id;
    bool ok = resp.raft_address != NULL && resp.grpc_address != NULL && resp.role != NULL;
    if (ok && v->n_members > 0) {
        resp.members = dfs_arena_alloc(&a, v->n_members * sizeof *resp.members);
        ok = resp.members != NULL;
        for (size_t i = 0; ok && i < v->n_members; i++) {
            Dfs__V1__ReplicaMember *m = dfs_arena_alloc(&a, sizeof *m);
            ok = m != NULL;
            if (!ok)
                break;
            dfs__v1__replica_member__init(m);
            m->id = v->members[i].id;
            m->raft_address = dfs_arena_strdup(&a, v->members[i].raft);
            m->grpc_address = dfs_arena_strdup(&a, v->members[i].grpc);
            m->member_role = dfs_arena_strdup(&a, v->members[i].role);
            ok = m->raft_address != NULL && m->grpc_address != NULL && m->member_role != NULL;
            resp.members[i] = m;
            resp.n_members = i + 1;
        }
    }
    free(v);
    reply_and_free(call, &a, ok ? &resp.base : NULL);
}

/*
 * AddReplica / RemoveReplica (dfs metadata add|remove): on the leader (the gate refused the
 * others), through the owner's change hook, which waits until the change commits. A single
 * metadata service has no membership to change.
 */
static void member_change(dfs_metadata_service *svc, dfs_rpc_call *call, bool add, uint64_t id,
                          const char *raft, const char *grpc)
{
    const struct dfs_metadata_leadership *l = svc->cfg.leadership;
    if (l == NULL || l->change == NULL) {
        dfs_rpc_call_fail(call, DFS_EPRECOND,
                          "this metadata service is a single one (no --peers): no members to "
                          "change");
        return;
    }
    char *err = NULL;
    int rc = l->change(l->arg, add, id, raft, grpc, &err);
    if (rc != DFS_OK) {
        fail_and_free(call, rc, err);
        return;
    }
    dfs_arena a = {0};
    if (add) {
        Dfs__V1__AddReplicaResponse resp = DFS__V1__ADD_REPLICA_RESPONSE__INIT;
        reply_and_free(call, &a, &resp.base);
    } else {
        Dfs__V1__RemoveReplicaResponse resp = DFS__V1__REMOVE_REPLICA_RESPONSE__INIT;
        reply_and_free(call, &a, &resp.base);
    }
}

static void handle_add_replica(dfs_rpc_call *call, void *ctx)
{
    const Dfs__V1__AddReplicaRequest *req =
        (const Dfs__V1__AddReplicaRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_add_replica(req, &verr), &verr))
        return;
    member_change(ctx, call, true, req->id, req->raft_address, req->grpc_address);
}

static void handle_remove_replica(dfs_rpc_call *call, void *ctx)
{
    const Dfs__V1__RemoveReplicaRequest *req =
        (const Dfs__V1__RemoveReplicaRequest *)dfs_rpc_call_request(call);
    char *verr = NULL;
    if (refused(call, dfs_validate_remove_replica(req, &verr), &verr))
        return;
    member_change(ctx, call, false, req->id, NULL, NULL);
}

int dfs_metadata_service_register(dfs_metadata_service *svc, dfs_rpc_server *srv, char **errmsg)
{
    const struct dfs_rpc_method methods[] = {
        {"/dfs.v1.Metadata/RegisterNode", DFS_RPC_UNARY,
         &dfs__v1__register_node_request__descriptor, handle_register_node, svc,
         DFS_ACCESS_NODE | DFS_ACCESS_ENROLL},
        {"/dfs.v1.Metadata/Heartbeat", DFS_RPC_UNARY, &dfs__v1__heartbeat_request__descriptor,
         handle_heartbeat, svc, DFS_ACCESS_NODE},
        {"/dfs.v1.Metadata/CreateFile", DFS_RPC_UNARY, &dfs__v1__create_file_request__descriptor,
         handle_create_file, svc, DFS_ACCESS_WRITE},
        {"/dfs.v1.Metadata/ReplaceTarget", DFS_RPC_UNARY,
         &dfs__v1__replace_target_request__descriptor, handle_replace_target, svc,
         DFS_ACCESS_WRITE},
        {"/dfs.v1.Metadata/CommitFile", DFS_RPC_UNARY, &dfs__v1__commit_file_request__descriptor,
         handle_commit_file, svc, DFS_ACCESS_WRITE},
        {"/dfs.v1.Metadata/AbortFile", DFS_RPC_UNARY, &dfs__v1__abort_file_request__descriptor,
         handle_abort_file, svc, DFS_ACCESS_WRITE},
        {"/dfs.v1.Metadata/StitchFile", DFS_RPC_UNARY, &dfs__v1__stitch_file_request__descriptor,
         handle_stitch_file, svc, DFS_ACCESS_WRITE},
        {"/dfs.v1.Metadata/GetFile", DFS_RPC_UNARY, &dfs__v1__get_file_request__descriptor,
         handle_get_file, svc, DFS_ACCESS_READ},
        {"/dfs.v1.Metadata/ListFiles", DFS_RPC_UNARY, &dfs__v1__list_files_request__descriptor,
         handle_list_files, svc, DFS_ACCESS_READ},
        {"/dfs.v1.Metadata/DeleteFile", DFS_RPC_UNARY, &dfs__v1__delete_file_request__descriptor,
         handle_delete_file, svc, DFS_ACCESS_WRITE},
        {"/dfs.v1.Metadata/Stat", DFS_RPC_UNARY, &dfs__v1__stat_request__descriptor, handle_stat,
         svc, DFS_ACCESS_READ},
        {"/dfs.v1.Metadata/ListNodes", DFS_RPC_UNARY, &dfs__v1__list_nodes_request__descriptor,
         handle_list_nodes, svc, DFS_ACCESS_READ},
        {"/dfs.v1.Metadata/SetNodeState", DFS_RPC_UNARY,
         &dfs__v1__set_node_state_request__descriptor, handle_set_node_state, svc,
         DFS_ACCESS_ADMIN},
        {"/dfs.v1.Metadata/ReportFragments", DFS_RPC_UNARY,
         &dfs__v1__report_fragments_request__descriptor, handle_report_fragments, svc,
         DFS_ACCESS_NODE},
        {"/dfs.v1.Metadata/GetHealth", DFS_RPC_UNARY, &dfs__v1__get_health_request__descriptor,
         handle_get_health, svc, DFS_ACCESS_READ},
        /* Readers (and nodes reading for repairs); the tickets are the proof, the node's check
           the judge. */
        {"/dfs.v1.Metadata/ReportDamage", DFS_RPC_UNARY,
         &dfs__v1__report_damage_request__descriptor, handle_report_damage, svc,
         DFS_ACCESS_READ | DFS_ACCESS_NODE},
        {"/dfs.v1.Metadata/CreateToken", DFS_RPC_UNARY, &dfs__v1__create_token_request__descriptor,
         handle_create_token, svc, DFS_ACCESS_ADMIN},
        {"/dfs.v1.Metadata/RevokeToken", DFS_RPC_UNARY, &dfs__v1__revoke_token_request__descriptor,
         handle_revoke_token, svc, DFS_ACCESS_ADMIN},
        {"/dfs.v1.Metadata/ListTokens", DFS_RPC_UNARY, &dfs__v1__list_tokens_request__descriptor,
         handle_list_tokens, svc, DFS_ACCESS_ADMIN},
        {"/dfs.v1.Metadata/WhoAmI", DFS_RPC_UNARY, &dfs__v1__who_am_irequest__descriptor,
         handle_who_am_i, svc, DFS_ACCESS_ANY},
        {"/dfs.v1.Metadata/GetSigningKey", DFS_RPC_UNARY,
         &dfs__v1__get_signing_key_request__descriptor, handle_get_signing_key, svc,
         DFS_ACCESS_ADMIN | DFS_ACCESS_S3KEYS},
        {"/dfs.v1.Metadata/CreateBucket", DFS_RPC_UNARY,
         &dfs__v1__create_bucket_request__descriptor, handle_create_bucket, svc, DFS_ACCESS_WRITE},
        {"/dfs.v1.Metadata/DeleteBucket", DFS_RPC_UNARY,
         &dfs__v1__delete_bucket_request__descriptor, handle_delete_bucket, svc, DFS_ACCESS_WRITE},
        {"/dfs.v1.Metadata/GetBucket", DFS_RPC_UNARY, &dfs__v1__get_bucket_request__descriptor,
         handle_get_bucket, svc, DFS_ACCESS_READ},
        {"/dfs.v1.Metadata/ListBuckets", DFS_RPC_UNARY, &dfs__v1__list_buckets_request__descriptor,
         handle_list_buckets, svc, DFS_ACCESS_READ},
        {"/dfs.v1.Metadata/Rename", DFS_RPC_UNARY, &dfs__v1__rename_request__descriptor,
         handle_rename, svc, DFS_ACCESS_WRITE},
        {"/dfs.v1.Metadata/SetAttributes", DFS_RPC_UNARY,
         &dfs__v1__set_attributes_request__descriptor, handle_set_attributes, svc,
         DFS_ACCESS_WRITE},
        {"/dfs.v1.Metadata/GetAttributes", DFS_RPC_UNARY,
         &dfs__v1__get_attributes_request__descriptor, handle_get_attributes, svc, DFS_ACCESS_READ},
        {"/dfs.v1.Metadata/GetReplicas", DFS_RPC_UNARY, &dfs__v1__get_replicas_request__descriptor,
         handle_get_replicas, svc, DFS_ACCESS_ADMIN},
        {"/dfs.v1.Metadata/AddReplica", DFS_RPC_UNARY, &dfs__v1__add_replica_request__descriptor,
         handle_add_replica, svc, DFS_ACCESS_ADMIN},
        {"/dfs.v1.Metadata/RemoveReplica", DFS_RPC_UNARY,
         &dfs__v1__remove_replica_request__descriptor, handle_remove_replica, svc,
         DFS_ACCESS_ADMIN},
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
    dfs_catalog_liveness_follow(svc->cat);
    dfs_rpc_pool_destroy(svc->nodes);
    dfs_repairplan_destroy(svc->repairs);
    dfs_placer_destroy(svc->placer);
    pthread_mutex_destroy(&svc->mu);
    pthread_cond_destroy(&svc->cv);
    pthread_cond_destroy(&svc->work_cv);
    pthread_cond_destroy(&svc->check_cv);
    dfs_damage_queue_destroy(svc->damage);
    free(svc);
}
