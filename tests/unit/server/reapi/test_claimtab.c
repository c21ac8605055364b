#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/error.h"
#include "server/reapi/claimtab.h"

static struct cd_digest dg(uint8_t b)
{
    struct cd_digest d;
    memset(&d, 0, sizeof d);
    memset(d.hash, b, sizeof d.hash);
    d.size = 42;
    return d;
}

/* The first builder gets the claim, the second is told it is held and for
 * how long; the holder's take renews it; after expiry the second gets
 * it. */
static void test_take_held_expire(void **state)
{
    (void)state;
    struct cd_claims *t = NULL;
    assert_int_equal(cd_claims_new(0, &t), 0);
    struct cd_digest d = dg(1);
    struct cd_claim_view v;
    assert_int_equal(cd_claims_take(t, "main", &d, "a", 1000, 5000, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_GRANTED);
    assert_int_equal(v.remaining_ms, 1000);
    assert_int_equal(cd_claims_take(t, "main", &d, "b", 1000, 5400, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_HELD);
    assert_int_equal(v.remaining_ms, 600);
    assert_int_equal(v.held_ms, 400);
    /* Another instance, same digest: a claim of its own. */
    assert_int_equal(cd_claims_take(t, "pr", &d, "b", 1000, 5400, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_GRANTED);
    assert_int_equal(cd_claims_take(t, "main", &d, "a", 1000, 5900, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_GRANTED);
    assert_int_equal(v.remaining_ms, 1000);
    assert_int_equal(cd_claims_take(t, "main", &d, "b", 1000, 6899, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_HELD);
    assert_int_equal(cd_claims_take(t, "main", &d, "b", 1000, 6900, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_GRANTED);
    cd_claims_free(t);
}

/* The holder's expected step time is kept with its claim and told to
 * waiters (a waiter's own is not kept: the claim is not its); the
 * holder's take without one keeps the earlier one; a new claim starts
 * from its own. */
static void test_expected(void **state)
{
    (void)state;
    struct cd_claims *t = NULL;
    assert_int_equal(cd_claims_new(0, &t), 0);
    struct cd_digest d = dg(7);
    struct cd_claim_view v;
    assert_int_equal(cd_claims_take_expecting(t, "main", &d, "a", 1000, 1500, 100, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_GRANTED);
    assert_int_equal(cd_claims_take_expecting(t, "main", &d, "b", 1000, 99, 300, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_HELD);
    assert_int_equal(v.expected_ms, 1500);
    assert_int_equal(v.held_ms, 200);
    assert_int_equal(cd_claims_take(t, "main", &d, "a", 1000, 400, &v), 0);
    assert_int_equal(cd_claims_take(t, "main", &d, "b", 1000, 500, &v), 0);
    assert_int_equal(v.expected_ms, 1500);
    /* Renew by another says nothing about the claim. */
    assert_int_equal(cd_claims_renew(t, "main", &d, "b", 1000, 500, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_GONE);
    assert_int_equal(v.expected_ms, 0);
    /* Expired: b's new claim carries b's own (none). */
    assert_int_equal(cd_claims_take(t, "main", &d, "b", 1000, 5000, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_GRANTED);
    assert_int_equal(cd_claims_take(t, "main", &d, "a", 1000, 5100, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_HELD);
    assert_int_equal(v.expected_ms, 0);
    cd_claims_free(t);
}

/* Renew never creates and never touches another's claim; release ends
 * only the caller's; the result's upload (end) ends anyone's. */
static void test_renew_release_end(void **state)
{
    (void)state;
    struct cd_claims *t = NULL;
    assert_int_equal(cd_claims_new(0, &t), 0);
    struct cd_digest d = dg(2);
    struct cd_claim_view v;
    assert_int_equal(cd_claims_renew(t, "", &d, "a", 1000, 0 + 10, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_GONE);
    assert_int_equal(cd_claims_count(t), 0);
    assert_int_equal(cd_claims_take(t, "", &d, "a", 1000, 10, &v), 0);
    assert_int_equal(cd_claims_renew(t, "", &d, "b", 1000, 20, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_GONE);
    assert_int_equal(cd_claims_renew(t, "", &d, "a", 1000, 900, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_GRANTED);
    assert_int_equal(v.remaining_ms, 1000);
    assert_int_equal(cd_claims_release(t, "", &d, "b", 950, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_HELD);
    assert_int_equal(cd_claims_release(t, "", &d, "a", 960, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_GONE);
    assert_int_equal(cd_claims_take(t, "", &d, "b", 1000, 970, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_GRANTED);
    cd_claims_end(t, "", &d);
    assert_int_equal(cd_claims_count(t), 0);
    assert_int_equal(cd_claims_renew(t, "", &d, "b", 1000, 980, &v), 0);
    assert_int_equal(v.state, CD_CLAIM_GONE);
    cd_claims_end(NULL, "", &d);
    cd_claims_free(t);
}

/* A full table sweeps expired claims, and refuses when all are live; the
 * ttl is clamped; an over-long builder id is refused. */
static void test_bounds(void **state)
{
    (void)state;
    struct cd_claims *t = NULL;
    assert_int_equal(cd_claims_new(3, &t), 0);
    struct cd_claim_view v;
    for (uint8_t i = 0; i < 3; i++) {
        struct cd_digest d = dg(i);
        assert_int_equal(cd_claims_take(t, "", &d, "a", 1, 100, &v), 0);
        assert_int_equal(v.ttl_ms, CD_CLAIM_TTL_MIN_MS);
    }
    struct cd_digest d = dg(9);
    assert_int_equal(cd_claims_take(t, "", &d, "a", 1000, 200, &v), CAIRN_E_FULL);
    assert_int_equal(cd_claims_take(t, "", &d, "a", UINT32_MAX, 300, &v), 0);
    assert_int_equal(v.ttl_ms, CD_CLAIM_TTL_MAX_MS);
    /* The expired ones make room (swept when the table is full). */
    d = dg(11);
    assert_int_equal(cd_claims_take(t, "", &d, "a", 1000, 300, &v), 0);
    d = dg(12);
    assert_int_equal(cd_claims_take(t, "", &d, "a", 1000, 300, &v), 0);
    assert_int_equal(cd_claims_count(t), 3);
    d = dg(13);
    assert_int_equal(cd_claims_take(t, "", &d, "a", 1000, 300, &v), CAIRN_E_FULL);
    char longid[CD_CLAIM_MAX_BUILDER + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    d = dg(10);
    assert_int_equal(cd_claims_take(t, "", &d, longid, 1000, 300, &v), CAIRN_E_INVAL);
    cd_claims_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_held_expire),
        cmocka_unit_test(test_expected),
        cmocka_unit_test(test_renew_release_end),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
