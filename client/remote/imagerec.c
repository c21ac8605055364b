#include "client/remote/imagerec.h"

#include "cachekey/digest.h"
#include "client/store/image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMAGEREC_TAG "cairn image record v1"
#define IMAGEREC_CONFIG "config"
#define IMAGEREC_MANIFEST "manifest"
#define IMAGEREC_PROP_MEDIA "cairn.media_type"
#define IMAGEREC_PROP_CREATED "cairn.created"

int cairn_imagerec_action(const struct cairn_imagerec_key *k,
                          struct cairn_buf *material,
                          struct cairn_remote_digest *action)
{
    /* NUL-separated: no field holds a NUL, so no two keys share a
     * material. */
    const char *f[] = {IMAGEREC_TAG, k->final_key, k->target, k->platform};
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof f / sizeof f[0]; i++) {
        rc = cairn_buf_puts(material, f[i] ? f[i] : "");
        if (!rc)
            rc = cairn_buf_putc(material, '\0');
    }
    if (rc)
        return rc;
    uint8_t h[CK_SHA256_LEN];
    ck_sha256(material->data, material->len, h);
    ck_hex_encode(h, action->hash);
    action->size = (int64_t)material->len;
    return 0;
}

static const struct cairn_remote_file *file_get(
    const struct cairn_remote_result *res, const char *path)
{
    for (size_t i = 0; i < res->nfiles; i++)
        if (strcmp(res->files[i].path, path) == 0)
            return &res->files[i];
    return NULL;
}

static const char *prop_get(const struct cairn_remote_file *f,
                            const char *name)
{
    for (size_t i = 0; f != NULL && i < f->nprops; i++)
        if (strcmp(f->props[i].name, name) == 0)
            return f->props[i].value;
    return NULL;
}

/* Lowercase hex only: the digest must name one blob, spelled one way. */
static bool hash_ok(const char *h)
{
    if (strlen(h) != 64)
        return false;
    for (const char *p = h; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* Decimal digits only, no sign, no leading zero, at most the cap. */
static bool created_parse(const char *s, int64_t *out)
{
    if (s == NULL || *s == '\0' || strlen(s) > 12 || (s[0] == '0' && s[1]))
        return false;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (*p - '0');
    }
    if (v > CAIRN_IMAGEREC_MAX_CREATED)
        return false;
    *out = v;
    return true;
}

static int blob_check(const struct cairn_remote_file *f, const char *media,
                      const char *what, char digest[CAIRN_DIGEST_STR_LEN],
                      int64_t *size, struct cairn_err *err)
{
    const char *mt = prop_get(f, IMAGEREC_PROP_MEDIA);
    if (f == NULL)
        return cairn_err_set(err, CAIRN_E_CORRUPT, "no %s file", what);
    if (mt == NULL || strcmp(mt, media) != 0)
        return cairn_err_set(err, CAIRN_E_CORRUPT,
                             "the %s's media type is not %s", what, media);
    if (!hash_ok(f->digest.hash) || f->digest.size <= 0 ||
        f->digest.size > (int64_t)CAIRN_IMAGE_MAX_JSON)
        return cairn_err_set(err, CAIRN_E_CORRUPT,
                             "the %s's digest or size (%lld bytes; at most "
                             "%u) is bad",
                             what, (long long)f->digest.size,
                             CAIRN_IMAGE_MAX_JSON);
    snprintf(digest, CAIRN_DIGEST_STR_LEN, "sha256:%s", f->digest.hash);
    *size = f->digest.size;
    return 0;
}

int cairn_imagerec_result_parse(const struct cairn_remote_result *res,
                                struct cairn_imagerec *out,
                                struct cairn_err *err)
{
    const struct cairn_remote_file *cf = file_get(res, IMAGEREC_CONFIG);
    const struct cairn_remote_file *mf = file_get(res, IMAGEREC_MANIFEST);
    if (res->exit_code != 0 || prop_get(cf, IMAGEREC_PROP_MEDIA) == NULL)
        return CAIRN_E_NOTFOUND;
    struct cairn_imagerec rec;
    memset(&rec, 0, sizeof rec);
    int rc = blob_check(cf, CAIRN_MEDIA_CONFIG, "config", rec.config_digest,
                        &rec.config_size, err);
    if (!rc)
        rc = blob_check(mf, CAIRN_MEDIA_MANIFEST, "manifest",
                        rec.manifest_digest, &rec.manifest_size, err);
    if (!rc && !created_parse(prop_get(cf, IMAGEREC_PROP_CREATED),
                              &rec.created))
        rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                           "no creation time, or a bad one");
    if (!rc)
        *out = rec;
    return rc;
}

void cairn_imagerec_result_make(const struct cairn_imagerec *rec,
                                struct cairn_remote_result *res)
{
    memset(res, 0, sizeof *res);
    res->nfiles = 2;
    struct cairn_remote_file *cf = &res->files[0], *mf = &res->files[1];
    snprintf(cf->path, sizeof cf->path, IMAGEREC_CONFIG);
    snprintf(cf->digest.hash, sizeof cf->digest.hash, "%s",
             rec->config_digest + 7);
    cf->digest.size = rec->config_size;
    /* Sorted by name, as REAPI asks of node properties. */
    snprintf(cf->props[0].name, sizeof cf->props[0].name,
             IMAGEREC_PROP_CREATED);
    snprintf(cf->props[0].value, sizeof cf->props[0].value, "%lld",
             (long long)rec->created);
    snprintf(cf->props[1].name, sizeof cf->props[1].name, IMAGEREC_PROP_MEDIA);
    snprintf(cf->props[1].value, sizeof cf->props[1].value,
             CAIRN_MEDIA_CONFIG);
    cf->nprops = 2;
    snprintf(mf->path, sizeof mf->path, IMAGEREC_MANIFEST);
    snprintf(mf->digest.hash, sizeof mf->digest.hash, "%s",
             rec->manifest_digest + 7);
    mf->digest.size = rec->manifest_size;
    snprintf(mf->props[0].name, sizeof mf->props[0].name, IMAGEREC_PROP_MEDIA);
    snprintf(mf->props[0].value, sizeof mf->props[0].value,
             CAIRN_MEDIA_MANIFEST);
    mf->nprops = 1;
}

int cairn_imagerec_lookup(struct cairn_cache *c,
                          const struct cairn_imagerec_key *k,
                          struct cairn_imagerec *out, struct cairn_err *err)
{
    struct cairn_buf mat;
    cairn_buf_init(&mat, 0);
    struct cairn_remote_digest action;
    struct cairn_remote_result *res = calloc(1, sizeof *res);
    int rc = res == NULL ? CAIRN_E_NOMEM
                         : cairn_imagerec_action(k, &mat, &action);
    if (!rc) {
        char what[100];
        snprintf(what, sizeof what, "image record of key %.12s",
                 k->final_key);
        rc = cairn_cache_entry_get(c, &action, res, what);
        /* Trouble with the cache was said; for the build it is a miss. */
        if (rc && rc != CAIRN_E_NOTFOUND)
            rc = CAIRN_E_NOTFOUND;
    }
    if (!rc)
        rc = cairn_imagerec_result_parse(res, out, err);
    free(res);
    cairn_buf_free(&mat);
    return rc;
}

void cairn_imagerec_prefetch(struct cairn_cache *c,
                             const struct cairn_imagerec_key *k)
{
    struct cairn_buf mat;
    cairn_buf_init(&mat, 0);
    struct cairn_remote_digest action;
    if (cairn_imagerec_action(k, &mat, &action) == 0)
        cairn_cache_entry_prefetch(c, &action);
    cairn_buf_free(&mat);
}

void cairn_imagerec_offer(struct cairn_cache *c, struct cairn_store *st,
                          const struct cairn_imagerec_key *k,
                          const struct cairn_imagerec *rec, bool check)
{
    if (check) {
        struct cairn_imagerec have;
        struct cairn_err scratch;
        cairn_err_clear(&scratch);
        if (cairn_imagerec_lookup(c, k, &have, &scratch) == 0 &&
            memcmp(&have, rec, sizeof have) == 0)
            return;
    }
    struct cairn_buf mat;
    cairn_buf_init(&mat, 0);
    struct cairn_remote_digest action;
    struct cairn_remote_result *res = calloc(1, sizeof *res);
    if (res == NULL || cairn_imagerec_action(k, &mat, &action) != 0) {
        fprintf(stderr, "cairn: warning: out of memory uploading the image "
                        "record\n");
    } else {
        cairn_imagerec_result_make(rec, res);
        const char *blobs[] = {rec->config_digest, rec->manifest_digest};
        char what[100];
        snprintf(what, sizeof what, "upload of the image record of key %.12s",
                 k->final_key);
        cairn_cache_entry_put(c, st, &action, mat.data, blobs, 2, res, what);
    }
    free(res);
    cairn_buf_free(&mat);
}
