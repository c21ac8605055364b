/* The Prometheus text exposition format (version 0.0.4) for cairnd's
 * /metrics: cd_expo_render writes every metric family of struct
 * cd_metrics plus what the caller gathered at scrape time (store totals,
 * process figures, build info). The family writers are public for the
 * tests and for anyone adding a family.
 *
 * Rendering only loads atomics and formats text: it takes no lock. Not
 * thread-safe per struct cd_expo (one per scrape). */
#ifndef CAIRN_SERVER_EXPO_H
#define CAIRN_SERVER_EXPO_H

#include "common/buf.h"
#include "server/telemetry/metrics.h"

#include <stdbool.h>
#include <stdint.h>

#define CD_EXPO_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A scrape's output: text appended to *b; the first failure (out of
 * memory, past b's cap) sticks in err and later writes do nothing. */
struct cd_expo {
    struct cairn_buf *b;
    int err;
};

/* "# HELP name help" and "# TYPE name type" (type: counter, gauge,
 * histogram). help must not hold a newline or backslash (it is ours). */
void cd_expo_family(struct cd_expo *e, const char *name, const char *type, const char *help);

/* One sample line: name{k1="v1",...} value. labels is NULL or a list of
 * key, value pairs ended by NULL; values are escaped (\\, \", \n). */
void cd_expo_u64(struct cd_expo *e, const char *name, const char *const *labels, uint64_t v);
void cd_expo_double(struct cd_expo *e, const char *name, const char *const *labels, double v);

/* name_bucket lines (cumulative, le="+Inf" last), name_sum (seconds) and
 * name_count for h under labels (as above, at most 6 pairs). */
void cd_expo_hist(struct cd_expo *e, const char *name, const char *const *labels,
                  const struct cd_hist *h);

/* What a scrape adds beside the counters: gathered by the caller. */
struct cd_expo_info {
    const char *version, *key_scheme, *grpc_version; /* build info labels */
    bool store;                 /* the store figures below are set */
    uint64_t store_bytes, store_limit, store_blobs, store_ac_entries, store_ac_bytes;
    uint64_t evictions, evicted_bytes, quarantined, quarantined_bytes;
    uint64_t pending_uploads;   /* uploads with staged data (parked included) */
    bool bucket;                /* --backend: the bucket figures below are set */
    uint64_t bucket_puts, bucket_put_bytes, bucket_fills, bucket_fill_bytes;
    uint64_t bucket_ac_fills, bucket_heads, bucket_neg_hits, bucket_errors;
    uint64_t bucket_corrupt, bucket_shared;
    bool process;               /* the process figures below are set */
    double cpu_seconds, start_time_seconds;
    uint64_t resident_bytes, virtual_bytes, open_fds, max_fds;
};

/* Writes every family. Returns 0 or e->err (CAIRN_E_NOMEM, CAIRN_E_TOOBIG). */
int cd_expo_render(struct cd_expo *e, const struct cd_metrics *m, const struct cd_expo_info *info);

#endif
