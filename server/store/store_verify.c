/* Read verification (docs/storage.md "Verification"): which blobs hashed
 * to their digest lately, the hashing of a reader's blob (inline or by a
 * thread of its own), quarantine of corrupt blobs, and the scrub that
 * hashes them all. */
#include "server/store/store_txn.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Blobs at least this big are hashed by a thread of their own, from the
 * map, while the reader sends (docs/storage.md "Verification"); at most
 * STORE_HASHERS_MAX such threads at a time, further reads hash inline. */
#define STORE_HASH_ASYNC_MIN (4ull * CD_STORE_CHUNK)
#define STORE_HASHERS_MAX 4
#define STORE_HASH_STEP (8ull * CD_STORE_CHUNK) /* bytes per read txn */

/* A thread hashing one reader's whole blob from the map. */
struct store_hasher {
    pthread_t th;
    struct cd_store *st;
    const struct store_key *key; /* the reader's */
    uint64_t id, size;
    atomic_bool stop; /* the reader gave up: finish early */
    int rc;           /* after join: 0 (got is the hash) or an error */
    uint8_t got[CK_SHA256_LEN];
};

/* True when blob id hashed to its digest within verify_ttl_s (never with
 * a ttl of 0: then every whole read verifies). */
bool cd_store_verified_recently(struct cd_store *st, uint64_t id)
{
    if (st->verify_ttl_s == 0)
        return false;
    struct store_verified *v = &st->verified[id % STORE_VERIFIED_SLOTS];
    pthread_mutex_lock(&st->vf_mu);
    bool yes = v->id == id && store_now() - v->at < (time_t)st->verify_ttl_s;
    pthread_mutex_unlock(&st->vf_mu);
    return yes;
}

void cd_store_verified_mark(struct cd_store *st, uint64_t id)
{
    struct store_verified *v = &st->verified[id % STORE_VERIFIED_SLOTS];
    pthread_mutex_lock(&st->vf_mu);
    v->id = id;
    v->at = store_now();
    pthread_mutex_unlock(&st->vf_mu);
}

/* A cd_store_piece_fn that hashes into ctx (a struct ck_sha256). */
static int store_hash_piece(void *ctx, const uint8_t *p, size_t n)
{
    return ck_sha256_update(ctx, p, n);
}

/* Removes blob k from the index if it still has data id (a blob found
 * corrupt): entries and lru go, the chunks become garbage and are swept
 * at once. The bytes are worthless (nothing can recover content from a
 * digest), so quarantine drops them; a later upload stores a good copy
 * under a new id. Not synced: a quarantine lost in a crash is found again
 * by the next read or scrub. */
static int store_quarantine(struct cd_store *st, const struct store_key *k,
                            uint64_t id)
{
    MDB_txn *txn = NULL;
    struct store_stats_rec s;
    int rc = cd_store_wtxn_begin(st, &txn, &s);
    if (rc != 0)
        return rc;
    struct store_meta m;
    rc = cd_store_meta_get(st, txn, k, &m);
    if (rc == CAIRN_E_NOTFOUND || (rc == 0 && m.id != id)) {
        /* Already gone (evicted, or quarantined by another reader). */
        mdb_txn_abort(txn);
        return 0;
    }
    if (rc != 0)
        goto fail;
    uint8_t sk[8], ik[8];
    store_be64(sk, m.seq);
    store_be64(ik, id);
    MDB_val ek = {k->len, (void *)k->b}, lk = {8, sk}, gk = {8, ik},
            gv = {8, &m.size};
    if ((rc = cd_store_mdb_err(mdb_del(txn, st->dbi_entries, &ek, NULL))) != 0)
        goto fail;
    int lrc = mdb_del(txn, st->dbi_lru, &lk, NULL);
    if (lrc != 0 && lrc != MDB_NOTFOUND) {
        rc = cd_store_mdb_err(lrc);
        goto fail;
    }
    if ((rc = cd_store_mdb_err(mdb_put(txn, st->dbi_garbage, &gk, &gv, 0))) !=
        0)
        goto fail;
    s.blobs--;
    s.bytes -= m.size;
    if ((rc = cd_store_wtxn_end(st, txn, &s, 0)) != 0)
        return rc;
    atomic_fetch_add_explicit(&st->quarantined, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->quarantined_bytes, m.size, memory_order_relaxed);
    (void)cd_store_sweep(st, st->dbi_garbage);
    return 0;
fail:
    mdb_txn_abort(txn);
    return rc;
}

/* Compares hash got with k's digest: CAIRN_E_CORRUPT on a mismatch (the
 * caller quarantines, cd_store_corrupt_check); a match remembers id as
 * verified. */
static int store_verify_hash(struct cd_store *st, const struct store_key *k,
                             uint64_t id, const uint8_t got[CK_SHA256_LEN])
{
    /* The entry key ends with the sha256 and the u64 size. */
    const uint8_t *want = k->b + k->len - 8 - CK_SHA256_LEN;
    if (memcmp(got, want, CK_SHA256_LEN) != 0)
        return CAIRN_E_CORRUPT;
    cd_store_verified_mark(st, id);
    return 0;
}

/* Quarantines blob k (data id) when rc says it is corrupt (bytes that do
 * not hash to the digest, or a chunk missing or short); returns rc, or
 * the error of the quarantine. */
int cd_store_corrupt_check(struct cd_store *st, const struct store_key *k,
                           uint64_t id, int rc)
{
    if (rc != CAIRN_E_CORRUPT)
        return rc;
    int qrc = store_quarantine(st, k, id);
    return qrc != 0 ? qrc : rc;
}

int cd_store_verify_end(struct cd_store *st, const struct store_key *k,
                        uint64_t id, struct ck_sha256 *h)
{
    uint8_t got[CK_SHA256_LEN];
    int rc = ck_sha256_final(h, got);
    return rc != 0 ? rc : store_verify_hash(st, k, id, got);
}

/* Hashes the whole blob in STORE_HASH_STEP pieces, each in its own read
 * txn that first checks the blob is still the same data id (a slow
 * reader's blob may be evicted). */
static void *store_hasher_main(void *arg)
{
    struct store_hasher *b = arg;
    struct cd_store *st = b->st;
    struct ck_sha256 *h = NULL;
    int rc = ck_sha256_new(&h);
    for (uint64_t off = 0; rc == 0 && off < b->size;) {
        if (atomic_load_explicit(&b->stop, memory_order_relaxed)) {
            rc = -ECANCELED;
            break;
        }
        uint64_t upto =
            b->size - off > STORE_HASH_STEP ? off + STORE_HASH_STEP : b->size;
        rc = cd_store_blob_walk(st, b->key, b->id, b->size, off, upto - off,
                                store_hash_piece, h);
        off = upto;
    }
    if (rc == 0)
        rc = ck_sha256_final(h, b->got);
    ck_sha256_free(h);
    b->rc = rc;
    return NULL;
}

/* Starts a hasher for r's blob; false when none can start (the caller
 * hashes inline). */
static bool store_hasher_start(struct cd_reader *r)
{
    struct cd_store *st = r->st;
    pthread_mutex_lock(&st->vf_mu);
    bool slot = st->hashers < STORE_HASHERS_MAX;
    if (slot)
        st->hashers++;
    pthread_mutex_unlock(&st->vf_mu);
    if (!slot)
        return false;
    struct store_hasher *b = calloc(1, sizeof *b);
    if (b != NULL) {
        b->st = st;
        b->key = &r->key;
        b->id = r->id;
        b->size = r->size;
        atomic_init(&b->stop, false);
        if (pthread_create(&b->th, NULL, store_hasher_main, b) == 0) {
            r->bg = b;
            return true;
        }
        free(b);
    }
    pthread_mutex_lock(&st->vf_mu);
    st->hashers--;
    pthread_mutex_unlock(&st->vf_mu);
    return false;
}

/* Waits for r's hasher (asking it to stop early when stop is set) and
 * frees it; returns its result and copies the hash to got. */
int cd_store_hasher_join(struct cd_reader *r, bool stop,
                         uint8_t got[CK_SHA256_LEN])
{
    struct store_hasher *b = r->bg;
    if (stop)
        atomic_store(&b->stop, true);
    pthread_join(b->th, NULL);
    int rc = b->rc;
    memcpy(got, b->got, CK_SHA256_LEN);
    free(b);
    r->bg = NULL;
    pthread_mutex_lock(&r->st->vf_mu);
    r->st->hashers--;
    pthread_mutex_unlock(&r->st->vf_mu);
    return rc;
}

/* Feeds a read of n bytes at offset, now in buf, to r's verification;
 * returns CAIRN_E_CORRUPT when it completes the blob and the blob does
 * not hash to its digest. */
int cd_store_reader_check(struct cd_reader *r, uint64_t offset, const void *buf,
                          size_t n)
{
    struct cd_store *st = r->st;
    int rc = 0;
    if (r->bg != NULL) {
        uint8_t got_hash[CK_SHA256_LEN];
        if (offset != r->hashed) {
            (void)cd_store_hasher_join(r, true, got_hash);
        } else if ((r->hashed += n) == r->size) {
            /* The last bytes go out only once the hasher agrees. */
            rc = cd_store_hasher_join(r, false, got_hash);
            if (rc == 0)
                rc = store_verify_hash(st, &r->key, r->id, got_hash);
            if (rc != 0)
                return rc;
        }
    } else if (r->h != NULL) {
        if (offset != r->hashed) {
            /* Not one pass to the end: nothing to verify against. */
            ck_sha256_free(r->h);
            r->h = NULL;
        } else if ((rc = ck_sha256_update(r->h, buf, n)) != 0) {
            return rc;
        } else if ((r->hashed += n) == r->size) {
            rc = cd_store_verify_end(st, &r->key, r->id, r->h);
            ck_sha256_free(r->h);
            r->h = NULL;
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

int cd_reader_verify(struct cd_reader *r, uint64_t offset)
{
    struct cd_store *st = r->st;
    if (r->id == 0 || r->h != NULL || r->bg != NULL || st->verify_off ||
        offset > r->size || offset > CD_STORE_VERIFY_PREFIX_MAX ||
        cd_store_verified_recently(st, r->id))
        return 0;
    if (r->size >= STORE_HASH_ASYNC_MIN && store_hasher_start(r)) {
        r->hashed = offset;
        return 0;
    }
    struct ck_sha256 *h = NULL;
    int rc = ck_sha256_new(&h);
    if (rc != 0)
        return rc;
    if (offset > 0 &&
        (rc = cd_store_blob_walk(st, &r->key, r->id, r->size, 0, offset,
                                 store_hash_piece, h)) != 0)
        goto fail;
    r->h = h;
    r->hashed = offset;
    return 0;
fail:
    ck_sha256_free(h);
    return cd_store_corrupt_check(st, &r->key, r->id, rc);
}

bool cd_reader_verifying(const struct cd_reader *r)
{
    return r->h != NULL || r->bg != NULL;
}

/* --- scrub --------------------------------------------------------------- */

/* Finds the first blob entry after *k (or the first of all when k->len is
 * 0) in txn and copies its key and meta. CAIRN_E_NOTFOUND: no more. */
static int store_blob_next(struct cd_store *st, MDB_txn *txn,
                           struct store_key *k, struct store_meta *m)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, st->dbi_entries, &cur);
    if (rc != 0)
        return cd_store_mdb_err(rc);
    uint8_t first = STORE_KIND_BLOB;
    MDB_val mk = {1, &first}, mv;
    if (k->len > 0)
        mk = (MDB_val){k->len, k->b};
    rc = mdb_cursor_get(cur, &mk, &mv, MDB_SET_RANGE);
    if (rc == 0 && k->len > 0 && mk.mv_size == k->len &&
        memcmp(mk.mv_data, k->b, k->len) == 0)
        rc = mdb_cursor_get(cur, &mk, &mv, MDB_NEXT);
    if (rc == 0 && (mk.mv_size == 0 ||
                    ((const uint8_t *)mk.mv_data)[0] != STORE_KIND_BLOB))
        rc = MDB_NOTFOUND;
    if (rc == 0 &&
        (mk.mv_size > STORE_KEY_MAX || mk.mv_size < 3 + CK_SHA256_LEN + 8 ||
         mv.mv_size != sizeof *m))
        rc = MDB_CORRUPTED;
    if (rc == 0) {
        k->len = mk.mv_size;
        memcpy(k->b, mk.mv_data, mk.mv_size);
        memcpy(m, mv.mv_data, sizeof *m);
    }
    mdb_cursor_close(cur);
    return cd_store_mdb_err(rc);
}

/* Splits an entry key back into instance (NUL-terminated) and digest. */
static void store_key_split(const struct store_key *k,
                            char instance[CD_STORE_MAX_INSTANCE + 1],
                            struct cd_digest *d)
{
    size_t n = (size_t)k->b[1] << 8 | k->b[2];
    if (n > k->len - 3 - CK_SHA256_LEN - 8)
        n = k->len - 3 - CK_SHA256_LEN - 8;
    memcpy(instance, k->b + 3, n);
    instance[n] = '\0';
    memcpy(d->hash, k->b + k->len - 8 - CK_SHA256_LEN, CK_SHA256_LEN);
    d->size = (int64_t)store_get_be64(k->b + k->len - 8);
}

int cd_store_scrub(struct cd_store *st, cd_store_bad_fn bad, void *ctx,
                   struct cd_store_scrub_stats *out)
{
    struct cd_store_scrub_stats sum = {0, 0, 0, 0};
    struct store_key k = {.len = 0};
    for (;;) {
        /* One read txn per blob: a scrub beside a running server must not
         * pin old pages for the whole walk. */
        MDB_txn *txn = NULL;
        int rc = cd_store_rtxn_begin(st, &txn);
        if (rc != 0)
            return rc;
        struct store_meta m;
        struct ck_sha256 *h = NULL;
        rc = store_blob_next(st, txn, &k, &m);
        if (rc == 0)
            rc = ck_sha256_new(&h);
        if (rc == 0)
            rc = cd_store_chunks_walk(st, txn, m.id, m.size, 0, m.size,
                                      store_hash_piece, h);
        cd_store_rtxn_end(st, txn);
        if (rc == CAIRN_E_NOTFOUND && h == NULL)
            break;
        if (rc == 0)
            rc = cd_store_verify_end(st, &k, m.id, h);
        rc = cd_store_corrupt_check(st, &k, m.id, rc);
        ck_sha256_free(h);
        sum.blobs++;
        sum.bytes += m.size;
        if (rc == CAIRN_E_CORRUPT) {
            sum.bad++;
            sum.bad_bytes += m.size;
            if (bad != NULL) {
                char instance[CD_STORE_MAX_INSTANCE + 1];
                struct cd_digest d;
                store_key_split(&k, instance, &d);
                bad(ctx, instance, &d);
            }
        } else if (rc != 0) {
            return rc;
        }
    }
    *out = sum;
    return 0;
}
