/* A bump allocator for short-lived object graphs. */
#include "common/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct dfs_arena_block {
    struct dfs_arena_block *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

#define BLOCK_MIN 4096u
#define ALIGN     (alignof(max_align_t))

void *dfs_arena_alloc(dfs_arena *a, size_t size)
{
    size = (size + ALIGN - 1) & ~(ALIGN - 1);
    if (size == 0)
        size = ALIGN;
    struct dfs_arena_block *b = a->head;
    if (b == NULL || b->cap - b->used < size) {
        size_t cap = size > BLOCK_MIN ? size : BLOCK_MIN;
        b = malloc(sizeof *b + cap);
        if (b == NULL)
            return NULL;
        b->used = 0;
        b->cap = cap;
        /* A big one-off block goes behind the current one, which keeps its free room. */
        if (a->head != NULL && size > BLOCK_MIN) {
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    void *p = b->data + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

void *dfs_arena_calloc(dfs_arena *a, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    return dfs_arena_alloc(a, n * size);
}

void *dfs_arena_memdup(dfs_arena *a, const void *p, size_t len)
{
    void *q = dfs_arena_alloc(a, len);
    if (q != NULL && len > 0)
        memcpy(q, p, len);
    return q;
}

char *dfs_arena_strdup(dfs_arena *a, const char *s)
{
    if (s == NULL)
        return NULL;
    return dfs_arena_memdup(a, s, strlen(s) + 1);
}

void dfs_arena_free(dfs_arena *a)
{
    struct dfs_arena_block *b = a->head;
    while (b != NULL) {
        struct dfs_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}
