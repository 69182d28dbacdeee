/* Tests of the Metadata service through real gRPC calls to an in-process server. */
#include "common/receipt.h"
#include "common/ticket.h"
#include "common/token.h"
#include "services/metadata/metadata_service.h"
#include "services/rpc/ticket_pb.h"

#include "common/err.h"
#include "common/log.h"
#include "dfs/v1/metadata.pb-c.h"
#include "services/rpc/client.h"
#include "services/rpc/server.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define MAXNODES 16

/* A registered node as the service knows it: its own token and its current registration. */
struct test_node {
    char token[DFS_TOKEN_LEN + 1];
    uint64_t registration;
};

struct fx {
    char dir[512];
    char db[600];
    dfs_catalog *cat;
    dfs_metadata_service *svc;
    dfs_rpc_server *srv;
    dfs_rpc_channel *ch; /* an admin's */
    struct test_node nodes[MAXNODES];
};

/* A channel to the service that presents a fresh token of this role (tokens are per test). */
static dfs_rpc_channel *channel_as(dfs_metadata_service *svc, const char *addr,
                                   enum dfs_token_role role)
{
    char token[DFS_TOKEN_LEN + 1];
    char *err = NULL;
    if (dfs_metadata_service_make_token(svc, role, "test", 0, token, NULL, &err) != DFS_OK)
        fail_msg("make token: %s", err);
    struct dfs_rpc_channel_opts o = {.token = token};
    dfs_rpc_channel *ch = NULL;
    assert_int_equal(dfs_rpc_channel_open(addr, &o, &ch, NULL), DFS_OK);
    return ch;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/mdsXXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/catalog.db", f->dir);
    assert_int_equal(dfs_catalog_open(f->db, &f->cat, NULL), DFS_OK);
    struct dfs_metadata_config cfg = {.seed = 42, .pending_timeout_ms = 60000};
    assert_int_equal(dfs_metadata_service_create(f->cat, &cfg, &f->svc, NULL), DFS_OK);
    struct dfs_rpc_server_config scfg = {
        .listen = "127.0.0.1:0", .threads = 2, .handler_threads = 4};
    assert_int_equal(dfs_rpc_server_create(&scfg, &f->srv, NULL), DFS_OK);
    assert_int_equal(dfs_metadata_service_register(f->svc, f->srv, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(f->srv, NULL), DFS_OK);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", dfs_rpc_server_port(f->srv));
    f->ch = channel_as(f->svc, addr, DFS_ROLE_ADMIN);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    dfs_rpc_channel_destroy(f->ch);
    dfs_rpc_server_stop(f->srv, 1000);
    dfs_metadata_service_destroy(f->svc);
    dfs_rpc_server_destroy(f->srv);
    dfs_catalog_close(f->cat);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int call(struct fx *f, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *desc, void *resp, char **err)
{
    char name[128];
    snprintf(name, sizeof name, "/dfs.v1.Metadata/%s", method);
    return dfs_rpc_unary(f->ch, name, req, desc, (ProtobufCMessage **)resp, 5000, err);
}

/* A call of node i (registered by register_nodes), presenting its own token. */
static int node_call(struct fx *f, int i, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *desc, void *resp, char **err)
{
    char name[128], addr[64];
    snprintf(name, sizeof name, "/dfs.v1.Metadata/%s", method);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", dfs_rpc_server_port(f->srv));
    struct dfs_rpc_channel_opts o = {.token = f->nodes[i].token};
    dfs_rpc_channel *ch = NULL;
    assert_int_equal(dfs_rpc_channel_open(addr, &o, &ch, NULL), DFS_OK);
    int rc = dfs_rpc_unary(ch, name, req, desc, (ProtobufCMessage **)resp, 5000, err);
    dfs_rpc_channel_destroy(ch);
    return rc;
}

/* RegisterNode of node i (id i + 1, address 127.0.0.1:i+1), as its own token or, with ch, an
   enrollment over ch. Returns the call's status; the registration is kept. */
static int register_node(struct fx *f, int i, dfs_rpc_channel *ch, const char *address, char **err)
{
    char id[33], addr[32];
    snprintf(id, sizeof id, "%032x", i + 1);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", 1 + i);
    Dfs__V1__RegisterNodeRequest req = DFS__V1__REGISTER_NODE_REQUEST__INIT;
    req.node_id = id;
    req.address = address != NULL ? (char *)address : addr;
    req.capacity_bytes = 1000;
    req.free_bytes = 1000;
    char tid[DFS_TOKEN_ID_HEX + 1];
    uint8_t hash[DFS_TOKEN_HASH_LEN];
    if (ch != NULL) {
        assert_int_equal(dfs_token_parse(f->nodes[i].token, tid, hash, NULL), DFS_OK);
        req.node_token_id = tid;
        req.node_token_sha256.data = hash;
        req.node_token_sha256.len = sizeof hash;
    }
    Dfs__V1__RegisterNodeResponse *resp = NULL;
    int rc = ch != NULL ? dfs_rpc_unary(ch, "/dfs.v1.Metadata/RegisterNode", &req.base,
                                        &dfs__v1__register_node_response__descriptor,
                                        (ProtobufCMessage **)&resp, 5000, err)
                        : node_call(f, i, "RegisterNode", &req.base,
                                    &dfs__v1__register_node_response__descriptor, &resp, err);
    if (rc == DFS_OK) {
        assert_int_equal(resp->heartbeat_interval_ms, 1000);
        assert_int_equal(resp->ticket_key.len, DFS_TICKET_KEY_LEN);
        assert_true(resp->registration != 0);
        f->nodes[i].registration = resp->registration;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    return rc;
}

/* Enroll nodes 0..n-1, each with a token of its own (as dfs-storage makes it). */
static void register_nodes(struct fx *f, int n)
{
    for (int i = 0; i < n; i++) {
        assert_int_equal(dfs_token_generate(f->nodes[i].token), DFS_OK);
        assert_int_equal(register_node(f, i, f->ch, NULL, NULL), DFS_OK);
    }
}

/* Node node_id's receipt for a copy (what its PutFragment answered). */
static void receipt_of(struct fx *f, const char *fragment_id, const char *node_id, uint64_t size,
                       uint32_t checksum, uint8_t out[DFS_RECEIPT_LEN])
{
    uint8_t master[DFS_TICKET_KEY_LEN], key[DFS_TICKET_KEY_LEN];
    assert_int_equal(
        dfs_catalog_secret(f->cat, "ticket_master_key", sizeof master, 1, master, NULL), DFS_OK);
    assert_int_equal(dfs_ticket_node_key(master, node_id, key, NULL), DFS_OK);
    assert_int_equal(dfs_receipt_make(key, fragment_id, node_id, size, checksum, out, NULL),
                     DFS_OK);
}

static Dfs__V1__FileInfo *create(struct fx *f, const char *path, uint64_t size, int *rc, char **err)
{
    Dfs__V1__CreateFileRequest req = DFS__V1__CREATE_FILE_REQUEST__INIT;
    req.path = (char *)path;
    req.size = size;
    Dfs__V1__CreateFileResponse *resp = NULL;
    *rc = call(f, "CreateFile", &req.base, &dfs__v1__create_file_response__descriptor, &resp, err);
    if (*rc != DFS_OK)
        return NULL;
    Dfs__V1__FileInfo *fi = resp->file;
    resp->file = NULL;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return fi;
}

/*
 * Commit with every planned replica acknowledged, each with its receipt for checksum 7, except
 * (bad_receipt) the last replica of the last fragment, whose receipt is for another checksum,
 * or (no_receipts) with no receipt at all.
 */
static int commit_with(struct fx *f, const Dfs__V1__FileInfo *fi, bool bad_receipt,
                       bool no_receipts, char **err)
{
    Dfs__V1__CommitFileRequest req = DFS__V1__COMMIT_FILE_REQUEST__INIT;
    req.file_id = fi->file_id;
    uint8_t sha[32] = {1, 2, 3};
    req.sha256.data = sha;
    req.sha256.len = 32;
    Dfs__V1__CommitFragment cf[16];
    Dfs__V1__CommitFragment *cfp[16];
    char *ids[16][16];
    uint8_t rb[16][16][DFS_RECEIPT_LEN];
    ProtobufCBinaryData receipts[16][16];
    for (size_t i = 0; i < fi->n_fragments; i++) {
        const Dfs__V1__Fragment *fr = fi->fragments[i];
        dfs__v1__commit_fragment__init(&cf[i]);
        cf[i].index = fr->index;
        cf[i].size = fr->size;
        cf[i].checksum = 7;
        for (size_t r = 0; r < fr->n_replicas; r++) {
            ids[i][r] = fr->replicas[r]->node_id;
            bool bad = bad_receipt && i + 1 == fi->n_fragments && r + 1 == fr->n_replicas;
            receipt_of(f, fr->fragment_id, ids[i][r], fr->size, bad ? 8 : 7, rb[i][r]);
            receipts[i][r].data = rb[i][r];
            receipts[i][r].len = DFS_RECEIPT_LEN;
        }
        cf[i].node_ids = ids[i];
        cf[i].n_node_ids = fr->n_replicas;
        cf[i].receipts = receipts[i];
        cf[i].n_receipts = no_receipts ? 0 : fr->n_replicas;
        cfp[i] = &cf[i];
    }
    req.fragments = cfp;
    req.n_fragments = fi->n_fragments;
    Dfs__V1__CommitFileResponse *resp = NULL;
    int rc =
        call(f, "CommitFile", &req.base, &dfs__v1__commit_file_response__descriptor, &resp, err);
    if (rc == DFS_OK)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

static int commit(struct fx *f, const Dfs__V1__FileInfo *fi, char **err)
{
    return commit_with(f, fi, false, false, err);
}

static void test_create_plans_distinct_nodes_with_defaults(void **state)
{
    struct fx *f = *state;
    register_nodes(f, 5);
    int rc;
    Dfs__V1__FileInfo *fi = create(f, "a//b", 10, &rc, NULL);
    assert_int_equal(rc, DFS_OK);
    assert_string_equal(fi->path, "/a/b");
    assert_int_equal(fi->redundancy->replicas, 3);
    assert_int_equal(fi->redundancy->fragments, 4);
    assert_int_equal(fi->state, DFS__V1__FILE_STATE__FILE_PENDING);
    assert_int_equal(fi->fragment_size, 3);
    assert_int_equal(fi->n_fragments, 4);
    uint64_t sizes[4] = {3, 3, 3, 1}, total = 0;
    for (size_t i = 0; i < 4; i++) {
        Dfs__V1__Fragment *fr = fi->fragments[i];
        assert_int_equal(fr->size, sizes[i]);
        total += fr->size;
        assert_int_equal(fr->n_replicas, 3);
        for (size_t a = 0; a < 3; a++)
            for (size_t b = a + 1; b < 3; b++)
                assert_string_not_equal(fr->replicas[a]->node_id, fr->replicas[b]->node_id);
        assert_int_equal(strncmp(fr->fragment_id, fi->file_id, 32), 0);
    }
    assert_int_equal(total, 10);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
}

static void test_too_few_nodes_is_failed_precondition(void **state)
{
    struct fx *f = *state;
    register_nodes(f, 2);
    int rc;
    char *err = NULL;
    assert_null(create(f, "/x", 10, &rc, &err));
    assert_int_equal(rc, DFS_EPRECOND);
    assert_non_null(strstr(err, "need 3 distinct live storage nodes, 2 are available"));
    free(err);
}

static void test_bad_paths_are_invalid(void **state)
{
    struct fx *f = *state;
    register_nodes(f, 3);
    const char *bad[] = {"", "/", "/a/../b", "/dir/"};
    for (size_t i = 0; i < 4; i++) {
        int rc;
        char *err = NULL;
        assert_null(create(f, bad[i], 1, &rc, &err));
        assert_int_equal(rc, DFS_EINVAL);
        free(err);
    }
    Dfs__V1__GetFileRequest g = DFS__V1__GET_FILE_REQUEST__INIT;
    g.path = "";
    Dfs__V1__GetFileResponse *gr = NULL;
    char *err = NULL;
    assert_int_equal(
        call(f, "GetFile", &g.base, &dfs__v1__get_file_response__descriptor, &gr, &err),
        DFS_EINVAL);
    assert_string_equal(err, "empty path");
    free(err);
}

/* Every request's form is checked before the catalog sees it (services/validate/validate.h),
   defaults included: a size the cluster's F=4 cuts into fragments no node stores. */
static void test_malformed_requests_are_invalid(void **state)
{
    struct fx *f = *state;
    register_nodes(f, 3);
    Dfs__V1__CreateFileRequest c = DFS__V1__CREATE_FILE_REQUEST__INIT;
    Dfs__V1__Redundancy red = DFS__V1__REDUNDANCY__INIT;
    Dfs__V1__CreateFileResponse *cr = NULL;
    char *err = NULL;
    c.path = "/big";
    c.size = 1ull << 62;
    assert_int_equal(
        call(f, "CreateFile", &c.base, &dfs__v1__create_file_response__descriptor, &cr, &err),
        DFS_EINVAL);
    assert_non_null(strstr(err, "a storage node takes at most"));
    free(err);
    err = NULL;
    c.size = 10;
    c.redundancy = &red;
    red.replicas = 1000;
    assert_int_equal(
        call(f, "CreateFile", &c.base, &dfs__v1__create_file_response__descriptor, &cr, &err),
        DFS_EINVAL);
    assert_non_null(strstr(err, "replicas must be 1..16, not 1000"));
    free(err);
    err = NULL;

    Dfs__V1__SetNodeStateRequest s = DFS__V1__SET_NODE_STATE_REQUEST__INIT;
    Dfs__V1__SetNodeStateResponse *sr = NULL;
    s.node_id = "00";
    s.state = DFS__V1__NODE_STATE__NODE_DEAD;
    assert_int_equal(
        call(f, "SetNodeState", &s.base, &dfs__v1__set_node_state_response__descriptor, &sr, &err),
        DFS_EINVAL);
    assert_non_null(strstr(err, "not NODE_DEAD"));
    free(err);
    err = NULL;

    Dfs__V1__ReportFragmentsRequest r = DFS__V1__REPORT_FRAGMENTS_REQUEST__INIT;
    Dfs__V1__ReportFragmentsResponse *rr = NULL;
    char *ids[] = {"../x"};
    r.corrupt = ids;
    r.n_corrupt = 1;
    assert_int_equal(node_call(f, 0, "ReportFragments", &r.base,
                               &dfs__v1__report_fragments_response__descriptor, &rr, &err),
                     DFS_EINVAL);
    assert_non_null(strstr(err, "corrupt[0]: invalid fragment id"));
    free(err);
}

static void test_commit_get_list_delete(void **state)
{
    struct fx *f = *state;
    register_nodes(f, 4);
    int rc;
    Dfs__V1__FileInfo *fi = create(f, "/d/one", 100, &rc, NULL);
    assert_int_equal(rc, DFS_OK);

    /* Pending: invisible. */
    Dfs__V1__GetFileRequest g = DFS__V1__GET_FILE_REQUEST__INIT;
    g.path = "/d/one";
    Dfs__V1__GetFileResponse *gr = NULL;
    assert_int_equal(
        call(f, "GetFile", &g.base, &dfs__v1__get_file_response__descriptor, &gr, NULL),
        DFS_ENOTFOUND);

    assert_int_equal(commit(f, fi, NULL), DFS_OK);
    assert_int_equal(
        call(f, "GetFile", &g.base, &dfs__v1__get_file_response__descriptor, &gr, NULL), DFS_OK);
    assert_int_equal(gr->file->size, 100);
    assert_int_equal(gr->file->sha256.len, 32);
    assert_int_equal(gr->file->n_fragments, 4);
    assert_int_equal(gr->file->fragments[0]->replicas[0]->node_state,
                     DFS__V1__NODE_STATE__NODE_ALIVE);
    protobuf_c_message_free_unpacked(&gr->base, NULL);

    /* A second put to the same path without overwrite. */
    Dfs__V1__FileInfo *again = create(f, "/d/one", 5, &rc, NULL);
    assert_null(again);
    assert_int_equal(rc, DFS_EEXIST);

    /* Listing, a page at a time. */
    for (int i = 0; i < 5; i++) {
        char p[32];
        snprintf(p, sizeof p, "/d/f%d", i);
        Dfs__V1__FileInfo *x = create(f, p, 1, &rc, NULL);
        assert_int_equal(commit(f, x, NULL), DFS_OK);
        protobuf_c_message_free_unpacked(&x->base, NULL);
    }
    Dfs__V1__ListFilesRequest l = DFS__V1__LIST_FILES_REQUEST__INIT;
    l.prefix = "/d/";
    l.page_size = 4;
    Dfs__V1__ListFilesResponse *lr = NULL;
    assert_int_equal(
        call(f, "ListFiles", &l.base, &dfs__v1__list_files_response__descriptor, &lr, NULL),
        DFS_OK);
    assert_int_equal(lr->n_files, 4);
    assert_string_equal(lr->files[0]->path, "/d/f0");
    assert_int_equal(lr->files[0]->n_fragments, 0);
    assert_string_equal(lr->next_page_token, "/d/f3");
    l.page_token = "/d/f3";
    Dfs__V1__ListFilesResponse *lr2 = NULL;
    assert_int_equal(
        call(f, "ListFiles", &l.base, &dfs__v1__list_files_response__descriptor, &lr2, NULL),
        DFS_OK);
    assert_int_equal(lr2->n_files, 2);
    assert_string_equal(lr2->files[1]->path, "/d/one");
    assert_string_equal(lr2->next_page_token, "");
    protobuf_c_message_free_unpacked(&lr->base, NULL);
    protobuf_c_message_free_unpacked(&lr2->base, NULL);

    /* Delete queues the replicas for removal from the nodes. */
    Dfs__V1__DeleteFileRequest d = DFS__V1__DELETE_FILE_REQUEST__INIT;
    d.path = "/d/one";
    Dfs__V1__DeleteFileResponse *dr = NULL;
    assert_int_equal(
        call(f, "DeleteFile", &d.base, &dfs__v1__delete_file_response__descriptor, &dr, NULL),
        DFS_OK);
    assert_string_equal(dr->file->file_id, fi->file_id);
    protobuf_c_message_free_unpacked(&dr->base, NULL);
    assert_int_equal(
        call(f, "DeleteFile", &d.base, &dfs__v1__delete_file_response__descriptor, &dr, NULL),
        DFS_ENOTFOUND);

    Dfs__V1__StatRequest s = DFS__V1__STAT_REQUEST__INIT;
    Dfs__V1__StatResponse *sr = NULL;
    assert_int_equal(call(f, "Stat", &s.base, &dfs__v1__stat_response__descriptor, &sr, NULL),
                     DFS_OK);
    assert_int_equal(sr->files, 5);
    assert_int_equal(sr->nodes_alive, 4);
    assert_int_equal(sr->pending_deletions, 12);
    assert_int_equal(sr->schema_version, DFS_CATALOG_SCHEMA_VERSION);
    protobuf_c_message_free_unpacked(&sr->base, NULL);

    /* The nodes do not exist: a maintenance round postpones the deletions, losing none. */
    dfs_metadata_service_maintain(f->svc);
    assert_int_equal(call(f, "Stat", &s.base, &dfs__v1__stat_response__descriptor, &sr, NULL),
                     DFS_OK);
    assert_int_equal(sr->pending_deletions, 12);
    protobuf_c_message_free_unpacked(&sr->base, NULL);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
}

static void test_replace_target_and_abort(void **state)
{
    struct fx *f = *state;
    register_nodes(f, 4);
    int rc;
    Dfs__V1__FileInfo *fi = create(f, "/r", 8, &rc, NULL);
    assert_int_equal(rc, DFS_OK);
    Dfs__V1__Fragment *fr = fi->fragments[2];
    Dfs__V1__ReplaceTargetRequest req = DFS__V1__REPLACE_TARGET_REQUEST__INIT;
    req.file_id = fi->file_id;
    req.fragment_index = 2;
    req.failed_node_id = fr->replicas[1]->node_id;
    Dfs__V1__ReplaceTargetResponse *resp = NULL;
    assert_int_equal(call(f, "ReplaceTarget", &req.base,
                          &dfs__v1__replace_target_response__descriptor, &resp, NULL),
                     DFS_OK);
    /* With 4 nodes, the only node not holding the fragment. */
    for (size_t r = 0; r < 3; r++)
        assert_string_not_equal(resp->replica->node_id, fr->replicas[r]->node_id);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    /* No node left for a second failure of the same fragment. */
    req.failed_node_id = fr->replicas[0]->node_id;
    char *err = NULL;
    assert_int_equal(call(f, "ReplaceTarget", &req.base,
                          &dfs__v1__replace_target_response__descriptor, &resp, &err),
                     DFS_EPRECOND);
    free(err);

    Dfs__V1__AbortFileRequest a = DFS__V1__ABORT_FILE_REQUEST__INIT;
    a.file_id = fi->file_id;
    Dfs__V1__AbortFileResponse *ar = NULL;
    assert_int_equal(
        call(f, "AbortFile", &a.base, &dfs__v1__abort_file_response__descriptor, &ar, NULL),
        DFS_OK);
    protobuf_c_message_free_unpacked(&ar->base, NULL);
    /* An aborted file cannot be committed. */
    assert_int_equal(commit(f, fi, NULL), DFS_ENOTFOUND);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
}

static void test_heartbeat_and_list_nodes(void **state)
{
    struct fx *f = *state;
    register_nodes(f, 2);
    Dfs__V1__HeartbeatRequest hb = DFS__V1__HEARTBEAT_REQUEST__INIT;
    hb.registration = f->nodes[0].registration;
    hb.used_bytes = 77;
    Dfs__V1__HeartbeatResponse *hr = NULL;
    assert_int_equal(
        node_call(f, 0, "Heartbeat", &hb.base, &dfs__v1__heartbeat_response__descriptor, &hr, NULL),
        DFS_OK);
    assert_true(hr->known);
    protobuf_c_message_free_unpacked(&hr->base, NULL);
    /* The node is the token's: node 1's registration sent with node 0's token is stale. */
    hb.registration = f->nodes[1].registration;
    char *err = NULL;
    assert_int_equal(
        node_call(f, 0, "Heartbeat", &hb.base, &dfs__v1__heartbeat_response__descriptor, &hr, &err),
        DFS_EPRECOND);
    assert_non_null(strstr(err, "replaced"));
    free(err);
    err = NULL;
    /* Nobody else heartbeats for a node, an admin included. */
    assert_int_equal(
        call(f, "Heartbeat", &hb.base, &dfs__v1__heartbeat_response__descriptor, &hr, &err),
        DFS_EPERM);
    free(err);

    Dfs__V1__ListNodesRequest l = DFS__V1__LIST_NODES_REQUEST__INIT;
    Dfs__V1__ListNodesResponse *lr = NULL;
    assert_int_equal(
        call(f, "ListNodes", &l.base, &dfs__v1__list_nodes_response__descriptor, &lr, NULL),
        DFS_OK);
    assert_int_equal(lr->n_nodes, 2);
    assert_int_equal(lr->nodes[0]->used_bytes, 77);
    assert_string_equal(lr->nodes[1]->address, "127.0.0.1:2");
    char id0[DFS_ID_HEX + 1];
    snprintf(id0, sizeof id0, "%s", lr->nodes[0]->id);
    int64_t heard_ms = lr->nodes[0]->last_heartbeat_ms;
    protobuf_c_message_free_unpacked(&lr->base, NULL);
    /* The heartbeat is the leader's soft state (catalog.h, liveness): heard, shown, not written.
       The catalog (what every replica applies) keeps the registration's figures. */
    dfs_catalog_liveness_follow(f->cat);
    struct dfs_node_rec rec;
    assert_int_equal(dfs_catalog_node_get(f->cat, id0, &rec, NULL), DFS_OK);
    assert_int_not_equal(rec.usage.used_bytes, 77);
    assert_true(rec.last_heartbeat_ms <= heard_ms);
}

/* ---- placement through the service ---------------------------------------------------------- */

/* Stop the server and the service, then start them again over the same catalog with cfg. */
static void restart_service(struct fx *f, const struct dfs_metadata_config *cfg)
{
    dfs_rpc_channel_destroy(f->ch);
    dfs_rpc_server_stop(f->srv, 1000);
    dfs_metadata_service_destroy(f->svc);
    dfs_rpc_server_destroy(f->srv);
    assert_int_equal(dfs_metadata_service_create(f->cat, cfg, &f->svc, NULL), DFS_OK);
    struct dfs_rpc_server_config scfg = {
        .listen = "127.0.0.1:0", .threads = 2, .handler_threads = 4};
    assert_int_equal(dfs_rpc_server_create(&scfg, &f->srv, NULL), DFS_OK);
    assert_int_equal(dfs_metadata_service_register(f->svc, f->srv, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(f->srv, NULL), DFS_OK);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", dfs_rpc_server_port(f->srv));
    f->ch = channel_as(f->svc, addr, DFS_ROLE_ADMIN);
}

static Dfs__V1__FileInfo *create_with(struct fx *f, const char *path, uint64_t size,
                                      Dfs__V1__Policy policy)
{
    Dfs__V1__CreateFileRequest req = DFS__V1__CREATE_FILE_REQUEST__INIT;
    req.path = (char *)path;
    req.size = size;
    req.policy = policy;
    Dfs__V1__CreateFileResponse *resp = NULL;
    char *err = NULL;
    if (call(f, "CreateFile", &req.base, &dfs__v1__create_file_response__descriptor, &resp, &err) !=
        DFS_OK)
        fail_msg("create %s: %s", path, err);
    assert_int_equal(resp->file->policy, policy);
    Dfs__V1__FileInfo *fi = resp->file;
    resp->file = NULL;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return fi;
}

/* The saved family with this name ("min_copy/3"), or fail; *all is freed by the caller. */
static const struct dfs_placement_state *saved_family(struct fx *f, enum dfs_policy policy,
                                                      uint32_t width,
                                                      struct dfs_placement_state **all, size_t *n)
{
    assert_int_equal(dfs_catalog_placement_load(f->cat, all, n, NULL), DFS_OK);
    for (size_t i = 0; i < *n; i++)
        if ((*all)[i].policy == policy && (*all)[i].width == width)
            return &(*all)[i];
    fail_msg("no saved %s family of width %u", dfs_placement_policy_name(policy), width);
    return NULL;
}

/* The index of the set of st holding every node of ids[0..n), or SIZE_MAX. */
static size_t set_holding(const struct dfs_placement_state *st, char *const *ids, size_t n)
{
    for (size_t s = 0; s < st->nsets; s++) {
        size_t found = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < st->sets[s].nnodes; j++)
                found += strcmp(ids[i], st->sets[s].node_ids[j]) == 0;
        if (found == n)
            return s;
    }
    return SIZE_MAX;
}

static char *replace_target(struct fx *f, const Dfs__V1__FileInfo *fi, uint32_t index,
                            const char *failed)
{
    Dfs__V1__ReplaceTargetRequest req = DFS__V1__REPLACE_TARGET_REQUEST__INIT;
    req.file_id = fi->file_id;
    req.fragment_index = index;
    req.failed_node_id = (char *)failed;
    Dfs__V1__ReplaceTargetResponse *resp = NULL;
    char *err = NULL;
    if (call(f, "ReplaceTarget", &req.base, &dfs__v1__replace_target_response__descriptor, &resp,
             &err) != DFS_OK)
        fail_msg("replace: %s", err);
    char *id = strdup(resp->replica->node_id);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return id;
}

/*
 * min_copy and buddy through CreateFile and ReplaceTarget, with the sets saved in the catalog and
 * loaded again by a restarted service.
 */
static void test_set_policies_saved_and_kept(void **state)
{
    struct fx *f = *state;
    register_nodes(f, 9);
    struct dfs_metadata_config cfg = {.seed = 7, .pending_timeout_ms = 60000, .group_size = 4};
    restart_service(f, &cfg);

    /* buddy, G = 4: 9 nodes make groups of 5 and 4; every fragment inside one. */
    Dfs__V1__FileInfo *b = create_with(f, "/b", 40, DFS__V1__POLICY__POLICY_BUDDY);
    struct dfs_placement_state *all = NULL;
    size_t n = 0;
    const struct dfs_placement_state *groups = saved_family(f, DFS_POLICY_BUDDY, 3, &all, &n);
    assert_int_equal(groups->nsets, 2);
    assert_int_equal(groups->param, 4);
    size_t g[4];
    for (size_t i = 0; i < 4; i++) {
        char *ids[3];
        for (size_t r = 0; r < 3; r++)
            ids[r] = b->fragments[i]->replicas[r]->node_id;
        g[i] = set_holding(groups, ids, 3);
        assert_true(g[i] != SIZE_MAX);
    }
    /* A failed target is replaced from the survivors' group. */
    char *fresh = replace_target(f, b, 1, b->fragments[1]->replicas[2]->node_id);
    char *ids[3] = {b->fragments[1]->replicas[0]->node_id, b->fragments[1]->replicas[1]->node_id,
                    fresh};
    assert_int_equal(set_holding(groups, ids, 3), g[1]);
    free(fresh);
    dfs_placement_states_free(all, n);

    /* min_copy: 3 copysets; a replacement cannot stay in one (no other copyset holds the two
       survivors with P = 1), so it falls back to any other node, and is logged. */
    Dfs__V1__FileInfo *m = create_with(f, "/m", 40, DFS__V1__POLICY__POLICY_MIN_COPY);
    const struct dfs_placement_state *sets = saved_family(f, DFS_POLICY_MIN_COPY, 3, &all, &n);
    assert_int_equal(sets->nsets, 3);
    for (size_t i = 0; i < 4; i++) {
        char *mids[3];
        for (size_t r = 0; r < 3; r++)
            mids[r] = m->fragments[i]->replicas[r]->node_id;
        assert_true(set_holding(sets, mids, 3) != SIZE_MAX);
    }
    fresh = replace_target(f, m, 0, m->fragments[0]->replicas[0]->node_id);
    for (size_t r = 0; r < 3; r++)
        assert_string_not_equal(fresh, m->fragments[0]->replicas[r]->node_id);
    free(fresh);

    /* Restarted, the service uses the saved sets: nothing is rebuilt or saved again. */
    restart_service(f, &cfg);
    Dfs__V1__FileInfo *m2 = create_with(f, "/m2", 40, DFS__V1__POLICY__POLICY_MIN_COPY);
    struct dfs_placement_state *all2 = NULL;
    size_t n2 = 0;
    const struct dfs_placement_state *sets2 = saved_family(f, DFS_POLICY_MIN_COPY, 3, &all2, &n2);
    assert_int_equal(sets2->nsets, sets->nsets);
    for (size_t s = 0; s < sets->nsets; s++)
        for (size_t j = 0; j < 3; j++)
            assert_string_equal(sets->sets[s].node_ids[j], sets2->sets[s].node_ids[j]);
    for (size_t i = 0; i < 4; i++) {
        char *mids[3];
        for (size_t r = 0; r < 3; r++)
            mids[r] = m2->fragments[i]->replicas[r]->node_id;
        assert_true(set_holding(sets, mids, 3) != SIZE_MAX);
    }
    dfs_placement_states_free(all, n);
    dfs_placement_states_free(all2, n2);
    protobuf_c_message_free_unpacked(&b->base, NULL);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    protobuf_c_message_free_unpacked(&m2->base, NULL);
}

static void heartbeat_free(struct fx *f, int i, uint64_t free_bytes)
{
    Dfs__V1__HeartbeatRequest hb = DFS__V1__HEARTBEAT_REQUEST__INIT;
    hb.registration = f->nodes[i].registration;
    hb.capacity_bytes = 100000;
    hb.free_bytes = free_bytes;
    Dfs__V1__HeartbeatResponse *hr = NULL;
    assert_int_equal(
        node_call(f, i, "Heartbeat", &hb.base, &dfs__v1__heartbeat_response__descriptor, &hr, NULL),
        DFS_OK);
    protobuf_c_message_free_unpacked(&hr->base, NULL);
}

/*
 * least_used: the most free nodes, counting what was planned onto them since their last report;
 * a new report starts the count again. Node i reports 1000 + 5 i free bytes; fragments are 10
 * bytes, so each placement moves the choice.
 */
static void test_least_used_counts_planned_bytes(void **state)
{
    struct fx *f = *state;
    register_nodes(f, 8);
    usleep(3000); /* the reports below are newer than the registrations */
    for (int i = 0; i < 8; i++)
        heartbeat_free(f, i, 1000 + 5 * (uint64_t)i);
    int64_t planned[8] = {0};
    for (int round = 0; round < 2; round++) {
        Dfs__V1__FileInfo *fi =
            create_with(f, round == 0 ? "/lu0" : "/lu1", 40, DFS__V1__POLICY__POLICY_LEAST_USED);
        for (size_t i = 0; i < 4; i++) {
            const Dfs__V1__Fragment *fr = fi->fragments[i];
            int chosen[3];
            for (size_t r = 0; r < 3; r++)
                chosen[r] = (int)strtol(fr->replicas[r]->node_id + 24, NULL, 16) - 1;
            for (int o = 0; o < 8; o++) {
                bool in = o == chosen[0] || o == chosen[1] || o == chosen[2];
                for (size_t r = 0; r < 3 && !in; r++)
                    assert_true(1000 + 5 * chosen[r] - planned[chosen[r]] >=
                                1000 + 5 * o - planned[o]);
            }
            for (size_t r = 0; r < 3; r++)
                planned[chosen[r]] += (int64_t)fr->size;
        }
        /* The first file went to the most free nodes, then spread: 7 is in fragment 0. */
        if (round == 0) {
            bool has7 = false;
            for (size_t r = 0; r < 3; r++)
                has7 |= strcmp(fi->fragments[0]->replicas[r]->node_id,
                               "00000000000000000000000000000008") == 0;
            assert_true(has7);
        }
        protobuf_c_message_free_unpacked(&fi->base, NULL);
        /* New reports with the same figures: the planned bytes are forgotten. */
        usleep(3000);
        for (int i = 0; i < 8; i++)
            heartbeat_free(f, i, 1000 + 5 * (uint64_t)i);
        memset(planned, 0, sizeof planned);
    }
}

static int list_with(dfs_rpc_channel *ch, char **err)
{
    Dfs__V1__ListFilesRequest req = DFS__V1__LIST_FILES_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    int rc = dfs_rpc_unary(ch, "/dfs.v1.Metadata/ListFiles", &req.base,
                           &dfs__v1__list_files_response__descriptor, &resp, 5000, err);
    if (resp != NULL)
        protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

/* Every call needs a token; roles bound what it may do; revoked and unknown tokens fail. */
static void test_tokens_and_roles(void **state)
{
    struct fx *f = *state;
    register_nodes(f, 3);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", dfs_rpc_server_port(f->srv));
    char *err = NULL;
    dfs_rpc_channel *anon = NULL;
    assert_int_equal(dfs_rpc_channel_create(addr, &anon, NULL), DFS_OK);
    assert_int_equal(list_with(anon, &err), DFS_EUNAUTH);
    assert_non_null(strstr(err, "no bearer token"));
    free(err);
    err = NULL;
    /* A well-formed token nobody made. */
    dfs_rpc_channel *stranger = NULL;
    struct dfs_rpc_channel_opts so = {
        .token = "dfs1.0123456789abcdef."
                 "0000000000000000000000000000000000000000000000000000000000000000"};
    assert_int_equal(dfs_rpc_channel_open(addr, &so, &stranger, NULL), DFS_OK);
    assert_int_equal(list_with(stranger, &err), DFS_EUNAUTH);
    free(err);
    err = NULL;

    dfs_rpc_channel *ro = channel_as(f->svc, addr, DFS_ROLE_READ_ONLY);
    dfs_rpc_channel *node = channel_as(f->svc, addr, DFS_ROLE_BOOTSTRAP);
    assert_int_equal(list_with(ro, NULL), DFS_OK);
    assert_int_equal(list_with(node, &err), DFS_EPERM);
    assert_non_null(strstr(err, "may not call"));
    free(err);
    err = NULL;
    Dfs__V1__CreateFileRequest creq = DFS__V1__CREATE_FILE_REQUEST__INIT;
    creq.path = "/ro";
    creq.size = 10;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(dfs_rpc_unary(ro, "/dfs.v1.Metadata/CreateFile", &creq.base,
                                   &dfs__v1__create_file_response__descriptor, &resp, 5000, &err),
                     DFS_EPERM);
    free(err);
    err = NULL;
    /* Only admins manage tokens: create one over the API, see it listed, revoke it. */
    Dfs__V1__CreateTokenRequest tq = DFS__V1__CREATE_TOKEN_REQUEST__INIT;
    tq.name = "ci";
    tq.role = DFS__V1__TOKEN_ROLE__TOKEN_READ_WRITE;
    assert_int_equal(dfs_rpc_unary(ro, "/dfs.v1.Metadata/CreateToken", &tq.base,
                                   &dfs__v1__create_token_response__descriptor, &resp, 5000, &err),
                     DFS_EPERM);
    free(err);
    err = NULL;
    Dfs__V1__CreateTokenResponse *made = NULL;
    assert_int_equal(
        call(f, "CreateToken", &tq.base, &dfs__v1__create_token_response__descriptor, &made, NULL),
        DFS_OK);
    assert_int_equal(strlen(made->token), DFS_TOKEN_LEN);
    assert_string_equal(made->info->name, "ci");
    struct dfs_rpc_channel_opts mo = {.token = made->token};
    dfs_rpc_channel *rw = NULL;
    assert_int_equal(dfs_rpc_channel_open(addr, &mo, &rw, NULL), DFS_OK);
    Dfs__V1__CreateFileResponse *cr = NULL;
    assert_int_equal(dfs_rpc_unary(rw, "/dfs.v1.Metadata/CreateFile", &creq.base,
                                   &dfs__v1__create_file_response__descriptor,
                                   (ProtobufCMessage **)&cr, 5000, NULL),
                     DFS_OK);
    /* The plan's write tickets are signed for each planned node with that node's key. */
    uint8_t master[DFS_TICKET_KEY_LEN];
    assert_int_equal(
        dfs_catalog_secret(f->cat, "ticket_master_key", sizeof master, 1, master, NULL), DFS_OK);
    for (size_t i = 0; i < cr->file->n_fragments; i++) {
        const Dfs__V1__Fragment *fr = cr->file->fragments[i];
        for (size_t r = 0; r < fr->n_replicas; r++) {
            uint8_t key[DFS_TICKET_KEY_LEN];
            struct dfs_ticket t;
            assert_int_equal(dfs_ticket_node_key(master, fr->replicas[r]->node_id, key, NULL),
                             DFS_OK);
            assert_int_equal(dfs_ticket_from_pb(fr->replicas[r]->ticket, &t, NULL), DFS_OK);
            assert_int_equal(dfs_ticket_check(key, &t, DFS_TICKET_PUT, fr->fragment_id,
                                              fr->replicas[r]->node_id, (int64_t)time(NULL) * 1000,
                                              NULL),
                             DFS_OK);
            assert_int_equal(dfs_ticket_check(key, &t, DFS_TICKET_GET, fr->fragment_id,
                                              fr->replicas[r]->node_id, (int64_t)time(NULL) * 1000,
                                              NULL),
                             DFS_EPERM);
        }
    }
    protobuf_c_message_free_unpacked(&cr->base, NULL);
    Dfs__V1__ListTokensRequest lq = DFS__V1__LIST_TOKENS_REQUEST__INIT;
    Dfs__V1__ListTokensResponse *ls = NULL;
    assert_int_equal(
        call(f, "ListTokens", &lq.base, &dfs__v1__list_tokens_response__descriptor, &ls, NULL),
        DFS_OK);
    assert_int_equal(ls->n_tokens, 7); /* admin, 3 nodes', ro, bootstrap, ci */
    protobuf_c_message_free_unpacked(&ls->base, NULL);
    Dfs__V1__RevokeTokenRequest rq = DFS__V1__REVOKE_TOKEN_REQUEST__INIT;
    char prefix[8];
    snprintf(prefix, sizeof prefix, "%.6s", made->info->id);
    rq.id = prefix;
    Dfs__V1__RevokeTokenResponse *rv = NULL;
    assert_int_equal(
        call(f, "RevokeToken", &rq.base, &dfs__v1__revoke_token_response__descriptor, &rv, NULL),
        DFS_OK);
    assert_true(rv->info->revoked_ms > 0);
    protobuf_c_message_free_unpacked(&rv->base, NULL);
    assert_int_equal(list_with(rw, &err), DFS_EUNAUTH);
    assert_non_null(strstr(err, "revoked"));
    free(err);
    err = NULL;
    Dfs__V1__WhoAmIRequest wq = DFS__V1__WHO_AM_IREQUEST__INIT;
    Dfs__V1__WhoAmIResponse *who = NULL;
    assert_int_equal(dfs_rpc_unary(ro, "/dfs.v1.Metadata/WhoAmI", &wq.base,
                                   &dfs__v1__who_am_iresponse__descriptor,
                                   (ProtobufCMessage **)&who, 5000, NULL),
                     DFS_OK);
    assert_int_equal(who->info->role, DFS__V1__TOKEN_ROLE__TOKEN_READ_ONLY);
    protobuf_c_message_free_unpacked(&who->base, NULL);
    protobuf_c_message_free_unpacked(&made->base, NULL);

    /* Token files: made when absent (mode 0600), accepted as they are afterwards. */
    char path[700];
    snprintf(path, sizeof path, "%s/admin.token", f->dir);
    assert_int_equal(
        dfs_metadata_service_bootstrap_token(f->svc, path, DFS_ROLE_ADMIN, "boot", NULL), DFS_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(
        dfs_metadata_service_bootstrap_token(f->svc, path, DFS_ROLE_ADMIN, "boot", NULL), DFS_OK);
    err = NULL;
    assert_int_equal(
        dfs_metadata_service_bootstrap_token(f->svc, path, DFS_ROLE_BOOTSTRAP, "boot", &err),
        DFS_EPERM);
    free(err);
    char *tok = NULL;
    assert_int_equal(dfs_rpc_token_read_file(path, &tok, NULL), DFS_OK);
    struct dfs_rpc_channel_opts bo = {.token = tok};
    dfs_rpc_channel *boot = NULL;
    assert_int_equal(dfs_rpc_channel_open(addr, &bo, &boot, NULL), DFS_OK);
    assert_int_equal(list_with(boot, NULL), DFS_OK);
    free(tok);
    dfs_rpc_channel_destroy(boot);
    dfs_rpc_channel_destroy(rw);
    dfs_rpc_channel_destroy(ro);
    dfs_rpc_channel_destroy(node);
    dfs_rpc_channel_destroy(stranger);
    dfs_rpc_channel_destroy(anon);
}

/*
 * A node is who its token says: another node's id, an enrollment of a known node, a report or
 * a heartbeat from a replaced registration, and a revoked node token are all refused.
 */
static void test_node_identity(void **state)
{
    struct fx *f = *state;
    register_nodes(f, 3);
    char addr[64], *err = NULL;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", dfs_rpc_server_port(f->srv));
    /* Node 1's token registering node 0's id (to learn its ticket key, to move it). */
    char id0[33];
    snprintf(id0, sizeof id0, "%032x", 1);
    Dfs__V1__RegisterNodeRequest req = DFS__V1__REGISTER_NODE_REQUEST__INIT;
    req.node_id = id0;
    req.address = "127.0.0.1:9";
    Dfs__V1__RegisterNodeResponse *resp = NULL;
    assert_int_equal(node_call(f, 1, "RegisterNode", &req.base,
                               &dfs__v1__register_node_response__descriptor, &resp, &err),
                     DFS_EPERM);
    assert_non_null(strstr(err, "belongs to node"));
    free(err);
    err = NULL;
    /* An enrollment token: a new id goes in once, with its own token; a known id never. */
    dfs_rpc_channel *boot = channel_as(f->svc, addr, DFS_ROLE_BOOTSTRAP);
    assert_int_equal(dfs_token_generate(f->nodes[5].token), DFS_OK);
    assert_int_equal(register_node(f, 5, boot, NULL, NULL), DFS_OK);
    char keep[DFS_TOKEN_LEN + 1];
    memcpy(keep, f->nodes[0].token, sizeof keep);
    assert_int_equal(dfs_token_generate(f->nodes[0].token), DFS_OK); /* another token, node 0 */
    assert_int_equal(register_node(f, 0, boot, NULL, &err), DFS_EPERM);
    assert_non_null(strstr(err, "enrolled already"));
    free(err);
    err = NULL;
    memcpy(f->nodes[0].token, keep, sizeof keep);
    /* The same enrollment again (its answer was lost) is the same node: accepted. */
    assert_int_equal(register_node(f, 5, boot, NULL, NULL), DFS_OK);
    /* An enrollment token does nothing else. */
    Dfs__V1__HeartbeatRequest hb = DFS__V1__HEARTBEAT_REQUEST__INIT;
    Dfs__V1__HeartbeatResponse *hr = NULL;
    assert_int_equal(dfs_rpc_unary(boot, "/dfs.v1.Metadata/Heartbeat", &hb.base,
                                   &dfs__v1__heartbeat_response__descriptor,
                                   (ProtobufCMessage **)&hr, 5000, &err),
                     DFS_EPERM);
    free(err);
    err = NULL;
    /* A restart at another address, while the old one does not answer as the node, takes
       over; the old registration's heartbeats and reports are refused from then on. */
    uint64_t old = f->nodes[2].registration;
    assert_int_equal(register_node(f, 2, NULL, "127.0.0.1:65000", NULL), DFS_OK);
    assert_true(f->nodes[2].registration != old);
    hb.registration = old;
    assert_int_equal(
        node_call(f, 2, "Heartbeat", &hb.base, &dfs__v1__heartbeat_response__descriptor, &hr, &err),
        DFS_EPRECOND);
    free(err);
    err = NULL;
    Dfs__V1__ReportFragmentsRequest rep = DFS__V1__REPORT_FRAGMENTS_REQUEST__INIT;
    Dfs__V1__ReportFragmentsResponse *rr = NULL;
    rep.full = true;
    rep.last = true;
    rep.registration = old;
    assert_int_equal(node_call(f, 2, "ReportFragments", &rep.base,
                               &dfs__v1__report_fragments_response__descriptor, &rr, &err),
                     DFS_EPRECOND);
    free(err);
    err = NULL;
    rep.registration = f->nodes[2].registration;
    assert_int_equal(node_call(f, 2, "ReportFragments", &rep.base,
                               &dfs__v1__report_fragments_response__descriptor, &rr, NULL),
                     DFS_OK);
    protobuf_c_message_free_unpacked(&rr->base, NULL);
    /* Revoked: the node is locked out, and no enrollment brings it back. */
    char tid[DFS_TOKEN_ID_HEX + 1];
    uint8_t hash[DFS_TOKEN_HASH_LEN];
    assert_int_equal(dfs_token_parse(f->nodes[2].token, tid, hash, NULL), DFS_OK);
    Dfs__V1__RevokeTokenRequest rq = DFS__V1__REVOKE_TOKEN_REQUEST__INIT;
    rq.id = tid;
    Dfs__V1__RevokeTokenResponse *rv = NULL;
    assert_int_equal(
        call(f, "RevokeToken", &rq.base, &dfs__v1__revoke_token_response__descriptor, &rv, NULL),
        DFS_OK);
    assert_string_equal(rv->info->node_id, "00000000000000000000000000000003");
    protobuf_c_message_free_unpacked(&rv->base, NULL);
    hb.registration = f->nodes[2].registration;
    assert_int_equal(
        node_call(f, 2, "Heartbeat", &hb.base, &dfs__v1__heartbeat_response__descriptor, &hr, &err),
        DFS_EUNAUTH);
    free(err);
    err = NULL;
    assert_int_equal(register_node(f, 2, boot, NULL, &err), DFS_EPERM);
    free(err);
    /* Nobody makes node tokens by hand. */
    Dfs__V1__CreateTokenRequest tq = DFS__V1__CREATE_TOKEN_REQUEST__INIT;
    tq.name = "fake node";
    tq.role = DFS__V1__TOKEN_ROLE__TOKEN_NODE;
    Dfs__V1__CreateTokenResponse *made = NULL;
    assert_int_equal(
        call(f, "CreateToken", &tq.base, &dfs__v1__create_token_response__descriptor, &made, NULL),
        DFS_EINVAL);
    dfs_rpc_channel_destroy(boot);
}

/* A commit records only copies whose nodes gave a receipt for exactly what is committed. */
static void test_commit_needs_receipts(void **state)
{
    struct fx *f = *state;
    register_nodes(f, 4);
    int rc;
    char *err = NULL;
    Dfs__V1__FileInfo *fi = create(f, "/r", 100, &rc, NULL);
    assert_int_equal(rc, DFS_OK);
    assert_int_equal(commit_with(f, fi, false, true, &err), DFS_EPRECOND);
    assert_non_null(strstr(err, "no receipt"));
    free(err);
    err = NULL;
    assert_int_equal(commit_with(f, fi, true, false, &err), DFS_EPRECOND);
    assert_non_null(strstr(err, "checksum 00000007"));
    free(err);
    /* Still pending (invisible), and committed once the receipts are right. */
    Dfs__V1__GetFileRequest g = DFS__V1__GET_FILE_REQUEST__INIT;
    g.path = "/r";
    Dfs__V1__GetFileResponse *gr = NULL;
    assert_int_equal(
        call(f, "GetFile", &g.base, &dfs__v1__get_file_response__descriptor, &gr, NULL),
        DFS_ENOTFOUND);
    assert_int_equal(commit(f, fi, NULL), DFS_OK);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
}

/* Chain plans carry forward tickets from each node of a fragment to every later one in the plan,
   signed for the forwarding node; a replacement brings its own, both ways. */
static void test_chain_forward_tickets(void **state)
{
    struct fx *f = *state;
    register_nodes(f, 5);
    uint8_t master[DFS_TICKET_KEY_LEN];
    assert_int_equal(
        dfs_catalog_secret(f->cat, "ticket_master_key", sizeof master, 1, master, NULL), DFS_OK);
    Dfs__V1__CreateFileRequest req = DFS__V1__CREATE_FILE_REQUEST__INIT;
    req.path = "/chain";
    req.size = 1000;
    req.chain = true;
    Dfs__V1__CreateFileResponse *cr = NULL;
    assert_int_equal(
        call(f, "CreateFile", &req.base, &dfs__v1__create_file_response__descriptor, &cr, NULL),
        DFS_OK);
    int64_t now = (int64_t)time(NULL) * 1000;
    const Dfs__V1__Fragment *fr = cr->file->fragments[0];
    for (size_t i = 0; i < cr->file->n_fragments; i++) {
        const Dfs__V1__Fragment *g = cr->file->fragments[i];
        for (size_t a = 0; a < g->n_replicas; a++) {
            const Dfs__V1__Replica *r = g->replicas[a];
            assert_int_equal(r->n_forward_tickets, g->n_replicas - 1 - a); /* to later copies */
            uint8_t key[DFS_TICKET_KEY_LEN];
            assert_int_equal(dfs_ticket_node_key(master, r->node_id, key, NULL), DFS_OK);
            for (size_t t = 0, b = a + 1; b < g->n_replicas; b++) {
                struct dfs_ticket tk;
                assert_int_equal(dfs_ticket_from_pb(r->forward_tickets[t++], &tk, NULL), DFS_OK);
                assert_int_equal(dfs_ticket_check_forward(key, &tk, g->fragment_id, r->node_id,
                                                          g->replicas[b]->node_id,
                                                          g->replicas[b]->address, now, NULL),
                                 DFS_OK);
            }
        }
    }
    /* Without `chain`, none. */
    req.chain = false;
    req.path = "/fan";
    Dfs__V1__CreateFileResponse *fan = NULL;
    assert_int_equal(
        call(f, "CreateFile", &req.base, &dfs__v1__create_file_response__descriptor, &fan, NULL),
        DFS_OK);
    assert_int_equal(fan->file->fragments[0]->replicas[0]->n_forward_tickets, 0);
    protobuf_c_message_free_unpacked(&fan->base, NULL);
    /* Replacing copy 0: tickets from the new node to the two others, and back. */
    Dfs__V1__ReplaceTargetRequest rt = DFS__V1__REPLACE_TARGET_REQUEST__INIT;
    rt.file_id = cr->file->file_id;
    rt.fragment_index = 0;
    rt.failed_node_id = fr->replicas[0]->node_id;
    rt.chain = true;
    Dfs__V1__ReplaceTargetResponse *rr = NULL;
    assert_int_equal(call(f, "ReplaceTarget", &rt.base,
                          &dfs__v1__replace_target_response__descriptor, &rr, NULL),
                     DFS_OK);
    assert_int_equal(rr->replica->n_forward_tickets, 2);
    assert_int_equal(rr->n_inbound_forward_tickets, 2);
    for (size_t i = 0; i < 2; i++) {
        const Dfs__V1__Replica *other = fr->replicas[i + 1];
        uint8_t key[DFS_TICKET_KEY_LEN];
        struct dfs_ticket tk;
        assert_int_equal(dfs_ticket_node_key(master, rr->replica->node_id, key, NULL), DFS_OK);
        assert_int_equal(dfs_ticket_from_pb(rr->replica->forward_tickets[i], &tk, NULL), DFS_OK);
        assert_int_equal(dfs_ticket_check_forward(key, &tk, fr->fragment_id, rr->replica->node_id,
                                                  other->node_id, other->address, now, NULL),
                         DFS_OK);
        assert_int_equal(dfs_ticket_node_key(master, other->node_id, key, NULL), DFS_OK);
        assert_int_equal(dfs_ticket_from_pb(rr->inbound_forward_tickets[i], &tk, NULL), DFS_OK);
        assert_int_equal(dfs_ticket_check_forward(key, &tk, fr->fragment_id, other->node_id,
                                                  rr->replica->node_id, rr->replica->address, now,
                                                  NULL),
                         DFS_OK);
    }
    protobuf_c_message_free_unpacked(&rr->base, NULL);
    protobuf_c_message_free_unpacked(&cr->base, NULL);
}

/* GetReplicas (dfs metadata ls): a single service answers as a one-member cluster's leader; admin
   only. */
static void test_get_replicas_single(void **state)
{
    struct fx *f = *state;
    Dfs__V1__GetReplicasRequest q = DFS__V1__GET_REPLICAS_REQUEST__INIT;
    Dfs__V1__GetReplicasResponse *r = NULL;
    assert_int_equal(
        call(f, "GetReplicas", &q.base, &dfs__v1__get_replicas_response__descriptor, &r, NULL),
        DFS_OK);
    assert_string_equal(r->role, "leader");
    assert_true(r->leader_ready);
    assert_int_equal(r->n_members, 0);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", dfs_rpc_server_port(f->srv));
    dfs_rpc_channel *ro = channel_as(f->svc, addr, DFS_ROLE_READ_ONLY);
    ProtobufCMessage *resp = NULL;
    char *err = NULL;
    assert_int_equal(dfs_rpc_unary(ro, "/dfs.v1.Metadata/GetReplicas", &q.base,
                                   &dfs__v1__get_replicas_response__descriptor, &resp, 5000, &err),
                     DFS_EPERM);
    free(err);
    dfs_rpc_channel_destroy(ro);
}

int main(void)
{
    dfs_log_init("metadata_service_test", DFS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_plans_distinct_nodes_with_defaults, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_too_few_nodes_is_failed_precondition, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_paths_are_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_requests_are_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_get_list_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_target_and_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_and_list_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_policies_saved_and_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_least_used_counts_planned_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens_and_roles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_needs_receipts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_forward_tickets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_replicas_single, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
