/* A key material (docs/cachekey.md: labelled, length-prefixed fields) as a
 * list of label/value pairs, for comparing two materials label by label.
 * The pairs borrow the material's bytes: they are valid while the buffer
 * they were parsed from is unchanged. Pure functions, thread-safe. */
#ifndef CAIRN_CLIENT_MATERIAL_H
#define CAIRN_CLIENT_MATERIAL_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

struct cairn_material_field {
    const char *label, *value; /* borrowed from the material */
    size_t ln, vn;
};

struct cairn_material_fields {
    struct cairn_material_field *v; /* malloc'd; cairn_material_free */
    size_t n;
};

/* Splits m into its fields, in order. Returns 0, CAIRN_E_NOMEM or the
 * material reader's error for malformed input; *out only on success. */
int cairn_material_parse(const struct cairn_buf *m,
                         struct cairn_material_fields *out);
/* Frees what cairn_material_parse allocated. Accepts NULL. */
void cairn_material_free(struct cairn_material_fields *fs);

/* Whether f is labelled label. */
bool cairn_material_label_is(const struct cairn_material_field *f,
                             const char *label);
/* Whether a and b hold the same value (labels not compared). */
bool cairn_material_value_eq(const struct cairn_material_field *a,
                             const struct cairn_material_field *b);
/* Whether a and b are both absent, or both present with one value. */
bool cairn_material_single_eq(const struct cairn_material_field *a,
                              const struct cairn_material_field *b);
/* The first field labelled label, or NULL. Borrowed from fs. */
const struct cairn_material_field *
cairn_material_get(const struct cairn_material_fields *fs, const char *label);
/* Whether the values labelled like f (in order) are the same in a and b;
 * two absent groups are equal. */
bool cairn_material_group_eq(const struct cairn_material_fields *a,
                             const struct cairn_material_fields *b,
                             const struct cairn_material_field *f);
/* Whether one of the first n fields of fs is labelled like f. */
bool cairn_material_has_label(const struct cairn_material_fields *fs, size_t n,
                              const struct cairn_material_field *f);

#endif
