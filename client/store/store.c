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
 * This file holds the files: the root, the store lock, blobs, index.json
 * and snapshots. The LMDB records and their transactions are
 * client/store/store_records.c; references client/store/store_ref.c.
 * Prune, the one place that deletes, is client/store/store_prune.c; its
 * opening comment gives the rule.
 */
#include "client/store/store.h"
#include "client/store/store_impl.h"

#include "cachekey/digest.h"
#include "common/fdio.h"
#include "client/store/image.h"
#include "client/store/index.h"
#include "common/buf.h"

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
#include <unistd.h>

/* A snapshot deeper than this is not removed in one go (each level holds
 * a directory descriptor); real layers are far shallower. */
#define STORE_TREE_DEPTH_MAX 512

#define ANN_REF_NAME "org.opencontainers.image.ref.name"
#define ANN_CAIRN_REF "io.cairn.image.ref"

/* ------------------------------------------------------------------ */
/* helpers                                                              */

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
/* index.json                                                           */


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
    if (store_ref_full(ref, &full) == 0)
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
