/* Command-line options from one declarative table: parsing and the generated --help. */
#include "common/options.h"

#include "common/err.h"
#include "common/units.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Help lines wrap before this column; option and command names take at most this much room. */
#define HELP_WIDTH    80
#define HELP_COL_MAX  32
#define HELP_CMDS_MAX 26

struct dfs_opts {
    const struct dfs_opts_spec *spec;
    int argc;
    char **argv; /* argc + 1 entries, NULL-terminated; the words are argv's */
    const struct dfs_opts_command *command;
    uint8_t *source; /* enum dfs_opt_source per table entry */
};

/* One parse in progress. */
struct parse {
    const struct dfs_opts_spec *spec;
    char *dest;
    dfs_opts *res;
    char **errmsg;
};

static bool takes_value(enum dfs_opt_type t)
{
    return t == DFS_OPT_STRING || t == DFS_OPT_INT || t == DFS_OPT_SIZE || t == DFS_OPT_RATE ||
           t == DFS_OPT_DURATION || t == DFS_OPT_DOUBLE || t == DFS_OPT_ENUM || t == DFS_OPT_CUSTOM;
}

static bool is_option(const struct dfs_opt *opt)
{
    return opt->type != DFS_OPT_END && opt->type != DFS_OPT_SECTION;
}

/* "--name" or "-x", for messages and the help. */
static const char *display(const struct dfs_opt *opt, char buf[64])
{
    if (opt->name != NULL)
        snprintf(buf, 64, "--%s", opt->name);
    else
        snprintf(buf, 64, "-%c", opt->letter);
    return buf;
}

/* ---- storing values ---- */

/* v into an integer field of 1, 2, 4 or 8 bytes (two's complement: signed and unsigned alike). */
static int store_int(const struct dfs_opt *opt, void *field, int64_t v)
{
    uint64_t u = (uint64_t)v;
    switch (opt->size) {
    case 1: {
        uint8_t x = (uint8_t)u;
        memcpy(field, &x, 1);
        return DFS_OK;
    }
    case 2: {
        uint16_t x = (uint16_t)u;
        memcpy(field, &x, 2);
        return DFS_OK;
    }
    case 4: {
        uint32_t x = (uint32_t)u;
        memcpy(field, &x, 4);
        return DFS_OK;
    }
    case 8:
        memcpy(field, &u, 8);
        return DFS_OK;
    default:
        return DFS_EINTERNAL;
    }
}

static int64_t upper(const struct dfs_opt *opt)
{
    return opt->max != 0 ? opt->max : INT64_MAX;
}

/* ---- parsing one value ---- */

static int parse_int(const struct dfs_opt *opt, const char *name, const char *v, int64_t *out,
                     char **errmsg)
{
    /* Digits only (a '-' first when negative values are allowed): strtoll alone would also take
       " 5", "+5", and "-5" for an unsigned field. */
    const char *p = v[0] == '-' && opt->min < 0 ? v + 1 : v;
    char *end = NULL;
    errno = 0;
    long long x = *p >= '0' && *p <= '9' ? strtoll(v, &end, 10) : 0;
    if (end == NULL || *end != '\0' || errno != 0 || x < opt->min || x > upper(opt))
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "%s must be a whole number from %" PRId64 " to %" PRId64 ", not '%s'",
                          name, opt->min, upper(opt), dfs_quote(v, &(struct dfs_quote){{0}}));
    *out = x;
    return DFS_OK;
}

/* SIZE and RATE: units through common/units, then the bounds. */
static int parse_bytes(const struct dfs_opt *opt, const char *name, const char *v, int64_t *out,
                       char **errmsg)
{
    uint64_t x = 0;
    char *why = NULL;
    int rc;
    if (opt->type == DFS_OPT_RATE && opt->min == 0 && strcmp(v, "0") == 0)
        rc = DFS_OK;
    else if (opt->type == DFS_OPT_RATE)
        rc = dfs_parse_rate(v, &x, &why);
    else
        rc = dfs_parse_size(v, &x, &why);
    if (rc != DFS_OK) {
        rc = dfs_seterr(errmsg, DFS_EINVAL, "%s: %s", name, why != NULL ? why : "bad value");
        free(why);
        return rc;
    }
    if (x < (uint64_t)opt->min || x > (uint64_t)upper(opt)) {
        char lo[32], hi[32];
        dfs_format_size((uint64_t)opt->min, lo, sizeof lo);
        dfs_format_size((uint64_t)upper(opt), hi, sizeof hi);
        return dfs_seterr(errmsg, DFS_EINVAL, "%s must be from %s to %s%s, not '%s'", name, lo, hi,
                          opt->type == DFS_OPT_RATE ? "/s" : "",
                          dfs_quote(v, &(struct dfs_quote){{0}}));
    }
    *out = (int64_t)x;
    return DFS_OK;
}

static const struct {
    const char *unit;
    int64_t ms;
} duration_units[] = {
    {"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1},
};

/* A bound in the largest unit that divides it: "30d", "90m", "1500ms". */
static void format_duration(int64_t ms, char *buf, size_t cap)
{
    for (size_t i = 0; i < sizeof duration_units / sizeof duration_units[0]; i++)
        if (ms % duration_units[i].ms == 0 || duration_units[i].ms == 1) {
            snprintf(buf, cap, "%" PRId64 "%s", ms / duration_units[i].ms, duration_units[i].unit);
            return;
        }
}

static int parse_duration(const struct dfs_opt *opt, const char *name, const char *v, int64_t *out,
                          char **errmsg)
{
    char *end = NULL;
    errno = 0;
    unsigned long long n = v[0] >= '0' && v[0] <= '9' ? strtoull(v, &end, 10) : 0;
    int64_t ms = -1;
    for (size_t i = 0;
         end != NULL && errno == 0 && i < sizeof duration_units / sizeof duration_units[0]; i++)
        if (strcmp(end, duration_units[i].unit) == 0 &&
            n <= (unsigned long long)(INT64_MAX / duration_units[i].ms))
            ms = (int64_t)n * duration_units[i].ms;
    if (ms < opt->min || ms > upper(opt)) {
        char lo[32], hi[32];
        format_duration(opt->min, lo, sizeof lo);
        format_duration(upper(opt), hi, sizeof hi);
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "%s takes a duration like 3600s, 90m, 12h or 30d, from %s to %s, not "
                          "'%s'",
                          name, lo, hi, dfs_quote(v, &(struct dfs_quote){{0}}));
    }
    *out = ms;
    return DFS_OK;
}

static int parse_double(const struct dfs_opt *opt, const char *name, const char *v, double *out,
                        char **errmsg)
{
    char *end = NULL;
    errno = 0;
    /* A plain decimal number: no sign, no spaces, no "inf" or hex. */
    bool plain = (v[0] >= '0' && v[0] <= '9') || (v[0] == '.' && v[1] >= '0' && v[1] <= '9');
    for (const char *p = v; plain && *p != '\0'; p++)
        plain = (*p >= '0' && *p <= '9') || *p == '.';
    double x = plain ? strtod(v, &end) : NAN;
    double hi = opt->dmax != 0 ? opt->dmax : INFINITY;
    if (end == NULL || *end != '\0' || errno != 0 || !(x > opt->dmin) || !(x <= hi)) {
        if (isinf(hi))
            return dfs_seterr(errmsg, DFS_EINVAL, "%s must be a number above %g, not '%s'", name,
                              opt->dmin, dfs_quote(v, &(struct dfs_quote){{0}}));
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "%s must be a number above %g and at most %g, not '%s'", name, opt->dmin,
                          hi, dfs_quote(v, &(struct dfs_quote){{0}}));
    }
    *out = x;
    return DFS_OK;
}

/* "a, b or c": the listed choices of an ENUM. */
static void choice_list(const struct dfs_opt_choice *c, char *buf, size_t cap)
{
    size_t n = 0, shown = 0, total = 0;
    for (const struct dfs_opt_choice *p = c; p->name != NULL; p++)
        total += !p->hidden;
    buf[0] = '\0';
    for (const struct dfs_opt_choice *p = c; p->name != NULL && n < cap; p++) {
        if (p->hidden)
            continue;
        shown++;
        const char *sep = shown == 1 ? "" : shown == total ? " or " : ", ";
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", sep, p->name);
    }
}

static int parse_enum(const struct dfs_opt *opt, const char *name, const char *v, int64_t *out,
                      char **errmsg)
{
    for (const struct dfs_opt_choice *p = opt->choices; p != NULL && p->name != NULL; p++)
        if (strcmp(p->name, v) == 0) {
            *out = p->value;
            return DFS_OK;
        }
    char list[256];
    choice_list(opt->choices != NULL ? opt->choices : &(struct dfs_opt_choice){0}, list,
                sizeof list);
    return dfs_seterr(errmsg, DFS_EINVAL, "%s must be %s, not '%s'", name, list,
                      dfs_quote(v, &(struct dfs_quote){{0}}));
}

/*
 * Write value (NULL for options without one) into opt's field. `spelled` is how messages name
 * the option: "--name", "-x", or "$VAR" for a value from the environment.
 */
static int set_value(struct parse *ps, const struct dfs_opt *opt, const char *value,
                     const char *spelled, char **errmsg)
{
    void *field = ps->dest + opt->offset;
    int64_t iv = 0;
    int rc = DFS_OK;
    switch (opt->type) {
    case DFS_OPT_FLAG:
        return opt->size == 0 ? DFS_OK : store_int(opt, field, 1);
    case DFS_OPT_STRING: {
        size_t n = strlen(value);
        if (opt->max > 0 && (n < (size_t)opt->min || n > (size_t)opt->max))
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "%s must be %" PRId64 " to %" PRId64 " bytes long, not '%s'", spelled,
                              opt->min, opt->max, dfs_quote(value, &(struct dfs_quote){{0}}));
        if (opt->size != sizeof value)
            return DFS_EINTERNAL;
        memcpy(field, &value, sizeof value);
        return DFS_OK;
    }
    case DFS_OPT_INT:
        rc = parse_int(opt, spelled, value, &iv, errmsg);
        break;
    case DFS_OPT_SIZE:
    case DFS_OPT_RATE:
        rc = parse_bytes(opt, spelled, value, &iv, errmsg);
        break;
    case DFS_OPT_DURATION:
        rc = parse_duration(opt, spelled, value, &iv, errmsg);
        break;
    case DFS_OPT_ENUM:
        rc = parse_enum(opt, spelled, value, &iv, errmsg);
        break;
    case DFS_OPT_DOUBLE: {
        double d = 0;
        rc = parse_double(opt, spelled, value, &d, errmsg);
        if (rc == DFS_OK && opt->size != sizeof d)
            return DFS_EINTERNAL;
        if (rc == DFS_OK)
            memcpy(field, &d, sizeof d);
        return rc;
    }
    case DFS_OPT_CUSTOM:
        if (opt->parse == NULL)
            return DFS_EINTERNAL;
        rc = opt->parse(opt, value, field, errmsg);
        /* A parser that fails must say why, in one line. */
        if (rc != DFS_OK && errmsg != NULL && *errmsg == NULL)
            dfs_seterr(errmsg, rc, "bad value for %s: '%s'", spelled,
                       dfs_quote(value, &(struct dfs_quote){{0}}));
        return rc;
    default:
        return DFS_OK;
    }
    if (rc != DFS_OK)
        return rc;
    return store_int(opt, field, iv);
}

/* ---- the table ---- */

static size_t count_opts(const struct dfs_opt *opts)
{
    size_t n = 0;
    while (opts != NULL && opts[n].type != DFS_OPT_END)
        n++;
    return n;
}

static const char *args_of(const struct dfs_opts_command *c)
{
    return c->args != NULL ? c->args : "";
}

static size_t count_commands(const struct dfs_opts_command *c)
{
    size_t n = 0;
    while (c != NULL && c[n].name != NULL)
        n++;
    return n;
}

/* The entry whose long name is name[0..len) exactly, or -1. */
static long find_exact(const struct dfs_opt *opts, const char *name, size_t len)
{
    for (size_t i = 0; opts[i].type != DFS_OPT_END; i++)
        if (is_option(&opts[i]) && opts[i].name != NULL && strlen(opts[i].name) == len &&
            strncmp(opts[i].name, name, len) == 0)
            return (long)i;
    return -1;
}

/* The long option `word` ("--name" or "--name=value") stands for: exact, else a unique prefix. */
static long find_long(const struct dfs_opt *opts, const char *word, char **errmsg)
{
    const char *name = word + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
    long hit = find_exact(opts, name, len);
    if (hit >= 0)
        return hit;
    long first = -1, second = -1;
    size_t matches = 0;
    for (size_t i = 0; len > 0 && opts[i].type != DFS_OPT_END; i++)
        if (is_option(&opts[i]) && opts[i].name != NULL && strncmp(opts[i].name, name, len) == 0) {
            if (first < 0)
                first = (long)i;
            else if (second < 0)
                second = (long)i;
            matches++;
        }
    if (matches == 1)
        return first;
    /* The option as typed, without its value (dfs_quote cuts a long one). */
    char typed[DFS_QUOTE_MAX + 8];
    snprintf(typed, sizeof typed, "%.*s", (int)(len < DFS_QUOTE_MAX ? len + 2 : DFS_QUOTE_MAX + 2),
             word);
    if (matches > 1)
        dfs_seterr(errmsg, DFS_EINVAL, "option '%s' is ambiguous (--%s, --%s%s)",
                   dfs_quote(typed, &(struct dfs_quote){{0}}), opts[first].name, opts[second].name,
                   matches > 2 ? ", ..." : "");
    else
        dfs_seterr(errmsg, DFS_EINVAL, "unknown option '%s'",
                   dfs_quote(typed, &(struct dfs_quote){{0}}));
    return -1;
}

static long find_short(const struct dfs_opt *opts, char letter)
{
    for (size_t i = 0; letter != 0 && opts[i].type != DFS_OPT_END; i++)
        if (is_option(&opts[i]) && opts[i].letter == letter)
            return (long)i;
    return -1;
}

/*
 * Apply entry i of the table with value (NULL when it takes none) from `source`. Returns DFS_OK,
 * DFS_OPTS_HELP, DFS_OPTS_VERSION or an error with *errmsg.
 */
static int apply(struct parse *ps, size_t i, const char *value, enum dfs_opt_source source,
                 const char *spelled, int depth)
{
    const struct dfs_opt *opt = &ps->spec->opts[i];
    if (opt->type == DFS_OPT_HELP)
        return DFS_OPTS_HELP;
    if (opt->type == DFS_OPT_VERSION)
        return DFS_OPTS_VERSION;
    if (opt->type == DFS_OPT_ALIAS) {
        const char *a = opt->alias != NULL ? opt->alias : "";
        const char *eq = strchr(a, '=');
        long t = find_exact(ps->spec->opts, a, eq != NULL ? (size_t)(eq - a) : strlen(a));
        if (t < 0 || depth > 0 || takes_value(ps->spec->opts[t].type) != (eq != NULL))
            return dfs_seterr(ps->errmsg, DFS_EINTERNAL, "%s: alias '%s' names no option", spelled,
                              a);
        char name[64];
        int rc = apply(ps, (size_t)t, eq != NULL ? eq + 1 : NULL, source,
                       display(&ps->spec->opts[t], name), depth + 1);
        if (rc == DFS_OK)
            ps->res->source[i] = (uint8_t)source;
        return rc;
    }
    int rc = set_value(ps, opt, value, spelled, ps->errmsg);
    if (rc == DFS_EINTERNAL && (ps->errmsg == NULL || *ps->errmsg == NULL))
        rc = dfs_seterr(ps->errmsg, DFS_EINTERNAL, "%s: its field does not fit its type", spelled);
    if (rc == DFS_OK)
        ps->res->source[i] = (uint8_t)source;
    return rc;
}

/* The value of NAME in envp, or NULL. */
static const char *env_lookup(char *const envp[], const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++)
        if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
            return envp[i] + n + 1;
    return NULL;
}

/* The command line proper: options into dest, the other words into res->argv. */
static int parse_argv(struct parse *ps, int argc, char *const argv[])
{
    const struct dfs_opt *opts = ps->spec->opts;
    bool options_done = false;
    char name[64];
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (options_done || a[0] != '-' || a[1] == '\0') {
            ps->res->argv[ps->res->argc++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_done = true;
            continue;
        }
        if (a[1] == '-') {
            long k = find_long(opts, a, ps->errmsg);
            if (k < 0)
                return DFS_EINVAL;
            const struct dfs_opt *opt = &opts[k];
            const char *eq = strchr(a, '=');
            const char *value = NULL;
            display(opt, name);
            if (takes_value(opt->type)) {
                if (eq != NULL)
                    value = eq + 1;
                else if (i + 1 < argc)
                    value = argv[++i];
                else
                    return dfs_seterr(ps->errmsg, DFS_EINVAL, "%s needs a value", name);
            } else if (eq != NULL) {
                return dfs_seterr(ps->errmsg, DFS_EINVAL, "%s takes no value", name);
            }
            int rc = apply(ps, (size_t)k, value, DFS_OPT_FROM_ARGV, name, 0);
            if (rc != DFS_OK)
                return rc;
            continue;
        }
        /* Short options, bundled: -qv, -xVALUE, -x VALUE. */
        for (size_t j = 1; a[j] != '\0'; j++) {
            long k = find_short(opts, a[j]);
            if (k < 0) {
                if ((unsigned char)a[j] > 0x20 && (unsigned char)a[j] < 0x7f)
                    return dfs_seterr(ps->errmsg, DFS_EINVAL, "unknown option '-%c'", a[j]);
                return dfs_seterr(ps->errmsg, DFS_EINVAL, "unknown option '%s'",
                                  dfs_quote(a, &(struct dfs_quote){{0}}));
            }
            const struct dfs_opt *opt = &opts[k];
            snprintf(name, sizeof name, "-%c", a[j]);
            const char *value = NULL;
            if (takes_value(opt->type)) {
                if (a[j + 1] != '\0')
                    value = &a[j + 1];
                else if (i + 1 < argc)
                    value = argv[++i];
                else
                    return dfs_seterr(ps->errmsg, DFS_EINVAL, "%s needs a value", name);
            }
            int rc = apply(ps, (size_t)k, value, DFS_OPT_FROM_ARGV, name, 0);
            if (rc != DFS_OK)
                return rc;
            if (value != NULL)
                break;
        }
    }
    return DFS_OK;
}

/* The command named by the first argument, taken off the arguments; its checks. */
static int take_command(struct parse *ps)
{
    const struct dfs_opts_spec *spec = ps->spec;
    dfs_opts *res = ps->res;
    const char *word = spec->command_word != NULL ? spec->command_word : "command";
    if (res->argc == 0)
        return dfs_seterr(ps->errmsg, DFS_EINVAL, "no %s given", word);
    size_t n = count_commands(spec->commands), index = n;
    for (size_t c = 0; c < n; c++)
        if (strcmp(spec->commands[c].name, res->argv[0]) == 0)
            index = c;
    if (index == n)
        return dfs_seterr(ps->errmsg, DFS_EINVAL, "unknown %s '%s'", word,
                          dfs_quote(res->argv[0], &(struct dfs_quote){{0}}));
    const struct dfs_opts_command *cmd = &spec->commands[index];
    res->command = cmd;
    memmove(res->argv, res->argv + 1, (size_t)res->argc * sizeof *res->argv);
    res->argc--;
    if (res->argc < cmd->min_args)
        return dfs_seterr(ps->errmsg, DFS_EINVAL, "usage: %s %s%s%s", spec->prog, cmd->name,
                          args_of(cmd)[0] != '\0' ? " " : "", args_of(cmd));
    if (res->argc > cmd->max_args)
        return dfs_seterr(ps->errmsg, DFS_EINVAL, "unexpected argument '%s'",
                          dfs_quote(res->argv[cmd->max_args], &(struct dfs_quote){{0}}));
    uint32_t bit = index < 32 ? 1u << index : 0;
    char name[64];
    for (size_t i = 0; spec->opts[i].type != DFS_OPT_END; i++) {
        const struct dfs_opt *opt = &spec->opts[i];
        if (res->source[i] == DFS_OPT_FROM_ARGV && opt->commands != 0 && (opt->commands & bit) == 0)
            return dfs_seterr(ps->errmsg, DFS_EINVAL, "%s does not take %s", cmd->name,
                              display(opt, name));
    }
    return DFS_OK;
}

void dfs_opts_destroy(dfs_opts *o)
{
    if (o == NULL)
        return;
    free(o->argv);
    free(o->source);
    free(o);
}

int dfs_opts_parse(const struct dfs_opts_spec *spec, int argc, char *const argv[],
                   char *const envp[], void *dest, dfs_opts **out, char **errmsg)
{
    *out = NULL;
    size_t nopts = count_opts(spec->opts);
    dfs_opts *res = calloc(1, sizeof *res);
    if (res != NULL) {
        res->argv = calloc((size_t)(argc > 0 ? argc : 1) + 1, sizeof *res->argv);
        res->source = calloc(nopts + 1, 1);
    }
    if (res == NULL || res->argv == NULL || res->source == NULL) {
        dfs_opts_destroy(res);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    res->spec = spec;
    struct parse ps = {.spec = spec, .dest = dest, .res = res, .errmsg = errmsg};
    char name[64];
    int rc = DFS_OK;
    /* Defaults first, so that the command line and the environment overwrite them. */
    for (size_t i = 0; rc == DFS_OK && i < nopts; i++)
        if (spec->opts[i].def != NULL && is_option(&spec->opts[i])) {
            rc =
                apply(&ps, i, spec->opts[i].def, DFS_OPT_DEFAULT, display(&spec->opts[i], name), 0);
            if (rc != DFS_OK)
                rc = dfs_prefixerr(errmsg, DFS_EINTERNAL, "the default of %s",
                                   display(&spec->opts[i], name));
        }
    if (rc == DFS_OK)
        rc = parse_argv(&ps, argc, argv);
    if (rc == DFS_OPTS_HELP || rc == DFS_OPTS_VERSION) {
        /* The help of the command named before -h, when there is one. */
        for (size_t c = 0;
             res->argc > 0 && spec->commands != NULL && spec->commands[c].name != NULL; c++)
            if (strcmp(spec->commands[c].name, res->argv[0]) == 0)
                res->command = &spec->commands[c];
        *out = res;
        return rc;
    }
    if (rc == DFS_OK && spec->commands != NULL) {
        rc = take_command(&ps);
    } else if (rc == DFS_OK) {
        if (res->argc < spec->min_args)
            rc = dfs_seterr(errmsg, DFS_EINVAL, "missing arguments (usage: %s %s)", spec->prog,
                            spec->usage);
        else if (spec->max_args >= 0 && res->argc > spec->max_args)
            rc = dfs_seterr(errmsg, DFS_EINVAL, "unexpected argument '%s'",
                            dfs_quote(res->argv[spec->max_args], &(struct dfs_quote){{0}}));
    }
    /* The environment stands in for what the command line did not give. */
    for (size_t i = 0; rc == DFS_OK && i < nopts; i++) {
        const struct dfs_opt *opt = &spec->opts[i];
        const char *v = opt->env != NULL && is_option(opt) ? env_lookup(envp, opt->env) : NULL;
        if (v == NULL || v[0] == '\0' || res->source[i] == DFS_OPT_FROM_ARGV)
            continue;
        char spelled[128];
        snprintf(spelled, sizeof spelled, "$%s", opt->env);
        rc = apply(&ps, i, takes_value(opt->type) ? v : NULL, DFS_OPT_FROM_ENV, spelled, 0);
    }
    if (rc != DFS_OK) {
        if (errmsg != NULL && *errmsg == NULL)
            dfs_seterr(errmsg, rc, "bad command line");
        dfs_opts_destroy(res);
        return rc;
    }
    *out = res;
    return DFS_OK;
}

int dfs_opts_argc(const dfs_opts *o)
{
    return o->argc;
}

char *const *dfs_opts_argv(const dfs_opts *o)
{
    return o->argv;
}

const struct dfs_opts_command *dfs_opts_command(const dfs_opts *o)
{
    return o->command;
}

enum dfs_opt_source dfs_opts_source(const dfs_opts *o, const char *name)
{
    const struct dfs_opt *opts = o->spec->opts;
    long k = name[0] == '-' ? find_short(opts, name[1]) : find_exact(opts, name, strlen(name));
    assert(k >= 0 && "dfs_opts_source: no such option in the table");
    return k >= 0 ? (enum dfs_opt_source)o->source[k] : DFS_OPT_UNSET;
}

/* ---- help ---- */

/*
 * Write text from column `at` (the cursor's column now) wrapped at HELP_WIDTH, continuation
 * lines starting at column `indent`; a '\n' in text starts a new line. Ends with a newline.
 */
static void wrap(FILE *out, size_t at, size_t indent, const char *text)
{
    size_t col = at;
    bool line_empty = true;
    const char *p = text;
    while (*p != '\0') {
        if (*p == '\n') {
            fprintf(out, "\n%*s", (int)indent, "");
            col = indent;
            line_empty = true;
            p++;
            continue;
        }
        if (*p == ' ') {
            p++;
            continue;
        }
        size_t n = strcspn(p, " \n");
        if (!line_empty && col + 1 + n > HELP_WIDTH) {
            fprintf(out, "\n%*s", (int)indent, "");
            col = indent;
            line_empty = true;
        }
        if (!line_empty) {
            fputc(' ', out);
            col++;
        }
        fwrite(p, 1, n, out);
        col += n;
        line_empty = false;
        p += n;
    }
    fputc('\n', out);
}

/* "  -q, --quiet" / "  --metadata HOST:PORT" into buf; returns its length. */
static size_t option_left(const struct dfs_opt *opt, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "  %s%s%s%s%s%s%s", opt->letter != 0 ? "-" : "",
                     opt->letter != 0 ? (char[2]){opt->letter, 0} : "",
                     opt->letter != 0 && opt->name != NULL ? ", " : "",
                     opt->name != NULL ? "--" : "", opt->name != NULL ? opt->name : "",
                     opt->arg != NULL ? " " : "", opt->arg != NULL ? opt->arg : "");
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* Whether the help for cmd (NULL: the program's, or its global options) shows opt. */
static bool shown(const struct dfs_opts_spec *spec, const struct dfs_opt *opt,
                  const struct dfs_opts_command *cmd)
{
    if (spec->commands == NULL)
        return true;
    if (cmd == NULL)
        return opt->commands == 0;
    size_t index = (size_t)(cmd - spec->commands);
    return index < 32 && (opt->commands & (1u << index)) != 0;
}

static void print_option(FILE *out, const struct dfs_opt *opt, size_t col)
{
    char left[160], text[1024];
    size_t n = option_left(opt, left, sizeof left);
    bool def = opt->def != NULL && opt->def[0] != '\0';
    snprintf(text, sizeof text, "%s%s%s%s%s%s%s%s", opt->help != NULL ? opt->help : "",
             def || opt->env != NULL ? " (" : "", def ? "default " : "", def ? opt->def : "",
             def && opt->env != NULL ? "; " : "", opt->env != NULL ? "env " : "",
             opt->env != NULL ? opt->env : "", def || opt->env != NULL ? ")" : "");
    fputs(left, out);
    if (n + 2 > col) {
        fprintf(out, "\n%*s", (int)col, "");
    } else {
        fprintf(out, "%*s", (int)(col - n), "");
    }
    wrap(out, col, col, text);
}

/* The options (and their section headings) the help for cmd shows. */
/* The column descriptions start at: after the longest option the help for cmd shows (and the
   global ones with it), unless that is longer than HELP_COL_MAX. */
static size_t options_column(const struct dfs_opts_spec *spec, const struct dfs_opts_command *cmd)
{
    size_t col = 0;
    char left[160];
    for (size_t i = 0; spec->opts[i].type != DFS_OPT_END; i++)
        if (is_option(&spec->opts[i]) &&
            (shown(spec, &spec->opts[i], cmd) || shown(spec, &spec->opts[i], NULL))) {
            size_t n = option_left(&spec->opts[i], left, sizeof left) + 2;
            if (n <= HELP_COL_MAX && n > col)
                col = n;
        }
    return col;
}

static void print_options(FILE *out, const struct dfs_opts_spec *spec,
                          const struct dfs_opts_command *cmd, const char *first_heading, size_t col)
{
    const struct dfs_opt *opts = spec->opts;
    bool any = false;
    for (size_t i = 0; opts[i].type != DFS_OPT_END; i++) {
        if (opts[i].type == DFS_OPT_SECTION) {
            /* A heading only above options this help shows. */
            size_t j = i + 1;
            while (opts[j].type != DFS_OPT_END && opts[j].type != DFS_OPT_SECTION &&
                   !shown(spec, &opts[j], cmd))
                j++;
            if (opts[j].type != DFS_OPT_END && opts[j].type != DFS_OPT_SECTION) {
                fprintf(out, "\n%s\n", opts[i].help != NULL ? opts[i].help : "");
                any = true;
            }
            continue;
        }
        if (!shown(spec, &opts[i], cmd))
            continue;
        if (!any) {
            fprintf(out, "\n%s\n", first_heading);
            any = true;
        }
        print_option(out, &opts[i], col);
    }
}

static void print_commands(FILE *out, const struct dfs_opts_spec *spec)
{
    size_t col = 0;
    char left[160];
    for (const struct dfs_opts_command *c = spec->commands; c->name != NULL; c++) {
        int n = snprintf(left, sizeof left, "  %s%s%s", c->name, args_of(c)[0] != '\0' ? " " : "",
                         args_of(c));
        if ((size_t)n + 2 <= HELP_CMDS_MAX && (size_t)n + 2 > col)
            col = (size_t)n + 2;
    }
    const char *word = spec->command_word != NULL ? spec->command_word : "command";
    fprintf(out, "\n%c%ss:\n", word[0] >= 'a' && word[0] <= 'z' ? word[0] - 'a' + 'A' : word[0],
            word + 1);
    for (const struct dfs_opts_command *c = spec->commands; c->name != NULL; c++) {
        int n = snprintf(left, sizeof left, "  %s%s%s", c->name, args_of(c)[0] != '\0' ? " " : "",
                         args_of(c));
        fputs(left, out);
        if ((size_t)n + 2 > col)
            fprintf(out, "\n%*s", (int)col, "");
        else
            fprintf(out, "%*s", (int)(col - (size_t)n), "");
        wrap(out, col, col, c->summary != NULL ? c->summary : "");
    }
}

void dfs_opts_help(const struct dfs_opts_spec *spec, const struct dfs_opts_command *cmd, FILE *out)
{
    if (cmd != NULL) {
        fprintf(out, "usage: %s %s%s%s [options]\n", spec->prog, cmd->name,
                args_of(cmd)[0] != '\0' ? " " : "", args_of(cmd));
        fputc('\n', out);
        wrap(out, 0, 0, cmd->help != NULL ? cmd->help : cmd->summary);
        size_t col = options_column(spec, cmd);
        print_options(out, spec, cmd, "Options:", col);
        print_options(out, spec, NULL, "Global options:", col);
        return;
    }
    fprintf(out, "usage: %s %s\n", spec->prog, spec->usage != NULL ? spec->usage : "[options]");
    if (spec->about != NULL) {
        fputc('\n', out);
        wrap(out, 0, 0, spec->about);
    }
    if (spec->commands != NULL)
        print_commands(out, spec);
    print_options(out, spec, NULL, spec->commands != NULL ? "Global options:" : "Options:",
                  options_column(spec, NULL));
    if (spec->epilog != NULL) {
        fputc('\n', out);
        wrap(out, 0, 0, spec->epilog);
    }
}

bool dfs_opts_main(const struct dfs_opts_spec *spec, int argc, char *const argv[],
                   char *const envp[], void *dest, dfs_opts **out, int *status)
{
    char *err = NULL;
    int rc = dfs_opts_parse(spec, argc, argv, envp, dest, out, &err);
    if (rc == DFS_OK)
        return true;
    if (rc == DFS_OPTS_HELP) {
        dfs_opts_help(spec, dfs_opts_command(*out), stdout);
        *status = 0;
    } else if (rc == DFS_OPTS_VERSION) {
        printf("%s %s\n", spec->prog, spec->version != NULL ? spec->version : "");
        *status = 0;
    } else {
        fprintf(stderr, "%s: %s (see %s --help)\n", spec->prog, err != NULL ? err : "bad usage",
                spec->prog);
        *status = rc == DFS_ENOMEM ? 1 : 2;
    }
    free(err);
    dfs_opts_destroy(*out);
    *out = NULL;
    return false;
}
