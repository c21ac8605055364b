#include "index.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Large and sparse: LMDB only uses disk for pages it writes, and a map that
 * is too small would fail writes long before the disk is full. */
#define INDEX_MAP_SIZE ((size_t)16 << 30)
#define INDEX_MAX_DBS 32

struct cairn_index {
    MDB_env *env;
    size_t txnid_open; /* last committed txn when opened */
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
    return n < 0 || (size_t)n >= len ? CAIRN_E_TOOBIG : 0;
}

/* mkdir -p for the store's directories. */
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
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
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
        return CAIRN_E_NOMEM;
    int mrc = mdb_env_create(&idx->env);
    if (mrc == 0)
        mrc = mdb_env_set_maxdbs(idx->env, INDEX_MAX_DBS);
    if (mrc == 0)
        mrc = mdb_env_set_mapsize(idx->env, INDEX_MAP_SIZE);
    /* MDB_NOMETASYNC: a commit fdatasyncs its data pages but writes the
     * meta page without waiting for it, so each commit costs one disk flush
     * instead of two. LMDB keeps the database intact after a power loss
     * (the meta page only ever points at synced pages); what may be lost is
     * the newest commit, until the next commit's flush or the sync in
     * cairn_index_close. A kill -9 loses nothing: the write is in the page
     * cache. Why that is enough for the store: docs/store.md. */
    if (mrc == 0)
        mrc = mdb_env_open(idx->env, dir, MDB_NOTLS | MDB_NOMETASYNC, 0644);
    if (mrc != 0) {
        rc = cairn_err_set(err, mrc > 0 ? -mrc : CAIRN_E_DB,
                           "cannot open the index in %s: %s", dir,
                           mdb_strerror(mrc));
        cairn_index_close(idx);
        return rc;
    }
    MDB_envinfo info;
    if (mdb_env_info(idx->env, &info) == 0)
        idx->txnid_open = info.me_last_txnid;
    *out = idx;
    return 0;
}

int cairn_index_sync(struct cairn_index *idx)
{
    int mrc = mdb_env_sync(idx->env, 1);
    return mrc == 0 ? 0 : mrc > 0 ? -mrc : CAIRN_E_DB;
}

MDB_env *cairn_index_env(struct cairn_index *idx)
{
    return idx->env;
}

void cairn_index_close(struct cairn_index *idx)
{
    if (idx == NULL)
        return;
    if (idx->env) {
        /* Make the last commit durable before the process reports success
         * (MDB_NOMETASYNC deferred its meta page); nothing to do when no
         * transaction was committed since open, by us or anyone. */
        MDB_envinfo info;
        if (mdb_env_info(idx->env, &info) == 0 &&
            info.me_last_txnid != idx->txnid_open)
            (void)mdb_env_sync(idx->env, 1);
        mdb_env_close(idx->env);
    }
    free(idx);
}
