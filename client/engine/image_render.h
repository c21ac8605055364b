/* The image a build ends with, as bytes (client/engine/image_render.c):
 * the target stage's config and manifest made for a creation time, and
 * the image record of the shared cache (client/remote/imagerec.h) that
 * lets a build take the time, and so the digests, of the build that
 * first made the image. Private to the engine; used by the driver. */
#ifndef CAIRN_CLIENT_ENGINE_IMAGE_RENDER_H
#define CAIRN_CLIENT_ENGINE_IMAGE_RENDER_H

#include "client/engine/build_state.h"
#include "client/remote/imagerec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Config and manifest JSON of an image (owned; clear frees them). */
struct image_json {
    char *config;
    size_t config_len;
    char config_digest[CAIRN_DIGEST_STR_LEN];
    char *manifest;
    size_t manifest_len;
    char manifest_digest[CAIRN_DIGEST_STR_LEN];
    int64_t created;
};
void build_image_json_clear(struct image_json *j);

/* Makes the target stage's config and manifest as created at t: the
 * config's "created" and the history entries this build wrote (those at
 * b->now) get t; nothing else in them depends on the time. *out is
 * written only on success. */
int build_image_render(struct build *b, int64_t t, struct image_json *out);

/* The cache's record key of this build (strings borrowed from b; name
 * holds the target's index when the stage has no name). */
void build_image_record_key(struct build *b, char name[24],
                            struct cairn_imagerec_key *out);

/* Looks the image record of this build up in the shared cache and, when
 * there is one, remakes the image at its time: returns true with *out
 * when both digests are the record's. A record that does not match is a
 * warning (the image is then made anew, as without one). */
bool build_image_record_take(struct build *b, struct image_json *out);

/* The record of an image this build committed (j), for the cache. */
void build_image_record_of(const struct image_json *j,
                           struct cairn_imagerec *out);

#endif
