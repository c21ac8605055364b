/* Image references (client/registry/ref.h). A hand-written reading of
 * distribution's reference grammar: Docker applies it with regular
 * expressions; here every part is checked by a small scanner so that a
 * reject names what was wrong. */
#include "client/registry/ref.h"

#include <stdio.h>
#include <string.h>

#define HUB_HOST "docker.io"
#define HUB_API_HOST "registry-1.docker.io"

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
}

/* A path component: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*. Sets *upper when
 * the only fault is an uppercase letter, so the message can say so. */
static bool component_ok(const char *p, size_t n, bool *upper)
{
    size_t i = 0;
    bool ok = n > 0;
    while (ok && i < n) {
        size_t run = 0;
        while (i < n &&
               (is_lower_alnum(p[i]) || (p[i] >= 'A' && p[i] <= 'Z'))) {
            if (p[i] >= 'A' && p[i] <= 'Z')
                *upper = true;
            i++;
            run++;
        }
        if (run == 0) {
            ok = false;
            break;
        }
        if (i == n)
            break;
        /* A separator, then more alphanumerics must follow. */
        if (p[i] == '.')
            i++;
        else if (p[i] == '_')
            i += (i + 1 < n && p[i + 1] == '_') ? 2 : 1;
        else if (p[i] == '-')
            while (i < n && p[i] == '-')
                i++;
        else
            ok = false;
        if (i == n)
            ok = false;
    }
    return ok;
}

/* A domain component: [A-Za-z0-9] or [A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]. */
static bool label_ok(const char *p, size_t n)
{
    if (n == 0 || !is_alnum(p[0]) || !is_alnum(p[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(p[i]) && p[i] != '-')
            return false;
    return true;
}

/* host[:port]: dotted labels or a bracketed IPv6 address; port digits. */
static bool host_ok(const char *p, size_t n)
{
    size_t hn = n;
    const char *colon = NULL;
    if (n > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (close == NULL || close == p + 1)
            return false;
        for (const char *c = p + 1; c < close; c++)
            if (!is_hex(*c) && *c != ':')
                return false;
        hn = (size_t)(close - p) + 1;
        if (hn < n && p[hn] != ':')
            return false;
        colon = hn < n ? p + hn : NULL;
    } else {
        colon = memchr(p, ':', n);
        hn = colon ? (size_t)(colon - p) : n;
        for (size_t s = 0, i = 0; i <= hn; i++)
            if (i == hn || p[i] == '.') {
                if (!label_ok(p + s, i - s))
                    return false;
                s = i + 1;
            }
    }
    if (colon) {
        size_t pn = n - (size_t)(colon - p) - 1;
        if (pn == 0 || pn > 5)
            return false;
        for (size_t i = 1; i <= pn; i++)
            if (colon[i] < '0' || colon[i] > '9')
                return false;
    }
    return true;
}

static bool tag_ok(const char *t, size_t n)
{
    if (n == 0 || n > CAIRN_REG_TAG_MAX || !(is_alnum(t[0]) || t[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!is_alnum(t[i]) && t[i] != '_' && t[i] != '.' && t[i] != '-')
            return false;
    return true;
}

/* ALGO:HEX as distribution accepts it, then sha256 only. */
static int digest_check(const char *d, struct cairn_err *err)
{
    const char *colon = strchr(d, ':');
    size_t an = colon ? (size_t)(colon - d) : 0;
    bool ok = an > 0 &&
              ((d[0] >= 'a' && d[0] <= 'z') || (d[0] >= 'A' && d[0] <= 'Z'));
    for (size_t i = 1; ok && i < an; i++)
        ok = is_alnum(d[i]) ||
             (strchr("-_+.", d[i]) && i + 1 < an && is_alnum(d[i + 1]));
    size_t hn = ok ? strlen(colon + 1) : 0;
    for (size_t i = 0; ok && i < hn; i++)
        ok = is_hex(colon[1 + i]);
    if (!ok || hn < 32)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: bad digest \"%.80s\"",
                             d);
    if (an != 6 || memcmp(d, "sha256", 6) != 0)
        return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                             "unsupported digest algorithm in \"%.80s\"", d);
    if (hn != 64 || strspn(colon + 1, "0123456789abcdef") != 64)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid checksum digest length or format in "
                             "\"%.80s\"",
                             d);
    return 0;
}

int cairn_reg_ref_parse(const char *s, struct cairn_reg_ref *out,
                        struct cairn_err *err)
{
    struct cairn_reg_ref r;
    memset(&r, 0, sizeof r);
    if (s == NULL || s[0] == '\0')
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: empty");
    size_t n = strlen(s);
    /* Bounded before any scanning: name, tag and digest together. */
    if (n > CAIRN_REG_NAME_MAX + 1 + CAIRN_REG_TAG_MAX + 1 +
                CAIRN_REG_DIGEST_MAX + 16)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: \"%.40s...\" is too "
                             "long",
                             s);
    /* Docker refuses a bare 64-hex name: it would read as an image ID. */
    if (n == 64 && strspn(s, "0123456789abcdef") == 64)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid repository name (%s), cannot specify "
                             "64-byte hexadecimal strings",
                             s);
    const char *at = strchr(s, '@');
    size_t rest = at ? (size_t)(at - s) : n;
    if (at) {
        int rc = digest_check(at + 1, err);
        if (rc)
            return rc;
        memcpy(r.digest, at + 1, strlen(at + 1));
    }
    /* The tag is after the last ':' that follows the last '/'. */
    const char *slash = memrchr(s, '/', rest);
    const char *from = slash ? slash : s;
    const char *colon = memchr(from, ':', rest - (size_t)(from - s));
    size_t name_n = colon ? (size_t)(colon - s) : rest;
    if (colon) {
        size_t tn = rest - name_n - 1;
        if (!tag_ok(colon + 1, tn))
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "invalid reference format: bad tag in "
                                 "\"%.300s\"",
                                 s);
        memcpy(r.tag, colon + 1, tn);
    }
    if (name_n == 0)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: \"%.300s\"", s);
    /* Host or not: the first component decides. */
    const char *first_slash = memchr(s, '/', name_n);
    size_t fn = first_slash ? (size_t)(first_slash - s) : 0;
    const char *path = s;
    size_t path_n = name_n;
    if (first_slash && (memchr(s, '.', fn) || memchr(s, ':', fn) ||
                        (fn == 9 && memcmp(s, "localhost", 9) == 0))) {
        if (!host_ok(s, fn))
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "invalid reference format: bad registry "
                                 "host in \"%.300s\"",
                                 s);
        memcpy(r.host, s, fn);
        path = first_slash + 1;
        path_n = name_n - fn - 1;
    } else {
        memcpy(r.host, HUB_HOST, sizeof HUB_HOST);
    }
    if (strcmp(r.host, "index.docker.io") == 0)
        snprintf(r.host, sizeof r.host, "%s", HUB_HOST);
    bool upper = false, ok = path_n > 0;
    for (size_t st = 0, i = 0; ok && i <= path_n; i++)
        if (i == path_n || path[i] == '/') {
            ok = component_ok(path + st, i - st, &upper);
            st = i + 1;
        }
    if (!ok)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: \"%.300s\"", s);
    if (upper)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: repository name "
                             "(%.*s) must be lowercase",
                             (int)path_n, path);
    bool library =
        strcmp(r.host, HUB_HOST) == 0 && memchr(path, '/', path_n) == NULL;
    size_t total = strlen(r.host) + 1 + (library ? 8 : 0) + path_n;
    if (total > CAIRN_REG_NAME_MAX)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: repository name "
                             "must not be more than %d characters",
                             CAIRN_REG_NAME_MAX);
    snprintf(r.path, sizeof r.path, "%s%.*s", library ? "library/" : "",
             (int)path_n, path);
    if (r.tag[0] == '\0' && r.digest[0] == '\0')
        memcpy(r.tag, "latest", sizeof "latest");
    *out = r;
    return 0;
}

const char *cairn_reg_ref_api_host(const struct cairn_reg_ref *r)
{
    return strcmp(r->host, HUB_HOST) == 0 ? HUB_API_HOST : r->host;
}

int cairn_reg_ref_familiar(const struct cairn_reg_ref *r, bool with_tag,
                           char *buf, size_t len)
{
    const char *path = r->path;
    int n;
    if (strcmp(r->host, HUB_HOST) == 0) {
        if (strncmp(path, "library/", 8) == 0 && strchr(path + 8, '/') == NULL)
            path += 8;
        n = snprintf(buf, len, "%s", path);
    } else {
        n = snprintf(buf, len, "%s/%s", r->host, path);
    }
    if (n >= 0 && (size_t)n < len && with_tag && r->tag[0])
        n += snprintf(buf + n, len - (size_t)n, ":%s", r->tag);
    return n < 0 || (size_t)n >= len ? CAIRN_E_TOOBIG : 0;
}

void cairn_reg_ref_format(const struct cairn_reg_ref *r, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s%s%s%s%s", r->host, r->path, r->tag[0] ? ":" : "",
             r->tag, r->digest[0] ? "@" : "", r->digest);
}

bool cairn_reg_host_is_loopback(const char *host)
{
    char h[CAIRN_REG_NAME_MAX + 1];
    snprintf(h, sizeof h, "%s", host);
    /* Drop the port: after "]" for IPv6, else after the one ':'. */
    char *close = h[0] == '[' ? strchr(h, ']') : NULL;
    if (close)
        close[1] = '\0';
    else if (strchr(h, ':'))
        *strchr(h, ':') = '\0';
    if (strcmp(h, "localhost") == 0 || strcmp(h, "[::1]") == 0)
        return true;
    unsigned a, b, c, d;
    char tail;
    return sscanf(h, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 &&
           b < 256 && c < 256 && d < 256;
}
