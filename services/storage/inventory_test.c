/*
 * Tests of the inventory report: a real fragment store in a temp dir and a small Metadata server
 * (RegisterNode, Heartbeat, ReportFragments; our rpc server on loopback) that records the pages.
 * The last test wires it as dfs-storage does: the heartbeat's registration hook triggers it.
 */
#include "services/storage/inventory.h"

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/token.h"
#include "dfs/v1/metadata.pb-c.h"
#include "services/rpc/loop.h"
#include "services/rpc/server.h"
#include "services/storage/heartbeat.h"
#include "storage/frag_store.h"

#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- the metadata side ---- */

#define IDS_MAX   256
#define PAGES_MAX 256

struct page {
    uint32_t page;
    bool last, full;
    size_t n;
};

struct fake {
    dfs_rpc_server *srv;
    char addr[64];
    pthread_mutex_t mu;
    /* Guarded by mu. */
    int registers;
    int forget;                   /* answer known=false to this many heartbeats */
    int fail_pages;               /* answer UNAVAILABLE to this many report calls */
    int fail_page;                /* ... only to pages with this number (-1: any) */
    struct page pages[PAGES_MAX]; /* acknowledged pages, in order */
    int npages;
    char ids[IDS_MAX][48]; /* ids of the acknowledged pages since the latest page 0 */
    int nids;
    int complete;          /* acknowledged last pages */
    uint64_t registration; /* what the latest acknowledged page carried */
};

static void register_handler(dfs_rpc_call *call, void *ctx)
{
    struct fake *fk = ctx;
    pthread_mutex_lock(&fk->mu);
    fk->registers++;
    pthread_mutex_unlock(&fk->mu);
    static uint8_t key[32] = {7, 7, 7};
    Dfs__V1__RegisterNodeResponse resp = DFS__V1__REGISTER_NODE_RESPONSE__INIT;
    resp.ticket_key.data = key;
    resp.ticket_key.len = sizeof key;
    resp.heartbeat_interval_ms = 20;
    pthread_mutex_lock(&fk->mu);
    resp.registration = 0x100 + (uint64_t)fk->registers;
    pthread_mutex_unlock(&fk->mu);
    dfs_rpc_call_reply(call, &resp.base);
}

static void heartbeat_handler(dfs_rpc_call *call, void *ctx)
{
    struct fake *fk = ctx;
    pthread_mutex_lock(&fk->mu);
    bool known = true;
    if (fk->forget > 0) {
        fk->forget--;
        known = false;
    }
    pthread_mutex_unlock(&fk->mu);
    Dfs__V1__HeartbeatResponse resp = DFS__V1__HEARTBEAT_RESPONSE__INIT;
    resp.known = known;
    resp.heartbeat_interval_ms = 20;
    dfs_rpc_call_reply(call, &resp.base);
}

static void report_handler(dfs_rpc_call *call, void *ctx)
{
    struct fake *fk = ctx;
    const Dfs__V1__ReportFragmentsRequest *req =
        (const Dfs__V1__ReportFragmentsRequest *)dfs_rpc_call_request(call);
    pthread_mutex_lock(&fk->mu);
    bool fail = fk->fail_pages > 0 && (fk->fail_page < 0 || (uint32_t)fk->fail_page == req->page);
    if (fail) {
        fk->fail_pages--;
    } else {
        if (fk->npages < PAGES_MAX)
            fk->pages[fk->npages++] = (struct page){
                .page = req->page, .last = req->last, .full = req->full, .n = req->n_present};
        if (req->page == 0)
            fk->nids = 0;
        for (size_t i = 0; i < req->n_present && fk->nids < IDS_MAX; i++)
            snprintf(fk->ids[fk->nids++], sizeof fk->ids[0], "%s", req->present[i]);
        if (req->last)
            fk->complete++;
        fk->registration = req->registration;
    }
    pthread_mutex_unlock(&fk->mu);
    if (fail) {
        dfs_rpc_call_fail(call, DFS_EUNAVAIL, "fake: not now");
        return;
    }
    Dfs__V1__ReportFragmentsResponse resp = DFS__V1__REPORT_FRAGMENTS_RESPONSE__INIT;
    dfs_rpc_call_reply(call, &resp.base);
}

static void fake_start(struct fake *fk)
{
    memset(fk, 0, sizeof *fk);
    fk->fail_page = -1;
    pthread_mutex_init(&fk->mu, NULL);
    struct dfs_rpc_server_config cfg = {.listen = "127.0.0.1:0", .threads = 1};
    assert_int_equal(dfs_rpc_server_create(&cfg, &fk->srv, NULL), DFS_OK);
    struct dfs_rpc_method methods[] = {
        {"/dfs.v1.Metadata/RegisterNode", DFS_RPC_UNARY,
         &dfs__v1__register_node_request__descriptor, register_handler, fk, 0},
        {"/dfs.v1.Metadata/Heartbeat", DFS_RPC_UNARY, &dfs__v1__heartbeat_request__descriptor,
         heartbeat_handler, fk, 0},
        {"/dfs.v1.Metadata/ReportFragments", DFS_RPC_UNARY,
         &dfs__v1__report_fragments_request__descriptor, report_handler, fk, 0},
    };
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(dfs_rpc_server_add_method(fk->srv, &methods[i], NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(fk->srv, NULL), DFS_OK);
    snprintf(fk->addr, sizeof fk->addr, "127.0.0.1:%d", dfs_rpc_server_port(fk->srv));
}

static void fake_stop(struct fake *fk)
{
    dfs_rpc_server_destroy(fk->srv);
    pthread_mutex_destroy(&fk->mu);
}

/* Wait (up to 20 s) until the fake has acknowledged n complete reports. */
static bool wait_complete(struct fake *fk, int n)
{
    int64_t until = dfs_clock_mono_ns() + 20000 * 1000000ll;
    for (;;) {
        pthread_mutex_lock(&fk->mu);
        bool ok = fk->complete >= n;
        pthread_mutex_unlock(&fk->mu);
        if (ok)
            return true;
        if (dfs_clock_mono_ns() > until)
            return false;
        usleep(5000);
    }
}

/* ---- fixture ---- */

struct fx {
    char root[PATH_MAX];
    char data[PATH_MAX + 8];
    dfs_frag_store *store;
    struct fake fk;
    _Atomic uint64_t registration; /* what the node's reports carry */
    char token[DFS_TOKEN_LEN + 1];
};

static uint64_t registration_of(void *arg)
{
    return atomic_load(&((struct fx *)arg)->registration);
}

static void make_id(int i, char *out)
{
    snprintf(out, 41, "%08x%032x", 0x1e00 + i, 7u);
}

static void put_n(struct fx *f, int n)
{
    for (int i = 0; i < n; i++) {
        char id[48];
        make_id(i, id);
        unsigned char data[10] = {(unsigned char)i};
        uint32_t crc = dfs_crc32c(0, data, sizeof data);
        dfs_frag_writer *w = NULL;
        assert_int_equal(dfs_frag_writer_begin(f->store, id, sizeof data, &w, NULL), DFS_OK);
        assert_int_equal(dfs_frag_writer_append(w, data, sizeof data, &crc, 1, NULL), DFS_OK);
        assert_int_equal(dfs_frag_writer_commit(w, NULL, NULL), DFS_OK);
    }
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    const char *base = getenv("TEST_TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(f->root, sizeof f->root, "%s/inventory_test.XXXXXX", base);
    assert_non_null(mkdtemp(f->root));
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    assert_int_equal(dfs_frag_store_open(f->data, NULL, &f->store, NULL), DFS_OK);
    fake_start(&f->fk);
    *state = f;
    return 0;
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
    fake_stop(&f->fk);
    dfs_frag_store_close(f->store);
    int rc = nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static dfs_inventory *start(struct fx *f, uint32_t page_size)
{
    struct dfs_inventory_config cfg = {
        .store = f->store,
        .metadata = f->fk.addr,
        .node_id = dfs_frag_store_node_id(f->store),
        .page_size = page_size,
        .registration = registration_of,
        .registration_arg = f,
    };
    dfs_inventory *inv = NULL;
    char *err = NULL;
    if (dfs_inventory_start(&cfg, &inv, &err) != DFS_OK)
        fail_msg("start: %s", err);
    return inv;
}

/* The latest complete report lists exactly ids 0..n-1, in pages of page_size from page 0. */
static void expect_report(struct fx *f, int n, uint32_t page_size)
{
    pthread_mutex_lock(&f->fk.mu);
    assert_int_equal(f->fk.nids, n);
    for (int i = 0; i < n; i++) {
        char id[48];
        make_id(i, id);
        bool found = false;
        for (int j = 0; j < f->fk.nids && !found; j++)
            found = strcmp(f->fk.ids[j], id) == 0;
        assert_true(found);
    }
    /* The pages of that report: the last run from page 0 to a last page. */
    int end = f->fk.npages - 1;
    assert_true(end >= 0 && f->fk.pages[end].last);
    int start = end;
    while (f->fk.pages[start].page != 0)
        start--;
    int want_pages = n == 0 ? 1 : (n + (int)page_size - 1) / (int)page_size;
    assert_int_equal(end - start + 1, want_pages);
    for (int p = start; p <= end; p++) {
        assert_int_equal(f->fk.pages[p].page, (uint32_t)(p - start));
        assert_true(f->fk.pages[p].full);
        assert_int_equal(f->fk.pages[p].last, p == end);
        if (p < end)
            assert_int_equal(f->fk.pages[p].n, page_size);
    }
    assert_int_equal(f->fk.registration, atomic_load(&f->registration));
    pthread_mutex_unlock(&f->fk.mu);
}

static void test_pages(void **state)
{
    struct fx *f = *state;
    put_n(f, 20);
    dfs_inventory *inv = start(f, 7);
    /* Nothing before a trigger. */
    usleep(100000);
    pthread_mutex_lock(&f->fk.mu);
    assert_int_equal(f->fk.npages, 0);
    pthread_mutex_unlock(&f->fk.mu);
    dfs_inventory_trigger(inv);
    assert_true(wait_complete(&f->fk, 1));
    expect_report(f, 20, 7);
    /* 21 ids: 7 + 7 + 7, the last page full. */
    put_n(f, 21);
    dfs_inventory_trigger(inv);
    assert_true(wait_complete(&f->fk, 2));
    expect_report(f, 21, 7);
    /* The fake counts a report when it answers its last page, the inventory once it has the
       answer: wait for the inventory's count too. */
    struct dfs_inventory_stats st;
    for (int i = 0; i < 1000; i++) {
        dfs_inventory_stats(inv, &st);
        if (st.reports >= 2)
            break;
        usleep(10000);
    }
    assert_int_equal(st.reports, 2);
    assert_int_equal(st.pages, 6);
    assert_int_equal(st.last_count, 21);
    dfs_inventory_stop(inv);
}

static void test_empty_store(void **state)
{
    struct fx *f = *state;
    dfs_inventory *inv = start(f, 0);
    dfs_inventory_trigger(inv);
    assert_true(wait_complete(&f->fk, 1));
    expect_report(f, 0, 8000);
    dfs_inventory_stop(inv);
}

static void test_failed_page_restarts_report(void **state)
{
    struct fx *f = *state;
    put_n(f, 10);
    pthread_mutex_lock(&f->fk.mu);
    f->fk.fail_pages = 1;
    f->fk.fail_page = 1;
    pthread_mutex_unlock(&f->fk.mu);
    dfs_inventory *inv = start(f, 4);
    dfs_inventory_trigger(inv);
    assert_true(wait_complete(&f->fk, 1));
    expect_report(f, 10, 4);
    /* As in test_pages: the fake counts the report before the inventory has its answer. */
    struct dfs_inventory_stats st;
    for (int i = 0; i < 1000; i++) {
        dfs_inventory_stats(inv, &st);
        if (st.reports >= 1)
            break;
        usleep(10000);
    }
    assert_int_equal(st.failures, 1);
    assert_int_equal(st.reports, 1);
    /* Page 0 went twice: once before the failure, once in the report that succeeded. */
    pthread_mutex_lock(&f->fk.mu);
    assert_int_equal(f->fk.npages, 1 + 3);
    pthread_mutex_unlock(&f->fk.mu);
    dfs_inventory_stop(inv);
}

/* What dfs-storage's hook does: keep the registration for the reports, ask for a report. */
struct hook {
    struct fx *f;
    dfs_inventory *inv;
};

static void trigger_hook(void *arg, const uint8_t *key, size_t len, uint64_t registration)
{
    struct hook *h = arg;
    assert_int_equal(len, 32);
    assert_int_equal(key[0], 7);
    atomic_store(&h->f->registration, registration);
    dfs_inventory_trigger(h->inv);
}

static void test_after_every_registration(void **state)
{
    struct fx *f = *state;
    put_n(f, 9);
    dfs_inventory *inv = start(f, 5);
    struct hook h = {f, inv};
    assert_int_equal(dfs_token_generate(f->token), DFS_OK);
    struct dfs_heartbeat_config hcfg = {
        .metadata = f->fk.addr,
        .node_id = dfs_frag_store_node_id(f->store),
        .address = "127.0.0.1:7777",
        .store = f->store,
        .on_registered = trigger_hook,
        .on_registered_arg = &h,
        .channel = {.token = f->token},
    };
    dfs_heartbeat *hb = NULL;
    assert_int_equal(dfs_heartbeat_start(&hcfg, &hb, NULL), DFS_OK);
    assert_true(wait_complete(&f->fk, 1));
    expect_report(f, 9, 5);
    /* The metadata service forgets the node: it registers again, and reports again. */
    pthread_mutex_lock(&f->fk.mu);
    f->fk.forget = 1;
    pthread_mutex_unlock(&f->fk.mu);
    assert_true(wait_complete(&f->fk, 2));
    pthread_mutex_lock(&f->fk.mu);
    assert_int_equal(f->fk.registers, 2);
    pthread_mutex_unlock(&f->fk.mu);
    expect_report(f, 9, 5);
    assert_int_equal(atomic_load(&f->registration), 0x102); /* the second registration's */
    dfs_heartbeat_stop(hb);
    dfs_inventory_stop(inv);
}

int main(void)
{
    dfs_log_init("inventory_test", DFS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_page_restarts_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_every_registration, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
