/* The CLI's connection to the metadata service: calls with deadlines, retries and clear errors. */
#ifndef DFS_CLI_META_H
#define DFS_CLI_META_H

#include "services/rpc/client.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct dfs_meta dfs_meta;

/*
 * Connect (lazily) to the metadata service at addr ("host:port"). timeout_ms bounds every call.
 * Returns 0 and *out (dfs_meta_close), or DFS_EINVAL for an empty address.
 */
int dfs_meta_open(const char *addr, int64_t timeout_ms, dfs_meta **out, char **errmsg);

/* Accepts NULL. */
void dfs_meta_close(dfs_meta *m);

/* The address given at open (borrowed). */
const char *dfs_meta_addr(const dfs_meta *m);

/*
 * Call Metadata.<method> ("GetFile"). Idempotent calls pass retry = true and are retried for up to 2 s
 * while the service is unavailable (a restart), within the timeout. On success *resp is the response (free with
 * protobuf_c_message_free_unpacked). On failure the DFS_ code; *errmsg says what the service said,
 * or "cannot reach the metadata service at ADDR (...)" when it could not be reached.
 */
int dfs_meta_call(dfs_meta *m, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, bool retry, void *resp,
                  char **errmsg);

#endif /* DFS_CLI_META_H */
