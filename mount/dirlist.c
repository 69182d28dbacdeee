/* Directory entries from file paths (dirlist.h). */
#include "mount/dirlist.h"

#include "common/err.h"

#include <stdlib.h>
#include <string.h>

struct entry {
    char *name;
    bool is_dir;
};

struct dfs_dirlist {
    char *prefix; /* "/" or "/a/b/" */
    size_t prefix_len;
    struct entry *e;
    size_t n, cap;
};

dfs_dirlist *dfs_dirlist_create(const char *dir)
{
    dfs_dirlist *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    size_t n = strlen(dir);
    while (n > 0 && dir[n - 1] == '/')
        n--;
    l->prefix = malloc(n + 2);
    if (l->prefix == NULL) {
        free(l);
        return NULL;
    }
    memcpy(l->prefix, dir, n);
    l->prefix[n] = '/';
    l->prefix[n + 1] = '\0';
    l->prefix_len = n + 1;
    return l;
}

void dfs_dirlist_destroy(dfs_dirlist *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->e[i].name);
    free(l->e);
    free(l->prefix);
    free(l);
}

const char *dfs_dirlist_prefix(const dfs_dirlist *l)
{
    return l->prefix;
}

int dfs_dirlist_add(dfs_dirlist *l, const char *path, bool is_dir)
{
    if (strncmp(path, l->prefix, l->prefix_len) != 0)
        return DFS_OK;
    const char *name = path + l->prefix_len;
    const char *slash = strchr(name, '/');
    size_t len = slash != NULL ? (size_t)(slash - name) : strlen(name);
    if (len == 0)
        return DFS_OK;
    if (slash != NULL && slash[1] != '\0')
        is_dir = true;
    /* Listings come in path order: a directory's many files add its name over and over. */
    if (l->n > 0 && strlen(l->e[l->n - 1].name) == len &&
        memcmp(l->e[l->n - 1].name, name, len) == 0) {
        l->e[l->n - 1].is_dir |= is_dir;
        return DFS_OK;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap != 0 ? l->cap * 2 : 64;
        struct entry *e = realloc(l->e, cap * sizeof *e);
        if (e == NULL)
            return DFS_ENOMEM;
        l->e = e;
        l->cap = cap;
    }
    char *copy = strndup(name, len);
    if (copy == NULL)
        return DFS_ENOMEM;
    l->e[l->n++] = (struct entry){copy, is_dir};
    return DFS_OK;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

void dfs_dirlist_finish(dfs_dirlist *l)
{
    if (l->n == 0)
        return;
    qsort(l->e, l->n, sizeof *l->e, by_name);
    size_t w = 0;
    for (size_t i = 1; i < l->n; i++) {
        if (strcmp(l->e[i].name, l->e[w].name) == 0) {
            l->e[w].is_dir |= l->e[i].is_dir;
            free(l->e[i].name);
        } else {
            l->e[++w] = l->e[i];
        }
    }
    l->n = w + 1;
}

size_t dfs_dirlist_count(const dfs_dirlist *l)
{
    return l->n;
}

const char *dfs_dirlist_entry(const dfs_dirlist *l, size_t i, bool *is_dir)
{
    *is_dir = l->e[i].is_dir;
    return l->e[i].name;
}
