/* The XML documents of S3: response bodies, and the request bodies clients send. */
#include "gateway/s3/s3xml.h"

#include "common/err.h"
#include "gateway/s3/s3http.h"
#include "gateway/s3/s3time.h"
#include "gateway/s3/xml.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Responses ---- */

static dfs_xml_writer *start(const char *root)
{
    dfs_xml_writer *w = dfs_xml_writer_create();
    if (w != NULL)
        dfs_xml_open(w, root, DFS_S3XML_NS);
    return w;
}

static int finish(dfs_xml_writer *w, char **out, size_t *len, char **errmsg)
{
    if (w == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    dfs_xml_close(w);
    int rc = dfs_xml_writer_finish(w, out, len, errmsg);
    dfs_xml_writer_destroy(w);
    return rc;
}

static void time_el(dfs_xml_writer *w, const char *name, int64_t ms)
{
    char t[DFS_S3TIME_ISO_LEN + 1];
    dfs_s3time_format_iso_ms(ms, t);
    dfs_xml_text(w, name, t);
}

static void owner_el(dfs_xml_writer *w, const char *name, const struct dfs_s3xml_owner *o)
{
    dfs_xml_open(w, name, NULL);
    dfs_xml_text(w, "ID", o->id);
    dfs_xml_text(w, "DisplayName", o->display_name);
    dfs_xml_close(w);
}

/* A key or prefix, percent-encoded when the request asked for encoding-type=url. */
static void key_el(dfs_xml_writer *w, const char *name, const char *s, bool url)
{
    if (!url || s == NULL) {
        dfs_xml_text(w, name, s);
        return;
    }
    char *e = dfs_s3http_encode(s, strlen(s), true);
    if (e == NULL) {
        /* Out of memory: an unbalanced document makes finish fail, which it must. */
        dfs_xml_open(w, name, NULL);
        return;
    }
    dfs_xml_text(w, name, e);
    free(e);
}

int dfs_s3xml_list_buckets(const struct dfs_s3xml_owner *owner,
                           const struct dfs_s3xml_bucket *buckets, size_t n, char **out,
                           size_t *len, char **errmsg)
{
    dfs_xml_writer *w = start("ListAllMyBucketsResult");
    if (w != NULL) {
        owner_el(w, "Owner", owner);
        dfs_xml_open(w, "Buckets", NULL);
        for (size_t i = 0; i < n; i++) {
            dfs_xml_open(w, "Bucket", NULL);
            dfs_xml_text(w, "Name", buckets[i].name);
            time_el(w, "CreationDate", buckets[i].created_ms);
            dfs_xml_close(w);
        }
        dfs_xml_close(w);
    }
    return finish(w, out, len, errmsg);
}

static void prefixes_el(dfs_xml_writer *w, const char *const *p, size_t n, bool url)
{
    for (size_t i = 0; i < n; i++) {
        dfs_xml_open(w, "CommonPrefixes", NULL);
        key_el(w, "Prefix", p[i], url);
        dfs_xml_close(w);
    }
}

int dfs_s3xml_list_objects(const struct dfs_s3xml_listing *l, char **out, size_t *len,
                           char **errmsg)
{
    if (l->version != 1 && l->version != 2)
        return dfs_seterr(errmsg, DFS_EINVAL, "listing version %d", l->version);
    bool url = l->url_encoding;
    dfs_xml_writer *w = start("ListBucketResult");
    if (w != NULL) {
        dfs_xml_text(w, "Name", l->bucket);
        key_el(w, "Prefix", l->prefix != NULL ? l->prefix : "", url);
        if (l->version == 1) {
            key_el(w, "Marker", l->marker != NULL ? l->marker : "", url);
            if (l->next_marker != NULL)
                key_el(w, "NextMarker", l->next_marker, url);
        } else {
            if (l->start_after != NULL)
                key_el(w, "StartAfter", l->start_after, url);
            if (l->continuation_token != NULL)
                dfs_xml_text(w, "ContinuationToken", l->continuation_token);
            if (l->next_continuation_token != NULL)
                dfs_xml_text(w, "NextContinuationToken", l->next_continuation_token);
            dfs_xml_u64(w, "KeyCount", l->nobjects + l->nprefixes);
        }
        dfs_xml_u64(w, "MaxKeys", l->max_keys);
        if (l->delimiter != NULL)
            key_el(w, "Delimiter", l->delimiter, url);
        if (url)
            dfs_xml_text(w, "EncodingType", "url");
        dfs_xml_bool(w, "IsTruncated", l->truncated);
        for (size_t i = 0; i < l->nobjects; i++) {
            const struct dfs_s3xml_object *o = &l->objects[i];
            dfs_xml_open(w, "Contents", NULL);
            key_el(w, "Key", o->key, url);
            time_el(w, "LastModified", o->last_modified_ms);
            dfs_xml_text(w, "ETag", o->etag);
            dfs_xml_u64(w, "Size", o->size);
            if (o->owner != NULL)
                owner_el(w, "Owner", o->owner);
            dfs_xml_text(w, "StorageClass", "STANDARD");
            dfs_xml_close(w);
        }
        prefixes_el(w, l->prefixes, l->nprefixes, url);
    }
    return finish(w, out, len, errmsg);
}

int dfs_s3xml_initiate_upload(const char *bucket, const char *key, const char *upload_id,
                              char **out, size_t *len, char **errmsg)
{
    dfs_xml_writer *w = start("InitiateMultipartUploadResult");
    if (w != NULL) {
        dfs_xml_text(w, "Bucket", bucket);
        dfs_xml_text(w, "Key", key);
        dfs_xml_text(w, "UploadId", upload_id);
    }
    return finish(w, out, len, errmsg);
}

int dfs_s3xml_complete_upload(const char *location, const char *bucket, const char *key,
                              const char *etag, char **out, size_t *len, char **errmsg)
{
    dfs_xml_writer *w = start("CompleteMultipartUploadResult");
    if (w != NULL) {
        dfs_xml_text(w, "Location", location);
        dfs_xml_text(w, "Bucket", bucket);
        dfs_xml_text(w, "Key", key);
        dfs_xml_text(w, "ETag", etag);
    }
    return finish(w, out, len, errmsg);
}

int dfs_s3xml_list_parts(const struct dfs_s3xml_parts *p, char **out, size_t *len, char **errmsg)
{
    dfs_xml_writer *w = start("ListPartsResult");
    if (w != NULL) {
        dfs_xml_text(w, "Bucket", p->bucket);
        dfs_xml_text(w, "Key", p->key);
        dfs_xml_text(w, "UploadId", p->upload_id);
        owner_el(w, "Initiator", p->owner);
        owner_el(w, "Owner", p->owner);
        dfs_xml_text(w, "StorageClass", "STANDARD");
        dfs_xml_u64(w, "PartNumberMarker", p->part_number_marker);
        dfs_xml_u64(w, "NextPartNumberMarker", p->next_part_number_marker);
        dfs_xml_u64(w, "MaxParts", p->max_parts);
        dfs_xml_bool(w, "IsTruncated", p->truncated);
        for (size_t i = 0; i < p->nparts; i++) {
            dfs_xml_open(w, "Part", NULL);
            dfs_xml_u64(w, "PartNumber", p->parts[i].number);
            time_el(w, "LastModified", p->parts[i].last_modified_ms);
            dfs_xml_text(w, "ETag", p->parts[i].etag);
            dfs_xml_u64(w, "Size", p->parts[i].size);
            dfs_xml_close(w);
        }
    }
    return finish(w, out, len, errmsg);
}

int dfs_s3xml_list_uploads(const struct dfs_s3xml_uploads *u, char **out, size_t *len,
                           char **errmsg)
{
    bool url = u->url_encoding;
    dfs_xml_writer *w = start("ListMultipartUploadsResult");
    if (w != NULL) {
        dfs_xml_text(w, "Bucket", u->bucket);
        key_el(w, "KeyMarker", u->key_marker != NULL ? u->key_marker : "", url);
        dfs_xml_text(w, "UploadIdMarker", u->upload_id_marker != NULL ? u->upload_id_marker : "");
        if (u->next_key_marker != NULL)
            key_el(w, "NextKeyMarker", u->next_key_marker, url);
        if (u->next_upload_id_marker != NULL)
            dfs_xml_text(w, "NextUploadIdMarker", u->next_upload_id_marker);
        if (u->delimiter != NULL)
            key_el(w, "Delimiter", u->delimiter, url);
        if (u->prefix != NULL)
            key_el(w, "Prefix", u->prefix, url);
        dfs_xml_u64(w, "MaxUploads", u->max_uploads);
        if (url)
            dfs_xml_text(w, "EncodingType", "url");
        dfs_xml_bool(w, "IsTruncated", u->truncated);
        for (size_t i = 0; i < u->nuploads; i++) {
            dfs_xml_open(w, "Upload", NULL);
            key_el(w, "Key", u->uploads[i].key, url);
            dfs_xml_text(w, "UploadId", u->uploads[i].upload_id);
            owner_el(w, "Initiator", u->owner);
            owner_el(w, "Owner", u->owner);
            dfs_xml_text(w, "StorageClass", "STANDARD");
            time_el(w, "Initiated", u->uploads[i].initiated_ms);
            dfs_xml_close(w);
        }
        prefixes_el(w, u->prefixes, u->nprefixes, url);
    }
    return finish(w, out, len, errmsg);
}

int dfs_s3xml_copy_result(bool part, const char *etag, int64_t last_modified_ms, char **out,
                          size_t *len, char **errmsg)
{
    dfs_xml_writer *w = start(part ? "CopyPartResult" : "CopyObjectResult");
    if (w != NULL) {
        time_el(w, "LastModified", last_modified_ms);
        dfs_xml_text(w, "ETag", etag);
    }
    return finish(w, out, len, errmsg);
}

int dfs_s3xml_delete_result(bool quiet, const char *const *deleted, size_t ndeleted,
                            const struct dfs_s3xml_delete_error *errors, size_t nerrors, char **out,
                            size_t *len, char **errmsg)
{
    dfs_xml_writer *w = start("DeleteResult");
    if (w != NULL) {
        for (size_t i = 0; !quiet && i < ndeleted; i++) {
            dfs_xml_open(w, "Deleted", NULL);
            dfs_xml_text(w, "Key", deleted[i]);
            dfs_xml_close(w);
        }
        for (size_t i = 0; i < nerrors; i++) {
            dfs_xml_open(w, "Error", NULL);
            dfs_xml_text(w, "Key", errors[i].key);
            dfs_xml_text(w, "Code", dfs_s3err_name(errors[i].code));
            dfs_xml_text(w, "Message",
                         errors[i].message != NULL ? errors[i].message
                                                   : dfs_s3err_default_message(errors[i].code));
            dfs_xml_close(w);
        }
    }
    return finish(w, out, len, errmsg);
}

int dfs_s3xml_location(const char *region, char **out, size_t *len, char **errmsg)
{
    dfs_xml_writer *w = start("LocationConstraint");
    if (w != NULL)
        dfs_xml_chars(w, region != NULL ? region : "");
    return finish(w, out, len, errmsg);
}

/* ---- Request bodies ---- */

static const struct dfs_xml_limits body_limits = {
    .max_bytes = DFS_S3XML_MAX_BODY,
    .max_depth = 8,
    .max_nodes = 100000,
};

static int malformed(struct dfs_s3err *err, const char *what)
{
    return dfs_s3err_set(err, DFS_S3ERR_MALFORMED_XML, "%s", what);
}

static int parse(const char *body, size_t len, const char *root, dfs_xml_doc **doc,
                 struct dfs_s3err *err)
{
    char *msg = NULL;
    int rc = dfs_xml_parse(body, len, &body_limits, doc, &msg);
    if (rc == DFS_ENOMEM) {
        free(msg);
        return dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    }
    if (rc != DFS_OK) {
        rc = dfs_s3err_set(err, DFS_S3ERR_MALFORMED_XML, "%s", msg != NULL ? msg : "bad XML");
        free(msg);
        return rc;
    }
    if (strcmp(dfs_xml_name(dfs_xml_root(*doc)), root) != 0) {
        dfs_xml_doc_destroy(*doc);
        *doc = NULL;
        return dfs_s3err_set(err, DFS_S3ERR_MALFORMED_XML, "the root element must be <%s>", root);
    }
    return DFS_OK;
}

/* An element that holds only text (no child elements). */
static bool leaf(const dfs_xml_node *n)
{
    return dfs_xml_first_child(n) == NULL;
}

/* A container: child elements and white space only. */
static bool container(const dfs_xml_node *n)
{
    return !dfs_xml_has_text(n);
}

/* Text trimmed of XML white space, copied. */
static char *trimmed(const dfs_xml_node *n)
{
    size_t len;
    const char *s = dfs_xml_content(n, &len);
    while (len > 0 && strchr(" \t\r\n", s[0]) != NULL) {
        s++;
        len--;
    }
    while (len > 0 && strchr(" \t\r\n", s[len - 1]) != NULL)
        len--;
    return strndup(s, len);
}

static bool parse_part_number(const char *s, uint32_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v < 1 || v > 10000)
        return false;
    *out = v;
    return true;
}

void dfs_s3xml_complete_free(struct dfs_s3xml_complete *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->parts[i].etag);
    free(c->parts);
    c->parts = NULL;
    c->n = 0;
}

static bool is_checksum(const char *name)
{
    static const char *const names[] = {"ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME",
                                        "ChecksumSHA1", "ChecksumSHA256"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i]) == 0)
            return true;
    }
    return false;
}

int dfs_s3xml_parse_complete(const char *body, size_t len, struct dfs_s3xml_complete *out,
                             struct dfs_s3err *err)
{
    memset(out, 0, sizeof *out);
    dfs_xml_doc *doc = NULL;
    int rc = parse(body, len, "CompleteMultipartUpload", &doc, err);
    if (rc != DFS_OK)
        return rc;
    const dfs_xml_node *root = dfs_xml_root(doc);
    size_t cap = 0;
    rc = DFS_OK;
    if (!container(root))
        rc = malformed(err, "text directly inside <CompleteMultipartUpload>");
    for (const dfs_xml_node *p = dfs_xml_first_child(root); rc == DFS_OK && p != NULL;
         p = dfs_xml_next(p)) {
        if (strcmp(dfs_xml_name(p), "Part") != 0 || !container(p)) {
            rc = malformed(err, "<CompleteMultipartUpload> holds only <Part> elements");
            break;
        }
        if (out->n == DFS_S3XML_MAX_PARTS) {
            rc = malformed(err, "more than 10000 parts");
            break;
        }
        const dfs_xml_node *num = NULL, *etag = NULL;
        for (const dfs_xml_node *f = dfs_xml_first_child(p); f != NULL; f = dfs_xml_next(f)) {
            const char *name = dfs_xml_name(f);
            const dfs_xml_node **slot = strcmp(name, "PartNumber") == 0 ? &num
                                        : strcmp(name, "ETag") == 0     ? &etag
                                                                        : NULL;
            if (slot == NULL && is_checksum(name) && leaf(f))
                continue;
            if (slot == NULL || *slot != NULL || !leaf(f)) {
                rc = malformed(err, "a <Part> holds one <PartNumber>, one <ETag>, and checksums");
                break;
            }
            *slot = f;
        }
        if (rc != DFS_OK)
            break;
        if (num == NULL || etag == NULL) {
            rc = malformed(err, "a <Part> without <PartNumber> or <ETag>");
            break;
        }
        char *ns = trimmed(num);
        char *es = trimmed(etag);
        uint32_t number = 0;
        bool ok = ns != NULL && es != NULL;
        if (ok && !parse_part_number(ns, &number)) {
            free(ns);
            free(es);
            rc = dfs_s3err_set(err, DFS_S3ERR_INVALID_ARGUMENT,
                               "Part number must be an integer between 1 and 10000, inclusive");
            break;
        }
        free(ns);
        if (ok && out->n == cap) {
            size_t c = cap ? cap * 2 : 16;
            struct dfs_s3xml_complete_part *np = realloc(out->parts, c * sizeof *np);
            ok = np != NULL;
            if (ok) {
                out->parts = np;
                cap = c;
            }
        }
        if (!ok) {
            free(es);
            rc = dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
            break;
        }
        if (out->n > 0 && number <= out->parts[out->n - 1].number) {
            free(es);
            rc = dfs_s3err_set(err, DFS_S3ERR_INVALID_PART_ORDER, "part %u comes after part %u",
                               number, out->parts[out->n - 1].number);
            break;
        }
        out->parts[out->n].number = number;
        out->parts[out->n].etag = es;
        out->n++;
    }
    if (rc == DFS_OK && out->n == 0)
        rc = malformed(err, "a <CompleteMultipartUpload> without parts");
    dfs_xml_doc_destroy(doc);
    if (rc != DFS_OK)
        dfs_s3xml_complete_free(out);
    return rc;
}

void dfs_s3xml_delete_free(struct dfs_s3xml_delete *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->keys[i]);
    free(d->keys);
    d->keys = NULL;
    d->n = 0;
}

int dfs_s3xml_parse_delete(const char *body, size_t len, struct dfs_s3xml_delete *out,
                           struct dfs_s3err *err)
{
    memset(out, 0, sizeof *out);
    dfs_xml_doc *doc = NULL;
    int rc = parse(body, len, "Delete", &doc, err);
    if (rc != DFS_OK)
        return rc;
    const dfs_xml_node *root = dfs_xml_root(doc);
    bool quiet_seen = false;
    rc = DFS_OK;
    if (!container(root))
        rc = malformed(err, "text directly inside <Delete>");
    for (const dfs_xml_node *o = dfs_xml_first_child(root); rc == DFS_OK && o != NULL;
         o = dfs_xml_next(o)) {
        const char *name = dfs_xml_name(o);
        if (strcmp(name, "Quiet") == 0) {
            char *q = leaf(o) && !quiet_seen ? trimmed(o) : NULL;
            if (q != NULL && (strcasecmp(q, "true") == 0 || strcasecmp(q, "false") == 0)) {
                out->quiet = strcasecmp(q, "true") == 0;
                quiet_seen = true;
            } else {
                rc = malformed(err, "<Quiet> must be true or false, once");
            }
            free(q);
            continue;
        }
        if (strcmp(name, "Object") != 0 || !container(o)) {
            rc = malformed(err, "<Delete> holds <Object> elements and <Quiet>");
            break;
        }
        if (out->n == DFS_S3XML_MAX_DELETE) {
            rc = malformed(err, "more than 1000 objects to delete");
            break;
        }
        const dfs_xml_node *key = NULL, *version = NULL;
        for (const dfs_xml_node *f = dfs_xml_first_child(o); f != NULL; f = dfs_xml_next(f)) {
            const char *fname = dfs_xml_name(f);
            const dfs_xml_node **slot = strcmp(fname, "Key") == 0         ? &key
                                        : strcmp(fname, "VersionId") == 0 ? &version
                                                                          : NULL;
            /* ETag, LastModifiedTime and Size are S3's conditions on the delete: refused below. */
            if (slot == NULL || *slot != NULL || !leaf(f)) {
                rc = malformed(err, "an <Object> holds one <Key> and maybe a <VersionId>");
                break;
            }
            *slot = f;
        }
        if (rc != DFS_OK)
            break;
        if (key == NULL) {
            rc = dfs_s3err_set(err, DFS_S3ERR_MALFORMED_XML, "an <Object> without a <Key>");
            break;
        }
        if (version != NULL) {
            char *v = trimmed(version);
            bool null_version = v != NULL && strcmp(v, "null") == 0;
            free(v);
            if (!null_version) {
                rc = dfs_s3err_set(err, DFS_S3ERR_NOT_IMPLEMENTED, "dfs keeps no object versions");
                break;
            }
        }
        size_t klen;
        const char *k = dfs_xml_content(key, &klen);
        if (klen == 0 || klen > 1024) {
            rc = dfs_s3err_set(err, klen == 0 ? DFS_S3ERR_MALFORMED_XML : DFS_S3ERR_KEY_TOO_LONG,
                               "a key must be 1 to 1024 bytes");
            break;
        }
        if (out->n % 64 == 0) {
            char **nk = realloc(out->keys, (out->n + 64) * sizeof *nk);
            if (nk == NULL) {
                rc = dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
                break;
            }
            out->keys = nk;
        }
        out->keys[out->n] = strndup(k, klen);
        if (out->keys[out->n] == NULL) {
            rc = dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
            break;
        }
        out->n++;
    }
    if (rc == DFS_OK && out->n == 0)
        rc = malformed(err, "a <Delete> without objects");
    dfs_xml_doc_destroy(doc);
    if (rc != DFS_OK)
        dfs_s3xml_delete_free(out);
    return rc;
}

int dfs_s3xml_parse_create_bucket(const char *body, size_t len, char **location,
                                  struct dfs_s3err *err)
{
    *location = NULL;
    size_t i = 0;
    while (i < len && strchr(" \t\r\n", body[i]) != NULL && body[i] != '\0')
        i++;
    if (i == len) {
        *location = strdup("");
        return *location != NULL ? DFS_OK
                                 : dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    }
    dfs_xml_doc *doc = NULL;
    int rc = parse(body, len, "CreateBucketConfiguration", &doc, err);
    if (rc != DFS_OK)
        return rc;
    const dfs_xml_node *root = dfs_xml_root(doc);
    const dfs_xml_node *lc = NULL;
    rc = container(root) ? DFS_OK : malformed(err, "text directly inside the configuration");
    for (const dfs_xml_node *f = dfs_xml_first_child(root); rc == DFS_OK && f != NULL;
         f = dfs_xml_next(f)) {
        if (strcmp(dfs_xml_name(f), "LocationConstraint") != 0 || lc != NULL || !leaf(f))
            rc = dfs_s3err_set(err,
                               strcmp(dfs_xml_name(f), "LocationConstraint") != 0
                                   ? DFS_S3ERR_NOT_IMPLEMENTED
                                   : DFS_S3ERR_MALFORMED_XML,
                               "a bucket configuration holds one <LocationConstraint> and "
                               "nothing else dfs knows");
        lc = f;
    }
    if (rc == DFS_OK) {
        *location = lc != NULL ? trimmed(lc) : strdup("");
        if (*location == NULL)
            rc = dfs_s3err_set(err, DFS_S3ERR_INTERNAL_ERROR, "out of memory");
    }
    dfs_xml_doc_destroy(doc);
    return rc;
}
