/*
 * ec_bench: erasure encode and decode GB/s through storage/ec next to a bare ISA-L loop over the
 * same buffers, in the same run, and the ratio (aim: ours >= 80% of bare).
 *
 * For each code (4+2, 8+3 and 10+4, or the one given with --k/--m): a pool of stripes of K + M
 * cells (--pool bytes in all, at least 2 stripes, cells aligned to 64 bytes) is filled with random
 * data and then cycled through:
 *   encode  ours: dfs_ec_encode per stripe;
 *           bare: ec_encode_data with tables prepared once;
 *   decode  the M first data cells lost (at most K), rebuilt from the K next cells:
 *           ours: dfs_ec_reconstruct per stripe (decode tables cached in the handle);
 *           bare: gf_invert_matrix + ec_init_tables once, then ec_encode_data per stripe.
 * GB/s counts 10^9 data bytes (the K data cells of a stripe) per second, for encode and decode
 * alike. Each measurement runs ~--seconds; ours and bare alternate (ours, bare, ours, bare, ...)
 * --rounds times and the best of each is reported, so that noise on a shared machine hits both.
 * Before timing, both paths are checked to produce the same parity and to rebuild lost cells.
 *
 * Also reported: the cost of dfs_ec_create and of preparing decode tables for a new loss pattern
 * (a reconstruct that misses the cache, with 0-byte cells), in microseconds.
 *
 * Prints a human-readable table, then one JSON line with every figure.
 * Usage: ec_bench [--k K --m M] [--cell SIZE (1M)] [--seconds S (1)] [--rounds R (3)]
 *                 [--pool SIZE (256M)]
 */
#include "common/clock.h"
#include "common/err.h"
#include "common/options.h"
#include "common/rng.h"
#include "common/units.h"
#include "storage/ec.h"

#include <isa-l/erasure_code.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NMAX      DFS_EC_MAX_FRAGMENTS
#define MAX_RUNS  16
#define MAX_CODES 3

struct opts {
    unsigned k, m; /* 0: the default set of codes */
    size_t cell;
    size_t pool;
    double seconds;
    unsigned rounds;
};

/* The cells of every stripe: cells[s * n + i] is cell i of stripe s. */
struct pool {
    unsigned k, m, n;
    size_t cell, nstripes;
    uint8_t *mem;
    uint8_t **cells;
};

/* Figures for one code. */
struct result {
    unsigned k, m, nlost;
    size_t nstripes;
    double create_us, decode_setup_us;
    double enc_ours[MAX_RUNS], enc_bare[MAX_RUNS]; /* GB/s per round */
    double dec_ours[MAX_RUNS], dec_bare[MAX_RUNS];
    double enc_ours_best, enc_bare_best, dec_ours_best, dec_bare_best;
};

static int pool_init(struct pool *p, unsigned k, unsigned m, size_t cell, size_t pool_bytes)
{
    p->k = k;
    p->m = m;
    p->n = k + m;
    p->cell = cell;
    size_t stride = (cell + 63) / 64 * 64; /* keeps every cell 64-byte aligned */
    size_t per_stripe = stride * p->n;
    p->nstripes = pool_bytes / per_stripe;
    if (p->nstripes < 2)
        p->nstripes = 2;
    p->mem = aligned_alloc(64, per_stripe * p->nstripes);
    p->cells = malloc(sizeof *p->cells * p->n * p->nstripes);
    if (p->mem == NULL || p->cells == NULL)
        return -1;
    dfs_rng rng;
    dfs_rng_seed(&rng, 2024);
    for (size_t s = 0; s < p->nstripes; s++) {
        for (unsigned i = 0; i < p->n; i++) {
            uint8_t *c = p->mem + (s * p->n + i) * stride;
            p->cells[s * p->n + i] = c;
            /* Data random, parity touched now so that no page fault lands in a measurement. */
            uint64_t *w = (uint64_t *)c;
            for (size_t j = 0; j < stride / 8; j++)
                w[j] = i < k ? dfs_rng_next(&rng) : 0;
        }
    }
    return 0;
}

static void pool_free(struct pool *p)
{
    free(p->mem);
    free(p->cells);
}

/* ---- the four loops: `iters` stripes each, cycling through the pool ---- */

struct ctx {
    struct pool *p;
    dfs_ec *ec;
    unsigned char *enc_tbls; /* bare: ec_init_tables of the Cauchy rows */
    unsigned char *dec_tbls; /* bare: ec_init_tables of the decode rows */
    unsigned nlost;          /* data cells 0..nlost-1 lost; sources nlost..nlost+k-1 */
    bool have[NMAX], want[NMAX];
};

static void enc_ours(struct ctx *c, size_t iters)
{
    struct pool *p = c->p;
    for (size_t it = 0; it < iters; it++) {
        uint8_t **s = p->cells + (it % p->nstripes) * p->n;
        dfs_ec_encode(c->ec, p->cell, (const uint8_t *const *)s, s + p->k);
    }
}

static void enc_bare(struct ctx *c, size_t iters)
{
    struct pool *p = c->p;
    for (size_t it = 0; it < iters; it++) {
        uint8_t **s = p->cells + (it % p->nstripes) * p->n;
        ec_encode_data((int)p->cell, (int)p->k, (int)p->m, c->enc_tbls, s, s + p->k);
    }
}

static void dec_ours(struct ctx *c, size_t iters)
{
    struct pool *p = c->p;
    for (size_t it = 0; it < iters; it++) {
        uint8_t **s = p->cells + (it % p->nstripes) * p->n;
        if (dfs_ec_reconstruct(c->ec, p->cell, s, c->have, c->want, NULL) != DFS_OK)
            abort(); /* checked before timing: cannot happen */
    }
}

static void dec_bare(struct ctx *c, size_t iters)
{
    struct pool *p = c->p;
    for (size_t it = 0; it < iters; it++) {
        uint8_t **s = p->cells + (it % p->nstripes) * p->n;
        ec_encode_data((int)p->cell, (int)p->k, (int)c->nlost, c->dec_tbls, s + c->nlost, s);
    }
}

typedef void (*loop_fn)(struct ctx *, size_t);

/* Stripes per measurement so that `fn` runs about `seconds` (at least one pass over the pool). */
static size_t calibrate(struct ctx *c, loop_fn fn, double seconds)
{
    size_t iters = c->p->nstripes;
    for (;;) {
        double t0 = dfs_clock_mono_s();
        fn(c, iters);
        double dt = dfs_clock_mono_s() - t0;
        if (dt >= 0.1 || iters > ((size_t)1 << 40)) {
            double want = (double)iters * seconds / dt;
            return want < (double)c->p->nstripes ? c->p->nstripes : (size_t)want;
        }
        iters *= 4;
    }
}

/* Alternate ours and bare `rounds` times; GB/s of data per round into ours_gbps / bare_gbps. */
static void measure(struct ctx *c, loop_fn ours, loop_fn bare, const struct opts *o,
                    double *ours_gbps, double *bare_gbps, double *ours_best, double *bare_best)
{
    size_t iters = calibrate(c, ours, o->seconds);
    double bytes = (double)iters * c->p->k * (double)c->p->cell;
    *ours_best = *bare_best = 0;
    for (unsigned r = 0; r < o->rounds; r++) {
        double t0 = dfs_clock_mono_s();
        ours(c, iters);
        double t1 = dfs_clock_mono_s();
        bare(c, iters);
        double t2 = dfs_clock_mono_s();
        ours_gbps[r] = bytes / (t1 - t0) / 1e9;
        bare_gbps[r] = bytes / (t2 - t1) / 1e9;
        if (ours_gbps[r] > *ours_best)
            *ours_best = ours_gbps[r];
        if (bare_gbps[r] > *bare_best)
            *bare_best = bare_gbps[r];
    }
}

/* ---- setup costs ---- */

static double create_us(unsigned k, unsigned m)
{
    const unsigned reps = 2000;
    double t0 = dfs_clock_mono_s();
    for (unsigned r = 0; r < reps; r++) {
        dfs_ec *ec = NULL;
        if (dfs_ec_create(k, m, &ec, NULL) != DFS_OK)
            abort();
        dfs_ec_destroy(ec);
    }
    return (dfs_clock_mono_s() - t0) / reps * 1e6;
}

/* A reconstruct that misses the cache every time (two patterns alternating), 0-byte cells. */
static double decode_setup_us(dfs_ec *ec, unsigned nlost)
{
    unsigned k = dfs_ec_k(ec), n = k + dfs_ec_m(ec);
    static uint8_t dummy[1];
    uint8_t *frags[NMAX];
    bool have[2][NMAX], want[NMAX];
    for (unsigned i = 0; i < n; i++) {
        frags[i] = dummy;
        want[i] = true;
        have[0][i] = i >= nlost;          /* cells 0..nlost-1 lost */
        have[1][i] = i == 0 || i > nlost; /* cells 1..nlost lost */
    }
    const unsigned reps = 1000;
    double t0 = dfs_clock_mono_s();
    for (unsigned r = 0; r < reps; r++)
        if (dfs_ec_reconstruct(ec, 0, frags, have[r % 2], want, NULL) != DFS_OK)
            abort();
    return (dfs_clock_mono_s() - t0) / reps * 1e6;
}

/* ---- one code ---- */

static int verify(struct ctx *c)
{
    struct pool *p = c->p;
    size_t cell = p->cell;
    uint8_t **s = p->cells;
    uint8_t *save = malloc(cell * NMAX);
    if (save == NULL)
        return -1;
    int bad = 0;
    /* Encode: bare parity, saved; ours must write the same bytes over a poisoned copy. */
    enc_bare(c, 1);
    for (unsigned j = 0; j < p->m; j++) {
        memcpy(save + j * cell, s[p->k + j], cell);
        memset(s[p->k + j], 0xA5, cell);
    }
    enc_ours(c, 1);
    for (unsigned j = 0; j < p->m; j++)
        bad |= memcmp(save + j * cell, s[p->k + j], cell) != 0;
    /* Decode: both rebuild the lost cells from poison. */
    for (unsigned i = 0; i < c->nlost; i++)
        memcpy(save + i * cell, s[i], cell);
    for (int which = 0; which < 2; which++) {
        for (unsigned i = 0; i < c->nlost; i++)
            memset(s[i], 0xA5, cell);
        (which == 0 ? dec_ours : dec_bare)(c, 1);
        for (unsigned i = 0; i < c->nlost; i++)
            bad |= memcmp(save + i * cell, s[i], cell) != 0;
    }
    free(save);
    return bad ? -1 : 0;
}

static int run_code(unsigned k, unsigned m, const struct opts *o, struct result *res)
{
    char *msg = NULL;
    dfs_ec *ec = NULL;
    if (dfs_ec_create(k, m, &ec, &msg) != DFS_OK) {
        fprintf(stderr, "ec_bench: %s\n", msg != NULL ? msg : "cannot create the codec");
        free(msg);
        return 2;
    }
    if (m == 0) {
        fprintf(stderr, "ec_bench: %u+0 has nothing to encode or decode (M must be >= 1)\n", k);
        dfs_ec_destroy(ec);
        return 2;
    }
    struct pool p;
    memset(&p, 0, sizeof p);
    if (pool_init(&p, k, m, o->cell, o->pool) != 0) {
        fprintf(stderr, "ec_bench: out of memory for the stripe pool\n");
        pool_free(&p);
        dfs_ec_destroy(ec);
        return 1;
    }
    unsigned n = k + m;
    struct ctx c = {.p = &p, .ec = ec, .nlost = m < k ? m : k};

    /* Bare ISA-L: the same Cauchy matrix, tables prepared once. */
    unsigned char a[NMAX * NMAX], b[NMAX * NMAX], inv[NMAX * NMAX];
    c.enc_tbls = aligned_alloc(64, 32u * NMAX * NMAX);
    c.dec_tbls = aligned_alloc(64, 32u * NMAX * NMAX);
    if (c.enc_tbls == NULL || c.dec_tbls == NULL) {
        fprintf(stderr, "ec_bench: out of memory\n");
        return 1;
    }
    gf_gen_cauchy1_matrix(a, (int)n, (int)k);
    ec_init_tables((int)k, (int)m, a + k * k, c.enc_tbls);
    /* Sources: cells nlost..nlost+k-1; the lost data cells are rows 0..nlost-1 of the inverse. */
    memcpy(b, a + c.nlost * k, (size_t)k * k);
    if (gf_invert_matrix(b, inv, (int)k) != 0) {
        fprintf(stderr, "ec_bench: singular decode matrix\n");
        return 1;
    }
    ec_init_tables((int)k, (int)c.nlost, inv, c.dec_tbls);
    for (unsigned i = 0; i < n; i++) {
        c.have[i] = i >= c.nlost;
        c.want[i] = i < c.nlost;
    }

    /* Warm up (first touch, ISA-L's dispatch) and check both paths agree. */
    enc_bare(&c, p.nstripes);
    if (verify(&c) != 0) {
        fprintf(stderr, "ec_bench: %u+%u: ours and bare ISA-L disagree\n", k, m);
        return 1;
    }

    memset(res, 0, sizeof *res);
    res->k = k;
    res->m = m;
    res->nlost = c.nlost;
    res->nstripes = p.nstripes;
    res->create_us = create_us(k, m);
    res->decode_setup_us = decode_setup_us(ec, c.nlost);
    measure(&c, enc_ours, enc_bare, o, res->enc_ours, res->enc_bare, &res->enc_ours_best,
            &res->enc_bare_best);
    measure(&c, dec_ours, dec_bare, o, res->dec_ours, res->dec_bare, &res->dec_ours_best,
            &res->dec_bare_best);

    free(c.enc_tbls);
    free(c.dec_tbls);
    pool_free(&p);
    dfs_ec_destroy(ec);
    return 0;
}

/* ---- output ---- */

static void print_runs(const char *name, const double *v, unsigned n)
{
    printf(" %s", name);
    for (unsigned i = 0; i < n; i++)
        printf(" %.2f", v[i]);
}

static void print_result(const struct result *r, const struct opts *o)
{
    char cell[32];
    dfs_format_size(o->cell, cell, sizeof cell);
    printf("RS(%u+%u): %zu stripes of %u x %s cells; create %.1f us, decode setup %.1f us\n", r->k,
           r->m, r->nstripes, r->k + r->m, cell, r->create_us, r->decode_setup_us);
    printf("  encode             ours %6.2f GB/s   bare %6.2f GB/s   ratio %.3f   (",
           r->enc_ours_best, r->enc_bare_best, r->enc_ours_best / r->enc_bare_best);
    print_runs("ours", r->enc_ours, o->rounds);
    print_runs("| bare", r->enc_bare, o->rounds);
    printf(" )\n");
    printf("  decode, %2u lost     ours %6.2f GB/s   bare %6.2f GB/s   ratio %.3f   (", r->nlost,
           r->dec_ours_best, r->dec_bare_best, r->dec_ours_best / r->dec_bare_best);
    print_runs("ours", r->dec_ours, o->rounds);
    print_runs("| bare", r->dec_bare, o->rounds);
    printf(" )\n");
    fflush(stdout);
}

static void json_array(const double *v, unsigned n)
{
    printf("[");
    for (unsigned i = 0; i < n; i++)
        printf("%s%.4f", i ? ", " : "", v[i]);
    printf("]");
}

static void print_json(const struct result *res, size_t nres, const struct opts *o)
{
    __builtin_cpu_init();
    printf("{\"bench\": \"ec\", \"cell\": %zu, \"pool\": %zu, \"seconds\": %.3f, \"rounds\": %u, "
           "\"cpu\": {\"avx2\": %s, \"avx512bw\": %s, \"gfni\": %s}, \"codes\": [",
           o->cell, o->pool, o->seconds, o->rounds,
           __builtin_cpu_supports("avx2") ? "true" : "false",
           __builtin_cpu_supports("avx512bw") ? "true" : "false",
           __builtin_cpu_supports("gfni") ? "true" : "false");
    for (size_t i = 0; i < nres; i++) {
        const struct result *r = &res[i];
        printf("%s{\"k\": %u, \"m\": %u, \"stripes\": %zu, \"create_us\": %.2f, "
               "\"decode_setup_us\": %.2f, \"encode_gbps\": %.4f, \"encode_bare_gbps\": %.4f, "
               "\"encode_ratio\": %.4f, \"decode_lost\": %u, \"decode_gbps\": %.4f, "
               "\"decode_bare_gbps\": %.4f, \"decode_ratio\": %.4f, \"encode_runs\": ",
               i ? ", " : "", r->k, r->m, r->nstripes, r->create_us, r->decode_setup_us,
               r->enc_ours_best, r->enc_bare_best, r->enc_ours_best / r->enc_bare_best, r->nlost,
               r->dec_ours_best, r->dec_bare_best, r->dec_ours_best / r->dec_bare_best);
        json_array(r->enc_ours, o->rounds);
        printf(", \"encode_bare_runs\": ");
        json_array(r->enc_bare, o->rounds);
        printf(", \"decode_runs\": ");
        json_array(r->dec_ours, o->rounds);
        printf(", \"decode_bare_runs\": ");
        json_array(r->dec_bare, o->rounds);
        printf("}");
    }
    printf("]}\n");
}

/* ---- main ---- */

#define O(member) DFS_OPT_FIELD(struct opts, member)

static const struct dfs_opt opts[] = {
    {DFS_OPT_INT, "k", 0, O(k), .arg = "K", .min = 1, .max = NMAX,
     .help = "data cells of the one code to measure (with --m; default: 4+2, 8+3 and 10+4)"},
    {DFS_OPT_INT, "m", 0, O(m), .arg = "M", .min = 1, .max = NMAX, .help = "its parity cells"},
    /* Bare ISA-L takes an int length. */
    {DFS_OPT_SIZE, "cell", 0, O(cell), .arg = "SIZE", .def = "1M", .min = 1, .max = 1 << 30,
     .help = "bytes per cell"},
    {DFS_OPT_DOUBLE, "seconds", 0, O(seconds), .arg = "S", .def = "1", .dmin = 0, .dmax = 60,
     .help = "length of each measurement"},
    {DFS_OPT_INT, "rounds", 0, O(rounds), .arg = "R", .def = "3", .min = 1, .max = MAX_RUNS,
     .help = "ours and bare alternate this many times; the best of each counts"},
    {DFS_OPT_SIZE, "pool", 0, O(pool), .arg = "SIZE", .def = "256M", .min = 1, .max = 1LL << 40,
     .help = "bytes of stripes per code, cycled through"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = "ec_bench",
    .usage = "[--k K --m M] [--cell SIZE] [--seconds S] [--rounds R] [--pool SIZE]",
    .about = "Erasure encode and decode GB/s through storage/ec next to a bare ISA-L loop over "
             "the same buffers, and the ratio. Prints a table, then one JSON line.",
    .opts = opts,
};

int main(int argc, char **argv)
{
    struct opts o = {0};
    dfs_opts *args = NULL;
    int status = 2;
    if (!dfs_opts_main(&spec, argc, argv, environ, &o, &args, &status))
        return status;
    bool have_k = dfs_opts_source(args, "k") == DFS_OPT_FROM_ARGV;
    bool have_m = dfs_opts_source(args, "m") == DFS_OPT_FROM_ARGV;
    dfs_opts_destroy(args);
    if (have_k != have_m) {
        fprintf(stderr, "ec_bench: --k and --m go together (see --help)\n");
        return 2;
    }
    unsigned codes[MAX_CODES][2] = {{4, 2}, {8, 3}, {10, 4}};
    size_t ncodes = MAX_CODES;
    if (have_k) {
        codes[0][0] = o.k;
        codes[0][1] = o.m;
        ncodes = 1;
    }

    char cell[32], pool[32];
    dfs_format_size(o.cell, cell, sizeof cell);
    dfs_format_size(o.pool, pool, sizeof pool);
    printf("ec_bench: cells of %s, a pool of %s per code, ~%.1f s per measurement, best of %u, "
           "ours and bare ISA-L interleaved\n"
           "GB/s = 10^9 data bytes (the K data cells of each stripe) per second\n",
           cell, pool, o.seconds, o.rounds);
    struct result res[MAX_CODES];
    for (size_t i = 0; i < ncodes; i++) {
        int rc = run_code(codes[i][0], codes[i][1], &o, &res[i]);
        if (rc != 0)
            return rc;
        print_result(&res[i], &o);
    }
    print_json(res, ncodes, &o);
    return 0;
}
