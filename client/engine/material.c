/* Key material as label groups (client/engine/material.h). */
#include "client/engine/material.h"

#include "cachekey/key.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

int cairn_material_parse(const struct cairn_buf *m,
                         struct cairn_material_fields *out)
{
    size_t pos = 0, cap = 0;
    out->v = NULL;
    out->n = 0;
    const char *l, *v;
    size_t ln, vn;
    int rc;
    while ((rc = ck_material_next(m->data, m->len, &pos, &l, &ln, &v, &vn)) ==
           1) {
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 32;
            struct cairn_material_field *nv = realloc(out->v, nc * sizeof *nv);
            if (nv == NULL) {
                free(out->v);
                return CAIRN_E_NOMEM;
            }
            out->v = nv;
            cap = nc;
        }
        out->v[out->n++] = (struct cairn_material_field){l, v, ln, vn};
    }
    if (rc != 0) {
        free(out->v);
        out->v = NULL;
        return rc;
    }
    return 0;
}

bool cairn_material_label_is(const struct cairn_material_field *f,
                             const char *label)
{
    return f->ln == strlen(label) && memcmp(f->label, label, f->ln) == 0;
}

bool cairn_material_value_eq(const struct cairn_material_field *a,
                             const struct cairn_material_field *b)
{
    return a->vn == b->vn && memcmp(a->value, b->value, a->vn) == 0;
}

/* The first field labelled label, or NULL. */
const struct cairn_material_field *
cairn_material_get(const struct cairn_material_fields *fs, const char *label)
{
    for (size_t i = 0; i < fs->n; i++)
        if (cairn_material_label_is(&fs->v[i], label))
            return &fs->v[i];
    return NULL;
}

/* Whether the values labelled like f (in order) are the same in a and b;
 * two absent groups are equal. */
bool cairn_material_group_eq(const struct cairn_material_fields *a,
                             const struct cairn_material_fields *b,
                             const struct cairn_material_field *f)
{
    size_t i = 0, j = 0;
    for (;;) {
        while (i < a->n && !(a->v[i].ln == f->ln &&
                             memcmp(a->v[i].label, f->label, f->ln) == 0))
            i++;
        while (j < b->n && !(b->v[j].ln == f->ln &&
                             memcmp(b->v[j].label, f->label, f->ln) == 0))
            j++;
        if (i == a->n || j == b->n)
            return i == a->n && j == b->n;
        if (!cairn_material_value_eq(&a->v[i], &b->v[j]))
            return false;
        i++;
        j++;
    }
}

/* Whether one of the first n fields of fs is labelled like f. */
bool cairn_material_has_label(const struct cairn_material_fields *fs, size_t n,
                              const struct cairn_material_field *f)
{
    for (size_t k = 0; k < n; k++)
        if (fs->v[k].ln == f->ln &&
            memcmp(fs->v[k].label, f->label, f->ln) == 0)
            return true;
    return false;
}

bool cairn_material_single_eq(const struct cairn_material_field *a,
                              const struct cairn_material_field *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return cairn_material_value_eq(a, b);
}

void cairn_material_free(struct cairn_material_fields *fs)
{
    if (fs == NULL)
        return;
    free(fs->v);
    fs->v = NULL;
    fs->n = 0;
}
