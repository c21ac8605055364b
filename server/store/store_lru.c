/* The store's LRU, kept cheap for readers: a read only queues the entry
 * key in memory; the flusher thread (or a writer about to evict) writes
 * the queued accesses into the "lru" table in batches. */
#include "server/store/store_txn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define STORE_QUEUE_FLUSH 1024 /* the flusher wakes up past this */
#define STORE_FLUSH_PERIOD_S 5 /* and at least this often */
#define STORE_APPLY_BATCH 2048 /* access updates per write txn */

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
void cd_store_touch_n(struct cd_store *st, const struct store_key *k, size_t n)
{
    pthread_mutex_lock(&st->q_mu);
    for (size_t i = 0; i < n; i++)
        store_touch_locked(st, &k[i]);
    pthread_mutex_unlock(&st->q_mu);
}

void cd_store_touch(struct cd_store *st, const struct store_key *k)
{
    cd_store_touch_n(st, k, 1);
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
    int rc = cd_store_meta_get(st, txn, &k, &m);
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
        return cd_store_mdb_err(rc);
    m.seq = s->next_seq++;
    store_be64(sk, m.seq);
    MDB_val lv = {klen, k.b};
    rc = mdb_put(txn, st->dbi_lru, &lk, &lv, 0);
    if (rc != 0)
        return cd_store_mdb_err(rc);
    MDB_val ek = {klen, k.b}, ev = {sizeof m, &m};
    return cd_store_mdb_err(mdb_put(txn, st->dbi_entries, &ek, &ev, 0));
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
int cd_store_access_flush(struct cd_store *st)
{
    pthread_mutex_lock(&st->q_mu);
    size_t batches = (st->q_n + STORE_APPLY_BATCH - 1) / STORE_APPLY_BATCH;
    pthread_mutex_unlock(&st->q_mu);
    int rc = 0;
    for (size_t b = 0; rc == 0 && b < batches; b++) {
        MDB_txn *txn = NULL;
        rc = cd_store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn));
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
            rc = cd_store_stats_load(st, txn, &s);
        if (rc == 0)
            rc = store_access_apply(st, txn, &s, q, len, &off, SIZE_MAX);
        rc = cd_store_wtxn_end(st, txn, &s, rc);
        free(q);
    }
    return rc;
}

/* The flusher thread: the read path only queues accesses; this thread
 * writes them when the queue has grown or every few seconds, so the LRU in
 * LMDB is seconds behind at most and the queue rarely overflows. */
void *cd_store_flusher_main(void *arg)
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
        (void)cd_store_access_flush(st); /* best effort: LRU order only */
        pthread_mutex_lock(&st->q_mu);
    }
    pthread_mutex_unlock(&st->q_mu);
    return NULL;
}

/* Before evicting, a writer applies what is queued in its own txn, so the
 * entries read most recently are not the ones chosen, at no extra sync. */
int cd_store_access_apply_all(struct cd_store *st, MDB_txn *txn,
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
