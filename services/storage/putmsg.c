/* PutFragment's messages, parsed in place. */
#include "services/storage/putmsg.h"

#include "common/err.h"
#include "services/rpc/wire.h"

#include <string.h>

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int dfs_put_msg_parse(const uint8_t *p, size_t n, struct dfs_put_msg *m, uint32_t *crcs, size_t cap,
                      char **errmsg)
{
    memset(m, 0, sizeof *m);
    if (n == 0)
        return DFS_OK; /* an empty message (p may be NULL) */
    const uint8_t *end = p + n;
    while (p < end) {
        uint64_t key, v;
        const uint8_t *field_start = p;
        if (!dfs_wire_flat_varint(&p, end, &key) || key >> 3 == 0 || key >> 3 > UINT32_MAX)
            goto malformed;
        uint64_t field = key >> 3;
        bool known = field >= 1 && field <= 3;
        switch (key & 7) {
        case 0: /* varint */
            if (known || !dfs_wire_flat_varint(&p, end, &v))
                goto malformed;
            break;
        case 1: /* 64-bit */
            if (known || end - p < 8)
                goto malformed;
            p += 8;
            break;
        case 5: /* 32-bit: an unpacked crc32c element */
            if ((known && field != 3) || end - p < 4)
                goto malformed;
            if (field == 3) {
                if (m->ncrcs == cap)
                    goto too_many;
                crcs[m->ncrcs++] = get_le32(p);
            }
            p += 4;
            break;
        case 2: /* length-delimited */
            if (!dfs_wire_flat_varint(&p, end, &v) || v > (uint64_t)(end - p))
                goto malformed;
            if (field == 1) {
                if (m->has_header)
                    return dfs_seterr(errmsg, DFS_EINVAL,
                                      "PutFragment: a message carries the header twice");
                m->has_header = true;
                m->header_field = field_start;
                m->header = p;
                m->header_len = (size_t)v;
            } else if (field == 2) {
                m->data = p;
                m->len = (size_t)v;
            } else if (field == 3) {
                if (v % 4 != 0)
                    goto malformed;
                if (v / 4 > cap - m->ncrcs)
                    goto too_many;
                for (size_t i = 0; i < v / 4; i++)
                    crcs[m->ncrcs++] = get_le32(p + 4 * i);
            }
            p += v;
            break;
        default: /* groups (3, 4) are not in this message; 6 and 7 do not exist */
            goto malformed;
        }
    }
    return DFS_OK;
malformed:
    return dfs_seterr(errmsg, DFS_EINVAL,
                      "PutFragment: the message does not parse as dfs.v1.PutFragmentRequest");
too_many:
    return dfs_seterr(errmsg, DFS_EINVAL, "PutFragment: a message carries more than %u crcs",
                      (unsigned)cap);
}

int dfs_put_msg_parse_slices(grpc_byte_buffer *bb, struct dfs_put_msg_iov *m, uint32_t *crcs,
                             size_t cap, bool *in_place, char **errmsg)
{
    *in_place = false;
    m->niov = 0;
    m->len = 0;
    m->ncrcs = 0;
    dfs_wire_reader r;
    if (!dfs_wire_init(&r, bb))
        return DFS_OK;
    while (!dfs_wire_eof(&r)) {
        uint32_t field, wt;
        uint64_t v;
        if (!dfs_wire_tag(&r, &field, &wt))
            goto malformed;
        bool known = field >= 1 && field <= 3;
        if (field == 1)
            return DFS_OK; /* a header (or a malformed one): the flat parser says which */
        switch (wt) {
        case 0:
        case 1:
            if (known || !dfs_wire_skip(&r, wt))
                goto malformed;
            break;
        case 5:
            if (known && field != 3)
                goto malformed;
            if (field == 3) {
                if (m->ncrcs == cap)
                    goto too_many;
                if (!dfs_wire_fixed32(&r, &crcs[m->ncrcs++]))
                    goto malformed;
            } else if (!dfs_wire_skip(&r, wt)) {
                goto malformed;
            }
            break;
        case 2:
            if (field == 2) {
                if (!dfs_wire_varint(&r, &v) || v > r.remaining)
                    goto malformed;
                if (!dfs_wire_iov(&r, (size_t)v, m->iov, DFS_PUT_MSG_MAX_IOV, &m->niov))
                    return DFS_OK; /* too many pieces (the length was checked above) */
                m->len = (size_t)v;
            } else if (field == 3) {
                if (!dfs_wire_varint(&r, &v) || v > r.remaining || v % 4 != 0)
                    goto malformed;
                if (v / 4 > cap - m->ncrcs)
                    goto too_many;
                for (uint64_t i = 0; i < v / 4; i++)
                    if (!dfs_wire_fixed32(&r, &crcs[m->ncrcs++]))
                        goto malformed;
            } else if (!dfs_wire_skip(&r, wt)) {
                goto malformed;
            }
            break;
        default: /* groups (3, 4) are not in this message; 6 and 7 do not exist */
            goto malformed;
        }
    }
    *in_place = true;
    return DFS_OK;
malformed:
    return dfs_seterr(errmsg, DFS_EINVAL,
                      "PutFragment: the message does not parse as dfs.v1.PutFragmentRequest");
too_many:
    return dfs_seterr(errmsg, DFS_EINVAL, "PutFragment: a message carries more than %u crcs",
                      (unsigned)cap);
}
