#include "strvec.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

void cairn_strvec_init(struct cairn_strvec *sv)
{
    sv->v = NULL;
    sv->n = 0;
    sv->alloc = 0;
}

void cairn_strvec_free(struct cairn_strvec *sv)
{
    if (sv == NULL)
        return;
    cairn_strv_free(sv->v, sv->n);
    cairn_strvec_init(sv);
}

int cairn_strvec_push_take(struct cairn_strvec *sv, char *s)
{
    if (sv->n + 2 > sv->alloc) {
        size_t na = sv->alloc ? sv->alloc * 2 : 8;
        char **nv = realloc(sv->v, na * sizeof *nv);
        if (nv == NULL) {
            free(s);
            return CAIRN_E_NOMEM;
        }
        sv->v = nv;
        sv->alloc = na;
    }
    sv->v[sv->n++] = s;
    sv->v[sv->n] = NULL;
    return 0;
}

int cairn_strvec_push(struct cairn_strvec *sv, const char *s)
{
    char *c = NULL;
    if (s != NULL && (c = strdup(s)) == NULL)
        return CAIRN_E_NOMEM;
    return cairn_strvec_push_take(sv, c);
}

static int cmp_str(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    if (x == NULL || y == NULL)
        return (x != NULL) - (y != NULL);
    return strcmp(x, y);
}

void cairn_strvec_sort(struct cairn_strvec *sv)
{
    if (sv->n > 1)
        qsort(sv->v, sv->n, sizeof *sv->v, cmp_str);
}

char **cairn_strvec_take(struct cairn_strvec *sv, size_t *n)
{
    char **v = sv->v;
    if (v == NULL) {
        v = calloc(1, sizeof *v);
        if (v == NULL)
            return NULL;
    }
    if (n)
        *n = sv->n;
    cairn_strvec_init(sv);
    return v;
}

char **cairn_strv_dup(char *const *src, size_t n)
{
    char **v = calloc(n + 1, sizeof *v);
    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (src[i] != NULL && (v[i] = strdup(src[i])) == NULL) {
            cairn_strv_free(v, i);
            return NULL;
        }
    }
    return v;
}

void cairn_strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}
