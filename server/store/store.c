/* cairnd's LMDB store. docs/storage.md describes the tables, the upload
 * protocol, eviction and the durability argument; the comments here say why
 * the code is shaped as it is. Every MDB_* error is translated in this file
 * (store_mdb_err) and nowhere else. */
#include "server/store/store.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STORE_SCHEMA 1u
/* kind byte, u16 instance length, instance, hash, u64 size */
#define STORE_KEY_MAX (1 + 2 + CD_STORE_MAX_INSTANCE + CK_SHA256_LEN + 8)
#define STORE_KIND_BLOB 'B'
#define STORE_KIND_AC 'A'
#define STORE_CHUNK_KEY 12 /* u64 data id, u32 chunk index */
#define STORE_POOL_MAX 64  /* reset read txns kept for reuse */
#define STORE_QUEUE_MAX 8192
#define STORE_QUEUE_BYTES (1u << 20)
#define STORE_QUEUE_FLUSH 1024 /* the flusher wakes up past this */
#define STORE_FLUSH_PERIOD_S 5 /* and at least this often */
#define STORE_APPLY_BATCH 2048 /* access updates per write txn */
#define STORE_GC_BATCH 256     /* chunks deleted per write txn */
#define STORE_MAP_SLACK (1ull << 30)
#define STORE_MAP_UNCAPPED (1ull << 40)
#define STORE_MAX_READERS 1024
#define STORE_MADVISE_MIN (4ull * CD_STORE_CHUNK)
/* Verified data ids remembered (direct-mapped: a collision only means
 * hashing that blob again). */
#define STORE_VERIFIED_SLOTS 4096
/* Blobs at least this big are hashed by a thread of their own, from the
 * map, while the reader sends (docs/storage.md "Verification"); at most
 * STORE_HASHERS_MAX such threads at a time, further reads hash inline. */
#define STORE_HASH_ASYNC_MIN (4ull * CD_STORE_CHUNK)
#define STORE_HASHERS_MAX 4
#define STORE_HASH_STEP (8ull * CD_STORE_CHUNK) /* bytes per read txn */
/* An upload buffers this much and stages it in one write txn: the cost of
 * a staging txn is mostly its fdatasync, and a disk writes 8-16 MiB per
 * sync several times faster than 1 MiB. 16 MiB measured no faster here
 * and costs 25 MB more per upload (two buffers plus LMDB's dirty pages;
 * docs/storage.md). */
#define STORE_STAGE_BATCH CD_STORE_STAGE_BATCH_DEFAULT
/* All uploads' batch buffers together stay below this; an upload that
 * finds the budget spent stages chunk by chunk, as before batching. */
#define STORE_STAGE_BUDGET (4ull * CD_STORE_STAGE_BATCH_MAX)

/* The running totals, one record in the "meta" table, rewritten in every
 * txn that changes them, so open never counts anything. Host byte order:
 * an LMDB file is not portable between architectures anyway. */
struct store_stats_rec {
    uint32_t schema;
    uint32_t reserved;
    uint64_t blobs;
    uint64_t bytes;
    uint64_t ac_entries;
    uint64_t ac_bytes;
    uint64_t next_seq; /* next LRU access sequence number */
    uint64_t next_id;  /* every data id in the file is below this */
};

/* Value of the "entries" table (blobs and action results alike). */
struct store_meta {
    uint64_t size; /* blob size, or ActionResult length */
    uint64_t seq;  /* key of this entry in the "lru" table */
    uint64_t id;   /* chunk data id (blobs); 0 for action results */
};

/* Value of the "pending" table: one staged upload. */
struct store_pending {
    uint64_t created; /* wall clock seconds, for people reading the file */
    uint64_t size;
};

struct store_key {
    size_t len;
    uint8_t b[STORE_KEY_MAX];
};

struct store_pin {
    uint64_t id;
    unsigned count;
};

/* A blob (by data id, never reused) whose content hashed to its digest. */
struct store_verified {
    uint64_t id;
    time_t at; /* monotonic seconds */
};

struct cd_store {
    MDB_env *env;
    MDB_dbi dbi_meta, dbi_entries, dbi_lru, dbi_chunks, dbi_ac, dbi_pending,
        dbi_garbage;
    uint64_t max_size; /* 0: no cap */
    unsigned ttl_s;
    size_t page;
    uint8_t empty_hash[CK_SHA256_LEN];

    /* Reset read txns: renewing one costs no lock-table mutex. */
    pthread_mutex_t pool_mu;
    MDB_txn *pool[STORE_POOL_MAX];
    size_t npool;

    /* Access queue: entry keys of blobs/results read since the last flush,
     * each as u16 length + key, deduplicated through a hash set. */
    pthread_mutex_t q_mu;
    uint8_t *q_buf;
    size_t q_len;
    size_t q_n;
    uint64_t *q_set;       /* 2 * STORE_QUEUE_MAX slots, 0 = free */
    pthread_cond_t q_cond; /* wakes the flusher */
    bool q_stop;
    bool flusher_started;
    pthread_t flusher;

    /* Data ids with an open cd_reader: eviction passes them over. */
    pthread_mutex_t pin_mu;
    struct store_pin *pins;
    size_t npins, cap_pins;

    /* Live uploads, for cd_store_maintain's expiry. */
    pthread_mutex_t up_mu;
    struct cd_upload *uploads;

    pthread_mutex_t ctr_mu;
    uint64_t next_id; /* in-memory allocator; persisted lazily */
    uint64_t evictions, evicted_bytes;
    uint64_t quarantined, quarantined_bytes;
    uint64_t stage_used; /* bytes of STORE_STAGE_BUDGET held by uploads */
    size_t stage_batch;  /* whole chunks */

    /* The stager thread writes full upload buffers while their uploads go
     * on filling their other buffer: receiving and hashing overlap with
     * the disk (docs/storage.md). FIFO of uploads with a buffer queued. */
    pthread_mutex_t sg_mu;
    pthread_cond_t sg_cond; /* wakes the stager */
    pthread_cond_t sg_done; /* a stage finished (broadcast) */
    struct cd_upload *sg_head, *sg_tail;
    bool sg_stop;
    bool stager_started;
    pthread_t stager;

    /* Read verification (docs/storage.md "Verification"): blobs verified
     * within verify_ttl_s are served without hashing them again. */
    bool verify_off;
    unsigned verify_ttl_s;
    pthread_mutex_t vf_mu;
    struct store_verified *verified; /* STORE_VERIFIED_SLOTS */
    unsigned hashers; /* running store_hasher threads, under vf_mu */
};

/* A thread hashing one reader's whole blob from the map. */
struct store_hasher {
    pthread_t th;
    struct cd_store *st;
    const struct store_key *key; /* the reader's */
    uint64_t id, size;
    atomic_bool stop; /* the reader gave up: finish early */
    int rc;           /* after join: 0 (got is the hash) or an error */
    uint8_t got[CK_SHA256_LEN];
};

struct cd_upload {
    struct cd_store *st;
    struct cd_upload *prev, *next; /* st->uploads, under st->up_mu */
    bool listed;                   /* under st->up_mu */
    pthread_mutex_t mu;            /* owner ops vs. cd_store_maintain */
    int err; /* sticky: set by a failed stage or by expiry */
    struct store_key key;
    struct cd_digest d;
    uint64_t id;
    uint64_t off;
    uint32_t nstaged; /* chunks written to LMDB so far */
    bool pending; /* a "pending" record exists for id */
    /* Two buffers: one fills while the stager writes the other. mmap'd,
     * so freeing them returns the memory to the system at once. */
    uint8_t *bufs[2];
    uint8_t *buf; /* the one filling: data not yet staged */
    size_t blen;
    size_t cap;      /* bytes a buffer holds: a multiple of CD_STORE_CHUNK,
                      * or the whole blob when it is smaller */
    size_t reserved; /* of st->stage_used, given back with the buffers */
    /* Under st->sg_mu: a buffer is queued for or being written by the
     * stager (sg_p, sg_len), and the error of the last stage. While
     * staging, the stager owns nstaged and pending. */
    bool staging;
    int sg_err;
    const uint8_t *sg_p;
    size_t sg_len;
    struct cd_upload *sg_next;
    struct ck_sha256 *h;
    time_t last; /* monotonic seconds of the last call */
};

struct cd_reader {
    struct cd_store *st;
    struct store_key key;
    uint64_t id;
    uint64_t size;
    /* While verifying (cd_reader_verify): either the hash of [0, hashed)
     * (h), or a thread hashing the whole blob (bg) while reads go on from
     * hashed. */
    struct ck_sha256 *h;
    struct store_hasher *bg;
    uint64_t hashed;
};

/* --- small helpers ------------------------------------------------------ */

/* Frees u's data buffers (no stage in flight) and gives the batch budget
 * back. */
static void store_buf_free(struct cd_upload *u)
{
    for (int i = 0; i < 2; i++) {
        if (u->bufs[i] != NULL)
            munmap(u->bufs[i], u->cap);
        u->bufs[i] = NULL;
    }
    u->buf = NULL;
    u->blen = 0;
    u->cap = 0;
    if (u->reserved != 0) {
        pthread_mutex_lock(&u->st->ctr_mu);
        u->st->stage_used -= u->reserved;
        pthread_mutex_unlock(&u->st->ctr_mu);
        u->reserved = 0;
    }
}

/* The one place MDB_* and errno values from LMDB become cairn codes. */
static int store_mdb_err(int rc)
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

static void store_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t store_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static time_t store_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static int store_key_make(char kind, const char *instance,
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

static bool store_is_empty(const struct cd_store *st, const struct cd_digest *d)
{
    return d->size == 0 && memcmp(d->hash, st->empty_hash, CK_SHA256_LEN) == 0;
}

static void store_chunk_key(uint8_t k[STORE_CHUNK_KEY], uint64_t id,
                            uint32_t idx)
{
    store_be64(k, id);
    k[8] = (uint8_t)(idx >> 24);
    k[9] = (uint8_t)(idx >> 16);
    k[10] = (uint8_t)(idx >> 8);
    k[11] = (uint8_t)idx;
}

static int store_stats_load(struct cd_store *st, MDB_txn *txn,
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
        return store_mdb_err(rc);
    if (v.mv_size != sizeof *s)
        return CAIRN_E_CORRUPT;
    memcpy(s, v.mv_data, sizeof *s);
    return 0;
}

static int store_stats_save(struct cd_store *st, MDB_txn *txn,
                            const struct store_stats_rec *s)
{
    MDB_val k = {5, "stats"}, v = {sizeof *s, (void *)s};
    return store_mdb_err(mdb_put(txn, st->dbi_meta, &k, &v, 0));
}

static int store_meta_get(struct cd_store *st, MDB_txn *txn,
                          const struct store_key *key, struct store_meta *m)
{
    MDB_val k = {key->len, (void *)key->b}, v;
    int rc = mdb_get(txn, st->dbi_entries, &k, &v);
    if (rc != 0)
        return store_mdb_err(rc);
    if (v.mv_size != sizeof *m)
        return CAIRN_E_CORRUPT;
    memcpy(m, v.mv_data, sizeof *m);
    return 0;
}

/* --- read transactions ------------------------------------------------- */

static int store_rtxn_begin(struct cd_store *st, MDB_txn **out)
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
        return store_mdb_err(rc);
    *out = t;
    return 0;
}

static void store_rtxn_end(struct cd_store *st, MDB_txn *t)
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

static int store_wtxn_commit(MDB_txn *txn)
{
    return store_mdb_err(mdb_txn_commit(txn));
}

/* Makes every commit so far durable: with MDB_NOMETASYNC a commit has
 * synced its data pages but not yet its meta page. Called before
 * anything is acknowledged. */
static int store_sync(struct cd_store *st)
{
    return store_mdb_err(mdb_env_sync(st->env, 1));
}

/* --- access queue (LRU batching) --------------------------------------- */

static uint64_t store_key_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

/* Queues one access; the caller holds q_mu. */
static void store_touch_locked(struct cd_store *st, const struct store_key *k)
{
    uint64_t h = store_key_hash(k->b, k->len);
    size_t mask = 2 * STORE_QUEUE_MAX - 1;
    if (st->q_n >= STORE_QUEUE_MAX ||
        st->q_len + 2 + k->len > STORE_QUEUE_BYTES)
        return;
    size_t i = h & mask;
    while (st->q_set[i] != 0) {
        if (st->q_set[i] == h)
            return; /* already queued (or a hash twin: close enough) */
        i = (i + 1) & mask;
    }
    st->q_set[i] = h;
    st->q_buf[st->q_len] = (uint8_t)(k->len >> 8);
    st->q_buf[st->q_len + 1] = (uint8_t)k->len;
    memcpy(st->q_buf + st->q_len + 2, k->b, k->len);
    st->q_len += 2 + k->len;
    if (++st->q_n == STORE_QUEUE_FLUSH)
        pthread_cond_signal(&st->q_cond);
}

/* Records accesses for the next flush. Never blocks on LMDB: the read
 * path only takes this short mutex, once for all n keys. A full queue
 * drops the access, which makes the LRU order slightly stale, never wrong
 * about what exists. */
static void store_touch_n(struct cd_store *st, const struct store_key *k,
                          size_t n)
{
    pthread_mutex_lock(&st->q_mu);
    for (size_t i = 0; i < n; i++)
        store_touch_locked(st, &k[i]);
    pthread_mutex_unlock(&st->q_mu);
}

static void store_touch(struct cd_store *st, const struct store_key *k)
{
    store_touch_n(st, k, 1);
}

/* Moves one entry to the young end of the LRU. */
static int store_lru_bump(struct cd_store *st, MDB_txn *txn,
                          struct store_stats_rec *s, const uint8_t *key,
                          size_t klen)
{
    struct store_key k;
    k.len = klen;
    memcpy(k.b, key, klen);
    struct store_meta m;
    int rc = store_meta_get(st, txn, &k, &m);
    if (rc == CAIRN_E_NOTFOUND)
        return 0; /* evicted since it was read */
    if (rc != 0)
        return rc;
    if (m.seq + 1 == s->next_seq)
        return 0;
    uint8_t sk[8];
    store_be64(sk, m.seq);
    MDB_val lk = {8, sk};
    rc = mdb_del(txn, st->dbi_lru, &lk, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return store_mdb_err(rc);
    m.seq = s->next_seq++;
    store_be64(sk, m.seq);
    MDB_val lv = {klen, k.b};
    rc = mdb_put(txn, st->dbi_lru, &lk, &lv, 0);
    if (rc != 0)
        return store_mdb_err(rc);
    MDB_val ek = {klen, k.b}, ev = {sizeof m, &m};
    return store_mdb_err(mdb_put(txn, st->dbi_entries, &ek, &ev, 0));
}

/* Takes up to max queued accesses, oldest first (malloc'd copy in *out,
 * NULL when the queue is empty); what is left stays queued. Callers take
 * the queue only inside their write txn: an access taken out of the queue
 * but not yet in the LRU would be invisible to a concurrent evictor, which
 * could then pick an entry that was just read. */
static int store_queue_take(struct cd_store *st, size_t max, uint8_t **out,
                            size_t *len)
{
    int rc = 0;
    *out = NULL;
    *len = 0;
    pthread_mutex_lock(&st->q_mu);
    size_t n = 0, take = 0;
    while (n < max && take < st->q_len) {
        take += 2 + ((size_t)st->q_buf[take] << 8 | st->q_buf[take + 1]);
        n++;
    }
    if (take == 0)
        goto out;
    if ((*out = malloc(take)) == NULL) {
        rc = CAIRN_E_NOMEM;
        goto out;
    }
    memcpy(*out, st->q_buf, take);
    *len = take;
    memmove(st->q_buf, st->q_buf + take, st->q_len - take);
    st->q_len -= take;
    st->q_n -= n;
    /* Rebuild the dedup set from what is left (usually nothing). */
    memset(st->q_set, 0, 2 * STORE_QUEUE_MAX * sizeof *st->q_set);
    size_t mask = 2 * STORE_QUEUE_MAX - 1;
    for (size_t off = 0; off < st->q_len;) {
        size_t kl = (size_t)st->q_buf[off] << 8 | st->q_buf[off + 1];
        uint64_t h = store_key_hash(st->q_buf + off + 2, kl);
        size_t i = h & mask;
        while (st->q_set[i] != 0 && st->q_set[i] != h)
            i = (i + 1) & mask;
        st->q_set[i] = h;
        off += 2 + kl;
    }
out:
    pthread_mutex_unlock(&st->q_mu);
    return rc;
}

/* Applies queued accesses from *off on, at most max of them, in txn. */
static int store_access_apply(struct cd_store *st, MDB_txn *txn,
                              struct store_stats_rec *s, const uint8_t *q,
                              size_t len, size_t *off, size_t max)
{
    for (size_t i = 0; i < max && *off < len; i++) {
        size_t kl = (size_t)q[*off] << 8 | q[*off + 1];
        int rc = store_lru_bump(st, txn, s, q + *off + 2, kl);
        if (rc != 0)
            return rc;
        *off += 2 + kl;
    }
    return 0;
}

/* Writes queued accesses into the LRU, STORE_APPLY_BATCH per txn so the
 * writer lock is held only briefly. Each batch is taken from the queue
 * inside its txn (see store_queue_take); accesses queued meanwhile wait
 * for the next flush, so this ends even under a steady stream of reads. */
static int store_access_flush(struct cd_store *st)
{
    pthread_mutex_lock(&st->q_mu);
    size_t batches = (st->q_n + STORE_APPLY_BATCH - 1) / STORE_APPLY_BATCH;
    pthread_mutex_unlock(&st->q_mu);
    int rc = 0;
    for (size_t b = 0; rc == 0 && b < batches; b++) {
        MDB_txn *txn = NULL;
        rc = store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn));
        if (rc != 0)
            break;
        uint8_t *q = NULL;
        size_t len = 0, off = 0;
        struct store_stats_rec s;
        rc = store_queue_take(st, STORE_APPLY_BATCH, &q, &len);
        if (rc == 0 && len == 0) {
            mdb_txn_abort(txn); /* an evictor took it meanwhile */
            break;
        }
        if (rc == 0)
            rc = store_stats_load(st, txn, &s);
        if (rc == 0)
            rc = store_access_apply(st, txn, &s, q, len, &off, SIZE_MAX);
        if (rc == 0)
            rc = store_stats_save(st, txn, &s);
        if (rc == 0)
            rc = store_wtxn_commit(txn);
        else
            mdb_txn_abort(txn);
        free(q);
    }
    return rc;
}

/* The flusher thread: the read path only queues accesses; this thread
 * writes them when the queue has grown or every few seconds, so the LRU in
 * LMDB is seconds behind at most and the queue rarely overflows. */
static void *store_flusher_main(void *arg)
{
    struct cd_store *st = arg;
    pthread_mutex_lock(&st->q_mu);
    while (!st->q_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += STORE_FLUSH_PERIOD_S;
        while (!st->q_stop && st->q_n < STORE_QUEUE_FLUSH) {
            if (pthread_cond_timedwait(&st->q_cond, &st->q_mu, &ts) ==
                ETIMEDOUT)
                break;
        }
        if (st->q_stop)
            break;
        pthread_mutex_unlock(&st->q_mu);
        (void)store_access_flush(st); /* best effort: LRU order only */
        pthread_mutex_lock(&st->q_mu);
    }
    pthread_mutex_unlock(&st->q_mu);
    return NULL;
}

static int store_stage(struct cd_upload *u, const uint8_t *p, size_t len);

/* The stager thread: writes queued upload buffers, one txn each, in the
 * order they were queued. */
static void *store_stager_main(void *arg)
{
    struct cd_store *st = arg;
    pthread_mutex_lock(&st->sg_mu);
    for (;;) {
        while (!st->sg_stop && st->sg_head == NULL)
            pthread_cond_wait(&st->sg_cond, &st->sg_mu);
        if (st->sg_head == NULL)
            break; /* stopping, and nothing left */
        struct cd_upload *u = st->sg_head;
        st->sg_head = u->sg_next;
        if (st->sg_head == NULL)
            st->sg_tail = NULL;
        pthread_mutex_unlock(&st->sg_mu);
        int rc = store_stage(u, u->sg_p, u->sg_len);
        pthread_mutex_lock(&st->sg_mu);
        u->sg_err = rc;
        u->staging = false;
        pthread_cond_broadcast(&st->sg_done);
    }
    pthread_mutex_unlock(&st->sg_mu);
    return NULL;
}

/* Before evicting, a writer applies what is queued in its own txn, so the
 * entries read most recently are not the ones chosen, at no extra sync. */
static int store_access_apply_all(struct cd_store *st, MDB_txn *txn,
                                  struct store_stats_rec *s)
{
    uint8_t *q = NULL;
    size_t len = 0, off = 0;
    int rc = store_queue_take(st, SIZE_MAX, &q, &len);
    if (rc == 0)
        rc = store_access_apply(st, txn, s, q, len, &off, SIZE_MAX);
    free(q);
    return rc;
}

/* --- reader pins --------------------------------------------------------- */

static int store_pin(struct cd_store *st, uint64_t id)
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
        struct store_pin *p = realloc(st->pins, cap * sizeof *p);
        if (p == NULL) {
            rc = CAIRN_E_NOMEM;
            goto out;
        }
        st->pins = p;
        st->cap_pins = cap;
    }
    st->pins[st->npins++] = (struct store_pin){id, 1};
out:
    pthread_mutex_unlock(&st->pin_mu);
    return rc;
}

static void store_unpin(struct cd_store *st, uint64_t id)
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

/* --- chunk removal ---------------------------------------------------------
 */

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
            return store_mdb_err(rc);
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
            return store_mdb_err(rc);
    }
    return 0;
}

/* Removes all chunks of id, then the record id in marker (pending or
 * garbage), in bounded txns. The marker goes last, so a crash midway
 * leaves it for the next open to finish. */
static int store_chunks_drop(struct cd_store *st, MDB_dbi marker, uint64_t id)
{
    for (;;) {
        MDB_txn *txn = NULL;
        int rc = store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn));
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
                rc = store_mdb_err(drc);
        }
        if (rc == 0)
            rc = store_wtxn_commit(txn);
        else
            mdb_txn_abort(txn);
        if (rc != 0 || done)
            return rc;
    }
}

/* Empties a marker table (garbage at any time; pending only at open, when
 * no upload of this process exists). Costs what is listed, never a scan
 * of the data. */
static int store_sweep(struct cd_store *st, MDB_dbi marker)
{
    for (;;) {
        MDB_txn *txn = NULL;
        int rc = store_mdb_err(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn));
        if (rc != 0)
            return rc;
        MDB_cursor *cur = NULL;
        uint64_t id = 0;
        rc = store_mdb_err(mdb_cursor_open(txn, marker, &cur));
        if (rc == 0) {
            MDB_val k, v;
            rc = store_mdb_err(mdb_cursor_get(cur, &k, &v, MDB_FIRST));
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
        rc = store_chunks_drop(st, marker, id);
        if (rc != 0)
            return rc;
    }
}

/* --- eviction ---------------------------------------------------------- */

struct store_evicted {
    uint64_t blobs, bytes;
};

/* Evicts least-recently-used entries until need more bytes fit under
 * max_size. Blobs with an open reader are passed over while others can go.
 * A blob's chunks are not deleted here: its id goes to the garbage table
 * and store_sweep removes them in small txns after this one commits, so
 * the caller's txn stays small however big the victims are. */
static int store_evict(struct cd_store *st, MDB_txn *txn,
                       struct store_stats_rec *s, uint64_t need,
                       struct store_evicted *ev)
{
    if (st->max_size == 0)
        return 0;
    if (need > st->max_size)
        return CAIRN_E_FULL;
    if (s->bytes + s->ac_bytes + need <= st->max_size)
        return 0;
    int arc = store_access_apply_all(st, txn, s);
    if (arc != 0)
        return arc;
    uint64_t pos = 0;
    bool spare_pinned = true;
    while (s->bytes + s->ac_bytes + need > st->max_size) {
        MDB_cursor *cur = NULL;
        int rc = mdb_cursor_open(txn, st->dbi_lru, &cur);
        if (rc != 0)
            return store_mdb_err(rc);
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
            return store_mdb_err(rc);
        pos = seq + 1;
        struct store_meta m;
        rc = store_meta_get(st, txn, &key, &m);
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
            return store_mdb_err(rc);
        if (stale)
            continue;
        MDB_val ek = {key.len, key.b};
        rc = mdb_del(txn, st->dbi_entries, &ek, NULL);
        if (rc != 0)
            return store_mdb_err(rc);
        if (key.b[0] == STORE_KIND_BLOB) {
            uint8_t ik[8];
            store_be64(ik, m.id);
            MDB_val gk = {8, ik}, gv = {8, &m.size};
            rc = mdb_put(txn, st->dbi_garbage, &gk, &gv, 0);
            if (rc != 0)
                return store_mdb_err(rc);
            s->blobs--;
            s->bytes -= m.size;
            ev->blobs++;
            ev->bytes += m.size;
        } else {
            rc = mdb_del(txn, st->dbi_ac, &ek, NULL);
            if (rc != 0 && rc != MDB_NOTFOUND)
                return store_mdb_err(rc);
            s->ac_entries--;
            s->ac_bytes -= m.size;
        }
    }
    return 0;
}

static void store_evicted_account(struct cd_store *st,
                                  const struct store_evicted *ev)
{
    if (ev->blobs == 0)
        return;
    pthread_mutex_lock(&st->ctr_mu);
    st->evictions += ev->blobs;
    st->evicted_bytes += ev->bytes;
    pthread_mutex_unlock(&st->ctr_mu);
}

/* --- verification and quarantine ---------------------------------------- */

/* True when blob id hashed to its digest within verify_ttl_s (never with
 * a ttl of 0: then every whole read verifies). */
static bool store_verified_recently(struct cd_store *st, uint64_t id)
{
    if (st->verify_ttl_s == 0)
        return false;
    struct store_verified *v = &st->verified[id % STORE_VERIFIED_SLOTS];
    pthread_mutex_lock(&st->vf_mu);
    bool yes = v->id == id && store_now() - v->at < (time_t)st->verify_ttl_s;
    pthread_mutex_unlock(&st->vf_mu);
    return yes;
}

static void store_verified_mark(struct cd_store *st, uint64_t id)
{
    struct store_verified *v = &st->verified[id % STORE_VERIFIED_SLOTS];
    pthread_mutex_lock(&st->vf_mu);
    v->id = id;
    v->at = store_now();
    pthread_mutex_unlock(&st->vf_mu);
}

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

/* Hashes bytes [from, to) of blob id (size bytes) into h straight from
 * the map, inside txn. */
static int store_hash_range(struct cd_store *st, MDB_txn *txn, uint64_t id,
                            uint64_t size, uint64_t from, uint64_t to,
                            struct ck_sha256 *h)
{
    while (from < to) {
        uint32_t idx = (uint32_t)(from / CD_STORE_CHUNK);
        size_t in = (size_t)(from % CD_STORE_CHUNK);
        uint8_t ck[STORE_CHUNK_KEY];
        store_chunk_key(ck, id, idx);
        MDB_val k = {STORE_CHUNK_KEY, ck}, v;
        int rc = mdb_get(txn, st->dbi_chunks, &k, &v);
        if (rc == MDB_NOTFOUND)
            return CAIRN_E_CORRUPT; /* the entry says it is there */
        if (rc != 0)
            return store_mdb_err(rc);
        if (v.mv_size <= in)
            return CAIRN_E_CORRUPT;
        size_t take = v.mv_size - in;
        if (take > to - from)
            take = (size_t)(to - from);
        if ((rc = ck_sha256_update(h, (const uint8_t *)v.mv_data + in, take)) != 0)
            return rc;
        if (size >= STORE_MADVISE_MIN && in + take == v.mv_size)
            store_pages_drop(st, &v);
        from += take;
    }
    return 0;
}

/* Removes blob k from the index if it still has data id (a blob found
 * corrupt): entries and lru go, the chunks become garbage and are swept
 * at once. The bytes are worthless (nothing can recover content from a
 * digest), so quarantine drops them; a later upload stores a good copy
 * under a new id. Not synced: a quarantine lost in a crash is found again
 * by the next read or scrub. */
static int store_quarantine(struct cd_store *st, const struct store_key *k,
                            uint64_t id)
{
    MDB_txn *txn = NULL;
    int rc = store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    struct store_stats_rec s;
    struct store_meta m;
    if ((rc = store_stats_load(st, txn, &s)) != 0)
        goto fail;
    rc = store_meta_get(st, txn, k, &m);
    if (rc == CAIRN_E_NOTFOUND || (rc == 0 && m.id != id)) {
        /* Already gone (evicted, or quarantined by another reader). */
        mdb_txn_abort(txn);
        return 0;
    }
    if (rc != 0)
        goto fail;
    uint8_t sk[8], ik[8];
    store_be64(sk, m.seq);
    store_be64(ik, id);
    MDB_val ek = {k->len, (void *)k->b}, lk = {8, sk}, gk = {8, ik},
            gv = {8, &m.size};
    if ((rc = store_mdb_err(mdb_del(txn, st->dbi_entries, &ek, NULL))) != 0)
        goto fail;
    int lrc = mdb_del(txn, st->dbi_lru, &lk, NULL);
    if (lrc != 0 && lrc != MDB_NOTFOUND) {
        rc = store_mdb_err(lrc);
        goto fail;
    }
    if ((rc = store_mdb_err(mdb_put(txn, st->dbi_garbage, &gk, &gv, 0))) != 0)
        goto fail;
    s.blobs--;
    s.bytes -= m.size;
    if ((rc = store_stats_save(st, txn, &s)) != 0)
        goto fail;
    if ((rc = store_wtxn_commit(txn)) != 0)
        return rc;
    pthread_mutex_lock(&st->ctr_mu);
    st->quarantined++;
    st->quarantined_bytes += m.size;
    pthread_mutex_unlock(&st->ctr_mu);
    (void)store_sweep(st, st->dbi_garbage);
    return 0;
fail:
    mdb_txn_abort(txn);
    return rc;
}

/* Compares hash got with k's digest: CAIRN_E_CORRUPT on a mismatch (the
 * caller quarantines, store_corrupt_check); a match remembers id as
 * verified. */
static int store_verify_hash(struct cd_store *st, const struct store_key *k,
                             uint64_t id, const uint8_t got[CK_SHA256_LEN])
{
    /* The entry key ends with the sha256 and the u64 size. */
    const uint8_t *want = k->b + k->len - 8 - CK_SHA256_LEN;
    if (memcmp(got, want, CK_SHA256_LEN) != 0)
        return CAIRN_E_CORRUPT;
    store_verified_mark(st, id);
    return 0;
}

/* Quarantines blob k (data id) when rc says it is corrupt (bytes that do
 * not hash to the digest, or a chunk missing or short); returns rc, or
 * the error of the quarantine. */
static int store_corrupt_check(struct cd_store *st, const struct store_key *k,
                               uint64_t id, int rc)
{
    if (rc != CAIRN_E_CORRUPT)
        return rc;
    int qrc = store_quarantine(st, k, id);
    return qrc != 0 ? qrc : rc;
}

static int store_verify_end(struct cd_store *st, const struct store_key *k,
                            uint64_t id, struct ck_sha256 *h)
{
    uint8_t got[CK_SHA256_LEN];
    int rc = ck_sha256_final(h, got);
    return rc != 0 ? rc : store_verify_hash(st, k, id, got);
}

/* Hashes the whole blob in STORE_HASH_STEP pieces, each in its own read
 * txn that first checks the blob is still the same data id (a slow
 * reader's blob may be evicted). */
static void *store_hasher_main(void *arg)
{
    struct store_hasher *b = arg;
    struct cd_store *st = b->st;
    struct ck_sha256 *h = NULL;
    int rc = ck_sha256_new(&h);
    for (uint64_t off = 0; rc == 0 && off < b->size;) {
        if (atomic_load_explicit(&b->stop, memory_order_relaxed)) {
            rc = -ECANCELED;
            break;
        }
        uint64_t upto = b->size - off > STORE_HASH_STEP ? off + STORE_HASH_STEP : b->size;
        MDB_txn *txn = NULL;
        if ((rc = store_rtxn_begin(st, &txn)) != 0)
            break;
        struct store_meta m;
        rc = store_meta_get(st, txn, b->key, &m);
        if (rc == 0 && m.id != b->id)
            rc = CAIRN_E_NOTFOUND;
        if (rc == 0)
            rc = store_hash_range(st, txn, b->id, b->size, off, upto, h);
        store_rtxn_end(st, txn);
        off = upto;
    }
    if (rc == 0)
        rc = ck_sha256_final(h, b->got);
    ck_sha256_free(h);
    b->rc = rc;
    return NULL;
}

/* Starts a hasher for r's blob; false when none can start (the caller
 * hashes inline). */
static bool store_hasher_start(struct cd_reader *r)
{
    struct cd_store *st = r->st;
    pthread_mutex_lock(&st->vf_mu);
    bool slot = st->hashers < STORE_HASHERS_MAX;
    if (slot)
        st->hashers++;
    pthread_mutex_unlock(&st->vf_mu);
    if (!slot)
        return false;
    struct store_hasher *b = calloc(1, sizeof *b);
    if (b != NULL) {
        b->st = st;
        b->key = &r->key;
        b->id = r->id;
        b->size = r->size;
        atomic_init(&b->stop, false);
        if (pthread_create(&b->th, NULL, store_hasher_main, b) == 0) {
            r->bg = b;
            return true;
        }
        free(b);
    }
    pthread_mutex_lock(&st->vf_mu);
    st->hashers--;
    pthread_mutex_unlock(&st->vf_mu);
    return false;
}

/* Waits for r's hasher (asking it to stop early when stop is set) and
 * frees it; returns its result and copies the hash to got. */
static int store_hasher_join(struct cd_reader *r, bool stop,
                             uint8_t got[CK_SHA256_LEN])
{
    struct store_hasher *b = r->bg;
    if (stop)
        atomic_store(&b->stop, true);
    pthread_join(b->th, NULL);
    int rc = b->rc;
    memcpy(got, b->got, CK_SHA256_LEN);
    free(b);
    r->bg = NULL;
    pthread_mutex_lock(&r->st->vf_mu);
    r->st->hashers--;
    pthread_mutex_unlock(&r->st->vf_mu);
    return rc;
}

/* --- open / close ------------------------------------------------------- */

static int store_dbi_open(MDB_txn *txn, const char *name, MDB_dbi *out)
{
    return store_mdb_err(mdb_dbi_open(txn, name, MDB_CREATE, out));
}

static int store_env_open(struct cd_store *st, const struct cd_store_opts *o,
                          struct cairn_err *err)
{
    int rc = mdb_env_create(&st->env);
    if (rc != 0)
        return cairn_err_set(err, store_mdb_err(rc), "lmdb: %s",
                             mdb_strerror(rc));
    /* The map is address space, not disk: the file grows only as pages are
     * written. Room for the cap plus staged uploads, garbage not yet swept
     * and pages pinned by readers. */
    uint64_t map = STORE_MAP_UNCAPPED;
    if (o->max_size != 0 && o->max_size < STORE_MAP_UNCAPPED / 2)
        map = o->max_size + o->max_size / 2 + STORE_MAP_SLACK;
    map = (map + CD_STORE_CHUNK - 1) / CD_STORE_CHUNK * CD_STORE_CHUNK;
    /* A scrub beside a running server keeps the map size in the file: a
     * different one would be written at its first commit and make the
     * server's next txn fail with MDB_MAP_RESIZED. */
    if (!o->scrub)
        rc = mdb_env_set_mapsize(st->env, (size_t)map);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(st->env, 8);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(st->env, STORE_MAX_READERS);
    /* NOTLS: gRPC may move a read between threads, and pooled read txns
     * are shared. NOMETASYNC: each commit syncs its data once; the meta
     * page is synced by store_sync before anything is acknowledged. */
    if (rc == 0)
        rc = mdb_env_open(st->env, o->dir, MDB_NOTLS | MDB_NOMETASYNC, 0600);
    if (rc != 0) {
        /* A failed open leaves no map: close it here so that nothing
         * (cd_store_close's sync) touches it. */
        mdb_env_close(st->env);
        st->env = NULL;
        if (rc == ENOMEM)
            return cairn_err_set(err, -ENOMEM,
                                 "lmdb open %s: cannot map %llu MiB (1.5 x "
                                 "--max-size + 1 GiB): out of address space "
                                 "(ulimit -v?)",
                                 o->dir, (unsigned long long)(map >> 20));
        return cairn_err_set(err, store_mdb_err(rc), "lmdb open %s: %s", o->dir,
                             mdb_strerror(rc));
    }
    /* A killed process leaves its reader slots behind; clear them so they
     * do not pin old pages forever. */
    int dead = 0;
    (void)mdb_reader_check(st->env, &dead);
    return 0;
}

static int store_tables_open(struct cd_store *st, struct cairn_err *err)
{
    MDB_txn *txn = NULL;
    int rc = store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn));
    if (rc != 0)
        return cairn_err_set(err, rc, "lmdb: cannot begin txn");
    if ((rc = store_dbi_open(txn, "meta", &st->dbi_meta)) != 0 ||
        (rc = store_dbi_open(txn, "entries", &st->dbi_entries)) != 0 ||
        (rc = store_dbi_open(txn, "lru", &st->dbi_lru)) != 0 ||
        (rc = store_dbi_open(txn, "chunks", &st->dbi_chunks)) != 0 ||
        (rc = store_dbi_open(txn, "ac", &st->dbi_ac)) != 0 ||
        (rc = store_dbi_open(txn, "pending", &st->dbi_pending)) != 0 ||
        (rc = store_dbi_open(txn, "garbage", &st->dbi_garbage)) != 0) {
        mdb_txn_abort(txn);
        return cairn_err_set(err, rc, "lmdb: cannot open tables");
    }
    struct store_stats_rec s;
    rc = store_stats_load(st, txn, &s);
    if (rc == 0 && s.schema != STORE_SCHEMA) {
        mdb_txn_abort(txn);
        return cairn_err_set(err, CAIRN_E_DB,
                             "store schema %u, this cairnd reads %u",
                             (unsigned)s.schema, STORE_SCHEMA);
    }
    if (rc == 0)
        rc = store_stats_save(st, txn, &s);
    if (rc == 0)
        rc = store_wtxn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc != 0)
        return cairn_err_set(err, rc, "lmdb: cannot read stats");
    st->next_id = s.next_id;
    return 0;
}

int cd_store_open(const struct cd_store_opts *opts, struct cd_store **out,
                  struct cairn_err *err)
{
    if (opts == NULL || opts->dir == NULL || out == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "store: no directory");
    if (mkdir(opts->dir, 0700) != 0 && errno != EEXIST)
        return cairn_err_set(err, -errno, "mkdir %s: %s", opts->dir,
                             cairn_strerror(-errno));
    struct cd_store *st = calloc(1, sizeof *st);
    if (st == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "store: out of memory");
    pthread_mutex_init(&st->pool_mu, NULL);
    pthread_mutex_init(&st->q_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->q_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&st->pin_mu, NULL);
    pthread_mutex_init(&st->up_mu, NULL);
    pthread_mutex_init(&st->ctr_mu, NULL);
    pthread_mutex_init(&st->sg_mu, NULL);
    pthread_cond_init(&st->sg_cond, NULL);
    pthread_cond_init(&st->sg_done, NULL);
    pthread_mutex_init(&st->vf_mu, NULL);
    st->verify_off = opts->verify_off;
    st->verify_ttl_s = opts->verify_ttl_s;
    st->max_size = opts->max_size;
    st->ttl_s = opts->upload_ttl_s;
    st->stage_batch = opts->stage_batch / CD_STORE_CHUNK * CD_STORE_CHUNK;
    if (st->stage_batch == 0)
        st->stage_batch = STORE_STAGE_BATCH;
    if (st->stage_batch > CD_STORE_STAGE_BATCH_MAX)
        st->stage_batch = CD_STORE_STAGE_BATCH_MAX;
    long pg = sysconf(_SC_PAGESIZE);
    st->page = pg > 0 ? (size_t)pg : 4096;
    int rc = ck_sha256("", 0, st->empty_hash);
    if (rc != 0) {
        cairn_err_set(err, rc, "store: sha256 unavailable");
        goto fail;
    }
    st->q_buf = malloc(STORE_QUEUE_BYTES);
    st->q_set = calloc(2 * STORE_QUEUE_MAX, sizeof *st->q_set);
    st->verified = calloc(STORE_VERIFIED_SLOTS, sizeof *st->verified);
    if (st->q_buf == NULL || st->q_set == NULL || st->verified == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "store: out of memory");
        goto fail;
    }
    if ((rc = store_env_open(st, opts, err)) != 0)
        goto fail;
    if ((rc = store_tables_open(st, err)) != 0)
        goto fail;
    /* Leftovers of a previous run: uploads that never committed and
     * evicted data not yet swept. Both tables list ids, so this costs what
     * was left over, not what is stored. */
    /* A scrub leaves pending alone: they may be a running server's live
     * uploads. */
    if ((!opts->scrub && (rc = store_sweep(st, st->dbi_pending)) != 0) ||
        (rc = store_sweep(st, st->dbi_garbage)) != 0) {
        cairn_err_set(err, rc, "store: cannot remove leftovers: %s",
                      cairn_strerror(rc));
        goto fail;
    }
    if (pthread_create(&st->flusher, NULL, store_flusher_main, st) != 0) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "store: cannot start thread");
        goto fail;
    }
    st->flusher_started = true;
    if (pthread_create(&st->stager, NULL, store_stager_main, st) != 0) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "store: cannot start thread");
        goto fail;
    }
    st->stager_started = true;
    *out = st;
    return 0;
fail:
    cd_store_close(st);
    return rc;
}

void cd_store_close(struct cd_store *st)
{
    if (st == NULL)
        return;
    if (st->flusher_started) {
        pthread_mutex_lock(&st->q_mu);
        st->q_stop = true;
        pthread_cond_signal(&st->q_cond);
        pthread_mutex_unlock(&st->q_mu);
        pthread_join(st->flusher, NULL);
    }
    if (st->stager_started) {
        pthread_mutex_lock(&st->sg_mu);
        st->sg_stop = true;
        pthread_cond_signal(&st->sg_cond);
        pthread_mutex_unlock(&st->sg_mu);
        pthread_join(st->stager, NULL);
    }
    if (st->env != NULL) {
        (void)store_access_flush(st);
        for (size_t i = 0; i < st->npool; i++)
            mdb_txn_abort(st->pool[i]);
        (void)mdb_env_sync(st->env, 1);
        mdb_env_close(st->env);
    }
    free(st->q_buf);
    free(st->q_set);
    free(st->pins);
    free(st->verified);
    pthread_mutex_destroy(&st->vf_mu);
    pthread_mutex_destroy(&st->pool_mu);
    pthread_mutex_destroy(&st->q_mu);
    pthread_cond_destroy(&st->q_cond);
    pthread_mutex_destroy(&st->pin_mu);
    pthread_mutex_destroy(&st->up_mu);
    pthread_mutex_destroy(&st->ctr_mu);
    pthread_mutex_destroy(&st->sg_mu);
    pthread_cond_destroy(&st->sg_cond);
    pthread_cond_destroy(&st->sg_done);
    free(st);
}

/* --- CAS reads -------------------------------------------------------------
 */

int cd_store_find_missing(struct cd_store *st, const char *instance,
                          const struct cd_digest *digests, size_t n,
                          bool *missing)
{
    MDB_txn *txn = NULL;
    int rc = store_rtxn_begin(st, &txn);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        struct store_key k;
        if (store_is_empty(st, &digests[i])) {
            missing[i] = false;
            continue;
        }
        rc = store_key_make(STORE_KIND_BLOB, instance, &digests[i], &k);
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
            rc = store_mdb_err(mrc);
            break;
        }
        missing[i] = mrc == MDB_NOTFOUND;
        if (!missing[i])
            store_touch(st, &k);
    }
    store_rtxn_end(st, txn);
    return rc;
}

/* Copies [off, off + n) of blob id into buf inside txn. When the caller
 * streams a large blob, pages it has consumed are dropped from this
 * process's page tables (they stay in the page cache), so RSS stays small
 * while gigabytes stream out of the map. */
static int store_copy(struct cd_store *st, MDB_txn *txn, uint64_t id,
                      uint64_t size, uint64_t off, uint8_t *buf, size_t n)
{
    while (n > 0) {
        uint32_t idx = (uint32_t)(off / CD_STORE_CHUNK);
        size_t in = (size_t)(off % CD_STORE_CHUNK);
        uint8_t ck[STORE_CHUNK_KEY];
        store_chunk_key(ck, id, idx);
        MDB_val k = {STORE_CHUNK_KEY, ck}, v;
        int rc = mdb_get(txn, st->dbi_chunks, &k, &v);
        if (rc == MDB_NOTFOUND)
            return CAIRN_E_CORRUPT; /* meta says it is there */
        if (rc != 0)
            return store_mdb_err(rc);
        if (v.mv_size <= in)
            return CAIRN_E_CORRUPT;
        size_t take = v.mv_size - in;
        if (take > n)
            take = n;
        memcpy(buf, (const uint8_t *)v.mv_data + in, take);
        if (size >= STORE_MADVISE_MIN && in + take == v.mv_size)
            store_pages_drop(st, &v);
        buf += take;
        off += take;
        n -= take;
    }
    return 0;
}

int cd_store_blob_get(struct cd_store *st, const char *instance,
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
    int rc = store_key_make(STORE_KIND_BLOB, instance, d, &k);
    if (rc != 0)
        return rc == CAIRN_E_INVAL && d->size < 0 ? CAIRN_E_NOTFOUND : rc;
    MDB_txn *txn = NULL;
    if ((rc = store_rtxn_begin(st, &txn)) != 0)
        return rc;
    struct store_meta m = {0, 0, 0};
    uint8_t *p = NULL;
    rc = store_meta_get(st, txn, &k, &m);
    if (rc == 0 && m.size > max)
        rc = CAIRN_E_TOOBIG;
    if (rc == 0 && (p = malloc(m.size ? m.size : 1)) == NULL)
        rc = CAIRN_E_NOMEM;
    if (rc == 0)
        rc = store_copy(st, txn, m.id, m.size, 0, p, (size_t)m.size);
    store_rtxn_end(st, txn);
    if (rc == 0 && !st->verify_off && !store_verified_recently(st, m.id)) {
        struct ck_sha256 *h = NULL;
        if ((rc = ck_sha256_new(&h)) == 0 &&
            (rc = ck_sha256_update(h, p, (size_t)m.size)) == 0)
            rc = store_verify_end(st, &k, m.id, h);
        ck_sha256_free(h);
    }
    if (rc == CAIRN_E_CORRUPT)
        rc = store_corrupt_check(st, &k, m.id, rc);
    if (rc != 0) {
        free(p);
        return rc;
    }
    store_touch(st, &k);
    *data = p;
    return 0;
}

int cd_store_reader_open(struct cd_store *st, const char *instance,
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
    int rc = store_key_make(STORE_KIND_BLOB, instance, d, &r->key);
    if (rc != 0) {
        free(r);
        return d->size < 0 ? CAIRN_E_NOTFOUND : rc;
    }
    MDB_txn *txn = NULL;
    if ((rc = store_rtxn_begin(st, &txn)) != 0) {
        free(r);
        return rc;
    }
    struct store_meta m;
    rc = store_meta_get(st, txn, &r->key, &m);
    store_rtxn_end(st, txn);
    if (rc == 0)
        rc = store_pin(st, m.id);
    if (rc != 0) {
        free(r);
        return rc;
    }
    r->id = m.id;
    r->size = m.size;
    store_touch(st, &r->key);
    *out = r;
    return 0;
}

static int store_reader_check(struct cd_reader *r, uint64_t offset,
                              const void *buf, size_t n);

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
    /* One short read txn per call, not one for the reader's lifetime: a
     * slow client must not pin old pages. The meta lookup tells whether
     * the blob was evicted since the last call (ids are never reused). */
    struct cd_store *st = r->st;
    MDB_txn *txn = NULL;
    int rc = store_rtxn_begin(st, &txn);
    if (rc != 0)
        return rc;
    struct store_meta m;
    rc = store_meta_get(st, txn, &r->key, &m);
    if (rc == 0 && m.id != r->id)
        rc = CAIRN_E_NOTFOUND;
    if (rc == 0)
        rc = store_copy(st, txn, r->id, r->size, offset, buf, n);
    store_rtxn_end(st, txn);
    if (rc == 0)
        rc = store_reader_check(r, offset, buf, n);
    rc = store_corrupt_check(st, &r->key, r->id, rc);
    if (rc != 0)
        return rc;
    *got = n;
    return 0;
}

/* Feeds a read of n bytes at offset, now in buf, to r's verification;
 * returns CAIRN_E_CORRUPT when it completes the blob and the blob does
 * not hash to its digest. */
static int store_reader_check(struct cd_reader *r, uint64_t offset,
                              const void *buf, size_t n)
{
    struct cd_store *st = r->st;
    int rc = 0;
    if (r->bg != NULL) {
        uint8_t got_hash[CK_SHA256_LEN];
        if (offset != r->hashed) {
            (void)store_hasher_join(r, true, got_hash);
        } else if ((r->hashed += n) == r->size) {
            /* The last bytes go out only once the hasher agrees. */
            rc = store_hasher_join(r, false, got_hash);
            if (rc == 0)
                rc = store_verify_hash(st, &r->key, r->id, got_hash);
            if (rc != 0)
                return rc;
        }
    } else if (r->h != NULL) {
        if (offset != r->hashed) {
            /* Not one pass to the end: nothing to verify against. */
            ck_sha256_free(r->h);
            r->h = NULL;
        } else if ((rc = ck_sha256_update(r->h, buf, n)) != 0) {
            return rc;
        } else if ((r->hashed += n) == r->size) {
            rc = store_verify_end(st, &r->key, r->id, r->h);
            ck_sha256_free(r->h);
            r->h = NULL;
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

int cd_reader_verify(struct cd_reader *r, uint64_t offset)
{
    struct cd_store *st = r->st;
    if (r->id == 0 || r->h != NULL || r->bg != NULL || st->verify_off || offset > r->size ||
        offset > CD_STORE_VERIFY_PREFIX_MAX || store_verified_recently(st, r->id))
        return 0;
    if (r->size >= STORE_HASH_ASYNC_MIN && store_hasher_start(r)) {
        r->hashed = offset;
        return 0;
    }
    struct ck_sha256 *h = NULL;
    int rc = ck_sha256_new(&h);
    if (rc != 0)
        return rc;
    if (offset > 0) {
        MDB_txn *txn = NULL;
        if ((rc = store_rtxn_begin(st, &txn)) != 0)
            goto fail;
        struct store_meta m;
        rc = store_meta_get(st, txn, &r->key, &m);
        if (rc == 0 && m.id != r->id)
            rc = CAIRN_E_NOTFOUND;
        if (rc == 0)
            rc = store_hash_range(st, txn, r->id, r->size, 0, offset, h);
        store_rtxn_end(st, txn);
        if (rc != 0)
            goto fail;
    }
    r->h = h;
    r->hashed = offset;
    return 0;
fail:
    ck_sha256_free(h);
    return store_corrupt_check(st, &r->key, r->id, rc);
}

bool cd_reader_verifying(const struct cd_reader *r)
{
    return r->h != NULL || r->bg != NULL;
}

void cd_reader_close(struct cd_reader *r)
{
    if (r == NULL)
        return;
    if (r->bg != NULL) {
        uint8_t unused[CK_SHA256_LEN];
        (void)store_hasher_join(r, true, unused);
    }
    if (r->id != 0)
        store_unpin(r->st, r->id);
    ck_sha256_free(r->h);
    free(r);
}

/* --- uploads ----------------------------------------------------------------
 */

static int store_exists(struct cd_store *st, const struct store_key *k,
                        bool *exists)
{
    MDB_txn *txn = NULL;
    int rc = store_rtxn_begin(st, &txn);
    if (rc != 0)
        return rc;
    MDB_val mk = {k->len, (void *)k->b}, mv;
    rc = mdb_get(txn, st->dbi_entries, &mk, &mv);
    store_rtxn_end(st, txn);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return store_mdb_err(rc);
    *exists = rc == 0;
    return 0;
}

int cd_store_upload_begin(struct cd_store *st, const char *instance,
                          const struct cd_digest *d, struct cd_upload **out)
{
    if (store_is_empty(st, d))
        return CAIRN_E_EXISTS;
    struct store_key k;
    int rc = store_key_make(STORE_KIND_BLOB, instance, d, &k);
    if (rc != 0)
        return rc;
    if (st->max_size != 0 && (uint64_t)d->size > st->max_size)
        return CAIRN_E_FULL;
    bool exists = false;
    if ((rc = store_exists(st, &k, &exists)) != 0)
        return rc;
    if (exists) {
        store_touch(st, &k);
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

/* Allocates u's buffer: one batch when the blob needs more than one chunk
 * and the budget allows, else one chunk (or the whole blob if smaller). */
static int store_buf_alloc(struct cd_upload *u)
{
    struct cd_store *st = u->st;
    uint64_t size = (uint64_t)u->d.size;
    size_t cap = size < CD_STORE_CHUNK ? (size_t)size : CD_STORE_CHUNK;
    if (size > CD_STORE_CHUNK) {
        /* Two buffers' worth: the second is mapped only when the first
         * goes to the stager, which never happens for a blob that fits. */
        size_t want = size < st->stage_batch ? (size_t)size : st->stage_batch;
        pthread_mutex_lock(&st->ctr_mu);
        if (st->stage_used + 2 * want <= STORE_STAGE_BUDGET) {
            st->stage_used += 2 * want;
            u->reserved = 2 * want;
            cap = want;
        }
        pthread_mutex_unlock(&st->ctr_mu);
    }
    u->cap = cap;
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        store_buf_free(u);
        return CAIRN_E_NOMEM;
    }
    u->bufs[0] = u->buf = p;
    return 0;
}

/* Waits until u has no stage in flight; returns that stage's error. */
static int store_stage_wait(struct cd_upload *u)
{
    struct cd_store *st = u->st;
    pthread_mutex_lock(&st->sg_mu);
    while (u->staging)
        pthread_cond_wait(&st->sg_done, &st->sg_mu);
    int rc = u->sg_err;
    pthread_mutex_unlock(&st->sg_mu);
    return rc;
}

/* Hands the full buffer to the stager and switches to the other one (the
 * previous stage has finished: the caller waited). */
static int store_stage_async(struct cd_upload *u)
{
    struct cd_store *st = u->st;
    int other = u->buf == u->bufs[0] ? 1 : 0;
    if (u->bufs[other] == NULL) {
        void *p = mmap(NULL, u->cap, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return CAIRN_E_NOMEM;
        u->bufs[other] = p;
    }
    pthread_mutex_lock(&st->sg_mu);
    u->staging = true;
    u->sg_p = u->buf;
    u->sg_len = u->blen;
    u->sg_next = NULL;
    if (st->sg_tail != NULL)
        st->sg_tail->sg_next = u;
    else
        st->sg_head = u;
    st->sg_tail = u;
    pthread_cond_signal(&st->sg_cond);
    pthread_mutex_unlock(&st->sg_mu);
    u->buf = u->bufs[other];
    u->blen = 0;
    return 0;
}

/* Writes len bytes at p (whole chunks) as u's next chunks in one txn. The
 * first stage also records the upload in "pending" (so a crash leaves a
 * findable leftover) and moves the persisted id allocator past it (so ids
 * are never reused after a crash). Nothing reads staged chunks before the
 * publish txn, which syncs; one fdatasync per batch is what bounds the
 * upload rate (docs/storage.md). */
static int store_stage(struct cd_upload *u, const uint8_t *p, size_t len)
{
    struct cd_store *st = u->st;
    MDB_txn *txn = NULL;
    int rc = store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    uint32_t n = (uint32_t)(len / CD_STORE_CHUNK);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        uint8_t ck[STORE_CHUNK_KEY];
        store_chunk_key(ck, u->id, u->nstaged + i);
        MDB_val k = {STORE_CHUNK_KEY, ck};
        MDB_val v = {CD_STORE_CHUNK, (void *)(p + (size_t)i * CD_STORE_CHUNK)};
        rc = store_mdb_err(mdb_put(txn, st->dbi_chunks, &k, &v, 0));
    }
    if (rc == 0 && !u->pending) {
        uint8_t ik[8];
        store_be64(ik, u->id);
        struct store_pending pr = {(uint64_t)time(NULL), (uint64_t)u->d.size};
        MDB_val pk = {8, ik}, pv = {sizeof pr, &pr};
        rc = store_mdb_err(mdb_put(txn, st->dbi_pending, &pk, &pv, 0));
        struct store_stats_rec s;
        if (rc == 0)
            rc = store_stats_load(st, txn, &s);
        if (rc == 0 && s.next_id <= u->id) {
            s.next_id = u->id + 1;
            rc = store_stats_save(st, txn, &s);
        }
    }
    if (rc == 0)
        rc = store_wtxn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc == 0) {
        u->nstaged += n;
        u->pending = true;
    }
    return rc;
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
    if ((rc = ck_sha256_update(u->h, p, n)) != 0)
        goto poison;
    if (u->buf == NULL && n > 0 && (rc = store_buf_alloc(u)) != 0)
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
            if ((rc = store_stage_wait(u)) != 0 ||
                (rc = store_stage(u, src, take)) != 0)
                goto poison;
        } else {
            memcpy(u->buf + u->blen, src, take);
            u->blen += take;
            if (u->blen == u->cap && more) {
                /* The stager must be done with the other buffer before
                 * it is refilled: this is the upload's backpressure. */
                if ((rc = store_stage_wait(u)) != 0 ||
                    (rc = store_stage_async(u)) != 0)
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
    if (rc == 0 && (rc = store_stage_wait(u)) != 0)
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
    (void)store_stage_wait(u);
    /* After unlisting, maintain cannot reach u any more; u->pending is
     * false if maintain expired it and dropped the chunks itself. */
    if (drop && u->pending)
        (void)store_chunks_drop(st, st->dbi_pending, u->id);
    ck_sha256_free(u->h);
    store_buf_free(u);
    pthread_mutex_destroy(&u->mu);
    free(u);
}

/* The publish txn: everything the blob needs becomes visible at once. */
static int store_publish(struct cd_upload *u, struct store_evicted *ev,
                         bool *dup)
{
    struct cd_store *st = u->st;
    MDB_txn *txn = NULL;
    int rc = store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    struct store_stats_rec s;
    struct store_meta m;
    if ((rc = store_stats_load(st, txn, &s)) != 0)
        goto fail;
    rc = store_meta_get(st, txn, &u->key, &m);
    if (rc == 0) {
        /* A concurrent upload of the same digest won; ours is redundant. */
        *dup = true;
        goto fail;
    }
    if (rc != CAIRN_E_NOTFOUND)
        goto fail;
    uint64_t size = (uint64_t)u->d.size;
    if ((rc = store_evict(st, txn, &s, size, ev)) != 0)
        goto fail;
    /* The rest of the data: whole chunks and a last, shorter one. */
    for (size_t off = 0; off < u->blen; off += CD_STORE_CHUNK) {
        uint8_t ck[STORE_CHUNK_KEY];
        size_t n = u->blen - off < CD_STORE_CHUNK ? u->blen - off : CD_STORE_CHUNK;
        store_chunk_key(ck, u->id, u->nstaged + (uint32_t)(off / CD_STORE_CHUNK));
        MDB_val k = {STORE_CHUNK_KEY, ck}, v = {n, u->buf + off};
        if ((rc = store_mdb_err(mdb_put(txn, st->dbi_chunks, &k, &v, 0))) != 0)
            goto fail;
    }
    m = (struct store_meta){size, s.next_seq++, u->id};
    uint8_t sk[8];
    store_be64(sk, m.seq);
    MDB_val ek = {u->key.len, u->key.b}, ev_ = {sizeof m, &m};
    MDB_val lk = {8, sk}, lv = {u->key.len, u->key.b};
    if ((rc = store_mdb_err(mdb_put(txn, st->dbi_entries, &ek, &ev_, 0))) !=
            0 ||
        (rc = store_mdb_err(mdb_put(txn, st->dbi_lru, &lk, &lv, 0))) != 0)
        goto fail;
    if (u->pending) {
        uint8_t ik[8];
        store_be64(ik, u->id);
        MDB_val pk = {8, ik};
        int prc = mdb_del(txn, st->dbi_pending, &pk, NULL);
        if (prc != 0 && prc != MDB_NOTFOUND) {
            rc = store_mdb_err(prc);
            goto fail;
        }
    }
    s.blobs++;
    s.bytes += size;
    if (s.next_id <= u->id)
        s.next_id = u->id + 1;
    if ((rc = store_stats_save(st, txn, &s)) != 0)
        goto fail;
    if ((rc = store_wtxn_commit(txn)) != 0)
        return rc;
    u->pending = false; /* the chunks belong to the blob now */
    return store_sync(st);
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
        rc = store_stage_wait(u);
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
    struct store_evicted ev = {0, 0};
    bool dup = false;
    rc = store_publish(u, &ev, &dup);
    if (dup) {
        store_touch(st, &u->key);
        rc = 0;
    } else if (rc == 0) {
        /* These are the bytes just hashed on the way in, and still in the
         * page cache: a read within verify_ttl_s need not hash them. */
        store_verified_mark(st, u->id);
    }
    if (ev.blobs > 0) {
        store_evicted_account(st, &ev);
        (void)store_sweep(st, st->dbi_garbage);
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

/* --- action cache ------------------------------------------------------ */

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
        store_touch_n(st, t->k, t->n);
        t->n = 0;
    }
    t->k[t->n++] = *k;
}

int cd_store_ac_get_complete(struct cd_store *st, const char *instance,
                             const struct cd_digest *action,
                             cd_store_refs_fn refs, void *ctx, void **data,
                             size_t *len, size_t *missing)
{
    *missing = SIZE_MAX;
    struct store_key k;
    int rc = store_key_make(STORE_KIND_AC, instance, action, &k);
    if (rc != 0)
        return action->size < 0 ? CAIRN_E_NOTFOUND : rc;
    MDB_txn *txn = NULL;
    if ((rc = store_rtxn_begin(st, &txn)) != 0)
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
    rc = store_mdb_err(mdb_get(txn, st->dbi_ac, &mk, &mv));
    if (rc == 0 && refs != NULL)
        rc = refs(ctx, mv.mv_data, mv.mv_size, &d, &nd);
    for (size_t i = 0; rc == 0 && i < nd; i++) {
        if (store_is_empty(st, &d[i]))
            continue;
        struct store_key bk;
        int krc = store_key_make(STORE_KIND_BLOB, instance, &d[i], &bk);
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
            rc = store_mdb_err(mrc);
        } else {
            store_touches_add(st, &t, &bk);
        }
    }
    if (rc == 0 && (p = malloc(mv.mv_size ? mv.mv_size : 1)) == NULL)
        rc = CAIRN_E_NOMEM;
    if (rc == 0)
        memcpy(p, mv.mv_data, mv.mv_size);
    size_t n = rc == 0 ? mv.mv_size : 0;
    store_rtxn_end(st, txn);
    if (rc != 0)
        return rc;
    store_touch_n(st, t.k, t.n);
    *data = p;
    *len = n;
    return 0;
}

int cd_store_ac_get(struct cd_store *st, const char *instance,
                    const struct cd_digest *action, void **data, size_t *len)
{
    size_t missing;
    return cd_store_ac_get_complete(st, instance, action, NULL, NULL, data,
                                    len, &missing);
}

int cd_store_ac_put(struct cd_store *st, const char *instance,
                    const struct cd_digest *action, const void *data,
                    size_t len)
{
    if (len > CD_STORE_MAX_AC_RESULT)
        return CAIRN_E_TOOBIG;
    struct store_key k;
    int rc = store_key_make(STORE_KIND_AC, instance, action, &k);
    if (rc != 0)
        return rc;
    if (st->max_size != 0 && len > st->max_size)
        return CAIRN_E_FULL;
    MDB_txn *txn = NULL;
    if ((rc = store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn))) != 0)
        return rc;
    struct store_stats_rec s;
    struct store_meta m;
    struct store_evicted ev = {0, 0};
    uint8_t sk[8];
    MDB_val lk = {8, sk}, ek = {k.len, k.b};
    if ((rc = store_stats_load(st, txn, &s)) != 0)
        goto fail;
    rc = store_meta_get(st, txn, &k, &m);
    if (rc == 0) {
        /* Replacing: the old value leaves the LRU and the totals first, so
         * eviction neither counts nor picks it. */
        store_be64(sk, m.seq);
        int drc = mdb_del(txn, st->dbi_lru, &lk, NULL);
        if (drc != 0 && drc != MDB_NOTFOUND) {
            rc = store_mdb_err(drc);
            goto fail;
        }
        s.ac_entries--;
        s.ac_bytes -= m.size;
    } else if (rc != CAIRN_E_NOTFOUND) {
        goto fail;
    }
    if ((rc = store_evict(st, txn, &s, len, &ev)) != 0)
        goto fail;
    m = (struct store_meta){len, s.next_seq++, 0};
    store_be64(sk, m.seq);
    MDB_val mv = {sizeof m, &m}, lv = {k.len, k.b}, av = {len, (void *)data};
    if ((rc = store_mdb_err(mdb_put(txn, st->dbi_ac, &ek, &av, 0))) != 0 ||
        (rc = store_mdb_err(mdb_put(txn, st->dbi_entries, &ek, &mv, 0))) != 0 ||
        (rc = store_mdb_err(mdb_put(txn, st->dbi_lru, &lk, &lv, 0))) != 0)
        goto fail;
    s.ac_entries++;
    s.ac_bytes += len;
    if ((rc = store_stats_save(st, txn, &s)) != 0)
        goto fail;
    if ((rc = store_wtxn_commit(txn)) != 0)
        return rc;
    rc = store_sync(st);
    if (ev.blobs > 0) {
        store_evicted_account(st, &ev);
        (void)store_sweep(st, st->dbi_garbage);
    }
    return rc;
fail:
    mdb_txn_abort(txn);
    return rc;
}

/* --- operations ---------------------------------------------------------- */

void cd_store_stats_get(struct cd_store *st, struct cd_store_stats *out)
{
    memset(out, 0, sizeof *out);
    out->max_size = st->max_size;
    pthread_mutex_lock(&st->ctr_mu);
    out->evictions = st->evictions;
    out->evicted_bytes = st->evicted_bytes;
    out->quarantined = st->quarantined;
    out->quarantined_bytes = st->quarantined_bytes;
    pthread_mutex_unlock(&st->ctr_mu);
    MDB_txn *txn = NULL;
    if (store_rtxn_begin(st, &txn) != 0)
        return;
    struct store_stats_rec s;
    if (store_stats_load(st, txn, &s) == 0) {
        out->blobs = s.blobs;
        out->bytes = s.bytes;
        out->ac_entries = s.ac_entries;
        out->ac_bytes = s.ac_bytes;
    }
    /* mdb_stat reads the table's root record: O(1), no scan. */
    MDB_stat ms;
    if (mdb_stat(txn, st->dbi_chunks, &ms) == 0)
        out->chunks = ms.ms_entries;
    if (mdb_stat(txn, st->dbi_pending, &ms) == 0)
        out->pending_uploads = ms.ms_entries;
    if (mdb_stat(txn, st->dbi_garbage, &ms) == 0)
        out->garbage = ms.ms_entries;
    store_rtxn_end(st, txn);
}

/* --- scrub --------------------------------------------------------------- */

/* Finds the first blob entry after *k (or the first of all when k->len is
 * 0) in txn and copies its key and meta. CAIRN_E_NOTFOUND: no more. */
static int store_blob_next(struct cd_store *st, MDB_txn *txn,
                           struct store_key *k, struct store_meta *m)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, st->dbi_entries, &cur);
    if (rc != 0)
        return store_mdb_err(rc);
    uint8_t first = STORE_KIND_BLOB;
    MDB_val mk = {1, &first}, mv;
    if (k->len > 0)
        mk = (MDB_val){k->len, k->b};
    rc = mdb_cursor_get(cur, &mk, &mv, MDB_SET_RANGE);
    if (rc == 0 && k->len > 0 && mk.mv_size == k->len &&
        memcmp(mk.mv_data, k->b, k->len) == 0)
        rc = mdb_cursor_get(cur, &mk, &mv, MDB_NEXT);
    if (rc == 0 && (mk.mv_size == 0 ||
                    ((const uint8_t *)mk.mv_data)[0] != STORE_KIND_BLOB))
        rc = MDB_NOTFOUND;
    if (rc == 0 && (mk.mv_size > STORE_KEY_MAX ||
                    mk.mv_size < 3 + CK_SHA256_LEN + 8 || mv.mv_size != sizeof *m))
        rc = MDB_CORRUPTED;
    if (rc == 0) {
        k->len = mk.mv_size;
        memcpy(k->b, mk.mv_data, mk.mv_size);
        memcpy(m, mv.mv_data, sizeof *m);
    }
    mdb_cursor_close(cur);
    return store_mdb_err(rc);
}

/* Splits an entry key back into instance (NUL-terminated) and digest. */
static void store_key_split(const struct store_key *k,
                            char instance[CD_STORE_MAX_INSTANCE + 1],
                            struct cd_digest *d)
{
    size_t n = (size_t)k->b[1] << 8 | k->b[2];
    if (n > k->len - 3 - CK_SHA256_LEN - 8)
        n = k->len - 3 - CK_SHA256_LEN - 8;
    memcpy(instance, k->b + 3, n);
    instance[n] = '\0';
    memcpy(d->hash, k->b + k->len - 8 - CK_SHA256_LEN, CK_SHA256_LEN);
    d->size = (int64_t)store_get_be64(k->b + k->len - 8);
}

int cd_store_scrub(struct cd_store *st, cd_store_bad_fn bad, void *ctx,
                   struct cd_store_scrub_stats *out)
{
    struct cd_store_scrub_stats sum = {0, 0, 0, 0};
    struct store_key k = {.len = 0};
    for (;;) {
        /* One read txn per blob: a scrub beside a running server must not
         * pin old pages for the whole walk. */
        MDB_txn *txn = NULL;
        int rc = store_rtxn_begin(st, &txn);
        if (rc != 0)
            return rc;
        struct store_meta m;
        struct ck_sha256 *h = NULL;
        rc = store_blob_next(st, txn, &k, &m);
        if (rc == 0)
            rc = ck_sha256_new(&h);
        if (rc == 0)
            rc = store_hash_range(st, txn, m.id, m.size, 0, m.size, h);
        store_rtxn_end(st, txn);
        if (rc == CAIRN_E_NOTFOUND && h == NULL)
            break;
        if (rc == 0)
            rc = store_verify_end(st, &k, m.id, h);
        rc = store_corrupt_check(st, &k, m.id, rc);
        ck_sha256_free(h);
        sum.blobs++;
        sum.bytes += m.size;
        if (rc == CAIRN_E_CORRUPT) {
            sum.bad++;
            sum.bad_bytes += m.size;
            if (bad != NULL) {
                char instance[CD_STORE_MAX_INSTANCE + 1];
                struct cd_digest d;
                store_key_split(&k, instance, &d);
                bad(ctx, instance, &d);
            }
        } else if (rc != 0) {
            return rc;
        }
    }
    *out = sum;
    return 0;
}

/* Marks idle uploads expired and returns their ids (those with staged
 * chunks) in a malloc'd array. An upload busy in another thread is not
 * idle: trylock skips it rather than waiting. */
static int store_uploads_expire(struct cd_store *st, uint64_t **ids,
                                size_t *nids)
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
            store_buf_free(u); /* the owner may never come back */
        }
        pthread_mutex_unlock(&u->mu);
        u = next;
    }
    pthread_mutex_unlock(&st->up_mu);
    *ids = v;
    *nids = n;
    return rc;
}

int cd_store_maintain(struct cd_store *st)
{
    uint64_t *ids = NULL;
    size_t n = 0;
    int rc = store_uploads_expire(st, &ids, &n);
    for (size_t i = 0; i < n; i++) {
        int drc = store_chunks_drop(st, st->dbi_pending, ids[i]);
        if (rc == 0)
            rc = drc;
    }
    free(ids);
    int frc = store_access_flush(st);
    if (rc == 0)
        rc = frc;
    int grc = store_sweep(st, st->dbi_garbage);
    if (rc == 0)
        rc = grc;
    return rc;
}
