/* Replicated catalog commands: building dfs.v1.repl.Command and applying committed entries. */
#include "metadata/command.h"

#include "metadata/catalog_int.h"

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
    if (c->version == 0)
        c->version = 1; /* what every replica since the first applies */
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

/* FileCommit, with S3's metadata and conditions when meta is not NULL (dfs_catalog_file_commit
   and dfs_catalog_file_commit_meta share the command; has_meta tells them apart). */
static int commit_command(const char *file_id, const uint8_t sha256[DFS_SHA256_LEN],
                          const struct dfs_commit_fragment *fragments, size_t nfragments,
                          const struct dfs_file_meta *meta, int64_t now_ms, void **out, size_t *len,
                          char **errmsg)
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
    if (meta != NULL) {
        m.has_meta = true;
        if (meta->md5 != NULL)
            m.md5 = bin(meta->md5, DFS_CATALOG_MD5_LEN);
        m.meta = bin(meta->meta, meta->meta_len);
        m.if_absent = meta->if_absent;
        m.if_file_id = str(meta->if_file_id);
    }
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.op_case = DFS__V1__REPL__COMMAND__OP_FILE_COMMIT;
    c.file_commit = &m;
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_file_commit(const char *file_id, const uint8_t sha256[DFS_SHA256_LEN],
                            const struct dfs_commit_fragment *fragments, size_t nfragments,
                            int64_t now_ms, void **out, size_t *len, char **errmsg)
{
    return commit_command(file_id, sha256, fragments, nfragments, NULL, now_ms, out, len, errmsg);
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

int dfs_command_nodes_mark(const struct dfs_node_mark *marks, size_t n, int64_t now_ms, void **out,
                           size_t *len, char **errmsg)
{
    Dfs__V1__Repl__NodeMark *v = calloc(n == 0 ? 1 : n, sizeof *v);
    Dfs__V1__Repl__NodeMark **p = calloc(n == 0 ? 1 : n, sizeof *p);
    if (v == NULL || p == NULL) {
        free(v);
        free(p);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = (Dfs__V1__Repl__NodeMark)DFS__V1__REPL__NODE_MARK__INIT;
        v[i].node_id = str(marks[i].node_id);
        v[i].from = (uint32_t)marks[i].from;
        v[i].to = (uint32_t)marks[i].to;
        v[i].last_seen_ms = marks[i].last_seen_ms;
        p[i] = &v[i];
    }
    Dfs__V1__Repl__NodesMark m = DFS__V1__REPL__NODES_MARK__INIT;
    m.n_marks = n;
    m.marks = p;
    Command c = DFS__V1__REPL__COMMAND__INIT;
    c.version = 2; /* a version-1 replica cannot apply it: it stops with "upgrade" */
    c.op_case = DFS__V1__REPL__COMMAND__OP_NODES_MARK;
    c.nodes_mark = &m;
    int rc = pack(&c, now_ms, out, len, errmsg);
    free(p);
    free(v);
    return rc;
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

/* Set op `field` of a fresh Command to m and pack it. */
#define PACK_OP(CASE, field, m)                    \
    Command c = DFS__V1__REPL__COMMAND__INIT;      \
    c.op_case = DFS__V1__REPL__COMMAND__OP_##CASE; \
    c.field = (m)

int dfs_command_file_commit_meta(const char *file_id, const uint8_t sha256[DFS_SHA256_LEN],
                                 const struct dfs_commit_fragment *fragments, size_t nfragments,
                                 const struct dfs_file_meta *meta, int64_t now_ms, void **out,
                                 size_t *len, char **errmsg)
{
    if (meta == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "a commit command with metadata needs it");
    return commit_command(file_id, sha256, fragments, nfragments, meta, now_ms, out, len, errmsg);
}

int dfs_command_file_stitch(const struct dfs_stitch_req *req, int64_t now_ms, void **out,
                            size_t *len, char **errmsg)
{
    if (req == NULL || req->nparts > DFS_CATALOG_STITCH_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "a stitch command needs at most %d parts",
                          DFS_CATALOG_STITCH_MAX);
    Dfs__V1__Repl__FileStitch m = DFS__V1__REPL__FILE_STITCH__INIT;
    m.path = str(req->path);
    m.file_id = str(req->file_id);
    m.n_parts = req->nparts;
    m.parts = (char **)req->parts;
    if (req->meta != NULL) {
        m.has_meta = true;
        if (req->meta->md5 != NULL)
            m.md5 = bin(req->meta->md5, DFS_CATALOG_MD5_LEN);
        m.meta = bin(req->meta->meta, req->meta->meta_len);
        m.if_absent = req->meta->if_absent;
        m.if_file_id = str(req->meta->if_file_id);
    }
    PACK_OP(FILE_STITCH, file_stitch, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_node_enroll(const char *node_id, const char *token_id, const uint8_t token_hash[32],
                            const char *address, const char *zone,
                            const struct dfs_node_usage *usage, int64_t now_ms,
                            uint64_t registration, void **out, size_t *len, char **errmsg)
{
    if (token_hash == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "an enrollment needs its token hash");
    Dfs__V1__Repl__Usage u = usage_msg(usage);
    Dfs__V1__Repl__NodeEnroll m = DFS__V1__REPL__NODE_ENROLL__INIT;
    m.node_id = str(node_id);
    m.token_id = str(token_id);
    m.token_hash = bin(token_hash, 32);
    m.address = str(address);
    m.zone = str(zone);
    m.usage = &u;
    m.registration = registration;
    PACK_OP(NODE_ENROLL, node_enroll, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_nodes_finish_drains(int64_t now_ms, void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__NodesFinishDrains m = DFS__V1__REPL__NODES_FINISH_DRAINS__INIT;
    PACK_OP(NODES_FINISH_DRAINS, nodes_finish_drains, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_placement_save(const struct dfs_placement_state *st, int64_t now_ms, void **out,
                               size_t *len, char **errmsg)
{
    if (st == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "no placement state");
    Dfs__V1__Repl__PlacementSave m = DFS__V1__REPL__PLACEMENT_SAVE__INIT;
    m.policy = (uint32_t)st->policy;
    m.width = st->width;
    m.param = st->param;
    m.nperms = st->nperms;
    Dfs__V1__Repl__PlacementSave__Set *sets = calloc(st->nsets ? st->nsets : 1, sizeof *sets);
    Dfs__V1__Repl__PlacementSave__Set **sp = calloc(st->nsets ? st->nsets : 1, sizeof *sp);
    if (sets == NULL || sp == NULL) {
        free(sets);
        free(sp);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < st->nsets; i++) {
        dfs__v1__repl__placement_save__set__init(&sets[i]);
        sets[i].perm = st->sets[i].perm;
        sets[i].n_node_ids = st->sets[i].nnodes;
        sets[i].node_ids = st->sets[i].node_ids;
        sp[i] = &sets[i];
    }
    m.n_sets = st->nsets;
    m.sets = sp;
    PACK_OP(PLACEMENT_SAVE, placement_save, &m);
    int rc = pack(&c, now_ms, out, len, errmsg);
    free(sets);
    free(sp);
    return rc;
}

int dfs_command_repair_plan(const char *after, size_t limit, int64_t now_ms, void **out,
                            size_t *len, char **errmsg)
{
    Dfs__V1__Repl__RepairPlan m = DFS__V1__REPL__REPAIR_PLAN__INIT;
    m.after = str(after);
    m.limit = limit;
    PACK_OP(REPAIR_PLAN, repair_plan, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_repair_queue(const char *fragment_id, enum dfs_repair_reason reason,
                             const char *from_node, const char *target, int64_t now_ms, void **out,
                             size_t *len, char **errmsg)
{
    Dfs__V1__Repl__RepairQueue m = DFS__V1__REPL__REPAIR_QUEUE__INIT;
    m.fragment_id = str(fragment_id);
    m.reason = (uint32_t)reason;
    m.from_node = str(from_node);
    m.target = str(target);
    PACK_OP(REPAIR_QUEUE, repair_queue, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_repair_next(int64_t now_ms, void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__RepairNext m = DFS__V1__REPL__REPAIR_NEXT__INIT;
    PACK_OP(REPAIR_NEXT, repair_next, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_repair_start(const char *fragment_id, const char *target, int64_t now_ms,
                             void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__RepairStart m = DFS__V1__REPL__REPAIR_START__INIT;
    m.fragment_id = str(fragment_id);
    m.target = str(target);
    PACK_OP(REPAIR_START, repair_start, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_repair_complete(const char *fragment_id, const char *target, uint64_t size,
                                uint32_t checksum, int64_t now_ms, void **out, size_t *len,
                                char **errmsg)
{
    Dfs__V1__Repl__RepairComplete m = DFS__V1__REPL__REPAIR_COMPLETE__INIT;
    m.fragment_id = str(fragment_id);
    m.target = str(target);
    m.size = size;
    m.checksum = checksum;
    PACK_OP(REPAIR_COMPLETE, repair_complete, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_repair_fail(const char *fragment_id, const char *target, int64_t retry_at_ms,
                            int64_t now_ms, void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__RepairFail m = DFS__V1__REPL__REPAIR_FAIL__INIT;
    m.fragment_id = str(fragment_id);
    m.target = str(target);
    m.retry_at_ms = retry_at_ms;
    PACK_OP(REPAIR_FAIL, repair_fail, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_deletions_fetch(int64_t now_ms, int64_t grace_ms, size_t max, void **out,
                                size_t *len, char **errmsg)
{
    Dfs__V1__Repl__DeletionsFetch m = DFS__V1__REPL__DELETIONS_FETCH__INIT;
    m.grace_ms = grace_ms;
    m.max = max;
    PACK_OP(DELETIONS_FETCH, deletions_fetch, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_deletion_done(const char *fragment_id, const char *node_id, int64_t now_ms,
                              void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__DeletionDone m = DFS__V1__REPL__DELETION_DONE__INIT;
    m.fragment_id = str(fragment_id);
    m.node_id = str(node_id);
    PACK_OP(DELETION_DONE, deletion_done, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_deletion_postpone(const char *fragment_id, const char *node_id, int64_t until_ms,
                                  int64_t now_ms, void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__DeletionPostpone m = DFS__V1__REPL__DELETION_POSTPONE__INIT;
    m.fragment_id = str(fragment_id);
    m.node_id = str(node_id);
    m.until_ms = until_ms;
    PACK_OP(DELETION_POSTPONE, deletion_postpone, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_report_fragment(const char *node_id, const char *fragment_id, bool missing,
                                int64_t now_ms, void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__ReportFragment m = DFS__V1__REPL__REPORT_FRAGMENT__INIT;
    m.node_id = str(node_id);
    m.fragment_id = str(fragment_id);
    m.missing = missing;
    PACK_OP(REPORT_FRAGMENT, report_fragment, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_inventory_page(const char *node_id, uint32_t page, const char *const *ids, size_t n,
                               int64_t now_ms, void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__InventoryPage m = DFS__V1__REPL__INVENTORY_PAGE__INIT;
    m.node_id = str(node_id);
    m.page = page;
    m.n_fragment_ids = n;
    m.fragment_ids = (char **)ids;
    PACK_OP(INVENTORY_PAGE, inventory_page, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_inventory_finish(const char *node_id, int64_t now_ms, void **out, size_t *len,
                                 char **errmsg)
{
    Dfs__V1__Repl__InventoryFinish m = DFS__V1__REPL__INVENTORY_FINISH__INIT;
    m.node_id = str(node_id);
    PACK_OP(INVENTORY_FINISH, inventory_finish, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_bucket_create(const char *name, const char *token_id, int64_t now_ms, void **out,
                              size_t *len, char **errmsg)
{
    Dfs__V1__Repl__BucketCreate m = DFS__V1__REPL__BUCKET_CREATE__INIT;
    m.name = str(name);
    m.token_id = str(token_id);
    PACK_OP(BUCKET_CREATE, bucket_create, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_bucket_delete(const char *name, int64_t now_ms, void **out, size_t *len,
                              char **errmsg)
{
    Dfs__V1__Repl__BucketDelete m = DFS__V1__REPL__BUCKET_DELETE__INIT;
    m.name = str(name);
    PACK_OP(BUCKET_DELETE, bucket_delete, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_attrs_set(const char *path, const struct dfs_path_attrs *a, int64_t now_ms,
                          void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__AttrsSet m = DFS__V1__REPL__ATTRS_SET__INIT;
    m.path = str(path);
    m.remove = a == NULL;
    if (a != NULL) {
        m.is_dir = a->is_dir;
        m.has_mode = a->has_mode;
        m.has_owner = a->has_owner;
        m.has_mtime = a->has_mtime;
        m.mode = a->mode;
        m.uid = a->uid;
        m.gid = a->gid;
        m.mtime_ms = a->mtime_ms;
    }
    PACK_OP(ATTRS_SET, attrs_set, &m);
    return pack(&c, now_ms, out, len, errmsg);
}

int dfs_command_token_touch(const char *id, int64_t now_ms, void **out, size_t *len, char **errmsg)
{
    Dfs__V1__Repl__TokenTouch m = DFS__V1__REPL__TOKEN_TOUCH__INIT;
    m.id = str(id);
    PACK_OP(TOKEN_TOUCH, token_touch, &m);
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
                        void *const *o, char **vmsg)
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
    int rc = dfs_catalog_file_create(cat, &req, now_ms, o[0] ? o[0] : &f, vmsg);
    dfs_catalog_file_rec_free(f);
    return rc;
}

static int apply_commit(dfs_catalog *cat, const Dfs__V1__Repl__FileCommit *m, int64_t now_ms,
                        void *const *o, char **vmsg)
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
    int rc;
    if (m->has_meta) {
        if (m->md5.len != 0 && m->md5.len != DFS_CATALOG_MD5_LEN)
            return dfs_seterr(vmsg, DFS_EINVAL, "malformed commit command (md5)");
        struct dfs_file_meta meta = {
            .md5 = m->md5.len != 0 ? m->md5.data : NULL,
            .meta = m->meta.data,
            .meta_len = m->meta.len,
            .if_absent = m->if_absent,
            .if_file_id = m->if_file_id,
        };
        rc = dfs_catalog_file_commit_meta(cat, m->file_id, m->sha256.data, fr, m->n_fragments,
                                          &meta, now_ms, o[0] ? o[0] : &f, vmsg);
    } else {
        rc = dfs_catalog_file_commit(cat, m->file_id, m->sha256.data, fr, m->n_fragments, now_ms,
                                     o[0] ? o[0] : &f, vmsg);
    }
    dfs_catalog_file_rec_free(f);
    return rc;
}

static int apply_stitch(dfs_catalog *cat, const Dfs__V1__Repl__FileStitch *m, int64_t now_ms,
                        void *const *o, char **vmsg)
{
    if (m->has_meta && m->md5.len != 0 && m->md5.len != DFS_CATALOG_MD5_LEN)
        return dfs_seterr(vmsg, DFS_EINVAL, "malformed stitch command (md5)");
    struct dfs_file_meta meta = {
        .md5 = m->md5.len != 0 ? m->md5.data : NULL,
        .meta = m->meta.data,
        .meta_len = m->meta.len,
        .if_absent = m->if_absent,
        .if_file_id = m->if_file_id,
    };
    struct dfs_stitch_req req = {.path = m->path,
                                 .file_id = m->file_id,
                                 .parts = (const char *const *)m->parts,
                                 .nparts = m->n_parts,
                                 .meta = m->has_meta ? &meta : NULL};
    struct dfs_file_rec *f = NULL;
    int rc = dfs_catalog_file_stitch(cat, &req, now_ms, o[0] ? o[0] : &f, vmsg);
    dfs_catalog_file_rec_free(f);
    return rc;
}

static int apply_placement(dfs_catalog *cat, const Dfs__V1__Repl__PlacementSave *m, int64_t now_ms,
                           char **vmsg)
{
    struct dfs_placement_set *sets = calloc(m->n_sets ? m->n_sets : 1, sizeof *sets);
    if (sets == NULL)
        return dfs_seterr(vmsg, DFS_ENOMEM, "out of memory");
    for (size_t i = 0; i < m->n_sets; i++)
        sets[i] = (struct dfs_placement_set){.perm = m->sets[i]->perm,
                                             .node_ids = m->sets[i]->node_ids,
                                             .nnodes = m->sets[i]->n_node_ids};
    struct dfs_placement_state st = {.policy = (enum dfs_policy)m->policy,
                                     .width = m->width,
                                     .param = m->param,
                                     .nperms = m->nperms,
                                     .sets = sets,
                                     .nsets = m->n_sets};
    int rc = dfs_catalog_placement_save(cat, &st, now_ms, vmsg);
    free(sets);
    return rc;
}

/* Ops added with the S3, mount, repair and report writes (apply_one's second half). */
static int apply_mark(dfs_catalog *cat, const Dfs__V1__Repl__NodesMark *m, int64_t now_ms,
                      void *const *o, char **vmsg)
{
    struct dfs_node_mark *v = calloc(m->n_marks == 0 ? 1 : m->n_marks, sizeof *v);
    if (v == NULL)
        return dfs_seterr(vmsg, DFS_ENOMEM, "out of memory");
    int rc = DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < m->n_marks; i++) {
        const Dfs__V1__Repl__NodeMark *k = m->marks[i];
        size_t idlen = strlen(k->node_id);
        if (idlen > DFS_ID_HEX) {
            rc = dfs_seterr(vmsg, DFS_EINVAL, "malformed node mark");
            break;
        }
        memcpy(v[i].node_id, k->node_id, idlen + 1);
        v[i].from = (enum dfs_node_state)k->from;
        v[i].to = (enum dfs_node_state)k->to;
        v[i].last_seen_ms = k->last_seen_ms;
    }
    if (rc == DFS_OK)
        rc = dfs_catalog_nodes_mark(cat, v, m->n_marks, now_ms, o[0], o[1], vmsg);
    free(v);
    return rc;
}

static int apply_more(dfs_catalog *cat, const Command *c, void *const *o, char **vmsg)
{
    int64_t now = c->now_ms;
    switch (c->op_case) {
    case DFS__V1__REPL__COMMAND__OP_NODE_ENROLL: {
        const Dfs__V1__Repl__NodeEnroll *m = c->node_enroll;
        if (m->token_hash.len != 32)
            return dfs_seterr(vmsg, DFS_EINVAL, "malformed enrollment command");
        struct dfs_node_usage u = usage_of(m->usage);
        return dfs_catalog_node_enroll(cat, m->node_id, m->token_id, m->token_hash.data, m->address,
                                       m->zone, &u, now, m->registration, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_NODES_FINISH_DRAINS:
        return dfs_catalog_nodes_finish_drains(cat, o[0], vmsg);
    case DFS__V1__REPL__COMMAND__OP_PLACEMENT_SAVE:
        return apply_placement(cat, c->placement_save, now, vmsg);
    case DFS__V1__REPL__COMMAND__OP_REPAIR_PLAN: {
        struct dfs_plan_result r;
        return dfs_catalog_repair_plan(cat, c->repair_plan->after, (size_t)c->repair_plan->limit,
                                       now, o[0] ? o[0] : &r, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_REPAIR_QUEUE: {
        const Dfs__V1__Repl__RepairQueue *m = c->repair_queue;
        bool queued = false;
        return dfs_catalog_repair_queue(cat, m->fragment_id, (enum dfs_repair_reason)m->reason,
                                        m->from_node, m->target, now, o[0] ? o[0] : &queued, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_REPAIR_NEXT: {
        if (o[0] != NULL && o[1] != NULL)
            return dfs_catalog_repair_next(cat, now, o[0], o[1], vmsg);
        struct dfs_repair_task t;
        bool found = false;
        int rc = dfs_catalog_repair_next(cat, now, &t, &found, vmsg);
        if (rc == DFS_OK && found)
            dfs_catalog_repair_task_clear(&t);
        return rc;
    }
    case DFS__V1__REPL__COMMAND__OP_REPAIR_START:
        return dfs_catalog_repair_start(cat, c->repair_start->fragment_id, c->repair_start->target,
                                        now, vmsg);
    case DFS__V1__REPL__COMMAND__OP_REPAIR_COMPLETE: {
        const Dfs__V1__Repl__RepairComplete *m = c->repair_complete;
        return dfs_catalog_repair_complete(cat, m->fragment_id, m->target, m->size, m->checksum,
                                           now, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_REPAIR_FAIL: {
        const Dfs__V1__Repl__RepairFail *m = c->repair_fail;
        uint32_t attempts = 0;
        return dfs_catalog_repair_fail(cat, m->fragment_id, m->target[0] ? m->target : NULL,
                                       m->retry_at_ms, o[0] ? o[0] : &attempts, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_DELETIONS_FETCH: {
        if (o[0] != NULL && o[1] != NULL)
            return dfs_catalog_deletions_fetch(cat, now, c->deletions_fetch->grace_ms,
                                               (size_t)c->deletions_fetch->max, o[0], o[1], vmsg);
        struct dfs_deletion_rec *items = NULL;
        size_t n = 0;
        int rc = dfs_catalog_deletions_fetch(cat, now, c->deletions_fetch->grace_ms,
                                             (size_t)c->deletions_fetch->max, &items, &n, vmsg);
        free(items);
        return rc;
    }
    case DFS__V1__REPL__COMMAND__OP_DELETION_DONE:
        return dfs_catalog_deletion_done(cat, c->deletion_done->fragment_id,
                                         c->deletion_done->node_id, vmsg);
    case DFS__V1__REPL__COMMAND__OP_DELETION_POSTPONE: {
        const Dfs__V1__Repl__DeletionPostpone *m = c->deletion_postpone;
        return dfs_catalog_deletion_postpone(cat, m->fragment_id, m->node_id, m->until_ms, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_REPORT_FRAGMENT: {
        const Dfs__V1__Repl__ReportFragment *m = c->report_fragment;
        bool marked = false;
        return m->missing ? dfs_catalog_report_missing(cat, m->node_id, m->fragment_id, now,
                                                       o[0] ? o[0] : &marked, vmsg)
                          : dfs_catalog_report_corrupt(cat, m->node_id, m->fragment_id, now,
                                                       o[0] ? o[0] : &marked, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_INVENTORY_PAGE: {
        const Dfs__V1__Repl__InventoryPage *m = c->inventory_page;
        return dfs_catalog_inventory_page(cat, m->node_id, m->page,
                                          (const char *const *)m->fragment_ids, m->n_fragment_ids,
                                          now, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_INVENTORY_FINISH: {
        size_t unknown = 0;
        return dfs_catalog_inventory_finish(cat, c->inventory_finish->node_id, now,
                                            o[0] ? o[0] : &unknown, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_BUCKET_CREATE:
        return dfs_catalog_bucket_create(cat, c->bucket_create->name, c->bucket_create->token_id,
                                         now, vmsg);
    case DFS__V1__REPL__COMMAND__OP_BUCKET_DELETE:
        return dfs_catalog_bucket_delete(cat, c->bucket_delete->name, vmsg);
    case DFS__V1__REPL__COMMAND__OP_ATTRS_SET: {
        const Dfs__V1__Repl__AttrsSet *m = c->attrs_set;
        if (m->remove)
            return dfs_catalog_attrs_remove(cat, m->path, vmsg);
        struct dfs_path_attrs a = {.is_dir = m->is_dir,
                                   .has_mode = m->has_mode,
                                   .has_owner = m->has_owner,
                                   .has_mtime = m->has_mtime,
                                   .mode = m->mode,
                                   .uid = m->uid,
                                   .gid = m->gid,
                                   .mtime_ms = m->mtime_ms};
        return dfs_catalog_attrs_set(cat, m->path, &a, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_TOKEN_TOUCH:
        return dfs_catalog_token_touch(cat, c->token_touch->id, now, vmsg);
    case DFS__V1__REPL__COMMAND__OP_NODES_MARK:
        return apply_mark(cat, c->nodes_mark, now, o, vmsg);
    default:
        break;
    }
    /* Unknown to this version: applying it as a no-op would diverge from newer replicas. */
    return dfs_seterr(vmsg, DFS_EINTERNAL, "unknown command op %d", (int)c->op_case);
}

/* One decoded command; its verdict. */
static int apply_one(dfs_catalog *cat, const Command *c, void *const *o, char **vmsg)
{
    int64_t now = c->now_ms;
    switch (c->op_case) {
    case DFS__V1__REPL__COMMAND__OP_FILE_CREATE:
        return apply_create(cat, c->file_create, now, o, vmsg);
    case DFS__V1__REPL__COMMAND__OP_FILE_REPLACE_TARGET: {
        const Dfs__V1__Repl__FileReplaceTarget *m = c->file_replace_target;
        struct dfs_replica_rec r;
        return dfs_catalog_file_replace_target(cat, m->file_id, m->index, m->failed_node_id,
                                               m->new_node_id, now, o[0] ? o[0] : &r, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_FILE_COMMIT:
        return apply_commit(cat, c->file_commit, now, o, vmsg);
    case DFS__V1__REPL__COMMAND__OP_FILE_ABORT:
        return dfs_catalog_file_abort(cat, c->file_abort->file_id, now, vmsg);
    case DFS__V1__REPL__COMMAND__OP_FILE_DELETE: {
        struct dfs_file_rec *f = NULL;
        int rc = dfs_catalog_file_delete(cat, c->file_delete->path, now, o[0] ? o[0] : &f, vmsg);
        dfs_catalog_file_rec_free(f);
        return rc;
    }
    case DFS__V1__REPL__COMMAND__OP_FILE_RENAME: {
        const Dfs__V1__Repl__FileRename *m = c->file_rename;
        return dfs_catalog_file_rename(cat, m->from, m->to, m->replace, now, o[0], vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_FILES_EXPIRE:
        return dfs_catalog_files_expire(cat, now, o[0], vmsg);
    case DFS__V1__REPL__COMMAND__OP_FILE_STITCH:
        return apply_stitch(cat, c->file_stitch, now, o, vmsg);
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
        /* An unknown node is a result (*known false), not a refusal, as for a direct call. */
        return dfs_catalog_node_heartbeat(cat, m->node_id, m->registration, &u, now,
                                          o[0] ? o[0] : &known, vmsg);
    }
    case DFS__V1__REPL__COMMAND__OP_NODE_SET_STATE:
        return dfs_catalog_node_set_state(cat, c->node_set_state->node_id,
                                          (enum dfs_node_state)c->node_set_state->state, vmsg);
    case DFS__V1__REPL__COMMAND__OP_NODES_SWEEP:
        return dfs_catalog_nodes_sweep(cat, now, c->nodes_sweep->suspect_after_ms,
                                       c->nodes_sweep->dead_after_ms, o[0], o[1], vmsg);
    case DFS__V1__REPL__COMMAND__OP_REPAIRS_RECOVER:
        return dfs_catalog_repairs_recover(cat, now, o[0], vmsg);
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
        return dfs_catalog_secret_set(cat, m->name, m->value.data, m->value.len, now,
                                      o[0] ? o[0] : stored, vmsg);
    }
    default:
        break;
    }
    return apply_more(cat, c, o, vmsg);
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
            /* This replica's own caller, waiting for this command: its out-parameters. */
            static void *const none[3] = {NULL, NULL, NULL};
            struct catalog_call *call = catalog_call_find(cat, c->origin);
            int v = apply_one(cat, c, call != NULL ? call->out : none, &vmsg);
            catalog_call_done(cat, call);
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
