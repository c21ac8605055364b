/* Dockerfile parser. The behaviour follows BuildKit's frontend/dockerfile
 * parser (parser.go, line_parsers.go, split_command.go) and the argument
 * checks of its instructions package, so that a file Docker accepts is
 * accepted here with the same meaning, and a file Docker rejects is rejected
 * with the same words where Docker has words for it.
 *
 * The work happens in three layers:
 *   1. physical lines: BOM, CRLF, parser directives, comments, continuation
 *      lines, which together give one logical line per instruction;
 *   2. the logical line: keyword, flags and the per-instruction argument
 *      rules (JSON vs shell form, key=value pairs, words);
 *   3. heredoc bodies, read as raw physical lines after the logical line.
 *
 * Every allocation is charged against CK_DOCKERFILE_MAX_MEMORY and every
 * buffer filled from the input has a cap, so hostile input gets an error,
 * never an unbounded allocation.
 */
#include "cachekey/dockerfile.h"

#include "cachekey/jsonscan.h"
#include "common/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Longest keyword or flag name quoted back in an error message. */
#define MSG_WORD_MAX 64

struct parser {
    const char *name;      /* for messages */
    const char *text;      /* whole input */
    size_t len;
    size_t pos;            /* offset of the next physical line */
    int lineno;            /* physical lines consumed so far */
    int cur_line;          /* first line of the instruction being parsed */
    char escape;           /* '\\' or '`' */
    size_t mem;            /* bytes charged against the memory cap */
    struct cairn_err *err; /* may be NULL */
};

struct strvec {
    char **v;
    size_t n;
    size_t cap;
};

enum flag_type { FLAG_BOOL, FLAG_STRING, FLAG_STRINGS };

struct flag_def {
    const char *name;
    enum flag_type type;
};

typedef int (*args_fn)(struct parser *p, struct ck_instr *ins, const char *rest,
                       size_t n);

struct keyword {
    const char *name;
    args_fn parse;
    const struct flag_def *flags; /* terminated by a NULL name */
    bool heredocs;                /* may carry heredocs */
};

/* ---------------------------------------------------------------------- */
/* Errors and allocation                                                   */

static int perr(struct parser *p, int line, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int perr(struct parser *p, int line, int code, const char *fmt, ...)
{
    char what[CAIRN_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return cairn_err_set(p->err, code, "%s:%d: %s", p->name, line, what);
}

/* Turns a code from a cairn_buf or an allocation into an error message
 * (those helpers return bare codes). */
static int buf_fail(struct parser *p, int rc, const char *what, size_t cap)
{
    if (rc == CAIRN_E_TOOBIG)
        return perr(p, p->cur_line, rc, "%s is longer than the limit of %zu bytes",
                    what, cap);
    return perr(p, p->cur_line, CAIRN_E_NOMEM, "out of memory");
}

static int charge(struct parser *p, size_t n)
{
    if (n > CK_DOCKERFILE_MAX_MEMORY - p->mem)
        return perr(p, p->cur_line, CAIRN_E_TOOBIG,
                    "the parsed Dockerfile needs more than the limit of %u bytes "
                    "of memory",
                    CK_DOCKERFILE_MAX_MEMORY);
    p->mem += n;
    return 0;
}

static int dup_str(struct parser *p, const char *s, size_t n, char **out)
{
    int rc = charge(p, n + 1);
    if (rc)
        return rc;
    char *d = malloc(n + 1);
    if (d == NULL)
        return perr(p, p->cur_line, CAIRN_E_NOMEM, "out of memory");
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    *out = d;
    return 0;
}

/* Grows *arr (of *cap elements of size elem) to hold at least need. */
static int grow(struct parser *p, void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 4;
    while (ncap < need)
        ncap *= 2;
    /* The memory cap keeps ncap far below overflow; check anyway so the
     * multiplication below can never wrap. */
    if (ncap > CK_DOCKERFILE_MAX_MEMORY / elem)
        return charge(p, SIZE_MAX);
    int rc = charge(p, (ncap - *cap) * elem);
    if (rc)
        return rc;
    void *na = realloc(*arr, ncap * elem);
    if (na == NULL)
        return perr(p, p->cur_line, CAIRN_E_NOMEM, "out of memory");
    *arr = na;
    *cap = ncap;
    return 0;
}

/* Capacity of an array of n elements that only ever grew through grow():
 * 0, then 4, 8, 16, ... Arrays stored in the public structs keep no
 * capacity field, so it is derived from the count instead. */
static size_t implied_cap(size_t n)
{
    if (n == 0)
        return 0;
    size_t cap = 4;
    while (cap < n)
        cap *= 2;
    return cap;
}

static int sv_push(struct parser *p, struct strvec *sv, const char *s, size_t n)
{
    void *arr = sv->v;
    int rc = grow(p, &arr, &sv->cap, sv->n + 1, sizeof *sv->v);
    sv->v = arr;
    if (rc)
        return rc;
    rc = dup_str(p, s, n, &sv->v[sv->n]);
    if (rc)
        return rc;
    sv->n++;
    return 0;
}

static void sv_free(struct strvec *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    sv->v = NULL;
    sv->n = sv->cap = 0;
}

/* Moves sv's strings to the end of ins->args. */
static int take_args(struct parser *p, struct ck_instr *ins, struct strvec *sv)
{
    size_t cap = implied_cap(ins->nargs);
    void *arr = ins->args;
    int rc = grow(p, &arr, &cap, ins->nargs + sv->n, sizeof *ins->args);
    ins->args = arr;
    if (rc) {
        sv_free(sv);
        return rc;
    }
    for (size_t i = 0; i < sv->n; i++)
        ins->args[ins->nargs++] = sv->v[i];
    free(sv->v);
    sv->v = NULL;
    sv->n = sv->cap = 0;
    return 0;
}

static int push_arg(struct parser *p, struct ck_instr *ins, const char *s, size_t n)
{
    struct strvec sv = {0};
    int rc = sv_push(p, &sv, s, n);
    if (rc) {
        sv_free(&sv);
        return rc;
    }
    return take_args(p, ins, &sv);
}

static void instr_clear(struct ck_instr *ins)
{
    free(ins->original);
    for (size_t i = 0; i < ins->nflags; i++) {
        free(ins->flags[i].name);
        free(ins->flags[i].value);
    }
    free(ins->flags);
    for (size_t i = 0; i < ins->nargs; i++)
        free(ins->args[i]);
    free(ins->args);
    for (size_t i = 0; i < ins->nheredocs; i++) {
        free(ins->heredocs[i].name);
        free(ins->heredocs[i].content);
    }
    free(ins->heredocs);
    if (ins->sub) {
        instr_clear(ins->sub);
        free(ins->sub);
    }
    memset(ins, 0, sizeof *ins);
}

/* ---------------------------------------------------------------------- */
/* Characters and words                                                    */

/* ASCII whitespace only: a locale must never change how a file parses. */
static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static char to_upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

static char to_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_ws(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_ws((*s)[*n - 1]))
        (*n)--;
}

static void trim_left(const char **s, size_t *n)
{
    while (*n > 0 && is_ws(**s)) {
        (*s)++;
        (*n)--;
    }
}

static bool word_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

static int clamp_len(size_t n)
{
    return n > MSG_WORD_MAX ? MSG_WORD_MAX : (int)n;
}

/* Splits s on runs of whitespace with no regard for quotes, as Docker does
 * for FROM, EXPOSE and the shell form of ADD, COPY and VOLUME. */
static int split_ws(struct parser *p, const char *s, size_t n, struct strvec *sv)
{
    size_t i = 0;
    for (;;) {
        while (i < n && is_ws(s[i]))
            i++;
        if (i >= n)
            return 0;
        size_t start = i;
        while (i < n && !is_ws(s[i]))
            i++;
        int rc = sv_push(p, sv, s + start, i - start);
        if (rc)
            return rc;
    }
}

/* Splits s into words at unquoted whitespace, keeping quotes and escape
 * characters in the words (Docker's parseWords): the words are expanded
 * later, and expansion needs them raw. An escape character at the very end
 * is dropped, as Docker does. */
static int split_words(struct parser *p, const char *s, size_t n, char esc,
                       struct strvec *sv)
{
    struct cairn_buf w;
    cairn_buf_init(&w, CK_DOCKERFILE_MAX_LINE);
    size_t i = 0;
    int rc = 0;
    for (;;) {
        while (i < n && is_ws(s[i]))
            i++;
        if (i >= n)
            break;
        cairn_buf_reset(&w);
        bool blank_ok = false;
        char quote = 0;
        while (i < n && rc == 0) {
            char c = s[i];
            if (quote == 0) {
                if (is_ws(c))
                    break;
                if (c == '\'' || c == '"') {
                    quote = c;
                    blank_ok = true;
                } else if (c == esc) {
                    if (i + 1 == n) {
                        i++;
                        continue;
                    }
                    rc = cairn_buf_putc(&w, c);
                    c = s[++i];
                }
            } else if (c == quote) {
                quote = 0;
            } else if (c == esc && quote != '\'') {
                if (i + 1 == n) {
                    quote = 0;
                    i++;
                    continue;
                }
                rc = cairn_buf_putc(&w, c);
                c = s[++i];
            }
            if (rc == 0)
                rc = cairn_buf_putc(&w, c);
            i++;
        }
        if (rc) {
            rc = buf_fail(p, rc, "a word", CK_DOCKERFILE_MAX_LINE);
            break;
        }
        if (blank_ok || w.len > 0) {
            rc = sv_push(p, sv, w.data ? w.data : "", w.len);
            if (rc)
                break;
        }
    }
    cairn_buf_free(&w);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* JSON exec form                                                          */

/* Docker decides between exec and shell form by running a JSON decoder on
 * the text: a syntactically valid array is exec form (and must hold only
 * strings), anything else is shell form. So json_array accepts exactly
 * JSON (RFC 8259, cachekey/jsonscan.h), including values that are then
 * rejected. */

enum json_result { JSON_NOT = 0, JSON_STRINGS = 1, JSON_OTHER = 2, JSON_NUL = 3 };

/* Parses s as a JSON array. Returns (>= 0) a json_result, with the decoded
 * strings in sv for JSON_STRINGS, or a negative error code. */
static int json_array(struct parser *p, const char *s, size_t n, struct strvec *sv)
{
    struct cairn_buf str;
    cairn_buf_init(&str, CK_DOCKERFILE_MAX_LINE);
    struct ck_jsonscan j = {.s = s, .n = n, .i = 0, .has_nul = false, .out = &str, .rc = 0};
    bool nonstring = false;
    int result = JSON_NOT;

    ck_jsonscan_ws(&j);
    if (j.i >= n || s[j.i] != '[')
        goto out;
    j.i++;
    ck_jsonscan_ws(&j);
    if (j.i < n && s[j.i] == ']') {
        j.i++;
    } else {
        for (;;) {
            ck_jsonscan_ws(&j);
            if (j.i >= n)
                goto out;
            if (s[j.i] == '"') {
                cairn_buf_reset(&str);
                if (!ck_jsonscan_string(&j))
                    goto out;
                if (j.rc) {
                    result = buf_fail(p, j.rc, "a JSON string", CK_DOCKERFILE_MAX_LINE);
                    goto out;
                }
                int rc = sv_push(p, sv, str.data ? str.data : "", str.len);
                if (rc) {
                    result = rc;
                    goto out;
                }
            } else {
                if (!ck_jsonscan_value(&j, 1))
                    goto out;
                nonstring = true;
            }
            ck_jsonscan_ws(&j);
            if (j.i >= n)
                goto out;
            if (s[j.i] == ']') {
                j.i++;
                break;
            }
            if (s[j.i] != ',')
                goto out;
            j.i++;
        }
    }
    ck_jsonscan_ws(&j);
    if (j.i != n)
        goto out;
    result = nonstring ? JSON_OTHER : j.has_nul ? JSON_NUL : JSON_STRINGS;
out:
    cairn_buf_free(&str);
    return result;
}

/* Exec form when rest is a JSON array of strings; otherwise shell form:
 * the whole text as one argument (to_list false) or its whitespace-separated
 * words (to_list true). */
static int args_maybe_json(struct parser *p, struct ck_instr *ins, const char *rest,
                           size_t n, bool to_list)
{
    struct strvec sv = {0};
    int rc = json_array(p, rest, n, &sv);
    if (rc == JSON_STRINGS) {
        ins->json = true;
        return take_args(p, ins, &sv);
    }
    sv_free(&sv);
    if (rc < 0)
        return rc;
    if (rc == JSON_OTHER)
        return perr(p, p->cur_line, CAIRN_E_PARSE,
                    "when using JSON array syntax, arrays must be comprised of "
                    "strings only");
    if (rc == JSON_NUL)
        return perr(p, p->cur_line, CAIRN_E_PARSE,
                    "JSON strings must not contain NUL characters");
    if (!to_list)
        return push_arg(p, ins, rest, n);
    rc = split_ws(p, rest, n, &sv);
    if (rc) {
        sv_free(&sv);
        return rc;
    }
    return take_args(p, ins, &sv);
}

/* ---------------------------------------------------------------------- */
/* Heredoc words                                                           */

/* Recognises a heredoc marker word ("<<EOF", "<<-'EOF'", "3<<EOF") the way
 * BuildKit does: optional digits, "<<", optional "-", then a rest without
 * '<' that lexes to exactly one shell word. The name is that word with
 * quotes and escapes removed; any quoting turns expansion off. Returns 1 on
 * a match (and sets the outputs; *name is malloc'd), 0 otherwise, or an
 * error code. */
static int heredoc_word(struct parser *p, const char *w, size_t n, char **name,
                        bool *expand, bool *chomp)
{
    size_t i = 0;
    while (i < n && w[i] >= '0' && w[i] <= '9')
        i++;
    if (n - i < 2 || w[i] != '<' || w[i + 1] != '<')
        return 0;
    i += 2;
    bool dash = i < n && w[i] == '-';
    if (dash)
        i++;
    while (i < n && is_ws(w[i]))
        i++;
    if (i == n || memchr(w + i, '<', n - i) != NULL)
        return 0;

    struct cairn_buf out;
    cairn_buf_init(&out, CK_DOCKERFILE_MAX_LINE);
    bool quoted = false, in_word = false;
    int words = 0, rc = 0;
    while (i < n && rc == 0) {
        char c = w[i];
        if (is_ws(c)) {
            if (in_word)
                words++;
            in_word = false;
            i++;
            continue;
        }
        if (!in_word && words > 0) {
            words++; /* a second word: not a heredoc */
            break;
        }
        in_word = true;
        if (c == '\\') {
            if (i + 1 < n)
                rc = cairn_buf_putc(&out, w[i + 1]);
            i += 2;
        } else if (c == '\'' || c == '"') {
            quoted = true;
            size_t close = i + 1;
            while (close < n && w[close] != c) {
                if (c == '"' && w[close] == '\\' && close + 1 < n &&
                    (w[close + 1] == '"' || w[close + 1] == '\\' || w[close + 1] == '$'))
                    close++;
                close++;
            }
            if (close >= n) {
                words = 0; /* unterminated quote: not a heredoc */
                in_word = false;
                break;
            }
            for (size_t k = i + 1; k < close && rc == 0; k++) {
                if (c == '"' && w[k] == '\\' && k + 1 < close &&
                    (w[k + 1] == '"' || w[k + 1] == '\\' || w[k + 1] == '$'))
                    k++;
                rc = cairn_buf_putc(&out, w[k]);
            }
            i = close + 1;
        } else {
            rc = cairn_buf_putc(&out, c);
            i++;
        }
    }
    if (in_word)
        words++;
    if (rc == 0 && words == 1) {
        rc = dup_str(p, out.data ? out.data : "", out.len, name);
        if (rc == 0) {
            *expand = !quoted;
            *chomp = dash;
            rc = 1;
        }
    } else if (rc) {
        rc = buf_fail(p, rc, "a heredoc name", CK_DOCKERFILE_MAX_LINE);
    }
    cairn_buf_free(&out);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Per-instruction argument rules                                          */

static const struct flag_def no_flags[] = {{NULL, FLAG_BOOL}};
static const struct flag_def from_flags[] = {
    {"platform", FLAG_STRING},
    {NULL, FLAG_BOOL},
};
static const struct flag_def run_flags[] = {
    {"mount", FLAG_STRINGS},
    {"network", FLAG_STRING},
    {"security", FLAG_STRING},
    {NULL, FLAG_BOOL},
};
static const struct flag_def copy_flags[] = {
    {"from", FLAG_STRING},   {"chown", FLAG_STRING},   {"chmod", FLAG_STRING},
    {"link", FLAG_BOOL},     {"parents", FLAG_BOOL},   {"exclude", FLAG_STRINGS},
    {NULL, FLAG_BOOL},
};
static const struct flag_def add_flags[] = {
    {"chown", FLAG_STRING},  {"chmod", FLAG_STRING},       {"link", FLAG_BOOL},
    {"checksum", FLAG_STRING}, {"keep-git-dir", FLAG_BOOL}, {"unpack", FLAG_BOOL},
    {"exclude", FLAG_STRINGS}, {NULL, FLAG_BOOL},
};
static const struct flag_def healthcheck_flags[] = {
    {"interval", FLAG_STRING},     {"timeout", FLAG_STRING},
    {"start-period", FLAG_STRING}, {"start-interval", FLAG_STRING},
    {"retries", FLAG_STRING},      {NULL, FLAG_BOOL},
};

static int parse_instr(struct parser *p, const char *s, size_t n, struct ck_instr *ins);

static int args_from(struct parser *p, struct ck_instr *ins, const char *rest, size_t n)
{
    struct strvec sv = {0};
    int rc = split_ws(p, rest, n, &sv);
    if (rc)
        goto fail;
    if (sv.n == 3 && word_eq(sv.v[1], strlen(sv.v[1]), "as")) {
        /* Stage names are matched case-insensitively, so Docker checks the
         * lower-cased name against ^[a-z][a-z0-9-_.]*$. */
        const char *name = sv.v[2];
        bool ok = to_lower(name[0]) >= 'a' && to_lower(name[0]) <= 'z';
        for (size_t i = 1; ok && name[i]; i++) {
            char c = to_lower(name[i]);
            ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_' || c == '.';
        }
        if (!ok) {
            rc = perr(p, p->cur_line, CAIRN_E_PARSE,
                      "invalid name for build stage: \"%s\", name can't start with a "
                      "number or contain symbols",
                      name);
            goto fail;
        }
    } else if (sv.n != 1) {
        rc = perr(p, p->cur_line, CAIRN_E_PARSE,
                  "FROM requires either one or three arguments");
        goto fail;
    }
    return take_args(p, ins, &sv);
fail:
    sv_free(&sv);
    return rc;
}

/* RUN, CMD, ENTRYPOINT: exec or shell form; an empty shell form is one
 * empty command line, which is what Docker runs for it. */
static int args_command(struct parser *p, struct ck_instr *ins, const char *rest,
                        size_t n)
{
    return args_maybe_json(p, ins, rest, n, false);
}

static int args_shell(struct parser *p, struct ck_instr *ins, const char *rest,
                      size_t n)
{
    if (n == 0)
        return perr(p, p->cur_line, CAIRN_E_PARSE, "SHELL requires at least one argument");
    int rc = args_maybe_json(p, ins, rest, n, false);
    if (rc)
        return rc;
    if (!ins->json)
        return perr(p, p->cur_line, CAIRN_E_PARSE,
                    "SHELL requires the arguments to be in JSON form");
    if (ins->nargs == 0)
        return perr(p, p->cur_line, CAIRN_E_PARSE, "SHELL requires at least one argument");
    return 0;
}

/* ENV and LABEL: key=value pairs, or the legacy "KEY name value" form where
 * the value is the rest of the line. Which form is decided by whether the
 * first word holds an '='. */
static int args_pairs(struct parser *p, struct ck_instr *ins, const char *rest,
                      size_t n)
{
    const char *kw = ck_instr_name(ins->kind);
    struct strvec words = {0}, pairs = {0};
    int rc = split_words(p, rest, n, p->escape, &words);
    if (rc)
        goto out;
    if (words.n == 0) {
        rc = perr(p, p->cur_line, CAIRN_E_PARSE, "%s requires at least one argument", kw);
        goto out;
    }
    if (strchr(words.v[0], '=') == NULL) {
        size_t k = 0;
        while (k < n && !is_ws(rest[k]))
            k++;
        size_t v = k;
        while (v < n && is_ws(rest[v]))
            v++;
        if (v >= n) {
            rc = perr(p, p->cur_line, CAIRN_E_PARSE, "%s must have two arguments", kw);
            goto out;
        }
        rc = sv_push(p, &pairs, rest, k);
        if (rc == 0)
            rc = sv_push(p, &pairs, rest + v, n - v);
        goto out;
    }
    for (size_t i = 0; i < words.n; i++) {
        const char *w = words.v[i];
        const char *eq = strchr(w, '=');
        if (eq == NULL) {
            rc = perr(p, p->cur_line, CAIRN_E_PARSE,
                      "Syntax error - can't find = in \"%s\". Must be of the form: "
                      "name=value",
                      w);
            goto out;
        }
        if (eq == w) {
            rc = perr(p, p->cur_line, CAIRN_E_PARSE, "%s names can not be blank", kw);
            goto out;
        }
        rc = sv_push(p, &pairs, w, (size_t)(eq - w));
        if (rc == 0)
            rc = sv_push(p, &pairs, eq + 1, strlen(eq + 1));
        if (rc)
            goto out;
    }
out:
    sv_free(&words);
    if (rc == 0)
        return take_args(p, ins, &pairs);
    sv_free(&pairs);
    return rc;
}

static int args_arg(struct parser *p, struct ck_instr *ins, const char *rest, size_t n)
{
    struct strvec sv = {0};
    int rc = split_words(p, rest, n, p->escape, &sv);
    if (rc == 0 && sv.n == 0)
        rc = perr(p, p->cur_line, CAIRN_E_PARSE, "ARG requires at least one argument");
    for (size_t i = 0; rc == 0 && i < sv.n; i++)
        if (sv.v[i][0] == '=')
            rc = perr(p, p->cur_line, CAIRN_E_PARSE, "ARG names can not be blank");
    if (rc) {
        sv_free(&sv);
        return rc;
    }
    return take_args(p, ins, &sv);
}

static int args_copy(struct parser *p, struct ck_instr *ins, const char *rest, size_t n)
{
    const char *kw = ck_instr_name(ins->kind);
    int rc = args_maybe_json(p, ins, rest, n, true);
    if (rc)
        return rc;
    if (ins->nargs < 2)
        return perr(p, p->cur_line, CAIRN_E_PARSE,
                    "%s requires at least two arguments, but only one was provided. "
                    "Destination could not be determined",
                    kw);
    const char *dest = ins->args[ins->nargs - 1];
    char *name = NULL;
    bool expand, chomp;
    rc = heredoc_word(p, dest, strlen(dest), &name, &expand, &chomp);
    free(name);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return perr(p, p->cur_line, CAIRN_E_PARSE,
                    "%s cannot accept a heredoc as a destination", kw);
    return 0;
}

static int args_expose(struct parser *p, struct ck_instr *ins, const char *rest,
                       size_t n)
{
    if (n == 0)
        return perr(p, p->cur_line, CAIRN_E_PARSE, "EXPOSE requires at least one argument");
    struct strvec sv = {0};
    int rc = split_ws(p, rest, n, &sv);
    if (rc) {
        sv_free(&sv);
        return rc;
    }
    return take_args(p, ins, &sv);
}

static int args_volume(struct parser *p, struct ck_instr *ins, const char *rest,
                       size_t n)
{
    int rc = args_maybe_json(p, ins, rest, n, true);
    if (rc)
        return rc;
    if (ins->nargs == 0)
        return perr(p, p->cur_line, CAIRN_E_PARSE, "VOLUME requires at least one argument");
    for (size_t i = 0; i < ins->nargs; i++) {
        const char *v = ins->args[i];
        size_t vn = strlen(v);
        trim(&v, &vn);
        if (vn == 0)
            return perr(p, p->cur_line, CAIRN_E_PARSE,
                        "VOLUME specified can not be an empty string");
    }
    return 0;
}

/* USER, WORKDIR, STOPSIGNAL, MAINTAINER: the rest of the line, verbatim. */
static int args_rest(struct parser *p, struct ck_instr *ins, const char *rest, size_t n)
{
    if (n == 0)
        return perr(p, p->cur_line, CAIRN_E_PARSE, "%s requires exactly one argument",
                    ck_instr_name(ins->kind));
    return push_arg(p, ins, rest, n);
}

static int args_healthcheck(struct parser *p, struct ck_instr *ins, const char *rest,
                            size_t n)
{
    if (n == 0)
        return perr(p, p->cur_line, CAIRN_E_PARSE,
                    "HEALTHCHECK requires at least one argument");
    size_t tn = 0;
    while (tn < n && !is_ws(rest[tn]))
        tn++;
    const char *cmd = rest + tn;
    size_t cn = n - tn;
    trim_left(&cmd, &cn);

    if (word_eq(rest, tn, "NONE")) {
        if (cn != 0)
            return perr(p, p->cur_line, CAIRN_E_PARSE, "HEALTHCHECK NONE takes no arguments");
        return push_arg(p, ins, "NONE", 4);
    }
    if (!word_eq(rest, tn, "CMD")) {
        char typ[MSG_WORD_MAX + 1];
        int tl = clamp_len(tn);
        for (int i = 0; i < tl; i++)
            typ[i] = to_upper(rest[i]);
        typ[tl] = '\0';
        return perr(p, p->cur_line, CAIRN_E_PARSE,
                    "Unknown type \"%s\" in HEALTHCHECK (try CMD)", typ);
    }
    if (cn == 0)
        return perr(p, p->cur_line, CAIRN_E_PARSE, "Missing command after HEALTHCHECK CMD");
    int rc = push_arg(p, ins, "CMD", 3);
    if (rc == 0)
        rc = args_maybe_json(p, ins, cmd, cn, false);
    if (rc == 0 && ins->nargs < 2)
        rc = perr(p, p->cur_line, CAIRN_E_PARSE, "Missing command after HEALTHCHECK CMD");
    return rc;
}

/* ONBUILD: the rest is an instruction of its own. The triggers Docker
 * forbids are checked by keyword before the rest is parsed, so their
 * message wins over whatever else is wrong with the line. */
static int args_onbuild(struct parser *p, struct ck_instr *ins, const char *rest,
                        size_t n)
{
    if (n == 0)
        return perr(p, p->cur_line, CAIRN_E_PARSE, "ONBUILD requires at least one argument");
    size_t kn = 0;
    while (kn < n && !is_ws(rest[kn]))
        kn++;
    if (word_eq(rest, kn, "ONBUILD"))
        return perr(p, p->cur_line, CAIRN_E_PARSE,
                    "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
    if (word_eq(rest, kn, "FROM") || word_eq(rest, kn, "MAINTAINER"))
        return perr(p, p->cur_line, CAIRN_E_PARSE, "%s isn't allowed as an ONBUILD trigger",
                    word_eq(rest, kn, "FROM") ? "FROM" : "MAINTAINER");
    int rc = charge(p, sizeof *ins->sub);
    if (rc)
        return rc;
    ins->sub = calloc(1, sizeof *ins->sub);
    if (ins->sub == NULL)
        return perr(p, p->cur_line, CAIRN_E_NOMEM, "out of memory");
    return parse_instr(p, rest, n, ins->sub);
}

/* Indexed by enum ck_instr_kind. */
static const struct keyword keywords[] = {
    [CK_INSTR_FROM] = {"FROM", args_from, from_flags, false},
    [CK_INSTR_RUN] = {"RUN", args_command, run_flags, true},
    [CK_INSTR_CMD] = {"CMD", args_command, no_flags, false},
    [CK_INSTR_LABEL] = {"LABEL", args_pairs, no_flags, false},
    [CK_INSTR_MAINTAINER] = {"MAINTAINER", args_rest, no_flags, false},
    [CK_INSTR_EXPOSE] = {"EXPOSE", args_expose, no_flags, false},
    [CK_INSTR_ENV] = {"ENV", args_pairs, no_flags, false},
    [CK_INSTR_ADD] = {"ADD", args_copy, add_flags, true},
    [CK_INSTR_COPY] = {"COPY", args_copy, copy_flags, true},
    [CK_INSTR_ENTRYPOINT] = {"ENTRYPOINT", args_command, no_flags, false},
    [CK_INSTR_VOLUME] = {"VOLUME", args_volume, no_flags, false},
    [CK_INSTR_USER] = {"USER", args_rest, no_flags, false},
    [CK_INSTR_WORKDIR] = {"WORKDIR", args_rest, no_flags, false},
    [CK_INSTR_ARG] = {"ARG", args_arg, no_flags, false},
    [CK_INSTR_ONBUILD] = {"ONBUILD", args_onbuild, no_flags, false},
    [CK_INSTR_STOPSIGNAL] = {"STOPSIGNAL", args_rest, no_flags, false},
    [CK_INSTR_HEALTHCHECK] = {"HEALTHCHECK", args_healthcheck, healthcheck_flags, false},
    [CK_INSTR_SHELL] = {"SHELL", args_shell, no_flags, false},
};

#define NKEYWORDS (sizeof keywords / sizeof keywords[0])

const char *ck_instr_name(enum ck_instr_kind kind)
{
    if ((unsigned)kind >= NKEYWORDS)
        return "UNKNOWN";
    return keywords[kind].name;
}

/* ---------------------------------------------------------------------- */
/* Flags                                                                   */

/* Checks one flag word ("--name" or "--name=value", quotes already removed)
 * against the instruction's table and records it. */
static int add_flag(struct parser *p, struct ck_instr *ins, const char *w, size_t n)
{
    const char *kw = ck_instr_name(ins->kind);
    const char *eq = memchr(w, '=', n);
    const char *fname = w + 2;
    size_t fn = (size_t)((eq ? eq : w + n) - fname);
    const struct flag_def *def = keywords[ins->kind].flags;
    while (def->name && !(strlen(def->name) == fn && memcmp(def->name, fname, fn) == 0))
        def++;
    if (def->name == NULL)
        return perr(p, p->cur_line, CAIRN_E_PARSE, "unknown flag \"--%.*s\" for %s",
                    clamp_len(fn), fname, kw);
    if (def->type != FLAG_STRINGS)
        for (size_t i = 0; i < ins->nflags; i++)
            if (strcmp(ins->flags[i].name, def->name) == 0)
                return perr(p, p->cur_line, CAIRN_E_PARSE,
                            "duplicate flag specified: --%s", def->name);
    const char *val = eq ? eq + 1 : NULL;
    size_t vn = eq ? n - (size_t)(val - w) : 0;
    if (def->type == FLAG_BOOL) {
        if (eq && vn == 0)
            return perr(p, p->cur_line, CAIRN_E_PARSE, "missing a value on flag: --%s",
                        def->name);
        if (eq && !word_eq(val, vn, "true") && !word_eq(val, vn, "false"))
            return perr(p, p->cur_line, CAIRN_E_PARSE,
                        "expecting boolean value for flag --%s, not: %.*s", def->name,
                        clamp_len(vn), val);
    } else if (eq == NULL) {
        return perr(p, p->cur_line, CAIRN_E_PARSE, "missing a value on flag: --%s",
                    def->name);
    }

    size_t cap = implied_cap(ins->nflags);
    void *arr = ins->flags;
    int rc = grow(p, &arr, &cap, ins->nflags + 1, sizeof *ins->flags);
    ins->flags = arr;
    if (rc)
        return rc;
    struct ck_flag f = {NULL, NULL};
    rc = dup_str(p, def->name, strlen(def->name), &f.name);
    if (rc == 0 && val)
        rc = dup_str(p, val, vn, &f.value);
    if (rc) {
        free(f.name);
        return rc;
    }
    ins->flags[ins->nflags++] = f;
    return 0;
}

/* Takes the leading "--flag" words off *rest (BuildKit's
 * extractBuilderFlags): quotes in a flag word are removed and the escape
 * character makes the next character literal; a bare "--" ends the flags
 * and is dropped. *rest is left trimmed. */
static int extract_flags(struct parser *p, struct ck_instr *ins, const char **rest,
                         size_t *rn)
{
    const char *s = *rest;
    size_t n = *rn, i = 0;
    struct cairn_buf w;
    cairn_buf_init(&w, CK_DOCKERFILE_MAX_LINE);
    int rc = 0;
    for (;;) {
        while (i < n && is_ws(s[i]))
            i++;
        if (i + 1 >= n || s[i] != '-' || s[i + 1] != '-')
            break;
        cairn_buf_reset(&w);
        char quote = 0;
        while (i < n && rc == 0) {
            char c = s[i];
            if (quote == 0 && is_ws(c))
                break;
            if (quote == 0 && (c == '\'' || c == '"')) {
                quote = c;
                i++;
                continue;
            }
            if (quote != 0 && c == quote) {
                quote = 0;
                i++;
                continue;
            }
            if (c == p->escape) {
                if (i + 1 == n) {
                    quote = 0;
                    i++;
                    continue;
                }
                c = s[++i];
            }
            rc = cairn_buf_putc(&w, c);
            i++;
        }
        if (rc) {
            rc = buf_fail(p, rc, "a flag", CK_DOCKERFILE_MAX_LINE);
            break;
        }
        if (w.len == 2 && memcmp(w.data, "--", 2) == 0)
            break;
        rc = add_flag(p, ins, w.data, w.len);
        if (rc)
            break;
    }
    cairn_buf_free(&w);
    s += i;
    n -= i;
    trim(&s, &n);
    *rest = s;
    *rn = n;
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Logical lines                                                           */

/* Parses one logical line (continuations joined) into ins. */
static int parse_instr(struct parser *p, const char *s, size_t n, struct ck_instr *ins)
{
    trim(&s, &n);
    ins->line = ins->end_line = p->cur_line;
    int rc = dup_str(p, s, n, &ins->original);
    if (rc)
        return rc;
    size_t kn = 0;
    while (kn < n && !is_ws(s[kn]))
        kn++;
    size_t k = 0;
    while (k < NKEYWORDS && !word_eq(s, kn, keywords[k].name))
        k++;
    if (k == NKEYWORDS)
        return perr(p, p->cur_line, CAIRN_E_PARSE, "unknown instruction \"%.*s\"",
                    clamp_len(kn), s);
    ins->kind = (enum ck_instr_kind)k;
    const char *rest = s + kn;
    size_t rn = n - kn;
    trim(&rest, &rn);
    rc = extract_flags(p, ins, &rest, &rn);
    if (rc)
        return rc;
    return keywords[k].parse(p, ins, rest, rn);
}

/* Reads the next physical line: *s and *n are its text without the line ending
 * (every trailing '\r' goes too, as in Docker). Returns false at the end. */
static bool next_line(struct parser *p, const char **s, size_t *n)
{
    if (p->pos >= p->len)
        return false;
    const char *start = p->text + p->pos;
    const char *nl = memchr(start, '\n', p->len - p->pos);
    size_t l = nl ? (size_t)(nl - start) : p->len - p->pos;
    p->pos += l + (nl ? 1 : 0);
    while (l > 0 && start[l - 1] == '\r')
        l--;
    p->lineno++;
    if (p->lineno == 1 && l >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0) {
        start += 3;
        l -= 3;
    }
    *s = start;
    *n = l;
    return true;
}

/* True when the line continues on the next one: it ends in the escape
 * character (trailing blanks allowed) that is not itself escaped. *n is cut
 * to the text before the escape character. Like Docker, "foo \\" (an
 * escaped escape) does not continue; "\\" alone on a line does. */
static bool strip_continuation(char esc, const char *s, size_t *n)
{
    size_t e = *n;
    while (e > 0 && (s[e - 1] == ' ' || s[e - 1] == '\t'))
        e--;
    if (e == 0 || s[e - 1] != esc)
        return false;
    if (e >= 2 && s[e - 2] == esc)
        return false;
    *n = e - 1;
    return true;
}

static bool is_space_only(const char *s, size_t n)
{
    trim_left(&s, &n);
    return n == 0;
}

static bool is_comment(const char *s, size_t n)
{
    trim_left(&s, &n);
    return n > 0 && s[0] == '#';
}

/* Parser directives. Like BuildKit, a line is a directive when it is
 * "# key = value" with a known key; the first line that is not one (any
 * other comment, a blank line, an instruction) ends the directives.
 * Returns 1 for a directive, 0 for anything else, or an error. */
static int parse_directive(struct parser *p, const char *s, size_t n, bool seen[3])
{
    static const char *const known[3] = {"escape", "syntax", "check"};
    if (n == 0 || s[0] != '#')
        return 0;
    s++;
    n--;
    trim_left(&s, &n);
    size_t kn = 0;
    if (n == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return 0;
    while (kn < n && ((s[kn] >= 'a' && s[kn] <= 'z') || (s[kn] >= 'A' && s[kn] <= 'Z') ||
                      (s[kn] >= '0' && s[kn] <= '9')))
        kn++;
    const char *v = s + kn;
    size_t vn = n - kn;
    trim_left(&v, &vn);
    if (vn == 0 || v[0] != '=')
        return 0;
    v++;
    vn--;
    trim(&v, &vn);
    if (vn == 0)
        return 0;
    int k = 0;
    while (k < 3 && !word_eq(s, kn, known[k]))
        k++;
    if (k == 3)
        return 0;
    if (seen[k])
        return perr(p, p->lineno, CAIRN_E_PARSE, "only one %s parser directive can be used",
                    known[k]);
    seen[k] = true;
    if (k == 0) {
        if (vn != 1 || (v[0] != '\\' && v[0] != '`'))
            return perr(p, p->lineno, CAIRN_E_PARSE,
                        "invalid escape token '%.*s' does not match ` or \\",
                        clamp_len(vn), v);
        p->escape = v[0];
    }
    return 1;
}

/* After a RUN, COPY or ADD (also under ONBUILD) whose line holds "<<",
 * finds the heredoc markers and reads their bodies from the following
 * lines, in order. */
static int read_heredocs(struct parser *p, struct ck_instr *ins, const char *line,
                         size_t n)
{
    struct ck_instr *target = ins->kind == CK_INSTR_ONBUILD ? ins->sub : ins;
    if (target == NULL || !keywords[target->kind].heredocs)
        return 0;
    if (n < 2 || memmem(line, n, "<<", 2) == NULL)
        return 0;

    /* Markers are found on the whole line with the shell's rules, which
     * always use backslash as escape, whatever the escape directive says. */
    struct strvec words = {0};
    int rc = split_words(p, line, n, '\\', &words);
    for (size_t i = 0; rc == 0 && i < words.n; i++) {
        struct ck_heredoc h = {NULL, NULL, false, false};
        int m = heredoc_word(p, words.v[i], strlen(words.v[i]), &h.name, &h.expand,
                             &h.chomp);
        if (m < 0) {
            rc = m;
            break;
        }
        if (m == 0)
            continue;
        size_t cap = implied_cap(target->nheredocs);
        void *arr = target->heredocs;
        rc = grow(p, &arr, &cap, target->nheredocs + 1, sizeof *target->heredocs);
        target->heredocs = arr;
        if (rc) {
            free(h.name);
            break;
        }
        target->heredocs[target->nheredocs++] = h;
    }
    sv_free(&words);

    struct cairn_buf body;
    cairn_buf_init(&body, CK_DOCKERFILE_MAX_HEREDOC);
    for (size_t i = 0; rc == 0 && i < target->nheredocs; i++) {
        struct ck_heredoc *h = &target->heredocs[i];
        size_t nl = strlen(h->name);
        bool terminated = false;
        const char *s;
        size_t sn;
        cairn_buf_reset(&body);
        while (rc == 0 && next_line(p, &s, &sn)) {
            if (h->chomp)
                while (sn > 0 && s[0] == '\t') {
                    s++;
                    sn--;
                }
            if (sn == nl && memcmp(s, h->name, nl) == 0) {
                terminated = true;
                break;
            }
            rc = cairn_buf_append(&body, s, sn);
            if (rc == 0)
                rc = cairn_buf_putc(&body, '\n');
        }
        if (rc == CAIRN_E_TOOBIG) {
            rc = perr(p, p->cur_line, rc,
                      "heredoc \"%.*s\" is longer than the limit of %u bytes",
                      clamp_len(nl), h->name, CK_DOCKERFILE_MAX_HEREDOC);
            break;
        }
        if (rc) {
            rc = perr(p, p->cur_line, CAIRN_E_NOMEM, "out of memory");
            break;
        }
        if (!terminated) {
            rc = perr(p, p->cur_line, CAIRN_E_PARSE, "unterminated heredoc \"%.*s\"",
                      clamp_len(nl), h->name);
            break;
        }
        rc = charge(p, body.len + 1);
        if (rc == 0) {
            h->content = cairn_buf_take(&body);
            if (h->content == NULL)
                rc = perr(p, p->cur_line, CAIRN_E_NOMEM, "out of memory");
        }
    }
    cairn_buf_free(&body);
    return rc;
}

static int append_instr(struct parser *p, struct ck_dockerfile *df, size_t *cap,
                        struct ck_instr *ins)
{
    void *arr = df->instrs;
    int rc = grow(p, &arr, cap, df->ninstrs + 1, sizeof *df->instrs);
    df->instrs = arr;
    if (rc)
        return rc;
    df->instrs[df->ninstrs++] = *ins;
    memset(ins, 0, sizeof *ins);
    return 0;
}

int ck_dockerfile_parse(const char *name, const char *text, size_t len,
                        struct ck_dockerfile **out, struct cairn_err *err)
{
    if (name == NULL)
        name = "Dockerfile";
    if (out == NULL || (text == NULL && len > 0))
        return cairn_err_set(err, CAIRN_E_INVAL, "%s: invalid arguments", name);
    if (len > CK_DOCKERFILE_MAX_SIZE)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "%s: file is %zu bytes, larger than the limit of %u bytes",
                             name, len, CK_DOCKERFILE_MAX_SIZE);
    const char *nul = len ? memchr(text, '\0', len) : NULL;
    if (nul != NULL) {
        int line = 1;
        for (const char *c = text; c < nul; c++)
            line += *c == '\n';
        return cairn_err_set(err, CAIRN_E_PARSE, "%s:%d: NUL byte in the file", name, line);
    }

    struct parser p = {
        .name = name, .text = text, .len = len, .pos = 0, .lineno = 0,
        .cur_line = 1, .escape = '\\', .mem = 0, .err = err,
    };
    struct ck_dockerfile *df = NULL;
    struct ck_instr ins;
    memset(&ins, 0, sizeof ins);
    struct cairn_buf logical;
    cairn_buf_init(&logical, CK_DOCKERFILE_MAX_LINE);
    size_t cap = 0;
    bool directives_done = false, seen[3] = {false, false, false};
    const char *s;
    size_t n;

    int rc = charge(&p, sizeof *df + strlen(name) + 1);
    if (rc)
        goto out;
    df = calloc(1, sizeof *df);
    if (df == NULL || (df->name = strdup(name)) == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "%s: out of memory", name);
        goto out;
    }

    while (next_line(&p, &s, &n)) {
        trim_left(&s, &n);
        p.cur_line = p.lineno;
        if (!directives_done) {
            rc = parse_directive(&p, s, n, seen);
            if (rc < 0)
                goto out;
            if (rc == 1)
                continue;
            directives_done = true;
        }
        if (n == 0 || s[0] == '#')
            continue;

        /* Join the continuation lines. Comment lines and blank lines inside
         * a continuation are skipped; the other continuation lines keep
         * their leading blanks, as Docker keeps them. */
        cairn_buf_reset(&logical);
        bool more = strip_continuation(p.escape, s, &n);
        rc = cairn_buf_append(&logical, s, n);
        while (rc == 0 && more && next_line(&p, &s, &n)) {
            if (is_comment(s, n) || is_space_only(s, n))
                continue;
            more = strip_continuation(p.escape, s, &n);
            rc = cairn_buf_append(&logical, s, n);
        }
        if (rc) {
            rc = buf_fail(&p, rc, "the instruction", CK_DOCKERFILE_MAX_LINE);
            goto out;
        }
        /* A lone escape character continued into nothing is not an
         * instruction. */
        if (is_space_only(logical.data ? logical.data : "", logical.len))
            continue;

        rc = parse_instr(&p, logical.data, logical.len, &ins);
        if (rc == 0)
            rc = read_heredocs(&p, &ins, logical.data, logical.len);
        if (rc)
            goto out;
        ins.end_line = p.lineno;
        if (ins.sub) {
            ins.sub->line = ins.line;
            ins.sub->end_line = ins.end_line;
        }
        rc = append_instr(&p, df, &cap, &ins);
        if (rc)
            goto out;
    }
    if (df->ninstrs == 0) {
        rc = perr(&p, p.lineno > 0 ? p.lineno : 1, CAIRN_E_PARSE,
                  "file with no instructions");
        goto out;
    }
    df->escape = p.escape;
    *out = df;
    df = NULL;
out:
    instr_clear(&ins);
    cairn_buf_free(&logical);
    ck_dockerfile_free(df);
    return rc;
}

int ck_dockerfile_parse_file(const char *path, struct ck_dockerfile **out,
                             struct cairn_err *err)
{
    if (path == NULL || out == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "invalid arguments");
    struct cairn_buf b;
    cairn_buf_init(&b, CK_DOCKERFILE_MAX_SIZE);
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        return cairn_err_set(err, rc, "%s: %s", path, strerror(-rc));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        cairn_err_set(err, rc, "%s: %s", path, strerror(-rc));
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
        cairn_err_set(err, rc, "%s: %s", path, strerror(EISDIR));
        goto out;
    }
    /* Refuse an oversized regular file before reading any of it; other
     * kinds of file (pipes) are caught by the buffer's cap while reading. */
    if (S_ISREG(st.st_mode) && st.st_size > (off_t)CK_DOCKERFILE_MAX_SIZE) {
        rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                           "%s: file is %lld bytes, larger than the limit of %u bytes",
                           path, (long long)st.st_size, CK_DOCKERFILE_MAX_SIZE);
        goto out;
    }
    for (;;) {
        char chunk[16384];
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            cairn_err_set(err, rc, "%s: %s", path, strerror(-rc));
            goto out;
        }
        if (r == 0)
            break;
        rc = cairn_buf_append(&b, chunk, (size_t)r);
        if (rc == CAIRN_E_TOOBIG) {
            cairn_err_set(err, rc, "%s: file is larger than the limit of %u bytes", path,
                          CK_DOCKERFILE_MAX_SIZE);
            goto out;
        }
        if (rc) {
            cairn_err_set(err, rc, "%s: out of memory", path);
            goto out;
        }
    }
    rc = ck_dockerfile_parse(path, b.data ? b.data : "", b.len, out, err);
out:
    close(fd);
    cairn_buf_free(&b);
    return rc;
}

void ck_dockerfile_free(struct ck_dockerfile *df)
{
    if (df == NULL)
        return;
    for (size_t i = 0; i < df->ninstrs; i++)
        instr_clear(&df->instrs[i]);
    free(df->instrs);
    free(df->name);
    free(df);
}

const char *ck_instr_flag(const struct ck_instr *instr, const char *name, bool *present)
{
    if (present)
        *present = false;
    if (instr == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < instr->nflags; i++) {
        if (strcmp(instr->flags[i].name, name) == 0) {
            if (present)
                *present = true;
            return instr->flags[i].value;
        }
    }
    return NULL;
}
