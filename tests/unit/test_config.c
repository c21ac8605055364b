#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

static void test_options(void **state)
{
    (void)state;
    struct cd_config c;
    struct cairn_err err;
    char *ok[] = {"cairnd", "--listen", "127.0.0.1:0", "--dir", "/tmp/x", "--max-size", "1G",
                  "--threads", "3", "--upload-ttl", "5", NULL};
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
