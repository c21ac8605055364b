/* .dockerignore: which context paths a build does not see.
 *
 * Docker's rules: one pattern per line; '#' starts a comment line; blank
 * lines ignored; patterns are cleaned like Go's filepath.Clean and a leading
 * '/' is dropped; matching uses Go's filepath.Match syntax (*, ?, [...],
 * escapes) plus '**' for any number of directories; a '!' pattern is an
 * exception that re-includes; the last matching pattern wins. A path is also
 * excluded when one of its parent directories is excluded by a pattern and
 * no later exception re-includes it.
 *
 * Thread-safety: a parsed struct ck_ignore is read-only and may be shared.
 */
#ifndef CAIRN_CACHEKEY_DOCKERIGNORE_H
#define CAIRN_CACHEKEY_DOCKERIGNORE_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

#define CK_IGNORE_MAX_SIZE (1u << 20) /* bytes of a .dockerignore */
#define CK_IGNORE_MAX_PATTERNS 10000

struct ck_ignore;

/* Parses the text of a .dockerignore. *out is freed with ck_ignore_free.
 * Returns 0, CAIRN_E_PARSE (a malformed pattern such as an unterminated
 * '['; err names the line), CAIRN_E_TOOBIG or CAIRN_E_NOMEM. */
int ck_ignore_parse(const char *text, size_t len, struct ck_ignore **out,
                    struct cairn_err *err);

/* Loads the ignore file for a build: "<dockerfile>.dockerignore" beside the
 * Dockerfile when it exists, else "<context_dir>/.dockerignore", else an
 * empty matcher (nothing ignored). dockerfile_path may be NULL. */
int ck_ignore_load(const char *context_dir, const char *dockerfile_path,
                   struct ck_ignore **out, struct cairn_err *err);

/* True when relpath (relative to the context root, '/'-separated, no
 * leading "./" or "/") is excluded from the context. */
bool ck_ignore_excluded(const struct ck_ignore *ig, const char *relpath);

/* True when some exception pattern could re-include a path below the
 * directory reldir, so a walker must descend into an excluded directory. */
bool ck_ignore_has_exceptions_below(const struct ck_ignore *ig,
                                    const char *reldir);

/* Number of patterns (for --explain and tests). */
size_t ck_ignore_count(const struct ck_ignore *ig);

/* Frees ig. Accepts NULL. */
void ck_ignore_free(struct ck_ignore *ig);

#endif
