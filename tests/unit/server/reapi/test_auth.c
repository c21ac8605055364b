#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "server/reapi/auth.h"

static char path[] = "/tmp/cairn-test-auth.XXXXXX";

static struct cd_auth *load(const char *text, int want, struct cairn_err *err)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    struct cd_auth *a = NULL;
    assert_int_equal(cd_auth_load(path, &a, err), want);
    unlink(path);
    memcpy(path + sizeof path - 7, "XXXXXX", 6);
    return a;
}

static void test_roles_and_globs(void **state)
{
    (void)state;
    struct cairn_err err;
    struct cd_auth *a = load("# comment\n\nw write *\nr read main*  # trailing\np write pr/*\n", 0, &err);
    assert_int_equal(cd_auth_count(a), 3);
    assert_int_equal(cd_auth_check(a, "Bearer w", "x", CD_ACCESS_WRITE), 0);
    assert_int_equal(cd_auth_check(a, "bearer w", "", CD_ACCESS_READ), 0);
    assert_int_equal(cd_auth_check(a, "Bearer r", "main", CD_ACCESS_READ), 0);
    assert_int_equal(cd_auth_check(a, "Bearer r", "main", CD_ACCESS_WRITE), -EACCES);
    assert_int_equal(cd_auth_check(a, "Bearer r", "other", CD_ACCESS_READ), -EACCES);
    assert_int_equal(cd_auth_check(a, "Bearer p", "pr/1/x", CD_ACCESS_WRITE), 0);
    assert_int_equal(cd_auth_check(a, "Bearer p", "main", CD_ACCESS_READ), -EACCES);
    assert_int_equal(cd_auth_check(a, "Bearer nope", "main", CD_ACCESS_READ), CAIRN_E_AUTH);
    assert_int_equal(cd_auth_check(a, NULL, "main", CD_ACCESS_READ), CAIRN_E_AUTH);
    assert_int_equal(cd_auth_check(a, "Basic w", "main", CD_ACCESS_READ), CAIRN_E_AUTH);
    assert_int_equal(cd_auth_check(a, "Bearer ", "main", CD_ACCESS_READ), CAIRN_E_AUTH);
    assert_int_equal(cd_auth_check(NULL, NULL, "x", CD_ACCESS_WRITE), 0);
    cd_auth_free(a);
}

static void test_bad_files(void **state)
{
    (void)state;
    struct cairn_err err;
    load("t admin *\n", CAIRN_E_PARSE, &err);
    assert_non_null(strstr(err.msg, "line 1"));
    load("t read\n", CAIRN_E_PARSE, &err);
    load("t read * extra\n", CAIRN_E_PARSE, &err);
    struct cd_auth *a = NULL;
    assert_int_equal(cd_auth_load("/nonexistent/tokens", &a, &err), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roles_and_globs),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
