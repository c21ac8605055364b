/* cairnd's LMDB store: open and close, the environment and its tables,
 * stats and periodic maintenance (the bottom, store_txn.c, has the txns).
 * docs/storage.md describes the tables, the upload protocol, eviction and
 * the durability argument; store_txn.h lists the other parts. The
 * comments here say why the code is shaped as it is. */
#include "server/store/store_txn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_MAP_SLACK (1ull << 30)
#define STORE_MAP_UNCAPPED (1ull << 40)
#define STORE_MAX_READERS 1024
/* An upload buffers this much and stages it in one write txn: the cost of
 * a staging txn is mostly its fdatasync, and a disk writes 8-16 MiB per
 * sync several times faster than 1 MiB. 16 MiB measured no faster here
 * and costs 25 MB more per upload (two buffers plus LMDB's dirty pages;
 * docs/storage.md). */
#define STORE_STAGE_BATCH CD_STORE_STAGE_BATCH_DEFAULT

/* --- open / close ------------------------------------------------------- */

static int store_dbi_open(MDB_txn *txn, const char *name, MDB_dbi *out)
{
    return cd_store_mdb_err(mdb_dbi_open(txn, name, MDB_CREATE, out));
}

static int store_env_open(struct cd_store *st, const struct cd_store_opts *o,
                          struct cairn_err *err)
{
    int rc = mdb_env_create(&st->env);
    if (rc != 0)
        return cairn_err_set(err, cd_store_mdb_err(rc), "lmdb: %s",
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
     * page is synced by cd_store_sync before anything is acknowledged. */
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
        return cairn_err_set(err, cd_store_mdb_err(rc), "lmdb open %s: %s",
                             o->dir, mdb_strerror(rc));
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
    int rc = cd_store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn));
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
    rc = cd_store_stats_load(st, txn, &s);
    if (rc == 0 && s.schema != STORE_SCHEMA) {
        mdb_txn_abort(txn);
        return cairn_err_set(err, CAIRN_E_DB,
                             "store schema %u, this cairnd reads %u",
                             (unsigned)s.schema, STORE_SCHEMA);
    }
    if ((rc = cd_store_wtxn_end(st, txn, &s, rc)) != 0)
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
    pthread_mutex_init(&st->stats_mu, NULL);
    st->on_stage = opts->on_stage;
    st->on_stage_ctx = opts->on_stage_ctx;
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
    if ((!opts->scrub && (rc = cd_store_sweep(st, st->dbi_pending)) != 0) ||
        (rc = cd_store_sweep(st, st->dbi_garbage)) != 0) {
        cairn_err_set(err, rc, "store: cannot remove leftovers: %s",
                      cairn_strerror(rc));
        goto fail;
    }
    if (pthread_create(&st->flusher, NULL, cd_store_flusher_main, st) != 0) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "store: cannot start thread");
        goto fail;
    }
    st->flusher_started = true;
    if (pthread_create(&st->stager, NULL, cd_store_stager_main, st) != 0) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "store: cannot start thread");
        goto fail;
    }
    st->stager_started = true;
    if (cd_group_open(cd_store_group_run, cd_store_group_sync, st,
                      STORE_GROUP_ITEMS, STORE_GROUP_BYTES, &st->group) != 0) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "store: cannot start thread");
        goto fail;
    }
    if ((rc = cd_store_tier_open(st, opts, cd_store_tier_upload_keep, err)) != 0)
        goto fail;
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
    /* First: the bucket tier's threads may still be storing into LMDB
     * (through the group). */
    cd_store_tier_close(st);
    /* Nothing is queued (every upload is done), but a batch may still be
     * publishing. */
    cd_group_close(st->group);
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
        (void)cd_store_access_flush(st);
        for (size_t i = 0; i < st->npool; i++)
            mdb_txn_abort(st->pool[i]);
        if (st->stats_txn != NULL)
            mdb_txn_abort(st->stats_txn);
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
    pthread_mutex_destroy(&st->stats_mu);
    pthread_mutex_destroy(&st->sg_mu);
    pthread_cond_destroy(&st->sg_cond);
    pthread_cond_destroy(&st->sg_done);
    free(st);
}

/* --- operations ---------------------------------------------------------- */

void cd_store_stats_get(struct cd_store *st, struct cd_store_stats *out)
{
    memset(out, 0, sizeof *out);
    cd_store_tier_stats(st, out);
    out->max_size = st->max_size;
    out->evictions = atomic_load_explicit(&st->evictions, memory_order_relaxed);
    out->evicted_bytes = atomic_load_explicit(&st->evicted_bytes, memory_order_relaxed);
    out->quarantined = atomic_load_explicit(&st->quarantined, memory_order_relaxed);
    out->quarantined_bytes = atomic_load_explicit(&st->quarantined_bytes, memory_order_relaxed);
    /* Not the pool (pool_mu is taken by every read): a txn of its own,
     * begun once (LMDB's reader-table lock, once) and renewed after. */
    pthread_mutex_lock(&st->stats_mu);
    MDB_txn *txn = st->stats_txn;
    st->stats_txn = NULL;
    if (txn != NULL && mdb_txn_renew(txn) != 0) {
        mdb_txn_abort(txn);
        txn = NULL;
    }
    if (txn == NULL && mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn) != 0) {
        pthread_mutex_unlock(&st->stats_mu);
        return;
    }
    struct store_stats_rec s;
    if (cd_store_stats_load(st, txn, &s) == 0) {
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
    mdb_txn_reset(txn);
    st->stats_txn = txn;
    pthread_mutex_unlock(&st->stats_mu);
}

int cd_store_maintain(struct cd_store *st)
{
    uint64_t *ids = NULL;
    size_t n = 0;
    int rc = cd_store_uploads_expire(st, &ids, &n);
    for (size_t i = 0; i < n; i++) {
        int drc = cd_store_chunks_drop(st, st->dbi_pending, ids[i]);
        if (rc == 0)
            rc = drc;
    }
    free(ids);
    int frc = cd_store_access_flush(st);
    if (rc == 0)
        rc = frc;
    int grc = cd_store_sweep(st, st->dbi_garbage);
    if (rc == 0)
        rc = grc;
    return rc;
}
