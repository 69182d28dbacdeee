/* aws-chunked request bodies: decoded as they arrive, each chunk's signature checked. */
#ifndef DFS_GATEWAY_S3_CHUNKED_H
#define DFS_GATEWAY_S3_CHUNKED_H

#include "gateway/s3/s3err.h"
#include "gateway/s3/s3http.h"
#include "gateway/s3/sigv4.h"

#include <stddef.h>
#include <stdint.h>

/*
 * The body of a request whose x-amz-content-sha256 is one of the STREAMING-* values (S3's
 * "Transferring Payload in Multiple Chunks" and "Signature calculations for trailing headers"):
 *
 *   body    = chunk* last-chunk trailer* CRLF
 *   chunk   = hex-size [";chunk-signature=" sig] CRLF data CRLF     (hex-size > 0)
 *   last    = "0" [";chunk-signature=" sig] CRLF
 *   trailer = name ":" value CRLF                                   (only the -TRAILER kinds)
 *
 * STREAMING-AWS4-HMAC-SHA256-PAYLOAD: every chunk signed (dfs_sigv4_chunk_signature), each
 * signature chained from the one before, the first from the request's own (the seed); no
 * trailers. STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER: the same, then trailers, the last of which
 * is "x-amz-trailer-signature:" sig over the trailers before it (as "name:value\n" each),
 * chained from the last chunk's. STREAMING-UNSIGNED-PAYLOAD-TRAILER: chunks without signatures
 * (chunk extensions are ignored) and unsigned trailers. Trailers must be named in the request's
 * x-amz-trailer header; at most DFS_CHUNKED_MAX_TRAILERS, each line at most DFS_CHUNKED_MAX_LINE
 * bytes, as chunk headers are. The data must add up to x-amz-decoded-content-length exactly. Signed
 * chunks follow S3's size rule: only the last chunk with data may be under 8 KiB.
 *
 * The body is fed in slices of any size as it arrives; payload bytes go to a sink as soon as they
 * are seen (pointers into the slice fed: nothing is buffered but one chunk header or trailer
 * line), so memory stays bounded whatever the body's size. A chunk's signature can only be checked
 * once all its data went by: what the sink received is unproven until dfs_chunked_finish succeeds,
 * and the caller must not make it visible before (a put is committed only then, or aborted).
 */
typedef struct dfs_chunked dfs_chunked;

#define DFS_CHUNKED_MAX_LINE     1024
#define DFS_CHUNKED_MAX_TRAILERS 8
#define DFS_CHUNKED_MIN_SIGNED   8192

/* Takes len payload bytes (borrowed for the call). Returns 0, or a DFS_E code to stop. */
typedef int (*dfs_chunked_sink)(void *arg, const uint8_t *data, size_t len);

/*
 * A decoder for req, whose signature auth verified with one of the STREAMING payload kinds. Reads
 * x-amz-decoded-content-length (required: MissingContentLength) and x-amz-trailer. The decoder
 * keeps a copy of what it needs of auth (and wipes it on destroy). Returns 0 and *out, or a
 * failure in *err.
 */
int dfs_chunked_create(const struct dfs_sigv4_auth *auth, const struct dfs_s3http_request *req,
                       dfs_chunked **out, struct dfs_s3err *err);

/*
 * Feed the next len bytes of the body. Payload goes to sink(arg, ...) in order. Returns 0, or the
 * first failure (in *err: InvalidRequest for malformed framing, SignatureDoesNotMatch,
 * InvalidChunkSizeError, IncompleteBody; or the sink's own code, with InternalError), after which
 * the decoder refuses everything.
 */
int dfs_chunked_feed(dfs_chunked *c, const void *data, size_t len, dfs_chunked_sink sink, void *arg,
                     struct dfs_s3err *err);

/*
 * The body ended: 0 when it was complete (the last chunk, its trailers and the final CRLF seen,
 * every signature good, the data exactly x-amz-decoded-content-length); IncompleteBody otherwise.
 */
int dfs_chunked_finish(dfs_chunked *c, struct dfs_s3err *err);

/* Payload bytes delivered so far. */
uint64_t dfs_chunked_decoded(const dfs_chunked *c);

/*
 * The value of trailer `name` (case-insensitive; x-amz-trailer-signature is not one), or NULL.
 * Valid once seen, until destroy; a trailing checksum is for the caller to compare.
 */
const char *dfs_chunked_trailer(const dfs_chunked *c, const char *name);

/* Frees the decoder (NULL: nothing). */
void dfs_chunked_destroy(dfs_chunked *c);

#endif /* DFS_GATEWAY_S3_CHUNKED_H */
