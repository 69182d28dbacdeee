/* Route gRPC's own log lines into the dfs logger. */
#include "services/rpc/grpclog.h"

#include "common/log.h"

#include <grpc/support/log.h>
#include <string.h>

static void forward(gpr_log_func_args *args)
{
    enum dfs_log_level level =
        args->severity == GPR_LOG_SEVERITY_ERROR ? DFS_LOG_WARN : DFS_LOG_DEBUG;
    if (!dfs_log_enabled(level))
        return;
    const char *base = strrchr(args->file, '/');
    dfs_log(level, "grpc: %s at=%s:%d", args->message, base != NULL ? base + 1 : args->file,
            args->line);
}

void dfs_rpc_route_grpc_logs(void)
{
    gpr_set_log_function(forward);
    gpr_set_log_verbosity(GPR_LOG_SEVERITY_DEBUG);
}
