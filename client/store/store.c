/* The local store: an OCI image layout plus an LMDB index (see store.h for
 * the layout and docs/store.md for the reasons).
 *
 * Truth lives in two places that never disagree for long:
 *   - files under blobs/ and snapshots/, which appear only by rename from
 *     tmp/, so a final name always holds complete, fsync'd content;
 *   - LMDB (index/), which holds the key index, the image records and the
 *     tags. index.json is a view of the image records and tags, rewritten
 *     after every change; it is never read back.
 *
 * Prune, the one place that deletes, is client/store/store_prune.c; its
 * opening comment gives the rule.
 *
 * LMDB errors are translated here and nowhere else (store_mdb_err,
 * store_mdb_fail).
 */
#include "client/store/store.h"
#include "client/store/store_impl.h"
#include "client/store/json.h"

#include "cachekey/digest.h"
#include "common/fdio.h"
#include "client/store/image.h"
#include "client/store/index.h"
#include "common/buf.h"
#include "common/strvec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STORE_DB_KEYS "keys"
#define STORE_DB_RESULTS "results"
#define STORE_DB_TAGS "tags"
#define STORE_DB_IMAGES "images"
#define STORE_DB_LASTBUILD "lastbuild"
/* Image records are small JSON; anything bigger is corrupt. */
#define STORE_RECORD_MAX (1u << 20)
/* A snapshot deeper than this is not removed in one go (each level holds
 * a directory descriptor); real layers are far shallower. */
#define STORE_TREE_DEPTH_MAX 512

#define ANN_REF_NAME "org.opencontainers.image.ref.name"
#define ANN_CAIRN_REF "io.cairn.image.ref"

/* ------------------------------------------------------------------ */
/* helpers                                                              */

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

/* The map grows on demand (client/store/index.c): a write transaction that
 * failed with CAIRN_E_FULL (store_mdb_err's MDB_MAP_FULL; LMDB has aborted
 * or the caller has aborted it) is run again after the map doubled. True
 * when the caller is to run it again; false leaves *rc as it was, or the
 * growth's error when the map could not grow. */
bool store_map_grown(struct cairn_store *st, int *rc, struct cairn_err *err)
{
    if (*rc != CAIRN_E_FULL)
        return false;
    int g = cairn_index_grow(st->idx, err);
    if (g)
        *rc = g;
    return g == 0;
}

static int write_one_txn(struct cairn_store *st, MDB_dbi dbi, MDB_val *k,
                         MDB_val *v, const char *what, struct cairn_err *err)
{
    MDB_txn *txn;
    int mrc = cairn_index_txn_begin(st->idx, 0, &txn);
    if (mrc)
        return store_mdb_fail(err, mrc, "begin");
    mrc = v ? mdb_put(txn, dbi, k, v, 0) : mdb_del(txn, dbi, k, NULL);
    if (mrc) {
        cairn_index_txn_abort(st->idx, txn);
        if (mrc == MDB_NOTFOUND && v == NULL)
            return CAIRN_E_NOTFOUND;
        return store_mdb_fail(err, mrc, what);
    }
    mrc = cairn_index_txn_commit(st->idx, txn);
    return mrc ? store_mdb_fail(err, mrc, what) : 0;
}

/* One put (v not NULL) or delete (v NULL) of k in dbi, in its own write
 * transaction; what names the record in errors. A delete of a missing
 * key returns CAIRN_E_NOTFOUND without touching err: the caller decides
 * whether that is an error. */
int store_write_one(struct cairn_store *st, MDB_dbi dbi, MDB_val *k, MDB_val *v,
                    const char *what, struct cairn_err *err)
{
    int rc;
    do
        rc = write_one_txn(st, dbi, k, v, what, err);
    while (store_map_grown(st, &rc, err));
    return rc;
}

int store_path_fmt(char *buf, size_t len, const char *a, const char *b,
                   const char *c)
{
    int n = snprintf(buf, len, "%s%s%s", a, b ? b : "", c ? c : "");
    return n < 0 || (size_t)n >= len ? CAIRN_E_TOOBIG : 0;
}

/* "sha256:" + 64 lowercase hex; *hex points at the hex part. */
bool store_digest_ok(const char *d)
{
    if (d == NULL || strncmp(d, "sha256:", 7) != 0)
        return false;
    const char *h = d + 7;
    for (int i = 0; i < CK_SHA256_HEX_LEN; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return false;
    return h[CK_SHA256_HEX_LEN] == '\0';
}

int store_digest_bin(const char *d, uint8_t bin[CK_SHA256_LEN])
{
    if (!store_digest_ok(d))
        return CAIRN_E_INVAL;
    return ck_hex_decode(d + 7, bin);
}

void store_digest_str(const uint8_t bin[CK_SHA256_LEN],
                      char out[CAIRN_DIGEST_STR_LEN])
{
    char hex[CK_SHA256_HEX_LEN + 1];
    ck_hex_encode(bin, hex);
    snprintf(out, CAIRN_DIGEST_STR_LEN, "sha256:%s", hex);
}

static int copy_digest(char dst[CAIRN_DIGEST_STR_LEN], const char *src)
{
    if (!store_digest_ok(src))
        return CAIRN_E_INVAL;
    memcpy(dst, src, strlen(src) + 1);
    return 0;
}

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

/* Makes a durable rename durable: the directory entry itself. */
static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Makes the names of the blobs added since the last call durable: one
 * fsync of blobs/sha256 for all of them. Called before any commit that
 * can name a blob (key_put_many, image_add) and at close, so a record
 * never names a blob that a power loss could take away; the blob's
 * content was fsync'd before its rename (blob_add_file). */
void store_blobs_sync(struct cairn_store *st)
{
    if (!atomic_exchange(&st->blobs_unsynced, false))
        return;
    char dir[STORE_PATH_MAX];
    store_path_fmt(dir, sizeof dir, st->root, "/blobs/sha256", NULL);
    fsync_dir(dir);
}

/* rename that never replaces: an existing final name wins. Returns 0,
 * CAIRN_E_EXISTS or -errno. */
static int rename_noreplace(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EEXIST || errno == ENOTEMPTY)
        return CAIRN_E_EXISTS;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    /* The file system cannot refuse to replace; link() creates a name
     * atomically or fails with EEXIST (files only; directories are
     * renamed, and a non-empty target makes rename fail). */
    struct stat sb;
    if (lstat(from, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (rename(from, to) == 0)
            return 0;
        return errno == EEXIST || errno == ENOTEMPTY ? CAIRN_E_EXISTS : -errno;
    }
    if (link(from, to) != 0)
        return errno == EEXIST ? CAIRN_E_EXISTS : -errno;
    unlink(from);
    return 0;
}

/* Creates a file in tmp/ holding data, mode 0644, fsync'd when durable is
 * set (a caller that hands it to cairn_store_blob_add_file, which fsyncs
 * it, passes false). *path gets its name. */
static int tmp_write(const struct cairn_store *st, const char *prefix,
                     const void *data, size_t len, bool durable, char *path,
                     size_t plen)
{
    int n = snprintf(path, plen, "%s/%s-XXXXXX", st->tmpdir, prefix);
    if (n < 0 || (size_t)n >= plen)
        return CAIRN_E_TOOBIG;
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = cairn_write_all(fd, data, len);
    if (!rc && fchmod(fd, 0644) != 0)
        rc = -errno;
    if (!rc && durable && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && !rc)
        rc = -errno;
    if (rc)
        unlink(path);
    return rc;
}

/* Walks the tree at dirfd/name (not following symlinks), adding the size
 * of everything but directories to *bytes, and removes it when remove is
 * set. Directories without owner rwx (a layer may have r-x ones) are
 * opened up first, as rm -rf would. Best effort: returns the first
 * error but keeps going. */
int store_tree_walk(int dirfd, const char *name, bool remove, uint64_t *bytes,
                    int depth)
{
    struct stat sb;
    if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(sb.st_mode)) {
        *bytes += (uint64_t)sb.st_size;
        if (remove && unlinkat(dirfd, name, 0) != 0 && errno != ENOENT)
            return -errno;
        return 0;
    }
    if (depth > STORE_TREE_DEPTH_MAX)
        return -ELOOP;
    if (remove && (sb.st_mode & S_IRWXU) != S_IRWXU)
        fchmodat(dirfd, name, (sb.st_mode & 07777) | S_IRWXU, 0);
    int fd =
        openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int e = -errno;
        close(fd);
        return e;
    }
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int r = store_tree_walk(fd, de->d_name, remove, bytes, depth + 1);
        if (r && !rc)
            rc = r;
    }
    closedir(d);
    if (remove && unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && !rc &&
        errno != ENOENT)
        rc = -errno;
    return rc;
}

/* ------------------------------------------------------------------ */
/* open / close                                                         */

static int dbs_open_txn(struct cairn_store *st, struct cairn_err *err)
{
    MDB_txn *txn = NULL;
    int mrc = cairn_index_txn_begin(st->idx, 0, &txn);
    if (mrc == 0)
        mrc = mdb_dbi_open(txn, STORE_DB_KEYS, MDB_CREATE, &st->db_keys);
    if (mrc == 0)
        mrc = mdb_dbi_open(txn, STORE_DB_RESULTS, MDB_CREATE,
                           &st->db_results);
    if (mrc == 0)
        mrc = mdb_dbi_open(txn, STORE_DB_TAGS, MDB_CREATE, &st->db_tags);
    if (mrc == 0)
        mrc = mdb_dbi_open(txn, STORE_DB_IMAGES, MDB_CREATE, &st->db_images);
    if (mrc == 0)
        mrc = mdb_dbi_open(txn, STORE_DB_LASTBUILD, MDB_CREATE,
                           &st->db_lastbuild);
    if (mrc == 0) {
        mrc = cairn_index_txn_commit(st->idx, txn);
        return mrc ? store_mdb_fail(err, mrc, "open databases") : 0;
    }
    if (txn)
        cairn_index_txn_abort(st->idx, txn);
    return store_mdb_fail(err, mrc, "open databases");
}

static int dbs_open(struct cairn_store *st, struct cairn_err *err)
{
    int rc;
    do
        rc = dbs_open_txn(st, err);
    while (store_map_grown(st, &rc, err));
    return rc;
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
    int rc = tmp_write(st, name, content, strlen(content), true, tmp,
                       sizeof tmp);
    if (!rc) {
        rc = rename_noreplace(tmp, final);
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
    rc = dbs_open(st, err);
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
    store_blobs_sync(st);
    cairn_index_close(st->idx);
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* also drops any flock */
    pthread_mutex_destroy(&st->lock_mu);
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
    *out = sc;
    return 0;
}

const char *cairn_store_tmpdir(const struct cairn_store *st)
{
    return st->tmpdir;
}

/* ------------------------------------------------------------------ */
/* the store lock                                                       */

int store_flock_mode(int fd, enum lock_mode m)
{
    int op = m == LOCK_EXCL ? LOCK_EX : m == LOCK_SHARED ? LOCK_SH : LOCK_UN;
    while (flock(fd, op) != 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

int cairn_store_lock(struct cairn_store *st, bool exclusive,
                     struct cairn_err *err)
{
    enum lock_mode want = exclusive ? LOCK_EXCL : LOCK_SHARED;
    int rc = 0;
    pthread_mutex_lock(&st->lock_mu);
    if (st->lock_mode == LOCK_NONE) {
        /* Blocking while holding the mutex only delays other threads of
         * this process that want the same lock anyway. */
        rc = store_flock_mode(st->lock_fd, want);
        if (!rc) {
            st->lock_mode = want;
            st->lock_depth = 1;
        }
    } else if (st->lock_mode == want) {
        st->lock_depth++;
    } else {
        rc = CAIRN_E_INVAL;
    }
    pthread_mutex_unlock(&st->lock_mu);
    if (rc == CAIRN_E_INVAL)
        return cairn_err_set(err, rc,
                             "store already locked in the other "
                             "mode by this process");
    if (rc)
        return cairn_err_set(err, rc, "cannot lock the store: %s",
                             cairn_strerror(rc));
    return 0;
}

void cairn_store_unlock(struct cairn_store *st)
{
    pthread_mutex_lock(&st->lock_mu);
    if (st->lock_depth > 0 && --st->lock_depth == 0) {
        store_flock_mode(st->lock_fd, LOCK_NONE);
        st->lock_mode = LOCK_NONE;
    }
    pthread_mutex_unlock(&st->lock_mu);
}

/* Writers of blobs and snapshots need at least the shared lock, or prune
 * could delete what they have written before it is referenced. */
static int lock_implicit(struct cairn_store *st, struct cairn_err *err)
{
    int rc = 0;
    pthread_mutex_lock(&st->lock_mu);
    if (st->lock_mode == LOCK_NONE) {
        rc = store_flock_mode(st->lock_fd, LOCK_SHARED);
        if (!rc) {
            st->lock_mode = LOCK_SHARED;
            st->lock_depth = 1;
        }
    }
    pthread_mutex_unlock(&st->lock_mu);
    if (rc)
        return cairn_err_set(err, rc, "cannot lock the store: %s",
                             cairn_strerror(rc));
    return 0;
}

/* ------------------------------------------------------------------ */
/* blobs                                                                */

int cairn_store_blob_path(const struct cairn_store *st, const char *digest,
                          char *buf, size_t len)
{
    if (!store_digest_ok(digest))
        return CAIRN_E_INVAL;
    return store_path_fmt(buf, len, st->root, "/blobs/sha256/", digest + 7);
}

bool cairn_store_blob_has(const struct cairn_store *st, const char *digest)
{
    char p[STORE_PATH_MAX];
    return cairn_store_blob_path(st, digest, p, sizeof p) == 0 &&
           access(p, F_OK) == 0;
}

int cairn_store_blob_add_file(struct cairn_store *st, const char *tmp_path,
                              const char *digest, struct cairn_err *err)
{
    char final[STORE_PATH_MAX];
    int rc = cairn_store_blob_path(st, digest, final, sizeof final);
    if (rc) {
        unlink(tmp_path);
        return cairn_err_set(err, rc, "bad blob digest \"%s\"", digest);
    }
    rc = lock_implicit(st, err);
    if (rc) {
        unlink(tmp_path);
        return rc;
    }
    /* The content must be on disk before the name is, or a power loss
     * could leave a short file under a final name. */
    int fd = open(tmp_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = cairn_err_set(err, -errno, "cannot open %s: %s", tmp_path,
                           strerror(errno));
        unlink(tmp_path);
        return rc;
    }
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (!rc)
        rc = rename_noreplace(tmp_path, final);
    if (rc == CAIRN_E_EXISTS) {
        /* Same digest, same bytes: the blob already there wins. */
        unlink(tmp_path);
        return 0;
    }
    if (rc) {
        unlink(tmp_path);
        return cairn_err_set(err, rc, "cannot store blob %s: %s", digest,
                             cairn_strerror(rc));
    }
    /* Its name is made durable by the next store_blobs_sync, before anything
     * records it: one directory flush for a whole fetch or image. */
    atomic_store(&st->blobs_unsynced, true);
    return 0;
}

int cairn_store_blob_add_data(struct cairn_store *st, const void *data,
                              size_t len, char digest[CAIRN_DIGEST_STR_LEN],
                              struct cairn_err *err)
{
    uint8_t bin[CK_SHA256_LEN];
    char d[CAIRN_DIGEST_STR_LEN], tmp[STORE_PATH_MAX];
    int rc = ck_sha256(data, len, bin);
    if (rc)
        return cairn_err_set(err, rc, "sha256 failed");
    store_digest_str(bin, d);
    if (cairn_store_blob_has(st, d)) {
        memcpy(digest, d, sizeof d);
        return 0;
    }
    rc = lock_implicit(st, err);
    if (rc)
        return rc;
    /* Not fsync'd here: blob_add_file fsyncs it before the rename, and a
     * second flush of the same file would cost another journal commit. */
    rc = tmp_write(st, "blob", data, len, false, tmp, sizeof tmp);
    if (rc)
        return cairn_err_set(err, rc, "cannot write a blob in %s: %s",
                             st->tmpdir, cairn_strerror(rc));
    rc = cairn_store_blob_add_file(st, tmp, d, err);
    if (!rc)
        memcpy(digest, d, sizeof d);
    return rc;
}

int cairn_store_blob_read(struct cairn_store *st, const char *digest,
                          size_t max, char **data, size_t *len,
                          struct cairn_err *err)
{
    char p[STORE_PATH_MAX];
    uint8_t want[CK_SHA256_LEN], got[CK_SHA256_LEN];
    if (cairn_store_blob_path(st, digest, p, sizeof p) ||
        store_digest_bin(digest, want))
        return cairn_err_set(err, CAIRN_E_INVAL, "bad blob digest \"%s\"",
                             digest ? digest : "");
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return cairn_err_set(err, CAIRN_E_NOTFOUND, "blob %s not found",
                                 digest);
        return cairn_err_set(err, -errno, "cannot open %s: %s", p,
                             strerror(errno));
    }
    int rc = 0;
    char *buf = NULL;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        rc = cairn_err_set(err, -errno, "cannot stat %s", p);
        goto out;
    }
    if ((uint64_t)sb.st_size > max) {
        rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                           "blob %s has %lld bytes, more than %zu", digest,
                           (long long)sb.st_size, max);
        goto out;
    }
    size_t n = (size_t)sb.st_size, got_n = 0;
    buf = malloc(n + 1);
    if (buf == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    while (got_n < n) {
        ssize_t r = read(fd, buf + got_n, n - got_n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = cairn_err_set(err, r < 0 ? -errno : CAIRN_E_IO,
                               "cannot read %s", p);
            goto out;
        }
        got_n += (size_t)r;
    }
    buf[n] = '\0';
    rc = ck_sha256(buf, n, got);
    if (rc) {
        cairn_err_set(err, rc, "sha256 failed");
        goto out;
    }
    if (memcmp(want, got, sizeof want) != 0) {
        rc = cairn_err_set(err, CAIRN_E_DIGEST,
                           "blob %s is corrupt (its content does not match "
                           "its digest)",
                           digest);
        goto out;
    }
    *data = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------ */
/* the key index                                                        */

/* A key record, packed (76 bytes): version, flags (bit 0: empty), media
 * type code, pad, size (int64 little endian), layer digest, diff_id. */
#define KEYREC_VERSION 1
#define KEYREC_LEN 76

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
    uint8_t k[CK_SHA256_LEN];
    if (key_hex == NULL || strlen(key_hex) != CK_SHA256_HEX_LEN ||
        ck_hex_decode(key_hex, k))
        return CAIRN_E_INVAL;
    MDB_txn *txn;
    int mrc = cairn_index_txn_begin(st->idx, MDB_RDONLY, &txn);
    if (mrc)
        return store_mdb_err(mrc);
    MDB_val kv = {sizeof k, k}, v;
    struct cairn_layer_rec r;
    mrc = mdb_get(txn, st->db_keys, &kv, &v);
    int rc = mrc ? store_mdb_err(mrc) : store_keyrec_unpack(&v, &r);
    cairn_index_txn_abort(st->idx, txn);
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

static int keys_put_txn(struct cairn_store *st, const char *const key_hex[],
                        const struct cairn_layer_rec *const rec[], size_t n,
                        struct cairn_err *err);

int cairn_store_key_put_many(struct cairn_store *st,
                             const char *const key_hex[],
                             const struct cairn_layer_rec *const rec[],
                             size_t n, struct cairn_err *err)
{
    uint8_t k[CK_SHA256_LEN], val[KEYREC_LEN];
    int rc;
    for (size_t i = 0; i < n; i++) {
        if (key_hex[i] == NULL || strlen(key_hex[i]) != CK_SHA256_HEX_LEN ||
            ck_hex_decode(key_hex[i], k))
            return cairn_err_set(err, CAIRN_E_INVAL, "bad cache key \"%s\"",
                                 key_hex[i] ? key_hex[i] : "");
        if (keyrec_pack(rec[i], val))
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "bad layer record for key %s", key_hex[i]);
    }
    if (n == 0)
        return 0;
    store_blobs_sync(st);
    do
        rc = keys_put_txn(st, key_hex, rec, n, err);
    while (store_map_grown(st, &rc, err));
    return rc;
}

static int keys_put_txn(struct cairn_store *st, const char *const key_hex[],
                        const struct cairn_layer_rec *const rec[], size_t n,
                        struct cairn_err *err)
{
    uint8_t k[CK_SHA256_LEN], val[KEYREC_LEN];
    MDB_txn *txn;
    int mrc = cairn_index_txn_begin(st->idx, 0, &txn);
    if (mrc)
        return store_mdb_fail(err, mrc, "begin");
    for (size_t i = 0; i < n; i++) {
        /* Checked by the caller: cannot fail here. */
        (void)ck_hex_decode(key_hex[i], k);
        (void)keyrec_pack(rec[i], val);
        MDB_val kv = {sizeof k, k}, v = {sizeof val, val};
        mrc = mdb_put(txn, st->db_keys, &kv, &v, 0);
        if (mrc) {
            cairn_index_txn_abort(st->idx, txn);
            return store_mdb_fail(err, mrc, "put key");
        }
    }
    mrc = cairn_index_txn_commit(st->idx, txn);
    return mrc ? store_mdb_fail(err, mrc, "commit key") : 0;
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
/* references                                                           */

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

/* A path component: lowercase alphanumerics joined by ".", "_", "__" or
 * runs of "-" (the distribution reference grammar). */
static bool component_ok(const char *s, size_t n)
{
    if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (is_lower_alnum(c) || c == '-')
            continue;
        if (c == '.' || c == '_') {
            if (c == '_' && s[i + 1] == '_' && i + 1 < n)
                i++;
            if (!is_lower_alnum(s[i + 1]))
                return false;
            continue;
        }
        return false;
    }
    return true;
}

/* A registry host: letters, digits, "-" and ".", an optional ":port". */
static bool domain_ok(const char *s, size_t n)
{
    size_t i = 0;
    for (; i < n && s[i] != ':'; i++) {
        char c = s[i];
        if (!(is_lower_alnum(c) || is_upper(c) || c == '-' || c == '.'))
            return false;
    }
    if (i == 0)
        return false;
    if (i < n) {
        if (i + 1 == n)
            return false;
        for (i++; i < n; i++)
            if (s[i] < '0' || s[i] > '9')
                return false;
    }
    return true;
}

static bool tag_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > STORE_TAG_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        bool w = is_lower_alnum(c) || is_upper(c) || c == '_';
        if (!w && (i == 0 || (c != '.' && c != '-')))
            return false;
    }
    return true;
}

int cairn_store_ref_normalize(const char *ref, char *buf, size_t len,
                              struct cairn_err *err)
{
    if (ref == NULL || ref[0] == '\0')
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: empty");
    if (strchr(ref, '@'))
        return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                             "invalid reference \"%s\": references by "
                             "digest are not supported",
                             ref);
    size_t n = strlen(ref);
    if (n > STORE_NAME_MAX + 1 + STORE_TAG_MAX)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: \"%.40s...\" is too "
                             "long",
                             ref);
    const char *slash = strrchr(ref, '/');
    const char *colon = strrchr(slash ? slash : ref, ':');
    size_t name_n = colon ? (size_t)(colon - ref) : n;
    const char *tag = colon ? colon + 1 : "latest";
    const char *name = ref;
    /* Docker's "familiar" form: the default registry and its library/
     * namespace are implied. */
    if (name_n > 10 && strncmp(name, "docker.io/", 10) == 0) {
        name += 10;
        name_n -= 10;
        if (name_n > 8 && strncmp(name, "library/", 8) == 0 &&
            memchr(name + 8, '/', name_n - 8) == NULL) {
            name += 8;
            name_n -= 8;
        }
    }
    if (name_n == 0 || name_n > STORE_NAME_MAX)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: \"%s\"", ref);
    /* Check component by component; the first may be a registry host
     * when more follow and it looks like one. */
    const char *p = name, *end = name + name_n;
    bool first = true;
    while (p <= end) {
        const char *s = memchr(p, '/', (size_t)(end - p));
        size_t cn = s ? (size_t)(s - p) : (size_t)(end - p);
        bool host = first && s != NULL &&
                    (memchr(p, '.', cn) || memchr(p, ':', cn) ||
                     (cn == 9 && memcmp(p, "localhost", 9) == 0));
        bool ok = host ? domain_ok(p, cn) : component_ok(p, cn);
        if (!ok) {
            for (size_t i = 0; !host && i < cn; i++)
                if (is_upper(p[i]))
                    return cairn_err_set(err, CAIRN_E_INVAL,
                                         "invalid reference format: "
                                         "repository name (%.*s) must be "
                                         "lowercase",
                                         (int)name_n, name);
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "invalid reference format: \"%s\"", ref);
        }
        first = false;
        if (s == NULL)
            break;
        p = s + 1;
    }
    if (!tag_ok(tag))
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: bad tag \"%s\"", tag);
    int w = snprintf(buf, len, "%.*s:%s", (int)name_n, name, tag);
    if (w < 0 || (size_t)w >= len)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "reference too long");
    return 0;
}

/* The fully qualified form of a stored ref ("x:1" ->
 * "docker.io/library/x:1"), as containerd writes io.containerd.image.name. */
static int ref_full(const char *ref, struct cairn_buf *out)
{
    const char *slash = strchr(ref, '/');
    size_t cn = slash ? (size_t)(slash - ref) : 0;
    bool host = slash && (memchr(ref, '.', cn) || memchr(ref, ':', cn) ||
                          (cn == 9 && memcmp(ref, "localhost", 9) == 0));
    if (host)
        return cairn_buf_puts(out, ref);
    return cairn_buf_printf(out, "docker.io/%s%s", slash ? "" : "library/",
                            ref);
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
/* index.json                                                           */

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

static json_t *descriptor(const struct imgrec *r, const char *ref)
{
    char d[CAIRN_DIGEST_STR_LEN];
    store_digest_str(r->manifest, d);
    json_t *j = json_pack("{s:s,s:s,s:I}", "mediaType", r->media_type, "digest",
                          d, "size", (json_int_t)r->manifest_size);
    if (j == NULL || ref == NULL)
        return j;
    struct cairn_buf full;
    cairn_buf_init(&full, 0);
    json_t *ann = NULL;
    if (ref_full(ref, &full) == 0)
        ann =
            json_pack("{s:s,s:s}", ANN_CAIRN_REF, full.data, ANN_REF_NAME, ref);
    cairn_buf_free(&full);
    if (ann == NULL || json_object_set_new(j, "annotations", ann) != 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Builds the OCI index of every image: one descriptor per tag (ref.name
 * = the stored ref, which is what `skopeo inspect oci:ROOT:name:tag`
 * matches), one without annotations per dangling image. */
static int index_json_build(struct cairn_store *st, char **out)
{
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    struct taglist tags = {0};
    json_t *manifests = json_array();
    int mrc = cairn_index_txn_begin(st->idx, MDB_RDONLY, &txn);
    if (mrc) {
        json_decref(manifests);
        return store_mdb_err(mrc);
    }
    int rc = store_taglist_load(st, txn, &tags);
    if (!rc && manifests == NULL)
        rc = CAIRN_E_NOMEM;
    if (!rc)
        rc = store_mdb_err(mdb_cursor_open(txn, st->db_images, &cur));
    MDB_val k, v;
    for (mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
         mrc == 0 && !rc; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct imgrec r;
        if (store_imgrec_decode(&k, &v, &r))
            continue;
        bool tagged = false;
        for (size_t i = 0; i < tags.n && !rc; i++) {
            if (memcmp(tags.v[i].manifest, r.manifest, CK_SHA256_LEN))
                continue;
            tagged = true;
            if (json_array_append_new(manifests, descriptor(&r, tags.v[i].ref)))
                rc = CAIRN_E_NOMEM;
        }
        if (!tagged && !rc &&
            json_array_append_new(manifests, descriptor(&r, NULL)))
            rc = CAIRN_E_NOMEM;
        store_imgrec_clear(&r);
    }
    if (cur)
        mdb_cursor_close(cur);
    cairn_index_txn_abort(st->idx, txn);
    store_taglist_free(&tags);
    json_t *idx = NULL;
    if (!rc) {
        idx = json_pack("{s:i,s:s,s:o}", "schemaVersion", 2, "mediaType",
                        CAIRN_MEDIA_INDEX, "manifests", manifests);
        manifests = NULL;
        *out = idx ? json_dumps(idx, JSON_INDENT(2)) : NULL;
        if (*out == NULL)
            rc = CAIRN_E_NOMEM;
    }
    json_decref(manifests);
    json_decref(idx);
    return rc;
}

/* Opens root/index.lock and takes it exclusively. Returns the fd or
 * -errno. */
int store_index_lock(struct cairn_store *st)
{
    char p[STORE_PATH_MAX];
    if (store_path_fmt(p, sizeof p, st->root, "/index.lock", NULL))
        return CAIRN_E_TOOBIG;
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = store_flock_mode(fd, LOCK_EXCL);
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

/* Rewrites index.json from LMDB. The state is read after the lock is
 * taken, so whichever writer renames last wrote the newest state: two
 * processes that change tags at once cannot lose each other's change. */
int store_index_json_write(struct cairn_store *st, struct cairn_err *err)
{
    char tmp[STORE_PATH_MAX], final[STORE_PATH_MAX];
    char *json = NULL;
    int fd = store_index_lock(st);
    if (fd < 0)
        return cairn_err_set(err, fd, "cannot lock index.json: %s",
                             cairn_strerror(fd));
    int rc = index_json_build(st, &json);
    if (!rc)
        rc = tmp_write(st, "index.json", json, strlen(json), true, tmp,
                       sizeof tmp);
    if (!rc) {
        store_path_fmt(final, sizeof final, st->root, "/index.json", NULL);
        if (rename(tmp, final) != 0) {
            rc = -errno;
            unlink(tmp);
        }
    }
    free(json);
    close(fd);
    if (rc)
        return cairn_err_set(err, rc, "cannot write %s/index.json: %s",
                             st->root, cairn_strerror(rc));
    return 0;
}

/* ------------------------------------------------------------------ */
/* snapshots                                                            */

/* The final name of layer's snapshot in final (STORE_PATH_MAX), checked
 * to fit len bytes for the caller. */
static int snapshot_final(const struct cairn_store *st,
                          const struct cairn_layer_desc *layer, char *final,
                          size_t len, struct cairn_err *err)
{
    if (!store_digest_ok(layer->diff_id))
        return cairn_err_set(err, CAIRN_E_INVAL, "bad layer digests");
    if (store_path_fmt(final, STORE_PATH_MAX, st->root, "/snapshots/",
                 layer->diff_id + 7) ||
        strlen(final) >= len)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "snapshot path too long");
    return 0;
}

int cairn_store_snapshot_stage(struct cairn_store *st, char *buf, size_t len,
                               struct cairn_err *err)
{
    char tmp[STORE_PATH_MAX];
    int rc = lock_implicit(st, err);
    if (rc)
        return rc;
    int n = snprintf(tmp, sizeof tmp, "%s/snap-XXXXXX", st->tmpdir);
    if (n < 0 || (size_t)n >= sizeof tmp || (size_t)n >= len)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "snapshot path too long");
    if (mkdtemp(tmp) == NULL)
        return cairn_err_set(err, -errno, "cannot create a directory in %s",
                             st->tmpdir);
    /* mkdtemp makes 0700; the root of a layer is 0755. */
    if (chmod(tmp, 0755) != 0) {
        rc = -errno;
        rmdir(tmp);
        return cairn_err_set(err, rc, "chmod %s: %s", tmp, cairn_strerror(rc));
    }
    memcpy(buf, tmp, (size_t)n + 1);
    return 0;
}

void cairn_store_snapshot_discard(struct cairn_store *st, const char *dir)
{
    (void)st;
    uint64_t ignored = 0;
    if (dir != NULL && dir[0] != '\0')
        store_tree_walk(AT_FDCWD, dir, true, &ignored, 0);
}

int cairn_store_snapshot_adopt(struct cairn_store *st,
                               const struct cairn_layer_desc *layer,
                               const char *dir, char *path, size_t len,
                               struct cairn_err *err)
{
    char final[STORE_PATH_MAX];
    int rc = snapshot_final(st, layer, final, len, err);
    if (!rc)
        rc = lock_implicit(st, err);
    if (!rc) {
        rc = rename_noreplace(dir, final);
        if (rc == CAIRN_E_EXISTS) {
            /* Another process (or an earlier unpack) made it first: use
             * theirs, which is the same tree. */
            cairn_store_snapshot_discard(st, dir);
            rc = 0;
        } else if (rc) {
            cairn_err_set(err, rc, "cannot rename %s to %s: %s", dir, final,
                          cairn_strerror(rc));
        }
    }
    if (rc) {
        cairn_store_snapshot_discard(st, dir);
        return rc;
    }
    memcpy(path, final, strlen(final) + 1);
    return 0;
}

int cairn_store_snapshot(struct cairn_store *st,
                         const struct cairn_layer_desc *layer, char *path,
                         size_t len, struct cairn_err *err)
{
    char final[STORE_PATH_MAX], blob[STORE_PATH_MAX], tmp[STORE_PATH_MAX];
    int rc = snapshot_final(st, layer, final, len, err);
    if (rc)
        return rc;
    if (cairn_store_blob_path(st, layer->digest, blob, sizeof blob))
        return cairn_err_set(err, CAIRN_E_INVAL, "bad layer digests");
    rc = lock_implicit(st, err);
    if (rc)
        return rc;
    struct stat sb;
    if (stat(final, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        memcpy(path, final, strlen(final) + 1);
        return 0;
    }
    rc = cairn_store_snapshot_stage(st, tmp, sizeof tmp, err);
    if (rc)
        return rc;
    rc = cairn_layer_unpack(blob, tmp, layer->diff_id, err);
    if (rc) {
        cairn_err_prefix(err, "unpacking layer %s", layer->digest);
        cairn_store_snapshot_discard(st, tmp);
        return rc;
    }
    return cairn_store_snapshot_adopt(st, layer, tmp, path, len, err);
}
