/* AWS Signature Version 4 for S3: canonical requests, signing keys, and verifying requests. */
#include "gateway/s3/sigv4.h"

#include "common/err.h"
#include "gateway/s3/s3time.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ALGORITHM            "AWS4-HMAC-SHA256"
#define EMPTY_SHA256         "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define MAX_SIGNED_HEADERS   64
#define MAX_AUTH_HEADER      8192
#define UNSIGNED_PAYLOAD     "UNSIGNED-PAYLOAD"
#define STREAMING            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
#define STREAMING_TRAILER    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
#define STREAMING_UNSIGNED_T "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

/* ---- A growable string ---- */

struct sb {
    char *s;
    size_t len, cap;
    bool failed;
};

static void sb_add(struct sb *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->cap - b->len <= n) {
        size_t c = b->cap ? b->cap : 256;
        while (c - b->len <= n)
            c *= 2;
        char *ns = realloc(b->s, c);
        if (ns == NULL) {
            b->failed = true;
            return;
        }
        b->s = ns;
        b->cap = c;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(struct sb *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* ---- Primitives ---- */

void dfs_sigv4_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[bytes[i] >> 4];
        out[2 * i + 1] = hex[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hmac(const uint8_t *key, size_t klen, const char *msg, size_t len, uint8_t out[32])
{
    unsigned int olen = 0;
    if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, len, out, &olen) == NULL ||
        olen != 32)
        return DFS_EINTERNAL;
    return DFS_OK;
}

int dfs_sigv4_hmac_hex(const uint8_t key[DFS_SIGV4_KEY_LEN], const char *msg, size_t len,
                       char out[DFS_SIGV4_HEX_LEN + 1])
{
    uint8_t mac[32];
    if (hmac(key, DFS_SIGV4_KEY_LEN, msg, len, mac) != DFS_OK)
        return DFS_EINTERNAL;
    dfs_sigv4_hex(mac, 32, out);
    OPENSSL_cleanse(mac, sizeof mac);
    return DFS_OK;
}

int dfs_sigv4_signing_key(const char *secret, const struct dfs_sigv4_scope *scope,
                          uint8_t key[DFS_SIGV4_KEY_LEN])
{
    size_t slen = strlen(secret);
    uint8_t *k0 = malloc(slen + 4);
    if (k0 == NULL)
        return DFS_EINTERNAL;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, slen);
    uint8_t a[32], b[32];
    int rc = hmac(k0, slen + 4, scope->date, strlen(scope->date), a);
    OPENSSL_cleanse(k0, slen + 4);
    free(k0);
    if (rc == DFS_OK)
        rc = hmac(a, 32, scope->region, strlen(scope->region), b);
    if (rc == DFS_OK)
        rc = hmac(b, 32, scope->service, strlen(scope->service), a);
    if (rc == DFS_OK)
        rc = hmac(a, 32, "aws4_request", 12, key);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    return rc;
}

bool dfs_sigv4_signature_equal(const char *want, const char *given)
{
    if (strlen(want) != DFS_SIGV4_HEX_LEN || strlen(given) != DFS_SIGV4_HEX_LEN)
        return false;
    char g[DFS_SIGV4_HEX_LEN];
    for (int i = 0; i < DFS_SIGV4_HEX_LEN; i++) {
        char c = given[i];
        g[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
    }
    return CRYPTO_memcmp(want, g, DFS_SIGV4_HEX_LEN) == 0;
}

void dfs_sigv4_auth_clear(struct dfs_sigv4_auth *auth)
{
    OPENSSL_cleanse(auth, sizeof *auth);
}

/* ---- Canonical request ---- */

struct qpair {
    char *name, *value; /* encoded */
};

static int qpair_cmp(const void *a, const void *b)
{
    const struct qpair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : strcmp(x->value, y->value);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* A header value as SigV4 canonicalises it: trimmed, inner runs of blanks one space. */
static void add_trimmed(struct sb *b, const char *v)
{
    while (is_blank(*v))
        v++;
    bool space = false;
    for (; *v != '\0'; v++) {
        if (is_blank(*v)) {
            space = true;
            continue;
        }
        if (space)
            sb_add(b, " ", 1);
        space = false;
        sb_add(b, v, 1);
    }
}

int dfs_sigv4_canonical_request(const struct dfs_s3http_request *req, const char *signed_headers,
                                const char *payload_hash, bool presigned, char **out,
                                struct dfs_s3err *err)
{
    struct sb b = {0};
    sb_str(&b, req->method);
    sb_add(&b, "\n", 1);

    /* URI: decoded once, encoded once, '/' kept. */
    const char *path = req->path != NULL && req->path[0] != '\0' ? req->path : "/";
    char *dec = NULL, *msg = NULL;
    size_t dlen;
    int rc = dfs_s3http_decode(path, strlen(path), false, &dec, &dlen, &msg);
    if (rc != DFS_OK) {
        free(b.s);
        rc = rc == DFS_ENOMEM ? dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory")
                              : dfs_s3err_set(err, DFS_S3ERR_INVALID_URI, "path: %s", msg);
        free(msg);
        return rc;
    }
    char *enc = dfs_s3http_encode(dec, dlen, true);
    free(dec);
    if (enc == NULL) {
        free(b.s);
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    }
    sb_str(&b, enc);
    free(enc);
    sb_add(&b, "\n", 1);

    /* Query: decoded pairs, encoded, sorted. */
    struct dfs_s3http_query q;
    rc = dfs_s3http_query_parse(req->query, &q, err);
    if (rc != DFS_OK) {
        free(b.s);
        return rc;
    }
    struct qpair *pairs = calloc(q.n ? q.n : 1, sizeof *pairs);
    size_t np = 0;
    bool nomem = pairs == NULL;
    for (size_t i = 0; !nomem && i < q.n; i++) {
        if (presigned && strcmp(q.params[i].name, "X-Amz-Signature") == 0)
            continue;
        pairs[np].name = dfs_s3http_encode(q.params[i].name, strlen(q.params[i].name), false);
        pairs[np].value = dfs_s3http_encode(q.params[i].value, strlen(q.params[i].value), false);
        np++;
        nomem = pairs[np - 1].name == NULL || pairs[np - 1].value == NULL;
    }
    dfs_s3http_query_free(&q);
    if (!nomem) {
        qsort(pairs, np, sizeof *pairs, qpair_cmp);
        for (size_t i = 0; i < np; i++) {
            if (i > 0)
                sb_add(&b, "&", 1);
            sb_str(&b, pairs[i].name);
            sb_add(&b, "=", 1);
            sb_str(&b, pairs[i].value);
        }
    }
    for (size_t i = 0; pairs != NULL && i < np; i++) {
        free(pairs[i].name);
        free(pairs[i].value);
    }
    free(pairs);
    if (nomem) {
        free(b.s);
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    }
    sb_add(&b, "\n", 1);

    /* Headers, in the order SignedHeaders names them. */
    const char *p = signed_headers;
    while (*p != '\0') {
        size_t n = strcspn(p, ";");
        char name[256];
        if (n == 0 || n >= sizeof name) {
            free(b.s);
            return dfs_s3err_set(err, DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED,
                                 "SignedHeaders holds an empty or overlong name");
        }
        for (size_t i = 0; i < n; i++) {
            char c = p[i];
            name[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
        name[n] = '\0';
        sb_str(&b, name);
        sb_add(&b, ":", 1);
        size_t found = 0;
        for (size_t i = 0; i < req->nheaders; i++) {
            if (strcasecmp(req->headers[i].name, name) != 0)
                continue;
            if (found++ > 0)
                sb_add(&b, ",", 1);
            add_trimmed(&b, req->headers[i].value);
        }
        if (found == 0) {
            free(b.s);
            return dfs_s3err_set(err, DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH,
                                 "signed header %s is not in the request", name);
        }
        sb_add(&b, "\n", 1);
        p += n;
        if (*p == ';')
            p++;
    }
    sb_add(&b, "\n", 1);
    sb_str(&b, signed_headers);
    sb_add(&b, "\n", 1);
    sb_str(&b, payload_hash);
    if (b.failed) {
        free(b.s);
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    }
    *out = b.s;
    return DFS_OK;
}

char *dfs_sigv4_string_to_sign(const char *amz_date, const char *scope,
                               const char *canonical_request)
{
    uint8_t h[32];
    char hex[DFS_SIGV4_HEX_LEN + 1];
    SHA256((const unsigned char *)canonical_request, strlen(canonical_request), h);
    dfs_sigv4_hex(h, 32, hex);
    char *s = NULL;
    if (asprintf(&s, ALGORITHM "\n%s\n%s\n%s", amz_date, scope, hex) < 0)
        return NULL;
    return s;
}

int dfs_sigv4_chunk_signature(const struct dfs_sigv4_auth *auth, const char *previous,
                              const uint8_t data_sha256[32], bool trailer,
                              char out[DFS_SIGV4_HEX_LEN + 1])
{
    char hex[DFS_SIGV4_HEX_LEN + 1];
    dfs_sigv4_hex(data_sha256, 32, hex);
    char sts[512];
    int n;
    if (trailer)
        n = snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256-TRAILER\n%s\n%s\n%s\n%s", auth->amz_date,
                     auth->scope, previous, hex);
    else
        n = snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256-PAYLOAD\n%s\n%s\n%s\n" EMPTY_SHA256 "\n%s",
                     auth->amz_date, auth->scope, previous, hex);
    if (n < 0 || (size_t)n >= sizeof sts)
        return DFS_EINTERNAL;
    return dfs_sigv4_hmac_hex(auth->signing_key, sts, (size_t)n, out);
}

/* ---- Verification ---- */

/* The parts of a signature, from the Authorization header or the query. */
struct sigparts {
    const char *credential; /* key/date/region/service/aws4_request */
    const char *signed_headers;
    const char *signature;
    const char *date;    /* X-Amz-Date, presigned */
    const char *expires; /* X-Amz-Expires, presigned */
};

static bool is_lower_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

/*
 * "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." into parts, pointing into
 * buf (a copy of the header the caller owns).
 */
static int parse_authorization(char *buf, struct sigparts *sp, struct dfs_s3err *err)
{
    const enum dfs_s3err_code bad = DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED;
    size_t alen = strlen(ALGORITHM);
    if (strncmp(buf, ALGORITHM, alen) != 0 || !is_blank(buf[alen]))
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_REQUEST,
                             "The authorization mechanism you have provided is not supported. "
                             "Please use " ALGORITHM ".");
    char *p = buf + alen;
    while (*p != '\0') {
        while (is_blank(*p))
            p++;
        char *field = p;
        size_t n = strcspn(p, ",");
        p += n;
        if (*p == ',')
            *p++ = '\0';
        char *end = field + strlen(field);
        while (end > field && is_blank(end[-1]))
            *--end = '\0';
        if (field[0] == '\0')
            continue;
        char *eq = strchr(field, '=');
        if (eq == NULL)
            return dfs_s3err_set(err, bad, "the authorization header has a part without '='");
        *eq = '\0';
        const char **slot = NULL;
        if (strcmp(field, "Credential") == 0)
            slot = &sp->credential;
        else if (strcmp(field, "SignedHeaders") == 0)
            slot = &sp->signed_headers;
        else if (strcmp(field, "Signature") == 0)
            slot = &sp->signature;
        else
            return dfs_s3err_set(err, bad, "the authorization header has an unknown part %.32s",
                                 field);
        if (*slot != NULL)
            return dfs_s3err_set(err, bad, "the authorization header gives %s twice", field);
        *slot = eq + 1;
    }
    if (sp->credential == NULL || sp->signed_headers == NULL || sp->signature == NULL)
        return dfs_s3err_set(err, bad,
                             "the authorization header needs Credential, SignedHeaders and "
                             "Signature");
    return DFS_OK;
}

/* The presigned parameters from the query (each at most once). */
static int parse_presigned(const struct dfs_s3http_query *q, struct sigparts *sp,
                           struct dfs_s3err *err)
{
    const enum dfs_s3err_code bad = DFS_S3ERR_AUTHORIZATION_QUERY_PARAMETERS_ERROR;
    static const char *const names[] = {"X-Amz-Algorithm",     "X-Amz-Credential",
                                        "X-Amz-SignedHeaders", "X-Amz-Signature",
                                        "X-Amz-Date",          "X-Amz-Expires"};
    const char *v[6];
    for (int i = 0; i < 6; i++) {
        if (dfs_s3http_query_count(q, names[i]) != 1)
            return dfs_s3err_set(err, bad,
                                 "Query-string authentication version 4 requires the "
                                 "X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, "
                                 "X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters, "
                                 "each once (%s)",
                                 names[i]);
        v[i] = dfs_s3http_query_get(q, names[i]);
    }
    if (strcmp(v[0], ALGORITHM) != 0)
        return dfs_s3err_set(err, bad, "X-Amz-Algorithm only supports \"" ALGORITHM "\"");
    sp->credential = v[1];
    sp->signed_headers = v[2];
    sp->signature = v[3];
    sp->date = v[4];
    sp->expires = v[5];
    return DFS_OK;
}

static bool region_ok(const char *s, size_t n)
{
    if (n == 0 || n > DFS_SIGV4_REGION_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* key/date/region/service/aws4_request: the key id may not hold '/', nor may anything else. */
static int parse_credential(const char *cred, char key_id[DFS_SIGV4_KEY_ID_MAX + 1],
                            struct dfs_sigv4_scope *scope, enum dfs_s3err_code bad,
                            const struct dfs_sigv4_config *cfg, struct dfs_s3err *err)
{
    const char *part[5];
    size_t len[5];
    const char *p = cred;
    for (int i = 0; i < 5; i++) {
        part[i] = p;
        len[i] = strcspn(p, "/");
        p += len[i];
        if (i < 4) {
            if (*p != '/')
                return dfs_s3err_set(err, bad,
                                     "the Credential must read "
                                     "KEY/YYYYMMDD/REGION/s3/aws4_request");
            p++;
        }
    }
    if (*p != '\0')
        return dfs_s3err_set(err, bad,
                             "the Credential must read KEY/YYYYMMDD/REGION/s3/aws4_request");
    if (len[0] == 0 || len[0] > DFS_SIGV4_KEY_ID_MAX)
        return dfs_s3err_set(err, bad, "the access key id is empty or longer than %d bytes",
                             DFS_SIGV4_KEY_ID_MAX);
    for (size_t i = 0; i < len[0]; i++) {
        unsigned char c = (unsigned char)part[0][i];
        if (c <= 0x20 || c >= 0x7f)
            return dfs_s3err_set(err, DFS_S3ERR_INVALID_ACCESS_KEY_ID,
                                 "the access key id holds a character no key id has");
    }
    memcpy(key_id, part[0], len[0]);
    key_id[len[0]] = '\0';
    unsigned ok = len[1] == 8;
    for (size_t i = 0; ok && i < 8; i++)
        ok = part[1][i] >= '0' && part[1][i] <= '9';
    if (!ok)
        return dfs_s3err_set(err, bad, "the credential date must be YYYYMMDD");
    memcpy(scope->date, part[1], 8);
    scope->date[8] = '\0';
    if (!region_ok(part[2], len[2]))
        return dfs_s3err_set(err, bad, "the credential region is not a region name");
    memcpy(scope->region, part[2], len[2]);
    scope->region[len[2]] = '\0';
    if (cfg->region != NULL && cfg->region[0] != '\0' && strcmp(scope->region, cfg->region) != 0) {
        int rc = dfs_s3err_set(err, bad, "the region '%s' is wrong; expecting '%s'", scope->region,
                               cfg->region);
        dfs_s3err_add_extra(err, "Region", cfg->region);
        return rc;
    }
    if (len[3] != 2 || memcmp(part[3], "s3", 2) != 0)
        return dfs_s3err_set(err, bad,
                             "incorrect service \"%.*s\". This endpoint belongs to \"s3\".",
                             (int)(len[3] > 32 ? 32 : len[3]), part[3]);
    memcpy(scope->service, "s3", 3);
    if (len[4] != 12 || memcmp(part[4], "aws4_request", 12) != 0)
        return dfs_s3err_set(err, bad, "the credential must end in aws4_request");
    return DFS_OK;
}

/*
 * SignedHeaders: lower-case names joined by ';' that include host; and every x-amz-* header the
 * request carries must be among them (otherwise anyone on the way could add one).
 */
static int check_signed_headers(const struct dfs_s3http_request *req, const char *list,
                                enum dfs_s3err_code bad, struct dfs_s3err *err)
{
    size_t count = 0;
    bool host = false;
    for (const char *p = list;;) {
        size_t n = strcspn(p, ";");
        if (n == 0)
            return dfs_s3err_set(err, bad, "SignedHeaders holds an empty name");
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c <= 0x20 || c >= 0x7f || (c >= 'A' && c <= 'Z') || c == ':')
                return dfs_s3err_set(err, bad, "SignedHeaders must be lower-case header names");
        }
        if (++count > MAX_SIGNED_HEADERS)
            return dfs_s3err_set(err, bad, "SignedHeaders names more than %d headers",
                                 MAX_SIGNED_HEADERS);
        host = host || (n == 4 && memcmp(p, "host", 4) == 0);
        p += n;
        if (*p == '\0')
            break;
        p++;
    }
    if (!host)
        return dfs_s3err_set(err, DFS_S3ERR_ACCESS_DENIED, "the host header must be signed");
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *h = req->headers[i].name;
        if (strncasecmp(h, "x-amz-", 6) != 0)
            continue;
        size_t hl = strlen(h);
        bool found = false;
        for (const char *p = list; !found;) {
            size_t n = strcspn(p, ";");
            found = n == hl && strncasecmp(p, h, n) == 0;
            p += n;
            if (*p == '\0')
                break;
            p++;
        }
        if (!found) {
            int rc = dfs_s3err_set(err, DFS_S3ERR_ACCESS_DENIED,
                                   "There were headers present in the request which were not "
                                   "signed");
            dfs_s3err_add_extra(err, "HeadersNotSigned", h);
            return rc;
        }
    }
    return DFS_OK;
}

/* x-amz-content-sha256 (or X-Amz-Content-Sha256, presigned) into auth->payload. */
static int parse_payload(const char *v, bool presigned, struct dfs_sigv4_auth *auth,
                         struct dfs_s3err *err)
{
    if (strcmp(v, UNSIGNED_PAYLOAD) == 0) {
        auth->payload = DFS_SIGV4_PAYLOAD_UNSIGNED;
    } else if (strcmp(v, STREAMING) == 0 || strcmp(v, STREAMING_TRAILER) == 0 ||
               strcmp(v, STREAMING_UNSIGNED_T) == 0) {
        if (presigned)
            return dfs_s3err_set(err, DFS_S3ERR_INVALID_REQUEST,
                                 "aws-chunked uploads must be signed with the Authorization "
                                 "header, not presigned");
        auth->payload = strcmp(v, STREAMING) == 0 ? DFS_SIGV4_PAYLOAD_STREAMING
                        : strcmp(v, STREAMING_TRAILER) == 0
                            ? DFS_SIGV4_PAYLOAD_STREAMING_TRAILER
                            : DFS_SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    } else if (is_lower_hex(v, DFS_SIGV4_HEX_LEN)) {
        auth->payload = DFS_SIGV4_PAYLOAD_SHA256;
        for (int i = 0; i < 32; i++) {
            unsigned hi = (unsigned char)v[2 * i], lo = (unsigned char)v[2 * i + 1];
            hi = hi <= '9' ? hi - '0' : (hi | 0x20) - 'a' + 10;
            lo = lo <= '9' ? lo - '0' : (lo | 0x20) - 'a' + 10;
            auth->payload_sha256[i] = (uint8_t)(hi << 4 | lo);
        }
    } else {
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT,
                             "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                             "STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER], "
                             "STREAMING-UNSIGNED-PAYLOAD-TRAILER or a SHA-256 in hex");
    }
    return DFS_OK;
}

static int key_error(int rc, const char *key_id, struct dfs_s3err *err)
{
    switch (rc) {
    case DFS_ENOTFOUND:
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ACCESS_KEY_ID,
                             "The AWS access key ID you provided does not exist in our records.");
    case DFS_EUNAUTH:
    case DFS_EPERM:
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ACCESS_KEY_ID,
                             "The access key ID you provided is revoked or expired.");
    case DFS_EUNAVAIL:
        return dfs_s3err_set(err, DFS_S3ERR_SERVICE_UNAVAILABLE, "cannot look up access key %s now",
                             key_id);
    default:
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "access key lookup failed");
    }
}

static int verify(const struct dfs_sigv4_config *cfg, const struct dfs_s3http_request *req,
                  int64_t now, const struct dfs_s3http_query *q, char *authz,
                  struct dfs_sigv4_auth *auth, struct dfs_s3err *err)
{
    struct sigparts sp = {0};
    bool presigned = authz == NULL;
    enum dfs_s3err_code bad = presigned ? DFS_S3ERR_AUTHORIZATION_QUERY_PARAMETERS_ERROR
                                        : DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED;
    int rc = presigned ? parse_presigned(q, &sp, err) : parse_authorization(authz, &sp, err);
    if (rc != DFS_OK)
        return rc;
    struct dfs_sigv4_scope scope;
    memset(&scope, 0, sizeof scope);
    rc = parse_credential(sp.credential, auth->access_key_id, &scope, bad, cfg, err);
    if (rc != DFS_OK)
        return rc;
    if (!is_lower_hex(sp.signature, DFS_SIGV4_HEX_LEN))
        return dfs_s3err_set(err, bad, "the signature must be %d hex digits", DFS_SIGV4_HEX_LEN);

    /* The request time. */
    int64_t t;
    if (presigned) {
        if (dfs_s3time_parse_amz(sp.date, &t) != DFS_OK)
            return dfs_s3err_set(err, bad,
                                 "X-Amz-Date must be in the ISO8601 basic format "
                                 "YYYYMMDD'T'HHMMSS'Z'");
    } else {
        const char *xd, *d;
        rc = dfs_s3http_header_once(req, "x-amz-date", &xd, err);
        if (rc == DFS_OK)
            rc = dfs_s3http_header_once(req, "date", &d, err);
        if (rc != DFS_OK)
            return rc;
        if (xd != NULL ? dfs_s3time_parse_amz(xd, &t) != DFS_OK
                       : d == NULL || dfs_s3time_parse_http(d, now, &t) != DFS_OK)
            return dfs_s3err_set(err, DFS_S3ERR_ACCESS_DENIED,
                                 "AWS authentication requires a valid Date or x-amz-date header");
    }
    auth->request_time = t;
    dfs_s3time_format_amz(t, auth->amz_date);
    if (strncmp(auth->amz_date, scope.date, 8) != 0)
        return dfs_s3err_set(err, bad,
                             "Invalid credential date \"%s\". This date is not the same as "
                             "X-Amz-Date: \"%.8s\".",
                             scope.date, auth->amz_date);
    int64_t skew = cfg->max_skew_s > 0 ? cfg->max_skew_s : DFS_SIGV4_MAX_SKEW_S;
    char now_s[DFS_S3TIME_AMZ_LEN + 1];
    dfs_s3time_format_amz(now, now_s);
    if (presigned) {
        const char *e = sp.expires;
        int64_t secs = 0;
        bool ok = e[0] != '\0' && strlen(e) <= 7;
        for (const char *c = e; ok && *c != '\0'; c++) {
            ok = *c >= '0' && *c <= '9';
            secs = secs * 10 + (*c - '0');
        }
        if (!ok)
            return dfs_s3err_set(err, bad, "X-Amz-Expires should be a number");
        if (secs < 1 || secs > DFS_SIGV4_MAX_EXPIRES_S)
            return dfs_s3err_set(err, bad,
                                 "X-Amz-Expires must be between 1 and %d seconds (7 days)",
                                 DFS_SIGV4_MAX_EXPIRES_S);
        auth->expires = t + secs;
        if (now > auth->expires) {
            int r = dfs_s3err_set(err, DFS_S3ERR_ACCESS_DENIED, "Request has expired");
            char exp_s[DFS_S3TIME_AMZ_LEN + 1];
            dfs_s3time_format_amz(auth->expires, exp_s);
            dfs_s3err_add_extra(err, "X-Amz-Expires", e);
            dfs_s3err_add_extra(err, "Expires", exp_s);
            dfs_s3err_add_extra(err, "ServerTime", now_s);
            return r;
        }
        if (t > now + skew)
            return dfs_s3err_set(err, DFS_S3ERR_ACCESS_DENIED, "Request is not valid yet");
    } else if (t > now + skew || t < now - skew) {
        int r = dfs_s3err_set(err, DFS_S3ERR_REQUEST_TIME_TOO_SKEWED, NULL);
        dfs_s3err_add_extra(err, "RequestTime", auth->amz_date);
        dfs_s3err_add_extra(err, "ServerTime", now_s);
        char ms[24];
        snprintf(ms, sizeof ms, "%lld", (long long)skew * 1000);
        dfs_s3err_add_extra(err, "MaxAllowedSkewMilliseconds", ms);
        return r;
    }

    rc = check_signed_headers(req, sp.signed_headers, bad, err);
    if (rc != DFS_OK)
        return rc;

    /* What the signature says about the body. */
    const char *payload_hash = UNSIGNED_PAYLOAD;
    if (presigned) {
        size_t n = dfs_s3http_query_count(q, "X-Amz-Content-Sha256");
        if (n > 1)
            return dfs_s3err_set(err, bad, "X-Amz-Content-Sha256 given more than once");
        if (n == 1)
            payload_hash = dfs_s3http_query_get(q, "X-Amz-Content-Sha256");
    } else {
        const char *h;
        rc = dfs_s3http_header_once(req, "x-amz-content-sha256", &h, err);
        if (rc != DFS_OK)
            return rc;
        if (h == NULL)
            return dfs_s3err_set(err, DFS_S3ERR_INVALID_REQUEST,
                                 "Missing required header for this request: "
                                 "x-amz-content-sha256");
        payload_hash = h;
    }
    rc = parse_payload(payload_hash, presigned, auth, err);
    if (rc != DFS_OK)
        return rc;

    /* The key. */
    char *kmsg = NULL;
    rc = cfg->key(cfg->key_arg, auth->access_key_id, &scope, auth->signing_key, &auth->role, &kmsg);
    free(kmsg);
    if (rc != DFS_OK)
        return key_error(rc, auth->access_key_id, err);
    snprintf(auth->scope, sizeof auth->scope, "%s/%s/s3/aws4_request", scope.date, scope.region);

    /* The signature. */
    char *creq = NULL;
    rc = dfs_sigv4_canonical_request(req, sp.signed_headers, payload_hash, presigned, &creq, err);
    if (rc != DFS_OK)
        return rc;
    char *sts = dfs_sigv4_string_to_sign(auth->amz_date, auth->scope, creq);
    char want[DFS_SIGV4_HEX_LEN + 1];
    if (sts == NULL || dfs_sigv4_hmac_hex(auth->signing_key, sts, strlen(sts), want) != DFS_OK) {
        free(creq);
        free(sts);
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "signing failed");
    }
    if (!dfs_sigv4_signature_equal(want, sp.signature)) {
        rc = dfs_s3err_set(err, DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH, NULL);
        dfs_s3err_add_extra(err, "AWSAccessKeyId", auth->access_key_id);
        dfs_s3err_add_extra(err, "StringToSign", sts);
        dfs_s3err_add_extra(err, "SignatureProvided", sp.signature);
        dfs_s3err_add_extra(err, "CanonicalRequest", creq);
        free(creq);
        free(sts);
        return rc;
    }
    free(creq);
    free(sts);
    auth->presigned = presigned;
    for (int i = 0; i < DFS_SIGV4_HEX_LEN; i++) {
        char c = sp.signature[i];
        auth->seed_signature[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
    }
    auth->seed_signature[DFS_SIGV4_HEX_LEN] = '\0';
    return DFS_OK;
}

int dfs_sigv4_verify(const struct dfs_sigv4_config *cfg, const struct dfs_s3http_request *req,
                     int64_t now, struct dfs_sigv4_auth *auth, struct dfs_s3err *err)
{
    memset(auth, 0, sizeof *auth);
    const char *authz;
    int rc = dfs_s3http_header_once(req, "authorization", &authz, err);
    if (rc != DFS_OK)
        return rc;
    struct dfs_s3http_query q;
    rc = dfs_s3http_query_parse(req->query, &q, err);
    if (rc != DFS_OK)
        return rc;
    bool query_auth = dfs_s3http_query_count(&q, "X-Amz-Algorithm") > 0 ||
                      dfs_s3http_query_count(&q, "X-Amz-Signature") > 0 ||
                      dfs_s3http_query_count(&q, "X-Amz-Credential") > 0;
    bool v2_query = dfs_s3http_query_count(&q, "Signature") > 0 ||
                    dfs_s3http_query_count(&q, "AWSAccessKeyId") > 0;
    char *copy = NULL;
    if (authz != NULL && query_auth) {
        rc = dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT,
                           "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
                           "parameter, Signature query string parameter or the Authorization "
                           "header should be specified");
    } else if (authz == NULL && !query_auth) {
        rc = v2_query ? dfs_s3err_set(err, DFS_S3ERR_INVALID_REQUEST,
                                      "The authorization mechanism you have provided is not "
                                      "supported. Please use " ALGORITHM ".")
                      : dfs_s3err_set(err, DFS_S3ERR_ACCESS_DENIED,
                                      "Anonymous requests are not allowed: sign the request "
                                      "with AWS Signature Version 4");
    } else if (authz != NULL && strlen(authz) > MAX_AUTH_HEADER) {
        rc = dfs_s3err_set(err, DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED,
                           "the authorization header is longer than %d bytes", MAX_AUTH_HEADER);
    } else if (authz != NULL && (copy = strdup(authz)) == NULL) {
        rc = dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    } else {
        rc = verify(cfg, req, now, &q, copy, auth, err);
    }
    free(copy);
    dfs_s3http_query_free(&q);
    if (rc != DFS_OK)
        dfs_sigv4_auth_clear(auth);
    return rc;
}

/* ---- Plain bodies ---- */

struct dfs_sigv4_body {
    bool hash;
    bool finished;
    int result; /* of the first finish, which every later one repeats */
    uint8_t want[32];
    EVP_MD_CTX *ctx;
};

dfs_sigv4_body *dfs_sigv4_body_create(const struct dfs_sigv4_auth *auth)
{
    if (auth->payload != DFS_SIGV4_PAYLOAD_UNSIGNED && auth->payload != DFS_SIGV4_PAYLOAD_SHA256)
        return NULL;
    dfs_sigv4_body *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->hash = auth->payload == DFS_SIGV4_PAYLOAD_SHA256;
    if (b->hash) {
        memcpy(b->want, auth->payload_sha256, 32);
        b->ctx = EVP_MD_CTX_new();
        if (b->ctx == NULL || EVP_DigestInit_ex(b->ctx, EVP_sha256(), NULL) != 1) {
            dfs_sigv4_body_destroy(b);
            return NULL;
        }
    }
    return b;
}

void dfs_sigv4_body_update(dfs_sigv4_body *b, const void *data, size_t len)
{
    if (b->hash && !b->finished && len > 0)
        EVP_DigestUpdate(b->ctx, data, len);
}

int dfs_sigv4_body_finish(dfs_sigv4_body *b, struct dfs_s3err *err)
{
    if (!b->hash)
        return DFS_OK;
    if (b->finished)
        return b->result == DFS_OK ? DFS_OK
                                   : dfs_s3err_set(err, DFS_S3ERR_CONTENT_SHA256_MISMATCH, NULL);
    b->finished = true;
    uint8_t got[32];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(b->ctx, got, &n) != 1 || n != 32) {
        b->result = DFS_EINTERNAL;
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "SHA-256 failed");
    }
    if (CRYPTO_memcmp(got, b->want, 32) != 0) {
        char g[65], w[65];
        dfs_sigv4_hex(got, 32, g);
        dfs_sigv4_hex(b->want, 32, w);
        b->result = dfs_s3err_set(err, DFS_S3ERR_CONTENT_SHA256_MISMATCH, NULL);
        dfs_s3err_add_extra(err, "ClientComputedContentSHA256", w);
        dfs_s3err_add_extra(err, "S3ComputedContentSHA256", g);
        return b->result;
    }
    b->result = DFS_OK;
    return DFS_OK;
}

void dfs_sigv4_body_destroy(dfs_sigv4_body *b)
{
    if (b == NULL)
        return;
    EVP_MD_CTX_free(b->ctx);
    free(b);
}
