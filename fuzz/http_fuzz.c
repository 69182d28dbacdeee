/*
 * Fuzz target: what the HTTP gateway reads from a request before anything reaches the cluster
 * (gateway/): the Range header, percent-decoding of paths and query values, and the store
 * parameters (replicas, fragments, ec, policy, overwrite). Input: a selector byte, 8 bytes of a
 * file size, then text; for the parameters the text is cut at NUL bytes into the five values.
 *
 * Invariants: a satisfiable range lies inside the file and is not empty; a decoded string holds
 * no NUL and is no longer than its input, and encoding a path then decoding it gives it back;
 * accepted parameters are within their documented bounds.
 */
#include "common/err.h"
#include "gateway/putparams.h"
#include "gateway/range.h"
#include "gateway/urlcodec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void broken(const char *what, const char *s)
{
    fprintf(stderr, "fuzz: broken promise: %s: \"%s\"\n", what, s);
    abort();
}

static void range(const char *s, uint64_t size)
{
    uint64_t off = 0, len = 0;
    enum dfs_gw_range r = dfs_gw_range_parse(s, size, &off, &len);
    if (r == DFS_GW_RANGE_OK && (len == 0 || off >= size || len > size - off))
        broken("a range outside the file", s);
}

static void percent(const char *s)
{
    char *out = NULL, *msg = NULL;
    if (dfs_gw_percent_decode(s, &out, &msg) == DFS_OK) {
        if (strlen(out) > strlen(s))
            broken("decoding made a string longer", s);
        free(out);
    } else {
        if (msg == NULL)
            broken("decoding refused without a message", s);
        free(msg);
    }
    char *enc = dfs_gw_percent_encode_path(s);
    if (enc == NULL)
        return;
    out = NULL;
    msg = NULL;
    if (dfs_gw_percent_decode(enc, &out, &msg) != DFS_OK || strcmp(out, s) != 0)
        broken("decode(encode(x)) != x", s);
    free(out);
    free(enc);
}

static void params(const char *text, size_t n, uint8_t present)
{
    const char *v[5] = {NULL};
    const char *p = text;
    for (int i = 0; i < 5 && p <= text + n; i++) {
        if (present & (1u << i))
            v[i] = p;
        p += strlen(p) + 1;
    }
    struct dfs_gw_put_query q = {v[0], v[1], v[2], v[3], v[4]};
    struct dfs_put_opts o;
    memset(&o, 0, sizeof o);
    char *msg = NULL;
    if (dfs_gw_put_params(&q, &o, &msg) == DFS_OK) {
        if (o.replicas > 16 || o.fragments > 256 || (uint64_t)o.ec_data + o.ec_parity > 32 ||
            o.policy < 0 || o.policy > 4)
            broken("parameters accepted out of bounds", text);
        if (q.ec != NULL && (o.ec_data < 1 || o.ec_parity < 1))
            broken("an erasure code accepted without K or M", q.ec);
    } else {
        if (msg == NULL)
            broken("parameters refused without a message", text);
        free(msg);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    uint8_t sel = data[0];
    uint64_t fsize;
    memcpy(&fsize, data + 1, sizeof fsize);
    size_t n = size - 9;
    char *s = malloc(n + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data + 9, n);
    s[n] = '\0';
    range(s, fsize);
    percent(s);
    params(s, n, sel);
    free(s);
    return 0;
}
