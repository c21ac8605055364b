/* Short names for the generated REAPI protobuf-c types, and the glue every
 * service needs: turning wire digests into struct cd_digest and packing a
 * response into a struct cd_reply. Private to server/. */
#ifndef CAIRN_SERVER_REAPI_H
#define CAIRN_SERVER_REAPI_H

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "google/bytestream/bytestream.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "server/reapi/service.h"

typedef Build__Bazel__Remote__Execution__V2__Digest PbDigest;
typedef Build__Bazel__Remote__Execution__V2__ActionResult PbActionResult;
typedef Build__Bazel__Remote__Execution__V2__OutputFile PbOutputFile;
typedef Build__Bazel__Remote__Execution__V2__OutputDirectory PbOutputDirectory;
typedef Build__Bazel__Remote__Execution__V2__GetActionResultRequest PbGetActionResultRequest;
typedef Build__Bazel__Remote__Execution__V2__UpdateActionResultRequest PbUpdateActionResultRequest;
typedef Build__Bazel__Remote__Execution__V2__FindMissingBlobsRequest PbFindMissingBlobsRequest;
typedef Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse PbFindMissingBlobsResponse;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest PbBatchUpdateBlobsRequest;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request PbBatchUpdateBlobsRequestItem;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsResponse PbBatchUpdateBlobsResponse;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsResponse__Response PbBatchUpdateBlobsResponseItem;
typedef Build__Bazel__Remote__Execution__V2__BatchReadBlobsRequest PbBatchReadBlobsRequest;
typedef Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse PbBatchReadBlobsResponse;
typedef Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse__Response PbBatchReadBlobsResponseItem;
typedef Build__Bazel__Remote__Execution__V2__GetCapabilitiesRequest PbGetCapabilitiesRequest;
typedef Build__Bazel__Remote__Execution__V2__ServerCapabilities PbServerCapabilities;
typedef Build__Bazel__Remote__Execution__V2__CacheCapabilities PbCacheCapabilities;
typedef Build__Bazel__Remote__Execution__V2__ActionCacheUpdateCapabilities PbActionCacheUpdateCapabilities;
typedef Build__Bazel__Semver__SemVer PbSemVer;
typedef Google__Rpc__Status PbStatus;
typedef Google__Bytestream__ReadRequest PbReadRequest;
typedef Google__Bytestream__WriteRequest PbWriteRequest;
typedef Google__Bytestream__WriteResponse PbWriteResponse;
typedef Google__Bytestream__QueryWriteStatusRequest PbQueryWriteStatusRequest;
typedef Google__Bytestream__QueryWriteStatusResponse PbQueryWriteStatusResponse;
typedef Grpc__Health__V1__HealthCheckRequest PbHealthCheckRequest;
typedef Grpc__Health__V1__HealthCheckResponse PbHealthCheckResponse;

/* Converts a wire digest (NULL is "missing") into d. On failure fills r
 * with INVALID_ARGUMENT naming what (e.g. "action_digest") and returns the
 * code. */
int cd_pb_digest(const PbDigest *pb, const char *what, struct cd_digest *d,
                 struct cd_reply *r);
/* Same check without a reply, for per-blob statuses: returns 0 or
 * CAIRN_E_INVAL with err filled. */
int cd_pb_digest_err(const PbDigest *pb, struct cd_digest *d, struct cairn_err *err);
/* Fills a wire digest from d; hex must hold 65 bytes and outlive pb. */
void cd_pb_digest_set(PbDigest *pb, const struct cd_digest *d, char *hex);
/* For a blob the store found corrupt (and quarantined): logs it at warn
 * and writes the message the client gets, naming the digest, into msg
 * (cap bytes, truncated). */
void cd_corrupt_report(const char *instance, const struct cd_digest *d, char *msg,
                       size_t cap);
/* Packs m into r->out (malloc'd). Returns 0 or CAIRN_E_NOMEM (r filled). */
int cd_pb_pack(const ProtobufCMessage *m, struct cd_reply *r);
/* Fails r with INVALID_ARGUMENT for a request that did not parse. */
int cd_pb_malformed(struct cd_reply *r, const char *what);
/* Checks instance name and digest function of a request; fills r. */
int cd_pb_request_check(const char *instance, int digest_function, struct cd_reply *r);

#endif
