/* Repair planning: a repair's target, its sources and mode, its deadline, backoff and claiming. */
#ifndef DFS_METADATA_REPAIRPLAN_H
#define DFS_METADATA_REPAIRPLAN_H

#include "metadata/catalog.h"
#include "metadata/placer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The catalog queues what needs repair (dfs_catalog_repair_plan, dfs_catalog_repair_queue) and
 * hands out the next due row (dfs_catalog_repair_next); this module decides how a row is
 * served, and the metadata service turns the decision into a Storage.RepairFragment call:
 *
 *   - target: a node the file's policy allows beside the copies that stay (min_copy/buddy keep
 *     the survivors' copyset or group; outside it only as a logged fallback), never a node that
 *     holds, held or is about to lose a copy of the fragment; a rebalance move keeps the target
 *     the rebalancer checked, while that node is alive and not excluded;
 *   - sources and mode: copy the fragment from its readable copies (alive first, then draining,
 *     then suspect ones), or rebuild it by erasure code from the file's other fragments when no
 *     copy of it is readable, or when an erasure copy failed once;
 *   - deadline: generous for the bytes the target reads; backoff: a failed repair waits 1 s,
 *     doubled per attempt, at most 300 s;
 *   - a result is accepted only with the catalog's size and checksum.
 *
 * Times are passed in (now_ms), never read here.
 */

/* A repair failing this many times is logged as an error, not a warning. */
#define DFS_REPAIRPLAN_ATTEMPTS_LOUD 10

/* How long a repair that failed `attempts` times waits: 1 s doubled per attempt, at most 300 s. */
int64_t dfs_repairplan_backoff_ms(uint32_t attempts);

/* The deadline of a repair whose target reads `read_bytes`: 1 s per MiB, at least 60 s. */
int64_t dfs_repairplan_deadline_ms(uint64_t read_bytes);

/* Order of sources: 0 alive, 1 draining, 2 suspect; -1 for a copy that cannot be read. */
int dfs_repairplan_source_rank(enum dfs_node_state state);

/*
 * The placement inputs of a new copy of fragment `index` of f: placed = its live copies (for
 * erasure code: the live copies of the file's other fragments), the anchors; exclude = every
 * other node holding or having held a copy of it (dead, draining ones too), the nodes of `held`
 * (a queued deletion: dfs_repair_task.held), and for erasure code every other node holding any
 * fragment of the file. Both are avoided by the choice. The arrays are malloc'd (free with
 * dfs_repairplan_nodes_clear); the strings they point to are borrowed from f and held.
 */
struct dfs_repairplan_nodes {
    const char **placed, **exclude;
    size_t nplaced, nexclude;
};

/* Returns DFS_OK or DFS_ENOMEM (then *out is empty). */
int dfs_repairplan_nodes(const struct dfs_file_rec *f, uint32_t index, char (*held)[DFS_ID_HEX + 1],
                         size_t nheld, struct dfs_repairplan_nodes *out);
void dfs_repairplan_nodes_clear(struct dfs_repairplan_nodes *l);

/*
 * Choose the target of task t among nodes[0..nnodes) (the catalog's node list; borrowed): the
 * rebalancer's checked target for a rebalance move (DFS_EPRECOND when it is no longer alive or is
 * excluded), else a placer choice with fallback (logged when used), reserving the fragment's
 * size on it. *out points into nodes. Errors as dfs_placer_choose, with *errmsg.
 */
int dfs_repairplan_target(dfs_placer *placer, const struct dfs_repair_task *t,
                          const struct dfs_node_rec *nodes, size_t nnodes, int64_t now_ms,
                          const struct dfs_node_rec **out, char **errmsg);

/*
 * Claiming serialises picking a row, choosing its target and marking it running, so two
 * workers never race for one row. Opaque: the catalog and placer it works over (borrowed: they
 * must outlive it) and the lock. Lock order: the claim lock, the placer's, the catalog's.
 */
typedef struct dfs_repairplan dfs_repairplan;

/* Returns 0 and *out (free with dfs_repairplan_destroy), or DFS_ENOMEM with *errmsg. */
int dfs_repairplan_create(dfs_catalog *cat, dfs_placer *placer, dfs_repairplan **out,
                          char **errmsg);

/* NULL is a no-op. No call may be running on it. */
void dfs_repairplan_destroy(dfs_repairplan *rp);

/* A claimed repair: the task, and the node chosen to make the copy. Caller storage. */
struct dfs_repair_claim {
    struct dfs_repair_task task; /* owned: free with dfs_repairplan_claim_clear */
    char target[DFS_ID_HEX + 1];
    char address[DFS_NODE_ADDRESS_MAX + 1];
};

/*
 * Claim the next due repair at now_ms: pick it, choose its target, mark it running. *found is
 * false when nothing is due. A row for which no target can be chosen is backed off and logged
 * (a rebalance move that lost its target too; the planner or the next claim drops it once
 * obsolete), and the next row is tried, up to 8 rows; a row taken meanwhile (DFS_EABORTED) is
 * passed over. Errors: the catalog's (reading the queue or the nodes), with *errmsg; *c is then
 * empty. On success with *found, the caller owns c->task.
 */
int dfs_repairplan_claim(dfs_repairplan *rp, int64_t now_ms, struct dfs_repair_claim *c,
                         bool *found, char **errmsg);

/* Free what a claim holds; the claim may be cleared twice. */
void dfs_repairplan_claim_clear(struct dfs_repair_claim *c);

/* One source of a repair: a copy of fragment `fragment` (an index into the task's file). */
struct dfs_repair_source {
    uint32_t fragment;
    size_t replica; /* index into that fragment's replicas */
};

/*
 * What the target reads. Copy: the fragment's readable copies but the target's, in rank order
 * (dfs_repairplan_source_rank), then replica order. Rebuild (erasure code only): every readable
 * copy of the file's other fragments, in rank order, then fragment and replica order.
 * read_bytes: the fragment's size, or size * K for a rebuild.
 */
struct dfs_repair_sources {
    bool rebuild;
    struct dfs_repair_source *v; /* malloc'd: free with dfs_repairplan_sources_clear */
    size_t n;
    uint64_t read_bytes;
};

/*
 * The sources of claim c. skip (may be NULL) leaves a copy out (arg passed through): a copy
 * reported damaged is not read until its node has checked it. The mode is decided before skip:
 * copy for replication; for erasure code copy only when some copy of the fragment is readable
 * and the repair has not failed before. Returns DFS_OK or DFS_ENOMEM with *errmsg.
 */
int dfs_repairplan_sources(const struct dfs_repair_claim *c,
                           bool (*skip)(void *arg, const char *fragment_id, const char *node_id),
                           void *arg, struct dfs_repair_sources *out, char **errmsg);
void dfs_repairplan_sources_clear(struct dfs_repair_sources *s);

/*
 * The target answered with a copy of `size` bytes and `checksum`: DFS_EDATALOSS unless they are
 * the catalog's (the row stays running: call dfs_repairplan_fail), else recorded with
 * dfs_catalog_repair_complete (see its errors: DFS_ENOTFOUND and DFS_EABORTED mean the row is
 * gone or not ours, and nothing is left to do).
 */
int dfs_repairplan_complete(dfs_repairplan *rp, const struct dfs_repair_claim *c, uint64_t size,
                            uint32_t checksum, int64_t now_ms, char **errmsg);

/*
 * The repair failed: the row goes back to the queue, not due before now_ms plus the backoff of
 * its next attempt (dfs_catalog_repair_fail). *attempts (may be NULL) gets the new count.
 */
int dfs_repairplan_fail(dfs_repairplan *rp, const struct dfs_repair_claim *c, int64_t now_ms,
                        uint32_t *attempts, char **errmsg);

/* ---- The planner's pass ------------------------------------------------------------------- */

/*
 * The repair planner walks the catalog (dfs_catalog_repair_plan) in pages, a bounded step at a
 * time, so a 100k-file catalog is walked over a few rounds without stalling the background
 * thread's other work. A pass starts when node states changed or someone asked (a kick), or
 * interval_ms after the last one ended (it catches what no event announced); a start restarts a
 * pass in progress from the beginning. Caller storage owned by one thread: set the first three
 * fields and zero the rest before the first step.
 */
struct dfs_repair_pass {
    size_t page;         /* fragments per catalog transaction */
    int64_t budget_ms;   /* how long one step may go on */
    int64_t interval_ms; /* a pass starts this long after the last one ended, at the latest */
    bool active;         /* a pass is in progress */
    char cursor[DFS_FRAGMENT_ID_HEX + 1];
    int64_t last_ms;            /* when the last pass ended (its step's now_ms) */
    struct dfs_plan_result sum; /* of the pass in progress */
};

/* A digest of every node's id and state: a change starts a pass at once. */
uint64_t dfs_repair_pass_signature(const struct dfs_node_rec *nodes, size_t n);

/*
 * One step at now_ms: start a pass when `start` (states changed, a kick), `unbounded`, or the
 * interval ran out, or continue the one in progress; then plan page after page until the pass
 * ends or clock_ms(arg) (which also stamps each page) passes the budget (unbounded: no limit).
 * on_work(arg) (may be NULL) runs after each page that queued or reprioritised repairs, to wake
 * the workers. A pass that changed anything is logged at its end. *ended tells whether a pass
 * ended in this step. Errors: the catalog's, with *errmsg (the pass stays where it was: the next
 * step tries again).
 */
int dfs_repair_pass_step(struct dfs_repair_pass *p, dfs_catalog *cat, int64_t now_ms, bool start,
                         bool unbounded, int64_t (*clock_ms)(void *arg), void (*on_work)(void *arg),
                         void *arg, bool *ended, char **errmsg);

#endif /* DFS_METADATA_REPAIRPLAN_H */
