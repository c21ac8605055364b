#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/error.h"

static void test_append_and_cap(void **state)
{
    (void)state;
    struct cairn_buf b;
    cairn_buf_init(&b, 8);
    assert_int_equal(cairn_buf_puts(&b, "abcd"), 0);
    assert_int_equal(cairn_buf_printf(&b, "%d", 123), 0);
    assert_string_equal(b.data, "abcd123");
    assert_int_equal(cairn_buf_puts(&b, "xy"), CAIRN_E_TOOBIG);
    assert_string_equal(b.data, "abcd123"); /* unchanged on failure */
    assert_int_equal(cairn_buf_putc(&b, 'z'), 0);
    assert_int_equal(b.len, 8);
    char *s = cairn_buf_take(&b);
    assert_string_equal(s, "abcd123z");
    free(s);
    assert_null(b.data);
    cairn_buf_free(&b);
}

static void test_errors_named(void **state)
{
    (void)state;
    assert_string_equal(cairn_strerror(CAIRN_E_TOOBIG), "input exceeds limit");
    assert_string_equal(cairn_strerror(0), "success");
    struct cairn_err e;
    assert_int_equal(cairn_err_set(&e, CAIRN_E_PARSE, "line %d", 7), CAIRN_E_PARSE);
    cairn_err_prefix(&e, "Dockerfile");
    assert_string_equal(e.msg, "Dockerfile: line 7");
    assert_int_equal(e.code, CAIRN_E_PARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_cap),
        cmocka_unit_test(test_errors_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
