/* A bump allocator for short-lived object graphs (building a response, freeing it in one go). */
#ifndef DFS_COMMON_ARENA_H
#define DFS_COMMON_ARENA_H

#include <stddef.h>

/*
 * Memory from an arena lives until dfs_arena_free, which releases all of it at once; there is no
 * per-allocation free. Zero-initialise the struct to start (`dfs_arena a = {0};`). Not thread-safe.
 * Typical use: build a protobuf-c response whose strings and repeated fields point into the arena,
 * pack it, free the arena.
 */
typedef struct dfs_arena {
    struct dfs_arena_block *head;
} dfs_arena;

/* size bytes, zeroed, aligned for any type; NULL when out of memory. */
void *dfs_arena_alloc(dfs_arena *a, size_t size);

/* n * size bytes, zeroed; NULL on overflow or out of memory. */
void *dfs_arena_calloc(dfs_arena *a, size_t n, size_t size);

/* A copy of s (NULL stays NULL); NULL when out of memory. */
char *dfs_arena_strdup(dfs_arena *a, const char *s);

/* A copy of len bytes. */
void *dfs_arena_memdup(dfs_arena *a, const void *p, size_t len);

/* Release everything; the arena is empty and reusable afterwards. */
void dfs_arena_free(dfs_arena *a);

#endif /* DFS_COMMON_ARENA_H */
