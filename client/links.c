/* The client's links: a transfer's own state per node, over channels the handle's transfers share. */
#include "client/links.h"

#include "common/clock.h"
#include "common/err.h"

#include <stdlib.h>
#include <string.h>

/*
 * A link: one transfer's use of one node's channel. Allocated on its own so that it never
 * moves (the engines keep pointers to it); the address and channel are the pool's and live as
 * long as the pool, which outlives the links.
 */
struct dfs_link {
    const char *address;
    dfs_rpc_channel *ch;
    uint64_t bytes;
    dfs_bucket bucket;
};

struct dfs_links {
    dfs_rpc_pool *channels; /* borrowed, or `own` */
    /* The transfer's own channels: all of them when none are shared; otherwise those to nodes
       whose shared channel was failing when the transfer first needed it (opened lazily). */
    dfs_rpc_pool *own;
    const struct dfs_rpc_link_security *security; /* own's */
    uint64_t rate, burst;
    dfs_link **v; /* lookups are linear: a transfer talks to tens of nodes */
    size_t n, cap;
};

int dfs_links_channels_create(const struct dfs_rpc_link_security *security, dfs_rpc_pool **out,
                              char **errmsg)
{
    struct dfs_rpc_pool_config cfg = {.security = security};
    return dfs_rpc_pool_create(&cfg, out, errmsg);
}

dfs_links *dfs_links_create(uint64_t rate, uint64_t burst, dfs_rpc_pool *channels,
                            const struct dfs_rpc_link_security *security)
{
    dfs_links *l = calloc(1, sizeof(dfs_links));
    if (l == NULL)
        return NULL;
    l->rate = rate;
    l->burst = burst;
    l->channels = channels;
    l->security = security;
    if (channels == NULL) {
        if (dfs_links_channels_create(security, &l->own, NULL) != DFS_OK) {
            free(l);
            return NULL;
        }
        l->channels = l->own;
    }
    return l;
}

void dfs_links_destroy(dfs_links *links)
{
    if (links == NULL)
        return;
    for (size_t i = 0; i < links->n; i++)
        free(links->v[i]);
    free(links->v);
    dfs_rpc_pool_destroy(links->own);
    free(links);
}

dfs_link *dfs_links_get(dfs_links *links, const char *address, char **errmsg)
{
    for (size_t i = 0; i < links->n; i++)
        if (strcmp(links->v[i]->address, address) == 0)
            return links->v[i];
    if (links->n == links->cap) {
        size_t cap = links->cap > 0 ? 2 * links->cap : 8;
        dfs_link **v = realloc(links->v, cap * sizeof *v);
        if (v == NULL) {
            dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            return NULL;
        }
        links->v = v;
        links->cap = cap;
    }
    dfs_link *l = calloc(1, sizeof *l);
    if (l == NULL) {
        dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        return NULL;
    }
    if (dfs_rpc_pool_get(links->channels, address, &l->ch, NULL, errmsg) != DFS_OK) {
        free(l);
        return NULL;
    }
    /*
     * A shared channel whose last connection attempt failed fails every call at once until its
     * backoff (up to 2 s) ends, even if the node is back on the same address: this transfer then
     * connects afresh over a channel of its own, as every transfer did before channels were
     * shared (a node still down fails it just the same), while the shared one reconnects by
     * itself for the transfers to come.
     */
    if (links->own != links->channels && dfs_rpc_channel_failing(l->ch)) {
        struct dfs_rpc_pool_config cfg = {.security = links->security};
        if ((links->own == NULL && dfs_rpc_pool_create(&cfg, &links->own, errmsg) != DFS_OK) ||
            dfs_rpc_pool_get(links->own, address, &l->ch, NULL, errmsg) != DFS_OK) {
            free(l);
            return NULL;
        }
    }
    l->address = dfs_rpc_channel_target(l->ch);
    dfs_bucket_init(&l->bucket, links->rate, links->burst, dfs_clock_mono_ns());
    links->v[links->n++] = l;
    return l;
}

dfs_rpc_channel *dfs_link_channel(const dfs_link *link)
{
    return link->ch;
}

const char *dfs_link_address(const dfs_link *link)
{
    return link->address;
}

dfs_bucket *dfs_link_bucket(dfs_link *link)
{
    return &link->bucket;
}

void dfs_link_add_bytes(dfs_link *link, uint64_t n)
{
    link->bytes += n;
}

uint64_t dfs_link_bytes(const dfs_link *link)
{
    return link->bytes;
}
