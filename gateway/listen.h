/* The HTTP listeners of the gateway (REST and S3): one way to bind, serve and quiesce them. */
#ifndef DFS_GATEWAY_LISTEN_H
#define DFS_GATEWAY_LISTEN_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* What differs between the gateway's listeners; everything else (a thread per connection, 60 s
   idle timeout, URIs kept escaped for the handler to decode, MHD's errors in our log) is shared. */
struct dfs_gw_listen_opts {
    const char *host, *port; /* split from the user's HOST:PORT (validated by the caller) */
    const char *listen;      /* that HOST:PORT as given, for messages */
    const char *what;        /* "serve", "serve S3": "cannot <what> on ADDR" */
    const char *log_prefix;  /* MHD's own error lines are logged as "<prefix>: ..." */
    unsigned max_connections;
    size_t connection_memory; /* MHD's buffer per connection: bounds what one request holds */
    MHD_AccessHandlerCallback handler;
    void *(*begin)(void *cls, const char *uri, struct MHD_Connection *c);
    MHD_RequestCompletedCallback end;
    void *cls; /* given to handler, begin and end */
};

/*
 * Resolve and bind host:port and start serving. Returns 0 with *out (MHD_stop_daemon) and the
 * bound address ("HOST:PORT", the real port when 0 was asked) in addr[cap]; DFS_EINVAL when the
 * host does not resolve, DFS_EUNAVAIL when the address cannot be bound, with *errmsg.
 */
int dfs_gw_listen_start(const struct dfs_gw_listen_opts *o, struct MHD_Daemon **out, char *addr,
                        size_t cap, char **errmsg);

/*
 * Stop accepting and wait up to grace_ms for the requests counted in *active (begun and not yet
 * completed) to finish. Returns how many are still running.
 */
unsigned dfs_gw_listen_quiesce(struct MHD_Daemon *d, atomic_uint *active, int64_t grace_ms);

#endif /* DFS_GATEWAY_LISTEN_H */
