/* The bottom of cairnd's LMDB store, which every other part uses: LMDB's
 * codes as cairn's, record keys, the running totals and metadata records,
 * and the read and write transactions (the read-txn pool, the write txn
 * that runs again after the map grows). store.c opens and closes the store
 * and runs maintenance above it; store_txn.h lists the parts. */
#include "server/store/store_txn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* The one place MDB_* and errno values from LMDB become cairn codes. */
int cd_store_mdb_err(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_NOTFOUND:
        return CAIRN_E_NOTFOUND;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
    case ENOSPC:
    case EDQUOT:
        return CAIRN_E_FULL;
    case ENOMEM:
        return CAIRN_E_NOMEM;
    default:
        return CAIRN_E_DB;
    }
}

int cd_store_key_make(char kind, const char *instance,
                      const struct cd_digest *d, struct store_key *k)
{
    if (instance == NULL)
        instance = "";
    size_t n = strnlen(instance, CD_STORE_MAX_INSTANCE + 1);
    if (n > CD_STORE_MAX_INSTANCE || d->size < 0)
        return CAIRN_E_INVAL;
    uint8_t *p = k->b;
    *p++ = (uint8_t)kind;
    *p++ = (uint8_t)(n >> 8);
    *p++ = (uint8_t)n;
    memcpy(p, instance, n);
    p += n;
    memcpy(p, d->hash, CK_SHA256_LEN);
    p += CK_SHA256_LEN;
    store_be64(p, (uint64_t)d->size);
    k->len = (size_t)(p + 8 - k->b);
    return 0;
}

int cd_store_stats_load(struct cd_store *st, MDB_txn *txn,
                        struct store_stats_rec *s)
{
    MDB_val k = {5, "stats"}, v;
    int rc = mdb_get(txn, st->dbi_meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        memset(s, 0, sizeof *s);
        s->schema = STORE_SCHEMA;
        s->next_seq = 1;
        s->next_id = 1;
        return 0;
    }
    if (rc != 0)
        return cd_store_mdb_err(rc);
    if (v.mv_size != sizeof *s)
        return CAIRN_E_CORRUPT;
    memcpy(s, v.mv_data, sizeof *s);
    return 0;
}

int cd_store_stats_save(struct cd_store *st, MDB_txn *txn,
                        const struct store_stats_rec *s)
{
    MDB_val k = {5, "stats"}, v = {sizeof *s, (void *)s};
    return cd_store_mdb_err(mdb_put(txn, st->dbi_meta, &k, &v, 0));
}

int cd_store_meta_get(struct cd_store *st, MDB_txn *txn,
                      const struct store_key *key, struct store_meta *m)
{
    MDB_val k = {key->len, (void *)key->b}, v;
    int rc = mdb_get(txn, st->dbi_entries, &k, &v);
    if (rc != 0)
        return cd_store_mdb_err(rc);
    if (v.mv_size != sizeof *m)
        return CAIRN_E_CORRUPT;
    memcpy(m, v.mv_data, sizeof *m);
    return 0;
}

/* --- read transactions ------------------------------------------------- */

int cd_store_rtxn_begin(struct cd_store *st, MDB_txn **out)
{
    MDB_txn *t = NULL;
    pthread_mutex_lock(&st->pool_mu);
    if (st->npool > 0)
        t = st->pool[--st->npool];
    pthread_mutex_unlock(&st->pool_mu);
    if (t != NULL) {
        if (mdb_txn_renew(t) == 0) {
            *out = t;
            return 0;
        }
        mdb_txn_abort(t);
    }
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &t);
    if (rc != 0)
        return cd_store_mdb_err(rc);
    *out = t;
    return 0;
}

void cd_store_rtxn_end(struct cd_store *st, MDB_txn *t)
{
    /* Reset releases the snapshot at once, so a pooled txn never keeps old
     * pages from being reused; it keeps only its reader slot. */
    mdb_txn_reset(t);
    pthread_mutex_lock(&st->pool_mu);
    if (st->npool < STORE_POOL_MAX) {
        st->pool[st->npool++] = t;
        t = NULL;
    }
    pthread_mutex_unlock(&st->pool_mu);
    if (t != NULL)
        mdb_txn_abort(t);
}

int cd_store_wtxn_commit(MDB_txn *txn)
{
    return cd_store_mdb_err(mdb_txn_commit(txn));
}

int cd_store_wtxn_begin(struct cd_store *st, MDB_txn **out,
                        struct store_stats_rec *s)
{
    MDB_txn *txn = NULL;
    int rc = cd_store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    if ((rc = cd_store_stats_load(st, txn, s)) != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    *out = txn;
    return 0;
}

int cd_store_wtxn_end(struct cd_store *st, MDB_txn *txn,
                      const struct store_stats_rec *s, int rc)
{
    if (rc == 0)
        rc = cd_store_stats_save(st, txn, s);
    if (rc == 0)
        return cd_store_wtxn_commit(txn);
    mdb_txn_abort(txn);
    return rc;
}

/* Makes every commit so far durable: with MDB_NOMETASYNC a commit has
 * synced its data pages but not yet its meta page. Called before
 * anything is acknowledged. */
int cd_store_sync(struct cd_store *st)
{
    return cd_store_mdb_err(mdb_env_sync(st->env, 1));
}

/* --- the walk over a blob's chunks (reads and verification) ----------- */

/* Walks over blobs this big drop the map pages they are done with. */
#define STORE_MADVISE_MIN (4ull * CD_STORE_CHUNK)

/* Drops the pages of chunk value v from this process's page tables (they
 * stay in the page cache): streaming gigabytes out of the map must not
 * grow RSS. */
static void store_pages_drop(struct cd_store *st, const MDB_val *v)
{
    uintptr_t a = (uintptr_t)v->mv_data;
    uintptr_t lo = (a + st->page - 1) & ~(uintptr_t)(st->page - 1);
    uintptr_t hi = (a + v->mv_size) & ~(uintptr_t)(st->page - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

int cd_store_chunks_walk(struct cd_store *st, MDB_txn *txn, uint64_t id,
                         uint64_t size, uint64_t off, uint64_t n,
                         cd_store_piece_fn *fn, void *ctx)
{
    while (n > 0) {
        uint32_t idx = (uint32_t)(off / CD_STORE_CHUNK);
        size_t in = (size_t)(off % CD_STORE_CHUNK);
        uint8_t ck[STORE_CHUNK_KEY];
        store_chunk_key(ck, id, idx);
        MDB_val k = {STORE_CHUNK_KEY, ck}, v;
        int rc = mdb_get(txn, st->dbi_chunks, &k, &v);
        if (rc == MDB_NOTFOUND)
            return CAIRN_E_CORRUPT; /* the entry says it is there */
        if (rc != 0)
            return cd_store_mdb_err(rc);
        if (v.mv_size <= in)
            return CAIRN_E_CORRUPT;
        size_t take = v.mv_size - in;
        if (take > n)
            take = (size_t)n;
        if ((rc = fn(ctx, (const uint8_t *)v.mv_data + in, take)) != 0)
            return rc;
        /* When the caller streams a large blob, pages it has consumed are
         * dropped from this process's page tables (they stay in the page
         * cache), so RSS stays small while gigabytes stream out of the
         * map. */
        if (size >= STORE_MADVISE_MIN && in + take == v.mv_size)
            store_pages_drop(st, &v);
        off += take;
        n -= take;
    }
    return 0;
}

int cd_store_blob_walk(struct cd_store *st, const struct store_key *key,
                       uint64_t id, uint64_t size, uint64_t off, uint64_t n,
                       cd_store_piece_fn *fn, void *ctx)
{
    MDB_txn *txn = NULL;
    int rc = cd_store_rtxn_begin(st, &txn);
    if (rc != 0)
        return rc;
    struct store_meta m;
    rc = cd_store_meta_get(st, txn, key, &m);
    if (rc == 0 && m.id != id)
        rc = CAIRN_E_NOTFOUND;
    if (rc == 0)
        rc = cd_store_chunks_walk(st, txn, id, size, off, n, fn, ctx);
    cd_store_rtxn_end(st, txn);
    return rc;
}
