/* ActionCache: GetActionResult and UpdateActionResult.
 *
 * Results are stored as the client sent them (serialised ActionResult, with
 * fields cairnd does not declare kept as unknown fields), so a hit returns
 * exactly what was uploaded. A hit also requires every blob the result
 * names to be in the CAS: Bazel treats a result whose outputs cannot be
 * downloaded as a build failure, whereas NOT_FOUND just makes it rerun the
 * action.
 *
 * GetActionResult is the hot path (one per build step and client), so the
 * referenced digests are read straight off the wire format of the stored
 * result (server/reapi/acrefs.c) instead of unpacking it with protobuf-c, which
 * would allocate every submessage and string; the store checks them in the
 * same read txn that found the result (cd_store_ac_get_complete). The
 * update path uses the same scanner on the bytes it stores, so the digests
 * checked at update and at lookup are the same by construction. */
#include "server/reapi/acrefs.h"
#include "server/reapi/claimtab.h"
#include "server/reapi/reapi.h"
#include "server/reapi/resource.h"

#include <stdlib.h>
#include <string.h>

/* --- GetActionResult ----------------------------------------------------- */

struct ac_check {
    struct cd_acrefs refs;
    struct cairn_err err;
};

/* cd_store_refs_fn: runs inside the store's read txn on the stored bytes. */
static int ac_check_refs(void *ctx, const void *data, size_t len, const struct cd_digest **refs,
                         size_t *n)
{
    struct ac_check *c = ctx;
    int rc = cd_acrefs_scan(data, len, &c->refs, &c->err);
    if (rc == CAIRN_E_INVAL || rc == CAIRN_E_TOOBIG) {
        /* A stored result was validated on upload; failing here means the
         * data changed underneath, so report it as a miss to let the
         * client rebuild rather than fail the build. */
        cairn_err_prefix(&c->err, "stored action result is unusable");
        return CAIRN_E_CORRUPT;
    }
    if (rc != 0)
        return rc;
    *refs = c->refs.d;
    *n = c->refs.n;
    return 0;
}

void cd_ac_get(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r)
{
    PbGetActionResultRequest *in =
        build__bazel__remote__execution__v2__get_action_result_request__unpack(NULL, req->len, req->data);
    if (in == NULL) {
        cd_pb_malformed(r, "GetActionResultRequest");
        return;
    }
    struct cd_digest action;
    struct ac_check chk;
    cd_acrefs_init(&chk.refs);
    cairn_err_clear(&chk.err);
    void *data = NULL;
    size_t len = 0, missing = SIZE_MAX;
    if (cd_pb_request_check(in->instance_name, in->digest_function, r) != 0 ||
        cd_svc_authorize(svc, req, in->instance_name, CD_ACCESS_READ, r) != 0 ||
        cd_pb_digest(in->action_digest, "action_digest", &action, r) != 0)
        goto out;
    int rc = cd_store_ac_get_complete(svc->store, in->instance_name, &action, ac_check_refs, &chk,
                                      &data, &len, &missing);
    if (rc == CAIRN_E_NOTFOUND || rc == CAIRN_E_CORRUPT) {
        cd_metrics_add(&svc->metrics->ac_misses, 1);
        if (rc == CAIRN_E_CORRUPT || missing != SIZE_MAX)
            cd_metrics_add(&svc->metrics->ac_incomplete, 1);
        if (rc == CAIRN_E_CORRUPT) {
            cd_reply_fail(r, CAIRN_E_NOTFOUND, "%s", chk.err.msg);
        } else if (missing == SIZE_MAX) {
            cd_reply_fail(r, rc, "no action result for this action digest");
        } else {
            char d[96];
            cd_digest_format(&chk.refs.d[missing], d, sizeof d);
            cd_reply_fail(r, rc, "action result found but blob %s it references is missing", d);
        }
        goto out;
    }
    if (rc != 0) {
        cd_reply_fail(r, rc, "store: %s", cairn_strerror(rc));
        goto out;
    }
    cd_metrics_add(&svc->metrics->ac_hits, 1);
    r->out = data;
    r->out_len = len;
out:
    cd_acrefs_free(&chk.refs);
    build__bazel__remote__execution__v2__get_action_result_request__free_unpacked(in, NULL);
}

/* --- UpdateActionResult -------------------------------------------------- */

void cd_ac_update(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r)
{
    PbUpdateActionResultRequest *in =
        build__bazel__remote__execution__v2__update_action_result_request__unpack(NULL, req->len, req->data);
    if (in == NULL) {
        cd_pb_malformed(r, "UpdateActionResultRequest");
        return;
    }
    struct cd_digest action;
    struct cd_acrefs refs;
    cd_acrefs_init(&refs);
    struct cairn_err err;
    if (cd_pb_request_check(in->instance_name, in->digest_function, r) != 0 ||
        cd_svc_authorize(svc, req, in->instance_name, CD_ACCESS_WRITE, r) != 0 ||
        cd_pb_digest(in->action_digest, "action_digest", &action, r) != 0)
        goto out;
    if (in->action_result == NULL) {
        cd_reply_fail(r, CAIRN_E_INVAL, "action_result is missing");
        goto out;
    }
    if (cd_pb_pack(&in->action_result->base, r) != 0)
        goto out;
    /* Refuse results whose digests are malformed now, so that a later hit
     * never hands a client garbage. The bytes scanned are the bytes
     * stored. */
    int rc = cd_acrefs_scan(r->out, r->out_len, &refs, &err);
    if (rc != 0) {
        free(r->out);
        r->out = NULL;
        r->out_len = 0;
        cd_reply_fail(r, rc, "action_result: %s", err.msg);
        goto out;
    }
    rc = cd_store_ac_put(svc->store, in->instance_name, &action, r->out, r->out_len);
    if (rc != 0) {
        free(r->out);
        r->out = NULL;
        r->out_len = 0;
        if (rc == CAIRN_E_TOOBIG)
            cd_reply_fail(r, rc, "action result exceeds %u bytes", CD_STORE_MAX_AC_RESULT);
        else
            cd_reply_fail(r, rc, "store: %s", cairn_strerror(rc));
    } else {
        /* The result is what a claim on this action promised
         * (server/reapi/claim.c): its waiters now find it. */
        if (cd_claims_end(svc->claims, in->instance_name ? in->instance_name : "", &action))
            cd_metrics_add(&svc->metrics->claims_ended, 1);
    }
out:
    cd_acrefs_free(&refs);
    build__bazel__remote__execution__v2__update_action_result_request__free_unpacked(in, NULL);
}
