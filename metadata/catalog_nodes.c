/* The catalog's storage nodes: registration, enrollment, heartbeats, states, sweeps, drains. */
#include "metadata/catalog_int.h"

#include "common/err.h"
#include "common/id.h"
#include "common/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Nodes ----------------------------------------------------------------------------------- */

static void soft_overlay(dfs_catalog *cat, struct dfs_node_rec *n, size_t count);

const char *dfs_catalog_node_state_name(enum dfs_node_state state)
{
    if ((unsigned)state >= sizeof catalog_node_state_names / sizeof catalog_node_state_names[0])
        return "unknown";
    return catalog_node_state_names[state];
}

static int64_t sub_sat(int64_t a, int64_t b)
{
    if (b > 0 && a < INT64_MIN + b)
        return INT64_MIN;
    return a - b;
}

static int check_usage(const struct dfs_node_usage *u, char **errmsg)
{
    if (u == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "no usage figures");
    int rc = catalog_check_u64(u->capacity_bytes, "capacity_bytes", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_u64(u->used_bytes, "used_bytes", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_u64(u->free_bytes, "free_bytes", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_u64(u->fragment_count, "fragment_count", errmsg);
    return rc;
}

void catalog_read_node(dfs_catalog *cat, enum stmt id, struct dfs_node_rec *n)
{
    memset(n, 0, sizeof *n);
    catalog_col_copy(cat, id, 0, n->id, sizeof n->id);
    catalog_col_copy(cat, id, 1, n->address, sizeof n->address);
    catalog_col_copy(cat, id, 2, n->zone, sizeof n->zone);
    n->state =
        (enum dfs_node_state)NAME_INDEX(catalog_node_state_names, catalog_col_text(cat, id, 3));
    n->usage.capacity_bytes = (uint64_t)catalog_col_i64(cat, id, 4);
    n->usage.used_bytes = (uint64_t)catalog_col_i64(cat, id, 5);
    n->usage.free_bytes = (uint64_t)catalog_col_i64(cat, id, 6);
    n->usage.fragment_count = (uint64_t)catalog_col_i64(cat, id, 7);
    n->last_heartbeat_ms = catalog_col_i64(cat, id, 8);
    n->registered_ms = catalog_col_i64(cat, id, 9);
    n->registration = (uint64_t)catalog_col_i64(cat, id, 10);
}

int catalog_get_node(dfs_catalog *cat, const char *id, struct dfs_node_rec *n, char **errmsg)
{
    int rc = catalog_query(cat, S_NODE_GET, errmsg, "t", id);
    if (rc == 1) {
        catalog_read_node(cat, S_NODE_GET, n);
        catalog_release(cat->st[S_NODE_GET]);
    }
    return rc;
}

static int check_registration(const char *node_id, const char *address, const char *zone,
                              const struct dfs_node_usage *usage, char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_text(address, 1, DFS_NODE_ADDRESS_MAX, "node address", errmsg);
    if (rc == DFS_OK)
        rc = catalog_check_text(zone, 0, DFS_NODE_ZONE_MAX, "zone", errmsg);
    if (rc == DFS_OK)
        rc = check_usage(usage, errmsg);
    return rc;
}

/* The upsert of a registration (in a write transaction). */
static int upsert_node(dfs_catalog *cat, const char *node_id, const char *address, const char *zone,
                       const struct dfs_node_usage *usage, int64_t now_ms, uint64_t registration,
                       char **errmsg)
{
    return catalog_exec(cat, S_NODE_UPSERT, NULL, errmsg, "tttiiiiii", node_id, address, zone,
                        (int64_t)usage->capacity_bytes, (int64_t)usage->used_bytes,
                        (int64_t)usage->free_bytes, (int64_t)usage->fragment_count, now_ms,
                        (int64_t)registration);
}

static int register_durable(dfs_catalog *cat, const char *node_id, const char *address,
                            const char *zone, const struct dfs_node_usage *usage, int64_t now_ms,
                            uint64_t expect, uint64_t registration, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_node_register(node_id, address, zone, usage, now_ms, expect,
                                            registration, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    if (zone == NULL)
        zone = "";
    int rc = check_registration(node_id, address, zone, usage, errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    struct dfs_node_rec old = {0};
    int found = 0;
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        found = catalog_get_node(cat, node_id, &old, errmsg);
        rc = found < 0 ? found : DFS_OK;
        if (rc == DFS_OK && registration == DFS_CATALOG_KEEP)
            registration = old.registration;
        if (rc == DFS_OK && expect != DFS_CATALOG_KEEP && old.registration != expect)
            rc = dfs_seterr(errmsg, DFS_EABORTED,
                            "node %s: another registration came in meanwhile (from %s)", node_id,
                            old.address);
        if (rc == DFS_OK)
            rc = upsert_node(cat, node_id, address, zone, usage, now_ms, registration, errmsg);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO,
                "node %s id=%s address=%s zone=%s previous_state=%s previous_address=%s",
                found == 1 ? "registered again" : "registered", node_id, address, zone,
                found == 1 ? dfs_catalog_node_state_name(old.state) : "none",
                found == 1 ? old.address : "-");
    return rc;
}

static int enroll_durable(dfs_catalog *cat, const char *node_id, const char *token_id,
                          const uint8_t token_hash[32], const char *address, const char *zone,
                          const struct dfs_node_usage *usage, int64_t now_ms, uint64_t registration,
                          char **errmsg)
{
    if (catalog_must_propose(cat) && token_hash != NULL) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_node_enroll(node_id, token_id, token_hash, address, zone, usage,
                                          now_ms, registration, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    if (zone == NULL)
        zone = "";
    int rc = check_registration(node_id, address, zone, usage, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (!catalog_token_id_ok(token_id, 16))
        return dfs_seterr(errmsg, DFS_EINVAL, "bad token id");
    char name[DFS_TOKEN_NAME_MAX + 1];
    snprintf(name, sizeof name, "node %.12s", node_id); /* as `dfs nodes` shows it */
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        struct dfs_node_rec old;
        int found = catalog_get_node(cat, node_id, &old, errmsg);
        if (found == 1)
            rc = dfs_seterr(errmsg, DFS_EEXIST, "node %s is already enrolled", node_id);
        else
            rc = found;
        if (rc == DFS_OK) {
            found = catalog_query(cat, S_TOKEN_GET, errmsg, "t", token_id);
            if (found == 1) {
                catalog_release(cat->st[S_TOKEN_GET]);
                rc = dfs_seterr(errmsg, DFS_EEXIST, "token id %s exists", token_id);
            } else {
                rc = found;
            }
        }
        if (rc == DFS_OK)
            rc = catalog_exec(cat, S_TOKEN_INSERT, NULL, errmsg, "tttbiit", token_id, name, "node",
                              (const void *)token_hash, (size_t)32, now_ms, (int64_t)0, node_id);
        if (rc == DFS_OK)
            rc = upsert_node(cat, node_id, address, zone, usage, now_ms, registration, errmsg);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO, "node enrolled id=%s address=%s zone=%s token=%s", node_id, address,
                zone, token_id);
    return rc;
}

int dfs_catalog_node_token(dfs_catalog *cat, const char *node_id, char token_id[17], char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    rc = catalog_query(cat, S_TOKEN_OF_NODE, errmsg, "t", node_id);
    if (rc == 1) {
        catalog_col_copy(cat, S_TOKEN_OF_NODE, 0, token_id, 17);
        catalog_release(cat->st[S_TOKEN_OF_NODE]);
        rc = DFS_OK;
    } else if (rc == 0) {
        rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "node %s has no token", node_id);
    }
    catalog_unlock(cat);
    return rc;
}

static int heartbeat_durable(dfs_catalog *cat, const char *node_id, uint64_t registration,
                             const struct dfs_node_usage *usage, int64_t now_ms, bool *known,
                             char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ =
            dfs_command_node_heartbeat(node_id, registration, usage, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, known, NULL, NULL, errmsg);
    }
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc == DFS_OK)
        rc = check_usage(usage, errmsg);
    if (rc != DFS_OK)
        return rc;
    catalog_lock(cat);
    struct dfs_node_rec old = {0};
    int found = 0;
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        found = catalog_get_node(cat, node_id, &old, errmsg);
        rc = found < 0 ? found : DFS_OK;
        /* A node with no registration here (a restored catalog forgets them, or one migrated
           to version 5) heartbeating with one: unknown, so it registers again -- and sends its
           inventory, which a restored catalog needs to keep what it lacks as orphans. */
        if (found == 1 && old.registration == 0 && registration != 0 &&
            registration != DFS_CATALOG_KEEP)
            found = 0;
        else if (found == 1 && registration != DFS_CATALOG_KEEP && old.registration != registration)
            rc = dfs_seterr(errmsg, DFS_EPRECOND,
                            "node %s was registered again since (now at %s): this process was "
                            "replaced",
                            node_id, old.address);
        else if (found == 1)
            rc = catalog_exec(cat, S_NODE_HEARTBEAT, NULL, errmsg, "tiiiii", node_id,
                              (int64_t)usage->capacity_bytes, (int64_t)usage->used_bytes,
                              (int64_t)usage->free_bytes, (int64_t)usage->fragment_count, now_ms);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    if (rc != DFS_OK)
        return rc;
    if (found == 1 && (old.state == DFS_NODE_SUSPECT || old.state == DFS_NODE_DEAD))
        dfs_log(DFS_LOG_WARN,
                "node alive again id=%s address=%s previous_state=%s silent_ms=%" PRId64, node_id,
                old.address, dfs_catalog_node_state_name(old.state),
                now_ms - old.last_heartbeat_ms);
    *known = found == 1;
    return DFS_OK;
}

/* The stored row of node_id under the lock, without the soft state: 1 found, 0 not, or an error. */
static int node_row(dfs_catalog *cat, const char *node_id, struct dfs_node_rec *out, char **errmsg)
{
    catalog_lock(cat);
    int found = catalog_get_node(cat, node_id, out, errmsg);
    catalog_unlock(cat);
    return found;
}

int dfs_catalog_node_get(dfs_catalog *cat, const char *node_id, struct dfs_node_rec *out,
                         char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_node_rec n;
    int found = node_row(cat, node_id, &n, errmsg);
    if (found < 0)
        return found;
    if (found == 0)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no storage node %s", node_id);
    soft_overlay(cat, &n, 1);
    *out = n;
    return DFS_OK;
}

int dfs_catalog_node_set_state(dfs_catalog *cat, const char *node_id, enum dfs_node_state state,
                               char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_node_set_state(node_id, state, 0, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, NULL, NULL, NULL, errmsg);
    }
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    if (state < DFS_NODE_ALIVE || state > DFS_NODE_DECOMMISSIONED)
        return dfs_seterr(errmsg, DFS_EINVAL, "bad node state %d", (int)state);
    int changes = 0;
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        rc = catalog_exec(cat, S_NODE_SET_STATE, &changes, errmsg, "tt", node_id,
                          dfs_catalog_node_state_name(state));
        if (rc == DFS_OK && changes == 0)
            rc = dfs_seterr(errmsg, DFS_ENOTFOUND, "no storage node %s", node_id);
        if (rc == DFS_OK && state == DFS_NODE_ALIVE)
            rc = catalog_exec(cat, S_REPAIRS_DROP_DRAIN, NULL, errmsg, "t", node_id);
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    if (rc == DFS_OK)
        dfs_log(DFS_LOG_INFO, "node state set id=%s state=%s", node_id,
                dfs_catalog_node_state_name(state));
    return rc;
}

static void read_node_row(dfs_catalog *cat, enum stmt id, void *slot)
{
    catalog_read_node(cat, id, slot);
}

int dfs_catalog_nodes_list(dfs_catalog *cat, struct dfs_node_rec **out, size_t *n, char **errmsg)
{
    int rc = catalog_collect_rows(cat, S_NODES_LIST, sizeof **out, read_node_row, out, n, errmsg);
    if (rc == DFS_OK)
        soft_overlay(cat, *out, *n);
    return rc;
}

static int sweep_durable(dfs_catalog *cat, int64_t now_ms, int64_t suspect_after_ms,
                         int64_t dead_after_ms, size_t *nsuspect, size_t *ndead, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ =
            dfs_command_nodes_sweep(now_ms, suspect_after_ms, dead_after_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_
                             : catalog_propose(cat, cmd_, len_, nsuspect, ndead, NULL, errmsg);
    }
    if (suspect_after_ms <= 0 || dead_after_ms < suspect_after_ms)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "sweep needs 0 < suspect_after_ms (%" PRId64
                          ") <= dead_after_ms (%" PRId64 ")",
                          suspect_after_ms, dead_after_ms);
    struct late {
        char id[DFS_ID_HEX + 1];
        char address[DFS_NODE_ADDRESS_MAX + 1];
        enum dfs_node_state from, to;
        int64_t silent_ms;
    } *late = NULL;
    size_t nlate = 0;
    int64_t dead_cutoff = sub_sat(now_ms, dead_after_ms);
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int row = catalog_query(cat, S_NODES_LATE, errmsg, "ii", sub_sat(now_ms, suspect_after_ms),
                                dead_cutoff);
        while (row == 1) {
            struct late *l = catalog_grow(&late, &nlate, sizeof *l);
            if (l == NULL) {
                catalog_release(cat->st[S_NODES_LATE]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            catalog_col_copy(cat, S_NODES_LATE, 0, l->id, sizeof l->id);
            catalog_col_copy(cat, S_NODES_LATE, 1, l->address, sizeof l->address);
            l->from = (enum dfs_node_state)NAME_INDEX(catalog_node_state_names,
                                                      catalog_col_text(cat, S_NODES_LATE, 2));
            int64_t hb = catalog_col_i64(cat, S_NODES_LATE, 3);
            l->silent_ms = now_ms - hb;
            l->to = hb < dead_cutoff ? DFS_NODE_DEAD : DFS_NODE_SUSPECT;
            row = catalog_next_row(cat, S_NODES_LATE, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        for (size_t i = 0; rc == DFS_OK && i < nlate; i++)
            rc = catalog_exec(cat, S_NODE_SET_STATE, NULL, errmsg, "tt", late[i].id,
                              dfs_catalog_node_state_name(late[i].to));
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    size_t s = 0, d = 0;
    for (size_t i = 0; rc == DFS_OK && i < nlate; i++) {
        if (late[i].to == DFS_NODE_DEAD)
            d++;
        else
            s++;
        dfs_log(DFS_LOG_WARN, "node %s id=%s address=%s previous_state=%s silent_ms=%" PRId64,
                late[i].to == DFS_NODE_DEAD ? "dead" : "suspect", late[i].id, late[i].address,
                dfs_catalog_node_state_name(late[i].from), late[i].silent_ms);
    }
    free(late);
    if (rc != DFS_OK)
        return rc;
    if (nsuspect != NULL)
        *nsuspect = s;
    if (ndead != NULL)
        *ndead = d;
    return DFS_OK;
}

/* ---- Liveness as the leader's soft state (catalog.h) ----------------------------------------- */

/* Whether this thread is applying a committed entry (its verbs write, whatever the lead). */
static bool in_apply(dfs_catalog *cat)
{
    catalog_lock(cat);
    bool a = cat->applying && pthread_equal(cat->apply_owner, pthread_self());
    catalog_unlock(cat);
    return a;
}

/* Whether a verb takes the soft path: this handle leads, and the caller is not an apply. */
static bool soft_path(dfs_catalog *cat)
{
    pthread_mutex_lock(&cat->soft_mu);
    bool on = cat->soft_on;
    pthread_mutex_unlock(&cat->soft_mu);
    return on && !in_apply(cat);
}

/* Node id's entry (soft_mu held), created (zeroed) when absent and `create`; NULL when absent or
   out of memory. Pointers are valid until the next creation. */
static struct catalog_soft_node *soft_find(dfs_catalog *cat, const char *id, bool create)
{
    size_t lo = 0, hi = cat->nsoft;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(cat->soft[mid].id, id);
        if (c == 0)
            return &cat->soft[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!create)
        return NULL;
    if (cat->nsoft == cat->capsoft) {
        size_t cap = cat->capsoft == 0 ? 16 : 2 * cat->capsoft;
        struct catalog_soft_node *v = realloc(cat->soft, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        cat->soft = v;
        cat->capsoft = cap;
    }
    memmove(&cat->soft[lo + 1], &cat->soft[lo], (cat->nsoft - lo) * sizeof *cat->soft);
    cat->nsoft++;
    struct catalog_soft_node *e = &cat->soft[lo];
    memset(e, 0, sizeof *e);
    snprintf(e->id, sizeof e->id, "%s", id);
    return e;
}

static bool same_usage(const struct dfs_node_usage *a, const struct dfs_node_usage *b)
{
    return a->capacity_bytes == b->capacity_bytes && a->used_bytes == b->used_bytes &&
           a->free_bytes == b->free_bytes && a->fragment_count == b->fragment_count;
}

void dfs_catalog_liveness_lead(dfs_catalog *cat, int64_t epoch_ms)
{
    pthread_mutex_lock(&cat->soft_mu);
    cat->nsoft = 0;
    cat->soft_epoch_ms = epoch_ms;
    cat->soft_on = true;
    pthread_mutex_unlock(&cat->soft_mu);
}

void dfs_catalog_liveness_follow(dfs_catalog *cat)
{
    pthread_mutex_lock(&cat->soft_mu);
    cat->soft_on = false;
    cat->nsoft = 0;
    pthread_mutex_unlock(&cat->soft_mu);
}

/* The figures heard here over the catalog's records (public reads). */
static void soft_overlay(dfs_catalog *cat, struct dfs_node_rec *n, size_t count)
{
    pthread_mutex_lock(&cat->soft_mu);
    for (size_t i = 0; cat->soft_on && i < count; i++) {
        const struct catalog_soft_node *e = soft_find(cat, n[i].id, false);
        if (e == NULL || e->seen_ms == 0)
            continue;
        n[i].usage = e->usage;
        if (e->seen_ms > n[i].last_heartbeat_ms)
            n[i].last_heartbeat_ms = e->seen_ms;
    }
    pthread_mutex_unlock(&cat->soft_mu);
}

/* A registration just written: the figures it wrote are the latest heard. */
static void soft_registered(dfs_catalog *cat, const char *node_id,
                            const struct dfs_node_usage *usage, int64_t now_ms)
{
    pthread_mutex_lock(&cat->soft_mu);
    struct catalog_soft_node *e = cat->soft_on ? soft_find(cat, node_id, true) : NULL;
    if (e != NULL) {
        if (now_ms > e->seen_ms)
            e->seen_ms = now_ms;
        e->usage = *usage;
        e->written = *usage;
        e->written_ms = now_ms;
    }
    pthread_mutex_unlock(&cat->soft_mu);
}

/* A heartbeat while leading: see catalog.h. */
static int soft_heartbeat(dfs_catalog *cat, const char *node_id, uint64_t registration,
                          const struct dfs_node_usage *usage, int64_t now_ms, bool *known,
                          char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc == DFS_OK)
        rc = check_usage(usage, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_node_rec n;
    int found = node_row(cat, node_id, &n, errmsg);
    if (found < 0)
        return found;
    if (found == 0) {
        *known = false;
        return DFS_OK;
    }
    if (registration != DFS_CATALOG_KEEP && n.registration != registration)
        return dfs_seterr(errmsg, DFS_EPRECOND,
                          "node %s was registered again since (now at %s): this process was "
                          "replaced",
                          node_id, n.address);
    bool write = true; /* no entry (the lead ended meanwhile, or no memory): write through */
    pthread_mutex_lock(&cat->soft_mu);
    struct catalog_soft_node *e = cat->soft_on ? soft_find(cat, node_id, true) : NULL;
    if (e != NULL) {
        if (e->written_ms == 0) { /* first heard in this lead: what the catalog holds */
            e->written_ms = n.last_heartbeat_ms;
            e->written = n.usage;
        }
        if (now_ms > e->seen_ms)
            e->seen_ms = now_ms;
        e->usage = *usage;
        write = n.state == DFS_NODE_SUSPECT || n.state == DFS_NODE_DEAD || e->marking > 0 ||
                (!same_usage(&e->written, usage) &&
                 now_ms - e->written_ms >= DFS_CATALOG_USAGE_WRITE_MS);
        if (write) {
            e->written_ms = now_ms;
            e->written = *usage;
        }
    }
    pthread_mutex_unlock(&cat->soft_mu);
    *known = true;
    if (!write)
        return DFS_OK;
    return heartbeat_durable(cat, node_id, registration, usage, now_ms, known, errmsg);
}

/* A sweep while leading: decide from what was heard here, write the decisions (catalog.h). */
static int soft_sweep(dfs_catalog *cat, int64_t now_ms, int64_t suspect_after_ms,
                      int64_t dead_after_ms, size_t *nsuspect, size_t *ndead, char **errmsg)
{
    struct dfs_node_rec *nodes = NULL;
    size_t nn = 0;
    int rc =
        catalog_collect_rows(cat, S_NODES_LIST, sizeof *nodes, read_node_row, &nodes, &nn, errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_node_mark *marks = calloc(nn == 0 ? 1 : nn, sizeof *marks);
    if (marks == NULL) {
        free(nodes);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    size_t k = 0;
    int64_t suspect_cutoff = sub_sat(now_ms, suspect_after_ms);
    int64_t dead_cutoff = sub_sat(now_ms, dead_after_ms);
    pthread_mutex_lock(&cat->soft_mu);
    bool on = cat->soft_on;
    for (size_t i = 0; on && rc == DFS_OK && i < nn; i++) {
        const struct dfs_node_rec *n = &nodes[i];
        if (n->state != DFS_NODE_ALIVE && n->state != DFS_NODE_SUSPECT)
            continue;
        struct catalog_soft_node *e = soft_find(cat, n->id, false);
        int64_t seen = n->last_heartbeat_ms;
        if (cat->soft_epoch_ms > seen)
            seen = cat->soft_epoch_ms;
        if (e != NULL && e->seen_ms > seen)
            seen = e->seen_ms;
        enum dfs_node_state to = DFS_NODE_UNSPECIFIED;
        if (seen < dead_cutoff)
            to = DFS_NODE_DEAD;
        else if (n->state == DFS_NODE_ALIVE && seen < suspect_cutoff)
            to = DFS_NODE_SUSPECT;
        if (to == DFS_NODE_UNSPECIFIED)
            continue;
        /* Heartbeats that come in from now on write through until the decision is applied: they
           void it, or bring the node back after it. */
        e = soft_find(cat, n->id, true);
        if (e == NULL) {
            rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
            break;
        }
        e->marking++;
        marks[k] = (struct dfs_node_mark){.from = n->state, .to = to, .last_seen_ms = seen};
        memcpy(marks[k].node_id, n->id, sizeof marks[k].node_id);
        k++;
    }
    pthread_mutex_unlock(&cat->soft_mu);
    free(nodes);
    if (!on) { /* the lead ended meanwhile: as without one */
        free(marks);
        return sweep_durable(cat, now_ms, suspect_after_ms, dead_after_ms, nsuspect, ndead, errmsg);
    }
    size_t s = 0, d = 0;
    if (rc == DFS_OK && k > 0)
        rc = dfs_catalog_nodes_mark(cat, marks, k, now_ms, &s, &d, errmsg);
    pthread_mutex_lock(&cat->soft_mu);
    for (size_t i = 0; i < k; i++) {
        struct catalog_soft_node *e = soft_find(cat, marks[i].node_id, false);
        if (e != NULL && e->marking > 0)
            e->marking--;
    }
    pthread_mutex_unlock(&cat->soft_mu);
    free(marks);
    if (rc != DFS_OK)
        return rc;
    if (nsuspect != NULL)
        *nsuspect = s;
    if (ndead != NULL)
        *ndead = d;
    return DFS_OK;
}

int dfs_catalog_node_register(dfs_catalog *cat, const char *node_id, const char *address,
                              const char *zone, const struct dfs_node_usage *usage, int64_t now_ms,
                              uint64_t expect, uint64_t registration, char **errmsg)
{
    bool soft = soft_path(cat);
    int rc =
        register_durable(cat, node_id, address, zone, usage, now_ms, expect, registration, errmsg);
    if (rc == DFS_OK && soft)
        soft_registered(cat, node_id, usage, now_ms);
    return rc;
}

int dfs_catalog_node_enroll(dfs_catalog *cat, const char *node_id, const char *token_id,
                            const uint8_t token_hash[32], const char *address, const char *zone,
                            const struct dfs_node_usage *usage, int64_t now_ms,
                            uint64_t registration, char **errmsg)
{
    bool soft = soft_path(cat);
    int rc = enroll_durable(cat, node_id, token_id, token_hash, address, zone, usage, now_ms,
                            registration, errmsg);
    if (rc == DFS_OK && soft)
        soft_registered(cat, node_id, usage, now_ms);
    return rc;
}

int dfs_catalog_node_heartbeat(dfs_catalog *cat, const char *node_id, uint64_t registration,
                               const struct dfs_node_usage *usage, int64_t now_ms, bool *known,
                               char **errmsg)
{
    if (soft_path(cat))
        return soft_heartbeat(cat, node_id, registration, usage, now_ms, known, errmsg);
    return heartbeat_durable(cat, node_id, registration, usage, now_ms, known, errmsg);
}

int dfs_catalog_nodes_sweep(dfs_catalog *cat, int64_t now_ms, int64_t suspect_after_ms,
                            int64_t dead_after_ms, size_t *nsuspect, size_t *ndead, char **errmsg)
{
    if (suspect_after_ms <= 0 || dead_after_ms < suspect_after_ms)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "sweep needs 0 < suspect_after_ms (%" PRId64
                          ") <= dead_after_ms (%" PRId64 ")",
                          suspect_after_ms, dead_after_ms);
    if (soft_path(cat))
        return soft_sweep(cat, now_ms, suspect_after_ms, dead_after_ms, nsuspect, ndead, errmsg);
    return sweep_durable(cat, now_ms, suspect_after_ms, dead_after_ms, nsuspect, ndead, errmsg);
}

static bool mark_ok(const struct dfs_node_mark *m)
{
    return (m->from == DFS_NODE_ALIVE && (m->to == DFS_NODE_SUSPECT || m->to == DFS_NODE_DEAD)) ||
           (m->from == DFS_NODE_SUSPECT && m->to == DFS_NODE_DEAD);
}

int dfs_catalog_nodes_mark(dfs_catalog *cat, const struct dfs_node_mark *marks, size_t n,
                           int64_t now_ms, size_t *nsuspect, size_t *ndead, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_nodes_mark(marks, n, now_ms, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_
                             : catalog_propose(cat, cmd_, len_, nsuspect, ndead, NULL, errmsg);
    }
    int rc = DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < n; i++) {
        rc = catalog_check_id(marks[i].node_id, "node", errmsg);
        if (rc == DFS_OK && !mark_ok(&marks[i]))
            rc = dfs_seterr(errmsg, DFS_EINVAL, "node %s: no liveness transition from %s to %s",
                            marks[i].node_id, dfs_catalog_node_state_name(marks[i].from),
                            dfs_catalog_node_state_name(marks[i].to));
    }
    if (rc != DFS_OK)
        return rc;
    bool *done = calloc(n == 0 ? 1 : n, sizeof *done);
    char(*address)[DFS_NODE_ADDRESS_MAX + 1] = calloc(n == 0 ? 1 : n, sizeof *address);
    if (done == NULL || address == NULL) {
        free(done);
        free(address);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    catalog_lock(cat);
    rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        for (size_t i = 0; rc == DFS_OK && i < n; i++) {
            struct dfs_node_rec old;
            int found = catalog_get_node(cat, marks[i].node_id, &old, errmsg);
            if (found < 0) {
                rc = found;
                break;
            }
            if (found == 0 || old.state != marks[i].from ||
                old.last_heartbeat_ms > marks[i].last_seen_ms)
                continue; /* changed since the decision */
            rc = catalog_exec(cat, S_NODE_SET_STATE, NULL, errmsg, "tt", marks[i].node_id,
                              dfs_catalog_node_state_name(marks[i].to));
            done[i] = rc == DFS_OK;
            memcpy(address[i], old.address, sizeof address[i]);
        }
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    size_t s = 0, d = 0;
    for (size_t i = 0; rc == DFS_OK && i < n; i++) {
        if (!done[i])
            continue;
        if (marks[i].to == DFS_NODE_DEAD)
            d++;
        else
            s++;
        dfs_log(DFS_LOG_WARN, "node %s id=%s address=%s previous_state=%s silent_ms=%" PRId64,
                marks[i].to == DFS_NODE_DEAD ? "dead" : "suspect", marks[i].node_id, address[i],
                dfs_catalog_node_state_name(marks[i].from), now_ms - marks[i].last_seen_ms);
    }
    free(done);
    free(address);
    if (rc != DFS_OK)
        return rc;
    if (nsuspect != NULL)
        *nsuspect = s;
    if (ndead != NULL)
        *ndead = d;
    return DFS_OK;
}

int catalog_check_target(dfs_catalog *cat, const char *node_id, char **errmsg)
{
    struct dfs_node_rec n;
    int found = catalog_get_node(cat, node_id, &n, errmsg);
    if (found < 0)
        return found;
    if (found == 0)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "storage node %s is not registered", node_id);
    if (n.state != DFS_NODE_ALIVE)
        return dfs_seterr(errmsg, DFS_EABORTED,
                          "storage node %s (%s) is %s, not alive: choose another node", node_id,
                          n.address, dfs_catalog_node_state_name(n.state));
    return DFS_OK;
}

/* ---- Nodes: prefixes, drains, copies --------------------------------------------------------- */

int dfs_catalog_node_resolve(dfs_catalog *cat, const char *prefix, struct dfs_node_rec *out,
                             char **errmsg)
{
    size_t len = prefix == NULL ? 0 : strlen(prefix);
    if (len == 0 || len > DFS_ID_HEX || !dfs_id_is_hex(prefix, len))
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "bad node id '%s' (want 1 to %d lower-case hex digits of a node id)",
                          prefix == NULL ? "" : prefix, DFS_ID_HEX);
    struct dfs_node_rec n[2];
    size_t count = 0;
    catalog_lock(cat);
    int rc = catalog_query(cat, S_NODE_RESOLVE, errmsg, "t", prefix);
    while (rc == 1) {
        catalog_read_node(cat, S_NODE_RESOLVE, &n[count++]);
        rc = count < 2 ? catalog_next_row(cat, S_NODE_RESOLVE, errmsg) : 0;
    }
    if (count == 2)
        catalog_release(cat->st[S_NODE_RESOLVE]);
    catalog_unlock(cat);
    if (rc < 0)
        return rc;
    if (count == 0)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no storage node %s%s", prefix,
                          len < DFS_ID_HEX ? "..." : "");
    if (count > 1)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "node id prefix '%s' is ambiguous (it matches %s and %s at least): "
                          "give more digits",
                          prefix, n[0].id, n[1].id);
    soft_overlay(cat, &n[0], 1);
    *out = n[0];
    return DFS_OK;
}

int dfs_catalog_nodes_finish_drains(dfs_catalog *cat, size_t *n, char **errmsg)
{
    if (catalog_must_propose(cat)) {
        void *cmd_ = NULL;
        size_t len_ = 0;
        int rc_ = dfs_command_nodes_finish_drains(0, &cmd_, &len_, errmsg);
        return rc_ != DFS_OK ? rc_ : catalog_propose(cat, cmd_, len_, n, NULL, NULL, errmsg);
    }
    struct done {
        char id[DFS_ID_HEX + 1];
        char address[DFS_NODE_ADDRESS_MAX + 1];
    } *v = NULL;
    size_t count = 0;
    catalog_lock(cat);
    int rc = catalog_tx_begin(cat, true, errmsg);
    if (rc == DFS_OK) {
        int row = catalog_query(cat, S_NODES_DRAINED, errmsg, "");
        while (row == 1) {
            struct done *d = catalog_grow(&v, &count, sizeof *d);
            if (d == NULL) {
                catalog_release(cat->st[S_NODES_DRAINED]);
                row = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
                break;
            }
            catalog_col_copy(cat, S_NODES_DRAINED, 0, d->id, sizeof d->id);
            catalog_col_copy(cat, S_NODES_DRAINED, 1, d->address, sizeof d->address);
            row = catalog_next_row(cat, S_NODES_DRAINED, errmsg);
        }
        rc = row < 0 ? row : DFS_OK;
        for (size_t i = 0; rc == DFS_OK && i < count; i++)
            rc = catalog_exec(cat, S_NODE_SET_STATE, NULL, errmsg, "tt", v[i].id, "decommissioned");
        rc = catalog_tx_end(cat, rc, errmsg);
    }
    catalog_unlock(cat);
    for (size_t i = 0; rc == DFS_OK && i < count; i++)
        dfs_log(DFS_LOG_INFO, "node drained, now decommissioned id=%s address=%s", v[i].id,
                v[i].address);
    free(v);
    if (rc == DFS_OK && n != NULL)
        *n = count;
    return rc;
}

static void read_node_copies(dfs_catalog *cat, enum stmt id, void *slot)
{
    struct dfs_node_copies *c = slot;
    catalog_col_copy(cat, id, 0, c->node_id, sizeof c->node_id);
    c->copies = (uint64_t)catalog_col_i64(cat, id, 1);
    c->bytes = (uint64_t)catalog_col_i64(cat, id, 2);
}

int dfs_catalog_node_copies(dfs_catalog *cat, struct dfs_node_copies **out, size_t *n,
                            char **errmsg)
{
    return catalog_collect_rows(cat, S_NODE_COPIES, sizeof **out, read_node_copies, out, n, errmsg);
}
