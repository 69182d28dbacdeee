/* Reed-Solomon erasure code RS(K data, M parity) over ISA-L: encode a stripe, rebuild lost cells. */
#ifndef DFS_STORAGE_EC_H
#define DFS_STORAGE_EC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The code, which every erasure-coded fragment on disk depends on (changing it makes stored files
 * unreadable): a systematic code over GF(2^8) with the polynomial x^8+x^4+x^3+x^2+1 (0x11D). A
 * stripe is K data cells d_0..d_{K-1} and M parity cells p_0..p_{M-1}, all of the same length;
 * fragment i of a file is the concatenation of cell i of every stripe (data for i < K, parity
 * p_{i-K} for i >= K). Parity byte x of p_j is
 *
 *     p_j[x] = sum over c in [0, K) of  d_c[x] * 1 / ((K + j) xor c)        (in GF(2^8))
 *
 * i.e. the rows K..K+M-1 of ISA-L's gf_gen_cauchy1_matrix(K+M, K). Any K rows of the generator
 * [identity; Cauchy] form an invertible matrix, so any K of the K+M cells of a stripe determine
 * the others.
 *
 * The code corrects erasures only: it does not detect corruption. A present cell with a flipped
 * byte is used as it is and silently yields wrong rebuilt cells. Integrity comes from the CRC32C of
 * every 64 KiB block (common/crc32c.h), checked on every read: a cell whose block fails its CRC is
 * to be treated as missing, never passed in as present.
 *
 * Limits: 1 <= K, 0 <= M, K + M <= DFS_EC_MAX_FRAGMENTS.
 */
#define DFS_EC_MAX_FRAGMENTS 32u

/*
 * Cell buffers need no particular alignment and cells may have any length (0 included): ISA-L
 * loads and stores with unaligned vector instructions and finishes a length that is not a
 * multiple of its vector with one overlapping last vector. It runs fastest when every buffer
 * starts on a DFS_EC_ALIGN-byte boundary (a cache line, one AVX-512 vector) and the length is a
 * multiple of it; cells shorter than one vector (64 bytes with AVX-512, 32 with AVX2) take its
 * scalar path, which is correct but slow.
 */
#define DFS_EC_ALIGN 64u

/*
 * Thread-safety: dfs_ec_encode, dfs_ec_k and dfs_ec_m only read the handle, so any number of
 * threads may encode with one handle at once. dfs_ec_reconstruct writes the handle's decode cache:
 * a handle that reconstructs belongs to one thread at a time (no call of any kind may run on it
 * concurrently). Give each decoding thread its own handle: dfs_ec_clone (one allocation and a
 * copy of about 17 KiB, warm cache included) or dfs_ec_create (about 0.5 us up to 10+4, 2 us
 * at 16+16, measured by benchmarks/ec_bench).
 */
typedef struct dfs_ec dfs_ec;

/*
 * Create a codec for RS(k, m): builds the Cauchy matrix and ISA-L's encode tables (32*k*m bytes).
 * Returns 0 and *out (release with dfs_ec_destroy), DFS_EINVAL when k == 0 or k + m > 32 (with
 * the reason in *errmsg) or out is NULL, DFS_ENOMEM; on failure *out is untouched.
 */
int dfs_ec_create(unsigned k, unsigned m, dfs_ec **out, char **errmsg);

/*
 * A new handle with the same code and a copy of ec's decode cache, for another thread. ec is only
 * read (so it may not be reconstructing at the same time). Returns 0 and *out, DFS_EINVAL (NULL
 * argument) or DFS_ENOMEM; on failure *out is untouched.
 */
int dfs_ec_clone(const dfs_ec *ec, dfs_ec **out, char **errmsg);

/* Release a handle. Accepts NULL. */
void dfs_ec_destroy(dfs_ec *ec);

/* K, the number of data cells per stripe. */
unsigned dfs_ec_k(const dfs_ec *ec);
/* M, the number of parity cells per stripe. */
unsigned dfs_ec_m(const dfs_ec *ec);

/*
 * Compute the M parity cells of one stripe: parity[j][0..len) = p_j of data[0..K)[0..len).
 *
 * data: K pointers to the data cells, borrowed and only read (in C, an array `uint8_t *cells[]`
 * needs a cast to `const uint8_t *const *`). parity: M pointers to the caller's output buffers of
 * len bytes each, overwritten whole whatever they held (nothing else is written); they must not
 * overlap each other or the data. Both arrays and the buffers are used during the call only. With
 * M == 0 or len == 0 nothing is touched (the arrays may then be NULL).
 *
 * Cannot fail: the handle and the buffers are the caller's own and are not validated beyond
 * debug asserts (NULL or short buffers are a bug in the caller, not bad input). No copy is made;
 * the cost is that of one ISA-L ec_encode_data over the same buffers.
 */
void dfs_ec_encode(const dfs_ec *ec, size_t len, const uint8_t *const *data,
                   uint8_t *const *parity);

/*
 * Rebuild lost cells of one stripe from the cells that are present. frags, have and want are
 * arrays of K + M entries indexed by cell (0..K-1 data, K..K+M-1 parity):
 *   have[i]  cell i is present and correct in frags[i][0..len) (only read; see the note on
 *            corruption above: a cell that failed its CRC check is not present);
 *   want[i]  the caller wants cell i. For a missing one, frags[i][0..len) is overwritten with the
 *            rebuilt cell; for a present one nothing happens (asking for it is allowed).
 * frags[i] may be NULL for a cell that is neither present nor wanted; every other frags[i] must
 * hold len bytes. The arrays and buffers are borrowed for the call only; buffers must not overlap.
 * Only the buffers of wanted missing cells are ever written.
 *
 * Any K present cells suffice, data or parity; the K lowest-indexed ones are read (data first).
 * Returns:
 *   0              every wanted cell is now in frags (also when no wanted cell was missing, in
 *                  which case nothing is read, even with fewer than K cells present);
 *   DFS_EDATALOSS  a wanted cell is missing and fewer than K cells are present: "only N of the
 *                  K fragments needed are available";
 *   DFS_EINVAL     a NULL array, or a NULL buffer for a present or wanted cell;
 *   DFS_EINTERNAL  the decode matrix was singular (cannot happen with this code);
 * with the reason in *errmsg. On failure no buffer has been written.
 *
 * Cost: rebuilding r cells reads K cells once and writes r (one ISA-L ec_encode_data of K sources
 * and r outputs). The decode tables depend only on which cells are read and which are rebuilt;
 * they cost a K x K matrix inversion over GF(2^8) (0.4 us at 4+2, 4 us at 10+4, 17 us at
 * 16+16, 110 us at 31+1 on the benchmark machine) and are cached in the handle for the last
 * pattern, so rebuilding stripe after stripe with the same losses inverts once. Alternating
 * patterns stay correct but pay the inversion at every change.
 * Not thread-safe on one handle (see above).
 */
int dfs_ec_reconstruct(dfs_ec *ec, size_t len, uint8_t *const *frags, const bool *have,
                       const bool *want, char **errmsg);

/* ---- Layout of a file ------------------------------------------------------------------------ */

/* Largest cell: one wire chunk (1 MiB). */
#define DFS_EC_CELL_MAX (1u << 20)

/*
 * The erasure-code layout of a file of `size` bytes over K data fragments: stripes of K cells,
 * cell i of a stripe in data fragment i, every fragment the same size (the last stripe is padded
 * with zeros, which readers drop). Files above K MiB use DFS_EC_CELL_MAX cells, so a cell is
 * exactly one wire chunk; smaller files are one stripe whose cell is ceil(size / K) rounded up to
 * 64 bytes (DFS_EC_ALIGN, the SIMD width ISA-L likes), so a 1-byte file stores K+M cells of 64
 * bytes, not of 1 MiB; an empty file is one stripe of 64-byte cells. *cell and *fragment_size (a
 * multiple of *cell) receive the layout: what the metadata service plans and records, and what
 * every reader, writer and rebuild of the file then follows. Returns 0, or DFS_EINVAL (outputs
 * untouched) for K == 0 or a size above INT64_MAX.
 */
int dfs_ec_layout(uint64_t size, unsigned k, uint32_t *cell, uint64_t *fragment_size);

#endif /* DFS_STORAGE_EC_H */
