/* The form of every request the Metadata and Storage services take, checked before any work. */
#ifndef DFS_SERVICES_VALIDATE_VALIDATE_H
#define DFS_SERVICES_VALIDATE_VALIDATE_H

#include "dfs/v1/metadata.pb-c.h"
#include "dfs/v1/storage.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Pure functions (no I/O, no state, no gRPC): each looks at one parsed request and says whether
 * its form is acceptable, before a handler touches the catalog, the disk or the network. A
 * handler calls its validator first and answers INVALID_ARGUMENT with the message on failure
 * (dfs_rpc_call_reject logs the line); the fuzzers in fuzz/ call the very same functions. What
 * needs state (does the file exist, is the node alive, is this node in its own forward list) stays
 * in the handlers and the catalog, which check again what they rely on.
 *
 * Every function returns 0, or DFS_EINVAL with a one-line message in *errmsg (caller frees; errmsg
 * may be NULL). A message quotes at most DFS_VALIDATE_QUOTE_MAX bytes of what the client sent,
 * printable ASCII only (anything else becomes '?'), so it is safe in a log line and a status.
 * Requests are protobuf-c messages as unpacked by the server: strings are never NULL and are
 * already free of NUL bytes and valid UTF-8 (services/rpc/wirecheck.h).
 *
 * The limits, shared with the services (static_asserts there keep them equal):
 */
#define DFS_VALIDATE_QUOTE_MAX        48
#define DFS_VALIDATE_REPLICAS_MAX     16  /* k, per replicated fragment */
#define DFS_VALIDATE_FRAGMENTS_MAX    256 /* F */
#define DFS_VALIDATE_EC_WIDTH_MAX     32  /* K + M */
#define DFS_VALIDATE_ADDRESS_MAX      255 /* host:port */
#define DFS_VALIDATE_ZONE_MAX         63
#define DFS_VALIDATE_FORWARD_MAX      16 /* a chain put's forward list */
/* One PutFragment message's data (the clients send 1 MiB, less when throttled). */
#define DFS_VALIDATE_CHUNK_MAX        (1u << 20)
/* The lowest forward_rate a chain put may ask for (0 = none): a chunk then takes at most 17 min. */
#define DFS_VALIDATE_FORWARD_RATE_MIN 1024
/* Ids per ReportFragments list (the inventory sends pages of at most 50,000). */
#define DFS_VALIDATE_REPORT_MAX       100000
/* GetHealth.list: paths per answer, per kind (10,000 paths of 1 KiB fit a message). */
#define DFS_VALIDATE_HEALTH_LIST_MAX  10000
/* RepairFragment: sources of a copy, candidates of a rebuild. */
#define DFS_VALIDATE_SOURCES_MAX      256
/* RepairFragment (rebuild): the largest erasure-code cell. */
#define DFS_VALIDATE_CELL_MAX         (4u << 20)
/* ReportDamage: copies per report, and the bytes of each one's detail. */
#define DFS_VALIDATE_DAMAGE_MAX       256
#define DFS_VALIDATE_DETAIL_MAX       256

/* ---- dfs.v1.Metadata ---- */

/* node_id an id; address a host:port (DFS_VALIDATE_ADDRESS_MAX); zone printable, at most
   DFS_VALIDATE_ZONE_MAX bytes; every usage figure at most INT64_MAX; node_token_id (16 hex
   digits) and node_token_sha256 (32 bytes) both or neither. */
int dfs_validate_register_node(const Dfs__V1__RegisterNodeRequest *req, char **errmsg);
/* usage figures at most INT64_MAX. */
int dfs_validate_heartbeat(const Dfs__V1__HeartbeatRequest *req, char **errmsg);
/*
 * path a dfs path (common/path.h); size at most INT64_MAX; policy a known one; redundancy, when
 * given: a known scheme; replicas (k) 0..16 and fragments (F) 0..256, 0 meaning the cluster's
 * default; data (K) and parity (M) with K + M <= 32, K >= 1 for an explicit ERASURE; no counts of
 * the other scheme. Plus, when every count is given, dfs_validate_file_layout of the plan.
 */
int dfs_validate_create_file(const Dfs__V1__CreateFileRequest *req, char **errmsg);
/*
 * The layout a CreateFile resolves to (defaults filled in): nfragments fragments of at most
 * fragment_size bytes, each on `copies` nodes. No fragment above what a storage node takes
 * (DFS_FRAG_MAX_SIZE), and the bytes stored in all (fragment_size x nfragments x copies) at most
 * INT64_MAX, so no sum over the catalog can overflow.
 */
int dfs_validate_file_layout(uint64_t fragment_size, uint32_t nfragments, uint32_t copies,
                             char **errmsg);
/* file_id and failed_node_id ids; fragment_index below DFS_VALIDATE_FRAGMENTS_MAX. */
int dfs_validate_replace_target(const Dfs__V1__ReplaceTargetRequest *req, char **errmsg);
/*
 * file_id an id; sha256 32 bytes; 1..DFS_VALIDATE_FRAGMENTS_MAX fragments of distinct indexes
 * below DFS_VALIDATE_FRAGMENTS_MAX, sizes at most DFS_FRAG_MAX_SIZE, each acknowledged by
 * 1..DFS_VALIDATE_EC_WIDTH_MAX distinct node ids, with no receipts or one per node id, each empty
 * or DFS_RECEIPT_LEN bytes (whether they check is the service's business).
 */
int dfs_validate_commit_file(const Dfs__V1__CommitFileRequest *req, char **errmsg);
/*
 * StitchFile (issue 17): path a dfs path; 1..DFS_VALIDATE_STITCH_PARTS_MAX parts, each a dfs path
 * other than path; md5 empty or 16 bytes; meta at most 8192 bytes; if_file_id empty or an id.
 * (Repeats, and whether the parts
 * exist, are the catalog's checks, in its transaction.)
 */
#define DFS_VALIDATE_STITCH_PARTS_MAX 10000
int dfs_validate_stitch_file(const Dfs__V1__StitchFileRequest *req, char **errmsg);
/* file_id an id. */
int dfs_validate_abort_file(const Dfs__V1__AbortFileRequest *req, char **errmsg);
/* path a dfs path. */
int dfs_validate_get_file(const Dfs__V1__GetFileRequest *req, char **errmsg);
/* prefix a listing prefix (dfs_path_prefix_canon); page_token empty or a canonical path (the
   last path of the previous page). page_size is capped by the catalog, not refused. */
int dfs_validate_list_files(const Dfs__V1__ListFilesRequest *req, char **errmsg);
/* path a dfs path. */
int dfs_validate_delete_file(const Dfs__V1__DeleteFileRequest *req, char **errmsg);
/* node_id 1..32 lower-case hex digits (an id or a prefix of one); state NODE_DRAINING,
   NODE_DECOMMISSIONED or NODE_ALIVE. */
int dfs_validate_set_node_state(const Dfs__V1__SetNodeStateRequest *req, char **errmsg);
/* corrupt, present, missing and scrubbed at most DFS_VALIDATE_REPORT_MAX fragment ids each (a
   scrubbed size at most DFS_FRAG_MAX_SIZE); present, page and last only with full. (The node is
   the caller's token's.) */
int dfs_validate_report_fragments(const Dfs__V1__ReportFragmentsRequest *req, char **errmsg);
/* 1..DFS_VALIDATE_DAMAGE_MAX copies, each with a ticket, a known damage other than UNSPECIFIED,
   and a detail of at most DFS_VALIDATE_DETAIL_MAX bytes. (The tickets themselves are checked by
   the service, which holds the keys.) */
int dfs_validate_report_damage(const Dfs__V1__ReportDamageRequest *req, char **errmsg);
/* list at most DFS_VALIDATE_HEALTH_LIST_MAX. */
int dfs_validate_get_health(const Dfs__V1__GetHealthRequest *req, char **errmsg);

/* from and to dfs paths, to not inside from (a directory cannot move into itself); from = to is
   well-formed (nothing moves). Whether either exists is the catalog's business. */
int dfs_validate_rename(const Dfs__V1__RenameRequest *req, char **errmsg);
/* path a dfs path; with attributes: mode, when has_mode, permission bits only (at most 07777).
   (remove ignores the attributes.) */
int dfs_validate_set_attributes(const Dfs__V1__SetAttributesRequest *req, char **errmsg);
/* path "/" (the top, for its directories) or a dfs path. */
int dfs_validate_get_attributes(const Dfs__V1__GetAttributesRequest *req, char **errmsg);
/* GetReplicas (issue 16, dfs metadata ls): no fields yet, always valid (unknown fields are
   dropped by the parser); the handler calls it so a later field gets its check here. */
int dfs_validate_get_replicas(const Dfs__V1__GetReplicasRequest *req, char **errmsg);
/* AddReplica: id > 0; raft_address and grpc_address each a host:port, without '='. */
int dfs_validate_add_replica(const Dfs__V1__AddReplicaRequest *req, char **errmsg);
/* RemoveReplica: id > 0. */
int dfs_validate_remove_replica(const Dfs__V1__RemoveReplicaRequest *req, char **errmsg);

/* ---- dfs.v1.Storage ---- */

/*
 * PutFragment's first message's header: fragment_id a fragment id; size at most DFS_FRAG_MAX_SIZE;
 * forward at most DFS_VALIDATE_FORWARD_MAX entries, each a host:port, none twice, with as many
 * forward_tickets and hop_tickets; forward_rate 0 or at least DFS_VALIDATE_FORWARD_RATE_MIN.
 */
int dfs_validate_fragment_header(const Dfs__V1__FragmentHeader *h, char **errmsg);
/* One PutFragment message's data: at most DFS_VALIDATE_CHUNK_MAX bytes, with one CRC per
   64 KiB piece (ncrcs == dfs_crc32c_nblocks(len)). */
int dfs_validate_put_data(size_t len, size_t ncrcs, char **errmsg);
/* fragment_id a fragment id. (Any range is well-formed; one past the fragment's end is
   OUT_OF_RANGE from the handler, which knows the size.) */
int dfs_validate_get_fragment(const Dfs__V1__GetFragmentRequest *req, char **errmsg);
/* fragment_id a fragment id. */
int dfs_validate_delete_fragment(const Dfs__V1__DeleteFragmentRequest *req, char **errmsg);
int dfs_validate_stat_fragment(const Dfs__V1__StatFragmentRequest *req, char **errmsg);
/*
 * fragment_id a fragment id; size at most DFS_FRAG_MAX_SIZE; copy: 0..DFS_VALIDATE_SOURCES_MAX
 * sources, each a host:port; rebuild: 1 <= K, K + M <= 32, index < K + M, 0 < cell_size <=
 * DFS_VALIDATE_CELL_MAX dividing the size, 0..DFS_VALIDATE_SOURCES_MAX sources, each of an index
 * below K + M other than `index`, with a fragment id and a host:port.
 */
int dfs_validate_repair_fragment(const Dfs__V1__RepairFragmentRequest *req, char **errmsg);

/* ---- any of them ---- */

/*
 * Validate msg with the function of its type (by descriptor): any request message above,
 * StatRequest, ListNodesRequest and GetReplicasRequest (no fields: always valid), and PutFragmentRequest (its header,
 * when present, and its data). DFS_EINVAL for a message of any other type.
 */
int dfs_validate_request(const ProtobufCMessage *msg, char **errmsg);

#endif /* DFS_SERVICES_VALIDATE_VALIDATE_H */
