#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/cmd/build_report.h"
#include "common/error.h"

#define KEY "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIG                                                                    \
    "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

/* A RUN step that made a layer; its instruction and stage name are not
 * UTF-8 (Dockerfiles need not be). */
static struct cairn_build_step ran_step(void)
{
    struct cairn_build_step s;
    memset(&s, 0, sizeof s);
    s.number = 2;
    s.total = 3;
    s.stage_index = 1;
    s.stage_name = "b\xff";
    s.kind = "RUN";
    s.instruction = "RUN echo \xc3\x28";
    s.key = KEY;
    s.status = CAIRN_STEP_RAN;
    s.secs = 0.25;
    s.has_layer = true;
    snprintf(s.layer.digest, sizeof s.layer.digest, "%s", DIG);
    snprintf(s.layer.diff_id, sizeof s.layer.diff_id, "%s", DIG);
    s.layer.size = 106;
    return s;
}

/* JSON lines: a step line per step, then the totals line; bytes that are
 * not UTF-8 come out as U+FFFD, never a lost record. */
static void test_lines(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    struct build_report *r = NULL;
    assert_int_equal(build_report_new(false, f, &r), 0);
    struct cairn_build_step s = ran_step();
    build_report_step(r, &s);
    struct cairn_build_stats st = {.steps = 3, .run = 1, .bytes_down = 7};
    const char *tags[] = {"app"};
    struct build_report_end e = {&st, 1.5, "sha256:" KEY, tags, 1, NULL};
    build_report_totals_line(r, &e);
    build_report_free(r);
    fclose(f);

    char *nl = strchr(buf, '\n');
    assert_non_null(nl);
    json_error_t je;
    json_t *l1 = json_loadb(buf, (size_t)(nl - buf), 0, &je);
    assert_non_null(l1);
    assert_string_equal(json_string_value(json_object_get(l1, "type")), "step");
    assert_string_equal(json_string_value(json_object_get(l1, "status")),
                        "ran");
    assert_string_equal(json_string_value(json_object_get(l1, "instruction")),
                        "RUN echo \xef\xbf\xbd(");
    assert_string_equal(json_string_value(json_object_get(l1, "stage")),
                        "b\xef\xbf\xbd");
    json_t *layer = json_object_get(l1, "layer");
    assert_int_equal(json_integer_value(json_object_get(layer, "size")), 106);
    json_decref(l1);
    json_t *l2 = json_loads(nl + 1, 0, &je);
    assert_non_null(l2);
    assert_string_equal(json_string_value(json_object_get(l2, "type")),
                        "totals");
    assert_string_equal(json_string_value(json_object_get(l2, "status")),
                        "success");
    json_t *t = json_object_get(l2, "totals");
    assert_int_equal(json_integer_value(json_object_get(t, "bytes_down")), 7);
    assert_int_equal(json_integer_value(json_object_get(t, "ran")), 1);
    json_decref(l2);
    free(buf);
}

/* The file of a failed build: status failed, no image, the failed step
 * with its error; written whole, nothing left beside it. */
static void test_write_failed(void **state)
{
    (void)state;
    char dir[] = "/tmp/cairn-report.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/m.json", dir);
    struct build_report *r = NULL;
    assert_int_equal(build_report_new(true, NULL, &r), 0);
    struct cairn_build_step s = ran_step();
    build_report_step(r, &s);
    s.number = 3;
    s.status = CAIRN_STEP_FAILED;
    s.has_layer = false;
    s.error = "step 3/3: boom";
    build_report_step(r, &s);
    struct cairn_build_stats st = {.steps = 3, .run = 1};
    struct build_report_end e = {&st, 1.0, NULL, NULL, 0, "step 3/3: boom"};
    struct cairn_err err;
    cairn_err_clear(&err);
    assert_int_equal(build_report_write(r, &e, path, &err), 0);
    build_report_free(r);

    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "status")),
                        "failed");
    assert_true(json_is_null(json_object_get(o, "image_id")));
    json_t *steps = json_object_get(o, "steps");
    assert_int_equal(json_array_size(steps), 2);
    json_t *last = json_array_get(steps, 1);
    assert_string_equal(json_string_value(json_object_get(last, "status")),
                        "failed");
    assert_true(json_is_null(json_object_get(last, "layer")));
    assert_string_equal(json_string_value(json_object_get(last, "error")),
                        "step 3/3: boom");
    json_decref(o);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    assert_int_equal(n, 1); /* no temp file left */
    unlink(path);
    rmdir(dir);
}

/* A path that cannot be written: an error naming it, no crash. */
static void test_write_bad_path(void **state)
{
    (void)state;
    struct build_report *r = NULL;
    assert_int_equal(build_report_new(true, NULL, &r), 0);
    struct cairn_build_stats st = {0};
    struct build_report_end e = {&st, 0, NULL, NULL, 0, "x"};
    struct cairn_err err;
    cairn_err_clear(&err);
    assert_true(build_report_write(r, &e, "/nonexistent-dir/m.json", &err) < 0);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/m.json"));
    build_report_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_write_failed),
        cmocka_unit_test(test_write_bad_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
