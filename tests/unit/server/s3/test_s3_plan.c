/* server/s3/multipart.c's part planning and request.c's backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "server/s3/request.h"
#include "server/s3/s3.h"

#define MiB ((uint64_t)1 << 20)

static void test_parts(void **state)
{
    (void)state;
    uint64_t ps = 0;
    unsigned n = 0;
    /* Up to part_size: one PUT. */
    assert_int_equal(cd_s3_parts_plan(0, 16 * MiB, &ps, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(cd_s3_parts_plan(16 * MiB, 16 * MiB, &ps, &n), 0);
    assert_int_equal(n, 1);
    assert_true(ps == 16 * MiB);
    /* One byte more: two parts, the second of one byte. */
    assert_int_equal(cd_s3_parts_plan(16 * MiB + 1, 16 * MiB, &ps, &n), 0);
    assert_int_equal(n, 2);
    assert_true(ps == 16 * MiB);
    /* Parts are never below S3's 5 MiB minimum. */
    assert_int_equal(cd_s3_parts_plan(12 * MiB, 1 * MiB, &ps, &n), 0);
    assert_int_equal(n, 3);
    assert_true(ps == 5 * MiB);
    assert_int_equal(cd_s3_parts_plan(4 * MiB, 1 * MiB, &ps, &n), 0);
    assert_int_equal(n, 1);
    /* 100 GiB in 16 MiB parts would be 6,400: raised to stay <= 1,000. */
    assert_int_equal(cd_s3_parts_plan(100 * 1024 * MiB, 16 * MiB, &ps, &n), 0);
    assert_true(n <= CD_S3_MAX_PARTS);
    assert_true(ps % MiB == 0);
    assert_true(ps * n >= 100 * 1024 * MiB);
    assert_true(ps * (n - 1) < 100 * 1024 * MiB);
    assert_int_equal(cd_s3_parts_plan(1000 * 16 * MiB, 16 * MiB, &ps, &n), 0);
    assert_int_equal(n, 1000);
    assert_int_equal(cd_s3_parts_plan(1000 * 16 * MiB + 1, 16 * MiB, &ps, &n), 0);
    assert_true(n <= 1000);
    /* Past 1,000 parts of 5 GiB: too big. */
    assert_int_equal(cd_s3_parts_plan(1000 * 5120 * MiB + 1, 16 * MiB, &ps, &n),
                     CAIRN_E_TOOBIG);
    /* One PUT is at most 5 GiB. */
    assert_int_equal(cd_s3_parts_plan(6144 * MiB, 8192 * MiB, &ps, &n), CAIRN_E_TOOBIG);
}

static void test_backoff(void **state)
{
    (void)state;
    /* 100, 400, 1600 ms before attempts 2, 3, 4, halved at most by jitter. */
    assert_int_equal(cd_s3_backoff_ms(2, 0, 0), 50);
    assert_int_equal(cd_s3_backoff_ms(2, 0, 50), 100);
    assert_int_equal(cd_s3_backoff_ms(3, 0, 0), 200);
    assert_int_equal(cd_s3_backoff_ms(4, 0, 0), 800);
    assert_true(cd_s3_backoff_ms(4, 0, 12345) <= 1600);
    assert_true(cd_s3_backoff_ms(9, 0, 999999) <= 1600);
    /* Retry-After is honoured, capped at 5 s. */
    assert_int_equal(cd_s3_backoff_ms(2, 2, 0), 2000);
    assert_int_equal(cd_s3_backoff_ms(2, 3600, 0), 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parts),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
