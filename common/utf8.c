#include "utf8.h"

size_t cairn_utf8_decode(const char *s, size_t n, uint32_t *r)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) {
        *r = 0;
        return 0;
    }
    if (u[0] < 0x80) {
        *r = u[0];
        return 1;
    }
    size_t w;
    uint32_t c, min;
    if ((u[0] & 0xe0) == 0xc0) {
        w = 2, c = u[0] & 0x1f, min = 0x80;
    } else if ((u[0] & 0xf0) == 0xe0) {
        w = 3, c = u[0] & 0x0f, min = 0x800;
    } else if ((u[0] & 0xf8) == 0xf0) {
        w = 4, c = u[0] & 0x07, min = 0x10000;
    } else {
        *r = CAIRN_UTF8_REPLACEMENT;
        return 1;
    }
    if (n < w) {
        *r = CAIRN_UTF8_REPLACEMENT;
        return 1;
    }
    for (size_t i = 1; i < w; i++) {
        if ((u[i] & 0xc0) != 0x80) {
            *r = CAIRN_UTF8_REPLACEMENT;
            return 1;
        }
        c = (c << 6) | (u[i] & 0x3f);
    }
    /* Overlong forms, values past U+10FFFF and surrogates are invalid. */
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        *r = CAIRN_UTF8_REPLACEMENT;
        return 1;
    }
    *r = c;
    return w;
}
