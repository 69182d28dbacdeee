/* Put receipts: HMAC-SHA256 over a canonical text form (see receipt.h for the format). */
#include "common/receipt.h"

#include "common/err.h"
#include "common/id.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

int dfs_receipt_make(const uint8_t node_key[DFS_TICKET_KEY_LEN], const char *fragment_id,
                     const char *node_id, uint64_t size, uint32_t checksum,
                     uint8_t out[DFS_RECEIPT_LEN], char **errmsg)
{
    if (!dfs_fragment_id_valid(fragment_id) || !dfs_id_valid(node_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment or node id for a receipt");
    char msg[192];
    int n = snprintf(msg, sizeof msg, "dfs-receipt-v1%c%s%c%s%c%" PRIu64 "%c%" PRIu32 "%c%.*s",
                     '\0', fragment_id, '\0', node_id, '\0', size, '\0', checksum, '\0', DFS_ID_HEX,
                     fragment_id);
    unsigned int len = 0;
    if (n < 0 || (size_t)n >= sizeof msg ||
        HMAC(EVP_sha256(), node_key, DFS_TICKET_KEY_LEN, (const unsigned char *)msg, (size_t)n, out,
             &len) == NULL ||
        len != DFS_RECEIPT_LEN)
        return dfs_seterr(errmsg, DFS_EINTERNAL, "HMAC-SHA256 failed");
    return DFS_OK;
}

int dfs_receipt_check(const uint8_t node_key[DFS_TICKET_KEY_LEN], const uint8_t *receipt,
                      size_t len, const char *fragment_id, const char *node_id, uint64_t size,
                      uint32_t checksum, char **errmsg)
{
    if (receipt == NULL || len == 0)
        return dfs_seterr(errmsg, DFS_EPERM, "no receipt from node %s", node_id);
    uint8_t want[DFS_RECEIPT_LEN];
    int rc = dfs_receipt_make(node_key, fragment_id, node_id, size, checksum, want, errmsg);
    if (rc != DFS_OK)
        return rc;
    bool same = len == DFS_RECEIPT_LEN && CRYPTO_memcmp(want, receipt, DFS_RECEIPT_LEN) == 0;
    OPENSSL_cleanse(want, sizeof want);
    if (!same)
        return dfs_seterr(errmsg, DFS_EPERM,
                          "node %s gave no receipt for fragment %s of %" PRIu64
                          " bytes with checksum %08x",
                          node_id, fragment_id, size, checksum);
    return DFS_OK;
}
