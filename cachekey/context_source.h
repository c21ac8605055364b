/* Resolving what a COPY or ADD source selects in the build context
 * (cachekey/context_source.c), for cachekey/context.c, which walks and
 * hashes the matches; private to the two. */
#ifndef CAIRN_CACHEKEY_CONTEXT_SOURCE_H
#define CAIRN_CACHEKEY_CONTEXT_SOURCE_H

#include "cachekey/dockerignore.h"
#include "common/error.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

/* The context's root as resolving sees it, borrowed from the context. */
struct ctx_root {
    int fd;          /* the root directory */
    const char *abs; /* its realpath */
    size_t abs_len;
    const struct ck_ignore *ignore; /* .dockerignore, or NULL */
};

/* One path a source selects. */
struct match {
    char *display; /* the match as selected: context-relative, "." = root */
    char *real;    /* the same after following symlinks, "." = root */
    struct stat st;
    bool implicit;
};

/* errno as a return code: -errno, or CAIRN_E_IO when errno is 0. */
static inline int ctx_errno_rc(void)
{
    return errno ? -errno : CAIRN_E_IO;
}

/* Whether .dockerignore excludes the context-relative path disk (the
 * root never is). */
static inline bool ctx_ignored(const struct ck_ignore *ignore, const char *disk)
{
    return ignore != NULL && strcmp(disk, ".") != 0 &&
           ck_ignore_excluded(ignore, disk);
}

/* a/b into out (cap bytes); a "." or "" is left out. Returns 0 or
 * -ENAMETOOLONG. */
int ctx_path_join(char *out, size_t cap, const char *a, const char *b);

/* Lexically cleans src like Go's path.Clean relative to the root. Writes
 * "." for the root. A relative path whose ".." climbs above the root is
 * outside the context (CAIRN_E_OUTSIDE); a rooted one ("/..") stays at
 * the root, as in Go. Returns 0, CAIRN_E_OUTSIDE or -ENAMETOOLONG. */
int ctx_source_clean(const char *src, char *out, size_t cap);

/* Phase 1 of a digest: what src selects (wildcards expanded, symlinks
 * followed inside the context, ignored paths dropped), sorted by display
 * path. *out (n *nout) is the caller's, for ctx_matches_free. Returns 0
 * or an error with err set (CAIRN_E_NOTFOUND when nothing matches). */
int ctx_source_resolve(const struct ctx_root *root, const char *src,
                       struct match **out, size_t *nout, struct cairn_err *err);

void ctx_matches_free(struct match *m, size_t n);

#endif
