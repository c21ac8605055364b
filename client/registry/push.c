/* cairn push: an image from the store to a registry
 * (client/registry/push.h). */
#include "client/registry/push.h"

#include "client/registry/manifest.h"
#include "client/store/image.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_MAX_REG 4096
#define URL_MAX 8192 /* an upload Location with its _state */
#define JOBS_MAX 16
#define UPLOAD_TRIES 3 /* upload sessions for one blob */

enum outcome { PUSHED, EXISTED, MOUNTED };

struct blob {
    const char *digest;
    int64_t size;
    char id[13]; /* the short id docker prints (of the diff_id) */
    char from[CAIRN_REG_NAME_MAX + 1]; /* a repository holding it, or "" */
    enum outcome how;
};

struct push {
    struct cairn_store *st;
    struct cairn_reg_session *s;
    const struct cairn_reg_ref *dest;
    const struct cairn_reg_push_opts *o;
    int64_t chunk;
    char scope[CAIRN_REG_NAME_MAX + 32]; /* "repository:P:pull,push" */
    pthread_mutex_t out_mu;
    struct blob *blobs; /* layers, then the config last */
    size_t nlayers;
    atomic_size_t next;
    atomic_int failed;
    int first_rc;
    struct cairn_err first_err;
};

/* One line of docker push's: "ID: what". */
static void say(struct push *p, const struct blob *b, const char *what)
{
    if (p->o->out == NULL)
        return;
    pthread_mutex_lock(&p->out_mu);
    fprintf(p->o->out, "%s: %s\n", b->id, what);
    fflush(p->o->out);
    pthread_mutex_unlock(&p->out_mu);
}

/* ------------------------------------------------------------------ */
/* one blob                                                             */

/* HEAD: whether the registry has the blob in our repository. */
static int blob_exists(struct push *p, const struct blob *b, bool *has,
                       struct cairn_err *err)
{
    char path[CAIRN_REG_NAME_MAX + 120], what[CAIRN_DIGEST_STR_LEN + 8];
    snprintf(path, sizeof path, "/v2/%s/blobs/%s", p->dest->path, b->digest);
    snprintf(what, sizeof what, "blob %s", b->digest);
    struct cairn_reg_resp r;
    struct cairn_reg_req req = {.method = "HEAD",
                                .path = path,
                                .scope = p->scope,
                                .body_fd = -1,
                                .ok_status = 404,
                                .what = what};
    int rc = cairn_reg_request(p->s, &req, &r, err);
    if (rc == 0) {
        /* A registry that has the blob under another size has something
         * else: upload ours, and let it refuse. */
        *has = r.status == 200 &&
               (r.content_length < 0 || r.content_length == b->size);
        cairn_reg_resp_clear(&r);
    }
    return rc;
}

/* A Location we may send bytes to: a path on the registry or an
 * http(s) URL, short enough to append ?digest= to, no spaces. */
static bool loc_usable(const char *loc)
{
    return loc && (loc[0] == '/' || strncmp(loc, "http://", 7) == 0 ||
                   strncmp(loc, "https://", 8) == 0) &&
           strlen(loc) < URL_MAX - 100 && strpbrk(loc, " \t\r\n") == NULL;
}

/* Starts an upload (or mounts from b->from). *loc gets the upload's
 * Location (owned) unless the mount was done (*mounted). */
static int upload_start(struct push *p, const struct blob *b, char **loc,
                        bool *mounted, struct cairn_err *err)
{
    char path[2 * CAIRN_REG_NAME_MAX + 160], what[CAIRN_DIGEST_STR_LEN + 16];
    char scope[sizeof p->scope + CAIRN_REG_NAME_MAX + 32];
    snprintf(what, sizeof what, "upload of %s", b->digest);
    if (b->from[0]) {
        snprintf(path, sizeof path,
                 "/v2/%s/blobs/uploads/?mount=sha256%%3A%s&from=%s",
                 p->dest->path, b->digest + 7, b->from);
        snprintf(scope, sizeof scope, "%s repository:%s:pull", p->scope,
                 b->from);
    } else {
        snprintf(path, sizeof path, "/v2/%s/blobs/uploads/", p->dest->path);
        snprintf(scope, sizeof scope, "%s", p->scope);
    }
    struct cairn_reg_resp r;
    struct cairn_reg_req req = {.method = "POST",
                                .path = path,
                                .scope = scope,
                                .body_fd = -1,
                                .what = what};
    int rc = cairn_reg_request(p->s, &req, &r, err);
    if (rc)
        return rc;
    *mounted = r.status == 201 && b->from[0];
    if (!*mounted) {
        if (r.status != 202 || !loc_usable(r.location))
            rc = cairn_err_set(err, CAIRN_E_RPC,
                               "registry %s: starting the upload of %s: "
                               "answer %ld without a usable Location",
                               cairn_reg_session_host(p->s), b->digest,
                               r.status);
        else {
            *loc = r.location;
            r.location = NULL;
        }
    }
    cairn_reg_resp_clear(&r);
    return rc;
}

/* Whether url (an upload Location) is on the session's registry: a
 * relative one, or http(s)://HOST/... with the session's host[:port].
 * The registry's token goes only there. */
static bool loc_is_registry(struct push *p, const char *url)
{
    const char *h = cairn_reg_session_host(p->s);
    const char *rest = NULL;
    if (url[0] == '/')
        return true;
    if (strncmp(url, "http://", 7) == 0)
        rest = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        rest = url + 8;
    size_t n = strlen(h);
    return rest && strncmp(rest, h, n) == 0 &&
           (rest[n] == '/' || rest[n] == '\0');
}

/* Sends len bytes of fd at off to *loc: a PATCH, whose answer's
 * Location replaces *loc, or with last the closing PUT ?digest=. */
static int upload_send(struct push *p, const struct blob *b, char **loc,
                       int fd, int64_t off, int64_t len, bool last,
                       struct cairn_err *err)
{
    char url[URL_MAX], range[80], what[CAIRN_DIGEST_STR_LEN + 16];
    snprintf(what, sizeof what, "upload of %s", b->digest);
    if (last)
        snprintf(url, sizeof url, "%s%cdigest=sha256%%3A%s", *loc,
                 strchr(*loc, '?') ? '&' : '?', b->digest + 7);
    else
        snprintf(url, sizeof url, "%s", *loc);
    /* Content-Range is inclusive; distribution ignores it but the spec
     * asks for it on every chunk. */
    snprintf(range, sizeof range, "Content-Range: %lld-%lld", (long long)off,
             (long long)(off + len - 1));
    const char *hdr[] = {"Content-Type: application/octet-stream",
                         len > 0 && !last ? range : NULL, NULL};
    struct cairn_reg_resp r;
    struct cairn_reg_req req = {.method = last ? "PUT" : "PATCH",
                                .path = url,
                                .scope = loc_is_registry(p, url) ? p->scope
                                                                 : NULL,
                                .headers = hdr,
                                .body = len > 0 ? NULL : "",
                                .body_fd = len > 0 ? fd : -1,
                                .body_off = off,
                                .body_len = len,
                                .what = what};
    int rc = cairn_reg_request(p->s, &req, &r, err);
    if (rc)
        return rc;
    if (!last && (r.status != 202 || !loc_usable(r.location)))
        rc = cairn_err_set(err, CAIRN_E_RPC,
                           "registry %s: upload of %s: answer %ld to a chunk "
                           "without a usable Location",
                           cairn_reg_session_host(p->s), b->digest, r.status);
    else if (last && r.status != 201)
        rc = cairn_err_set(err, CAIRN_E_RPC,
                           "registry %s: upload of %s: answer %ld, not 201 "
                           "Created",
                           cairn_reg_session_host(p->s), b->digest, r.status);
    else if (last && r.digest[0] && strcmp(r.digest, b->digest) != 0)
        rc = cairn_err_set(err, CAIRN_E_DIGEST,
                           "registry %s stored blob %s as %s",
                           cairn_reg_session_host(p->s), b->digest, r.digest);
    if (rc == 0 && !last && loc_usable(r.location)) {
        free(*loc);
        *loc = r.location;
        r.location = NULL;
    }
    cairn_reg_resp_clear(&r);
    return rc;
}

/* The blob's bytes from the store to the upload at *loc: one PUT up to
 * the chunk size, else PATCHes and a closing PUT. */
static int upload_bytes(struct push *p, const struct blob *b, char **loc,
                        struct cairn_err *err)
{
    char file[PATH_MAX_REG];
    int rc = cairn_store_blob_path(p->st, b->digest, file, sizeof file);
    if (rc)
        return cairn_err_set(err, rc, "blob %s: path too long", b->digest);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0)
        return cairn_err_set(err, -errno, "blob %s: %s", b->digest,
                             strerror(errno));
    if (fstat(fd, &sb) != 0 || sb.st_size != b->size) {
        rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                           "blob %s in the store is not the %lld bytes the "
                           "manifest says",
                           b->digest, (long long)b->size);
        goto out;
    }
    if (b->size <= p->chunk) {
        rc = upload_send(p, b, loc, fd, 0, b->size, true, err);
        goto out;
    }
    for (int64_t off = 0; rc == 0 && off < b->size; off += p->chunk) {
        int64_t n = b->size - off < p->chunk ? b->size - off : p->chunk;
        rc = upload_send(p, b, loc, fd, off, n, false, err);
    }
    if (rc == 0)
        rc = upload_send(p, b, loc, fd, b->size, 0, true, err);
out:
    close(fd);
    return rc;
}

static bool upload_retryable(int rc)
{
    return rc == CAIRN_E_IO || rc == CAIRN_E_TIMEOUT || rc == CAIRN_E_RPC ||
           rc == CAIRN_E_DIGEST;
}

/* One blob: present (HEAD), mounted, or uploaded. known: the HEAD was
 * made already and said whether the registry has it (has); else it is
 * made here. */
static int blob_push(struct push *p, struct blob *b, bool known, bool has,
                     struct cairn_err *err)
{
    bool mounted = false;
    char *loc = NULL;
    int rc = known ? 0 : blob_exists(p, b, &has, err);
    if (rc)
        return rc;
    if (has) {
        b->how = EXISTED;
        return 0;
    }
    /* An upload that broke (the transport's own retries spent, or a
     * chunk retried after the registry had kept part of it, which the
     * closing PUT then refuses) starts over in a new session. */
    for (int t = 0;; t++) {
        free(loc);
        loc = NULL;
        rc = upload_start(p, b, &loc, &mounted, err);
        if (rc == 0 && mounted) {
            b->how = MOUNTED;
            break;
        }
        if (rc == 0 && (rc = upload_bytes(p, b, &loc, err)) == 0) {
            b->how = PUSHED;
            break;
        }
        if (t + 1 >= UPLOAD_TRIES || !upload_retryable(rc))
            break;
    }
    free(loc);
    return rc;
}

static void *blob_worker(void *arg)
{
    struct push *p = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->nlayers || atomic_load(&p->failed))
            break;
        struct blob *b = &p->blobs[i];
        struct cairn_err e;
        cairn_err_clear(&e);
        int rc = blob_push(p, b, false, false, &e);
        if (rc) {
            pthread_mutex_lock(&p->out_mu);
            if (!atomic_exchange(&p->failed, 1)) {
                p->first_rc = rc;
                p->first_err = e;
            }
            pthread_mutex_unlock(&p->out_mu);
            break;
        }
        char line[CAIRN_REG_NAME_MAX + 16];
        if (b->how == MOUNTED)
            snprintf(line, sizeof line, "Mounted from %s", b->from);
        say(p, b,
            b->how == EXISTED   ? "Layer already exists"
            : b->how == MOUNTED ? line
                                : "Pushed");
    }
    return NULL;
}

/* The layers (p->blobs[0..nlayers)), jobs at a time. A layer twice in
 * one image is pushed once (its second entry is skipped up front). */
static int layers_push(struct push *p, struct cairn_err *err)
{
    int jobs = p->o->jobs > 0 ? p->o->jobs : CAIRN_REG_PUSH_JOBS;
    if (jobs > JOBS_MAX)
        jobs = JOBS_MAX;
    if ((size_t)jobs > p->nlayers)
        jobs = (int)p->nlayers;
    pthread_t th[JOBS_MAX];
    int started = 0;
    for (; started < jobs; started++)
        if (pthread_create(&th[started], NULL, blob_worker, p) != 0)
            break;
    if (started == 0)
        blob_worker(p);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (atomic_load(&p->failed)) {
        if (err)
            *err = p->first_err;
        return p->first_rc;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* what the store knows                                                 */

struct mount_q {
    struct push *p;
};

/* For each repo digest of row in another repository of our registry,
 * the layers of row's manifest are there: a mount source for ours. */
static int mount_one(void *arg, const struct cairn_image_row *row)
{
    struct mount_q *q = arg;
    struct push *p = q->p;
    for (size_t r = 0; r < row->nrepo_digests; r++) {
        struct cairn_reg_ref src;
        if (cairn_reg_ref_parse(row->repo_digests[r], &src, NULL) != 0 ||
            strcmp(src.host, p->dest->host) != 0 ||
            strcmp(src.path, p->dest->path) == 0)
            continue;
        char *data = NULL;
        size_t len = 0;
        struct cairn_manifest m;
        if (cairn_store_blob_read(p->st, row->manifest_digest,
                                  CAIRN_REG_MANIFEST_MAX, &data, &len,
                                  NULL) != 0)
            return 0;
        if (cairn_manifest_parse(data, len, &m, NULL) == 0) {
            /* The layers, and the config (blobs[nlayers]) too. */
            for (size_t i = 0; i <= p->nlayers; i++) {
                struct blob *b = &p->blobs[i];
                bool in = strcmp(b->digest, m.config_digest) == 0;
                for (size_t j = 0; j < m.nlayers && !in; j++)
                    in = strcmp(b->digest, m.layers[j].digest) == 0;
                if (in && !b->from[0])
                    snprintf(b->from, sizeof b->from, "%s", src.path);
            }
            cairn_manifest_clear(&m);
        }
        free(data);
    }
    return 0;
}

/* Rejects layers docker 20.10 cannot pull (zstd) unless allowed. */
static int layers_check(struct push *p, const struct cairn_manifest *m,
                        const char *image, struct cairn_err *err)
{
    for (size_t i = 0; i < m->nlayers; i++) {
        const char *mt = m->layers[i].media_type;
        if (strcmp(mt, CAIRN_MEDIA_LAYER_ZSTD) == 0 && !p->o->allow_zstd)
            return cairn_err_set(
                err, CAIRN_E_UNSUPPORTED,
                "%s: layer %s is zstd-compressed, which docker 20.10 cannot "
                "pull; rebuild with --compression gzip, or push it as stored "
                "with --allow-zstd",
                image, m->layers[i].digest);
    }
    return 0;
}

/* The blobs to push: layers (each digest once) and the config last,
 * with docker's short ids (of the diff_ids, from the config). */
static int blobs_make(struct push *p, const struct cairn_manifest *m,
                      struct cairn_err *err)
{
    p->blobs = calloc(m->nlayers + 1, sizeof *p->blobs);
    if (p->blobs == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    char *data = NULL;
    size_t len = 0;
    struct cairn_image_config cfg;
    cairn_image_config_init(&cfg);
    bool have_cfg =
        cairn_store_blob_read(p->st, m->config_digest, CAIRN_IMAGE_MAX_JSON,
                              &data, &len, NULL) == 0 &&
        cairn_image_config_parse(data, len, &cfg, NULL) == 0;
    size_t n = 0;
    for (size_t i = 0; i < m->nlayers; i++) {
        bool dup = false;
        for (size_t j = 0; j < n && !dup; j++)
            dup = strcmp(p->blobs[j].digest, m->layers[i].digest) == 0;
        if (dup)
            continue;
        struct blob *b = &p->blobs[n++];
        b->digest = m->layers[i].digest;
        b->size = m->layers[i].size;
        const char *id = have_cfg && cfg.ndiff_ids == m->nlayers
                             ? cfg.diff_ids[i]
                             : m->layers[i].digest;
        snprintf(b->id, sizeof b->id, "%.12s", id + 7);
    }
    p->nlayers = n;
    struct blob *c = &p->blobs[n];
    c->digest = m->config_digest;
    c->size = m->config_size;
    snprintf(c->id, sizeof c->id, "%.12s", m->config_digest + 7);
    if (have_cfg)
        cairn_image_config_clear(&cfg);
    free(data);
    return 0;
}

/* ------------------------------------------------------------------ */

static int manifest_put(struct push *p, const struct cairn_manifest *m,
                        const char *body, size_t len, const char *digest,
                        struct cairn_err *err)
{
    char path[CAIRN_REG_NAME_MAX + CAIRN_REG_TAG_MAX + 32];
    char what[2 * CAIRN_REG_NAME_MAX + CAIRN_REG_TAG_MAX + 32], ct[200];
    snprintf(path, sizeof path, "/v2/%s/manifests/%s", p->dest->path,
             p->dest->tag);
    snprintf(what, sizeof what, "manifest %s/%s:%s", p->dest->host,
             p->dest->path, p->dest->tag);
    snprintf(ct, sizeof ct, "Content-Type: %s", m->media_type);
    const char *hdr[] = {ct, NULL};
    struct cairn_reg_resp r;
    struct cairn_reg_req req = {.method = "PUT",
                                .path = path,
                                .scope = p->scope,
                                .headers = hdr,
                                .body = body,
                                .body_fd = -1,
                                .body_len = (int64_t)len,
                                .what = what};
    int rc = cairn_reg_request(p->s, &req, &r, err);
    if (rc)
        return rc;
    if (r.digest[0] && strcmp(r.digest, digest) != 0)
        rc = cairn_err_set(err, CAIRN_E_DIGEST,
                           "%s: the registry stored it as %s, not %s", what,
                           r.digest, digest);
    cairn_reg_resp_clear(&r);
    return rc;
}

/* Adds dest's repo digest to the image's record, as docker does after a
 * push; tags, created and the rest stay. */
static int repo_digest_record(struct push *p, const struct cairn_image_row *row,
                              const char *digest, struct cairn_err *err)
{
    char fam[CAIRN_REG_NAME_MAX + 1];
    char rd[CAIRN_REG_NAME_MAX + CAIRN_DIGEST_STR_LEN + 2];
    if (cairn_reg_ref_familiar(p->dest, false, fam, sizeof fam))
        return cairn_err_set(err, CAIRN_E_INVAL, "reference too long");
    snprintf(rd, sizeof rd, "%s@%s", fam, digest);
    char *rds[] = {rd};
    struct cairn_image_row add;
    memset(&add, 0, sizeof add);
    memcpy(add.manifest_digest, row->manifest_digest,
           sizeof add.manifest_digest);
    add.created = row->created;
    add.repo_digests = rds;
    add.nrepo_digests = 1;
    return cairn_store_image_add(p->st, &add, err);
}

static int push_run(struct push *p, const char *image,
                    struct cairn_reg_push_result *res, struct cairn_err *err)
{
    struct cairn_image_row row;
    memset(&row, 0, sizeof row);
    struct cairn_manifest m;
    memset(&m, 0, sizeof m);
    char *body = NULL;
    size_t len = 0;
    int rc = cairn_store_image_find(p->st, image, &row, err);
    if (rc) {
        if (rc == CAIRN_E_NOTFOUND)
            rc = cairn_err_set(err, rc,
                               "An image does not exist locally with the "
                               "tag: %s",
                               image);
        return rc;
    }
    if ((rc = cairn_store_blob_read(p->st, row.manifest_digest,
                                    CAIRN_REG_MANIFEST_MAX, &body, &len, err)))
        goto out;
    if ((rc = cairn_manifest_parse(body, len, &m, err))) {
        cairn_err_prefix(err, "manifest %s", row.manifest_digest);
        goto out;
    }
    if ((rc = layers_check(p, &m, image, err)) ||
        (rc = blobs_make(p, &m, err)))
        goto out;
    struct mount_q q = {p};
    cairn_store_image_each(p->st, mount_one, &q);
    if (p->o->out) {
        fprintf(p->o->out, "The push refers to repository [%s/%s]\n",
                p->dest->host, p->dest->path);
        for (size_t i = p->nlayers; i-- > 0;)
            fprintf(p->o->out, "%s: Preparing\n", p->blobs[i].id);
        fflush(p->o->out);
    }
    /* The config's HEAD goes first and alone: the session learns there
     * whether the registry speaks TLS and gets its token before the
     * parallel layer requests. */
    bool has_config = false;
    if ((rc = blob_exists(p, &p->blobs[p->nlayers], &has_config, err)) ||
        (rc = layers_push(p, err)) ||
        (rc = blob_push(p, &p->blobs[p->nlayers], true, has_config, err)) ||
        (rc = manifest_put(p, &m, body, len, row.manifest_digest, err)))
        goto out;
    if (p->o->out) {
        fprintf(p->o->out, "%s: digest: %s size: %zu\n", p->dest->tag,
                row.manifest_digest, len);
        fflush(p->o->out);
    }
    if ((rc = repo_digest_record(p, &row, row.manifest_digest, err)))
        goto out;
    memcpy(res->digest, row.manifest_digest, sizeof res->digest);
    res->size = (int64_t)len;
    for (size_t i = 0; i <= p->nlayers; i++) {
        res->pushed += p->blobs[i].how == PUSHED;
        res->existed += p->blobs[i].how == EXISTED;
        res->mounted += p->blobs[i].how == MOUNTED;
    }
out:
    cairn_manifest_clear(&m);
    free(body);
    cairn_store_image_row_clear(&row);
    return rc;
}

int cairn_reg_push(struct cairn_store *st, const char *image,
                   const struct cairn_reg_ref *dest,
                   const struct cairn_reg_push_opts *o,
                   struct cairn_reg_push_result *out, struct cairn_err *err)
{
    if (dest->digest[0])
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "cannot push to a digest reference (%s): name a "
                             "tag",
                             dest->digest);
    struct push p;
    memset(&p, 0, sizeof p);
    p.st = st;
    p.dest = dest;
    p.o = o;
    p.chunk = o->chunk > 0 ? o->chunk : CAIRN_REG_PUSH_CHUNK;
    if (p.chunk < CAIRN_REG_PUSH_CHUNK_MIN)
        p.chunk = CAIRN_REG_PUSH_CHUNK_MIN;
    snprintf(p.scope, sizeof p.scope, "repository:%s:pull,push", dest->path);
    pthread_mutex_init(&p.out_mu, NULL);
    atomic_init(&p.next, 0);
    atomic_init(&p.failed, 0);
    struct cairn_reg_push_result res;
    memset(&res, 0, sizeof res);
    /* Shared, so prune cannot take a blob away while it is read. */
    int rc = cairn_store_lock(st, false, err);
    if (rc == 0) {
        rc = cairn_reg_session_open(cairn_reg_ref_api_host(dest),
                                    o->transport, &p.s, err);
        if (rc == 0) {
            rc = push_run(&p, image, &res, err);
            res.requests = cairn_reg_session_requests(p.s);
        }
        cairn_reg_session_close(p.s);
        cairn_store_unlock(st);
    }
    free(p.blobs);
    pthread_mutex_destroy(&p.out_mu);
    if (rc == 0)
        *out = res;
    return rc;
}
