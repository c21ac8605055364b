#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "cachekey/digest.h"
#include "common/error.h"

static void test_known_vectors(void **state)
{
    (void)state;
    uint8_t d[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    assert_int_equal(ck_sha256("", 0, d), 0);
    ck_hex_encode(d, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb924"
                             "27ae41e4649b934ca495991b7852b855");
    assert_int_equal(ck_sha256("abc", 3, d), 0);
    ck_hex_encode(d, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223"
                             "b00361a396177a9cb410ff61f20015ad");
}

static void test_streaming_matches_oneshot(void **state)
{
    (void)state;
    struct ck_sha256 *h = NULL;
    assert_int_equal(ck_sha256_new(&h), 0);
    uint8_t a[CK_SHA256_LEN], b[CK_SHA256_LEN];
    assert_int_equal(ck_sha256_update(h, "a", 1), 0);
    assert_int_equal(ck_sha256_update(h, "bc", 2), 0);
    assert_int_equal(ck_sha256_final(h, a), 0);
    assert_int_equal(ck_sha256("abc", 3, b), 0);
    assert_memory_equal(a, b, CK_SHA256_LEN);
    /* final restarts the context */
    assert_int_equal(ck_sha256_final(h, a), 0);
    assert_int_equal(ck_sha256("", 0, b), 0);
    assert_memory_equal(a, b, CK_SHA256_LEN);
    ck_sha256_free(h);
    ck_sha256_free(NULL);
}

static void test_hex_roundtrip_and_errors(void **state)
{
    (void)state;
    uint8_t d[CK_SHA256_LEN], e[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    for (int i = 0; i < CK_SHA256_LEN; i++)
        d[i] = (uint8_t)(i * 37);
    ck_hex_encode(d, hex);
    assert_int_equal(ck_hex_decode(hex, e), 0);
    assert_memory_equal(d, e, CK_SHA256_LEN);
    assert_int_equal(ck_hex_decode("abc", e), CAIRN_E_INVAL);
    hex[10] = 'g';
    assert_int_equal(ck_hex_decode(hex, e), CAIRN_E_INVAL);
    char longer[70];
    memset(longer, 'a', 65);
    longer[65] = '\0';
    assert_int_equal(ck_hex_decode(longer, e), CAIRN_E_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_streaming_matches_oneshot),
        cmocka_unit_test(test_hex_roundtrip_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
