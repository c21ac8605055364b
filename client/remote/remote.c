#include "client/remote/remote.h"

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "cairn/claim/v1/claim.pb-c.h"
#include "google/bytestream/bytestream.pb-c.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define REAPI "/build.bazel.remote.execution.v2."
/* Replies we accept: an ActionResult or a capabilities message is small;
 * a ReadResponse carries at most what the server chose to frame (cairnd:
 * 1 MiB). 16 MiB leaves room for other servers' larger frames. */
#define REMOTE_MAX_RECV (16 << 20)
/* ByteStream Write messages: well under the usual 4 MiB gRPC limit. */
#define REMOTE_WRITE_CHUNK (1 << 20)
#define REMOTE_MAX_CA (1 << 20)
#define REMOTE_READ_ATTEMPTS 4
/* The slowest blob stream kept when the caller sets none (bytes/s). */
#define REMOTE_MIN_RATE ((int64_t)256 << 10)
/* The message size the rate windows allow for (cairnd's ReadResponse). */
#define REMOTE_RATE_FRAME ((int64_t)1 << 20)

typedef Build__Bazel__Remote__Execution__V2__Digest Digest;

struct cairn_remote {
    grpc_channel *ch;
    char *auth; /* "Bearer <token>", or NULL */
    int64_t timeout_ms;
    int64_t min_rate;  /* bytes/s over each window of a stream */
    int64_t window_ms; /* see rate_start */
    char target[256];
};

/* ---- status translation: the only place grpc_status_code is read ----- */

static const struct {
    grpc_status_code grpc;
    int code;
    const char *name;
} status_map[] = {
    {GRPC_STATUS_CANCELLED, CAIRN_E_RPC, "CANCELLED"},
    {GRPC_STATUS_UNKNOWN, CAIRN_E_RPC, "UNKNOWN"},
    {GRPC_STATUS_INVALID_ARGUMENT, CAIRN_E_INVAL, "INVALID_ARGUMENT"},
    {GRPC_STATUS_DEADLINE_EXCEEDED, CAIRN_E_TIMEOUT, "DEADLINE_EXCEEDED"},
    {GRPC_STATUS_NOT_FOUND, CAIRN_E_NOTFOUND, "NOT_FOUND"},
    {GRPC_STATUS_ALREADY_EXISTS, CAIRN_E_EXISTS, "ALREADY_EXISTS"},
    {GRPC_STATUS_PERMISSION_DENIED, CAIRN_E_AUTH, "PERMISSION_DENIED"},
    {GRPC_STATUS_RESOURCE_EXHAUSTED, CAIRN_E_FULL, "RESOURCE_EXHAUSTED"},
    {GRPC_STATUS_FAILED_PRECONDITION, CAIRN_E_RPC, "FAILED_PRECONDITION"},
    {GRPC_STATUS_ABORTED, CAIRN_E_RPC, "ABORTED"},
    {GRPC_STATUS_OUT_OF_RANGE, CAIRN_E_INVAL, "OUT_OF_RANGE"},
    {GRPC_STATUS_UNIMPLEMENTED, CAIRN_E_UNSUPPORTED, "UNIMPLEMENTED"},
    {GRPC_STATUS_INTERNAL, CAIRN_E_RPC, "INTERNAL"},
    {GRPC_STATUS_UNAVAILABLE, CAIRN_E_RPC, "UNAVAILABLE"},
    {GRPC_STATUS_DATA_LOSS, CAIRN_E_CORRUPT, "DATA_LOSS"},
    {GRPC_STATUS_UNAUTHENTICATED, CAIRN_E_AUTH, "UNAUTHENTICATED"},
};

static int status_fail(const struct cairn_remote *r, grpc_status_code code,
                       grpc_slice details, const char *what,
                       struct cairn_err *err)
{
    int rc = CAIRN_E_RPC;
    const char *name = "?";
    for (size_t i = 0; i < sizeof status_map / sizeof status_map[0]; i++)
        if (status_map[i].grpc == code) {
            rc = status_map[i].code;
            name = status_map[i].name;
        }
    int n = (int)GRPC_SLICE_LENGTH(details);
    if (n > 400)
        n = 400;
    return cairn_err_set(err, rc, "%s %s: %s: %.*s", r->target, what, name,
                         n, (const char *)GRPC_SLICE_START_PTR(details));
}

/* ---- calls ----------------------------------------------------------- */

struct call {
    struct cairn_remote *r;
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata md[1];
    size_t nmd;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code code;
    grpc_slice details;
};

/* deadline_extra_ms: streaming calls get time in proportion to their
 * size on top of the per-call timeout, so a big layer is not cut off by a
 * deadline meant for a lookup. */
static void call_start(struct call *c, struct cairn_remote *r,
                       const char *method, int64_t deadline_extra_ms)
{
    memset(c, 0, sizeof *c);
    c->r = r;
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec dl = gpr_time_add(
        gpr_now(GPR_CLOCK_REALTIME),
        gpr_time_from_millis(r->timeout_ms + deadline_extra_ms, GPR_TIMESPAN));
    c->call = grpc_channel_create_call(r->ch, NULL, 0, c->cq,
                                       grpc_slice_from_static_string(method),
                                       NULL, dl, NULL);
    /* Static slices: r->auth outlives every call, and nothing is
     * refcounted across threads. */
    if (r->auth) {
        c->md[0].key = grpc_slice_from_static_string("authorization");
        c->md[0].value = grpc_slice_from_static_string(r->auth);
        c->nmd = 1;
    }
    grpc_metadata_array_init(&c->init_md);
    grpc_metadata_array_init(&c->trail_md);
    c->details = grpc_empty_slice();
    c->code = GRPC_STATUS_UNKNOWN;
}

/* Fills ops[0..3] for a call that sends one request: initial metadata
 * (the token), the message, half-close, and receiving the server's
 * initial metadata. Returns the number of ops filled. */
static size_t call_ops_request(struct call *c, grpc_op *ops,
                               grpc_byte_buffer *send)
{
    memset(ops, 0, 4 * sizeof *ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->nmd;
    ops[0].data.send_initial_metadata.metadata = c->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->init_md;
    return 4;
}

/* Fills op to receive the call's status into c. */
static void call_op_status(struct call *c, grpc_op *op)
{
    memset(op, 0, sizeof *op);
    op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op->data.recv_status_on_client.trailing_metadata = &c->trail_md;
    op->data.recv_status_on_client.status = &c->code;
    op->data.recv_status_on_client.status_details = &c->details;
}

static bool call_wait(struct call *c, void *tag)
{
    grpc_event ev = grpc_completion_queue_pluck(
        c->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static void call_end(struct call *c)
{
    if (c->call)
        grpc_call_unref(c->call);
    grpc_completion_queue_shutdown(c->cq);
    while (grpc_completion_queue_pluck(c->cq, NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME),
                                       NULL)
               .type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(c->cq);
    grpc_slice_unref(c->details);
    grpc_metadata_array_destroy(&c->init_md);
    grpc_metadata_array_destroy(&c->trail_md);
}

static grpc_byte_buffer *buffer_of(const void *p, size_t n)
{
    grpc_slice s = grpc_slice_from_copied_buffer(p, n);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static uint8_t *flatten(grpc_byte_buffer *bb, size_t *len)
{
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    *len = GRPC_SLICE_LENGTH(s);
    uint8_t *out = malloc(*len + 1);
    if (out)
        memcpy(out, GRPC_SLICE_START_PTR(s), *len);
    grpc_slice_unref(s);
    return out;
}

static int pack_msg(const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    *out = malloc(*len + 1);
    if (*out == NULL)
        return CAIRN_E_NOMEM;
    protobuf_c_message_pack(m, *out);
    return 0;
}

/* One unary call; *resp (malloc'd) on success. */
static int unary(struct cairn_remote *r, const char *method, const char *what,
                 const ProtobufCMessage *req, uint8_t **resp, size_t *rlen,
                 struct cairn_err *err)
{
    uint8_t *buf;
    size_t len;
    if (pack_msg(req, &buf, &len))
        return CAIRN_E_NOMEM;
    struct call c;
    call_start(&c, r, method, 0);
    grpc_byte_buffer *send = buffer_of(buf, len), *recv = NULL;
    free(buf);
    grpc_op ops[6];
    call_ops_request(&c, ops, send);
    memset(&ops[4], 0, sizeof ops[4]);
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    call_op_status(&c, &ops[5]);
    int rc = 0;
    if (grpc_call_start_batch(c.call, ops, 6, (void *)1, NULL) != GRPC_CALL_OK)
        rc = cairn_err_set(err, CAIRN_E_RPC, "%s %s: cannot start the call",
                           r->target, what);
    else
        call_wait(&c, (void *)1);
    if (!rc && c.code != GRPC_STATUS_OK)
        rc = status_fail(r, c.code, c.details, what, err);
    if (!rc && resp) {
        if (recv == NULL) {
            *resp = NULL;
            *rlen = 0;
        } else if ((*resp = flatten(recv, rlen)) == NULL) {
            rc = CAIRN_E_NOMEM;
        }
    }
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    call_end(&c);
    return rc;
}

/* ---- open/close -------------------------------------------------------- */

static char *read_small_file(const char *path, struct cairn_err *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(REMOTE_MAX_CA + 1);
    size_t n = buf ? fread(buf, 1, REMOTE_MAX_CA + 1, f) : 0;
    fclose(f);
    if (buf == NULL || n > REMOTE_MAX_CA) {
        free(buf);
        cairn_err_set(err, CAIRN_E_TOOBIG, "%s: larger than 1 MiB", path);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int cairn_remote_open(const struct cairn_remote_opts *o,
                      struct cairn_remote **out, struct cairn_err *err)
{
    if (o->target == NULL || o->target[0] == '\0' ||
        strlen(o->target) >= sizeof ((struct cairn_remote *)0)->target)
        return cairn_err_set(err, CAIRN_E_INVAL, "bad cache address");
    struct cairn_remote *r = calloc(1, sizeof *r);
    if (r == NULL)
        return CAIRN_E_NOMEM;
    snprintf(r->target, sizeof r->target, "%s", o->target);
    r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
    r->min_rate = o->min_rate > 0 ? o->min_rate : REMOTE_MIN_RATE;
    /* Bytes are seen a message at a time, so a window must hold at least
     * one message (cairnd frames 1 MiB) at the minimum rate. */
    double frame_ms = (double)REMOTE_RATE_FRAME * 1000.0 / (double)r->min_rate;
    r->window_ms = frame_ms > (double)r->timeout_ms ? (int64_t)frame_ms
                                                    : r->timeout_ms;
    if (o->token && o->token[0]) {
        size_t n = strlen(o->token) + 8;
        if (strlen(o->token) > 4096 || (r->auth = malloc(n)) == NULL) {
            free(r);
            return cairn_err_set(err, CAIRN_E_INVAL, "bad cache token");
        }
        snprintf(r->auth, n, "Bearer %s", o->token);
    }
    char *ca = NULL;
    if (o->tls && o->ca_file && (ca = read_small_file(o->ca_file, err)) == NULL) {
        int rc = err ? err->code : CAIRN_E_IO;
        free(r->auth);
        free(r);
        return rc;
    }
    grpc_init();
    grpc_channel_credentials *creds =
        o->tls ? grpc_ssl_credentials_create(ca, NULL, NULL, NULL)
               : grpc_insecure_credentials_create();
    free(ca);
    grpc_arg args[1];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = REMOTE_MAX_RECV;
    grpc_channel_args chargs = {1, args};
    r->ch = grpc_channel_create(r->target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    if (r->ch == NULL) {
        grpc_shutdown();
        free(r->auth);
        free(r);
        return cairn_err_set(err, CAIRN_E_RPC, "cannot create a channel to %s",
                             o->target);
    }
    *out = r;
    return 0;
}

void cairn_remote_close(struct cairn_remote *r)
{
    if (r == NULL)
        return;
    grpc_channel_destroy(r->ch);
    free(r->auth);
    free(r);
    grpc_shutdown();
}

/* ---- unary services ----------------------------------------------------- */

static void digest_to_pb(const struct cairn_remote_digest *d, Digest *pb)
{
    build__bazel__remote__execution__v2__digest__init(pb);
    pb->hash = (char *)d->hash;
    pb->size_bytes = d->size;
}

static bool hex64(const char *s)
{
    if (s == NULL || strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static int digest_from_pb(const Digest *pb, struct cairn_remote_digest *d)
{
    if (pb == NULL || !hex64(pb->hash) || pb->size_bytes < 0)
        return CAIRN_E_CORRUPT;
    memcpy(d->hash, pb->hash, 65);
    d->size = pb->size_bytes;
    return 0;
}

int cairn_remote_capabilities(struct cairn_remote *r, const char *instance,
                              struct cairn_remote_caps *out,
                              struct cairn_err *err)
{
    Build__Bazel__Remote__Execution__V2__GetCapabilitiesRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_CAPABILITIES_REQUEST__INIT;
    rq.instance_name = (char *)instance;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = unary(r, REAPI "Capabilities/GetCapabilities", "GetCapabilities",
                   &rq.base, &resp, &rlen, err);
    if (rc)
        return rc;
    Build__Bazel__Remote__Execution__V2__ServerCapabilities *m =
        build__bazel__remote__execution__v2__server_capabilities__unpack(
            NULL, rlen, resp);
    free(resp);
    if (m == NULL)
        return cairn_err_set(err, CAIRN_E_CORRUPT,
                             "%s: malformed capabilities", r->target);
    struct cairn_remote_caps c;
    memset(&c, 0, sizeof c);
    const Build__Bazel__Remote__Execution__V2__CacheCapabilities *cc =
        m->cache_capabilities;
    for (size_t i = 0; cc && i < cc->n_digest_functions; i++)
        if (cc->digest_functions[i] ==
            BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST_FUNCTION__VALUE__SHA256)
            c.sha256 = true;
    c.update_enabled = cc && cc->action_cache_update_capabilities &&
                       cc->action_cache_update_capabilities->update_enabled;
    c.max_batch = cc ? cc->max_batch_total_size_bytes : 0;
    if (m->low_api_version) {
        c.low_major = m->low_api_version->major;
        c.low_minor = m->low_api_version->minor;
    }
    if (m->high_api_version) {
        c.high_major = m->high_api_version->major;
        c.high_minor = m->high_api_version->minor;
    }
    build__bazel__remote__execution__v2__server_capabilities__free_unpacked(
        m, NULL);
    *out = c;
    return 0;
}

/* Copies the properties of an OutputFile; CAIRN_E_CORRUPT when they do
 * not fit (they come from the server). */
static int props_from_pb(
    const Build__Bazel__Remote__Execution__V2__NodeProperties *np,
    struct cairn_remote_file *f)
{
    f->nprops = 0;
    if (np == NULL)
        return 0;
    if (np->n_properties > CAIRN_REMOTE_MAX_PROPS)
        return CAIRN_E_CORRUPT;
    for (size_t i = 0; i < np->n_properties; i++) {
        const char *name = np->properties[i]->name;
        const char *value = np->properties[i]->value;
        if (name == NULL || value == NULL ||
            strlen(name) >= sizeof f->props[0].name ||
            strlen(value) >= sizeof f->props[0].value)
            return CAIRN_E_CORRUPT;
        snprintf(f->props[i].name, sizeof f->props[i].name, "%s", name);
        snprintf(f->props[i].value, sizeof f->props[i].value, "%s", value);
    }
    f->nprops = np->n_properties;
    return 0;
}

int cairn_remote_ac_get(struct cairn_remote *r, const char *instance,
                        const struct cairn_remote_digest *action,
                        struct cairn_remote_result *out,
                        struct cairn_err *err)
{
    Build__Bazel__Remote__Execution__V2__GetActionResultRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_ACTION_RESULT_REQUEST__INIT;
    Digest ad;
    digest_to_pb(action, &ad);
    rq.instance_name = (char *)instance;
    rq.action_digest = &ad;
    rq.digest_function =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST_FUNCTION__VALUE__SHA256;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = unary(r, REAPI "ActionCache/GetActionResult", "GetActionResult",
                   &rq.base, &resp, &rlen, err);
    if (rc)
        return rc;
    Build__Bazel__Remote__Execution__V2__ActionResult *m =
        build__bazel__remote__execution__v2__action_result__unpack(NULL, rlen,
                                                                   resp);
    free(resp);
    if (m == NULL || m->n_output_files > CAIRN_REMOTE_MAX_FILES) {
        build__bazel__remote__execution__v2__action_result__free_unpacked(m,
                                                                          NULL);
        return cairn_err_set(err, CAIRN_E_CORRUPT,
                             "%s: malformed or oversized action result",
                             r->target);
    }
    struct cairn_remote_result *res = calloc(1, sizeof *res);
    if (res == NULL) {
        rc = CAIRN_E_NOMEM;
        goto out;
    }
    res->exit_code = m->exit_code;
    for (size_t i = 0; i < m->n_output_files; i++) {
        const Build__Bazel__Remote__Execution__V2__OutputFile *f =
            m->output_files[i];
        if (f->path == NULL || strlen(f->path) >= sizeof res->files[0].path ||
            digest_from_pb(f->digest, &res->files[i].digest) != 0) {
            rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                               "%s: bad output file in action result",
                               r->target);
            goto out;
        }
        snprintf(res->files[i].path, sizeof res->files[i].path, "%s",
                 f->path);
        rc = props_from_pb(f->node_properties, &res->files[i]);
        if (rc) {
            rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                               "%s: oversized node properties of output "
                               "file %s",
                               r->target, res->files[i].path);
            goto out;
        }
    }
    res->nfiles = m->n_output_files;
    *out = *res;
out:
    free(res);
    build__bazel__remote__execution__v2__action_result__free_unpacked(m, NULL);
    return rc;
}

int cairn_remote_ac_put(struct cairn_remote *r, const char *instance,
                        const struct cairn_remote_digest *action,
                        const struct cairn_remote_result *res,
                        struct cairn_err *err)
{
    typedef Build__Bazel__Remote__Execution__V2__NodeProperty Prop;
    Build__Bazel__Remote__Execution__V2__OutputFile files[CAIRN_REMOTE_MAX_FILES];
    Build__Bazel__Remote__Execution__V2__OutputFile *fp[CAIRN_REMOTE_MAX_FILES];
    Build__Bazel__Remote__Execution__V2__NodeProperties
        np[CAIRN_REMOTE_MAX_FILES];
    Prop props[CAIRN_REMOTE_MAX_FILES][CAIRN_REMOTE_MAX_PROPS];
    Prop *pp[CAIRN_REMOTE_MAX_FILES][CAIRN_REMOTE_MAX_PROPS];
    Digest fd[CAIRN_REMOTE_MAX_FILES];
    if (res->nfiles > CAIRN_REMOTE_MAX_FILES)
        return CAIRN_E_INVAL;
    for (size_t i = 0; i < res->nfiles; i++) {
        const struct cairn_remote_file *f = &res->files[i];
        if (f->nprops > CAIRN_REMOTE_MAX_PROPS)
            return CAIRN_E_INVAL;
        build__bazel__remote__execution__v2__output_file__init(&files[i]);
        digest_to_pb(&f->digest, &fd[i]);
        files[i].path = (char *)f->path;
        files[i].digest = &fd[i];
        if (f->nprops > 0) {
            build__bazel__remote__execution__v2__node_properties__init(&np[i]);
            for (size_t k = 0; k < f->nprops; k++) {
                build__bazel__remote__execution__v2__node_property__init(
                    &props[i][k]);
                props[i][k].name = (char *)f->props[k].name;
                props[i][k].value = (char *)f->props[k].value;
                pp[i][k] = &props[i][k];
            }
            np[i].n_properties = f->nprops;
            np[i].properties = pp[i];
            files[i].node_properties = &np[i];
        }
        fp[i] = &files[i];
    }
    Build__Bazel__Remote__Execution__V2__ActionResult ar =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
    ar.n_output_files = res->nfiles;
    ar.output_files = fp;
    ar.exit_code = res->exit_code;
    Digest ad;
    digest_to_pb(action, &ad);
    Build__Bazel__Remote__Execution__V2__UpdateActionResultRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__UPDATE_ACTION_RESULT_REQUEST__INIT;
    rq.instance_name = (char *)instance;
    rq.action_digest = &ad;
    rq.action_result = &ar;
    rq.digest_function =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST_FUNCTION__VALUE__SHA256;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = unary(r, REAPI "ActionCache/UpdateActionResult",
                   "UpdateActionResult", &rq.base, &resp, &rlen, err);
    free(resp);
    return rc;
}

int cairn_remote_find_missing(struct cairn_remote *r, const char *instance,
                              const struct cairn_remote_digest *d, size_t n,
                              bool *missing, struct cairn_err *err)
{
    if (n > 1024)
        return CAIRN_E_INVAL;
    Digest *ds = calloc(n + 1, sizeof *ds);
    Digest **dp = calloc(n + 1, sizeof *dp);
    int rc = 0;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse *m = NULL;
    if (ds == NULL || dp == NULL) {
        rc = CAIRN_E_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        digest_to_pb(&d[i], &ds[i]);
        dp[i] = &ds[i];
    }
    Build__Bazel__Remote__Execution__V2__FindMissingBlobsRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__FIND_MISSING_BLOBS_REQUEST__INIT;
    rq.instance_name = (char *)instance;
    rq.n_blob_digests = n;
    rq.blob_digests = dp;
    rq.digest_function =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST_FUNCTION__VALUE__SHA256;
    rc = unary(r, REAPI "ContentAddressableStorage/FindMissingBlobs",
               "FindMissingBlobs", &rq.base, &resp, &rlen, err);
    if (rc)
        goto out;
    m = build__bazel__remote__execution__v2__find_missing_blobs_response__unpack(
        NULL, rlen, resp);
    if (m == NULL) {
        rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                           "%s: malformed FindMissingBlobs reply", r->target);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        missing[i] = false;
        for (size_t k = 0; k < m->n_missing_blob_digests; k++)
            if (m->missing_blob_digests[k]->hash &&
                strcmp(m->missing_blob_digests[k]->hash, d[i].hash) == 0)
                missing[i] = true;
    }
out:
    build__bazel__remote__execution__v2__find_missing_blobs_response__free_unpacked(
        m, NULL);
    free(resp);
    free(ds);
    free(dp);
    return rc;
}

int cairn_remote_batch_update(struct cairn_remote *r, const char *instance,
                              const struct cairn_remote_blob *blobs, size_t n,
                              struct cairn_err *err)
{
    if (n == 0)
        return 0;
    if (n > 64)
        return CAIRN_E_INVAL;
    Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request it[64];
    Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request *ip[64];
    Digest ds[64];
    for (size_t i = 0; i < n; i++) {
        build__bazel__remote__execution__v2__batch_update_blobs_request__request__init(
            &it[i]);
        digest_to_pb(&blobs[i].digest, &ds[i]);
        it[i].digest = &ds[i];
        it[i].data.data = (uint8_t *)blobs[i].data;
        it[i].data.len = (size_t)blobs[i].digest.size;
        ip[i] = &it[i];
    }
    Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_UPDATE_BLOBS_REQUEST__INIT;
    rq.instance_name = (char *)instance;
    rq.n_requests = n;
    rq.requests = ip;
    rq.digest_function =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST_FUNCTION__VALUE__SHA256;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = unary(r, REAPI "ContentAddressableStorage/BatchUpdateBlobs",
                   "BatchUpdateBlobs", &rq.base, &resp, &rlen, err);
    if (rc)
        return rc;
    Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsResponse *m =
        build__bazel__remote__execution__v2__batch_update_blobs_response__unpack(
            NULL, rlen, resp);
    free(resp);
    if (m == NULL)
        return cairn_err_set(err, CAIRN_E_CORRUPT,
                             "%s: malformed BatchUpdateBlobs reply", r->target);
    for (size_t i = 0; !rc && i < m->n_responses; i++) {
        const Google__Rpc__Status *s = m->responses[i]->status;
        if (s && s->code != 0) {
            grpc_slice msg = grpc_slice_from_static_string(
                s->message ? s->message : "");
            rc = status_fail(r, (grpc_status_code)s->code, msg,
                             "BatchUpdateBlobs", err);
        }
    }
    build__bazel__remote__execution__v2__batch_update_blobs_response__free_unpacked(
        m, NULL);
    return rc;
}

/* ---- ByteStream --------------------------------------------------------- */

static int64_t stream_extra_ms(const struct cairn_remote *r, int64_t size)
{
    /* The whole stream at the minimum rate, on top of the per-call
     * timeout: a backstop only, since each window of the stream is held
     * to that rate (rate_check). Callers cap sizes (cache-max-layer);
     * the double keeps a hostile size from overflowing. */
    double ms = (double)size * 1000.0 / (double)r->min_rate;
    return ms > 1e12 ? (int64_t)1e12 : (int64_t)ms;
}

/* A stream's progress: every window (timeout_ms, or longer when one
 * 1 MiB message at min_rate needs longer) must move at least min_rate
 * bytes per second, so a stall or a trickle ends in one window instead
 * of at a deadline that grows with the (claimed) size. */
struct rate_window {
    gpr_timespec end;
    int64_t bytes;
};

static void rate_start(struct rate_window *w, const struct cairn_remote *r)
{
    w->end = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                          gpr_time_from_millis(r->window_ms, GPR_TIMESPAN));
    w->bytes = 0;
}

/* false when the window has ended below the rate; a window that ended
 * above it starts the next one. */
static bool rate_check(struct rate_window *w, const struct cairn_remote *r)
{
    if (gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), w->end) < 0)
        return true;
    if ((double)w->bytes < (double)r->min_rate * (double)r->window_ms / 1000.0)
        return false;
    rate_start(w, r);
    return true;
}

static int resource_name(char *buf, size_t len, const char *instance,
                         const char *mid, const struct cairn_remote_digest *d)
{
    int n = snprintf(buf, len, "%s%s%sblobs/%s/%lld", instance,
                     instance[0] ? "/" : "", mid, d->hash, (long long)d->size);
    return n < 0 || (size_t)n >= len ? CAIRN_E_TOOBIG : 0;
}

static bool transient(int rc)
{
    return rc == CAIRN_E_RPC || rc == CAIRN_E_TIMEOUT;
}

/* The error of a stream that fell under the minimum rate. */
static int rate_fail(const struct cairn_remote *r, const char *what,
                     const struct cairn_remote_digest *d,
                     const struct rate_window *w, struct cairn_err *err)
{
    return cairn_err_set(err, CAIRN_E_TIMEOUT,
                         "%s: %s of %s stalled: %lld bytes in %lld ms, under "
                         "the minimum rate of %lld bytes/s (cache-min-rate)",
                         r->target, what, d->hash, (long long)w->bytes,
                         (long long)r->window_ms, (long long)r->min_rate);
}

/* Waits for tag while the stream keeps the minimum rate. A window that
 * ends below it cancels the call (the pending op still completes and is
 * collected here), sets *slow and *rc. Returns whether the op succeeded. */
static bool rate_wait(struct call *c, void *tag, struct rate_window *win,
                      const char *what, const struct cairn_remote_digest *d,
                      bool *slow, int *rc, struct cairn_err *err)
{
    for (;;) {
        grpc_event ev = grpc_completion_queue_pluck(c->cq, tag, win->end, NULL);
        if (ev.type != GRPC_QUEUE_TIMEOUT)
            return ev.type == GRPC_OP_COMPLETE && ev.success;
        if (rate_check(win, c->r))
            continue;
        grpc_call_cancel(c->call, NULL);
        call_wait(c, tag);
        *slow = true;
        *rc = rate_fail(c->r, what, d, win, err);
        return false;
    }
}

/* One Read stream from offset; *got is what sink accepted. *slow is set
 * when the stream fell below the minimum rate (not worth resuming). */
static int read_once(struct cairn_remote *r, const char *resource,
                     const struct cairn_remote_digest *d, int64_t offset,
                     cairn_remote_sink sink, void *arg, int64_t *got,
                     bool *slow, struct cairn_err *err)
{
    Google__Bytestream__ReadRequest rq = GOOGLE__BYTESTREAM__READ_REQUEST__INIT;
    rq.resource_name = (char *)resource;
    rq.read_offset = offset;
    uint8_t *buf;
    size_t len;
    if (pack_msg(&rq.base, &buf, &len))
        return CAIRN_E_NOMEM;
    struct call c;
    call_start(&c, r, "/google.bytestream.ByteStream/Read",
               stream_extra_ms(r, d->size - offset));
    grpc_byte_buffer *send = buffer_of(buf, len), *recv = NULL;
    free(buf);
    grpc_op ops[4];
    size_t nops = call_ops_request(&c, ops, send);
    int rc = 0;
    *got = 0;
    struct rate_window win;
    rate_start(&win, r);
    /* The server's initial metadata usually comes with the first
     * message, so even this first wait is held to the rate. */
    grpc_call_start_batch(c.call, ops, nops, (void *)1, NULL);
    bool ok = rate_wait(&c, (void *)1, &win, "ByteStream.Read", d, slow, &rc,
                        err);
    while (!rc && ok) {
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &recv;
        grpc_call_start_batch(c.call, &op, 1, (void *)2, NULL);
        ok = rate_wait(&c, (void *)2, &win, "ByteStream.Read", d, slow, &rc,
                       err);
        if (rc && recv != NULL)
            grpc_byte_buffer_destroy(recv);
        if (rc)
            recv = NULL;
        if (rc || !ok || recv == NULL)
            break;
        size_t mlen = 0;
        uint8_t *m = flatten(recv, &mlen);
        grpc_byte_buffer_destroy(recv);
        recv = NULL;
        Google__Bytestream__ReadResponse *rr =
            m ? google__bytestream__read_response__unpack(NULL, mlen, m) : NULL;
        free(m);
        if (rr == NULL) {
            rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                               "%s: malformed ReadResponse", r->target);
        } else if ((int64_t)rr->data.len > d->size - offset - *got) {
            /* More bytes than the digest's size: never pass them on. */
            rc = cairn_err_set(err, CAIRN_E_DIGEST,
                               "%s: blob %s longer than its digest says",
                               r->target, d->hash);
        } else {
            rc = sink(arg, rr->data.data, rr->data.len);
            if (!rc)
                *got += (int64_t)rr->data.len;
            win.bytes += (int64_t)rr->data.len;
        }
        google__bytestream__read_response__free_unpacked(rr, NULL);
        /* A trickle of small messages never lets the wait above time
         * out: the rate is checked as they arrive too. */
        if (!rc && !rate_check(&win, r)) {
            *slow = true;
            rc = rate_fail(r, "ByteStream.Read", d, &win, err);
        }
    }
    if (rc)
        grpc_call_cancel(c.call, NULL);
    grpc_op op;
    call_op_status(&c, &op);
    grpc_call_start_batch(c.call, &op, 1, (void *)3, NULL);
    call_wait(&c, (void *)3);
    if (!rc && c.code != GRPC_STATUS_OK)
        rc = status_fail(r, c.code, c.details, "ByteStream.Read", err);
    grpc_byte_buffer_destroy(send);
    call_end(&c);
    return rc;
}

int cairn_remote_read(struct cairn_remote *r, const char *instance,
                      const struct cairn_remote_digest *d,
                      cairn_remote_sink sink, void *arg, int64_t *received,
                      struct cairn_err *err)
{
    char resource[1024];
    if (resource_name(resource, sizeof resource, instance, "", d))
        return cairn_err_set(err, CAIRN_E_TOOBIG, "instance name too long");
    int64_t off = 0;
    int rc = 0;
    for (int attempt = 0; attempt < REMOTE_READ_ATTEMPTS; attempt++) {
        int64_t got = 0;
        bool slow = false;
        rc = read_once(r, resource, d, off, sink, arg, &got, &slow, err);
        off += got;
        if (!rc && off != d->size)
            rc = cairn_err_set(err, CAIRN_E_RPC,
                               "%s: read of %s ended at %lld of %lld bytes",
                               r->target, d->hash, (long long)off,
                               (long long)d->size);
        /* Resume only a stream that made progress and broke for transport
         * reasons; a refusal or a sink error will not improve. */
        if (!rc || !transient(rc) || got == 0 || slow)
            break;
    }
    if (received)
        *received = off;
    return rc;
}

static void upload_uuid(char out[37])
{
    uint8_t b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        /* Uniqueness only needs to hold among this client's concurrent
         * uploads of one blob; the pid and a counter give that. */
        static unsigned counter;
        memset(b, 0, sizeof b);
        unsigned v = (unsigned)getpid() ^ (__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) << 16);
        memcpy(b, &v, sizeof v);
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
             b[11], b[12], b[13], b[14], b[15]);
}

int cairn_remote_write(struct cairn_remote *r, const char *instance,
                       const struct cairn_remote_digest *d, int fd,
                       struct cairn_err *err)
{
    if (d->size == 0)
        return 0; /* the empty blob always exists */
    char uuid[37], mid[64], resource[1024];
    upload_uuid(uuid);
    snprintf(mid, sizeof mid, "uploads/%s/", uuid);
    if (resource_name(resource, sizeof resource, instance, mid, d))
        return cairn_err_set(err, CAIRN_E_TOOBIG, "instance name too long");
    uint8_t *chunk = malloc(REMOTE_WRITE_CHUNK);
    if (chunk == NULL)
        return CAIRN_E_NOMEM;
    struct call c;
    call_start(&c, r, "/google.bytestream.ByteStream/Write",
               stream_extra_ms(r, d->size));
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c.nmd;
    ops[0].data.send_initial_metadata.metadata = c.md;
    grpc_call_start_batch(c.call, ops, 1, (void *)1, NULL);
    call_wait(&c, (void *)1);
    /* The status is asked for up front so a server that ends the stream
     * early (blob already stored, or an error) stops the sending loop. */
    call_op_status(&c, &ops[0]);
    grpc_call_start_batch(c.call, ops, 1, (void *)9, NULL);
    int rc = 0;
    int64_t sent = 0;
    bool ok = true, slow = false;
    struct rate_window win;
    rate_start(&win, r);
    while (ok && !rc && sent < d->size) {
        size_t want = d->size - sent < REMOTE_WRITE_CHUNK
                          ? (size_t)(d->size - sent)
                          : REMOTE_WRITE_CHUNK;
        ssize_t got = pread(fd, chunk, want, (off_t)sent);
        if (got <= 0) {
            rc = cairn_err_set(err, got < 0 ? -errno : CAIRN_E_IO,
                               "reading blob %s for upload: %s", d->hash,
                               got < 0 ? strerror(errno) : "short file");
            break;
        }
        Google__Bytestream__WriteRequest wr =
            GOOGLE__BYTESTREAM__WRITE_REQUEST__INIT;
        if (sent == 0)
            wr.resource_name = resource;
        wr.write_offset = sent;
        wr.data.data = chunk;
        wr.data.len = (size_t)got;
        sent += got;
        wr.finish_write = sent == d->size;
        uint8_t *msg;
        size_t mlen;
        if (pack_msg(&wr.base, &msg, &mlen)) {
            rc = CAIRN_E_NOMEM;
            break;
        }
        grpc_byte_buffer *bb = buffer_of(msg, mlen);
        free(msg);
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_SEND_MESSAGE;
        op.data.send_message.send_message = bb;
        grpc_call_start_batch(c.call, &op, 1, (void *)2, NULL);
        /* Held to the minimum rate like reads: a server that stops
         * taking bytes ends the upload in one window. */
        ok = rate_wait(&c, (void *)2, &win, "ByteStream.Write", d, &slow,
                       &rc, err);
        grpc_byte_buffer_destroy(bb);
        win.bytes += got;
        if (!rc && ok && !rate_check(&win, r)) {
            rc = rate_fail(r, "ByteStream.Write", d, &win, err);
            ok = false;
        }
    }
    if (rc)
        grpc_call_cancel(c.call, NULL);
    grpc_byte_buffer *recv = NULL;
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &c.init_md;
    ops[2].op = GRPC_OP_RECV_MESSAGE;
    ops[2].data.recv_message.recv_message = &recv;
    grpc_call_start_batch(c.call, ops, 3, (void *)3, NULL);
    call_wait(&c, (void *)3);
    call_wait(&c, (void *)9);
    if (!rc && c.code != GRPC_STATUS_OK)
        rc = status_fail(r, c.code, c.details, "ByteStream.Write", err);
    if (!rc) {
        size_t mlen = 0;
        uint8_t *m = recv ? flatten(recv, &mlen) : NULL;
        Google__Bytestream__WriteResponse *wresp =
            m ? google__bytestream__write_response__unpack(NULL, mlen, m) : NULL;
        if (wresp == NULL || wresp->committed_size != d->size)
            rc = cairn_err_set(err, CAIRN_E_RPC,
                               "%s: upload of %s not committed", r->target,
                               d->hash);
        google__bytestream__write_response__free_unpacked(wresp, NULL);
        free(m);
    }
    if (recv)
        grpc_byte_buffer_destroy(recv);
    call_end(&c);
    free(chunk);
    return rc;
}

/* ---- cairn.claim.v1 ------------------------------------------------------ */

int cairn_remote_claim(struct cairn_remote *r, const char *instance,
                       const struct cairn_remote_digest *action,
                       enum cairn_remote_claim_op op, int64_t ttl_ms,
                       int64_t expected_ms, const char *builder,
                       struct cairn_remote_claim *out, struct cairn_err *err)
{
    static const char *const methods[] = {"/cairn.claim.v1.Claims/Claim",
                                          "/cairn.claim.v1.Claims/Renew",
                                          "/cairn.claim.v1.Claims/Release"};
    static const char *const whats[] = {"Claim", "Renew", "Release"};
    Cairn__Claim__V1__ClaimRequest rq = CAIRN__CLAIM__V1__CLAIM_REQUEST__INIT;
    Digest ad;
    digest_to_pb(action, &ad);
    rq.instance_name = (char *)instance;
    rq.action_digest = &ad;
    rq.ttl_ms = ttl_ms < 0 ? 0 : ttl_ms > UINT32_MAX ? UINT32_MAX
                                                      : (uint32_t)ttl_ms;
    rq.expected_ms = expected_ms < 0 ? 0 : expected_ms > UINT32_MAX ? UINT32_MAX
                                                                   : (uint32_t)expected_ms;
    rq.builder_id = (char *)builder;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = unary(r, methods[op], whats[op], &rq.base, &resp, &rlen, err);
    if (rc)
        return rc;
    Cairn__Claim__V1__ClaimResponse *m =
        cairn__claim__v1__claim_response__unpack(NULL, rlen, resp);
    free(resp);
    int state = m ? (int)m->state : 0;
    if (m == NULL || state < CAIRN_REMOTE_CLAIM_GRANTED ||
        state > CAIRN_REMOTE_CLAIM_GONE) {
        cairn__claim__v1__claim_response__free_unpacked(m, NULL);
        return cairn_err_set(err, CAIRN_E_CORRUPT, "%s %s: malformed reply",
                             r->target, whats[op]);
    }
    out->state = (enum cairn_remote_claim_state)state;
    out->remaining_ms = m->remaining_ms;
    out->held_ms = m->held_ms;
    out->ttl_ms = m->ttl_ms;
    out->expected_ms = m->expected_ms;
    cairn__claim__v1__claim_response__free_unpacked(m, NULL);
    return 0;
}
