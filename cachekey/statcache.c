#include "cachekey/statcache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Value layout (little-endian, versioned so a future layout can be told
 * apart and simply treated as a miss):
 *   [0]      version: 1 for a file, 2 for a directory listing
 *   [1..8]   st_dev
 *   [9..16]  st_ino
 *   [17..24] st_size
 *   [25..32] mtime in ns
 *   [33..40] ctime in ns
 *   [41..72] content sha256 (file), or
 *   [41..]   the listing, opaque bytes (directory)
 * Files and directories share the key space (the absolute path): a path
 * that turns from one into the other simply misses on the version byte,
 * which is part of the compared stat prefix. */
#define SC_VERSION 1
#define SC_DIR_VERSION 2
#define SC_STAT_LEN (1 + 5 * 8)
#define SC_DBNAME "statcache"
/* Queued bytes past which a deferred flush writes anyway, so that a huge
 * context neither grows the queue without bound nor turns the owner's
 * next transaction into a giant one. */
#define SC_DEFER_MAX (16u << 20)

/* A read transaction kept between lookups. Beginning one per lookup costs a
 * reader-slot acquisition each time; with MDB_NOTLS a txn is not tied to a
 * thread, so idle ones are pooled and handed to whichever thread looks up
 * next. gen tells whether the snapshot predates the last flush. */
struct sc_rtxn {
    MDB_txn *txn;
    unsigned gen;
    bool live; /* false after mdb_txn_reset: needs mdb_txn_renew */
};

/* A queued put: key_len bytes of key, then val_len bytes of value, at
 * off in the packed buffer. */
struct sc_pending {
    size_t off;
    size_t key_len;
    size_t val_len;
};

struct ck_statcache {
    MDB_env *env;
    size_t maxkey;

    pthread_mutex_t mu; /* guards everything below */
    /* The database exists (have_db) and dbi is its handle. A store's first
     * build finds no database: it is created by the first flush, in the
     * same write transaction as the entries, so a fresh store pays for one
     * commit (one disk flush) instead of two. */
    bool have_db;
    MDB_dbi dbi;
    struct sc_rtxn *idle;
    size_t nidle, idle_cap;
    size_t nreaders; /* txns allocated, idle or in use */
    unsigned gen;
    /* Queued puts: keys and values are packed into one buffer so that
     * queueing a 20,000-file context costs a handful of reallocs, not
     * 20,000 mallocs. */
    char *keys;
    size_t keys_len, keys_cap;
    struct sc_pending *pend;
    size_t npend, pend_cap;
    /* pend[0] is the base_seq-th entry ever queued: a commit that took
     * entries up to some sequence drops exactly those, whichever commit
     * (a flush's, the owner's) recorded them first. */
    uint64_t base_seq;
    /* Hash of the queued keys: slot i holds 1 + an index into pend (0:
     * empty), the newest entry of its key. Lookups see queued entries
     * through it before any commit (ck_statcache_set_defer). */
    uint32_t *slot;
    size_t nslot; /* a power of two, or 0 */
    /* The database as created by a transaction that took entries
     * (have_db is set from it once that commits). */
    MDB_dbi new_dbi;
    bool defer; /* flush leaves entries queued (ck_statcache_set_defer) */
    /* Grows the map when a flush finds it full (ck_statcache_set_grow). */
    int (*grow)(void *arg);
    void *grow_arg;
    /* Held around every transaction after open (ck_statcache_set_guard). */
    void (*enter)(void *arg);
    void (*leave)(void *arg);
    void *guard_arg;
};

static void guard_enter(struct ck_statcache *sc)
{
    if (sc->enter != NULL)
        sc->enter(sc->guard_arg);
}

static void guard_leave(struct ck_statcache *sc)
{
    if (sc->leave != NULL)
        sc->leave(sc->guard_arg);
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static int64_t ts_ns(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static void encode_stat(uint8_t val[SC_STAT_LEN], uint8_t version,
                        const struct stat *st)
{
    val[0] = version;
    put_le64(val + 1, (uint64_t)st->st_dev);
    put_le64(val + 9, (uint64_t)st->st_ino);
    put_le64(val + 17, (uint64_t)st->st_size);
    put_le64(val + 25, (uint64_t)ts_ns(&st->st_mtim));
    put_le64(val + 33, (uint64_t)ts_ns(&st->st_ctim));
}

static uint64_t key_hash(const char *k, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)k[i]) * 0x100000001b3ull;
    return h;
}

/* The slot of key k (its entry's, or the empty one it would take).
 * nslot > 0, mu held. */
static size_t slot_find(const struct ck_statcache *sc, const char *k,
                        size_t n)
{
    size_t mask = sc->nslot - 1, i = (size_t)key_hash(k, n) & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t s = sc->slot[i];
        if (s == 0)
            return i;
        const struct sc_pending *p = &sc->pend[s - 1];
        if (p->key_len == n && memcmp(sc->keys + p->off, k, n) == 0)
            return i;
    }
}

/* Indexes every queued entry again into a table of nslot slots (a power
 * of two above twice the entries, or 0 for none). mu held. */
static int slots_rebuild(struct ck_statcache *sc, size_t nslot)
{
    uint32_t *t = NULL;
    if (nslot > 0 && (t = calloc(nslot, sizeof *t)) == NULL)
        return CAIRN_E_NOMEM;
    free(sc->slot);
    sc->slot = t;
    sc->nslot = nslot;
    for (size_t i = 0; i < sc->npend; i++) {
        const struct sc_pending *p = &sc->pend[i];
        sc->slot[slot_find(sc, sc->keys + p->off, p->key_len)] =
            (uint32_t)(i + 1);
    }
    return 0;
}

/* The newest queued value of key k, or NULL. mu held. */
static const struct sc_pending *queued_get(const struct ck_statcache *sc,
                                           const char *k, size_t n)
{
    if (sc->npend == 0 || sc->nslot == 0)
        return NULL;
    uint32_t s = sc->slot[slot_find(sc, k, n)];
    return s ? &sc->pend[s - 1] : NULL;
}

int ck_statcache_open(MDB_env *env, struct ck_statcache **out,
                      struct cairn_err *err)
{
    struct ck_statcache *sc = calloc(1, sizeof *sc);
    if (sc == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    sc->env = env;
    int maxkey = mdb_env_get_maxkeysize(env);
    sc->maxkey = maxkey > 0 ? (size_t)maxkey : 0;

    /* A read transaction: opening an existing database writes nothing;
     * a missing one is created by the first flush. */
    MDB_txn *txn = NULL;
    int mrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (mrc == 0) {
        mrc = mdb_dbi_open(txn, SC_DBNAME, 0, &sc->dbi);
        sc->have_db = mrc == 0;
        if (mrc == MDB_NOTFOUND)
            mrc = 0;
    }
    if (mrc == 0) {
        mrc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (mrc != 0) {
        if (txn != NULL)
            mdb_txn_abort(txn);
        free(sc);
        return cairn_err_set(err, CAIRN_E_DB, "stat cache: %s",
                             mdb_strerror(mrc));
    }
    pthread_mutex_init(&sc->mu, NULL);
    *out = sc;
    return 0;
}

static int flush_now(struct ck_statcache *sc, struct cairn_err *err);

void ck_statcache_close(struct ck_statcache *sc)
{
    if (sc == NULL)
        return;
    (void)flush_now(sc, NULL);
    /* Every txn is idle here: the contract forbids lookups racing close. */
    for (size_t i = 0; i < sc->nidle; i++)
        mdb_txn_abort(sc->idle[i].txn);
    free(sc->idle);
    free(sc->keys);
    free(sc->pend);
    free(sc->slot);
    pthread_mutex_destroy(&sc->mu);
    free(sc);
}

/* Takes an idle txn that sees the latest flushed state, or begins one.
 * Returns false when LMDB refuses (e.g. reader table full): the caller then
 * treats it as a miss, since the cache is only an optimisation. */
static bool rtxn_get(struct ck_statcache *sc, struct sc_rtxn *out)
{
    pthread_mutex_lock(&sc->mu);
    unsigned gen = sc->gen;
    bool have = sc->nidle > 0;
    if (have)
        *out = sc->idle[--sc->nidle];
    else
        sc->nreaders++;
    pthread_mutex_unlock(&sc->mu);

    if (!have) {
        out->txn = NULL;
        if (mdb_txn_begin(sc->env, NULL, MDB_RDONLY, &out->txn) != 0) {
            pthread_mutex_lock(&sc->mu);
            sc->nreaders--;
            pthread_mutex_unlock(&sc->mu);
            return false;
        }
        out->live = true;
        out->gen = gen;
        return true;
    }
    if (out->live && out->gen != gen) {
        mdb_txn_reset(out->txn);
        out->live = false;
    }
    if (!out->live) {
        if (mdb_txn_renew(out->txn) != 0) {
            mdb_txn_abort(out->txn);
            pthread_mutex_lock(&sc->mu);
            sc->nreaders--;
            pthread_mutex_unlock(&sc->mu);
            return false;
        }
        out->live = true;
        out->gen = gen;
    }
    return true;
}

static void rtxn_put(struct ck_statcache *sc, struct sc_rtxn *t)
{
    pthread_mutex_lock(&sc->mu);
    if (sc->nidle == sc->idle_cap) {
        size_t cap = sc->idle_cap ? sc->idle_cap * 2 : 8;
        struct sc_rtxn *n = realloc(sc->idle, cap * sizeof *n);
        if (n == NULL) {
            sc->nreaders--;
            pthread_mutex_unlock(&sc->mu);
            mdb_txn_abort(t->txn);
            return;
        }
        sc->idle = n;
        sc->idle_cap = cap;
    }
    sc->idle[sc->nidle++] = *t;
    pthread_mutex_unlock(&sc->mu);
}

/* Looks up key and, when the stored value has the given version and stat,
 * copies up to cap bytes of what follows the stat into out. The value is
 * borrowed from the map until the txn ends: compare and copy before
 * handing the txn back. Sets *len to the payload length (which may exceed
 * cap: then nothing is copied and it is a miss). */
static bool lookup(struct ck_statcache *sc, const char *abspath,
                   uint8_t version, const struct stat *st, void *out,
                   size_t cap, size_t *len)
{
    size_t klen = strlen(abspath);
    if (klen == 0 || klen > sc->maxkey)
        return false;
    uint8_t want[SC_STAT_LEN];
    encode_stat(want, version, st);
    bool hit = false;
    pthread_mutex_lock(&sc->mu);
    bool have_db = sc->have_db;
    MDB_dbi dbi = sc->dbi;
    /* A queued entry is newer than the database's. */
    const struct sc_pending *q = queued_get(sc, abspath, klen);
    if (q != NULL && q->val_len - SC_STAT_LEN <= cap) {
        const char *v = sc->keys + q->off + q->key_len;
        if (memcmp(v, want, SC_STAT_LEN) == 0) {
            *len = q->val_len - SC_STAT_LEN;
            memcpy(out, v + SC_STAT_LEN, *len);
            hit = true;
        }
    }
    pthread_mutex_unlock(&sc->mu);
    if (hit || !have_db)
        return hit;
    struct sc_rtxn t;
    guard_enter(sc);
    if (!rtxn_get(sc, &t)) {
        guard_leave(sc);
        return false;
    }
    MDB_val k = {.mv_size = klen, .mv_data = (void *)abspath};
    MDB_val v;
    if (mdb_get(t.txn, dbi, &k, &v) == 0 && v.mv_size >= SC_STAT_LEN &&
        v.mv_size - SC_STAT_LEN <= cap) {
        if (memcmp(v.mv_data, want, SC_STAT_LEN) == 0) {
            *len = v.mv_size - SC_STAT_LEN;
            memcpy(out, (const uint8_t *)v.mv_data + SC_STAT_LEN, *len);
            hit = true;
        }
    }
    rtxn_put(sc, &t);
    guard_leave(sc);
    return hit;
}

bool ck_statcache_lookup(struct ck_statcache *sc, const char *abspath,
                         const struct stat *st, uint8_t digest[CK_SHA256_LEN])
{
    uint8_t got[CK_SHA256_LEN];
    size_t n = 0;
    /* Copy to a local first: digest is written only on a hit of the
     * exact size. */
    if (!lookup(sc, abspath, SC_VERSION, st, got, sizeof got, &n) ||
        n != CK_SHA256_LEN)
        return false;
    memcpy(digest, got, CK_SHA256_LEN);
    return true;
}

bool ck_statcache_dir_lookup(struct ck_statcache *sc, const char *abspath,
                             const struct stat *st, void *buf, size_t cap,
                             size_t *len)
{
    size_t n = 0;
    if (!lookup(sc, abspath, SC_DIR_VERSION, st, buf, cap, &n))
        return false;
    *len = n;
    return true;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (q == NULL)
        return CAIRN_E_NOMEM;
    *p = q;
    *cap = n;
    return 0;
}

/* Queues key -> (version, stat, payload). */
static int put(struct ck_statcache *sc, const char *abspath, uint8_t version,
               const struct stat *st, const void *payload, size_t plen)
{
    size_t klen = strlen(abspath);
    /* Keys LMDB cannot hold are simply never cached. */
    if (klen == 0 || klen > sc->maxkey)
        return 0;
    size_t vlen = SC_STAT_LEN + plen;
    int rc = 0;
    pthread_mutex_lock(&sc->mu);
    /* Past a 32-bit index the table is not kept (nor is anything queued):
     * the cache is only an optimisation. */
    if (sc->npend >= UINT32_MAX / 4 ||
        grow((void **)&sc->keys, &sc->keys_cap, sc->keys_len + klen + vlen,
             1) ||
        grow((void **)&sc->pend, &sc->pend_cap, sc->npend + 1,
             sizeof *sc->pend) ||
        ((sc->npend + 1) * 2 > sc->nslot &&
         slots_rebuild(sc, sc->nslot ? sc->nslot * 2 : 256))) {
        rc = CAIRN_E_NOMEM;
    } else {
        struct sc_pending *p = &sc->pend[sc->npend++];
        p->off = sc->keys_len;
        p->key_len = klen;
        p->val_len = vlen;
        uint8_t *d = (uint8_t *)sc->keys + sc->keys_len;
        memcpy(d, abspath, klen);
        encode_stat(d + klen, version, st);
        if (plen > 0)
            memcpy(d + klen + SC_STAT_LEN, payload, plen);
        sc->keys_len += klen + vlen;
        sc->slot[slot_find(sc, abspath, klen)] = (uint32_t)sc->npend;
    }
    pthread_mutex_unlock(&sc->mu);
    return rc;
}

int ck_statcache_put(struct ck_statcache *sc, const char *abspath,
                     const struct stat *st,
                     const uint8_t digest[CK_SHA256_LEN])
{
    return put(sc, abspath, SC_VERSION, st, digest, CK_SHA256_LEN);
}

int ck_statcache_dir_put(struct ck_statcache *sc, const char *abspath,
                         const struct stat *st, const void *list,
                         size_t len)
{
    if (len > CK_STATCACHE_DIR_MAX)
        return 0; /* not cached: the directory is simply listed again */
    return put(sc, abspath, SC_DIR_VERSION, st, list, len);
}

/* qsort has no context argument; flush sorts under no lock, on keys it
 * owns, so the buffer travels through this thread-local. */
static _Thread_local const char *sort_keys;

static int pending_cmp(const void *a, const void *b)
{
    const struct sc_pending *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(sort_keys + x->off, sort_keys + y->off, n);
    if (c != 0)
        return c;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Grows the map through the owner's hook, after a flush found it full
 * and aborted. A remap needs every transaction of the process idle: the
 * pooled ones are reset here, and the mutex, held throughout, keeps
 * lookups from taking one meanwhile. A lookup in flight (a txn neither
 * idle nor pooled) means no growth now: the flush then fails, which only
 * costs this build's cache entries. True when the map grew. */
static bool map_grow(struct ck_statcache *sc)
{
    if (sc->grow == NULL)
        return false;
    pthread_mutex_lock(&sc->mu);
    bool grown = false;
    bool guarded = sc->enter != NULL;
    if (guarded || sc->nreaders == sc->nidle) {
        for (size_t i = 0; i < sc->nidle; i++) {
            if (sc->idle[i].live) {
                mdb_txn_reset(sc->idle[i].txn);
                sc->idle[i].live = false;
            }
        }
        if (!guarded)
            grown = sc->grow(sc->grow_arg) == 0;
    }
    pthread_mutex_unlock(&sc->mu);
    /* With a guard the owner's growth waits for lookups in flight to
     * leave it, and a lookup holds the guard while it waits for mu:
     * growing under mu could deadlock, and the guard makes it unneeded. */
    if (guarded)
        grown = sc->grow(sc->grow_arg) == 0;
    return grown;
}

void ck_statcache_set_guard(struct ck_statcache *sc, void (*enter)(void *arg),
                            void (*leave)(void *arg), void *arg)
{
    pthread_mutex_lock(&sc->mu);
    sc->enter = enter;
    sc->leave = leave;
    sc->guard_arg = arg;
    pthread_mutex_unlock(&sc->mu);
}

void ck_statcache_set_grow(struct ck_statcache *sc, int (*fn)(void *arg),
                           void *arg)
{
    pthread_mutex_lock(&sc->mu);
    sc->grow = fn;
    sc->grow_arg = arg;
    pthread_mutex_unlock(&sc->mu);
}

/* Puts every queued entry into txn, in key order (inserting in key order
 * walks the B-tree left to right, touching each page once instead of at
 * random: LMDB's own advice for bulk loads); *upto gets the sequence
 * number after the last one put (entries_drop's, once txn commits). A key
 * queued twice keeps its last value: equal keys stay in queue order (the
 * offset tie-break), so the newest is put last. mu held. Returns 0 or an
 * LMDB code. */
static int entries_put(struct ck_statcache *sc, MDB_txn *txn, uint64_t *upto)
{
    size_t n = sc->npend;
    if (n == 0) {
        *upto = sc->base_seq;
        return 0;
    }
    struct sc_pending *order = malloc(n * sizeof *order);
    if (order == NULL)
        return ENOMEM;
    memcpy(order, sc->pend, n * sizeof *order);
    sort_keys = sc->keys;
    qsort(order, n, sizeof *order, pending_cmp);
    int mrc = 0;
    if (!sc->have_db)
        mrc = mdb_dbi_open(txn, SC_DBNAME, MDB_CREATE, &sc->new_dbi);
    MDB_dbi dbi = sc->have_db ? sc->dbi : sc->new_dbi;
    for (size_t i = 0; mrc == 0 && i < n; i++) {
        MDB_val k = {.mv_size = order[i].key_len,
                     .mv_data = sc->keys + order[i].off};
        MDB_val v = {.mv_size = order[i].val_len,
                     .mv_data = sc->keys + order[i].off + order[i].key_len};
        mrc = mdb_put(txn, dbi, &k, &v, 0);
    }
    free(order);
    if (mrc == 0)
        *upto = sc->base_seq + n;
    return mrc;
}

/* Idle readers drop their snapshot, so that their next lookup sees the
 * latest commits; busy ones notice the new generation when they come
 * back. mu held. */
static void readers_refresh(struct ck_statcache *sc)
{
    sc->gen++;
    for (size_t i = 0; i < sc->nidle; i++) {
        if (sc->idle[i].live) {
            mdb_txn_reset(sc->idle[i].txn);
            sc->idle[i].live = false;
        }
    }
}

/* A transaction that took the entries before sequence upto committed:
 * they leave the queue (unless an earlier commit already took them),
 * the database they created is ours, and readers look again (they see
 * the entries, and pin no old pages between builds). mu held. */
static void entries_drop(struct ck_statcache *sc, uint64_t upto)
{
    if (!sc->have_db && upto > 0) {
        sc->dbi = sc->new_dbi;
        sc->have_db = true;
    }
    readers_refresh(sc);
    if (upto <= sc->base_seq)
        return;
    size_t n = (size_t)(upto - sc->base_seq);
    if (n > sc->npend)
        n = sc->npend;
    size_t cut = n < sc->npend ? sc->pend[n].off : sc->keys_len;
    memmove(sc->keys, sc->keys + cut, sc->keys_len - cut);
    sc->keys_len -= cut;
    memmove(sc->pend, sc->pend + n, (sc->npend - n) * sizeof *sc->pend);
    sc->npend -= n;
    for (size_t i = 0; i < sc->npend; i++)
        sc->pend[i].off -= cut;
    sc->base_seq += n;
    /* The table shrinks with the queue; failing to make a new one only
     * hides the rest from lookups until their commit. */
    size_t nslot = 0;
    while (sc->npend > 0 && nslot < 2 * sc->npend + 256)
        nslot = nslot ? nslot * 2 : 256;
    if (slots_rebuild(sc, nslot) != 0) {
        free(sc->slot);
        sc->slot = NULL;
        sc->nslot = 0;
    }
}

int ck_statcache_txn_put(struct ck_statcache *sc, MDB_txn *txn,
                         uint64_t *upto)
{
    pthread_mutex_lock(&sc->mu);
    uint64_t u = 0;
    int mrc = entries_put(sc, txn, &u);
    pthread_mutex_unlock(&sc->mu);
    if (mrc == 0)
        *upto = u;
    return mrc;
}

void ck_statcache_txn_done(struct ck_statcache *sc, uint64_t upto)
{
    pthread_mutex_lock(&sc->mu);
    if (upto > sc->base_seq)
        entries_drop(sc, upto);
    pthread_mutex_unlock(&sc->mu);
}

void ck_statcache_set_defer(struct ck_statcache *sc, bool on)
{
    pthread_mutex_lock(&sc->mu);
    sc->defer = on;
    pthread_mutex_unlock(&sc->mu);
}

/* Writes the queue in a transaction of its own. */
static int flush_now(struct ck_statcache *sc, struct cairn_err *err)
{
    pthread_mutex_lock(&sc->mu);
    bool any = sc->npend > 0;
    pthread_mutex_unlock(&sc->mu);
    if (!any)
        return 0;
    int mrc;
    uint64_t upto = 0;
    do {
        MDB_txn *txn = NULL;
        guard_enter(sc);
        mrc = mdb_txn_begin(sc->env, NULL, 0, &txn);
        if (mrc == 0) {
            pthread_mutex_lock(&sc->mu);
            mrc = entries_put(sc, txn, &upto);
            pthread_mutex_unlock(&sc->mu);
            if (mrc == 0)
                mrc = mdb_txn_commit(txn); /* aborts it on failure */
            else
                mdb_txn_abort(txn);
        }
        guard_leave(sc);
    } while (mrc == MDB_MAP_FULL && map_grow(sc));
    if (mrc != 0)
        return cairn_err_set(err, CAIRN_E_DB, "stat cache flush: %s",
                             mdb_strerror(mrc));
    ck_statcache_txn_done(sc, upto);
    return 0;
}

int ck_statcache_flush(struct ck_statcache *sc, struct cairn_err *err)
{
    if (sc == NULL)
        return 0;
    pthread_mutex_lock(&sc->mu);
    bool wait = sc->defer && sc->keys_len < SC_DEFER_MAX;
    /* Whatever is written, idle readers take a new snapshot from here
     * on (they see other commits, and pin no old pages between builds). */
    readers_refresh(sc);
    pthread_mutex_unlock(&sc->mu);
    return wait ? 0 : flush_now(sc, err);
}
