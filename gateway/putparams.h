/* The query parameters of a store request: redundancy, placement policy, overwrite. */
#ifndef DFS_GATEWAY_PUTPARAMS_H
#define DFS_GATEWAY_PUTPARAMS_H

#include "client/dfs_client.h"

/* Raw (percent-decoded) query values; NULL when the parameter is absent. All borrowed. */
struct dfs_gw_put_query {
    const char *replicas;  /* 1..16 */
    const char *fragments; /* 1..256 */
    const char *ec;        /* "K+M" (K, M >= 1, K+M <= 32); "K M" too, as '+' in a query is a
                              space unless sent as %2B */
    const char *policy;    /* random, min_copy, buddy, least_used ('-' for '_' is fine) */
    const char *overwrite; /* true/false, 1/0, yes/no; an empty value is true */
};

/*
 * Fill opts->replicas, fragments, ec_data, ec_parity, policy and overwrite from q (other fields
 * are left alone). Rules as for `dfs put`: ec excludes replicas and fragments. Returns 0, or
 * DFS_EINVAL with a one-line reason naming the parameter in *errmsg.
 */
int dfs_gw_put_params(const struct dfs_gw_put_query *q, struct dfs_client_put_opts *opts,
                      char **errmsg);

/* The policy's name for a dfs.v1.Policy number ("default" for 0, "?" when unknown); static. */
const char *dfs_gw_policy_name(int policy);

#endif /* DFS_GATEWAY_PUTPARAMS_H */
