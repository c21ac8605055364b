/* Upload sessions: begin, write (hashing on the way in, staging full
 * buffers through store_stage.c), commit (verify, then publish in one
 * txn), abort, and the expiry of idle uploads. cd_store_blob_put is an
 * upload in one call. */
#include "server/store/store_txn.h"

#include <stdlib.h>
#include <string.h>

static int store_exists(struct cd_store *st, const struct store_key *k,
                        bool *exists)
{
    MDB_txn *txn = NULL;
    int rc = cd_store_rtxn_begin(st, &txn);
    if (rc != 0)
        return rc;
    MDB_val mk = {k->len, (void *)k->b}, mv;
    rc = mdb_get(txn, st->dbi_entries, &mk, &mv);
    cd_store_rtxn_end(st, txn);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return cd_store_mdb_err(rc);
    *exists = rc == 0;
    return 0;
}

int cd_store_upload_begin(struct cd_store *st, const char *instance,
                          const struct cd_digest *d, struct cd_upload **out)
{
    if (store_is_empty(st, d))
        return CAIRN_E_EXISTS;
    struct store_key k;
    int rc = cd_store_key_make(STORE_KIND_BLOB, instance, d, &k);
    if (rc != 0)
        return rc;
    if (st->max_size != 0 && (uint64_t)d->size > st->max_size)
        return CAIRN_E_FULL;
    bool exists = false;
    if ((rc = store_exists(st, &k, &exists)) != 0)
        return rc;
    if (exists) {
        cd_store_touch(st, &k);
        return CAIRN_E_EXISTS;
    }
    struct cd_upload *u = calloc(1, sizeof *u);
    if (u == NULL)
        return CAIRN_E_NOMEM;
    if ((rc = ck_sha256_new(&u->h)) != 0) {
        free(u);
        return rc;
    }
    pthread_mutex_init(&u->mu, NULL);
    u->st = st;
    u->key = k;
    u->d = *d;
    u->last = store_now();
    pthread_mutex_lock(&st->ctr_mu);
    u->id = st->next_id++;
    pthread_mutex_unlock(&st->ctr_mu);
    pthread_mutex_lock(&st->up_mu);
    u->next = st->uploads;
    if (st->uploads != NULL)
        st->uploads->prev = u;
    st->uploads = u;
    u->listed = true;
    pthread_mutex_unlock(&st->up_mu);
    *out = u;
    return 0;
}

int cd_upload_write(struct cd_upload *u, const void *p, size_t n)
{
    pthread_mutex_lock(&u->mu);
    int rc = u->err;
    u->last = store_now();
    if (rc != 0)
        goto out;
    if (n > (uint64_t)u->d.size - u->off) {
        rc = CAIRN_E_INVAL;
        goto out;
    }
    if (u->st->tier != NULL && (rc = cd_store_tier_upload_write(u, p, n)) != 0)
        goto poison;
    if ((rc = ck_sha256_update(u->h, p, n)) != 0)
        goto poison;
    if (u->buf == NULL && n > 0 && (rc = cd_store_buf_alloc(u)) != 0)
        goto poison;
    const uint8_t *src = p;
    while (n > 0) {
        /* The data after the last full buffer stays for the publish txn,
         * so a blob that fits one buffer costs one txn; every earlier full
         * buffer is staged at once. */
        size_t take = u->cap - u->blen;
        if (take > n)
            take = n;
        bool more = u->off + take < (uint64_t)u->d.size;
        if (u->blen == 0 && take == u->cap && more) {
            /* A whole buffer's worth arrived in one piece: staged from the
             * caller's memory, so synchronously, and without a copy. */
            if ((rc = cd_store_stage_wait(u)) != 0 ||
                (rc = cd_store_stage(u, src, take)) != 0)
                goto poison;
        } else {
            memcpy(u->buf + u->blen, src, take);
            u->blen += take;
            if (u->blen == u->cap && more) {
                /* The stager must be done with the other buffer before
                 * it is refilled: this is the upload's backpressure. */
                if ((rc = cd_store_stage_wait(u)) != 0 ||
                    (rc = cd_store_stage_async(u)) != 0)
                    goto poison;
            }
        }
        u->off += take;
        src += take;
        n -= take;
    }
    goto out;
poison:
    /* The hash has consumed bytes that are not staged: the upload cannot
     * continue; commit reports the same error. */
    u->err = rc;
out:
    pthread_mutex_unlock(&u->mu);
    return rc;
}

int cd_upload_wait(struct cd_upload *u)
{
    pthread_mutex_lock(&u->mu);
    int rc = u->err;
    if (rc == 0 && (rc = cd_store_stage_wait(u)) != 0)
        u->err = rc;
    pthread_mutex_unlock(&u->mu);
    return rc;
}

void cd_upload_touch(struct cd_upload *u)
{
    pthread_mutex_lock(&u->mu);
    u->last = store_now();
    pthread_mutex_unlock(&u->mu);
}

uint64_t cd_upload_offset(const struct cd_upload *u)
{
    return u->off;
}

/* Frees u; drops what it staged unless maintain already did. */
static void store_upload_free(struct cd_upload *u, bool drop)
{
    struct cd_store *st = u->st;
    pthread_mutex_lock(&st->up_mu);
    if (u->listed) {
        if (u->prev != NULL)
            u->prev->next = u->next;
        else
            st->uploads = u->next;
        if (u->next != NULL)
            u->next->prev = u->prev;
        u->listed = false;
    }
    pthread_mutex_unlock(&st->up_mu);
    /* The stager may still be writing u's chunks; they must be in before
     * they can be dropped. */
    (void)cd_store_stage_wait(u);
    /* After unlisting, maintain cannot reach u any more; u->pending is
     * false if maintain expired it and dropped the chunks itself. */
    if (drop && u->pending)
        (void)cd_store_chunks_drop(st, st->dbi_pending, u->id);
    ck_sha256_free(u->h);
    cd_store_tier_upload_free(u);
    cd_store_buf_free(u);
    pthread_mutex_destroy(&u->mu);
    free(u);
}

/* The publish txn: everything the blob needs becomes visible at once. */
static int store_publish(struct cd_upload *u, struct store_evicted *ev,
                         bool *dup)
{
    struct cd_store *st = u->st;
    MDB_txn *txn = NULL;
    struct store_stats_rec s;
    int rc = cd_store_wtxn_begin(st, &txn, &s);
    if (rc != 0)
        return rc;
    struct store_meta m;
    rc = cd_store_meta_get(st, txn, &u->key, &m);
    if (rc == 0) {
        /* A concurrent upload of the same digest won; ours is redundant. */
        *dup = true;
        goto fail;
    }
    if (rc != CAIRN_E_NOTFOUND)
        goto fail;
    uint64_t size = (uint64_t)u->d.size;
    if ((rc = cd_store_evict(st, txn, &s, size, ev)) != 0)
        goto fail;
    /* The rest of the data: whole chunks and a last, shorter one. */
    for (size_t off = 0; off < u->blen; off += CD_STORE_CHUNK) {
        uint8_t ck[STORE_CHUNK_KEY];
        size_t n =
            u->blen - off < CD_STORE_CHUNK ? u->blen - off : CD_STORE_CHUNK;
        store_chunk_key(ck, u->id,
                        u->nstaged + (uint32_t)(off / CD_STORE_CHUNK));
        MDB_val k = {STORE_CHUNK_KEY, ck}, v = {n, u->buf + off};
        if ((rc = cd_store_mdb_err(mdb_put(txn, st->dbi_chunks, &k, &v, 0))) !=
            0)
            goto fail;
    }
    m = (struct store_meta){size, s.next_seq++, u->id};
    uint8_t sk[8];
    store_be64(sk, m.seq);
    MDB_val ek = {u->key.len, u->key.b}, ev_ = {sizeof m, &m};
    MDB_val lk = {8, sk}, lv = {u->key.len, u->key.b};
    if ((rc = cd_store_mdb_err(mdb_put(txn, st->dbi_entries, &ek, &ev_, 0))) !=
            0 ||
        (rc = cd_store_mdb_err(mdb_put(txn, st->dbi_lru, &lk, &lv, 0))) != 0)
        goto fail;
    if (u->pending) {
        uint8_t ik[8];
        store_be64(ik, u->id);
        MDB_val pk = {8, ik};
        int prc = mdb_del(txn, st->dbi_pending, &pk, NULL);
        if (prc != 0 && prc != MDB_NOTFOUND) {
            rc = cd_store_mdb_err(prc);
            goto fail;
        }
    }
    s.blobs++;
    s.bytes += size;
    if (s.next_id <= u->id)
        s.next_id = u->id + 1;
    if ((rc = cd_store_wtxn_end(st, txn, &s, 0)) != 0)
        return rc;
    u->pending = false; /* the chunks belong to the blob now */
    return cd_store_sync(st);
fail:
    mdb_txn_abort(txn);
    return rc;
}

int cd_upload_commit(struct cd_upload *u)
{
    struct cd_store *st = u->st;
    /* Held to the end, so cd_store_maintain cannot expire the upload and
     * drop its chunks while they are being published. */
    pthread_mutex_lock(&u->mu);
    int rc = u->err;
    if (rc == 0)
        rc = cd_store_stage_wait(u);
    if (rc != 0)
        goto out;
    uint8_t h[CK_SHA256_LEN];
    if (u->off != (uint64_t)u->d.size) {
        rc = CAIRN_E_DIGEST;
        goto out;
    }
    if ((rc = ck_sha256_final(u->h, h)) != 0)
        goto out;
    if (memcmp(h, u->d.hash, CK_SHA256_LEN) != 0) {
        rc = CAIRN_E_DIGEST;
        goto out;
    }
    /* Write-through: in the bucket before it is visible or acknowledged. */
    if (st->tier != NULL && (rc = cd_store_tier_upload_commit(u)) != 0)
        goto out;
    struct store_evicted ev = {0, 0};
    bool dup = false;
    rc = store_publish(u, &ev, &dup);
    if (dup) {
        cd_store_touch(st, &u->key);
        rc = 0;
    } else if (rc == 0) {
        /* These are the bytes just hashed on the way in, and still in the
         * page cache: a read within verify_ttl_s need not hash them. */
        cd_store_verified_mark(st, u->id);
    }
    if (ev.blobs > 0) {
        cd_store_evicted_account(st, &ev);
        (void)cd_store_sweep(st, st->dbi_garbage);
    }
out:
    pthread_mutex_unlock(&u->mu);
    store_upload_free(u, true);
    return rc;
}

void cd_upload_abort(struct cd_upload *u)
{
    if (u != NULL)
        store_upload_free(u, true);
}

int cd_store_blob_put(struct cd_store *st, const char *instance,
                      const struct cd_digest *d, const void *data, size_t len)
{
    if ((uint64_t)len != (uint64_t)d->size || d->size < 0)
        return CAIRN_E_DIGEST;
    struct cd_upload *u = NULL;
    int rc = cd_store_upload_begin(st, instance, d, &u);
    if (rc == CAIRN_E_EXISTS) {
        /* Present already; still refuse content that does not match. */
        uint8_t h[CK_SHA256_LEN];
        if ((rc = ck_sha256(data, len, h)) != 0)
            return rc;
        return memcmp(h, d->hash, CK_SHA256_LEN) == 0 ? 0 : CAIRN_E_DIGEST;
    }
    if (rc != 0)
        return rc;
    if ((rc = cd_upload_write(u, data, len)) != 0) {
        cd_upload_abort(u);
        return rc;
    }
    return cd_upload_commit(u);
}

/* Marks idle uploads expired and returns their ids (those with staged
 * chunks) in a malloc'd array. An upload busy in another thread is not
 * idle: trylock skips it rather than waiting. */
int cd_store_uploads_expire(struct cd_store *st, uint64_t **ids, size_t *nids)
{
    time_t now = store_now();
    size_t n = 0, cap = 0;
    uint64_t *v = NULL;
    int rc = 0;
    pthread_mutex_lock(&st->up_mu);
    struct cd_upload *u = st->uploads;
    while (u != NULL) {
        struct cd_upload *next = u->next;
        if (pthread_mutex_trylock(&u->mu) != 0) {
            u = next;
            continue;
        }
        pthread_mutex_lock(&st->sg_mu);
        bool staging = u->staging;
        pthread_mutex_unlock(&st->sg_mu);
        if (!staging && now - u->last >= (time_t)st->ttl_s &&
            u->err != CAIRN_E_TIMEOUT) {
            if (u->pending && n == cap) {
                size_t nc = cap ? 2 * cap : 8;
                uint64_t *nv = realloc(v, nc * sizeof *nv);
                if (nv == NULL) {
                    rc = CAIRN_E_NOMEM;
                    pthread_mutex_unlock(&u->mu);
                    break;
                }
                v = nv;
                cap = nc;
            }
            if (u->pending)
                v[n++] = u->id;
            u->pending = false;
            u->err = CAIRN_E_TIMEOUT;
            cd_store_buf_free(u); /* the owner may never come back */
        }
        pthread_mutex_unlock(&u->mu);
        u = next;
    }
    pthread_mutex_unlock(&st->up_mu);
    *ids = v;
    *nids = n;
    return rc;
}
