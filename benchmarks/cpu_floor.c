/*
 * cpu_floor: the CPU seconds per GiB of one piece of work the data path must do, measured alone
 * on this machine, so that benchmarks/throughput can print each role's CPU beside its floor.
 *
 *   cpu_floor sha256 [--size 1G]            SHA-256 (OpenSSL EVP, as client/filehash) in 256 KiB
 *                                           pieces, SIZE bytes in all
 *   cpu_floor crc32c [--size 1G]            CRC32C of every 64 KiB block (common/crc32c, ISA-L)
 *                                           in 1 MiB pieces, SIZE bytes in all
 * Both cycle through a buffer of --buffer bytes (default 1 MiB: the data in cache, as a message
 * just received; 256M: the data in memory, as a node's page cache it sends from).
 *   cpu_floor write --file PATH [--size 1G] write(2) SIZE bytes in 1 MiB pieces into a new file
 *                                           (on tmpfs: what a get's output costs, without fsync)
 *   cpu_floor read --file PATH              pread(2) the file in 256 KiB pieces, as the hash
 *                                           reads a get's output back
 *
 * CPU is the process's own getrusage(RUSAGE_SELF), user and system, taken around the loop only
 * (buffers are allocated and touched before). Prints one JSON object:
 *   {"mode": M, "bytes": N, "seconds": S, "user_s": U, "sys_s": Y,
 *    "user_s_per_gib": u, "sys_s_per_gib": y, "cpu_s_per_gib": u + y}
 */
#include "common/crc32c.h"
#include "common/err.h"
#include "common/options.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define WRITE_PIECE (1u << 20)   /* the data path's message size */
#define HASH_PIECE  (256u << 10) /* client/filehash.c's PIECE */

struct opts {
    uint64_t size;
    uint64_t buffer; /* sha256, crc32c: bytes cycled through, a multiple of WRITE_PIECE */
    const char *file;
};

/* Wall and CPU at one instant. */
struct stamp {
    double wall, user, sys;
};

static double tv_seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static struct stamp stamp_now(void)
{
    struct timespec ts;
    struct rusage ru;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    getrusage(RUSAGE_SELF, &ru);
    return (struct stamp){(double)ts.tv_sec + (double)ts.tv_nsec / 1e9, tv_seconds(ru.ru_utime),
                          tv_seconds(ru.ru_stime)};
}

static void fill(uint8_t *buf, size_t n)
{
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
}

/* Each mode: the work of `o` over buf (o->buffer bytes), bytes done into *done; 0, or an error
   message on stderr and -1. */
static int run_sha256(const struct opts *o, uint8_t *buf, uint64_t *done)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        fprintf(stderr, "cpu_floor: cannot set up SHA-256\n");
        EVP_MD_CTX_free(ctx);
        return -1;
    }
    for (*done = 0; *done < o->size;) {
        size_t n = o->size - *done < HASH_PIECE ? (size_t)(o->size - *done) : HASH_PIECE;
        EVP_DigestUpdate(ctx, buf + *done % o->buffer, n);
        *done += n;
    }
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    return 0;
}

static int run_crc32c(const struct opts *o, uint8_t *buf, uint64_t *done)
{
    uint32_t crcs[WRITE_PIECE / DFS_BLOCK_SIZE];
    for (*done = 0; *done < o->size;) {
        size_t n = o->size - *done < WRITE_PIECE ? (size_t)(o->size - *done) : WRITE_PIECE;
        dfs_crc32c_blocks(buf + *done % o->buffer, n, crcs);
        *done += n;
    }
    return 0;
}

static int run_write(const struct opts *o, uint8_t *buf, uint64_t *done)
{
    int fd = open(o->file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "cpu_floor: cannot create %s: %s\n", o->file, strerror(errno));
        return -1;
    }
    for (*done = 0; *done < o->size;) {
        size_t n = o->size - *done < WRITE_PIECE ? (size_t)(o->size - *done) : WRITE_PIECE;
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "cpu_floor: cannot write %s: %s\n", o->file, strerror(errno));
            close(fd);
            return -1;
        }
        *done += (uint64_t)w;
    }
    return close(fd) == 0 ? 0 : -1;
}

static int run_read(const struct opts *o, uint8_t *buf, uint64_t *done)
{
    int fd = open(o->file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "cpu_floor: cannot open %s: %s\n", o->file, strerror(errno));
        return -1;
    }
    for (*done = 0;;) {
        ssize_t r = pread(fd, buf, HASH_PIECE, (off_t)*done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "cpu_floor: cannot read %s: %s\n", o->file, strerror(errno));
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        *done += (uint64_t)r;
    }
    close(fd);
    return 0;
}

static const struct dfs_opts_command modes[] = {
    {"sha256", "", "SHA-256 of --size bytes hashed from a 256 KiB buffer in L2 (OpenSSL EVP)", NULL,
     0, 0},
    {"crc32c", "", "CRC32C of every 64 KiB block of --size bytes (common/crc32c over ISA-L)", NULL,
     0, 0},
    {"write", "", "write(2) --size bytes in 1 MiB pieces into a new --file (no fsync)", NULL, 0, 0},
    {"read", "", "pread(2) --file in 256 KiB pieces to its end", NULL, 0, 0},
    {NULL, NULL, NULL, NULL, 0, 0},
};

#define O(member) DFS_OPT_FIELD(struct opts, member)

static const struct dfs_opt opts[] = {
    {DFS_OPT_SIZE, "size", 0, O(size), .arg = "SIZE", .def = "1G", .min = 1,
     .max = (int64_t)1 << 40, .help = "bytes to process (sha256, crc32c, write)"},
    {DFS_OPT_SIZE, "buffer", 0, O(buffer), .arg = "SIZE", .def = "1M", .min = WRITE_PIECE,
     .max = (int64_t)16 << 30,
     .help = "sha256, crc32c: the buffer cycled through, a whole number of MiB (1M: in cache)"},
    {DFS_OPT_STRING, "file", 0, O(file), .arg = "PATH", .help = "the file (write, read; required)"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help (after a MODE: its own)"},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = "cpu_floor",
    .usage = "MODE [options]",
    .about = "CPU seconds per GiB of one piece of the data path's work, alone: the floors "
             "benchmarks/throughput prints each role's CPU beside. Prints one JSON object "
             "{mode, bytes, seconds, user_s, sys_s, user_s_per_gib, sys_s_per_gib, cpu_s_per_gib}.",
    .opts = opts,
    .commands = modes,
    .command_word = "mode",
};

int main(int argc, char **argv)
{
    struct opts o = {0};
    dfs_opts *res = NULL;
    int status = 2;
    if (!dfs_opts_main(&spec, argc, argv, environ, &o, &res, &status))
        return status;
    const char *mode = dfs_opts_command(res)->name;
    dfs_opts_destroy(res);
    bool file_mode = strcmp(mode, "write") == 0 || strcmp(mode, "read") == 0;
    if (file_mode && o.file == NULL) {
        fprintf(stderr, "cpu_floor: %s needs --file PATH (see cpu_floor %s --help)\n", mode, mode);
        return 2;
    }
    if (o.buffer % WRITE_PIECE != 0) {
        fprintf(stderr,
                "cpu_floor: --buffer must be a whole number of MiB (see cpu_floor --help)\n");
        return 2;
    }
    if (file_mode)
        o.buffer = WRITE_PIECE;
    uint8_t *buf = aligned_alloc(4096, o.buffer);
    if (buf == NULL) {
        fprintf(stderr, "cpu_floor: cannot allocate a buffer of %llu bytes\n",
                (unsigned long long)o.buffer);
        return 1;
    }
    fill(buf, o.buffer); /* touched now: no page fault inside the measurement */

    int (*run)(const struct opts *, uint8_t *, uint64_t *) =
        strcmp(mode, "sha256") == 0   ? run_sha256
        : strcmp(mode, "crc32c") == 0 ? run_crc32c
        : strcmp(mode, "write") == 0  ? run_write
                                      : run_read;
    uint64_t done = 0;
    struct stamp t0 = stamp_now();
    int rc = run(&o, buf, &done);
    struct stamp t1 = stamp_now();
    free(buf);
    if (rc < 0)
        return 1;
    double gib = (double)done / (double)(1u << 30);
    double user = t1.user - t0.user, sys = t1.sys - t0.sys;
    printf(
        "{\"mode\": \"%s\", \"bytes\": %llu, \"seconds\": %.3f, \"user_s\": %.3f, \"sys_s\": %.3f, "
        "\"user_s_per_gib\": %.3f, \"sys_s_per_gib\": %.3f, \"cpu_s_per_gib\": %.3f}\n",
        mode, (unsigned long long)done, t1.wall - t0.wall, user, sys, gib > 0 ? user / gib : 0,
        gib > 0 ? sys / gib : 0, gib > 0 ? (user + sys) / gib : 0);
    return 0;
}
