/* cairn_strvec: a growable, NULL-terminated array of owned C strings.
 * Not thread-safe; one owner at a time. */
#ifndef CAIRN_COMMON_STRVEC_H
#define CAIRN_COMMON_STRVEC_H

#include <stddef.h>

struct cairn_strvec {
    char **v; /* owned; v[n] is NULL once anything was pushed */
    size_t n;
    size_t alloc;
};

void cairn_strvec_init(struct cairn_strvec *sv);
/* Frees every string and the array. Accepts NULL. */
void cairn_strvec_free(struct cairn_strvec *sv);
/* Appends a copy of s (NULL is stored as NULL). Returns 0 or
 * CAIRN_E_NOMEM. */
int cairn_strvec_push(struct cairn_strvec *sv, const char *s);
/* Appends s itself; on failure s is freed. Returns 0 or CAIRN_E_NOMEM. */
int cairn_strvec_push_take(struct cairn_strvec *sv, char *s);
/* Sorts in strcmp order (NULLs first). */
void cairn_strvec_sort(struct cairn_strvec *sv);
/* Hands the array to the caller (free each string and the array; n via
 * *n) and resets sv. Never NULL: an empty vector gives a one-element array
 * holding NULL. Returns NULL only when out of memory. */
char **cairn_strvec_take(struct cairn_strvec *sv, size_t *n);
/* Copies n strings of src into a new array (same ownership as _take). */
char **cairn_strv_dup(char *const *src, size_t n);
/* Frees an array of n owned strings. Accepts NULL. */
void cairn_strv_free(char **v, size_t n);

#endif
