/* Requests to the bucket: handle pools, the batch runner, retries
 * (request.h). */
#include "server/s3/request.h"

#include "server/s3/answer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

enum { ST_NEW, ST_RUNNING, ST_WAITING, ST_DONE };

/* Receive and upload buffers: fewer, larger reads and writes per byte
 * moved; libcurl's defaults (16 KiB / 64 KiB) cost speed at 500 MiB/s. */
#define RECV_BUFFER (512 * 1024)
#define SEND_BUFFER (1024 * 1024)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

unsigned cd_s3_backoff_ms(unsigned attempt, unsigned retry_after_s,
                          unsigned rnd)
{
    unsigned ms = 100;
    for (unsigned i = 2; i < attempt && ms < 1600; i++)
        ms *= 4;
    /* Jitter: clients retrying in step would hit the server in step. */
    ms = ms / 2 + rnd % (ms / 2 + 1);
    unsigned ra = retry_after_s > 5 ? 5000 : retry_after_s * 1000;
    return ms > ra ? ms : ra;
}

/* ---- pools ---------------------------------------------------------- */

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a,
                       void *ctx)
{
    (void)h;
    (void)a;
    pthread_mutex_lock(&((struct cd_s3 *)ctx)->share_mu[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *ctx)
{
    (void)h;
    pthread_mutex_unlock(&((struct cd_s3 *)ctx)->share_mu[d]);
}

int cd_s3_pool_init(struct cd_s3 *s3, struct cairn_err *err)
{
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&s3->share_mu[i], NULL);
    pthread_mutex_init(&s3->pool_mu, NULL);
    /* DNS answers and TLS sessions are shared by every thread. Idle
     * connections are not: libcurl's shared connection cache is not safe
     * across concurrent threads (a known limitation), so each pooled multi
     * handle keeps its own, and the LIFO pool hands the warmest one out
     * first. */
    s3->share = curl_share_init();
    if (s3->share == NULL ||
        curl_share_setopt(s3->share, CURLSHOPT_LOCKFUNC, share_lock) ||
        curl_share_setopt(s3->share, CURLSHOPT_UNLOCKFUNC, share_unlock) ||
        curl_share_setopt(s3->share, CURLSHOPT_USERDATA, s3) ||
        curl_share_setopt(s3->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
        curl_share_setopt(s3->share, CURLSHOPT_SHARE,
                          CURL_LOCK_DATA_SSL_SESSION))
        return cairn_err_set(err, CAIRN_E_NOMEM, "S3: curl share setup");
    return 0;
}

void cd_s3_pool_fini(struct cd_s3 *s3)
{
    for (size_t i = 0; i < s3->neasy; i++)
        curl_easy_cleanup(s3->easy[i]);
    for (size_t i = 0; i < s3->nmulti; i++)
        curl_multi_cleanup(s3->multi[i]);
    s3->neasy = s3->nmulti = 0;
    if (s3->share)
        curl_share_cleanup(s3->share);
    s3->share = NULL;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&s3->share_mu[i]);
    pthread_mutex_destroy(&s3->pool_mu);
}

static CURL *easy_get(struct cd_s3 *s3)
{
    CURL *h = NULL;
    pthread_mutex_lock(&s3->pool_mu);
    if (s3->neasy > 0)
        h = s3->easy[--s3->neasy];
    pthread_mutex_unlock(&s3->pool_mu);
    if (h)
        curl_easy_reset(h);
    else
        h = curl_easy_init();
    return h;
}

static void easy_put(struct cd_s3 *s3, CURL *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&s3->pool_mu);
    if (s3->neasy < CD_S3_POOL_EASY) {
        s3->easy[s3->neasy++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&s3->pool_mu);
    if (h)
        curl_easy_cleanup(h);
}

static CURLM *multi_get(struct cd_s3 *s3)
{
    CURLM *m = NULL;
    pthread_mutex_lock(&s3->pool_mu);
    if (s3->nmulti > 0)
        m = s3->multi[--s3->nmulti];
    pthread_mutex_unlock(&s3->pool_mu);
    if (m == NULL) {
        m = curl_multi_init();
        /* Idle connections this multi keeps: enough for the widest batch
         * (curl's default, 4 per handle added, shrinks as handles leave). */
        if (m)
            curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, 300L);
    }
    return m;
}

static void multi_put(struct cd_s3 *s3, CURLM *m)
{
    pthread_mutex_lock(&s3->pool_mu);
    if (s3->nmulti < CD_S3_POOL_MULTI) {
        s3->multi[s3->nmulti++] = m;
        m = NULL;
    }
    pthread_mutex_unlock(&s3->pool_mu);
    if (m)
        curl_multi_cleanup(m);
}

int cd_s3_req_init(struct cd_s3 *s3, struct cd_s3_req *r, const char *method,
                   const char *key, const char *query, struct cairn_err *err)
{
    memset(r, 0, sizeof *r);
    r->method = method;
    cairn_buf_init(&r->url, 0);
    cairn_buf_init(&r->answer, CD_S3_ANSWER_MAX);
    snprintf(r->what, sizeof r->what, "%s %s/%s%s", method, s3->where.bucket,
             s3->where.prefix, key ? key : "");
    return cd_s3_url_object(&r->url, s3->endpoint, &s3->where, s3->path_style,
                            key, query, err);
}

void cd_s3_req_free(struct cd_s3_req *r)
{
    if (r == NULL)
        return;
    cairn_buf_free(&r->url);
    cairn_buf_free(&r->answer);
    curl_slist_free_all(r->hdrs);
    r->hdrs = NULL;
}

/* ---- callbacks ------------------------------------------------------ */

static bool has_prefix_ci(const char *p, size_t n, const char *name,
                          const char **value)
{
    size_t l = strlen(name);
    if (n < l || strncasecmp(p, name, l) != 0)
        return false;
    p += l;
    while (p < *value && (*p == ' ' || *p == '\t'))
        p++;
    *value = p;
    return true;
}

static uint64_t parse_u64(const char *p, const char *end, const char **stop)
{
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9' && v < UINT64_MAX / 10)
        v = v * 10 + (uint64_t)(*p++ - '0');
    *stop = p;
    return v;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct cd_s3_req *r = ud;
    size_t n = size * nmemb;
    const char *end = p + n, *v = end, *stop;
    while (end > p && (end[-1] == '\r' || end[-1] == '\n'))
        end--;
    v = end;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new answer (after 100 Continue, or a retry): forget the last. */
        r->has_length = r->has_range = false;
        r->etag[0] = '\0';
        r->retry_after_s = 0;
    } else if (has_prefix_ci(p, n, "content-length:", &v)) {
        r->content_length = parse_u64(v, end, &stop);
        r->has_length = stop == end && stop > v;
    } else if (has_prefix_ci(p, n, "content-range:", &v)) {
        /* bytes START-END/TOTAL */
        if (end - v > 6 && memcmp(v, "bytes ", 6) == 0) {
            r->cr_start = parse_u64(v + 6, end, &stop);
            if (stop < end && *stop == '-') {
                r->cr_end = parse_u64(stop + 1, end, &stop);
                r->has_range = stop < end && *stop == '/';
            }
        }
    } else if (has_prefix_ci(p, n, "etag:", &v)) {
        size_t l = (size_t)(end - v);
        if (l < sizeof r->etag) {
            memcpy(r->etag, v, l);
            r->etag[l] = '\0';
        }
    } else if (has_prefix_ci(p, n, "retry-after:", &v)) {
        uint64_t s = parse_u64(v, end, &stop);
        r->retry_after_s = s > 3600 ? 3600 : (unsigned)s;
    }
    return n;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct cd_s3_req *r = ud;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300 && r->write != NULL) {
        /* Never more than asked for: a server sending past the range
         * would otherwise have it appended to the object. */
        if (r->range_len > 0 && n > r->range_len - r->got) {
            r->abort_rc = CAIRN_E_CORRUPT;
            return 0;
        }
        int rc = r->write(r, p, n);
        if (rc) {
            r->abort_rc = rc;
            return 0;
        }
        r->got += n;
        return n;
    }
    /* Answers kept in memory (XML, error bodies) are capped; an error
     * body's tail is dropped, a result past the cap is an error. */
    size_t room = CD_S3_ANSWER_MAX - r->answer.len;
    if (n > room) {
        if (status >= 200 && status < 300) {
            r->abort_rc = CAIRN_E_TOOBIG;
            return 0;
        }
        n = room;
    }
    if (n > 0 && cairn_buf_append(&r->answer, p, n) != 0) {
        r->abort_rc = CAIRN_E_NOMEM;
        return 0;
    }
    return size * nmemb;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *ud)
{
    struct cd_s3_req *r = ud;
    size_t want = size * nmemb;
    if (!r->from_fd) {
        size_t left = r->body_len - (size_t)r->sent;
        size_t n = want < left ? want : left;
        memcpy(buf, (const char *)r->body + r->sent, n);
        r->sent += n;
        return n;
    }
    uint64_t left = r->fd_len - r->sent;
    size_t n = want < left ? want : (size_t)left;
    if (n == 0)
        return 0;
    ssize_t got;
    do {
        got = pread(r->fd, buf, n, (off_t)(r->fd_off + r->sent));
    } while (got < 0 && errno == EINTR);
    if (got <= 0) {
        r->abort_rc = got < 0 ? -errno : CAIRN_E_IO;
        return CURL_READFUNC_ABORT;
    }
    r->sent += (uint64_t)got;
    return (size_t)got;
}

static int on_seek(void *ud, curl_off_t off, int origin)
{
    struct cd_s3_req *r = ud;
    uint64_t len = r->from_fd ? r->fd_len : r->body_len;
    if (origin != SEEK_SET || off < 0 || (uint64_t)off > len)
        return CURL_SEEKFUNC_CANTSEEK;
    r->sent = (uint64_t)off;
    return CURL_SEEKFUNC_OK;
}

/* ---- one attempt ---------------------------------------------------- */

static int add_header(struct cd_s3_req *r, const char *h)
{
    struct curl_slist *l = curl_slist_append(r->hdrs, h);
    if (l == NULL)
        return CAIRN_E_NOMEM;
    r->hdrs = l;
    return 0;
}

/* Sets up r->h for the next attempt. */
static int attempt_setup(struct cd_s3 *s3, struct cd_s3_req *r)
{
    CURL *h = r->h;
    char line[160];
    int rc = 0;
    curl_slist_free_all(r->hdrs);
    r->hdrs = NULL;
    cairn_buf_reset(&r->answer);
    r->got = r->sent = 0;
    r->abort_rc = 0;
    r->status = 0;
    r->has_length = r->has_range = false;
    r->etag[0] = '\0';
    r->errbuf[0] = '\0';

    bool upload = r->body != NULL || r->from_fd;
    const char *sha = r->from_fd ? "UNSIGNED-PAYLOAD"
                      : r->body  ? r->body_sha
                                 : CD_S3_SHA_EMPTY;
    snprintf(line, sizeof line, "x-amz-content-sha256: %s", sha);
    rc = add_header(r, line);
    if (rc == 0 && r->range_len > 0) {
        snprintf(line, sizeof line, "Range: bytes=%" PRIu64 "-%" PRIu64,
                 r->range_start, r->range_start + r->range_len - 1);
        rc = add_header(r, line);
    }
    if (rc == 0 && s3->creds.session_token[0]) {
        struct cairn_buf t;
        cairn_buf_init(&t, 0);
        rc = cairn_buf_printf(&t, "x-amz-security-token: %s",
                              s3->creds.session_token);
        if (rc == 0)
            rc = add_header(r, t.data);
        explicit_bzero(t.data, t.alloc);
        cairn_buf_free(&t);
    }
    if (rc)
        return rc;

    CURLcode c = CURLE_OK;
#define SET(opt, val) \
    if (c == CURLE_OK) \
    c = curl_easy_setopt(h, opt, val)
    SET(CURLOPT_URL, r->url.data);
    SET(CURLOPT_PATH_AS_IS, 1L);
    SET(CURLOPT_SHARE, s3->share);
    SET(CURLOPT_AWS_SIGV4, s3->sigv4);
    SET(CURLOPT_USERNAME, s3->creds.access_key);
    SET(CURLOPT_PASSWORD, s3->creds.secret_key);
    SET(CURLOPT_HTTPHEADER, r->hdrs);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, r);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, r);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_BUFFERSIZE, (long)RECV_BUFFER);
    SET(CURLOPT_CONNECTTIMEOUT, (long)(s3->timeout_s < 10 ? s3->timeout_s : 10));
    /* Stalled, not slow: a big object may take long, a silent one not. */
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, (long)s3->timeout_s);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (strcmp(r->method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "PUT") == 0) {
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_UPLOAD_BUFFERSIZE, (long)SEND_BUFFER);
        /* No wait for "100 Continue" before each body: the answers that
         * would stop one early are rare here (the credentials were checked
         * at start-up). Removing the Expect header instead would not do:
         * curl would still sign it. */
        SET(CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
        SET(CURLOPT_INFILESIZE_LARGE,
            (curl_off_t)(r->from_fd ? r->fd_len : r->body_len));
    } else if (strcmp(r->method, "POST") == 0) {
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    } else if (strcmp(r->method, "GET") != 0) {
        SET(CURLOPT_CUSTOMREQUEST, r->method);
    }
    if (upload) {
        SET(CURLOPT_READFUNCTION, on_read);
        SET(CURLOPT_READDATA, r);
        SET(CURLOPT_SEEKFUNCTION, on_seek);
        SET(CURLOPT_SEEKDATA, r);
    }
#undef SET
    return c == CURLE_OK ? 0 : CAIRN_E_NOMEM;
}

/* Checks a 2xx answer against what was asked (ranges: the bytes and the
 * count). */
static int answer_check(struct cd_s3_req *r, struct cairn_err *err)
{
    if (r->range_len == 0)
        return 0;
    uint64_t want_end = r->range_start + r->range_len - 1;
    bool ok;
    if (r->status == 206)
        ok = r->has_range && r->cr_start == r->range_start &&
             r->cr_end == want_end;
    else
        /* A server may send the whole object for a range covering it. */
        ok = r->range_start == 0 && r->has_length &&
             r->content_length == r->range_len;
    if (!ok)
        return cairn_err_set(err, CAIRN_E_CORRUPT,
                             "S3 %s: answer is not bytes %" PRIu64
                             "-%" PRIu64 " (HTTP %ld)",
                             r->what, r->range_start, want_end, r->status);
    if (r->got != r->range_len)
        return cairn_err_set(err, CAIRN_E_CORRUPT,
                             "S3 %s: %" PRIu64 " bytes of %" PRIu64, r->what,
                             r->got, r->range_len);
    return 0;
}

enum outcome { OK, RETRY, FAIL };

/* What one finished attempt means. */
static enum outcome attempt_judge(struct cd_s3_req *r, CURLcode cc,
                                  struct cairn_err *err)
{
    curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->abort_rc) {
        const char *why = r->abort_rc == CAIRN_E_CORRUPT
                              ? "server sent more than the range"
                              : cairn_strerror(r->abort_rc);
        r->rc = cairn_err_set(err, r->abort_rc, "S3 %s: %s", r->what, why);
        return FAIL;
    }
    if (cc != CURLE_OK) {
        bool timeout = cc == CURLE_OPERATION_TIMEDOUT;
        r->rc = cairn_err_set(err, timeout ? CAIRN_E_TIMEOUT : CAIRN_E_RPC,
                              "S3 %s: %s", r->what,
                              r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc));
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_OPERATION_TIMEDOUT:
            return RETRY;
        default:
            return FAIL;
        }
    }
    if (r->status >= 200 && r->status < 300) {
        r->rc = answer_check(r, err);
        return r->rc ? FAIL : OK;
    }
    if (r->status == 404 && r->ok_404) {
        r->rc = 0;
        return OK;
    }
    r->rc = cd_s3_answer_error(r->status, r->answer.data, r->answer.len,
                               r->what, err);
    return cd_s3_answer_retryable(r->status) ? RETRY : FAIL;
}

/* ---- the batch runner ----------------------------------------------- */

struct run {
    struct cd_s3 *s3;
    CURLM *m;
    struct cd_s3_req **reqs;
    size_t n, next;
    unsigned parallel, active;
    const struct cd_s3_batch_hooks *hooks;
};

static int start(struct run *u, struct cd_s3_req *r, struct cairn_err *err)
{
    if (r->h == NULL)
        r->h = easy_get(u->s3);
    int rc = r->h ? attempt_setup(u->s3, r) : CAIRN_E_NOMEM;
    if (rc == 0 && curl_easy_setopt(r->h, CURLOPT_PRIVATE, r) != CURLE_OK)
        rc = CAIRN_E_NOMEM;
    if (rc == 0 && curl_multi_add_handle(u->m, r->h) != CURLM_OK)
        rc = CAIRN_E_NOMEM;
    if (rc)
        return r->rc = cairn_err_set(err, rc, "S3 %s: %s", r->what,
                                     cairn_strerror(rc));
    r->tries++;
    r->state = ST_RUNNING;
    u->active++;
    return 0;
}

static void stop(struct run *u, struct cd_s3_req *r)
{
    if (r->state == ST_RUNNING) {
        curl_multi_remove_handle(u->m, r->h);
        u->active--;
    }
    easy_put(u->s3, r->h);
    r->h = NULL;
}

/* A finished attempt: done, due for another try, or the batch's end. */
static int finish(struct run *u, struct cd_s3_req *r, CURLcode cc,
                  struct cairn_err *err)
{
    enum outcome o = attempt_judge(r, cc, err);
    curl_multi_remove_handle(u->m, r->h);
    u->active--;
    r->state = ST_DONE;
    if (o == RETRY && r->range_len > 0 && r->got > 0) {
        /* Bytes already handed over stay handed over: ask for the rest. */
        r->range_start += r->got;
        r->range_len -= r->got;
        if (r->range_len == 0)
            o = OK, r->rc = 0;
    }
    if (o == RETRY && r->write != NULL && r->range_len == 0 && r->got > 0)
        o = FAIL;
    if (o == RETRY && r->tries < CD_S3_TRIES) {
        r->state = ST_WAITING;
        r->due_ms = now_ms() + cd_s3_backoff_ms(r->tries + 1, r->retry_after_s,
                                                (unsigned)rand());
        cairn_err_clear(err);
        return 0;
    }
    easy_put(u->s3, r->h);
    r->h = NULL;
    if (o != OK) {
        if (r->tries > 1 && err != NULL)
            cairn_err_prefix(err, "after %u tries", r->tries);
        return r->rc;
    }
    int rc = 0;
    if (u->hooks && u->hooks->done)
        rc = u->hooks->done(u->hooks->ctx, r);
    if (rc && (err == NULL || err->code == 0))
        cairn_err_set(err, rc, "S3 %s: %s", r->what, cairn_strerror(rc));
    return rc;
}

/* Starts what may start now; returns the wait until the next retry is
 * due (ms, -1: none waiting). */
static int admit(struct run *u, int64_t *wait_ms, struct cairn_err *err)
{
    int64_t now = now_ms();
    *wait_ms = -1;
    for (size_t i = 0; i < u->next; i++) {
        struct cd_s3_req *r = u->reqs[i];
        if (r->state != ST_WAITING)
            continue;
        if (r->due_ms <= now && u->active < u->parallel) {
            int rc = start(u, r, err);
            if (rc)
                return rc;
        } else if (*wait_ms < 0 || r->due_ms - now < *wait_ms) {
            *wait_ms = r->due_ms > now ? r->due_ms - now : 0;
        }
    }
    while (u->next < u->n && u->active < u->parallel &&
           (u->hooks == NULL || u->hooks->limit == NULL ||
            u->next < u->hooks->limit(u->hooks->ctx))) {
        int rc = start(u, u->reqs[u->next++], err);
        if (rc)
            return rc;
    }
    return 0;
}

int cd_s3_batch_run(struct cd_s3 *s3, struct cd_s3_req **reqs, size_t n,
                    unsigned parallel, const struct cd_s3_batch_hooks *hooks,
                    struct cairn_err *err)
{
    struct run u = {.s3 = s3, .reqs = reqs, .n = n,
                    .parallel = parallel ? parallel : 1, .hooks = hooks};
    int rc = 0;
    u.m = multi_get(s3);
    if (u.m == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "S3: curl multi handle");
    for (size_t i = 0; i < n; i++) {
        reqs[i]->state = ST_NEW;
        reqs[i]->tries = 0;
        reqs[i]->rc = 0;
    }
    for (;;) {
        int64_t wait_ms;
        rc = admit(&u, &wait_ms, err);
        if (rc)
            goto out;
        if (u.active == 0 && wait_ms < 0) {
            if (u.next < n) /* a limit that never opens: a caller's bug */
                rc = cairn_err_set(err, CAIRN_E_INVAL, "S3: batch stalled");
            goto out;
        }
        int running = 0;
        if (curl_multi_perform(u.m, &running) != CURLM_OK) {
            rc = cairn_err_set(err, CAIRN_E_NOMEM, "S3: curl multi failed");
            goto out;
        }
        CURLMsg *msg;
        int left;
        bool finished = false;
        while ((msg = curl_multi_info_read(u.m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct cd_s3_req *r = NULL;
            CURLcode cc = msg->data.result;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            rc = finish(&u, r, cc, err);
            if (rc)
                goto out;
            finished = true;
        }
        /* A finished request frees a slot: fill it before waiting. */
        if (finished)
            continue;
        int timeout = 1000;
        if (wait_ms >= 0 && wait_ms < timeout)
            timeout = (int)wait_ms;
        curl_multi_poll(u.m, NULL, 0, timeout, NULL);
    }
out:
    for (size_t i = 0; i < u.next; i++)
        if (reqs[i]->h != NULL)
            stop(&u, reqs[i]);
    multi_put(s3, u.m);
    return rc;
}

int cd_s3_req_run(struct cd_s3 *s3, struct cd_s3_req *r,
                  struct cairn_err *err)
{
    struct cd_s3_req *one = r;
    return cd_s3_batch_run(s3, &one, 1, 1, NULL, err);
}
