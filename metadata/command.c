/* Replicated catalog commands: building dfs.v1.repl.Command and applying committed entries. */
#include "metadata/command.h"

#include "common/err.h"
#include "common/log.h"
#include "dfs/v1/replication.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Dfs__V1__Repl__Command Command;

/* protobuf-c wants char * for strings it only reads when packing. */
static char *str(const char *s)
{
    return (char *)(s == NULL ? "" : s);
}

static ProtobufCBinaryData bin(const void *p, size_t n)
{
    return (ProtobufCBinaryData){.len = n, .data = (uint8_t *)p};
}

/* Pack c (version and now_ms set here) into a new buffer. */
static int pack(Command *c, int64_t now_ms, void **out, size_t *len, char **errmsg)
{
    c->version = DFS_COMMAND_VERSION;
    c->now_ms = now_ms;
    size_t n = dfs__v1__repl__command__get_packed_size(c);
    uint8_t *buf = malloc(n == 0 ? 1 : n);
    if (buf == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    dfs__v1__repl__command__pack(c, buf);
    *out = buf;
    *len = n;
    return DFS_OK;
}

int dfs_command_file_create(const struct dfs_create_req *req, int64_t now_ms, void **out,
                            size_t *len, char **errmsg)
{
    if (req == NULL || req->file_id == NULL || req->nfragments > DFS_FRAGMENTS_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "a create command needs its file id and plan");
    Dfs__V1__Repl__FileCreate fc = DFS__V1__REPL__FILE_CREATE__INIT;
    fc.file_id = str(req->file_id);
    fc.path = str(req->path);
    fc.size = req->size;
    fc.scheme = (uint32_t)req->redundancy.scheme;
    fc.replicas = req->redundancy.replicas;
    fc.fragments = req->redundancy.fragments;
    fc.data = req->redundancy.data;
    fc.parity = req->redundancy.parity;
    fc.policy = (uint32_t)req->policy;
    fc.overwrite = req->overwrite;
    fc.fragment_size = req->fragment_size;
    fc.cell_size = req->cell_size;
    fc.expires_ms = req->expires_ms;
    Dfs__V1__Repl__FileCreate__Fragment frags[DFS_FRAGMENTS_MAX];
    Dfs__V1__Repl__FileCreate__Fragment *fp[DFS_FRAGMENTS_MAX];
    for (size_t i = 0; i < req->nfragments; i++) {
        dfs__v1__repl__file_create__fragment__init(&frags[i]);
        frags[i].index = req->fragments[i].index;
        frags[i].size = req->fragments[i].size;
        frags[i].n_node_ids = req->fragments[i].nnodes;
        frags[i].node_ids = (char **)req->fragments[i].node_ids;
        fp[i] = &frags[i];
    }
    fc.n_plan = req->nfragments;
    fc.plan = fp;
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_FILE_CREATE;
    c.file_create = &fc;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_file_replace_target(const char *file_id, uint32_t index, const char *failed_node_id,
                                    const char *new_node_id, int64_t now_ms, void **out,
                                    size_t *len, char **errmsg)
{
    Dfs__V1__Repl__FileReplaceTarget m = DFS__V1__REPL__FILE_REPLACE_TARGET__INIT;
    m.file_id = str(file_id);
    m.index = index;
    m.failed_node_id = str(failed_node_id);
    m.new_node_id = str(new_node_id);
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_FILE_REPLACE_TARGET;
    c.file_replace_target = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_file_commit(const char *file_id, const uint8_t sha256[DFS_SHA256_LEN],
                            const struct dfs_commit_fragment *fragments, size_t nfragments,
                            int64_t now_ms, void **out, size_t *len, char **errmsg)
{
    if (sha256 == NULL || nfragments > DFS_FRAGMENTS_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "a commit command needs its digest and fragments");
    Dfs__V1__Repl__FileCommit m = DFS__V1__REPL__FILE_COMMIT__INIT;
    m.file_id = str(file_id);
    m.sha256 = bin(sha256, DFS_SHA256_LEN);
    Dfs__V1__Repl__FileCommit__Fragment frags[DFS_FRAGMENTS_MAX];
    Dfs__V1__Repl__FileCommit__Fragment *fp[DFS_FRAGMENTS_MAX];
    for (size_t i = 0; i < nfragments; i++) {
        dfs__v1__repl__file_commit__fragment__init(&frags[i]);
        frags[i].index = fragments[i].index;
        frags[i].size = fragments[i].size;
        frags[i].checksum = fragments[i].checksum;
        frags[i].n_node_ids = fragments[i].nnodes;
        frags[i].node_ids = (char **)fragments[i].node_ids;
        fp[i] = &frags[i];
    }
    m.n_fragments = nfragments;
    m.fragments = fp;
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_FILE_COMMIT;
    c.file_commit = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_file_abort(const char *file_id, int64_t now_ms, void **out, size_t *len,
                           char **errmsg)
{
    Dfs__V1__Repl__FileAbort m = DFS__V1__REPL__FILE_ABORT__INIT;
    m.file_id = str(file_id);
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_FILE_ABORT;
    c.file_abort = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_file_delete(const char *path, int64_t now_ms, void **out, size_t *len,
                            char **errmsg)
{
    Dfs__V1__Repl__FileDelete m = DFS__V1__REPL__FILE_DELETE__INIT;
    m.path = str(path);
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_FILE_DELETE;
    c.file_delete = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_file_rename(const char *from, const char *to, bool replace, int64_t now_ms,
                            void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__FileRename m = DFS__V1__REPL__FILE_RENAME__INIT;
    m.from = str(from);
    m.to = str(to);
    m.replace = replace;
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_FILE_RENAME;
    c.file_rename = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_files_expire(int64_t now_ms, void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__FilesExpire m = DFS__V1__REPL__FILES_EXPIRE__INIT;
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_FILES_EXPIRE;
    c.files_expire = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

static Dfs__V1__Repl__Usage usage_msg(const struct dfs_node_usage *u)
{
    Dfs__V1__Repl__Usage m = DFS__V1__REPL__USAGE__INIT;
    if (u != NULL) {
        m.capacity_bytes = u->capacity_bytes;
        m.used_bytes = u->used_bytes;
        m.free_bytes = u->free_bytes;
        m.fragment_count = u->fragment_count;
    }
    return m;
}

static struct dfs_node_usage usage_of(const Dfs__V1__Repl__Usage *m)
{
    struct dfs_node_usage u = {0};
    if (m != NULL) {
        u.capacity_bytes = m->capacity_bytes;
        u.used_bytes = m->used_bytes;
        u.free_bytes = m->free_bytes;
        u.fragment_count = m->fragment_count;
    }
    return u;
}

int dfs_command_node_register(const char *node_id, const char *address, const char *zone,
                              const struct dfs_node_usage *usage, int64_t now_ms, uint64_t expect,
                              uint64_t registration, void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__Usage u = usage_msg(usage);
    Dfs__V1__Repl__NodeRegister m = DFS__V1__REPL__NODE_REGISTER__INIT;
    m.node_id = str(node_id);
    m.address = str(address);
    m.zone = str(zone);
    m.usage = &u;
    m.expect = expect;
    m.registration = registration;
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_NODE_REGISTER;
    c.node_register = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_node_heartbeat(const char *node_id, uint64_t registration,
                               const struct dfs_node_usage *usage, int64_t now_ms, void **out,
                               size_t *len, char **errmsg)
{
    Dfs__V1__Repl__Usage u = usage_msg(usage);
    Dfs__V1__Repl__NodeHeartbeat m = DFS__V1__REPL__NODE_HEARTBEAT__INIT;
    m.node_id = str(node_id);
    m.registration = registration;
    m.usage = &u;
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_NODE_HEARTBEAT;
    c.node_heartbeat = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_node_set_state(const char *node_id, enum dfs_node_state state, int64_t now_ms,
                               void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__NodeSetState m = DFS__V1__REPL__NODE_SET_STATE__INIT;
    m.node_id = str(node_id);
    m.state = (uint32_t)state;
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_NODE_SET_STATE;
    c.node_set_state = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_nodes_sweep(int64_t now_ms, int64_t suspect_after_ms, int64_t dead_after_ms,
                            void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__NodesSweep m = DFS__V1__REPL__NODES_SWEEP__INIT;
    m.suspect_after_ms = suspect_after_ms;
    m.dead_after_ms = dead_after_ms;
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_NODES_SWEEP;
    c.nodes_sweep = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_repairs_recover(int64_t now_ms, void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__RepairsRecover m = DFS__V1__REPL__REPAIRS_RECOVER__INIT;
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_REPAIRS_RECOVER;
    c.repairs_recover = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_token_add(const struct dfs_token_rec *rec, const uint8_t hash[32], int64_t now_ms,
                          void **out, size_t *len, char **errmsg)
{
    if (rec == NULL || hash == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "a token command needs its record and hash");
    Dfs__V1__Repl__TokenAdd m = DFS__V1__REPL__TOKEN_ADD__INIT;
    m.id = str(rec->id);
    m.name = str(rec->name);
    m.role = (uint32_t)rec->role;
    m.created_ms = rec->created_ms;
    m.expires_ms = rec->expires_ms;
    m.hash = bin(hash, 32);
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_TOKEN_ADD;
    c.token_add = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_token_revoke(const char *id, int64_t now_ms, void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__TokenRevoke m = DFS__V1__REPL__TOKEN_REVOKE__INIT;
    m.id = str(id);
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_TOKEN_REVOKE;
    c.token_revoke = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_secret_set(const char *name, const uint8_t *value, size_t vlen, int64_t now_ms,
                           void **out, size_t *len, char **errmsg)
{
    if (value == NULL || vlen == 0 || vlen > 64)
        return dfs_seterr(errmsg, DFS_EINVAL, "a secret is 1 to 64 bytes");
    Dfs__V1__Repl__SecretSet m = DFS__V1__REPL__SECRET_SET__INIT;
    m.name = str(name);
    m.value = bin(value, vlen);
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_SECRET_SET;
    c.secret_set = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

/* ---- Apply ----------------------------------------------------------------------------------- */

/* Verdicts that depend on the replica, not on the command: they must stop it (see command.h). */
static bool replica_failure(int status)
{
    return status == DFS_EIO || status == DFS_ENOSPC || status == DFS_EUNAVAIL ||
           status == DFS_ENOMEM || status == DFS_EINTERNAL;
}

static int apply_create(dfs_catalog *cat, const Dfs__V1__Repl__FileCreate *m, int64_t now_ms,
                        char **vmsg)
{
    if (m->n_plan > DFS_FRAGMENTS_MAX)
        return dfs_seterr(vmsg, DFS_EINVAL, "plan of %zu fragments", m->n_plan);
    struct dfs_plan_fragment plan[DFS_FRAGMENTS_MAX];
    for (size_t i = 0; i < m->n_plan; i++)
        plan[i] = (struct dfs_plan_fragment){
            .index = m->plan[i]->index,
            .size = m->plan[i]->size,
            .node_ids = (const char *const *)m->plan[i]->node_ids,
            .nnodes = m->plan[i]->n_node_ids,
        };
    struct dfs_create_req req = {
        .path = m->path,
        .size = m->size,
        .redundancy = {.scheme = (enum dfs_scheme)m->scheme,
                       .replicas = m->replicas,
                       .fragments = m->fragments,
                       .data = m->data,
                       .parity = m->parity},
        .policy = (enum dfs_policy)m->policy,
        .overwrite = m->overwrite,
        .fragment_size = m->fragment_size,
        .cell_size = m->cell_size,
        .expires_ms = m->expires_ms,
        .fragments = plan,
        .nfragments = m->n_plan,
        .file_id = m->file_id,
    };
    struct dfs_file_rec *f = NULL;
    int rc = dfs_catalog_file_create(cat, &req, now_ms, &f, vmsg);
    dfs_catalog_file_rec_free(f);
    return rc;
}

static int apply_commit(dfs_catalog *cat, const Dfs__V1__Repl__FileCommit *m, int64_t now_ms,
                        char **vmsg)
{
    if (m->n_fragments > DFS_FRAGMENTS_MAX || m->sha256.len != DFS_SHA256_LEN)
        return dfs_seterr(vmsg, DFS_EINVAL, "malformed commit command");
    struct dfs_commit_fragment fr[DFS_FRAGMENTS_MAX];
    for (size_t i = 0; i < m->n_fragments; i++)
        fr[i] = (struct dfs_commit_fragment){
            .index = m->fragments[i]->index,
            .size = m->fragments[i]->size,
            .checksum = m->fragments[i]->checksum,
            .node_ids = (const char *const *)m->fragments[i]->node_ids,
            .nnodes = m->fragments[i]->n_node_ids,
        };
    struct dfs_file_rec *f = NULL;
    int rc = dfs_catalog_file_commit(cat, m->file_id, m->sha256.data, fr, m->n_fragments, now_ms,
                                     &f, vmsg);
    dfs_catalog_file_rec_free(f);
    return rc;
}

/* One decoded command; its verdict. */
static int apply_one(dfs_catalog *cat, const Command *c, char **vmsg)
{
    int64_t now = c->now_ms;
    switch (c->op_case) {
    case DFS__V1__REPL__COMMAND__OP_FILE_CREATE:
        return apply_create(cat, c->file_create, now, vmsg);
    case DFS__V1__REPL__COMMAND__OP_FILE_REPLACE_TARGET: {
        const Dfs__V1__Repl__FileReplaceTarget *m = c->file_replace_target;
        struct dfs_replica_rec r;
        return dfs_catalog_file_replace_target(cat, m->file_id, m->index, m->failed_node_id,
                                               m->new_node_id, now, &r, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_FILE_COMMIT:
        return apply_commit(cat, c->file_commit, now, vmsg);
    case DFS__V1__REPL__COMMAND__OP_FILE_ABORT:
        return dfs_catalog_file_abort(cat, c->file_abort->file_id, now, vmsg);
    case DFS__V1__REPL__COMMAND__OP_FILE_DELETE: {
        struct dfs_file_rec *f = NULL;
        int rc = dfs_catalog_file_delete(cat, c->file_delete->path, now, &f, vmsg);
        dfs_catalog_file_rec_free(f);
        return rc;
    }
    case DFS__V1__REPL__COMMAND__OP_FILE_RENAME: {
        const Dfs__V1__Repl__FileRename *m = c->file_rename;
        return dfs_catalog_file_rename(cat, m->from, m->to, m->replace, now, NULL, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_FILES_EXPIRE:
        return dfs_catalog_files_expire(cat, now, NULL, vmsg);
    case DFS__V1__REPL__COMMAND__OP_NODE_REGISTER: {
        const Dfs__V1__Repl__NodeRegister *m = c->node_register;
        struct dfs_node_usage u = usage_of(m->usage);
        return dfs_catalog_node_register(cat, m->node_id, m->address, m->zone, &u, now, m->expect,
                                         m->registration, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_NODE_HEARTBEAT: {
        const Dfs__V1__Repl__NodeHeartbeat *m = c->node_heartbeat;
        struct dfs_node_usage u = usage_of(m->usage);
        bool known = false;
        int rc =
            dfs_catalog_node_heartbeat(cat, m->node_id, m->registration, &u, now, &known, vmsg);
        if (rc == DFS_OK && !known)
            rc = dfs_seterr(vmsg, DFS_ENOTFOUND, "node %s is not registered", m->node_id);
        return rc;
    }
    case DFS__V1__REPL__COMMAND__OP_NODE_SET_STATE:
        return dfs_catalog_node_set_state(cat, c->node_set_state->node_id,
                                          (enum dfs_node_state)c->node_set_state->state, vmsg);
    case DFS__V1__REPL__COMMAND__OP_NODES_SWEEP:
        return dfs_catalog_nodes_sweep(cat, now, c->nodes_sweep->suspect_after_ms,
                                       c->nodes_sweep->dead_after_ms, NULL, NULL, vmsg);
    case DFS__V1__REPL__COMMAND__OP_REPAIRS_RECOVER:
        return dfs_catalog_repairs_recover(cat, now, NULL, vmsg);
    case DFS__V1__REPL__COMMAND__OP_TOKEN_ADD: {
        const Dfs__V1__Repl__TokenAdd *m = c->token_add;
        if (m->hash.len != 32 || strlen(m->id) > 16 || strlen(m->name) > DFS_TOKEN_NAME_MAX)
            return dfs_seterr(vmsg, DFS_EINVAL, "malformed token command");
        struct dfs_token_rec rec = {.role = (enum dfs_token_role)m->role,
                                    .created_ms = m->created_ms,
                                    .expires_ms = m->expires_ms};
        memcpy(rec.id, m->id, strlen(m->id) + 1);
        memcpy(rec.name, m->name, strlen(m->name) + 1);
        return dfs_catalog_token_add(cat, &rec, m->hash.data, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_TOKEN_REVOKE:
        return dfs_catalog_token_revoke(cat, c->token_revoke->id, now, vmsg);
    case DFS__V1__REPL__COMMAND__OP_SECRET_SET: {
        const Dfs__V1__Repl__SecretSet *m = c->secret_set;
        uint8_t stored[64];
        if (m->value.len == 0 || m->value.len > sizeof stored)
            return dfs_seterr(vmsg, DFS_EINVAL, "a secret is 1 to 64 bytes");
        return dfs_catalog_secret_set(cat, m->name, m->value.data, m->value.len, now, stored, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP__NOT_SET:
    default:
        break;
    }
    /* Unknown to this version: applying it as a no-op would diverge from newer replicas. */
    return dfs_seterr(vmsg, DFS_EINTERNAL, "unknown command op %d", (int)c->op_case);
}

void dfs_command_verdicts_clear(struct dfs_command_verdict *verdicts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(verdicts[i].message);
        verdicts[i] = (struct dfs_command_verdict){0};
    }
}

int dfs_command_apply_entry(dfs_catalog *cat, uint64_t index, const struct dfs_command_buf *cmds,
                            size_t n, struct dfs_command_verdict *verdicts, char **errmsg)
{
    for (size_t i = 0; i < n; i++)
        verdicts[i] = (struct dfs_command_verdict){0};
    int rc = dfs_catalog_apply_begin(cat, errmsg);
    if (rc != DFS_OK)
        return rc;
    for (size_t i = 0; rc == DFS_OK && i < n; i++) {
        Command *c = dfs__v1__repl__command__unpack(NULL, cmds[i].len, cmds[i].data);
        if (c == NULL) {
            rc = dfs_seterr(errmsg, DFS_EINTERNAL,
                            "entry %" PRIu64 ": command %zu of %zu bytes does not decode", index, i,
                            cmds[i].len);
            break;
        }
        if (c->version > DFS_COMMAND_VERSION) {
            rc = dfs_seterr(errmsg, DFS_EPRECOND,
                            "entry %" PRIu64 ": command version %u is newer than this program's "
                            "%d: upgrade dfs-metadata",
                            index, c->version, DFS_COMMAND_VERSION);
        } else {
            char *vmsg = NULL;
            int v = apply_one(cat, c, &vmsg);
            if (replica_failure(v)) {
                rc = dfs_seterr(errmsg, v, "entry %" PRIu64 ": command %zu: %s", index, i,
                                vmsg == NULL ? "failed" : vmsg);
                free(vmsg);
            } else {
                verdicts[i].status = v;
                verdicts[i].message = vmsg;
            }
        }
        dfs__v1__repl__command__free_unpacked(c, NULL);
    }
    char *endmsg = NULL;
    int end = dfs_catalog_apply_end(cat, index, rc == DFS_OK, &endmsg);
    if (rc == DFS_OK && end != DFS_OK) {
        rc = end;
        if (errmsg != NULL) {
            *errmsg = endmsg;
            endmsg = NULL;
        }
    }
    free(endmsg);
    if (rc != DFS_OK)
        dfs_command_verdicts_clear(verdicts, n);
    return rc;
}
