/* Tests only: a follower-like server on the raw gRPC C core API (one thread, one call at a time). */
#include "services/rpc/follower_testing.h"

#include "common/err.h"
#include "services/rpc/leader.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dfs_rpc_follower {
    grpc_server *srv;
    grpc_completion_queue *cq;
    pthread_t thread;
    int port;
    atomic_int calls;
    bool saw_shutdown; /* the thread took tag_shutdown (read after join) */
    char *leader, *message;
};

/* Tags: the address of one of these bytes says which event it is. */
static char tag_new, tag_done, tag_shutdown;

static void *serve(void *arg)
{
    dfs_rpc_follower *f = arg;
    for (;;) {
        grpc_call *call = NULL;
        grpc_call_details details;
        grpc_metadata_array request_md;
        grpc_call_details_init(&details);
        grpc_metadata_array_init(&request_md);
        grpc_call_error e =
            grpc_server_request_call(f->srv, &call, &details, &request_md, f->cq, f->cq, &tag_new);
        bool shutting_down = e != GRPC_CALL_OK;
        grpc_event ev = {0};
        while (!shutting_down) {
            ev = grpc_completion_queue_next(f->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            if (ev.type != GRPC_OP_COMPLETE || ev.tag == &tag_shutdown) {
                f->saw_shutdown = ev.tag == &tag_shutdown;
                shutting_down = true;
                break;
            }
            if (ev.tag == &tag_new) {
                shutting_down = !ev.success;
                break;
            }
        }
        if (!shutting_down && ev.success) {
            grpc_metadata md = {0};
            md.key = grpc_slice_from_static_string(DFS_RPC_LEADER_KEY);
            md.value = grpc_slice_from_copied_string(f->leader != NULL ? f->leader : "");
            grpc_slice msg = grpc_slice_from_copied_string(f->message);
            int cancelled = 0;
            grpc_op ops[3];
            memset(ops, 0, sizeof ops);
            ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
            ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
            ops[1].data.recv_close_on_server.cancelled = &cancelled;
            ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
            ops[2].data.send_status_from_server.status = GRPC_STATUS_UNAVAILABLE;
            ops[2].data.send_status_from_server.status_details = &msg;
            ops[2].data.send_status_from_server.trailing_metadata_count = f->leader != NULL;
            ops[2].data.send_status_from_server.trailing_metadata = &md;
            atomic_fetch_add(&f->calls, 1);
            if (grpc_call_start_batch(call, ops, 3, &tag_done, NULL) == GRPC_CALL_OK) {
                for (;;) {
                    ev =
                        grpc_completion_queue_next(f->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
                    if (ev.type != GRPC_OP_COMPLETE || ev.tag == &tag_done)
                        break;
                    if (ev.tag == &tag_shutdown)
                        shutting_down = f->saw_shutdown = true;
                }
            }
            grpc_slice_unref(msg);
            grpc_slice_unref(md.value);
        }
        if (call != NULL)
            grpc_call_unref(call);
        grpc_call_details_destroy(&details);
        grpc_metadata_array_destroy(&request_md);
        if (shutting_down)
            return NULL;
    }
}

int dfs_rpc_follower_start(const char *leader, const char *message, dfs_rpc_follower **out)
{
    dfs_rpc_follower *f = calloc(1, sizeof *f);
    if (f == NULL)
        return DFS_ENOMEM;
    grpc_init();
    f->leader = leader != NULL ? strdup(leader) : NULL;
    f->message = strdup(message);
    f->cq = grpc_completion_queue_create_for_next(NULL);
    f->srv = grpc_server_create(NULL, NULL);
    grpc_server_register_completion_queue(f->srv, f->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    f->port = grpc_server_add_http2_port(f->srv, "127.0.0.1:0", creds);
    grpc_server_credentials_release(creds);
    if (f->port <= 0) {
        grpc_server_destroy(f->srv);
        grpc_completion_queue_shutdown(f->cq);
        grpc_completion_queue_destroy(f->cq);
        free(f->leader);
        free(f->message);
        free(f);
        grpc_shutdown();
        return DFS_EINTERNAL;
    }
    grpc_server_start(f->srv);
    pthread_create(&f->thread, NULL, serve, f);
    *out = f;
    return DFS_OK;
}

int dfs_rpc_follower_port(const dfs_rpc_follower *f)
{
    return f->port;
}

int dfs_rpc_follower_calls(const dfs_rpc_follower *f)
{
    return atomic_load(&((dfs_rpc_follower *)f)->calls);
}

void dfs_rpc_follower_stop(dfs_rpc_follower *f)
{
    if (f == NULL)
        return;
    grpc_server_shutdown_and_notify(f->srv, f->cq, &tag_shutdown);
    grpc_server_cancel_all_calls(f->srv);
    pthread_join(f->thread, NULL);
    /* The thread has left: wait here for the shutdown it did not see. */
    while (!f->saw_shutdown) {
        grpc_event ev = grpc_completion_queue_next(f->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        f->saw_shutdown = ev.type != GRPC_OP_COMPLETE || ev.tag == &tag_shutdown;
    }
    grpc_server_destroy(f->srv);
    grpc_completion_queue_shutdown(f->cq);
    while (grpc_completion_queue_next(f->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(f->cq);
    free(f->leader);
    free(f->message);
    free(f);
    grpc_shutdown();
}
