/* What protobuf-c does not check in a parsed message: that its strings are proto3 strings. */
#ifndef DFS_SERVICES_RPC_WIRECHECK_H
#define DFS_SERVICES_RPC_WIRECHECK_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/*
 * protobuf-c hands every string field over as a NUL-terminated C string and never looks inside:
 * "a\0/../x" arrives as "a" (the rest silently dropped: a request could name one thing to a check
 * and another to whoever reads the wire), and bytes that are not UTF-8 pass (proto3 says a string
 * is UTF-8; Python and Go peers refuse to decode such a message, so one stored path of that kind
 * would break every listing for them).
 *
 * Walk the encoded message data[0..len) of type desc, guided by the descriptor, into every known
 * sub-message field: every string field (singular or repeated) must hold no NUL byte and be valid
 * UTF-8. Unknown fields are skipped as protobuf skips them. Sub-messages nest at most
 * DFS_WIRECHECK_MAX_DEPTH deep. Meant for bytes that protobuf-c already parsed as desc; any other
 * bytes are safe to pass (they are refused when they do not parse as a message).
 *
 * Returns 0, or DFS_EINVAL with *errmsg naming the field: "dfs.v1.CreateFileRequest.path holds a
 * NUL byte (at byte 3 of the string)".
 */
#define DFS_WIRECHECK_MAX_DEPTH 32
int dfs_rpc_wire_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                               size_t len, char **errmsg);

#endif /* DFS_SERVICES_RPC_WIRECHECK_H */
