/* dfs shell: a prompt with line editing and history, running dfs command lines. */
#include "cli/cli.h"

#include "common/err.h"

#include <editline/readline.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The most history lines kept in the file. */
#define HISTORY_MAX 1000

int dfs_shell_split(const char *line, char ***words, char **errmsg)
{
    size_t len = strlen(line);
    /* Words never need more room than the line plus a terminator each. */
    size_t maxw = len / 2 + 2;
    char **v = malloc((maxw + 1) * sizeof *v + 2 * len + 2);
    if (v == NULL) {
        dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        return -1;
    }
    char *out = (char *)(v + maxw + 1);
    int n = 0;
    const char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (*p == '\0')
            break;
        v[n++] = out;
        char quote = 0;
        while (*p != '\0') {
            char ch = *p;
            if (quote == 0 && (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'))
                break;
            if (quote == 0 && (ch == '\'' || ch == '"')) {
                quote = ch;
                p++;
            } else if (quote != 0 && ch == quote) {
                quote = 0;
                p++;
            } else if (ch == '\\' && quote != '\'') {
                char next = p[1];
                if (next == '\0') {
                    free(v);
                    dfs_seterr(errmsg, DFS_EINVAL, "a line cannot end with a backslash");
                    return -1;
                }
                /* Inside "...", only \" and \\ are escapes. */
                if (quote == '"' && next != '"' && next != '\\')
                    *out++ = ch;
                *out++ = next;
                p += 2;
            } else {
                *out++ = ch;
                p++;
            }
        }
        if (quote != 0) {
            free(v);
            dfs_seterr(errmsg, DFS_EINVAL, "unterminated %s quote", quote == '"' ? "\"" : "'");
            return -1;
        }
        *out++ = '\0';
    }
    v[n] = NULL;
    *words = v;
    return n;
}

static void shell_help(void)
{
    printf("Commands (as for the dfs program, without the 'dfs'):\n"
           "  put LOCAL REMOTE [--replicas K --fragments F | --ec K+M] [--policy P] [--force]\n"
           "  get REMOTE LOCAL [--resume]          stat REMOTE          ls [PREFIX] [-l]\n"
           "  rm REMOTE          nodes          status [--loss] [-l]\n"
           "  node drain|undrain|decommission ID\n"
           "  transfers also take --throttle RATE, --max-rate RATE, --parallel N, -q; read\n"
           "  commands take --json. 'help full' lists every command and the global options;\n"
           "  'help COMMAND' (or COMMAND -h) shows a command's own options.\n"
           "  help          this text\n"
           "  exit, quit    leave (or Ctrl-D)\n"
           "Ctrl-C stops the running transfer; at the prompt it clears the line.\n");
}

static char *history_path(void)
{
    const char *env = getenv("DFS_HISTORY");
    if (env != NULL && env[0] != '\0')
        return strdup(env);
    const char *home = getenv("HOME");
    if (home == NULL || home[0] == '\0')
        return NULL;
    char *p = NULL;
    if (asprintf(&p, "%s/.dfs_history", home) < 0)
        return NULL;
    return p;
}

/* The flag SIGINT sets while the shell runs (the one transfers poll). */
static volatile sig_atomic_t *shell_flag;

static void on_sigint(int sig)
{
    (void)sig;
    if (shell_flag != NULL)
        *shell_flag = 1;
}

int dfs_shell_run(struct dfs_cli *cli)
{
    /* Ctrl-C sets the flag the running transfer polls; the shell itself carries on. */
    shell_flag = cli->interrupted;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);

    bool tty = isatty(STDIN_FILENO);
    char *hist = tty ? history_path() : NULL;
    using_history();
    stifle_history(HISTORY_MAX);
    if (hist != NULL)
        read_history(hist);
    if (tty)
        printf("dfs shell: metadata service %s. Type help, or exit.\n",
               dfs_client_metadata(cli->client));

    int status = DFS_EXIT_OK;
    for (;;) {
        *cli->interrupted = 0;
        char *line = readline(tty ? "dfs> " : "");
        if (line == NULL) {
            /* End of input, or Ctrl-C at the prompt: a new prompt for the latter. */
            if (*cli->interrupted && tty) {
                printf("\n");
                continue;
            }
            if (tty)
                printf("\n");
            break;
        }
        char **words = NULL;
        char *err = NULL;
        int n = dfs_shell_split(line, &words, &err);
        if (n > 0 && tty)
            add_history(line);
        free(line);
        if (n < 0) {
            fprintf(stderr, "dfs: %s (type help)\n", err != NULL ? err : "bad line");
            free(err);
            status = DFS_EXIT_USAGE;
            continue;
        }
        if (n == 0) {
            free(words);
            continue;
        }
        if (strcmp(words[0], "exit") == 0 || strcmp(words[0], "quit") == 0) {
            free(words);
            break;
        }
        if (strcmp(words[0], "help") == 0 && n == 1) {
            shell_help();
            free(words);
            continue;
        }
        if (strcmp(words[0], "help") == 0 && n == 2 && strcmp(words[1], "full") == 0) {
            dfs_cli_usage(stdout);
            free(words);
            continue;
        }
        char **argv = malloc((size_t)(n + 2) * sizeof *argv);
        if (argv == NULL) {
            free(words);
            fprintf(stderr, "dfs: out of memory\n");
            continue;
        }
        argv[0] = "dfs";
        memcpy(argv + 1, words, (size_t)(n + 1) * sizeof *argv);
        struct dfs_session sess = {.client = cli->client, .interrupted = cli->interrupted};
        status = dfs_cli_run(&sess, n + 1, argv);
        fflush(stdout);
        free(argv);
        free(words);
    }
    if (hist != NULL && write_history(hist) != 0)
        fprintf(stderr, "dfs: cannot save the history in %s\n", hist);
    free(hist);
    shell_flag = NULL;
    return status;
}
