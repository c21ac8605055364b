/* Manifests from registries and the platform choice
 * (client/registry/manifest.h). */
#include "client/registry/manifest.h"

#include "cachekey/digest.h"
#include "client/store/image.h"
#include "common/buf.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MEDIA_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+json"
#define MEDIA_SCHEMA1_SIGNED                                                   \
    "application/vnd.docker.distribution.manifest.v1+prettyjws"
#define MEDIA_DOCKER_FOREIGN                                                   \
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
#define MEDIA_OCI_NONDIST_PREFIX                                               \
    "application/vnd.oci.image.layer.nondistributable.v1.tar"
#define LIST_MAX 512 /* the platforms named in a "no match" message */

static int schema1_refuse(const char *mt, struct cairn_err *err)
{
    return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                         "the registry served a Docker schema 1 manifest "
                         "(%s), which is deprecated and not supported: push "
                         "the image again with a current client",
                         mt);
}

int cairn_reg_manifest_kind(const char *content_type, const char *body,
                            size_t len, enum cairn_reg_kind *out,
                            struct cairn_err *err)
{
    if (len > CAIRN_REG_MANIFEST_MAX)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "manifest of %zu bytes, over the %u limit", len,
                             CAIRN_REG_MANIFEST_MAX);
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return cairn_err_set(err, CAIRN_E_PARSE, "manifest is not JSON: %s",
                             j ? "not an object" : je.text);
    }
    const char *mt = json_string_value(json_object_get(j, "mediaType"));
    json_int_t sv = json_integer_value(json_object_get(j, "schemaVersion"));
    char ct[128] = "";
    if (content_type) {
        /* "type; charset=..." -> "type" */
        snprintf(ct, sizeof ct, "%.*s", (int)strcspn(content_type, "; "),
                 content_type);
    }
    if (mt == NULL && ct[0] && strcmp(ct, "application/json") != 0)
        mt = ct;
    int rc = 0;
    enum cairn_reg_kind k = 0;
    if (sv == 1 || (mt && (strcmp(mt, MEDIA_SCHEMA1) == 0 ||
                           strcmp(mt, MEDIA_SCHEMA1_SIGNED) == 0)))
        rc = schema1_refuse(mt ? mt : "schemaVersion 1", err);
    else if (mt && (strcmp(mt, CAIRN_MEDIA_INDEX) == 0 ||
                    strcmp(mt, CAIRN_REG_MEDIA_DOCKER_LIST) == 0))
        k = CAIRN_REG_INDEX;
    else if (mt && (strcmp(mt, CAIRN_MEDIA_MANIFEST) == 0 ||
                    strcmp(mt, CAIRN_MEDIA_DOCKER_MANIFEST) == 0))
        k = CAIRN_REG_IMAGE;
    else if (mt)
        rc = cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                           "manifest media type \"%.100s\" is not an image "
                           "manifest or index",
                           mt);
    else if (json_is_array(json_object_get(j, "manifests")))
        k = CAIRN_REG_INDEX;
    else if (json_is_object(json_object_get(j, "config")))
        k = CAIRN_REG_IMAGE;
    else
        rc = cairn_err_set(err, CAIRN_E_PARSE,
                           "manifest has no mediaType and is neither an "
                           "index nor an image manifest");
    if (rc == 0 && sv != 2)
        rc = cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                           "manifest schemaVersion %lld is not 2",
                           (long long)sv);
    json_decref(j);
    if (rc == 0)
        *out = k;
    return rc;
}

int cairn_reg_manifest_digest(const char *body, size_t len,
                              char out[CAIRN_DIGEST_STR_LEN])
{
    uint8_t bin[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    int rc = ck_sha256(body, len, bin);
    if (rc)
        return rc;
    ck_hex_encode(bin, hex);
    snprintf(out, CAIRN_DIGEST_STR_LEN, "sha256:%s", hex);
    return 0;
}

/* ------------------------------------------------------------------ */
/* platforms                                                            */

static void lower_copy(char *dst, size_t len, const char *s, size_t n)
{
    if (n >= len)
        n = len - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i];
    dst[n] = '\0';
}

/* containerd's normalisation of an architecture and its variant. */
static void platform_norm(struct cairn_reg_platform *p)
{
    static const struct {
        const char *from, *arch, *variant; /* variant NULL: keep */
    } arch_map[] = {
        {"x86_64", "amd64", NULL}, {"x86-64", "amd64", NULL},
        {"i386", "386", ""},       {"aarch64", "arm64", NULL},
        {"armhf", "arm", "v7"},    {"armel", "arm", "v6"},
    };
    for (size_t i = 0; i < sizeof arch_map / sizeof arch_map[0]; i++)
        if (strcmp(p->arch, arch_map[i].from) == 0) {
            snprintf(p->arch, sizeof p->arch, "%s", arch_map[i].arch);
            if (arch_map[i].variant)
                snprintf(p->variant, sizeof p->variant, "%s",
                         arch_map[i].variant);
        }
    /* A bare number is a version: "7" -> "v7". */
    if (p->variant[0] >= '0' && p->variant[0] <= '9') {
        char v[sizeof p->variant];
        snprintf(v, sizeof v, "v%.14s", p->variant);
        memcpy(p->variant, v, sizeof v);
    }
    if (strcmp(p->arch, "arm64") == 0 &&
        (strcmp(p->variant, "v8") == 0 || strcmp(p->variant, "v8.0") == 0))
        p->variant[0] = '\0'; /* arm64's default: compare it as "" */
    if (strcmp(p->arch, "arm") == 0 && p->variant[0] == '\0')
        memcpy(p->variant, "v7", 3);
    if (strcmp(p->arch, "amd64") == 0 && strcmp(p->variant, "v1") == 0)
        p->variant[0] = '\0';
}

static bool name_ok(const char *s)
{
    if (s[0] == '\0')
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return false;
    return true;
}

int cairn_reg_platform_parse(const char *s, struct cairn_reg_platform *out,
                             struct cairn_err *err)
{
    struct cairn_reg_platform p;
    memset(&p, 0, sizeof p);
    const char *a = strchr(s, '/');
    const char *v = a ? strchr(a + 1, '/') : NULL;
    if (a == NULL || (v && strchr(v + 1, '/')) ||
        (size_t)(a - s) >= sizeof p.os ||
        (v ? (size_t)(v - a - 1) : strlen(a + 1)) >= sizeof p.arch ||
        (v && strlen(v + 1) >= sizeof p.variant))
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "platform \"%.100s\": expected os/arch[/variant]",
                             s);
    lower_copy(p.os, sizeof p.os, s, (size_t)(a - s));
    lower_copy(p.arch, sizeof p.arch, a + 1,
               v ? (size_t)(v - a - 1) : strlen(a + 1));
    if (v)
        lower_copy(p.variant, sizeof p.variant, v + 1, strlen(v + 1));
    if (!name_ok(p.os) || !name_ok(p.arch) || (v && !name_ok(p.variant)))
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "platform \"%.100s\": expected os/arch[/variant]",
                             s);
    platform_norm(&p);
    *out = p;
    return 0;
}

void cairn_reg_platform_format(const struct cairn_reg_platform *p, char *buf,
                               size_t len)
{
    snprintf(buf, len, "%s/%s%s%s", p->os, p->arch, p->variant[0] ? "/" : "",
             p->variant);
}

/* containerd's preference list for want: itself, then what it also
 * runs. Returns the count written into v (at most max). */
static size_t platform_vector(const struct cairn_reg_platform *want,
                              struct cairn_reg_platform *v, size_t max)
{
    size_t n = 0;
    v[n++] = *want;
    int ver = 0;
    if (strcmp(want->arch, "arm64") == 0) {
        ver = 9; /* arm64 runs arm v8 down to v5 */
    } else if (strcmp(want->arch, "arm") == 0 && want->variant[0] == 'v') {
        ver = want->variant[1] - '0';
    } else if (strcmp(want->arch, "amd64") == 0 && n < max) {
        v[n] = *want;
        memcpy(v[n].arch, "386", 4);
        v[n].variant[0] = '\0';
        n++;
    }
    for (int k = ver - 1; k >= 5 && n < max; k--) {
        v[n] = *want;
        memcpy(v[n].arch, "arm", 4);
        snprintf(v[n].variant, sizeof v[n].variant, "v%d", k);
        n++;
    }
    return n;
}

/* The platform of an index entry, normalised; false when it has none. */
static bool entry_platform(json_t *d, struct cairn_reg_platform *p)
{
    json_t *pl = json_object_get(d, "platform");
    const char *os = json_string_value(json_object_get(pl, "os"));
    const char *ar = json_string_value(json_object_get(pl, "architecture"));
    const char *va = json_string_value(json_object_get(pl, "variant"));
    memset(p, 0, sizeof *p);
    if (os == NULL || ar == NULL)
        return false;
    lower_copy(p->os, sizeof p->os, os, strlen(os));
    lower_copy(p->arch, sizeof p->arch, ar, strlen(ar));
    if (va)
        lower_copy(p->variant, sizeof p->variant, va, strlen(va));
    platform_norm(p);
    return true;
}

static bool platform_eq(const struct cairn_reg_platform *a,
                        const struct cairn_reg_platform *b)
{
    return strcmp(a->os, b->os) == 0 && strcmp(a->arch, b->arch) == 0 &&
           strcmp(a->variant, b->variant) == 0;
}

int cairn_reg_index_pick(const char *body, size_t len,
                         const struct cairn_reg_platform *want,
                         struct cairn_reg_desc *out, struct cairn_err *err)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    json_t *mans = json_object_get(j, "manifests");
    if (!json_is_array(mans)) {
        json_decref(j);
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "index: manifests: expected an array");
    }
    struct cairn_reg_platform vec[8];
    size_t nvec = platform_vector(want, vec, 8);
    size_t best_rank = nvec;
    json_t *best = NULL;
    size_t i, best_i = 0;
    json_t *d;
    json_array_foreach(mans, i, d)
    {
        struct cairn_reg_platform p;
        /* "unknown/unknown" marks attestations, never an image. */
        if (!entry_platform(d, &p) || strcmp(p.os, "unknown") == 0)
            continue;
        for (size_t r = 0; r < best_rank; r++)
            if (platform_eq(&p, &vec[r])) {
                best_rank = r;
                best = d;
                best_i = i;
                break;
            }
    }
    int rc = 0;
    if (best == NULL) {
        /* Name what the index has, so the user can pick. */
        struct cairn_buf have;
        cairn_buf_init(&have, LIST_MAX);
        json_array_foreach(mans, i, d)
        {
            struct cairn_reg_platform p;
            char name[96];
            if (!entry_platform(d, &p) || strcmp(p.os, "unknown") == 0)
                continue;
            cairn_reg_platform_format(&p, name, sizeof name);
            if (have.len == 0 || strstr(have.data, name) == NULL)
                cairn_buf_printf(&have, "%s%s", have.len ? ", " : "", name);
        }
        char w[96];
        cairn_reg_platform_format(want, w, sizeof w);
        rc = cairn_err_set(err, CAIRN_E_NOTFOUND,
                           "no image for platform %s in the index; it has: "
                           "%s",
                           w, have.len ? have.data : "(no platforms)");
        cairn_buf_free(&have);
        goto out;
    }
    const char *dg = json_string_value(json_object_get(best, "digest"));
    const char *mt = json_string_value(json_object_get(best, "mediaType"));
    json_t *sz = json_object_get(best, "size");
    if (!dg || !cairn_image_digest_valid(dg) || !json_is_integer(sz) ||
        json_integer_value(sz) < 0 ||
        json_integer_value(sz) > CAIRN_REG_MANIFEST_MAX) {
        rc = cairn_err_set(err, CAIRN_E_PARSE,
                           "index: manifests[%zu]: bad digest or size", best_i);
        goto out;
    }
    memset(out, 0, sizeof *out);
    snprintf(out->digest, sizeof out->digest, "%s", dg);
    out->size = json_integer_value(sz);
    snprintf(out->media_type, sizeof out->media_type, "%s", mt ? mt : "");
out:
    json_decref(j);
    return rc;
}

/* ------------------------------------------------------------------ */
/* layers                                                               */

void cairn_reg_foreign_clear(struct cairn_reg_foreign *f)
{
    for (size_t i = 0; f && i < f->nurls; i++)
        free(f->urls[i]);
    if (f)
        memset(f, 0, sizeof *f);
}

static bool foreign_media(const char *mt)
{
    return strcmp(mt, MEDIA_DOCKER_FOREIGN) == 0 ||
           strncmp(mt, MEDIA_OCI_NONDIST_PREFIX,
                   strlen(MEDIA_OCI_NONDIST_PREFIX)) == 0;
}

int cairn_reg_manifest_layers(const char *body, size_t len,
                              struct cairn_reg_foreign *f, size_t n,
                              struct cairn_err *err)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    json_t *layers = json_object_get(j, "layers");
    int rc = 0;
    if (json_array_size(layers) != n)
        rc = cairn_err_set(err, CAIRN_E_PARSE, "manifest: layers changed");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *l = json_array_get(layers, i);
        const char *mt = json_string_value(json_object_get(l, "mediaType"));
        memset(&f[i], 0, sizeof f[i]);
        if (mt && foreign_media(mt)) {
            f[i].foreign = true;
            size_t k;
            json_t *u;
            json_array_foreach(json_object_get(l, "urls"), k, u)
            {
                const char *s = json_string_value(u);
                if (f[i].nurls == CAIRN_REG_URLS_MAX)
                    break;
                /* Only http(s) and a sane length: anything else is not
                 * something to fetch. */
                if (s == NULL || strlen(s) > 4096 ||
                    (strncmp(s, "https://", 8) != 0 &&
                     strncmp(s, "http://", 7) != 0) ||
                    strpbrk(s, " \r\n\t") != NULL)
                    continue;
                if ((f[i].urls[f[i].nurls] = strdup(s)) == NULL) {
                    rc = CAIRN_E_NOMEM;
                    break;
                }
                f[i].nurls++;
            }
        } else if (mt == NULL || cairn_image_layer_media_static(mt) == NULL) {
            rc = cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                               "layer %zu: media type \"%.100s\" is not a "
                               "layer cairn can unpack (gzip, zstd or plain "
                               "tar)",
                               i, mt ? mt : "(none)");
        }
    }
    if (rc)
        for (size_t i = 0; i < n; i++)
            cairn_reg_foreign_clear(&f[i]);
    json_decref(j);
    return rc;
}
