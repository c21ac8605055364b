/* cairnd's storage: content-addressed blobs and action results in one LMDB
 * environment (docs/storage.md says why it is laid out as it is).
 *
 * - Blobs are split into CD_STORE_CHUNK-byte chunks, so values stay small,
 *   reads stream from the memory map, and no upload needs one huge write
 *   transaction.
 * - Uploads are hashed while they stream and become visible only after the
 *   digest and size check, in one commit; a crash leaves no partial blob
 *   visible, and leftovers are removed at the next open without scanning
 *   the data.
 * - A persistent LRU (last-access order in LMDB) and a size cap drive
 *   eviction; access-time updates are batched so readers never wait on the
 *   single LMDB writer.
 * - Instance names are separate namespaces: the same digest under two
 *   instances is two entries.
 * - The empty blob always exists.
 *
 * Thread-safety: every function may be called from any thread; a struct
 * cd_upload or cd_reader is used by one thread at a time (it may move
 * between threads). Every reader and upload must be closed/committed/
 * aborted before cd_store_close.
 *
 * With a bucket under LMDB (cd_store_opts.s3; docs/storage.md "Two
 * tiers"), the calls below keep their contracts and add one code:
 * CAIRN_E_RPC, the bucket could not be reached or refused the request.
 * cd_upload_commit, cd_store_blob_put and cd_store_ac_put return it when
 * the bucket did not take the write (then nothing is stored anywhere);
 * cd_store_reader_open, cd_reader_read and cd_store_blob_get when only the
 * bucket has the blob. find_missing and the action-cache reads answer
 * "missing" instead. An object in the bucket that does not match its
 * digest is not found (reader reads: CAIRN_E_CORRUPT before the last
 * bytes).
 *
 * Instance names longer than CD_STORE_MAX_INSTANCE bytes are refused with
 * CAIRN_E_INVAL by every function that takes one; a negative digest size
 * is simply not found (missing).
 */
#ifndef CAIRN_SERVER_STORE_H
#define CAIRN_SERVER_STORE_H

#include "cachekey/digest.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CD_STORE_CHUNK (1u << 20)
#define CD_STORE_MAX_INSTANCE 256 /* bytes of an instance name */
#define CD_STORE_MAX_AC_RESULT (4u << 20) /* bytes of one ActionResult */
/* Upload bytes staged per write txn (cd_store_opts.stage_batch): the
 * default, and the most the store uses (a quarter of its staging memory
 * budget, so that two large uploads always get full buffers). */
#define CD_STORE_STAGE_BATCH_DEFAULT (8u * CD_STORE_CHUNK)
#define CD_STORE_STAGE_BATCH_MAX (64u * CD_STORE_CHUNK)

/* A REAPI digest: sha256 and size in bytes. */
struct cd_digest {
    uint8_t hash[CK_SHA256_LEN];
    int64_t size;
};

struct cd_store;
struct cd_s3; /* server/s3/s3.h */

struct cd_store_opts {
    const char *dir;       /* LMDB environment directory (created) */
    uint64_t max_size;     /* bytes of blob data + action results kept;
                            * eviction above; 0 means no cap */
    unsigned upload_ttl_s; /* abandoned uploads are dropped after this */
    size_t stage_batch;    /* bytes an upload buffers and stages per write
                            * txn, rounded down to whole chunks, at most
                            * CD_STORE_STAGE_BATCH_MAX; 0: the default
                            * (CD_STORE_STAGE_BATCH_DEFAULT). */
    bool verify_off;       /* reads never hash (cd_reader_verify and
                            * cd_store_blob_get serve what is stored) */
    unsigned verify_ttl_s; /* a blob that hashed to its digest within
                            * this many seconds (in this process: on a
                            * read, a scrub or its upload) is not hashed
                            * again by reads; 0: every read hashes */
    bool scrub;            /* open for cd_store_scrub, possibly beside a
                            * running server: keeps the file's map size and
                            * leaves pending uploads alone */
    /* Called (may be NULL) after each staging transaction of upload data
     * committed, with how long it took (writes and sync), on the stager
     * thread: for metrics. ctx is borrowed until cd_store_close. */
    void (*on_stage)(void *ctx, uint64_t ns);
    void *on_stage_ctx;
    /* The durable tier (docs/storage.md "Two tiers"): NULL keeps the
     * store LMDB only. With a bucket, every blob and action result is in
     * the bucket before a call that stores it returns 0, and reads,
     * find_missing and the action-cache check go to the bucket for what
     * LMDB lacks. Borrowed until cd_store_close. */
    struct cd_s3 *s3;
    /* Called (may be NULL) with a line worth a warning in the log: the
     * bucket unreachable, an object in it that is corrupt. Any thread. */
    void (*on_tier_report)(void *ctx, const char *msg);
    void *on_tier_ctx;
};

/* Opens or creates the store. Returns 0, CAIRN_E_DB, negative errno; err
 * says what. */
int cd_store_open(const struct cd_store_opts *opts, struct cd_store **out,
                  struct cairn_err *err);
/* Flushes batched access times and closes. Accepts NULL. */
void cd_store_close(struct cd_store *st);

/* --- CAS --- */

/* Sets missing[i] for each of the n digests that is not stored under
 * instance. The found ones count as accessed (LRU). Returns 0 or CAIRN_E_DB. */
int cd_store_find_missing(struct cd_store *st, const char *instance,
                          const struct cd_digest *digests, size_t n,
                          bool *missing);

/* Stores a whole blob (BatchUpdateBlobs). Verifies size and sha256 first.
 * Returns 0 (also when it was already present), CAIRN_E_DIGEST (content
 * does not match d), CAIRN_E_FULL (no room even after eviction), CAIRN_E_DB. */
int cd_store_blob_put(struct cd_store *st, const char *instance,
                      const struct cd_digest *d, const void *data, size_t len);

/* Stores n whole blobs (BatchUpdateBlobs): d[i] and data[i] (d[i].size
 * bytes), each checked and stored as by cd_store_blob_put, with its result
 * in rcs[i]. They are published together with whatever other writers have
 * queued (one commit and one sync for all, docs/storage.md "Group
 * commit"); each blob is durable when this returns with rcs[i] 0. Returns
 * 0 (see rcs) or CAIRN_E_NOMEM (nothing stored). */
int cd_store_blob_put_many(struct cd_store *st, const char *instance, size_t n,
                           const struct cd_digest *d, const void *const *data,
                           int *rcs);

/* Reads a whole blob of at most max bytes (BatchReadBlobs). *data is
 * malloc'd (caller frees). The bytes are hashed unless verification is off
 * or the blob was verified within verify_ttl_s; content that does not
 * match the digest is quarantined (see cd_reader_verify). Returns 0,
 * CAIRN_E_NOTFOUND, CAIRN_E_TOOBIG (the blob is larger than max),
 * CAIRN_E_CORRUPT (quarantined: now missing), CAIRN_E_DB. */
int cd_store_blob_get(struct cd_store *st, const char *instance,
                      const struct cd_digest *d, size_t max, void **data);

/* Streaming reads (ByteStream Read). */
struct cd_reader;
/* Returns 0 or CAIRN_E_NOTFOUND. */
int cd_store_reader_open(struct cd_store *st, const char *instance,
                         const struct cd_digest *d, struct cd_reader **out);
/* Copies up to n bytes at offset into buf; *got is 0 at the end. Returns 0
 * or CAIRN_E_INVAL (offset > size) or CAIRN_E_NOTFOUND (evicted meanwhile),
 * or, for a verifying reader, CAIRN_E_CORRUPT (see cd_reader_verify). */
int cd_reader_read(struct cd_reader *r, uint64_t offset, void *buf, size_t n,
                   size_t *got);
/* Hashing [0, offset) costs reading it; a read resumed further in than
 * this is not verified (the scrub still covers the blob). */
#define CD_STORE_VERIFY_PREFIX_MAX (64ull * CD_STORE_CHUNK)
/* Makes r verify its blob during a read from offset to the end: hashes
 * [0, offset) now (straight from the map), then every cd_reader_read that
 * continues where the last one stopped. The read that would return the
 * blob's last bytes returns CAIRN_E_CORRUPT instead, with buf's contents
 * undefined, if the blob does not hash to its digest; the blob is then
 * quarantined: removed from the index (find_missing reports it missing,
 * an action result referencing it is incomplete, an upload stores it
 * again) and its chunks deleted. A read that skips or goes back stops the
 * verification. Nothing is armed (returns 0) when verification is off,
 * the blob was verified within verify_ttl_s, it is empty, or offset is
 * above CD_STORE_VERIFY_PREFIX_MAX. Blobs of 4 MiB or more are hashed by
 * a thread of r's own, straight from the map, while the reads go on (at
 * most 4 such threads per store; past that, the reads hash inline);
 * cd_reader_close stops it. Returns 0, CAIRN_E_NOTFOUND (evicted
 * meanwhile), CAIRN_E_CORRUPT (a chunk is missing: quarantined),
 * CAIRN_E_DB. */
int cd_reader_verify(struct cd_reader *r, uint64_t offset);
/* True while r is armed to verify (for tests and logs). */
bool cd_reader_verifying(const struct cd_reader *r);
/* Accepts NULL. */
void cd_reader_close(struct cd_reader *r);

/* Streaming writes (ByteStream Write). Data arrives in order and is
 * buffered; each full buffer (stage_batch bytes, memory bounded store-
 * wide) is staged as chunks in one write transaction by the store's
 * stager thread while the next buffer fills; commit waits for it, verifies,
 * writes the rest and makes the blob visible in one transaction. */
struct cd_upload;
/* Returns 0, CAIRN_E_EXISTS (the blob is already stored: nothing to
 * upload), CAIRN_E_FULL, CAIRN_E_DB. */
int cd_store_upload_begin(struct cd_store *st, const char *instance,
                          const struct cd_digest *d, struct cd_upload **out);
/* Appends n bytes. Returns 0, CAIRN_E_INVAL (more than the digest's size),
 * CAIRN_E_FULL, CAIRN_E_DB, CAIRN_E_TIMEOUT (cd_store_maintain dropped the
 * upload after upload_ttl_s without calls; only abort/commit remain). After
 * an error other than CAIRN_E_INVAL the upload is dead: commit repeats the
 * error. */
int cd_upload_write(struct cd_upload *u, const void *p, size_t n);
/* Waits until the buffer u last handed to the background stager is
 * written (cd_upload_write returns before that). Returns 0 or the error
 * of that stage, which also poisons u. For tests and shutdown paths. */
int cd_upload_wait(struct cd_upload *u);
/* Restarts u's idle clock (cd_store_maintain expires uploads idle for
 * upload_ttl_s), e.g. when a stream parks it for a resume. */
void cd_upload_touch(struct cd_upload *u);
/* Bytes received so far (QueryWriteStatus committed_size). */
uint64_t cd_upload_offset(const struct cd_upload *u);
/* Verifies size and sha256 and publishes the blob (in a group commit with
 * other writers' blobs: one txn and one sync for all, durable when this
 * returns 0); frees u in every case.
 * Returns 0 (also when a concurrent upload of the same blob won),
 * CAIRN_E_DIGEST (size or hash wrong; nothing visible), CAIRN_E_FULL,
 * CAIRN_E_DB, CAIRN_E_TIMEOUT (expired, see cd_upload_write). */
int cd_upload_commit(struct cd_upload *u);
/* cd_upload_commit without waiting for the publish: done(ctx, rc) is
 * called exactly once with what cd_upload_commit would return, on the
 * calling thread before this returns when the upload fails its checks,
 * else on the store's group-commit thread once the blob is durable (done
 * must not block for long: the next group waits; it must not call
 * cd_store_close). u is freed before done runs. */
typedef void cd_upload_done_fn(void *ctx, int rc);
void cd_upload_commit_async(struct cd_upload *u, cd_upload_done_fn *done,
                            void *ctx);
/* Drops everything staged and frees u. Accepts NULL. */
void cd_upload_abort(struct cd_upload *u);

/* --- Action cache --- */

/* Raw serialised ActionResult for action digest d. *data malloc'd. Returns
 * 0 or CAIRN_E_NOTFOUND. (The completeness check on referenced blobs is
 * the caller's: it parses the message.) */
int cd_store_ac_get(struct cd_store *st, const char *instance,
                    const struct cd_digest *action, void **data, size_t *len);
/* Lists the blobs a stored ActionResult references, for
 * cd_store_ac_get_complete. data is the stored value, borrowed from LMDB
 * for the duration of the call only (copy what must outlive it). Sets
 * *refs (owned by ctx, valid until cd_store_ac_get_complete returns) and
 * *n, or returns a cairn code that cd_store_ac_get_complete passes on. */
typedef int (*cd_store_refs_fn)(void *ctx, const void *data, size_t len,
                                const struct cd_digest **refs, size_t *n);
/* cd_store_ac_get and the completeness check in one read snapshot: the
 * blobs refs lists (NULL: none) must all be stored under instance. Returns
 * 0 (*data malloc'd, *len), CAIRN_E_NOTFOUND (*missing is SIZE_MAX when
 * there is no result, else the index of the first referenced blob that is
 * missing), the code refs returned, CAIRN_E_NOMEM, CAIRN_E_DB. On success
 * the result and its blobs count as accessed (LRU). */
int cd_store_ac_get_complete(struct cd_store *st, const char *instance,
                             const struct cd_digest *action,
                             cd_store_refs_fn refs, void *ctx, void **data,
                             size_t *len, size_t *missing);
/* Stores or replaces. Returns 0, CAIRN_E_TOOBIG, CAIRN_E_FULL, CAIRN_E_DB. */
int cd_store_ac_put(struct cd_store *st, const char *instance,
                    const struct cd_digest *action, const void *data,
                    size_t len);

/* --- Operations --- */

struct cd_store_stats {
    uint64_t blobs;       /* blobs stored */
    uint64_t bytes;       /* blob bytes stored */
    uint64_t max_size;
    uint64_t evictions;   /* blobs evicted since open */
    uint64_t evicted_bytes;
    /* Added by the store (all O(1) to read, none needs a scan): */
    uint64_t ac_entries;      /* action results stored */
    uint64_t ac_bytes;        /* their bytes (count against max_size) */
    uint64_t chunks;          /* chunk records, committed and staged */
    uint64_t pending_uploads; /* uploads with staged chunks */
    uint64_t garbage;         /* evicted blobs whose chunks await removal */
    uint64_t quarantined;     /* blobs found corrupt and removed since open */
    uint64_t quarantined_bytes;
    /* The bucket (all 0 without one), since open: */
    uint64_t tier_puts, tier_put_bytes; /* objects written */
    uint64_t tier_fills, tier_fill_bytes; /* blobs brought into LMDB */
    uint64_t tier_ac_fills;   /* action results brought into LMDB */
    uint64_t tier_heads;      /* objects asked about by find_missing */
    uint64_t tier_neg_hits;   /* answered by the negative cache */
    uint64_t tier_errors;     /* bucket calls that failed */
    uint64_t tier_corrupt;    /* objects that did not match their digest */
    uint64_t tier_shared;     /* reads that joined another's fetch */
};
/* Thread-safe, and takes no lock a CAS or AC call waits on (atomics and
 * a read txn of its own), so a metrics scrape never slows calls. */
void cd_store_stats_get(struct cd_store *st, struct cd_store_stats *out);

struct cd_store_scrub_stats {
    uint64_t blobs, bytes;   /* checked */
    uint64_t bad, bad_bytes; /* found corrupt and quarantined */
};
/* Called for each corrupt blob; instance is borrowed for the call. */
typedef void (*cd_store_bad_fn)(void *ctx, const char *instance,
                                const struct cd_digest *d);
/* Hashes every stored blob (one read txn per blob) and quarantines those
 * that do not match their digest or miss chunks, calling bad (may be
 * NULL) for each. Blobs stored during the walk may or may not be seen.
 * Returns 0 (*out written; out->bad may be non-zero) or CAIRN_E_DB. Safe
 * beside a running server only on a store opened with opts.scrub. */
int cd_store_scrub(struct cd_store *st, cd_store_bad_fn bad, void *ctx,
                   struct cd_store_scrub_stats *out);

/* Drops uploads older than upload_ttl_s and writes batched access times.
 * Called periodically by the server. Returns 0 or CAIRN_E_DB. */
int cd_store_maintain(struct cd_store *st);

#endif
