/* Unit tests of step claims' parts that need no server: the
 * cache-claim-ttl setting, and that a step is never claimed (it runs)
 * before the cache was probed or with claims off. The claim-or-wait loop
 * against a real cairnd is tests/integration/test_remote_claim.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "client/remote/cache.h"
#include "client/remote/claim.h"
#include "client/remote/config.h"

#include <stdio.h>
#include <string.h>

static void test_config_claim_ttl(void **state)
{
    (void)state;
    struct cairn_config c;
    cairn_config_init(&c);
    assert_int_equal(c.claim_ttl_ms, 0);
    assert_int_equal(cairn_config_set(&c, "cache-claim-ttl", "1500ms", NULL), 0);
    assert_int_equal(c.claim_ttl_ms, 1500);
    assert_int_equal(cairn_config_set(&c, "cache-claim-ttl", "off", NULL), 0);
    assert_int_equal(c.claim_ttl_ms, -1);
    assert_int_equal(cairn_config_set(&c, "cache-claim-ttl", "10m", NULL), 0);
    assert_int_equal(c.claim_ttl_ms, 600000);
    assert_int_equal(cairn_config_set(&c, "cache-claim-ttl", "11m", NULL), CAIRN_E_INVAL);
    assert_int_equal(cairn_config_set(&c, "cache-claim-ttl", "0", NULL), CAIRN_E_INVAL);
    assert_int_equal(cairn_config_set(&c, "cache-claim-ttl", "soon", NULL), CAIRN_E_INVAL);
    cairn_config_clear(&c);
}

/* Settling needs a probed, writable endpoint; without one the step runs
 * unclaimed and nothing is contacted (port 1 would refuse). */
static void test_unprobed_runs(void **state)
{
    (void)state;
    struct cairn_config cfg;
    cairn_config_init(&cfg);
    assert_int_equal(cairn_config_set(&cfg, "cache", "grpc://127.0.0.1:1/main", NULL), 0);
    struct cairn_cache *c = NULL;
    struct cairn_err err;
    assert_int_equal(cairn_cache_open(&cfg, &c, &err), 0);
    struct cairn_cache_target t;
    const char *key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_int_equal(cairn_cache_claim_target(c, key, &t), CAIRN_E_NOTFOUND);
    struct cairn_claims *cl = NULL;
    assert_int_equal(cairn_claims_open(c, &cl), 0);
    struct cairn_cache_step s;
    memset(&s, 0, sizeof s);
    s.key_hex = key;
    s.material = "m";
    s.material_len = 1;
    assert_int_equal(cairn_claims_settle(cl, NULL, &s, 0, stdout, "step 2/2"), CAIRN_CLAIM_RUN);
    cairn_claims_done(cl, key, false);
    struct cairn_claims_stats st;
    cairn_claims_stats_get(cl, &st);
    assert_int_equal(st.claimed + st.waited, 0);
    cairn_claims_close(cl);
    cairn_claims_close(NULL);
    cairn_cache_close(c);
    cairn_config_clear(&cfg);
}

/* The give-up rule: never without an expected time; past twice the
 * expected time for long steps, past it plus 10 s for short ones. */
static void test_overdue(void **state)
{
    (void)state;
    assert_false(cairn_claims_overdue(0, 999999999));
    assert_false(cairn_claims_overdue(-5, 999999999));
    assert_false(cairn_claims_overdue(1000, 11000));
    assert_true(cairn_claims_overdue(1000, 11001));
    assert_false(cairn_claims_overdue(10000, 20000));
    assert_true(cairn_claims_overdue(10000, 20001));
    assert_false(cairn_claims_overdue(60000, 120000));
    assert_true(cairn_claims_overdue(60000, 120001));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_claim_ttl),
        cmocka_unit_test(test_overdue),
        cmocka_unit_test(test_unprobed_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
