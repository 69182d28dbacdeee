/*
 * Fuzz target: every request the Metadata and Storage services take, as the servers take it.
 *
 * Input: one byte that picks the request type, then the message bytes. For a unary request this
 * runs what dfs_rpc_unpack_checked and the handler's first lines run: protobuf-c's unpack, the
 * proto3 string check (services/rpc/wirecheck.h) and the type's validator
 * (services/validate/validate.h); for CreateFile also the layout check the handler makes once the
 * cluster's defaults (k=3, F=4) are filled in. PutFragment messages go through the storage node's
 * own in-place parser (services/storage/putmsg.h), then the header's unpack, string check and
 * validator, and the data check; the parser is also compared with protobuf-c's reading of the
 * same bytes.
 *
 * Any crash, leak, sanitizer report, or broken promise (a refusal without a message, a message
 * with a control character, the two parsers disagreeing) is a finding.
 */
#include "common/err.h"
#include "dfs/v1/metadata.pb-c.h"
#include "dfs/v1/storage.pb-c.h"
#include "services/rpc/wirecheck.h"
#include "services/storage/putmsg.h"
#include "services/validate/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ProtobufCMessageDescriptor *const types[] = {
    &dfs__v1__register_node_request__descriptor,    &dfs__v1__heartbeat_request__descriptor,
    &dfs__v1__create_file_request__descriptor,      &dfs__v1__replace_target_request__descriptor,
    &dfs__v1__commit_file_request__descriptor,      &dfs__v1__abort_file_request__descriptor,
    &dfs__v1__get_file_request__descriptor,         &dfs__v1__list_files_request__descriptor,
    &dfs__v1__delete_file_request__descriptor,      &dfs__v1__stat_request__descriptor,
    &dfs__v1__list_nodes_request__descriptor,       &dfs__v1__set_node_state_request__descriptor,
    &dfs__v1__report_fragments_request__descriptor, &dfs__v1__get_health_request__descriptor,
    &dfs__v1__put_fragment_request__descriptor,     &dfs__v1__get_fragment_request__descriptor,
    &dfs__v1__delete_fragment_request__descriptor,  &dfs__v1__stat_fragment_request__descriptor,
    &dfs__v1__repair_fragment_request__descriptor,  &dfs__v1__report_damage_request__descriptor,
    &dfs__v1__stitch_file_request__descriptor,      &dfs__v1__rename_request__descriptor,
    &dfs__v1__set_attributes_request__descriptor,   &dfs__v1__get_attributes_request__descriptor,
    &dfs__v1__get_replicas_request__descriptor,     &dfs__v1__add_replica_request__descriptor,
    &dfs__v1__remove_replica_request__descriptor,
};
#define NTYPES (sizeof types / sizeof types[0])

/* A broken promise: report it the way a sanitizer would, so libFuzzer keeps the input. */
static void broken(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz: broken promise: %s: %s\n", what, detail != NULL ? detail : "(null)");
    abort();
}

/* A refusal carries a one-line message; an acceptance none. */
static void check_outcome(const char *what, int rc, char *msg)
{
    if (rc != DFS_OK && rc != DFS_EINVAL)
        broken(what, "a check returned something other than 0 or DFS_EINVAL");
    if (rc == DFS_OK) {
        if (msg != NULL)
            broken(what, "accepted, with a message");
        return;
    }
    if (msg == NULL || msg[0] == '\0')
        broken(what, "refused without a message");
    for (const char *p = msg; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            broken(what, "a message holds a control character");
    free(msg);
}

/* What handle_create_file checks once the cluster's defaults are in: k = 3, F = 4. */
static void create_file_layout(const Dfs__V1__CreateFileRequest *req)
{
    const Dfs__V1__Redundancy *r = req->redundancy;
    bool erasure = r != NULL && (r->scheme == DFS__V1__REDUNDANCY__SCHEME__ERASURE ||
                                 r->data != 0 || r->parity != 0);
    uint32_t nfrag, copies;
    uint64_t fragment_size;
    if (erasure) {
        nfrag = r->data + r->parity;
        copies = 1;
        fragment_size = req->size / r->data + (req->size % r->data != 0);
    } else {
        nfrag = r != NULL && r->fragments != 0 ? r->fragments : 4;
        copies = r != NULL && r->replicas != 0 ? r->replicas : 3;
        fragment_size = (req->size + nfrag - 1) / nfrag;
    }
    char *msg = NULL;
    check_outcome("layout", dfs_validate_file_layout(fragment_size, nfrag, copies, &msg), msg);
}

/* The storage node's reading of a PutFragment message, checked against protobuf-c's. */
static void put_fragment(const uint8_t *data, size_t size)
{
    enum { CAP = 513 }; /* PUT_MAX_CRCS of storage_service.c */
    static uint32_t crcs[CAP];
    struct dfs_put_msg m;
    char *msg = NULL;
    int rc = dfs_put_msg_parse(data, size, &m, crcs, CAP, &msg);
    check_outcome("putmsg", rc, msg);
    Dfs__V1__PutFragmentRequest *ref =
        dfs__v1__put_fragment_request__unpack(NULL, size, size > 0 ? data : NULL);
    if (rc == DFS_OK) {
        if (m.has_header && (m.header < data || m.header + m.header_len > data + size))
            broken("putmsg", "the header points outside the message");
        if (m.len > 0 && (m.data < data || m.data + m.len > data + size))
            broken("putmsg", "the data points outside the message");
        if (ref != NULL) {
            /* Both read it: they must agree on data and CRCs (a header that protobuf-c could not
               parse would have failed its unpack, so presence agrees too). */
            if (ref->data.len != m.len || (m.len > 0 && memcmp(ref->data.data, m.data, m.len) != 0))
                broken("putmsg", "data differs from protobuf-c's");
            if (ref->n_crc32c != m.ncrcs ||
                (m.ncrcs > 0 && memcmp(ref->crc32c, crcs, m.ncrcs * sizeof *crcs) != 0))
                broken("putmsg", "crcs differ from protobuf-c's");
            if ((ref->header != NULL) != m.has_header)
                broken("putmsg", "header presence differs from protobuf-c's");
        }
        if (m.has_header) {
            Dfs__V1__FragmentHeader *h = dfs__v1__fragment_header__unpack(
                NULL, m.header_len, m.header_len > 0 ? m.header : NULL);
            if (h != NULL) {
                msg = NULL;
                rc = dfs_rpc_wire_check_strings(&dfs__v1__fragment_header__descriptor, m.header,
                                                m.header_len, &msg);
                check_outcome("header strings", rc, msg);
                if (rc == DFS_OK) {
                    msg = NULL;
                    check_outcome("header", dfs_validate_fragment_header(h, &msg), msg);
                }
                dfs__v1__fragment_header__free_unpacked(h, NULL);
            }
        }
        msg = NULL;
        check_outcome("put data", dfs_validate_put_data(m.len, m.ncrcs, &msg), msg);
    }
    if (ref != NULL)
        dfs__v1__put_fragment_request__free_unpacked(ref, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const ProtobufCMessageDescriptor *desc = types[data[0] % NTYPES];
    data++;
    size--;
    if (desc == &dfs__v1__put_fragment_request__descriptor) {
        put_fragment(data, size);
        return 0;
    }
    const uint8_t *bytes = size > 0 ? data : NULL;
    /* The string walk must stand any bytes, parsed or not. */
    char *msg = NULL;
    int strings = dfs_rpc_wire_check_strings(desc, bytes, size, &msg);
    check_outcome("strings", strings, msg);
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, size, bytes);
    if (m == NULL)
        return 0;
    if (strings == DFS_OK) {
        msg = NULL;
        int rc = dfs_validate_request(m, &msg);
        check_outcome(desc->name, rc, msg);
        if (rc == DFS_OK && desc == &dfs__v1__create_file_request__descriptor)
            create_file_layout((const Dfs__V1__CreateFileRequest *)m);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
