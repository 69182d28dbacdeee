/* load_gen rpc-ceiling: bare unary round trips through services/rpc, the ceiling beside the load. */
#ifndef DFS_BENCHMARKS_RPC_CEILING_H
#define DFS_BENCHMARKS_RPC_CEILING_H

#include <stddef.h>
#include <stdint.h>

/*
 * The ceiling's own setup, apart from load_gen's clients, which use only client/dfs_client.h:
 * this one measures the RPC layer beneath it. Without a target, an in-process server on loopback
 * whose handler only answers ("/dfs.bench.v1.Ping/Ping"); with one, a daemon's
 * grpc.health.v1.Health/Check.
 */
typedef struct dfs_rpc_ceiling dfs_rpc_ceiling;

/* What one run measured. */
struct dfs_rpc_ceiling_result {
    uint64_t calls, errors; /* calls that succeeded, and the others */
    double seconds;         /* from the first thread started to the last one joined */
    uint32_t *us;           /* each successful call's round trip in microseconds (malloc'd) */
    size_t n;
};

/*
 * Make the ceiling against target ("host:port", or NULL: start the in-process server). Returns 0
 * and *out (dfs_rpc_ceiling_destroy), or a DFS_ code with *errmsg ("cannot start the ping
 * server: ...").
 */
int dfs_rpc_ceiling_create(const char *target, dfs_rpc_ceiling **out, char **errmsg);

/*
 * Run `clients` threads, each with its own channel making one call after another, for `seconds`.
 * Fills *res in every case (the caller frees res->us). Returns 0; or a DFS_ code, with *errmsg
 * when a channel could not be opened or memory ran out, without one when a thread could not
 * start (nothing or part of it ran then; res says what).
 */
int dfs_rpc_ceiling_run(dfs_rpc_ceiling *c, unsigned clients, double seconds,
                        struct dfs_rpc_ceiling_result *res, char **errmsg);

/* Stop the in-process server, free. Accepts NULL. */
void dfs_rpc_ceiling_destroy(dfs_rpc_ceiling *c);

#endif /* DFS_BENCHMARKS_RPC_CEILING_H */
