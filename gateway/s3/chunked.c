/* aws-chunked request bodies: decoded as they arrive, each chunk's signature checked. */
#include "gateway/s3/chunked.h"

#include "common/err.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SIG_PREFIX  "chunk-signature="
#define TRAILER_SIG "x-amz-trailer-signature"

enum state {
    S_HEADER,  /* reading a chunk header line */
    S_DATA,    /* inside a chunk's data */
    S_DATA_CR, /* the CR after a chunk's data */
    S_DATA_LF, /* the LF after it */
    S_TRAILER, /* after the last chunk: trailer lines, then an empty line */
    S_DONE,
    S_FAILED,
};

struct trailer {
    char *name; /* lower-case */
    char *value;
};

struct dfs_chunked {
    struct dfs_sigv4_auth auth; /* key, date, scope: for the chain */
    bool signed_chunks, trailers, signed_trailer;
    enum state st;
    int status; /* the first failure: what every later call answers */
    uint64_t want, got;
    uint64_t remaining; /* data left in the current chunk */
    uint64_t last_size; /* the previous chunk with data */
    bool have_last;
    char prev_sig[DFS_SIGV4_HEX_LEN + 1];  /* the chain: seed, then each chunk's */
    char chunk_sig[DFS_SIGV4_HEX_LEN + 1]; /* what the current chunk claims */
    EVP_MD_CTX *md;
    char line[DFS_CHUNKED_MAX_LINE + 2]; /* the current line, CR LF included */
    size_t linelen;
    char **declared; /* x-amz-trailer's names, lower-case */
    size_t ndeclared;
    struct trailer tr[DFS_CHUNKED_MAX_TRAILERS];
    size_t ntr;
    bool trailer_signed; /* x-amz-trailer-signature seen and good */
    char *canon;         /* "name:value\n" of each trailer, for its signature */
    size_t canon_len;
};

static int fail(dfs_chunked *c, struct dfs_s3err *err, enum dfs_s3err_code code, const char *msg)
{
    c->st = S_FAILED;
    c->status = dfs_s3err_set(err, code, "aws-chunked: %s", msg);
    return c->status;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (*s == '\0' || strlen(s) > 19)
        return false;
    uint64_t v = 0;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        return false;
    *out = v;
    return true;
}

static void lower(char *s)
{
    for (; *s != '\0'; s++) {
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
    }
}

/* x-amz-trailer: names separated by ',', blanks around them ignored. */
static int parse_declared(dfs_chunked *c, const char *v, struct dfs_s3err *err)
{
    const char *p = v;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ", \t");
        if (n == 0)
            break;
        if (c->ndeclared == DFS_CHUNKED_MAX_TRAILERS || n > 128)
            return dfs_s3err_set(err, DFS_S3ERR_INVALID_REQUEST,
                                 "x-amz-trailer names more than %d trailers, or a long one",
                                 DFS_CHUNKED_MAX_TRAILERS);
        char *name = strndup(p, n);
        if (name == NULL)
            return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
        lower(name);
        c->declared[c->ndeclared++] = name;
        p += n;
    }
    return DFS_OK;
}

int dfs_chunked_create(const struct dfs_sigv4_auth *auth, const struct dfs_s3http_request *req,
                       dfs_chunked **out, struct dfs_s3err *err)
{
    if (auth->payload != DFS_SIGV4_PAYLOAD_STREAMING &&
        auth->payload != DFS_SIGV4_PAYLOAD_STREAMING_TRAILER &&
        auth->payload != DFS_SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER)
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR,
                             "aws-chunked: the request's payload is not streamed");
    const char *dl, *tr;
    int rc = dfs_s3http_header_once(req, "x-amz-decoded-content-length", &dl, err);
    if (rc == DFS_OK)
        rc = dfs_s3http_header_once(req, "x-amz-trailer", &tr, err);
    if (rc != DFS_OK)
        return rc;
    uint64_t want;
    if (dl == NULL)
        return dfs_s3err_set(err, DFS_S3ERR_MISSING_CONTENT_LENGTH,
                             "an aws-chunked body needs x-amz-decoded-content-length");
    if (!parse_u64(dl, &want))
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT,
                             "x-amz-decoded-content-length is not a byte count");
    dfs_chunked *c = calloc(1, sizeof *c);
    if (c == NULL)
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    c->auth = *auth;
    c->want = want;
    c->signed_chunks = auth->payload != DFS_SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    c->trailers = auth->payload != DFS_SIGV4_PAYLOAD_STREAMING;
    c->signed_trailer = auth->payload == DFS_SIGV4_PAYLOAD_STREAMING_TRAILER;
    memcpy(c->prev_sig, auth->seed_signature, sizeof c->prev_sig);
    c->declared = calloc(DFS_CHUNKED_MAX_TRAILERS, sizeof *c->declared);
    c->md = EVP_MD_CTX_new();
    if (c->declared == NULL || c->md == NULL) {
        dfs_chunked_destroy(c);
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    }
    if (c->trailers && tr != NULL) {
        rc = parse_declared(c, tr, err);
        if (rc != DFS_OK) {
            dfs_chunked_destroy(c);
            return rc;
        }
    }
    c->st = S_HEADER;
    *out = c;
    return DFS_OK;
}

void dfs_chunked_destroy(dfs_chunked *c)
{
    if (c == NULL)
        return;
    OPENSSL_cleanse(&c->auth, sizeof c->auth);
    EVP_MD_CTX_free(c->md);
    for (size_t i = 0; c->declared != NULL && i < c->ndeclared; i++)
        free(c->declared[i]);
    free(c->declared);
    for (size_t i = 0; i < c->ntr; i++) {
        free(c->tr[i].name);
        free(c->tr[i].value);
    }
    free(c->canon);
    free(c);
}

uint64_t dfs_chunked_decoded(const dfs_chunked *c)
{
    return c->got;
}

const char *dfs_chunked_trailer(const dfs_chunked *c, const char *name)
{
    for (size_t i = 0; i < c->ntr; i++) {
        if (strcasecmp(c->tr[i].name, name) == 0)
            return c->tr[i].value;
    }
    return NULL;
}

static bool is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* The signature of data hashed so far (or of nothing) against what the chunk claimed. */
static int check_chunk(dfs_chunked *c, struct dfs_s3err *err)
{
    uint8_t h[32];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(c->md, h, &n) != 1 || n != 32)
        return fail(c, err, DFS_S3ERR_INTERNAL_ERROR, "SHA-256 failed");
    char want[DFS_SIGV4_HEX_LEN + 1];
    if (dfs_sigv4_chunk_signature(&c->auth, c->prev_sig, h, false, want) != DFS_OK)
        return fail(c, err, DFS_S3ERR_INTERNAL_ERROR, "HMAC-SHA256 failed");
    if (!dfs_sigv4_signature_equal(want, c->chunk_sig)) {
        c->st = S_FAILED;
        c->status = dfs_s3err_set(err, DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH,
                                  "aws-chunked: the signature of the chunk ending at payload "
                                  "byte %llu does not match",
                                  (unsigned long long)c->got);
        return c->status;
    }
    memcpy(c->prev_sig, want, sizeof c->prev_sig);
    return DFS_OK;
}

/* A chunk header line (CR LF removed): hex-size [; extensions]. */
static int chunk_header(dfs_chunked *c, char *line, struct dfs_s3err *err)
{
    size_t nd = 0;
    uint64_t size = 0;
    while (is_hex(line[nd])) {
        if (nd == 16)
            return fail(c, err, DFS_S3ERR_INVALID_REQUEST, "a chunk size of more than 16 digits");
        char ch = line[nd];
        size = size << 4 | (uint64_t)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
        nd++;
    }
    if (nd == 0)
        return fail(c, err, DFS_S3ERR_INVALID_REQUEST, "a chunk header without a hex size");
    const char *ext = line + nd;
    if (c->signed_chunks) {
        size_t pl = strlen(SIG_PREFIX);
        if (ext[0] != ';' || strncmp(ext + 1, SIG_PREFIX, pl) != 0 ||
            strlen(ext + 1 + pl) != DFS_SIGV4_HEX_LEN)
            return fail(c, err, DFS_S3ERR_INVALID_REQUEST,
                        "a signed chunk header must read SIZE;chunk-signature=SIGNATURE");
        const char *sig = ext + 1 + pl;
        for (int i = 0; i < DFS_SIGV4_HEX_LEN; i++) {
            if (!is_hex(sig[i]))
                return fail(c, err, DFS_S3ERR_INVALID_REQUEST, "a chunk signature that is not hex");
        }
        memcpy(c->chunk_sig, sig, sizeof c->chunk_sig);
    } else if (ext[0] != '\0' && ext[0] != ';') {
        return fail(c, err, DFS_S3ERR_INVALID_REQUEST, "a chunk size that is not hex");
    }
    if (size > c->want - c->got)
        return fail(c, err, DFS_S3ERR_INVALID_REQUEST,
                    "the chunks hold more than x-amz-decoded-content-length");
    if (c->signed_chunks) {
        if (size > 0 && c->have_last && c->last_size < DFS_CHUNKED_MIN_SIGNED)
            return fail(c, err, DFS_S3ERR_INVALID_CHUNK_SIZE,
                        "only the last chunk may be smaller than 8192 bytes");
        if (EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1)
            return fail(c, err, DFS_S3ERR_INTERNAL_ERROR, "SHA-256 failed");
    }
    if (size == 0) {
        if (c->got != c->want) {
            c->st = S_FAILED;
            c->status = dfs_s3err_set(err, DFS_S3ERR_INCOMPLETE_BODY,
                                      "aws-chunked: the chunks hold %llu bytes, "
                                      "x-amz-decoded-content-length says %llu",
                                      (unsigned long long)c->got, (unsigned long long)c->want);
            return c->status;
        }
        if (c->signed_chunks && check_chunk(c, err) != DFS_OK)
            return c->status;
        c->st = S_TRAILER;
        return DFS_OK;
    }
    c->last_size = size;
    c->have_last = true;
    c->remaining = size;
    c->st = S_DATA;
    return DFS_OK;
}

static int add_canon(dfs_chunked *c, const char *name, const char *value)
{
    size_t add = strlen(name) + 1 + strlen(value) + 1;
    char *n = realloc(c->canon, c->canon_len + add + 1);
    if (n == NULL)
        return DFS_ENOMEM;
    c->canon = n;
    memcpy(c->canon + c->canon_len, name, strlen(name));
    c->canon_len += strlen(name);
    c->canon[c->canon_len++] = ':';
    memcpy(c->canon + c->canon_len, value, strlen(value));
    c->canon_len += strlen(value);
    c->canon[c->canon_len++] = '\n';
    c->canon[c->canon_len] = '\0';
    return DFS_OK;
}

/* A line after the last chunk (CR LF removed): a trailer, the trailer signature, or the end. */
static int trailer_line(dfs_chunked *c, char *line, struct dfs_s3err *err)
{
    if (line[0] == '\0') {
        for (size_t d = 0; d < c->ndeclared; d++) {
            if (dfs_chunked_trailer(c, c->declared[d]) == NULL)
                return fail(c, err, DFS_S3ERR_INVALID_REQUEST,
                            "a trailer named in x-amz-trailer was not sent");
        }
        if (c->signed_trailer && !c->trailer_signed)
            return fail(c, err, DFS_S3ERR_INVALID_REQUEST,
                        "the trailers end without x-amz-trailer-signature");
        c->st = S_DONE;
        return DFS_OK;
    }
    if (!c->trailers)
        return fail(c, err, DFS_S3ERR_INVALID_REQUEST,
                    "the last chunk must be followed by an empty line");
    if (c->trailer_signed)
        return fail(c, err, DFS_S3ERR_INVALID_REQUEST, "a trailer after x-amz-trailer-signature");
    char *colon = strchr(line, ':');
    if (colon == NULL || colon == line)
        return fail(c, err, DFS_S3ERR_INVALID_REQUEST, "a trailer line without a name and ':'");
    *colon = '\0';
    for (char *p = line; *p != '\0'; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch >= 0x7f)
            return fail(c, err, DFS_S3ERR_INVALID_REQUEST, "a trailer name that is not a token");
    }
    lower(line);
    char *value = colon + 1;
    while (*value == ' ' || *value == '\t')
        value++;
    char *end = value + strlen(value);
    while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    if (strcmp(line, TRAILER_SIG) == 0) {
        if (!c->signed_trailer)
            return fail(c, err, DFS_S3ERR_INVALID_REQUEST,
                        "x-amz-trailer-signature in an unsigned body");
        bool ok = strlen(value) == DFS_SIGV4_HEX_LEN;
        for (size_t i = 0; ok && i < DFS_SIGV4_HEX_LEN; i++)
            ok = is_hex(value[i]);
        if (!ok)
            return fail(c, err, DFS_S3ERR_INVALID_REQUEST, "a trailer signature that is not hex");
        uint8_t h[32];
        unsigned int n = 0;
        char want[DFS_SIGV4_HEX_LEN + 1];
        if (EVP_Digest(c->canon != NULL ? c->canon : "", c->canon_len, h, &n, EVP_sha256(), NULL) !=
                1 ||
            dfs_sigv4_chunk_signature(&c->auth, c->prev_sig, h, true, want) != DFS_OK)
            return fail(c, err, DFS_S3ERR_INTERNAL_ERROR, "HMAC-SHA256 failed");
        if (!dfs_sigv4_signature_equal(want, value))
            return fail(c, err, DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH,
                        "the trailer signature does not match");
        c->trailer_signed = true;
        return DFS_OK;
    }
    bool declared = false;
    for (size_t d = 0; d < c->ndeclared && !declared; d++)
        declared = strcmp(c->declared[d], line) == 0;
    if (!declared)
        return fail(c, err, DFS_S3ERR_INVALID_REQUEST,
                    "a trailer that x-amz-trailer does not name");
    if (dfs_chunked_trailer(c, line) != NULL)
        return fail(c, err, DFS_S3ERR_INVALID_REQUEST, "a trailer sent twice");
    if (c->ntr == DFS_CHUNKED_MAX_TRAILERS)
        return fail(c, err, DFS_S3ERR_INVALID_REQUEST, "too many trailers");
    struct trailer *t = &c->tr[c->ntr];
    t->name = strdup(line);
    t->value = strdup(value);
    if (t->name == NULL || t->value == NULL || add_canon(c, line, value) != DFS_OK) {
        free(t->name);
        free(t->value);
        t->name = t->value = NULL;
        return fail(c, err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    }
    c->ntr++;
    return DFS_OK;
}

/*
 * Collect one CR LF-terminated line from data[*i..len); once whole, hand it (without CR LF) to
 * the state's line handler.
 */
static int take_line(dfs_chunked *c, const uint8_t *data, size_t len, size_t *i,
                     struct dfs_s3err *err)
{
    while (*i < len) {
        char ch = (char)data[(*i)++];
        if (ch == '\n') {
            if (c->linelen == 0 || c->line[c->linelen - 1] != '\r')
                return fail(c, err, DFS_S3ERR_INVALID_REQUEST, "a line that ends in LF, not CR LF");
            c->line[--c->linelen] = '\0';
            c->linelen = 0;
            return c->st == S_HEADER ? chunk_header(c, c->line, err)
                                     : trailer_line(c, c->line, err);
        }
        if (ch == '\0' || (c->linelen > 0 && c->line[c->linelen - 1] == '\r'))
            return fail(c, err, DFS_S3ERR_INVALID_REQUEST, "a NUL or a stray CR in a line");
        if (c->linelen == DFS_CHUNKED_MAX_LINE)
            return fail(c, err, DFS_S3ERR_INVALID_REQUEST,
                        "a chunk header or trailer line longer than 1024 bytes");
        c->line[c->linelen++] = ch;
    }
    return DFS_OK;
}

int dfs_chunked_feed(dfs_chunked *c, const void *data, size_t len, dfs_chunked_sink sink, void *arg,
                     struct dfs_s3err *err)
{
    const uint8_t *d = data;
    size_t i = 0;
    while (i < len) {
        switch (c->st) {
        case S_FAILED:
            return dfs_s3err_set(err, DFS_S3ERR_INVALID_REQUEST,
                                 "aws-chunked: the body already failed");
        case S_DONE:
            return fail(c, err, DFS_S3ERR_INVALID_REQUEST, "data after the end of the body");
        case S_HEADER:
        case S_TRAILER:
            if (take_line(c, d, len, &i, err) != DFS_OK)
                return c->status;
            break;
        case S_DATA: {
            size_t n = len - i;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            if (c->signed_chunks && EVP_DigestUpdate(c->md, d + i, n) != 1)
                return fail(c, err, DFS_S3ERR_INTERNAL_ERROR, "SHA-256 failed");
            int rc = sink(arg, d + i, n);
            if (rc != DFS_OK) {
                c->st = S_FAILED;
                c->status = rc;
                dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR,
                              "aws-chunked: the body's consumer failed");
                return rc;
            }
            i += n;
            c->got += n;
            c->remaining -= n;
            if (c->remaining == 0) {
                if (c->signed_chunks && check_chunk(c, err) != DFS_OK)
                    return c->status;
                c->st = S_DATA_CR;
            }
            break;
        }
        case S_DATA_CR:
        case S_DATA_LF:
            if (d[i] != (c->st == S_DATA_CR ? '\r' : '\n'))
                return fail(c, err, DFS_S3ERR_INVALID_REQUEST,
                            "a chunk's data is not followed by CR LF");
            i++;
            c->st = c->st == S_DATA_CR ? S_DATA_LF : S_HEADER;
            break;
        }
    }
    return DFS_OK;
}

int dfs_chunked_finish(dfs_chunked *c, struct dfs_s3err *err)
{
    if (c->st == S_FAILED)
        return dfs_s3err_set(err, DFS_S3ERR_INVALID_REQUEST,
                             "aws-chunked: the body already failed");
    if (c->st != S_DONE) {
        c->st = S_FAILED;
        c->status = dfs_s3err_set(err, DFS_S3ERR_INCOMPLETE_BODY,
                                  "aws-chunked: the body ends after %llu of %llu payload bytes, "
                                  "before its last chunk and final CR LF",
                                  (unsigned long long)c->got, (unsigned long long)c->want);
        return c->status;
    }
    return DFS_OK;
}
