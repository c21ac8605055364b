/* Wildcards in COPY and ADD sources, as BuildKit reads them: Go's
 * filepath.Match, one path component at a time (see glob.h).
 *
 * Written after Go's algorithm: the pattern is split into chunks, each an
 * optional run of '*' followed by literal/'?'/class items; a star chunk
 * tries every position and the last chunk must consume the rest of the
 * name. */
#include "cachekey/glob.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static size_t utf8_rune(const char *s, size_t n, uint32_t *r)
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
    size_t len = u[0] >= 0xf0 ? 4 : u[0] >= 0xe0 ? 3 : u[0] >= 0xc0 ? 2 : 0;
    if (len == 0 || len > n)
        goto bad;
    uint32_t v = u[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xc0) != 0x80)
            goto bad;
        v = v << 6 | (u[i] & 0x3f);
    }
    *r = v;
    return len;
bad:
    *r = 0xfffd;
    return 1;
}

/* Reads one class item (with its escape) at *c; -1 when malformed. */
static int class_item(const char **c, const char *end, uint32_t *r)
{
    const char *p = *c;
    if (p >= end || *p == '-' || *p == ']')
        return -1;
    if (*p == '\\') {
        p++;
        if (p >= end)
            return -1;
    }
    size_t n = utf8_rune(p, (size_t)(end - p), r);
    p += n;
    if (p >= end) /* a class must be closed */
        return -1;
    *c = p;
    return 0;
}

/* Matches chunk [c, cend) at the start of s; on success sets *rest. */
static int match_chunk(const char *c, const char *cend, const char *s,
                       const char *send, const char **rest)
{
    bool failed = false;
    while (c < cend) {
        if (!failed && s >= send)
            failed = true;
        if (*c == '[') {
            uint32_t r = 0;
            if (!failed)
                s += utf8_rune(s, (size_t)(send - s), &r);
            c++;
            bool neg = false;
            if (c < cend && *c == '^') {
                neg = true;
                c++;
            }
            bool hit = false;
            int nrange = 0;
            for (;;) {
                if (c < cend && *c == ']' && nrange > 0) {
                    c++;
                    break;
                }
                uint32_t lo, hi;
                if (class_item(&c, cend, &lo) != 0)
                    return -1;
                hi = lo;
                if (*c == '-') {
                    c++;
                    if (class_item(&c, cend, &hi) != 0)
                        return -1;
                }
                if (lo <= r && r <= hi)
                    hit = true;
                nrange++;
            }
            if (hit == neg)
                failed = true;
        } else if (*c == '?') {
            if (!failed) {
                uint32_t r;
                s += utf8_rune(s, (size_t)(send - s), &r);
            }
            c++;
        } else {
            if (*c == '\\') {
                c++;
                if (c >= cend)
                    return -1;
            }
            if (!failed) {
                if (*c != *s)
                    failed = true;
                s++;
            }
            c++;
        }
    }
    if (failed)
        return 0;
    *rest = s;
    return 1;
}

static void scan_chunk(const char **p, const char *end, bool *star,
                       const char **cend)
{
    *star = false;
    while (*p < end && **p == '*') {
        (*p)++;
        *star = true;
    }
    bool inrange = false;
    const char *q = *p;
    for (; q < end; q++) {
        if (*q == '\\') {
            if (q + 1 < end)
                q++;
        } else if (*q == '[') {
            inrange = true;
        } else if (*q == ']') {
            inrange = false;
        } else if (*q == '*' && !inrange) {
            break;
        }
    }
    *cend = q;
}

int ck_glob_match(const char *pat, const char *name)
{
    const char *p = pat, *pend = pat + strlen(pat);
    const char *s = name, *send = name + strlen(name);
    while (p < pend) {
        bool star;
        const char *c, *cend;
        scan_chunk(&p, pend, &star, &cend);
        c = p;
        p = cend;
        if (star && c == cend)
            return 1; /* a trailing '*' takes the rest (no '/' in names) */
        const char *rest;
        int m = match_chunk(c, cend, s, send, &rest);
        if (m < 0)
            return -1;
        if (m == 1 && (rest == send || p < pend)) {
            s = rest;
            continue;
        }
        bool found = false;
        if (star) {
            for (const char *t = s; t < send; t++) {
                m = match_chunk(c, cend, t + 1, send, &rest);
                if (m < 0)
                    return -1;
                if (m == 1) {
                    if (p == pend && rest < send)
                        continue;
                    s = rest;
                    found = true;
                    break;
                }
            }
        }
        if (found)
            continue;
        /* Like Go, report a malformed remainder even when no match. */
        while (p < pend) {
            scan_chunk(&p, pend, &star, &cend);
            if (match_chunk(p, cend, "", "", &rest) < 0)
                return -1;
            p = cend;
        }
        return 0;
    }
    return s == send ? 1 : 0;
}

bool ck_glob_has_wildcards(const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' && s[1] != '\0')
            s++;
        else if (*s == '*' || *s == '?' || *s == '[')
            return true;
    }
    return false;
}

bool ck_glob_has_meta(const char *s)
{
    return strpbrk(s, "*?[\\") != NULL;
}
