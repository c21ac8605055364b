/* The bucket tier's object names (server/store/store_tier.c): every
 * instance name becomes one safe path segment, two different instances
 * never share a name, and blobs and action results live apart. The tier
 * against a real bucket is tests/integration/test_s3_*.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "server/store/store_txn.h"

static void test_escape_plain_and_special(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(cd_store_tier_instance_escape("main-1", out, sizeof out), 0);
    assert_string_equal(out, "main-1");
    assert_int_equal(cd_store_tier_instance_escape("", out, sizeof out), 0);
    assert_string_equal(out, "_");
    /* '/', '.', '_' and '%' are escaped: no dot segments, no second
     * segment, nothing a URL layer decodes. */
    assert_int_equal(cd_store_tier_instance_escape("a/../b_c%", out, sizeof out), 0);
    assert_string_equal(out, "a_2f_2e_2e_2fb_5fc_25");
    assert_int_equal(cd_store_tier_instance_escape("\xff", out, sizeof out), 0);
    assert_string_equal(out, "_ff");
}

static void test_escape_injective(void **state)
{
    (void)state;
    /* "_" (escaped) and "" ("_") must differ; so must "_5f" and "_". */
    const char *names[] = {"", "_", "_5f", "5f", ".", "_2e", "a/b", "a_2fb"};
    char out[8][64];
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(cd_store_tier_instance_escape(names[i], out[i], sizeof out[i]), 0);
    for (size_t i = 0; i < 8; i++)
        for (size_t j = i + 1; j < 8; j++)
            assert_string_not_equal(out[i], out[j]);
}

static void test_escape_caps(void **state)
{
    (void)state;
    char out[4];
    assert_int_equal(cd_store_tier_instance_escape("abcd", out, sizeof out), CAIRN_E_TOOBIG);
    assert_int_equal(cd_store_tier_instance_escape("a/", out, sizeof out), CAIRN_E_TOOBIG);
    assert_int_equal(cd_store_tier_instance_escape("abc", out, sizeof out), 0);
}

static void test_key_layout(void **state)
{
    (void)state;
    struct cd_digest d;
    memset(d.hash, 0xab, sizeof d.hash);
    d.size = 42;
    char key[512], want[512];
    char hex[65];
    memset(hex, 'a', 64);
    for (int i = 1; i < 64; i += 2)
        hex[i] = 'b';
    hex[64] = '\0';
    assert_int_equal(cd_store_tier_key(STORE_KIND_BLOB, "ci/x", &d, key, sizeof key), 0);
    snprintf(want, sizeof want, "cas/ci_2fx/%s-42", hex);
    assert_string_equal(key, want);
    assert_int_equal(cd_store_tier_key(STORE_KIND_AC, "", &d, key, sizeof key), 0);
    snprintf(want, sizeof want, "ac/_/%s-42", hex);
    assert_string_equal(key, want);
}

static void test_key_refuses(void **state)
{
    (void)state;
    struct cd_digest d;
    memset(d.hash, 1, sizeof d.hash);
    d.size = -1;
    char key[1024];
    assert_int_equal(cd_store_tier_key(STORE_KIND_BLOB, "", &d, key, sizeof key), CAIRN_E_INVAL);
    d.size = 1;
    char inst[CD_STORE_MAX_INSTANCE + 2];
    memset(inst, '/', sizeof inst - 1);
    inst[sizeof inst - 1] = '\0';
    assert_int_equal(cd_store_tier_key(STORE_KIND_BLOB, inst, &d, key, sizeof key), CAIRN_E_INVAL);
    /* The longest instance, all escaped, still fits an S3 key. */
    inst[CD_STORE_MAX_INSTANCE] = '\0';
    assert_int_equal(cd_store_tier_key(STORE_KIND_BLOB, inst, &d, key, sizeof key), 0);
    assert_true(strlen(key) < 1024);
    assert_int_equal(cd_store_tier_key(STORE_KIND_BLOB, "x", &d, key, 70), CAIRN_E_TOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_plain_and_special),
        cmocka_unit_test(test_escape_injective),
        cmocka_unit_test(test_escape_caps),
        cmocka_unit_test(test_key_layout),
        cmocka_unit_test(test_key_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
