/* The bucket: an S3-compatible object store reached over HTTP(S) by
 * libcurl, requests signed with AWS Signature V4 by libcurl
 * (CURLOPT_AWS_SIGV4), payload hashes by OpenSSL. cairnd's store
 * (server/store/) uses it as the durable tier under LMDB
 * (docs/storage.md).
 *
 * Objects are named by the caller ("cas/<instance>/<hex>", ...); this
 * module adds the bucket's prefix, percent-encodes, signs, retries 5xx
 * and 503 SlowDown with bounded backoff, and maps HTTP answers to codes:
 *   CAIRN_E_NOTFOUND     404 (object or bucket)
 *   CAIRN_E_AUTH         403; err says which (bad key id, bad signature,
 *                        clock skew: RequestTimeTooSkewed, access denied)
 *   CAIRN_E_TIMEOUT      no answer in time (after the retries)
 *   CAIRN_E_RPC          connection refused/reset, 5xx after the retries:
 *                        the bucket is unreachable (callers: UNAVAILABLE)
 *   CAIRN_E_DIGEST       the server refused the payload's sha256
 *   CAIRN_E_CORRUPT      an answer that does not add up (length, range,
 *                        XML), or 416: the object is shorter than asked
 *   CAIRN_E_INVAL        other 4xx: the server refused the request (err
 *                        has S3's error Code)
 * Secrets never appear in err or in any log line.
 *
 * Thread-safety: a struct cd_s3 is shared by every thread of cairnd; each
 * call uses its own curl handles (from a pool).
 */
#ifndef CAIRN_SERVER_S3_H
#define CAIRN_SERVER_S3_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CD_S3_MAX_KEY 1024 /* bytes of an object name, prefix included */

/* Where the credentials come from, first match wins: the file of
 * --s3-credentials-file (an AWS shared-credentials file), else
 * AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN], else the
 * shared credentials file (AWS_SHARED_CREDENTIALS_FILE or
 * ~/.aws/credentials) at profile AWS_PROFILE (default "default"). */
struct cd_s3_creds {
    char access_key[256];
    char secret_key[256];
    char session_token[4096]; /* "" when none */
};
int cd_s3_creds_load(const char *file, const char *profile,
                     struct cd_s3_creds *out, struct cairn_err *err);
/* The shared-credentials format, from text[0..len) (at most
 * CD_S3_CREDS_FILE_MAX): "[name]" sections ("[profile name]" too), lines
 * "key = value" (aws_access_key_id, aws_secret_access_key,
 * aws_session_token; others ignored), '#' and ';' comments. origin names
 * the text in messages, which never quote a value. CAIRN_E_NOTFOUND when
 * the profile or a key is missing, CAIRN_E_TOOBIG for a value past its
 * field, CAIRN_E_PARSE for a line that is none of these. */
#define CD_S3_CREDS_FILE_MAX (1 << 20)
int cd_s3_creds_parse(const char *text, size_t len, const char *profile,
                      const char *origin, struct cd_s3_creds *out,
                      struct cairn_err *err);

struct cd_s3_opts {
    const char *url;       /* s3://BUCKET[/PREFIX] */
    const char *endpoint;  /* http(s)://host[:port] */
    const char *region;    /* NULL: "us-east-1" */
    bool path_style;       /* endpoint/BUCKET/key instead of BUCKET.host */
    const struct cd_s3_creds *creds; /* copied */
    unsigned timeout_s;    /* per request without progress; 0: 30 */
    unsigned parallel;     /* requests one call may have in flight
                            * (multipart parts, ranged GETs, HEADs); 0: 8 */
    size_t part_size;      /* multipart part and ranged-GET size; 0: 16 MiB */
};

struct cd_s3;

/* Parses and copies opts; contacts nothing. CAIRN_E_INVAL for a bad URL,
 * endpoint, bucket name or region, parallel > 256, part_size outside
 * 64 KiB..5 GiB, timeout_s > 3600. Close with cd_s3_close (NULL ok). */
int cd_s3_open(const struct cd_s3_opts *opts, struct cd_s3 **out,
               struct cairn_err *err);
void cd_s3_close(struct cd_s3 *s3);

/* HEAD on the bucket: cairnd's start-up check. */
int cd_s3_check(struct cd_s3 *s3, struct cairn_err *err);

/* HEAD on one object: 0 and *size, or CAIRN_E_NOTFOUND, ... */
int cd_s3_head(struct cd_s3 *s3, const char *key, uint64_t *size,
               struct cairn_err *err);
/* HEADs n objects, at most opts.parallel at once (curl multi); present[i]
 * set for each that exists. Any answer but 200/404 fails the call. */
int cd_s3_head_many(struct cd_s3 *s3, const char *const *keys, size_t n,
                    bool *present, struct cairn_err *err);

/* PUT of a whole object from memory, sha256 of the payload sent
 * (x-amz-content-sha256) so the server checks it. */
int cd_s3_put(struct cd_s3 *s3, const char *key, const void *data,
              size_t len, struct cairn_err *err);
/* PUT of size bytes read from fd at offset 0 (pread): one PUT up to
 * part_size, else a multipart upload, parts in parallel, aborted on
 * failure. Parts are part_size or larger (up to 512 MiB), so that there
 * are no more parts than opts.parallel when that allows: they stream from
 * fd, so size costs no memory, and fewer parts are fewer requests. The
 * object is visible only when the call returns 0. */
int cd_s3_put_fd(struct cd_s3 *s3, const char *key, int fd, uint64_t size,
                 struct cairn_err *err);

/* PUTs of n whole objects from memory, at most opts.parallel at once (curl
 * multi), each as cd_s3_put. Returns 0 when every object is in; on a
 * failure, the first failure's code with err: some objects may be in and
 * others not (the caller counts none as written). */
int cd_s3_put_many(struct cd_s3 *s3, const char *const *keys,
                   const void *const *data, const size_t *lens, size_t n,
                   struct cairn_err *err);

/* A multipart upload fed part by part while its bytes still arrive (a
 * client's stream): begin starts it (POST ?uploads) for nparts parts
 * (2..CD_S3_MAX_PARTS); part queues the next part, numbered in order
 * from 1, as len bytes of fd at off, and returns at once: worker threads
 * of the upload send the queued parts, at most min(opts.parallel, 16) at
 * once, streaming from fd (pread; no copy, so memory stays bounded); the
 * bytes must stay in fd until complete or abort returns. Every part but
 * the last must have the same size, at least 5 MiB (cd_s3_parts_plan).
 * part returns the first failure of an earlier part, if any (the caller
 * may stop feeding; it must still call abort).
 * complete waits for the parts, then makes them the object
 * (CompleteMultipartUpload): the object is visible only when it returns 0;
 * on failure the upload is aborted. abort (NULL ok) stops the workers,
 * waits for the parts in flight, and deletes the upload (best effort: a
 * node killed meanwhile leaves it to the bucket's lifecycle rule). Both
 * free m. */
struct cd_s3_mpu;
int cd_s3_mpu_begin(struct cd_s3 *s3, const char *key, unsigned nparts,
                    struct cd_s3_mpu **out, struct cairn_err *err);
int cd_s3_mpu_part(struct cd_s3_mpu *m, int fd, uint64_t off, uint64_t len,
                   struct cairn_err *err);
int cd_s3_mpu_complete(struct cd_s3_mpu *m, struct cairn_err *err);
void cd_s3_mpu_abort(struct cd_s3_mpu *m);
/* The ETag S3 gives the object a multipart upload of n parts makes, from
 * the parts' ETags (as the server returned them, quoted or not): the MD5
 * of the parts' MD5s in binary, in lower-case hex, then "-n"; into out
 * (cap >= 44 bytes). CAIRN_E_INVAL when a part's ETag is not 32 hex
 * digits (a server that names parts otherwise: no check possible),
 * CAIRN_E_TOOBIG, CAIRN_E_NOMEM. complete uses it when S3 answers
 * NoSuchUpload (a completed upload whose answer was lost): the object
 * is taken for this upload's only with this ETag and its size. */
int cd_s3_multipart_etag(const char *const *etags, unsigned n, char *out,
                         size_t cap);
/* opts.part_size as opened (16 MiB by default). */
size_t cd_s3_part_size(const struct cd_s3 *s3);
/* The part size for a multipart upload of size bytes fed while they
 * arrive: a quarter of size rounded up to whole MiB, at least part_size,
 * at most 64 MiB (unless part_size is larger). Why: every part costs the
 * server (Swift, measured: 256 MiB in 16 parts of 16 MiB took 1.6x the
 * time of one PUT, in 4 parts of 64 MiB 1.05x), while a part can start
 * only once all its bytes arrived and the last waits for the digest
 * check, so parts are not made larger than that. Pure. */
size_t cd_s3_stream_part_size(const struct cd_s3 *s3, uint64_t size);

/* How put_fd cuts size bytes: *nparts == 1 is one PUT (size <= part_size);
 * else parts of *psize (the last shorter): at least 5 MiB and part_size,
 * raised to whole MiB so that there are at most CD_S3_MAX_PARTS (Swift's
 * limit; S3 allows more). CAIRN_E_TOOBIG past 5 GiB parts. Pure. */
#define CD_S3_MAX_PARTS 1000
int cd_s3_parts_plan(uint64_t size, size_t part_size, uint64_t *psize,
                     unsigned *nparts);

/* GET of [offset, offset+len) of an object of known size, delivered to
 * sink in order (ranged GETs in parallel above part_size, reassembled in
 * order with bounded memory: parallel * part_size). sink returning
 * nonzero stops the call with that code. sink runs in the calling thread,
 * between transfers: while it blocks, the other ranges wait (past
 * timeout_s they count as stalled and are retried from where they
 * stopped). A range the server answers short, long or with other bytes
 * than asked is CAIRN_E_CORRUPT. */
typedef int (*cd_s3_sink)(void *ctx, const void *data, size_t n);
int cd_s3_get(struct cd_s3 *s3, const char *key, uint64_t offset,
              uint64_t len, cd_s3_sink sink, void *ctx,
              struct cairn_err *err);

/* DELETE of one object; 0 also when it was absent (S3's semantics). */
int cd_s3_delete(struct cd_s3 *s3, const char *key, struct cairn_err *err);

#endif
