/* cairn.claim.v1.Claims: Claim, Renew and Release over the claim table
 * (claimtab.h). The service is cairn's own extension (proto/cairn/claim/
 * v1/claim.proto says why it is not advertised): with claims off
 * (cairnd --no-claims, svc->claims NULL) every method answers
 * UNIMPLEMENTED, exactly as a server without the service would, so
 * clients have one path for both. Claiming needs the right to write the
 * instance's action cache: a claim is a promise to write a result there.
 * UpdateActionResult ends the claim on its action (ac.c). */
#include "server/reapi/claimtab.h"
#include "server/reapi/reapi.h"

#include "cairn/claim/v1/claim.pb-c.h"

#include <string.h>
#include <time.h>

typedef Cairn__Claim__V1__ClaimRequest PbClaimRequest;
typedef Cairn__Claim__V1__ClaimResponse PbClaimResponse;

enum claim_op { CLAIM_TAKE, CLAIM_RENEW, CLAIM_RELEASE };

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void claim_call(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r,
                       enum claim_op op)
{
    if (svc->claims == NULL) {
        cd_reply_fail(r, CAIRN_E_UNSUPPORTED, "claims are off on this server (--no-claims)");
        return;
    }
    PbClaimRequest *in = cairn__claim__v1__claim_request__unpack(NULL, req->len, req->data);
    if (in == NULL) {
        cd_pb_malformed(r, "ClaimRequest");
        return;
    }
    struct cd_digest action;
    const char *builder = in->builder_id ? in->builder_id : "";
    if (cd_pb_request_check(in->instance_name, 0, r) != 0 ||
        cd_svc_authorize(svc, req, in->instance_name, CD_ACCESS_WRITE, r) != 0 ||
        cd_pb_digest(in->action_digest, "action_digest", &action, r) != 0)
        goto out;
    if (builder[0] == '\0' || strlen(builder) > CD_CLAIM_MAX_BUILDER) {
        cd_reply_fail(r, CAIRN_E_INVAL, "builder_id must be 1 to %d bytes", CD_CLAIM_MAX_BUILDER);
        goto out;
    }
    const char *instance = in->instance_name ? in->instance_name : "";
    struct cd_claim_view v;
    int rc;
    if (op == CLAIM_TAKE)
        rc = cd_claims_take_expecting(svc->claims, instance, &action, builder, in->ttl_ms,
                                      in->expected_ms, now_ms(), &v);
    else if (op == CLAIM_RENEW)
        rc = cd_claims_renew(svc->claims, instance, &action, builder, in->ttl_ms, now_ms(), &v);
    else
        rc = cd_claims_release(svc->claims, instance, &action, builder, now_ms(), &v);
    if (rc == CAIRN_E_FULL) {
        cd_reply_fail(r, rc, "the claim table is full; run the step");
        goto out;
    }
    if (rc != 0) {
        cd_reply_fail(r, rc, "claim: %s", cairn_strerror(rc));
        goto out;
    }
    if (op == CLAIM_TAKE)
        cd_metrics_add(v.state == CD_CLAIM_GRANTED ? &svc->metrics->claims_granted
                                                   : &svc->metrics->claims_held,
                       1);
    PbClaimResponse resp = CAIRN__CLAIM__V1__CLAIM_RESPONSE__INIT;
    resp.state = (Cairn__Claim__V1__ClaimResponse__State)v.state;
    resp.remaining_ms = v.remaining_ms;
    resp.held_ms = v.held_ms;
    resp.ttl_ms = v.ttl_ms;
    resp.expected_ms = v.expected_ms;
    cd_pb_pack(&resp.base, r);
out:
    cairn__claim__v1__claim_request__free_unpacked(in, NULL);
}

void cd_claim_take(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r)
{
    claim_call(svc, req, r, CLAIM_TAKE);
}

void cd_claim_renew(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r)
{
    claim_call(svc, req, r, CLAIM_RENEW);
}

void cd_claim_release(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r)
{
    claim_call(svc, req, r, CLAIM_RELEASE);
}
