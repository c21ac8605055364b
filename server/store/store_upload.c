/* Upload sessions: begin, write (hashing on the way in, staging full
 * buffers through store_stage.c), commit (verify, then publish in one
 * through the group commit, store_group.c), abort, and the expiry of idle
 * uploads. cd_store_blob_put(_many) publishes whole blobs from the
 * caller's memory through the same group commit. */
#include "server/store/store_txn.h"

#include <stdlib.h>
#include <string.h>

/* Whether k is stored, looked up in rtxn (a read txn of the caller's,
 * so a batch takes one for all its blobs) or, when NULL, in one of its
 * own. */
static int store_exists(struct cd_store *st, MDB_txn *rtxn,
                        const struct store_key *k, bool *exists)
{
    MDB_txn *txn = rtxn;
    int rc = txn == NULL ? cd_store_rtxn_begin(st, &txn) : 0;
    if (rc != 0)
        return rc;
    MDB_val mk = {k->len, (void *)k->b}, mv;
    rc = mdb_get(txn, st->dbi_entries, &mk, &mv);
    if (rtxn == NULL)
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
    if ((rc = store_exists(st, NULL, &k, &exists)) != 0)
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
    if (u->tier_only) {
        /* In the tier's temp file only; LMDB is filled after the ack. */
        u->off += n;
        goto out;
    }
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

/* Takes u off the store's list of live uploads: cd_store_maintain cannot
 * expire it any more (u->mu held). */
static void store_upload_unlist(struct cd_upload *u)
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
}

/* Frees u; drops what it staged unless maintain already did. */
static void store_upload_free(struct cd_upload *u, bool drop)
{
    struct cd_store *st = u->st;
    store_upload_unlist(u);
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

/* What cd_upload_commit checks before publishing: no error, every byte
 * staged or buffered, and the hash. Then u is unlisted (u->mu held). */
static int store_upload_seal(struct cd_upload *u)
{
    int rc = u->err;
    if (rc == 0)
        rc = cd_store_stage_wait(u);
    if (rc != 0)
        return rc;
    uint8_t h[CK_SHA256_LEN];
    if (u->off != (uint64_t)u->d.size)
        return CAIRN_E_DIGEST;
    if ((rc = ck_sha256_final(u->h, h)) != 0)
        return rc;
    if (memcmp(h, u->d.hash, CK_SHA256_LEN) != 0)
        return CAIRN_E_DIGEST;
    /* Write-through: in the bucket before it is visible or acknowledged. */
    if (u->st->tier != NULL && (rc = cd_store_tier_upload_commit(u)) != 0)
        return rc;
    store_upload_unlist(u);
    return 0;
}

static void store_pub_of(struct cd_upload *u, struct store_pub *p)
{
    memset(p, 0, sizeof *p);
    p->key = u->key;
    p->size = (uint64_t)u->d.size;
    p->id = u->id;
    p->nstaged = u->nstaged;
    p->pending = u->pending;
    p->tail = u->buf;
    p->tail_len = u->blen;
}

int cd_upload_commit(struct cd_upload *u)
{
    /* u->mu is held until u is off the list, so cd_store_maintain cannot
     * expire the upload and drop its chunks while they are published. */
    pthread_mutex_lock(&u->mu);
    int rc = store_upload_seal(u);
    pthread_mutex_unlock(&u->mu);
    if (rc == 0 && u->tier_only) {
        cd_store_tier_upload_done(u); /* in the bucket: done */
    } else if (rc == 0) {
        struct store_pub p, *pp = &p;
        store_pub_of(u, &p);
        cd_store_publish(u->st, &pp, 1);
        rc = p.item.rc;
        if (rc == 0 && !p.dup)
            u->pending = false; /* the chunks belong to the blob now */
    }
    store_upload_free(u, true);
    return rc;
}

/* cd_upload_commit_async's item: the publish and whom to tell. */
struct store_commit {
    struct store_pub pub;
    struct cd_upload *u;
    cd_upload_done_fn *done;
    void *ctx;
};

static void store_commit_done(struct cd_group_item *it)
{
    struct store_commit *c = (struct store_commit *)it;
    int rc = it->rc;
    if (rc == 0 && !c->pub.dup)
        c->u->pending = false;
    store_upload_free(c->u, true);
    c->done(c->ctx, rc);
    free(c);
}

void cd_upload_commit_async(struct cd_upload *u, cd_upload_done_fn *done, void *ctx)
{
    pthread_mutex_lock(&u->mu);
    int rc = store_upload_seal(u);
    pthread_mutex_unlock(&u->mu);
    struct store_commit *c = NULL;
    if (rc == 0 && u->tier_only) {
        /* In the bucket: answered now, LMDB filled behind. */
        cd_store_tier_upload_done(u);
        store_upload_free(u, true);
        done(ctx, 0);
        return;
    }
    if (rc == 0 && (c = malloc(sizeof *c)) == NULL)
        rc = CAIRN_E_NOMEM;
    if (rc != 0) {
        store_upload_free(u, true);
        done(ctx, rc);
        return;
    }
    store_pub_of(u, &c->pub);
    c->u = u;
    c->done = done;
    c->ctx = ctx;
    c->pub.item.weight = c->pub.tail_len;
    c->pub.item.done = store_commit_done;
    cd_group_submit(u->st->group, &c->pub.item);
}

void cd_upload_abort(struct cd_upload *u)
{
    if (u != NULL)
        store_upload_free(u, true);
}

/* Checks one blob of cd_store_blob_put_many and prepares its publish;
 * returns 0 with *todo set when it must be published, else its result.
 * hs and rtxn are the batch's: one hash context and one read txn for
 * all its blobs (per blob, their setup cost as much as a 1 KiB blob's
 * hashing and lookup). */
static int store_put_prepare(struct cd_store *st, struct ck_sha256 *hs,
                             MDB_txn *rtxn, const char *instance,
                             const struct cd_digest *d, const void *data,
                             size_t len, struct store_pub *p, bool *todo)
{
    *todo = false;
    if ((uint64_t)len != (uint64_t)d->size || d->size < 0)
        return CAIRN_E_DIGEST;
    /* Present or not, content that does not match is refused. */
    uint8_t h[CK_SHA256_LEN];
    int rc = ck_sha256_update(hs, data, len);
    if (rc == 0)
        rc = ck_sha256_final(hs, h);
    if (rc != 0)
        return rc;
    if (memcmp(h, d->hash, CK_SHA256_LEN) != 0)
        return CAIRN_E_DIGEST;
    if (store_is_empty(st, d))
        return 0;
    memset(p, 0, sizeof *p);
    if ((rc = cd_store_key_make(STORE_KIND_BLOB, instance, d, &p->key)) != 0)
        return rc;
    bool exists = false;
    if ((rc = store_exists(st, rtxn, &p->key, &exists)) != 0)
        return rc;
    if (exists) {
        cd_store_touch(st, &p->key);
        return 0;
    }
    p->size = (uint64_t)len;
    p->tail = data;
    p->tail_len = len;
    pthread_mutex_lock(&st->ctr_mu);
    p->id = st->next_id++;
    pthread_mutex_unlock(&st->ctr_mu);
    *todo = true;
    return 0;
}

int cd_store_blob_put_many(struct cd_store *st, const char *instance, size_t n,
                           const struct cd_digest *d, const void *const *data,
                           int *rcs)
{
    struct store_pub one, *pubs = &one, *ponly[1], **todo = ponly;
    size_t wone, *which = &wone;
    if (n > 1 && ((pubs = malloc(n * sizeof *pubs)) == NULL ||
                  (todo = malloc(n * sizeof *todo)) == NULL ||
                  (which = malloc(n * sizeof *which)) == NULL)) {
        if (pubs != &one)
            free(pubs);
        if (todo != ponly)
            free(todo);
        return CAIRN_E_NOMEM;
    }
    size_t ntodo = 0;
    struct ck_sha256 *hs = NULL;
    MDB_txn *rtxn = NULL;
    int prc = ck_sha256_new(&hs);
    if (prc == 0)
        prc = cd_store_rtxn_begin(st, &rtxn);
    for (size_t i = 0; i < n; i++) {
        bool t = false;
        rcs[i] = prc != 0 ? prc
                          : store_put_prepare(st, hs, rtxn, instance, &d[i], data[i],
                                              (size_t)d[i].size, &pubs[i], &t);
        /* A hash context that failed is not trusted with the next blob. */
        if (rcs[i] == CAIRN_E_CRYPTO)
            prc = CAIRN_E_CRYPTO;
        if (t)
            which[ntodo++] = i;
    }
    if (rtxn != NULL)
        cd_store_rtxn_end(st, rtxn);
    ck_sha256_free(hs);
    /* Write-through, as for uploads, the blobs' PUTs in parallel: what
     * the bucket did not take is neither published nor acknowledged. */
    int trc = 0;
    if (ntodo > 0 && st->tier != NULL &&
        (trc = cd_store_tier_put_many(st, instance, d, data, which, ntodo)) != 0) {
        for (size_t k = 0; k < ntodo; k++)
            rcs[which[k]] = trc;
        ntodo = 0;
    }
    for (size_t k = 0; k < ntodo; k++)
        todo[k] = &pubs[which[k]];
    cd_store_publish(st, todo, ntodo);
    for (size_t i = 0; i < ntodo; i++)
        rcs[todo[i] - pubs] = todo[i]->item.rc;
    if (pubs != &one) {
        free(pubs);
        free(todo);
        free(which);
    }
    return 0;
}

int cd_store_blob_put(struct cd_store *st, const char *instance,
                      const struct cd_digest *d, const void *data, size_t len)
{
    if ((uint64_t)len != (uint64_t)d->size || d->size < 0)
        return CAIRN_E_DIGEST;
    const void *p = data;
    int rc = 0;
    int mrc = cd_store_blob_put_many(st, instance, 1, d, &p, &rc);
    return mrc != 0 ? mrc : rc;
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
