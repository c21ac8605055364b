/* reapi_probe: a tiny REAPI client for tests. Each subcommand makes one
 * call and exits with the gRPC status code of the call (0 OK, 5
 * NOT_FOUND, ...) or 100 for a usage/local error, so shell tests can
 * assert exact codes; the status message goes to stderr.
 *
 *   reapi_probe [--addr A] [--token T [--token2 T]] [--ca F [--cert F --key F]
 *               [--server-name N]] [--timeout S] CMD ARGS...
 *
 * --token2 sends a second `authorization` entry (servers must refuse the
 * call). Digests are written "hash/size". See the table at the bottom. */
#include "reapi_client.h"

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "cachekey/digest.h"
#include "google/bytestream/bytestream.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include <errno.h>
#include <unistd.h>

#define REAPI "/build.bazel.remote.execution.v2."
#define EXIT_LOCAL 100

typedef Build__Bazel__Remote__Execution__V2__Digest Digest;

static const char *status_names[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
};

static const char *code_name(int code)
{
    return code >= 0 && code <= 16 ? status_names[code] : "?";
}

static int report(const struct rc_status *st)
{
    if (st->code != GRPC_STATUS_OK)
        fprintf(stderr, "%s: %s\n", code_name(st->code), st->msg);
    return (int)st->code;
}

static long long parse_ll(const char *s)
{
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        fprintf(stderr, "not a number: %s\n", s);
        exit(EXIT_LOCAL);
    }
    return v;
}

/* "hash/size" -> Digest (hash points into s, which is modified). */
static void parse_digest(char *s, Digest *d)
{
    build__bazel__remote__execution__v2__digest__init(d);
    char *slash = strrchr(s, '/');
    if (slash == NULL) {
        fprintf(stderr, "digest must be hash/size: %s\n", s);
        exit(EXIT_LOCAL);
    }
    *slash = '\0';
    d->hash = s;
    d->size_bytes = parse_ll(slash + 1);
}

static char *file_digest(const char *path, uint8_t **data, size_t *len)
{
    *data = (uint8_t *)rc_read_file(path, len);
    if (*data == NULL) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(EXIT_LOCAL);
    }
    uint8_t h[CK_SHA256_LEN];
    ck_sha256(*data, *len, h);
    char *hex = malloc(CK_SHA256_HEX_LEN + 1);
    ck_hex_encode(h, hex);
    return hex;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len + 1);
    protobuf_c_message_pack(m, buf);
    return buf;
}

static int call(struct rc_conn *c, const char *method, const ProtobufCMessage *m,
                uint8_t **resp, size_t *rlen)
{
    size_t len;
    uint8_t *req = pack(m, &len);
    struct rc_status st;
    rc_unary(c, method, req, len, resp, rlen, &st);
    free(req);
    return report(&st);
}

/* --- subcommands --- */

/* One Check; prints "status=N" (1 SERVING, 2 NOT_SERVING) on OK. */
static int health_once(struct rc_conn *c, const char *service)
{
    Grpc__Health__V1__HealthCheckRequest rq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    rq.service = (char *)service;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = call(c, "/grpc.health.v1.Health/Check", &rq.base, &resp, &rlen);
    if (rc == 0) {
        Grpc__Health__V1__HealthCheckResponse *r =
            grpc__health__v1__health_check_response__unpack(NULL, rlen, resp);
        printf("status=%d\n", r ? (int)r->status : -1);
        fflush(stdout);
        grpc__health__v1__health_check_response__free_unpacked(r, NULL);
    }
    free(resp);
    return rc;
}

static int cmd_health(struct rc_conn *c, int argc, char **argv)
{
    return health_once(c, argc > 0 ? argv[0] : "");
}

/* health-after FILE [SERVICE]: a Check, then once FILE exists (polled for
 * up to --timeout) a second Check on the same connection, as a load
 * balancer that keeps its connection asks. Exits with the second's code. */
static int cmd_health_after(struct rc_conn *c, int argc, char **argv)
{
    if (argc < 1)
        return EXIT_LOCAL;
    const char *service = argc > 1 ? argv[1] : "";
    int rc = health_once(c, service);
    if (rc != 0)
        return rc;
    for (double waited = 0; access(argv[0], F_OK) != 0; waited += 0.05) {
        if (waited > c->timeout_s) {
            fprintf(stderr, "%s did not appear\n", argv[0]);
            return EXIT_LOCAL;
        }
        usleep(50 * 1000);
    }
    return health_once(c, service);
}

static int cmd_caps(struct rc_conn *c, int argc, char **argv)
{
    Build__Bazel__Remote__Execution__V2__GetCapabilitiesRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_CAPABILITIES_REQUEST__INIT;
    rq.instance_name = argc > 0 ? argv[0] : "";
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = call(c, REAPI "Capabilities/GetCapabilities", &rq.base, &resp, &rlen);
    if (rc == 0) {
        Build__Bazel__Remote__Execution__V2__ServerCapabilities *r =
            build__bazel__remote__execution__v2__server_capabilities__unpack(NULL, rlen, resp);
        const Build__Bazel__Remote__Execution__V2__CacheCapabilities *cc = r->cache_capabilities;
        printf("digest_functions=");
        for (size_t i = 0; cc && i < cc->n_digest_functions; i++)
            printf("%s%d", i ? "," : "", (int)cc->digest_functions[i]);
        printf(" update_enabled=%d max_batch=%lld symlink_strategy=%d low=%d.%d high=%d.%d\n",
               cc && cc->action_cache_update_capabilities
                   ? (int)cc->action_cache_update_capabilities->update_enabled : -1,
               cc ? (long long)cc->max_batch_total_size_bytes : -1LL,
               cc ? (int)cc->symlink_absolute_path_strategy : -1,
               r->low_api_version ? r->low_api_version->major : -1,
               r->low_api_version ? r->low_api_version->minor : -1,
               r->high_api_version ? r->high_api_version->major : -1,
               r->high_api_version ? r->high_api_version->minor : -1);
        build__bazel__remote__execution__v2__server_capabilities__free_unpacked(r, NULL);
    }
    free(resp);
    return rc;
}

/* fmb INSTANCE DIGEST... : prints the missing digests. */
static int cmd_fmb(struct rc_conn *c, int argc, char **argv)
{
    if (argc < 1)
        return EXIT_LOCAL;
    Build__Bazel__Remote__Execution__V2__FindMissingBlobsRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__FIND_MISSING_BLOBS_REQUEST__INIT;
    rq.instance_name = argv[0];
    rq.n_blob_digests = (size_t)(argc - 1);
    Digest *ds = calloc((size_t)argc, sizeof *ds);
    Digest **dp = calloc((size_t)argc, sizeof *dp);
    for (int i = 1; i < argc; i++) {
        parse_digest(argv[i], &ds[i - 1]);
        dp[i - 1] = &ds[i - 1];
    }
    rq.blob_digests = dp;
    const char *fn = getenv("PROBE_DIGEST_FUNCTION");
    if (fn)
        rq.digest_function = (int)parse_ll(fn);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = call(c, REAPI "ContentAddressableStorage/FindMissingBlobs", &rq.base, &resp, &rlen);
    if (rc == 0) {
        Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse *r =
            build__bazel__remote__execution__v2__find_missing_blobs_response__unpack(NULL, rlen, resp);
        for (size_t i = 0; i < r->n_missing_blob_digests; i++)
            printf("%s/%lld\n", r->missing_blob_digests[i]->hash,
                   (long long)r->missing_blob_digests[i]->size_bytes);
        build__bazel__remote__execution__v2__find_missing_blobs_response__free_unpacked(r, NULL);
    }
    free(resp);
    free(dp);
    free(ds);
    return rc;
}

/* put INSTANCE FILE [DIGEST] : BatchUpdateBlobs of one file; DIGEST
 * overrides the computed one (for mismatch tests). Prints the digest.
 * Exit code: the call's status, else the blob's status. */
static int cmd_put(struct rc_conn *c, int argc, char **argv)
{
    if (argc < 2)
        return EXIT_LOCAL;
    uint8_t *data;
    size_t len;
    char *hex = file_digest(argv[1], &data, &len);
    Digest d;
    build__bazel__remote__execution__v2__digest__init(&d);
    d.hash = hex;
    d.size_bytes = (int64_t)len;
    if (argc > 2)
        parse_digest(argv[2], &d);
    Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request item =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_UPDATE_BLOBS_REQUEST__REQUEST__INIT;
    item.digest = &d;
    item.data.data = data;
    item.data.len = len;
    Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request *items[] = {&item};
    Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_UPDATE_BLOBS_REQUEST__INIT;
    rq.instance_name = argv[0];
    rq.n_requests = 1;
    rq.requests = items;
    const char *fn = getenv("PROBE_DIGEST_FUNCTION");
    if (fn)
        rq.digest_function = (int)parse_ll(fn);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = call(c, REAPI "ContentAddressableStorage/BatchUpdateBlobs", &rq.base, &resp, &rlen);
    if (rc == 0) {
        Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsResponse *r =
            build__bazel__remote__execution__v2__batch_update_blobs_response__unpack(NULL, rlen, resp);
        int code = r->n_responses == 1 && r->responses[0]->status ? r->responses[0]->status->code : 0;
        if (r->n_responses != 1) {
            fprintf(stderr, "expected 1 response, got %zu\n", r->n_responses);
            code = EXIT_LOCAL;
        } else if (code != 0) {
            fprintf(stderr, "%s: %s\n", code_name(code), r->responses[0]->status->message);
        }
        rc = code;
        build__bazel__remote__execution__v2__batch_update_blobs_response__free_unpacked(r, NULL);
    }
    if (rc == 0)
        printf("%s/%lld\n", d.hash, (long long)d.size_bytes);
    free(resp);
    free(hex);
    free(data);
    return rc;
}

/* put-many INSTANCE FILE... : one BatchUpdateBlobs of every FILE. Exit
 * code: the call's status, else the first blob's nonzero status. */
static int cmd_put_many(struct rc_conn *c, int argc, char **argv)
{
    if (argc < 2)
        return EXIT_LOCAL;
    size_t n = (size_t)argc - 1;
    typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request Item;
    Digest *ds = calloc(n, sizeof *ds);
    Item *items = calloc(n, sizeof *items);
    Item **ip = calloc(n, sizeof *ip);
    char **hexes = calloc(n, sizeof *hexes);
    if (ds == NULL || items == NULL || ip == NULL || hexes == NULL)
        return EXIT_LOCAL;
    for (size_t i = 0; i < n; i++) {
        uint8_t *data;
        size_t len;
        hexes[i] = file_digest(argv[i + 1], &data, &len);
        build__bazel__remote__execution__v2__digest__init(&ds[i]);
        ds[i].hash = hexes[i];
        ds[i].size_bytes = (int64_t)len;
        build__bazel__remote__execution__v2__batch_update_blobs_request__request__init(&items[i]);
        items[i].digest = &ds[i];
        items[i].data.data = data;
        items[i].data.len = len;
        ip[i] = &items[i];
    }
    Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_UPDATE_BLOBS_REQUEST__INIT;
    rq.instance_name = argv[0];
    rq.n_requests = n;
    rq.requests = ip;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = call(c, REAPI "ContentAddressableStorage/BatchUpdateBlobs", &rq.base, &resp, &rlen);
    if (rc == 0) {
        Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsResponse *r =
            build__bazel__remote__execution__v2__batch_update_blobs_response__unpack(NULL, rlen, resp);
        if (r == NULL || r->n_responses != n) {
            fprintf(stderr, "expected %zu responses\n", n);
            rc = EXIT_LOCAL;
        }
        for (size_t i = 0; rc == 0 && r != NULL && i < r->n_responses; i++) {
            if (r->responses[i]->status && r->responses[i]->status->code != 0) {
                rc = r->responses[i]->status->code;
                fprintf(stderr, "%s: %s\n", code_name(rc), r->responses[i]->status->message);
            }
        }
        build__bazel__remote__execution__v2__batch_update_blobs_response__free_unpacked(r, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        free(hexes[i]);
        free(items[i].data.data);
    }
    free(resp);
    free(hexes);
    free(items);
    free(ip);
    free(ds);
    return rc;
}

/* get INSTANCE DIGEST : BatchReadBlobs; the data goes to stdout. */
static int cmd_get(struct rc_conn *c, int argc, char **argv)
{
    if (argc < 2)
        return EXIT_LOCAL;
    size_t n = (size_t)argc - 1;
    Digest *ds = calloc(n, sizeof *ds);
    Digest **dp = calloc(n, sizeof *dp);
    if (ds == NULL || dp == NULL)
        return EXIT_LOCAL;
    for (size_t i = 0; i < n; i++) {
        parse_digest(argv[i + 1], &ds[i]);
        dp[i] = &ds[i];
    }
    Build__Bazel__Remote__Execution__V2__BatchReadBlobsRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_READ_BLOBS_REQUEST__INIT;
    rq.instance_name = argv[0];
    rq.n_digests = n;
    rq.digests = dp;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = call(c, REAPI "ContentAddressableStorage/BatchReadBlobs", &rq.base, &resp, &rlen);
    if (rc == 0) {
        Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse *r =
            build__bazel__remote__execution__v2__batch_read_blobs_response__unpack(NULL, rlen, resp);
        if (r == NULL || r->n_responses != n) {
            rc = EXIT_LOCAL;
        } else if (n == 1) {
            const Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse__Response *it = r->responses[0];
            rc = it->status ? it->status->code : 0;
            if (rc != 0)
                fprintf(stderr, "%s: %s\n", code_name(rc), it->status->message);
            else
                fwrite(it->data.data, 1, it->data.len, stdout);
        } else {
            /* Several blobs: one line each, "hash/size STATUS bytes"; the
             * call itself succeeded. */
            for (size_t i = 0; i < n; i++) {
                const Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse__Response *it = r->responses[i];
                int code = it->status ? it->status->code : 0;
                printf("%s/%lld %s %zu\n", it->digest ? it->digest->hash : "?",
                       it->digest ? (long long)it->digest->size_bytes : -1LL, code_name(code),
                       it->data.len);
                if (code != 0)
                    fprintf(stderr, "%s: %s\n", code_name(code), it->status->message);
            }
        }
        build__bazel__remote__execution__v2__batch_read_blobs_response__free_unpacked(r, NULL);
    }
    free(resp);
    free(dp);
    free(ds);
    return rc;
}

/* ac-put INSTANCE ACTION_DIGEST [file=PATH:DIGEST | stdout=DIGEST |
 * tree=PATH:DIGEST | prop=PATH:NAME=VALUE]... (a prop is a node property
 * of the file=PATH given before it; a file's props come together, right
 * after it) */
static int cmd_ac_put(struct rc_conn *c, int argc, char **argv)
{
    if (argc < 2)
        return EXIT_LOCAL;
    Digest action;
    parse_digest(argv[1], &action);
    size_t n = (size_t)argc;
    Build__Bazel__Remote__Execution__V2__OutputFile *files = calloc(n, sizeof *files);
    Build__Bazel__Remote__Execution__V2__OutputFile **fp = calloc(n, sizeof *fp);
    Build__Bazel__Remote__Execution__V2__OutputDirectory *dirs = calloc(n, sizeof *dirs);
    Build__Bazel__Remote__Execution__V2__OutputDirectory **dp = calloc(n, sizeof *dp);
    Digest *ds = calloc(n, sizeof *ds);
    Build__Bazel__Remote__Execution__V2__NodeProperties *nps = calloc(n, sizeof *nps);
    Build__Bazel__Remote__Execution__V2__NodeProperty *props = calloc(n, sizeof *props);
    Build__Bazel__Remote__Execution__V2__NodeProperty **pp = calloc(n, sizeof *pp);
    size_t npp = 0;
    Build__Bazel__Remote__Execution__V2__ActionResult ar = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
    ar.output_files = fp;
    ar.output_directories = dp;
    for (int i = 2; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq == NULL)
            return EXIT_LOCAL;
        *eq = '\0';
        char *val = eq + 1;
        if (strcmp(argv[i], "stdout") == 0) {
            parse_digest(val, &ds[i]);
            ar.stdout_digest = &ds[i];
            continue;
        }
        char *colon = strchr(val, ':');
        if (colon == NULL)
            return EXIT_LOCAL;
        *colon = '\0';
        if (strcmp(argv[i], "prop") == 0) {
            /* Properties of one file are consecutive in pp. */
            char *peq = strchr(colon + 1, '=');
            Build__Bazel__Remote__Execution__V2__OutputFile *of = NULL;
            for (size_t k = 0; k < ar.n_output_files; k++)
                if (strcmp(fp[k]->path, val) == 0)
                    of = fp[k];
            if (peq == NULL || of == NULL)
                return EXIT_LOCAL;
            *peq = '\0';
            build__bazel__remote__execution__v2__node_property__init(&props[i]);
            props[i].name = colon + 1;
            props[i].value = peq + 1;
            if (of->node_properties == NULL) {
                build__bazel__remote__execution__v2__node_properties__init(&nps[i]);
                nps[i].properties = &pp[npp];
                of->node_properties = &nps[i];
            }
            pp[npp++] = &props[i];
            of->node_properties->n_properties++;
            continue;
        }
        parse_digest(colon + 1, &ds[i]);
        if (strcmp(argv[i], "file") == 0) {
            build__bazel__remote__execution__v2__output_file__init(&files[i]);
            files[i].path = val;
            files[i].digest = &ds[i];
            fp[ar.n_output_files++] = &files[i];
        } else {
            build__bazel__remote__execution__v2__output_directory__init(&dirs[i]);
            dirs[i].path = val;
            dirs[i].tree_digest = &ds[i];
            dp[ar.n_output_directories++] = &dirs[i];
        }
    }
    Build__Bazel__Remote__Execution__V2__UpdateActionResultRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__UPDATE_ACTION_RESULT_REQUEST__INIT;
    rq.instance_name = argv[0];
    rq.action_digest = &action;
    rq.action_result = &ar;
    int rc = call(c, REAPI "ActionCache/UpdateActionResult", &rq.base, NULL, NULL);
    free(files);
    free(fp);
    free(dirs);
    free(dp);
    free(ds);
    free(nps);
    free(props);
    free(pp);
    return rc;
}

/* ac-get INSTANCE ACTION_DIGEST : prints "file PATH DIGEST" lines, each
 * followed by "prop PATH NAME=VALUE" lines for its node properties. */
static int cmd_ac_get(struct rc_conn *c, int argc, char **argv)
{
    if (argc < 2)
        return EXIT_LOCAL;
    Digest action;
    parse_digest(argv[1], &action);
    Build__Bazel__Remote__Execution__V2__GetActionResultRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_ACTION_RESULT_REQUEST__INIT;
    rq.instance_name = argv[0];
    rq.action_digest = &action;
    const char *fn = getenv("PROBE_DIGEST_FUNCTION");
    if (fn)
        rq.digest_function = (int)parse_ll(fn);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = call(c, REAPI "ActionCache/GetActionResult", &rq.base, &resp, &rlen);
    if (rc == 0) {
        Build__Bazel__Remote__Execution__V2__ActionResult *r =
            build__bazel__remote__execution__v2__action_result__unpack(NULL, rlen, resp);
        for (size_t i = 0; i < r->n_output_files; i++) {
            const Build__Bazel__Remote__Execution__V2__OutputFile *f = r->output_files[i];
            printf("file %s %s/%lld\n", f->path, f->digest->hash, (long long)f->digest->size_bytes);
            for (size_t k = 0; f->node_properties && k < f->node_properties->n_properties; k++)
                printf("prop %s %s=%s\n", f->path, f->node_properties->properties[k]->name,
                       f->node_properties->properties[k]->value);
        }
        printf("exit_code %d\n", r->exit_code);
        build__bazel__remote__execution__v2__action_result__free_unpacked(r, NULL);
    }
    free(resp);
    return rc;
}

/* read RESOURCE [OFFSET [LIMIT]] : ByteStream Read to stdout; prints
 * "messages=N max_message=M" on stderr. */
static int cmd_read(struct rc_conn *c, int argc, char **argv)
{
    if (argc < 1)
        return EXIT_LOCAL;
    Google__Bytestream__ReadRequest rq = GOOGLE__BYTESTREAM__READ_REQUEST__INIT;
    rq.resource_name = argv[0];
    rq.read_offset = argc > 1 ? parse_ll(argv[1]) : 0;
    rq.read_limit = argc > 2 ? parse_ll(argv[2]) : 0;
    size_t len;
    uint8_t *req = pack(&rq.base, &len);
    grpc_call *call = grpc_channel_create_call(c->ch, NULL, 0, c->cq,
                                               grpc_slice_from_static_string("/google.bytestream.ByteStream/Read"),
                                               NULL, rc_deadline(c), NULL);
    grpc_metadata_array init_md, trail_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    grpc_byte_buffer *send = rc_buffer(req, len), *recv = NULL;
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->n_md;
    ops[0].data.send_initial_metadata.metadata = c->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    grpc_call_start_batch(call, ops, 4, (void *)1, NULL);
    rc_wait(c, (void *)1);
    size_t msgs = 0, maxmsg = 0;
    for (;;) {
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &recv;
        grpc_call_start_batch(call, &op, 1, (void *)2, NULL);
        if (!rc_wait(c, (void *)2) || recv == NULL)
            break;
        size_t rlen;
        uint8_t *m = rc_flatten(recv, &rlen);
        grpc_byte_buffer_destroy(recv);
        recv = NULL;
        Google__Bytestream__ReadResponse *r = google__bytestream__read_response__unpack(NULL, rlen, m);
        if (r) {
            fwrite(r->data.data, 1, r->data.len, stdout);
            msgs++;
            if (r->data.len > maxmsg)
                maxmsg = r->data.len;
        }
        google__bytestream__read_response__free_unpacked(r, NULL);
        free(m);
    }
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &trail_md;
    op.data.recv_status_on_client.status = &code;
    op.data.recv_status_on_client.status_details = &details;
    grpc_call_start_batch(call, &op, 1, (void *)3, NULL);
    rc_wait(c, (void *)3);
    struct rc_status st;
    rc_status_set(&st, code, details);
    fprintf(stderr, "messages=%zu max_message=%zu\n", msgs, maxmsg);
    grpc_slice_unref(details);
    grpc_byte_buffer_destroy(send);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_call_unref(call);
    free(req);
    return report(&st);
}

/* The options of write (see cmd_write). */
struct write_opts {
    long long from, count, offset, chunk, finish, abort_call, hold, silent;
};

/* Parses write's KEY=N words (argv[2..]); -1 on an unknown or malformed
 * one. */
static int write_opts_parse(int argc, char **argv, struct write_opts *o)
{
    *o = (struct write_opts){.count = -1, .offset = -1, .chunk = 64 * 1024, .finish = 1};
    for (int i = 2; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq == NULL)
            return -1;
        *eq = '\0';
        long long v = parse_ll(eq + 1);
        if (!strcmp(argv[i], "from")) o->from = v;
        else if (!strcmp(argv[i], "count")) o->count = v;
        else if (!strcmp(argv[i], "offset")) o->offset = v;
        else if (!strcmp(argv[i], "chunk")) o->chunk = v;
        else if (!strcmp(argv[i], "finish")) o->finish = v;
        else if (!strcmp(argv[i], "abort")) o->abort_call = v;
        else if (!strcmp(argv[i], "hold")) o->hold = v;
        else if (!strcmp(argv[i], "silent")) o->silent = v;
        else return -1;
    }
    return 0;
}

/* Sends data[from, from+count) in messages of chunk bytes (nothing when
 * silent), the resource name on the first; stops early when the server
 * ends the call. */
static void write_send(struct rc_conn *c, grpc_call *call, const char *resource,
                       const uint8_t *data, const struct write_opts *o)
{
    long long sent = 0;
    bool first = true, ok = !o->silent;
    while (ok) {
        long long n = o->count - sent < o->chunk ? o->count - sent : o->chunk;
        Google__Bytestream__WriteRequest wr = GOOGLE__BYTESTREAM__WRITE_REQUEST__INIT;
        if (first)
            wr.resource_name = (char *)resource;
        first = false;
        wr.write_offset = o->offset + sent;
        wr.data.data = (uint8_t *)data + o->from + sent;
        wr.data.len = (size_t)n;
        sent += n;
        wr.finish_write = o->finish && sent == o->count;
        size_t len;
        uint8_t *msg = pack(&wr.base, &len);
        grpc_byte_buffer *bb = rc_buffer(msg, len);
        free(msg);
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = bb;
        grpc_call_start_batch(call, &op, 1, (void *)2, NULL);
        ok = rc_wait(c, (void *)2) && sent < o->count;
        grpc_byte_buffer_destroy(bb);
    }
}

/* Keeps the stream open without sending and without a half-close for
 * hold seconds (default 1), then half-closes and collects the status
 * (tag 9, posted by the caller). The initial metadata is asked for now:
 * gRPC holds back the status of a call whose initial metadata nobody
 * asked for, so this is what lets a server's early end show at once. */
static void write_hold(struct rc_conn *c, grpc_call *call, long long hold,
                       grpc_metadata_array *init_md)
{
    grpc_op ops[1];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = init_md;
    grpc_call_start_batch(call, ops, 1, (void *)5, NULL);
    gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                      gpr_time_from_seconds(hold > 0 ? hold : 1, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_pluck(c->cq, (void *)9, until, NULL);
    if (ev.type == GRPC_OP_COMPLETE) {
        rc_wait(c, (void *)5);
        return;
    }
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    grpc_call_start_batch(call, ops, 1, (void *)4, NULL);
    rc_wait(c, (void *)4);
    rc_wait(c, (void *)9);
    rc_wait(c, (void *)5);
}

/* Half-closes, takes the response into *recv and waits for the status
 * (tag 9, posted by the caller). */
static void write_close(struct rc_conn *c, grpc_call *call, grpc_metadata_array *init_md,
                        grpc_byte_buffer **recv)
{
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = init_md;
    ops[2].op = GRPC_OP_RECV_MESSAGE;
    ops[2].data.recv_message.recv_message = recv;
    grpc_call_start_batch(call, ops, 3, (void *)3, NULL);
    rc_wait(c, (void *)3);
    rc_wait(c, (void *)9);
}

/* Prints "committed_size=N" from a WriteResponse (-1 when it does not
 * parse). */
static void write_committed_print(grpc_byte_buffer *recv)
{
    size_t rlen;
    uint8_t *m = rc_flatten(recv, &rlen);
    Google__Bytestream__WriteResponse *r = google__bytestream__write_response__unpack(NULL, rlen, m);
    printf("committed_size=%lld\n", r ? (long long)r->committed_size : -1LL);
    google__bytestream__write_response__free_unpacked(r, NULL);
    free(m);
}

/* write RESOURCE FILE [offset=N] [from=N] [count=N] [chunk=N]
 * [finish=0|1] [abort=1] [hold=S] [silent=1] [raw=HEXSTRING]
 * Sends FILE[from, from+count) starting at write_offset=offset (default:
 * from), in messages of chunk bytes; finish_write on the last unless
 * finish=0. abort=1 cancels the call after sending (a client that goes
 * away); hold=S keeps the stream open S seconds before the half-close,
 * silent=1 sends nothing at all (see write_hold). Prints
 * "committed_size=N". */
static int cmd_write(struct rc_conn *c, int argc, char **argv)
{
    if (argc < 2)
        return EXIT_LOCAL;
    size_t flen;
    uint8_t *data = (uint8_t *)rc_read_file(argv[1], &flen);
    if (data == NULL)
        return EXIT_LOCAL;
    struct write_opts o;
    if (write_opts_parse(argc, argv, &o) != 0) {
        free(data);
        return EXIT_LOCAL;
    }
    if (o.count < 0 || o.from + o.count > (long long)flen)
        o.count = (long long)flen - o.from;
    if (o.offset < 0)
        o.offset = o.from;
    grpc_call *call = grpc_channel_create_call(c->ch, NULL, 0, c->cq,
                                               grpc_slice_from_static_string("/google.bytestream.ByteStream/Write"),
                                               NULL, rc_deadline(c), NULL);
    grpc_metadata_array init_md, trail_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[1];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->n_md;
    ops[0].data.send_initial_metadata.metadata = c->md;
    grpc_call_start_batch(call, ops, 1, (void *)1, NULL);
    rc_wait(c, (void *)1);
    /* The status batch is posted up front so an early server error ends
     * the sending loop. */
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &trail_md;
    ops[0].data.recv_status_on_client.status = &code;
    ops[0].data.recv_status_on_client.status_details = &details;
    grpc_call_start_batch(call, ops, 1, (void *)9, NULL);
    write_send(c, call, argv[0], data, &o);
    if (o.abort_call) {
        /* Let the server take in what was sent, then vanish. */
        usleep(300 * 1000);
        grpc_call_cancel(call, NULL);
    }
    grpc_byte_buffer *recv = NULL;
    if (o.hold || o.silent)
        write_hold(c, call, o.hold, &init_md);
    else
        write_close(c, call, &init_md, &recv);
    struct rc_status st;
    rc_status_set(&st, code, details);
    if (code == GRPC_STATUS_OK && recv != NULL)
        write_committed_print(recv);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_call_unref(call);
    free(data);
    return report(&st);
}

static int cmd_qws(struct rc_conn *c, int argc, char **argv)
{
    if (argc < 1)
        return EXIT_LOCAL;
    Google__Bytestream__QueryWriteStatusRequest rq = GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_REQUEST__INIT;
    rq.resource_name = argv[0];
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = call(c, "/google.bytestream.ByteStream/QueryWriteStatus", &rq.base, &resp, &rlen);
    if (rc == 0) {
        Google__Bytestream__QueryWriteStatusResponse *r =
            google__bytestream__query_write_status_response__unpack(NULL, rlen, resp);
        printf("committed_size=%lld complete=%d\n", (long long)r->committed_size, (int)r->complete);
        google__bytestream__query_write_status_response__free_unpacked(r, NULL);
    }
    free(resp);
    return rc;
}

/* raw METHOD FILE : sends FILE's bytes as the request of unary METHOD. */
static int cmd_raw(struct rc_conn *c, int argc, char **argv)
{
    if (argc < 2)
        return EXIT_LOCAL;
    size_t len;
    char *data = rc_read_file(argv[1], &len);
    if (data == NULL)
        return EXIT_LOCAL;
    struct rc_status st;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    rc_unary(c, argv[0], data, len, &resp, &rlen, &st);
    if (st.code == GRPC_STATUS_OK)
        printf("response_bytes=%zu\n", rlen);
    free(resp);
    free(data);
    return report(&st);
}

static const struct {
    const char *name;
    int (*fn)(struct rc_conn *c, int argc, char **argv);
    const char *help;
} commands[] = {
    {"health", cmd_health, "[SERVICE]"},
    {"health-after", cmd_health_after, "FILE [SERVICE] (a Check, then another once FILE exists)"},
    {"caps", cmd_caps, "[INSTANCE]"},
    {"fmb", cmd_fmb, "INSTANCE DIGEST..."},
    {"put", cmd_put, "INSTANCE FILE [DIGEST]"},
    {"put-many", cmd_put_many, "INSTANCE FILE... (one BatchUpdateBlobs)"},
    {"get", cmd_get, "INSTANCE DIGEST... (several: one 'DIGEST STATUS BYTES' line each)"},
    {"ac-put", cmd_ac_put, "INSTANCE ACTION [file=PATH:DIGEST|prop=PATH:NAME=VALUE|tree=PATH:DIGEST|stdout=DIGEST]..."},
    {"ac-get", cmd_ac_get, "INSTANCE ACTION"},
    {"read", cmd_read, "RESOURCE [OFFSET [LIMIT]]"},
    {"write", cmd_write, "RESOURCE FILE [offset=N from=N count=N chunk=N finish=0 abort=1 hold=S silent=1]"},
    {"qws", cmd_qws, "RESOURCE"},
    {"raw", cmd_raw, "METHOD FILE"},
};

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:8980", *token = NULL, *ca = NULL, *cert = NULL, *key = NULL,
               *server_name = NULL, *token2 = NULL;
    double timeout = 60;
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (!strcmp(argv[i], "--addr")) addr = argv[i + 1];
        else if (!strcmp(argv[i], "--token")) token = argv[i + 1];
        else if (!strcmp(argv[i], "--token2")) token2 = argv[i + 1];
        else if (!strcmp(argv[i], "--ca")) ca = argv[i + 1];
        else if (!strcmp(argv[i], "--cert")) cert = argv[i + 1];
        else if (!strcmp(argv[i], "--key")) key = argv[i + 1];
        else if (!strcmp(argv[i], "--server-name")) server_name = argv[i + 1];
        else if (!strcmp(argv[i], "--timeout")) timeout = (double)parse_ll(argv[i + 1]);
        else break;
    }
    size_t k = 0;
    while (i < argc && k < sizeof commands / sizeof *commands && strcmp(commands[k].name, argv[i]) != 0)
        k++;
    if (i >= argc || k == sizeof commands / sizeof *commands) {
        fprintf(stderr, "usage: reapi_probe [--addr A] [--token T] [--ca F [--cert F --key F]] CMD\n");
        for (size_t j = 0; j < sizeof commands / sizeof *commands; j++)
            fprintf(stderr, "  %s %s\n", commands[j].name, commands[j].help);
        return EXIT_LOCAL;
    }
    grpc_init();
    struct rc_conn c;
    if (rc_connect(&c, addr, ca, cert, key, token, server_name) != 0) {
        fprintf(stderr, "cannot set up the connection (TLS files?)\n");
        grpc_shutdown();
        return EXIT_LOCAL;
    }
    c.timeout_s = timeout;
    if (token2 != NULL) {
        char v[1100];
        snprintf(v, sizeof v, "Bearer %s", token2);
        c.md[c.n_md].key = grpc_slice_from_static_string("authorization");
        c.md[c.n_md++].value = grpc_slice_from_copied_string(v);
    }
    int rc = commands[k].fn(&c, argc - i - 1, argv + i + 1);
    rc_close(&c);
    grpc_shutdown();
    return rc;
}
