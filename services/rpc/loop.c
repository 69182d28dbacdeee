/* An event loop over one gRPC completion queue, with a min-heap of timers. */
#include "services/rpc/loop.h"

#include "common/clock.h"

#include <assert.h>
#include <grpc/slice.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct dfs_rpc_loop {
    grpc_completion_queue *cq;
    grpc_channel *lame; /* for dfs_rpc_loop_post; created with the loop, thread-safe */
    bool drained;       /* GRPC_QUEUE_SHUTDOWN seen */
    /* Armed timers, a binary min-heap on deadline_ns; touched by the loop thread only. */
    dfs_rpc_timer **heap;
    int nheap;
    int capheap;
};

gpr_timespec dfs_rpc_deadline_ms(int64_t ms)
{
    if (ms < 0)
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

dfs_rpc_loop *dfs_rpc_loop_create(void)
{
    dfs_rpc_loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL)
        return NULL;
    grpc_init();
    loop->cq = grpc_completion_queue_create_for_next(NULL);
    loop->lame = grpc_lame_client_channel_create("dfs-loop-post", GRPC_STATUS_UNAVAILABLE,
                                                 "a dfs_rpc_loop_post wake-up");
    return loop;
}

/* One post: the lame call whose single batch completes on the loop with the caller's tag. */
struct post {
    dfs_rpc_tag tag;
    dfs_rpc_tag *user;
    grpc_call *call;
    grpc_metadata_array trailing;
    grpc_status_code status;
    grpc_slice details;
};

static void post_done(dfs_rpc_tag *tag, bool ok)
{
    (void)ok; /* the batch only ever fails the lame call: the completion itself is the event */
    struct post *p = (struct post *)tag;
    dfs_rpc_tag *user = p->user;
    grpc_metadata_array_destroy(&p->trailing);
    grpc_slice_unref(p->details);
    grpc_call_unref(p->call);
    free(p);
    user->done(user, true);
}

bool dfs_rpc_loop_post(dfs_rpc_loop *loop, dfs_rpc_tag *tag)
{
    if (loop->lame == NULL)
        return false;
    struct post *p = calloc(1, sizeof *p);
    if (p == NULL)
        return false;
    p->tag.done = post_done;
    p->user = tag;
    p->details = grpc_empty_slice();
    grpc_metadata_array_init(&p->trailing);
    p->call = grpc_channel_create_call(loop->lame, NULL, GRPC_PROPAGATE_DEFAULTS, loop->cq,
                                       grpc_slice_from_static_string("/dfs.rpc.Loop/Post"), NULL,
                                       gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (p->call == NULL) {
        grpc_metadata_array_destroy(&p->trailing);
        free(p);
        return false;
    }
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[1].data.recv_status_on_client.trailing_metadata = &p->trailing;
    ops[1].data.recv_status_on_client.status = &p->status;
    ops[1].data.recv_status_on_client.status_details = &p->details;
    if (grpc_call_start_batch(p->call, ops, 2, &p->tag, NULL) != GRPC_CALL_OK) {
        grpc_call_unref(p->call);
        grpc_metadata_array_destroy(&p->trailing);
        free(p);
        return false;
    }
    return true;
}

grpc_completion_queue *dfs_rpc_loop_cq(dfs_rpc_loop *loop)
{
    return loop->cq;
}

void dfs_rpc_timer_init(dfs_rpc_timer *timer, void (*fire)(dfs_rpc_timer *timer))
{
    timer->fire = fire;
    timer->deadline_ns = 0;
    timer->heap_index = -1;
}

static void heap_swap(dfs_rpc_loop *loop, int a, int b)
{
    dfs_rpc_timer *t = loop->heap[a];
    loop->heap[a] = loop->heap[b];
    loop->heap[b] = t;
    loop->heap[a]->heap_index = a;
    loop->heap[b]->heap_index = b;
}

static void heap_up(dfs_rpc_loop *loop, int i)
{
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (loop->heap[parent]->deadline_ns <= loop->heap[i]->deadline_ns)
            break;
        heap_swap(loop, i, parent);
        i = parent;
    }
}

static void heap_down(dfs_rpc_loop *loop, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->nheap && loop->heap[l]->deadline_ns < loop->heap[m]->deadline_ns)
            m = l;
        if (r < loop->nheap && loop->heap[r]->deadline_ns < loop->heap[m]->deadline_ns)
            m = r;
        if (m == i)
            return;
        heap_swap(loop, i, m);
        i = m;
    }
}

void dfs_rpc_loop_timer_cancel(dfs_rpc_loop *loop, dfs_rpc_timer *timer)
{
    int i = timer->heap_index;
    if (i < 0)
        return;
    int last = loop->nheap - 1;
    if (i != last)
        heap_swap(loop, i, last);
    loop->nheap--;
    timer->heap_index = -1;
    if (i < loop->nheap) {
        heap_up(loop, i);
        heap_down(loop, i);
    }
}

void dfs_rpc_loop_timer_arm(dfs_rpc_loop *loop, dfs_rpc_timer *timer, int64_t deadline_ns)
{
    dfs_rpc_loop_timer_cancel(loop, timer);
    if (loop->nheap == loop->capheap) {
        int cap = loop->capheap ? 2 * loop->capheap : 16;
        dfs_rpc_timer **h = realloc(loop->heap, (size_t)cap * sizeof *h);
        /* Without room the timer fires at once: late work beats lost work. */
        if (h == NULL) {
            timer->fire(timer);
            return;
        }
        loop->heap = h;
        loop->capheap = cap;
    }
    timer->deadline_ns = deadline_ns;
    timer->heap_index = loop->nheap;
    loop->heap[loop->nheap++] = timer;
    heap_up(loop, timer->heap_index);
}

static void run_due_timers(dfs_rpc_loop *loop)
{
    int64_t now = dfs_clock_mono_ns();
    while (loop->nheap > 0 && loop->heap[0]->deadline_ns <= now) {
        dfs_rpc_timer *t = loop->heap[0];
        dfs_rpc_loop_timer_cancel(loop, t);
        t->fire(t);
    }
}

bool dfs_rpc_loop_run_once(dfs_rpc_loop *loop, int64_t timeout_ms)
{
    if (loop->drained)
        return false;
    int64_t wait_ns = timeout_ms < 0 ? INT64_MAX : timeout_ms * 1000000;
    if (loop->nheap > 0) {
        int64_t until = loop->heap[0]->deadline_ns - dfs_clock_mono_ns();
        if (until < wait_ns)
            wait_ns = until < 0 ? 0 : until;
    }
    gpr_timespec deadline = wait_ns == INT64_MAX
                                ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                                : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                               gpr_time_from_nanos(wait_ns, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_next(loop->cq, deadline, NULL);
    switch (ev.type) {
    case GRPC_OP_COMPLETE: {
        dfs_rpc_tag *tag = ev.tag;
        tag->done(tag, ev.success != 0);
        break;
    }
    case GRPC_QUEUE_SHUTDOWN:
        loop->drained = true;
        return false;
    case GRPC_QUEUE_TIMEOUT:
        break;
    }
    run_due_timers(loop);
    return true;
}

void dfs_rpc_loop_run(dfs_rpc_loop *loop)
{
    while (dfs_rpc_loop_run_once(loop, -1)) {
    }
}

void dfs_rpc_loop_shutdown(dfs_rpc_loop *loop)
{
    grpc_completion_queue_shutdown(loop->cq);
}

void dfs_rpc_loop_destroy(dfs_rpc_loop *loop)
{
    if (loop == NULL)
        return;
    if (!loop->drained) {
        grpc_completion_queue_shutdown(loop->cq);
        while (dfs_rpc_loop_run_once(loop, -1)) {
        }
    }
    grpc_completion_queue_destroy(loop->cq);
    if (loop->lame != NULL)
        grpc_channel_destroy(loop->lame);
    free(loop->heap);
    free(loop);
    grpc_shutdown();
}
