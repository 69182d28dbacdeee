/* Tests of the node's own token file: made once, kept, guarded. */
#include "services/storage/node_token.h"

#include "common/err.h"
#include "common/token.h"

#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void test_made_once_and_kept(void **state)
{
    (void)state;
    char dir[] = "/tmp/dfs-node-token-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *a = NULL, *b = NULL, *err = NULL;
    assert_int_equal(dfs_node_token_load(dir, &a, &err), DFS_OK);
    char id[DFS_TOKEN_ID_HEX + 1];
    uint8_t hash[DFS_TOKEN_HASH_LEN];
    assert_int_equal(dfs_token_parse(a, id, hash, NULL), DFS_OK);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/node.token", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Loaded again: the same token, never a new one. */
    assert_int_equal(dfs_node_token_load(dir, &b, &err), DFS_OK);
    assert_string_equal(a, b);
    free(b);
    b = NULL;
    /* Open to everyone: refused, not rewritten. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(dfs_node_token_load(dir, &b, &err), DFS_EPERM);
    assert_non_null(strstr(err, "chmod 600"));
    free(err);
    err = NULL;
    /* Not a token: refused, and left for the operator. */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("notatoken\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(dfs_node_token_load(dir, &b, &err), DFS_EINVAL);
    assert_non_null(strstr(err, "never replaced"));
    assert_null(b);
    free(err);
    f = fopen(path, "r");
    char line[64] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_string_equal(line, "notatoken\n");
    free(a);
    assert_int_equal(nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_made_once_and_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
