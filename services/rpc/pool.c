/* A pool of channels by peer address. */
#include "services/rpc/pool.h"

#include "common/err.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* One peer: allocated on its own so that its address, channel and state never move. */
struct entry {
    char *address;
    dfs_rpc_channel *ch;
    max_align_t data[]; /* cfg.data_size bytes of the caller's state */
};

struct dfs_rpc_pool {
    struct dfs_rpc_pool_config cfg;
    pthread_mutex_t mu; /* guards v, n, cap */
    struct entry **v;
    size_t n, cap;
};

int dfs_rpc_pool_create(const struct dfs_rpc_pool_config *cfg, dfs_rpc_pool **out, char **errmsg)
{
    dfs_rpc_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    p->cfg = *cfg;
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return DFS_OK;
}

void dfs_rpc_pool_destroy(dfs_rpc_pool *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++) {
        struct entry *e = p->v[i];
        if (p->cfg.data_fini != NULL)
            p->cfg.data_fini(e->data, p->cfg.arg);
        dfs_rpc_channel_destroy(e->ch);
        free(e->address);
        free(e);
    }
    free(p->v);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* A new entry for address, channel open and state filled; the caller holds mu. */
static int add(dfs_rpc_pool *p, const char *address, struct entry **out, char **errmsg)
{
    if (p->cfg.max > 0 && p->n >= p->cfg.max)
        return dfs_seterr(errmsg, DFS_ENOSPC, "%s",
                          p->cfg.full_message != NULL ? p->cfg.full_message
                                                      : "the channel pool is full");
    if (p->n == p->cap) {
        size_t cap = p->cap > 0 ? 2 * p->cap : 8;
        struct entry **v = realloc(p->v, cap * sizeof *v);
        if (v == NULL)
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        p->v = v;
        p->cap = cap;
    }
    struct entry *e = calloc(1, sizeof *e + p->cfg.data_size);
    if (e == NULL || (e->address = strdup(address)) == NULL) {
        free(e);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    struct dfs_rpc_channel_opts o = {.security = p->cfg.security};
    int rc = dfs_rpc_channel_open(address, &o, &e->ch, errmsg);
    if (rc != DFS_OK) {
        free(e->address);
        free(e);
        return rc;
    }
    if (p->cfg.data_init != NULL)
        p->cfg.data_init(e->data, e->address, e->ch, p->cfg.arg);
    p->v[p->n++] = e;
    *out = e;
    return DFS_OK;
}

int dfs_rpc_pool_get(dfs_rpc_pool *p, const char *address, dfs_rpc_channel **ch, void **data,
                     char **errmsg)
{
    struct entry *found = NULL;
    int rc = DFS_OK;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; found == NULL && i < p->n; i++)
        if (strcmp(p->v[i]->address, address) == 0)
            found = p->v[i];
    if (found == NULL)
        rc = add(p, address, &found, errmsg);
    pthread_mutex_unlock(&p->mu);
    if (rc != DFS_OK)
        return rc;
    if (ch != NULL)
        *ch = found->ch;
    if (data != NULL)
        *data = found->data;
    return DFS_OK;
}

size_t dfs_rpc_pool_size(dfs_rpc_pool *p)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->n;
    pthread_mutex_unlock(&p->mu);
    return n;
}
