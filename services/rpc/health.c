/* grpc.health.v1.Health over a dfs_rpc_server: Check and Watch, one status per service name. */
#include "services/rpc/health.h"

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "grpc/health/v1/health.pb-c.h"
#include "services/rpc/loop.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The wire value of ServingStatus.SERVICE_UNKNOWN (Watch only). */
#define STATUS_SERVICE_UNKNOWN 3

struct entry {
    char *name;
    enum dfs_health_status status;
};

/* mu guards every field below it; the names only grow, so a lookup under mu is all a call needs. */
struct dfs_rpc_health {
    pthread_mutex_t mu;
    struct entry *entries;
    size_t n;
    bool shutdown;
};

const char *dfs_rpc_health_status_name(enum dfs_health_status status)
{
    switch (status) {
    case DFS_HEALTH_SERVING:
        return "SERVING";
    case DFS_HEALTH_NOT_SERVING:
        return "NOT_SERVING";
    default:
        return "UNKNOWN";
    }
}

/* Caller holds mu. */
static struct entry *find(dfs_rpc_health *h, const char *service)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->entries[i].name, service) == 0)
            return &h->entries[i];
    return NULL;
}

/* The status of a name as a wire value (SERVICE_UNKNOWN when never set), and the shutdown flag. */
static int lookup(dfs_rpc_health *h, const char *service, bool *shutdown)
{
    pthread_mutex_lock(&h->mu);
    const struct entry *e = find(h, service);
    int v = e != NULL ? (int)e->status : STATUS_SERVICE_UNKNOWN;
    *shutdown = h->shutdown;
    pthread_mutex_unlock(&h->mu);
    return v;
}

int dfs_rpc_health_create(dfs_rpc_health **out, char **errmsg)
{
    dfs_rpc_health *h = calloc(1, sizeof *h);
    if (h == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    pthread_mutex_init(&h->mu, NULL);
    *out = h;
    return DFS_OK;
}

void dfs_rpc_health_destroy(dfs_rpc_health *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->n; i++)
        free(h->entries[i].name);
    free(h->entries);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

int dfs_rpc_health_set(dfs_rpc_health *h, const char *service, enum dfs_health_status status,
                       char **errmsg)
{
    if (strlen(service) > DFS_RPC_HEALTH_NAME_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "health service name longer than %d bytes",
                          DFS_RPC_HEALTH_NAME_MAX);
    if (status != DFS_HEALTH_UNKNOWN && status != DFS_HEALTH_SERVING &&
        status != DFS_HEALTH_NOT_SERVING)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad health status %d", (int)status);
    pthread_mutex_lock(&h->mu);
    if (h->shutdown) {
        pthread_mutex_unlock(&h->mu);
        return DFS_OK;
    }
    struct entry *e = find(h, service);
    enum dfs_health_status old = DFS_HEALTH_UNKNOWN;
    bool added = e == NULL;
    if (e == NULL) {
        struct entry *v = realloc(h->entries, (h->n + 1) * sizeof *v);
        char *name = strdup(service);
        if (v != NULL)
            h->entries = v;
        if (v == NULL || name == NULL) {
            pthread_mutex_unlock(&h->mu);
            free(name);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        e = &h->entries[h->n++];
        e->name = name;
    } else {
        old = e->status;
    }
    e->status = status;
    pthread_mutex_unlock(&h->mu);
    if (added || old != status)
        dfs_log(DFS_LOG_INFO, "health service=%s status=%s", service,
                dfs_rpc_health_status_name(status));
    return DFS_OK;
}

enum dfs_health_status dfs_rpc_health_get(dfs_rpc_health *h, const char *service, bool *known)
{
    pthread_mutex_lock(&h->mu);
    const struct entry *e = find(h, service);
    enum dfs_health_status st = e != NULL ? e->status : DFS_HEALTH_UNKNOWN;
    pthread_mutex_unlock(&h->mu);
    if (known != NULL)
        *known = e != NULL;
    return st;
}

void dfs_rpc_health_shutdown(dfs_rpc_health *h)
{
    pthread_mutex_lock(&h->mu);
    bool was = h->shutdown;
    h->shutdown = true;
    for (size_t i = 0; i < h->n; i++)
        h->entries[i].status = DFS_HEALTH_NOT_SERVING;
    pthread_mutex_unlock(&h->mu);
    if (!was)
        dfs_log(DFS_LOG_INFO, "health status=NOT_SERVING reason=shutdown");
}

/* ---- Check ---- */

static void handle_check(dfs_rpc_call *call, void *ctx)
{
    dfs_rpc_health *h = ctx;
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)dfs_rpc_call_request(call);
    bool shutdown;
    int v = lookup(h, req->service, &shutdown);
    if (v == STATUS_SERVICE_UNKNOWN) {
        dfs_rpc_call_fail(call, DFS_ENOTFOUND, "unknown service \"%.*s\"", DFS_RPC_HEALTH_NAME_MAX,
                          req->service);
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)v;
    dfs_rpc_call_reply(call, &resp.base);
}

/* ---- Watch ---- */

/*
 * One Watch stream. Everything runs on the call's loop thread: the handler, the poll timer, the
 * send callback and the cancel callback, so no lock. The timer is disarmed before finish, and the
 * state is freed by the call (release) after its last callback.
 */
struct watch {
    dfs_rpc_timer timer; /* first: the timer callback finds the watch from it */
    dfs_rpc_health *h;
    dfs_rpc_call *call;
    char *service;
    int last_sent; /* wire value of the last status sent; -1 before the first */
    bool sending;
    bool finished;
};

static void watch_release(void *state)
{
    struct watch *w = state;
    free(w->service);
    free(w);
}

static void watch_end(struct watch *w, int code, const char *message)
{
    if (w->finished)
        return;
    w->finished = true;
    dfs_rpc_loop_timer_cancel(dfs_rpc_call_loop(w->call), &w->timer);
    dfs_rpc_call_finish(w->call, code, NULL, message);
}

static void watch_poll(struct watch *w);

static void watch_sent(dfs_rpc_call *call, void *arg, bool ok)
{
    struct watch *w = arg;
    (void)call;
    w->sending = false;
    if (w->finished)
        return;
    if (!ok) {
        watch_end(w, DFS_ECANCELED, "the watcher went away");
        return;
    }
    watch_poll(w);
}

/* Send the status if it differs from the last one sent; end the stream once shut down. */
static void watch_poll(struct watch *w)
{
    if (w->sending || w->finished)
        return;
    bool shutdown;
    int v = lookup(w->h, w->service, &shutdown);
    if (v != w->last_sent) {
        Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)v;
        int rc = dfs_rpc_call_send(w->call, &resp.base, watch_sent, w);
        if (rc != DFS_OK) {
            watch_end(w, rc, "cannot send the health status");
            return;
        }
        w->sending = true;
        w->last_sent = v;
        return;
    }
    if (shutdown)
        watch_end(w, DFS_EUNAVAIL, "the server is shutting down");
}

static void watch_tick(dfs_rpc_timer *timer)
{
    struct watch *w = (struct watch *)timer;
    if (w->finished)
        return;
    watch_poll(w);
    if (!w->finished)
        dfs_rpc_loop_timer_arm(dfs_rpc_call_loop(w->call), &w->timer,
                               dfs_clock_mono_ns() + DFS_RPC_HEALTH_WATCH_POLL_MS * 1000000LL);
}

static void watch_cancelled(dfs_rpc_call *call, void *arg)
{
    (void)call;
    watch_end(arg, DFS_ECANCELED, "cancelled");
}

static void handle_watch(dfs_rpc_call *call, void *ctx)
{
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)dfs_rpc_call_request(call);
    struct watch *w = calloc(1, sizeof *w);
    char *service = strdup(req->service);
    if (w == NULL || service == NULL) {
        free(w);
        free(service);
        dfs_rpc_call_fail(call, DFS_ENOMEM, "out of memory");
        return;
    }
    dfs_rpc_timer_init(&w->timer, watch_tick);
    w->h = ctx;
    w->call = call;
    w->service = service;
    w->last_sent = -1;
    dfs_rpc_call_set_state(call, w, watch_release);
    dfs_rpc_call_on_cancel(call, watch_cancelled, w);
    watch_poll(w);
    watch_tick(&w->timer);
}

int dfs_rpc_health_register(dfs_rpc_health *h, dfs_rpc_server *srv, char **errmsg)
{
    const struct dfs_rpc_method methods[] = {
        {"/grpc.health.v1.Health/Check", DFS_RPC_UNARY,
         &grpc__health__v1__health_check_request__descriptor, handle_check, h, 0},
        {"/grpc.health.v1.Health/Watch", DFS_RPC_SERVER_STREAMING,
         &grpc__health__v1__health_check_request__descriptor, handle_watch, h, 0},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int rc = dfs_rpc_server_add_method(srv, &methods[i], errmsg);
        if (rc != DFS_OK)
            return rc;
    }
    return DFS_OK;
}
