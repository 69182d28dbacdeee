/* dfs-metadata: the catalog service. Flags -> config -> wiring; the work is in metadata_service. */
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/options.h"
#include "metadata/catalog.h"
#include "metadata/placement.h"
#include "protos/descriptor_set.h"
#include "services/daemon/daemon.h"
#include "services/daemon/metrics.h"
#include "services/daemon/metrics_http.h"
#include "services/daemon/readiness.h"
#include "services/metadata/catalog_sm.h"
#include "services/metadata/metadata_probe.h"
#include "services/metadata/metadata_service.h"
#include "services/metadata/replication.h"
#include "services/metadata/s3keys.h"
#include "services/rpc/grpclog.h"
#include "services/rpc/health.h"
#include "services/rpc/reflection.h"
#include "services/rpc/security.h"
#include "services/rpc/server.h"

#include "common/addr.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG    "dfs-metadata"
#define VERSION "0.1.0"

struct options {
    const char *db;
    const char *listen;
    const char *ready_file;
    const char *metrics_listen;
    long long threads;
    long long grace_ms;
    enum dfs_log_level level;
    struct dfs_metadata_config cfg;
    const char *admin_token_file;
    const char *s3_key_file;
    const char *node_token_file;
    const char *gateway_token_file;
    struct dfs_rpc_tls_config tls;
    bool insecure;
    int64_t rebalance_threshold; /* --rebalance-threshold, into cfg by check() */
    int64_t delete_grace_ms;     /* --delete-grace-ms, into cfg by check() */
    const char *raft_listen; /* --raft-listen: this replica's Raft address (bind with --peers) */
    long long election_timeout_ms;
    long long replica_id; /* --replica-id: this replica's id in --peers */
    const char *peers;    /* --peers id=raft_addr=grpc_addr,... */
    bool join;            /* --join: an empty replica waits to be added (dfs metadata add) */
};

static const struct dfs_opt_choice log_levels[] = {
    {"debug", DFS_LOG_DEBUG, false},
    {"info", DFS_LOG_INFO, false},
    {"warn", DFS_LOG_WARN, false},
    {"warning", DFS_LOG_WARN, true},
    {"error", DFS_LOG_ERROR, false},
    {"off", DFS_LOG_OFF, true},
    {NULL, 0, false},
};

/* The placement policies ('-' for '_' accepted, as metadata/placement.h reads them). */
static const struct dfs_opt_choice policies[] = {
    {"random", DFS_POLICY_RANDOM, false},
    {"min_copy", DFS_POLICY_MIN_COPY, false},
    {"buddy", DFS_POLICY_BUDDY, false},
    {"least_used", DFS_POLICY_LEAST_USED, false},
    {"min-copy", DFS_POLICY_MIN_COPY, true},
    {"least-used", DFS_POLICY_LEAST_USED, true},
    {NULL, 0, false},
};

#define O(member) DFS_OPT_FIELD(struct options, member)

static const struct dfs_opt opts[] = {
    {DFS_OPT_STRING, "db", 0, O(db), .arg = "FILE", .help = "SQLite catalog (created if missing)"},
    {DFS_OPT_STRING, "listen", 0, O(listen), .arg = "ADDR", .def = "127.0.0.1:7000",
     .help = "address to serve on; port 0 = any"},
    {DFS_OPT_STRING, "raft-listen", 0, O(raft_listen), .arg = "IP:PORT",
     .help = "one member: Raft address of this replica (an IPv4 literal; port 0 = any; default "
             "127.0.0.1:0); with --peers: the address its Raft listener binds (default: its "
             "--peers address when that is an IPv4 literal, else 0.0.0.0 with its port)"},
    {DFS_OPT_INT, "replica-id", 0, O(replica_id), .arg = "N", .min = 1, .max = INT64_MAX,
     .help = "this replica's id among --peers"},
    {DFS_OPT_STRING, "peers", 0, O(peers), .arg = "ID=RAFT=GRPC,...",
     .help = "the replicas of a replicated catalog, the same list on every one: id, Raft address "
             "(host:port; a host name is resolved at each connect) and gRPC address (what "
             "followers name to clients in dfs-leader); the initial members when the Raft "
             "directory is empty"},
    {DFS_OPT_FLAG, "join", 0, O(join),
     .help = "with --peers: a new replica joining a running cluster: it does not make a cluster "
             "of its own when its Raft directory is empty, but waits until the leader adds it "
             "(dfs metadata add ID=RAFT=GRPC)"},
    {DFS_OPT_INT, "election-timeout-ms", 0, O(election_timeout_ms), .arg = "N", .def = "300",
     .min = 50, .max = 60000,
     .help = "Raft election timeout (heartbeats every tenth of it; pre-vote on)"},
    /* A write's handler holds its worker until the command is applied (a log write and an
       apply), so the workers bound the writes in flight, and with them how many commands one log
       entry can carry: 16 clients of 1 KiB puts made 31% more puts/s with 16 than with 4
       (benchmarks/README.md, issue 19). */
    {DFS_OPT_INT, "threads", 0, O(threads), .arg = "N", .def = "16", .min = 1, .max = 256,
     .help = "worker threads (each write holds one until it is applied)"},
    {DFS_OPT_STRING, "ready-file", 0, O(ready_file), .arg = "PATH",
     .help = "write the served address here once ready"},
    {DFS_OPT_STRING, "metrics-listen", 0, O(metrics_listen), .arg = "ADDR",
     .help = "serve Prometheus metrics over HTTP on ADDR (GET /metrics, /healthz); default off"},
    {DFS_OPT_ENUM, "log-level", 0, O(level), .arg = "LEVEL", .def = "info", .choices = log_levels,
     .help = "debug, info, warn or error"},
    {DFS_OPT_INT, "replicas", 0, O(cfg.default_replicas), .arg = "K", .def = "3", .min = 1,
     .max = DFS_REPLICAS_MAX, .help = "default replicas per fragment"},
    {DFS_OPT_INT, "fragments", 0, O(cfg.default_fragments), .arg = "F", .def = "4", .min = 1,
     .max = DFS_FRAGMENTS_MAX, .help = "default fragments per file"},
    {DFS_OPT_ENUM, "policy", 0, O(cfg.default_policy), .arg = "P", .def = "random",
     .choices = policies, .help = "default placement: random, min_copy, buddy or least_used"},
    {DFS_OPT_INT, "heartbeat-ms", 0, O(cfg.heartbeat_interval_ms), .arg = "N", .def = "1000",
     .min = 10, .max = 600000, .help = "heartbeat interval told to storage nodes"},
    {DFS_OPT_INT, "suspect-after-ms", 0, O(cfg.suspect_after_ms), .arg = "N", .def = "5000",
     .min = 10, .max = 86400000, .help = "silence before a node is suspect"},
    {DFS_OPT_INT, "dead-after-ms", 0, O(cfg.dead_after_ms), .arg = "N", .def = "30000", .min = 10,
     .max = 86400000, .help = "silence before a node is dead"},
    {DFS_OPT_INT, "pending-timeout-ms", 0, O(cfg.pending_timeout_ms), .arg = "N", .def = "3600000",
     .min = 10, .max = 30LL * 86400000, .help = "an uncommitted put is collected after this"},
    {DFS_OPT_INT, "seed", 0, O(cfg.seed), .arg = "N", .min = 1, .max = INT64_MAX,
     .help = "placement randomness seed (default: random, logged)"},
    {DFS_OPT_INT, "scatter-width", 0, O(cfg.scatter_width), .arg = "S", .min = 0,
     .max = DFS_PLACEMENT_SCATTER_MAX,
     .help = "min_copy scatter width (default k-1: plain copysets)"},
    {DFS_OPT_INT, "group-size", 0, O(cfg.group_size), .arg = "G", .min = 0,
     .max = DFS_PLACEMENT_GROUP_MAX, .help = "buddy group size (default 2k; never 1)"},
    {DFS_OPT_INT, "repair-parallel", 0, O(cfg.repair_parallel), .arg = "N", .def = "4", .min = 1,
     .max = 256, .help = "repairs dispatched to storage nodes at once"},
    {DFS_OPT_INT, "rebalance-threshold", 0, O(rebalance_threshold), .arg = "PCT", .def = "10",
     .min = 0, .max = 100000,
     .help = "move data off an alive node whose recorded bytes exceed the mean by more than PCT "
             "percent; 0 = off"},
    {DFS_OPT_INT, "rebalance-max", 0, O(cfg.rebalance_max), .arg = "N", .def = "4", .min = 1,
     .max = 100000, .help = "moves queued per rebalance check"},
    {DFS_OPT_INT, "delete-grace-ms", 0, O(delete_grace_ms), .arg = "N", .def = "5000", .min = 0,
     .max = 86400000,
     .help = "a copy dropped while its file stays (moved, trimmed, bad) leaves its node this "
             "long after, so reads of it finish; 0 removes it at once"},
    {DFS_OPT_INT, "grace-ms", 0, O(grace_ms), .arg = "N", .def = "5000", .min = 0, .max = 600000,
     .help = "on SIGTERM, time calls in flight get to finish"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {DFS_OPT_VERSION, "version", 0, .help = "print the version"},
    {DFS_OPT_SECTION, .help = "Security (see docs/security.md):"},
    {DFS_OPT_STRING, "admin-token-file", 0, O(admin_token_file), .arg = "PATH",
     .help = "an admin bearer token: made and written here (mode 0600) if PATH does not exist, "
             "else the token in it is accepted"},
    {DFS_OPT_STRING, "node-token-file", 0, O(node_token_file), .arg = "PATH",
     .help = "the same for the enrollment token (role bootstrap) storage nodes present at their "
             "first registration (each then uses a node token of its own)"},
    {DFS_OPT_STRING, "gateway-token-file", 0, O(gateway_token_file), .arg = "PATH",
     .help = "the same for a token of role gateway (the S3 gateway's: files, buckets, S3 signing "
             "keys)"},
    {DFS_OPT_STRING, "s3-key-file", 0, O(s3_key_file), .arg = "PATH",
     .help = "S3 access keys (dfs token create --s3): their secrets derive from the 32-byte "
             "master key in PATH, made (mode 0600) if PATH does not exist; without it, no S3 keys"},
    {DFS_OPT_INT, "ticket-ttl-ms", 0, O(cfg.ticket_ttl_ms), .arg = "N", .def = "3600000",
     .min = 1000, .max = 30LL * 86400000,
     .help = "read/delete/repair tickets stay valid this long"},
    {DFS_OPT_STRING, "tls-cert", 0, O(tls.cert_file), .arg = "FILE",
     .help = "serve TLS with this certificate chain (PEM) ..."},
    {DFS_OPT_STRING, "tls-key", 0, O(tls.key_file), .arg = "FILE",
     .help = "... and its private key; also the client certificate presented to storage nodes"},
    {DFS_OPT_STRING, "tls-ca", 0, O(tls.ca_file), .arg = "FILE",
     .help = "CA that storage nodes' (and, with --tls-client-auth, clients') certificates must "
             "chain to"},
    {DFS_OPT_FLAG, "tls-client-auth", 0, O(tls.mutual),
     .help = "mutual TLS: require a client certificate from every caller"},
    {DFS_OPT_FLAG, "insecure", 0, O(insecure),
     .help = "allow plaintext on a non-loopback address (and to nodes)"},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = PROG,
    .version = VERSION,
    .usage = "--db FILE [options]",
    .about = "The dfs metadata service: keeps the catalog of files, fragments and storage nodes.",
    .opts = opts,
};

/* Raft log segments (two kept preallocated) and the free space below which writes are refused
   (catalog_sm.h): small, so that a catalog on a small disk still starts and refuses writes
   cleanly when that disk fills. */
#define SEGMENT_BYTES (512u << 10)
#define RESERVE_BYTES (2u * SEGMENT_BYTES)

/* One replica of --peers. */
struct peer {
    uint64_t id;
    char *raft; /* host:port */
    char *grpc; /* host:port */
};

/*
 * What the replication engine's hooks and the service's leadership hooks share. mu orders the
 * leadership news: on_change (replication thread) and main (when the service appears) both tell
 * the service under it, so the last word it hears is the latest.
 */
struct replica {
    dfs_catalog *cat;
    dfs_repl *repl;
    uint64_t self;
    struct peer *peers;
    size_t npeers;
    const struct options *o;
    pthread_mutex_t mu;
    dfs_metadata_service *svc; /* NULL until created */
    bool ready_leader;
};

static void peers_free(struct peer *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].raft);
        free(v[i].grpc);
    }
    free(v);
}

/* Parse --peers "id=raft=grpc,...": ids > 0 and distinct, both addresses host:port. */
static int peers_parse(const char *s, struct peer **out, size_t *nout, char **err)
{
    char **items = NULL;
    size_t n = 0;
    int rc = dfs_addr_list_split(s, &items, &n, err);
    if (rc != DFS_OK)
        return dfs_prefixerr(err, rc, "--peers");
    if (n > DFS_REPL_MEMBERS_MAX) {
        dfs_addr_list_free(items);
        return dfs_seterr(err, DFS_EINVAL, "--peers: at most %d replicas", DFS_REPL_MEMBERS_MAX);
    }
    struct peer *v = calloc(n, sizeof *v);
    if (v == NULL) {
        dfs_addr_list_free(items);
        return dfs_seterr(err, DFS_ENOMEM, "out of memory");
    }
    rc = DFS_OK;
    for (size_t i = 0; i < n && rc == DFS_OK; i++) {
        char *e1 = strchr(items[i], '=');
        char *e2 = e1 != NULL ? strchr(e1 + 1, '=') : NULL;
        char *end = NULL;
        unsigned long long id = strtoull(items[i], &end, 10);
        if (e1 == NULL || e2 == NULL || end != e1 || id == 0 || e1 + 1 == e2 || e2[1] == '\0' ||
            strchr(e1 + 1, ':') == NULL || strchr(e2 + 1, ':') == NULL) {
            rc = dfs_seterr(err, DFS_EINVAL,
                            "--peers: \"%s\" is not ID=RAFT_HOST:PORT=GRPC_HOST:PORT", items[i]);
            break;
        }
        for (size_t j = 0; j < i; j++)
            if (v[j].id == id)
                rc = dfs_seterr(err, DFS_EINVAL, "--peers: id %llu twice", id);
        v[i].id = id;
        v[i].raft = strndup(e1 + 1, (size_t)(e2 - e1 - 1));
        v[i].grpc = strdup(e2 + 1);
        if (rc == DFS_OK && (v[i].raft == NULL || v[i].grpc == NULL))
            rc = dfs_seterr(err, DFS_ENOMEM, "out of memory");
    }
    dfs_addr_list_free(items);
    if (rc != DFS_OK) {
        peers_free(v, n);
        return rc;
    }
    *out = v;
    *nout = n;
    return DFS_OK;
}

/* The engine's hooks: the catalog's (catalog_sm.h), plus leadership news for the service. */
static int rp_apply(void *ctx, uint64_t index, const struct dfs_repl_cmd *cmds, size_t n,
                    struct dfs_repl_result *results, char **errmsg)
{
    struct replica *rp = ctx;
    return dfs_catalog_sm_ops.apply(rp->cat, index, cmds, n, results, errmsg);
}

static int rp_snapshot_prepare(void *ctx, uint64_t index, void **snap, char **errmsg)
{
    struct replica *rp = ctx;
    return dfs_catalog_sm_ops.snapshot_prepare(rp->cat, index, snap, errmsg);
}

static int rp_snapshot_write(void *ctx, void *snap, const char *path, char **errmsg)
{
    struct replica *rp = ctx;
    return dfs_catalog_sm_ops.snapshot_write(rp->cat, snap, path, errmsg);
}

static void rp_snapshot_release(void *ctx, void *snap)
{
    struct replica *rp = ctx;
    dfs_catalog_sm_ops.snapshot_release(rp->cat, snap);
}

static int rp_restore(void *ctx, uint64_t index, const char *path, char **errmsg)
{
    struct replica *rp = ctx;
    return dfs_catalog_sm_ops.restore(rp->cat, index, path, errmsg);
}

static void rp_on_change(void *ctx, const struct dfs_repl_status *st)
{
    struct replica *rp = ctx;
    bool ready = st->role == DFS_REPL_LEADER && st->leader_ready;
    pthread_mutex_lock(&rp->mu);
    if (ready != rp->ready_leader)
        dfs_log(DFS_LOG_INFO, "replication %s term=%" PRIu64 " leader=%" PRIu64 " commit=%" PRIu64,
                ready ? "ready leader" : "not the leader", st->term, st->leader_id,
                st->commit_index);
    rp->ready_leader = ready;
    if (rp->svc != NULL)
        dfs_metadata_service_set_leader(rp->svc, ready);
    pthread_mutex_unlock(&rp->mu);
}

static const struct dfs_repl_ops replica_ops = {
    .apply = rp_apply,
    .snapshot_prepare = rp_snapshot_prepare,
    .snapshot_write = rp_snapshot_write,
    .snapshot_release = rp_snapshot_release,
    .restore = rp_restore,
    .on_change = rp_on_change,
};

/* The service's leadership hooks (metadata_service.h). */
static void rp_leader_hint(void *arg, char *buf, size_t cap)
{
    struct replica *rp = arg;
    struct dfs_repl_status st;
    dfs_repl_status_get(rp->repl, &st);
    buf[0] = '\0';
    if (st.leader_id == 0 || st.leader_id == rp->self)
        return;
    for (size_t i = 0; i < st.n_members; i++)
        if (st.members[i].id == st.leader_id && strchr(st.members[i].address, '=') != NULL)
            snprintf(buf, cap, "%s", strchr(st.members[i].address, '=') + 1);
    for (size_t i = 0; i < rp->npeers && buf[0] == '\0'; i++)
        if (rp->peers[i].id == st.leader_id)
            snprintf(buf, cap, "%s", rp->peers[i].grpc);
}

/* GetReplicas: this replica's status, and the members with their gRPC addresses from --peers. */
static void rp_replicas(void *arg, struct dfs_metadata_replicas *out)
{
    struct replica *rp = arg;
    struct dfs_repl_status *st = calloc(1, sizeof *st);
    if (st == NULL)
        return;
    dfs_repl_status_get(rp->repl, st);
    out->self.id = rp->self;
    snprintf(out->self.raft, sizeof out->self.raft, "%s", st->address);
    snprintf(out->self.role, sizeof out->self.role, "%s", dfs_repl_role_name(st->role));
    for (size_t i = 0; i < rp->npeers; i++)
        if (rp->peers[i].id == rp->self)
            snprintf(out->self.grpc, sizeof out->self.grpc, "%s", rp->peers[i].grpc);
    out->leader_ready = st->leader_ready;
    out->term = st->term;
    out->commit_index = st->commit_index;
    out->applied_index = st->applied_index;
    out->leader_id = st->leader_id;
    for (size_t i = 0; i < st->n_members && i < DFS_METADATA_REPLICAS_MAX; i++) {
        struct dfs_metadata_replica *m = &out->members[out->n_members++];
        m->id = st->members[i].id;
        /* "RAFT=GRPC" for a member added by dfs metadata add; else the gRPC address is --peers'. */
        const char *addr = st->members[i].address;
        const char *eq = strchr(addr, '=');
        snprintf(m->raft, sizeof m->raft, "%.*s",
                 (int)(eq != NULL ? eq - addr : (long)strlen(addr)), addr);
        snprintf(m->role, sizeof m->role, "%s", dfs_repl_member_role_name(st->members[i].role));
        if (eq != NULL)
            snprintf(m->grpc, sizeof m->grpc, "%s", eq + 1);
        for (size_t j = 0; j < rp->npeers && m->grpc[0] == '\0'; j++)
            if (rp->peers[j].id == m->id)
                snprintf(m->grpc, sizeof m->grpc, "%s", rp->peers[j].grpc);
    }
    free(st);
}

/* How long a read waits for its barrier; the client's deadline usually ends it first. */
#define READ_BARRIER_MS 5000

static int rp_barrier(void *arg, char **errmsg)
{
    struct replica *rp = arg;
    struct dfs_catalog_sm_answer ans;
    int rc = dfs_catalog_sm_barrier(rp->repl, READ_BARRIER_MS, &ans);
    if (rc != DFS_OK)
        return dfs_seterr(errmsg, rc, "%s", ans.message[0] != '\0' ? ans.message : "failed");
    return DFS_OK;
}

static int rp_on_lead(void *arg, dfs_metadata_service *svc, char **err)
{
    struct replica *rp = arg;
    const struct options *o = rp->o;
    if (o->admin_token_file != NULL &&
        dfs_metadata_service_bootstrap_token(svc, o->admin_token_file, DFS_ROLE_ADMIN, "admin",
                                             err) != DFS_OK)
        return DFS_EIO;
    if (o->node_token_file != NULL &&
        dfs_metadata_service_bootstrap_token(svc, o->node_token_file, DFS_ROLE_BOOTSTRAP, "nodes",
                                             err) != DFS_OK)
        return DFS_EIO;
    if (o->gateway_token_file != NULL &&
        dfs_metadata_service_bootstrap_token(svc, o->gateway_token_file, DFS_ROLE_GATEWAY,
                                             "gateway", err) != DFS_OK)
        return DFS_EIO;
    return DFS_OK;
}

/* A leadership transfer waited for (step_down). */
struct transfer_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int status;
    char message[256];
};

static void transfer_done(void *arg, const struct dfs_repl_outcome *out);

/* How long a membership change may take (a new member catching up from a snapshot). */
#define MEMBER_CHANGE_MS 60000

/*
 * dfs metadata add / remove, on the leader: one change at a time (libraft refuses a second one
 * while the first runs: DFS_REPL_REFUSED, said so). An added member's configuration address is
 * "RAFT=GRPC": its gRPC address is then replicated with the membership itself (the transport
 * dials RAFT), so every replica can name it in dfs-leader.
 */
static int rp_change(void *arg, bool add, uint64_t id, const char *raft, const char *grpc,
                     char **errmsg)
{
    struct replica *rp = arg;
    struct transfer_wait t = {.done = false};
    pthread_mutex_init(&t.mu, NULL);
    pthread_cond_init(&t.cv, NULL);
    char address[DFS_REPL_ADDRESS_MAX];
    int rc;
    if (add && (size_t)snprintf(address, sizeof address, "%s=%s", raft, grpc) >= sizeof address)
        rc = DFS_EINVAL;
    else if (add)
        rc = dfs_repl_add(rp->repl, id, address, MEMBER_CHANGE_MS, transfer_done, &t);
    else
        rc = dfs_repl_remove(rp->repl, id, MEMBER_CHANGE_MS, transfer_done, &t);
    if (rc == DFS_OK) {
        pthread_mutex_lock(&t.mu);
        while (!t.done)
            pthread_cond_wait(&t.cv, &t.mu);
        pthread_mutex_unlock(&t.mu);
        rc = t.status;
        if (rc != DFS_OK)
            dfs_seterr(errmsg, rc, "%s", t.message);
    } else {
        dfs_seterr(errmsg, rc, "cannot start the change");
    }
    pthread_cond_destroy(&t.cv);
    pthread_mutex_destroy(&t.mu);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO, "member %s id=%" PRIu64 " raft=%s grpc=%s", add ? "added" : "removed",
                id, add ? raft : "-", add ? grpc : "-");
    return rc;
}

static void transfer_done(void *arg, const struct dfs_repl_outcome *out)
{
    struct transfer_wait *t = arg;
    pthread_mutex_lock(&t->mu);
    t->done = true;
    t->status = out->status;
    snprintf(t->message, sizeof t->message, "%s", out->message);
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/*
 * On SIGTERM, a leader hands its leadership to the most up-to-date voter first, so the cluster
 * does not wait out an election timeout (a rolling restart then costs a transfer, not an
 * election). Bounded by the election timeout (a healthy hand-over takes a fraction of it; a slower
 * one saves nothing over an election). A failure is logged and the stop goes on. (The crash once seen
 * when a whole cluster stopped was not the transfer's: a leader stepping down for want of a quorum
 * with proposals queued appended the next one from inside libraft's step-down; replication.c,
 * raft_leads(), no longer does.)
 */
static void step_down(struct replica *rp, long long election_timeout_ms)
{
    struct dfs_repl_status st;
    dfs_repl_status_get(rp->repl, &st);
    if (st.role != DFS_REPL_LEADER || st.n_members < 2)
        return;
    struct transfer_wait t = {.done = false};
    pthread_mutex_init(&t.mu, NULL);
    pthread_cond_init(&t.cv, NULL);
    int64_t t0 = dfs_clock_mono_ns();
    long long wait_ms = election_timeout_ms;
    if (dfs_repl_transfer(rp->repl, 0, wait_ms, transfer_done, &t) == DFS_OK) {
        pthread_mutex_lock(&t.mu);
        while (!t.done)
            pthread_cond_wait(&t.cv, &t.mu);
        pthread_mutex_unlock(&t.mu);
        if (t.status == DFS_OK)
            dfs_log(DFS_LOG_INFO, "leadership handed over ms=%" PRId64,
                    (dfs_clock_mono_ns() - t0) / 1000000);
        else
            dfs_log(DFS_LOG_WARN, "leadership transfer failed err=\"%s\"", t.message);
    }
    pthread_cond_destroy(&t.cv);
    pthread_mutex_destroy(&t.mu);
}

/*
 * Several replicas (--peers): open this one (the members from --peers when its Raft directory
 * is empty) and return at once: it serves (refusing, while it follows) whatever its role; the
 * service learns of leadership from on_change. *w gets the guarded proposer's state.
 */
static int start_cluster(const struct options *o, struct replica *rp, const char *dir,
                         char *datadir, struct dfs_catalog_sm_writer *w, char **err)
{
    uint64_t applied = 0;
    int rc = dfs_catalog_applied_index(rp->cat, &applied, err);
    if (rc != DFS_OK)
        return rc;
    struct dfs_repl_member members[DFS_REPL_MEMBERS_MAX];
    const char *own = NULL;
    for (size_t i = 0; i < rp->npeers; i++) {
        members[i] = (struct dfs_repl_member){.id = rp->peers[i].id, .address = rp->peers[i].raft};
        if (rp->peers[i].id == rp->self)
            own = rp->peers[i].raft;
    }
    if (own == NULL)
        return dfs_seterr(err, DFS_EINVAL, "--replica-id %" PRIu64 " is not in --peers", rp->self);
    struct dfs_repl_options ro = {
        .id = rp->self,
        .address = own,
        .bind_address = o->raft_listen,
        .dir = dir,
        /* --join: no members, so an empty Raft directory waits to be added instead of
           bootstrapping a cluster of its own. */
        .members = o->join ? NULL : members,
        .n_members = o->join ? 0 : rp->npeers,
        .applied_index = applied,
        .election_timeout_ms = (unsigned)o->election_timeout_ms,
        .segment_bytes = SEGMENT_BYTES,
        .ops = &replica_ops,
        .ctx = rp,
    };
    rc = dfs_repl_create(&ro, &rp->repl, err);
    if (rc != DFS_OK)
        return rc;
    rc = dfs_catalog_set_relaxed_sync(rp->cat, err);
    if (rc != DFS_OK) {
        dfs_repl_destroy(rp->repl);
        rp->repl = NULL;
        return rc;
    }
    *w = (struct dfs_catalog_sm_writer){
        .repl = rp->repl, .dir = datadir, .reserve_bytes = RESERVE_BYTES};
    dfs_catalog_set_proposer(rp->cat, dfs_catalog_sm_guarded_proposer, w);
    dfs_log(DFS_LOG_INFO, "replication started id=%" PRIu64 " members=%zu raft=%s applied=%" PRIu64,
            rp->self, rp->npeers, own, applied);
    return DFS_OK;
}

/*
 * A catalog that has applied log entries but whose log is gone (a backup copy served as it is, or
 * a lost <db>.raft) must not start: a new log's first entries would sit at indexes the catalog
 * already applied, and be skipped. Such a catalog becomes a new cluster's with restore.
 */
static int check_log_belongs(const char *db, const char *raft_dir, uint64_t applied, char **err)
{
    if (applied == 0)
        return DFS_OK;
    char m1[PATH_MAX], m2[PATH_MAX];
    snprintf(m1, sizeof m1, "%s/raft/metadata1", raft_dir);
    snprintf(m2, sizeof m2, "%s/raft/metadata2", raft_dir);
    if (access(m1, F_OK) == 0 || access(m2, F_OK) == 0)
        return DFS_OK;
    return dfs_seterr(err, DFS_EPRECOND,
                      "catalog %s has applied %" PRIu64 " log entries but its Raft log %s is "
                      "missing (a backup, or a lost log): make a new cluster's catalog from it "
                      "with '" PROG " restore --from %s --db NEW'",
                      db, applied, raft_dir, db);
}

/*
 * The catalog's replication (issue 16, services/metadata/REPLICATION.md): a one-member Raft
 * cluster whose log and snapshots live beside the catalog (<db>.raft). Every catalog write
 * becomes a command proposed to it (dfs_catalog_set_proposer) and is applied, in log order, in
 * one transaction that records its index; a restart replays what the catalog lacks. The log is
 * then the durable record, so the catalog commits without its own fsync (synchronous=NORMAL).
 * Returns once this replica leads and has applied its log, or an error. ":memory:": none.
 */
static int start_replication(const struct options *o, struct replica *rp,
                             struct dfs_catalog_sm_writer *w, char **err)
{
    dfs_catalog *cat = rp->cat;
    if (strcmp(o->db, ":memory:") == 0)
        return DFS_OK;
    uint64_t applied = 0;
    int rc = dfs_catalog_applied_index(cat, &applied, err);
    if (rc != DFS_OK)
        return rc;
    size_t n = strlen(o->db) + sizeof ".raft";
    char *dir = malloc(n);
    if (dir == NULL)
        return dfs_seterr(err, DFS_ENOMEM, "out of memory");
    snprintf(dir, n, "%s.raft", o->db);
    rc = check_log_belongs(o->db, dir, applied, err);
    if (rc != DFS_OK) {
        free(dir);
        return rc;
    }
    char *datadir = strdup(o->db);
    if (datadir == NULL) {
        free(dir);
        return dfs_seterr(err, DFS_ENOMEM, "out of memory");
    }
    char *slash = strrchr(datadir, '/');
    if (slash == NULL)
        snprintf(datadir, strlen(datadir) + 1, ".");
    else if (slash == datadir)
        slash[1] = '\0';
    else
        *slash = '\0';
    if (rp->npeers > 0) {
        rc = start_cluster(o, rp, dir, datadir, w, err);
        free(dir);
        if (rc != DFS_OK)
            free(datadir);
        return rc;
    }
    const char *raft_listen = o->raft_listen != NULL ? o->raft_listen : "127.0.0.1:0";
    struct dfs_repl_member self = {.id = 1, .address = raft_listen};
    struct dfs_repl_options ro = {
        .id = 1,
        .address = raft_listen,
        .dir = dir,
        .members = &self,
        .n_members = 1,
        .applied_index = applied,
        .election_timeout_ms = (unsigned)o->election_timeout_ms,
        .segment_bytes = SEGMENT_BYTES,
        .ops = &dfs_catalog_sm_ops,
        .ctx = cat,
    };
    dfs_repl *r = NULL;
    rc = dfs_repl_create(&ro, &r, err);
    free(dir);
    if (rc != DFS_OK) {
        free(datadir);
        return rc;
    }
    int64_t deadline =
        dfs_clock_mono_ns() + (int64_t)(10 * o->election_timeout_ms + 10000) * 1000000;
    struct dfs_repl_status st;
    for (;;) {
        dfs_repl_status_get(r, &st);
        if (st.role == DFS_REPL_LEADER && st.leader_ready)
            break;
        if (st.role == DFS_REPL_FAILED || dfs_clock_mono_ns() > deadline) {
            rc = dfs_seterr(err, DFS_EUNAVAIL, "replication: no ready leader (%s%s%s)",
                            dfs_repl_role_name(st.role), st.failure[0] ? ": " : "", st.failure);
            dfs_repl_destroy(r);
            free(datadir);
            return rc;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    rc = dfs_catalog_set_relaxed_sync(cat, err);
    if (rc != DFS_OK) {
        dfs_repl_destroy(r);
        free(datadir);
        return rc;
    }
    *w = (struct dfs_catalog_sm_writer){.repl = r, .dir = datadir, .reserve_bytes = RESERVE_BYTES};
    dfs_catalog_set_proposer(cat, dfs_catalog_sm_guarded_proposer, w);
    dfs_log(DFS_LOG_INFO, "replication ready members=1 raft=%s term=%" PRIu64 " applied=%" PRIu64,
            st.address, st.term, st.state_index);
    return DFS_OK;
}

/*
 * What the table cannot say: --db is required, --group-size is never 1, and the values the
 * config spells differently (0 turns rebalancing off: a negative threshold; 0 removes dropped
 * copies at once: a negative grace). DFS_EINVAL with *err.
 */
static int check(struct options *o, char **err)
{
    if (o->db == NULL)
        return dfs_seterr(err, DFS_EINVAL, "--db FILE is required");
    if (o->cfg.group_size == 1)
        return dfs_seterr(err, DFS_EINVAL, "--group-size must be 0 (2k) or at least 2");
    o->cfg.rebalance_threshold_pct =
        o->rebalance_threshold == 0 ? -1 : (int32_t)o->rebalance_threshold;
    o->cfg.delete_grace_ms = o->delete_grace_ms > 0 ? o->delete_grace_ms : -1;
    if ((o->peers != NULL) != (o->replica_id != 0))
        return dfs_seterr(err, DFS_EINVAL, "--peers and --replica-id go together");
    if (o->join && o->peers == NULL)
        return dfs_seterr(err, DFS_EINVAL, "--join needs --peers and --replica-id");
    if (o->peers != NULL && strcmp(o->db, ":memory:") == 0)
        return dfs_seterr(err, DFS_EINVAL, "--peers needs a --db file (its log lives beside it)");
    return DFS_OK;
}

/* dfs-metadata backup --db FILE --to FILE: an online, consistent copy of a catalog in use. */
struct backup_options {
    const char *db;
    const char *to;
};

static const struct dfs_opt backup_opts[] = {
    {DFS_OPT_STRING, "db", 0, DFS_OPT_FIELD(struct backup_options, db), .arg = "FILE",
     .help = "the catalog (a running dfs-metadata may be serving it)"},
    {DFS_OPT_STRING, "to", 0, DFS_OPT_FIELD(struct backup_options, to), .arg = "FILE",
     .help = "the copy to write (must not exist)"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {0},
};

static const struct dfs_opts_spec backup_spec = {
    .prog = PROG " backup",
    .version = VERSION,
    .usage = "--db FILE --to FILE",
    .about = "Copy the catalog while it serves: one read transaction, so the copy is the catalog "
             "as of a whole number of applied log entries (sqlite3_backup). To start a new "
             "cluster from the copy: " PROG " restore.",
    .opts = backup_opts,
};

static int backup_main(int argc, char **argv)
{
    struct backup_options b = {0};
    dfs_opts *args = NULL;
    int status = 2;
    if (!dfs_opts_main(&backup_spec, argc, argv, environ, &b, &args, &status))
        return status;
    dfs_opts_destroy(args);
    if (b.db == NULL || b.to == NULL) {
        fprintf(stderr, PROG " backup: --db FILE and --to FILE are required\n");
        return 2;
    }
    char *err = NULL;
    uint64_t index = 0;
    if (dfs_catalog_backup(b.db, b.to, &index, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "backup failed");
        free(err);
        return 1;
    }
    printf("backed up %s to %s at applied index %" PRIu64 "\n", b.db, b.to, index);
    return 0;
}

/* dfs-metadata restore --from BACKUP --db FILE: a new cluster's catalog from a backup. */
struct restore_options {
    const char *from;
    const char *db;
};

static const struct dfs_opt restore_opts[] = {
    {DFS_OPT_STRING, "from", 0, DFS_OPT_FIELD(struct restore_options, from), .arg = "FILE",
     .help = "the backup (" PROG " backup's copy)"},
    {DFS_OPT_STRING, "db", 0, DFS_OPT_FIELD(struct restore_options, db), .arg = "FILE",
     .help = "the new catalog to make (must not exist; serve it with " PROG " --db FILE)"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {0},
};

static const struct dfs_opts_spec restore_spec = {
    .prog = PROG " restore",
    .version = VERSION,
    .usage = "--from BACKUP --db FILE",
    .about = "Make the catalog of a new cluster from a backup: its Raft log starts empty, and "
             "fragments the storage nodes report that the backup does not know (files committed "
             "after it) are kept as orphans instead of deleted (" PROG " orphans lists them).",
    .opts = restore_opts,
};

static int restore_main(int argc, char **argv)
{
    struct restore_options r = {0};
    dfs_opts *args = NULL;
    int status = 2;
    if (!dfs_opts_main(&restore_spec, argc, argv, environ, &r, &args, &status))
        return status;
    dfs_opts_destroy(args);
    if (r.from == NULL || r.db == NULL) {
        fprintf(stderr, PROG " restore: --from BACKUP and --db FILE are required\n");
        return 2;
    }
    char *err = NULL;
    uint64_t from = 0;
    if (dfs_catalog_restore_file(r.from, r.db, dfs_clock_wall_ms(), &from, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "restore failed");
        free(err);
        return 1;
    }
    printf("restored %s (applied index %" PRIu64 ") into %s: a new cluster's catalog\n", r.from,
           from, r.db);
    return 0;
}

/* dfs-metadata orphans --db FILE: what a restored catalog keeps that none of its files knows. */
static const struct dfs_opt orphans_opts[] = {
    {DFS_OPT_STRING, "db", 0, DFS_OPT_FIELD(struct restore_options, db), .arg = "FILE",
     .help = "the catalog (a running dfs-metadata may be serving it)"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {0},
};

static const struct dfs_opts_spec orphans_spec = {
    .prog = PROG " orphans",
    .version = VERSION,
    .usage = "--db FILE",
    .about = "List the fragments a restored catalog keeps as orphans: fragment id, node id and "
             "when first reported, one per line.",
    .opts = orphans_opts,
};

static void print_orphan(void *arg, const char *fragment_id, const char *node_id, int64_t seen)
{
    (void)arg;
    printf("%s %s %" PRId64 "\n", fragment_id, node_id, seen);
}

static int orphans_main(int argc, char **argv)
{
    struct restore_options r = {0};
    dfs_opts *args = NULL;
    int status = 2;
    if (!dfs_opts_main(&orphans_spec, argc, argv, environ, &r, &args, &status))
        return status;
    dfs_opts_destroy(args);
    if (r.db == NULL) {
        fprintf(stderr, PROG " orphans: --db FILE is required\n");
        return 2;
    }
    char *err = NULL;
    int rc = dfs_catalog_orphans_file(r.db, SIZE_MAX, print_orphan, NULL, &err);
    if (rc != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "cannot list orphans");
        free(err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "backup") == 0)
        return backup_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "restore") == 0)
        return restore_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "orphans") == 0)
        return orphans_main(argc - 1, argv + 1);
    sigset_t signals;
    dfs_daemon_block_signals(&signals);
    struct options o;
    memset(&o, 0, sizeof o);
    dfs_opts *args = NULL;
    int status = 2;
    if (!dfs_opts_main(&spec, argc, argv, environ, &o, &args, &status))
        return status;
    dfs_opts_destroy(args);
    char *err = NULL;
    if (check(&o, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s (see " PROG " --help)\n", err != NULL ? err : "bad arguments");
        free(err);
        return 2;
    }
    dfs_log_init(PROG, o.level);
    dfs_rpc_route_grpc_logs();

    dfs_catalog *cat = NULL;
    dfs_metadata_service *svc = NULL;
    dfs_rpc_server *srv = NULL;
    /* Inspection: health and reflection on the gRPC port, metrics on their own port. */
    static const char *const health_names[] = {"", "dfs.v1.Metadata"};
    dfs_rpc_health *health = NULL;
    dfs_rpc_reflection *refl = NULL;
    dfs_metrics *metrics = NULL;
    dfs_metrics_http *http = NULL;
    dfs_readiness *ready = NULL;
    struct dfs_catalog_sm_writer writer = {0};
    struct replica rp = {.self = (uint64_t)o.replica_id, .o = &o};
    pthread_mutex_init(&rp.mu, NULL);
    struct dfs_metadata_leadership leadership = {.leader_hint = rp_leader_hint,
                                                 .barrier = rp_barrier,
                                                 .on_lead = rp_on_lead,
                                                 .replicas = rp_replicas,
                                                 .change = rp_change,
                                                 .arg = &rp};
    if (o.peers != NULL) {
        if (peers_parse(o.peers, &rp.peers, &rp.npeers, &err) != DFS_OK) {
            fprintf(stderr, PROG ": %s (see " PROG " --help)\n", err);
            free(err);
            return 2;
        }
        bool listed = false;
        for (size_t i = 0; i < rp.npeers; i++)
            listed = listed || rp.peers[i].id == rp.self;
        if (!listed) {
            fprintf(stderr,
                    PROG ": --replica-id %" PRIu64 " is not in --peers (see " PROG " --help)\n",
                    rp.self);
            peers_free(rp.peers, rp.npeers);
            return 2;
        }
        o.cfg.leadership = &leadership;
    }
    /* Several replicas: the token files are written (or registered) by whichever one leads,
       when it leads (rp_on_lead), not here. */
    bool tokens_now = rp.npeers == 0;
    struct dfs_metadata_probe probe = {.db_path = o.db};
    status = 1;
    dfs_rpc_tls *tls = NULL;
    if (dfs_rpc_tls_create_optional(&o.tls, &tls, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err);
        free(err);
        return 2;
    }
    struct dfs_rpc_link_security sec = {.tls = tls, .insecure = o.insecure};
    o.cfg.node_security = &sec;
    struct dfs_rpc_server_config scfg = {
        .listen = o.listen, .threads = (int)o.threads, .security = &sec};
    struct dfs_metrics_config mcfg = {.program = PROG, .version = VERSION};
    uint8_t s3_master[DFS_S3KEYS_MASTER_LEN];
    if (o.s3_key_file != NULL) {
        if (dfs_s3keys_load(o.s3_key_file, s3_master, &err) != DFS_OK) {
            fprintf(stderr, PROG ": %s\n", err);
            free(err);
            dfs_rpc_tls_destroy(tls);
            return 2;
        }
        o.cfg.s3_master_key = s3_master;
    }
    if (dfs_catalog_open(o.db, &cat, &err) != DFS_OK ||
        (rp.cat = cat, start_replication(&o, &rp, &writer, &err)) != DFS_OK ||
        dfs_metadata_service_create(cat, &o.cfg, &svc, &err) != DFS_OK ||
        (tokens_now && o.admin_token_file != NULL &&
         dfs_metadata_service_bootstrap_token(svc, o.admin_token_file, DFS_ROLE_ADMIN, "admin",
                                              &err) != DFS_OK) ||
        (tokens_now && o.node_token_file != NULL &&
         dfs_metadata_service_bootstrap_token(svc, o.node_token_file, DFS_ROLE_BOOTSTRAP, "nodes",
                                              &err) != DFS_OK) ||
        (tokens_now && o.gateway_token_file != NULL &&
         dfs_metadata_service_bootstrap_token(svc, o.gateway_token_file, DFS_ROLE_GATEWAY,
                                              "gateway", &err) != DFS_OK) ||
        dfs_rpc_health_create(&health, &err) != DFS_OK ||
        dfs_rpc_reflection_create(dfs_descriptor_set, dfs_descriptor_set_size, &refl, &err) !=
            DFS_OK ||
        dfs_metrics_create(&mcfg, &metrics, &err) != DFS_OK ||
        dfs_rpc_server_create(&scfg, &srv, &err) != DFS_OK ||
        dfs_metadata_service_register(svc, srv, &err) != DFS_OK ||
        dfs_rpc_health_register(health, srv, &err) != DFS_OK ||
        dfs_rpc_reflection_register(refl, srv, &err) != DFS_OK ||
        dfs_metrics_watch_server(metrics, srv, &err) != DFS_OK ||
        dfs_rpc_server_start(srv, &err) != DFS_OK ||
        dfs_metadata_service_start(svc, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "cannot start");
        goto out;
    }
    if (rp.npeers > 0) {
        /* From now on the service hears of every leadership change (rp_on_change). */
        pthread_mutex_lock(&rp.mu);
        rp.svc = svc;
        dfs_metadata_service_set_leader(svc, rp.ready_leader);
        pthread_mutex_unlock(&rp.mu);
    }
    probe.cat = cat;
    probe.repl = rp.npeers > 0 ? rp.repl : NULL;
    probe.max_lag = DFS_METADATA_PROBE_MAX_LAG;
    probe.max_silence_ms = 2 * (int64_t)o.election_timeout_ms;
    struct dfs_readiness_config rcfg = {
        .health = health,
        .services = health_names,
        .nservices = sizeof health_names / sizeof health_names[0],
        .liveness = "liveness",
        .check = dfs_metadata_probe_check,
        .arg = &probe,
    };
    struct dfs_metrics_http_config hcfg = {
        .listen = o.metrics_listen, .metrics = metrics, .health = health};
    if (dfs_readiness_start(&rcfg, &ready, &err) != DFS_OK ||
        dfs_metrics_add_collector(metrics, dfs_readiness_collect, ready, &err) != DFS_OK ||
        dfs_metrics_add_collector(metrics, dfs_metadata_probe_collect, &probe, &err) != DFS_OK ||
        dfs_metrics_add_collector(metrics, dfs_metadata_service_collect, svc, &err) != DFS_OK ||
        (writer.repl != NULL &&
         dfs_metrics_add_collector(metrics, dfs_catalog_sm_collect, writer.repl, &err) != DFS_OK) ||
        (o.metrics_listen != NULL && dfs_metrics_http_start(&hcfg, &http, &err) != DFS_OK)) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "cannot start");
        goto out;
    }
    char addr[300];
    if (dfs_daemon_advertise(o.listen, dfs_rpc_server_port(srv), addr, sizeof addr, NULL) != DFS_OK)
        snprintf(addr, sizeof addr, "localhost:%d", dfs_rpc_server_port(srv));
    dfs_log(DFS_LOG_INFO, "serving addr=%s db=%s tls=%s metrics=%s version=" VERSION, addr, o.db,
            tls == NULL    ? "off"
            : o.tls.mutual ? "mutual"
                           : "on",
            http != NULL ? dfs_metrics_http_address(http) : "off");
    if (o.ready_file != NULL) {
        char line[320];
        snprintf(line, sizeof line, "%s\n", addr);
        if (dfs_daemon_write_file(o.ready_file, line, &err) != DFS_OK) {
            fprintf(stderr, PROG ": %s\n", err);
            goto out;
        }
    }
    int sig = dfs_daemon_wait_signal(&signals);
    /* NOT_SERVING first: health watchers and probes learn of the stop while the port is open. */
    dfs_rpc_health_shutdown(health);
    dfs_log(DFS_LOG_INFO, "stopping signal=%d grace_ms=%lld", sig, o.grace_ms);
    /* A leader hands over first; from then on this replica refuses calls with the new leader's
       address, while those in flight finish. */
    if (rp.npeers > 0)
        step_down(&rp, o.election_timeout_ms);
    status = 0;
out:
    free(err);
    if (health != NULL)
        dfs_rpc_health_shutdown(health);
    /* Calls in flight finish (or are cancelled), then the scrapes and checks that read the
       catalog stop, then everything goes. */
    if (srv != NULL)
        dfs_rpc_server_stop(srv, o.grace_ms);
    dfs_metrics_http_stop(http);
    dfs_readiness_stop(ready);
    pthread_mutex_lock(&rp.mu);
    rp.svc = NULL;
    pthread_mutex_unlock(&rp.mu);
    dfs_metadata_service_destroy(svc);
    /* Nothing proposes any more (handlers and background threads are gone): the log stops,
       then the catalog closes. */
    dfs_repl_destroy(writer.repl);
    if (cat != NULL)
        dfs_catalog_set_proposer(cat, NULL, NULL);
    free((char *)writer.dir);
    dfs_rpc_server_destroy(srv);
    dfs_rpc_reflection_destroy(refl);
    dfs_rpc_health_destroy(health);
    dfs_metrics_destroy(metrics);
    dfs_catalog_close(cat);
    dfs_rpc_tls_destroy(tls);
    peers_free(rp.peers, rp.npeers);
    pthread_mutex_destroy(&rp.mu);
    if (status == 0)
        dfs_log(DFS_LOG_INFO, "stopped");
    return status;
}
