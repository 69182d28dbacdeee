/* Directory entries of dfs-mount: the store has only file paths, so a directory is the set of
   first path components under its prefix (subdirectories implied by deeper paths), merged with
   explicit directories and files not yet committed, each name once. */
#ifndef DFS_MOUNT_DIRLIST_H
#define DFS_MOUNT_DIRLIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct dfs_dirlist dfs_dirlist;

/* An empty listing of directory `dir` ("/" or "/a/b", no trailing slash; copied). NULL when out
   of memory. */
dfs_dirlist *dfs_dirlist_create(const char *dir);

/* Accepts NULL. */
void dfs_dirlist_destroy(dfs_dirlist *l);

/* The prefix a listing of the directory's files asks for: "/" or "/a/b/" (borrowed from l). */
const char *dfs_dirlist_prefix(const dfs_dirlist *l);

/*
 * Add what `path` (a file's full path, or an explicit directory's with is_dir) says about the
 * directory: nothing when it is not under it; else its first component below, a directory when
 * more components follow or is_dir. Returns 0 or DFS_ENOMEM.
 */
int dfs_dirlist_add(dfs_dirlist *l, const char *path, bool is_dir);

/* Sort by name and drop repeats (a name that is both a file and a directory lists once, as a
   directory). Call before dfs_dirlist_count/entry. */
void dfs_dirlist_finish(dfs_dirlist *l);

size_t dfs_dirlist_count(const dfs_dirlist *l);

/* Entry i: its name (borrowed from l) and whether it is a directory. */
const char *dfs_dirlist_entry(const dfs_dirlist *l, size_t i, bool *is_dir);

#endif /* DFS_MOUNT_DIRLIST_H */
