/* Tests of the Storage service: real gRPC on loopback, a real fragment store in a temp dir. */
#include "services/storage/storage_service.h"

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/id.h"
#include "common/log.h"
#include "common/receipt.h"
#include "dfs/v1/storage.pb-c.h"
#include "services/rpc/client.h"
#include "services/rpc/loop.h"
#include "services/rpc/server.h"
#include "services/rpc/ticket_testing.h"
#include "storage/frag_store.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define B   ((size_t)DFS_BLOCK_SIZE)
#define MIB ((size_t)1 << 20)

#define PUT_METHOD  "/dfs.v1.Storage/PutFragment"
#define GET_METHOD  "/dfs.v1.Storage/GetFragment"
#define DEL_METHOD  "/dfs.v1.Storage/DeleteFragment"
#define STAT_METHOD "/dfs.v1.Storage/StatFragment"

/* ---- fixture: a store, the service on a server, a channel and a client loop ---- */

struct fx {
    char root[PATH_MAX];
    char data[PATH_MAX + 8];
    char addr[64];        /* the server's host:port, also its advertised address */
    struct dfs_io_ops io; /* the store's system calls (some tests inject faults) */
    dfs_frag_store *store;
    dfs_storage_service *svc;
    dfs_rpc_server *srv;
    dfs_rpc_channel *ch;
    dfs_rpc_loop *loop;
    char node_id[DFS_ID_HEX + 1];
    /* What the service reported of its own copies (on_own_damage), latest first. */
    pthread_mutex_t damage_mu;
    int ndamage;
    int last_damage;
    char last_damaged[DFS_FRAGMENT_ID_HEX + 1];
};

static void own_damage(void *arg, const char *fragment_id, int damage)
{
    struct fx *f = arg;
    pthread_mutex_lock(&f->damage_mu);
    f->ndamage++;
    f->last_damage = damage;
    snprintf(f->last_damaged, sizeof f->last_damaged, "%s", fragment_id);
    pthread_mutex_unlock(&f->damage_mu);
}

/* Whether the latest own-damage report was (damage, id); the count so far in *n. */
static bool damage_was(struct fx *f, int damage, const char *id, int *n)
{
    pthread_mutex_lock(&f->damage_mu);
    bool same = f->last_damage == damage && strcmp(f->last_damaged, id) == 0;
    *n = f->ndamage;
    pthread_mutex_unlock(&f->damage_mu);
    return same;
}

struct node_opts {
    size_t chunk;          /* GetFragment message size; 0 = default */
    uint64_t forward_rate; /* the node's --forward-rate; 0 = none */
    bool failing_writes;   /* the store's data writes fail with ENOSPC */
    bool stalling_writes;  /* the store's data writes wait while writes_held is set */
    int64_t idle_ms;       /* the server's and the service's stream idle limit; 0 = default */
};

/* A stuck disk, for the nodes opened with stalling_writes: data writes wait while it is set. */
static atomic_bool writes_held;

static ssize_t pwrite_stalling(int fd, const void *buf, size_t len, off_t off)
{
    while (len > 4096 && atomic_load(&writes_held))
        usleep(1000);
    return pwrite(fd, buf, len, off);
}

/* A disk that is full for data: every write above 4 KiB fails (node.id and headers still go). */
static ssize_t pwrite_enospc(int fd, const void *buf, size_t len, off_t off)
{
    if (len > 4096) {
        errno = ENOSPC;
        return -1;
    }
    return pwrite(fd, buf, len, off);
}

/* The same two disks for a message written from its received pieces (pwritev). */
static size_t iov_total(const struct iovec *iov, int cnt)
{
    size_t n = 0;
    for (int i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    return n;
}

static ssize_t pwritev_stalling(int fd, const struct iovec *iov, int cnt, off_t off)
{
    while (iov_total(iov, cnt) > 4096 && atomic_load(&writes_held))
        usleep(1000);
    return pwritev(fd, iov, cnt, off);
}

static ssize_t pwritev_enospc(int fd, const struct iovec *iov, int cnt, off_t off)
{
    if (iov_total(iov, cnt) > 4096) {
        errno = ENOSPC;
        return -1;
    }
    return pwritev(fd, iov, cnt, off);
}

/* Start one node (store, service, server on a free port) and a client channel and loop to it. */
static void fx_open(struct fx *f, const struct node_opts *o)
{
    const char *base = getenv("TEST_TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(f->root, sizeof f->root, "%s/storage_service_test.XXXXXX", base);
    assert_non_null(mkdtemp(f->root));
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    f->io = *dfs_io_posix();
    if (o->failing_writes) {
        f->io.pwrite = pwrite_enospc;
        f->io.pwritev = pwritev_enospc;
    }
    if (o->stalling_writes) {
        f->io.pwrite = pwrite_stalling;
        f->io.pwritev = pwritev_stalling;
    }
    char *err = NULL;
    assert_int_equal(dfs_frag_store_open(f->data, &f->io, &f->store, &err), DFS_OK);
    pthread_mutex_init(&f->damage_mu, NULL);
    struct dfs_storage_service_config cfg = {.chunk_bytes = o->chunk,
                                             .forward_rate = o->forward_rate,
                                             .stream_idle_ms = o->idle_ms,
                                             .on_own_damage = own_damage,
                                             .damage_arg = f};
    assert_int_equal(dfs_storage_service_create(f->store, &cfg, &f->svc, &err), DFS_OK);
    struct dfs_rpc_server_config scfg = {
        .listen = "127.0.0.1:0", .threads = 3, .stream_idle_ms = o->idle_ms};
    assert_int_equal(dfs_rpc_server_create(&scfg, &f->srv, &err), DFS_OK);
    assert_int_equal(dfs_storage_service_register(f->svc, f->srv, &err), DFS_OK);
    assert_int_equal(dfs_rpc_server_start(f->srv, &err), DFS_OK);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", dfs_rpc_server_port(f->srv));
    assert_int_equal(dfs_storage_service_set_advertise(f->svc, f->addr, &err), DFS_OK);
    snprintf(f->node_id, sizeof f->node_id, "%s", dfs_frag_store_node_id(f->store));
    uint8_t key[DFS_TICKET_KEY_LEN];
    dfs_test_node_key(f->node_id, key);
    assert_int_equal(dfs_storage_service_set_ticket_key(f->svc, key, sizeof key, &err), DFS_OK);
    dfs_test_node_remember(f->addr, f->node_id);
    assert_int_equal(dfs_rpc_channel_create(f->addr, &f->ch, &err), DFS_OK);
    f->loop = dfs_rpc_loop_create();
    assert_non_null(f->loop);
    /* Connect before the tests start: the client layer gives a connection attempt only 100 ms
       (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is also gRPC's minimum connect timeout), which a loaded
       machine can miss, and fail-fast calls would then fail UNAVAILABLE. Once connected, every
       call of the test shares the connection. */
    Dfs__V1__StatFragmentRequest req = DFS__V1__STAT_FRAGMENT_REQUEST__INIT;
    req.fragment_id = "0000000000000000000000000000000000000000";
    struct dfs_test_ticket tt;
    req.ticket = dfs_test_ticket(&tt, DFS_TICKET_STAT, req.fragment_id, f->node_id, 0);
    ProtobufCMessage *resp = NULL;
    int rc = dfs_rpc_unary_retry(f->ch, STAT_METHOD, &req.base,
                                 &dfs__v1__stat_fragment_response__descriptor, &resp, 10000, 60000,
                                 &err);
    if (rc != DFS_ENOTFOUND)
        fail_msg("warm-up StatFragment: %s", err != NULL ? err : dfs_strerror(rc));
    free(err);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int fx_close(struct fx *f)
{
    dfs_rpc_channel_destroy(f->ch);
    dfs_rpc_server_destroy(f->srv);
    struct dfs_storage_service_stats st;
    dfs_storage_service_stats(f->svc, &st);
    /* Every call's state (writer, reader, downstream call) was released by the server's stop. */
    assert_int_equal(st.puts_active, 0);
    assert_int_equal(st.gets_active, 0);
    dfs_storage_service_destroy(f->svc);
    dfs_frag_store_close(f->store);
    dfs_rpc_loop_destroy(f->loop);
    pthread_mutex_destroy(&f->damage_mu);
    return nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int setup_with_chunk(void **state, size_t chunk)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    struct node_opts o = {.chunk = chunk};
    fx_open(f, &o);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with_chunk(state, 0);
}

/* One node whose streams may idle 300 ms. */
static int setup_idle(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    struct node_opts o = {.idle_ms = 300};
    fx_open(f, &o);
    *state = f;
    return 0;
}

static int setup_small_chunks(void **state)
{
    return setup_with_chunk(state, B);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    int rc = fx_close(f);
    free(f);
    return rc;
}

/*
 * Chain fixture: four nodes A B C D (n[0..3]), each its own server and store, plus an address
 * where nothing answers (a bound TCP socket that does not listen: connections are refused, and
 * the port stays ours for the test).
 */
#define NODES 4

struct cfx {
    struct fx n[NODES];
    int dead_fd;
    char dead[64];
};

static int setup_chain_opts(void **state, uint64_t forward_rate, int failing_node,
                            int stalling_node, int64_t idle_ms)
{
    struct cfx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    for (int i = 0; i < NODES; i++) {
        struct node_opts o = {.forward_rate = forward_rate,
                              .failing_writes = i == failing_node,
                              .stalling_writes = i == stalling_node,
                              .idle_ms = idle_ms};
        fx_open(&c->n[i], &o);
    }
    c->dead_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->dead_fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(c->dead_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(c->dead_fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(c->dead, sizeof c->dead, "127.0.0.1:%d", ntohs(sa.sin_port));
    *state = c;
    return 0;
}

static int setup_chain_with(void **state, uint64_t forward_rate, int failing_node)
{
    return setup_chain_opts(state, forward_rate, failing_node, -1, 0);
}

/* B's (n[1]) disk gets stuck (writes_held); every node's streams may idle 300 ms. */
static int setup_chain_b_stuck(void **state)
{
    return setup_chain_opts(state, 0, -1, 1, 300);
}

static int setup_chain(void **state)
{
    return setup_chain_with(state, 0, -1);
}

/* Every node's --forward-rate is 8 MB/s. */
static int setup_chain_paced(void **state)
{
    return setup_chain_with(state, 8000000, -1);
}

/* C (n[2]) cannot write fragment data: its disk is full. */
static int setup_chain_c_full(void **state)
{
    return setup_chain_with(state, 0, 2);
}

static int teardown_chain(void **state)
{
    struct cfx *c = *state;
    int rc = 0;
    for (int i = 0; i < NODES; i++)
        rc |= fx_close(&c->n[i]);
    close(c->dead_fd);
    free(c);
    return rc;
}

/* ---- helpers ---- */

static unsigned char *make_data(size_t n, uint64_t seed)
{
    unsigned char *p = malloc(n + 1);
    assert_non_null(p);
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)x;
    }
    return p;
}

static void make_id(unsigned n, char out[DFS_FRAGMENT_ID_HEX + 1])
{
    dfs_fragment_id("0123456789abcdef0123456789abcdef", n, out);
}

static void run_until(struct fx *f, const bool *done)
{
    int64_t until = dfs_clock_mono_ns() + 30000000000ll;
    while (!*done && dfs_clock_mono_ns() < until)
        dfs_rpc_loop_run_once(f->loop, 100);
    assert_true(*done);
}

/* Wait (bounded) until the server released every put and get. */
static void wait_idle(struct fx *f)
{
    struct dfs_storage_service_stats st;
    int64_t until = dfs_clock_mono_ns() + 10000000000ll;
    for (;;) {
        dfs_storage_service_stats(f->svc, &st);
        if ((st.puts_active == 0 && st.gets_active == 0) || dfs_clock_mono_ns() > until)
            break;
        usleep(1000);
    }
    assert_int_equal(st.puts_active, 0);
    assert_int_equal(st.gets_active, 0);
}

/* Entries in DATA/tmp: partial writes left behind. */
static int tmp_entries(struct fx *f)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/tmp", f->data);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static int stat_rpc(struct fx *f, const char *id, Dfs__V1__StatFragmentResponse **resp, char **err)
{
    Dfs__V1__StatFragmentRequest req = DFS__V1__STAT_FRAGMENT_REQUEST__INIT;
    req.fragment_id = (char *)id;
    struct dfs_test_ticket tt;
    req.ticket = dfs_test_ticket(&tt, DFS_TICKET_STAT, id, f->node_id, 0);
    return dfs_rpc_unary(f->ch, STAT_METHOD, &req.base,
                         &dfs__v1__stat_fragment_response__descriptor, (ProtobufCMessage **)resp,
                         10000, err);
}

static int verify_rpc(struct fx *f, const char *id, Dfs__V1__StatFragmentResponse **resp,
                      char **err)
{
    Dfs__V1__StatFragmentRequest req = DFS__V1__STAT_FRAGMENT_REQUEST__INIT;
    req.fragment_id = (char *)id;
    req.verify = true;
    struct dfs_test_ticket tt;
    req.ticket = dfs_test_ticket(&tt, DFS_TICKET_STAT, id, f->node_id, 0);
    return dfs_rpc_unary(f->ch, STAT_METHOD, &req.base,
                         &dfs__v1__stat_fragment_response__descriptor, (ProtobufCMessage **)resp,
                         30000, err);
}

static int delete_rpc(struct fx *f, const char *id, bool *existed, char **err)
{
    Dfs__V1__DeleteFragmentRequest req = DFS__V1__DELETE_FRAGMENT_REQUEST__INIT;
    req.fragment_id = (char *)id;
    struct dfs_test_ticket tt;
    req.ticket = dfs_test_ticket(&tt, DFS_TICKET_DELETE, id, f->node_id, 0);
    Dfs__V1__DeleteFragmentResponse *resp = NULL;
    int rc =
        dfs_rpc_unary(f->ch, DEL_METHOD, &req.base, &dfs__v1__delete_fragment_response__descriptor,
                      (ProtobufCMessage **)&resp, 10000, err);
    if (rc == DFS_OK) {
        *existed = resp->existed;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    return rc;
}

static void assert_not_stored(struct fx *f, const char *id)
{
    wait_idle(f);
    Dfs__V1__StatFragmentResponse *resp = NULL;
    char *err = NULL;
    assert_int_equal(stat_rpc(f, id, &resp, &err), DFS_ENOTFOUND);
    assert_null(resp);
    free(err);
    assert_int_equal(tmp_entries(f), 0);
}

/* Check a call's status, showing its message when it is not the one expected. */
static void expect_status(int got, int want, const char *message)
{
    if (got != want)
        fail_msg("status %d (%s), want %d (%s): %s", got, dfs_strerror(got), want,
                 dfs_strerror(want), message);
}

/* ---- a PutFragment client, with ways to misbehave ---- */

struct put_run {
    struct fx *f;
    const char *id;
    const unsigned char *data;
    uint64_t size;   /* declared in the header */
    size_t chunk;    /* data bytes per message */
    uint64_t limit;  /* send this many bytes, then half-close (short upload when < size) */
    uint64_t pause;  /* after this many bytes, stop sending without closing (UINT64_MAX: never) */
    int bad_crc_msg; /* this message's first CRC is wrong (-1: none) */
    bool no_header;
    bool header_twice;          /* the second message carries a header too */
    const char *const *forward; /* chain: the header's forward list */
    size_t nforward;
    uint64_t forward_rate;
    /* Tickets: 0 = a good one for this node; else the op in the header's ticket instead, or
       -1 for none, -2 for one that expired. */
    int ticket_op;
    /* Hop tickets (chain): 0 = good ones; 1 = none; 2 = a put ticket where the first hop's
       should be; 3 = a first hop ticket for another address; 4 = one for another node. */
    int hop_mode;
    uint64_t sent;
    uint32_t msgs;
    bool paused;
    dfs_rpc_ccall *call;
    bool done;
    int status;
    char message[512];
    bool got_resp;
    char resp_id[64];
    uint64_t resp_size;
    uint32_t resp_checksum;
    size_t nacks; /* the response's chain */
    struct {
        char address[300];
        bool ok;
        char error[512];
        uint32_t checksum;
        uint64_t size;
        uint8_t receipt[64];
        size_t receipt_len;
    } acks[DFS_STORAGE_FORWARD_MAX + 1];
    uint8_t receipt[64]; /* the response's */
    size_t receipt_len;
};

static void put_init(struct put_run *r, struct fx *f, const char *id, const unsigned char *data,
                     uint64_t size)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->id = id;
    r->data = data;
    r->size = size;
    r->chunk = MIB;
    r->limit = size;
    r->pause = UINT64_MAX;
    r->bad_crc_msg = -1;
}

static void put_done(dfs_rpc_ccall *call, void *arg, int status, const char *message)
{
    (void)call;
    struct put_run *r = arg;
    r->done = true;
    r->status = status;
    snprintf(r->message, sizeof r->message, "%s", message);
}

static void put_resp(dfs_rpc_ccall *call, void *arg, ProtobufCMessage *msg, int status)
{
    (void)call;
    (void)status;
    struct put_run *r = arg;
    if (msg == NULL)
        return;
    Dfs__V1__PutFragmentResponse *resp = (Dfs__V1__PutFragmentResponse *)msg;
    r->got_resp = true;
    snprintf(r->resp_id, sizeof r->resp_id, "%s", resp->fragment_id);
    r->resp_size = resp->size;
    r->resp_checksum = resp->checksum;
    r->receipt_len = resp->receipt.len < sizeof r->receipt ? resp->receipt.len : 0;
    if (r->receipt_len > 0)
        memcpy(r->receipt, resp->receipt.data, r->receipt_len);
    assert_true(resp->n_chain <= DFS_STORAGE_FORWARD_MAX + 1);
    r->nacks = resp->n_chain;
    for (size_t i = 0; i < resp->n_chain; i++) {
        const Dfs__V1__ChainAck *a = resp->chain[i];
        snprintf(r->acks[i].address, sizeof r->acks[i].address, "%s", a->address);
        r->acks[i].ok = a->ok;
        snprintf(r->acks[i].error, sizeof r->acks[i].error, "%s", a->error);
        r->acks[i].checksum = a->checksum;
        r->acks[i].size = a->size;
        r->acks[i].receipt_len = a->receipt.len < sizeof r->acks[i].receipt ? a->receipt.len : 0;
        if (r->acks[i].receipt_len > 0)
            memcpy(r->acks[i].receipt, a->receipt.data, r->acks[i].receipt_len);
    }
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void put_sent(dfs_rpc_ccall *call, void *arg, bool ok);

static void put_send_next(struct put_run *r)
{
    uint64_t left = r->limit - r->sent;
    size_t n = left < r->chunk ? (size_t)left : r->chunk;
    uint32_t crcs[64];
    size_t ncrcs = dfs_crc32c_nblocks(n);
    assert_true(ncrcs <= 64);
    dfs_crc32c_blocks(r->data + r->sent, n, crcs);
    if ((int)r->msgs == r->bad_crc_msg)
        crcs[0] ^= 0x10;
    Dfs__V1__FragmentHeader h = DFS__V1__FRAGMENT_HEADER__INIT;
    h.fragment_id = (char *)r->id;
    h.size = r->size;
    h.forward = (char **)r->forward;
    h.n_forward = r->nforward;
    h.forward_rate = r->forward_rate;
    struct dfs_test_ticket own, fwd[DFS_STORAGE_FORWARD_MAX];
    Dfs__V1__Ticket *fwd_ptrs[DFS_STORAGE_FORWARD_MAX];
    if (r->ticket_op != -1)
        h.ticket = dfs_test_ticket(&own, r->ticket_op > 0 ? r->ticket_op : DFS_TICKET_PUT, r->id,
                                   r->f->node_id, r->ticket_op == -2 ? -1 : 0);
    struct dfs_test_ticket hop[DFS_STORAGE_FORWARD_MAX];
    Dfs__V1__Ticket *hop_ptrs[DFS_STORAGE_FORWARD_MAX];
    for (size_t i = 0; i < r->nforward && i < DFS_STORAGE_FORWARD_MAX; i++) {
        fwd_ptrs[i] =
            dfs_test_ticket(&fwd[i], DFS_TICKET_PUT, r->id, dfs_test_node_of(r->forward[i]), 0);
        /* Hop i: from the node before forward[i] (this one for i = 0) to forward[i]. */
        const char *from = i == 0 ? r->f->node_id : dfs_test_node_of(r->forward[i - 1]);
        const char *to = dfs_test_node_of(r->forward[i]), *to_addr = r->forward[i];
        if (i == 0 && r->hop_mode == 3)
            to_addr = "127.0.0.1:9";
        if (i == 0 && r->hop_mode == 4)
            to = from;
        hop_ptrs[i] = i == 0 && r->hop_mode == 2
                          ? dfs_test_ticket(&hop[i], DFS_TICKET_PUT, r->id, from, 0)
                          : dfs_test_forward_ticket(&hop[i], r->id, from, to, to_addr);
    }
    h.forward_tickets = fwd_ptrs;
    h.n_forward_tickets = r->nforward <= DFS_STORAGE_FORWARD_MAX ? r->nforward : 0;
    h.hop_tickets = hop_ptrs;
    h.n_hop_tickets = r->hop_mode == 1 ? 0 : h.n_forward_tickets;
    Dfs__V1__PutFragmentRequest req = DFS__V1__PUT_FRAGMENT_REQUEST__INIT;
    if ((r->msgs == 0 && !r->no_header) || (r->msgs == 1 && r->header_twice))
        req.header = &h;
    req.data.data = (uint8_t *)r->data + r->sent;
    req.data.len = n;
    req.crc32c = crcs;
    req.n_crc32c = ncrcs;
    r->sent += n;
    r->msgs++;
    bool last = r->sent == r->limit && r->sent < r->pause;
    assert_int_equal(dfs_rpc_ccall_send(r->call, &req.base, last, last ? NULL : put_sent, r),
                     DFS_OK);
}

static void put_sent(dfs_rpc_ccall *call, void *arg, bool ok)
{
    (void)call;
    struct put_run *r = arg;
    if (!ok)
        return;
    if (r->sent >= r->pause) {
        r->paused = true;
        return;
    }
    put_send_next(r);
}

static void put_start(struct put_run *r)
{
    assert_int_equal(
        dfs_rpc_ccall_start(r->f->loop, r->f->ch, PUT_METHOD, 30000, put_done, r, &r->call),
        DFS_OK);
    assert_int_equal(
        dfs_rpc_ccall_recv(r->call, &dfs__v1__put_fragment_response__descriptor, put_resp, r),
        DFS_OK);
    put_send_next(r);
}

/* A well-behaved put; returns the status. */
static int put_all(struct fx *f, const char *id, const unsigned char *data, uint64_t size,
                   struct put_run *r)
{
    put_init(r, f, id, data, size);
    put_start(r);
    run_until(f, &r->done);
    return r->status;
}

static uint32_t checksum_of(const unsigned char *data, size_t n)
{
    size_t nb = dfs_crc32c_nblocks(n);
    uint32_t *crcs = calloc(nb + 1, sizeof *crcs);
    dfs_crc32c_blocks(data, n, crcs);
    uint32_t c = dfs_crc32c_of_table(crcs, nb);
    free(crcs);
    return c;
}

/* ---- a GetFragment client that checks every message ---- */

struct get_run {
    const char *id;
    bool done;
    int status;
    char message[512];
    unsigned char *buf; /* what arrived, in order */
    size_t len, cap;
    uint32_t msgs;
    bool got_header;
    uint64_t header_size;
    uint32_t checksum;
    size_t max_chunk;
    bool short_seen;
    bool bad; /* a message broke the protocol; why says how */
    char why[128];
};

static void get_done(dfs_rpc_ccall *call, void *arg, int status, const char *message)
{
    (void)call;
    struct get_run *r = arg;
    r->done = true;
    r->status = status;
    snprintf(r->message, sizeof r->message, "%s", message);
}

static void get_recv(dfs_rpc_ccall *call, void *arg, ProtobufCMessage *msg, int status)
{
    struct get_run *r = arg;
    if (msg == NULL || status != DFS_OK)
        return;
    Dfs__V1__GetFragmentResponse *m = (Dfs__V1__GetFragmentResponse *)msg;
    if (r->msgs == 0) {
        if (m->header == NULL || strcmp(m->header->fragment_id, r->id) != 0) {
            r->bad = true;
            snprintf(r->why, sizeof r->why, "first message without the right header");
        } else {
            r->got_header = true;
            r->header_size = m->header->size;
            r->checksum = m->checksum;
        }
    } else if (m->header != NULL || m->checksum != 0) {
        r->bad = true;
        snprintf(r->why, sizeof r->why, "message %u carries a header", r->msgs);
    }
    /* The CRCs cover each 64 KiB piece of this message's data. */
    size_t nb = dfs_crc32c_nblocks(m->data.len);
    uint32_t want[32];
    if (m->n_crc32c != nb || nb > 32) {
        r->bad = true;
        snprintf(r->why, sizeof r->why, "message %u: %zu crcs for %zu bytes", r->msgs, m->n_crc32c,
                 m->data.len);
    } else if (nb > 0) {
        dfs_crc32c_blocks(m->data.data, m->data.len, want);
        if (memcmp(want, m->crc32c, nb * sizeof *want) != 0) {
            r->bad = true;
            snprintf(r->why, sizeof r->why, "message %u: wrong crcs", r->msgs);
        }
    }
    /* Only the last message may carry a partial block. */
    if (r->short_seen) {
        r->bad = true;
        snprintf(r->why, sizeof r->why, "message %u follows a short one", r->msgs);
    }
    r->short_seen = m->data.len % B != 0;
    if (r->len + m->data.len > r->cap) {
        r->cap = (r->len + m->data.len) * 2;
        r->buf = realloc(r->buf, r->cap);
        assert_non_null(r->buf);
    }
    if (m->data.len > 0)
        memcpy(r->buf + r->len, m->data.data, m->data.len);
    r->len += m->data.len;
    if (m->data.len > r->max_chunk)
        r->max_chunk = m->data.len;
    r->msgs++;
    protobuf_c_message_free_unpacked(msg, NULL);
    assert_int_equal(
        dfs_rpc_ccall_recv(call, &dfs__v1__get_fragment_response__descriptor, get_recv, r), DFS_OK);
}

static int get_range(struct fx *f, const char *id, uint64_t offset, uint64_t length,
                     struct get_run *r)
{
    memset(r, 0, sizeof *r);
    r->id = id;
    dfs_rpc_ccall *call = NULL;
    assert_int_equal(dfs_rpc_ccall_start(f->loop, f->ch, GET_METHOD, 30000, get_done, r, &call),
                     DFS_OK);
    Dfs__V1__GetFragmentRequest req = DFS__V1__GET_FRAGMENT_REQUEST__INIT;
    req.fragment_id = (char *)id;
    req.offset = offset;
    req.length = length;
    struct dfs_test_ticket tt;
    req.ticket = dfs_test_ticket(&tt, DFS_TICKET_GET, id, f->node_id, 0);
    assert_int_equal(dfs_rpc_ccall_send(call, &req.base, true, NULL, NULL), DFS_OK);
    assert_int_equal(
        dfs_rpc_ccall_recv(call, &dfs__v1__get_fragment_response__descriptor, get_recv, r), DFS_OK);
    run_until(f, &r->done);
    if (r->bad)
        fail_msg("GetFragment broke the protocol: %s", r->why);
    return r->status;
}

/* ---- tests ---- */

static void test_round_trip_sizes(void **state)
{
    struct fx *f = *state;
    const size_t sizes[] = {0, 1, B, B + 1, 3 * MIB + 7};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        char id[DFS_FRAGMENT_ID_HEX + 1];
        make_id((unsigned)i, id);
        unsigned char *data = make_data(n, i + 1);
        struct put_run p;
        expect_status(put_all(f, id, data, n, &p), DFS_OK, p.message);
        assert_true(p.got_resp);
        assert_string_equal(p.resp_id, id);
        assert_int_equal(p.resp_size, n);
        assert_int_equal(p.resp_checksum, checksum_of(data, n));

        Dfs__V1__StatFragmentResponse *st = NULL;
        assert_int_equal(stat_rpc(f, id, &st, NULL), DFS_OK);
        assert_string_equal(st->fragment_id, id);
        assert_int_equal(st->size, n);
        assert_int_equal(st->checksum, p.resp_checksum);
        assert_true(st->stored_ms > 1600000000000ll);
        protobuf_c_message_free_unpacked(&st->base, NULL);

        struct get_run g;
        expect_status(get_range(f, id, 0, 0, &g), DFS_OK, g.message);
        assert_true(g.got_header);
        assert_int_equal(g.header_size, n);
        assert_int_equal(g.checksum, p.resp_checksum);
        assert_int_equal(g.len, n);
        if (n > 0)
            assert_memory_equal(g.buf, data, n);
        assert_int_equal(g.msgs, n == 0 ? 1 : (n + MIB - 1) / MIB);
        assert_true(g.max_chunk <= MIB);
        free(g.buf);
        free(data);
    }
    wait_idle(f);
    struct dfs_storage_service_stats st;
    dfs_storage_service_stats(f->svc, &st);
    assert_int_equal(st.puts_ok, 5);
    assert_int_equal(st.puts_failed, 0);
    assert_int_equal(st.gets_ok, 5);
    assert_int_equal(st.bytes_received, 3 * MIB + 7 + 2 * B + 2);
    assert_int_equal(st.bytes_sent, st.bytes_received);
}

static void test_ranged_get(void **state)
{
    struct fx *f = *state;
    size_t n = 3 * MIB + 7;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(7, id);
    unsigned char *data = make_data(n, 99);
    struct put_run p;
    expect_status(put_all(f, id, data, n, &p), DFS_OK, p.message);
    struct {
        uint64_t off, len;
    } ok[] = {
        {0, 10},    {1, B},     {B - 1, 2},   {100000, 2 * MIB}, {n - 7, 0},
        {MIB, 0},   {n, 0},     {0, n},       {12345, 0},        {MIB - 3, MIB + 6},
        {n - 1, 1}, {2 * B, B}, {3 * MIB, 7},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t want = ok[i].len == 0 ? n - ok[i].off : ok[i].len;
        struct get_run g;
        int rc = get_range(f, id, ok[i].off, ok[i].len, &g);
        if (rc != DFS_OK)
            fail_msg("range %zu: %s", i, g.message);
        assert_true(g.got_header);
        assert_int_equal(g.header_size, n);
        assert_int_equal(g.checksum, p.resp_checksum);
        assert_int_equal(g.len, want);
        if (want > 0)
            assert_memory_equal(g.buf, data + ok[i].off, want);
        assert_int_equal(g.msgs, want == 0 ? 1 : (want + MIB - 1) / MIB);
        free(g.buf);
    }
    struct {
        uint64_t off, len;
    } bad[] = {{n + 1, 0}, {n - 1, 2}, {0, n + 1}, {n, 1}, {UINT64_MAX, 0}, {1, UINT64_MAX}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct get_run g;
        expect_status(get_range(f, id, bad[i].off, bad[i].len, &g), DFS_ERANGE, g.message);
        assert_non_null(strstr(g.message, id));
        assert_int_equal(g.len, 0);
        free(g.buf);
    }
    free(data);
}

static void test_small_chunks(void **state)
{
    struct fx *f = *state;
    size_t n = 4 * B + 3;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(8, id);
    unsigned char *data = make_data(n, 8);
    struct put_run p;
    expect_status(put_all(f, id, data, n, &p), DFS_OK, p.message);
    struct get_run g;
    expect_status(get_range(f, id, 0, 0, &g), DFS_OK, g.message);
    assert_int_equal(g.msgs, 5);
    assert_int_equal(g.max_chunk, B);
    assert_memory_equal(g.buf, data, n);
    free(g.buf);
    /* Unaligned: every message starts mid-block, its CRCs are of its own pieces. */
    expect_status(get_range(f, id, 100, 2 * B, &g), DFS_OK, g.message);
    assert_int_equal(g.msgs, 2);
    assert_memory_equal(g.buf, data + 100, 2 * B);
    free(g.buf);
    free(data);
}

static void test_wrong_crc_is_data_loss(void **state)
{
    struct fx *f = *state;
    size_t n = 3 * MIB;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(9, id);
    unsigned char *data = make_data(n, 9);
    struct put_run p;
    put_init(&p, f, id, data, n);
    p.bad_crc_msg = 1;
    put_start(&p);
    run_until(f, &p.done);
    expect_status(p.status, DFS_EDATALOSS, p.message);
    assert_false(p.got_resp);
    assert_non_null(strstr(p.message, id));
    assert_non_null(strstr(p.message, "block 16"));
    assert_not_stored(f, id);
    free(data);
}

static void test_wrong_crc_keeps_old_version(void **state)
{
    struct fx *f = *state;
    size_t n = 2 * B;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(10, id);
    unsigned char *old = make_data(n, 10), *new = make_data(n, 11);
    struct put_run p;
    expect_status(put_all(f, id, old, n, &p), DFS_OK, p.message);
    put_init(&p, f, id, new, n);
    p.bad_crc_msg = 0;
    put_start(&p);
    run_until(f, &p.done);
    expect_status(p.status, DFS_EDATALOSS, p.message);
    wait_idle(f);
    struct get_run g;
    expect_status(get_range(f, id, 0, 0, &g), DFS_OK, g.message);
    assert_memory_equal(g.buf, old, n);
    free(g.buf);
    /* A good put of other bytes does not replace it either: fragments are write-once. */
    expect_status(put_all(f, id, new, n, &p), DFS_EEXIST, p.message);
    expect_status(get_range(f, id, 0, 0, &g), DFS_OK, g.message);
    assert_memory_equal(g.buf, old, n);
    free(g.buf);
    free(old);
    free(new);
}

/* Whether receipt[0..len) is node_id's receipt for (id, size, checksum). */
static bool receipt_ok(const char *node_id, const char *id, uint64_t size, uint32_t checksum,
                       const uint8_t *receipt, size_t len)
{
    uint8_t key[DFS_TICKET_KEY_LEN];
    dfs_test_node_key(node_id, key);
    return dfs_receipt_check(key, receipt, len, id, node_id, size, checksum, NULL) == DFS_OK;
}

/*
 * Fragments are write-once: a put of a stored id with other bytes is ALREADY_EXISTS (at once for
 * another size), whatever its ticket; the same bytes again (a retry whose answer was lost)
 * succeed without writing, with the same receipt. Every answer carries the node's receipt.
 */
static void test_put_write_once(void **state)
{
    struct fx *f = *state;
    size_t n = B + 100;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(12, id);
    unsigned char *a = make_data(n, 12), *b = make_data(n, 13);
    uint32_t sum = checksum_of(a, n);
    struct put_run p;
    expect_status(put_all(f, id, a, n, &p), DFS_OK, p.message);
    assert_true(receipt_ok(f->node_id, id, n, sum, p.receipt, p.receipt_len));
    uint8_t first[64];
    memcpy(first, p.receipt, sizeof first);
    /* A replay with other bytes, a valid ticket and all. */
    expect_status(put_all(f, id, b, n, &p), DFS_EEXIST, p.message);
    assert_non_null(strstr(p.message, "never replaced by a put"));
    assert_false(p.got_resp);
    /* Another size: refused before any byte is taken. */
    put_init(&p, f, id, b, n - 1);
    p.pause = 0;
    put_start(&p);
    run_until(f, &p.done);
    expect_status(p.status, DFS_EEXIST, p.message);
    assert_non_null(strstr(p.message, "bytes, not"));
    struct get_run g;
    expect_status(get_range(f, id, 0, 0, &g), DFS_OK, g.message);
    assert_int_equal(g.len, n);
    assert_memory_equal(g.buf, a, n);
    free(g.buf);
    /* The same bytes again: the same fragment, a receipt, nothing rewritten. */
    struct dfs_frag_info before, after;
    assert_int_equal(dfs_frag_store_stat(f->store, id, &before, NULL), DFS_OK);
    expect_status(put_all(f, id, a, n, &p), DFS_OK, p.message);
    assert_int_equal(p.resp_checksum, sum);
    assert_memory_equal(p.receipt, first, DFS_RECEIPT_LEN);
    assert_int_equal(dfs_frag_store_stat(f->store, id, &after, NULL), DFS_OK);
    assert_int_equal(after.stored_ms, before.stored_ms);
    wait_idle(f);
    free(a);
    free(b);
}

static void test_missing_header(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(11, id);
    unsigned char *data = make_data(B, 1);
    struct put_run p;
    put_init(&p, f, id, data, B);
    p.no_header = true;
    put_start(&p);
    run_until(f, &p.done);
    expect_status(p.status, DFS_EINVAL, p.message);
    assert_non_null(strstr(p.message, "no header"));
    assert_not_stored(f, id);

    /* An empty stream: the client closes without sending anything. */
    struct put_run e;
    put_init(&e, f, id, data, 0);
    assert_int_equal(dfs_rpc_ccall_start(f->loop, f->ch, PUT_METHOD, 30000, put_done, &e, &e.call),
                     DFS_OK);
    assert_int_equal(dfs_rpc_ccall_close_send(e.call), DFS_OK);
    run_until(f, &e.done);
    expect_status(e.status, DFS_EINVAL, e.message);
    assert_non_null(strstr(e.message, "before a header"));
    assert_not_stored(f, id);
    free(data);
}

static void test_header_twice(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(12, id);
    unsigned char *data = make_data(3 * B, 1);
    struct put_run p;
    put_init(&p, f, id, data, 3 * B);
    p.chunk = B;
    p.header_twice = true;
    put_start(&p);
    run_until(f, &p.done);
    expect_status(p.status, DFS_EINVAL, p.message);
    assert_non_null(strstr(p.message, "header"));
    assert_non_null(strstr(p.message, id));
    assert_not_stored(f, id);
    free(data);
}

static void test_bad_ids(void **state)
{
    struct fx *f = *state;
    const char *bad[] = {
        "../etc/passwd",
        "../../../../../../../../../../../../../../../../etc/passwd",
        "0123456789ABCDEF0123456789ABCDEF00000000",  /* upper case */
        "0123456789abcdef0123456789abcdef0000000",   /* 39 digits */
        "0123456789abcdef0123456789abcdef000000000", /* 41 digits */
        "",
        "0123456789abcdef0123456789abcdef/0000000",
    };
    unsigned char *data = make_data(10, 1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct put_run p;
        expect_status(put_all(f, bad[i], data, 10, &p), DFS_EINVAL, p.message);
        assert_non_null(strstr(p.message, "invalid fragment id"));

        struct get_run g;
        expect_status(get_range(f, bad[i], 0, 0, &g), DFS_EINVAL, g.message);
        free(g.buf);
        Dfs__V1__StatFragmentResponse *st = NULL;
        char *err = NULL;
        assert_int_equal(stat_rpc(f, bad[i], &st, &err), DFS_EINVAL);
        free(err);
        bool existed = true;
        assert_int_equal(delete_rpc(f, bad[i], &existed, NULL), DFS_EINVAL);
    }
    wait_idle(f);
    assert_int_equal(tmp_entries(f), 0);
    /* Nothing was created beside the data dir. */
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/etc", f->root);
    assert_int_equal(access(path, F_OK), -1);
    free(data);
}

static void test_short_upload(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(13, id);
    size_t n = 3 * MIB;
    unsigned char *data = make_data(n, 13);
    struct put_run p;
    put_init(&p, f, id, data, n);
    p.limit = MIB; /* then half-close */
    put_start(&p);
    run_until(f, &p.done);
    expect_status(p.status, DFS_EINVAL, p.message);
    assert_non_null(strstr(p.message, "received 1048576 of 3145728 bytes"));
    assert_non_null(strstr(p.message, id));
    assert_not_stored(f, id);

    /* More bytes than declared. */
    put_init(&p, f, id, data, MIB);
    p.limit = MIB + B;
    put_start(&p);
    run_until(f, &p.done);
    expect_status(p.status, DFS_EINVAL, p.message);
    assert_non_null(strstr(p.message, "beyond the declared size"));
    assert_not_stored(f, id);

    /* A chunk that is not a multiple of 64 KiB in the middle. */
    put_init(&p, f, id, data, MIB);
    p.chunk = B + 1;
    put_start(&p);
    run_until(f, &p.done);
    expect_status(p.status, DFS_EINVAL, p.message);
    assert_non_null(strstr(p.message, "not a multiple"));
    assert_not_stored(f, id);
    free(data);
}

static void test_client_cancel_mid_upload(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(14, id);
    size_t n = 8 * MIB;
    unsigned char *data = make_data(n, 14);
    struct put_run p;
    put_init(&p, f, id, data, n);
    p.pause = 2 * MIB;
    put_start(&p);
    /* Wait until the server has written what was sent, then cancel. */
    struct dfs_storage_service_stats st;
    int64_t until = dfs_clock_mono_ns() + 10000000000ll;
    do {
        dfs_rpc_loop_run_once(f->loop, 10);
        dfs_storage_service_stats(f->svc, &st);
    } while (st.bytes_received < 2 * MIB && dfs_clock_mono_ns() < until);
    assert_int_equal(st.bytes_received, 2 * MIB);
    assert_int_equal(st.puts_active, 1);
    assert_int_equal(tmp_entries(f), 1); /* the partial write, invisible */
    dfs_rpc_ccall_cancel(p.call);
    run_until(f, &p.done);
    expect_status(p.status, DFS_ECANCELED, p.message);
    assert_not_stored(f, id);
    dfs_storage_service_stats(f->svc, &st);
    assert_int_equal(st.puts_failed, 1);
    assert_int_equal(st.puts_ok, 0);
    free(data);
}

static void test_stop_with_upload_in_flight(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(15, id);
    size_t n = 4 * MIB;
    unsigned char *data = make_data(n, 15);
    struct put_run p;
    put_init(&p, f, id, data, n);
    p.pause = MIB;
    put_start(&p);
    struct dfs_storage_service_stats st;
    int64_t until = dfs_clock_mono_ns() + 10000000000ll;
    do {
        dfs_rpc_loop_run_once(f->loop, 10);
        dfs_storage_service_stats(f->svc, &st);
    } while (st.bytes_received < MIB && dfs_clock_mono_ns() < until);
    if (st.bytes_received != MIB)
        fail_msg("received %llu active %llu sent %llu paused %d done %d status %d %s",
                 (unsigned long long)st.bytes_received, (unsigned long long)st.puts_active,
                 (unsigned long long)p.sent, p.paused, p.done, p.status, p.message);
    dfs_rpc_server_stop(f->srv, 100);
    /* stop returned: every call's state is released and the writer aborted. */
    dfs_storage_service_stats(f->svc, &st);
    assert_int_equal(st.puts_active, 0);
    assert_int_equal(st.puts_ok, 0);
    assert_int_equal(tmp_entries(f), 0);
    run_until(f, &p.done);
    assert_int_not_equal(p.status, DFS_OK);
    struct dfs_frag_info info;
    assert_int_equal(dfs_frag_store_stat(f->store, id, &info, NULL), DFS_ENOTFOUND);
    free(data);
}

static void test_corrupt_on_disk(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(16, id);
    size_t n = 3 * MIB;
    unsigned char *data = make_data(n, 16);
    struct put_run p;
    expect_status(put_all(f, id, data, n, &p), DFS_OK, p.message);
    /* Flip one bit of block 20 (in the second 1 MiB message). */
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/fragments/%.2s/%.2s/%s", f->data, id, id + 2, id);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    off_t at = DFS_FRAG_HEADER_SIZE + 20 * (off_t)B + 1234;
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, at), 1);
    c ^= 0x04;
    assert_int_equal(pwrite(fd, &c, 1, at), 1);
    close(fd);

    /* StatFragment reads the header alone: all seems well. With verify the node reads it all. */
    Dfs__V1__StatFragmentResponse *st = NULL;
    assert_int_equal(stat_rpc(f, id, &st, NULL), DFS_OK);
    assert_int_equal(st->checksum, checksum_of(data, n));
    protobuf_c_message_free_unpacked(&st->base, NULL);
    char *err = NULL;
    assert_int_equal(verify_rpc(f, id, &st, &err), DFS_EDATALOSS);
    assert_non_null(strstr(err, "block 20 is corrupt"));
    free(err);

    int before = 0;
    damage_was(f, 0, "", &before);
    struct get_run g;
    expect_status(get_range(f, id, 0, 0, &g), DFS_EDATALOSS, g.message);
    assert_non_null(strstr(g.message, "block 20 is corrupt"));
    assert_non_null(strstr(g.message, id));
    /* The node reports its own corrupt copy (the ticket said the catalog counts on it). */
    int after = 0;
    assert_true(damage_was(f, 1 /* DAMAGE_CORRUPT */, id, &after));
    assert_int_equal(after, before + 1);
    /* The first message got through before the bad one was read. */
    assert_int_equal(g.len, MIB);
    assert_memory_equal(g.buf, data, MIB);
    free(g.buf);
    /* Other blocks stay readable. */
    expect_status(get_range(f, id, 2 * MIB, 0, &g), DFS_OK, g.message);
    assert_memory_equal(g.buf, data + 2 * MIB, MIB);
    free(g.buf);
    expect_status(get_range(f, id, 20 * B + 1000, 1000, &g), DFS_EDATALOSS, g.message);
    free(g.buf);
    free(data);
}

static void test_delete_and_stat(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(17, id);
    unsigned char *data = make_data(B + 5, 17);
    Dfs__V1__StatFragmentResponse *st = NULL;
    char *err = NULL;
    assert_int_equal(stat_rpc(f, id, &st, &err), DFS_ENOTFOUND);
    assert_non_null(strstr(err, id));
    free(err);
    err = NULL;
    struct put_run p;
    expect_status(put_all(f, id, data, B + 5, &p), DFS_OK, p.message);
    assert_int_equal(stat_rpc(f, id, &st, NULL), DFS_OK);
    assert_int_equal(st->size, B + 5);
    assert_int_equal(st->checksum, checksum_of(data, B + 5));
    protobuf_c_message_free_unpacked(&st->base, NULL);
    /* With verify: every block read and checked, the same answer. */
    assert_int_equal(verify_rpc(f, id, &st, NULL), DFS_OK);
    assert_int_equal(st->size, B + 5);
    assert_int_equal(st->checksum, checksum_of(data, B + 5));
    assert_true(st->stored_ms > 0);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    bool existed = false;
    assert_int_equal(delete_rpc(f, id, &existed, NULL), DFS_OK);
    assert_true(existed);
    assert_int_equal(delete_rpc(f, id, &existed, NULL), DFS_OK);
    assert_false(existed);
    assert_int_equal(stat_rpc(f, id, &st, NULL), DFS_ENOTFOUND);
    assert_int_equal(verify_rpc(f, id, &st, NULL), DFS_ENOTFOUND);
    int n = 0;
    struct get_run g;
    expect_status(get_range(f, id, 0, 0, &g), DFS_ENOTFOUND, g.message);
    assert_non_null(strstr(g.message, "not found"));
    /* A read with a valid ticket of a fragment the node lacks: reported as missing. */
    assert_true(damage_was(f, 3 /* DAMAGE_MISSING */, id, &n));
    free(g.buf);
    free(data);
}

static void test_too_large_for_the_disk(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(18, id);
    unsigned char *data = make_data(B, 18);
    struct put_run p;
    put_init(&p, f, id, data, (uint64_t)1 << 47); /* 128 TiB */
    p.limit = B;
    put_start(&p);
    run_until(f, &p.done);
    expect_status(p.status, DFS_ENOSPC, p.message);
    assert_non_null(strstr(p.message, "free on this node"));
    assert_not_stored(f, id);
    free(data);
}

/* A client that sends the header and a chunk, then nothing (no deadline, no half-close), is cut
   off after the idle limit: DEADLINE_EXCEEDED, nothing stored, nothing left in tmp/. */
static void test_stalled_put_is_cancelled(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(30, id);
    unsigned char *data = make_data(3 * MIB, 30);
    struct put_run p;
    put_init(&p, f, id, data, 3 * MIB);
    p.pause = MIB;
    put_start(&p);
    run_until(f, &p.done);
    expect_status(p.status, DFS_ETIMEDOUT, p.message);
    assert_non_null(strstr(p.message, "sent nothing for 300 ms"));
    wait_idle(f);
    assert_int_equal(tmp_entries(f), 0);
    assert_not_stored(f, id);
    struct dfs_storage_service_stats st;
    dfs_storage_service_stats(f->svc, &st);
    assert_int_equal(st.puts_failed, 1);
    assert_int_equal(st.puts_active, 0);
    free(data);
}

/* Hand-made wire bytes: unpacked CRCs and unknown fields are fine, junk is not. */
static void test_raw_wire_forms(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(19, id);
    unsigned char payload[5] = {1, 2, 3, 4, 5};
    uint32_t crc = dfs_crc32c(0, payload, sizeof payload);
    unsigned char msg[512], *q = msg;
    /* The header, packed by protobuf-c (it carries the ticket), as field 1. */
    Dfs__V1__FragmentHeader h = DFS__V1__FRAGMENT_HEADER__INIT;
    h.fragment_id = id;
    h.size = sizeof payload;
    struct dfs_test_ticket tt;
    h.ticket = dfs_test_ticket(&tt, DFS_TICKET_PUT, id, f->node_id, 0);
    size_t hlen = dfs__v1__fragment_header__get_packed_size(&h);
    assert_true(hlen < 16384);
    *q++ = 0x0a;
    *q++ = (unsigned char)(0x80 | (hlen & 0x7f));
    *q++ = (unsigned char)(hlen >> 7);
    q += dfs__v1__fragment_header__pack(&h, q);
    *q++ = 0x1d; /* crc32c, unpacked fixed32 */
    for (int i = 0; i < 4; i++)
        *q++ = (unsigned char)(crc >> (8 * i));
    *q++ = 0x78; /* unknown field 15, varint */
    *q++ = 0x96;
    *q++ = 0x01;
    *q++ = 0x12; /* data */
    *q++ = sizeof payload;
    memcpy(q, payload, sizeof payload);
    q += sizeof payload;

    struct put_run p;
    put_init(&p, f, id, payload, sizeof payload);
    assert_int_equal(dfs_rpc_ccall_start(f->loop, f->ch, PUT_METHOD, 30000, put_done, &p, &p.call),
                     DFS_OK);
    assert_int_equal(
        dfs_rpc_ccall_recv(p.call, &dfs__v1__put_fragment_response__descriptor, put_resp, &p),
        DFS_OK);
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)msg, (size_t)(q - msg));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    assert_int_equal(dfs_rpc_ccall_send_raw(p.call, bb, true, NULL, NULL), DFS_OK);
    run_until(f, &p.done);
    expect_status(p.status, DFS_OK, p.message);
    assert_int_equal(p.resp_size, sizeof payload);

    /* Truncated: the data field claims more bytes than follow. */
    const unsigned char junk[][6] = {
        {0x12, 0x64, 'a', 'b', 'c', 0},       /* length beyond the end */
        {0x0b, 0, 0, 0, 0, 0},                /* start group */
        {0x1a, 0x03, 1, 2, 3, 0},             /* packed crcs not a multiple of 4 */
        {0x10, 0x05, 0, 0, 0, 0},             /* data as a varint */
        {0x00, 0x01, 0, 0, 0, 0},             /* field 0 */
        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, /* endless varint */
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        struct put_run j;
        put_init(&j, f, id, payload, 0);
        assert_int_equal(
            dfs_rpc_ccall_start(f->loop, f->ch, PUT_METHOD, 30000, put_done, &j, &j.call), DFS_OK);
        s = grpc_slice_from_copied_buffer((const char *)junk[i], sizeof junk[i]);
        bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        assert_int_equal(dfs_rpc_ccall_send_raw(j.call, bb, true, NULL, NULL), DFS_OK);
        run_until(f, &j.done);
        if (j.status != DFS_EINVAL)
            fail_msg("junk %zu: status %d %s", i, j.status, j.message);
        assert_non_null(strstr(j.message, "does not parse"));
    }
    wait_idle(f);
    assert_int_equal(tmp_entries(f), 0);
}

static void test_many_concurrent_puts(void **state)
{
    struct fx *f = *state;
    enum { N = 24 };
    struct put_run *p = calloc(N, sizeof *p);
    char ids[N][DFS_FRAGMENT_ID_HEX + 1];
    unsigned char *data[N];
    for (int i = 0; i < N; i++) {
        make_id(100 + (unsigned)i, ids[i]);
        size_t n = (size_t)i * 97 * 1024 + (size_t)i;
        data[i] = make_data(n, 100 + (uint64_t)i);
        put_init(&p[i], f, ids[i], data[i], n);
        put_start(&p[i]);
    }
    for (int i = 0; i < N; i++) {
        run_until(f, &p[i].done);
        if (p[i].status != DFS_OK)
            fail_msg("put %d: %s", i, p[i].message);
    }
    for (int i = 0; i < N; i++) {
        struct get_run g;
        expect_status(get_range(f, ids[i], 0, 0, &g), DFS_OK, g.message);
        assert_int_equal(g.len, p[i].size);
        if (g.len > 0)
            assert_memory_equal(g.buf, data[i], g.len);
        free(g.buf);
        free(data[i]);
    }
    struct dfs_frag_store_stats st;
    dfs_frag_store_stats(f->store, &st);
    assert_int_equal(st.fragments, N);
    free(p);
}

/* ---- chain replication ---- */

/* The fragment is stored on node f exactly as data[0..n), with the given checksum. */
static void assert_stored(struct fx *f, const char *id, const unsigned char *data, size_t n,
                          uint32_t checksum)
{
    Dfs__V1__StatFragmentResponse *st = NULL;
    char *err = NULL;
    int rc = stat_rpc(f, id, &st, &err);
    if (rc != DFS_OK)
        fail_msg("%s: stat %s: %s", f->addr, id, err != NULL ? err : dfs_strerror(rc));
    assert_int_equal(st->size, n);
    assert_int_equal(st->checksum, checksum);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    struct get_run g;
    expect_status(get_range(f, id, 0, 0, &g), DFS_OK, g.message);
    assert_int_equal(g.len, n);
    assert_int_equal(g.checksum, checksum);
    if (n > 0)
        assert_memory_equal(g.buf, data, n);
    free(g.buf);
}

/* A put through node `at` with a forward list (and forward_rate); returns the status. */
static int chain_put(struct fx *at, const char *id, const unsigned char *data, uint64_t size,
                     const char *const *forward, size_t nforward, uint64_t rate, struct put_run *r)
{
    put_init(r, at, id, data, size);
    r->forward = forward;
    r->nforward = nforward;
    r->forward_rate = rate;
    put_start(r);
    run_until(at, &r->done);
    return r->status;
}

/* Ack i says the node stored the fragment with these figures. */
static void assert_ack_ok(const struct put_run *r, size_t i, const char *addr, uint64_t size,
                          uint32_t checksum)
{
    assert_true(i < r->nacks);
    assert_string_equal(r->acks[i].address, addr);
    if (!r->acks[i].ok)
        fail_msg("ack %zu (%s) not ok: %s", i, addr, r->acks[i].error);
    assert_string_equal(r->acks[i].error, "");
    assert_int_equal(r->acks[i].size, size);
    assert_int_equal(r->acks[i].checksum, checksum);
    /* The node's own receipt, relayed up the chain for the commit. */
    if (!receipt_ok(dfs_test_node_of(addr), r->id, size, checksum, r->acks[i].receipt,
                    r->acks[i].receipt_len))
        fail_msg("ack %zu (%s): no valid receipt", i, addr);
}

/* Ack i says the node did not store it, with an error containing `what`. */
static void assert_ack_failed(const struct put_run *r, size_t i, const char *addr, const char *what)
{
    assert_true(i < r->nacks);
    assert_string_equal(r->acks[i].address, addr);
    assert_false(r->acks[i].ok);
    if (strstr(r->acks[i].error, what) == NULL)
        fail_msg("ack %zu (%s): error \"%s\" does not say \"%s\"", i, addr, r->acks[i].error, what);
    /* Never what the connection said: a forward list is no way to learn what listens where. */
    if (strstr(r->acks[i].error, "ipv4") != NULL || strstr(r->acks[i].error, "onnect") != NULL ||
        strstr(r->acks[i].error, "Connection") != NULL)
        fail_msg("ack %zu (%s): error \"%s\" tells about the connection", i, addr,
                 r->acks[i].error);
}

static void stats_of(struct fx *f, struct dfs_storage_service_stats *st)
{
    dfs_storage_service_stats(f->svc, st);
}

static void test_chain_sizes(void **state)
{
    struct cfx *c = *state;
    const char *fwd[] = {c->n[1].addr, c->n[2].addr};
    const size_t sizes[] = {0, 1, B + 1, 3 * MIB + 7};
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        char id[DFS_FRAGMENT_ID_HEX + 1];
        make_id(200 + (unsigned)i, id);
        unsigned char *data = make_data(n, 200 + i);
        uint32_t sum = checksum_of(data, n);
        struct put_run p;
        expect_status(chain_put(&c->n[0], id, data, n, fwd, 2, 0, &p), DFS_OK, p.message);
        assert_true(p.got_resp);
        assert_string_equal(p.resp_id, id);
        assert_int_equal(p.resp_size, n);
        assert_int_equal(p.resp_checksum, sum);
        assert_int_equal(p.nacks, 2);
        assert_ack_ok(&p, 0, c->n[1].addr, n, sum);
        assert_ack_ok(&p, 1, c->n[2].addr, n, sum);
        for (int k = 0; k < 3; k++)
            assert_stored(&c->n[k], id, data, n, sum);
        /* D was not in the chain. */
        assert_not_stored(&c->n[3], id);
        total += n;
        free(data);
    }
    struct dfs_storage_service_stats a, b, cc;
    for (int k = 0; k < 3; k++)
        wait_idle(&c->n[k]);
    stats_of(&c->n[0], &a);
    stats_of(&c->n[1], &b);
    stats_of(&c->n[2], &cc);
    assert_int_equal(a.puts_ok, 4);
    assert_int_equal(b.puts_ok, 4);
    assert_int_equal(cc.puts_ok, 4);
    assert_int_equal(a.bytes_received, total);
    assert_int_equal(cc.bytes_received, total);
    /* Headers and CRCs ride along; only A and B forward. */
    assert_true(a.bytes_forwarded > total);
    assert_true(b.bytes_forwarded > total);
    assert_int_equal(cc.bytes_forwarded, 0);
    assert_int_equal(a.forwards_failed + b.forwards_failed + cc.forwards_failed, 0);
}

/* A -> B -> C -> D in 64 KiB messages: many chunks through a longer chain. */
static void test_chain_four_nodes(void **state)
{
    struct cfx *c = *state;
    const char *fwd[] = {c->n[1].addr, c->n[2].addr, c->n[3].addr};
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(210, id);
    size_t n = 2 * MIB + 3;
    unsigned char *data = make_data(n, 210);
    uint32_t sum = checksum_of(data, n);
    struct put_run p;
    put_init(&p, &c->n[0], id, data, n);
    p.chunk = B;
    p.forward = fwd;
    p.nforward = 3;
    put_start(&p);
    run_until(&c->n[0], &p.done);
    expect_status(p.status, DFS_OK, p.message);
    assert_int_equal(p.nacks, 3);
    for (size_t i = 0; i < 3; i++)
        assert_ack_ok(&p, i, fwd[i], n, sum);
    for (int k = 0; k < NODES; k++)
        assert_stored(&c->n[k], id, data, n, sum);
    free(data);
}

static void test_chain_dead_downstream(void **state)
{
    struct cfx *c = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(220, id);
    size_t n = 3 * MIB + 7;
    unsigned char *data = make_data(n, 220);
    uint32_t sum = checksum_of(data, n);

    /* The next node is down: A stores, B failed, C was never reached. */
    const char *fwd1[] = {c->dead, c->n[2].addr};
    struct put_run p;
    expect_status(chain_put(&c->n[0], id, data, n, fwd1, 2, 0, &p), DFS_OK, p.message);
    assert_int_equal(p.resp_checksum, sum);
    assert_int_equal(p.nacks, 2);
    assert_ack_failed(&p, 0, c->dead, "next node unavailable");
    char want[128];
    snprintf(want, sizeof want, "not reached: %s failed before it", c->dead);
    assert_ack_failed(&p, 1, c->n[2].addr, want);
    assert_stored(&c->n[0], id, data, n, sum);
    assert_not_stored(&c->n[2], id);
    struct dfs_storage_service_stats st;
    stats_of(&c->n[0], &st);
    assert_int_equal(st.forwards_failed, 1);
    assert_int_equal(st.puts_ok, 1);

    /* The last node is down: A and B store. */
    make_id(221, id);
    const char *fwd2[] = {c->n[1].addr, c->dead};
    expect_status(chain_put(&c->n[0], id, data, n, fwd2, 2, 0, &p), DFS_OK, p.message);
    assert_int_equal(p.nacks, 2);
    assert_ack_ok(&p, 0, c->n[1].addr, n, sum);
    assert_ack_failed(&p, 1, c->dead, "next node unavailable");
    assert_stored(&c->n[0], id, data, n, sum);
    assert_stored(&c->n[1], id, data, n, sum);
    free(data);
}

/* C's disk is full: A and B store, C's ack carries its RESOURCE_EXHAUSTED. */
static void test_chain_tail_write_fails(void **state)
{
    struct cfx *c = *state;
    const char *fwd[] = {c->n[1].addr, c->n[2].addr};
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(230, id);
    size_t n = 3 * MIB + 7;
    unsigned char *data = make_data(n, 230);
    uint32_t sum = checksum_of(data, n);
    struct put_run p;
    expect_status(chain_put(&c->n[0], id, data, n, fwd, 2, 0, &p), DFS_OK, p.message);
    assert_int_equal(p.nacks, 2);
    assert_ack_ok(&p, 0, c->n[1].addr, n, sum);
    assert_ack_failed(&p, 1, c->n[2].addr, "RESOURCE_EXHAUSTED");
    assert_stored(&c->n[0], id, data, n, sum);
    assert_stored(&c->n[1], id, data, n, sum);
    assert_not_stored(&c->n[2], id);
    struct dfs_storage_service_stats st;
    stats_of(&c->n[1], &st);
    assert_int_equal(st.forwards_failed, 1);
    stats_of(&c->n[2], &st);
    assert_int_equal(st.puts_failed, 1);
    free(data);
}

/* C goes away in the middle of a (paced, so slow) chain put: A and B still store. */
static void test_chain_tail_stops_mid_stream(void **state)
{
    struct cfx *c = *state;
    const char *fwd[] = {c->n[1].addr, c->n[2].addr};
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(240, id);
    size_t n = 8 * MIB;
    unsigned char *data = make_data(n, 240);
    uint32_t sum = checksum_of(data, n);
    struct put_run p;
    put_init(&p, &c->n[0], id, data, n);
    p.forward = fwd;
    p.nforward = 2;
    p.forward_rate = 4000000; /* about 2 s per link */
    put_start(&p);
    struct dfs_storage_service_stats st;
    int64_t until = dfs_clock_mono_ns() + 20000000000ll;
    do {
        dfs_rpc_loop_run_once(c->n[0].loop, 10);
        stats_of(&c->n[2], &st);
    } while (st.bytes_received < MIB && dfs_clock_mono_ns() < until);
    assert_true(st.bytes_received >= MIB);
    assert_true(st.bytes_received < n);
    dfs_rpc_server_stop(c->n[2].srv, 0);
    run_until(&c->n[0], &p.done);
    expect_status(p.status, DFS_OK, p.message);
    assert_int_equal(p.nacks, 2);
    assert_ack_ok(&p, 0, c->n[1].addr, n, sum);
    assert_ack_failed(&p, 1, c->n[2].addr, "");
    assert_true(p.acks[1].error[0] != '\0');
    assert_stored(&c->n[0], id, data, n, sum);
    assert_stored(&c->n[1], id, data, n, sum);
    struct dfs_frag_info info;
    assert_int_equal(dfs_frag_store_stat(c->n[2].store, id, &info, NULL), DFS_ENOTFOUND);
    assert_int_equal(tmp_entries(&c->n[2]), 0);
    free(data);
}

/* A corrupt CRC from the client: A fails with DATA_LOSS and no node keeps anything. */
static void test_chain_bad_crc(void **state)
{
    struct cfx *c = *state;
    const char *fwd[] = {c->n[1].addr, c->n[2].addr};
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(250, id);
    size_t n = 3 * MIB;
    unsigned char *data = make_data(n, 250);
    struct put_run p;
    put_init(&p, &c->n[0], id, data, n);
    p.forward = fwd;
    p.nforward = 2;
    p.bad_crc_msg = 1;
    put_start(&p);
    run_until(&c->n[0], &p.done);
    expect_status(p.status, DFS_EDATALOSS, p.message);
    assert_false(p.got_resp);
    assert_non_null(strstr(p.message, "block 16"));
    /* Polls until each node has released the put (the downstream calls were cancelled). */
    for (int k = 0; k < 3; k++)
        assert_not_stored(&c->n[k], id);
    struct dfs_storage_service_stats st;
    for (int k = 0; k < 3; k++) {
        stats_of(&c->n[k], &st);
        assert_int_equal(st.puts_ok, 0);
    }
    free(data);
}

/* The client cancels after every node has part of the fragment: nothing shows anywhere. */
static void test_chain_client_cancel(void **state)
{
    struct cfx *c = *state;
    const char *fwd[] = {c->n[1].addr, c->n[2].addr};
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(260, id);
    size_t n = 8 * MIB;
    unsigned char *data = make_data(n, 260);
    struct put_run p;
    put_init(&p, &c->n[0], id, data, n);
    p.forward = fwd;
    p.nforward = 2;
    p.pause = 2 * MIB;
    put_start(&p);
    struct dfs_storage_service_stats st;
    int64_t until = dfs_clock_mono_ns() + 10000000000ll;
    do {
        dfs_rpc_loop_run_once(c->n[0].loop, 10);
        stats_of(&c->n[2], &st);
    } while (st.bytes_received < 2 * MIB && dfs_clock_mono_ns() < until);
    assert_int_equal(st.bytes_received, 2 * MIB);
    for (int k = 0; k < 3; k++) {
        stats_of(&c->n[k], &st);
        assert_int_equal(st.puts_active, 1);
        assert_int_equal(tmp_entries(&c->n[k]), 1); /* the partial writes, invisible */
    }
    dfs_rpc_ccall_cancel(p.call);
    run_until(&c->n[0], &p.done);
    expect_status(p.status, DFS_ECANCELED, p.message);
    for (int k = 0; k < 3; k++) {
        assert_not_stored(&c->n[k], id);
        stats_of(&c->n[k], &st);
        assert_int_equal(st.puts_ok, 0);
        assert_int_equal(st.puts_failed, 1);
    }
    free(data);
}

/*
 * B's disk is stuck, so B stops taking data and A's sends to it stop completing (no deadline on
 * the client's call): A gives B up after its idle limit, stores its own copy and says why.
 */
static void test_chain_next_stalls(void **state)
{
    struct cfx *c = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(260, id);
    size_t n = 64 * MIB; /* more than the flow-control windows and socket buffers hold */
    unsigned char *data = make_data(n, 260);
    atomic_store(&writes_held, true);
    const char *fwd[] = {c->n[1].addr};
    struct put_run p;
    int rc = chain_put(&c->n[0], id, data, n, fwd, 1, 0, &p);
    atomic_store(&writes_held, false);
    expect_status(rc, DFS_OK, p.message);
    assert_int_equal(p.nacks, 1);
    assert_ack_failed(&p, 0, c->n[1].addr, "took no data for 300 ms");
    assert_stored(&c->n[0], id, data, n, checksum_of(data, n));
    wait_idle(&c->n[1]);
    assert_not_stored(&c->n[1], id);
    free(data);
}

/* Forward lists that are refused before anything is written or forwarded. */
static void test_chain_bad_forward_lists(void **state)
{
    struct cfx *c = *state;
    struct fx *a = &c->n[0];
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(270, id);
    unsigned char *data = make_data(B, 270);
    struct put_run p;

    /* A loop through A itself, anywhere in the list. */
    const char *self_last[] = {c->n[1].addr, a->addr};
    expect_status(chain_put(a, id, data, B, self_last, 2, 0, &p), DFS_EINVAL, p.message);
    assert_non_null(strstr(p.message, "loop"));
    assert_non_null(strstr(p.message, id));
    const char *self_only[] = {a->addr};
    expect_status(chain_put(a, id, data, B, self_only, 1, 0, &p), DFS_EINVAL, p.message);
    assert_non_null(strstr(p.message, "loop"));
    const char *twice[] = {c->n[1].addr, c->n[2].addr, c->n[1].addr};
    expect_status(chain_put(a, id, data, B, twice, 3, 0, &p), DFS_EINVAL, p.message);
    assert_non_null(strstr(p.message, "twice"));

    /* 17 entries. */
    char many[DFS_STORAGE_FORWARD_MAX + 1][64];
    const char *manyp[DFS_STORAGE_FORWARD_MAX + 1];
    for (int i = 0; i <= DFS_STORAGE_FORWARD_MAX; i++) {
        snprintf(many[i], sizeof many[i], "127.0.0.1:%d", i + 1);
        manyp[i] = many[i];
    }
    expect_status(chain_put(a, id, data, B, manyp, DFS_STORAGE_FORWARD_MAX + 1, 0, &p), DFS_EINVAL,
                  p.message);
    assert_non_null(strstr(p.message, "at most 16"));

    /* Entries that are not host:port. */
    const char *bad[] = {"",           "localhost", "host:",      ":7000",       "host:0",
                         "host:65536", "host:70a0", "ho st:7000", "host\n:7000", "h\x7f:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *fwd[] = {c->n[1].addr, bad[i]};
        expect_status(chain_put(a, id, data, B, fwd, 2, 0, &p), DFS_EINVAL, p.message);
        if (strstr(p.message, "is not a host:port") == NULL)
            fail_msg("entry %zu: %s", i, p.message);
        assert_null(strchr(p.message, '\n'));
    }
    /* Hops without their forward tickets: none, a put ticket instead, one for another address
       or another node. */
    const char *two[] = {c->n[1].addr, c->n[2].addr};
    for (int mode = 1; mode <= 4; mode++) {
        put_init(&p, a, id, data, B);
        p.forward = two;
        p.nforward = 2;
        p.hop_mode = mode;
        put_start(&p);
        run_until(a, &p.done);
        expect_status(p.status, mode == 1 ? DFS_EINVAL : DFS_EPERM, p.message);
        assert_non_null(strstr(p.message, mode == 1 ? "hop tickets" : "forward refused"));
    }
    assert_not_stored(a, id);
    /* Nobody downstream was contacted. */
    struct dfs_storage_service_stats st;
    for (int k = 1; k < NODES; k++) {
        stats_of(&c->n[k], &st);
        assert_int_equal(st.puts_ok + st.puts_failed + st.puts_active, 0);
    }
    stats_of(a, &st);
    assert_int_equal(st.bytes_forwarded, 0);

    /* 16 entries are allowed: the first is down, the other 15 are not reached. */
    snprintf(many[0], sizeof many[0], "%s", c->dead);
    expect_status(chain_put(a, id, data, B, manyp, DFS_STORAGE_FORWARD_MAX, 0, &p), DFS_OK,
                  p.message);
    assert_int_equal(p.nacks, DFS_STORAGE_FORWARD_MAX);
    assert_ack_failed(&p, 0, c->dead, "next node unavailable");
    for (size_t i = 1; i < DFS_STORAGE_FORWARD_MAX; i++)
        assert_ack_failed(&p, i, many[i], "not reached");
    assert_stored(a, id, data, B, checksum_of(data, B));
    free(data);
}

/* A 16 MiB chain put through A and B; returns its duration in seconds. */
static double timed_chain_put(struct cfx *c, unsigned idn, uint64_t header_rate)
{
    const char *fwd[] = {c->n[1].addr, c->n[2].addr};
    char id[DFS_FRAGMENT_ID_HEX + 1];
    make_id(idn, id);
    size_t n = 16 * MIB;
    unsigned char *data = make_data(n, idn);
    uint32_t sum = checksum_of(data, n);
    struct put_run p;
    int64_t t0 = dfs_clock_mono_ns();
    expect_status(chain_put(&c->n[0], id, data, n, fwd, 2, header_rate, &p), DFS_OK, p.message);
    double s = (double)(dfs_clock_mono_ns() - t0) / 1e9;
    assert_ack_ok(&p, 0, c->n[1].addr, n, sum);
    assert_ack_ok(&p, 1, c->n[2].addr, n, sum);
    for (int k = 0; k < 3; k++)
        assert_stored(&c->n[k], id, data, n, sum);
    free(data);
    return s;
}

/*
 * The header's forward_rate holds each link to 8 MB/s: the first 1 MiB message goes at once (the
 * burst), the other 15 MiB need at least 1.97 s on each link. Only a lower bound is asserted.
 */
static void test_chain_paced_by_header(void **state)
{
    struct cfx *c = *state;
    double fast = timed_chain_put(c, 280, 0);
    double paced = timed_chain_put(c, 281, 8000000);
    print_message("16 MiB chain put: %.2f s unpaced, %.2f s at 8 MB/s\n", fast, paced);
    if (paced <= 1.6)
        fail_msg("paced chain put took %.2f s, want more than 1.6 s", paced);
}

/* Every node's --forward-rate is 8 MB/s; a client asking for more gets the node's rate. */
static void test_chain_paced_by_node(void **state)
{
    struct cfx *c = *state;
    double paced = timed_chain_put(c, 290, 1000000000);
    print_message("16 MiB chain put: %.2f s with --forward-rate 8 MB/s\n", paced);
    if (paced <= 1.6)
        fail_msg("paced chain put took %.2f s, want more than 1.6 s", paced);
}

/*
 * Pacing is per link, not per put: two 8 MiB chain puts A -> B at once, each asking for 8 MB/s,
 * share A's link to B, so together they need at least (16 MiB - 1 MiB burst) / 8 MB/s = 1.97 s
 * (each alone would take about 1 s). Only a lower bound is asserted.
 */
static void test_chain_paced_per_link(void **state)
{
    struct cfx *c = *state;
    const char *fwd[] = {c->n[1].addr};
    enum { PUTS = 2 };
    char ids[PUTS][DFS_FRAGMENT_ID_HEX + 1];
    unsigned char *data[PUTS];
    struct put_run p[PUTS];
    size_t n = 8 * MIB;
    int64_t t0 = dfs_clock_mono_ns();
    for (int i = 0; i < PUTS; i++) {
        make_id(300 + (unsigned)i, ids[i]);
        data[i] = make_data(n, 300 + (unsigned)i);
        put_init(&p[i], &c->n[0], ids[i], data[i], n);
        p[i].forward = fwd;
        p[i].nforward = 1;
        p[i].forward_rate = 8000000;
        put_start(&p[i]);
    }
    for (int i = 0; i < PUTS; i++) {
        run_until(&c->n[0], &p[i].done);
        expect_status(p[i].status, DFS_OK, p[i].message);
        assert_ack_ok(&p[i], 0, c->n[1].addr, n, checksum_of(data[i], n));
    }
    double secs = (double)(dfs_clock_mono_ns() - t0) / 1e9;
    print_message("2 x 8 MiB chain puts over one 8 MB/s link: %.2f s\n", secs);
    if (secs <= 1.6)
        fail_msg("two puts sharing a paced link took %.2f s, want more than 1.6 s", secs);
    for (int i = 0; i < PUTS; i++) {
        assert_stored(&c->n[1], ids[i], data[i], n, checksum_of(data[i], n));
        free(data[i]);
    }
}

/* A unary call with the given ticket (NULL: none); returns the status and frees the answer. */
static int unary_with(struct fx *f, const char *method, const char *id, Dfs__V1__Ticket *t,
                      char **err)
{
    ProtobufCMessage *resp = NULL;
    int rc;
    if (strcmp(method, STAT_METHOD) == 0) {
        Dfs__V1__StatFragmentRequest req = DFS__V1__STAT_FRAGMENT_REQUEST__INIT;
        req.fragment_id = (char *)id;
        req.ticket = t;
        rc = dfs_rpc_unary(f->ch, method, &req.base, &dfs__v1__stat_fragment_response__descriptor,
                           &resp, 10000, err);
    } else {
        Dfs__V1__DeleteFragmentRequest req = DFS__V1__DELETE_FRAGMENT_REQUEST__INIT;
        req.fragment_id = (char *)id;
        req.ticket = t;
        rc = dfs_rpc_unary(f->ch, method, &req.base, &dfs__v1__delete_fragment_response__descriptor,
                           &resp, 10000, err);
    }
    if (resp != NULL)
        protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

/* Every call needs a ticket for its operation, fragment and this node, unexpired and signed. */
static void test_tickets_required(void **state)
{
    struct fx *f = *state;
    char id[DFS_FRAGMENT_ID_HEX + 1], other[DFS_FRAGMENT_ID_HEX + 1];
    make_id(41, id);
    make_id(42, other);
    unsigned char data[3 * B];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 7);
    /* Puts without a ticket, with an expired one, or with a ticket for reading, store nothing. */
    const int bad_puts[] = {-1, -2, DFS_TICKET_GET};
    for (size_t i = 0; i < sizeof bad_puts / sizeof bad_puts[0]; i++) {
        struct put_run r;
        put_init(&r, f, id, data, sizeof data);
        r.ticket_op = bad_puts[i];
        put_start(&r);
        run_until(f, &r.done);
        expect_status(r.status, DFS_EPERM, r.message);
        assert_non_null(strstr(r.message, "refused"));
        assert_not_stored(f, id);
    }
    struct put_run ok;
    assert_int_equal(put_all(f, id, data, sizeof data, &ok), DFS_OK);

    /* Reads, stats and deletes: another node's ticket, another fragment's, another op's. */
    struct dfs_test_ticket tt;
    char *err = NULL;
    const char *someone = "fedcba9876543210fedcba9876543210";
    assert_int_equal(unary_with(f, STAT_METHOD, id, NULL, &err), DFS_EPERM);
    free(err);
    err = NULL;
    assert_int_equal(
        unary_with(f, STAT_METHOD, id, dfs_test_ticket(&tt, DFS_TICKET_STAT, id, someone, 0), &err),
        DFS_EPERM);
    assert_non_null(strstr(err, "another node"));
    free(err);
    err = NULL;
    assert_int_equal(unary_with(f, DEL_METHOD, id,
                                dfs_test_ticket(&tt, DFS_TICKET_DELETE, other, f->node_id, 0),
                                &err),
                     DFS_EPERM);
    free(err);
    err = NULL;
    assert_int_equal(unary_with(f, DEL_METHOD, id,
                                dfs_test_ticket(&tt, DFS_TICKET_GET, id, f->node_id, 0), &err),
                     DFS_EPERM);
    free(err);
    err = NULL;
    /* A forged MAC. */
    Dfs__V1__Ticket *forged = dfs_test_ticket(&tt, DFS_TICKET_DELETE, id, f->node_id, 0);
    tt.t.mac[0] ^= 1;
    assert_int_equal(unary_with(f, DEL_METHOD, id, forged, &err), DFS_EPERM);
    assert_non_null(strstr(err, "signature"));
    free(err);
    err = NULL;
    /* The fragment is still there; a read with someone else's ticket gets nothing. */
    struct get_run g;
    assert_int_equal(get_range(f, id, 0, 0, &g), DFS_OK);
    assert_int_equal(g.len, sizeof data);
    free(g.buf);
    dfs_rpc_ccall *call = NULL;
    struct get_run h;
    memset(&h, 0, sizeof h);
    h.id = id;
    assert_int_equal(dfs_rpc_ccall_start(f->loop, f->ch, GET_METHOD, 30000, get_done, &h, &call),
                     DFS_OK);
    Dfs__V1__GetFragmentRequest req = DFS__V1__GET_FRAGMENT_REQUEST__INIT;
    req.fragment_id = id;
    req.ticket = dfs_test_ticket(&tt, DFS_TICKET_GET, id, someone, 0);
    assert_int_equal(dfs_rpc_ccall_send(call, &req.base, true, NULL, NULL), DFS_OK);
    assert_int_equal(
        dfs_rpc_ccall_recv(call, &dfs__v1__get_fragment_response__descriptor, get_recv, &h),
        DFS_OK);
    run_until(f, &h.done);
    assert_int_equal(h.status, DFS_EPERM);
    assert_int_equal(h.len, 0);
    free(h.buf);
    /* With the right ticket, the delete works. */
    assert_int_equal(unary_with(f, DEL_METHOD, id,
                                dfs_test_ticket(&tt, DFS_TICKET_DELETE, id, f->node_id, 0), &err),
                     DFS_OK);
    assert_not_stored(f, id);
}

int main(void)
{
    dfs_log_init("storage_service_test", DFS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tickets_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ranged_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_chunks, setup_small_chunks, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_crc_is_data_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_crc_keeps_old_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_write_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cancel_mid_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_upload_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_on_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_and_stat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large_for_the_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_wire_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_put_is_cancelled, setup_idle, teardown),
        cmocka_unit_test_setup_teardown(test_many_concurrent_puts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_sizes, setup_chain, teardown_chain),
        cmocka_unit_test_setup_teardown(test_chain_four_nodes, setup_chain, teardown_chain),
        cmocka_unit_test_setup_teardown(test_chain_dead_downstream, setup_chain, teardown_chain),
        cmocka_unit_test_setup_teardown(test_chain_tail_write_fails, setup_chain_c_full,
                                        teardown_chain),
        cmocka_unit_test_setup_teardown(test_chain_tail_stops_mid_stream, setup_chain,
                                        teardown_chain),
        cmocka_unit_test_setup_teardown(test_chain_bad_crc, setup_chain, teardown_chain),
        cmocka_unit_test_setup_teardown(test_chain_client_cancel, setup_chain, teardown_chain),
        cmocka_unit_test_setup_teardown(test_chain_bad_forward_lists, setup_chain, teardown_chain),
        cmocka_unit_test_setup_teardown(test_chain_next_stalls, setup_chain_b_stuck,
                                        teardown_chain),
        cmocka_unit_test_setup_teardown(test_chain_paced_by_header, setup_chain, teardown_chain),
        cmocka_unit_test_setup_teardown(test_chain_paced_by_node, setup_chain_paced,
                                        teardown_chain),
        cmocka_unit_test_setup_teardown(test_chain_paced_per_link, setup_chain, teardown_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
