/* libraft's TCP transport with host names resolved at each connect: see raft_transport.h. */
#include "services/metadata/raft_transport.h"

#include "common/addr.h"
#include "common/err.h"

#include <raft.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

/* A connect waiting for its name to resolve. Owned by the transport's list until its getaddrinfo
 * callback ran (which frees it), so close can cancel it. */
struct resolve {
    uv_getaddrinfo_t gai;
    struct rt *rt;
    struct raft_uv_connect *req;
    raft_id id;
    raft_uv_connect_cb cb;
    struct resolve *prev, *next;
};

/* The state behind a wrapping transport (t->impl). */
struct rt {
    struct raft_uv_transport inner; /* libraft's TCP transport, which does the real work */
    struct raft_uv_transport *outer;
    struct uv_loop_s *loop;
    struct resolve *pending; /* connects resolving */
    bool closing, inner_closed;
    raft_uv_transport_close_cb close_cb;
};

/* Split "host:port" (common/addr); a host is required (IPv6 literals are not supported by the TCP
   transport either). */
static bool split(const char *address, char *host, size_t hcap, char *port, size_t pcap)
{
    return dfs_addr_split(address, host, hcap, port, pcap, NULL) == DFS_OK && host[0] != '\0';
}

static bool ipv4_literal(const char *host)
{
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1;
}

static int rt_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct rt *rt = t->impl;
    return rt->inner.init(&rt->inner, id, address);
}

static int rt_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct rt *rt = t->impl;
    /* libraft finds its state from the transport its callbacks are given (transport->data): the
       TCP transport passes itself, so it must carry what libraft put into ours. */
    rt->inner.data = t->data;
    int rv = rt->inner.listen(&rt->inner, cb);
    if (rv != 0)
        snprintf(t->errmsg, sizeof t->errmsg, "%s", rt->inner.errmsg);
    return rv;
}

static void unlink_resolve(struct resolve *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        r->rt->pending = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
}

static void maybe_closed(struct rt *rt)
{
    if (rt->closing && rt->inner_closed && rt->pending == NULL && rt->close_cb != NULL) {
        raft_uv_transport_close_cb cb = rt->close_cb;
        rt->close_cb = NULL;
        cb(rt->outer);
    }
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    struct resolve *r = gai->data;
    struct rt *rt = r->rt;
    unlink_resolve(r);
    char dial[INET_ADDRSTRLEN + 8];
    int rv = RAFT_NOCONNECTION;
    if (rt->closing || status == UV_ECANCELED) {
        rv = RAFT_CANCELED;
    } else if (status == 0 && res != NULL) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)res->ai_addr;
        char ip[INET_ADDRSTRLEN];
        if (inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip) != NULL) {
            snprintf(dial, sizeof dial, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
            rv = 0;
        }
    }
    uv_freeaddrinfo(res);
    if (rv == 0) {
        rv = rt->inner.connect(&rt->inner, r->req, r->id, dial, r->cb);
        if (rv == 0) {
            free(r);
            return; /* the TCP transport calls r->cb */
        }
    }
    r->cb(r->req, NULL, rv);
    free(r);
    maybe_closed(rt);
}

static int rt_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                      const char *member_address, raft_uv_connect_cb cb)
{
    struct rt *rt = t->impl;
    /* A member added by dfs metadata add is "RAFT=GRPC" in the configuration (the gRPC address
       rides along, replicated with the membership): dial the Raft part. */
    char address[256];
    size_t alen = strcspn(member_address, "=");
    if (alen >= sizeof address) {
        snprintf(t->errmsg, sizeof t->errmsg, "address too long");
        return RAFT_NOCONNECTION;
    }
    memcpy(address, member_address, alen);
    address[alen] = '\0';
    char host[256], port[16];
    if (!split(address, host, sizeof host, port, sizeof port)) {
        snprintf(t->errmsg, sizeof t->errmsg, "bad address '%.200s' (want host:port)", address);
        return RAFT_NOCONNECTION;
    }
    if (ipv4_literal(host)) {
        int rv = rt->inner.connect(&rt->inner, req, id, address, cb);
        if (rv != 0)
            snprintf(t->errmsg, sizeof t->errmsg, "%s", rt->inner.errmsg);
        return rv;
    }
    struct resolve *r = calloc(1, sizeof *r);
    if (r == NULL)
        return RAFT_NOMEM;
    *r = (struct resolve){.rt = rt, .req = req, .id = id, .cb = cb, .next = rt->pending};
    r->gai.data = r;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET; /* what the TCP transport can dial */
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (uv_getaddrinfo(rt->loop, &r->gai, on_resolved, host, port, &hints) != 0) {
        free(r);
        snprintf(t->errmsg, sizeof t->errmsg, "cannot resolve '%.200s'", host);
        return RAFT_NOCONNECTION;
    }
    if (rt->pending != NULL)
        rt->pending->prev = r;
    rt->pending = r;
    return 0;
}

static void on_inner_closed(struct raft_uv_transport *inner)
{
    struct rt *rt = (struct rt *)((char *)inner - offsetof(struct rt, inner));
    rt->inner_closed = true;
    maybe_closed(rt);
}

static void rt_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct rt *rt = t->impl;
    rt->closing = true;
    rt->close_cb = cb;
    /* A lookup already running on the thread pool cannot be cancelled: its callback sees
       `closing` and fails the connect as cancelled. */
    for (struct resolve *r = rt->pending; r != NULL; r = r->next)
        uv_cancel((uv_req_t *)&r->gai);
    rt->inner.close(&rt->inner, on_inner_closed);
}

int dfs_raft_transport_init(struct raft_uv_transport *t, struct uv_loop_s *loop,
                            const char *own_address, const char *bind_address)
{
    char host[256], port[16];
    if (!split(own_address, host, sizeof host, port, sizeof port))
        return RAFT_INVALID;
    struct rt *rt = calloc(1, sizeof *rt);
    if (rt == NULL)
        return RAFT_NOMEM;
    int rv = raft_uv_tcp_init(&rt->inner, loop);
    if (rv != 0) {
        free(rt);
        return rv;
    }
    if (bind_address != NULL || !ipv4_literal(host)) {
        char bind[64];
        if (bind_address != NULL)
            snprintf(bind, sizeof bind, "%.60s", bind_address);
        else
            snprintf(bind, sizeof bind, "0.0.0.0:%s", port);
        rv = raft_uv_tcp_set_bind_address(&rt->inner, bind);
        if (rv != 0) {
            raft_uv_tcp_close(&rt->inner);
            free(rt);
            return rv;
        }
    }
    rt->outer = t;
    rt->loop = loop;
    memset(t, 0, sizeof *t);
    t->impl = rt;
    t->init = rt_init;
    t->listen = rt_listen;
    t->connect = rt_connect;
    t->close = rt_close;
    return 0;
}

void dfs_raft_transport_close(struct raft_uv_transport *t)
{
    struct rt *rt = t->impl;
    if (rt == NULL)
        return;
    raft_uv_tcp_close(&rt->inner);
    free(rt);
    t->impl = NULL;
}
