/* dfs put: store a local file in the cluster, every fragment to every node in parallel. */
#ifndef DFS_CLIENT_PUT_H
#define DFS_CLIENT_PUT_H

#include "client/filehash.h"
#include "client/meta.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

struct dfs_put_opts {
    uint32_t replicas;  /* k; 0 = the cluster's default */
    uint32_t fragments; /* F; 0 = the cluster's default */
    /* Erasure code instead of replication when ec_data > 0: K data + M parity fragments. */
    uint32_t ec_data, ec_parity;
    int policy;     /* dfs.v1.Policy number; 0 = the cluster's default */
    bool overwrite; /* replace an existing file at the path */
    /* A stream that makes no progress for this long is cancelled and retried; 0 means 60 s. */
    int64_t stall_timeout_ms;
    /* Attempts per fragment copy (a failed node is replaced each time); 0 means 3. */
    int max_attempts;
    /* Polled while the transfer runs; once non-zero the put stops, aborts and returns
       DFS_ECANCELED. May be NULL. */
    volatile sig_atomic_t *interrupted;
    /* Bandwidth: bytes per second on each client<->node link, and for the whole transfer; 0 = no
       limit. Throttled transfers use smaller messages (about 1/16 s of the rate) to pace evenly. */
    uint64_t link_rate, max_rate;
    /* Streams in flight at once; 0 = all of them. */
    unsigned parallel;
    /* Chain replication: send each fragment once, to its first node, which forwards it along the
       chain while it writes (pipelined); copies the chain could not store are then sent directly
       to replacement nodes. Replication only. false: fanout (the client sends every copy). */
    bool chain;
    /* Called as data goes out, with the file bytes done so far (copies counted once); may be
       NULL. */
    void (*progress)(void *arg, uint64_t done, uint64_t total);
    void *progress_arg;
    /* Told, in one line, what the put waits for once it waits long (a node that makes no progress
       for 5 s, the metadata service at the commit), again each second while it waits, and NULL
       once it no longer does; may be NULL. */
    void (*note)(void *arg, const char *what);
    void *note_arg;
    /* Read this open regular file (from offset 0) instead of opening `local`, which then only
       names it in messages: standard input spooled to a temporary file. Not closed. */
    bool from_fd;
    int fd;
};

struct dfs_put_result {
    char path[1100]; /* canonical remote path */
    char file_id[33];
    uint64_t size;
    uint8_t sha256[DFS_SHA256_BYTES];
    uint32_t fragments, replicas; /* replicas is 1 for erasure code */
    uint32_t ec_data, ec_parity;  /* 0, 0 for replication */
    uint32_t replaced_targets;    /* copies that went to another node after a failure */
    double seconds;               /* from CreateFile to the committed answer */
};

/*
 * Store `local` (a regular file) at `remote`. The file is read in 1 MiB chunks, each read once and
 * shared by every stream that carries it, so memory stays bounded whatever its size. Every copy of
 * every fragment streams at once; a copy whose node fails goes to another node the metadata service
 * chooses (ReplaceTarget). With erasure code the file is read a stripe at a time (K cells), its M
 * parity cells computed, and each of the K+M fragments streams to its own node. The file becomes
 * visible only when every copy is durable and CommitFile succeeded; on any failure the pending file
 * is aborted, so nothing partial is ever visible.
 *
 * Returns 0 and fills *out, or a DFS_ code with a one-line reason in *errmsg.
 */
int dfs_put(dfs_meta *meta, const char *local, const char *remote, const struct dfs_put_opts *opts,
            struct dfs_put_result *out, char **errmsg);

#endif /* DFS_CLIENT_PUT_H */
