/* gRPC server reflection (v1 and v1alpha) answered from a serialized FileDescriptorSet. */
#ifndef DFS_SERVICES_RPC_REFLECTION_H
#define DFS_SERVICES_RPC_REFLECTION_H

#include "services/rpc/server.h"

#include <stddef.h>

/*
 * grpc.reflection.v1.ServerReflection/ServerReflectionInfo and its v1alpha twin (the same messages
 * under another package), the protocol grpc_cli, grpcurl and Postman use to discover services.
 * One bidirectional stream answers any number of requests, one response per request, in order:
 *
 *   list_services                  the services the server has methods for, from its method table
 *                                  at the time of the request ("dfs.v1.Metadata",
 *                                  "grpc.health.v1.Health", ...), in registration order.
 *   file_by_filename               that file, then every file it imports, transitively (each once).
 *   file_containing_symbol         the same, for the file that declares the fully-qualified symbol:
 *                                  a package, message (nested ones too), field, oneof, enum, enum
 *                                  value (scoped beside its enum, as in protobuf), service, method
 *                                  or extension.
 *   file_containing_extension      NOT_FOUND: no file in the set declares an extension (when the
 *                                  set has one, it is looked up by containing type and number).
 *   all_extension_numbers_of_type  a known message type: its extension numbers (none for dfs), as
 *                                  the C++ and Go servers answer; an unknown type: NOT_FOUND.
 *   anything else                  UNIMPLEMENTED.
 * Failures are ErrorResponse messages (error_code is a gRPC status code); the stream goes on.
 * Files are sent as the exact bytes found in the set (no copies: the set is borrowed).
 */
typedef struct dfs_rpc_reflection dfs_rpc_reflection;

/*
 * Index a serialized google.protobuf.FileDescriptorSet (normally protos/descriptor_set.h). set is
 * borrowed and must outlive the handle. Every file's imports must be in the set (protoc
 * --include_imports). Returns 0 and *out, DFS_EINVAL (the bytes do not parse, or an import is
 * missing) or DFS_ENOMEM, with *errmsg.
 */
int dfs_rpc_reflection_create(const void *set, size_t len, dfs_rpc_reflection **out, char **errmsg);

/* Free. The server it was registered on must be stopped. Accepts NULL. */
void dfs_rpc_reflection_destroy(dfs_rpc_reflection *r);

/*
 * Add both reflection methods to a server that has not started; list_services answers from that
 * server's methods. r must outlive the server's calls. Returns 0 or the server's error.
 */
int dfs_rpc_reflection_register(dfs_rpc_reflection *r, dfs_rpc_server *srv, char **errmsg);

/* ---- the index, for tests and tools ---- */

/* Number of files in the set. */
size_t dfs_rpc_reflection_file_count(const dfs_rpc_reflection *r);

/* The name of file i ("dfs/v1/metadata.proto"; borrowed), NULL when out of range. */
const char *dfs_rpc_reflection_file_name(const dfs_rpc_reflection *r, size_t i);

/* Index of the file declaring a fully-qualified symbol, or -1. */
int dfs_rpc_reflection_find_symbol(const dfs_rpc_reflection *r, const char *symbol);

/* Index of the file with this name, or -1. */
int dfs_rpc_reflection_find_file(const dfs_rpc_reflection *r, const char *name);

/*
 * File `file` followed by its transitive imports, each once, into out[0..cap); returns how many
 * there are (which may exceed cap: then only cap were written).
 */
size_t dfs_rpc_reflection_closure(const dfs_rpc_reflection *r, int file, int *out, size_t cap);

#endif /* DFS_SERVICES_RPC_REFLECTION_H */
