#include "client/remote/cache.h"

#include "cachekey/digest.h"
#include "client/store/layer.h"
#include "client/remote/remote.h"
#include "client/remote/sign.h"
#include "common/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CACHE_LOOKUP_THREADS 8
#define CACHE_MAX_URL 512

struct endpoint {
    char url[CACHE_MAX_URL];
    char instance[256];
    struct cairn_remote *r;
    bool down;     /* guarded by cache->mu after the probe */
    bool writable; /* readwrite mode and update_enabled */
    int64_t max_batch;
    /* The keys trust gives this endpoint (sign.h); with any, only entries
     * signed by one of them are hits. Owned. */
    struct cairn_sign_pub *trust;
    size_t ntrust;
};

struct upload_job {
    struct upload_job *next;
    char key_hex[CK_SHA256_HEX_LEN + 1];
    uint8_t *material;
    size_t material_len;
    struct cairn_layer_rec rec;
    struct cairn_store *st;
    bool check; /* an offer: upload only when the cache lacks it */
};

struct cairn_cache {
    struct endpoint *eps;
    size_t neps;
    bool read_only;
    pthread_mutex_t probe_mu; /* guards probed and the prober */
    bool probed;
    bool probing; /* prober runs (cairn_cache_probe_start) */
    pthread_t prober;
    int64_t max_layer; /* blob bytes; the tar may be TAR_FACTOR times more */
    int64_t claim_ttl_ms; /* cfg's cache-claim-ttl: -1 off, 0 default */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct cairn_sign_key *sign_key; /* sign-key; the uploader's alone */
    /* The entry read ahead (cairn_cache_entry_prefetch), guarded by mu:
     * wanted until the lookup batch reads it, then done until taken. */
    struct {
        bool wanted, done;
        struct cairn_remote_digest action;
        int rc;
        struct cairn_err err;
        struct cairn_remote_result *res; /* owned */
    } ahead;
    struct upload_job *head, *tail;
    bool uploader_running, stopping;
    unsigned busy; /* jobs queued or in progress */
    pthread_t uploader;
    struct cairn_cache_stats stats;
    struct cairn_cache *left_next; /* cairn_cache_leave's list */
};

static void warn(struct cairn_cache *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Warnings go to stderr in one write each, under the lock, so lines from
 * the uploader and the lookup threads never interleave. */
static void warn(struct cairn_cache *c, const char *fmt, ...)
{
    char line[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&c->mu);
    fprintf(stderr, "cairn: warning: %s\n", line);
    pthread_mutex_unlock(&c->mu);
}

int cairn_cache_url_parse(const char *url, char *target, size_t tlen,
                          char *instance, size_t ilen, bool *tls,
                          struct cairn_err *err)
{
    const char *rest;
    if (strncmp(url, "grpc://", 7) == 0) {
        *tls = false;
        rest = url + 7;
    } else if (strncmp(url, "grpcs://", 8) == 0) {
        *tls = true;
        rest = url + 8;
    } else {
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "cache URL \"%s\": expected grpc://host:port"
                             "[/instance] or grpcs://...",
                             url);
    }
    const char *slash = strchr(rest, '/');
    size_t hl = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *colon = memchr(rest, ':', hl);
    if (hl == 0 || colon == NULL || colon == rest || colon + 1 == rest + hl ||
        hl >= tlen)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "cache URL \"%s\": needs host:port", url);
    for (const char *p = colon + 1; p < rest + hl; p++)
        if (*p < '0' || *p > '9')
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "cache URL \"%s\": bad port", url);
    memcpy(target, rest, hl);
    target[hl] = '\0';
    const char *inst = slash ? slash + 1 : "";
    size_t il = strlen(inst);
    while (il > 0 && inst[il - 1] == '/')
        il--;
    if (il >= ilen || il >= 256 || strstr(inst, "//") != NULL)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "cache URL \"%s\": bad instance name", url);
    /* Reserved path segments would make the resource names ambiguous. */
    static const char *const reserved[] = {"blobs", "uploads", "actions",
                                           "actionResults", "operations",
                                           "capabilities", "compressed-blobs"};
    char segs[256];
    memcpy(segs, inst, il);
    segs[il] = '\0';
    char *save = NULL;
    for (char *seg = strtok_r(segs, "/", &save); seg;
         seg = strtok_r(NULL, "/", &save))
        for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
            if (strcmp(seg, reserved[i]) == 0)
                return cairn_err_set(err, CAIRN_E_INVAL,
                                     "cache URL \"%s\": instance uses the "
                                     "reserved name \"%s\"",
                                     url, reserved[i]);
    memcpy(instance, inst, il);
    instance[il] = '\0';
    return 0;
}

/* Loads the sign-key and gives each endpoint the trusted keys whose
 * scope covers it. */
static int cache_keys_setup(struct cairn_cache *c,
                            const struct cairn_config *cfg,
                            struct cairn_err *err)
{
    int rc = 0;
    if (cfg->sign_key != NULL && cfg->sign_key[0] != '\0')
        rc = cairn_sign_key_load(cfg->sign_key, &c->sign_key, err);
    for (size_t i = 0; !rc && i < c->neps; i++) {
        struct endpoint *e = &c->eps[i];
        e->trust = calloc(cfg->trust.n + 1, sizeof *e->trust);
        if (e->trust == NULL)
            return CAIRN_E_NOMEM;
        for (size_t t = 0; !rc && t < cfg->trust.n; t++) {
            char scope[512];
            rc = cairn_sign_trust_parse(cfg->trust.v[t], scope, sizeof scope,
                                        &e->trust[e->ntrust], err);
            if (!rc && cairn_sign_trust_covers(scope, e->url, e->instance))
                e->ntrust++;
        }
    }
    return rc;
}

int cairn_cache_open(const struct cairn_config *cfg, struct cairn_cache **out,
                     struct cairn_err *err)
{
    if (cfg->urls.n == 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "no cache URL");
    struct cairn_cache *c = calloc(1, sizeof *c);
    if (c == NULL || (c->eps = calloc(cfg->urls.n, sizeof *c->eps)) == NULL) {
        free(c);
        return CAIRN_E_NOMEM;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->probe_mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->read_only = cfg->read_only;
    c->max_layer = cfg->max_layer > 0 ? cfg->max_layer : CAIRN_CONFIG_MAX_LAYER;
    c->claim_ttl_ms = cfg->claim_ttl_ms;
    int rc = 0;
    for (size_t i = 0; !rc && i < cfg->urls.n; i++) {
        struct endpoint *e = &c->eps[i];
        char target[256];
        bool tls = false;
        rc = cairn_cache_url_parse(cfg->urls.v[i], target, sizeof target,
                                   e->instance, sizeof e->instance, &tls, err);
        if (rc)
            break;
        snprintf(e->url, sizeof e->url, "%s", cfg->urls.v[i]);
        struct cairn_remote_opts ro = {
            .target = target,
            .tls = tls,
            .ca_file = cfg->ca_file,
            .token = cfg->token,
            .timeout_ms = cfg->timeout_ms,
            .min_rate = cfg->min_rate > 0 ? cfg->min_rate
                                          : CAIRN_CONFIG_MIN_RATE,
        };
        rc = cairn_remote_open(&ro, &e->r, err);
        if (!rc)
            c->neps++;
    }
    if (!rc)
        rc = cache_keys_setup(c, cfg, err);
    if (rc) {
        cairn_cache_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* ---- placement ---------------------------------------------------------- */

/* Rendezvous (highest random weight) hashing: each endpoint scores
 * sha256(url NUL key); the highest wins. Adding or removing an endpoint
 * moves only the keys that it wins or won. */
static struct endpoint *pick(struct cairn_cache *c, const char *key_hex)
{
    struct endpoint *best = NULL;
    uint64_t best_score = 0;
    for (size_t i = 0; i < c->neps; i++) {
        struct cairn_buf b;
        cairn_buf_init(&b, 0);
        cairn_buf_puts(&b, c->eps[i].url);
        cairn_buf_putc(&b, '\0');
        cairn_buf_puts(&b, key_hex);
        uint8_t h[CK_SHA256_LEN];
        ck_sha256(b.data ? b.data : "", b.len, h);
        cairn_buf_free(&b);
        uint64_t score = 0;
        for (int k = 0; k < 8; k++)
            score = score << 8 | h[k];
        if (best == NULL || score > best_score) {
            best = &c->eps[i];
            best_score = score;
        }
    }
    return best;
}

static bool ep_down(struct cairn_cache *c, struct endpoint *e)
{
    pthread_mutex_lock(&c->mu);
    bool d = e->down;
    pthread_mutex_unlock(&c->mu);
    return d;
}

int cairn_cache_claim_target(struct cairn_cache *c, const char *key_hex,
                             struct cairn_cache_target *out)
{
    struct endpoint *e = pick(c, key_hex);
    pthread_mutex_lock(&c->probe_mu);
    bool probed = c->probed;
    pthread_mutex_unlock(&c->probe_mu);
    if (c->claim_ttl_ms < 0 || !probed || ep_down(c, e) || !e->writable)
        return CAIRN_E_NOTFOUND;
    out->r = e->r;
    out->instance = e->instance;
    out->url = e->url;
    out->ttl_ms = c->claim_ttl_ms > 0 ? c->claim_ttl_ms : CAIRN_CONFIG_CLAIM_TTL;
    return 0;
}

/* A transport failure (down, timeout) takes the endpoint out for the rest
 * of the build with one warning; other failures concern one step. */
static void ep_failed(struct cairn_cache *c, struct endpoint *e, int rc,
                      const struct cairn_err *err, const char *what)
{
    if (rc == CAIRN_E_RPC || rc == CAIRN_E_TIMEOUT || rc == CAIRN_E_AUTH) {
        pthread_mutex_lock(&c->mu);
        bool was = e->down;
        e->down = true;
        pthread_mutex_unlock(&c->mu);
        if (!was)
            warn(c, "cache %s unusable (%s): %s; its steps run locally",
                 e->url, what, err->msg[0] ? err->msg : cairn_strerror(rc));
        return;
    }
    warn(c, "cache %s: %s: %s", e->url, what,
         err->msg[0] ? err->msg : cairn_strerror(rc));
}

static void *probe_thread(void *arg)
{
    void **a = arg;
    struct cairn_cache *c = a[0];
    struct endpoint *e = a[1];
    struct cairn_remote_caps caps;
    struct cairn_err err;
    cairn_err_clear(&err);
    int rc = cairn_remote_capabilities(e->r, e->instance, &caps, &err);
    if (rc) {
        ep_failed(c, e, rc == CAIRN_E_UNSUPPORTED ? CAIRN_E_RPC : rc, &err,
                  "capabilities");
        return NULL;
    }
    if (!caps.sha256) {
        pthread_mutex_lock(&c->mu);
        e->down = true;
        pthread_mutex_unlock(&c->mu);
        warn(c, "cache %s does not offer SHA256 digests; not used", e->url);
        return NULL;
    }
    e->max_batch = caps.max_batch > 0 ? caps.max_batch : (1 << 20);
    e->writable = !c->read_only && caps.update_enabled;
    if (!c->read_only && !caps.update_enabled)
        fprintf(stderr, "cairn: cache %s is read-only for this client; no "
                        "uploads\n",
                e->url);
    return NULL;
}

static void probe_run(struct cairn_cache *c)
{
    /* One endpoint (the usual case): probed on this thread, not on one
     * more. */
    if (c->neps == 1) {
        void *a[2] = {c, &c->eps[0]};
        probe_thread(a);
        return;
    }
    pthread_t *t = calloc(c->neps, sizeof *t);
    void *(*args)[2] = calloc(c->neps, sizeof *args);
    bool *started = calloc(c->neps, sizeof *started);
    for (size_t i = 0; t && args && started && i < c->neps; i++) {
        args[i][0] = c;
        args[i][1] = &c->eps[i];
        started[i] = pthread_create(&t[i], NULL, probe_thread, args[i]) == 0;
        if (!started[i])
            probe_thread(args[i]);
    }
    for (size_t i = 0; t && args && started && i < c->neps; i++)
        if (started[i])
            pthread_join(t[i], NULL);
    free(t);
    free(args);
    free(started);
}

static void *prober_thread(void *arg)
{
    probe_run(arg);
    return NULL;
}

void cairn_cache_probe_start(struct cairn_cache *c)
{
    pthread_mutex_lock(&c->probe_mu);
    if (!c->probed && !c->probing)
        c->probing = pthread_create(&c->prober, NULL, prober_thread, c) == 0;
    pthread_mutex_unlock(&c->probe_mu);
}

/* The probe's answers, once: waits for the prober, or probes here. */
static void probe_all(struct cairn_cache *c)
{
    pthread_mutex_lock(&c->probe_mu);
    if (!c->probed) {
        if (c->probing)
            pthread_join(c->prober, NULL);
        else
            probe_run(c);
        c->probing = false;
        c->probed = true;
    }
    pthread_mutex_unlock(&c->probe_mu);
}

/* Waits for the probe: whether e is usable (not taken out by it). */
static bool probe_usable(struct cairn_cache *c, struct endpoint *e)
{
    probe_all(c);
    return !ep_down(c, e);
}

/* ---- the layer record in an action result ------------------------------- */

/* The `layer` output file and its node properties (docs/remote.md). */
#define CACHE_FILE "layer"
#define CACHE_PROP_MEDIA "cairn.media_type"
#define CACHE_PROP_DIFF "cairn.diff_id"
#define CACHE_PROP_EMPTY "cairn.empty"
/* sha256 of no bytes: the blob every REAPI server has. */
#define CACHE_EMPTY_HASH                                                      \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const char *layer_media_type(const char *s)
{
    static const char *const known[] = {CAIRN_MEDIA_LAYER_GZIP,
                                        CAIRN_MEDIA_LAYER_ZSTD,
                                        CAIRN_MEDIA_LAYER_TAR};
    for (size_t i = 0; s && i < sizeof known / sizeof known[0]; i++)
        if (strcmp(s, known[i]) == 0)
            return known[i];
    return NULL;
}

static bool is_digest(const char *s)
{
    if (s == NULL || strncmp(s, "sha256:", 7) != 0 || strlen(s) != 71)
        return false;
    uint8_t bin[CK_SHA256_LEN];
    return ck_hex_decode(s + 7, bin) == 0;
}

static const char *prop_get(const struct cairn_remote_file *f,
                            const char *name)
{
    for (size_t i = 0; i < f->nprops; i++)
        if (strcmp(f->props[i].name, name) == 0)
            return f->props[i].value;
    return NULL;
}

int cairn_cache_result_parse(const struct cairn_remote_result *res,
                             struct cairn_layer_rec *out,
                             struct cairn_err *err)
{
    const struct cairn_remote_file *f = NULL;
    for (size_t i = 0; i < res->nfiles; i++)
        if (strcmp(res->files[i].path, CACHE_FILE) == 0)
            f = &res->files[i];
    const char *mt = f ? prop_get(f, CACHE_PROP_MEDIA) : NULL;
    const char *di = f ? prop_get(f, CACHE_PROP_DIFF) : NULL;
    const char *em = f ? prop_get(f, CACHE_PROP_EMPTY) : NULL;
    if (res->exit_code != 0 || (mt == NULL && di == NULL && em == NULL))
        return CAIRN_E_NOTFOUND;
    struct cairn_layer_rec rec;
    memset(&rec, 0, sizeof rec);
    if (em != NULL) {
        if (strcmp(em, "true") != 0 || mt != NULL || di != NULL ||
            f->digest.size != 0 || strcmp(f->digest.hash, CACHE_EMPTY_HASH) != 0)
            return cairn_err_set(err, CAIRN_E_CORRUPT,
                                 "empty step with a layer");
        rec.empty = true;
        *out = rec;
        return 0;
    }
    rec.layer.media_type = layer_media_type(mt);
    if (rec.layer.media_type == NULL || !is_digest(di) || f->digest.size <= 0)
        return cairn_err_set(err, CAIRN_E_CORRUPT,
                             "bad layer record (media type, diff_id, size)");
    snprintf(rec.layer.digest, sizeof rec.layer.digest, "sha256:%s",
             f->digest.hash);
    snprintf(rec.layer.diff_id, sizeof rec.layer.diff_id, "%s", di);
    rec.layer.size = f->digest.size;
    *out = rec;
    return 0;
}

void cairn_cache_result_make(const struct cairn_layer_rec *rec,
                             struct cairn_remote_result *res)
{
    memset(res, 0, sizeof *res);
    struct cairn_remote_file *f = &res->files[0];
    res->nfiles = 1;
    snprintf(f->path, sizeof f->path, CACHE_FILE);
    if (rec->empty) {
        snprintf(f->digest.hash, sizeof f->digest.hash, CACHE_EMPTY_HASH);
        f->digest.size = 0;
        snprintf(f->props[0].name, sizeof f->props[0].name, CACHE_PROP_EMPTY);
        snprintf(f->props[0].value, sizeof f->props[0].value, "true");
        f->nprops = 1;
        return;
    }
    snprintf(f->digest.hash, sizeof f->digest.hash, "%s",
             rec->layer.digest + 7);
    f->digest.size = rec->layer.size;
    /* Sorted by name, as REAPI asks of node properties. */
    snprintf(f->props[0].name, sizeof f->props[0].name, CACHE_PROP_DIFF);
    snprintf(f->props[0].value, sizeof f->props[0].value, "%s",
             rec->layer.diff_id);
    snprintf(f->props[1].name, sizeof f->props[1].name, CACHE_PROP_MEDIA);
    snprintf(f->props[1].value, sizeof f->props[1].value, "%s",
             rec->layer.media_type);
    f->nprops = 2;
}

/* ---- signatures (sign.h) ------------------------------------------------ */

/* Every entry cairn writes goes through entry_sign and every entry it
 * reads through entry_check, whatever its kind. */

/* Signs res for e when a sign-key is set (the uploader's thread only). */
static int entry_sign(struct cairn_cache *c, const struct endpoint *e,
                      const struct cairn_remote_digest *action,
                      struct cairn_remote_result *res, struct cairn_err *err)
{
    if (c->sign_key == NULL)
        return 0;
    return cairn_sign_result(c->sign_key, e->instance, action, res, err);
}

/* With trust for e, res must carry a signature by one of its keys:
 * CAIRN_E_CRYPTO with the reason otherwise. */
static int entry_check(const struct endpoint *e,
                       const struct cairn_remote_digest *action,
                       const struct cairn_remote_result *res,
                       struct cairn_err *err)
{
    if (e->ntrust == 0)
        return 0;
    return cairn_sign_result_verify(e->trust, e->ntrust, e->instance, action,
                                    res, err);
}

/* ---- lookups and fetches ------------------------------------------------ */

static void add_down(struct cairn_cache *c, uint64_t n)
{
    pthread_mutex_lock(&c->mu);
    c->stats.bytes_down += n;
    pthread_mutex_unlock(&c->mu);
}

/* A download goes to the temporary file and, through a socket pair, to
 * a thread that verifies it as it streams (cairn_layer_verify_fd: media
 * type, entries, digests, caps), so the blob is decompressed once, while
 * it arrives, and a hostile one stops the download at its first bad
 * byte or entry. A small one is verified from the file after it
 * (FETCH_VERIFY_AFTER_MAX). */
struct fetch_sink {
    int fd;   /* the temporary file */
    int sock; /* to the verifier; -1 when it could not start */
    bool verifier_gone;
    int write_errno; /* the file could not be written (ENOSPC, EIO) */
    uint64_t written, started; /* bytes in fd; of those, sent to the disk */
};

/* A fetched blob is fsync'd before its rename (cairn_store_blob_add_file);
 * starting the write-back of each FETCH_WRITEBACK bytes as they arrive
 * leaves that fsync little to wait for, where a whole 64 MB layer would
 * otherwise go to the disk only then. A hint: its errors are the fsync's
 * to report. */
#define FETCH_WRITEBACK ((uint64_t)8 << 20)

static int fetch_write(void *arg, const void *data, size_t len)
{
    struct fetch_sink *f = arg;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(f->fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            f->write_errno = errno;
            return -errno;
        }
        p += n;
        left -= (size_t)n;
    }
    f->written += len;
    if (f->written - f->started >= FETCH_WRITEBACK) {
        (void)sync_file_range(f->fd, (off64_t)f->started,
                              (off64_t)(f->written - f->started),
                              SYNC_FILE_RANGE_WRITE);
        f->started = f->written;
    }
    for (p = data, left = len; f->sock >= 0 && left > 0;) {
        /* MSG_NOSIGNAL: a verifier that stopped early (it refused the
         * blob) closes its end; that is EPIPE here, not a SIGPIPE. */
        ssize_t n = send(f->sock, p, left, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            f->verifier_gone = true;
            return CAIRN_E_CORRUPT;
        }
        p += n;
        left -= (size_t)n;
    }
    return 0;
}

struct verifier {
    int fd; /* owned: closed when the verification ends */
    struct cairn_layer_expect want;
    int rc;
    struct cairn_err err;
};

/* A layer up to this size is verified from its file once it is down, on
 * the fetching thread: the same checks, but no thread, socket pair and
 * copy through it for a blob whose download and check take less time
 * than starting them (a fresh build's small layers; the download is
 * capped at the digest's size, so a hostile one costs at most this). */
#define FETCH_VERIFY_AFTER_MAX ((int64_t)1 << 20)

static void *verifier_thread(void *arg)
{
    struct verifier *v = arg;
    v->rc = cairn_layer_verify_fd(v->fd, &v->want, &v->err);
    close(v->fd);
    v->fd = -1;
    return NULL;
}

/* Downloads the layer blob rec names into st (unless there) and checks,
 * before the hit counts, that it is the layer rec claims and one the
 * unpacker accepts (cairn_layer_verify_fd). A blob already in the store
 * is checked too: the result may pair it with another diff_id or media
 * type. Nothing is left behind on failure (ENOSPC included): the
 * temporary file is removed and the key is not recorded. */
static int fetch_layer(struct cairn_cache *c, struct endpoint *e,
                       struct cairn_store *st,
                       const struct cairn_layer_rec *rec, struct cairn_err *err)
{
    struct cairn_remote_digest dg;
    snprintf(dg.hash, sizeof dg.hash, "%s", rec->layer.digest + 7);
    dg.size = rec->layer.size;
    struct verifier v = {
        .fd = -1,
        .want = {.digest = rec->layer.digest,
                 .diff_id = rec->layer.diff_id,
                 .media_type = rec->layer.media_type,
                 .size = rec->layer.size,
                 .max_tar = c->max_layer * CAIRN_CONFIG_TAR_FACTOR},
    };
    cairn_err_clear(&v.err);
    char path[4096];
    int rc = 0;
    if (cairn_store_blob_has(st, rec->layer.digest)) {
        cairn_store_blob_path(st, rec->layer.digest, path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
        rc = cairn_layer_verify_fd(fd, &v.want, err);
        close(fd);
        return rc;
    }
    snprintf(path, sizeof path, "%s/remote-XXXXXX", cairn_store_tmpdir(st));
    int fd = mkstemp(path);
    if (fd < 0)
        return cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
    struct fetch_sink fs = {.fd = fd, .sock = -1};
    int sv[2];
    pthread_t th;
    bool threaded = false;
    if (rec->layer.size > FETCH_VERIFY_AFTER_MAX &&
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
        v.fd = sv[1];
        threaded = pthread_create(&th, NULL, verifier_thread, &v) == 0;
        if (threaded) {
            fs.sock = sv[0];
        } else {
            close(sv[0]);
            close(sv[1]);
        }
    }
    int64_t got = 0;
    rc = cairn_remote_read(e->r, e->instance, &dg, fetch_write, &fs, &got,
                           err);
    add_down(c, (uint64_t)got);
    if (fs.write_errno != 0)
        cairn_err_set(err, rc, "writing the layer %s to %s: %s",
                      rec->layer.digest, path, strerror(fs.write_errno));
    if (threaded) {
        /* End of stream for the verifier, then its verdict. */
        shutdown(fs.sock, SHUT_WR);
        pthread_join(th, NULL);
        close(fs.sock);
        /* The verifier's reason wins when it stopped the download, or
         * when the download itself went through; a broken download's own
         * error says more than the truncation the verifier saw. */
        if (fs.verifier_gone || (rc == 0 && v.rc != 0)) {
            rc = v.rc != 0 ? v.rc : CAIRN_E_CORRUPT;
            cairn_err_set(err, rc, "%s", v.err.msg);
        }
    }
    if (close(fd) != 0 && !rc)
        rc = cairn_err_set(err, -errno, "writing the layer to %s: %s", path,
                           strerror(errno));
    if (!rc && !threaded) {
        int rfd = open(path, O_RDONLY | O_CLOEXEC);
        if (rfd < 0) {
            rc = cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
        } else {
            rc = cairn_layer_verify_fd(rfd, &v.want, err);
            close(rfd);
        }
    }
    if (!rc)
        rc = cairn_store_blob_add_file(st, path, rec->layer.digest, err);
    if (rc)
        unlink(path);
    return rc;
}

static int lookup_one(struct cairn_cache *c, struct cairn_store *st,
                      struct cairn_cache_step *s, struct endpoint *e,
                      struct cairn_err *err)
{
    struct cairn_remote_digest action;
    snprintf(action.hash, sizeof action.hash, "%s", s->key_hex);
    action.size = (int64_t)s->material_len;
    struct cairn_remote_result *res = calloc(1, sizeof *res);
    if (res == NULL)
        return CAIRN_E_NOMEM;
    struct cairn_layer_rec rec;
    int rc = cairn_remote_ac_get(e->r, e->instance, &action, res, err);
    /* The lookup went out beside the probe (it may open the connection
     * with it): its answer counts only once the probe found the endpoint
     * usable; the probe's warning says why when it did not. */
    if (!probe_usable(c, e))
        rc = CAIRN_E_NOTFOUND;
    if (!rc)
        rc = cairn_cache_result_parse(res, &rec, err);
    /* With trust configured, an entry no trusted key signed is a miss
     * before anything of it is used; --explain says why. */
    if (!rc && (rc = entry_check(e, &action, res, err)) != 0)
        snprintf(s->refused, sizeof s->refused, "%.255s", err->msg);
    /* Before a byte of it is read: a layer over the cap is a miss. */
    if (!rc && !rec.empty && rec.layer.size > c->max_layer)
        rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                           "its layer %s claims %lld bytes, over the "
                           "cache-max-layer cap of %lld; the step runs",
                           rec.layer.digest, (long long)rec.layer.size,
                           (long long)c->max_layer);
    /* An empty step has no blob to wait for: its record is complete. It
     * rides along with the build's next commit (no flush of its own). */
    const struct cairn_layer_rec *recp = &rec;
    if (!rc && rec.empty)
        rc = cairn_store_key_put_later(st, &s->key_hex, &recp, 1, err);
    if (!rc)
        s->rec = rec;
    free(res);
    return rc;
}

/* Runs fn(arg, i) for i in [0, n) on up to CACHE_LOOKUP_THREADS threads,
 * this one among them: it would only wait for the others otherwise (a
 * thread fewer to start and join per batch). */
struct pool {
    struct cairn_cache *c;
    size_t n;
    size_t next; /* guarded by c->mu */
    void (*fn)(void *arg, size_t i);
    void *arg;
};

static void *pool_thread(void *arg)
{
    struct pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->c->mu);
        size_t i = p->next++;
        pthread_mutex_unlock(&p->c->mu);
        if (i >= p->n)
            break;
        p->fn(p->arg, i);
    }
    return NULL;
}

static void pool_run(struct cairn_cache *c, size_t n,
                     void (*fn)(void *arg, size_t i), void *arg)
{
    if (n == 0)
        return;
    struct pool p = {.c = c, .n = n, .fn = fn, .arg = arg};
    size_t nt = n < CACHE_LOOKUP_THREADS ? n : CACHE_LOOKUP_THREADS;
    pthread_t t[CACHE_LOOKUP_THREADS];
    size_t started = 0;
    for (size_t i = 1; i < nt; i++)
        if (pthread_create(&t[started], NULL, pool_thread, &p) == 0)
            started++;
    pool_thread(&p);
    for (size_t i = 0; i < started; i++)
        pthread_join(t[i], NULL);
}

struct lookup_ctx {
    struct cairn_cache *c;
    struct cairn_store *st;
    struct cairn_cache_step *steps;
    size_t n; /* steps */
    /* Layers a lookup thread fetches or fetched (guarded by c->mu): a
     * second step with the same layer leaves it to cairn_cache_fetch,
     * which then only checks the blob, rather than download it twice. */
    const char **taken;
    size_t ntaken;
};

static bool fetch_step(struct cairn_cache *c, struct cairn_store *st,
                       struct cairn_cache_step *s);

/* A hit's layer fetched by its lookup thread (fetch_on_hit), unless
 * another step of the batch took the same layer, or it is big: a small
 * layer's fetch is a round trip that the build would wait for; a big
 * one's time is its bytes, which would only compete with the lookups
 * still in flight on the same connection (on a slow link a lookup could
 * then miss its deadline), so big ones wait for cairn_cache_fetch. */
#define CACHE_FETCH_ON_HIT_MAX (1 << 20)
static void lookup_fetch(struct lookup_ctx *l, struct cairn_cache_step *s)
{
    if (!s->fetch_on_hit || s->rec.empty || l->taken == NULL ||
        s->rec.layer.size > CACHE_FETCH_ON_HIT_MAX)
        return;
    bool mine = true;
    pthread_mutex_lock(&l->c->mu);
    for (size_t k = 0; k < l->ntaken && mine; k++)
        mine = strcmp(l->taken[k], s->rec.layer.digest) != 0;
    if (mine)
        l->taken[l->ntaken++] = s->rec.layer.digest;
    pthread_mutex_unlock(&l->c->mu);
    if (mine)
        fetch_step(l->c, l->st, s);
}

static void lookup_item(void *arg, size_t i)
{
    struct lookup_ctx *l = arg;
    struct cairn_cache *c = l->c;
    struct cairn_cache_step *s = &l->steps[i];
    struct endpoint *e = pick(c, s->key_hex);
    if (ep_down(c, e))
        return;
    struct cairn_err err;
    cairn_err_clear(&err);
    int rc = lookup_one(c, l->st, s, e, &err);
    if (rc == 0) {
        s->hit = true;
        pthread_mutex_lock(&c->mu);
        c->stats.remote_hits++;
        pthread_mutex_unlock(&c->mu);
        lookup_fetch(l, s);
    } else if (rc != CAIRN_E_NOTFOUND) {
        char what[100];
        snprintf(what, sizeof what, "step key %.12s refused", s->key_hex);
        ep_failed(c, e, rc, &err, what);
    }
}

void cairn_cache_entry_prefetch(struct cairn_cache *c,
                                const struct cairn_remote_digest *action)
{
    pthread_mutex_lock(&c->mu);
    free(c->ahead.res);
    c->ahead.res = NULL;
    c->ahead.done = false;
    c->ahead.wanted = true;
    c->ahead.action = *action;
    pthread_mutex_unlock(&c->mu);
}

/* The entry read ahead, on a lookup thread. */
static void ahead_read(struct cairn_cache *c)
{
    pthread_mutex_lock(&c->mu);
    struct cairn_remote_digest action = c->ahead.action;
    pthread_mutex_unlock(&c->mu);
    struct cairn_remote_result *res = calloc(1, sizeof *res);
    struct cairn_err err;
    cairn_err_clear(&err);
    struct endpoint *e = pick(c, action.hash);
    int rc = res == NULL ? CAIRN_E_NOMEM
             : e == NULL || ep_down(c, e)
                 ? CAIRN_E_NOTFOUND
                 : cairn_remote_ac_get(e->r, e->instance, &action, res, &err);
    if (e != NULL && !probe_usable(c, e))
        rc = CAIRN_E_NOTFOUND; /* as lookup_one */
    pthread_mutex_lock(&c->mu);
    c->ahead.rc = rc;
    c->ahead.err = err;
    c->ahead.res = res;
    c->ahead.done = true;
    pthread_mutex_unlock(&c->mu);
}

/* Takes the answer read ahead for action, if there is one: true with
 * *rc (and *out on success). */
static bool ahead_take(struct cairn_cache *c,
                       const struct cairn_remote_digest *action,
                       struct cairn_remote_result *out, int *rc,
                       struct cairn_err *err)
{
    pthread_mutex_lock(&c->mu);
    bool mine = c->ahead.done && c->ahead.res != NULL &&
                c->ahead.action.size == action->size &&
                strcmp(c->ahead.action.hash, action->hash) == 0;
    if (mine) {
        *rc = c->ahead.rc;
        *err = c->ahead.err;
        if (*rc == 0)
            *out = *c->ahead.res;
        free(c->ahead.res);
        c->ahead.res = NULL;
        c->ahead.done = false;
    }
    pthread_mutex_unlock(&c->mu);
    return mine;
}

/* Items [0, n) are steps; item n, when there is one, the entry read
 * ahead. */
static void lookup_or_ahead(void *arg, size_t i)
{
    struct lookup_ctx *l = arg;
    if (i < l->n)
        lookup_item(arg, i);
    else
        ahead_read(l->c);
}

void cairn_cache_lookup(struct cairn_cache *c, struct cairn_store *st,
                        struct cairn_cache_step *steps, size_t n)
{
    /* No wait for the probe here: each lookup waits for it after its
     * call went out, so the probe's round trip and the lookups' overlap
     * instead of following each other. */
    for (size_t i = 0; i < n; i++) {
        steps[i].hit = false;
        steps[i].fetched = false;
        steps[i].refused[0] = '\0';
    }
    pthread_mutex_lock(&c->mu);
    bool ahead = c->ahead.wanted;
    c->ahead.wanted = false;
    pthread_mutex_unlock(&c->mu);
    struct lookup_ctx l = {.c = c, .st = st, .steps = steps, .n = n,
                           .taken = calloc(n + 1, sizeof *l.taken)};
    pool_run(c, n + (ahead ? 1 : 0), lookup_or_ahead, &l);
    probe_all(c); /* probed from here on, as before (claims read it) */
    free(l.taken);
    /* The layers fetched with their lookups: recorded as a fetch's are. */
    const char **keys = calloc(n + 1, sizeof *keys);
    const struct cairn_layer_rec **recs = calloc(n + 1, sizeof *recs);
    size_t nk = 0;
    for (size_t i = 0; keys != NULL && recs != NULL && i < n; i++)
        if (steps[i].fetched) {
            keys[nk] = steps[i].key_hex;
            recs[nk++] = &steps[i].rec;
        }
    struct cairn_err err;
    cairn_err_clear(&err);
    if (keys == NULL || recs == NULL)
        warn(c, "out of memory: fetched layers are not recorded in the "
                "local key index");
    else if (cairn_store_key_put_later(st, keys, recs, nk, &err) != 0)
        warn(c, "fetched layers are not recorded in the local key index: "
                "%s", err.msg);
    free(keys);
    free(recs);
}

struct fetch_ctx {
    struct cairn_cache *c;
    struct cairn_store *st;
    struct cairn_cache_step *const *want;
    size_t *failed; /* guarded by c->mu */
};

/* Fetches hit s's layer into st: true when it is there (s->fetched);
 * a failure clears s->hit (the step runs), with a warning. */
static bool fetch_step(struct cairn_cache *c, struct cairn_store *st,
                       struct cairn_cache_step *s)
{
    struct endpoint *e = pick(c, s->key_hex);
    struct cairn_err err;
    cairn_err_clear(&err);
    int rc = CAIRN_E_RPC;
    if (!ep_down(c, e)) {
        /* The key is recorded by the caller (cairn_cache_fetch or
         * cairn_cache_lookup), with the others of its batch, once every
         * blob has landed. */
        rc = fetch_layer(c, e, st, &s->rec, &err);
        if (rc) {
            char what[120];
            snprintf(what, sizeof what, "layer of step key %.12s refused",
                     s->key_hex);
            ep_failed(c, e, rc, &err, what);
        }
    }
    pthread_mutex_lock(&c->mu);
    if (rc == 0) {
        s->fetched = true;
        c->stats.fetches++;
    } else {
        s->hit = false;
    }
    pthread_mutex_unlock(&c->mu);
    return rc == 0;
}

static void fetch_item(void *arg, size_t i)
{
    struct fetch_ctx *f = arg;
    struct cairn_cache_step *s = f->want[i];
    if (!s->hit || s->fetched || s->rec.empty)
        return;
    if (!fetch_step(f->c, f->st, s)) {
        pthread_mutex_lock(&f->c->mu);
        (*f->failed)++;
        pthread_mutex_unlock(&f->c->mu);
    }
}

size_t cairn_cache_fetch(struct cairn_cache *c, struct cairn_store *st,
                         struct cairn_cache_step *const *want, size_t n)
{
    /* Steps that share a layer (the same files copied twice) would
     * download it twice at once: the first of each layer goes in the
     * first round, the others find the blob in the store in the second
     * and only verify it. */
    struct cairn_cache_step **first = calloc(n + 1, sizeof *first);
    struct cairn_cache_step **rest = calloc(n + 1, sizeof *rest);
    size_t nfirst = 0, nrest = 0, failed = 0;
    if (first == NULL || rest == NULL) {
        free(first);
        free(rest);
        warn(c, "out of memory fetching layers; their steps run locally");
        for (size_t i = 0; i < n; i++)
            if (!want[i]->fetched && !want[i]->rec.empty && want[i]->hit) {
                want[i]->hit = false;
                failed++;
            }
        return failed;
    }
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t k = 0; k < nfirst && !dup; k++)
            dup = strcmp(first[k]->rec.layer.digest,
                         want[i]->rec.layer.digest) == 0;
        if (dup)
            rest[nrest++] = want[i];
        else
            first[nfirst++] = want[i];
    }
    /* Which steps this call fetches: the others were fetched before. */
    bool *was = calloc(n + 1, sizeof *was);
    for (size_t i = 0; was != NULL && i < n; i++)
        was[i] = want[i]->fetched;
    struct fetch_ctx f = {.c = c, .st = st, .want = first, .failed = &failed};
    pool_run(c, nfirst, fetch_item, &f);
    f.want = rest;
    pool_run(c, nrest, fetch_item, &f);
    free(first);
    free(rest);

    /* Record the fetched keys with the build's next commit, its image's
     * (cairn_store_key_put_later: no disk flush of their own). Each
     * blob is in the store already (fsync'd and renamed by fetch_layer),
     * and that commit fsyncs blobs/sha256 first, so the index never
     * names a missing blob. A failure only leaves them unrecorded: this
     * build uses them from memory, and a later one finds them in the
     * cache again. */
    const char **keys = calloc(n + 1, sizeof *keys);
    const struct cairn_layer_rec **recs = calloc(n + 1, sizeof *recs);
    size_t nk = 0;
    for (size_t i = 0; was != NULL && keys != NULL && recs != NULL && i < n;
         i++) {
        if (was[i] || !want[i]->fetched)
            continue;
        keys[nk] = want[i]->key_hex;
        recs[nk++] = &want[i]->rec;
    }
    struct cairn_err err;
    cairn_err_clear(&err);
    if (was == NULL || keys == NULL || recs == NULL)
        warn(c, "out of memory: fetched layers are not recorded in the "
                "local key index");
    else if (cairn_store_key_put_later(st, keys, recs, nk, &err) != 0)
        warn(c, "fetched layers are not recorded in the local key index: "
                "%s", err.msg);
    free(was);
    free(keys);
    free(recs);
    return failed;
}

/* ---- uploads ------------------------------------------------------------ */

static void digest_of(const void *p, size_t n, struct cairn_remote_digest *d)
{
    uint8_t h[CK_SHA256_LEN];
    ck_sha256(p, n, h);
    ck_hex_encode(h, d->hash);
    d->size = (int64_t)n;
}

static int upload_one(struct cairn_cache *c, struct endpoint *e,
                      struct upload_job *j, uint64_t *up,
                      struct cairn_err *err)
{
    /* d[0] the key material, d[1] the layer (none for an empty step: the
     * empty blob is always there). */
    struct cairn_remote_digest d[2];
    digest_of(j->material, j->material_len, &d[0]);
    size_t nd = 1;
    if (!j->rec.empty) {
        snprintf(d[1].hash, sizeof d[1].hash, "%s", j->rec.layer.digest + 7);
        d[1].size = j->rec.layer.size;
        nd = 2;
    }
    bool missing[2] = {false, false};
    int rc = cairn_remote_find_missing(e->r, e->instance, d, nd, missing, err);
    if (!rc && missing[0] && d[0].size > e->max_batch / 2)
        rc = cairn_err_set(err, CAIRN_E_TOOBIG, "key material too large");
    if (!rc && missing[0]) {
        struct cairn_remote_blob b = {.digest = d[0], .data = j->material};
        rc = cairn_remote_batch_update(e->r, e->instance, &b, 1, err);
        if (!rc)
            *up += (uint64_t)d[0].size;
    }
    if (!rc && nd == 2 && missing[1]) {
        char path[4096];
        cairn_store_blob_path(j->st, j->rec.layer.digest, path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
        } else {
            rc = cairn_remote_write(e->r, e->instance, &d[1], fd, err);
            close(fd);
            if (!rc)
                *up += (uint64_t)d[1].size;
        }
    }
    if (!rc) {
        struct cairn_remote_result *res = calloc(1, sizeof *res);
        if (res == NULL) {
            rc = CAIRN_E_NOMEM;
        } else {
            cairn_cache_result_make(&j->rec, res);
            struct cairn_remote_digest action;
            snprintf(action.hash, sizeof action.hash, "%s", j->key_hex);
            action.size = (int64_t)j->material_len;
            rc = entry_sign(c, e, &action, res, err);
            if (!rc)
                rc = cairn_remote_ac_put(e->r, e->instance, &action, res, err);
            free(res);
        }
    }
    return rc;
}

/* An offered step (a local hit) is uploaded only when the cache has no
 * valid result for it: not found (which a REAPI server also answers when
 * a blob of the result is gone), or one cairn cannot use. *present is set
 * when nothing needs doing. */
static int offer_check(struct endpoint *e, const struct upload_job *j,
                       bool *present, struct cairn_err *err)
{
    struct cairn_remote_digest action;
    snprintf(action.hash, sizeof action.hash, "%s", j->key_hex);
    action.size = (int64_t)j->material_len;
    struct cairn_remote_result *res = calloc(1, sizeof *res);
    if (res == NULL)
        return CAIRN_E_NOMEM;
    struct cairn_layer_rec rec;
    struct cairn_err scratch;
    cairn_err_clear(&scratch);
    int rc = cairn_remote_ac_get(e->r, e->instance, &action, res, err);
    /* An entry trust refuses is replaced, as a broken one is. */
    if (rc == 0)
        *present = cairn_cache_result_parse(res, &rec, &scratch) == 0 &&
                   entry_check(e, &action, res, &scratch) == 0;
    else if (rc == CAIRN_E_NOTFOUND || rc == CAIRN_E_CORRUPT)
        rc = 0;
    free(res);
    return rc;
}

static void job_free(struct upload_job *j)
{
    if (j == NULL)
        return;
    free(j->material);
    free(j);
}

static void *uploader(void *arg)
{
    struct cairn_cache *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->head == NULL && !c->stopping)
            pthread_cond_wait(&c->cv, &c->mu);
        struct upload_job *j = c->head;
        if (j == NULL)
            break;
        c->head = j->next;
        if (c->head == NULL)
            c->tail = NULL;
        pthread_mutex_unlock(&c->mu);

        struct endpoint *e = pick(c, j->key_hex);
        uint64_t up = 0;
        int rc = 0;
        struct cairn_err err;
        cairn_err_clear(&err);
        bool skip = ep_down(c, e) || !e->writable;
        bool present = false;
        if (!skip && j->check)
            rc = offer_check(e, j, &present, &err);
        if (!skip && (rc || present)) {
            if (rc) {
                char what[100];
                snprintf(what, sizeof what, "lookup of step key %.12s",
                         j->key_hex);
                ep_failed(c, e, rc, &err, what);
            }
            skip = true;
        }
        if (!skip) {
            rc = upload_one(c, e, j, &up, &err);
            if (rc) {
                char what[100];
                snprintf(what, sizeof what, "upload of step key %.12s",
                         j->key_hex);
                ep_failed(c, e, rc, &err, what);
            }
        }
        pthread_mutex_lock(&c->mu);
        c->stats.bytes_up += up;
        if (!skip && rc == 0)
            c->stats.uploads++;
        if (!skip && rc == 0 && j->check)
            c->stats.offers_uploaded++;
        if (j->check)
            c->stats.offers++;
        else if (!skip)
            c->stats.upload_failures++;
        c->busy--;
        pthread_cond_broadcast(&c->cv);
        job_free(j);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void enqueue(struct cairn_cache *c, struct cairn_store *st,
                    const char *key_hex, const void *material,
                    size_t material_len, const struct cairn_layer_rec *rec,
                    bool check)
{
    probe_all(c);
    bool any = false;
    for (size_t i = 0; i < c->neps; i++)
        if (c->eps[i].writable && !ep_down(c, &c->eps[i]))
            any = true;
    if (!any)
        return;
    struct upload_job *j = calloc(1, sizeof *j);
    if (j == NULL || (j->material = malloc(material_len + 1)) == NULL) {
        job_free(j);
        warn(c, "out of memory queueing an upload");
        return;
    }
    snprintf(j->key_hex, sizeof j->key_hex, "%s", key_hex);
    memcpy(j->material, material, material_len);
    j->material_len = material_len;
    j->rec = *rec;
    j->st = st;
    j->check = check;
    pthread_mutex_lock(&c->mu);
    if (!c->uploader_running) {
        c->uploader_running =
            pthread_create(&c->uploader, NULL, uploader, c) == 0;
        if (!c->uploader_running) {
            pthread_mutex_unlock(&c->mu);
            job_free(j);
            warn(c, "cannot start the upload thread");
            return;
        }
    }
    if (c->tail)
        c->tail->next = j;
    else
        c->head = j;
    c->tail = j;
    c->busy++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void cairn_cache_upload(struct cairn_cache *c, struct cairn_store *st,
                        const char *key_hex, const void *material,
                        size_t material_len, const struct cairn_layer_rec *rec)
{
    enqueue(c, st, key_hex, material, material_len, rec, false);
}

void cairn_cache_offer(struct cairn_cache *c, struct cairn_store *st,
                       const char *key_hex, const void *material,
                       size_t material_len, const struct cairn_layer_rec *rec)
{
    enqueue(c, st, key_hex, material, material_len, rec, true);
}

void cairn_cache_finish(struct cairn_cache *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    while (c->busy > 0)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

void cairn_cache_stats_get(struct cairn_cache *c, struct cairn_cache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->stats;
    pthread_mutex_unlock(&c->mu);
}

/* Waits for the uploads, then ends the uploader and the prober: after
 * this no thread of the cache's runs, only gRPC's. */
static void cache_threads_end(struct cairn_cache *c)
{
    cairn_cache_finish(c);
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_broadcast(&c->cv);
    bool running = c->uploader_running;
    pthread_mutex_unlock(&c->mu);
    if (running)
        pthread_join(c->uploader, NULL);
    /* A prober that nothing waited for (a build that looked nothing up)
     * is joined; without one, nothing is probed now. */
    pthread_mutex_lock(&c->probe_mu);
    if (c->probing)
        pthread_join(c->prober, NULL);
    c->probing = false;
    pthread_mutex_unlock(&c->probe_mu);
}

void cairn_cache_close(struct cairn_cache *c)
{
    if (c == NULL)
        return;
    cache_threads_end(c);
    for (size_t i = 0; i < c->neps; i++) {
        cairn_remote_close(c->eps[i].r);
        free(c->eps[i].trust);
    }
    free(c->eps);
    cairn_sign_key_free(c->sign_key);
    free(c->ahead.res);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->probe_mu);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* The caches left at exit: a global keeps them reachable, so a leak
 * check at exit (LSan) reports only what nothing references, as before. */
static struct cairn_cache *cache_left;
static pthread_mutex_t cache_left_mu = PTHREAD_MUTEX_INITIALIZER;

void cairn_cache_leave(struct cairn_cache *c)
{
    if (c == NULL)
        return;
    cache_threads_end(c);
    pthread_mutex_lock(&cache_left_mu);
    c->left_next = cache_left;
    cache_left = c;
    pthread_mutex_unlock(&cache_left_mu);
}

/* ---- entries of other kinds (client/remote/imagerec.c) ------------------ */

int cairn_cache_entry_get(struct cairn_cache *c,
                          const struct cairn_remote_digest *action,
                          struct cairn_remote_result *out, const char *what)
{
    probe_all(c);
    struct endpoint *e = pick(c, action->hash);
    struct cairn_err err;
    cairn_err_clear(&err);
    int rc;
    if (!ahead_take(c, action, out, &rc, &err)) {
        if (e == NULL || ep_down(c, e))
            return CAIRN_E_NOTFOUND;
        rc = cairn_remote_ac_get(e->r, e->instance, action, out, &err);
    }
    if (rc && rc != CAIRN_E_NOTFOUND)
        ep_failed(c, e, rc, &err, what);
    /* The same rule as a step's entry: with trust, unsigned is a miss. */
    if (!rc && entry_check(e, action, out, &err) != 0) {
        warn(c, "%s: shared cache entry refused: %s", what, err.msg);
        rc = CAIRN_E_NOTFOUND;
    }
    return rc;
}

/* Uploads blob digest of st to e unless there; adds to *up. */
static int entry_blob_put(struct endpoint *e, struct cairn_store *st,
                          const char *digest, uint64_t *up,
                          struct cairn_err *err)
{
    char path[4096];
    struct stat sb;
    struct cairn_remote_digest d;
    if (strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 71)
        return cairn_err_set(err, CAIRN_E_INVAL, "bad blob digest %s", digest);
    snprintf(d.hash, sizeof d.hash, "%s", digest + 7);
    cairn_store_blob_path(st, digest, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
    int rc = 0;
    if (fstat(fd, &sb) != 0)
        rc = cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
    else
        d.size = (int64_t)sb.st_size;
    bool missing = false;
    if (!rc)
        rc = cairn_remote_find_missing(e->r, e->instance, &d, 1, &missing,
                                       err);
    if (!rc && missing) {
        rc = cairn_remote_write(e->r, e->instance, &d, fd, err);
        if (!rc)
            *up += (uint64_t)d.size;
    }
    close(fd);
    return rc;
}

int cairn_cache_entry_put(struct cairn_cache *c, struct cairn_store *st,
                          const struct cairn_remote_digest *action,
                          const void *material, const char *const *blobs,
                          size_t nblobs, const struct cairn_remote_result *res,
                          const char *what)
{
    probe_all(c);
    struct endpoint *e = pick(c, action->hash);
    if (e == NULL || ep_down(c, e) || !e->writable)
        return 0;
    struct cairn_err err;
    cairn_err_clear(&err);
    uint64_t up = 0;
    bool missing = false;
    int rc = cairn_remote_find_missing(e->r, e->instance, action, 1, &missing,
                                       &err);
    if (!rc && missing && action->size > e->max_batch / 2)
        rc = cairn_err_set(&err, CAIRN_E_TOOBIG, "material too large");
    if (!rc && missing) {
        struct cairn_remote_blob b = {.digest = *action, .data = material};
        rc = cairn_remote_batch_update(e->r, e->instance, &b, 1, &err);
        if (!rc)
            up += (uint64_t)action->size;
    }
    for (size_t i = 0; !rc && i < nblobs; i++)
        rc = entry_blob_put(e, st, blobs[i], &up, &err);
    /* Signed like a step's entry (entry_sign adds properties: a copy). */
    struct cairn_remote_result *sres = NULL;
    if (!rc && (sres = malloc(sizeof *sres)) == NULL)
        rc = cairn_err_set(&err, CAIRN_E_NOMEM, "out of memory");
    if (!rc) {
        *sres = *res;
        rc = entry_sign(c, e, action, sres, &err);
    }
    if (!rc)
        rc = cairn_remote_ac_put(e->r, e->instance, action, sres, &err);
    free(sres);
    if (rc)
        ep_failed(c, e, rc, &err, what);
    pthread_mutex_lock(&c->mu);
    c->stats.bytes_up += up;
    if (rc == 0)
        c->stats.uploads++;
    else
        c->stats.upload_failures++;
    pthread_mutex_unlock(&c->mu);
    return rc;
}
