/* dfs-storage: a storage node. Flags -> config -> wiring; the work is in storage_service/heartbeat. */
#include "common/addr.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/options.h"
#include "common/units.h"
#include "protos/descriptor_set.h"
#include "services/daemon/daemon.h"
#include "services/daemon/metrics.h"
#include "services/daemon/metrics_http.h"
#include "services/daemon/readiness.h"
#include "services/rpc/grpclog.h"
#include "services/rpc/health.h"
#include "services/rpc/reflection.h"
#include "services/rpc/security.h"
#include "services/rpc/server.h"
#include "services/storage/heartbeat.h"
#include "services/storage/inventory.h"
#include "services/storage/node_token.h"
#include "services/storage/reporter.h"
#include "services/storage/scrubber.h"
#include "services/storage/storage_probe.h"
#include "services/storage/storage_service.h"
#include "storage/frag_store.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROG    "dfs-storage"
#define VERSION "0.1.0"

/* The first scrub pass starts after the interval, or this many seconds if that is sooner: a
   restarted node checks its disk soon, and --scrub-interval 1 gives quick passes for tests. */
#define SCRUB_FIRST_MAX_S 10

struct options {
    const char *data;
    const char *metadata;
    const char *listen;
    const char *advertise;
    const char *zone;
    const char *ready_file;
    const char *metrics_listen;
    const char *zone_file;
    char zone_buf[64];
    long long threads;
    long long register_timeout_ms;
    long long grace_ms;
    uint64_t forward_rate; /* 0 = unlimited */
    uint64_t repair_rate;  /* 0 = unlimited */
    uint64_t scrub_rate;   /* 0 = no scrubber */
    long long scrub_interval_s;
    long long stream_idle_ms;
    enum dfs_log_level level;
    const char *token_file;
    struct dfs_rpc_tls_config tls;
    bool insecure;
};

static const struct dfs_opt_choice log_levels[] = {
    {"debug", DFS_LOG_DEBUG, false}, {"info", DFS_LOG_INFO, false},   {"warn", DFS_LOG_WARN, false},
    {"warning", DFS_LOG_WARN, true}, {"error", DFS_LOG_ERROR, false}, {NULL, 0, false},
};

#define O(member) DFS_OPT_FIELD(struct options, member)

static const struct dfs_opt opts[] = {
    {DFS_OPT_STRING, "data", 0, O(data), .arg = "DIR",
     .help = "fragment store (created if missing; one node per DIR)"},
    {DFS_OPT_STRING, "metadata", 0, O(metadata), .arg = "HOST:PORT[,...]",
     .help = "the metadata service to register with; a list names its replicas, and calls "
             "follow the leader"},
    {DFS_OPT_STRING, "listen", 0, O(listen), .arg = "ADDR", .def = "127.0.0.1:7100",
     .help = "address to serve on; port 0 = any"},
    {DFS_OPT_STRING, "advertise", 0, O(advertise), .arg = "HOST:PORT",
     .help = "address to register (default: the listen host and the bound port; required when "
             "listening on a wildcard)"},
    {DFS_OPT_STRING, "zone", 0, O(zone), .arg = "Z", .def = "",
     .help = "failure domain (rack, zone) for placement"},
    {DFS_OPT_STRING, "zone-file", 0, O(zone_file), .arg = "PATH",
     .help = "read the zone from the first line of PATH (e.g. written by a Kubernetes init "
             "container from the node's label)"},
    {DFS_OPT_INT, "threads", 0, O(threads), .arg = "N", .def = "4", .min = 1, .max = 256,
     .help = "worker threads"},
    {DFS_OPT_RATE, "forward-rate", 0, O(forward_rate), .arg = "RATE", .min = 1,
     .help = "most bytes/s this node sends to each next node of chain puts, all puts to it "
             "together (500K, 100M, 1G bytes/s; 100Mbit, 1Gbit bits/s; default unlimited; a "
             "client's lower rate wins)"},
    {DFS_OPT_RATE, "repair-rate", 0, O(repair_rate), .arg = "RATE", .def = "0", .min = 0,
     .help = "most bytes/s this node reads to repair fragments, all repairs together, in the "
             "same units; 0 = unlimited"},
    {DFS_OPT_RATE, "scrub-rate", 0, O(scrub_rate), .arg = "RATE", .def = "16M", .min = 0,
     .help = "bytes/s of the background re-read of every fragment; 0 = no scrubbing"},
    {DFS_OPT_INT, "scrub-interval", 0, O(scrub_interval_s), .arg = "SECONDS", .def = "3600",
     .min = 1, .max = 30 * 86400,
     .help = "pause between scrub passes; the first pass starts after min(SECONDS, " DFS_OPT_STR(
         SCRUB_FIRST_MAX_S) ")"},
    {DFS_OPT_STRING, "ready-file", 0, O(ready_file), .arg = "PATH",
     .help = "write the advertised address here once registered"},
    {DFS_OPT_STRING, "metrics-listen", 0, O(metrics_listen), .arg = "ADDR",
     .help = "serve Prometheus metrics over HTTP on ADDR (GET /metrics, /healthz); default off"},
    {DFS_OPT_ENUM, "log-level", 0, O(level), .arg = "LEVEL", .def = "info", .choices = log_levels,
     .help = "debug, info, warn or error"},
    {DFS_OPT_INT, "register-timeout-ms", 0, O(register_timeout_ms), .arg = "N", .def = "0",
     .min = 0, .max = 86400000,
     .help = "give up (exit 1) if not registered by then; 0 = keep trying"},
    {DFS_OPT_INT, "grace-ms", 0, O(grace_ms), .arg = "N", .def = "5000", .min = 0, .max = 600000,
     .help = "on SIGTERM, time calls in flight get to finish"},
    {DFS_OPT_INT, "stream-idle-ms", 0, O(stream_idle_ms), .arg = "N",
     .def = DFS_OPT_STR(DFS_RPC_STREAM_IDLE_MS), .min = 0, .max = 86400000,
     .help = "cancel a put or get whose peer sends or reads nothing for N ms, deadline or not; "
             "0 = never"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {DFS_OPT_VERSION, "version", 0, .help = "print the version"},
    {DFS_OPT_SECTION, .help = "Security (see docs/security.md):"},
    {DFS_OPT_STRING, "token-file", 0, O(token_file), .arg = "PATH", .env = "DFS_TOKEN_FILE",
     .help = "the enrollment token (role bootstrap) for the node's first registration "
             "(required); the node then makes and keeps its own token in DIR/node.token and "
             "presents only that one"},
    {DFS_OPT_STRING, "tls-cert", 0, O(tls.cert_file), .arg = "FILE",
     .help = "serve TLS with this certificate chain (PEM) ..."},
    {DFS_OPT_STRING, "tls-key", 0, O(tls.key_file), .arg = "FILE",
     .help = "... and its private key; also this node's client certificate towards the "
             "metadata service and other nodes"},
    {DFS_OPT_STRING, "tls-ca", 0, O(tls.ca_file), .arg = "FILE",
     .help = "CA the metadata service's and other nodes' (and, with --tls-client-auth, "
             "clients') certificates chain to"},
    {DFS_OPT_FLAG, "tls-client-auth", 0, O(tls.mutual),
     .help = "mutual TLS: require a client certificate from every caller"},
    {DFS_OPT_FLAG, "insecure", 0, O(insecure),
     .help = "allow plaintext on a non-loopback address (and to peers)"},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = PROG,
    .version = VERSION,
    .usage = "--data DIR --metadata HOST:PORT [options]",
    .about = "A dfs storage node: keeps fragments in DIR and serves them over gRPC.",
    .opts = opts,
};

/*
 * The zone from the first line of `path` (surrounding blanks dropped; empty means none) into
 * buf[cap]. DFS_EINVAL when unreadable, too long or not printable.
 */
static int read_zone_file(const char *path, char *buf, size_t cap, char **err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return dfs_seterr(err, DFS_EINVAL, "--zone-file %s: %s",
                          dfs_quote(path, &(struct dfs_quote){{0}}), strerror(errno));
    char line[256] = "";
    if (fgets(line, sizeof line, f) == NULL)
        line[0] = '\0';
    fclose(f);
    char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strlen(p);
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
        p[--n] = '\0';
    if (n >= cap)
        return dfs_seterr(err, DFS_EINVAL, "--zone-file %s: zone longer than %zu bytes",
                          dfs_quote(path, &(struct dfs_quote){{0}}), cap - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
            return dfs_seterr(err, DFS_EINVAL, "--zone-file %s: the zone is not printable",
                              dfs_quote(path, &(struct dfs_quote){{0}}));
    memcpy(buf, p, n + 1);
    return DFS_OK;
}

/* Whether every item of "HOST:PORT[,HOST:PORT...]" (the metadata replicas) has a ':'. */
static bool metadata_list_ok(const char *s)
{
    char **items = NULL;
    size_t n = 0;
    if (dfs_addr_list_split(s, &items, &n, NULL) != DFS_OK)
        return false;
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        ok = ok && strrchr(items[i], ':') != NULL;
    dfs_addr_list_free(items);
    return ok;
}

/* What the table cannot say: required options, the zone, addresses. DFS_EINVAL with *err. */
static int check(struct options *o, char **err)
{
    struct dfs_quote q; /* for an argument quoted in an error */
    int rc = DFS_OK;
    if (o->data == NULL || o->data[0] == '\0')
        rc = dfs_seterr(err, DFS_EINVAL, "--data DIR is required");
    if (rc == DFS_OK && (o->metadata == NULL || o->metadata[0] == '\0'))
        rc = dfs_seterr(err, DFS_EINVAL, "--metadata HOST:PORT is required");
    if (rc == DFS_OK && !metadata_list_ok(o->metadata))
        rc = dfs_seterr(err, DFS_EINVAL, "--metadata must be HOST:PORT, not '%s'",
                        dfs_quote(o->metadata, &q));
    if (rc == DFS_OK && o->listen[0] == '\0')
        rc = dfs_seterr(err, DFS_EINVAL, "--listen needs an address");
    if (rc == DFS_OK && o->zone_file != NULL) {
        if (o->zone[0] != '\0')
            rc = dfs_seterr(err, DFS_EINVAL, "--zone and --zone-file exclude each other");
        else
            rc = read_zone_file(o->zone_file, o->zone_buf, sizeof o->zone_buf, err);
        o->zone = o->zone_buf;
    }
    /* The metadata service holds a zone to the same rules (services/validate/validate.h): refuse
       here what it would refuse at every registration. */
    for (size_t i = 0; rc == DFS_OK && o->zone[i] != '\0'; i++)
        if ((unsigned char)o->zone[i] < 0x21 || (unsigned char)o->zone[i] > 0x7e)
            rc = dfs_seterr(err, DFS_EINVAL, "--zone must be printable, without spaces");
    if (rc == DFS_OK && strlen(o->zone) >= sizeof o->zone_buf)
        rc = dfs_seterr(err, DFS_EINVAL, "--zone is longer than %zu bytes", sizeof o->zone_buf - 1);
    if (rc == DFS_OK && o->advertise != NULL && !dfs_addr_valid(o->advertise, DFS_STORAGE_ADDR_MAX))
        rc = dfs_seterr(err, DFS_EINVAL, "--advertise must be HOST:PORT, not '%s'",
                        dfs_quote(o->advertise, &q));
    return rc;
}

/* After each scrub pass, the inventory: a file deleted under the node is found without a read. */
static void scrub_pass_done(void *arg)
{
    dfs_inventory_trigger(arg);
}

/* The storage service's damage hooks, to the reporter. */
static void own_damage(void *arg, const char *fragment_id, int damage)
{
    dfs_reporter_own(arg, fragment_id, damage);
}

static void peer_damage(void *arg, const Dfs__V1__Ticket *ticket, int damage, const char *detail)
{
    dfs_reporter_peer(arg, ticket, damage, detail);
}

/* What the heartbeat's hook reaches. */
struct on_register {
    dfs_storage_service *svc;
    dfs_inventory *inv;
    _Atomic uint64_t registration; /* the current one, for the reports */
};

/* The registration the node's reports carry (the inventory's and the scrubber's threads). */
static uint64_t current_registration(void *arg)
{
    struct on_register *r = arg;
    return atomic_load(&r->registration);
}

/* The heartbeat's hook: the service takes its ticket key, and every registration asks for a full
   inventory report. */
static void registered(void *arg, const uint8_t *key, size_t len, uint64_t registration)
{
    struct on_register *r = arg;
    atomic_store(&r->registration, registration);
    char *err = NULL;
    if (dfs_storage_service_set_ticket_key(r->svc, key, len, &err) != DFS_OK) {
        dfs_log(DFS_LOG_ERROR, "cannot take the ticket key err=%s", err);
        free(err);
    }
    dfs_inventory_trigger(r->inv);
}

/*
 * Wait until the heartbeat has registered, while still answering SIGTERM/SIGINT. Returns 0 once
 * registered, the signal number when one came first, or -1 when timeout_ms (> 0) ran out.
 */
static int wait_registered(dfs_heartbeat *hb, const sigset_t *signals, long long timeout_ms)
{
    int64_t t0 = dfs_clock_mono_ns();
    for (;;) {
        /* Registration is seen at once (condition variable); a signal within 50 ms. */
        if (dfs_heartbeat_wait_registered(hb, 50))
            return 0;
        struct timespec zero = {0, 0};
        int sig = sigtimedwait(signals, NULL, &zero);
        if (sig == SIGTERM || sig == SIGINT)
            return sig;
        if (sig == SIGHUP)
            dfs_log(DFS_LOG_INFO,
                    "ignoring signal (only SIGTERM and SIGINT stop the node) signal=%d", sig);
        long long ms = (dfs_clock_mono_ns() - t0) / 1000000;
        if (timeout_ms > 0 && ms >= timeout_ms)
            return -1;
    }
}

int main(int argc, char **argv)
{
    /*
     * Keep freed memory for reuse instead of handing it back at once. Every byte a node receives
     * passes through gRPC's receive buffers (slices malloc'd by the polling thread), freed as each
     * message is written. With glibc's defaults the free space at the top of an arena beyond
     * 128 KiB (or twice the largest block freed) goes back to the kernel (madvise), and the next
     * receives fault fresh zeroed pages in again: measured, 100-150 thousand page faults per GiB
     * a node stores (one per 7-10 KiB received), 7-10 thousand with these settings, and a node's
     * CPU per GiB put down by a quarter (benchmarks/README.md, issue 19). The fixed trim threshold
     * keeps up to 32 MiB free per arena; the fixed mmap threshold keeps blocks up to 8 MiB (a
     * flattened message, up to the 4 MiB window) in the arenas instead of a fresh mapping each.
     * Bounded: beyond that, memory goes back as before.
     */
    mallopt(M_MMAP_THRESHOLD, 8 << 20);
    mallopt(M_TRIM_THRESHOLD, 32 << 20);
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

    char *enroll_token = NULL, *token = NULL;
    dfs_rpc_tls *tls = NULL;
    if (o.token_file == NULL) {
        fprintf(stderr,
                PROG ": --token-file is required: the enrollment token (role bootstrap) for "
                     "the node's first registration (dfs-metadata --node-token-file, or dfs "
                     "token create --role bootstrap)\n");
        return 2;
    }
    if (dfs_rpc_token_read_file(o.token_file, &enroll_token, &err) != DFS_OK ||
        dfs_rpc_tls_create_optional(&o.tls, &tls, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err);
        free(err);
        free(enroll_token);
        return 2;
    }
    struct dfs_rpc_link_security sec = {.tls = tls, .insecure = o.insecure};
    /* Every call presents the node's own token (DATA_DIR/node.token, read once the store is
       open); the enrollment token only a first registration. */
    struct dfs_rpc_channel_opts to_metadata = {.security = &sec};
    struct on_register on_reg = {0};

    dfs_frag_store *store = NULL;
    dfs_storage_service *svc = NULL;
    dfs_rpc_server *srv = NULL;
    dfs_heartbeat *hb = NULL;
    dfs_inventory *inv = NULL;
    dfs_scrubber *scrub = NULL;
    dfs_reporter *reporter = NULL;
    dfs_rpc_leader *replicas = NULL; /* every call to the metadata service but enrollment's */
    /* Inspection: health and reflection on the gRPC port, metrics on their own port. */
    static const char *const health_names[] = {"", "dfs.v1.Storage"};
    dfs_rpc_health *health = NULL;
    dfs_rpc_reflection *refl = NULL;
    dfs_metrics *metrics = NULL;
    dfs_metrics_http *http = NULL;
    dfs_readiness *ready = NULL;
    struct dfs_storage_probe probe = {.data_dir = o.data};
    struct dfs_metrics_config mcfg = {.program = PROG, .version = VERSION};
    status = 1;
    int sig = 0;
    int64_t idle_ms = o.stream_idle_ms > 0 ? o.stream_idle_ms : -1; /* 0: never */
    struct dfs_rpc_server_config scfg = {
        .listen = o.listen, .threads = (int)o.threads, .security = &sec, .stream_idle_ms = idle_ms};
    /* The advertised address is also the service's loop check for chain puts; without
       --advertise it is known only once the port is bound (set below). */
    struct dfs_storage_service_config cfg = {.forward_rate = o.forward_rate,
                                             .advertise = o.advertise,
                                             .repair_rate = o.repair_rate,
                                             .security = &sec,
                                             .stream_idle_ms = idle_ms};
    if (dfs_frag_store_open(o.data, NULL, &store, &err) != DFS_OK ||
        dfs_node_token_load(o.data, &token, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "cannot open the data directory");
        goto out;
    }
    to_metadata.token = token;
    /* One handle on the metadata replicas for the reporter, the inventory, the heartbeat and the
       scrubber: what one learns about the leader the others use. */
    if (dfs_rpc_leader_open(o.metadata, &to_metadata, &replicas, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err);
        goto out;
    }
    /* Damage the node's reads and repairs see goes to the metadata service at once. */
    struct dfs_reporter_config repcfg = {.store = store,
                                         .metadata = o.metadata,
                                         .channel = to_metadata,
                                         .replicas = replicas,
                                         .node_id = dfs_frag_store_node_id(store),
                                         .registration = current_registration,
                                         .registration_arg = &on_reg};
    if (dfs_reporter_start(&repcfg, &reporter, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "cannot start the reporter");
        goto out;
    }
    cfg.on_own_damage = own_damage;
    cfg.on_peer_damage = peer_damage;
    cfg.damage_arg = reporter;
    if (dfs_storage_service_create(store, &cfg, &svc, &err) != DFS_OK ||
        dfs_rpc_health_create(&health, &err) != DFS_OK ||
        dfs_rpc_reflection_create(dfs_descriptor_set, dfs_descriptor_set_size, &refl, &err) !=
            DFS_OK ||
        dfs_metrics_create(&mcfg, &metrics, &err) != DFS_OK ||
        dfs_rpc_server_create(&scfg, &srv, &err) != DFS_OK ||
        dfs_storage_service_register(svc, srv, &err) != DFS_OK ||
        dfs_rpc_health_register(health, srv, &err) != DFS_OK ||
        dfs_rpc_reflection_register(refl, srv, &err) != DFS_OK ||
        dfs_metrics_watch_server(metrics, srv, &err) != DFS_OK ||
        dfs_rpc_server_start(srv, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "cannot start");
        goto out;
    }
    char addr[300];
    if (o.advertise != NULL) {
        snprintf(addr, sizeof addr, "%s", o.advertise);
    } else if (dfs_daemon_advertise(o.listen, dfs_rpc_server_port(srv), addr, sizeof addr, &err) !=
               DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err);
        goto out;
    }
    if (dfs_storage_service_set_advertise(svc, addr, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err);
        goto out;
    }
    const char *node = dfs_frag_store_node_id(store);
    /* The inventory waits for the heartbeat's word after every registration (the first one, and
       each one after the metadata service forgot the node or restarted). */
    struct dfs_inventory_config icfg = {.store = store,
                                        .metadata = o.metadata,
                                        .node_id = node,
                                        .channel = to_metadata,
                                        .replicas = replicas,
                                        .registration = current_registration,
                                        .registration_arg = &on_reg};
    if (dfs_inventory_start(&icfg, &inv, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "cannot start the inventory");
        goto out;
    }
    struct dfs_heartbeat_config hcfg = {
        .metadata = o.metadata,
        .node_id = node,
        .address = addr,
        .zone = o.zone,
        .store = store,
        .on_registered = registered,
        .on_registered_arg = &on_reg,
        .channel = to_metadata,
        .replicas = replicas,
        .enroll_token = enroll_token,
    };
    on_reg.svc = svc;
    on_reg.inv = inv;
    if (dfs_heartbeat_start(&hcfg, &hb, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "cannot start the heartbeat");
        goto out;
    }
    probe.store = store;
    probe.svc = svc;
    probe.hb = hb;
    struct dfs_readiness_config rcfg = {
        .health = health,
        .services = health_names,
        .nservices = sizeof health_names / sizeof health_names[0],
        .liveness = "liveness",
        .check = dfs_storage_probe_check,
        .arg = &probe,
        .interval_ms = 2000,
    };
    struct dfs_metrics_http_config mhcfg = {
        .listen = o.metrics_listen, .metrics = metrics, .health = health};
    if (dfs_readiness_start(&rcfg, &ready, &err) != DFS_OK ||
        dfs_metrics_add_collector(metrics, dfs_readiness_collect, ready, &err) != DFS_OK ||
        dfs_metrics_add_collector(metrics, dfs_storage_probe_collect, &probe, &err) != DFS_OK ||
        (o.metrics_listen != NULL && dfs_metrics_http_start(&mhcfg, &http, &err) != DFS_OK)) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "cannot start");
        goto out;
    }
    char rate[32] = "unlimited", repair_rate[32] = "unlimited", scrub_rate[32] = "off";
    if (o.forward_rate > 0)
        dfs_format_rate((double)o.forward_rate, rate, sizeof rate);
    if (o.repair_rate > 0)
        dfs_format_rate((double)o.repair_rate, repair_rate, sizeof repair_rate);
    if (o.scrub_rate > 0)
        dfs_format_rate((double)o.scrub_rate, scrub_rate, sizeof scrub_rate);
    dfs_log(DFS_LOG_INFO,
            "listening addr=%s listen=%s node=%s data=%s zone=%s forward_rate=%s "
            "repair_rate=%s scrub_rate=%s scrub_interval_s=%lld metrics=%s "
            "version=" VERSION,
            addr, o.listen, node, o.data, o.zone[0] != '\0' ? o.zone : "-", rate, repair_rate,
            scrub_rate, o.scrub_interval_s, http != NULL ? dfs_metrics_http_address(http) : "off");

    int w = wait_registered(hb, &signals, o.register_timeout_ms);
    if (w < 0) {
        char *why = dfs_heartbeat_last_error(hb);
        fprintf(stderr, PROG ": cannot register with the metadata service at %s: %s\n", o.metadata,
                why != NULL ? why : "no answer in time");
        free(why);
        goto out;
    }
    if (w > 0) {
        sig = w;
    } else {
        /* Registered: healthy from now on if the disk agrees, before anyone is told. */
        dfs_readiness_check_now(ready);
        if (o.ready_file != NULL) {
            char line[320];
            snprintf(line, sizeof line, "%s\n", addr);
            if (dfs_daemon_write_file(o.ready_file, line, &err) != DFS_OK) {
                fprintf(stderr, PROG ": %s\n", err);
                goto out;
            }
        }
        if (o.scrub_rate > 0) {
            long long first_s =
                o.scrub_interval_s < SCRUB_FIRST_MAX_S ? o.scrub_interval_s : SCRUB_FIRST_MAX_S;
            struct dfs_scrubber_config sccfg = {
                .store = store,
                .metadata = o.metadata,
                .node_id = node,
                .rate = o.scrub_rate,
                .interval_ms = o.scrub_interval_s * 1000,
                .first_delay_ms = first_s * 1000,
                .channel = to_metadata,
                .replicas = replicas,
                .registration = current_registration,
                .registration_arg = &on_reg,
                .on_pass = scrub_pass_done,
                .on_pass_arg = inv,
            };
            if (dfs_scrubber_start(&sccfg, &scrub, &err) != DFS_OK) {
                fprintf(stderr, PROG ": %s\n", err != NULL ? err : "cannot start the scrubber");
                goto out;
            }
            atomic_store(&probe.scrubber, scrub);
        }
        dfs_log(DFS_LOG_INFO, "ready addr=%s node=%s", addr, node);
        while (sig == 0) {
            int s = dfs_daemon_wait_signal(&signals);
            if (s == SIGTERM || s == SIGINT)
                sig = s;
            else
                dfs_log(DFS_LOG_INFO,
                        "ignoring signal (only SIGTERM and SIGINT stop the node) signal=%d", s);
        }
    }
    /* NOT_SERVING first: health watchers and probes learn of the stop while the port is open. */
    dfs_rpc_health_shutdown(health);
    dfs_log(DFS_LOG_INFO, "stopping signal=%d grace_ms=%lld", sig, o.grace_ms);
    status = 0;
out:
    free(err);
    if (health != NULL)
        dfs_rpc_health_shutdown(health);
    /* Readiness and the metrics endpoint (both read the heartbeat and the scrubber), then the
       heartbeat (the node stops announcing itself, and triggers no more inventories), the
       scrubber and the inventory, then calls in flight (repairs included), then the store. */
    dfs_readiness_stop(ready);
    dfs_metrics_http_stop(http);
    dfs_heartbeat_stop(hb);
    dfs_scrubber_stop(scrub);
    dfs_inventory_stop(inv);
    if (srv != NULL)
        dfs_rpc_server_stop(srv, status == 0 ? o.grace_ms : 0);
    dfs_rpc_server_destroy(srv);
    dfs_storage_service_destroy(svc);
    /* After the service: its calls and repairs report to it until they end. */
    dfs_reporter_stop(reporter);
    dfs_rpc_leader_destroy(replicas); /* after every user of it */
    dfs_rpc_reflection_destroy(refl);
    dfs_rpc_health_destroy(health);
    dfs_metrics_destroy(metrics);
    dfs_frag_store_close(store);
    dfs_rpc_tls_destroy(tls);
    if (token != NULL)
        explicit_bzero(token, strlen(token));
    free(token);
    if (enroll_token != NULL)
        explicit_bzero(enroll_token, strlen(enroll_token));
    free(enroll_token);
    if (status == 0)
        dfs_log(DFS_LOG_INFO, "stopped");
    return status;
}
