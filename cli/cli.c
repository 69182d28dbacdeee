/* Parsing and running one dfs command line, for the dfs program and for dfs shell. */
#include "cli/cli.h"

#include "cli/commands.h"
#include "cli/progress.h"
#include "client/dfs_client.h"
#include "common/err.h"
#include "common/log.h"
#include "common/options.h"
#include "common/units.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VERSION "0.1.0"

/* The commands, in the order of the help; the bits below are their indexes. */
static const struct dfs_opts_command commands[] = {
    {"put", "LOCAL REMOTE",
     "store a local file at REMOTE (\"-\": standard input, kept in $TMPDIR first when it is a "
     "pipe)",
     "Store the local file LOCAL at REMOTE: cut into fragments, each copied to several storage "
     "nodes (or erasure-coded with --ec). LOCAL \"-\" reads standard input, kept in $TMPDIR "
     "first when it is a pipe. Without --replicas, --fragments and --policy the cluster's "
     "defaults apply.",
     2, 2},
    {"get", "REMOTE LOCAL", "fetch REMOTE into LOCAL (\"-\" for standard output)",
     "Fetch REMOTE into LOCAL (\"-\" for standard output): every fragment from the best live "
     "copy, every block and the whole file checked.",
     2, 2},
    {"stat", "REMOTE", "size, checksum, redundancy and where every fragment is", NULL, 1, 1},
    {"ls", "[PREFIX]", "list files whose path starts with PREFIX", NULL, 0, 1},
    {"rm", "REMOTE", "remove a file (its fragments are removed from the nodes)", NULL, 1, 1},
    {"nodes", "", "storage nodes: state, usage, zone, placement groups, heartbeat", NULL, 0, 0},
    {"node", "drain|undrain|decommission ID",
     "drain: move a node's fragments elsewhere, then retire it; undrain: return it to service; "
     "decommission: retire it now",
     "node drain ID moves a node's fragments elsewhere, then retires it. node undrain ID returns "
     "a draining (or retired) node to service. node decommission ID retires a node now (its "
     "copies are repaired from the others); it is refused while the node holds the only "
     "readable copy of a file (drain it instead), unless --force. ID is a node id or a unique "
     "prefix of one.",
     2, 2},
    {"status", "[--loss] [-l]", "cluster summary, file health and repair progress",
     "Cluster summary, file health and repair progress. --loss asks every node for every copy "
     "and counts lost and degraded files; -l lists them.",
     0, 0},
    {"shell", "", "interactive prompt with history", NULL, 0, 0},
    {"token", "create|revoke ID|ls", "make, revoke or list bearer tokens (admin only)",
     "token create --role R [--name N] [--ttl D] makes a bearer token and prints it (shown only "
     "this once). token revoke ID revokes a token for good (ID or a unique prefix). token ls "
     "lists tokens (--all: revoked and expired ones too). Admin only.",
     1, 2},
    {"whoami", "", "the token this command runs with", NULL, 0, 0},
    {"mv", "FROM TO", "rename a file, or a directory with every file under it, in one step",
     "Rename FROM to TO in one catalog operation: a file, or a directory (every file whose path "
     "starts with FROM/) as a whole. A file at TO is replaced only with --force.",
     2, 2},
    {"metadata", "ls|add ID=RAFT=GRPC|remove ID",
     "the metadata replicas: list them (role, term, commit and applied index), add or remove one "
     "(admin only)",
     "metadata ls asks every metadata replica (each address of --metadata, and every member "
     "their answers name) for its own view: id, Raft and gRPC address, role (leader, follower, "
     "candidate, ...), term, commit index and applied index; a replica that does not answer is "
     "listed as unreachable. metadata add ID=RAFT=GRPC adds a replica started with dfs-metadata "
     "--join (it catches up, then votes); metadata remove ID takes one out (stop it afterwards). "
     "One change at a time, on the leader. Admin only.",
     1, 2},
    {"help", "[COMMAND]", "this help, or a command's", NULL, 0, 1},
    {NULL, NULL, NULL, NULL, 0, 0},
};

enum {
    C_PUT = 1 << 0,
    C_GET = 1 << 1,
    C_STAT = 1 << 2,
    C_LS = 1 << 3,
    C_RM = 1 << 4,
    C_NODES = 1 << 5,
    C_NODE = 1 << 6,
    C_STATUS = 1 << 7,
    C_SHELL = 1 << 8,
    C_TOKEN = 1 << 9,
    C_WHOAMI = 1 << 10,
    C_MV = 1 << 11,
    C_METADATA = 1 << 12,
    C_TRANSFER = C_PUT | C_GET,
    C_JSON = C_PUT | C_GET | C_STAT | C_LS | C_RM | C_NODES | C_NODE | C_STATUS | C_TOKEN |
             C_WHOAMI | C_METADATA,
};

/* What one command line sets: the command's fields, and how it connects. */
struct args {
    struct dfs_cli cli;
    const char *metadata;
    const char *token_file; /* NULL: $DFS_TOKEN, $DFS_TOKEN_FILE, ~/.config/dfs/token */
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
    bool insecure;
    int64_t timeout_ms;
    enum dfs_log_level level;
    uint32_t ec[2]; /* --ec K+M */
};

/* --ec K+M into uint32_t[2]. */
static int parse_ec(const struct dfs_opt *opt, const char *value, void *field, char **errmsg)
{
    uint32_t *km = field;
    if (dfs_parse_ec(value, 32, &km[0], &km[1]) != DFS_OK)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "--%s takes K+M, e.g. 4+2, with K, M >= 1 and K+M <= 32, not '%s'",
                          opt->name, dfs_quote(value, &(struct dfs_quote){{0}}));
    return DFS_OK;
}

static const struct dfs_opt_choice log_levels[] = {
    {"debug", DFS_LOG_DEBUG, false},
    {"info", DFS_LOG_INFO, false},
    {"warn", DFS_LOG_WARN, false},
    {"warning", DFS_LOG_WARN, true},
    {"error", DFS_LOG_ERROR, false},
    {"off", DFS_LOG_OFF, true},
    {NULL, 0, false},
};

/* dfs.v1.Policy numbers ('-' for '_' accepted). */
static const struct dfs_opt_choice policies[] = {
    {"random", 1, false},  {"min_copy", 2, false},  {"buddy", 3, false}, {"least_used", 4, false},
    {"min-copy", 2, true}, {"least-used", 4, true}, {NULL, 0, false},
};

static const struct dfs_opt_choice replication_modes[] = {
    {"chain", 1, false},
    {"fanout", 0, false},
    {NULL, 0, false},
};

/* dfs.v1.TokenRole numbers; node (4) is made by each node itself (refused below, with why). */
enum { ROLE_NODE = 4 };
static const struct dfs_opt_choice roles[] = {
    {"admin", 1, false},     {"read_write", 2, false}, {"rw", 2, true},
    {"read_only", 3, false}, {"ro", 3, true},          {"node", ROLE_NODE, true},
    {"bootstrap", 5, false}, {"gateway", 6, false},    {NULL, 0, false},
};

#define A(member) DFS_OPT_FIELD(struct args, member)

static const struct dfs_opt opts[] = {
    /* Global: every command takes them. */
    {DFS_OPT_STRING, "metadata", 0, A(metadata), .arg = "HOST:PORT[,...]", .env = "DFS_METADATA",
     .help = "the metadata service, or a list of its replicas"},
    {DFS_OPT_STRING, "token-file", 0, A(token_file), .arg = "PATH",
     .help = "bearer token (default: $DFS_TOKEN, else the file $DFS_TOKEN_FILE, else "
             "~/.config/dfs/token)"},
    {DFS_OPT_STRING, "tls-ca", 0, A(tls_ca), .arg = "FILE", .env = "DFS_TLS_CA",
     .help = "use TLS, trusting this CA"},
    {DFS_OPT_STRING, "tls-cert", 0, A(tls_cert), .arg = "FILE",
     .help = "client certificate, for mutual TLS ..."},
    {DFS_OPT_STRING, "tls-key", 0, A(tls_key), .arg = "FILE", .help = "... and its key"},
    {DFS_OPT_STRING, "tls-server-name", 0, A(tls_server_name), .arg = "NAME",
     .help = "the name the servers' certificates carry, when the addresses are not in them"},
    {DFS_OPT_FLAG, "insecure", 0, A(insecure), .help = "allow plaintext to a non-loopback address"},
    {DFS_OPT_INT, "timeout", 0, A(timeout_ms), .arg = "MS", .def = "10000", .min = 1,
     .max = 3600000, .help = "deadline of each metadata call"},
    {DFS_OPT_ALIAS, "verbose", 'v', .alias = "log-level=info",
     .help = "log what happens (same as --log-level info)"},
    {DFS_OPT_ENUM, "log-level", 0, A(level), .arg = "LEVEL", .def = "error", .choices = log_levels,
     .help = "debug, info, warn or error"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help (after a command: its own)"},
    {DFS_OPT_VERSION, "version", 0, .help = "print the version"},

    /* Per command. */
    {DFS_OPT_FLAG, "json", 0, A(cli.json), .help = "machine-readable output", .commands = C_JSON},
    {DFS_OPT_FLAG, "quiet", 'q', A(cli.quiet), .help = "print nothing on success",
     .commands = C_TRANSFER | C_RM | C_NODE | C_TOKEN | C_MV},
    {DFS_OPT_FLAG, NULL, 'l', A(cli.long_list),
     .help = "ls: sizes, redundancy and dates; status: list the lost and degraded files",
     .commands = C_LS | C_STATUS},
    {DFS_OPT_INT, "replicas", 0, A(cli.replicas), .arg = "K", .min = 1, .max = 16,
     .help = "copies of each fragment (default: the cluster's, 3)", .commands = C_PUT},
    {DFS_OPT_INT, "fragments", 0, A(cli.fragments), .arg = "F", .min = 1, .max = 256,
     .help = "pieces the file is cut into (default: the cluster's, 4; 1 for a file of at most "
             "64 KiB)",
     .commands = C_PUT},
    {DFS_OPT_ENUM, "policy", 0, A(cli.policy), .arg = "P", .choices = policies,
     .help = "placement: random, min_copy, buddy or least_used (default: the cluster's)",
     .commands = C_PUT},
    {DFS_OPT_CUSTOM, "ec", 0, A(ec), .arg = "K+M", .parse = parse_ec,
     .help = "Reed-Solomon erasure code instead of copies (e.g. 4+2; K+M <= 32)",
     .commands = C_PUT},
    {DFS_OPT_ENUM, "replication", 0, A(cli.chain), .arg = "chain|fanout",
     .choices = replication_modes,
     .help = "chain: send each fragment once, the nodes forward it; fanout: send every copy "
             "(default fanout)",
     .commands = C_PUT},
    {DFS_OPT_FLAG, "force", 0, A(cli.force),
     .help = "put: replace an existing file at REMOTE; node decommission: even when the node "
             "holds the only readable copy of a file; mv: replace a file at TO",
     .commands = C_PUT | C_NODE | C_MV},
    {DFS_OPT_FLAG, "resume", 0, A(cli.resume), .help = "continue a partial download of LOCAL",
     .commands = C_GET},
    {DFS_OPT_RATE, "throttle", 0, A(cli.link_rate), .arg = "RATE", .min = 1,
     .help = "most bytes/s on each node link (500K, 100M, 1G bytes/s or 100Mbit bits/s; default "
             "no limit)",
     .commands = C_TRANSFER},
    {DFS_OPT_RATE, "max-rate", 0, A(cli.max_rate), .arg = "RATE", .min = 1,
     .help = "most bytes/s of the whole transfer (default no limit)", .commands = C_TRANSFER},
    {DFS_OPT_INT, "parallel", 0, A(cli.parallel), .arg = "N", .min = 1, .max = 64,
     .help = "node links at once", .commands = C_TRANSFER},
    {DFS_OPT_STRING, "progress-log", 0, A(cli.progress_log), .arg = "FILE",
     .help = "write \"seconds bytes\" lines as the transfer goes", .commands = C_TRANSFER},
    {DFS_OPT_INT, "stall-timeout", 0, A(cli.stall_timeout_ms), .arg = "MS", .def = "60000",
     .min = 100, .max = 86400000, .help = "give up on a stream that makes no progress",
     .commands = C_TRANSFER},
    {DFS_OPT_FLAG, "loss", 0, A(cli.loss),
     .help = "ask every node for every copy and count lost and degraded files",
     .commands = C_STATUS},
    {DFS_OPT_ENUM, "role", 0, A(cli.token_role), .arg = "R", .choices = roles,
     .help = "token create: admin, read_write (rw), read_only (ro), bootstrap (enrolls new "
             "storage nodes) or gateway (the S3 gateway: files, buckets, S3 signing keys)",
     .commands = C_TOKEN},
    {DFS_OPT_STRING, "name", 0, A(cli.token_name), .arg = "N", .min = 1, .max = 64,
     .help = "token create: a name for the token (1 to 64 bytes)", .commands = C_TOKEN},
    {DFS_OPT_DURATION, "ttl", 0, A(cli.token_ttl_ms), .arg = "D", .min = 1000,
     .max = 36500LL * 86400000,
     .help = "token create: how long the token is valid, like 3600s, 90m, 12h or 30d (default "
             "forever)",
     .commands = C_TOKEN},
    {DFS_OPT_FLAG, "all", 0, A(cli.all), .help = "token ls: revoked and expired tokens too",
     .commands = C_TOKEN},
    {DFS_OPT_FLAG, "s3", 0, A(cli.token_s3),
     .help = "token create: also print the token's S3 access key id and secret (the S3 gateway's "
             "credentials; the metadata service needs --s3-key-file)",
     .commands = C_TOKEN},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = "dfs",
    .version = VERSION,
    .usage = "[--metadata HOST:PORT[,...]] COMMAND [ARGS] [OPTIONS]",
    .about = "The dfs client: stores files in a dfs cluster and fetches them, and manages its "
             "nodes and tokens.",
    .opts = opts,
    .commands = commands,
    .epilog = "'dfs COMMAND --help' shows a command's own options.\n"
              "Remote paths look like /dir/name: '/'-separated, no '.' or '..' parts, no control "
              "characters, at most 1024 bytes, at most 255 bytes per name between slashes. Sizes "
              "print in binary units (KiB = 1024 bytes).\n"
              "Exit status: 0 success, 1 failure, 2 bad usage, 130 interrupted.",
};

void dfs_cli_usage(FILE *out)
{
    dfs_opts_help(&spec, NULL, out);
}

/* "dfs: <fmt with arg> (see dfs --help)"; arg is what the user typed, quoted short. */
static int usage_error(const char *fmt, const char *arg)
{
    struct dfs_quote q;
    fprintf(stderr, "dfs: ");
    fprintf(stderr, fmt, dfs_quote(arg, &q));
    fprintf(stderr, " (see dfs --help)\n");
    return DFS_EXIT_USAGE;
}

int dfs_cli_run(struct dfs_session *sess, int argc, char **argv)
{
    struct args a;
    memset(&a, 0, sizeof a);
    dfs_opts *res = NULL;
    int status = DFS_EXIT_USAGE;
    if (!dfs_opts_main(&spec, argc, argv, environ, &a, &res, &status))
        return status;
    const char *name = dfs_opts_command(res)->name;
    /* Every command takes at most two arguments (the table says so): kept past res. */
    int nargs = dfs_opts_argc(res);
    const char *args[2] = {NULL, NULL};
    for (int i = 0; i < nargs && i < 2; i++)
        args[i] = dfs_opts_argv(res)[i];
    bool metadata_given = dfs_opts_source(res, "metadata") == DFS_OPT_FROM_ARGV;
    bool connection_given = false;
    static const char *const connection[] = {"token-file", "tls-ca",          "tls-cert",
                                             "tls-key",    "tls-server-name", "insecure"};
    for (size_t i = 0; i < sizeof connection / sizeof connection[0]; i++)
        connection_given |= dfs_opts_source(res, connection[i]) == DFS_OPT_FROM_ARGV;
    dfs_opts_destroy(res);
    struct dfs_cli cli = a.cli;
    cli.interrupted = sess->interrupted;
    cli.ec_data = a.ec[0];
    cli.ec_parity = a.ec[1];
    if (strcmp(name, "help") == 0) {
        const struct dfs_opts_command *cmd = NULL;
        for (size_t i = 0; nargs > 0 && commands[i].name != NULL; i++)
            if (strcmp(commands[i].name, args[0]) == 0)
                cmd = &commands[i];
        if (nargs > 0 && cmd == NULL)
            return usage_error("unknown command '%s'", args[0]);
        dfs_opts_help(&spec, cmd, stdout);
        return DFS_EXIT_OK;
    }
    if (sess->client != NULL && metadata_given)
        return usage_error("%s: the shell's metadata service is fixed (start dfs shell with "
                           "--metadata instead)",
                           "--metadata");
    if (sess->client != NULL && connection_given)
        return usage_error("%s: the shell's connection is fixed (start dfs shell with the token "
                           "and TLS options instead)",
                           "--token-file/--tls-*/--insecure");
    if (strcmp(name, "shell") == 0 && sess->client != NULL)
        return usage_error("%s: already in the shell", "shell");
    if (cli.token_role == ROLE_NODE)
        return usage_error("--role %s: node tokens are made by each storage node at its "
                           "enrollment; give nodes a --role bootstrap token",
                           "node");
    if (cli.ec_data != 0 && cli.chain) {
        fprintf(stderr, "dfs: --replication chain is for replicated files, not --ec (see dfs "
                        "--help)\n");
        return DFS_EXIT_USAGE;
    }
    /* A chain's nodes pace each hop at --throttle; the nodes refuse rates below 1 KiB/s (a 1 MiB
       chunk would hold a put for hours: services/validate/validate.h). */
    if (cli.chain && cli.link_rate > 0 && cli.link_rate < 1024) {
        fprintf(stderr, "dfs: --replication chain needs a --throttle of at least 1K (1024 "
                        "bytes/s) (see dfs --help)\n");
        return DFS_EXIT_USAGE;
    }
    if (cli.ec_data != 0 && (cli.replicas != 0 || cli.fragments != 0)) {
        fprintf(stderr,
                "dfs: --ec cannot be combined with --replicas or --fragments (see dfs --help)\n");
        return DFS_EXIT_USAGE;
    }
    if (strcmp(name, "metadata") == 0 &&
        dfs_cmd_metadata_check(args[0], nargs > 1 ? args[1] : NULL) != DFS_EXIT_OK)
        return DFS_EXIT_USAGE;
    cli.progress = !cli.quiet && dfs_progress_wanted(STDERR_FILENO);

    dfs_log_init("dfs", a.level);
    dfs_client_route_grpc_logs();
    /* The program connects for this one command; the shell brings its connection. The token is
       --token-file, else $DFS_TOKEN, else $DFS_TOKEN_FILE, else ~/.config/dfs/token when it
       exists, else none (the metadata service will say so). */
    dfs_client *own = NULL;
    cli.client = sess->client;
    if (cli.client == NULL) {
        struct dfs_client_options o = {.metadata = a.metadata,
                                       .timeout_ms = a.timeout_ms,
                                       .token_file = a.token_file,
                                       .token_from_env = true,
                                       .tls_ca = a.tls_ca,
                                       .tls_cert = a.tls_cert,
                                       .tls_key = a.tls_key,
                                       .tls_server_name = a.tls_server_name,
                                       .insecure = a.insecure};
        char *err = NULL;
        if (dfs_client_open(&o, &own, &err) != DFS_OK) {
            fprintf(stderr, "dfs: %s\n", err);
            free(err);
            return DFS_EXIT_USAGE;
        }
        cli.client = own;
    }

    if (strcmp(name, "shell") == 0)
        status = dfs_shell_run(&cli);
    else if (strcmp(name, "put") == 0)
        status = dfs_cmd_put(&cli, args[0], args[1]);
    else if (strcmp(name, "get") == 0)
        status = dfs_cmd_get(&cli, args[0], args[1]);
    else if (strcmp(name, "stat") == 0)
        status = dfs_cmd_stat(&cli, args[0]);
    else if (strcmp(name, "ls") == 0)
        status = dfs_cmd_ls(&cli, nargs > 0 ? args[0] : "");
    else if (strcmp(name, "rm") == 0)
        status = dfs_cmd_rm(&cli, args[0]);
    else if (strcmp(name, "nodes") == 0)
        status = dfs_cmd_nodes(&cli);
    else if (strcmp(name, "node") == 0)
        status = dfs_cmd_node(&cli, args[0], args[1]);
    else if (strcmp(name, "token") == 0)
        status = dfs_cmd_token(&cli, args[0], nargs > 1 ? args[1] : NULL);
    else if (strcmp(name, "whoami") == 0)
        status = dfs_cmd_whoami(&cli);
    else if (strcmp(name, "mv") == 0)
        status = dfs_cmd_mv(&cli, args[0], args[1]);
    else if (strcmp(name, "metadata") == 0)
        status = dfs_cmd_metadata(&cli, args[0], nargs > 1 ? args[1] : NULL);
    else
        status = dfs_cmd_status(&cli);
    dfs_client_close(own);
    if (fflush(stdout) != 0 && status == DFS_EXIT_OK)
        status = dfs_cli_error(DFS_EIO, "cannot write the output");
    return status;
}
