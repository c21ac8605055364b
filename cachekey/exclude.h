/* COPY/ADD --exclude: which of a source's entries a copy leaves out.
 *
 * The patterns are .dockerignore patterns (cachekey/dockerignore.h: Go's
 * filepath.Match per component, "**", "!" exceptions, a pattern that
 * matches a directory excludes everything under it), matched against each
 * entry's path relative to the match it belongs to: for a directory
 * source, the path under that directory ("a/b.txt"); for a file source,
 * its base name. So `COPY --exclude=*.txt hom* /dst/` leaves out both
 * "homefile.txt" and "home/notes.txt".
 *
 * Excluded entries take no part in the key either: ck_exclude_digest is
 * the tree digest of docs/cachekey.md over the entries that remain.
 *
 * Thread-safety: a struct ck_exclude is read-only after ck_exclude_new.
 */
#ifndef CAIRN_CACHEKEY_EXCLUDE_H
#define CAIRN_CACHEKEY_EXCLUDE_H

#include "cachekey/context.h"
#include "cachekey/digest.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

struct ck_exclude;

/* Compiles n patterns (borrowed). n == 0 gives a matcher that excludes
 * nothing. Returns 0, CAIRN_E_PARSE (a malformed pattern, err says which),
 * CAIRN_E_TOOBIG or CAIRN_E_NOMEM. */
int ck_exclude_new(char *const *patterns, size_t n, struct ck_exclude **out,
                   struct cairn_err *err);

/* Frees x. Accepts NULL. */
void ck_exclude_free(struct ck_exclude *x);

/* True when e (from ck_context_source_each) is excluded. x may be NULL. */
bool ck_exclude_entry(const struct ck_exclude *x,
                      const struct ck_context_entry *e);

/* Tree digest (docs/cachekey.md) of what src selects minus the excluded
 * entries; a match whose entries are all excluded leaves no "match" field.
 * Errors as ck_context_source_digest. */
int ck_exclude_digest(struct ck_context *ctx, const char *src,
                      const struct ck_exclude *x, uint8_t out[CK_SHA256_LEN],
                      struct cairn_err *err);

#endif
