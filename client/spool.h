/* dfs put -: standard input made into a regular file whose size is known before the put starts. */
#ifndef DFS_CLIENT_SPOOL_H
#define DFS_CLIENT_SPOOL_H

#include <signal.h>
#include <stdint.h>

/*
 * A put must tell CreateFile the file's size before any byte moves (the plan cuts the file into
 * fragments of size/F), and reads each chunk once per stream that restarts; a pipe offers
 * neither. So:
 *
 *   - when `in` is a regular file at offset 0 (dfs put - R < FILE), it is used as it is: *out_fd
 *     is a dup of it, nothing is copied;
 *   - otherwise (a pipe, a socket, a terminal) it is read to its end into a temporary file in
 *     `dir` opened with O_TMPFILE (or created and unlinked at once where the file system lacks
 *     it), so that nothing is left behind whatever happens to this process. The copy may take the
 *     space free in dir's file system minus `reserve` bytes, checked before every 1 MiB written;
 *     beyond that it stops with DFS_ENOSPC, saying how much was free (the caller suggests
 *     another TMPDIR, or a file). reserve 0 means min(64 MiB, 5% of the file system).
 *
 * Returns 0 with *out_fd (the caller closes it) and *size; DFS_ECANCELED once *interrupted (may
 * be NULL) is set while reading; DFS_ENOSPC as above; DFS_EIO with the system's reason. Nothing
 * is left open on failure.
 */
int dfs_spool(int in, const char *dir, uint64_t reserve, volatile sig_atomic_t *interrupted,
              int *out_fd, uint64_t *size, char **errmsg);

#endif /* DFS_CLIENT_SPOOL_H */
