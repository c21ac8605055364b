#include "client/registry/challenge.h"

#include "common/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A value longer than this is no realm, service or scope a registry sends. */
#define PARAM_VALUE_MAX 2048
#define PARAMS_MAX 32

static int is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* One challenge being read: the parameters cairn uses, and whether this
 * scheme is one cairn speaks. */
struct parse {
    const char *header;
    struct cairn_err *err;
    struct cairn_reg_challenge cur;
    int wanted;
    int nparams;
};

static int parse_fail(struct parse *ps, int code, const char *why)
{
    return cairn_err_set(ps->err, code,
                         "malformed WWW-Authenticate header (%s): \"%.80s\"",
                         why, ps->header);
}

/* Reads a token or a quoted string at *pp into b (escapes resolved). */
static int read_value(struct parse *ps, const char **pp, struct cairn_buf *b)
{
    const char *p = *pp;
    int rc = 0;
    if (*p == '"') {
        for (p++; *p != '"'; p++) {
            if (*p == '\\' && p[1])
                p++;
            if (*p == '\0')
                return parse_fail(ps, CAIRN_E_PARSE, "unterminated quoted string");
            if ((unsigned char)*p < 0x20 && *p != '\t')
                return parse_fail(ps, CAIRN_E_PARSE, "control character");
            if ((rc = cairn_buf_putc(b, *p)) != 0)
                return parse_fail(ps, rc, "parameter too long");
        }
        p++;
    } else {
        const char *s = p;
        /* Token68-like values ("abc==") are tokens plus '='/'/'. */
        while (is_tchar(*p) || *p == '/' || *p == '=')
            p++;
        if (p == s)
            return parse_fail(ps, CAIRN_E_PARSE, "parameter without a value");
        if ((rc = cairn_buf_append(b, s, (size_t)(p - s))) != 0)
            return parse_fail(ps, rc, "parameter too long");
    }
    *pp = p;
    return 0;
}

static int store_param(struct parse *ps, const char *name, size_t nlen,
                       struct cairn_buf *val)
{
    static const char *const names[] = {"realm", "service", "scope", "error"};
    char **slots[] = {&ps->cur.realm, &ps->cur.service, &ps->cur.scope,
                      &ps->cur.error};
    if (++ps->nparams > PARAMS_MAX)
        return parse_fail(ps, CAIRN_E_TOOBIG, "too many parameters");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i]) != nlen || strncasecmp(name, names[i], nlen) != 0)
            continue;
        if (*slots[i])
            return parse_fail(ps, CAIRN_E_PARSE, "a parameter given twice");
        if (!(*slots[i] = cairn_buf_take(val)))
            return cairn_err_set(ps->err, CAIRN_E_NOMEM, "out of memory");
        return 0;
    }
    return 0; /* a parameter cairn has no use for */
}

/* Reads the auth-params after a scheme, up to the next challenge or the
 * end. *pp is left at the next scheme's name. */
static int read_params(struct parse *ps, const char **pp)
{
    const char *p = *pp;
    struct cairn_buf val;
    cairn_buf_init(&val, PARAM_VALUE_MAX);
    int rc = 0;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        const char *name = p;
        while (is_tchar(*p))
            p++;
        size_t nlen = (size_t)(p - name);
        const char *q = skip_ows(p);
        if (nlen == 0 || *q != '=') {
            /* Not name=value: the end, or the next challenge's scheme. */
            if (nlen == 0 && *q != '\0') {
                rc = parse_fail(ps, CAIRN_E_PARSE,
                                (unsigned char)*q < 0x20 ? "control character"
                                                         : "unexpected character");
                goto out;
            }
            p = name;
            break;
        }
        p = skip_ows(q + 1);
        cairn_buf_reset(&val);
        if ((rc = read_value(ps, &p, &val)) != 0)
            goto out;
        if (ps->wanted && (rc = store_param(ps, name, nlen, &val)) != 0)
            goto out;
        p = skip_ows(p);
        if (*p != ',' && *p != '\0') {
            rc = parse_fail(ps, CAIRN_E_PARSE, "parameters not separated by ','");
            goto out;
        }
    }
    *pp = p;
out:
    cairn_buf_free(&val);
    return rc;
}

static void challenge_move(struct cairn_reg_challenge *dst,
                           struct cairn_reg_challenge *src)
{
    cairn_reg_challenge_clear(dst);
    *dst = *src;
    memset(src, 0, sizeof *src);
}

static int challenge_check(struct parse *ps)
{
    if (ps->cur.scheme != CAIRN_REG_SCHEME_BEARER)
        return 0;
    const char *r = ps->cur.realm;
    if (!r || (strncasecmp(r, "https://", 8) != 0 &&
               strncasecmp(r, "http://", 7) != 0))
        return parse_fail(ps, CAIRN_E_PARSE,
                          "a Bearer realm must be an http(s) URL");
    for (const char *c = r; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return parse_fail(ps, CAIRN_E_PARSE, "a space in the realm");
    return 0;
}

int cairn_reg_challenge_parse(const char *header,
                              struct cairn_reg_challenge *out,
                              struct cairn_err *err)
{
    struct parse ps = {.header = header, .err = err};
    struct cairn_reg_challenge best = {0};
    char unknown[32] = "";
    int rc = 0;
    if (strnlen(header, CAIRN_REG_CHALLENGE_MAX + 1) > CAIRN_REG_CHALLENGE_MAX)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "WWW-Authenticate header longer than %d bytes",
                             CAIRN_REG_CHALLENGE_MAX);
    const char *p = header;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        const char *scheme = p;
        while (is_tchar(*p))
            p++;
        size_t slen = (size_t)(p - scheme);
        if (slen == 0) {
            rc = parse_fail(&ps, CAIRN_E_PARSE, "no auth scheme");
            goto out;
        }
        memset(&ps.cur, 0, sizeof ps.cur);
        ps.nparams = 0;
        if (slen == 5 && strncasecmp(scheme, "Basic", 5) == 0)
            ps.cur.scheme = CAIRN_REG_SCHEME_BASIC;
        else if (slen == 6 && strncasecmp(scheme, "Bearer", 6) == 0)
            ps.cur.scheme = CAIRN_REG_SCHEME_BEARER;
        else if (!unknown[0])
            snprintf(unknown, sizeof unknown, "%.*s",
                     (int)(slen < 31 ? slen : 31), scheme);
        ps.wanted = ps.cur.scheme != 0;
        if (*p != ' ' && *p != '\t' && *p != ',' && *p != '\0') {
            rc = parse_fail(&ps, CAIRN_E_PARSE, "unexpected character");
            goto out;
        }
        rc = read_params(&ps, &p);
        if (rc == 0)
            rc = challenge_check(&ps);
        if (rc != 0) {
            cairn_reg_challenge_clear(&ps.cur);
            goto out;
        }
        if (ps.cur.scheme > best.scheme)
            challenge_move(&best, &ps.cur);
        else
            cairn_reg_challenge_clear(&ps.cur);
    }
    if (!best.scheme) {
        rc = cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                           "the registry asks for %s authentication; cairn "
                           "speaks Basic and Bearer",
                           unknown[0] ? unknown : "no");
        goto out;
    }
    *out = best;
    memset(&best, 0, sizeof best);
out:
    cairn_reg_challenge_clear(&best);
    return rc;
}

void cairn_reg_challenge_clear(struct cairn_reg_challenge *c)
{
    if (!c)
        return;
    free(c->realm);
    free(c->service);
    free(c->scope);
    free(c->error);
    memset(c, 0, sizeof *c);
}
