/* A JSON (RFC 8259) scanner over a text, for the Dockerfile parser's
 * exec form (cachekey/dockerfile.c): it validates values without keeping
 * them and decodes strings, as Go's decoder (Docker's) would. The caller
 * walks the structure it expects and calls these at each value. Pure
 * functions of their arguments; thread-safe on distinct scanners. */
#ifndef CAIRN_CACHEKEY_JSONSCAN_H
#define CAIRN_CACHEKEY_JSONSCAN_H

#include "common/buf.h"

#include <stdbool.h>
#include <stddef.h>

/* JSON nesting deeper than this is treated as invalid JSON (so an
 * instruction's text is shell form). Real Dockerfiles never nest at all;
 * the limit only keeps the validator's recursion shallow. */
#define CK_JSONSCAN_MAX_DEPTH 64

/* The scanner: s[0..n) is the text, i the position (the caller may move
 * it over punctuation it checks itself). */
struct ck_jsonscan {
    const char *s;
    size_t n;
    size_t i;
    bool has_nul;          /* a string decoded to a NUL byte */
    struct cairn_buf *out; /* decoded string, or NULL to validate only */
    int rc;                /* buffer failure, if any */
};

/* Skips JSON white space at j->i. */
void ck_jsonscan_ws(struct ck_jsonscan *j);

/* Decodes the string at j->i (on its opening quote), appending it to
 * j->out when set, and moves past it. Invalid UTF-8 and lone surrogates
 * become U+FFFD, as Go's decoder does. False when it is not a valid JSON
 * string; a failure of j->out is left in j->rc. */
bool ck_jsonscan_string(struct ck_jsonscan *j);

/* Validates one value at j->i (after white space) without keeping it,
 * nested depth deep (1 for a top-level array's element), and moves past
 * it. False when it is not valid JSON. */
bool ck_jsonscan_value(struct ck_jsonscan *j, int depth);

#endif
