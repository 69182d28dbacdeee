/* What the client and server of services/rpc take from services/rpc/security (private). */
#ifndef DFS_SERVICES_RPC_SECURITY_INT_H
#define DFS_SERVICES_RPC_SECURITY_INT_H

#include "services/rpc/security.h"

#include <grpc/grpc_security.h>

/* New credentials for one channel; the caller releases them. NULL when out of memory. */
grpc_channel_credentials *dfs_rpc_tls_channel_creds(const dfs_rpc_tls *tls);

/* New credentials for a server (cert and key required); the caller releases them. */
grpc_server_credentials *dfs_rpc_tls_server_creds(const dfs_rpc_tls *tls);

/* The server-name override, or NULL (borrowed). */
const char *dfs_rpc_tls_server_name(const dfs_rpc_tls *tls);

#endif /* DFS_SERVICES_RPC_SECURITY_INT_H */
