/* The one mapping between dfs status codes and gRPC status codes. */
#ifndef DFS_SERVICES_RPC_STATUS_H
#define DFS_SERVICES_RPC_STATUS_H

#include <grpc/status.h>

/* DFS_OK -> GRPC_STATUS_OK, DFS_EINVAL -> INVALID_ARGUMENT, ... (see common/err.h). */
grpc_status_code dfs_rpc_status_from_err(int code);

/* The reverse; codes with no dfs equivalent (UNKNOWN, UNIMPLEMENTED...) become DFS_EINTERNAL. */
int dfs_rpc_err_from_status(grpc_status_code status);

/* "INVALID_ARGUMENT", "NOT_FOUND", ... */
const char *dfs_rpc_status_name(grpc_status_code status);

#endif /* DFS_SERVICES_RPC_STATUS_H */
