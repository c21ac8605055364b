/* Ordered name -> value lists with a hash index: see cachekey/vars.h. */
#include "cachekey/vars.h"

#include "common/error.h"

#include <stdlib.h>
#include <string.h>

static size_t name_hash(const char *name, size_t len)
{
    size_t h = 14695981039346656037u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 1099511628211u;
    return h;
}

struct ck_var *ck_vars_find(const struct ck_vars *vs, const char *name,
                             size_t len)
{
    if (vs->nslot == 0)
        return NULL;
    size_t mask = vs->nslot - 1;
    for (size_t j = name_hash(name, len) & mask; vs->slot[j] != 0;
         j = (j + 1) & mask) {
        struct ck_var *v = &vs->v[vs->slot[j] - 1];
        if (strncmp(v->name, name, len) == 0 && v->name[len] == '\0')
            return v;
    }
    return NULL;
}

/* Makes room in the index for one more name: rehashes into twice the
 * slots when it would pass half full. */
static int index_grow(struct ck_vars *vs)
{
    if (vs->n + 1 <= vs->nslot / 2)
        return 0;
    size_t ns = vs->nslot ? vs->nslot * 2 : 32;
    size_t *slot = calloc(ns, sizeof *slot);
    if (slot == NULL)
        return CAIRN_E_NOMEM;
    for (size_t i = 0; i < vs->n; i++) {
        size_t j = name_hash(vs->v[i].name, strlen(vs->v[i].name)) & (ns - 1);
        while (slot[j] != 0)
            j = (j + 1) & (ns - 1);
        slot[j] = i + 1;
    }
    free(vs->slot);
    vs->slot = slot;
    vs->nslot = ns;
    return 0;
}

int ck_vars_set(struct ck_vars *vs, const char *name, const char *value)
{
    char *val = NULL;
    if (value != NULL && (val = strdup(value)) == NULL)
        return CAIRN_E_NOMEM;
    struct ck_var *v = ck_vars_find(vs, name, strlen(name));
    if (v != NULL) {
        free(v->value);
        v->value = val;
        return 0;
    }
    if (vs->n == vs->alloc) {
        size_t na = vs->alloc ? vs->alloc * 2 : 16;
        struct ck_var *nv = realloc(vs->v, na * sizeof *nv);
        if (nv == NULL) {
            free(val);
            return CAIRN_E_NOMEM;
        }
        vs->v = nv;
        vs->alloc = na;
    }
    char *nm = strdup(name);
    if (nm == NULL || index_grow(vs) != 0) {
        free(nm);
        free(val);
        return CAIRN_E_NOMEM;
    }
    size_t mask = vs->nslot - 1;
    size_t j = name_hash(nm, strlen(nm)) & mask;
    while (vs->slot[j] != 0)
        j = (j + 1) & mask;
    vs->v[vs->n++] = (struct ck_var){nm, val, false};
    vs->slot[j] = vs->n;
    return 0;
}

void ck_vars_free(struct ck_vars *vs)
{
    for (size_t i = 0; i < vs->n; i++) {
        free(vs->v[i].name);
        free(vs->v[i].value);
    }
    free(vs->v);
    free(vs->slot);
    vs->v = NULL;
    vs->slot = NULL;
    vs->n = vs->alloc = vs->nslot = 0;
}

int ck_vars_copy(struct ck_vars *dst, const struct ck_vars *src)
{
    for (size_t i = 0; i < src->n; i++) {
        int rc = ck_vars_set(dst, src->v[i].name, src->v[i].value);
        if (rc)
            return rc;
    }
    return 0;
}

int ck_vars_set_kv_list(struct ck_vars *vs, char *const *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(kv[i], '=');
        size_t klen = eq ? (size_t)(eq - kv[i]) : strlen(kv[i]);
        char *k = strndup(kv[i], klen);
        if (k == NULL)
            return CAIRN_E_NOMEM;
        int rc = ck_vars_set(vs, k, eq ? eq + 1 : "");
        free(k);
        if (rc)
            return rc;
    }
    return 0;
}
