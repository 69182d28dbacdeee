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

int dfs_catalog_node_register(dfs_catalog *cat, const char *node_id, const char *address,
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

int dfs_catalog_node_enroll(dfs_catalog *cat, const char *node_id, const char *token_id,
                            const uint8_t token_hash[32], const char *address, const char *zone,
                            const struct dfs_node_usage *usage, int64_t now_ms,
                            uint64_t registration, char **errmsg)
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

int dfs_catalog_node_heartbeat(dfs_catalog *cat, const char *node_id, uint64_t registration,
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

int dfs_catalog_node_get(dfs_catalog *cat, const char *node_id, struct dfs_node_rec *out,
                         char **errmsg)
{
    int rc = catalog_check_id(node_id, "node", errmsg);
    if (rc != DFS_OK)
        return rc;
    struct dfs_node_rec n;
    catalog_lock(cat);
    int found = catalog_get_node(cat, node_id, &n, errmsg);
    catalog_unlock(cat);
    if (found < 0)
        return found;
    if (found == 0)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "no storage node %s", node_id);
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
    return catalog_collect_rows(cat, S_NODES_LIST, sizeof **out, read_node_row, out, n, errmsg);
}

int dfs_catalog_nodes_sweep(dfs_catalog *cat, int64_t now_ms, int64_t suspect_after_ms,
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
