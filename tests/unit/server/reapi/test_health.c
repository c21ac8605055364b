#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "server/reapi/reapi.h"

/* Calls Check for service name; returns the reply's error code and, when
 * it is 0, the status it answered in *status. */
static int check(struct cd_svc *svc, const char *name, int *status)
{
    PbHealthCheckRequest in = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    in.service = (char *)name;
    uint8_t buf[256];
    size_t len = grpc__health__v1__health_check_request__pack(&in, buf);
    struct cd_req req = {buf, len, NULL, 0, NULL, NULL};
    struct cd_reply r;
    memset(&r, 0, sizeof r);
    cd_health_check(svc, &req, &r);
    if (r.err.code == 0) {
        PbHealthCheckResponse *out =
            grpc__health__v1__health_check_response__unpack(NULL, r.out_len, r.out);
        assert_non_null(out);
        *status = (int)out->status;
        grpc__health__v1__health_check_response__free_unpacked(out, NULL);
    }
    free(r.out);
    return r.err.code;
}

/* SERVING until main starts to shut down, then NOT_SERVING for the server
 * and every service it names (the readiness probe asks for ""); unknown
 * names stay NOT_FOUND either way. */
static void test_not_serving_while_draining(void **state)
{
    (void)state;
    struct cd_metrics m;
    memset(&m, 0, sizeof m);
    struct cd_svc svc = {NULL, NULL, NULL, &m, false, NULL};
    int st = -1;
    assert_int_equal(check(&svc, "", &st), 0);
    assert_int_equal(st, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    assert_int_equal(check(&svc, "google.bytestream.ByteStream", &st), 0);
    assert_int_equal(st, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    assert_int_equal(check(&svc, "no.such.Service", &st), CAIRN_E_NOTFOUND);

    atomic_store(&svc.draining, true);
    st = -1;
    assert_int_equal(check(&svc, "", &st), 0);
    assert_int_equal(st, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    st = -1;
    assert_int_equal(check(&svc, "build.bazel.remote.execution.v2.ActionCache", &st), 0);
    assert_int_equal(st, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    assert_int_equal(check(&svc, "no.such.Service", &st), CAIRN_E_NOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_serving_while_draining),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
