#include "client/store/index.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The map starts small and doubles whenever a write finds it full
 * (cairn_index_grow): a fixed reservation large enough for any store
 * (16 GiB before) made every command fail under a `ulimit -v` below it,
 * as the whole map is address space. LMDB rounds the initial size up to
 * the data already in the file, so an existing store opens at its size. */
#define INDEX_MAP_INITIAL ((size_t)64 << 20)
/* Past this the map does not grow: a client index is keys, tags and the
 * stat cache, far below it. */
#define INDEX_MAP_MAX ((size_t)1 << 40)
#define INDEX_MAX_DBS 32

struct cairn_index {
    MDB_env *env;
    size_t txnid_open; /* last committed txn when opened */
    /* The last committed txn a cairn_index_sync found and made durable
     * (0: none); set from any thread. */
    _Atomic size_t txnid_synced;
    /* Held shared by every transaction begun through this module and
     * exclusively while the map is remapped: LMDB requires that no
     * transaction of the process be active then. */
    pthread_rwlock_t map_lock;
    /* A remap failed and the old size could not be mapped again either:
     * the environment has no map, every transaction is refused. */
    bool broken;
};

int cairn_root_path(char *buf, size_t len)
{
    const char *root = getenv("CAIRN_ROOT");
    int n;
    if (root != NULL && root[0] != '\0') {
        n = snprintf(buf, len, "%s", root);
    } else if (geteuid() == 0) {
        n = snprintf(buf, len, "/var/lib/cairn");
    } else {
        const char *xdg = getenv("XDG_DATA_HOME");
        const char *home = getenv("HOME");
        if (xdg != NULL && xdg[0] != '\0')
            n = snprintf(buf, len, "%s/cairn", xdg);
        else
            n = snprintf(buf, len, "%s/.local/share/cairn", home ? home : ".");
    }
    if (n < 0 || (size_t)n >= len)
        return CAIRN_E_TOOBIG;
    if (buf[0] == '/')
        return 0;
    /* A relative root (CAIRN_ROOT=store) is made absolute here, once: the
     * RUN sandbox changes directory before it mounts the overlay from
     * snapshot paths under the root, where a relative path names nothing. */
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) == NULL)
        return CAIRN_E_TOOBIG;
    char rel[4096];
    if ((size_t)n >= sizeof rel)
        return CAIRN_E_TOOBIG;
    memcpy(rel, buf, (size_t)n + 1);
    n = snprintf(buf, len, "%s/%s", cwd, rel);
    return n < 0 || (size_t)n >= len ? CAIRN_E_TOOBIG : 0;
}

/* mkdir -p for the store's directories: the missing ones are created
 * 0700, as everything under the root is the store's own (docs/store.md,
 * "Modes"). */
static int mkdir_p(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp)
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int cairn_index_open(const char *root, struct cairn_index **out,
                     struct cairn_err *err)
{
    char dir[4096];
    int n = snprintf(dir, sizeof dir, "%s/index", root);
    if (n < 0 || (size_t)n >= sizeof dir)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "store path too long: %s", root);
    int rc = mkdir_p(dir);
    if (rc)
        return cairn_err_set(err, rc, "cannot create %s: %s", dir,
                             cairn_strerror(rc));
    struct cairn_index *idx = calloc(1, sizeof *idx);
    if (idx == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    /* glibc's default rwlock prefers readers, so a thread may take the
     * shared side again while it holds it (a stat cache lookup inside a
     * store transaction) even with a remap waiting: never a deadlock. */
    if (pthread_rwlock_init(&idx->map_lock, NULL) != 0) {
        free(idx);
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    }
    int mrc = mdb_env_create(&idx->env);
    if (mrc == 0)
        mrc = mdb_env_set_maxdbs(idx->env, INDEX_MAX_DBS);
    if (mrc == 0)
        mrc = mdb_env_set_mapsize(idx->env, INDEX_MAP_INITIAL);
    /* MDB_NOMETASYNC: a commit fdatasyncs its data pages but writes the
     * meta page without waiting for it, so each commit costs one disk flush
     * instead of two. LMDB keeps the database intact after a power loss
     * (the meta page only ever points at synced pages); what may be lost is
     * the newest commit, until the next commit's flush or the sync in
     * cairn_index_close. A kill -9 loses nothing: the write is in the page
     * cache. Why that is enough for the store: docs/store.md. */
    if (mrc == 0)
        mrc = mdb_env_open(idx->env, dir, MDB_NOTLS | MDB_NOMETASYNC, 0600);
    if (mrc != 0) {
        /* An environment whose open failed has no map: nothing but
         * mdb_env_close may touch it (mdb_env_info would read the meta
         * page through a NULL map). */
        if (mrc == ENOMEM)
            rc = cairn_err_set(err, -ENOMEM,
                               "cannot map the index in %s: out of address "
                               "space (ulimit -v?)",
                               dir);
        else
            rc = cairn_err_set(err, mrc > 0 ? -mrc : CAIRN_E_DB,
                               "cannot open the index in %s: %s", dir,
                               mdb_strerror(mrc));
        if (idx->env != NULL)
            mdb_env_close(idx->env);
        pthread_rwlock_destroy(&idx->map_lock);
        free(idx);
        return rc;
    }
    MDB_envinfo info;
    if (mdb_env_info(idx->env, &info) == 0)
        idx->txnid_open = info.me_last_txnid;
    *out = idx;
    return 0;
}

/* Remaps the environment at size bytes, under the exclusive lock. A failed remap leaves LMDB without a map
 * (mdb_env_map clears it) and set_mapsize cannot map again by itself, so
 * the address space is probed first: an anonymous reservation of the
 * growth, made while the old map is still there, fails with ENOMEM where
 * the remap would. Returns 0 or an LMDB code. */
static int index_remap(struct cairn_index *idx, size_t size)
{
    if (idx->broken)
        return MDB_PANIC;
    MDB_envinfo info;
    int mrc = mdb_env_info(idx->env, &info);
    if (mrc != 0)
        return mrc;
    if (size > info.me_mapsize) {
        size_t delta = size - info.me_mapsize;
        void *p = mmap(NULL, delta, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            return errno;
        munmap(p, delta);
    }
    mrc = mdb_env_set_mapsize(idx->env, size);
    if (mrc != 0 && mrc != EINVAL)
        idx->broken = true; /* EINVAL: refused before unmapping */
    return mrc;
}

int cairn_index_grow(struct cairn_index *idx, struct cairn_err *err)
{
    pthread_rwlock_wrlock(&idx->map_lock);
    MDB_envinfo info;
    int mrc = idx->broken ? MDB_PANIC : mdb_env_info(idx->env, &info);
    size_t next = 0;
    if (mrc == 0 && info.me_mapsize >= INDEX_MAP_MAX) {
        pthread_rwlock_unlock(&idx->map_lock);
        return cairn_err_set(err, CAIRN_E_FULL,
                             "the index is full: %zu MiB, the most it grows to",
                             info.me_mapsize >> 20);
    }
    if (mrc == 0) {
        next = info.me_mapsize > INDEX_MAP_MAX / 2 ? INDEX_MAP_MAX
                                                    : info.me_mapsize * 2;
        mrc = index_remap(idx, next);
    }
    pthread_rwlock_unlock(&idx->map_lock);
    if (mrc == ENOMEM)
        return cairn_err_set(err, -ENOMEM,
                             "the index needs a %zu MiB map: out of address "
                             "space (ulimit -v?)",
                             next >> 20);
    if (mrc != 0)
        return cairn_err_set(err, mrc > 0 ? -mrc : CAIRN_E_DB,
                             "cannot grow the index map: %s",
                             mdb_strerror(mrc));
    return 0;
}

int cairn_index_txn_begin(struct cairn_index *idx, unsigned flags,
                          MDB_txn **txn)
{
    for (int tries = 0;; tries++) {
        pthread_rwlock_rdlock(&idx->map_lock);
        int mrc = idx->broken ? MDB_PANIC
                              : mdb_txn_begin(idx->env, NULL, flags, txn);
        if (mrc == 0)
            return 0; /* the shared lock is held until the txn ends */
        pthread_rwlock_unlock(&idx->map_lock);
        /* Another process grew the file past our map: map enough for
         * its data, once. Not LMDB's "size 0, adopt the recorded size":
         * an older cairn records 16 GiB, which is what ulimit -v refuses. */
        if (mrc != MDB_MAP_RESIZED || tries > 0)
            return mrc;
        pthread_rwlock_wrlock(&idx->map_lock);
        MDB_envinfo info;
        MDB_stat stat;
        mrc = idx->broken ? MDB_PANIC : mdb_env_info(idx->env, &info);
        if (mrc == 0)
            mrc = mdb_env_stat(idx->env, &stat);
        if (mrc == 0) {
            size_t need = (info.me_last_pgno + 1) * (size_t)stat.ms_psize;
            size_t size = info.me_mapsize;
            while (size < need && size < INDEX_MAP_MAX)
                size *= 2;
            mrc = index_remap(idx, size);
        }
        pthread_rwlock_unlock(&idx->map_lock);
        if (mrc != 0)
            return mrc;
    }
}

int cairn_index_txn_commit(struct cairn_index *idx, MDB_txn *txn)
{
    int mrc = mdb_txn_commit(txn);
    pthread_rwlock_unlock(&idx->map_lock);
    return mrc;
}

void cairn_index_txn_abort(struct cairn_index *idx, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&idx->map_lock);
}

void cairn_index_guard_enter(struct cairn_index *idx)
{
    pthread_rwlock_rdlock(&idx->map_lock);
}

void cairn_index_guard_leave(struct cairn_index *idx)
{
    pthread_rwlock_unlock(&idx->map_lock);
}

size_t cairn_index_mapsize(struct cairn_index *idx)
{
    MDB_envinfo info;
    pthread_rwlock_rdlock(&idx->map_lock);
    size_t size = 0;
    if (!idx->broken && mdb_env_info(idx->env, &info) == 0)
        size = info.me_mapsize;
    pthread_rwlock_unlock(&idx->map_lock);
    return size;
}

/* The last committed txn, or 0 when unknown. */
static size_t last_txnid(struct cairn_index *idx)
{
    MDB_envinfo info;
    pthread_rwlock_rdlock(&idx->map_lock);
    size_t id = 0;
    if (!idx->broken && mdb_env_info(idx->env, &info) == 0)
        id = info.me_last_txnid;
    pthread_rwlock_unlock(&idx->map_lock);
    return id;
}

int cairn_index_sync(struct cairn_index *idx)
{
    if (idx->broken)
        return CAIRN_E_DB;
    /* Read before the flush: every commit up to it is durable after. */
    size_t id = last_txnid(idx);
    int mrc = mdb_env_sync(idx->env, 1);
    if (mrc == 0 && id != 0)
        atomic_store(&idx->txnid_synced, id);
    return mrc == 0 ? 0 : mrc > 0 ? -mrc : CAIRN_E_DB;
}

bool cairn_index_unsynced(struct cairn_index *idx)
{
    size_t id = last_txnid(idx);
    return id != 0 && id != idx->txnid_open &&
           id != atomic_load(&idx->txnid_synced);
}

MDB_env *cairn_index_env(struct cairn_index *idx)
{
    return idx->env;
}

void cairn_index_close(struct cairn_index *idx)
{
    if (idx == NULL)
        return;
    /* Make the last commit durable before the process reports success
     * (MDB_NOMETASYNC deferred its meta page); nothing to do when no
     * transaction was committed since open, by us or anyone, or when a
     * sync made the last one durable already (an image's commit syncs
     * while index.json is written, store_index_json_write). A broken
     * environment has no map to read the meta page from. */
    if (cairn_index_unsynced(idx))
        (void)mdb_env_sync(idx->env, 1);
    mdb_env_close(idx->env);
    pthread_rwlock_destroy(&idx->map_lock);
    free(idx);
}
