/* Ordered name -> value lists with a hash index: the ENV, ARG and build
 * argument tables of the plan walk (cachekey/plan.c). Not thread-safe;
 * one owner at a time. */
#ifndef CAIRN_CACHEKEY_VARS_H
#define CAIRN_CACHEKEY_VARS_H

#include <stdbool.h>
#include <stddef.h>

/* A variable; value NULL means declared without a value (an ARG with no
 * default and no --build-arg). */
struct ck_var {
    char *name;
    char *value;
    bool used; /* build args: consumed by an ARG */
};

/* The list keeps declaration order (image Env, explain); a hash index on
 * the names makes lookups O(1), so N distinct ENV or ARG lines cost O(N),
 * not the O(N^2) of scanning the list for each. Zeroed is empty. */
struct ck_vars {
    struct ck_var *v;
    size_t n;
    size_t alloc;
    size_t *slot; /* index into v plus 1, 0 for free; open addressing */
    size_t nslot; /* a power of two, at least twice n */
};

/* The variable named by name[0..len), or NULL. Borrowed from vs until
 * the next ck_vars_set or ck_vars_free. */
struct ck_var *ck_vars_find(const struct ck_vars *vs, const char *name,
                            size_t len);

/* Sets name to a copy of value (NULL: declared without one), replacing
 * an earlier value in place or appending. Returns 0 or CAIRN_E_NOMEM. */
int ck_vars_set(struct ck_vars *vs, const char *name, const char *value);

/* Frees what vs holds and leaves it empty. */
void ck_vars_free(struct ck_vars *vs);

/* Sets every variable of src into dst, in src's order. */
int ck_vars_copy(struct ck_vars *dst, const struct ck_vars *src);

/* Sets "K=V" strings (as in an image config's Env) into vs; "K" alone
 * sets K to "". */
int ck_vars_set_kv_list(struct ck_vars *vs, char *const *kv, size_t n);

#endif
