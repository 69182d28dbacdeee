/* PutFragment's messages, parsed where they lie in the received bytes (the storage data path). */
#ifndef DFS_SERVICES_STORAGE_PUTMSG_H
#define DFS_SERVICES_STORAGE_PUTMSG_H

#include <grpc/byte_buffer.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

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

/* The most pieces the data of one message may lie in for dfs_put_msg_parse_slices. */
#define DFS_PUT_MSG_MAX_IOV 512

/* A PutFragmentRequest without a header, as it lies in a received message's slices. */
struct dfs_put_msg_iov {
    struct iovec iov[DFS_PUT_MSG_MAX_IOV]; /* the data field, pointing into the slices */
    size_t niov;
    size_t len;
    size_t ncrcs;
};

/*
 * Parse a message that arrived as a chain of slices (most data messages: one per HTTP/2 frame)
 * where it lies, the data as iovecs into bb's slices (bb must outlive m), its CRCs into
 * crcs[0..cap), with the rules of dfs_put_msg_parse. Returns DFS_OK with *in_place true when it
 * parsed; *in_place false (and DFS_OK) when this path does not apply and the caller must flatten
 * the message and use dfs_put_msg_parse: bb is compressed or not raw, it carries a header (the
 * first message, which is rewritten for a chain), or its data lie in more than
 * DFS_PUT_MSG_MAX_IOV pieces. A malformed message is DFS_EINVAL with *errmsg, as there.
 */
int dfs_put_msg_parse_slices(grpc_byte_buffer *bb, struct dfs_put_msg_iov *m, uint32_t *crcs,
                             size_t cap, bool *in_place, char **errmsg);

#endif /* DFS_SERVICES_STORAGE_PUTMSG_H */
