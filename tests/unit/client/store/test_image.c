#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/store/image.h"
#include "common/error.h"

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define D1 "sha256:" H64
#define D2                                                                     \
    "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

/* A small config built through the API; its canonical bytes are pinned
 * below, so any change in key order, spacing or omitted fields shows. */
static void build_small(struct cairn_image_config *c)
{
    cairn_image_config_init(c);
    c->architecture = strdup("amd64");
    c->os = strdup("linux");
    c->created = 1795800731; /* 2026-11-27T17:32:11Z */
    assert_int_equal(cairn_image_config_set_env(c, "PATH", "/usr/bin:/bin"), 0);
    assert_int_equal(cairn_image_config_set_label(c, "b", "2"), 0);
    assert_int_equal(cairn_image_config_set_label(c, "a", "1"), 0);
    char *cmd[] = {"sh", "-c", "echo hi"};
    c->cmd = malloc(3 * sizeof *c->cmd);
    for (int i = 0; i < 3; i++)
        c->cmd[i] = strdup(cmd[i]);
    c->ncmd = 3;
    c->has_cmd = true;
    c->diff_ids = malloc(sizeof *c->diff_ids);
    c->diff_ids[0] = strdup(D1);
    c->ndiff_ids = 1;
    assert_int_equal(
        cairn_image_config_add_history(c, 1795800731, "COPY x /x", false), 0);
    assert_int_equal(
        cairn_image_config_add_history(c, 1795800731, "CMD [\"sh\"]", true), 0);
}

static const char small_golden[] =
    "{\"architecture\":\"amd64\","
    "\"config\":{\"Cmd\":[\"sh\",\"-c\",\"echo hi\"],"
    "\"Env\":[\"PATH=/usr/bin:/bin\"],\"Labels\":{\"a\":\"1\",\"b\":\"2\"}},"
    "\"created\":\"2026-11-27T17:32:11Z\","
    "\"history\":[{\"created\":\"2026-11-27T17:32:11Z\",\"created_by\":\"COPY "
    "x /x\"},"
    "{\"created\":\"2026-11-27T17:32:11Z\",\"created_by\":\"CMD [\\\"sh\\\"]\","
    "\"empty_layer\":true}],"
    "\"os\":\"linux\","
    "\"rootfs\":{\"diff_ids\":[\"" D1 "\"],\"type\":\"layers\"}}";

static void test_config_golden(void **state)
{
    (void)state;
    struct cairn_image_config c;
    build_small(&c);
    char *json;
    size_t len;
    assert_int_equal(cairn_image_config_to_json(&c, &json, &len), 0);
    assert_string_equal(json, small_golden);
    assert_int_equal(len, strlen(small_golden));

    /* Writing twice gives the same bytes. */
    char *again;
    assert_int_equal(cairn_image_config_to_json(&c, &again, NULL), 0);
    assert_string_equal(json, again);
    free(again);
    free(json);
    cairn_image_config_clear(&c);
}

static void test_config_round_trip(void **state)
{
    (void)state;
    struct cairn_image_config c, p, cp;
    build_small(&c);
    c.variant = strdup("v8");
    c.author = strdup("me <me@example.com>");
    c.user = strdup("1000:1000");
    c.workdir = strdup("/app");
    c.stop_signal = strdup("SIGTERM");
    c.has_entrypoint = true; /* explicit [] stays [] */
    c.entrypoint = calloc(1, sizeof *c.entrypoint);
    c.exposed_ports = malloc(2 * sizeof(char *));
    c.exposed_ports[0] = strdup("443/tcp");
    c.exposed_ports[1] = strdup("80/tcp");
    c.nexposed_ports = 2;
    c.volumes = malloc(sizeof(char *));
    c.volumes[0] = strdup("/data");
    c.nvolumes = 1;
    c.shell = malloc(2 * sizeof(char *));
    c.shell[0] = strdup("/bin/bash");
    c.shell[1] = strdup("-c");
    c.nshell = 2;
    c.onbuild = malloc(sizeof(char *));
    c.onbuild[0] = strdup("RUN make");
    c.nonbuild = 1;
    c.healthcheck = calloc(1, sizeof *c.healthcheck);
    c.healthcheck->test = malloc(2 * sizeof(char *));
    c.healthcheck->test[0] = strdup("CMD-SHELL");
    c.healthcheck->test[1] = strdup("curl -f http://localhost/");
    c.healthcheck->ntest = 2;
    c.healthcheck->interval_ns = 30000000000;
    c.healthcheck->start_interval_ns = 5000000000;
    c.healthcheck->retries = 3;
    c.history[0].comment = strdup("note");
    c.history[1].created = -1;

    char *j1, *j2, *j3;
    assert_int_equal(cairn_image_config_to_json(&c, &j1, NULL), 0);
    struct cairn_err err;
    assert_int_equal(cairn_image_config_parse(j1, strlen(j1), &p, &err), 0);
    assert_int_equal(cairn_image_config_to_json(&p, &j2, NULL), 0);
    assert_string_equal(j1, j2);
    assert_true(strstr(j1, "\"Entrypoint\":[]") != NULL);
    assert_true(strstr(j1, "\"Healthcheck\":{\"Interval\":30000000000,"
                           "\"Retries\":3,\"StartInterval\":5000000000,"
                           "\"Test\":[\"CMD-SHELL\"") != NULL);
    assert_true(strstr(j1, "\"ExposedPorts\":{\"443/tcp\":{},\"80/tcp\":{}}"));
    assert_true(p.has_entrypoint);
    assert_int_equal(p.nentrypoint, 0);
    assert_int_equal(p.history[1].created, -1);
    assert_string_equal(p.history[0].comment, "note");
    assert_string_equal(p.variant, "v8");

    assert_int_equal(cairn_image_config_copy(&cp, &p), 0);
    assert_int_equal(cairn_image_config_to_json(&cp, &j3, NULL), 0);
    assert_string_equal(j1, j3);

    free(j1);
    free(j2);
    free(j3);
    cairn_image_config_clear(&c);
    cairn_image_config_clear(&p);
    cairn_image_config_clear(&cp);
}

static void test_config_absent_fields(void **state)
{
    (void)state;
    struct cairn_image_config c;
    cairn_image_config_init(&c);
    char *j;
    assert_int_equal(cairn_image_config_to_json(&c, &j, NULL), 0);
    assert_string_equal(j, "{\"config\":{},\"rootfs\":{\"diff_ids\":[],"
                           "\"type\":\"layers\"}}");
    free(j);
}

static void test_set_env_label_replace(void **state)
{
    (void)state;
    struct cairn_image_config c;
    cairn_image_config_init(&c);
    assert_int_equal(cairn_image_config_set_env(&c, "A", "1"), 0);
    assert_int_equal(cairn_image_config_set_env(&c, "PATH", "/bin"), 0);
    assert_int_equal(cairn_image_config_set_env(&c, "AB", "x"), 0);
    assert_int_equal(cairn_image_config_set_env(&c, "A", "2"), 0);
    assert_int_equal(c.nenv, 3);
    assert_string_equal(c.env[0], "A=2"); /* replaced in place */
    assert_string_equal(c.env[2], "AB=x");
    assert_null(c.env[3]);
    assert_int_equal(cairn_image_config_set_label(&c, "k", "v"), 0);
    assert_int_equal(cairn_image_config_set_label(&c, "k", "w"), 0);
    assert_int_equal(c.nlabels, 2);
    assert_string_equal(c.labels[1], "w");
    cairn_image_config_clear(&c);
}

/* Many ENV and LABEL lines (the build sets them one by one through an
 * index, linear in their number): every name found again after the
 * arrays grew, after a copy and after a parse. */
static void test_set_env_label_many(void **state)
{
    (void)state;
    enum { N = 5000 };
    struct cairn_image_config c, d;
    cairn_image_config_init(&c);
    char k[32], v[32];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "K%d", i);
        snprintf(v, sizeof v, "%d", i);
        assert_int_equal(cairn_image_config_set_env(&c, k, v), 0);
        assert_int_equal(cairn_image_config_set_label(&c, k, v), 0);
    }
    assert_int_equal(cairn_image_config_copy(&d, &c), 0);
    for (int i = 0; i < N; i += 7) {
        snprintf(k, sizeof k, "K%d", i);
        assert_int_equal(cairn_image_config_set_env(&c, k, "x"), 0);
        assert_int_equal(cairn_image_config_set_label(&c, k, "x"), 0);
        assert_int_equal(cairn_image_config_set_env(&d, k, "y"), 0);
    }
    assert_int_equal(c.nenv, N);
    assert_int_equal(c.nlabels, 2 * N);
    assert_int_equal(d.nenv, N);
    assert_string_equal(c.env[7], "K7=x");
    assert_string_equal(c.env[8], "K8=8");
    assert_string_equal(c.labels[2 * 14 + 1], "x");
    assert_string_equal(d.env[14], "K14=y");
    /* A "K" that is a prefix of every name is a new one. */
    assert_int_equal(cairn_image_config_set_env(&d, "K", "new"), 0);
    assert_int_equal(d.nenv, N + 1);
    size_t len = 0;
    char *json = NULL;
    assert_int_equal(cairn_image_config_to_json(&d, &json, &len), 0);
    struct cairn_image_config p;
    assert_int_equal(cairn_image_config_parse(json, len, &p, NULL), 0);
    assert_int_equal(cairn_image_config_set_env(&p, "K21", "z"), 0);
    assert_int_equal(p.nenv, N + 1);
    assert_string_equal(p.env[21], "K21=z");
    free(json);
    cairn_image_config_clear(&p);
    cairn_image_config_clear(&d);
    cairn_image_config_clear(&c);
}

/* What `docker inspect`'s source, the config blob, looks like for an image
 * built by the classic builder: extra fields, nulls, "" for unset strings,
 * fractional times with nanoseconds. */
static const char docker_config[] =
    "{\"architecture\":\"amd64\",\"config\":{\"Hostname\":\"\",\"Domainname\":"
    "\"\","
    "\"User\":\"\",\"AttachStdin\":false,\"AttachStdout\":false,"
    "\"AttachStderr\":false,\"ExposedPorts\":{\"8080/tcp\":{}},\"Tty\":false,"
    "\"OpenStdin\":false,\"StdinOnce\":false,\"Env\":[\"PATH=/usr/local/sbin:"
    "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\",\"APP=1\"],\"Cmd\":null,"
    "\"Healthcheck\":{\"Test\":[\"CMD\",\"true\"],\"Interval\":1000000000},"
    "\"Image\":\"sha256:aaaa\",\"Volumes\":null,\"WorkingDir\":\"/srv\","
    "\"Entrypoint\":[\"/srv/app\"],\"OnBuild\":null,\"Labels\":null},"
    "\"container\":\"5f2e\",\"container_config\":{\"Hostname\":\"5f2e\","
    "\"Cmd\":[\"/bin/sh\",\"-c\",\"#(nop) \",\"ENTRYPOINT "
    "[\\\"/srv/app\\\"]\"]},"
    "\"created\":\"2024-03-01T10:20:30.123456789Z\",\"docker_version\":\"24.0."
    "7\","
    "\"history\":[{\"created\":\"2024-02-01T00:00:00.5+01:00\","
    "\"created_by\":\"/bin/sh -c #(nop) ADD file:abc in / \"},"
    "{\"created\":\"2024-03-01T10:20:30.123456789Z\",\"created_by\":\"/bin/sh "
    "-c "
    "#(nop)  ENTRYPOINT [\\\"/srv/app\\\"]\",\"empty_layer\":true}],"
    "\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1
    "\"]}}";

static void test_parse_docker_config(void **state)
{
    (void)state;
    struct cairn_image_config c;
    struct cairn_err err;
    assert_int_equal(cairn_image_config_parse(docker_config,
                                              strlen(docker_config), &c, &err),
                     0);
    assert_string_equal(c.architecture, "amd64");
    assert_string_equal(c.os, "linux");
    assert_null(c.user); /* "" read as absent */
    assert_int_equal(c.created, 1709288430);
    assert_int_equal(c.nenv, 2);
    assert_string_equal(c.env[1], "APP=1");
    assert_false(c.has_cmd);
    assert_true(c.has_entrypoint);
    assert_int_equal(c.nentrypoint, 1);
    assert_string_equal(c.entrypoint[0], "/srv/app");
    assert_string_equal(c.workdir, "/srv");
    assert_int_equal(c.nlabels, 0);
    assert_int_equal(c.nexposed_ports, 1);
    assert_string_equal(c.exposed_ports[0], "8080/tcp");
    assert_int_equal(c.nvolumes, 0);
    assert_non_null(c.healthcheck);
    assert_int_equal(c.healthcheck->ntest, 2);
    assert_int_equal(c.healthcheck->interval_ns, 1000000000);
    assert_int_equal(c.nhistory, 2);
    assert_int_equal(c.history[0].created, 1706742000); /* 2024-01-31T23:00Z */
    assert_false(c.history[0].empty_layer);
    assert_true(c.history[1].empty_layer);
    assert_int_equal(c.ndiff_ids, 1);
    assert_string_equal(c.diff_ids[0], D1);
    cairn_image_config_clear(&c);
}

static void expect_config_error(const char *json, int code, const char *needle)
{
    struct cairn_image_config c;
    memset(&c, 0x5a, sizeof c); /* must stay untouched on failure */
    struct cairn_err err;
    cairn_err_clear(&err);
    assert_int_equal(cairn_image_config_parse(json, strlen(json), &c, &err),
                     code);
    assert_int_equal(err.code, code);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", err.msg, needle);
    unsigned char *b = (unsigned char *)&c;
    for (size_t i = 0; i < sizeof c; i++)
        assert_int_equal(b[i], 0x5a);
}

static void test_config_errors(void **state)
{
    (void)state;
    expect_config_error("{\"os\":", CAIRN_E_PARSE, "invalid JSON");
    expect_config_error("[1]", CAIRN_E_PARSE, "not a JSON object");
    expect_config_error("{\"config\":{\"Cmd\":\"sh\"}}", CAIRN_E_PARSE,
                        "config.Cmd");
    expect_config_error("{\"config\":{\"Env\":[1]}}", CAIRN_E_PARSE,
                        "config.Env[0]");
    expect_config_error("{\"config\":{\"Labels\":{\"a\":1}}}", CAIRN_E_PARSE,
                        "config.Labels.a");
    expect_config_error("{\"created\":\"yesterday\"}", CAIRN_E_PARSE,
                        "created");
    expect_config_error("{\"history\":[{\"created_by\":5}]}", CAIRN_E_PARSE,
                        "history[0].created_by");
    expect_config_error("{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":"
                        "[\"sha256:../../etc\"]}}",
                        CAIRN_E_PARSE, "diff_ids[0]");
    expect_config_error("{\"rootfs\":{\"type\":\"other\"}}",
                        CAIRN_E_UNSUPPORTED, "rootfs.type");
    expect_config_error("{\"config\":{\"Healthcheck\":{\"Retries\":-1}}}",
                        CAIRN_E_PARSE, "Retries");
    /* A NUL inside a JSON string would truncate the C string. */
    expect_config_error("{\"os\":\"li\\u0000nux\"}", CAIRN_E_PARSE,
                        "invalid JSON");
}

static void test_config_cap(void **state)
{
    (void)state;
    size_t n = CAIRN_IMAGE_MAX_JSON + 1;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    struct cairn_image_config c;
    struct cairn_err err;
    assert_int_equal(cairn_image_config_parse(big, n, &c, &err),
                     CAIRN_E_TOOBIG);
    struct cairn_manifest m;
    assert_int_equal(cairn_manifest_parse(big, n, &m, &err), CAIRN_E_TOOBIG);
    /* One byte less is accepted. */
    big[n - 2] = '}';
    assert_int_equal(cairn_image_config_parse(big, n - 1, &c, &err), 0);
    cairn_image_config_clear(&c);
    free(big);
}

static void test_invalid_utf8_written_as_replacement(void **state)
{
    (void)state;
    struct cairn_image_config c;
    cairn_image_config_init(&c);
    assert_int_equal(cairn_image_config_set_label(&c, "k\xff", "v\xc3"), 0);
    char *j;
    assert_int_equal(cairn_image_config_to_json(&c, &j, NULL), 0);
    assert_non_null(strstr(j, "\"k\xef\xbf\xbd\":\"v\xef\xbf\xbd\""));
    free(j);
    cairn_image_config_clear(&c);
}

static void test_time(void **state)
{
    (void)state;
    char buf[CAIRN_IMAGE_TIME_LEN];
    assert_int_equal(cairn_image_time_format(0, buf), 0);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    assert_int_equal(cairn_image_time_format(1795800731, buf), 0);
    assert_string_equal(buf, "2026-11-27T17:32:11Z");
    assert_int_equal(cairn_image_time_format(-5, buf), CAIRN_E_INVAL);
    int64_t t = 7;
    assert_int_equal(cairn_image_time_parse("2026-11-27T17:32:11Z", &t), 0);
    assert_int_equal(t, 1795800731);
    assert_int_equal(cairn_image_time_parse("2026-11-27T18:32:11.5+01:00", &t),
                     0);
    assert_int_equal(t, 1795800731);
    assert_int_equal(cairn_image_time_parse("2000-02-29T00:00:00-00:30", &t),
                     0);
    assert_int_equal(t, 951784200);
    t = 7;
    assert_int_equal(cairn_image_time_parse("2026-11-27 17:32", &t),
                     CAIRN_E_PARSE);
    assert_int_equal(cairn_image_time_parse("2026-13-27T17:32:11Z", &t),
                     CAIRN_E_PARSE);
    assert_int_equal(cairn_image_time_parse("2026-11-27T17:32:11Zjunk", &t),
                     CAIRN_E_PARSE);
    assert_int_equal(t, 7);
}

static void test_digest_valid(void **state)
{
    (void)state;
    assert_true(cairn_image_digest_valid(D1));
    assert_false(cairn_image_digest_valid("sha256:" H64 "0"));
    assert_false(
        cairn_image_digest_valid("sha256:ABCDEF6789abcdef0123456789abcdef"
                                 "0123456789abcdef0123456789abcdef"));
    assert_false(cairn_image_digest_valid("sha512:" H64));
    assert_false(cairn_image_digest_valid("sha256:../../../../etc/passwd"));
    assert_false(cairn_image_digest_valid(NULL));
}

static const char oci_manifest[] =
    "{\"config\":{\"digest\":\"" D1 "\",\"mediaType\":"
    "\"application/vnd.oci.image.config.v1+json\",\"size\":1234},"
    "\"layers\":[{\"digest\":\"" D2 "\",\"mediaType\":"
    "\"application/vnd.oci.image.layer.v1.tar+gzip\",\"size\":99},"
    "{\"digest\":\"" D1 "\",\"mediaType\":"
    "\"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip\","
    "\"size\":5}],"
    "\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"schemaVersion\":2}";

static void test_manifest_round_trip(void **state)
{
    (void)state;
    struct cairn_manifest m;
    struct cairn_err err;
    assert_int_equal(
        cairn_manifest_parse(oci_manifest, strlen(oci_manifest), &m, &err), 0);
    assert_string_equal(m.media_type, CAIRN_MEDIA_MANIFEST);
    assert_string_equal(m.config_digest, D1);
    assert_int_equal(m.config_size, 1234);
    assert_int_equal(m.nlayers, 2);
    assert_string_equal(m.layers[0].media_type, CAIRN_MEDIA_LAYER_GZIP);
    assert_null(m.layer_media[0]);
    assert_string_equal(m.layers[1].media_type,
                        "application/vnd.oci.image.layer.nondistributable.v1."
                        "tar+gzip");
    assert_int_equal(m.layers[0].size, 99);
    assert_string_equal(m.layers[0].diff_id, "");
    char *j;
    size_t len;
    assert_int_equal(cairn_manifest_to_json(&m, &j, &len), 0);
    assert_string_equal(j, oci_manifest); /* the input was canonical */
    assert_int_equal(len, strlen(oci_manifest));
    free(j);
    cairn_manifest_clear(&m);
}

static void test_manifest_docker(void **state)
{
    (void)state;
    const char *dm =
        "{\n   \"schemaVersion\": 2,\n   \"mediaType\": "
        "\"application/vnd.docker.distribution.manifest.v2+json\",\n"
        "   \"config\": {\"mediaType\": "
        "\"application/vnd.docker.container.image.v1+json\", \"size\": 7023,"
        " \"digest\": \"" D1 "\"},\n   \"layers\": [{\"mediaType\": "
        "\"application/vnd.docker.image.rootfs.diff.tar.gzip\", \"size\": "
        "32654, \"digest\": \"" D2 "\"}]\n}";
    struct cairn_manifest m;
    struct cairn_err err;
    assert_int_equal(cairn_manifest_parse(dm, strlen(dm), &m, &err), 0);
    assert_string_equal(m.media_type, CAIRN_MEDIA_DOCKER_MANIFEST);
    assert_string_equal(m.config_media_type, CAIRN_MEDIA_DOCKER_CONFIG);
    assert_string_equal(m.layers[0].media_type, CAIRN_MEDIA_DOCKER_LAYER);
    assert_null(m.layer_media[0]);
    assert_string_equal(m.layers[0].digest, D2);
    cairn_manifest_clear(&m);

    /* Without mediaType, the config's type tells. */
    const char *nomt =
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":"
        "\"application/vnd.oci.image.config.v1+json\",\"size\":1,"
        "\"digest\":\"" D1 "\"},\"layers\":[]}";
    assert_int_equal(cairn_manifest_parse(nomt, strlen(nomt), &m, &err), 0);
    assert_string_equal(m.media_type, CAIRN_MEDIA_MANIFEST);
    assert_int_equal(m.nlayers, 0);
    cairn_manifest_clear(&m);
}

static void expect_manifest_error(const char *json, int code,
                                  const char *needle)
{
    struct cairn_manifest m;
    struct cairn_err err;
    cairn_err_clear(&err);
    assert_int_equal(cairn_manifest_parse(json, strlen(json), &m, &err), code);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", err.msg, needle);
}

static void test_manifest_errors(void **state)
{
    (void)state;
    expect_manifest_error("{", CAIRN_E_PARSE, "invalid JSON");
    expect_manifest_error("{\"schemaVersion\":1}", CAIRN_E_UNSUPPORTED,
                          "schemaVersion");
    expect_manifest_error(
        "{\"schemaVersion\":2,\"mediaType\":"
        "\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}",
        CAIRN_E_UNSUPPORTED, "index");
    expect_manifest_error(
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\","
        "\"size\":1}}",
        CAIRN_E_PARSE, "config: needs");
    expect_manifest_error(
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\","
        "\"size\":1,\"digest\":\"" D1 "\"},\"layers\":{}}",
        CAIRN_E_PARSE, "layers");
    expect_manifest_error(
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\","
        "\"size\":1,\"digest\":\"" D1 "\"},\"layers\":"
        "[{\"mediaType\":\"x\",\"size\":1,\"digest\":"
        "\"sha256:/../x\"}]}",
        CAIRN_E_UNSUPPORTED, "layers[0]");
    expect_manifest_error(
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\","
        "\"size\":-1,\"digest\":\"" D1 "\"},\"layers\":[]}",
        CAIRN_E_PARSE, "negative");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_golden),
        cmocka_unit_test(test_config_round_trip),
        cmocka_unit_test(test_config_absent_fields),
        cmocka_unit_test(test_set_env_label_replace),
        cmocka_unit_test(test_set_env_label_many),
        cmocka_unit_test(test_parse_docker_config),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_cap),
        cmocka_unit_test(test_invalid_utf8_written_as_replacement),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_digest_valid),
        cmocka_unit_test(test_manifest_round_trip),
        cmocka_unit_test(test_manifest_docker),
        cmocka_unit_test(test_manifest_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
