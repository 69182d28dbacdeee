/* A progress line for a transfer on a terminal. */
#include "cli/progress.h"

#include "common/clock.h"
#include "common/units.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SAMPLES   32
#define REDRAW_NS 100000000ll
#define RATE_NS   2000000000ll

struct dfs_progress {
    FILE *out;
    char *label;
    uint64_t total, done;
    bool enabled;
    int64_t start_ns, last_draw_ns;
    /* Recent (time, done) samples, oldest first at head, for the rate over the last 2 s. */
    int64_t t[SAMPLES];
    uint64_t d[SAMPLES];
    int head, n;
    char note[160]; /* "" when none */
};

bool dfs_progress_wanted(int fd)
{
    const char *term = getenv("TERM");
    return isatty(fd) && (term == NULL || strcmp(term, "dumb") != 0);
}

dfs_progress *dfs_progress_create(FILE *out, const char *label, uint64_t total, bool enabled)
{
    dfs_progress *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->out = out;
    p->label = strdup(label != NULL ? label : "");
    p->total = total;
    p->enabled = enabled && p->label != NULL;
    p->start_ns = dfs_clock_mono_ns();
    return p;
}

static int columns(FILE *out)
{
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
        return ws.ws_col;
    return 80;
}

static void draw(dfs_progress *p, int64_t now, bool final)
{
    char done[32], total[32], rate[32], eta[32];
    dfs_format_size(p->done, done, sizeof done);
    dfs_format_size(p->total, total, sizeof total);
    double bps = 0;
    if (final) {
        double secs = (double)(now - p->start_ns) / 1e9;
        bps = secs > 0 ? (double)p->done / secs : 0;
    } else if (p->n > 1) {
        int last = (p->head + p->n - 1) % SAMPLES;
        double secs = (double)(p->t[last] - p->t[p->head]) / 1e9;
        bps = secs > 0 ? (double)(p->d[last] - p->d[p->head]) / secs : 0;
    }
    dfs_format_rate(bps, rate, sizeof rate);
    if (final)
        dfs_format_duration((double)(now - p->start_ns) / 1e9, eta, sizeof eta);
    else if (bps > 0 && p->total >= p->done)
        dfs_format_duration((double)(p->total - p->done) / bps, eta, sizeof eta);
    else
        snprintf(eta, sizeof eta, "--");
    int pct = p->total > 0 ? (int)(100.0 * (double)p->done / (double)p->total) : 100;
    char tail[260];
    if (!final && p->note[0] != '\0')
        snprintf(tail, sizeof tail, " %s / %s  %s", done, total, p->note);
    else
        snprintf(tail, sizeof tail, " %s / %s  %s  %s %s", done, total, rate, final ? "in" : "ETA",
                 eta);
    int cols = columns(p->out);
    int label = (int)strlen(p->label);
    /* One terminal line, or '\r' no longer redraws it: a long note is cut. */
    int fit = cols - 1 - label - 6;
    if (fit >= 0 && (int)strlen(tail) > fit)
        tail[fit] = '\0';
    int room = cols - 1 - label - 6 - 3 - (int)strlen(tail);
    if (room > 40)
        room = 40;
    fprintf(p->out, "\r%s %3d%% ", p->label, pct);
    if (room >= 10) {
        int fill = (int)((double)room * pct / 100.0);
        fputc('[', p->out);
        for (int i = 0; i < room; i++)
            fputc(i < fill ? '=' : i == fill ? '>' : ' ', p->out);
        fputc(']', p->out);
    }
    fprintf(p->out, "%s\033[K", tail);
    if (final)
        fputc('\n', p->out);
    fflush(p->out);
}

void dfs_progress_update(void *progress, uint64_t done, uint64_t total)
{
    dfs_progress *p = progress;
    if (p == NULL || !p->enabled)
        return;
    p->done = done;
    p->total = total;
    int64_t now = dfs_clock_mono_ns();
    if (now - p->last_draw_ns < REDRAW_NS)
        return;
    p->last_draw_ns = now;
    /* Keep samples of the last 2 seconds. */
    while (p->n > 1 && now - p->t[p->head] > RATE_NS) {
        p->head = (p->head + 1) % SAMPLES;
        p->n--;
    }
    if (p->n == SAMPLES) {
        p->head = (p->head + 1) % SAMPLES;
        p->n--;
    }
    int at = (p->head + p->n) % SAMPLES;
    p->t[at] = now;
    p->d[at] = done;
    p->n++;
    draw(p, now, false);
}

void dfs_progress_note(dfs_progress *p, const char *note)
{
    if (p == NULL || !p->enabled)
        return;
    snprintf(p->note, sizeof p->note, "%s", note != NULL ? note : "");
    int64_t now = dfs_clock_mono_ns();
    p->last_draw_ns = now;
    draw(p, now, false);
}

void dfs_progress_finish(dfs_progress *p, bool ok)
{
    if (p == NULL)
        return;
    if (p->enabled) {
        if (ok)
            draw(p, dfs_clock_mono_ns(), true);
        else
            fprintf(p->out, "\r\033[K");
        fflush(p->out);
    }
    free(p->label);
    free(p);
}
