/* The build driver: runs a Dockerfile's plan against the local store.
 *
 * For each step of the stages the target needs, in order: metadata
 * instructions update the image config; RUN, COPY and ADD look their key up
 * in the store's key index and reuse the layer on a hit ("Using cache"), or
 * run (RUN in the sandbox on an overlay of the parent's snapshots; COPY/ADD
 * written straight from the context or a stage's files) and record the new
 * layer under the key. Finally the config and manifest are stored and the
 * tags moved. Output is Docker's classic builder's ("Step 2/5 : ...").
 *
 * Not thread-safe: one build per struct cairn_store at a time in a
 * process (other processes may build on the same store concurrently).
 */
#ifndef CAIRN_CLIENT_BUILD_H
#define CAIRN_CLIENT_BUILD_H

#include "client/remote/cache.h"
#include "client/store/layer.h"
#include "client/engine/runmount.h"
#include "client/store/store.h"
#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* FROM images and registries (client/engine/frompull.c). */
enum cairn_build_pull {
    CAIRN_BUILD_PULL_MISSING, /* pull images not in the store (default) */
    CAIRN_BUILD_PULL_ALWAYS,  /* --pull: re-resolve every tag */
    CAIRN_BUILD_PULL_NEVER,   /* --pull=never: the store only */
};

struct cairn_build_opts {
    const char *context;    /* directory */
    const char *dockerfile; /* path; NULL: CONTEXT/Dockerfile */
    const char *const *tags;
    size_t ntags;
    const char *const *build_args; /* "K=V" or "K" */
    size_t nbuild_args;
    const char *target;
    bool no_cache;
    /* The network of RUN steps without --network (see
     * enum cairn_run_network; 0: the default, pasta). */
    enum cairn_run_network network;
    enum cairn_compression compression;
    int64_t source_date_epoch; /* < 0: now */
    bool tty;                  /* progress lines on a terminal */
    FILE *out;                 /* build output (stdout) */
    /* Shared cache (NULL: local only), borrowed. Layer steps that miss
     * the local index are looked up there before the first step runs;
     * new layers are uploaded while later steps run; the build waits for
     * the uploads before it returns. */
    struct cairn_cache *cache;
    /* Under every layer step that misses (and every other step whose key
     * differs from the last build of tags[0]), print why: the causes of
     * client/engine/explain.h. A successful build with tags always
     * remembers its keys for this, with or without explain. */
    bool explain;
    /* `--secret` values for RUN --mount=type=secret, borrowed. Their bytes
     * never reach a layer, a key or the output. */
    const struct cairn_build_secret *secrets;
    size_t nsecrets;
    /* How FROM and COPY --from images reach the store, and registries
     * reached without TLS checks (borrowed; see
     * client/registry/transport.h). */
    enum cairn_build_pull pull;
    const char *const *insecure_registries;
    size_t ninsecure_registries;
};

/* Counts of what a build did, for the summary line. */
struct cairn_build_stats {
    unsigned steps;       /* steps of the needed stages */
    unsigned cached;      /* layer steps taken from the local index */
    unsigned remote;      /* layer steps taken from the shared cache */
    uint64_t bytes_down;  /* from the shared cache */
    uint64_t bytes_up;    /* to the shared cache */
    unsigned run;         /* layer steps executed */
    uint64_t layer_bytes; /* bytes of new layer blobs */
};

/* Builds; on success writes the image ID ("sha256:<hex>" of the config)
 * into image_id. Returns 0 or an error whose message names the step. */
int cairn_build_run(struct cairn_store *st, const struct cairn_build_opts *o,
                    char image_id[CAIRN_DIGEST_STR_LEN],
                    struct cairn_build_stats *stats, struct cairn_err *err);

/* A ck_image_resolve_fn over the local store (arg: struct cairn_store *),
 * for callers that plan without building (cairn keys). */
struct ck_image_info;
int cairn_build_resolve(void *store, const char *ref, const char *platform,
                        struct ck_image_info *out, struct cairn_err *err);

#endif
