/* grpc.health.v1.Health/Check: load balancers and Kubernetes probes ask
 * whether cairnd serves. It needs no token (probes carry none) and says
 * nothing about the data. The empty service name and the REAPI services
 * are SERVING, or NOT_SERVING once main has begun to shut down
 * (svc->draining: during --shutdown-delay, so readiness drops while calls
 * are still served); other names are NOT_FOUND, as the health protocol
 * asks. Watch is not implemented (UNIMPLEMENTED, which the protocol
 * allows). */
#include "server/reapi/reapi.h"

#include <string.h>

static const char *const served[] = {
    "",
    "build.bazel.remote.execution.v2.ActionCache",
    "build.bazel.remote.execution.v2.ContentAddressableStorage",
    "build.bazel.remote.execution.v2.Capabilities",
    "google.bytestream.ByteStream",
};

void cd_health_check(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r)
{
    PbHealthCheckRequest *in = grpc__health__v1__health_check_request__unpack(NULL, req->len, req->data);
    if (in == NULL) {
        cd_pb_malformed(r, "HealthCheckRequest");
        return;
    }
    const char *name = in->service ? in->service : "";
    size_t i = 0;
    while (i < sizeof served / sizeof *served && strcmp(served[i], name) != 0)
        i++;
    if (i == sizeof served / sizeof *served) {
        cd_reply_fail(r, CAIRN_E_NOTFOUND, "unknown service '%s'", name);
    } else {
        PbHealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        out.status = atomic_load(&svc->draining)
                         ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                         : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        cd_pb_pack(&out.base, r);
    }
    grpc__health__v1__health_check_request__free_unpacked(in, NULL);
}
