/* AWS Signature Version 4 for S3: canonical requests, signing keys, and verifying requests. */
#ifndef DFS_GATEWAY_S3_SIGV4_H
#define DFS_GATEWAY_S3_SIGV4_H

#include "gateway/s3/s3err.h"
#include "gateway/s3/s3http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * How a request is signed (AWS's "Authenticating Requests (AWS Signature Version 4)" for S3):
 *
 *   CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n
 *                      SignedHeaders \n PayloadHash
 *   StringToSign     = "AWS4-HMAC-SHA256" \n Time(YYYYMMDDTHHMMSSZ) \n Scope \n
 *                      hex(SHA256(CanonicalRequest))
 *   Scope            = Date(YYYYMMDD) / region / "s3" / "aws4_request"
 *   SigningKey       = HMAC(HMAC(HMAC(HMAC("AWS4" secret, Date), region), "s3"), "aws4_request")
 *   Signature        = hex(HMAC(SigningKey, StringToSign))
 *
 * CanonicalURI is the path percent-decoded once and encoded again by dfs_s3http_encode with '/'
 * kept (S3 neither normalises nor double-encodes); CanonicalQuery the decoded parameters ('+'
 * read as a space) encoded the same way but with '/' encoded too, sorted by name then value,
 * "name=value" joined by '&' (the
 * presigned form leaves out X-Amz-Signature); CanonicalHeaders "name:value\n" for each signed
 * header in the order SignedHeaders names them, names lower-case, each value trimmed with inner
 * runs of blanks made one space, several values of one header joined by ','. The signing key
 * depends only on the secret and the scope, so whoever holds the secret can hand out a day's key
 * for one region without the secret: the gateway asks for keys, never for secrets.
 */

#define DFS_SIGV4_KEY_LEN       32     /* a signing key: HMAC-SHA256 output */
#define DFS_SIGV4_HEX_LEN       64     /* a signature or SHA-256 in hex */
#define DFS_SIGV4_MAX_SKEW_S    900    /* 15 minutes, as S3 */
#define DFS_SIGV4_MAX_EXPIRES_S 604800 /* 7 days: the longest a presigned URL may live */
#define DFS_SIGV4_KEY_ID_MAX    128
#define DFS_SIGV4_REGION_MAX    63
#define DFS_SIGV4_SCOPE_MAX     (8 + 1 + DFS_SIGV4_REGION_MAX + 1 + 2 + 1 + 12)

/* The credential scope of a signature. */
struct dfs_sigv4_scope {
    char date[9]; /* YYYYMMDD */
    char region[DFS_SIGV4_REGION_MAX + 1];
    char service[3]; /* always "s3" once verified */
};

/*
 * The signing key of `secret` for a scope into key[DFS_SIGV4_KEY_LEN] (what a key callback that
 * holds the secret answers with). Returns 0, or DFS_EINTERNAL when OpenSSL fails.
 */
int dfs_sigv4_signing_key(const char *secret, const struct dfs_sigv4_scope *scope,
                          uint8_t key[DFS_SIGV4_KEY_LEN]);

/*
 * Looks up an access key id: on success fills key with its signing key for `scope` and *role with
 * what the key may do (opaque here: the caller's role numbers), and returns 0. Otherwise:
 * DFS_ENOTFOUND for an unknown key, DFS_EUNAUTH or DFS_EPERM for a revoked or expired one (both
 * answered InvalidAccessKeyId), DFS_EUNAVAIL when it cannot tell now (ServiceUnavailable), any
 * other code is InternalError. errmsg, when set, goes to the log, never to the client.
 */
typedef int (*dfs_sigv4_key_fn)(void *arg, const char *access_key_id,
                                const struct dfs_sigv4_scope *scope, uint8_t key[DFS_SIGV4_KEY_LEN],
                                int *role, char **errmsg);

struct dfs_sigv4_config {
    const char *region;   /* the only region signatures may be scoped to; NULL or "": any */
    int64_t max_skew_s;   /* 0: DFS_SIGV4_MAX_SKEW_S */
    dfs_sigv4_key_fn key; /* required */
    void *key_arg;
};

/* What the signature says about the body. */
enum dfs_sigv4_payload {
    DFS_SIGV4_PAYLOAD_UNSIGNED,          /* UNSIGNED-PAYLOAD (and every presigned URL) */
    DFS_SIGV4_PAYLOAD_SHA256,            /* the body's SHA-256 must be auth.payload_sha256 */
    DFS_SIGV4_PAYLOAD_STREAMING,         /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD: aws-chunked */
    DFS_SIGV4_PAYLOAD_STREAMING_TRAILER, /* ...-PAYLOAD-TRAILER: signed chunks and trailer */
    DFS_SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER, /* STREAMING-UNSIGNED-PAYLOAD-TRAILER */
};

/* A verified request: who signed it, and what the body must still prove. */
struct dfs_sigv4_auth {
    char access_key_id[DFS_SIGV4_KEY_ID_MAX + 1];
    int role; /* from the key callback */
    bool presigned;
    int64_t request_time; /* X-Amz-Date (or Date) */
    int64_t expires;      /* presigned: the last second it is valid; 0 otherwise */
    enum dfs_sigv4_payload payload;
    uint8_t payload_sha256[32]; /* DFS_SIGV4_PAYLOAD_SHA256 */
    /* For the aws-chunked chain (chunked.h): */
    uint8_t signing_key[DFS_SIGV4_KEY_LEN];
    char amz_date[17];                   /* the request time as the string to sign has it */
    char scope[DFS_SIGV4_SCOPE_MAX + 1]; /* "20130524/us-east-1/s3/aws4_request" */
    char seed_signature[DFS_SIGV4_HEX_LEN + 1];
};

/*
 * Verify a request signed with the Authorization header or presigned (query parameters), at time
 * `now`. Anonymous requests are refused (AccessDenied). Checked, in S3's order, each failure with
 * its S3 code and a one-line message in *err: the form of the header or parameters
 * (AuthorizationHeaderMalformed / AuthorizationQueryParametersError, InvalidRequest for other
 * algorithms such as SigV2); scope (service s3, the configured region, the date of the request);
 * the request time within max_skew of now (RequestTimeTooSkewed) or, presigned, X-Amz-Expires at
 * most 7 days and not passed (AccessDenied "Request has expired"); host and every x-amz-* header
 * sent are signed (AccessDenied); the key (InvalidAccessKeyId); the signature, compared in
 * constant time (SignatureDoesNotMatch, with the string to sign and canonical request in the
 * error's extras as S3 gives them). On success returns 0 and fills *auth; the body is then still
 * to be checked as auth->payload says (dfs_sigv4_body_*, or chunked.h). The signing key is in
 * *auth: wipe it (dfs_sigv4_auth_clear) when done.
 */
int dfs_sigv4_verify(const struct dfs_sigv4_config *cfg, const struct dfs_s3http_request *req,
                     int64_t now, struct dfs_sigv4_auth *auth, struct dfs_s3err *err);

/* Zero *auth (the signing key with it). */
void dfs_sigv4_auth_clear(struct dfs_sigv4_auth *auth);

/*
 * The canonical request of req for the given SignedHeaders list ("host;x-amz-date") and payload
 * hash line. presigned leaves X-Amz-Signature out of the query. Returns 0 and *out (malloc'd,
 * the caller frees), or a failure in *err (InvalidURI for a path or query that does not decode,
 * SignatureDoesNotMatch naming a signed header the request does not have).
 */
int dfs_sigv4_canonical_request(const struct dfs_s3http_request *req, const char *signed_headers,
                                const char *payload_hash, bool presigned, char **out,
                                struct dfs_s3err *err);

/*
 * The string to sign for a canonical request: algorithm "AWS4-HMAC-SHA256", then amz_date,
 * scope, and the request's hex SHA-256, one per line. Returns a malloc'd string or NULL (out of
 * memory).
 */
char *dfs_sigv4_string_to_sign(const char *amz_date, const char *scope,
                               const char *canonical_request);

/* hex(HMAC-SHA256(key, msg)) into out[DFS_SIGV4_HEX_LEN + 1]. 0 or DFS_EINTERNAL. */
int dfs_sigv4_hmac_hex(const uint8_t key[DFS_SIGV4_KEY_LEN], const char *msg, size_t len,
                       char out[DFS_SIGV4_HEX_LEN + 1]);

/* Lower-case hex of n bytes into out[2n + 1]. */
void dfs_sigv4_hex(const uint8_t *bytes, size_t n, char *out);

/*
 * The signature of one aws-chunked chunk (S3's "Transferring Payload in Multiple Chunks"):
 *
 *   "AWS4-HMAC-SHA256-PAYLOAD" \n amz_date \n scope \n previous-signature \n
 *   hex(SHA256("")) \n hex(SHA256(chunk-data))
 *
 * previous-signature is the seed (the request's signature) for the first chunk. For the trailer
 * (algorithm "AWS4-HMAC-SHA256-TRAILER", no empty-string hash line) pass trailer = true and the
 * SHA-256 of the canonical trailing headers. Into out[DFS_SIGV4_HEX_LEN + 1]; 0 or
 * DFS_EINTERNAL.
 */
int dfs_sigv4_chunk_signature(const struct dfs_sigv4_auth *auth, const char *previous,
                              const uint8_t data_sha256[32], bool trailer,
                              char out[DFS_SIGV4_HEX_LEN + 1]);

/* Whether two signatures (DFS_SIGV4_HEX_LEN hex digits each) are equal, in constant time;
 * upper-case digits in `given` count as their lower-case ones. */
bool dfs_sigv4_signature_equal(const char *want, const char *given);

/*
 * The body of a request whose payload is not aws-chunked, checked as it streams: create for an
 * auth (DFS_SIGV4_PAYLOAD_UNSIGNED or _SHA256; NULL when out of memory or for the streaming
 * kinds), feed every byte in order, then finish: 0, or XAmzContentSHA256Mismatch in *err. Until
 * finish succeeds, what was fed is unproven and must not become visible.
 */
typedef struct dfs_sigv4_body dfs_sigv4_body;

dfs_sigv4_body *dfs_sigv4_body_create(const struct dfs_sigv4_auth *auth);
void dfs_sigv4_body_update(dfs_sigv4_body *b, const void *data, size_t len);
int dfs_sigv4_body_finish(dfs_sigv4_body *b, struct dfs_s3err *err);
void dfs_sigv4_body_destroy(dfs_sigv4_body *b);

#endif /* DFS_GATEWAY_S3_SIGV4_H */
