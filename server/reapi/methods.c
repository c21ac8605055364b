/* The RPC method table: every path cairnd answers, its call shape and its
 * handler. server/grpc/rpc.c registers exactly these with gRPC; anything
 * else is UNIMPLEMENTED. */
#include "server/reapi/reapi.h"

#include "cairn/claim/v1/claim.pb-c.h"

#include <stdarg.h>
#include <stdio.h>

#define REAPI "/build.bazel.remote.execution.v2."

const struct cd_method cd_methods[] = {
    {REAPI "Capabilities/GetCapabilities", CD_CALL_UNARY, cd_capabilities_get, NULL,
     &build__bazel__remote__execution__v2__get_capabilities_request__descriptor},
    {REAPI "ActionCache/GetActionResult", CD_CALL_UNARY, cd_ac_get, NULL,
     &build__bazel__remote__execution__v2__get_action_result_request__descriptor},
    {REAPI "ActionCache/UpdateActionResult", CD_CALL_UNARY, cd_ac_update, NULL,
     &build__bazel__remote__execution__v2__update_action_result_request__descriptor},
    {REAPI "ContentAddressableStorage/FindMissingBlobs", CD_CALL_UNARY, cd_cas_find_missing, NULL,
     &build__bazel__remote__execution__v2__find_missing_blobs_request__descriptor},
    {REAPI "ContentAddressableStorage/BatchUpdateBlobs", CD_CALL_UNARY, cd_cas_batch_update, NULL,
     &build__bazel__remote__execution__v2__batch_update_blobs_request__descriptor},
    {REAPI "ContentAddressableStorage/BatchReadBlobs", CD_CALL_UNARY, cd_cas_batch_read, NULL,
     &build__bazel__remote__execution__v2__batch_read_blobs_request__descriptor},
    {"/google.bytestream.ByteStream/Read", CD_CALL_SERVER_STREAM, NULL, &cd_bytestream_read_ops,
     &google__bytestream__read_request__descriptor},
    {"/google.bytestream.ByteStream/Write", CD_CALL_CLIENT_STREAM, NULL, &cd_bytestream_write_ops, NULL},
    {"/google.bytestream.ByteStream/QueryWriteStatus", CD_CALL_UNARY, cd_bytestream_query, NULL,
     &google__bytestream__query_write_status_request__descriptor},
    /* cairn's extension (server/reapi/claim.c); REAPI clients never call it. */
    {"/cairn.claim.v1.Claims/Claim", CD_CALL_UNARY, cd_claim_take, NULL,
     &cairn__claim__v1__claim_request__descriptor},
    {"/cairn.claim.v1.Claims/Renew", CD_CALL_UNARY, cd_claim_renew, NULL,
     &cairn__claim__v1__claim_request__descriptor},
    {"/cairn.claim.v1.Claims/Release", CD_CALL_UNARY, cd_claim_release, NULL,
     &cairn__claim__v1__claim_request__descriptor},
    {"/grpc.health.v1.Health/Check", CD_CALL_UNARY, cd_health_check, NULL,
     &grpc__health__v1__health_check_request__descriptor},
};
const size_t cd_methods_count = sizeof cd_methods / sizeof cd_methods[0];

int cd_reply_fail(struct cd_reply *r, int code, const char *fmt, ...)
{
    r->err.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err.msg, sizeof r->err.msg, fmt, ap);
    va_end(ap);
    return code;
}

int cd_svc_authorize(const struct cd_svc *svc, const struct cd_req *req,
                     const char *instance, enum cd_access need,
                     struct cd_reply *r)
{
    snprintf(r->instance, sizeof r->instance, "%s", instance ? instance : "");
    int rc = cd_auth_check(svc->auth, req->authorization, instance, need);
    if (rc == CAIRN_E_AUTH)
        return cd_reply_fail(r, rc, "missing or unknown bearer token");
    if (rc != 0)
        return cd_reply_fail(r, rc, "token does not grant %s access to instance '%s'",
                             need == CD_ACCESS_WRITE ? "write" : "read",
                             instance ? instance : "");
    return 0;
}
