/* RUN steps (client/engine/build_run.c), run by the build driver
 * (client/engine/build.c). Private to the engine. */
#ifndef CAIRN_CLIENT_ENGINE_BUILD_RUN_H
#define CAIRN_CLIENT_ENGINE_BUILD_RUN_H

#include "client/engine/build_state.h"

#include <stdbool.h>

/* Runs RUN step s in the sandbox over stage so's snapshots. *empty is set
 * when the command changed nothing; else its upper directory is written
 * as a layer: *desc filled, *blob (malloc'd) the finished blob file in
 * the store's tmp/, which the caller stores or unlinks, and *snap
 * (malloc'd, or NULL) the layer's snapshot in the store: the upper
 * directory itself, settled and adopted, so that neither the next step's
 * unpack nor a removal of the upper directory's files is paid. */
int build_run_step(struct build *b, const struct ck_step *s,
                   struct stage_out *so, struct cairn_layer_desc *desc,
                   char **blob, bool *empty, char **snap);

#endif
