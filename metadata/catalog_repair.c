/*
 * The catalog's repair queue: the liveness rules, the planner, claims and results, rebalance
 * candidates, and the reports from storage nodes (corrupt and missing copies, inventories).
 */
#include "metadata/catalog_int.h"

#include "common/err.h"
#include "common/id.h"
#include "common/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Repair queue ---------------------------------------------------------------------------- */

static const char *const reason_names[] = {
    [DFS_REPAIR_UNSPECIFIED] = "unspecified",
    [DFS_REPAIR_DEAD] = "dead",
    [DFS_REPAIR_CORRUPT] = "corrupt",
    [DFS_REPAIR_MISSING] = "missing",
    [DFS_REPAIR_DRAIN] = "drain",
    [DFS_REPAIR_REBALANCE] = "rebalance",
    [DFS_REPAIR_DECOMMISSION] = "decommission",
};

const char *dfs_catalog_repair_reason_name(enum dfs_repair_reason reason)
{
    if ((unsigned)reason >= sizeof reason_names / sizeof reason_names[0])
        return "unknown";
    return reason_names[reason];
}

static bool is_move(enum dfs_repair_reason r)
{
    return r == DFS_REPAIR_DRAIN || r == DFS_REPAIR_REBALANCE;
}

static void read_repair(dfs_catalog *cat, enum stmt id, struct dfs_repair_rec *r)
{
    memset(r, 0, sizeof *r);
    catalog_col_copy(cat, id, 0, r->fragment_id, sizeof r->fragment_id);
    r->reason = (enum dfs_repair_reason)NAME_INDEX(reason_names, catalog_col_text(cat, id, 1));
    r->margin = catalog_col_i64(cat, id, 2);
    catalog_col_copy(cat, id, 3, r->from_node, sizeof r->from_node);
    catalog_col_copy(cat, id, 4, r->target_node, sizeof r->target_node);
    r->running = strcmp(catalog_col_text(cat, id, 5), "running") == 0;
    r->attempts = (uint32_t)catalog_col_i64(cat, id, 6);
    r->queued_ms = catalog_col_i64(cat, id, 7);
    r->not_before_ms = catalog_col_i64(cat, id, 8);
    r->started_ms = catalog_col_i64(cat, id, 9);
}

/* The queue row of a fragment: 1 (found), 0 (none) or a DFS code. */
static int get_repair(dfs_catalog *cat, const char *fragment_id, struct dfs_repair_rec *r,
                      char **errmsg)
{
    int rc = catalog_query(cat, S_REPAIR_GET, errmsg, "t", fragment_id);
    if (rc == 1) {
        read_repair(cat, S_REPAIR_GET, r);
        catalog_release(cat->st[S_REPAIR_GET]);
    }
    return rc;
}

/* One acknowledged copy of a fragment with its node's state. */
struct copy {
    char node_id[DFS_ID_HEX + 1];
    enum dfs_node_state state;
    int64_t pos;
};

bool catalog_state_live(enum dfs_node_state s)
{
    return s == DFS_NODE_ALIVE || s == DFS_NODE_SUSPECT;
}

bool catalog_state_readable(enum dfs_node_state s)
{
    return catalog_state_live(s) || s == DFS_NODE_DRAINING;
}

bool dfs_catalog_state_live(enum dfs_node_state s)
{
    return catalog_state_live(s);
}

bool dfs_catalog_state_readable(enum dfs_node_state s)
{
    return catalog_state_readable(s);
}

/* A fragment, its copies and what the liveness rules make of them (catalog.h, Repair queue). */
struct assess {
    char file_id[DFS_ID_HEX + 1];
    uint32_t index;
    uint64_t size;
    uint32_t checksum;
    struct dfs_redundancy red;
    bool committed;
    struct copy *copies; /* by pos; malloc'd */
    size_t ncopies;
    uint32_t live, readable, alive;
    uint32_t wanted;
    int64_t margin;
    bool lost;  /* unrecoverable: never queued */
    bool under; /* fewer live copies than wanted */
};

static void assess_clear(struct assess *a)
{
    free(a->copies);
    a->copies = NULL;
    a->ncopies = 0;
}

/* Fill *a for fragment_id: 1 (found), 0 (no such fragment) or a DFS code. */
static int assess_fragment(dfs_catalog *cat, const char *fragment_id, struct assess *a,
                           char **errmsg)
{
    memset(a, 0, sizeof *a);
    int rc = catalog_query(cat, S_FRAGMENT_INFO, errmsg, "t", fragment_id);
    if (rc <= 0)
        return rc;
    catalog_col_copy(cat, S_FRAGMENT_INFO, 0, a->file_id, sizeof a->file_id);
    a->index = (uint32_t)catalog_col_i64(cat, S_FRAGMENT_INFO, 1);
    a->size = (uint64_t)catalog_col_i64(cat, S_FRAGMENT_INFO, 2);
    a->checksum = (uint32_t)catalog_col_i64(cat, S_FRAGMENT_INFO, 3);
    a->red.scheme = (enum dfs_scheme)NAME_INDEX(catalog_scheme_names,
                                                catalog_col_text(cat, S_FRAGMENT_INFO, 4));
    a->red.replicas = (uint32_t)catalog_col_i64(cat, S_FRAGMENT_INFO, 5);
    a->red.data = (uint32_t)catalog_col_i64(cat, S_FRAGMENT_INFO, 6);
    a->red.parity = (uint32_t)catalog_col_i64(cat, S_FRAGMENT_INFO, 7);
    a->committed = strcmp(catalog_col_text(cat, S_FRAGMENT_INFO, 8), "committed") == 0;
    catalog_release(cat->st[S_FRAGMENT_INFO]);

    rc = catalog_query(cat, S_FRAGMENT_COPIES, errmsg, "t", fragment_id);
    while (rc == 1) {
        struct copy *c = catalog_grow(&a->copies, &a->ncopies, sizeof *c);
        if (c == NULL) {
            catalog_release(cat->st[S_FRAGMENT_COPIES]);
            assess_clear(a);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        catalog_col_copy(cat, S_FRAGMENT_COPIES, 0, c->node_id, sizeof c->node_id);
        c->state = (enum dfs_node_state)NAME_INDEX(catalog_node_state_names,
                                                   catalog_col_text(cat, S_FRAGMENT_COPIES, 1));
        c->pos = catalog_col_i64(cat, S_FRAGMENT_COPIES, 2);
        a->live += catalog_state_live(c->state);
        a->readable += catalog_state_readable(c->state);
        a->alive += c->state == DFS_NODE_ALIVE;
        rc = catalog_next_row(cat, S_FRAGMENT_COPIES, errmsg);
    }
    if (rc < 0) {
        assess_clear(a);
        return rc;
    }
    if (a->red.scheme == DFS_SCHEME_ERASURE) {
        rc = catalog_query(cat, S_FILE_FRAG_COUNTS, errmsg, "t", a->file_id);
        if (rc < 0) {
            assess_clear(a);
            return rc;
        }
        int64_t file_live = 0, file_readable = 0;
        if (rc == 1) {
            file_live = catalog_col_i64(cat, S_FILE_FRAG_COUNTS, 0);
            file_readable = catalog_col_i64(cat, S_FILE_FRAG_COUNTS, 1);
            catalog_release(cat->st[S_FILE_FRAG_COUNTS]);
        }
        a->wanted = 1;
        a->lost = file_readable < (int64_t)a->red.data;
        a->margin = file_live - (int64_t)a->red.data;
    } else {
        a->wanted = a->red.replicas;
        a->lost = a->readable == 0;
        a->margin = (int64_t)a->live - 1;
    }
    a->under = a->live < a->wanted;
    return 1;
}

/* Why an under-replicated fragment needs work, from the states of its copies. */
static enum dfs_repair_reason reason_of(const struct assess *a, const char **from)
{
    *from = NULL;
    bool decom = false, dead = false;
    for (size_t i = 0; i < a->ncopies; i++) {
        if (a->copies[i].state == DFS_NODE_DRAINING && *from == NULL)
            *from = a->copies[i].node_id;
        decom = decom || a->copies[i].state == DFS_NODE_DECOMMISSIONED;
        dead = dead || a->copies[i].state == DFS_NODE_DEAD;
    }
    if (*from != NULL)
        return DFS_REPAIR_DRAIN;
    if (decom)
        return DFS_REPAIR_DECOMMISSION;
    return dead ? DFS_REPAIR_DEAD : DFS_REPAIR_MISSING;
}

/* Drop one copy's replica row and, when asked, queue the removal of its bytes from the node. */
static int drop_copy(dfs_catalog *cat, const char *fragment_id, const char *node_id,
                     bool delete_bytes, int64_t now_ms, char **errmsg)
{
    int rc = catalog_exec(cat, S_REPLICA_DELETE, NULL, errmsg, "tt", fragment_id, node_id);
    if (rc == DFS_OK && delete_bytes)
        rc =
            catalog_exec(cat, S_DELETION_INSERT, NULL, errmsg, "tti", fragment_id, node_id, now_ms);
    return rc;
}

/*
 * A fragment back at full redundancy on live nodes forgets its copies on dead and decommissioned
 * nodes: the layout then lists where the fragment is. A dead node's bytes are queued for removal
 * (sent if it ever returns; until then the node is not chosen for the fragment again); a
 * decommissioned node's are left alone (retired; if it is put back to service, its inventory
 * report finds them unknown). *n (may be NULL) counts the copies dropped.
 */
static int drop_gone_copies(dfs_catalog *cat, const char *fragment_id, const struct assess *a,
                            int64_t now_ms, size_t *n, char **errmsg)
{
    int rc = DFS_OK;
    if (a->live < a->wanted)
        return DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < a->ncopies; i++) {
        const struct copy *c = &a->copies[i];
        if (c->state != DFS_NODE_DEAD && c->state != DFS_NODE_DECOMMISSIONED)
            continue;
        rc = drop_copy(cat, fragment_id, c->node_id, c->state == DFS_NODE_DEAD, now_ms, errmsg);
        if (rc == DFS_OK && n != NULL)
            (*n)++;
        dfs_log(DFS_LOG_INFO, "copy on a %s node forgotten fragment=%s node=%s",
                dfs_catalog_node_state_name(c->state), fragment_id, c->node_id);
    }
    return rc;
}

/* Does node hold a replica row (any state) of the fragment? 1, 0 or a DFS code. */
static int has_replica(dfs_catalog *cat, const char *fragment_id, const char *node_id,
                       char **errmsg)
{
    int rc = catalog_query(cat, S_REPLICA_GET, errmsg, "tt", fragment_id, node_id);
    if (rc == 1)
        catalog_release(cat->st[S_REPLICA_GET]);
    return rc;
}

/* Queue the removal of a repair target's copy unless the catalog records it as a replica. */
static int queue_orphan(dfs_catalog *cat, const char *fragment_id, const char *target,
                        int64_t now_ms, char **errmsg)
{
    if (target == NULL || target[0] == '\0')
        return DFS_OK;
    int rc = has_replica(cat, fragment_id, target, errmsg);
    if (rc == 0)
        rc = catalog_exec(cat, S_DELETION_INSERT, NULL, errmsg, "tti", fragment_id, target, now_ms);
    return rc < 0 ? rc : DFS_OK;
}

static void read_repair_row(dfs_catalog *cat, enum stmt id, void *slot)
{
    read_repair(cat, id, slot);
}

int dfs_catalog_repairs_list(dfs_catalog *cat, struct dfs_repair_rec **out, size_t *n,
                             char **errmsg)
{
    return catalog_collect_rows(cat, S_REPAIRS_LIST, sizeof **out, read_repair_row, out, n, errmsg);
}

int dfs_catalog_repair_counts(dfs_catalog *cat, uint64_t *queued, uint64_t *running, char **errmsg)
{
    int64_t q = 0, r = 0;
    catalog_lock(cat);
    int rc = catalog_query(cat, S_REPAIR_COUNTS, errmsg, "");
    if (rc == 1) {
        q = catalog_col_i64(cat, S_REPAIR_COUNTS, 0);
        r = catalog_col_i64(cat, S_REPAIR_COUNTS, 1);
        catalog_release(cat->st[S_REPAIR_COUNTS]);
    }
    catalog_unlock(cat);
    if (rc < 0)
        return rc;
    *queued = (uint64_t)q;
    *running = (uint64_t)r;
    return DFS_OK;
}

int dfs_catalog_repairs_recover(dfs_catalog *cat, int64_t now_ms, size_t *n, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_repairs_recover(now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, n, NULL, NULL, errmsg);
    }
    struct run {
        char fragment_id[DFS_FRAGMENT_ID_HEX + 1];
        char target[DFS_ID_HEX + 1];
    } *v = NULL;
    size_t count = 0;
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int row = catalog_query(cat, S_REPAIRS_RUNNING, errmsg, "");
        while (row == 1) {
            struct run *r = catalog_grow(&v, &count, sizeof *r);
            if (r == NULL) {
                catalog_release(cat->st[S_REPAIRS_RUNNING]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            catalog_col_copy(cat, S_REPAIRS_RUNNING, 0, r->fragment_id, sizeof r->fragment_id);
            catalog_col_copy(cat, S_REPAIRS_RUNNING, 1, r->target, sizeof r->target);
            row = catalog_next_row(cat, S_REPAIRS_RUNNING, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        for (size_t i = 0; rc == DFS_OK && i < count; i++) {
            rc = queue_orphan(cat, v[i].fragment_id, v[i].target, now_ms, errmsg);
            if (rc == DFS_OK)
                rc = catalog_exec(cat, S_REPAIR_REQUEUE, NULL, errmsg, "t", v[i].fragment_id);
        }
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    for (size_t i = 0; rc == DFS_OK && i < count; i++)
        dfs_log(DFS_LOG_INFO, "interrupted repair queued again fragment=%s target=%s",
                v[i].fragment_id, v[i].target);
    free(v);
    if (rc == DFS_OK && n != NULL)
        *n = count;
    return rc;
}

static int insert_repair(dfs_catalog *cat, const char *fragment_id, enum dfs_repair_reason reason,
                         int64_t margin, const char *from, const char *target, int64_t now_ms,
                         int *changes, char **errmsg)
{
    return catalog_exec(cat, S_REPAIR_INSERT, changes, errmsg, "ttitti", fragment_id,
                        reason_names[reason], margin, from, target, now_ms);
}

/* The planner's decision for one fragment (see dfs_catalog_repair_plan). */
static int plan_fragment(dfs_catalog *cat, const char *fragment_id, int64_t now_ms,
                         struct dfs_plan_result *res, char **errmsg)
{
    struct assess a;
    int rc = assess_fragment(cat, fragment_id, &a, errmsg);
    if (rc <= 0)
        return rc;
    struct dfs_repair_rec row;
    int found = get_repair(cat, fragment_id, &row, errmsg);
    rc = found < 0 ? found : DFS_OK;
    if (rc != DFS_OK)
        goto done;
    if (a.lost) {
        res->lost++;
        if (found == 1 && !row.running) {
            rc = catalog_exec(cat, S_REPAIR_DELETE, NULL, errmsg, "t", fragment_id);
            res->dropped++;
        }
        goto done;
    }
    if (a.under) {
        if (found == 0) {
            const char *from = NULL;
            enum dfs_repair_reason reason = reason_of(&a, &from);
            int changes = 0;
            rc = insert_repair(cat, fragment_id, reason, a.margin, from, NULL, now_ms, &changes,
                               errmsg);
            res->queued += (size_t)changes;
        } else if (row.margin != a.margin) {
            rc = catalog_exec(cat, S_REPAIR_SET_MARGIN, NULL, errmsg, "ti", fragment_id, a.margin);
            res->updated++;
        }
        goto done;
    }
    if (found == 1) {
        if (row.running || row.reason == DFS_REPAIR_REBALANCE)
            goto done; /* never trim while a copy is being made */
        rc = catalog_exec(cat, S_REPAIR_DELETE, NULL, errmsg, "t", fragment_id);
        res->dropped++;
    }
    /* Full redundancy on live nodes: draining copies are no longer needed, and copies beyond the
       wanted number on alive nodes (a node came back after its copies were repaired) go, oldest
       first: the newer ones were placed where the current copysets and groups want them. */
    uint32_t alive = a.alive;
    for (size_t i = 0; rc == DFS_OK && i < a.ncopies; i++) {
        const struct copy *c = &a.copies[i];
        bool drop =
            c->state == DFS_NODE_DRAINING || (c->state == DFS_NODE_ALIVE && alive > a.wanted);
        if (!drop)
            continue;
        if (c->state == DFS_NODE_ALIVE)
            alive--;
        rc = drop_copy(cat, fragment_id, c->node_id, true, now_ms, errmsg);
        res->trimmed++;
        dfs_log(DFS_LOG_INFO, "surplus copy dropped fragment=%s node=%s node_state=%s", fragment_id,
                c->node_id, dfs_catalog_node_state_name(c->state));
    }
    if (rc == DFS_OK)
        rc = drop_gone_copies(cat, fragment_id, &a, now_ms, &res->trimmed, errmsg);
done:
    assess_clear(&a);
    return rc;
}

int dfs_catalog_repair_plan(dfs_catalog *cat, const char *after, size_t limit, int64_t now_ms,
                            struct dfs_plan_result *out, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_repair_plan(after, limit, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, out, NULL, NULL, errmsg);
    }
    if (after == NULL)
        after = "";
    if (limit == 0 || limit > 100000)
        limit = 100000;
    struct dfs_plan_result res;
    memset(&res, 0, sizeof res);
    snprintf(res.last, sizeof res.last, "%s", after);
    char(*ids)[DFS_FRAGMENT_ID_HEX + 1] = NULL;
    size_t n = 0;
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        /* Collect the page first: the decisions write to the tables the page reads. */
        int row = catalog_query(cat, S_PLAN_PAGE, errmsg, "ti", after, (int64_t)limit);
        while (row == 1) {
            char(*slot)[DFS_FRAGMENT_ID_HEX + 1] = catalog_grow(&ids, &n, sizeof ids[0]);
            if (slot == NULL) {
                catalog_release(cat->st[S_PLAN_PAGE]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            catalog_col_copy(cat, S_PLAN_PAGE, 0, *slot, sizeof *slot);
            row = catalog_next_row(cat, S_PLAN_PAGE, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        for (size_t i = 0; rc == DFS_OK && i < n; i++) {
            rc = plan_fragment(cat, ids[i], now_ms, &res, errmsg);
            res.scanned++;
        }
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    if (rc == DFS_OK) {
        if (n > 0)
            memcpy(res.last, ids[n - 1], sizeof res.last);
        res.done = n < limit;
        *out = res;
    }
    free(ids);
    return rc;
}

static int queue_locked(dfs_catalog *cat, const char *fragment_id, enum dfs_repair_reason reason,
                        const char *from, const char *target, int64_t now_ms, bool *queued,
                        char **errmsg)
{
    struct assess a;
    int rc = assess_fragment(cat, fragment_id, &a, errmsg);
    if (rc < 0)
        return rc;
    if (rc == 0 || !a.committed)
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "no fragment %s of a committed file", fragment_id);
    else if (a.lost)
        rc = dfs_seterr(errmsg, DFS_EPRECOND, "fragment %s is lost: nothing to repair it from",
                        fragment_id);
    else
        rc = DFS_OK;
    if (rc == DFS_OK && from != NULL) {
        int held = has_replica(cat, fragment_id, from, errmsg);
        rc = held < 0    ? held
             : held == 0 ? dfs_seterr(errmsg, DFS_EINVAL, "node %s holds no copy of fragment %s",
                                      from, fragment_id)
                         : DFS_OK;
    }
    int changes = 0;
    if (rc == DFS_OK)
        rc = insert_repair(cat, fragment_id, reason, a.margin, from, target, now_ms, &changes,
                           errmsg);
    if (rc == DFS_OK)
        *queued = changes > 0;
    assess_clear(&a);
    return rc;
}

int dfs_catalog_repair_queue(dfs_catalog *cat, const char *fragment_id,
                             enum dfs_repair_reason reason, const char *from_node,
                             const char *target, int64_t now_ms, bool *queued, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_repair_queue(fragment_id, reason, from_node, target, now_ms, &cmd_,
                                           &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, queued, NULL, NULL, errmsg);
    }
    if (!dfs_fragment_id_valid(fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s'",
                          fragment_id == NULL ? "" : fragment_id);
    if (reason < DFS_REPAIR_DEAD || reason > DFS_REPAIR_DECOMMISSION)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad repair reason %d", (int)reason);
    if (is_move(reason) != (from_node != NULL))
        return dfs_seterr(errmsg, DFS_EINVAL, "a %s repair %s a from node", reason_names[reason],
                          is_move(reason) ? "needs" : "takes no");
    int rc = from_node != NULL ? catalog_check_id(from_node, "node", errmsg) : DFS_OK;
    if (rc == DFS_OK && target != NULL)
        rc = catalog_check_id(target, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    bool q = false;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(
            cat, queue_locked(cat, fragment_id, reason, from_node, target, now_ms, &q, errmsg),
            errmsg);
    catalog_unlock(cat);
    if (rc == DFS_OK)
        *queued = q;
    return rc;
}

void dfs_catalog_repair_task_clear(struct dfs_repair_task *t)
{
    if (t == NULL)
        return;
    dfs_catalog_file_rec_free(t->file);
    free(t->held);
    memset(t, 0, sizeof *t);
}

/* Is the row still worth running? Fills *why for the log when not. */
static bool repair_needed(const struct dfs_repair_rec *row, const struct assess *a,
                          const char **why)
{
    if (a->lost) {
        *why = "lost";
        return false;
    }
    if (!is_move(row->reason)) {
        *why = "back at full redundancy";
        return a->under;
    }
    const struct copy *from = NULL;
    for (size_t i = 0; i < a->ncopies; i++)
        if (strcmp(a->copies[i].node_id, row->from_node) == 0)
            from = &a->copies[i];
    *why = "the copy to move is gone";
    if (from == NULL)
        return false;
    *why = "the node is not draining any more";
    if (row->reason == DFS_REPAIR_DRAIN)
        return from->state == DFS_NODE_DRAINING;
    *why = "the rebalance source is not alive or has no target";
    return from->state == DFS_NODE_ALIVE && row->target_node[0] != '\0';
}

static int next_locked(dfs_catalog *cat, int64_t now_ms, struct dfs_repair_task *t, bool *found,
                       char **errmsg)
{
    enum { BATCH = 32 };
    char ids[BATCH][DFS_FRAGMENT_ID_HEX + 1];
    size_t n = 0;
    int row = catalog_query(cat, S_REPAIRS_DUE, errmsg, "ii", now_ms, (int64_t)BATCH);
    while (row == 1) {
        catalog_col_copy(cat, S_REPAIRS_DUE, 0, ids[n], sizeof ids[n]);
        n++;
        row = n < BATCH ? catalog_next_row(cat, S_REPAIRS_DUE, errmsg) : 0;
    }
    if (n == BATCH)
        catalog_release(cat->st[S_REPAIRS_DUE]);
    if (row < 0)
        return row;
    int rc = DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < n && !*found; i++) {
        struct dfs_repair_rec r;
        struct assess a;
        int got = get_repair(cat, ids[i], &r, errmsg);
        if (got <= 0) {
            rc = got;
            continue;
        }
        got = assess_fragment(cat, ids[i], &a, errmsg);
        if (got < 0) {
            rc = got;
            continue;
        }
        const char *why = "fragment gone";
        if (got == 0 || !repair_needed(&r, &a, &why)) {
            rc = catalog_exec(cat, S_REPAIR_DELETE, NULL, errmsg, "t", ids[i]);
            dfs_log(DFS_LOG_INFO, "repair dropped fragment=%s reason=%s why=\"%s\"", ids[i],
                    reason_names[r.reason], why);
            assess_clear(&a);
            continue;
        }
        memset(t, 0, sizeof *t);
        t->row = r;
        t->index = a.index;
        rc = catalog_find_file(cat, S_FILE_GET_ID, a.file_id, true, &t->file, errmsg);
        if (rc == DFS_OK && (t->file == NULL || t->index >= t->file->nfragments))
            rc = dfs_seterr(errmsg, DFS_EINTERNAL, "catalog: file %s of fragment %s vanished",
                            a.file_id, ids[i]);
        int d =
            rc == DFS_OK ? catalog_query(cat, S_DELETIONS_OF_FRAGMENT, errmsg, "t", ids[i]) : rc;
        while (d == 1) {
            char(*slot)[DFS_ID_HEX + 1] = catalog_grow(&t->held, &t->nheld, sizeof t->held[0]);
            if (slot == NULL) {
                catalog_release(cat->st[S_DELETIONS_OF_FRAGMENT]);
                d = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            catalog_col_copy(cat, S_DELETIONS_OF_FRAGMENT, 0, *slot, sizeof *slot);
            d = catalog_next_row(cat, S_DELETIONS_OF_FRAGMENT, errmsg);
        }
        rc = d < 0 ? d : rc;
        if (rc == DFS_OK)
            *found = true;
        else
            dfs_catalog_repair_task_clear(t);
        assess_clear(&a);
    }
    return rc;
}

int dfs_catalog_repair_next(dfs_catalog *cat, int64_t now_ms, struct dfs_repair_task *out,
                            bool *found, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_repair_next(now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, out, found, NULL, errmsg);
    }
    struct dfs_repair_task t;
    memset(&t, 0, sizeof t);
    bool f = false;
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, next_locked(cat, now_ms, &t, &f, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc != DFS_OK) {
        dfs_catalog_repair_task_clear(&t);
        return rc;
    }
    *found = f;
    if (f)
        *out = t;
    return DFS_OK;
}

static int start_locked(dfs_catalog *cat, const char *fragment_id, const char *target,
                        int64_t now_ms, char **errmsg)
{
    int rc = catalog_check_target(cat, target, errmsg);
    if (rc != DFS_OK)
        return rc;
    rc = has_replica(cat, fragment_id, target, errmsg);
    if (rc != 0)
        return rc < 0 ? rc
                      : dfs_seterr(errmsg, DFS_EABORTED, "node %s already holds fragment %s",
                                   target, fragment_id);
    int changes = 0;
    rc = catalog_exec(cat, S_REPAIR_START, &changes, errmsg, "tti", fragment_id, target, now_ms);
    if (rc == DFS_OK && changes == 0)
        rc = dfs_seterr(errmsg, DFS_EABORTED, "the repair of fragment %s is no longer queued",
                        fragment_id);
    return rc;
}

int dfs_catalog_repair_start(dfs_catalog *cat, const char *fragment_id, const char *target,
                             int64_t now_ms, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_repair_start(fragment_id, target, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    if (!dfs_fragment_id_valid(fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s'",
                          fragment_id == NULL ? "" : fragment_id);
    int rc = catalog_check_id(target, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, start_locked(cat, fragment_id, target, now_ms, errmsg), errmsg);
    catalog_unlock(cat);
    return rc;
}

/*
 * *keep is set when the call is refused but what it wrote (the orphan copy's deletion) must be
 * committed all the same.
 */
static int complete_locked(dfs_catalog *cat, const char *fragment_id, const char *target,
                           uint64_t size, uint32_t checksum, int64_t now_ms, char *from_out,
                           bool *keep, char **errmsg)
{
    struct dfs_repair_rec row;
    int found = get_repair(cat, fragment_id, &row, errmsg);
    if (found < 0)
        return found;
    struct assess a;
    int have = assess_fragment(cat, fragment_id, &a, errmsg);
    if (have < 0)
        return have;
    int rc = DFS_OK;
    if (have == 0) {
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND,
                        "fragment %s was removed while it was being repaired", fragment_id);
    } else if (found == 0 || !row.running || strcmp(row.target_node, target) != 0) {
        rc = dfs_seterr(errmsg, DFS_EABORTED, "the repair of fragment %s is not running on %s",
                        fragment_id, target);
    } else if (size != a.size || checksum != a.checksum) {
        rc = dfs_seterr(errmsg, DFS_EDATALOSS,
                        "node %s made fragment %s with %" PRIu64 " bytes and checksum %08" PRIx32
                        ", the catalog says %" PRIu64 " and %08" PRIx32,
                        target, fragment_id, size, checksum, a.size, a.checksum);
        assess_clear(&a);
        return rc; /* the row stays running: the caller fails it */
    }
    assess_clear(&a);
    if (rc != DFS_OK) {
        /* Nobody will record this copy: have it removed. */
        int q = queue_orphan(cat, fragment_id, target, now_ms, NULL);
        if (q != DFS_OK)
            return dfs_seterr(errmsg, q, "catalog: cannot queue the removal of %s on %s",
                              fragment_id, target);
        *keep = true;
        return rc;
    }
    int held = has_replica(cat, fragment_id, target, errmsg);
    if (held < 0)
        return held;
    if (held == 0) {
        int64_t pos = 0;
        rc = catalog_query(cat, S_REPLICA_NEXT_POS, errmsg, "t", fragment_id);
        if (rc == 1) {
            pos = catalog_col_i64(cat, S_REPLICA_NEXT_POS, 0);
            catalog_release(cat->st[S_REPLICA_NEXT_POS]);
        }
        if (rc < 0)
            return rc;
        rc = catalog_exec(cat, S_REPLICA_ADD, NULL, errmsg, "tti", fragment_id, target, pos);
    }
    if (rc == DFS_OK && row.from_node[0] != '\0') {
        int from_held = has_replica(cat, fragment_id, row.from_node, errmsg);
        rc = from_held < 0    ? from_held
             : from_held == 1 ? drop_copy(cat, fragment_id, row.from_node, true, now_ms, errmsg)
                              : DFS_OK;
        memcpy(from_out, row.from_node, DFS_ID_HEX + 1);
    }
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_REPAIR_DELETE, NULL, errmsg, "t", fragment_id);
    if (rc == DFS_OK) {
        int got = assess_fragment(cat, fragment_id, &a, errmsg);
        if (got == 1) {
            rc = drop_gone_copies(cat, fragment_id, &a, now_ms, NULL, errmsg);
            assess_clear(&a);
        } else if (got < 0) {
            rc = got;
        }
    }
    return rc;
}

int dfs_catalog_repair_complete(dfs_catalog *cat, const char *fragment_id, const char *target,
                                uint64_t size, uint32_t checksum, int64_t now_ms, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_repair_complete(fragment_id, target, size, checksum, now_ms, &cmd_,
                                              &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    if (!dfs_fragment_id_valid(fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s'",
                          fragment_id == NULL ? "" : fragment_id);
    int rc = catalog_check_id(target, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    bool keep = false;
    char from[DFS_ID_HEX + 1] = "";
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        rc = complete_locked(cat, fragment_id, target, size, checksum, now_ms, from, &keep, errmsg);
        if (rc != DFS_OK && keep) {
            /* Refused, but the orphan's deletion must be committed. */
            int refused = rc;
            rc = catalog_tx_end(cat, DFS_OK, NULL);
            if (rc == DFS_OK)
                rc = refused;
        } else {
            rc = catalog_tx_end(cat, rc, errmsg);
        }
    }
    catalog_unlock(cat);
    if (rc != DFS_OK)
        return rc;
    dfs_log(DFS_LOG_INFO, "repair done fragment=%s target=%s dropped=%s", fragment_id, target,
            from[0] != '\0' ? from : "none");
    return DFS_OK;
}

int dfs_catalog_repair_fail(dfs_catalog *cat, const char *fragment_id, const char *target,
                            int64_t retry_at_ms, uint32_t *attempts, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ =
            dfs_command_repair_fail(fragment_id, target, retry_at_ms, 0, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, attempts, NULL, NULL, errmsg);
    }
    if (!dfs_fragment_id_valid(fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s'",
                          fragment_id == NULL ? "" : fragment_id);
    int rc = target != NULL ? catalog_check_id(target, "node", errmsg) : DFS_OK;
    if (rc != DFS_OK)
        return rc;
    struct dfs_repair_rec row;
    int found = 0;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        found = get_repair(cat, fragment_id, &row, errmsg);
        rc = found < 0 ? found : DFS_OK;
        /* The target may hold a partial or complete copy nobody records (a lost answer). */
        if (rc == DFS_OK && target != NULL)
            rc = queue_orphan(cat, fragment_id, target, retry_at_ms, errmsg);
        if (rc == DFS_OK && found == 1)
            rc = catalog_exec(cat, S_REPAIR_FAIL, NULL, errmsg, "ti", fragment_id, retry_at_ms);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    if (rc == DFS_OK && attempts != NULL)
        *attempts = found == 1 ? row.attempts + 1 : 0;
    return rc;
}

int dfs_catalog_rebalance_candidates(dfs_catalog *cat, const char *node_id, const char *after,
                                     size_t limit, char (**out)[DFS_FRAGMENT_ID_HEX + 1],
                                     uint64_t **sizes, size_t *n, char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    if (limit > INT32_MAX)
        limit = INT32_MAX;
    char(*ids)[DFS_FRAGMENT_ID_HEX + 1] = NULL;
    uint64_t *sz = NULL;
    size_t count = 0, nsz = 0;
    catalog_lock(cat);
    rc = catalog_query(cat, S_REBALANCE_CANDIDATES, errmsg, "tti", node_id,
                       after == NULL ? "" : after, (int64_t)limit);
    while (rc == 1) {
        char(*slot)[DFS_FRAGMENT_ID_HEX + 1] = catalog_grow(&ids, &count, sizeof ids[0]);
        uint64_t *s = slot != NULL ? catalog_grow(&sz, &nsz, sizeof *sz) : NULL;
        if (s == NULL) {
            catalog_release(cat->st[S_REBALANCE_CANDIDATES]);
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            break;
        }
        catalog_col_copy(cat, S_REBALANCE_CANDIDATES, 0, *slot, sizeof *slot);
        *s = (uint64_t)catalog_col_i64(cat, S_REBALANCE_CANDIDATES, 1);
        rc = catalog_next_row(cat, S_REBALANCE_CANDIDATES, errmsg);
    }
    catalog_unlock(cat);
    if (rc < 0 || count != nsz) {
        free(ids);
        free(sz);
        return rc < 0 ? rc : dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    *out = ids;
    *sizes = sz;
    *n = count;
    return DFS_OK;
}

/* ---- Reports from storage nodes -------------------------------------------------------------- */

/* The node must be registered: DFS_OK, DFS_ENOTFOUND or a DFS code. */
static int need_node(dfs_catalog *cat, const char *node_id, char **errmsg)
{
    struct dfs_node_rec n;
    int got = catalog_get_node(cat, node_id, &n, errmsg);
    if (got < 0)
        return got;
    return got == 0 ? dfs_seterr(errmsg, DFS_ENOTFOUND, "no storage node %s", node_id) : DFS_OK;
}

/* A recorded copy is lost (corrupt or missing): see dfs_catalog_report_corrupt. */
static int copy_lost_locked(dfs_catalog *cat, const char *node_id, const char *fragment_id,
                            enum dfs_repair_reason reason, int64_t now_ms, bool *marked,
                            char **errmsg)
{
    *marked = false;
    int rc = need_node(cat, node_id, errmsg);
    if (rc != DFS_OK)
        return rc;
    rc = catalog_query(cat, S_REPLICA_GET, errmsg, "tt", fragment_id, node_id);
    if (rc <= 0)
        return rc;
    bool acked = catalog_col_i64(cat, S_REPLICA_GET, 1) != 0;
    catalog_release(cat->st[S_REPLICA_GET]);
    if (!acked)
        return DFS_OK; /* a put in progress: its client learns of the failure by itself */
    rc = catalog_exec(cat, S_REPLICA_DELETE, NULL, errmsg, "tt", fragment_id, node_id);
    struct assess a;
    int got = rc == DFS_OK ? assess_fragment(cat, fragment_id, &a, errmsg) : rc;
    if (got < 0)
        return got;
    *marked = true;
    if (got == 0 || a.lost || !a.committed) {
        if (got == 1)
            assess_clear(&a);
        /* The last readable copy: keep its bytes for salvage, queue nothing. */
        dfs_log(DFS_LOG_ERROR, "last readable copy lost fragment=%s node=%s reason=%s", fragment_id,
                node_id, reason_names[reason]);
        return DFS_OK;
    }
    if (reason == DFS_REPAIR_CORRUPT)
        rc =
            catalog_exec(cat, S_DELETION_INSERT, NULL, errmsg, "tti", fragment_id, node_id, now_ms);
    if (rc == DFS_OK)
        rc = insert_repair(cat, fragment_id, reason, a.margin, NULL, NULL, now_ms, NULL, errmsg);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_REPAIR_SET_MARGIN, NULL, errmsg, "ti", fragment_id, a.margin);
    assess_clear(&a);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_WARN, "copy lost, repair queued fragment=%s node=%s reason=%s", fragment_id,
                node_id, reason_names[reason]);
    return rc;
}

static int copy_lost(dfs_catalog *cat, const char *node_id, const char *fragment_id,
                     enum dfs_repair_reason reason, int64_t now_ms, bool *marked, char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc == DFS_OK && !dfs_fragment_id_valid(fragment_id))
        rc = dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s'",
                        fragment_id == NULL ? "" : fragment_id);
    if (rc != DFS_OK)
        return rc;
    bool m = false;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(
            cat, copy_lost_locked(cat, node_id, fragment_id, reason, now_ms, &m, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc == DFS_OK)
        *marked = m;
    return rc;
}

int dfs_catalog_report_corrupt(dfs_catalog *cat, const char *node_id, const char *fragment_id,
                               int64_t now_ms, bool *marked, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ =
            dfs_command_report_fragment(node_id, fragment_id, false, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, marked, NULL, NULL, errmsg);
    }
    return copy_lost(cat, node_id, fragment_id, DFS_REPAIR_CORRUPT, now_ms, marked, errmsg);
}

int dfs_catalog_report_missing(dfs_catalog *cat, const char *node_id, const char *fragment_id,
                               int64_t now_ms, bool *marked, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ =
            dfs_command_report_fragment(node_id, fragment_id, true, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, marked, NULL, NULL, errmsg);
    }
    return copy_lost(cat, node_id, fragment_id, DFS_REPAIR_MISSING, now_ms, marked, errmsg);
}

static int inventory_page_locked(dfs_catalog *cat, const char *node_id, uint32_t page,
                                 const char *const *ids, size_t n, int64_t now_ms, char **errmsg)
{
    int rc = need_node(cat, node_id, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (page == 0) {
        rc = catalog_exec(cat, S_INV_DROP, NULL, errmsg, "t", node_id);
        if (rc == DFS_OK)
            rc = catalog_exec(cat, S_INV_START, NULL, errmsg, "ti", node_id, now_ms);
    } else {
        int got = catalog_query(cat, S_INV_STATE_GET, errmsg, "t", node_id);
        if (got < 0)
            return got;
        int64_t next = 0;
        if (got == 1) {
            next = catalog_col_i64(cat, S_INV_STATE_GET, 0);
            catalog_release(cat->st[S_INV_STATE_GET]);
        }
        if (got == 0 || (int64_t)page > next)
            return dfs_seterr(errmsg, DFS_EPRECOND,
                              "inventory page %" PRIu32
                              " of node %s out of order (expected %s%" PRId64
                              "): send the report again from page 0",
                              page, node_id, got == 0 ? "page " : "", got == 0 ? 0 : next);
    }
    for (size_t i = 0; rc == DFS_OK && i < n; i++)
        rc = catalog_exec(cat, S_INV_INSERT, NULL, errmsg, "tt", node_id, ids[i]);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_INV_SET_NEXT, NULL, errmsg, "ti", node_id, (int64_t)page + 1);
    return rc;
}

int dfs_catalog_inventory_page(dfs_catalog *cat, const char *node_id, uint32_t page,
                               const char *const *ids, size_t n, int64_t now_ms, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_inventory_page(node_id, page, ids, n, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    int rc = catalog_check_id(node_id, "node", errmsg);
    for (size_t i = 0; rc == DFS_OK && i < n; i++)
        if (!dfs_fragment_id_valid(ids[i]))
            rc = dfs_seterr(errmsg, DFS_EINVAL, "bad fragment id '%s' in the inventory",
                            ids[i] == NULL ? "" : ids[i]);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, inventory_page_locked(cat, node_id, page, ids, n, now_ms, errmsg),
                            errmsg);
    catalog_unlock(cat);
    return rc;
}

/* Run a one-column fragment-id statement bound to node_id into a malloc'd array. */
static int id_list(dfs_catalog *cat, enum stmt id, const char *node_id,
                   char (**out)[DFS_FRAGMENT_ID_HEX + 1], size_t *n, char **errmsg)
{
    char(*v)[DFS_FRAGMENT_ID_HEX + 1] = NULL;
    size_t count = 0;
    int rc = catalog_query(cat, id, errmsg, "t", node_id);
    while (rc == 1) {
        char(*slot)[DFS_FRAGMENT_ID_HEX + 1] = catalog_grow(&v, &count, sizeof v[0]);
        if (slot == NULL) {
            catalog_release(cat->st[id]);
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            break;
        }
        catalog_col_copy(cat, id, 0, *slot, sizeof *slot);
        rc = catalog_next_row(cat, id, errmsg);
    }
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = count;
    return DFS_OK;
}

int dfs_catalog_inventory_missing(dfs_catalog *cat, const char *node_id,
                                  char (**out)[DFS_FRAGMENT_ID_HEX + 1], size_t *n, char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, false, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, id_list(cat, S_INV_MISSING, node_id, out, n, errmsg), errmsg);
    catalog_unlock(cat);
    return rc;
}

static int inventory_finish_locked(dfs_catalog *cat, const char *node_id, int64_t now_ms,
                                   size_t *unknown, char **errmsg)
{
    char(*ids)[DFS_FRAGMENT_ID_HEX + 1] = NULL;
    size_t n = 0, count = 0, kept = 0;
    /* A restored catalog does not know the files committed after its backup: keep their bytes. */
    int restored = catalog_query(cat, S_RESTORED_GET, errmsg, "");
    if (restored == 1)
        catalog_release(cat->st[S_RESTORED_GET]);
    int rc = restored < 0 ? restored : id_list(cat, S_INV_UNKNOWN, node_id, &ids, &n, errmsg);
    for (size_t i = 0; rc == DFS_OK && i < n; i++) {
        struct assess a;
        int got = assess_fragment(cat, ids[i], &a, errmsg);
        if (got < 0) {
            rc = got;
            break;
        }
        if (got == 0 && restored == 1) {
            rc = catalog_exec(cat, S_ORPHAN_INSERT, NULL, errmsg, "tti", ids[i], node_id, now_ms);
            kept++;
            continue;
        }
        bool salvage = got == 1 && a.committed && a.lost;
        if (got == 1)
            assess_clear(&a);
        if (salvage)
            continue; /* the catalog has no readable copy of it: keep these bytes */
        rc = catalog_exec(cat, S_DELETION_INSERT, NULL, errmsg, "tti", ids[i], node_id, now_ms);
        count++;
    }
    free(ids);
    if (rc == DFS_OK)
        rc = catalog_exec(cat, S_INV_DROP, NULL, errmsg, "t", node_id);
    if (rc == DFS_OK)
        *unknown = count;
    if (rc == DFS_OK && kept > 0)
        dfs_log(DFS_LOG_WARN,
                "inventory: fragments no file of this restored catalog knows kept as orphans "
                "node=%s count=%zu",
                node_id, kept);
    return rc;
}

int dfs_catalog_inventory_finish(dfs_catalog *cat, const char *node_id, int64_t now_ms,
                                 size_t *unknown, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_inventory_finish(node_id, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, unknown, NULL, NULL, errmsg);
    }
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    size_t u = 0;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK)
        rc = catalog_tx_end(cat, inventory_finish_locked(cat, node_id, now_ms, &u, errmsg), errmsg);
    catalog_unlock(cat);
    if (rc == DFS_OK) {
        *unknown = u;
        if (u > 0)
            dfs_log(DFS_LOG_INFO,
                    "inventory: unknown fragments queued for removal node=%s count=%zu", node_id,
                    u);
    }
    return rc;
}
