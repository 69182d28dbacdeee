/* The dfs commands: each parses nothing, prints its result, and returns an exit status. */
#ifndef DFS_CLI_COMMANDS_H
#define DFS_CLI_COMMANDS_H

#include "client/dfs_client.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* Everything a command needs, filled by main() from flags and the environment. */
struct dfs_cli {
    dfs_client *client;
    bool json;      /* --json: machine-readable output on stdout */
    bool quiet;     /* -q: nothing on stdout for put/get/rm */
    bool long_list; /* ls -l, status -l (list the lost and degraded files) */
    bool loss;      /* status --loss: check every copy on the nodes */
    bool force;     /* put --force: replace an existing file */
    uint32_t replicas, fragments;
    uint32_t ec_data, ec_parity; /* --ec K+M; 0 for replication */
    int policy;                  /* dfs.v1.Policy number, 0 = cluster default */
    int64_t stall_timeout_ms;
    volatile sig_atomic_t *interrupted;
    uint64_t link_rate, max_rate; /* --throttle, --max-rate: bytes per second, 0 = no limit */
    unsigned parallel;            /* --parallel: streams in flight, 0 = default */
    bool progress;                /* show progress lines (stderr is a terminal, not --quiet) */
    bool resume;                  /* get --resume */
    bool chain;                   /* put --replication chain */
    const char *progress_log;     /* --progress-log FILE: "seconds bytes" per message, or NULL */
    int token_role;               /* token create --role: dfs.v1.TokenRole number, 0 = none */
    const char *token_name;       /* token create --name */
    int64_t token_ttl_ms;         /* token create --ttl; 0 = never expires */
    bool token_s3;                /* token create --s3: print the S3 access key too */
    bool all;                     /* token ls --all */
};

/* Exit statuses. */
enum {
    DFS_EXIT_OK = 0,
    DFS_EXIT_FAIL = 1,
    DFS_EXIT_USAGE = 2,
    DFS_EXIT_INTERRUPTED = 130,
};

/* Each prints its output on stdout and a one-line error on stderr; returns an exit status. */
int dfs_cmd_put(struct dfs_cli *cli, const char *local, const char *remote);
int dfs_cmd_get(struct dfs_cli *cli, const char *remote, const char *local);
int dfs_cmd_stat(struct dfs_cli *cli, const char *remote);
int dfs_cmd_ls(struct dfs_cli *cli, const char *prefix);
int dfs_cmd_rm(struct dfs_cli *cli, const char *remote);
/* Rename a file or a directory (cli->force: replace a file at to). */
int dfs_cmd_mv(struct dfs_cli *cli, const char *from, const char *to);
int dfs_cmd_nodes(struct dfs_cli *cli);
int dfs_cmd_status(struct dfs_cli *cli);
/* action: "drain", "undrain" or "decommission"; node: an id or a unique prefix of one. */
int dfs_cmd_node(struct dfs_cli *cli, const char *action, const char *node);

/* action: "create", "revoke" (arg: an id or a unique prefix) or "ls". */
int dfs_cmd_token(struct dfs_cli *cli, const char *action, const char *arg);
int dfs_cmd_whoami(struct dfs_cli *cli);
/* action: "ls" (arg NULL): every metadata replica's role, term, commit and applied index;
   "add" (arg ID=RAFT=GRPC) or "remove" (arg ID): a membership change on the leader. */
int dfs_cmd_metadata(struct dfs_cli *cli, const char *action, const char *arg);
/* Its arguments' form only (before connecting): DFS_EXIT_OK, or DFS_EXIT_USAGE with a line on
   stderr. */
int dfs_cmd_metadata_check(const char *action, const char *arg);

/* Print "dfs: <message>" on stderr and return the exit status for code. */
int dfs_cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* DFS_CLI_COMMANDS_H */
