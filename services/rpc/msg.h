/* Protobuf-c messages <-> gRPC byte buffers, with as few copies as the libraries allow. */
#ifndef DFS_SERVICES_RPC_MSG_H
#define DFS_SERVICES_RPC_MSG_H

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>

/*
 * Pack a message straight into one grpc_slice_malloc slice and wrap it in a byte buffer (no
 * intermediate buffer). The message is only read; the caller keeps it. Returns a buffer the caller
 * owns (grpc_byte_buffer_destroy, or hand it to a SEND_MESSAGE op and destroy it after the batch
 * was started), or NULL when out of memory.
 */
grpc_byte_buffer *dfs_rpc_pack(const ProtobufCMessage *msg);

/*
 * Parse a received byte buffer. A single-slice buffer is parsed in place; a multi-slice one is
 * flattened first. Returns a message the caller frees with protobuf_c_message_free_unpacked(msg,
 * NULL), or NULL when the bytes are not a valid `desc` message. The buffer is only read.
 */
ProtobufCMessage *dfs_rpc_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb);

/*
 * Parse a received request: like dfs_rpc_unpack, then the proto3 string rules protobuf-c leaves
 * out (services/rpc/wirecheck.h: no NUL bytes, valid UTF-8), since a server must not act on a
 * string that its peer spelt differently. Returns the message, or NULL with *errmsg ("the request
 * does not parse as dfs.v1.X", or which field is bad; caller frees).
 */
ProtobufCMessage *dfs_rpc_unpack_checked(const ProtobufCMessageDescriptor *desc,
                                         grpc_byte_buffer *bb, char **errmsg);

#endif /* DFS_SERVICES_RPC_MSG_H */
