/* A REAPI v2 cache client on the gRPC C core: Capabilities, the action
 * cache (GetActionResult, UpdateActionResult), the CAS (FindMissingBlobs,
 * BatchUpdateBlobs) and ByteStream Read/Write for blobs of any size.
 *
 * Only the protocol is assumed (docs/remote.md), so any REAPI cache works.
 * Every call has a deadline; gRPC status codes are translated to cairn
 * codes here and nowhere else (CAIRN_E_NOTFOUND for NOT_FOUND,
 * CAIRN_E_TIMEOUT for DEADLINE_EXCEEDED, CAIRN_E_AUTH for UNAUTHENTICATED
 * and PERMISSION_DENIED, CAIRN_E_RPC for transport trouble, ...); err
 * gets the server's sentence.
 *
 * Thread-safety: one struct cairn_remote may be used by several threads at
 * once (the gRPC channel is shared; every call has its own queue).
 */
#ifndef CAIRN_CLIENT_REMOTE_H
#define CAIRN_CLIENT_REMOTE_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cairn_remote;

struct cairn_remote_opts {
    const char *target;  /* "host:port" */
    bool tls;            /* grpcs:// */
    const char *ca_file; /* PEM roots for TLS; NULL: the system's */
    const char *token;   /* bearer token; NULL or "": none */
    int64_t timeout_ms;  /* deadline of each call; <= 0: 30 s */
    /* ByteStream Reads and Writes must move at least this many bytes per
     * second in every window (timeout_ms, or the time one 1 MiB message
     * takes at this rate if longer), or end with CAIRN_E_TIMEOUT (a read
     * is not resumed); a stream's whole deadline is timeout_ms + size at
     * this rate. <= 0: 256 KiB/s. */
    int64_t min_rate;
};

/* A REAPI digest: 64 lowercase hex digits and the size in bytes. */
struct cairn_remote_digest {
    char hash[65];
    int64_t size;
};

/* Opens a channel (connects lazily, on the first call). Copies what it
 * needs from o. Calls grpc_init; cairn_remote_close calls grpc_shutdown. */
int cairn_remote_open(const struct cairn_remote_opts *o,
                      struct cairn_remote **out, struct cairn_err *err);
/* Accepts NULL. No call may be in flight. */
void cairn_remote_close(struct cairn_remote *r);

struct cairn_remote_caps {
    bool sha256;          /* SHA256 among the digest functions */
    bool update_enabled;  /* may this caller write the action cache */
    int64_t max_batch;    /* max_batch_total_size_bytes (0: no limit) */
    int low_major, low_minor, high_major, high_minor;
};
int cairn_remote_capabilities(struct cairn_remote *r, const char *instance,
                              struct cairn_remote_caps *out,
                              struct cairn_err *err);

/* An ActionResult reduced to what a layer step uses: output files and
 * their node properties (REAPI OutputFile.node_properties.properties,
 * name/value strings). */
#define CAIRN_REMOTE_MAX_FILES 8
#define CAIRN_REMOTE_MAX_PROPS 8
struct cairn_remote_prop {
    char name[64];
    char value[128];
};
struct cairn_remote_file {
    char path[128];
    struct cairn_remote_digest digest;
    size_t nprops;
    struct cairn_remote_prop props[CAIRN_REMOTE_MAX_PROPS];
};
struct cairn_remote_result {
    int32_t exit_code;
    size_t nfiles;
    struct cairn_remote_file files[CAIRN_REMOTE_MAX_FILES];
};

/* CAIRN_E_NOTFOUND on a miss. A result with more files than
 * CAIRN_REMOTE_MAX_FILES, a file with more properties than
 * CAIRN_REMOTE_MAX_PROPS or a name or value too long for the arrays, or a
 * malformed one, is CAIRN_E_CORRUPT. put sends each file's properties in
 * the order given. */
int cairn_remote_ac_get(struct cairn_remote *r, const char *instance,
                        const struct cairn_remote_digest *action,
                        struct cairn_remote_result *out,
                        struct cairn_err *err);
int cairn_remote_ac_put(struct cairn_remote *r, const char *instance,
                        const struct cairn_remote_digest *action,
                        const struct cairn_remote_result *res,
                        struct cairn_err *err);

/* Sets missing[i] for each d[i] the server lacks (n <= 1024). */
int cairn_remote_find_missing(struct cairn_remote *r, const char *instance,
                              const struct cairn_remote_digest *d, size_t n,
                              bool *missing, struct cairn_err *err);

/* Uploads small blobs in one BatchUpdateBlobs (callers keep the total under
 * the server's max_batch). data is borrowed for the call. */
struct cairn_remote_blob {
    struct cairn_remote_digest digest;
    const void *data;
};
int cairn_remote_batch_update(struct cairn_remote *r, const char *instance,
                              const struct cairn_remote_blob *blobs, size_t n,
                              struct cairn_err *err);

/* Streams blob d (ByteStream Read) to sink, from byte 0. A stream that
 * breaks after making progress is resumed at the offset reached (a few
 * times). sink returns 0 or an error that stops the read. The data is not
 * verified here: the caller hashes what sink receives. *received (may be
 * NULL) gets the bytes delivered. */
typedef int (*cairn_remote_sink)(void *arg, const void *data, size_t len);
int cairn_remote_read(struct cairn_remote *r, const char *instance,
                      const struct cairn_remote_digest *d,
                      cairn_remote_sink sink, void *arg, int64_t *received,
                      struct cairn_err *err);

/* Uploads d->size bytes read from fd (from offset 0, with pread) with
 * ByteStream Write; a blob the server already has ends early and counts
 * as success. */
int cairn_remote_write(struct cairn_remote *r, const char *instance,
                       const struct cairn_remote_digest *d, int fd,
                       struct cairn_err *err);

/* cairn.claim.v1 (proto/cairn/claim/v1/claim.proto, docs/remote.md
 * "Claims"): a lease on an action digest among builders, cairnd's own
 * extension. TAKE gets it (GRANTED) or says who has it (HELD); RENEW
 * extends the caller's (GRANTED) or says it is GONE; RELEASE ends the
 * caller's (GONE). builder identifies the caller (1..128 bytes). A
 * server without the service answers CAIRN_E_UNSUPPORTED. expected_ms
 * (TAKE; 0: unknown) is how long the caller expects the step to take,
 * kept by the server with a granted claim and told to waiters in HELD
 * replies. */
enum cairn_remote_claim_op {
    CAIRN_REMOTE_CLAIM_TAKE,
    CAIRN_REMOTE_CLAIM_RENEW,
    CAIRN_REMOTE_CLAIM_RELEASE,
};
enum cairn_remote_claim_state {
    CAIRN_REMOTE_CLAIM_GRANTED = 1,
    CAIRN_REMOTE_CLAIM_HELD = 2,
    CAIRN_REMOTE_CLAIM_GONE = 3,
};
struct cairn_remote_claim {
    enum cairn_remote_claim_state state;
    int64_t remaining_ms; /* until the claim expires */
    int64_t held_ms;      /* HELD: how long its holder has had it */
    int64_t ttl_ms;       /* the ttl the server applied */
    int64_t expected_ms;  /* HELD: its holder's expected step time (0: unknown) */
};
/* A reply in another state, or an unparsable one, is CAIRN_E_CORRUPT. */
int cairn_remote_claim(struct cairn_remote *r, const char *instance,
                       const struct cairn_remote_digest *action,
                       enum cairn_remote_claim_op op, int64_t ttl_ms,
                       int64_t expected_ms, const char *builder,
                       struct cairn_remote_claim *out, struct cairn_err *err);

#endif
