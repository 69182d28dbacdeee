/* libmicrohttpd glue the gateway's routes share: answers, decoded query values, request state. */
#ifndef DFS_GATEWAY_HTTP_H
#define DFS_GATEWAY_HTTP_H

#include <microhttpd.h>
#include <stddef.h>

/*
 * Per-request state a route keeps in MHD's *req_cls between calls of the access handler starts
 * with this; the server's request-completed callback calls done (which frees it), whatever way
 * the request ended (answered, client gone, daemon stopping).
 */
struct dfs_gw_req {
    void (*done)(struct dfs_gw_req *req);
};

/* Queue `body` (malloc'd; MHD frees it, also on failure) with Content-Type `type`. */
enum MHD_Result dfs_gw_reply(struct MHD_Connection *c, unsigned status, const char *type,
                             char *body, size_t len);

/* Queue a static body (a literal that outlives the response). */
enum MHD_Result dfs_gw_reply_static(struct MHD_Connection *c, unsigned status, const char *type,
                                    const char *body, size_t len);

/* Queue {"error": message, "code": status} as application/json. */
enum MHD_Result dfs_gw_reply_error(struct MHD_Connection *c, unsigned status, const char *message);

/* The same for a DFS_ code (reply.h maps it to the status); message may be NULL. */
enum MHD_Result dfs_gw_reply_code(struct MHD_Connection *c, int code, const char *message);

/* 405 with an Allow header listing `allow` ("GET, HEAD"). */
enum MHD_Result dfs_gw_reply_method(struct MHD_Connection *c, const char *allow);

/*
 * The query parameter `key`, percent-decoded: 0 and *out (malloc'd, the caller frees; NULL when
 * absent), or DFS_EINVAL with *errmsg naming the parameter. The server leaves decoding to us
 * (its unescape callback is the identity), so bad escapes and %00 are refused, not mangled.
 */
int dfs_gw_query(struct MHD_Connection *c, const char *key, char **out, char **errmsg);

#endif /* DFS_GATEWAY_HTTP_H */
