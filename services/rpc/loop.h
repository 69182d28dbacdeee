/* An event loop over one gRPC completion queue: tags that carry their callback, plus timers. */
#ifndef DFS_SERVICES_RPC_LOOP_H
#define DFS_SERVICES_RPC_LOOP_H

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Every operation posted to a loop's completion queue carries a dfs_rpc_tag, usually embedded in
 * the state of the call it belongs to. The loop only does `tag->done(tag, ok)`: each call's state
 * machine lives with the call, not in a switch in the loop.
 */
typedef struct dfs_rpc_tag dfs_rpc_tag;
struct dfs_rpc_tag {
    /* ok is the completion's success bit (false: the operation failed or the call is over). */
    void (*done)(dfs_rpc_tag *tag, bool ok);
};

/*
 * A timer, embedded in its owner's state. Armed with dfs_rpc_loop_timer_arm; fires once on the
 * loop's thread unless cancelled first. A timer must stay alive while armed.
 */
typedef struct dfs_rpc_timer dfs_rpc_timer;
struct dfs_rpc_timer {
    void (*fire)(dfs_rpc_timer *timer);
    /* Owned by the loop while armed. */
    int64_t deadline_ns;
    int heap_index; /* -1 when not armed */
};

typedef struct dfs_rpc_loop dfs_rpc_loop;

/*
 * Create a loop with its own completion queue (grpc_init is taken here and released by destroy).
 * The loop runs on whichever thread calls dfs_rpc_loop_run / _run_once: exactly one thread at a
 * time. Returns NULL when out of memory.
 */
dfs_rpc_loop *dfs_rpc_loop_create(void);

/*
 * Shut the completion queue down, drain it (running the callbacks of operations still completing)
 * and free the loop. Every call bound to the queue must be finished or cancelled first, otherwise
 * this waits for them. Accepts NULL.
 */
void dfs_rpc_loop_destroy(dfs_rpc_loop *loop);

/* The completion queue, for binding calls to this loop (borrowed; lives as long as the loop). */
grpc_completion_queue *dfs_rpc_loop_cq(dfs_rpc_loop *loop);

/*
 * Dispatch completions and due timers until the queue is shut down (dfs_rpc_loop_shutdown).
 * For a loop that owns its thread.
 */
void dfs_rpc_loop_run(dfs_rpc_loop *loop);

/*
 * Dispatch at most one completion, waiting up to timeout_ms (or until the next timer is due, if
 * sooner), then run due timers. Returns false once the queue is shut down and drained.
 */
bool dfs_rpc_loop_run_once(dfs_rpc_loop *loop, int64_t timeout_ms);

/* Begin shutting the queue down: run/run_once return once every pending operation completed. */
void dfs_rpc_loop_shutdown(dfs_rpc_loop *loop);

/*
 * Arm a timer to fire at deadline_ns (dfs_clock_mono_ns, common/clock.h). Re-arming an armed
 * timer moves it. Loop thread only.
 */
void dfs_rpc_loop_timer_arm(dfs_rpc_loop *loop, dfs_rpc_timer *timer, int64_t deadline_ns);

/* Disarm a timer if armed. Loop thread only. */
void dfs_rpc_loop_timer_cancel(dfs_rpc_loop *loop, dfs_rpc_timer *timer);

/*
 * Run tag->done(tag, true) on the loop's thread, soon: how another thread hands work back to a
 * loop (a worker that finishes a server call bound to the loop, say). Callable from any thread.
 *
 * The loop must still be running and must not be shut down before done has run: the caller
 * proves it by holding something the loop's owner waits for (an unfinished server call bound to
 * the loop: dfs_rpc_server_stop waits for every call). tag is borrowed and must stay alive until
 * its done runs; done may free it. Posts from one thread run in the order they were made only
 * as far as gRPC delivers them in order (do not rely on it).
 *
 * How: the completion queue has no public "post" in the C core, so each post is a call on a
 * lame channel (one per loop, which fails every call at once) whose completion carries the tag.
 * It costs a call allocation: fine for hand-overs, not for a data path. Returns false when no
 * call could be made (nothing is posted then).
 */
bool dfs_rpc_loop_post(dfs_rpc_loop *loop, dfs_rpc_tag *tag);

/* Initialise a timer before first use. */
void dfs_rpc_timer_init(dfs_rpc_timer *timer, void (*fire)(dfs_rpc_timer *timer));

/* A gRPC deadline `ms` milliseconds from now (ms < 0: infinite). */
gpr_timespec dfs_rpc_deadline_ms(int64_t ms);

#endif /* DFS_SERVICES_RPC_LOOP_H */
