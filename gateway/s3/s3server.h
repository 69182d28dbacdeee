/*
 * dfs-gateway's S3 server (gateway/s3/DESIGN.md): a libmicrohttpd daemon of its own, on its own
 * port, beside the REST API, speaking S3 over the client library (client/dfs_client.h).
 *
 * Every request is signed (SigV4: Authorization header or presigned URL; anonymous requests are
 * refused); the signing keys come from the metadata service (dfs_client_s3_signing_key, cached
 * for at most 60 s), so the gateway never holds a secret. A read_only key may only read.
 *
 * A bucket is the top-level directory /bucket, and a row of the catalog's buckets (so that it
 * exists while empty). Bodies are proven (signature or payload hash, Content-MD5,
 * x-amz-checksum-*) before the object becomes visible; they are held in memory (within a budget)
 * or spooled in spool_dir meanwhile.
 */
#ifndef DFS_GATEWAY_S3_S3SERVER_H
#define DFS_GATEWAY_S3_S3SERVER_H

#include "client/dfs_client.h"

#include <signal.h>

typedef struct dfs_s3server dfs_s3server;

struct dfs_s3server_config {
    dfs_client *client; /* borrowed; its token: gateway or admin (GetSigningKey) */
    const char *listen; /* "HOST:PORT"; port 0 picks a free one */
    const char *domain; /* virtual-host style for BUCKET.domain; NULL: path style only */
    const char *region; /* the only region signatures may name; NULL: "us-east-1" */
    const char *spool_dir;
    unsigned max_connections; /* 0 means 256 */
    /* A multipart upload not completed within this is aborted (its parts removed); 0: 7 days. */
    int64_t upload_timeout_ms;
    /* A PUT or UploadPart body longer than this is stored in segments of this size as it arrives
       and stitched at the end (gateway/s3/segput.h), rather than spooled whole; 0: 64 MiB, else
       1 MiB at least. */
    uint64_t segment_size;
    /* PUT and UploadPart bodies up to segment_size are held in memory while they arrive and are
       proven, then stored from there, as long as the bodies held at once stay within this many
       bytes; a body that does not fit is spooled in spool_dir as before. 0: none in memory. */
    uint64_t body_memory;
    /* The segments of longer bodies are held in memory, two buffers of segment_size per body, as
       long as those of the bodies at once stay within this many bytes; the segments of a body that
       does not fit are spooled in spool_dir. 0: all spooled. */
    uint64_t segment_memory;
};

/* Bind and serve. Returns 0 and *out, or DFS_EINVAL / DFS_EUNAVAIL / DFS_ENOMEM with *errmsg. */
int dfs_s3server_start(const struct dfs_s3server_config *cfg, dfs_s3server **out, char **errmsg);

/* The bound address, "127.0.0.1:40123" (borrowed). */
const char *dfs_s3server_address(const dfs_s3server *s);

/* Stop accepting and wait up to grace_ms for requests in flight; returns how many still run. */
unsigned dfs_s3server_quiesce(dfs_s3server *s, int64_t grace_ms);

/* Cancel what still runs, close every connection, free. Accepts NULL. */
void dfs_s3server_stop(dfs_s3server *s);

#endif /* DFS_GATEWAY_S3_S3SERVER_H */
