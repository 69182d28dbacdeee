/* dfs-metadata: the catalog service. Flags -> config -> wiring; the work is in metadata_service. */
#include "common/err.h"
#include "common/log.h"
#include "metadata/catalog.h"
#include "metadata/placement.h"
#include "protos/descriptor_set.h"
#include "services/daemon/daemon.h"
#include "services/daemon/metrics.h"
#include "services/daemon/metrics_http.h"
#include "services/daemon/readiness.h"
#include "services/metadata/metadata_probe.h"
#include "services/metadata/metadata_service.h"
#include "services/rpc/grpclog.h"
#include "services/rpc/health.h"
#include "services/rpc/reflection.h"
#include "services/rpc/security.h"
#include "services/rpc/server.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG    "dfs-metadata"
#define VERSION "0.1.0"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: " PROG " --db FILE [options]\n"
        "\n"
        "The dfs metadata service: keeps the catalog of files, fragments and storage nodes.\n"
        "\n"
        "  --db FILE                 SQLite catalog (created if missing)\n"
        "  --listen ADDR             address to serve on (default 127.0.0.1:7000; port 0 = any)\n"
        "  --threads N               worker threads (default 4)\n"
        "  --ready-file PATH         write the served address here once ready\n"
        "  --metrics-listen ADDR     serve Prometheus metrics over HTTP on ADDR (GET /metrics,\n"
        "                            /healthz); default off\n"
        "  --log-level LEVEL         debug, info, warn or error (default info)\n"
        "  --replicas K              default replicas per fragment (default 3)\n"
        "  --fragments F             default fragments per file (default 4)\n"
        "  --policy P                default placement: random, min_copy, buddy, least_used\n"
        "  --heartbeat-ms N          heartbeat interval told to storage nodes (default 1000)\n"
        "  --suspect-after-ms N      silence before a node is suspect (default 5000)\n"
        "  --dead-after-ms N         silence before a node is dead (default 30000)\n"
        "  --pending-timeout-ms N    an uncommitted put is collected after this (default 3600000)\n"
        "  --seed N                  placement randomness seed (default: random, logged)\n"
        "  --scatter-width S         min_copy scatter width (default k-1: plain copysets)\n"
        "  --group-size G            buddy group size (default 2k)\n"
        "  --repair-parallel N       repairs dispatched to storage nodes at once (default 4)\n"
        "  --rebalance-threshold PCT move data off an alive node whose recorded bytes exceed\n"
        "                            the mean by more than PCT percent (default 10; 0 = off)\n"
        "  --rebalance-max N         moves queued per rebalance check (default 4)\n"
        "  --delete-grace-ms N       a copy dropped while its file stays (moved, trimmed, bad)\n"
        "                            leaves its node this long after, so reads of it finish\n"
        "                            (default 5000; 0 removes it at once)\n"
        "  --grace-ms N              on SIGTERM, time calls in flight get to finish (default "
        "5000)\n"
        "\n"
        "Security (see README, \"Security\"):\n"
        "  --admin-token-file PATH   an admin bearer token: made and written here (mode 0600) if\n"
        "                            PATH does not exist, else the token in it is accepted\n"
        "  --node-token-file PATH    the same for the enrollment token (role bootstrap) storage\n"
        "                            nodes present at their first registration (each then\n"
        "                            uses a node token of its own)\n"
        "  --ticket-ttl-ms N         read/delete/repair tickets stay valid this long (3600000)\n"
        "  --tls-cert FILE           serve TLS with this certificate chain (PEM) ...\n"
        "  --tls-key FILE            ... and its private key; also the client certificate\n"
        "                            presented to storage nodes\n"
        "  --tls-ca FILE             CA that storage nodes' (and, with --tls-client-auth,\n"
        "                            clients') certificates must chain to\n"
        "  --tls-client-auth         mutual TLS: require a client certificate from every caller\n"
        "  --insecure                allow plaintext on a non-loopback address (and to nodes)\n"
        "  -h, --help, --version\n");
}

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
    const char *node_token_file;
    struct dfs_rpc_tls_config tls;
    bool insecure;
};

static int parse(int argc, char **argv, struct options *o, char **err)
{
    enum {
        O_DB = 1000,
        O_LISTEN,
        O_THREADS,
        O_READY,
        O_LOG,
        O_REPLICAS,
        O_FRAGMENTS,
        O_POLICY,
        O_HB,
        O_SUSPECT,
        O_DEAD,
        O_PENDING,
        O_SEED,
        O_SCATTER,
        O_GROUP,
        O_GRACE,
        O_METRICS,
        O_REPAIR_PARALLEL,
        O_REBALANCE_THRESHOLD,
        O_REBALANCE_MAX,
        O_ADMIN_TOKEN,
        O_NODE_TOKEN,
        O_TICKET_TTL,
        O_DELETE_GRACE,
        O_HELP,
        O_VERSION,
    };
    static const struct option longopts[] = {
        {"db", required_argument, NULL, O_DB},
        {"listen", required_argument, NULL, O_LISTEN},
        {"threads", required_argument, NULL, O_THREADS},
        {"ready-file", required_argument, NULL, O_READY},
        {"log-level", required_argument, NULL, O_LOG},
        {"replicas", required_argument, NULL, O_REPLICAS},
        {"fragments", required_argument, NULL, O_FRAGMENTS},
        {"policy", required_argument, NULL, O_POLICY},
        {"heartbeat-ms", required_argument, NULL, O_HB},
        {"suspect-after-ms", required_argument, NULL, O_SUSPECT},
        {"dead-after-ms", required_argument, NULL, O_DEAD},
        {"pending-timeout-ms", required_argument, NULL, O_PENDING},
        {"seed", required_argument, NULL, O_SEED},
        {"scatter-width", required_argument, NULL, O_SCATTER},
        {"group-size", required_argument, NULL, O_GROUP},
        {"grace-ms", required_argument, NULL, O_GRACE},
        {"metrics-listen", required_argument, NULL, O_METRICS},
        {"repair-parallel", required_argument, NULL, O_REPAIR_PARALLEL},
        {"rebalance-threshold", required_argument, NULL, O_REBALANCE_THRESHOLD},
        {"rebalance-max", required_argument, NULL, O_REBALANCE_MAX},
        {"admin-token-file", required_argument, NULL, O_ADMIN_TOKEN},
        {"node-token-file", required_argument, NULL, O_NODE_TOKEN},
        {"ticket-ttl-ms", required_argument, NULL, O_TICKET_TTL},
        {"delete-grace-ms", required_argument, NULL, O_DELETE_GRACE},
        {"tls-cert", required_argument, NULL, DFS_RPC_OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, DFS_RPC_OPT_TLS_KEY},
        {"tls-ca", required_argument, NULL, DFS_RPC_OPT_TLS_CA},
        {"tls-client-auth", no_argument, NULL, DFS_RPC_OPT_TLS_CLIENT_AUTH},
        {"insecure", no_argument, NULL, DFS_RPC_OPT_INSECURE},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    o->listen = "127.0.0.1:7000";
    o->threads = 4;
    o->grace_ms = 5000;
    o->level = DFS_LOG_INFO;
    opterr = 0;
    int c;
    long long v;
    int rc = DFS_OK;
    struct dfs_quote q; /* for an option or argument quoted in an error */
    while (rc == DFS_OK && (c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case O_DB:
            o->db = optarg;
            break;
        case O_LISTEN:
            o->listen = optarg;
            break;
        case O_THREADS:
            rc = dfs_daemon_parse_int("--threads", optarg, 1, 256, &o->threads, err);
            break;
        case O_READY:
            o->ready_file = optarg;
            break;
        case O_LOG:
            if (dfs_log_level_parse(optarg, &o->level) != DFS_OK)
                rc = dfs_seterr(err, DFS_EINVAL,
                                "--log-level must be debug, info, warn or error, not '%s'",
                                dfs_quote(optarg, &q));
            break;
        case O_REPLICAS:
            rc = dfs_daemon_parse_int("--replicas", optarg, 1, DFS_REPLICAS_MAX, &v, err);
            o->cfg.default_replicas = (uint32_t)v;
            break;
        case O_FRAGMENTS:
            rc = dfs_daemon_parse_int("--fragments", optarg, 1, DFS_FRAGMENTS_MAX, &v, err);
            o->cfg.default_fragments = (uint32_t)v;
            break;
        case O_POLICY:
            rc = dfs_placement_policy_parse(optarg, &o->cfg.default_policy, err);
            break;
        case O_HB:
            rc = dfs_daemon_parse_int("--heartbeat-ms", optarg, 10, 600000, &v, err);
            o->cfg.heartbeat_interval_ms = (uint32_t)v;
            break;
        case O_SUSPECT:
            rc = dfs_daemon_parse_int("--suspect-after-ms", optarg, 10, 86400000, &v, err);
            o->cfg.suspect_after_ms = v;
            break;
        case O_DEAD:
            rc = dfs_daemon_parse_int("--dead-after-ms", optarg, 10, 86400000, &v, err);
            o->cfg.dead_after_ms = v;
            break;
        case O_PENDING:
            rc = dfs_daemon_parse_int("--pending-timeout-ms", optarg, 10, 30LL * 86400000, &v, err);
            o->cfg.pending_timeout_ms = v;
            break;
        case O_SEED:
            rc = dfs_daemon_parse_int("--seed", optarg, 1, INT64_MAX, &v, err);
            o->cfg.seed = (uint64_t)v;
            break;
        case O_SCATTER:
            rc = dfs_daemon_parse_int("--scatter-width", optarg, 0, DFS_PLACEMENT_SCATTER_MAX, &v,
                                      err);
            o->cfg.scatter_width = (uint32_t)v;
            break;
        case O_GROUP:
            rc = dfs_daemon_parse_int("--group-size", optarg, 0, DFS_PLACEMENT_GROUP_MAX, &v, err);
            if (rc == DFS_OK && v == 1)
                rc = dfs_seterr(err, DFS_EINVAL, "--group-size must be 0 (2k) or at least 2");
            o->cfg.group_size = (uint32_t)v;
            break;
        case O_GRACE:
            rc = dfs_daemon_parse_int("--grace-ms", optarg, 0, 600000, &o->grace_ms, err);
            break;
        case O_METRICS:
            o->metrics_listen = optarg;
            break;
        case O_REPAIR_PARALLEL:
            rc = dfs_daemon_parse_int("--repair-parallel", optarg, 1, 256, &v, err);
            o->cfg.repair_parallel = (uint32_t)v;
            break;
        case O_REBALANCE_THRESHOLD:
            rc = dfs_daemon_parse_int("--rebalance-threshold", optarg, 0, 100000, &v, err);
            /* 0 turns it off; the config says that with a negative value. */
            o->cfg.rebalance_threshold_pct = v == 0 ? -1 : (int32_t)v;
            break;
        case O_REBALANCE_MAX:
            rc = dfs_daemon_parse_int("--rebalance-max", optarg, 1, 100000, &v, err);
            o->cfg.rebalance_max = (uint32_t)v;
            break;
        case O_ADMIN_TOKEN:
            o->admin_token_file = optarg;
            break;
        case O_NODE_TOKEN:
            o->node_token_file = optarg;
            break;
        case O_TICKET_TTL:
            rc = dfs_daemon_parse_int("--ticket-ttl-ms", optarg, 1000, 30LL * 86400000, &v, err);
            o->cfg.ticket_ttl_ms = v;
            break;
        case O_DELETE_GRACE:
            rc = dfs_daemon_parse_int("--delete-grace-ms", optarg, 0, 86400000, &v, err);
            o->cfg.delete_grace_ms = v > 0 ? v : -1; /* the config's 0 means the default */
            break;
        case 'h':
        case O_HELP:
            usage(stdout);
            exit(0);
        case O_VERSION:
            printf(PROG " " VERSION "\n");
            exit(0);
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
    if (rc == DFS_OK && o->db == NULL)
        rc = dfs_seterr(err, DFS_EINVAL, "--db FILE is required");
    return rc;
}

int main(int argc, char **argv)
{
    sigset_t signals;
    dfs_daemon_block_signals(&signals);
    struct options o;
    memset(&o, 0, sizeof o);
    char *err = NULL;
    if (parse(argc, argv, &o, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s (see --help)\n", err != NULL ? err : "bad arguments");
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
    struct dfs_metadata_probe probe = {.db_path = o.db};
    int status = 1;
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
    if (dfs_catalog_open(o.db, &cat, &err) != DFS_OK ||
        dfs_metadata_service_create(cat, &o.cfg, &svc, &err) != DFS_OK ||
        (o.admin_token_file != NULL &&
         dfs_metadata_service_bootstrap_token(svc, o.admin_token_file, DFS_ROLE_ADMIN, "admin",
                                              &err) != DFS_OK) ||
        (o.node_token_file != NULL &&
         dfs_metadata_service_bootstrap_token(svc, o.node_token_file, DFS_ROLE_BOOTSTRAP, "nodes",
                                              &err) != DFS_OK) ||
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
    probe.cat = cat;
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
    dfs_metadata_service_destroy(svc);
    dfs_rpc_server_destroy(srv);
    dfs_rpc_reflection_destroy(refl);
    dfs_rpc_health_destroy(health);
    dfs_metrics_destroy(metrics);
    dfs_catalog_close(cat);
    dfs_rpc_tls_destroy(tls);
    if (status == 0)
        dfs_log(DFS_LOG_INFO, "stopped");
    return status;
}
