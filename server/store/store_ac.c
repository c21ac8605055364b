/* The action cache: results stored by action digest, read together with
 * the check that the blobs they reference are all still stored. */
#include "server/store/store_txn.h"

#include <stdlib.h>
#include <string.h>

/* Accesses collected during one read txn and queued after it, under one
 * lock for up to STORE_TOUCH_BATCH keys. */
#define STORE_TOUCH_BATCH 8
struct store_touches {
    size_t n;
    struct store_key k[STORE_TOUCH_BATCH];
};

static void store_touches_add(struct cd_store *st, struct store_touches *t,
                              const struct store_key *k)
{
    if (t->n == STORE_TOUCH_BATCH) {
        cd_store_touch_n(st, t->k, t->n);
        t->n = 0;
    }
    t->k[t->n++] = *k;
}

int cd_store_ac_get_complete_local(struct cd_store *st, const char *instance,
                                   const struct cd_digest *action,
                                   cd_store_refs_fn refs, void *ctx, void **data,
                                   size_t *len, size_t *missing)
{
    *missing = SIZE_MAX;
    struct store_key k;
    int rc = cd_store_key_make(STORE_KIND_AC, instance, action, &k);
    if (rc != 0)
        return action->size < 0 ? CAIRN_E_NOTFOUND : rc;
    MDB_txn *txn = NULL;
    if ((rc = cd_store_rtxn_begin(st, &txn)) != 0)
        return rc;
    /* Result and blobs are read in one snapshot: no second txn, and the
     * answer cannot mix a result with blobs evicted after it was read. */
    struct store_touches t;
    t.n = 0;
    store_touches_add(st, &t, &k);
    MDB_val mk = {k.len, k.b}, mv;
    const struct cd_digest *d = NULL;
    size_t nd = 0;
    void *p = NULL;
    rc = cd_store_mdb_err(mdb_get(txn, st->dbi_ac, &mk, &mv));
    if (rc == 0 && refs != NULL)
        rc = refs(ctx, mv.mv_data, mv.mv_size, &d, &nd);
    for (size_t i = 0; rc == 0 && i < nd; i++) {
        if (store_is_empty(st, &d[i]))
            continue;
        struct store_key bk;
        int krc = cd_store_key_make(STORE_KIND_BLOB, instance, &d[i], &bk);
        MDB_val bv;
        int mrc = MDB_NOTFOUND;
        if (krc == 0) {
            MDB_val bkv = {bk.len, bk.b};
            mrc = mdb_get(txn, st->dbi_entries, &bkv, &bv);
        } else if (d[i].size >= 0) {
            rc = krc;
            break;
        }
        if (mrc == MDB_NOTFOUND) {
            *missing = i;
            rc = CAIRN_E_NOTFOUND;
        } else if (mrc != 0) {
            rc = cd_store_mdb_err(mrc);
        } else {
            store_touches_add(st, &t, &bk);
        }
    }
    if (rc == 0 && (p = malloc(mv.mv_size ? mv.mv_size : 1)) == NULL)
        rc = CAIRN_E_NOMEM;
    if (rc == 0)
        memcpy(p, mv.mv_data, mv.mv_size);
    size_t n = rc == 0 ? mv.mv_size : 0;
    cd_store_rtxn_end(st, txn);
    if (rc != 0)
        return rc;
    cd_store_touch_n(st, t.k, t.n);
    *data = p;
    *len = n;
    return 0;
}

int cd_store_ac_put_local(struct cd_store *st, const char *instance,
                          const struct cd_digest *action, const void *data,
                          size_t len)
{
    if (len > CD_STORE_MAX_AC_RESULT)
        return CAIRN_E_TOOBIG;
    struct store_key k;
    int rc = cd_store_key_make(STORE_KIND_AC, instance, action, &k);
    if (rc != 0)
        return rc;
    if (st->max_size != 0 && len > st->max_size)
        return CAIRN_E_FULL;
    MDB_txn *txn = NULL;
    struct store_stats_rec s;
    if ((rc = cd_store_wtxn_begin(st, &txn, &s)) != 0)
        return rc;
    struct store_meta m;
    struct store_evicted ev = {0, 0};
    uint8_t sk[8];
    MDB_val lk = {8, sk}, ek = {k.len, k.b};
    rc = cd_store_meta_get(st, txn, &k, &m);
    if (rc == 0) {
        /* Replacing: the old value leaves the LRU and the totals first, so
         * eviction neither counts nor picks it. */
        store_be64(sk, m.seq);
        int drc = mdb_del(txn, st->dbi_lru, &lk, NULL);
        if (drc != 0 && drc != MDB_NOTFOUND) {
            rc = cd_store_mdb_err(drc);
            goto fail;
        }
        s.ac_entries--;
        s.ac_bytes -= m.size;
    } else if (rc != CAIRN_E_NOTFOUND) {
        goto fail;
    }
    if ((rc = cd_store_evict(st, txn, &s, len, &ev)) != 0)
        goto fail;
    m = (struct store_meta){len, s.next_seq++, 0};
    store_be64(sk, m.seq);
    MDB_val mv = {sizeof m, &m}, lv = {k.len, k.b}, av = {len, (void *)data};
    if ((rc = cd_store_mdb_err(mdb_put(txn, st->dbi_ac, &ek, &av, 0))) != 0 ||
        (rc = cd_store_mdb_err(mdb_put(txn, st->dbi_entries, &ek, &mv, 0))) !=
            0 ||
        (rc = cd_store_mdb_err(mdb_put(txn, st->dbi_lru, &lk, &lv, 0))) != 0)
        goto fail;
    s.ac_entries++;
    s.ac_bytes += len;
    if ((rc = cd_store_wtxn_end(st, txn, &s, 0)) != 0)
        return rc;
    rc = cd_store_sync(st);
    if (ev.blobs > 0) {
        cd_store_evicted_account(st, &ev);
        (void)cd_store_sweep(st, st->dbi_garbage);
    }
    return rc;
fail:
    mdb_txn_abort(txn);
    return rc;
}
