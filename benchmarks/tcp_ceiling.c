/*
 * tcp_ceiling: the loopback TCP ceiling of this machine, measured the way our data path uses it
 * (one connection, 1 MiB writes, a reader that discards). Prints one JSON object:
 *   {"bytes": N, "seconds": S, "mib_per_s": R,
 *    "send_user_s": U, "send_sys_s": Y, "recv_user_s": U, "recv_sys_s": Y,
 *    "send_cpu_s_per_gib": C, "recv_cpu_s_per_gib": C}
 * The CPU of each end is its own thread's getrusage(RUSAGE_THREAD) over the transfer: the floor of
 * a socket copy per GiB for benchmarks/throughput. On loopback the sender's system time includes
 * most of the receiving side's TCP processing (the softirq runs in the sender's context), as it
 * does between the processes of a local cluster.
 * Usage: tcp_ceiling [SECONDS] (default 2).
 */
#include "common/clock.h"
#include "common/err.h"
#include "common/options.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF (1u << 20)

/* A thread's user and system CPU seconds so far. */
struct cpu {
    double user, sys;
};

static struct cpu thread_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (struct cpu){(double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
                        (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6};
}

/* The receiving end: reads until EOF, then records the CPU its thread spent doing so. */
struct reader_arg {
    int fd;
    struct cpu used;
};

static void *reader(void *arg)
{
    struct reader_arg *r = arg;
    char *buf = malloc(BUF);
    memset(buf, 0, BUF); /* fault the pages in before the CPU is counted */
    struct cpu c0 = thread_cpu();
    while (read(r->fd, buf, BUF) > 0) {
    }
    struct cpu c1 = thread_cpu();
    r->used = (struct cpu){c1.user - c0.user, c1.sys - c0.sys};
    free(buf);
    return NULL;
}

static const struct dfs_opt opts[] = {
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = "tcp_ceiling",
    .usage = "[SECONDS]",
    .about = "The loopback TCP ceiling of this machine, measured the way the data path uses it: "
             "one connection, 1 MiB writes, a reader that discards, for SECONDS (default 2). "
             "Prints {\"bytes\", \"seconds\", \"mib_per_s\"} and the CPU of each end (its "
             "thread's user and system seconds, and per GiB).",
    .opts = opts,
    .max_args = 1,
};

int main(int argc, char **argv)
{
    dfs_opts *args = NULL;
    int status = 2;
    if (!dfs_opts_main(&spec, argc, argv, environ, NULL, &args, &status))
        return status;
    double seconds = 2.0;
    const char *arg = dfs_opts_argc(args) > 0 ? dfs_opts_argv(args)[0] : NULL;
    char *end = NULL;
    if (arg != NULL)
        seconds = arg[0] >= '0' && arg[0] <= '9' ? strtod(arg, &end) : 0;
    bool bad = arg != NULL && (end == NULL || *end != '\0');
    if (bad || !(seconds > 0 && seconds < 600)) {
        fprintf(stderr,
                "tcp_ceiling: SECONDS must be a number above 0 and below 600, not '%s' "
                "(see tcp_ceiling --help)\n",
                dfs_quote(arg, &(struct dfs_quote){{0}}));
        dfs_opts_destroy(args);
        return 2;
    }
    dfs_opts_destroy(args);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) != 0) {
        fprintf(stderr, "tcp_ceiling: cannot listen on loopback: %s\n", strerror(errno));
        return 1;
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&a, sizeof a) != 0) {
        fprintf(stderr, "tcp_ceiling: cannot connect: %s\n", strerror(errno));
        return 1;
    }
    int s = accept(ls, NULL, NULL);
    struct reader_arg ra = {.fd = s};
    pthread_t t;
    pthread_create(&t, NULL, reader, &ra);
    char *buf = calloc(1, BUF);
    memset(buf, 0, BUF);
    uint64_t total = 0;
    struct cpu c0 = thread_cpu();
    double t0 = dfs_clock_mono_s(), t1 = t0;
    while (t1 - t0 < seconds) {
        ssize_t n = write(c, buf, BUF);
        if (n <= 0)
            break;
        total += (uint64_t)n;
        t1 = dfs_clock_mono_s();
    }
    close(c);
    struct cpu c1 = thread_cpu();
    pthread_join(t, NULL);
    close(s);
    close(ls);
    free(buf);
    double gib = (double)total / (double)(1u << 30);
    double su = c1.user - c0.user, ss = c1.sys - c0.sys;
    printf("{\"bytes\": %llu, \"seconds\": %.3f, \"mib_per_s\": %.1f, \"send_user_s\": %.3f, "
           "\"send_sys_s\": %.3f, \"recv_user_s\": %.3f, \"recv_sys_s\": %.3f, "
           "\"send_cpu_s_per_gib\": %.3f, \"recv_cpu_s_per_gib\": %.3f}\n",
           (unsigned long long)total, t1 - t0, (double)total / (t1 - t0) / 1048576.0, su, ss,
           ra.used.user, ra.used.sys, gib > 0 ? (su + ss) / gib : 0,
           gib > 0 ? (ra.used.user + ra.used.sys) / gib : 0);
    return 0;
}
