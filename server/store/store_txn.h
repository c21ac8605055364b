/* What the files of cairnd's LMDB store share and nobody else sees: the
 * store's struct, the records kept in LMDB, and the helpers each part
 * needs from the others. Private to server/store/store*.c:
 *
 *   store.c         open/close, the LMDB environment and tables, stats,
 *                   maintain (the top: it starts the other parts' threads)
 *   store_txn.c     the bottom every part uses: LMDB codes, record keys,
 *                   the running totals, the read-txn pool, write txns
 *   store_read.c    CAS reads: find_missing, whole-blob get, cd_reader,
 *                   and the walk over a blob's chunks
 *   store_verify.c  read verification, quarantine, the hasher thread, scrub
 *   store_upload.c  upload sessions: begin, write, publish, commit, expiry
 *   store_stage.c   upload buffers and the stager thread (batched writes)
 *   store_group.c   publishing blobs, many per txn (the group commit;
 *                   group.c is its queue and knows no LMDB)
 *   store_lru.c     the access queue and its flusher (batched LRU updates)
 *   store_evict.c   reader pins, LRU eviction, chunk garbage removal
 *   store_ac.c      the action cache
 *   store_tier.c    the bucket under LMDB (cd_store_opts.s3): open, names,
 *                   counters, negative cache; writes through it (the
 *                   upload hooks, the public ac_put)
 *   store_tier_read.c  reads and lookups across the tiers: the public
 *                   find_missing, blob_get, reader_open, cd_reader_read,
 *                   cd_reader_close, ac_get and ac_get_complete, which
 *                   call the LMDB ones below (*_local) and go to the
 *                   bucket for the rest (store_tier.h: what the two share)
 *
 * Every MDB_* error is translated by cd_store_mdb_err and nowhere else.
 * Functions here take the store's locks themselves unless they say
 * otherwise; none is part of server/store/store.h's contract. */
#ifndef CAIRN_SERVER_STORE_STORE_TXN_H
#define CAIRN_SERVER_STORE_STORE_TXN_H

#include "cachekey/digest.h"
#include "common/error.h"
#include "server/store/group.h"
#include "server/store/store.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* kind byte, u16 instance length, instance, hash, u64 size */
#define STORE_KEY_MAX (1 + 2 + CD_STORE_MAX_INSTANCE + CK_SHA256_LEN + 8)
#define STORE_KIND_BLOB 'B'
#define STORE_KIND_AC 'A'
#define STORE_CHUNK_KEY 12 /* u64 data id, u32 chunk index */
#define STORE_POOL_MAX 64  /* reset read txns kept for reuse */
#define STORE_QUEUE_MAX 8192
#define STORE_QUEUE_BYTES (1u << 20)
/* Verified data ids remembered (direct-mapped: a collision only means
 * hashing that blob again). */
#define STORE_VERIFIED_SLOTS 4096

/* Items of one group commit at most (store_group.c): a BatchUpdateBlobs of
 * 1,000 blobs fits one, and so does everything 64 writers have queued. */
#define STORE_GROUP_ITEMS 4096
/* Unstaged bytes (dirty pages) one group commit takes at most, past its
 * first item. */
#define STORE_GROUP_BYTES (16ull * CD_STORE_CHUNK)

/* Opaque outside their files (store_evict.c, store_verify.c,
 * store_tier.c). */
struct store_pin;
struct store_hasher;
struct store_tier;
struct store_tier_up;
struct store_tier_rd;

/* The layout version the stats record carries; a store of another one is
 * refused at open. */
#define STORE_SCHEMA 1u

/* The running totals, one record in the "meta" table, rewritten in every
 * txn that changes them, so open never counts anything. Host byte order:
 * an LMDB file is not portable between architectures anyway. */
struct store_stats_rec {
    uint32_t schema;
    uint32_t reserved;
    uint64_t blobs;
    uint64_t bytes;
    uint64_t ac_entries;
    uint64_t ac_bytes;
    uint64_t next_seq; /* next LRU access sequence number */
    uint64_t next_id;  /* every data id in the file is below this */
};

/* Value of the "entries" table (blobs and action results alike). */
struct store_meta {
    uint64_t size; /* blob size, or ActionResult length */
    uint64_t seq;  /* key of this entry in the "lru" table */
    uint64_t id;   /* chunk data id (blobs); 0 for action results */
};

struct store_key {
    size_t len;
    uint8_t b[STORE_KEY_MAX];
};

/* A blob (by data id, never reused) whose content hashed to its digest. */
struct store_verified {
    uint64_t id;
    time_t at; /* monotonic seconds */
};

struct cd_store {
    MDB_env *env;
    MDB_dbi dbi_meta, dbi_entries, dbi_lru, dbi_chunks, dbi_ac, dbi_pending,
        dbi_garbage;
    uint64_t max_size; /* 0: no cap */
    unsigned ttl_s;
    size_t page;
    uint8_t empty_hash[CK_SHA256_LEN];

    /* Reset read txns: renewing one costs no lock-table mutex. */
    pthread_mutex_t pool_mu;
    MDB_txn *pool[STORE_POOL_MAX];
    size_t npool;

    /* Access queue: entry keys of blobs/results read since the last flush,
     * each as u16 length + key, deduplicated through a hash set. */
    pthread_mutex_t q_mu;
    uint8_t *q_buf;
    size_t q_len;
    size_t q_n;
    uint64_t *q_set;       /* 2 * STORE_QUEUE_MAX slots, 0 = free */
    pthread_cond_t q_cond; /* wakes the flusher */
    bool q_stop;
    bool flusher_started;
    pthread_t flusher;

    /* Data ids with an open cd_reader: eviction passes them over. */
    pthread_mutex_t pin_mu;
    struct cd_store_pin *pins;
    size_t npins, cap_pins;

    /* Live uploads, for cd_store_maintain's expiry. */
    pthread_mutex_t up_mu;
    struct cd_upload *uploads;

    pthread_mutex_t ctr_mu;
    uint64_t next_id; /* in-memory allocator; persisted lazily */
    /* Since open; atomics (not under ctr_mu) so that cd_store_stats_get,
     * called by a metrics scrape, waits on no lock a call takes. */
    atomic_uint_fast64_t evictions, evicted_bytes;
    atomic_uint_fast64_t quarantined, quarantined_bytes;
    /* cd_store_stats_get's own read txn (reset between calls: a renew
     * takes no LMDB lock), under stats_mu, which only it takes. */
    pthread_mutex_t stats_mu;
    MDB_txn *stats_txn;
    void (*on_stage)(void *ctx, uint64_t ns);
    void *on_stage_ctx;
    uint64_t stage_used; /* bytes of STORE_STAGE_BUDGET held by uploads */
    size_t stage_batch;  /* whole chunks */

    /* The stager thread writes full upload buffers while their uploads go
     * on filling their other buffer: receiving and hashing overlap with
     * the disk (docs/storage.md). FIFO of uploads with a buffer queued. */
    pthread_mutex_t sg_mu;
    pthread_cond_t sg_cond; /* wakes the stager */
    pthread_cond_t sg_done; /* a stage finished (broadcast) */
    struct cd_upload *sg_head, *sg_tail;
    bool sg_stop;
    bool stager_started;
    pthread_t stager;

    /* Read verification (docs/storage.md "Verification"): blobs verified
     * within verify_ttl_s are served without hashing them again. */
    bool verify_off;
    unsigned verify_ttl_s;
    pthread_mutex_t vf_mu;
    struct store_verified *verified; /* STORE_VERIFIED_SLOTS */
    unsigned hashers; /* running store_hasher threads, under vf_mu */

    struct store_tier *tier; /* the bucket; NULL: LMDB only */
    /* Group commit (store_group.c): every blob is published through it,
     * so concurrent small writes share one txn and one sync. */
    struct cd_group *group;
};

/* One blob to publish in a group commit (store_group.c): verified, with
 * its first nstaged chunks already staged under data id and the rest of
 * its bytes (tail, borrowed until the item is done) to write. */
struct store_pub {
    struct cd_group_item item; /* item.rc: 0, CAIRN_E_FULL, ... */
    struct store_key key;
    uint64_t size;
    uint64_t id;
    uint32_t nstaged;
    bool pending;        /* a "pending" record exists for id */
    const uint8_t *tail;
    size_t tail_len;
    bool dup;            /* out: the blob was there already (rc 0) */
};

struct cd_upload {
    struct cd_store *st;
    struct cd_upload *prev, *next; /* st->uploads, under st->up_mu */
    bool listed;                   /* under st->up_mu */
    pthread_mutex_t mu;            /* owner ops vs. cd_store_maintain */
    int err; /* sticky: set by a failed stage or by expiry */
    struct store_key key;
    struct cd_digest d;
    uint64_t id;
    uint64_t off;
    uint32_t nstaged; /* chunks written to LMDB so far */
    bool pending;     /* a "pending" record exists for id */
    /* Two buffers: one fills while the stager writes the other. mmap'd,
     * so freeing them returns the memory to the system at once. */
    uint8_t *bufs[2];
    uint8_t *buf; /* the one filling: data not yet staged */
    size_t blen;
    size_t cap;      /* bytes a buffer holds: a multiple of CD_STORE_CHUNK,
                      * or the whole blob when it is smaller */
    size_t reserved; /* of st->stage_used, given back with the buffers */
    /* Under st->sg_mu: a buffer is queued for or being written by the
     * stager (sg_p, sg_len), and the error of the last stage. While
     * staging, the stager owns nstaged and pending. */
    bool staging;
    int sg_err;
    const uint8_t *sg_p;
    size_t sg_len;
    struct cd_upload *sg_next;
    struct ck_sha256 *h;
    time_t last; /* monotonic seconds of the last call */
    /* The bytes kept for the bucket PUT at commit (store_tier.c); NULL
     * until the first write. tier_skip: the upload is a fill from the
     * bucket, which needs no PUT. tier_only: the bytes go to the tier's
     * temp file alone (a blob past one chunk with a bucket): nothing is
     * buffered or staged in LMDB while it arrives; after the bucket has
     * it, commit hands the temp file to cd_store_tier_upload_done, which
     * fills LMDB off the caller's path. */
    struct store_tier_up *tier;
    bool tier_skip;
    bool tier_only;
};

struct cd_reader {
    struct cd_store *st;
    struct store_key key;
    uint64_t id;
    uint64_t size;
    /* While verifying (cd_reader_verify): either the hash of [0, hashed)
     * (h), or a thread hashing the whole blob (bg) while reads go on from
     * hashed. */
    struct ck_sha256 *h;
    struct store_hasher *bg;
    uint64_t hashed;
    /* A blob only the bucket has, streamed while LMDB fills (store_tier.c);
     * then id is 0 and nothing above is used. */
    struct store_tier_rd *trd;
};

/* What one txn's eviction took (cd_store_evict), for the counters. */
struct store_evicted {
    uint64_t blobs, bytes;
};

/* --- small helpers (inline: every part uses them) ----------------------- */

static inline void store_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t store_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static inline time_t store_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static inline bool store_is_empty(const struct cd_store *st,
                                  const struct cd_digest *d)
{
    return d->size == 0 && memcmp(d->hash, st->empty_hash, CK_SHA256_LEN) == 0;
}

static inline void store_chunk_key(uint8_t k[STORE_CHUNK_KEY], uint64_t id,
                                   uint32_t idx)
{
    store_be64(k, id);
    k[8] = (uint8_t)(idx >> 24);
    k[9] = (uint8_t)(idx >> 16);
    k[10] = (uint8_t)(idx >> 8);
    k[11] = (uint8_t)idx;
}

/* --- store_txn.c: keys, totals, transactions --------------------------- */

/* The one place MDB_* and errno values from LMDB become cairn codes. */
int cd_store_mdb_err(int rc);
/* Builds the entry key of digest d under instance. Returns 0 or
 * CAIRN_E_INVAL (instance too long, negative size). */
int cd_store_key_make(char kind, const char *instance,
                      const struct cd_digest *d, struct store_key *k);
/* The totals record of txn's snapshot (defaults on a new file), and its
 * rewrite. Return 0, CAIRN_E_CORRUPT or an LMDB code. */
int cd_store_stats_load(struct cd_store *st, MDB_txn *txn,
                        struct store_stats_rec *s);
int cd_store_stats_save(struct cd_store *st, MDB_txn *txn,
                        const struct store_stats_rec *s);
/* The entry of key in txn. Returns 0, CAIRN_E_NOTFOUND, CAIRN_E_CORRUPT. */
int cd_store_meta_get(struct cd_store *st, MDB_txn *txn,
                      const struct store_key *key, struct store_meta *m);
/* A read txn from the pool (or a new one); end gives it back reset. */
int cd_store_rtxn_begin(struct cd_store *st, MDB_txn **out);
void cd_store_rtxn_end(struct cd_store *st, MDB_txn *t);
/* Commits a write txn (LMDB aborts it on failure). */
int cd_store_wtxn_commit(MDB_txn *txn);
/* The write txns that change the totals: begin loads them into *s (0 and
 * *out, or an error with nothing to abort); end saves s and commits when
 * rc is 0, else aborts, and returns rc or the save's or commit's error. */
int cd_store_wtxn_begin(struct cd_store *st, MDB_txn **out,
                        struct store_stats_rec *s);
int cd_store_wtxn_end(struct cd_store *st, MDB_txn *txn,
                      const struct store_stats_rec *s, int rc);
/* Makes every commit so far durable; called before acknowledging. */
int cd_store_sync(struct cd_store *st);

/* --- store_lru.c: batched access times --------------------------------- */

/* Queue accesses for the flusher; never block on LMDB. */
void cd_store_touch_n(struct cd_store *st, const struct store_key *k, size_t n);
void cd_store_touch(struct cd_store *st, const struct store_key *k);
/* Writes what is queued into the LRU in small txns. */
int cd_store_access_flush(struct cd_store *st);
/* Applies everything queued inside the caller's write txn (before an
 * eviction picks its victims). */
int cd_store_access_apply_all(struct cd_store *st, MDB_txn *txn,
                              struct store_stats_rec *s);
/* The flusher thread's body; arg is the store. */
void *cd_store_flusher_main(void *arg);

/* --- store_evict.c: pins, eviction, garbage ---------------------------- */

/* Data ids with an open reader, which eviction passes over while it can.
 * pin returns 0 or CAIRN_E_NOMEM. */
int cd_store_pin(struct cd_store *st, uint64_t id);
void cd_store_unpin(struct cd_store *st, uint64_t id);
/* Removes all chunks of id, then its record in marker (dbi_pending or
 * dbi_garbage), in bounded txns. */
int cd_store_chunks_drop(struct cd_store *st, MDB_dbi marker, uint64_t id);
/* Drops every id listed in marker (see cd_store_chunks_drop). */
int cd_store_sweep(struct cd_store *st, MDB_dbi marker);
/* Evicts in txn until need more bytes fit under max_size; victims' chunks
 * go to the garbage table (swept after the commit), counts to *ev.
 * Returns 0, CAIRN_E_FULL or an LMDB code. */
int cd_store_evict(struct cd_store *st, MDB_txn *txn, struct store_stats_rec *s,
                   uint64_t need, struct store_evicted *ev);
/* Adds a committed eviction to the store's counters. */
void cd_store_evicted_account(struct cd_store *st,
                              const struct store_evicted *ev);

/* --- store_txn.c: the walk over a blob's chunks ------------------------ */

/* Hands fn a piece of a blob's bytes, borrowed from the map until the
 * txn ends; a non-zero return stops the walk. */
typedef int cd_store_piece_fn(void *ctx, const uint8_t *p, size_t n);
/* Walks bytes [off, off + n) of blob id (size bytes) inside txn, piece by
 * piece straight from the map (a large blob's walked pages leave this
 * process's page tables). Returns 0, fn's error, CAIRN_E_CORRUPT (a chunk
 * the entry promises is missing or short) or an LMDB code. */
int cd_store_chunks_walk(struct cd_store *st, MDB_txn *txn, uint64_t id,
                         uint64_t size, uint64_t off, uint64_t n,
                         cd_store_piece_fn *fn, void *ctx);
/* cd_store_chunks_walk in a read txn of its own, after checking that key
 * still names data id (CAIRN_E_NOTFOUND when it was evicted meanwhile). */
int cd_store_blob_walk(struct cd_store *st, const struct store_key *key,
                       uint64_t id, uint64_t size, uint64_t off, uint64_t n,
                       cd_store_piece_fn *fn, void *ctx);

/* --- store_verify.c: verification and quarantine ----------------------- */

/* Whether blob id hashed to its digest within verify_ttl_s; marking
 * records that it just did. */
bool cd_store_verified_recently(struct cd_store *st, uint64_t id);
void cd_store_verified_mark(struct cd_store *st, uint64_t id);
/* Finishes h and compares it with k's digest: 0 (id marked verified) or
 * CAIRN_E_CORRUPT (the caller passes it to cd_store_corrupt_check). */
int cd_store_verify_end(struct cd_store *st, const struct store_key *k,
                        uint64_t id, struct ck_sha256 *h);
/* Quarantines blob k (data id) when rc is CAIRN_E_CORRUPT; returns rc or
 * the quarantine's error. */
int cd_store_corrupt_check(struct cd_store *st, const struct store_key *k,
                           uint64_t id, int rc);
/* Feeds a read of n bytes at offset, now in buf, to r's verification;
 * CAIRN_E_CORRUPT when it completes the blob and the hash is wrong. */
int cd_store_reader_check(struct cd_reader *r, uint64_t offset, const void *buf,
                          size_t n);
/* Waits for r's hasher thread (asking it to stop when stop is set), frees
 * it and returns its result; got receives the hash. */
int cd_store_hasher_join(struct cd_reader *r, bool stop,
                         uint8_t got[CK_SHA256_LEN]);

/* --- store_stage.c: upload buffers and the stager ----------------------- */

/* Maps u's buffer (a batch when the budget allows, else a chunk); frees
 * both buffers and returns the budget. */
int cd_store_buf_alloc(struct cd_upload *u);
void cd_store_buf_free(struct cd_upload *u);
/* Waits until u has no stage in flight; returns that stage's error. */
int cd_store_stage_wait(struct cd_upload *u);
/* Queues u's full buffer for the stager and switches buffers. */
int cd_store_stage_async(struct cd_upload *u);
/* Writes len bytes at p (whole chunks) as u's next chunks in one txn. */
int cd_store_stage(struct cd_upload *u, const uint8_t *p, size_t len);
/* The stager thread's body; arg is the store. */
void *cd_store_stager_main(void *arg);

/* --- store_group.c: publishing blobs, many per txn ------------------------ */

/* The store's cd_group_run_fn (ctx: the store): one write txn, every
 * item's entry, chunks and LRU record, one commit; its fdatasync makes the
 * previous batch durable, and cd_store_group_sync (the queue's sync) the
 * last one. An item
 * that fails alone (over max_size, or an LMDB error while it is applied,
 * after which the txn is redone without it) gets its own code; a failed
 * commit or sync fails the batch. Successful items are marked verified
 * (their bytes were hashed on the way in). */
int cd_store_group_run(void *ctx, struct cd_group_item *batch);
/* The queue's cd_group_sync_fn: cd_store_sync. */
int cd_store_group_sync(void *ctx);
/* Publishes the n items (through the group queue) and waits; each item's
 * item.rc and dup say how it went. */
void cd_store_publish(struct cd_store *st, struct store_pub **pubs, size_t n);

/* --- the LMDB halves of the public calls the tier files wrap ---------- */

int cd_store_find_missing_local(struct cd_store *st, const char *instance,
                                const struct cd_digest *digests, size_t n,
                                bool *missing);
int cd_store_blob_get_local(struct cd_store *st, const char *instance,
                            const struct cd_digest *d, size_t max, void **data);
int cd_store_reader_open_local(struct cd_store *st, const char *instance,
                               const struct cd_digest *d, struct cd_reader **out);
/* cd_reader_read of a reader on LMDB (r->trd unset), offset <= size and
 * 0 < n <= size - offset checked by the caller; cd_reader_close of any
 * reader but its tier part. */
int cd_reader_read_local(struct cd_reader *r, uint64_t offset, void *buf,
                         size_t n, size_t *got);
void cd_reader_close_local(struct cd_reader *r);
int cd_store_ac_get_complete_local(struct cd_store *st, const char *instance,
                                   const struct cd_digest *action,
                                   cd_store_refs_fn refs, void *ctx, void **data,
                                   size_t *len, size_t *missing);
int cd_store_ac_put_local(struct cd_store *st, const char *instance,
                          const struct cd_digest *action, const void *data,
                          size_t len);

/* --- store_tier.c: the bucket (store_tier.h has the rest) ----------------- */

/* How long find_missing remembers that the bucket lacked a blob. */
#define STORE_TIER_NEG_TTL_MS 2000
/* The object name of a blob (kind STORE_KIND_BLOB: "cas/...") or action
 * result (STORE_KIND_AC: "ac/...") in out (cap bytes, NUL included):
 * "<kind>/<escaped instance>/<sha256 hex>-<size>". Returns 0,
 * CAIRN_E_INVAL (instance too long, negative size), CAIRN_E_TOOBIG. */
int cd_store_tier_key(char kind, const char *instance, const struct cd_digest *d,
                   char *out, size_t cap);
/* The instance name as one path segment: letters, digits and '-' as they
 * are, every other byte as '_' and two lower-case hex digits, "" as "_".
 * Injective, and free of '/', '.' and '%' (no dot segments, nothing a URL
 * layer could decode). Returns 0 or CAIRN_E_TOOBIG (cap too small). */
int cd_store_tier_instance_escape(const char *instance, char *out, size_t cap);
/* The local copy of a written blob after the ack (store_tier_read.c's
 * cd_store_tier_upload_keep). */
typedef void cd_store_tier_keep_fn(struct cd_upload *u);
/* Sets up st->tier when opts->s3 is set (nothing otherwise), with keep as
 * what cd_store_tier_upload_done runs: store.c passes the read side's
 * function, so the write hooks below reach it without naming it (the
 * calls between the parts run one way, README.md). close accepts a store
 * without a tier, and waits for the tier's threads (they use the store:
 * call it before anything else is torn down). */
int cd_store_tier_open(struct cd_store *st, const struct cd_store_opts *opts,
                       cd_store_tier_keep_fn *keep, struct cairn_err *err);
void cd_store_tier_close(struct cd_store *st);
void cd_store_tier_stats(struct cd_store *st, struct cd_store_stats *out);
/* Upload hooks, called only when st->tier is set: write keeps the n
 * bytes at u->off for the PUT; commit, after the digest check and before
 * the blob is published, puts the blob in the bucket (CAIRN_E_RPC when it
 * is unreachable); free drops what write kept. */
int cd_store_tier_upload_write(struct cd_upload *u, const void *p, size_t n);
/* The same write-through for whole blobs in memory (BatchUpdateBlobs):
 * for each i in which[0..n), d[i].size bytes of data[i], already
 * verified, PUT before it is published, in parallel (bounded by the s3
 * module). 0 when every one is in the bucket; else CAIRN_E_RPC (or
 * CAIRN_E_NOMEM) and the caller counts none as written. */
int cd_store_tier_put_many(struct cd_store *st, const char *instance,
                           const struct cd_digest *d, const void *const *data,
                           const size_t *which, size_t n);
int cd_store_tier_upload_commit(struct cd_upload *u);
/* After a tier_only upload's commit succeeded (the blob is in the
 * bucket): runs the keep given to cd_store_tier_open. */
void cd_store_tier_upload_done(struct cd_upload *u);
/* That keep, given by store.c: takes a tier_only upload's temp file and
 * stores the blob in LMDB from it in a thread of its own, off the
 * caller's path; until that is done, readers on this node are served
 * from the temp file. Never fails the write: a local copy that cannot
 * be made (no room, too many in flight, a disk error) is reported and
 * skipped, and the first read fills LMDB from the bucket instead. */
void cd_store_tier_upload_keep(struct cd_upload *u);
void cd_store_tier_upload_free(struct cd_upload *u);

/* --- store_upload.c ----------------------------------------------------- */

/* Expires uploads idle for upload_ttl_s; *ids (malloc'd) lists those with
 * staged chunks for the caller to drop. Returns 0 or CAIRN_E_NOMEM. */
int cd_store_uploads_expire(struct cd_store *st, uint64_t **ids, size_t *nids);

#endif
