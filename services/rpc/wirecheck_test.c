/* Tests of the proto3 string rules over wire bytes. */
#include "services/rpc/wirecheck.h"

#include "common/err.h"
#include "dfs/v1/metadata.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int check(const ProtobufCMessageDescriptor *d, const void *bytes, size_t len, char **msg)
{
    return dfs_rpc_wire_check_strings(d, bytes, len, msg);
}

static void expect_bad(const ProtobufCMessageDescriptor *d, const void *bytes, size_t len,
                       const char *want)
{
    char *msg = NULL;
    assert_int_equal(check(d, bytes, len, &msg), DFS_EINVAL);
    assert_non_null(msg);
    if (strstr(msg, want) == NULL)
        fail_msg("\"%s\" does not say \"%s\"", msg, want);
    free(msg);
}

static void test_good_messages(void **state)
{
    (void)state;
    Dfs__V1__CreateFileRequest req = DFS__V1__CREATE_FILE_REQUEST__INIT;
    Dfs__V1__Redundancy red = DFS__V1__REDUNDANCY__INIT;
    req.path = "/with space/\xc3\xbc";
    req.size = 12345;
    red.replicas = 3;
    req.redundancy = &red;
    uint8_t buf[256];
    size_t n = dfs__v1__create_file_request__pack(&req, buf);
    assert_int_equal(check(&dfs__v1__create_file_request__descriptor, buf, n, NULL), DFS_OK);
    assert_int_equal(check(&dfs__v1__create_file_request__descriptor, NULL, 0, NULL), DFS_OK);

    /* A bytes field may hold anything: sha256 with NULs and 0xff. */
    static const uint8_t commit[] = {0x12, 0x04, 0x00, 0xff, 0x00, 0xfe};
    assert_int_equal(check(&dfs__v1__commit_file_request__descriptor, commit, sizeof commit, NULL),
                     DFS_OK);
    /* An unknown length-delimited field is skipped, whatever it holds. */
    static const uint8_t unknown[] = {0xfa, 0x01, 0x02, 0x00, 0xff};
    assert_int_equal(
        check(&dfs__v1__create_file_request__descriptor, unknown, sizeof unknown, NULL), DFS_OK);
}

static void test_bad_strings(void **state)
{
    (void)state;
    /* path = "/a\0b": protobuf-c would hand over "/a". */
    static const uint8_t nul[] = {0x0a, 0x04, '/', 'a', 0x00, 'b'};
    expect_bad(&dfs__v1__create_file_request__descriptor, nul, sizeof nul,
               "dfs.v1.CreateFileRequest.path holds a NUL byte (at byte 2 of the string)");
    static const uint8_t latin1[] = {0x0a, 0x03, '/', 0xe9, 'a'};
    expect_bad(&dfs__v1__create_file_request__descriptor, latin1, sizeof latin1,
               "dfs.v1.CreateFileRequest.path is not valid UTF-8 (at byte 1 of the string)");
    /* Inside a sub-message, in a repeated field: CommitFileRequest.fragments[0].node_ids[1]. */
    static const uint8_t nested[] = {0x1a, 0x08, 0x22, 0x01, 'a', 0x22, 0x03, 'b', 0xc0, 0xaf};
    expect_bad(&dfs__v1__commit_file_request__descriptor, nested, sizeof nested,
               "dfs.v1.CommitFragment.node_ids is not valid UTF-8");
}

static void test_malformed(void **state)
{
    (void)state;
    static const uint8_t truncated[] = {0x0a, 0x05, '/', 'a'};
    expect_bad(&dfs__v1__create_file_request__descriptor, truncated, sizeof truncated,
               "do not parse as dfs.v1.CreateFileRequest");
    static const uint8_t group[] = {0x0b, 0x0c};
    expect_bad(&dfs__v1__create_file_request__descriptor, group, sizeof group, "do not parse");
    static const uint8_t field0[] = {0x00, 0x01};
    expect_bad(&dfs__v1__create_file_request__descriptor, field0, sizeof field0, "do not parse");
    static const uint8_t long_varint[] = {0x10, 0xff, 0xff, 0xff, 0xff, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    expect_bad(&dfs__v1__create_file_request__descriptor, long_varint, sizeof long_varint,
               "do not parse");
    /* A sub-message whose length runs past its parent's end. */
    static const uint8_t overrun[] = {0x1a, 0x10, 0x22, 0x01, 'a'};
    expect_bad(&dfs__v1__commit_file_request__descriptor, overrun, sizeof overrun, "do not parse");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_messages),
        cmocka_unit_test(test_bad_strings),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
