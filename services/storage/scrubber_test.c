/*
 * Tests of the scrubber: a real fragment store in a temp dir, bytes flipped on disk, and the
 * reports received by a small Metadata.ReportFragments server (our rpc server on loopback: the
 * peer's API the scrubber talks to).
 */
#include "services/storage/scrubber.h"

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "dfs/v1/metadata.pb-c.h"
#include "services/rpc/loop.h"
#include "services/rpc/server.h"
#include "storage/frag_store.h"

#include <fcntl.h>
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

#define MIB ((size_t)1 << 20)

/* ---- the metadata side: ReportFragments, recorded ---- */

#define SEEN_MAX 64

struct sink {
    dfs_rpc_server *srv;
    char addr[64];
    pthread_mutex_t mu;
    /* Guarded by mu. */
    int calls;               /* every call, failed ones included */
    int fail;                /* answer UNAVAILABLE to this many calls (-1: to all) */
    uint64_t registration;   /* what the latest acknowledged report carried */
    char seen[SEEN_MAX][48]; /* corrupt ids acknowledged, in order */
    int nseen;
    /* The last scrubbed fragment reported of each id (by fx index), and how many in all. */
    uint64_t sum_size[SEEN_MAX];
    uint32_t sum_checksum[SEEN_MAX];
    char sum_id[SEEN_MAX][48];
    int nsums_ids, nsums;
};

/* Record a scrubbed fragment's figures under its id (under k->mu). */
static void sink_sum(struct sink *k, const Dfs__V1__FragmentSum *m)
{
    int i = 0;
    while (i < k->nsums_ids && strcmp(k->sum_id[i], m->fragment_id) != 0)
        i++;
    if (i == SEEN_MAX)
        return;
    if (i == k->nsums_ids)
        snprintf(k->sum_id[k->nsums_ids++], sizeof k->sum_id[0], "%s", m->fragment_id);
    k->sum_size[i] = m->size;
    k->sum_checksum[i] = m->checksum;
    k->nsums++;
}

static void report_handler(dfs_rpc_call *call, void *ctx)
{
    struct sink *k = ctx;
    const Dfs__V1__ReportFragmentsRequest *req =
        (const Dfs__V1__ReportFragmentsRequest *)dfs_rpc_call_request(call);
    pthread_mutex_lock(&k->mu);
    k->calls++;
    bool fail = k->fail != 0;
    if (k->fail > 0)
        k->fail--;
    if (!fail) {
        k->registration = req->registration;
        for (size_t i = 0; i < req->n_corrupt && k->nseen < SEEN_MAX; i++)
            snprintf(k->seen[k->nseen++], sizeof k->seen[0], "%s", req->corrupt[i]);
        for (size_t i = 0; i < req->n_scrubbed; i++)
            sink_sum(k, req->scrubbed[i]);
    }
    pthread_mutex_unlock(&k->mu);
    if (fail) {
        dfs_rpc_call_fail(call, DFS_EUNAVAIL, "sink: not now");
        return;
    }
    Dfs__V1__ReportFragmentsResponse resp = DFS__V1__REPORT_FRAGMENTS_RESPONSE__INIT;
    dfs_rpc_call_reply(call, &resp.base);
}

static void sink_start(struct sink *k)
{
    memset(k, 0, sizeof *k);
    pthread_mutex_init(&k->mu, NULL);
    struct dfs_rpc_server_config cfg = {.listen = "127.0.0.1:0", .threads = 1};
    assert_int_equal(dfs_rpc_server_create(&cfg, &k->srv, NULL), DFS_OK);
    struct dfs_rpc_method m = {"/dfs.v1.Metadata/ReportFragments",
                               DFS_RPC_UNARY,
                               &dfs__v1__report_fragments_request__descriptor,
                               report_handler,
                               k,
                               0};
    assert_int_equal(dfs_rpc_server_add_method(k->srv, &m, NULL), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(k->srv, NULL), DFS_OK);
    snprintf(k->addr, sizeof k->addr, "127.0.0.1:%d", dfs_rpc_server_port(k->srv));
}

static void sink_stop(struct sink *k)
{
    dfs_rpc_server_destroy(k->srv);
    pthread_mutex_destroy(&k->mu);
}

static bool sink_has(struct sink *k, const char *id)
{
    pthread_mutex_lock(&k->mu);
    bool has = false;
    for (int i = 0; i < k->nseen && !has; i++)
        has = strcmp(k->seen[i], id) == 0;
    pthread_mutex_unlock(&k->mu);
    return has;
}

static int sink_nseen(struct sink *k)
{
    pthread_mutex_lock(&k->mu);
    int n = k->nseen;
    pthread_mutex_unlock(&k->mu);
    return n;
}

/* ---- fixture: a store with fragments 0..NFRAG-1 ---- */

#define NFRAG 5

struct fx {
    char root[PATH_MAX];
    char data[PATH_MAX + 8];
    dfs_frag_store *store;
    char id[NFRAG][48];
    size_t size[NFRAG];
    uint64_t total;
    struct sink k;
};

static void put(dfs_frag_store *st, const char *id, size_t n, unsigned seed)
{
    unsigned char *data = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 31 + seed);
    dfs_frag_writer *w = NULL;
    assert_int_equal(dfs_frag_writer_begin(st, id, n, &w, NULL), DFS_OK);
    uint32_t crcs[16];
    for (size_t off = 0; off < n; off += MIB) {
        size_t k = n - off < MIB ? n - off : MIB;
        dfs_crc32c_blocks(data + off, k, crcs);
        assert_int_equal(
            dfs_frag_writer_append(w, data + off, k, crcs, dfs_crc32c_nblocks(k), NULL), DFS_OK);
    }
    assert_int_equal(dfs_frag_writer_commit(w, NULL, NULL), DFS_OK);
    free(data);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    const char *base = getenv("TEST_TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(f->root, sizeof f->root, "%s/scrubber_test.XXXXXX", base);
    assert_non_null(mkdtemp(f->root));
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    assert_int_equal(dfs_frag_store_open(f->data, NULL, &f->store, NULL), DFS_OK);
    size_t sizes[NFRAG] = {0, 1000, 3 * MIB + 5, 70000, 2 * MIB};
    for (int i = 0; i < NFRAG; i++) {
        snprintf(f->id[i], sizeof f->id[i], "%08x00000000000000000000000000000000", 0x5c00 + i);
        f->size[i] = sizes[i];
        f->total += sizes[i];
        put(f->store, f->id[i], sizes[i], (unsigned)i);
    }
    sink_start(&f->k);
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
    sink_stop(&f->k);
    dfs_frag_store_close(f->store);
    int rc = nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static void frag_path(struct fx *f, int i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/fragments/%.2s/%.2s/%s", f->data, f->id[i], f->id[i] + 2, f->id[i]);
}

/* Flip one bit of fragment i's data at offset at. */
static void flip(struct fx *f, int i, off_t at)
{
    char path[PATH_MAX + 128];
    frag_path(f, i, path, sizeof path);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, DFS_FRAG_HEADER_SIZE + at), 1);
    c ^= 0x01;
    assert_int_equal(pwrite(fd, &c, 1, DFS_FRAG_HEADER_SIZE + at), 1);
    close(fd);
}

/* The node's registration, as dfs-storage hands it to the scrubber. */
static uint64_t registration_of(void *arg)
{
    (void)arg;
    return 0x5c7b;
}

static atomic_int passes_seen;

static void pass_seen(void *arg)
{
    (void)arg;
    atomic_fetch_add(&passes_seen, 1);
}

static dfs_scrubber *start(struct fx *f, uint64_t rate, int64_t interval_ms, uint32_t batch)
{
    atomic_store(&passes_seen, 0);
    struct dfs_scrubber_config cfg = {
        .on_pass = pass_seen,
        .store = f->store,
        .metadata = f->k.addr,
        .node_id = dfs_frag_store_node_id(f->store),
        .registration = registration_of,
        .rate = rate,
        .interval_ms = interval_ms,
        .first_delay_ms = 0,
        .report_batch = batch,
    };
    dfs_scrubber *s = NULL;
    char *err = NULL;
    if (dfs_scrubber_start(&cfg, &s, &err) != DFS_OK)
        fail_msg("start: %s", err);
    return s;
}

static struct dfs_scrubber_stats stats_of(dfs_scrubber *s)
{
    struct dfs_scrubber_stats st;
    dfs_scrubber_stats(s, &st);
    return st;
}

/* Wait (up to timeout_ms) until cond(arg) holds. */
static bool wait_for(bool (*cond)(void *), void *arg, int64_t timeout_ms)
{
    int64_t until = dfs_clock_mono_ns() + timeout_ms * 1000000;
    while (!cond(arg)) {
        if (dfs_clock_mono_ns() > until)
            return false;
        usleep(5000);
    }
    return true;
}

static bool two_passes(void *arg)
{
    return stats_of(arg).passes >= 2;
}

static uint32_t checksum_of(const unsigned char *data, size_t n)
{
    size_t nb = dfs_crc32c_nblocks(n);
    uint32_t *crcs = malloc((nb + 1) * sizeof *crcs);
    dfs_crc32c_blocks(data, n, crcs);
    uint32_t c = dfs_crc32c_of_table(crcs, nb);
    free(crcs);
    return c;
}

/* The checksum of fragment i as put() wrote it. */
static uint32_t checksum_of_fragment(struct fx *f, int i)
{
    unsigned char *data = malloc(f->size[i] + 1);
    for (size_t b = 0; b < f->size[i]; b++)
        data[b] = (unsigned char)(b * 31 + (unsigned)i);
    uint32_t c = checksum_of(data, f->size[i]);
    free(data);
    return c;
}

static void test_clean_store(void **state)
{
    struct fx *f = *state;
    dfs_scrubber *s = start(f, 256 * MIB, 50, 0);
    assert_true(wait_for(two_passes, s, 20000));
    dfs_scrubber_stop(s);
    assert_true(atomic_load(&passes_seen) >= 2); /* the node's inventory follows every pass */
    assert_int_equal(sink_nseen(&f->k), 0);
    /* Nothing corrupt; every fragment's size and checksum went to the service at each pass (one
       call a pass), for it to compare with the catalog. */
    pthread_mutex_lock(&f->k.mu);
    assert_true(f->k.calls >= 2);
    assert_true(f->k.nsums >= 2 * NFRAG);
    assert_int_equal(f->k.nsums_ids, NFRAG);
    for (int i = 0; i < NFRAG; i++) {
        int j = 0;
        while (j < NFRAG && strcmp(f->k.sum_id[j], f->id[i]) != 0)
            j++;
        assert_true(j < NFRAG);
        assert_int_equal(f->k.sum_size[j], f->size[i]);
        assert_int_equal(f->k.sum_checksum[j], checksum_of_fragment(f, i));
    }
    pthread_mutex_unlock(&f->k.mu);
}

struct want {
    struct fx *f;
    int n;
};

static bool sink_reached(void *arg)
{
    struct want *w = arg;
    return sink_nseen(&w->f->k) >= w->n;
}

static bool three_reported(void *arg)
{
    return stats_of(arg).reported >= 3;
}

static void test_flipped_byte_reported(void **state)
{
    struct fx *f = *state;
    flip(f, 2, (off_t)(2 * MIB + 100)); /* fragment 2, block 32 */
    flip(f, 3, 5);
    /* Fragment 4: a truncated file (its length fits no fragment any more). */
    char path[PATH_MAX + 128];
    frag_path(f, 4, path, sizeof path);
    assert_int_equal(truncate(path, 1000), 0);
    /* The first two report calls fail: the ids are reported later all the same. */
    pthread_mutex_lock(&f->k.mu);
    f->k.fail = 2;
    pthread_mutex_unlock(&f->k.mu);
    dfs_scrubber *s = start(f, 256 * MIB, 200, 2);
    struct want w = {f, 3};
    assert_true(wait_for(sink_reached, &w, 20000));
    assert_true(sink_has(&f->k, f->id[2]));
    assert_true(sink_has(&f->k, f->id[3]));
    assert_true(sink_has(&f->k, f->id[4]));
    assert_false(sink_has(&f->k, f->id[0]));
    assert_false(sink_has(&f->k, f->id[1]));
    pthread_mutex_lock(&f->k.mu);
    assert_int_equal(f->k.registration, 0x5c7b);
    assert_true(f->k.calls >= 3);
    pthread_mutex_unlock(&f->k.mu);
    /* The sink records a report before it answers; the scrubber counts it once the answer came. */
    assert_true(wait_for(three_reported, s, 20000));
    struct dfs_scrubber_stats st = stats_of(s);
    assert_true(st.corrupt_found >= 3);
    assert_true(st.reported >= 3);
    assert_true(st.fragments_checked >= NFRAG);
    dfs_scrubber_stop(s);
    /* The corrupt data is left in place: repairing it is the metadata service's call. */
    assert_int_equal(access(path, F_OK), 0);
}

static bool found_one(void *arg)
{
    return stats_of(arg).corrupt_found >= 1;
}

static bool nothing_pending(void *arg)
{
    return stats_of(arg).report_pending == 0;
}

static void test_deleted_meanwhile_not_reported(void **state)
{
    struct fx *f = *state;
    flip(f, 1, 10);
    pthread_mutex_lock(&f->k.mu);
    f->k.fail = -1;
    pthread_mutex_unlock(&f->k.mu);
    dfs_scrubber *s = start(f, 256 * MIB, 60000, 0);
    assert_true(wait_for(found_one, s, 20000));
    assert_int_equal(dfs_frag_store_delete(f->store, f->id[1], NULL, NULL), DFS_OK);
    pthread_mutex_lock(&f->k.mu);
    f->k.fail = 0;
    pthread_mutex_unlock(&f->k.mu);
    /* The retry (after its 1 s backoff) finds the fragment gone and drops it. */
    assert_true(wait_for(nothing_pending, s, 20000));
    assert_int_equal(stats_of(s).reported, 0);
    assert_int_equal(sink_nseen(&f->k), 0);
    dfs_scrubber_stop(s);
}

static bool one_pass(void *arg)
{
    return stats_of(arg).passes >= 1;
}

static void test_rate_and_prompt_stop(void **state)
{
    struct fx *f = *state;
    /* About 5 MiB at 2 MiB/s: a pass takes ~2 s (the bucket starts with 1 MiB). */
    int64_t t0 = dfs_clock_mono_ns();
    dfs_scrubber *s = start(f, 2 * MIB, 60000, 0);
    assert_true(wait_for(one_pass, s, 30000));
    double secs = (double)(dfs_clock_mono_ns() - t0) / 1e9;
    print_message("a pass over %.1f MiB at 2 MiB/s took %.2f s\n", (double)f->total / MIB, secs);
    assert_true(secs > 1.2);
    struct dfs_scrubber_stats st = stats_of(s);
    assert_int_equal(st.bytes_checked, f->total);
    assert_int_equal(st.fragments_checked, NFRAG);
    dfs_scrubber_stop(s);

    /* Stop in the middle of a slow pass (about 20 s at this rate) does not wait for its end: the
       bound is far from both, so a loaded machine does not make it fail. */
    s = start(f, 256 * 1024, 60000, 0);
    usleep(300000);
    t0 = dfs_clock_mono_ns();
    dfs_scrubber_stop(s);
    assert_true(dfs_clock_mono_ns() - t0 < 5000000000ll);
}

static void test_bad_config(void **state)
{
    struct fx *f = *state;
    struct dfs_scrubber_config cfg = {
        .store = f->store, .metadata = f->k.addr, .node_id = "n", .rate = 0, .interval_ms = 1};
    dfs_scrubber *s = NULL;
    char *err = NULL;
    assert_int_equal(dfs_scrubber_start(&cfg, &s, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    cfg.rate = 1;
    cfg.interval_ms = 0;
    assert_int_equal(dfs_scrubber_start(&cfg, &s, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    cfg.interval_ms = 1;
    cfg.metadata = NULL;
    assert_int_equal(dfs_scrubber_start(&cfg, &s, &err), DFS_EINVAL);
    free(err);
}

int main(void)
{
    dfs_log_init("scrubber_test", DFS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clean_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_meanwhile_not_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_and_prompt_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
