/* PutFragment's messages, parsed where they lie in the received bytes (the storage data path). */
#ifndef DFS_SERVICES_STORAGE_PUTMSG_H
#define DFS_SERVICES_STORAGE_PUTMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A PutFragmentRequest as it lies in the received bytes (nothing copied):
 *   1 header  FragmentHeader, length-delimited   -> header/header_len (the submessage's bytes)
 *   2 data    bytes                              -> data/len, pointing into the buffer
 *   3 crc32c  repeated fixed32, packed or not    -> decoded into the caller's array
 * Unknown fields are skipped, as protobuf requires. As in protobuf, a repeated `data` keeps the
 * last value and CRCs accumulate; a repeated header is refused (no client sends one).
 */
struct dfs_put_msg {
    const uint8_t *header_field; /* where the header field starts (its tag) */
    const uint8_t *header;
    size_t header_len;
    bool has_header;
    const uint8_t *data;
    size_t len;
    size_t ncrcs;
};

/*
 * Parse one PutFragmentRequest from p[0..n) into *m (pointers into p: p must outlive m), its CRCs
 * into crcs[0..cap). A known field with the wrong wire type, a truncated field, a group, field
 * number 0, or more than cap CRCs is DFS_EINVAL with *errmsg; so is a header given twice. The
 * header's own bytes are not parsed here (dfs__v1__fragment_header__unpack them, then
 * services/validate/validate.h). Any bytes are safe to pass.
 */
int dfs_put_msg_parse(const uint8_t *p, size_t n, struct dfs_put_msg *m, uint32_t *crcs, size_t cap,
                      char **errmsg);

#endif /* DFS_SERVICES_STORAGE_PUTMSG_H */
