/* Resolving a COPY or ADD source in the build context (phase 1 of a
 * digest, cachekey/context.c): clean the source, expand wildcards one
 * component at a time (cachekey/glob.h), follow symlinks within the
 * context, drop ignored matches. See docs/context-hashing.md. */
#include "cachekey/context_source.h"

#include "cachekey/glob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CTX_MAX_LINKS 40 /* symlinks followed while resolving a source */

int ctx_path_join(char *out, size_t cap, const char *a, const char *b)
{
    int n = strcmp(a, ".") == 0 || a[0] == '\0'
                ? snprintf(out, cap, "%s", b)
                : snprintf(out, cap, "%s/%s", a, b);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* Lexically cleans src like Go's path.Clean relative to the root. Writes
 * "." for the root. A relative path whose ".." climbs above the root is
 * outside the context; a rooted one ("/..") stays at the root, as in
 * Go. */
int ctx_source_clean(const char *src, char *out, size_t cap)
{
    bool rooted = src[0] == '/';
    size_t len = 0;
    const char *p = src;
    while (*p) {
        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 1 && p[0] == '.') {
            /* nothing */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (len == 0) {
                if (!rooted)
                    return CAIRN_E_OUTSIDE;
            } else {
                char *slash = memrchr(out, '/', len);
                len = slash ? (size_t)(slash - out) : 0;
            }
        } else {
            if (len + (len ? 1 : 0) + n + 1 > cap)
                return -ENAMETOOLONG;
            if (len)
                out[len++] = '/';
            memcpy(out + len, p, n);
            len += n;
        }
        p += n;
    }
    if (len == 0)
        out[len++] = '.';
    out[len] = '\0';
    return 0;
}

/* Resolves path (context-relative, cleaned) by following every symlink on
 * it, scoped to the context: ".." may not climb above the root and an
 * absolute target must point below the context's own absolute path.
 * Writes the symlink-free context-relative path ("." for the root).
 * Returns 0, -ENOENT (some component is missing), CAIRN_E_OUTSIDE, -ELOOP
 * or another negative errno. */
static int resolve(const struct ctx_root *ctx, const char *path, char *out,
                   size_t cap, int *links)
{
    /* cur holds the resolved prefix, "" for the root; todo the components
     * still to walk, rewritten when a link's target is spliced in. */
    char todo[PATH_MAX], cur[PATH_MAX], tmp[PATH_MAX];
    size_t clen = 0;
    cur[0] = '\0';
    if (snprintf(todo, sizeof todo, "%s", path) >= (int)sizeof todo)
        return -ENAMETOOLONG;
    char *p = todo;
    while (*p) {
        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
        char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 1 && p[0] == '.') {
            p += n;
            continue;
        }
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (clen == 0)
                return CAIRN_E_OUTSIDE;
            char *slash = memrchr(cur, '/', clen);
            clen = slash ? (size_t)(slash - cur) : 0;
            cur[clen] = '\0';
            p += n;
            continue;
        }
        size_t oldlen = clen;
        if (clen + 1 + n + 1 > sizeof cur)
            return -ENAMETOOLONG;
        if (clen)
            cur[clen++] = '/';
        memcpy(cur + clen, p, n);
        clen += n;
        cur[clen] = '\0';
        p += n;
        struct stat st;
        if (fstatat(ctx->fd, cur, &st, AT_SYMLINK_NOFOLLOW) != 0)
            return ctx_errno_rc();
        if (!S_ISLNK(st.st_mode))
            continue;
        if (++*links > CTX_MAX_LINKS)
            return -ELOOP;
        ssize_t tn = readlinkat(ctx->fd, cur, tmp, sizeof tmp - 1);
        if (tn < 0)
            return ctx_errno_rc();
        tmp[tn] = '\0';
        const char *target = tmp;
        clen = oldlen; /* the link's parent */
        cur[clen] = '\0';
        if (tmp[0] == '/') {
            /* Only an absolute target inside the context's own absolute
             * path stays inside it. */
            size_t rl = ctx->abs_len;
            if (strncmp(tmp, ctx->abs, rl) != 0 ||
                (tmp[rl] != '\0' && tmp[rl] != '/' && rl > 1))
                return CAIRN_E_OUTSIDE;
            target = tmp + (rl > 1 ? rl : 0);
            clen = 0;
            cur[0] = '\0';
        }
        /* Splice: the target's components, then what was left to do. */
        char rest[PATH_MAX];
        if (snprintf(rest, sizeof rest, "%s/%s", target, p) >=
            (int)sizeof rest)
            return -ENAMETOOLONG;
        memcpy(todo, rest, strlen(rest) + 1);
        p = todo;
    }
    if (snprintf(out, cap, "%s", clen ? cur : ".") >= (int)cap)
        return -ENAMETOOLONG;
    return 0;
}

struct cand {
    char *display, *real;
};

struct cands {
    struct cand *v;
    size_t n, cap;
};

static void cands_free(struct cands *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].display);
        free(c->v[i].real);
    }
    free(c->v);
    memset(c, 0, sizeof *c);
}

static int cands_add(struct cands *c, const char *display, const char *real)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct cand *v = realloc(c->v, cap * sizeof *v);
        if (v == NULL)
            return CAIRN_E_NOMEM;
        c->v = v;
        c->cap = cap;
    }
    char *d = strdup(display), *r = strdup(real);
    if (d == NULL || r == NULL) {
        free(d);
        free(r);
        return CAIRN_E_NOMEM;
    }
    c->v[c->n++] = (struct cand){d, r};
    return 0;
}

/* Extends candidate (display, real) by one component: literally, or by
 * every directory entry the pattern matches. Missing paths are dropped,
 * like a glob that finds nothing. */
static int expand_one(const struct ctx_root *ctx, const struct cand *cd,
                      const char *comp, bool pattern, struct cands *next,
                      struct cairn_err *err, const char *src)
{
    char disp[PATH_MAX], path[PATH_MAX], real[PATH_MAX];
    if (!pattern) {
        if (ctx_path_join(disp, sizeof disp, cd->display, comp) ||
            ctx_path_join(path, sizeof path, cd->real, comp))
            return cairn_err_set(err, -ENAMETOOLONG, "%s: path too long",
                                 src);
        int links = 0;
        int rc = resolve(ctx, path, real, sizeof real, &links);
        if (rc == -ENOENT || rc == -ENOTDIR)
            return 0;
        if (rc == CAIRN_E_OUTSIDE)
            return cairn_err_set(err, rc, "forbidden path outside the build "
                                 "context: %s", src);
        if (rc != 0)
            return cairn_err_set(err, rc, "%s: %s", src, cairn_strerror(rc));
        rc = cands_add(next, disp, real);
        return rc ? cairn_err_set(err, rc, "out of memory") : 0;
    }
    int dfd = openat(ctx->fd, cd->real,
                     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return 0; /* not a directory: nothing below it matches */
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int m = ck_glob_match(comp, de->d_name);
        if (m < 0) {
            rc = cairn_err_set(err, CAIRN_E_PARSE,
                               "%s: syntax error in pattern", src);
            break;
        }
        if (m == 0)
            continue;
        struct cand sub = {.display = cd->display, .real = cd->real};
        rc = expand_one(ctx, &sub, de->d_name, false, next, err, src);
    }
    closedir(d);
    return rc;
}

static int match_cmp(const void *a, const void *b)
{
    return strcmp(((const struct match *)a)->display,
                  ((const struct match *)b)->display);
}

void ctx_matches_free(struct match *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].display);
        free(m[i].real);
    }
    free(m);
}

/* Phase 1: what src selects, sorted by display path. */
int ctx_source_resolve(const struct ctx_root *ctx, const char *src,
                       struct match **out, size_t *nout,
                       struct cairn_err *err)
{
    char clean[PATH_MAX];
    int rc = ctx_source_clean(src, clean, sizeof clean);
    if (rc == CAIRN_E_OUTSIDE)
        return cairn_err_set(err, rc, "forbidden path outside the build "
                             "context: %s", src);
    if (rc != 0)
        return cairn_err_set(err, rc, "%s: path too long", src);

    struct cands cur = {0}, next = {0};
    rc = cands_add(&cur, ".", ".");
    if (rc != 0)
        return cairn_err_set(err, rc, "out of memory");
    if (strcmp(clean, ".") != 0) {
        bool wild = ck_glob_has_wildcards(clean);
        char *save = NULL;
        for (char *comp = strtok_r(clean, "/", &save); comp != NULL;
             comp = strtok_r(NULL, "/", &save)) {
            bool pattern = wild && ck_glob_has_meta(comp);
            for (size_t i = 0; rc == 0 && i < cur.n; i++)
                rc = expand_one(ctx, &cur.v[i], comp, pattern, &next, err,
                                src);
            cands_free(&cur);
            cur = next;
            memset(&next, 0, sizeof next);
            if (rc != 0)
                break;
        }
        /* strtok_r wrote NULs into clean; rebuild it for messages. */
        (void)ctx_source_clean(src, clean, sizeof clean);
    }

    struct match *m = NULL;
    size_t nm = 0;
    if (rc == 0 && cur.n > 0) {
        m = calloc(cur.n, sizeof *m);
        if (m == NULL)
            rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; rc == 0 && i < cur.n; i++) {
        struct stat st;
        const char *real = cur.v[i].real;
        if (fstatat(ctx->fd, real, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* vanished meanwhile: as if absent */
        bool implicit = false;
        if (ctx_ignored(ctx->ignore, real) ||
            ctx_ignored(ctx->ignore, cur.v[i].display)) {
            if (!S_ISDIR(st.st_mode) ||
                !ck_ignore_has_exceptions_below(ctx->ignore, real))
                continue;
            implicit = true;
        }
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
            rc = cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                               "%s: cannot copy a special file (fifo, "
                               "socket or device): %s", src,
                               cur.v[i].display);
            break;
        }
        m[nm].display = cur.v[i].display;
        m[nm].real = cur.v[i].real;
        cur.v[i].display = cur.v[i].real = NULL;
        m[nm].st = st;
        m[nm].implicit = implicit;
        nm++;
    }
    cands_free(&cur);
    if (rc != 0) {
        ctx_matches_free(m, nm);
        return rc;
    }
    if (nm == 0) {
        free(m);
        return cairn_err_set(err, CAIRN_E_NOTFOUND, "\"/%s\": not found",
                             strcmp(clean, ".") == 0 ? "" : clean);
    }
    qsort(m, nm, sizeof *m, match_cmp);
    *out = m;
    *nout = nm;
    return 0;
}
