/* benchmarks/load_gen: many concurrent dfs clients in one process, and the ceilings beside them. */

/*
 * Driven by benchmarks/load (which starts the cluster, samples the daemons' memory and prints the
 * report); usable alone. Every mode prints one JSON document on standard output.
 *
 *   load_gen run --metadata ADDR [--clients 64] [--seconds 20] [--mix put=30,get=45,ls=10,rm=15]
 *                [--sizes 1K,4K,64K,256K,1M] [--max-files 32] [--work-dir DIR] [--seed N]
 *       Each client is a thread with its own connection to the metadata service (the client
 *       library, client/dfs_client.h: put, get, ls, rm) working in its own folder
 *       /load/cNNN/ until the time is up. Each get is compared with the bytes that client put
 *       (SHA-256), each ls with the files it knows it holds; any difference is a mismatch.
 *   load_gen small --metadata ADDR [--clients 16] [--seconds 5] [--size 1K] [--work-dir DIR]
 *       Small files: every client puts files of --size for --seconds, then gets them back (in
 *       turn, checked) for --seconds, then removes them.
 *   load_gen rpc-ceiling [--clients 16] [--seconds 3] [--target ADDR]
 *       Bare unary round trips through services/rpc: to an in-process server whose handler only
 *       answers, or with --target to a daemon's grpc.health.v1.Health/Check (rpc_ceiling.c).
 *   load_gen sqlite-ceiling --dir DIR [--seconds 3]
 *       SQLite commits per second, one row per transaction, as the catalog commits (WAL,
 *       synchronous=FULL), in a scratch database under DIR.
 *   load_gen fsync-ceiling --dir DIR [--clients 16] [--seconds 3] [--size 1K]
 *       What a storage node does per fragment copy, from --clients threads: write a file in a
 *       tmp/ folder, fsync, rename it into place, fsync the folder.
 *
 * Exit status 0 when every operation succeeded and matched, 1 otherwise, 2 on bad usage.
 */
#include "benchmarks/rpc_ceiling.h"
#include "client/dfs_client.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "common/options.h"
#include "common/rng.h"
#include "common/units.h"
#include "dfs/v1/metadata.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define META_TIMEOUT_MS 30000
#define MAX_SIZES       16
#define MAX_CLIENTS     1024
#define ERRORS_KEPT     8

enum op { OP_PUT, OP_GET, OP_LS, OP_RM, NOPS };
static const char *const op_names[NOPS] = {"put", "get", "ls", "rm"};

struct opts {
    const char *mode;
    const char *metadata;
    const char *target;
    const char *dir;
    const char *work_dir;
    const char *prefix; /* every client works under PREFIX/cNNN/ */
    unsigned clients;
    double seconds;
    unsigned mix[NOPS];
    uint64_t sizes[MAX_SIZES];
    size_t nsizes;
    unsigned max_files;
    uint64_t seed;
};

/* ---- latencies ---- */

struct lat {
    uint32_t *us; /* one sample per operation, microseconds */
    size_t n, cap;
};

static void lat_add(struct lat *l, double seconds)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        uint32_t *v = realloc(l->us, cap * sizeof *v);
        if (v == NULL)
            return; /* a lost sample, not a wrong one */
        l->us = v;
        l->cap = cap;
    }
    double us = seconds * 1e6;
    l->us[l->n++] = us > 4e9 ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) of sorted samples, in milliseconds. */
static double quantile_ms(const struct lat *l, double q)
{
    if (l->n == 0)
        return 0;
    size_t i = (size_t)(q * (double)l->n);
    if (i >= l->n)
        i = l->n - 1;
    return l->us[i] / 1000.0;
}

/* ---- per-operation results, merged from every client ---- */

struct op_stats {
    uint64_t ok, errors, bytes;
    struct lat lat;
};

struct errors {
    pthread_mutex_t mu;
    char *msgs[ERRORS_KEPT];
    size_t n;
    uint64_t total;
};

static void errors_add(struct errors *e, const char *what, const char *msg)
{
    pthread_mutex_lock(&e->mu);
    e->total++;
    if (e->n < ERRORS_KEPT) {
        char *s = NULL;
        if (asprintf(&s, "%s: %s", what, msg != NULL ? msg : "(no message)") >= 0)
            e->msgs[e->n++] = s;
    }
    pthread_mutex_unlock(&e->mu);
}

/* ---- the connection, in one place (authentication will add its token here) ---- */

/*
 * One client's connection: plaintext to the local cluster, presenting the token in
 * $DFS_TOKEN_FILE (what benchmarks/load and the tests set; the cluster's admin token).
 */
static int connect_metadata(const char *addr, dfs_client **out, char **errmsg)
{
    const char *file = getenv("DFS_TOKEN_FILE");
    struct dfs_client_options o = {.metadata = addr,
                                   .timeout_ms = META_TIMEOUT_MS,
                                   .token_file = file != NULL && file[0] != '\0' ? file : NULL};
    return dfs_client_open(&o, out, errmsg);
}

/* ---- content: reproducible bytes and their SHA-256 ---- */

static void fill(uint8_t *buf, size_t n, uint64_t seed)
{
    dfs_rng r;
    dfs_rng_seed(&r, seed);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = dfs_rng_next(&r);
        memcpy(buf + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = dfs_rng_next(&r);
        memcpy(buf + i, &v, n - i);
    }
}

static void sha256(const uint8_t *buf, size_t n, uint8_t out[32])
{
    unsigned len = 32;
    EVP_Digest(buf, n, out, &len, EVP_sha256(), NULL);
}

static int write_file(const char *path, const uint8_t *buf, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, buf + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    return close(fd);
}

/* SHA-256 and size of a local file; -1 when it cannot be read. */
static int hash_file(const char *path, uint8_t out[32], uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    uint8_t buf[1 << 16];
    uint64_t total = 0;
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0 || (r < 0 && errno == EINTR)) {
        if (r > 0) {
            EVP_DigestUpdate(ctx, buf, (size_t)r);
            total += (uint64_t)r;
        }
    }
    unsigned len = 32;
    EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
    close(fd);
    *size = total;
    return r < 0 ? -1 : 0;
}

/* ---- clients ---- */

struct file {
    char path[1200];
    uint8_t sha[32];
    uint64_t size;
};

struct gen;

struct client {
    struct gen *g;
    unsigned idx;
    dfs_client *client;
    dfs_rng rng;
    struct file *files; /* what this client holds in the cluster */
    size_t nfiles, cap;
    size_t next_get; /* small mode: the file the get phase reads next */
    uint64_t counter;
    uint8_t *buf;
    char src[512], out[512], prefix[1100];
    struct op_stats st[NOPS];
    uint64_t mismatches;
};

struct gen {
    const struct opts *o;
    atomic_bool stop;
    struct errors errs;
    uint64_t max_size;
    /* small mode: which operation every client does now */
    _Atomic int phase;
};

static void record(struct client *c, enum op op, double t0, int rc, uint64_t bytes, const char *err)
{
    struct op_stats *s = &c->st[op];
    if (rc == DFS_OK) {
        s->ok++;
        s->bytes += bytes;
        lat_add(&s->lat, dfs_clock_mono_s() - t0);
    } else {
        s->errors++;
        errors_add(&c->g->errs, op_names[op], err);
    }
}

static void mismatch(struct client *c, const char *what, const char *path)
{
    c->mismatches++;
    char msg[1400];
    snprintf(msg, sizeof msg, "%s %s", what, path);
    errors_add(&c->g->errs, "mismatch", msg);
}

static void do_put(struct client *c, uint64_t size)
{
    if (c->nfiles == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        struct file *v = realloc(c->files, cap * sizeof *v);
        if (v == NULL)
            return;
        c->files = v;
        c->cap = cap;
    }
    struct file *f = &c->files[c->nfiles];
    snprintf(f->path, sizeof f->path, "%s%08" PRIu64, c->prefix, c->counter++);
    f->size = size;
    fill(c->buf, size, dfs_rng_next(&c->rng));
    sha256(c->buf, size, f->sha);
    if (write_file(c->src, c->buf, size) != 0) {
        errors_add(&c->g->errs, "put", "cannot write the local source file");
        c->st[OP_PUT].errors++;
        return;
    }
    struct dfs_client_put_opts po = {0};
    struct dfs_client_put_result res;
    char *err = NULL;
    double t0 = dfs_clock_mono_s();
    int rc = dfs_client_put(c->client, c->src, f->path, &po, &res, &err);
    record(c, OP_PUT, t0, rc, size, err);
    free(err);
    if (rc == DFS_OK) {
        if (memcmp(res.sha256, f->sha, 32) != 0 || res.size != size)
            mismatch(c, "put stored another digest or size for", f->path);
        c->nfiles++;
    }
}

static void do_get(struct client *c, size_t i)
{
    const struct file *f = &c->files[i];
    struct dfs_client_get_opts go = {0};
    struct dfs_client_get_result res;
    char *err = NULL;
    double t0 = dfs_clock_mono_s();
    int rc = dfs_client_get(c->client, f->path, c->out, &go, &res, &err);
    record(c, OP_GET, t0, rc, f->size, err);
    free(err);
    if (rc != DFS_OK)
        return;
    uint8_t got[32];
    uint64_t size = 0;
    if (hash_file(c->out, got, &size) != 0 || size != f->size || memcmp(got, f->sha, 32) != 0)
        mismatch(c, "get returned other bytes than were put for", f->path);
    unlink(c->out);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void do_ls(struct client *c)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    char *token = NULL, *err = NULL;
    int rc = DFS_OK;
    double t0 = dfs_clock_mono_s();
    do {
        Dfs__V1__ListFilesResponse *resp = NULL;
        rc = dfs_client_ls(c->client, c->prefix, 0, token, &resp, &err);
        free(token);
        token = NULL;
        if (rc != DFS_OK)
            break;
        for (size_t i = 0; i < resp->n_files; i++) {
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                char **v = realloc(names, cap * sizeof *v);
                if (v == NULL)
                    break;
                names = v;
            }
            if (n < cap)
                names[n++] = strdup(resp->files[i]->path);
        }
        if (resp->next_page_token != NULL && resp->next_page_token[0] != '\0')
            token = strdup(resp->next_page_token);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    } while (token != NULL);
    record(c, OP_LS, t0, rc, 0, err);
    free(err);
    if (rc == DFS_OK) {
        /* Only this client writes under its prefix: the listing is exactly what it holds. */
        char **want = calloc(c->nfiles + 1, sizeof *want);
        bool same = want != NULL && n == c->nfiles;
        for (size_t i = 0; same && i < c->nfiles; i++)
            want[i] = c->files[i].path;
        if (same && n > 0) {
            qsort(want, n, sizeof *want, cmp_str);
            qsort(names, n, sizeof *names, cmp_str);
            for (size_t i = 0; same && i < n; i++)
                same = names[i] != NULL && strcmp(names[i], want[i]) == 0;
        }
        if (!same)
            mismatch(c, "ls does not list exactly what was put under", c->prefix);
        free(want);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void do_rm(struct client *c, size_t i)
{
    Dfs__V1__FileInfo *removed = NULL;
    char *err = NULL;
    double t0 = dfs_clock_mono_s();
    int rc = dfs_client_rm(c->client, c->files[i].path, &removed, &err);
    record(c, OP_RM, t0, rc, 0, err);
    free(err);
    if (rc == DFS_OK) {
        if (removed != NULL)
            protobuf_c_message_free_unpacked(&removed->base, NULL);
        c->files[i] = c->files[--c->nfiles];
    }
}

static enum op pick(struct client *c)
{
    const unsigned *mix = c->g->o->mix;
    unsigned total = 0;
    for (int i = 0; i < NOPS; i++)
        total += mix[i];
    uint64_t r = dfs_rng_below(&c->rng, total);
    int op = 0;
    while (r >= mix[op]) {
        r -= mix[op];
        op++;
    }
    /* Nothing to read or remove yet: store something; full: make room. */
    if ((op == OP_GET || op == OP_RM) && c->nfiles == 0)
        op = OP_PUT;
    if (op == OP_PUT && c->nfiles >= c->g->o->max_files)
        op = OP_RM;
    return (enum op)op;
}

static void *run_client(void *arg)
{
    struct client *c = arg;
    const struct opts *o = c->g->o;
    while (!atomic_load(&c->g->stop)) {
        switch (pick(c)) {
        case OP_PUT:
            do_put(c, o->sizes[dfs_rng_below(&c->rng, o->nsizes)]);
            break;
        case OP_GET:
            do_get(c, (size_t)dfs_rng_below(&c->rng, c->nfiles));
            break;
        case OP_LS:
            do_ls(c);
            break;
        case OP_RM:
            do_rm(c, (size_t)dfs_rng_below(&c->rng, c->nfiles));
            break;
        default:
            break;
        }
    }
    return NULL;
}

/* small mode: phase 0 puts, phase 1 gets (round robin over what was put), then the driver stops. */
static void *small_client(void *arg)
{
    struct client *c = arg;
    while (!atomic_load(&c->g->stop)) {
        if (atomic_load(&c->g->phase) == 0) {
            do_put(c, c->g->o->sizes[0]);
        } else if (c->nfiles > 0) {
            do_get(c, c->next_get % c->nfiles);
            c->next_get++;
        } else {
            break;
        }
    }
    return NULL;
}

/* ---- running clients and reporting ---- */

static void write_ops(dfs_json *j, struct client *cl, unsigned n, double elapsed, int from, int to)
{
    dfs_json_key(j, "ops");
    dfs_json_begin_object(j);
    for (int op = from; op < to; op++) {
        struct op_stats all = {0};
        for (unsigned i = 0; i < n; i++) {
            struct op_stats *s = &cl[i].st[op];
            all.ok += s->ok;
            all.errors += s->errors;
            all.bytes += s->bytes;
            for (size_t k = 0; k < s->lat.n; k++)
                lat_add(&all.lat, s->lat.us[k] / 1e6);
        }
        if (all.lat.n > 0)
            qsort(all.lat.us, all.lat.n, sizeof *all.lat.us, cmp_u32);
        dfs_json_key(j, op_names[op]);
        dfs_json_begin_object(j);
        dfs_json_key(j, "ok");
        dfs_json_uint(j, all.ok);
        dfs_json_key(j, "errors");
        dfs_json_uint(j, all.errors);
        dfs_json_key(j, "ops_per_s");
        dfs_json_double(j, elapsed > 0 ? (double)all.ok / elapsed : 0);
        dfs_json_key(j, "mib_per_s");
        dfs_json_double(j, elapsed > 0 ? (double)all.bytes / elapsed / (1 << 20) : 0);
        dfs_json_key(j, "p50_ms");
        dfs_json_double(j, quantile_ms(&all.lat, 0.50));
        dfs_json_key(j, "p99_ms");
        dfs_json_double(j, quantile_ms(&all.lat, 0.99));
        dfs_json_key(j, "max_ms");
        dfs_json_double(j, all.lat.n > 0 ? all.lat.us[all.lat.n - 1] / 1000.0 : 0);
        dfs_json_end_object(j);
        free(all.lat.us);
    }
    dfs_json_end_object(j);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* User + system CPU seconds of this process (all its threads). */
static double self_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int clients_mode(const struct opts *o, bool small)
{
    struct gen g = {.o = o};
    pthread_mutex_init(&g.errs.mu, NULL);
    atomic_init(&g.stop, false);
    atomic_init(&g.phase, 0);
    for (size_t i = 0; i < o->nsizes; i++)
        if (o->sizes[i] > g.max_size)
            g.max_size = o->sizes[i];
    struct client *cl = calloc(o->clients, sizeof *cl);
    pthread_t *th = calloc(o->clients, sizeof *th);
    if (cl == NULL || th == NULL) {
        fprintf(stderr, "load_gen: out of memory\n");
        return 1;
    }
    int status = 0;
    unsigned started = 0;
    for (unsigned i = 0; i < o->clients; i++) {
        struct client *c = &cl[i];
        c->g = &g;
        c->idx = i;
        dfs_rng_seed(&c->rng, o->seed * 1000003u + i);
        snprintf(c->prefix, sizeof c->prefix, "%s/c%03u/", o->prefix, i);
        snprintf(c->src, sizeof c->src, "%s/c%03u.src", o->work_dir, i);
        snprintf(c->out, sizeof c->out, "%s/c%03u.out", o->work_dir, i);
        c->buf = malloc(g.max_size > 0 ? g.max_size : 1);
        char *err = NULL;
        if (c->buf == NULL || connect_metadata(o->metadata, &c->client, &err) != DFS_OK) {
            fprintf(stderr, "load_gen: %s\n", err != NULL ? err : "out of memory");
            free(err);
            status = 1;
            break;
        }
    }
    double t0 = dfs_clock_mono_s(), t_phase = t0;
    double cpu0 = self_cpu_s(), put_cpu = 0; /* small mode: this process's CPU in the put phase */
    for (unsigned i = 0; status == 0 && i < o->clients; i++) {
        if (pthread_create(&th[i], NULL, small ? small_client : run_client, &cl[i]) != 0) {
            fprintf(stderr, "load_gen: cannot start client thread %u\n", i);
            atomic_store(&g.stop, true);
            status = 1;
            break;
        }
        started++;
    }
    double put_elapsed = 0;
    if (status == 0) {
        sleep_s(o->seconds);
        if (small) {
            /* Ops still running when the phase ends finish in the next one's time: a bias of
               one operation per client, small against thousands. */
            atomic_store(&g.phase, 1);
            put_cpu = self_cpu_s() - cpu0;
            put_elapsed = dfs_clock_mono_s() - t_phase;
            t_phase = dfs_clock_mono_s();
            sleep_s(o->seconds);
        }
    }
    atomic_store(&g.stop, true);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double elapsed = dfs_clock_mono_s() - t_phase;
    double total = dfs_clock_mono_s() - t0;

    dfs_json j;
    dfs_json_init(&j, stdout);
    dfs_json_begin_object(&j);
    dfs_json_key(&j, "mode");
    dfs_json_string(&j, small ? "small" : "run");
    dfs_json_key(&j, "clients");
    dfs_json_uint(&j, o->clients);
    dfs_json_key(&j, "seconds");
    dfs_json_double(&j, total);
    if (small) {
        /* put figures over the put phase, get over the get phase */
        dfs_json_key(&j, "size");
        dfs_json_uint(&j, o->sizes[0]);
        dfs_json_key(&j, "put_cpu_s");
        dfs_json_double(&j, put_cpu);
        dfs_json_key(&j, "put");
        dfs_json_begin_object(&j);
        write_ops(&j, cl, o->clients, put_elapsed, OP_PUT, OP_PUT + 1);
        dfs_json_end_object(&j);
        dfs_json_key(&j, "get");
        dfs_json_begin_object(&j);
        write_ops(&j, cl, o->clients, elapsed, OP_GET, OP_GET + 1);
        dfs_json_end_object(&j);
    } else {
        write_ops(&j, cl, o->clients, elapsed, 0, NOPS);
    }
    uint64_t mism = 0, errors = 0, files = 0;
    for (unsigned i = 0; i < o->clients; i++) {
        mism += cl[i].mismatches;
        files += cl[i].nfiles;
        for (int op = 0; op < NOPS; op++)
            errors += cl[i].st[op].errors;
    }
    dfs_json_key(&j, "errors");
    dfs_json_uint(&j, errors);
    dfs_json_key(&j, "mismatches");
    dfs_json_uint(&j, mism);
    dfs_json_key(&j, "files_left");
    dfs_json_uint(&j, files);
    dfs_json_key(&j, "messages");
    dfs_json_begin_array(&j);
    for (size_t i = 0; i < g.errs.n; i++)
        dfs_json_string(&j, g.errs.msgs[i]);
    dfs_json_end_array(&j);
    dfs_json_end_object(&j);
    dfs_json_finish(&j);

    /* small mode cleans up after itself, so that the next phase starts from an empty catalog */
    for (unsigned i = 0; small && i < o->clients; i++)
        while (cl[i].client != NULL && cl[i].nfiles > 0) {
            uint64_t before = cl[i].st[OP_RM].errors;
            do_rm(&cl[i], cl[i].nfiles - 1);
            if (cl[i].st[OP_RM].errors != before)
                break;
        }
    for (unsigned i = 0; i < o->clients; i++) {
        dfs_client_close(cl[i].client);
        free(cl[i].buf);
        free(cl[i].files);
        for (int op = 0; op < NOPS; op++)
            free(cl[i].st[op].lat.us);
        unlink(cl[i].src);
    }
    for (size_t i = 0; i < g.errs.n; i++)
        free(g.errs.msgs[i]);
    pthread_mutex_destroy(&g.errs.mu);
    free(cl);
    free(th);
    return status != 0 || errors > 0 || mism > 0 ? 1 : 0;
}

/* ---- ceilings ---- */

/* rpc-ceiling: the measurement is rpc_ceiling.c's (it alone here speaks services/rpc). */
static int rpc_ceiling(const struct opts *o)
{
    dfs_rpc_ceiling *ceil = NULL;
    char *err = NULL;
    if (dfs_rpc_ceiling_create(o->target, &ceil, &err) != DFS_OK) {
        fprintf(stderr, "load_gen: %s\n", err);
        free(err);
        return 1;
    }
    struct dfs_rpc_ceiling_result r;
    int status = dfs_rpc_ceiling_run(ceil, o->clients, o->seconds, &r, &err) != DFS_OK;
    if (err != NULL) {
        fprintf(stderr, "load_gen: %s\n", err);
        free(err);
    }
    struct lat all = {.us = r.us, .n = r.n, .cap = r.n};
    if (all.n > 0)
        qsort(all.us, all.n, sizeof *all.us, cmp_u32);
    dfs_json j;
    dfs_json_init(&j, stdout);
    dfs_json_begin_object(&j);
    dfs_json_key(&j, "mode");
    dfs_json_string(&j, "rpc-ceiling");
    dfs_json_key(&j, "target");
    dfs_json_string(&j, o->target != NULL ? o->target : "in-process");
    dfs_json_key(&j, "clients");
    dfs_json_uint(&j, o->clients);
    dfs_json_key(&j, "calls_per_s");
    dfs_json_double(&j, r.seconds > 0 ? (double)r.calls / r.seconds : 0);
    dfs_json_key(&j, "p50_ms");
    dfs_json_double(&j, quantile_ms(&all, 0.5));
    dfs_json_key(&j, "p99_ms");
    dfs_json_double(&j, quantile_ms(&all, 0.99));
    dfs_json_key(&j, "errors");
    dfs_json_uint(&j, r.errors);
    dfs_json_end_object(&j);
    dfs_json_finish(&j);
    free(all.us);
    dfs_rpc_ceiling_destroy(ceil);
    return status != 0 || r.errors > 0;
}

static int sqlite_ceiling(const struct opts *o)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/sqlite-ceiling.db", o->dir);
    unlink(path);
    sqlite3 *db = NULL;
    int status = 0;
    uint64_t commits = 0;
    double t0 = dfs_clock_mono_s(), elapsed = 0;
    /* The catalog's settings (metadata/catalog.c): WAL, synchronous=FULL; one row per commit. */
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db,
                     "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                     "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);",
                     NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "load_gen: sqlite %s: %s\n", path, sqlite3_errmsg(db));
        status = 1;
    }
    sqlite3_stmt *ins = NULL;
    if (status == 0 &&
        sqlite3_prepare_v2(db, "INSERT INTO t (v) VALUES (?1)", -1, &ins, NULL) != SQLITE_OK)
        status = 1;
    uint8_t blob[200];
    memset(blob, 0x5a, sizeof blob);
    t0 = dfs_clock_mono_s();
    while (status == 0 && (elapsed = dfs_clock_mono_s() - t0) < o->seconds) {
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            status = 1;
        sqlite3_bind_blob(ins, 1, blob, sizeof blob, SQLITE_STATIC);
        if (status == 0 && sqlite3_step(ins) != SQLITE_DONE)
            status = 1;
        sqlite3_reset(ins);
        if (status == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            status = 1;
        commits += status == 0;
    }
    if (status != 0)
        fprintf(stderr, "load_gen: sqlite: %s\n", sqlite3_errmsg(db));
    sqlite3_finalize(ins);
    sqlite3_close(db);
    unlink(path);
    char side[4200];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    printf("{\"mode\": \"sqlite-ceiling\", \"commits_per_s\": %.1f}\n",
           elapsed > 0 ? (double)commits / elapsed : 0.0);
    return status;
}

struct syncer {
    const struct opts *o;
    unsigned idx;
    int dirfd, tmpfd;
    atomic_bool *stop;
    uint64_t ops;
    int error;
};

static void *sync_main(void *arg)
{
    struct syncer *s = arg;
    uint64_t size = s->o->sizes[0];
    uint8_t *buf = calloc(1, size + 128);
    for (uint64_t n = 0; buf != NULL && !atomic_load(s->stop); n++) {
        char name[64];
        snprintf(name, sizeof name, "f%03u-%" PRIu64, s->idx, n % 64);
        int fd = openat(s->tmpfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || pwrite(fd, buf, size + 128, 0) != (ssize_t)(size + 128) || fsync(fd) != 0) {
            s->error = errno;
            if (fd >= 0)
                close(fd);
            break;
        }
        close(fd);
        if (renameat(s->tmpfd, name, s->dirfd, name) != 0 || fsync(s->dirfd) != 0) {
            s->error = errno;
            break;
        }
        s->ops++;
    }
    free(buf);
    return NULL;
}

static int fsync_ceiling(const struct opts *o)
{
    char dir[4096], tmp[4200];
    snprintf(dir, sizeof dir, "%s/fsync-ceiling", o->dir);
    snprintf(tmp, sizeof tmp, "%s/tmp", dir);
    mkdir(dir, 0700);
    mkdir(tmp, 0700);
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int tmpfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0 || tmpfd < 0) {
        fprintf(stderr, "load_gen: cannot open %s: %s\n", dir, strerror(errno));
        return 1;
    }
    atomic_bool stop;
    atomic_init(&stop, false);
    struct syncer *s = calloc(o->clients, sizeof *s);
    pthread_t *th = calloc(o->clients, sizeof *th);
    unsigned started = 0;
    double t0 = dfs_clock_mono_s();
    for (unsigned i = 0; s != NULL && th != NULL && i < o->clients; i++) {
        s[i] = (struct syncer){.o = o, .idx = i, .dirfd = dirfd, .tmpfd = tmpfd, .stop = &stop};
        if (pthread_create(&th[i], NULL, sync_main, &s[i]) != 0)
            break;
        started++;
    }
    sleep_s(o->seconds);
    atomic_store(&stop, true);
    uint64_t ops = 0;
    int error = 0;
    for (unsigned i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        ops += s[i].ops;
        if (s[i].error != 0)
            error = s[i].error;
    }
    double elapsed = dfs_clock_mono_s() - t0;
    for (unsigned i = 0; i < started; i++)
        for (unsigned n = 0; n < 64; n++) {
            char name[64];
            snprintf(name, sizeof name, "f%03u-%u", i, n);
            unlinkat(dirfd, name, 0);
            unlinkat(tmpfd, name, 0);
        }
    close(dirfd);
    close(tmpfd);
    rmdir(tmp);
    rmdir(dir);
    free(s);
    free(th);
    if (error != 0)
        fprintf(stderr, "load_gen: fsync ceiling: %s\n", strerror(error));
    printf("{\"mode\": \"fsync-ceiling\", \"threads\": %u, \"size\": %" PRIu64
           ", \"ops_per_s\": %.1f}\n",
           o->clients, o->sizes[0], elapsed > 0 ? (double)ops / elapsed : 0.0);
    return error != 0 || started != o->clients;
}

/* ---- command line ---- */

static int parse_mix(const char *s, unsigned mix[NOPS])
{
    unsigned m[NOPS] = {0}, total = 0;
    char *copy = strdup(s), *save = NULL;
    int rc = copy == NULL ? -1 : 0;
    for (char *tok = copy != NULL ? strtok_r(copy, ",", &save) : NULL; rc == 0 && tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        int op = -1;
        for (int i = 0; eq != NULL && i < NOPS; i++)
            if ((size_t)(eq - tok) == strlen(op_names[i]) &&
                strncmp(tok, op_names[i], (size_t)(eq - tok)) == 0)
                op = i;
        char *end = NULL;
        unsigned long v = op >= 0 ? strtoul(eq + 1, &end, 10) : 0;
        if (op < 0 || end == eq + 1 || *end != '\0' || v > 1000)
            rc = -1;
        else
            total += (m[op] = (unsigned)v);
    }
    free(copy);
    if (rc != 0 || total == 0 || m[OP_PUT] == 0)
        return -1;
    memcpy(mix, m, sizeof m);
    return 0;
}

static int parse_sizes(const char *s, struct opts *o)
{
    char *copy = strdup(s), *save = NULL;
    o->nsizes = 0;
    int rc = copy == NULL ? -1 : 0;
    for (char *tok = copy != NULL ? strtok_r(copy, ",", &save) : NULL; rc == 0 && tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        uint64_t v = 0;
        if (o->nsizes == MAX_SIZES || dfs_parse_size(tok, &v, NULL) != DFS_OK || v > (64u << 20))
            rc = -1;
        else
            o->sizes[o->nsizes++] = v;
    }
    free(copy);
    return rc == 0 && o->nsizes > 0 ? 0 : -1;
}

/* --mix put=N,get=N,ls=N,rm=N into o->mix (the field is the whole struct opts). */
static int mix_option(const struct dfs_opt *opt, const char *value, void *field, char **errmsg)
{
    struct opts *o = field;
    if (parse_mix(value, o->mix) != 0)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "--%s takes put=N,get=N,ls=N,rm=N with put > 0, not '%s'", opt->name,
                          dfs_quote(value, &(struct dfs_quote){{0}}));
    return DFS_OK;
}

/* --sizes 1K,64K,1M and --size 1K (one) into o->sizes. */
static int sizes_option(const struct dfs_opt *opt, const char *value, void *field, char **errmsg)
{
    struct opts *o = field;
    bool one = strcmp(opt->name, "size") == 0;
    if (parse_sizes(value, o) != 0 || (one && o->nsizes != 1))
        return dfs_seterr(errmsg, DFS_EINVAL, "--%s takes %s (at most 64M each), not '%s'",
                          opt->name, one ? "one size like 64K" : "sizes like 1K,64K,1M",
                          dfs_quote(value, &(struct dfs_quote){{0}}));
    return DFS_OK;
}

/* --prefix: a remote folder, into a const char *. */
static int prefix_option(const struct dfs_opt *opt, const char *value, void *field, char **errmsg)
{
    size_t n = strlen(value);
    if (value[0] != '/' || n > 1000 || value[n - 1] == '/')
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "--%s takes a remote folder like /load/run1, not '%s'", opt->name,
                          dfs_quote(value, &(struct dfs_quote){{0}}));
    memcpy(field, &value, sizeof value);
    return DFS_OK;
}

static const struct dfs_opts_command modes[] = {
    {"run", "", "the mixed workload of --clients threads",
     "Each client is a thread with its own connection to the metadata service (--metadata, "
     "$DFS_METADATA; the token in $DFS_TOKEN_FILE) working in its own folder PREFIX/cNNN/ "
     "until --seconds are up, with the --mix of operations on files of --sizes, at most "
     "--max-files each. Each get is compared with the bytes that client put (SHA-256), each ls "
     "with the files it knows it holds; any difference is a mismatch.",
     0, 0},
    {"small", "", "small files: put for --seconds, get them back, remove them",
     "Small files: every client puts files of --size (default 1K) for --seconds (default 5), "
     "then gets them back (in turn, checked) for --seconds, then removes them. 16 clients unless "
     "--clients.",
     0, 0},
    {"rpc-ceiling", "", "bare unary round trips through services/rpc",
     "Bare unary round trips through services/rpc: to an in-process server whose handler only "
     "answers, or with --target to a daemon's grpc.health.v1.Health/Check. 16 clients for 3 "
     "seconds unless told.",
     0, 0},
    {"sqlite-ceiling", "", "SQLite commits per second in a scratch database under --dir",
     "SQLite commits per second, one row per transaction, as the catalog commits (WAL, "
     "synchronous=FULL), in a scratch database under --dir, for --seconds (default 3).",
     0, 0},
    {"fsync-ceiling", "", "a storage node's write, fsync, rename, fsync per fragment copy",
     "What a storage node does per fragment copy, from --clients threads (default 16) for "
     "--seconds (default 3): write a file of --size (default 1K) in a tmp/ folder, fsync, "
     "rename it into place, fsync the folder.",
     0, 0},
    {NULL, NULL, NULL, NULL, 0, 0},
};

#define O(member) DFS_OPT_FIELD(struct opts, member)

static const struct dfs_opt opts[] = {
    {DFS_OPT_STRING, "metadata", 0, O(metadata), .arg = "HOST:PORT[,...]", .env = "DFS_METADATA",
     .help = "the metadata service, or a list of its replicas (run, small)"},
    {DFS_OPT_INT, "clients", 0, O(clients), .arg = "N", .min = 1, .max = MAX_CLIENTS,
     .help = "client threads (default 64 for run, else 16)"},
    {DFS_OPT_DOUBLE, "seconds", 0, O(seconds), .arg = "S", .dmin = 0, .dmax = 86400,
     .help = "how long (default 20 for run, 5 for small, 3 for the ceilings)"},
    {DFS_OPT_CUSTOM, "mix", 0, .offset = 0, .size = sizeof(struct opts), .arg = "LIST",
     .def = "put=30,get=45,ls=10,rm=15", .parse = mix_option,
     .help = "run: the operations' shares, put=N,get=N,ls=N,rm=N"},
    {DFS_OPT_CUSTOM, "sizes", 0, .offset = 0, .size = sizeof(struct opts), .arg = "LIST",
     .def = "1K,4K,64K,256K,1M", .parse = sizes_option,
     .help = "run: file sizes, picked at random (at most 64M each)"},
    {DFS_OPT_CUSTOM, "size", 0, .offset = 0, .size = sizeof(struct opts), .arg = "SIZE",
     .parse = sizes_option, .help = "small, fsync-ceiling: the file size (default 1K)"},
    {DFS_OPT_INT, "max-files", 0, O(max_files), .arg = "N", .def = "32", .min = 1, .max = 100000,
     .help = "run: files each client keeps at most"},
    {DFS_OPT_STRING, "work-dir", 0, O(work_dir), .arg = "DIR",
     .help = "run, small: local scratch files (default a new folder in /tmp)"},
    {DFS_OPT_INT, "seed", 0, O(seed), .arg = "N", .def = "1", .min = 0, .max = INT64_MAX,
     .help = "run: seed of the clients' choices"},
    {DFS_OPT_CUSTOM, "prefix", 0, O(prefix), .arg = "P", .parse = prefix_option,
     .help = "run, small: the remote folder to work in (default /load/<random>)"},
    {DFS_OPT_STRING, "target", 0, O(target), .arg = "ADDR",
     .help = "rpc-ceiling: a daemon to call instead of the in-process server"},
    {DFS_OPT_STRING, "dir", 0, O(dir), .arg = "DIR",
     .help = "sqlite-ceiling, fsync-ceiling: the folder to measure in (required)"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help (after a MODE: its own)"},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = "load_gen",
    .usage = "MODE [options]",
    .about = "Many concurrent dfs clients in one process, and the ceilings beside them. Prints "
             "one JSON document; exit status 0 when every operation succeeded and matched, 1 "
             "otherwise, 2 on bad usage.",
    .opts = opts,
    .commands = modes,
    .command_word = "mode",
};

int main(int argc, char **argv)
{
    struct opts o = {.clients = 64, .seconds = 20};
    dfs_opts *res = NULL;
    int status = 2;
    if (!dfs_opts_main(&spec, argc, argv, environ, &o, &res, &status))
        return status;
    o.mode = dfs_opts_command(res)->name;
    bool small = strcmp(o.mode, "small") == 0;
    bool clients_default = dfs_opts_source(res, "clients") != DFS_OPT_FROM_ARGV;
    bool seconds_default = dfs_opts_source(res, "seconds") != DFS_OPT_FROM_ARGV;
    dfs_opts_destroy(res);
    signal(SIGPIPE, SIG_IGN);
    dfs_log_init("load_gen", DFS_LOG_ERROR);
    dfs_client_route_grpc_logs();
    bool ceiling = strstr(o.mode, "-ceiling") != NULL;
    if (ceiling || small) {
        if (clients_default)
            o.clients = 16;
        if (seconds_default)
            o.seconds = ceiling ? 3 : 5;
        if (small && o.nsizes != 1)
            parse_sizes("1K", &o);
        if (strcmp(o.mode, "fsync-ceiling") == 0 && o.nsizes != 1)
            parse_sizes("1K", &o);
    }
    if (strcmp(o.mode, "run") == 0 || small) {
        if (o.metadata == NULL || o.metadata[0] == '\0') {
            fprintf(stderr, "load_gen: %s needs --metadata HOST:PORT (or DFS_METADATA)\n", o.mode);
            return 2;
        }
        /* A folder of its own unless told: runs against one cluster do not collide. */
        char prefix[64];
        if (o.prefix == NULL) {
            dfs_rng r;
            snprintf(prefix, sizeof prefix, "/load/%016" PRIx64, dfs_rng_seed_random(&r));
            o.prefix = prefix;
        }
        char tmpl[] = "/tmp/dfs-load-XXXXXX";
        char *own = NULL;
        if (o.work_dir == NULL) {
            own = mkdtemp(tmpl);
            if (own == NULL) {
                fprintf(stderr, "load_gen: cannot make a work folder: %s\n", strerror(errno));
                return 1;
            }
            o.work_dir = own;
        }
        int rc = clients_mode(&o, small);
        if (own != NULL)
            rmdir(own);
        return rc;
    }
    if (strcmp(o.mode, "rpc-ceiling") == 0)
        return rpc_ceiling(&o);
    if ((strcmp(o.mode, "sqlite-ceiling") == 0 || strcmp(o.mode, "fsync-ceiling") == 0) &&
        o.dir == NULL) {
        fprintf(stderr, "load_gen: %s needs --dir DIR\n", o.mode);
        return 2;
    }
    if (strcmp(o.mode, "sqlite-ceiling") == 0)
        return sqlite_ceiling(&o);
    if (strcmp(o.mode, "fsync-ceiling") == 0)
        return fsync_ceiling(&o);
    fprintf(stderr, "load_gen: unknown mode '%s' (see --help)\n",
            dfs_quote(o.mode, &(struct dfs_quote){{0}}));
    return 2;
}
