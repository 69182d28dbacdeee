/* The client's connection to the metadata service. */
#include "client/meta.h"

#include "common/clock.h"
#include "common/err.h"
#include "services/rpc/leader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long idempotent calls are retried while the service is unavailable. */
#define RETRY_MS 2000

struct dfs_meta {
    dfs_rpc_leader *replicas; /* the address list and the guess at the leader */
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
    int rc = dfs_rpc_leader_open(addr, opts, &m->replicas, errmsg);
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
    dfs_rpc_leader_destroy(m->replicas);
    free(m);
}

const struct dfs_rpc_link_security *dfs_meta_security(const dfs_meta *m)
{
    return m->security;
}

const char *dfs_meta_addr(const dfs_meta *m)
{
    return dfs_rpc_leader_addrs(m->replicas);
}

/*
 * One call through the replicas (services/rpc/leader.h: the leader is followed, refusals are
 * always retried). Retries ride out a restart or a change of leader, not a wrong address: keep
 * retry_ms short.
 */
static int meta_call(dfs_meta *m, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_desc, unsigned flags, int64_t retry_ms,
                     int64_t timeout_ms, void *resp, char **errmsg)
{
    char name[96];
    snprintf(name, sizeof name, "/dfs.v1.Metadata/%s", method);
    char *err = NULL;
    struct dfs_rpc_leader_outcome out;
    int rc = dfs_rpc_leader_unary(m->replicas, name, req, resp_desc, (ProtobufCMessage **)resp,
                                  timeout_ms, retry_ms, flags, &out, &err);
    const char *addrs = dfs_rpc_leader_addrs(m->replicas);
    bool one = dfs_rpc_leader_count(m->replicas) == 1;
    const char *why = err != NULL ? err : dfs_strerror(rc);
    if ((rc == DFS_EUNAVAIL || rc == DFS_ETIMEDOUT) && one)
        rc = dfs_seterr(errmsg, rc, "cannot reach the metadata service at %s (%s)", addrs, why);
    else if ((rc == DFS_EUNAVAIL || rc == DFS_ETIMEDOUT) && out.ambiguous)
        rc = dfs_seterr(errmsg, rc,
                        "cannot reach the metadata service at %s (%s: %s); %s may or may not "
                        "have been done",
                        addrs, out.tried, why, method);
    else if (rc == DFS_EUNAVAIL || rc == DFS_ETIMEDOUT)
        rc = dfs_seterr(errmsg, rc, "cannot reach the metadata service at %s (%s: %s)", addrs,
                        out.tried, why);
    else if (rc != DFS_OK)
        rc = dfs_seterr(errmsg, rc, "%s", why);
    free(err);
    return rc;
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
    return meta_call(m, method, req, resp_desc, retry ? DFS_RPC_LEADER_IDEMPOTENT : 0,
                     retry ? RETRY_MS : 0, timeout_ms, resp, errmsg);
}

int dfs_meta_call_patient(dfs_meta *m, const char *method, const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *resp_desc,
                          const struct dfs_meta_patience *p, void *resp, char **errmsg)
{
    int64_t start = dfs_clock_mono_ns();
    int64_t backoff_ms = 50;
    for (;;) {
        char *err = NULL;
        /* One try per round (the rounds are this loop's), but as an idempotent call: an
           ambiguous failure moves on to the next replica within the round. */
        int rc = meta_call(m, method, req, resp_desc, DFS_RPC_LEADER_IDEMPOTENT, 0, m->timeout_ms,
                           resp, &err);
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
