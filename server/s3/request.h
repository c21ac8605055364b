/* The request engine shared by the room's files: struct cd_s3 (the
 * session), pools of curl handles (the pooled multi handles keep the idle
 * connections), and a runner that drives a batch of requests through one curl multi handle,
 * at most N in flight, retrying 5xx/503 SlowDown and dropped connections
 * with bounded backoff (cd_s3_backoff_ms), and mapping each answer to a
 * CAIRN_E_* code (answer.h). Internal to server/s3/.
 *
 * Payload hashes (x-amz-content-sha256): bodies in memory are signed with
 * their sha256, so the server checks them (400 BadDigest otherwise);
 * bodies streamed from a file (cd_s3_put_fd) go as UNSIGNED-PAYLOAD: the
 * objects are named by their digest and every reader checks that digest,
 * while hashing here would read the file a second time on the write path.
 */
#ifndef CAIRN_SERVER_S3_REQUEST_H
#define CAIRN_SERVER_S3_REQUEST_H

#include "common/buf.h"
#include "common/error.h"
#include "server/s3/s3.h"
#include "server/s3/url.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define CD_S3_TRIES 4           /* attempts per request */
#define CD_S3_ANSWER_MAX 65536  /* XML answers and error bodies kept */
#define CD_S3_POOL_EASY 64      /* idle easy handles kept */
#define CD_S3_POOL_MULTI 32     /* idle multi handles (and their
                                 * connections) kept */
#define CD_S3_SHA_EMPTY \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct cd_s3 {
    struct cd_s3_where where;
    char endpoint[CD_S3_MAX_ENDPOINT + 1];
    char sigv4[96]; /* "aws:amz:REGION:s3" */
    struct cd_s3_creds creds;
    bool path_style;
    unsigned timeout_s;
    unsigned parallel;
    size_t part_size;
    CURLSH *share;
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
    pthread_mutex_t pool_mu;
    CURL *easy[CD_S3_POOL_EASY];
    size_t neasy;
    CURLM *multi[CD_S3_POOL_MULTI];
    size_t nmulti;
};

struct cd_s3_req;
/* Receives a 2xx body in order; returns 0 or a code that stops the batch. */
typedef int (*cd_s3_req_write)(struct cd_s3_req *r, const char *p, size_t n);

/* One request. The caller fills the first block (zero the rest), owns the
 * struct and its url, and calls cd_s3_req_free after the run. */
struct cd_s3_req {
    const char *method;     /* GET HEAD PUT POST DELETE */
    struct cairn_buf url;   /* cd_s3_url_object */
    char what[CD_S3_MAX_KEY + 128]; /* "PUT bucket/key" for messages */
    const void *body;       /* body from memory ... */
    size_t body_len;
    const char *body_sha;   /* its hex sha256 (required with body) */
    bool from_fd;           /* ... or fd_len bytes of fd at fd_off, sent
                             * as UNSIGNED-PAYLOAD */
    int fd;
    uint64_t fd_off, fd_len;
    uint64_t range_start, range_len; /* range_len > 0: Range, verified */
    cd_s3_req_write write;  /* 2xx body sink; NULL: kept in answer */
    void *ctx;
    bool ok_404;            /* 404 is an answer (HEAD of maybe-absent) */
    unsigned index;         /* caller's */

    /* Results, valid after the run. */
    long status;
    int rc;                 /* 0, or why it failed after the retries */
    struct cairn_buf answer; /* kept body, capped at CD_S3_ANSWER_MAX */
    uint64_t content_length;
    bool has_length;
    char etag[130];

    /* Engine state. */
    uint64_t got, sent;
    unsigned tries, retry_after_s;
    int abort_rc;
    bool has_range;
    uint64_t cr_start, cr_end;
    int64_t due_ms;
    int state;
    CURL *h;
    struct curl_slist *hdrs;
    char errbuf[CURL_ERROR_SIZE];
};

/* Zeroes r and makes it method on key (NULL: the bucket itself) with
 * query (NULL: none; encoded, sorted by name). */
int cd_s3_req_init(struct cd_s3 *s3, struct cd_s3_req *r, const char *method,
                   const char *key, const char *query, struct cairn_err *err);

/* Frees what the run and the caller attached (url, answer). */
void cd_s3_req_free(struct cd_s3_req *r);

/* Hook of a batch: request i may start only while i < limit(ctx) (ranged
 * GETs: no more undelivered parts than buffers); done(ctx, r) after each
 * request that succeeded, may return a code that stops the batch. */
struct cd_s3_batch_hooks {
    size_t (*limit)(void *ctx);
    int (*done)(void *ctx, struct cd_s3_req *r);
    void *ctx;
};

/* Runs reqs[0..n) in order, at most parallel at once. Returns 0 when every
 * request ended 2xx (or 404 with ok_404), else the first failure's rc with
 * err set (the others are cancelled). Thread-safe per s3 (pools locked). */
int cd_s3_batch_run(struct cd_s3 *s3, struct cd_s3_req **reqs, size_t n,
                    unsigned parallel, const struct cd_s3_batch_hooks *hooks,
                    struct cairn_err *err);

/* One request: cd_s3_batch_run of one. */
int cd_s3_req_run(struct cd_s3 *s3, struct cd_s3_req *r,
                  struct cairn_err *err);

/* Milliseconds to wait before attempt (2, 3, ...): 100 ms times 4 per
 * earlier retry, then jitter (rnd % half of it), at least Retry-After
 * seconds capped at 5 s. */
unsigned cd_s3_backoff_ms(unsigned attempt, unsigned retry_after_s,
                          unsigned rnd);

/* Handle pools (request.c). */
int cd_s3_pool_init(struct cd_s3 *s3, struct cairn_err *err);
void cd_s3_pool_fini(struct cd_s3 *s3);

#endif
