/* Route gRPC's own log lines into the dfs logger. */
#ifndef DFS_SERVICES_RPC_GRPCLOG_H
#define DFS_SERVICES_RPC_GRPCLOG_H

/*
 * Send gpr_log output (gRPC's internal messages) through dfs_log: gRPC errors become warn lines
 * with prog's other fields, everything else debug. Process-wide; call once from main().
 */
void dfs_rpc_route_grpc_logs(void);

#endif /* DFS_SERVICES_RPC_GRPCLOG_H */
