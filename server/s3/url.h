/* Where objects live: the s3://BUCKET[/PREFIX] URL, the endpoint, and the
 * request URL of one object, percent-encoded the way SigV4 signs it
 * (libcurl signs the URL exactly as given, so the encoding is ours).
 * Pure functions, thread-safe. */
#ifndef CAIRN_SERVER_S3_URL_H
#define CAIRN_SERVER_S3_URL_H

#include "common/buf.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

#define CD_S3_MAX_BUCKET 63
#define CD_S3_MAX_PREFIX 512
#define CD_S3_MAX_ENDPOINT 256

struct cd_s3_where {
    char bucket[CD_S3_MAX_BUCKET + 1];
    char prefix[CD_S3_MAX_PREFIX + 1]; /* "" or ends with '/' */
};

/* Parses s3://BUCKET[/PREFIX][/]: bucket 3-63 of [a-z0-9.-], starting and
 * ending with a letter or digit; prefix segments non-empty, not "." or
 * "..", no control bytes or backslashes. CAIRN_E_INVAL naming what is
 * wrong. out written only on success. */
int cd_s3_url_parse(const char *url, struct cd_s3_where *out,
                    struct cairn_err *err);

/* Checks http(s)://HOST[:PORT][/] (no path, query or user info) and writes
 * it without the trailing slash into out (CD_S3_MAX_ENDPOINT + 1 bytes). */
int cd_s3_endpoint_parse(const char *endpoint, char *out,
                         struct cairn_err *err);

/* Appends s percent-encoded: bytes outside A-Za-z0-9-._~ (and '/' when
 * keep_slash) become %XX, upper-case hex. */
int cd_s3_url_escape(struct cairn_buf *out, const char *s, size_t n,
                     bool keep_slash);

/* Writes into out (reset first) the URL of key (NULL: the bucket itself)
 * under w's prefix, path-style or virtual-host style, then "?query" when
 * query is not NULL (already encoded, parameters sorted by name).
 * CAIRN_E_INVAL for an empty key, a key with control bytes, or prefix+key
 * longer than CD_S3_MAX_KEY. */
int cd_s3_url_object(struct cairn_buf *out, const char *endpoint,
                     const struct cd_s3_where *w, bool path_style,
                     const char *key, const char *query,
                     struct cairn_err *err);

#endif
