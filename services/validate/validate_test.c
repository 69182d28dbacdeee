/* Tests of the request validators: what each accepts, what it refuses and how it says so. */
#include "services/validate/validate.h"

#include "common/err.h"
#include "storage/frag_header.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define NODE    "0123456789abcdef0123456789abcdef"
#define NODE2   "fedcba9876543210fedcba9876543210"
#define FILE_ID "00112233445566778899aabbccddeeff"
#define FRAG    "00112233445566778899aabbccddeeff00000001"

/*
 * Check a validator's outcome: ok, or refused with a message holding `want`. The message comes by
 * address: read only after the validator (an argument) has run.
 */
static void expect(int rc, char **msgp, const char *want)
{
    char *msg = *msgp;
    *msgp = NULL;
    if (want == NULL) {
        if (rc != DFS_OK)
            fail_msg("refused: %s", msg != NULL ? msg : "(no message)");
        assert_null(msg);
        return;
    }
    assert_int_equal(rc, DFS_EINVAL);
    assert_non_null(msg);
    if (strstr(msg, want) == NULL)
        fail_msg("\"%s\" does not say \"%s\"", msg, want);
    /* Whatever the client sent, the message stays one printable line. */
    for (const char *p = msg; *p != '\0'; p++)
        assert_true((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
    free(msg);
}

static void test_register_and_heartbeat(void **state)
{
    (void)state;
    Dfs__V1__RegisterNodeRequest r = DFS__V1__REGISTER_NODE_REQUEST__INIT;
    r.node_id = NODE;
    r.address = "127.0.0.1:7100";
    r.zone = "rack-1";
    r.capacity_bytes = 1ull << 40;
    char *msg = NULL;
    expect(dfs_validate_register_node(&r, &msg), &msg, NULL);

    r.node_id = "0123456789ABCDEF0123456789ABCDEF";
    expect(dfs_validate_register_node(&r, &msg), &msg, "is not an id");
    r.node_id = NODE;
    r.address = "no-port";
    expect(dfs_validate_register_node(&r, &msg), &msg, "is not a host:port");
    r.address = "127.0.0.1:7100";
    r.zone = "a\tb";
    expect(dfs_validate_register_node(&r, &msg), &msg, "control character");
    char zone[80];
    memset(zone, 'z', sizeof zone - 1);
    zone[sizeof zone - 1] = '\0';
    r.zone = zone;
    expect(dfs_validate_register_node(&r, &msg), &msg, "at most 63");
    r.zone = "";
    r.free_bytes = UINT64_MAX;
    expect(dfs_validate_register_node(&r, &msg), &msg, "usage figure");
    r.free_bytes = 0;
    /* An enrollment names the node's own token: its id and hash, both or neither. */
    uint8_t hash[32] = {0};
    r.node_token_id = "0123456789abcdef";
    expect(dfs_validate_register_node(&r, &msg), &msg, "come together");
    r.node_token_sha256.data = hash;
    r.node_token_sha256.len = 32;
    expect(dfs_validate_register_node(&r, &msg), &msg, NULL);
    r.node_token_sha256.len = 31;
    expect(dfs_validate_register_node(&r, &msg), &msg, "must be 32 bytes, not 31");
    r.node_token_sha256.len = 32;
    r.node_token_id = "0123456789ABCDEF";
    expect(dfs_validate_register_node(&r, &msg), &msg, "is not a token id");

    Dfs__V1__HeartbeatRequest h = DFS__V1__HEARTBEAT_REQUEST__INIT;
    expect(dfs_validate_heartbeat(&h, &msg), &msg, NULL);
    h.used_bytes = (uint64_t)INT64_MAX + 1;
    expect(dfs_validate_heartbeat(&h, &msg), &msg, "usage figure");
}

static void test_create_file(void **state)
{
    (void)state;
    Dfs__V1__CreateFileRequest c = DFS__V1__CREATE_FILE_REQUEST__INIT;
    Dfs__V1__Redundancy r = DFS__V1__REDUNDANCY__INIT;
    c.path = "/a/b";
    c.size = 1000;
    char *msg = NULL;
    expect(dfs_validate_create_file(&c, &msg), &msg, NULL); /* every default */
    c.redundancy = &r;
    r.replicas = 3;
    expect(dfs_validate_create_file(&c, &msg), &msg, NULL); /* F from the cluster */

    static const struct {
        const char *path;
        const char *want;
    } paths[] = {{"", "empty path"},
                 {"/a/../b", "'..'"},
                 {"/a/", "ends with '/'"},
                 {"/\x7f", "control character"},
                 {"/\xc3", "not valid UTF-8"}};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        c.path = (char *)paths[i].path;
        expect(dfs_validate_create_file(&c, &msg), &msg, paths[i].want);
    }
    c.path = "/a";

    c.size = (uint64_t)INT64_MAX + 1;
    expect(dfs_validate_create_file(&c, &msg), &msg, "too large");
    c.size = 1000;
    c.policy = (Dfs__V1__Policy)9;
    expect(dfs_validate_create_file(&c, &msg), &msg, "unknown placement policy 9");
    c.policy = DFS__V1__POLICY__POLICY_BUDDY;

    static const struct {
        int scheme;
        uint32_t replicas, fragments, data, parity;
        const char *want; /* NULL: accepted */
    } reds[] = {
        {1, 16, 256, 0, 0, NULL},
        {1, 0, 0, 0, 0, NULL},
        {1, 17, 4, 0, 0, "replicas must be 1..16, not 17"},
        {1, 1000, 4, 0, 0, "replicas must be"},
        {1, 3, 257, 0, 0, "fragments must be 1..256, not 257"},
        {1, 3, 4, 2, 0, "replication takes no data or parity"},
        {2, 0, 0, 4, 2, NULL},
        {0, 0, 0, 4, 2, NULL}, /* K+M given: erasure code */
        {2, 0, 0, 0, 2, "need at least 1 data fragment"},
        {2, 0, 0, 31, 2, "at most 32 in all"},
        {2, 0, 0, 4, UINT32_MAX, "at most 32 in all"}, /* 4 + 2^32-1 wraps to 3 in 32 bits */
        {2, 3, 0, 4, 2, "takes no replica or fragment counts"},
        {3, 0, 0, 0, 0, "unknown redundancy scheme 3"},
        {-1, 0, 0, 0, 0, "unknown redundancy scheme -1"},
    };
    for (size_t i = 0; i < sizeof reds / sizeof reds[0]; i++) {
        r.scheme = (Dfs__V1__Redundancy__Scheme)reds[i].scheme;
        r.replicas = reds[i].replicas;
        r.fragments = reds[i].fragments;
        r.data = reds[i].data;
        r.parity = reds[i].parity;
        expect(dfs_validate_create_file(&c, &msg), &msg, reds[i].want);
    }

    /* Sizes: a fragment no node stores, and a total that no sum could hold. */
    r.scheme = DFS__V1__REDUNDANCY__SCHEME__REPLICATION;
    r.data = r.parity = 0;
    r.replicas = 3;
    r.fragments = 1;
    c.size = DFS_FRAG_MAX_SIZE;
    expect(dfs_validate_create_file(&c, &msg), &msg, NULL);
    c.size = DFS_FRAG_MAX_SIZE + 1;
    expect(dfs_validate_create_file(&c, &msg), &msg, "a storage node takes at most");
    r.fragments = 256;
    c.size = (uint64_t)INT64_MAX; /* 2^55-byte fragments: too large */
    expect(dfs_validate_create_file(&c, &msg), &msg, "a storage node takes at most");
}

static void test_file_layout(void **state)
{
    (void)state;
    char *msg = NULL;
    expect(dfs_validate_file_layout(0, 256, 16, &msg), &msg, NULL);
    expect(dfs_validate_file_layout(DFS_FRAG_MAX_SIZE, 256, 16, &msg), &msg, NULL);
    expect(dfs_validate_file_layout(DFS_FRAG_MAX_SIZE + 1, 1, 1, &msg), &msg, "takes at most");
    /* Products past INT64_MAX with operands that fit: caught without overflowing. */
    expect(dfs_validate_file_layout(DFS_FRAG_MAX_SIZE, UINT32_MAX, UINT32_MAX, &msg), &msg,
           "add up to more than");
    expect(dfs_validate_file_layout(DFS_FRAG_MAX_SIZE, 0, 7, &msg), &msg, NULL);
}

static void test_replace_commit_abort(void **state)
{
    (void)state;
    Dfs__V1__ReplaceTargetRequest rt = DFS__V1__REPLACE_TARGET_REQUEST__INIT;
    rt.file_id = FILE_ID;
    rt.failed_node_id = NODE;
    rt.fragment_index = 255;
    char *msg = NULL;
    expect(dfs_validate_replace_target(&rt, &msg), &msg, NULL);
    rt.fragment_index = 256;
    expect(dfs_validate_replace_target(&rt, &msg), &msg, "fragment_index 256 is not below 256");
    rt.fragment_index = 0;
    rt.failed_node_id = "../../etc/passwd";
    expect(dfs_validate_replace_target(&rt, &msg), &msg, "failed_node_id \"../../etc/passwd\"");

    Dfs__V1__CommitFileRequest c = DFS__V1__COMMIT_FILE_REQUEST__INIT;
    Dfs__V1__CommitFragment f0 = DFS__V1__COMMIT_FRAGMENT__INIT,
                            f1 = DFS__V1__COMMIT_FRAGMENT__INIT;
    Dfs__V1__CommitFragment *frags[] = {&f0, &f1};
    char *nodes[] = {NODE, NODE2};
    uint8_t sha[32] = {0};
    c.file_id = FILE_ID;
    c.sha256.data = sha;
    c.sha256.len = 32;
    c.fragments = frags;
    c.n_fragments = 2;
    f0.index = 0;
    f1.index = 1;
    f0.node_ids = f1.node_ids = nodes;
    f0.n_node_ids = 2;
    f1.n_node_ids = 1;
    expect(dfs_validate_commit_file(&c, &msg), &msg, NULL);
    c.sha256.len = 31;
    expect(dfs_validate_commit_file(&c, &msg), &msg, "sha256 must be 32 bytes, not 31");
    c.sha256.len = 32;
    f1.index = 0;
    expect(dfs_validate_commit_file(&c, &msg), &msg, "index 0 is listed twice");
    f1.index = 300;
    expect(dfs_validate_commit_file(&c, &msg), &msg, "index 300 is not below 256");
    f1.index = 1;
    f1.n_node_ids = 0;
    expect(dfs_validate_commit_file(&c, &msg), &msg, "1..32 acknowledging nodes, not 0");
    f1.n_node_ids = 1;
    char *twice[] = {NODE, NODE};
    f0.node_ids = twice;
    expect(dfs_validate_commit_file(&c, &msg), &msg, "is listed twice");
    f0.node_ids = nodes;
    f0.size = DFS_FRAG_MAX_SIZE + 1;
    expect(dfs_validate_commit_file(&c, &msg), &msg, "fragments[0]: size");
    f0.size = 0;
    c.n_fragments = 0;
    expect(dfs_validate_commit_file(&c, &msg), &msg, "1..256 fragments, not 0");
    c.n_fragments = 2;
    char *bad[] = {"x"};
    f1.node_ids = bad;
    expect(dfs_validate_commit_file(&c, &msg), &msg, "fragment 1: node_ids \"x\" is not an id");
    f1.node_ids = nodes;
    /* Receipts: none (the service refuses the commit), or one of 32 bytes per node. */
    uint8_t rb[32] = {0};
    ProtobufCBinaryData receipts[2] = {{32, rb}, {32, rb}};
    f0.receipts = receipts;
    f0.n_receipts = 2;
    expect(dfs_validate_commit_file(&c, &msg), &msg, NULL);
    f0.n_receipts = 1;
    expect(dfs_validate_commit_file(&c, &msg), &msg, "fragment 0: 1 receipts for 2 nodes");
    f0.n_receipts = 2;
    receipts[1].len = 33;
    expect(dfs_validate_commit_file(&c, &msg), &msg, "receipts[1] is 33 bytes, not 32");

    Dfs__V1__AbortFileRequest a = DFS__V1__ABORT_FILE_REQUEST__INIT;
    a.file_id = FILE_ID;
    expect(dfs_validate_abort_file(&a, &msg), &msg, NULL);
    a.file_id = FILE_ID "0";
    expect(dfs_validate_abort_file(&a, &msg), &msg, "is not an id");
}

static void test_paths_listing_nodes_health(void **state)
{
    (void)state;
    Dfs__V1__GetFileRequest g = DFS__V1__GET_FILE_REQUEST__INIT;
    g.path = "/ok";
    char *msg = NULL;
    expect(dfs_validate_get_file(&g, &msg), &msg, NULL);
    g.path = "/";
    expect(dfs_validate_get_file(&g, &msg), &msg, "names no file");
    Dfs__V1__DeleteFileRequest d = DFS__V1__DELETE_FILE_REQUEST__INIT;
    d.path = "/x/./y";
    expect(dfs_validate_delete_file(&d, &msg), &msg, "'.'");

    Dfs__V1__ListFilesRequest l = DFS__V1__LIST_FILES_REQUEST__INIT;
    expect(dfs_validate_list_files(&l, &msg), &msg, NULL);
    l.prefix = "/d/";
    l.page_token = "/d/f3";
    l.page_size = UINT32_MAX; /* capped, not refused */
    expect(dfs_validate_list_files(&l, &msg), &msg, NULL);
    l.page_token = "d//f3";
    expect(dfs_validate_list_files(&l, &msg), &msg, "page_token \"d//f3\" is not one");
    l.page_token = "";
    l.prefix = "/a/../";
    expect(dfs_validate_list_files(&l, &msg), &msg, "'..'");

    Dfs__V1__SetNodeStateRequest s = DFS__V1__SET_NODE_STATE_REQUEST__INIT;
    s.node_id = "0123";
    s.state = DFS__V1__NODE_STATE__NODE_DRAINING;
    expect(dfs_validate_set_node_state(&s, &msg), &msg, NULL);
    s.state = DFS__V1__NODE_STATE__NODE_DEAD;
    expect(dfs_validate_set_node_state(&s, &msg), &msg, "not NODE_DEAD (3)");
    s.state = (Dfs__V1__NodeState)77;
    expect(dfs_validate_set_node_state(&s, &msg), &msg, "not an unknown value (77)");
    s.state = DFS__V1__NODE_STATE__NODE_ALIVE;
    s.node_id = "";
    expect(dfs_validate_set_node_state(&s, &msg), &msg, "prefix of one");
    s.node_id = NODE "0";
    expect(dfs_validate_set_node_state(&s, &msg), &msg, "prefix of one");

    Dfs__V1__ReportFragmentsRequest r = DFS__V1__REPORT_FRAGMENTS_REQUEST__INIT;
    char *ids[] = {FRAG, "nope"};
    r.corrupt = ids;
    r.n_corrupt = 1;
    expect(dfs_validate_report_fragments(&r, &msg), &msg, NULL);
    r.n_corrupt = 2;
    expect(dfs_validate_report_fragments(&r, &msg), &msg,
           "corrupt[1]: invalid fragment id \"nope\"");
    r.n_corrupt = DFS_VALIDATE_REPORT_MAX + 1; /* counted before any element is read */
    expect(dfs_validate_report_fragments(&r, &msg), &msg, "at most 100000");
    r.n_corrupt = 0;
    r.present = ids;
    r.n_present = 1;
    expect(dfs_validate_report_fragments(&r, &msg), &msg, "belong to a full inventory");
    r.full = true;
    r.last = true;
    expect(dfs_validate_report_fragments(&r, &msg), &msg, NULL);
    r.missing = ids;
    r.n_missing = 2;
    expect(dfs_validate_report_fragments(&r, &msg), &msg,
           "missing[1]: invalid fragment id \"nope\"");
    r.n_missing = 1;
    Dfs__V1__FragmentSum sum = DFS__V1__FRAGMENT_SUM__INIT, *sums[] = {&sum};
    sum.fragment_id = FRAG;
    sum.size = 1 << 20;
    r.scrubbed = sums;
    r.n_scrubbed = 1;
    expect(dfs_validate_report_fragments(&r, &msg), &msg, NULL);
    sum.size = UINT64_MAX;
    expect(dfs_validate_report_fragments(&r, &msg), &msg, "scrubbed[0]: size");
    sum.size = 1;
    sum.fragment_id = "nope";
    expect(dfs_validate_report_fragments(&r, &msg), &msg, "scrubbed[0]: invalid fragment id");

    Dfs__V1__ReportDamageRequest dr = DFS__V1__REPORT_DAMAGE_REQUEST__INIT;
    expect(dfs_validate_report_damage(&dr, &msg), &msg, "1 to 256 copies, not 0");
    Dfs__V1__Ticket t = DFS__V1__TICKET__INIT;
    Dfs__V1__DamagedCopy dc = DFS__V1__DAMAGED_COPY__INIT, *dcs[] = {&dc};
    dr.copies = dcs;
    dr.n_copies = 1;
    expect(dfs_validate_report_damage(&dr, &msg), &msg, "copies[0] has no ticket");
    dc.ticket = &t;
    expect(dfs_validate_report_damage(&dr, &msg), &msg, "DAMAGE_UNSPECIFIED is not a damage");
    dc.damage = DFS__V1__DAMAGE__DAMAGE_MISSING;
    expect(dfs_validate_report_damage(&dr, &msg), &msg, NULL);
    char long_detail[DFS_VALIDATE_DETAIL_MAX + 2];
    memset(long_detail, 'x', sizeof long_detail - 1);
    long_detail[sizeof long_detail - 1] = '\0';
    dc.detail = long_detail;
    expect(dfs_validate_report_damage(&dr, &msg), &msg, "over 256 bytes");
    dc.detail = "block 3";
    dr.n_copies = DFS_VALIDATE_DAMAGE_MAX + 1; /* counted before any element is read */
    expect(dfs_validate_report_damage(&dr, &msg), &msg, "not 257");

    Dfs__V1__GetHealthRequest h = DFS__V1__GET_HEALTH_REQUEST__INIT;
    h.list = DFS_VALIDATE_HEALTH_LIST_MAX;
    expect(dfs_validate_get_health(&h, &msg), &msg, NULL);
    h.list = UINT32_MAX;
    expect(dfs_validate_get_health(&h, &msg), &msg, "at most 10000");
}

static void test_storage_requests(void **state)
{
    (void)state;
    Dfs__V1__FragmentHeader h = DFS__V1__FRAGMENT_HEADER__INIT;
    char *fwd[DFS_VALIDATE_FORWARD_MAX + 1];
    char addrs[DFS_VALIDATE_FORWARD_MAX + 1][32];
    for (int i = 0; i <= DFS_VALIDATE_FORWARD_MAX; i++) {
        snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", 7000 + i);
        fwd[i] = addrs[i];
    }
    Dfs__V1__Ticket tickets[DFS_VALIDATE_FORWARD_MAX + 1];
    Dfs__V1__Ticket *tptrs[DFS_VALIDATE_FORWARD_MAX + 1];
    for (int i = 0; i <= DFS_VALIDATE_FORWARD_MAX; i++) {
        dfs__v1__ticket__init(&tickets[i]);
        tptrs[i] = &tickets[i];
    }
    h.fragment_id = FRAG;
    h.size = DFS_FRAG_MAX_SIZE;
    h.forward = fwd;
    h.n_forward = DFS_VALIDATE_FORWARD_MAX;
    h.forward_tickets = tptrs;
    h.n_forward_tickets = DFS_VALIDATE_FORWARD_MAX;
    h.hop_tickets = tptrs;
    h.n_hop_tickets = DFS_VALIDATE_FORWARD_MAX;
    h.forward_rate = DFS_VALIDATE_FORWARD_RATE_MIN;
    char *msg = NULL;
    expect(dfs_validate_fragment_header(&h, &msg), &msg, NULL);
    /* One ticket per forward entry (each next node checks its own), one hop ticket each. */
    h.n_forward_tickets = 1;
    expect(dfs_validate_fragment_header(&h, &msg), &msg, "but 1 forward tickets (one each)");
    h.n_forward_tickets = DFS_VALIDATE_FORWARD_MAX;
    h.n_hop_tickets = 0;
    expect(dfs_validate_fragment_header(&h, &msg), &msg, "but 0 hop tickets (one each)");
    h.n_forward = DFS_VALIDATE_FORWARD_MAX + 1;
    expect(dfs_validate_fragment_header(&h, &msg), &msg, "at most 16 are allowed");
    h.n_forward = 2;
    h.n_forward_tickets = 2;
    h.n_hop_tickets = 2;
    h.forward_rate = 1;
    expect(dfs_validate_fragment_header(&h, &msg), &msg, "forward_rate 1 is below 1024");
    h.forward_rate = 0;
    fwd[1] = fwd[0];
    expect(dfs_validate_fragment_header(&h, &msg), &msg, "twice (a loop)");
    fwd[1] = "host:0";
    expect(dfs_validate_fragment_header(&h, &msg), &msg,
           "forward[1] \"host:0\" is not a host:port");
    h.n_forward = 0;
    h.n_forward_tickets = 0;
    h.n_hop_tickets = 0;
    h.size = DFS_FRAG_MAX_SIZE + 1;
    expect(dfs_validate_fragment_header(&h, &msg), &msg, "is above the largest");
    h.fragment_id = "../../../../etc/passwd";
    expect(dfs_validate_fragment_header(&h, &msg), &msg, "invalid fragment id \"../../../../etc");

    expect(dfs_validate_put_data(0, 0, &msg), &msg, NULL);
    expect(dfs_validate_put_data(1u << 20, 16, &msg), &msg, NULL);
    expect(dfs_validate_put_data((1u << 20) + 1, 17, &msg), &msg, "at most 1048576");
    expect(dfs_validate_put_data(65537, 1, &msg), &msg, "need 2 crcs");

    Dfs__V1__GetFragmentRequest g = DFS__V1__GET_FRAGMENT_REQUEST__INIT;
    g.fragment_id = FRAG;
    g.offset = DFS_FRAG_MAX_SIZE;
    g.length = DFS_FRAG_MAX_SIZE;
    expect(dfs_validate_get_fragment(&g, &msg), &msg, NULL);
    g.offset = UINT64_MAX; /* well-formed: the handler answers OUT_OF_RANGE */
    expect(dfs_validate_get_fragment(&g, &msg), &msg, NULL);
    g.fragment_id = "";
    expect(dfs_validate_get_fragment(&g, &msg), &msg, "invalid fragment id \"\"");
    Dfs__V1__DeleteFragmentRequest del = DFS__V1__DELETE_FRAGMENT_REQUEST__INIT;
    del.fragment_id = FRAG;
    expect(dfs_validate_delete_fragment(&del, &msg), &msg, NULL);
    Dfs__V1__StatFragmentRequest st = DFS__V1__STAT_FRAGMENT_REQUEST__INIT;
    st.fragment_id = "00112233445566778899AABBCCDDEEFF00000001";
    expect(dfs_validate_stat_fragment(&st, &msg), &msg, "invalid fragment id");
}

static void test_repair(void **state)
{
    (void)state;
    Dfs__V1__RepairFragmentRequest r = DFS__V1__REPAIR_FRAGMENT_REQUEST__INIT;
    char *sources[] = {"127.0.0.1:7001", "bad host:1"};
    r.fragment_id = FRAG;
    r.size = 1 << 20;
    Dfs__V1__Ticket t0 = DFS__V1__TICKET__INIT, t1 = DFS__V1__TICKET__INIT;
    Dfs__V1__Ticket *tickets[] = {&t0, &t1};
    r.sources = sources;
    r.n_sources = 1;
    r.source_tickets = tickets;
    r.n_source_tickets = 1;
    char *msg = NULL;
    expect(dfs_validate_repair_fragment(&r, &msg), &msg, NULL);
    r.n_sources = 2;
    expect(dfs_validate_repair_fragment(&r, &msg), &msg, "2 sources but 1 source tickets");
    r.n_source_tickets = 2;
    expect(dfs_validate_repair_fragment(&r, &msg), &msg, "source 1 \"bad host:1\"");
    r.n_sources = DFS_VALIDATE_SOURCES_MAX + 1;
    expect(dfs_validate_repair_fragment(&r, &msg), &msg, "at most 256 are allowed");
    r.n_sources = 0;

    Dfs__V1__ErasureRebuild e = DFS__V1__ERASURE_REBUILD__INIT;
    Dfs__V1__ErasureSource s0 = DFS__V1__ERASURE_SOURCE__INIT;
    Dfs__V1__ErasureSource *srcs[] = {&s0};
    r.erasure = &e;
    e.data = 4;
    e.parity = 2;
    e.cell_size = 1 << 18;
    e.index = 5;
    e.sources = srcs;
    e.n_sources = 1;
    s0.index = 0;
    s0.fragment_id = FRAG;
    s0.address = "127.0.0.1:7002";
    expect(dfs_validate_repair_fragment(&r, &msg), &msg, NULL);
    e.parity = UINT32_MAX; /* wraps in 32 bits */
    expect(dfs_validate_repair_fragment(&r, &msg), &msg, "K+M <= 32");
    e.parity = 2;
    e.index = 6;
    expect(dfs_validate_repair_fragment(&r, &msg), &msg, "index 6 is not below K+M = 6");
    e.index = 5;
    e.cell_size = 3;
    expect(dfs_validate_repair_fragment(&r, &msg), &msg, "divide the size");
    e.cell_size = 1 << 18;
    s0.index = 5;
    expect(dfs_validate_repair_fragment(&r, &msg), &msg, "source 0 has index 5");
}

static void test_dispatch(void **state)
{
    (void)state;
    Dfs__V1__StatRequest st = DFS__V1__STAT_REQUEST__INIT;
    assert_int_equal(dfs_validate_request(&st.base, NULL), DFS_OK);
    Dfs__V1__GetReplicasRequest gr = DFS__V1__GET_REPLICAS_REQUEST__INIT;
    assert_int_equal(dfs_validate_request(&gr.base, NULL), DFS_OK);
    assert_int_equal(dfs_validate_get_replicas(&gr, NULL), DFS_OK);
    Dfs__V1__AddReplicaRequest ar = DFS__V1__ADD_REPLICA_REQUEST__INIT;
    ar.id = 4;
    ar.raft_address = "127.0.0.1:7001";
    ar.grpc_address = "127.0.0.1:7000";
    assert_int_equal(dfs_validate_request(&ar.base, NULL), DFS_OK);
    ar.grpc_address = "127.0.0.1:7000=x:1";
    assert_int_equal(dfs_validate_add_replica(&ar, NULL), DFS_EINVAL);
    ar.grpc_address = "nohost";
    assert_int_equal(dfs_validate_add_replica(&ar, NULL), DFS_EINVAL);
    ar.grpc_address = "127.0.0.1:7000";
    ar.id = 0;
    assert_int_equal(dfs_validate_add_replica(&ar, NULL), DFS_EINVAL);
    Dfs__V1__RemoveReplicaRequest rr = DFS__V1__REMOVE_REPLICA_REQUEST__INIT;
    assert_int_equal(dfs_validate_request(&rr.base, NULL), DFS_EINVAL);
    rr.id = 2;
    assert_int_equal(dfs_validate_remove_replica(&rr, NULL), DFS_OK);
    Dfs__V1__AbortFileRequest a = DFS__V1__ABORT_FILE_REQUEST__INIT;
    char *msg = NULL;
    expect(dfs_validate_request(&a.base, &msg), &msg, "file_id \"\" is not an id");
    Dfs__V1__PutFragmentRequest p = DFS__V1__PUT_FRAGMENT_REQUEST__INIT;
    uint8_t data[10] = {0};
    p.data.data = data;
    p.data.len = sizeof data;
    expect(dfs_validate_request(&p.base, &msg), &msg, "need 1 crcs");
    Dfs__V1__Node n = DFS__V1__NODE__INIT; /* a message, but no request */
    expect(dfs_validate_request(&n.base, &msg), &msg, "dfs.v1.Node is not a request");
}

/* The mount's calls (issue 18): Rename, SetAttributes, GetAttributes. */
static void test_rename_and_attributes(void **state)
{
    (void)state;
    char *msg = NULL;
    Dfs__V1__RenameRequest r = DFS__V1__RENAME_REQUEST__INIT;
    r.from = "/d/a";
    r.to = "/e/b";
    expect(dfs_validate_rename(&r, &msg), &msg, NULL);
    r.to = "/d/a"; /* moves nothing, but well-formed */
    expect(dfs_validate_rename(&r, &msg), &msg, NULL);
    r.to = "/d/ab"; /* a sibling that shares the prefix, not a child */
    expect(dfs_validate_rename(&r, &msg), &msg, NULL);
    r.to = "/d/a/x";
    expect(dfs_validate_rename(&r, &msg), &msg, "inside itself");
    r.to = "d//a/./x"; /* the same, not canonical */
    expect(dfs_validate_rename(&r, &msg), &msg, "'.'");
    r.to = "d//a/x";
    expect(dfs_validate_rename(&r, &msg), &msg, "inside itself");
    r.to = "/e/../../b";
    expect(dfs_validate_rename(&r, &msg), &msg, "'..'");
    r.from = "/";
    r.to = "/b";
    expect(dfs_validate_rename(&r, &msg), &msg, "names no file");
    r.from = "";
    expect(dfs_validate_rename(&r, &msg), &msg, "");

    Dfs__V1__SetAttributesRequest s = DFS__V1__SET_ATTRIBUTES_REQUEST__INIT;
    s.path = "/d/a";
    expect(dfs_validate_set_attributes(&s, &msg), &msg, NULL);
    Dfs__V1__PathAttributes a = DFS__V1__PATH_ATTRIBUTES__INIT;
    a.has_mode = true;
    a.mode = 07777;
    a.has_mtime = true;
    a.mtime_ms = -1; /* before 1970 is a time like any */
    s.attributes = &a;
    expect(dfs_validate_set_attributes(&s, &msg), &msg, NULL);
    a.mode = 010000; /* a file type bit */
    expect(dfs_validate_set_attributes(&s, &msg), &msg, "more than permission bits");
    a.has_mode = false; /* unset: the value is not looked at */
    expect(dfs_validate_set_attributes(&s, &msg), &msg, NULL);
    a.has_mode = true;
    s.remove = true; /* a removal ignores the attributes */
    expect(dfs_validate_set_attributes(&s, &msg), &msg, NULL);
    s.path = "/";
    expect(dfs_validate_set_attributes(&s, &msg), &msg, "names no file");
    s.path = "/x/../y";
    expect(dfs_validate_set_attributes(&s, &msg), &msg, "'..'");

    Dfs__V1__GetAttributesRequest g = DFS__V1__GET_ATTRIBUTES_REQUEST__INIT;
    g.path = "/";
    g.list_dirs = true;
    expect(dfs_validate_get_attributes(&g, &msg), &msg, NULL);
    g.path = "/d";
    expect(dfs_validate_get_attributes(&g, &msg), &msg, NULL);
    g.path = "/d/./e";
    expect(dfs_validate_get_attributes(&g, &msg), &msg, "'.'");
    g.path = "";
    expect(dfs_validate_request(&g.base, &msg), &msg, "");
    r.from = "/d";
    r.to = "/d/sub";
    expect(dfs_validate_request(&r.base, &msg), &msg, "inside itself");
    s.path = "/ok";
    s.remove = false;
    expect(dfs_validate_request(&s.base, &msg), &msg, "more than permission bits");
}

static void test_quoting(void **state)
{
    (void)state;
    /* A long, hostile id is quoted short and printable, never copied whole into the message. */
    char id[4000];
    memset(id, '"', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    id[3] = '\n';
    Dfs__V1__DeleteFragmentRequest d = DFS__V1__DELETE_FRAGMENT_REQUEST__INIT;
    d.fragment_id = id;
    char *msg = NULL;
    assert_int_equal(dfs_validate_delete_fragment(&d, &msg), DFS_EINVAL);
    assert_true(strlen(msg) < 200);
    assert_non_null(strstr(msg, "????????..."));
    expect(DFS_EINVAL, &msg, "invalid fragment id");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_heartbeat),
        cmocka_unit_test(test_create_file),
        cmocka_unit_test(test_file_layout),
        cmocka_unit_test(test_replace_commit_abort),
        cmocka_unit_test(test_paths_listing_nodes_health),
        cmocka_unit_test(test_storage_requests),
        cmocka_unit_test(test_repair),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_rename_and_attributes),
        cmocka_unit_test(test_quoting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
