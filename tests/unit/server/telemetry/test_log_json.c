/* cairnd's JSON log lines (server/telemetry/log.c, call.c): one valid
 * JSON object per line with time (RFC 3339, milliseconds, UTC), level and
 * msg; a finished call's line has service, method, instance, code,
 * duration, bytes and peer; hostile strings (quotes, control characters,
 * bytes that are not UTF-8) cannot break a line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/telemetry/call.h"
#include "server/telemetry/log.h"

#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static json_t *parse_line(const char *line)
{
    json_error_t je;
    json_t *j = json_loads(line, 0, &je);
    if (j == NULL)
        fail_msg("not JSON (%s): %s", je.text, line);
    assert_true(json_is_object(j));
    regex_t re;
    assert_int_equal(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
                             REG_EXTENDED | REG_NOSUB), 0);
    const char *t = json_string_value(json_object_get(j, "time"));
    assert_non_null(t);
    assert_int_equal(regexec(&re, t, 0, NULL, 0), 0);
    regfree(&re);
    assert_non_null(json_string_value(json_object_get(j, "level")));
    assert_non_null(json_string_value(json_object_get(j, "msg")));
    return j;
}

static void test_hostile_strings(void **state)
{
    (void)state;
    char line[65536];
    struct cd_log_field f[] = {
        {"instance", CD_LOG_STR, "a\"b\\c\nd\x01\xff\xfe\xc3(", 0, 0},
        {"n", CD_LOG_INT, NULL, -42, 0},
        {"duration_s", CD_LOG_SECONDS, NULL, 0, 0.25},
        {"peer", CD_LOG_STR, NULL, 0, 0},
    };
    cd_log_line_format(CD_LOG_JSON, CD_LOG_WARN, "msg \"quoted\"\ttab \xe2\x82\xac", f, 4, line,
                       sizeof line);
    assert_null(strchr(line, '\n'));
    json_t *j = parse_line(line);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(j, "msg")),
                        "msg \"quoted\"\ttab \xe2\x82\xac");
    /* Invalid bytes are replaced, everything else kept. */
    assert_string_equal(json_string_value(json_object_get(j, "instance")),
                        "a\"b\\c\nd\x01\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd(");
    assert_int_equal(json_integer_value(json_object_get(j, "n")), -42);
    assert_true(json_real_value(json_object_get(j, "duration_s")) == 0.25);
    assert_string_equal(json_string_value(json_object_get(j, "peer")), "");
    json_decref(j);
    /* A message far past the cap is cut, and the line is still JSON. */
    char big[8192];
    memset(big, '"', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cd_log_line_format(CD_LOG_JSON, CD_LOG_INFO, big, f, 4, line, sizeof line);
    json_decref(parse_line(line));
}

/* Text stays as it was: "TIME LEVEL message". */
static void test_text_unchanged(void **state)
{
    (void)state;
    char line[4096];
    cd_log_line_format(CD_LOG_TEXT, CD_LOG_INFO, "summary (exit): requests=1", NULL, 0, line,
                       sizeof line);
    assert_non_null(strstr(line, "Z info summary (exit): requests=1"));
    assert_null(strchr(line, '{'));
}

static void peer_of(void *ctx, char *out, size_t n)
{
    (void)ctx;
    snprintf(out, n, "ipv4:127.0.0.1:4242");
}

/* The finished-call lines, read back from stderr: a failure at info, a
 * success only at debug; every field there; the call's token nowhere
 * (the record has no place for it; details are the status message). */
static void test_call_lines(void **state)
{
    (void)state;
    char path[] = "/tmp/cairn-logjson.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    cd_log_format_set(CD_LOG_JSON);
    static struct cd_metrics m;
    const char *paths[] = {"/build.bazel.remote.execution.v2.ActionCache/GetActionResult"};
    cd_metrics_init(&m, paths, 1);
    struct cd_call_record ok = {0, paths[0], 0, 1500000, 120, 3400, "ci/main", "OK", "",
                                peer_of, NULL};
    struct cd_call_record bad = {0, paths[0], 16, 900000, 77, 0, "ci/main", "UNAUTHENTICATED",
                                 "missing or unknown bearer token", peer_of, NULL};
    cd_log_level_set(CD_LOG_INFO);
    cd_telemetry_call_start(&m, 0);
    cd_telemetry_call_done(&m, &ok); /* not written at info */
    cd_telemetry_call_start(&m, 0);
    cd_telemetry_call_done(&m, &bad);
    cd_log_level_set(CD_LOG_DEBUG);
    cd_telemetry_call_start(&m, 0);
    cd_telemetry_call_done(&m, &ok);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    cd_log_format_set(CD_LOG_TEXT);
    cd_log_level_set(CD_LOG_INFO);

    FILE *f = fdopen(fd, "r");
    rewind(f);
    char line[65536];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        json_t *j = parse_line(line);
        static const char *const keys[] = {"service", "method", "instance", "code",
                                           "duration_s", "bytes_in", "bytes_out", "peer"};
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
            if (json_object_get(j, keys[k]) == NULL)
                fail_msg("no %s in %s", keys[k], line);
        assert_string_equal(json_string_value(json_object_get(j, "service")),
                            "build.bazel.remote.execution.v2.ActionCache");
        assert_string_equal(json_string_value(json_object_get(j, "method")), "GetActionResult");
        assert_string_equal(json_string_value(json_object_get(j, "instance")), "ci/main");
        assert_string_equal(json_string_value(json_object_get(j, "peer")), "ipv4:127.0.0.1:4242");
        const char *code = json_string_value(json_object_get(j, "code"));
        if (n == 0) {
            assert_string_equal(code, "UNAUTHENTICATED");
            assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
            assert_int_equal(json_integer_value(json_object_get(j, "bytes_in")), 77);
        } else {
            assert_string_equal(code, "OK");
            assert_string_equal(json_string_value(json_object_get(j, "level")), "debug");
            assert_int_equal(json_integer_value(json_object_get(j, "bytes_out")), 3400);
            assert_true(json_real_value(json_object_get(j, "duration_s")) == 0.0015);
        }
        json_decref(j);
        n++;
    }
    fclose(f);
    unlink(path);
    assert_int_equal(n, 2);
    assert_int_equal(cd_metrics_get(&m.calls[0][0]), 2);
    assert_int_equal(cd_metrics_get(&m.calls[0][16]), 1);
    assert_int_equal(cd_metrics_get(&m.errors), 1);
}

/* A flood of failing calls at info: every one is counted, at most 100
 * lines a second are written (the log is the client's to fill
 * otherwise). */
static void test_call_flood_budget(void **state)
{
    (void)state;
    char path[] = "/tmp/cairn-logflood.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    cd_log_format_set(CD_LOG_JSON);
    cd_log_level_set(CD_LOG_INFO);
    static struct cd_metrics m;
    cd_metrics_init(&m, NULL, 0);
    struct cd_call_record bad = {0, NULL, 16, 1000, 5, 0, "", "UNAUTHENTICATED", "no token",
                                 NULL, NULL};
    for (int i = 0; i < 1000; i++) {
        cd_telemetry_call_start(&m, 0);
        cd_telemetry_call_done(&m, &bad);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    cd_log_format_set(CD_LOG_TEXT);
    FILE *f = fdopen(fd, "r");
    rewind(f);
    char line[65536];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        json_decref(parse_line(line));
        n++;
    }
    fclose(f);
    unlink(path);
    /* Within one second 100 (less the line test_call_lines may have
     * taken in the same second); a second boundary crossed mid-loop
     * allows up to 200. */
    if (n < 90 || n > 200)
        fail_msg("%d lines for 1000 failed calls", n);
    assert_int_equal(cd_metrics_get(&m.calls[CD_METRICS_METHODS_MAX][16]), 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_strings),
        cmocka_unit_test(test_text_unchanged),
        cmocka_unit_test(test_call_lines),
        cmocka_unit_test(test_call_flood_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
