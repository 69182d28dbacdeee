/* How the gateway answers errors: DFS_ codes to HTTP statuses, and the JSON error body. */
#ifndef DFS_GATEWAY_REPLY_H
#define DFS_GATEWAY_REPLY_H

#include <stddef.h>

/*
 * The HTTP status for a DFS_ code: EINVAL 400, ENOTFOUND 404, EEXIST and EABORTED 409, ERANGE
 * 416, EUNAVAIL, ETIMEDOUT, EPRECOND (too few live nodes) and ECANCELED (shutting down) 503,
 * ENOSPC 507, EPERM 403, EUNAUTH 401, anything else 500 (EDATALOSS, EIO, EINTERNAL, ENOMEM).
 */
unsigned dfs_gw_http_status(int code);

/*
 * The body of an error answer: {"error": "<message>", "code": <status>} and a newline, with the
 * message escaped as JSON (RFC 8259; invalid UTF-8 becomes U+FFFD). Returns a malloc'd string
 * (the caller frees) and its length in *len, or NULL when out of memory.
 */
char *dfs_gw_error_json(unsigned status, const char *message, size_t *len);

#endif /* DFS_GATEWAY_REPLY_H */
