/* load_gen rpc-ceiling: bare unary round trips through services/rpc. */
#include "benchmarks/rpc_ceiling.h"

#include "common/clock.h"
#include "common/err.h"
#include "dfs/v1/metadata.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "services/rpc/client.h"
#include "services/rpc/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct dfs_rpc_ceiling {
    dfs_rpc_server *srv; /* NULL against a target */
    char target[128];
    const char *method;
    Dfs__V1__StatRequest sreq;
    Grpc__Health__V1__HealthCheckRequest hreq;
    const ProtobufCMessage *req; /* one of the two above */
    const ProtobufCMessageDescriptor *resp_desc;
};

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void ping_handler(dfs_rpc_call *call, void *ctx)
{
    (void)ctx;
    Dfs__V1__StatResponse resp = DFS__V1__STAT_RESPONSE__INIT;
    dfs_rpc_call_reply(call, &resp.base);
}

int dfs_rpc_ceiling_create(const char *target, dfs_rpc_ceiling **out, char **errmsg)
{
    dfs_rpc_ceiling *c = calloc(1, sizeof *c);
    if (c == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    c->method = "/dfs.bench.v1.Ping/Ping";
    dfs__v1__stat_request__init(&c->sreq);
    grpc__health__v1__health_check_request__init(&c->hreq);
    c->req = &c->sreq.base;
    c->resp_desc = &dfs__v1__stat_response__descriptor;
    if (target != NULL) {
        snprintf(c->target, sizeof c->target, "%s", target);
        c->method = "/grpc.health.v1.Health/Check";
        c->hreq.service = "";
        c->req = &c->hreq.base;
        c->resp_desc = &grpc__health__v1__health_check_response__descriptor;
        *out = c;
        return DFS_OK;
    }
    struct dfs_rpc_server_config cfg = {.listen = "127.0.0.1:0", .threads = 4};
    struct dfs_rpc_method m = {c->method,    DFS_RPC_UNARY, &dfs__v1__stat_request__descriptor,
                               ping_handler, NULL,          0};
    char *err = NULL;
    if (dfs_rpc_server_create(&cfg, &c->srv, &err) != DFS_OK ||
        dfs_rpc_server_add_method(c->srv, &m, &err) != DFS_OK ||
        dfs_rpc_server_start(c->srv, &err) != DFS_OK) {
        int rc = dfs_seterr(errmsg, DFS_EUNAVAIL, "cannot start the ping server: %s", err);
        free(err);
        dfs_rpc_server_destroy(c->srv);
        free(c);
        return rc;
    }
    snprintf(c->target, sizeof c->target, "127.0.0.1:%d", dfs_rpc_server_port(c->srv));
    *out = c;
    return DFS_OK;
}

/* One client thread: its channel, its counts, its samples. */
struct pinger {
    const dfs_rpc_ceiling *c;
    dfs_rpc_channel *ch;
    atomic_bool *stop;
    uint64_t calls, errors;
    uint32_t *us;
    size_t n, cap;
};

static void sample(struct pinger *p, double seconds)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 1024;
        uint32_t *v = realloc(p->us, cap * sizeof *v);
        if (v == NULL)
            return; /* a lost sample, not a wrong one */
        p->us = v;
        p->cap = cap;
    }
    double us = seconds * 1e6;
    p->us[p->n++] = us > 4e9 ? UINT32_MAX : (uint32_t)us;
}

static void *ping_main(void *arg)
{
    struct pinger *p = arg;
    while (!atomic_load(p->stop)) {
        ProtobufCMessage *resp = NULL;
        char *err = NULL;
        double t0 = dfs_clock_mono_s();
        int rc = dfs_rpc_unary(p->ch, p->c->method, p->c->req, p->c->resp_desc, &resp, 5000, &err);
        if (rc == DFS_OK) {
            p->calls++;
            sample(p, dfs_clock_mono_s() - t0);
            protobuf_c_message_free_unpacked(resp, NULL);
        } else {
            p->errors++;
        }
        free(err);
    }
    return NULL;
}

int dfs_rpc_ceiling_run(dfs_rpc_ceiling *c, unsigned clients, double seconds,
                        struct dfs_rpc_ceiling_result *res, char **errmsg)
{
    memset(res, 0, sizeof *res);
    atomic_bool stop;
    atomic_init(&stop, false);
    struct pinger *p = calloc(clients, sizeof *p);
    pthread_t *th = calloc(clients, sizeof *th);
    int rc = p == NULL || th == NULL ? dfs_seterr(errmsg, DFS_ENOMEM, "out of memory") : DFS_OK;
    for (unsigned i = 0; rc == DFS_OK && i < clients; i++) {
        p[i] = (struct pinger){.c = c, .stop = &stop};
        rc = dfs_rpc_channel_create(c->target, &p[i].ch, errmsg);
    }
    double t0 = dfs_clock_mono_s();
    unsigned started = 0;
    for (unsigned i = 0; rc == DFS_OK && i < clients; i++) {
        if (pthread_create(&th[i], NULL, ping_main, &p[i]) != 0)
            rc = DFS_EINTERNAL; /* no message: the exit status says it */
        else
            started++;
    }
    if (rc == DFS_OK)
        sleep_s(seconds);
    atomic_store(&stop, true);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    res->seconds = dfs_clock_mono_s() - t0;
    size_t total = 0;
    for (unsigned i = 0; p != NULL && i < clients; i++)
        total += p[i].n;
    res->us = total > 0 ? malloc(total * sizeof *res->us) : NULL;
    for (unsigned i = 0; p != NULL && i < clients; i++) {
        res->calls += p[i].calls;
        res->errors += p[i].errors;
        if (res->us != NULL && p[i].n > 0) {
            memcpy(res->us + res->n, p[i].us, p[i].n * sizeof *res->us);
            res->n += p[i].n;
        }
        free(p[i].us);
        dfs_rpc_channel_destroy(p[i].ch);
    }
    free(p);
    free(th);
    return rc;
}

void dfs_rpc_ceiling_destroy(dfs_rpc_ceiling *c)
{
    if (c == NULL)
        return;
    if (c->srv != NULL) {
        dfs_rpc_server_stop(c->srv, 0);
        dfs_rpc_server_destroy(c->srv);
    }
    free(c);
}
