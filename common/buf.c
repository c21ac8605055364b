#include "buf.h"

#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cairn_buf_init(struct cairn_buf *b, size_t cap)
{
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->cap = cap ? cap : SIZE_MAX / 2;
}

void cairn_buf_free(struct cairn_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
}

void cairn_buf_reset(struct cairn_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int cairn_buf_reserve(struct cairn_buf *b, size_t n)
{
    if (n > b->cap || b->len > b->cap - n)
        return CAIRN_E_TOOBIG;
    size_t need = b->len + n + 1;
    if (need <= b->alloc)
        return 0;
    size_t sz = b->alloc ? b->alloc : 64;
    while (sz < need)
        sz *= 2;
    char *p = realloc(b->data, sz);
    if (p == NULL)
        return CAIRN_E_NOMEM;
    b->data = p;
    b->alloc = sz;
    return 0;
}

int cairn_buf_append(struct cairn_buf *b, const void *p, size_t n)
{
    int rc = cairn_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int cairn_buf_puts(struct cairn_buf *b, const char *s)
{
    return cairn_buf_append(b, s, strlen(s));
}

int cairn_buf_putc(struct cairn_buf *b, char c)
{
    return cairn_buf_append(b, &c, 1);
}

int cairn_buf_printf(struct cairn_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return CAIRN_E_INVAL;
    int rc = cairn_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *cairn_buf_take(struct cairn_buf *b)
{
    char *p = b->data;
    if (p == NULL)
        p = strdup("");
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    return p;
}
