/* .dockerignore parsing and matching.
 *
 * The reference is Docker's own code path: moby/patternmatcher's
 * ignorefile.ReadAll turns the file into pattern strings, patternmatcher.New
 * cleans and validates them, and MatchesOrParentMatches decides whether a
 * path (or one of its parent directories) matches. We reproduce that
 * pipeline stage by stage so that odd inputs ("/!foo", "! /", "a**b") give
 * the same answer as Docker, not just the documented cases.
 *
 * Docker compiles each pattern to a Go regexp, but it special-cases three
 * shapes that are *not* equivalent to the regexp: a literal pattern (exact
 * string compare), a literal followed by a trailing "**" (prefix compare),
 * and a leading "**" followed by a literal (suffix compare; "**foo" matches
 * "barfoo"). We keep the same four kinds. Regexp-kind patterns become a short
 * list of operations that we run as a position-set simulation over the path:
 * linear in path length per operation, no backtracking, and one run answers
 * for the path and all of its parent directories at once, because a parent
 * is just a prefix of the path that ends before a '/'.
 */
#include "cachekey/dockerignore.h"

#include "common/buf.h"
#include "common/error.h"
#include "common/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* bufio.Scanner, which Docker reads the file with, fails on a line of 64 KiB
 * or more; we refuse the same lines rather than silently accept them. */
#define IG_MAX_LINE (64u * 1024u - 1u)

/* Paths up to this length are matched with state arrays on the stack; a
 * longer path (possible with openat-style walkers) costs one allocation. */
#define IG_STACK_PATH 4096u

enum ig_kind {
    IG_EXACT,  /* literal: path == pattern */
    IG_PREFIX, /* "lit**": path starts with lit */
    IG_SUFFIX, /* "**lit": path ends with lit, or "**" + "/x" == "x" */
    IG_REGEX,  /* anything else: run the op list */
};

enum ig_opcode {
    OP_LIT,   /* the bytes lit[off..off+len) */
    OP_ANY,   /* "?": one character other than '/' */
    OP_CLASS, /* "[...]": one character in (or not in) ranges[off..off+len) */
    OP_STAR,  /* "*": any run of characters other than '/' */
    OP_DDIR,  /* "**" in the middle, regexp (.*\/)?: nothing, or anything
                 without a newline that ends in '/' */
    OP_DEND,  /* "**" at the end, regexp .*: anything without a newline */
};

struct ig_op {
    uint8_t code;
    bool negated;
    uint32_t off;
    uint32_t len;
};

struct ig_range {
    uint32_t lo;
    uint32_t hi;
};

struct ig_pattern {
    char *text; /* cleaned pattern without the '!' */
    size_t text_len;
    bool exclusion;
    enum ig_kind kind;
    struct ig_op *ops;
    size_t nops;
    char *lit;
    struct ig_range *ranges;
};

struct ck_ignore {
    struct ig_pattern *pats;
    size_t n;
    bool has_exclusions;
};

/* ---- UTF-8 and whitespace ------------------------------------------------ */

/* Decodes one UTF-8 sequence the way Go does (common/utf8.h). */
static size_t ig_rune(const char *s, size_t n, uint32_t *r)
{
    return cairn_utf8_decode(s, n, r);
}

/* Go's unicode.IsSpace, which strings.TrimSpace uses. */
static bool ig_is_space(uint32_t r)
{
    switch (r) {
    case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202f: case 0x205f: case 0x3000:
        return true;
    default:
        return r >= 0x2000 && r <= 0x200a;
    }
}

/* Trims Unicode whitespace at both ends of s[*b..*e). Trailing runes are
 * found by stepping back over continuation bytes. */
static void ig_trim(const char *s, size_t *b, size_t *e)
{
    while (*b < *e) {
        uint32_t r;
        size_t w = ig_rune(s + *b, *e - *b, &r);
        if (!ig_is_space(r))
            break;
        *b += w;
    }
    while (*e > *b) {
        size_t start = *e - 1;
        while (start > *b && *e - start < 4 &&
               ((unsigned char)s[start] & 0xc0) == 0x80)
            start--;
        uint32_t r;
        size_t w = ig_rune(s + start, *e - start, &r);
        if (start + w != *e) {
            /* Not one rune ending exactly at *e: the last byte alone is an
             * invalid sequence, and invalid bytes are not whitespace. */
            break;
        }
        if (!ig_is_space(r))
            break;
        *e = start;
    }
}

/* ---- Go's filepath.Clean ------------------------------------------------- */

/* Writes Clean(s[0..n)) into out (which has room for n + 1 bytes, enough
 * because cleaning never lengthens a path except "" -> "."). */
static size_t ig_clean(const char *s, size_t n, char *out)
{
    if (n == 0) {
        out[0] = '.';
        return 1;
    }
    bool rooted = s[0] == '/';
    size_t r = 0, w = 0, dotdot = 0;
    if (rooted) {
        out[w++] = '/';
        r = dotdot = 1;
    }
    while (r < n) {
        if (s[r] == '/') {
            r++;
        } else if (s[r] == '.' && (r + 1 == n || s[r + 1] == '/')) {
            r++;
        } else if (s[r] == '.' && s[r + 1] == '.' &&
                   (r + 2 == n || s[r + 2] == '/')) {
            r += 2;
            if (w > dotdot) {
                /* Back up over the last element. */
                w--;
                while (w > dotdot && out[w] != '/')
                    w--;
            } else if (!rooted) {
                /* A relative path cannot back up: keep the "..". */
                if (w > 0)
                    out[w++] = '/';
                out[w++] = '.';
                out[w++] = '.';
                dotdot = w;
            }
        } else {
            if ((rooted && w != 1) || (!rooted && w != 0))
                out[w++] = '/';
            while (r < n && s[r] != '/')
                out[w++] = s[r++];
        }
    }
    if (w == 0)
        out[w++] = '.';
    return w;
}

/* ---- compiling one pattern ----------------------------------------------- */

/* Parses one side of a class range as Go's getEsc does (filepath.Match's
 * syntax check is what Docker uses to reject patterns). */
static int ig_class_char(const char *p, size_t n, size_t *i, uint32_t *r)
{
    if (*i >= n || p[*i] == '-' || p[*i] == ']')
        return CAIRN_E_PARSE;
    if (p[*i] == '\\') {
        (*i)++;
        if (*i >= n)
            return CAIRN_E_PARSE;
    }
    size_t w = ig_rune(p + *i, n - *i, r);
    if (*r == 0xfffd && w == 1 && (unsigned char)p[*i] >= 0x80)
        return CAIRN_E_PARSE;
    *i += w;
    if (*i >= n)
        return CAIRN_E_PARSE; /* the class must still be closed */
    return 0;
}

static int ig_push_op(struct ig_pattern *pt, size_t *cap, uint8_t code,
                      bool negated, uint32_t off, uint32_t len)
{
    /* Extend a literal run instead of starting a new op. */
    if (code == OP_LIT && pt->nops > 0 && pt->ops[pt->nops - 1].code == OP_LIT) {
        pt->ops[pt->nops - 1].len += len;
        return 0;
    }
    if (pt->nops == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct ig_op *o = realloc(pt->ops, nc * sizeof *o);
        if (o == NULL)
            return CAIRN_E_NOMEM;
        pt->ops = o;
        *cap = nc;
    }
    pt->ops[pt->nops++] = (struct ig_op){code, negated, off, len};
    return 0;
}

/* Turns pt->text into pt->kind and, for regexp-kind patterns, an op list.
 * The walk mirrors patternmatcher's compile(): the kind starts as exact and
 * is downgraded by wildcards; "**" first in the pattern makes it suffix, "**"
 * last after a literal makes it prefix. Syntax errors follow filepath.Match,
 * plus reversed ranges such as "[z-a]", which Go's regexp compiler rejects
 * (Docker reports that on the first match, i.e. the build fails). */
static int ig_compile(struct ig_pattern *pt)
{
    const char *p = pt->text;
    size_t n = pt->text_len;
    enum ig_kind kind = IG_EXACT;
    size_t opcap = 0, nlit = 0, nrange = 0, rangecap = 0;

    pt->lit = malloc(n + 1);
    if (pt->lit == NULL)
        return CAIRN_E_NOMEM;

    for (size_t i = 0, iter = 0; i < n; iter++) {
        char c = p[i];
        int rc = 0;
        if (c == '*' && i + 1 < n && p[i + 1] == '*') {
            i += 2;
            if (i < n && p[i] == '/')
                i++; /* "**" + "/" is the same as "**" */
            if (i == n) {
                if (kind == IG_EXACT) {
                    kind = IG_PREFIX;
                } else {
                    kind = IG_REGEX;
                }
                rc = ig_push_op(pt, &opcap, OP_DEND, false, 0, 0);
            } else {
                kind = IG_REGEX;
                rc = ig_push_op(pt, &opcap, OP_DDIR, false, 0, 0);
            }
            if (iter == 0)
                kind = IG_SUFFIX;
        } else if (c == '*') {
            i++;
            kind = IG_REGEX;
            rc = ig_push_op(pt, &opcap, OP_STAR, false, 0, 0);
        } else if (c == '?') {
            i++;
            kind = IG_REGEX;
            rc = ig_push_op(pt, &opcap, OP_ANY, false, 0, 0);
        } else if (c == '\\') {
            if (i + 1 >= n)
                return CAIRN_E_PARSE; /* filepath.Match: trailing escape */
            pt->lit[nlit] = p[i + 1];
            rc = ig_push_op(pt, &opcap, OP_LIT, false, (uint32_t)nlit, 1);
            nlit++;
            i += 2;
            kind = IG_REGEX;
        } else if (c == '[') {
            i++;
            bool negated = false;
            if (i < n && p[i] == '^') {
                negated = true;
                i++;
            }
            size_t first = nrange;
            for (;;) {
                if (i < n && p[i] == ']' && nrange > first) {
                    i++;
                    break;
                }
                uint32_t lo, hi;
                if (ig_class_char(p, n, &i, &lo) != 0)
                    return CAIRN_E_PARSE;
                hi = lo;
                if (p[i] == '-') {
                    i++;
                    if (ig_class_char(p, n, &i, &hi) != 0)
                        return CAIRN_E_PARSE;
                    if (hi < lo)
                        return CAIRN_E_PARSE;
                }
                if (nrange == rangecap) {
                    size_t nc = rangecap ? rangecap * 2 : 4;
                    struct ig_range *rg = realloc(pt->ranges, nc * sizeof *rg);
                    if (rg == NULL)
                        return CAIRN_E_NOMEM;
                    pt->ranges = rg;
                    rangecap = nc;
                }
                pt->ranges[nrange++] = (struct ig_range){lo, hi};
            }
            kind = IG_REGEX;
            rc = ig_push_op(pt, &opcap, OP_CLASS, negated, (uint32_t)first,
                            (uint32_t)(nrange - first));
        } else {
            if (c == ']')
                kind = IG_REGEX; /* a literal ']' in the regexp */
            pt->lit[nlit] = c;
            rc = ig_push_op(pt, &opcap, OP_LIT, false, (uint32_t)nlit, 1);
            nlit++;
            i++;
        }
        if (rc != 0)
            return rc;
    }
    pt->kind = kind;
    return 0;
}

/* ---- matching -------------------------------------------------------------- */

static bool ig_class_has(const struct ig_pattern *pt, const struct ig_op *op,
                         uint32_t r)
{
    for (uint32_t k = 0; k < op->len; k++) {
        const struct ig_range *rg = &pt->ranges[op->off + k];
        if (r >= rg->lo && r <= rg->hi)
            return true;
    }
    return false;
}

static size_t ig_width(const char *s, size_t n)
{
    uint32_t r;
    return ig_rune(s, n, &r);
}

/* Applies op to the set cur of positions in s[0..n] (cur[p] != 0: the ops
 * so far consumed exactly s[0..p)) and writes the next set to nxt. Only
 * positions from *lo on are live (ops never move backwards), so work starts
 * there; on return *lo is the first live position of nxt, or SIZE_MAX when
 * the set is empty. Positions advance by whole characters, as the Go regexp
 * engine does. */
static void ig_step(const struct ig_pattern *pt, const struct ig_op *op,
                    const char *s, size_t n, const uint8_t *cur, uint8_t *nxt,
                    size_t *lo)
{
    size_t first = SIZE_MAX;
    bool carry = false;
    memset(nxt + *lo, 0, n + 1 - *lo);
    for (size_t p = *lo; p <= n;) {
        size_t w = p == n ? 1 : (unsigned char)s[p] < 0x80 ? 1
                                : ig_width(s + p, n - p);
        size_t to = SIZE_MAX; /* a single position reached from p */
        switch (op->code) {
        case OP_LIT:
            if (cur[p] && op->len <= n - p &&
                memcmp(s + p, pt->lit + op->off, op->len) == 0)
                to = p + op->len;
            break;
        case OP_ANY:
            if (cur[p] && p < n && s[p] != '/')
                to = p + w;
            break;
        case OP_CLASS:
            if (cur[p] && p < n) {
                uint32_t r;
                ig_rune(s + p, n - p, &r);
                if (ig_class_has(pt, op, r) != op->negated)
                    to = p + w;
            }
            break;
        case OP_STAR:
            carry = carry || cur[p];
            if (carry)
                to = p;
            if (p < n && s[p] == '/')
                carry = false;
            break;
        case OP_DDIR:
            if (cur[p]) {
                carry = true;
                nxt[p] = 1; /* the optional group taken zero times */
                if (first == SIZE_MAX)
                    first = p;
            }
            if (p < n && s[p] == '\n')
                carry = false; /* Go's '.' does not match a newline */
            else if (p < n && s[p] == '/' && carry)
                to = p + 1;
            break;
        case OP_DEND:
            carry = carry || cur[p];
            if (carry)
                to = p;
            if (p < n && s[p] == '\n')
                carry = false;
            break;
        }
        if (to != SIZE_MAX) {
            nxt[to] = 1;
            if (to < first)
                first = to;
        }
        p += w;
    }
    *lo = first;
}

/* Runs a regexp-kind pattern over s[0..n]. Returns the final position set
 * (fin[p] != 0 for p >= *lo: the pattern matches s[0..p)), or NULL when no
 * position survived. a and b are scratch arrays of n + 1 bytes.
 * When alive is not NULL it is set to whether the pattern could still match
 * something longer than s, i.e. some op was left part-way at the end of s. */
static const uint8_t *ig_run(const struct ig_pattern *pt, const char *s,
                             size_t n, uint8_t *a, uint8_t *b, size_t *lo,
                             bool *alive)
{
    uint8_t *cur = a, *nxt = b;
    memset(cur, 0, n + 1);
    cur[0] = 1;
    *lo = 0;
    if (alive)
        *alive = false;
    for (size_t k = 0; k < pt->nops; k++) {
        const struct ig_op *op = &pt->ops[k];
        if (alive && !*alive) {
            if (cur[n]) {
                *alive = true; /* s consumed, ops remain */
            } else if (op->code == OP_DDIR || op->code == OP_DEND) {
                /* Any live position can stretch past the end of s. */
                *alive = true;
            } else if (op->code == OP_LIT) {
                for (size_t p = *lo; p < n && !*alive; p++)
                    *alive = cur[p] && n - p < op->len &&
                             memcmp(s + p, pt->lit + op->off, n - p) == 0;
            }
        }
        ig_step(pt, op, s, n, cur, nxt, lo);
        if (*lo == SIZE_MAX)
            return NULL;
        uint8_t *t = cur;
        cur = nxt;
        nxt = t;
    }
    return cur;
}

/* Docker's MatchesOrParentMatches for one pattern: does it match path or
 * any of its parent directories? */
static bool ig_pattern_matches(const struct ig_pattern *pt, const char *s,
                               size_t n, uint8_t *a, uint8_t *b)
{
    switch (pt->kind) {
    case IG_EXACT:
        if (pt->text_len > n || memcmp(s, pt->text, pt->text_len) != 0)
            return false;
        return pt->text_len == n || s[pt->text_len] == '/';
    case IG_PREFIX:
        /* A parent has the prefix only if the path itself has it. */
        return n >= pt->text_len - 2 &&
               memcmp(s, pt->text, pt->text_len - 2) == 0;
    case IG_SUFFIX: {
        const char *suf = pt->text + 2;
        size_t sl = pt->text_len - 2;
        for (size_t e = n; e > 0; e--) {
            if (e != n && s[e] != '/')
                continue;
            if (e >= sl && memcmp(s + e - sl, suf, sl) == 0)
                return true;
            /* "**" + "/foo" also matches "foo" itself. */
            if (sl > 0 && suf[0] == '/' && e == sl - 1 &&
                memcmp(s, suf + 1, e) == 0)
                return true;
        }
        return false;
    }
    case IG_REGEX: {
        /* Most patterns start with a literal directory name: reject a path
         * that does not start with it before touching the state arrays. */
        const struct ig_op *op0 = &pt->ops[0];
        if (op0->code == OP_LIT &&
            (op0->len > n || memcmp(s, pt->lit + op0->off, op0->len) != 0))
            return false;
        size_t lo;
        const uint8_t *fin = ig_run(pt, s, n, a, b, &lo, NULL);
        if (fin == NULL)
            return false;
        if (fin[n])
            return true;
        for (size_t p = lo > 0 ? lo : 1; p < n; p++)
            if (s[p] == '/' && fin[p])
                return true;
        return false;
    }
    }
    return false;
}

bool ck_ignore_excluded(const struct ck_ignore *ig, const char *relpath)
{
    if (ig == NULL || ig->n == 0 || relpath == NULL)
        return false;
    size_t n = strlen(relpath);
    /* Docker never excludes the context root itself. */
    if (n == 0 || (n == 1 && relpath[0] == '.'))
        return false;

    uint8_t stack[2 * (IG_STACK_PATH + 1)];
    uint8_t *mem = stack;
    if (n > IG_STACK_PATH) {
        mem = malloc(2 * (n + 1));
        if (mem == NULL)
            return false; /* see the header: errors cannot be reported */
    }
    bool matched = false;
    for (size_t i = 0; i < ig->n; i++) {
        const struct ig_pattern *pt = &ig->pats[i];
        /* A pattern can only change the answer if it points the other
         * way; Docker skips the rest, and so "last match wins". */
        if (pt->exclusion != matched)
            continue;
        if (ig_pattern_matches(pt, relpath, n, mem, mem + n + 1))
            matched = !pt->exclusion;
    }
    if (mem != stack)
        free(mem);
    return matched;
}

/* Could pt match some path strictly below the directory whose path plus a
 * trailing '/' is d[0..n)? Conservative: true when unsure. */
static bool ig_pattern_below(const struct ig_pattern *pt, const char *d,
                             size_t n, uint8_t *a, uint8_t *b)
{
    switch (pt->kind) {
    case IG_EXACT:
        return pt->text_len > n && memcmp(pt->text, d, n) == 0;
    case IG_PREFIX: {
        size_t ql = pt->text_len - 2;
        return memcmp(pt->text, d, ql < n ? ql : n) == 0;
    }
    case IG_SUFFIX:
        /* "**lit" matches d + lit, which is below the directory. */
        return true;
    case IG_REGEX: {
        size_t lo;
        bool alive;
        ig_run(pt, d, n, a, b, &lo, &alive);
        return alive;
    }
    }
    return true;
}

bool ck_ignore_has_exceptions_below(const struct ck_ignore *ig,
                                    const char *reldir)
{
    if (ig == NULL || !ig->has_exclusions)
        return false;
    size_t dl = reldir ? strlen(reldir) : 0;
    if (dl == 0 || (dl == 1 && reldir[0] == '.'))
        return true; /* everything is below the root */

    size_t n = dl + 1;
    char *mem = malloc(n + 2 * (n + 1));
    if (mem == NULL)
        return true; /* descending is always safe, only slower */
    memcpy(mem, reldir, dl);
    mem[dl] = '/';
    uint8_t *a = (uint8_t *)mem + n, *b = a + n + 1;
    bool found = false;
    for (size_t i = 0; i < ig->n && !found; i++)
        if (ig->pats[i].exclusion)
            found = ig_pattern_below(&ig->pats[i], mem, n, a, b);
    free(mem);
    return found;
}

/* ---- parsing the file ---------------------------------------------------- */

static void ig_pattern_release(struct ig_pattern *pt)
{
    free(pt->text);
    free(pt->ops);
    free(pt->lit);
    free(pt->ranges);
}

void ck_ignore_free(struct ck_ignore *ig)
{
    if (ig == NULL)
        return;
    for (size_t i = 0; i < ig->n; i++)
        ig_pattern_release(&ig->pats[i]);
    free(ig->pats);
    free(ig);
}

size_t ck_ignore_count(const struct ck_ignore *ig)
{
    return ig ? ig->n : 0;
}

/* Turns one line into Docker's final pattern string, in scratch (room for
 * len + 2 bytes). Returns its length, or 0 when the line holds no pattern.
 * Stage 1 is ignorefile.ReadAll (trim, split off '!', Clean, drop a leading
 * '/'), stage 2 is patternmatcher.New (trim and Clean the whole string
 * again, then look for '!'); both run because their composition is what
 * Docker does ("/!x" ends up as an exception, "!/" as an error). */
static size_t ig_line_pattern(const char *line, size_t len, char *scratch,
                              char *tmp)
{
    size_t b = 0, e = len;
    ig_trim(line, &b, &e);
    if (b == e)
        return 0;
    bool invert = line[b] == '!';
    if (invert) {
        b++;
        ig_trim(line, &b, &e);
    }
    size_t w = 0;
    if (invert)
        tmp[w++] = '!';
    if (b < e) {
        size_t cl = ig_clean(line + b, e - b, tmp + w);
        if (cl > 1 && tmp[w] == '/') {
            memmove(tmp + w, tmp + w + 1, cl - 1);
            cl--;
        }
        w += cl;
    }
    /* Stage 2. Cleaning can expose spaces ("a /" becomes "a "), which is
     * why Docker trims again. */
    b = 0, e = w;
    ig_trim(tmp, &b, &e);
    if (b == e)
        return 0;
    return ig_clean(tmp + b, e - b, scratch);
}

static int ig_add_line(struct ck_ignore *ig, size_t *cap, const char *line,
                       size_t len, unsigned lineno, char *scratch, char *tmp,
                       struct cairn_err *err)
{
    size_t pl = ig_line_pattern(line, len, scratch, tmp);
    if (pl == 0)
        return 0;
    bool exclusion = scratch[0] == '!';
    if (exclusion && pl == 1)
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "line %u: illegal exclusion pattern \"!\"", lineno);
    if (ig->n == CK_IGNORE_MAX_PATTERNS)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "line %u: more than %u patterns", lineno,
                             (unsigned)CK_IGNORE_MAX_PATTERNS);
    if (ig->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct ig_pattern *np = realloc(ig->pats, nc * sizeof *np);
        if (np == NULL)
            return CAIRN_E_NOMEM;
        ig->pats = np;
        *cap = nc;
    }
    struct ig_pattern *pt = &ig->pats[ig->n];
    memset(pt, 0, sizeof *pt);
    const char *body = scratch + (exclusion ? 1 : 0);
    size_t bl = pl - (exclusion ? 1 : 0);
    pt->text = malloc(bl + 1);
    if (pt->text == NULL)
        return CAIRN_E_NOMEM;
    memcpy(pt->text, body, bl);
    pt->text[bl] = '\0';
    pt->text_len = bl;
    pt->exclusion = exclusion;
    ig->n++; /* owned by ig from here on, so errors free it */
    int rc = ig_compile(pt);
    if (rc == CAIRN_E_PARSE)
        return cairn_err_set(err, rc, "line %u: bad pattern \"%.200s\"",
                             lineno, pt->text);
    if (rc != 0)
        return rc;
    if (exclusion)
        ig->has_exclusions = true;
    return 0;
}

int ck_ignore_parse(const char *text, size_t len, struct ck_ignore **out,
                    struct cairn_err *err)
{
    if (len > CK_IGNORE_MAX_SIZE)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             ".dockerignore is larger than %u bytes",
                             (unsigned)CK_IGNORE_MAX_SIZE);
    struct ck_ignore *ig = calloc(1, sizeof *ig);
    /* Two scratch lines: cleaning needs at most len + 1 bytes, plus one for
     * the '!' that stage 1 puts back. */
    char *scratch = malloc(2 * (IG_MAX_LINE + 3));
    int rc = 0;
    if (ig == NULL || scratch == NULL) {
        rc = CAIRN_E_NOMEM;
        goto out;
    }
    size_t cap = 0;
    unsigned lineno = 0;
    size_t pos = 0;
    /* A UTF-8 byte order mark is dropped, as Docker does. */
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        pos = 3;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t ll = end - pos;
        lineno++;
        if (ll > 0 && text[pos + ll - 1] == '\r')
            ll--;
        if (ll > IG_MAX_LINE) {
            rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                               "line %u: longer than %u bytes", lineno,
                               IG_MAX_LINE);
            goto out;
        }
        /* Comments are recognised before trimming: " #x" is a pattern. */
        if (ll > 0 && text[pos] != '#') {
            rc = ig_add_line(ig, &cap, text + pos, ll, lineno, scratch,
                             scratch + IG_MAX_LINE + 3, err);
            if (rc != 0)
                goto out;
        }
        pos = end + 1;
    }
out:
    free(scratch);
    if (rc != 0) {
        ck_ignore_free(ig);
        return rc == CAIRN_E_NOMEM ? cairn_err_set(err, rc, "out of memory")
                                   : rc;
    }
    *out = ig;
    return 0;
}

/* Reads path into a malloc'd buffer of at most CK_IGNORE_MAX_SIZE bytes.
 * Returns -ENOENT (without touching err) when the file does not exist. */
static int ig_read_file(const char *path, char **data, size_t *len,
                        struct cairn_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return -ENOENT;
        return cairn_err_set(err, -e, "%s: %s", path, cairn_strerror(-e));
    }
    int rc = 0;
    struct cairn_buf b;
    cairn_buf_init(&b, CK_IGNORE_MAX_SIZE);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = cairn_err_set(err, -errno, "%s: %s", path, cairn_strerror(-errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = cairn_err_set(err, CAIRN_E_IO, "%s: not a regular file", path);
        goto out;
    }
    /* The cap applies to what we read, not to st_size: the file may change
     * between fstat and read. */
    char chunk[16384];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = cairn_err_set(err, -errno, "%s: %s", path,
                               cairn_strerror(-errno));
            goto out;
        }
        if (r == 0)
            break;
        rc = cairn_buf_append(&b, chunk, (size_t)r);
        if (rc == CAIRN_E_TOOBIG) {
            rc = cairn_err_set(err, rc, "%s: larger than %u bytes", path,
                               (unsigned)CK_IGNORE_MAX_SIZE);
            goto out;
        }
        if (rc != 0) {
            rc = cairn_err_set(err, rc, "%s: out of memory", path);
            goto out;
        }
    }
    *len = b.len;
    *data = cairn_buf_take(&b);
    if (*data == NULL)
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
out:
    cairn_buf_free(&b);
    close(fd);
    return rc;
}

static int ig_load_path(const char *path, struct ck_ignore **out,
                        struct cairn_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc = ig_read_file(path, &data, &len, err);
    if (rc != 0)
        return rc;
    rc = ck_ignore_parse(data, len, out, err);
    if (rc != 0)
        cairn_err_prefix(err, "%s", path);
    free(data);
    return rc;
}

int ck_ignore_load(const char *context_dir, const char *dockerfile_path,
                   struct ck_ignore **out, struct cairn_err *err)
{
    struct cairn_buf path;
    cairn_buf_init(&path, 0);
    int rc;
    if (dockerfile_path != NULL) {
        rc = cairn_buf_printf(&path, "%s.dockerignore", dockerfile_path);
        if (rc != 0)
            goto out;
        rc = ig_load_path(path.data, out, err);
        if (rc != -ENOENT)
            goto out;
        cairn_buf_reset(&path);
    }
    rc = cairn_buf_printf(&path, "%s/.dockerignore", context_dir);
    if (rc != 0)
        goto out;
    rc = ig_load_path(path.data, out, err);
    if (rc == -ENOENT)
        rc = ck_ignore_parse("", 0, out, err);
out:
    if (rc == CAIRN_E_NOMEM)
        cairn_err_set(err, rc, "out of memory");
    cairn_buf_free(&path);
    return rc;
}
