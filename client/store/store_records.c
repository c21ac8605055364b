/* The local store's records in LMDB (client/store/index.c holds the
 * environment): the key index, last builds, image records and the tag
 * list, and the one place where the store's transactions begin and end.
 *
 * LMDB errors are translated here and nowhere else (store_mdb_err,
 * store_mdb_fail); a write that finds the map full is run again after the
 * map grew (store_txn_write).
 */
#include "client/store/store.h"
#include "client/store/store_impl.h"

#include "cachekey/digest.h"
#include "client/store/image.h"
#include "client/store/index.h"
#include "client/store/json.h"

#include <jansson.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STORE_DB_KEYS "keys"
#define STORE_DB_RESULTS "results"
#define STORE_DB_TAGS "tags"
#define STORE_DB_IMAGES "images"
#define STORE_DB_LASTBUILD "lastbuild"
#define STORE_DB_MEMBERS "members" /* client/store/store_members.c */
/* Image records are small JSON; anything bigger is corrupt. */
#define STORE_RECORD_MAX (1u << 20)

/* ------------------------------------------------------------------ */
/* transactions                                                         */

/* The one translation of LMDB's codes into ours. */
int store_mdb_err(int mrc)
{
    if (mrc == 0)
        return 0;
    if (mrc == MDB_NOTFOUND)
        return CAIRN_E_NOTFOUND;
    if (mrc == MDB_MAP_FULL)
        return CAIRN_E_FULL;
    if (mrc > 0) /* LMDB passes system errors through as errno values */
        return -mrc;
    return CAIRN_E_DB;
}

int store_mdb_fail(struct cairn_err *err, int mrc, const char *what)
{
    return cairn_err_set(err, store_mdb_err(mrc), "store index: %s: %s", what,
                         mdb_strerror(mrc));
}

static int pending_put(struct cairn_store *st, MDB_txn *txn, size_t *n,
                       struct cairn_err *err);
static void pending_drop(struct cairn_store *st, size_t n);

/* One run of fn in a write transaction: committed when fn succeeds,
 * aborted when it fails. The keys waiting in memory go into every
 * write transaction (cairn_store_key_put_later), and leave memory
 * when it commits. */
static int txn_write_once(struct cairn_store *st, store_txn_fn fn, void *arg,
                          const char *what, struct cairn_err *err)
{
    MDB_txn *txn;
    size_t npending = 0;
    uint64_t sc_upto = 0;
    int mrc = cairn_index_txn_begin(st->idx, 0, &txn);
    if (mrc)
        return store_mdb_fail(err, mrc, "begin");
    /* The stat cache's queue too (cairn_store_statcache_open): it is only
     * a cache, and rides here rather than paying a disk flush of its own.
     * sc_mu keeps it from being closed until its done. */
    pthread_mutex_lock(&st->sc_mu);
    int rc = pending_put(st, txn, &npending, err);
    if (!rc && st->sc != NULL &&
        (mrc = ck_statcache_txn_put(st->sc, txn, &sc_upto)) != 0)
        rc = store_mdb_fail(err, mrc, "put stat cache");
    if (!rc)
        rc = fn(st, txn, arg, err);
    if (rc) {
        cairn_index_txn_abort(st->idx, txn);
        pthread_mutex_unlock(&st->sc_mu);
        return rc;
    }
    mrc = cairn_index_txn_commit(st->idx, txn);
    if (!mrc && st->sc != NULL)
        ck_statcache_txn_done(st->sc, sc_upto);
    pthread_mutex_unlock(&st->sc_mu);
    if (mrc)
        return store_mdb_fail(err, mrc, what);
    pending_drop(st, npending);
    return 0;
}

int store_txn_write(struct cairn_store *st, store_txn_fn fn, void *arg,
                    const char *what, struct cairn_err *err)
{
    int rc;
    /* The map grows on demand (client/store/index.c): a transaction that
     * found it full (CAIRN_E_FULL, store_mdb_err's MDB_MAP_FULL) has been
     * aborted; it runs again once the map doubled, or fails with the
     * growth's error. */
    for (;;) {
        rc = txn_write_once(st, fn, arg, what, err);
        if (rc != CAIRN_E_FULL)
            return rc;
        int g = cairn_index_grow(st->idx, err);
        if (g)
            return g;
    }
}

struct write_one {
    MDB_dbi dbi;
    MDB_val *k, *v;
    const char *what;
};

static int write_one_fn(struct cairn_store *st, MDB_txn *txn, void *arg,
                        struct cairn_err *err)
{
    (void)st;
    struct write_one *w = arg;
    int mrc = w->v ? mdb_put(txn, w->dbi, w->k, w->v, 0)
                   : mdb_del(txn, w->dbi, w->k, NULL);
    if (mrc == MDB_NOTFOUND && w->v == NULL)
        return CAIRN_E_NOTFOUND;
    return mrc ? store_mdb_fail(err, mrc, w->what) : 0;
}

int store_write_one(struct cairn_store *st, MDB_dbi dbi, MDB_val *k, MDB_val *v,
                    const char *what, struct cairn_err *err)
{
    struct write_one w = {dbi, k, v, what};
    return store_txn_write(st, write_one_fn, &w, what, err);
}

static int dbs_open_fn(struct cairn_store *st, MDB_txn *txn, void *arg,
                       struct cairn_err *err)
{
    (void)arg;
    const struct {
        const char *name;
        MDB_dbi *dbi;
    } dbs[] = {
        {STORE_DB_KEYS, &st->db_keys},
        {STORE_DB_RESULTS, &st->db_results},
        {STORE_DB_TAGS, &st->db_tags},
        {STORE_DB_IMAGES, &st->db_images},
        {STORE_DB_LASTBUILD, &st->db_lastbuild},
        {STORE_DB_MEMBERS, &st->db_members},
    };
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        int mrc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, dbs[i].dbi);
        if (mrc)
            return store_mdb_fail(err, mrc, "open databases");
    }
    return 0;
}

int store_dbs_open(struct cairn_store *st, struct cairn_err *err)
{
    return store_txn_write(st, dbs_open_fn, NULL, "open databases", err);
}

int store_get_copy(struct cairn_store *st, MDB_dbi dbi, const MDB_val *k,
                   void *buf, size_t cap, size_t *len)
{
    MDB_txn *txn;
    int mrc = cairn_index_txn_begin(st->idx, MDB_RDONLY, &txn);
    if (mrc)
        return store_mdb_err(mrc);
    MDB_val kv = *k, v;
    mrc = mdb_get(txn, dbi, &kv, &v);
    if (mrc == 0) {
        /* LMDB's value is valid only inside the transaction. */
        if (v.mv_size <= cap)
            memcpy(buf, v.mv_data, v.mv_size);
        *len = v.mv_size;
    }
    cairn_index_txn_abort(st->idx, txn);
    return store_mdb_err(mrc);
}

int store_key_bin(const char *key_hex, uint8_t k[CK_SHA256_LEN])
{
    if (key_hex == NULL || strlen(key_hex) != CK_SHA256_HEX_LEN ||
        ck_hex_decode(key_hex, k))
        return CAIRN_E_INVAL;
    return 0;
}

static int copy_digest(char dst[CAIRN_DIGEST_STR_LEN], const char *src)
{
    if (!store_digest_ok(src))
        return CAIRN_E_INVAL;
    memcpy(dst, src, strlen(src) + 1);
    return 0;
}

/* ------------------------------------------------------------------ */
/* the key index                                                        */

/* A key record, packed (76 bytes): version, flags (bit 0: empty), media
 * type code, pad, size (int64 little endian), layer digest, diff_id. */
#define KEYREC_VERSION 1
#define KEYREC_LEN 76

static bool pending_get(struct cairn_store *st, const uint8_t k[CK_SHA256_LEN],
                        uint8_t val[KEYREC_LEN]);

static const char *const media_codes[] = {
    CAIRN_MEDIA_LAYER_GZIP,
    CAIRN_MEDIA_LAYER_ZSTD,
    CAIRN_MEDIA_LAYER_TAR,
    CAIRN_MEDIA_DOCKER_LAYER,
};
#define NMEDIA (sizeof media_codes / sizeof media_codes[0])

static int keyrec_pack(const struct cairn_layer_rec *r, uint8_t out[KEYREC_LEN])
{
    memset(out, 0, KEYREC_LEN);
    out[0] = KEYREC_VERSION;
    if (r->empty) {
        out[1] = 1;
        return 0;
    }
    out[2] = 0xff;
    for (size_t i = 0; i < NMEDIA; i++)
        if (r->layer.media_type &&
            strcmp(r->layer.media_type, media_codes[i]) == 0)
            out[2] = (uint8_t)i;
    if (out[2] == 0xff || r->layer.size < 0)
        return CAIRN_E_INVAL;
    uint64_t sz = (uint64_t)r->layer.size;
    for (int i = 0; i < 8; i++)
        out[4 + i] = (uint8_t)(sz >> (8 * i));
    if (store_digest_bin(r->layer.digest, out + 12) ||
        store_digest_bin(r->layer.diff_id, out + 44))
        return CAIRN_E_INVAL;
    return 0;
}

int store_keyrec_unpack(const MDB_val *v, struct cairn_layer_rec *r)
{
    const uint8_t *p = v->mv_data;
    memset(r, 0, sizeof *r);
    if (v->mv_size != KEYREC_LEN || p[0] != KEYREC_VERSION)
        return CAIRN_E_CORRUPT;
    if (p[1] & 1) {
        r->empty = true;
        return 0;
    }
    if (p[2] >= NMEDIA)
        return CAIRN_E_CORRUPT;
    uint64_t sz = 0;
    for (int i = 0; i < 8; i++)
        sz |= (uint64_t)p[4 + i] << (8 * i);
    r->layer.size = (int64_t)sz;
    r->layer.media_type = media_codes[p[2]];
    store_digest_str(p + 12, r->layer.digest);
    store_digest_str(p + 44, r->layer.diff_id);
    return 0;
}

int cairn_store_key_get(struct cairn_store *st, const char *key_hex,
                        struct cairn_layer_rec *out)
{
    uint8_t k[CK_SHA256_LEN], val[KEYREC_LEN];
    if (store_key_bin(key_hex, k))
        return CAIRN_E_INVAL;
    MDB_val kv = {sizeof k, k};
    size_t n = KEYREC_LEN;
    struct cairn_layer_rec r;
    int rc = pending_get(st, k, val)
                 ? 0
                 : store_get_copy(st, st->db_keys, &kv, val, sizeof val, &n);
    if (!rc) {
        MDB_val v = {n, val}; /* n over KEYREC_LEN: nothing copied, corrupt */
        rc = store_keyrec_unpack(&v, &r);
    }
    if (rc)
        return rc;
    /* A key whose layer is gone is a miss: the build then runs the step
     * (or fetches the layer) and puts the key again. */
    if (!r.empty && !cairn_store_blob_has(st, r.layer.digest))
        return CAIRN_E_NOTFOUND;
    *out = r;
    return 0;
}

int cairn_store_key_put(struct cairn_store *st, const char *key_hex,
                        const struct cairn_layer_rec *rec,
                        struct cairn_err *err)
{
    return cairn_store_key_put_many(st, &key_hex, &rec, 1, err);
}

struct keys_put {
    const char *const *key_hex;
    const struct cairn_layer_rec *const *rec;
    size_t n;
};

static int keys_put_fn(struct cairn_store *st, MDB_txn *txn, void *arg,
                       struct cairn_err *err)
{
    struct keys_put *kp = arg;
    uint8_t k[CK_SHA256_LEN], val[KEYREC_LEN];
    for (size_t i = 0; i < kp->n; i++) {
        /* Checked by the caller: cannot fail here. */
        (void)ck_hex_decode(kp->key_hex[i], k);
        (void)keyrec_pack(kp->rec[i], val);
        MDB_val kv = {sizeof k, k}, v = {sizeof val, val};
        int mrc = mdb_put(txn, st->db_keys, &kv, &v, 0);
        if (mrc)
            return store_mdb_fail(err, mrc, "put key");
    }
    return 0;
}

int cairn_store_key_put_many(struct cairn_store *st,
                             const char *const key_hex[],
                             const struct cairn_layer_rec *const rec[],
                             size_t n, struct cairn_err *err)
{
    uint8_t k[CK_SHA256_LEN], val[KEYREC_LEN];
    for (size_t i = 0; i < n; i++) {
        if (store_key_bin(key_hex[i], k))
            return cairn_err_set(err, CAIRN_E_INVAL, "bad cache key \"%s\"",
                                 key_hex[i] ? key_hex[i] : "");
        if (keyrec_pack(rec[i], val))
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "bad layer record for key %s", key_hex[i]);
    }
    if (n == 0)
        return 0;
    store_blobs_sync(st);
    struct keys_put kp = {key_hex, rec, n};
    return store_txn_write(st, keys_put_fn, &kp, "commit key", err);
}

/* ---- keys that wait for the next commit ---------------------------------- */

struct pending_key {
    uint8_t k[CK_SHA256_LEN];
    uint8_t val[KEYREC_LEN];
};

struct store_pending {
    size_t n, cap;
    struct pending_key *v;
};

/* Puts the waiting keys into txn; *n gets how many (pending_drop's
 * count once txn commits). Keys added meanwhile wait for the next
 * commit. The blobs they name were renamed before they were added, so
 * the directory sync after the count makes their names durable before
 * this commit can (store_blobs_sync's rule). */
static int pending_put(struct cairn_store *st, MDB_txn *txn, size_t *n,
                       struct cairn_err *err)
{
    int rc = 0;
    pthread_mutex_lock(&st->pending_mu);
    struct store_pending *p = st->pending;
    size_t cnt = p ? p->n : 0;
    for (size_t i = 0; i < cnt && !rc; i++) {
        MDB_val kv = {CK_SHA256_LEN, p->v[i].k};
        MDB_val v = {KEYREC_LEN, p->v[i].val};
        int mrc = mdb_put(txn, st->db_keys, &kv, &v, 0);
        if (mrc)
            rc = store_mdb_fail(err, mrc, "put key");
    }
    pthread_mutex_unlock(&st->pending_mu);
    if (cnt > 0)
        store_blobs_sync(st);
    if (!rc)
        *n = cnt;
    return rc;
}

/* Forgets the first n waiting keys: a commit recorded them. */
static void pending_drop(struct cairn_store *st, size_t n)
{
    if (n == 0)
        return;
    pthread_mutex_lock(&st->pending_mu);
    struct store_pending *p = st->pending;
    memmove(p->v, p->v + n, (p->n - n) * sizeof *p->v);
    p->n -= n;
    pthread_mutex_unlock(&st->pending_mu);
}

/* A waiting record of k into val: true when one waits (the newest). */
static bool pending_get(struct cairn_store *st, const uint8_t k[CK_SHA256_LEN],
                        uint8_t val[KEYREC_LEN])
{
    bool found = false;
    pthread_mutex_lock(&st->pending_mu);
    struct store_pending *p = st->pending;
    for (size_t i = p ? p->n : 0; i > 0 && !found; i--)
        if (memcmp(p->v[i - 1].k, k, CK_SHA256_LEN) == 0) {
            memcpy(val, p->v[i - 1].val, KEYREC_LEN);
            found = true;
        }
    pthread_mutex_unlock(&st->pending_mu);
    return found;
}

static int noop_fn(struct cairn_store *st, MDB_txn *txn, void *arg,
                   struct cairn_err *err)
{
    (void)st, (void)txn, (void)arg, (void)err;
    return 0;
}

int store_pending_commit(struct cairn_store *st, struct cairn_err *err)
{
    pthread_mutex_lock(&st->pending_mu);
    bool any = st->pending != NULL && st->pending->n > 0;
    pthread_mutex_unlock(&st->pending_mu);
    return any ? store_txn_write(st, noop_fn, NULL, "commit keys", err) : 0;
}

int cairn_store_keys_commit(struct cairn_store *st, struct cairn_err *err)
{
    return store_pending_commit(st, err);
}

void store_pending_free(struct cairn_store *st)
{
    if (st->pending != NULL)
        free(st->pending->v);
    free(st->pending);
    st->pending = NULL;
}

/* Here rather than beside the lock in store.c: the last unlock records
 * the keys that wait (store_pending_commit), and store.c stays below the
 * records. */
void cairn_store_unlock(struct cairn_store *st)
{
    /* Keys that wait are recorded while the lock still keeps prune from
     * the blobs they name; a failure leaves them to the close. */
    pthread_mutex_lock(&st->lock_mu);
    bool last = st->lock_depth == 1;
    pthread_mutex_unlock(&st->lock_mu);
    if (last) {
        struct cairn_err err;
        cairn_err_clear(&err);
        (void)store_pending_commit(st, &err);
    }
    pthread_mutex_lock(&st->lock_mu);
    if (st->lock_depth > 0 && --st->lock_depth == 0) {
        store_flock_mode(st->lock_fd, LOCK_NONE);
        st->lock_mode = LOCK_NONE;
    }
    pthread_mutex_unlock(&st->lock_mu);
}

int cairn_store_key_put_later(struct cairn_store *st,
                              const char *const key_hex[],
                              const struct cairn_layer_rec *const rec[],
                              size_t n, struct cairn_err *err)
{
    if (n == 0 || n > CAIRN_STORE_PENDING_MAX)
        return cairn_store_key_put_many(st, key_hex, rec, n, err);
    struct pending_key *add = calloc(n + 1, sizeof *add);
    if (add == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (store_key_bin(key_hex[i], add[i].k))
            rc = cairn_err_set(err, CAIRN_E_INVAL, "bad cache key \"%s\"",
                               key_hex[i] ? key_hex[i] : "");
        else if (keyrec_pack(rec[i], add[i].val))
            rc = cairn_err_set(err, CAIRN_E_INVAL,
                               "bad layer record for key %s", key_hex[i]);
    }
    /* Over the cap: what waits is committed first (outside the mutex:
     * the commit takes it). */
    for (bool full = true; !rc && full;) {
        pthread_mutex_lock(&st->pending_mu);
        full = st->pending != NULL &&
               st->pending->n + n > CAIRN_STORE_PENDING_MAX;
        pthread_mutex_unlock(&st->pending_mu);
        if (full)
            rc = store_pending_commit(st, err);
    }
    pthread_mutex_lock(&st->pending_mu);
    struct store_pending *p = st->pending;
    if (!rc && p == NULL && (p = st->pending = calloc(1, sizeof *p)) == NULL)
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    if (!rc && p->n + n > p->cap) {
        size_t cap = p->cap ? p->cap : 16;
        while (cap < p->n + n)
            cap *= 2;
        struct pending_key *v = realloc(p->v, cap * sizeof *v);
        if (v == NULL) {
            rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        } else {
            p->v = v;
            p->cap = cap;
        }
    }
    if (!rc) {
        memcpy(p->v + p->n, add, n * sizeof *add);
        p->n += n;
    }
    pthread_mutex_unlock(&st->pending_mu);
    free(add);
    return rc;
}

/* Last builds: tag -> an opaque record (client/engine/explain.c). Keyed by the
 * normalised ref so "app" and "app:latest" are one tag, as for images. */
int store_lastbuild_key(const char *ref, char *buf, size_t len,
                        struct cairn_err *err)
{
    return cairn_store_ref_normalize(ref, buf, len, err);
}

int cairn_store_lastbuild_put(struct cairn_store *st, const char *ref,
                              const void *data, size_t len,
                              struct cairn_err *err)
{
    char name[STORE_NAME_MAX + STORE_TAG_MAX + 2];
    int rc = store_lastbuild_key(ref, name, sizeof name, err);
    if (rc)
        return rc;
    if (len > CAIRN_STORE_LASTBUILD_MAX)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "last build of %s: %zu bytes, over the %u limit",
                             name, len, CAIRN_STORE_LASTBUILD_MAX);
    MDB_val kv = {strlen(name), name}, v = {len, (void *)data};
    return store_write_one(st, st->db_lastbuild, &kv, &v, "put last build",
                           err);
}

int cairn_store_lastbuild_get(struct cairn_store *st, const char *ref,
                              char **data, size_t *len,
                              struct cairn_err *err)
{
    char name[STORE_NAME_MAX + STORE_TAG_MAX + 2];
    int rc = store_lastbuild_key(ref, name, sizeof name, err);
    if (rc)
        return rc;
    MDB_txn *txn;
    int mrc = cairn_index_txn_begin(st->idx, MDB_RDONLY, &txn);
    if (mrc)
        return store_mdb_fail(err, mrc, "begin");
    MDB_val kv = {strlen(name), name}, v;
    mrc = mdb_get(txn, st->db_lastbuild, &kv, &v);
    if (mrc) {
        cairn_index_txn_abort(st->idx, txn);
        if (mrc == MDB_NOTFOUND)
            return cairn_err_set(err, CAIRN_E_NOTFOUND,
                                 "no previous build of %s", name);
        return store_mdb_fail(err, mrc, "get last build");
    }
    /* LMDB's value is valid only inside the transaction: copy it. A
     * value over the cap was not written by us. */
    char *d = NULL;
    if (v.mv_size <= CAIRN_STORE_LASTBUILD_MAX)
        d = malloc(v.mv_size + 1);
    if (d != NULL) {
        memcpy(d, v.mv_data, v.mv_size);
        d[v.mv_size] = '\0';
    }
    size_t n = v.mv_size;
    cairn_index_txn_abort(st->idx, txn);
    if (d == NULL)
        return cairn_err_set(err, n > CAIRN_STORE_LASTBUILD_MAX
                                      ? CAIRN_E_CORRUPT
                                      : CAIRN_E_NOMEM,
                             "last build of %s: cannot read %zu bytes", name,
                             n);
    *data = d;
    *len = n;
    return 0;
}

int cairn_store_lastbuild_remove(struct cairn_store *st, const char *ref,
                                 struct cairn_err *err)
{
    char name[STORE_NAME_MAX + STORE_TAG_MAX + 2];
    int rc = store_lastbuild_key(ref, name, sizeof name, err);
    if (rc)
        return rc;
    MDB_val kv = {strlen(name), name};
    rc = store_write_one(st, st->db_lastbuild, &kv, NULL, "remove last build",
                         err);
    return rc == CAIRN_E_NOTFOUND ? 0 : rc;
}

/* ------------------------------------------------------------------ */
/* image records                                                        */

void store_imgrec_clear(struct imgrec *r)
{
    json_decref(r->layers);
    json_decref(r->diff_ids);
    json_decref(r->repo_digests);
    r->layers = r->diff_ids = r->repo_digests = NULL;
}

/* "name@sha256:<64 hex>", at most STORE_REPO_DIGEST_MAX bytes. */
bool store_repo_digest_ok(const char *s)
{
    const char *at = s ? strchr(s, '@') : NULL;
    return at && at > s && strlen(s) <= STORE_REPO_DIGEST_MAX &&
           store_digest_ok(at + 1);
}

static bool repo_digest_array_ok(const json_t *a)
{
    size_t i;
    json_t *v;
    if (!json_is_array(a) || json_array_size(a) > STORE_REPO_DIGESTS_MAX)
        return false;
    json_array_foreach(a, i, v)
    {
        if (!store_repo_digest_ok(json_string_value(v)))
            return false;
    }
    return true;
}

static bool digest_array_ok(const json_t *a)
{
    size_t i;
    json_t *v;
    if (!json_is_array(a))
        return false;
    json_array_foreach(a, i, v)
    {
        if (!store_digest_ok(json_string_value(v)))
            return false;
    }
    return true;
}

int store_imgrec_decode(const MDB_val *k, const MDB_val *v, struct imgrec *r)
{
    memset(r, 0, sizeof *r);
    if (k->mv_size != CK_SHA256_LEN || v->mv_size > STORE_RECORD_MAX)
        return CAIRN_E_CORRUPT;
    memcpy(r->manifest, k->mv_data, CK_SHA256_LEN);
    json_t *j = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    if (j == NULL)
        return CAIRN_E_CORRUPT;
    const char *mt = json_string_value(json_object_get(j, "mediaType"));
    const char *cfg = json_string_value(json_object_get(j, "config"));
    json_t *layers = json_object_get(j, "layers");
    json_t *diffs = json_object_get(j, "diffIds");
    json_t *repo = json_object_get(j, "repoDigests");
    int rc = 0;
    if (mt == NULL || strlen(mt) >= sizeof r->media_type ||
        copy_digest(r->config, cfg) || !digest_array_ok(layers) ||
        !digest_array_ok(diffs) || (repo && !repo_digest_array_ok(repo))) {
        rc = CAIRN_E_CORRUPT;
    } else {
        memcpy(r->media_type, mt, strlen(mt) + 1);
        r->manifest_size = json_integer_value(json_object_get(j, "size"));
        r->created = json_integer_value(json_object_get(j, "created"));
        r->bytes = json_integer_value(json_object_get(j, "bytes"));
        r->layers = json_incref(layers);
        r->diff_ids = json_incref(diffs);
        r->repo_digests = json_incref(repo);
    }
    json_decref(j);
    return rc;
}

char *store_imgrec_encode(const struct imgrec *r, size_t *len)
{
    json_t *j = json_pack("{s:s,s:I,s:s,s:I,s:I,s:O,s:O}", "mediaType",
                          r->media_type, "size", (json_int_t)r->manifest_size,
                          "config", r->config, "created",
                          (json_int_t)r->created, "bytes", (json_int_t)r->bytes,
                          "layers", r->layers, "diffIds", r->diff_ids);
    if (j == NULL)
        return NULL;
    if (json_array_size(r->repo_digests) > 0 &&
        json_object_set(j, "repoDigests", r->repo_digests) != 0) {
        json_decref(j);
        return NULL;
    }
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (s)
        *len = strlen(s);
    return s;
}

/* RFC 3339 ("2024-01-02T03:04:05.123Z" or with an offset) to seconds;
 * -1 when absent or unreadable. */
static int64_t rfc3339_parse(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (s == NULL)
        return -1;
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return -1;
    int64_t t = (int64_t)timegm(&tm);
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    if (*p == '+' || *p == '-') {
        int sign = *p == '+' ? 1 : -1;
        int hh = 0, mm = 0;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) == 2)
            t -= sign * (int64_t)(hh * 3600 + mm * 60);
    }
    return t;
}

/* Fills r from the manifest and config blobs (both verified), checking
 * that every layer blob is present. */
int store_imgrec_from_blobs(struct cairn_store *st, const char *manifest,
                            struct imgrec *r, struct cairn_err *err)
{
    char *mdata = NULL, *cdata = NULL;
    size_t mlen = 0, clen = 0;
    json_t *m = NULL, *c = NULL;
    memset(r, 0, sizeof *r);
    int rc = store_digest_bin(manifest, r->manifest);
    if (rc)
        return cairn_err_set(err, rc, "bad manifest digest \"%s\"", manifest);
    rc = cairn_store_blob_read(st, manifest, CAIRN_IMAGE_MAX_JSON, &mdata,
                               &mlen, err);
    if (rc)
        return rc;
    rc = CAIRN_E_CORRUPT;
    m = json_loadb(mdata, mlen, 0, NULL);
    const char *mt = json_string_value(json_object_get(m, "mediaType"));
    json_t *cfg = json_object_get(m, "config");
    const char *cd = json_string_value(json_object_get(cfg, "digest"));
    json_t *layers = json_object_get(m, "layers");
    if (m == NULL || copy_digest(r->config, cd) || !json_is_array(layers)) {
        cairn_err_set(err, rc, "manifest %s is not an image manifest",
                      manifest);
        goto out;
    }
    if (mt == NULL)
        mt = CAIRN_MEDIA_MANIFEST;
    if (strlen(mt) >= sizeof r->media_type) {
        cairn_err_set(err, rc, "manifest %s: media type too long", manifest);
        goto out;
    }
    memcpy(r->media_type, mt, strlen(mt) + 1);
    r->manifest_size = (int64_t)mlen;
    r->layers = json_array();
    r->diff_ids = json_array();
    if (r->layers == NULL || r->diff_ids == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    size_t i;
    json_t *l;
    json_array_foreach(layers, i, l)
    {
        const char *ld = json_string_value(json_object_get(l, "digest"));
        json_int_t lsz = json_integer_value(json_object_get(l, "size"));
        if (!store_digest_ok(ld) || lsz < 0) {
            cairn_err_set(err, rc, "manifest %s: bad layer %zu", manifest, i);
            goto out;
        }
        if (!cairn_store_blob_has(st, ld)) {
            rc = cairn_err_set(err, CAIRN_E_NOTFOUND,
                               "manifest %s: layer blob %s is not stored",
                               manifest, ld);
            goto out;
        }
        r->bytes += lsz;
        json_array_append_new(r->layers, cairn_json_string(ld));
    }
    rc = cairn_store_blob_read(st, r->config, CAIRN_IMAGE_MAX_JSON, &cdata,
                               &clen, err);
    if (rc)
        goto out;
    rc = CAIRN_E_CORRUPT;
    c = json_loadb(cdata, clen, 0, NULL);
    json_t *diffs = json_object_get(json_object_get(c, "rootfs"), "diff_ids");
    if (c == NULL || !digest_array_ok(diffs) ||
        json_array_size(diffs) != json_array_size(layers)) {
        cairn_err_set(err, rc,
                      "config %s: rootfs.diff_ids missing or not one per "
                      "layer",
                      r->config);
        goto out;
    }
    json_array_extend(r->diff_ids, diffs);
    r->created =
        rfc3339_parse(json_string_value(json_object_get(c, "created")));
    rc = 0;
out:
    if (rc)
        store_imgrec_clear(r);
    json_decref(m);
    json_decref(c);
    free(mdata);
    free(cdata);
    return rc;
}

/* ------------------------------------------------------------------ */
/* tags                                                                 */

void store_taglist_free(struct taglist *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].ref);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

/* Reads every tag, in ref order (the database's). */
int store_taglist_load(struct cairn_store *st, MDB_txn *txn,
                       struct taglist *out)
{
    MDB_cursor *cur;
    MDB_val k, v;
    size_t alloc = 0;
    int mrc = mdb_cursor_open(txn, st->db_tags, &cur);
    if (mrc)
        return store_mdb_err(mrc);
    int rc = 0;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size != CK_SHA256_LEN)
            continue; /* corrupt; ignoring it only hides one tag */
        if (out->n == alloc) {
            size_t na = alloc ? alloc * 2 : 16;
            struct tagent *nv = realloc(out->v, na * sizeof *nv);
            if (nv == NULL) {
                rc = CAIRN_E_NOMEM;
                break;
            }
            out->v = nv;
            alloc = na;
        }
        char *ref = strndup(k.mv_data, k.mv_size);
        if (ref == NULL) {
            rc = CAIRN_E_NOMEM;
            break;
        }
        out->v[out->n].ref = ref;
        memcpy(out->v[out->n].manifest, v.mv_data, CK_SHA256_LEN);
        out->n++;
    }
    if (!rc && mrc != MDB_NOTFOUND)
        rc = store_mdb_err(mrc);
    mdb_cursor_close(cur);
    if (rc)
        store_taglist_free(out);
    return rc;
}

int store_images_each(struct cairn_store *st, store_image_fn fn, void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    struct taglist tags = {0};
    int mrc = cairn_index_txn_begin(st->idx, MDB_RDONLY, &txn);
    if (mrc)
        return store_mdb_err(mrc);
    int rc = store_taglist_load(st, txn, &tags);
    if (!rc)
        rc = store_mdb_err(mdb_cursor_open(txn, st->db_images, &cur));
    MDB_val k, v;
    for (mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
         mrc == 0 && !rc; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct imgrec r;
        /* A corrupt record hides its image, not the others. */
        if (store_imgrec_decode(&k, &v, &r))
            continue;
        rc = fn(arg, &r, &tags);
        store_imgrec_clear(&r);
    }
    if (cur)
        mdb_cursor_close(cur);
    cairn_index_txn_abort(st->idx, txn);
    store_taglist_free(&tags);
    return rc;
}
