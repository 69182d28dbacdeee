/* One process per file or directory: an exclusive advisory lock, held while the holder uses it. */
#ifndef DFS_COMMON_EXLOCK_H
#define DFS_COMMON_EXLOCK_H

/*
 * Lock the open file or directory `fd` (flock(2), LOCK_EX | LOCK_NB) so that a second user of the
 * same file, in this process or another, is refused at once instead of sharing it: what keeps two
 * dfs-storage off one data directory and two dfs-metadata off one catalog.
 *
 * The lock belongs to fd's open file description: it lasts until fd is closed (the holder's exit
 * or crash closes it too, so a lock never outlives its process), and a second open() of the same
 * path is a second description, refused like another process would be. flock locks are
 * independent of the fcntl(2) locks SQLite takes on a database file.
 *
 * `what` and `path` name the locked thing in the message ("data dir", "/srv/dfs"). flock_fn is
 * flock(2), or a stand-in for fault injection; NULL means flock. Returns 0; DFS_EPRECOND with
 * "<what> <path> is in use by another process" when someone else holds the lock; or DFS_EIO with
 * the system's reason (no flock support on the file system, say).
 */
int dfs_exlock(int fd, int (*flock_fn)(int fd, int operation), const char *what, const char *path,
               char **errmsg);

#endif /* DFS_COMMON_EXLOCK_H */
