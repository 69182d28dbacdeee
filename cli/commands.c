/* The dfs commands. */
#include "cli/commands.h"

#include "cli/progress.h"
#include "client/dfs_client.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/json.h"
#include "common/units.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int dfs_cli_error(int code, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* One line, whatever the message held. */
    for (char *p = buf; *p != '\0'; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fflush(stdout);
    fprintf(stderr, "dfs: %s\n", buf);
    return code == DFS_ECANCELED ? DFS_EXIT_INTERRUPTED : DFS_EXIT_FAIL;
}

static const char *policy_name(int p)
{
    static const char *const names[] = {"default", "random", "min_copy", "buddy", "least_used"};
    return p >= 0 && p <= 4 ? names[p] : "unknown";
}

static const char *node_state_name(int s)
{
    static const char *const names[] = {"unknown", "alive",    "suspect",
                                        "dead",    "draining", "decommissioned"};
    return s >= 0 && s <= 5 ? names[s] : "unknown";
}

static void format_time(int64_t ms, char *buf, size_t cap)
{
    if (ms <= 0) {
        snprintf(buf, cap, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void format_redundancy(const Dfs__V1__Redundancy *r, char *buf, size_t cap)
{
    if (r == NULL)
        snprintf(buf, cap, "-");
    else if (r->scheme == DFS__V1__REDUNDANCY__SCHEME__ERASURE)
        snprintf(buf, cap, "erasure %" PRIu32 "+%" PRIu32, r->data, r->parity);
    else
        snprintf(buf, cap, "%" PRIu32 " replicas x %" PRIu32 " fragments", r->replicas,
                 r->fragments);
}

static void sha_hex(const ProtobufCBinaryData *b, char hex[65])
{
    if (b->len != DFS_SHA256_BYTES)
        snprintf(hex, 65, "-");
    else
        dfs_client_sha256_hex(b->data, hex);
}

/* ---- put / get ---- */

/*
 * Progress goes to the terminal line and, with --progress-log, to a file: one "seconds bytes" line
 * per message (seconds since the transfer started), for benchmarks that check how even a throttled
 * transfer is.
 */
struct progress_sink {
    dfs_progress *bar;
    FILE *log;
    int64_t t0_ns; /* dfs_clock_mono_ns at open: the progress log's times count from it */
    /* Notes (what a transfer waits for): on the progress line when there is one, else on
       stderr, at most every NOTE_EVERY_S while the same wait lasts; none with --quiet. */
    const char *label;
    bool on_line, quiet;
    int64_t noted_ns; /* when a note last went to stderr; 0: none in this wait */
};

#define NOTE_EVERY_S 15

static void note_both(void *arg, const char *what)
{
    struct progress_sink *p = arg;
    dfs_progress_note(p->bar, what);
    if (what == NULL) {
        p->noted_ns = 0;
        return;
    }
    if (p->on_line || p->quiet)
        return;
    int64_t now = dfs_clock_mono_ns();
    if (p->noted_ns != 0 && now - p->noted_ns < (int64_t)NOTE_EVERY_S * 1000000000)
        return;
    p->noted_ns = now;
    fflush(stdout);
    fprintf(stderr, "dfs: %s: %s\n", p->label, what);
}

static void progress_both(void *arg, uint64_t done, uint64_t total)
{
    struct progress_sink *p = arg;
    dfs_progress_update(p->bar, done, total);
    if (p->log != NULL) {
        double s = (double)(dfs_clock_mono_ns() - p->t0_ns) / 1e9;
        fprintf(p->log, "%.6f %" PRIu64 "\n", s, done);
    }
}

static int sink_open(struct progress_sink *p, const struct dfs_cli *cli, const char *label)
{
    memset(p, 0, sizeof *p);
    p->t0_ns = dfs_clock_mono_ns();
    if (cli->progress_log != NULL && (p->log = fopen(cli->progress_log, "w")) == NULL)
        return dfs_cli_error(DFS_EIO, "cannot write %s", cli->progress_log);
    p->bar = dfs_progress_create(stderr, label, 0, cli->progress);
    p->label = label;
    p->on_line = cli->progress;
    p->quiet = cli->quiet;
    return DFS_EXIT_OK;
}

static void sink_close(struct progress_sink *p, bool ok)
{
    dfs_progress_finish(p->bar, ok);
    if (p->log != NULL)
        fclose(p->log);
}

int dfs_cmd_put(struct dfs_cli *cli, const char *local, const char *remote)
{
    struct dfs_quote q;
    const char *shown = dfs_quote(remote, &q); /* a bad path is echoed short */
    /* "-": standard input, as a file whose size is known (client/spool.h). */
    int in_fd = -1;
    if (strcmp(local, "-") == 0) {
        const char *dir = getenv("TMPDIR");
        uint64_t n = 0;
        char *err = NULL;
        int rc = dfs_client_spool(STDIN_FILENO, dir != NULL && dir[0] != '\0' ? dir : "/tmp", 0,
                                  cli->interrupted, &in_fd, &n, &err);
        if (rc != DFS_OK) {
            int status =
                dfs_cli_error(rc, "put %s: %s", shown, err != NULL ? err : dfs_strerror(rc));
            free(err);
            return status;
        }
        local = "standard input";
    }
    struct dfs_client_put_opts o = {
        .replicas = cli->replicas,
        .fragments = cli->fragments,
        .ec_data = cli->ec_data,
        .ec_parity = cli->ec_parity,
        .policy = cli->policy,
        .overwrite = cli->force,
        .stall_timeout_ms = cli->stall_timeout_ms,
        .interrupted = cli->interrupted,
        .link_rate = cli->link_rate,
        .max_rate = cli->max_rate,
        .parallel = cli->parallel,
        .chain = cli->chain,
        .from_fd = in_fd >= 0,
        .fd = in_fd,
    };
    char label[300];
    snprintf(label, sizeof label, "put %s", shown);
    struct progress_sink sink;
    if (sink_open(&sink, cli, label) != DFS_EXIT_OK) {
        if (in_fd >= 0)
            close(in_fd);
        return DFS_EXIT_FAIL;
    }
    o.progress = progress_both;
    o.progress_arg = &sink;
    o.note = note_both;
    o.note_arg = &sink;
    struct dfs_client_put_result r;
    char *err = NULL;
    int rc = dfs_client_put(cli->client, local, remote, &o, &r, &err);
    sink_close(&sink, rc == DFS_OK);
    if (in_fd >= 0)
        close(in_fd);
    if (rc != DFS_OK) {
        int status = dfs_cli_error(rc, "put %s: %s", shown, err != NULL ? err : dfs_strerror(rc));
        free(err);
        return status;
    }
    char hex[65], size[32], rate[32];
    dfs_client_sha256_hex(r.sha256, hex);
    if (cli->json) {
        dfs_json j;
        dfs_json_init(&j, stdout);
        dfs_json_begin_object(&j);
        dfs_json_key(&j, "path");
        dfs_json_string(&j, r.path);
        dfs_json_key(&j, "file_id");
        dfs_json_string(&j, r.file_id);
        dfs_json_key(&j, "size");
        dfs_json_uint(&j, r.size);
        dfs_json_key(&j, "sha256");
        dfs_json_string(&j, hex);
        dfs_json_key(&j, "fragments");
        dfs_json_uint(&j, r.fragments);
        dfs_json_key(&j, "replicas");
        dfs_json_uint(&j, r.replicas);
        if (r.ec_data > 0) {
            dfs_json_key(&j, "ec_data");
            dfs_json_uint(&j, r.ec_data);
            dfs_json_key(&j, "ec_parity");
            dfs_json_uint(&j, r.ec_parity);
        }
        dfs_json_key(&j, "moved_copies");
        dfs_json_uint(&j, r.replaced_targets);
        dfs_json_key(&j, "seconds");
        dfs_json_double(&j, r.seconds);
        dfs_json_end_object(&j);
        dfs_json_finish(&j);
    } else if (!cli->quiet) {
        dfs_format_size(r.size, size, sizeof size);
        dfs_format_rate(r.seconds > 0 ? (double)r.size / r.seconds : 0, rate, sizeof rate);
        char red[64];
        if (r.ec_data > 0)
            snprintf(red, sizeof red, "erasure %" PRIu32 "+%" PRIu32, r.ec_data, r.ec_parity);
        else
            snprintf(red, sizeof red, "%" PRIu32 " fragments x %" PRIu32 " replicas", r.fragments,
                     r.replicas);
        printf("stored %s (%s, %s) in %.2f s, %s\n", r.path, size, red, r.seconds, rate);
        if (r.replaced_targets > 0)
            printf("  %" PRIu32 " cop%s went to other nodes after failures\n", r.replaced_targets,
                   r.replaced_targets == 1 ? "y" : "ies");
        printf("  sha256 %s\n", hex);
    }
    return DFS_EXIT_OK;
}

int dfs_cmd_get(struct dfs_cli *cli, const char *remote, const char *local)
{
    struct dfs_client_get_opts o = {
        .stall_timeout_ms = cli->stall_timeout_ms,
        .interrupted = cli->interrupted,
        .link_rate = cli->link_rate,
        .max_rate = cli->max_rate,
        .parallel = cli->parallel,
        .resume = cli->resume,
    };
    char label[300];
    snprintf(label, sizeof label, "get %s", dfs_quote(remote, &(struct dfs_quote){{0}}));
    struct progress_sink sink;
    if (sink_open(&sink, cli, label) != DFS_EXIT_OK)
        return DFS_EXIT_FAIL;
    o.progress = progress_both;
    o.progress_arg = &sink;
    struct dfs_client_get_result r;
    char *err = NULL;
    int rc = dfs_client_get(cli->client, remote, local, &o, &r, &err);
    sink_close(&sink, rc == DFS_OK);
    if (rc != DFS_OK) {
        int status = dfs_cli_error(rc, "get %s: %s", dfs_quote(remote, &(struct dfs_quote){{0}}),
                                   err != NULL ? err : dfs_strerror(rc));
        free(err);
        return status;
    }
    bool to_stdout = strcmp(local, "-") == 0;
    char hex[65], size[32], rate[32];
    dfs_client_sha256_hex(r.sha256, hex);
    if (cli->json && !to_stdout) {
        dfs_json j;
        dfs_json_init(&j, stdout);
        dfs_json_begin_object(&j);
        dfs_json_key(&j, "path");
        dfs_json_string(&j, remote);
        dfs_json_key(&j, "local");
        dfs_json_string(&j, local);
        dfs_json_key(&j, "size");
        dfs_json_uint(&j, r.size);
        dfs_json_key(&j, "sha256");
        dfs_json_string(&j, hex);
        dfs_json_key(&j, "failovers");
        dfs_json_uint(&j, r.failovers);
        dfs_json_key(&j, "rebuilt_cells");
        dfs_json_uint(&j, r.rebuilt);
        dfs_json_key(&j, "resumed_bytes");
        dfs_json_uint(&j, r.resumed);
        dfs_json_key(&j, "seconds");
        dfs_json_double(&j, r.seconds);
        dfs_json_end_object(&j);
        dfs_json_finish(&j);
    } else if (!cli->quiet && !to_stdout) {
        dfs_format_size(r.size, size, sizeof size);
        dfs_format_rate(r.seconds > 0 ? (double)r.size / r.seconds : 0, rate, sizeof rate);
        printf("fetched %s -> %s (%s) in %.2f s, %s, sha256 verified\n", remote, local, size,
               r.seconds, rate);
        if (r.failovers > 0)
            printf("  %" PRIu32 " range read%s continued from another copy after failures\n",
                   r.failovers, r.failovers == 1 ? "" : "s");
        if (r.resumed > 0) {
            char resumed[32];
            dfs_format_size(r.resumed, resumed, sizeof resumed);
            printf("  resumed: %s were already downloaded\n", resumed);
        }
        if (r.rebuilt > 0)
            printf("  %" PRIu64 " cell%s rebuilt from parity (fragments unreadable)\n", r.rebuilt,
                   r.rebuilt == 1 ? "" : "s");
    }
    return DFS_EXIT_OK;
}

/* ---- stat ---- */

static void json_file(dfs_json *j, const Dfs__V1__FileInfo *f, bool layout)
{
    char hex[65];
    sha_hex(&f->sha256, hex);
    dfs_json_begin_object(j);
    dfs_json_key(j, "path");
    dfs_json_string(j, f->path);
    dfs_json_key(j, "file_id");
    dfs_json_string(j, f->file_id);
    dfs_json_key(j, "size");
    dfs_json_uint(j, f->size);
    dfs_json_key(j, "sha256");
    dfs_json_string(j, hex);
    dfs_json_key(j, "redundancy");
    dfs_json_begin_object(j);
    const Dfs__V1__Redundancy *r = f->redundancy;
    bool ec = r != NULL && r->scheme == DFS__V1__REDUNDANCY__SCHEME__ERASURE;
    dfs_json_key(j, "scheme");
    dfs_json_string(j, ec ? "erasure" : "replication");
    if (r != NULL && ec) {
        dfs_json_key(j, "data");
        dfs_json_uint(j, r->data);
        dfs_json_key(j, "parity");
        dfs_json_uint(j, r->parity);
    } else if (r != NULL) {
        dfs_json_key(j, "replicas");
        dfs_json_uint(j, r->replicas);
        dfs_json_key(j, "fragments");
        dfs_json_uint(j, r->fragments);
    }
    dfs_json_end_object(j);
    dfs_json_key(j, "policy");
    dfs_json_string(j, policy_name(f->policy));
    dfs_json_key(j, "created_ms");
    dfs_json_int(j, f->created_ms);
    dfs_json_key(j, "committed_ms");
    dfs_json_int(j, f->committed_ms);
    if (layout) {
        dfs_json_key(j, "fragment_size");
        dfs_json_uint(j, f->fragment_size);
        dfs_json_key(j, "fragments");
        dfs_json_begin_array(j);
        for (size_t i = 0; i < f->n_fragments; i++) {
            const Dfs__V1__Fragment *fr = f->fragments[i];
            char crc[16];
            snprintf(crc, sizeof crc, "%08" PRIx32, fr->checksum);
            dfs_json_begin_object(j);
            dfs_json_key(j, "index");
            dfs_json_uint(j, fr->index);
            dfs_json_key(j, "fragment_id");
            dfs_json_string(j, fr->fragment_id);
            dfs_json_key(j, "size");
            dfs_json_uint(j, fr->size);
            dfs_json_key(j, "checksum");
            dfs_json_string(j, crc);
            dfs_json_key(j, "replicas");
            dfs_json_begin_array(j);
            for (size_t r2 = 0; r2 < fr->n_replicas; r2++) {
                dfs_json_begin_object(j);
                dfs_json_key(j, "node_id");
                dfs_json_string(j, fr->replicas[r2]->node_id);
                dfs_json_key(j, "address");
                dfs_json_string(j, fr->replicas[r2]->address);
                dfs_json_key(j, "state");
                dfs_json_string(j, node_state_name(fr->replicas[r2]->node_state));
                dfs_json_end_object(j);
            }
            dfs_json_end_array(j);
            dfs_json_end_object(j);
        }
        dfs_json_end_array(j);
    }
    dfs_json_end_object(j);
}

int dfs_cmd_stat(struct dfs_cli *cli, const char *remote)
{
    Dfs__V1__FileInfo *f = NULL;
    char *err = NULL;
    int rc = dfs_client_stat(cli->client, remote, &f, &err);
    if (rc != DFS_OK) {
        int status = dfs_cli_error(rc, "%s", err != NULL ? err : dfs_strerror(rc));
        free(err);
        return status;
    }
    if (cli->json) {
        dfs_json j;
        dfs_json_init(&j, stdout);
        json_file(&j, f, true);
        dfs_json_finish(&j);
    } else {
        char size[32], red[64], created[40], committed[40], hex[65];
        dfs_format_size(f->size, size, sizeof size);
        format_redundancy(f->redundancy, red, sizeof red);
        format_time(f->created_ms, created, sizeof created);
        format_time(f->committed_ms, committed, sizeof committed);
        sha_hex(&f->sha256, hex);
        printf("path:        %s\n", f->path);
        printf("file id:     %s\n", f->file_id);
        printf("size:        %" PRIu64 " bytes (%s)\n", f->size, size);
        printf("sha256:      %s\n", hex);
        printf("redundancy:  %s\n", red);
        printf("policy:      %s\n", policy_name(f->policy));
        printf("created:     %s\n", created);
        printf("committed:   %s\n", committed);
        printf("fragments:\n");
        printf("  %-5s %-10s %-9s %s\n", "INDEX", "SIZE", "CHECKSUM", "COPIES (NODE STATE)");
        for (size_t i = 0; i < f->n_fragments; i++) {
            const Dfs__V1__Fragment *fr = f->fragments[i];
            char fsize[32];
            dfs_format_size(fr->size, fsize, sizeof fsize);
            printf("  %-5" PRIu32 " %-10s %08" PRIx32 " ", fr->index, fsize, fr->checksum);
            for (size_t r = 0; r < fr->n_replicas; r++)
                printf(" %s (%.8s %s)", fr->replicas[r]->address, fr->replicas[r]->node_id,
                       node_state_name(fr->replicas[r]->node_state));
            printf("\n");
        }
    }
    protobuf_c_message_free_unpacked(&f->base, NULL);
    return DFS_EXIT_OK;
}

/* ---- ls ---- */

int dfs_cmd_ls(struct dfs_cli *cli, const char *prefix)
{
    dfs_json j;
    if (cli->json) {
        dfs_json_init(&j, stdout);
        dfs_json_begin_array(&j);
    } else if (cli->long_list) {
        printf("%-12s %-28s %-23s %s\n", "SIZE", "REDUNDANCY", "COMMITTED", "PATH");
    }
    char *token = NULL;
    int status = DFS_EXIT_OK;
    do {
        Dfs__V1__ListFilesResponse *resp = NULL;
        char *err = NULL;
        int rc = dfs_client_ls(cli->client, prefix, 0, token, &resp, &err);
        free(token);
        token = NULL;
        if (rc != DFS_OK) {
            status = dfs_cli_error(rc, "ls: %s", err != NULL ? err : dfs_strerror(rc));
            free(err);
            break;
        }
        for (size_t i = 0; i < resp->n_files; i++) {
            const Dfs__V1__FileInfo *f = resp->files[i];
            if (cli->json) {
                json_file(&j, f, false);
            } else if (cli->long_list) {
                char size[32], red[64], when[40];
                dfs_format_size(f->size, size, sizeof size);
                format_redundancy(f->redundancy, red, sizeof red);
                format_time(f->committed_ms, when, sizeof when);
                printf("%-12s %-28s %-23s %s\n", size, red, when, f->path);
            } else {
                printf("%s\n", f->path);
            }
        }
        if (resp->next_page_token != NULL && resp->next_page_token[0] != '\0')
            token = strdup(resp->next_page_token);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    } while (token != NULL);
    if (cli->json && status == DFS_EXIT_OK) {
        dfs_json_end_array(&j);
        dfs_json_finish(&j);
    }
    return status;
}

/* ---- rm ---- */

int dfs_cmd_rm(struct dfs_cli *cli, const char *remote)
{
    Dfs__V1__FileInfo *file = NULL;
    char *err = NULL;
    int rc = dfs_client_rm(cli->client, remote, &file, &err);
    if (rc != DFS_OK) {
        int status = dfs_cli_error(rc, "rm %s: %s", dfs_quote(remote, &(struct dfs_quote){{0}}),
                                   err != NULL ? err : dfs_strerror(rc));
        free(err);
        return status;
    }
    if (cli->json) {
        dfs_json j;
        dfs_json_init(&j, stdout);
        json_file(&j, file, false);
        dfs_json_finish(&j);
    } else if (!cli->quiet) {
        char size[32];
        dfs_format_size(file->size, size, sizeof size);
        printf("removed %s (%s)\n", file->path, size);
    }
    protobuf_c_message_free_unpacked(&file->base, NULL);
    return DFS_EXIT_OK;
}

/* ---- mv ---- */

int dfs_cmd_mv(struct dfs_cli *cli, const char *from, const char *to)
{
    uint64_t moved = 0;
    char *err = NULL;
    int rc = dfs_client_rename(cli->client, from, to, cli->force, &moved, &err);
    if (rc != DFS_OK) {
        int status = dfs_cli_error(rc, "mv %s: %s", dfs_quote(from, &(struct dfs_quote){{0}}),
                                   err != NULL ? err : dfs_strerror(rc));
        free(err);
        return status;
    }
    if (!cli->quiet)
        printf("moved %s to %s (%" PRIu64 " file%s)\n", from, to, moved, moved == 1 ? "" : "s");
    return DFS_EXIT_OK;
}

/* ---- nodes / status ---- */

int dfs_cmd_nodes(struct dfs_cli *cli)
{
    Dfs__V1__ListNodesResponse *resp = NULL;
    char *err = NULL;
    int rc = dfs_client_nodes(cli->client, &resp, &err);
    if (rc != DFS_OK) {
        int status = dfs_cli_error(rc, "nodes: %s", err != NULL ? err : dfs_strerror(rc));
        free(err);
        return status;
    }
    int64_t now_ms = dfs_clock_wall_ms();
    if (cli->json) {
        dfs_json j;
        dfs_json_init(&j, stdout);
        dfs_json_begin_array(&j);
        for (size_t i = 0; i < resp->n_nodes; i++) {
            const Dfs__V1__Node *n = resp->nodes[i];
            dfs_json_begin_object(&j);
            dfs_json_key(&j, "id");
            dfs_json_string(&j, n->id);
            dfs_json_key(&j, "address");
            dfs_json_string(&j, n->address);
            dfs_json_key(&j, "zone");
            dfs_json_string(&j, n->zone);
            dfs_json_key(&j, "state");
            dfs_json_string(&j, node_state_name(n->state));
            dfs_json_key(&j, "capacity_bytes");
            dfs_json_uint(&j, n->capacity_bytes);
            dfs_json_key(&j, "used_bytes");
            dfs_json_uint(&j, n->used_bytes);
            dfs_json_key(&j, "free_bytes");
            dfs_json_uint(&j, n->free_bytes);
            dfs_json_key(&j, "fragment_count");
            dfs_json_uint(&j, n->fragment_count);
            dfs_json_key(&j, "last_heartbeat_ms");
            dfs_json_int(&j, n->last_heartbeat_ms);
            dfs_json_key(&j, "registered_ms");
            dfs_json_int(&j, n->registered_ms);
            dfs_json_key(&j, "catalog_fragments");
            dfs_json_uint(&j, n->catalog_fragments);
            dfs_json_key(&j, "groups");
            dfs_json_begin_array(&j);
            for (size_t g = 0; g < n->n_groups; g++)
                dfs_json_string(&j, n->groups[g]);
            dfs_json_end_array(&j);
            dfs_json_end_object(&j);
        }
        dfs_json_end_array(&j);
        dfs_json_finish(&j);
    } else {
        /* FRAGMENTS is what the node holds; the catalog's count follows when they differ
           (copies being repaired, or not yet reconciled by the node's inventory report). */
        printf("%-12s %-21s %-8s %-14s %-10s %-10s %-11s %-13s %s\n", "NODE", "ADDRESS", "ZONE",
               "STATE", "USED", "FREE", "FRAGMENTS", "HEARTBEAT", "GROUPS");
        for (size_t i = 0; i < resp->n_nodes; i++) {
            const Dfs__V1__Node *n = resp->nodes[i];
            char used[32], freeb[32], ago[32], frags[48], groups[256];
            dfs_format_size(n->used_bytes, used, sizeof used);
            dfs_format_size(n->free_bytes, freeb, sizeof freeb);
            dfs_format_duration((double)(now_ms - n->last_heartbeat_ms) / 1000.0, ago, sizeof ago);
            if (n->catalog_fragments == n->fragment_count)
                snprintf(frags, sizeof frags, "%" PRIu64, n->fragment_count);
            else
                snprintf(frags, sizeof frags, "%" PRIu64 "/%" PRIu64, n->fragment_count,
                         n->catalog_fragments);
            size_t used_g = 0;
            groups[0] = '\0';
            for (size_t g = 0; g < n->n_groups && used_g < sizeof groups; g++) {
                int w = snprintf(groups + used_g, sizeof groups - used_g, "%s%s", g > 0 ? "," : "",
                                 n->groups[g]);
                if (w < 0)
                    break;
                used_g += (size_t)w;
            }
            char when[48];
            snprintf(when, sizeof when, "%s ago", ago);
            printf("%-12.12s %-21s %-8s %-14s %-10s %-10s %-11s %-13s %s\n", n->id, n->address,
                   n->zone[0] != '\0' ? n->zone : "-", node_state_name(n->state), used, freeb,
                   frags, when, groups[0] != '\0' ? groups : "-");
        }
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return DFS_EXIT_OK;
}

static void json_paths(dfs_json *j, const char *key, char **paths, size_t n)
{
    dfs_json_key(j, key);
    dfs_json_begin_array(j);
    for (size_t i = 0; i < n; i++)
        dfs_json_string(j, paths[i]);
    dfs_json_end_array(j);
}

static void json_health(dfs_json *j, const Dfs__V1__GetHealthResponse *h, bool verified)
{
    dfs_json_key(j, "health");
    dfs_json_begin_object(j);
    dfs_json_key(j, "verified");
    dfs_json_bool(j, verified);
    dfs_json_key(j, "files");
    dfs_json_uint(j, h->files);
    dfs_json_key(j, "healthy");
    dfs_json_uint(j, h->healthy);
    dfs_json_key(j, "degraded");
    dfs_json_uint(j, h->degraded);
    dfs_json_key(j, "lost");
    dfs_json_uint(j, h->lost);
    dfs_json_key(j, "degraded_fraction");
    dfs_json_double(j, h->degraded_fraction);
    dfs_json_key(j, "lost_fraction");
    dfs_json_double(j, h->lost_fraction);
    json_paths(j, "lost_paths", h->lost_paths, h->n_lost_paths);
    json_paths(j, "degraded_paths", h->degraded_paths, h->n_degraded_paths);
    dfs_json_end_object(j);
    dfs_json_key(j, "repair");
    dfs_json_begin_object(j);
    dfs_json_key(j, "queued");
    dfs_json_uint(j, h->repairs_queued);
    dfs_json_key(j, "running");
    dfs_json_uint(j, h->repairs_running);
    dfs_json_key(j, "done");
    dfs_json_uint(j, h->repairs_done);
    dfs_json_key(j, "bytes");
    dfs_json_uint(j, h->repair_bytes);
    dfs_json_end_object(j);
    dfs_json_key(j, "damage");
    dfs_json_begin_object(j);
    dfs_json_key(j, "reported");
    dfs_json_uint(j, h->damage_reported);
    dfs_json_key(j, "confirmed");
    dfs_json_uint(j, h->damage_confirmed);
    dfs_json_key(j, "checking");
    dfs_json_uint(j, h->damage_checks_pending);
    dfs_json_end_object(j);
}

static void print_health(const Dfs__V1__GetHealthResponse *h, bool verified)
{
    printf("health:     %" PRIu64 " healthy, %" PRIu64 " degraded (%.2f%%), %" PRIu64
           " lost (%.2f%%)%s\n",
           h->healthy, h->degraded, 100.0 * h->degraded_fraction, h->lost, 100.0 * h->lost_fraction,
           verified ? ", every copy checked on its node" : "");
    char bytes[32];
    dfs_format_size(h->repair_bytes, bytes, sizeof bytes);
    printf("repair:     %" PRIu64 " queued, %" PRIu64 " running, %" PRIu64 " done (%s copied)\n",
           h->repairs_queued, h->repairs_running, h->repairs_done, bytes);
    printf("damage:     %" PRIu64 " damaged cop%s found (dropped and repaired), %" PRIu64
           " reported, %" PRIu64 " being checked\n",
           h->damage_confirmed, h->damage_confirmed == 1 ? "y" : "ies", h->damage_reported,
           h->damage_checks_pending);
    for (size_t i = 0; i < h->n_lost_paths; i++)
        printf("lost:       %s\n", h->lost_paths[i]);
    for (size_t i = 0; i < h->n_degraded_paths; i++)
        printf("degraded:   %s\n", h->degraded_paths[i]);
}

/* Paths of lost and degraded files `status -l` lists (each kind). */
#define STATUS_LIST_MAX 1000

/* ---- metadata replicas (dfs metadata ls, dfs status) ---- */

/* What a replica that did not answer is known as: its id and Raft address from another's
   member list (0 / "" when none names it). */
static const Dfs__V1__ReplicaMember *member_named(const struct dfs_client_replica *v, size_t n,
                                                  const char *grpc)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; v[i].info != NULL && j < v[i].info->n_members; j++)
            if (strcmp(v[i].info->members[j]->grpc_address, grpc) == 0)
                return v[i].info->members[j];
    return NULL;
}

static void json_replicas(dfs_json *j, const struct dfs_client_replica *v, size_t n)
{
    dfs_json_begin_array(j);
    for (size_t i = 0; i < n; i++) {
        const Dfs__V1__GetReplicasResponse *r = v[i].info;
        const Dfs__V1__ReplicaMember *m = member_named(v, n, v[i].address);
        dfs_json_begin_object(j);
        dfs_json_key(j, "id");
        dfs_json_uint(j, r != NULL ? r->id : m != NULL ? m->id : 0);
        dfs_json_key(j, "raft_address");
        dfs_json_string(j, r != NULL ? r->raft_address : m != NULL ? m->raft_address : "");
        dfs_json_key(j, "grpc_address");
        dfs_json_string(j, v[i].address);
        dfs_json_key(j, "reachable");
        dfs_json_bool(j, r != NULL);
        dfs_json_key(j, "role");
        dfs_json_string(j, r != NULL ? r->role : "unreachable");
        dfs_json_key(j, "member_role");
        dfs_json_string(j, m != NULL ? m->member_role : "");
        if (r != NULL) {
            dfs_json_key(j, "leader_ready");
            dfs_json_bool(j, r->leader_ready);
            dfs_json_key(j, "term");
            dfs_json_uint(j, r->term);
            dfs_json_key(j, "commit_index");
            dfs_json_uint(j, r->commit_index);
            dfs_json_key(j, "applied_index");
            dfs_json_uint(j, r->applied_index);
            dfs_json_key(j, "leader_id");
            dfs_json_uint(j, r->leader_id);
        } else {
            dfs_json_key(j, "error");
            dfs_json_string(j, v[i].error != NULL ? v[i].error : "");
        }
        dfs_json_end_object(j);
    }
    dfs_json_end_array(j);
}

/* One line per replica; prefix starts each (status indents them). */
static void print_replicas(const struct dfs_client_replica *v, size_t n, const char *prefix)
{
    for (size_t i = 0; i < n; i++) {
        const Dfs__V1__GetReplicasResponse *r = v[i].info;
        if (r != NULL) {
            printf("%s%-3" PRIu64 " %-11s term %-4" PRIu64 " commit %-8" PRIu64
                   " applied %-8" PRIu64 " raft %s grpc %s\n",
                   prefix, r->id, r->role, r->term, r->commit_index, r->applied_index,
                   r->raft_address[0] != '\0' ? r->raft_address : "-", v[i].address);
        } else {
            const Dfs__V1__ReplicaMember *m = member_named(v, n, v[i].address);
            char id[24] = "?";
            if (m != NULL)
                snprintf(id, sizeof id, "%" PRIu64, m->id);
            printf("%s%-3s %-11s (%s) raft %s grpc %s\n", prefix, id, "unreachable",
                   v[i].error != NULL ? v[i].error : "no answer",
                   m != NULL && m->raft_address[0] != '\0' ? m->raft_address : "-", v[i].address);
        }
    }
}

/* dfs metadata add ID=RAFT=GRPC / remove ID. */
/* Parse add's ID=RAFT=GRPC (*copy: malloc'd, holds raft and grpc) or remove's ID; false with a
   usage line on stderr when it is neither. */
static bool metadata_parse(bool add, const char *arg, unsigned long long *id, char **copy,
                           const char **raft, const char **grpc)
{
    char *end = NULL;
    errno = 0;
    *id = strtoull(arg, &end, 10);
    *copy = NULL;
    bool ok = errno == 0 && *id > 0 && end != arg && (add ? *end == '=' : *end == '\0');
    if (ok && add) {
        *copy = strdup(end + 1);
        char *eq = *copy != NULL ? strchr(*copy, '=') : NULL;
        ok = eq != NULL && eq != *copy && eq[1] != '\0';
        if (ok) {
            *eq = '\0';
            *raft = *copy;
            *grpc = eq + 1;
        }
    }
    if (!ok) {
        free(*copy);
        *copy = NULL;
        fprintf(stderr, "dfs: metadata %s: \"%.64s\" is not %s (see dfs help metadata)\n",
                add ? "add" : "remove", arg, add ? "ID=RAFT_HOST:PORT=GRPC_HOST:PORT" : "an ID");
    }
    return ok;
}

int dfs_cmd_metadata_check(const char *action, const char *arg)
{
    bool add = strcmp(action, "add") == 0;
    if ((add || strcmp(action, "remove") == 0) && arg != NULL) {
        unsigned long long id;
        char *copy = NULL;
        const char *raft, *grpc;
        bool ok = metadata_parse(add, arg, &id, &copy, &raft, &grpc);
        free(copy);
        return ok ? DFS_EXIT_OK : DFS_EXIT_USAGE;
    }
    if (strcmp(action, "ls") != 0 || arg != NULL) {
        fprintf(stderr, "dfs: metadata: use \"metadata ls\", \"metadata add ID=RAFT=GRPC\" or "
                        "\"metadata remove ID\" (see dfs help metadata)\n");
        return DFS_EXIT_USAGE;
    }
    return DFS_EXIT_OK;
}

static int metadata_change(struct dfs_cli *cli, bool add, const char *arg)
{
    unsigned long long id;
    char *copy = NULL;
    const char *raft = NULL, *grpc = NULL;
    if (!metadata_parse(add, arg, &id, &copy, &raft, &grpc))
        return DFS_EXIT_USAGE;
    char *err = NULL;
    int rc = add ? dfs_client_replica_add(cli->client, id, raft, grpc, &err)
                 : dfs_client_replica_remove(cli->client, id, &err);
    int status = DFS_EXIT_OK;
    if (rc != DFS_OK)
        status = dfs_cli_error(rc, "metadata %s: %s", add ? "add" : "remove",
                               err != NULL ? err : dfs_strerror(rc));
    else if (cli->json)
        printf("{\"%s\":%llu}\n", add ? "added" : "removed", id);
    else
        printf("%s replica %llu\n", add ? "added" : "removed", id);
    free(err);
    free(copy);
    return status;
}

int dfs_cmd_metadata(struct dfs_cli *cli, const char *action, const char *arg)
{
    int usage = dfs_cmd_metadata_check(action, arg);
    if (usage != DFS_EXIT_OK)
        return usage;
    if (strcmp(action, "ls") != 0)
        return metadata_change(cli, strcmp(action, "add") == 0, arg);
    struct dfs_client_replica *v = NULL;
    size_t n = 0;
    char *err = NULL;
    int rc = dfs_client_replicas(cli->client, &v, &n, &err);
    if (rc != DFS_OK) {
        int status = dfs_cli_error(rc, "metadata ls: %s", err != NULL ? err : dfs_strerror(rc));
        free(err);
        return status;
    }
    size_t answered = 0;
    for (size_t i = 0; i < n; i++)
        answered += v[i].info != NULL;
    if (cli->json) {
        dfs_json j;
        dfs_json_init(&j, stdout);
        dfs_json_begin_object(&j);
        dfs_json_key(&j, "replicas");
        json_replicas(&j, v, n);
        dfs_json_end_object(&j);
        dfs_json_finish(&j);
    } else {
        print_replicas(v, n, "");
    }
    int status = DFS_EXIT_OK;
    if (answered == 0)
        status = dfs_cli_error(DFS_EUNAVAIL, "metadata ls: no replica answered (%s)",
                               n > 0 && v[0].error != NULL ? v[0].error : "no address");
    dfs_client_replicas_free(v, n);
    return status;
}

int dfs_cmd_status(struct dfs_cli *cli)
{
    Dfs__V1__StatResponse *r = NULL;
    char *err = NULL;
    int rc = dfs_client_status(cli->client, &r, &err);
    if (rc != DFS_OK) {
        int status = dfs_cli_error(rc, "status: %s", err != NULL ? err : dfs_strerror(rc));
        free(err);
        return status;
    }
    Dfs__V1__GetHealthResponse *h = NULL;
    rc = dfs_client_health(cli->client, cli->loss, cli->long_list ? STATUS_LIST_MAX : 0, &h, &err);
    if (rc != DFS_OK) {
        int status = dfs_cli_error(rc, "status: %s", err != NULL ? err : dfs_strerror(rc));
        free(err);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        return status;
    }
    /* Several metadata replicas: each one's view too (admin tokens only: GetReplicas is an admin
       call, so another token just does not see them). */
    struct dfs_client_replica *reps = NULL;
    size_t nreps = 0, answered = 0;
    if (dfs_client_replicas(cli->client, &reps, &nreps, NULL) == DFS_OK)
        for (size_t i = 0; i < nreps; i++)
            answered += reps[i].info != NULL;
    bool show_replicas = nreps > 1 && answered > 0;
    if (cli->json) {
        dfs_json j;
        dfs_json_init(&j, stdout);
        dfs_json_begin_object(&j);
        dfs_json_key(&j, "metadata");
        dfs_json_string(&j, dfs_client_metadata(cli->client));
        if (show_replicas) {
            dfs_json_key(&j, "metadata_replicas");
            json_replicas(&j, reps, nreps);
        }
        dfs_json_key(&j, "files");
        dfs_json_uint(&j, r->files);
        dfs_json_key(&j, "logical_bytes");
        dfs_json_uint(&j, r->logical_bytes);
        dfs_json_key(&j, "stored_bytes");
        dfs_json_uint(&j, r->stored_bytes);
        dfs_json_key(&j, "nodes");
        dfs_json_begin_object(&j);
        dfs_json_key(&j, "alive");
        dfs_json_uint(&j, r->nodes_alive);
        dfs_json_key(&j, "suspect");
        dfs_json_uint(&j, r->nodes_suspect);
        dfs_json_key(&j, "dead");
        dfs_json_uint(&j, r->nodes_dead);
        dfs_json_key(&j, "draining");
        dfs_json_uint(&j, r->nodes_draining);
        dfs_json_key(&j, "decommissioned");
        dfs_json_uint(&j, r->nodes_decommissioned);
        dfs_json_end_object(&j);
        dfs_json_key(&j, "pending_files");
        dfs_json_uint(&j, r->pending_files);
        dfs_json_key(&j, "pending_deletions");
        dfs_json_uint(&j, r->pending_deletions);
        dfs_json_key(&j, "schema_version");
        dfs_json_uint(&j, r->schema_version);
        json_health(&j, h, cli->loss);
        dfs_json_end_object(&j);
        dfs_json_finish(&j);
    } else {
        char logical[32], stored[32];
        dfs_format_size(r->logical_bytes, logical, sizeof logical);
        dfs_format_size(r->stored_bytes, stored, sizeof stored);
        printf("metadata:   %s (catalog schema %" PRIu32 ")\n", dfs_client_metadata(cli->client),
               r->schema_version);
        if (show_replicas)
            print_replicas(reps, nreps, "  replica ");
        printf("files:      %" PRIu64 " (%s, %s stored with redundancy)\n", r->files, logical,
               stored);
        printf("nodes:      %" PRIu32 " alive, %" PRIu32 " suspect, %" PRIu32 " dead, %" PRIu32
               " draining, %" PRIu32 " decommissioned\n",
               r->nodes_alive, r->nodes_suspect, r->nodes_dead, r->nodes_draining,
               r->nodes_decommissioned);
        printf("pending:    %" PRIu64 " uploads, %" PRIu64 " fragment copies to remove\n",
               r->pending_files, r->pending_deletions);
        print_health(h, cli->loss);
    }
    dfs_client_replicas_free(reps, nreps);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return DFS_EXIT_OK;
}

int dfs_cmd_node(struct dfs_cli *cli, const char *action, const char *node)
{
    Dfs__V1__NodeState state;
    bool force = false;
    const char *done;
    if (strcmp(action, "drain") == 0) {
        state = DFS__V1__NODE_STATE__NODE_DRAINING;
        done = "draining: its fragments are being copied elsewhere, then it is decommissioned";
    } else if (strcmp(action, "undrain") == 0) {
        state = DFS__V1__NODE_STATE__NODE_ALIVE;
        done = "back in service";
    } else if (strcmp(action, "decommission") == 0) {
        state = DFS__V1__NODE_STATE__NODE_DECOMMISSIONED;
        force = cli->force;
        done = "decommissioned: its copies are being repaired from the others";
    } else {
        fprintf(stderr,
                "dfs: node takes drain, undrain or decommission, not '%s' (see dfs --help)\n",
                dfs_quote(action, &(struct dfs_quote){{0}}));
        return DFS_EXIT_USAGE;
    }
    if (cli->force && !force) {
        fprintf(stderr, "dfs: node %s does not take --force (see dfs --help)\n", action);
        return DFS_EXIT_USAGE;
    }
    Dfs__V1__Node *n = NULL;
    char *err = NULL;
    int rc = dfs_client_set_node_state(cli->client, node, state, force, &n, &err);
    if (rc != DFS_OK) {
        int status = dfs_cli_error(rc, "node %s: %s", action, err != NULL ? err : dfs_strerror(rc));
        free(err);
        return status;
    }
    if (cli->json) {
        dfs_json j;
        dfs_json_init(&j, stdout);
        dfs_json_begin_object(&j);
        dfs_json_key(&j, "id");
        dfs_json_string(&j, n != NULL ? n->id : node);
        dfs_json_key(&j, "address");
        dfs_json_string(&j, n != NULL ? n->address : "");
        dfs_json_key(&j, "state");
        dfs_json_string(&j, node_state_name(n != NULL ? (int)n->state : (int)state));
        dfs_json_end_object(&j);
        dfs_json_finish(&j);
    } else if (!cli->quiet) {
        printf("node %s (%s) %s\n", n != NULL ? n->id : node, n != NULL ? n->address : "?", done);
    }
    if (n != NULL)
        protobuf_c_message_free_unpacked(&n->base, NULL);
    return DFS_EXIT_OK;
}

/* ---- tokens ---- */

static const char *role_name(int r)
{
    static const char *const names[] = {"unspecified", "admin",     "read_write", "read_only",
                                        "node",        "bootstrap", "gateway"};
    return r >= 0 && r <= 6 ? names[r] : "unknown";
}

static void token_json(dfs_json *j, const Dfs__V1__TokenInfo *t, int64_t now)
{
    dfs_json_begin_object(j);
    dfs_json_key(j, "id");
    dfs_json_string(j, t->id);
    dfs_json_key(j, "name");
    dfs_json_string(j, t->name);
    dfs_json_key(j, "role");
    dfs_json_string(j, role_name((int)t->role));
    if (t->node_id != NULL && t->node_id[0] != '\0') {
        dfs_json_key(j, "node_id");
        dfs_json_string(j, t->node_id);
    }
    dfs_json_key(j, "created_ms");
    dfs_json_int(j, t->created_ms);
    dfs_json_key(j, "expires_ms");
    dfs_json_int(j, t->expires_ms);
    dfs_json_key(j, "revoked_ms");
    dfs_json_int(j, t->revoked_ms);
    dfs_json_key(j, "last_used_ms");
    dfs_json_int(j, t->last_used_ms);
    dfs_json_key(j, "valid");
    dfs_json_bool(j, t->revoked_ms == 0 && (t->expires_ms == 0 || t->expires_ms > now));
    dfs_json_end_object(j);
}

static int token_create(struct dfs_cli *cli)
{
    if (cli->token_role == 0) {
        fprintf(stderr,
                "dfs: token create needs --role admin|read_write|read_only|bootstrap|gateway (see "
                "dfs --help)\n");
        return DFS_EXIT_USAGE;
    }
    Dfs__V1__CreateTokenResponse *resp = NULL;
    char *err = NULL;
    const char *name = cli->token_name != NULL ? cli->token_name : role_name(cli->token_role);
    int rc = cli->token_s3
                 ? dfs_client_token_create_s3(cli->client, (Dfs__V1__TokenRole)cli->token_role,
                                              name, cli->token_ttl_ms, &resp, &err)
                 : dfs_client_token_create(cli->client, (Dfs__V1__TokenRole)cli->token_role, name,
                                           cli->token_ttl_ms, &resp, &err);
    if (rc != DFS_OK) {
        int status = dfs_cli_error(rc, "token create: %s", err != NULL ? err : dfs_strerror(rc));
        free(err);
        return status;
    }
    if (cli->json) {
        dfs_json j;
        dfs_json_init(&j, stdout);
        dfs_json_begin_object(&j);
        dfs_json_key(&j, "token");
        dfs_json_string(&j, resp->token);
        if (cli->token_s3) {
            dfs_json_key(&j, "s3_access_key_id");
            dfs_json_string(&j, resp->s3_access_key_id);
            dfs_json_key(&j, "s3_secret");
            dfs_json_string(&j, resp->s3_secret);
        }
        dfs_json_key(&j, "info");
        if (resp->info != NULL)
            token_json(&j, resp->info, dfs_clock_wall_ms());
        else
            dfs_json_null(&j);
        dfs_json_end_object(&j);
        dfs_json_finish(&j);
    } else {
        /* The token alone on stdout, so that `dfs token create ... > FILE` keeps just it; with
           --s3, the access key id and the secret follow, one a line. */
        printf("%s\n", resp->token);
        if (cli->token_s3)
            printf("%s\n%s\n", resp->s3_access_key_id, resp->s3_secret);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return DFS_EXIT_OK;
}

static int token_revoke(struct dfs_cli *cli, const char *id)
{
    Dfs__V1__TokenInfo *t = NULL;
    char *err = NULL;
    int rc = dfs_client_token_revoke(cli->client, id, &t, &err);
    if (rc != DFS_OK) {
        int status =
            dfs_cli_error(rc, "token revoke %s: %s", dfs_quote(id, &(struct dfs_quote){{0}}),
                          err != NULL ? err : dfs_strerror(rc));
        free(err);
        return status;
    }
    if (cli->json && t != NULL) {
        dfs_json j;
        dfs_json_init(&j, stdout);
        token_json(&j, t, dfs_clock_wall_ms());
        dfs_json_finish(&j);
    } else if (!cli->quiet && t != NULL) {
        printf("token %s (%s, role %s) revoked\n", t->id, t->name, role_name((int)t->role));
    }
    if (t != NULL)
        protobuf_c_message_free_unpacked(&t->base, NULL);
    return DFS_EXIT_OK;
}

static int token_ls(struct dfs_cli *cli)
{
    Dfs__V1__ListTokensResponse *resp = NULL;
    char *err = NULL;
    int rc = dfs_client_token_list(cli->client, cli->all, &resp, &err);
    if (rc != DFS_OK) {
        int status = dfs_cli_error(rc, "token ls: %s", err != NULL ? err : dfs_strerror(rc));
        free(err);
        return status;
    }
    int64_t now = dfs_clock_wall_ms();
    if (cli->json) {
        dfs_json j;
        dfs_json_init(&j, stdout);
        dfs_json_begin_array(&j);
        for (size_t i = 0; i < resp->n_tokens; i++)
            token_json(&j, resp->tokens[i], now);
        dfs_json_end_array(&j);
        dfs_json_finish(&j);
    } else {
        printf("%-16s  %-10s  %-20s  %-23s  %-23s  %s\n", "ID", "ROLE", "NAME", "CREATED",
               "EXPIRES", "STATE");
        for (size_t i = 0; i < resp->n_tokens; i++) {
            const Dfs__V1__TokenInfo *t = resp->tokens[i];
            char created[40], expires[40];
            format_time(t->created_ms, created, sizeof created);
            if (t->expires_ms == 0)
                snprintf(expires, sizeof expires, "never");
            else
                format_time(t->expires_ms, expires, sizeof expires);
            const char *state = t->revoked_ms != 0                           ? "revoked"
                                : t->expires_ms != 0 && t->expires_ms <= now ? "expired"
                                : t->last_used_ms == 0                       ? "valid, unused"
                                                                             : "valid";
            printf("%-16s  %-10s  %-20s  %-23s  %-23s  %s\n", t->id, role_name((int)t->role),
                   t->name, created, expires, state);
        }
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return DFS_EXIT_OK;
}

int dfs_cmd_token(struct dfs_cli *cli, const char *action, const char *arg)
{
    if (strcmp(action, "create") == 0 && arg == NULL)
        return token_create(cli);
    if (strcmp(action, "revoke") == 0 && arg != NULL)
        return token_revoke(cli, arg);
    if ((strcmp(action, "ls") == 0 || strcmp(action, "list") == 0) && arg == NULL)
        return token_ls(cli);
    fprintf(stderr, "dfs: usage: dfs token create --role ROLE [--name N] [--ttl D] | token revoke "
                    "ID | token ls [--all] (see dfs --help)\n");
    return DFS_EXIT_USAGE;
}

int dfs_cmd_whoami(struct dfs_cli *cli)
{
    Dfs__V1__TokenInfo *t = NULL;
    char *err = NULL;
    int rc = dfs_client_whoami(cli->client, &t, &err);
    if (rc != DFS_OK) {
        int status = dfs_cli_error(rc, "whoami: %s", err != NULL ? err : dfs_strerror(rc));
        free(err);
        return status;
    }
    if (cli->json && t != NULL) {
        dfs_json j;
        dfs_json_init(&j, stdout);
        token_json(&j, t, dfs_clock_wall_ms());
        dfs_json_finish(&j);
    } else if (t != NULL) {
        printf("token %s, name %s, role %s\n", t->id, t->name, role_name((int)t->role));
    }
    if (t != NULL)
        protobuf_c_message_free_unpacked(&t->base, NULL);
    return DFS_EXIT_OK;
}
