#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/error.h"
#include "server/config.h"

static void test_sizes(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(cd_size_parse("10G", &v), 0);
    assert_true(v == (10ull << 30));
    assert_int_equal(cd_size_parse("512M", &v), 0);
    assert_true(v == (512ull << 20));
    assert_int_equal(cd_size_parse("64KiB", &v), 0);
    assert_true(v == (64ull << 10));
    assert_int_equal(cd_size_parse("123", &v), 0);
    assert_true(v == 123);
    assert_int_equal(cd_size_parse("1g", &v), 0);
    assert_true(v == (1ull << 30));
    assert_int_equal(cd_size_parse("", &v), CAIRN_E_INVAL);
    assert_int_equal(cd_size_parse("-1G", &v), CAIRN_E_INVAL);
    assert_int_equal(cd_size_parse("10X", &v), CAIRN_E_INVAL);
    assert_int_equal(cd_size_parse("99999999999T", &v), CAIRN_E_INVAL);
}

static void test_durations(void **state)
{
    (void)state;
    unsigned v = 0;
    assert_int_equal(cd_duration_parse("90", &v), 0);
    assert_int_equal(v, 90);
    assert_int_equal(cd_duration_parse("90s", &v), 0);
    assert_int_equal(v, 90);
    assert_int_equal(cd_duration_parse("10m", &v), 0);
    assert_int_equal(v, 600);
    assert_int_equal(cd_duration_parse("2h", &v), 0);
    assert_int_equal(v, 7200);
    assert_int_equal(cd_duration_parse("7d", &v), 0);
    assert_int_equal(v, 7 * 86400);
    assert_int_equal(cd_duration_parse("0", &v), 0);
    assert_int_equal(v, 0);
    v = 5;
    assert_int_equal(cd_duration_parse("", &v), CAIRN_E_INVAL);
    assert_int_equal(cd_duration_parse("s", &v), CAIRN_E_INVAL);
    assert_int_equal(cd_duration_parse("-1s", &v), CAIRN_E_INVAL);
    assert_int_equal(cd_duration_parse("1.5h", &v), CAIRN_E_INVAL);
    assert_int_equal(cd_duration_parse("10ms", &v), CAIRN_E_INVAL);
    assert_int_equal(cd_duration_parse("3w", &v), CAIRN_E_INVAL);
    assert_int_equal(cd_duration_parse("99999999d", &v), CAIRN_E_INVAL);
    assert_int_equal(v, 5); /* untouched on failure */
}

/* Parses "cairnd REQUIRED... extra..." and returns the code; err filled. */
static int parse_with(const char *opt, const char *val, struct cd_config *c, struct cairn_err *err)
{
    char *argv[] = {"cairnd", "--listen", "127.0.0.1:0", "--dir", "/tmp/x", "--max-size", "1G",
                    (char *)opt, (char *)val, NULL};
    return cd_config_parse(9, argv, c, err);
}

/* The upload flags: values in range are taken, the rest refused with a
 * message that names the flag and what it accepts. */
static void test_upload_flags(void **state)
{
    (void)state;
    struct cd_config c;
    struct cairn_err err;
    assert_int_equal(parse_with("--threads", "2", &c, &err), 0);
    assert_int_equal(c.upload_ttl_s, 3600);
    assert_true(c.stage_batch == (8u << 20));
    assert_int_equal(parse_with("--upload-idle-timeout", "2s", &c, &err), 0);
    assert_int_equal(c.upload_ttl_s, 2);
    assert_int_equal(parse_with("--upload-idle-timeout", "1h", &c, &err), 0);
    assert_int_equal(c.upload_ttl_s, 3600);
    assert_int_equal(parse_with("--upload-idle-timeout", "0s", &c, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "--upload-idle-timeout: 0s is outside 1s to 604800s"));
    assert_int_equal(parse_with("--upload-idle-timeout", "8d", &c, &err), CAIRN_E_INVAL);
    assert_int_equal(parse_with("--upload-idle-timeout", "soon", &c, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "'soon' is not a duration"));

    assert_int_equal(parse_with("--stage-batch", "32M", &c, &err), 0);
    assert_true(c.stage_batch == (32u << 20));
    assert_int_equal(parse_with("--stage-batch", "1M", &c, &err), 0);
    assert_int_equal(parse_with("--stage-batch", "64M", &c, &err), 0);
    assert_int_equal(parse_with("--stage-batch", "1536K", &c, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "--stage-batch: 1536K is not a whole number of MiB from 1M to 64M"));
    assert_int_equal(parse_with("--stage-batch", "512K", &c, &err), CAIRN_E_INVAL);
    assert_int_equal(parse_with("--stage-batch", "65M", &c, &err), CAIRN_E_INVAL);
    assert_int_equal(parse_with("--stage-batch", "0", &c, &err), CAIRN_E_INVAL);
    assert_int_equal(parse_with("--stage-batch", "lots", &c, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "'lots' is not a size"));

    assert_int_equal(parse_with("--drain-timeout", "0", &c, &err), 0);
    assert_int_equal(c.drain_timeout_s, 0);
    assert_int_equal(c.shutdown_delay_s, 0); /* default: drain at the first signal */
    assert_int_equal(parse_with("--shutdown-delay", "5s", &c, &err), 0);
    assert_int_equal(c.shutdown_delay_s, 5);
    assert_int_equal(parse_with("--shutdown-delay", "2h", &c, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "--shutdown-delay: 2h is outside 0s to 3600s"));
    assert_int_equal(parse_with("--stats-interval", "2m", &c, &err), 0);
    assert_int_equal(c.stats_interval_s, 120);
    assert_int_equal(parse_with("--threads", "0", &c, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "--threads: '0' is not a number from 1 to 1024"));
}

/* The connection limits (issue 9, item 14): defaults, and values out of
 * range refused with the flag named. */
static void test_connection_flags(void **state)
{
    (void)state;
    struct cd_config c;
    struct cairn_err err;
    assert_int_equal(parse_with("--threads", "2", &c, &err), 0);
    assert_true(c.max_header_size == (8u << 10));
    assert_int_equal(c.max_streams, 100);
    assert_int_equal(c.handshake_timeout_s, 10);
    assert_int_equal(c.conn_idle_s, 600);
    assert_int_equal(c.conn_age_s, 7200);
    assert_int_equal(c.conn_grace_s, 1800);
    assert_false(c.no_conn_limits);
    assert_int_equal(parse_with("--max-header-size", "64K", &c, &err), 0);
    assert_true(c.max_header_size == (64u << 10));
    assert_int_equal(parse_with("--max-header-size", "2M", &c, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "--max-header-size: 2M is not a whole number of KiB from 1K to 1024K"));
    assert_int_equal(parse_with("--max-header-size", "1500", &c, &err), CAIRN_E_INVAL);
    assert_int_equal(parse_with("--max-streams", "0", &c, &err), CAIRN_E_INVAL);
    assert_int_equal(parse_with("--max-streams", "1000", &c, &err), 0);
    assert_int_equal(c.max_streams, 1000);
    assert_int_equal(parse_with("--handshake-timeout", "0", &c, &err), CAIRN_E_INVAL);
    assert_int_equal(parse_with("--handshake-timeout", "11m", &c, &err), CAIRN_E_INVAL);
    assert_int_equal(parse_with("--max-connection-idle", "0", &c, &err), 0);
    assert_int_equal(c.conn_idle_s, 0);
    assert_int_equal(parse_with("--max-connection-age", "1d", &c, &err), 0);
    assert_int_equal(c.conn_age_s, 86400);
    assert_int_equal(parse_with("--max-connection-age-grace", "0", &c, &err), CAIRN_E_INVAL);
    char *off[] = {"cairnd", "--listen", "x:1", "--dir", "d", "--max-size", "1M",
                   "--no-connection-limits", NULL};
    assert_int_equal(cd_config_parse(8, off, &c, &err), 0);
    assert_true(c.no_conn_limits);
}

static void test_options(void **state)
{
    (void)state;
    struct cd_config c;
    struct cairn_err err;
    char *ok[] = {"cairnd", "--listen", "127.0.0.1:0", "--dir", "/tmp/x", "--max-size", "1G",
                  "--threads", "3", "--upload-idle-timeout", "5", NULL};
    assert_int_equal(cd_config_parse(11, ok, &c, &err), 0);
    assert_string_equal(c.listen, "127.0.0.1:0");
    assert_int_equal(c.threads, 3);
    assert_int_equal(c.upload_ttl_s, 5);
    assert_true(c.max_size == (1ull << 30));
    char *missing[] = {"cairnd", "--listen", "x:1", NULL};
    assert_int_equal(cd_config_parse(3, missing, &c, &err), CAIRN_E_INVAL);
    char *bad[] = {"cairnd", "--threads", "0", NULL};
    assert_int_equal(cd_config_parse(3, bad, &c, &err), CAIRN_E_INVAL);
    char *unknown[] = {"cairnd", "--bogus", NULL};
    assert_int_equal(cd_config_parse(2, unknown, &c, &err), CAIRN_E_INVAL);
    char *tls[] = {"cairnd", "--listen", "x:1", "--dir", "d", "--max-size", "1M", "--tls-cert", "c", NULL};
    assert_int_equal(cd_config_parse(9, tls, &c, &err), CAIRN_E_INVAL);
    /* Metrics and log format: text and no listener by default; a token
     * file without a listener protects nothing and is refused. */
    assert_int_equal(cd_config_parse(11, ok, &c, &err), 0);
    assert_string_equal(c.log_format, "text");
    assert_null(c.metrics_listen);
    char *m[] = {"cairnd", "--listen", "x:1", "--dir", "d", "--max-size", "1M", "--metrics-listen",
                 "*:9464", "--metrics-token-file", "t", "--log-format", "json", NULL};
    assert_int_equal(cd_config_parse(13, m, &c, &err), 0);
    assert_string_equal(c.metrics_listen, "*:9464");
    assert_string_equal(c.metrics_token_file, "t");
    assert_string_equal(c.log_format, "json");
    char *tok[] = {"cairnd", "--listen", "x:1", "--dir", "d", "--max-size", "1M",
                   "--metrics-token-file", "t", NULL};
    assert_int_equal(cd_config_parse(9, tok, &c, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "--metrics-token-file needs --metrics-listen"));
    /* --health-listen: off by default; it needs the gate's relay. */
    assert_int_equal(cd_config_parse(11, ok, &c, &err), 0);
    assert_null(c.health_listen);
    char *h[] = {"cairnd", "--listen", "x:1", "--dir", "d", "--max-size", "1M", "--health-listen",
                 "*:9093", NULL};
    assert_int_equal(cd_config_parse(9, h, &c, &err), 0);
    assert_string_equal(c.health_listen, "*:9093");
    char *hg[] = {"cairnd", "--listen", "x:1", "--dir", "d", "--max-size", "1M", "--health-listen",
                  "*:9093", "--no-gate", NULL};
    assert_int_equal(cd_config_parse(10, hg, &c, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "--health-listen needs the HTTP/2 gate"));
}

/* --backend and its --s3-* options: parsed, and refused when they do not
 * go together or the URL is not s3://BUCKET[/PREFIX]. */
static void test_backend_flags(void **state)
{
    (void)state;
    struct cd_config c;
    struct cairn_err err;
    char *ok[] = {"cairnd", "--listen", "x:1", "--dir", "d", "--max-size", "1M", "--backend",
                  "s3://bucket/pre/fix", "--s3-endpoint", "http://127.0.0.1:9000", "--s3-region",
                  "eu-west-1", "--s3-path-style", "--s3-credentials-file", "f", NULL};
    assert_int_equal(cd_config_parse(16, ok, &c, &err), 0);
    assert_string_equal(c.backend, "s3://bucket/pre/fix");
    assert_string_equal(c.s3_endpoint, "http://127.0.0.1:9000");
    assert_string_equal(c.s3_region, "eu-west-1");
    assert_true(c.s3_path_style);
    assert_string_equal(c.s3_credentials_file, "f");
    char *plain[] = {"cairnd", "--listen", "x:1", "--dir", "d", "--max-size", "1M", NULL};
    assert_int_equal(cd_config_parse(7, plain, &c, &err), 0);
    assert_null(c.backend);
    assert_false(c.s3_path_style);
    char *noep[] = {"cairnd", "--listen", "x:1", "--dir", "d", "--max-size", "1M", "--backend",
                    "s3://bucket", NULL};
    assert_int_equal(cd_config_parse(9, noep, &c, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "needs --s3-endpoint"));
    const char *bad_urls[] = {"http://bucket", "s3://", "s3:///x", "bucket"};
    for (size_t i = 0; i < 4; i++) {
        char *bad[] = {"cairnd", "--listen", "x:1", "--dir", "d", "--max-size", "1M", "--backend",
                       (char *)bad_urls[i], "--s3-endpoint", "http://e", NULL};
        assert_int_equal(cd_config_parse(11, bad, &c, &err), CAIRN_E_INVAL);
        assert_non_null(strstr(err.msg, "is not s3://BUCKET[/PREFIX]"));
    }
    char *orphan[] = {"cairnd", "--listen", "x:1", "--dir", "d", "--max-size", "1M",
                      "--s3-path-style", NULL};
    assert_int_equal(cd_config_parse(8, orphan, &c, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "need --backend"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_backend_flags),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_upload_flags),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_connection_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
