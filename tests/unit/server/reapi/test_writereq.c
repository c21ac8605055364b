/* server/writereq: the WriteRequest decoder the Write handler uses, over
 * the pieces a message arrived in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/error.h"
#include "server/reapi/writereq.h"

static struct cd_write_req req; /* 2 KiB: not on the stack */

static size_t copy_all(struct cd_wire w, uint8_t *out)
{
    size_t n = w.left;
    assert_int_equal(cd_wire_copy(&w, out, n), 0);
    return n;
}

/* name (1), write_offset (2), finish_write (3), data (10), each cut across
 * pieces with an empty piece between. */
static void test_fields_across_pieces(void **state)
{
    (void)state;
    const uint8_t msg[] = {0x0a, 0x03, 'a', '/', 'b', 0x10, 0xac, 0x02, 0x18, 0x01,
                           0x52, 0x04, 'd',  'a', 't', 'a'};
    struct cd_iov v[] = {{msg, 3}, {NULL, 0}, {msg + 3, 4}, {msg + 7, 6}, {msg + 13, 3}};
    struct cairn_err err;
    assert_int_equal(cd_write_req_parse(v, 5, &req, &err), 0);
    assert_string_equal(req.name, "a/b");
    assert_int_equal(req.offset, 300);
    assert_true(req.finish);
    uint8_t data[8];
    assert_int_equal(copy_all(req.data, data), 4);
    assert_memory_equal(data, "data", 4);
}

static void test_unset_and_repeated(void **state)
{
    (void)state;
    struct cairn_err err;
    struct cd_iov none = {NULL, 0};
    assert_int_equal(cd_write_req_parse(&none, 1, &req, &err), 0);
    assert_string_equal(req.name, "");
    assert_int_equal(req.offset, 0);
    assert_false(req.finish);
    assert_int_equal(req.data.left, 0);
    /* The last occurrence wins; unknown fields are skipped. */
    const uint8_t msg[] = {0x0a, 0x01, 'x', 0x0a, 0x01, 'y', 0x38, 0x05, 0x52, 0x01, 'A',
                           0x52, 0x02, 'B', 'C'};
    struct cd_iov one = {msg, sizeof msg};
    assert_int_equal(cd_write_req_parse(&one, 1, &req, &err), 0);
    assert_string_equal(req.name, "y");
    uint8_t data[4];
    assert_int_equal(copy_all(req.data, data), 2);
    assert_memory_equal(data, "BC", 2);
}

/* Bad messages fail with the right code and leave the output alone. */
static void test_refused(void **state)
{
    (void)state;
    struct cairn_err err;
    const uint8_t good[] = {0x0a, 0x02, 'o', 'k'};
    struct cd_iov one = {good, sizeof good};
    assert_int_equal(cd_write_req_parse(&one, 1, &req, &err), 0);

    const uint8_t nul[] = {0x0a, 0x03, 'a', 0, 'b'};
    one = (struct cd_iov){nul, sizeof nul};
    assert_int_equal(cd_write_req_parse(&one, 1, &req, &err), CAIRN_E_PARSE);
    assert_non_null(strstr(err.msg, "NUL"));
    const uint8_t wrong_type[] = {0x12, 0x01, 'x'}; /* write_offset as bytes */
    one = (struct cd_iov){wrong_type, sizeof wrong_type};
    assert_int_equal(cd_write_req_parse(&one, 1, &req, &err), CAIRN_E_PARSE);
    const uint8_t past_end[] = {0x52, 0x05, 'a', 'b'};
    one = (struct cd_iov){past_end, sizeof past_end};
    assert_int_equal(cd_write_req_parse(&one, 1, &req, &err), CAIRN_E_PARSE);
    assert_string_equal(req.name, "ok");

    static uint8_t long_name[3 + CD_MAX_RESOURCE_NAME + 1];
    long_name[0] = 0x0a;
    long_name[1] = (uint8_t)(((CD_MAX_RESOURCE_NAME + 1) & 0x7f) | 0x80);
    long_name[2] = (uint8_t)((CD_MAX_RESOURCE_NAME + 1) >> 7);
    memset(long_name + 3, 'n', CD_MAX_RESOURCE_NAME + 1);
    one = (struct cd_iov){long_name, sizeof long_name};
    assert_int_equal(cd_write_req_parse(&one, 1, &req, &err), CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "longer than"));
    /* Exactly the limit is fine. */
    long_name[1] = (uint8_t)((CD_MAX_RESOURCE_NAME & 0x7f) | 0x80);
    long_name[2] = (uint8_t)(CD_MAX_RESOURCE_NAME >> 7);
    one.n = sizeof long_name - 1;
    assert_int_equal(cd_write_req_parse(&one, 1, &req, &err), 0);
    assert_int_equal(strlen(req.name), CD_MAX_RESOURCE_NAME);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_across_pieces),
        cmocka_unit_test(test_unset_and_repeated),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
