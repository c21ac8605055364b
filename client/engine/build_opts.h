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

/* How a step's result was had, for build reports. */
enum cairn_step_status {
    CAIRN_STEP_NONE,   /* no layer: FROM and the metadata instructions */
    CAIRN_STEP_LOCAL,  /* layer from the local index */
    CAIRN_STEP_REMOTE, /* layer from the shared cache */
    CAIRN_STEP_RAN,    /* layer step executed */
    CAIRN_STEP_FAILED, /* the step that ended the build */
};

/* What one step did, handed to cairn_build_opts.on_step when it ends.
 * Every pointer is borrowed for the call only. */
struct cairn_build_step {
    int number; /* 1-based, as "Step N/TOTAL" */
    int total;
    size_t stage_index;
    const char *stage_name;  /* AS name, or NULL */
    const char *kind;        /* "RUN", "COPY", ... */
    const char *instruction; /* as printed (args expanded), not UTF-8-checked */
    const char *key;         /* hex cache key */
    enum cairn_step_status status;
    double secs;    /* wall time of the step */
    bool has_layer; /* a layer step whose layer is not empty */
    struct cairn_layer_desc layer;
    /* A gzip layer this build wrote: its members big enough to reuse,
     * and how many of them came from earlier blobs (docs/build.md,
     * "Compression"); 0 otherwise. */
    size_t members, members_reused;
    const char *error; /* CAIRN_STEP_FAILED: the build's message */
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
    /* --cache-verify: this percentage (0-100) of the layer steps that hit
     * the shared cache also run locally, and the diff_ids are compared; a
     * step that differs is named and its local result used. Which steps:
     * by their keys, so a percentage picks the same ones every time. */
    unsigned cache_verify;
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
    /* Called after each step of the needed stages ends, the failed one
     * included (NULL: none); the build's output is already flushed. */
    void (*on_step)(void *arg, const struct cairn_build_step *step);
    void *on_step_arg;
};

/* Counts of what a build did, for the summary line. */
struct cairn_build_stats {
    unsigned steps;       /* steps of the needed stages */
    unsigned cached;      /* layer steps taken from the local index */
    unsigned remote;      /* layer steps taken from the shared cache */
    uint64_t bytes_down;  /* from the shared cache */
    uint64_t bytes_up;    /* to the shared cache */
    unsigned run;         /* layer steps executed */
    unsigned claimed;     /* ... of which claimed from the cache first */
    unsigned waited;      /* layer steps that waited for another builder */
    uint64_t layer_bytes; /* bytes of new layer blobs */
};

#endif
