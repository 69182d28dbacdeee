/* Parsing and running one dfs command line, for the dfs program and for dfs shell. */
#ifndef DFS_CLI_CLI_H
#define DFS_CLI_CLI_H

#include "cli/commands.h"
#include "client/dfs_client.h"

#include <signal.h>
#include <stdio.h>

/* What every command line of a session runs with. */
struct dfs_session {
    /* The shell's connection (borrowed), or NULL for the program: each command line then connects
       with its own --metadata / DFS_METADATA. */
    dfs_client *client;
    /* Set by the caller's SIGINT handler; transfers poll it. The caller resets it between lines. */
    volatile sig_atomic_t *interrupted;
};

/*
 * Parse and run one command line: argv[0] is the program's name, then global options, the command
 * and its arguments and options, in any order (the option table in cli.c, common/options.h).
 * Prints the command's output, its help (-h), or a one-line error, and returns the exit status
 * (commands.h). Never exits the process.
 */
int dfs_cli_run(struct dfs_session *sess, int argc, char **argv);

/* The program's help: the commands and the global options (dfs -h). */
void dfs_cli_usage(FILE *out);

/*
 * dfs shell: read command lines at a prompt (line editing and history with libedit) and run them
 * with dfs_cli_run on cli->client's connection until exit, quit or end of input. A line with bad
 * syntax prints a short usage and the shell goes on; Ctrl-C stops the running transfer (not the
 * shell) and clears the line at the prompt. History is kept in $DFS_HISTORY, else ~/.dfs_history.
 * Returns the exit status of the last command.
 */
int dfs_shell_run(struct dfs_cli *cli);

/*
 * Split a shell line into words: blanks separate words; '...' and "..." quote (a backslash escapes
 * '"' and '\' inside "..." and any character outside quotes). On success returns the number of
 * words and *words (an array of n + 1 pointers, NULL-terminated, in one allocation the caller
 * frees); returns -1 with a one-line reason in *errmsg for an unterminated quote or a trailing
 * backslash.
 */
int dfs_shell_split(const char *line, char ***words, char **errmsg);

#endif /* DFS_CLI_CLI_H */
