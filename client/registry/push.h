/* Pushing an image from the store to a registry, as `docker push` does
 * (the OCI distribution spec's upload flows).
 *
 * Each blob is asked for with a HEAD first; one the registry has is not
 * sent ("Layer already exists"). A blob that another repository of the
 * same registry holds (the store knows it from the repo digests of its
 * images: every layer of an image recorded as NAME@digest is in NAME) is
 * mounted from there (POST ?mount=&from=, "Mounted from NAME"); a
 * registry that answers 202 instead gets the upload. Uploads are one
 * POST and one PUT ?digest= for blobs up to the chunk size, else a POST,
 * PATCHes of chunk bytes each and a closing PUT, always to the newest
 * Location. Layers go CAIRN_REG_PUSH_JOBS at a time, then the config,
 * then the manifest (the store's exact bytes, so the pushed digest is the
 * stored manifest's) under the tag, with its media type as Content-Type.
 *
 * The store is only read, under its shared lock (prune cannot take a
 * blob away mid-push), until the manifest is accepted: then the repo
 * digest NAME@digest is added to the image's record, as Docker does. A
 * push that fails or is killed leaves the store as it was.
 *
 * What is pushed: layers as the store keeps them. gzip (and uncompressed
 * tar) layers are pushed; zstd layers, which docker 20.10 cannot pull,
 * are refused unless allow_zstd (the message says how to rebuild).
 *
 * Not thread-safe per call; runs its own upload threads.
 */
#ifndef CAIRN_CLIENT_REGISTRY_PUSH_H
#define CAIRN_CLIENT_REGISTRY_PUSH_H

#include "client/registry/ref.h"
#include "client/registry/transport.h"
#include "client/store/store.h"
#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CAIRN_REG_PUSH_JOBS 3              /* parallel layer uploads */
#define CAIRN_REG_PUSH_CHUNK (16LL << 20)  /* over this: chunked upload */
#define CAIRN_REG_PUSH_CHUNK_MIN (1LL << 20)

struct cairn_reg_push_opts {
    const struct cairn_reg_opts *transport; /* may be NULL */
    FILE *out;     /* docker push's lines; NULL: quiet */
    int jobs;      /* 0: CAIRN_REG_PUSH_JOBS */
    int64_t chunk; /* 0: CAIRN_REG_PUSH_CHUNK; at least _CHUNK_MIN */
    bool allow_zstd; /* push zstd layers as stored */
};

struct cairn_reg_push_result {
    char digest[CAIRN_DIGEST_STR_LEN]; /* the manifest pushed */
    int64_t size;                      /* its bytes */
    unsigned pushed, existed, mounted; /* layers and config */
    unsigned requests;                 /* HTTP requests made */
};

/* Pushes the stored image named `image` (any name cairn_store_image_find
 * takes) to dest (its host, path and tag; a dest with a digest is
 * CAIRN_E_INVAL). 0 and *out filled; CAIRN_E_NOTFOUND when the image is
 * not stored, CAIRN_E_UNSUPPORTED for a zstd layer without allow_zstd,
 * CAIRN_E_DIGEST when the registry names another digest than ours for
 * the manifest, else cairn_reg_request's errors (401/403 name the
 * registry and `cairn login`). */
int cairn_reg_push(struct cairn_store *st, const char *image,
                   const struct cairn_reg_ref *dest,
                   const struct cairn_reg_push_opts *o,
                   struct cairn_reg_push_result *out, struct cairn_err *err);

#endif
