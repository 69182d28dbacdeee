/*
 * The metadata service's write rate without data transfer (issue 16, benchmarks/metadata drives
 * it): CreateFile + CommitFile pairs over the Metadata RPCs (services/rpc/leader.h, the
 * leader-following calls beneath client/meta.h), no bytes sent to any storage node.
 *
 * CommitFile records a copy only with its node's receipt (common/receipt.h), an HMAC under a key
 * the metadata service derives from its master key. A benchmark owns its cluster, so it reads the
 * master key from a replica's catalog (--catalog, the `secrets` table, read-only) and makes the
 * receipts itself: the service does exactly the work of a real commit (plan, checks, one catalog
 * transaction each), the nodes none.
 *
 *   metadata_gen pairs --metadata LIST --catalog DB [--clients 64] [--seconds 10] [--prefix /mb]
 *       --clients threads, each its own connection, make pairs for --seconds; prints one JSON
 *       document: pairs, pairs_per_s, p50_ms, p99_ms, failures, first_error; and on standard
 *       error one line per failed pair (wall-clock time, duration, path, the call and its error).
 *   metadata_gen probe --metadata LIST --catalog DB [--prefix /mb] [--timeout-ms 1000]
 *       one client makes pairs until standard input closes, printing a line per pair:
 *       "ok START_NS END_NS" or "err START_NS END_NS MESSAGE", CLOCK_MONOTONIC (the clock Python's
 *       time.monotonic reads), so a driver can time a failover from the kill it made.
 *
 * The token is read from $DFS_TOKEN_FILE (the cluster's admin token). Exit status 0 when every pair
 * succeeded (pairs) or stdin closed (probe), 1 otherwise, 2 on bad usage.
 */
#include "common/clock.h"
#include "common/err.h"
#include "common/options.h"
#include "common/receipt.h"
#include "common/ticket.h"
#include "dfs/v1/metadata.pb-c.h"
#include "services/rpc/leader.h"
#include "services/rpc/security.h"

#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 1024
#define MAX_SAMPLES (1 << 20)

struct cfg {
    const char *mode, *metadata, *catalog, *prefix;
    int clients, seconds, timeout_ms;
    char *token; /* owned */
    uint8_t master[DFS_TICKET_KEY_LEN];
};

/* The master key from a replica's catalog (the secrets table; read-only, WAL readers allowed). */
static int read_master_key(const char *db_path, uint8_t out[DFS_TICKET_KEY_LEN], char **errmsg)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = DFS_EIO;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        dfs_seterr(errmsg, DFS_EIO, "cannot open %s: %s", db_path, sqlite3_errmsg(db));
        goto done;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, "SELECT value FROM secrets WHERE name = 'ticket_master_key'", -1,
                           &st, NULL) != SQLITE_OK) {
        dfs_seterr(errmsg, DFS_EIO, "%s: %s", db_path, sqlite3_errmsg(db));
        goto done;
    }
    if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_bytes(st, 0) != DFS_TICKET_KEY_LEN) {
        dfs_seterr(errmsg, DFS_EIO, "%s holds no ticket master key", db_path);
        goto done;
    }
    memcpy(out, sqlite3_column_blob(st, 0), DFS_TICKET_KEY_LEN);
    rc = DFS_OK;
done:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

/* One pair: CreateFile of a 1-byte, one-fragment file, then CommitFile of its planned copies with
   receipts made from the master key. */
static int one_pair(const struct cfg *c, dfs_rpc_leader *m, const char *path, char **errmsg)
{
    Dfs__V1__Redundancy red = DFS__V1__REDUNDANCY__INIT;
    red.scheme = DFS__V1__REDUNDANCY__SCHEME__REPLICATION;
    red.fragments = 1;
    Dfs__V1__CreateFileRequest req = DFS__V1__CREATE_FILE_REQUEST__INIT;
    req.path = (char *)path;
    req.size = 1;
    req.redundancy = &red;
    Dfs__V1__CreateFileResponse *resp = NULL;
    /* not idempotent: a retry after a lost answer would plan a second file */
    int rc = dfs_rpc_leader_unary(m, "/dfs.v1.Metadata/CreateFile", &req.base,
                                  &dfs__v1__create_file_response__descriptor,
                                  (ProtobufCMessage **)&resp, c->timeout_ms, 0, 0, NULL, errmsg);
    if (rc != DFS_OK)
        return dfs_prefixerr(errmsg, rc, "CreateFile");
    Dfs__V1__FileInfo *f = resp->file;
    if (f == NULL || f->n_fragments == 0) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return dfs_seterr(errmsg, DFS_EINTERNAL, "the metadata service returned an empty plan");
    }
    size_t nf = f->n_fragments, total = 0;
    for (size_t i = 0; i < nf; i++)
        total += f->fragments[i]->n_replicas;
    Dfs__V1__CommitFragment *cf = calloc(nf, sizeof *cf);
    Dfs__V1__CommitFragment **cfp = calloc(nf, sizeof *cfp);
    char **ids = calloc(total + 1, sizeof *ids);
    ProtobufCBinaryData *rec = calloc(total + 1, sizeof *rec);
    uint8_t(*bytes)[DFS_RECEIPT_LEN] = calloc(total + 1, DFS_RECEIPT_LEN);
    if (cf == NULL || cfp == NULL || ids == NULL || rec == NULL || bytes == NULL)
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    size_t at = 0;
    for (size_t i = 0; rc == DFS_OK && i < nf; i++) {
        const Dfs__V1__Fragment *fr = f->fragments[i];
        dfs__v1__commit_fragment__init(&cf[i]);
        cf[i].index = fr->index;
        cf[i].size = fr->size;
        cf[i].checksum = 0x5eed0000u + (uint32_t)i; /* no bytes: any checksum the receipt names */
        cf[i].node_ids = &ids[at];
        cf[i].receipts = &rec[at];
        for (size_t r = 0; rc == DFS_OK && r < fr->n_replicas; r++, at++) {
            uint8_t key[DFS_TICKET_KEY_LEN];
            const char *node = fr->replicas[r]->node_id;
            rc = dfs_ticket_node_key(c->master, node, key, errmsg);
            if (rc == DFS_OK)
                rc = dfs_receipt_make(key, fr->fragment_id, node, fr->size, cf[i].checksum,
                                      bytes[at], errmsg);
            ids[at] = (char *)node;
            rec[at].data = bytes[at];
            rec[at].len = DFS_RECEIPT_LEN;
            cf[i].n_node_ids++;
            cf[i].n_receipts++;
        }
        cfp[i] = &cf[i];
    }
    if (rc == DFS_OK) {
        static const uint8_t sha[32];
        Dfs__V1__CommitFileRequest creq = DFS__V1__COMMIT_FILE_REQUEST__INIT;
        creq.file_id = f->file_id;
        creq.sha256.data = (uint8_t *)sha;
        creq.sha256.len = sizeof sha;
        creq.fragments = cfp;
        creq.n_fragments = nf;
        creq.if_file_id = "";
        Dfs__V1__CommitFileResponse *cresp = NULL;
        /* retry: the catalog takes the same commit twice (what a real put does, patiently) */
        rc = dfs_rpc_leader_unary(m, "/dfs.v1.Metadata/CommitFile", &creq.base,
                                  &dfs__v1__commit_file_response__descriptor,
                                  (ProtobufCMessage **)&cresp, c->timeout_ms, 2000,
                                  DFS_RPC_LEADER_IDEMPOTENT, NULL, errmsg);
        if (rc == DFS_OK)
            protobuf_c_message_free_unpacked(&cresp->base, NULL);
        else
            dfs_prefixerr(errmsg, rc, "CommitFile");
    }
    free(cf);
    free(cfp);
    free(ids);
    free(rec);
    free(bytes);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

static int open_meta(const struct cfg *c, dfs_rpc_leader **m, char **errmsg)
{
    struct dfs_rpc_channel_opts o = {.security = NULL, .token = c->token};
    return dfs_rpc_leader_open(c->metadata, &o, m, errmsg);
}

/* ---- pairs: many clients for a while ---- */

struct shared {
    const struct cfg *cfg;
    int64_t end_ns;
    atomic_long pairs, failures, nsamples;
    float *lat_ms; /* MAX_SAMPLES */
    pthread_mutex_t mu;
    char *first_error; /* owned, under mu */
};

struct client {
    struct shared *sh;
    int index;
};

static void *client_main(void *arg)
{
    struct client *cl = arg;
    struct shared *sh = cl->sh;
    char *err = NULL;
    dfs_rpc_leader *m = NULL;
    if (open_meta(sh->cfg, &m, &err) != DFS_OK) {
        atomic_fetch_add(&sh->failures, 1);
        pthread_mutex_lock(&sh->mu);
        if (sh->first_error == NULL)
            sh->first_error = err, err = NULL;
        pthread_mutex_unlock(&sh->mu);
        free(err);
        return NULL;
    }
    char path[512];
    for (uint64_t i = 0; dfs_clock_mono_ns() < sh->end_ns; i++) {
        snprintf(path, sizeof path, "%s/c%03d/f%" PRIu64, sh->cfg->prefix, cl->index, i);
        int64_t t0 = dfs_clock_mono_ns();
        if (one_pair(sh->cfg, m, path, &err) != DFS_OK) {
            atomic_fetch_add(&sh->failures, 1);
            /* Every failure on stderr, timed (wall clock, to match the servers' logs). */
            fprintf(stderr,
                    "metadata_gen: failed pair wall_ms=%" PRId64 " took_ms=%.0f path=%s: %s\n",
                    dfs_clock_wall_ms(), (double)(dfs_clock_mono_ns() - t0) / 1e6, path,
                    err != NULL ? err : "?");
            pthread_mutex_lock(&sh->mu);
            if (sh->first_error == NULL)
                sh->first_error = err, err = NULL;
            pthread_mutex_unlock(&sh->mu);
            free(err);
            err = NULL;
            continue;
        }
        int64_t t1 = dfs_clock_mono_ns();
        if (t1 <= sh->end_ns) { /* pairs finished after the end are not counted */
            atomic_fetch_add(&sh->pairs, 1);
            long s = atomic_fetch_add(&sh->nsamples, 1);
            if (s < MAX_SAMPLES)
                sh->lat_ms[s] = (float)((t1 - t0) / 1e6);
        }
    }
    dfs_rpc_leader_destroy(m);
    return NULL;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static int pairs_mode(const struct cfg *c)
{
    struct shared sh = {.cfg = c};
    pthread_mutex_init(&sh.mu, NULL);
    sh.lat_ms = calloc(MAX_SAMPLES, sizeof *sh.lat_ms);
    struct client *cls = calloc((size_t)c->clients, sizeof *cls);
    pthread_t *th = calloc((size_t)c->clients, sizeof *th);
    if (sh.lat_ms == NULL || cls == NULL || th == NULL) {
        fprintf(stderr, "metadata_gen: out of memory\n");
        return 1;
    }
    int64_t t0 = dfs_clock_mono_ns();
    sh.end_ns = t0 + (int64_t)c->seconds * 1000000000;
    int started = 0;
    for (int i = 0; i < c->clients; i++) {
        cls[i] = (struct client){&sh, i};
        if (pthread_create(&th[i], NULL, client_main, &cls[i]) != 0) {
            fprintf(stderr, "metadata_gen: cannot start client thread %d\n", i);
            atomic_fetch_add(&sh.failures, 1);
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(sh.end_ns - t0) / 1e9;
    long n = atomic_load(&sh.nsamples);
    if (n > MAX_SAMPLES)
        n = MAX_SAMPLES;
    qsort(sh.lat_ms, (size_t)n, sizeof *sh.lat_ms, cmp_float);
    double p50 = n > 0 ? sh.lat_ms[(n - 1) / 2] : 0,
           p99 = n > 0 ? sh.lat_ms[(n * 99 - 1) / 100] : 0;
    long pairs = atomic_load(&sh.pairs), failures = atomic_load(&sh.failures);
    printf("{\"mode\": \"pairs\", \"clients\": %d, \"seconds\": %.3f, \"pairs\": %ld, "
           "\"pairs_per_s\": %.1f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"failures\": %ld, "
           "\"first_error\": ",
           c->clients, secs, pairs, pairs / secs, p50, p99, failures);
    if (sh.first_error == NULL) {
        printf("null}\n");
    } else {
        putchar('"');
        for (const char *p = sh.first_error; *p; p++)
            if (*p == '"' || *p == '\\')
                printf("\\%c", *p);
            else if ((unsigned char)*p < 0x20)
                putchar(' ');
            else
                putchar(*p);
        printf("\"}\n");
    }
    free(sh.first_error);
    free(sh.lat_ms);
    free(cls);
    free(th);
    pthread_mutex_destroy(&sh.mu);
    return failures == 0 && pairs > 0 ? 0 : 1;
}

/* ---- probe: one client until stdin closes ---- */

static atomic_bool stdin_closed;

static void *watch_stdin(void *arg)
{
    (void)arg;
    char buf[256];
    while (read(STDIN_FILENO, buf, sizeof buf) > 0)
        ;
    atomic_store(&stdin_closed, true);
    return NULL;
}

static int probe_mode(const struct cfg *c)
{
    pthread_t th;
    if (pthread_create(&th, NULL, watch_stdin, NULL) != 0) {
        fprintf(stderr, "metadata_gen: cannot start the stdin watcher\n");
        return 1;
    }
    pthread_detach(th);
    char *err = NULL;
    dfs_rpc_leader *m = NULL;
    if (open_meta(c, &m, &err) != DFS_OK) {
        fprintf(stderr, "metadata_gen: %s\n", err);
        free(err);
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    char path[512];
    for (uint64_t i = 0; !atomic_load(&stdin_closed); i++) {
        snprintf(path, sizeof path, "%s/probe/f%" PRIu64, c->prefix, i);
        int64_t t0 = dfs_clock_mono_ns();
        int rc = one_pair(c, m, path, &err);
        int64_t t1 = dfs_clock_mono_ns();
        if (rc == DFS_OK) {
            printf("ok %" PRId64 " %" PRId64 "\n", t0, t1);
        } else {
            for (char *p = err; p != NULL && *p; p++)
                if (*p == '\n')
                    *p = ' ';
            printf("err %" PRId64 " %" PRId64 " %s\n", t0, t1, err != NULL ? err : "?");
            free(err);
            err = NULL;
            struct timespec ts = {0, 10 * 1000000L}; /* don't spin on a refusal */
            nanosleep(&ts, NULL);
        }
    }
    dfs_rpc_leader_destroy(m);
    return 0;
}

#define C(member) DFS_OPT_FIELD(struct cfg, member)

static const struct dfs_opt opts[] = {
    {DFS_OPT_STRING, "metadata", 0, C(metadata), .arg = "LIST", .env = "DFS_METADATA",
     .help = "the metadata replicas, HOST:PORT[,HOST:PORT...]"},
    {DFS_OPT_STRING, "catalog", 0, C(catalog), .arg = "DB",
     .help = "a replica's catalog, read for the master key that signs the receipts"},
    {DFS_OPT_STRING, "prefix", 0, C(prefix), .arg = "P", .def = "/mb",
     .help = "the folder the files are made under"},
    {DFS_OPT_INT, "clients", 0, C(clients), .arg = "N", .def = "64", .min = 1, .max = MAX_CLIENTS,
     .help = "threads making pairs (pairs)", .commands = 1u << 0},
    {DFS_OPT_INT, "seconds", 0, C(seconds), .arg = "S", .def = "10", .min = 1, .max = 86400,
     .help = "how long to make pairs (pairs)", .commands = 1u << 0},
    {DFS_OPT_INT, "timeout-ms", 0, C(timeout_ms), .arg = "MS", .def = "5000", .min = 1,
     .max = 3600000, .help = "deadline of each call"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {0},
};

static const struct dfs_opts_command modes[] = {
    {"pairs", "", "--clients threads make pairs for --seconds; one JSON document",
     "--clients threads, each its own leader-following connection, make CreateFile+CommitFile "
     "pairs for --seconds; prints one JSON document: pairs, pairs_per_s, p50_ms, p99_ms, "
     "failures, first_error. Exit status 0 when every pair succeeded.",
     0, 0},
    {"probe", "", "one client makes pairs until standard input closes, a line per pair",
     "One client makes pairs until standard input closes, printing a line per pair: \"ok "
     "START_NS END_NS\" or \"err START_NS END_NS MESSAGE\" in CLOCK_MONOTONIC nanoseconds, so "
     "a driver can time a failover from the kill it made.",
     0, 0},
    {NULL},
};

static const struct dfs_opts_spec spec = {
    .prog = "metadata_gen",
    .usage = "MODE --metadata LIST --catalog DB [options]",
    .about = "The metadata service's write rate without data transfer: CreateFile+CommitFile "
             "pairs, receipts made from the cluster's master key. The token is read from "
             "$DFS_TOKEN_FILE. Exit status 0 on success, 1 otherwise, 2 on bad usage.",
    .opts = opts,
    .commands = modes,
    .command_word = "mode",
};

int main(int argc, char **argv)
{
    struct cfg c = {0};
    dfs_opts *args = NULL;
    int status = 2;
    if (!dfs_opts_main(&spec, argc, argv, environ, &c, &args, &status))
        return status;
    c.mode = dfs_opts_command(args)->name;
    dfs_opts_destroy(args);
    if (c.metadata == NULL || c.metadata[0] == '\0' || c.catalog == NULL) {
        fprintf(stderr, "metadata_gen: --metadata and --catalog are required (see metadata_gen "
                        "--help)\n");
        return 2;
    }
    char *err = NULL;
    const char *tf = getenv("DFS_TOKEN_FILE");
    if (tf != NULL && tf[0] != '\0' && dfs_rpc_token_read_file(tf, &c.token, &err) != DFS_OK) {
        fprintf(stderr, "metadata_gen: %s\n", err);
        free(err);
        return 1;
    }
    if (read_master_key(c.catalog, c.master, &err) != DFS_OK) {
        fprintf(stderr, "metadata_gen: %s\n", err);
        free(err);
        free(c.token);
        return 1;
    }
    int rc = strcmp(c.mode, "pairs") == 0 ? pairs_mode(&c) : probe_mode(&c);
    free(c.token);
    return rc;
}
