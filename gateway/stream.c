#include "gateway/stream.h"

#include "common/err.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* MHD asks for at most this much body at a time. */
#define READ_BLOCK (256u << 10)
/* The pipe between the get and MHD: larger than the default 64 KiB for fewer wake-ups. */
#define PIPE_SIZE  (1u << 20)

struct download {
    dfs_client *client;
    Dfs__V1__FileInfo *file;
    uint64_t off, len;
    const char *spool_dir;
    volatile sig_atomic_t *cancel;
    const char *what;
    int rd, wr;
    pthread_t thread;
    bool started;
};

static void *download_run(void *arg)
{
    struct download *d = arg;
    struct dfs_client_get_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.interrupted = d->cancel;
    struct dfs_client_get_result res;
    char *err = NULL;
    /* A copy the catalog moves (rebalance, drain, repair) while it is streamed is found again in
       a fresh layout; damaged copies are reported. */
    int rc = dfs_client_get_range(d->client, d->file, d->off, d->len, d->wr, d->spool_dir, &opts,
                                  &res, &err);
    if (rc != DFS_OK)
        dfs_log(rc == DFS_ECANCELED ? DFS_LOG_INFO : DFS_LOG_WARN,
                "%s stopped path=%s offset=%" PRIu64 " length=%" PRIu64 " err=%s", d->what,
                d->file->path, d->off, d->len, err != NULL ? err : dfs_strerror(rc));
    free(err);
    close(d->wr);
    d->wr = -1;
    return NULL;
}

static ssize_t download_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct download *d = cls;
    (void)pos;
    for (;;) {
        ssize_t n = read(d->rd, buf, max);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0)
            return n;
        return MHD_CONTENT_READER_END_WITH_ERROR; /* the get stopped short */
    }
}

static void download_free(void *cls)
{
    struct download *d = cls;
    if (d->rd >= 0)
        close(d->rd);
    if (d->started)
        pthread_join(d->thread, NULL);
    if (d->wr >= 0)
        close(d->wr);
    if (d->file != NULL)
        protobuf_c_message_free_unpacked(&d->file->base, NULL);
    free(d);
}

struct MHD_Response *dfs_gw_stream_response(dfs_client *client, Dfs__V1__FileInfo *file,
                                            uint64_t off, uint64_t len, const char *spool_dir,
                                            volatile sig_atomic_t *cancel, const char *what,
                                            char **errmsg)
{
    struct download *d = calloc(1, sizeof *d);
    int p[2] = {-1, -1};
    if (d == NULL || pipe2(p, O_CLOEXEC) != 0) {
        free(d);
        protobuf_c_message_free_unpacked(&file->base, NULL);
        dfs_seterr(errmsg, DFS_EIO, "cannot make a pipe");
        return NULL;
    }
    (void)fcntl(p[1], F_SETPIPE_SZ, (int)PIPE_SIZE); /* best effort */
    *d = (struct download){.client = client,
                           .file = file,
                           .off = off,
                           .len = len,
                           .spool_dir = spool_dir,
                           .cancel = cancel,
                           .what = what,
                           .rd = p[0],
                           .wr = p[1]};
    struct MHD_Response *r =
        MHD_create_response_from_callback(len, READ_BLOCK, download_read, d, download_free);
    if (r == NULL) {
        download_free(d);
        dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        return NULL;
    }
    if (pthread_create(&d->thread, NULL, download_run, d) != 0) {
        MHD_destroy_response(r); /* frees d */
        dfs_seterr(errmsg, DFS_ENOMEM, "cannot start a thread");
        return NULL;
    }
    d->started = true;
    return r;
}
