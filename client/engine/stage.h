/* What a stage has made so far (client/engine/stage.c): its layers,
 * their snapshots, the base image it starts from, and lookups in its file
 * system. Used by the build driver and the steps; private to the engine. */
#ifndef CAIRN_CLIENT_ENGINE_STAGE_H
#define CAIRN_CLIENT_ENGINE_STAGE_H

#include "client/engine/build_state.h"

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

void build_stage_out_free(struct stage_out *s);

int build_layers_push(struct stage_out *s, const struct cairn_layer_desc *d);

/* Reads the stored image manifest_digest (manifest and config, both
 * verified, one diff_id per layer) into *m and *c. */
int build_image_load(struct build *b, const char *manifest_digest,
                     struct cairn_manifest *m, struct cairn_image_config *c);

/* Records *path (malloc'd, taken: *path becomes NULL) as the snapshot of
 * layer i of s, made by the step that wrote the layer. */
int build_stage_snapshot_take(struct stage_out *s, size_t i, char **path);

/* Fetches, from the shared cache, any layer of s whose blob is not in the
 * store but that a remote hit has (see stage.c). */
void build_remote_ensure_blobs(struct build *b, const struct stage_out *s);

/* Lower dirs for overlayfs: top-most first. */
int build_stage_lowers(struct build *b, struct stage_out *s, const char ***out);

/* Looks path (relative) up through the stage's layers, top-most first,
 * as overlayfs would (a 0/0 char device is a whiteout). Returns 0 and fills
 * st, or CAIRN_E_NOTFOUND. */
int build_stage_lstat(struct build *b, struct stage_out *s, const char *rel,
                      struct stat *st, char *found, size_t flen);

/* HOME for a RUN as user ("", "name", "uid", with an optional ":group"),
 * as runc sets it: the home field of the user's /etc/passwd entry in the
 * stage's root (matched by name, or by uid when numeric), "/" when there
 * is no entry. */
void build_passwd_home(struct build *b, struct stage_out *s, const char *user,
                       char *out, size_t cap);

/* --chown=user[:group] by name or id, names through the parent's
 * /etc/passwd and /etc/group (as Docker does). */
int build_chown_resolve(struct build *b, struct stage_out *s,
                        const struct ck_step *step, uid_t *uid, gid_t *gid);

#endif
