/* The metrics endpoint: Prometheus text over HTTP (libmicrohttpd) on its own port. */
#include "services/daemon/metrics_http.h"

#include "common/addr.h"
#include "common/err.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct dfs_metrics_http {
    struct MHD_Daemon *daemon;
    dfs_metrics *metrics;
    dfs_rpc_health *health;
    int port;
    char address[300];
};

/* Queue a response. An owned body (malloc'd) is freed by MHD; otherwise it must be a literal. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int code, const char *type,
                             const char *body, size_t len, bool owned)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, (void *)body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        if (owned)
            free((void *)body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
    dfs_metrics_http *h = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;
    static const char text[] = "text/plain; charset=utf-8";
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        static const char msg[] = "only GET\n";
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, msg, sizeof msg - 1, false);
    }
    if (strcmp(url, "/metrics") == 0) {
        char *body = NULL, *err = NULL;
        size_t len = 0;
        if (dfs_metrics_render(h->metrics, &body, &len, &err) != DFS_OK) {
            dfs_log(DFS_LOG_WARN, "cannot render metrics err=%s", err != NULL ? err : "");
            free(err);
            static const char msg[] = "cannot render the metrics\n";
            return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, text, msg, sizeof msg - 1, false);
        }
        return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len,
                     true);
    }
    if (strcmp(url, "/healthz") == 0) {
        if (h->health == NULL) {
            static const char ok[] = "OK\n";
            return reply(conn, MHD_HTTP_OK, text, ok, sizeof ok - 1, false);
        }
        /* ?service=NAME asks what grpc.health.v1 Check would say for NAME: HTTP probes for
           clusters whose gRPC port speaks TLS, which Kubernetes' native gRPC probes cannot. */
        const char *service = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "service");
        bool known = true;
        enum dfs_health_status st =
            dfs_rpc_health_get(h->health, service != NULL ? service : "", &known);
        if (service == NULL)
            known = true; /* the overall status: UNKNOWN until set, as gRPC health says */
        char *body = NULL;
        int n = asprintf(&body, "%s\n", known ? dfs_rpc_health_status_name(st) : "SERVICE_UNKNOWN");
        if (n < 0)
            return MHD_NO;
        return reply(conn,
                     !known                     ? MHD_HTTP_NOT_FOUND
                     : st == DFS_HEALTH_SERVING ? MHD_HTTP_OK
                                                : MHD_HTTP_SERVICE_UNAVAILABLE,
                     text, body, (size_t)n, true);
    }
    if (strcmp(url, "/") == 0) {
        static const char idx[] = "dfs: GET /metrics (Prometheus text format), GET /healthz\n";
        return reply(conn, MHD_HTTP_OK, text, idx, sizeof idx - 1, false);
    }
    static const char nf[] = "not found: try /metrics or /healthz\n";
    return reply(conn, MHD_HTTP_NOT_FOUND, text, nf, sizeof nf - 1, false);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    dfs_log(DFS_LOG_WARN, "metrics http: %s", buf);
}

/* Split "HOST:PORT" / "[V6]:PORT" / ":PORT" into host (may be "") and port. */
static int split(const char *listen, char *host, size_t hcap, char *port, size_t pcap,
                 char **errmsg)
{
    enum dfs_addr_fault why = DFS_ADDR_BAD_PORT;
    if (dfs_addr_split(listen, host, hcap, port, pcap, &why) == DFS_OK)
        return DFS_OK;
    switch (why) {
    case DFS_ADDR_NO_PORT:
        return dfs_seterr(errmsg, DFS_EINVAL, "metrics address must be HOST:PORT, not '%s'",
                          listen);
    case DFS_ADDR_UNBRACKETED:
        return dfs_seterr(errmsg, DFS_EINVAL, "an IPv6 metrics address needs brackets: '%s'",
                          listen);
    case DFS_ADDR_TOO_LONG:
        return dfs_seterr(errmsg, DFS_EINVAL, "metrics address too long: '%s'", listen);
    case DFS_ADDR_BAD_PORT:
        break;
    }
    return dfs_seterr(errmsg, DFS_EINVAL, "bad metrics port in '%s'", listen);
}

int dfs_metrics_http_start(const struct dfs_metrics_http_config *cfg, dfs_metrics_http **out,
                           char **errmsg)
{
    char host[256], port[8];
    int rc =
        split(cfg->listen != NULL ? cfg->listen : "", host, sizeof host, port, sizeof port, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int g = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &ai);
    if (g != 0 || ai == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "cannot resolve metrics address '%s': %s",
                          cfg->listen, gai_strerror(g));
    /* ":PORT" means every interface: prefer the IPv6 wildcard, which takes IPv4 too. */
    struct addrinfo *pick = ai;
    for (struct addrinfo *p = ai; host[0] == '\0' && p != NULL; p = p->ai_next)
        if (p->ai_family == AF_INET6) {
            pick = p;
            break;
        }
    dfs_metrics_http *h = calloc(1, sizeof *h);
    if (h == NULL) {
        freeaddrinfo(ai);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    h->metrics = cfg->metrics;
    h->health = cfg->health;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (pick->ai_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)pick->ai_addr;
        flags |= IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    }
    /* MHD's default SO_REUSEADDR lets a restart bind at once; no SO_REUSEPORT (the option
       LISTENING_ADDRESS_REUSE would add it), so a port in use is refused, not silently shared. */
    h->daemon = MHD_start_daemon(flags, (uint16_t)atoi(port), NULL, NULL, handle, h,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
                                 pick->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (h->daemon == NULL) {
        free(h);
        return dfs_seterr(errmsg, DFS_EUNAVAIL,
                          "cannot serve metrics on %s (address in use, or not an address of this "
                          "host)",
                          cfg->listen);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info != NULL ? info->port : atoi(port);
    dfs_addr_with_port(cfg->listen, h->port, h->address, sizeof h->address);
    *out = h;
    return DFS_OK;
}

int dfs_metrics_http_port(const dfs_metrics_http *h)
{
    return h->port;
}

const char *dfs_metrics_http_address(const dfs_metrics_http *h)
{
    return h->address;
}

void dfs_metrics_http_stop(dfs_metrics_http *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
