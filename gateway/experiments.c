/* Experiments over HTTP: runs of benchmarks/experiment as child processes, their state, their
   results and figures. */
#include "gateway/experiments.h"

#include "common/clock.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STATE_FILE  "gateway-state"
#define LOG_FILE    "experiment.log"
#define MAX_KNOBS   32
/* The results JSON is inlined in the run's answer up to this size. */
#define RESULTS_MAX (1u << 20)
#define LOG_TAIL    4096

static const char *const kinds[] = {"store", "loss", "simulate"};

struct run {
    char id[64];
    char kind[16];
    char **argv; /* NULL-terminated; NULL for runs of an earlier gateway */
    pid_t pid;
    bool running;
    bool cancelled;
    bool known_end; /* exit_status or signal is meaningful */
    int exit_status;
    int signal;
    int64_t started_ms, ended_ms;
    int plot_exit; /* the figures step: -1 not run (yet) */
    char *dir;     /* its folder */
    pthread_t watcher;
    bool has_watcher;
    dfs_experiments *x;
    struct run *next; /* newest first */
};

struct dfs_experiments {
    char *program; /* NULL: off */
    char *bin;     /* passed as --bin; NULL: not passed */
    char *dir;
    unsigned max_running;
    int64_t grace_ms;
    /* mu guards runs, running, seq and every run's state; cv signals a run's end. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct run *runs;
    unsigned running;
    unsigned seq;
};

/* ---- knobs ----------------------------------------------------------------------------------- */

int dfs_exp_check_knob(const char *name, const char *value, char **errmsg)
{
    size_t n = strlen(name);
    bool ok = n >= 1 && n <= 32 && name[0] >= 'a' && name[0] <= 'z';
    for (size_t i = 0; ok && i < n; i++)
        ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
             name[i] == '_' || name[i] == '-';
    if (!ok)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "bad parameter name '%.40s' (lower-case letters, digits, _ and -)", name);
    /* Where the run writes and which binaries it runs are the gateway's to say. */
    static const char *const ours[] = {"out", "kind", "bin", "work_dir", "work-dir"};
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
        if (strcmp(name, ours[i]) == 0)
            return dfs_seterr(errmsg, DFS_EINVAL, "%s is set by the gateway", name);
    if (value == NULL)
        return DFS_OK;
    size_t m = strlen(value);
    ok = m <= 256 && value[0] != '-';
    for (size_t i = 0; ok && i < m; i++) {
        char c = value[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '.' || c == ',' || c == ':' || c == '+' || c == '-';
    }
    if (!ok)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "bad value for %s: at most 256 of A-Z a-z 0-9 _ . , : + -, not "
                          "starting with -",
                          name);
    return DFS_OK;
}

void dfs_exp_knobs_free(struct dfs_exp_knob *knobs, size_t n)
{
    for (size_t i = 0; knobs != NULL && i < n; i++) {
        free(knobs[i].name);
        free(knobs[i].value);
    }
    free(knobs);
}

static const char *ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A JSON string without escapes (our names and values never need one) at p. */
static const char *jstring(const char *p, const char *end, char **out)
{
    if (p >= end || *p != '"')
        return NULL;
    const char *s = ++p;
    while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
        p++;
    if (p >= end || *p != '"')
        return NULL;
    *out = strndup(s, (size_t)(p - s));
    return *out != NULL ? p + 1 : NULL;
}

int dfs_exp_parse_json(const char *body, size_t len, char **kind, struct dfs_exp_knob **knobs,
                       size_t *n, char **errmsg)
{
    const char *p = body, *end = body + len;
    struct dfs_exp_knob *k = calloc(MAX_KNOBS, sizeof *k);
    size_t count = 0;
    char *kd = NULL, *key = NULL, *val = NULL;
    int rc = DFS_OK;
    if (k == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    p = ws(p, end);
    if (p >= end || *p != '{') {
        rc = dfs_seterr(errmsg, DFS_EINVAL, "the body must be a JSON object");
        goto out;
    }
    p = ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            p = jstring(ws(p, end), end, &key);
            if (p == NULL || (p = ws(p, end)) >= end || *p != ':') {
                rc = dfs_seterr(errmsg, DFS_EINVAL,
                                "bad JSON: expected \"name\": value (flat, no escapes)");
                goto out;
            }
            p = ws(p + 1, end);
            bool flag = false, skip = false;
            if (p < end && *p == '"') {
                p = jstring(p, end, &val);
            } else if (end - p >= 4 && strncmp(p, "true", 4) == 0) {
                flag = true;
                p += 4;
            } else if (end - p >= 5 && strncmp(p, "false", 5) == 0) {
                skip = true;
                p += 5;
            } else if (end - p >= 4 && strncmp(p, "null", 4) == 0) {
                skip = true;
                p += 4;
            } else {
                const char *s = p;
                while (p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == '-' ||
                                   *p == '+' || *p == 'e' || *p == 'E'))
                    p++;
                val = p > s ? strndup(s, (size_t)(p - s)) : NULL;
                if (val == NULL)
                    p = NULL;
            }
            if (p == NULL) {
                rc = dfs_seterr(errmsg, DFS_EINVAL,
                                "bad JSON value for %s (strings, numbers, true, false)", key);
                goto out;
            }
            if (strcmp(key, "kind") == 0) {
                if (val == NULL) {
                    rc = dfs_seterr(errmsg, DFS_EINVAL, "kind must be a string");
                    goto out;
                }
                free(kd);
                kd = val;
                val = NULL;
            } else if (!skip) {
                (void)flag;
                if ((rc = dfs_exp_check_knob(key, val, errmsg)) != DFS_OK)
                    goto out;
                if (count == MAX_KNOBS) {
                    rc = dfs_seterr(errmsg, DFS_EINVAL, "more than %d parameters", MAX_KNOBS);
                    goto out;
                }
                k[count].name = key;
                k[count].value = val;
                count++;
                key = val = NULL;
            }
            free(key);
            free(val);
            key = val = NULL;
            p = ws(p, end);
            if (p < end && *p == ',') {
                p++;
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                break;
            }
            rc = dfs_seterr(errmsg, DFS_EINVAL, "bad JSON: expected , or }");
            goto out;
        }
    }
    if (ws(p, end) != end)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "bad JSON: text after the object");
out:
    free(key);
    free(val);
    if (rc != DFS_OK) {
        free(kd);
        dfs_exp_knobs_free(k, count);
        return rc;
    }
    *kind = kd;
    *knobs = k;
    *n = count;
    return DFS_OK;
}

/* ---- state files ----------------------------------------------------------------------------- */

static char *run_path(const dfs_experiments *x, const char *id, const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s%s%s", x->dir, id, name != NULL ? "/" : "", name != NULL ? name : "") <
        0)
        return NULL;
    return p;
}

static void write_state(const dfs_experiments *x, const struct run *r)
{
    char *path = run_path(x, r->id, STATE_FILE);
    FILE *f = path != NULL ? fopen(path, "w") : NULL;
    if (f != NULL) {
        fprintf(f,
                "dfs-experiment-state 1\nkind %s\nstarted_ms %" PRId64 "\nended_ms %" PRId64
                "\n%s %d\ncancelled %d\n",
                r->kind, r->started_ms, r->ended_ms, r->signal != 0 ? "signal" : "exit",
                r->signal != 0 ? r->signal : r->exit_status, r->cancelled ? 1 : 0);
        fclose(f);
    }
    free(path);
}

/* A run of an earlier gateway, from its folder. */
static struct run *load_run(dfs_experiments *x, const char *id)
{
    struct run *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    snprintf(r->id, sizeof r->id, "%s", id);
    snprintf(r->kind, sizeof r->kind, "?");
    r->x = x;
    r->exit_status = -1;
    char *path = run_path(x, id, STATE_FILE);
    FILE *f = path != NULL ? fopen(path, "r") : NULL;
    free(path);
    if (f != NULL) {
        char how[16] = "";
        int version = 0, code = 0, cancelled = 0;
        if (fscanf(f,
                   "dfs-experiment-state %d kind %15s started_ms %" SCNd64 " ended_ms %" SCNd64
                   " %15s %d cancelled %d",
                   &version, r->kind, &r->started_ms, &r->ended_ms, how, &code, &cancelled) == 7 &&
            version == 1) {
            r->known_end = true;
            r->cancelled = cancelled != 0;
            if (strcmp(how, "signal") == 0)
                r->signal = code;
            else
                r->exit_status = code;
        }
        fclose(f);
    }
    return r;
}

static int by_id_desc(const void *a, const void *b)
{
    return -strcmp(*(char *const *)a, *(char *const *)b);
}

/* List the runs already in the folder (newest first). */
static void load_runs(dfs_experiments *x)
{
    DIR *d = opendir(x->dir);
    if (d == NULL)
        return;
    char **ids = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= 64)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nids = realloc(ids, cap * sizeof *ids);
            if (nids == NULL)
                break;
            ids = nids;
        }
        if ((ids[n] = strdup(e->d_name)) != NULL)
            n++;
    }
    closedir(d);
    if (n > 0)
        qsort(ids, n, sizeof *ids, by_id_desc);
    struct run **tail = &x->runs;
    for (size_t i = 0; i < n; i++) {
        struct run *r = load_run(x, ids[i]);
        if (r != NULL) {
            *tail = r;
            tail = &r->next;
        }
        free(ids[i]);
    }
    free(ids);
}

/* ---- life cycle ------------------------------------------------------------------------------ */

int dfs_experiments_create(const struct dfs_experiments_config *cfg, dfs_experiments **out,
                           char **errmsg)
{
    if (mkdir(cfg->dir, 0755) != 0 && errno != EEXIST)
        return dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot create %s", cfg->dir);
    dfs_experiments *x = calloc(1, sizeof *x);
    if (x == NULL || (x->dir = strdup(cfg->dir)) == NULL ||
        (cfg->program != NULL && (x->program = strdup(cfg->program)) == NULL) ||
        (cfg->bin != NULL && (x->bin = strdup(cfg->bin)) == NULL)) {
        if (x != NULL) {
            free(x->dir);
            free(x->program);
        }
        free(x);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    x->max_running = cfg->max_running > 0 ? cfg->max_running : 1;
    x->grace_ms = cfg->stop_grace_ms > 0 ? cfg->stop_grace_ms : 3000;
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    load_runs(x);
    *out = x;
    return DFS_OK;
}

const char *dfs_experiments_program(const dfs_experiments *x)
{
    return x->program;
}

/*
 * Run argv in its own process group (cancel kills the whole group), with the default signal mask
 * and dispositions (the gateway blocks SIGTERM and ignores SIGPIPE), stdin from /dev/null, stdout
 * and stderr into log. 0 and *pid, or DFS_EIO with *errmsg.
 */
static int spawn(const dfs_experiments *x, char **argv, const char *log, bool append, pid_t *pid,
                 char **errmsg)
{
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&fa);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log,
                                     O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    extern char **environ;
    int e = posix_spawn(pid, x->program, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (e != 0)
        return dfs_seterr_errno(errmsg, DFS_EIO, e, "cannot run %s", x->program);
    return DFS_OK;
}

static int wait_child(pid_t pid, int *st)
{
    pid_t w;
    do
        w = waitpid(pid, st, 0);
    while (w < 0 && errno == EINTR);
    return w == pid ? 0 : -1;
}

static void *watch(void *arg)
{
    struct run *r = arg;
    dfs_experiments *x = r->x;
    int st = 0;
    int w = wait_child(r->pid, &st);
    /* Done: draw its figures (`PROGRAM plot --out DIR`), still as part of the run, so the page
       shows them once the run says done. Their failure leaves the run done (plot_exit says). */
    pthread_mutex_lock(&x->mu);
    bool plot = w == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && !r->cancelled;
    char *log = plot ? run_path(x, r->id, LOG_FILE) : NULL;
    char *argv[] = {x->program, "plot", "--out", r->dir, NULL};
    pid_t pp = 0;
    if (log != NULL && spawn(x, argv, log, true, &pp, NULL) == DFS_OK)
        r->pid = pp;
    else
        pp = 0;
    pthread_mutex_unlock(&x->mu);
    free(log);
    int pst = 0;
    if (pp > 0 && wait_child(pp, &pst) == 0)
        r->plot_exit = WIFEXITED(pst) ? WEXITSTATUS(pst) : 128 + WTERMSIG(pst);
    pthread_mutex_lock(&x->mu);
    r->running = false;
    r->known_end = w == 0;
    r->ended_ms = dfs_clock_wall_ms();
    if (w == 0 && WIFEXITED(st))
        r->exit_status = WEXITSTATUS(st);
    else if (w == 0 && WIFSIGNALED(st))
        r->signal = WTERMSIG(st);
    x->running--;
    write_state(x, r);
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
    dfs_log(DFS_LOG_INFO, "experiment ended id=%s exit=%d signal=%d cancelled=%d", r->id,
            r->exit_status, r->signal, r->cancelled);
    return NULL;
}

/* SIGTERM to the run's process group, then SIGKILL once grace_ms passed. Holds mu on entry and
   exit (released while waiting). */
static void stop_run(dfs_experiments *x, struct run *r)
{
    if (!r->running)
        return;
    r->cancelled = true;
    kill(-r->pid, SIGTERM);
    struct timespec until = dfs_clock_abstime(x->grace_ms);
    while (r->running && pthread_cond_timedwait(&x->cv, &x->mu, &until) == 0)
        ;
    if (r->running)
        kill(-r->pid, SIGKILL);
}

void dfs_experiments_destroy(dfs_experiments *x)
{
    if (x == NULL)
        return;
    pthread_mutex_lock(&x->mu);
    for (struct run *r = x->runs; r != NULL; r = r->next)
        if (r->running) {
            r->cancelled = true;
            kill(-r->pid, SIGTERM);
        }
    for (struct run *r = x->runs; r != NULL; r = r->next)
        stop_run(x, r);
    pthread_mutex_unlock(&x->mu);
    for (struct run *r = x->runs; r != NULL; r = r->next)
        if (r->has_watcher)
            pthread_join(r->watcher, NULL);
    for (struct run *r = x->runs, *next; r != NULL; r = next) {
        next = r->next;
        for (size_t i = 0; r->argv != NULL && r->argv[i] != NULL; i++)
            free(r->argv[i]);
        free(r->argv);
        free(r->dir);
        free(r);
    }
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cv);
    free(x->program);
    free(x->bin);
    free(x->dir);
    free(x);
}

/* argv: PROGRAM KIND [--knob [value]]... --out DIR */
static char **make_argv(const char *program, const char *kind, const struct dfs_exp_knob *knobs,
                        size_t n, const char *out, const char *bin)
{
    char **argv = calloc(2 * n + 8, sizeof *argv);
    if (argv == NULL)
        return NULL;
    size_t a = 0;
    bool ok = (argv[a++] = strdup(program)) != NULL && (argv[a++] = strdup(kind)) != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        char *flag = NULL;
        ok = asprintf(&flag, "--%s", knobs[i].name) >= 0;
        if (!ok)
            break;
        for (char *p = flag; *p != '\0'; p++)
            if (*p == '_')
                *p = '-';
        argv[a++] = flag;
        if (knobs[i].value != NULL)
            ok = (argv[a++] = strdup(knobs[i].value)) != NULL;
    }
    ok = ok && (argv[a++] = strdup("--out")) != NULL && (argv[a++] = strdup(out)) != NULL;
    if (ok && bin != NULL)
        ok = (argv[a++] = strdup("--bin")) != NULL && (argv[a++] = strdup(bin)) != NULL;
    if (!ok) {
        for (size_t i = 0; i < a; i++)
            free(argv[i]);
        free(argv);
        return NULL;
    }
    return argv;
}

int dfs_experiments_start(dfs_experiments *x, const char *kind, const struct dfs_exp_knob *knobs,
                          size_t n, char **id, char **errmsg)
{
    bool known = false;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        known = known || strcmp(kind, kinds[i]) == 0;
    if (!known)
        return dfs_seterr(errmsg, DFS_EINVAL, "kind must be store, loss or simulate, not '%.32s'",
                          kind);
    for (size_t i = 0; i < n; i++) {
        int rc = dfs_exp_check_knob(knobs[i].name, knobs[i].value, errmsg);
        if (rc != DFS_OK)
            return rc;
    }
    if (x->program == NULL || access(x->program, X_OK) != 0)
        return dfs_seterr(errmsg, DFS_EUNAVAIL,
                          "no experiment program on this gateway (%s; see --experiment-program)",
                          x->program != NULL ? x->program : "none found");
    pthread_mutex_lock(&x->mu);
    if (x->running >= x->max_running) {
        unsigned max = x->max_running;
        pthread_mutex_unlock(&x->mu);
        return dfs_seterr(errmsg, DFS_EABORTED,
                          "%u experiment%s running already (at most %u at once): try later", max,
                          max == 1 ? " is" : "s are", max);
    }
    struct run *r = calloc(1, sizeof *r);
    if (r == NULL) {
        pthread_mutex_unlock(&x->mu);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    r->x = x;
    r->exit_status = -1;
    r->plot_exit = -1;
    snprintf(r->kind, sizeof r->kind, "%s", kind);
    /* A fresh folder: UTC time and a counter (bumped past any left by an earlier gateway). */
    char *dir = NULL;
    int rc = DFS_OK;
    for (int tries = 0; tries < 1000; tries++) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
        snprintf(r->id, sizeof r->id, "%s-%s-%u", stamp, kind, ++x->seq);
        free(dir);
        dir = run_path(x, r->id, NULL);
        if (dir == NULL || mkdir(dir, 0755) == 0 || errno != EEXIST)
            break;
    }
    if (dir == NULL || access(dir, W_OK) != 0)
        rc = dfs_seterr_errno(errmsg, DFS_EIO, errno, "cannot create a folder in %s", x->dir);
    char *log = rc == DFS_OK ? run_path(x, r->id, LOG_FILE) : NULL;
    if (rc == DFS_OK &&
        (log == NULL || (r->argv = make_argv(x->program, kind, knobs, n, dir, x->bin)) == NULL))
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    if (rc == DFS_OK)
        rc = spawn(x, r->argv, log, false, &r->pid, errmsg);
    free(log);
    if (rc == DFS_OK) {
        r->dir = dir;
        dir = NULL;
    }
    free(dir);
    if (rc == DFS_OK) {
        r->running = true;
        r->started_ms = dfs_clock_wall_ms();
        x->running++;
        if (pthread_create(&r->watcher, NULL, watch, r) == 0) {
            r->has_watcher = true;
        } else {
            /* Cannot watch it: stop it and reap it here. */
            kill(-r->pid, SIGKILL);
            waitpid(r->pid, NULL, 0);
            r->running = false;
            x->running--;
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "cannot start a thread");
        }
    }
    if (rc != DFS_OK) {
        for (size_t i = 0; r->argv != NULL && r->argv[i] != NULL; i++)
            free(r->argv[i]);
        free(r->argv);
        free(r->dir);
        free(r);
        pthread_mutex_unlock(&x->mu);
        return rc;
    }
    r->next = x->runs;
    x->runs = r;
    *id = strdup(r->id);
    pthread_mutex_unlock(&x->mu);
    if (*id == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    return DFS_OK;
}

static struct run *find(dfs_experiments *x, const char *id)
{
    for (struct run *r = x->runs; r != NULL; r = r->next)
        if (strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

int dfs_experiments_cancel(dfs_experiments *x, const char *id, char **errmsg)
{
    pthread_mutex_lock(&x->mu);
    struct run *r = find(x, id);
    int rc = DFS_OK;
    if (r == NULL)
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "no experiment %s", id);
    else if (!r->running)
        rc = dfs_seterr(errmsg, DFS_EPRECOND, "experiment %s is not running", id);
    else
        stop_run(x, r);
    pthread_mutex_unlock(&x->mu);
    return rc;
}

/* ---- answers --------------------------------------------------------------------------------- */

static const char *state_name(const struct run *r)
{
    if (r->running)
        return "running";
    if (r->cancelled)
        return "cancelled";
    if (r->known_end && r->signal == 0 && r->exit_status == 0)
        return "done";
    return "failed";
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The run folder's regular files, sorted (caller frees each and the array). */
static void scan(DIR *d, const char *prefix, char ***names, size_t *n, size_t *cap);

/* The run folder's regular files and those in its plots/ ("plots/NAME"), sorted (caller frees
   each and the array). */
static char **list_files(const dfs_experiments *x, const char *id, size_t *n)
{
    *n = 0;
    char **names = NULL;
    size_t cap = 0;
    char *path = run_path(x, id, NULL);
    DIR *d = path != NULL ? opendir(path) : NULL;
    free(path);
    if (d != NULL) {
        scan(d, "", &names, n, &cap);
        closedir(d);
    }
    path = run_path(x, id, "plots");
    d = path != NULL ? opendir(path) : NULL;
    free(path);
    if (d != NULL) {
        scan(d, "plots/", &names, n, &cap);
        closedir(d);
    }
    if (*n > 0)
        qsort(names, *n, sizeof *names, by_name);
    return names;
}

static void scan(DIR *d, const char *prefix, char ***names_out, size_t *n, size_t *capp)
{
    char **names = *names_out;
    size_t cap = *capp;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, 0) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(names, cap * sizeof *names);
            if (nn == NULL)
                break;
            names = nn;
        }
        if (asprintf(&names[*n], "%s%s", prefix, e->d_name) >= 0)
            (*n)++;
    }
    *names_out = names;
    *capp = cap;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The summary fields of a run (mu held). */
static void json_summary(dfs_json *j, const struct run *r, char **files, size_t nfiles)
{
    dfs_json_key(j, "id");
    dfs_json_string(j, r->id);
    dfs_json_key(j, "kind");
    dfs_json_string(j, r->kind);
    dfs_json_key(j, "state");
    dfs_json_string(j, state_name(r));
    dfs_json_key(j, "exit_status");
    if (r->known_end && r->signal == 0 && !r->running)
        dfs_json_int(j, r->exit_status);
    else
        dfs_json_null(j);
    dfs_json_key(j, "signal");
    if (r->signal != 0)
        dfs_json_int(j, r->signal);
    else
        dfs_json_null(j);
    dfs_json_key(j, "started_ms");
    dfs_json_int(j, r->started_ms);
    dfs_json_key(j, "ended_ms");
    if (r->running || r->ended_ms == 0)
        dfs_json_null(j);
    else
        dfs_json_int(j, r->ended_ms);
    dfs_json_key(j, "plots");
    dfs_json_begin_array(j);
    for (size_t i = 0; i < nfiles; i++)
        if (ends_with(files[i], ".png"))
            dfs_json_string(j, strncmp(files[i], "plots/", 6) == 0 ? files[i] + 6 : files[i]);
    dfs_json_end_array(j);
    if (r->plot_exit > 0) {
        dfs_json_key(j, "plot_exit_status");
        dfs_json_int(j, r->plot_exit);
    }
}

/* Close a memory stream over *buf / *n (which fclose sets) and hand its text out. */
static int finish_doc(FILE *f, char **buf, size_t *n, char **body, size_t *len, char **errmsg)
{
    if (fclose(f) != 0) {
        free(*buf);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    *body = *buf;
    *len = *n;
    return DFS_OK;
}

int dfs_experiments_list_json(dfs_experiments *x, char **body, size_t *len, char **errmsg)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (f == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    dfs_json j;
    dfs_json_init(&j, f);
    dfs_json_begin_object(&j);
    dfs_json_key(&j, "program");
    if (x->program != NULL)
        dfs_json_string(&j, x->program);
    else
        dfs_json_null(&j);
    dfs_json_key(&j, "experiments");
    dfs_json_begin_array(&j);
    pthread_mutex_lock(&x->mu);
    for (struct run *r = x->runs; r != NULL; r = r->next) {
        size_t nf = 0;
        char **files = list_files(x, r->id, &nf);
        dfs_json_begin_object(&j);
        json_summary(&j, r, files, nf);
        dfs_json_end_object(&j);
        free_names(files, nf);
    }
    pthread_mutex_unlock(&x->mu);
    dfs_json_end_array(&j);
    dfs_json_end_object(&j);
    dfs_json_finish(&j);
    return finish_doc(f, &buf, &n, body, len, errmsg);
}

/* Up to max bytes of a file (from its end when tail); NULL when unreadable. */
static char *read_file(const char *path, size_t max, bool tail, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) == 0 && (tail || (uint64_t)st.st_size <= max)) {
        size_t want = (uint64_t)st.st_size < max ? (size_t)st.st_size : max;
        off_t at = tail ? st.st_size - (off_t)want : 0;
        buf = malloc(want + 1);
        ssize_t got = buf != NULL ? pread(fd, buf, want, at) : -1;
        if (got < 0) {
            free(buf);
            buf = NULL;
        } else {
            buf[got] = '\0';
            *len = (size_t)got;
        }
    }
    close(fd);
    return buf;
}

int dfs_experiments_get_json(dfs_experiments *x, const char *id, char **body, size_t *len,
                             char **errmsg)
{
    pthread_mutex_lock(&x->mu);
    struct run *r = find(x, id);
    if (r == NULL) {
        pthread_mutex_unlock(&x->mu);
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no experiment %s", id);
    }
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (f == NULL) {
        pthread_mutex_unlock(&x->mu);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    size_t nf = 0;
    char **files = list_files(x, r->id, &nf);
    dfs_json j;
    dfs_json_init(&j, f);
    dfs_json_begin_object(&j);
    json_summary(&j, r, files, nf);
    dfs_json_key(&j, "args");
    dfs_json_begin_array(&j);
    for (size_t i = 0; r->argv != NULL && r->argv[i] != NULL; i++)
        dfs_json_string(&j, r->argv[i]);
    dfs_json_end_array(&j);
    dfs_json_key(&j, "files");
    dfs_json_begin_array(&j);
    for (size_t i = 0; i < nf; i++)
        dfs_json_string(&j, files[i]);
    dfs_json_end_array(&j);
    /* The results: results.json, else the first *.json (not while it may be half-written). */
    const char *pick = NULL;
    for (size_t i = 0; !r->running && i < nf && pick == NULL; i++)
        if (strcmp(files[i], "results.json") == 0)
            pick = files[i];
    for (size_t i = 0; !r->running && i < nf && pick == NULL; i++)
        if (ends_with(files[i], ".json"))
            pick = files[i];
    dfs_json_key(&j, "results_file");
    if (pick != NULL)
        dfs_json_string(&j, pick);
    else
        dfs_json_null(&j);
    char *path = pick != NULL ? run_path(x, r->id, pick) : NULL;
    size_t rlen = 0;
    char *results = path != NULL ? read_file(path, RESULTS_MAX, false, &rlen) : NULL;
    free(path);
    /* Inlined as it is when it looks like a JSON document (the program writes it with a JSON
       library); anything else is left to .../files/NAME. */
    size_t s = 0;
    while (results != NULL && s < rlen && strchr(" \t\r\n", results[s]) != NULL)
        s++;
    bool inline_ok = results != NULL && s < rlen && (results[s] == '{' || results[s] == '[') &&
                     memchr(results, '\0', rlen) == NULL;
    dfs_json_key(&j, "results");
    if (inline_ok) {
        fflush(f);
        while (rlen > 0 && strchr(" \t\r\n", results[rlen - 1]) != NULL)
            rlen--;
        fwrite(results + s, 1, rlen - s, f);
        j.after_key = false;
    } else {
        dfs_json_null(&j);
    }
    free(results);
    char *logp = run_path(x, r->id, LOG_FILE);
    size_t llen = 0;
    char *tail = logp != NULL ? read_file(logp, LOG_TAIL, true, &llen) : NULL;
    free(logp);
    dfs_json_key(&j, "log_tail");
    dfs_json_string(&j, tail != NULL ? tail : "");
    free(tail);
    dfs_json_end_object(&j);
    dfs_json_finish(&j);
    free_names(files, nf);
    pthread_mutex_unlock(&x->mu);
    return finish_doc(f, &buf, &n, body, len, errmsg);
}

int dfs_experiments_file(dfs_experiments *x, const char *id, const char *name, char **path,
                         char **errmsg)
{
    if (name[0] == '\0' || name[0] == '.' || strchr(name, '/') != NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad file name");
    pthread_mutex_lock(&x->mu);
    bool known = find(x, id) != NULL;
    pthread_mutex_unlock(&x->mu);
    if (!known)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no experiment %s", id);
    /* Figures are in plots/ (the program's `plot` step) or beside the results. */
    char *sub = NULL;
    if (asprintf(&sub, "plots/%s", name) < 0)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    *path = run_path(x, id, sub);
    free(sub);
    if (*path != NULL && access(*path, R_OK) != 0) {
        free(*path);
        *path = run_path(x, id, name);
    }
    if (*path == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    return DFS_OK;
}
