/* A small, fast, seedable random number generator (xoshiro256**), for placement and simulation. */
#ifndef DFS_COMMON_RNG_H
#define DFS_COMMON_RNG_H

#include <stddef.h>
#include <stdint.h>

/*
 * A value type: copy it, embed it, keep one per thread. Not thread-safe; not for secrets.
 * The same seed gives the same sequence on every machine, so placements and simulations replay.
 */
typedef struct dfs_rng {
    uint64_t s[4];
} dfs_rng;

/* Seed deterministically (any 64-bit value, 0 included). */
void dfs_rng_seed(dfs_rng *rng, uint64_t seed);

/* Seed from the kernel's entropy (getrandom); returns the seed used, so a run can be replayed. */
uint64_t dfs_rng_seed_random(dfs_rng *rng);

uint64_t dfs_rng_next(dfs_rng *rng);

/* Uniform in [0, n), without modulo bias. n must be > 0. */
uint64_t dfs_rng_below(dfs_rng *rng, uint64_t n);

/* Uniform double in [0, 1). */
double dfs_rng_double(dfs_rng *rng);

/* Fisher-Yates shuffle of v[0..n). */
void dfs_rng_shuffle_u32(dfs_rng *rng, uint32_t *v, size_t n);

#endif /* DFS_COMMON_RNG_H */
