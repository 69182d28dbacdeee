/* dfs-gateway: HTTP access to a dfs cluster. Flags -> config -> wiring; the work is in server.c,
   files.c and experiments.c. */
#include "common/err.h"
#include "common/log.h"
#include "common/units.h"
#include "gateway/experiments.h"
#include "gateway/files.h"
#include "gateway/server.h"
#include "services/daemon/daemon.h"
#include "services/rpc/grpclog.h"
#include "services/rpc/security.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROG    "dfs-gateway"
#define VERSION "0.1.0"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: " PROG " --metadata HOST:PORT [options]\n"
        "\n"
        "HTTP access to a dfs cluster: a REST API to store and fetch files (ranges too),\n"
        "cluster state, experiments, and a status page at /.\n"
        "\n"
        "  --metadata HOST:PORT        the metadata service\n"
        "  --listen ADDR               address to serve HTTP on (default 127.0.0.1:8080;\n"
        "                              port 0 = any free one)\n"
        "  --spool-dir DIR             where uploads wait until they are stored, and\n"
        "                              downloads' scratch files (default $TMPDIR or /tmp)\n"
        "  --max-upload SIZE           largest upload (100M, 10G, ...; default no limit)\n"
        "  --experiments-dir DIR       experiment results (default SPOOL/experiments)\n"
        "  --experiment-program PATH   the experiment program (default: benchmarks/experiment\n"
        "                              beside the binary's tree, /opt/dfs/benchmarks/experiment\n"
        "                              or ./benchmarks/experiment, the first that exists)\n"
        "  --experiment-bin DIR        passed to every run as --bin: the folder with\n"
        "                              services/, cli/ and benchmarks/ binaries it drives\n"
        "                              (default: the binary's own tree when it has them)\n"
        "  --max-experiments N         experiments running at once (default 1)\n"
        "  --max-connections N         HTTP connections at once (default 256)\n"
        "  --rpc-timeout-ms N          deadline of metadata calls (default 10000)\n"
        "  --ready-file PATH           write the served address here once serving\n"
        "  --log-level LEVEL           debug, info, warn or error (default info)\n"
        "  --grace-ms N                on SIGTERM, time requests in flight get to finish\n"
        "                              (default 5000); then transfers are cancelled and\n"
        "                              running experiments stopped\n"
        "  --token-file PATH           the gateway's bearer token for the metadata service\n"
        "                              (default $DFS_TOKEN_FILE); its role bounds what HTTP\n"
        "                              clients can do: give a read_only token for a\n"
        "                              read-only gateway\n"
        "  --tls-ca FILE               reach the cluster over TLS, trusting this CA\n"
        "  --tls-cert FILE, --tls-key FILE  client certificate (mutual TLS)\n"
        "  --tls-server-name NAME      the name the cluster's certificates carry\n"
        "  --insecure                  allow plaintext to non-loopback cluster addresses\n"
        "  -h, --help, --version\n");
}

struct options {
    const char *metadata;
    const char *listen;
    const char *spool_dir;
    const char *experiments_dir;
    const char *program;
    const char *exp_bin;
    const char *ready_file;
    uint64_t max_upload;
    long long max_experiments;
    long long max_connections;
    long long rpc_timeout_ms;
    long long grace_ms;
    enum dfs_log_level level;
    const char *token_file;
    struct dfs_rpc_tls_config tls;
    bool insecure;
};

/* Returns 0, 1 when --help or --version was handled, or DFS_EINVAL with *err. */
static int parse(int argc, char **argv, struct options *o, char **err)
{
    enum {
        O_METADATA = 1000,
        O_LISTEN,
        O_SPOOL,
        O_MAX_UPLOAD,
        O_EXP_DIR,
        O_EXP_PROGRAM,
        O_EXP_BIN,
        O_MAX_EXP,
        O_MAX_CONN,
        O_RPC_TIMEOUT,
        O_READY,
        O_LOG,
        O_GRACE,
        O_TOKEN_FILE,
        O_HELP,
        O_VERSION,
    };
    static const struct option longopts[] = {
        {"metadata", required_argument, NULL, O_METADATA},
        {"listen", required_argument, NULL, O_LISTEN},
        {"spool-dir", required_argument, NULL, O_SPOOL},
        {"max-upload", required_argument, NULL, O_MAX_UPLOAD},
        {"experiments-dir", required_argument, NULL, O_EXP_DIR},
        {"experiment-program", required_argument, NULL, O_EXP_PROGRAM},
        {"experiment-bin", required_argument, NULL, O_EXP_BIN},
        {"max-experiments", required_argument, NULL, O_MAX_EXP},
        {"max-connections", required_argument, NULL, O_MAX_CONN},
        {"rpc-timeout-ms", required_argument, NULL, O_RPC_TIMEOUT},
        {"ready-file", required_argument, NULL, O_READY},
        {"log-level", required_argument, NULL, O_LOG},
        {"grace-ms", required_argument, NULL, O_GRACE},
        {"token-file", required_argument, NULL, O_TOKEN_FILE},
        {"tls-ca", required_argument, NULL, DFS_RPC_OPT_TLS_CA},
        {"tls-cert", required_argument, NULL, DFS_RPC_OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, DFS_RPC_OPT_TLS_KEY},
        {"tls-server-name", required_argument, NULL, DFS_RPC_OPT_TLS_SERVER_NAME},
        {"insecure", no_argument, NULL, DFS_RPC_OPT_INSECURE},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    o->listen = "127.0.0.1:8080";
    o->max_experiments = 1;
    o->max_connections = 256;
    o->rpc_timeout_ms = 10000;
    o->grace_ms = 5000;
    o->level = DFS_LOG_INFO;
    opterr = 0;
    int c, rc = DFS_OK;
    struct dfs_quote q; /* for an option or argument quoted in an error */
    while (rc == DFS_OK && (c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case O_METADATA:
            o->metadata = optarg;
            break;
        case O_TOKEN_FILE:
            o->token_file = optarg;
            break;
        case O_LISTEN:
            o->listen = optarg;
            break;
        case O_SPOOL:
            o->spool_dir = optarg;
            break;
        case O_MAX_UPLOAD:
            rc = dfs_parse_size(optarg, &o->max_upload, err);
            if (rc != DFS_OK)
                dfs_prefixerr(err, rc, "--max-upload");
            break;
        case O_EXP_DIR:
            o->experiments_dir = optarg;
            break;
        case O_EXP_PROGRAM:
            o->program = optarg;
            break;
        case O_EXP_BIN:
            o->exp_bin = optarg;
            break;
        case O_MAX_EXP:
            rc = dfs_daemon_parse_int("--max-experiments", optarg, 1, 64, &o->max_experiments, err);
            break;
        case O_MAX_CONN:
            rc = dfs_daemon_parse_int("--max-connections", optarg, 1, 10000, &o->max_connections,
                                      err);
            break;
        case O_RPC_TIMEOUT:
            rc = dfs_daemon_parse_int("--rpc-timeout-ms", optarg, 1, 3600000, &o->rpc_timeout_ms,
                                      err);
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
        case O_GRACE:
            rc = dfs_daemon_parse_int("--grace-ms", optarg, 0, 600000, &o->grace_ms, err);
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
    if (rc == DFS_OK && (o->metadata == NULL || strrchr(o->metadata, ':') == NULL))
        rc = dfs_seterr(err, DFS_EINVAL, "--metadata HOST:PORT is required");
    return rc;
}

/*
 * The binary's tree when it holds the daemons: bazel-bin (services/metadata/dfs-metadata), or
 * /opt/dfs/bin in the image (services/dfs-metadata).
 */
static char *own_bin_tree(void)
{
    char exe[PATH_MAX], cand[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL)
        return NULL;
    *slash = '\0';
    snprintf(cand, sizeof cand, "%s/../services/metadata/dfs-metadata", exe);
    if (access(cand, X_OK) != 0) {
        snprintf(cand, sizeof cand, "%s/../services/dfs-metadata", exe);
        if (access(cand, X_OK) != 0)
            return NULL;
    }
    snprintf(cand, sizeof cand, "%s/..", exe);
    return realpath(cand, NULL);
}

/* The default experiment program: the first of the usual places that exists (NULL: none). */
static char *find_program(void)
{
    char exe[PATH_MAX], cand[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    const char *places[3] = {NULL, "/opt/dfs/benchmarks/experiment", "benchmarks/experiment"};
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            snprintf(cand, sizeof cand, "%s/../benchmarks/experiment", exe);
            places[0] = cand;
        }
    }
    for (int i = 0; i < 3; i++)
        if (places[i] != NULL && access(places[i], X_OK) == 0)
            return realpath(places[i], NULL);
    return NULL;
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
    char *token = NULL;
    dfs_rpc_tls *tls = NULL;
    struct dfs_rpc_link_security sec = {0};

    const char *tmp = getenv("TMPDIR");
    const char *spool = o.spool_dir != NULL             ? o.spool_dir
                        : tmp != NULL && tmp[0] != '\0' ? tmp
                                                        : "/tmp";
    char *exp_dir = NULL;
    if (o.experiments_dir != NULL)
        exp_dir = strdup(o.experiments_dir);
    else if (asprintf(&exp_dir, "%s/experiments", spool) < 0)
        exp_dir = NULL;
    char *program = o.program != NULL ? realpath(o.program, NULL) : find_program();
    if (o.program != NULL && program == NULL)
        program = strdup(o.program); /* missing now: starting an experiment will say so */
    char *exp_bin = o.exp_bin != NULL ? realpath(o.exp_bin, NULL) : own_bin_tree();
    if (o.exp_bin != NULL && exp_bin == NULL)
        exp_bin = strdup(o.exp_bin);
    int status = 1;
    dfs_experiments *exps = NULL;
    dfs_gateway *gw = NULL;
    struct stat st;
    if (stat(spool, &st) != 0 || !S_ISDIR(st.st_mode) || access(spool, W_OK) != 0) {
        fprintf(stderr, PROG ": --spool-dir %s is not a writable folder\n", spool);
        goto out;
    }
    int swept = dfs_gw_files_sweep_spool(spool);
    if (swept > 0)
        dfs_log(DFS_LOG_INFO, "removed unfinished uploads of an earlier run count=%d dir=%s", swept,
                spool);
    struct dfs_experiments_config xcfg = {.program = program,
                                          .dir = exp_dir,
                                          .bin = exp_bin,
                                          .max_running = (unsigned)o.max_experiments};
    if (exp_dir == NULL || dfs_experiments_create(&xcfg, &exps, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "out of memory");
        goto out;
    }
    if (o.token_file == NULL)
        o.token_file = getenv("DFS_TOKEN_FILE");
    if (o.token_file == NULL) {
        fprintf(stderr, PROG ": --token-file is required: the gateway's token for the metadata "
                             "service (dfs token create --role read_write)\n");
        goto out;
    }
    if (dfs_rpc_token_read_file(o.token_file, &token, &err) != DFS_OK ||
        dfs_rpc_tls_create_optional(&o.tls, &tls, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err);
        goto out;
    }
    sec = (struct dfs_rpc_link_security){.tls = tls, .insecure = o.insecure};
    struct dfs_rpc_channel_opts chan = {.security = &sec, .token = token};
    struct dfs_gateway_config gcfg = {
        .channel = &chan,
        .listen = o.listen,
        .metadata = o.metadata,
        .spool_dir = spool,
        .max_upload = o.max_upload,
        .rpc_timeout_ms = o.rpc_timeout_ms,
        .max_connections = (unsigned)o.max_connections,
        .experiments = exps,
    };
    if (dfs_gateway_start(&gcfg, &gw, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "cannot start");
        goto out;
    }
    const char *addr = dfs_gateway_address(gw);
    dfs_log(DFS_LOG_INFO,
            "listening addr=%s metadata=%s spool=%s max_upload=%" PRIu64
            " experiments=%s program=%s experiment_bin=%s version=" VERSION,
            addr, o.metadata, spool, o.max_upload, exp_dir, program != NULL ? program : "-",
            exp_bin != NULL ? exp_bin : "-");
    if (o.ready_file != NULL) {
        char line[320];
        snprintf(line, sizeof line, "%s\n", addr);
        if (dfs_daemon_write_file(o.ready_file, line, &err) != DFS_OK) {
            fprintf(stderr, PROG ": %s\n", err);
            goto out;
        }
    }
    int sig = 0;
    while (sig == 0) {
        int s = dfs_daemon_wait_signal(&signals);
        if (s == SIGTERM || s == SIGINT)
            sig = s;
        else
            dfs_log(DFS_LOG_INFO, "ignoring signal (only SIGTERM and SIGINT stop) signal=%d", s);
    }
    /* Stop taking connections, let requests in flight finish, then cancel the rest. */
    dfs_log(DFS_LOG_INFO, "stopping signal=%d grace_ms=%lld", sig, o.grace_ms);
    unsigned left = dfs_gateway_quiesce(gw, o.grace_ms);
    if (left > 0)
        dfs_log(DFS_LOG_INFO, "cancelling requests still running count=%u", left);
    status = 0;
out:
    dfs_gateway_stop(gw);
    dfs_experiments_destroy(exps); /* stops running experiments, reaps them */
    if (status == 0)
        dfs_log(DFS_LOG_INFO, "stopped");
    free(program);
    free(exp_bin);
    free(exp_dir);
    free(err);
    dfs_rpc_tls_destroy(tls);
    if (token != NULL)
        explicit_bzero(token, strlen(token));
    free(token);
    return status;
}
