/*
 * tcp_ceiling: the loopback TCP ceiling of this machine, measured the way our data path uses it
 * (one connection, 1 MiB writes, a reader that discards). Prints one JSON object:
 *   {"bytes": N, "seconds": S, "mib_per_s": R}
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF (1u << 20)

static void *reader(void *arg)
{
    int fd = *(int *)arg;
    char *buf = malloc(BUF);
    while (read(fd, buf, BUF) > 0) {
    }
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
             "Prints {\"bytes\", \"seconds\", \"mib_per_s\"}.",
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
    pthread_t t;
    pthread_create(&t, NULL, reader, &s);
    char *buf = calloc(1, BUF);
    uint64_t total = 0;
    double t0 = dfs_clock_mono_s(), t1 = t0;
    while (t1 - t0 < seconds) {
        ssize_t n = write(c, buf, BUF);
        if (n <= 0)
            break;
        total += (uint64_t)n;
        t1 = dfs_clock_mono_s();
    }
    close(c);
    pthread_join(t, NULL);
    close(s);
    close(ls);
    free(buf);
    printf("{\"bytes\": %llu, \"seconds\": %.3f, \"mib_per_s\": %.1f}\n", (unsigned long long)total,
           t1 - t0, (double)total / (t1 - t0) / 1048576.0);
    return 0;
}
