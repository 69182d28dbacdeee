/* The form of every request the Metadata and Storage services take. */
#include "services/validate/validate.h"

#include "common/addr.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/id.h"
#include "common/path.h"
#include "common/receipt.h"
#include "common/token.h"
#include "storage/frag_header.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* What a client sent, fit to quote: at most DFS_VALIDATE_QUOTE_MAX bytes, printable ASCII. */
struct quote {
    char s[DFS_VALIDATE_QUOTE_MAX + 4];
};

static const char *q(const char *in, struct quote *out)
{
    size_t i = 0;
    for (; in != NULL && in[i] != '\0' && i < DFS_VALIDATE_QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)in[i];
        out->s[i] = c < 0x20 || c >= 0x7f || c == '"' || c == '\\' ? '?' : (char)c;
    }
    if (in != NULL && in[i] != '\0')
        memcpy(out->s + i, "...", 4);
    else
        out->s[i] = '\0';
    return out->s;
}

static int check_id(const char *what, const char *id, char **errmsg)
{
    if (dfs_id_valid(id))
        return DFS_OK;
    struct quote b;
    return dfs_seterr(errmsg, DFS_EINVAL, "%s \"%s\" is not an id (want %d lower-case hex digits)",
                      what, q(id, &b), DFS_ID_HEX);
}

static int check_fragment_id(const char *id, char **errmsg)
{
    if (dfs_fragment_id_valid(id))
        return DFS_OK;
    struct quote b;
    return dfs_seterr(errmsg, DFS_EINVAL,
                      "invalid fragment id \"%s\" (want %d lower-case hex digits)", q(id, &b),
                      DFS_FRAGMENT_ID_HEX);
}

static int check_path(const char *path, bool prefix, char **errmsg)
{
    char *canon = NULL;
    int rc =
        prefix ? dfs_path_prefix_canon(path, &canon, errmsg) : dfs_path_canon(path, &canon, errmsg);
    free(canon);
    return rc;
}

static int check_hostport(const char *what, size_t i, const char *addr, char **errmsg)
{
    if (dfs_addr_valid(addr, DFS_VALIDATE_ADDRESS_MAX))
        return DFS_OK;
    struct quote b;
    return dfs_seterr(errmsg, DFS_EINVAL, "%s[%zu] \"%s\" is not a host:port (at most %d bytes)",
                      what, i, q(addr, &b), DFS_VALIDATE_ADDRESS_MAX);
}

/* A node's usage figures go into SQLite integers. */
static int check_usage(uint64_t cap, uint64_t used, uint64_t free_b, uint64_t frags, char **errmsg)
{
    if (cap > INT64_MAX || used > INT64_MAX || free_b > INT64_MAX || frags > INT64_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "a usage figure is above %" PRId64, INT64_MAX);
    return DFS_OK;
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v)
{
    const ProtobufCEnumValue *e = protobuf_c_enum_descriptor_get_value(d, v);
    return e != NULL ? e->name : "an unknown value";
}

/* ---- dfs.v1.Metadata ---- */

int dfs_validate_register_node(const Dfs__V1__RegisterNodeRequest *req, char **errmsg)
{
    int rc = check_id("node_id", req->node_id, errmsg);
    if (rc == DFS_OK)
        rc = check_hostport("address", 0, req->address, errmsg);
    if (rc != DFS_OK)
        return rc;
    size_t n = strlen(req->zone);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)req->zone[i];
        if (c < 0x20 || c == 0x7f)
            return dfs_seterr(errmsg, DFS_EINVAL, "zone holds a control character (byte %zu)", i);
    }
    if (n > DFS_VALIDATE_ZONE_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "zone is %zu bytes, at most %d are allowed", n,
                          DFS_VALIDATE_ZONE_MAX);
    size_t idlen = strlen(req->node_token_id);
    if ((idlen == 0) != (req->node_token_sha256.len == 0))
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "node_token_id and node_token_sha256 come together (an enrollment)");
    if (idlen != 0 && (idlen != DFS_TOKEN_ID_HEX || !dfs_id_is_hex(req->node_token_id, idlen))) {
        struct quote b;
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "node_token_id \"%s\" is not a token id (want %d lower-case hex digits)",
                          q(req->node_token_id, &b), DFS_TOKEN_ID_HEX);
    }
    if (idlen != 0 && req->node_token_sha256.len != DFS_TOKEN_HASH_LEN)
        return dfs_seterr(errmsg, DFS_EINVAL, "node_token_sha256 must be %d bytes, not %zu",
                          DFS_TOKEN_HASH_LEN, req->node_token_sha256.len);
    return check_usage(req->capacity_bytes, req->used_bytes, req->free_bytes, req->fragment_count,
                       errmsg);
}

int dfs_validate_heartbeat(const Dfs__V1__HeartbeatRequest *req, char **errmsg)
{
    return check_usage(req->capacity_bytes, req->used_bytes, req->free_bytes, req->fragment_count,
                       errmsg);
}

int dfs_validate_file_layout(uint64_t fragment_size, uint32_t nfragments, uint32_t copies,
                             char **errmsg)
{
    if (fragment_size > DFS_FRAG_MAX_SIZE)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "fragments of %" PRIu64 " bytes: a storage node takes at most %" PRIu64,
                          fragment_size, DFS_FRAG_MAX_SIZE);
    uint64_t places = (uint64_t)nfragments * copies; /* two u32s: no overflow */
    if (places > 0 && fragment_size > (uint64_t)INT64_MAX / places)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "%" PRIu32 " fragments of %" PRIu64 " bytes on %" PRIu32
                          " nodes each add up to more than %" PRId64 " bytes",
                          nfragments, fragment_size, copies, INT64_MAX);
    return DFS_OK;
}

static int check_redundancy(const Dfs__V1__Redundancy *r, uint64_t size, char **errmsg)
{
    int scheme = (int)r->scheme;
    bool erasure = scheme == DFS__V1__REDUNDANCY__SCHEME__ERASURE ||
                   (scheme == DFS__V1__REDUNDANCY__SCHEME__SCHEME_UNSPECIFIED &&
                    (r->data != 0 || r->parity != 0));
    if (scheme < DFS__V1__REDUNDANCY__SCHEME__SCHEME_UNSPECIFIED ||
        scheme > DFS__V1__REDUNDANCY__SCHEME__ERASURE)
        return dfs_seterr(errmsg, DFS_EINVAL, "unknown redundancy scheme %d", scheme);
    if (!erasure) {
        if (r->replicas > DFS_VALIDATE_REPLICAS_MAX)
            return dfs_seterr(errmsg, DFS_EINVAL, "replicas must be 1..%d, not %" PRIu32,
                              DFS_VALIDATE_REPLICAS_MAX, r->replicas);
        if (r->fragments > DFS_VALIDATE_FRAGMENTS_MAX)
            return dfs_seterr(errmsg, DFS_EINVAL, "fragments must be 1..%d, not %" PRIu32,
                              DFS_VALIDATE_FRAGMENTS_MAX, r->fragments);
        if (r->data != 0 || r->parity != 0)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "replication takes no data or parity fragment counts");
        if (r->replicas == 0 || r->fragments == 0)
            return DFS_OK; /* the cluster's defaults: the handler checks the layout */
        uint64_t fragment_size = size / r->fragments + (size % r->fragments != 0);
        return dfs_validate_file_layout(fragment_size, r->fragments, r->replicas, errmsg);
    }
    /* 64-bit sum: K + M must not wrap. */
    if (r->data < 1 || (uint64_t)r->data + r->parity > DFS_VALIDATE_EC_WIDTH_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "erasure code %" PRIu32 "+%" PRIu32
                          ": need at least 1 data fragment and at most %d in all",
                          r->data, r->parity, DFS_VALIDATE_EC_WIDTH_MAX);
    if (r->replicas != 0 || r->fragments != 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "erasure code takes no replica or fragment counts");
    uint64_t fragment_size = size / r->data + (size % r->data != 0);
    return dfs_validate_file_layout(fragment_size, r->data + r->parity, 1, errmsg);
}

int dfs_validate_create_file(const Dfs__V1__CreateFileRequest *req, char **errmsg)
{
    int rc = check_path(req->path, false, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (req->size > (uint64_t)INT64_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "file size %" PRIu64 " is too large", req->size);
    int policy = (int)req->policy;
    if (policy < DFS__V1__POLICY__POLICY_UNSPECIFIED || policy > DFS__V1__POLICY__POLICY_LEAST_USED)
        return dfs_seterr(errmsg, DFS_EINVAL, "unknown placement policy %d", policy);
    return req->redundancy != NULL ? check_redundancy(req->redundancy, req->size, errmsg) : DFS_OK;
}

int dfs_validate_replace_target(const Dfs__V1__ReplaceTargetRequest *req, char **errmsg)
{
    int rc = check_id("file_id", req->file_id, errmsg);
    if (rc == DFS_OK)
        rc = check_id("failed_node_id", req->failed_node_id, errmsg);
    if (rc == DFS_OK && req->fragment_index >= DFS_VALIDATE_FRAGMENTS_MAX)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "fragment_index %" PRIu32 " is not below %d",
                        req->fragment_index, DFS_VALIDATE_FRAGMENTS_MAX);
    return rc;
}

int dfs_validate_commit_file(const Dfs__V1__CommitFileRequest *req, char **errmsg)
{
    int rc = check_id("file_id", req->file_id, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (req->sha256.len != 32)
        return dfs_seterr(errmsg, DFS_EINVAL, "sha256 must be 32 bytes, not %zu", req->sha256.len);
    if (req->n_fragments < 1 || req->n_fragments > DFS_VALIDATE_FRAGMENTS_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "a commit lists 1..%d fragments, not %zu",
                          DFS_VALIDATE_FRAGMENTS_MAX, req->n_fragments);
    uint64_t seen[DFS_VALIDATE_FRAGMENTS_MAX / 64] = {0};
    for (size_t i = 0; i < req->n_fragments; i++) {
        const Dfs__V1__CommitFragment *f = req->fragments[i];
        if (f->index >= DFS_VALIDATE_FRAGMENTS_MAX)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "fragments[%zu]: index %" PRIu32 " is not below %d", i, f->index,
                              DFS_VALIDATE_FRAGMENTS_MAX);
        if (seen[f->index / 64] & (1ull << (f->index % 64)))
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "fragments[%zu]: index %" PRIu32 " is listed twice", i, f->index);
        seen[f->index / 64] |= 1ull << (f->index % 64);
        if (f->size > DFS_FRAG_MAX_SIZE)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "fragments[%zu]: size %" PRIu64 " is above %" PRIu64, i, f->size,
                              DFS_FRAG_MAX_SIZE);
        if (f->n_node_ids < 1 || f->n_node_ids > DFS_VALIDATE_EC_WIDTH_MAX)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "fragment %" PRIu32 ": 1..%d acknowledging nodes, not %zu", f->index,
                              DFS_VALIDATE_EC_WIDTH_MAX, f->n_node_ids);
        for (size_t j = 0; j < f->n_node_ids; j++) {
            if ((rc = check_id("node_ids", f->node_ids[j], errmsg)) != DFS_OK)
                return dfs_prefixerr(errmsg, rc, "fragment %" PRIu32, f->index);
            for (size_t k = 0; k < j; k++)
                if (strcmp(f->node_ids[j], f->node_ids[k]) == 0)
                    return dfs_seterr(errmsg, DFS_EINVAL,
                                      "fragment %" PRIu32 ": node %s is listed twice", f->index,
                                      f->node_ids[j]);
        }
        /* Receipts are checked by the service (it holds the keys); their shape here. */
        if (f->n_receipts != 0 && f->n_receipts != f->n_node_ids)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "fragment %" PRIu32 ": %zu receipts for %zu nodes (one each)",
                              f->index, f->n_receipts, f->n_node_ids);
        for (size_t j = 0; j < f->n_receipts; j++)
            if (f->receipts[j].len != 0 && f->receipts[j].len != DFS_RECEIPT_LEN)
                return dfs_seterr(errmsg, DFS_EINVAL,
                                  "fragment %" PRIu32 ": receipts[%zu] is %zu bytes, not %d",
                                  f->index, j, f->receipts[j].len, DFS_RECEIPT_LEN);
    }
    return DFS_OK;
}

int dfs_validate_stitch_file(const Dfs__V1__StitchFileRequest *req, char **errmsg)
{
    int rc = check_path(req->path, false, errmsg);
    if (rc != DFS_OK)
        return dfs_prefixerr(errmsg, rc, "path");
    if (req->n_parts < 1 || req->n_parts > DFS_VALIDATE_STITCH_PARTS_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "a stitched file has 1..%d parts, not %zu",
                          DFS_VALIDATE_STITCH_PARTS_MAX, req->n_parts);
    for (size_t i = 0; i < req->n_parts; i++) {
        if ((rc = check_path(req->parts[i], false, errmsg)) != DFS_OK)
            return dfs_prefixerr(errmsg, rc, "parts[%zu]", i);
        if (strcmp(req->parts[i], req->path) == 0)
            return dfs_seterr(errmsg, DFS_EINVAL, "parts[%zu] is the stitched file's own path", i);
    }
    if (req->md5.len != 0 && req->md5.len != 16)
        return dfs_seterr(errmsg, DFS_EINVAL, "md5 must be 16 bytes or none, not %zu",
                          req->md5.len);
    if (req->meta.len > 8192)
        return dfs_seterr(errmsg, DFS_EINVAL, "meta is at most 8192 bytes, not %zu", req->meta.len);
    if (req->if_file_id[0] != '\0')
        return check_id("if_file_id", req->if_file_id, errmsg);
    return DFS_OK;
}

int dfs_validate_abort_file(const Dfs__V1__AbortFileRequest *req, char **errmsg)
{
    return check_id("file_id", req->file_id, errmsg);
}

int dfs_validate_get_file(const Dfs__V1__GetFileRequest *req, char **errmsg)
{
    return check_path(req->path, false, errmsg);
}

int dfs_validate_list_files(const Dfs__V1__ListFilesRequest *req, char **errmsg)
{
    int rc = check_path(req->prefix, true, errmsg);
    if (rc != DFS_OK || req->page_token[0] == '\0')
        return rc;
    char *canon = NULL;
    rc = dfs_path_canon(req->page_token, &canon, NULL);
    bool same = rc == DFS_OK && strcmp(canon, req->page_token) == 0;
    free(canon);
    if (!same) {
        struct quote b;
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "page_token \"%s\" is not one this service gave (a canonical path)",
                          q(req->page_token, &b));
    }
    return DFS_OK;
}

int dfs_validate_delete_file(const Dfs__V1__DeleteFileRequest *req, char **errmsg)
{
    return check_path(req->path, false, errmsg);
}

int dfs_validate_rename(const Dfs__V1__RenameRequest *req, char **errmsg)
{
    char *from = NULL, *to = NULL;
    int rc = dfs_path_canon(req->from, &from, errmsg);
    if (rc == DFS_OK)
        rc = dfs_path_canon(req->to, &to, errmsg);
    if (rc == DFS_OK) {
        size_t n = strlen(from);
        if (strncmp(to, from, n) == 0 && to[n] == '/') {
            struct quote a, b;
            rc = dfs_seterr(errmsg, DFS_EINVAL, "cannot move \"%s\" inside itself (\"%s\")",
                            q(from, &a), q(to, &b));
        }
    }
    free(from);
    free(to);
    return rc;
}

int dfs_validate_set_attributes(const Dfs__V1__SetAttributesRequest *req, char **errmsg)
{
    int rc = check_path(req->path, false, errmsg);
    if (rc != DFS_OK || req->remove || req->attributes == NULL)
        return rc;
    const Dfs__V1__PathAttributes *a = req->attributes;
    if (a->has_mode && a->mode > 07777)
        return dfs_seterr(errmsg, DFS_EINVAL, "mode %o is more than permission bits (07777)",
                          a->mode);
    return DFS_OK;
}

int dfs_validate_get_attributes(const Dfs__V1__GetAttributesRequest *req, char **errmsg)
{
    if (strcmp(req->path, "/") == 0)
        return DFS_OK;
    return check_path(req->path, false, errmsg);
}

int dfs_validate_set_node_state(const Dfs__V1__SetNodeStateRequest *req, char **errmsg)
{
    size_t n = strlen(req->node_id);
    if (n < 1 || n > DFS_ID_HEX || !dfs_id_is_hex(req->node_id, n)) {
        struct quote b;
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "node \"%s\" is not an id or a prefix of one (1..%d lower-case hex "
                          "digits)",
                          q(req->node_id, &b), DFS_ID_HEX);
    }
    int s = (int)req->state;
    if (s != DFS__V1__NODE_STATE__NODE_DRAINING && s != DFS__V1__NODE_STATE__NODE_DECOMMISSIONED &&
        s != DFS__V1__NODE_STATE__NODE_ALIVE)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "a node can be set to NODE_DRAINING, NODE_DECOMMISSIONED or NODE_ALIVE, "
                          "not %s (%d)",
                          enum_name(&dfs__v1__node_state__descriptor, s), s);
    return DFS_OK;
}

static int check_id_list(const char *what, char *const *ids, size_t n, char **errmsg)
{
    if (n > DFS_VALIDATE_REPORT_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "%s lists %zu fragments, at most %d are allowed",
                          what, n, DFS_VALIDATE_REPORT_MAX);
    for (size_t i = 0; i < n; i++)
        if (check_fragment_id(ids[i], errmsg) != DFS_OK)
            return dfs_prefixerr(errmsg, DFS_EINVAL, "%s[%zu]", what, i);
    return DFS_OK;
}

int dfs_validate_report_fragments(const Dfs__V1__ReportFragmentsRequest *req, char **errmsg)
{
    int rc = check_id_list("corrupt", req->corrupt, req->n_corrupt, errmsg);
    if (rc == DFS_OK)
        rc = check_id_list("present", req->present, req->n_present, errmsg);
    if (rc == DFS_OK && !req->full && (req->n_present > 0 || req->page != 0 || req->last))
        rc = dfs_seterr(errmsg, DFS_EINVAL, "present, page and last belong to a full inventory");
    if (rc == DFS_OK)
        rc = check_id_list("missing", req->missing, req->n_missing, errmsg);
    if (rc == DFS_OK && req->n_scrubbed > DFS_VALIDATE_REPORT_MAX)
        rc = dfs_seterr(errmsg, DFS_EINVAL, "scrubbed lists %zu fragments, at most %d are allowed",
                        req->n_scrubbed, DFS_VALIDATE_REPORT_MAX);
    for (size_t i = 0; rc == DFS_OK && i < req->n_scrubbed; i++) {
        const Dfs__V1__FragmentSum *f = req->scrubbed[i];
        if (check_fragment_id(f->fragment_id, errmsg) != DFS_OK)
            rc = dfs_prefixerr(errmsg, DFS_EINVAL, "scrubbed[%zu]", i);
        else if (f->size > DFS_FRAG_MAX_SIZE)
            rc = dfs_seterr(errmsg, DFS_EINVAL, "scrubbed[%zu]: size %" PRIu64 " is too large", i,
                            f->size);
    }
    return rc;
}

int dfs_validate_report_damage(const Dfs__V1__ReportDamageRequest *req, char **errmsg)
{
    if (req->n_copies == 0 || req->n_copies > DFS_VALIDATE_DAMAGE_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "a damage report lists 1 to %d copies, not %zu",
                          DFS_VALIDATE_DAMAGE_MAX, req->n_copies);
    for (size_t i = 0; i < req->n_copies; i++) {
        const Dfs__V1__DamagedCopy *c = req->copies[i];
        if (c->ticket == NULL)
            return dfs_seterr(errmsg, DFS_EINVAL, "copies[%zu] has no ticket", i);
        if (c->damage != DFS__V1__DAMAGE__DAMAGE_CORRUPT &&
            c->damage != DFS__V1__DAMAGE__DAMAGE_WRONG_CHECKSUM &&
            c->damage != DFS__V1__DAMAGE__DAMAGE_MISSING)
            return dfs_seterr(errmsg, DFS_EINVAL, "copies[%zu]: damage %s is not a damage", i,
                              enum_name(&dfs__v1__damage__descriptor, (int)c->damage));
        if (strlen(c->detail) > DFS_VALIDATE_DETAIL_MAX)
            return dfs_seterr(errmsg, DFS_EINVAL, "copies[%zu]: the detail is over %d bytes", i,
                              DFS_VALIDATE_DETAIL_MAX);
    }
    return DFS_OK;
}

int dfs_validate_get_health(const Dfs__V1__GetHealthRequest *req, char **errmsg)
{
    if (req->list > DFS_VALIDATE_HEALTH_LIST_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "list asks for %" PRIu32 " paths, at most %d",
                          req->list, DFS_VALIDATE_HEALTH_LIST_MAX);
    return DFS_OK;
}

/* ---- dfs.v1.Storage ---- */

int dfs_validate_fragment_header(const Dfs__V1__FragmentHeader *h, char **errmsg)
{
    int rc = check_fragment_id(h->fragment_id, errmsg);
    if (rc != DFS_OK)
        return rc;
    const char *id = h->fragment_id;
    if (h->size > DFS_FRAG_MAX_SIZE)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "fragment %s: size %" PRIu64 " is above the largest, %" PRIu64, id,
                          h->size, DFS_FRAG_MAX_SIZE);
    if (h->n_forward > DFS_VALIDATE_FORWARD_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "fragment %s: the forward list has %zu entries; at most %d are allowed",
                          id, h->n_forward, DFS_VALIDATE_FORWARD_MAX);
    if (h->n_forward_tickets != h->n_forward)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "fragment %s: %zu forward addresses but %zu forward tickets (one each)",
                          id, h->n_forward, h->n_forward_tickets);
    if (h->n_hop_tickets != h->n_forward)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "fragment %s: %zu forward addresses but %zu hop tickets (one each)", id,
                          h->n_forward, h->n_hop_tickets);
    for (size_t i = 0; i < h->n_forward; i++) {
        if (check_hostport("forward", i, h->forward[i], errmsg) != DFS_OK)
            return dfs_prefixerr(errmsg, DFS_EINVAL, "fragment %s", id);
        for (size_t j = 0; j < i; j++)
            if (strcmp(h->forward[i], h->forward[j]) == 0)
                return dfs_seterr(errmsg, DFS_EINVAL,
                                  "fragment %s: the forward list names %s twice (a loop)", id,
                                  h->forward[i]);
    }
    if (h->forward_rate != 0 && h->forward_rate < DFS_VALIDATE_FORWARD_RATE_MIN)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "fragment %s: forward_rate %" PRIu64 " is below %d bytes/s (0: none)", id,
                          h->forward_rate, DFS_VALIDATE_FORWARD_RATE_MIN);
    return DFS_OK;
}

int dfs_validate_put_data(size_t len, size_t ncrcs, char **errmsg)
{
    if (len > DFS_VALIDATE_CHUNK_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "PutFragment: a message carries %zu data bytes, at most %u are allowed",
                          len, DFS_VALIDATE_CHUNK_MAX);
    if (ncrcs != dfs_crc32c_nblocks(len))
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "PutFragment: %zu data bytes need %zu crcs (one per 64 KiB), not %zu",
                          len, dfs_crc32c_nblocks(len), ncrcs);
    return DFS_OK;
}

int dfs_validate_get_fragment(const Dfs__V1__GetFragmentRequest *req, char **errmsg)
{
    /* Any offset and length are well-formed: the handler compares them with the fragment's size
       (without overflow) and answers OUT_OF_RANGE, as storage.proto says. */
    return check_fragment_id(req->fragment_id, errmsg);
}

int dfs_validate_delete_fragment(const Dfs__V1__DeleteFragmentRequest *req, char **errmsg)
{
    return check_fragment_id(req->fragment_id, errmsg);
}

int dfs_validate_stat_fragment(const Dfs__V1__StatFragmentRequest *req, char **errmsg)
{
    return check_fragment_id(req->fragment_id, errmsg);
}

int dfs_validate_repair_fragment(const Dfs__V1__RepairFragmentRequest *req, char **errmsg)
{
    struct quote b;
    if (!dfs_fragment_id_valid(req->fragment_id))
        return dfs_seterr(errmsg, DFS_EINVAL, "RepairFragment: \"%s\" is not a fragment id",
                          q(req->fragment_id, &b));
    const char *id = req->fragment_id;
    if (req->size > DFS_FRAG_MAX_SIZE)
        return dfs_seterr(errmsg, DFS_EINVAL, "fragment %s: size %" PRIu64 " is too large", id,
                          req->size);
    const Dfs__V1__ErasureRebuild *e = req->erasure;
    size_t nsources = e != NULL ? e->n_sources : req->n_sources;
    if (nsources > DFS_VALIDATE_SOURCES_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "fragment %s: %zu sources; at most %d are allowed",
                          id, nsources, DFS_VALIDATE_SOURCES_MAX);
    if (e == NULL) {
        if (req->n_source_tickets != req->n_sources)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "fragment %s: %zu sources but %zu source tickets (one each)", id,
                              req->n_sources, req->n_source_tickets);
        for (size_t i = 0; i < req->n_sources; i++)
            if (!dfs_addr_valid(req->sources[i], DFS_VALIDATE_ADDRESS_MAX))
                return dfs_seterr(errmsg, DFS_EINVAL,
                                  "fragment %s: source %zu \"%s\" is not a host:port", id, i,
                                  q(req->sources[i], &b));
        return DFS_OK;
    }
    if (e->data == 0 || e->data + (uint64_t)e->parity > DFS_VALIDATE_EC_WIDTH_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "fragment %s: erasure code %u+%u: need 1 <= K and K+M <= %u", id, e->data,
                          e->parity, DFS_VALIDATE_EC_WIDTH_MAX);
    unsigned n = e->data + e->parity;
    if (e->index >= n)
        return dfs_seterr(errmsg, DFS_EINVAL, "fragment %s: index %u is not below K+M = %u", id,
                          e->index, n);
    if (e->cell_size == 0 || e->cell_size > DFS_VALIDATE_CELL_MAX || req->size % e->cell_size != 0)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "fragment %s: cell size %u must be 1..%u bytes and divide the size "
                          "%" PRIu64,
                          id, e->cell_size, DFS_VALIDATE_CELL_MAX, req->size);
    for (size_t i = 0; i < e->n_sources; i++) {
        const Dfs__V1__ErasureSource *src = e->sources[i];
        if (src->index >= n || src->index == e->index)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "fragment %s: source %zu has index %u (must be below %u and not "
                              "%u)",
                              id, i, src->index, n, e->index);
        if (!dfs_fragment_id_valid(src->fragment_id))
            return dfs_seterr(errmsg, DFS_EINVAL, "fragment %s: source %zu has a bad fragment id",
                              id, i);
        if (!dfs_addr_valid(src->address, DFS_VALIDATE_ADDRESS_MAX))
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "fragment %s: source %zu \"%s\" is not a host:port", id, i,
                              q(src->address, &b));
    }
    return DFS_OK;
}

int dfs_validate_get_replicas(const Dfs__V1__GetReplicasRequest *req, char **errmsg)
{
    (void)req;
    (void)errmsg;
    return DFS_OK;
}

int dfs_validate_add_replica(const Dfs__V1__AddReplicaRequest *req, char **errmsg)
{
    if (req->id == 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "replica id 0 (ids start at 1)");
    /* '=' separates the two in the replicated configuration ("RAFT=GRPC"). */
    int rc = strchr(req->raft_address, '=') == NULL
                 ? check_hostport("raft_address", 0, req->raft_address, errmsg)
                 : dfs_seterr(errmsg, DFS_EINVAL, "raft_address holds '='");
    if (rc == DFS_OK)
        rc = strchr(req->grpc_address, '=') == NULL
                 ? check_hostport("grpc_address", 0, req->grpc_address, errmsg)
                 : dfs_seterr(errmsg, DFS_EINVAL, "grpc_address holds '='");
    return rc;
}

int dfs_validate_remove_replica(const Dfs__V1__RemoveReplicaRequest *req, char **errmsg)
{
    if (req->id == 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "replica id 0 (ids start at 1)");
    return DFS_OK;
}

/* ---- any of them ---- */

int dfs_validate_request(const ProtobufCMessage *msg, char **errmsg)
{
    /* Each type's struct begins with its ProtobufCMessage, so the casts below are the usual
       protobuf-c downcasts. */
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const void *m = msg;
    if (d == &dfs__v1__register_node_request__descriptor)
        return dfs_validate_register_node(m, errmsg);
    if (d == &dfs__v1__heartbeat_request__descriptor)
        return dfs_validate_heartbeat(m, errmsg);
    if (d == &dfs__v1__create_file_request__descriptor)
        return dfs_validate_create_file(m, errmsg);
    if (d == &dfs__v1__replace_target_request__descriptor)
        return dfs_validate_replace_target(m, errmsg);
    if (d == &dfs__v1__commit_file_request__descriptor)
        return dfs_validate_commit_file(m, errmsg);
    if (d == &dfs__v1__abort_file_request__descriptor)
        return dfs_validate_abort_file(m, errmsg);
    if (d == &dfs__v1__stitch_file_request__descriptor)
        return dfs_validate_stitch_file(m, errmsg);
    if (d == &dfs__v1__get_file_request__descriptor)
        return dfs_validate_get_file(m, errmsg);
    if (d == &dfs__v1__list_files_request__descriptor)
        return dfs_validate_list_files(m, errmsg);
    if (d == &dfs__v1__delete_file_request__descriptor)
        return dfs_validate_delete_file(m, errmsg);
    if (d == &dfs__v1__rename_request__descriptor)
        return dfs_validate_rename(m, errmsg);
    if (d == &dfs__v1__set_attributes_request__descriptor)
        return dfs_validate_set_attributes(m, errmsg);
    if (d == &dfs__v1__get_attributes_request__descriptor)
        return dfs_validate_get_attributes(m, errmsg);
    if (d == &dfs__v1__stat_request__descriptor || d == &dfs__v1__list_nodes_request__descriptor)
        return DFS_OK; /* no fields */
    if (d == &dfs__v1__get_replicas_request__descriptor)
        return dfs_validate_get_replicas(m, errmsg);
    if (d == &dfs__v1__add_replica_request__descriptor)
        return dfs_validate_add_replica(m, errmsg);
    if (d == &dfs__v1__remove_replica_request__descriptor)
        return dfs_validate_remove_replica(m, errmsg);
    if (d == &dfs__v1__set_node_state_request__descriptor)
        return dfs_validate_set_node_state(m, errmsg);
    if (d == &dfs__v1__report_fragments_request__descriptor)
        return dfs_validate_report_fragments(m, errmsg);
    if (d == &dfs__v1__get_health_request__descriptor)
        return dfs_validate_get_health(m, errmsg);
    if (d == &dfs__v1__report_damage_request__descriptor)
        return dfs_validate_report_damage(m, errmsg);
    if (d == &dfs__v1__put_fragment_request__descriptor) {
        const Dfs__V1__PutFragmentRequest *p = m;
        int rc = p->header != NULL ? dfs_validate_fragment_header(p->header, errmsg) : DFS_OK;
        return rc == DFS_OK ? dfs_validate_put_data(p->data.len, p->n_crc32c, errmsg) : rc;
    }
    if (d == &dfs__v1__get_fragment_request__descriptor)
        return dfs_validate_get_fragment(m, errmsg);
    if (d == &dfs__v1__delete_fragment_request__descriptor)
        return dfs_validate_delete_fragment(m, errmsg);
    if (d == &dfs__v1__stat_fragment_request__descriptor)
        return dfs_validate_stat_fragment(m, errmsg);
    if (d == &dfs__v1__repair_fragment_request__descriptor)
        return dfs_validate_repair_fragment(m, errmsg);
    return dfs_seterr(errmsg, DFS_EINVAL, "%s is not a request of the dfs services", d->name);
}
