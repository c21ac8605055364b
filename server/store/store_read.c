/* CAS reads: which blobs exist, a whole blob into memory, and streaming
 * readers, all copied straight out of the map by the chunk walk that
 * verification (store_verify.c) hashes with too. */
#include "server/store/store_txn.h"

#include <stdlib.h>
#include <string.h>


int cd_store_find_missing_local(struct cd_store *st, const char *instance,
                                const struct cd_digest *digests, size_t n,
                                bool *missing)
{
    MDB_txn *txn = NULL;
    int rc = cd_store_rtxn_begin(st, &txn);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        struct store_key k;
        if (store_is_empty(st, &digests[i])) {
            missing[i] = false;
            continue;
        }
        rc = cd_store_key_make(STORE_KIND_BLOB, instance, &digests[i], &k);
        if (rc != 0) {
            if (digests[i].size < 0) {
                missing[i] = true;
                rc = 0;
                continue;
            }
            break;
        }
        MDB_val mk = {k.len, k.b}, mv;
        int mrc = mdb_get(txn, st->dbi_entries, &mk, &mv);
        if (mrc != 0 && mrc != MDB_NOTFOUND) {
            rc = cd_store_mdb_err(mrc);
            break;
        }
        missing[i] = mrc == MDB_NOTFOUND;
        if (!missing[i])
            cd_store_touch(st, &k);
    }
    cd_store_rtxn_end(st, txn);
    return rc;
}


/* A cd_store_piece_fn that copies to *ctx (a uint8_t *) and moves it on. */
static int store_copy_piece(void *ctx, const uint8_t *p, size_t n)
{
    uint8_t **dst = ctx;
    memcpy(*dst, p, n);
    *dst += n;
    return 0;
}

/* Copies [off, off + n) of blob id into buf inside txn. */
static int store_copy(struct cd_store *st, MDB_txn *txn, uint64_t id,
                      uint64_t size, uint64_t off, uint8_t *buf, size_t n)
{
    return cd_store_chunks_walk(st, txn, id, size, off, n, store_copy_piece,
                                &buf);
}


int cd_store_blob_get_local(struct cd_store *st, const char *instance,
                            const struct cd_digest *d, size_t max, void **data)
{
    if (store_is_empty(st, d)) {
        void *p = malloc(1);
        if (p == NULL)
            return CAIRN_E_NOMEM;
        *data = p;
        return 0;
    }
    struct store_key k;
    int rc = cd_store_key_make(STORE_KIND_BLOB, instance, d, &k);
    if (rc != 0)
        return rc == CAIRN_E_INVAL && d->size < 0 ? CAIRN_E_NOTFOUND : rc;
    MDB_txn *txn = NULL;
    if ((rc = cd_store_rtxn_begin(st, &txn)) != 0)
        return rc;
    struct store_meta m = {0, 0, 0};
    uint8_t *p = NULL;
    rc = cd_store_meta_get(st, txn, &k, &m);
    if (rc == 0 && m.size > max)
        rc = CAIRN_E_TOOBIG;
    if (rc == 0 && (p = malloc(m.size ? m.size : 1)) == NULL)
        rc = CAIRN_E_NOMEM;
    if (rc == 0)
        rc = store_copy(st, txn, m.id, m.size, 0, p, (size_t)m.size);
    cd_store_rtxn_end(st, txn);
    if (rc == 0 && !st->verify_off && !cd_store_verified_recently(st, m.id)) {
        struct ck_sha256 *h = NULL;
        if ((rc = ck_sha256_new(&h)) == 0 &&
            (rc = ck_sha256_update(h, p, (size_t)m.size)) == 0)
            rc = cd_store_verify_end(st, &k, m.id, h);
        ck_sha256_free(h);
    }
    if (rc == CAIRN_E_CORRUPT)
        rc = cd_store_corrupt_check(st, &k, m.id, rc);
    if (rc != 0) {
        free(p);
        return rc;
    }
    cd_store_touch(st, &k);
    *data = p;
    return 0;
}

int cd_store_reader_open_local(struct cd_store *st, const char *instance,
                               const struct cd_digest *d, struct cd_reader **out)
{
    struct cd_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return CAIRN_E_NOMEM;
    r->st = st;
    if (store_is_empty(st, d)) {
        *out = r;
        return 0;
    }
    int rc = cd_store_key_make(STORE_KIND_BLOB, instance, d, &r->key);
    if (rc != 0) {
        free(r);
        return d->size < 0 ? CAIRN_E_NOTFOUND : rc;
    }
    MDB_txn *txn = NULL;
    if ((rc = cd_store_rtxn_begin(st, &txn)) != 0) {
        free(r);
        return rc;
    }
    struct store_meta m;
    rc = cd_store_meta_get(st, txn, &r->key, &m);
    cd_store_rtxn_end(st, txn);
    if (rc == 0)
        rc = cd_store_pin(st, m.id);
    if (rc != 0) {
        free(r);
        return rc;
    }
    r->id = m.id;
    r->size = m.size;
    cd_store_touch(st, &r->key);
    *out = r;
    return 0;
}

int cd_reader_read_local(struct cd_reader *r, uint64_t offset, void *buf,
                         size_t n, size_t *got)
{
    /* One short read txn per call, not one for the reader's lifetime: a
     * slow client must not pin old pages. The walk checks whether the
     * blob was evicted since the last call (ids are never reused). */
    struct cd_store *st = r->st;
    uint8_t *dst = buf;
    int rc = cd_store_blob_walk(st, &r->key, r->id, r->size, offset, n,
                                store_copy_piece, &dst);
    if (rc == 0)
        rc = cd_store_reader_check(r, offset, buf, n);
    rc = cd_store_corrupt_check(st, &r->key, r->id, rc);
    if (rc != 0)
        return rc;
    *got = n;
    return 0;
}

void cd_reader_close_local(struct cd_reader *r)
{
    if (r->bg != NULL) {
        uint8_t unused[CK_SHA256_LEN];
        (void)cd_store_hasher_join(r, true, unused);
    }
    if (r->id != 0)
        cd_store_unpin(r->st, r->id);
    ck_sha256_free(r->h);
    free(r);
}
