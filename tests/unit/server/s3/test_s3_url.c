/* server/s3/url.c: s3:// URLs, endpoints, object URLs as SigV4 signs them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/buf.h"
#include "common/error.h"
#include "server/s3/s3.h"
#include "server/s3/url.h"

static void test_parse_bucket_prefix(void **state)
{
    (void)state;
    struct cd_s3_where w;
    struct cairn_err err = {0};
    assert_int_equal(cd_s3_url_parse("s3://my-bucket", &w, &err), 0);
    assert_string_equal(w.bucket, "my-bucket");
    assert_string_equal(w.prefix, "");
    assert_int_equal(cd_s3_url_parse("s3://my.bucket1/", &w, &err), 0);
    assert_string_equal(w.prefix, "");
    assert_int_equal(cd_s3_url_parse("s3://abc/cache/v1", &w, &err), 0);
    assert_string_equal(w.bucket, "abc");
    assert_string_equal(w.prefix, "cache/v1/");
    assert_int_equal(cd_s3_url_parse("s3://abc/cache//", &w, &err), 0);
    assert_string_equal(w.prefix, "cache/");
}

static void test_parse_rejects(void **state)
{
    (void)state;
    struct cd_s3_where w;
    memset(&w, 0x5a, sizeof w);
    struct cairn_err err = {0};
    static const char *bad[] = {
        "http://bucket", "s3://", "s3://ab", "s3://Bucket", "s3://-abc",
        "s3://abc-", "s3://a_bc", "s3://abc/x//y", "s3://abc/../x",
        "s3://abc/./x", "s3://abc/a\\b", "s3://abc/a\nb",
        "s3://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        NULL,
    };
    for (int i = 0; bad[i]; i++) {
        assert_int_equal(cd_s3_url_parse(bad[i], &w, &err), CAIRN_E_INVAL);
        assert_true(err.msg[0] != '\0');
    }
    assert_int_equal(cd_s3_url_parse(NULL, &w, &err), CAIRN_E_INVAL);
    assert_int_equal((unsigned char)w.bucket[0], 0x5a); /* untouched */
}

static void test_endpoint(void **state)
{
    (void)state;
    char out[CD_S3_MAX_ENDPOINT + 1];
    struct cairn_err err = {0};
    assert_int_equal(cd_s3_endpoint_parse("http://127.0.0.1:9000/", out, &err), 0);
    assert_string_equal(out, "http://127.0.0.1:9000");
    assert_int_equal(cd_s3_endpoint_parse("https://s3.eu-west-1.amazonaws.com", out, &err), 0);
    assert_string_equal(out, "https://s3.eu-west-1.amazonaws.com");
    assert_int_equal(cd_s3_endpoint_parse("https://[::1]:8443", out, &err), 0);
    assert_int_equal(cd_s3_endpoint_parse("ftp://host", out, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_s3_endpoint_parse("http://", out, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_s3_endpoint_parse("http://host/path", out, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_s3_endpoint_parse("http://u:p@host", out, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_s3_endpoint_parse("http://host?x=1", out, &err), CAIRN_E_INVAL);
}

static void test_escape(void **state)
{
    (void)state;
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    const char *s = "a b+c%d~e/f=\xc3\xa9-_.";
    assert_int_equal(cd_s3_url_escape(&b, s, strlen(s), true), 0);
    assert_string_equal(b.data, "a%20b%2Bc%25d~e/f%3D%C3%A9-_.");
    cairn_buf_reset(&b);
    assert_int_equal(cd_s3_url_escape(&b, "x/y==", 5, false), 0);
    assert_string_equal(b.data, "x%2Fy%3D%3D");
    cairn_buf_free(&b);
}

static void test_object_url(void **state)
{
    (void)state;
    struct cd_s3_where w;
    struct cairn_err err = {0};
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    assert_int_equal(cd_s3_url_parse("s3://bkt/pre fix", &w, &err), 0);
    assert_int_equal(cd_s3_url_object(&b, "http://h:1", &w, true, "cas/a b", NULL, &err), 0);
    assert_string_equal(b.data, "http://h:1/bkt/pre%20fix/cas/a%20b");
    assert_int_equal(cd_s3_url_object(&b, "https://h", &w, false, "k", "uploads=", &err), 0);
    assert_string_equal(b.data, "https://bkt.h/pre%20fix/k?uploads=");
    assert_int_equal(cd_s3_url_object(&b, "http://h:1", &w, true, NULL, NULL, &err), 0);
    assert_string_equal(b.data, "http://h:1/bkt");
    assert_int_equal(cd_s3_url_object(&b, "https://h", &w, false, NULL, "max-keys=1", &err), 0);
    assert_string_equal(b.data, "https://bkt.h/?max-keys=1");
    assert_int_equal(cd_s3_url_object(&b, "http://h", &w, true, "", NULL, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_s3_url_object(&b, "http://h", &w, true, "a\tb", NULL, &err), CAIRN_E_INVAL);
    char long_key[CD_S3_MAX_KEY + 1];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[CD_S3_MAX_KEY] = '\0'; /* fits alone, not with the prefix */
    assert_int_equal(cd_s3_url_object(&b, "http://h", &w, true, long_key, NULL, &err),
                     CAIRN_E_INVAL);
    cairn_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_bucket_prefix),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_endpoint),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_object_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
