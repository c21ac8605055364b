/* RUN --mount sources: turns a step's parsed mounts (cachekey/plan.h) into
 * what the sandbox mounts (client/sandbox/sandbox.h), as BuildKit does:
 *
 *  bind   from the context: what the source selects (.dockerignore
 *         applies, as it does to what BuildKit transfers): read-only and
 *         nothing ignored, the context directory itself; else a private
 *         tree of hard links (read-only) or copies (rw, or across file
 *         systems), so rw writes are discarded; from a stage
 *         or an image: a read-only view of its snapshots (`rw`: a private
 *         copy of the source). Never part of the layer.
 *  cache  $CAIRN_ROOT/cache-mounts/<sha256 of id>/data, made on first use
 *         with mode/uid/gid (default 0755, 0:0); kept between builds;
 *         sharing=shared (the default) holds a shared flock, locked an
 *         exclusive one for the whole run, private takes the first of
 *         data, data.1, data.2 ... that no one else holds. source is a
 *         path inside the cache; with from=, a new cache is seeded with a
 *         copy of that path of the stage or image.
 *  tmpfs  an empty tmpfs (size=).
 *  secret the secret's bytes from `cairn build --secret`, a read-only file
 *         on a tmpfs private to the run (mode 0400 unless mode=); a
 *         missing secret is an error when required, else not mounted.
 *  ssh    cairn forwards no agent: an error when required, else skipped
 *         (BuildKit skips a non-required ssh mount nothing is forwarded
 *         to).
 *
 * Not thread-safe per struct; different steps may prepare concurrently.
 */
#ifndef CAIRN_CLIENT_RUNMOUNT_H
#define CAIRN_CLIENT_RUNMOUNT_H

#include "cachekey/context.h"
#include "cachekey/plan.h"
#include "client/sandbox/sandbox.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Longest secret accepted (BuildKit's limit). */
#define CAIRN_SECRET_MAX (500u * 1024u)

/* One `cairn build --secret`: the id and the bytes (owned by the caller). */
struct cairn_build_secret {
    const char *id;
    const char *data;
    size_t len;
};

/* Read-only overlay lower directories (top-most first) of what a mount's
 * from= names; *out is malloc'd (free it), the strings are borrowed. */
typedef int (*cairn_runmount_lowers_fn)(void *arg,
                                        const struct ck_run_mount *rm,
                                        const char ***out, size_t *n,
                                        struct cairn_err *err);

struct cairn_runmount_env {
    const char *store_root; /* $CAIRN_ROOT */
    const char *tmpdir;     /* the run's own directory: copies go there
                               and the caller removes it afterwards */
    struct ck_context *ctx; /* the build context */
    const struct cairn_build_secret *secrets;
    size_t nsecrets;
    cairn_runmount_lowers_fn lowers;
    void *lowers_arg;
    FILE *out; /* notes (a skipped ssh mount) */
};

struct cairn_runmounts;

/* Prepares every mount of s (a RUN step). Returns 0 and *out, or an error
 * whose message names the mount (the caller prefixes the step).
 * CAIRN_E_NOTFOUND: a required secret not given, a source missing;
 * CAIRN_E_UNSUPPORTED: a required ssh mount; CAIRN_E_OUTSIDE: a source
 * leaving its root. */
int cairn_runmounts_prepare(const struct ck_step *s,
                            const struct cairn_runmount_env *env,
                            struct cairn_runmounts **out,
                            struct cairn_err *err);

/* The sandbox's mounts, sorted by target (parents first); borrowed from
 * rm until cairn_runmounts_release. */
const struct cairn_run_mount *
cairn_runmounts_list(const struct cairn_runmounts *rm, size_t *n);

/* Releases cache locks, unmounts the read-only views and frees rm (the
 * copies stay in env->tmpdir for the caller to remove). Accepts NULL. */
void cairn_runmounts_release(struct cairn_runmounts *rm);

/* Cache mounts kept in the store, for `cairn builder du` and `prune`. */
struct cairn_cachemount_info {
    const char *id; /* as written in the Dockerfile (borrowed for the call) */
    uint64_t bytes; /* disk used by all its instances */
    bool in_use;    /* a build holds it now */
};
typedef int (*cairn_cachemount_fn)(void *arg,
                                   const struct cairn_cachemount_info *info);

/* Calls fn for every cache mount under store_root/cache-mounts (none when
 * the directory does not exist). fn returns 0 to go on. Returns 0, fn's
 * value, or an error. */
int cairn_cachemounts_each(const char *store_root, cairn_cachemount_fn fn,
                           void *arg, struct cairn_err *err);

/* Removes every cache mount no build holds (a held one is skipped and
 * counted in *busy). *reclaimed gets the bytes freed. */
int cairn_cachemounts_prune(const char *store_root, uint64_t *reclaimed,
                            unsigned *busy, struct cairn_err *err);

/* Parses one `--secret` value: id=ID plus src=PATH / source=PATH (a file)
 * or env=VAR (an environment variable), optionally type=file|env; an id
 * alone reads the environment variable ID when set, else the file ID
 * (buildx's rule). The bytes are malloc'd into *data. Returns 0,
 * CAIRN_E_PARSE, CAIRN_E_NOTFOUND, CAIRN_E_TOOBIG (past CAIRN_SECRET_MAX)
 * or a negative errno; err says which. */
int cairn_secret_parse(const char *spec, char **id, char **data, size_t *len,
                       struct cairn_err *err);

#endif
