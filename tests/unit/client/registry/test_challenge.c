/* client/registry/challenge.c: WWW-Authenticate values as registries send
 * them, and hostile ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/registry/challenge.h"

static void parse_ok(const char *h, struct cairn_reg_challenge *c)
{
    struct cairn_err err = {0};
    int rc = cairn_reg_challenge_parse(h, c, &err);
    if (rc != 0)
        fail_msg("%s: %d %s", h, rc, err.msg);
}

static void parse_fails(const char *h, int code, const char *in_msg)
{
    struct cairn_reg_challenge c = {0};
    struct cairn_err err = {0};
    int rc = cairn_reg_challenge_parse(h, &c, &err);
    if (rc != code)
        fail_msg("\"%.60s\": got %d (%s), want %d", h, rc, err.msg, code);
    assert_null(c.realm);
    assert_int_equal(c.scheme, 0);
    if (in_msg && !strstr(err.msg, in_msg))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, in_msg);
}

static void test_distribution_bearer(void **state)
{
    (void)state;
    struct cairn_reg_challenge c = {0};
    /* What distribution 2.8 sends for a push without the right token. */
    parse_ok("Bearer realm=\"http://127.0.0.1:4000/token\",service="
             "\"cairn-test\",scope=\"repository:app/x:pull,push\","
             "error=\"insufficient_scope\"", &c);
    assert_int_equal(c.scheme, CAIRN_REG_SCHEME_BEARER);
    assert_string_equal(c.realm, "http://127.0.0.1:4000/token");
    assert_string_equal(c.service, "cairn-test");
    assert_string_equal(c.scope, "repository:app/x:pull,push");
    assert_string_equal(c.error, "insufficient_scope");
    cairn_reg_challenge_clear(&c);
    assert_null(c.realm);
    /* Case-insensitive names, spaces around '=' and ',', token values,
     * parameters cairn ignores, several scopes. */
    parse_ok("bearer  Realm = \"https://auth.example/t?x=1\" , "
             "foo=bar,service=reg.example ,scope=\"repository:a:pull "
             "repository:b:pull\"", &c);
    assert_int_equal(c.scheme, CAIRN_REG_SCHEME_BEARER);
    assert_string_equal(c.realm, "https://auth.example/t?x=1");
    assert_string_equal(c.service, "reg.example");
    assert_string_equal(c.scope, "repository:a:pull repository:b:pull");
    assert_null(c.error);
    cairn_reg_challenge_clear(&c);
}

static void test_basic_and_escapes(void **state)
{
    (void)state;
    struct cairn_reg_challenge c = {0};
    parse_ok("Basic realm=\"basic-realm\"", &c);
    assert_int_equal(c.scheme, CAIRN_REG_SCHEME_BASIC);
    assert_string_equal(c.realm, "basic-realm");
    cairn_reg_challenge_clear(&c);
    parse_ok("Basic", &c);
    assert_int_equal(c.scheme, CAIRN_REG_SCHEME_BASIC);
    assert_null(c.realm);
    cairn_reg_challenge_clear(&c);
    /* Quoted pairs: \" and \\ stand for themselves, commas inside
     * quotes do not split. */
    parse_ok("Basic realm=\"a \\\"quoted\\\" \\\\ realm, with comma\"", &c);
    assert_string_equal(c.realm, "a \"quoted\" \\ realm, with comma");
    cairn_reg_challenge_clear(&c);
}

static void test_several_challenges(void **state)
{
    (void)state;
    struct cairn_reg_challenge c = {0};
    /* Bearer wins over Basic whatever the order; unknown schemes and
     * their token68 are skipped. */
    parse_ok("Basic realm=\"b\", Negotiate abc==, Bearer "
             "realm=\"https://a/t\",service=\"s\"", &c);
    assert_int_equal(c.scheme, CAIRN_REG_SCHEME_BEARER);
    assert_string_equal(c.realm, "https://a/t");
    assert_string_equal(c.service, "s");
    cairn_reg_challenge_clear(&c);
    parse_ok("Bearer realm=\"https://a/t\", Basic realm=\"b\"", &c);
    assert_int_equal(c.scheme, CAIRN_REG_SCHEME_BEARER);
    assert_string_equal(c.realm, "https://a/t");
    cairn_reg_challenge_clear(&c);
    parse_ok("Digest realm=\"x\", nonce=\"y\", Basic realm=\"z\"", &c);
    assert_int_equal(c.scheme, CAIRN_REG_SCHEME_BASIC);
    assert_string_equal(c.realm, "z");
    cairn_reg_challenge_clear(&c);
}

static void test_hostile(void **state)
{
    (void)state;
    parse_fails("", CAIRN_E_UNSUPPORTED, "no authentication");
    parse_fails("Digest realm=\"x\"", CAIRN_E_UNSUPPORTED, "Digest");
    parse_fails("Bearer realm=\"http://a/t", CAIRN_E_PARSE, "unterminated");
    parse_fails("Bearer realm=\"http://a/t\" service=\"s\"", CAIRN_E_PARSE,
                "not separated");
    parse_fails("Bearer realm=\"http://a/t\",realm=\"http://b/t\"",
                CAIRN_E_PARSE, "given twice");
    parse_fails("Bearer realm=", CAIRN_E_PARSE, "without a value");
    parse_fails("Bearer realm=\"a\x01b\"", CAIRN_E_PARSE, "control");
    parse_fails("Bearer realm=\"http://a/t\",\r\nX-Evil: 1", CAIRN_E_PARSE,
                NULL);
    /* A Bearer realm cairn would fetch must be an http(s) URL. */
    parse_fails("Bearer service=\"s\"", CAIRN_E_PARSE, "http(s) URL");
    parse_fails("Bearer realm=\"file:///etc/passwd\"", CAIRN_E_PARSE,
                "http(s) URL");
    parse_fails("Bearer realm=\"http://a/t b\"", CAIRN_E_PARSE, "space");
    parse_fails("=x", CAIRN_E_PARSE, "no auth scheme");
    /* Over the caps: the header, one value, the number of parameters. */
    char *big = malloc(CAIRN_REG_CHALLENGE_MAX + 64);
    assert_non_null(big);
    memcpy(big, "Bearer realm=\"http://a/", 23);
    memset(big + 23, 'x', CAIRN_REG_CHALLENGE_MAX);
    memcpy(big + 23 + CAIRN_REG_CHALLENGE_MAX, "\"", 2);
    parse_fails(big, CAIRN_E_TOOBIG, "longer than");
    memset(big + 23, 'x', 3000);
    memcpy(big + 23 + 3000, "\"", 2);
    parse_fails(big, CAIRN_E_TOOBIG, "too long");
    size_t n = (size_t)snprintf(big, 64, "Bearer realm=\"http://a/t\"");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(big + n, 64, ",p%d=v", i);
    parse_fails(big, CAIRN_E_TOOBIG, "too many");
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distribution_bearer),
        cmocka_unit_test(test_basic_and_escapes),
        cmocka_unit_test(test_several_challenges),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
