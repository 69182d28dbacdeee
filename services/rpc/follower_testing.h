/* Tests only: a server that answers every call as a Raft follower does (services/rpc/leader.h). */
#ifndef DFS_SERVICES_RPC_FOLLOWER_TESTING_H
#define DFS_SERVICES_RPC_FOLLOWER_TESTING_H

typedef struct dfs_rpc_follower dfs_rpc_follower;

/*
 * Start a server on a free loopback port that answers every call, whatever its method, with
 * status UNAVAILABLE, the status message `message`, and (unless leader is NULL) the trailing
 * metadata "dfs-leader: LEADER". Both strings are copied. Returns 0 and *out, or DFS_EINTERNAL.
 */
int dfs_rpc_follower_start(const char *leader, const char *message, dfs_rpc_follower **out);

/* The port it listens on. */
int dfs_rpc_follower_port(const dfs_rpc_follower *f);

/* How many calls it has answered. */
int dfs_rpc_follower_calls(const dfs_rpc_follower *f);

/* Stop it (every call ends) and free it. Accepts NULL. */
void dfs_rpc_follower_stop(dfs_rpc_follower *f);

#endif /* DFS_SERVICES_RPC_FOLLOWER_TESTING_H */
