/* client/registry/token.c: the token service's answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "client/registry/token.h"

/* 2026-12-06T22:00:00Z */
#define NOW 1796594400

static void parse_ok(const char *body, const char *token, int64_t ttl_ms)
{
    struct cairn_reg_token t = {0};
    struct cairn_err err = {0};
    int rc = cairn_reg_token_parse(body, strlen(body), NOW, &t, &err);
    if (rc != 0)
        fail_msg("%s: %d %s", body, rc, err.msg);
    assert_string_equal(t.token, token);
    assert_int_equal(t.ttl_ms, ttl_ms);
    cairn_reg_token_clear(&t);
    assert_null(t.token);
}

static void parse_fails(const char *body, const char *in_msg)
{
    struct cairn_reg_token t = {0};
    struct cairn_err err = {0};
    assert_int_equal(cairn_reg_token_parse(body, strlen(body), NOW, &t, &err),
                     CAIRN_E_PARSE);
    assert_null(t.token);
    if (!strstr(err.msg, in_msg))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, in_msg);
    /* A message never quotes the token. */
    assert_null(strstr(err.msg, "SECRET"));
}

static void test_answers(void **state)
{
    (void)state;
    parse_ok("{\"token\": \"abc.def\", \"expires_in\": 300}", "abc.def",
             300000);
    /* No expires_in: the spec's 60 s. access_token when token is absent
     * or empty. */
    parse_ok("{\"access_token\": \"x\"}", "x", 60000);
    parse_ok("{\"token\": \"\", \"access_token\": \"y\", \"expires_in\": 0}",
             "y", 60000);
    parse_ok("{\"token\": \"t\", \"access_token\": \"u\"}", "t", 60000);
    /* issued_at 100 s ago: 100 s of the lifetime are gone. */
    parse_ok("{\"token\": \"t\", \"expires_in\": 300, "
             "\"issued_at\": \"2026-12-06T21:58:20Z\"}", "t", 200000);
    parse_ok("{\"token\": \"t\", \"expires_in\": 300, "
             "\"issued_at\": \"2026-12-06T23:58:20.123+02:00\"}", "t", 200000);
    /* A clock that disagrees (future, or older than the lifetime): only
     * expires_in counts. */
    parse_ok("{\"token\": \"t\", \"expires_in\": 300, "
             "\"issued_at\": \"2026-12-07T22:00:00Z\"}", "t", 300000);
    parse_ok("{\"token\": \"t\", \"expires_in\": 300, "
             "\"issued_at\": \"2020-01-01T00:00:00Z\"}", "t", 300000);
    /* A refresh token (asked for by `cairn login`) is kept. */
    struct cairn_reg_token t = {0};
    struct cairn_err err = {0};
    const char *b = "{\"token\": \"t\", \"refresh_token\": \"r-1\"}";
    assert_int_equal(cairn_reg_token_parse(b, strlen(b), NOW, &t, &err), 0);
    assert_string_equal(t.refresh, "r-1");
    cairn_reg_token_clear(&t);
    assert_null(t.refresh);
    /* A promise past a day is capped. */
    parse_ok("{\"token\": \"t\", \"expires_in\": 99999999}", "t", 86400000);
}

static void test_hostile_answers(void **state)
{
    (void)state;
    parse_fails("<html>502</html>", "not a JSON object");
    parse_fails("[\"SECRET\"]", "not a JSON object");
    parse_fails("{}", "no \"token\"");
    parse_fails("{\"token\": 7}", "no \"token\"");
    parse_fails("{\"token\": \"SECRET\", \"expires_in\": \"60\"}",
                "not an integer");
    parse_fails("{\"token\": \"SECRET\", \"issued_at\": \"yesterday\"}",
                "RFC 3339");
    parse_fails("{\"token\": \"SECRET\", \"issued_at\": "
                "\"2026-12-06T22:00:00+0a:00\"}", "RFC 3339");
    parse_fails("{\"token\": \"SECRET\\r\\nX-Evil: 1\"}", "control");
    parse_fails("{\"token\": \"SEC RET\"}", "space");
    parse_fails("{\"token\": \"SECRET\", \"refresh_token\": 1}",
                "\"refresh_token\" is not a string");
    parse_fails("{\"token\": \"SECRET\", \"refresh_token\": \"a\\nb\"}",
                "control");
    size_t n = 70 * 1024;
    char *big = malloc(n + 32);
    assert_non_null(big);
    memcpy(big, "{\"token\": \"", 11);
    memset(big + 11, 'a', n);
    memcpy(big + 11 + n, "\"}", 3);
    parse_fails(big, "too long");
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_hostile_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
