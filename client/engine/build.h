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

#include "client/engine/build_opts.h"
#include "client/store/store.h"
#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

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
