/* dfs-mount: a dfs cluster as a POSIX file system over FUSE 3. Flags -> client, spool, file
   system -> the FUSE loop; the file system is in fs.c. */
#include "mount/fs.h"

#include "client/dfs_client.h"
#include "common/err.h"
#include "common/log.h"
#include "common/options.h"
#include "mount/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG    "dfs-mount"
#define VERSION "0.1.0"

struct options {
    const char *metadata;
    const char *token_file;
    const char *log_file;
    const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
    bool insecure;
    int64_t timeout_ms;
    bool foreground;
    char *fuse_opts; /* -o, comma-joined over every -o given (malloc'd) */
    double attr_timeout, entry_timeout, negative_timeout;
    const char *spool_dir;
    const char *scratch_dir;
    uint64_t spool_memory;
    uint64_t spool_size;
    uint64_t read_min, read_max;
    int64_t list_page;
    enum dfs_log_level level;
};

static const struct dfs_opt_choice log_levels[] = {
    {"debug", DFS_LOG_DEBUG, false}, {"info", DFS_LOG_INFO, false},   {"warn", DFS_LOG_WARN, false},
    {"warning", DFS_LOG_WARN, true}, {"error", DFS_LOG_ERROR, false}, {NULL, 0, false},
};

/* -o: each one adds to the comma-separated list handed to libfuse. */
static int parse_o(const struct dfs_opt *opt, const char *value, void *field, char **errmsg)
{
    (void)opt;
    char **list = field;
    char *joined = NULL;
    if (asprintf(&joined, "%s%s%s", *list != NULL ? *list : "", *list != NULL ? "," : "", value) <
        0)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    free(*list);
    *list = joined;
    return DFS_OK;
}

#define O(member) DFS_OPT_FIELD(struct options, member)

static const struct dfs_opt opts[] = {
    {DFS_OPT_STRING, "metadata", 0, O(metadata), .arg = "HOST:PORT[,...]", .env = "DFS_METADATA",
     .help = "the metadata service (required)"},
    {DFS_OPT_FLAG, "foreground", 'f', O(foreground),
     .help = "stay in the foreground (default: become a daemon once mounted)"},
    {DFS_OPT_CUSTOM, NULL, 'o', O(fuse_opts), .arg = "OPT[,OPT...]", .parse = parse_o,
     .help = "mount options for libfuse: ro, allow_other, default_permissions, ... (may repeat)"},
    {DFS_OPT_DOUBLE, "attr-timeout", 0, O(attr_timeout), .arg = "SECONDS", .def = "1",
     .dmin = -1e-9, .dmax = 86400,
     .help = "how long the kernel may keep a file's attributes (size, times) without asking"},
    {DFS_OPT_DOUBLE, "entry-timeout", 0, O(entry_timeout), .arg = "SECONDS", .def = "1",
     .dmin = -1e-9, .dmax = 86400, .help = "how long the kernel may keep a name it looked up"},
    {DFS_OPT_DOUBLE, "negative-timeout", 0, O(negative_timeout), .arg = "SECONDS", .def = "0",
     .dmin = -1e-9, .dmax = 86400, .help = "how long the kernel may remember a name is absent"},
    {DFS_OPT_STRING, "spool-dir", 0, O(spool_dir), .arg = "DIR",
     .help = "where files being written wait until close or fsync stores them (default $TMPDIR "
             "or /tmp)"},
    {DFS_OPT_SIZE, "spool-memory", 0, O(spool_memory), .arg = "SIZE", .def = "1G", .min = 0,
     .help = "files being written are held in memory while they take at most this much together "
             "(at most a quarter of the machine's memory; 0: never), then move to --spool-dir"},
    {DFS_OPT_STRING, "scratch-dir", 0, O(scratch_dir), .arg = "DIR",
     .help = "where reads stage what they fetch, about a read window per open file (default: "
             "the spool's folder)"},
    {DFS_OPT_SIZE, "spool-size", 0, O(spool_size), .arg = "SIZE", .def = "4G", .min = 1,
     .help = "bytes the files being written may hold together; beyond, writes fail with ENOSPC"},
    {DFS_OPT_SIZE, "read-min", 0, O(read_min), .arg = "SIZE", .def = "128K", .min = 4096,
     .help = "the smallest fetch of a read (a random read fetches this much around it)"},
    {DFS_OPT_SIZE, "read-ahead", 0, O(read_max), .arg = "SIZE", .def = "8M", .min = 4096,
     .max = (int64_t)1 << 30, .help = "the largest fetch sequential reads grow to"},
    {DFS_OPT_INT, "list-page", 0, O(list_page), .arg = "N", .def = "0", .min = 0, .max = 100000,
     .help = "files per ListFiles page when reading a directory (0: the service's default)"},
    {DFS_OPT_ENUM, "log-level", 0, O(level), .arg = "LEVEL", .def = "info", .choices = log_levels,
     .help = "debug, info, warn or error"},
    {DFS_OPT_STRING, "log-file", 0, O(log_file), .arg = "PATH",
     .help = "a daemon appends its log here (default: nowhere once it leaves the terminal)"},
    {DFS_OPT_INT, "timeout", 0, O(timeout_ms), .arg = "MS", .def = "10000", .min = 1,
     .max = 3600000, .help = "deadline of each metadata call"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {DFS_OPT_VERSION, "version", 0, .help = "print the version"},
    {DFS_OPT_SECTION, .help = "Security:"},
    {DFS_OPT_STRING, "token-file", 0, O(token_file), .arg = "PATH",
     .help = "bearer token (default: $DFS_TOKEN, else the file $DFS_TOKEN_FILE, else "
             "~/.config/dfs/token)"},
    {DFS_OPT_STRING, "tls-ca", 0, O(tls_ca), .arg = "FILE", .env = "DFS_TLS_CA",
     .help = "use TLS, trusting this CA"},
    {DFS_OPT_STRING, "tls-cert", 0, O(tls_cert), .arg = "FILE",
     .help = "client certificate, for mutual TLS ..."},
    {DFS_OPT_STRING, "tls-key", 0, O(tls_key), .arg = "FILE", .help = "... and its key"},
    {DFS_OPT_STRING, "tls-server-name", 0, O(tls_server_name), .arg = "NAME",
     .help = "the name the servers' certificates carry, when the addresses are not in them"},
    {DFS_OPT_FLAG, "insecure", 0, O(insecure), .help = "allow plaintext to a non-loopback address"},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = PROG,
    .version = VERSION,
    .usage = "--metadata HOST:PORT MOUNTPOINT [-f] [-o ro,allow_other,default_permissions,...]",
    .about = "Mount a dfs cluster at MOUNTPOINT as a POSIX file system (FUSE 3). Reads fetch byte "
             "ranges with every check of `dfs get`; a file written becomes a new version at "
             "fsync or close, atomically (close-to-open consistency, like NFS). Unmount with "
             "`fusermount3 -u MOUNTPOINT` or SIGTERM.",
    .opts = opts,
    .epilog = "See docs/mount.md.",
    .min_args = 1,
    .max_args = 1,
};

/*
 * A daemon forks before anything starts a thread: gRPC starts its own at dfs_client_open, and a
 * child forked after them (libfuse's fuse_daemonize, once mounted) has none, so every store timed
 * out. The parent waits until the child mounted (it exits 0) or failed (the child's status); the
 * child keeps the terminal's standard error until it is mounted, so its errors are seen.
 * Returns the write end of the pipe to tell the parent through (daemon_ready), or -1 when the
 * fork failed (in the parent, which then carries on in the foreground).
 */
static int daemon_start(void)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid > 0) {
        close(p[1]);
        char c = 0;
        ssize_t n;
        do
            n = read(p[0], &c, 1);
        while (n < 0 && errno == EINTR);
        if (n == 1)
            _exit(0);
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        _exit(WIFEXITED(st) && WEXITSTATUS(st) != 0 ? WEXITSTATUS(st) : 1);
    }
    close(p[0]);
    setsid();
    return p[1];
}

/* Where a daemon's log goes once it leaves the terminal: --log-file (opened before the fork, so
   a bad path is the command's error), else /dev/null. -1 with errno when it cannot be opened. */
static int daemon_log_open(const char *log_file)
{
    if (log_file == NULL || log_file[0] == '\0')
        return open("/dev/null", O_WRONLY | O_CLOEXEC);
    return open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

/* Mounted: the daemon leaves the terminal (standard input from /dev/null, output and errors to
   log_fd, which it takes; working folder /) and lets the parent exit 0. */
static void daemon_ready(int fd, int log_fd)
{
    if (fd < 0)
        return;
    if (chdir("/") != 0) { /* nothing to do about it: every path kept is absolute */
    }
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0 && nul != 0) {
        dup2(nul, 0);
        close(nul);
    }
    if (log_fd >= 0) {
        dup2(log_fd, 1);
        dup2(log_fd, 2);
        if (log_fd > 2)
            close(log_fd);
    }
    char c = 1;
    while (write(fd, &c, 1) < 0 && errno == EINTR)
        ;
    close(fd);
}

int main(int argc, char **argv)
{
    extern char **environ;
    struct options o = {0};
    dfs_opts *args = NULL;
    int status = 0;
    if (!dfs_opts_main(&spec, argc, argv, environ, &o, &args, &status))
        return status;
    /* What the table cannot say, refused like its errors (one line, exit 2). */
    const char *usage_err = NULL;
    if (o.metadata == NULL || o.metadata[0] == '\0')
        usage_err = "no metadata service address: use --metadata HOST:PORT or set DFS_METADATA";
    else if (o.read_max < o.read_min)
        usage_err = "--read-ahead must be at least --read-min";
    if (usage_err != NULL) {
        fprintf(stderr, "%s: %s (see %s --help)\n", PROG, usage_err, PROG);
        dfs_opts_destroy(args);
        free(o.fuse_opts);
        return 2;
    }
    dfs_log_init(PROG, o.level);
    /* Absolute: a daemon changes to /, and the unmount must still find it. */
    char *mountpoint = realpath(dfs_opts_argv(args)[0], NULL);
    if (mountpoint == NULL) {
        fprintf(stderr, "%s: cannot use %s as the mount point: %s\n", PROG, dfs_opts_argv(args)[0],
                strerror(errno));
        dfs_opts_destroy(args);
        free(o.fuse_opts);
        return 1;
    }
    int log_fd = -1;
    if (!o.foreground && (log_fd = daemon_log_open(o.log_file)) < 0) {
        fprintf(stderr, "%s: cannot open the log file %s: %s\n", PROG,
                o.log_file != NULL ? o.log_file : "/dev/null", strerror(errno));
        dfs_opts_destroy(args);
        free(o.fuse_opts);
        free(mountpoint);
        return 1;
    }
    int daemon_fd = o.foreground ? -1 : daemon_start();
    int rc = 1;
    char *err = NULL;
    dfs_client *client = NULL;
    dfs_mount_spool *sp = NULL;
    dfs_mount_fs *fs = NULL;
    struct fuse *f = NULL;
    bool mounted = false;
    char *fsname = NULL;
    const char *dir = o.spool_dir;
    if (dir == NULL || dir[0] == '\0')
        dir = getenv("TMPDIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "/tmp";
    /* Reads stage each fetch in a scratch file (dfs_client_get_range) that lives while the fetch
       runs. (/dev/shm by default measured no faster, and more CPU per GiB, than the spool's
       folder: tmpfs pages cost more to fill than the page cache's.) */
    const char *scratch = o.scratch_dir;
    if (scratch == NULL || scratch[0] == '\0')
        scratch = dir;
    /* Absolute too (a daemon changes to /); one that does not exist is the spool's error below. */
    char *dir_abs = realpath(dir, NULL), *scratch_abs = realpath(scratch, NULL);
    if (dir_abs != NULL)
        dir = dir_abs;
    if (scratch_abs != NULL)
        scratch = scratch_abs;
    struct dfs_client_options copts = {
        .metadata = o.metadata,
        .timeout_ms = o.timeout_ms,
        .token_file = o.token_file,
        .token_from_env = true,
        .tls_ca = o.tls_ca,
        .tls_cert = o.tls_cert,
        .tls_key = o.tls_key,
        .tls_server_name = o.tls_server_name,
        .insecure = o.insecure,
    };
    if (dfs_client_open(&copts, &client, &err) != DFS_OK ||
        dfs_mount_spool_create(dir, o.spool_size, 64 << 20, &sp, &err) != DFS_OK) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        goto out;
    }
    dfs_client_route_grpc_logs();
    /* A file written through the mount is read back whole by the put that stores it: held in
       memory, it is never also written to a disk (the nodes' own, often) on the way. */
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t quarter = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page / 4 : 0;
    dfs_mount_spool_set_memory(sp, o.spool_memory < quarter ? o.spool_memory : quarter);
    struct dfs_mount_fs_config cfg = {
        .attr_timeout = o.attr_timeout,
        .entry_timeout = o.entry_timeout,
        .negative_timeout = o.negative_timeout,
        .read_min = o.read_min,
        .read_max = o.read_max,
        .list_page = (uint32_t)o.list_page,
        .scratch_dir = scratch,
        .uid = getuid(),
        .gid = getgid(),
    };
    if (dfs_mount_fs_create(client, sp, &cfg, &fs) != DFS_OK) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        goto out;
    }

    /* libfuse's own command line: the program name and the mount options. */
    if (asprintf(&fsname, "fsname=dfs:%s,subtype=dfs%s%s", o.metadata != NULL ? o.metadata : "",
                 o.fuse_opts != NULL ? "," : "", o.fuse_opts != NULL ? o.fuse_opts : "") < 0)
        goto out;
    char *fargv[] = {argv[0], "-o", fsname, NULL};
    struct fuse_args fargs = FUSE_ARGS_INIT(3, fargv);
    f = fuse_new(&fargs, dfs_mount_fs_operations(), sizeof(struct fuse_operations), fs);
    fuse_opt_free_args(&fargs);
    if (f == NULL) {
        fprintf(stderr, "%s: bad mount options (see above)\n", PROG);
        goto out;
    }
    if (fuse_mount(f, mountpoint) != 0) {
        fprintf(stderr, "%s: cannot mount at %s (see above)\n", PROG, mountpoint);
        goto out;
    }
    mounted = true;
    char *ping_err = NULL;
    if (dfs_client_ping(client, 5000, &ping_err) != DFS_OK) {
        dfs_log(DFS_LOG_WARN, "the metadata service does not answer yet error=\"%s\"", ping_err);
        free(ping_err);
    }
    daemon_ready(daemon_fd, log_fd);
    daemon_fd = -1;
    log_fd = -1;
    struct fuse_session *se = fuse_get_session(f);
    /* SIGTERM, SIGINT, SIGHUP end the loop; SIGPIPE is ignored (range reads need that). */
    if (fuse_set_signal_handlers(se) != 0)
        goto out;
    dfs_log(DFS_LOG_INFO, "mounted mountpoint=\"%s\" metadata=\"%s\"", mountpoint, o.metadata);
    int lr = fuse_loop_mt(f, 0);
    fuse_remove_signal_handlers(se);
    dfs_log(DFS_LOG_INFO, "unmounting mountpoint=\"%s\"", mountpoint);
    rc = lr == 0 || lr == SIGTERM || lr == SIGINT || lr == SIGHUP ? 0 : 1;
out:
    if (mounted)
        fuse_unmount(f);
    if (f != NULL) /* libfuse's fuse_destroy does not take NULL */
        fuse_destroy(f);
    dfs_mount_fs_destroy(fs);
    dfs_mount_spool_destroy(sp);
    dfs_client_close(client);
    free(err);
    free(fsname);
    free(mountpoint);
    free(dir_abs);
    free(scratch_abs);
    free(o.fuse_opts);
    dfs_opts_destroy(args);
    if (log_fd >= 0)
        close(log_fd);
    if (daemon_fd >= 0) /* failed before mounting: the parent exits with this status */
        close(daemon_fd);
    return rc;
}
