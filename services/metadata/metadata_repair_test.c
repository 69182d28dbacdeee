/*
 * Tests of the Metadata service's failure handling through real components: a metadata service
 * over a real SQLite catalog and real storage nodes (frag_store + Storage service on loopback
 * gRPC servers), which answer StatFragment and do the RepairFragment copies themselves.
 */
#include "services/metadata/metadata_service.h"

#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/receipt.h"
#include "common/ticket.h"
#include "common/token.h"
#include "dfs/v1/metadata.pb-c.h"
#include "dfs/v1/storage.pb-c.h"
#include "services/rpc/client.h"
#include "services/rpc/server.h"
#include "services/storage/storage_service.h"
#include "storage/frag_store.h"

#include <ftw.h>
#include <limits.h>
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

#define MAXN 8

struct node {
    char id[DFS_ID_HEX + 1];
    char addr[64];
    char root[PATH_MAX];
    dfs_frag_store *store;
    dfs_storage_service *svc;
    dfs_rpc_server *srv;
    char token[DFS_TOKEN_LEN + 1]; /* its own token, made at its enrollment */
    uint64_t registration;
};

struct fx {
    char dir[512];
    char db[600];
    dfs_catalog *cat;
    dfs_metadata_service *svc;
    dfs_rpc_server *srv;
    dfs_rpc_channel *ch;
    char addr[64]; /* the metadata service's */
    struct node n[MAXN];
    int nnodes;
};

static void node_start(struct fx *f, int i)
{
    struct node *n = &f->n[i];
    snprintf(n->id, sizeof n->id, "%032x", 0x100 + i);
    char root[PATH_MAX]; /* not straight into n->root: gcc sees f->dir and n in one object */
    snprintf(root, sizeof root, "%s/node%d", f->dir, i);
    memcpy(n->root, root, sizeof n->root);
    char *err = NULL;
    /* The node keeps its id in DATA_DIR/node.id; give it the test's id (tickets name it). */
    mkdir(n->root, 0755);
    char idfile[PATH_MAX + 16];
    snprintf(idfile, sizeof idfile, "%s/node.id", root);
    FILE *idf = fopen(idfile, "w");
    assert_non_null(idf);
    fprintf(idf, "%s\n", n->id);
    fclose(idf);
    if (dfs_frag_store_open(n->root, NULL, &n->store, &err) != DFS_OK)
        fail_msg("store: %s", err);
    assert_string_equal(dfs_frag_store_node_id(n->store), n->id);
    struct dfs_storage_service_config cfg = {.repair_stall_ms = 5000};
    assert_int_equal(dfs_storage_service_create(n->store, &cfg, &n->svc, &err), DFS_OK);
    struct dfs_rpc_server_config scfg = {.listen = "127.0.0.1:0", .threads = 2};
    assert_int_equal(dfs_rpc_server_create(&scfg, &n->srv, &err), DFS_OK);
    assert_int_equal(dfs_storage_service_register(n->svc, n->srv, &err), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(n->srv, &err), DFS_OK);
    snprintf(n->addr, sizeof n->addr, "127.0.0.1:%d", dfs_rpc_server_port(n->srv));
    /* The key RegisterNode would give the node: its own, under the catalog's master key. */
    uint8_t master[DFS_TICKET_KEY_LEN], key[DFS_TICKET_KEY_LEN];
    assert_int_equal(
        dfs_catalog_secret(f->cat, "ticket_master_key", sizeof master, 1, master, NULL), DFS_OK);
    assert_int_equal(dfs_ticket_node_key(master, n->id, key, NULL), DFS_OK);
    assert_int_equal(dfs_storage_service_set_ticket_key(n->svc, key, sizeof key, NULL), DFS_OK);
    struct dfs_node_usage u = {.capacity_bytes = 1 << 30, .free_bytes = 1 << 30};
    /* What RegisterNode does: an enrollment the first time (with the node's own token), a
       registration of the same node afterwards; each with a new registration. */
    n->registration = n->registration != 0 ? n->registration + 1 : 0x1000 + (uint64_t)i * 256;
    if (n->token[0] == '\0') {
        char tid[DFS_TOKEN_ID_HEX + 1];
        uint8_t hash[DFS_TOKEN_HASH_LEN];
        assert_int_equal(dfs_token_generate(n->token), DFS_OK);
        assert_int_equal(dfs_token_parse(n->token, tid, hash, NULL), DFS_OK);
        assert_int_equal(dfs_catalog_node_enroll(f->cat, n->id, tid, hash, n->addr, NULL, &u,
                                                 (int64_t)time(NULL) * 1000, n->registration, NULL),
                         DFS_OK);
    } else {
        assert_int_equal(dfs_catalog_node_register(f->cat, n->id, n->addr, NULL, &u,
                                                   (int64_t)time(NULL) * 1000, DFS_CATALOG_KEEP,
                                                   n->registration, NULL),
                         DFS_OK);
    }
}

static void node_stop(struct node *n)
{
    if (n->srv == NULL)
        return;
    dfs_rpc_server_stop(n->srv, 0);
    dfs_rpc_server_destroy(n->srv);
    dfs_storage_service_destroy(n->svc);
    dfs_frag_store_close(n->store);
    n->srv = NULL;
}

static void start_service(struct fx *f, const struct dfs_metadata_config *in)
{
    struct dfs_metadata_config cfg = {.seed = 7, .rebalance_threshold_pct = -1};
    if (in != NULL)
        cfg = *in;
    /* These tests look at the nodes right after a copy moved: no grace before its removal. */
    if (cfg.delete_grace_ms == 0)
        cfg.delete_grace_ms = -1;
    assert_int_equal(dfs_metadata_service_create(f->cat, &cfg, &f->svc, NULL), DFS_OK);
    struct dfs_rpc_server_config scfg = {
        .listen = "127.0.0.1:0", .threads = 2, .handler_threads = 4};
    assert_int_equal(dfs_rpc_server_create(&scfg, &f->srv, NULL), DFS_OK);
    assert_int_equal(dfs_metadata_service_register(f->svc, f->srv, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(f->srv, NULL), DFS_OK);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", dfs_rpc_server_port(f->srv));
    memcpy(f->addr, addr, sizeof f->addr);
    char token[DFS_TOKEN_LEN + 1];
    assert_int_equal(
        dfs_metadata_service_make_token(f->svc, DFS_ROLE_ADMIN, "test", 0, token, NULL, NULL),
        DFS_OK);
    struct dfs_rpc_channel_opts o = {.token = token};
    assert_int_equal(dfs_rpc_channel_open(addr, &o, &f->ch, NULL), DFS_OK);
}

static void stop_service(struct fx *f)
{
    dfs_rpc_channel_destroy(f->ch);
    dfs_rpc_server_stop(f->srv, 1000);
    dfs_metadata_service_destroy(f->svc);
    dfs_rpc_server_destroy(f->srv);
    f->ch = NULL;
    f->svc = NULL;
    f->srv = NULL;
}

/* N storage nodes and a metadata service with the given policy defaults. */
static struct fx *fx_new(int nnodes, const struct dfs_metadata_config *cfg)
{
    struct fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TEST_TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/mdrXXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/catalog.db", f->dir);
    assert_int_equal(dfs_catalog_open(f->db, &f->cat, NULL), DFS_OK);
    f->nnodes = nnodes;
    for (int i = 0; i < nnodes; i++)
        node_start(f, i);
    start_service(f, cfg);
    return f;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    stop_service(f);
    for (int i = 0; i < f->nnodes; i++)
        node_stop(&f->n[i]);
    dfs_catalog_close(f->cat);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static int call(struct fx *f, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *desc, void *resp, char **err)
{
    char name[128];
    snprintf(name, sizeof name, "/dfs.v1.Metadata/%s", method);
    return dfs_rpc_unary(f->ch, name, req, desc, (ProtobufCMessage **)resp, 20000, err);
}

static struct node *node_of(struct fx *f, const char *id)
{
    for (int i = 0; i < f->nnodes; i++)
        if (strcmp(f->n[i].id, id) == 0)
            return &f->n[i];
    fail_msg("no node %s", id);
    return NULL;
}

/* Store `size` bytes (a pattern from seed) as fragment id on a node; returns the checksum. */
static uint32_t store_fragment(struct node *n, const char *id, uint64_t size, int seed)
{
    uint8_t *data = malloc(size + 1);
    for (uint64_t i = 0; i < size; i++)
        data[i] = (uint8_t)(i * 31 + (uint64_t)seed);
    size_t nb = (size + DFS_BLOCK_SIZE - 1) / DFS_BLOCK_SIZE;
    uint32_t *crcs = calloc(nb + 1, sizeof *crcs);
    dfs_crc32c_blocks(data, size, crcs);
    dfs_frag_writer *w = NULL;
    uint32_t sum = 0;
    char *err = NULL;
    if (dfs_frag_writer_begin(n->store, id, size, &w, &err) != DFS_OK ||
        dfs_frag_writer_append(w, data, size, crcs, nb, &err) != DFS_OK ||
        dfs_frag_writer_commit(w, &sum, &err) != DFS_OK)
        fail_msg("store %s: %s", id, err);
    free(data);
    free(crcs);
    return sum;
}

static bool holds(struct node *n, const char *id)
{
    struct dfs_frag_info info;
    return dfs_frag_store_stat(n->store, id, &info, NULL) == DFS_OK;
}

/*
 * Put a file through CreateFile, write every planned copy into the real stores, CommitFile with
 * the real checksums. Returns the committed layout (free with protobuf_c_message_free_unpacked).
 */
static Dfs__V1__FileInfo *put(struct fx *f, const char *path, uint64_t size, uint32_t k, uint32_t F,
                              Dfs__V1__Policy policy)
{
    Dfs__V1__CreateFileRequest req = DFS__V1__CREATE_FILE_REQUEST__INIT;
    Dfs__V1__Redundancy red = DFS__V1__REDUNDANCY__INIT;
    red.scheme = DFS__V1__REDUNDANCY__SCHEME__REPLICATION;
    red.replicas = k;
    red.fragments = F;
    req.path = (char *)path;
    req.size = size;
    req.redundancy = &red;
    req.policy = policy;
    Dfs__V1__CreateFileResponse *cr = NULL;
    char *err = NULL;
    if (call(f, "CreateFile", &req.base, &dfs__v1__create_file_response__descriptor, &cr, &err) !=
        DFS_OK)
        fail_msg("create: %s", err);
    Dfs__V1__FileInfo *fi = cr->file;
    Dfs__V1__CommitFileRequest c = DFS__V1__COMMIT_FILE_REQUEST__INIT;
    c.file_id = fi->file_id;
    uint8_t sha[32] = {9};
    c.sha256.data = sha;
    c.sha256.len = 32;
    Dfs__V1__CommitFragment cf[16], *cfp[16];
    char *ids[16][16];
    ProtobufCBinaryData receipts[16][16];
    uint8_t rbuf[16][16][DFS_RECEIPT_LEN];
    uint8_t master[DFS_TICKET_KEY_LEN];
    assert_int_equal(
        dfs_catalog_secret(f->cat, "ticket_master_key", sizeof master, 1, master, NULL), DFS_OK);
    for (size_t i = 0; i < fi->n_fragments; i++) {
        Dfs__V1__Fragment *fr = fi->fragments[i];
        dfs__v1__commit_fragment__init(&cf[i]);
        cf[i].index = fr->index;
        cf[i].size = fr->size;
        for (size_t r = 0; r < fr->n_replicas; r++) {
            cf[i].checksum = store_fragment(node_of(f, fr->replicas[r]->node_id), fr->fragment_id,
                                            fr->size, (int)i);
            ids[i][r] = fr->replicas[r]->node_id;
        }
        /* Each node's receipt, as its put would have answered (common/receipt.h). */
        for (size_t r = 0; r < fr->n_replicas; r++) {
            uint8_t key[DFS_TICKET_KEY_LEN];
            assert_int_equal(dfs_ticket_node_key(master, ids[i][r], key, NULL), DFS_OK);
            assert_int_equal(dfs_receipt_make(key, fr->fragment_id, ids[i][r], fr->size,
                                              cf[i].checksum, rbuf[i][r], NULL),
                             DFS_OK);
            receipts[i][r].data = rbuf[i][r];
            receipts[i][r].len = DFS_RECEIPT_LEN;
        }
        cf[i].node_ids = ids[i];
        cf[i].n_node_ids = fr->n_replicas;
        cf[i].receipts = receipts[i];
        cf[i].n_receipts = fr->n_replicas;
        cfp[i] = &cf[i];
    }
    c.fragments = cfp;
    c.n_fragments = fi->n_fragments;
    Dfs__V1__CommitFileResponse *resp = NULL;
    if (call(f, "CommitFile", &c.base, &dfs__v1__commit_file_response__descriptor, &resp, &err) !=
        DFS_OK)
        fail_msg("commit: %s", err);
    Dfs__V1__FileInfo *out = resp->file;
    resp->file = NULL;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    protobuf_c_message_free_unpacked(&cr->base, NULL);
    return out;
}

static Dfs__V1__GetHealthResponse *health(struct fx *f, bool verify)
{
    Dfs__V1__GetHealthRequest req = DFS__V1__GET_HEALTH_REQUEST__INIT;
    req.verify = verify;
    req.list = 10;
    Dfs__V1__GetHealthResponse *resp = NULL;
    char *err = NULL;
    if (call(f, "GetHealth", &req.base, &dfs__v1__get_health_response__descriptor, &resp, &err) !=
        DFS_OK)
        fail_msg("health: %s", err);
    return resp;
}

/* Plan, then run every due repair on this thread; returns how many succeeded. */
static int repair_all(struct fx *f)
{
    char *err = NULL;
    if (dfs_metadata_service_plan_all(f->svc, &err) != DFS_OK)
        fail_msg("plan: %s", err);
    int ok = 0;
    for (int i = 0; i < 100; i++) {
        bool did = false;
        int rc = dfs_metadata_service_repair_one(f->svc, &did, &err);
        if (!did)
            break;
        if (rc == DFS_OK)
            ok++;
        else
            fail_msg("repair: %s", err);
    }
    return ok;
}

static void set_dead(struct fx *f, int i)
{
    assert_int_equal(dfs_catalog_node_set_state(f->cat, f->n[i].id, DFS_NODE_DEAD, NULL), DFS_OK);
}

static int index_of(struct fx *f, const char *id)
{
    for (int i = 0; i < f->nnodes; i++)
        if (strcmp(f->n[i].id, id) == 0)
            return i;
    return -1;
}

static void test_repair_copies_and_health_counts(void **state)
{
    struct fx *f = *state = fx_new(5, NULL);
    Dfs__V1__FileInfo *fi = put(f, "/r", 300000, 2, 2, DFS__V1__POLICY__POLICY_RANDOM);
    Dfs__V1__GetHealthResponse *h = health(f, true);
    assert_int_equal(h->files, 1);
    assert_int_equal(h->healthy, 1);
    protobuf_c_message_free_unpacked(&h->base, NULL);

    /* The node holding fragment 0's first copy stops; before any sweep notices, only verify
       sees the loss. */
    int victim = index_of(f, fi->fragments[0]->replicas[0]->node_id);
    node_stop(&f->n[victim]);
    h = health(f, false);
    assert_int_equal(h->healthy, 1);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    h = health(f, true);
    assert_int_equal(h->degraded, 1);
    assert_int_equal(h->lost, 0);
    assert_int_equal(h->n_degraded_paths, 1);
    assert_string_equal(h->degraded_paths[0], "/r");
    protobuf_c_message_free_unpacked(&h->base, NULL);

    /* The sweep marks it dead; repair copies from the survivor. */
    set_dead(f, victim);
    int done = repair_all(f);
    assert_true(done >= 1);
    for (size_t i = 0; i < fi->n_fragments; i++) {
        int live = 0;
        for (int n = 0; n < f->nnodes; n++)
            live += n != victim && holds(&f->n[n], fi->fragments[i]->fragment_id);
        assert_int_equal(live, 2);
    }
    h = health(f, true);
    assert_int_equal(h->healthy, 1);
    assert_true(h->repairs_done >= 1);
    assert_true(h->repair_bytes >= 150000);
    assert_int_equal(h->repairs_queued, 0);
    protobuf_c_message_free_unpacked(&h->base, NULL);

    /* Both copies of a fragment gone: lost, counted, never queued. */
    const Dfs__V1__Fragment *fr = fi->fragments[1];
    for (size_t r = 0; r < fr->n_replicas; r++) {
        int i = index_of(f, fr->replicas[r]->node_id);
        if (i != victim)
            assert_int_equal(dfs_frag_store_delete(f->n[i].store, fr->fragment_id, NULL, NULL),
                             DFS_OK);
    }
    for (int n = 0; n < f->nnodes; n++)
        if (n != victim && holds(&f->n[n], fr->fragment_id))
            dfs_frag_store_delete(f->n[n].store, fr->fragment_id, NULL, NULL);
    h = health(f, true);
    assert_int_equal(h->lost, 1);
    assert_int_equal(h->n_lost_paths, 1);
    assert_true(h->lost_fraction > 0.99);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
}

/* Is there a set of the family holding all of ids? */
static bool one_set_holds(struct fx *f, enum dfs_policy policy, const char *const *ids, size_t n)
{
    struct dfs_placement_state *st = NULL;
    size_t nst = 0;
    assert_int_equal(dfs_catalog_placement_load(f->cat, &st, &nst, NULL), DFS_OK);
    bool found = false;
    for (size_t i = 0; i < nst && !found; i++) {
        if (st[i].policy != policy)
            continue;
        for (size_t s = 0; s < st[i].nsets && !found; s++) {
            size_t have = 0;
            for (size_t j = 0; j < n; j++)
                for (size_t m = 0; m < st[i].sets[s].nnodes; m++)
                    have += strcmp(st[i].sets[s].node_ids[m], ids[j]) == 0;
            found = have == n;
        }
    }
    for (size_t i = 0; !found && i < nst; i++)
        for (size_t s = 0; s < st[i].nsets; s++)
            for (size_t m = 0; m < st[i].sets[s].nnodes; m++)
                print_message("family %d/%u set %zu: %s\n", st[i].policy, st[i].width, s,
                              st[i].sets[s].node_ids[m]);
    for (size_t j = 0; !found && j < n; j++)
        print_message("holder %s\n", ids[j]);
    dfs_placement_states_free(st, nst);
    return found;
}

static void check_policy_repair(void **state, Dfs__V1__Policy policy, uint32_t k, int nnodes)
{
    struct dfs_metadata_config cfg = {.seed = 11, .rebalance_threshold_pct = -1};
    struct fx *f = *state = fx_new(nnodes, &cfg);
    Dfs__V1__FileInfo *fi = put(f, "/p", 1000, k, 1, policy);
    const Dfs__V1__Fragment *fr = fi->fragments[0];
    int victim = index_of(f, fr->replicas[0]->node_id);
    node_stop(&f->n[victim]);
    set_dead(f, victim);
    assert_int_equal(repair_all(f), 1);
    const char *ids[16];
    size_t n = 0;
    for (int i = 0; i < f->nnodes; i++)
        if (i != victim && holds(&f->n[i], fr->fragment_id))
            ids[n++] = f->n[i].id;
    assert_int_equal(n, k);
    /* The new copy sits in the same copyset / group as the survivors (synced without the dead
       node). */
    assert_true(one_set_holds(f, (enum dfs_policy)policy, ids, n));
    /* ListNodes names the sets of every member: "min_copy/3:C" or "buddy/2#G". */
    Dfs__V1__ListNodesRequest lr = DFS__V1__LIST_NODES_REQUEST__INIT;
    Dfs__V1__ListNodesResponse *ln = NULL;
    assert_int_equal(
        call(f, "ListNodes", &lr.base, &dfs__v1__list_nodes_response__descriptor, &ln, NULL),
        DFS_OK);
    char want[32];
    snprintf(want, sizeof want, "%s/%u%s",
             policy == DFS__V1__POLICY__POLICY_BUDDY ? "buddy" : "min_copy", k,
             policy == DFS__V1__POLICY__POLICY_BUDDY ? "#" : ":");
    uint64_t copies = 0;
    for (size_t i = 0; i < ln->n_nodes; i++) {
        copies += ln->nodes[i]->catalog_fragments;
        if (ln->nodes[i]->state == DFS__V1__NODE_STATE__NODE_DEAD)
            continue;
        assert_int_equal(ln->nodes[i]->n_groups, 1);
        assert_int_equal(strncmp(ln->nodes[i]->groups[0], want, strlen(want)), 0);
    }
    assert_int_equal(copies, k); /* the dead node's copy is forgotten once repaired */
    protobuf_c_message_free_unpacked(&ln->base, NULL);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
}

static void test_min_copy_repair_stays_in_copyset(void **state)
{
    check_policy_repair(state, DFS__V1__POLICY__POLICY_MIN_COPY, 3, 7);
}

static void test_buddy_repair_stays_in_group(void **state)
{
    check_policy_repair(state, DFS__V1__POLICY__POLICY_BUDDY, 2, 8);
}

static Dfs__V1__ReportFragmentsResponse *report(struct fx *f, int node, const char **corrupt,
                                                size_t ncorrupt, const char **present,
                                                size_t npresent, bool full, uint32_t page,
                                                bool last, int *rc)
{
    Dfs__V1__ReportFragmentsRequest req = DFS__V1__REPORT_FRAGMENTS_REQUEST__INIT;
    req.registration = f->n[node].registration;
    req.corrupt = (char **)corrupt;
    req.n_corrupt = ncorrupt;
    req.present = (char **)present;
    req.n_present = npresent;
    req.full = full;
    req.page = page;
    req.last = last;
    Dfs__V1__ReportFragmentsResponse *resp = NULL;
    /* A report speaks for the node whose token the call presents, and no other. */
    struct dfs_rpc_channel_opts o = {.token = f->n[node].token};
    dfs_rpc_channel *ch = NULL;
    assert_int_equal(dfs_rpc_channel_open(f->addr, &o, &ch, NULL), DFS_OK);
    *rc = dfs_rpc_unary(ch, "/dfs.v1.Metadata/ReportFragments", &req.base,
                        &dfs__v1__report_fragments_response__descriptor, (ProtobufCMessage **)&resp,
                        5000, NULL);
    dfs_rpc_channel_destroy(ch);
    return resp;
}

static void test_report_corrupt_and_inventory(void **state)
{
    struct fx *f = *state = fx_new(4, NULL);
    Dfs__V1__FileInfo *a = put(f, "/a", 1000, 2, 1, DFS__V1__POLICY__POLICY_RANDOM);
    Dfs__V1__FileInfo *b = put(f, "/b", 1000, 2, 1, DFS__V1__POLICY__POLICY_RANDOM);
    const char *fa = a->fragments[0]->fragment_id, *fb = b->fragments[0]->fragment_id;
    int na = index_of(f, a->fragments[0]->replicas[0]->node_id);
    int rc;

    /* Corrupt: the copy is dropped, its removal and a repair queued; repair restores it. */
    const char *corrupt[] = {fa};
    Dfs__V1__ReportFragmentsResponse *r = report(f, na, corrupt, 1, NULL, 0, false, 0, false, &rc);
    assert_int_equal(rc, DFS_OK);
    assert_int_equal(r->marked_lost, 1);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    struct dfs_repair_rec *v = NULL;
    size_t n = 0;
    assert_int_equal(dfs_catalog_repairs_list(f->cat, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].reason, DFS_REPAIR_CORRUPT);
    free(v);
    assert_int_equal(repair_all(f), 1);
    Dfs__V1__GetHealthResponse *h = health(f, true);
    assert_int_equal(h->healthy, 2);
    protobuf_c_message_free_unpacked(&h->base, NULL);

    /* Inventory of a node holding b: it lists a junk fragment and not b, whose file was removed
       from its disk; a put committed after the listing (c) is on disk but not listed. */
    int nb = index_of(f, b->fragments[0]->replicas[0]->node_id);
    char junk[DFS_FRAGMENT_ID_HEX + 1];
    memset(junk, 'd', DFS_FRAGMENT_ID_HEX);
    junk[DFS_FRAGMENT_ID_HEX] = '\0';
    store_fragment(&f->n[nb], junk, 10, 1);
    assert_int_equal(dfs_frag_store_delete(f->n[nb].store, fb, NULL, NULL), DFS_OK);
    /* The listing: everything on disk now except b (gone) ... */
    const char *present[64];
    size_t np = 0;
    present[np++] = junk;
    if (holds(&f->n[nb], fa))
        present[np++] = fa;
    Dfs__V1__FileInfo *c = put(f, "/c", 1000, 4, 1, DFS__V1__POLICY__POLICY_RANDOM);
    /* ... and c, committed after the listing, is not in it: page 0, then the last page. */
    r = report(f, nb, NULL, 0, present, 1, true, 0, false, &rc);
    assert_int_equal(rc, DFS_OK);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    r = report(f, nb, NULL, 0, present + 1, np - 1, true, 1, true, &rc);
    assert_int_equal(rc, DFS_OK);
    assert_int_equal(r->marked_lost, 1); /* b only: c was confirmed on the node */
    assert_int_equal(r->unknown, 1);     /* junk */
    protobuf_c_message_free_unpacked(&r->base, NULL);
    /* The junk goes at the next round; b is repaired. */
    dfs_metadata_service_maintain(f->svc);
    assert_false(holds(&f->n[nb], junk));
    assert_true(holds(&f->n[nb], c->fragments[0]->fragment_id));
    assert_int_equal(repair_all(f), 1);
    h = health(f, true);
    assert_int_equal(h->healthy, 3);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    protobuf_c_message_free_unpacked(&a->base, NULL);
    protobuf_c_message_free_unpacked(&b->base, NULL);
    protobuf_c_message_free_unpacked(&c->base, NULL);
}

static Dfs__V1__SetNodeStateResponse *set_node_state(struct fx *f, const char *id,
                                                     Dfs__V1__NodeState s, int *rc, char **err)
{
    Dfs__V1__SetNodeStateRequest req = DFS__V1__SET_NODE_STATE_REQUEST__INIT;
    req.node_id = (char *)id;
    req.state = s;
    Dfs__V1__SetNodeStateResponse *resp = NULL;
    *rc = call(f, "SetNodeState", &req.base, &dfs__v1__set_node_state_response__descriptor, &resp,
               err);
    return resp;
}

static void test_drain_moves_everything_then_decommissions(void **state)
{
    struct fx *f = *state = fx_new(5, NULL);
    Dfs__V1__FileInfo *fi[3];
    for (int i = 0; i < 3; i++) {
        char path[16];
        snprintf(path, sizeof path, "/f%d", i);
        fi[i] = put(f, path, 5000, 3, 2, DFS__V1__POLICY__POLICY_RANDOM);
    }
    int rc;
    char *err = NULL;
    /* Errors: ambiguous prefix, unknown node, a state an operator cannot set, a dead node. */
    assert_null(set_node_state(f, "0000", DFS__V1__NODE_STATE__NODE_DRAINING, &rc, &err));
    assert_int_equal(rc, DFS_EINVAL);
    assert_non_null(strstr(err, "ambiguous"));
    free(err);
    err = NULL;
    assert_null(set_node_state(f, "ffff", DFS__V1__NODE_STATE__NODE_DRAINING, &rc, &err));
    assert_int_equal(rc, DFS_ENOTFOUND);
    free(err);
    err = NULL;
    assert_null(set_node_state(f, f->n[0].id, DFS__V1__NODE_STATE__NODE_DEAD, &rc, &err));
    assert_int_equal(rc, DFS_EINVAL);
    free(err);
    err = NULL;
    set_dead(f, 4);
    assert_null(set_node_state(f, f->n[4].id, DFS__V1__NODE_STATE__NODE_DRAINING, &rc, &err));
    assert_int_equal(rc, DFS_EPRECOND);
    free(err);
    err = NULL;
    bool known;
    struct dfs_node_usage u = {.capacity_bytes = 1 << 30, .free_bytes = 1 << 30};
    assert_int_equal(dfs_catalog_node_heartbeat(f->cat, f->n[4].id, DFS_CATALOG_KEEP, &u,
                                                (int64_t)time(NULL) * 1000, &known, NULL),
                     DFS_OK);

    /* Drain node 0 by a unique prefix of its id ("...100" is node 0: ids end in 100..104). */
    const char *prefix = f->n[0].id; /* whole id is a prefix of itself */
    Dfs__V1__SetNodeStateResponse *resp =
        set_node_state(f, prefix, DFS__V1__NODE_STATE__NODE_DRAINING, &rc, &err);
    if (rc != DFS_OK)
        fail_msg("drain: %s", err);
    assert_int_equal(resp->node->state, DFS__V1__NODE_STATE__NODE_DRAINING);
    uint64_t before = resp->node->catalog_fragments;
    assert_true(before > 0);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    assert_int_equal(repair_all(f), (int)before);
    /* Every copy moved and removed from node 0 (draining nodes get their deletions); then the
       node retires itself; nothing lost, all healthy. */
    dfs_metadata_service_maintain(f->svc);
    dfs_metadata_service_maintain(f->svc);
    for (int i = 0; i < 3; i++)
        for (size_t j = 0; j < fi[i]->n_fragments; j++)
            assert_false(holds(&f->n[0], fi[i]->fragments[j]->fragment_id));
    struct dfs_node_rec n0;
    assert_int_equal(dfs_catalog_node_get(f->cat, f->n[0].id, &n0, NULL), DFS_OK);
    assert_int_equal(n0.state, DFS_NODE_DECOMMISSIONED);
    Dfs__V1__GetHealthResponse *h = health(f, true);
    assert_int_equal(h->healthy, 3);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    /* Back to service: it takes writes again, with nothing recorded on it. */
    resp = set_node_state(f, f->n[0].id, DFS__V1__NODE_STATE__NODE_ALIVE, &rc, &err);
    assert_int_equal(rc, DFS_OK);
    assert_int_equal(resp->node->state, DFS__V1__NODE_STATE__NODE_ALIVE);
    assert_int_equal(resp->node->catalog_fragments, 0);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    for (int i = 0; i < 3; i++)
        protobuf_c_message_free_unpacked(&fi[i]->base, NULL);
    /* ListNodes shows groups (none for random) and catalog copies. */
    Dfs__V1__ListNodesRequest lr = DFS__V1__LIST_NODES_REQUEST__INIT;
    Dfs__V1__ListNodesResponse *ln = NULL;
    assert_int_equal(
        call(f, "ListNodes", &lr.base, &dfs__v1__list_nodes_response__descriptor, &ln, NULL),
        DFS_OK);
    uint64_t total = 0;
    for (size_t i = 0; i < ln->n_nodes; i++)
        total += ln->nodes[i]->catalog_fragments;
    assert_int_equal(total, 3 * 2 * 3);
    protobuf_c_message_free_unpacked(&ln->base, NULL);
}

static void test_workers_repair_in_background_and_stop(void **state)
{
    struct dfs_metadata_config cfg = {.seed = 3,
                                      .maintenance_interval_ms = 50,
                                      .repair_parallel = 2,
                                      .rebalance_threshold_pct = -1};
    struct fx *f = *state = fx_new(4, &cfg);
    Dfs__V1__FileInfo *fi = put(f, "/w", 200000, 2, 4, DFS__V1__POLICY__POLICY_RANDOM);
    assert_int_equal(dfs_metadata_service_start(f->svc, NULL), DFS_OK);
    node_stop(&f->n[1]);
    set_dead(f, 1);
    Dfs__V1__GetHealthResponse *h = NULL;
    for (int i = 0; i < 200; i++) {
        h = health(f, true);
        bool healthy = h->healthy == 1 && h->repairs_queued == 0;
        protobuf_c_message_free_unpacked(&h->base, NULL);
        if (healthy)
            break;
        usleep(50000);
    }
    h = health(f, true);
    assert_int_equal(h->healthy, 1);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
    /* Metrics of the repairs. */
    struct dfs_metadata_repair_stats st;
    dfs_metadata_service_repair_stats(f->svc, &st);
    assert_int_equal(st.running, 0);
}

static void test_restart_requeues_running(void **state)
{
    struct fx *f = *state = fx_new(4, NULL);
    Dfs__V1__FileInfo *fi = put(f, "/x", 1000, 2, 1, DFS__V1__POLICY__POLICY_RANDOM);
    const char *fid = fi->fragments[0]->fragment_id;
    int victim = index_of(f, fi->fragments[0]->replicas[0]->node_id);
    set_dead(f, victim);
    char *err = NULL;
    assert_int_equal(dfs_metadata_service_plan_all(f->svc, &err), DFS_OK);
    /* Claim by hand onto a node, as a worker would, then restart the service. */
    int target = -1;
    for (int i = 0; i < f->nnodes && target < 0; i++)
        if (i != victim && !holds(&f->n[i], fid))
            target = i;
    assert_int_equal(dfs_catalog_repair_start(f->cat, fid, f->n[target].id, 1, NULL), DFS_OK);
    store_fragment(&f->n[target], fid, 10, 0); /* a stray partial copy on the target */
    stop_service(f);
    start_service(f, NULL);
    uint64_t q = 0, run = 0;
    assert_int_equal(dfs_catalog_repair_counts(f->cat, &q, &run, NULL), DFS_OK);
    assert_int_equal(q, 1);
    assert_int_equal(run, 0);
    dfs_metadata_service_maintain(f->svc); /* sends the orphan's deletion */
    assert_false(holds(&f->n[target], fid));
    assert_int_equal(repair_all(f), 1);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
}

/* ---- reported damage ---- */

static Dfs__V1__FileInfo *get_file(struct fx *f, const char *path)
{
    Dfs__V1__GetFileRequest req = DFS__V1__GET_FILE_REQUEST__INIT;
    req.path = (char *)path;
    Dfs__V1__GetFileResponse *resp = NULL;
    char *err = NULL;
    if (call(f, "GetFile", &req.base, &dfs__v1__get_file_response__descriptor, &resp, &err) !=
        DFS_OK)
        fail_msg("get file: %s", err);
    Dfs__V1__FileInfo *fi = resp->file;
    resp->file = NULL;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return fi;
}

/* ReportDamage of one copy read with ticket t; *accepted and *ignored from the answer. */
static int report_damage(struct fx *f, Dfs__V1__Ticket *t, Dfs__V1__Damage damage,
                         uint32_t *accepted, uint32_t *ignored, char **err)
{
    Dfs__V1__DamagedCopy c = DFS__V1__DAMAGED_COPY__INIT, *cp[] = {&c};
    c.ticket = t;
    c.damage = damage;
    c.detail = "seen by a test";
    Dfs__V1__ReportDamageRequest req = DFS__V1__REPORT_DAMAGE_REQUEST__INIT;
    req.copies = cp;
    req.n_copies = 1;
    Dfs__V1__ReportDamageResponse *resp = NULL;
    int rc = call(f, "ReportDamage", &req.base, &dfs__v1__report_damage_response__descriptor, &resp,
                  err);
    if (rc == DFS_OK) {
        *accepted = resp->accepted;
        *ignored = resp->ignored;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    return rc;
}

static bool recorded(struct fx *f, const char *fragment_id, const char *node_id)
{
    bool rec = false;
    assert_int_equal(dfs_catalog_copy_get(f->cat, fragment_id, node_id, &rec, NULL, NULL, NULL),
                     DFS_OK);
    return rec;
}

/* Run every queued check; returns how many ran. */
static int check_all(struct fx *f)
{
    int n = 0;
    for (;;) {
        bool did = false;
        char *err = NULL;
        if (dfs_metadata_service_check_one(f->svc, &did, &err) != DFS_OK)
            fail_msg("check: %s", err);
        if (!did)
            return n;
        n++;
    }
}

/*
 * A reader's report is a claim, checked by the copy's node against the catalog before anything
 * is dropped: a good copy stays (and is not checked again for a while), a copy rewritten
 * consistently with other data, or gone, is dropped and repaired. Tickets are the proof: forged
 * or foreign ones are refused.
 */
static void test_damage_reports_checked_by_the_node(void **state)
{
    struct fx *f = *state = fx_new(4, NULL);
    Dfs__V1__FileInfo *put_fi = put(f, "/d", 200000, 2, 2, DFS__V1__POLICY__POLICY_RANDOM);
    protobuf_c_message_free_unpacked(&put_fi->base, NULL);
    Dfs__V1__FileInfo *fi = get_file(f, "/d");
    Dfs__V1__Replica *a = fi->fragments[0]->replicas[0], *b = fi->fragments[1]->replicas[0],
                     *c = fi->fragments[0]->replicas[1];
    const char *fa = fi->fragments[0]->fragment_id, *fb = fi->fragments[1]->fragment_id;
    uint32_t acc = 0, ign = 0;
    char *err = NULL;

    /* A good copy reported corrupt: checked, found good, kept; a second report is not checked. */
    assert_int_equal(report_damage(f, a->ticket, DFS__V1__DAMAGE__DAMAGE_CORRUPT, &acc, &ign, &err),
                     DFS_OK);
    assert_int_equal(acc, 1);
    Dfs__V1__GetHealthResponse *h = health(f, false);
    assert_int_equal(h->damage_checks_pending, 1);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    assert_int_equal(check_all(f), 1);
    assert_true(recorded(f, fa, a->node_id));
    assert_int_equal(report_damage(f, a->ticket, DFS__V1__DAMAGE__DAMAGE_CORRUPT, &acc, &ign, &err),
                     DFS_OK);
    assert_int_equal(acc, 0);
    assert_int_equal(ign, 1);
    assert_int_equal(check_all(f), 0);

    /* A copy rewritten consistently with other data (its blocks match their CRCs): the node's
       check finds another checksum; the copy is dropped and a repair queued. */
    store_fragment(node_of(f, b->node_id), fb, fi->fragments[1]->size, 99);
    assert_int_equal(
        report_damage(f, b->ticket, DFS__V1__DAMAGE__DAMAGE_WRONG_CHECKSUM, &acc, &ign, &err),
        DFS_OK);
    assert_int_equal(acc, 1);
    assert_int_equal(check_all(f), 1);
    assert_false(recorded(f, fb, b->node_id));
    /* A copy deleted under its running node: confirmed missing, dropped. */
    assert_int_equal(dfs_frag_store_delete(node_of(f, c->node_id)->store, fa, NULL, NULL), DFS_OK);
    assert_int_equal(report_damage(f, c->ticket, DFS__V1__DAMAGE__DAMAGE_MISSING, &acc, &ign, &err),
                     DFS_OK);
    assert_int_equal(check_all(f), 1);
    assert_false(recorded(f, fa, c->node_id));
    h = health(f, false);
    assert_int_equal(h->damage_reported, 3);
    assert_int_equal(h->damage_confirmed, 2);
    assert_int_equal(h->damage_checks_pending, 0);
    assert_int_equal(h->degraded, 1);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    assert_int_equal(repair_all(f), 2);
    h = health(f, true);
    assert_int_equal(h->healthy, 1);
    protobuf_c_message_free_unpacked(&h->base, NULL);

    /* Proof required: a ticket whose MAC was tampered with, and a STAT ticket signed with the
       right key, are refused, and nothing is queued. */
    Dfs__V1__Ticket forged = *a->ticket;
    uint8_t mac[DFS_TICKET_MAC_LEN];
    memcpy(mac, a->ticket->mac.data, sizeof mac);
    mac[0] ^= 1;
    forged.mac.data = mac;
    assert_int_equal(report_damage(f, &forged, DFS__V1__DAMAGE__DAMAGE_CORRUPT, &acc, &ign, &err),
                     DFS_EPERM);
    assert_non_null(strstr(err, "copies[0]"));
    free(err);
    err = NULL;
    uint8_t master[DFS_TICKET_KEY_LEN], key[DFS_TICKET_KEY_LEN];
    assert_int_equal(
        dfs_catalog_secret(f->cat, "ticket_master_key", sizeof master, 1, master, NULL), DFS_OK);
    assert_int_equal(dfs_ticket_node_key(master, a->node_id, key, NULL), DFS_OK);
    struct dfs_ticket st;
    assert_int_equal(dfs_ticket_make(key, DFS_TICKET_STAT, fa, a->node_id,
                                     (int64_t)time(NULL) * 1000 + 60000, &st, NULL),
                     DFS_OK);
    Dfs__V1__Ticket stm = DFS__V1__TICKET__INIT;
    stm.op = (Dfs__V1__TicketOp)st.op;
    stm.file_id = st.file_id;
    stm.fragment_id = st.fragment_id;
    stm.node_id = st.node_id;
    stm.expires_ms = st.expires_ms;
    stm.mac.data = st.mac;
    stm.mac.len = sizeof st.mac;
    assert_int_equal(report_damage(f, &stm, DFS__V1__DAMAGE__DAMAGE_CORRUPT, &acc, &ign, &err),
                     DFS_EPERM);
    free(err);
    assert_int_equal(check_all(f), 0);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
}

/* A copy reported damaged is not a repair source while its node checks it. */
static void test_reported_copy_not_a_source_while_checked(void **state)
{
    struct fx *f = *state = fx_new(3, NULL);
    Dfs__V1__FileInfo *put_fi = put(f, "/x", 1000, 2, 1, DFS__V1__POLICY__POLICY_RANDOM);
    protobuf_c_message_free_unpacked(&put_fi->base, NULL);
    Dfs__V1__FileInfo *fi = get_file(f, "/x");
    Dfs__V1__Replica *a = fi->fragments[0]->replicas[0], *b = fi->fragments[0]->replicas[1];
    set_dead(f, index_of(f, a->node_id));
    uint32_t acc = 0, ign = 0;
    assert_int_equal(report_damage(f, b->ticket, DFS__V1__DAMAGE__DAMAGE_CORRUPT, &acc, &ign, NULL),
                     DFS_OK);
    assert_int_equal(acc, 1);
    char *err = NULL;
    assert_int_equal(dfs_metadata_service_plan_all(f->svc, &err), DFS_OK);
    bool did = false;
    assert_int_not_equal(dfs_metadata_service_repair_one(f->svc, &did, &err), DFS_OK);
    assert_true(did);
    assert_non_null(strstr(err, "no source"));
    free(err);
    err = NULL;
    /* Its node finds it good: it is a source again, and the repair goes through. */
    assert_int_equal(check_all(f), 1);
    assert_true(recorded(f, fi->fragments[0]->fragment_id, b->node_id));
    struct dfs_repair_rec *v = NULL;
    size_t n = 0;
    assert_int_equal(dfs_catalog_repairs_list(f->cat, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 1);
    char sql_id[DFS_FRAGMENT_ID_HEX + 1];
    snprintf(sql_id, sizeof sql_id, "%s", v[0].fragment_id);
    free(v);
    /* The failed attempt's target had its (empty) copy's removal queued: send it; then skip the
       attempt's backoff. */
    dfs_metadata_service_maintain(f->svc);
    assert_int_equal(dfs_catalog_repair_fail(f->cat, sql_id, NULL, 0, NULL, NULL), DFS_OK);
    assert_int_equal(dfs_metadata_service_repair_one(f->svc, &did, &err), DFS_OK);
    assert_true(did);
    protobuf_c_message_free_unpacked(&fi->base, NULL);
}

static Dfs__V1__ReportFragmentsResponse *report_extra(struct fx *f, int node, const char *missing,
                                                      const Dfs__V1__FragmentSum *sum)
{
    Dfs__V1__ReportFragmentsRequest req = DFS__V1__REPORT_FRAGMENTS_REQUEST__INIT;
    req.registration = f->n[node].registration;
    char *m[] = {(char *)missing};
    Dfs__V1__FragmentSum *sums[] = {(Dfs__V1__FragmentSum *)sum};
    if (missing != NULL) {
        req.missing = m;
        req.n_missing = 1;
    }
    if (sum != NULL) {
        req.scrubbed = sums;
        req.n_scrubbed = 1;
    }
    Dfs__V1__ReportFragmentsResponse *resp = NULL;
    char *err = NULL;
    /* The node is the one whose token the call presents. */
    struct dfs_rpc_channel_opts o = {.token = f->n[node].token};
    dfs_rpc_channel *ch = NULL;
    assert_int_equal(dfs_rpc_channel_open(f->addr, &o, &ch, NULL), DFS_OK);
    int rc = dfs_rpc_unary(ch, "/dfs.v1.Metadata/ReportFragments", &req.base,
                           &dfs__v1__report_fragments_response__descriptor,
                           (ProtobufCMessage **)&resp, 20000, &err);
    dfs_rpc_channel_destroy(ch);
    if (rc != DFS_OK)
        fail_msg("report: %s", err);
    return resp;
}

/* A node's own findings: a fragment missing although a read named it; a scrubbed copy whose
   checksum is not the catalog's. */
static void test_node_reports_missing_and_scrubbed(void **state)
{
    struct fx *f = *state = fx_new(4, NULL);
    Dfs__V1__FileInfo *m = put(f, "/m", 1000, 2, 1, DFS__V1__POLICY__POLICY_RANDOM);
    Dfs__V1__FileInfo *s = put(f, "/s", 1000, 2, 1, DFS__V1__POLICY__POLICY_RANDOM);
    const char *fm = m->fragments[0]->fragment_id, *fs = s->fragments[0]->fragment_id;
    int nm = index_of(f, m->fragments[0]->replicas[0]->node_id);
    int ns = index_of(f, s->fragments[0]->replicas[0]->node_id);
    /* Missing while the node holds it (a race with a repair): asked, kept. */
    Dfs__V1__ReportFragmentsResponse *r = report_extra(f, nm, fm, NULL);
    assert_int_equal(r->marked_lost, 0);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    assert_int_equal(dfs_frag_store_delete(f->n[nm].store, fm, NULL, NULL), DFS_OK);
    r = report_extra(f, nm, fm, NULL);
    assert_int_equal(r->marked_lost, 1);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    assert_false(recorded(f, fm, f->n[nm].id));
    /* Scrubbed: the catalog's figures are fine, others are a lost copy. */
    Dfs__V1__FragmentSum sum = DFS__V1__FRAGMENT_SUM__INIT;
    sum.fragment_id = (char *)fs;
    sum.size = s->fragments[0]->size;
    sum.checksum = s->fragments[0]->checksum;
    r = report_extra(f, ns, NULL, &sum);
    assert_int_equal(r->mismatched, 0);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    sum.checksum ^= 0x100;
    r = report_extra(f, ns, NULL, &sum);
    assert_int_equal(r->mismatched, 1);
    assert_int_equal(r->marked_lost, 1);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    assert_false(recorded(f, fs, f->n[ns].id));
    struct dfs_repair_rec *v = NULL;
    size_t n = 0;
    assert_int_equal(dfs_catalog_repairs_list(f->cat, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 2);
    free(v);
    Dfs__V1__GetHealthResponse *h = health(f, false);
    assert_int_equal(h->damage_confirmed, 2);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    assert_int_equal(repair_all(f), 2);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    protobuf_c_message_free_unpacked(&s->base, NULL);
}

static uint64_t node_bytes(struct fx *f, int i)
{
    struct dfs_node_copies *cp = NULL;
    size_t n = 0;
    assert_int_equal(dfs_catalog_node_copies(f->cat, &cp, &n, NULL), DFS_OK);
    uint64_t b = 0;
    for (size_t j = 0; j < n; j++)
        if (strcmp(cp[j].node_id, f->n[i].id) == 0)
            b = cp[j].bytes;
    free(cp);
    return b;
}

static void test_rebalance_bounded_and_convergent(void **state)
{
    struct dfs_metadata_config cfg = {
        .seed = 5, .rebalance_threshold_pct = 10, .rebalance_max = 2, .rebalance_interval_ms = 1};
    struct fx *f = *state = fx_new(3, &cfg);
    Dfs__V1__FileInfo *fi[6];
    for (int i = 0; i < 6; i++) {
        char path[16];
        snprintf(path, sizeof path, "/b%d", i);
        fi[i] = put(f, path, 4000, 2, 2, DFS__V1__POLICY__POLICY_RANDOM); /* 2000 per copy */
    }
    /* Two empty nodes join. */
    f->nnodes = 5;
    node_start(f, 3);
    node_start(f, 4);
    int total = 0, rounds_with_moves = 0;
    for (int round = 0; round < 40; round++) {
        usleep(2000);
        dfs_metadata_service_maintain(f->svc);
        int moved = repair_all(f);
        assert_true(moved <= 2); /* bounded per check */
        total += moved;
        rounds_with_moves += moved > 0;
    }
    assert_true(total > 0);
    /* Converged: no ping-pong; every alive node within the threshold of the mean, or no single
       move could improve it (a copy is 2000 bytes). */
    uint64_t b[5], sum = 0, max = 0, min = UINT64_MAX;
    for (int i = 0; i < 5; i++) {
        b[i] = node_bytes(f, i);
        sum += b[i];
        max = b[i] > max ? b[i] : max;
        min = b[i] < min ? b[i] : min;
    }
    assert_int_equal(sum, 6 * 2 * 2 * 2000);
    assert_true(max - min <= 2 * 2000);
    assert_true(rounds_with_moves < 40);
    for (int round = 0; round < 5; round++) {
        dfs_metadata_service_maintain(f->svc);
        assert_int_equal(repair_all(f), 0);
    }
    Dfs__V1__GetHealthResponse *h = health(f, true);
    assert_int_equal(h->healthy, 6);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    for (int i = 0; i < 6; i++)
        protobuf_c_message_free_unpacked(&fi[i]->base, NULL);
}

int main(void)
{
    dfs_log_init("metadata_repair_test",
                 getenv("DFS_TEST_LOG") != NULL ? DFS_LOG_DEBUG : DFS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_repair_copies_and_health_counts, teardown),
        cmocka_unit_test_teardown(test_min_copy_repair_stays_in_copyset, teardown),
        cmocka_unit_test_teardown(test_buddy_repair_stays_in_group, teardown),
        cmocka_unit_test_teardown(test_report_corrupt_and_inventory, teardown),
        cmocka_unit_test_teardown(test_damage_reports_checked_by_the_node, teardown),
        cmocka_unit_test_teardown(test_node_reports_missing_and_scrubbed, teardown),
        cmocka_unit_test_teardown(test_reported_copy_not_a_source_while_checked, teardown),
        cmocka_unit_test_teardown(test_drain_moves_everything_then_decommissions, teardown),
        cmocka_unit_test_teardown(test_workers_repair_in_background_and_stop, teardown),
        cmocka_unit_test_teardown(test_restart_requeues_running, teardown),
        cmocka_unit_test_teardown(test_rebalance_bounded_and_convergent, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
