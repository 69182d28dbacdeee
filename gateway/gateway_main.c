/* dfs-gateway: HTTP access to a dfs cluster. Flags -> config -> wiring; the work is in server.c,
   files.c and experiments.c. */
#include "client/dfs_client.h"
#include "common/err.h"
#include "common/log.h"
#include "common/options.h"
#include "gateway/experiments.h"
#include "gateway/files.h"
#include "gateway/s3/s3server.h"
#include "gateway/server.h"
#include "services/daemon/daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROG    "dfs-gateway"
#define VERSION "0.1.0"

struct options {
    const char *metadata;
    const char *listen;
    const char *spool_dir;
    const char *experiments_dir;
    const char *program;
    const char *exp_bin;
    const char *ready_file;
    uint64_t max_upload; /* 0 = no limit */
    int64_t max_experiments;
    int64_t max_connections;
    int64_t max_transfers;
    int64_t rpc_timeout_ms;
    int64_t grace_ms;
    enum dfs_log_level level;
    const char *token_file;
    const char *s3_listen, *s3_domain, *s3_region, *s3_ready_file;
    int64_t s3_upload_timeout_ms;
    uint64_t s3_segment_size;
    uint64_t s3_body_memory;
    uint64_t s3_segment_memory;
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
    bool insecure;
};

static const struct dfs_opt_choice log_levels[] = {
    {"debug", DFS_LOG_DEBUG, false}, {"info", DFS_LOG_INFO, false},   {"warn", DFS_LOG_WARN, false},
    {"warning", DFS_LOG_WARN, true}, {"error", DFS_LOG_ERROR, false}, {NULL, 0, false},
};

#define O(member) DFS_OPT_FIELD(struct options, member)

static const struct dfs_opt opts[] = {
    {DFS_OPT_STRING, "metadata", 0, O(metadata), .arg = "HOST:PORT[,...]",
     .help = "the metadata service (required); a list names its replicas, and calls follow the "
             "leader"},
    {DFS_OPT_STRING, "listen", 0, O(listen), .arg = "ADDR", .def = "127.0.0.1:8080",
     .help = "address to serve HTTP on; port 0 = any free one"},
    {DFS_OPT_STRING, "spool-dir", 0, O(spool_dir), .arg = "DIR",
     .help = "where uploads wait until they are stored, and downloads' scratch files (default "
             "$TMPDIR or /tmp)"},
    {DFS_OPT_SIZE, "max-upload", 0, O(max_upload), .arg = "SIZE",
     .help = "largest upload (100M, 10G, ...; default no limit)"},
    {DFS_OPT_STRING, "experiments-dir", 0, O(experiments_dir), .arg = "DIR",
     .help = "experiment results (default SPOOL/experiments)"},
    {DFS_OPT_STRING, "experiment-program", 0, O(program), .arg = "PATH",
     .help = "the experiment program (default: benchmarks/experiment beside the binary's tree, "
             "/opt/dfs/benchmarks/experiment or ./benchmarks/experiment, the first that exists)"},
    {DFS_OPT_STRING, "experiment-bin", 0, O(exp_bin), .arg = "DIR",
     .help = "passed to every run as --bin: the folder with services/, cli/ and benchmarks/ "
             "binaries it drives (default: the binary's own tree when it has them)"},
    {DFS_OPT_INT, "max-experiments", 0, O(max_experiments), .arg = "N", .def = "1", .min = 1,
     .max = 64, .help = "experiments running at once"},
    {DFS_OPT_INT, "max-connections", 0, O(max_connections), .arg = "N", .def = "256", .min = 1,
     .max = 10000, .help = "HTTP connections at once"},
    {DFS_OPT_INT, "max-transfers", 0, O(max_transfers), .arg = "N", .def = "16", .min = 1,
     .max = 10000,
     .help = "uploads to and downloads from the nodes at once (each holds a few MiB of buffers: "
             "this bounds the gateway's memory); more wait up to 30 s for a slot, then get 503"},
    {DFS_OPT_INT, "rpc-timeout-ms", 0, O(rpc_timeout_ms), .arg = "N", .def = "10000", .min = 1,
     .max = 3600000, .help = "deadline of metadata calls"},
    {DFS_OPT_STRING, "ready-file", 0, O(ready_file), .arg = "PATH",
     .help = "write the served address here once serving"},
    {DFS_OPT_ENUM, "log-level", 0, O(level), .arg = "LEVEL", .def = "info", .choices = log_levels,
     .help = "debug, info, warn or error"},
    {DFS_OPT_INT, "grace-ms", 0, O(grace_ms), .arg = "N", .def = "5000", .min = 0, .max = 600000,
     .help = "on SIGTERM, time requests in flight get to finish; then transfers are cancelled "
             "and running experiments stopped"},
    {DFS_OPT_STRING, "s3-listen", 0, O(s3_listen), .arg = "ADDR",
     .help = "also serve the S3 API (SigV4-signed; keys from dfs token create --s3) on this "
             "address, its own port; port 0 = any free one. The gateway's token: role gateway (or "
             "admin)"},
    {DFS_OPT_STRING, "s3-domain", 0, O(s3_domain), .arg = "D",
     .help = "S3 virtual-host style: BUCKET.D/KEY (path style /BUCKET/KEY always works)"},
    {DFS_OPT_STRING, "s3-region", 0, O(s3_region), .arg = "R", .def = "us-east-1",
     .help = "the region S3 signatures must name"},
    {DFS_OPT_DURATION, "s3-upload-timeout", 0, O(s3_upload_timeout_ms), .arg = "D", .def = "7d",
     .min = 1000, .max = 3650LL * 86400000,
     .help = "an S3 multipart upload not completed within D (like 3600s, 12h, 7d) is aborted"},
    {DFS_OPT_SIZE, "s3-segment-size", 0, O(s3_segment_size), .arg = "N", .def = "64M",
     .min = 1 << 20, .max = 1LL << 32,
     .help = "an S3 PUT or part longer than N is stored in segments of N bytes as it arrives "
             "(two held at most) and stitched at the end, not spooled whole"},
    {DFS_OPT_SIZE, "s3-body-memory", 0, O(s3_body_memory), .arg = "N", .def = "16M", .min = 0,
     .max = 1LL << 40,
     .help = "S3 PUT and part bodies up to --s3-segment-size are held in memory, N bytes of them "
             "at most at once, and stored from there; the others are spooled (0: all spooled)"},
    {DFS_OPT_SIZE, "s3-segment-memory", 0, O(s3_segment_memory), .arg = "N", .def = "128M",
     .min = 0, .max = 1LL << 40,
     .help = "the segments of longer S3 bodies are held in memory (two of --s3-segment-size a "
             "body), N bytes of them at most at once, and put from there; the others are spooled "
             "(0: all spooled)"},
    {DFS_OPT_STRING, "s3-ready-file", 0, O(s3_ready_file), .arg = "PATH",
     .help = "write the S3 address here once serving"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {DFS_OPT_VERSION, "version", 0, .help = "print the version"},
    {DFS_OPT_SECTION, .help = "Security:"},
    {DFS_OPT_STRING, "token-file", 0, O(token_file), .arg = "PATH", .env = "DFS_TOKEN_FILE",
     .help = "the gateway's bearer token for the metadata service (required); its role bounds "
             "what HTTP clients can do: give a read_only token for a read-only gateway"},
    {DFS_OPT_STRING, "tls-ca", 0, O(tls_ca), .arg = "FILE",
     .help = "reach the cluster over TLS, trusting this CA"},
    {DFS_OPT_STRING, "tls-cert", 0, O(tls_cert), .arg = "FILE",
     .help = "client certificate (mutual TLS) ..."},
    {DFS_OPT_STRING, "tls-key", 0, O(tls_key), .arg = "FILE", .help = "... and its key"},
    {DFS_OPT_STRING, "tls-server-name", 0, O(tls_server_name), .arg = "NAME",
     .help = "the name the cluster's certificates carry"},
    {DFS_OPT_FLAG, "insecure", 0, O(insecure),
     .help = "allow plaintext to non-loopback cluster addresses"},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = PROG,
    .version = VERSION,
    .usage = "--metadata HOST:PORT [options]",
    .about = "HTTP access to a dfs cluster: a REST API to store and fetch files (ranges too), "
             "cluster state, experiments, and a status page at /.",
    .opts = opts,
};

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
    /*
     * The gateway's memory bound: at most --max-transfers transfers hold link buffers, and the
     * rest is per connection. glibc would otherwise raise its mmap threshold to the size of the
     * first large buffer freed, after which every transfer's buffers (chunks, received messages)
     * come from per-thread arenas that keep them after free: with 64 clients the gateway kept
     * 150 MiB it no longer used. A fixed threshold gives large blocks back when freed.
     */
    mallopt(M_MMAP_THRESHOLD, 256 << 10);
    sigset_t signals;
    dfs_daemon_block_signals(&signals);
    struct options o;
    memset(&o, 0, sizeof o);
    dfs_opts *args = NULL;
    int status = 2;
    if (!dfs_opts_main(&spec, argc, argv, environ, &o, &args, &status))
        return status;
    dfs_opts_destroy(args);
    if (o.metadata == NULL || strrchr(o.metadata, ':') == NULL) {
        fprintf(stderr, PROG ": --metadata HOST:PORT is required (see " PROG " --help)\n");
        return 2;
    }
    char *err = NULL;
    dfs_log_init(PROG, o.level);
    dfs_client_route_grpc_logs();
    dfs_client *client = NULL;

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
    status = 1;
    dfs_experiments *exps = NULL;
    dfs_gateway *gw = NULL;
    dfs_s3server *s3 = NULL;
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
    if (o.token_file == NULL) {
        fprintf(stderr, PROG ": --token-file is required: the gateway's token for the metadata "
                             "service (dfs token create --role read_write)\n");
        goto out;
    }
    struct dfs_client_options copts = {.metadata = o.metadata,
                                       .timeout_ms = o.rpc_timeout_ms,
                                       .token_file = o.token_file,
                                       .tls_ca = o.tls_ca,
                                       .tls_cert = o.tls_cert,
                                       .tls_key = o.tls_key,
                                       .tls_server_name = o.tls_server_name,
                                       .insecure = o.insecure,
                                       .max_transfers = (unsigned)o.max_transfers};
    if (dfs_client_open(&copts, &client, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err);
        goto out;
    }
    struct dfs_gateway_config gcfg = {
        .client = client,
        .listen = o.listen,
        .spool_dir = spool,
        .max_upload = o.max_upload,
        .max_connections = (unsigned)o.max_connections,
        .experiments = exps,
        .caller_opts = &copts,
    };
    if (dfs_gateway_start(&gcfg, &gw, &err) != DFS_OK) {
        fprintf(stderr, PROG ": %s\n", err != NULL ? err : "cannot start");
        goto out;
    }
    if (o.s3_listen != NULL) {
        struct dfs_s3server_config s3cfg = {.client = client,
                                            .listen = o.s3_listen,
                                            .domain = o.s3_domain,
                                            .region = o.s3_region,
                                            .spool_dir = spool,
                                            .max_connections = (unsigned)o.max_connections,
                                            .upload_timeout_ms = o.s3_upload_timeout_ms,
                                            .segment_size = o.s3_segment_size,
                                            .body_memory = o.s3_body_memory,
                                            .segment_memory = o.s3_segment_memory};
        if (dfs_s3server_start(&s3cfg, &s3, &err) != DFS_OK) {
            fprintf(stderr, PROG ": %s\n", err != NULL ? err : "cannot start S3");
            goto out;
        }
        dfs_log(DFS_LOG_INFO, "serving S3 addr=%s region=%s domain=%s", dfs_s3server_address(s3),
                o.s3_region, o.s3_domain != NULL ? o.s3_domain : "-");
        if (o.s3_ready_file != NULL) {
            char line[320];
            snprintf(line, sizeof line, "%s\n", dfs_s3server_address(s3));
            if (dfs_daemon_write_file(o.s3_ready_file, line, &err) != DFS_OK) {
                fprintf(stderr, PROG ": %s\n", err);
                goto out;
            }
        }
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
    dfs_log(DFS_LOG_INFO, "stopping signal=%d grace_ms=%" PRId64, sig, o.grace_ms);
    unsigned left = dfs_gateway_quiesce(gw, o.grace_ms);
    if (s3 != NULL)
        left += dfs_s3server_quiesce(s3, o.grace_ms);
    if (left > 0)
        dfs_log(DFS_LOG_INFO, "cancelling requests still running count=%u", left);
    status = 0;
out:
    dfs_s3server_stop(s3);
    dfs_gateway_stop(gw);
    dfs_experiments_destroy(exps); /* stops running experiments, reaps them */
    if (status == 0)
        dfs_log(DFS_LOG_INFO, "stopped");
    free(program);
    free(exp_bin);
    free(exp_dir);
    free(err);
    dfs_client_close(client); /* after the gateway, whose transfers used it */
    return status;
}
