/* cairn load: images from a docker-archive or an oci-archive into the
 * store.
 *
 * The archive is streamed once into temporary files in the store's tmp/
 * (hashing each file on the way), then every digest is checked -- blob
 * names, config diff_ids against the decompressed layers -- before
 * anything enters the store, so a bad archive leaves the store as it was.
 */
#include "client/cmd/commands.h"

#include "client/cmd/archive.h"

#include "client/cmd/cli.h"

#include "cachekey/digest.h"
#include "common/fdio.h"
#include "client/store/image.h"
#include "client/store/layer.h"
#include "client/store/store.h"
#include "common/buf.h"
#include "common/strvec.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Adds the stored form of a name found in an archive (skopeo writes
 * "docker.io/x/y:t", Docker "x/y:t"; both become "x/y:t"). */
static int push_ref(struct cairn_strvec *tags, const char *ref,
                    struct cairn_err *err)
{
    char buf[ARCHIVE_MAX_PATH];
    int rc = cairn_store_ref_normalize(ref, buf, sizeof buf, err);
    if (rc) {
        cairn_err_prefix(err, "image name \"%.200s\" in the archive", ref);
        return rc;
    }
    for (size_t i = 0; i < tags->n; i++)
        if (strcmp(tags->v[i], buf) == 0)
            return 0;
    return cairn_strvec_push(tags, buf);
}

/* Reads a whole small file (at most max bytes). */
static int read_small(const char *path, size_t max, char **data, size_t *len,
                      struct cairn_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
    struct cairn_buf b;
    cairn_buf_init(&b, max);
    int rc = 0;
    for (;;) {
        if ((rc = cairn_buf_reserve(&b, COPY_CHUNK)) != 0) {
            rc = cairn_err_set(err, rc, "%s: larger than %zu bytes", path, max);
            break;
        }
        ssize_t n = read(fd, b.data + b.len, COPY_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > max) {
            rc = cairn_err_set(err, CAIRN_E_TOOBIG, "%s: larger than %zu bytes",
                               path, max);
            break;
        }
        b.len += (size_t)n;
        b.data[b.len] = '\0';
    }
    close(fd);
    if (rc) {
        cairn_buf_free(&b);
        return rc;
    }
    *len = b.len;
    *data = cairn_buf_take(&b);
    return *data ? 0 : CAIRN_E_NOMEM;
}

/* One entry of the archive as extracted to tmp/. */
struct lentry {
    char *path; /* normalised archive path */
    char *tmp;  /* extracted file (regular files); NULL once stored */
    char *link; /* symlink/hardlink target, normalised; or NULL */
    char digest[CAIRN_DIGEST_STR_LEN];
    int64_t size;
};

struct larchive {
    struct lentry *e;
    size_t n, alloc;
};

/* An image found in the archive, verified and ready to store. */
struct limage {
    char *manifest_json; /* bytes to store as the manifest blob */
    size_t manifest_len;
    struct cairn_manifest m;
    struct lentry *config;
    struct lentry **layers; /* m.nlayers files */
    int64_t created;
    struct cairn_strvec tags;
};

static void larchive_free(struct larchive *ar)
{
    for (size_t i = 0; i < ar->n; i++) {
        if (ar->e[i].tmp) {
            unlink(ar->e[i].tmp);
            free(ar->e[i].tmp);
        }
        free(ar->e[i].path);
        free(ar->e[i].link);
    }
    free(ar->e);
    memset(ar, 0, sizeof *ar);
}

static void limage_clear(struct limage *im)
{
    free(im->manifest_json);
    cairn_manifest_clear(&im->m);
    free(im->layers);
    cairn_strvec_free(&im->tags);
    memset(im, 0, sizeof *im);
}

/* Normalises an archive path: drops "./" and empty components and a
 * leading "/"; resolves ".." lexically (base: the directory a relative
 * symlink sits in). NULL when it leaves the archive root. */
static char *path_norm(const char *base, const char *p)
{
    struct cairn_buf b;
    cairn_buf_init(&b, ARCHIVE_MAX_PATH);
    if (base && *p != '/' &&
        (cairn_buf_puts(&b, base) || cairn_buf_putc(&b, '/')))
        goto fail;
    if (cairn_buf_puts(&b, p))
        goto fail;
    char *in = cairn_buf_take(&b);
    if (in == NULL)
        return NULL;
    char *out = malloc(strlen(in) + 1);
    size_t o = 0;
    if (out == NULL) {
        free(in);
        return NULL;
    }
    for (char *save = NULL, *c = strtok_r(in, "/", &save); c;
         c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0) {
            if (o == 0) {
                free(in);
                free(out);
                return NULL;
            }
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
            continue;
        }
        if (o > 0)
            out[o++] = '/';
        size_t l = strlen(c);
        memcpy(out + o, c, l);
        o += l;
    }
    out[o] = '\0';
    free(in);
    return out;
fail:
    cairn_buf_free(&b);
    return NULL;
}

/* Streams the archive into tmp/ (see the top comment). */
static int load_extract(struct archive *a, const char *tmpdir,
                        struct larchive *ar, struct cairn_err *err)
{
    struct archive_entry *e;
    int r, rc = 0;
    char *buf = malloc(COPY_CHUNK);
    if (buf == NULL)
        return CAIRN_E_NOMEM;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK ||
           r == ARCHIVE_WARN) {
        const char *p = archive_entry_pathname(e);
        mode_t type = archive_entry_filetype(e);
        const char *hl = archive_entry_hardlink(e);
        if (type == AE_IFDIR && hl == NULL)
            continue;
        if (ar->n >= ARCHIVE_MAX_ENTRIES) {
            rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                               "more than %d files in the archive",
                               ARCHIVE_MAX_ENTRIES);
            break;
        }
        if (p == NULL || strlen(p) >= ARCHIVE_MAX_PATH) {
            rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                               "archive entry with a bad or overlong name");
            break;
        }
        if (ar->n == ar->alloc) {
            size_t na = ar->alloc ? ar->alloc * 2 : 32;
            struct lentry *ne = realloc(ar->e, na * sizeof *ne);
            if (ne == NULL) {
                rc = CAIRN_E_NOMEM;
                break;
            }
            ar->e = ne;
            ar->alloc = na;
        }
        struct lentry *le = &ar->e[ar->n];
        memset(le, 0, sizeof *le);
        if ((le->path = path_norm(NULL, p)) == NULL) {
            rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                               "archive entry \"%s\" leaves the archive", p);
            break;
        }
        ar->n++;
        if (hl || type == AE_IFLNK) {
            /* docker save links layers that several images share;
             * symlink targets are relative to the link's directory,
             * hard link targets to the archive root. */
            char *dir = NULL;
            if (!hl) {
                dir = strdup(le->path);
                char *s = dir ? strrchr(dir, '/') : NULL;
                if (dir && s)
                    *s = '\0';
                else if (dir)
                    dir[0] = '\0';
            }
            const char *t = hl ? hl : archive_entry_symlink(e);
            le->link = t ? path_norm(dir && dir[0] ? dir : NULL, t) : NULL;
            free(dir);
            if (le->link == NULL) {
                rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                                   "archive link \"%s\" leaves the archive", p);
                break;
            }
            continue;
        }
        if (type != AE_IFREG)
            continue;
        int fd;
        if ((rc = cairn_archive_tmp_create(tmpdir, "load-", &le->tmp, &fd,
                                           err)))
            break;
        struct ck_sha256 *h = NULL;
        if ((rc = ck_sha256_new(&h)) != 0) {
            close(fd);
            break;
        }
        for (;;) {
            la_ssize_t n = archive_read_data(a, buf, COPY_CHUNK);
            if (n < 0) {
                rc = cairn_err_set(err, CAIRN_E_CORRUPT, "%s: %s", p,
                                   archive_error_string(a));
                break;
            }
            if (n == 0)
                break;
            if ((rc = ck_sha256_update(h, buf, (size_t)n)))
                break;
            if ((rc = cairn_write_all(fd, buf, (size_t)n))) {
                cairn_err_set(err, rc, "writing to %s: %s", tmpdir,
                              strerror(-rc));
                break;
            }
            le->size += n;
        }
        uint8_t bin[CK_SHA256_LEN];
        char hex[CK_SHA256_HEX_LEN + 1];
        if (rc == 0 && (rc = ck_sha256_final(h, bin)) == 0) {
            ck_hex_encode(bin, hex);
            snprintf(le->digest, sizeof le->digest, "sha256:%s", hex);
        }
        ck_sha256_free(h);
        if (close(fd) != 0 && rc == 0)
            rc = cairn_err_set(err, -errno, "writing to %s: %s", tmpdir,
                               strerror(errno));
        if (rc)
            break;
    }
    if (rc == 0 && r != ARCHIVE_EOF)
        rc = cairn_err_set(err, CAIRN_E_CORRUPT, "not a readable tar: %s",
                           archive_error_string(a));
    free(buf);
    return rc;
}

static struct lentry *load_find(struct larchive *ar, const char *path)
{
    char *norm = path_norm(NULL, path);
    if (norm == NULL)
        return NULL;
    struct lentry *found = NULL;
    for (int hop = 0; hop < ARCHIVE_MAX_LINKS; hop++) {
        found = NULL;
        /* The last entry of a name wins, as when tar extracts. */
        for (size_t i = ar->n; i-- > 0;) {
            if (strcmp(ar->e[i].path, norm) == 0) {
                found = &ar->e[i];
                break;
            }
        }
        if (found == NULL || found->link == NULL)
            break;
        char *next = strdup(found->link);
        free(norm);
        if ((norm = next) == NULL)
            return NULL;
        found = NULL;
    }
    free(norm);
    return found && found->tmp ? found : NULL;
}

/* The archive file of a blob, checked against its descriptor. */
static int load_blob(struct larchive *ar, const char *digest, int64_t size,
                     struct lentry **out, struct cairn_err *err)
{
    char path[CAIRN_DIGEST_STR_LEN + 16];
    if (!cairn_image_digest_valid(digest))
        return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                             "unsupported digest \"%.80s\"", digest);
    snprintf(path, sizeof path, "blobs/sha256/%s", digest + 7);
    struct lentry *le = load_find(ar, path);
    if (le == NULL)
        return cairn_err_set(err, CAIRN_E_NOTFOUND,
                             "blob %s is missing from the archive", digest);
    if (strcmp(le->digest, digest) != 0)
        return cairn_err_set(err, CAIRN_E_DIGEST,
                             "blob %s: content has digest %s", digest,
                             le->digest);
    if (size >= 0 && le->size != size)
        return cairn_err_set(err, CAIRN_E_DIGEST,
                             "blob %s: %lld bytes, the descriptor says %lld",
                             digest, (long long)le->size, (long long)size);
    *out = le;
    return 0;
}

/* Reads and parses the config of im, then checks every layer's diff_id
 * against it by decompressing the layer. */
static int load_verify_image(struct limage *im, struct cairn_err *err)
{
    char *json = NULL;
    size_t len;
    struct cairn_image_config cfg;
    int rc =
        read_small(im->config->tmp, CAIRN_IMAGE_MAX_JSON, &json, &len, err);
    if (rc == 0)
        rc = cairn_image_config_parse(json, len, &cfg, err);
    free(json);
    if (rc) {
        cairn_err_prefix(err, "config %s", im->config->digest);
        return rc;
    }
    im->created = cfg.created;
    if (cfg.ndiff_ids != im->m.nlayers) {
        rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                           "image %s has %zu layers but its config lists "
                           "%zu diff_ids",
                           im->config->digest, im->m.nlayers, cfg.ndiff_ids);
        goto out;
    }
    for (size_t i = 0; i < im->m.nlayers; i++) {
        struct cairn_layer_desc d;
        memset(&d, 0, sizeof d);
        if ((rc = cairn_layer_digest_file(im->layers[i]->tmp, &d, err))) {
            cairn_err_prefix(err, "layer %s", im->layers[i]->path);
            goto out;
        }
        if (strcmp(d.digest, im->layers[i]->digest) != 0 ||
            strcmp(d.diff_id, cfg.diff_ids[i]) != 0) {
            rc = cairn_err_set(err, CAIRN_E_DIGEST,
                               "layer %s: uncompressed digest %s, but the "
                               "config says %s",
                               im->layers[i]->path, d.diff_id, cfg.diff_ids[i]);
            goto out;
        }
        snprintf(im->m.layers[i].diff_id, sizeof im->m.layers[i].diff_id, "%s",
                 d.diff_id);
    }
out:
    cairn_image_config_clear(&cfg);
    return rc;
}

/* Picks this platform's manifest out of a multi-platform index. */
static json_t *load_pick_platform(json_t *manifests)
{
    const char *arch, *variant;
    cairn_archive_host_platform(&arch, &variant);
    size_t i;
    json_t *d, *only = NULL;
    size_t candidates = 0;
    json_array_foreach(manifests, i, d)
    {
        json_t *p = json_object_get(d, "platform");
        const char *os = json_string_value(json_object_get(p, "os"));
        const char *ar = json_string_value(json_object_get(p, "architecture"));
        if (p == NULL) {
            only = d;
            candidates++;
            continue;
        }
        /* BuildKit's attestations are "unknown/unknown": not images. */
        if (os && strcmp(os, "unknown") == 0)
            continue;
        candidates++;
        only = d;
        if (os && ar && strcmp(os, "linux") == 0 && strcmp(ar, arch) == 0)
            return d;
    }
    return candidates == 1 ? only : NULL;
}

/* Names for an image of an OCI archive: Docker's manifest.json RepoTags
 * when it lists the same config, else the containerd name, else a
 * ref.name that is a full reference ("name:tag"); a bare tag names
 * nothing we could store. */
static int load_oci_names(json_t *docker_manifest, json_t *desc,
                          struct limage *im, struct cairn_err *err)
{
    size_t i;
    json_t *item;
    char cfgpath[CAIRN_DIGEST_STR_LEN + 16];
    snprintf(cfgpath, sizeof cfgpath, "blobs/sha256/%s",
             im->m.config_digest + 7);
    bool found = false;
    json_array_foreach(docker_manifest, i, item)
    {
        const char *c = json_string_value(json_object_get(item, "Config"));
        char *norm = c ? path_norm(NULL, c) : NULL;
        bool same = norm && strcmp(norm, cfgpath) == 0;
        free(norm);
        if (!same)
            continue;
        found = true;
        size_t k;
        json_t *t;
        json_array_foreach(json_object_get(item, "RepoTags"), k, t)
        {
            int rc;
            if (json_is_string(t) &&
                (rc = push_ref(&im->tags, json_string_value(t), err)))
                return rc;
        }
    }
    if (found)
        return 0;
    json_t *ann = json_object_get(desc, "annotations");
    const char *cn =
        json_string_value(json_object_get(ann, ANNOT_CONTAINERD_NAME));
    const char *rn = json_string_value(json_object_get(ann, ANNOT_REF_NAME));
    if (cn && strchr(cn, '@') == NULL)
        return push_ref(&im->tags, cn, err);
    if (rn && (strchr(rn, ':') || strchr(rn, '/')) && strchr(rn, '@') == NULL)
        return push_ref(&im->tags, rn, err);
    return 0;
}

static int load_json_file(struct lentry *le, json_t **out,
                          struct cairn_err *err)
{
    char *data;
    size_t len;
    int rc = read_small(le->tmp, CAIRN_IMAGE_MAX_JSON, &data, &len, err);
    if (rc)
        return rc;
    json_error_t jerr;
    *out = json_loadb(data, len, 0, &jerr);
    free(data);
    if (*out == NULL)
        return cairn_err_set(err, CAIRN_E_PARSE, "%s: invalid JSON: %s",
                             le->path, jerr.text);
    return 0;
}

/* Reads the images of an OCI layout (index.json). */
static int load_oci(struct larchive *ar, json_t *index, json_t *dmanifest,
                    struct limage **out, size_t *nout, struct cairn_err *err)
{
    json_t *mans = json_object_get(index, "manifests");
    if (!json_is_array(mans))
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "index.json: manifests: expected an array");
    size_t n = json_array_size(mans);
    struct limage *ims = calloc(n ? n : 1, sizeof *ims);
    if (ims == NULL)
        return CAIRN_E_NOMEM;
    size_t nims = 0;
    int rc = 0;
    json_t *nested = NULL;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *d = json_array_get(mans, i);
        json_t *named = d;
        const char *mt = json_string_value(json_object_get(d, "mediaType"));
        struct lentry *le;
        /* A multi-platform index: follow it one level to this platform's
         * manifest; the name stays on the outer descriptor. */
        if (mt && (strcmp(mt, CAIRN_MEDIA_INDEX) == 0 ||
                   strcmp(mt, "application/vnd.docker.distribution."
                              "manifest.list.v2+json") == 0)) {
            if ((rc = load_blob(ar,
                                json_string_value(json_object_get(d, "digest")),
                                json_integer_value(json_object_get(d, "size")),
                                &le, err)) ||
                (rc = load_json_file(le, &nested, err)))
                break;
            d = load_pick_platform(json_object_get(nested, "manifests"));
            if (d == NULL) {
                rc = cairn_err_set(err, CAIRN_E_NOTFOUND,
                                   "index %s has no image for linux/this "
                                   "machine",
                                   le->digest);
                break;
            }
        }
        struct limage *im = &ims[nims++];
        cairn_strvec_init(&im->tags);
        json_t *dg = json_object_get(d, "digest");
        json_t *sz = json_object_get(d, "size");
        if (!json_is_string(dg) || !json_is_integer(sz)) {
            rc = cairn_err_set(err, CAIRN_E_PARSE,
                               "index.json: manifests[%zu]: needs digest "
                               "and size",
                               i);
            break;
        }
        if ((rc = load_blob(ar, json_string_value(dg), json_integer_value(sz),
                            &le, err)) ||
            (rc = read_small(le->tmp, CAIRN_IMAGE_MAX_JSON, &im->manifest_json,
                             &im->manifest_len, err)) ||
            (rc = cairn_manifest_parse(im->manifest_json, im->manifest_len,
                                       &im->m, err)) ||
            (rc = load_blob(ar, im->m.config_digest, im->m.config_size,
                            &im->config, err)))
            break;
        im->layers =
            calloc(im->m.nlayers ? im->m.nlayers : 1, sizeof *im->layers);
        if (im->layers == NULL) {
            rc = CAIRN_E_NOMEM;
            break;
        }
        for (size_t l = 0; rc == 0 && l < im->m.nlayers; l++)
            rc = load_blob(ar, im->m.layers[l].digest, im->m.layers[l].size,
                           &im->layers[l], err);
        if (rc == 0 && (rc = load_verify_image(im, err)) == 0)
            rc = load_oci_names(dmanifest, named, im, err);
        json_decref(nested);
        nested = NULL;
    }
    json_decref(nested);
    if (rc) {
        for (size_t i = 0; i < nims; i++)
            limage_clear(&ims[i]);
        free(ims);
        return rc;
    }
    *out = ims;
    *nout = nims;
    return 0;
}

/* Reads the images of a docker save archive (manifest.json) that has no
 * OCI index: an OCI manifest is made for each, over the same config and
 * layer bytes, so the image ID (the config digest) is Docker's. */
static int load_docker(struct larchive *ar, json_t *dman, struct limage **out,
                       size_t *nout, struct cairn_err *err)
{
    if (!json_is_array(dman))
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "manifest.json: expected an array");
    size_t n = json_array_size(dman);
    struct limage *ims = calloc(n ? n : 1, sizeof *ims);
    if (ims == NULL)
        return CAIRN_E_NOMEM;
    int rc = 0;
    size_t nims = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *item = json_array_get(dman, i);
        struct limage *im = &ims[nims++];
        cairn_strvec_init(&im->tags);
        const char *cfg = json_string_value(json_object_get(item, "Config"));
        json_t *layers = json_object_get(item, "Layers");
        if (cfg == NULL || !json_is_array(layers)) {
            rc =
                cairn_err_set(err, CAIRN_E_PARSE,
                              "manifest.json[%zu]: needs Config and Layers", i);
            break;
        }
        if ((im->config = load_find(ar, cfg)) == NULL) {
            rc = cairn_err_set(err, CAIRN_E_NOTFOUND,
                               "%s is missing from the archive", cfg);
            break;
        }
        /* The file name of a config, "<hex>.json" or blobs/sha256/<hex>,
         * is its digest: check it like any other. */
        const char *base = strrchr(im->config->path, '/');
        base = base ? base + 1 : im->config->path;
        if (strlen(base) >= CK_SHA256_HEX_LEN &&
            strspn(base, "0123456789abcdef") == CK_SHA256_HEX_LEN &&
            strncmp(base, im->config->digest + 7, CK_SHA256_HEX_LEN) != 0) {
            rc = cairn_err_set(err, CAIRN_E_DIGEST, "%s: content has digest %s",
                               cfg, im->config->digest);
            break;
        }
        size_t nl = json_array_size(layers);
        im->m.layers = calloc(nl ? nl : 1, sizeof *im->m.layers);
        im->layers = calloc(nl ? nl : 1, sizeof *im->layers);
        if (im->m.layers == NULL || im->layers == NULL) {
            rc = CAIRN_E_NOMEM;
            break;
        }
        for (size_t l = 0; rc == 0 && l < nl; l++) {
            const char *lp = json_string_value(json_array_get(layers, l));
            struct lentry *le = lp ? load_find(ar, lp) : NULL;
            if (le == NULL) {
                rc = cairn_err_set(err, CAIRN_E_NOTFOUND,
                                   "layer %s is missing from the archive",
                                   lp ? lp : "(not a string)");
                break;
            }
            const char *lb = strrchr(le->path, '/');
            lb = lb ? lb + 1 : le->path;
            if (strncmp(le->path, "blobs/sha256/", 13) == 0 &&
                strcmp(lb, le->digest + 7) != 0) {
                rc = cairn_err_set(err, CAIRN_E_DIGEST,
                                   "%s: content has digest %s", lp, le->digest);
                break;
            }
            im->layers[l] = le;
            im->m.nlayers = l + 1;
            struct cairn_layer_desc *d = &im->m.layers[l];
            snprintf(d->digest, sizeof d->digest, "%s", le->digest);
            d->size = le->size;
            d->media_type = cairn_archive_media_sniff(le->tmp);
        }
        if (rc)
            break;
        im->m.config_digest = strdup(im->config->digest);
        im->m.config_media_type = strdup(CAIRN_MEDIA_CONFIG);
        im->m.media_type = strdup(CAIRN_MEDIA_MANIFEST);
        im->m.config_size = im->config->size;
        if (!im->m.config_digest || !im->m.config_media_type ||
            !im->m.media_type) {
            rc = CAIRN_E_NOMEM;
            break;
        }
        if ((rc = load_verify_image(im, err)))
            break;
        if ((rc = cairn_manifest_to_json(&im->m, &im->manifest_json,
                                         &im->manifest_len)))
            break;
        size_t k;
        json_t *t;
        json_array_foreach(json_object_get(item, "RepoTags"), k, t)
        {
            if (json_is_string(t) &&
                (rc = push_ref(&im->tags, json_string_value(t), err)))
                break;
        }
    }
    if (rc) {
        if (rc == CAIRN_E_NOMEM)
            cairn_err_set(err, rc, "%s", cairn_strerror(rc));
        for (size_t i = 0; i < nims; i++)
            limage_clear(&ims[i]);
        free(ims);
        return rc;
    }
    *out = ims;
    *nout = nims;
    return 0;
}

/* Moves a verified file into the store (once; later users find it). */
static int load_store_blob(struct cairn_store *st, struct lentry *le,
                           struct cairn_err *err)
{
    if (le->tmp == NULL)
        return 0;
    int rc = cairn_store_blob_add_file(st, le->tmp, le->digest, err);
    if (rc == 0) {
        free(le->tmp);
        le->tmp = NULL;
    }
    return rc;
}

static void load_usage(FILE *out)
{
    fprintf(out, "Usage: cairn load [-i FILE] [-q]\n\n"
                 "Load images from a tar archive made by docker save (any "
                 "version), cairn save,\nor an OCI image layout archive "
                 "(skopeo oci-archive:). Reads standard input\nwithout -i. "
                 "Every digest is verified before anything is stored.\n\n"
                 "Options:\n"
                 "  -i, --input FILE   read from FILE (\"-\": standard input)\n"
                 "  -q, --quiet        print nothing but errors\n");
}

int cairn_cmd_load(int argc, char **argv)
{
    const char *input = NULL;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            load_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "-q") == 0 ||
                   strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--input", "-i", &missing))) {
            input = v;
        } else {
            fprintf(stderr, "cairn load: %s \"%s\"\n\n",
                    missing ? "missing value for" : "unexpected argument",
                    argv[i]);
            load_usage(stderr);
            return 2;
        }
    }
    if ((input == NULL || strcmp(input, "-") == 0) && isatty(0)) {
        fprintf(stderr, "cairn load: no archive: use -i FILE or redirect "
                        "standard input\n");
        return 2;
    }
    const char *shown = input && strcmp(input, "-") ? input : "-";

    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_store *st = NULL;
    struct larchive ar;
    memset(&ar, 0, sizeof ar);
    struct limage *ims = NULL;
    size_t nims = 0;
    json_t *index = NULL, *dman = NULL;
    struct archive *a = NULL;
    int status = 1, rc;
    if ((rc = cairn_cli_store_open(&st, &err)))
        goto fail;
    if ((a = archive_read_new()) == NULL) {
        rc = CAIRN_E_NOMEM;
        goto fail;
    }
    /* docker save output is a plain tar, but people gzip it. */
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    if ((strcmp(shown, "-") == 0 ? archive_read_open_fd(a, 0, COPY_CHUNK)
                                 : archive_read_open_filename(
                                       a, input, COPY_CHUNK)) != ARCHIVE_OK) {
        rc =
            cairn_err_set(&err, CAIRN_E_ARCHIVE, "%s", archive_error_string(a));
        goto fail;
    }
    if ((rc = load_extract(a, cairn_store_tmpdir(st), &ar, &err)))
        goto fail;

    struct lentry *idx = load_find(&ar, "index.json");
    struct lentry *man = load_find(&ar, "manifest.json");
    if ((man && (rc = load_json_file(man, &dman, &err))) ||
        (idx && (rc = load_json_file(idx, &index, &err))))
        goto fail;
    /* With both (Docker 25+, cairn save), the OCI side is read: it keeps
     * the manifest digests; manifest.json still supplies the names. */
    if (idx)
        rc = load_oci(&ar, index, dman, &ims, &nims, &err);
    else if (man)
        rc = load_docker(&ar, dman, &ims, &nims, &err);
    else
        rc = cairn_err_set(&err, CAIRN_E_CORRUPT,
                           "neither manifest.json nor index.json: not a "
                           "docker save or OCI archive");
    if (rc)
        goto fail;
    if (nims == 0) {
        rc = cairn_err_set(&err, CAIRN_E_NOTFOUND, "no images in the archive");
        goto fail;
    }

    /* Everything is verified; from here on the store changes. */
    for (size_t i = 0; i < nims; i++) {
        struct limage *im = &ims[i];
        char mdig[CAIRN_DIGEST_STR_LEN];
        if ((rc = load_store_blob(st, im->config, &err)))
            goto fail;
        for (size_t l = 0; l < im->m.nlayers; l++)
            if ((rc = load_store_blob(st, im->layers[l], &err)))
                goto fail;
        if ((rc = cairn_archive_image_commit(
                 st, im->manifest_json, im->manifest_len, &im->m, im->created,
                 im->tags.v, im->tags.n, mdig, &err)))
            goto fail;
        if (quiet)
            continue;
        for (size_t t = 0; t < im->tags.n; t++)
            printf("Loaded image: %s\n", im->tags.v[t]);
        if (im->tags.n == 0)
            printf("Loaded image ID: %s\n", im->m.config_digest);
    }
    status = 0;
    goto out;
fail:
    fprintf(stderr, "cairn load: %s: %s\n", shown,
            err.msg[0] ? err.msg : cairn_strerror(rc));
out:
    for (size_t i = 0; i < nims; i++)
        limage_clear(&ims[i]);
    free(ims);
    json_decref(index);
    json_decref(dman);
    if (a)
        archive_read_free(a);
    larchive_free(&ar);
    cairn_store_close(st);
    return status;
}
