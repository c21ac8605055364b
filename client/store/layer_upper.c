/* A RUN's overlay upper directory as layer entries (client/store/layer.h,
 * cairn_layer_add_upper): the walk in byte order, hard links, whiteouts and
 * opaque directories, extended attributes. The writer it feeds is
 * client/store/layer.c. */
#include "client/store/layer.h"

#include "cachekey/digest.h"
#include "client/store/layer_rules.h"
#include "client/store/layer_impl.h"
#include "common/fdio.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

/* ------------------------------------------------------------------ */
/* Overlay upper directories                                           */

enum upper_kind { UK_FILE, UK_DIR, UK_LINK, UK_DEV, UK_WHITEOUT };

/* One path found under the upper directory. The walk collects every path
 * first and sorts them, because the tar must be in byte order of the full
 * path ("a-b" before "a/x"), which no directory-by-directory walk gives. */
struct upper_item {
    char *name; /* tar path; for whiteouts "dir/.wh.base" */
    char *rel;  /* path under upperdir when it differs from name, else NULL */
    enum upper_kind kind;
    bool opaque;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    int64_t mtime;
    dev_t dev;
    dev_t rdev;
    ino_t ino;
    nlink_t nlink;
    ptrdiff_t link_to; /* first path of its hard-link group, or -1 */
    bool ovl_attrs;    /* has overlayfs attributes the unpack would not */
};

struct upper_walk {
    int root; /* fd of the upper directory */
    const char *const *skip;
    struct upper_item *items;
    size_t n;
    size_t cap;
    char *full; /* scratch: upperdir + "/" + rel, for the *xattr calls */
    size_t full_cap;
    size_t root_len;
    size_t left_out; /* entries in upperdir that are not in the layer */
};

static const char *item_rel(const struct upper_item *it)
{
    return it->rel ? it->rel : it->name;
}

static bool skip_match(const char *const *skip, const char *rel)
{
    if (skip == NULL)
        return false;
    size_t rlen = strlen(rel);
    for (; *skip != NULL; skip++) {
        /* Lenient about how the sandbox spells its mount points:
         * "/proc", "./proc" and "proc/" all mean "proc". */
        const char *s = *skip;
        while (*s == '/')
            s++;
        while (s[0] == '.' && s[1] == '/')
            s += 2;
        size_t n = strlen(s);
        while (n > 0 && s[n - 1] == '/')
            n--;
        if (n == rlen && memcmp(s, rel, n) == 0)
            return true;
    }
    return false;
}

/* overlayfs marks opaque directories with trusted.overlay.opaque=y, or with
 * user.overlay.opaque=y when mounted with userxattr (rootless). */
static bool dir_is_opaque(int dfd)
{
    static const char *const names[] = {"trusted.overlay.opaque",
                                        "user.overlay.opaque"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char v[2];
        ssize_t n = fgetxattr(dfd, names[i], v, sizeof v);
        if (n == 1 && v[0] == 'y')
            return true;
    }
    return false;
}

static int upper_push(struct upper_walk *u, struct upper_item *it,
                      struct cairn_err *err)
{
    if (u->n >= LAYER_MAX_ENTRIES)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "upper directory has more than %zu entries",
                             LAYER_MAX_ENTRIES);
    if (u->n == u->cap) {
        size_t ncap = u->cap ? u->cap * 2 : 256;
        struct upper_item *p = realloc(u->items, ncap * sizeof *p);
        if (p == NULL)
            return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        u->items = p;
        u->cap = ncap;
    }
    u->items[u->n++] = *it;
    return 0;
}

/* Joins a parent path (may be "") and a name into a new string. */
static char *path_join(const char *dir, const char *prefix, const char *name)
{
    size_t dl = strlen(dir), pl = strlen(prefix), nl = strlen(name);
    if (dl + 1 + pl + nl >= LAYER_PATH_MAX)
        return NULL;
    char *s = malloc(dl + 1 + pl + nl + 1);
    if (s == NULL)
        return NULL;
    /* The lengths are known: copies, not a format the compiler cannot
     * prove fits. */
    char *p = s;
    memcpy(p, dir, dl);
    p += dl;
    if (dl)
        *p++ = '/';
    memcpy(p, prefix, pl);
    p += pl;
    memcpy(p, name, nl);
    p[nl] = '\0';
    return s;
}

/* Reads one directory's entries into u->items, then descends into its
 * subdirectories. The directory is closed before descending, so deep trees
 * do not hold one descriptor per level. */
static int upper_walk_dir(struct upper_walk *u, const char *rel, size_t self,
                          struct cairn_err *err)
{
    int dfd = openat(u->root, rel[0] ? rel : ".",
                     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        int rc = -errno;
        return cairn_err_set(err, rc, "open %s: %s", rel[0] ? rel : ".",
                             cairn_strerror(rc));
    }
    if (self != SIZE_MAX && dir_is_opaque(dfd))
        u->items[self].opaque = true;
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        int rc = -errno;
        close(dfd);
        return cairn_err_set(err, rc, "opendir %s: %s", rel,
                             cairn_strerror(rc));
    }
    size_t start = u->n;
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno != 0) {
                rc = -errno;
                cairn_err_set(err, rc, "readdir %s: %s", rel,
                              cairn_strerror(rc));
            }
            break;
        }
        const char *nm = de->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dfd, nm, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = -errno;
            cairn_err_set(err, rc, "stat %s/%s: %s", rel, nm,
                          cairn_strerror(rc));
            break;
        }
        struct upper_item it = {.mode = st.st_mode,
                                .uid = st.st_uid,
                                .gid = st.st_gid,
                                .mtime = st.st_mtim.tv_sec,
                                .dev = st.st_dev,
                                .rdev = st.st_rdev,
                                .ino = st.st_ino,
                                .nlink = st.st_nlink,
                                .link_to = -1};
        if (S_ISREG(st.st_mode))
            it.kind = UK_FILE;
        else if (S_ISDIR(st.st_mode))
            it.kind = UK_DIR;
        else if (S_ISLNK(st.st_mode))
            it.kind = UK_LINK;
        else if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0))
            it.kind = UK_WHITEOUT;
        else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ||
                 S_ISFIFO(st.st_mode))
            it.kind = UK_DEV;
        else {
            u->left_out++;
            continue; /* sockets: tar cannot hold them; Docker drops them too */
        }
        it.name = path_join(rel, "", nm);
        if (it.name == NULL) {
            rc = cairn_err_set(err, CAIRN_E_TOOBIG, "path too long: %s/%s", rel,
                               nm);
            break;
        }
        if (skip_match(u->skip, it.name)) {
            free(it.name);
            u->left_out++;
            continue;
        }
        if (it.kind == UK_WHITEOUT) {
            it.rel = it.name;
            it.name = path_join(rel, WH_PREFIX, nm);
            if (it.name == NULL) {
                rc = cairn_err_set(err, CAIRN_E_TOOBIG, "path too long: %s/%s",
                                   rel, nm);
                free(it.rel);
                break;
            }
        }
        if ((rc = upper_push(u, &it, err)) != 0) {
            free(it.name);
            free(it.rel);
            break;
        }
    }
    closedir(d);
    for (size_t i = start, end = u->n; rc == 0 && i < end; i++)
        if (u->items[i].kind == UK_DIR)
            rc = upper_walk_dir(u, u->items[i].name, i, err);
    return rc;
}

static int item_cmp(const void *a, const void *b)
{
    const struct upper_item *x = a, *y = b;
    return strcmp(x->name, y->name);
}

struct link_key {
    dev_t dev;
    ino_t ino;
    size_t idx;
};

static int link_cmp(const void *a, const void *b)
{
    const struct link_key *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Marks every regular file that shares an inode with an earlier path (in
 * tar order) as a hard link to that first path. */
static int upper_find_links(struct upper_walk *u, struct cairn_err *err)
{
    size_t n = 0;
    for (size_t i = 0; i < u->n; i++)
        if (u->items[i].kind == UK_FILE && u->items[i].nlink > 1)
            n++;
    if (n < 2)
        return 0;
    struct link_key *k = malloc(n * sizeof *k);
    if (k == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    n = 0;
    for (size_t i = 0; i < u->n; i++)
        if (u->items[i].kind == UK_FILE && u->items[i].nlink > 1)
            k[n++] = (struct link_key){u->items[i].dev, u->items[i].ino, i};
    qsort(k, n, sizeof *k, link_cmp);
    for (size_t i = 1; i < n; i++) {
        size_t first = i;
        while (first > 0 && k[first - 1].dev == k[i].dev &&
               k[first - 1].ino == k[i].ino)
            first--;
        if (first != i)
            u->items[k[i].idx].link_to = (ptrdiff_t)k[first].idx;
    }
    free(k);
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Copies the xattrs of full (not following symlinks) onto ae, sorted by
 * name so the tar does not depend on the file system's listing order.
 * overlayfs' own attributes stay behind; the ones that mean this upper
 * directory cannot stand alone as a layer are refused. */
static int upper_xattrs(struct archive_entry *ae, const char *full,
                        bool *ovl_attrs, struct cairn_err *err)
{
    ssize_t len = llistxattr(full, NULL, 0);
    if (len < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP))
        return 0;
    if (len < 0) {
        int rc = -errno;
        return cairn_err_set(err, rc, "listxattr %s: %s", full,
                             cairn_strerror(rc));
    }
    if (len == 0)
        return 0;
    if (len > LAYER_XATTR_LIST_MAX)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "%s: too many xattrs", full);
    int rc = 0;
    char *list = malloc((size_t)len + 1);
    char **names = NULL;
    void *val = malloc(LAYER_XATTR_VALUE_MAX);
    if (list == NULL || val == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    len = llistxattr(full, list, (size_t)len);
    if (len < 0) {
        rc = -errno;
        cairn_err_set(err, rc, "listxattr %s: %s", full, cairn_strerror(rc));
        goto out;
    }
    list[len] = '\0';
    size_t count = 0;
    for (ssize_t i = 0; i < len; i += (ssize_t)strlen(list + i) + 1)
        count++;
    names = calloc(count ? count : 1, sizeof *names);
    if (names == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    count = 0;
    for (ssize_t i = 0; i < len; i += (ssize_t)strlen(list + i) + 1)
        names[count++] = list + i;
    qsort(names, count, sizeof *names, name_cmp);
    for (size_t i = 0; i < count; i++) {
        const char *nm = names[i];
        bool ovl = strncmp(nm, "trusted.overlay.", 16) == 0 ||
                   strncmp(nm, "user.overlay.", 13) == 0;
        if (ovl && (strstr(nm, ".overlay.metacopy") != NULL ||
                    strstr(nm, ".overlay.redirect") != NULL)) {
            rc = cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                               "%s has %s: mount the overlay with "
                               "metacopy=off,redirect_dir=off",
                               full, nm);
            goto out;
        }
        /* The unpack sets trusted.overlay.opaque=y and nothing else of
         * overlayfs' (origin, impure, user.overlay.*): anything more
         * must go before this directory can stand in for the unpack. */
        if (ovl && strcmp(nm, "trusted.overlay.opaque") != 0)
            *ovl_attrs = true;
        if (ovl || nm[0] == '\0')
            continue;
        ssize_t vl = lgetxattr(full, nm, val, LAYER_XATTR_VALUE_MAX);
        if (vl < 0) {
            rc = -errno;
            cairn_err_set(err, rc, "getxattr %s %s: %s", full, nm,
                          cairn_strerror(rc));
            goto out;
        }
        archive_entry_xattr_add_entry(ae, nm, val, (size_t)vl);
    }
out:
    free(names);
    free(list);
    free(val);
    return rc;
}

static int upper_full_path(struct upper_walk *u, const char *rel,
                           const char *upperdir)
{
    int n = snprintf(u->full, u->full_cap, "%s/%s", upperdir, rel);
    return n < 0 || (size_t)n >= u->full_cap ? CAIRN_E_TOOBIG : 0;
}

static int upper_emit(struct cairn_layer_writer *w, struct upper_walk *u,
                      const char *upperdir, size_t i, struct cairn_err *err)
{
    struct upper_item *it = &u->items[i];
    if (it->kind == UK_WHITEOUT)
        return layer_writer_marker(w, it->name, err);
    int rc = upper_full_path(u, item_rel(it), upperdir);
    if (rc != 0)
        return cairn_err_set(err, rc, "path too long: %s", it->name);
    struct archive_entry *ae =
        layer_entry_new(w, it->name, it->mode, it->uid, it->gid, it->mtime);
    if (ae == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    int fd = -1;
    if ((rc = upper_xattrs(ae, u->full, &it->ovl_attrs, err)) != 0)
        goto out;
    switch (it->kind) {
    case UK_FILE:
        if (it->link_to >= 0) {
            archive_entry_copy_hardlink(ae, u->items[it->link_to].name);
            archive_entry_set_size(ae, 0);
            break;
        }
        fd = openat(u->root, item_rel(it), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            rc = -errno;
            cairn_err_set(err, rc, "open %s: %s", u->full, cairn_strerror(rc));
            goto out;
        }
        if (!S_ISREG(st.st_mode) || st.st_ino != it->ino) {
            rc = cairn_err_set(err, CAIRN_E_IO, "%s changed during the walk",
                               u->full);
            goto out;
        }
        archive_entry_set_size(ae, st.st_size);
        break;
    case UK_LINK: {
        char target[LAYER_PATH_MAX];
        ssize_t n = readlinkat(u->root, item_rel(it), target, sizeof target);
        if (n < 0) {
            rc = -errno;
            cairn_err_set(err, rc, "readlink %s: %s", u->full,
                          cairn_strerror(rc));
            goto out;
        }
        if ((size_t)n >= sizeof target) {
            rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                               "symlink target too long: %s", u->full);
            goto out;
        }
        target[n] = '\0';
        archive_entry_copy_symlink(ae, target);
        break;
    }
    case UK_DEV:
        archive_entry_set_rdev(ae, it->rdev);
        break;
    case UK_DIR:
    case UK_WHITEOUT:
        break;
    }
    if ((rc = layer_writer_header(w, ae, err)) != 0)
        goto out;
    if (fd >= 0)
        rc = layer_writer_copy_fd(w, fd, archive_entry_size(ae), u->full, err);
    if (rc == 0 && it->kind == UK_DIR && it->opaque) {
        char name[LAYER_PATH_MAX];
        if (layer_marker_name(name, sizeof name, it->name, strlen(it->name),
                        WH_OPAQUE, "") != 0)
            rc = cairn_err_set(err, CAIRN_E_TOOBIG, "path too long: %s",
                               it->name);
        else
            rc = layer_writer_marker(w, name, err);
    }
out:
    if (fd >= 0)
        close(fd);
    archive_entry_free(ae);
    return rc;
}

/* Removes overlayfs' attributes from the entry at full (not following a
 * symlink) and gives an opaque directory trusted.overlay.opaque=y, as
 * the unpack writes it. */
static bool settle_attrs(const char *full, bool opaque)
{
    char list[LAYER_XATTR_LIST_MAX];
    ssize_t len = llistxattr(full, list, sizeof list);
    if (len < 0)
        return false;
    for (ssize_t i = 0; i < len; i += (ssize_t)strlen(list + i) + 1) {
        const char *nm = list + i;
        if ((strncmp(nm, "trusted.overlay.", 16) == 0 ||
             strncmp(nm, "user.overlay.", 13) == 0) &&
            lremovexattr(full, nm) != 0)
            return false;
    }
    return !opaque || lsetxattr(full, "trusted.overlay.opaque", "y", 1, 0) == 0;
}

/* Turns the upper directory, whose entries are all in the layer now, into
 * the tree cairn_layer_unpack makes from that layer (see
 * cairn_layer_add_upper_settle). Only metadata changes: nothing is
 * removed, so no directory's content or mtime moves; an upper directory
 * holding what the layer leaves out (a socket, a path of the skip list)
 * is not settled at all. */
static bool upper_settle(struct upper_walk *u, const char *upperdir,
                         int64_t epoch)
{
    if (u->left_out > 0 || fchmod(u->root, 0755) != 0)
        return false;
    if (!settle_attrs(upperdir, dir_is_opaque(u->root)))
        return false;
    /* libarchive gives an unpacked entry the time the unpack started as
     * its atime, and the tar's whole-second mtime. */
    struct timespec ts[2] = {{.tv_sec = time(NULL)}, {0}};
    for (size_t i = 0; i < u->n; i++) {
        const struct upper_item *it = &u->items[i];
        if (it->kind == UK_WHITEOUT)
            continue; /* hidden by overlayfs whatever its times */
        if (upper_full_path(u, item_rel(it), upperdir) != 0)
            return false;
        if (it->ovl_attrs && !settle_attrs(u->full, it->opaque))
            return false;
        ts[1].tv_sec = epoch >= 0 && it->mtime > epoch ? epoch : it->mtime;
        if (utimensat(u->root, item_rel(it), ts, AT_SYMLINK_NOFOLLOW) != 0)
            return false;
    }
    return true;
}

static int upper_add(struct cairn_layer_writer *w, const char *upperdir,
                     const char *const *skip, bool *settled,
                     struct cairn_err *err)
{
    if (w == NULL || upperdir == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "add_upper: bad arguments");
    if (w->broken)
        return layer_writer_fail_report(w, err);
    layer_mirror_drop(w); /* whiteouts, links, xattrs: left to the unpack */
    struct upper_walk u = {.root = -1, .skip = skip};
    int rc = 0;
    u.root_len = strlen(upperdir);
    u.full_cap = u.root_len + 1 + LAYER_PATH_MAX + 1;
    u.full = malloc(u.full_cap);
    if (u.full == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    u.root = open(upperdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (u.root < 0) {
        rc = -errno;
        cairn_err_set(err, rc, "open %s: %s", upperdir, cairn_strerror(rc));
        goto out;
    }
    if ((rc = upper_walk_dir(&u, "", SIZE_MAX, err)) != 0)
        goto out;
    /* The upper root itself has no entry; an opaque root hides every lower
     * layer, which only a marker at the top can say. */
    if (dir_is_opaque(u.root) &&
        (rc = layer_writer_marker(w, WH_OPAQUE, err)) != 0)
        goto out;
    if (u.n > 0)
        qsort(u.items, u.n, sizeof *u.items, item_cmp);
    if ((rc = upper_find_links(&u, err)) != 0)
        goto out;
    for (size_t i = 0; i < u.n && rc == 0; i++)
        rc = upper_emit(w, &u, upperdir, i, err);
    if (rc == 0 && settled != NULL)
        *settled = upper_settle(&u, upperdir, w->epoch);
out:
    for (size_t i = 0; i < u.n; i++) {
        free(u.items[i].name);
        free(u.items[i].rel);
    }
    free(u.items);
    free(u.full);
    if (u.root >= 0)
        close(u.root);
    return rc;
}

int cairn_layer_add_upper(struct cairn_layer_writer *w, const char *upperdir,
                          const char *const *skip, struct cairn_err *err)
{
    return upper_add(w, upperdir, skip, NULL, err);
}

int cairn_layer_add_upper_settle(struct cairn_layer_writer *w,
                                 const char *upperdir,
                                 const char *const *skip, bool *settled,
                                 struct cairn_err *err)
{
    if (settled == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "add_upper: bad arguments");
    *settled = false;
    return upper_add(w, upperdir, skip, settled, err);
}
