/* Tests of access classes: the role matrix, token checks, token making, enrollment. */
#include "metadata/access.h"

#include "common/err.h"
#include "common/token.h"
#include "metadata/catalog_testing.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define T0 1000000

static void expect_msg(char **msg, const char *fragment)
{
    assert_non_null(*msg);
    if (strstr(*msg, fragment) == NULL)
        fail_msg("message '%s' lacks '%s'", *msg, fragment);
    free(*msg);
    *msg = NULL;
}

static void test_roles(void **state)
{
    (void)state;
    assert_int_equal(dfs_access_of_role(DFS_ROLE_ADMIN),
                     DFS_ACCESS_READ | DFS_ACCESS_WRITE | DFS_ACCESS_ADMIN | DFS_ACCESS_ENROLL);
    assert_int_equal(dfs_access_of_role(DFS_ROLE_READ_WRITE), DFS_ACCESS_READ | DFS_ACCESS_WRITE);
    assert_int_equal(dfs_access_of_role(DFS_ROLE_READ_ONLY), DFS_ACCESS_READ);
    assert_int_equal(dfs_access_of_role(DFS_ROLE_NODE), DFS_ACCESS_NODE);
    assert_int_equal(dfs_access_of_role(DFS_ROLE_BOOTSTRAP), DFS_ACCESS_ENROLL);
    assert_int_equal(dfs_access_of_role(DFS_ROLE_UNSPECIFIED), 0);
    assert_int_equal(dfs_access_of_role((enum dfs_token_role)99), 0);
    /* An admin never speaks as a node. */
    assert_int_equal(dfs_access_of_role(DFS_ROLE_ADMIN) & DFS_ACCESS_NODE, 0);

    struct dfs_token_rec t = {.id = "0123456789abcdef", .name = "ro", .role = DFS_ROLE_READ_ONLY};
    char *msg = NULL;
    assert_int_equal(dfs_access_allow(&t, DFS_ACCESS_READ, "/x/Get", &msg), DFS_OK);
    assert_int_equal(dfs_access_allow(&t, DFS_ACCESS_READ | DFS_ACCESS_NODE, "/x/Report", &msg),
                     DFS_OK);
    assert_int_equal(dfs_access_allow(&t, DFS_ACCESS_WRITE, "/x/Put", &msg), DFS_EPERM);
    expect_msg(&msg, "token 0123456789abcdef (ro, role read_only) may not call /x/Put");
    assert_int_equal(dfs_access_allow(&t, DFS_ACCESS_ANY, "/x/WhoAmI", NULL), DFS_OK);
}

static void make(dfs_catalog *cat, enum dfs_token_role role, int64_t ttl, int64_t now,
                 char token[DFS_TOKEN_LEN + 1], struct dfs_token_rec *rec)
{
    char *msg = NULL;
    if (dfs_access_make_token(cat, role, "t", ttl, now, token, rec, &msg) != DFS_OK)
        fail_msg("make: %s", msg);
}

static void test_check(void **state)
{
    (void)state;
    dfs_catalog *cat = dfs_testing_catalog();
    char token[DFS_TOKEN_LEN + 1];
    struct dfs_token_rec rec, got;
    make(cat, DFS_ROLE_READ_WRITE, 100000, T0, token, &rec);
    assert_int_equal(rec.created_ms, T0);
    assert_int_equal(rec.expires_ms, T0 + 100000);
    char *msg = NULL;
    assert_int_equal(dfs_access_check(cat, token, T0 + 1, &got, &msg), DFS_OK);
    assert_string_equal(got.id, rec.id);
    assert_int_equal(got.role, DFS_ROLE_READ_WRITE);

    /* A use is written back at most once a minute. */
    uint8_t hash[DFS_TOKEN_HASH_LEN];
    assert_int_equal(dfs_catalog_token_get(cat, rec.id, &got, hash, NULL), DFS_OK);
    assert_int_equal(got.last_used_ms, T0 + 1);
    assert_int_equal(dfs_access_check(cat, token, T0 + 59999, &got, &msg), DFS_OK);
    assert_int_equal(dfs_catalog_token_get(cat, rec.id, &got, hash, NULL), DFS_OK);
    assert_int_equal(got.last_used_ms, T0 + 1);
    assert_int_equal(dfs_access_check(cat, token, T0 + 60001, &got, &msg), DFS_OK);
    assert_int_equal(dfs_catalog_token_get(cat, rec.id, &got, hash, NULL), DFS_OK);
    assert_int_equal(got.last_used_ms, T0 + 60001);

    /* Expired at expires_ms. */
    assert_int_equal(dfs_access_check(cat, token, T0 + 99999, &got, &msg), DFS_OK);
    assert_int_equal(dfs_access_check(cat, token, T0 + 100000, &got, &msg), DFS_EUNAUTH);
    expect_msg(&msg, "has expired");

    /* Malformed, unknown, or the right id with another secret. */
    assert_int_equal(dfs_access_check(cat, "dfs1.nonsense", T0, &got, &msg), DFS_EUNAUTH);
    free(msg);
    msg = NULL;
    char other[DFS_TOKEN_LEN + 1];
    assert_int_equal(dfs_token_generate(other), DFS_OK);
    assert_int_equal(dfs_access_check(cat, other, T0, &got, &msg), DFS_EUNAUTH);
    expect_msg(&msg, "unknown token");
    memcpy(other, token, 5 + DFS_TOKEN_ID_HEX + 1); /* our id, a foreign secret */
    assert_int_equal(dfs_access_check(cat, other, T0, &got, &msg), DFS_EUNAUTH);
    expect_msg(&msg, "unknown token");

    /* Revoked: refused, expiry or not. */
    make(cat, DFS_ROLE_ADMIN, 0, T0, token, &rec);
    assert_int_equal(rec.expires_ms, 0);
    assert_int_equal(dfs_access_check(cat, token, INT64_MAX / 2, &got, &msg), DFS_OK);
    assert_int_equal(dfs_catalog_token_revoke(cat, rec.id, T0 + 5, NULL), DFS_OK);
    assert_int_equal(dfs_access_check(cat, token, T0 + 6, &got, &msg), DFS_EUNAUTH);
    expect_msg(&msg, "was revoked");
    /* Not a node. */
    assert_int_equal(dfs_access_node(&rec, &msg), DFS_EPERM);
    expect_msg(&msg, "belongs to no storage node");
    dfs_catalog_close(cat);
}

static void test_make_refusals(void **state)
{
    (void)state;
    dfs_catalog *cat = dfs_testing_catalog();
    char token[DFS_TOKEN_LEN + 1];
    char *msg = NULL;
    assert_int_equal(dfs_access_make_token(cat, DFS_ROLE_NODE, "n", 0, T0, token, NULL, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "made by the nodes themselves");
    assert_int_equal(
        dfs_access_make_token(cat, DFS_ROLE_UNSPECIFIED, "n", 0, T0, token, NULL, &msg),
        DFS_EINVAL);
    expect_msg(&msg, "admin, read_write, read_only, bootstrap or gateway");
    assert_int_equal(dfs_access_make_token(cat, DFS_ROLE_ADMIN, "n", -1, T0, token, NULL, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "0 (forever) to 100 years");
    char name[DFS_TOKEN_NAME_MAX + 2];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    memset(token, 'x', sizeof token);
    assert_int_equal(dfs_access_make_token(cat, DFS_ROLE_ADMIN, name, 0, T0, token, NULL, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "1 to 64 bytes");
    for (size_t i = 0; i < sizeof token; i++) /* the secret is wiped */
        assert_int_equal(token[i], 0);
    assert_int_equal(dfs_access_make_token(cat, DFS_ROLE_ADMIN, NULL, 0, T0, token, NULL, &msg),
                     DFS_EINVAL);
    expect_msg(&msg, "1 to 64 bytes");
    struct dfs_token_rec *v = NULL;
    size_t n = 9;
    assert_int_equal(dfs_catalog_tokens_list(cat, true, T0, &v, &n, NULL), DFS_OK);
    assert_int_equal(n, 0);
    free(v);
    dfs_catalog_close(cat);
}

/* A node's own token: a hash and id for enrollment. */
struct node_token {
    char text[DFS_TOKEN_LEN + 1];
    char id[DFS_TOKEN_ID_HEX + 1];
    uint8_t hash[DFS_TOKEN_HASH_LEN];
};

static void node_token(struct node_token *t)
{
    assert_int_equal(dfs_token_generate(t->text), DFS_OK);
    assert_int_equal(dfs_token_parse(t->text, t->id, t->hash, NULL), DFS_OK);
}

static void test_enroll(void **state)
{
    (void)state;
    dfs_catalog *cat = dfs_testing_catalog();
    char boot[DFS_TOKEN_LEN + 1];
    struct dfs_token_rec by;
    make(cat, DFS_ROLE_BOOTSTRAP, 0, T0, boot, &by);
    char node[DFS_ID_HEX + 1];
    dfs_testing_node_id(0, node);
    struct node_token nt;
    node_token(&nt);
    struct dfs_access_enrollment e = {
        .node_id = node,
        .node_token_id = "",
        .node_token_sha256 = nt.hash,
        .address = "127.0.0.1:7000",
        .zone = "",
        .usage = {.capacity_bytes = 100, .free_bytes = 50},
    };
    bool enrolled = false;
    char *msg = NULL;
    /* No node token named: refused. */
    assert_int_equal(dfs_access_enroll(cat, &by, &e, 77, T0, "peer", &enrolled, &msg), DFS_EPERM);
    expect_msg(&msg, "only enrolls new nodes");
    /* A new node: enrolled with its token and the registration given. */
    e.node_token_id = nt.id;
    assert_int_equal(dfs_access_enroll(cat, &by, &e, 77, T0, "peer", &enrolled, &msg), DFS_OK);
    assert_true(enrolled);
    struct dfs_node_rec rec;
    assert_int_equal(dfs_catalog_node_get(cat, node, &rec, NULL), DFS_OK);
    assert_int_equal(rec.registration, 77);
    assert_int_equal(rec.registered_ms, T0);
    struct dfs_token_rec got;
    assert_int_equal(dfs_access_check(cat, nt.text, T0, &got, &msg), DFS_OK);
    assert_int_equal(dfs_access_node(&got, &msg), DFS_OK);
    assert_string_equal(got.node_id, node);
    /* The same enrollment again (a lost answer): not enrolled anew, the caller registers. */
    enrolled = true;
    assert_int_equal(dfs_access_enroll(cat, &by, &e, 78, T0 + 1, "peer", &enrolled, &msg), DFS_OK);
    assert_false(enrolled);
    assert_int_equal(dfs_catalog_node_get(cat, node, &rec, NULL), DFS_OK);
    assert_int_equal(rec.registration, 77);
    /* Another token for a known node: refused. */
    struct node_token other;
    node_token(&other);
    e.node_token_id = other.id;
    e.node_token_sha256 = other.hash;
    assert_int_equal(dfs_access_enroll(cat, &by, &e, 79, T0 + 2, "peer", &enrolled, &msg),
                     DFS_EPERM);
    expect_msg(&msg, "is enrolled already");
    /* The right token id with another secret: refused too. */
    e.node_token_id = nt.id;
    assert_int_equal(dfs_access_enroll(cat, &by, &e, 79, T0 + 2, NULL, &enrolled, &msg), DFS_EPERM);
    expect_msg(&msg, "is enrolled already");
    /* A revoked node token does not enroll again. */
    e.node_token_sha256 = nt.hash;
    assert_int_equal(dfs_catalog_token_revoke(cat, nt.id, T0 + 3, NULL), DFS_OK);
    assert_int_equal(dfs_access_enroll(cat, &by, &e, 80, T0 + 4, NULL, &enrolled, &msg), DFS_EPERM);
    expect_msg(&msg, "is enrolled already");
    /* A second node may not take the first one's token. */
    char node1[DFS_ID_HEX + 1];
    dfs_testing_node_id(1, node1);
    e.node_id = node1;
    e.node_token_id = other.id;
    e.node_token_sha256 = other.hash;
    assert_int_equal(dfs_access_enroll(cat, &by, &e, 81, T0 + 5, NULL, &enrolled, &msg), DFS_OK);
    assert_true(enrolled);
    char node2[DFS_ID_HEX + 1];
    dfs_testing_node_id(2, node2);
    e.node_id = node2;
    assert_int_equal(dfs_access_enroll(cat, &by, &e, 82, T0 + 6, NULL, &enrolled, &msg), DFS_EPERM);
    expect_msg(&msg, "is enrolled already");
    dfs_catalog_close(cat);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_make_refusals),
        cmocka_unit_test(test_enroll),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
