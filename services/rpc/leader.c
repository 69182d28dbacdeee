/* Calls to a replicated service through whichever replica leads. */
#include "services/rpc/leader.h"

#include "common/addr.h"
#include "common/clock.h"
#include "common/err.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One replica: its address and the channel to it. Never freed before the handle. */
struct entry {
    char *addr;
    dfs_rpc_channel *ch;
};

/*
 * mu guards e, n, cap and guess. Entries are only ever appended, and each is its own allocation,
 * so a call may use the entry it took under the lock after letting go of it.
 */
struct dfs_rpc_leader {
    pthread_mutex_t mu;
    char *addrs;
    struct entry **e;
    size_t n, cap, given;
    size_t guess;                                 /* index into e */
    const struct dfs_rpc_link_security *security; /* borrowed */
    char *token;                                  /* NULL: none */
};

/* Between tries while no leader is known. An election takes 0.3-1 s (300 ms timeout): a client
   asleep for a whole second when the new leader starts serving doubled the failover its callers
   saw (benchmarks/metadata: p99 2.6-7.7 s with 1 s); 100 ms costs at most 10 refusals a second
   per waiting call, each refused before anything is read, and wakes within 100 ms of a leader. */
#define BACKOFF_FIRST_MS 50
#define BACKOFF_MAX_MS   100

static int add_entry(dfs_rpc_leader *l, const char *addr, size_t *idx, char **errmsg)
{
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 4 : l->cap * 2;
        struct entry **e = realloc(l->e, cap * sizeof *e);
        if (e == NULL)
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        l->e = e;
        l->cap = cap;
    }
    struct entry *en = calloc(1, sizeof *en);
    if (en == NULL || (en->addr = strdup(addr)) == NULL) {
        free(en);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    struct dfs_rpc_channel_opts o = {.security = l->security, .token = l->token};
    int rc = dfs_rpc_channel_open(addr, &o, &en->ch, errmsg);
    if (rc != DFS_OK) {
        free(en->addr);
        free(en);
        return rc;
    }
    l->e[l->n] = en;
    *idx = l->n++;
    return DFS_OK;
}

int dfs_rpc_leader_open(const char *addrs, const struct dfs_rpc_channel_opts *opts,
                        dfs_rpc_leader **out, char **errmsg)
{
    char **items = NULL;
    size_t n = 0;
    int rc = dfs_addr_list_split(addrs != NULL ? addrs : "", &items, &n, errmsg);
    if (rc != DFS_OK)
        return rc;
    dfs_rpc_leader *l = calloc(1, sizeof *l);
    if (l == NULL || (l->addrs = strdup(addrs)) == NULL) {
        free(l);
        dfs_addr_list_free(items);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&l->mu, NULL);
    l->security = opts != NULL ? opts->security : NULL;
    if (opts != NULL && opts->token != NULL && (l->token = strdup(opts->token)) == NULL)
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    for (size_t i = 0; rc == DFS_OK && i < n; i++) {
        size_t idx;
        rc = add_entry(l, items[i], &idx, errmsg);
    }
    dfs_addr_list_free(items);
    if (rc != DFS_OK) {
        dfs_rpc_leader_destroy(l);
        return rc;
    }
    l->given = l->n;
    *out = l;
    return DFS_OK;
}

void dfs_rpc_leader_destroy(dfs_rpc_leader *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        dfs_rpc_channel_destroy(l->e[i]->ch);
        free(l->e[i]->addr);
        free(l->e[i]);
    }
    free(l->e);
    if (l->token != NULL)
        explicit_bzero(l->token, strlen(l->token));
    free(l->token);
    free(l->addrs);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

const char *dfs_rpc_leader_addrs(const dfs_rpc_leader *l)
{
    return l->addrs;
}

size_t dfs_rpc_leader_count(dfs_rpc_leader *l)
{
    pthread_mutex_lock(&l->mu);
    size_t n = l->n;
    pthread_mutex_unlock(&l->mu);
    return n;
}

void dfs_rpc_leader_guess(dfs_rpc_leader *l, char *buf, size_t cap)
{
    pthread_mutex_lock(&l->mu);
    snprintf(buf, cap, "%s", l->e[l->guess]->addr);
    pthread_mutex_unlock(&l->mu);
}

bool dfs_rpc_leader_never_sent(const char *errmsg)
{
    /* gRPC C core 1.51 fails a call on a channel that has no connection with "failed to connect
       to all addresses; last error: ..." (refused, unreachable, connect timeout) and one whose
       name does not resolve with "DNS resolution failed ..." / "...Name resolution failure". */
    static const char *const never[] = {"failed to connect to all addresses",
                                        "DNS resolution failed", "esolution failure"};
    if (errmsg == NULL)
        return false;
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (strstr(errmsg, never[i]) != NULL)
            return true;
    return false;
}

/* The entry the next try goes to (borrowed: entries live as long as the handle). */
static struct entry *current(dfs_rpc_leader *l, size_t *idx)
{
    pthread_mutex_lock(&l->mu);
    *idx = l->guess;
    struct entry *e = l->e[l->guess];
    pthread_mutex_unlock(&l->mu);
    return e;
}

/* Move the guess past idx, unless another call has moved it already. */
static void advance(dfs_rpc_leader *l, size_t idx)
{
    pthread_mutex_lock(&l->mu);
    if (l->guess == idx)
        l->guess = (idx + 1) % l->n;
    pthread_mutex_unlock(&l->mu);
}

/* Make addr (a refusal named it) the guess, learning it if new. Returns the open's failure. */
static int follow(dfs_rpc_leader *l, const char *addr, char **errmsg)
{
    int rc = DFS_OK;
    pthread_mutex_lock(&l->mu);
    size_t i = 0;
    while (i < l->n && strcmp(l->e[i]->addr, addr) != 0)
        i++;
    if (i == l->n) {
        if (l->n - l->given >= DFS_RPC_LEADER_MAX_LEARNED)
            rc = dfs_seterr(errmsg, DFS_EUNAVAIL,
                            "told to follow a leader at %s, but already learned %d addresses", addr,
                            DFS_RPC_LEADER_MAX_LEARNED);
        else
            rc = add_entry(l, addr, &i, errmsg);
    }
    if (rc == DFS_OK)
        l->guess = i;
    pthread_mutex_unlock(&l->mu);
    return rc;
}

static int64_t elapsed_ms(int64_t start_ns)
{
    return (dfs_clock_mono_ns() - start_ns) / 1000000;
}

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

int dfs_rpc_leader_unary(dfs_rpc_leader *l, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                         int64_t timeout_ms, int64_t retry_ms, unsigned flags,
                         struct dfs_rpc_leader_outcome *out, char **errmsg)
{
    bool idempotent = (flags & DFS_RPC_LEADER_IDEMPOTENT) != 0;
    int64_t start = dfs_clock_mono_ns();
    /* No try starts at or after budget_ms; < 0: no deadline. */
    int64_t budget_ms = timeout_ms < 0 ? -1 : timeout_ms + (retry_ms > 0 ? retry_ms : 0);
    int64_t backoff_ms = BACKOFF_FIRST_MS;
    size_t failures = 0;             /* transport failures so far: one round covers the list */
    struct entry *redirector = NULL; /* the replica that named the current guess */
    bool refused = false;            /* a replica refused: a cluster is there, changing leader */
    if (out != NULL) {
        out->tried[0] = '\0';
        out->ambiguous = false;
    }
    for (;;) {
        size_t idx;
        struct entry *e = current(l, &idx);
        int64_t try_ms = timeout_ms;
        if (budget_ms >= 0) {
            int64_t left = budget_ms - elapsed_ms(start);
            if (left < try_ms)
                try_ms = left > 0 ? left : 1;
        }
        char *leader = NULL, *err = NULL;
        int rc = dfs_rpc_unary_trailer(e->ch, method, req, resp_desc, resp, try_ms,
                                       DFS_RPC_LEADER_KEY, &leader, &err);
        if (out != NULL)
            snprintf(out->tried, sizeof out->tried, "%s", e->addr);
        bool again = false;
        int64_t wait_ms = 0;
        if (rc == DFS_ETIMEDOUT && dfs_rpc_leader_count(l) > 1) {
            /* The guess did not answer in time (stopped, cut off, or just slow): the request
               may have arrived. Idempotent calls ask the next replica with what time is left;
               others say they may have been done. */
            advance(l, idx);
            if (!idempotent) {
                if (out != NULL)
                    out->ambiguous = true;
            } else {
                again = true;
            }
        } else if (rc != DFS_EUNAVAIL) {
            /* An answer, or (one address) a deadline: that try had the whole timeout. */
        } else if (leader != NULL && leader[0] != '\0') {
            /* A refusal naming the leader: go there at once, unless it is the replica that
               just refused (stale) or the one that sent us here (they name each other). */
            refused = true;
            int frc = follow(l, leader, &err);
            if (frc != DFS_OK) {
                rc = frc;
            } else {
                again = true;
                if (strcmp(leader, e->addr) == 0 ||
                    (redirector != NULL && strcmp(leader, redirector->addr) == 0))
                    wait_ms = backoff_ms;
                redirector = e;
            }
        } else if (err != NULL && strstr(err, DFS_RPC_NOT_LEADER) != NULL) {
            /* A refusal during an election: ask around until a leader is known. */
            refused = true;
            advance(l, idx);
            again = true;
            wait_ms = backoff_ms;
        } else {
            bool never = dfs_rpc_leader_never_sent(err);
            advance(l, idx);
            failures++;
            if (!never && !idempotent) {
                if (out != NULL)
                    out->ambiguous = true;
            } else {
                /* The first round over the list goes on at once: the request never left, or
                   it may be repeated. Later rounds only in the retry window, or until the
                   deadline once a replica has refused (a leader is being elected, or the one
                   named has just died). */
                size_t n = dfs_rpc_leader_count(l);
                if (failures < n) {
                    again = true;
                } else if ((idempotent && elapsed_ms(start) + backoff_ms < retry_ms) || refused) {
                    again = true;
                    wait_ms = backoff_ms;
                }
            }
        }
        free(leader);
        if (again && budget_ms >= 0 && elapsed_ms(start) + wait_ms >= budget_ms)
            again = false;
        if (!again) {
            if (rc != DFS_OK)
                dfs_seterr(errmsg, rc, "%s", err != NULL ? err : dfs_strerror(rc));
            free(err);
            return rc;
        }
        free(err);
        if (wait_ms > 0) {
            sleep_ms(wait_ms);
            backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2;
        }
    }
}
