/*
 * The replication engine's speed: commits per second from concurrent proposers with 1 and 3
 * replicas (batching on, and off for contrast), beside the raw fsync rate of the same disk, and
 * the failover time over repeated SIGKILLs of the leader. Replicas are child processes (this
 * program re-executed with --repl-node) on loopback, each with the SQLite test state machine.
 *
 *   bazel run -c opt //benchmarks:repl_bench -- [--dir DIR] [--commands N] [--size BYTES]
 *       [--proposers P] [--kills K] [--election-ms MS] [--heartbeat-ms MS] [--no-failover]
 */
#include "common/clock.h"
#include "common/options.h"
#include "services/metadata/repl_testing.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char self_exe[PATH_MAX];

struct cfg {
    const char *dir;
    int commands, size, proposers, kills;
    int election_ms, heartbeat_ms;
    bool no_failover; /* --no-failover */
    bool failover;
};

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Writes of 4 KiB, each followed by fdatasync (or written O_DIRECT|O_DSYNC), for `secs`. */
static double fsync_rate(const char *dir, bool direct, double secs)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/fsync-probe", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | (direct ? O_DIRECT | O_DSYNC : 0), 0600);
    if (fd < 0)
        return -1;
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, 4096) != 0) {
        close(fd);
        return -1;
    }
    memset(buf, 'x', 4096);
    int64_t t0 = dfs_clock_mono_ns(), end = t0 + (int64_t)(secs * 1e9);
    long n = 0;
    while (dfs_clock_mono_ns() < end) {
        if (pwrite(fd, buf, 4096, (off_t)(n % 256) * 4096) != 4096)
            break;
        if (!direct && fdatasync(fd) != 0)
            break;
        n++;
    }
    double rate = (double)n / ((double)(dfs_clock_mono_ns() - t0) / 1e9);
    free(buf);
    close(fd);
    unlink(path);
    return rate;
}

struct group {
    int n;
    char root[PATH_MAX - 64];
    char members[512];
    char addr[3][64], dir[3][PATH_MAX], id[3][16];
    struct repl_child ch[3];
    char election[16], heartbeat[16], max_batch[16];
};

static int group_start_one(struct group *g, int i)
{
    const char *args[] = {
        "--id",           g->id[i],     "--address",   g->addr[i],      "--dir",
        g->dir[i],        "--members",  g->members,    "--election-ms", g->election,
        "--heartbeat-ms", g->heartbeat, "--max-batch", g->max_batch,    NULL};
    return repl_child_start(&g->ch[i], self_exe, args);
}

static int group_start(struct group *g, const struct cfg *c, int n, int max_batch)
{
    memset(g, 0, sizeof *g);
    g->n = n;
    snprintf(g->root, sizeof g->root, "%s/repl-bench.XXXXXX", c->dir);
    if (mkdtemp(g->root) == NULL)
        return -1;
    snprintf(g->election, sizeof g->election, "%d", c->election_ms);
    snprintf(g->heartbeat, sizeof g->heartbeat, "%d", c->heartbeat_ms);
    snprintf(g->max_batch, sizeof g->max_batch, "%d", max_batch);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        snprintf(g->addr[i], sizeof g->addr[i], "127.0.0.1:%d", repl_free_port());
        char dir[PATH_MAX]; /* via a local: gcc -Wrestrict cannot tell g->root from g->dir */
        snprintf(dir, sizeof dir, "%s/n%d", g->root, i + 1);
        memcpy(g->dir[i], dir, sizeof g->dir[i]);
        snprintf(g->id[i], sizeof g->id[i], "%d", i + 1);
        off += (size_t)snprintf(g->members + off, sizeof g->members - off, "%s%d@%s", i ? "," : "",
                                i + 1, g->addr[i]);
    }
    for (int i = 0; i < n; i++)
        if (group_start_one(g, i) != 0)
            return -1;
    return 0;
}

static void group_stop(struct group *g)
{
    for (int i = 0; i < g->n; i++)
        if (g->ch[i].pid > 0)
            repl_child_quit(&g->ch[i]);
    nftw(g->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The ready leader, polled for up to timeout_ms; -1 if none. */
static int group_leader(struct group *g, int64_t timeout_ms)
{
    int64_t deadline = dfs_clock_mono_ns() + timeout_ms * 1000000;
    char reply[512], role[32];
    do {
        for (int i = 0; i < g->n; i++) {
            if (g->ch[i].pid <= 0 || repl_child_cmd(&g->ch[i], "status", reply, sizeof reply))
                continue;
            repl_kv_str(reply, "role", role, sizeof role);
            if (strcmp(role, "leader") == 0 && repl_kv(reply, "ready") == 1)
                return i;
        }
        pause_ms(2);
    } while (dfs_clock_mono_ns() < deadline);
    return -1;
}

static int throughput(const struct cfg *c, int replicas, bool batching, double *rate,
                      double *per_entry)
{
    struct group g;
    int rc = -1;
    if (group_start(&g, c, replicas, batching ? 0 : 1) != 0)
        goto out;
    int l = group_leader(&g, 60000);
    if (l < 0)
        goto out;
    char line[128], reply[512], before[512], after[512];
    snprintf(line, sizeof line, "propose %d %d %d 30000", 2000, c->proposers, c->size);
    if (repl_child_cmd(&g.ch[l], line, reply, sizeof reply) != 0) /* warm-up */
        goto out;
    int n = batching ? c->commands : c->commands / 5;
    repl_child_cmd(&g.ch[l], "status", before, sizeof before);
    snprintf(line, sizeof line, "propose %d %d %d 30000", n, c->proposers, c->size);
    if (repl_child_cmd(&g.ch[l], line, reply, sizeof reply) != 0)
        goto out;
    repl_child_cmd(&g.ch[l], "status", after, sizeof after);
    uint64_t ok = repl_kv(reply, "ok");
    double secs = (double)repl_kv(reply, "ns") / 1e9;
    *rate = (double)ok / secs;
    uint64_t entries = repl_kv(after, "entries") - repl_kv(before, "entries");
    uint64_t cmds = repl_kv(after, "commands") - repl_kv(before, "commands");
    *per_entry = entries ? (double)cmds / (double)entries : 0;
    rc = ok == (uint64_t)n ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "repl_bench: only %" PRIu64 " of %d committed: %s\n", ok, n, reply);
out:
    group_stop(&g);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The time from SIGKILL of the leader to the first command committed by a new one. */
static int failover(const struct cfg *c, double *ms)
{
    struct group g;
    int rc = -1;
    if (group_start(&g, c, 3, 0) != 0)
        goto out;
    char reply[512], ref[512];
    for (int k = 0; k < c->kills; k++) {
        int l = group_leader(&g, 60000);
        if (l < 0)
            goto out;
        repl_child_cmd(&g.ch[l], "propose 200 8 100 30000", reply, sizeof reply);
        int64_t t0 = dfs_clock_mono_ns();
        repl_child_kill(&g.ch[l]);
        int64_t done = 0;
        while (done == 0 && dfs_clock_mono_ns() - t0 < 60 * (int64_t)1000000000) {
            for (int i = 0; i < 3 && done == 0; i++) {
                if (i == l)
                    continue;
                if (repl_child_cmd(&g.ch[i], "propose 1 1 64 500", reply, sizeof reply) == 0 &&
                    repl_kv(reply, "ok") == 1)
                    done = (int64_t)repl_kv(reply, "first");
            }
            if (done == 0)
                pause_ms(1);
        }
        if (done == 0)
            goto out;
        ms[k] = (double)(done - t0) / 1e6;
        printf("  kill %2d: %7.1f ms\n", k + 1, ms[k]);
        fflush(stdout);
        /* Back to three caught-up replicas before the next kill. */
        if (group_start_one(&g, l) != 0)
            goto out;
        int64_t deadline = dfs_clock_mono_ns() + 60 * (int64_t)1000000000;
        for (;;) {
            int nl = group_leader(&g, 60000);
            if (nl < 0 || repl_child_cmd(&g.ch[nl], "status", ref, sizeof ref) != 0 ||
                repl_child_cmd(&g.ch[l], "status", reply, sizeof reply) != 0)
                goto out;
            if (repl_kv(reply, "count") == repl_kv(ref, "count"))
                break;
            if (dfs_clock_mono_ns() > deadline)
                goto out;
            pause_ms(10);
        }
    }
    rc = 0;
out:
    group_stop(&g);
    return rc;
}

#define C(member) DFS_OPT_FIELD(struct cfg, member)

static const struct dfs_opt opts[] = {
    {DFS_OPT_STRING, "dir", 0, C(dir), .arg = "DIR", .env = "TMPDIR",
     .help = "where the replicas keep their logs (default /tmp)"},
    {DFS_OPT_INT, "commands", 0, C(commands), .arg = "N", .def = "50000", .min = 100,
     .max = INT32_MAX, .help = "commands proposed per throughput run"},
    {DFS_OPT_INT, "size", 0, C(size), .arg = "BYTES", .def = "200", .min = 1, .max = INT32_MAX,
     .help = "bytes per command"},
    {DFS_OPT_INT, "proposers", 0, C(proposers), .arg = "P", .def = "64", .min = 1, .max = INT32_MAX,
     .help = "concurrent proposers"},
    {DFS_OPT_INT, "kills", 0, C(kills), .arg = "K", .def = "20", .min = 1, .max = 1000,
     .help = "SIGKILLs of the leader in the failover run"},
    {DFS_OPT_INT, "election-ms", 0, C(election_ms), .arg = "MS", .def = "1000", .min = 10,
     .max = 600000, .help = "election timeout"},
    {DFS_OPT_INT, "heartbeat-ms", 0, C(heartbeat_ms), .arg = "MS", .def = "100", .min = 1,
     .max = 600000, .help = "heartbeat interval (below the election timeout)"},
    {DFS_OPT_FLAG, "no-failover", 0, C(no_failover), .help = "skip the failover run"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = "repl_bench",
    .usage = "[options]",
    .about = "The replication engine's speed: commits per second from concurrent proposers with "
             "1 and 3 replicas (batching on, and off for contrast), beside the raw fsync rate of "
             "the same disk, and the failover time over repeated SIGKILLs of the leader.",
    .opts = opts,
};

int main(int argc, char **argv)
{
    /* A replica: this program re-executed by the benchmark (its own internal arguments). */
    if (argc > 1 && strcmp(argv[1], "--repl-node") == 0)
        return repl_node_main(argc - 1, argv + 1);
    ssize_t len = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (len <= 0)
        return 1;
    self_exe[len] = '\0';
    struct cfg c = {.dir = "/tmp"};
    dfs_opts *args = NULL;
    int status = 2;
    if (!dfs_opts_main(&spec, argc, argv, environ, &c, &args, &status))
        return status;
    dfs_opts_destroy(args);
    c.failover = !c.no_failover;
    if (c.heartbeat_ms >= c.election_ms) {
        fprintf(stderr, "repl_bench: --heartbeat-ms must be below --election-ms (see repl_bench "
                        "--help)\n");
        return 2;
    }
    printf("repl_bench: dir %s, %d commands of %d bytes from %d proposers\n", c.dir, c.commands,
           c.size, c.proposers);
    double fs = fsync_rate(c.dir, false, 2.0), dio = fsync_rate(c.dir, true, 2.0);
    printf("ceiling: %.0f fdatasync/s (4 KiB write + fdatasync), %.0f O_DIRECT|O_DSYNC writes/s\n",
           fs, dio);
    for (int replicas = 1; replicas <= 3; replicas += 2) {
        for (int b = 1; b >= 0; b--) {
            double rate = 0, per = 0;
            if (throughput(&c, replicas, b, &rate, &per) != 0) {
                fprintf(stderr, "repl_bench: throughput run failed\n");
                return 1;
            }
            printf("%d replica%s, batching %-3s: %8.0f commits/s  (%.1f commands per entry; "
                   "%.2fx the fdatasync rate)\n",
                   replicas, replicas > 1 ? "s" : " ", b ? "on" : "off", rate, per, rate / fs);
            fflush(stdout);
        }
    }
    if (c.failover) {
        printf("failover: 3 replicas, election timeout %d ms, heartbeat %d ms, pre-vote on; "
               "SIGKILL of the leader -> first commit on the new one\n",
               c.election_ms, c.heartbeat_ms);
        double *ms = calloc((size_t)c.kills, sizeof *ms);
        if (ms == NULL || failover(&c, ms) != 0) {
            fprintf(stderr, "repl_bench: failover run failed\n");
            return 1;
        }
        qsort(ms, (size_t)c.kills, sizeof *ms, cmp_double);
        size_t p99 = (size_t)((c.kills - 1) * 0.99 + 0.5);
        printf("failover over %d kills: median %.0f ms, p99 %.0f ms, min %.0f ms, max %.0f ms\n",
               c.kills, ms[c.kills / 2], ms[p99], ms[0], ms[c.kills - 1]);
        free(ms);
    }
    return 0;
}
