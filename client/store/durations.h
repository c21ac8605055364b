/* How long build steps took here before: a small history that lets a
 * builder judge whether waiting for another builder's run of a step is
 * worth it (client/remote/claim.h, docs/remote.md "Claims").
 *
 * A step's identity for this history is not its cache key: a miss means
 * the key changed, and the history is wanted exactly then. The id is
 * sha256 of the stage index, the step number and the instruction text
 * after expansion (cairn_duration_id), stable across edits of the
 * context or of earlier steps' inputs. It is a hint: two Dockerfiles
 * with the same step at the same place share it.
 *
 * Kept in one file, $CAIRN_ROOT/step-durations: a direct-mapped table of
 * CAIRN_DURATION_SLOTS fixed-size records (so it never grows past
 * slots x 32 bytes), each the id's first 28 bytes and the milliseconds.
 * A later step whose id maps to the same slot replaces the earlier one.
 * Records are written by one pwrite each, so concurrent builds at worst
 * lose one another's record; a record whose id does not match is
 * simply none.
 *
 * Thread-safe (no state besides the file). */
#ifndef CAIRN_CLIENT_DURATIONS_H
#define CAIRN_CLIENT_DURATIONS_H

#include "cachekey/digest.h"
#include "client/store/store.h"

#include <stddef.h>
#include <stdint.h>

#define CAIRN_DURATION_SLOTS 4096
/* Longer times are recorded as this (a day): the history is a hint. */
#define CAIRN_DURATION_MAX_MS ((int64_t)24 * 3600 * 1000)

/* The step's history id (see above) into out. Returns 0 or
 * CAIRN_E_NOMEM. */
int cairn_duration_id(size_t stage, int number, const char *text, uint8_t out[CK_SHA256_LEN]);

/* The milliseconds recorded for id into *ms (at least 1). Returns 0,
 * CAIRN_E_NOTFOUND (none, or no file yet) or a negative errno. */
int cairn_duration_get(struct cairn_store *st, const uint8_t id[CK_SHA256_LEN], int64_t *ms);

/* Records ms (clamped to 1 .. CAIRN_DURATION_MAX_MS) for id, creating
 * the file when needed. Returns 0 or a negative errno. */
int cairn_duration_put(struct cairn_store *st, const uint8_t id[CK_SHA256_LEN], int64_t ms);

#endif
