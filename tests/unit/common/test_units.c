#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "common/units.h"

static void test_integers(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(cairn_units_size_parse("123", 0, UINT64_MAX, &v), 0);
    assert_true(v == 123);
    assert_int_equal(cairn_units_size_parse("0", 0, UINT64_MAX, &v), 0);
    assert_true(v == 0);
    assert_int_equal(cairn_units_size_parse("10G", 0, UINT64_MAX, &v), 0);
    assert_true(v == (10ull << 30));
    assert_int_equal(cairn_units_size_parse("64KiB", 0, UINT64_MAX, &v), 0);
    assert_true(v == (64ull << 10));
    assert_int_equal(cairn_units_size_parse("7tb", 0, UINT64_MAX, &v), 0);
    assert_true(v == (7ull << 40));
    assert_int_equal(cairn_units_size_parse("5B", 0, UINT64_MAX, &v), 0);
    assert_true(v == 5);
    v = 42;
    /* No fraction, sign, space or rate without the flags. */
    assert_int_equal(cairn_units_size_parse("0.5K", 0, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse("-1", 0, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse(" 1", 0, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse("1M/s", 0, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse("", 0, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse(NULL, 0, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse("1i", 0, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse("1KX", 0, UINT64_MAX, &v), CAIRN_E_INVAL);
    /* Above max, and past 2^64. */
    assert_int_equal(cairn_units_size_parse("2K", 0, 2047, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse("16777216T", 0, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse("99999999999999999999", 0, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_true(v == 42);
    assert_int_equal(cairn_units_size_parse("2K", 0, 2048, &v), 0);
    assert_true(v == 2048);
}

static void test_fractions_and_rates(void **state)
{
    (void)state;
    uint64_t v = 0;
    const unsigned f = CAIRN_UNITS_FRACTION;
    const unsigned r = CAIRN_UNITS_FRACTION | CAIRN_UNITS_PER_SECOND;
    assert_int_equal(cairn_units_size_parse("0.5k", f, UINT64_MAX, &v), 0);
    assert_true(v == 512);
    assert_int_equal(cairn_units_size_parse("1.5", f, UINT64_MAX, &v), 0);
    assert_true(v == 1);
    assert_int_equal(cairn_units_size_parse("1MiB/s", r, UINT64_MAX, &v), 0);
    assert_true(v == (1ull << 20));
    assert_int_equal(cairn_units_size_parse("256k", r, UINT64_MAX, &v), 0);
    assert_true(v == (256ull << 10));
    assert_int_equal(cairn_units_size_parse("1024T", f, 1ull << 50, &v), 0);
    assert_true(v == (1ull << 50));
    v = 42;
    assert_int_equal(cairn_units_size_parse("1M/s", f, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse("-1", f, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse("nan", f, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse("inf", f, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse("12q", f, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse("2048T", f, 1ull << 50, &v), CAIRN_E_INVAL);
    assert_int_equal(cairn_units_size_parse("1e30", f, UINT64_MAX, &v), CAIRN_E_INVAL);
    assert_true(v == 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_fractions_and_rates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
