/* A storage node's own bearer token: DATA_DIR/node.token, made once. */
#include "services/storage/node_token.h"

#include "common/err.h"
#include "common/log.h"
#include "common/token.h"
#include "services/daemon/daemon.h"
#include "services/rpc/security.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int dfs_node_token_load(const char *data_dir, char **out, char **errmsg)
{
    size_t n = strlen(data_dir) + sizeof "/node.token";
    char *path = malloc(n);
    if (path == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    snprintf(path, n, "%s/node.token", data_dir);
    int rc = DFS_OK;
    if (access(path, F_OK) != 0 && errno == ENOENT) {
        char token[DFS_TOKEN_LEN + 2];
        rc = dfs_token_generate(token);
        if (rc != DFS_OK) {
            rc = dfs_seterr(errmsg, rc, "cannot make a random token for %s", path);
        } else {
            strcat(token, "\n");
            rc = dfs_daemon_write_file_mode(path, token, 0600, errmsg);
            explicit_bzero(token, sizeof token);
        }
        if (rc == DFS_OK)
            dfs_log(DFS_LOG_INFO, "made this node's own token file=%s", path);
    }
    char *token = NULL;
    if (rc == DFS_OK)
        rc = dfs_rpc_token_read_file(path, &token, errmsg);
    char id[DFS_TOKEN_ID_HEX + 1];
    uint8_t hash[DFS_TOKEN_HASH_LEN];
    if (rc == DFS_OK && dfs_token_parse(token, id, hash, NULL) != DFS_OK)
        rc = dfs_seterr(errmsg, DFS_EINVAL,
                        "%s does not hold a dfs token: the node is known by it, so it is never "
                        "replaced (restore it, or start the node afresh with an empty data "
                        "directory)",
                        path);
    explicit_bzero(hash, sizeof hash);
    if (rc != DFS_OK && token != NULL) {
        explicit_bzero(token, strlen(token));
        free(token);
        token = NULL;
    }
    free(path);
    if (rc == DFS_OK)
        *out = token;
    return rc;
}
