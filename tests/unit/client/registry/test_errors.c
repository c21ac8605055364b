/* Unit tests of client/registry/errors.c: registry error answers into
 * messages and codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "client/registry/errors.h"

#include <string.h>

static void expect(long status, const char *body, int code,
                   const char *const words[])
{
    struct cairn_err err;
    cairn_err_clear(&err);
    int rc =
        cairn_reg_error_decode("127.0.0.1:5000", status, body,
                               body ? strlen(body) : 0, "manifest x:1", &err);
    assert_int_equal(rc, code);
    assert_int_equal(err.code, code);
    for (size_t i = 0; words[i]; i++)
        if (strstr(err.msg, words[i]) == NULL)
            fail_msg("\"%s\" lacks \"%s\"", err.msg, words[i]);
}

static void test_decode(void **state)
{
    (void)state;
    expect(404,
           "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":"
           "\"manifest unknown\",\"detail\":{\"Tag\":\"1\"}}]}",
           CAIRN_E_NOTFOUND,
           (const char *[]){"manifest x:1", "manifest unknown",
                            "127.0.0.1:5000", NULL});
    expect(404, "{\"errors\":[{\"code\":\"NAME_UNKNOWN\"}]}", CAIRN_E_NOTFOUND,
           (const char *[]){"repository name not known", NULL});
    expect(404, "{\"errors\":[{\"code\":\"BLOB_UNKNOWN\"}]}", CAIRN_E_NOTFOUND,
           (const char *[]){"blob unknown", NULL});
    expect(404, NULL, CAIRN_E_NOTFOUND, (const char *[]){"not found", NULL});
    expect(
        401,
        "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication "
        "required\"}]}",
        CAIRN_E_AUTH,
        (const char *[]){"127.0.0.1:5000", "cairn login 127.0.0.1:5000",
                         "UNAUTHORIZED", NULL});
    expect(403, "", CAIRN_E_AUTH, (const char *[]){"cairn login", NULL});
    expect(500, "<html>bad gateway\nmore", CAIRN_E_RPC,
           (const char *[]){"500", "<html>bad gateway", NULL});
    expect(400,
           "{\"errors\":[{\"code\":\"DIGEST_INVALID\",\"message\":\"\x1b["
           "31mred\"}]}",
           CAIRN_E_RPC, (const char *[]){"DIGEST_INVALID", "?[31mred", NULL});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
