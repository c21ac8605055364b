/* Wildcards in COPY and ADD sources (cachekey/context.c resolves them):
 * Go's filepath.Match and Glob rules, which BuildKit follows. Pure
 * functions of their arguments; thread-safe. */
#ifndef CAIRN_CACHEKEY_GLOB_H
#define CAIRN_CACHEKEY_GLOB_H

#include <stdbool.h>

/* Go's filepath.Match for one path component (name holds no '/').
 * Returns 1 on match, 0 on no match, -1 for a malformed pattern (reported
 * even when the name does not match, as Go does). */
int ck_glob_match(const char *pat, const char *name);

/* BuildKit's test for a wildcard source: an unescaped * ? or [. */
bool ck_glob_has_wildcards(const char *s);

/* Go's filepath.Glob treats a component as a pattern when it holds any of
 * * ? [ or a backslash. */
bool ck_glob_has_meta(const char *s);

#endif
