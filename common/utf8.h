/* UTF-8 decoding with Go's rules (Docker's and BuildKit's behaviour on bad
 * input follows from them): an invalid, overlong, surrogate or truncated
 * sequence decodes as U+FFFD with width 1. Thread-safe. */
#ifndef CAIRN_COMMON_UTF8_H
#define CAIRN_COMMON_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define CAIRN_UTF8_REPLACEMENT 0xfffd

/* Decodes the character at s (n bytes available) into *r and returns its
 * width in bytes; 0 (and *r = 0) only when n == 0. */
size_t cairn_utf8_decode(const char *s, size_t n, uint32_t *r);

#endif
