/* ActionCache: GetActionResult and UpdateActionResult.
 *
 * Results are stored as the client sent them (serialised ActionResult, with
 * fields cairnd does not declare kept as unknown fields), so a hit returns
 * exactly what was uploaded. A hit also requires every blob the result
 * names to be in the CAS: Bazel treats a result whose outputs cannot be
 * downloaded as a build failure, whereas NOT_FOUND just makes it rerun the
 * action. */
#include "server/reapi.h"
#include "server/resource.h"

#include <stdlib.h>

/* Upper bound on blobs one result may reference (checked in one store
 * call); results come from clients, so this is capped like all input. */
#define AC_MAX_REFS 100000

struct refs {
    struct cd_digest *d;
    size_t n;
};

/* Collects the digests of output files, stdout/stderr and output
 * directory trees. Returns 0, CAIRN_E_INVAL (a malformed digest; err says
 * which), CAIRN_E_TOOBIG, CAIRN_E_NOMEM. */
static int refs_collect(const PbActionResult *ar, struct refs *out, struct cairn_err *err)
{
    size_t cap = ar->n_output_files + ar->n_output_directories + 2;
    if (cap > AC_MAX_REFS)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "action result references %zu blobs (limit %d)",
                             cap, AC_MAX_REFS);
    out->d = calloc(cap, sizeof *out->d);
    out->n = 0;
    if (out->d == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < ar->n_output_files; i++) {
        rc = cd_pb_digest_err(ar->output_files[i]->digest, &out->d[out->n++], err);
        if (rc != 0)
            cairn_err_prefix(err, "output file '%s'", ar->output_files[i]->path ? ar->output_files[i]->path : "");
    }
    for (size_t i = 0; rc == 0 && i < ar->n_output_directories; i++) {
        rc = cd_pb_digest_err(ar->output_directories[i]->tree_digest, &out->d[out->n++], err);
        if (rc != 0)
            cairn_err_prefix(err, "output directory '%s' tree", ar->output_directories[i]->path ? ar->output_directories[i]->path : "");
    }
    if (rc == 0 && ar->stdout_digest != NULL) {
        rc = cd_pb_digest_err(ar->stdout_digest, &out->d[out->n++], err);
        if (rc != 0)
            cairn_err_prefix(err, "stdout_digest");
    }
    if (rc == 0 && ar->stderr_digest != NULL) {
        rc = cd_pb_digest_err(ar->stderr_digest, &out->d[out->n++], err);
        if (rc != 0)
            cairn_err_prefix(err, "stderr_digest");
    }
    if (rc != 0) {
        free(out->d);
        out->d = NULL;
    }
    return rc;
}

/* Returns 0 when every referenced blob is stored, CAIRN_E_NOTFOUND (r
 * names the first missing blob), or another failure in r. */
static int check_complete(struct cd_svc *svc, const char *instance, const uint8_t *data,
                          size_t len, struct cd_reply *r)
{
    PbActionResult *ar = build__bazel__remote__execution__v2__action_result__unpack(NULL, len, data);
    if (ar == NULL)
        return cd_reply_fail(r, CAIRN_E_CORRUPT, "stored action result does not parse");
    struct refs refs = {0};
    struct cairn_err err;
    bool *missing = NULL;
    int rc = refs_collect(ar, &refs, &err);
    if (rc != 0) {
        /* A stored result was validated on upload; failing here means the
         * data changed underneath, so report it as a miss to let the
         * client rebuild rather than fail the build. */
        rc = cd_reply_fail(r, CAIRN_E_NOTFOUND, "stored action result is unusable: %s", err.msg);
        goto out;
    }
    missing = calloc(refs.n ? refs.n : 1, sizeof *missing);
    if (missing == NULL) {
        rc = cd_reply_fail(r, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    rc = cd_store_find_missing(svc->store, instance, refs.d, refs.n, missing);
    if (rc != 0) {
        cd_reply_fail(r, rc, "store: %s", cairn_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < refs.n; i++) {
        if (missing[i]) {
            char d[96];
            cd_digest_format(&refs.d[i], d, sizeof d);
            rc = cd_reply_fail(r, CAIRN_E_NOTFOUND,
                               "action result found but blob %s it references is missing", d);
            break;
        }
    }
out:
    free(missing);
    free(refs.d);
    build__bazel__remote__execution__v2__action_result__free_unpacked(ar, NULL);
    return rc;
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
    void *data = NULL;
    size_t len = 0;
    if (cd_pb_request_check(in->instance_name, in->digest_function, r) != 0 ||
        cd_svc_authorize(svc, req, in->instance_name, CD_ACCESS_READ, r) != 0 ||
        cd_pb_digest(in->action_digest, "action_digest", &action, r) != 0)
        goto out;
    int rc = cd_store_ac_get(svc->store, in->instance_name, &action, &data, &len);
    if (rc == CAIRN_E_NOTFOUND) {
        cd_metrics_add(&svc->metrics->ac_misses, 1);
        cd_reply_fail(r, rc, "no action result for this action digest");
        goto out;
    }
    if (rc != 0) {
        cd_reply_fail(r, rc, "store: %s", cairn_strerror(rc));
        goto out;
    }
    if (check_complete(svc, in->instance_name, data, len, r) != 0) {
        if (r->err.code == CAIRN_E_NOTFOUND)
            cd_metrics_add(&svc->metrics->ac_misses, 1);
        goto out;
    }
    cd_metrics_add(&svc->metrics->ac_hits, 1);
    r->out = data;
    r->out_len = len;
    data = NULL;
out:
    free(data);
    build__bazel__remote__execution__v2__get_action_result_request__free_unpacked(in, NULL);
}

void cd_ac_update(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r)
{
    PbUpdateActionResultRequest *in =
        build__bazel__remote__execution__v2__update_action_result_request__unpack(NULL, req->len, req->data);
    if (in == NULL) {
        cd_pb_malformed(r, "UpdateActionResultRequest");
        return;
    }
    struct cd_digest action;
    struct refs refs = {0};
    struct cairn_err err;
    if (cd_pb_request_check(in->instance_name, in->digest_function, r) != 0 ||
        cd_svc_authorize(svc, req, in->instance_name, CD_ACCESS_WRITE, r) != 0 ||
        cd_pb_digest(in->action_digest, "action_digest", &action, r) != 0)
        goto out;
    if (in->action_result == NULL) {
        cd_reply_fail(r, CAIRN_E_INVAL, "action_result is missing");
        goto out;
    }
    /* Refuse results whose digests are malformed now, so that a later hit
     * never hands a client garbage. */
    int rc = refs_collect(in->action_result, &refs, &err);
    if (rc != 0) {
        cd_reply_fail(r, rc, "action_result: %s", err.msg);
        goto out;
    }
    if (cd_pb_pack(&in->action_result->base, r) != 0)
        goto out;
    rc = cd_store_ac_put(svc->store, in->instance_name, &action, r->out, r->out_len);
    if (rc != 0) {
        free(r->out);
        r->out = NULL;
        r->out_len = 0;
        if (rc == CAIRN_E_TOOBIG)
            cd_reply_fail(r, rc, "action result exceeds %u bytes", CD_STORE_MAX_AC_RESULT);
        else
            cd_reply_fail(r, rc, "store: %s", cairn_strerror(rc));
    }
out:
    free(refs.d);
    build__bazel__remote__execution__v2__update_action_result_request__free_unpacked(in, NULL);
}
