/* The client's links: one channel per storage node. */
#include "client/links.h"

#include "common/clock.h"
#include "common/err.h"

#include <stdlib.h>
#include <string.h>

struct dfs_link {
    char *address;
    dfs_rpc_channel *ch;
    uint64_t bytes;
    dfs_bucket bucket;
};

struct dfs_links {
    dfs_link **v;
    size_t n;
    uint64_t rate, burst;
    const struct dfs_rpc_link_security *security; /* borrowed */
};

dfs_links *dfs_links_create(uint64_t rate, uint64_t burst,
                            const struct dfs_rpc_link_security *security)
{
    dfs_links *l = calloc(1, sizeof(dfs_links));
    if (l != NULL) {
        l->rate = rate;
        l->burst = burst;
        l->security = security;
    }
    return l;
}

void dfs_links_destroy(dfs_links *links)
{
    if (links == NULL)
        return;
    for (size_t i = 0; i < links->n; i++) {
        dfs_rpc_channel_destroy(links->v[i]->ch);
        free(links->v[i]->address);
        free(links->v[i]);
    }
    free(links->v);
    free(links);
}

dfs_link *dfs_links_get(dfs_links *links, const char *address, char **errmsg)
{
    for (size_t i = 0; i < links->n; i++)
        if (strcmp(links->v[i]->address, address) == 0)
            return links->v[i];
    dfs_link **v = realloc(links->v, (links->n + 1) * sizeof *v);
    if (v == NULL) {
        dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        return NULL;
    }
    links->v = v;
    dfs_link *l = calloc(1, sizeof *l);
    if (l == NULL || (l->address = strdup(address)) == NULL) {
        free(l);
        dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        return NULL;
    }
    struct dfs_rpc_channel_opts o = {.security = links->security};
    if (dfs_rpc_channel_open(address, &o, &l->ch, errmsg) != DFS_OK) {
        free(l->address);
        free(l);
        return NULL;
    }
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
