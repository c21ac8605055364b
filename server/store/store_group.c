/* Publishing blobs in groups: the run function of the store's group-commit
 * queue (group.h). Every blob becomes visible in a publish txn that ends
 * with a sync before its writer is answered (docs/storage.md); doing that
 * for each blob alone cost two fdatasyncs per blob and held small writes
 * to about a thousand a second. Here one txn carries every blob that
 * queued up while the previous one synced, and its one commit and sync
 * make all of them durable before any of their writers hears back. */
#include "server/store/store_txn.h"

#include <stddef.h>
#include <stdlib.h>

#define container_of(p, type, member) \
    ((type *)((char *)(p) - offsetof(type, member)))

/* Puts k/v in a table whose keys normally arrive in increasing order
 * (chunks by data id, lru by access sequence number). MDB_APPEND first:
 * LMDB then starts a new page for the key instead of splitting the last
 * one in half, so leaves fill up (1 KiB chunks: 3 to a page instead of
 * 2; fewer pages to write and sync per commit). A key that is not the
 * largest (an upload that took its id before another one published)
 * gets MDB_KEYEXIST without any change to the txn, and the plain put
 * follows. */
static int pub_put_tail(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
    int rc = mdb_put(txn, dbi, k, v, MDB_APPEND);
    if (rc == MDB_KEYEXIST)
        rc = mdb_put(txn, dbi, k, v, 0);
    return cd_store_mdb_err(rc);
}

/* Applies p inside txn. Results that concern p alone and leave txn as it
 * was go into p (dup; item.rc CAIRN_E_FULL for a blob over max_size) and
 * return 0; any other error is returned, and txn must then be aborted. */
static int pub_apply(struct cd_store *st, MDB_txn *txn,
                     struct store_stats_rec *s, struct store_pub *p,
                     struct store_evicted *ev)
{
    struct store_meta m;
    int rc = cd_store_meta_get(st, txn, &p->key, &m);
    if (rc == 0) {
        /* Another upload of the same digest won, maybe in this group. */
        p->dup = true;
        return 0;
    }
    if (rc != CAIRN_E_NOTFOUND)
        return rc;
    if (st->max_size != 0 && p->size > st->max_size) {
        p->item.rc = CAIRN_E_FULL;
        return 0;
    }
    if ((rc = cd_store_evict(st, txn, s, p->size, ev)) != 0)
        return rc;
    /* The rest of the data: whole chunks and a last, shorter one. */
    for (size_t off = 0; off < p->tail_len; off += CD_STORE_CHUNK) {
        uint8_t ck[STORE_CHUNK_KEY];
        size_t n = p->tail_len - off < CD_STORE_CHUNK ? p->tail_len - off
                                                      : CD_STORE_CHUNK;
        store_chunk_key(ck, p->id,
                        p->nstaged + (uint32_t)(off / CD_STORE_CHUNK));
        MDB_val k = {STORE_CHUNK_KEY, ck}, v = {n, (void *)(p->tail + off)};
        if ((rc = pub_put_tail(txn, st->dbi_chunks, &k, &v)) != 0)
            return rc;
    }
    m = (struct store_meta){p->size, s->next_seq++, p->id};
    uint8_t sk[8];
    store_be64(sk, m.seq);
    MDB_val ek = {p->key.len, p->key.b}, ev_ = {sizeof m, &m};
    MDB_val lk = {8, sk}, lv = {p->key.len, p->key.b};
    if ((rc = cd_store_mdb_err(mdb_put(txn, st->dbi_entries, &ek, &ev_, 0))) != 0 ||
        (rc = pub_put_tail(txn, st->dbi_lru, &lk, &lv)) != 0)
        return rc;
    if (p->pending) {
        uint8_t ik[8];
        store_be64(ik, p->id);
        MDB_val pk = {8, ik};
        int prc = mdb_del(txn, st->dbi_pending, &pk, NULL);
        if (prc != 0 && prc != MDB_NOTFOUND)
            return cd_store_mdb_err(prc);
    }
    s->blobs++;
    s->bytes += p->size;
    if (s->next_id <= p->id)
        s->next_id = p->id + 1;
    return 0;
}

int cd_store_group_run(void *ctx, struct cd_group_item *batch)
{
    struct cd_store *st = ctx;
    /* An LMDB error leaves the txn unusable: it is dropped, the item that
     * hit the error gets it, and the txn is built again without that item.
     * Items already answered (item.rc set) are skipped; each pass answers
     * at least one, so this ends. */
    for (;;) {
        MDB_txn *txn = NULL;
        struct store_stats_rec s;
        struct store_evicted ev = {0, 0};
        int rc = cd_store_wtxn_begin(st, &txn, &s);
        if (rc != 0)
            return rc;
        struct cd_group_item *bad = NULL;
        for (struct cd_group_item *it = batch; it != NULL; it = it->next) {
            struct store_pub *p = container_of(it, struct store_pub, item);
            if (it->rc != 0)
                continue;
            p->dup = false;
            if ((rc = pub_apply(st, txn, &s, p, &ev)) != 0) {
                bad = it;
                break;
            }
        }
        if (bad != NULL) {
            mdb_txn_abort(txn);
            bad->rc = rc;
            continue;
        }
        /* The commit fdatasyncs its data pages (the stats record is always
         * rewritten, so there are some) and writes its meta page without a
         * sync: the queue syncs, or lets the next batch's commit do it
         * (cd_store_group_sync). */
        if ((rc = cd_store_wtxn_end(st, txn, &s, 0)) != 0)
            return rc;
        for (struct cd_group_item *it = batch; it != NULL; it = it->next) {
            struct store_pub *p = container_of(it, struct store_pub, item);
            if (it->rc != 0)
                continue;
            if (p->dup) {
                cd_store_touch(st, &p->key);
            } else {
                /* These are the bytes just hashed on the way in, and still
                 * in the page cache: a read within verify_ttl_s need not
                 * hash them. */
                cd_store_verified_mark(st, p->id);
            }
        }
        if (ev.blobs > 0) {
            cd_store_evicted_account(st, &ev);
            (void)cd_store_sweep(st, st->dbi_garbage);
        }
        return 0;
    }
}

int cd_store_group_sync(void *ctx)
{
    return cd_store_sync(ctx);
}

void cd_store_publish(struct cd_store *st, struct store_pub **pubs, size_t n)
{
    struct cd_group_item *one[16], **items = one;
    if (n > sizeof one / sizeof one[0] &&
        (items = malloc(n * sizeof *items)) == NULL) {
        /* No room for the list: one at a time, still grouped with other
         * writers' items. */
        for (size_t i = 0; i < n; i++)
            cd_store_publish(st, &pubs[i], 1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        pubs[i]->item.weight = pubs[i]->tail_len;
        items[i] = &pubs[i]->item;
    }
    (void)cd_group_put(st->group, items, n);
    if (items != one)
        free(items);
}
