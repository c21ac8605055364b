#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "server/reapi/reapi.h"

static int check(const ProtobufCMessageDescriptor *d, const char *bytes, size_t len,
                 struct cd_reply *r)
{
    memset(r, 0, sizeof *r);
    struct cd_req req = {(const uint8_t *)bytes, len, NULL, 0, NULL, NULL};
    return cd_request_strings_check(d, &req, r);
}

/* A NUL inside a top-level string field is refused with the field named;
 * protobuf-c alone would hand "main\0pr" over as "main" (issue 9, item
 * 15). */
static void test_nul_in_strings(void **state)
{
    (void)state;
    struct cd_reply r;
    const ProtobufCMessageDescriptor *fmb =
        &build__bazel__remote__execution__v2__find_missing_blobs_request__descriptor;
    static const char nul[] = "\x0a\x07main\0pr";
    assert_int_equal(check(fmb, nul, sizeof nul - 1, &r), CAIRN_E_PARSE);
    assert_non_null(strstr(r.err.msg, "NUL byte in instance_name"));
    /* What protobuf-c makes of it: the name cut at the NUL. */
    PbFindMissingBlobsRequest *m =
        build__bazel__remote__execution__v2__find_missing_blobs_request__unpack(
            NULL, sizeof nul - 1, (const uint8_t *)nul);
    assert_non_null(m);
    assert_string_equal(m->instance_name, "main");
    build__bazel__remote__execution__v2__find_missing_blobs_request__free_unpacked(m, NULL);

    static const char ok[] = "\x0a\x04main";
    assert_int_equal(check(fmb, ok, sizeof ok - 1, &r), 0);
    /* The last of two names is the one protobuf keeps; both are checked. */
    static const char twice[] = "\x0a\x02\0x\x0a\x04main";
    assert_int_equal(check(fmb, twice, sizeof twice - 1, &r), CAIRN_E_PARSE);
    static const char read_nul[] = "\x0a\x05" "a\0/bl";
    assert_int_equal(check(&google__bytestream__read_request__descriptor, read_nul,
                           sizeof read_nul - 1, &r), CAIRN_E_PARSE);
    assert_non_null(strstr(r.err.msg, "resource_name"));
}

/* Bytes fields may hold NULs; malformed input is left to the unpack. */
static void test_other_fields(void **state)
{
    (void)state;
    struct cd_reply r;
    const ProtobufCMessageDescriptor *bub =
        &build__bazel__remote__execution__v2__batch_update_blobs_request__descriptor;
    /* requests (2) = { digest (1) = {}, data (2) = "\0\0" } */
    static const char data[] = "\x12\x06\x0a\x00\x12\x02\0\0";
    assert_int_equal(check(bub, data, sizeof data - 1, &r), 0);
    static const char bad[] = "\x0a\x7f" "abc";
    assert_int_equal(check(bub, bad, sizeof bad - 1, &r), 0);
    assert_int_equal(check(bub, "", 0, &r), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nul_in_strings),
        cmocka_unit_test(test_other_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
