/* cairn_buf: a growable byte buffer with a hard size cap.
 *
 * Every buffer filled from outside input has a cap; appending past it fails
 * with CAIRN_E_TOOBIG instead of growing without bound. The data is always
 * NUL-terminated (the NUL is not counted in len), so text can be used as a C
 * string directly. Not thread-safe; one owner at a time.
 */
#ifndef CAIRN_COMMON_BUF_H
#define CAIRN_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

struct cairn_buf {
    char *data;   /* owned; NULL until the first append */
    size_t len;   /* bytes used, excluding the trailing NUL */
    size_t alloc; /* bytes allocated */
    size_t cap;   /* maximum len; 0 means SIZE_MAX / 2 */
};

/* Initialises an empty buffer holding at most cap bytes (0: no cap). */
void cairn_buf_init(struct cairn_buf *b, size_t cap);

/* Frees the data and resets b to empty (keeps cap). Accepts NULL. */
void cairn_buf_free(struct cairn_buf *b);

/* Empties b without freeing its memory. */
void cairn_buf_reset(struct cairn_buf *b);

/* Append bytes / a C string / one byte / printf output. Return 0,
 * CAIRN_E_TOOBIG past the cap, or CAIRN_E_NOMEM. On failure b is unchanged. */
int cairn_buf_append(struct cairn_buf *b, const void *p, size_t n);
int cairn_buf_puts(struct cairn_buf *b, const char *s);
int cairn_buf_putc(struct cairn_buf *b, char c);
int cairn_buf_printf(struct cairn_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Makes room for n more bytes (so a caller can write into data + len). */
int cairn_buf_reserve(struct cairn_buf *b, size_t n);

/* Hands the data to the caller (free() it) and resets b. Never NULL on
 * success: an empty buffer yields "". Returns NULL only when out of memory. */
char *cairn_buf_take(struct cairn_buf *b);

#endif
