/* The state of one build and of its stages, which the build driver
 * (client/engine/build.c) owns and its steps (build_run.c, build_copy.c)
 * and helpers (stage.c, report.c) work on. Private to the engine: the
 * driver makes one struct build per cairn_build_run and hands it down;
 * nothing here calls up into the driver. */
#ifndef CAIRN_CLIENT_ENGINE_BUILD_STATE_H
#define CAIRN_CLIENT_ENGINE_BUILD_STATE_H

#include "cachekey/dockerfile.h"
#include "cachekey/plan.h"
#include "client/engine/build_opts.h"
#include "client/engine/explain.h"
#include "client/store/image.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* What a stage has produced so far: its image config and layers. */
struct stage_out {
    struct cairn_image_config cfg;
    struct cairn_layer_desc *layers;
    size_t nlayers;
    bool cmd_set;     /* CMD given in this stage (ENTRYPOINT keeps it) */
    char **snapshots; /* snapshot dirs of layers, filled lazily */
};

/* One build: what cairn_build_run was given and what it has made so far. */
struct build {
    struct cairn_store *st;
    const struct cairn_build_opts *o;
    struct cairn_build_stats *stats;
    struct cairn_err *err;
    FILE *out;
    struct ck_dockerfile *df;
    struct ck_plan *plan;
    struct ck_keys *keys;
    struct ck_context *ctx;
    struct stage_out *stages;
    int64_t now;
    int total;
    bool *remote_hit; /* per plan step: taken from the shared cache */
    /* The shared cache's view of each plan step (NULL: not looked up):
     * pointers into remote_steps. */
    struct cairn_cache_step **remote;
    struct cairn_cache_step *remote_steps;
    /* Step claims among concurrent builders (client/remote/claim.h); NULL
     * without a shared cache. */
    struct cairn_claims *claims;
    struct cairn_explain_build last; /* tags[0]'s last build (--explain) */
    bool have_last;
    /* --cache-verify found a step that differs from the shared cache:
     * the image is not the one the cache's layers make, so no image
     * record is written for it. */
    bool verify_differed;
    /* The gzip member reuse of the layer being written
     * (client/engine/build_members.h). */
    struct cairn_layer_reuse members;
};

#endif
