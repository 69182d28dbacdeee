/* The gateway's file routes: store, fetch (ranges), stat (HEAD), delete and list, over the client
   library (client/dfs_client.h). */
#ifndef DFS_GATEWAY_FILES_H
#define DFS_GATEWAY_FILES_H

#include "client/dfs_client.h"
#include "gateway/http.h"

#include <signal.h>
#include <stdint.h>

/*
 *   PUT    /v1/files/{path}?replicas=&fragments=&ec=K+M&policy=&overwrite=true
 *                               201 {file}; 400 bad path or parameter; 409 exists (without
 *                               overwrite); 413 body over --max-upload; 503 metadata or storage
 *                               unreachable (or too few live nodes); 500 otherwise
 *   GET    /v1/files/{path}     200 the bytes, or 206 with "Range: bytes=A-B" (one range), 416
 *                               when no byte of it exists; Content-Length, ETag "<sha256>",
 *                               Accept-Ranges: bytes, Last-Modified; 304 for a matching
 *                               If-None-Match; 404 no such file
 *   HEAD   /v1/files/{path}     the GET headers, no body
 *   DELETE /v1/files/{path}     200 {"deleted": {file}}; 404
 *   GET    /v1/files?prefix=P&limit=N&page_token=T
 *                               200 {"files": [{file}...], "next_page_token": "..."}
 *
 * {path} is percent-decoded, then canonicalised (common/path.h). Errors are JSON
 * ({"error": "...", "code": N}).
 *
 * Uploads are spooled: the body goes to an unlinked-on-completion temporary file in spool_dir as
 * it arrives (memory: MHD's connection buffer), then dfs_client_put stores it, so the put engine keeps
 * what a sequential body could not give it: every fragment (each a contiguous 1/F of the file)
 * streaming at once, and re-reading a fragment from its start when a node fails mid-copy.
 * Downloads stream: dfs_client_get_range writes to a pipe that the response reads from, as the data
 * arrives, checked block by block; memory stays bounded both ways.
 */
typedef struct dfs_gw_files dfs_gw_files;

struct dfs_gw_files_config {
    dfs_client *client;            /* borrowed; thread-safe */
    const char *spool_dir;         /* copied */
    uint64_t max_upload;           /* bytes; 0 = no limit */
    volatile sig_atomic_t *cancel; /* borrowed; non-zero: transfers in flight stop */
};

int dfs_gw_files_create(const struct dfs_gw_files_config *cfg, dfs_gw_files **out, char **errmsg);

/* Accepts NULL. Every request must have completed. */
void dfs_gw_files_destroy(dfs_gw_files *f);

/*
 * The access handler for a URL under /v1/files: `rest` is what follows "/v1/files" (raw: "" for
 * the listing, "/a%20b" for a file). Same contract as MHD's access handler; *req_cls holds a
 * struct dfs_gw_req when the request needs more calls.
 */
enum MHD_Result dfs_gw_files_handle(dfs_gw_files *f, struct MHD_Connection *c, const char *method,
                                    const char *rest, const char *upload_data,
                                    size_t *upload_data_size, void **req_cls);

/*
 * Remove leftovers of uploads a crashed gateway left in spool_dir: regular files named
 * "dfs-gw-upload-*" that no running gateway holds locked (an upload locks its spool file while it
 * lives, so a gateway starting on the folder another one uses leaves its uploads alone; anything
 * else of that name, a FIFO say, is left alone too). Returns how many were removed.
 */
int dfs_gw_files_sweep_spool(const char *spool_dir);

#endif /* DFS_GATEWAY_FILES_H */
