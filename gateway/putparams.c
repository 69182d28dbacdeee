/* The query parameters of a store request: redundancy, placement policy, overwrite. */
#include "gateway/putparams.h"

#include "common/err.h"
#include "common/units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const policies[] = {"default", "random", "min_copy", "buddy", "least_used"};

const char *dfs_gw_policy_name(int policy)
{
    return policy >= 0 && policy <= 4 ? policies[policy] : "?";
}

static int parse_u32(const char *name, const char *v, uint32_t lo, uint32_t hi, uint32_t *out,
                     char **errmsg)
{
    char *end = NULL;
    unsigned long x = v[0] >= '0' && v[0] <= '9' ? strtoul(v, &end, 10) : 0;
    if (end == NULL || end == v || *end != '\0' || x < lo || x > hi)
        return dfs_seterr(errmsg, DFS_EINVAL, "%s must be a whole number from %u to %u, not '%s'",
                          name, lo, hi, dfs_quote(v, &(struct dfs_quote){{0}}));
    *out = (uint32_t)x;
    return DFS_OK;
}

static int parse_bool(const char *name, const char *v, bool *out, char **errmsg)
{
    static const char *const yes[] = {"", "1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return DFS_OK;
        }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return DFS_OK;
        }
    return dfs_seterr(errmsg, DFS_EINVAL, "%s must be true or false, not '%s'", name,
                      dfs_quote(v, &(struct dfs_quote){{0}}));
}

static int parse_policy(const char *v, int *out, char **errmsg)
{
    char buf[32];
    size_t n = strlen(v);
    for (size_t i = 0; i <= n && n < sizeof buf; i++)
        buf[i] = v[i] == '-' ? '_' : v[i];
    for (int i = 1; n < sizeof buf && i <= 4; i++)
        if (strcmp(buf, policies[i]) == 0) {
            *out = i;
            return DFS_OK;
        }
    return dfs_seterr(errmsg, DFS_EINVAL,
                      "unknown policy '%s' (random, min_copy, buddy or least_used)",
                      dfs_quote(v, &(struct dfs_quote){{0}}));
}

static int parse_ec(const char *v, uint32_t *k, uint32_t *m, char **errmsg)
{
    /* An unescaped '+' in a query string decodes to a space: take "4 2" as "4+2". */
    char buf[16];
    size_t n = strlen(v);
    int rc = DFS_EINVAL;
    if (n < sizeof buf) {
        for (size_t i = 0; i <= n; i++)
            buf[i] = v[i] == ' ' ? '+' : v[i];
        rc = dfs_parse_ec(buf, 32, k, m);
    }
    if (rc == DFS_OK)
        return DFS_OK;
    return dfs_seterr(errmsg, DFS_EINVAL,
                      "ec takes K+M, e.g. 4+2, with K, M >= 1 and K+M <= 32, not '%s'",
                      dfs_quote(v, &(struct dfs_quote){{0}}));
}

int dfs_gw_put_params(const struct dfs_gw_put_query *q, struct dfs_client_put_opts *opts,
                      char **errmsg)
{
    int rc = DFS_OK;
    if (q->ec != NULL && (q->replicas != NULL || q->fragments != NULL))
        return dfs_seterr(errmsg, DFS_EINVAL, "ec excludes replicas and fragments");
    if (rc == DFS_OK && q->replicas != NULL)
        rc = parse_u32("replicas", q->replicas, 1, 16, &opts->replicas, errmsg);
    if (rc == DFS_OK && q->fragments != NULL)
        rc = parse_u32("fragments", q->fragments, 1, 256, &opts->fragments, errmsg);
    if (rc == DFS_OK && q->ec != NULL)
        rc = parse_ec(q->ec, &opts->ec_data, &opts->ec_parity, errmsg);
    if (rc == DFS_OK && q->policy != NULL)
        rc = parse_policy(q->policy, &opts->policy, errmsg);
    if (rc == DFS_OK && q->overwrite != NULL)
        rc = parse_bool("overwrite", q->overwrite, &opts->overwrite, errmsg);
    return rc;
}
