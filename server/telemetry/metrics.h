/* cairnd's counters, for the periodic summary and Prometheus /metrics
 * (server/telemetry/expo.h). Lock-free (C11 atomics, relaxed): any thread
 * adds; a reader (the summary, a scrape) loads them without stopping
 * anyone, so a value may be a moment behind another, never torn.
 *
 * The per-method tables are indexed by the method's position in the RPC
 * table (given once to cd_metrics_init); index CD_METRICS_METHODS_MAX is
 * "unknown method" (UNIMPLEMENTED calls). */
#ifndef CAIRN_SERVER_METRICS_H
#define CAIRN_SERVER_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Methods cairnd can have (server/reapi/methods.c has 13). */
#define CD_METRICS_METHODS_MAX 16
/* gRPC status codes 0 (OK) .. 16 (UNAUTHENTICATED). */
#define CD_METRICS_CODES 17
/* Upper bounds of the latency histogram buckets, seconds (+Inf is
 * implicit): 100 µs to 10 s, about 2.5x apart. */
#define CD_HIST_BOUNDS {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, \
                        0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
#define CD_HIST_BUCKETS 16

/* A latency histogram: counts per bucket (not cumulative: the exposition
 * sums them), the last one being above every bound, and the total in
 * nanoseconds. */
struct cd_hist {
    atomic_uint_fast64_t bucket[CD_HIST_BUCKETS + 1];
    atomic_uint_fast64_t sum_ns;
};

struct cd_metrics {
    atomic_uint_fast64_t requests;  /* calls accepted */
    atomic_uint_fast64_t errors;    /* calls finished with a non-OK status */
    atomic_uint_fast64_t ac_hits;   /* GetActionResult found and complete */
    atomic_uint_fast64_t ac_misses; /* GetActionResult NOT_FOUND (incomplete included) */
    atomic_uint_fast64_t ac_incomplete; /* ... of which: found, but a blob it names is gone */
    atomic_uint_fast64_t blobs_found;   /* FindMissingBlobs: digests present */
    atomic_uint_fast64_t blobs_missing; /* FindMissingBlobs: digests absent */
    atomic_uint_fast64_t bytes_in;  /* blob bytes received (CAS writes) */
    atomic_uint_fast64_t bytes_out; /* blob bytes sent (CAS reads) */
    atomic_uint_fast64_t verify_failures;  /* reads whose blob failed its hash */
    atomic_uint_fast64_t uploads_abandoned; /* expired by the upload TTL */
    atomic_uint_fast64_t streams_reaped;    /* Write streams cancelled when silent */
    atomic_uint_fast64_t stage_batches;     /* staging transactions synced */
    atomic_uint_fast64_t claims_granted;    /* Claim answered GRANTED */
    atomic_uint_fast64_t claims_held;       /* Claim answered HELD (a builder waits) */
    atomic_uint_fast64_t claims_ended;      /* claims ended by their result's upload */
    struct cd_hist stage_sync;              /* their commit + sync time */
    /* Calls finished, by method and gRPC status code. */
    atomic_uint_fast64_t calls[CD_METRICS_METHODS_MAX + 1][CD_METRICS_CODES];
    /* Calls running now, by method (ByteStream Write: uploads in flight). */
    atomic_int_fast64_t in_flight[CD_METRICS_METHODS_MAX + 1];
    struct cd_hist latency[CD_METRICS_METHODS_MAX + 1];
    /* Message bytes of finished calls (all methods, protobuf framing
     * included). */
    atomic_uint_fast64_t msg_bytes_in, msg_bytes_out;
    /* "/package.Service/Method" per index; borrowed (static strings). */
    const char *method_paths[CD_METRICS_METHODS_MAX];
    size_t n_methods;
};

/* Zeroes m and records the method paths (borrowed: they must outlive m).
 * Methods past CD_METRICS_METHODS_MAX are counted as unknown. Call before
 * any thread adds. */
void cd_metrics_init(struct cd_metrics *m, const char *const *paths, size_t n);

/* The table row for method index i (unknown: anything out of range). */
size_t cd_metrics_method_row(const struct cd_metrics *m, size_t i);

/* Adds one observation of ns nanoseconds to h. Thread-safe. */
void cd_hist_observe(struct cd_hist *h, uint64_t ns);

/* The bucket bounds, CD_HIST_BUCKETS of them, in seconds. */
extern const double cd_hist_bounds[CD_HIST_BUCKETS];

static inline void cd_metrics_add(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t cd_metrics_get(const atomic_uint_fast64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

#endif
