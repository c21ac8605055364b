/* Making room: reader pins, least-recently-used eviction inside a writer's
 * txn, and the removal of chunks that no entry owns any more (evicted,
 * quarantined, or left by an upload that never committed), in small
 * txns. */
#include "server/store/store_txn.h"

#include <stdlib.h>
#include <string.h>

#define STORE_GC_BATCH 256 /* chunks deleted per write txn */

struct cd_store_pin {
    uint64_t id;
    unsigned count;
};

/* --- reader pins --------------------------------------------------------- */

int cd_store_pin(struct cd_store *st, uint64_t id)
{
    int rc = 0;
    pthread_mutex_lock(&st->pin_mu);
    for (size_t i = 0; i < st->npins; i++) {
        if (st->pins[i].id == id) {
            st->pins[i].count++;
            goto out;
        }
    }
    if (st->npins == st->cap_pins) {
        size_t cap = st->cap_pins ? 2 * st->cap_pins : 16;
        struct cd_store_pin *p = realloc(st->pins, cap * sizeof *p);
        if (p == NULL) {
            rc = CAIRN_E_NOMEM;
            goto out;
        }
        st->pins = p;
        st->cap_pins = cap;
    }
    st->pins[st->npins++] = (struct cd_store_pin){id, 1};
out:
    pthread_mutex_unlock(&st->pin_mu);
    return rc;
}

void cd_store_unpin(struct cd_store *st, uint64_t id)
{
    pthread_mutex_lock(&st->pin_mu);
    for (size_t i = 0; i < st->npins; i++) {
        if (st->pins[i].id == id) {
            if (--st->pins[i].count == 0)
                st->pins[i] = st->pins[--st->npins];
            break;
        }
    }
    pthread_mutex_unlock(&st->pin_mu);
}

static bool store_pinned(struct cd_store *st, uint64_t id)
{
    bool found = false;
    pthread_mutex_lock(&st->pin_mu);
    for (size_t i = 0; i < st->npins && !found; i++)
        found = st->pins[i].id == id;
    pthread_mutex_unlock(&st->pin_mu);
    return found;
}

/* --- chunk removal ------------------------------------------------------ */

/* Deletes up to STORE_GC_BATCH chunks of data id; *done says none is left.
 * Deleting an overflow value frees its pages without touching them, so a
 * batch is cheap even for 1 MiB chunks. */
static int store_chunks_drop_batch(struct cd_store *st, MDB_txn *txn,
                                   uint64_t id, bool *done)
{
    uint8_t ck[STORE_CHUNK_KEY];
    *done = false;
    for (int i = 0; i < STORE_GC_BATCH; i++) {
        MDB_cursor *cur = NULL;
        int rc = mdb_cursor_open(txn, st->dbi_chunks, &cur);
        if (rc != 0)
            return cd_store_mdb_err(rc);
        store_chunk_key(ck, id, 0);
        MDB_val k = {STORE_CHUNK_KEY, ck}, v;
        /* Re-seeking from the start of id after each delete avoids relying
         * on where LMDB leaves a cursor after mdb_cursor_del. */
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND ||
            (rc == 0 && (k.mv_size != STORE_CHUNK_KEY ||
                         store_get_be64(k.mv_data) != id))) {
            mdb_cursor_close(cur);
            *done = true;
            return 0;
        }
        if (rc == 0)
            rc = mdb_cursor_del(cur, 0);
        mdb_cursor_close(cur);
        if (rc != 0)
            return cd_store_mdb_err(rc);
    }
    return 0;
}

/* Removes all chunks of id, then the record id in marker (pending or
 * garbage), in bounded txns. The marker goes last, so a crash midway
 * leaves it for the next open to finish. */
int cd_store_chunks_drop(struct cd_store *st, MDB_dbi marker, uint64_t id)
{
    for (;;) {
        MDB_txn *txn = NULL;
        int rc = cd_store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn));
        if (rc != 0)
            return rc;
        bool done = false;
        rc = store_chunks_drop_batch(st, txn, id, &done);
        if (rc == 0 && done) {
            uint8_t ik[8];
            store_be64(ik, id);
            MDB_val k = {8, ik};
            int drc = mdb_del(txn, marker, &k, NULL);
            if (drc != 0 && drc != MDB_NOTFOUND)
                rc = cd_store_mdb_err(drc);
        }
        if (rc == 0)
            rc = cd_store_wtxn_commit(txn);
        else
            mdb_txn_abort(txn);
        if (rc != 0 || done)
            return rc;
    }
}

/* Empties a marker table (garbage at any time; pending only at open, when
 * no upload of this process exists). Costs what is listed, never a scan
 * of the data. */
int cd_store_sweep(struct cd_store *st, MDB_dbi marker)
{
    for (;;) {
        MDB_txn *txn = NULL;
        int rc =
            cd_store_mdb_err(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn));
        if (rc != 0)
            return rc;
        MDB_cursor *cur = NULL;
        uint64_t id = 0;
        rc = cd_store_mdb_err(mdb_cursor_open(txn, marker, &cur));
        if (rc == 0) {
            MDB_val k, v;
            rc = cd_store_mdb_err(mdb_cursor_get(cur, &k, &v, MDB_FIRST));
            if (rc == 0 && k.mv_size != 8)
                rc = CAIRN_E_CORRUPT;
            if (rc == 0)
                id = store_get_be64(k.mv_data);
            mdb_cursor_close(cur);
        }
        mdb_txn_abort(txn);
        if (rc == CAIRN_E_NOTFOUND)
            return 0;
        if (rc != 0)
            return rc;
        rc = cd_store_chunks_drop(st, marker, id);
        if (rc != 0)
            return rc;
    }
}

/* --- eviction ---------------------------------------------------------- */

/* Evicts least-recently-used entries until need more bytes fit under
 * max_size. Blobs with an open reader are passed over while others can go.
 * A blob's chunks are not deleted here: its id goes to the garbage table
 * and cd_store_sweep removes them in small txns after this one commits, so
 * the caller's txn stays small however big the victims are. */
int cd_store_evict(struct cd_store *st, MDB_txn *txn, struct store_stats_rec *s,
                   uint64_t need, struct store_evicted *ev)
{
    if (st->max_size == 0)
        return 0;
    if (need > st->max_size)
        return CAIRN_E_FULL;
    if (s->bytes + s->ac_bytes + need <= st->max_size)
        return 0;
    int arc = cd_store_access_apply_all(st, txn, s);
    if (arc != 0)
        return arc;
    uint64_t pos = 0;
    bool spare_pinned = true;
    while (s->bytes + s->ac_bytes + need > st->max_size) {
        MDB_cursor *cur = NULL;
        int rc = mdb_cursor_open(txn, st->dbi_lru, &cur);
        if (rc != 0)
            return cd_store_mdb_err(rc);
        uint8_t sk[8];
        store_be64(sk, pos);
        MDB_val k = {8, sk}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        struct store_key key;
        uint64_t seq = 0;
        if (rc == 0) {
            if (k.mv_size != 8 || v.mv_size == 0 || v.mv_size > STORE_KEY_MAX)
                rc = MDB_CORRUPTED;
            else {
                seq = store_get_be64(k.mv_data);
                key.len = v.mv_size;
                memcpy(key.b, v.mv_data, v.mv_size);
            }
        }
        mdb_cursor_close(cur);
        if (rc == MDB_NOTFOUND && spare_pinned && pos != 0) {
            /* Only blobs being read are left. A put must not fail because
             * of a slow reader: take them too, oldest first; their readers
             * get CAIRN_E_NOTFOUND on the next read. */
            spare_pinned = false;
            pos = 0;
            continue;
        }
        if (rc == MDB_NOTFOUND)
            return CAIRN_E_FULL;
        if (rc != 0)
            return cd_store_mdb_err(rc);
        pos = seq + 1;
        struct store_meta m;
        rc = cd_store_meta_get(st, txn, &key, &m);
        if (rc != 0 && rc != CAIRN_E_NOTFOUND)
            return rc;
        bool stale = rc == CAIRN_E_NOTFOUND || m.seq != seq;
        if (!stale && spare_pinned && key.b[0] == STORE_KIND_BLOB &&
            store_pinned(st, m.id))
            continue;
        MDB_val lk = {8, sk};
        store_be64(sk, seq);
        rc = mdb_del(txn, st->dbi_lru, &lk, NULL);
        if (rc != 0)
            return cd_store_mdb_err(rc);
        if (stale)
            continue;
        MDB_val ek = {key.len, key.b};
        rc = mdb_del(txn, st->dbi_entries, &ek, NULL);
        if (rc != 0)
            return cd_store_mdb_err(rc);
        if (key.b[0] == STORE_KIND_BLOB) {
            uint8_t ik[8];
            store_be64(ik, m.id);
            MDB_val gk = {8, ik}, gv = {8, &m.size};
            rc = mdb_put(txn, st->dbi_garbage, &gk, &gv, 0);
            if (rc != 0)
                return cd_store_mdb_err(rc);
            s->blobs--;
            s->bytes -= m.size;
            ev->blobs++;
            ev->bytes += m.size;
        } else {
            rc = mdb_del(txn, st->dbi_ac, &ek, NULL);
            if (rc != 0 && rc != MDB_NOTFOUND)
                return cd_store_mdb_err(rc);
            s->ac_entries--;
            s->ac_bytes -= m.size;
        }
    }
    return 0;
}

void cd_store_evicted_account(struct cd_store *st,
                              const struct store_evicted *ev)
{
    if (ev->blobs == 0)
        return;
    atomic_fetch_add_explicit(&st->evictions, ev->blobs, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->evicted_bytes, ev->bytes, memory_order_relaxed);
}
