/* Reads and lookups across the two tiers (docs/storage.md "Two tiers",
 * Reads): the public find_missing, blob_get, reader_open, cd_reader_read
 * and ac_get_complete ask LMDB first (the *_local halves in store_read.c
 * and store_ac.c) and go to the bucket only for what LMDB lacks, so a
 * warm node's lookups and reads send no request to the bucket
 * (tests/integration/test_s3_warm.sh):
 *
 * - a blob only the bucket has is brought in through the normal upload
 *   path (store_upload.c: hashed on the way, published only when it
 *   matches its digest) and then served from LMDB; a streaming reader
 *   serves it from a temp file while LMDB fills behind it. An object that
 *   does not match is reported, deleted from the bucket (so find_missing
 *   says missing and a client uploads it again) and not served.
 * - find_missing asks LMDB, then the bucket with parallel HEADs for the
 *   rest; absent answers are remembered for STORE_TIER_NEG_TTL_MS (the
 *   negative cache, store_tier.c).
 * - the action-cache completeness check counts a blob in the bucket as
 *   present.
 * The bucket itself, its counters and the writes through it are
 * store_tier.c's (store_tier.h says how the two files divide). */
#include "server/store/store_tier.h"

#include "common/buf.h"
#include "server/s3/s3.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* find_missing asks the bucket about this many digests per call of
 * cd_s3_head_many (key memory: 1 KiB each; the s3 module bounds the
 * parallelism). Large, because every batch waits for its slowest HEAD: a
 * FindMissingBlobs of 1,000 is one batch. */
#define STORE_TIER_HEAD_BATCH 1024

/* --- reads: the bucket fills LMDB --------------------------------------- */

/* Deletes and reports an object that is not what its name says. */
static void store_tier_corrupt(struct store_tier *t, const char *key,
                               const char *why)
{
    store_tier_add(&t->corrupt, 1);
    struct cairn_err derr = {0};
    int drc = cd_s3_delete(t->s3, key, &derr);
    cd_store_tier_report(t, "bucket: object %s %s: not served%s", key, why,
                         drc == 0 ? ", deleted" : ", could not delete it");
}

static int store_tier_fill_sink(void *ctx, const void *data, size_t n)
{
    return cd_upload_write(ctx, data, n);
}

/* A GET of key failed with rc, which the s3 module says when an answer
 * did not add up (CAIRN_E_CORRUPT: a short body, a range not served): the
 * object may be of the wrong size, or the transfer broke. Only a HEAD
 * that shows the wrong size makes it corrupt (deleted, NOT_FOUND); else
 * it is a bucket failure. */
static int store_tier_get_failed(struct store_tier *t, const char *key,
                                 const struct cd_digest *d, int rc,
                                 const struct cairn_err *err)
{
    uint64_t size = 0;
    struct cairn_err herr = {0};
    if (rc == CAIRN_E_CORRUPT && cd_s3_head(t->s3, key, &size, &herr) == 0 &&
        size != (uint64_t)d->size) {
        store_tier_corrupt(t, key, "has the wrong size");
        return CAIRN_E_NOTFOUND;
    }
    return cd_store_tier_fail(t, "GET", key, rc, err);
}

/* Brings blob d of instance from the bucket into LMDB through the upload
 * path, which hashes it and publishes it only when it matches. Returns 0
 * (stored now or by a concurrent fill), CAIRN_E_NOTFOUND (not in the
 * bucket, or there but corrupt: then reported and deleted), CAIRN_E_RPC,
 * CAIRN_E_FULL, CAIRN_E_DB. */
static int store_tier_fill(struct cd_store *st, const char *instance,
                           const struct cd_digest *d)
{
    struct store_tier *t = st->tier;
    char key[CD_S3_MAX_KEY];
    int rc = cd_store_tier_key(STORE_KIND_BLOB, instance, d, key, sizeof key);
    if (rc != 0)
        return rc;
    struct cd_upload *u = NULL;
    rc = cd_store_upload_begin(st, instance, d, &u);
    if (rc == CAIRN_E_EXISTS)
        return 0;
    if (rc != 0)
        return rc;
    u->tier_skip = true;
    struct cairn_err err = {0};
    rc = cd_s3_get(t->s3, key, 0, (uint64_t)d->size, store_tier_fill_sink, u,
                   &err);
    if (rc != 0) {
        cd_upload_abort(u);
        /* The store's own write errors (from the sink) are its own. */
        bool local = rc == CAIRN_E_FULL || rc == CAIRN_E_DB ||
                     rc == CAIRN_E_NOMEM || (rc < 0 && rc > -1000);
        return local ? rc : store_tier_get_failed(t, key, d, rc, &err);
    }
    /* The upload hashed every byte: a mismatch is the object's. */
    rc = cd_upload_commit(u);
    if (rc == CAIRN_E_DIGEST) {
        store_tier_corrupt(t, key, "does not match its digest");
        return CAIRN_E_NOTFOUND;
    }
    if (rc == 0) {
        store_tier_add(&t->fills, 1);
        store_tier_add(&t->fill_bytes, (uint64_t)d->size);
    }
    return rc;
}

int cd_store_blob_get(struct cd_store *st, const char *instance,
                      const struct cd_digest *d, size_t max, void **data)
{
    int rc = cd_store_blob_get_local(st, instance, d, max, data);
    if (rc != CAIRN_E_NOTFOUND || st->tier == NULL || d->size < 0)
        return rc;
    if (instance == NULL)
        instance = "";
    if ((uint64_t)d->size > max)
        return CAIRN_E_TOOBIG;
    if ((rc = store_tier_fill(st, instance, d)) != 0)
        return rc;
    return cd_store_blob_get_local(st, instance, d, max, data);
}

/* --- streaming reads: the caller reads while LMDB fills ----------------- */

/* A cd_reader of a blob only the bucket has. A thread of its own GETs the
 * object into an unlinked temp file and hashes it; reads wait for the
 * bytes they ask for, and the read that would return the blob's last bytes
 * waits for the hash, so a corrupt object is never served whole
 * (CAIRN_E_CORRUPT, as a local blob that fails verification). Only then,
 * off the caller's path, the thread feeds the temp file to an upload that
 * publishes the blob in LMDB (LMDB's synced staging would otherwise pace
 * the GET). Readers of the same blob that come while it is fetched join
 * the fetch (store_tier_rd_join). Each reader and the thread hold a
 * reference; when every reader closed before the end the GET stops, else
 * the thread finishes the local copy on its own. cd_store_tier_close
 * waits for such threads. */
struct store_tier_rd {
    struct cd_store *st;
    struct cd_digest d;
    char key[CD_S3_MAX_KEY];
    int fd;
    struct cd_upload *u;  /* NULL: not kept (no room) */
    struct ck_sha256 *h;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint64_t avail; /* bytes in fd, under mu */
    bool done;      /* under mu; then rc is the fetch's result */
    bool stop;      /* under mu: the reader closed */
    int rc;
    unsigned refs;    /* under mu: one per reader, one the thread's */
    unsigned readers; /* under mu: when it drops to 0, stop */
    struct store_tier_rd *next; /* tier->active, under tier->run_mu */
};

static int store_tier_rd_sink(void *ctx, const void *data, size_t n)
{
    struct store_tier_rd *t = ctx;
    pthread_mutex_lock(&t->mu);
    bool stop = t->stop;
    uint64_t off = t->avail;
    pthread_mutex_unlock(&t->mu);
    if (stop)
        return -ECANCELED;
    int rc = ck_sha256_update(t->h, data, n);
    const uint8_t *p = data;
    for (size_t left = n; rc == 0 && left > 0;) {
        ssize_t w = pwrite(t->fd, p, left, (off_t)(off + (uint64_t)(p - (const uint8_t *)data)));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = w < 0 ? -errno : CAIRN_E_IO;
        else {
            p += w;
            left -= (size_t)w;
        }
    }
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&t->mu);
    t->avail += n;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->mu);
    return 0;
}

/* Publishes the verified temp file in LMDB through t->u. */
static int store_tier_rd_keep(struct store_tier_rd *t)
{
    size_t cap = CD_STORE_CHUNK;
    uint8_t *buf = malloc(cap);
    int rc = buf == NULL ? CAIRN_E_NOMEM : 0;
    uint64_t size = (uint64_t)t->d.size;
    for (uint64_t off = 0; rc == 0 && off < size;) {
        size_t want = size - off < cap ? (size_t)(size - off) : cap;
        ssize_t k = pread(t->fd, buf, want, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            rc = k < 0 ? -errno : CAIRN_E_IO;
        else if ((rc = cd_upload_write(t->u, buf, (size_t)k)) == 0)
            off += (uint64_t)k;
    }
    free(buf);
    if (rc != 0) {
        cd_upload_abort(t->u);
        t->u = NULL;
        return rc;
    }
    rc = cd_upload_commit(t->u);
    t->u = NULL;
    return rc;
}

static void store_tier_rd_free(struct store_tier_rd *t)
{
    if (t->u != NULL)
        cd_upload_abort(t->u);
    if (t->fd >= 0)
        close(t->fd);
    ck_sha256_free(t->h);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cond);
    free(t);
}

/* Drops one reference; the last frees t. reader: a reader's; the last
 * reader's stops a GET still running. */
static void store_tier_rd_put(struct store_tier_rd *t, bool reader)
{
    pthread_mutex_lock(&t->mu);
    if (reader && --t->readers == 0)
        t->stop = true;
    unsigned left = --t->refs;
    pthread_mutex_unlock(&t->mu);
    if (left == 0)
        store_tier_rd_free(t);
}

/* The end of a thread store_tier_thread_start started: t leaves
 * tier->active (keep: a post-ack copy, which also leaves tier->keeping and
 * holds a reader's reference; else a fetch's own), drops the thread's
 * reference, and the thread's count goes last, since that is the last
 * touch of the store cd_store_tier_close waits for. */
static void store_tier_thread_end(struct store_tier *tier,
                                  struct store_tier_rd *t, bool keep)
{
    pthread_mutex_lock(&tier->run_mu);
    for (struct store_tier_rd **pp = &tier->active; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    if (keep) {
        tier->keeping--;
        tier->keep_bytes -= (uint64_t)t->d.size;
    }
    pthread_mutex_unlock(&tier->run_mu);
    store_tier_rd_put(t, keep);
    pthread_mutex_lock(&tier->run_mu);
    tier->running--;
    pthread_cond_broadcast(&tier->run_cond);
    pthread_mutex_unlock(&tier->run_mu);
}

/* Lists t in tier->active and starts fn(t) on a detached thread (counted
 * in tier->running) holding refs references, t counting one reader. On
 * failure t is unlisted and keeps refs - 1. */
static int store_tier_thread_start(struct store_tier *tier,
                                   struct store_tier_rd *t,
                                   void *(*fn)(void *), unsigned refs)
{
    pthread_attr_t a;
    pthread_t th;
    if (pthread_attr_init(&a) != 0)
        return CAIRN_E_NOMEM;
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    t->refs = refs;
    t->readers = 1;
    int rc = 0;
    /* Listed before the thread runs, which unlists it at its end. */
    pthread_mutex_lock(&tier->run_mu);
    tier->running++;
    t->next = tier->active;
    tier->active = t;
    if (pthread_create(&th, &a, fn, t) != 0) {
        t->refs = refs - 1;
        tier->active = t->next;
        tier->running--;
        rc = CAIRN_E_NOMEM;
    }
    pthread_mutex_unlock(&tier->run_mu);
    pthread_attr_destroy(&a);
    return rc;
}

static void *store_tier_rd_main(void *arg)
{
    struct store_tier_rd *t = arg;
    struct store_tier *tier = t->st->tier;
    struct cairn_err err = {0};
    uint64_t size = (uint64_t)t->d.size;
    int rc = cd_s3_get(tier->s3, t->key, 0, size, store_tier_rd_sink, t, &err);
    if (rc == 0) {
        uint8_t h[CK_SHA256_LEN];
        if ((rc = ck_sha256_final(t->h, h)) == 0 &&
            memcmp(h, t->d.hash, CK_SHA256_LEN) != 0)
            rc = CAIRN_E_CORRUPT;
        if (rc == CAIRN_E_CORRUPT)
            store_tier_corrupt(tier, t->key, "does not match its digest");
    } else if (rc != -ECANCELED) {
        /* The size was right at the HEAD: a transfer that broke. */
        rc = cd_store_tier_fail(tier, "GET", t->key, rc, &err);
    }
    pthread_mutex_lock(&t->mu);
    t->rc = rc;
    t->done = true;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->mu);
    if (rc == 0 && t->u != NULL && store_tier_rd_keep(t) == 0) {
        store_tier_add(&tier->fills, 1);
        store_tier_add(&tier->fill_bytes, size);
    }
    store_tier_thread_end(tier, t, false);
    return NULL;
}

/* The fetch of key another reader started, if it is still good to read
 * from (going, or done and verified): one more reader on it, returned.
 * Callers of a cold blob share one GET and one temp file. */
static struct store_tier_rd *store_tier_rd_join(struct store_tier *tier,
                                                const char *key)
{
    struct store_tier_rd *found = NULL;
    pthread_mutex_lock(&tier->run_mu);
    for (struct store_tier_rd *a = tier->active; a != NULL && found == NULL;
         a = a->next) {
        if (strcmp(a->key, key) != 0)
            continue;
        pthread_mutex_lock(&a->mu);
        if (!a->stop && !(a->done && a->rc != 0)) {
            a->refs++;
            a->readers++;
            found = a;
        }
        pthread_mutex_unlock(&a->mu);
    }
    pthread_mutex_unlock(&tier->run_mu);
    if (found != NULL)
        store_tier_add(&tier->shared, 1);
    return found;
}

/* Opens a streaming reader on the bucket's copy of d, after a HEAD (so a
 * missing object is NOT_FOUND at open, as for a local blob). Returns 0,
 * CAIRN_E_EXISTS (LMDB has it now: open that), CAIRN_E_NOTFOUND,
 * CAIRN_E_RPC, CAIRN_E_NOMEM, negative errno. */
static int store_tier_reader_open(struct cd_store *st, const char *instance,
                                  const struct cd_digest *d,
                                  struct cd_reader **out)
{
    struct store_tier *tier = st->tier;
    char key[CD_S3_MAX_KEY];
    int rc = cd_store_tier_key(STORE_KIND_BLOB, instance, d, key, sizeof key);
    if (rc != 0)
        return rc;
    struct cd_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return CAIRN_E_NOMEM;
    r->st = st;
    r->size = (uint64_t)d->size;
    if ((r->trd = store_tier_rd_join(tier, key)) != NULL) {
        *out = r;
        return 0;
    }
    struct store_tier_rd *t = calloc(1, sizeof *t);
    if (t == NULL) {
        free(r);
        return CAIRN_E_NOMEM;
    }
    t->st = st;
    t->d = *d;
    t->fd = -1;
    memcpy(t->key, key, sizeof key);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cond, NULL);
    struct cairn_err err = {0};
    uint64_t size = 0;
    if ((rc = cd_s3_head(tier->s3, t->key, &size, &err)) != 0)
        rc = cd_store_tier_fail(tier, "HEAD", t->key, rc, &err);
    if (rc == 0 && size != (uint64_t)d->size) {
        store_tier_corrupt(tier, t->key, "has the wrong size");
        rc = CAIRN_E_NOTFOUND;
    }
    if (rc == 0)
        rc = ck_sha256_new(&t->h);
    if (rc == 0)
        rc = cd_store_tier_tmp_open(tier->dir, &t->fd);
    if (rc == 0) {
        int urc = cd_store_upload_begin(st, instance, d, &t->u);
        if (urc == CAIRN_E_EXISTS)
            rc = urc;
        else if (urc == 0)
            t->u->tier_skip = true;
        else
            t->u = NULL; /* no room locally: stream without keeping it */
    }
    if (rc == 0)
        rc = store_tier_thread_start(tier, t, store_tier_rd_main, 2);
    if (rc != 0) {
        store_tier_rd_free(t);
        free(r);
        return rc;
    }
    r->trd = t;
    *out = r;
    return 0;
}

static int store_tier_rd_read(struct cd_reader *r, uint64_t offset, void *buf,
                              size_t n, size_t *got)
{
    /* cd_reader_read checked offset and clamped n to the blob: n > 0. */
    struct store_tier_rd *t = r->trd;
    bool last = offset + n == r->size;
    pthread_mutex_lock(&t->mu);
    while (!t->done && (last || t->avail < offset + n))
        pthread_cond_wait(&t->cond, &t->mu);
    /* A failed fetch fails every read after it, even of bytes already
     * here: the blob is not to be trusted, nor the bucket reachable. */
    int rc = 0;
    if (t->done && t->rc != 0)
        rc = t->rc == -ECANCELED ? CAIRN_E_RPC : t->rc;
    else if (t->avail < offset + n)
        rc = CAIRN_E_RPC;
    pthread_mutex_unlock(&t->mu);
    uint8_t *dst = buf;
    for (size_t left = n; rc == 0 && left > 0;) {
        ssize_t k = pread(t->fd, dst, left, (off_t)(offset + (uint64_t)(dst - (uint8_t *)buf)));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            rc = k < 0 ? -errno : CAIRN_E_IO;
        else {
            dst += k;
            left -= (size_t)k;
        }
    }
    if (rc != 0)
        return rc;
    *got = n;
    return 0;
}

static void store_tier_rd_close(struct cd_reader *r)
{
    store_tier_rd_put(r->trd, true);
    r->trd = NULL;
}

int cd_store_reader_open(struct cd_store *st, const char *instance,
                         const struct cd_digest *d, struct cd_reader **out)
{
    int rc = cd_store_reader_open_local(st, instance, d, out);
    if (rc != CAIRN_E_NOTFOUND || st->tier == NULL || d->size < 0)
        return rc;
    if (instance == NULL)
        instance = "";
    rc = store_tier_reader_open(st, instance, d, out);
    if (rc == CAIRN_E_EXISTS)
        return cd_store_reader_open_local(st, instance, d, out);
    return rc;
}

int cd_reader_read(struct cd_reader *r, uint64_t offset, void *buf, size_t n,
                   size_t *got)
{
    if (offset > r->size)
        return CAIRN_E_INVAL;
    if (r->size - offset < n)
        n = (size_t)(r->size - offset);
    if (n == 0) {
        *got = 0;
        return 0;
    }
    if (r->trd != NULL)
        return store_tier_rd_read(r, offset, buf, n, got);
    return cd_reader_read_local(r, offset, buf, n, got);
}

void cd_reader_close(struct cd_reader *r)
{
    if (r == NULL)
        return;
    if (r->trd != NULL)
        store_tier_rd_close(r);
    cd_reader_close_local(r);
}

/* --- find_missing: local, negative cache, HEADs -------------------------- */

/* Asks the bucket about the digests idx[0..n) names; clears missing[] of
 * those present, remembers the absent ones. */
static int store_tier_heads(struct store_tier *t, const char *instance,
                            uint64_t inst, const struct cd_digest *digests,
                            const size_t *idx, size_t n, bool *missing,
                            char *keys, const char **kp, bool *present)
{
    for (size_t j = 0; j < n; j++) {
        kp[j] = keys + j * CD_S3_MAX_KEY;
        int rc = cd_store_tier_key(STORE_KIND_BLOB, instance, &digests[idx[j]],
                                keys + j * CD_S3_MAX_KEY, CD_S3_MAX_KEY);
        if (rc != 0)
            return rc;
    }
    struct cairn_err err = {0};
    int rc = cd_s3_head_many(t->s3, kp, n, present, &err);
    store_tier_add(&t->heads, n);
    if (rc != 0)
        return cd_store_tier_fail(t, "HEAD", kp[0], rc, &err);
    uint64_t now = store_tier_now_ms();
    for (size_t j = 0; j < n; j++) {
        if (present[j])
            missing[idx[j]] = false;
        else
            cd_store_tier_neg_add(t, inst, &digests[idx[j]], now);
    }
    return 0;
}

int cd_store_find_missing(struct cd_store *st, const char *instance,
                          const struct cd_digest *digests, size_t n,
                          bool *missing)
{
    int rc = cd_store_find_missing_local(st, instance, digests, n, missing);
    struct store_tier *t = st->tier;
    if (rc != 0 || t == NULL)
        return rc;
    if (instance == NULL)
        instance = "";
    size_t cap = 0;
    for (size_t i = 0; i < n && cap < STORE_TIER_HEAD_BATCH; i++)
        cap += missing[i] && digests[i].size >= 0;
    if (cap == 0)
        return 0;
    char *keys = malloc(cap * CD_S3_MAX_KEY);
    const char **kp = malloc(cap * sizeof *kp);
    bool *present = malloc(cap * sizeof *present);
    size_t *idx = malloc(cap * sizeof *idx);
    if (keys == NULL || kp == NULL || present == NULL || idx == NULL) {
        rc = CAIRN_E_NOMEM;
        goto out;
    }
    uint64_t inst = store_tier_inst_hash(instance);
    uint64_t now = store_tier_now_ms();
    size_t k = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n) {
            if (!missing[i] || digests[i].size < 0)
                continue;
            if (cd_store_tier_neg_has(t, inst, &digests[i], now)) {
                store_tier_add(&t->neg_hits, 1);
                continue;
            }
            idx[k++] = i;
        }
        if (k == cap || (i == n && k > 0)) {
            rc = store_tier_heads(t, instance, inst, digests, idx, k, missing,
                                  keys, kp, present);
            k = 0;
            /* The bucket out of reach: what LMDB lacks is reported
             * missing, the safe answer (an upload then fails UNAVAILABLE,
             * and nothing is acknowledged). */
            if (rc == CAIRN_E_RPC) {
                rc = 0;
                break;
            }
            if (rc != 0)
                break;
        }
    }
out:
    free(keys);
    free(kp);
    free(present);
    free(idx);
    return rc;
}

/* --- the action cache --------------------------------------------------- */

static int store_tier_buf_sink(void *ctx, const void *data, size_t n)
{
    return cairn_buf_append(ctx, data, n);
}

/* Brings the action result of action from the bucket into LMDB. Returns 0,
 * CAIRN_E_NOTFOUND (also when the bucket is out of reach: a miss is the
 * safe answer for a cache lookup), CAIRN_E_NOMEM, the store's errors. */
static int store_tier_ac_fill(struct cd_store *st, const char *instance,
                              const struct cd_digest *action)
{
    struct store_tier *t = st->tier;
    char key[CD_S3_MAX_KEY];
    int rc = cd_store_tier_key(STORE_KIND_AC, instance, action, key, sizeof key);
    if (rc != 0)
        return rc;
    struct cairn_err err = {0};
    uint64_t size = 0;
    struct cairn_buf b;
    cairn_buf_init(&b, CD_STORE_MAX_AC_RESULT);
    if ((rc = cd_s3_head(t->s3, key, &size, &err)) != 0)
        goto fail;
    if (size > CD_STORE_MAX_AC_RESULT) {
        store_tier_add(&t->corrupt, 1);
        cd_store_tier_report(t, "bucket: object %s: %llu bytes, more than an "
                             "action result may have: not served", key,
                             (unsigned long long)size);
        return CAIRN_E_NOTFOUND;
    }
    if ((rc = cairn_buf_reserve(&b, (size_t)size + 1)) != 0)
        return rc;
    if ((rc = cd_s3_get(t->s3, key, 0, size, store_tier_buf_sink, &b, &err)) !=
        0) {
        cairn_buf_free(&b);
        goto fail;
    }
    rc = cd_store_ac_put_local(st, instance, action, b.data, b.len);
    cairn_buf_free(&b);
    if (rc == 0)
        store_tier_add(&t->ac_fills, 1);
    return rc;
fail:
    rc = cd_store_tier_fail(t, "GET", key, rc, &err);
    return rc == CAIRN_E_RPC ? CAIRN_E_NOTFOUND : rc;
}

/* The refs callback the LMDB check runs, wrapped to remember what the
 * caller's returned (owned by the caller's ctx until the public call
 * returns). */
struct store_tier_refs {
    cd_store_refs_fn fn;
    void *ctx;
    const struct cd_digest *d;
    size_t n;
};

static int store_tier_refs_wrap(void *ctx, const void *data, size_t len,
                                const struct cd_digest **refs, size_t *n)
{
    struct store_tier_refs *w = ctx;
    int rc = w->fn(w->ctx, data, len, refs, n);
    if (rc == 0) {
        w->d = *refs;
        w->n = *n;
    }
    return rc;
}

/* The completeness check across tiers, for a result LMDB holds whose
 * blobs from first on are not all in LMDB: those count when the bucket
 * has them. */
static int store_tier_ac_complete(struct cd_store *st, const char *instance,
                                  const struct cd_digest *action,
                                  const struct store_tier_refs *w,
                                  size_t first, void **data, size_t *len,
                                  size_t *missing)
{
    size_t rest = w->n - first;
    bool *miss = malloc(rest ? rest : 1);
    if (miss == NULL)
        return CAIRN_E_NOMEM;
    int rc = cd_store_find_missing(st, instance, w->d + first, rest, miss);
    for (size_t i = 0; rc == 0 && i < rest; i++) {
        if (miss[i]) {
            *missing = first + i;
            rc = CAIRN_E_NOTFOUND;
        }
    }
    free(miss);
    if (rc != 0)
        return rc;
    size_t unused;
    return cd_store_ac_get_complete_local(st, instance, action, NULL, NULL,
                                          data, len, &unused);
}

int cd_store_ac_get_complete(struct cd_store *st, const char *instance,
                             const struct cd_digest *action,
                             cd_store_refs_fn refs, void *ctx, void **data,
                             size_t *len, size_t *missing)
{
    if (st->tier == NULL)
        return cd_store_ac_get_complete_local(st, instance, action, refs, ctx,
                                              data, len, missing);
    if (instance == NULL)
        instance = "";
    struct store_tier_refs w = {refs, ctx, NULL, 0};
    cd_store_refs_fn fn = refs != NULL ? store_tier_refs_wrap : NULL;
    int rc = cd_store_ac_get_complete_local(st, instance, action, fn, &w,
                                            data, len, missing);
    if (rc != CAIRN_E_NOTFOUND || action->size < 0)
        return rc;
    if (*missing == SIZE_MAX) {
        if ((rc = store_tier_ac_fill(st, instance, action)) != 0)
            return rc;
        rc = cd_store_ac_get_complete_local(st, instance, action, fn, &w, data,
                                            len, missing);
        if (rc != CAIRN_E_NOTFOUND || *missing == SIZE_MAX)
            return rc;
    }
    return store_tier_ac_complete(st, instance, action, &w, *missing, data,
                                  len, missing);
}

int cd_store_ac_get(struct cd_store *st, const char *instance,
                    const struct cd_digest *action, void **data, size_t *len)
{
    size_t missing;
    return cd_store_ac_get_complete(st, instance, action, NULL, NULL, data, len,
                                    &missing);
}

/* --- writes: LMDB filled after the ack ----------------------------------- */

/* Local copies after the ack at once, and their bytes in temp files: past
 * either (one copy is always allowed), a written blob is not kept now
 * (its first read on this node fills LMDB from the bucket), so a burst of
 * writes faster than LMDB takes them costs neither unbounded threads nor
 * unbounded disk. */
#define STORE_TIER_KEEP_MAX 4
#define STORE_TIER_KEEP_BYTES ((uint64_t)1 << 30)

static void *store_tier_keep_main(void *arg)
{
    struct store_tier_rd *t = arg;
    struct store_tier *tier = t->st->tier;
    /* t->u hashes the bytes again: the temp file is checked, not trusted,
     * on its way into LMDB. */
    int rc = store_tier_rd_keep(t);
    if (rc != 0)
        cd_store_tier_report(tier, "bucket: %s is in the bucket, but no local "
                             "copy was kept: %s", t->key, cairn_strerror(rc));
    store_tier_thread_end(tier, t, true);
    return NULL;
}

void cd_store_tier_upload_keep(struct cd_upload *u)
{
    struct store_tier *tier = u->st->tier;
    uint64_t size = (uint64_t)u->d.size;
    pthread_mutex_lock(&tier->run_mu);
    /* One copy always fits, however big: its temp file exists anyway. */
    bool room = tier->keeping == 0 ||
                (tier->keeping < STORE_TIER_KEEP_MAX &&
                 tier->keep_bytes + size <= STORE_TIER_KEEP_BYTES);
    if (room) {
        tier->keeping++;
        tier->keep_bytes += size;
    }
    pthread_mutex_unlock(&tier->run_mu);
    if (!room)
        return;
    char instance[CD_STORE_MAX_INSTANCE + 1];
    struct store_tier_rd *t = calloc(1, sizeof *t);
    int rc = t == NULL ? CAIRN_E_NOMEM : 0;
    if (rc == 0) {
        t->st = u->st;
        t->d = u->d;
        t->fd = -1;
        pthread_mutex_init(&t->mu, NULL);
        pthread_cond_init(&t->cond, NULL);
        t->avail = size;
        t->done = true;
        rc = cd_store_tier_upload_take(u, &t->fd, t->key, instance);
    }
    /* CAIRN_E_EXISTS: a concurrent writer or fill stored it already. */
    if (rc == 0)
        rc = cd_store_upload_begin(u->st, instance, &u->d, &t->u);
    if (rc == 0) {
        t->u->tier_skip = true; /* the bucket has it */
        /* Listed as a fetch that is done (readers on this node join it
         * and read the temp file); its thread holds the only reference
         * and counts as a reader until it ends, so joiners that come and
         * go never mark it stopped. */
        rc = store_tier_thread_start(tier, t, store_tier_keep_main, 1);
    }
    if (rc == 0)
        return;
    if (rc != CAIRN_E_EXISTS)
        cd_store_tier_report(tier, "bucket: %s is in the bucket, but no "
                             "local copy was kept: %s",
                             t != NULL ? t->key : "a blob", cairn_strerror(rc));
    if (t != NULL)
        store_tier_rd_free(t); /* closes the temp file */
    pthread_mutex_lock(&tier->run_mu);
    tier->keeping--;
    tier->keep_bytes -= size;
    pthread_mutex_unlock(&tier->run_mu);
}
