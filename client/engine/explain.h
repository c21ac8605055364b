/* Explaining cache misses (docs/explain.md).
 *
 * A build that succeeds with tags remembers, per tag, its "last build":
 * for every step the stage index, step number, key, key material, the
 * build args in scope and, for COPY/ADD sources read from the context,
 * the listing of what each source selected (path, type, mode, content
 * digest). A later build or `cairn keys` compares a step's material with
 * the remembered step at the same place and turns the difference into
 * one line per cause ("COPY app/: content of app/f7 changed",
 * "RUN: build arg VERSION changed (1.0 -> 2.0)", "parent step changed").
 *
 * The record is an encoding of struct cairn_explain_build in the
 * length-prefixed fields of cachekey/field.h; the store keeps it as an
 * opaque value (cairn_store_lastbuild_*). Output is deterministic: causes
 * come in material order, files in byte order of their path.
 *
 * Not thread-safe: one owner per struct.
 */
#ifndef CAIRN_CLIENT_EXPLAIN_H
#define CAIRN_CLIENT_EXPLAIN_H

#include "cachekey/context.h"
#include "cachekey/digest.h"
#include "cachekey/key.h"
#include "cachekey/plan.h"
#include "client/store/store.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/strvec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Files listed per source; a bigger source is remembered without its
 * listing, and a change in it is "content changed" with no file named. */
#define CAIRN_EXPLAIN_MAX_FILES 100000u
/* File causes printed per source before "... and N more". */
#define CAIRN_EXPLAIN_MAX_FILE_CAUSES 20u

/* One entry a COPY/ADD source selected (ck_context_source_walk). */
struct cairn_explain_file {
    char *path; /* context-relative, owned */
    char type;  /* 'f', 'd', 'l' */
    unsigned mode; /* st_mode & 07777 */
    bool has_digest; /* 'f' only */
    uint8_t digest[CK_SHA256_LEN];
};

/* One context source of a COPY/ADD step, as written after expansion. */
struct cairn_explain_source {
    char *src; /* owned */
    bool listed; /* false: too many files, no listing kept */
    struct cairn_explain_file *files; /* owned, nfiles entries */
    size_t nfiles;
};

/* One step of a build. Everything is owned by the struct. */
struct cairn_explain_step {
    size_t stage; /* stage index */
    int number;   /* 1-based step number over the whole plan */
    char key[CK_SHA256_HEX_LEN + 1];
    struct cairn_buf material;
    struct cairn_strvec args; /* "K=V" of the ARGs in scope */
    struct cairn_explain_source *sources; /* context sources, in order */
    size_t nsources;
};

struct cairn_explain_build {
    struct cairn_explain_step *steps; /* owned */
    size_t nsteps;
};

/* Frees the members of a step / build (not the struct). Accept NULL. */
void cairn_explain_step_clear(struct cairn_explain_step *s);
void cairn_explain_build_clear(struct cairn_explain_build *b);

/* Fills *out (zeroed by the caller or cleared) from step i of plan and
 * its key: stage, number, key, a copy of the material and the ARGs in
 * scope. When ctx is not NULL, the context sources of a COPY/ADD are
 * listed (each capped at CAIRN_EXPLAIN_MAX_FILES). On failure *out is
 * cleared. */
int cairn_explain_step_from_plan(const struct ck_plan *plan,
                                 const struct ck_keys *keys, size_t i,
                                 struct ck_context *ctx,
                                 struct cairn_explain_step *out,
                                 struct cairn_err *err);

/* The whole build: every computed step of plan. */
int cairn_explain_build_from_plan(const struct ck_plan *plan,
                                  const struct ck_keys *keys,
                                  struct ck_context *ctx,
                                  struct cairn_explain_build *out,
                                  struct cairn_err *err);

/* Encodes b into out (appended). with_listings false drops every file
 * listing (sources are then marked not listed). CAIRN_E_TOOBIG past
 * out's cap. */
int cairn_explain_build_encode(const struct cairn_explain_build *b,
                               bool with_listings, struct cairn_buf *out);
/* Decodes a record into *out (owned by the caller: _clear it).
 * CAIRN_E_CORRUPT on anything malformed; *out is untouched then. */
int cairn_explain_build_decode(const void *data, size_t len,
                               struct cairn_explain_build *out);

/* The remembered step that step should be compared with: same stage and
 * number with the same instruction kind; else the first step of the same
 * stage with the same kind and instruction text (steps inserted before
 * it); else the same stage and number. NULL when none. Borrowed from b. */
const struct cairn_explain_step *
cairn_explain_build_match(const struct cairn_explain_build *b,
                          const struct cairn_explain_step *step);

/* Appends to causes one line per reason why cur's material differs from
 * old's (nothing when they are equal), without the " ---> cache miss: "
 * prefix. Returns 0 or CAIRN_E_NOMEM (CAIRN_E_CORRUPT for a malformed
 * material). */
int cairn_explain_step_diff(const struct cairn_explain_step *old,
                            const struct cairn_explain_step *cur,
                            struct cairn_strvec *causes);

/* Encodes b as the record cairn_explain_remember stores (without the
 * listings when they would make it over CAIRN_STORE_LASTBUILD_MAX).
 * Always initialises *rec (the caller frees it with cairn_buf_free);
 * CAIRN_E_TOOBIG when even that is over the cap, CAIRN_E_NOMEM. */
int cairn_explain_record(const struct cairn_explain_build *b,
                         struct cairn_buf *rec);

/* Remembers b as the last build of every tag (refs as given to -t).
 * A record over CAIRN_STORE_LASTBUILD_MAX is stored without listings;
 * if still too big, the tags' old records are removed instead (a stale
 * record would explain wrongly). */
int cairn_explain_remember(struct cairn_store *st, const char *const *tags,
                           size_t ntags, const struct cairn_explain_build *b,
                           struct cairn_err *err);

/* Loads the last build of tag into *out. CAIRN_E_NOTFOUND when there is
 * none (or the record is unreadable: then it is as good as none). */
int cairn_explain_load(struct cairn_store *st, const char *tag,
                       struct cairn_explain_build *out,
                       struct cairn_err *err);

/* Lists the files of s's sources that carry a src-tree in its material
 * (exactly those read from the context) from ctx, as
 * cairn_explain_step_from_plan does when given a context. A source with
 * more than CAIRN_EXPLAIN_MAX_FILES files keeps no listing. */
int cairn_explain_step_list(struct cairn_explain_step *s,
                            struct ck_context *ctx, struct cairn_err *err);

/* Everything a caller needs for step i of a plan: finds the remembered
 * step in last (NULL: no previous build), lists cur's sources when its key
 * differs, and appends the causes. Same key: appends nothing when
 * same_key_quiet, else a line saying the key is unchanged. */
int cairn_explain_plan_step(const struct cairn_explain_build *last,
                            const char *tag, const struct ck_plan *plan,
                            const struct ck_keys *keys, size_t i,
                            struct ck_context *ctx, bool same_key_quiet,
                            struct cairn_strvec *causes,
                            struct cairn_err *err);

#endif
