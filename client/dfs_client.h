/*
 * The dfs client library: what every client of a dfs cluster is made of (the dfs command, the
 * HTTP gateway, load_gen, later dfs-mount). This is its one public header; everything else in
 * client/ (the transfer engine: plans, links, throttles, failover, erasure reads) is behind it.
 *
 * One dfs_client holds the connection to the metadata service and the credentials (bearer token,
 * TLS material) and one gRPC channel per storage node it has talked to, kept until
 * dfs_client_close and shared by its transfers (channels reconnect by themselves, so a node that
 * restarts on the same address is reached again); each transfer has its own links over them,
 * each throttled to the transfer's own rate. The verbs are the operations a user names.
 *
 * Results: records from the catalog are the protobuf-c messages of protos/dfs/v1 (they are the
 * catalog's vocabulary already; a parallel set of structs would be a second one). A verb whose
 * answer is one record gives that record; a verb whose answer is more (a page of a listing, a new
 * token with its record) gives the whole response. Either way the caller owns it and frees it
 * with protobuf_c_message_free_unpacked; on failure nothing is returned.
 *
 * Errors: every verb returns 0 or a DFS_ code (common/err.h) and, when errmsg is not NULL, a
 * malloc'd one-line reason the caller frees. A metadata service that cannot be reached reads
 * "cannot reach the metadata service at ADDR (...)"; otherwise the reason is what the service
 * said.
 *
 * Retries: each catalog verb says whether it is retried. Idempotent ones are retried for up to
 * 2 s while the service is unavailable (a restart), within the call's deadline; the others
 * (rm, token create) are made once, since a retry after a lost answer could act twice.
 *
 * Threads: a dfs_client may be used from many threads at once (the gateway and load_gen do);
 * each call's options and results belong to its caller.
 */
#ifndef DFS_CLIENT_DFS_CLIENT_H
#define DFS_CLIENT_DFS_CLIENT_H

#include "dfs/v1/metadata.pb-c.h"
#include "dfs/v1/types.pb-c.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* Bytes of a SHA-256 digest (a file's, in the catalog and in results). */
#define DFS_SHA256_BYTES 32

typedef struct dfs_client dfs_client;

/* ---- opening ---------------------------------------------------------------------------------- */

/* How to reach and authenticate to the cluster. Every string is borrowed for dfs_client_open only. */
struct dfs_client_options {
    /* The metadata service, "host:port" (required). */
    const char *metadata;
    /* The deadline of each metadata call; 0 means 10000 ms. */
    int64_t timeout_ms;
    /*
     * The bearer token the calls carry, the first of: `token` itself; the first line of the file
     * `token_file` (which must give no access to others); and, with token_from_env, $DFS_TOKEN,
     * else the file named by $DFS_TOKEN_FILE, else ~/.config/dfs/token when it exists. None of
     * them: the calls carry no token (and the service says what it thinks of that).
     */
    const char *token;
    const char *token_file;
    bool token_from_env;
    /*
     * TLS to the metadata service and the storage nodes. All NULL: plaintext, which is allowed
     * only to loopback addresses unless `insecure`. tls_ca: the CA the servers' certificates
     * chain to (NULL with a client certificate: the system's roots); tls_cert and tls_key: a
     * client certificate for mutual TLS; tls_server_name: the name the servers' certificates
     * carry when the addresses are not in them.
     */
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
    bool insecure;
    /*
     * At most this many transfers (dfs_client_put, _get, _get_range) run at once on this handle;
     * 0: no limit. Each transfer holds a few MiB of buffers for its links, so a server that runs
     * one transfer per request (the gateway) bounds its memory with this. A transfer beyond the
     * limit waits for a slot up to transfer_wait_ms (0: 30000 ms), then fails with DFS_EUNAVAIL
     * ("too many transfers at once").
     */
    unsigned max_transfers;
    int64_t transfer_wait_ms;
};

/*
 * Read the TLS files, find the token, and make the connection (it connects lazily, at the first
 * call). The TLS files are read first, then the token. Returns 0 and *out (dfs_client_close), or,
 * with a one-line *errmsg: DFS_EINVAL for no address ("no metadata service address: use
 * --metadata HOST:PORT or set DFS_METADATA"), a missing, unreadable or inconsistent TLS file set,
 * or a token that is not one ("$DFS_TOKEN is not a token"); DFS_EUNAUTH for a token file that
 * cannot be read or holds no token; DFS_EPERM for a token file open to every user, or plaintext
 * to a non-loopback address without `insecure`.
 */
int dfs_client_open(const struct dfs_client_options *o, dfs_client **out, char **errmsg);

/* Accepts NULL. Every call on c must have returned. The token is wiped from memory. */
void dfs_client_close(dfs_client *c);

/* The metadata service's address given at open (borrowed from c). */
const char *dfs_client_metadata(const dfs_client *c);

/*
 * Send the gRPC core's own log lines through dfs_log (common/log.h): its errors as warn lines,
 * the rest as debug. Process-wide: call once from main(), after dfs_log_init.
 */
void dfs_client_route_grpc_logs(void);

/* ---- transfers -------------------------------------------------------------------------------- */

/* Told as data moves: file bytes done so far (copies counted once) out of total. */
typedef void dfs_client_progress_fn(void *arg, uint64_t done, uint64_t total);

/*
 * Files up to this size are one fragment unless the put names a fragment count. Splitting a file
 * buys parallel streams, and costs per fragment, whatever its size: k streams, k fsynced files
 * (file and folder), k catalog rows. Up to one 64 KiB block (the unit every copy is checked and
 * written in) the fragments of a split file would each be smaller than a block, each a single
 * message sent in well under a millisecond, so nothing runs in parallel that is worth the fixed
 * costs: a 1 KiB file as 4 fragments made 12 fsynced files where 3 do.
 */
#define DFS_SMALL_FILE (64u * 1024u)

struct dfs_client_put_opts {
    uint32_t replicas; /* k; 0 = the cluster's default */
    /* F; 0 = the cluster's default, except that a file of at most DFS_SMALL_FILE bytes is one
       fragment. */
    uint32_t fragments;
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
    /* Called as data goes out; may be NULL. */
    dfs_client_progress_fn *progress;
    void *progress_arg;
    /* Told, in one line, what the put waits for once it waits long (a node that makes no progress
       for 5 s, the metadata service at the commit), again each second while it waits, and NULL
       once it no longer does; may be NULL. */
    void (*note)(void *arg, const char *what);
    void *note_arg;
    /* Read this open regular file (from offset 0) instead of opening `local`, which then only
       names it in messages: standard input spooled to a temporary file (dfs_client_spool). Not
       closed. */
    bool from_fd;
    int fd;
    /* Or read these bytes (mem_len of them, borrowed for the call) instead of a file: a body the
       caller holds in memory (the S3 gateway). Wins over from_fd; `local` only names it. */
    const uint8_t *mem;
    uint64_t mem_len;
    /* The SHA-256 of the bytes to store, when the caller computed it as they arrived (the S3
       gateway, which hashes a body while it checks its signature): committed as the file's, and
       the engine does not read the bytes a second time to hash them. It must be right: every get
       checks the file against it. NULL: the engine hashes the bytes. Borrowed. */
    const uint8_t *sha256;
    /* S3 (the gateway): the content's MD5 (16 bytes) and the headers to keep with the file
       ("name\0value\0"..., sorted, at most 8 KiB), committed with it; NULL: none. Borrowed. */
    const uint8_t *md5;
    const void *meta;
    size_t meta_len;
    /* Conditional writes, checked in the commit's transaction (DFS_EPRECOND, the put aborted): no
       file at `remote` (if_absent), or the file there is this file id (if_file_id; NULL: none). */
    bool if_absent;
    const char *if_file_id;
};

struct dfs_client_put_result {
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
 * visible only when every copy is durable and CommitFile succeeded (the commit is retried while
 * the service cannot be reached, for a while); on any failure the pending file is aborted, so
 * nothing partial is ever visible.
 *
 * opts is borrowed for the call. Returns 0 and fills *out, or a DFS_ code with *errmsg.
 */
int dfs_client_put(dfs_client *c, const char *local, const char *remote,
                   const struct dfs_client_put_opts *opts, struct dfs_client_put_result *out,
                   char **errmsg);

struct dfs_client_get_opts {
    /* Cancel and fail over a stream that makes no progress for this long; 0 means 60 s. */
    int64_t stall_timeout_ms;
    /* Polled while the transfer runs; once non-zero the get stops with DFS_ECANCELED. May be
       NULL. */
    volatile sig_atomic_t *interrupted;
    /* Bandwidth: bytes per second on each client<->node link, and for the whole transfer; 0 = no
       limit. A download is paced by how fast it takes data in. */
    uint64_t link_rate, max_rate;
    /* Range requests in flight at once; 0 = 12. */
    unsigned parallel;
    /* dfs_client_get: continue the partial download a failed or interrupted get left in
       "<local>.dfs-part" (with its state in "<local>.dfs-part.state"), when it is of the same
       file; otherwise start over. Replicated files only (an erasure-coded file starts over). */
    bool resume;
    /* Called as data arrives, with the file bytes written so far; may be NULL. */
    dfs_client_progress_fn *progress;
    void *progress_arg;
};

struct dfs_client_get_result {
    uint64_t size;
    uint8_t sha256[DFS_SHA256_BYTES];
    uint32_t fragments;
    uint32_t failovers; /* times a range continued from another copy after a failure */
    uint64_t rebuilt;   /* erasure code: data cells rebuilt from parity */
    uint64_t resumed;   /* bytes a resume found already downloaded */
    double seconds;
};

/*
 * Fetch `remote` into `local` ("-" for standard output). The file comes in 4 MiB ranges, in file
 * order, a window of them in flight at once, spread over every copy of every fragment; with a
 * per-link rate every link instead pulls ranges of the fragments it holds whenever it may send,
 * so that all of them are busy from start to end. Every 64 KiB block is checked against its
 * CRC32C as it arrives, every copy's checksum against the catalog's before any of its bytes are
 * used, every fragment against its checksum, and the whole file against its SHA-256. When a copy
 * fails (node down, corrupt block, another checksum, gone), the range continues from another copy
 * at the byte where it stopped; when no copy of a fragment is left, the layout is fetched again
 * (a rebalance or a repair may have moved them). An erasure-coded file whose data fragment cannot
 * be read is rebuilt from parity. Copies found damaged are reported to the metadata service
 * (ReportDamage) before the call returns, whether it succeeded or not.
 *
 * The data goes to "<local>.dfs-part" and is renamed to `local` only once the SHA-256 matched, so
 * `local` is never left half-written. When the get is interrupted or the network fails, the part
 * file stays with a state file that opts->resume continues from (the error message says so);
 * after any other failure both are removed.
 *
 * A `local` that exists and is not a regular file is never renamed over: a character or block
 * device (/dev/null) or a FIFO is opened for writing as it is, a Unix stream socket is connected
 * to, and the file is streamed to it in order (the last piece held back until every check
 * passed). A directory is DFS_EINVAL, and so is opts->resume with such a `local` or with "-".
 *
 * opts is borrowed for the call. Returns 0 and fills *out, or a DFS_ code with *errmsg.
 */
int dfs_client_get(dfs_client *c, const char *remote, const char *local,
                   const struct dfs_client_get_opts *opts, struct dfs_client_get_result *out,
                   char **errmsg);

/*
 * Stream bytes [offset, offset + length) of a file whose layout is `file` (dfs_client_stat) to
 * out_fd (a pipe or a socket), in order, as they arrive: the same engine as dfs_client_get, with
 * the data going through a scratch file in scratch_dir (NULL: $TMPDIR or /tmp) that holds only
 * the window between what was sent and what is being fetched (about 100 MiB at most whatever the
 * file's size). A slow reader holds the fetchers back. When a fragment runs out of copies the
 * layout is fetched again through c; damaged copies are reported through c.
 *
 * Checks: every 64 KiB block against its CRC32C before any of its bytes are sent (a partial read
 * fetches the whole blocks around the range); every fragment fetched whole against its checksum;
 * the whole file's SHA-256 only when the whole file is read (offset 0, length = size). The last
 * piece of output (up to 1 MiB) is held back until those checks pass, so a reader that got every
 * byte got checked bytes, and a failure shows as a short read.
 *
 * file is borrowed. out_fd is borrowed and left open; a write that fails with EPIPE (the reader
 * closed its end; SIGPIPE must be ignored) stops the get with DFS_ECANCELED. opts->resume is
 * ignored. Returns 0 and fills *out (size = length), DFS_ERANGE when the range is outside the
 * file, or a DFS_ code with *errmsg.
 */
int dfs_client_get_range(dfs_client *c, const Dfs__V1__FileInfo *file, uint64_t offset,
                         uint64_t length, int out_fd, const char *scratch_dir,
                         const struct dfs_client_get_opts *opts, struct dfs_client_get_result *out,
                         char **errmsg);

/*
 * dfs put -: make standard input (or any descriptor `in`) into a regular file whose size is known,
 * for opts->from_fd (a put must tell the metadata service the size first, and re-reads a
 * fragment when a node fails; a pipe allows neither).
 *
 *   - when `in` is a regular file at offset 0, it is used as it is: *out_fd is a dup of it;
 *   - otherwise it is read to its end into a temporary file in `dir` that is already unlinked
 *     (nothing is left behind whatever happens). The copy may take the space free in dir's file
 *     system minus `reserve` bytes (0 means min(64 MiB, 5% of it)), checked before every 1 MiB
 *     written; beyond that it stops with DFS_ENOSPC, saying how much was free.
 *
 * Returns 0 with *out_fd (the caller closes it) and *size; DFS_ECANCELED once *interrupted (may be
 * NULL) is set while reading; DFS_ENOSPC as above; DFS_EIO with the system's reason. Nothing is
 * left open on failure.
 */
int dfs_client_spool(int in, const char *dir, uint64_t reserve, volatile sig_atomic_t *interrupted,
                     int *out_fd, uint64_t *size, char **errmsg);

/* Lower-case hex of a digest (a result's or a record's sha256) into hex[65]. */
void dfs_client_sha256_hex(const uint8_t digest[DFS_SHA256_BYTES],
                           char hex[2 * DFS_SHA256_BYTES + 1]);

/* ---- the catalog: files ----------------------------------------------------------------------- */

/*
 * The record and layout of `remote` (GetFile, retried): size, SHA-256 (always 32 bytes),
 * redundancy, and every fragment's copies with the read tickets dfs_client_get_range needs.
 * DFS_ENOTFOUND: no such file.
 */
int dfs_client_stat(dfs_client *c, const char *remote, Dfs__V1__FileInfo **out, char **errmsg);

/*
 * One page of the files whose path starts with `prefix` (ListFiles, retried), in path order:
 * page_size 0 lets the service choose (1000); page_token NULL or "" starts, and the response's
 * next_page_token ("" after the last page) continues.
 */
int dfs_client_ls(dfs_client *c, const char *prefix, uint32_t page_size, const char *page_token,
                  Dfs__V1__ListFilesResponse **out, char **errmsg);

/*
 * Remove `remote` (DeleteFile, not retried: a second try after a lost answer would say
 * DFS_ENOTFOUND). Its fragments are removed from the nodes in the background. *removed (removed
 * may be NULL) is the record of the file removed, or NULL when the service sent none.
 */
int dfs_client_rm(dfs_client *c, const char *remote, Dfs__V1__FileInfo **removed, char **errmsg);

/*
 * S3 buckets (the catalog's; top-level directories that exist while empty). Create: DFS_EEXIST
 * when it exists (not retried); delete: DFS_EPRECOND while a file is under /name/, DFS_ENOTFOUND
 * without it (not retried); get: *out (out may be NULL; free with
 * protobuf_c_message_free_unpacked), DFS_ENOTFOUND; list: every bucket by name.
 */
int dfs_client_bucket_create(dfs_client *c, const char *name, const char *token_id, char **errmsg);
int dfs_client_bucket_delete(dfs_client *c, const char *name, char **errmsg);
int dfs_client_bucket_get(dfs_client *c, const char *name, Dfs__V1__Bucket **out, char **errmsg);
int dfs_client_buckets(dfs_client *c, Dfs__V1__ListBucketsResponse **out, char **errmsg);

/* ---- the cluster ------------------------------------------------------------------------------ */

/* Every storage node: state, usage, zone, placement groups, last heartbeat (ListNodes, retried). */
int dfs_client_nodes(dfs_client *c, Dfs__V1__ListNodesResponse **out, char **errmsg);

/* The cluster summary: files, bytes, nodes by state, pending work (Stat, retried). */
int dfs_client_status(dfs_client *c, Dfs__V1__StatResponse **out, char **errmsg);

/*
 * File health and repair progress (GetHealth, retried): with verify, every node is asked for
 * every copy first (slow); list > 0 names up to that many lost and degraded files.
 */
int dfs_client_health(dfs_client *c, bool verify, uint32_t list, Dfs__V1__GetHealthResponse **out,
                      char **errmsg);

/*
 * Whether the metadata service answers now: one Stat call within timeout_ms, not retried (a
 * readiness probe). Returns 0, or the call's DFS_ code with *errmsg.
 */
int dfs_client_ping(dfs_client *c, int64_t timeout_ms, char **errmsg);

/*
 * Admin verbs: one function each, rather than one generic call taking a method name, so that
 * each states its retry rule (token create must not be retried), the compiler checks the request
 * and response types, and no caller needs the RPC layer.
 */

/*
 * Set a storage node's state (SetNodeState, retried): NODE_DRAINING moves its fragments elsewhere
 * and then retires it; NODE_ALIVE returns a draining or retired node to service;
 * NODE_DECOMMISSIONED retires it now; the service refuses that while the node holds the only
 * readable copy of a file, unless force. node is an id or a unique prefix of one. *out
 * (out may be NULL) is the node's record afterwards, or NULL when the service sent none.
 */
int dfs_client_set_node_state(dfs_client *c, const char *node, Dfs__V1__NodeState state, bool force,
                              Dfs__V1__Node **out, char **errmsg);

/*
 * Make a bearer token of a role (CreateToken, not retried: a retry would make a second token),
 * named `name`, valid for ttl_ms (0: until revoked). The response holds the token (shown only this
 * once) and its record.
 */
int dfs_client_token_create(dfs_client *c, Dfs__V1__TokenRole role, const char *name,
                            int64_t ttl_ms, Dfs__V1__CreateTokenResponse **out, char **errmsg);

/* dfs_client_token_create, and the token's S3 access key: the response's s3_access_key_id and
   s3_secret (shown only this once). DFS_EPRECOND when the service has no S3 keys. */
int dfs_client_token_create_s3(dfs_client *c, Dfs__V1__TokenRole role, const char *name,
                               int64_t ttl_ms, Dfs__V1__CreateTokenResponse **out, char **errmsg);

/*
 * The day's SigV4 signing key of an S3 access key for (date YYYYMMDD, region, "s3") and its
 * token's record (GetSigningKey, retried; admin role): what the S3 gateway checks signatures
 * with. DFS_ENOTFOUND: no such key; DFS_EUNAUTH: revoked or expired.
 */
int dfs_client_s3_signing_key(dfs_client *c, const char *access_key_id, const char *date,
                              const char *region, Dfs__V1__GetSigningKeyResponse **out,
                              char **errmsg);

/* Revoke a token for good (RevokeToken, retried); id may be a unique prefix. *out (out may be
   NULL) is its record, or NULL when the service sent none. */
int dfs_client_token_revoke(dfs_client *c, const char *id, Dfs__V1__TokenInfo **out, char **errmsg);

/* The tokens (ListTokens, retried); with all, revoked and expired ones too. */
int dfs_client_token_list(dfs_client *c, bool all, Dfs__V1__ListTokensResponse **out,
                          char **errmsg);

/* The record of the token c presents (WhoAmI, retried); *out is NULL when the service sent none. */
int dfs_client_whoami(dfs_client *c, Dfs__V1__TokenInfo **out, char **errmsg);

/* ---- metadata replicas (issue 16: dfs metadata ls) ---- */

/* One metadata replica as asked directly: its answer, or why it gave none. */
struct dfs_client_replica {
    char *address;                      /* the gRPC address asked ("host:port") */
    Dfs__V1__GetReplicasResponse *info; /* its own view, or NULL when it did not answer */
    char *error;                        /* why not (info NULL), else NULL */
};

/*
 * Ask every metadata replica for its own view (GetReplicas, admin role, not retried: one try
 * each, so a dead replica costs at most the call's deadline and usually a refused connection):
 * first each address of the list c was opened with, in order, then every member whose gRPC
 * address an answer names and the list lacks. Each replica is asked directly (not through the
 * leader): followers answer too. Returns 0 with *out (n entries; free with
 * dfs_client_replicas_free) whether or not replicas answered, or DFS_ENOMEM / DFS_EINVAL with
 * *errmsg.
 */
int dfs_client_replicas(dfs_client *c, struct dfs_client_replica **out, size_t *n, char **errmsg);

/* Accepts NULL. */
void dfs_client_replicas_free(struct dfs_client_replica *v, size_t n);

/*
 * Membership changes on the leader, one at a time (AddReplica / RemoveReplica, admin role, not
 * retried): add the running replica `id` (started with --join) at its Raft and gRPC addresses,
 * answered once it is a voter; remove member `id`. A change while another one runs is refused
 * (the message says so).
 */
int dfs_client_replica_add(dfs_client *c, uint64_t id, const char *raft, const char *grpc,
                           char **errmsg);
int dfs_client_replica_remove(dfs_client *c, uint64_t id, char **errmsg);

/*
 * Rename `from` to `to` in one catalog operation (Rename, not retried: a retry after a lost answer
 * would find nothing at `from`): a file, or a directory with every file under it. A file at `to`
 * is replaced only with replace. *moved (may be NULL) is how many files moved. DFS_ENOTFOUND:
 * nothing at `from`; DFS_EEXIST: `to` is taken.
 */
int dfs_client_rename(dfs_client *c, const char *from, const char *to, bool replace,
                      uint64_t *moved, char **errmsg);

/* What a stitched file keeps, and its write conditions; all optional (zeroed: none). */
struct dfs_client_stitch_opts {
    const uint8_t *md5; /* 16 bytes, or NULL */
    const void *meta;   /* "name\0value\0"..., sorted, at most 8 KiB; NULL: none */
    size_t meta_len;
    bool if_absent;         /* DFS_EPRECOND when a file is at `path` */
    const char *if_file_id; /* DFS_EPRECOND unless this file is at `path`; NULL: none */
};

/*
 * Make the committed file `path` whose bytes are the committed files `parts[0..nparts)`
 * concatenated, in one catalog operation that copies no byte (StitchFile, not retried: a retry
 * after a lost answer would find the parts gone). The parts leave the namespace and become the
 * file's segments (a stitched part is flattened); a file at `path` is replaced. opts (may be NULL)
 * is borrowed. *out (may be NULL) is the new file's record (no layout), the caller's.
 * DFS_ENOTFOUND: a part is missing; DFS_EINVAL: a part is listed twice, or is `path`;
 * DFS_EPRECOND: a condition failed.
 */
int dfs_client_stitch(dfs_client *c, const char *path, const char *const *parts, size_t nparts,
                      const struct dfs_client_stitch_opts *opts, Dfs__V1__FileInfo **out,
                      char **errmsg);

/*
 * Mode, owner and mtime of a path and explicit directories (dfs-mount), kept in the catalog apart
 * from file records. attrs_set merges *a (its has_* fields say which) into path's, or with remove
 * forgets them (SetAttributes, retried: both are idempotent). attrs_get reads them (GetAttributes,
 * retried): found says whether any are kept; with list_dirs, dirs names the explicit directories
 * right under path ("/" lists the top).
 */
int dfs_client_attrs_set(dfs_client *c, const char *path, const Dfs__V1__PathAttributes *a,
                         bool remove, char **errmsg);
int dfs_client_attrs_get(dfs_client *c, const char *path, bool list_dirs,
                         Dfs__V1__GetAttributesResponse **out, char **errmsg);

#endif /* DFS_CLIENT_DFS_CLIENT_H */
