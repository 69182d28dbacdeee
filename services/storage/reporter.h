/* A storage node's damage reporter: what its reads and repairs find wrong, told to the metadata
   service. */
#ifndef DFS_SERVICES_STORAGE_REPORTER_H
#define DFS_SERVICES_STORAGE_REPORTER_H

#include "dfs/v1/types.pb-c.h"
#include "services/rpc/client.h"
#include "services/rpc/leader.h"
#include "storage/frag_store.h"

#include <stdint.h>

/*
 * One thread that sends what the node's request handlers and repairs find, so that the catalog
 * stops counting a damaged copy as good the moment anyone sees it, not at the next scrub pass or
 * registration:
 *
 *   own copies   a GetFragment with a valid ticket (so the catalog records the copy here) found
 *                the fragment missing (its file deleted under the running node) or corrupt: sent
 *                as Metadata.ReportFragments{registration, missing | corrupt}. Before it is sent the
 *                store is looked at again: a missing fragment that is there now, and a corrupt one
 *                that is gone or was replaced since (another commit time), are not reported.
 *   peer copies  a repair's source that served damaged data, a wrong checksum, or nothing: sent as
 *                Metadata.ReportDamage with the TICKET_GET it was read with (the proof the service
 *                asks for; it checks the copy with its node before it believes the report).
 *
 * Reports are queued by the callers (quick, any thread) and sent in batches (at most 1000 ids,
 * 256 peer copies per call). A failed call is retried with a backoff from 1 s doubling to 30 s;
 * the queue holds at most 4096 reports (more are dropped and counted: a cluster in that state is
 * scrubbed and inventoried anyway). The same copy is not reported twice within quiet_ms, so a
 * client that keeps asking for a missing fragment does not flood the service.
 */
typedef struct dfs_reporter dfs_reporter;

struct dfs_reporter_config {
    dfs_frag_store *store; /* borrowed: must stay open until dfs_reporter_stop returns */
    const char *metadata;  /* host:port of the metadata service; copied */
    /* Its channel's security and the node's token (pointers borrowed during start). */
    struct dfs_rpc_channel_opts channel;
    /* The process's handle on the metadata replicas (borrowed: it must outlive this); NULL:
       one of its own is opened from metadata and channel. Sharing one lets every caller
       use what one learned about the leader. */
    dfs_rpc_leader *replicas;
    const char *node_id; /* the node's id (what its own copies are remembered under); copied */
    /* The node's current registration (RegisterNodeResponse.registration), asked for at every
       ReportFragments (ReportFragmentsRequest.registration; the node itself is the channel
       token's). Called on the reporter's thread; must be thread-safe. NULL: 0. A report the
       service refuses because the registration is not current (none yet, or replaced) stays
       queued and is tried again with the backoff. */
    uint64_t (*registration)(void *arg);
    void *registration_arg; /* borrowed */
    int64_t rpc_timeout_ms; /* deadline of each call; 0 means 5000 */
    int64_t quiet_ms;       /* a copy is not reported again for this long; 0 means 60000 */
};

/*
 * Start the thread. Returns 0 and *out (stop it with dfs_reporter_stop), or DFS_EINVAL (a missing
 * field), DFS_ENOMEM with *errmsg; on failure no thread runs.
 */
int dfs_reporter_start(const struct dfs_reporter_config *cfg, dfs_reporter **out, char **errmsg);

/*
 * This node's own copy of fragment_id (copied) is damaged: `damage` is a dfs.v1.Damage number,
 * DAMAGE_CORRUPT or DAMAGE_MISSING (anything else is ignored). Thread-safe, quick (one header
 * read for a corrupt copy, to tell a later replacement apart).
 */
void dfs_reporter_own(dfs_reporter *r, const char *fragment_id, int damage);

/*
 * A peer's copy, read with `ticket` (a TICKET_GET; copied), is damaged: `damage` a dfs.v1.Damage
 * number other than UNSPECIFIED, `detail` what was seen (copied, cut to 256 printable bytes; may
 * be NULL). Thread-safe, quick.
 */
void dfs_reporter_peer(dfs_reporter *r, const Dfs__V1__Ticket *ticket, int damage,
                       const char *detail);

struct dfs_reporter_stats {
    uint64_t own_sent;  /* own copies acknowledged by the service */
    uint64_t peer_sent; /* peer copies acknowledged by the service */
    uint64_t skipped;   /* not sent: reported within quiet_ms, or no longer so in the store */
    uint64_t dropped;   /* not queued: the queue was full */
    uint64_t failures;  /* failed calls */
    uint64_t pending;   /* queued now */
};

/* Counters since start; thread-safe. */
void dfs_reporter_stats(dfs_reporter *r, struct dfs_reporter_stats *out);

/* Wake the thread, join it (a call in flight is waited out) and free everything; what is still
   queued is dropped. Accepts NULL. */
void dfs_reporter_stop(dfs_reporter *r);

#endif /* DFS_SERVICES_STORAGE_REPORTER_H */
