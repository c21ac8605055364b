/* Member reuse for the layers a build writes (client/engine/build_members.c;
 * docs/build.md "Compression"): the steps hand the store's member table to
 * their gzip layer writers, and the driver records the new layer's members
 * once its blob is in the store. Private to the engine. */
#ifndef CAIRN_CLIENT_ENGINE_BUILD_MEMBERS_H
#define CAIRN_CLIENT_ENGINE_BUILD_MEMBERS_H

#include "client/engine/build_state.h"

/* Points lo at the build's reuse state (gzip layers only), emptied of the
 * previous layer's results. */
void build_members_opts(struct build *b, struct cairn_layer_opts *lo);

/* After the layer's blob went into the store: records the members the
 * last writer reported under layer->digest and counts them in rep
 * (members, members_reused). A failure to record costs only later reuse
 * (and is not an error of the build). */
void build_members_record(struct build *b, const struct cairn_layer_desc *layer,
                          struct cairn_build_step *rep);

/* Frees what the last writer reported (at the build's end). */
void build_members_free(struct build *b);

#endif
