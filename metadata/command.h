/* Replicated catalog commands: one dfs.v1.repl.Command per catalog write, built and applied. */
#ifndef DFS_METADATA_COMMAND_H
#define DFS_METADATA_COMMAND_H

#include "metadata/catalog.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A replicated metadata service (services/metadata/REPLICATION.md) changes its catalog only by
 * proposing commands to the Raft log; every replica applies the committed ones, in log order, to
 * its own catalog. This module is both ends:
 *
 *   - the builders below turn the arguments of one catalog write verb into an encoded Command
 *     (protos/dfs/v1/replication.proto). They take exactly what the verb takes: the caller (the
 *     leader) has fixed the time (now_ms), the file id, secrets and placement beforehand;
 *   - dfs_command_apply_entry applies the commands of one committed log entry to a catalog in
 *     one transaction that records the entry's index (dfs_catalog_apply_begin/_end).
 *
 * Deterministic verdicts. A command the catalog refuses (DFS_EEXIST, DFS_ENOTFOUND, DFS_EABORTED,
 * DFS_EINVAL, ...) is refused the same way on every replica, because its inputs are all in the
 * command and the catalogs hold the same state: such a verdict is the command's result and the
 * entry still commits. A failure that depends on the replica (DFS_EIO, DFS_ENOSPC, DFS_EUNAVAIL,
 * DFS_ENOMEM, DFS_EINTERNAL), a command that does not decode, or one of a newer version makes
 * the whole entry fail with nothing applied: the replica must stop rather than diverge.
 *
 * Builders return DFS_OK with *out (malloc'd, caller frees) and *len, or DFS_EINVAL / DFS_ENOMEM
 * with *errmsg. They do not validate beyond what the encoding needs: apply does, as the verb.
 */

/* The newest command format this code applies. It writes version 1, which every replica applies,
   except for the commands a version-1 replica cannot apply (nodes_mark: 2), at which such a
   replica stops ("upgrade dfs-metadata") rather than diverge. */
#define DFS_COMMAND_VERSION 2

int dfs_command_file_create(const struct dfs_create_req *req, int64_t now_ms, void **out,
                            size_t *len, char **errmsg);
int dfs_command_file_replace_target(const char *file_id, uint32_t index, const char *failed_node_id,
                                    const char *new_node_id, int64_t now_ms, void **out,
                                    size_t *len, char **errmsg);
int dfs_command_file_commit(const char *file_id, const uint8_t sha256[DFS_SHA256_LEN],
                            const struct dfs_commit_fragment *fragments, size_t nfragments,
                            int64_t now_ms, void **out, size_t *len, char **errmsg);
int dfs_command_file_abort(const char *file_id, int64_t now_ms, void **out, size_t *len,
                           char **errmsg);
int dfs_command_file_delete(const char *path, int64_t now_ms, void **out, size_t *len,
                            char **errmsg);
int dfs_command_file_rename(const char *from, const char *to, bool replace, int64_t now_ms,
                            void **out, size_t *len, char **errmsg);
int dfs_command_files_expire(int64_t now_ms, void **out, size_t *len, char **errmsg);
int dfs_command_node_register(const char *node_id, const char *address, const char *zone,
                              const struct dfs_node_usage *usage, int64_t now_ms, uint64_t expect,
                              uint64_t registration, void **out, size_t *len, char **errmsg);
int dfs_command_node_heartbeat(const char *node_id, uint64_t registration,
                               const struct dfs_node_usage *usage, int64_t now_ms, void **out,
                               size_t *len, char **errmsg);
int dfs_command_node_set_state(const char *node_id, enum dfs_node_state state, int64_t now_ms,
                               void **out, size_t *len, char **errmsg);
int dfs_command_nodes_sweep(int64_t now_ms, int64_t suspect_after_ms, int64_t dead_after_ms,
                            void **out, size_t *len, char **errmsg);
int dfs_command_nodes_mark(const struct dfs_node_mark *marks, size_t n, int64_t now_ms, void **out,
                           size_t *len, char **errmsg);
int dfs_command_repairs_recover(int64_t now_ms, void **out, size_t *len, char **errmsg);
int dfs_command_token_add(const struct dfs_token_rec *rec, const uint8_t hash[32], int64_t now_ms,
                          void **out, size_t *len, char **errmsg);
int dfs_command_token_revoke(const char *id, int64_t now_ms, void **out, size_t *len,
                             char **errmsg);
int dfs_command_secret_set(const char *name, const uint8_t *value, size_t vlen, int64_t now_ms,
                           void **out, size_t *len, char **errmsg);

/* dfs_catalog_file_stitch (req non-NULL). */
int dfs_command_file_stitch(const struct dfs_stitch_req *req, int64_t now_ms, void **out,
                            size_t *len, char **errmsg);
/* dfs_catalog_file_commit_meta: file_commit with S3's metadata and conditions (meta non-NULL). */
int dfs_command_file_commit_meta(const char *file_id, const uint8_t sha256[DFS_SHA256_LEN],
                                 const struct dfs_commit_fragment *fragments, size_t nfragments,
                                 const struct dfs_file_meta *meta, int64_t now_ms, void **out,
                                 size_t *len, char **errmsg);
int dfs_command_node_enroll(const char *node_id, const char *token_id, const uint8_t token_hash[32],
                            const char *address, const char *zone,
                            const struct dfs_node_usage *usage, int64_t now_ms,
                            uint64_t registration, void **out, size_t *len, char **errmsg);
int dfs_command_nodes_finish_drains(int64_t now_ms, void **out, size_t *len, char **errmsg);
int dfs_command_placement_save(const struct dfs_placement_state *st, int64_t now_ms, void **out,
                               size_t *len, char **errmsg);
int dfs_command_repair_plan(const char *after, size_t limit, int64_t now_ms, void **out,
                            size_t *len, char **errmsg);
int dfs_command_repair_queue(const char *fragment_id, enum dfs_repair_reason reason,
                             const char *from_node, const char *target, int64_t now_ms, void **out,
                             size_t *len, char **errmsg);
int dfs_command_repair_next(int64_t now_ms, void **out, size_t *len, char **errmsg);
int dfs_command_repair_start(const char *fragment_id, const char *target, int64_t now_ms,
                             void **out, size_t *len, char **errmsg);
int dfs_command_repair_complete(const char *fragment_id, const char *target, uint64_t size,
                                uint32_t checksum, int64_t now_ms, void **out, size_t *len,
                                char **errmsg);
int dfs_command_repair_fail(const char *fragment_id, const char *target, int64_t retry_at_ms,
                            int64_t now_ms, void **out, size_t *len, char **errmsg);
int dfs_command_deletions_fetch(int64_t now_ms, int64_t grace_ms, size_t max, void **out,
                                size_t *len, char **errmsg);
int dfs_command_deletion_done(const char *fragment_id, const char *node_id, int64_t now_ms,
                              void **out, size_t *len, char **errmsg);
int dfs_command_deletion_postpone(const char *fragment_id, const char *node_id, int64_t until_ms,
                                  int64_t now_ms, void **out, size_t *len, char **errmsg);
/* dfs_catalog_report_missing (missing) or dfs_catalog_report_corrupt. */
int dfs_command_report_fragment(const char *node_id, const char *fragment_id, bool missing,
                                int64_t now_ms, void **out, size_t *len, char **errmsg);
int dfs_command_inventory_page(const char *node_id, uint32_t page, const char *const *ids, size_t n,
                               int64_t now_ms, void **out, size_t *len, char **errmsg);
int dfs_command_inventory_finish(const char *node_id, int64_t now_ms, void **out, size_t *len,
                                 char **errmsg);
int dfs_command_bucket_create(const char *name, const char *token_id, int64_t now_ms, void **out,
                              size_t *len, char **errmsg);
int dfs_command_bucket_delete(const char *name, int64_t now_ms, void **out, size_t *len,
                              char **errmsg);
/* dfs_catalog_attrs_set (a non-NULL), or dfs_catalog_attrs_remove (a NULL). */
int dfs_command_attrs_set(const char *path, const struct dfs_path_attrs *a, int64_t now_ms,
                          void **out, size_t *len, char **errmsg);
int dfs_command_token_touch(const char *id, int64_t now_ms, void **out, size_t *len, char **errmsg);

/* One encoded command of a log entry (borrowed). */
struct dfs_command_buf {
    const void *data;
    size_t len;
};

/* What applying one command said: status DFS_OK or the catalog's DFS_E* verdict, with its
   message (malloc'd, NULL when status is DFS_OK; freed by the caller). */
struct dfs_command_verdict {
    int status;
    char *message;
};

/*
 * Apply the n commands of committed log entry `index` to cat, in order, in one transaction that
 * also records index as the catalog's applied index; verdicts[0..n) (caller storage) receive each
 * command's verdict. Returns DFS_OK when the transaction committed (whatever the verdicts), or a
 * DFS_E* code with *errmsg when nothing was applied (see Deterministic verdicts above); the
 * verdicts are then all cleared. Entries at or below the catalog's applied index must not be
 * given (the replication engine guarantees it).
 */
int dfs_command_apply_entry(dfs_catalog *cat, uint64_t index, const struct dfs_command_buf *cmds,
                            size_t n, struct dfs_command_verdict *verdicts, char **errmsg);

/* Free the messages of n verdicts and clear them. */
void dfs_command_verdicts_clear(struct dfs_command_verdict *verdicts, size_t n);

#endif /* DFS_METADATA_COMMAND_H */
