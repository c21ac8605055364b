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
 * This file holds the files: blobs, snapshots, the store lock and the
 * helpers that write under the root (rename without replacing, tmp/
 * files, tree walks). It is the bottom of the store: opening and closing
 * are client/store/store_open.c, the LMDB records and their transactions
 * client/store/store_records.c, index.json client/store/store_index_json.c,
 * references client/store/store_ref.c. Prune, the one place that deletes,
 * is client/store/store_prune.c; its opening comment gives the rule.
 */
#include "client/store/store.h"
#include "client/store/store_impl.h"

#include "cachekey/digest.h"
#include "common/fdio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
int store_rename_noreplace(const char *from, const char *to)
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
int store_tmp_write(const struct cairn_store *st, const char *prefix,
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
        rc = store_rename_noreplace(tmp_path, final);
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
    rc = store_tmp_write(st, "blob", data, len, false, tmp, sizeof tmp);
    if (rc)
        return cairn_err_set(err, rc, "cannot write a blob in %s: %s",
                             st->tmpdir, cairn_strerror(rc));
    rc = cairn_store_blob_add_file(st, tmp, d, err);
    if (!rc)
        memcpy(digest, d, sizeof d);
    return rc;
}

struct fsync_job {
    int fd;
    int rc;
};

static void *fsync_thread(void *arg)
{
    struct fsync_job *j = arg;
    j->rc = fsync(j->fd) == 0 ? 0 : -errno;
    return NULL;
}

int cairn_store_blobs_add_data(struct cairn_store *st, size_t n,
                               const void *const data[], const size_t len[],
                               char digest[][CAIRN_DIGEST_STR_LEN],
                               struct cairn_err *err)
{
    if (n > CAIRN_STORE_BLOBS_AT_ONCE)
        return cairn_err_set(err, CAIRN_E_INVAL, "too many blobs at once");
    char d[CAIRN_STORE_BLOBS_AT_ONCE][CAIRN_DIGEST_STR_LEN];
    char tmp[CAIRN_STORE_BLOBS_AT_ONCE][STORE_PATH_MAX];
    struct fsync_job job[CAIRN_STORE_BLOBS_AT_ONCE];
    pthread_t th[CAIRN_STORE_BLOBS_AT_ONCE];
    bool started[CAIRN_STORE_BLOBS_AT_ONCE] = {false};
    int rc = lock_implicit(st, err);
    size_t i;
    for (i = 0; i < n; i++) {
        tmp[i][0] = '\0';
        job[i].fd = -1;
        job[i].rc = 0;
    }
    /* Written (not yet flushed), each opened for its fsync. */
    for (i = 0; !rc && i < n; i++) {
        uint8_t bin[CK_SHA256_LEN];
        if ((rc = ck_sha256(data[i], len[i], bin)) != 0) {
            cairn_err_set(err, rc, "sha256 failed");
            break;
        }
        store_digest_str(bin, d[i]);
        if (cairn_store_blob_has(st, d[i]))
            continue;
        rc = store_tmp_write(st, "blob", data[i], len[i], false, tmp[i],
                             sizeof tmp[i]);
        if (rc) {
            tmp[i][0] = '\0';
            cairn_err_set(err, rc, "cannot write a blob in %s: %s",
                          st->tmpdir, cairn_strerror(rc));
        } else if ((job[i].fd = open(tmp[i], O_RDONLY | O_CLOEXEC)) < 0) {
            rc = cairn_err_set(err, -errno, "cannot open %s: %s", tmp[i],
                               strerror(errno));
        }
    }
    /* The flushes at once: a thread for each but the last. */
    size_t last = n;
    for (i = 0; !rc && i < n; i++)
        if (job[i].fd >= 0)
            last = i;
    for (i = 0; !rc && i < n; i++) {
        if (job[i].fd < 0)
            continue;
        if (i == last || pthread_create(&th[i], NULL, fsync_thread, &job[i]))
            fsync_thread(&job[i]);
        else
            started[i] = true;
    }
    for (i = 0; i < n; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        if (job[i].fd >= 0)
            close(job[i].fd);
        if (!rc && job[i].rc)
            rc = cairn_err_set(err, job[i].rc, "cannot flush %s: %s", tmp[i],
                               cairn_strerror(job[i].rc));
    }
    /* Then the names (only when every content is on disk). */
    for (i = 0; i < n; i++) {
        if (tmp[i][0] == '\0')
            continue;
        char final[STORE_PATH_MAX];
        int r = rc;
        if (!r)
            r = cairn_store_blob_path(st, d[i], final, sizeof final);
        if (!r)
            r = store_rename_noreplace(tmp[i], final);
        if (r == 0) {
            atomic_store(&st->blobs_unsynced, true);
            continue;
        }
        unlink(tmp[i]);
        if (r != CAIRN_E_EXISTS && !rc)
            rc = cairn_err_set(err, r, "cannot store blob %s: %s", d[i],
                               cairn_strerror(r));
    }
    for (i = 0; !rc && i < n; i++)
        memcpy(digest[i], d[i], sizeof d[i]);
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
        rc = store_rename_noreplace(dir, final);
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
