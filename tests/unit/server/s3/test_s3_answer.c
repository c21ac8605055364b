/* server/s3/xml.c and answer.c: S3's XML answers and error mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/error.h"
#include "server/s3/answer.h"
#include "server/s3/xml.h"

static void test_xml_text(void **state)
{
    (void)state;
    const char *x = "<?xml version=\"1.0\"?><InitiateMultipartUploadResult>"
                    "<Bucket>b</Bucket><Key>a&amp;b</Key>"
                    "<UploadId>ZjE&lt;2&quot;</UploadId></InitiateMultipartUploadResult>";
    char out[32];
    assert_int_equal(cd_s3_xml_text(x, strlen(x), "UploadId", out, sizeof out), 0);
    assert_string_equal(out, "ZjE<2\"");
    assert_int_equal(cd_s3_xml_text(x, strlen(x), "Key", out, sizeof out), 0);
    assert_string_equal(out, "a&b");
    assert_int_equal(cd_s3_xml_text(x, strlen(x), "Nope", out, sizeof out), CAIRN_E_NOTFOUND);
    /* Unterminated, and cut by the length given. */
    assert_int_equal(cd_s3_xml_text("<Code>abc", 9, "Code", out, sizeof out), CAIRN_E_NOTFOUND);
    assert_int_equal(cd_s3_xml_text("<Code>abc</Code>", 12, "Code", out, sizeof out),
                     CAIRN_E_NOTFOUND);
    /* Too long for out: out untouched. */
    char small[4] = "zzz";
    assert_int_equal(cd_s3_xml_text("<Code>abcd</Code>", 17, "Code", small, sizeof small),
                     CAIRN_E_TOOBIG);
    assert_string_equal(small, "zzz");
    assert_int_equal(cd_s3_xml_text("<Code>abc</Code>", 16, "Code", small, sizeof small), 0);
    assert_string_equal(small, "abc");
}

static int mapped(long status, const char *body, struct cairn_err *err)
{
    return cd_s3_answer_error(status, body, body ? strlen(body) : 0, "PUT b/k", err);
}

static void test_errors(void **state)
{
    (void)state;
    struct cairn_err err = {0};
    const char *sig = "<Error><Code>SignatureDoesNotMatch</Code><Message>The request "
                      "signature we calculated does not match</Message></Error>";
    assert_int_equal(mapped(403, sig, &err), CAIRN_E_AUTH);
    assert_non_null(strstr(err.msg, "PUT b/k: HTTP 403 SignatureDoesNotMatch"));
    assert_non_null(strstr(err.msg, "wrong secret"));
    assert_int_equal(mapped(403, "<Error><Code>RequestTimeTooSkewed</Code></Error>", &err),
                     CAIRN_E_AUTH);
    assert_non_null(strstr(err.msg, "clock"));
    assert_int_equal(mapped(403, "<Error><Code>InvalidAccessKeyId</Code></Error>", &err),
                     CAIRN_E_AUTH);
    assert_non_null(strstr(err.msg, "access key id"));
    assert_int_equal(mapped(403, "<Error><Code>AccessDenied</Code></Error>", &err),
                     CAIRN_E_AUTH);
    assert_non_null(strstr(err.msg, "AccessDenied"));
    /* HEAD: no body, the status alone. */
    assert_int_equal(mapped(403, NULL, &err), CAIRN_E_AUTH);
    assert_int_equal(mapped(404, NULL, &err), CAIRN_E_NOTFOUND);
    assert_int_equal(mapped(404, "<Error><Code>NoSuchBucket</Code></Error>", &err),
                     CAIRN_E_NOTFOUND);
    assert_non_null(strstr(err.msg, "bucket does not exist"));
    assert_int_equal(mapped(400, "<Error><Code>BadDigest</Code></Error>", &err), CAIRN_E_DIGEST);
    assert_int_equal(mapped(400, "<Error><Code>InvalidArgument</Code></Error>", &err),
                     CAIRN_E_INVAL);
    assert_int_equal(mapped(416, NULL, &err), CAIRN_E_CORRUPT);
    assert_int_equal(mapped(503, "<Error><Code>SlowDown</Code></Error>", &err), CAIRN_E_RPC);
    assert_int_equal(mapped(500, "not xml at all", &err), CAIRN_E_RPC);
    /* Hostile text from the server reaches the message as printable ASCII. */
    assert_int_equal(mapped(400, "<Error><Code>X\x1b[2J</Code><Message>a\nb</Message></Error>",
                            &err),
                     CAIRN_E_INVAL);
    assert_null(strchr(err.msg, '\x1b'));
    assert_null(strchr(err.msg, '\n'));
}

static void test_retryable(void **state)
{
    (void)state;
    assert_true(cd_s3_answer_retryable(500));
    assert_true(cd_s3_answer_retryable(503));
    assert_true(cd_s3_answer_retryable(504));
    assert_false(cd_s3_answer_retryable(403));
    assert_false(cd_s3_answer_retryable(404));
    assert_false(cd_s3_answer_retryable(501));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xml_text),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_retryable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
