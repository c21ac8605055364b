/* Build plan: what a Dockerfile means once its variables are known.
 *
 * Walks the parsed instructions the way Docker's builder does, without
 * running anything: splits stages, applies ARG scoping (global ARGs before
 * the first FROM are visible to FROM lines only, and inside a stage only
 * after being redeclared), --build-arg overrides, the predefined proxy and
 * platform args, ENV (which wins over an ARG of the same name), WORKDIR,
 * USER, SHELL, and the image config instructions. It expands the words of
 * the instructions Docker expands (ADD, COPY, ENV, EXPOSE, FROM, LABEL,
 * STOPSIGNAL, USER, VOLUME, WORKDIR, ARG defaults) and records, for every
 * step, the state it runs in. Base images are looked up through a caller's
 * resolver (the local store, once there is one); ONBUILD triggers of a base
 * image run right after its FROM.
 *
 * A plan borrows the struct ck_dockerfile it was made from: free the plan
 * first. Read-only after ck_plan_build; may be shared between threads.
 */
#ifndef CAIRN_CACHEKEY_PLAN_H
#define CAIRN_CACHEKEY_PLAN_H

#include "cachekey/dockerfile.h"
#include "cachekey/runmount.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a resolver knows about a base image. Strings and arrays are owned by
 * the resolver's caller after a successful call (ck_plan frees them). */
struct ck_image_info {
    char *digest;   /* manifest digest, "sha256:<64 hex>" */
    char *platform; /* "linux/amd64" */
    char **env;     /* "K=V" */
    size_t nenv;
    char *workdir;
    char *user;
    char **shell; /* NULL: the default /bin/sh -c */
    size_t nshell;
    char **onbuild; /* trigger instructions, as written after ONBUILD */
    size_t nonbuild;
};

/* Resolves an image reference (as expanded from FROM or COPY --from) for a
 * platform. Fills *out (all fields malloc'd) and returns 0, or returns
 * CAIRN_E_NOTFOUND when the image is unknown, or another error. */
typedef int (*ck_image_resolve_fn)(void *arg, const char *ref,
                                   const char *platform,
                                   struct ck_image_info *out,
                                   struct cairn_err *err);

/* Frees the members of info (not info itself). */
void ck_image_info_clear(struct ck_image_info *info);

struct ck_plan_opts {
    const char *const *build_args; /* "K=V" (or "K": take K from the
                                      environment, as docker does) */
    size_t nbuild_args;
    const char *target;   /* stage name or index to stop at; NULL: last */
    const char *platform; /* NULL: "linux/amd64" */
    ck_image_resolve_fn resolve; /* NULL: every image is unresolved */
    void *resolve_arg;
    /* When false, an image the resolver does not know is an error (a
     * build); when true (cairn keys) the reference as written stands in
     * for its digest and the step is marked unresolved. */
    bool allow_unresolved;
    /* --source-date-epoch (seconds, >= 0) when has_source_date_epoch:
     * it clamps the times in every layer and sets the image's, so it is
     * an input of every key (docs/cachekey.md). A flag beside the value
     * because 0 is an epoch and a zeroed opts must mean "none". */
    bool has_source_date_epoch;
    int64_t source_date_epoch;
};

enum ck_base_kind {
    CK_BASE_SCRATCH,
    CK_BASE_IMAGE, /* an image, resolved or not */
    CK_BASE_STAGE, /* an earlier stage of this Dockerfile */
};

/* Where COPY --from reads. */
enum ck_from_kind {
    CK_FROM_CONTEXT,
    CK_FROM_STAGE,
    CK_FROM_IMAGE,
};

/* One RUN --mount after expansion: the target is absolute and clean, a
 * cache id defaults to the target, a secret's id to source or the
 * target's base name and its target to /run/secrets/ID. from (bind and
 * cache) is resolved like COPY --from. Owned by the plan. */
struct ck_run_mount {
    struct ck_mount m;
    enum ck_from_kind from_kind;
    size_t from_stage;               /* CK_FROM_STAGE */
    struct ck_image_info from_image; /* CK_FROM_IMAGE, when resolved */
    bool from_unresolved;
};

/* One instruction of the build with its expanded form and the state it
 * runs in. All strings owned by the plan. */
struct ck_step {
    const struct ck_instr *instr; /* borrowed from the Dockerfile */
    bool from_onbuild; /* a base image's ONBUILD trigger */
    size_t stage;      /* index into plan->stages */
    int number;        /* 1-based step number over the whole plan */
    char *text;        /* the instruction after expansion, as printed */

    /* Expanded words. FROM: {ref}; ENV/LABEL: {k1, v1, ...}; ARG: {name,
     * value-or-NULL...} pairs; ADD/COPY: {src..., dest}; EXPOSE, VOLUME:
     * the words; USER, WORKDIR, STOPSIGNAL: {value}; RUN, CMD, ENTRYPOINT,
     * SHELL, HEALTHCHECK, MAINTAINER: the parser's args unexpanded. */
    char **words;
    size_t nwords;

    /* State the step runs in (after the step for ENV/WORKDIR/USER/SHELL
     * themselves). env is the effective environment of a RUN: the image's
     * ENV (with PATH's default added when the base sets none, as BuildKit
     * does), then the stage's ENV, plus ARGs in scope that ENV does not
     * shadow; "K=V", sorted by K. Other steps have none (nenv 0): copying
     * it into every step cost O(N^2) for N ENV lines. */
    char **env;
    size_t nenv;
    char **args_in_scope; /* "K=V" of ARGs with a value, sorted */
    size_t nargs_in_scope;
    char *workdir; /* absolute, "/" by default */
    char *user;    /* "" when unset (root) */
    char **shell;  /* argv prefix for shell form */
    size_t nshell;
    char *network; /* RUN --network: "default", "none" or "host" */
    bool insecure; /* RUN --security=insecure (the build refuses it) */
    struct ck_run_mount *mounts; /* RUN --mount, in the order written */
    size_t nmounts;

    /* COPY/ADD --from. */
    enum ck_from_kind from_kind;
    size_t from_stage; /* CK_FROM_STAGE */
    char *from_ref;    /* the expanded --from value (stage or image) */
    struct ck_image_info from_image; /* CK_FROM_IMAGE, when resolved */
    bool from_unresolved;

    /* COPY/ADD --chown and --chmod after expansion, or NULL. */
    char *chown;
    char *chmod;
    /* COPY/ADD --exclude patterns after expansion (dockerignore syntax,
     * matched against paths relative to each match), COPY --parents. */
    char **excludes;
    size_t nexcludes;
    bool parents;
};

struct ck_stage {
    char *name; /* lower-cased AS name, or NULL */
    size_t index;
    enum ck_base_kind base_kind;
    char *base_ref;         /* the expanded FROM reference */
    size_t base_stage;      /* CK_BASE_STAGE */
    struct ck_image_info base; /* CK_BASE_IMAGE, when resolved */
    bool base_unresolved;
    char *platform;
    size_t first_step; /* index of its FROM step in plan->steps */
    size_t nsteps;     /* FROM included */
    bool needed;       /* the target depends on it */
};

struct ck_plan {
    const char *name; /* the Dockerfile's name for messages (borrowed) */
    struct ck_stage *stages;
    size_t nstages;
    size_t target; /* index of the stage the build produces */
    struct ck_step *steps; /* all stages' steps, in Dockerfile order; only
                              stages with needed set are built */
    size_t nsteps;
    char **unused_build_args; /* --build-arg names no ARG consumed */
    size_t nunused_build_args;
    struct ck_dockerfile **owned; /* parsed ONBUILD triggers (private) */
    size_t nowned;
    /* Bytes of the steps' env and args_in_scope copies (strings and
     * pointers), at most CK_PLAN_MAX_STATE: linear in the Dockerfile for
     * ENV and ARG lines, times the RUN steps that keep an environment. */
    size_t state_bytes;
    /* The build's source date epoch, from ck_plan_opts. */
    bool has_source_date_epoch;
    int64_t source_date_epoch;
};

/* Cap on ck_plan.state_bytes: each RUN keeps its whole environment and
 * every step its ARGs, so thousands of variables times thousands of steps
 * would otherwise grow without bound; past it the plan fails with
 * CAIRN_E_TOOBIG naming the line. */
#define CK_PLAN_MAX_STATE (64u << 20)

/* Makes the plan of df. Returns 0, CAIRN_E_INVAL (a negative source date
 * epoch, a bad --build-arg or platform), CAIRN_E_PARSE (bad expansion, an
 * instruction before the first FROM, unknown stage in --from or --target,
 * a stage that depends on itself; err says file:line), CAIRN_E_NOTFOUND
 * (base image unknown and !allow_unresolved), CAIRN_E_TOOBIG (state past
 * CK_PLAN_MAX_STATE; err says file:line), CAIRN_E_NOMEM. */
int ck_plan_build(const struct ck_dockerfile *df,
                  const struct ck_plan_opts *opts, struct ck_plan **out,
                  struct cairn_err *err);

/* Frees the plan. Accepts NULL. */
void ck_plan_free(struct ck_plan *plan);

/* PATH of a stage whose base image sets none (as BuildKit's). */
#define CK_DEFAULT_PATH \
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#endif
