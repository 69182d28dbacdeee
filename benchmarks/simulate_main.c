/*
 * simulate: data loss at scale with the metadata service's placement code (benchmarks/simulate.h).
 *
 *   simulate [--nodes N] [--policy P[,P...]] [--replicas K | --ec K+M] [--fragments F]
 *            [--units U | --per-node X] [--failed S[,S...] | --failed-fraction X[,X...]]
 *            [--trials T] [--placements L] [--scatter-width S] [--group-size G] [--seed S] [-q]
 *
 * For each policy: L layouts of U units (placed once each, with seeds derived from --seed), then
 * for each failure count s, T trials spread evenly over the layouts. Prints one JSON document on
 * standard output (format below) and, unless -q, a table on standard error with each simulated
 * figure beside its closed form.
 *
 * Output:
 *   {"config": {"nodes", "width", "threshold", "redundancy", "units", "units_per_file", "files",
 *               "trials", "placements", "seed", "scatter_width", "group_size"},
 *    "results": [{"policy", "failed", "failed_fraction", "trials", "distinct_sets", "disjoint",
 *                 "place_seconds", "trial_seconds", "max_units_lost",
 *                 "unit_loss": {"simulated", "stderr", "closed_form"},
 *                 "file_loss": {"simulated", "stderr", "closed_form"},     closed_form may be null
 *                 "any_loss":  {"simulated", "ci95": [lo, hi], "closed_form", "closed_form_kind",
 *                               "independent_sets"}}, ...]}
 *   unit_loss   fraction of units lost: closed form C(s,k)/C(N,k) (replication), the
 *               hypergeometric tail for erasure code; exact for every policy
 *   file_loss   fraction of files (F units) lost: closed form 1-(1-p)^F for random (exact) and
 *               least_used (approximation); null for min_copy and buddy (their fragments are
 *               correlated by the sets)
 *   any_loss    probability that a trial loses anything. closed_form_kind says what the closed
 *               form is: "exact" (random: 1-(1-p)^units; min_copy with every copyset in use and
 *               disjoint copysets: 1 - P(no copyset has k failed nodes)), "bound" (buddy: some group
 *               has k failed nodes), "approx" (least_used as random; min_copy with overlapping
 *               copysets: 1-(1-p)^copysets). independent_sets is 1-(1-p)^distinct_sets.
 * Exit status: 0, 1 on a failure, 2 on bad usage.
 */
#include "benchmarks/simulate.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/json.h"
#include "common/options.h"
#include "common/rng.h"
#include "common/units.h"
#include "metadata/placement.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 64

struct opts {
    uint32_t nodes;
    enum dfs_policy policies[8];
    size_t npolicies;
    uint32_t replicas, ec_k, ec_m;
    uint32_t fragments;
    uint64_t units;
    double per_node;
    uint32_t failed[MAX_LIST];
    double fractions[MAX_LIST];
    size_t nfailed;
    bool by_fraction;
    uint64_t trials;
    uint32_t placements;
    uint32_t scatter_width, group_size;
    uint64_t seed;
    bool quiet;
};

struct result {
    enum dfs_policy policy;
    uint32_t failed;
    struct dfs_sim_tally tally;
    struct dfs_sim_info info;
    uint32_t *blocks;
    size_t nblocks;
    bool have_blocks;
    double place_seconds, trial_seconds;
};

static int parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int parse_u32(const char *s, uint32_t *out, uint32_t max)
{
    uint64_t v = 0;
    if (parse_u64(s, &v) != 0 || v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < 0)
        return -1;
    *out = v;
    return 0;
}

/* Split a comma list into a writable copy; calls each(item) and stops at the first failure. */
static int parse_list(const char *arg, int (*each)(struct opts *, const char *), struct opts *o)
{
    char *copy = strdup(arg);
    if (copy == NULL)
        return -1;
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL && rc == 0;
         tok = strtok_r(NULL, ",", &save))
        rc = each(o, tok);
    free(copy);
    return rc;
}

static int add_policy(struct opts *o, const char *s)
{
    enum dfs_policy p;
    if (dfs_placement_policy_parse(s, &p, NULL) != DFS_OK)
        return -1;
    if (o->npolicies == sizeof o->policies / sizeof o->policies[0])
        return -1;
    o->policies[o->npolicies++] = p;
    return 0;
}

static int add_failed(struct opts *o, const char *s)
{
    if (o->nfailed == MAX_LIST || parse_u32(s, &o->failed[o->nfailed], UINT32_MAX) != 0)
        return -1;
    o->nfailed++;
    return 0;
}

static int add_fraction(struct opts *o, const char *s)
{
    double f = 0;
    if (o->nfailed == MAX_LIST || parse_double(s, &f) != 0 || f > 1.0)
        return -1;
    o->fractions[o->nfailed++] = f;
    return 0;
}

/* The list options (--policy, --failed, --failed-fraction): the field is the whole struct. */
static int list_option(const struct dfs_opt *opt, const char *value, void *field, char **errmsg)
{
    struct opts *o = field;
    int rc;
    const char *what;
    if (strcmp(opt->name, "policy") == 0) {
        rc = parse_list(value, add_policy, o);
        what = "policies (random, min_copy, buddy, least_used)";
    } else {
        o->nfailed = 0;
        o->by_fraction = strcmp(opt->name, "failed-fraction") == 0;
        rc = parse_list(value, o->by_fraction ? add_fraction : add_failed, o);
        what = o->by_fraction ? "fractions from 0 to 1" : "node counts";
    }
    if (rc != 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "--%s takes a comma-separated list of %s, not '%s'",
                          opt->name, what, dfs_quote(value, &(struct dfs_quote){{0}}));
    return DFS_OK;
}

/* --ec K+M into ec_k, ec_m (the field is the whole struct). */
static int ec_option(const struct dfs_opt *opt, const char *value, void *field, char **errmsg)
{
    struct opts *o = field;
    if (dfs_parse_ec(value, DFS_PLACEMENT_WIDTH_MAX, &o->ec_k, &o->ec_m) != DFS_OK)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "--%s takes K+M with K, M >= 1 and K+M <= %d, not '%s'", opt->name,
                          DFS_PLACEMENT_WIDTH_MAX, dfs_quote(value, &(struct dfs_quote){{0}}));
    return DFS_OK;
}

#define O(member) DFS_OPT_FIELD(struct opts, member)
#define WHOLE     .offset = 0, .size = sizeof(struct opts)

static const struct dfs_opt opts[] = {
    {DFS_OPT_INT, "nodes", 0, O(nodes), .arg = "N", .def = "1000", .min = 1, .max = 1000000,
     .help = "cluster size"},
    {DFS_OPT_CUSTOM, "policy", 0, WHOLE, .arg = "LIST", .parse = list_option,
     .help = "random,min_copy,buddy,least_used (default: all four)"},
    {DFS_OPT_INT, "replicas", 0, O(replicas), .arg = "K", .def = "3", .min = 1,
     .max = DFS_PLACEMENT_WIDTH_MAX, .help = "copies per fragment"},
    {DFS_OPT_CUSTOM, "ec", 0, WHOLE, .arg = "K+M", .parse = ec_option,
     .help = "erasure code instead: a stripe of K+M is lost with > M failed"},
    {DFS_OPT_INT, "fragments", 0, O(fragments), .arg = "F", .min = 1, .max = 1 << 20,
     .help = "units per file (default 4; 1 with --ec)"},
    {DFS_OPT_INT, "units", 0, O(units), .arg = "U", .min = 1, .max = INT64_MAX,
     .help = "units to place (rounded up to a multiple of F)"},
    {DFS_OPT_DOUBLE, "per-node", 0, O(per_node), .arg = "X", .def = "100", .dmin = 0,
     .help = "or: X units' copies per node on average"},
    {DFS_OPT_CUSTOM, "failed", 0, WHOLE, .arg = "LIST", .parse = list_option,
     .help = "failed nodes per trial (default: 1% of N)"},
    {DFS_OPT_CUSTOM, "failed-fraction", 0, WHOLE, .arg = "LIST", .parse = list_option,
     .help = "or: fractions of N (0.01 = 1%)"},
    {DFS_OPT_INT, "trials", 0, O(trials), .arg = "T", .def = "1000", .min = 1, .max = INT64_MAX,
     .help = "trials per failure count"},
    {DFS_OPT_INT, "placements", 0, O(placements), .arg = "L", .def = "1", .min = 1, .max = 1000000,
     .help = "independent layouts the trials are spread over"},
    {DFS_OPT_INT, "scatter-width", 0, O(scatter_width), .arg = "S", .min = 0,
     .max = DFS_PLACEMENT_SCATTER_MAX, .help = "min_copy scatter width (default k-1)"},
    {DFS_OPT_INT, "group-size", 0, O(group_size), .arg = "G", .min = 0,
     .max = DFS_PLACEMENT_GROUP_MAX, .help = "buddy group size (default 2k; never 1)"},
    {DFS_OPT_INT, "seed", 0, O(seed), .arg = "S", .def = "1", .min = 0, .max = INT64_MAX,
     .help = "seed of layouts and failures"},
    {DFS_OPT_FLAG, NULL, 'q', O(quiet), .help = "no table on stderr"},
    {DFS_OPT_HELP, "help", 'h', .help = "print this help"},
    {0},
};

static const struct dfs_opts_spec spec = {
    .prog = "simulate",
    .usage = "[--nodes N] [--policy P[,P...]] [--replicas K | --ec K+M] [--fragments F]\n"
             "                [--units U | --per-node X] [--failed S[,S...] | --failed-fraction "
             "X[,X...]]\n"
             "                [--trials T] [--placements L] [--scatter-width S] [--group-size "
             "G]\n"
             "                [--seed S] [-q]",
    .about = "Places units (a replicated fragment's k copies, or an erasure-coded stripe of K+M) "
             "on N nodes with the metadata service's placement code, then fails s random nodes "
             "at once, T times, and counts what is lost, beside the closed forms. JSON on stdout, "
             "a table on stderr (-q: none).",
    .opts = opts,
};

/* Returns true to go on with *o, false to exit with *status. */
static bool parse_args(int argc, char **argv, struct opts *o, int *status)
{
    memset(o, 0, sizeof *o);
    dfs_opts *args = NULL;
    if (!dfs_opts_main(&spec, argc, argv, environ, o, &args, status))
        return false;
    bool ec = dfs_opts_source(args, "ec") == DFS_OPT_FROM_ARGV;
    bool frags = dfs_opts_source(args, "fragments") == DFS_OPT_FROM_ARGV;
    dfs_opts_destroy(args);
    *status = 2;
    if (o->group_size == 1) {
        fprintf(stderr, "simulate: --group-size must be 0 (2k) or at least 2 (see simulate "
                        "--help)\n");
        return false;
    }
    if (o->npolicies == 0) {
        o->policies[0] = DFS_POLICY_RANDOM;
        o->policies[1] = DFS_POLICY_MIN_COPY;
        o->policies[2] = DFS_POLICY_BUDDY;
        o->policies[3] = DFS_POLICY_LEAST_USED;
        o->npolicies = 4;
    }
    if (!ec)
        o->ec_k = o->ec_m = 0;
    if (!frags)
        o->fragments = ec ? 1 : 4;
    uint32_t w = ec ? o->ec_k + o->ec_m : o->replicas;
    if (w > o->nodes) {
        fprintf(stderr, "simulate: %u nodes cannot hold sets of %u\n", o->nodes, w);
        return false;
    }
    if (o->nfailed == 0) {
        o->by_fraction = true;
        o->fractions[0] = 0.01;
        o->nfailed = 1;
    }
    for (size_t i = 0; i < o->nfailed; i++) {
        if (o->by_fraction)
            o->failed[i] = (uint32_t)llround(o->fractions[i] * o->nodes);
        if (o->failed[i] > o->nodes) {
            fprintf(stderr, "simulate: cannot fail %u of %u nodes\n", o->failed[i], o->nodes);
            return false;
        }
    }
    if (o->units == 0)
        o->units = (uint64_t)ceil(o->per_node * o->nodes / w);
    if (o->units % o->fragments != 0)
        o->units += o->fragments - o->units % o->fragments;
    return true;
}

/* The closed form of the probability of any loss, and what kind of figure it is. */
static double any_closed_form(const struct opts *o, const struct result *r, uint32_t w, uint32_t t,
                              double p, const char **kind)
{
    switch (r->policy) {
    case DFS_POLICY_RANDOM:
        *kind = "exact";
        return dfs_sim_any_of(p, (double)r->info.units);
    case DFS_POLICY_LEAST_USED:
        *kind = "approx";
        return dfs_sim_any_of(p, (double)r->info.units);
    case DFS_POLICY_MIN_COPY:
    case DFS_POLICY_BUDDY: {
        double none = 0;
        if (r->have_blocks &&
            (r->policy == DFS_POLICY_BUDDY || r->info.distinct_sets == r->nblocks) &&
            dfs_sim_no_loss_blocks(o->nodes, r->blocks, r->nblocks, t, r->failed, &none, NULL) ==
                DFS_OK) {
            *kind = r->policy == DFS_POLICY_BUDDY ? "bound" : "exact";
            return 1.0 - none;
        }
        *kind = "approx";
        return dfs_sim_any_of(p, (double)r->info.distinct_sets);
    }
    default:
        (void)w;
        *kind = "none";
        return NAN;
    }
}

static void wilson(uint64_t x, uint64_t n, double *lo, double *hi)
{
    double z = 1.959964, ph = (double)x / (double)n, nn = (double)n;
    double d = 1 + z * z / nn, c = ph + z * z / (2 * nn);
    double h = z * sqrt(ph * (1 - ph) / nn + z * z / (4 * nn * nn));
    *lo = x == 0 ? 0.0 : fmax(0.0, (c - h) / d);
    *hi = x == n ? 1.0 : fmin(1.0, (c + h) / d);
}

static double stderr_of(double sum, double sq, uint64_t n)
{
    if (n < 2)
        return NAN;
    double mean = sum / (double)n, var = (sq - (double)n * mean * mean) / (double)(n - 1);
    return var > 0 ? sqrt(var / (double)n) : 0.0;
}

static int run_policy(const struct opts *o, size_t pi, struct result *rs, char **errmsg)
{
    uint32_t w = o->ec_k ? o->ec_k + o->ec_m : o->replicas;
    uint32_t t = o->ec_k ? o->ec_m + 1 : w;
    uint64_t per = (o->trials + o->placements - 1) / o->placements;
    for (uint32_t l = 0; l < o->placements; l++) {
        dfs_rng seeder;
        dfs_rng_seed(&seeder, o->seed ^ ((uint64_t)o->policies[pi] << 48) ^ l);
        struct dfs_sim_config cfg = {
            .nodes = o->nodes,
            .policy = o->policies[pi],
            .width = w,
            .threshold = t,
            .units = o->units,
            .units_per_file = o->fragments,
            .scatter_width = o->scatter_width,
            .group_size = o->group_size,
            .seed = dfs_rng_next(&seeder),
        };
        double t0 = dfs_clock_mono_s();
        dfs_sim *sim = NULL;
        int rc = dfs_sim_create(&cfg, &sim, errmsg);
        if (rc != DFS_OK)
            return rc;
        double placed = dfs_clock_mono_s() - t0;
        for (size_t i = 0; i < o->nfailed; i++) {
            struct result *r = &rs[i];
            r->place_seconds += placed;
            if (l == 0) {
                r->policy = o->policies[pi];
                r->failed = o->failed[i];
                dfs_sim_info(sim, &r->info);
                r->have_blocks = dfs_sim_blocks(sim, &r->blocks, &r->nblocks, NULL) == DFS_OK;
            }
            dfs_rng rng;
            dfs_rng_seed(&rng, dfs_rng_next(&seeder) ^ o->failed[i]);
            double t1 = dfs_clock_mono_s();
            rc = dfs_sim_trials(sim, o->failed[i], per, &rng, &r->tally, errmsg);
            r->trial_seconds += dfs_clock_mono_s() - t1;
            if (rc != DFS_OK) {
                dfs_sim_destroy(sim);
                return rc;
            }
        }
        dfs_sim_destroy(sim);
    }
    return DFS_OK;
}

static void emit(const struct opts *o, struct result *rs, size_t nres)
{
    uint32_t w = o->ec_k ? o->ec_k + o->ec_m : o->replicas;
    uint32_t t = o->ec_k ? o->ec_m + 1 : w;
    char red[64];
    if (o->ec_k)
        snprintf(red, sizeof red, "ec %u+%u", o->ec_k, o->ec_m);
    else
        snprintf(red, sizeof red, "replication %u", o->replicas);
    dfs_json j;
    dfs_json_init(&j, stdout);
    dfs_json_begin_object(&j);
    dfs_json_key(&j, "config");
    dfs_json_begin_object(&j);
    dfs_json_key(&j, "nodes");
    dfs_json_uint(&j, o->nodes);
    dfs_json_key(&j, "width");
    dfs_json_uint(&j, w);
    dfs_json_key(&j, "threshold");
    dfs_json_uint(&j, t);
    dfs_json_key(&j, "redundancy");
    dfs_json_string(&j, red);
    dfs_json_key(&j, "units");
    dfs_json_uint(&j, o->units);
    dfs_json_key(&j, "units_per_file");
    dfs_json_uint(&j, o->fragments);
    dfs_json_key(&j, "files");
    dfs_json_uint(&j, o->units / o->fragments);
    dfs_json_key(&j, "trials");
    dfs_json_uint(&j, o->trials);
    dfs_json_key(&j, "placements");
    dfs_json_uint(&j, o->placements);
    dfs_json_key(&j, "seed");
    dfs_json_uint(&j, o->seed);
    dfs_json_key(&j, "scatter_width");
    dfs_json_uint(&j, o->scatter_width);
    dfs_json_key(&j, "group_size");
    dfs_json_uint(&j, o->group_size);
    dfs_json_end_object(&j);
    dfs_json_key(&j, "results");
    dfs_json_begin_array(&j);
    if (!o->quiet)
        fprintf(stderr, "%-10s %6s %8s | %-10s %-10s %-6s | %-10s %-10s | %-10s %-10s\n", "policy",
                "failed", "sets", "P(any) sim", "closed", "kind", "units sim", "closed",
                "files sim", "closed");
    for (size_t i = 0; i < nres; i++) {
        struct result *r = &rs[i];
        const struct dfs_sim_tally *ta = &r->tally;
        double n = (double)ta->trials;
        double p = dfs_sim_set_loss(o->nodes, w, t, r->failed);
        const char *kind = "none";
        double any_cf = any_closed_form(o, r, w, t, p, &kind);
        double file_cf = (r->policy == DFS_POLICY_RANDOM || r->policy == DFS_POLICY_LEAST_USED)
                             ? dfs_sim_any_of(p, o->fragments)
                             : NAN;
        double lo = 0, hi = 0;
        wilson(ta->trials_with_loss, ta->trials, &lo, &hi);
        dfs_json_begin_object(&j);
        dfs_json_key(&j, "policy");
        dfs_json_string(&j, dfs_placement_policy_name(r->policy));
        dfs_json_key(&j, "failed");
        dfs_json_uint(&j, r->failed);
        dfs_json_key(&j, "failed_fraction");
        dfs_json_double(&j, (double)r->failed / o->nodes);
        dfs_json_key(&j, "trials");
        dfs_json_uint(&j, ta->trials);
        dfs_json_key(&j, "distinct_sets");
        dfs_json_uint(&j, r->info.distinct_sets);
        dfs_json_key(&j, "disjoint");
        dfs_json_bool(&j, r->info.disjoint);
        dfs_json_key(&j, "place_seconds");
        dfs_json_double(&j, r->place_seconds);
        dfs_json_key(&j, "trial_seconds");
        dfs_json_double(&j, r->trial_seconds);
        dfs_json_key(&j, "max_units_lost");
        dfs_json_uint(&j, ta->max_units_lost);
        dfs_json_key(&j, "unit_loss");
        dfs_json_begin_object(&j);
        dfs_json_key(&j, "simulated");
        dfs_json_double(&j, ta->unit_frac_sum / n);
        dfs_json_key(&j, "stderr");
        dfs_json_double(&j, stderr_of(ta->unit_frac_sum, ta->unit_frac_sq, ta->trials));
        dfs_json_key(&j, "closed_form");
        dfs_json_double(&j, p);
        dfs_json_end_object(&j);
        dfs_json_key(&j, "file_loss");
        dfs_json_begin_object(&j);
        dfs_json_key(&j, "simulated");
        dfs_json_double(&j, ta->file_frac_sum / n);
        dfs_json_key(&j, "stderr");
        dfs_json_double(&j, stderr_of(ta->file_frac_sum, ta->file_frac_sq, ta->trials));
        dfs_json_key(&j, "closed_form");
        dfs_json_double(&j, file_cf);
        dfs_json_end_object(&j);
        dfs_json_key(&j, "any_loss");
        dfs_json_begin_object(&j);
        dfs_json_key(&j, "simulated");
        dfs_json_double(&j, (double)ta->trials_with_loss / n);
        dfs_json_key(&j, "ci95");
        dfs_json_begin_array(&j);
        dfs_json_double(&j, lo);
        dfs_json_double(&j, hi);
        dfs_json_end_array(&j);
        dfs_json_key(&j, "closed_form");
        dfs_json_double(&j, any_cf);
        dfs_json_key(&j, "closed_form_kind");
        dfs_json_string(&j, kind);
        dfs_json_key(&j, "independent_sets");
        dfs_json_double(&j, dfs_sim_any_of(p, (double)r->info.distinct_sets));
        dfs_json_end_object(&j);
        dfs_json_end_object(&j);
        if (!o->quiet)
            fprintf(stderr,
                    "%-10s %6u %8llu | %-10.4g %-10.4g %-6s | %-10.4g %-10.4g | %-10.4g %-10.4g\n",
                    dfs_placement_policy_name(r->policy), r->failed,
                    (unsigned long long)r->info.distinct_sets, (double)ta->trials_with_loss / n,
                    any_cf, kind, ta->unit_frac_sum / n, p, ta->file_frac_sum / n, file_cf);
    }
    dfs_json_end_array(&j);
    dfs_json_end_object(&j);
    dfs_json_finish(&j);
}

int main(int argc, char **argv)
{
    struct opts o;
    int rc = 0;
    if (!parse_args(argc, argv, &o, &rc))
        return rc;
    size_t nres = o.npolicies * o.nfailed;
    struct result *rs = calloc(nres, sizeof *rs);
    if (rs == NULL) {
        fprintf(stderr, "simulate: out of memory\n");
        return 1;
    }
    int status = 0;
    for (size_t pi = 0; pi < o.npolicies && status == 0; pi++) {
        char *err = NULL;
        if (run_policy(&o, pi, rs + pi * o.nfailed, &err) != DFS_OK) {
            fprintf(stderr, "simulate: %s: %s\n", dfs_placement_policy_name(o.policies[pi]),
                    err != NULL ? err : "failed");
            free(err);
            status = 1;
        }
    }
    if (status == 0)
        emit(&o, rs, nres);
    for (size_t i = 0; i < nres; i++)
        free(rs[i].blocks);
    free(rs);
    return status;
}
