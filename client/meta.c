/* The client's connection to the metadata service. */
#include "client/meta.h"

#include "common/clock.h"
#include "common/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long idempotent calls are retried while the service is unavailable. */
#define RETRY_MS 2000

struct dfs_meta {
    dfs_rpc_channel *ch;
    int64_t timeout_ms;
    const struct dfs_rpc_link_security *security; /* borrowed */
};

int dfs_meta_open(const char *addr, int64_t timeout_ms, const struct dfs_rpc_channel_opts *opts,
                  dfs_meta **out, char **errmsg)
{
    if (addr == NULL || addr[0] == '\0')
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "no metadata service address: use --metadata HOST:PORT or set "
                          "DFS_METADATA");
    dfs_meta *m = calloc(1, sizeof *m);
    if (m == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    int rc = dfs_rpc_channel_open(addr, opts, &m->ch, errmsg);
    if (rc != DFS_OK) {
        free(m);
        return rc;
    }
    m->timeout_ms = timeout_ms;
    m->security = opts != NULL ? opts->security : NULL;
    *out = m;
    return DFS_OK;
}

void dfs_meta_close(dfs_meta *m)
{
    if (m == NULL)
        return;
    dfs_rpc_channel_destroy(m->ch);
    free(m);
}

const struct dfs_rpc_link_security *dfs_meta_security(const dfs_meta *m)
{
    return m->security;
}

const char *dfs_meta_addr(const dfs_meta *m)
{
    return dfs_rpc_channel_target(m->ch);
}

int dfs_meta_call(dfs_meta *m, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc, bool retry, void *resp,
                  char **errmsg)
{
    return dfs_meta_call_within(m, method, req, resp_desc, retry, m->timeout_ms, resp, errmsg);
}

int dfs_meta_call_within(dfs_meta *m, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *resp_desc, bool retry,
                         int64_t timeout_ms, void *resp, char **errmsg)
{
    char name[96];
    snprintf(name, sizeof name, "/dfs.v1.Metadata/%s", method);
    char *err = NULL;
    /* Retries ride out a restart of the service, not a wrong address: keep them short. */
    int rc = retry ? dfs_rpc_unary_retry(m->ch, name, req, resp_desc, (ProtobufCMessage **)resp,
                                         timeout_ms, RETRY_MS, &err)
                   : dfs_rpc_unary(m->ch, name, req, resp_desc, (ProtobufCMessage **)resp,
                                   timeout_ms, &err);
    if (rc == DFS_EUNAVAIL || rc == DFS_ETIMEDOUT)
        rc = dfs_seterr(errmsg, rc, "cannot reach the metadata service at %s (%s)",
                        dfs_rpc_channel_target(m->ch), err != NULL ? err : dfs_strerror(rc));
    else if (rc != DFS_OK)
        rc = dfs_seterr(errmsg, rc, "%s", err != NULL ? err : dfs_strerror(rc));
    free(err);
    return rc;
}

int dfs_meta_call_patient(dfs_meta *m, const char *method, const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *resp_desc,
                          const struct dfs_meta_patience *p, void *resp, char **errmsg)
{
    int64_t start = dfs_clock_mono_ns();
    int64_t backoff_ms = 50;
    for (;;) {
        char *err = NULL;
        int rc = dfs_meta_call(m, method, req, resp_desc, false, resp, &err);
        int64_t waited_ms = (dfs_clock_mono_ns() - start) / 1000000;
        bool again = (rc == DFS_EUNAVAIL || rc == DFS_ETIMEDOUT) &&
                     waited_ms + backoff_ms < p->patience_ms &&
                     (p->interrupted == NULL || !*p->interrupted);
        if (!again) {
            if (rc != DFS_OK && p->interrupted != NULL && *p->interrupted) {
                free(err);
                return dfs_seterr(errmsg, DFS_ECANCELED, "interrupted");
            }
            if (rc != DFS_OK)
                dfs_seterr(errmsg, rc, "%s", err != NULL ? err : dfs_strerror(rc));
            free(err);
            return rc;
        }
        if (p->waiting != NULL)
            p->waiting(p->arg, err != NULL ? err : dfs_strerror(rc), waited_ms);
        free(err);
        /* Sleep in short steps, so that Ctrl-C is seen at once. */
        for (int64_t slept = 0; slept < backoff_ms; slept += 50) {
            if (p->interrupted != NULL && *p->interrupted)
                break;
            struct timespec ts = {0, 50 * 1000000};
            nanosleep(&ts, NULL);
        }
        backoff_ms = backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2;
    }
}
