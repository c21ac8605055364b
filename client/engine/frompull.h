/* FROM images from registries (client/engine/frompull.c), for the build
 * driver (client/engine/build.c). Private to the engine. */
#ifndef CAIRN_CLIENT_ENGINE_FROMPULL_H
#define CAIRN_CLIENT_ENGINE_FROMPULL_H

#include "client/engine/build_state.h"

#include <stdbool.h>

/* Pulls the needed stages' images as o->pull says; *changed when the
 * store's image of a reference moved (the plan must be made again). */
int build_bases_pull(struct build *b, bool *changed);

#endif
