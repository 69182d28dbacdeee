/* Access classes: what a token's role may do, how a presented token is checked, enrollment. */
#ifndef DFS_METADATA_ACCESS_H
#define DFS_METADATA_ACCESS_H

#include "common/token.h"
#include "metadata/catalog.h"

#include <stdbool.h>
#include <stdint.h>

/*
 * What a method needs (the metadata service's method table) and what a role grants: a call runs
 * when its token's role grants any bit the method asks for.
 */
enum dfs_access {
    DFS_ACCESS_READ = 1u << 0,   /* files and cluster state, read */
    DFS_ACCESS_WRITE = 1u << 1,  /* files, write */
    DFS_ACCESS_ADMIN = 1u << 2,  /* nodes and tokens */
    DFS_ACCESS_NODE = 1u << 3,   /* what a storage node calls about itself (a node token) */
    DFS_ACCESS_ENROLL = 1u << 4, /* registering a node the catalog has never seen */
    DFS_ACCESS_S3KEYS = 1u << 5, /* S3 signing keys (GetSigningKey): the S3 gateway */
    DFS_ACCESS_ANY = DFS_ACCESS_READ | DFS_ACCESS_WRITE | DFS_ACCESS_ADMIN | DFS_ACCESS_NODE |
                     DFS_ACCESS_ENROLL | DFS_ACCESS_S3KEYS,
};

/*
 * The access bits of a role: admin reads, writes, administers and enrolls, but never speaks as a
 * node (a node's calls need its own token); read_write reads and writes; read_only reads; node
 * is a node; bootstrap enrolls. 0 for anything else.
 */
unsigned dfs_access_of_role(enum dfs_token_role role);

/*
 * Check a presented token (its text, borrowed; the caller wipes it) against the catalog, in this
 * order: well-formed, known, its secret's hash matching (constant time), not revoked, not
 * expired at now_ms. On success *out gets its record, and a use is written back (last_used_ms)
 * when the recorded one is a minute old or older. Errors: DFS_EUNAUTH (malformed, unknown or a
 * wrong secret: "unknown token <id>", revoked, expired), DFS_EUNAVAIL (the catalog failed), with
 * *errmsg; the message never holds the secret.
 */
int dfs_access_check(dfs_catalog *cat, const char *token, int64_t now_ms, struct dfs_token_rec *out,
                     char **errmsg);

/*
 * Whether token t may call `method` (a name for the message), which needs `access`: DFS_OK, or
 * DFS_EPERM "token <id> (<name>, role <role>) may not call <method>".
 */
int dfs_access_allow(const struct dfs_token_rec *t, unsigned access, const char *method,
                     char **errmsg);

/*
 * Whether t speaks for a storage node: a node token bound to a valid node id (t->node_id is then
 * the caller's identity, never a request's). DFS_OK or DFS_EPERM.
 */
int dfs_access_node(const struct dfs_token_rec *t, char **errmsg);

/*
 * Make a token with this role (admin, read_write, read_only or bootstrap: node tokens are made
 * at enrollment), name (1..DFS_TOKEN_NAME_MAX bytes) and lifetime (0: forever, at most 100
 * years), created at now_ms, and record it: token (caller storage) gets its text, the only copy
 * of the secret (wiped on failure); *info (may be NULL) its record; logged. Errors: DFS_EINVAL
 * (role, name, lifetime), DFS_EIO (no randomness), the catalog's.
 */
int dfs_access_make_token(dfs_catalog *cat, enum dfs_token_role role, const char *name,
                          int64_t ttl_ms, int64_t now_ms, char token[DFS_TOKEN_LEN + 1],
                          struct dfs_token_rec *info, char **errmsg);

/* What an enrolling node sends about itself (RegisterNodeRequest). Borrowed. */
struct dfs_access_enrollment {
    const char *node_id;
    const char *node_token_id; /* "" when none */
    const uint8_t *node_token_sha256;
    const char *address;
    const char *zone;
    struct dfs_node_usage usage;
};

/*
 * Enrollment with token `by` (an enrollment token): register node e->node_id, never seen before,
 * with the node token e names, bound to it, and registration `registration` (the caller's fresh
 * value), at now_ms: *enrolled = true. The same node token again for a node enrolled already is
 * the same enrollment (its answer was lost): DFS_OK with *enrolled = false, and the caller
 * registers the node as itself (dfs_catalog_node_register). Anything else is DFS_EPERM: no node
 * token named (logged nowhere), or a known node with another token (logged with `peer`, a
 * description of the caller for the log). Other errors: the catalog's.
 */
int dfs_access_enroll(dfs_catalog *cat, const struct dfs_token_rec *by,
                      const struct dfs_access_enrollment *e, uint64_t registration, int64_t now_ms,
                      const char *peer, bool *enrolled, char **errmsg);

#endif /* DFS_METADATA_ACCESS_H */
