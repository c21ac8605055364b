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

#include "client/layer.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAIRN_IMAGE_MAX_JSON (8u << 20)
#define CAIRN_MEDIA_CONFIG "application/vnd.oci.image.config.v1+json"
#define CAIRN_MEDIA_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define CAIRN_MEDIA_INDEX "application/vnd.oci.image.index.v1+json"
#define CAIRN_MEDIA_DOCKER_MANIFEST \
    "application/vnd.docker.distribution.manifest.v2+json"
#define CAIRN_MEDIA_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

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
    char **labels; /* k1, v1, k2, v2 ... (sorted by key when written) */
    size_t nlabels; /* number of strings (2 per label) */
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
};

/* Parses a config. Unknown fields are ignored. */
int cairn_image_config_parse(const char *json, size_t len,
                             struct cairn_image_config *out,
                             struct cairn_err *err);
/* Canonical JSON (malloc'd, NUL-terminated, *len without the NUL). */
int cairn_image_config_to_json(const struct cairn_image_config *c,
                               char **json, size_t *len);
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

int cairn_manifest_parse(const char *json, size_t len,
                         struct cairn_manifest *out, struct cairn_err *err);
/* OCI manifest, canonical JSON. diff_id of layers is not written. */
int cairn_manifest_to_json(const struct cairn_manifest *m, char **json,
                           size_t *len);
void cairn_manifest_clear(struct cairn_manifest *m);

#endif
