/* What a build is asked to do (struct cairn_build_opts) and what it did
 * (struct cairn_build_stats): the build's inputs and counts, apart from
 * the driver (client/engine/build.h) so that the steps, which read the
 * options, do not include the driver's header. */
#ifndef CAIRN_CLIENT_ENGINE_BUILD_OPTS_H
#define CAIRN_CLIENT_ENGINE_BUILD_OPTS_H

#include "client/engine/runmount.h"
#include "client/remote/cache.h"
#include "client/store/layer.h"

#include <stdbool.h>
#include <stddef.h>
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

#endif
