/* Tests for SigV4: AWS's published S3 examples, and every way a signature check must fail. */
#include "gateway/s3/sigv4.h"

#include "common/err.h"
#include "gateway/s3/s3time.h"

#include <openssl/sha.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

/* The credentials and time of every example in AWS's S3 SigV4 documentation. */
#define AK     "AKIAIOSFODNN7EXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define EMPTY  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define T0     1369353600 /* 20130524T000000Z */

/* A key store: ids, secrets, roles, and what a lookup should answer instead. */
struct keys {
    int calls;
    int answer; /* DFS_OK: look up; anything else: return it */
    char last_region[64];
};

static int lookup(void *arg, const char *id, const struct dfs_sigv4_scope *scope,
                  uint8_t key[DFS_SIGV4_KEY_LEN], int *role, char **errmsg)
{
    struct keys *k = arg;
    k->calls++;
    snprintf(k->last_region, sizeof k->last_region, "%s", scope->region);
    if (k->answer != DFS_OK)
        return dfs_seterr(errmsg, k->answer, "lookup told to fail");
    if (strcmp(id, AK) == 0) {
        *role = 2;
        return dfs_sigv4_signing_key(SECRET, scope, key);
    }
    if (strcmp(id, "OTHERKEY") == 0) {
        *role = 3;
        return dfs_sigv4_signing_key("another secret", scope, key);
    }
    return DFS_ENOTFOUND;
}

/* A request under construction: up to 16 headers, strings owned by the test. */
struct req {
    struct dfs_s3http_request r;
    struct dfs_s3http_header h[16];
    char authz[1024];
};

static void req_init(struct req *q, const char *method, const char *path, const char *query)
{
    memset(q, 0, sizeof *q);
    q->r.method = method;
    q->r.path = path;
    q->r.query = query;
    q->r.headers = q->h;
}

static void req_add(struct req *q, const char *name, const char *value)
{
    assert_true(q->r.nheaders < 16);
    q->h[q->r.nheaders].name = name;
    q->h[q->r.nheaders].value = value;
    q->r.nheaders++;
}

/* Set a header's value (the first of that name). */
static void req_set(struct req *q, const char *name, const char *value)
{
    for (size_t i = 0; i < q->r.nheaders; i++) {
        if (strcasecmp(q->h[i].name, name) == 0) {
            q->h[i].value = value;
            return;
        }
    }
    req_add(q, name, value);
}

/*
 * Sign q as a client would (through the module's own canonical form: the published examples and
 * botocore check that form independently) and add the Authorization header.
 */
static void req_sign(struct req *q, const char *key_id, const char *secret, const char *amz_date,
                     const char *region, const char *signed_headers, const char *payload)
{
    struct dfs_sigv4_scope scope;
    memset(&scope, 0, sizeof scope);
    memcpy(scope.date, amz_date, 8);
    snprintf(scope.region, sizeof scope.region, "%s", region);
    memcpy(scope.service, "s3", 3);
    uint8_t key[32];
    assert_int_equal(dfs_sigv4_signing_key(secret, &scope, key), DFS_OK);
    char *creq = NULL;
    assert_int_equal(
        dfs_sigv4_canonical_request(&q->r, signed_headers, payload, false, &creq, NULL), DFS_OK);
    char sc[128];
    snprintf(sc, sizeof sc, "%.8s/%s/s3/aws4_request", amz_date, region);
    char *sts = dfs_sigv4_string_to_sign(amz_date, sc, creq);
    char sig[65];
    assert_int_equal(dfs_sigv4_hmac_hex(key, sts, strlen(sts), sig), DFS_OK);
    free(creq);
    free(sts);
    snprintf(q->authz, sizeof q->authz,
             "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/s3/aws4_request, SignedHeaders=%s, "
             "Signature=%s",
             key_id, amz_date, region, signed_headers, sig);
    req_set(q, "Authorization", q->authz);
}

static int verify(struct keys *k, const struct req *q, int64_t now, struct dfs_sigv4_auth *a,
                  struct dfs_s3err *e)
{
    struct dfs_sigv4_config cfg = {.key = lookup, .key_arg = k};
    dfs_s3err_clear(e);
    return dfs_sigv4_verify(&cfg, &q->r, now, a, e);
}

static const char *extra(const struct dfs_s3err *e, const char *name)
{
    for (int i = 0; i < DFS_S3ERR_EXTRA_MAX; i++) {
        if (e->extra_name[i] != NULL && strcmp(e->extra_name[i], name) == 0)
            return e->extra_value[i];
    }
    return NULL;
}

/* The documented GET Object request: the first 10 bytes of test.txt. */
static void get_example(struct req *q)
{
    req_init(q, "GET", "/test.txt", "");
    req_add(q, "Host", "examplebucket.s3.amazonaws.com");
    req_add(q, "Range", "bytes=0-9");
    req_add(q, "x-amz-content-sha256", EMPTY);
    req_add(q, "x-amz-date", "20130524T000000Z");
    req_add(q, "Authorization",
            "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void aws_get_object_example(void **state)
{
    (void)state;
    struct req q;
    get_example(&q);
    char *creq = NULL;
    assert_int_equal(dfs_sigv4_canonical_request(&q.r, "host;range;x-amz-content-sha256;x-amz-date",
                                                 EMPTY, false, &creq, NULL),
                     DFS_OK);
    assert_string_equal(creq, "GET\n/test.txt\n\n"
                              "host:examplebucket.s3.amazonaws.com\n"
                              "range:bytes=0-9\n"
                              "x-amz-content-sha256:" EMPTY "\n"
                              "x-amz-date:20130524T000000Z\n\n"
                              "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY);
    char *sts =
        dfs_sigv4_string_to_sign("20130524T000000Z", "20130524/us-east-1/s3/aws4_request", creq);
    assert_string_equal(sts, "AWS4-HMAC-SHA256\n20130524T000000Z\n"
                             "20130524/us-east-1/s3/aws4_request\n"
                             "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    free(creq);
    free(sts);

    struct keys k = {0};
    struct dfs_sigv4_auth a;
    struct dfs_s3err e = {0};
    assert_int_equal(verify(&k, &q, T0 + 60, &a, &e), DFS_OK);
    assert_int_equal(k.calls, 1);
    assert_string_equal(k.last_region, "us-east-1");
    assert_string_equal(a.access_key_id, AK);
    assert_int_equal(a.role, 2);
    assert_false(a.presigned);
    assert_int_equal(a.request_time, T0);
    assert_int_equal(a.payload, DFS_SIGV4_PAYLOAD_SHA256);
    assert_string_equal(a.scope, "20130524/us-east-1/s3/aws4_request");
    assert_string_equal(a.seed_signature,
                        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    /* The body must hash to the empty string's SHA-256. */
    dfs_sigv4_body *b = dfs_sigv4_body_create(&a);
    assert_non_null(b);
    assert_int_equal(dfs_sigv4_body_finish(b, &e), DFS_OK);
    dfs_sigv4_body_destroy(b);
    dfs_sigv4_auth_clear(&a);
    dfs_s3err_clear(&e);
}

static void aws_put_object_example(void **state)
{
    (void)state;
    /* PUT test$file.text: the '$' is %24 in the canonical URI, however the client sent it. */
    const char *paths[] = {"/test$file.text", "/test%24file.text"};
    for (int i = 0; i < 2; i++) {
        struct req q;
        req_init(&q, "PUT", paths[i], NULL);
        req_add(&q, "Host", "examplebucket.s3.amazonaws.com");
        req_add(&q, "Date", "Fri, 24 May 2013 00:00:00 GMT");
        req_add(&q, "x-amz-date", "20130524T000000Z");
        req_add(&q, "x-amz-storage-class", "REDUCED_REDUNDANCY");
        req_add(&q, "x-amz-content-sha256",
                "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        req_add(&q, "Authorization",
                "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
                "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
                "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
        struct keys k = {0};
        struct dfs_sigv4_auth a;
        struct dfs_s3err e = {0};
        assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_OK);
        assert_int_equal(a.payload, DFS_SIGV4_PAYLOAD_SHA256);

        /* The body streams in pieces; the right one passes, any other is refused. */
        dfs_sigv4_body *b = dfs_sigv4_body_create(&a);
        dfs_sigv4_body_update(b, "Welcome to ", 11);
        dfs_sigv4_body_update(b, "Amazon S3.", 10);
        assert_int_equal(dfs_sigv4_body_finish(b, &e), DFS_OK);
        dfs_sigv4_body_destroy(b);
        b = dfs_sigv4_body_create(&a);
        dfs_sigv4_body_update(b, "Welcome to Amazon S4.", 21);
        assert_int_equal(dfs_sigv4_body_finish(b, &e), DFS_EDATALOSS);
        assert_int_equal(e.code, DFS_S3ERR_CONTENT_SHA256_MISMATCH);
        assert_string_equal(extra(&e, "ClientComputedContentSHA256"),
                            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        /* Finishing again repeats the verdict; it is not a second chance. */
        assert_int_equal(dfs_sigv4_body_finish(b, &e), DFS_EDATALOSS);
        dfs_sigv4_body_destroy(b);
        dfs_sigv4_auth_clear(&a);
        dfs_s3err_clear(&e);
    }
}

static void bucket_example(struct req *q, const char *query, const char *sig, char *authz)
{
    req_init(q, "GET", "/", query);
    req_add(q, "Host", "examplebucket.s3.amazonaws.com");
    req_add(q, "x-amz-date", "20130524T000000Z");
    req_add(q, "x-amz-content-sha256", EMPTY);
    sprintf(authz,
            "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=%s",
            sig);
    req_add(q, "Authorization", authz);
}

static void aws_bucket_examples(void **state)
{
    (void)state;
    struct keys k = {0};
    struct dfs_sigv4_auth a;
    struct dfs_s3err e = {0};
    struct req q;
    char authz[512];
    /* GET Bucket Lifecycle: a parameter without a value is "lifecycle=". */
    bucket_example(&q, "lifecycle",
                   "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543", authz);
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_OK);
    /* GET Bucket (list objects): parameters sorted, in any order on the wire. */
    bucket_example(&q, "max-keys=2&prefix=J",
                   "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7", authz);
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_OK);
    bucket_example(&q, "prefix=J&max-keys=2",
                   "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7", authz);
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_OK);
    /* Another prefix is another request. */
    bucket_example(&q, "max-keys=2&prefix=K",
                   "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7", authz);
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH);
    dfs_s3err_clear(&e);
}

#define PRESIGNED_QUERY(expires, sig)                                                         \
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" AK "%2F20130524%2Fus-east-1%2Fs3%2F" \
    "aws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=" expires "&X-Amz-SignedHeaders=" \
    "host&X-Amz-Signature=" sig
#define PRESIGNED_SIG "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"

static void aws_presigned_example(void **state)
{
    (void)state;
    struct req q;
    req_init(&q, "GET", "/test.txt", PRESIGNED_QUERY("86400", PRESIGNED_SIG));
    req_add(&q, "Host", "examplebucket.s3.amazonaws.com");
    char *creq = NULL;
    assert_int_equal(
        dfs_sigv4_canonical_request(&q.r, "host", "UNSIGNED-PAYLOAD", true, &creq, NULL), DFS_OK);
    assert_string_equal(creq, "GET\n/test.txt\n"
                              "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" AK
                              "%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date="
                              "20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\n"
                              "host:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD");
    char *sts =
        dfs_sigv4_string_to_sign("20130524T000000Z", "20130524/us-east-1/s3/aws4_request", creq);
    assert_string_equal(sts + strlen(sts) - 64,
                        "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04");
    free(creq);
    free(sts);

    struct keys k = {0};
    struct dfs_sigv4_auth a;
    struct dfs_s3err e = {0};
    /* Valid from its date (and up to 15 minutes before, for clocks behind) to date + expires. */
    assert_int_equal(verify(&k, &q, T0 + 86400, &a, &e), DFS_OK);
    assert_true(a.presigned);
    assert_int_equal(a.expires, T0 + 86400);
    assert_int_equal(a.payload, DFS_SIGV4_PAYLOAD_UNSIGNED);
    assert_int_equal(verify(&k, &q, T0 - 900, &a, &e), DFS_OK);
    int calls = k.calls;
    assert_int_equal(verify(&k, &q, T0 + 86401, &a, &e), DFS_EPERM);
    assert_int_equal(e.code, DFS_S3ERR_ACCESS_DENIED);
    assert_string_equal(e.message, "Request has expired");
    assert_string_equal(extra(&e, "Expires"), "20130525T000000Z");
    assert_int_equal(k.calls, calls); /* refused before any key lookup */
    assert_int_equal(verify(&k, &q, T0 - 901, &a, &e), DFS_EPERM);
    assert_int_equal(e.code, DFS_S3ERR_ACCESS_DENIED);

    /* X-Amz-Expires: 1 second to 7 days. */
    req_init(&q, "GET", "/test.txt", PRESIGNED_QUERY("604801", PRESIGNED_SIG));
    req_add(&q, "Host", "examplebucket.s3.amazonaws.com");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_AUTHORIZATION_QUERY_PARAMETERS_ERROR);
    req_init(&q, "GET", "/test.txt", PRESIGNED_QUERY("0", PRESIGNED_SIG));
    req_add(&q, "Host", "examplebucket.s3.amazonaws.com");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    req_init(&q, "GET", "/test.txt", PRESIGNED_QUERY("-5", PRESIGNED_SIG));
    req_add(&q, "Host", "examplebucket.s3.amazonaws.com");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    /* A longer expiry is another URL: its signature does not carry over. */
    req_init(&q, "GET", "/test.txt", PRESIGNED_QUERY("86401", PRESIGNED_SIG));
    req_add(&q, "Host", "examplebucket.s3.amazonaws.com");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH);
    /* A parameter missing or given twice. */
    req_init(&q, "GET", "/test.txt",
             "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20130524T000000Z&X-Amz-"
             "Signature=" PRESIGNED_SIG);
    req_add(&q, "Host", "examplebucket.s3.amazonaws.com");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_AUTHORIZATION_QUERY_PARAMETERS_ERROR);
    req_init(&q, "GET", "/test.txt",
             PRESIGNED_QUERY("86400", PRESIGNED_SIG) "&X-Amz-Date=20130524T000000Z");
    req_add(&q, "Host", "examplebucket.s3.amazonaws.com");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_AUTHORIZATION_QUERY_PARAMETERS_ERROR);
    /* Another algorithm. */
    req_init(&q, "GET", "/test.txt",
             "X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256&X-Amz-Credential=" AK
             "%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&"
             "X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=" PRESIGNED_SIG);
    req_add(&q, "Host", "examplebucket.s3.amazonaws.com");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    /* Presigned and an Authorization header at once. */
    req_init(&q, "GET", "/test.txt", PRESIGNED_QUERY("86400", PRESIGNED_SIG));
    req_add(&q, "Host", "examplebucket.s3.amazonaws.com");
    req_add(&q, "Authorization", "AWS4-HMAC-SHA256 Credential=x");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_ARGUMENT);
    /* An x-amz-* header the URL did not sign. */
    req_init(&q, "GET", "/test.txt", PRESIGNED_QUERY("86400", PRESIGNED_SIG));
    req_add(&q, "Host", "examplebucket.s3.amazonaws.com");
    req_add(&q, "X-Amz-Meta-Evil", "1");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EPERM);
    assert_string_equal(extra(&e, "HeadersNotSigned"), "X-Amz-Meta-Evil");
    dfs_s3err_clear(&e);
}

static void sha256(const void *d, size_t n, uint8_t out[32])
{
    SHA256(d, n, out);
}

static void aws_streaming_example(void **state)
{
    (void)state;
    struct req q;
    req_init(&q, "PUT", "/examplebucket/chunkObject.txt", NULL);
    req_add(&q, "Host", "s3.amazonaws.com");
    req_add(&q, "x-amz-date", "20130524T000000Z");
    req_add(&q, "x-amz-storage-class", "REDUCED_REDUNDANCY");
    req_add(&q, "x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    req_add(&q, "Content-Encoding", "aws-chunked");
    req_add(&q, "x-amz-decoded-content-length", "66560");
    req_add(&q, "Content-Length", "66824");
    req_add(&q, "Authorization",
            "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class,"
            "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9");
    struct keys k = {0};
    struct dfs_sigv4_auth a;
    struct dfs_s3err e = {0};
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_OK);
    assert_int_equal(a.payload, DFS_SIGV4_PAYLOAD_STREAMING);
    assert_string_equal(a.amz_date, "20130524T000000Z");
    assert_string_equal(a.seed_signature,
                        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9");
    assert_null(dfs_sigv4_body_create(&a)); /* aws-chunked bodies go through chunked.h */

    /* The documented chain: 64 KiB of 'a', 1 KiB of 'a', and the empty last chunk. */
    static char data[65536];
    memset(data, 'a', sizeof data);
    uint8_t h[32];
    char sig[65];
    sha256(data, 65536, h);
    assert_int_equal(dfs_sigv4_chunk_signature(&a, a.seed_signature, h, false, sig), DFS_OK);
    assert_string_equal(sig, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648");
    sha256(data, 1024, h);
    assert_int_equal(dfs_sigv4_chunk_signature(&a, sig, h, false, sig), DFS_OK);
    assert_string_equal(sig, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497");
    sha256("", 0, h);
    assert_int_equal(dfs_sigv4_chunk_signature(&a, sig, h, false, sig), DFS_OK);
    assert_string_equal(sig, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9");
    dfs_sigv4_auth_clear(&a);
}

/* A request of our own, signed with the example key at T0 + 10. */
static void own_request(struct req *q)
{
    req_init(q, "PUT", "/bucket/dir/a%20b~c+d.txt", "uploadId=xyz&partNumber=2");
    req_add(q, "Host", "localhost:9000");
    req_add(q, "x-amz-date", "20130524T000010Z");
    req_add(q, "x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    req_add(q, "x-amz-meta-color", "  dark   blue ");
    req_add(q, "Content-Type", "text/plain");
    req_sign(q, AK, SECRET, "20130524T000010Z", "us-east-1",
             "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-color",
             "UNSIGNED-PAYLOAD");
}

static void wrong_secret_and_keys(void **state)
{
    (void)state;
    struct keys k = {0};
    struct dfs_sigv4_auth a;
    struct dfs_s3err e = {0};
    struct req q;
    own_request(&q);
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_OK);
    assert_int_equal(a.payload, DFS_SIGV4_PAYLOAD_UNSIGNED);
    dfs_sigv4_body *b = dfs_sigv4_body_create(&a);
    dfs_sigv4_body_update(b, "anything", 8);
    assert_int_equal(dfs_sigv4_body_finish(b, &e), DFS_OK);
    dfs_sigv4_body_destroy(b);

    /* Signed with another secret under our key id. */
    req_sign(&q, AK, "not the secret", "20130524T000010Z", "us-east-1",
             "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-color",
             "UNSIGNED-PAYLOAD");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH);
    assert_string_equal(extra(&e, "AWSAccessKeyId"), AK);
    assert_non_null(strstr(extra(&e, "StringToSign"), "20130524/us-east-1/s3/aws4_request"));
    assert_non_null(strstr(extra(&e, "CanonicalRequest"), "x-amz-meta-color:dark blue\n"));
    assert_non_null(strstr(extra(&e, "CanonicalRequest"), "/bucket/dir/a%20b~c%2Bd.txt\n"));
    assert_non_null(strstr(extra(&e, "CanonicalRequest"), "\npartNumber=2&uploadId=xyz\n"));
    assert_int_equal(a.access_key_id[0], '\0'); /* nothing of a failed check is left */

    /* Another key's secret. */
    req_sign(&q, "OTHERKEY", SECRET, "20130524T000010Z", "us-east-1",
             "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-color",
             "UNSIGNED-PAYLOAD");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH);
    req_sign(&q, "OTHERKEY", "another secret", "20130524T000010Z", "us-east-1",
             "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-color",
             "UNSIGNED-PAYLOAD");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_OK);
    assert_int_equal(a.role, 3);

    /* Keys the store does not know, has revoked, or cannot look up now. */
    req_sign(&q, "NOSUCHKEY", SECRET, "20130524T000010Z", "us-east-1",
             "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-color",
             "UNSIGNED-PAYLOAD");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_ACCESS_KEY_ID);
    own_request(&q);
    k.answer = DFS_EPERM;
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_ACCESS_KEY_ID);
    k.answer = DFS_EUNAVAIL;
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAVAIL);
    assert_int_equal(e.code, DFS_S3ERR_SERVICE_UNAVAILABLE);
    k.answer = DFS_EIO;
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EINTERNAL);
    assert_int_equal(e.code, DFS_S3ERR_INTERNAL_ERROR);
    dfs_s3err_clear(&e);
}

static void clock_skew(void **state)
{
    (void)state;
    struct keys k = {0};
    struct dfs_sigv4_auth a;
    struct dfs_s3err e = {0};
    struct req q;
    own_request(&q); /* signed at T0 + 10 */
    assert_int_equal(verify(&k, &q, T0 + 10 + 900, &a, &e), DFS_OK);
    assert_int_equal(verify(&k, &q, T0 + 10 - 900, &a, &e), DFS_OK);
    int calls = k.calls;
    assert_int_equal(verify(&k, &q, T0 + 10 + 901, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_REQUEST_TIME_TOO_SKEWED);
    assert_int_equal(dfs_s3err_http_status(e.code), 403);
    assert_string_equal(extra(&e, "RequestTime"), "20130524T000010Z");
    assert_string_equal(extra(&e, "MaxAllowedSkewMilliseconds"), "900000");
    assert_int_equal(verify(&k, &q, T0 + 10 - 901, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_REQUEST_TIME_TOO_SKEWED);
    assert_int_equal(k.calls, calls);
    /* A tighter limit from the configuration. */
    struct dfs_sigv4_config cfg = {.key = lookup, .key_arg = &k, .max_skew_s = 5};
    assert_int_equal(dfs_sigv4_verify(&cfg, &q.r, T0 + 16, &a, &e), DFS_EUNAUTH);
    assert_int_equal(dfs_sigv4_verify(&cfg, &q.r, T0 + 15, &a, &e), DFS_OK);
    /* The credential's date must be the request's. */
    req_sign(&q, AK, SECRET, "20130525T000010Z", "us-east-1",
             "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-color",
             "UNSIGNED-PAYLOAD");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED);
    /* A Date header serves when there is no x-amz-date. */
    req_init(&q, "GET", "/b/k", NULL);
    req_add(&q, "Host", "h");
    req_add(&q, "Date", "Fri, 24 May 2013 00:00:10 GMT");
    req_add(&q, "x-amz-content-sha256", EMPTY);
    req_sign(&q, AK, SECRET, "20130524T000010Z", "us-east-1", "date;host;x-amz-content-sha256",
             EMPTY);
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_OK);
    assert_int_equal(a.request_time, T0 + 10);
    /* Neither: refused. */
    req_init(&q, "GET", "/b/k", NULL);
    req_add(&q, "Host", "h");
    req_add(&q, "x-amz-content-sha256", EMPTY);
    req_sign(&q, AK, SECRET, "20130524T000010Z", "us-east-1", "host;x-amz-content-sha256", EMPTY);
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EPERM);
    assert_int_equal(e.code, DFS_S3ERR_ACCESS_DENIED);
    dfs_s3err_clear(&e);
}

/* Each change to a signed request after signing must break it. */
static void tampering(void **state)
{
    (void)state;
    struct keys k = {0};
    struct dfs_sigv4_auth a;
    struct dfs_s3err e = {0};
    struct req q;

    own_request(&q);
    q.r.method = "POST";
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH);

    own_request(&q);
    q.r.path = "/bucket/dir/a%20b~c+e.txt";
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);

    own_request(&q);
    q.r.query = "uploadId=xyz&partNumber=3";
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);

    own_request(&q);
    q.r.query = "uploadId=xyz&partNumber=2&partNumber=3";
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);

    own_request(&q);
    req_set(&q, "x-amz-meta-color", "red");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);

    /* A second value of a signed header changes the canonical value ("a,b"). */
    own_request(&q);
    req_add(&q, "Content-Type", "text/html");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);

    /* Blanks around and inside values do not matter; case of names does not. */
    own_request(&q);
    req_set(&q, "x-amz-meta-color", "dark blue");
    q.h[0].name = "HOST";
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_OK);

    /* Unsigned x-amz-* headers are refused, whatever they are. */
    own_request(&q);
    req_add(&q, "x-amz-meta-added", "1");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EPERM);
    assert_int_equal(e.code, DFS_S3ERR_ACCESS_DENIED);
    assert_string_equal(extra(&e, "HeadersNotSigned"), "x-amz-meta-added");
    /* ... but other unsigned headers are the client's business. */
    own_request(&q);
    req_add(&q, "User-Agent", "test");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_OK);

    /* host must be signed. */
    req_init(&q, "GET", "/b/k", NULL);
    req_add(&q, "Host", "h");
    req_add(&q, "x-amz-date", "20130524T000010Z");
    req_add(&q, "x-amz-content-sha256", EMPTY);
    req_sign(&q, AK, SECRET, "20130524T000010Z", "us-east-1", "x-amz-content-sha256;x-amz-date",
             EMPTY);
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EPERM);
    assert_int_equal(e.code, DFS_S3ERR_ACCESS_DENIED);

    /* A signed header the request does not have. */
    req_init(&q, "GET", "/b/k", NULL);
    req_add(&q, "Host", "h");
    req_add(&q, "x-amz-date", "20130524T000010Z");
    req_add(&q, "x-amz-content-sha256", EMPTY);
    req_add(&q, "Range", "bytes=0-1");
    req_sign(&q, AK, SECRET, "20130524T000010Z", "us-east-1",
             "host;range;x-amz-content-sha256;x-amz-date", EMPTY);
    q.h[3].name = "X-Range";
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH);

    /* The body hash is signed too. */
    own_request(&q);
    req_set(&q, "x-amz-content-sha256", EMPTY);
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EUNAUTH);
    dfs_s3err_clear(&e);
}

static void malformed_authorization(void **state)
{
    (void)state;
    struct keys k = {0};
    struct dfs_sigv4_auth a;
    struct dfs_s3err e = {0};
    struct req q;
    static const struct {
        const char *authz;
        enum dfs_s3err_code code;
    } cases[] = {
        {"AWS " AK ":frJIUN8DYpKDtOLCwo//yllqDzg=", DFS_S3ERR_INVALID_REQUEST},
        {"AWS4-HMAC-SHA256", DFS_S3ERR_INVALID_REQUEST},
        {"AWS4-HMAC-SHA256X Credential=a", DFS_S3ERR_INVALID_REQUEST},
        {"AWS4-HMAC-SHA256 ", DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request",
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" AK
         "/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, "
         "Signature=" PRESIGNED_SIG ", Signature=" PRESIGNED_SIG,
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" AK
         "/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, "
         "Signature=" PRESIGNED_SIG ", Extra=1",
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" AK
         "/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, "
         "Signature",
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/iam/aws4_request, "
         "SignedHeaders=host, Signature=" PRESIGNED_SIG,
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws5_request, "
         "SignedHeaders=host, Signature=" PRESIGNED_SIG,
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" AK "/2013052/us-east-1/s3/aws4_request, "
         "SignedHeaders=host, Signature=" PRESIGNED_SIG,
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" AK "/20130524/US EAST/s3/aws4_request, "
         "SignedHeaders=host, Signature=" PRESIGNED_SIG,
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request, "
         "SignedHeaders=host, Signature=" PRESIGNED_SIG,
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=a/b/20130524/us-east-1/s3/aws4_request, "
         "SignedHeaders=host, Signature=" PRESIGNED_SIG,
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request, "
         "SignedHeaders=host, Signature=abc",
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request, "
         "SignedHeaders=host, Signature=" PRESIGNED_SIG "0",
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request, "
         "SignedHeaders=host;;x-amz-date, Signature=" PRESIGNED_SIG,
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
        {"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request, "
         "SignedHeaders=Host;x-amz-date, Signature=" PRESIGNED_SIG,
         DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        req_init(&q, "GET", "/b/k", NULL);
        req_add(&q, "Host", "h");
        req_add(&q, "x-amz-date", "20130524T000000Z");
        req_add(&q, "x-amz-content-sha256", EMPTY);
        req_add(&q, "Authorization", cases[i].authz);
        int rc = verify(&k, &q, T0, &a, &e);
        if (rc == DFS_OK || e.code != cases[i].code)
            fail_msg("case %zu (%s): got %s", i, cases[i].authz, dfs_s3err_name(e.code));
        assert_non_null(e.message);
    }
    assert_int_equal(k.calls, 0); /* malformed requests never reach the key store */

    /* Headers that must come once, and the payload header. */
    own_request(&q);
    req_add(&q, "x-amz-date", "20130524T000010Z");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_ARGUMENT);
    own_request(&q);
    req_add(&q, "Authorization", q.authz);
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EINVAL);
    req_init(&q, "GET", "/b/k", NULL);
    req_add(&q, "Host", "h");
    req_add(&q, "x-amz-date", "20130524T000000Z");
    req_sign(&q, AK, SECRET, "20130524T000000Z", "us-east-1", "host;x-amz-date", EMPTY);
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_REQUEST);
    req_add(&q, "x-amz-content-sha256", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD");
    req_sign(&q, AK, SECRET, "20130524T000000Z", "us-east-1",
             "host;x-amz-content-sha256;x-amz-date", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_ARGUMENT);

    /* Anonymous, and SigV2 presigned URLs. */
    req_init(&q, "GET", "/b/k", NULL);
    req_add(&q, "Host", "h");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EPERM);
    assert_int_equal(e.code, DFS_S3ERR_ACCESS_DENIED);
    req_init(&q, "GET", "/b/k", "AWSAccessKeyId=" AK "&Expires=1&Signature=x");
    req_add(&q, "Host", "h");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_REQUEST);
    /* Bad encodings. */
    own_request(&q);
    q.r.path = "/bucket/%zz";
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_URI);
    own_request(&q);
    q.r.query = "a=%00";
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_EINVAL);
    assert_int_equal(e.code, DFS_S3ERR_INVALID_URI);
    dfs_s3err_clear(&e);
}

static void region_configuration(void **state)
{
    (void)state;
    struct keys k = {0};
    struct dfs_sigv4_auth a;
    struct dfs_s3err e = {0};
    struct req q;
    own_request(&q);
    struct dfs_sigv4_config cfg = {.key = lookup, .key_arg = &k, .region = "eu-west-3"};
    assert_int_equal(dfs_sigv4_verify(&cfg, &q.r, T0, &a, &e), DFS_EUNAUTH);
    assert_int_equal(e.code, DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED);
    assert_string_equal(extra(&e, "Region"), "eu-west-3");
    cfg.region = "us-east-1";
    assert_int_equal(dfs_sigv4_verify(&cfg, &q.r, T0, &a, &e), DFS_OK);
    /* No region configured: whatever region the client signed for, with that region's key. */
    req_sign(&q, AK, SECRET, "20130524T000010Z", "dfs-local",
             "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-color",
             "UNSIGNED-PAYLOAD");
    assert_int_equal(verify(&k, &q, T0, &a, &e), DFS_OK);
    assert_string_equal(k.last_region, "dfs-local");
    assert_string_equal(a.scope, "20130524/dfs-local/s3/aws4_request");
    dfs_s3err_clear(&e);
}

static void canonical_forms(void **state)
{
    (void)state;
    struct req q;
    char *c = NULL;
    /* One decoding, one encoding: %7E and ~ are one character; '+' in a path is a plus sign;
     * '/' stays in the path; non-ASCII is encoded per byte, upper-case hex. */
    req_init(&q, "GET", "/b/%7e~+%2f/\xc3\xa9%c3%A9", "");
    req_add(&q, "Host", "h");
    assert_int_equal(dfs_sigv4_canonical_request(&q.r, "host", EMPTY, false, &c, NULL), DFS_OK);
    assert_string_equal(c, "GET\n/b/~~%2B//%C3%A9%C3%A9\n\nhost:h\n\nhost\n" EMPTY);
    free(c);
    /* An empty path is "/". */
    req_init(&q, "GET", "", NULL);
    req_add(&q, "Host", "h");
    assert_int_equal(dfs_sigv4_canonical_request(&q.r, "host", EMPTY, false, &c, NULL), DFS_OK);
    assert_string_equal(c, "GET\n/\n\nhost:h\n\nhost\n" EMPTY);
    free(c);
    /* Query: '+' is a space, '/' is encoded, sorted by name then value, empty parts dropped. */
    req_init(&q, "GET", "/", "prefix=a+b/c&a=2&a=1&&delimiter=%2F&list-type=2&");
    req_add(&q, "Host", "h");
    assert_int_equal(dfs_sigv4_canonical_request(&q.r, "host", EMPTY, false, &c, NULL), DFS_OK);
    assert_string_equal(c, "GET\n/\na=1&a=2&delimiter=%2F&list-type=2&prefix=a%20b%2Fc\n"
                           "host:h\n\nhost\n" EMPTY);
    free(c);
    /* Header values: trimmed, blanks collapsed, repeated headers joined by ','. */
    req_init(&q, "GET", "/", NULL);
    req_add(&q, "Host", "h");
    req_add(&q, "X-Amz-Meta-A", " \t one  \t two ");
    req_add(&q, "x-amz-meta-a", "three");
    req_add(&q, "x-amz-meta-b", "");
    assert_int_equal(
        dfs_sigv4_canonical_request(&q.r, "host;x-amz-meta-a;x-amz-meta-b", EMPTY, false, &c, NULL),
        DFS_OK);
    assert_string_equal(c, "GET\n/\n\nhost:h\nx-amz-meta-a:one two,three\nx-amz-meta-b:\n\n"
                           "host;x-amz-meta-a;x-amz-meta-b\n" EMPTY);
    free(c);
}

static void constant_time_compare(void **state)
{
    (void)state;
    const char *s = PRESIGNED_SIG;
    assert_true(dfs_sigv4_signature_equal(s, s));
    assert_true(dfs_sigv4_signature_equal(
        s, "AEEED9BBCCD4D02EE5C0109B86D86835F995330DA4C265957D157751F604D404"));
    assert_false(dfs_sigv4_signature_equal(
        s, "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d405"));
    assert_false(dfs_sigv4_signature_equal(s, "aeeed9bb"));
    assert_false(dfs_sigv4_signature_equal(s, ""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(aws_get_object_example),
        cmocka_unit_test(aws_put_object_example),
        cmocka_unit_test(aws_bucket_examples),
        cmocka_unit_test(aws_presigned_example),
        cmocka_unit_test(aws_streaming_example),
        cmocka_unit_test(wrong_secret_and_keys),
        cmocka_unit_test(clock_skew),
        cmocka_unit_test(tampering),
        cmocka_unit_test(malformed_authorization),
        cmocka_unit_test(region_configuration),
        cmocka_unit_test(canonical_forms),
        cmocka_unit_test(constant_time_compare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
