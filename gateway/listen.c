#include "gateway/listen.h"

#include "common/addr.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"

#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Leave percent-decoding to the handlers: they refuse bad escapes and %00, and an S3 key may
   hold "%2F". */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    const char *prefix = cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    dfs_log(DFS_LOG_WARN, "%s: %s", prefix, line);
}

int dfs_gw_listen_start(const struct dfs_gw_listen_opts *o, struct MHD_Daemon **out, char *addr,
                        size_t cap, char **errmsg)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(o->host[0] != '\0' ? o->host : NULL, o->port, &hints, &ai);
    if (gai != 0 || ai == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "cannot resolve '%s': %s", o->listen,
                          gai_strerror(gai));
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                         MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ai->ai_addr;
        flags |= IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    }
    unsigned conns = o->max_connections > 0 ? o->max_connections : 256;
    /* Idle connections close after 60 s; a transfer in progress is not idle. */
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)atoi(o->port), NULL, NULL, o->handler, o->cls, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, (void *)o->log_prefix, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_CONNECTION_LIMIT, conns, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, o->connection_memory, MHD_OPTION_URI_LOG_CALLBACK,
        o->begin, o->cls, MHD_OPTION_NOTIFY_COMPLETED, o->end, o->cls, MHD_OPTION_UNESCAPE_CALLBACK,
        keep_escaped, NULL, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (d == NULL)
        return dfs_seterr(errmsg, DFS_EUNAVAIL,
                          "cannot %s on %s (address in use, or not an address of this host)",
                          o->what, o->listen);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int bound = info != NULL ? info->port : atoi(o->port);
    dfs_addr_with_port(o->listen, bound, addr, cap);
    *out = d;
    return DFS_OK;
}

unsigned dfs_gw_listen_quiesce(struct MHD_Daemon *d, atomic_uint *active, int64_t grace_ms)
{
    MHD_socket fd = MHD_quiesce_daemon(d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    int64_t t0 = dfs_clock_mono_ns();
    for (;;) {
        unsigned n = atomic_load(active);
        if (n == 0 || (dfs_clock_mono_ns() - t0) / 1000000 >= grace_ms)
            return n;
        struct timespec pause = {0, 20 * 1000000};
        nanosleep(&pause, NULL);
    }
}
