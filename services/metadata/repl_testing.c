/* The replication tests' state machine (SQLite + hash chain) and replica process: see the .h. */
#include "services/metadata/repl_testing.h"

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"

#include <openssl/evp.h>
#include <sqlite3.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the state machine ---- */

struct repl_fsm {
    char path[PATH_MAX];
    sqlite3 *db;        /* used by apply and restore (the replication thread) */
    pthread_mutex_t mu; /* guards everything below and db against digest() */
    pthread_cond_t cv;
    uint64_t applied, count;
    unsigned char chain[32];
    uint64_t violations, apply_calls, restores, snapshots;
    int fail_applies;
    bool hold, held;
    bool hold_apply, apply_held;
};

struct fsm_snap {
    sqlite3 *db; /* read-only connection holding the read transaction */
    uint64_t index;
};

static int sql_err(sqlite3 *db, const char *what, char **errmsg)
{
    return dfs_seterr(errmsg, DFS_EIO, "%s: %s", what, db ? sqlite3_errmsg(db) : "no database");
}

static int exec(sqlite3 *db, const char *sql, char **errmsg)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return sql_err(db, sql, errmsg);
    return 0;
}

/* Read (applied, count, chain) from db into f. */
static int load_meta(repl_fsm *f, sqlite3 *db, char **errmsg)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT applied, count, chain FROM meta WHERE k = 0", -1, &st,
                           NULL) != SQLITE_OK)
        return sql_err(db, "select meta", errmsg);
    int rc = 0;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 2) == 32) {
        f->applied = (uint64_t)sqlite3_column_int64(st, 0);
        f->count = (uint64_t)sqlite3_column_int64(st, 1);
        memcpy(f->chain, sqlite3_column_blob(st, 2), 32);
    } else {
        rc = sql_err(db, "meta row", errmsg);
    }
    sqlite3_finalize(st);
    return rc;
}

int repl_fsm_open(const char *path, repl_fsm **out, char **errmsg)
{
    *out = NULL;
    repl_fsm *f = calloc(1, sizeof *f);
    if (f == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    snprintf(f->path, sizeof f->path, "%s", path);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    int rc;
    if (sqlite3_open_v2(path, &f->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = sql_err(f->db, path, errmsg);
        goto fail;
    }
    sqlite3_busy_timeout(f->db, 10000);
    static const unsigned char zero[32];
    if ((rc = exec(f->db,
                   "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                   "CREATE TABLE IF NOT EXISTS meta (k INTEGER PRIMARY KEY CHECK (k = 0),"
                   " applied INTEGER NOT NULL, count INTEGER NOT NULL, chain BLOB NOT NULL);"
                   "CREATE TABLE IF NOT EXISTS cmds (idx INTEGER NOT NULL, pos INTEGER NOT "
                   "NULL, body BLOB NOT NULL, PRIMARY KEY (idx, pos));",
                   errmsg)) != 0)
        goto fail;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(f->db, "INSERT OR IGNORE INTO meta VALUES (0, 0, 0, ?)", -1, &st,
                           NULL) != SQLITE_OK) {
        rc = sql_err(f->db, "insert meta", errmsg);
        goto fail;
    }
    sqlite3_bind_blob(st, 1, zero, 32, SQLITE_STATIC);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) {
        rc = sql_err(f->db, "insert meta", errmsg);
        goto fail;
    }
    if ((rc = load_meta(f, f->db, errmsg)) != 0)
        goto fail;
    *out = f;
    return 0;
fail:
    sqlite3_close(f->db);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return rc;
}

void repl_fsm_close(repl_fsm *f)
{
    if (f == NULL)
        return;
    sqlite3_close(f->db);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void repl_fsm_digest(repl_fsm *f, struct repl_fsm_digest *out)
{
    pthread_mutex_lock(&f->mu);
    out->applied = f->applied;
    out->count = f->count;
    memcpy(out->chain, f->chain, 32);
    out->violations = f->violations;
    out->apply_calls = f->apply_calls;
    out->restores = f->restores;
    out->snapshots = f->snapshots;
    pthread_mutex_unlock(&f->mu);
}

void repl_fsm_chain_hex(const struct repl_fsm_digest *d, char *buf)
{
    for (int i = 0; i < 8; i++)
        snprintf(buf + 2 * i, 3, "%02x", d->chain[i]);
}

void repl_fsm_fail_applies(repl_fsm *f, int n)
{
    pthread_mutex_lock(&f->mu);
    f->fail_applies = n;
    pthread_mutex_unlock(&f->mu);
}

/* Sets a hold flag (*flag, under f->mu) and wakes whoever waits on it. */
static void set_hold(repl_fsm *f, bool *flag, bool hold)
{
    pthread_mutex_lock(&f->mu);
    *flag = hold;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* Waits up to timeout_ms for *held (under f->mu) to become true; returns it. */
static bool wait_held(repl_fsm *f, const bool *held, int64_t timeout_ms)
{
    int64_t deadline = dfs_clock_mono_ns() + timeout_ms * 1000000;
    pthread_mutex_lock(&f->mu);
    while (!*held && dfs_clock_mono_ns() < deadline) {
        struct timespec ts = dfs_clock_abstime(20);
        pthread_cond_timedwait(&f->cv, &f->mu, &ts);
    }
    bool h = *held;
    pthread_mutex_unlock(&f->mu);
    return h;
}

void repl_fsm_hold_snapshots(repl_fsm *f, bool hold)
{
    set_hold(f, &f->hold, hold);
}

bool repl_fsm_wait_snapshot_held(repl_fsm *f, int64_t timeout_ms)
{
    return wait_held(f, &f->held, timeout_ms);
}

static void le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

void repl_fsm_hold_applies(repl_fsm *f, bool hold)
{
    set_hold(f, &f->hold_apply, hold);
}

bool repl_fsm_wait_apply_held(repl_fsm *f, int64_t timeout_ms)
{
    return wait_held(f, &f->apply_held, timeout_ms);
}

static int fsm_apply(void *ctx, uint64_t index, const struct dfs_repl_cmd *cmds, size_t n,
                     struct dfs_repl_result *results, char **errmsg)
{
    repl_fsm *f = ctx;
    pthread_mutex_lock(&f->mu);
    while (f->hold_apply) {
        f->apply_held = true;
        pthread_cond_broadcast(&f->cv);
        pthread_cond_wait(&f->cv, &f->mu);
    }
    f->apply_held = false;
    f->apply_calls++;
    int rc = 0;
    if (index <= f->applied) {
        f->violations++;
        rc =
            dfs_seterr(errmsg, DFS_EINTERNAL,
                       "entry %" PRIu64 " applied again (state at %" PRIu64 ")", index, f->applied);
        goto out;
    }
    if (f->fail_applies > 0) {
        f->fail_applies--;
        rc = dfs_seterr(errmsg, DFS_EIO, "injected I/O error at entry %" PRIu64, index);
        goto out;
    }
    if ((rc = exec(f->db, "BEGIN IMMEDIATE", errmsg)) != 0)
        goto out;
    sqlite3_stmt *ins = NULL, *upd = NULL;
    if (sqlite3_prepare_v2(f->db, "INSERT INTO cmds VALUES (?, ?, ?)", -1, &ins, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(f->db, "UPDATE meta SET applied = ?, count = ?, chain = ? WHERE k = 0",
                           -1, &upd, NULL) != SQLITE_OK) {
        rc = sql_err(f->db, "prepare", errmsg);
        goto rollback;
    }
    unsigned char chain[32];
    memcpy(chain, f->chain, 32);
    uint64_t count = f->count;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *body = cmds[i].data;
        if (body[0] == '!') {
            results[i].status = DFS_EEXIST;
            continue;
        }
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)index);
        sqlite3_bind_int64(ins, 2, (sqlite3_int64)i);
        sqlite3_bind_blob(ins, 3, cmds[i].data, (int)cmds[i].len, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            rc = sql_err(f->db, "insert", errmsg);
            goto rollback;
        }
        unsigned char hdr[12];
        le64(hdr, index);
        hdr[8] = (unsigned char)i;
        hdr[9] = (unsigned char)(i >> 8);
        hdr[10] = (unsigned char)(i >> 16);
        hdr[11] = (unsigned char)(i >> 24);
        EVP_MD_CTX *sha = EVP_MD_CTX_new();
        unsigned int dlen = 0;
        if (sha == NULL || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1 ||
            EVP_DigestUpdate(sha, chain, 32) != 1 || EVP_DigestUpdate(sha, hdr, sizeof hdr) != 1 ||
            EVP_DigestUpdate(sha, cmds[i].data, cmds[i].len) != 1 ||
            EVP_DigestFinal_ex(sha, chain, &dlen) != 1) {
            EVP_MD_CTX_free(sha);
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "sha-256");
            goto rollback;
        }
        EVP_MD_CTX_free(sha);
        count++;
        results[i].data = malloc(8);
        if (results[i].data != NULL) {
            le64(results[i].data, count);
            results[i].len = 8;
        }
    }
    sqlite3_bind_int64(upd, 1, (sqlite3_int64)index);
    sqlite3_bind_int64(upd, 2, (sqlite3_int64)count);
    sqlite3_bind_blob(upd, 3, chain, 32, SQLITE_STATIC);
    if (sqlite3_step(upd) != SQLITE_DONE) {
        rc = sql_err(f->db, "update meta", errmsg);
        goto rollback;
    }
    if ((rc = exec(f->db, "COMMIT", errmsg)) != 0)
        goto rollback;
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    f->applied = index;
    f->count = count;
    memcpy(f->chain, chain, 32);
    goto out;
rollback:
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    sqlite3_exec(f->db, "ROLLBACK", NULL, NULL, NULL);
    for (size_t i = 0; i < n; i++) {
        free(results[i].data);
        results[i] = (struct dfs_repl_result){0};
    }
out:
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int fsm_snapshot_prepare(void *ctx, uint64_t index, void **snap, char **errmsg)
{
    repl_fsm *f = ctx;
    struct fsm_snap *s = calloc(1, sizeof *s);
    if (s == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    s->index = index;
    int rc;
    if (sqlite3_open_v2(f->path, &s->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        rc = sql_err(s->db, "open for snapshot", errmsg);
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 10000);
    /* BEGIN alone takes no snapshot of the WAL; the first read does. */
    if ((rc = exec(s->db, "BEGIN", errmsg)) != 0)
        goto fail;
    repl_fsm probe = {0};
    if ((rc = load_meta(&probe, s->db, errmsg)) != 0)
        goto fail;
    if (probe.applied > index) {
        rc = dfs_seterr(errmsg, DFS_EINTERNAL,
                        "state at %" PRIu64 " is past the snapshot's %" PRIu64, probe.applied,
                        index);
        goto fail;
    }
    *snap = s;
    return 0;
fail:
    sqlite3_close(s->db);
    free(s);
    return rc;
}

static int fsm_snapshot_write(void *ctx, void *snap, const char *path, char **errmsg)
{
    repl_fsm *f = ctx;
    struct fsm_snap *s = snap;
    pthread_mutex_lock(&f->mu);
    while (f->hold) {
        f->held = true;
        pthread_cond_broadcast(&f->cv);
        pthread_cond_wait(&f->cv, &f->mu);
    }
    f->held = false;
    pthread_mutex_unlock(&f->mu);
    sqlite3 *dst = NULL;
    if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        int rc = sql_err(dst, path, errmsg);
        sqlite3_close(dst);
        return rc;
    }
    /* The backup reads inside s->db's open read transaction: the state as of the snapshot. */
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", s->db, "main");
    int rc = 0;
    if (b == NULL) {
        rc = sql_err(dst, "backup init", errmsg);
    } else {
        int step = sqlite3_backup_step(b, -1);
        sqlite3_backup_finish(b);
        if (step != SQLITE_DONE)
            rc = dfs_seterr(errmsg, DFS_EIO, "backup: %s", sqlite3_errstr(step));
    }
    sqlite3_close(dst);
    if (rc == 0) {
        pthread_mutex_lock(&f->mu);
        f->snapshots++;
        pthread_mutex_unlock(&f->mu);
    }
    return rc;
}

static void fsm_snapshot_release(void *ctx, void *snap)
{
    (void)ctx;
    struct fsm_snap *s = snap;
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(s->db);
    free(s);
}

static int fsm_restore(void *ctx, uint64_t index, const char *path, char **errmsg)
{
    repl_fsm *f = ctx;
    sqlite3 *src = NULL;
    int rc = 0;
    /* Stamp the file with its index first, so the one backup below installs both at once. */
    if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        rc = sql_err(src, path, errmsg);
        sqlite3_close(src);
        return rc;
    }
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE meta SET applied = %" PRIu64 " WHERE k = 0", index);
    if ((rc = exec(src, sql, errmsg)) != 0) {
        sqlite3_close(src);
        return rc;
    }
    pthread_mutex_lock(&f->mu);
    sqlite3_backup *b = sqlite3_backup_init(f->db, "main", src, "main");
    if (b == NULL) {
        rc = sql_err(f->db, "restore init", errmsg);
    } else {
        int step = sqlite3_backup_step(b, -1);
        sqlite3_backup_finish(b);
        if (step != SQLITE_DONE)
            rc = dfs_seterr(errmsg, DFS_EIO, "restore: %s", sqlite3_errstr(step));
    }
    if (rc == 0)
        rc = load_meta(f, f->db, errmsg);
    if (rc == 0)
        f->restores++;
    pthread_mutex_unlock(&f->mu);
    sqlite3_close(src);
    return rc;
}

const struct dfs_repl_ops repl_fsm_ops = {
    .apply = fsm_apply,
    .snapshot_prepare = fsm_snapshot_prepare,
    .snapshot_write = fsm_snapshot_write,
    .snapshot_release = fsm_snapshot_release,
    .restore = fsm_restore,
};

/* ---- the replica process ---- */

struct node {
    dfs_repl *repl;
    repl_fsm *fsm;
    uint64_t id;
};

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    enum dfs_repl_why why;
    int64_t at_ns;
};

static void waiter_done(void *arg, const struct dfs_repl_outcome *o)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->why = o->why;
    w->at_ns = dfs_clock_mono_ns();
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

struct proposer {
    struct node *node;
    pthread_t thread;
    int index;
    int count;
    size_t size;
    int64_t timeout_ms;
    uint64_t ok, notleader, lost, timeout, other;
    int64_t first_ok, last_ok;
};

static void *proposer_main(void *arg)
{
    struct proposer *p = arg;
    char *cmd = malloc(p->size + 1);
    struct waiter w;
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    for (int i = 0; i < p->count && cmd != NULL; i++) {
        /* Unique text, padded to size: node, process, thread, sequence, time. */
        int k = snprintf(cmd, p->size + 1, "n%" PRIu64 "p%dt%ds%dc%" PRId64 "/", p->node->id,
                         (int)getpid(), p->index, i, dfs_clock_mono_ns());
        for (size_t j = (size_t)k; j < p->size; j++)
            cmd[j] = (char)('a' + j % 26);
        size_t len = (size_t)k > p->size ? (size_t)k : p->size;
        w.done = false;
        if (dfs_repl_propose(p->node->repl, cmd, len, p->timeout_ms, waiter_done, &w) != 0) {
            p->other++;
            continue;
        }
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        switch (w.why) {
        case DFS_REPL_DONE:
            p->ok++;
            if (p->first_ok == 0)
                p->first_ok = w.at_ns;
            p->last_ok = w.at_ns;
            break;
        case DFS_REPL_NOT_LEADER:
            p->notleader++;
            break;
        case DFS_REPL_LEADERSHIP_LOST:
            p->lost++;
            break;
        case DFS_REPL_TIMEOUT:
            p->timeout++;
            break;
        default:
            p->other++;
            break;
        }
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    free(cmd);
    return NULL;
}

static void node_propose(struct node *n, int total, int conc, size_t size, int64_t timeout_ms,
                         FILE *out)
{
    if (conc < 1)
        conc = 1;
    if (size < 1)
        size = 1;
    struct proposer *ps = calloc((size_t)conc, sizeof *ps);
    int64_t t0 = dfs_clock_mono_ns();
    for (int i = 0; i < conc; i++) {
        ps[i].node = n;
        ps[i].index = i;
        ps[i].count = total / conc + (i < total % conc ? 1 : 0);
        ps[i].size = size;
        ps[i].timeout_ms = timeout_ms;
        pthread_create(&ps[i].thread, NULL, proposer_main, &ps[i]);
    }
    uint64_t ok = 0, nl = 0, lost = 0, to = 0, other = 0;
    int64_t first = 0, last = 0;
    for (int i = 0; i < conc; i++) {
        pthread_join(ps[i].thread, NULL);
        ok += ps[i].ok;
        nl += ps[i].notleader;
        lost += ps[i].lost;
        to += ps[i].timeout;
        other += ps[i].other;
        if (ps[i].first_ok != 0 && (first == 0 || ps[i].first_ok < first))
            first = ps[i].first_ok;
        if (ps[i].last_ok > last)
            last = ps[i].last_ok;
    }
    int64_t elapsed = dfs_clock_mono_ns() - t0;
    free(ps);
    fprintf(out,
            "propose ok=%" PRIu64 " notleader=%" PRIu64 " lost=%" PRIu64 " timeout=%" PRIu64
            " other=%" PRIu64 " ns=%" PRId64 " first=%" PRId64 " last=%" PRId64 "\n",
            ok, nl, lost, to, other, elapsed, first, last);
}

static void node_status(struct node *n, FILE *out)
{
    struct dfs_repl_status st;
    dfs_repl_status_get(n->repl, &st);
    struct repl_fsm_digest d;
    repl_fsm_digest(n->fsm, &d);
    char hex[17];
    repl_fsm_chain_hex(&d, hex);
    fprintf(out,
            "status role=%s ready=%d leader=%" PRIu64 " term=%" PRIu64 " commit=%" PRIu64
            " applied=%" PRIu64 " state=%" PRIu64 " count=%" PRIu64 " chain=%s snaps=%" PRIu64
            " restores=%" PRIu64 " violations=%" PRIu64 " members=%zu entries=%" PRIu64
            " commands=%" PRIu64 " mono=%" PRId64 "\n",
            dfs_repl_role_name(st.role), st.leader_ready ? 1 : 0, st.leader_id, st.term,
            st.commit_index, st.applied_index, d.applied, d.count, hex, st.snapshots_taken,
            d.restores, d.violations, st.n_members, st.entries_proposed, st.commands_proposed,
            dfs_clock_mono_ns());
}

/* "1@127.0.0.1:7000,2@..." -> members (addresses point into the string, which is modified). */
static size_t parse_members(char *s, struct dfs_repl_member *m, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(s, ",", &save); tok != NULL && n < max;
         tok = strtok_r(NULL, ",", &save)) {
        char *at = strchr(tok, '@');
        if (at == NULL)
            return 0;
        *at = '\0';
        m[n].id = strtoull(tok, NULL, 10);
        m[n].address = at + 1;
        n++;
    }
    return n;
}

int repl_node_main(int argc, char **argv)
{
    struct dfs_repl_options o = {0};
    struct dfs_repl_member members[DFS_REPL_MEMBERS_MAX];
    const char *dir = NULL;
    char *member_list = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--id") == 0)
            o.id = strtoull(v, NULL, 10);
        else if (strcmp(k, "--address") == 0)
            o.address = v;
        else if (strcmp(k, "--dir") == 0)
            dir = v;
        else if (strcmp(k, "--members") == 0)
            member_list = strdup(v);
        else if (strcmp(k, "--election-ms") == 0)
            o.election_timeout_ms = (unsigned)atoi(v);
        else if (strcmp(k, "--heartbeat-ms") == 0)
            o.heartbeat_ms = (unsigned)atoi(v);
        else if (strcmp(k, "--threshold") == 0)
            o.snapshot_threshold = (unsigned)atoi(v);
        else if (strcmp(k, "--trailing") == 0)
            o.snapshot_trailing = (unsigned)atoi(v);
        else if (strcmp(k, "--max-inflight") == 0)
            o.max_inflight_entries = (unsigned)atoi(v);
        else if (strcmp(k, "--max-batch") == 0)
            o.max_batch_commands = (unsigned)atoi(v);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (dir == NULL) {
        printf("error --dir is required\n");
        return 1;
    }
    if (member_list != NULL)
        o.n_members = parse_members(member_list, members, DFS_REPL_MEMBERS_MAX);
    o.members = members;
    char path[PATH_MAX], rdir[PATH_MAX];
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/state.db", dir);
    snprintf(rdir, sizeof rdir, "%s/repl", dir);
    o.dir = rdir;
    struct node n = {.id = o.id};
    char *err = NULL;
    if (repl_fsm_open(path, &n.fsm, &err) != 0) {
        printf("error %s\n", err);
        return 1;
    }
    struct repl_fsm_digest d;
    repl_fsm_digest(n.fsm, &d);
    o.applied_index = d.applied;
    o.ops = &repl_fsm_ops;
    o.ctx = n.fsm;
    if (dfs_repl_create(&o, &n.repl, &err) != 0) {
        printf("error %s\n", err);
        repl_fsm_close(n.fsm);
        return 1;
    }
    printf("ready pid=%d\n", (int)getpid());
    char line[512];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "status", 6) == 0) {
            node_status(&n, stdout);
        } else if (strncmp(line, "propose", 7) == 0) {
            int total = 0, conc = 0, timeout = 0;
            size_t size = 0;
            if (sscanf(line + 7, "%d %d %zu %d", &total, &conc, &size, &timeout) != 4) {
                printf("error usage: propose N C SIZE TIMEOUT_MS\n");
                continue;
            }
            node_propose(&n, total, conc, size, timeout, stdout);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("error unknown command\n");
        }
        fflush(stdout);
    }
    dfs_repl_destroy(n.repl);
    repl_fsm_close(n.fsm);
    free(member_list);
    printf("bye\n");
    return 0;
}

/* ---- the parent's side ---- */

int repl_child_start(struct repl_child *c, const char *exe, const char *const *args)
{
    int in[2], out[2];
    if (pipe(in) != 0)
        return -1;
    if (pipe(out) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    size_t n = 0;
    while (args[n] != NULL)
        n++;
    char **argv = calloc(n + 3, sizeof *argv);
    if (argv == NULL)
        return -1;
    argv[0] = (char *)exe;
    argv[1] = (char *)"--repl-node";
    for (size_t i = 0; i < n; i++)
        argv[i + 2] = (char *)args[i];
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execv(exe, argv);
        _exit(127);
    }
    free(argv);
    close(in[0]);
    close(out[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        return -1;
    }
    c->pid = pid;
    c->to = fdopen(in[1], "w");
    c->from = fdopen(out[0], "r");
    setvbuf(c->to, NULL, _IOLBF, 0);
    char line[512];
    if (fgets(line, sizeof line, c->from) == NULL || strncmp(line, "ready", 5) != 0) {
        fprintf(stderr, "replica process did not start: %s", line);
        repl_child_kill(c);
        return -1;
    }
    return 0;
}

int repl_child_cmd(struct repl_child *c, const char *line, char *reply, size_t size)
{
    if (c->pid <= 0)
        return -1;
    if (fprintf(c->to, "%s\n", line) < 0 || fflush(c->to) != 0)
        return -1;
    if (fgets(reply, (int)size, c->from) == NULL)
        return -1;
    reply[strcspn(reply, "\n")] = '\0';
    return 0;
}

static void child_close(struct repl_child *c)
{
    if (c->to != NULL)
        fclose(c->to);
    if (c->from != NULL)
        fclose(c->from);
    c->to = c->from = NULL;
    c->pid = 0;
}

void repl_child_kill(struct repl_child *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
    }
    child_close(c);
}

int repl_child_quit(struct repl_child *c)
{
    if (c->pid <= 0)
        return -1;
    fprintf(c->to, "quit\n");
    fflush(c->to);
    int status = 0;
    waitpid(c->pid, &status, 0);
    child_close(c);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool repl_kv_str(const char *line, const char *key, char *buf, size_t size)
{
    size_t kl = strlen(key);
    for (const char *p = line; (p = strstr(p, key)) != NULL; p += kl) {
        if ((p == line || p[-1] == ' ') && p[kl] == '=') {
            const char *v = p + kl + 1;
            size_t vl = strcspn(v, " ");
            if (vl >= size)
                vl = size - 1;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return true;
        }
    }
    if (size > 0)
        buf[0] = '\0';
    return false;
}

uint64_t repl_kv(const char *line, const char *key)
{
    char buf[64];
    if (!repl_kv_str(line, key, buf, sizeof buf))
        return 0;
    return strtoull(buf, NULL, 10);
}

int repl_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}
