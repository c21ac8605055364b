#include "server/reapi/resource.h"

#include <stdio.h>
#include <string.h>

/* Path segments REAPI reserves: an instance name may not contain them, which
 * is what makes "[instance/]blobs/..." parseable at all. */
static const char *const reserved_segments[] = {
    "blobs", "uploads", "actions", "actionResults", "operations",
    "capabilities", "compressed-blobs",
};

/* Digest function names that may appear as a segment before the hash. Only
 * sha256 is served; the others are recognised so the client gets "not
 * supported" rather than "malformed". */
static const char *const digest_function_names[] = {
    "sha256", "sha1", "md5", "vso", "sha384", "sha512", "murmur3",
    "sha256tree", "blake3",
};

static int is_reserved(const char *seg, size_t len)
{
    for (size_t i = 0; i < sizeof reserved_segments / sizeof *reserved_segments; i++) {
        if (strlen(reserved_segments[i]) == len &&
            memcmp(reserved_segments[i], seg, len) == 0)
            return 1;
    }
    return 0;
}

int cd_digest_parse(const char *hash, int64_t size, struct cd_digest *out,
                    struct cairn_err *err)
{
    if (hash == NULL)
        hash = "";
    size_t len = strlen(hash);
    if (len != CK_SHA256_HEX_LEN)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "digest hash must be %d hex digits (sha256), got %zu characters",
                             CK_SHA256_HEX_LEN, len);
    struct cd_digest d;
    if (ck_hex_decode(hash, d.hash) != 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "digest hash is not hexadecimal");
    if (size < 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "digest size %lld is negative",
                             (long long)size);
    if (size > CD_MAX_BLOB_SIZE)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "digest size %lld exceeds the largest blob accepted (%lld)",
                             (long long)size, (long long)CD_MAX_BLOB_SIZE);
    d.size = size;
    *out = d;
    return 0;
}

void cd_digest_format(const struct cd_digest *d, char *buf, size_t len)
{
    char hex[CK_SHA256_HEX_LEN + 1];
    ck_hex_encode(d->hash, hex);
    snprintf(buf, len, "%s/%lld", hex, (long long)d->size);
}

int cd_instance_check(const char *instance, struct cairn_err *err)
{
    if (instance == NULL || instance[0] == '\0')
        return 0;
    size_t len = strlen(instance);
    if (len >= CD_STORE_MAX_INSTANCE)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "instance name is %zu bytes, the limit is %u", len,
                             CD_STORE_MAX_INSTANCE - 1);
    /* Bytes first, so the messages below may quote the name: a control
     * character would otherwise reach the log and the client verbatim. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)instance[i];
        if (c < CD_INSTANCE_BYTE_MIN || c > CD_INSTANCE_BYTE_MAX)
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "instance name has byte 0x%02x at offset %zu: only printable "
                                 "ASCII without spaces is allowed", c, i);
    }
    const char *seg = instance;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t n = slash ? (size_t)(slash - seg) : strlen(seg);
        if (n == 0)
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "instance name '%s' has an empty path segment", instance);
        /* "." and ".." name no instance of their own; refused so that no
         * two spellings (a/./b, a/b) name one instance. */
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "instance name '%s' has a '%.*s' path segment", instance,
                                 (int)n, seg);
        if (is_reserved(seg, n))
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "instance name '%s' contains the reserved segment '%.*s'",
                                 instance, (int)n, seg);
        if (slash == NULL)
            break;
        seg = slash + 1;
    }
    return 0;
}

int cd_digest_function_check(int value, struct cairn_err *err)
{
    /* 0 is UNKNOWN (field unset: old clients), 1 is SHA256. */
    if (value == 0 || value == 1)
        return 0;
    return cairn_err_set(err, CAIRN_E_INVAL,
                         "unknown or unsupported digest function %d (only SHA256 is served)",
                         value);
}

#define MAX_SEGMENTS 64

struct segments {
    const char *p[MAX_SEGMENTS];
    size_t len[MAX_SEGMENTS];
    size_t n;
};

static int split(const char *name, struct segments *s, struct cairn_err *err)
{
    size_t total = strlen(name);
    if (total == 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "resource name is empty");
    if (total > CD_MAX_RESOURCE_NAME)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "resource name is %zu bytes, the limit is %d", total,
                             CD_MAX_RESOURCE_NAME);
    s->n = 0;
    const char *seg = name;
    for (;;) {
        if (s->n == MAX_SEGMENTS)
            return cairn_err_set(err, CAIRN_E_INVAL, "resource name has too many segments");
        const char *slash = strchr(seg, '/');
        s->p[s->n] = seg;
        s->len[s->n] = slash ? (size_t)(slash - seg) : strlen(seg);
        s->n++;
        if (slash == NULL)
            break;
        seg = slash + 1;
    }
    return 0;
}

static int seg_is(const struct segments *s, size_t i, const char *word)
{
    return s->len[i] == strlen(word) && memcmp(s->p[i], word, s->len[i]) == 0;
}

/* Instance = segments [0, end) joined with '/'. */
static int take_instance(const char *name, const struct segments *s, size_t end,
                         struct cd_resource *out, struct cairn_err *err)
{
    size_t len = end == 0 ? 0 : (size_t)(s->p[end] - name) - 1;
    if (len >= sizeof out->instance)
        return cairn_err_set(err, CAIRN_E_INVAL, "instance name is too long");
    memcpy(out->instance, name, len);
    out->instance[len] = '\0';
    return cd_instance_check(out->instance, err);
}

/* Parses "{hash}/{size}" at segment i (after "blobs"), with an optional
 * digest function segment before it. *next is the segment after size. */
static int take_digest(const struct segments *s, size_t i, size_t *next,
                       struct cd_resource *out, struct cairn_err *err)
{
    if (i < s->n && s->len[i] != CK_SHA256_HEX_LEN) {
        for (size_t k = 0; k < sizeof digest_function_names / sizeof *digest_function_names; k++) {
            if (seg_is(s, i, digest_function_names[k])) {
                /* Clients must omit the segment for sha256; still accept
                 * it, but nothing else. */
                if (k != 0)
                    return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                                         "digest function '%s' is not supported (only sha256)",
                                         digest_function_names[k]);
                i++;
                break;
            }
        }
    }
    if (i + 2 > s->n)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "resource name is missing the {hash}/{size} segments");
    char hash[CK_SHA256_HEX_LEN + 1];
    if (s->len[i] != CK_SHA256_HEX_LEN)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "resource hash must be %d hex digits, got %zu characters",
                             CK_SHA256_HEX_LEN, s->len[i]);
    memcpy(hash, s->p[i], CK_SHA256_HEX_LEN);
    hash[CK_SHA256_HEX_LEN] = '\0';
    /* Size: decimal digits only (no sign, no spaces), at most 19 of them so
     * the value fits int64 before the range check. */
    const char *sz = s->p[i + 1];
    size_t szlen = s->len[i + 1];
    if (szlen == 0 || szlen > 19)
        return cairn_err_set(err, CAIRN_E_INVAL, "resource size '%.*s' is not a valid size",
                             (int)(szlen > 32 ? 32 : szlen), sz);
    int64_t size = 0;
    for (size_t k = 0; k < szlen; k++) {
        if (sz[k] < '0' || sz[k] > '9')
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "resource size '%.*s' is not a non-negative decimal number",
                                 (int)szlen, sz);
        size = size * 10 + (sz[k] - '0');
    }
    int rc = cd_digest_parse(hash, size, &out->digest, err);
    if (rc != 0)
        return rc;
    *next = i + 2;
    return 0;
}

static size_t find_segment(const struct segments *s, const char *word)
{
    for (size_t i = 0; i < s->n; i++) {
        if (seg_is(s, i, word))
            return i;
    }
    return s->n;
}

int cd_resource_parse_read(const char *name, struct cd_resource *out,
                           struct cairn_err *err)
{
    struct segments s;
    int rc = split(name, &s, err);
    if (rc != 0)
        return rc;
    if (find_segment(&s, "compressed-blobs") < s.n)
        return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                             "compressed-blobs are not supported (no compressors advertised)");
    size_t b = find_segment(&s, "blobs");
    if (b == s.n)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "read resource name must be [instance/]blobs/{hash}/{size}");
    struct cd_resource r;
    size_t next;
    if ((rc = take_instance(name, &s, b, &r, err)) != 0 ||
        (rc = take_digest(&s, b + 1, &next, &r, err)) != 0)
        return rc;
    if (next != s.n)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "read resource name has extra segments after {hash}/{size}");
    *out = r;
    return 0;
}

int cd_resource_parse_write(const char *name, struct cd_resource *out,
                            struct cairn_err *err)
{
    struct segments s;
    int rc = split(name, &s, err);
    if (rc != 0)
        return rc;
    size_t u = find_segment(&s, "uploads");
    if (u == s.n)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "write resource name must be [instance/]uploads/{uuid}/blobs/{hash}/{size}");
    if (u + 2 < s.n && seg_is(&s, u + 2, "compressed-blobs"))
        return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                             "compressed-blobs are not supported (no compressors advertised)");
    if (u + 2 >= s.n || s.len[u + 1] == 0 || !seg_is(&s, u + 2, "blobs"))
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "write resource name must be [instance/]uploads/{uuid}/blobs/{hash}/{size}");
    struct cd_resource r;
    size_t next;
    if ((rc = take_instance(name, &s, u, &r, err)) != 0 ||
        (rc = take_digest(&s, u + 3, &next, &r, err)) != 0)
        return rc;
    /* Anything after {size} is optional metadata, which REAPI lets servers
     * ignore. */
    *out = r;
    return 0;
}
