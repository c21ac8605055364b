/* Unit tests of client/registry/ref.c: references parsed as Docker's
 * reference package parses them (the cases of its normalize and
 * reference tests that concern a pull). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "client/registry/ref.h"

#include <stdio.h>
#include <string.h>

#define D64                                                                    \
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void check(const char *s, const char *host, const char *path,
                  const char *tag, const char *digest)
{
    struct cairn_reg_ref r;
    struct cairn_err err;
    cairn_err_clear(&err);
    int rc = cairn_reg_ref_parse(s, &r, &err);
    if (rc)
        fail_msg("%s: %s", s, err.msg);
    assert_string_equal(r.host, host);
    assert_string_equal(r.path, path);
    assert_string_equal(r.tag, tag);
    assert_string_equal(r.digest, digest);
}

static void check_bad(const char *s, int code, const char *words)
{
    struct cairn_reg_ref r;
    struct cairn_err err;
    cairn_err_clear(&err);
    int rc = cairn_reg_ref_parse(s, &r, &err);
    if (rc != code)
        fail_msg("%s: got %d, want %d", s, rc, code);
    if (words && strstr(err.msg, words) == NULL)
        fail_msg("%s: message \"%s\" lacks \"%s\"", s, err.msg, words);
}

static void test_hub_names(void **state)
{
    (void)state;
    check("busybox", "docker.io", "library/busybox", "latest", "");
    check("busybox:1.36", "docker.io", "library/busybox", "1.36", "");
    check("library/busybox", "docker.io", "library/busybox", "latest", "");
    check("docker.io/busybox", "docker.io", "library/busybox", "latest", "");
    check("docker.io/library/busybox:x", "docker.io", "library/busybox", "x",
          "");
    check("index.docker.io/user/app", "docker.io", "user/app", "latest", "");
    check("user/app", "docker.io", "user/app", "latest", "");
    check("a/b/c/d", "docker.io", "a/b/c/d", "latest", "");
    check("foo_bar.com:8080", "docker.io", "library/foo_bar.com", "8080", "");
}

static void test_hosts(void **state)
{
    (void)state;
    check("localhost/app", "localhost", "app", "latest", "");
    check("localhost:5000/app:v1", "localhost:5000", "app", "v1", "");
    check("127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "a/b", "t", "");
    check("registry.example.com/x", "registry.example.com", "x", "latest", "");
    check("Registry.Example.com/x", "Registry.Example.com", "x", "latest", "");
    check("[::1]:5000/x", "[::1]:5000", "x", "latest", "");
    /* "localhost" alone is a repository, not a host. */
    check("localhost", "docker.io", "library/localhost", "latest", "");
    check("localhost:5000", "docker.io", "library/localhost", "5000", "");
    check_bad("-bad.example/x", CAIRN_E_INVAL, "host");
    check_bad("host:99999999/x", CAIRN_E_INVAL, "host");
}

static void test_components(void **state)
{
    (void)state;
    check("g/a.b_c__d-e---f", "docker.io", "g/a.b_c__d-e---f", "latest", "");
    check_bad("a.b_c/g", CAIRN_E_INVAL, "bad registry host");
    check_bad("a..b", CAIRN_E_INVAL, "invalid reference format");
    check_bad("a___b", CAIRN_E_INVAL, "invalid reference format");
    check_bad("-a", CAIRN_E_INVAL, "invalid reference format");
    check_bad("a-", CAIRN_E_INVAL, "invalid reference format");
    check_bad("a//b", CAIRN_E_INVAL, "invalid reference format");
    check_bad("a/", CAIRN_E_INVAL, "invalid reference format");
    check_bad("", CAIRN_E_INVAL, "invalid reference format");
    check_bad(":tag", CAIRN_E_INVAL, "invalid reference format");
    check_bad("Busybox", CAIRN_E_INVAL, "must be lowercase");
    check_bad("Foo/bar", CAIRN_E_INVAL, "must be lowercase");
    check_bad("example.com/Foo", CAIRN_E_INVAL, "must be lowercase");
    check_bad("0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
              "abcdef",
              CAIRN_E_INVAL, "64-byte hexadecimal");
}

static void test_tags_digests(void **state)
{
    (void)state;
    check("x:_A.b-C", "docker.io", "library/x", "_A.b-C", "");
    check("x@" D64, "docker.io", "library/x", "", D64);
    check("h:5/x:t@" D64, "h:5", "x", "t", D64);
    check_bad("x:.a", CAIRN_E_INVAL, "bad tag");
    check_bad("x:-a", CAIRN_E_INVAL, "bad tag");
    check_bad("x:", CAIRN_E_INVAL, "bad tag");
    check_bad("x:a:b", CAIRN_E_INVAL, NULL);
    char tag[200];
    snprintf(tag, sizeof tag, "x:%0129d", 0);
    check_bad(tag, CAIRN_E_INVAL, "bad tag");
    snprintf(tag, sizeof tag, "x:%0128d", 0);
    check(tag, "docker.io", "library/x", tag + 2, "");
    check_bad("x@sha256:abc", CAIRN_E_INVAL, "digest");
    check_bad("x@sha256:"
              "0123456789ABCDEF0123456789abcdef0123456789abcdef"
              "0123456789abcdef",
              CAIRN_E_INVAL, "digest");
    check_bad("x@sha512:0123456789abcdef0123456789abcdef0123456789abcdef"
              "0123456789abcdef",
              CAIRN_E_UNSUPPORTED, "unsupported digest");
    check_bad("x@", CAIRN_E_INVAL, "digest");
}

static void test_lengths_cap(void **state)
{
    (void)state;
    char s[600], want[700];
    memset(s, 'a', 237);
    s[237] = '\0';
    snprintf(want, sizeof want, "library/%s", s);
    check(s, "docker.io", want, "latest", "");
    s[237] = 'a';
    s[238] = '\0';
    check_bad(s, CAIRN_E_INVAL, "more than 255");
    memset(s, 'a', 590);
    s[590] = '\0';
    check_bad(s, CAIRN_E_INVAL, "too long");
}

static void test_familiar(void **state)
{
    (void)state;
    struct cairn_reg_ref r;
    char b[300];
    assert_int_equal(cairn_reg_ref_parse("busybox", &r, NULL), 0);
    assert_int_equal(cairn_reg_ref_familiar(&r, true, b, sizeof b), 0);
    assert_string_equal(b, "busybox:latest");
    assert_string_equal(cairn_reg_ref_api_host(&r), "registry-1.docker.io");
    assert_int_equal(cairn_reg_ref_parse("docker.io/u/x:1", &r, NULL), 0);
    assert_int_equal(cairn_reg_ref_familiar(&r, false, b, sizeof b), 0);
    assert_string_equal(b, "u/x");
    assert_int_equal(cairn_reg_ref_parse("127.0.0.1:5000/a/b@" D64, &r, NULL),
                     0);
    assert_int_equal(cairn_reg_ref_familiar(&r, true, b, sizeof b), 0);
    assert_string_equal(b, "127.0.0.1:5000/a/b");
    assert_string_equal(cairn_reg_ref_api_host(&r), "127.0.0.1:5000");
    cairn_reg_ref_format(&r, b, sizeof b);
    assert_string_equal(b, "127.0.0.1:5000/a/b@" D64);
    assert_int_equal(cairn_reg_ref_familiar(&r, false, b, 5), CAIRN_E_TOOBIG);
}

static void test_loopback(void **state)
{
    (void)state;
    assert_true(cairn_reg_host_is_loopback("127.0.0.1:5000"));
    assert_true(cairn_reg_host_is_loopback("127.1.2.3"));
    assert_true(cairn_reg_host_is_loopback("localhost:80"));
    assert_true(cairn_reg_host_is_loopback("[::1]:5000"));
    assert_false(cairn_reg_host_is_loopback("128.0.0.1:5000"));
    assert_false(cairn_reg_host_is_loopback("127.0.0.1.example.com"));
    assert_false(cairn_reg_host_is_loopback("localhost.example.com"));
    assert_false(cairn_reg_host_is_loopback("docker.io"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hub_names),   cmocka_unit_test(test_hosts),
        cmocka_unit_test(test_components),  cmocka_unit_test(test_tags_digests),
        cmocka_unit_test(test_lengths_cap), cmocka_unit_test(test_familiar),
        cmocka_unit_test(test_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
