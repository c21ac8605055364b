/* Cache key derivation, version 1 (normative spec: docs/cachekey.md).
 *
 * Every step of a plan gets a key: sha256 of its key material, a sequence
 * of labelled, length-prefixed fields (label field, value field; see
 * cachekey/field.h) that starts with the scheme version and the parent
 * key, then the step's kind, its expanded instruction, the build's source
 * date epoch when it has one, and the inputs its kind depends on (RUN:
 * command as executed, environment, WORKDIR, USER, network; COPY/ADD:
 * flags, destination, tree digest of each source; FROM: the base image
 * digest and platform). Keys never depend on a step's output, so a whole
 * build's keys are known before anything runs.
 *
 * The material is kept beside each key so a miss can be explained field by
 * field. Not thread-safe while computing; results are read-only after.
 */
#ifndef CAIRN_CACHEKEY_KEY_H
#define CAIRN_CACHEKEY_KEY_H

#include "cachekey/context.h"
#include "cachekey/digest.h"
#include "cachekey/plan.h"
#include "common/buf.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CK_KEY_VERSION "1"
#define CK_KEY_MAX_MATERIAL (64u << 20)

struct ck_step_key {
    bool computed;   /* false for steps of stages the target does not need */
    uint8_t key[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    struct cairn_buf material; /* labelled fields, owned */
    bool unresolved; /* depends on an image the resolver did not know */
    bool layer;      /* RUN, COPY, ADD: the step makes a filesystem layer */
};

/* Keys of a plan: keys[i] belongs to plan->steps[i]. */
struct ck_keys {
    struct ck_step_key *keys;
    size_t n;
};

/* Computes the key of every needed step of plan. ctx is the build context
 * (COPY/ADD sources are hashed through it); it may be NULL only when no
 * needed step reads the context. Returns 0 or the error of the step that
 * failed (err says file:line and why: a missing COPY source, a source
 * outside the context, ...). */
int ck_keys_compute(const struct ck_plan *plan, struct ck_context *ctx,
                    struct ck_keys **out, struct cairn_err *err);

/* Frees keys. Accepts NULL. */
void ck_keys_free(struct ck_keys *keys);

/* Iterates the labelled fields of a key material: on each call sets the
 * label and value (borrowed from material) and advances *pos. Returns 1
 * while there is a field, 0 at the end, CAIRN_E_CORRUPT on bad input. */
int ck_material_next(const void *material, size_t len, size_t *pos,
                     const char **label, size_t *label_len,
                     const char **value, size_t *value_len);

#endif
