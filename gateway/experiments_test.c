/* Tests for experiment runs: knobs, a real child process (a shell script standing in for the
   program), cancelling, the concurrency limit, reloading earlier runs. */
#include "gateway/experiments.h"

#include "common/err.h"

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

static void parse_json_knobs(void **state)
{
    (void)state;
    const char *body = " {\"kind\": \"simulate\", \"quick\": true, \"slow\": false, \"nodes\": 12,"
                       " \"policy\": \"min_copy\", \"seed\": null, \"failures\": \"2,3\"} ";
    char *kind = NULL, *err = NULL;
    struct dfs_exp_knob *k = NULL;
    size_t n = 0;
    assert_int_equal(dfs_exp_parse_json(body, strlen(body), &kind, &k, &n, &err), DFS_OK);
    assert_string_equal(kind, "simulate");
    assert_int_equal(n, 4);
    assert_string_equal(k[0].name, "quick");
    assert_null(k[0].value);
    assert_string_equal(k[1].name, "nodes");
    assert_string_equal(k[1].value, "12");
    assert_string_equal(k[2].value, "min_copy");
    assert_string_equal(k[3].value, "2,3");
    free(kind);
    dfs_exp_knobs_free(k, n);

    const char *bad[] = {"",
                         "[]",
                         "{\"kind\": \"x\"",
                         "{\"out\": \"/etc\"}",
                         "{\"nodes\": \"-rf\"}",
                         "{\"Nodes\": 1}",
                         "{\"a\": \"x y\"}",
                         "{\"a\": \"\\u0041\"}",
                         "{\"a\": {}}",
                         "{\"a\": 1} x",
                         "{\"kind\": true}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = NULL;
        assert_int_equal(dfs_exp_parse_json(bad[i], strlen(bad[i]), &kind, &k, &n, &err),
                         DFS_EINVAL);
        assert_non_null(err);
        free(err);
    }
}

static char *make_program(const char *dir)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/prog.sh", dir) > 0);
    FILE *f = fopen(path, "w");
    /* Writes its arguments and a result; loss runs long (for cancel), store fails, plot draws. */
    fprintf(f, "#!/bin/sh\n"
               "for a; do out=$a; done\n"
               "echo \"args: $*\"\n"
               "case \"$1\" in\n"
               "  loss) sleep 30 ;;\n"
               "  store) exit 3 ;;\n"
               "  plot) mkdir -p \"$out/plots\"; printf 'PNG' > \"$out/plots/fig.png\"; exit 0 ;;\n"
               "esac\n"
               "printf '{\"ok\": true, \"kind\": \"%%s\"}\\n' \"$1\" > \"$out/results.json\"\n");
    fclose(f);
    chmod(path, 0755);
    return path;
}

static char *wait_json(dfs_experiments *x, const char *id, const char *want_state)
{
    for (int i = 0; i < 1000; i++) {
        char *body = NULL, *err = NULL;
        size_t len = 0;
        assert_int_equal(dfs_experiments_get_json(x, id, &body, &len, &err), DFS_OK);
        char needle[64];
        snprintf(needle, sizeof needle, "\"state\":\"%s\"", want_state);
        if (strstr(body, needle) != NULL)
            return body;
        free(body);
        usleep(10000);
    }
    fail_msg("experiment %s never became %s", id, want_state);
    return NULL;
}

static void runs_children(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/exp-test-XXXXXX";
    char *dir = mkdtemp(tmpl);
    char *prog = make_program(dir);
    char *runs = NULL;
    assert_true(asprintf(&runs, "%s/runs", dir) > 0);
    struct dfs_experiments_config cfg = {
        .program = prog, .dir = runs, .max_running = 1, .stop_grace_ms = 2000};
    dfs_experiments *x = NULL;
    char *err = NULL, *id = NULL;
    assert_int_equal(dfs_experiments_create(&cfg, &x, &err), DFS_OK);

    struct dfs_exp_knob knobs[2] = {{"quick", NULL}, {"max_nodes", "12"}};
    assert_int_equal(dfs_experiments_start(x, "simulate", knobs, 2, &id, &err), DFS_OK);
    char *body = wait_json(x, id, "done");
    assert_non_null(strstr(body, "\"results\":{\"ok\": true, \"kind\": \"simulate\"}"));
    assert_non_null(strstr(body, "\"plots\":[\"fig.png\"]"));
    assert_non_null(strstr(body, "\"exit_status\":0"));
    assert_non_null(strstr(body, "--quick"));
    assert_non_null(strstr(body, "--max-nodes\",\"12\""));
    free(body);
    char *path = NULL;
    assert_int_equal(dfs_experiments_file(x, id, "fig.png", &path, &err), DFS_OK);
    assert_int_equal(access(path, R_OK), 0);
    free(path);
    assert_int_equal(dfs_experiments_file(x, id, "../x", &path, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    free(id);

    /* A failing run. */
    assert_int_equal(dfs_experiments_start(x, "store", NULL, 0, &id, &err), DFS_OK);
    body = wait_json(x, id, "failed");
    assert_non_null(strstr(body, "\"exit_status\":3"));
    free(body);
    free(id);

    /* One at a time: a second start while one runs is refused; cancel stops it. */
    assert_int_equal(dfs_experiments_start(x, "loss", NULL, 0, &id, &err), DFS_OK);
    char *id2 = NULL;
    assert_int_equal(dfs_experiments_start(x, "simulate", NULL, 0, &id2, &err), DFS_EABORTED);
    free(err);
    err = NULL;
    assert_int_equal(dfs_experiments_cancel(x, id, &err), DFS_OK);
    body = wait_json(x, id, "cancelled");
    free(body);
    assert_int_equal(dfs_experiments_cancel(x, id, &err), DFS_EPRECOND);
    free(err);
    err = NULL;
    assert_int_equal(dfs_experiments_cancel(x, "nope", &err), DFS_ENOTFOUND);
    free(err);
    err = NULL;
    assert_int_equal(dfs_experiments_start(x, "nonsense", NULL, 0, &id2, &err), DFS_EINVAL);
    free(err);
    err = NULL;
    char *saved = strdup(id);
    free(id);

    /* A running one is stopped by destroy; the runs are listed again by a new instance. */
    assert_int_equal(dfs_experiments_start(x, "loss", NULL, 0, &id, &err), DFS_OK);
    dfs_experiments_destroy(x);
    assert_int_equal(dfs_experiments_create(&cfg, &x, &err), DFS_OK);
    size_t len = 0;
    assert_int_equal(dfs_experiments_list_json(x, &body, &len, &err), DFS_OK);
    assert_non_null(strstr(body, saved));
    assert_non_null(strstr(body, id));
    free(body);
    body = wait_json(x, saved, "cancelled");
    free(body);
    free(id);
    free(saved);
    dfs_experiments_destroy(x);

    /* No program: 503. */
    cfg.program = NULL;
    assert_int_equal(dfs_experiments_create(&cfg, &x, &err), DFS_OK);
    assert_int_equal(dfs_experiments_start(x, "simulate", NULL, 0, &id, &err), DFS_EUNAVAIL);
    free(err);
    dfs_experiments_destroy(x);
    char *cmd = NULL;
    assert_true(asprintf(&cmd, "rm -rf %s", dir) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(prog);
    free(runs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_json_knobs),
        cmocka_unit_test(runs_children),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
