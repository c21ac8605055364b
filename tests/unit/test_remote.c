/* Unit tests of the cache client's pure parts: endpoint URLs and settings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "client/cache.h"
#include "client/config.h"

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
    cairn_config_clear(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_config_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
