/* cairn pull: an image from a registry into the store
 * (client/registry/pull.h). */
#include "client/registry/pull.h"

#include "cachekey/digest.h"
#include "client/store/image.h"
#include "common/fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BLOB_TRIES 4 /* attempts of one blob: resumes or restarts */
#define PATH_MAX_REG 4096

struct pull {
    struct cairn_store *st;
    struct cairn_reg_session *s;
    const struct cairn_reg_ref *ref;
    const struct cairn_reg_pull_opts *o;
    char familiar[CAIRN_REG_NAME_MAX + 1]; /* "busybox" */
    char scope[CAIRN_REG_NAME_MAX + 32];   /* "repository:P:pull" */
    pthread_mutex_t out_mu;
    /* the layers to download */
    const struct cairn_layer_desc *layers;
    const struct cairn_reg_foreign *foreign;
    size_t nlayers;
    bool *todo;
    atomic_size_t next;
    atomic_int failed;
    int first_rc;
    struct cairn_err first_err;
    /* On a terminal each layer keeps one line, redrawn in place with a
     * progress bar as docker pull does; row[i] is layer i's line (-1:
     * none), nrows the lines printed so far. Guarded by out_mu. */
    bool tty;
    int *row;
    int nrows;
    int64_t last_draw_ms;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes layer i's line: a new line, or on a terminal its own line
 * again (cursor up to it, rewrite, back down). Called under out_mu. */
static void line_put(struct pull *p, size_t i, const char *text)
{
    FILE *o = p->o->out;
    const char *d = p->layers[i].digest + 7;
    if (!p->tty || p->row == NULL || p->row[i] < 0) {
        fprintf(o, "%.12s: %s\n", d, text);
        if (p->tty && p->row)
            p->row[i] = p->nrows++;
    } else {
        int up = p->nrows - p->row[i];
        fprintf(o, "\033[%dA\r\033[2K%.12s: %s\r\033[%dB", up, d, text, up);
    }
    fflush(o);
}

static void say(struct pull *p, size_t i, const char *what)
{
    if (p->o->out == NULL)
        return;
    pthread_mutex_lock(&p->out_mu);
    line_put(p, i, what);
    pthread_mutex_unlock(&p->out_mu);
}

/* Docker's human size: SI units, three significant digits. */
static void human(int64_t n, char *buf, size_t len)
{
    static const char *const unit[] = {"B", "kB", "MB", "GB", "TB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1000 && u + 1 < sizeof unit / sizeof unit[0]) {
        v /= 1000;
        u++;
    }
    snprintf(buf, len, "%.3g%s", v, unit[u]);
}

/* On a terminal, at most ten redraws a second: layer i has got bytes. */
static void progress(struct pull *p, size_t i, int64_t got)
{
    if (!p->tty || p->o->out == NULL)
        return;
    pthread_mutex_lock(&p->out_mu);
    int64_t t = now_ms();
    if (t - p->last_draw_ms >= 100) {
        p->last_draw_ms = t;
        int64_t total = p->layers[i].size > 0 ? p->layers[i].size : 1;
        int fill = (int)(got * 50 / total);
        char bar[64], a[16], b[16], text[128];
        for (int k = 0; k < 50; k++)
            bar[k] = k < fill ? '=' : (k == fill ? '>' : ' ');
        bar[50] = '\0';
        human(got, a, sizeof a);
        human(total, b, sizeof b);
        snprintf(text, sizeof text, "Downloading [%s]  %s/%s", bar, a, b);
        line_put(p, i, text);
    }
    pthread_mutex_unlock(&p->out_mu);
}

/* ------------------------------------------------------------------ */
/* manifests                                                            */

/* GETs (or HEADs) the manifest named by reference (a tag or digest). */
static int manifest_request(struct pull *p, const char *method,
                            const char *reference, struct cairn_reg_resp *r,
                            struct cairn_err *err)
{
    char path[CAIRN_REG_NAME_MAX + 200], what[2 * CAIRN_REG_NAME_MAX + 200];
    snprintf(path, sizeof path, "/v2/%s/manifests/%s", p->ref->path, reference);
    snprintf(what, sizeof what, "manifest %s/%s%s%s", p->ref->host,
             p->ref->path, strchr(reference, ':') ? "@" : ":", reference);
    const char *hdr[] = {CAIRN_REG_ACCEPT, NULL};
    struct cairn_reg_req req = {
        .method = method,
        .path = path,
        .scope = p->scope,
        .headers = hdr,
        .body_fd = -1,
        .max_body = CAIRN_REG_MANIFEST_MAX,
        .what = what,
    };
    return cairn_reg_request(p->s, &req, r, err);
}

/* A manifest's bytes, checked against want (a digest, or "" for none
 * known) and against the registry's Docker-Content-Digest; its digest
 * into got. */
static int manifest_get(struct pull *p, const char *reference, const char *want,
                        struct cairn_reg_resp *r,
                        char got[CAIRN_DIGEST_STR_LEN], struct cairn_err *err)
{
    int rc = manifest_request(p, "GET", reference, r, err);
    if (rc)
        return rc;
    if ((rc = cairn_reg_manifest_digest(r->body, r->body_len, got)))
        return cairn_err_set(err, rc, "hashing the manifest");
    const char *named = want && want[0] ? want : r->digest;
    if (named[0] && strcmp(named, got) != 0) {
        rc = cairn_err_set(err, CAIRN_E_DIGEST,
                           "manifest %s/%s:%s: the registry sent bytes with "
                           "digest %s, not %s",
                           p->ref->host, p->ref->path, reference, got, named);
        cairn_reg_resp_clear(r);
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* blobs                                                                */

struct sink {
    struct pull *p;
    size_t layer;
    int fd;
    struct ck_sha256 *h;
    int64_t got, max;
};

static int sink_write(void *ctx, const void *data, size_t n)
{
    struct sink *k = ctx;
    if (k->got + (int64_t)n > k->max)
        return CAIRN_E_DIGEST;
    int rc = ck_sha256_update(k->h, data, n);
    if (rc == 0)
        rc = cairn_write_all(k->fd, data, n);
    if (rc == 0) {
        k->got += (int64_t)n;
        progress(k->p, k->layer, k->got);
    }
    return rc;
}

static int sink_restart(struct sink *k)
{
    ck_sha256_free(k->h);
    k->h = NULL;
    k->got = 0;
    if (ftruncate(k->fd, 0) != 0 || lseek(k->fd, 0, SEEK_SET) != 0)
        return -errno;
    return ck_sha256_new(&k->h);
}

/* Downloads one blob from url (a registry path or a foreign URL) into
 * k, resuming with Range where the registry allows. */
static int blob_download(struct pull *p, const char *url, bool registry,
                         const struct cairn_layer_desc *d, struct sink *k,
                         struct cairn_err *err)
{
    char what[CAIRN_DIGEST_STR_LEN + 16];
    snprintf(what, sizeof what, "layer %s", d->digest);
    int rc = 0;
    for (int t = 0; t < BLOB_TRIES; t++) {
        struct cairn_reg_resp r;
        struct cairn_reg_req req = {
            .method = "GET",
            .path = url,
            .scope = registry ? p->scope : NULL,
            .body_fd = -1,
            .sink = sink_write,
            .sink_ctx = k,
            .range_from = k->got,
            .what = what,
        };
        rc = cairn_reg_request(p->s, &req, &r, err);
        cairn_reg_resp_clear(&r);
        if (rc == 0)
            return 0;
        if (rc == CAIRN_E_DIGEST)
            return cairn_err_set(err, rc,
                                 "layer %s: the registry sent more than the "
                                 "%lld bytes the manifest says",
                                 d->digest, (long long)d->size);
        bool broke = rc == CAIRN_E_IO || rc == CAIRN_E_TIMEOUT;
        if (rc == CAIRN_E_UNSUPPORTED || (broke && !r.ranges)) {
            /* No range: start the blob over. */
            int rrc = sink_restart(k);
            if (rrc)
                return cairn_err_set(err, rrc, "layer %s: %s", d->digest,
                                     strerror(-rrc));
            if (rc == CAIRN_E_UNSUPPORTED)
                continue;
        }
        if (!broke)
            return rc;
    }
    return rc;
}

/* Fetches one layer into the store: foreign URLs first, then the
 * registry; the file is renamed into blobs/ only when verified. */
static int layer_fetch(struct pull *p, size_t i, struct cairn_err *err)
{
    const struct cairn_layer_desc *d = &p->layers[i];
    char tmp[PATH_MAX_REG];
    snprintf(tmp, sizeof tmp, "%s/pull-XXXXXX", cairn_store_tmpdir(p->st));
    struct sink k = {
        .p = p, .layer = i, .fd = mkostemp(tmp, O_CLOEXEC), .max = d->size};
    if (k.fd < 0)
        return cairn_err_set(err, -errno, "creating a file in %s: %s",
                             cairn_store_tmpdir(p->st), strerror(errno));
    int rc = ck_sha256_new(&k.h);
    bool done = false;
    const struct cairn_reg_foreign *f = p->foreign ? &p->foreign[i] : NULL;
    for (size_t u = 0; rc == 0 && f && u < f->nurls && !done; u++) {
        if (blob_download(p, f->urls[u], false, d, &k, NULL) == 0)
            done = true;
        else
            rc = sink_restart(&k);
    }
    if (rc == 0 && !done) {
        char path[CAIRN_REG_NAME_MAX + 120];
        snprintf(path, sizeof path, "/v2/%s/blobs/%s", p->ref->path, d->digest);
        rc = blob_download(p, path, true, d, &k, err);
    }
    uint8_t bin[CK_SHA256_LEN];
    char got[CAIRN_DIGEST_STR_LEN], hex[CK_SHA256_HEX_LEN + 1];
    if (rc == 0 && (rc = ck_sha256_final(k.h, bin)) == 0) {
        ck_hex_encode(bin, hex);
        snprintf(got, sizeof got, "sha256:%s", hex);
        if (k.got != d->size)
            rc = cairn_err_set(err, CAIRN_E_DIGEST,
                               "layer %s: the registry sent %lld bytes, the "
                               "manifest says %lld; nothing stored",
                               d->digest, (long long)k.got, (long long)d->size);
        else if (strcmp(got, d->digest) != 0)
            rc = cairn_err_set(err, CAIRN_E_DIGEST,
                               "layer %s: digest mismatch: the registry sent "
                               "bytes with digest %s; nothing stored",
                               d->digest, got);
    }
    ck_sha256_free(k.h);
    if (close(k.fd) != 0 && rc == 0)
        rc = cairn_err_set(err, -errno, "writing %s: %s", tmp, strerror(errno));
    if (rc == 0)
        rc = cairn_store_blob_add_file(p->st, tmp, d->digest, err);
    if (rc)
        unlink(tmp);
    return rc;
}

static void *layer_worker(void *arg)
{
    struct pull *p = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->nlayers || atomic_load(&p->failed))
            break;
        if (!p->todo[i])
            continue;
        struct cairn_err e;
        cairn_err_clear(&e);
        int rc = layer_fetch(p, i, &e);
        if (rc) {
            pthread_mutex_lock(&p->out_mu);
            if (!atomic_exchange(&p->failed, 1)) {
                p->first_rc = rc;
                p->first_err = e;
            }
            pthread_mutex_unlock(&p->out_mu);
            break;
        }
        say(p, i, "Download complete");
    }
    return NULL;
}

/* Downloads the layers not yet stored, jobs at a time. */
static int layers_fetch(struct pull *p, const struct cairn_manifest *m,
                        const struct cairn_reg_foreign *f,
                        struct cairn_err *err)
{
    p->layers = m->layers;
    p->foreign = f;
    p->nlayers = m->nlayers;
    p->todo = calloc(m->nlayers ? m->nlayers : 1, sizeof *p->todo);
    p->row = calloc(m->nlayers ? m->nlayers : 1, sizeof *p->row);
    if (p->todo == NULL || p->row == NULL) {
        free(p->todo);
        free(p->row);
        p->todo = NULL;
        p->row = NULL;
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < m->nlayers; i++)
        p->row[i] = -1;
    p->tty = p->o->out && isatty(fileno(p->o->out));
    size_t need = 0;
    for (size_t i = 0; i < m->nlayers; i++) {
        /* A layer twice in one image is fetched once. */
        bool dup = false;
        for (size_t j = 0; j < i; j++)
            dup = dup || strcmp(m->layers[j].digest, m->layers[i].digest) == 0;
        if (dup)
            continue;
        if (cairn_store_blob_has(p->st, m->layers[i].digest)) {
            say(p, i, "Already exists");
        } else {
            p->todo[i] = true;
            need++;
            say(p, i, "Pulling fs layer");
        }
    }
    int jobs = p->o->jobs > 0 ? p->o->jobs : CAIRN_REG_PULL_JOBS;
    if ((size_t)jobs > need)
        jobs = (int)need;
    pthread_t th[16];
    if (jobs > 16)
        jobs = 16;
    int started = 0;
    atomic_store(&p->next, 0);
    for (; started < jobs; started++)
        if (pthread_create(&th[started], NULL, layer_worker, p) != 0)
            break;
    if (started == 0 && need > 0)
        layer_worker(p);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(p->todo);
    free(p->row);
    p->todo = NULL;
    p->row = NULL;
    if (atomic_load(&p->failed)) {
        if (err)
            *err = p->first_err;
        return p->first_rc;
    }
    return 0;
}

/* The config blob: small, fetched into memory and stored verified. */
static int config_fetch(struct pull *p, const struct cairn_manifest *m,
                        struct cairn_err *err)
{
    if (cairn_store_blob_has(p->st, m->config_digest))
        return 0;
    if (m->config_size < 0 || m->config_size > (int64_t)CAIRN_IMAGE_MAX_JSON)
        return cairn_err_set(
            err, CAIRN_E_TOOBIG, "config %s: %lld bytes, over the %u limit",
            m->config_digest, (long long)m->config_size, CAIRN_IMAGE_MAX_JSON);
    char path[CAIRN_REG_NAME_MAX + 120], what[CAIRN_DIGEST_STR_LEN + 16];
    snprintf(path, sizeof path, "/v2/%s/blobs/%s", p->ref->path,
             m->config_digest);
    snprintf(what, sizeof what, "config %s", m->config_digest);
    struct cairn_reg_resp r;
    struct cairn_reg_req req = {.method = "GET",
                                .path = path,
                                .scope = p->scope,
                                .body_fd = -1,
                                .max_body = (size_t)m->config_size,
                                .what = what};
    int rc = cairn_reg_request(p->s, &req, &r, err);
    if (rc)
        return rc;
    char got[CAIRN_DIGEST_STR_LEN];
    rc = cairn_store_blob_add_data(p->st, r.body, r.body_len, got, err);
    if (rc == 0 && strcmp(got, m->config_digest) != 0)
        rc = cairn_err_set(err, CAIRN_E_DIGEST,
                           "config %s: the registry sent bytes with digest %s",
                           m->config_digest, got);
    cairn_reg_resp_clear(&r);
    return rc;
}

/* ------------------------------------------------------------------ */
/* the store's side                                                     */

/* Whether the stored image row is for the wanted platform (its config's
 * os/architecture/variant, normalised). */
static bool row_platform_is(struct pull *p, const struct cairn_image_row *row)
{
    char *data = NULL;
    size_t len = 0;
    struct cairn_image_config cfg;
    bool same = false;
    if (cairn_store_blob_read(p->st, row->config_digest, CAIRN_IMAGE_MAX_JSON,
                              &data, &len, NULL) != 0)
        return false;
    if (cairn_image_config_parse(data, len, &cfg, NULL) == 0) {
        char s[128];
        struct cairn_reg_platform have;
        snprintf(s, sizeof s, "%s/%s%s%s", cfg.os ? cfg.os : "",
                 cfg.architecture ? cfg.architecture : "",
                 cfg.variant ? "/" : "", cfg.variant ? cfg.variant : "");
        same = cairn_reg_platform_parse(s, &have, NULL) == 0 &&
               strcmp(have.os, p->o->platform->os) == 0 &&
               strcmp(have.arch, p->o->platform->arch) == 0 &&
               strcmp(have.variant, p->o->platform->variant) == 0;
        cairn_image_config_clear(&cfg);
    }
    free(data);
    return same;
}

struct stored_q {
    struct pull *p;
    const char *name; /* "familiar@digest" */
    const char *digest;
    struct cairn_image_row *row;
    bool hit;
};

static int stored_one(void *arg, const struct cairn_image_row *row)
{
    struct stored_q *q = arg;
    bool named = false;
    for (size_t i = 0; i < row->nrepo_digests && !named; i++)
        named = strcmp(row->repo_digests[i], q->name) == 0;
    if (!named || (strcmp(row->manifest_digest, q->digest) != 0 &&
                   !row_platform_is(q->p, row)))
        return 0;
    /* Keep what the caller reads; the row's arrays are borrowed. */
    memset(q->row, 0, sizeof *q->row);
    memcpy(q->row->manifest_digest, row->manifest_digest,
           sizeof row->manifest_digest);
    q->hit = true;
    return 1; /* stop */
}

/* The stored image that repo digest d names, for our platform (an
 * image manifest's own digest names it whatever its platform; an
 * index's names one image per platform). Fills row->manifest_digest,
 * then the row as cairn_store_image_find gives it. */
static bool stored_find(struct pull *p, const char *d,
                        struct cairn_image_row *row)
{
    char name[CAIRN_REG_NAME_MAX + CAIRN_DIGEST_STR_LEN + 2];
    snprintf(name, sizeof name, "%s@%s", p->familiar, d);
    struct cairn_image_row found;
    struct stored_q q = {p, name, d, &found, false};
    cairn_store_image_each(p->st, stored_one, &q);
    memset(row, 0, sizeof *row);
    return q.hit &&
           cairn_store_image_find(p->st, found.manifest_digest, row, NULL) == 0;
}

static bool row_has_tag(const struct cairn_image_row *row, const char *tag)
{
    for (size_t i = 0; i < row->ntags; i++)
        if (strcmp(row->tags[i], tag) == 0)
            return true;
    return false;
}

/* Records the image: manifest bytes, then the record with its tag and
 * repo digest in one transaction. */
static int image_record(struct pull *p, const struct cairn_reg_resp *mr,
                        const char *manifest_digest, const char *repo_digest,
                        const char *tag, bool *had_tag, struct cairn_err *err)
{
    char got[CAIRN_DIGEST_STR_LEN];
    int rc = cairn_store_blob_add_data(p->st, mr->body, mr->body_len, got, err);
    if (rc)
        return rc;
    if (strcmp(got, manifest_digest) != 0)
        return cairn_err_set(err, CAIRN_E_DIGEST, "manifest stored as %s", got);
    struct cairn_image_row old;
    memset(&old, 0, sizeof old);
    *had_tag = false;
    if (tag && cairn_store_image_find(p->st, tag, &old, NULL) == 0) {
        *had_tag = strcmp(old.manifest_digest, manifest_digest) == 0;
        cairn_store_image_row_clear(&old);
    }
    char rd[CAIRN_REG_NAME_MAX + CAIRN_DIGEST_STR_LEN + 2];
    snprintf(rd, sizeof rd, "%s@%s", p->familiar, repo_digest);
    char *rds[] = {rd};
    char *tags[] = {(char *)tag};
    struct cairn_image_row row;
    memset(&row, 0, sizeof row);
    snprintf(row.manifest_digest, sizeof row.manifest_digest, "%s",
             manifest_digest);
    row.tags = tag ? tags : NULL;
    row.ntags = tag ? 1 : 0;
    row.repo_digests = rds;
    row.nrepo_digests = 1;
    return cairn_store_image_add(p->st, &row, err);
}

/* ------------------------------------------------------------------ */

/* The image manifest: the one named, or the platform's in an index.
 * *mr holds its bytes, digest its digest, repo_digest what the registry
 * named (the index's digest for an index). */
static int resolve_image(struct pull *p, const char *reference,
                         const char *want, struct cairn_reg_resp *mr,
                         char digest[CAIRN_DIGEST_STR_LEN],
                         char repo_digest[CAIRN_DIGEST_STR_LEN],
                         struct cairn_err *err)
{
    enum cairn_reg_kind kind;
    int rc = manifest_get(p, reference, want, mr, repo_digest, err);
    if (rc == 0)
        rc = cairn_reg_manifest_kind(mr->content_type, mr->body, mr->body_len,
                                     &kind, err);
    if (rc)
        return rc;
    memcpy(digest, repo_digest, CAIRN_DIGEST_STR_LEN);
    if (kind == CAIRN_REG_IMAGE)
        return 0;
    struct cairn_reg_desc d;
    rc = cairn_reg_index_pick(mr->body, mr->body_len, p->o->platform, &d, err);
    cairn_reg_resp_clear(mr);
    if (rc) {
        cairn_err_prefix(err, "%s/%s", p->ref->host, p->ref->path);
        return rc;
    }
    if ((rc = manifest_get(p, d.digest, d.digest, mr, digest, err)) == 0 &&
        (rc = cairn_reg_manifest_kind(mr->content_type, mr->body, mr->body_len,
                                      &kind, err)) == 0 &&
        kind != CAIRN_REG_IMAGE)
        rc = cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                           "index %s names another index (%s) for the "
                           "platform: nested indexes are not supported",
                           repo_digest, d.digest);
    return rc;
}

static int pull_run(struct pull *p, struct cairn_reg_pull_result *res,
                    struct cairn_err *err)
{
    const struct cairn_reg_ref *ref = p->ref;
    char tag[CAIRN_REG_NAME_MAX + CAIRN_REG_TAG_MAX + 2] = "";
    char shown[sizeof tag + CAIRN_DIGEST_STR_LEN];
    /* As Docker: a tag beside a digest is ignored (the digest wins). */
    if (ref->tag[0] && !ref->digest[0])
        snprintf(tag, sizeof tag, "%s:%s", p->familiar, ref->tag);
    if (ref->digest[0])
        snprintf(shown, sizeof shown, "%s@%s", p->familiar, ref->digest);
    else
        snprintf(shown, sizeof shown, "%s", tag);
    const char *reference = ref->digest[0] ? ref->digest : ref->tag;
    char want[CAIRN_DIGEST_STR_LEN] = "";
    snprintf(want, sizeof want, "%s", ref->digest);
    struct cairn_image_row row;
    struct cairn_reg_resp mr;
    memset(&mr, 0, sizeof mr);
    int rc = 0;

    /* A digest already stored costs nothing; a tag one HEAD. */
    if (!want[0]) {
        rc = manifest_request(p, "HEAD", reference, &mr, err);
        if (rc == CAIRN_E_NOTFOUND || rc == CAIRN_E_RPC)
            rc = 0; /* the GET below says why, with the registry's code */
        else if (rc)
            return rc;
        if (cairn_image_digest_valid(mr.digest))
            memcpy(want, mr.digest, sizeof want);
        cairn_reg_resp_clear(&mr);
    }
    if (want[0] && stored_find(p, want, &row)) {
        bool tagged = !tag[0] || row_has_tag(&row, tag);
        memcpy(res->manifest, row.manifest_digest, sizeof res->manifest);
        cairn_store_image_row_clear(&row);
        memcpy(res->repo_digest, want, sizeof res->repo_digest);
        res->up_to_date = tagged;
        if (!tagged && (rc = cairn_store_tag(p->st, tag, res->manifest, err)))
            return rc;
        if (p->o->out) {
            fprintf(p->o->out, "Digest: %s\n", want);
            fprintf(p->o->out, "Status: %s for %s\n",
                    tagged ? "Image is up to date" : "Downloaded newer image",
                    shown);
        }
        return 0;
    }

    char digest[CAIRN_DIGEST_STR_LEN], repo_digest[CAIRN_DIGEST_STR_LEN];
    struct cairn_manifest m;
    memset(&m, 0, sizeof m);
    struct cairn_reg_foreign *f = NULL;
    bool had_tag = false;
    if ((rc = resolve_image(p, want[0] ? want : reference, want, &mr, digest,
                            repo_digest, err)))
        goto out;
    if (p->o->out)
        fprintf(p->o->out, "%s: Pulling from %s\n",
                ref->digest[0] ? ref->digest : ref->tag, ref->path);
    if ((rc = cairn_manifest_parse(mr.body, mr.body_len, &m, err))) {
        cairn_err_prefix(err, "manifest %s", digest);
        goto out;
    }
    f = calloc(m.nlayers ? m.nlayers : 1, sizeof *f);
    if (f == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = cairn_reg_manifest_layers(mr.body, mr.body_len, f, m.nlayers,
                                        err))) {
        cairn_err_prefix(err, "manifest %s", digest);
        goto out;
    }
    /* Held until the image is recorded, so prune cannot take a blob
     * this pull stored and counts on (store.h). */
    if ((rc = cairn_store_lock(p->st, false, err)))
        goto out;
    if ((rc = layers_fetch(p, &m, f, err)) == 0 &&
        (rc = config_fetch(p, &m, err)) == 0)
        rc = image_record(p, &mr, digest, repo_digest, tag[0] ? tag : NULL,
                          &had_tag, err);
    cairn_store_unlock(p->st);
    if (rc)
        goto out;
    memcpy(res->manifest, digest, sizeof res->manifest);
    memcpy(res->repo_digest, repo_digest, sizeof res->repo_digest);
    res->up_to_date = had_tag;
    if (p->o->out) {
        fprintf(p->o->out, "Digest: %s\n", repo_digest);
        fprintf(p->o->out, "Status: %s for %s\n",
                had_tag ? "Image is up to date" : "Downloaded newer image",
                shown);
    }
out:
    for (size_t i = 0; f && i < m.nlayers; i++)
        cairn_reg_foreign_clear(&f[i]);
    free(f);
    cairn_manifest_clear(&m);
    cairn_reg_resp_clear(&mr);
    return rc;
}

int cairn_reg_pull(struct cairn_store *st, const struct cairn_reg_ref *ref,
                   const struct cairn_reg_pull_opts *o,
                   struct cairn_reg_pull_result *out, struct cairn_err *err)
{
    struct pull p;
    memset(&p, 0, sizeof p);
    p.st = st;
    p.ref = ref;
    p.o = o;
    if (cairn_reg_ref_familiar(ref, false, p.familiar, sizeof p.familiar))
        return cairn_err_set(err, CAIRN_E_INVAL, "reference too long");
    snprintf(p.scope, sizeof p.scope, "repository:%s:pull", ref->path);
    pthread_mutex_init(&p.out_mu, NULL);
    atomic_init(&p.next, 0);
    atomic_init(&p.failed, 0);
    struct cairn_reg_pull_result res;
    memset(&res, 0, sizeof res);
    int rc = cairn_reg_session_open(cairn_reg_ref_api_host(ref), o->transport,
                                    &p.s, err);
    if (rc == 0) {
        rc = pull_run(&p, &res, err);
        res.requests = cairn_reg_session_requests(p.s);
    }
    cairn_reg_session_close(p.s);
    pthread_mutex_destroy(&p.out_mu);
    if (rc == 0)
        *out = res;
    return rc;
}
