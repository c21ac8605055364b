/* Upload buffers and the stager thread: an upload fills one buffer while
 * the stager writes the other as chunks in one write txn, so receiving
 * and hashing overlap with the disk (docs/storage.md). */
#include "server/store/store_txn.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* All uploads' batch buffers together stay below this; an upload that
 * finds the budget spent stages chunk by chunk, as before batching. */
#define STORE_STAGE_BUDGET (4ull * CD_STORE_STAGE_BATCH_MAX)
/* Buffers this big or bigger are mapped (freeing them gives the memory
 * back at once); smaller ones, only ever of blobs under one chunk, come
 * from the heap. */
#define STORE_BUF_MMAP_MIN CD_STORE_CHUNK

/* Value of the "pending" table: one staged upload. */
struct store_pending {
    uint64_t created; /* wall clock seconds, for people reading the file */
    uint64_t size;
};

/* Frees u's data buffers (no stage in flight) and gives the batch budget
 * back. */
void cd_store_buf_free(struct cd_upload *u)
{
    for (int i = 0; i < 2; i++) {
        if (u->bufs[i] != NULL && u->cap < STORE_BUF_MMAP_MIN)
            free(u->bufs[i]);
        else if (u->bufs[i] != NULL)
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

/* Allocates u's buffer: one batch when the blob needs more than one chunk
 * and the budget allows, else one chunk (or the whole blob if smaller). */
int cd_store_buf_alloc(struct cd_upload *u)
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
    /* A blob smaller than a chunk is one buffer that is never staged: the
     * heap is much cheaper for it than a map of its own (whose munmap
     * costs every core a TLB flush, per small blob). */
    void *p = cap < STORE_BUF_MMAP_MIN
                  ? malloc(cap)
                  : mmap(NULL, cap, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == NULL || p == MAP_FAILED) {
        cd_store_buf_free(u);
        return CAIRN_E_NOMEM;
    }
    u->bufs[0] = u->buf = p;
    return 0;
}

/* Waits until u has no stage in flight; returns that stage's error. */
int cd_store_stage_wait(struct cd_upload *u)
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
int cd_store_stage_async(struct cd_upload *u)
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
int cd_store_stage(struct cd_upload *u, const uint8_t *p, size_t len)
{
    struct cd_store *st = u->st;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    MDB_txn *txn = NULL;
    int rc = cd_store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    uint32_t n = (uint32_t)(len / CD_STORE_CHUNK);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        uint8_t ck[STORE_CHUNK_KEY];
        store_chunk_key(ck, u->id, u->nstaged + i);
        MDB_val k = {STORE_CHUNK_KEY, ck};
        MDB_val v = {CD_STORE_CHUNK, (void *)(p + (size_t)i * CD_STORE_CHUNK)};
        rc = cd_store_mdb_err(mdb_put(txn, st->dbi_chunks, &k, &v, 0));
    }
    if (rc == 0 && !u->pending) {
        uint8_t ik[8];
        store_be64(ik, u->id);
        struct store_pending pr = {(uint64_t)time(NULL), (uint64_t)u->d.size};
        MDB_val pk = {8, ik}, pv = {sizeof pr, &pr};
        rc = cd_store_mdb_err(mdb_put(txn, st->dbi_pending, &pk, &pv, 0));
        struct store_stats_rec s;
        if (rc == 0)
            rc = cd_store_stats_load(st, txn, &s);
        if (rc == 0 && s.next_id <= u->id) {
            s.next_id = u->id + 1;
            rc = cd_store_stats_save(st, txn, &s);
        }
    }
    if (rc == 0)
        rc = cd_store_wtxn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc == 0) {
        u->nstaged += n;
        u->pending = true;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (st->on_stage != NULL)
            st->on_stage(st->on_stage_ctx, (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000LL +
                                                      (t1.tv_nsec - t0.tv_nsec)));
    }
    return rc;
}

/* The stager thread: writes queued upload buffers, one txn each, in the
 * order they were queued. */
void *cd_store_stager_main(void *arg)
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
        int rc = cd_store_stage(u, u->sg_p, u->sg_len);
        pthread_mutex_lock(&st->sg_mu);
        u->sg_err = rc;
        u->staging = false;
        pthread_cond_broadcast(&st->sg_done);
    }
    pthread_mutex_unlock(&st->sg_mu);
    return NULL;
}
