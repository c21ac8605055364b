#include "server/grpc/rpc.h"

#include "server/telemetry/call.h"
#include "server/telemetry/log.h"
#include "server/reapi/status.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Requests kept posted per method and worker: a burst of new calls finds
 * a waiting request instead of queueing inside gRPC until one is reposted. */
#define SLOTS_PER_METHOD 16
/* Bytes gRPC may buffer per incoming stream ahead of the handler. */
#define CD_RECV_WINDOW (4u << 20)
/* Slices of a streamed message described without allocating. */
#define STREAM_IOV_INLINE 64
/* The `authorization` value is copied off the metadata; cap it. */
#define MAX_AUTH_HEADER 4096

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

/* Every completion-queue tag is a struct tag embedded in the object that
 * posted it; the worker loop just calls fn. */
struct tag {
    void (*fn)(struct tag *t, bool ok);
};

struct worker {
    struct cd_rpc *rpc;
    grpc_completion_queue *cq;
    pthread_t thread;
    bool started;
};

struct cd_rpc {
    grpc_server *server;
    grpc_server_credentials *fd_creds; /* insecure: for cd_rpc_channel_add */
    cd_rpc_peer_name_fn *peer_name;    /* NULL: gRPC's peer strings */
    void *peer_ctx;
    struct cd_svc *svc;
    struct worker *workers;
    unsigned n_workers;
    void **handles; /* registered method handles, parallel to cd_methods */
    bool health_only; /* only grpc.health.v1 is registered (opts) */
    atomic_bool draining;
    atomic_uint active; /* calls accepted and not yet freed */
    struct tag shutdown_tag;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool shutdown_done;
    bool drained;
    bool destroyed;
    /* Client-streaming calls, for cd_rpc_reap_idle. */
    pthread_mutex_t idle_mu;
    struct call *idle_head;
    unsigned idle_s;
};

/* A posted grpc_server_request_(registered_)call. */
struct slot {
    struct tag tag;
    struct worker *w;
    const struct cd_method *m; /* NULL: catch-all for unregistered paths */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details;
};

/* Where a call is with an answer its handler gives later (struct
 * cd_later): armed while message runs, early when done came before
 * message returned, waiting once the worker let go of the call. */
enum { LATER_IDLE, LATER_ARMED, LATER_EARLY, LATER_WAITING };

/* One accepted call. Touched only by its worker's thread, except while a
 * handler answers later: then whoever calls later.done finishes it (the
 * worker touches nothing of it but refs in the meantime). */
struct call {
    struct tag ops_tag;   /* the one batch of sends/receives in flight */
    struct tag close_tag; /* RECV_CLOSE_ON_SERVER, for streaming calls */
    void (*on_ops)(struct call *c, bool ok);
    struct cd_rpc *rpc;
    const struct cd_method *m;
    grpc_call *call;
    grpc_metadata_array md;
    char *authorization;
    size_t auth_count;    /* `authorization` entries in md */
    void *state;          /* streaming handler state */
    atomic_int refs;      /* batches in flight, and a waiting answer */
    atomic_bool terminal; /* no more batches will be started */
    bool close_posted;
    bool initial_md_sent;
    int cancelled;        /* written by RECV_CLOSE_ON_SERVER */
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer *send_buf;
    grpc_slice status_details;
    bool has_details;
    struct cd_reply reply;
    /* Client streams: in rpc->idle_head's list (links and reaped under
     * rpc->idle_mu); last_ms is when the last message arrived. */
    struct call *idle_prev, *idle_next;
    bool idle_listed;
    bool reaped;
    _Atomic int64_t last_ms;
    /* For the call's record (cd_telemetry_call_done, at call_free). */
    int64_t start_ns;
    int code; /* status sent; CANCELLED until call_finish */
    uint64_t bytes_in, bytes_out;
    struct cd_later later;
    atomic_int later_st;
};

/* --- call lifetime --- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void idle_add(struct call *c)
{
    struct cd_rpc *rpc = c->rpc;
    atomic_store(&c->last_ms, now_ms());
    pthread_mutex_lock(&rpc->idle_mu);
    c->idle_prev = NULL;
    c->idle_next = rpc->idle_head;
    if (rpc->idle_head != NULL)
        rpc->idle_head->idle_prev = c;
    rpc->idle_head = c;
    c->idle_listed = true;
    pthread_mutex_unlock(&rpc->idle_mu);
}

/* Before the grpc_call goes: the reaper must not cancel a freed call. */
static void idle_remove(struct call *c)
{
    struct cd_rpc *rpc = c->rpc;
    pthread_mutex_lock(&rpc->idle_mu);
    if (c->idle_prev != NULL)
        c->idle_prev->idle_next = c->idle_next;
    else
        rpc->idle_head = c->idle_next;
    if (c->idle_next != NULL)
        c->idle_next->idle_prev = c->idle_prev;
    c->idle_listed = false;
    pthread_mutex_unlock(&rpc->idle_mu);
}

unsigned cd_rpc_reap_idle(struct cd_rpc *rpc)
{
    if (rpc == NULL || rpc->idle_s == 0)
        return 0;
    int64_t now = now_ms(), limit = (int64_t)rpc->idle_s * 1000;
    unsigned n = 0;
    char msg[160];
    snprintf(msg, sizeof msg,
             "no WriteRequest for %us: the call is cancelled and the upload kept for a resume "
             "(QueryWriteStatus)", rpc->idle_s);
    pthread_mutex_lock(&rpc->idle_mu);
    for (struct call *c = rpc->idle_head; c != NULL; c = c->idle_next) {
        if (c->reaped || now - atomic_load(&c->last_ms) < limit)
            continue;
        /* Thread-safe in gRPC; the call's own worker then sees the
         * pending receive fail and closes the handler (parking the
         * upload), exactly as when a client goes away. */
        c->reaped = true;
        grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED, msg, NULL);
        n++;
    }
    pthread_mutex_unlock(&rpc->idle_mu);
    return n;
}

/* The client's address for the call's log line (cd_call_peer_fn). */
static void call_peer(void *ctx, char *out, size_t n)
{
    struct call *c = ctx;
    char *peer = grpc_call_get_peer(c->call);
    if (c->rpc->peer_name != NULL && peer != NULL)
        c->rpc->peer_name(c->rpc->peer_ctx, peer, out, n, false);
    else
        snprintf(out, n, "%s", peer ? peer : "");
    gpr_free(peer);
}

/* The call's one record, for the counters and the log (server/telemetry/
 * call.h): made when the call is freed, after its status went out. */
static void call_record(struct call *c)
{
    grpc_status_code code = (grpc_status_code)c->code;
    struct cd_call_record r = {
        c->m != NULL ? (size_t)(c->m - cd_methods) : SIZE_MAX,
        c->m != NULL ? c->m->path : NULL,
        c->code,
        (uint64_t)(now_ns() - c->start_ns),
        c->bytes_in,
        c->bytes_out,
        c->reply.instance,
        cd_status_name(code),
        c->code != GRPC_STATUS_OK ? c->reply.err.msg : "",
        call_peer,
        c,
    };
    cd_telemetry_call_done(c->rpc->svc->metrics, &r);
}

static void call_free(struct call *c)
{
    call_record(c);
    if (c->idle_listed)
        idle_remove(c);
    if (c->state != NULL && c->m != NULL && c->m->stream != NULL)
        c->m->stream->close(c->state, true);
    if (c->recv_buf)
        grpc_byte_buffer_destroy(c->recv_buf);
    if (c->send_buf)
        grpc_byte_buffer_destroy(c->send_buf);
    if (c->has_details)
        grpc_slice_unref(c->status_details);
    free(c->reply.out);
    free(c->authorization);
    grpc_metadata_array_destroy(&c->md);
    grpc_call_unref(c->call);
    struct cd_rpc *rpc = c->rpc;
    free(c);
    /* The drain waits for the last call to go. */
    if (atomic_fetch_sub(&rpc->active, 1) == 1 && atomic_load(&rpc->draining)) {
        pthread_mutex_lock(&rpc->mu);
        pthread_cond_broadcast(&rpc->cv);
        pthread_mutex_unlock(&rpc->mu);
    }
}

/* A batch completed: drop its reference; free once nothing is pending and
 * the state machine has stopped. */
static void call_unref(struct call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1 && atomic_load(&c->terminal))
        call_free(c);
}

static void call_ops_done(struct tag *t, bool ok)
{
    struct call *c = container_of(t, struct call, ops_tag);
    if (c->send_buf) {
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
    }
    c->on_ops(c, ok);
    call_unref(c);
}

static void call_close_done(struct tag *t, bool ok)
{
    (void)ok;
    struct call *c = container_of(t, struct call, close_tag);
    call_unref(c);
}

static grpc_byte_buffer *buffer_take(uint8_t **data, size_t len)
{
    /* The slice takes ownership of the malloc'd bytes: no copy. */
    grpc_slice s = grpc_slice_new(*data, len, free);
    *data = NULL;
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static int start_batch(struct call *c, grpc_op *ops, size_t n,
                       void (*on_ops)(struct call *, bool))
{
    c->on_ops = on_ops;
    atomic_fetch_add(&c->refs, 1);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->ops_tag, NULL);
    if (e != GRPC_CALL_OK) {
        cd_log(CD_LOG_ERROR, "grpc_call_start_batch failed (%d) on %s", (int)e,
               c->m ? c->m->path : "?");
        atomic_fetch_sub(&c->refs, 1);
        return -1;
    }
    return 0;
}

static void on_finished(struct call *c, bool ok)
{
    (void)ok;
    atomic_store(&c->terminal, true);
}

/* Ends the call with c->reply: response message (when OK), status and
 * details. The handler state is closed first so a Write's upload is
 * parked before the client can try to resume. */
static void call_finish(struct call *c)
{
    if (c->state != NULL && c->m->stream != NULL) {
        c->m->stream->close(c->state, false);
        c->state = NULL;
    }
    grpc_status_code code = cd_status_from_err(c->reply.err.code);
    c->code = (int)code;
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->initial_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_md_sent = true;
    }
    if (code == GRPC_STATUS_OK && c->reply.out != NULL) {
        c->bytes_out += c->reply.out_len;
        c->send_buf = buffer_take(&c->reply.out, c->reply.out_len);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->send_buf;
    }
    c->status_details = code == GRPC_STATUS_OK ? grpc_empty_slice()
                                               : grpc_slice_from_copied_string(c->reply.err.msg);
    c->has_details = true;
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n++].data.send_status_from_server.status_details = &c->status_details;
    if (!c->close_posted) {
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
        c->close_posted = true;
    }
    if (start_batch(c, ops, n, on_finished) != 0)
        atomic_store(&c->terminal, true);
}

/* The call died under us (client gone, deadline, server cancel): stop. */
static void call_abandon(struct call *c)
{
    if (c->state != NULL && c->m->stream != NULL) {
        c->m->stream->close(c->state, true);
        c->state = NULL;
    }
    atomic_store(&c->terminal, true);
}

static int post_close(struct call *c)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    c->close_posted = true;
    atomic_fetch_add(&c->refs, 1);
    if (grpc_call_start_batch(c->call, &op, 1, &c->close_tag, NULL) != GRPC_CALL_OK) {
        atomic_fetch_sub(&c->refs, 1);
        return -1;
    }
    return 0;
}

/* One contiguous slice of a byte buffer for the handler: a reference to
 * the buffer's only slice when it has one (small messages always do), a
 * copy otherwise. */
static grpc_slice buffer_flatten(grpc_byte_buffer *bb)
{
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1)
        return grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb))
        return grpc_empty_slice();
    grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    return s;
}

/* --- server streaming (Read) --- */

static void stream_send_next(struct call *c);

static void on_stream_sent(struct call *c, bool ok)
{
    if (!ok || c->cancelled) {
        call_abandon(c);
        return;
    }
    stream_send_next(c);
}

static void stream_send_next(struct call *c)
{
    bool done = false;
    if (c->m->stream->next(c->state, &done, &c->reply) != 0 || done) {
        call_finish(c);
        return;
    }
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->initial_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_md_sent = true;
    }
    c->bytes_out += c->reply.out_len;
    c->send_buf = buffer_take(&c->reply.out, c->reply.out_len);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->send_buf;
    if (start_batch(c, ops, n, on_stream_sent) != 0)
        call_abandon(c);
}

/* --- client streaming (Write) --- */

static void stream_recv(struct call *c);

static void on_stream_recv(struct call *c, bool ok)
{
    if (!ok || c->cancelled) {
        call_abandon(c);
        return;
    }
    atomic_store(&c->last_ms, now_ms());
    if (c->recv_buf == NULL) {
        /* Half-close: the client sent everything it will send. */
        c->m->stream->end(c->state, &c->reply);
        call_finish(c);
        return;
    }
    /* The handler reads the message in place, over the received slices
     * (a plain buffer: no copy); a compressed one is decompressed into one
     * slice first. */
    grpc_byte_buffer *bb = c->recv_buf;
    c->recv_buf = NULL;
    grpc_slice flat = grpc_empty_slice();
    struct cd_iov small[STREAM_IOV_INLINE], *iov = small;
    size_t niov = 0, total = 0;
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE) {
        const grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;
        if (sb->count > STREAM_IOV_INLINE && (iov = malloc(sb->count * sizeof *iov)) == NULL) {
            grpc_byte_buffer_destroy(bb);
            cd_reply_fail(&c->reply, CAIRN_E_NOMEM, "out of memory");
            call_finish(c);
            return;
        }
        for (size_t i = 0; i < sb->count; i++) {
            iov[niov++] = (struct cd_iov){GRPC_SLICE_START_PTR(sb->slices[i]),
                                          GRPC_SLICE_LENGTH(sb->slices[i])};
            total += GRPC_SLICE_LENGTH(sb->slices[i]);
        }
    } else {
        flat = buffer_flatten(bb);
        small[0] = (struct cd_iov){GRPC_SLICE_START_PTR(flat), GRPC_SLICE_LENGTH(flat)};
        niov = 1;
        total = GRPC_SLICE_LENGTH(flat);
    }
    c->bytes_in += total;
    struct cd_req req = {NULL, total, iov, niov, c->authorization, &c->later};
    bool done = false;
    atomic_store(&c->later_st, LATER_ARMED);
    int rc = c->m->stream->message(c->state, &req, &done, &c->reply);
    if (iov != small)
        free(iov);
    grpc_slice_unref(flat);
    grpc_byte_buffer_destroy(bb);
    if (rc == CD_REPLY_LATER) {
        /* The waiting answer holds a reference, taken before the call is
         * let go: whoever finishes it drops it. */
        atomic_fetch_add(&c->refs, 1);
        int st = LATER_ARMED;
        if (atomic_compare_exchange_strong(&c->later_st, &st, LATER_WAITING))
            return;
        atomic_fetch_sub(&c->refs, 1); /* done came already: finish here */
        rc = 0;
    }
    atomic_store(&c->later_st, LATER_IDLE);
    if (rc != 0 || done)
        call_finish(c);
    else
        stream_recv(c);
}

/* cd_later.done: the handler's answer is in c->reply. Runs on any thread;
 * when message has not returned yet, the worker finishes the call. */
static void call_later_done(struct cd_later *l)
{
    struct call *c = container_of(l, struct call, later);
    int st = LATER_ARMED;
    if (atomic_compare_exchange_strong(&c->later_st, &st, LATER_EARLY))
        return;
    atomic_store(&c->later_st, LATER_IDLE);
    call_finish(c);
    call_unref(c);
}

static void stream_recv(struct call *c)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_buf;
    if (start_batch(c, &op, 1, on_stream_recv) != 0)
        call_abandon(c);
}

/* --- dispatch of a new call --- */

static bool is_auth_key(grpc_slice key)
{
    /* HTTP/2 header names are lower case; compared without case anyway so
     * that no spelling of the name slips past the count below. */
    static const char name[] = "authorization";
    return GRPC_SLICE_LENGTH(key) == sizeof name - 1 &&
           strncasecmp((const char *)GRPC_SLICE_START_PTR(key), name, sizeof name - 1) == 0;
}

/* The `authorization` value, copied (NULL when absent or over the cap),
 * and in *count how many `authorization` entries the call carries. */
static char *auth_header(const grpc_metadata_array *md, size_t *count)
{
    const grpc_slice *value = NULL;
    *count = 0;
    for (size_t i = 0; i < md->count; i++) {
        if (is_auth_key(md->metadata[i].key)) {
            value = &md->metadata[i].value;
            (*count)++;
        }
    }
    if (*count != 1 || GRPC_SLICE_LENGTH(*value) > MAX_AUTH_HEADER)
        return NULL;
    size_t len = GRPC_SLICE_LENGTH(*value);
    char *s = malloc(len + 1);
    if (s != NULL) {
        memcpy(s, GRPC_SLICE_START_PTR(*value), len);
        s[len] = '\0';
    }
    return s;
}

/* Two `authorization` entries: which one a proxy, a token check or a log
 * line would use is anyone's guess, so the call is refused whatever the
 * method (Health included). The values are not logged. */
static bool auth_refuse_duplicate(struct call *c)
{
    if (c->auth_count < 2)
        return false;
    /* The client decides how often this happens: a budget keeps it from
     * filling the log. */
    static struct cd_log_budget budget;
    unsigned dropped;
    if (cd_log_budget_take(&budget, &dropped)) {
        char *peer = grpc_call_get_peer(c->call);
        char name[128];
        if (c->rpc->peer_name != NULL && peer != NULL)
            c->rpc->peer_name(c->rpc->peer_ctx, peer, name, sizeof name, true);
        else
            snprintf(name, sizeof name, "%s", peer ? peer : "?");
        cd_log(CD_LOG_WARN,
               "%s from %s: %zu 'authorization' headers: refused (UNAUTHENTICATED; %u such lines "
               "dropped before this one)",
               c->m ? c->m->path : "unknown method", name, c->auth_count, dropped);
        gpr_free(peer);
    }
    cd_reply_fail(&c->reply, CAIRN_E_AUTH,
                  "%zu authorization headers: send exactly one 'authorization: Bearer <token>'",
                  c->auth_count);
    call_finish(c);
    return true;
}

static void call_dispatch(struct call *c, grpc_byte_buffer *payload)
{
    const struct cd_method *m = c->m;
    struct cd_svc *svc = c->rpc->svc;
    if (auth_refuse_duplicate(c))
        return;
    if (m == NULL) {
        cd_reply_fail(&c->reply, CAIRN_E_UNSUPPORTED, "method not implemented by cairnd");
        call_finish(c);
        return;
    }
    if (m->kind == CD_CALL_CLIENT_STREAM) {
        struct cd_req req = {NULL, 0, NULL, 0, c->authorization, NULL};
        if (m->stream->start(svc, &req, &c->state, &c->reply) != 0 || post_close(c) != 0) {
            call_finish(c);
            return;
        }
        idle_add(c);
        stream_recv(c);
        return;
    }
    /* Unary and server streaming calls arrive with their one request. */
    if (payload == NULL) {
        cd_reply_fail(&c->reply, CAIRN_E_INVAL, "request message missing");
        call_finish(c);
        return;
    }
    grpc_slice s = buffer_flatten(payload);
    c->bytes_in += GRPC_SLICE_LENGTH(s);
    struct cd_req req = {GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), NULL, 0,
                         c->authorization, NULL};
    if (m->request != NULL && cd_request_strings_check(m->request, &req, &c->reply) != 0) {
        grpc_slice_unref(s);
        call_finish(c);
        return;
    }
    if (m->kind == CD_CALL_UNARY) {
        m->unary(svc, &req, &c->reply);
        grpc_slice_unref(s);
        call_finish(c);
        return;
    }
    int rc = m->stream->start(svc, &req, &c->state, &c->reply);
    grpc_slice_unref(s);
    if (rc != 0 || post_close(c) != 0) {
        call_finish(c);
        return;
    }
    stream_send_next(c);
}

static int slot_post(struct slot *sl);

static void slot_done(struct tag *t, bool ok)
{
    struct slot *sl = container_of(t, struct slot, tag);
    struct cd_rpc *rpc = sl->w->rpc;
    if (!ok) {
        /* The server is shutting down: this request will never match. */
        grpc_metadata_array_destroy(&sl->md);
        grpc_call_details_destroy(&sl->details);
        free(sl);
        return;
    }
    struct call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        /* Nothing to answer with; dropping the reference cancels it. */
        grpc_call_unref(sl->call);
    } else {
        atomic_fetch_add(&rpc->active, 1);
        cd_metrics_add(&rpc->svc->metrics->requests, 1);
        c->ops_tag.fn = call_ops_done;
        c->close_tag.fn = call_close_done;
        c->later.done = call_later_done;
        c->rpc = rpc;
        c->m = sl->m;
        c->start_ns = now_ns();
        c->code = GRPC_STATUS_CANCELLED;
        cd_telemetry_call_start(rpc->svc->metrics,
                                sl->m != NULL ? (size_t)(sl->m - cd_methods) : SIZE_MAX);
        c->call = sl->call;
        c->md = sl->md; /* moves the metadata (and the slices it holds) */
        c->authorization = auth_header(&c->md, &c->auth_count);
        if (sl->m == NULL && cd_log_enabled(CD_LOG_DEBUG)) {
            char *method = grpc_slice_to_c_string(sl->details.method);
            cd_log(CD_LOG_DEBUG, "unimplemented method %s", method);
            gpr_free(method);
        }
    }
    grpc_byte_buffer *payload = sl->payload;
    sl->payload = NULL;
    sl->call = NULL;
    grpc_metadata_array_init(&sl->md);
    grpc_call_details_destroy(&sl->details);
    /* Repost before handling, so the next call need not wait for this one. */
    if (atomic_load(&rpc->draining) || slot_post(sl) != 0) {
        grpc_metadata_array_destroy(&sl->md);
        free(sl);
    }
    if (c != NULL)
        call_dispatch(c, payload);
    if (payload != NULL)
        grpc_byte_buffer_destroy(payload);
}

static int slot_post(struct slot *sl)
{
    struct cd_rpc *rpc = sl->w->rpc;
    grpc_call_details_init(&sl->details);
    grpc_call_error e;
    if (sl->m == NULL) {
        e = grpc_server_request_call(rpc->server, &sl->call, &sl->details, &sl->md,
                                     sl->w->cq, sl->w->cq, &sl->tag);
    } else {
        size_t i = (size_t)(sl->m - cd_methods);
        e = grpc_server_request_registered_call(
            rpc->server, rpc->handles[i], &sl->call, &sl->deadline, &sl->md,
            sl->m->kind == CD_CALL_CLIENT_STREAM ? NULL : &sl->payload, sl->w->cq,
            sl->w->cq, &sl->tag);
    }
    if (e != GRPC_CALL_OK) {
        grpc_call_details_destroy(&sl->details);
        return -1;
    }
    return 0;
}

static int slot_new(struct worker *w, const struct cd_method *m)
{
    struct slot *sl = calloc(1, sizeof *sl);
    if (sl == NULL)
        return CAIRN_E_NOMEM;
    sl->tag.fn = slot_done;
    sl->w = w;
    sl->m = m;
    grpc_metadata_array_init(&sl->md);
    if (slot_post(sl) != 0) {
        grpc_metadata_array_destroy(&sl->md);
        free(sl);
        return CAIRN_E_INVAL;
    }
    return 0;
}

/* --- workers and server lifetime --- */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            struct tag *t = ev.tag;
            t->fn(t, ev.success != 0);
        }
    }
    return NULL;
}

static void on_shutdown(struct tag *t, bool ok)
{
    (void)ok;
    struct cd_rpc *rpc = container_of(t, struct cd_rpc, shutdown_tag);
    pthread_mutex_lock(&rpc->mu);
    rpc->shutdown_done = true;
    pthread_cond_broadcast(&rpc->cv);
    pthread_mutex_unlock(&rpc->mu);
}

static grpc_server_credentials *make_creds(const struct cd_rpc_opts *o, struct cairn_err *err)
{
    if (o->tls_cert_pem == NULL)
        return grpc_insecure_server_credentials_create();
    grpc_ssl_pem_key_cert_pair pair = {o->tls_key_pem, o->tls_cert_pem};
    grpc_server_credentials *creds = grpc_ssl_server_credentials_create_ex(
        o->tls_client_ca_pem, &pair, 1,
        o->tls_client_ca_pem ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                             : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
    if (creds == NULL)
        cairn_err_set(err, CAIRN_E_INVAL, "cannot build TLS credentials from the given PEM files");
    return creds;
}

/* gRPC takes milliseconds in an int; INT_MAX is "never". */
static int ms_or_never(unsigned s)
{
    return s == 0 || s > INT_MAX / 1000 ? INT_MAX : (int)(s * 1000);
}

/* The gRPC server with cairnd's channel arguments: message sizes, flow
 * control and, unless o->limits is off, what one connection may hold.
 * NULL when gRPC could not make one. */
static grpc_server *server_create(const struct cd_rpc_opts *o)
{
    grpc_arg args[] = {
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = (int)CD_MAX_MESSAGE}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = (int)CD_MAX_MESSAGE}},
        /* A fixed receive window per stream instead of BDP probing: with
         * probing, gRPC let a fast uploader fill ~50 MB of buffers while
         * the handler waited on the disk; 4 MiB keeps the pipe full on
         * loopback (docs/operations.md, memory). */
        {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_BDP_PROBE, {.integer = 0}},
        {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, {.integer = (int)CD_RECV_WINDOW}},
        /* What one connection may hold (docs/security.md, "cairnd:
         * connections, headers and instance names"). gRPC 1.51 checks the
         * metadata size only once a header field is complete, so a huge
         * field still costs CPU before this limit applies; an operator
         * needs gRPC >= 1.53.2 or a proxy in front for that. */
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_METADATA_SIZE, {.integer = (int)o->max_header_size}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONCURRENT_STREAMS, {.integer = (int)o->max_streams}},
        {GRPC_ARG_INTEGER, GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
         {.integer = ms_or_never(o->handshake_timeout_s)}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONNECTION_IDLE_MS, {.integer = ms_or_never(o->conn_idle_s)}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONNECTION_AGE_MS, {.integer = ms_or_never(o->conn_age_s)}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
         {.integer = ms_or_never(o->conn_grace_s)}},
        /* Pings: a client may ping at most every 5 minutes without
         * calls or data; the third early ping closes the connection
         * (gRPC's defaults, written down so they cannot drift). The HPACK
         * table a client may make us keep stays at the protocol's 4 KiB. */
        {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_MAX_PING_STRIKES, {.integer = 2}},
        {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
         {.integer = 5 * 60 * 1000}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 0}},
        {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_HPACK_TABLE_SIZE_DECODER, {.integer = 4096}},
    };
    /* Without limits (a hidden test flag) only the first four apply. */
    grpc_channel_args chargs = {o->limits ? sizeof args / sizeof args[0] : 4, args};
    return grpc_server_create(&chargs, NULL);
}

/* Whether rpc serves m: a health-only server registers nothing but
 * grpc.health.v1.Health, so gRPC hands every other path to the catch-all,
 * which answers UNIMPLEMENTED before any handler or store is reached. */
static bool method_served(const struct cd_rpc *rpc, const struct cd_method *m)
{
    static const char health[] = "/grpc.health.v1.Health/";
    return !rpc->health_only || strncmp(m->path, health, sizeof health - 1) == 0;
}

/* Posts each worker's call requests (SLOTS_PER_METHOD per method, one
 * catch-all) and starts its thread; the server has started. Returns 0 or
 * an error with err filled (cd_rpc_free stops what started). */
static int workers_start(struct cd_rpc *rpc, struct cairn_err *err)
{
    int rc = 0;
    for (unsigned i = 0; i < rpc->n_workers; i++) {
        struct worker *w = &rpc->workers[i];
        for (size_t k = 0; k <= cd_methods_count; k++) {
            /* k == count: the catch-all for unknown methods, one is plenty. */
            const struct cd_method *m = k < cd_methods_count ? &cd_methods[k] : NULL;
            if (m != NULL && !method_served(rpc, m))
                continue;
            for (int s = 0; s < (m ? SLOTS_PER_METHOD : 1) && rc == 0; s++)
                rc = slot_new(w, m);
        }
        if (rc != 0) {
            cairn_err_set(err, rc, "cannot post call requests");
            return rc;
        }
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return cairn_err_set(err, CAIRN_E_NOMEM, "cannot start worker thread");
        w->started = true;
    }
    return 0;
}

int cd_rpc_start(const struct cd_rpc_opts *opts, struct cd_svc *svc, struct cd_rpc **out,
                 int *port, struct cairn_err *err)
{
    struct cd_rpc *rpc = calloc(1, sizeof *rpc);
    if (rpc == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    rpc->svc = svc;
    rpc->idle_s = opts->stream_idle_s;
    pthread_mutex_init(&rpc->idle_mu, NULL);
    pthread_mutex_init(&rpc->mu, NULL);
    pthread_cond_init(&rpc->cv, NULL);
    rpc->shutdown_tag.fn = on_shutdown;
    int rc = 0;

    rpc->server = server_create(opts);
    rpc->n_workers = opts->threads ? opts->threads : 1;
    rpc->workers = calloc(rpc->n_workers, sizeof *rpc->workers);
    rpc->handles = calloc(cd_methods_count, sizeof *rpc->handles);
    if (rpc->server == NULL || rpc->workers == NULL || rpc->handles == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto fail;
    }
    rpc->health_only = opts->health_only;
    for (size_t i = 0; i < cd_methods_count; i++) {
        if (!method_served(rpc, &cd_methods[i]))
            continue;
        rpc->handles[i] = grpc_server_register_method(
            rpc->server, cd_methods[i].path, NULL,
            cd_methods[i].kind == CD_CALL_CLIENT_STREAM ? GRPC_SRM_PAYLOAD_NONE
                                                        : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
            0);
    }
    for (unsigned i = 0; i < rpc->n_workers; i++) {
        rpc->workers[i].rpc = rpc;
        rpc->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(rpc->server, rpc->workers[i].cq, NULL);
    }
    int bound = 0;
    if (opts->external_listener) {
        /* 1.51 takes only insecure credentials for a connection from a
         * file descriptor. */
        rpc->fd_creds = grpc_insecure_server_credentials_create();
    } else {
        grpc_server_credentials *creds = make_creds(opts, err);
        if (creds == NULL) {
            rc = CAIRN_E_INVAL;
            goto fail;
        }
        bound = grpc_server_add_http2_port(rpc->server, opts->listen, creds);
        grpc_server_credentials_release(creds);
        if (bound <= 0) {
            rc = cairn_err_set(err, CAIRN_E_INVAL, "cannot listen on %s", opts->listen);
            goto fail;
        }
    }
    grpc_server_start(rpc->server);
    if ((rc = workers_start(rpc, err)) != 0)
        goto fail;
    *port = bound;
    *out = rpc;
    return 0;
fail:
    cd_rpc_free(rpc);
    return rc;
}

void cd_rpc_peer_names_set(struct cd_rpc *rpc, cd_rpc_peer_name_fn *fn, void *ctx)
{
    rpc->peer_name = fn;
    rpc->peer_ctx = ctx;
}

void cd_rpc_channel_add(struct cd_rpc *rpc, int fd)
{
    grpc_server_add_channel_from_fd(rpc->server, fd, rpc->fd_creds);
}

static bool wait_until(struct cd_rpc *rpc, const struct timespec *until)
{
    pthread_mutex_lock(&rpc->mu);
    int e = 0;
    while (!(rpc->shutdown_done && atomic_load(&rpc->active) == 0) && e == 0) {
        if (until)
            e = pthread_cond_timedwait(&rpc->cv, &rpc->mu, until);
        else
            pthread_cond_wait(&rpc->cv, &rpc->mu);
    }
    bool done = rpc->shutdown_done && atomic_load(&rpc->active) == 0;
    pthread_mutex_unlock(&rpc->mu);
    return done;
}

unsigned cd_rpc_drain(struct cd_rpc *rpc, unsigned timeout_s)
{
    if (rpc->drained || rpc->server == NULL)
        return 0;
    rpc->drained = true;
    atomic_store(&rpc->draining, true);
    grpc_server_shutdown_and_notify(rpc->server, rpc->workers[0].cq, &rpc->shutdown_tag);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_s;
    unsigned cancelled = 0;
    if (!wait_until(rpc, &until)) {
        cancelled = atomic_load(&rpc->active);
        grpc_server_cancel_all_calls(rpc->server);
        wait_until(rpc, NULL);
    }
    return cancelled;
}

void cd_rpc_free(struct cd_rpc *rpc)
{
    if (rpc == NULL)
        return;
    bool any_started = false;
    for (unsigned i = 0; rpc->workers && i < rpc->n_workers; i++)
        any_started |= rpc->workers[i].started;
    if (rpc->server != NULL) {
        if (any_started) {
            cd_rpc_drain(rpc, 0);
        } else {
            /* Start-up failed before any worker ran: drive the shutdown
             * tag ourselves on the first queue. */
            grpc_server_shutdown_and_notify(rpc->server, rpc->workers[0].cq, &rpc->shutdown_tag);
            grpc_server_cancel_all_calls(rpc->server);
            for (;;) {
                grpc_event ev = grpc_completion_queue_next(rpc->workers[0].cq,
                                                           gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
                struct tag *t = ev.tag;
                if (ev.type != GRPC_OP_COMPLETE)
                    break;
                t->fn(t, ev.success != 0);
                if (t == &rpc->shutdown_tag)
                    break;
            }
        }
        grpc_server_destroy(rpc->server);
    }
    for (unsigned i = 0; rpc->workers && i < rpc->n_workers; i++) {
        struct worker *w = &rpc->workers[i];
        if (w->cq == NULL)
            continue;
        grpc_completion_queue_shutdown(w->cq);
        if (w->started) {
            pthread_join(w->thread, NULL);
        } else {
            /* Drain what is left (failed request slots) on this thread. */
            for (;;) {
                grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
                if (ev.type == GRPC_QUEUE_SHUTDOWN)
                    break;
                struct tag *t = ev.tag;
                t->fn(t, ev.success != 0);
            }
        }
        grpc_completion_queue_destroy(w->cq);
    }
    if (rpc->fd_creds != NULL)
        grpc_server_credentials_release(rpc->fd_creds);
    free(rpc->workers);
    free(rpc->handles);
    pthread_cond_destroy(&rpc->cv);
    pthread_mutex_destroy(&rpc->mu);
    pthread_mutex_destroy(&rpc->idle_mu);
    free(rpc);
}
