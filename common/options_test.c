/* Tests of the option table: syntax, types and bounds, the environment, commands, the help. */
#include "common/options.h"

#include "common/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct conf {
    const char *listen;
    const char *name;
    int64_t threads;
    uint32_t small;
    int32_t signed_;
    uint64_t size;
    uint64_t rate;
    uint64_t scrub;
    int64_t ttl_ms;
    double seconds;
    int level;
    bool verbose_flag;
    bool json;
    bool quiet;
    unsigned k, m;
};

static int parse_km(const struct dfs_opt *opt, const char *value, void *field, char **errmsg)
{
    unsigned *km = field;
    char tail = 0;
    if (sscanf(value, "%u+%u%c", &km[0], &km[1], &tail) != 2 || km[0] == 0 || km[1] == 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "--%s takes K+M", opt->name);
    return DFS_OK;
}

static const struct dfs_opt_choice levels[] = {
    {"debug", 0, false},  {"info", 1, false},  {"warn", 2, false},
    {"warning", 2, true}, {"error", 3, false}, {NULL, 0, false},
};

static const struct dfs_opt opts[] = {
    {DFS_OPT_STRING, "listen", 0, DFS_OPT_FIELD(struct conf, listen), .arg = "ADDR",
     .def = "127.0.0.1:7000", .env = "T_LISTEN", .help = "address to serve on"},
    {DFS_OPT_STRING, "name", 0, DFS_OPT_FIELD(struct conf, name), .arg = "N", .min = 1, .max = 8,
     .help = "a name"},
    {DFS_OPT_INT, "threads", 't', DFS_OPT_FIELD(struct conf, threads), .arg = "N", .def = "4",
     .env = "T_THREADS", .min = 1, .max = 256, .help = "worker threads"},
    {DFS_OPT_INT, "small", 0, DFS_OPT_FIELD(struct conf, small), .arg = "N", .min = 0,
     .max = UINT32_MAX, .help = "a 32-bit field"},
    {DFS_OPT_INT, "signed", 0, DFS_OPT_FIELD(struct conf, signed_), .arg = "N", .min = -5, .max = 5,
     .help = "may be negative"},
    {DFS_OPT_SIZE, "size", 0, DFS_OPT_FIELD(struct conf, size), .arg = "SIZE", .min = 1,
     .max = 1 << 30, .help = "a size"},
    {DFS_OPT_RATE, "rate", 0, DFS_OPT_FIELD(struct conf, rate), .arg = "RATE", .min = 1,
     .help = "a rate, never 0"},
    {DFS_OPT_RATE, "scrub", 0, DFS_OPT_FIELD(struct conf, scrub), .arg = "RATE", .def = "16M",
     .help = "a rate; 0 = off"},
    {DFS_OPT_DURATION, "ttl", 0, DFS_OPT_FIELD(struct conf, ttl_ms), .arg = "D", .min = 1000,
     .max = 30LL * 86400000, .help = "a duration"},
    {DFS_OPT_DOUBLE, "seconds", 0, DFS_OPT_FIELD(struct conf, seconds), .arg = "S", .def = "1",
     .dmin = 0, .dmax = 60, .help = "a number"},
    {DFS_OPT_ENUM, "log-level", 0, DFS_OPT_FIELD(struct conf, level), .arg = "LEVEL", .def = "info",
     .choices = levels, .help = "how much to log"},
    {DFS_OPT_ALIAS, "verbose", 'v', .alias = "log-level=debug", .help = "--log-level debug"},
    {DFS_OPT_CUSTOM, "ec", 0, DFS_OPT_FIELD(struct conf, k), .arg = "K+M", .parse = parse_km,
     .help = "erasure code"},
    {DFS_OPT_SECTION, .help = "Output:"},
    {DFS_OPT_FLAG, "json", 0, DFS_OPT_FIELD(struct conf, json), .help = "JSON"},
    {DFS_OPT_FLAG, "quiet", 'q', DFS_OPT_FIELD(struct conf, quiet), .env = "T_QUIET",
     .help = "print nothing"},
    {DFS_OPT_HELP, "help", 'h', .help = "this help"},
    {DFS_OPT_VERSION, "version", .help = "the version"},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = "prog",
    .version = "1.2",
    .usage = "[options] [FILE]",
    .about = "A program to test the option table with.",
    .opts = opts,
    .max_args = 1,
};

/* Parse a NULL-terminated list of words (after the program's name) with env; returns the code. */
static int parse_env(const struct dfs_opts_spec *sp, struct conf *c, char *const *env,
                     dfs_opts **res, char **err, ...)
{
    char *argv[32] = {"prog"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (char *w = va_arg(ap, char *); w != NULL && argc < 31; w = va_arg(ap, char *))
        argv[argc++] = w;
    va_end(ap);
    memset(c, 0, sizeof *c);
    *err = NULL;
    return dfs_opts_parse(sp, argc, argv, env, c, res, err);
}

#define PARSE(c, res, err, ...) parse_env(&spec, (c), NULL, (res), (err), __VA_ARGS__, NULL)

/* Expect an error whose message contains `says`. */
static void fails(const char *says, int rc, dfs_opts *res, char *err)
{
    assert_int_equal(rc, DFS_EINVAL);
    assert_null(res);
    assert_non_null(err);
    if (strstr(err, says) == NULL)
        fail_msg("'%s' does not say '%s'", err, says);
    assert_null(strchr(err, '\n'));
    free(err);
}

static void test_defaults_and_values(void **state)
{
    (void)state;
    struct conf c;
    dfs_opts *res = NULL;
    char *err = NULL;
    assert_int_equal(parse_env(&spec, &c, NULL, &res, &err, NULL), DFS_OK);
    assert_string_equal(c.listen, "127.0.0.1:7000");
    assert_int_equal(c.threads, 4);
    assert_int_equal(c.scrub, 16 << 20);
    assert_true(c.seconds == 1.0);
    assert_int_equal(c.level, 1);
    assert_int_equal(dfs_opts_source(res, "threads"), DFS_OPT_DEFAULT);
    assert_int_equal(dfs_opts_source(res, "name"), DFS_OPT_UNSET);
    assert_int_equal(dfs_opts_argc(res), 0);
    assert_null(dfs_opts_argv(res)[0]);
    dfs_opts_destroy(res);

    assert_int_equal(PARSE(&c, &res, &err, "--listen", "[::1]:9", "--threads=8", "file", "--size",
                           "64K", "--rate", "100Mbit", "--scrub", "0", "--ttl", "90m", "--seconds",
                           "0.5", "--log-level", "warning", "--ec", "4+2", "--json", "-q",
                           "--small", "4294967295", "--signed", "-5", "--name", "abc"),
                     DFS_OK);
    assert_string_equal(c.listen, "[::1]:9");
    assert_int_equal(c.threads, 8);
    assert_int_equal(c.size, 65536);
    assert_int_equal(c.rate, 12500000);
    assert_int_equal(c.scrub, 0);
    assert_int_equal(c.ttl_ms, 90 * 60000);
    assert_true(c.seconds == 0.5);
    assert_int_equal(c.level, 2);
    assert_int_equal(c.k, 4);
    assert_int_equal(c.m, 2);
    assert_true(c.json && c.quiet);
    assert_int_equal(c.small, UINT32_MAX);
    assert_int_equal(c.signed_, -5);
    assert_string_equal(c.name, "abc");
    assert_int_equal(dfs_opts_source(res, "threads"), DFS_OPT_FROM_ARGV);
    assert_int_equal(dfs_opts_source(res, "-q"), DFS_OPT_FROM_ARGV);
    assert_int_equal(dfs_opts_argc(res), 1);
    assert_string_equal(dfs_opts_argv(res)[0], "file");
    dfs_opts_destroy(res);
}

static void test_syntax(void **state)
{
    (void)state;
    struct conf c;
    dfs_opts *res = NULL;
    char *err = NULL;
    /* Bundled short options, a short option's value glued or apart, a unique prefix, "--". */
    assert_int_equal(PARSE(&c, &res, &err, "-qt7", "--thr", "9", "--js", "--", "--json"), DFS_OK);
    assert_true(c.quiet && c.json);
    assert_int_equal(c.threads, 9);
    assert_int_equal(dfs_opts_argc(res), 1);
    assert_string_equal(dfs_opts_argv(res)[0], "--json");
    dfs_opts_destroy(res);
    assert_int_equal(PARSE(&c, &res, &err, "-t", "7", "-"), DFS_OK);
    assert_int_equal(c.threads, 7);
    assert_string_equal(dfs_opts_argv(res)[0], "-");
    dfs_opts_destroy(res);
    /* A value is the next word, whatever it looks like. */
    assert_int_equal(PARSE(&c, &res, &err, "--listen", "-h"), DFS_OK);
    assert_string_equal(c.listen, "-h");
    dfs_opts_destroy(res);
    /* An alias sets its target; a later option wins. */
    assert_int_equal(PARSE(&c, &res, &err, "--log-level", "error", "-v"), DFS_OK);
    assert_int_equal(c.level, 0);
    assert_int_equal(dfs_opts_source(res, "log-level"), DFS_OPT_FROM_ARGV);
    dfs_opts_destroy(res);
    assert_int_equal(PARSE(&c, &res, &err, "-v", "--log-level", "error"), DFS_OK);
    assert_int_equal(c.level, 3);
    dfs_opts_destroy(res);
}

static void test_errors(void **state)
{
    (void)state;
    struct conf c;
    dfs_opts *res = NULL;
    char *err = NULL;
    int rc;
    rc = PARSE(&c, &res, &err, "--no-such");
    fails("unknown option '--no-such'", rc, res, err);
    rc = PARSE(&c, &res, &err, "--no-such=1");
    fails("unknown option '--no-such'", rc, res, err);
    rc = PARSE(&c, &res, &err, "-qZ");
    fails("unknown option '-Z'", rc, res, err);
    rc = PARSE(&c, &res, &err, "--s", "1");
    fails("option '--s' is ambiguous (--small, --signed, ...)", rc, res, err);
    rc = PARSE(&c, &res, &err, "--threads");
    fails("--threads needs a value", rc, res, err);
    rc = PARSE(&c, &res, &err, "-t");
    fails("-t needs a value", rc, res, err);
    rc = PARSE(&c, &res, &err, "--json=1");
    fails("--json takes no value", rc, res, err);
    rc = PARSE(&c, &res, &err, "a", "b");
    fails("unexpected argument 'b'", rc, res, err);
    /* Malformed and out-of-range numbers. */
    const char *bad_threads[] = {"0",  "257", "",   "x",    "4x",
                                 " 4", "+4",  "-4", "0x10", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_threads / sizeof bad_threads[0]; i++) {
        rc = PARSE(&c, &res, &err, "--threads", bad_threads[i]);
        fails("--threads must be a whole number from 1 to 256", rc, res, err);
    }
    rc = PARSE(&c, &res, &err, "--signed", "-6");
    fails("--signed must be a whole number from -5 to 5, not '-6'", rc, res, err);
    rc = PARSE(&c, &res, &err, "--small", "4294967296");
    fails("--small must be", rc, res, err);
    rc = PARSE(&c, &res, &err, "--size", "2G");
    fails("--size must be from 1 B to 1.00 GiB, not '2G'", rc, res, err);
    rc = PARSE(&c, &res, &err, "--size", "12Q");
    fails("--size: ", rc, res, err);
    rc = PARSE(&c, &res, &err, "--size", "0");
    fails("--size must be from", rc, res, err);
    rc = PARSE(&c, &res, &err, "--rate", "0");
    fails("--rate: ", rc, res, err);
    rc = PARSE(&c, &res, &err, "--scrub", "-1");
    fails("--scrub: ", rc, res, err);
    const char *bad_ttl[] = {
        "90", "0s", "999ms", "31d", "1y", "s", "-1h", "1.5h", "99999999999999999999d"};
    for (size_t i = 0; i < sizeof bad_ttl / sizeof bad_ttl[0]; i++) {
        rc = PARSE(&c, &res, &err, "--ttl", bad_ttl[i]);
        fails("--ttl takes a duration like 3600s, 90m, 12h or 30d, from 1s to 30d", rc, res, err);
    }
    const char *bad_seconds[] = {"0", "60.5", "-1", "1e3", "inf", "nan", "x", ""};
    for (size_t i = 0; i < sizeof bad_seconds / sizeof bad_seconds[0]; i++) {
        rc = PARSE(&c, &res, &err, "--seconds", bad_seconds[i]);
        fails("--seconds must be a number above 0 and at most 60", rc, res, err);
    }
    rc = PARSE(&c, &res, &err, "--log-level", "loud");
    fails("--log-level must be debug, info, warn or error, not 'loud'", rc, res, err);
    rc = PARSE(&c, &res, &err, "--ec", "4");
    fails("--ec takes K+M", rc, res, err);
    rc = PARSE(&c, &res, &err, "--name", "");
    fails("--name must be 1 to 8 bytes long", rc, res, err);
    rc = PARSE(&c, &res, &err, "--name", "123456789");
    fails("--name must be 1 to 8 bytes long", rc, res, err);
    /* What the user typed is quoted short, however long. */
    char long_word[5000];
    memset(long_word, 'x', sizeof long_word - 1);
    long_word[0] = long_word[1] = '-';
    long_word[sizeof long_word - 1] = '\0';
    rc = PARSE(&c, &res, &err, long_word);
    assert_int_equal(rc, DFS_EINVAL);
    assert_true(strlen(err) < 100);
    free(err);
    rc = PARSE(&c, &res, &err, "--threads", long_word + 2);
    assert_int_equal(rc, DFS_EINVAL);
    assert_true(strlen(err) < 150);
    free(err);
}

static void test_help_and_version(void **state)
{
    (void)state;
    struct conf c;
    dfs_opts *res = NULL;
    char *err = NULL;
    /* -h wins over what follows, not over an error before it. */
    assert_int_equal(PARSE(&c, &res, &err, "--threads", "8", "-h", "--threads", "x"),
                     DFS_OPTS_HELP);
    assert_non_null(res);
    assert_null(dfs_opts_command(res));
    dfs_opts_destroy(res);
    assert_int_equal(PARSE(&c, &res, &err, "-qh"), DFS_OPTS_HELP);
    dfs_opts_destroy(res);
    assert_int_equal(PARSE(&c, &res, &err, "--version"), DFS_OPTS_VERSION);
    dfs_opts_destroy(res);
    int rc = PARSE(&c, &res, &err, "--threads", "x", "-h");
    fails("--threads must be", rc, res, err);
}

static void test_environment(void **state)
{
    (void)state;
    struct conf c;
    dfs_opts *res = NULL;
    char *err = NULL;
    char *env[] = {"T_LISTEN=10.0.0.1:1", "T_THREADS=12", "T_QUIET=1", "OTHER=x", NULL};
    /* The environment beats the default, the command line beats the environment. */
    assert_int_equal(parse_env(&spec, &c, env, &res, &err, NULL), DFS_OK);
    assert_string_equal(c.listen, "10.0.0.1:1");
    assert_int_equal(c.threads, 12);
    assert_true(c.quiet);
    assert_int_equal(dfs_opts_source(res, "listen"), DFS_OPT_FROM_ENV);
    dfs_opts_destroy(res);
    assert_int_equal(parse_env(&spec, &c, env, &res, &err, "--threads", "3", NULL), DFS_OK);
    assert_int_equal(c.threads, 3);
    assert_string_equal(c.listen, "10.0.0.1:1");
    dfs_opts_destroy(res);
    /* An empty variable counts as unset; a bad one is an error that names it. */
    char *empty[] = {"T_LISTEN=", "T_THREADS=", NULL};
    assert_int_equal(parse_env(&spec, &c, empty, &res, &err, NULL), DFS_OK);
    assert_string_equal(c.listen, "127.0.0.1:7000");
    assert_int_equal(c.threads, 4);
    dfs_opts_destroy(res);
    char *bad[] = {"T_THREADS=lots", NULL};
    int rc = parse_env(&spec, &c, bad, &res, &err, NULL);
    fails("$T_THREADS must be a whole number from 1 to 256, not 'lots'", rc, res, err);
    /* ...unless the command line gave the option. */
    assert_int_equal(parse_env(&spec, &c, bad, &res, &err, "-t", "2", NULL), DFS_OK);
    dfs_opts_destroy(res);
}

/* The whole help of spec (cmd NULL) or of a command, as a string (caller frees). */
static char *help_of(const struct dfs_opts_spec *sp, const struct dfs_opts_command *cmd)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    dfs_opts_help(sp, cmd, f);
    fclose(f);
    return buf;
}

static void test_help_text(void **state)
{
    (void)state;
    char *h = help_of(&spec, NULL);
    assert_non_null(strstr(h, "usage: prog [options] [FILE]\n\nA program to test"));
    assert_non_null(strstr(h, "\nOptions:\n  --listen ADDR"));
    assert_non_null(strstr(h, "address to serve on (default 127.0.0.1:7000; env T_LISTEN)\n"));
    assert_non_null(strstr(h, "  -t, --threads N"));
    assert_non_null(strstr(h, "worker threads (default 4; env T_THREADS)\n"));
    assert_non_null(strstr(h, "\nOutput:\n  --json"));
    assert_non_null(strstr(h, "  -q, --quiet"));
    assert_non_null(strstr(h, "  -h, --help"));
    /* Every line fits in 80 columns, descriptions start in one column. */
    size_t col = 0;
    for (char *line = h; *line != '\0';) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        assert_true(nl - line <= 80);
        if (strncmp(line, "  -", 3) == 0) {
            size_t c2 = 0;
            /* the description's column: after the last run of two spaces on the line */
            for (char *p = line + 2; p + 1 < nl; p++)
                if (p[0] == ' ' && p[1] == ' ') {
                    while (*p == ' ')
                        p++;
                    c2 = (size_t)(p - line);
                    break;
                }
            if (c2 != 0) {
                if (col == 0)
                    col = c2;
                assert_int_equal(c2, col);
            }
        }
        line = nl + 1;
    }
    free(h);
}

/* ---- commands ---- */

struct cmdconf {
    bool json, force, all;
    int64_t replicas;
    const char *metadata;
};

static const struct dfs_opts_command commands[] = {
    {"put", "LOCAL REMOTE", "store a file", "Store LOCAL at REMOTE, in fragments.", 2, 2},
    {"ls", "[PREFIX]", "list files", NULL, 0, 1},
    {"nodes", "", "storage nodes\nand their state", NULL, 0, 0},
    {NULL},
};

enum { PUT = 1 << 0, LS = 1 << 1, NODES = 1 << 2 };

static const struct dfs_opt cmd_opts[] = {
    {DFS_OPT_STRING, "metadata", 0, DFS_OPT_FIELD(struct cmdconf, metadata), .arg = "HOST:PORT",
     .env = "T_METADATA", .help = "metadata service"},
    {DFS_OPT_HELP, "help", 'h', .help = "this help"},
    {DFS_OPT_FLAG, "json", 0, DFS_OPT_FIELD(struct cmdconf, json), .help = "JSON",
     .commands = LS | NODES},
    {DFS_OPT_INT, "replicas", 0, DFS_OPT_FIELD(struct cmdconf, replicas), .arg = "K", .min = 1,
     .max = 16, .help = "copies", .commands = PUT},
    {DFS_OPT_FLAG, "force", 0, DFS_OPT_FIELD(struct cmdconf, force), .help = "replace",
     .commands = PUT},
    {0},
};

static const struct dfs_opts_spec cmd_spec = {
    .prog = "dfs",
    .usage = "COMMAND [ARGS] [OPTIONS]",
    .opts = cmd_opts,
    .commands = commands,
    .epilog = "Exit status: 0 on success.",
};

static int parse_cmd(struct cmdconf *c, dfs_opts **res, char **err, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    *err = NULL;
    return dfs_opts_parse(&cmd_spec, argc, argv, NULL, c, res, err);
}

static void test_commands(void **state)
{
    (void)state;
    struct cmdconf c;
    dfs_opts *res = NULL;
    char *err = NULL;
    char *put[] = {"dfs", "--replicas", "2", "put", "a", "--metadata=h:1", "b", "--force"};
    assert_int_equal(parse_cmd(&c, &res, &err, 8, put), DFS_OK);
    assert_string_equal(dfs_opts_command(res)->name, "put");
    assert_int_equal(dfs_opts_argc(res), 2);
    assert_string_equal(dfs_opts_argv(res)[0], "a");
    assert_string_equal(dfs_opts_argv(res)[1], "b");
    assert_null(dfs_opts_argv(res)[2]);
    assert_int_equal(c.replicas, 2);
    assert_true(c.force);
    dfs_opts_destroy(res);

    char *ls[] = {"dfs", "ls", "--json"};
    assert_int_equal(parse_cmd(&c, &res, &err, 3, ls), DFS_OK);
    assert_int_equal(dfs_opts_argc(res), 0);
    dfs_opts_destroy(res);

    char *bad1[] = {"dfs", "ls", "--force"};
    int rc = parse_cmd(&c, &res, &err, 3, bad1);
    fails("ls does not take --force", rc, res, err);
    char *bad2[] = {"dfs", "put", "a"};
    rc = parse_cmd(&c, &res, &err, 3, bad2);
    fails("usage: dfs put LOCAL REMOTE", rc, res, err);
    char *bad3[] = {"dfs", "nodes", "x"};
    rc = parse_cmd(&c, &res, &err, 3, bad3);
    fails("unexpected argument 'x'", rc, res, err);
    char *bad4[] = {"dfs", "frob"};
    rc = parse_cmd(&c, &res, &err, 2, bad4);
    fails("unknown command 'frob'", rc, res, err);
    char *bad5[] = {"dfs", "--json"};
    rc = parse_cmd(&c, &res, &err, 2, bad5);
    fails("no command given", rc, res, err);

    /* -h after a command names that command's help; before one, the program's. */
    char *help1[] = {"dfs", "put", "-h"};
    assert_int_equal(parse_cmd(&c, &res, &err, 3, help1), DFS_OPTS_HELP);
    assert_string_equal(dfs_opts_command(res)->name, "put");
    dfs_opts_destroy(res);
    char *help2[] = {"dfs", "-h", "put"};
    assert_int_equal(parse_cmd(&c, &res, &err, 3, help2), DFS_OPTS_HELP);
    assert_null(dfs_opts_command(res));
    dfs_opts_destroy(res);

    char *h = help_of(&cmd_spec, NULL);
    assert_non_null(strstr(h, "usage: dfs COMMAND [ARGS] [OPTIONS]\n"));
    assert_non_null(strstr(h, "\nCommands:\n  put LOCAL REMOTE"));
    assert_non_null(strstr(h, "  nodes             storage nodes\n                    and their"));
    assert_non_null(strstr(h, "\nGlobal options:\n  --metadata HOST:PORT"));
    assert_null(strstr(h, "--replicas"));
    assert_non_null(strstr(h, "\nExit status: 0 on success.\n"));
    free(h);
    h = help_of(&cmd_spec, &commands[0]);
    assert_non_null(strstr(h, "usage: dfs put LOCAL REMOTE [options]\n\nStore LOCAL at REMOTE"));
    assert_non_null(strstr(h, "\nOptions:\n  --replicas K"));
    assert_non_null(strstr(h, "  --force"));
    assert_null(strstr(h, "--json"));
    assert_non_null(strstr(h, "\nGlobal options:\n  --metadata HOST:PORT"));
    free(h);
}

static void test_table_bugs(void **state)
{
    (void)state;
    struct conf c;
    dfs_opts *res = NULL;
    char *err = NULL;
    static const struct dfs_opt bad_default[] = {
        {DFS_OPT_INT, "n", 0, DFS_OPT_FIELD(struct conf, threads), .def = "x", .min = 1, .max = 2},
        {0},
    };
    struct dfs_opts_spec sp = {.prog = "p", .opts = bad_default};
    assert_int_equal(parse_env(&sp, &c, NULL, &res, &err, NULL), DFS_EINTERNAL);
    assert_non_null(strstr(err, "the default of --n"));
    free(err);
    static const struct dfs_opt bad_alias[] = {
        {DFS_OPT_ALIAS, "v", 0, .alias = "nothing=1"},
        {0},
    };
    sp.opts = bad_alias;
    assert_int_equal(parse_env(&sp, &c, NULL, &res, &err, "--v", NULL), DFS_EINTERNAL);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_values),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_environment),
        cmocka_unit_test(test_help_text),
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_table_bugs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
