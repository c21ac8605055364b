/* JSON strings for what cairn prints or writes: the one place where text
 * that may not be UTF-8 (Dockerfile lines, ENV and LABEL values, RUN
 * commands, file names, names from imported archives) becomes a jansson
 * string. Jansson refuses bytes that are not UTF-8 (json_string returns
 * NULL, which callers took for "out of memory"); these functions write
 * each invalid byte as U+FFFD instead, as Go's encoder does for Docker
 * (docs/security.md, "Inputs that cost too much"). Output made with
 * JSON_ENSURE_ASCII shows it as \ufffd. Pure functions, thread-safe.
 */
#ifndef CAIRN_CLIENT_JSON_H
#define CAIRN_CLIENT_JSON_H

#include <jansson.h>
#include <stddef.h>

/* A new JSON string (reference owned by the caller) for s, a C string
 * (NULL gives NULL); NULL only when out of memory. */
json_t *cairn_json_string(const char *s);

/* The same for s[0..n), which may hold NUL bytes (written as \u0000). */
json_t *cairn_json_stringn(const char *s, size_t n);

#endif
