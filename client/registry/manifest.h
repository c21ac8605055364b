/* Manifests as a registry serves them, and the platform choice in an
 * index, as containerd makes it.
 *
 * Kinds: Docker schema 2 and OCI image manifests (images); Docker
 * manifest lists and OCI image indexes (indexes). Docker's schema 1
 * (signed or not) is refused with a message that names it. Every
 * manifest is capped at CAIRN_REG_MANIFEST_MAX bytes.
 *
 * Layers: gzip, zstd and uncompressed tar (OCI and Docker types), and
 * non-distributable ("foreign") layers with their URLs: a pull tries the
 * URLs first and then the registry, as containerd's fetcher does.
 *
 * Pure functions on bytes; thread-safe.
 */
#ifndef CAIRN_CLIENT_REGISTRY_MANIFEST_H
#define CAIRN_CLIENT_REGISTRY_MANIFEST_H

#include "client/store/layer.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAIRN_REG_MANIFEST_MAX (4u << 20)
#define CAIRN_REG_MEDIA_DOCKER_LIST                                            \
    "application/vnd.docker.distribution.manifest.list.v2+json"
/* The Accept header of every manifest request: a registry answers a
 * request without a type with schema 1, or 404 for an OCI manifest. */
#define CAIRN_REG_ACCEPT                                                       \
    "Accept: application/vnd.oci.image.index.v1+json, "                        \
    "application/vnd.docker.distribution.manifest.list.v2+json, "              \
    "application/vnd.oci.image.manifest.v1+json, "                             \
    "application/vnd.docker.distribution.manifest.v2+json"
#define CAIRN_REG_URLS_MAX 8 /* URLs tried for one foreign layer */

enum cairn_reg_kind { CAIRN_REG_IMAGE = 1, CAIRN_REG_INDEX = 2 };

/* Which kind body is: its mediaType, else content_type (the answer's
 * Content-Type, may be NULL), else its shape (an OCI manifest may omit
 * mediaType). CAIRN_E_UNSUPPORTED for schema 1 and unknown types,
 * CAIRN_E_PARSE for bytes that are not a JSON object. */
int cairn_reg_manifest_kind(const char *content_type, const char *body,
                            size_t len, enum cairn_reg_kind *out,
                            struct cairn_err *err);

/* "sha256:<hex>" of body into out. */
int cairn_reg_manifest_digest(const char *body, size_t len,
                              char out[CAIRN_DIGEST_STR_LEN]);

struct cairn_reg_platform {
    char os[32];
    char arch[32];
    char variant[16]; /* "" when none */
};

/* Parses "os/arch[/variant]" and normalises it as containerd does
 * (x86_64 -> amd64, aarch64 -> arm64, armhf -> arm/v7, "7" -> "v7", an
 * arm without variant -> v7, arm64's v8 is its default). CAIRN_E_INVAL
 * with the reason otherwise. */
int cairn_reg_platform_parse(const char *s, struct cairn_reg_platform *out,
                             struct cairn_err *err);

/* "os/arch[/variant]" into buf. */
void cairn_reg_platform_format(const struct cairn_reg_platform *p, char *buf,
                               size_t len);

/* One manifest of an index. */
struct cairn_reg_desc {
    char digest[CAIRN_DIGEST_STR_LEN];
    int64_t size;
    char media_type[128];
};

/* Picks want's manifest in an index's bytes: an exact platform first,
 * then what containerd accepts in its place (arm64 runs arm/v8..v5, arm
 * vN runs arm v(N-1)..v5, amd64 runs 386), in that order; entries
 * without a platform or for "unknown" (attestations) never match.
 * CAIRN_E_NOTFOUND with a message listing the platforms the index has. */
int cairn_reg_index_pick(const char *body, size_t len,
                         const struct cairn_reg_platform *want,
                         struct cairn_reg_desc *out, struct cairn_err *err);

/* A layer of an image manifest that cairn_manifest_parse does not keep:
 * whether it is non-distributable and its URLs (http/https only, at most
 * CAIRN_REG_URLS_MAX). urls[i] are malloc'd; free with
 * cairn_reg_foreign_clear. */
struct cairn_reg_foreign {
    bool foreign;
    char *urls[CAIRN_REG_URLS_MAX];
    size_t nurls;
};
void cairn_reg_foreign_clear(struct cairn_reg_foreign *f);

/* Checks every layer's media type (gzip, zstd, tar, foreign; anything
 * else is CAIRN_E_UNSUPPORTED naming it) and fills f[i] for each of the
 * n layers of the image manifest body (n as cairn_manifest_parse counted
 * them). */
int cairn_reg_manifest_layers(const char *body, size_t len,
                              struct cairn_reg_foreign *f, size_t n,
                              struct cairn_err *err);

#endif
