/* s3:// URLs, endpoints and object URLs (url.h). */
#include "server/s3/url.h"

#include "server/s3/s3.h"

#include <stdio.h>
#include <string.h>

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

/* S3's rules for new buckets: what every S3-compatible server accepts and
 * what virtual-host addressing can put in a host name. */
static int bucket_check(const char *b, size_t n, struct cairn_err *err)
{
    if (n < 3 || n > CD_S3_MAX_BUCKET)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "S3 bucket name must be 3 to %d characters",
                             CD_S3_MAX_BUCKET);
    for (size_t i = 0; i < n; i++)
        if (!is_lower_alnum(b[i]) && b[i] != '.' && b[i] != '-')
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "S3 bucket name may hold only a-z, 0-9, "
                                 "'.' and '-'");
    if (!is_lower_alnum(b[0]) || !is_lower_alnum(b[n - 1]))
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "S3 bucket name must start and end with a "
                             "letter or digit");
    return 0;
}

/* Prefix segments: no empty, "." or ".." ones (servers and proxies may
 * normalise them away, so the object would not be where it was put). */
static int prefix_check(const char *p, size_t n, struct cairn_err *err)
{
    size_t seg = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '/') {
            unsigned char c = (unsigned char)p[i];
            if (c < 0x20 || c == 0x7f || c == '\\')
                return cairn_err_set(err, CAIRN_E_INVAL,
                                     "S3 prefix holds a control character "
                                     "or a backslash");
            seg++;
            continue;
        }
        const char *s = p + i - seg;
        if (seg == 0 || (seg == 1 && s[0] == '.') ||
            (seg == 2 && s[0] == '.' && s[1] == '.'))
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "S3 prefix has an empty, '.' or '..' "
                                 "segment");
        seg = 0;
    }
    return 0;
}

int cd_s3_url_parse(const char *url, struct cd_s3_where *out,
                    struct cairn_err *err)
{
    static const char scheme[] = "s3://";
    if (url == NULL || strncmp(url, scheme, sizeof scheme - 1) != 0)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "S3 backend must be s3://BUCKET[/PREFIX]");
    const char *b = url + sizeof scheme - 1;
    const char *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    int rc = bucket_check(b, blen, err);
    if (rc)
        return rc;
    struct cd_s3_where w;
    memcpy(w.bucket, b, blen);
    w.bucket[blen] = '\0';
    w.prefix[0] = '\0';
    if (slash) {
        const char *p = slash + 1;
        size_t plen = strlen(p);
        while (plen > 0 && p[plen - 1] == '/')
            plen--;
        if (plen > 0) {
            if (plen + 1 > CD_S3_MAX_PREFIX)
                return cairn_err_set(err, CAIRN_E_INVAL,
                                     "S3 prefix longer than %d bytes",
                                     CD_S3_MAX_PREFIX - 1);
            rc = prefix_check(p, plen, err);
            if (rc)
                return rc;
            memcpy(w.prefix, p, plen);
            w.prefix[plen] = '/';
            w.prefix[plen + 1] = '\0';
        }
    }
    *out = w;
    return 0;
}

int cd_s3_endpoint_parse(const char *endpoint, char *out,
                         struct cairn_err *err)
{
    const char *host;
    if (endpoint == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "no S3 endpoint");
    if (strncmp(endpoint, "http://", 7) == 0)
        host = endpoint + 7;
    else if (strncmp(endpoint, "https://", 8) == 0)
        host = endpoint + 8;
    else
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "S3 endpoint must start with http:// or "
                             "https://");
    size_t n = strlen(host);
    if (n > 0 && host[n - 1] == '/')
        n--;
    if (n == 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "S3 endpoint has no host");
    if ((size_t)(host - endpoint) + n > CD_S3_MAX_ENDPOINT)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "S3 endpoint longer than %d bytes",
                             CD_S3_MAX_ENDPOINT);
    for (size_t i = 0; i < n; i++) {
        char c = host[i];
        bool ok = is_lower_alnum(c) || (c >= 'A' && c <= 'Z') || c == '.' ||
                  c == '-' || c == ':' || c == '[' || c == ']';
        if (!ok)
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "S3 endpoint must be scheme://host[:port] "
                                 "(no path, query or user info)");
    }
    size_t total = (size_t)(host - endpoint) + n;
    memcpy(out, endpoint, total);
    out[total] = '\0';
    return 0;
}

int cd_s3_url_escape(struct cairn_buf *out, const char *s, size_t n,
                     bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = cairn_buf_reserve(out, n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            rc = cairn_buf_putc(out, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = cairn_buf_append(out, e, 3);
        }
    }
    return rc;
}

int cd_s3_url_object(struct cairn_buf *out, const char *endpoint,
                     const struct cd_s3_where *w, bool path_style,
                     const char *key, const char *query,
                     struct cairn_err *err)
{
    if (key != NULL) {
        size_t klen = strlen(key);
        if (klen == 0)
            return cairn_err_set(err, CAIRN_E_INVAL, "empty S3 object name");
        if (strlen(w->prefix) + klen > CD_S3_MAX_KEY)
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "S3 object name longer than %d bytes",
                                 CD_S3_MAX_KEY);
        for (size_t i = 0; i < klen; i++)
            if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
                return cairn_err_set(err, CAIRN_E_INVAL,
                                     "S3 object name holds a control "
                                     "character");
    }
    cairn_buf_reset(out);
    int rc;
    if (path_style) {
        rc = cairn_buf_printf(out, "%s/%s", endpoint, w->bucket);
    } else {
        const char *host = strstr(endpoint, "://") + 3;
        rc = cairn_buf_printf(out, "%.*s%s.%s", (int)(host - endpoint),
                              endpoint, w->bucket, host);
    }
    if (rc == 0 && (key != NULL || !path_style))
        rc = cairn_buf_putc(out, '/');
    if (rc == 0 && key != NULL) {
        rc = cd_s3_url_escape(out, w->prefix, strlen(w->prefix), true);
        if (rc == 0)
            rc = cd_s3_url_escape(out, key, strlen(key), true);
    }
    if (rc == 0 && query != NULL) {
        rc = cairn_buf_putc(out, '?');
        if (rc == 0)
            rc = cairn_buf_puts(out, query);
    }
    if (rc)
        return cairn_err_set(err, rc, "S3 URL: %s", cairn_strerror(rc));
    return 0;
}
