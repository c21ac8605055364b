/* Unit tests of the cache client's pure parts: endpoint URLs, settings,
 * and the layer record in an action result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "client/remote/cache.h"
#include "client/remote/config.h"

#include <stdio.h>
#include <string.h>

static void test_url_parse(void **state)
{
    (void)state;
    char t[256], inst[256];
    bool tls = true;
    assert_int_equal(cairn_cache_url_parse("grpc://127.0.0.1:8980", t, sizeof t,
                                           inst, sizeof inst, &tls, NULL),
                     0);
    assert_string_equal(t, "127.0.0.1:8980");
    assert_string_equal(inst, "");
    assert_false(tls);
    assert_int_equal(cairn_cache_url_parse("grpcs://cache.example:443/pr/42/",
                                           t, sizeof t, inst, sizeof inst,
                                           &tls, NULL),
                     0);
    assert_string_equal(t, "cache.example:443");
    assert_string_equal(inst, "pr/42");
    assert_true(tls);
    static const char *const bad[] = {
        "http://h:1", "grpc://h", "grpc://:1", "grpc://h:", "grpc://h:x1",
        "grpc://h:1/blobs", "grpc://h:1/a/uploads/b", "grpc://h:1/a//b", "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cairn_cache_url_parse(bad[i], t, sizeof t, inst,
                                               sizeof inst, &tls, NULL),
                         CAIRN_E_INVAL);
}

#define HEX64(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
    c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void set_prop(struct cairn_remote_file *f, const char *name,
                     const char *value)
{
    snprintf(f->props[f->nprops].name, sizeof f->props[0].name, "%s", name);
    snprintf(f->props[f->nprops].value, sizeof f->props[0].value, "%s", value);
    f->nprops++;
}

/* A layer record survives make + parse; an empty step likewise. */
static void test_result_roundtrip(void **state)
{
    (void)state;
    struct cairn_layer_rec rec, back;
    memset(&rec, 0, sizeof rec);
    rec.layer.media_type = CAIRN_MEDIA_LAYER_GZIP;
    snprintf(rec.layer.digest, sizeof rec.layer.digest, "sha256:" HEX64("a"));
    snprintf(rec.layer.diff_id, sizeof rec.layer.diff_id, "sha256:" HEX64("b"));
    rec.layer.size = 1234;
    struct cairn_remote_result res;
    cairn_cache_result_make(&rec, &res);
    assert_int_equal(res.nfiles, 1);
    assert_string_equal(res.files[0].path, "layer");
    assert_string_equal(res.files[0].digest.hash, HEX64("a"));
    assert_int_equal(res.files[0].digest.size, 1234);
    assert_int_equal(cairn_cache_result_parse(&res, &back, NULL), 0);
    assert_false(back.empty);
    assert_string_equal(back.layer.digest, rec.layer.digest);
    assert_string_equal(back.layer.diff_id, rec.layer.diff_id);
    assert_string_equal(back.layer.media_type, CAIRN_MEDIA_LAYER_GZIP);
    assert_int_equal(back.layer.size, 1234);

    memset(&rec, 0, sizeof rec);
    rec.empty = true;
    cairn_cache_result_make(&rec, &res);
    assert_string_equal(res.files[0].digest.hash, EMPTY_HASH);
    assert_int_equal(res.files[0].digest.size, 0);
    assert_int_equal(cairn_cache_result_parse(&res, &back, NULL), 0);
    assert_true(back.empty);
}

/* Results that are not cairn's are quiet misses; cairn's that do not add
 * up are corrupt; neither writes the record. */
static void test_result_refused(void **state)
{
    (void)state;
    struct cairn_remote_result res;
    struct cairn_layer_rec out;
    memset(&out, 0x5a, sizeof out);
    /* The old form: layer.json beside the layer, no properties. */
    memset(&res, 0, sizeof res);
    res.nfiles = 2;
    snprintf(res.files[0].path, sizeof res.files[0].path, "layer.json");
    snprintf(res.files[1].path, sizeof res.files[1].path, "layer");
    assert_int_equal(cairn_cache_result_parse(&res, &out, NULL),
                     CAIRN_E_NOTFOUND);
    /* Someone else's result, or a failed action. */
    memset(&res, 0, sizeof res);
    assert_int_equal(cairn_cache_result_parse(&res, &out, NULL),
                     CAIRN_E_NOTFOUND);
    struct cairn_layer_rec good;
    memset(&good, 0, sizeof good);
    good.layer.media_type = CAIRN_MEDIA_LAYER_GZIP;
    snprintf(good.layer.digest, sizeof good.layer.digest, "sha256:" HEX64("a"));
    snprintf(good.layer.diff_id, sizeof good.layer.diff_id, "sha256:" HEX64("b"));
    good.layer.size = 10;
    cairn_cache_result_make(&good, &res);
    res.exit_code = 1;
    assert_int_equal(cairn_cache_result_parse(&res, &out, NULL),
                     CAIRN_E_NOTFOUND);

    /* Corrupt: unknown media type, bad diff_id, size 0, an "empty" step
     * with a layer or with a layer's properties. */
    cairn_cache_result_make(&good, &res);
    snprintf(res.files[0].props[1].value, sizeof res.files[0].props[1].value,
             "text/plain");
    assert_int_equal(cairn_cache_result_parse(&res, &out, NULL),
                     CAIRN_E_CORRUPT);
    cairn_cache_result_make(&good, &res);
    snprintf(res.files[0].props[0].value, sizeof res.files[0].props[0].value,
             "sha256:" HEX64("g"));
    assert_int_equal(cairn_cache_result_parse(&res, &out, NULL),
                     CAIRN_E_CORRUPT);
    cairn_cache_result_make(&good, &res);
    res.files[0].digest.size = 0;
    assert_int_equal(cairn_cache_result_parse(&res, &out, NULL),
                     CAIRN_E_CORRUPT);
    cairn_cache_result_make(&good, &res);
    set_prop(&res.files[0], "cairn.empty", "true");
    assert_int_equal(cairn_cache_result_parse(&res, &out, NULL),
                     CAIRN_E_CORRUPT);
    struct cairn_layer_rec empty;
    memset(&empty, 0, sizeof empty);
    empty.empty = true;
    cairn_cache_result_make(&empty, &res);
    res.files[0].digest.size = 5;
    assert_int_equal(cairn_cache_result_parse(&res, &out, NULL),
                     CAIRN_E_CORRUPT);
    cairn_cache_result_make(&empty, &res);
    snprintf(res.files[0].props[0].value, sizeof res.files[0].props[0].value,
             "yes");
    assert_int_equal(cairn_cache_result_parse(&res, &out, NULL),
                     CAIRN_E_CORRUPT);
    /* Out-params are written only on success. */
    struct cairn_layer_rec untouched;
    memset(&untouched, 0x5a, sizeof untouched);
    assert_memory_equal(&out, &untouched, sizeof out);
}

static void test_config_set(void **state)
{
    (void)state;
    struct cairn_config c;
    cairn_config_init(&c);
    assert_int_equal(cairn_config_set(&c, "cache", "grpc://a:1", NULL), 0);
    assert_int_equal(cairn_config_set(&c, "cache", "grpc://b:1", NULL), 0);
    assert_int_equal(c.urls.n, 2);
    assert_int_equal(cairn_config_set(&c, "cache", "", NULL), 0);
    assert_int_equal(c.urls.n, 0);
    assert_int_equal(cairn_config_set(&c, "cache-mode", "read", NULL), 0);
    assert_true(c.read_only);
    assert_int_equal(cairn_config_set(&c, "cache-mode", "write", NULL),
                     CAIRN_E_INVAL);
    assert_int_equal(cairn_config_set(&c, "cache-timeout", "1500ms", NULL), 0);
    assert_int_equal(c.timeout_ms, 1500);
    assert_int_equal(cairn_config_set(&c, "cache-timeout", "2m", NULL), 0);
    assert_int_equal(c.timeout_ms, 120000);
    assert_int_equal(cairn_config_set(&c, "cache-timeout", "-1s", NULL),
                     CAIRN_E_INVAL);
    assert_int_equal(cairn_config_set(&c, "cache-token", "tok", NULL), 0);
    assert_string_equal(c.token, "tok");
    assert_int_equal(cairn_config_set(&c, "nope", "x", NULL), CAIRN_E_INVAL);
    /* Registries reached without TLS checks: repeatable, "" clears. */
    assert_int_equal(cairn_config_set(&c, "insecure-registry", "h:5", NULL),
                     0);
    assert_int_equal(
        cairn_config_set(&c, "insecure-registry", "10.0.0.1", NULL), 0);
    assert_int_equal(c.insecure.n, 2);
    assert_string_equal(c.insecure.v[1], "10.0.0.1");
    assert_int_equal(cairn_config_set(&c, "insecure-registry", "", NULL), 0);
    assert_int_equal(c.insecure.n, 0);
    cairn_config_clear(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_config_set),
        cmocka_unit_test(test_result_roundtrip),
        cmocka_unit_test(test_result_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
