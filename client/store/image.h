/* OCI image metadata: the image config (what docker inspect shows under
 * Config, plus rootfs and history) and the image manifest, to and from
 * JSON (jansson).
 *
 * Generated JSON is canonical (keys sorted, compact, no insignificant
 * whitespace), so the same image always has the same digests. Parsing
 * accepts Docker's and OCI's configs and manifests (schema 2 / OCI v1) and
 * caps sizes (CAIRN_IMAGE_MAX_JSON). Structs own their strings; clear with
 * the _clear functions. Not thread-safe per struct.
 */
#ifndef CAIRN_CLIENT_IMAGE_H
#define CAIRN_CLIENT_IMAGE_H

#include "client/store/layer.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAIRN_IMAGE_MAX_JSON (8u << 20)
#define CAIRN_MEDIA_CONFIG "application/vnd.oci.image.config.v1+json"
#define CAIRN_MEDIA_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define CAIRN_MEDIA_INDEX "application/vnd.oci.image.index.v1+json"
#define CAIRN_MEDIA_DOCKER_MANIFEST                                            \
    "application/vnd.docker.distribution.manifest.v2+json"
#define CAIRN_MEDIA_DOCKER_CONFIG                                              \
    "application/vnd.docker.container.image.v1+json"

struct cairn_history {
    int64_t created;  /* seconds since the epoch; < 0: absent */
    char *created_by; /* e.g. "RUN /bin/sh -c make" */
    char *comment;
    bool empty_layer;
};

struct cairn_healthcheck {
    char **test; /* {"NONE"} | {"CMD", argv...} | {"CMD-SHELL", cmd} */
    size_t ntest;
    int64_t interval_ns, timeout_ns, start_period_ns, start_interval_ns;
    int retries;
};

struct cairn_image_config {
    char *architecture; /* "amd64" */
    char *os;           /* "linux" */
    char *variant;      /* may be NULL */
    int64_t created;    /* seconds since the epoch; < 0: absent */
    char *author;       /* MAINTAINER; may be NULL */

    /* config.* ; a NULL array with has_X false means absent. */
    char *user;
    char **env; /* "K=V" */
    size_t nenv;
    char **entrypoint;
    size_t nentrypoint;
    bool has_entrypoint;
    char **cmd;
    size_t ncmd;
    bool has_cmd;
    char *workdir;
    char **labels;        /* k1, v1, k2, v2 ... (sorted by key when written) */
    size_t nlabels;       /* number of strings (2 per label) */
    char **exposed_ports; /* "80/tcp" */
    size_t nexposed_ports;
    char **volumes;
    size_t nvolumes;
    char *stop_signal;
    char **onbuild;
    size_t nonbuild;
    char **shell;
    size_t nshell;
    struct cairn_healthcheck *healthcheck; /* NULL: absent */

    char **diff_ids; /* rootfs.diff_ids, "sha256:..." */
    size_t ndiff_ids;
    struct cairn_history *history;
    size_t nhistory;
    /* Private to image.c: a lookup index over env and labels, so setting
     * N of them costs O(N). NULL until set_env/set_label need it. */
    struct cairn_config_index *index;
};

/* Zeroes c and marks created absent (-1). A zeroed struct is valid too,
 * but means created = 1970-01-01T00:00:00Z. */
void cairn_image_config_init(struct cairn_image_config *c);

/* Parses a config. Unknown fields are ignored; null counts as absent;
 * Docker's "" for unset User/WorkingDir/StopSignal reads as NULL; a time
 * keeps whole seconds; ExposedPorts and Volumes come back sorted. Only
 * rootfs.type "layers" and sha256 diff_ids are accepted. On failure *out
 * is untouched and err says which field is wrong. */
int cairn_image_config_parse(const char *json, size_t len,
                             struct cairn_image_config *out,
                             struct cairn_err *err);
/* Canonical JSON (malloc'd, NUL-terminated, *len without the NUL; len
 * may be NULL). Absent fields are left out; "config" and "rootfs" are
 * always written. Bytes that are not UTF-8 become U+FFFD, as Go's
 * encoder does. CAIRN_E_INVAL when a time cannot be written. */
int cairn_image_config_to_json(const struct cairn_image_config *c, char **json,
                               size_t *len);
/* Deep copy into *dst (which must be zeroed or cleared). */
int cairn_image_config_copy(struct cairn_image_config *dst,
                            const struct cairn_image_config *src);
void cairn_image_config_clear(struct cairn_image_config *c);

/* Appends a history entry (copies the strings). */
int cairn_image_config_add_history(struct cairn_image_config *c,
                                   int64_t created, const char *created_by,
                                   bool empty_layer);
/* Sets or replaces env K (value v). */
int cairn_image_config_set_env(struct cairn_image_config *c, const char *k,
                               const char *v);
/* Sets or replaces label k. */
int cairn_image_config_set_label(struct cairn_image_config *c, const char *k,
                                 const char *v);

struct cairn_manifest {
    char *media_type;    /* of the manifest itself */
    char *config_digest; /* "sha256:..." */
    int64_t config_size;
    char *config_media_type;
    struct cairn_layer_desc *layers; /* media_type points into static
                                        strings or to layer_media below */
    char **layer_media; /* owned copies of unusual layer media types */
    size_t nlayers;
};

/* Parses an OCI v1 or Docker schema 2 image manifest (an index or
 * manifest list is CAIRN_E_UNSUPPORTED). media_type is filled in from
 * the config's type when the manifest omits it. layer_media has nlayers
 * entries, NULL where media_type is one of the static strings. Every
 * digest is checked with cairn_image_digest_valid, so it is safe to use
 * as a file name. diff_id of each layer is left empty. */
int cairn_manifest_parse(const char *json, size_t len,
                         struct cairn_manifest *out, struct cairn_err *err);
/* OCI manifest, canonical JSON. diff_id of layers is not written. The
 * config's media type defaults to CAIRN_MEDIA_CONFIG and a layer's to
 * CAIRN_MEDIA_LAYER_GZIP when NULL; other types are written as given. */
int cairn_manifest_to_json(const struct cairn_manifest *m, char **json,
                           size_t *len);
void cairn_manifest_clear(struct cairn_manifest *m);

/* --- helpers (extensions of the original contract) --- */

/* True for "sha256:" + exactly 64 lowercase hex digits: the only digests
 * cairn accepts from outside, since they become paths under blobs/. */
bool cairn_image_digest_valid(const char *digest);

/* The static string among the CAIRN_MEDIA_LAYER_* / DOCKER_LAYER types
 * equal to media, or NULL. */
const char *cairn_image_layer_media_static(const char *media);

/* "2026-11-27T17:32:11Z" + NUL */
#define CAIRN_IMAGE_TIME_LEN 32
/* RFC 3339 UTC text of t (>= 0). CAIRN_E_INVAL when out of range. */
int cairn_image_time_format(int64_t t, char buf[CAIRN_IMAGE_TIME_LEN]);
/* Parses RFC 3339 with any offset and optional fraction (dropped).
 * CAIRN_E_PARSE otherwise; *out written only on success. */
int cairn_image_time_parse(const char *s, int64_t *out);

#endif
