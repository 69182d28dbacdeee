/* Experiments over HTTP: runs of benchmarks/experiment as child processes, their state, their
   results and figures. */
#ifndef DFS_GATEWAY_EXPERIMENTS_H
#define DFS_GATEWAY_EXPERIMENTS_H

#include <stddef.h>
#include <stdint.h>

/*
 * Each run is `PROGRAM KIND [--KNOB VALUE | --FLAG]... --out DIR/ID [--bin BIN]` in its own
 * process group, with stdout and stderr in DIR/ID/experiment.log and the gateway's environment;
 * when it succeeds, `PROGRAM plot --out DIR/ID` draws its figures (DIR/ID/plots/NAME.png) before
 * the run counts as done. A watcher thread per run waits for both (so every child is reaped) and
 * writes DIR/ID/gateway-state when the run ends:
 *
 *     dfs-experiment-state 1
 *     kind <kind>
 *     started_ms <unix ms>
 *     ended_ms <unix ms>
 *     exit <status>            (or: signal <number>)
 *     cancelled 0|1
 *
 * so runs of an earlier gateway are listed again after a restart. At most max_running run at
 * once. Destroying stops the running ones: SIGTERM to the group, SIGKILL after a grace period.
 */
typedef struct dfs_experiments dfs_experiments;

struct dfs_experiments_config {
    const char *program; /* the experiment program; NULL or missing: starting fails (503) */
    const char *dir;     /* where each run gets its folder (created if missing) */
    const char *bin; /* passed to every run as --bin (the dfs binaries it drives); may be NULL */
    unsigned max_running;  /* 0 means 1 */
    int64_t stop_grace_ms; /* SIGTERM to SIGKILL on cancel and shutdown; 0 means 3000 */
};

/* Returns 0 and *out, or DFS_EIO (the folder cannot be made) / DFS_ENOMEM with *errmsg. */
int dfs_experiments_create(const struct dfs_experiments_config *cfg, dfs_experiments **out,
                           char **errmsg);

/* Stop every running experiment, reap it, free. Accepts NULL. */
void dfs_experiments_destroy(dfs_experiments *x);

/* A knob: --name value, or a bare --name when value is NULL (a true boolean). */
struct dfs_exp_knob {
    char *name;
    char *value;
};

/*
 * The knobs of a start request from a flat JSON object ({"kind": "simulate", "quick": true,
 * "nodes": 12, "policy": "buddy"}; strings, numbers, true/false; false drops the flag) into
 * *kind and knobs[0..*n) (malloc'd: free with dfs_exp_knobs_free). Names are [a-z][a-z0-9_-]*,
 * at most 32 bytes (turned into --with-dashes); values [A-Za-z0-9_.,:+-]*, at most 256 bytes,
 * not starting with '-'; out, bin and work_dir are the gateway's. DFS_EINVAL with *errmsg otherwise.
 */
int dfs_exp_parse_json(const char *body, size_t len, char **kind, struct dfs_exp_knob **knobs,
                       size_t *n, char **errmsg);

/* Check one knob (the same rules), e.g. from a query parameter. DFS_EINVAL with *errmsg. */
int dfs_exp_check_knob(const char *name, const char *value, char **errmsg);

void dfs_exp_knobs_free(struct dfs_exp_knob *knobs, size_t n);

/*
 * Start a run of `kind` (store, loss or simulate) with the knobs (borrowed). Returns 0 and *id
 * (malloc'd), DFS_EINVAL (bad kind or knob), DFS_EABORTED when max_running are running (429),
 * DFS_EUNAVAIL when there is no program (503), or DFS_EIO with *errmsg.
 */
int dfs_experiments_start(dfs_experiments *x, const char *kind, const struct dfs_exp_knob *knobs,
                          size_t n, char **id, char **errmsg);

/* Cancel a running one (its process group gets SIGTERM, then SIGKILL). DFS_ENOTFOUND; DFS_EPRECOND
   when it is not running. */
int dfs_experiments_cancel(dfs_experiments *x, const char *id, char **errmsg);

/* {"experiments": [{summary}...]} newest first, into *body (malloc'd) and *len. */
int dfs_experiments_list_json(dfs_experiments *x, char **body, size_t *len, char **errmsg);

/*
 * One run: id, kind, args, state (running, done, failed, cancelled), exit_status / signal,
 * started_ms, ended_ms, plots (names), files, the last lines of its log, and, once done, the
 * content of its results JSON ("results": the first *.json it wrote, results.json first; null
 * when none). DFS_ENOTFOUND.
 */
int dfs_experiments_get_json(dfs_experiments *x, const char *id, char **body, size_t *len,
                             char **errmsg);

/*
 * The path of a file the run wrote (`name` is a plain file name, no '/'), for serving its plots.
 * *path is malloc'd. DFS_ENOTFOUND (no such run or file), DFS_EINVAL (a bad name).
 */
int dfs_experiments_file(dfs_experiments *x, const char *id, const char *name, char **path,
                         char **errmsg);

/* The program in use (borrowed), or NULL when experiments are off. */
const char *dfs_experiments_program(const dfs_experiments *x);

#endif /* DFS_GATEWAY_EXPERIMENTS_H */
