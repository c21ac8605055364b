/* ContentAddressableStorage: FindMissingBlobs, BatchUpdateBlobs,
 * BatchReadBlobs.
 *
 * The batch calls answer per blob (google.rpc.Status in each response)
 * and fail the whole call only for problems of the request itself
 * (malformed message, bad instance, batch over the advertised limit,
 * access), which is what REAPI clients expect: Bazel retries or re-uploads
 * individual blobs from the per-blob codes. */
#include "server/reapi/reapi.h"
#include "server/reapi/resource.h"
#include "server/reapi/status.h"

#include <stdio.h>
#include <stdlib.h>

/* FindMissingBlobs may name many digests (a whole input tree); the message
 * size cap bounds it already (~75 bytes per digest), this keeps the
 * allocation obvious. */
#define CAS_MAX_FIND (CD_MAX_MESSAGE / 64)

void cd_cas_find_missing(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r)
{
    PbFindMissingBlobsRequest *in =
        build__bazel__remote__execution__v2__find_missing_blobs_request__unpack(NULL, req->len, req->data);
    if (in == NULL) {
        cd_pb_malformed(r, "FindMissingBlobsRequest");
        return;
    }
    size_t n = in->n_blob_digests;
    struct cd_digest *d = NULL;
    bool *missing = NULL;
    PbDigest **out = NULL;
    if (cd_pb_request_check(in->instance_name, in->digest_function, r) != 0 ||
        cd_svc_authorize(svc, req, in->instance_name, CD_ACCESS_READ, r) != 0)
        goto out;
    if (n > CAS_MAX_FIND) {
        cd_reply_fail(r, CAIRN_E_TOOBIG, "%zu digests in one request (limit %u)", n,
                      (unsigned)CAS_MAX_FIND);
        goto out;
    }
    d = calloc(n ? n : 1, sizeof *d);
    missing = calloc(n ? n : 1, sizeof *missing);
    out = calloc(n ? n : 1, sizeof *out);
    if (d == NULL || missing == NULL || out == NULL) {
        cd_reply_fail(r, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char what[48];
        snprintf(what, sizeof what, "blob_digests[%zu]", i);
        if (cd_pb_digest(in->blob_digests[i], what, &d[i], r) != 0)
            goto out;
    }
    int rc = cd_store_find_missing(svc->store, in->instance_name, d, n, missing);
    if (rc != 0) {
        cd_reply_fail(r, rc, "store: %s", cairn_strerror(rc));
        goto out;
    }
    PbFindMissingBlobsResponse resp = BUILD__BAZEL__REMOTE__EXECUTION__V2__FIND_MISSING_BLOBS_RESPONSE__INIT;
    resp.missing_blob_digests = out;
    for (size_t i = 0; i < n; i++) {
        if (missing[i])
            out[resp.n_missing_blob_digests++] = in->blob_digests[i];
    }
    cd_metrics_add(&svc->metrics->blobs_missing, resp.n_missing_blob_digests);
    cd_metrics_add(&svc->metrics->blobs_found, n - resp.n_missing_blob_digests);
    cd_pb_pack(&resp.base, r);
out:
    free(out);
    free(missing);
    free(d);
    build__bazel__remote__execution__v2__find_missing_blobs_request__free_unpacked(in, NULL);
}

/* Per-blob answers of the batch calls: the status message lives here so
 * the packed response can point at it. */
struct item_status {
    PbStatus st;
    char msg[256];
    char hex[CK_SHA256_HEX_LEN + 1];
    PbDigest digest;
};

static void item_set(struct item_status *s, int rc, const char *msg)
{
    google__rpc__status__init(&s->st);
    s->st.code = (int32_t)cd_status_from_err(rc);
    snprintf(s->msg, sizeof s->msg, "%.250s", msg);
    s->st.message = s->msg;
}

/* What both batch calls check before touching a blob: the request, the
 * caller's access, and that total bytes (sent, or asked for) fit one
 * message. verb and stream word the refusal ("holds"/"Write", "asks
 * for"/"Read"). Returns 0 or the code r was failed with. */
static int cas_batch_check(struct cd_svc *svc, const struct cd_req *req, const char *instance,
                           int digest_function, enum cd_access need, uint64_t total,
                           const char *verb, const char *stream, struct cd_reply *r)
{
    int rc = cd_pb_request_check(instance, digest_function, r);
    if (rc == 0)
        rc = cd_svc_authorize(svc, req, instance, need, r);
    if (rc == 0 && total > CD_MAX_BATCH)
        rc = cd_reply_fail(r, CAIRN_E_TOOBIG,
                           "batch %s %llu bytes, more than max_batch_total_size_bytes %u; use ByteStream %s",
                           verb, (unsigned long long)total, CD_MAX_BATCH, stream);
    return rc;
}

/* BatchUpdateBlobs for one blob, before the store: checks the item; on
 * success sets *d and returns 0, else words its status in s. */
static int cas_update_check(const PbBatchUpdateBlobsRequestItem *rq, struct cd_digest *d,
                            struct item_status *s)
{
    struct cairn_err err;
    int rc = cd_pb_digest_err(rq->digest, d, &err);
    if (rc != 0) {
        item_set(s, rc, err.msg);
        return rc;
    }
    if (rq->compressor != BUILD__BAZEL__REMOTE__EXECUTION__V2__COMPRESSOR__VALUE__IDENTITY) {
        item_set(s, CAIRN_E_INVAL, "compressed uploads are not supported");
        return CAIRN_E_INVAL;
    }
    if ((int64_t)rq->data.len != d->size) {
        snprintf(err.msg, sizeof err.msg, "digest says %lld bytes, data has %zu",
                 (long long)d->size, rq->data.len);
        item_set(s, CAIRN_E_DIGEST, err.msg);
        return CAIRN_E_DIGEST;
    }
    return 0;
}

/* Words the store's answer for one blob in s. */
static void cas_update_status(struct item_status *s, int rc)
{
    item_set(s, rc,
             rc == 0                ? ""
             : rc == CAIRN_E_DIGEST ? "data does not hash to the digest"
             : rc == CAIRN_E_FULL   ? "store is full and eviction cannot make room"
                                    : cairn_strerror(rc));
}

/* Stores the batch's well-formed blobs in one call to the store, so they
 * share a group commit (one sync for the batch), and words every status. */
static int cas_update_all(struct cd_svc *svc, const PbBatchUpdateBlobsRequest *in,
                          struct item_status *st)
{
    size_t n = in->n_requests, k = 0;
    struct cd_digest *d = calloc(n ? n : 1, sizeof *d);
    const void **data = calloc(n ? n : 1, sizeof *data);
    size_t *at = calloc(n ? n : 1, sizeof *at);
    int *rcs = calloc(n ? n : 1, sizeof *rcs);
    int rc = CAIRN_E_NOMEM;
    if (d == NULL || data == NULL || at == NULL || rcs == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (cas_update_check(in->requests[i], &d[k], &st[i]) != 0)
            continue;
        data[k] = in->requests[i]->data.data;
        at[k++] = i;
    }
    if ((rc = cd_store_blob_put_many(svc->store, in->instance_name, k, d, data, rcs)) != 0)
        goto out;
    for (size_t j = 0; j < k; j++) {
        if (rcs[j] == 0)
            cd_metrics_add(&svc->metrics->bytes_in, (uint64_t)d[j].size);
        cas_update_status(&st[at[j]], rcs[j]);
    }
out:
    free(rcs);
    free(at);
    free(data);
    free(d);
    return rc;
}

/* BatchReadBlobs for one blob: reads it into it->data (malloc'd, the
 * caller frees) and words its status in s. */
static void cas_read_one(struct cd_svc *svc, const char *instance, const PbDigest *pd,
                         PbBatchReadBlobsResponseItem *it, struct item_status *s)
{
    struct cd_digest d;
    struct cairn_err err;
    int rc = cd_pb_digest_err(pd, &d, &err);
    if (rc != 0) {
        item_set(s, rc, err.msg);
        return;
    }
    void *data = NULL;
    rc = cd_store_blob_get(svc->store, instance, &d, CD_MAX_BATCH, &data);
    if (rc == 0) {
        it->data.data = data;
        it->data.len = (size_t)d.size;
        cd_metrics_add(&svc->metrics->bytes_out, (uint64_t)d.size);
    }
    if (rc == CAIRN_E_CORRUPT) {
        cd_metrics_add(&svc->metrics->verify_failures, 1);
        cd_corrupt_report(instance ? instance : "", &d, err.msg, sizeof err.msg);
        item_set(s, rc, err.msg);
        return;
    }
    item_set(s, rc, rc == 0 ? "" : rc == CAIRN_E_NOTFOUND ? "blob not found" : cairn_strerror(rc));
}

void cd_cas_batch_update(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r)
{
    PbBatchUpdateBlobsRequest *in =
        build__bazel__remote__execution__v2__batch_update_blobs_request__unpack(NULL, req->len, req->data);
    if (in == NULL) {
        cd_pb_malformed(r, "BatchUpdateBlobsRequest");
        return;
    }
    size_t n = in->n_requests;
    struct item_status *st = NULL;
    PbBatchUpdateBlobsResponseItem *items = NULL, **ptrs = NULL;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += in->requests[i]->data.len;
    if (cas_batch_check(svc, req, in->instance_name, in->digest_function, CD_ACCESS_WRITE, total,
                        "holds", "Write", r) != 0)
        goto out;
    st = calloc(n ? n : 1, sizeof *st);
    items = calloc(n ? n : 1, sizeof *items);
    ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (st == NULL || items == NULL || ptrs == NULL) {
        cd_reply_fail(r, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        build__bazel__remote__execution__v2__batch_update_blobs_response__response__init(&items[i]);
        ptrs[i] = &items[i];
        /* Echo the client's digest, even a malformed one, so it can match
         * answers to requests. */
        items[i].digest = in->requests[i]->digest;
        items[i].status = &st[i].st;
    }
    if (cas_update_all(svc, in, st) != 0) {
        cd_reply_fail(r, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    PbBatchUpdateBlobsResponse resp = BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_UPDATE_BLOBS_RESPONSE__INIT;
    resp.n_responses = n;
    resp.responses = ptrs;
    cd_pb_pack(&resp.base, r);
out:
    free(ptrs);
    free(items);
    free(st);
    build__bazel__remote__execution__v2__batch_update_blobs_request__free_unpacked(in, NULL);
}

void cd_cas_batch_read(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r)
{
    PbBatchReadBlobsRequest *in =
        build__bazel__remote__execution__v2__batch_read_blobs_request__unpack(NULL, req->len, req->data);
    if (in == NULL) {
        cd_pb_malformed(r, "BatchReadBlobsRequest");
        return;
    }
    size_t n = in->n_digests;
    struct item_status *st = NULL;
    PbBatchReadBlobsResponseItem *items = NULL, **ptrs = NULL;
    /* The response must fit one message: refuse up front from the sizes
     * the digests claim (each blob's real size equals its digest size). */
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (in->digests[i] != NULL && in->digests[i]->size_bytes > 0)
            total += (uint64_t)in->digests[i]->size_bytes;
    }
    if (cas_batch_check(svc, req, in->instance_name, in->digest_function, CD_ACCESS_READ, total,
                        "asks for", "Read", r) != 0)
        goto out;
    st = calloc(n ? n : 1, sizeof *st);
    items = calloc(n ? n : 1, sizeof *items);
    ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (st == NULL || items == NULL || ptrs == NULL) {
        cd_reply_fail(r, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        build__bazel__remote__execution__v2__batch_read_blobs_response__response__init(&items[i]);
        ptrs[i] = &items[i];
        items[i].digest = in->digests[i];
        items[i].status = &st[i].st;
        cas_read_one(svc, in->instance_name, in->digests[i], &items[i], &st[i]);
    }
    PbBatchReadBlobsResponse resp = BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_READ_BLOBS_RESPONSE__INIT;
    resp.n_responses = n;
    resp.responses = ptrs;
    cd_pb_pack(&resp.base, r);
    for (size_t i = 0; i < n; i++)
        free(items[i].data.data);
out:
    free(ptrs);
    free(items);
    free(st);
    build__bazel__remote__execution__v2__batch_read_blobs_request__free_unpacked(in, NULL);
}
