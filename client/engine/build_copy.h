/* COPY and ADD steps (client/engine/build_copy.c), run by the build
 * driver (client/engine/build.c). Private to the engine. */
#ifndef CAIRN_CLIENT_ENGINE_BUILD_COPY_H
#define CAIRN_CLIENT_ENGINE_BUILD_COPY_H

#include "client/engine/build_state.h"

#include <stdbool.h>

/* Writes a COPY/ADD layer. *empty is set when it added nothing. When the
 * layer's snapshot will be wanted, it is written in the same pass
 * (cairn_layer_writer_mirror) and *snap gets its path (malloc'd), else
 * NULL. */
int build_copy_step(struct build *b, const struct ck_step *s,
                    struct stage_out *so, struct cairn_layer_desc *desc,
                    char **blob, bool *empty, char **snap);

#endif
