/* libmicrohttpd glue the gateway's routes share: answers, decoded query values, request state. */
#include "gateway/http.h"

#include "common/err.h"
#include "gateway/reply.h"
#include "gateway/urlcodec.h"

#include <stdlib.h>
#include <string.h>

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, const char *type,
                             struct MHD_Response *r)
{
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result dfs_gw_reply(struct MHD_Connection *c, unsigned status, const char *type,
                             char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL)
        free(body);
    return queue(c, status, type, r);
}

enum MHD_Result dfs_gw_reply_static(struct MHD_Connection *c, unsigned status, const char *type,
                                    const char *body, size_t len)
{
    return queue(c, status, type,
                 MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT));
}

enum MHD_Result dfs_gw_reply_error(struct MHD_Connection *c, unsigned status, const char *message)
{
    size_t len = 0;
    char *body = dfs_gw_error_json(status, message, &len);
    if (body == NULL)
        return MHD_NO;
    return dfs_gw_reply(c, status, "application/json", body, len);
}

enum MHD_Result dfs_gw_reply_code(struct MHD_Connection *c, int code, const char *message)
{
    return dfs_gw_reply_error(c, dfs_gw_http_status(code),
                              message != NULL ? message : dfs_strerror(code));
}

enum MHD_Result dfs_gw_reply_method(struct MHD_Connection *c, const char *allow)
{
    size_t len = 0;
    char *body = dfs_gw_error_json(405, "method not allowed", &len);
    if (body == NULL)
        return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    return queue(c, 405, "application/json", r);
}

int dfs_gw_query(struct MHD_Connection *c, const char *key, char **out, char **errmsg)
{
    const char *raw = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
    if (raw == NULL) {
        *out = NULL;
        return DFS_OK;
    }
    int rc = dfs_gw_percent_decode(raw, out, errmsg);
    if (rc != DFS_OK)
        dfs_prefixerr(errmsg, rc, "query parameter %s", key);
    return rc;
}
