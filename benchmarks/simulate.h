/* Data loss at scale: place with the metadata service's own code, fail nodes, count what is lost. */
#ifndef DFS_BENCHMARKS_SIMULATE_H
#define DFS_BENCHMARKS_SIMULATE_H

#include "common/rng.h"
#include "metadata/placement.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * MODEL. A cluster of N nodes, all writable, no zones. A UNIT is one placement of width w made by
 * dfs_placement_choose (metadata/placement.h, the code the metadata service runs): the k copies of a
 * replicated fragment (w = k), or the K+M fragments of an erasure-coded stripe (w = K+M, fragment i
 * on the i-th node). A unit is LOST when at least `threshold` of its w nodes have failed: k for
 * replication (every copy gone), M+1 for erasure code (fewer than K fragments left). A FILE is
 * units_per_file consecutive units (F fragments of a replicated file, F = 4 by default in dfs); it
 * is lost when any of its units is.
 *
 * A TRIAL fails s distinct nodes drawn uniformly at random (all at once, nothing repaired) and
 * counts the units and files lost.
 *
 * PLACE ONCE, FAIL MANY TIMES. dfs_sim_create places every unit once; dfs_sim_trials then runs any
 * number of failure trials against that layout. This is statistically sound: the failure sets are
 * drawn independently of the layout and of each other, so every trial is an unbiased sample of the
 * loss given this layout, and their mean converges to the expectation given the layout. The
 * quantities of interest are expectations over layouts too; they are reached either by averaging
 * over several layouts (create several simulations with other seeds: simulate --placements), or
 * because the layout-conditional value does not depend on the layout: the expected fraction of
 * units lost is exactly dfs_sim_set_loss(N, w, threshold, s) for EVERY layout of distinct nodes; min_copy's
 * copysets for N a multiple of w are a disjoint partition, identical for every permutation up to
 * renaming; and with millions of independent units (random) the conditional probability of any loss
 * concentrates around its mean. Trials that share a layout are correlated through it: report
 * confidence intervals per layout count, not as if every trial had its own layout.
 *
 * COUNTING. Identical node sets are merged (a set of w nodes with its number of units); each
 * trial marks the failed nodes in a bitmap and visits only the sets that hold a failed node (an
 * index node -> sets), so a trial costs O(s * sets per node * w), not O(units).
 *
 * least_used: every node starts with the same free space and each unit placed on a node lowers it
 * by one, as the metadata service's reservations do; placement is then deterministic up to ties.
 */

struct dfs_sim_config {
    uint32_t nodes;          /* N >= width */
    enum dfs_policy policy;  /* random, min_copy, buddy or least_used */
    uint32_t width;          /* w: nodes per unit, 1..DFS_PLACEMENT_WIDTH_MAX */
    uint32_t threshold;      /* 1..w: failed nodes of a unit that lose it */
    uint64_t units;          /* >= 1, a multiple of units_per_file */
    uint32_t units_per_file; /* F >= 1 */
    uint32_t scatter_width;  /* min_copy: 0 = w - 1 (placement.h) */
    uint32_t group_size;     /* buddy: 0 = 2w */
    uint64_t seed;           /* the placement's seed: same seed, same layout */
};

typedef struct dfs_sim dfs_sim;

/*
 * Build the cluster and place cfg->units units (O(units * cost of one choice)). On success *out is
 * the new simulation (dfs_sim_destroy). Errors: DFS_EINVAL (a bad configuration, said in
 * *errmsg), DFS_ENOMEM, or a placement error passed on.
 */
int dfs_sim_create(const struct dfs_sim_config *cfg, dfs_sim **out, char **errmsg);

/* Free a simulation; NULL is a no-op. */
void dfs_sim_destroy(dfs_sim *sim);

/* What the layout looks like. */
struct dfs_sim_info {
    uint64_t units;
    uint64_t files;
    uint64_t distinct_sets; /* distinct node sets among the units */
    bool disjoint;          /* no node is in two distinct sets */
    uint64_t max_degree;    /* most distinct sets holding one node */
};

void dfs_sim_info(const dfs_sim *sim, struct dfs_sim_info *out);

/* The w node indices (0..N-1, ascending) of unit u < units. The pointer lives as long as sim. */
const uint32_t *dfs_sim_unit_nodes(const dfs_sim *sim, uint64_t u);

/*
 * Count what failing exactly these nodes loses: nfailed distinct indices < N. Sets *units_lost and
 * *files_lost. DFS_EINVAL for an index out of range or repeated.
 */
int dfs_sim_count(dfs_sim *sim, const uint32_t *failed, size_t nfailed, uint64_t *units_lost,
                  uint64_t *files_lost, char **errmsg);

/* Sums over trials; add trials of several layouts into one tally. Zero it before the first use. */
struct dfs_sim_tally {
    uint64_t trials;
    uint64_t trials_with_loss;          /* at least one unit (hence one file) lost */
    double unit_frac_sum, unit_frac_sq; /* fraction of units lost: sum and sum of squares */
    double file_frac_sum, file_frac_sq; /* fraction of files lost */
    uint64_t max_units_lost;
};

/*
 * Run `trials` trials of `failed` (<= N) uniformly chosen failed nodes, drawing from rng, and add
 * them to *tally. DFS_EINVAL when failed > N.
 */
int dfs_sim_trials(dfs_sim *sim, uint32_t failed, uint64_t trials, dfs_rng *rng,
                   struct dfs_sim_tally *tally, char **errmsg);

/*
 * The disjoint blocks of the layout's policy family, for dfs_sim_no_loss_blocks: min_copy's
 * copysets (DFS_EPRECOND when they overlap: scatter width above w-1, or N not a multiple of w) or
 * buddy's groups. *sizes is a new array of *n block sizes (free() it). DFS_EPRECOND for random and
 * least_used, which keep no sets.
 */
int dfs_sim_blocks(const dfs_sim *sim, uint32_t **sizes, size_t *n, char **errmsg);

/* ---- Closed forms (s nodes of n fail, uniformly at random) ----------------------------------- */

/*
 * The probability that a given set of w nodes has at least t failed nodes: the hypergeometric tail
 * sum_{j=t..w} C(w,j) C(n-w,s-j) / C(n,s). For t = w it is C(s,w)/C(n,w), the loss probability of
 * a replicated fragment under every placement policy (each places w distinct nodes). 0 when
 * t > s; arguments out of range (w > n, t = 0, t > w, s > n) give NaN.
 */
double dfs_sim_set_loss(uint32_t n, uint32_t w, uint32_t t, uint32_t s);

/* 1 - (1 - p)^count, accurate for tiny p and huge count: any of `count` independent events of
   probability p. */
double dfs_sim_any_of(double p, double count);

/*
 * The probability that no block holds t or more failed nodes, for disjoint blocks of the given
 * sizes among n nodes (the other nodes belong to no block). With every copyset in use this is
 * exactly min_copy's probability of no loss; for buddy groups it is the probability that no group
 * has t failed nodes, the limit of no loss when the groups hold units on every t-subset. Exact
 * (a dynamic programme over the blocks with hypergeometric steps, O(blocks * s * t)). DFS_EINVAL
 * when the sizes add up to more than n, s > n or t = 0.
 */
int dfs_sim_no_loss_blocks(uint32_t n, const uint32_t *sizes, size_t nblocks, uint32_t t,
                           uint32_t s, double *out, char **errmsg);

#endif /* DFS_BENCHMARKS_SIMULATE_H */
