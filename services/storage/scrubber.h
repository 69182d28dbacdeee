/* A storage node's scrubber: re-reads every stored fragment in the background, reports bad ones. */
#ifndef DFS_SERVICES_STORAGE_SCRUBBER_H
#define DFS_SERVICES_STORAGE_SCRUBBER_H

#include "services/rpc/client.h"
#include "services/rpc/leader.h"
#include "storage/frag_store.h"

#include <stdint.h>

/*
 * One thread. After first_delay_ms, and then interval_ms after the end of each pass, it walks
 * the store and reads every fragment whole through a frag_reader, which checks the header, the
 * CRC table and every block's CRC (the pass: storage/scrub.h). Reads are held to `rate` bytes/s
 * by a token bucket (burst one 1 MiB read), so scrubbing never takes more of the disk than that.
 *
 * A fragment that fails (DFS_EDATALOSS: a corrupt block, header or table, a truncated file;
 * DFS_EIO: unreadable) is logged at warn level with its id and queued for the metadata service.
 * A fragment that reads back whole is good in itself, but it may still not be the catalog's copy
 * (one rewritten consistently with other data: blocks, CRC table and header all recomputed):
 * so its size and checksum go to the metadata service too, in ReportFragments{scrubbed} calls of
 * at most report_batch fragments (when a batch is full and at the end of each pass, retried like
 * the corrupt ids; left out when deleted or replaced since it was read), and the service, which
 * holds the catalog, compares them and counts a copy that differs as lost. (Why there and not
 * here: the catalog is the one judge, and the node needs no copy of it.)
 * A fragment deleted meanwhile (DFS_ENOTFOUND) is skipped. Queued ids go out in
 * Metadata.ReportFragments{registration, corrupt} calls of at most report_batch ids: when a batch is
 * full, at the end of each pass, and until acknowledged (a failed call is retried with a backoff
 * from 1 s doubling to 30 s, between fragments and during the pause between passes). Before an
 * id is sent it is looked at again: one no longer in the store, or replaced since it was found
 * (another commit time), is dropped. A corrupt fragment is found, and reported, again at every
 * pass until it is replaced or removed; the metadata service treats reports as idempotent.
 *
 * Stop wakes the thread at once; a read in progress (at most 1 MiB) or a report call in flight
 * (at most rpc_timeout_ms) is waited out.
 */
typedef struct dfs_scrubber dfs_scrubber;

struct dfs_scrubber_config {
    dfs_frag_store *store; /* borrowed: must stay open until dfs_scrubber_stop returns */
    const char *metadata;  /* host:port of the metadata service; copied */
    /* Its channel's security and the node's token (pointers borrowed during create/start). */
    struct dfs_rpc_channel_opts channel;
    /* The process's handle on the metadata replicas (borrowed: it must outlive this); NULL:
       one of its own is opened from metadata and channel. Sharing one lets every caller
       use what one learned about the leader. */
    dfs_rpc_leader *replicas;
    const char *node_id; /* the node's id (dfs_frag_store_node_id); copied */
    /* The node's current registration (RegisterNodeResponse.registration), asked for at every
       report (ReportFragmentsRequest.registration; the node itself is the channel token's).
       Called on the scrubber's thread; must be thread-safe. NULL: 0. */
    uint64_t (*registration)(void *arg);
    void *registration_arg; /* borrowed */
    uint64_t rate;          /* bytes read per second; must be > 0 (0 = do not start one) */
    int64_t interval_ms;    /* pause between the end of a pass and the next; must be > 0 */
    int64_t first_delay_ms; /* before the first pass; 0 = at once */
    int64_t rpc_timeout_ms; /* deadline of each report call; 0 means 5000 */
    uint32_t report_batch;  /* most ids per report; 0 means 1000 */
    /* Called on the scrubber's thread after each pass (NULL: nothing): a storage node triggers
       its inventory report here, so that a fragment file deleted under the running node is
       noticed at the next pass even if nobody reads it. Must return quickly. */
    void (*on_pass)(void *arg);
    void *on_pass_arg;
};

/*
 * Start the thread. Returns 0 and *out (stop it with dfs_scrubber_stop), or DFS_EINVAL (a missing
 * field, rate or interval 0), DFS_ENOMEM with *errmsg; on failure no thread runs.
 */
int dfs_scrubber_start(const struct dfs_scrubber_config *cfg, dfs_scrubber **out, char **errmsg);

struct dfs_scrubber_stats {
    uint64_t passes;            /* completed passes */
    uint64_t fragments_checked; /* fragments read whole (or until they failed) */
    uint64_t bytes_checked;     /* data bytes read */
    uint64_t corrupt_found;     /* failed fragments, counted at every pass that finds them */
    uint64_t reported;          /* ids acknowledged by the metadata service */
    uint64_t sums_reported;     /* good fragments' checksums acknowledged by it */
    uint64_t report_pending;    /* ids waiting to be reported */
};

/* Counters since start; thread-safe. */
void dfs_scrubber_stats(dfs_scrubber *s, struct dfs_scrubber_stats *out);

/* Wake the thread, join it and free everything. Accepts NULL. */
void dfs_scrubber_stop(dfs_scrubber *s);

#endif /* DFS_SERVICES_STORAGE_SCRUBBER_H */
