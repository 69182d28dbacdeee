/* A storage node's registrar: RegisterNode with backoff, then Heartbeat at the service's interval. */
#include "services/storage/heartbeat.h"

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/token.h"
#include "dfs/v1/metadata.pb-c.h"
#include "services/rpc/client.h"
#include "services/rpc/leader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_RPC_TIMEOUT_MS 2000
#define DEFAULT_RETRY_MAX_MS   2000
#define FIRST_RETRY_MS         100
#define DEFAULT_INTERVAL_MS    1000
/* A failing call is logged the first time, then once every this many failures. */
#define LOG_EVERY              10

/*
 * Fields above `mu` are set by start and only read afterwards. `mu` guards the rest; the thread
 * waits on `cv` (CLOCK_MONOTONIC) between calls, and stop and registration signal it.
 */
struct dfs_heartbeat {
    char *metadata, *node_id, *address, *zone;
    dfs_frag_store *store;
    int64_t rpc_timeout_ms, retry_max_ms;
    dfs_rpc_leader *ch;        /* presents the node's own token */
    bool own_ch;               /* ch was opened here (not the config's replicas) */
    dfs_rpc_leader *enroll_ch; /* presents the enrollment token; NULL: none */
    /* The node's own token, as an enrollment names it. */
    char token_id[DFS_TOKEN_ID_HEX + 1];
    uint8_t token_hash[DFS_TOKEN_HASH_LEN];
    pthread_t thread;
    void (*on_registered)(void *arg, const uint8_t *ticket_key, size_t len, uint64_t registration);
    void *on_registered_arg;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    bool registered;       /* at least once */
    uint64_t registration; /* the current one; 0 before the first */
    char *last_error;
};

static struct timespec to_timespec(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    return ts;
}

/* Wait on cv until deadline_ns (monotonic) or stop. Returns false when stopping. */
static bool sleep_until(dfs_heartbeat *hb, int64_t deadline_ns)
{
    pthread_mutex_lock(&hb->mu);
    while (!hb->stopping && dfs_clock_mono_ns() < deadline_ns) {
        struct timespec until = to_timespec(deadline_ns);
        pthread_cond_timedwait(&hb->cv, &hb->mu, &until);
    }
    bool go_on = !hb->stopping;
    pthread_mutex_unlock(&hb->mu);
    return go_on;
}

/* Record the outcome of a call: err (taken) is the failure's message, NULL for a success. */
static void set_last_error(dfs_heartbeat *hb, char *err)
{
    pthread_mutex_lock(&hb->mu);
    free(hb->last_error);
    hb->last_error = err;
    pthread_mutex_unlock(&hb->mu);
}

static void usage(dfs_heartbeat *hb, struct dfs_frag_store_stats *st)
{
    /* On a statvfs failure the counters are still right and capacity/free read 0. */
    (void)dfs_frag_store_stats(hb->store, st);
}

/* RegisterNode with the node's own token, or (enroll) an enrollment with the enrollment token. */
static int call_register(dfs_heartbeat *hb, bool enroll, uint32_t *interval_ms, uint8_t *key,
                         size_t *keylen, uint64_t *registration, char **err)
{
    struct dfs_frag_store_stats st;
    usage(hb, &st);
    Dfs__V1__RegisterNodeRequest req = DFS__V1__REGISTER_NODE_REQUEST__INIT;
    req.node_id = hb->node_id;
    req.address = hb->address;
    req.zone = hb->zone;
    req.capacity_bytes = st.capacity_bytes;
    req.used_bytes = st.used_bytes;
    req.free_bytes = st.free_bytes;
    req.fragment_count = st.fragments;
    if (enroll) {
        req.node_token_id = hb->token_id;
        req.node_token_sha256.data = hb->token_hash;
        req.node_token_sha256.len = sizeof hb->token_hash;
    }
    ProtobufCMessage *resp = NULL;
    int rc = dfs_rpc_leader_unary(enroll ? hb->enroll_ch : hb->ch, "/dfs.v1.Metadata/RegisterNode",
                                  &req.base, &dfs__v1__register_node_response__descriptor, &resp,
                                  hb->rpc_timeout_ms, 0, 0, NULL, err);
    if (rc != DFS_OK)
        return dfs_prefixerr(err, rc, "%s", enroll ? "RegisterNode (enrolling)" : "RegisterNode");
    const Dfs__V1__RegisterNodeResponse *r = (const Dfs__V1__RegisterNodeResponse *)resp;
    uint32_t ms = r->heartbeat_interval_ms;
    *interval_ms = ms != 0 ? ms : DEFAULT_INTERVAL_MS;
    *registration = r->registration;
    rc = DFS_OK;
    if (r->ticket_key.len == 0 || r->ticket_key.len > DFS_HEARTBEAT_KEY_MAX || r->registration == 0)
        rc = dfs_seterr(err, DFS_EPRECOND,
                        "RegisterNode: the metadata service gave no ticket key or registration "
                        "(too old?)");
    else
        memcpy(key, r->ticket_key.data, (*keylen = r->ticket_key.len));
    if (r->ticket_key.data != NULL)
        explicit_bzero(r->ticket_key.data, r->ticket_key.len);
    protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

static int call_heartbeat(dfs_heartbeat *hb, uint32_t *interval_ms, bool *known, char **err)
{
    struct dfs_frag_store_stats st;
    usage(hb, &st);
    Dfs__V1__HeartbeatRequest req = DFS__V1__HEARTBEAT_REQUEST__INIT;
    req.registration = dfs_heartbeat_registration(hb);
    req.capacity_bytes = st.capacity_bytes;
    req.used_bytes = st.used_bytes;
    req.free_bytes = st.free_bytes;
    req.fragment_count = st.fragments;
    ProtobufCMessage *resp = NULL;
    int rc = dfs_rpc_leader_unary(hb->ch, "/dfs.v1.Metadata/Heartbeat", &req.base,
                                  &dfs__v1__heartbeat_response__descriptor, &resp,
                                  hb->rpc_timeout_ms, 0, DFS_RPC_LEADER_IDEMPOTENT, NULL, err);
    if (rc != DFS_OK)
        return dfs_prefixerr(err, rc, "Heartbeat");
    const Dfs__V1__HeartbeatResponse *r = (const Dfs__V1__HeartbeatResponse *)resp;
    *known = r->known;
    if (r->heartbeat_interval_ms != 0)
        *interval_ms = r->heartbeat_interval_ms;
    protobuf_c_message_free_unpacked(resp, NULL);
    return DFS_OK;
}

static void *run(void *arg)
{
    dfs_heartbeat *hb = arg;
    bool known = false; /* registered, as far as this node can tell */
    uint32_t interval_ms = DEFAULT_INTERVAL_MS;
    unsigned failures = 0; /* consecutive failed calls */
    int64_t backoff_ms = FIRST_RETRY_MS;
    int64_t next_ns = dfs_clock_mono_ns();
    while (sleep_until(hb, next_ns)) {
        int64_t started = dfs_clock_mono_ns();
        char *err = NULL;
        if (!known) {
            uint8_t key[DFS_HEARTBEAT_KEY_MAX];
            size_t keylen = 0;
            uint64_t registration = 0;
            int rc = call_register(hb, false, &interval_ms, key, &keylen, &registration, &err);
            bool enrolled = false;
            if (rc == DFS_EUNAUTH && hb->enroll_ch != NULL) {
                /* Its own token is unknown: the node's first registration (or a new catalog). */
                char *first = err, *second = NULL;
                err = NULL;
                rc = call_register(hb, true, &interval_ms, key, &keylen, &registration, &second);
                enrolled = rc == DFS_OK;
                if (rc != DFS_OK)
                    dfs_seterr(&err, rc, "%s; %s", first != NULL ? first : "?",
                               second != NULL ? second : dfs_strerror(rc));
                free(first);
                free(second);
            }
            if (rc != DFS_OK) {
                failures++;
                if (failures % LOG_EVERY == 1)
                    dfs_log(DFS_LOG_WARN,
                            "cannot register with the metadata service: %s metadata=%s "
                            "failures=%u retry_ms=%lld",
                            err != NULL ? err : dfs_strerror(rc), hb->metadata, failures,
                            (long long)backoff_ms);
                set_last_error(hb, err);
                next_ns = dfs_clock_mono_ns() + backoff_ms * 1000000;
                backoff_ms = backoff_ms * 2 > hb->retry_max_ms ? hb->retry_max_ms : backoff_ms * 2;
                continue;
            }
            known = true;
            backoff_ms = FIRST_RETRY_MS;
            dfs_log(DFS_LOG_INFO,
                    "%s with the metadata service metadata=%s node=%s addr=%s "
                    "interval_ms=%u failures_before=%u",
                    enrolled ? "enrolled" : "registered", hb->metadata, hb->node_id, hb->address,
                    interval_ms, failures);
            failures = 0;
            set_last_error(hb, NULL);
            pthread_mutex_lock(&hb->mu);
            hb->registration = registration;
            pthread_mutex_unlock(&hb->mu);
            /* The key first: a node that says it is registered must be able to check tickets. */
            if (hb->on_registered != NULL)
                hb->on_registered(hb->on_registered_arg, key, keylen, registration);
            explicit_bzero(key, sizeof key);
            pthread_mutex_lock(&hb->mu);
            hb->registered = true;
            pthread_cond_broadcast(&hb->cv);
            pthread_mutex_unlock(&hb->mu);
        } else {
            bool still_known = true;
            int rc = call_heartbeat(hb, &interval_ms, &still_known, &err);
            if (rc == DFS_EPRECOND) {
                /* Another process registered this node since: a copy of its data directory,
                   or this one was silent so long that a restart took over. */
                dfs_log(DFS_LOG_WARN,
                        "this node's registration was replaced by a newer one: registering "
                        "again node=%s err=%s",
                        hb->node_id, err != NULL ? err : "");
                set_last_error(hb, err);
                known = false;
                next_ns = dfs_clock_mono_ns();
                continue;
            }
            if (rc != DFS_OK) {
                failures++;
                if (failures % LOG_EVERY == 1)
                    dfs_log(DFS_LOG_WARN, "heartbeat failed: %s metadata=%s failures=%u",
                            err != NULL ? err : dfs_strerror(rc), hb->metadata, failures);
                set_last_error(hb, err);
            } else {
                if (failures > 0)
                    dfs_log(DFS_LOG_INFO,
                            "heartbeats reach the metadata service again "
                            "metadata=%s failures_before=%u",
                            hb->metadata, failures);
                failures = 0;
                set_last_error(hb, NULL);
                if (!still_known) {
                    dfs_log(DFS_LOG_INFO,
                            "the metadata service does not know this node: registering again "
                            "node=%s",
                            hb->node_id);
                    known = false;
                    next_ns = dfs_clock_mono_ns();
                    continue;
                }
            }
        }
        /* Keep a steady rate: the next call is due one interval after this one started. */
        next_ns = started + (int64_t)interval_ms * 1000000;
    }
    return NULL;
}

static void free_hb(dfs_heartbeat *hb)
{
    if (hb->own_ch)
        dfs_rpc_leader_destroy(hb->ch);
    dfs_rpc_leader_destroy(hb->enroll_ch);
    explicit_bzero(hb->token_hash, sizeof hb->token_hash);
    pthread_mutex_destroy(&hb->mu);
    pthread_cond_destroy(&hb->cv);
    free(hb->metadata);
    free(hb->node_id);
    free(hb->address);
    free(hb->zone);
    free(hb->last_error);
    free(hb);
}

int dfs_heartbeat_start(const struct dfs_heartbeat_config *cfg, dfs_heartbeat **out, char **errmsg)
{
    if (cfg->metadata == NULL || cfg->metadata[0] == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "heartbeat: no metadata service address");
    if (cfg->node_id == NULL || cfg->node_id[0] == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "heartbeat: no node id");
    if (cfg->address == NULL || cfg->address[0] == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL, "heartbeat: no advertised address");
    if (cfg->store == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "heartbeat: no fragment store");
    dfs_heartbeat *hb = calloc(1, sizeof *hb);
    if (hb == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    hb->metadata = strdup(cfg->metadata);
    hb->node_id = strdup(cfg->node_id);
    hb->address = strdup(cfg->address);
    hb->zone = strdup(cfg->zone != NULL ? cfg->zone : "");
    hb->store = cfg->store;
    hb->on_registered = cfg->on_registered;
    hb->on_registered_arg = cfg->on_registered_arg;
    hb->rpc_timeout_ms = cfg->rpc_timeout_ms > 0 ? cfg->rpc_timeout_ms : DEFAULT_RPC_TIMEOUT_MS;
    hb->retry_max_ms = cfg->retry_max_ms > 0 ? cfg->retry_max_ms : DEFAULT_RETRY_MAX_MS;
    pthread_mutex_init(&hb->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&hb->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (hb->metadata == NULL || hb->node_id == NULL || hb->address == NULL || hb->zone == NULL) {
        free_hb(hb);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    if (cfg->channel.token == NULL ||
        dfs_token_parse(cfg->channel.token, hb->token_id, hb->token_hash, NULL) != DFS_OK) {
        free_hb(hb);
        return dfs_seterr(errmsg, DFS_EINVAL, "heartbeat: the node's own token is not a dfs token");
    }
    int rc = DFS_OK;
    hb->own_ch = cfg->replicas == NULL;
    if (cfg->replicas != NULL)
        hb->ch = cfg->replicas;
    else
        rc = dfs_rpc_leader_open(hb->metadata, &cfg->channel, &hb->ch, errmsg);
    if (rc == DFS_OK && cfg->enroll_token != NULL) {
        struct dfs_rpc_channel_opts eo = cfg->channel;
        eo.token = cfg->enroll_token;
        rc = dfs_rpc_leader_open(hb->metadata, &eo, &hb->enroll_ch, errmsg);
    }
    if (rc != DFS_OK) {
        free_hb(hb);
        return rc;
    }
    if (pthread_create(&hb->thread, NULL, run, hb) != 0) {
        free_hb(hb);
        return dfs_seterr(errmsg, DFS_ENOMEM, "heartbeat: cannot start a thread");
    }
    *out = hb;
    return DFS_OK;
}

bool dfs_heartbeat_wait_registered(dfs_heartbeat *hb, int64_t timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : dfs_clock_mono_ns() + timeout_ms * 1000000;
    pthread_mutex_lock(&hb->mu);
    while (!hb->registered && !hb->stopping && dfs_clock_mono_ns() < deadline) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&hb->cv, &hb->mu);
        } else {
            struct timespec until = to_timespec(deadline);
            pthread_cond_timedwait(&hb->cv, &hb->mu, &until);
        }
    }
    bool registered = hb->registered;
    pthread_mutex_unlock(&hb->mu);
    return registered;
}

uint64_t dfs_heartbeat_registration(dfs_heartbeat *hb)
{
    pthread_mutex_lock(&hb->mu);
    uint64_t r = hb->registration;
    pthread_mutex_unlock(&hb->mu);
    return r;
}

char *dfs_heartbeat_last_error(dfs_heartbeat *hb)
{
    pthread_mutex_lock(&hb->mu);
    char *copy = hb->last_error != NULL ? strdup(hb->last_error) : NULL;
    pthread_mutex_unlock(&hb->mu);
    return copy;
}

void dfs_heartbeat_stop(dfs_heartbeat *hb)
{
    if (hb == NULL)
        return;
    pthread_mutex_lock(&hb->mu);
    hb->stopping = true;
    pthread_cond_broadcast(&hb->cv);
    pthread_mutex_unlock(&hb->mu);
    pthread_join(hb->thread, NULL);
    free_hb(hb);
}
