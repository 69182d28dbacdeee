/* How a dfs process secures its gRPC links: TLS material, the plaintext rule, bearer tokens. */
#ifndef DFS_SERVICES_RPC_SECURITY_H
#define DFS_SERVICES_RPC_SECURITY_H

#include <stdbool.h>
#include <stddef.h>

/*
 * TLS material read once from PEM files and shared (read-only) by every channel and server of a
 * process. Thread-safe once created.
 */
typedef struct dfs_rpc_tls dfs_rpc_tls;

struct dfs_rpc_tls_config {
    /* Trust roots the peer's certificate must chain to. Clients: NULL means the system's roots.
       Servers: the roots client certificates are checked against (needed with `mutual`). */
    const char *ca_file;
    /* This process's certificate chain and private key. Servers must have both; clients give
       them for mutual TLS (a server with `mutual` refuses clients without one). */
    const char *cert_file;
    const char *key_file;
    /* Servers: require every client to present a certificate that chains to ca_file. */
    bool mutual;
    /* Clients: the name the server's certificate must carry instead of the target's host (for
       addresses that are IPs not in the certificate); NULL: the host part of the target. */
    const char *server_name;
};

/*
 * Read the files named by cfg (the struct and its strings are only borrowed during the call).
 * Returns DFS_EINVAL with a message naming the file for a missing, unreadable, empty or non-PEM
 * file, or for an inconsistent set (a cert without its key, mutual without a CA).
 */
int dfs_rpc_tls_create(const struct dfs_rpc_tls_config *cfg, dfs_rpc_tls **out, char **errmsg);

/*
 * Like dfs_rpc_tls_create, but *out = NULL (and DFS_OK) when cfg names no file at all: the
 * process then speaks plaintext. What daemons and the CLI do with their --tls-* flags.
 */
int dfs_rpc_tls_create_optional(const struct dfs_rpc_tls_config *cfg, dfs_rpc_tls **out,
                                char **errmsg);

/* Accepts NULL. Every channel and server made with it must be gone. */
void dfs_rpc_tls_destroy(dfs_rpc_tls *tls);

/* Whether the TLS material has a certificate and key (what a server needs). */
bool dfs_rpc_tls_has_cert(const dfs_rpc_tls *tls);

/*
 * How one side of a link is secured; a plain struct the caller keeps (every pointer borrowed, and
 * must outlive the channels and servers that use it).
 *
 * Plaintext (tls == NULL) is allowed only where nobody else can listen in: loopback addresses
 * (127.0.0.0/8, ::1, localhost) and unix sockets, unless `insecure` says the operator asked for it
 * everywhere.
 */
struct dfs_rpc_link_security {
    const dfs_rpc_tls *tls; /* NULL: plaintext */
    bool insecure;          /* plaintext allowed to and on non-loopback addresses */
};

/*
 * Whether a gRPC address ("host:port", "[v6]:port", "ipv4:...", "unix:...") names this machine
 * through loopback only.
 */
bool dfs_rpc_addr_is_loopback(const char *addr);

/*
 * DFS_OK when plaintext may be used for addr under sec (TLS is always fine); else DFS_EPERM with
 * a one-line message saying what to give (`role` is "connect to" or "listen on").
 */
int dfs_rpc_plaintext_check(const struct dfs_rpc_link_security *sec, const char *addr,
                            const char *role, char **errmsg);

/* ---- bearer tokens ---- */

/* The request metadata key carrying "Bearer <token>". */
#define DFS_RPC_AUTH_KEY "authorization"

/* The longest token accepted anywhere (dfs tokens are 57 bytes; room for future formats). */
#define DFS_RPC_TOKEN_MAX 255

/*
 * Read a token from a file: its first line, surrounding whitespace removed. A regular file must
 * give no access to others (group access is allowed, for Kubernetes Secret volumes), so a token
 * left world-readable is refused with a message saying how to fix it. *out is malloc'd; caller frees.
 */
int dfs_rpc_token_read_file(const char *path, char **out, char **errmsg);

/* Whether s is a well-formed token: 1..DFS_RPC_TOKEN_MAX printable ASCII bytes, no spaces. */
bool dfs_rpc_token_valid(const char *s);

#endif /* DFS_SERVICES_RPC_SECURITY_H */
