/* server/s3/multipart.c's multipart ETag: what S3 (and Swift's s3api)
 * call the object a multipart upload makes, so that a NoSuchUpload to a
 * complete whose answer was lost can be checked against these parts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/error.h"
#include "server/s3/s3.h"

/* Two parts of 6 MiB put to Swift 2.30 with s3api: the part ETags it
 * returned, and the ETag its HEAD of the completed object showed. */
static void test_swift_vector(void **state)
{
    (void)state;
    const char *quoted[] = {"\"b084e06110853adfbdd95164bc24c693\"",
                            "\"7ac9b553c90ebcdf2078c1639491aefd\""};
    const char *bare[] = {"b084e06110853adfbdd95164bc24c693",
                          "7AC9B553C90EBCDF2078C1639491AEFD"};
    char out[64];
    assert_int_equal(cd_s3_multipart_etag(quoted, 2, out, sizeof out), 0);
    assert_string_equal(out, "ae28f8d5f6d7b5421412944ba8fe700d-2");
    assert_int_equal(cd_s3_multipart_etag(bare, 2, out, sizeof out), 0);
    assert_string_equal(out, "ae28f8d5f6d7b5421412944ba8fe700d-2");
}

/* Part order matters, and so does the count. */
static void test_order(void **state)
{
    (void)state;
    const char *swapped[] = {"7ac9b553c90ebcdf2078c1639491aefd",
                             "b084e06110853adfbdd95164bc24c693"};
    char out[64];
    assert_int_equal(cd_s3_multipart_etag(swapped, 2, out, sizeof out), 0);
    assert_string_not_equal(out, "ae28f8d5f6d7b5421412944ba8fe700d-2");
    assert_int_equal(cd_s3_multipart_etag(swapped, 1, out, sizeof out), 0);
    assert_non_null(strstr(out, "-1"));
}

/* ETags that are not MD5s: no check possible, said so; a small buffer. */
static void test_refused(void **state)
{
    (void)state;
    const char *bad[][1] = {{"\"b084e06110853adfbdd95164bc24c69\""},
                            {"b084e06110853adfbdd95164bc24c6931"},
                            {"g084e06110853adfbdd95164bc24c693"},
                            {"\"b084e06110853adfbdd95164bc24c693"},
                            {""}};
    char out[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cd_s3_multipart_etag(bad[i], 1, out, sizeof out),
                         CAIRN_E_INVAL);
    const char *ok[] = {"b084e06110853adfbdd95164bc24c693"};
    assert_int_equal(cd_s3_multipart_etag(ok, 1, out, 20), CAIRN_E_TOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_swift_vector),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
