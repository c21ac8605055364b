/* Capabilities/GetCapabilities: what a REAPI client must know before it
 * uses the cache. Bazel refuses a cache that does not list SHA256 or whose
 * API range does not include 2.0, and batches uploads up to
 * max_batch_total_size_bytes, so that must stay below the gRPC message
 * limit (CD_MAX_BATCH < CD_MAX_MESSAGE). */
#include "server/reapi/reapi.h"

#include <stdlib.h>

void cd_capabilities_get(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r)
{
    PbGetCapabilitiesRequest *in =
        build__bazel__remote__execution__v2__get_capabilities_request__unpack(NULL, req->len, req->data);
    if (in == NULL) {
        cd_pb_malformed(r, "GetCapabilitiesRequest");
        return;
    }
    if (cd_pb_request_check(in->instance_name, 0, r) != 0 ||
        cd_svc_authorize(svc, req, in->instance_name, CD_ACCESS_READ, r) != 0)
        goto out;

    Build__Bazel__Remote__Execution__V2__DigestFunction__Value fns[] = {
        BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST_FUNCTION__VALUE__SHA256,
    };
    /* update_enabled tells clients they may call UpdateActionResult; with
     * tokens, a read-only token gets false so Bazel does not even try. */
    PbActionCacheUpdateCapabilities upd = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_CACHE_UPDATE_CAPABILITIES__INIT;
    upd.update_enabled = cd_auth_check(svc->auth, req->authorization, in->instance_name,
                                       CD_ACCESS_WRITE) == 0;
    PbCacheCapabilities cache = BUILD__BAZEL__REMOTE__EXECUTION__V2__CACHE_CAPABILITIES__INIT;
    cache.n_digest_functions = 1;
    cache.digest_functions = fns;
    cache.action_cache_update_capabilities = &upd;
    cache.max_batch_total_size_bytes = CD_MAX_BATCH;
    /* Bazel uploads output symlinks with absolute targets only when the
     * server allows them; cairnd stores targets verbatim, so it does. */
    cache.symlink_absolute_path_strategy =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__SYMLINK_ABSOLUTE_PATH_STRATEGY__VALUE__ALLOWED;
    PbSemVer low = BUILD__BAZEL__SEMVER__SEM_VER__INIT;
    low.major = 2;
    PbSemVer high = BUILD__BAZEL__SEMVER__SEM_VER__INIT;
    high.major = 2;
    high.minor = 3;
    PbServerCapabilities caps = BUILD__BAZEL__REMOTE__EXECUTION__V2__SERVER_CAPABILITIES__INIT;
    caps.cache_capabilities = &cache;
    caps.low_api_version = &low;
    caps.high_api_version = &high;
    cd_pb_pack(&caps.base, r);
out:
    build__bazel__remote__execution__v2__get_capabilities_request__free_unpacked(in, NULL);
}
