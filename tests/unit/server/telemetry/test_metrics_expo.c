/* Prometheus text format of cairnd's /metrics (server/telemetry/expo.c):
 * label values escaped, histograms cumulative with +Inf last and a
 * _count equal to it, _sum in seconds, HELP and TYPE before each family. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "server/telemetry/call.h"
#include "server/telemetry/expo.h"
#include "server/telemetry/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_label_escaping(void **state)
{
    (void)state;
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    struct cd_expo e = {&b, 0};
    const char *l[] = {"instance", "a\\b\"c\nd", "k", "plain", NULL};
    cd_expo_u64(&e, "x_total", l, 7);
    assert_int_equal(e.err, 0);
    assert_string_equal(b.data, "x_total{instance=\"a\\\\b\\\"c\\nd\",k=\"plain\"} 7\n");
    cairn_buf_reset(&b);
    cd_expo_u64(&e, "y", NULL, 0);
    assert_string_equal(b.data, "y 0\n");
    cairn_buf_free(&b);
}

static void test_histogram_cumulative(void **state)
{
    (void)state;
    struct cd_hist h;
    memset(&h, 0, sizeof h);
    cd_hist_observe(&h, 50000);       /* 50 µs: first bucket */
    cd_hist_observe(&h, 100000);      /* exactly 100 µs: still the first (le) */
    cd_hist_observe(&h, 3000000);     /* 3 ms: le=0.005 */
    cd_hist_observe(&h, 20000000000); /* 20 s: only +Inf */
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    struct cd_expo e = {&b, 0};
    const char *l[] = {"method", "Read", NULL};
    cd_expo_hist(&e, "lat_seconds", l, &h);
    assert_int_equal(e.err, 0);
    assert_non_null(strstr(b.data, "lat_seconds_bucket{method=\"Read\",le=\"0.0001\"} 2\n"));
    assert_non_null(strstr(b.data, "lat_seconds_bucket{method=\"Read\",le=\"0.0025\"} 2\n"));
    assert_non_null(strstr(b.data, "lat_seconds_bucket{method=\"Read\",le=\"0.005\"} 3\n"));
    assert_non_null(strstr(b.data, "lat_seconds_bucket{method=\"Read\",le=\"10\"} 3\n"));
    assert_non_null(strstr(b.data, "lat_seconds_bucket{method=\"Read\",le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(b.data, "lat_seconds_count{method=\"Read\"} 4\n"));
    /* 20.00315 s in all. */
    const char *sum = strstr(b.data, "lat_seconds_sum{method=\"Read\"} ");
    assert_non_null(sum);
    double s = strtod(sum + strlen("lat_seconds_sum{method=\"Read\"} "), NULL);
    assert_true(s > 20.0031 && s < 20.0032);
    /* Every bucket line is cumulative: counts never go down, +Inf last. */
    unsigned long long prev = 0;
    int lines = 0;
    const char *inf = NULL;
    for (const char *p = b.data; (p = strstr(p, "_bucket{")) != NULL; p++) {
        const char *sp = strchr(p, '}');
        unsigned long long v = strtoull(sp + 2, NULL, 10);
        assert_true(v >= prev);
        prev = v;
        lines++;
        inf = p;
    }
    assert_int_equal(lines, CD_HIST_BUCKETS + 1);
    assert_non_null(strstr(inf, "le=\"+Inf\""));
    cairn_buf_free(&b);
}

/* Every sample line belongs to a family announced by HELP and TYPE
 * before it; counters end in _total. */
static void test_render_help_type(void **state)
{
    (void)state;
    static struct cd_metrics m;
    const char *paths[] = {"/build.bazel.remote.execution.v2.ActionCache/GetActionResult",
                           "/google.bytestream.ByteStream/Write"};
    cd_metrics_init(&m, paths, 2);
    cd_telemetry_call_start(&m, 0);
    struct cd_call_record r = {0, paths[0], 5, 2000000, 10, 0, "main", "NOT_FOUND", "miss",
                               NULL, NULL};
    cd_telemetry_call_done(&m, &r);
    cd_telemetry_call_start(&m, 1); /* an upload still running */
    struct cd_expo_info info = {.version = "1.2", .key_scheme = "1", .grpc_version = "x\"y",
                                .store = true, .store_limit = 1000, .process = true,
                                .open_fds = 5};
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    struct cd_expo e = {&b, 0};
    assert_int_equal(cd_expo_render(&e, &m, &info), 0);
    char *text = strdup(b.data);
    char family[128] = "", type[32] = "";
    int samples = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char name[128];
        if (sscanf(line, "# TYPE %127s %31s", name, type) == 2) {
            snprintf(family, sizeof family, "%s", name);
            if (strcmp(type, "counter") == 0)
                assert_non_null(strstr(family, "_total"));
            continue;
        }
        if (strncmp(line, "# HELP ", 7) == 0)
            continue;
        assert_true(sscanf(line, "%127[^{ ]", name) == 1);
        /* A histogram's samples add _bucket, _sum or _count. */
        assert_int_equal(strncmp(name, family, strlen(family)), 0);
        samples++;
    }
    free(text);
    assert_true(samples > 50);
    assert_non_null(strstr(b.data, "cairnd_build_info{version=\"1.2\",key_scheme=\"1\","
                                   "grpc_version=\"x\\\"y\"} 1\n"));
    assert_non_null(strstr(b.data, "cairnd_grpc_requests_total{service=\"build.bazel.remote."
                                   "execution.v2.ActionCache\",method=\"GetActionResult\","
                                   "code=\"NOT_FOUND\"} 1\n"));
    assert_non_null(strstr(b.data, "cairnd_uploads_in_flight 1\n"));
    assert_non_null(strstr(b.data, "cairnd_grpc_received_bytes_total 10\n"));
    assert_non_null(strstr(b.data, "cairnd_store_limit_bytes 1000\n"));
    assert_non_null(strstr(b.data, "process_open_fds 5\n"));
    assert_non_null(strstr(b.data, "# TYPE cairnd_grpc_request_duration_seconds histogram\n"));
    cairn_buf_free(&b);
}

/* A buffer too small for the page: the error sticks, nothing crashes. */
static void test_render_capped(void **state)
{
    (void)state;
    static struct cd_metrics m;
    cd_metrics_init(&m, NULL, 0);
    struct cd_expo_info info = {0};
    struct cairn_buf b;
    cairn_buf_init(&b, 100);
    struct cd_expo e = {&b, 0};
    assert_int_not_equal(cd_expo_render(&e, &m, &info), 0);
    assert_true(b.len <= 100);
    cairn_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_histogram_cumulative),
        cmocka_unit_test(test_render_help_type),
        cmocka_unit_test(test_render_capped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
