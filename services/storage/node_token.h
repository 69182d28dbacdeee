/* A storage node's own bearer token, kept in its data directory. */
#ifndef DFS_SERVICES_STORAGE_NODE_TOKEN_H
#define DFS_SERVICES_STORAGE_NODE_TOKEN_H

/*
 * DATA_DIR/node.token holds the node's own token ("dfs1.<id>.<secret>\n", mode 0600), made by the
 * node itself at its first start, before its first registration, and never rewritten. At that
 * first registration (an enrollment, presenting the deployment's enrollment token) the node
 * sends only the token's id and the SHA-256 of its secret (RegisterNodeRequest.node_token_id,
 * node_token_sha256); the catalog binds them to the node's id. From then on every call the node
 * makes to the metadata service presents this token, and the node's identity is the token's.
 *
 * Made by the node rather than handed out in the enrollment's answer, so that an answer that is
 * lost (the node dies, the connection breaks) cannot lock the node out: the token is durable
 * before the request goes, and the same request again is the same enrollment. A copy of the data
 * directory copies the token too (see RegisterNode on live registrations).
 */

/*
 * Load DATA_DIR/node.token, or make it (getrandom, written atomically with mode 0600 and
 * fsynced) when it does not exist. Call with the data directory locked (dfs_frag_store_open), so
 * no other process makes one at the same time. *out gets the token (malloc'd; caller frees,
 * preferably after explicit_bzero). Returns 0, or DFS_EPERM (a file open to every user),
 * DFS_EUNAUTH / DFS_EINVAL (unreadable, or not a dfs token: it is never replaced, since the
 * catalog knows the node by it), DFS_EIO with *errmsg.
 */
int dfs_node_token_load(const char *data_dir, char **out, char **errmsg);

#endif /* DFS_SERVICES_STORAGE_NODE_TOKEN_H */
