/* Proto3 string rules over the wire bytes of a message. */
#include "services/rpc/wirecheck.h"

#include "common/err.h"
#include "common/utf8.h"
#include "services/rpc/wire.h"

#include <stdbool.h>
#include <string.h>

static int malformed(const ProtobufCMessageDescriptor *desc, char **errmsg)
{
    return dfs_seterr(errmsg, DFS_EINVAL, "the bytes do not parse as %s", desc->name);
}

static int check_string(const ProtobufCMessageDescriptor *desc, const ProtobufCFieldDescriptor *f,
                        const uint8_t *s, size_t n, char **errmsg)
{
    const uint8_t *nul = memchr(s, 0, n);
    if (nul != NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "%s.%s holds a NUL byte (at byte %zu of the string)",
                          desc->name, f->name, (size_t)(nul - s));
    size_t bad = 0;
    if (!dfs_utf8_valid((const char *)s, n, &bad))
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "%s.%s is not valid UTF-8 (at byte %zu of the string)", desc->name,
                          f->name, bad);
    return DFS_OK;
}

static int walk(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end,
                int depth, char **errmsg)
{
    if (depth > DFS_WIRECHECK_MAX_DEPTH)
        return dfs_seterr(errmsg, DFS_EINVAL, "%s: messages nest more than %d deep", desc->name,
                          DFS_WIRECHECK_MAX_DEPTH);
    while (p < end) {
        uint64_t key, v;
        if (!dfs_wire_flat_varint(&p, end, &key) || key >> 3 == 0 || key >> 3 > UINT32_MAX)
            return malformed(desc, errmsg);
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
        switch (key & 7) {
        case 0:
            if (!dfs_wire_flat_varint(&p, end, &v))
                return malformed(desc, errmsg);
            break;
        case 1:
            if (end - p < 8)
                return malformed(desc, errmsg);
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                return malformed(desc, errmsg);
            p += 4;
            break;
        case 2: {
            if (!dfs_wire_flat_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return malformed(desc, errmsg);
            int rc = DFS_OK;
            if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING)
                rc = check_string(desc, f, p, (size_t)v, errmsg);
            else if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE)
                rc = walk(f->descriptor, p, p + v, depth + 1, errmsg);
            if (rc != DFS_OK)
                return rc;
            p += v;
            break;
        }
        default: /* groups (3, 4): protobuf-c refuses them too; 6 and 7 do not exist */
            return malformed(desc, errmsg);
        }
    }
    return DFS_OK;
}

int dfs_rpc_wire_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                               size_t len, char **errmsg)
{
    if (len == 0)
        return DFS_OK; /* an empty message: all defaults (and data may be NULL) */
    return walk(desc, data, data + len, 0, errmsg);
}
