/* The client's links: one channel per storage node, from a channel pool of the transfer's own. */
#include "client/links.h"

#include "common/clock.h"
#include "common/err.h"
#include "services/rpc/pool.h"

#include <stdlib.h>

/* A link is the state the pool keeps beside each node's channel. */
struct dfs_link {
    const char *address; /* the pool's */
    dfs_rpc_channel *ch; /* the pool's */
    uint64_t bytes;
    dfs_bucket bucket;
};

struct dfs_links {
    dfs_rpc_pool *pool;
    uint64_t rate, burst;
};

static void link_init(void *data, const char *address, dfs_rpc_channel *ch, void *arg)
{
    dfs_link *l = data;
    const dfs_links *links = arg;
    l->address = address;
    l->ch = ch;
    dfs_bucket_init(&l->bucket, links->rate, links->burst, dfs_clock_mono_ns());
}

dfs_links *dfs_links_create(uint64_t rate, uint64_t burst,
                            const struct dfs_rpc_link_security *security)
{
    dfs_links *l = calloc(1, sizeof(dfs_links));
    if (l == NULL)
        return NULL;
    l->rate = rate;
    l->burst = burst;
    struct dfs_rpc_pool_config cfg = {
        .security = security,
        .data_size = sizeof(dfs_link),
        .data_init = link_init,
        .arg = l,
    };
    if (dfs_rpc_pool_create(&cfg, &l->pool, NULL) != DFS_OK) {
        free(l);
        return NULL;
    }
    return l;
}

void dfs_links_destroy(dfs_links *links)
{
    if (links == NULL)
        return;
    dfs_rpc_pool_destroy(links->pool);
    free(links);
}

dfs_link *dfs_links_get(dfs_links *links, const char *address, char **errmsg)
{
    void *data = NULL;
    if (dfs_rpc_pool_get(links->pool, address, NULL, &data, errmsg) != DFS_OK)
        return NULL;
    return data;
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
