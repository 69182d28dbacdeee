/* host:port addresses as dfs writes them: "HOST:PORT", "[V6]:PORT", and ":PORT" to listen on all. */
#ifndef DFS_COMMON_ADDR_H
#define DFS_COMMON_ADDR_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The port is what follows the last ':'; the host is what precedes it, an IPv6 literal in
 * brackets. No name is resolved and no socket is touched: these are checks of the text.
 */

/*
 * Whether s names a peer as dfs exchanges them between nodes: "host:port", 1 to max_len bytes,
 * printable ASCII without spaces, a non-empty host and a port 1-65535 after the last ':'.
 */
bool dfs_addr_valid(const char *s, size_t max_len);

/* Why dfs_addr_split refused an address (callers word the message for their own flag). */
enum dfs_addr_fault {
    DFS_ADDR_NO_PORT = 1, /* no ':', or nothing after the last one */
    DFS_ADDR_UNBRACKETED, /* a ':' in the host outside brackets (an IPv6 literal needs them) */
    DFS_ADDR_TOO_LONG,    /* the host or the port does not fit the caller's buffer */
    DFS_ADDR_BAD_PORT,    /* the port is not decimal digits from 0 to 65535 */
};

/*
 * Split a listen address "HOST:PORT", "[V6]:PORT" or ":PORT" into host (brackets removed; "" for
 * ":PORT") and port (its digits; "0" is a port, to be picked by the system), both
 * NUL-terminated in caller buffers of hcap and pcap bytes. Returns 0, or DFS_EINVAL with the
 * reason in *why (may be NULL); the checks run in the order of enum dfs_addr_fault, and on
 * failure host and port hold nothing useful.
 */
int dfs_addr_split(const char *s, char *host, size_t hcap, char *port, size_t pcap,
                   enum dfs_addr_fault *why);

/*
 * The host of "HOST", "HOST:PORT", "[V6]" or "[V6]:PORT" (also after a gRPC scheme was taken
 * off), brackets removed, into host[0..cap). Returns 0, or DFS_EINVAL when a '[' is not closed,
 * the host is empty, or it does not fit in cap - 1 bytes.
 */
int dfs_addr_host(const char *s, char *host, size_t cap);

/*
 * The bytes of s before its last ':' (the host as written, brackets kept), or -1 when s has no
 * ':'.
 */
long dfs_addr_host_len(const char *s);

/*
 * s's host as written (brackets kept) with `port` after it ("[::1]:0" and 4242 give
 * "[::1]:4242"), into out[0..cap) as snprintf writes it (truncated when long). Returns 0,
 * DFS_EINVAL when s has no ':' (out is then ""), or DFS_ENOSPC when the result was truncated.
 */
int dfs_addr_with_port(const char *s, int port, char *out, size_t cap);

/*
 * Split a list of addresses "A[,B...]" (what --metadata and DFS_METADATA take: "a:1,b:2,c:3") into
 * its items, blanks around each taken off. Items are not otherwise checked (a gRPC target such as
 * "dns:///h:1" or "[::1]:7000" passes as written; a comma never occurs inside one). On success
 * *items is a NULL-terminated array of *n >= 1 strings, freed with dfs_addr_list_free. Returns 0,
 * DFS_EINVAL when s is empty or an item is empty ("a:1,,b:2", "a:1,"), with the reason in
 * *errmsg, or DFS_ENOMEM; on failure *items is untouched.
 */
int dfs_addr_list_split(const char *s, char ***items, size_t *n, char **errmsg);

/* Frees what dfs_addr_list_split returned. Accepts NULL. */
void dfs_addr_list_free(char **items);

#endif /* DFS_COMMON_ADDR_H */
