/* Opening and closing a local store (client/store/store.h): the root and
 * its directories made private, the store lock's file, the LMDB index and
 * its databases, oci-layout and a first index.json; and the handle's
 * accessors. The files themselves are client/store/store.c. */
#include "client/store/store.h"
#include "client/store/store_impl.h"

#include "cachekey/statcache.h"
#include "client/store/index.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int mkdir_one(const char *path, mode_t mode)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* The store holds image content as it will be inside containers: setuid
 * binaries, device nodes, files of every mode. Reachable by another local
 * user, that is a root shell (a setuid-root binary from any layer) and the
 * host's devices; so nothing under the root is reachable but by its owner
 * (Docker keeps /var/lib/docker 0710 for the same reason, CVE-2021-41091).
 * The root is made 0700, and so is every directory the store creates in
 * it; layer contents keep their own modes below that. A store made by an
 * older cairn (0755) is closed up when its owner opens it; a root owned by
 * someone else is left as it is, as it is not ours to change. */
#define STORE_DIR_MODE 0700

static int root_close_up(const char *root, struct cairn_err *err)
{
    struct stat sb;
    if (lstat(root, &sb) != 0)
        return cairn_err_set(err, -errno, "cannot stat %s: %s", root,
                             strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return cairn_err_set(err, CAIRN_E_INVAL, "store root %s: not a directory",
                             root);
    if (sb.st_uid != geteuid() || (sb.st_mode & 077) == 0)
        return 0;
    if (chmod(root, sb.st_mode & 07700) != 0)
        return cairn_err_set(err, -errno, "cannot make %s private: %s", root,
                             strerror(errno));
    return 0;
}

/* Writes root/name with content unless it exists (by rename, so a reader
 * sees all of it or nothing). */
static int file_create_once(struct cairn_store *st, const char *name,
                            const char *content, struct cairn_err *err)
{
    char final[STORE_PATH_MAX], tmp[STORE_PATH_MAX];
    if (store_path_fmt(final, sizeof final, st->root, "/", name))
        return cairn_err_set(err, CAIRN_E_TOOBIG, "path too long");
    if (access(final, F_OK) == 0)
        return 0;
    int rc = store_tmp_write(st, name, content, strlen(content), true, tmp,
                       sizeof tmp);
    if (!rc) {
        rc = store_rename_noreplace(tmp, final);
        if (rc == CAIRN_E_EXISTS) {
            unlink(tmp);
            rc = 0;
        }
    }
    if (rc)
        return cairn_err_set(err, rc, "cannot create %s: %s", final,
                             cairn_strerror(rc));
    return 0;
}

int cairn_store_open(const char *root, struct cairn_store **out,
                     struct cairn_err *err)
{
    static const char *const dirs[] = {"", "/blobs", "/blobs/sha256",
                                       "/snapshots", "/tmp"};
    char p[STORE_PATH_MAX];
    int rc;
    if (strlen(root) > STORE_PATH_MAX - 256)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "store path too long: %s",
                             root);
    /* The root itself may need parents ($XDG_DATA_HOME/cairn): ordinary
     * directories, that hold nothing of the store. */
    memcpy(p, root, strlen(root) + 1);
    for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir_one(p, 0755);
        *s = '/';
    }
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        store_path_fmt(p, sizeof p, root, dirs[i], NULL);
        if ((rc = mkdir_one(p, STORE_DIR_MODE)) != 0)
            return cairn_err_set(err, rc, "cannot create %s: %s", p,
                                 cairn_strerror(rc));
    }
    if ((rc = root_close_up(root, err)) != 0)
        return rc;

    struct cairn_store *st = calloc(1, sizeof *st);
    if (st == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    st->lock_fd = -1;
    atomic_init(&st->blobs_unsynced, false);
    pthread_mutex_init(&st->lock_mu, NULL);
    pthread_mutex_init(&st->pending_mu, NULL);
    pthread_mutex_init(&st->sc_mu, NULL);
    st->root = strdup(root);
    store_path_fmt(p, sizeof p, root, "/tmp", NULL);
    st->tmpdir = strdup(p);
    if (st->root == NULL || st->tmpdir == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto fail;
    }
    store_path_fmt(p, sizeof p, root, "/store.lock", NULL);
    st->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->lock_fd < 0) {
        rc = cairn_err_set(err, -errno, "cannot open %s: %s", p,
                           strerror(errno));
        goto fail;
    }
    rc = cairn_index_open(root, &st->idx, err);
    if (rc)
        goto fail;
    st->env = cairn_index_env(st->idx);
    rc = store_dbs_open(st, err);
    if (rc)
        goto fail;
    rc = file_create_once(st, "oci-layout",
                          "{\"imageLayoutVersion\":\"1.0.0\"}", err);
    if (rc)
        goto fail;
    store_path_fmt(p, sizeof p, root, "/index.json", NULL);
    if (access(p, F_OK) != 0 && (rc = store_index_json_write(st, err)) != 0)
        goto fail;
    *out = st;
    return 0;
fail:
    cairn_store_close(st);
    return rc;
}

void cairn_store_close(struct cairn_store *st)
{
    if (st == NULL)
        return;
    /* Best effort: keys that still wait (their commit failed at unlock)
     * are only a cache of the shared cache's entries. */
    struct cairn_err err;
    cairn_err_clear(&err);
    if (st->env != NULL)
        (void)store_pending_commit(st, &err);
    store_pending_free(st);
    store_blobs_sync(st);
    store_index_json_release_wait(st);
    cairn_index_close(st->idx);
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* also drops any flock */
    pthread_mutex_destroy(&st->lock_mu);
    pthread_mutex_destroy(&st->pending_mu);
    pthread_mutex_destroy(&st->sc_mu);
    free(st->root);
    free(st->tmpdir);
    free(st);
}

const char *cairn_store_root(const struct cairn_store *st)
{
    return st->root;
}

MDB_env *cairn_store_env(struct cairn_store *st)
{
    return st->env;
}

static int store_map_grow(void *st)
{
    return cairn_index_grow(((struct cairn_store *)st)->idx, NULL);
}

static void store_map_enter(void *st)
{
    cairn_index_guard_enter(((struct cairn_store *)st)->idx);
}

static void store_map_leave(void *st)
{
    cairn_index_guard_leave(((struct cairn_store *)st)->idx);
}

int cairn_store_statcache_open(struct cairn_store *st,
                               struct ck_statcache **out,
                               struct cairn_err *err)
{
    struct ck_statcache *sc = NULL;
    /* Opening reads the map too (it looks the database up). */
    cairn_index_guard_enter(st->idx);
    int rc = ck_statcache_open(st->env, &sc, err);
    cairn_index_guard_leave(st->idx);
    if (rc)
        return rc;
    ck_statcache_set_guard(sc, store_map_enter, store_map_leave, st);
    ck_statcache_set_grow(sc, store_map_grow, st);
    /* The first one opened rides in the store's commits: a build's stat
     * cache entries go into its image's transaction instead of a commit
     * (a disk flush) of their own. */
    pthread_mutex_lock(&st->sc_mu);
    if (st->sc == NULL) {
        st->sc = sc;
        ck_statcache_set_defer(sc, true);
    }
    pthread_mutex_unlock(&st->sc_mu);
    *out = sc;
    return 0;
}

void cairn_store_statcache_close(struct cairn_store *st,
                                 struct ck_statcache *sc)
{
    if (sc == NULL)
        return;
    pthread_mutex_lock(&st->sc_mu);
    if (st->sc == sc)
        st->sc = NULL;
    pthread_mutex_unlock(&st->sc_mu);
    ck_statcache_close(sc);
}

const char *cairn_store_tmpdir(const struct cairn_store *st)
{
    return st->tmpdir;
}

