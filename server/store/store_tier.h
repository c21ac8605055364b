/* What the two files of the bucket tier share and no other part of the
 * store sees (docs/storage.md "Two tiers"):
 *
 *   store_tier.c       the bucket itself: open/close, counters, object
 *                      names, the negative cache, and writes through it
 *                      (the upload hooks store_upload.c calls, ac_put)
 *   store_tier_read.c  reads and lookups across the tiers: the public
 *                      find_missing, blob_get, reader_open, cd_reader_read,
 *                      ac_get_complete, which call the LMDB halves (*_local)
 *                      and go to the bucket for the rest
 *
 * The arrows run one way: store_tier_read.c uses store_read.c, store_ac.c
 * and store_upload.c (a blob from the bucket enters LMDB as an upload),
 * and those use store_tier.c (the upload hooks), which uses none of them
 * but store_ac.c's ac_put_local. The local copy of a written blob after
 * the ack is store_tier_read.c's, but the commit that starts it is
 * store_upload.c's: store.c gives it to cd_store_tier_open, and the hook
 * cd_store_tier_upload_done runs it through store_tier.keep. */
#ifndef CAIRN_SERVER_STORE_STORE_TIER_H
#define CAIRN_SERVER_STORE_STORE_TIER_H

#include "server/store/store_txn.h"

struct store_tier_neg;

struct store_tier {
    struct cd_s3 *s3;
    char *dir; /* where upload temp files go */
    void (*report)(void *ctx, const char *msg);
    /* store_tier_read.c's local copy after the ack, given at open:
     * cd_store_tier_upload_done runs it. */
    cd_store_tier_keep_fn *keep;
    void *report_ctx;
    unsigned neg_ttl_ms;
    pthread_mutex_t neg_mu;
    struct store_tier_neg *neg; /* STORE_TIER_NEG_SLOTS, direct-mapped */
    /* Streaming readers' threads still running (they outlive their
     * readers to finish the local copy). */
    pthread_mutex_t run_mu;
    pthread_cond_t run_cond;
    unsigned running;
    struct store_tier_rd *active; /* their fetches, for store_tier_rd_join */
    /* Local copies of written blobs still being made
     * (cd_store_tier_upload_keep), and their bytes, under run_mu. */
    unsigned keeping;
    uint64_t keep_bytes;
    atomic_uint_fast64_t puts, put_bytes, fills, fill_bytes, ac_fills, heads,
        neg_hits, errors, corrupt, shared;
};

static inline uint64_t store_tier_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline uint64_t store_tier_inst_hash(const char *instance)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)instance; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

static inline uint64_t store_tier_ld(atomic_uint_fast64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static inline void store_tier_add(atomic_uint_fast64_t *v, uint64_t n)
{
    atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

/* A message for the operator (cd_store_opts.on_tier_report), if wanted. */
__attribute__((format(printf, 2, 3))) void
cd_store_tier_report(struct store_tier *t, const char *fmt, ...);
/* A bucket call failed with rc: counted, reported, and turned into what
 * the store's callers see. Every failure to reach the bucket or to be let
 * in (403: the operator's credentials, not the client's) is CAIRN_E_RPC,
 * which the services answer with UNAVAILABLE. */
int cd_store_tier_fail(struct store_tier *t, const char *what, const char *key,
                       int rc, const struct cairn_err *err);
/* The temp file of a large upload or fetch in dir: unlinked from the
 * start (O_TMPFILE, or mkstemp and unlink where the file system has
 * none), so a crash leaves nothing behind. 0 or -errno. */
int cd_store_tier_tmp_open(const char *dir, int *out);
/* The negative cache (inst: store_tier_inst_hash of the instance; now:
 * store_tier_now_ms). has: whether d was absent from the bucket less than
 * neg_ttl_ms ago. add: remembers it absent; a collision replaces the
 * older entry, which only costs that digest a HEAD. */
bool cd_store_tier_neg_has(struct store_tier *t, uint64_t inst,
                           const struct cd_digest *d, uint64_t now);
void cd_store_tier_neg_add(struct store_tier *t, uint64_t inst,
                           const struct cd_digest *d, uint64_t now);
/* Hands over a tier_only upload's temp file after its commit (the blob
 * is in the bucket): *fd (the caller closes it), its object name (key,
 * CD_S3_MAX_KEY bytes) and its instance (CD_STORE_MAX_INSTANCE + 1
 * bytes). CAIRN_E_INVAL when the upload has no temp file. */
int cd_store_tier_upload_take(struct cd_upload *u, int *fd, char *key,
                              char *instance);

#endif
