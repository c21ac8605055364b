/* HTTP to one registry (client/registry/transport.h). libcurl's codes are
 * translated here and nowhere else. */
#include "client/registry/transport.h"

#include "client/registry/auth.h"
#include "client/registry/errors.h"
#include "client/registry/ref.h"
#include "common/buf.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAX 16
#define CA_FILE_MAX (1u << 20)  /* one *.crt */
#define CA_TOTAL_MAX (8u << 20) /* system bundle + every *.crt */
#define URL_MAX 8192
#define HDR_MAX 8192
#define SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

enum scheme { SCHEME_UNKNOWN, SCHEME_HTTPS, SCHEME_HTTP };

struct cairn_reg_session {
    char *host;
    bool insecure; /* named insecure: TLS not verified */
    bool plain_ok; /* loopback or insecure: plain HTTP when TLS fails */
    atomic_int scheme;
    char *ca_blob; /* NULL: libcurl's default CAs */
    size_t ca_len;
    char *client_cert, *client_key;
    long connect_timeout_s, stall_s;
    pthread_mutex_t mu; /* auth and pool */
    struct cairn_reg_auth *auth;
    CURL *pool[POOL_MAX];
    size_t npool;
    CURLSH *share;
    pthread_mutex_t share_mu;
    atomic_uint requests;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *ctx)
{
    (void)h;
    (void)d;
    (void)a;
    pthread_mutex_lock(&((struct cairn_reg_session *)ctx)->share_mu);
}

static void share_unlock(CURL *h, curl_lock_data d, void *ctx)
{
    (void)h;
    (void)d;
    pthread_mutex_unlock(&((struct cairn_reg_session *)ctx)->share_mu);
}

/* Appends file path (at most CA_FILE_MAX bytes) to b. */
static int append_file(struct cairn_buf *b, const char *path,
                       struct cairn_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
    int rc = 0;
    size_t got = 0;
    char chunk[16384];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > CA_FILE_MAX || cairn_buf_append(b, chunk, (size_t)n)) {
            rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                               "%s: certificates over %u bytes", path,
                               CA_TOTAL_MAX);
            break;
        }
    }
    close(fd);
    return rc ? rc : cairn_buf_putc(b, '\n');
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n > m && strcmp(s + n - m, suf) == 0;
}

/* Reads one certs.d/HOST directory: *.crt into cas (counted in *ncas),
 * the first *.cert with its *.key as the client pair. A missing
 * directory is fine. */
static int certs_dir_read(struct cairn_reg_session *s, const char *dir,
                          struct cairn_buf *cas, size_t *ncas,
                          struct cairn_err *err)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int rc = 0;
    struct dirent *e;
    char path[4096];
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || snprintf(path, sizeof path, "%s/%s", dir,
                                            e->d_name) >= (int)sizeof path)
            continue;
        if (has_suffix(e->d_name, ".crt")) {
            rc = append_file(cas, path, err);
            (*ncas)++;
        } else if (has_suffix(e->d_name, ".cert") && s->client_cert == NULL) {
            char key[4096];
            snprintf(key, sizeof key, "%.*s.key", (int)(strlen(path) - 5),
                     path);
            if (access(key, R_OK) != 0)
                rc = cairn_err_set(err, CAIRN_E_INVAL,
                                   "client certificate %s has no key %s", path,
                                   key);
            else if (!(s->client_cert = strdup(path)) ||
                     !(s->client_key = strdup(key)))
                rc = CAIRN_E_NOMEM;
        }
    }
    closedir(d);
    return rc;
}

/* The CA bundle (system CAs first) and client pair from certs.d. */
static int certs_load(struct cairn_reg_session *s, struct cairn_err *err)
{
    const char *env = getenv("CAIRN_CERTS_D");
    const char *roots[2] = {"/etc/docker/certs.d", "/etc/containers/certs.d"};
    size_t nroots = 2;
    if (env && env[0]) {
        roots[0] = env;
        nroots = 1;
    }
    struct cairn_buf cas;
    cairn_buf_init(&cas, CA_TOTAL_MAX);
    size_t ncas = 0;
    int rc = 0;
    const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
    const char *sys = vi && vi->cainfo ? vi->cainfo : SYSTEM_CA;
    /* The system bundle comes first; a machine without one still trusts
     * the certs.d CAs. */
    if (access(sys, R_OK) == 0 && append_file(&cas, sys, NULL) != 0)
        cairn_buf_reset(&cas);
    size_t sys_len = cas.len;
    for (size_t i = 0; rc == 0 && i < nroots; i++) {
        char dir[4096];
        if (snprintf(dir, sizeof dir, "%s/%s", roots[i], s->host) <
            (int)sizeof dir)
            rc = certs_dir_read(s, dir, &cas, &ncas, err);
    }
    if (rc == 0 && ncas > 0 && cas.len > sys_len) {
        s->ca_len = cas.len;
        s->ca_blob = cairn_buf_take(&cas);
        if (s->ca_blob == NULL)
            rc = CAIRN_E_NOMEM;
    }
    cairn_buf_free(&cas);
    return rc;
}

/* TLS, timeouts and transport options of every handle of s, the token
 * request's included (auth.h's prepare). */
static int session_prepare(void *ctx, CURL *h, const char *url,
                           struct cairn_err *err)
{
    (void)url;
    (void)err;
    struct cairn_reg_session *s = ctx;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, s->connect_timeout_s);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, s->stall_s);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "cairn/" CAIRN_VERSION);
    curl_easy_setopt(h, CURLOPT_SHARE, s->share);
    if (s->ca_blob) {
        struct curl_blob b = {s->ca_blob, s->ca_len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b);
    }
    if (s->client_cert) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, s->client_cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, s->client_key);
    }
    if (s->insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    return 0;
}

static long env_seconds(const char *name, long dflt)
{
    const char *v = getenv(name);
    char *end;
    long n = v ? strtol(v, &end, 10) : 0;
    return v && *v && *end == '\0' && n > 0 && n <= 3600 ? n : dflt;
}

int cairn_reg_session_open(const char *host, const struct cairn_reg_opts *o,
                           struct cairn_reg_session **out,
                           struct cairn_err *err)
{
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return cairn_err_set(err, CAIRN_E_IO, "libcurl: %s",
                             curl_easy_strerror(curl_init_rc));
    struct cairn_reg_session *s = calloc(1, sizeof *s);
    if (s == NULL || (s->host = strdup(host)) == NULL) {
        free(s);
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->share_mu, NULL);
    atomic_init(&s->scheme, SCHEME_UNKNOWN);
    atomic_init(&s->requests, 0);
    for (size_t i = 0; o && i < o->ninsecure; i++)
        if (strcmp(o->insecure[i], host) == 0)
            s->insecure = true;
    s->plain_ok = s->insecure || cairn_reg_host_is_loopback(host);
    if (!s->plain_ok)
        atomic_store(&s->scheme, SCHEME_HTTPS);
    long t = env_seconds("CAIRN_REGISTRY_TIMEOUT", 0);
    s->connect_timeout_s = t ? t : CAIRN_REG_CONNECT_TIMEOUT_S;
    s->stall_s = t ? t : CAIRN_REG_STALL_S;
    int rc = 0;
    if ((s->share = curl_share_init()) == NULL)
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    else {
        curl_share_setopt(s->share, CURLSHOPT_LOCKFUNC, share_lock);
        curl_share_setopt(s->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
        curl_share_setopt(s->share, CURLSHOPT_USERDATA, s);
        curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        curl_share_setopt(s->share, CURLSHOPT_SHARE,
                          CURL_LOCK_DATA_SSL_SESSION);
    }
    if (rc == 0)
        rc = certs_load(s, err);
    if (rc == 0)
        rc = cairn_reg_auth_new(host, session_prepare, s, &s->auth, err);
    if (rc) {
        cairn_reg_session_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void cairn_reg_session_close(struct cairn_reg_session *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->npool; i++)
        curl_easy_cleanup(s->pool[i]);
    if (s->share)
        curl_share_cleanup(s->share);
    cairn_reg_auth_free(s->auth);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->share_mu);
    free(s->ca_blob);
    free(s->client_cert);
    free(s->client_key);
    free(s->host);
    free(s);
}

const char *cairn_reg_session_host(const struct cairn_reg_session *s)
{
    return s->host;
}

unsigned cairn_reg_session_requests(const struct cairn_reg_session *s)
{
    return atomic_load(&((struct cairn_reg_session *)s)->requests);
}

void cairn_reg_resp_clear(struct cairn_reg_resp *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    free(resp->location);
    resp->body = NULL;
    resp->location = NULL;
    resp->body_len = 0;
}

static CURL *handle_get(struct cairn_reg_session *s)
{
    CURL *h = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->npool > 0)
        h = s->pool[--s->npool];
    pthread_mutex_unlock(&s->mu);
    if (h)
        curl_easy_reset(h);
    else
        h = curl_easy_init();
    return h;
}

static void handle_put(struct cairn_reg_session *s, CURL *h)
{
    pthread_mutex_lock(&s->mu);
    if (s->npool < POOL_MAX) {
        s->pool[s->npool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    if (h)
        curl_easy_cleanup(h);
}

/* ------------------------------------------------------------------ */
/* one attempt                                                          */

struct xfer {
    const struct cairn_reg_req *req;
    struct cairn_reg_resp *resp;
    long status;           /* of the last status line: redirects send several */
    struct cairn_buf body; /* 2xx without a sink */
    struct cairn_buf errbody; /* other answers, capped quietly */
    char challenge[2048];
    int64_t retry_after_s; /* -1: none */
    int sink_rc;
    bool toobig;
    /* request body */
    const char *mem;
    int fd;
    int64_t off, left;
};

static void hdr_value(const char *line, size_t n, size_t name_len, char *buf,
                      size_t len)
{
    const char *v = line + name_len;
    size_t vn = n - name_len;
    while (vn > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vn--;
    }
    while (vn > 0 &&
           (v[vn - 1] == '\r' || v[vn - 1] == '\n' || v[vn - 1] == ' '))
        vn--;
    if (vn >= len)
        vn = len - 1;
    memcpy(buf, v, vn);
    buf[vn] = '\0';
}

#define IS_HDR(line, n, name)                                                  \
    ((n) > sizeof name - 1 && strncasecmp(line, name, sizeof name - 1) == 0)

static size_t on_header(char *line, size_t size, size_t nitems, void *ctx)
{
    struct xfer *x = ctx;
    size_t n = size * nitems;
    struct cairn_reg_resp *r = x->resp;
    char v[HDR_MAX];
    if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* A new answer (after a redirect or a 100): forget the last. */
        const char *sp = memchr(line, ' ', n);
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        r->content_type[0] = r->digest[0] = '\0';
        r->content_length = -1;
        x->challenge[0] = '\0';
        x->retry_after_s = -1;
        free(r->location);
        r->location = NULL;
    } else if (IS_HDR(line, n, "content-type:")) {
        hdr_value(line, n, 13, r->content_type, sizeof r->content_type);
    } else if (IS_HDR(line, n, "docker-content-digest:")) {
        hdr_value(line, n, 22, r->digest, sizeof r->digest);
    } else if (IS_HDR(line, n, "content-length:")) {
        hdr_value(line, n, 15, v, sizeof v);
        char *end;
        long long cl = strtoll(v, &end, 10);
        r->content_length = *end == '\0' && cl >= 0 ? cl : -1;
    } else if (IS_HDR(line, n, "www-authenticate:")) {
        hdr_value(line, n, 17, x->challenge, sizeof x->challenge);
    } else if (IS_HDR(line, n, "accept-ranges:")) {
        hdr_value(line, n, 14, v, sizeof v);
        if (strcasecmp(v, "bytes") == 0)
            r->ranges = true;
    } else if (IS_HDR(line, n, "location:")) {
        hdr_value(line, n, 9, v, sizeof v);
        free(r->location);
        r->location = strdup(v);
    } else if (IS_HDR(line, n, "retry-after:")) {
        hdr_value(line, n, 12, v, sizeof v);
        char *end;
        long long s = strtoll(v, &end, 10);
        if (*end == '\0' && s >= 0)
            x->retry_after_s = s;
        else {
            time_t t = curl_getdate(v, NULL);
            time_t now = time(NULL);
            if (t > 0)
                x->retry_after_s = t > now ? t - now : 0;
        }
    }
    return n;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ctx)
{
    struct xfer *x = ctx;
    size_t n = size * nmemb;
    if (x->status / 100 != 2) {
        size_t room = CAIRN_REG_ERRBODY_MAX - x->errbody.len;
        cairn_buf_append(&x->errbody, data, n < room ? n : room);
        return n;
    }
    if (x->status == 206)
        x->resp->ranges = true;
    else if (x->req->range_from > 0) {
        x->sink_rc = CAIRN_E_UNSUPPORTED; /* the range was ignored */
        return 0;
    }
    if (x->req->sink) {
        int rc = x->req->sink(x->req->sink_ctx, data, n);
        if (rc) {
            x->sink_rc = rc;
            return 0;
        }
        x->resp->delivered += (int64_t)n;
        return n;
    }
    if (x->body.len + n > x->req->max_body ||
        cairn_buf_append(&x->body, data, n)) {
        x->toobig = true;
        return 0;
    }
    return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ctx)
{
    struct xfer *x = ctx;
    size_t want = size * nitems;
    if ((int64_t)want > x->left)
        want = (size_t)x->left;
    if (want == 0)
        return 0;
    if (x->mem) {
        memcpy(buf, x->mem + x->off, want);
    } else {
        ssize_t n;
        do
            n = pread(x->fd, buf, want, x->off);
        while (n < 0 && errno == EINTR);
        if (n <= 0)
            return CURL_READFUNC_ABORT;
        want = (size_t)n;
    }
    x->off += (int64_t)want;
    x->left -= (int64_t)want;
    return want;
}

static int url_make(struct cairn_reg_session *s, const char *path, char *buf,
                    size_t len)
{
    int n;
    if (strncmp(path, "http://", 7) == 0 || strncmp(path, "https://", 8) == 0)
        n = snprintf(buf, len, "%s", path);
    else
        n = snprintf(buf, len, "%s://%s%s",
                     atomic_load(&s->scheme) == SCHEME_HTTP ? "http" : "https",
                     s->host, path);
    return n < 0 || (size_t)n >= len ? CAIRN_E_TOOBIG : 0;
}

/* Runs one attempt of req on h. Returns the CURLcode; x->status is the
 * final answer's. */
static CURLcode attempt(struct cairn_reg_session *s, CURL *h,
                        const struct cairn_reg_req *req, const char *url,
                        const char *authz, struct xfer *x, char *errbuf)
{
    struct curl_slist *hl = NULL, *t;
    char line[HDR_MAX];
    CURLcode cc = CURLE_OUT_OF_MEMORY;
    for (size_t i = 0; req->headers && req->headers[i]; i++)
        if ((t = curl_slist_append(hl, req->headers[i])) == NULL)
            goto out;
        else
            hl = t;
    if (authz) {
        snprintf(line, sizeof line, "Authorization: %s", authz);
        if ((t = curl_slist_append(hl, line)) == NULL)
            goto out;
        hl = t;
    }
    if (req->range_from > 0) {
        snprintf(line, sizeof line, "Range: bytes=%lld-",
                 (long long)req->range_from);
        if ((t = curl_slist_append(hl, line)) == NULL)
            goto out;
        hl = t;
    }
    /* libcurl asks before sending a large body; registries do not need
     * the extra round trip. */
    if ((t = curl_slist_append(hl, "Expect:")) == NULL)
        goto out;
    hl = t;
    session_prepare(s, h, url, NULL);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    const char *m = req->method;
    bool has_body = req->body || req->body_fd >= 0;
    if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (has_body) {
        x->mem = req->body;
        x->fd = req->body_fd;
        x->off = req->body ? 0 : req->body_off;
        x->left = req->body_len;
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, x);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
                         (curl_off_t)req->body_len);
        if (strcmp(m, "PUT") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
    } else if (strcmp(m, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    } else if (strcmp(m, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
    }
    atomic_fetch_add(&s->requests, 1);
    cc = curl_easy_perform(h);
    /* The handle goes back to the pool: nothing may point at our stack. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
out:
    curl_slist_free_all(hl);
    return cc;
}

static bool cc_retryable(CURLcode cc)
{
    switch (cc) {
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

static void backoff_sleep(int attempt_no, int64_t retry_after_s)
{
    int64_t ms = 500LL << attempt_no;
    if (retry_after_s >= 0 && retry_after_s * 1000 > ms)
        ms = retry_after_s * 1000;
    if (ms > CAIRN_REG_RETRY_MAX_S * 1000LL)
        ms = CAIRN_REG_RETRY_MAX_S * 1000LL;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The auth header for req (NULL: none yet or no scope). */
static int authz_get(struct cairn_reg_session *s,
                     const struct cairn_reg_req *req, char **out,
                     struct cairn_err *err)
{
    *out = NULL;
    if (req->scope == NULL)
        return 0;
    pthread_mutex_lock(&s->mu);
    int rc = cairn_reg_auth_header(s->auth, req->scope, out, err);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int cc_error(struct cairn_reg_session *s,
                    const struct cairn_reg_req *req, CURLcode cc,
                    const char *errbuf, struct cairn_err *err)
{
    const char *what = req->what ? req->what : req->path;
    const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(cc);
    if (strstr(detail, "SSL") && strstr(detail, "alert"))
        return cairn_err_set(err, CAIRN_E_AUTH,
                             "%s: TLS with registry %s failed (%s); a "
                             "client certificate goes in "
                             "/etc/docker/certs.d/%s/ as client.cert and "
                             "client.key",
                             what, s->host, detail, s->host);
    if (cc == CURLE_OPERATION_TIMEDOUT)
        return cairn_err_set(err, CAIRN_E_TIMEOUT,
                             "%s: registry %s stopped answering (%s)", what,
                             s->host, detail);
    if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST)
        return cairn_err_set(err, CAIRN_E_IO,
                             "%s: cannot reach registry %s: %s", what, s->host,
                             detail);
    if (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE)
        return cairn_err_set(err, CAIRN_E_AUTH,
                             "%s: TLS certificate of %s not trusted (%s); "
                             "put its CA in /etc/docker/certs.d/%s/ca.crt",
                             what, s->host, detail, s->host);
    return cairn_err_set(err, CAIRN_E_IO, "%s: registry %s: %s", what, s->host,
                         detail);
}

/* Readies x for one attempt of req. */
static void xfer_reset(struct xfer *x, const struct cairn_reg_req *req,
                       struct cairn_reg_resp *resp)
{
    cairn_buf_reset(&x->body);
    cairn_buf_reset(&x->errbody);
    x->req = req;
    x->resp = resp;
    x->status = 0;
    x->sink_rc = 0;
    x->toobig = false;
    x->retry_after_s = -1;
}

/* What the receiving side of an attempt refused: the sink's error, an
 * ignored range, a body past req->max_body. 0 when none. */
static int xfer_check(struct cairn_reg_session *s,
                      const struct cairn_reg_req *req, const struct xfer *x,
                      struct cairn_err *err)
{
    if (x->sink_rc == CAIRN_E_UNSUPPORTED && req->range_from > 0 &&
        x->status == 200)
        return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                             "%s: registry %s ignored the range",
                             req->what ? req->what : req->path, s->host);
    if (x->sink_rc)
        return x->sink_rc;
    if (x->toobig)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "%s: answer from %s over %zu bytes",
                             req->what ? req->what : req->path, s->host,
                             req->max_body);
    return 0;
}

/* The final answer (no retry left to make): a success hands the body to
 * resp, anything else becomes the registry's error. tls_err: why TLS
 * failed before the plain-HTTP fallback ("" when it did not). */
static int answer_finish(struct cairn_reg_session *s,
                         const struct cairn_reg_req *req,
                         struct cairn_reg_resp *resp, struct xfer *x,
                         const char *tls_err, struct cairn_err *err)
{
    long st = x->status;
    resp->status = st;
    if (st / 100 == 2 || (req->ok_status && st == req->ok_status)) {
        if (!req->sink && st / 100 == 2) {
            resp->body_len = x->body.len;
            if ((resp->body = cairn_buf_take(&x->body)) == NULL)
                return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        }
        return 0;
    }
    /* The fallback met a TLS server after all (TLS failed for
     * another reason, e.g. a client certificate it wants): say so. */
    if (tls_err[0] && st == 400 && x->errbody.data &&
        strstr(x->errbody.data, "HTTP request to an HTTPS server"))
        return cairn_err_set(err, CAIRN_E_IO,
                             "%s: TLS with registry %s failed: %s",
                             req->what ? req->what : req->path, s->host,
                             tls_err);
    return cairn_reg_error_decode(s->host, st, x->errbody.data,
                                  x->errbody.len,
                                  req->what ? req->what : req->path, err);
}

int cairn_reg_request(struct cairn_reg_session *s,
                      const struct cairn_reg_req *req,
                      struct cairn_reg_resp *resp, struct cairn_err *err)
{
    memset(resp, 0, sizeof *resp);
    resp->content_length = -1;
    char *url = malloc(URL_MAX);
    char errbuf[CURL_ERROR_SIZE];
    CURL *h = handle_get(s);
    struct xfer x;
    memset(&x, 0, sizeof x);
    cairn_buf_init(&x.body, req->max_body + 1);
    cairn_buf_init(&x.errbody, CAIRN_REG_ERRBODY_MAX + 1);
    char *authz = NULL;
    int rc = 0, tries = 0;
    bool auth_retried = false;
    char tls_err[CURL_ERROR_SIZE] = ""; /* why TLS failed before HTTP */
    if (url == NULL || h == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        if ((rc = url_make(s, req->path, url, URL_MAX))) {
            cairn_err_set(err, rc, "URL for %s too long", req->path);
            goto out;
        }
        free(authz);
        if ((rc = authz_get(s, req, &authz, err)))
            goto out;
        xfer_reset(&x, req, resp);
        errbuf[0] = '\0';
        CURLcode cc = attempt(s, h, req, url, authz, &x, errbuf);
        if ((rc = xfer_check(s, req, &x, err)))
            goto out;
        /* A loopback or insecure registry that does not speak TLS. */
        if (cc == CURLE_SSL_CONNECT_ERROR && s->plain_ok &&
            atomic_load(&s->scheme) == SCHEME_UNKNOWN &&
            strncmp(url, "https://", 8) == 0 &&
            strncmp(req->path, "https://", 8) != 0) {
            atomic_store(&s->scheme, SCHEME_HTTP);
            snprintf(tls_err, sizeof tls_err, "%s",
                     errbuf[0] ? errbuf : curl_easy_strerror(cc));
            continue;
        }
        if (cc == CURLE_OK && strncmp(url, "https://", 8) == 0)
            atomic_store(&s->scheme, SCHEME_HTTPS);
        /* A TLS alert (with TLS 1.3 a refused client certificate shows
         * on the first read) will not go away by asking again. */
        bool tls_alert = strstr(errbuf, "SSL") && strstr(errbuf, "alert");
        if (cc != CURLE_OK) {
            if (cc_retryable(cc) && !tls_alert && resp->delivered == 0 &&
                tries < CAIRN_REG_RETRIES) {
                backoff_sleep(tries++, -1);
                continue;
            }
            rc = cc_error(s, req, cc, errbuf, err);
            goto out;
        }
        long st = x.status;
        if (st == 401 && req->scope && !auth_retried && x.challenge[0]) {
            auth_retried = true;
            pthread_mutex_lock(&s->mu);
            rc =
                cairn_reg_auth_challenge(s->auth, x.challenge, req->scope, err);
            pthread_mutex_unlock(&s->mu);
            if (rc)
                goto out;
            continue;
        }
        if ((st == 429 || st >= 500) && tries < CAIRN_REG_RETRIES &&
            resp->delivered == 0) {
            backoff_sleep(tries++, x.retry_after_s);
            continue;
        }
        rc = answer_finish(s, req, resp, &x, tls_err, err);
        goto out;
    }
out:
    if (rc) {
        int64_t d = resp->delivered;
        bool r = resp->ranges;
        cairn_reg_resp_clear(resp);
        resp->delivered = d;
        resp->ranges = r;
    }
    free(authz);
    free(url);
    cairn_buf_free(&x.body);
    cairn_buf_free(&x.errbody);
    if (h)
        handle_put(s, h);
    return rc;
}
