/*
 * Fuzz target: everything the S3 front end (gateway/s3/) reads from a client before any of it
 * reaches the cluster. The first byte picks what the rest is:
 *
 *   0  a request ("METHOD TARGET\n", "Name: value\n" lines, "\n", body): the signature check
 *      (as is, at the time of AWS's examples, with AWS's example key), request parsing with and
 *      without a virtual-host domain, and what the operations read from headers (metadata, copy
 *      source, conditions, content length, checksums, refused headers, dfs paths and listing
 *      prefixes)
 *   1  the same request signed here with the module's own canonical form, then verified: it must
 *      never be refused as SignatureDoesNotMatch, and with one signature digit changed it must
 *      never pass; the same for its presigned form
 *   2  an XML document: the strict parser, then every text it read written back by the XML writer
 *      and parsed again, and the three S3 request bodies (CompleteMultipartUpload, Delete,
 *      CreateBucketConfiguration)
 *   3  an aws-chunked body (next byte: payload kind and a slicing seed; then two bytes of
 *      x-amz-decoded-content-length), decoded in one slice and in pseudo-random slices, with
 *      AWS's example signing key and seed signature: both decodings must agree, byte for byte
 *   4  a description of chunks (sizes and fill bytes) from which a correctly signed aws-chunked
 *      body is built here: it must decode to exactly its data, in any slices
 *   5  what the server reads back from clients and the catalog (s3names.h): the rest as a
 *      continuation token (a key it decodes to must encode back to the same token), as an upload
 *      id and a part file name, and as stored headers (every pair read lies inside the input;
 *      find agrees with iteration)
 *
 * Broken promises abort: a refusal without an S3 code (and so a message), an accepted bucket name that
 * breaks S3's rules, a key past 1024 bytes or not UTF-8, a dfs path that is not canonical, a parse
 * tree with text XML cannot carry, XML text that does not survive writer and parser, chunked
 * decodings that depend on slicing, or decoded lengths other than declared.
 */
#include "common/err.h"
#include "common/path.h"
#include "common/utf8.h"
#include "gateway/s3/chunked.h"
#include "gateway/s3/s3cond.h"
#include "gateway/s3/s3err.h"
#include "gateway/s3/s3http.h"
#include "gateway/s3/s3names.h"
#include "gateway/s3/s3req.h"
#include "gateway/s3/s3sum.h"
#include "gateway/s3/s3xml.h"
#include "gateway/s3/sigv4.h"
#include "gateway/s3/xml.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AK     "AKIAIOSFODNN7EXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define T0     1369353600 /* 20130524T000000Z: the time of AWS's examples */
#define SEED   "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"

static void broken(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz: broken promise: %s: \"%s\"\n", what, detail != NULL ? detail : "");
    abort();
}

static void refused(int rc, const struct dfs_s3err *e, const char *where)
{
    if (rc == DFS_OK)
        return;
    /* A NULL message means the code's default one (s3err.h), which every code has. */
    if (e->code == DFS_S3ERR_NONE || e->code >= DFS_S3ERR_COUNT ||
        (e->message == NULL && dfs_s3err_default_message(e->code)[0] == '\0'))
        broken("a refusal without an S3 code and message", where);
    if (dfs_s3err_dfs_status(e->code) != rc && rc != DFS_ENOMEM)
        broken("a refusal whose status is not its code's", where);
}

static int lookup(void *arg, const char *id, const struct dfs_sigv4_scope *scope,
                  uint8_t key[DFS_SIGV4_KEY_LEN], int *role, char **errmsg)
{
    (void)arg;
    (void)errmsg;
    if (strcmp(id, AK) != 0)
        return DFS_ENOTFOUND;
    *role = 1;
    return dfs_sigv4_signing_key(SECRET, scope, key);
}

/* ---- Requests ---- */

struct out {
    uint8_t *p;
    size_t len, cap;
};

static int sink(void *arg, const uint8_t *data, size_t len)
{
    struct out *o = arg;
    if (len == 0)
        return DFS_OK;
    if (o->len + len > o->cap) {
        size_t c = (o->len + len) * 2 + 64;
        uint8_t *np = realloc(o->p, c);
        if (np == NULL)
            return DFS_ENOMEM;
        o->p = np;
        o->cap = c;
    }
    memcpy(o->p + o->len, data, len);
    o->len += len;
    return DFS_OK;
}

#define MAX_HEADERS 24

struct req {
    struct dfs_s3http_request r;
    struct dfs_s3http_header h[MAX_HEADERS + 4];
    char *buf; /* the input, split in place */
    const char *body;
    size_t blen;
};

/* Split "METHOD TARGET\nName: value\n...\n\nbody" (NUL bytes end fields early; fine). */
static bool split_request(const uint8_t *data, size_t size, struct req *q)
{
    memset(q, 0, sizeof *q);
    q->buf = malloc(size + 1);
    if (q->buf == NULL)
        return false;
    memcpy(q->buf, data, size);
    q->buf[size] = '\0';
    char *p = q->buf, *end = q->buf + size;
    char *nl = memchr(p, '\n', size);
    if (nl == NULL)
        return false;
    *nl = '\0';
    char *sp = strchr(p, ' ');
    if (sp == NULL)
        return false;
    *sp = '\0';
    q->r.method = p;
    char *target = sp + 1;
    char *qm = strchr(target, '?');
    if (qm != NULL)
        *qm++ = '\0';
    q->r.path = target;
    q->r.query = qm;
    q->r.headers = q->h;
    p = nl + 1;
    while (p < end) {
        char *e = memchr(p, '\n', (size_t)(end - p));
        if (e == NULL)
            e = end;
        *e = '\0';
        if (*p == '\0') {
            p = e + 1;
            break;
        }
        char *colon = strchr(p, ':');
        if (colon != NULL && q->r.nheaders < MAX_HEADERS) {
            *colon = '\0';
            char *v = colon + 1;
            while (*v == ' ')
                v++;
            q->h[q->r.nheaders].name = p;
            q->h[q->r.nheaders].value = v;
            q->r.nheaders++;
        }
        p = e + 1;
    }
    q->body = p < end ? p : end;
    q->blen = p < end ? (size_t)(end - p) : 0;
    return true;
}

static void check_parsed(const struct dfs_s3req *o)
{
    if (o->op < 0 || o->op >= DFS_S3REQ_OP_COUNT)
        broken("an operation out of range", "");
    if ((o->bucket == NULL) != (o->op == DFS_S3REQ_LIST_BUCKETS))
        broken("a bucket for ListBuckets, or none for another operation", dfs_s3req_op_name(o->op));
    if (o->bucket != NULL) {
        const char *why;
        if (!dfs_s3req_bucket_valid(o->bucket, &why))
            broken("an invalid bucket name accepted", o->bucket);
        size_t n = strlen(o->bucket);
        if (n < 3 || n > 63 || strspn(o->bucket, "abcdefghijklmnopqrstuvwxyz0123456789.-") != n)
            broken("a bucket name outside S3's alphabet accepted", o->bucket);
    }
    if (o->key != NULL) {
        size_t n = strlen(o->key);
        if (n == 0 || n > 1024 || !dfs_utf8_valid(o->key, n, NULL))
            broken("a key that is empty, too long or not UTF-8", o->key);
        char *path = NULL;
        struct dfs_s3err e = {0};
        int rc = dfs_s3req_object_path(o->bucket, o->key, &path, &e);
        refused(rc, &e, "object path");
        if (rc == DFS_OK) {
            char *canon = NULL;
            if (dfs_path_canon(path, &canon, NULL) != DFS_OK || strcmp(canon, path) != 0)
                broken("a dfs path that is not canonical", path);
            free(canon);
        }
        free(path);
        dfs_s3err_clear(&e);
    }
    if ((o->op == DFS_S3REQ_UPLOAD_PART || o->op == DFS_S3REQ_UPLOAD_PART_COPY) &&
        (o->part_number < 1 || o->part_number > 10000 || o->upload_id == NULL))
        broken("an UploadPart without a part number 1..10000 and an upload id", "");
    if (o->max > 1000)
        broken("a listing larger than 1000", "");
    if (o->bucket != NULL &&
        (o->op == DFS_S3REQ_LIST_OBJECTS || o->op == DFS_S3REQ_LIST_OBJECTS_V2)) {
        char *pre = NULL;
        bool none = false;
        if (dfs_s3req_list_prefix(o->bucket, o->prefix, &pre, &none) == DFS_OK && !none) {
            /* Every complete segment of a usable prefix is one a dfs path may have. */
            char *slash = strrchr(pre, '/');
            if (slash != NULL && slash > pre) {
                *slash = '\0';
                char *canon = NULL;
                if (dfs_path_canon(pre, &canon, NULL) != DFS_OK || strcmp(canon, pre) != 0)
                    broken("a listing prefix with segments no dfs path has", pre);
                free(canon);
            }
        }
        free(pre);
    }
}

static void request(const uint8_t *data, size_t size)
{
    struct req q;
    if (!split_request(data, size, &q)) {
        free(q.buf);
        return;
    }
    struct dfs_sigv4_config cfg = {.key = lookup};
    struct dfs_sigv4_auth auth;
    struct dfs_s3err e = {0};
    int rc = dfs_sigv4_verify(&cfg, &q.r, T0 + 60, &auth, &e);
    refused(rc, &e, "signature");
    if (rc == DFS_OK) {
        /* A verified request: its body too, as it would stream. */
        if (auth.payload >= DFS_SIGV4_PAYLOAD_STREAMING) {
            dfs_chunked *c = NULL;
            struct out o = {0};
            int frc = dfs_chunked_create(&auth, &q.r, &c, &e);
            for (size_t i = 0; frc == DFS_OK && i < q.blen; i += 7) {
                size_t len = q.blen - i < 7 ? q.blen - i : 7;
                frc = dfs_chunked_feed(c, q.body + i, len, sink, &o, &e);
            }
            if (frc == DFS_OK)
                frc = dfs_chunked_finish(c, &e);
            refused(frc, &e, "aws-chunked body");
            free(o.p);
            dfs_chunked_destroy(c);
        } else {
            dfs_sigv4_body *b = dfs_sigv4_body_create(&auth);
            if (b != NULL) {
                dfs_sigv4_body_update(b, q.body, q.blen);
                refused(dfs_sigv4_body_finish(b, &e), &e, "payload hash");
            }
            dfs_sigv4_body_destroy(b);
        }
    }
    dfs_sigv4_auth_clear(&auth);
    dfs_s3err_clear(&e);

    static const char *const domains[] = {NULL, "s3.example.com"};
    for (int d = 0; d < 2; d++) {
        struct dfs_s3req o;
        rc = dfs_s3req_parse(domains[d], &q.r, &o, &e);
        refused(rc, &e, "request");
        if (rc == DFS_OK) {
            check_parsed(&o);
            dfs_s3req_free(&o);
        } else if (o.bucket != NULL || o.key != NULL) {
            broken("a refused request left strings behind", "");
        }
        dfs_s3err_clear(&e);
    }

    struct dfs_s3req_meta m;
    rc = dfs_s3req_meta_parse(&q.r, &m, &e);
    refused(rc, &e, "metadata");
    if (rc == DFS_OK) {
        size_t user = 0;
        for (size_t i = 0; i < m.n; i++) {
            if (i > 0 && strcmp(m.e[i - 1].name, m.e[i].name) >= 0)
                broken("metadata not sorted, or a name twice", m.e[i].name);
            for (const char *c = m.e[i].name; *c != '\0'; c++) {
                if (*c >= 'A' && *c <= 'Z')
                    broken("a metadata name not lower-case", m.e[i].name);
            }
            if (strncmp(m.e[i].name, "x-amz-meta-", 11) == 0)
                user += strlen(m.e[i].name) - 11 + strlen(m.e[i].value);
        }
        if (user > DFS_S3REQ_META_MAX)
            broken("more user metadata than S3 allows", "");
        dfs_s3req_meta_free(&m);
    }
    dfs_s3err_clear(&e);

    char *sb = NULL, *sk = NULL;
    bool replace;
    rc = dfs_s3req_copy_source(&q.r, &sb, &sk, &replace, &e);
    refused(rc, &e, "copy source");
    if (rc == DFS_OK && (!dfs_s3req_bucket_valid(sb, NULL) || strlen(sk) == 0 ||
                         strlen(sk) > 1024 || !dfs_utf8_valid(sk, strlen(sk), NULL)))
        broken("a copy source with a bad bucket or key", sk);
    if (rc != DFS_OK && (sb != NULL || sk != NULL))
        broken("a refused copy source left strings behind", "");
    free(sb);
    free(sk);
    dfs_s3err_clear(&e);

    for (int copy = 0; copy < 2; copy++) {
        struct dfs_s3cond c;
        rc = dfs_s3cond_parse(&q.r, copy != 0, T0, &c, &e);
        refused(rc, &e, "conditions");
        if (rc == DFS_OK) {
            for (int mode = 0; mode < 3; mode++) {
                enum dfs_s3err_code r1 =
                    dfs_s3cond_eval(&c, (enum dfs_s3cond_mode)mode, true,
                                    "\"9e107d9d372bb6826bd81d3542a419d6\"", T0);
                if (r1 == DFS_S3ERR_NOT_MODIFIED && mode != DFS_S3COND_READ)
                    broken("a 304 for a write or a copy", "");
                (void)dfs_s3cond_eval(&c, (enum dfs_s3cond_mode)mode, false, "", 0);
            }
        }
        dfs_s3err_clear(&e);
    }
    bool has_sum;
    enum dfs_s3sum_algo algo;
    const char *sum_value;
    rc = dfs_s3sum_of_request(&q.r, &has_sum, &algo, &sum_value, &e);
    refused(rc, &e, "checksum");
    if (rc == DFS_OK && has_sum) {
        dfs_s3sum *sum = dfs_s3sum_create(algo);
        if (sum != NULL) {
            dfs_s3sum_update(sum, q.body, q.blen);
            refused(dfs_s3sum_check(sum, sum_value, &e), &e, "checksum check");
        }
        dfs_s3sum_destroy(sum);
    }
    dfs_s3err_clear(&e);
    refused(dfs_s3req_check_headers(&q.r, &e), &e, "headers");
    dfs_s3err_clear(&e);
    uint64_t len;
    for (int dl = 0; dl < 2; dl++) {
        rc = dfs_s3req_content_length(&q.r, dl != 0, &len, &e);
        refused(rc, &e, "content length");
        if (rc == DFS_OK && len > DFS_S3REQ_MAX_PUT_SIZE)
            broken("a body larger than one PUT may be", "");
        dfs_s3err_clear(&e);
    }
    free(q.buf);
}

/* ---- Signing round trip ---- */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void signed_request(const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    uint8_t pick = data[0];
    struct req q;
    if (!split_request(data + 1, size - 1, &q)) {
        free(q.buf);
        return;
    }
    /* Drop what this signer sets itself, then add it. */
    size_t n = 0;
    for (size_t i = 0; i < q.r.nheaders; i++) {
        const char *h = q.h[i].name;
        if (strcasecmp(h, "authorization") != 0 && strcasecmp(h, "x-amz-date") != 0 &&
            strcasecmp(h, "x-amz-content-sha256") != 0 && strcasecmp(h, "date") != 0)
            q.h[n++] = q.h[i];
    }
    q.r.nheaders = n;
    if (dfs_s3http_header(&q.r, "host") == NULL)
        q.h[q.r.nheaders++] = (struct dfs_s3http_header){"Host", "h"};
    q.h[q.r.nheaders++] = (struct dfs_s3http_header){"x-amz-date", "20130524T000000Z"};
    q.h[q.r.nheaders++] = (struct dfs_s3http_header){"x-amz-content-sha256", "UNSIGNED-PAYLOAD"};
    /* SignedHeaders: host, every x-amz-*, and the others `pick` chooses; sorted, lower-case. */
    char names[MAX_HEADERS + 4][64];
    size_t nn = 0;
    for (size_t i = 0; i < q.r.nheaders; i++) {
        const char *h = q.h[i].name;
        size_t hl = strlen(h);
        bool want =
            strcasecmp(h, "host") == 0 || strncasecmp(h, "x-amz-", 6) == 0 || (pick >> (i % 8) & 1);
        if (!want || hl == 0 || hl >= 64 || strcspn(h, ";, \t") != hl)
            continue;
        char low[64];
        for (size_t k = 0; k <= hl; k++)
            low[k] = (char)(h[k] >= 'A' && h[k] <= 'Z' ? h[k] - 'A' + 'a' : h[k]);
        bool dup = false;
        for (size_t k = 0; k < nn && !dup; k++)
            dup = strcmp(names[k], low) == 0;
        if (!dup)
            memcpy(names[nn++], low, hl + 1);
    }
    qsort(names, nn, sizeof names[0], name_cmp);
    char list[(MAX_HEADERS + 4) * 65] = "";
    for (size_t k = 0; k < nn; k++) {
        if (k > 0)
            strcat(list, ";");
        strcat(list, names[k]);
    }
    struct dfs_sigv4_scope scope = {"20130524", "us-east-1", "s3"};
    uint8_t key[32];
    char *creq = NULL;
    struct dfs_s3err e = {0};
    if (nn == 0 || dfs_sigv4_signing_key(SECRET, &scope, key) != DFS_OK ||
        dfs_sigv4_canonical_request(&q.r, list, "UNSIGNED-PAYLOAD", false, &creq, &e) != DFS_OK) {
        dfs_s3err_clear(&e);
        free(q.buf);
        return;
    }
    char *sts =
        dfs_sigv4_string_to_sign("20130524T000000Z", "20130524/us-east-1/s3/aws4_request", creq);
    char sig[65];
    dfs_sigv4_hmac_hex(key, sts, strlen(sts), sig);
    char authz[4096];
    snprintf(authz, sizeof authz,
             "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request, "
             "SignedHeaders=%s, Signature=%s",
             list, sig);
    q.h[q.r.nheaders++] = (struct dfs_s3http_header){"Authorization", authz};
    struct dfs_sigv4_config cfg = {.key = lookup};
    struct dfs_sigv4_auth auth;
    int rc = dfs_sigv4_verify(&cfg, &q.r, T0, &auth, &e);
    if (rc != DFS_OK && e.code == DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH)
        broken("a correctly signed request refused as SignatureDoesNotMatch", creq);
    refused(rc, &e, "signed request");
    dfs_s3err_clear(&e);
    /* One digit changed: never accepted. */
    size_t at = strlen(authz) - 1 - (pick % 64);
    authz[at] = authz[at] == '0' ? '1' : '0';
    if (dfs_sigv4_verify(&cfg, &q.r, T0, &auth, &e) == DFS_OK)
        broken("a request with a wrong signature accepted", authz);
    dfs_s3err_clear(&e);
    free(creq);
    free(sts);
    dfs_sigv4_auth_clear(&auth);
    free(q.buf);
}

/* ---- XML ---- */

static void walk(const dfs_xml_node *n, int depth)
{
    if (depth > 64)
        broken("a tree deeper than its limit", "");
    for (; n != NULL; n = dfs_xml_next(n)) {
        size_t len;
        const char *t = dfs_xml_content(n, &len);
        if (dfs_xml_name(n)[0] == '\0')
            broken("an element without a name", "");
        if (strlen(t) != len || !dfs_utf8_valid(t, len, NULL))
            broken("element text with a NUL or not UTF-8", dfs_xml_name(n));
        /* What was read can be written, and reads back the same. */
        dfs_xml_writer *w = dfs_xml_writer_create();
        if (w == NULL)
            return;
        dfs_xml_open(w, "R", NULL);
        dfs_xml_text_len(w, "T", t, len);
        dfs_xml_close(w);
        char *doc = NULL;
        size_t dlen;
        if (dfs_xml_writer_finish(w, &doc, &dlen, NULL) != DFS_OK)
            broken("parsed text the writer refuses", t);
        dfs_xml_writer_destroy(w);
        struct dfs_xml_limits lim = {1 << 24, 4, 4};
        dfs_xml_doc *d = NULL;
        if (dfs_xml_parse(doc, dlen, &lim, &d, NULL) != DFS_OK)
            broken("the writer's document refused by the parser", doc);
        size_t back;
        const char *bt = dfs_xml_content(dfs_xml_first_child(dfs_xml_root(d)), &back);
        if (back != len || memcmp(bt, t, len) != 0)
            broken("text changed by writing and reading it", t);
        dfs_xml_doc_destroy(d);
        free(doc);
        walk(dfs_xml_first_child(n), depth + 1);
    }
}

static void xml(const uint8_t *data, size_t size)
{
    struct dfs_xml_limits lim = {DFS_S3XML_MAX_BODY, 16, 4096};
    dfs_xml_doc *d = NULL;
    char *msg = NULL;
    int rc = dfs_xml_parse((const char *)data, size, &lim, &d, &msg);
    if (rc == DFS_OK) {
        walk(dfs_xml_root(d), 1);
        dfs_xml_doc_destroy(d);
    } else if (msg == NULL) {
        broken("XML refused without a message", "");
    }
    free(msg);

    struct dfs_s3err e = {0};
    struct dfs_s3xml_complete c;
    rc = dfs_s3xml_parse_complete((const char *)data, size, &c, &e);
    refused(rc, &e, "CompleteMultipartUpload");
    if (rc == DFS_OK) {
        if (c.n < 1 || c.n > 10000)
            broken("a part count outside 1..10000", "");
        for (size_t i = 0; i < c.n; i++) {
            if (c.parts[i].number < 1 || c.parts[i].number > 10000 ||
                (i > 0 && c.parts[i].number <= c.parts[i - 1].number))
                broken("parts out of range or order", c.parts[i].etag);
        }
        dfs_s3xml_complete_free(&c);
    }
    dfs_s3err_clear(&e);
    struct dfs_s3xml_delete del;
    rc = dfs_s3xml_parse_delete((const char *)data, size, &del, &e);
    refused(rc, &e, "Delete");
    if (rc == DFS_OK) {
        if (del.n < 1 || del.n > 1000)
            broken("a delete of no objects or more than 1000", "");
        for (size_t i = 0; i < del.n; i++) {
            size_t kl = strlen(del.keys[i]);
            if (kl == 0 || kl > 1024)
                broken("a delete key empty or past 1024 bytes", del.keys[i]);
        }
        dfs_s3xml_delete_free(&del);
    }
    dfs_s3err_clear(&e);
    char *loc = NULL;
    rc = dfs_s3xml_parse_create_bucket((const char *)data, size, &loc, &e);
    refused(rc, &e, "CreateBucketConfiguration");
    free(loc);
    dfs_s3err_clear(&e);
}

/* ---- aws-chunked ---- */

static void example_auth(struct dfs_sigv4_auth *a, enum dfs_sigv4_payload kind)
{
    memset(a, 0, sizeof *a);
    a->payload = kind;
    struct dfs_sigv4_scope scope = {"20130524", "us-east-1", "s3"};
    dfs_sigv4_signing_key(SECRET, &scope, a->signing_key);
    strcpy(a->amz_date, "20130524T000000Z");
    strcpy(a->scope, "20130524/us-east-1/s3/aws4_request");
    strcpy(a->seed_signature, SEED);
}

/* Decode body in slices (step 0: one slice; else pseudo-random from seed). */
static int decode(const struct dfs_sigv4_auth *a, uint64_t declared, const uint8_t *body,
                  size_t len, unsigned seed, struct out *o, enum dfs_s3err_code *code)
{
    char dl[24];
    snprintf(dl, sizeof dl, "%llu", (unsigned long long)declared);
    struct dfs_s3http_header h[] = {
        {"x-amz-decoded-content-length", dl},
        {"x-amz-trailer", "x-amz-checksum-crc32, x-amz-checksum-sha256"},
    };
    struct dfs_s3http_request r = {"PUT", "/b/k", NULL, h, 2};
    dfs_chunked *c = NULL;
    struct dfs_s3err e = {0};
    memset(o, 0, sizeof *o);
    int rc = dfs_chunked_create(a, &r, &c, &e);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; rc == DFS_OK && i < len;) {
        size_t n = len - i;
        if (seed != 0) {
            s = s * 1103515245u + 12345u;
            size_t k = 1 + (s >> 16) % 97;
            n = n < k ? n : k;
        }
        rc = dfs_chunked_feed(c, body + i, n, sink, o, &e);
        refused(rc, &e, "aws-chunked feed");
        i += n;
    }
    if (rc == DFS_OK) {
        rc = dfs_chunked_finish(c, &e);
        refused(rc, &e, "aws-chunked finish");
        if (rc == DFS_OK && (dfs_chunked_decoded(c) != declared || o->len != declared))
            broken("an aws-chunked body accepted with another length than declared", "");
    }
    *code = rc == DFS_OK ? DFS_S3ERR_NONE : e.code;
    dfs_s3err_clear(&e);
    dfs_chunked_destroy(c);
    return rc;
}

static void chunked(const uint8_t *data, size_t size)
{
    if (size < 3)
        return;
    static const enum dfs_sigv4_payload kinds[] = {DFS_SIGV4_PAYLOAD_STREAMING,
                                                   DFS_SIGV4_PAYLOAD_STREAMING_TRAILER,
                                                   DFS_SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER};
    struct dfs_sigv4_auth a;
    example_auth(&a, kinds[data[0] % 3]);
    unsigned seed = data[0] / 3 + 1;
    uint64_t declared = (uint64_t)data[1] << 8 | data[2];
    if (data[0] % 3 == 0 && declared == 0xFFFF)
        declared = 66560; /* AWS's example */
    struct out o1, o2;
    enum dfs_s3err_code c1, c2;
    int r1 = decode(&a, declared, data + 3, size - 3, 0, &o1, &c1);
    int r2 = decode(&a, declared, data + 3, size - 3, seed, &o2, &c2);
    /* The decoder reads a byte stream: how it is sliced changes nothing but the sink's calls. */
    if ((r1 == DFS_OK) != (r2 == DFS_OK))
        broken("an aws-chunked body accepted in one slicing and refused in another", "");
    if (r1 == DFS_OK && (o1.len != o2.len || (o1.len > 0 && memcmp(o1.p, o2.p, o1.len) != 0)))
        broken("an aws-chunked body decoded differently in another slicing", "");
    if (r1 != DFS_OK && c1 != c2)
        broken("an aws-chunked body refused for different reasons in another slicing", "");
    free(o1.p);
    free(o2.p);
}

/* A correctly signed body built from a description: pairs (size byte, fill byte). */
static void chunked_built(const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    struct dfs_sigv4_auth a;
    bool trailer = data[0] & 1;
    example_auth(&a, trailer ? DFS_SIGV4_PAYLOAD_STREAMING_TRAILER : DFS_SIGV4_PAYLOAD_STREAMING);
    struct out body = {0}, want = {0};
    char prev[65];
    strcpy(prev, SEED);
    size_t nchunks = (size - 1) / 2;
    for (size_t i = 0; i <= nchunks; i++) {
        /* Every chunk but the last with data is 8 KiB or more, as S3 requires. */
        size_t n = i == nchunks ? 0 : 8192 + data[1 + 2 * i] * 13;
        if (i + 1 == nchunks)
            n = 1 + data[1 + 2 * i]; /* the last with data: any size but 0, which ends the body */
        uint8_t fill = i == nchunks ? 0 : data[2 + 2 * i];
        uint8_t *d = malloc(n + 1);
        memset(d, fill, n);
        uint8_t h[32];
        SHA256(d, n, h);
        char sig[65];
        dfs_sigv4_chunk_signature(&a, prev, h, false, sig);
        char head[100];
        int hl = snprintf(head, sizeof head, "%zx;chunk-signature=%s\r\n", n, sig);
        sink(&body, (const uint8_t *)head, (size_t)hl);
        sink(&body, d, n);
        if (n > 0)
            sink(&body, (const uint8_t *)"\r\n", 2);
        sink(&want, d, n);
        memcpy(prev, sig, 65);
        free(d);
    }
    if (trailer) {
        /* Both trailers the decoder's request declares, then their signature. */
        const char *t = "x-amz-checksum-crc32:AAAAAA==\n"
                        "x-amz-checksum-sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n";
        uint8_t h[32];
        SHA256((const uint8_t *)t, strlen(t), h);
        char sig[65];
        dfs_sigv4_chunk_signature(&a, prev, h, true, sig);
        char lines[300];
        int ll = snprintf(lines, sizeof lines,
                          "x-amz-checksum-crc32:AAAAAA==\r\n"
                          "x-amz-checksum-sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\r\n"
                          "x-amz-trailer-signature:%s\r\n",
                          sig);
        sink(&body, (const uint8_t *)lines, (size_t)ll);
    }
    sink(&body, (const uint8_t *)"\r\n", 2);
    for (unsigned seed = 0; seed < 3; seed++) {
        struct out o;
        enum dfs_s3err_code code;
        if (decode(&a, want.len, body.p, body.len, seed, &o, &code) != DFS_OK)
            broken("a correctly signed aws-chunked body refused", dfs_s3err_name(code));
        if (o.len != want.len || (o.len > 0 && memcmp(o.p, want.p, o.len) != 0))
            broken("a correctly signed aws-chunked body decoded wrong", "");
        free(o.p);
    }
    free(body.p);
    free(want.p);
}

/* Selector 5: s3names over arbitrary bytes. */
static void names(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    char *key = dfs_s3names_token_decode(text);
    if (key != NULL) {
        if (strlen(key) == 0 || strlen(key) > DFS_S3REQ_KEY_MAX)
            abort();
        char *again = dfs_s3names_token_encode(key);
        if (again == NULL || strcmp(again, text) != 0)
            abort(); /* a token has one key and a key one token */
        free(again);
        free(key);
    }
    (void)dfs_s3names_upload_id_valid(text);
    uint32_t number = 0;
    uint8_t md5[16];
    if (dfs_s3names_part_parse(text, &number, md5) && (number < 1 || number > DFS_S3REQ_MAX_PART))
        abort();
    size_t pos = 0, last = 0;
    const char *n, *v;
    while (dfs_s3names_meta_next(data, size, &pos, &n, &v)) {
        const char *base = (const char *)data;
        if (n < base + last || v <= n || v + strlen(v) >= base + size || pos > size || pos <= last)
            abort();
        const char *f = dfs_s3names_meta_find(data, size, n);
        if (f == NULL)
            abort(); /* the first pair of that name is found */
        last = pos;
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    switch (data[0] % 6) {
    case 0:
        request(data + 1, size - 1);
        break;
    case 1:
        signed_request(data + 1, size - 1);
        break;
    case 2:
        xml(data + 1, size - 1);
        break;
    case 3:
        chunked(data + 1, size - 1);
        break;
    case 4:
        if (size <= 1 + 2 * 16)
            chunked_built(data + 1, size - 1);
        break;
    default:
        names(data + 1, size - 1);
        break;
    }
    return 0;
}
