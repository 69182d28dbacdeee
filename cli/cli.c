/* Parsing and running one dfs command line, for the dfs program and for dfs shell. */
#include "cli/cli.h"

#include "cli/commands.h"
#include "cli/progress.h"
#include "client/meta.h"
#include "common/err.h"
#include "common/log.h"
#include "common/units.h"
#include "services/rpc/grpclog.h"
#include "services/rpc/security.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VERSION "0.1.0"

void dfs_cli_usage(FILE *out)
{
    fprintf(
        out,
        "usage: dfs [--metadata HOST:PORT] COMMAND [ARGS] [OPTIONS]\n"
        "\n"
        "Commands:\n"
        "  put LOCAL REMOTE     store a local file at REMOTE (\"-\": standard input, kept in\n"
        "                       $TMPDIR first when it is a pipe)\n"
        "      --replicas K       copies of each fragment (default: the cluster's, 3)\n"
        "      --fragments F      pieces the file is cut into (default: the cluster's, 4)\n"
        "      --policy P         placement: random, min_copy, buddy, least_used\n"
        "      --ec K+M           Reed-Solomon erasure code instead (e.g. 4+2; K+M <= 32)\n"
        "      --force            replace an existing file at REMOTE\n"
        "      --replication chain|fanout  chain: send each fragment once, nodes forward it\n"
        "  get REMOTE LOCAL     fetch REMOTE into LOCAL (\"-\" for standard output)\n"
        "      --resume           continue a partial download of LOCAL\n"
        "  put and get take --throttle RATE (per node link; 500K, 100M, 1G bytes/s or 100Mbit),\n"
        "      --max-rate RATE (whole transfer), --parallel N (links at once),\n"
        "      --progress-log FILE (\"seconds bytes\" lines)\n"
        "  stat REMOTE          size, checksum, redundancy and where every fragment is\n"
        "  ls [PREFIX] [-l]     list files whose path starts with PREFIX\n"
        "  rm REMOTE            remove a file (its fragments are removed from the nodes)\n"
        "  nodes                storage nodes: state, usage, zone, placement groups, heartbeat\n"
        "  node drain ID        move a node's fragments elsewhere, then retire it\n"
        "  node undrain ID      return a draining (or retired) node to service\n"
        "  node decommission ID retire a node now (its copies are repaired from the others);\n"
        "                       refused while it holds the only readable copy of a file\n"
        "                       (drain it instead), unless --force\n"
        "  status [--loss]      cluster summary, file health and repair progress; --loss asks\n"
        "                       every node for every copy and counts lost and degraded files\n"
        "  shell                interactive prompt with history\n"
        "  token create --role R [--name N] [--ttl D]  make a bearer token (admin only); R is\n"
        "                       admin, read_write (rw), read_only (ro) or bootstrap (enrolls\n"
        "                       new storage nodes); D like 3600s, 90m, 12h, 30d; prints the\n"
        "                       token (shown only this once)\n"
        "  token revoke ID      revoke a token for good (ID or a unique prefix)\n"
        "  token ls [--all]     tokens (--all: revoked and expired ones too)\n"
        "  whoami               the token this command runs with\n"
        "\n"
        "Options:\n"
        "  --metadata HOST:PORT   metadata service (default: $DFS_METADATA)\n"
        "  --token-file PATH      bearer token (default: $DFS_TOKEN, else $DFS_TOKEN_FILE, else\n"
        "                         ~/.config/dfs/token)\n"
        "  --tls-ca FILE          use TLS, trusting this CA (default: $DFS_TLS_CA)\n"
        "  --tls-cert FILE, --tls-key FILE  client certificate, for mutual TLS\n"
        "  --tls-server-name N    the name the servers' certificates carry, when the addresses\n"
        "                         are not in them\n"
        "  --insecure             allow plaintext to a non-loopback address\n"
        "  --json                 machine-readable output (stat, ls, nodes, status, put, get, rm)\n"
        "  -q, --quiet            print nothing on success (put, get, rm)\n"
        "  --timeout MS           deadline of each metadata call (default 10000)\n"
        "  --stall-timeout MS     give up on a stream that makes no progress (default 60000)\n"
        "  -v, --verbose          log what happens (same as --log-level info)\n"
        "  --log-level LEVEL      debug, info, warn, error (default error)\n"
        "  -h, --help, --version\n"
        "\n"
        "Remote paths look like /dir/name: '/'-separated, no '.' or '..' parts, no control\n"
        "characters, at most 1024 bytes, at most 255 bytes per name between slashes. Sizes\n"
        "print in binary units (KiB = 1024 bytes).\n"
        "Exit status: 0 success, 1 failure, 2 bad usage, 130 interrupted.\n");
}

/* Which options a command takes, as bits of `given`. */
enum {
    F_JSON = 1 << 0,
    F_QUIET = 1 << 1,
    F_LONG = 1 << 2,
    F_REPLICAS = 1 << 3,
    F_FRAGMENTS = 1 << 4,
    F_POLICY = 1 << 5,
    F_FORCE = 1 << 6,
    F_STALL = 1 << 7,
    F_EC = 1 << 8,
    F_RATE = 1 << 9,
    F_RESUME = 1 << 10,
    F_CHAIN = 1 << 11,
    F_LOSS = 1 << 12,
    F_TOKEN = 1 << 13, /* --role, --name, --ttl */
    F_ALL = 1 << 14,
};

struct command {
    const char *name;
    int min_args, max_args;
    unsigned allowed;
    const char *args;
};

static const struct command commands[] = {
    {"put", 2, 2,
     F_JSON | F_QUIET | F_REPLICAS | F_FRAGMENTS | F_POLICY | F_FORCE | F_STALL | F_EC | F_RATE |
         F_CHAIN,
     "LOCAL REMOTE"},
    {"get", 2, 2, F_JSON | F_QUIET | F_STALL | F_RATE | F_RESUME, "REMOTE LOCAL"},
    {"stat", 1, 1, F_JSON, "REMOTE"},
    {"ls", 0, 1, F_JSON | F_LONG, "[PREFIX]"},
    {"rm", 1, 1, F_JSON | F_QUIET, "REMOTE"},
    {"nodes", 0, 0, F_JSON, ""},
    {"shell", 0, 0, 0, ""},
    {"status", 0, 0, F_JSON | F_LOSS | F_LONG, "[--loss] [-l]"},
    {"node", 2, 2, F_JSON | F_QUIET | F_FORCE, "drain|undrain|decommission ID [--force]"},
    {"token", 1, 2, F_JSON | F_QUIET | F_TOKEN | F_ALL, "create|revoke ID|ls"},
    {"whoami", 0, 0, F_JSON, ""},
};

static const char *flag_name(unsigned bit)
{
    switch (bit) {
    case F_JSON:
        return "--json";
    case F_QUIET:
        return "--quiet";
    case F_LONG:
        return "-l";
    case F_REPLICAS:
        return "--replicas";
    case F_FRAGMENTS:
        return "--fragments";
    case F_POLICY:
        return "--policy";
    case F_FORCE:
        return "--force";
    case F_EC:
        return "--ec";
    case F_RATE:
        return "--throttle, --max-rate, --parallel or --progress-log";
    case F_RESUME:
        return "--resume";
    case F_CHAIN:
        return "--replication";
    case F_LOSS:
        return "--loss";
    case F_TOKEN:
        return "--role, --name or --ttl";
    case F_ALL:
        return "--all";
    default:
        return "--stall-timeout";
    }
}

/* Placement policy names, as dfs.v1.Policy numbers ('-' is accepted for '_'). */
static int parse_policy(const char *name)
{
    static const char *const names[] = {"random", "min_copy", "buddy", "least_used"};
    char buf[32];
    size_t n = strlen(name);
    if (n >= sizeof buf)
        return -1;
    for (size_t i = 0; i <= n; i++)
        buf[i] = name[i] == '-' ? '_' : name[i];
    for (int i = 0; i < 4; i++)
        if (strcmp(buf, names[i]) == 0)
            return i + 1;
    return -1;
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

/* The option getopt_long just refused: "-x" for a short one (in letter), else the word as typed. */
static const char *bad_option(char **argv, char letter[3])
{
    if (optopt > 0x20 && optopt < 0x7f) {
        snprintf(letter, 3, "-%c", optopt);
        return letter;
    }
    return argv[optind - 1];
}

static int parse_u32(const char *flag, const char *v, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end = NULL;
    /* Digits only: strtoul alone would also take " 5", "+5" and "-5" (as a huge number). */
    unsigned long x = v[0] >= '0' && v[0] <= '9' ? strtoul(v, &end, 10) : 0;
    if (end == NULL || *end != '\0' || x < lo || x > hi) {
        fprintf(stderr, "dfs: %s must be a whole number from %u to %u, not '%s' (see dfs --help)\n",
                flag, lo, hi, v);
        return -1;
    }
    *out = (uint32_t)x;
    return 0;
}

/* A duration: a whole number with s, m, h or d ("90m"); DFS_EINVAL otherwise. */
static int parse_duration_ms(const char *v, int64_t *out)
{
    char *end = NULL;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v || v[0] == '-' || n == 0 || n > 36500ULL * 86400)
        return DFS_EINVAL;
    int64_t unit;
    if (strcmp(end, "s") == 0)
        unit = 1000;
    else if (strcmp(end, "m") == 0)
        unit = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        unit = 3600 * 1000;
    else if (strcmp(end, "d") == 0)
        unit = 86400 * 1000;
    else
        return DFS_EINVAL;
    if (n > (unsigned long long)(INT64_MAX / unit) ||
        n * (unsigned long long)unit > 36500ULL * 86400 * 1000)
        return DFS_EINVAL;
    *out = (int64_t)n * unit;
    return DFS_OK;
}

/*
 * The bearer token this command presents: --token-file, else $DFS_TOKEN, else $DFS_TOKEN_FILE,
 * else ~/.config/dfs/token when it exists, else none (NULL: the metadata service will say so).
 * *out is malloc'd.
 */
static int load_token(const char *file, char **out, char **err)
{
    *out = NULL;
    if (file == NULL) {
        const char *t = getenv("DFS_TOKEN");
        if (t != NULL && t[0] != '\0') {
            if (!dfs_rpc_token_valid(t))
                return dfs_seterr(err, DFS_EINVAL, "$DFS_TOKEN is not a token");
            *out = strdup(t);
            return *out != NULL ? DFS_OK : dfs_seterr(err, DFS_ENOMEM, "out of memory");
        }
        file = getenv("DFS_TOKEN_FILE");
        if (file != NULL && file[0] == '\0')
            file = NULL;
    }
    char def[4096];
    if (file == NULL) {
        const char *home = getenv("HOME");
        if (home == NULL ||
            (size_t)snprintf(def, sizeof def, "%s/.config/dfs/token", home) >= sizeof def ||
            access(def, F_OK) != 0)
            return DFS_OK;
        file = def;
    }
    return dfs_rpc_token_read_file(file, out, err);
}

int dfs_cli_run(struct dfs_session *sess, int argc, char **argv)
{
    enum {
        O_METADATA = 1000,
        O_JSON,
        O_TIMEOUT,
        O_STALL,
        O_LOG,
        O_REPLICAS,
        O_FRAGMENTS,
        O_POLICY,
        O_FORCE,
        O_EC,
        O_THROTTLE,
        O_MAX_RATE,
        O_PARALLEL,
        O_RESUME,
        O_PROGRESS_LOG,
        O_REPLICATION,
        O_VERSION,
        O_LOSS,
        O_TOKEN_FILE,
        O_ROLE,
        O_NAME,
        O_TTL,
        O_ALL,
    };
    static const struct option longopts[] = {
        {"metadata", required_argument, NULL, O_METADATA},
        {"json", no_argument, NULL, O_JSON},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"stall-timeout", required_argument, NULL, O_STALL},
        {"log-level", required_argument, NULL, O_LOG},
        {"replicas", required_argument, NULL, O_REPLICAS},
        {"fragments", required_argument, NULL, O_FRAGMENTS},
        {"policy", required_argument, NULL, O_POLICY},
        {"force", no_argument, NULL, O_FORCE},
        {"ec", required_argument, NULL, O_EC},
        {"throttle", required_argument, NULL, O_THROTTLE},
        {"max-rate", required_argument, NULL, O_MAX_RATE},
        {"parallel", required_argument, NULL, O_PARALLEL},
        {"resume", no_argument, NULL, O_RESUME},
        {"progress-log", required_argument, NULL, O_PROGRESS_LOG},
        {"replication", required_argument, NULL, O_REPLICATION},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, O_VERSION},
        {"loss", no_argument, NULL, O_LOSS},
        {"token-file", required_argument, NULL, O_TOKEN_FILE},
        {"tls-ca", required_argument, NULL, DFS_RPC_OPT_TLS_CA},
        {"tls-cert", required_argument, NULL, DFS_RPC_OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, DFS_RPC_OPT_TLS_KEY},
        {"tls-server-name", required_argument, NULL, DFS_RPC_OPT_TLS_SERVER_NAME},
        {"insecure", no_argument, NULL, DFS_RPC_OPT_INSECURE},
        {"role", required_argument, NULL, O_ROLE},
        {"name", required_argument, NULL, O_NAME},
        {"ttl", required_argument, NULL, O_TTL},
        {"all", no_argument, NULL, O_ALL},
        {NULL, 0, NULL, 0},
    };
    struct dfs_cli cli;
    memset(&cli, 0, sizeof cli);
    struct dfs_rpc_link_security cli_security = {0};
    cli.interrupted = sess->interrupted;
    const char *metadata = getenv("DFS_METADATA");
    bool metadata_given = false;
    /* How this command's links are secured and whom it speaks for (connection flags). */
    const char *token_file = NULL;
    struct dfs_rpc_tls_config tcfg = {.ca_file = getenv("DFS_TLS_CA")};
    bool insecure = false, connection_given = false;
    uint32_t timeout_ms = 10000, stall_ms = 60000;
    enum dfs_log_level level = DFS_LOG_ERROR;
    unsigned given = 0;
    opterr = 0;
    optind = 0; /* GNU getopt: start afresh (the shell parses line after line) */
    int c;
    char letter[3];
    while ((c = getopt_long(argc, argv, ":qvlh", longopts, NULL)) != -1) {
        switch (c) {
        case O_METADATA:
            metadata = optarg;
            metadata_given = true;
            break;
        case O_JSON:
            cli.json = true;
            given |= F_JSON;
            break;
        case 'q':
            cli.quiet = true;
            given |= F_QUIET;
            break;
        case 'v':
            level = DFS_LOG_INFO;
            break;
        case 'l':
            cli.long_list = true;
            given |= F_LONG;
            break;
        case O_TIMEOUT:
            if (parse_u32("--timeout", optarg, 1, 3600000, &timeout_ms) != 0)
                return DFS_EXIT_USAGE;
            break;
        case O_STALL:
            if (parse_u32("--stall-timeout", optarg, 100, 86400000, &stall_ms) != 0)
                return DFS_EXIT_USAGE;
            given |= F_STALL;
            break;
        case O_LOG:
            if (dfs_log_level_parse(optarg, &level) != DFS_OK)
                return usage_error("--log-level must be debug, info, warn or error, not '%s'",
                                   optarg);
            break;
        case O_REPLICAS:
            if (parse_u32("--replicas", optarg, 1, 16, &cli.replicas) != 0)
                return DFS_EXIT_USAGE;
            given |= F_REPLICAS;
            break;
        case O_FRAGMENTS:
            if (parse_u32("--fragments", optarg, 1, 256, &cli.fragments) != 0)
                return DFS_EXIT_USAGE;
            given |= F_FRAGMENTS;
            break;
        case O_POLICY:
            cli.policy = parse_policy(optarg);
            if (cli.policy < 0)
                return usage_error(
                    "unknown placement policy '%s' (random, min_copy, buddy or least_used)",
                    optarg);
            given |= F_POLICY;
            break;
        case O_FORCE:
            cli.force = true;
            given |= F_FORCE;
            break;
        case O_THROTTLE:
        case O_MAX_RATE: {
            char *err = NULL;
            uint64_t *to = c == O_THROTTLE ? &cli.link_rate : &cli.max_rate;
            if (dfs_parse_rate(optarg, to, &err) != DFS_OK) {
                fprintf(stderr, "dfs: %s: %s (see dfs --help)\n",
                        c == O_THROTTLE ? "--throttle" : "--max-rate", err);
                free(err);
                return DFS_EXIT_USAGE;
            }
            given |= F_RATE;
            break;
        }
        case O_LOSS:
            cli.loss = true;
            given |= F_LOSS;
            break;
        case O_TOKEN_FILE:
            token_file = optarg;
            connection_given = true;
            break;
        case O_ROLE: {
            /* dfs.v1.TokenRole's numbers; node (4) is made by each node itself. */
            static const char *const roles[] = {"admin", "read_write", "read_only", "node",
                                                "bootstrap"};
            cli.token_role = 0;
            for (int i = 0; i < 5; i++)
                if (strcmp(optarg, roles[i]) == 0)
                    cli.token_role = i + 1;
            if (strcmp(optarg, "rw") == 0)
                cli.token_role = 2;
            if (strcmp(optarg, "ro") == 0)
                cli.token_role = 3;
            if (cli.token_role == 4)
                return usage_error("--role %s: node tokens are made by each storage node at its "
                                   "enrollment; give nodes a --role bootstrap token",
                                   optarg);
            if (cli.token_role == 0)
                return usage_error("--role is admin, read_write (rw), read_only (ro) or "
                                   "bootstrap, not '%s'",
                                   optarg);
            given |= F_TOKEN;
            break;
        }
        case O_NAME:
            if (optarg[0] == '\0' || strlen(optarg) > 64)
                return usage_error("--name must be 1 to 64 characters, not '%s'", optarg);
            cli.token_name = optarg;
            given |= F_TOKEN;
            break;
        case O_TTL:
            if (parse_duration_ms(optarg, &cli.token_ttl_ms) != DFS_OK)
                return usage_error("--ttl takes a duration like 3600s, 90m, 12h or 30d (at most "
                                   "100 years), not '%s'",
                                   optarg);
            given |= F_TOKEN;
            break;
        case O_ALL:
            cli.all = true;
            given |= F_ALL;
            break;
        case O_RESUME:
            cli.resume = true;
            given |= F_RESUME;
            break;
        case O_REPLICATION:
            if (strcmp(optarg, "chain") != 0 && strcmp(optarg, "fanout") != 0)
                return usage_error("--replication is chain or fanout, not '%s'", optarg);
            cli.chain = strcmp(optarg, "chain") == 0;
            given |= F_CHAIN;
            break;
        case O_PROGRESS_LOG:
            cli.progress_log = optarg;
            given |= F_RATE;
            break;
        case O_PARALLEL: {
            uint32_t n;
            if (parse_u32("--parallel", optarg, 1, 64, &n) != 0)
                return DFS_EXIT_USAGE;
            cli.parallel = n;
            given |= F_RATE;
            break;
        }
        case O_EC: {
            uint32_t k = 0, m = 0;
            if (dfs_parse_ec(optarg, 32, &k, &m) != DFS_OK)
                return usage_error(
                    "--ec takes K+M, e.g. 4+2, with K, M >= 1 and K+M <= 32, not '%s'", optarg);
            cli.ec_data = k;
            cli.ec_parity = m;
            given |= F_EC;
            break;
        }
        case 'h':
            dfs_cli_usage(stdout);
            return DFS_EXIT_OK;
        case O_VERSION:
            printf("dfs " VERSION "\n");
            return DFS_EXIT_OK;
        case ':':
            return usage_error("%s needs a value", bad_option(argv, letter));
        default:
            if (!dfs_rpc_security_option(c, optarg, &tcfg, &insecure))
                return usage_error("unknown option '%s'", bad_option(argv, letter));
            connection_given = true;
            break;
        }
    }
    if (optind >= argc) {
        dfs_cli_usage(stderr);
        return DFS_EXIT_USAGE;
    }
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        dfs_cli_usage(stdout);
        return DFS_EXIT_OK;
    }
    if (sess->meta != NULL && metadata_given)
        return usage_error("%s: the shell's metadata service is fixed (start dfs shell with "
                           "--metadata instead)",
                           "--metadata");
    if (sess->meta != NULL && connection_given)
        return usage_error("%s: the shell's connection is fixed (start dfs shell with the token "
                           "and TLS options instead)",
                           "--token-file/--tls-*/--insecure");
    if (strcmp(name, "shell") == 0) {
        if (sess->meta != NULL)
            return usage_error("%s: already in the shell", "shell");
        if (optind + 1 < argc)
            return usage_error("usage: dfs shell (see %s)", "dfs --help");
    }
    const struct command *cmd = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            cmd = &commands[i];
    if (cmd == NULL)
        return usage_error("unknown command '%s'", name);
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;
    if (nargs < cmd->min_args || nargs > cmd->max_args) {
        fprintf(stderr, "dfs: usage: dfs %s %s (see dfs --help)\n", cmd->name, cmd->args);
        return DFS_EXIT_USAGE;
    }
    if ((given & F_EC) && cli.chain) {
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
    if ((given & F_EC) && (given & (F_REPLICAS | F_FRAGMENTS))) {
        fprintf(stderr,
                "dfs: --ec cannot be combined with --replicas or --fragments (see dfs --help)\n");
        return DFS_EXIT_USAGE;
    }
    unsigned extra = given & ~cmd->allowed;
    if (extra != 0) {
        unsigned bit = extra & -extra;
        fprintf(stderr, "dfs: %s does not take %s (see dfs --help)\n", cmd->name, flag_name(bit));
        return DFS_EXIT_USAGE;
    }
    cli.stall_timeout_ms = stall_ms;
    cli.progress = !cli.quiet && dfs_progress_wanted(STDERR_FILENO);

    dfs_log_init("dfs", level);
    dfs_rpc_route_grpc_logs();
    /* The program connects for this one command; the shell brings its connection. */
    dfs_meta *own = NULL;
    dfs_rpc_tls *tls = NULL;
    char *token = NULL;
    cli.meta = sess->meta;
    if (cli.meta == NULL) {
        char *err = NULL;
        if (dfs_rpc_tls_create_optional(&tcfg, &tls, &err) != DFS_OK ||
            load_token(token_file, &token, &err) != DFS_OK) {
            fprintf(stderr, "dfs: %s\n", err);
            free(err);
            dfs_rpc_tls_destroy(tls);
            return DFS_EXIT_USAGE;
        }
        /* cli_security lives as long as this call, and so as long as the connection. */
        cli_security = (struct dfs_rpc_link_security){.tls = tls, .insecure = insecure};
        struct dfs_rpc_channel_opts opts = {.security = &cli_security, .token = token};
        if (dfs_meta_open(metadata, timeout_ms, &opts, &own, &err) != DFS_OK) {
            fprintf(stderr, "dfs: %s\n", err);
            free(err);
            dfs_rpc_tls_destroy(tls);
            if (token != NULL)
                explicit_bzero(token, strlen(token));
            free(token);
            return DFS_EXIT_USAGE;
        }
        cli.meta = own;
    }

    int status;
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
    else
        status = dfs_cmd_status(&cli);
    dfs_meta_close(own);
    dfs_rpc_tls_destroy(tls);
    if (token != NULL)
        explicit_bzero(token, strlen(token));
    free(token);
    if (fflush(stdout) != 0 && status == DFS_EXIT_OK)
        status = dfs_cli_error(DFS_EIO, "cannot write the output");
    return status;
}
