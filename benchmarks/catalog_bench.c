/*
 * The small-put ceiling of the metadata catalog: CreateFile+CommitFile pairs per second from P
 * threads, written straight into SQLite (synchronous=FULL, a single metadata service today) and
 * through a one-member Raft cluster (issue 16: the same commands proposed, batched into log
 * entries, applied in one transaction each), the latter with the catalog at synchronous=FULL and
 * at NORMAL (the log is the durable record). No gRPC, no storage nodes: the catalog and the log
 * alone, on the disk of --dir.
 *
 *   bazel run -c opt //benchmarks:catalog_bench -- [--dir DIR] [--seconds S] [--threads 1,16]
 */
#include "common/clock.h"
#include "common/err.h"
#include "common/options.h"
#include "metadata/catalog.h"
#include "metadata/command.h"
#include "services/metadata/catalog_sm.h"
#include "services/metadata/repl_testing.h"
#include "services/metadata/replication.h"

#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NODES 3

enum mode { DIRECT, RAFT_FULL, RAFT_NORMAL };
static const char *const mode_names[] = {"sqlite direct (FULL)", "raft 1 member, catalog FULL",
                                         "raft 1 member, catalog NORMAL"};

struct run {
    enum mode mode;
    dfs_catalog *cat;
    dfs_repl *repl;
    int64_t end_ns;
    atomic_long pairs, failures;
    int thread_tag;
};

struct worker {
    struct run *run;
    int tag;
};

/* Pointers, read after the builder (an argument) ran, whatever the evaluation order. */
static int write_cmd(struct run *r, int rc, void **d, size_t *l, char **m)
{
    if (rc != DFS_OK) {
        fprintf(stderr, "build: %s\n", *m);
        free(*m);
        return rc;
    }
    struct dfs_catalog_sm_answer a;
    rc = dfs_catalog_sm_propose(r->repl, *d, *l, 10000, &a);
    free(*d);
    if (rc != DFS_OK)
        fprintf(stderr, "propose: %s\n", a.message);
    return rc;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    char nodes[NODES][DFS_ID_HEX + 1];
    for (int i = 0; i < NODES; i++)
        snprintf(nodes[i], sizeof nodes[i], "%032x", 0xa0 + i);
    const char *targets[2] = {nodes[0], nodes[1]};
    for (long i = 0; dfs_clock_mono_ns() < r->end_ns; i++) {
        char id[DFS_ID_HEX + 1], path[64];
        snprintf(id, sizeof id, "%08x%08x%016lx", r->thread_tag, w->tag, i);
        snprintf(path, sizeof path, "/bench/%d/%d/%ld", r->thread_tag, w->tag, i);
        int64_t now = dfs_clock_wall_ms();
        struct dfs_plan_fragment plan = {
            .index = 0, .size = 4096, .node_ids = targets, .nnodes = 2};
        struct dfs_create_req req = {
            .path = path,
            .size = 4096,
            .redundancy = {.scheme = DFS_SCHEME_REPLICATION, .replicas = 2, .fragments = 1},
            .policy = DFS_POLICY_RANDOM,
            .fragment_size = 4096,
            .expires_ms = now + 600000,
            .fragments = &plan,
            .nfragments = 1,
            .file_id = id};
        uint8_t sha[DFS_SHA256_LEN] = {1};
        struct dfs_commit_fragment cf = {
            .index = 0, .size = 4096, .checksum = 7, .node_ids = targets, .nnodes = 2};
        int rc;
        void *d = NULL;
        size_t l = 0;
        char *m = NULL;
        if (r->mode == DIRECT) {
            struct dfs_file_rec *f = NULL;
            rc = dfs_catalog_file_create(r->cat, &req, now, &f, NULL);
            dfs_catalog_file_rec_free(f);
            f = NULL;
            if (rc == DFS_OK)
                rc = dfs_catalog_file_commit(r->cat, id, sha, &cf, 1, now, &f, NULL);
            dfs_catalog_file_rec_free(f);
        } else {
            rc = write_cmd(r, dfs_command_file_create(&req, now, &d, &l, &m), &d, &l, &m);
            if (rc == DFS_OK)
                rc = write_cmd(r, dfs_command_file_commit(id, sha, &cf, 1, now, &d, &l, &m), &d, &l,
                               &m);
        }
        if (rc == DFS_OK)
            atomic_fetch_add(&r->pairs, 1);
        else
            atomic_fetch_add(&r->failures, 1);
    }
    return NULL;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int bench(const char *root, enum mode mode, int threads, int seconds, int tag)
{
    char dir[PATH_MAX - 32], path[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/run%d", root, tag);
    if (mkdir(dir, 0700) != 0) {
        perror(dir);
        return 1;
    }
    snprintf(path, sizeof path, "%s/catalog.db", dir);
    struct run r = {.mode = mode, .thread_tag = tag};
    char *err = NULL;
    if (dfs_catalog_open(path, &r.cat, &err) != DFS_OK) {
        fprintf(stderr, "catalog: %s\n", err);
        return 1;
    }
    struct dfs_node_usage u = {.capacity_bytes = 1ull << 40, .free_bytes = 1ull << 39};
    for (int i = 0; i < NODES; i++) {
        char id[DFS_ID_HEX + 1], addr[32];
        snprintf(id, sizeof id, "%032x", 0xa0 + i);
        snprintf(addr, sizeof addr, "127.0.0.1:%d", 7000 + i);
        dfs_catalog_node_register(r.cat, id, addr, "", &u, dfs_clock_wall_ms(), DFS_CATALOG_KEEP, 1,
                                  NULL);
    }
    if (mode == RAFT_NORMAL && dfs_catalog_set_relaxed_sync(r.cat, &err) != DFS_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (mode != DIRECT) {
        char addr[32], rdir[PATH_MAX];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", repl_free_port());
        snprintf(rdir, sizeof rdir, "%s/raft", dir);
        struct dfs_repl_member me = {1, addr};
        struct dfs_repl_options o = {.id = 1,
                                     .address = addr,
                                     .dir = rdir,
                                     .members = &me,
                                     .n_members = 1,
                                     .election_timeout_ms = 500,
                                     .ops = &dfs_catalog_sm_ops,
                                     .ctx = r.cat};
        if (dfs_repl_create(&o, &r.repl, &err) != 0) {
            fprintf(stderr, "raft: %s\n", err);
            return 1;
        }
        for (int i = 0; i < 5000; i++) {
            struct dfs_repl_status st;
            dfs_repl_status_get(r.repl, &st);
            if (st.role == DFS_REPL_LEADER && st.leader_ready)
                break;
            usleep(1000);
        }
    }
    int64_t t0 = dfs_clock_mono_ns();
    r.end_ns = t0 + (int64_t)seconds * 1000000000;
    pthread_t th[64];
    struct worker ws[64];
    for (int t = 0; t < threads; t++) {
        ws[t] = (struct worker){&r, t};
        pthread_create(&th[t], NULL, worker_main, &ws[t]);
    }
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    double secs = (double)(dfs_clock_mono_ns() - t0) / 1e9;
    long pairs = atomic_load(&r.pairs), fails = atomic_load(&r.failures);
    char extra[128] = "";
    if (r.repl != NULL) {
        struct dfs_repl_status st;
        dfs_repl_status_get(r.repl, &st);
        snprintf(extra, sizeof extra, "  (%.1f commands per log entry)",
                 st.entries_proposed ? (double)st.commands_proposed / (double)st.entries_proposed
                                     : 0.0);
    }
    printf("%-32s threads %2d: %8.0f pairs/s  (%ld pairs, %ld failed)%s\n", mode_names[mode],
           threads, (double)pairs / secs, pairs, fails, extra);
    fflush(stdout);
    dfs_repl_destroy(r.repl);
    dfs_catalog_close(r.cat);
    return 0;
}

struct threads {
    int v[8];
    int n;
};

struct cfg {
    const char *dir;
    int seconds;
    struct threads threads;
};

/* --threads 1,16: up to 8 counts from 1 to 64. */
static int parse_threads(const struct dfs_opt *opt, const char *value, void *field, char **errmsg)
{
    struct threads *t = field;
    int n = 0;
    const char *p = value;
    for (;;) {
        char *end = NULL;
        long v = *p >= '0' && *p <= '9' ? strtol(p, &end, 10) : 0;
        if (end == NULL || end == p || v < 1 || v > 64 || n == 8 || (*end != ',' && *end != '\0'))
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "--%s takes up to 8 thread counts from 1 to 64 (1,16), not '%.40s'",
                              opt->name, value);
        t->v[n++] = (int)v;
        if (*end == '\0')
            break;
        p = end + 1;
    }
    t->n = n;
    return DFS_OK;
}

#define C(member) DFS_OPT_FIELD(struct cfg, member)

static const struct dfs_opt opts[] = {
    {DFS_OPT_STRING, "dir", 0, C(dir), .arg = "DIR", .def = "/tmp",
     .help = "where the catalogs and logs are made (its disk is measured)"},
    {DFS_OPT_INT, "seconds", 0, C(seconds), .arg = "S", .def = "3", .min = 1, .max = 3600,
     .help = "length of each run"},
    {DFS_OPT_CUSTOM, "threads", 0, C(threads), .arg = "N,N...", .def = "1,16",
     .help = "the thread counts to run with (1 to 64 each, at most 8)", .parse = parse_threads},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = "catalog_bench",
    .usage = "[options]",
    .about = "The catalog's small-put ceiling: CreateFile+CommitFile pairs per second straight "
             "into SQLite (synchronous=FULL) and through a one-member Raft cluster (catalog FULL "
             "and NORMAL), on the disk of --dir.",
    .opts = opts,
};

int main(int argc, char **argv)
{
    struct cfg c = {0};
    dfs_opts *args = NULL;
    int status = 2;
    if (!dfs_opts_main(&spec, argc, argv, environ, &c, &args, &status))
        return status;
    dfs_opts_destroy(args);
    const char *dir = c.dir;
    int seconds = c.seconds;
    char root[PATH_MAX - 64];
    snprintf(root, sizeof root, "%s/catalog_bench.XXXXXX", dir);
    if (mkdtemp(root) == NULL) {
        perror(root);
        return 1;
    }
    int rc = 0, tag = 0;
    for (int t = 0; t < c.threads.n && rc == 0; t++)
        for (int m = DIRECT; m <= RAFT_NORMAL && rc == 0; m++)
            rc = bench(root, (enum mode)m, c.threads.v[t], seconds, tag++);
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
