/* Protobuf-c messages <-> gRPC byte buffers. */
#include "services/rpc/msg.h"

#include "common/err.h"
#include "services/rpc/wirecheck.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

grpc_byte_buffer *dfs_rpc_pack(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

ProtobufCMessage *dfs_rpc_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    ProtobufCMessage *msg = NULL;
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1) {
        grpc_slice s = bb->data.raw.slice_buffer.slices[0];
        msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    } else {
        grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
        msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all),
                                        GRPC_SLICE_START_PTR(all));
        grpc_slice_unref(all);
    }
    grpc_byte_buffer_reader_destroy(&reader);
    return msg;
}

ProtobufCMessage *dfs_rpc_unpack_checked(const ProtobufCMessageDescriptor *desc,
                                         grpc_byte_buffer *bb, char **errmsg)
{
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb)) {
        dfs_seterr(errmsg, DFS_EINVAL, "cannot decompress a %s", desc->name);
        return NULL;
    }
    grpc_slice all;
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1)
        all = grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
    else
        all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    const uint8_t *data = GRPC_SLICE_START_PTR(all);
    size_t len = GRPC_SLICE_LENGTH(all);
    ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, len, data);
    if (msg == NULL)
        dfs_seterr(errmsg, DFS_EINVAL, "the request does not parse as %s", desc->name);
    else if (dfs_rpc_wire_check_strings(desc, data, len, errmsg) != DFS_OK) {
        protobuf_c_message_free_unpacked(msg, NULL);
        msg = NULL;
    }
    grpc_slice_unref(all);
    return msg;
}
