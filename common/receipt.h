/* Put receipts: a storage node's signed word that it holds a fragment durably. */
#ifndef DFS_COMMON_RECEIPT_H
#define DFS_COMMON_RECEIPT_H

#include "common/ticket.h"

#include <stddef.h>
#include <stdint.h>

/*
 * A node that made a fragment durable (PutFragment) answers with a receipt:
 *
 *   HMAC-SHA256(node key, "dfs-receipt-v1" NUL fragment_id NUL node_id NUL size NUL checksum
 *               NUL file_id)
 *
 * size and checksum (the fragment checksum, dfs_crc32c_of_table of the block CRCs) in decimal
 * ASCII, file_id the fragment id's first 32 digits. The node key is the ticket key
 * (common/ticket.h): only that node and the metadata service, which derives every node's key from
 * its master key, can make one. The client hands the receipts to CommitFile, which records a
 * copy only with a receipt that checks: a commit cannot claim copies nobody stored, nor a size or
 * checksum other than the one stored.
 *
 * Pure computation: no I/O, no global state; thread-safe.
 */

#define DFS_RECEIPT_LEN 32

/* out = node_id's receipt for fragment_id of size bytes with checksum. DFS_EINVAL for a bad id. */
int dfs_receipt_make(const uint8_t node_key[DFS_TICKET_KEY_LEN], const char *fragment_id,
                     const char *node_id, uint64_t size, uint32_t checksum,
                     uint8_t out[DFS_RECEIPT_LEN], char **errmsg);

/*
 * Whether receipt[0..len) is node_id's receipt for exactly this fragment, size and checksum
 * (compared in constant time). Returns 0, or DFS_EPERM ("no receipt", "not a receipt of ...")
 * with a message that never holds the receipt.
 */
int dfs_receipt_check(const uint8_t node_key[DFS_TICKET_KEY_LEN], const uint8_t *receipt,
                      size_t len, const char *fragment_id, const char *node_id, uint64_t size,
                      uint32_t checksum, char **errmsg);

#endif /* DFS_COMMON_RECEIPT_H */
