/* How the gateway answers errors: DFS_ codes to HTTP statuses, and the JSON error body. */
#include "gateway/reply.h"

#include "common/err.h"
#include "common/json.h"

#include <stdio.h>
#include <stdlib.h>

unsigned dfs_gw_http_status(int code)
{
    switch (code) {
    case DFS_OK:
        return 200;
    case DFS_EINVAL:
        return 400;
    case DFS_EUNAUTH:
        return 401;
    case DFS_EPERM:
        return 403;
    case DFS_ENOTFOUND:
        return 404;
    case DFS_EEXIST:
    case DFS_EABORTED:
        return 409;
    case DFS_ERANGE:
        return 416;
    case DFS_EUNAVAIL:
    case DFS_ETIMEDOUT:
    case DFS_EPRECOND:
    case DFS_ECANCELED:
        return 503;
    case DFS_ENOSPC:
        return 507;
    default:
        return 500;
    }
}

char *dfs_gw_error_json(unsigned status, const char *message, size_t *len)
{
    char *body = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&body, &n);
    if (f == NULL)
        return NULL;
    dfs_json j;
    dfs_json_init(&j, f);
    dfs_json_begin_object(&j);
    dfs_json_key(&j, "error");
    dfs_json_string(&j, message != NULL ? message : "");
    dfs_json_key(&j, "code");
    dfs_json_uint(&j, status);
    dfs_json_end_object(&j);
    dfs_json_finish(&j);
    if (fclose(f) != 0) {
        free(body);
        return NULL;
    }
    *len = n;
    return body;
}
