/* Length-prefixed fields: the one encoding used for key material and tree
 * digests (docs/cachekey.md, "Encoding"). A field is its length as an
 * unsigned 64-bit big-endian integer, then its bytes. Nothing is ever
 * separated by a delimiter, so no two different field sequences encode to
 * the same bytes. */
#ifndef CAIRN_CACHEKEY_FIELD_H
#define CAIRN_CACHEKEY_FIELD_H

#include "cachekey/digest.h"
#include "common/buf.h"

#include <stddef.h>

/* Appends one field to b. Returns 0, CAIRN_E_TOOBIG or CAIRN_E_NOMEM. */
int ck_field_append(struct cairn_buf *b, const void *p, size_t n);
/* Appends a NUL-terminated string as one field. */
int ck_field_append_str(struct cairn_buf *b, const char *s);

/* Feeds one field into a running hash. Returns 0 or CAIRN_E_CRYPTO. */
int ck_field_hash(struct ck_sha256 *h, const void *p, size_t n);
int ck_field_hash_str(struct ck_sha256 *h, const char *s);

/* Reads the field at *pos of material[0..len): sets *p and *n to the
 * field's bytes (borrowed from material) and advances *pos. Returns 0 or
 * CAIRN_E_CORRUPT when the field runs past len. */
int ck_field_next(const void *material, size_t len, size_t *pos,
                  const void **p, size_t *n);

#endif
