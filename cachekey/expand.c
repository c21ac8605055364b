/* Variable expansion on Dockerfile words.
 *
 * The reference is BuildKit's shell lexer (frontend/dockerfile/shell/lex.go):
 * a recursive-descent walk over the word where '$', quotes and the escape
 * character are special and everything else is copied. The word inside a
 * ${V<modifier>word} is itself processed by the same walk, stopping at '}',
 * which is what makes ${A:-${B:-x}} and "${A#$B}" work. We keep that shape
 * so that corner cases (an escape at the very end, "$" before a non-name,
 * which errors win) come out as BuildKit's do.
 *
 * BuildKit reads the word as runes with Go's text/scanner; that drops a
 * byte order mark at the start and turns invalid UTF-8 into U+FFFD. We do
 * the same so that both produce identical bytes (and therefore identical
 * cache keys) for the same Dockerfile.
 *
 * Every buffer is capped at CK_EXPAND_MAX_OUTPUT, so "${A}${A}${A}..." with
 * a large A fails with CAIRN_E_TOOBIG instead of exhausting memory, and the
 * nesting depth of ${...:-${...}} is capped so a hostile line cannot
 * exhaust the stack.
 */
#include "cachekey/expand.h"

#include "common/buf.h"
#include "common/error.h"
#include "common/utf8.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EX_EOF (-1)
#define EX_MAX_DEPTH 200
/* The #/% matcher keeps one byte per (pattern token, value byte) pair. */
#define EX_MAX_TRIM_CELLS (16u << 20)

struct ex {
    const char *s; /* the whole input word */
    size_t n;
    size_t pos; /* next byte to read */
    int32_t escape;
    ck_lookup_fn lookup;
    void *ctx;
    struct cairn_err *err;
    unsigned depth;
};

/* Words being collected by ck_expand_words. */
struct words {
    struct cairn_buf cur;
    bool in_word; /* cur holds a word, possibly empty ("") */
    char **v;
    size_t n, cap;
    size_t total; /* bytes of all finished words, to cap the result */
};

/* ---- UTF-8 --------------------------------------------------------------- */

/* Decodes one character like Go (common/utf8.h). n must be > 0. */
static size_t ex_decode(const char *s, size_t n, int32_t *r)
{
    uint32_t c;
    size_t w = cairn_utf8_decode(s, n, &c);
    *r = (int32_t)c;
    return w;
}

static size_t ex_encode(int32_t r, char out[4])
{
    uint32_t c = (uint32_t)r;
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xc0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xe0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    out[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* Go's unicode.IsSpace: what separates words in ProcessWords. (The same
 * table lives in dockerignore.c; it is too small to share a module.) */
static bool ex_is_space(int32_t r)
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

/* ---- scanner and output -------------------------------------------------- */

static int32_t ex_peek(const struct ex *x, size_t *w)
{
    if (x->pos >= x->n) {
        *w = 0;
        return EX_EOF;
    }
    int32_t r;
    *w = ex_decode(x->s + x->pos, x->n - x->pos, &r);
    return r;
}

static int32_t ex_next(struct ex *x)
{
    size_t w;
    int32_t r = ex_peek(x, &w);
    x->pos += w;
    return r;
}

/* Every append goes through here so that the cap and out-of-memory errors
 * carry a message. */
static int ex_put(struct ex *x, struct cairn_buf *b, const char *p, size_t n)
{
    int rc = cairn_buf_append(b, p, n);
    if (rc == CAIRN_E_TOOBIG)
        return cairn_err_set(x->err, rc, "expansion exceeds %u bytes",
                             (unsigned)CK_EXPAND_MAX_OUTPUT);
    if (rc != 0)
        return cairn_err_set(x->err, rc, "out of memory");
    return 0;
}

static int ex_put_rune(struct ex *x, struct cairn_buf *b, int32_t r)
{
    char enc[4];
    return ex_put(x, b, enc, ex_encode(r, enc));
}

static int ex_words_flush(struct ex *x, struct words *w)
{
    if (w->total + w->cur.len + 1 > CK_EXPAND_MAX_OUTPUT)
        return cairn_err_set(x->err, CAIRN_E_TOOBIG,
                             "expansion exceeds %u bytes",
                             (unsigned)CK_EXPAND_MAX_OUTPUT);
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 8;
        char **nv = realloc(w->v, nc * sizeof *nv);
        if (nv == NULL)
            return cairn_err_set(x->err, CAIRN_E_NOMEM, "out of memory");
        w->v = nv;
        w->cap = nc;
    }
    size_t len = w->cur.len;
    char *s = cairn_buf_take(&w->cur);
    if (s == NULL)
        return cairn_err_set(x->err, CAIRN_E_NOMEM, "out of memory");
    w->v[w->n++] = s;
    w->total += len + 1;
    w->in_word = false;
    return 0;
}

/* An unquoted character: whitespace ends the current word. */
static int ex_words_char(struct ex *x, struct words *w, int32_t r)
{
    if (ex_is_space(r))
        return w->in_word ? ex_words_flush(x, w) : 0;
    w->in_word = true;
    return ex_put_rune(x, &w->cur, r);
}

/* Quoted or escaped text: never splits, and starts a word even if empty. */
static int ex_words_raw(struct ex *x, struct words *w, const char *p, size_t n)
{
    w->in_word = true;
    return ex_put(x, &w->cur, p, n);
}

/* The result of an unquoted substitution: split on the whitespace in it. */
static int ex_words_string(struct ex *x, struct words *w, const char *p,
                           size_t n)
{
    for (size_t i = 0; i < n;) {
        int32_t r;
        i += ex_decode(p + i, n - i, &r);
        int rc = ex_words_char(x, w, r);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- ${V#pattern} and ${V%pattern} --------------------------------------- */

enum { TK_LIT, TK_ANY, TK_STAR };

struct ex_tok {
    uint8_t kind;
    int32_t rune;
};

/* Parses a shell pattern the way BuildKit's convertShellPatternToRegex
 * does: '*' and '?' are wildcards, "\*", "\?" and "\\" are literals, a
 * backslash before '}' or '/' is dropped (it only protected the character
 * from ending the ${...}), and any other escape is an error. */
static int ex_pattern_parse(struct ex *x, const char *p, size_t n,
                            struct ex_tok *toks, size_t *nt)
{
    size_t i = 0, k = 0;
    if (n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
        i = 3; /* Go's scanner skips a leading byte order mark here too */
    while (i < n) {
        int32_t r;
        i += ex_decode(p + i, n - i, &r);
        if (r == '*') {
            toks[k++] = (struct ex_tok){TK_STAR, 0};
        } else if (r == '?') {
            toks[k++] = (struct ex_tok){TK_ANY, 0};
        } else if (r == '\\') {
            if (i < n && (p[i] == '}' || p[i] == '/'))
                continue;
            int32_t e = EX_EOF;
            if (i < n)
                i += ex_decode(p + i, n - i, &e);
            if (e != '*' && e != '?' && e != '\\')
                return cairn_err_set(x->err, CAIRN_E_PARSE,
                                     "invalid pattern (%.*s) in substitution: "
                                     "invalid escape",
                                     (int)(n > 200 ? 200 : n), p);
            toks[k++] = (struct ex_tok){TK_LIT, e};
        } else {
            toks[k++] = (struct ex_tok){TK_LIT, r};
        }
    }
    *nt = k;
    return 0;
}

/* Finds where the anchored pattern toks matches a prefix of v, choosing
 * among the possible matches as Go's backtracking-order regexp does ('*' is
 * ".*" when greedy, ".*?" otherwise; neither '*' nor '?' matches a
 * newline). Returns the end of the match, or SIZE_MAX for no match.
 *
 * A table ok[i][p] ("tokens i.. can match starting at byte p") is filled
 * from the right; the walk then picks, at each '*', the longest (greedy) or
 * shortest length after which the rest still matches. That is exactly the
 * backtracking choice, in O(tokens * bytes) instead of exponential time. */
static int ex_match_prefix(struct ex *x, const struct ex_tok *toks, size_t nt,
                           const char *v, size_t n, bool greedy, size_t *end)
{
    size_t cols = n + 1;
    if ((nt + 1) > EX_MAX_TRIM_CELLS / cols)
        return cairn_err_set(x->err, CAIRN_E_TOOBIG,
                             "pattern too complex for a %zu-byte value", n);
    uint8_t *ok = calloc((nt + 1) * cols, 1);
    if (ok == NULL)
        return cairn_err_set(x->err, CAIRN_E_NOMEM, "out of memory");
    /* No end anchor: once the tokens are used up, any position matches. */
    memset(ok + nt * cols, 1, cols);
    for (size_t i = nt; i-- > 0;) {
        uint8_t *row = ok + i * cols;
        const uint8_t *next = ok + (i + 1) * cols;
        /* Positions inside a multi-byte character get values too; they are
         * never consulted from a character boundary. */
        for (size_t p = n + 1; p-- > 0;) {
            int32_t r = EX_EOF;
            size_t w = p < n ? ex_decode(v + p, n - p, &r) : 0;
            switch (toks[i].kind) {
            case TK_LIT:
                row[p] = p < n && r == toks[i].rune && next[p + w];
                break;
            case TK_ANY:
                row[p] = p < n && r != '\n' && next[p + w];
                break;
            case TK_STAR:
                row[p] = next[p] || (p < n && r != '\n' && row[p + w]);
                break;
            }
        }
    }
    size_t p = 0;
    if (!ok[0]) {
        *end = SIZE_MAX;
        free(ok);
        return 0;
    }
    for (size_t i = 0; i < nt; i++) {
        const uint8_t *next = ok + (i + 1) * cols;
        int32_t r;
        if (toks[i].kind != TK_STAR) {
            p += ex_decode(v + p, n - p, &r);
            continue;
        }
        size_t pick = SIZE_MAX;
        for (size_t q = p;;) {
            if (next[q]) {
                pick = q;
                if (!greedy)
                    break;
            }
            if (q == n)
                break;
            size_t w = ex_decode(v + q, n - q, &r);
            if (r == '\n')
                break;
            q += w;
        }
        p = pick; /* ok[i][p] held, so some q qualified */
    }
    *end = p;
    free(ok);
    return 0;
}

/* Writes the characters of s[0..n) in reverse order to out (room for 3n
 * bytes: an invalid byte becomes the 3-byte U+FFFD, as Go's []rune
 * conversion does). Returns the length written. */
static size_t ex_reverse(const char *s, size_t n, char *out)
{
    size_t total = 0;
    for (size_t i = 0; i < n;) {
        int32_t r;
        i += ex_decode(s + i, n - i, &r);
        char enc[4];
        total += ex_encode(r, enc);
    }
    size_t at = total;
    for (size_t i = 0; i < n;) {
        int32_t r;
        i += ex_decode(s + i, n - i, &r);
        char enc[4];
        size_t l = ex_encode(r, enc);
        at -= l;
        memcpy(out + at, enc, l);
    }
    return total;
}

/* BuildKit's reversePattern: the characters of p in reverse order, except
 * that a backslash and the character after it stay in that order. The
 * pairing is done left to right on the original, so a trailing lone
 * backslash ends up first (a, b, backslash becomes backslash, b, a), which
 * can turn an invalid pattern into a valid one; we reverse the text, not
 * parsed tokens, to keep exactly that behaviour. out needs room for 3 * n
 * bytes (invalid bytes become U+FFFD, as in Go's []rune conversion). */
static size_t ex_reverse_pattern(const char *p, size_t n, char *out)
{
    size_t total = 0;
    for (size_t i = 0; i < n;) {
        int32_t r;
        i += ex_decode(p + i, n - i, &r);
        char enc[4];
        total += ex_encode(r, enc);
    }
    size_t at = total;
    for (size_t i = 0; i < n;) {
        int32_t r, r2;
        i += ex_decode(p + i, n - i, &r);
        char enc[8];
        size_t l = ex_encode(r, enc);
        if (r == '\\' && i < n) {
            i += ex_decode(p + i, n - i, &r2);
            l += ex_encode(r2, enc + l);
        }
        at -= l;
        memcpy(out + at, enc, l);
    }
    return total;
}

/* ${V#word}, ${V##word} (suffix false) and ${V%word}, ${V%%word} (suffix
 * true). BuildKit trims a suffix by reversing both the value and the
 * pattern and trimming a prefix; we do the same, which also gives the same
 * answer for "shortest suffix" that a right-to-left search would. */
static int ex_trim(struct ex *x, const char *word, size_t wl, const char *val,
                   size_t vl, bool suffix, struct cairn_buf *dst)
{
    bool greedy = wl > 0 && word[0] == (suffix ? '%' : '#');
    if (greedy) {
        word++;
        wl--;
    }
    struct ex_tok *toks = NULL;
    char *rev = NULL, *back = NULL, *rpat = NULL;
    size_t nt = 0, end = 0;
    int rc;
    if (!suffix) {
        toks = malloc((wl + 1) * sizeof *toks);
        if (toks == NULL) {
            rc = cairn_err_set(x->err, CAIRN_E_NOMEM, "out of memory");
            goto out;
        }
        rc = ex_pattern_parse(x, word, wl, toks, &nt);
        if (rc == 0)
            rc = ex_match_prefix(x, toks, nt, val, vl, greedy, &end);
        if (rc == 0)
            rc = end == SIZE_MAX ? ex_put(x, dst, val, vl)
                                 : ex_put(x, dst, val + end, vl - end);
        goto out;
    }
    if (vl > CK_EXPAND_MAX_OUTPUT) {
        rc = cairn_err_set(x->err, CAIRN_E_TOOBIG, "expansion exceeds %u bytes",
                           (unsigned)CK_EXPAND_MAX_OUTPUT);
        goto out;
    }
    rpat = malloc(3 * wl + 1);
    toks = malloc((3 * wl + 1) * sizeof *toks);
    rev = malloc(3 * vl + 1);
    back = malloc(3 * vl + 1);
    if (rpat == NULL || toks == NULL || rev == NULL || back == NULL) {
        rc = cairn_err_set(x->err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    size_t pl = ex_reverse_pattern(word, wl, rpat);
    rc = ex_pattern_parse(x, rpat, pl, toks, &nt);
    if (rc != 0)
        goto out;
    size_t rl = ex_reverse(val, vl, rev);
    rc = ex_match_prefix(x, toks, nt, rev, rl, greedy, &end);
    if (rc != 0)
        goto out;
    if (end == SIZE_MAX)
        end = 0;
    size_t bl = ex_reverse(rev + end, rl - end, back);
    rc = ex_put(x, dst, back, bl);
out:
    free(toks);
    free(rpat);
    free(rev);
    free(back);
    return rc;
}

/* ---- the lexer ----------------------------------------------------------- */

static int ex_until(struct ex *x, int32_t stop, bool raw,
                    struct cairn_buf *out, struct words *w);

/* A name after '$' or "${": a run of digits (positional parameter), one
 * special parameter character, or letters, digits and '_'. Only ASCII
 * letters and digits count; BuildKit also accepts Unicode ones
 * (unicode.IsLetter), a difference only non-ASCII names can observe. */
static size_t ex_name(struct ex *x)
{
    size_t start = x->pos;
    const char *s = x->s;
    size_t i = x->pos;
    if (i < x->n && s[i] >= '0' && s[i] <= '9') {
        while (i < x->n && s[i] >= '0' && s[i] <= '9')
            i++;
    } else if (i < x->n && strchr("@*#?-$!", s[i]) != NULL && s[i] != '\0') {
        i++;
    } else {
        while (i < x->n && (s[i] == '_' || (s[i] >= '0' && s[i] <= '9') ||
                            (s[i] >= 'a' && s[i] <= 'z') ||
                            (s[i] >= 'A' && s[i] <= 'Z')))
            i++;
    }
    x->pos = i;
    return i - start;
}

static const char *ex_lookup(struct ex *x, const char *name, size_t len)
{
    return x->lookup ? x->lookup(x->ctx, name, len) : NULL;
}

static int ex_missing_brace(struct ex *x)
{
    return cairn_err_set(x->err, CAIRN_E_PARSE, "syntax error: missing '}'");
}

/* '$' at the current position; the value goes to dst. */
static int ex_dollar(struct ex *x, struct cairn_buf *dst)
{
    size_t w;
    size_t dollar_at = x->pos;
    ex_next(x);
    if (ex_peek(x, &w) != '{') {
        size_t at = x->pos;
        size_t len = ex_name(x);
        if (len == 0)
            return ex_put(x, dst, "$", 1); /* "$" then not a name: literal */
        const char *v = ex_lookup(x, x->s + at, len);
        return v ? ex_put(x, dst, v, strlen(v)) : 0;
    }
    ex_next(x);
    int32_t c = ex_peek(x, &w);
    if (c == EX_EOF)
        return ex_missing_brace(x);
    if (c == '{' || c == '}' || c == ':')
        return cairn_err_set(x->err, CAIRN_E_PARSE,
                             "syntax error: bad substitution");
    size_t at = x->pos;
    size_t len = ex_name(x);
    const char *name = x->s + at;
    c = ex_next(x);
    if (c == '}') {
        const char *v = ex_lookup(x, name, len);
        return v ? ex_put(x, dst, v, strlen(v)) : 0;
    }
    if (c == EX_EOF)
        return ex_missing_brace(x);

    bool null_is_unset = false;
    char mod[16];
    size_t ml = ex_encode(c, mod);
    if (c == ':') {
        null_is_unset = true;
        c = ex_next(x);
        if (c != EX_EOF)
            ml += ex_encode(c, mod + ml);
        if (c == '#' || c == '%')
            goto unsupported;
    } else if (c != '+' && c != '-' && c != '?' && c != '#' && c != '%') {
        goto unsupported;
    }

    /* The word is expanded before the modifier is judged, as BuildKit does,
     * so an error inside it (or a missing '}') is reported first. */
    struct cairn_buf word;
    cairn_buf_init(&word, CK_EXPAND_MAX_OUTPUT);
    bool pattern = c == '#' || c == '%';
    int rc = ex_until(x, '}', pattern, &word, NULL);
    if (rc == CAIRN_E_PARSE && x->pos >= x->n)
        rc = ex_missing_brace(x);
    if (rc != 0)
        goto done;

    const char *v = ex_lookup(x, name, len);
    bool set = v != NULL;
    size_t vl = set ? strlen(v) : 0;
    bool empty_unset = !set || (null_is_unset && vl == 0);
    const char *wd = word.data ? word.data : "";
    switch (c) {
    case '-':
        rc = empty_unset ? ex_put(x, dst, wd, word.len) : ex_put(x, dst, v, vl);
        break;
    case '+':
        rc = empty_unset ? 0 : ex_put(x, dst, wd, word.len);
        break;
    case '?':
        if (empty_unset) {
            const char *why = word.len ? wd
                              : !set   ? "is not allowed to be unset"
                                       : "is not allowed to be empty";
            rc = cairn_err_set(x->err, CAIRN_E_PARSE, "%.*s: %.500s",
                               (int)len, name, why);
        } else {
            rc = ex_put(x, dst, v, vl);
        }
        break;
    case '#':
    case '%':
        rc = ex_trim(x, wd, word.len, set ? v : "", vl, c == '%', dst);
        break;
    default:
        cairn_buf_free(&word);
        goto unsupported;
    }
done:
    cairn_buf_free(&word);
    return rc;

unsupported:
    return cairn_err_set(x->err, CAIRN_E_PARSE,
                         "bad substitution: unsupported modifier '%.*s' in "
                         "\"%.*s\"",
                         (int)ml, mod, (int)(x->pos - dollar_at > 200
                                                 ? 200
                                                 : x->pos - dollar_at),
                         x->s + dollar_at);
}

/* '...': everything literal up to the next quote. */
static int ex_single(struct ex *x, struct cairn_buf *dst)
{
    ex_next(x);
    for (;;) {
        int32_t c = ex_next(x);
        if (c == EX_EOF)
            return cairn_err_set(x->err, CAIRN_E_PARSE,
                                 "unexpected end of statement while looking "
                                 "for matching single-quote");
        if (c == '\'')
            return 0;
        int rc = ex_put_rune(x, dst, c);
        if (rc != 0)
            return rc;
    }
}

/* "...": '$' expands; the escape character escapes only '"', '$' and
 * itself and is otherwise kept. In a pattern word (raw) the escape is kept
 * in front of what it escapes, so the pattern parser can see it. */
static int ex_double(struct ex *x, bool raw, struct cairn_buf *dst)
{
    ex_next(x);
    for (;;) {
        size_t w;
        int32_t c = ex_peek(x, &w);
        int rc = 0;
        if (c == EX_EOF)
            return cairn_err_set(x->err, CAIRN_E_PARSE,
                                 "unexpected end of statement while looking "
                                 "for matching double-quote");
        if (c == '"') {
            ex_next(x);
            return 0;
        }
        if (c == '$') {
            rc = ex_dollar(x, dst);
        } else {
            c = ex_next(x);
            if (c == x->escape) {
                if (raw)
                    rc = ex_put_rune(x, dst, c);
                int32_t d = ex_peek(x, &w);
                if (d == EX_EOF)
                    continue; /* then the loop reports the missing quote */
                if (d == '"' || d == '$' || d == x->escape)
                    c = ex_next(x);
            }
            if (rc == 0)
                rc = ex_put_rune(x, dst, c);
        }
        if (rc != 0)
            return rc;
    }
}

/* Processes the input up to stop (EX_EOF: the end), writing to out, or to
 * w when splitting into words (top level of ck_expand_words only). */
static int ex_until(struct ex *x, int32_t stop, bool raw,
                    struct cairn_buf *out, struct words *w)
{
    if (++x->depth > EX_MAX_DEPTH) {
        x->depth--;
        return cairn_err_set(x->err, CAIRN_E_TOOBIG,
                             "substitutions nested more than %d deep",
                             EX_MAX_DEPTH);
    }
    struct cairn_buf tmp;
    cairn_buf_init(&tmp, CK_EXPAND_MAX_OUTPUT);
    struct cairn_buf *dst = w ? &tmp : out;
    int rc = 0;
    for (;;) {
        size_t cw;
        int32_t c = ex_peek(x, &cw);
        if (c == EX_EOF)
            break;
        if (stop != EX_EOF && c == stop) {
            ex_next(x);
            goto done;
        }
        cairn_buf_reset(&tmp);
        if (c == '$') {
            rc = ex_dollar(x, dst);
            if (rc == 0 && w)
                rc = ex_words_string(x, w, tmp.data, tmp.len);
        } else if (c == '\'' || c == '"') {
            rc = c == '\'' ? ex_single(x, dst) : ex_double(x, raw, dst);
            if (rc == 0 && w)
                rc = ex_words_raw(x, w, tmp.data, tmp.len);
        } else if (c == '<' && w) {
            /* BuildKit keeps "<<" and the blanks after it together (a
             * heredoc marker), so "<< EOF" stays one word. */
            ex_next(x);
            rc = ex_words_raw(x, w, "<", 1);
            if (rc == 0 && ex_peek(x, &cw) == '<') {
                ex_next(x);
                rc = ex_words_raw(x, w, "<", 1);
                int32_t b;
                while (rc == 0 && ((b = ex_peek(x, &cw)) == ' ' || b == '\t' ||
                                   b == '\r')) {
                    ex_next(x);
                    char bc = (char)b;
                    rc = ex_words_raw(x, w, &bc, 1);
                }
            }
        } else {
            c = ex_next(x);
            if (c == x->escape) {
                if (raw)
                    rc = ex_put_rune(x, out, c); /* never in words mode */
                c = ex_next(x);
                if (c == EX_EOF)
                    break; /* a trailing escape is dropped */
                if (rc == 0 && w) {
                    char enc[4];
                    rc = ex_words_raw(x, w, enc, ex_encode(c, enc));
                } else if (rc == 0) {
                    rc = ex_put_rune(x, out, c);
                }
            } else {
                rc = w ? ex_words_char(x, w, c) : ex_put_rune(x, out, c);
            }
        }
        if (rc != 0)
            goto done;
    }
    if (stop != EX_EOF)
        rc = cairn_err_set(x->err, CAIRN_E_PARSE,
                           "unexpected end of statement while looking for "
                           "matching %c",
                           (char)stop);
done:
    cairn_buf_free(&tmp);
    x->depth--;
    return rc;
}

/* ---- public API ---------------------------------------------------------- */

static int ex_init(struct ex *x, const char *word, char escape,
                   ck_lookup_fn lookup, void *ctx, struct cairn_err *err)
{
    if (word == NULL || (escape != '\\' && escape != '`'))
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "escape character must be '\\' or '`'");
    x->s = word;
    x->n = strlen(word);
    x->pos = 0;
    if (x->n >= 3 && memcmp(word, "\xef\xbb\xbf", 3) == 0)
        x->pos = 3;
    x->escape = (unsigned char)escape;
    x->lookup = lookup;
    x->ctx = ctx;
    x->err = err;
    x->depth = 0;
    return 0;
}

/* BuildKit reports every failure as `failed to process "<word>": ...`;
 * the word helps the user find which substitution is wrong. */
static void ex_prefix(struct cairn_err *err, const char *word)
{
    size_t n = strlen(word);
    cairn_err_prefix(err, "failed to process \"%.*s%s\"", n > 120 ? 120 : (int)n,
                     word, n > 120 ? "..." : "");
}

int ck_expand_word(const char *word, char escape, ck_lookup_fn lookup,
                   void *ctx, char **out, struct cairn_err *err)
{
    struct ex x;
    int rc = ex_init(&x, word, escape, lookup, ctx, err);
    if (rc != 0 || out == NULL)
        return rc ? rc : cairn_err_set(err, CAIRN_E_INVAL, "no output");
    struct cairn_buf b;
    cairn_buf_init(&b, CK_EXPAND_MAX_OUTPUT);
    rc = ex_until(&x, EX_EOF, false, &b, NULL);
    if (rc != 0) {
        cairn_buf_free(&b);
        ex_prefix(err, word);
        return rc;
    }
    char *s = cairn_buf_take(&b);
    if (s == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    *out = s;
    return 0;
}

int ck_expand_words(const char *text, char escape, ck_lookup_fn lookup,
                    void *ctx, char ***out, size_t *nout,
                    struct cairn_err *err)
{
    struct ex x;
    int rc = ex_init(&x, text, escape, lookup, ctx, err);
    if (rc != 0 || out == NULL || nout == NULL)
        return rc ? rc : cairn_err_set(err, CAIRN_E_INVAL, "no output");
    struct words w = {0};
    cairn_buf_init(&w.cur, CK_EXPAND_MAX_OUTPUT);
    rc = ex_until(&x, EX_EOF, false, NULL, &w);
    if (rc == 0 && w.in_word)
        rc = ex_words_flush(&x, &w);
    if (rc == 0 && w.v == NULL) {
        /* No words: still hand back an array, so *out is never NULL. */
        w.v = malloc(sizeof *w.v);
        if (w.v == NULL)
            rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    }
    cairn_buf_free(&w.cur);
    if (rc != 0) {
        ck_expand_words_free(w.v, w.n);
        ex_prefix(err, text);
        return rc;
    }
    *out = w.v;
    *nout = w.n;
    return 0;
}

void ck_expand_words_free(char **words, size_t n)
{
    if (words == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(words[i]);
    free(words);
}
