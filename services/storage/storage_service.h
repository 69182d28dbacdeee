/* The Storage service: dfs.v1.Storage (put, get, delete, stat of fragments) over a fragment store. */
#ifndef DFS_SERVICES_STORAGE_STORAGE_SERVICE_H
#define DFS_SERVICES_STORAGE_STORAGE_SERVICE_H

#include "dfs/v1/types.pb-c.h"
#include "services/rpc/security.h"
#include "services/rpc/server.h"
#include "storage/frag_store.h"

#include <stddef.h>
#include <stdint.h>

/*
 * The five methods, on whichever loop thread gRPC binds each call to; a handler does its disk I/O
 * synchronously on that thread (fsync included), so a slow disk slows only the calls of that
 * worker. Every failure carries a one-line message that names the fragment when it is known:
 *
 *   PutFragment (client streaming). The first message must carry the header (fragment id, size);
 *     a header in any later message, or none in the first, is INVALID_ARGUMENT. Each message's data
 *     and CRCs go to a frag_store writer, which enforces the chunking rules (INVALID_ARGUMENT) and
 *     every block CRC (DATA_LOSS). At the end of the stream the writer is committed; the commit
 *     itself refuses a stream that delivered fewer bytes than declared (INVALID_ARGUMENT), which is
 *     also how a client's cancel is caught when gRPC reports it as a clean end of stream. Any
 *     failure aborts the writer: nothing partial is ever visible, and what was stored under the
 *     id before stays. Fragments are write-once (dfs_frag_writer_commit_new): a stored fragment
 *     of another size is ALREADY_EXISTS at the header, one of the same size when the upload is
 *     complete unless it has the same checksum (a retry: nothing is written). Answer:
 *     {fragment_id, size, checksum, receipt}, once the fragment is durable; the receipt is this
 *     node's (common/receipt.h), the proof CommitFile asks for.
 *   PutFragment with a chain (header.forward non-empty; storage.proto is the contract). The list
 *     is checked before anything is written: at most DFS_STORAGE_FORWARD_MAX entries, each a
 *     printable host:port (no spaces or control characters, port 1-65535, at most
 *     DFS_STORAGE_ADDR_MAX bytes), no entry twice, a forward ticket and a hop ticket each, and none
 *     equal to this node's advertised address (a loop); otherwise INVALID_ARGUMENT. hop_tickets[0]
 *     must be this node's TICKET_FORWARD naming forward[0] and the node forward_tickets[0] is for
 *     (PERMISSION_DENIED otherwise): nothing is dialled that the metadata service did not sign.
 *     The node then opens a PutFragment call to forward[0] on the call's own loop thread (one
 *     cached channel per address), whose first message carries the header {id, size,
 *     forward[1..], forward_rate, the tickets and hop tickets [1..]} and the first message's
 *     data and CRCs unchanged; every later message is passed on as the very bytes received. Each
 *     message is handed downstream first, then written locally, and the next upstream message is
 *     asked for only once both are done, so memory per call stays at one message and upstream
 *     runs at the pace of the slower of the disk and the next link. Sends downstream are held
 *     to min(header.forward_rate, config forward_rate) bytes/s where either is set, per LINK:
 *     one token bucket per downstream address (burst one 1 MiB chunk), shared by every chain
 *     put this node forwards to that address at once, so the link to a successor carries at
 *     most that rate in total; a put waits for tokens on its own loop's timers. At the end of the stream
 *     the local copy is committed first (a failure fails the call and cancels the downstream
 *     call), then the downstream stream is closed and its answer awaited; the answer adds
 *     `chain`: forward[0]'s ack from the downstream call (ok only if it succeeded with the same
 *     id, size and checksum, with its receipt), then the acks it relayed (each must name
 *     forward[i] in order and, when ok, carry the same size and checksum; else ok = false). A
 *     downstream failure at any point (unreachable, reset, DATA_LOSS, its deadline: the caller's,
 *     less a tenth up to 1 s) stops the forwarding but not the local write: forward[0] gets
 *     ok = false with "next node unavailable" (or "next node refused the copy (STATUS)" when it
 *     answered with an error of its own; the details go to this node's log only, never to the
 *     client), and every later entry "not reached: <forward[0]> failed before it". A
 *     failure of this node's own write, or the client's cancel, cancels the downstream call,
 *     which cancels the rest of the chain in turn.
 *   GetFragment (server streaming). Range [offset, offset + length), length 0 = to the end;
 *     a range past the end is OUT_OF_RANGE. Messages carry at most chunk_bytes of data (see the
 *     config); the first also carries header {fragment_id, whole size} and the fragment checksum,
 *     and is sent even for an empty range. Every block is checked against its stored CRC as it is
 *     read; a corrupt one ends the stream with DATA_LOSS "fragment X block N is corrupt". A
 *     fragment that a valid ticket names but that is missing (NOT_FOUND) or corrupt is also told
 *     to on_own_damage: the catalog counts the copy as good and must hear otherwise.
 *   DeleteFragment (unary): {existed}.     StatFragment (unary): {fragment_id, size, checksum,
 *     stored_ms}, NOT_FOUND when absent; with verify, the whole fragment is read first on a
 *     repair worker (as a repair's local check: every block against its CRC, not charged to the
 *     repair rate) and the answer comes from the call's loop: DATA_LOSS when a block, the CRC
 *     table or the header is corrupt.
 *   RepairFragment (unary; storage.proto is the contract, services/storage/repair.h the
 *     mechanism). On the loop thread the request's form is checked (dfs_repair_check: INVALID_ARGUMENT); then
 *     the call is handed to the service's repairer (repair_workers threads, later ones queued,
 *     every read from a peer under one repair_rate bucket) and answered from the call's own loop
 *     once the worker is done (the worker posts the outcome back with dfs_rpc_loop_post):
 *     {fragment_id, size, checksum, bytes_read, source}; a fragment already stored with the
 *     expected size and checksum and whose blocks all read back is answered without pulling
 *     {bytes_read 0, source "already present"}. Failures: FAILED_PRECONDITION (no source, or
 *     fewer than K, served it; the message gives each source's reason), RESOURCE_EXHAUSTED /
 *     INTERNAL (this node's disk). The client's cancel or deadline cancels the pull within
 *     ~20 ms; nothing partial is left.
 *
 * A malformed fragment id is INVALID_ARGUMENT everywhere (the store checks it before it forms any
 * path, so no request can reach outside the data directory).
 */
typedef struct dfs_storage_service dfs_storage_service;

/* Largest data payload of one GetFragment message, and the default. */
#define DFS_STORAGE_CHUNK_MAX (1u << 20)

/* Most entries in a PutFragment header's forward list. */
#define DFS_STORAGE_FORWARD_MAX 16
/* Longest host:port, in a forward list or as the advertised address. */
#define DFS_STORAGE_ADDR_MAX    255

struct dfs_storage_service_config {
    /* Data bytes per GetFragment message: a multiple of DFS_BLOCK_SIZE, at most
       DFS_STORAGE_CHUNK_MAX. 0 means DFS_STORAGE_CHUNK_MAX. */
    size_t chunk_bytes;
    /* Most bytes per second chain puts may send to one next node, all of them together
       (--forward-rate); the lower of this and a put's header forward_rate applies. 0 means no
       limit of the node's own. */
    uint64_t forward_rate;
    /* This node's address as others name it (host:port, the address it registers), so that a
       forward list naming it is refused as a loop. Borrowed for the call only (copied). NULL
       or "": not known yet; see dfs_storage_service_set_advertise. Addresses are compared as
       strings: another name for the same node is not recognised. */
    const char *advertise;
    /* RepairFragment: bytes/s for everything the node's repairs read, all repairs together
       (--repair-rate); 0 = unlimited. */
    uint64_t repair_rate;
    /* Repairs running at once (more wait queued); 0 means 2. */
    int repair_workers;
    /* A repair source that sends nothing for this long is given up; 0 means 30000. */
    int64_t repair_stall_ms;
    /* How channels to other nodes (chain forwarding, repair sources) are secured; NULL:
       plaintext, loopback only. Borrowed: must outlive the service. */
    const struct dfs_rpc_link_security *security;
    /* A chain put's send to the next node that has not completed for this long gives the next
       node up (its ack says why); the same limit as the server's stream_idle_ms. 0 means
       DFS_RPC_STREAM_IDLE_MS, < 0 no limit. */
    int64_t stream_idle_ms;
    /*
     * Damage the node sees, for it to be reported (services/storage/reporter.h); NULL: not
     * reported. Both are called on a request thread or a repair worker and must return quickly. `damage`
     * is a dfs.v1.Damage number.
     *   own   a GetFragment with a valid ticket (so the catalog records the copy here) found this
     *         node's copy missing (DAMAGE_MISSING) or a block of it corrupt (DAMAGE_CORRUPT).
     *   peer  a repair skipped a source whose copy was damaged (repair.h, on_bad_source): the
     *         TICKET_GET it was read with and what was seen (borrowed for the call).
     */
    void (*on_own_damage)(void *arg, const char *fragment_id, int damage);
    void (*on_peer_damage)(void *arg, const Dfs__V1__Ticket *ticket, int damage,
                           const char *detail);
    void *damage_arg;
};

/*
 * Create the service over an open store. store is borrowed: it must stay open until the service
 * is destroyed. cfg is copied; NULL means defaults. Returns 0 and *out (free with
 * dfs_storage_service_destroy), DFS_EINVAL (bad chunk_bytes, advertise not a host:port of at
 * most DFS_STORAGE_ADDR_MAX bytes) or DFS_ENOMEM, with *errmsg.
 */
int dfs_storage_service_create(dfs_frag_store *store, const struct dfs_storage_service_config *cfg,
                               dfs_storage_service **out, char **errmsg);

/*
 * Set (replace) the advertised address used for the loop check, for when it is known only once
 * the server has bound its port. addr is copied. Safe from any thread while the server runs;
 * puts already past their header keep the check they had. Returns 0, or DFS_EINVAL (not a
 * host:port of at most DFS_STORAGE_ADDR_MAX bytes: the address is left as it was) with *errmsg.
 */
int dfs_storage_service_set_advertise(dfs_storage_service *svc, const char *addr, char **errmsg);

/*
 * Give the service the key it checks tickets with (RegisterNodeResponse.ticket_key, len
 * DFS_TICKET_KEY_LEN; copied). Until the first call every fragment call is refused with
 * UNAVAILABLE; afterwards each needs a ticket for its operation, fragment and this node (the
 * store's node id), signed with this key and not expired: PERMISSION_DENIED otherwise. Safe from
 * any thread. Returns 0 or DFS_EINVAL.
 */
int dfs_storage_service_set_ticket_key(dfs_storage_service *svc, const uint8_t *key, size_t len,
                                       char **errmsg);

/*
 * Add the five dfs.v1.Storage methods to a server that has not started. The service is the
 * methods' context: it must outlive the server's calls, i.e. destroy it only after
 * dfs_rpc_server_stop (which returns once every call's state, and so every writer and reader the
 * service opened, has been released). Returns 0 or the server's error.
 */
int dfs_storage_service_register(dfs_storage_service *svc, dfs_rpc_server *srv, char **errmsg);

/*
 * Counters since create. The *_active figures count calls whose state is still held: a put's
 * writer is aborted (its temporary file removed), and its downstream call (chain) has ended,
 * before puts_active drops.
 */
struct dfs_storage_service_stats {
    uint64_t puts_active;
    uint64_t puts_ok;
    uint64_t puts_failed;     /* every put that stored nothing: errors and cancels */
    uint64_t forwards_failed; /* chain puts whose downstream call failed by itself */
    uint64_t gets_active;
    uint64_t gets_ok;
    uint64_t gets_failed;
    uint64_t bytes_received;    /* fragment data accepted by PutFragment (committed or not) */
    uint64_t bytes_sent;        /* fragment data handed to gRPC by GetFragment */
    uint64_t bytes_forwarded;   /* message bytes of chain puts handed to a downstream call */
    uint64_t repairs_active;    /* RepairFragment calls queued or running */
    uint64_t repairs_ok;        /* the fragment is durable here (already present included) */
    uint64_t repairs_failed;    /* every other ending: refused, no source, cancelled... */
    uint64_t repair_bytes_read; /* data bytes the repairs received from other nodes */
    uint64_t tickets_refused;   /* calls refused for their ticket (logged at most once a second) */
};

/* Fill *out; safe from any thread while the server runs (each counter is read atomically). */
void dfs_storage_service_stats(dfs_storage_service *svc, struct dfs_storage_service_stats *out);

/* Free the service, its repairer and its cached downstream channels. The server it was
   registered on must be stopped (so every downstream call and every repair has ended). Accepts
   NULL. */
void dfs_storage_service_destroy(dfs_storage_service *svc);

#endif /* DFS_SERVICES_STORAGE_STORAGE_SERVICE_H */
