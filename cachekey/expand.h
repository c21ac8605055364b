/* Variable expansion as Docker's shell lexer does it on Dockerfile words.
 *
 * Handles $V, ${V}, ${V:-word}, ${V-word}, ${V:+word}, ${V+word},
 * ${V:?msg}, ${V?msg}, ${V#pat}, ${V##pat}, ${V%pat}, ${V%%pat}, single
 * and double quotes (removed; no expansion inside single quotes) and the
 * escape character (`\` or `` ` ``, per the Dockerfile's escape directive).
 * Which instructions expand, and with which variables, is decided by the
 * caller (cachekey/plan.c); this module only transforms words.
 *
 * Thread-safe and reentrant.
 */
#ifndef CAIRN_CACHEKEY_EXPAND_H
#define CAIRN_CACHEKEY_EXPAND_H

#include "common/error.h"

#include <stddef.h>

#define CK_EXPAND_MAX_OUTPUT (1u << 20) /* bytes of one expanded word */

/* Returns the value of variable name[0..len) or NULL when it is unset.
 * The returned string is borrowed; it must stay valid until the expand call
 * that asked for it returns. */
typedef const char *(*ck_lookup_fn)(void *ctx, const char *name, size_t len);

/* Expands word into one string (quotes removed, variables substituted,
 * escapes processed; whitespace is kept). *out is malloc'd, caller frees.
 * Returns 0, CAIRN_E_PARSE (unterminated quote or ${, bad substitution,
 * ${V:?msg} on an unset V; err says which), CAIRN_E_TOOBIG or
 * CAIRN_E_NOMEM. */
int ck_expand_word(const char *word, char escape, ck_lookup_fn lookup,
                   void *ctx, char **out, struct cairn_err *err);

/* Like ck_expand_word, but unquoted whitespace (in the word and in
 * substituted values) separates words, as for Docker's ProcessWords.
 * *out is a malloc'd array of *nout malloc'd strings; free with
 * ck_expand_words_free. Same errors. */
int ck_expand_words(const char *text, char escape, ck_lookup_fn lookup,
                    void *ctx, char ***out, size_t *nout,
                    struct cairn_err *err);

/* Frees an array returned by ck_expand_words. Accepts NULL. */
void ck_expand_words_free(char **words, size_t n);

#endif
