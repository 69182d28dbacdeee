/* Command-line options from one declarative table: parsing (argv, the environment, defaults) and
   the --help text, for every dfs program. */
#ifndef DFS_COMMON_OPTIONS_H
#define DFS_COMMON_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * A program describes its options once, as a table of struct dfs_opt ending with {0}, and its
 * command line as a struct dfs_opts_spec. dfs_opts_parse writes each value into the caller's
 * struct (dest) at the option's field; dfs_opts_help prints the help from the same table.
 *
 * Command-line syntax (what GNU getopt_long accepted, which every program used before):
 *   --name VALUE, --name=VALUE     an option with a value (the next word is taken whatever it is)
 *   --nam                          an unambiguous prefix of a long name stands for it
 *   -x, -xVALUE, -x VALUE, -xyz    short options, bundled
 *   --                             ends the options: every later word is an argument
 *   -                              an argument (standard input or output, by convention)
 * Options and arguments mix in any order; a later occurrence of an option overrides an earlier
 * one (a CUSTOM parser may append instead). Where a value comes from, first that applies:
 *   the command line, else the option's environment variable (when set and not empty), else the
 *   option's default (`def`), else whatever the caller left in dest.
 *
 * Every error is one line naming the option and quoting (short) what was typed; nothing here
 * prints, exits or aborts except dfs_opts_main and dfs_opts_help, which print.
 */

enum dfs_opt_type {
    DFS_OPT_END = 0,  /* ends a table ({0}) */
    DFS_OPT_SECTION,  /* no option: `help` is a heading in the help text ("Security:") */
    DFS_OPT_FLAG,     /* no value; sets a bool (or an integer field) to 1 */
    DFS_OPT_STRING,   /* const char *, borrowed from argv, envp or `def`; with max > 0 its
                         length in bytes must be within [min, max] */
    DFS_OPT_INT,      /* a decimal whole number within [min, max] */
    DFS_OPT_SIZE,     /* bytes with units (common/units: "64K", "1.5G", "10MB") within [min, max] */
    DFS_OPT_RATE,     /* bytes/s with units ("100M", "1Gbit") within [min, max]; "0" (off or
                         unlimited: the help says which) is accepted only when min is 0 */
    DFS_OPT_DURATION, /* a whole number with a unit, ms s m h or d ("90m"), stored in
                         milliseconds (int64_t), within [min, max] milliseconds */
    DFS_OPT_DOUBLE,   /* a decimal number greater than dmin and at most dmax (double) */
    DFS_OPT_ENUM,     /* one of `choices`; stores the choice's value (an int or enum field) */
    DFS_OPT_CUSTOM,   /* a value handed to `parse` */
    DFS_OPT_ALIAS,    /* no value; the same as giving `alias` ("log-level=info") */
    DFS_OPT_HELP,     /* no value; parsing stops and returns DFS_OPTS_HELP */
    DFS_OPT_VERSION,  /* no value; parsing stops and returns DFS_OPTS_VERSION */
};

/* One accepted word of an ENUM option. A hidden one is accepted but not listed in messages. */
struct dfs_opt_choice {
    const char *name; /* NULL ends the list */
    int value;
    bool hidden;
};

struct dfs_opt {
    enum dfs_opt_type type;
    /* The long name without "--" ("metadata"); NULL for an option with only a short letter. */
    const char *name;
    /* The short option letter ('q' for -q), or 0. */
    char letter;
    /* Where the value goes: dest + offset, a field of `size` bytes (DFS_OPT_FIELD fills both).
       Integer-like values (INT, SIZE, RATE, DURATION, ENUM, FLAG) fit fields of 1, 2, 4 or 8
       bytes (the bounds must keep them in range of the field's type); STRING a const char *;
       DOUBLE a double; CUSTOM whatever its parser writes. size 0: no field. */
    size_t offset, size;
    /* The value's placeholder in the help ("HOST:PORT"); NULL for options without a value. */
    const char *arg;
    /* The default, written as a user would type it, applied before the command line is read and
       shown in the help unless empty; NULL: the field keeps what the caller put there. */
    const char *def;
    /* The environment variable that stands in for the option when it is not given ("DFS_METADATA"),
       or NULL; shown in the help. */
    const char *env;
    /* What the option does, for the help (wrapped to the terminal width of 80 columns); for a
       SECTION, the heading. */
    const char *help;
    /* Bounds of INT, SIZE, RATE and DURATION values (inclusive; max 0: no upper bound, INT64_MAX)
       and of STRING lengths (checked when max > 0); CUSTOM parsers may read them. */
    int64_t min, max;
    /* Bounds of a DOUBLE: dmin < value <= dmax (dmax 0: no upper bound). */
    double dmin, dmax;
    /* ENUM: the accepted words, ending with {NULL}. */
    const struct dfs_opt_choice *choices;
    /*
     * CUSTOM: parse `value` (borrowed: it lives as long as argv or envp) into `field` (dest +
     * offset). Returns DFS_OK, or DFS_EINVAL with a one-line *errmsg that names the option
     * (opt->name) and quotes the value through dfs_quote.
     */
    int (*parse)(const struct dfs_opt *opt, const char *value, void *field, char **errmsg);
    /* ALIAS: "name=value" or "name" (a flag) of another option in the table. */
    const char *alias;
    /* For programs with commands: the bit mask (1 << index in spec->commands) of the commands
       that take this option; 0 for an option every command takes (a global option). */
    uint32_t commands;
};

/* The field of an option: DFS_OPT_FIELD(struct options, threads). */
#define DFS_OPT_FIELD(type, member) \
    .offset = offsetof(type, member), .size = sizeof(((type *)0)->member)

/* A numeric macro as a default string: .def = DFS_OPT_STR(DFS_RPC_STREAM_IDLE_MS). */
#define DFS_OPT_STR(x)  DFS_OPT_STR_(x)
#define DFS_OPT_STR_(x) #x

/* A command of a program that has them (dfs put ...): the first argument names it. */
struct dfs_opts_command {
    const char *name; /* NULL ends the list */
    const char *args; /* its arguments for usage lines: "LOCAL REMOTE" */
    /* One line in the program's command list; a second line may follow after '\n'. */
    const char *summary;
    /* The paragraph atop `PROG NAME --help`; NULL: the summary. */
    const char *help;
    int min_args, max_args; /* arguments after the name */
};

struct dfs_opts_spec {
    const char *prog;    /* "dfs-storage": starts every message */
    const char *version; /* printed by --version as "PROG VERSION" */
    /* After "usage: PROG ": "--data DIR --metadata HOST:PORT [options]". More lines may follow
       after '\n', each written out whole ("       PROG small ..."). */
    const char *usage;
    const char *about; /* the paragraph under the usage line, or NULL */
    const struct dfs_opt *opts;
    /* NULL, or the commands (ending with {NULL}): then the first argument must name one, each
       option is checked against the command's bit, and `PROG NAME --help` has its own help. */
    const struct dfs_opts_command *commands;
    const char *command_word; /* what a command is called in messages: "command" when NULL */
    const char *epilog;       /* the help's last paragraph, or NULL */
    /* Without commands: how many arguments the program takes (max_args < 0: any number). */
    int min_args, max_args;
};

/* What dfs_opts_parse returns besides DFS_OK and the DFS_E codes. */
enum {
    DFS_OPTS_HELP = 1,    /* -h or --help came first: print dfs_opts_help and exit 0 */
    DFS_OPTS_VERSION = 2, /* --version came first */
};

/* Where an option's value came from. */
enum dfs_opt_source {
    DFS_OPT_UNSET = 0, /* the caller's own value in dest */
    DFS_OPT_DEFAULT,   /* the table's `def` */
    DFS_OPT_FROM_ENV,  /* its environment variable */
    DFS_OPT_FROM_ARGV, /* the command line */
};

/* One parsed command line: its arguments, the command, where each value came from. */
typedef struct dfs_opts dfs_opts;

/*
 * Parse argv[1..argc-1] with spec into dest (the struct the table's fields are in), reading
 * environment variables from envp (NULL-terminated "NAME=value" strings, e.g. environ; NULL: none).
 * Returns:
 *   DFS_OK             every value parsed and the arguments fit; *out is the result
 *   DFS_OPTS_HELP      -h or --help came before any error; *out is the result so far (its
 *                      command, when one was named before, picks the help to print)
 *   DFS_OPTS_VERSION   --version came first; *out as for help
 *   DFS_EINVAL         a bad command line: one line in *errmsg (caller frees) that says why,
 *                      *out is NULL
 *   DFS_ENOMEM         out of memory
 *   DFS_EINTERNAL      the table itself is wrong (a default that does not parse, an alias to
 *                      nothing): a bug, said in *errmsg
 * dest may have been written in part on failure. Strings stored in dest and the arguments point
 * into argv, envp or the table: they must outlive their use. The caller destroys *out.
 */
int dfs_opts_parse(const struct dfs_opts_spec *spec, int argc, char *const argv[],
                   char *const envp[], void *dest, dfs_opts **out, char **errmsg);

/* Accepts NULL. */
void dfs_opts_destroy(dfs_opts *o);

/* The arguments (after the command's name when there are commands): count and array (borrowed
   from argv; NULL-terminated; valid until dfs_opts_destroy). */
int dfs_opts_argc(const dfs_opts *o);
char *const *dfs_opts_argv(const dfs_opts *o);

/* The command the first argument named, or NULL (no commands, or -h before one was named). */
const struct dfs_opts_command *dfs_opts_command(const dfs_opts *o);

/* Where the value of the option with long name `name` (or the short letter in "-x" form) came
   from. The name must be in the table. */
enum dfs_opt_source dfs_opts_source(const dfs_opts *o, const char *name);

/*
 * Print the help generated from spec on out: the usage line, the about paragraph, then either
 * (cmd NULL) the commands and the options every command takes, or (cmd given) the command's
 * usage, help and own options, then the options every command takes. Options are listed under
 * their sections' headings, aligned, with the default and the environment variable after the
 * description; the epilog ends the program's help (cmd NULL).
 */
void dfs_opts_help(const struct dfs_opts_spec *spec, const struct dfs_opts_command *cmd, FILE *out);

/*
 * What a main() does with its command line, in one call: parse it; after -h/--help print the
 * help (of the command named before it, if any) on stdout; after --version "PROG VERSION"; after
 * a bad command line one line "PROG: <why> (see PROG --help)" on stderr. Returns true when the
 * program goes on with *out (caller destroys); false when main() should return *status: 0 after
 * help or version, 2 after an error (1 when out of memory).
 */
bool dfs_opts_main(const struct dfs_opts_spec *spec, int argc, char *const argv[],
                   char *const envp[], void *dest, dfs_opts **out, int *status);

#endif /* DFS_COMMON_OPTIONS_H */
