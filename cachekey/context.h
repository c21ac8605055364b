/* Build-context hashing: the tree digest of what a COPY/ADD source selects.
 *
 * A context is a directory plus its .dockerignore. For a source as written
 * in the Dockerfile (after variable expansion), relative to the context
 * root, this module finds what it selects (wildcards per Go's
 * filepath.Match on each path component; a directory selects its
 * contents; a source that is itself a symlink is followed, within the
 * context; symlinks inside directories are recorded as links, never
 * followed) and digests it as docs/cachekey.md ("Tree digest") says:
 *
 *   sha256 over, for each match in byte order of its context-relative path:
 *     field("match"), field(match path),
 *     then for each entry under the match in byte order of its path
 *     relative to the match ("." for the match itself):
 *       field(path), field(type: "f" | "d" | "l"),
 *       field(mode: 4 octal digits of st_mode & 07777),
 *       field(symlink target or ""),
 *       field(content sha256, 32 raw bytes, or "" for d and l)
 *
 * (field = ck_field_hash.) Never mtime, atime, ctime, inode, device or
 * uid/gid. Ignored paths are skipped as if absent.
 *
 * Files are hashed on a pool of threads (both cores for large contexts).
 * An optional stat cache skips reading unchanged files and listing
 * unchanged directories (every entry is still stat'ed).
 *
 * Thread-safety: one struct ck_context is used by one thread at a time
 * (it runs its own worker threads internally).
 */
#ifndef CAIRN_CACHEKEY_CONTEXT_H
#define CAIRN_CACHEKEY_CONTEXT_H

#include "cachekey/digest.h"
#include "cachekey/dockerignore.h"
#include "cachekey/statcache.h"
#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>

#define CK_CONTEXT_MAX_FILES 1000000 /* entries one source may select */
/* keep_walks keeps selections of at most this many entries (about 100
 * bytes each); a bigger one is walked again. --explain drops the listing
 * of such a source anyway (CAIRN_EXPLAIN_MAX_FILES). */
#define CK_CONTEXT_KEEP_MAX 100000

struct ck_context;

struct ck_context_opts {
    const struct ck_ignore *ignore; /* borrowed, may be NULL (nothing
                                       ignored); must outlive the context */
    struct ck_statcache *cache;     /* borrowed, may be NULL */
    int threads;                    /* hashing threads; 0: number of cores */
    bool keep_walks; /* remember what each ck_context_source_digest
                        selected, so that ck_context_source_walk of the
                        same src replays it instead of walking again */
};

/* Opens the context rooted at dir. Returns 0, negative errno when dir is not
 * a readable directory (err says so), or CAIRN_E_NOMEM. */
int ck_context_open(const char *dir, const struct ck_context_opts *opts,
                    struct ck_context **out, struct cairn_err *err);

/* Closes ctx (flushing the stat cache's pending updates). Accepts NULL. */
void ck_context_close(struct ck_context *ctx);

/* Summary of one source's selection, for --explain and error messages. */
struct ck_source_stats {
    uint64_t matches; /* top-level matches (wildcards can give several) */
    uint64_t files;   /* regular files */
    uint64_t dirs;
    uint64_t links;
    uint64_t bytes;       /* content bytes of regular files */
    uint64_t bytes_read;  /* bytes actually read (0 when all were cached) */
};

/* Tree digest of source src. stats may be NULL.
 * Errors (err says which, in Docker's words):
 *  CAIRN_E_OUTSIDE   src escapes the context ("..", or a symlink pointing
 *                    outside): "forbidden path outside the build context:
 *                    SRC"
 *  CAIRN_E_NOTFOUND  nothing matches: "\"/SRC\": not found"
 *  CAIRN_E_TOOBIG    more than CK_CONTEXT_MAX_FILES entries
 *  negative errno    a file could not be read */
int ck_context_source_digest(struct ck_context *ctx, const char *src,
                             uint8_t out[CK_SHA256_LEN],
                             struct ck_source_stats *stats,
                             struct cairn_err *err);

/* Calls fn once per entry that src selects, in the order of the tree
 * digest, with the entry's context-relative path, its type ('f','d','l')
 * and its content digest (NULL for d and l). Used to explain which file
 * changed between two builds. fn returns 0 to go on, non-zero to stop
 * (that value is returned). With opts.keep_walks and a src already
 * digested by this context, the entries are those of that digest (the
 * selection its key was made from), replayed without touching the
 * disk. */
typedef int (*ck_context_entry_fn)(void *arg, const char *relpath, char type,
                                   unsigned mode, const uint8_t *digest);
int ck_context_source_walk(struct ck_context *ctx, const char *src,
                           ck_context_entry_fn fn, void *arg,
                           struct cairn_err *err);

/* One selected entry with everything needed to copy it (the build writes
 * COPY layers from these). Strings are borrowed for the callback only. */
struct ck_context_entry {
    const char *match; /* the top-level match, context-relative */
    bool match_is_dir; /* a directory match copies its contents */
    const char *rel;   /* path under the match, "." for the match itself */
    const char *disk;  /* context-relative path to open ("." = root) */
    char type;         /* 'f', 'd', 'l' */
    unsigned mode;     /* full st_mode */
    const char *link_target; /* 'l' */
    uint64_t size;
    const uint8_t *digest; /* 'f': content sha256 */
};
typedef int (*ck_context_each_fn)(void *arg, const struct ck_context_entry *e);

/* Calls fn for every entry src selects, in tree-digest order. fn returns 0
 * to go on, non-zero to stop (that value is returned). */
int ck_context_source_each(struct ck_context *ctx, const char *src,
                           ck_context_each_fn fn, void *arg,
                           struct cairn_err *err);

/* The context's root directory as opened (borrowed). */
const char *ck_context_dir(const struct ck_context *ctx);

/* The ignore matcher the context was opened with (borrowed; NULL when
 * none). */
const struct ck_ignore *ck_context_ignore(const struct ck_context *ctx);

#endif
