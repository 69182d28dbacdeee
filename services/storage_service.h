/* The Storage service: dfs.v1.Storage (put, get, delete, stat of fragments) over a fragment store. */
#ifndef DFS_SERVICES_STORAGE_SERVICE_H
#define DFS_SERVICES_STORAGE_SERVICE_H

#include "services/rpc/server.h"
#include "storage/frag_store.h"

#include <stddef.h>
#include <stdint.h>

/*
 * The four methods, on whichever loop thread gRPC binds each call to; a handler does its disk I/O
 * synchronously on that thread (fsync included), so a slow disk slows only the calls of that
 * worker. Every failure carries a one-line message that names the fragment when it is known:
 *
 *   PutFragment (client streaming). The first message must carry the header (fragment id, size);
 *     a header in any later message, or none in the first, is INVALID_ARGUMENT. Each message's data
 *     and CRCs go to a frag_store writer, which enforces the chunking rules (INVALID_ARGUMENT) and
 *     every block CRC (DATA_LOSS). At the end of the stream the writer is committed; the commit
 *     itself refuses a stream that delivered fewer bytes than declared (INVALID_ARGUMENT), which is
 *     also how a client's cancel is caught when gRPC reports it as a clean end of stream. Any
 *     failure aborts the writer: nothing partial is ever visible, and what was stored under the
 *     id before stays. Answer: {fragment_id, size, checksum}, once the fragment is durable.
 *   GetFragment (server streaming). Range [offset, offset + length), length 0 = to the end;
 *     a range past the end is OUT_OF_RANGE. Messages carry at most chunk_bytes of data (see the
 *     config); the first also carries header {fragment_id, whole size} and the fragment checksum,
 *     and is sent even for an empty range. Every block is checked against its stored CRC as it is
 *     read; a corrupt one ends the stream with DATA_LOSS "fragment X block N is corrupt".
 *   DeleteFragment (unary): {existed}.     StatFragment (unary): {fragment_id, size, checksum,
 *     stored_ms}, NOT_FOUND when absent.
 *
 * A malformed fragment id is INVALID_ARGUMENT everywhere (the store checks it before it forms any
 * path, so no request can reach outside the data directory).
 */
typedef struct dfs_storage_service dfs_storage_service;

/* Largest data payload of one GetFragment message, and the default. */
#define DFS_STORAGE_CHUNK_MAX (1u << 20)

struct dfs_storage_service_config {
    /* Data bytes per GetFragment message: a multiple of DFS_BLOCK_SIZE, at most
       DFS_STORAGE_CHUNK_MAX. 0 means DFS_STORAGE_CHUNK_MAX. */
    size_t chunk_bytes;
};

/*
 * Create the service over an open store. store is borrowed: it must stay open until the service
 * is destroyed. cfg is copied; NULL means defaults. Returns 0 and *out (free with
 * dfs_storage_service_destroy), DFS_EINVAL (bad chunk_bytes) or DFS_ENOMEM, with *errmsg.
 */
int dfs_storage_service_create(dfs_frag_store *store, const struct dfs_storage_service_config *cfg,
                               dfs_storage_service **out, char **errmsg);

/*
 * Add the four dfs.v1.Storage methods to a server that has not started. The service is the
 * methods' context: it must outlive the server's calls, i.e. destroy it only after
 * dfs_rpc_server_stop (which returns once every call's state, and so every writer and reader the
 * service opened, has been released). Returns 0 or the server's error.
 */
int dfs_storage_service_register(dfs_storage_service *svc, dfs_rpc_server *srv, char **errmsg);

/*
 * Counters since create. The *_active figures count calls whose state is still held: a put's
 * writer is aborted (its temporary file removed) before puts_active drops.
 */
struct dfs_storage_service_stats {
    uint64_t puts_active;
    uint64_t puts_ok;
    uint64_t puts_failed; /* every put that stored nothing: errors and cancels */
    uint64_t gets_active;
    uint64_t gets_ok;
    uint64_t gets_failed;
    uint64_t bytes_received; /* fragment data accepted by PutFragment (committed or not) */
    uint64_t bytes_sent;     /* fragment data handed to gRPC by GetFragment */
};

/* Fill *out; safe from any thread while the server runs (each counter is read atomically). */
void dfs_storage_service_stats(dfs_storage_service *svc, struct dfs_storage_service_stats *out);

/* Free the service. The server it was registered on must be stopped. Accepts NULL. */
void dfs_storage_service_destroy(dfs_storage_service *svc);

#endif /* DFS_SERVICES_STORAGE_SERVICE_H */
