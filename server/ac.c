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
 * result (ac_refs_scan) instead of unpacking it with protobuf-c, which
 * would allocate every submessage and string; the store checks them in the
 * same read txn that found the result (cd_store_ac_get_complete). The
 * update path uses the same scanner on the bytes it stores, so the digests
 * checked at update and at lookup are the same by construction. */
#include "server/reapi.h"
#include "server/resource.h"
#include "server/wire.h"

#include <stdlib.h>
#include <string.h>

/* Upper bound on blobs one result may reference; results come from
 * clients, so this is capped like all input. */
#define AC_MAX_REFS 100000
/* References kept without allocating (a layer result has two). */
#define AC_REFS_INLINE 8

/* Field numbers (proto/build/bazel/remote/execution/v2). */
#define AR_OUTPUT_FILES 2
#define AR_OUTPUT_DIRECTORIES 3
#define AR_STDOUT_DIGEST 6
#define AR_STDERR_DIGEST 8
#define OF_PATH 1
#define OF_DIGEST 2
#define OD_PATH 1
#define OD_TREE_DIGEST 3
#define DG_HASH 1
#define DG_SIZE 2

struct refs {
    struct cd_digest *d; /* inline or heap */
    size_t n, cap;
    struct cd_digest inline_d[AC_REFS_INLINE];
};

static void refs_init(struct refs *r)
{
    r->d = r->inline_d;
    r->n = 0;
    r->cap = AC_REFS_INLINE;
}

static void refs_free(struct refs *r)
{
    if (r->d != r->inline_d)
        free(r->d);
    refs_init(r);
}

static int refs_push(struct refs *r, const struct cd_digest *d, struct cairn_err *err)
{
    if (r->n == r->cap) {
        if (r->cap >= AC_MAX_REFS)
            return cairn_err_set(err, CAIRN_E_TOOBIG,
                                 "action result references more than %d blobs", AC_MAX_REFS);
        size_t cap = r->cap * 4 < AC_MAX_REFS ? r->cap * 4 : AC_MAX_REFS;
        struct cd_digest *nd = malloc(cap * sizeof *nd);
        if (nd == NULL)
            return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        memcpy(nd, r->d, r->n * sizeof *nd);
        if (r->d != r->inline_d)
            free(r->d);
        r->d = nd;
        r->cap = cap;
    }
    r->d[r->n++] = *d;
    return 0;
}

/* --- the digests in a serialised ActionResult ---------------------------- */

/* A Digest message. Like protobuf, the last occurrence of a field wins. */
static int scan_digest(struct cd_wire w, struct cd_digest *out, struct cairn_err *err)
{
    struct cd_wire hash = {NULL, 0, 0, 0, 0};
    uint64_t size = 0;
    while (cd_wire_more(&w)) {
        uint32_t f, t;
        if (cd_wire_key(&w, &f, &t) != 0)
            goto malformed;
        if (f == DG_HASH && t == CD_WIRE_LEN) {
            if (cd_wire_len(&w, &hash) != 0)
                goto malformed;
        } else if (f == DG_SIZE && t == CD_WIRE_VARINT) {
            if (cd_wire_varint(&w, &size) != 0)
                goto malformed;
        } else if (f == DG_HASH || f == DG_SIZE || cd_wire_skip(&w, t) != 0) {
            goto malformed;
        }
    }
    if (hash.left != CK_SHA256_HEX_LEN)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "digest hash must be %d hex digits (sha256), got %zu characters",
                             CK_SHA256_HEX_LEN, hash.left);
    char hex[CK_SHA256_HEX_LEN + 1];
    if (cd_wire_copy(&hash, hex, CK_SHA256_HEX_LEN) != 0)
        goto malformed;
    hex[CK_SHA256_HEX_LEN] = '\0';
    if (memchr(hex, '\0', CK_SHA256_HEX_LEN) != NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "digest hash is not hexadecimal");
    return cd_digest_parse(hex, (int64_t)size, out, err);
malformed:
    return cairn_err_set(err, CAIRN_E_INVAL, "malformed Digest");
}

/* An OutputFile (digest field OF_DIGEST) or OutputDirectory (OD_TREE_
 * DIGEST): the one digest it must carry, named by its path in errors. */
static int scan_output(struct cd_wire w, uint32_t digest_field, const char *what,
                       struct refs *out, struct cairn_err *err)
{
    struct cd_wire path = {NULL, 0, 0, 0, 0}, dig;
    bool have = false;
    int rc = 0;
    while (rc == 0 && cd_wire_more(&w)) {
        uint32_t f, t;
        if (cd_wire_key(&w, &f, &t) != 0) {
            rc = -1;
        } else if (f == OF_PATH && t == CD_WIRE_LEN) { /* OF_PATH == OD_PATH */
            rc = cd_wire_len(&w, &path);
        } else if (f == digest_field && t == CD_WIRE_LEN) {
            rc = cd_wire_len(&w, &dig);
            have = true;
        } else if (f == OF_PATH || f == digest_field) {
            rc = -1;
        } else {
            rc = cd_wire_skip(&w, t);
        }
    }
    /* The path, for messages only: cut to what a message can hold. */
    char p[200];
    size_t plen = path.left < sizeof p ? path.left : sizeof p - 1;
    if (plen > 0 && cd_wire_copy(&path, p, plen) != 0)
        plen = 0;
    p[plen] = '\0';
    if (rc != 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "%s '%s' is malformed", what, p);
    struct cd_digest d;
    if (!have)
        rc = cairn_err_set(err, CAIRN_E_INVAL, "digest is missing");
    else
        rc = scan_digest(dig, &d, err);
    if (rc == 0)
        return refs_push(out, &d, err);
    cairn_err_prefix(err, "%s '%s'", what, p);
    return rc;
}

/* Collects the digests of output files, output directory trees and
 * stdout/stderr from a serialised ActionResult. Returns 0, CAIRN_E_INVAL
 * (malformed or a bad digest; err says which), CAIRN_E_TOOBIG,
 * CAIRN_E_NOMEM. */
static int ac_refs_scan(const uint8_t *p, size_t len, struct refs *out, struct cairn_err *err)
{
    struct cd_iov one = {p, len};
    struct cd_wire w;
    cd_wire_init(&w, &one, 1);
    while (cd_wire_more(&w)) {
        uint32_t f, t;
        struct cd_wire sub;
        if (cd_wire_key(&w, &f, &t) != 0)
            return cairn_err_set(err, CAIRN_E_INVAL, "malformed ActionResult");
        bool known = f == AR_OUTPUT_FILES || f == AR_OUTPUT_DIRECTORIES ||
                     f == AR_STDOUT_DIGEST || f == AR_STDERR_DIGEST;
        if (!known) {
            if (cd_wire_skip(&w, t) != 0)
                return cairn_err_set(err, CAIRN_E_INVAL, "malformed ActionResult");
            continue;
        }
        if (t != CD_WIRE_LEN || cd_wire_len(&w, &sub) != 0)
            return cairn_err_set(err, CAIRN_E_INVAL, "malformed ActionResult");
        int rc;
        if (f == AR_OUTPUT_FILES) {
            rc = scan_output(sub, OF_DIGEST, "output file", out, err);
        } else if (f == AR_OUTPUT_DIRECTORIES) {
            rc = scan_output(sub, OD_TREE_DIGEST, "output directory tree", out, err);
        } else {
            struct cd_digest d;
            rc = scan_digest(sub, &d, err);
            if (rc == 0)
                rc = refs_push(out, &d, err);
            else
                cairn_err_prefix(err, "%s", f == AR_STDOUT_DIGEST ? "stdout_digest" : "stderr_digest");
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* --- GetActionResult ----------------------------------------------------- */

struct ac_check {
    struct refs refs;
    struct cairn_err err;
};

/* cd_store_refs_fn: runs inside the store's read txn on the stored bytes. */
static int ac_check_refs(void *ctx, const void *data, size_t len, const struct cd_digest **refs,
                         size_t *n)
{
    struct ac_check *c = ctx;
    int rc = ac_refs_scan(data, len, &c->refs, &c->err);
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
    refs_init(&chk.refs);
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
    refs_free(&chk.refs);
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
    struct refs refs;
    refs_init(&refs);
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
    int rc = ac_refs_scan(r->out, r->out_len, &refs, &err);
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
    }
out:
    refs_free(&refs);
    build__bazel__remote__execution__v2__update_action_result_request__free_unpacked(in, NULL);
}
