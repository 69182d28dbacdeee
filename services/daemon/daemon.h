/* What every dfs daemon's main() shares: signals, the ready file, addresses. */
#ifndef DFS_SERVICES_DAEMON_DAEMON_H
#define DFS_SERVICES_DAEMON_DAEMON_H

#include "common/err.h"

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Block SIGTERM, SIGINT and SIGHUP in the calling thread (and so in every thread it creates after)
 * and ignore SIGPIPE. Call first thing in main(); then dfs_daemon_wait_signal waits for one.
 */
void dfs_daemon_block_signals(sigset_t *set);

/* Wait for one of the blocked signals; returns its number. */
int dfs_daemon_wait_signal(const sigset_t *set);

/*
 * Write `content` to `path` atomically (a temporary file beside it, fsync, rename, fsync of the
 * directory), so a process polling for the file never reads half of it and the file survives a
 * crash once this returned. A path that exists and is not a regular file (a FIFO, /dev/stdout, a
 * device) is written to as it is, never replaced; a directory is DFS_EINVAL. Returns 0 or DFS_EIO
 * / DFS_EINVAL with *errmsg.
 */
int dfs_daemon_write_file(const char *path, const char *content, char **errmsg);

/* The same with the file's permission bits (dfs_daemon_write_file uses 0644; secrets 0600). */
int dfs_daemon_write_file_mode(const char *path, const char *content, mode_t mode, char **errmsg);

/*
 * The address to tell others, from the listen address and the port actually bound:
 * "127.0.0.1:0" + 40123 -> "127.0.0.1:40123"; "[::1]:0" -> "[::1]:40123". A wildcard host
 * ("0.0.0.0", "[::]", "" or "*") names no reachable host: DFS_EINVAL, the caller must be told
 * an --advertise address. Returns 0 and writes out[cap], or DFS_EINVAL with *errmsg.
 */
int dfs_daemon_advertise(const char *listen, int port, char *out, size_t cap, char **errmsg);

#endif /* DFS_SERVICES_DAEMON_DAEMON_H */
