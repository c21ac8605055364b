/* server/reapi/claim.c (the cairn.claim.v1 handlers; named apart from
 * the client's tests/unit/client/remote/test_claim.c, test names being
 * global). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cairn/claim/v1/claim.pb-c.h"
#include "server/reapi/claimtab.h"
#include "server/reapi/reapi.h"

#define HASH "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* Calls handler fn with a ClaimRequest; returns the reply's code and, on
 * success, the state in *state. */
static int call(cd_unary_fn fn, struct cd_svc *svc, const char *token, const char *instance,
                const char *builder, int *state)
{
    PbDigest d = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
    d.hash = (char *)HASH;
    d.size_bytes = 10;
    Cairn__Claim__V1__ClaimRequest in = CAIRN__CLAIM__V1__CLAIM_REQUEST__INIT;
    in.instance_name = (char *)instance;
    in.action_digest = &d;
    in.ttl_ms = 60000;
    in.builder_id = (char *)builder;
    uint8_t buf[512];
    size_t len = cairn__claim__v1__claim_request__pack(&in, buf);
    char authz[64];
    snprintf(authz, sizeof authz, "Bearer %s", token);
    struct cd_req req = {.data = buf, .len = len, .authorization = authz};
    struct cd_reply r;
    memset(&r, 0, sizeof r);
    fn(svc, &req, &r);
    if (r.err.code == 0) {
        Cairn__Claim__V1__ClaimResponse *out =
            cairn__claim__v1__claim_response__unpack(NULL, r.out_len, r.out);
        assert_non_null(out);
        *state = (int)out->state;
        cairn__claim__v1__claim_response__free_unpacked(out, NULL);
    }
    free(r.out);
    return r.err.code;
}

/* Stores an empty ActionResult for the claimed action (UpdateActionResult). */
static int update(struct cd_svc *svc, const char *instance)
{
    PbDigest d = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
    d.hash = (char *)HASH;
    d.size_bytes = 10;
    PbActionResult res = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
    PbUpdateActionResultRequest in = BUILD__BAZEL__REMOTE__EXECUTION__V2__UPDATE_ACTION_RESULT_REQUEST__INIT;
    in.instance_name = (char *)instance;
    in.action_digest = &d;
    in.action_result = &res;
    uint8_t buf[512];
    size_t len = build__bazel__remote__execution__v2__update_action_result_request__pack(&in, buf);
    struct cd_req req = {.data = buf, .len = len, .authorization = "Bearer w"};
    struct cd_reply r;
    memset(&r, 0, sizeof r);
    cd_ac_update(svc, &req, &r);
    free(r.out);
    return r.err.code;
}

static struct cd_auth *auth_make(void)
{
    char path[] = "/tmp/cairn-test-claim.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("w write *\nr read *\n", f);
    fclose(f);
    struct cd_auth *a = NULL;
    struct cairn_err err;
    assert_int_equal(cd_auth_load(path, &a, &err), 0);
    unlink(path);
    return a;
}

/* Off (--no-claims): UNIMPLEMENTED, as a server without the service. */
static void test_off(void **state)
{
    (void)state;
    struct cd_metrics m;
    memset(&m, 0, sizeof m);
    struct cd_svc svc = {NULL, NULL, NULL, &m, false, NULL};
    int st = 0;
    assert_int_equal(call(cd_claim_take, &svc, "w", "main", "a", &st), CAIRN_E_UNSUPPORTED);
    assert_int_equal(call(cd_claim_renew, &svc, "w", "main", "a", &st), CAIRN_E_UNSUPPORTED);
}

/* Only a token that may write the instance claims; the owner's claim is
 * HELD for others and ended by the result's upload, after which renewing
 * it cannot bring it back. */
static void test_auth_and_upload_ends(void **state)
{
    (void)state;
    char dir[] = "/tmp/cairn-test-claim-store.XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct cd_store_opts so;
    memset(&so, 0, sizeof so);
    so.dir = dir;
    so.upload_ttl_s = 60;
    struct cd_store *store = NULL;
    struct cairn_err err;
    assert_int_equal(cd_store_open(&so, &store, &err), 0);
    struct cd_metrics m;
    memset(&m, 0, sizeof m);
    struct cd_claims *claims = NULL;
    assert_int_equal(cd_claims_new(0, &claims), 0);
    struct cd_svc svc = {store, auth_make(), NULL, &m, false, claims};

    int st = 0;
    assert_int_equal(call(cd_claim_take, &svc, "r", "main", "a", &st), -EACCES);
    assert_int_equal(call(cd_claim_take, &svc, "nope", "main", "a", &st), CAIRN_E_AUTH);
    assert_int_equal(call(cd_claim_take, &svc, "w", "main", "", &st), CAIRN_E_INVAL);
    assert_int_equal(call(cd_claim_take, &svc, "w", "main", "a", &st), 0);
    assert_int_equal(st, CAIRN__CLAIM__V1__CLAIM_RESPONSE__STATE__GRANTED);
    assert_int_equal(call(cd_claim_take, &svc, "w", "main", "b", &st), 0);
    assert_int_equal(st, CAIRN__CLAIM__V1__CLAIM_RESPONSE__STATE__HELD);
    assert_int_equal(call(cd_claim_renew, &svc, "w", "main", "a", &st), 0);
    assert_int_equal(st, CAIRN__CLAIM__V1__CLAIM_RESPONSE__STATE__GRANTED);

    assert_int_equal(update(&svc, "main"), 0);
    assert_int_equal(cd_claims_count(claims), 0);
    assert_int_equal(cd_metrics_get(&m.claims_ended), 1);
    assert_int_equal(cd_metrics_get(&m.claims_held), 1);
    assert_int_equal(call(cd_claim_renew, &svc, "w", "main", "a", &st), 0);
    assert_int_equal(st, CAIRN__CLAIM__V1__CLAIM_RESPONSE__STATE__GONE);
    assert_int_equal(call(cd_claim_take, &svc, "w", "main", "b", &st), 0);
    assert_int_equal(st, CAIRN__CLAIM__V1__CLAIM_RESPONSE__STATE__GRANTED);
    assert_int_equal(call(cd_claim_release, &svc, "w", "main", "a", &st), 0);
    assert_int_equal(st, CAIRN__CLAIM__V1__CLAIM_RESPONSE__STATE__HELD);
    assert_int_equal(call(cd_claim_release, &svc, "w", "main", "b", &st), 0);
    assert_int_equal(st, CAIRN__CLAIM__V1__CLAIM_RESPONSE__STATE__GONE);

    /* Garbage is INVALID_ARGUMENT, not a crash. */
    uint8_t junk[] = {0x12, 0xff, 0xff, 0x01};
    struct cd_req req = {.data = junk, .len = sizeof junk, .authorization = "Bearer w"};
    struct cd_reply r;
    memset(&r, 0, sizeof r);
    cd_claim_take(&svc, &req, &r);
    assert_int_not_equal(r.err.code, 0);
    free(r.out);

    cd_auth_free(svc.auth);
    cd_claims_free(claims);
    cd_store_close(store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_auth_and_upload_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
