/* The body of a GET: a byte range of a dfs file streamed from the nodes as the HTTP peer reads. */
#ifndef DFS_GATEWAY_STREAM_H
#define DFS_GATEWAY_STREAM_H

#include "client/dfs_client.h"

#include <microhttpd.h>
#include <signal.h>
#include <stdint.h>

/*
 * A libmicrohttpd response of `len` bytes whose body is bytes [off, off + len) of `file`: a
 * thread runs dfs_client_get_range into a pipe, and the response reads the other end as MHD
 * sends, so no whole-object buffer exists (the get engine's scratch window under spool_dir is
 * its only store). A get that fails closes the pipe early: the body ends short and MHD closes the
 * connection, as HTTP has no other way to say it after the headers. A peer that goes away: MHD
 * frees the response, which closes the read end; the get's next write fails with EPIPE and it
 * stops. Once *cancel is non-zero (the gateway stopping) the get stops too.
 *
 * client and cancel are borrowed and must outlive the response; spool_dir is borrowed likewise
 * (NULL: $TMPDIR). file is taken in every case (freed with the response, or here on failure).
 * `what` names the download in the log line of a get that stops ("download", "s3 download").
 * Returns the response (the caller queues and destroys it, as any MHD response), or NULL with
 * *errmsg (no pipe, no thread, no memory).
 */
struct MHD_Response *dfs_gw_stream_response(dfs_client *client, Dfs__V1__FileInfo *file,
                                            uint64_t off, uint64_t len, const char *spool_dir,
                                            volatile sig_atomic_t *cancel, const char *what,
                                            char **errmsg);

#endif /* DFS_GATEWAY_STREAM_H */
