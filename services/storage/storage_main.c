/* dfs-storage: a storage node. Flags -> config -> wiring; the work is in storage_service/heartbeat. */
#include "common/err.h"
#include "common/log.h"
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
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROG    "dfs-storage"
#define VERSION "0.1.0"

#define DEFAULT_SCRUB_RATE     (16u << 20)
#define DEFAULT_SCRUB_INTERVAL 3600
/* The first scrub pass starts after the interval, or this many seconds if that is sooner: a
   restarted node checks its disk soon, and --scrub-interval 1 gives quick passes for tests. */
#define SCRUB_FIRST_MAX_S      10

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: " PROG " --data DIR --metadata HOST:PORT [options]\n"
        "\n"
        "A dfs storage node: keeps fragments in DIR and serves them over gRPC.\n"
        "\n"
        "  --data DIR                fragment store (created if missing; one node per DIR)\n"
        "  --metadata HOST:PORT      the metadata service to register with\n"
        "  --listen ADDR             address to serve on (default 127.0.0.1:7100; port 0 = any)\n"
        "  --advertise HOST:PORT     address to register (default: the listen host and the\n"
        "                            bound port; required when listening on a wildcard)\n"
        "  --zone Z                  failure domain (rack, zone) for placement\n"
        "  --zone-file PATH          read the zone from the first line of PATH (e.g. written by\n"
        "                            a Kubernetes init container from the node's label)\n"
        "  --threads N               worker threads (default 4)\n"
        "  --forward-rate RATE       most bytes/s this node sends to each next node of chain\n"
        "                            puts, all puts to it together (500K, 100M, 1G bytes/s;\n"
        "                            100Mbit, 1Gbit bits/s; default unlimited; a client's\n"
        "                            lower rate wins)\n"
        "  --repair-rate RATE        most bytes/s this node reads to repair fragments, all\n"
        "                            repairs together (same units; default 0 = unlimited)\n"
        "  --scrub-rate RATE         bytes/s of the background re-read of every fragment\n"
        "                            (default 16M; 0 = no scrubbing)\n"
        "  --scrub-interval SECONDS  pause between scrub passes (default 3600; the first pass\n"
        "                            starts after min(SECONDS, 10))\n"
        "  --ready-file PATH         write the advertised address here once registered\n"
        "  --metrics-listen ADDR     serve Prometheus metrics over HTTP on ADDR (GET /metrics,\n"
        "                            /healthz); default off\n"
        "  --log-level LEVEL         debug, info, warn or error (default info)\n"
        "  --register-timeout-ms N   give up (exit 1) if not registered by then (default 0 =\n"
        "                            keep trying)\n"
        "  --grace-ms N              on SIGTERM, time calls in flight get to finish (default "
        "5000)\n"
        "  --stream-idle-ms N        cancel a put or get whose peer sends or reads nothing for\n"
        "                            N ms, deadline or not (default 120000; 0 = never)\n"
        "\n"
        "Security (see README, \"Security\"):\n"
        "  --token-file PATH         the enrollment token (role bootstrap) for the node's\n"
        "                            first registration (DFS_TOKEN_FILE is used when absent);\n"
        "                            the node then makes and keeps its own token in\n"
        "                            DIR/node.token and presents only that one\n"
        "  --tls-cert FILE           serve TLS with this certificate chain (PEM) ...\n"
        "  --tls-key FILE            ... and its private key; also this node's client\n"
        "                            certificate towards the metadata service and other nodes\n"
        "  --tls-ca FILE             CA the metadata service's and other nodes' (and, with\n"
        "                            --tls-client-auth, clients') certificates chain to\n"
        "  --tls-client-auth         mutual TLS: require a client certificate from every caller\n"
        "  --insecure                allow plaintext on a non-loopback address (and to peers)\n"
        "  -h, --help, --version\n");
}

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

/* A rate flag where "0" means none (unlimited, or off: the flag says which). */
static int parse_rate_or_zero(const char *flag, const char *arg, uint64_t *out, char **err)
{
    if (strcmp(arg, "0") == 0) {
        *out = 0;
        return DFS_OK;
    }
    int rc = dfs_parse_rate(arg, out, err);
    if (rc != DFS_OK)
        dfs_prefixerr(err, rc, "%s", flag);
    return rc;
}

/* Returns 0, 1 when --help or --version was handled, or DFS_EINVAL with *err. */
static int parse(int argc, char **argv, struct options *o, char **err)
{
    enum {
        O_DATA = 1000,
        O_METADATA,
        O_LISTEN,
        O_ADVERTISE,
        O_ZONE,
        O_THREADS,
        O_READY,
        O_LOG,
        O_METRICS,
        O_ZONE_FILE,
        O_REGISTER_TIMEOUT,
        O_GRACE,
        O_FORWARD_RATE,
        O_REPAIR_RATE,
        O_SCRUB_RATE,
        O_SCRUB_INTERVAL,
        O_TOKEN_FILE,
        O_STREAM_IDLE,
        O_HELP,
        O_VERSION,
    };
    static const struct option longopts[] = {
        {"data", required_argument, NULL, O_DATA},
        {"metadata", required_argument, NULL, O_METADATA},
        {"listen", required_argument, NULL, O_LISTEN},
        {"advertise", required_argument, NULL, O_ADVERTISE},
        {"zone", required_argument, NULL, O_ZONE},
        {"threads", required_argument, NULL, O_THREADS},
        {"ready-file", required_argument, NULL, O_READY},
        {"log-level", required_argument, NULL, O_LOG},
        {"metrics-listen", required_argument, NULL, O_METRICS},
        {"zone-file", required_argument, NULL, O_ZONE_FILE},
        {"register-timeout-ms", required_argument, NULL, O_REGISTER_TIMEOUT},
        {"grace-ms", required_argument, NULL, O_GRACE},
        {"forward-rate", required_argument, NULL, O_FORWARD_RATE},
        {"repair-rate", required_argument, NULL, O_REPAIR_RATE},
        {"scrub-rate", required_argument, NULL, O_SCRUB_RATE},
        {"scrub-interval", required_argument, NULL, O_SCRUB_INTERVAL},
        {"token-file", required_argument, NULL, O_TOKEN_FILE},
        {"tls-cert", required_argument, NULL, DFS_RPC_OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, DFS_RPC_OPT_TLS_KEY},
        {"tls-ca", required_argument, NULL, DFS_RPC_OPT_TLS_CA},
        {"tls-client-auth", no_argument, NULL, DFS_RPC_OPT_TLS_CLIENT_AUTH},
        {"insecure", no_argument, NULL, DFS_RPC_OPT_INSECURE},
        {"stream-idle-ms", required_argument, NULL, O_STREAM_IDLE},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    o->listen = "127.0.0.1:7100";
    o->zone = "";
    o->threads = 4;
    o->grace_ms = 5000;
    o->scrub_rate = DEFAULT_SCRUB_RATE;
    o->scrub_interval_s = DEFAULT_SCRUB_INTERVAL;
    o->stream_idle_ms = DFS_RPC_STREAM_IDLE_MS;
    o->level = DFS_LOG_INFO;
    opterr = 0;
    int c;
    int rc = DFS_OK;
    struct dfs_quote q; /* for an option or argument quoted in an error */
    while (rc == DFS_OK && (c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case O_DATA:
            o->data = optarg;
            break;
        case O_METADATA:
            o->metadata = optarg;
            break;
        case O_LISTEN:
            o->listen = optarg;
            break;
        case O_ADVERTISE:
            o->advertise = optarg;
            break;
        case O_ZONE:
            o->zone = optarg;
            break;
        case O_THREADS:
            rc = dfs_daemon_parse_int("--threads", optarg, 1, 256, &o->threads, err);
            break;
        case O_READY:
            o->ready_file = optarg;
            break;
        case O_LOG:
            if (dfs_log_level_parse(optarg, &o->level) != DFS_OK || o->level == DFS_LOG_OFF)
                rc = dfs_seterr(err, DFS_EINVAL,
                                "--log-level must be debug, info, warn or error, not '%s'",
                                dfs_quote(optarg, &q));
            break;
        case O_REGISTER_TIMEOUT:
            rc = dfs_daemon_parse_int("--register-timeout-ms", optarg, 0, 86400000,
                                      &o->register_timeout_ms, err);
            break;
        case O_GRACE:
            rc = dfs_daemon_parse_int("--grace-ms", optarg, 0, 600000, &o->grace_ms, err);
            break;
        case O_FORWARD_RATE:
            rc = dfs_parse_rate(optarg, &o->forward_rate, err);
            if (rc != DFS_OK)
                dfs_prefixerr(err, rc, "--forward-rate");
            break;
        case O_REPAIR_RATE:
            rc = parse_rate_or_zero("--repair-rate", optarg, &o->repair_rate, err);
            break;
        case O_SCRUB_RATE:
            rc = parse_rate_or_zero("--scrub-rate", optarg, &o->scrub_rate, err);
            break;
        case O_SCRUB_INTERVAL:
            rc = dfs_daemon_parse_int("--scrub-interval", optarg, 1, 30 * 86400,
                                      &o->scrub_interval_s, err);
            break;
        case O_STREAM_IDLE:
            rc = dfs_daemon_parse_int("--stream-idle-ms", optarg, 0, 86400000, &o->stream_idle_ms,
                                      err);
            break;
        case O_METRICS:
            o->metrics_listen = optarg;
            break;
        case O_ZONE_FILE:
            o->zone_file = optarg;
            break;
        case O_TOKEN_FILE:
            o->token_file = optarg;
            break;
        case 'h':
        case O_HELP:
            usage(stdout);
            return 1;
        case O_VERSION:
            printf(PROG " " VERSION "\n");
            return 1;
        case ':':
            rc = dfs_seterr(err, DFS_EINVAL, "%s needs a value", dfs_daemon_bad_option(argv, &q));
            break;
        default:
            if (!dfs_rpc_security_option(c, optarg, &o->tls, &o->insecure))
                rc = dfs_seterr(err, DFS_EINVAL, "unknown option '%s'",
                                dfs_daemon_bad_option(argv, &q));
            break;
        }
    }
    if (rc == DFS_OK && optind < argc)
        rc = dfs_seterr(err, DFS_EINVAL, "unexpected argument '%s'", dfs_quote(argv[optind], &q));
    if (rc == DFS_OK && (o->data == NULL || o->data[0] == '\0'))
        rc = dfs_seterr(err, DFS_EINVAL, "--data DIR is required");
    if (rc == DFS_OK && (o->metadata == NULL || o->metadata[0] == '\0'))
        rc = dfs_seterr(err, DFS_EINVAL, "--metadata HOST:PORT is required");
    if (rc == DFS_OK && strrchr(o->metadata, ':') == NULL)
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
    if (rc == DFS_OK && o->advertise != NULL && strrchr(o->advertise, ':') == NULL)
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
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
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
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long ms = (now.tv_sec - t0.tv_sec) * 1000LL + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (timeout_ms > 0 && ms >= timeout_ms)
            return -1;
    }
}

int main(int argc, char **argv)
{
    sigset_t signals;
    dfs_daemon_block_signals(&signals);
    struct options o;
    memset(&o, 0, sizeof o);
    char *err = NULL;
    int prc = parse(argc, argv, &o, &err);
    if (prc == 1)
        return 0;
    if (prc != DFS_OK) {
        fprintf(stderr, PROG ": %s (see --help)\n", err != NULL ? err : "bad arguments");
        free(err);
        return 2;
    }
    dfs_log_init(PROG, o.level);
    dfs_rpc_route_grpc_logs();

    if (o.token_file == NULL)
        o.token_file = getenv("DFS_TOKEN_FILE");
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
    /* Inspection: health and reflection on the gRPC port, metrics on their own port. */
    static const char *const health_names[] = {"", "dfs.v1.Storage"};
    dfs_rpc_health *health = NULL;
    dfs_rpc_reflection *refl = NULL;
    dfs_metrics *metrics = NULL;
    dfs_metrics_http *http = NULL;
    dfs_readiness *ready = NULL;
    struct dfs_storage_probe probe = {.data_dir = o.data};
    struct dfs_metrics_config mcfg = {.program = PROG, .version = VERSION};
    int status = 1;
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
    /* Damage the node's reads and repairs see goes to the metadata service at once. */
    struct dfs_reporter_config repcfg = {.store = store,
                                         .metadata = o.metadata,
                                         .channel = to_metadata,
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
