/* S3 credentials, the AWS way (s3.h). Messages name the file, line and
 * key, never a value: values are secrets. */
#include "server/s3/s3.h"

#include "common/buf.h"
#include <stdio.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *trim(const char *s, const char *e, const char **end)
{
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    *end = e;
    return s;
}

static int put(char *field, size_t size, const char *v, size_t n,
               const char *origin, unsigned line, const char *key,
               struct cairn_err *err)
{
    if (n + 1 > size)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "%s:%u: %s longer than %zu bytes", origin, line,
                             key, size - 1);
    memcpy(field, v, n);
    field[n] = '\0';
    return 0;
}

/* Is the section header [s..e) the profile? "[name]" or "[profile name]". */
static bool section_is(const char *s, const char *e, const char *profile)
{
    const char *end;
    s = trim(s, e, &end);
    size_t n = (size_t)(end - s);
    if (n > 8 && memcmp(s, "profile ", 8) == 0) {
        s = trim(s + 8, end, &end);
        n = (size_t)(end - s);
    }
    return n == strlen(profile) && memcmp(s, profile, n) == 0;
}

int cd_s3_creds_parse(const char *text, size_t len, const char *profile,
                      const char *origin, struct cd_s3_creds *out,
                      struct cairn_err *err)
{
    if (len > CD_S3_CREDS_FILE_MAX)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "%s: more than %d bytes",
                             origin, CD_S3_CREDS_FILE_MAX);
    struct cd_s3_creds c;
    memset(&c, 0, sizeof c);
    bool in = false, seen = false;
    unsigned line = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end, *e;
        const char *s = trim(p, le, &e);
        p = nl ? nl + 1 : end;
        line++;
        if (s == e || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            if (e[-1] != ']')
                return cairn_err_set(err, CAIRN_E_PARSE,
                                     "%s:%u: section header without ']'",
                                     origin, line);
            in = section_is(s + 1, e - 1, profile);
            seen = seen || in;
            continue;
        }
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (eq == NULL)
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "%s:%u: expected key = value", origin, line);
        if (!in)
            continue;
        const char *ke, *ve;
        const char *k = trim(s, eq, &ke);
        const char *v = trim(eq + 1, e, &ve);
        size_t kn = (size_t)(ke - k), vn = (size_t)(ve - v);
        int rc = 0;
        if (kn == 17 && memcmp(k, "aws_access_key_id", kn) == 0)
            rc = put(c.access_key, sizeof c.access_key, v, vn, origin, line,
                     "aws_access_key_id", err);
        else if (kn == 21 && memcmp(k, "aws_secret_access_key", kn) == 0)
            rc = put(c.secret_key, sizeof c.secret_key, v, vn, origin, line,
                     "aws_secret_access_key", err);
        else if (kn == 17 && memcmp(k, "aws_session_token", kn) == 0)
            rc = put(c.session_token, sizeof c.session_token, v, vn, origin,
                     line, "aws_session_token", err);
        if (rc)
            return rc;
    }
    if (!seen)
        return cairn_err_set(err, CAIRN_E_NOTFOUND, "%s: no profile [%s]",
                             origin, profile);
    if (c.access_key[0] == '\0' || c.secret_key[0] == '\0')
        return cairn_err_set(err, CAIRN_E_NOTFOUND,
                             "%s: profile [%s] lacks aws_access_key_id or "
                             "aws_secret_access_key",
                             origin, profile);
    *out = c;
    return 0;
}

static int from_file(const char *path, const char *profile,
                     struct cd_s3_creds *out, struct cairn_err *err)
{
    struct cairn_buf b;
    cairn_buf_init(&b, CD_S3_CREDS_FILE_MAX);
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = cairn_err_set(err, errno == ENOENT ? CAIRN_E_NOTFOUND : -errno,
                           "S3 credentials file %s: %s", path,
                           strerror(errno));
        goto out;
    }
    for (;;) {
        rc = cairn_buf_reserve(&b, 65536);
        if (rc) {
            cairn_err_set(err, rc, "S3 credentials file %s: more than %d bytes",
                          path, CD_S3_CREDS_FILE_MAX);
            goto out;
        }
        ssize_t n = read(fd, b.data + b.len, 65536);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = cairn_err_set(err, -errno, "S3 credentials file %s: %s",
                               path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        b.len += (size_t)n;
    }
    rc = cd_s3_creds_parse(b.data ? b.data : "", b.len, profile, path, out,
                           err);
out:
    if (fd >= 0)
        close(fd);
    /* The text held the secret: wipe it before giving the memory back. */
    if (b.data)
        explicit_bzero(b.data, b.alloc);
    cairn_buf_free(&b);
    return rc;
}

static int from_env(struct cd_s3_creds *out, struct cairn_err *err)
{
    const char *id = getenv("AWS_ACCESS_KEY_ID");
    const char *secret = getenv("AWS_SECRET_ACCESS_KEY");
    const char *token = getenv("AWS_SESSION_TOKEN");
    struct cd_s3_creds c;
    memset(&c, 0, sizeof c);
    if (secret == NULL || secret[0] == '\0')
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "AWS_ACCESS_KEY_ID is set but "
                             "AWS_SECRET_ACCESS_KEY is not");
    int rc = put(c.access_key, sizeof c.access_key, id, strlen(id),
                 "environment", 0, "AWS_ACCESS_KEY_ID", err);
    if (rc == 0)
        rc = put(c.secret_key, sizeof c.secret_key, secret, strlen(secret),
                 "environment", 0, "AWS_SECRET_ACCESS_KEY", err);
    if (rc == 0 && token != NULL)
        rc = put(c.session_token, sizeof c.session_token, token,
                 strlen(token), "environment", 0, "AWS_SESSION_TOKEN", err);
    if (rc == 0)
        *out = c;
    explicit_bzero(&c, sizeof c);
    return rc;
}

int cd_s3_creds_load(const char *file, const char *profile,
                     struct cd_s3_creds *out, struct cairn_err *err)
{
    if (profile == NULL || profile[0] == '\0')
        profile = getenv("AWS_PROFILE");
    if (profile == NULL || profile[0] == '\0')
        profile = "default";
    if (file != NULL)
        return from_file(file, profile, out, err);
    const char *id = getenv("AWS_ACCESS_KEY_ID");
    if (id != NULL && id[0] != '\0')
        return from_env(out, err);
    const char *shared = getenv("AWS_SHARED_CREDENTIALS_FILE");
    char path[4096];
    if (shared == NULL || shared[0] == '\0') {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] == '\0' ||
            (size_t)snprintf(path, sizeof path, "%s/.aws/credentials",
                             home) >= sizeof path)
            return cairn_err_set(err, CAIRN_E_NOTFOUND,
                                 "no S3 credentials: set AWS_ACCESS_KEY_ID "
                                 "and AWS_SECRET_ACCESS_KEY or give a "
                                 "credentials file");
        shared = path;
    }
    int rc = from_file(shared, profile, out, err);
    if (rc == CAIRN_E_NOTFOUND && err != NULL && shared == path)
        cairn_err_prefix(err, "no S3 credentials (set AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY or give a credentials "
                              "file)");
    return rc;
}
