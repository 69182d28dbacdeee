/* dfs status codes <-> gRPC status codes. */
#include "services/rpc/status.h"

#include "common/err.h"

grpc_status_code dfs_rpc_status_from_err(int code)
{
    switch (code) {
    case DFS_OK:
        return GRPC_STATUS_OK;
    case DFS_EINVAL:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case DFS_ENOTFOUND:
        return GRPC_STATUS_NOT_FOUND;
    case DFS_EEXIST:
        return GRPC_STATUS_ALREADY_EXISTS;
    case DFS_EUNAVAIL:
        return GRPC_STATUS_UNAVAILABLE;
    case DFS_EDATALOSS:
        return GRPC_STATUS_DATA_LOSS;
    case DFS_ENOSPC:
    case DFS_ENOMEM:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case DFS_EUNAUTH:
        return GRPC_STATUS_UNAUTHENTICATED;
    case DFS_EPERM:
        return GRPC_STATUS_PERMISSION_DENIED;
    case DFS_ETIMEDOUT:
        return GRPC_STATUS_DEADLINE_EXCEEDED;
    case DFS_ECANCELED:
        return GRPC_STATUS_CANCELLED;
    case DFS_EPRECOND:
        return GRPC_STATUS_FAILED_PRECONDITION;
    case DFS_ERANGE:
        return GRPC_STATUS_OUT_OF_RANGE;
    case DFS_EABORTED:
        return GRPC_STATUS_ABORTED;
    case DFS_EIO:
    case DFS_EINTERNAL:
    default:
        return GRPC_STATUS_INTERNAL;
    }
}

int dfs_rpc_err_from_status(grpc_status_code status)
{
    switch (status) {
    case GRPC_STATUS_OK:
        return DFS_OK;
    case GRPC_STATUS_INVALID_ARGUMENT:
        return DFS_EINVAL;
    case GRPC_STATUS_NOT_FOUND:
        return DFS_ENOTFOUND;
    case GRPC_STATUS_ALREADY_EXISTS:
        return DFS_EEXIST;
    case GRPC_STATUS_UNAVAILABLE:
        return DFS_EUNAVAIL;
    case GRPC_STATUS_DATA_LOSS:
        return DFS_EDATALOSS;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return DFS_ENOSPC;
    case GRPC_STATUS_UNAUTHENTICATED:
        return DFS_EUNAUTH;
    case GRPC_STATUS_PERMISSION_DENIED:
        return DFS_EPERM;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return DFS_ETIMEDOUT;
    case GRPC_STATUS_CANCELLED:
        return DFS_ECANCELED;
    case GRPC_STATUS_FAILED_PRECONDITION:
        return DFS_EPRECOND;
    case GRPC_STATUS_OUT_OF_RANGE:
        return DFS_ERANGE;
    case GRPC_STATUS_ABORTED:
        return DFS_EABORTED;
    default:
        return DFS_EINTERNAL;
    }
}

const char *dfs_rpc_status_name(grpc_status_code status)
{
    static const char *const names[] = {"OK",
                                        "CANCELLED",
                                        "UNKNOWN",
                                        "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED",
                                        "NOT_FOUND",
                                        "ALREADY_EXISTS",
                                        "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION",
                                        "ABORTED",
                                        "OUT_OF_RANGE",
                                        "UNIMPLEMENTED",
                                        "INTERNAL",
                                        "UNAVAILABLE",
                                        "DATA_LOSS",
                                        "UNAUTHENTICATED"};
    if ((int)status < 0 || (unsigned)status >= sizeof names / sizeof names[0])
        return "UNKNOWN";
    return names[status];
}
