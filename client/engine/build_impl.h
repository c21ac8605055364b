/* What the parts of the build share and nobody else sees: the state of
 * one build and of its stages, and the helpers the steps use.
 * client/engine/build.c is the driver (plan, walk, commit),
 * client/engine/build_copy.c the COPY and ADD steps,
 * client/engine/build_run.c the RUN steps; both use the helpers of
 * client/engine/stage.c (a stage's layers, snapshots and file system) and
 * client/engine/report.c (failure messages, progress lines), which use
 * neither. Private to those five. */
#ifndef CAIRN_CLIENT_ENGINE_BUILD_IMPL_H
#define CAIRN_CLIENT_ENGINE_BUILD_IMPL_H

#include "cachekey/dockerfile.h"
#include "cachekey/plan.h"
#include "client/engine/build.h"
#include "client/engine/explain.h"
#include "client/store/image.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

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
    struct cairn_explain_build last; /* tags[0]'s last build (--explain) */
    bool have_last;
};

/* The progress line of one layer write on a terminal. */
struct layer_progress {
    FILE *out;
    bool shown;
};

void build_stage_out_free(struct stage_out *s);

/* client/engine/frompull.c: pulls the needed stages' images as
 * o->pull says; *changed when the store's image of a reference moved
 * (the plan must be made again). */
int build_bases_pull(struct build *b, bool *changed);

int build_layers_push(struct stage_out *s, const struct cairn_layer_desc *d);

int build_step_fail(struct build *b, const struct ck_step *s, int rc,
                    const char *what);

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

/* Hooks p into lo when the output is a terminal (plain logs get no
 * carriage returns). */
void build_progress_start(struct build *b, struct cairn_layer_opts *lo,
                          struct layer_progress *p);

/* Ends a progress line that was shown, so the next output starts on a
 * line of its own. */
void build_progress_end(struct layer_progress *p);

/* Writes a COPY/ADD layer. *empty is set when it added nothing. When the
 * layer's snapshot will be wanted, it is written in the same pass
 * (cairn_layer_writer_mirror) and *snap gets its path (malloc'd), else
 * NULL. */
int build_copy_step(struct build *b, const struct ck_step *s,
                    struct stage_out *so, struct cairn_layer_desc *desc,
                    char **blob, bool *empty, char **snap);

int build_run_step(struct build *b, const struct ck_step *s,
                   struct stage_out *so, struct cairn_layer_desc *desc,
                   char **blob, bool *empty);

#endif
