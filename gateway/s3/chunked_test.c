/* Tests for the aws-chunked decoder: AWS's published examples, slicing, and malformed bodies. */
#include "gateway/s3/chunked.h"

#include "common/err.h"

#include <openssl/sha.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define AK     "AKIAIOSFODNN7EXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define T0     1369353600 /* 20130524T000000Z */

static int lookup(void *arg, const char *id, const struct dfs_sigv4_scope *scope,
                  uint8_t key[DFS_SIGV4_KEY_LEN], int *role, char **errmsg)
{
    (void)arg;
    (void)errmsg;
    *role = 1;
    return strcmp(id, AK) == 0 ? dfs_sigv4_signing_key(SECRET, scope, key) : DFS_ENOTFOUND;
}

/* A growable byte buffer: what the sink received, or a body being built. */
struct buf {
    uint8_t *p;
    size_t len, cap;
    int fail_after; /* sink: fail once this many bytes are in (0: never) */
};

static void put(struct buf *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static int sink(void *arg, const uint8_t *data, size_t len)
{
    struct buf *b = arg;
    put(b, data, len);
    if (b->fail_after > 0 && b->len >= (size_t)b->fail_after)
        return DFS_ENOSPC;
    return DFS_OK;
}

/* The documented chunked PUT (64 KiB + 1 KiB of 'a'), signed headers as AWS shows them. */
static struct dfs_s3http_header example_headers[] = {
    {"Host", "s3.amazonaws.com"},
    {"x-amz-date", "20130524T000000Z"},
    {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
    {"x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"},
    {"Content-Encoding", "aws-chunked"},
    {"x-amz-decoded-content-length", "66560"},
    {"Content-Length", "66824"},
    {"Authorization",
     "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,SignedHeaders="
     "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
     "x-amz-decoded-content-length;x-amz-storage-class,"
     "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"},
};

static struct dfs_s3http_request example_request = {
    "PUT", "/examplebucket/chunkObject.txt", NULL, example_headers,
    sizeof example_headers / sizeof example_headers[0]};

#define SIG1 "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
#define SIG2 "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
#define SIG3 "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"

static void example_body(struct buf *b, const char *s1, const char *s2, const char *s3)
{
    static char a[65536];
    memset(a, 'a', sizeof a);
    memset(b, 0, sizeof *b);
    puts_(b, "10000;chunk-signature=");
    puts_(b, s1);
    puts_(b, "\r\n");
    put(b, a, 65536);
    puts_(b, "\r\n400;chunk-signature=");
    puts_(b, s2);
    puts_(b, "\r\n");
    put(b, a, 1024);
    puts_(b, "\r\n0;chunk-signature=");
    puts_(b, s3);
    puts_(b, "\r\n\r\n");
}

static void verified(const struct dfs_s3http_request *r, struct dfs_sigv4_auth *a)
{
    struct dfs_sigv4_config cfg = {.key = lookup};
    struct dfs_s3err e = {0};
    int rc = dfs_sigv4_verify(&cfg, r, T0, a, &e);
    if (rc != DFS_OK)
        fail_msg("verify: %s %s", dfs_s3err_name(e.code), e.message);
}

/* Decode body in slices of `step` bytes (0: one slice); the result code of feed or finish. */
static int decode(const struct dfs_sigv4_auth *a, const struct dfs_s3http_request *r,
                  const struct buf *body, size_t step, struct buf *out, struct dfs_s3err *e,
                  dfs_chunked **keep)
{
    dfs_chunked *c = NULL;
    memset(out, 0, sizeof *out);
    dfs_s3err_clear(e);
    int rc = dfs_chunked_create(a, r, &c, e);
    if (rc != DFS_OK)
        return rc;
    size_t i = 0;
    while (rc == DFS_OK && i < body->len) {
        size_t n = step == 0 ? body->len : step;
        if (n > body->len - i)
            n = body->len - i;
        rc = dfs_chunked_feed(c, body->p + i, n, sink, out, e);
        i += n;
    }
    if (rc == DFS_OK)
        rc = dfs_chunked_finish(c, e);
    if (keep != NULL)
        *keep = c;
    else
        dfs_chunked_destroy(c);
    return rc;
}

static void aws_signed_example(void **state)
{
    (void)state;
    struct dfs_sigv4_auth a;
    verified(&example_request, &a);
    struct buf body, out;
    example_body(&body, SIG1, SIG2, SIG3);
    assert_int_equal(body.len, 66824); /* the documented Content-Length */
    struct dfs_s3err e = {0};
    static const size_t steps[] = {0, 1, 2, 3, 7, 64, 89, 4096, 65535, 65536, 65537};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        dfs_chunked *c = NULL;
        int rc = decode(&a, &example_request, &body, steps[s], &out, &e, &c);
        if (rc != DFS_OK)
            fail_msg("step %zu: %s", steps[s], e.message);
        assert_int_equal(out.len, 66560);
        for (size_t i = 0; i < out.len; i++)
            assert_int_equal(out.p[i], 'a');
        assert_int_equal(dfs_chunked_decoded(c), 66560);
        assert_null(dfs_chunked_trailer(c, "x-amz-checksum-crc32"));
        /* Nothing may follow the end. */
        assert_int_equal(dfs_chunked_feed(c, "x", 1, sink, &out, &e), DFS_EINVAL);
        dfs_chunked_destroy(c);
        free(out.p);
    }
    free(body.p);
    dfs_s3err_clear(&e);
}

static void aws_signed_example_tampered(void **state)
{
    (void)state;
    struct dfs_sigv4_auth a;
    verified(&example_request, &a);
    struct buf body, out;
    struct dfs_s3err e = {0};

    /* One byte of data changed: the first chunk's signature no longer matches. */
    example_body(&body, SIG1, SIG2, SIG3);
    body.p[88 + 1000] = 'b';
    assert_int_equal(decode(&a, &example_request, &body, 4096, &out, &e, NULL), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH);
    assert_true(out.len <= 65536); /* stopped at the first chunk's end */
    free(out.p);
    free(body.p);

    /* Signatures swapped, or the seed's chain skipped. */
    example_body(&body, SIG2, SIG1, SIG3);
    assert_int_equal(decode(&a, &example_request, &body, 0, &out, &e, NULL), DFS_EUNAUTH);
    free(out.p);
    free(body.p);
    example_body(&body, SIG1, SIG2, SIG2);
    assert_int_equal(decode(&a, &example_request, &body, 0, &out, &e, NULL), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH);
    free(out.p);

    /* Cut anywhere before its end, the body is incomplete (and never accepted). */
    size_t full = body.len;
    free(body.p);
    example_body(&body, SIG1, SIG2, SIG3);
    static const size_t cuts[] = {0,     1,     5,     87,    88,    89,    65624, 65625,
                                  65626, 65700, 66737, 66738, 66800, 66822, 66823};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        struct buf cut = body;
        cut.len = cuts[k];
        int rc = decode(&a, &example_request, &cut, 1000, &out, &e, NULL);
        if (rc == DFS_OK || e.code != DFS_S3ERR_INCOMPLETE_BODY)
            fail_msg("cut at %zu of %zu: %s", cuts[k], full, dfs_s3err_name(e.code));
        free(out.p);
    }
    free(body.p);
    dfs_s3err_clear(&e);
}

/* The documented trailer example: the same data, a CRC32C trailer, and its signature. */
static void aws_trailer_example(void **state)
{
    (void)state;
    struct dfs_s3http_header h[] = {
        {"Host", "s3.amazonaws.com"},
        {"x-amz-date", "20130524T000000Z"},
        {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
        {"x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"},
        {"Content-Encoding", "aws-chunked"},
        {"x-amz-decoded-content-length", "66560"},
        {"x-amz-trailer", "x-amz-checksum-crc32c"},
        {"Authorization",
         "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,SignedHeaders="
         "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
         "x-amz-storage-class;x-amz-trailer,"
         "Signature=106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"},
    };
    struct dfs_s3http_request r = {"PUT", "/examplebucket/chunkObject.txt", NULL, h, 8};
    struct dfs_sigv4_auth a;
    verified(&r, &a);
    assert_int_equal(a.payload, DFS_SIGV4_PAYLOAD_STREAMING_TRAILER);
    static char data[65536];
    memset(data, 'a', sizeof data);
    const char *trailer_sig = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435";
    for (int variant = 0; variant < 4; variant++) {
        struct buf body = {0}, out;
        puts_(&body, "10000;chunk-signature="
                     "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n");
        put(&body, data, 65536);
        puts_(&body, "\r\n400;chunk-signature="
                     "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n");
        put(&body, data, 1024);
        puts_(&body, "\r\n0;chunk-signature="
                     "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n");
        /* 0: as documented; 1: a blank after the colon (same canonical form); 2: another
         * checksum value; 3: no trailer signature. */
        puts_(&body, variant == 1   ? "x-amz-checksum-crc32c: sOO8/Q==\r\n"
                     : variant == 2 ? "x-amz-checksum-crc32c:sOO8/Q=a\r\n"
                                    : "x-amz-checksum-crc32c:sOO8/Q==\r\n");
        if (variant != 3) {
            puts_(&body, "x-amz-trailer-signature:");
            puts_(&body, trailer_sig);
            puts_(&body, "\r\n");
        }
        puts_(&body, "\r\n");
        struct dfs_s3err e = {0};
        dfs_chunked *c = NULL;
        int rc = decode(&a, &r, &body, 777, &out, &e, &c);
        if (variant <= 1) {
            if (rc != DFS_OK)
                fail_msg("variant %d: %s", variant, e.message);
            assert_int_equal(out.len, 66560);
            assert_string_equal(dfs_chunked_trailer(c, "X-Amz-Checksum-CRC32C"), "sOO8/Q==");
        } else {
            assert_int_not_equal(rc, DFS_OK);
            assert_int_equal(e.code, variant == 2 ? DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH
                                                  : DFS_S3ERR_INVALID_REQUEST);
        }
        dfs_chunked_destroy(c);
        free(body.p);
        free(out.p);
        dfs_s3err_clear(&e);
    }
}

/* An auth as dfs_sigv4_verify leaves it, for bodies we sign ourselves. */
static void own_auth(struct dfs_sigv4_auth *a, enum dfs_sigv4_payload kind)
{
    memset(a, 0, sizeof *a);
    a->payload = kind;
    struct dfs_sigv4_scope scope = {"20130524", "us-east-1", "s3"};
    assert_int_equal(dfs_sigv4_signing_key(SECRET, &scope, a->signing_key), DFS_OK);
    strcpy(a->amz_date, "20130524T000000Z");
    strcpy(a->scope, "20130524/us-east-1/s3/aws4_request");
    strcpy(a->seed_signature, "0000000000000000000000000000000000000000000000000000000000000000");
}

/* Append a signed chunk of n bytes of `fill`, chaining *prev. */
static void signed_chunk(struct buf *b, const struct dfs_sigv4_auth *a, char prev[65], size_t n,
                         char fill)
{
    char *d = malloc(n + 1);
    memset(d, fill, n);
    uint8_t h[32];
    SHA256((const unsigned char *)d, n, h);
    char sig[65];
    assert_int_equal(dfs_sigv4_chunk_signature(a, prev, h, false, sig), DFS_OK);
    char head[128];
    snprintf(head, sizeof head, "%zx;chunk-signature=%s\r\n", n, sig);
    puts_(b, head);
    put(b, d, n);
    if (n > 0)
        puts_(b, "\r\n");
    memcpy(prev, sig, 65);
    free(d);
}

static struct dfs_s3http_header own_headers[] = {
    {"x-amz-decoded-content-length", "300"},
    {"x-amz-trailer", "x-amz-checksum-crc32, x-amz-checksum-sha256"},
};
static struct dfs_s3http_request own_request = {"PUT", "/b/k", NULL, own_headers, 2};

static void chunk_sizes(void **state)
{
    (void)state;
    struct dfs_sigv4_auth a;
    own_auth(&a, DFS_SIGV4_PAYLOAD_STREAMING);
    struct buf body = {0}, out;
    struct dfs_s3err e = {0};
    char prev[65];
    /* 100 + 200 bytes: the first is under 8 KiB and not last. */
    strcpy(prev, a.seed_signature);
    signed_chunk(&body, &a, prev, 100, 'x');
    signed_chunk(&body, &a, prev, 200, 'y');
    signed_chunk(&body, &a, prev, 0, 0);
    puts_(&body, "\r\n");
    assert_int_equal(decode(&a, &own_request, &body, 0, &out, &e, NULL), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_CHUNK_SIZE);
    free(body.p);
    free(out.p);
    /* One chunk of 300: fine. */
    memset(&body, 0, sizeof body);
    strcpy(prev, a.seed_signature);
    signed_chunk(&body, &a, prev, 300, 'x');
    signed_chunk(&body, &a, prev, 0, 0);
    puts_(&body, "\r\n");
    assert_int_equal(decode(&a, &own_request, &body, 3, &out, &e, NULL), DFS_OK);
    assert_int_equal(out.len, 300);
    free(out.p);
    /* Declared 300, but 301 or 299 in the chunks. */
    struct dfs_s3http_header h301[] = {{"x-amz-decoded-content-length", "299"}};
    struct dfs_s3http_request r301 = {"PUT", "/b/k", NULL, h301, 1};
    assert_int_equal(decode(&a, &r301, &body, 0, &out, &e, NULL), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_REQUEST);
    assert_int_equal(out.len, 0); /* refused at the header, before any of its data */
    free(out.p);
    h301[0].value = "301";
    assert_int_equal(decode(&a, &r301, &body, 0, &out, &e, NULL), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INCOMPLETE_BODY);
    free(out.p);
    h301[0].value = "3x";
    assert_int_equal(decode(&a, &r301, &body, 0, &out, &e, NULL), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_ARGUMENT);
    struct dfs_s3http_request none = {"PUT", "/b/k", NULL, NULL, 0};
    assert_int_equal(decode(&a, &none, &body, 0, &out, &e, NULL), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_MISSING_CONTENT_LENGTH);
    free(body.p);
    dfs_s3err_clear(&e);
}

/* STREAMING-UNSIGNED-PAYLOAD-TRAILER as botocore writes it: sizes in lower-case hex, any sizes. */
static void unsigned_trailer(void **state)
{
    (void)state;
    struct dfs_sigv4_auth a;
    own_auth(&a, DFS_SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER);
    struct buf out;
    struct dfs_s3err e = {0};
    struct buf body = {0};
    char d[256];
    memset(d, 'q', sizeof d);
    puts_(&body, "a\r\n");
    put(&body, d, 10);
    puts_(&body, "\r\nfe;ext=ignored\r\n");
    put(&body, d, 254);
    puts_(&body, "\r\n24\r\n");
    put(&body, d, 36);
    puts_(&body, "\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\nX-Amz-Checksum-SHA256:"
                 "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=\r\n\r\n");
    dfs_chunked *c = NULL;
    assert_int_equal(decode(&a, &own_request, &body, 5, &out, &e, &c), DFS_OK);
    assert_int_equal(out.len, 300);
    assert_string_equal(dfs_chunked_trailer(c, "x-amz-checksum-crc32"), "AAAAAA==");
    assert_string_equal(dfs_chunked_trailer(c, "x-amz-checksum-sha256"),
                        "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=");
    dfs_chunked_destroy(c);
    free(out.p);
    free(body.p);

    /* Trailers not declared, missing, repeated, or signed in an unsigned body. */
    static const char *const tails[] = {
        "0\r\nx-amz-checksum-crc64nvme:AAAAAAAAAAA=\r\n\r\n",
        "0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n",
        "0\r\nx-amz-checksum-crc32:AAAAAA==\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n",
        "0\r\nx-amz-checksum-crc32:A\r\nx-amz-checksum-sha256:B\r\nx-amz-trailer-signature:"
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n",
        "0\r\n: empty name\r\n\r\n",
        "0\r\nno colon\r\n\r\n",
        "0\r\nx-amz-checksum-crc32:A\r\nx-amz-checksum-sha256:B\r\n",
    };
    for (size_t t = 0; t < sizeof tails / sizeof tails[0]; t++) {
        memset(&body, 0, sizeof body);
        puts_(&body, "12c\r\n");
        char big[300];
        memset(big, 'z', sizeof big);
        put(&body, big, 300);
        puts_(&body, "\r\n");
        puts_(&body, tails[t]);
        int rc = decode(&a, &own_request, &body, 0, &out, &e, NULL);
        if (rc == DFS_OK)
            fail_msg("tail %zu accepted", t);
        assert_non_null(e.message);
        free(out.p);
        free(body.p);
    }
    dfs_s3err_clear(&e);
}

static void malformed_framing(void **state)
{
    (void)state;
    struct dfs_sigv4_auth a;
    own_auth(&a, DFS_SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER);
    struct dfs_s3http_header h[] = {{"x-amz-decoded-content-length", "3"}};
    struct dfs_s3http_request r = {"PUT", "/b/k", NULL, h, 1};
    static const char *const bodies[] = {
        "3\nabc\r\n0\r\n\r\n",                   /* LF alone */
        "3\r\nabc\n0\r\n\r\n",                   /* data not followed by CR LF */
        "3\r\nabcd\r\n0\r\n\r\n",                /* more data than the size */
        "x3\r\nabc\r\n0\r\n\r\n",                /* not hex */
        "3 \r\nabc\r\n0\r\n\r\n",                /* junk after the size */
        "\r\nabc\r\n0\r\n\r\n",                  /* no size */
        "00000000000000003\r\nabc\r\n0\r\n\r\n", /* 17 digits */
        "3\r\nabc\r\n0\r\n\r\nX",                /* data after the end */
        "3\r\nabc\r\n0\r\n\r\r\n",               /* a stray CR */
        "3\0\r\nabc\r\n0\r\n\r\n",               /* a NUL in a chunk header (14 bytes) */
    };
    for (size_t k = 0; k < sizeof bodies / sizeof bodies[0]; k++) {
        struct buf body = {0}, out;
        size_t n = k == 9 ? 14 : strlen(bodies[k]);
        put(&body, bodies[k], n);
        struct dfs_s3err e = {0};
        int rc = decode(&a, &r, &body, 1, &out, &e, NULL);
        if (rc == DFS_OK)
            fail_msg("body %zu accepted", k);
        assert_non_null(e.message);
        assert_non_null(strstr(e.message, "aws-chunked"));
        dfs_s3err_clear(&e);
        free(body.p);
        free(out.p);
    }
    /* A header line longer than the bound is refused once it passes the bound, whatever comes. */
    dfs_chunked *c = NULL;
    struct dfs_s3err e = {0};
    assert_int_equal(dfs_chunked_create(&a, &r, &c, &e), DFS_OK);
    char ext[600];
    memset(ext, 'e', sizeof ext);
    struct buf out = {0};
    assert_int_equal(dfs_chunked_feed(c, "3;", 2, sink, &out, &e), DFS_OK);
    assert_int_equal(dfs_chunked_feed(c, ext, sizeof ext, sink, &out, &e), DFS_OK);
    assert_int_equal(dfs_chunked_feed(c, ext, sizeof ext, sink, &out, &e), DFS_EINVAL);
    assert_int_equal(dfs_chunked_feed(c, "\r\n", 2, sink, &out, &e), DFS_EINVAL);
    assert_int_equal(dfs_chunked_finish(c, &e), DFS_EINVAL);
    dfs_chunked_destroy(c);
    dfs_s3err_clear(&e);

    /* A signed body whose chunk header has no signature. */
    own_auth(&a, DFS_SIGV4_PAYLOAD_STREAMING);
    struct buf body = {0};
    puts_(&body, "3\r\nabc\r\n0\r\n\r\n");
    assert_int_equal(decode(&a, &r, &body, 0, &out, &e, NULL), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_REQUEST);
    free(body.p);
    free(out.p);
    dfs_s3err_clear(&e);
}

static void sink_failure(void **state)
{
    (void)state;
    struct dfs_sigv4_auth a;
    verified(&example_request, &a);
    struct buf body, out;
    example_body(&body, SIG1, SIG2, SIG3);
    dfs_chunked *c = NULL;
    struct dfs_s3err e = {0};
    assert_int_equal(dfs_chunked_create(&a, &example_request, &c, &e), DFS_OK);
    memset(&out, 0, sizeof out);
    out.fail_after = 1000;
    assert_int_equal(dfs_chunked_feed(c, body.p, body.len, sink, &out, &e), DFS_ENOSPC);
    assert_int_equal(e.code, DFS_S3ERR_INTERNAL_ERROR);
    assert_int_equal(dfs_chunked_feed(c, body.p, 1, sink, &out, &e), DFS_EINVAL);
    assert_int_not_equal(dfs_chunked_finish(c, &e), DFS_OK);
    dfs_chunked_destroy(c);
    free(body.p);
    free(out.p);
    dfs_s3err_clear(&e);
    /* A payload that is not streamed has no decoder. */
    own_auth(&a, DFS_SIGV4_PAYLOAD_UNSIGNED);
    assert_int_not_equal(dfs_chunked_create(&a, &example_request, &c, &e), DFS_OK);
    dfs_s3err_clear(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(aws_signed_example),  cmocka_unit_test(aws_signed_example_tampered),
        cmocka_unit_test(aws_trailer_example), cmocka_unit_test(chunk_sizes),
        cmocka_unit_test(unsigned_trailer),    cmocka_unit_test(malformed_framing),
        cmocka_unit_test(sink_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
