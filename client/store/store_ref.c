/* Image references as the store keeps them: Docker's reference grammar
 * (distribution's), checked and normalised to "name:tag" so "app",
 * "app:latest" and "docker.io/library/app:latest" are one tag; and the
 * fully qualified form index.json annotates. References by digest are
 * refused. */
#include "client/store/store.h"
#include "client/store/store_impl.h"

#include "common/buf.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

/* A path component: lowercase alphanumerics joined by ".", "_", "__" or
 * runs of "-" (the distribution reference grammar). */
static bool component_ok(const char *s, size_t n)
{
    if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (is_lower_alnum(c) || c == '-')
            continue;
        if (c == '.' || c == '_') {
            if (c == '_' && s[i + 1] == '_' && i + 1 < n)
                i++;
            if (!is_lower_alnum(s[i + 1]))
                return false;
            continue;
        }
        return false;
    }
    return true;
}

/* A registry host: letters, digits, "-" and ".", an optional ":port". */
static bool domain_ok(const char *s, size_t n)
{
    size_t i = 0;
    for (; i < n && s[i] != ':'; i++) {
        char c = s[i];
        if (!(is_lower_alnum(c) || is_upper(c) || c == '-' || c == '.'))
            return false;
    }
    if (i == 0)
        return false;
    if (i < n) {
        if (i + 1 == n)
            return false;
        for (i++; i < n; i++)
            if (s[i] < '0' || s[i] > '9')
                return false;
    }
    return true;
}

static bool tag_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > STORE_TAG_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        bool w = is_lower_alnum(c) || is_upper(c) || c == '_';
        if (!w && (i == 0 || (c != '.' && c != '-')))
            return false;
    }
    return true;
}

int cairn_store_ref_normalize(const char *ref, char *buf, size_t len,
                              struct cairn_err *err)
{
    if (ref == NULL || ref[0] == '\0')
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: empty");
    if (strchr(ref, '@'))
        return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                             "invalid reference \"%s\": references by "
                             "digest are not supported",
                             ref);
    size_t n = strlen(ref);
    if (n > STORE_NAME_MAX + 1 + STORE_TAG_MAX)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: \"%.40s...\" is too "
                             "long",
                             ref);
    const char *slash = strrchr(ref, '/');
    const char *colon = strrchr(slash ? slash : ref, ':');
    size_t name_n = colon ? (size_t)(colon - ref) : n;
    const char *tag = colon ? colon + 1 : "latest";
    const char *name = ref;
    /* Docker's "familiar" form: the default registry and its library/
     * namespace are implied. */
    if (name_n > 10 && strncmp(name, "docker.io/", 10) == 0) {
        name += 10;
        name_n -= 10;
        if (name_n > 8 && strncmp(name, "library/", 8) == 0 &&
            memchr(name + 8, '/', name_n - 8) == NULL) {
            name += 8;
            name_n -= 8;
        }
    }
    if (name_n == 0 || name_n > STORE_NAME_MAX)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: \"%s\"", ref);
    /* Check component by component; the first may be a registry host
     * when more follow and it looks like one. */
    const char *p = name, *end = name + name_n;
    bool first = true;
    while (p <= end) {
        const char *s = memchr(p, '/', (size_t)(end - p));
        size_t cn = s ? (size_t)(s - p) : (size_t)(end - p);
        bool host = first && s != NULL &&
                    (memchr(p, '.', cn) || memchr(p, ':', cn) ||
                     (cn == 9 && memcmp(p, "localhost", 9) == 0));
        bool ok = host ? domain_ok(p, cn) : component_ok(p, cn);
        if (!ok) {
            for (size_t i = 0; !host && i < cn; i++)
                if (is_upper(p[i]))
                    return cairn_err_set(err, CAIRN_E_INVAL,
                                         "invalid reference format: "
                                         "repository name (%.*s) must be "
                                         "lowercase",
                                         (int)name_n, name);
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "invalid reference format: \"%s\"", ref);
        }
        first = false;
        if (s == NULL)
            break;
        p = s + 1;
    }
    if (!tag_ok(tag))
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "invalid reference format: bad tag \"%s\"", tag);
    int w = snprintf(buf, len, "%.*s:%s", (int)name_n, name, tag);
    if (w < 0 || (size_t)w >= len)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "reference too long");
    return 0;
}

int store_ref_full(const char *ref, struct cairn_buf *out)
{
    const char *slash = strchr(ref, '/');
    size_t cn = slash ? (size_t)(slash - ref) : 0;
    bool host = slash && (memchr(ref, '.', cn) || memchr(ref, ':', cn) ||
                          (cn == 9 && memcmp(ref, "localhost", 9) == 0));
    if (host)
        return cairn_buf_puts(out, ref);
    return cairn_buf_printf(out, "docker.io/%s%s", slash ? "" : "library/",
                            ref);
}

