#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/error.h"
#include "server/reapi/resource.h"

#define H "abababababababababababababababababababababababababababababababab"

static void test_read_names(void **state)
{
    (void)state;
    struct cd_resource r;
    struct cairn_err err;
    assert_int_equal(cd_resource_parse_read("blobs/" H "/42", &r, &err), 0);
    assert_string_equal(r.instance, "");
    assert_int_equal(r.digest.size, 42);
    assert_int_equal(r.digest.hash[0], 0xab);
    assert_int_equal(cd_resource_parse_read("main/pr/blobs/" H "/0", &r, &err), 0);
    assert_string_equal(r.instance, "main/pr");
    assert_int_equal(cd_resource_parse_read("blobs/sha256/" H "/7", &r, &err), 0);
    assert_int_equal(cd_resource_parse_read("blobs/" H "/42/x", &r, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_resource_parse_read("blobs/" H, &r, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_resource_parse_read("blobs/" H "/-1", &r, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_resource_parse_read("blobs/" H "/1x", &r, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_resource_parse_read("blobs/abc/1", &r, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_resource_parse_read("blobs/md5/" H "/1", &r, &err), CAIRN_E_UNSUPPORTED);
    assert_int_equal(cd_resource_parse_read("compressed-blobs/zstd/" H "/1", &r, &err),
                     CAIRN_E_UNSUPPORTED);
    assert_int_equal(cd_resource_parse_read("", &r, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_resource_parse_read("a//blobs/" H "/1", &r, &err), CAIRN_E_INVAL);
}

static void test_write_names(void **state)
{
    (void)state;
    struct cd_resource r;
    struct cairn_err err;
    assert_int_equal(cd_resource_parse_write("uploads/u-1/blobs/" H "/5", &r, &err), 0);
    assert_int_equal(cd_resource_parse_write("ci/uploads/u/blobs/" H "/5/meta/x", &r, &err), 0);
    assert_string_equal(r.instance, "ci");
    assert_int_equal(r.digest.size, 5);
    assert_int_equal(cd_resource_parse_write("uploads/u/" H "/5", &r, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_resource_parse_write("uploads/blobs/" H "/5", &r, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_resource_parse_write("blobs/" H "/5", &r, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_resource_parse_write("uploads/u/blobs/" H, &r, &err), CAIRN_E_INVAL);
}

static void test_digests_and_instances(void **state)
{
    (void)state;
    struct cd_digest d;
    struct cairn_err err;
    assert_int_equal(cd_digest_parse(H, 1, &d, &err), 0);
    assert_int_equal(cd_digest_parse(H, -1, &d, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_digest_parse(H, CD_MAX_BLOB_SIZE + 1, &d, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_digest_parse(NULL, 0, &d, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_digest_parse("zz", 0, &d, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_instance_check("main", &err), 0);
    assert_int_equal(cd_instance_check(NULL, &err), 0);
    assert_int_equal(cd_instance_check("a/blobs", &err), CAIRN_E_INVAL);
    assert_int_equal(cd_instance_check("a/", &err), CAIRN_E_INVAL);
    assert_int_equal(cd_digest_function_check(0, &err), 0);
    assert_int_equal(cd_digest_function_check(1, &err), 0);
    assert_int_equal(cd_digest_function_check(3, &err), CAIRN_E_INVAL);
}

/* Instance names: printable ASCII without spaces, no "." or ".." segments
 * (issue 9, item 15: "main\x01pr" and the like were accepted). */
static void test_instance_bytes(void **state)
{
    (void)state;
    struct cairn_err err;
    struct cd_resource r;
    assert_int_equal(cd_instance_check("pr/42", &err), 0);
    assert_int_equal(cd_instance_check("projects/x_y-z.v1~+=@:,%!", &err), 0);
    assert_int_equal(cd_instance_check("a/.../b", &err), 0);
    assert_int_equal(cd_instance_check("main\x01pr", &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "byte 0x01 at offset 4"));
    assert_int_equal(cd_instance_check("main\npr", &err), CAIRN_E_INVAL);
    assert_int_equal(cd_instance_check("main pr", &err), CAIRN_E_INVAL);
    assert_int_equal(cd_instance_check("main\x7f", &err), CAIRN_E_INVAL);
    assert_int_equal(cd_instance_check("caf\xc3\xa9", &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "byte 0xc3 at offset 3"));
    assert_int_equal(cd_instance_check(".", &err), CAIRN_E_INVAL);
    assert_int_equal(cd_instance_check("..", &err), CAIRN_E_INVAL);
    assert_int_equal(cd_instance_check("a/./b", &err), CAIRN_E_INVAL);
    assert_int_equal(cd_instance_check("a/../b", &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "'..' path segment"));
    assert_int_equal(cd_instance_check("/a", &err), CAIRN_E_INVAL);
    /* The same rules inside resource names. */
    assert_int_equal(cd_resource_parse_read("ma\tin/blobs/" H "/1", &r, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_resource_parse_read("../blobs/" H "/1", &r, &err), CAIRN_E_INVAL);
    assert_int_equal(cd_resource_parse_write("a\x1b[31m/uploads/u/blobs/" H "/1", &r, &err),
                     CAIRN_E_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_names),
        cmocka_unit_test(test_write_names),
        cmocka_unit_test(test_digests_and_instances),
        cmocka_unit_test(test_instance_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
