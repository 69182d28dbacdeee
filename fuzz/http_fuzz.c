/*
 * Fuzz target: what the HTTP gateway reads from a request before anything reaches the cluster
 * (gateway/): the Range header, percent-decoding of paths and query values, the store
 * parameters (replicas, fragments, ec, policy, overwrite), and the JSON body of an experiment
 * start (a hand-written parser whose knobs become a child process's arguments); and what it writes
 * back: JSON strings holding whatever a path held (common/json.h). Input: a selector byte, 8 bytes of
 * a file size, then text; for the parameters the text is cut at NUL bytes into the five values.
 *
 * Invariants: a satisfiable range lies inside the file and is not empty; a decoded string holds
 * no NUL and is no longer than its input, and encoding a path then decoding it gives it back;
 * accepted parameters are within their documented bounds; every accepted experiment knob passes
 * the knob rules (so none can name the gateway's own --out or --bin, or start with '-'); a JSON
 * string written is quoted, valid UTF-8 and free of raw control characters.
 */
#include "common/err.h"
#include "common/json.h"
#include "common/utf8.h"
#include "gateway/experiments.h"
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
    struct dfs_client_put_opts o;
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

static void experiment_body(const char *body, size_t n)
{
    char *kind = NULL, *msg = NULL;
    struct dfs_exp_knob *knobs = NULL;
    size_t nknobs = 0;
    if (dfs_exp_parse_json(body, n, &kind, &knobs, &nknobs, &msg) != DFS_OK) {
        if (msg == NULL)
            broken("an experiment body refused without a message", "(body)");
        free(msg);
        return;
    }
    for (size_t i = 0; i < nknobs; i++) {
        char *why = NULL;
        if (dfs_exp_check_knob(knobs[i].name, knobs[i].value, &why) != DFS_OK)
            broken("an experiment knob accepted against the knob rules", knobs[i].name);
    }
    free(kind);
    dfs_exp_knobs_free(knobs, nknobs);
}

static void json_string(const char *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return;
    dfs_json j;
    dfs_json_init(&j, f);
    dfs_json_string(&j, s);
    fclose(f);
    if (len < 2 || buf[0] != '"' || buf[len - 1] != '"')
        broken("a JSON string not quoted", s);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)buf[i] < 0x20)
            broken("a JSON string with a raw control character", s);
    if (!dfs_utf8_valid(buf, len, NULL))
        broken("a JSON string that is not UTF-8", s);
    for (size_t i = 1; i + 1 < len; i++) {
        if (buf[i] == '\\') {
            i++; /* an escape: the next byte is its letter */
            continue;
        }
        if (buf[i] == '"')
            broken("a JSON string with an unescaped quote", s);
    }
    free(buf);
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
    experiment_body((const char *)data + 9, n);
    json_string(s);
    free(s);
    return 0;
}
