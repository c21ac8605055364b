/* The one record of a finished gRPC call: server/grpc/rpc.c calls
 * cd_telemetry_call_done where a call ends, and it feeds both the
 * counters (struct cd_metrics: by method and code, latency, bytes) and
 * the call log line (debug for every call; info for a failed one, a
 * NOT_FOUND excepted: a cache miss is an answer, not a failure; at info
 * at most 100 such lines a second, the next one naming how many were
 * dropped).
 * Thread-safe: atomics and one fprintf. */
#ifndef CAIRN_SERVER_CALL_H
#define CAIRN_SERVER_CALL_H

#include "server/telemetry/metrics.h"

#include <stddef.h>
#include <stdint.h>

/* Writes the call's peer ("ipv4:1.2.3.4:5678") into out; called only
 * when a line is written (naming the peer costs an allocation in gRPC). */
typedef void cd_call_peer_fn(void *ctx, char *out, size_t n);

struct cd_call_record {
    size_t method;          /* index in the method table; out of range: unknown */
    const char *path;       /* "/pkg.Service/Method"; NULL: unknown */
    int code;               /* gRPC status code, 0..16 */
    uint64_t duration_ns;   /* arrival to status sent */
    uint64_t bytes_in;      /* request message bytes */
    uint64_t bytes_out;     /* response message bytes */
    const char *instance;   /* instance name, "" if none; borrowed */
    const char *code_name;  /* "NOT_FOUND"...; borrowed */
    const char *details;    /* status details of a failure; borrowed; never a token */
    cd_call_peer_fn *peer;  /* may be NULL */
    void *peer_ctx;
};

/* A call of method index `method` started (in-flight gauge). */
void cd_telemetry_call_start(struct cd_metrics *m, size_t method);

/* The call started with cd_telemetry_call_start ended as r says. */
void cd_telemetry_call_done(struct cd_metrics *m, const struct cd_call_record *r);

#endif
