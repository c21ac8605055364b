#include "client/engine/image_render.h"

#include "cachekey/digest.h"
#include "client/store/image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void build_image_json_clear(struct image_json *j)
{
    if (j == NULL)
        return;
    free(j->config);
    free(j->manifest);
    memset(j, 0, sizeof *j);
}

static void digest_of(const char *p, size_t n, char out[CAIRN_DIGEST_STR_LEN])
{
    uint8_t h[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    ck_sha256(p, n, h);
    ck_hex_encode(h, hex);
    snprintf(out, CAIRN_DIGEST_STR_LEN, "sha256:%s", hex);
}

int build_image_render(struct build *b, int64_t t, struct image_json *out)
{
    const struct stage_out *so = &b->stages[b->plan->target];
    struct image_json j;
    memset(&j, 0, sizeof j);
    j.created = t;
    struct cairn_image_config cfg;
    cairn_image_config_init(&cfg);
    int rc = cairn_image_config_copy(&cfg, &so->cfg);
    if (rc)
        goto out;
    /* A base image's entry made in this very second would move too; the
     * record then does not match, and the image is made anew: safe. */
    cfg.created = t;
    for (size_t i = 0; i < cfg.nhistory; i++)
        if (cfg.history[i].created == b->now)
            cfg.history[i].created = t;
    rc = cairn_image_config_to_json(&cfg, &j.config, &j.config_len);
    if (rc)
        goto out;
    digest_of(j.config, j.config_len, j.config_digest);
    struct cairn_manifest m = {
        .media_type = CAIRN_MEDIA_MANIFEST,
        .config_digest = j.config_digest,
        .config_size = (int64_t)j.config_len,
        .config_media_type = CAIRN_MEDIA_CONFIG,
        .layers = so->layers,
        .nlayers = so->nlayers,
    };
    rc = cairn_manifest_to_json(&m, &j.manifest, &j.manifest_len);
    if (rc)
        goto out;
    digest_of(j.manifest, j.manifest_len, j.manifest_digest);
out:
    cairn_image_config_clear(&cfg);
    if (rc)
        build_image_json_clear(&j);
    else
        *out = j;
    return rc;
}

void build_image_record_key(struct build *b, char name[24],
                            struct cairn_imagerec_key *out)
{
    const struct ck_stage *ts = &b->plan->stages[b->plan->target];
    snprintf(name, 24, "%zu", ts->index);
    out->final_key = b->keys->keys[ts->first_step + ts->nsteps - 1].hex;
    out->target = ts->name ? ts->name : name;
    out->platform = ts->platform;
}

void build_image_record_of(const struct image_json *j,
                           struct cairn_imagerec *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->config_digest, sizeof out->config_digest, "%s",
             j->config_digest);
    out->config_size = (int64_t)j->config_len;
    snprintf(out->manifest_digest, sizeof out->manifest_digest, "%s",
             j->manifest_digest);
    out->manifest_size = (int64_t)j->manifest_len;
    out->created = j->created;
}

bool build_image_record_take(struct build *b, struct image_json *out)
{
    char name[24];
    struct cairn_imagerec_key k;
    build_image_record_key(b, name, &k);
    struct cairn_imagerec rec;
    struct cairn_err e;
    cairn_err_clear(&e);
    int rc = cairn_imagerec_lookup(b->o->cache, &k, &rec, &e);
    if (rc == CAIRN_E_NOTFOUND)
        return false;
    if (rc) {
        fprintf(stderr, "cairn: warning: the cache's image record of key "
                        "%.12s is refused: %s; the image is made anew\n",
                k.final_key, e.msg[0] ? e.msg : cairn_strerror(rc));
        return false;
    }
    struct image_json j;
    rc = build_image_render(b, rec.created, &j);
    if (rc) {
        fprintf(stderr, "cairn: warning: cannot check the cache's image "
                        "record: %s; the image is made anew\n",
                cairn_strerror(rc));
        return false;
    }
    /* Our own bytes at the record's time: the record only picks the
     * time. Layers, diff_ids, history and settings are all ours. */
    if (strcmp(j.config_digest, rec.config_digest) != 0 ||
        (int64_t)j.config_len != rec.config_size ||
        strcmp(j.manifest_digest, rec.manifest_digest) != 0 ||
        (int64_t)j.manifest_len != rec.manifest_size) {
        fprintf(stderr,
                "cairn: warning: the cache's image record of key %.12s is "
                "refused: its config %.19s or manifest %.19s is not what "
                "this build's layers and settings make (at its time, %lld); "
                "the image is made anew\n",
                k.final_key, rec.config_digest, rec.manifest_digest,
                (long long)rec.created);
        build_image_json_clear(&j);
        return false;
    }
    *out = j;
    return true;
}
