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

/* Streamed uploads: about 4 parts, between part_size and 64 MiB. */
static void test_stream_parts(void **state)
{
    (void)state;
    static struct cd_s3 s3; /* only part_size is read */
    s3.part_size = 16 * MiB;
    assert_true(cd_s3_stream_part_size(&s3, 40 * MiB) == 16 * MiB);
    assert_true(cd_s3_stream_part_size(&s3, 64 * MiB) == 16 * MiB);
    assert_true(cd_s3_stream_part_size(&s3, 100 * MiB) == 25 * MiB);
    assert_true(cd_s3_stream_part_size(&s3, 100 * MiB + 1) == 26 * MiB);
    assert_true(cd_s3_stream_part_size(&s3, 256 * MiB) == 64 * MiB);
    assert_true(cd_s3_stream_part_size(&s3, 2048 * MiB) == 64 * MiB);
    /* A larger part_size wins. */
    s3.part_size = 128 * MiB;
    assert_true(cd_s3_stream_part_size(&s3, 2048 * MiB) == 128 * MiB);
    /* Through the plan: 256 MiB in 4 parts; 64 GiB still in <= 1000. */
    s3.part_size = 16 * MiB;
    uint64_t ps = 0;
    unsigned n = 0;
    assert_int_equal(cd_s3_parts_plan(256 * MiB, cd_s3_stream_part_size(&s3, 256 * MiB),
                                      &ps, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(cd_s3_parts_plan(65536 * MiB, cd_s3_stream_part_size(&s3, 65536 * MiB),
                                      &ps, &n), 0);
    assert_true(n <= CD_S3_MAX_PARTS);
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
        cmocka_unit_test(test_stream_parts),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
