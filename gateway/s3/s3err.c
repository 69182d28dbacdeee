/* S3 errors: one table of S3 error codes (name, HTTP status, message), and the XML error body. */
#include "gateway/s3/s3err.h"

#include "common/err.h"
#include "gateway/s3/xml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct row {
    const char *name;
    int http;
    int dfs;
    const char *message;
};

/* Names, statuses and messages as Amazon S3 documents them (API reference, "Error responses"). */
static const struct row table[DFS_S3ERR_COUNT] = {
    [DFS_S3ERR_NONE] = {"", 200, DFS_OK, ""},
    [DFS_S3ERR_ACCESS_DENIED] = {"AccessDenied", 403, DFS_EPERM, "Access Denied"},
    [DFS_S3ERR_AUTHORIZATION_HEADER_MALFORMED] =
        {"AuthorizationHeaderMalformed", 400, DFS_EUNAUTH,
         "The authorization header you provided is not valid."},
    [DFS_S3ERR_AUTHORIZATION_QUERY_PARAMETERS_ERROR] =
        {"AuthorizationQueryParametersError", 400, DFS_EUNAUTH,
         "The authorization query parameters you provided are not valid."},
    [DFS_S3ERR_BAD_DIGEST] = {"BadDigest", 400, DFS_EDATALOSS,
                              "The Content-MD5 you specified did not match what was received."},
    [DFS_S3ERR_BUCKET_ALREADY_EXISTS] =
        {"BucketAlreadyExists", 409, DFS_EEXIST,
         "The requested bucket name is not available. Please select a different name and try "
         "again."},
    [DFS_S3ERR_BUCKET_ALREADY_OWNED_BY_YOU] =
        {"BucketAlreadyOwnedByYou", 409, DFS_EEXIST,
         "Your previous request to create the named bucket succeeded and you already own it."},
    [DFS_S3ERR_BUCKET_NOT_EMPTY] = {"BucketNotEmpty", 409, DFS_EPRECOND,
                                    "The bucket you tried to delete is not empty."},
    [DFS_S3ERR_ENTITY_TOO_LARGE] = {"EntityTooLarge", 400, DFS_ENOSPC,
                                    "Your proposed upload exceeds the maximum allowed size."},
    [DFS_S3ERR_ENTITY_TOO_SMALL] =
        {"EntityTooSmall", 400, DFS_EINVAL,
         "Your proposed upload is smaller than the minimum allowed object size."},
    [DFS_S3ERR_INCOMPLETE_BODY] =
        {"IncompleteBody", 400, DFS_EINVAL,
         "You did not provide the number of bytes specified by the Content-Length HTTP header."},
    [DFS_S3ERR_INTERNAL_ERROR] = {"InternalError", 500, DFS_EINTERNAL,
                                  "We encountered an internal error. Please try again."},
    [DFS_S3ERR_INVALID_ACCESS_KEY_ID] =
        {"InvalidAccessKeyId", 403, DFS_EUNAUTH,
         "The AWS access key ID you provided does not exist in our records."},
    [DFS_S3ERR_INVALID_ARGUMENT] = {"InvalidArgument", 400, DFS_EINVAL, "Invalid Argument"},
    [DFS_S3ERR_INVALID_BUCKET_NAME] = {"InvalidBucketName", 400, DFS_EINVAL,
                                       "The specified bucket is not valid."},
    [DFS_S3ERR_INVALID_CHUNK_SIZE] =
        {"InvalidChunkSizeError", 403, DFS_EINVAL,
         "Only the last chunk is allowed to have a size less than 8192 bytes"},
    [DFS_S3ERR_INVALID_DIGEST] = {"InvalidDigest", 400, DFS_EINVAL,
                                  "The Content-MD5 you specified is not valid."},
    [DFS_S3ERR_INVALID_LOCATION_CONSTRAINT] = {"InvalidLocationConstraint", 400, DFS_EINVAL,
                                               "The specified location constraint is not valid."},
    [DFS_S3ERR_INVALID_PART] =
        {"InvalidPart", 400, DFS_EINVAL,
         "One or more of the specified parts could not be found. The part might not have been "
         "uploaded, or the specified entity tag might not have matched the part's entity tag."},
    [DFS_S3ERR_INVALID_PART_ORDER] =
        {"InvalidPartOrder", 400, DFS_EINVAL,
         "The list of parts was not in ascending order. The parts list must be specified in "
         "order by part number."},
    [DFS_S3ERR_INVALID_RANGE] = {"InvalidRange", 416, DFS_ERANGE,
                                 "The requested range is not satisfiable"},
    [DFS_S3ERR_INVALID_REQUEST] = {"InvalidRequest", 400, DFS_EINVAL, "Invalid Request"},
    [DFS_S3ERR_INVALID_URI] = {"InvalidURI", 400, DFS_EINVAL, "Couldn't parse the specified URI."},
    [DFS_S3ERR_KEY_TOO_LONG] = {"KeyTooLongError", 400, DFS_EINVAL, "Your key is too long"},
    [DFS_S3ERR_MALFORMED_XML] =
        {"MalformedXML", 400, DFS_EINVAL,
         "The XML you provided was not well-formed or did not validate against our published "
         "schema."},
    [DFS_S3ERR_METADATA_TOO_LARGE] =
        {"MetadataTooLarge", 400, DFS_EINVAL,
         "Your metadata headers exceed the maximum allowed metadata size."},
    [DFS_S3ERR_METHOD_NOT_ALLOWED] = {"MethodNotAllowed", 405, DFS_EINVAL,
                                      "The specified method is not allowed against this resource."},
    [DFS_S3ERR_MISSING_CONTENT_LENGTH] = {"MissingContentLength", 411, DFS_EINVAL,
                                          "You must provide the Content-Length HTTP header."},
    [DFS_S3ERR_MISSING_REQUEST_BODY] = {"MissingRequestBodyError", 400, DFS_EINVAL,
                                        "Request Body is empty"},
    [DFS_S3ERR_MISSING_SECURITY_HEADER] = {"MissingSecurityHeader", 400, DFS_EUNAUTH,
                                           "Your request is missing a required header."},
    [DFS_S3ERR_NO_SUCH_BUCKET] = {"NoSuchBucket", 404, DFS_ENOTFOUND,
                                  "The specified bucket does not exist"},
    [DFS_S3ERR_NO_SUCH_KEY] = {"NoSuchKey", 404, DFS_ENOTFOUND,
                               "The specified key does not exist."},
    [DFS_S3ERR_NO_SUCH_UPLOAD] =
        {"NoSuchUpload", 404, DFS_ENOTFOUND,
         "The specified multipart upload does not exist. The upload ID might not be valid, or "
         "the multipart upload might have been aborted or completed."},
    [DFS_S3ERR_NOT_IMPLEMENTED] =
        {"NotImplemented", 501, DFS_EINVAL,
         "A header or query you provided implies functionality that is not implemented."},
    [DFS_S3ERR_NOT_MODIFIED] = {"NotModified", 304, DFS_EPRECOND, "Not Modified"},
    [DFS_S3ERR_PRECONDITION_FAILED] =
        {"PreconditionFailed", 412, DFS_EPRECOND,
         "At least one of the preconditions you specified did not hold."},
    [DFS_S3ERR_REQUEST_TIME_TOO_SKEWED] =
        {"RequestTimeTooSkewed", 403, DFS_EUNAUTH,
         "The difference between the request time and the server's time is too large."},
    [DFS_S3ERR_REQUEST_TIMEOUT] =
        {"RequestTimeout", 400, DFS_ETIMEDOUT,
         "Your socket connection to the server was not read from or written to within the "
         "timeout period."},
    [DFS_S3ERR_SERVICE_UNAVAILABLE] = {"ServiceUnavailable", 503, DFS_EUNAVAIL,
                                       "Please reduce your request rate."},
    [DFS_S3ERR_SIGNATURE_DOES_NOT_MATCH] =
        {"SignatureDoesNotMatch", 403, DFS_EUNAUTH,
         "The request signature we calculated does not match the signature you provided. Check "
         "your key and signing method."},
    [DFS_S3ERR_SLOW_DOWN] = {"SlowDown", 503, DFS_EUNAVAIL, "Please reduce your request rate."},
    [DFS_S3ERR_CONTENT_SHA256_MISMATCH] =
        {"XAmzContentSHA256Mismatch", 400, DFS_EDATALOSS,
         "The provided 'x-amz-content-sha256' header does not match what was computed."},
};

static const struct row *row_of(enum dfs_s3err_code code)
{
    if ((int)code <= DFS_S3ERR_NONE || code >= DFS_S3ERR_COUNT)
        return NULL;
    return &table[code];
}

const char *dfs_s3err_name(enum dfs_s3err_code code)
{
    const struct row *r = row_of(code);
    return r != NULL ? r->name : "";
}

int dfs_s3err_http_status(enum dfs_s3err_code code)
{
    const struct row *r = row_of(code);
    return r != NULL ? r->http : 500;
}

int dfs_s3err_dfs_status(enum dfs_s3err_code code)
{
    const struct row *r = row_of(code);
    return r != NULL ? r->dfs : DFS_EINTERNAL;
}

const char *dfs_s3err_default_message(enum dfs_s3err_code code)
{
    const struct row *r = row_of(code);
    return r != NULL ? r->message : "";
}

enum dfs_s3err_code dfs_s3err_from_name(const char *name)
{
    for (int c = DFS_S3ERR_NONE + 1; c < DFS_S3ERR_COUNT; c++) {
        if (strcmp(table[c].name, name) == 0)
            return (enum dfs_s3err_code)c;
    }
    return DFS_S3ERR_NONE;
}

int dfs_s3err_set(struct dfs_s3err *e, enum dfs_s3err_code code, const char *fmt, ...)
{
    int status = dfs_s3err_dfs_status(code);
    if (e == NULL)
        return status;
    dfs_s3err_clear(e);
    e->code = code;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&e->message, fmt, ap) < 0)
            e->message = NULL;
        va_end(ap);
    }
    return status;
}

void dfs_s3err_add_extra(struct dfs_s3err *e, const char *name, const char *value)
{
    if (e == NULL)
        return;
    for (int k = 0; k < DFS_S3ERR_EXTRA_MAX; k++) {
        if (e->extra_name[k] != NULL)
            continue;
        e->extra_name[k] = strdup(name);
        e->extra_value[k] = strdup(value);
        if (e->extra_name[k] == NULL || e->extra_value[k] == NULL) {
            free(e->extra_name[k]);
            free(e->extra_value[k]);
            e->extra_name[k] = e->extra_value[k] = NULL;
        }
        return;
    }
}

void dfs_s3err_clear(struct dfs_s3err *e)
{
    if (e == NULL)
        return;
    free(e->message);
    for (int k = 0; k < DFS_S3ERR_EXTRA_MAX; k++) {
        free(e->extra_name[k]);
        free(e->extra_value[k]);
    }
    memset(e, 0, sizeof *e);
}

int dfs_s3err_body(const struct dfs_s3err *e, const char *resource, const char *request_id,
                   char **out, size_t *len)
{
    dfs_xml_writer *w = dfs_xml_writer_create();
    if (w == NULL)
        return DFS_ENOMEM;
    enum dfs_s3err_code code = row_of(e->code) != NULL ? e->code : DFS_S3ERR_INTERNAL_ERROR;
    dfs_xml_open(w, "Error", NULL);
    dfs_xml_text(w, "Code", dfs_s3err_name(code));
    dfs_xml_text(w, "Message", e->message != NULL ? e->message : dfs_s3err_default_message(code));
    for (int k = 0; k < DFS_S3ERR_EXTRA_MAX; k++) {
        if (e->extra_name[k] != NULL)
            dfs_xml_text(w, e->extra_name[k], e->extra_value[k]);
    }
    if (resource != NULL)
        dfs_xml_text(w, "Resource", resource);
    if (request_id != NULL)
        dfs_xml_text(w, "RequestId", request_id);
    dfs_xml_close(w);
    int rc = dfs_xml_writer_finish(w, out, len, NULL);
    dfs_xml_writer_destroy(w);
    return rc;
}
