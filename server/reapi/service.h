/* What an RPC handler sees, and the RPC method table.
 *
 * Handlers are plain functions over bytes: they get the serialised request
 * and fill a struct cd_reply (serialised response, or a cairn error code
 * plus a sentence that becomes the gRPC status via server/reapi/status.h).
 * They never touch gRPC calls, so they are testable without a network and the
 * call state machine in server/grpc/rpc.c stays generic.
 *
 * Handlers run on a worker thread and may block on the store (LMDB reads
 * are quick; the single writer is serialised inside the store). */
#ifndef CAIRN_SERVER_SERVICE_H
#define CAIRN_SERVER_SERVICE_H

#include "common/error.h"
#include "server/reapi/auth.h"
#include "server/telemetry/metrics.h"
#include "server/store/store.h"
#include "server/store/uploads.h"
#include "server/reapi/wire.h"

#include <protobuf-c/protobuf-c.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest gRPC message cairnd receives. Bigger messages are refused by
 * gRPC with RESOURCE_EXHAUSTED before any handler sees them. */
#define CD_MAX_MESSAGE (8u << 20)
/* Advertised max_batch_total_size_bytes: half the message limit, so a
 * full batch plus its per-blob framing always fits in one message. */
#define CD_MAX_BATCH (4u << 20)
/* ByteStream Read sends the blob in messages of at most this many bytes. */
#define CD_READ_CHUNK (1u << 20)

struct cd_claims;

/* Everything handlers share; borrowed from main(), which outlives the RPC
 * layer. auth NULL means the server is open. draining is set once, by
 * main on SIGTERM, and read by any worker (grpc.health.v1 then answers
 * NOT_SERVING); it starts false. */
struct cd_svc {
    struct cd_store *store;
    struct cd_auth *auth;
    struct cd_uploads *uploads;
    struct cd_metrics *metrics;
    atomic_bool draining;
    /* The claim table (server/reapi/claimtab.h); NULL: claims are off
     * (--no-claims) and cairn.claim.v1 answers UNIMPLEMENTED. */
    struct cd_claims *claims;
};

/* A call whose client-streaming handler answers later (server/grpc/
 * rpc.c fills done): message may return CD_REPLY_LATER with *done set
 * instead of an answer; it then keeps req->later and the reply r it was
 * given, and later, from any thread, fills r and calls later->done(later)
 * exactly once. The call (r, the handler's state) stays alive until then;
 * the state is closed after done. A write waiting on the store's group
 * commit must not hold a worker thread: other calls' commits join it. */
struct cd_later {
    void (*done)(struct cd_later *later);
};
#define CD_REPLY_LATER 1

/* One request message, borrowed for the duration of the handler call.
 * Unary calls and the first message of a server-streaming call arrive
 * contiguous in data/len (iov NULL). Client-streaming messages arrive as
 * the pieces gRPC received them in (iov/niov, data NULL, len the total),
 * so a 1 MiB Write message is not copied only to be made contiguous. */
struct cd_req {
    const uint8_t *data;
    size_t len;
    const struct cd_iov *iov;
    size_t niov;
    const char *authorization; /* `authorization` metadata or NULL */
    struct cd_later *later;     /* non-NULL: message may answer later */
};

/* The handler's answer. out is malloc'd by the handler and owned by the
 * RPC layer afterwards; it is sent only when err.code is 0. */
struct cd_reply {
    struct cairn_err err;
    uint8_t *out;
    size_t out_len;
    /* The instance the call named (set by cd_svc_authorize, truncated),
     * for the call's log line; "" when none. */
    char instance[128];
};

/* Records a failure in r (code + sentence) and returns code. */
int cd_reply_fail(struct cd_reply *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Checks access for a request under instance; on refusal fills r with
 * UNAUTHENTICATED or PERMISSION_DENIED and returns the code. Records
 * instance in r->instance either way. */
int cd_svc_authorize(const struct cd_svc *svc, const struct cd_req *req,
                     const char *instance, enum cd_access need,
                     struct cd_reply *r);

typedef void (*cd_unary_fn)(struct cd_svc *svc, const struct cd_req *req,
                            struct cd_reply *r);

/* Streaming handlers keep per-call state between messages. start gets the
 * first request message (server streaming) or an empty req (client
 * streaming); it returns 0 and sets *state, or fails with r filled. */
struct cd_stream_ops {
    int (*start)(struct cd_svc *svc, const struct cd_req *req, void **state,
                 struct cd_reply *r);
    /* Server streaming: produce the next response message into r->out, or
     * set *done (r->out NULL) when the stream is complete, or fail. */
    int (*next)(void *state, bool *done, struct cd_reply *r);
    /* Client streaming: one request message; sets *done with the final
     * reply in r, or fails, or (req->later set) sets *done and returns
     * CD_REPLY_LATER (see struct cd_later). */
    int (*message)(void *state, const struct cd_req *req, bool *done,
                   struct cd_reply *r);
    /* Client streaming: the client half-closed before *done. r gets the
     * final reply (usually an error). */
    void (*end)(void *state, struct cd_reply *r);
    /* Frees state. cancelled: the call died (client gone, deadline). */
    void (*close)(void *state, bool cancelled);
};

enum cd_call_kind { CD_CALL_UNARY, CD_CALL_SERVER_STREAM, CD_CALL_CLIENT_STREAM };

struct cd_method {
    const char *path; /* "/package.Service/Method" */
    enum cd_call_kind kind;
    cd_unary_fn unary;
    const struct cd_stream_ops *stream;
    /* The request message type (unary and server streaming), for
     * cd_request_strings_check; NULL for Write, whose in-place reader
     * (server/reapi/writereq.h) refuses a NUL in resource_name itself. */
    const ProtobufCMessageDescriptor *request;
};

/* Refuses (CAIRN_E_PARSE, r filled: INVALID_ARGUMENT) a request whose
 * top-level string fields (instance_name, resource_name, ...) hold a NUL
 * byte. protobuf-c hands strings over NUL-terminated, so "main\0pr"
 * would reach the handler, the token check and the store as "main".
 * Bytes that are not a valid message pass: the handler's unpack reports
 * them. Called by server/grpc/rpc.c before every handler that gets a request
 * with the call. */
int cd_request_strings_check(const ProtobufCMessageDescriptor *d, const struct cd_req *req,
                             struct cd_reply *r);

/* The table of every method cairnd serves (server/reapi/methods.c). */
extern const struct cd_method cd_methods[];
extern const size_t cd_methods_count;

/* Handlers, one module per service. */
void cd_capabilities_get(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r);
void cd_health_check(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r);
void cd_ac_get(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r);
void cd_ac_update(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r);
void cd_cas_find_missing(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r);
void cd_cas_batch_update(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r);
void cd_cas_batch_read(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r);
extern const struct cd_stream_ops cd_bytestream_read_ops;
extern const struct cd_stream_ops cd_bytestream_write_ops;
void cd_bytestream_query(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r);
void cd_claim_take(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r);
void cd_claim_renew(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r);
void cd_claim_release(struct cd_svc *svc, const struct cd_req *req, struct cd_reply *r);

#endif
