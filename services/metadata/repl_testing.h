/* A tiny deterministic state machine and a one-replica process, for the replication tests and
   benchmark (not for production: the catalog is the real owner). */
#ifndef DFS_SERVICES_METADATA_REPL_TESTING_H
#define DFS_SERVICES_METADATA_REPL_TESTING_H

#include "services/metadata/replication.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/*
 * repl_fsm: an SQLite database (WAL, synchronous=NORMAL: the log is the durable record) built
 * the way REPLICATION.md proposes for the catalog:
 *
 *   meta(k = 0, applied, count, chain)   the applied index, commands stored, hash chain
 *   cmds(idx, pos, body), PRIMARY KEY (idx, pos)
 *
 * apply runs one transaction per entry: each command is stored and extends the chain
 * (chain = SHA-256(chain || index LE64 || position LE32 || body)); its result is the new count
 * (8 bytes LE). A command starting with '!' is refused with DFS_EEXIST and changes nothing (a
 * deterministic domain error). Two replicas that applied the same commands in the same order
 * have the same (applied, count, chain). An apply at or below the applied index is counted as a
 * violation (the engine must never do it) and refused. Snapshots: prepare opens a read
 * transaction on a second connection, write backs it up to the file on the worker thread,
 * restore stamps the file with its index and backs it up into the live database.
 */
typedef struct repl_fsm repl_fsm;

extern const struct dfs_repl_ops repl_fsm_ops; /* ctx: the repl_fsm */

struct repl_fsm_digest {
    uint64_t applied;        /* the state's applied index */
    uint64_t count;          /* commands stored */
    unsigned char chain[32]; /* hash chain over them */
    uint64_t violations;     /* applies at or below the applied index (must stay 0) */
    uint64_t apply_calls;    /* since open */
    uint64_t restores;       /* snapshots installed since open */
    uint64_t snapshots;      /* snapshot files written since open */
};

/* Open (creating) the database at path. 0 or DFS_EIO with *errmsg. */
int repl_fsm_open(const char *path, repl_fsm **out, char **errmsg);
void repl_fsm_close(repl_fsm *f);
void repl_fsm_digest(repl_fsm *f, struct repl_fsm_digest *out);
/* The next n applies fail as an I/O error would (nothing applied). */
void repl_fsm_fail_applies(repl_fsm *f, int n);
/* While held, snapshot_write waits (to show that applies go on meanwhile). */
void repl_fsm_hold_snapshots(repl_fsm *f, bool hold);
/* Wait up to timeout_ms until a snapshot_write is waiting on the hold. */
bool repl_fsm_wait_snapshot_held(repl_fsm *f, int64_t timeout_ms);
/* While held, apply waits before it starts (the replication thread stands still, as behind a
   slow disk): a follower that has heard of a commit it has not applied. */
void repl_fsm_hold_applies(repl_fsm *f, bool hold);
/* Wait up to timeout_ms until an apply is waiting on that hold. */
bool repl_fsm_wait_apply_held(repl_fsm *f, int64_t timeout_ms);
/* Hex of the first 8 bytes of the chain, into buf[17]. */
void repl_fsm_chain_hex(const struct repl_fsm_digest *d, char *buf);

/*
 * A replica in its own process (the test and the benchmark SIGKILL it): the program re-executes
 * itself with argv[1] == "--repl-node"; its main() then calls repl_node_main(argc, argv).
 *
 *   --repl-node --id N --address A --dir D [--members "1@A1,2@A2,..."] [--election-ms N]
 *               [--heartbeat-ms N] [--threshold N] [--trailing N] [--max-inflight N]
 *               [--max-batch N]
 *
 * It keeps its state in D/state.db and its log in D/repl, and answers one line per command line
 * on stdin:
 *   status                      status role=... ready=0|1 leader=ID term=... commit=...
 *                               applied=... state=... count=... chain=HEX snaps=... restores=...
 *                               violations=... mono=NS
 *   propose N C SIZE TIMEOUT_MS N commands of SIZE bytes from C threads, each waiting for its
 *                               outcome before the next: propose ok=... notleader=... lost=...
 *                               timeout=... other=... ns=ELAPSED first=NS last=NS (CLOCK_MONOTONIC
 *                               of the first and last success, comparable across processes)
 *   quit                        bye (then exits 0); end of input does the same
 * A failed start prints "error <message>" and exits 1.
 */
int repl_node_main(int argc, char **argv);

/* The parent's side of a replica process. */
struct repl_child {
    pid_t pid;
    FILE *to;   /* its stdin */
    FILE *from; /* its stdout */
};

/*
 * Start `exe --repl-node ARGS...` (args NULL-terminated, after "--repl-node"); the child dies
 * with its parent (PR_SET_PDEATHSIG). Returns 0 or -1.
 */
int repl_child_start(struct repl_child *c, const char *exe, const char *const *args);
/* Send one command line and read the answer line into reply (newline stripped). 0 or -1. */
int repl_child_cmd(struct repl_child *c, const char *line, char *reply, size_t size);
/* SIGKILL and reap it. */
void repl_child_kill(struct repl_child *c);
/* Ask it to quit and reap it; returns its exit status (or -1). */
int repl_child_quit(struct repl_child *c);

/* The value of key=... in a reply line (0 when absent); the text form into buf. */
uint64_t repl_kv(const char *line, const char *key);
bool repl_kv_str(const char *line, const char *key, char *buf, size_t size);

/* A TCP port on 127.0.0.1 nobody listens on right now. */
int repl_free_port(void);

#endif /* DFS_SERVICES_METADATA_REPL_TESTING_H */
