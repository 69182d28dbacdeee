/* dfs: the command-line client. Signals here; the parsing and the commands in cli.c. */
#include "cli/cli.h"

#include <signal.h>
#include <string.h>

/* The one process-wide flag a signal handler may set: transfers poll it. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

int main(int argc, char **argv)
{
    /* Ctrl-C stops a transfer cleanly (a pending upload is aborted, a download kept for
       --resume); a second one kills. The shell reinstalls its own handler. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct dfs_session sess = {.client = NULL, .interrupted = &interrupted};
    return dfs_cli_run(&sess, argc, argv);
}
