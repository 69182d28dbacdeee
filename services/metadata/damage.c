/* The metadata service's queue of reported copies waiting for their node's check. */
#include "services/metadata/damage.h"

#include "common/err.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A copy a check found good, and when. */
struct good {
    char fragment_id[DFS_FRAGMENT_ID_HEX + 1];
    char node_id[DFS_ID_HEX + 1];
    int64_t at_ms;
};

/*
 * mu guards everything. items[0..nitems) are the copies waiting (FIFO) and those being checked
 * (checking[i]); good[] is a ring of the latest copies found good.
 */
struct dfs_damage_queue {
    pthread_mutex_t mu;
    size_t cap;
    int64_t good_for_ms;
    struct dfs_damage_item *items;
    bool *checking;
    size_t nitems;
    struct good *good;
    size_t ngood, gnext;
};

int dfs_damage_queue_create(size_t cap, int64_t good_for_ms, dfs_damage_queue **out, char **errmsg)
{
    if (cap == 0 || good_for_ms <= 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "damage queue: cap and good_for_ms must be positive");
    dfs_damage_queue *q = calloc(1, sizeof *q);
    if (q != NULL) {
        q->items = calloc(cap, sizeof *q->items);
        q->checking = calloc(cap, sizeof *q->checking);
        q->good = calloc(cap, sizeof *q->good);
    }
    if (q == NULL || q->items == NULL || q->checking == NULL || q->good == NULL) {
        dfs_damage_queue_destroy(q);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&q->mu, NULL);
    q->cap = cap;
    q->good_for_ms = good_for_ms;
    *out = q;
    return DFS_OK;
}

void dfs_damage_queue_destroy(dfs_damage_queue *q)
{
    if (q == NULL)
        return;
    if (q->cap > 0)
        pthread_mutex_destroy(&q->mu);
    free(q->items);
    free(q->checking);
    free(q->good);
    free(q);
}

static bool same(const char *f1, const char *n1, const char *f2, const char *n2)
{
    return strcmp(f1, f2) == 0 && strcmp(n1, n2) == 0;
}

enum dfs_damage_added dfs_damage_queue_add(dfs_damage_queue *q, const char *fragment_id,
                                           const char *node_id, int damage, const char *detail,
                                           int64_t now_ms)
{
    if (!dfs_fragment_id_valid(fragment_id) || !dfs_id_valid(node_id))
        return DFS_DAMAGE_INVALID;
    enum dfs_damage_added r = DFS_DAMAGE_QUEUED;
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < q->nitems && r == DFS_DAMAGE_QUEUED; i++)
        if (same(q->items[i].fragment_id, q->items[i].node_id, fragment_id, node_id))
            r = DFS_DAMAGE_PENDING;
    for (size_t i = 0; i < q->ngood && r == DFS_DAMAGE_QUEUED; i++)
        if (same(q->good[i].fragment_id, q->good[i].node_id, fragment_id, node_id) &&
            now_ms - q->good[i].at_ms < q->good_for_ms)
            r = DFS_DAMAGE_KNOWN_GOOD;
    if (r == DFS_DAMAGE_QUEUED && q->nitems == q->cap)
        r = DFS_DAMAGE_FULL;
    if (r == DFS_DAMAGE_QUEUED) {
        struct dfs_damage_item *it = &q->items[q->nitems];
        memset(it, 0, sizeof *it);
        snprintf(it->fragment_id, sizeof it->fragment_id, "%s", fragment_id);
        snprintf(it->node_id, sizeof it->node_id, "%s", node_id);
        it->damage = damage;
        size_t n = 0;
        for (; detail != NULL && detail[n] != '\0' && n < DFS_DAMAGE_DETAIL_MAX; n++) {
            unsigned char c = (unsigned char)detail[n];
            it->detail[n] = c < 0x20 || c >= 0x7f || c == '"' || c == '\\' ? '?' : (char)c;
        }
        it->detail[n] = '\0';
        it->queued_ms = now_ms;
        q->checking[q->nitems] = false;
        q->nitems++;
    }
    pthread_mutex_unlock(&q->mu);
    return r;
}

bool dfs_damage_queue_take(dfs_damage_queue *q, struct dfs_damage_item *out)
{
    bool found = false;
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < q->nitems && !found; i++)
        if (!q->checking[i]) {
            q->checking[i] = true;
            *out = q->items[i];
            found = true;
        }
    pthread_mutex_unlock(&q->mu);
    return found;
}

void dfs_damage_queue_done(dfs_damage_queue *q, const struct dfs_damage_item *item,
                           enum dfs_damage_verdict verdict, int64_t now_ms)
{
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < q->nitems; i++) {
        if (!q->checking[i] ||
            !same(q->items[i].fragment_id, q->items[i].node_id, item->fragment_id, item->node_id))
            continue;
        memmove(&q->items[i], &q->items[i + 1], (q->nitems - i - 1) * sizeof *q->items);
        memmove(&q->checking[i], &q->checking[i + 1], (q->nitems - i - 1) * sizeof *q->checking);
        q->nitems--;
        break;
    }
    if (verdict == DFS_DAMAGE_GOOD) {
        struct good *g = &q->good[q->gnext];
        q->gnext = (q->gnext + 1) % q->cap;
        if (q->ngood < q->cap)
            q->ngood++;
        snprintf(g->fragment_id, sizeof g->fragment_id, "%s", item->fragment_id);
        snprintf(g->node_id, sizeof g->node_id, "%s", item->node_id);
        g->at_ms = now_ms;
    }
    pthread_mutex_unlock(&q->mu);
}

size_t dfs_damage_queue_pending(dfs_damage_queue *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->nitems;
    pthread_mutex_unlock(&q->mu);
    return n;
}

bool dfs_damage_queue_suspect(dfs_damage_queue *q, const char *fragment_id, const char *node_id)
{
    bool found = false;
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < q->nitems && !found; i++)
        found = same(q->items[i].fragment_id, q->items[i].node_id, fragment_id, node_id);
    pthread_mutex_unlock(&q->mu);
    return found;
}
