/* Build-context hashing. How it works and why: docs/context-hashing.md.
 *
 * A source digest runs in three phases:
 *  1. resolve (caller's thread, cachekey/context_source.c): clean the
 *     source, expand wildcards one component at a time, follow symlinks
 *     within the context, drop ignored matches;
 *  2. walk + hash (thread pool): each worker takes a task (a directory to
 *     list, or a large file to hash), takes the directory's names from the
 *     stat cache when it is unchanged (getdents64 otherwise), stats entries
 *     with fstatat relative to the directory fd, consults the stat cache,
 *     and hashes small files inline with openat + one read; large files
 *     become tasks of their own so several cores share big contexts; each
 *     worker finally sorts the entries it made;
 *  3. emit (caller's thread): merge the workers' sorted entries by (match,
 *     path) and feed the fields into one sha256.
 * Nothing in the digest depends on which worker saw what, so the result is
 * the same for any thread count.
 */
#include "cachekey/context.h"
#include "cachekey/context_source.h"

#include "cachekey/field.h"
#include "common/buf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CTX_MAX_THREADS 64
#define CTX_BUF_SIZE (1u << 20)     /* read buffer per worker */
#define CTX_SMALL_FILE (128u << 10) /* hashed inline by the dir walker */
#define CTX_DIRBUF_SIZE (32u << 10) /* getdents64 buffer per worker */
#define CTX_ARENA_CHUNK (256u << 10)
/* A stat-cache entry is only written for a file whose ctime is older than
 * this when the digest started. Timestamps come from a coarse clock (and
 * some filesystems keep whole seconds), so a file rewritten with the same
 * size right after we read it could otherwise keep the exact stat we
 * recorded and be wrongly reported unchanged ("racily clean", as git calls
 * it). Files younger than this are simply re-read next time. */
#define CTX_RACY_NS (2 * 1000000000LL)

/* ---- arena: stable storage for paths and entries of one digest ---- */

struct arena_chunk {
    struct arena_chunk *next;
    size_t size, used;
    max_align_t data[]; /* so entries placed here are aligned */
};

struct arena {
    struct arena_chunk *head, *cur;
};

static void *arena_alloc(struct arena *a, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    while (a->cur != NULL) {
        if (a->cur->size - a->cur->used >= n) {
            void *p = (char *)a->cur->data + a->cur->used;
            a->cur->used += n;
            return p;
        }
        if (a->cur->next == NULL)
            break;
        a->cur = a->cur->next;
        a->cur->used = 0;
    }
    size_t size = n > CTX_ARENA_CHUNK ? n : CTX_ARENA_CHUNK;
    struct arena_chunk *c = malloc(sizeof *c + size);
    if (c == NULL)
        return NULL;
#ifdef MADV_POPULATE_WRITE
    /* A fresh chunk is mmap'ed by malloc and would take one page fault per
     * 4 KiB as entries fill it: some 600 faults, a few ms of a warm
     * 20,000-file digest on a VM. One madvise maps it all at once. Only a
     * hint: an old kernel's EINVAL changes nothing. */
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t mask = pg > 0 ? (uintptr_t)pg - 1 : 4095;
    uintptr_t lo = ((uintptr_t)c + mask) & ~mask;
    uintptr_t hi = ((uintptr_t)c + sizeof *c + size) & ~mask;
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
#endif
    c->size = size;
    c->used = n;
    c->next = NULL;
    if (a->cur == NULL)
        a->head = c;
    else
        a->cur->next = c;
    a->cur = c;
    return c->data;
}

static char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* Keeps the chunks for the next digest. */
static void arena_reset(struct arena *a)
{
    a->cur = a->head;
    if (a->cur != NULL)
        a->cur->used = 0;
}

static void arena_free(struct arena *a)
{
    struct arena_chunk *c = a->head;
    while (c != NULL) {
        struct arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = a->cur = NULL;
}

/* ---- data ---- */

struct entry {
    const char *disk; /* context-relative path on disk ("." for the root) */
    const char *path; /* relative to the match ("." for the match) */
    const char *target; /* symlink target, or NULL */
    uint64_t size;
    uint32_t match; /* index into the sorted matches */
    uint32_t mode;  /* st_mode */
    char type;      /* 'f', 'd', 'l' */
    bool implicit;  /* an ignored dir, walked only for exceptions below */
    uint8_t digest[CK_SHA256_LEN];
};

enum task_kind { TASK_DIR, TASK_FILE };

struct task {
    enum task_kind kind;
    struct entry *e;
    /* For a directory: its stat, taken by the parent's walk before the
     * directory is listed, to look up and record its listing in the stat
     * cache; NULL when there is no cache (or no memory to keep it). */
    const struct stat *st;
};

struct worker {
    struct ck_sha256 *sha;
    uint8_t *buf;
    char *dbuf; /* CTX_DIRBUF_SIZE, 8-byte aligned (malloc) */
    char *lbuf; /* CK_STATCACHE_DIR_MAX: a directory listing (cache only) */
    struct arena arena;
    struct entry **ents;
    size_t nents, cap;
    uint64_t bytes_read;
    char abspath[2 * PATH_MAX];
};

/* One entry of a kept walk (opts.keep_walks): what
 * ck_context_source_walk hands its callback. */
struct kept_entry {
    char *path;
    char type;
    unsigned mode;
    bool has_digest;
    uint8_t digest[CK_SHA256_LEN];
};

/* What one ck_context_source_digest selected, newest first. */
struct kept_walk {
    struct kept_walk *next;
    char *src;
    struct kept_entry *v;
    size_t n;
};

static void kept_walk_free(struct kept_walk *k);

struct ck_context {
    struct kept_walk *kept; /* NULL unless keep_walks */
    bool keep_walks;
    int rootfd;
    char *rootabs; /* realpath of the root, for cache keys and symlinks */
    size_t rootabs_len;
    const struct ck_ignore *ignore;
    struct ck_statcache *cache;
    int nthreads;
    struct worker workers[CTX_MAX_THREADS];
};

/* State of one digest shared by its workers. */
struct run {
    struct ck_context *ctx;
    const char *src;
    int64_t t0_ns;
    struct match *matches;
    size_t nmatches;
    atomic_ulong nentries;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct task *tasks; /* LIFO: keeps the walk depth-first, memory small */
    size_t ntasks, tasks_cap;
    size_t active;
    int rc; /* first error; stops everyone */
    struct cairn_err err;
};

struct worker_arg {
    struct run *run;
    struct worker *w;
};

/* ---- errors ---- */

static void run_fail(struct run *r, int rc, const char *fmt, const char *a,
                     const char *b)
{
    pthread_mutex_lock(&r->mu);
    if (r->rc == 0) {
        __atomic_store_n(&r->rc, rc, __ATOMIC_RELAXED);
        cairn_err_set(&r->err, rc, fmt, a, b);
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
}

/* ---- tasks ---- */

static int run_push(struct run *r, enum task_kind kind, struct entry *e,
                    const struct stat *st)
{
    pthread_mutex_lock(&r->mu);
    if (r->ntasks == r->tasks_cap) {
        size_t cap = r->tasks_cap ? r->tasks_cap * 2 : 256;
        struct task *t = realloc(r->tasks, cap * sizeof *t);
        if (t == NULL) {
            pthread_mutex_unlock(&r->mu);
            return CAIRN_E_NOMEM;
        }
        r->tasks = t;
        r->tasks_cap = cap;
    }
    r->tasks[r->ntasks++] = (struct task){.kind = kind, .e = e, .st = st};
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

static struct entry *entry_new(struct run *r, struct worker *w)
{
    if (atomic_fetch_add(&r->nentries, 1) >= CK_CONTEXT_MAX_FILES) {
        run_fail(r, CAIRN_E_TOOBIG, "%s%s selects more than "
                 "1000000 entries (CK_CONTEXT_MAX_FILES)", r->src, "");
        return NULL;
    }
    if (w->nents == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 1024;
        struct entry **n = realloc(w->ents, cap * sizeof *n);
        if (n == NULL)
            goto nomem;
        w->ents = n;
        w->cap = cap;
    }
    struct entry *e = arena_alloc(&w->arena, sizeof *e);
    if (e == NULL)
        goto nomem;
    memset(e, 0, sizeof *e);
    w->ents[w->nents++] = e;
    return e;
nomem:
    run_fail(r, CAIRN_E_NOMEM, "%s%s", "out of memory", "");
    return NULL;
}

/* ---- hashing ---- */

/* Builds the stat-cache key "<root>/<disk>" in w->abspath. */
static const char *abs_key(struct ck_context *ctx, struct worker *w,
                           const char *disk)
{
    size_t n = strlen(disk);
    if (ctx->rootabs_len + 1 + n >= sizeof w->abspath)
        return NULL;
    memcpy(w->abspath, ctx->rootabs, ctx->rootabs_len);
    size_t pos = ctx->rootabs_len;
    if (strcmp(disk, ".") != 0) {
        if (pos == 0 || w->abspath[pos - 1] != '/')
            w->abspath[pos++] = '/';
        memcpy(w->abspath + pos, disk, n);
        pos += n;
    }
    w->abspath[pos] = '\0';
    return w->abspath;
}

static bool cache_lookup(struct run *r, struct worker *w, struct entry *e,
                         const struct stat *st)
{
    struct ck_context *ctx = r->ctx;
    if (ctx->cache == NULL)
        return false;
    const char *key = abs_key(ctx, w, e->disk);
    return key != NULL && ck_statcache_lookup(ctx->cache, key, st, e->digest);
}

/* Hashes the regular file e, opened relative to dirfd as name; st is the
 * stat the walk took before opening it. That stat (not one taken after the
 * read) is what the cache records: if the file changes while we read it,
 * its ctime moves past the recorded one and the entry never hits again,
 * whereas a stat taken afterwards could pair new metadata with old bytes.
 * So no fstat per file is needed: O_NOFOLLOW keeps a symlink swapped in
 * from leading outside, O_NONBLOCK keeps a fifo from hanging us, and
 * reading more than st_size bytes (a device, a growing file) fails. The
 * cache learns the digest only if exactly st_size bytes were read and the
 * file is old enough not to be racy (CTX_RACY_NS). */
static int hash_file(struct run *r, struct worker *w, int dirfd,
                     const char *name, struct entry *e, const struct stat *st)
{
    if (st->st_size == 0) /* nothing to read: no need to open it */
        return ck_sha256_final(w->sha, e->digest);
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
                                     O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int rc = ctx_errno_rc();
        run_fail(r, rc, "reading %s: %s", e->disk, strerror(-rc));
        return rc;
    }
    int rc = 0;
    uint64_t size = (uint64_t)st->st_size;
    if (size > CTX_SMALL_FILE)
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, w->buf, CTX_BUF_SIZE);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = ctx_errno_rc();
            run_fail(r, rc, "reading %s: %s", e->disk, strerror(-rc));
            goto out;
        }
        if (n == 0)
            break;
        total += (uint64_t)n;
        if (total > size) {
            rc = CAIRN_E_IO;
            run_fail(r, rc, "%s%s changed while the context was hashed",
                     e->disk, "");
            goto out;
        }
        if ((rc = ck_sha256_update(w->sha, w->buf, (size_t)n)) != 0) {
            run_fail(r, rc, "%s%s: sha256 failed", e->disk, "");
            goto out;
        }
        /* Having read st_size bytes, assume end of file: skipping the
         * read() that would return 0 saves a syscall per small file. A
         * file that grew meanwhile has a new stat and is re-read next
         * time. */
        if (total == size)
            break;
    }
    w->bytes_read += total;
    if ((rc = ck_sha256_final(w->sha, e->digest)) != 0) {
        run_fail(r, rc, "%s%s: sha256 failed", e->disk, "");
        goto out;
    }
    if (r->ctx->cache != NULL && total == size &&
        (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec <
            r->t0_ns - CTX_RACY_NS) {
        const char *key = abs_key(r->ctx, w, e->disk);
        /* A failed put only costs a re-read next time. */
        if (key != NULL)
            (void)ck_statcache_put(r->ctx->cache, key, st, e->digest);
    }
out:
    close(fd);
    return rc;
}

/* ---- walking ---- */

/* Directory listing straight from getdents64 into the worker's buffer:
 * fdopendir would add a malloc and two fcntl calls per directory, which
 * is measurable when a warm digest does little else than stat. */
struct dirstream {
    int fd;
    char *buf;
    size_t len, pos;
};

/* 1 and *out set, 0 at the end, or a negative errno. */
static int ds_next(struct dirstream *ds, struct dirent64 **out)
{
    if (ds->pos >= ds->len) {
        ssize_t n;
        do
            n = getdents64(ds->fd, ds->buf, CTX_DIRBUF_SIZE);
        while (n < 0 && errno == EINTR);
        if (n < 0)
            return ctx_errno_rc();
        if (n == 0)
            return 0;
        ds->len = (size_t)n;
        ds->pos = 0;
    }
    struct dirent64 *de = (struct dirent64 *)(void *)(ds->buf + ds->pos);
    ds->pos += de->d_reclen;
    *out = de;
    return 1;
}

/* Records the child name of directory dir (open as dfd), whose d_type the
 * listing gave. dlen and plen: lengths of dir's disk path (0 at the root)
 * and of its path relative to the match (0 for the match). Returns 0 to go
 * on (also for a child skipped as ignored, special or vanished), or the
 * error that stops the walk. */
static int walk_child(struct run *r, struct worker *w, const struct entry *dir,
                      int dfd, const char *name, unsigned char d_type,
                      size_t dlen, size_t plen)
{
    struct ck_context *ctx = r->ctx;
    int rc = 0;
    size_t nlen = strlen(name);
    if (dlen + 1 + nlen >= PATH_MAX) {
        rc = -ENAMETOOLONG;
        run_fail(r, rc, "%s/%s: path too long", dir->disk, name);
        return rc;
    }
    char *disk = arena_alloc(&w->arena, dlen + 1 + nlen + 1);
    if (disk == NULL) {
        rc = CAIRN_E_NOMEM;
        run_fail(r, rc, "%s%s", "out of memory", "");
        return rc;
    }
    if (dlen > 0) {
        memcpy(disk, dir->disk, dlen);
        disk[dlen] = '/';
        memcpy(disk + dlen + 1, name, nlen + 1);
    } else {
        memcpy(disk, name, nlen + 1);
    }
    bool implicit = false;
    if (ctx_ignored(ctx->ignore, disk)) {
        /* An ignored directory is entered only when an exception
         * pattern could re-include something below it. */
        if (d_type != DT_DIR && d_type != DT_UNKNOWN)
            return 0;
        if (!ck_ignore_has_exceptions_below(ctx->ignore, disk))
            return 0;
        implicit = true;
    }
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) /* deleted under us: as if absent */
            return 0;
        rc = ctx_errno_rc();
        run_fail(r, rc, "stat %s: %s", disk, strerror(-rc));
        return rc;
    }
    if (implicit && !S_ISDIR(st.st_mode))
        return 0;
    char type;
    if (S_ISREG(st.st_mode))
        type = 'f';
    else if (S_ISDIR(st.st_mode))
        type = 'd';
    else if (S_ISLNK(st.st_mode))
        type = 'l';
    else
        return 0; /* fifo, socket, device: not part of the context */
    struct entry *e = entry_new(r, w);
    if (e == NULL) {
        rc = __atomic_load_n(&r->rc, __ATOMIC_RELAXED);
        return rc;
    }
    e->disk = disk;
    size_t disklen = (dlen ? dlen + 1 : 0) + nlen;
    e->path = disk + disklen - (plen ? plen + 1 + nlen : nlen);
    e->match = dir->match;
    e->mode = (uint32_t)st.st_mode;
    e->type = type;
    e->implicit = implicit;
    e->size = type == 'f' ? (uint64_t)st.st_size : 0;
    if (type == 'd') {
        /* Kept for the directory's own listing lookup (see walk_dir);
         * without memory for it the listing is simply read. */
        struct stat *dst = NULL;
        if (ctx->cache != NULL && (dst = arena_alloc(&w->arena, sizeof *dst)))
            *dst = st;
        rc = run_push(r, TASK_DIR, e, dst);
        if (rc != 0)
            run_fail(r, rc, "%s%s", "out of memory", "");
    } else if (type == 'l') {
        char tbuf[PATH_MAX];
        ssize_t n = readlinkat(dfd, name, tbuf, sizeof tbuf);
        if (n < 0 || (size_t)n >= sizeof tbuf) {
            rc = n < 0 ? ctx_errno_rc() : -ENAMETOOLONG;
            run_fail(r, rc, "readlink %s: %s", disk, strerror(-rc));
            return rc;
        }
        e->target = arena_strndup(&w->arena, tbuf, (size_t)n);
        if (e->target == NULL) {
            rc = CAIRN_E_NOMEM;
            run_fail(r, rc, "%s%s", "out of memory", "");
        }
    } else if (!cache_lookup(r, w, e, &st)) {
        if (st.st_size <= (off_t)CTX_SMALL_FILE) {
            rc = hash_file(r, w, dfd, name, e, &st);
        } else {
            rc = run_push(r, TASK_FILE, e, NULL);
            if (rc != 0)
                run_fail(r, rc, "%s%s", "out of memory", "");
        }
    }
    return rc;
}

/* Whether the cached listing buf[0..len) is well formed: entries of one
 * d_type byte and a NUL-terminated name that is not empty, "." or ".."
 * and holds no '/'. The cache lives on disk; a damaged or foreign value
 * must not make the walk look outside the directory. */
static bool listing_ok(const char *buf, size_t len)
{
    size_t pos = 0;
    while (pos < len) {
        const char *name = buf + pos + 1;
        if (pos + 1 >= len)
            return false;
        const char *nul = memchr(name, '\0', len - pos - 1);
        if (nul == NULL || nul == name ||
            memchr(name, '/', (size_t)(nul - name)) != NULL)
            return false;
        if (name[0] == '.' &&
            (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
            return false;
        pos = (size_t)(nul - buf) + 1;
    }
    return true;
}

/* Lists the directory e, whose stat (taken by the parent's walk) is st or
 * NULL, and records its children.
 *
 * With a stat cache, an unchanged directory's names come from the cache
 * instead of getdents64: on ext4 listing even a one-block directory builds
 * a hashed tree of its entries in the kernel, and that was a sixth of a
 * warm digest. Every child is still stat'ed (content can change without
 * the directory changing), so only the listing is saved. The directory is
 * then opened O_PATH, which is all fstatat/openat relative to it need. */
static int walk_dir(struct run *r, struct worker *w, struct entry *dir,
                    const struct stat *st)
{
    struct ck_context *ctx = r->ctx;
    size_t llen = 0;
    bool cached = false;
    if (ctx->cache != NULL && st != NULL && w->lbuf != NULL) {
        const char *key = abs_key(ctx, w, dir->disk);
        cached = key != NULL &&
                 ck_statcache_dir_lookup(ctx->cache, key, st, w->lbuf,
                                         CK_STATCACHE_DIR_MAX, &llen) &&
                 listing_ok(w->lbuf, llen);
    }
    int dfd = openat(ctx->rootfd, dir->disk,
                     (cached ? O_PATH : O_RDONLY) | O_DIRECTORY |
                         O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        int rc = ctx_errno_rc();
        run_fail(r, rc, "reading %s: %s", dir->disk, strerror(-rc));
        return rc;
    }
    bool at_root = strcmp(dir->disk, ".") == 0;
    size_t dlen = at_root ? 0 : strlen(dir->disk);
    /* Children's paths relative to the match are suffixes of their disk
     * paths: the match's disk path is a prefix of every disk path below. */
    size_t plen = strcmp(dir->path, ".") == 0 ? 0 : strlen(dir->path);
    int rc = 0;
    if (cached) {
        for (size_t pos = 0; rc == 0 && pos < llen;) {
            unsigned char type = (unsigned char)w->lbuf[pos];
            const char *name = w->lbuf + pos + 1;
            pos += 1 + strlen(name) + 1;
            /* Another worker failed: stop early (a relaxed read
             * suffices). */
            if (__atomic_load_n(&r->rc, __ATOMIC_RELAXED) != 0)
                break;
            rc = walk_child(r, w, dir, dfd, name, type, dlen, plen);
        }
        close(dfd);
        return rc;
    }

    /* The listing is recorded with a stat of the open directory taken
     * before reading it (as for files: a change during the read moves its
     * ctime on, so the entry never hits), and only when that ctime is
     * older than the racy window. fstat of the fd, not the parent's stat,
     * so the listing is paired with the inode actually read even if the
     * path was swapped meanwhile. */
    struct stat dst;
    bool record = ctx->cache != NULL && w->lbuf != NULL &&
                  fstat(dfd, &dst) == 0 &&
                  (int64_t)dst.st_ctim.tv_sec * 1000000000 +
                          dst.st_ctim.tv_nsec <
                      r->t0_ns - CTX_RACY_NS;
    struct dirstream ds = {.fd = dfd, .buf = w->dbuf};
    struct dirent64 *de = NULL;
    int nr = 0;
    while (rc == 0 && (nr = ds_next(&ds, &de)) > 0) {
        const char *name = de->d_name;
        if (name[0] == '.' &&
            (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
            continue;
        /* Another worker failed: stop early (a relaxed read suffices). */
        if (__atomic_load_n(&r->rc, __ATOMIC_RELAXED) != 0)
            break;
        if (record) {
            size_t n = strlen(name);
            if (llen + 1 + n + 1 <= CK_STATCACHE_DIR_MAX) {
                w->lbuf[llen] = (char)de->d_type;
                memcpy(w->lbuf + llen + 1, name, n + 1);
                llen += 1 + n + 1;
            } else {
                record = false; /* too big to keep: listed every time */
            }
        }
        rc = walk_child(r, w, dir, dfd, name, de->d_type, dlen, plen);
    }
    if (rc == 0 && nr < 0) {
        rc = nr;
        run_fail(r, rc, "reading %s: %s", dir->disk, strerror(-rc));
    }
    if (rc == 0 && nr == 0 && record) {
        const char *key = abs_key(ctx, w, dir->disk);
        /* A failed put only costs a listing next time. */
        if (key != NULL)
            (void)ck_statcache_dir_put(ctx->cache, key, &dst, w->lbuf, llen);
    }
    close(dfd);
    return rc;
}

static void run_task(struct run *r, struct worker *w, const struct task *t)
{
    if (t->kind == TASK_DIR) {
        (void)walk_dir(r, w, t->e, t->st);
        return;
    }
    /* The walker's stat was not kept (entries stay small); a fresh one,
     * still taken before the read, is as good for the cache. */
    struct stat st;
    if (fstatat(r->ctx->rootfd, t->e->disk, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        int rc = ctx_errno_rc();
        run_fail(r, rc, "stat %s: %s", t->e->disk, strerror(-rc));
        return;
    }
    (void)hash_file(r, w, r->ctx->rootfd, t->e->disk, t->e, &st);
}

static int entry_cmp(const void *a, const void *b);

static void *worker_main(void *p)
{
    struct worker_arg *a = p;
    struct run *r = a->run;
    bool ok;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (r->ntasks == 0 && r->active > 0 && r->rc == 0)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->rc != 0 || r->ntasks == 0)
            break;
        struct task t = r->tasks[--r->ntasks];
        r->active++;
        pthread_mutex_unlock(&r->mu);
        run_task(r, a->w, &t);
        pthread_mutex_lock(&r->mu);
        r->active--;
        if (r->active == 0 && r->ntasks == 0)
            pthread_cond_broadcast(&r->cv);
    }
    ok = r->rc == 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    /* Each worker sorts the entries it made, on its own core, and collect
     * merges the sorted runs: sorting all entries on the caller's thread
     * after the pool was a serial tail of a warm digest. */
    if (ok && a->w->nents > 1)
        qsort(a->w->ents, a->w->nents, sizeof *a->w->ents, entry_cmp);
    return NULL;
}

/* Runs the queued tasks on the pool; the calling thread is worker 0. */
static void run_pool(struct run *r)
{
    struct ck_context *ctx = r->ctx;
    struct worker_arg args[CTX_MAX_THREADS];
    pthread_t tids[CTX_MAX_THREADS];
    int started = 0;
    for (int i = 0; i < ctx->nthreads; i++)
        args[i] = (struct worker_arg){.run = r, .w = &ctx->workers[i]};
    for (int i = 1; i < ctx->nthreads; i++) {
        /* Fewer threads than asked only makes hashing slower. */
        if (pthread_create(&tids[i], NULL, worker_main, &args[i]) != 0)
            break;
        started = i;
    }
    worker_main(&args[0]);
    for (int i = 1; i <= started; i++)
        pthread_join(tids[i], NULL);
}

/* ---- collecting and ordering ---- */

static int entry_cmp(const void *a, const void *b)
{
    const struct entry *x = *(const struct entry *const *)a;
    const struct entry *y = *(const struct entry *const *)b;
    if (x->match != y->match)
        return x->match < y->match ? -1 : 1;
    return strcmp(x->path, y->path);
}

/* Whether some non-implicit entry of e's match lies below e. */
static bool has_real_descendant(struct entry **v, size_t n, size_t i)
{
    const struct entry *e = v[i];
    size_t plen = strlen(e->path);
    bool all = strcmp(e->path, ".") == 0;
    /* Descendants sort after "path/", which sorts after path itself, so a
     * forward scan from i finds them; a binary search would be faster, but
     * implicit directories are rare. */
    for (size_t j = i + 1; j < n && v[j]->match == e->match; j++) {
        const struct entry *c = v[j];
        if (!all && (strncmp(c->path, e->path, plen) != 0))
            break;
        if (!all && c->path[plen] != '/')
            continue;
        if (!c->implicit)
            return true;
    }
    return false;
}

/* Merges the sorted runs v[b[i]..b[i+1]) for i < nruns (b has nruns + 1
 * bounds and is clobbered) into one sorted v, by pairwise rounds through
 * tmp (as long as v): log2(nruns) linear passes. */
static void merge_runs(struct entry **v, struct entry **tmp, size_t *b,
                       int nruns)
{
    struct entry **src = v, **dst = tmp;
    size_t n = b[nruns];
    while (nruns > 1) {
        int k = 0;
        for (int i = 0; i < nruns; i += 2) {
            size_t lo = b[i], mid = b[i + 1];
            size_t hi = i + 2 <= nruns ? b[i + 2] : mid;
            size_t x = lo, y = mid, o = lo;
            while (x < mid && y < hi)
                dst[o++] = entry_cmp(&src[y], &src[x]) < 0 ? src[y++]
                                                          : src[x++];
            while (x < mid)
                dst[o++] = src[x++];
            while (y < hi)
                dst[o++] = src[y++];
            b[k++] = lo;
        }
        b[k] = n;
        nruns = k;
        struct entry **t = src;
        src = dst;
        dst = t;
    }
    if (src != v)
        memcpy(v, src, n * sizeof *v);
}

struct collected {
    struct match *matches;
    size_t nmatches;
    struct entry **v;
    size_t n;
    uint64_t bytes_read;
};

static void collected_free(struct collected *c)
{
    ctx_matches_free(c->matches, c->nmatches);
    free(c->v);
    memset(c, 0, sizeof *c);
}

/* Phases 1 and 2: resolve src, walk and hash, return sorted entries. */
static int collect(struct ck_context *ctx, const char *src,
                   struct collected *out, struct cairn_err *err)
{
    memset(out, 0, sizeof *out);
    struct ctx_root root = {ctx->rootfd, ctx->rootabs, ctx->rootabs_len,
                            ctx->ignore};
    int rc = ctx_source_resolve(&root, src, &out->matches, &out->nmatches,
                                err);
    if (rc != 0)
        return rc;

    struct run r = {.ctx = ctx, .src = src};
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    r.t0_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    atomic_init(&r.nentries, 0);
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    for (int i = 0; i < ctx->nthreads; i++) {
        arena_reset(&ctx->workers[i].arena);
        ctx->workers[i].nents = 0;
        ctx->workers[i].bytes_read = 0;
    }

    /* Seed: the matches themselves, walked or hashed by the pool. */
    struct worker *w0 = &ctx->workers[0];
    for (size_t i = 0; i < out->nmatches && r.rc == 0; i++) {
        struct match *m = &out->matches[i];
        struct entry *e = entry_new(&r, w0);
        if (e == NULL)
            break;
        e->disk = m->real;
        e->path = ".";
        e->match = (uint32_t)i;
        e->mode = (uint32_t)m->st.st_mode;
        e->implicit = m->implicit;
        if (S_ISDIR(m->st.st_mode)) {
            e->type = 'd';
            rc = run_push(&r, TASK_DIR, e, &m->st);
        } else {
            e->type = 'f';
            e->size = (uint64_t)m->st.st_size;
            if (!cache_lookup(&r, w0, e, &m->st))
                rc = run_push(&r, TASK_FILE, e, NULL);
        }
        if (rc != 0)
            run_fail(&r, rc, "%s%s", "out of memory", "");
    }
    if (r.rc == 0)
        run_pool(&r);
    free(r.tasks);
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
    if (r.rc != 0) {
        if (err != NULL)
            *err = r.err;
        collected_free(out);
        return r.rc;
    }

    size_t total = 0;
    for (int i = 0; i < ctx->nthreads; i++) {
        total += ctx->workers[i].nents;
        out->bytes_read += ctx->workers[i].bytes_read;
    }
    out->v = malloc((total ? total : 1) * sizeof *out->v);
    struct entry **tmp = malloc((total ? total : 1) * sizeof *tmp);
    if (out->v == NULL || tmp == NULL) {
        free(tmp);
        collected_free(out);
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    }
    /* Each worker's entries arrive sorted (worker_main). */
    size_t bounds[CTX_MAX_THREADS + 1];
    int nruns = 0;
    for (int i = 0; i < ctx->nthreads; i++) {
        if (ctx->workers[i].nents == 0)
            continue;
        bounds[nruns++] = out->n;
        memcpy(out->v + out->n, ctx->workers[i].ents,
               ctx->workers[i].nents * sizeof *out->v);
        out->n += ctx->workers[i].nents;
    }
    bounds[nruns] = out->n;
    merge_runs(out->v, tmp, bounds, nruns);
    free(tmp);

    /* Drop ignored directories that were entered for exceptions but hold
     * nothing included: Docker's context would not contain them. Scanning
     * from the end settles children before parents. */
    bool any_implicit = false;
    for (size_t i = 0; i < out->n && !any_implicit; i++)
        any_implicit = out->v[i]->implicit;
    if (any_implicit) {
        for (size_t i = out->n; i-- > 0;)
            if (out->v[i]->implicit &&
                !has_real_descendant(out->v, out->n, i))
                out->v[i]->type = 0; /* dropped */
        size_t k = 0;
        for (size_t i = 0; i < out->n; i++)
            if (out->v[i]->type != 0)
                out->v[k++] = out->v[i];
        out->n = k;
        if (k == 0) {
            char clean[PATH_MAX];
            if (ctx_source_clean(src, clean, sizeof clean) != 0)
                clean[0] = '\0';
            collected_free(out);
            return cairn_err_set(err, CAIRN_E_NOTFOUND,
                                 "\"/%s\": not found",
                                 strcmp(clean, ".") == 0 ? "" : clean);
        }
    }
    return 0;
}

/* ---- public API ---- */

int ck_context_open(const char *dir, const struct ck_context_opts *opts,
                    struct ck_context **out, struct cairn_err *err)
{
    struct ck_context *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    ctx->rootfd = -1;
    int rc = 0;
    ctx->rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ctx->rootfd < 0) {
        rc = ctx_errno_rc();
        cairn_err_set(err, rc, "build context %s: %s", dir, strerror(-rc));
        goto fail;
    }
    ctx->rootabs = realpath(dir, NULL);
    if (ctx->rootabs == NULL) {
        rc = ctx_errno_rc();
        cairn_err_set(err, rc, "build context %s: %s", dir, strerror(-rc));
        goto fail;
    }
    ctx->rootabs_len = strlen(ctx->rootabs);
    if (opts != NULL) {
        ctx->ignore = opts->ignore;
        ctx->cache = opts->cache;
        ctx->keep_walks = opts->keep_walks;
        ctx->nthreads = opts->threads;
    }
    if (ctx->nthreads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        ctx->nthreads = n > 0 ? (int)(n < CTX_MAX_THREADS ? n : CTX_MAX_THREADS)
                              : 1;
    }
    if (ctx->nthreads > CTX_MAX_THREADS)
        ctx->nthreads = CTX_MAX_THREADS;
    for (int i = 0; i < ctx->nthreads; i++) {
        struct worker *w = &ctx->workers[i];
        rc = ck_sha256_new(&w->sha);
        if (rc == 0) {
            w->buf = malloc(CTX_BUF_SIZE);
            w->dbuf = malloc(CTX_DIRBUF_SIZE);
            if (ctx->cache != NULL)
                w->lbuf = malloc(CK_STATCACHE_DIR_MAX);
            if (w->buf == NULL || w->dbuf == NULL ||
                (ctx->cache != NULL && w->lbuf == NULL))
                rc = CAIRN_E_NOMEM;
        }
        if (rc != 0) {
            cairn_err_set(err, rc, "context: %s", cairn_strerror(rc));
            goto fail;
        }
    }
    *out = ctx;
    return 0;
fail:
    ck_context_close(ctx);
    return rc;
}

void ck_context_close(struct ck_context *ctx)
{
    if (ctx == NULL)
        return;
    if (ctx->cache != NULL)
        (void)ck_statcache_flush(ctx->cache, NULL);
    for (int i = 0; i < CTX_MAX_THREADS; i++) {
        struct worker *w = &ctx->workers[i];
        ck_sha256_free(w->sha);
        free(w->buf);
        free(w->dbuf);
        free(w->lbuf);
        arena_free(&w->arena);
        free(w->ents);
    }
    while (ctx->kept != NULL) {
        struct kept_walk *k = ctx->kept;
        ctx->kept = k->next;
        kept_walk_free(k);
    }
    if (ctx->rootfd >= 0)
        close(ctx->rootfd);
    free(ctx->rootabs);
    free(ctx);
}

static const char *type_str(char t)
{
    return t == 'f' ? "f" : t == 'd' ? "d" : "l";
}

/* Writes one field (8-byte big-endian length, then the bytes) at p, the
 * bytes ck_field_append would produce, and returns the end. */
static char *field_put(char *p, const void *s, size_t n)
{
    for (int i = 7; i >= 0; i--)
        *p++ = (char)(uint8_t)((uint64_t)n >> (8 * i));
    memcpy(p, s, n);
    return p + n;
}

/* Appends the five fields of e (path, type, mode, target, digest) to b.
 * One reservation and straight stores per entry, instead of five
 * ck_field_append calls and an snprintf for the mode, halve the emit
 * phase of a warm 20,000-file digest, which runs on one core after the
 * parallel walk. The bytes are the same (golden vectors in test_key). */
static int emit_entry(struct cairn_buf *b, const struct entry *e)
{
    size_t plen = strlen(e->path);
    size_t tlen = e->target != NULL ? strlen(e->target) : 0;
    size_t dlen = e->type == 'f' ? CK_SHA256_LEN : 0;
    int rc = cairn_buf_reserve(b, 5 * 8 + plen + 1 + 4 + tlen + dlen);
    if (rc != 0)
        return rc;
    /* Four octal digits of the permission bits, as "%04o" prints them. */
    char mode[4] = {(char)('0' + ((e->mode >> 9) & 7)),
                    (char)('0' + ((e->mode >> 6) & 7)),
                    (char)('0' + ((e->mode >> 3) & 7)),
                    (char)('0' + (e->mode & 7))};
    char *p = b->data + b->len;
    p = field_put(p, e->path, plen);
    p = field_put(p, type_str(e->type), 1);
    p = field_put(p, mode, sizeof mode);
    p = field_put(p, e->target != NULL ? e->target : "", tlen);
    p = field_put(p, e->digest, dlen);
    b->len = (size_t)(p - b->data);
    b->data[b->len] = '\0'; /* cairn_buf keeps its data NUL-terminated */
    return 0;
}

static void kept_walk_free(struct kept_walk *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->v[i].path);
    free(k->v);
    free(k->src);
    free(k);
}

/* The context-relative path of an entry, as ck_context_source_walk gives
 * it. */
static void entry_relpath(char *out, size_t cap, const char *match,
                          const char *rel)
{
    if (strcmp(rel, ".") == 0)
        snprintf(out, cap, "%s", match);
    else
        (void)ctx_path_join(out, cap, match, rel);
}

/* Keeps c's selection for a later ck_context_source_walk of src. Out of
 * memory, or a selection over CK_CONTEXT_KEEP_MAX, only loses the
 * shortcut: the walk then reads the disk. */
static void keep_walk(struct ck_context *ctx, const char *src,
                      const struct collected *c)
{
    if (c->n > CK_CONTEXT_KEEP_MAX)
        return;
    struct kept_walk *k = calloc(1, sizeof *k);
    if (k == NULL)
        return;
    k->src = strdup(src);
    k->v = calloc(c->n ? c->n : 1, sizeof *k->v);
    bool ok = k->src != NULL && k->v != NULL;
    for (size_t i = 0; ok && i < c->n; i++) {
        const struct entry *e = c->v[i];
        struct kept_entry *ke = &k->v[i];
        char path[2 * PATH_MAX];
        entry_relpath(path, sizeof path, c->matches[e->match].display,
                      e->path);
        ke->path = strdup(path);
        ok = ke->path != NULL;
        ke->type = e->type;
        ke->mode = e->mode & 07777u;
        ke->has_digest = e->type == 'f';
        if (ke->has_digest)
            memcpy(ke->digest, e->digest, sizeof ke->digest);
        k->n = i + 1;
    }
    if (!ok) {
        kept_walk_free(k);
        return;
    }
    k->next = ctx->kept;
    ctx->kept = k;
}

int ck_context_source_digest(struct ck_context *ctx, const char *src,
                             uint8_t out[CK_SHA256_LEN],
                             struct ck_source_stats *stats,
                             struct cairn_err *err)
{
    struct collected c;
    int rc = collect(ctx, src, &c, err);
    /* New digests go to LMDB now, in one write transaction per source, so
     * a later COPY of the same files in this build already hits. */
    if (ctx->cache != NULL)
        (void)ck_statcache_flush(ctx->cache, NULL);
    if (rc != 0)
        return rc;

    struct ck_source_stats s = {.bytes_read = c.bytes_read};
    struct ck_sha256 *h = NULL;
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    rc = ck_sha256_new(&h);
    /* The fields are encoded into a buffer and hashed in 64 KiB pieces:
     * the bytes are exactly those of ck_field_hash per field, but one
     * EVP update per piece instead of two per field keeps a 20,000-file
     * warm digest from spending its time in call overhead. */
    uint32_t last = UINT32_MAX;
    for (size_t i = 0; rc == 0 && i < c.n; i++) {
        const struct entry *e = c.v[i];
        if (e->match != last) {
            last = e->match;
            s.matches++;
            rc = ck_field_append_str(&b, "match");
            if (rc == 0)
                rc = ck_field_append_str(&b, c.matches[e->match].display);
        }
        if (rc == 0)
            rc = emit_entry(&b, e);
        if (e->type == 'f') {
            s.files++;
            s.bytes += e->size;
        } else if (e->type == 'd') {
            s.dirs++;
        } else {
            s.links++;
        }
        if (rc == 0 && (b.len >= (64u << 10) || i + 1 == c.n)) {
            rc = ck_sha256_update(h, b.data, b.len);
            cairn_buf_reset(&b);
        }
    }
    if (rc == 0)
        rc = ck_sha256_final(h, out);
    if (rc != 0)
        cairn_err_set(err, rc, "%s: %s", src, cairn_strerror(rc));
    else if (stats != NULL)
        *stats = s;
    if (rc == 0 && ctx->keep_walks)
        keep_walk(ctx, src, &c);
    ck_sha256_free(h);
    cairn_buf_free(&b);
    collected_free(&c);
    return rc;
}

/* ck_context_source_walk's view of an entry: one context-relative path. */
struct walk_adapter {
    ck_context_entry_fn fn;
    void *arg;
};

static int walk_one(void *arg, const struct ck_context_entry *e)
{
    const struct walk_adapter *w = arg;
    char path[2 * PATH_MAX];
    entry_relpath(path, sizeof path, e->match, e->rel);
    return w->fn(w->arg, path, e->type, e->mode & 07777, e->digest);
}

int ck_context_source_walk(struct ck_context *ctx, const char *src,
                           ck_context_entry_fn fn, void *arg,
                           struct cairn_err *err)
{
    for (const struct kept_walk *k = ctx->kept; k != NULL; k = k->next) {
        if (strcmp(k->src, src) != 0)
            continue;
        int rc = 0;
        for (size_t i = 0; rc == 0 && i < k->n; i++) {
            const struct kept_entry *e = &k->v[i];
            rc = fn(arg, e->path, e->type, e->mode,
                    e->has_digest ? e->digest : NULL);
        }
        return rc;
    }
    struct walk_adapter w = {fn, arg};
    return ck_context_source_each(ctx, src, walk_one, &w, err);
}

int ck_context_source_each(struct ck_context *ctx, const char *src,
                           ck_context_each_fn fn, void *arg,
                           struct cairn_err *err)
{
    struct collected c;
    int rc = collect(ctx, src, &c, err);
    if (ctx->cache != NULL)
        (void)ck_statcache_flush(ctx->cache, NULL);
    if (rc != 0)
        return rc;
    for (size_t i = 0; rc == 0 && i < c.n; i++) {
        const struct entry *e = c.v[i];
        const struct match *m = &c.matches[e->match];
        struct ck_context_entry ce = {
            .match = m->display,
            .match_is_dir = S_ISDIR(m->st.st_mode),
            .rel = e->path,
            .disk = e->disk,
            .type = e->type,
            .mode = e->mode,
            .link_target = e->target,
            .size = e->size,
            .digest = e->type == 'f' ? e->digest : NULL,
        };
        rc = fn(arg, &ce);
    }
    collected_free(&c);
    return rc;
}

const char *ck_context_dir(const struct ck_context *ctx)
{
    return ctx->rootabs;
}

const struct ck_ignore *ck_context_ignore(const struct ck_context *ctx)
{
    return ctx->ignore;
}
