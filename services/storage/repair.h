/* A storage node's repairer: makes the node hold a fragment it lacks by pulling it from peers. */
#ifndef DFS_SERVICES_STORAGE_REPAIR_H
#define DFS_SERVICES_STORAGE_REPAIR_H

#include "dfs/v1/storage.pb-c.h"
#include "services/rpc/security.h"
#include "storage/frag_store.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * The work behind Storage.RepairFragment (storage.proto is the contract), off the gRPC loops: a
 * fixed set of worker threads takes jobs from a FIFO queue, one job per worker at a time (more
 * wait queued). Each worker has its own event loop for its client calls (GetFragment streams to
 * the sources, over channels the repairer caches per address), and writes through a frag_store
 * writer, so every block CRC is checked on the way in and nothing partial is ever visible: any
 * failure aborts the writer, and what was stored under the id before stays.
 *
 *   copy (no request.erasure): the sources in order. From each, one GetFragment of the whole
 *     fragment; the source is skipped (next one) when it fails, stalls (stall_ms without a
 *     message), announces another size or checksum in its first message, sends a block whose
 *     CRC does not match, or delivers blocks whose table checksum is not request.checksum. The
 *     checksum is compared before the commit, so a wrong copy never replaces anything.
 *   rebuild (request.erasure): fragment `index` of a K+M file whose fragments are size /
 *     cell_size cells each (storage/ec.h; stripe s is cell s of every fragment). K sources of
 *     distinct indexes are read at once, stripe batch by stripe batch (at most about 8 MiB of
 *     cells in memory, plus one received message per source); each batch is reconstructed and
 *     appended. A source that fails mid-way is replaced by another candidate (an index not in
 *     use, or another address for the same index), which is read from the start of the batch.
 *     Fewer than K usable sources: DFS_EPRECOND.
 *
 * Idempotence: a fragment the store already holds with the expected size and checksum, every
 * block of which reads back (a local check, not charged to the rate), is not pulled again: the
 * job succeeds with bytes_read 0 and source "already present". A stored copy that differs or
 * has a corrupt block is replaced by the pulled one.
 *
 * Rate: every data byte received from a source is charged to ONE token bucket shared by all the
 * repairer's workers (rate bytes/s, burst 1 MiB); a worker that drove it into debt waits the
 * debt out before it consumes more. So the node's repair reads stay at `rate` over seconds
 * (gRPC's flow-control window is the only read-ahead).
 *
 * Outcome codes: DFS_OK; DFS_EINVAL (a malformed request: see dfs_repair_check);
 * DFS_EPRECOND (no source, or fewer than K, served it: the message says why for each);
 * DFS_ENOSPC, DFS_EIO, DFS_ENOMEM (this node's own disk or memory); DFS_ECANCELED (the job's
 * cancel flag); DFS_ETIMEDOUT (its deadline).
 */
typedef struct dfs_repairer dfs_repairer;

struct dfs_repairer_config {
    /* Bytes per second for everything the repairs read; 0 = unlimited. */
    uint64_t rate;
    /* Repairs running at once; 0 means 2. */
    int workers;
    /* A source that sends nothing for this long is given up; 0 means 30000. */
    int64_t stall_ms;
    /* How channels to source nodes are secured; NULL: plaintext, loopback only. Borrowed: must
       outlive the repairer. */
    const struct dfs_rpc_link_security *security;
    /*
     * Called on a worker thread when a source is skipped because its copy is damaged, not merely
     * unreachable: a block that failed its CRC (its node answered DATA_LOSS, or the data arrived
     * corrupt), a size or checksum other than the request's, or NOT_FOUND. `damage` is a
     * dfs.v1.Damage number (1 corrupt, 2 wrong checksum, 3 missing), `ticket` the TICKET_GET the
     * source was read with and `detail` what was seen (both borrowed for the call). It must
     * return quickly (queue the report). NULL: not reported.
     */
    void (*on_bad_source)(void *arg, const Dfs__V1__Ticket *ticket, int damage, const char *detail);
    void *bad_source_arg;
};

/*
 * One repair. The caller owns the job and fills the fields above `status`; the repairer fills
 * the rest on a worker thread and then calls done, which is the last time it touches the job.
 */
struct dfs_repair_job {
    /* Borrowed until done runs. */
    const Dfs__V1__RepairFragmentRequest *req;
    /*
     * Instead of a repair (req NULL): check the node's own copy of this fragment (borrowed until
     * done runs): read all of it, every block against its stored CRC (a local read, not charged
     * to the rate). Outcome: DFS_OK with size and checksum, DFS_ENOTFOUND, DFS_EDATALOSS (a
     * block, the CRC table or the header is corrupt), DFS_EIO, DFS_ECANCELED, DFS_ETIMEDOUT.
     */
    const char *verify_id;
    /* CLOCK_MONOTONIC nanoseconds after which the job gives up; INT64_MAX for none. */
    int64_t deadline_ns;
    /* Set (from any thread) to stop the job: it ends with DFS_ECANCELED within ~20 ms. */
    atomic_bool cancel;
    /* Called once on a worker thread (or in dfs_repairer_destroy) with the outcome filled. */
    void (*done)(struct dfs_repair_job *job);
    void *arg; /* the caller's */

    /* Outcome. message: malloc'd, owned by the job's owner (free it), NULL on success. */
    int status;
    char *message;
    uint64_t size;
    uint32_t checksum;
    uint64_t bytes_read;
    char source[300]; /* the address copied from, or "rebuilt from N fragments" */
};

/*
 * Start the workers over an open store (borrowed: it must stay open until destroy returns).
 * cfg is copied; NULL means defaults. Returns 0 and *out, or DFS_EINVAL / DFS_ENOMEM with
 * *errmsg.
 */
int dfs_repairer_create(dfs_frag_store *store, const struct dfs_repairer_config *cfg,
                        dfs_repairer **out, char **errmsg);

/*
 * Check a request's form before queueing it (so a malformed one is refused at once): the same as
 * dfs_validate_repair_fragment (services/validate/validate.h). Returns 0 or DFS_EINVAL with
 * *errmsg.
 */
int dfs_repair_check(const Dfs__V1__RepairFragmentRequest *req, char **errmsg);

/*
 * Queue a job (status and the outcome fields are reset here). Thread-safe. Returns 0 (done will
 * come), or DFS_EUNAVAIL once destroy has begun (done will not come).
 */
int dfs_repairer_submit(dfs_repairer *r, struct dfs_repair_job *job, char **errmsg);

struct dfs_repairer_stats {
    uint64_t queued;     /* waiting for a worker */
    uint64_t running;    /* being worked on */
    uint64_t ok;         /* jobs that ended with the fragment durable */
    uint64_t failed;     /* every other ending, cancels included */
    uint64_t bytes_read; /* data bytes received from sources (what the rate limits) */
};

/* Counters since create; thread-safe. */
void dfs_repairer_stats(dfs_repairer *r, struct dfs_repairer_stats *out);

/* Count a repair settled without the repairer (a fragment already present, a refused request). */
void dfs_repairer_count(dfs_repairer *r, bool ok);

/*
 * Cancel every queued and running job, wait for their done callbacks, join the workers and free
 * everything. Accepts NULL.
 */
void dfs_repairer_destroy(dfs_repairer *r);

#endif /* DFS_SERVICES_STORAGE_REPAIR_H */
