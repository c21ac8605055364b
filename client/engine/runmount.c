#include "client/engine/runmount.h"

#include "cachekey/digest.h"
#include "cachekey/dockerignore.h"
#include "common/buf.h"
#include "common/fdio.h"

#include <dirent.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* How many private instances of one cache id may exist at once. */
#define RUNMOUNT_MAX_PRIVATE 64

struct cairn_runmounts {
    struct cairn_run_mount m[CAIRN_RUN_MAX_MOUNTS];
    size_t n;
    char *strs[CAIRN_RUN_MAX_MOUNTS * 4]; /* owned paths (at most 3 a mount) */
    size_t nstrs;
    int lock_fds[CAIRN_RUN_MAX_MOUNTS]; /* held cache locks */
    size_t nlocks;
    char *views[CAIRN_RUN_MAX_MOUNTS]; /* mounted read-only views */
    size_t nviews;
};

/* Records s (malloc'd, may be NULL) to be freed with r; returns it, or
 * NULL when there is no room (never: at most 3 per mount). */
static char *keep(struct cairn_runmounts *r, char *s)
{
    if (s != NULL && r->nstrs == sizeof r->strs / sizeof r->strs[0]) {
        free(s);
        return NULL;
    }
    if (s != NULL)
        r->strs[r->nstrs++] = s;
    return s;
}

static char *path_join(const char *a, const char *b)
{
    struct cairn_buf buf;
    cairn_buf_init(&buf, PATH_MAX);
    if (cairn_buf_printf(&buf, "%s/%s", a, b) != 0) {
        cairn_buf_free(&buf);
        return NULL;
    }
    return cairn_buf_take(&buf);
}

/* A source relative to its root: no "..", no leading "/". */
static int clean_rel(const char *src, char *out, size_t cap)
{
    size_t o = 0;
    const char *p = src;
    while (*p) {
        while (*p == '/')
            p++;
        size_t n = strcspn(p, "/");
        if (n == 0)
            break;
        if (n == 1 && p[0] == '.') {
            p += n;
            continue;
        }
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return CAIRN_E_OUTSIDE;
        if (o + n + 2 > cap)
            return CAIRN_E_TOOBIG;
        if (o)
            out[o++] = '/';
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    if (o == 0)
        out[o++] = '.';
    out[o] = '\0';
    return 0;
}

/* ---- copies -------------------------------------------------------------- */

static int copy_file_data(const char *src, const char *dst, mode_t mode,
                          struct cairn_err *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0)
        return cairn_err_set(err, -errno, "cannot read %s: %s", src,
                             strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 07777);
    int rc = 0;
    if (out < 0) {
        rc = cairn_err_set(err, -errno, "cannot create %s: %s", dst,
                           strerror(errno));
        goto out;
    }
    char buf[65536];
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = cairn_err_set(err, -errno, "cannot read %s: %s", src,
                               strerror(errno));
            break;
        }
        if (r == 0)
            break;
        rc = cairn_write_all(out, buf, (size_t)r);
        if (rc) {
            cairn_err_set(err, rc, "cannot write %s: %s", dst,
                          cairn_strerror(rc));
            break;
        }
    }
    if (!rc && fchmod(out, mode & 07777) != 0)
        rc = cairn_err_set(err, -errno, "chmod %s: %s", dst, strerror(errno));
out:
    if (out >= 0)
        close(out);
    close(in);
    return rc;
}

/* Copies one entry (already lstat'ed as st) from src to dst, keeping the
 * mode, times and, when owners is set, the owner. */
static int copy_entry(const char *src, const char *dst, const struct stat *st,
                      bool owners, struct cairn_err *err)
{
    int rc = 0;
    if (S_ISDIR(st->st_mode)) {
        if (mkdir(dst, 0700) != 0 && errno != EEXIST)
            return cairn_err_set(err, -errno, "mkdir %s: %s", dst,
                                 strerror(errno));
    } else if (S_ISLNK(st->st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(src, target, sizeof target - 1);
        if (n < 0)
            return cairn_err_set(err, -errno, "readlink %s: %s", src,
                                 strerror(errno));
        target[n] = '\0';
        if (symlink(target, dst) != 0)
            return cairn_err_set(err, -errno, "symlink %s: %s", dst,
                                 strerror(errno));
    } else if (S_ISREG(st->st_mode)) {
        rc = copy_file_data(src, dst, st->st_mode, err);
    } else {
        return 0; /* devices, fifos, sockets: not in a bind mount copy */
    }
    if (!rc && owners && lchown(dst, st->st_uid, st->st_gid) != 0)
        rc = cairn_err_set(err, -errno, "chown %s: %s", dst, strerror(errno));
    if (!rc && !S_ISLNK(st->st_mode) && chmod(dst, st->st_mode & 07777) != 0)
        rc = cairn_err_set(err, -errno, "chmod %s: %s", dst, strerror(errno));
    if (!rc) {
        struct timespec ts[2] = {st->st_atim, st->st_mtim};
        utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW);
    }
    return rc;
}

/* Copies the tree at src (not following symlinks) to dst, owners kept. */
static int copy_tree(const char *src, const char *dst, int depth,
                     struct cairn_err *err)
{
    if (depth > 256)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "%s: nested too deep", src);
    struct stat st;
    if (lstat(src, &st) != 0)
        return cairn_err_set(err, -errno, "cannot read %s: %s", src,
                             strerror(errno));
    int rc = copy_entry(src, dst, &st, true, err);
    if (rc || !S_ISDIR(st.st_mode))
        return rc;
    DIR *d = opendir(src);
    if (d == NULL)
        return cairn_err_set(err, -errno, "cannot list %s: %s", src,
                             strerror(errno));
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *s = path_join(src, de->d_name);
        char *t = path_join(dst, de->d_name);
        rc = s && t ? copy_tree(s, t, depth + 1, err) : CAIRN_E_NOMEM;
        free(s);
        free(t);
    }
    closedir(d);
    /* The directory's own mode and time once its entries are in. */
    if (!rc && chmod(dst, st.st_mode & 07777) != 0)
        rc = cairn_err_set(err, -errno, "chmod %s: %s", dst, strerror(errno));
    if (!rc) {
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        utimensat(AT_FDCWD, dst, ts, 0);
    }
    return rc;
}

struct ctx_copy {
    struct ck_context *ctx;
    const char *dst;
    bool file; /* the source is one file, copied to dst itself */
    struct cairn_err *err;
    bool link;  /* hard-link regular files (read-only mounts) while the
                   file system allows */
    char *disk; /* count_matches: the match's context-relative path */
};

/* One context entry into the copy: what BuildKit's context transfer would
 * hold (ignored paths are absent; owners are the builder's). */
static int ctx_copy_entry(void *arg, const struct ck_context_entry *e)
{
    struct ctx_copy *c = arg;
    char *src = path_join(ck_context_dir(c->ctx), e->disk);
    char *dst = !e->match_is_dir           ? strdup(c->dst)
                : strcmp(e->rel, ".") == 0 ? strdup(c->dst)
                                           : path_join(c->dst, e->rel);
    int rc = CAIRN_E_NOMEM;
    struct stat st;
    if (src && dst) {
        if (lstat(src, &st) != 0) {
            rc = cairn_err_set(c->err, -errno, "cannot read %s: %s", e->disk,
                               strerror(errno));
        } else {
            /* The match itself may be a followed symlink: copy what it
             * points at (never a hard link to the link). */
            bool linkable = S_ISREG(st.st_mode);
            if (strcmp(e->rel, ".") == 0 && S_ISLNK(st.st_mode) &&
                stat(src, &st) != 0)
                st.st_mode = 0;
            if (e->type == 'l' && strcmp(e->rel, ".") != 0) {
                rc = copy_entry(src, dst, &st, false, c->err);
            } else if (S_ISDIR(st.st_mode) || e->type == 'd') {
                st.st_mode = S_IFDIR | (e->mode & 07777);
                rc = copy_entry(src, dst, &st, false, c->err);
            } else if (c->link && linkable && link(src, dst) == 0) {
                rc = 0;
            } else {
                /* A read-only mount can share the context's inodes; across
                 * file systems (EXDEV) it copies, and stops trying. */
                c->link = false;
                st.st_mode = S_IFREG | (e->mode & 07777);
                rc = copy_file_data(src, dst, st.st_mode, c->err);
            }
        }
    }
    free(src);
    free(dst);
    return rc;
}

static int count_matches(void *arg, const struct ck_context_entry *e)
{
    struct ctx_copy *c = arg;
    if (strcmp(e->rel, ".") != 0)
        return 0;
    if (c->disk != NULL) /* a second match: the source is a wildcard */
        return CAIRN_E_INVAL;
    c->file = !e->match_is_dir;
    c->disk = strdup(e->disk);
    return c->disk ? 0 : CAIRN_E_NOMEM;
}

/* The context path a read-only mount can bind as it is: when nothing is
 * ignored, the mount shows exactly what the key digests. NULL otherwise
 * (a copy is needed). */
static char *direct_source(struct ck_context *ctx, const char *disk)
{
    const struct ck_ignore *ig = ck_context_ignore(ctx);
    if (ig != NULL && ck_ignore_count(ig) != 0)
        return NULL;
    char *path = path_join(ck_context_dir(ctx), disk);
    char *real = path ? realpath(path, NULL) : NULL;
    char *root = realpath(ck_context_dir(ctx), NULL);
    free(path);
    size_t n = root ? strlen(root) : 0;
    /* The context module keeps sources inside; checked again here, as a
     * bind mount would follow a link the copy would not. */
    if (real == NULL || root == NULL || strncmp(real, root, n) != 0 ||
        (real[n] != '/' && real[n] != '\0' && strcmp(root, "/") != 0)) {
        free(real);
        real = NULL;
    }
    free(root);
    return real;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

/* Removes a tree, best effort. */
static void nftw_remove(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- cache mounts -------------------------------------------------------- */

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return -errno;
        buf[i] = c;
    }
    return 0;
}

/* Opens and locks the lock file of instance k; returns the fd, -1 when
 * nonblock and someone else holds it, or a negative error below -1. */
static int cache_lock(const char *dir, unsigned k, int how, int *fd_out,
                      struct cairn_err *err)
{
    char name[32];
    snprintf(name, sizeof name, k ? "lock.%u" : "lock", k);
    char *p = path_join(dir, name);
    if (p == NULL)
        return CAIRN_E_NOMEM;
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int rc = 0;
    if (fd < 0) {
        rc = cairn_err_set(err, -errno, "cache mount lock %s: %s", p,
                           strerror(errno));
    } else {
        while ((rc = flock(fd, how)) != 0 && errno == EINTR)
            ;
        if (rc != 0) {
            rc = errno == EWOULDBLOCK
                     ? 1
                     : cairn_err_set(err, -errno, "cache mount lock %s: %s", p,
                                     strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    free(p);
    if (rc == 0)
        *fd_out = fd;
    return rc;
}

static int view_source(struct cairn_runmounts *r, const struct ck_run_mount *rm,
                       const struct cairn_runmount_env *env, size_t idx,
                       char **real_out, bool *is_dir, struct cairn_err *err);

/* The cache's directory under the store, cache-mounts/<sha256 of id>
 * (kept in r), made with an "id" file for people looking at the store
 * (du, prune). */
static int cache_dir_make(struct cairn_runmounts *r, const char *store_root,
                          const char *id, char **dir_out,
                          struct cairn_err *err)
{
    uint8_t d[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    int rc = ck_sha256(id, strlen(id), d);
    if (rc)
        return rc;
    ck_hex_encode(d, hex);
    struct cairn_buf b;
    cairn_buf_init(&b, PATH_MAX);
    rc = cairn_buf_printf(&b, "%s/cache-mounts/%s", store_root, hex);
    char *dir = rc ? NULL : keep(r, cairn_buf_take(&b));
    cairn_buf_free(&b);
    if (dir == NULL)
        return CAIRN_E_NOMEM;
    rc = mkdir_p(dir, 0700);
    if (rc)
        return cairn_err_set(err, rc, "cache mount %s: %s", dir,
                             cairn_strerror(rc));
    char *idf = path_join(dir, "id");
    if (idf == NULL)
        return CAIRN_E_NOMEM;
    int fd = open(idf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        (void)cairn_write_all(fd, id, strlen(id));
        close(fd);
    }
    free(idf);
    *dir_out = dir;
    return 0;
}

/* Takes the lock that sharing= asks for (kept in r until the command
 * ends); *inst is the private instance taken (0 otherwise). */
static int cache_instance_lock(struct cairn_runmounts *r, const char *dir,
                               const struct ck_mount *m, unsigned *inst,
                               struct cairn_err *err)
{
    unsigned i = 0;
    int lfd = -1, rc = 0;
    switch (m->sharing) {
    case CK_SHARING_SHARED:
        rc = cache_lock(dir, 0, LOCK_SH, &lfd, err);
        break;
    case CK_SHARING_LOCKED:
        rc = cache_lock(dir, 0, LOCK_EX, &lfd, err);
        break;
    case CK_SHARING_PRIVATE:
        rc = 1;
        for (i = 0; rc == 1 && i < RUNMOUNT_MAX_PRIVATE; i++)
            rc = cache_lock(dir, i, LOCK_EX | LOCK_NB, &lfd, err);
        i--;
        if (rc == 1)
            rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                               "cache mount %s: %d private instances in use",
                               m->id, RUNMOUNT_MAX_PRIVATE);
        break;
    }
    if (rc)
        return rc;
    r->lock_fds[r->nlocks++] = lfd;
    *inst = i;
    return 0;
}

/* Makes a new cache's data directory: aside in dir and renamed into
 * place, so a build sharing it never sees it half seeded; with from=, it
 * starts as a copy of rel of that stage or image (BuildKit bases the
 * cache on from's files). */
static int cache_seed(struct cairn_runmounts *r, const struct ck_run_mount *rm,
                      const struct cairn_runmount_env *env, size_t idx,
                      const char *dir, const char *data, const char *rel,
                      struct cairn_err *err)
{
    const struct ck_mount *m = &rm->m;
    char *tmp = path_join(dir, "new-XXXXXX");
    if (tmp == NULL)
        return CAIRN_E_NOMEM;
    int rc = 0;
    if (mkdtemp(tmp) == NULL) {
        rc = cairn_err_set(err, -errno, "cache mount %s: %s", dir,
                           strerror(errno));
        free(tmp);
        return rc;
    }
    if (m->from != NULL) {
        char *real = NULL;
        bool is_dir = false;
        char *seed = strcmp(rel, ".") == 0 ? strdup(tmp) : path_join(tmp, rel);
        rc = seed ? view_source(r, rm, env, idx, &real, &is_dir, err)
                  : CAIRN_E_NOMEM;
        if (!rc && !is_dir)
            rc = cairn_err_set(err, CAIRN_E_INVAL,
                               "source %s in %s is not a directory", rel,
                               m->from);
        if (!rc && strcmp(rel, ".") != 0) {
            char *slash = strrchr(seed, '/');
            *slash = '\0';
            rc = mkdir_p(seed, 0755);
            *slash = '/';
        }
        if (!rc)
            rc = copy_tree(real, seed, 0, err);
        free(real);
        free(seed);
    }
    mode_t mode = (mode_t)(m->has_mode ? m->mode : 0755);
    if (!rc &&
        (chown(tmp, m->has_uid ? m->uid : 0, m->has_gid ? m->gid : 0) != 0 ||
         chmod(tmp, mode) != 0))
        rc = cairn_err_set(err, -errno, "cache mount %s: %s", tmp,
                           strerror(errno));
    if (!rc &&
        renameat2(AT_FDCWD, tmp, AT_FDCWD, data, RENAME_NOREPLACE) != 0 &&
        errno != EEXIST)
        rc = cairn_err_set(err, -errno, "cache mount %s: %s", data,
                           strerror(errno));
    /* Gone when renamed; another build's won the race otherwise. */
    nftw_remove(tmp);
    free(tmp);
    return rc;
}

static int prepare_cache(struct cairn_runmounts *r,
                         const struct ck_run_mount *rm,
                         const struct cairn_runmount_env *env, size_t idx,
                         struct cairn_run_mount *out, struct cairn_err *err)
{
    const struct ck_mount *m = &rm->m;
    char *dir = NULL;
    unsigned inst = 0;
    int rc = cache_dir_make(r, env->store_root, m->id, &dir, err);
    if (!rc)
        rc = cache_instance_lock(r, dir, m, &inst, err);
    if (rc)
        return rc;
    char name[32];
    snprintf(name, sizeof name, inst ? "data.%u" : "data", inst);
    char *data = keep(r, path_join(dir, name));
    if (data == NULL)
        return CAIRN_E_NOMEM;
    /* source is a path inside the cache. */
    char rel[PATH_MAX];
    rc = clean_rel(m->source ? m->source : ".", rel, sizeof rel);
    if (rc)
        return cairn_err_set(err, rc, "cache mount source %s: %s", m->source,
                             cairn_strerror(rc));
    char *sub = strcmp(rel, ".") == 0 ? data : keep(r, path_join(data, rel));
    if (sub == NULL)
        return CAIRN_E_NOMEM;
    struct stat st;
    if (lstat(data, &st) != 0 &&
        (rc = cache_seed(r, rm, env, idx, dir, data, rel, err)) != 0)
        return rc;
    if (sub != data) {
        rc = mkdir_p(sub, 0755);
        if (rc)
            return cairn_err_set(err, rc, "cache mount %s: %s", sub,
                                 cairn_strerror(rc));
    }
    out->kind = CAIRN_RUN_MOUNT_BIND;
    out->source = sub;
    out->readonly = m->readonly;
    return 0;
}

/* ---- bind mounts --------------------------------------------------------- */

static int prepare_bind_context(struct cairn_runmounts *r,
                                const struct ck_run_mount *rm,
                                const struct cairn_runmount_env *env,
                                size_t idx, struct cairn_run_mount *out,
                                struct cairn_err *err)
{
    const char *src = rm->m.source && rm->m.source[0] ? rm->m.source : ".";
    struct ctx_copy probe = {env->ctx, NULL, false, err, false, NULL};
    int rc = ck_context_source_each(env->ctx, src, count_matches, &probe, err);
    char *direct = NULL;
    if (!rc && rm->m.readonly)
        direct = keep(r, direct_source(env->ctx, probe.disk));
    free(probe.disk);
    if (rc == CAIRN_E_INVAL)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "bind mount source %s selects several paths", src);
    if (rc)
        return rc;
    out->kind = CAIRN_RUN_MOUNT_BIND;
    out->file = probe.file;
    out->readonly = rm->m.readonly;
    if (direct != NULL) {
        out->source = direct;
        return 0;
    }
    char name[32];
    snprintf(name, sizeof name, "mount-%zu", idx);
    char *dst = keep(r, path_join(env->tmpdir, name));
    if (dst == NULL)
        return CAIRN_E_NOMEM;
    /* A copy (hard links for a read-only mount) of what the source
     * selects: ignored files absent, and rw writes private to the run. */
    struct ctx_copy c = {env->ctx, dst, probe.file, err, rm->m.readonly, NULL};
    if (!probe.file && mkdir(dst, 0755) != 0)
        return cairn_err_set(err, -errno, "mkdir %s: %s", dst, strerror(errno));
    rc = ck_context_source_each(env->ctx, src, ctx_copy_entry, &c, err);
    if (rc)
        return rc;
    out->source = dst;
    return 0;
}

/* Mounts a read-only view of what rm's from= names under env->tmpdir and
 * resolves rm's source in it (symlinks resolve inside the view, never on
 * the host). *real (malloc'd) is the source's path; *is_dir says what it
 * is. */
static int view_source(struct cairn_runmounts *r, const struct ck_run_mount *rm,
                       const struct cairn_runmount_env *env, size_t idx,
                       char **real_out, bool *is_dir, struct cairn_err *err)
{
    const char **lowers = NULL;
    size_t n = 0;
    int rc = env->lowers(env->lowers_arg, rm, &lowers, &n, err);
    if (rc)
        return rc;
    char name[32];
    snprintf(name, sizeof name, "view-%zu", idx);
    char *view = path_join(env->tmpdir, name);
    if (view == NULL || mkdir(view, 0755) != 0) {
        rc = view ? cairn_err_set(err, -errno, "mkdir %s: %s", view,
                                  strerror(errno))
                  : CAIRN_E_NOMEM;
        free(view);
        free(lowers);
        return rc;
    }
    rc = cairn_sandbox_mount_ro(lowers, n, view, err);
    free(lowers);
    if (rc) {
        free(view);
        return rc;
    }
    r->views[r->nviews++] = view;

    char rel[PATH_MAX];
    rc = clean_rel(rm->m.source ? rm->m.source : ".", rel, sizeof rel);
    if (rc)
        return cairn_err_set(err, rc, "source %s: %s", rm->m.source,
                             cairn_strerror(rc));
    char *path = path_join(view, rel);
    if (path == NULL)
        return CAIRN_E_NOMEM;
    char *real = realpath(path, NULL);
    char *vreal = realpath(view, NULL);
    free(path);
    struct stat st;
    if (real == NULL)
        rc = cairn_err_set(err, CAIRN_E_NOTFOUND,
                           "source \"/%s\" not found in %s", rel, rm->m.from);
    else if (vreal == NULL || strncmp(real, vreal, strlen(vreal)) != 0 ||
             (real[strlen(vreal)] != '/' && real[strlen(vreal)] != '\0'))
        rc = cairn_err_set(err, CAIRN_E_OUTSIDE, "source %s leaves %s", rel,
                           rm->m.from);
    else if (stat(real, &st) != 0)
        rc = cairn_err_set(err, -errno, "%s: %s", rel, strerror(errno));
    free(vreal);
    if (rc) {
        free(real);
        return rc;
    }
    *real_out = real;
    *is_dir = S_ISDIR(st.st_mode);
    return 0;
}

static int prepare_bind_from(struct cairn_runmounts *r,
                             const struct ck_run_mount *rm,
                             const struct cairn_runmount_env *env, size_t idx,
                             struct cairn_run_mount *out, struct cairn_err *err)
{
    char *real = NULL;
    bool is_dir = false;
    int rc = view_source(r, rm, env, idx, &real, &is_dir, err);
    if (rc)
        return rc;
    keep(r, real);
    out->kind = CAIRN_RUN_MOUNT_BIND;
    out->file = !is_dir;
    out->readonly = rm->m.readonly;
    out->source = real;
    if (!rm->m.readonly) {
        /* rw: writes are discarded, so the command gets a copy. */
        char name[32];
        snprintf(name, sizeof name, "mount-%zu", idx);
        char *dst = keep(r, path_join(env->tmpdir, name));
        rc = dst ? copy_tree(real, dst, 0, err) : CAIRN_E_NOMEM;
        if (!rc)
            out->source = dst;
    }
    return rc;
}

/* ---- the rest ------------------------------------------------------------ */

static int prepare_one(struct cairn_runmounts *r, const struct ck_run_mount *rm,
                       const struct cairn_runmount_env *env, size_t idx,
                       struct cairn_err *err)
{
    const struct ck_mount *m = &rm->m;
    struct cairn_run_mount out;
    memset(&out, 0, sizeof out);
    out.target = m->target;
    int rc = 0;
    switch (m->type) {
    case CK_MOUNT_BIND:
        rc = rm->from_kind == CK_FROM_CONTEXT
                 ? prepare_bind_context(r, rm, env, idx, &out, err)
                 : prepare_bind_from(r, rm, env, idx, &out, err);
        break;
    case CK_MOUNT_CACHE:
        rc = prepare_cache(r, rm, env, idx, &out, err);
        break;
    case CK_MOUNT_TMPFS:
        out.kind = CAIRN_RUN_MOUNT_TMPFS;
        out.size = m->size;
        break;
    case CK_MOUNT_SECRET: {
        const struct cairn_build_secret *sec = NULL;
        for (size_t i = 0; i < env->nsecrets; i++)
            if (strcmp(env->secrets[i].id, m->id) == 0)
                sec = &env->secrets[i];
        if (sec == NULL && m->required)
            return cairn_err_set(err, CAIRN_E_NOTFOUND,
                                 "secret %s not found: give it with cairn "
                                 "build --secret id=%s,src=PATH",
                                 m->id, m->id);
        if (sec == NULL)
            return 1; /* not required: not mounted (BuildKit's rule) */
        out.kind = CAIRN_RUN_MOUNT_DATA;
        out.file = true;
        out.data = sec->data;
        out.len = sec->len;
        out.mode = m->has_mode ? m->mode : 0400;
        out.uid = m->has_uid ? m->uid : 0;
        out.gid = m->has_gid ? m->gid : 0;
        break;
    }
    case CK_MOUNT_SSH:
        if (m->required)
            return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                                 "--mount=type=ssh,required: cairn build "
                                 "forwards no SSH agent (no --ssh)");
        if (env->out)
            fprintf(env->out,
                    " ---> ssh mount at %s skipped: cairn build forwards "
                    "no SSH agent\n",
                    m->target);
        return 1;
    }
    if (rc)
        return rc;
    r->m[r->n++] = out;
    return 0;
}

static int mount_cmp(const void *a, const void *b)
{
    const struct cairn_run_mount *x = a, *y = b;
    return strcmp(x->target, y->target);
}

int cairn_runmounts_prepare(const struct ck_step *s,
                            const struct cairn_runmount_env *env,
                            struct cairn_runmounts **out, struct cairn_err *err)
{
    if (s->nmounts > CAIRN_RUN_MAX_MOUNTS)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "%zu RUN --mount flags; at most %d", s->nmounts,
                             CAIRN_RUN_MAX_MOUNTS);
    struct cairn_runmounts *r = calloc(1, sizeof *r);
    if (r == NULL)
        return CAIRN_E_NOMEM;
    int rc = 0;
    for (size_t i = 0; !rc && i < s->nmounts; i++) {
        rc = prepare_one(r, &s->mounts[i], env, i, err);
        if (rc == 1)
            rc = 0;
        else if (rc && err && err->msg[0])
            cairn_err_prefix(err, "RUN --mount (type=%s, target=%s)",
                             ck_mount_type_name(s->mounts[i].m.type),
                             s->mounts[i].m.target);
    }
    if (rc) {
        cairn_runmounts_release(r);
        return rc;
    }
    /* Parents before children: "/a" sorts before "/a/b". */
    qsort(r->m, r->n, sizeof r->m[0], mount_cmp);
    *out = r;
    return 0;
}

const struct cairn_run_mount *
cairn_runmounts_list(const struct cairn_runmounts *rm, size_t *n)
{
    *n = rm ? rm->n : 0;
    return rm ? rm->m : NULL;
}

void cairn_runmounts_release(struct cairn_runmounts *rm)
{
    if (rm == NULL)
        return;
    for (size_t i = 0; i < rm->nlocks; i++)
        close(rm->lock_fds[i]);
    for (size_t i = 0; i < rm->nviews; i++) {
        cairn_sandbox_unmount(rm->views[i], NULL);
        rmdir(rm->views[i]);
        free(rm->views[i]);
    }
    for (size_t i = 0; i < rm->nstrs; i++)
        free(rm->strs[i]);
    free(rm);
}

/* ---- --secret ------------------------------------------------------------ */

static int read_secret_file(const char *path, char **data, size_t *len,
                            struct cairn_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_err_set(err, errno == ENOENT ? CAIRN_E_NOTFOUND : -errno,
                             "secret file %s: %s", path, strerror(errno));
    struct cairn_buf b;
    cairn_buf_init(&b, CAIRN_SECRET_MAX);
    int rc = 0;
    char buf[8192];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = cairn_err_set(err, -errno, "secret file %s: %s", path,
                               strerror(errno));
            break;
        }
        if (r == 0)
            break;
        if (b.len + (size_t)r > CAIRN_SECRET_MAX ||
            cairn_buf_append(&b, buf, (size_t)r) != 0) {
            rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                               "secret file %s is larger than %u bytes", path,
                               CAIRN_SECRET_MAX);
            break;
        }
    }
    close(fd);
    if (rc) {
        cairn_buf_free(&b);
        return rc;
    }
    size_t n = b.len;
    char *bytes = b.data ? cairn_buf_take(&b) : strdup("");
    if (bytes == NULL)
        return CAIRN_E_NOMEM;
    *len = n;
    *data = bytes;
    return 0;
}

int cairn_secret_parse(const char *spec, char **id_out, char **data,
                       size_t *len, struct cairn_err *err)
{
    char *copy = strdup(spec);
    if (copy == NULL)
        return CAIRN_E_NOMEM;
    const char *id = NULL, *src = NULL, *env = NULL, *type = NULL;
    int rc = 0;
    for (char *save = NULL, *f = strtok_r(copy, ",", &save); f && !rc;
         f = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(f, '=');
        if (eq == NULL) {
            rc = cairn_err_set(err, CAIRN_E_PARSE,
                               "--secret %s: expected key=value", spec);
            break;
        }
        *eq = '\0';
        if (strcmp(f, "id") == 0)
            id = eq + 1;
        else if (strcmp(f, "src") == 0 || strcmp(f, "source") == 0)
            src = eq + 1;
        else if (strcmp(f, "env") == 0)
            env = eq + 1;
        else if (strcmp(f, "type") == 0)
            type = eq + 1;
        else
            rc = cairn_err_set(err, CAIRN_E_PARSE,
                               "--secret %s: unexpected key '%s' (id, src, "
                               "env, type)",
                               spec, f);
    }
    if (!rc && (id == NULL || id[0] == '\0'))
        rc = cairn_err_set(err, CAIRN_E_PARSE, "--secret %s: id is required",
                           spec);
    if (!rc && type && strcmp(type, "file") != 0 && strcmp(type, "env") != 0)
        rc = cairn_err_set(err, CAIRN_E_PARSE,
                           "--secret %s: type must be file or env", spec);
    if (!rc && src && env)
        rc = cairn_err_set(err, CAIRN_E_PARSE,
                           "--secret %s: src and env are exclusive", spec);
    if (rc)
        goto out;
    if (type && strcmp(type, "env") == 0 && env == NULL)
        env = src ? src : id;
    if (src == NULL && env == NULL) {
        /* buildx: the environment variable named like the id, else the
         * file of that name. */
        if (getenv(id) != NULL)
            env = id;
        else
            src = id;
    }
    char *bytes = NULL;
    size_t nbytes = 0;
    if (env != NULL) {
        const char *v = getenv(env);
        if (v == NULL) {
            rc = cairn_err_set(err, CAIRN_E_NOTFOUND,
                               "--secret %s: environment variable %s is not "
                               "set",
                               spec, env);
            goto out;
        }
        if (strlen(v) > CAIRN_SECRET_MAX) {
            rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                               "--secret %s: larger than %u bytes", spec,
                               CAIRN_SECRET_MAX);
            goto out;
        }
        nbytes = strlen(v);
        bytes = strdup(v);
        rc = bytes ? 0 : CAIRN_E_NOMEM;
    } else {
        rc = read_secret_file(src, &bytes, &nbytes, err);
    }
    char *idc = rc ? NULL : strdup(id);
    if (!rc && idc == NULL)
        rc = CAIRN_E_NOMEM;
    if (rc) {
        free(bytes);
        goto out;
    }
    *id_out = idc;
    *data = bytes;
    *len = nbytes;
out:
    free(copy);
    return rc;
}

/* ---- the cache mounts in the store -----------------------------------------
 */

static _Thread_local uint64_t du_bytes;

static int du_cb(const char *path, const struct stat *sb, int flag,
                 struct FTW *ftw)
{
    (void)path;
    (void)flag;
    (void)ftw;
    du_bytes += (uint64_t)sb->st_blocks * 512u;
    return 0;
}

static int rm_cb(const char *path, const struct stat *sb, int flag,
                 struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path) == 0 ? 0 : -1;
    return unlink(path) == 0 ? 0 : -1;
}

/* Takes every lock of one cache mount without waiting: the shared one
 * of its builds and the private instances'. Returns the number of fds
 * in fds, or -1 when one is held. */
static int lock_all(const char *dir, int *fds, int max)
{
    int n = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    struct dirent *de;
    int busy = 0;
    while (!busy && (de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "lock", 4) != 0 || n == max)
            continue;
        char *p = path_join(dir, de->d_name);
        int fd = p ? open(p, O_RDWR | O_CLOEXEC) : -1;
        free(p);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            close(fd);
            busy = 1;
        } else {
            fds[n++] = fd;
        }
    }
    closedir(d);
    if (busy) {
        while (n > 0)
            close(fds[--n]);
        return -1;
    }
    return n;
}

struct cm_walk {
    cairn_cachemount_fn fn;
    void *arg;
    bool prune;
    uint64_t reclaimed;
    unsigned busy;
};

static int cm_walk(const char *store_root, struct cm_walk *w,
                   struct cairn_err *err)
{
    char *base = path_join(store_root, "cache-mounts");
    if (base == NULL)
        return CAIRN_E_NOMEM;
    DIR *d = opendir(base);
    if (d == NULL) {
        int e = errno;
        free(base);
        return e == ENOENT ? 0
                           : cairn_err_set(err, -e, "%s/cache-mounts: %s",
                                           store_root, strerror(e));
    }
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char *dir = path_join(base, de->d_name);
        if (dir == NULL) {
            rc = CAIRN_E_NOMEM;
            break;
        }
        char id[1024] = "";
        char *idf = path_join(dir, "id");
        int fd = idf ? open(idf, O_RDONLY | O_CLOEXEC) : -1;
        if (fd >= 0) {
            ssize_t n = read(fd, id, sizeof id - 1);
            id[n > 0 ? n : 0] = '\0';
            close(fd);
        }
        free(idf);
        int fds[RUNMOUNT_MAX_PRIVATE + 1];
        int nfds = lock_all(dir, fds, RUNMOUNT_MAX_PRIVATE + 1);
        du_bytes = 0;
        nftw(dir, du_cb, 16, FTW_PHYS);
        struct cairn_cachemount_info info = {id[0] ? id : de->d_name, du_bytes,
                                             nfds < 0};
        if (w->fn)
            rc = w->fn(w->arg, &info);
        if (w->prune && nfds < 0) {
            w->busy++;
        } else if (w->prune) {
            /* Locked by us, so no build is inside; one that opens it
             * after this finds it gone and makes a new one. */
            if (nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS) != 0 && !rc)
                rc = cairn_err_set(err, -errno, "remove %s: %s", dir,
                                   strerror(errno));
            else
                w->reclaimed += info.bytes;
        }
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        free(dir);
    }
    closedir(d);
    free(base);
    return rc;
}

int cairn_cachemounts_each(const char *store_root, cairn_cachemount_fn fn,
                           void *arg, struct cairn_err *err)
{
    struct cm_walk w = {fn, arg, false, 0, 0};
    return cm_walk(store_root, &w, err);
}

int cairn_cachemounts_prune(const char *store_root, uint64_t *reclaimed,
                            unsigned *busy, struct cairn_err *err)
{
    struct cm_walk w = {NULL, NULL, true, 0, 0};
    int rc = cm_walk(store_root, &w, err);
    if (rc)
        return rc;
    *reclaimed = w.reclaimed;
    *busy = w.busy;
    return 0;
}
