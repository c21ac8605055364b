/* Unit tests of client/registry/manifest.c: kinds (schema 1 refused),
 * containerd's platform normalisation and choice, layer media types and
 * foreign layers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "client/registry/manifest.h"

#include <stdio.h>
#include <string.h>

#define D(c)                                                                   \
    "sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c  \
        c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define ENTRY(c, os, arch, var)                                                \
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","           \
    "\"digest\":\"" D(c) "\",\"size\":10,\"platform\":{\"os\":\"" os           \
                         "\",\"architecture\":\"" arch "\"" var "}}"

static const char
    *INDEX =
        "{\"schemaVersion\":2,\"mediaType\":"
        "\"application/vnd.oci.image.index.v1+json\",\"manifests\":[" ENTRY(
            "1", "linux", "amd64",
            "") "," ENTRY("2", "linux", "arm64",
                          ",\"variant\":\"v8\"") "," ENTRY("3", "linux", "arm",
                                                           ",\"variant\":"
                                                           "\"v6\"") "," ENTRY("4",
                                                                               "unknown",
                                                                               "unknown",
                                                                               "") "]}";

static enum cairn_reg_kind kind_of(const char *ct, const char *body, int *rc,
                                   struct cairn_err *err)
{
    enum cairn_reg_kind k = 0;
    *rc = cairn_reg_manifest_kind(ct, body, strlen(body), &k, err);
    return k;
}

static void test_kind(void **state)
{
    (void)state;
    struct cairn_err err;
    int rc;
    assert_int_equal(kind_of(NULL, INDEX, &rc, &err), CAIRN_REG_INDEX);
    assert_int_equal(rc, 0);
    assert_int_equal(
        kind_of("application/vnd.docker.distribution.manifest.v2+json",
                "{\"schemaVersion\":2,\"config\":{}}", &rc, &err),
        CAIRN_REG_IMAGE);
    assert_int_equal(
        kind_of(NULL, "{\"schemaVersion\":2,\"config\":{}}", &rc, &err),
        CAIRN_REG_IMAGE);
    kind_of("application/vnd.docker.distribution.manifest.v1+prettyjws",
            "{\"schemaVersion\":1,\"fsLayers\":[]}", &rc, &err);
    assert_int_equal(rc, CAIRN_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "schema 1"));
    kind_of(NULL, "{\"schemaVersion\":1}", &rc, &err);
    assert_int_equal(rc, CAIRN_E_UNSUPPORTED);
    kind_of(NULL, "[1]", &rc, &err);
    assert_int_equal(rc, CAIRN_E_PARSE);
    kind_of(NULL, "{\"schemaVersion\":2,\"mediaType\":\"text/html\"}", &rc,
            &err);
    assert_int_equal(rc, CAIRN_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "text/html"));
}

static void plat(const char *s, const char *want)
{
    struct cairn_reg_platform p;
    char b[96];
    assert_int_equal(cairn_reg_platform_parse(s, &p, NULL), 0);
    cairn_reg_platform_format(&p, b, sizeof b);
    assert_string_equal(b, want);
}

static void test_platform_parse(void **state)
{
    (void)state;
    plat("linux/amd64", "linux/amd64");
    plat("Linux/x86_64", "linux/amd64");
    plat("linux/aarch64", "linux/arm64");
    plat("linux/arm64/v8", "linux/arm64");
    plat("linux/arm", "linux/arm/v7");
    plat("linux/arm/7", "linux/arm/v7");
    plat("linux/armhf", "linux/arm/v7");
    plat("linux/arm/v6", "linux/arm/v6");
    struct cairn_reg_platform p;
    assert_int_equal(cairn_reg_platform_parse("linux", &p, NULL),
                     CAIRN_E_INVAL);
    assert_int_equal(cairn_reg_platform_parse("a/b/c/d", &p, NULL),
                     CAIRN_E_INVAL);
    assert_int_equal(cairn_reg_platform_parse("linux/", &p, NULL),
                     CAIRN_E_INVAL);
    assert_int_equal(cairn_reg_platform_parse("linux/a$b", &p, NULL),
                     CAIRN_E_INVAL);
}

static void pick(const char *platform, const char *want_digest)
{
    struct cairn_reg_platform p;
    struct cairn_reg_desc d;
    struct cairn_err err;
    assert_int_equal(cairn_reg_platform_parse(platform, &p, NULL), 0);
    int rc = cairn_reg_index_pick(INDEX, strlen(INDEX), &p, &d, &err);
    if (want_digest == NULL) {
        assert_int_equal(rc, CAIRN_E_NOTFOUND);
        assert_non_null(strstr(err.msg, "linux/amd64"));
        assert_non_null(strstr(err.msg, "linux/arm64"));
        assert_non_null(strstr(err.msg, "linux/arm/v6"));
        assert_null(strstr(strstr(err.msg, "it has:"), "unknown"));
        return;
    }
    if (rc)
        fail_msg("%s: %s", platform, err.msg);
    assert_string_equal(d.digest, want_digest);
    assert_int_equal(d.size, 10);
}

static void test_index_pick(void **state)
{
    (void)state;
    pick("linux/amd64", D("1"));
    pick("linux/arm64", D("2"));
    pick("linux/aarch64/v8", D("2"));
    /* arm v7 falls back to v6; v5 has nothing to run. */
    pick("linux/arm/v7", D("3"));
    pick("linux/arm/v6", D("3"));
    pick("linux/arm/v5", NULL);
    pick("linux/s390x", NULL);
    pick("windows/amd64", NULL);
    pick("unknown/unknown", NULL);
}

static void test_layers(void **state)
{
    (void)state;
    const char *m =
        "{\"schemaVersion\":2,\"layers\":["
        "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\"},"
        "{\"mediaType\":\"application/vnd.docker.image.rootfs.foreign.diff."
        "tar.gzip\",\"urls\":[\"https://a.example/x\",\"file:///etc/passwd\","
        "\"http://b.example/y\"]}]}";
    struct cairn_reg_foreign f[2];
    assert_int_equal(cairn_reg_manifest_layers(m, strlen(m), f, 2, NULL), 0);
    assert_false(f[0].foreign);
    assert_true(f[1].foreign);
    assert_int_equal(f[1].nurls, 2);
    assert_string_equal(f[1].urls[0], "https://a.example/x");
    assert_string_equal(f[1].urls[1], "http://b.example/y");
    cairn_reg_foreign_clear(&f[0]);
    cairn_reg_foreign_clear(&f[1]);
    const char *bad = "{\"layers\":[{\"mediaType\":\"application/x-rar\"}]}";
    struct cairn_err err;
    assert_int_equal(cairn_reg_manifest_layers(bad, strlen(bad), f, 1, &err),
                     CAIRN_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "application/x-rar"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind),
        cmocka_unit_test(test_platform_parse),
        cmocka_unit_test(test_index_pick),
        cmocka_unit_test(test_layers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
