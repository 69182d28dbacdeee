/* Reed-Solomon RS(K, M) over ISA-L: Cauchy encode tables, and decode tables cached per pattern. */
#include "storage/ec.h"

#include "common/err.h"

#include <assert.h>
#include <isa-l/erasure_code.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define NMAX     DFS_EC_MAX_FRAGMENTS
/* Largest K*M with K + M <= NMAX (16 * 16): sizes the ISA-L tables, 32 bytes per coefficient. */
#define TBLS_MAX (32u * (NMAX / 2) * (NMAX / 2))
/* ISA-L lengths are ints: longer cells go through in pieces of this many bytes (a multiple of 64). */
#define PIECE    ((size_t)1 << 30)

/*
 * A handle is one fixed-size allocation, aligned to DFS_EC_ALIGN so that the tables ISA-L streams
 * through sit on cache lines of their own.
 *
 * matrix and enc_tbls are written by create and then only read (encode is thread-safe). The dec_*
 * fields are the decode cache, written by reconstruct: when dec_valid, dec_tbls holds ISA-L's
 * tables for rebuilding the cells of dec_out (a bitmask over cell indices, in increasing index
 * order) from the K cells of dec_src (likewise), dec_nout = popcount(dec_out).
 */
struct dfs_ec {
    unsigned k, m;
    bool dec_valid;
    uint32_t dec_src, dec_out;
    unsigned dec_nout;
    uint8_t matrix[NMAX * NMAX]; /* (K+M) x K generator, row-major: identity, then Cauchy */
    _Alignas(DFS_EC_ALIGN) uint8_t enc_tbls[TBLS_MAX]; /* ec_init_tables of the M Cauchy rows */
    _Alignas(DFS_EC_ALIGN) uint8_t dec_tbls[TBLS_MAX]; /* ec_init_tables of the dec_nout rows */
};

/* ISA-L's prototypes lack const; it only reads sources and tables. */
static inline void encode_data(size_t len, unsigned k, unsigned rows, const uint8_t *tbls,
                               unsigned char **src, unsigned char **dst)
{
    if (len <= (size_t)INT_MAX) {
        ec_encode_data((int)len, (int)k, (int)rows, (unsigned char *)tbls, src, dst);
        return;
    }
    unsigned char *s[NMAX], *d[NMAX];
    for (size_t off = 0; off < len; off += PIECE) {
        size_t n = len - off < PIECE ? len - off : PIECE;
        for (unsigned i = 0; i < k; i++)
            s[i] = src[i] + off;
        for (unsigned i = 0; i < rows; i++)
            d[i] = dst[i] + off;
        ec_encode_data((int)n, (int)k, (int)rows, (unsigned char *)tbls, s, d);
    }
}

int dfs_ec_create(unsigned k, unsigned m, dfs_ec **out, char **errmsg)
{
    if (out == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "erasure code: NULL handle pointer");
    if (k == 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "erasure code %u+%u: K must be at least 1", k, m);
    if (k > NMAX || m > NMAX || k + m > NMAX)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "erasure code %u+%u: at most %u fragments in all (K + M), not %llu", k, m,
                          NMAX, (unsigned long long)k + m);
    dfs_ec *ec = aligned_alloc(DFS_EC_ALIGN, sizeof *ec);
    if (ec == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "erasure code %u+%u: out of memory", k, m);
    memset(ec, 0, sizeof *ec);
    ec->k = k;
    ec->m = m;
    gf_gen_cauchy1_matrix(ec->matrix, (int)(k + m), (int)k);
    ec_init_tables((int)k, (int)m, ec->matrix + (size_t)k * k, ec->enc_tbls);
    *out = ec;
    return DFS_OK;
}

int dfs_ec_clone(const dfs_ec *ec, dfs_ec **out, char **errmsg)
{
    if (ec == NULL || out == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "erasure code: NULL argument to clone");
    dfs_ec *c = aligned_alloc(DFS_EC_ALIGN, sizeof *c);
    if (c == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "erasure code %u+%u: out of memory", ec->k, ec->m);
    memcpy(c, ec, sizeof *c);
    *out = c;
    return DFS_OK;
}

void dfs_ec_destroy(dfs_ec *ec)
{
    free(ec);
}

unsigned dfs_ec_k(const dfs_ec *ec)
{
    return ec->k;
}

unsigned dfs_ec_m(const dfs_ec *ec)
{
    return ec->m;
}

void dfs_ec_encode(const dfs_ec *ec, size_t len, const uint8_t *const *data, uint8_t *const *parity)
{
    assert(ec != NULL);
    if (ec->m == 0 || len == 0)
        return;
    assert(data != NULL && parity != NULL);
    encode_data(len, ec->k, ec->m, ec->enc_tbls, (unsigned char **)data, (unsigned char **)parity);
}

/*
 * Fill the decode cache for reading the cells of src (K of them) and rebuilding those of out.
 * With B the K x K matrix of the generator rows of the source cells, the data is B^-1 times the
 * sources: a data cell i is rebuilt with row i of B^-1, a parity cell i with generator row i
 * times B^-1.
 */
static int prepare_decode(dfs_ec *ec, uint32_t src, uint32_t out, char **errmsg)
{
    const unsigned k = ec->k, n = ec->k + ec->m;
    uint8_t b[NMAX * NMAX], inv[NMAX * NMAX], rows[NMAX * NMAX];
    unsigned r = 0;
    for (unsigned i = 0; i < n; i++)
        if (src >> i & 1u)
            memcpy(b + (size_t)r++ * k, ec->matrix + (size_t)i * k, k);
    assert(r == k);
    ec->dec_valid = false;
    if (gf_invert_matrix(b, inv, (int)k) != 0) /* destroys b */
        return dfs_seterr(errmsg, DFS_EINTERNAL,
                          "erasure code %u+%u: singular decode matrix for sources %#x", k, ec->m,
                          (unsigned)src);
    unsigned nout = 0;
    for (unsigned i = 0; i < n; i++) {
        if (!(out >> i & 1u))
            continue;
        uint8_t *row = rows + (size_t)nout++ * k;
        if (i < k) {
            memcpy(row, inv + (size_t)i * k, k);
            continue;
        }
        const uint8_t *g = ec->matrix + (size_t)i * k;
        for (unsigned j = 0; j < k; j++) {
            uint8_t acc = 0;
            for (unsigned l = 0; l < k; l++)
                acc ^= gf_mul(g[l], inv[(size_t)l * k + j]);
            row[j] = acc;
        }
    }
    ec_init_tables((int)k, (int)nout, rows, ec->dec_tbls);
    ec->dec_src = src;
    ec->dec_out = out;
    ec->dec_nout = nout;
    ec->dec_valid = true;
    return DFS_OK;
}

int dfs_ec_reconstruct(dfs_ec *ec, size_t len, uint8_t *const *frags, const bool *have,
                       const bool *want, char **errmsg)
{
    if (ec == NULL || frags == NULL || have == NULL || want == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "erasure reconstruct: NULL argument");
    const unsigned k = ec->k, n = ec->k + ec->m;
    uint32_t out = 0;
    unsigned nhave = 0;
    for (unsigned i = 0; i < n; i++) {
        if (have[i])
            nhave++;
        else if (want[i])
            out |= 1u << i;
        if ((have[i] || want[i]) && frags[i] == NULL)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "erasure reconstruct: fragment %u is %s but has no buffer", i,
                              have[i] ? "present" : "wanted");
    }
    if (out == 0)
        return DFS_OK;
    if (nhave < k)
        return dfs_seterr(errmsg, DFS_EDATALOSS, "only %u of the %u fragments needed are available",
                          nhave, k);

    /* Sources: the K lowest-indexed present cells. Outputs: the wanted missing ones. */
    unsigned char *s[NMAX], *d[NMAX];
    uint32_t src = 0;
    unsigned ns = 0, nd = 0;
    for (unsigned i = 0; i < n; i++) {
        if (have[i] && ns < k) {
            src |= 1u << i;
            s[ns++] = frags[i];
        } else if (out >> i & 1u) {
            d[nd++] = frags[i];
        }
    }
    if (!ec->dec_valid || ec->dec_src != src || ec->dec_out != out) {
        int rc = prepare_decode(ec, src, out, errmsg);
        if (rc != DFS_OK)
            return rc;
    }
    if (len > 0)
        encode_data(len, k, nd, ec->dec_tbls, s, d);
    return DFS_OK;
}

int dfs_ec_layout(uint64_t size, unsigned k, uint32_t *cell, uint64_t *fragment_size)
{
    if (k == 0 || size > (uint64_t)INT64_MAX)
        return DFS_EINVAL;
    if (size <= (uint64_t)k * DFS_EC_CELL_MAX) {
        uint64_t c = size == 0 ? 1 : (size + k - 1) / k; /* an empty file: one 64-byte cell */
        *cell = (uint32_t)((c + 63) / 64 * 64);
        *fragment_size = *cell;
    } else {
        *cell = DFS_EC_CELL_MAX;
        *fragment_size = (size + (uint64_t)k * DFS_EC_CELL_MAX - 1) /
                         ((uint64_t)k * DFS_EC_CELL_MAX) * DFS_EC_CELL_MAX;
    }
    return DFS_OK;
}
